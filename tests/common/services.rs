//! Fakes of the services the command talks to, on the tests' one HTTP
//! server ([`super::http`], re-exported here as [`FakeServer`],
//! [`Request`] and [`Response`]; test crates name this module
//! `common_http`).
//!
//! - [`reputation`]: fakes of VirusTotal, CIRCL hashlookup, MalwareBazaar
//!   and splunkd's `storage/passwords`, serving the real example bodies
//!   from `../shared` (read at test time, never copied), plus bodies of the
//!   same shape built in code for other hashes.
//!
//! Test crates use different parts of it, so unused-item warnings would
//! be noise.
#![allow(dead_code)]

pub use super::http::{FakeServer, Request, Response};

/// The shared example files (`../shared`), read at test time.
pub mod shared {
    use std::path::PathBuf;

    /// `../shared` beside the project, when present.
    pub fn dir() -> Option<PathBuf> {
        let d = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"));
        d.is_dir().then_some(d)
    }

    /// `shared/<rel>` as text; prints why and returns `None` when absent
    /// (the caller then returns early: the test cannot check real bodies).
    pub fn read(rel: &str) -> Option<String> {
        let path = dir().map(|d| d.join(rel));
        match path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            Some(text) => Some(text),
            None => {
                // CI's run has ../shared: a skip there would pass unseen.
                assert!(
                    std::env::var_os("CI").is_none(),
                    "../shared/{rel} is absent and CI is set: the CI run must have it"
                );
                eprintln!("skipped: ../shared/{rel} is absent, so the real body cannot be checked");
                None
            }
        }
    }

    /// A reputation example body (`shared/reputation/examples/<name>`).
    pub fn reputation(name: &str) -> Option<String> {
        read(&format!("reputation/examples/{name}"))
    }

    /// Like [`reputation`] but silent, for fakes that fall back to a
    /// constructed body of the same shape.
    pub fn reputation_or(name: &str, fallback: &str) -> String {
        dir()
            .and_then(|d| std::fs::read_to_string(d.join("reputation/examples").join(name)).ok())
            .unwrap_or_else(|| fallback.to_string())
    }
}

/// Fakes of the reputation providers and of splunkd's credential store.
pub mod reputation {
    use super::{shared, FakeServer, Request, Response};
    use std::collections::HashMap;
    use std::sync::Arc;

    /// SHA-256 of the VirusTotal example bodies.
    pub const VT_SHA256: &str = "0078c8132fb99b4bccbb2e2429885a857d6a89534f74e23e6a12821abd2c3db2";
    /// SHA-256 of the MalwareBazaar AgentTesla record.
    pub const MB_AGENTTESLA_SHA256: &str =
        "0661d87116f44cbd5b5c6bec7fb06c4e5cd5b6ecbc5455d959e65f1ee46c54c8";
    /// SHA-256 of the MalwareBazaar Dridex record.
    pub const MB_DRIDEX_SHA256: &str =
        "4fccd38f504290cf5c70e7336071a90a064303c7fdf5c17f7c38001768bce115";
    /// SHA-256 of the empty file (CIRCL's NSRL example).
    pub const EMPTY_SHA256: &str =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    /// SHA-256 of "test" (CIRCL's KnownMalicious example).
    pub const TEST_SHA256: &str =
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// A made-up SHA-256 number `n`, distinct per `n`.
    pub fn sha256(n: u32) -> String {
        format!("{:064x}", 0x5eed_0000_u64 + u64::from(n))
    }

    /// A VirusTotal file object of the real shape for `sha256`.
    pub fn vt_file(sha256: &str, malicious: u32, undetected: u32, label: &str) -> String {
        format!(
            r#"{{"data":{{"id":"{sha256}","type":"file","links":{{"self":"https://www.virustotal.com/api/v3/files/{sha256}"}},
            "attributes":{{"sha256":"{sha256}","first_submission_date":1700000000,
            "last_analysis_stats":{{"malicious":{malicious},"suspicious":0,"undetected":{undetected},"harmless":0,
              "timeout":0,"confirmed-timeout":0,"failure":0,"type-unsupported":3}},
            "popular_threat_classification":{{"popular_threat_category":[{{"value":"trojan","count":2}}],
              "popular_threat_name":[{{"value":"x","count":1}}],"suggested_threat_label":"{label}"}}}}}}}}"#
        )
    }

    /// VirusTotal's 404 body.
    pub fn vt_not_found() -> String {
        shared::reputation_or(
            "vt_v3_error_notfound_vtpy_test.json",
            r#"{"error":{"code":"NotFoundError","message":"Resource not found."}}"#,
        )
    }

    /// A fake VirusTotal: `GET /api/v3/files/{hash}`. Without the right
    /// `x-apikey` it answers 401 with the documented body; `known` hashes
    /// get their response; others 404 `NotFoundError`.
    pub fn virustotal(key: &str, known: Vec<(String, Response)>) -> FakeServer {
        let key = key.to_string();
        let known: HashMap<String, Response> = known.into_iter().collect();
        FakeServer::start(move |r: &Request| {
            if r.header("x-apikey") != Some(key.as_str()) {
                return Response::json(
                    401,
                    shared::reputation_or(
                        "vt_v3_error_authrequired_docs.json",
                        r#"{"error":{"code":"AuthenticationRequiredError","message":"X-Apikey header is missing"}}"#,
                    ),
                );
            }
            if r.method != "GET" || !r.path().starts_with("/api/v3/files/") {
                return Response::json(
                    400,
                    r#"{"error":{"code":"BadRequestError","message":"?"}}"#,
                );
            }
            known
                .get(r.last_segment())
                .cloned()
                .unwrap_or_else(|| Response::json(404, vt_not_found()))
        })
    }

    /// A CIRCL record of the current shape.
    pub fn circl_record(file_name: &str, known_malicious: Option<&str>) -> String {
        let km = known_malicious
            .map(|k| format!(r#""KnownMalicious":"{k}","#))
            .unwrap_or_default();
        format!(
            r#"{{"FileName":"{file_name}","FileSize":"1",{km}"db":"nsrl_modern_rds","source":"NSRL","hashlookup:trust":60}}"#
        )
    }

    /// A fake hashlookup: `GET /lookup/{md5|sha1|sha256}/{hash}`; `known`
    /// hashes get their response, others 404 `Non existing ...`.
    pub fn hashlookup(known: Vec<(String, Response)>) -> FakeServer {
        let known: HashMap<String, Response> = known.into_iter().collect();
        FakeServer::start(move |r: &Request| {
            let mut parts = r.path().trim_start_matches('/').split('/');
            let (Some("lookup"), Some(alg), Some(hash)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Response::json(404, r#"{"message":"no such endpoint"}"#);
            };
            if let Some(resp) = known.get(hash) {
                return resp.clone();
            }
            let name = match alg {
                "md5" => "MD5",
                "sha1" => "SHA-1",
                _ => "SHA-256",
            };
            Response::json(
                404,
                format!(r#"{{"message":"Non existing {name}","query":"{hash}"}}"#),
            )
        })
    }

    /// A MalwareBazaar `get_info` reply of the real shape.
    pub fn mb_ok(sha256: &str, signature: &str) -> String {
        format!(
            r#"{{"query_status":"ok","data":[{{"sha256_hash":"{sha256}","md5_hash":"00","first_seen":"2024-01-02 03:04:05","signature":"{signature}","tags":["{signature}"]}}]}}"#
        )
    }

    /// A fake MalwareBazaar: `POST /api/v1/` with `query=get_info&hash=`;
    /// without the right `Auth-Key` it answers 403 `auth_key_required`
    /// (Elastic's mock); `known` hashes get their response, others
    /// `hash_not_found`.
    pub fn malwarebazaar(key: &str, known: Vec<(String, Response)>) -> FakeServer {
        let key = key.to_string();
        let known: HashMap<String, Response> = known.into_iter().collect();
        FakeServer::start(move |r: &Request| {
            if r.header("auth-key") != Some(key.as_str()) {
                return Response::json(
                    403,
                    shared::reputation_or(
                        "malwarebazaar_auth_key_required_mock.json",
                        r#"{"query_status":"auth_key_required","data":null}"#,
                    ),
                );
            }
            if r.method != "POST"
                || r.path() != "/api/v1/"
                || r.form("query").as_deref() != Some("get_info")
            {
                return Response::json(200, r#"{"query_status":"http_post_expected"}"#);
            }
            let hash = r.form("hash").unwrap_or_default();
            known.get(&hash).cloned().unwrap_or_else(|| {
                Response::json(
                    200,
                    shared::reputation_or(
                        "malwarebazaar_hash_not_found.json",
                        r#"{"query_status":"hash_not_found"}"#,
                    ),
                )
            })
        })
    }

    /// The storage/passwords listing: the real captured body (another
    /// app's realm, which must be ignored) plus our `(user, secret)`
    /// entries in realm `sysmonenrich`.
    pub fn storage_passwords_body(ours: &[(&str, &str)]) -> String {
        let base = shared::dir()
            .and_then(|d| {
                std::fs::read_to_string(
                    d.join("splunk/examples/storage_passwords_get_trimmed.json"),
                )
                .ok()
            })
            .unwrap_or_else(|| r#"{"entry":[],"paging":{"total":0},"messages":[]}"#.to_string());
        let mut v: serde_json::Value = serde_json::from_str(&base).expect("storage/passwords JSON");
        let entries = v["entry"].as_array_mut().expect("entry list");
        for (user, secret) in ours {
            entries.push(serde_json::json!({
                "name": format!("sysmonenrich:{user}:"),
                "id": format!("https://127.0.0.1:8089/servicesNS/nobody/sysmonenrich/storage/passwords/sysmonenrich%3A{user}%3A"),
                "author": "admin",
                "acl": {"app": "sysmonenrich", "owner": "nobody", "sharing": "app"},
                "content": {"clear_password": secret, "eai:acl": null, "encr_password": "$7$ZmFrZQ==",
                            "password": "********", "realm": "sysmonenrich", "username": user}
            }));
        }
        v.to_string()
    }

    /// A fake splunkd serving `storage/passwords` to requests that carry
    /// `Authorization: Splunk <session_key>` (401 otherwise), or always
    /// answering `forced_status` when given (403 = no capability).
    pub fn splunkd(session_key: &str, body: String, forced_status: Option<u16>) -> FakeServer {
        let auth = format!("Splunk {session_key}");
        let body = Arc::new(body);
        FakeServer::start(move |r: &Request| {
            if let Some(s) = forced_status {
                return Response::json(s, r#"{"messages":[{"type":"ERROR","text":"nope"}]}"#);
            }
            if r.header("authorization") != Some(auth.as_str()) {
                return Response::json(
                    401,
                    r#"{"messages":[{"type":"WARN","text":"call not properly authenticated"}]}"#,
                );
            }
            if r.path() != "/servicesNS/nobody/sysmonenrich/storage/passwords" {
                return Response::json(404, r#"{"messages":[]}"#);
            }
            Response::json(200, body.as_str().to_owned())
        })
    }

    /// Settings for tests: providers at the given fakes (the others at a
    /// closed local port), short timeouts and backoff, no pacing, no quota
    /// unless a test sets one.
    pub fn settings(
        vt: Option<&FakeServer>,
        hl: Option<&FakeServer>,
        mb: Option<&FakeServer>,
    ) -> sysmonenrich::reputation::Settings {
        use std::time::Duration;
        use sysmonenrich::reputation::Settings;
        let mut s = Settings::default();
        let nowhere = "http://127.0.0.1:9".to_string();
        for (p, fake) in [
            (&mut s.virustotal, vt),
            (&mut s.hashlookup, hl),
            (&mut s.malwarebazaar, mb),
        ] {
            p.base_url = fake.map_or_else(|| nowhere.clone(), FakeServer::url);
            p.per_minute = 0;
            p.per_day = 0;
            p.min_interval = Duration::ZERO;
            p.concurrency = 4;
        }
        s.request_timeout = Duration::from_secs(2);
        s.retry_base_delay = Duration::from_millis(10);
        s.retry_max_delay = Duration::from_millis(50);
        s
    }

    /// Search options for `providers` with a 5 s budget and room for 1000
    /// lookups.
    pub fn search(providers: &[&str]) -> sysmonenrich::reputation::SearchOptions {
        sysmonenrich::reputation::SearchOptions {
            providers: providers.iter().map(|p| p.to_string()).collect(),
            max_lookups: 1000,
            lookup_budget: std::time::Duration::from_secs(5),
            refresh: false,
        }
    }

    /// One file per hex hash (the width picks the algorithm).
    pub fn files<S: AsRef<str>>(hexes: &[S]) -> Vec<sysmonenrich::sysmon::hashes::FileHashes> {
        hexes
            .iter()
            .map(|h| {
                let h = h.as_ref();
                let alg = match h.len() {
                    32 => "MD5",
                    40 => "SHA1",
                    _ => "SHA256",
                };
                sysmonenrich::sysmon::hashes::FileHashes::parse_sysmon(
                    format!("{alg}={h}").as_bytes(),
                )
            })
            .collect()
    }

    /// The lookup key of a hex hash.
    pub fn key(hex: &str) -> sysmonenrich::reputation::LookupKey {
        sysmonenrich::reputation::LookupKey::parse_hex(hex).expect("hex hash")
    }
}
