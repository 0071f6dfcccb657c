//! The command-line face, run as a user runs it: the built binary, a
//! `.splunkrc` in a temporary home, and a fake splunkd on 127.0.0.1 that
//! records every request (no test touches the internet).
//!
//! What matters most here is what must *not* happen: an API key, password
//! or token printed, put in a URL or sent anywhere but the request body
//! (or `Authorization` header) it belongs in.

mod common;

use common::services as common_http;

use common_http::reputation::storage_passwords_body;
use common_http::{FakeServer, Request, Response};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

const SESSION_KEY: &str = "SESSIONKEY-2b7e151628aed2a6";
const TOKEN: &str = "TOKEN-eyJraWQiOiJzcGx1bmsuc2VjcmV0";
const PASSWORD: &str = "changeme-Pa55w0rd";
const VT_KEY: &str = "VTKEYsecret0123456789abcdef";
const VT_KEY2: &str = "VTKEYsecondABCDEF987654321";
const MB_KEY: &str = "MBKEYsecret55aa66bb77cc";
const COLLECTION: &str = "/servicesNS/nobody/sysmonenrich/storage/passwords";

/// The binary with a clean environment: its own home, no Splunk, no keys.
fn cmd(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysmonenrich"));
    c.env("HOME", home)
        .env_remove("SPLUNK_HOME")
        .env_remove("SYSMONENRICH_APP_DIR")
        .env_remove("SYSMONENRICH_VIRUSTOTAL_KEY")
        .env_remove("SYSMONENRICH_MALWAREBAZAAR_KEY")
        // `--enrich` runs the reputation providers: anything not on this
        // machine goes to a closed port, never to the internet.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    cmd(home).args(args).output().expect("run sysmonenrich")
}

fn run_with_stdin(home: &Path, args: &[&str], input: &str) -> Output {
    let mut child = cmd(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sysmonenrich");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Succeeded, or fails the test showing both streams.
#[track_caller]
fn ok(o: &Output) -> (String, String) {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    (out, err)
}

/// Failed with exit code 1 (not a clap usage error, not a crash).
#[track_caller]
fn failed(o: &Output) -> (String, String) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    (out, err)
}

/// A temporary home with a `.splunkrc` (mode 600) for `server`.
fn home_with(server: &FakeServer, auth: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let port = server.url().rsplit(':').next().unwrap().to_string();
    let rc = home.path().join(".splunkrc");
    std::fs::write(
        &rc,
        format!("# test splunkd\nscheme=http\nhost=127.0.0.1\nport={port}\n{auth}\nversion=9.2\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    home
}

fn token_auth() -> String {
    format!("token={TOKEN}")
}

fn login_auth() -> String {
    format!("username=admin\npassword={PASSWORD}")
}

const APPS: &str = r#"{"entry":[
 {"name":"sysmonenrich","content":{"version":"0.1.0","label":"Sysmon Enrich","disabled":false}},
 {"name":"search","content":{"version":"9.2.1","label":"Search & Reporting","disabled":false}},
 {"name":"old_app","content":{"label":"Old app","disabled":true}}
],"paging":{"total":3}}"#;

/// Sysmon process creations in export JSON: explorer > WINWORD > cmd, newest
/// first, with hashes in Sysmon's spelling (upper-case hex).
fn export_body() -> String {
    let rows = [
        (
            "{9A8B0000-0000-0000-0000-000000000003}",
            "{9A8B0000-0000-0000-0000-000000000002}",
            "C:\\Windows\\System32\\cmd.exe",
            "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
            "cmd.exe /c whoami",
            "SHA256=AAAA0000000000000000000000000000000000000000000000000000000000AA,MD5=BBBB00000000000000000000000000BB",
        ),
        (
            "{9A8B0000-0000-0000-0000-000000000002}",
            "{9A8B0000-0000-0000-0000-000000000001}",
            "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
            "C:\\Windows\\explorer.exe",
            "WINWORD.EXE /n invoice.docm",
            "SHA256=CCCC0000000000000000000000000000000000000000000000000000000000CC",
        ),
        (
            "{9A8B0000-0000-0000-0000-000000000004}",
            "{9A8B0000-0000-0000-0000-000000000003}",
            "C:\\Windows\\System32\\whoami.exe",
            "C:\\Windows\\System32\\cmd.exe",
            "whoami",
            "SHA256=DDDD0000000000000000000000000000000000000000000000000000000000DD",
        ),
    ];
    let mut body = String::new();
    for (i, (guid, parent, image, pimage, cmdline, hashes)) in rows.iter().enumerate() {
        let result = serde_json::json!({
            "_time": format!("2024-05-01T10:00:0{}.000+00:00", 3 - i),
            "host": "wks01",
            "Computer": "wks01.corp.example",
            "EventCode": "1",
            "ProcessGuid": guid,
            "ParentProcessGuid": parent,
            "Image": image,
            "ParentImage": pimage,
            "CommandLine": cmdline,
            "Hashes": hashes,
            "tag": ["process", "start"],
        });
        body.push_str(
            &serde_json::json!({"preview": false, "offset": i, "result": result}).to_string(),
        );
        body.push('\n');
    }
    body.push_str(r#"{"preview":false,"messages":[{"type":"INFO","text":"done"}]}"#);
    body.push('\n');
    body
}

/// A fake splunkd: login, storage/passwords (create, 409, update, delete),
/// apps/local and search/jobs/export; everything else needs the session
/// key or the token.
fn splunkd() -> FakeServer {
    let keys: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    FakeServer::start(move |r: &Request| {
        if r.path() == "/services/auth/login" {
            return if r.method == "POST"
                && r.form("username").as_deref() == Some("admin")
                && r.form("password").as_deref() == Some(PASSWORD)
            {
                Response::json(200, format!(r#"{{"sessionKey":"{SESSION_KEY}"}}"#))
            } else {
                Response::json(
                    401,
                    r#"{"messages":[{"type":"WARN","text":"Login failed"}]}"#,
                )
            };
        }
        let auth = r.header("authorization").unwrap_or("");
        if auth != format!("Splunk {SESSION_KEY}") && auth != format!("Bearer {TOKEN}") {
            return Response::json(
                401,
                r#"{"messages":[{"type":"WARN","text":"call not properly authenticated"}]}"#,
            );
        }
        let mut keys = keys.lock().unwrap();
        let entry = r.path().strip_prefix(COLLECTION).and_then(|rest| {
            rest.strip_prefix("/sysmonenrich%3A")
                .and_then(|u| u.strip_suffix("%3A"))
        });
        match (r.method.as_str(), r.path(), entry) {
            ("GET", COLLECTION, _) => {
                let ours: Vec<(&str, &str)> =
                    keys.iter().map(|(u, s)| (u.as_str(), s.as_str())).collect();
                Response::json(200, storage_passwords_body(&ours))
            }
            ("POST", COLLECTION, _) => {
                if r.form("realm").as_deref() != Some("sysmonenrich") {
                    return Response::json(
                        400,
                        r#"{"messages":[{"type":"ERROR","text":"bad realm"}]}"#,
                    );
                }
                let (Some(name), Some(secret)) = (r.form("name"), r.form("password")) else {
                    return Response::json(
                        400,
                        r#"{"messages":[{"type":"ERROR","text":"missing"}]}"#,
                    );
                };
                if keys.contains_key(&name) {
                    return Response::json(
                        409,
                        format!(
                            r#"{{"messages":[{{"type":"ERROR","text":"An object with name=sysmonenrich:{name}: already exists"}}]}}"#
                        ),
                    );
                }
                keys.insert(name, secret);
                Response::json(201, r#"{"entry":[]}"#)
            }
            ("POST", _, Some(user)) => match (keys.get_mut(user), r.form("password")) {
                (Some(slot), Some(secret)) => {
                    *slot = secret;
                    Response::json(200, r#"{"entry":[]}"#)
                }
                _ => Response::json(404, r#"{"messages":[{"type":"ERROR","text":"not found"}]}"#),
            },
            ("DELETE", _, Some(user)) => match keys.remove(user) {
                Some(_) => Response::json(200, r#"{"entry":[]}"#),
                None => Response::json(
                    404,
                    r#"{"messages":[{"type":"ERROR","text":"Could not find object id=sysmonenrich:x:"}]}"#,
                ),
            },
            ("GET", "/services/apps/local", _) => Response::json(200, APPS),
            ("POST", path, _) if path.ends_with("/search/jobs/export") => {
                Response::json(200, export_body())
            }
            _ => Response::json(
                404,
                r#"{"messages":[{"type":"ERROR","text":"no such endpoint"}]}"#,
            ),
        }
    })
}

/// Every place a secret could leak in a request other than its own body.
fn assert_not_in_request_lines(server: &FakeServer, secret: &str) {
    for r in server.requests() {
        assert!(!r.target.contains(secret), "secret in URL: {}", r.target);
        for (n, v) in &r.headers {
            assert!(!v.contains(secret), "secret in header {n}");
        }
    }
}

#[test]
fn keys_set_list_delete_never_show_the_key() {
    let server = splunkd();
    let home = home_with(&server, &token_auth());
    let h = home.path();
    let mut all_output = String::new();
    let mut keep = |o: &Output| {
        let (out, err) = text(o);
        all_output.push_str(&out);
        all_output.push_str(&err);
    };

    // Create (piped stdin: no terminal, so no prompt).
    let o = run_with_stdin(h, &["keys", "set", "virustotal"], &format!("{VT_KEY}\n"));
    keep(&o);
    let (out, _) = ok(&o);
    assert!(out.contains("virustotal: API key created"), "{out}");
    let posts: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path() == COLLECTION)
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].form("name").as_deref(), Some("virustotal"));
    assert_eq!(posts[0].form("realm").as_deref(), Some("sysmonenrich"));
    assert_eq!(posts[0].form("password").as_deref(), Some(VT_KEY));
    assert_eq!(
        posts[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // Again with another key: 409 on create, then the update endpoint.
    let before = server.count();
    let o = run_with_stdin(h, &["keys", "set", "VirusTotal"], VT_KEY2);
    keep(&o);
    let (out, _) = ok(&o);
    assert!(out.contains("virustotal: API key updated"), "{out}");
    let reqs = server.requests()[before..].to_vec();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(
        reqs[1].path(),
        format!("{COLLECTION}/sysmonenrich%3Avirustotal%3A")
    );
    assert_eq!(reqs[1].form("password").as_deref(), Some(VT_KEY2));
    assert_eq!(reqs[1].form("name"), None);

    // From a file.
    let key_file = h.join("mb.key");
    std::fs::write(&key_file, format!("# MalwareBazaar\n{MB_KEY}\n")).unwrap();
    let o = run(
        h,
        &[
            "keys",
            "set",
            "malwarebazaar",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
    );
    keep(&o);
    ok(&o);

    // List: our realm only, "set", never a secret (the fake's listing also
    // holds the captured example entry of another app, with its secret).
    let o = run(h, &["keys", "list"]);
    keep(&o);
    let (out, _) = ok(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("PROVIDER"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["virustotal", "sysmonenrich", "set"]),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["malwarebazaar", "sysmonenrich", "set"]),
        "{out}"
    );
    assert!(
        !out.contains("splunk_api_it"),
        "another app's credential listed:\n{out}"
    );
    assert!(!out.contains("dummy-secret"), "{out}");

    // Delete, then it is "not set"; deleting again is an error.
    let o = run(h, &["keys", "delete", "virustotal"]);
    keep(&o);
    ok(&o);
    let last = server.requests().pop().unwrap();
    assert_eq!(last.method, "DELETE");
    assert_eq!(
        last.path(),
        format!("{COLLECTION}/sysmonenrich%3Avirustotal%3A")
    );
    let o = run(h, &["keys", "list"]);
    keep(&o);
    let (out, _) = ok(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("virustotal") && l.ends_with("not set")),
        "{out}"
    );
    let o = run(h, &["keys", "delete", "virustotal"]);
    keep(&o);
    let (_, err) = failed(&o);
    assert!(err.contains("no key is stored for virustotal"), "{err}");

    // Refused before any request: a provider that takes no key, an empty key.
    let before = server.count();
    let o = run_with_stdin(h, &["keys", "set", "hashlookup"], VT_KEY);
    keep(&o);
    let (_, err) = failed(&o);
    assert!(err.contains("unknown provider"), "{err}");
    let o = run_with_stdin(h, &["keys", "set", "virustotal"], "\n");
    keep(&o);
    failed(&o);
    assert_eq!(server.count(), before, "a request for a refused key");

    for secret in [VT_KEY, VT_KEY2, MB_KEY, TOKEN, "dummy-secret"] {
        assert!(
            !all_output.contains(secret),
            "{secret} printed:\n{all_output}"
        );
    }
    for key in [VT_KEY, VT_KEY2, MB_KEY] {
        assert_not_in_request_lines(&server, key);
    }
    assert_not_in_request_lines_except_auth(&server, TOKEN);
}

#[test]
fn login_with_username_and_password() {
    let server = splunkd();
    let home = home_with(&server, &login_auth());
    let (out, err) = ok(&run(home.path(), &["apps"]));
    let reqs = server.requests();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path(), "/services/auth/login");
    assert_eq!(reqs[0].form("username").as_deref(), Some("admin"));
    assert_eq!(reqs[0].form("password").as_deref(), Some(PASSWORD));
    assert_eq!(reqs[0].form("output_mode").as_deref(), Some("json"));
    assert_eq!(reqs[0].header("authorization"), None);
    assert_eq!(reqs[1].path(), "/services/apps/local");
    assert_eq!(
        reqs[1].header("authorization"),
        Some(format!("Splunk {SESSION_KEY}").as_str())
    );
    assert!(out.contains("sysmonenrich"), "{out}");
    for secret in [PASSWORD, SESSION_KEY] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} printed"
        );
        assert_not_in_request_lines_except_auth(&server, secret);
    }

    // A wrong password: a clear error naming what to fix, exit 1.
    let bad = home_with(&server, "username=admin\npassword=wrong-one");
    let (_, err) = failed(&run(bad.path(), &["apps"]));
    assert!(err.contains("refused the login"), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("username= and password="), "{err}");
    assert!(!err.contains("wrong-one"), "{err}");
}

/// The session key may (must) be in `Authorization`, nowhere else.
fn assert_not_in_request_lines_except_auth(server: &FakeServer, secret: &str) {
    for r in server.requests() {
        assert!(!r.target.contains(secret), "secret in URL: {}", r.target);
        for (n, v) in &r.headers {
            assert!(
                n == "authorization" || !v.contains(secret),
                "secret in header {n}"
            );
        }
    }
}

#[test]
fn token_auth_and_apps_listing() {
    let server = splunkd();
    let home = home_with(&server, &token_auth());
    let (out, _) = ok(&run(home.path(), &["apps"]));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "no login with a token");
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(
        reqs[0].target,
        "/services/apps/local?output_mode=json&count=0"
    );
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "VERSION", "DISABLED", "LABEL"]);
    assert_eq!(lines[1], ["old_app", "yes", "Old", "app"]);
    assert_eq!(
        lines[2],
        ["search", "9.2.1", "no", "Search", "&", "Reporting"]
    );
    assert_eq!(
        lines[3],
        ["sysmonenrich", "0.1.0", "no", "Sysmon", "Enrich"]
    );

    let (out, _) = ok(&run(home.path(), &["apps", "-f", "json"]));
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["name"], "old_app");
    assert_eq!(first["disabled"], true);

    // --splunkrc elsewhere than ~/.splunkrc.
    let other = tempfile::tempdir().unwrap();
    let rc = home.path().join(".splunkrc");
    let (out, _) = ok(&run(
        other.path(),
        &["apps", "--splunkrc", rc.to_str().unwrap()],
    ));
    assert!(out.contains("sysmonenrich"), "{out}");
    // No .splunkrc at all: says how to make one.
    let (_, err) = failed(&run(other.path(), &["apps"]));
    assert!(err.contains(".splunkrc does not exist"), "{err}");
}

#[test]
fn search_with_enrich() {
    let server = splunkd();
    let home = home_with(&server, &token_auth());
    let (out, err) = ok(&run(
        home.path(),
        &[
            "search",
            "index=sysmon EventCode=1",
            "--earliest",
            "-7d",
            "--enrich",
            "-f",
            "json",
        ],
    ));
    // The search's own export (backfill may ask more afterwards).
    let req = server
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with("/search/jobs/export"))
        .unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), "/services/search/jobs/export");
    assert_eq!(
        req.form("search").as_deref(),
        Some("search+index%3Dsysmon+EventCode%3D1")
    );
    assert_eq!(req.form("output_mode").as_deref(), Some("json"));
    assert_eq!(req.form("earliest_time").as_deref(), Some("-7d"));
    assert_eq!(req.form("latest_time").as_deref(), Some("now"));

    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    let cmd = &rows[0];
    assert_eq!(
        cmd["hash_sha256"],
        "aaaa0000000000000000000000000000000000000000000000000000000000aa"
    );
    assert_eq!(cmd["hash_md5"], "bbbb00000000000000000000000000bb");
    // The parent is in the same results (one row later): lineage and rules.
    assert_eq!(cmd["lineage"], "explorer.exe > WINWORD.EXE > cmd.exe");
    let flags = cmd["lineage_flags"].to_string();
    assert!(flags.contains("office_spawns_shell_or_lolbin"), "{flags}");
    // Multivalue fields stay multivalue.
    assert_eq!(cmd["tag"], serde_json::json!(["process", "start"]));
    assert!(err.contains("3 results"), "{err}");

    // CSV, cut at --max-rows; the SPL that starts with `|` is sent as is.
    let before = server.count();
    let (out, err) = ok(&run(
        home.path(),
        &["search", "| inputlookup x", "--max-rows", "2", "--enrich"],
    ));
    // This run's first request: the search (backfill may follow).
    let req = server.requests().swap_remove(before);
    assert_eq!(req.form("search").as_deref(), Some("%7C+inputlookup+x"));
    let mut rdr = csv::Reader::from_reader(out.as_bytes());
    let header = rdr.headers().unwrap().clone();
    let col = header
        .iter()
        .position(|h| h == "hash_sha256")
        .expect("hash_sha256 column");
    let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        &recs[1][col],
        "cccc0000000000000000000000000000000000000000000000000000000000cc"
    );
    assert!(err.contains("stopped at --max-rows 2"), "{err}");

    // Without --enrich: the results as they came; -o needs --enrich.
    let (out, _) = ok(&run(
        home.path(),
        &["search", "index=sysmon", "-f", "table"],
    ));
    assert!(
        out.lines()
            .next()
            .unwrap()
            .trim_start()
            .starts_with("_time"),
        "{out}"
    );
    assert!(!out.contains('…'), "nothing cut: {out}");
    assert!(!out.contains("hash_sha256"), "{out}");
    // An app context in .splunkrc: the search runs in that namespace.
    let rc = home.path().join(".splunkrc");
    let text = std::fs::read_to_string(&rc).unwrap();
    std::fs::write(&rc, format!("{text}app=sysmonenrich\n")).unwrap();
    ok(&run(home.path(), &["search", "index=sysmon"]));
    let req = server.requests().pop().unwrap();
    assert_eq!(req.path(), "/servicesNS/-/sysmonenrich/search/jobs/export");
    std::fs::write(&rc, format!("{text}app=sysmonenrich\nowner=admin\n")).unwrap();
    ok(&run(home.path(), &["search", "index=sysmon"]));
    let req = server.requests().pop().unwrap();
    assert_eq!(
        req.path(),
        "/servicesNS/admin/sysmonenrich/search/jobs/export"
    );
    let (_, err) = failed(&run(home.path(), &["search", "x", "-o", "max_depth=3"]));
    assert!(err.contains("--enrich"), "{err}");
    // A bad option fails before the search runs.
    let before = server.count();
    let (_, err) = failed(&run(
        home.path(),
        &["search", "x", "--enrich", "-o", "max_depth=zero"],
    ));
    assert!(err.contains("max_depth"), "{err}");
    assert_eq!(server.count(), before);
}

#[test]
fn unauthorized_is_a_clear_error() {
    let server = FakeServer::start(|_| {
        Response::json(
            401,
            r#"{"messages":[{"type":"WARN","text":"call not properly authenticated"}]}"#,
        )
    });
    let home = home_with(&server, &token_auth());
    for args in [
        &["apps"][..],
        &["keys", "list"][..],
        &["search", "index=main"][..],
    ] {
        let (out, err) = failed(&run(home.path(), args));
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.contains("refused the credentials (HTTP 401"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("call not properly authenticated"),
            "{args:?}: {err}"
        );
        assert!(err.contains("check token="), "{args:?}: {err}");
        assert!(!err.contains(TOKEN), "{err}");
    }
    // 403 on the credential store names the capability.
    let server = FakeServer::start(|_| {
        Response::json(
            403,
            r#"{"messages":[{"type":"ERROR","text":"Permission denied"}]}"#,
        )
    });
    let home = home_with(&server, &token_auth());
    let (_, err) = failed(&run(home.path(), &["keys", "list"]));
    assert!(err.contains("list_storage_passwords"), "{err}");
    // Nothing listening: a transport error, not a hang or a panic.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".splunkrc"),
        format!("scheme=http\nhost=127.0.0.1\nport={port}\ntoken=x\n"),
    )
    .unwrap();
    let (_, err) = failed(&run(home.path(), &["apps"]));
    assert!(err.contains("cannot reach splunkd"), "{err}");
}

fn write_tree_csv(dir: &Path) -> PathBuf {
    let g = |n: u32| format!("{{5EED0000-0000-0000-0000-{n:012}}}");
    let mut csv = String::from(
        "_time,EventCode,Computer,ProcessGuid,ProcessId,Image,CommandLine,ParentProcessGuid,ParentProcessId,ParentImage,ParentCommandLine\n",
    );
    let rows = [
        // guid, pid, image, cmd, parent, parent pid, parent image, parent cmd
        (
            2,
            620,
            r"C:\Windows\System32\services.exe",
            "services.exe",
            1,
            500,
            r"C:\Windows\System32\wininit.exe",
            "wininit.exe",
        ),
        (
            3,
            900,
            r"C:\Windows\System32\svchost.exe",
            "svchost.exe -k netsvcs",
            2,
            620,
            r"C:\Windows\System32\services.exe",
            "services.exe",
        ),
        (
            9,
            3100,
            r"C:\Windows\System32\wbem\WmiPrvSE.exe",
            "WmiPrvSE.exe -Embedding",
            3,
            900,
            r"C:\Windows\System32\svchost.exe",
            "svchost.exe -k netsvcs",
        ),
        (
            4,
            4242,
            r"C:\Windows\System32\cmd.exe",
            "cmd /c net user backdoor /add",
            9,
            3100,
            r"C:\Windows\System32\wbem\WmiPrvSE.exe",
            "WmiPrvSE.exe -Embedding",
        ),
        (
            5,
            4300,
            r"C:\Windows\System32\net.exe",
            "net user backdoor /add",
            4,
            4242,
            r"C:\Windows\System32\cmd.exe",
            "cmd /c net user backdoor /add",
        ),
        (
            6,
            4301,
            r"C:\Windows\System32\net1.exe",
            "net1 user backdoor /add",
            5,
            4300,
            r"C:\Windows\System32\net.exe",
            "net user backdoor /add",
        ),
        (
            7,
            4310,
            r"C:\Windows\System32\conhost.exe",
            "conhost.exe 0xffffffff",
            4,
            4242,
            r"C:\Windows\System32\cmd.exe",
            "cmd /c net user backdoor /add",
        ),
        // An unrelated process.
        (
            8,
            7000,
            r"C:\Windows\notepad.exe",
            "notepad.exe",
            1,
            500,
            r"C:\Windows\System32\wininit.exe",
            "wininit.exe",
        ),
    ];
    // Newest first, as Splunk exports.
    for (i, (guid, pid, image, cmd, parent, ppid, pimage, pcmd)) in rows.iter().enumerate().rev() {
        csv.push_str(&format!(
            "{},1,WS01,{},{pid},{image},\"{cmd}\",{},{ppid},{pimage},\"{pcmd}\"\n",
            1_700_000_000 + i,
            g(*guid),
            g(*parent)
        ));
    }
    // A network event of cmd.exe.
    csv.push_str(&format!(
        "1700000100,3,WS01,{},4242,{},,,,,\n",
        g(4),
        r"C:\Windows\System32\cmd.exe"
    ));
    let path = dir.join("events.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn tree_shows_ancestors_and_descendants() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_tree_csv(dir.path());
    let (out, _) = ok(&run(
        dir.path(),
        &[
            "tree",
            "5eed0000-0000-0000-0000-000000000004",
            file.to_str().unwrap(),
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0]
            .contains("{5EED0000-0000-0000-0000-000000000004} on WS01: 4 ancestors, 3 descendants"),
        "{out}"
    );
    // The root: known only from its child's Parent* fields.
    assert!(lines[2].starts_with("wininit.exe (pid 500)"), "{out}");
    assert!(lines[2].ends_with("(creation not in the input)"), "{out}");
    assert!(
        lines[3].starts_with(
            "└─ services.exe (pid 620) {5EED0000-0000-0000-0000-000000000002} \"services.exe\""
        ),
        "{out}"
    );
    assert!(lines[4].starts_with("   └─ svchost.exe (pid 900)"), "{out}");
    assert!(
        lines[5].starts_with("      └─ WmiPrvSE.exe (pid 3100)"),
        "{out}"
    );
    assert_eq!(
        lines[6],
        "         └─ ▶ cmd.exe (pid 4242) {5EED0000-0000-0000-0000-000000000004} \"cmd /c net user backdoor /add\"  [wmi_spawns_shell]",
        "{out}"
    );
    assert!(
        lines[7].starts_with("            ├─ net.exe (pid 4300)"),
        "{out}"
    );
    assert!(
        lines[8].starts_with("            │  └─ net1.exe (pid 4301)"),
        "{out}"
    );
    assert!(
        lines[9].starts_with("            └─ conhost.exe (pid 4310)"),
        "{out}"
    );
    assert!(!out.contains("notepad"), "{out}");
    assert_eq!(lines.len(), 10, "{out}");

    // Unknown GUID, bad GUID: errors.
    let (_, err) = failed(&run(
        dir.path(),
        &[
            "tree",
            "{5EED0000-0000-0000-0000-000000000099}",
            file.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("does not appear in the input"), "{err}");
    let (_, err) = failed(&run(
        dir.path(),
        &["tree", "cmd.exe", file.to_str().unwrap()],
    ));
    assert!(err.contains("not a process GUID"), "{err}");
}

#[test]
fn tree_shows_matched_rule_names() {
    // A site's own rules file (`--rules`) instead of the shipped one.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(
        &rules,
        "[net_from_shell]\nseverity = high\nparent = cmd.exe\nchild = net.exe\n",
    )
    .unwrap();
    let file = write_tree_csv(dir.path());
    let (out, _) = ok(&run(
        dir.path(),
        &[
            "tree",
            "{5EED0000-0000-0000-0000-000000000004}",
            file.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
    ));
    let net = out
        .lines()
        .find(|l| l.contains("net.exe (pid 4300)"))
        .unwrap();
    assert!(net.ends_with("[net_from_shell]"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.contains("conhost") && l.contains('[')),
        "{out}"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn state_stats_purge_check() {
    use sysmonenrich::state::{StateOptions, StateStore, StoredProcess};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let store = StateStore::open(&db, &StateOptions::default()).unwrap();
        let process = |guid: u128| StoredProcess {
            guid,
            parent_guid: Some(1),
            image: "C:\\x.exe".into(),
            command_line: "x".into(),
            parent_image: String::new(),
            parent_command_line: String::new(),
            host: "h".into(),
            time: 1.0,
            md5: None,
            sha1: None,
            sha256: None,
            imphash: None,
            seen_at: now_ms() / 1000,
        };
        store.put_processes(&[process(2), process(3)]).unwrap();
        store
            .cache_put("virustotal", "sha256:00aa", "{}", now_ms() / 1000, 3600)
            .unwrap();
        store.pending_add("sha256:01", "quota", 1).unwrap();
        store.pending_add("sha256:02", "timeout", 1).unwrap();
        store.quota_acquire("virustotal", now_ms(), 4, 500).unwrap();
    }
    let db_arg = db.to_str().unwrap();
    let field = |out: &str, name: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{out}"))[name.len()..]
            .trim()
            .to_string()
    };
    let (out, _) = ok(&run(dir.path(), &["state", "--db", db_arg]));
    assert_eq!(field(&out, "processes"), "2");
    assert!(field(&out, "cache entries").starts_with("1 "), "{out}");
    assert_eq!(field(&out, "pending"), "2 (quota: 1, timeout: 1)");
    assert_eq!(
        field(&out, "quota"),
        "virustotal: 1 request in the last minute (limit 4/min), 1 today UTC (limit 500/day)"
    );
    assert!(field(&out, "file size").contains("WAL"), "{out}");

    let (out, _) = ok(&run(
        dir.path(),
        &["state", "purge", "cache", "--db", db_arg],
    ));
    assert!(out.starts_with("purged 1 row (cache)"), "{out}");
    let (out, _) = ok(&run(dir.path(), &["state", "stats", "--db", db_arg]));
    assert!(field(&out, "cache entries").starts_with("0 "), "{out}");
    assert_eq!(field(&out, "processes"), "2");

    let (out, err) = ok(&run(
        dir.path(),
        &["state", "--db", db_arg, "purge", "all", "--vacuum"],
    ));
    assert!(out.starts_with("purged 5 rows (all tables)"), "{out}");
    assert!(out.contains("vacuumed"), "{out}");
    assert!(err.contains("quota ledger is emptied"), "{err}");
    let (out, _) = ok(&run(dir.path(), &["state", "--db", db_arg]));
    assert_eq!(field(&out, "processes"), "0");
    assert_eq!(field(&out, "pending"), "0");

    let (out, _) = ok(&run(dir.path(), &["state", "check", "--db", db_arg]));
    assert!(out.contains("ok (integrity check passed)"), "{out}");

    // Bad target: a usage error listing the names.
    let o = run(
        dir.path(),
        &["state", "purge", "everything", "--db", db_arg],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("processes, cache, pending, quota, all"));

    // A damaged file: a clear error and advice, exit 1.
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, vec![b'x'; 8192]).unwrap();
    let (_, err) = failed(&run(
        dir.path(),
        &["state", "check", "--db", bad.to_str().unwrap()],
    ));
    assert!(err.contains("damaged"), "{err}");
}

#[test]
fn state_default_paths() {
    let home = tempfile::tempdir().unwrap();
    // No database yet: says where it would be, creates nothing.
    let (out, _) = ok(&run(home.path(), &["state"]));
    let expected = home.path().join(".local/state/sysmonenrich/state.db");
    assert!(out.contains(&expected.display().to_string()), "{out}");
    assert!(!expected.exists());
    // Under Splunk: the search head's database.
    let splunk = tempfile::tempdir().unwrap();
    let o = cmd(home.path())
        .env("SPLUNK_HOME", splunk.path())
        .args(["state"])
        .output()
        .unwrap();
    let (out, _) = ok(&o);
    let expected = splunk.path().join("var/lib/sysmonenrich/state.db");
    assert!(out.contains(&expected.display().to_string()), "{out}");
}

/// One creation as splunkd's export JSON writes it.
fn creation_line(guid: u32, parent: u32, image: &str, parent_image: &str) -> String {
    let g = |n: u32| format!("{{9A8B0000-0000-0000-0000-{n:012}}}");
    let result = serde_json::json!({
        "_time": "2024-05-01T10:00:00.000+00:00",
        "Computer": "wks01.corp.example",
        "EventCode": "1",
        "ProcessGuid": g(guid),
        "ParentProcessGuid": g(parent),
        "Image": image,
        "ParentImage": parent_image,
        "CommandLine": image.rsplit('\\').next().unwrap_or(image),
    });
    format!(
        "{}\n",
        serde_json::json!({"preview": false, "result": result})
    )
}

#[test]
fn search_with_enrich_backfills_ancestors_like_the_command() {
    // The search finds cmd.exe only; its parent (WINWORD) and grandparent
    // (explorer) are only in the index, found by backfill searches.
    let server = FakeServer::start(|r: &Request| {
        if r.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return Response::json(401, r#"{"messages":[]}"#);
        }
        if !r.path().ends_with("/search/jobs/export") {
            return Response::json(404, r#"{"messages":[]}"#);
        }
        let search = r.form("search").unwrap_or_default();
        let body = if !search.contains("ProcessGuid+IN") {
            creation_line(
                3,
                2,
                "C:\\Windows\\System32\\cmd.exe",
                "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
            )
        } else if search.contains("000000000002%7D") {
            creation_line(
                2,
                1,
                "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
                "C:\\Windows\\explorer.exe",
            )
        } else if search.contains("000000000001%7D") {
            creation_line(1, 0, "C:\\Windows\\explorer.exe", "")
        } else {
            String::new()
        };
        Response::json(200, body)
    });
    let home = home_with(&server, &token_auth());
    let (out, _) = ok(&run(
        home.path(),
        &[
            "search",
            "index=sysmon",
            "--enrich",
            "-o",
            "providers=local",
            "-f",
            "json",
        ],
    ));
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    // explorer.exe's own creation came from backfill too (its image from
    // WINWORD's ParentImage, WINWORD's from cmd's).
    let lineage = row["lineage"].as_str().unwrap_or("");
    assert!(
        lineage.ends_with("explorer.exe > WINWORD.EXE > cmd.exe"),
        "{row}"
    );
    assert!(
        row["lineage_source"].to_string().contains("splunk"),
        "{row}"
    );
    let guids = row["lineage_guids"].to_string();
    assert!(guids.contains("000000000001}"), "{row}");
    let backfills: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.form("search")
                .is_some_and(|s| s.contains("ProcessGuid+IN"))
        })
        .collect();
    assert!(!backfills.is_empty());
    for b in &backfills {
        assert_eq!(b.form("earliest_time").as_deref(), Some("-30d"));
    }

    // backfill=false: the search alone.
    let before = server.count();
    let (out, _) = ok(&run(
        home.path(),
        &[
            "search",
            "index=sysmon",
            "--enrich",
            "-o",
            "providers=local",
            "-o",
            "backfill=false",
            "-f",
            "json",
        ],
    ));
    assert_eq!(server.count(), before + 1);
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["lineage_status"], "partial", "{row}");
}
