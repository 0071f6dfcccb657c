//! Services that fail loudly or hang (issue 21): a reputation provider
//! answering 500, garbage, a 100 MB body (fixed length or chunked) or
//! resetting the connection; a splunkd that accepts and never answers.
//!
//! The real binary, driven by the splunkd stand-in over generated Sysmon
//! events (every row has hashes and a process), with stand-ins for the
//! provider and splunkd on 127.0.0.1 port 0. What is checked is what the
//! issue's "done when" says: time against the same search without the
//! failing service, WARN lines in the log, the second search skipping a
//! service whose circuit opened.

mod common;

use common::datasets::{self, Table};
use common::serial::serial;
use common::services::{FakeServer, Request, Response};
use common::splunkd::{self, closed_port, Options, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Site {
    home: tempfile::TempDir,
    app: tempfile::TempDir,
}

impl Site {
    /// An app whose providers are all at `provider_url`.
    fn new(provider_url: &str) -> Site {
        let site = Site {
            home: tempfile::tempdir().unwrap(),
            app: tempfile::tempdir().unwrap(),
        };
        let local = site.app.path().join("local");
        std::fs::create_dir_all(&local).unwrap();
        let conf: String = ["virustotal", "hashlookup", "malwarebazaar"]
            .iter()
            .map(|p| format!("[provider:{p}]\nbase_url = {provider_url}\n\n"))
            .collect();
        std::fs::write(local.join("sysmonenrich.conf"), conf).unwrap();
        site
    }

    /// One search; its outcome, wall time and the WARN lines it logged.
    fn run(
        &self,
        table: &Arc<Table>,
        splunkd_uri: Option<String>,
        args: &[&str],
    ) -> (Outcome, Duration, Vec<String>) {
        let before = self.log().len();
        let opts = Options {
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
            splunkd_uri,
            rows_per_chunk: 100,
            reply_timeout: Duration::from_secs(120),
            ..Options::with_args(args)
        };
        let started = Instant::now();
        let out = splunkd::run(table.clone(), &opts);
        let took = started.elapsed();
        assert!(out.violations.is_empty(), "{}", out.report());
        assert!(out.error_texts().is_empty(), "{:?}", out.error_texts());
        let warns = self.log()[before..]
            .iter()
            .filter(|l| l.contains("WARN"))
            .cloned()
            .collect();
        (out, took, warns)
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.home.path().join("var/log/splunk/sysmonenrich.log"))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn circuit(&self, name: &str) -> Option<i64> {
        let db = rusqlite::Connection::open(self.home.path().join("var/lib/sysmonenrich/state.db"))
            .ok()?;
        db.query_row(
            "SELECT open_until FROM circuits WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .ok()
    }
}

/// 200 generated rows.
fn rows() -> Arc<Table> {
    let mut t = datasets::generated();
    t.rows.truncate(200);
    Arc::new(t)
}

fn column(out: &Outcome, name: &str) -> Vec<String> {
    (0..out.merged.len())
        .map(|r| {
            out.merged
                .get(r, name)
                .map(|v| v.joined().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

const BIG: usize = 100 << 20;

fn failing(kind: &'static str) -> FakeServer {
    FakeServer::start(move |_r: &Request| match kind {
        "500" => Response::json(500, r#"{"message":"internal error"}"#),
        "garbage" => Response::json(200, "{\"md5\": [1, 2, {{{ not json"),
        "big" => Response::json(200, vec![b'x'; BIG]),
        "big-chunked" => Response::stream(vec!["y".repeat(1 << 20) + "\n"; BIG >> 20]),
        "reset" => Response::close(),
        _ => unreachable!(),
    })
}

#[test]
fn a_provider_failing_loudly_costs_one_circuit_and_few_lines() {
    let _one_at_a_time = serial();
    let table = rows();
    let mut problems = Vec::new();
    for kind in ["500", "garbage", "big", "big-chunked", "reset"] {
        let server = failing(kind);
        let site = Site::new(&server.url());
        // No splunkd, no backfill: only the provider can cost time.
        let args = [
            "providers=hashlookup",
            "backfill=false",
            "lookup_budget=10s",
        ];
        let (_, base, _) = site.run(&table, None, &["providers=local", "backfill=false"]);
        let (first, t1, w1) = site.run(&table, None, &args);
        let requests1 = server.count();
        let (_, t2, w2) = site.run(&table, None, &args);
        let requests2 = server.count() - requests1;
        eprintln!(
            "{kind}: local-only {base:?}; first {t1:?}, {requests1} requests, {} WARN; second {t2:?}, {requests2} requests, {} WARN",
            w1.len(),
            w2.len()
        );
        let verdicts = column(&first, "rep_verdict");
        if !verdicts.iter().any(|v| v == "error" || v == "pending") {
            problems.push(format!("{kind}: no row error/pending: {verdicts:?}"));
        }
        if t1 > base + Duration::from_secs(12) {
            problems.push(format!("{kind}: first search {t1:?} > {base:?} + budget"));
        }
        for (n, w) in [(1, &w1), (2, &w2)] {
            let about: Vec<&String> = w.iter().filter(|l| l.contains("hashlookup")).collect();
            if about.len() > 3 {
                problems.push(format!(
                    "{kind}: search {n}: {} WARN: {about:#?}",
                    about.len()
                ));
            }
        }
        if site.circuit("hashlookup").is_none() {
            problems.push(format!("{kind}: the hashlookup circuit did not open"));
        }
        if requests2 > 0 || t2 > base + Duration::from_millis(1500) {
            problems.push(format!(
                "{kind}: second search {t2:?} (local-only {base:?}) sent {requests2} requests"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_splunkd_that_never_answers_costs_one_short_wait() {
    let _one_at_a_time = serial();
    let table = rows();
    // Providers refuse at once (their circuits open in the first run), so
    // what differs between the runs is splunkd alone.
    let site = Site::new(&format!("http://127.0.0.1:{}", closed_port()));
    let hung = FakeServer::start(|_r: &Request| Response::hang());
    let about_splunkd = |w: &[String]| -> Vec<String> {
        w.iter()
            .filter(|l| l.contains("splunkd"))
            .cloned()
            .collect()
    };
    // The same search with no splunkd URI (empty, as outside Splunk).
    let nowhere = || Some(String::new());
    site.run(&table, nowhere(), &[]);
    let (_, base, _) = site.run(&table, nowhere(), &[]);
    let (first, t1, w1) = site.run(&table, Some(hung.url()), &[]);
    let asked = hung.count();
    let (_, t2, w2) = site.run(&table, Some(hung.url()), &[]);
    eprintln!(
        "no splunkd {base:?}; hung splunkd: first {t1:?} ({asked} requests, WARN {:?}), next {t2:?} ({} requests, WARN {:?})",
        about_splunkd(&w1),
        hung.count() - asked,
        about_splunkd(&w2)
    );
    let mut problems = Vec::new();
    if first.merged.len() != table.rows.len() {
        problems.push(format!(
            "{} rows of {}",
            first.merged.len(),
            table.rows.len()
        ));
    }
    if t1 > base + Duration::from_secs(8) {
        problems.push(format!("first search {t1:?} > {base:?} + 8 s"));
    }
    if t2 > base + Duration::from_millis(1500) {
        problems.push(format!("next search {t2:?} > {base:?} + 1.5 s"));
    }
    for (n, w) in [(1, &w1), (2, &w2)] {
        let w = about_splunkd(w);
        if w.is_empty() || w.len() > 2 {
            problems.push(format!(
                "search {n}: {} WARN about splunkd: {w:#?}",
                w.len()
            ));
        }
    }
    if hung.count() != asked {
        problems.push("the next search called splunkd again".into());
    }
    if site.circuit("splunkd").is_none() {
        problems.push("no splunkd circuit recorded".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
