//! `sysmonenrich state` and the shared tier (issue 19): `stats` over both
//! tiers, `push` and `pull` between a search head's database and the app's
//! KV store, `purge --sid/--user` on both, against the fake splunkd's KV
//! store (127.0.0.1, port 0) reached through a `.splunkrc`, as an admin
//! would run them.

mod common;

use common::datasets::{generated, sysmon_dataset, Table};
use common::fake_kvstore::FakeKvStore;
use common::home::{app_dir_with, Home};
use common::splunkd::{self, Outcome};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use sysmonenrich::enrich::shared::docs::{SharedProcess, PROCESSES, REPUTATION};
use sysmonenrich::state::{StateOptions, StateStore, StoredProcess, Writer};

const PROCESSES_LINE: &str = "  sysmonenrich_processes";

/// A `.splunkrc` for `uri` in `home` (what `state` reads by default).
fn splunkrc(home: &Path, uri: &str) {
    let port = uri.rsplit(':').next().unwrap();
    let rc = home.join(".splunkrc");
    std::fs::write(
        &rc,
        format!("scheme=http\nhost=127.0.0.1\nport={port}\ntoken=Splunk SESSIONKEY-kapp\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `sysmonenrich state ARGS --db <home's db>` with `HOME` = the home.
fn state(home: &Home, args: &[&str]) -> Output {
    Command::new(splunkd::BINARY)
        .arg("state")
        .args(args)
        .arg("--db")
        .arg(home.db())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run sysmonenrich state")
}

#[track_caller]
fn ok(o: &Output) -> (String, String) {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    (out, err)
}

/// The rows of `t` whose EventCode is (`creations`) or is not 1.
fn split(t: &Table, creations: bool) -> Arc<Table> {
    let code = t.position("EventCode").expect("EventCode column");
    Arc::new(Table {
        name: format!(
            "{} ({})",
            t.name,
            if creations { "creations" } else { "others" }
        ),
        columns: t.columns.clone(),
        rows: t
            .rows
            .iter()
            .filter(|r| (r[code].joined() == "1") == creations)
            .cloned()
            .collect(),
    })
}

/// A search of `t` on the member whose home is `home` (local tier only:
/// no splunkd for it, no backfill, no providers).
fn search(home: &Home, app: &Path, t: &Arc<Table>) -> Outcome {
    let opts = home.options(&["reputation=false", "backfill=false"], 1_000, Some(app));
    let out = splunkd::run(t.clone(), &opts);
    assert!(
        out.violations.is_empty() && out.exit_code == Some(0),
        "{}",
        out.report()
    );
    out
}

const CHAIN_FIELDS: [&str; 5] = [
    "lineage",
    "lineage_status",
    "lineage_depth",
    "lineage_guids",
    "lineage_sigma",
];

fn chains(out: &Outcome) -> Vec<Vec<String>> {
    (0..out.merged.len())
        .map(|r| {
            CHAIN_FIELDS
                .iter()
                .map(|f| {
                    out.merged
                        .get(r, f)
                        .map(|v| v.joined().into_owned())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}

fn depth_sum(c: &[Vec<String>]) -> u64 {
    c.iter().map(|r| r[2].parse::<u64>().unwrap_or(0)).sum()
}

/// Member A searches the creations and pushes; a fresh member B pulls and
/// searches everything else: B's chains are A's. A third member that did
/// not pull gets poorer ones (the test can tell).
fn push_then_pull_gives_the_same_chains(table: &Table) {
    let kv = FakeKvStore::empty();
    // The searches use the local tier only: this is about the CLI's copy.
    let app = app_dir_with("cli_shared_app.", "[state]\nshared = off\n");
    let creations = split(table, true);
    let others = split(table, false);
    assert!(
        !creations.is_empty() && !others.is_empty(),
        "{}",
        table.name
    );

    let a = Home::new("cli_shared_a.");
    search(&a, app.path(), &creations);
    splunkrc(a.path(), &kv.uri());
    let started = std::time::Instant::now();
    let (out, _) = ok(&state(&a, &["push"]));
    let push_took = started.elapsed();
    let local = StateStore::open(&a.db(), &StateOptions::default())
        .unwrap()
        .stats()
        .unwrap()
        .processes;
    assert!(local > 0, "{}: member A stored no process", table.name);
    assert!(
        out.contains(&format!("pushed {local} process")),
        "{}: {out}",
        table.name
    );
    assert_eq!(kv.docs(PROCESSES).len() as u64, local, "{out}");
    // Pushed again: nothing new, nothing overwritten.
    let (again, _) = ok(&state(&a, &["push"]));
    assert!(
        again.contains(&format!(
            "pushed 0 processes to {PROCESSES} ({local} already there, 0 conflicts"
        )),
        "{again}"
    );

    let b = Home::new("cli_shared_b.");
    splunkrc(b.path(), &kv.uri());
    let started = std::time::Instant::now();
    let (out, _) = ok(&state(&b, &["pull"]));
    let pull_took = started.elapsed();
    assert!(
        out.contains(&format!("pulled {local} process")) && out.contains("0 refused"),
        "{}: {out}",
        table.name
    );

    let on_a = chains(&search(&a, app.path(), &others));
    let on_b = chains(&search(&b, app.path(), &others));
    let c = Home::new("cli_shared_c.");
    let on_c = chains(&search(&c, app.path(), &others));
    eprintln!(
        "{}: {} creations pushed in {:.2} s, pulled in {:.2} s; {} other rows; ancestors found: A {}, B (pulled) {}, C (not pulled) {}",
        table.name,
        local,
        push_took.as_secs_f64(),
        pull_took.as_secs_f64(),
        on_a.len(),
        depth_sum(&on_a),
        depth_sum(&on_b),
        depth_sum(&on_c)
    );
    assert_eq!(on_a.len(), on_b.len());
    for (r, (x, y)) in on_a.iter().zip(&on_b).enumerate() {
        assert_eq!(x, y, "{}: row {r} differs between A and B", table.name);
    }
    assert!(
        depth_sum(&on_c) < depth_sum(&on_b),
        "{}: a member without the pull resolves as much ({} ancestors) as one with it ({})",
        table.name,
        depth_sum(&on_c),
        depth_sum(&on_b)
    );
}

#[test]
fn push_then_pull_gives_a_fresh_member_the_same_chains_generated() {
    push_then_pull_gives_the_same_chains(&generated());
}

#[test]
fn push_then_pull_gives_a_fresh_member_the_same_chains_attack_samples() {
    let Some(t) = sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    push_then_pull_gives_the_same_chains(&t);
}

fn process(guid: u128, parent: u128, command_line: &str) -> StoredProcess {
    StoredProcess {
        guid,
        parent_guid: Some(parent),
        image: r"C:\Windows\System32\cmd.exe".into(),
        command_line: command_line.into(),
        parent_image: r"C:\Windows\explorer.exe".into(),
        parent_command_line: "explorer.exe".into(),
        host: "WS01".into(),
        time: 1_700_000_000.5,
        md5: None,
        sha1: None,
        sha256: Some("ab".repeat(32)),
        imphash: None,
        seen_at: now(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn writer(sid: &str) -> Writer {
    Writer {
        sid: sid.into(),
        user: "admin".into(),
    }
}

#[test]
fn pull_refuses_a_document_whose_digest_does_not_match() {
    let kv = FakeKvStore::empty();
    let good = SharedProcess {
        process: process(0x11, 0x10, "cmd.exe /c whoami"),
        writer: writer("scheduler_1"),
        sigma: vec![],
    };
    let mut forged = SharedProcess {
        process: process(0x22, 0x10, "cmd.exe /c whoami"),
        writer: writer("scheduler_1"),
        sigma: vec![],
    }
    .to_doc();
    // Another command line under the digest of the first: what a partial
    // write or a hand edit in the collection looks like.
    forged["command_line"] = json!("cmd.exe /c evil.exe");
    kv.insert(PROCESSES, vec![good.to_doc(), forged]);

    let home = Home::new("cli_shared_digest.");
    splunkrc(home.path(), &kv.uri());
    let (out, err) = ok(&state(&home, &["pull"]));
    assert!(out.contains("pulled 1 process from"), "{out}");
    assert!(out.contains("1 refused"), "{out}");
    assert!(
        err.contains("{00000000-0000-0000-0000-000000000022}")
            && err.contains("do not match its digest"),
        "{err}"
    );
    let store = StateStore::open(&home.db(), &StateOptions::default()).unwrap();
    let got: Vec<u128> = store
        .get_processes(&[0x11, 0x22])
        .unwrap()
        .iter()
        .map(|p| p.guid)
        .collect();
    assert_eq!(got, [0x11]);
}

#[test]
fn pull_counts_a_contradicting_creation_and_keeps_the_stored_one() {
    let kv = FakeKvStore::empty();
    let theirs = SharedProcess {
        process: process(0x33, 0x10, "cmd.exe /c other"),
        writer: writer("scheduler_2"),
        sigma: vec![],
    };
    kv.insert(PROCESSES, vec![theirs.to_doc()]);
    let home = Home::new("cli_shared_conflict.");
    {
        let store = StateStore::open(&home.db(), &StateOptions::default()).unwrap();
        let w = store.writer_id(&writer("local_1")).unwrap();
        let mine = process(0x33, 0x10, "cmd.exe /c mine");
        store.put_process_rows_by([mine.as_row()], Some(w)).unwrap();
    }
    splunkrc(home.path(), &kv.uri());
    let (out, _) = ok(&state(&home, &["pull"]));
    assert!(
        out.contains("pulled 0 processes") && out.contains("1 conflict,"),
        "{out}"
    );
    let store = StateStore::open(&home.db(), &StateOptions::default()).unwrap();
    assert_eq!(
        store.get_processes(&[0x33]).unwrap()[0].command_line,
        "cmd.exe /c mine"
    );
    assert_eq!(store.conflict_count().unwrap(), 1);
    // And the other way: push does not overwrite their document either.
    let (out, _) = ok(&state(&home, &["push"]));
    assert!(
        out.contains("pushed 0 processes") && out.contains("1 conflict,"),
        "{out}"
    );
    assert_eq!(kv.docs(PROCESSES)[0]["command_line"], "cmd.exe /c other");
}

#[test]
fn stats_shows_both_tiers() {
    let kv = FakeKvStore::empty();
    let home = Home::new("cli_shared_stats.");
    {
        let store = StateStore::open(&home.db(), &StateOptions::default()).unwrap();
        store
            .put_processes(&[process(0x44, 0x10, "a"), process(0x45, 0x10, "b")])
            .unwrap();
    }
    let docs: Vec<serde_json::Value> = (0..3u128)
        .map(|i| {
            SharedProcess {
                process: process(0x100 + i, 0x10, "x"),
                writer: writer("s"),
                sigma: vec![],
            }
            .to_doc()
        })
        .collect();
    kv.insert(PROCESSES, docs);
    let answer = |i: u32, expires: i64| {
        json!({
            "_key": format!("virustotal:sha256:{i:064x}"), "hash": format!("{i:064x}"),
            "provider": "virustotal", "checked": 1_000, "expires": expires,
            "answer": "{\"status\":\"not_found\"}", "rep_verdict": "unknown",
        })
    };
    kv.insert(
        REPUTATION,
        vec![
            answer(1, now() + 3_600),
            answer(2, now() + 3_600),
            answer(3, 2_000),
        ],
    );
    // Without a .splunkrc: the local tier, and one line saying why not more.
    let (out, _) = ok(&state(&home, &["stats"]));
    assert!(out.lines().any(|l| l == "processes      2"), "{out}");
    assert!(out.contains("shared tier    not looked at: no "), "{out}");

    splunkrc(home.path(), &kv.uri());
    let (out, err) = ok(&state(&home, &["stats"]));
    assert!(out.lines().any(|l| l == "processes      2"), "{out}");
    assert!(
        out.contains("KV store ready (a search head cluster member)"),
        "{out}"
    );
    assert!(
        out.contains("sysmonenrich_reputation  3 answers (2 unexpired)"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with(PROCESSES_LINE) && l.ends_with(" 3 processes")),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
}

#[test]
fn stats_with_splunkd_down_says_so_in_one_line_and_fails_like_other_commands() {
    let home = Home::new("cli_shared_down.");
    {
        let store = StateStore::open(&home.db(), &StateOptions::default()).unwrap();
        store.put_processes(&[process(0x55, 0x10, "a")]).unwrap();
    }
    let closed = splunkd::closed_port();
    splunkrc(home.path(), &format!("http://127.0.0.1:{closed}"));
    let o = state(&home, &["stats"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    // The local figures still come out.
    assert!(out.lines().any(|l| l == "processes      1"), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("sysmonenrich: error: shared tier (KV store on http://127.0.0.1:"),
        "{err}"
    );
    // The exit code of any other command that cannot reach splunkd.
    let apps = Command::new(splunkd::BINARY)
        .arg("apps")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!apps.status.success());
    assert_eq!(o.status.code(), apps.status.code());
}

#[test]
fn purge_by_sid_also_deletes_the_documents_of_that_search() {
    let kv = FakeKvStore::empty();
    let doc = |guid: u128, sid: &str| {
        SharedProcess {
            process: process(guid, 0x10, "x"),
            writer: writer(sid),
            sigma: vec![],
        }
        .to_doc()
    };
    kv.insert(
        PROCESSES,
        vec![doc(0x61, "rogue"), doc(0x62, "rogue"), doc(0x63, "good")],
    );
    let home = Home::new("cli_shared_purge.");
    {
        let store = StateStore::open(&home.db(), &StateOptions::default()).unwrap();
        let w = store.writer_id(&writer("rogue")).unwrap();
        store
            .put_process_rows_by([process(0x61, 0x10, "x").as_row()], Some(w))
            .unwrap();
    }
    splunkrc(home.path(), &kv.uri());
    let (out, _) = ok(&state(&home, &["purge", "processes", "--sid", "rogue"]));
    assert!(
        out.contains("purged 1 process written by sid rogue from"),
        "{out}"
    );
    assert!(
        out.contains("purged 2 processes written by sid rogue from the KV store collection sysmonenrich_processes"),
        "{out}"
    );
    let left: Vec<String> = kv
        .docs(PROCESSES)
        .iter()
        .map(|d| d["writer_sid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["good"]);
}

#[test]
fn answers_go_both_ways_unexpired_and_newest_only() {
    let kv = FakeKvStore::empty();
    let t = now();
    let hex = |i: u32| format!("{i:064x}");
    let found = r#"{"status":"found","verdict":"malicious","detections":41,"engines":70,"label":"trojan.x"}"#;
    let a = Home::new("cli_shared_answers_a.");
    {
        let store = StateStore::open(&a.db(), &StateOptions::default()).unwrap();
        store
            .cache_put(
                "virustotal",
                &format!("sha256:{}", hex(1)),
                found,
                t - 60,
                3_600,
            )
            .unwrap();
        // Expired: neither pushed nor pulled.
        store
            .cache_put(
                "virustotal",
                &format!("sha256:{}", hex(2)),
                found,
                t - 7_200,
                3_600,
            )
            .unwrap();
        store
            .cache_put(
                "hashlookup",
                &format!("sha256:{}", hex(3)),
                r#"{"status":"not_found"}"#,
                t - 60,
                86_400,
            )
            .unwrap();
    }
    splunkrc(a.path(), &kv.uri());
    let (out, _) = ok(&state(&a, &["push"]));
    assert!(
        out.contains(
            "pushed 2 answers to sysmonenrich_reputation (0 already there or newer, 0 left out)"
        ),
        "{out}"
    );
    let docs = kv.docs(REPUTATION);
    let doc = docs
        .iter()
        .find(|d| d["_key"] == format!("virustotal:sha256:{}", hex(1)))
        .expect("the virustotal answer");
    // What `| lookup sysmonenrich_reputation hash OUTPUT rep_verdict` reads.
    assert_eq!(doc["hash"], hex(1));
    assert_eq!(doc["rep_verdict"], "malicious");

    // B holds a newer answer for the hashlookup hash: it stays.
    let b = Home::new("cli_shared_answers_b.");
    let newer = r#"{"status":"found","verdict":"known_good"}"#;
    {
        let store = StateStore::open(&b.db(), &StateOptions::default()).unwrap();
        store
            .cache_put(
                "hashlookup",
                &format!("sha256:{}", hex(3)),
                newer,
                t,
                86_400,
            )
            .unwrap();
    }
    splunkrc(b.path(), &kv.uri());
    let (out, _) = ok(&state(&b, &["pull"]));
    assert!(
        out.contains(
            "pulled 1 answer from sysmonenrich_reputation (1 already here or newer, 0 refused)"
        ),
        "{out}"
    );
    let store = StateStore::open(&b.db(), &StateOptions::default()).unwrap();
    let got = store
        .cache_get("virustotal", &format!("sha256:{}", hex(1)), t)
        .unwrap()
        .expect("pulled");
    assert_eq!(
        (got.json.as_str(), got.checked_at, got.expires_at),
        (found, t - 60, t - 60 + 3_600)
    );
    assert_eq!(
        store
            .cache_get("hashlookup", &format!("sha256:{}", hex(3)), t)
            .unwrap()
            .unwrap()
            .json,
        newer
    );
    assert!(store
        .cache_get("virustotal", &format!("sha256:{}", hex(2)), t - 7_200)
        .unwrap()
        .is_none());
}

#[test]
fn pull_pages_through_documents_larger_than_one_reply() {
    // 300 processes with 30 KB command lines: about 18 MB of documents,
    // more than the 8 MB the client reads of one reply.
    let kv = FakeKvStore::empty();
    let long = "x".repeat(30_000);
    let docs: Vec<serde_json::Value> = (0..300u128)
        .map(|i| {
            SharedProcess {
                process: process(0x1000 + i, 0x10, &long),
                writer: writer("s"),
                sigma: vec![],
            }
            .to_doc()
        })
        .collect();
    kv.insert(PROCESSES, docs);
    let home = Home::new("cli_shared_big.");
    splunkrc(home.path(), &kv.uri());
    let (out, _) = ok(&state(&home, &["pull"]));
    assert!(out.contains("pulled 300 processes from"), "{out}");
    let store = StateStore::open(&home.db(), &StateOptions::default()).unwrap();
    assert_eq!(store.stats().unwrap().processes, 300);
}
