//! Quotas shared by a search head cluster (issue 13, item 2).
//!
//! Three members of a fake cluster, each with its own state database (each
//! member keeps its own quota ledger), run one search at the same moment
//! against a fake VirusTotal that allows 6 requests per minute and answers
//! 429 beyond. With `quota_share = auto` (the default) each member asks
//! its splunkd `GET /services/server/info` (roles with `shc_member`) and
//! `GET /services/shcluster/member/members` (three entries), so each spends
//! at most 6 / 3 = 2 requests a minute: at most 6 granted in any 60 s, no
//! 429. The member count is cached in each state database, and the same
//! searches with `quota_share = 1` (each member spends the whole quota)
//! show the test can fail.

mod common;

use common::datasets::{self, Table};
use common::services::reputation as fake;
use common::services::{FakeServer, Request, Response};
use common::splunkd::{self, Options};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// The session key the stand-in puts in every getinfo (see
/// tests/command_reputation.rs).
const STANDIN_SESSION_KEY: &str =
    "Xq9^fAkE_sEsSiOn_KeY^for_tests_only^Zk2mWv8pR0cJ7dT4yN1bL5hG3sQ6uE9aK_oI2^xY";
const VT_KEY: &str = "7c3f9a1d5b8e2f4a6c0d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f";
const LIMIT: usize = 6;

/// splunkd's `server/info` of a cluster member (the shape splunkd 9.x
/// answers with `output_mode=json`, trimmed to what matters).
fn server_info(name: &str) -> String {
    serde_json::json!({
        "links": {},
        "origin": "https://127.0.0.1:8089/services/server/info",
        "generator": {"build": "e9494146ae5c", "version": "9.1.2"},
        "entry": [{
            "name": "server-info",
            "id": "https://127.0.0.1:8089/services/server/info/server-info",
            "content": {
                "serverName": name,
                "server_roles": ["search_head", "kv_store", "shc_member"],
                "version": "9.1.2"
            }
        }],
        "paging": {"total": 1, "perPage": 30, "offset": 0},
        "messages": []
    })
    .to_string()
}

/// `shcluster/member/members` with three members.
fn members() -> String {
    let entry = |i: u32| {
        serde_json::json!({
            "name": format!("5EED{i:04}-0000-4000-8000-00000000000{i}"),
            "content": {
                "label": format!("sh{i}"),
                "mgmt_uri": format!("https://sh{i}.corp.example:8089"),
                "status": "Up"
            }
        })
    };
    serde_json::json!({"entry": [entry(1), entry(2), entry(3)], "paging": {"total": 3}, "messages": []})
        .to_string()
}

/// One member's splunkd: the VT key, its roles, the member list.
fn member_splunkd(name: &'static str) -> FakeServer {
    let passwords = fake::storage_passwords_body(&[("virustotal", VT_KEY)]);
    let auth = format!("Splunk {STANDIN_SESSION_KEY}");
    FakeServer::start(move |r: &Request| {
        if r.header("authorization") != Some(auth.as_str()) {
            return Response::json(
                401,
                r#"{"messages":[{"type":"WARN","text":"call not properly authenticated"}]}"#,
            );
        }
        match r.path() {
            "/servicesNS/nobody/sysmonenrich/storage/passwords" => {
                Response::json(200, passwords.clone())
            }
            "/services/server/info" => Response::json(200, server_info(name)),
            "/services/shcluster/member/members" => Response::json(200, members()),
            _ => Response::json(404, r#"{"messages":[{"type":"ERROR","text":"Not Found"}]}"#),
        }
    })
}

/// A VirusTotal allowing [`LIMIT`] requests in any 60 s; answers 429
/// beyond. Records the time of every grant and every refusal.
struct Vt {
    server: FakeServer,
    log: Arc<Mutex<Vec<(Instant, u16)>>>,
}

fn limited_virustotal() -> Vt {
    let log: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let server = FakeServer::start(move |r: &Request| {
        let mut log = seen.lock().unwrap();
        let now = r.at;
        let recent = log
            .iter()
            .filter(|(t, s)| *s == 200 && now.duration_since(*t) < Duration::from_secs(60))
            .count();
        let status = if recent >= LIMIT { 429 } else { 200 };
        log.push((now, status));
        if status == 429 {
            return Response::json(
                429,
                r#"{"error":{"code":"QuotaExceededError","message":"Quota exceeded"}}"#,
            );
        }
        let hash = r.last_segment().to_string();
        Response::json(200, fake::vt_file(&hash, 0, 70, ""))
    });
    Vt { server, log }
}

struct Member {
    home: tempfile::TempDir,
    app: tempfile::TempDir,
    splunkd: FakeServer,
}

impl Member {
    fn new(name: &'static str, vt: &FakeServer, share: &str) -> Member {
        let m = Member {
            home: tempfile::Builder::new()
                .prefix("shc_home.")
                .tempdir()
                .unwrap(),
            app: tempfile::Builder::new()
                .prefix("shc_app.")
                .tempdir()
                .unwrap(),
            splunkd: member_splunkd(name),
        };
        let local = m.app.path().join("local");
        std::fs::create_dir_all(&local).unwrap();
        std::fs::write(
            local.join("sysmonenrich.conf"),
            format!(
                "[reputation]\nmax_retries = 0\n\n\
                 [provider:virustotal]\nbase_url = {}\nrequests_per_minute = {LIMIT}\n\
                 requests_per_day = 0\nconcurrency = 2\nmin_interval = 0\nquota_share = {share}\n",
                vt.url()
            ),
        )
        .unwrap();
        m
    }

    fn options(&self) -> Options {
        Options {
            env: vec![
                (
                    "SPLUNK_HOME".into(),
                    self.home.path().to_string_lossy().into_owned(),
                ),
                (
                    "SYSMONENRICH_APP_DIR".into(),
                    self.app.path().to_string_lossy().into_owned(),
                ),
            ],
            splunkd_uri: Some(self.splunkd.url()),
            rows_per_chunk: 1_000,
            ..Options::with_args(&["providers=virustotal", "backfill=false", "lookup_budget=3s"])
        }
    }

    fn cached_members(&self) -> Option<String> {
        let db = rusqlite::Connection::open(self.home.path().join("var/lib/sysmonenrich/state.db"))
            .ok()?;
        db.query_row(
            "SELECT value FROM facts WHERE name = 'search_heads'",
            [],
            |r| r.get(0),
        )
        .ok()
    }
}

/// Runs one search on each member at the same moment; returns the VT log.
fn cluster_search(share: &str, table: &Arc<Table>) -> (Vec<(Instant, u16)>, Vec<Member>) {
    let vt = limited_virustotal();
    let members: Vec<Member> = ["sh1", "sh2", "sh3"]
        .into_iter()
        .map(|n| Member::new(n, &vt.server, share))
        .collect();
    let barrier = Arc::new(Barrier::new(members.len()));
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = members
            .iter()
            .map(|m| {
                let opts = m.options();
                let table = table.clone();
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    splunkd::run(table, &opts)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outcomes {
        assert!(o.violations.is_empty(), "{}", o.report());
        assert!(o.error_texts().is_empty(), "{:?}", o.error_texts());
    }
    let log = vt.log.lock().unwrap().clone();
    (log, members)
}

/// The generated data set (always there): far more distinct hashes than
/// the quota.
fn table() -> Arc<Table> {
    Arc::new(datasets::generated())
}

#[test]
fn three_members_share_six_per_minute_without_a_429() {
    let (log, members) = cluster_search("auto", &table());
    let granted: Vec<Instant> = log
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(t, _)| *t)
        .collect();
    let refused = log.iter().filter(|(_, s)| *s == 429).count();
    eprintln!("auto: {} granted, {refused} refused (429)", granted.len());
    assert_eq!(refused, 0, "VirusTotal answered 429 {refused} times");
    for (i, t) in granted.iter().enumerate() {
        let in_window = granted[i..]
            .iter()
            .filter(|u| u.duration_since(*t) < Duration::from_secs(60))
            .count();
        assert!(
            in_window <= LIMIT,
            "{in_window} grants in 60 s from grant {i}"
        );
    }
    assert!(
        !granted.is_empty(),
        "no lookup at all: the test proves nothing"
    );
    for m in &members {
        assert_eq!(m.cached_members().as_deref(), Some("3"));
        let paths: Vec<String> = m
            .splunkd
            .requests()
            .iter()
            .map(|r| r.path().to_string())
            .collect();
        assert!(
            paths.iter().any(|p| p == "/services/server/info"),
            "{paths:?}"
        );
    }
}

#[test]
fn without_the_share_three_members_get_refused() {
    let (log, _) = cluster_search("1", &table());
    let refused = log.iter().filter(|(_, s)| *s == 429).count();
    eprintln!("share 1: {} requests, {refused} refused (429)", log.len());
    assert!(
        refused > 0,
        "each member spending the whole quota should meet a 429"
    );
}
