//! One memory for a search head cluster (issue 19): three members, each
//! its own `SPLUNK_HOME` (state database, log), one fake splunkd with the
//! KV store (tests/common/fake_kvstore.rs) reporting this search head as
//! an `shc_member`, driven through the splunkd stand-in with the shared
//! data sets.
//!
//! - (a) lineage: the parents' creation events searched on member A, every
//!   other event on member B, both `backfill=false`: B's `lineage`,
//!   `lineage_status`, `lineage_depth` and `lineage_sigma` equal the same
//!   two searches on one search head; with `shared = off` they do not.
//! - (b) reputation: hashes looked up on A against a fake provider; the
//!   same search on B and C makes no provider request and gives the same
//!   `rep_*`; an expired shared answer is asked again.
//! - (c) faults: the KV store not ready, hanging, slow (10 s a request),
//!   refusing writes (403), failing (503) or sending garbage: every row
//!   back within the budget + 2 s of the same search without the tier, at
//!   most 3 log lines about the shared tier.
//! - (d) retention: process documents past `[state] process_retention` and
//!   expired answers are deleted from the KV store, once an hour per
//!   member rather than on every search.

mod common;

use common::datasets::{self, Table};
use common::fake_kvstore::{FakeKvStore, KvMode};
use common::fake_splunkd::normalize_guid;
use common::home::{app_dir_with, Home};
use common::serial::serial;
use common::services::reputation as fake;
use common::services::{FakeServer, Request, Response};
use common::splunkd::{self, Options, Outcome};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stand-in's session key (tests/common/splunkd.rs).
const STANDIN_SESSION_KEY: &str =
    "Xq9^fAkE_sEsSiOn_KeY^for_tests_only^Zk2mWv8pR0cJ7dT4yN1bL5hG3sQ6uE9aK_oI2^xY";
const PROCESSES: &str = "sysmonenrich_processes";
const REPUTATION: &str = "sysmonenrich_reputation";
const LINEAGE_COLUMNS: [&str; 4] = [
    "lineage",
    "lineage_status",
    "lineage_depth",
    "lineage_sigma",
];

fn cell(t: &Table, row: usize, column: &str) -> String {
    t.get(row, column)
        .map(|v| v.joined().into_owned())
        .unwrap_or_default()
}

fn out_cell(out: &Outcome, row: usize, column: &str) -> String {
    out.merged
        .get(row, column)
        .map(|v| v.joined().into_owned())
        .unwrap_or_default()
}

fn subset(t: &Table, keep: impl Fn(usize) -> bool, name: &str) -> Table {
    Table {
        name: name.to_string(),
        columns: t.columns.clone(),
        rows: t
            .rows
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, r)| r.clone())
            .collect(),
    }
}

/// (the parents' creation events, everything else).
fn split_parents(t: &Table) -> (Table, Table) {
    let parents: HashSet<String> = (0..t.len())
        .map(|i| normalize_guid(&cell(t, i, "ParentProcessGuid")))
        .filter(|g| !g.is_empty())
        .collect();
    let is_parent_creation = |i: usize| {
        cell(t, i, "EventCode").trim() == "1"
            && parents.contains(&normalize_guid(&cell(t, i, "ProcessGuid")))
    };
    (
        subset(t, is_parent_creation, "parents"),
        subset(t, |i| !is_parent_creation(i), "others"),
    )
}

fn run(
    table: &Table,
    home: &Home,
    app: &std::path::Path,
    args: &[&str],
    uri: Option<String>,
) -> Outcome {
    let mut o: Options = home.options(args, 50_000, Some(app));
    o.splunkd_uri = uri;
    let out = splunkd::run(Arc::new(table.clone()), &o);
    assert!(out.violations.is_empty(), "{}", out.report());
    assert!(out.error_texts().is_empty(), "{:?}", out.error_texts());
    assert_eq!(out.exit_code, Some(0), "{}", out.report());
    assert_eq!(out.merged.len(), table.len(), "every row back");
    out
}

fn sigma_conf() -> String {
    match datasets::sigma_dir() {
        Some(dir) => format!(
            "[sigma]\nrules = {}\n",
            ["rules", "rules-threat-hunting", "rules-emerging-threats"]
                .iter()
                .map(|d| dir.join(d).to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",")
        ),
        None => String::new(),
    }
}

/// Lines of a member's log about the shared tier.
fn tier_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("shared tier") || l.contains("kvstore") || l.contains("kv store")
        })
        .map(str::to_string)
        .collect()
}

fn key_nowhere(kv: &FakeKvStore, homes: &[&Home]) {
    for r in kv.requests() {
        assert!(!r.target.contains(STANDIN_SESSION_KEY), "key in a target");
        assert!(
            !String::from_utf8_lossy(&r.body).contains(STANDIN_SESSION_KEY),
            "key in a KV request body"
        );
    }
    for c in [PROCESSES, REPUTATION] {
        for d in kv.docs(c) {
            assert!(
                !d.to_string().contains(STANDIN_SESSION_KEY),
                "key in a document"
            );
        }
    }
    for h in homes {
        assert!(!h.log().contains(STANDIN_SESSION_KEY), "key in the log");
    }
}

// ---------------------------------------------------------------------------
// (a) lineage across members
// ---------------------------------------------------------------------------

#[test]
fn lineage_learnt_on_one_member_completes_chains_on_another() {
    let _serial = serial();
    let Some(full) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    let (parents, others) = split_parents(&full);
    assert!(
        parents.len() > 10 && others.len() > 100,
        "{} / {}",
        parents.len(),
        others.len()
    );
    let sigma = sigma_conf();
    let on = app_dir_with(
        "shc_app_on.",
        &format!("[state]\nshared = auto\nshared_budget = 10s\n{sigma}"),
    );
    let off = app_dir_with("shc_app_off.", &format!("[state]\nshared = off\n{sigma}"));
    let args = ["backfill=false", "reputation=false"];

    // One search head: both searches against one state database.
    let single = Home::new("shc_single.");
    run(&parents, &single, off.path(), &args, None);
    let reference = run(&others, &single, off.path(), &args, None);

    // Three members, one KV store: A learns, B reads.
    let kv = FakeKvStore::start(&full);
    let (a, b) = (Home::member("shc_a."), Home::member("shc_b."));
    run(&parents, &a, on.path(), &args, Some(kv.uri()));
    let stored = kv.docs(PROCESSES).len();
    assert!(stored > 0, "member A wrote no process document");
    let on_b = run(&others, &b, on.path(), &args, Some(kv.uri()));
    assert!(
        kv.data_requests(PROCESSES)
            .iter()
            .any(|r| r.method == "GET"),
        "member B never read the KV store"
    );

    // The same without the tier.
    let kv_off = FakeKvStore::start(&full);
    let (a2, b2) = (Home::new("shc_a2."), Home::new("shc_b2."));
    run(&parents, &a2, off.path(), &args, Some(kv_off.uri()));
    let off_b = run(&others, &b2, off.path(), &args, Some(kv_off.uri()));
    assert!(
        kv_off.data_requests(PROCESSES).is_empty(),
        "shared = off used the KV store"
    );

    let mut differ_shared = Vec::new();
    let mut differ_off = 0;
    let mut sigma_named = 0;
    let mut deeper = 0;
    for row in 0..others.len() {
        for col in LINEAGE_COLUMNS {
            let want = out_cell(&reference, row, col);
            if out_cell(&on_b, row, col) != want && differ_shared.len() < 5 {
                differ_shared.push(format!(
                    "row {row} {col}: shared {:?} vs one search head {want:?}",
                    out_cell(&on_b, row, col)
                ));
            }
            if out_cell(&off_b, row, col) != want {
                differ_off += 1;
            }
        }
        if !out_cell(&reference, row, "lineage_sigma").is_empty() {
            sigma_named += 1;
        }
        let depth = |o: &Outcome| {
            out_cell(o, row, "lineage_depth")
                .parse::<u32>()
                .unwrap_or(0)
        };
        if depth(&reference) > depth(&off_b) {
            deeper += 1;
        }
    }
    eprintln!(
        "{} parents' creations on A ({stored} documents), {} other events on B: \
         {deeper} rows deeper than without the tier, {sigma_named} with lineage_sigma, \
         {differ_off} cells differ with shared = off",
        parents.len(),
        others.len()
    );
    assert!(differ_shared.is_empty(), "{differ_shared:#?}");
    assert!(
        deeper > 0 && differ_off > 0,
        "shared = off gives the same lineage: the test proves nothing"
    );
    if datasets::sigma_dir().is_some() {
        assert!(
            sigma_named > 0,
            "no lineage_sigma at all: the Sigma part proves nothing"
        );
    }
    key_nowhere(&kv, &[&a, &b]);
}

// ---------------------------------------------------------------------------
// (b) reputation across members
// ---------------------------------------------------------------------------

/// hashlookup answering "known malicious" (a `suspicious` verdict) for
/// hashes ending in 0-3, 404
/// for the rest.
fn provider() -> FakeServer {
    FakeServer::start(|r: &Request| {
        let hash = r.last_segment().to_ascii_lowercase();
        if hash.ends_with(['0', '1', '2', '3']) {
            Response::json(200, fake::circl_record("evil.exe", Some("malware.family")))
        } else {
            Response::json(
                404,
                format!(r#"{{"message":"Non existing SHA-256","query":"{hash}"}}"#),
            )
        }
    })
}

/// The `rep_*` cells of every row but `rep_cached` (which says whether
/// this member asked: it differs by design).
fn rep_cells(out: &Outcome, rows: usize) -> Vec<Vec<String>> {
    let cols: Vec<String> = out
        .merged
        .columns()
        .iter()
        .filter(|c| c.starts_with("rep_") && *c != "rep_cached")
        .cloned()
        .collect();
    (0..rows)
        .map(|r| {
            cols.iter()
                .map(|c| format!("{c}={}", out_cell(out, r, c)))
                .collect()
        })
        .collect()
}

fn same_rep(member: &str, got: &Outcome, want: &Outcome, rows: usize, skip: &str) {
    let cells = |o| -> Vec<Vec<String>> {
        rep_cells(o, rows)
            .into_iter()
            .map(|r| r.into_iter().filter(|c| !c.starts_with(skip)).collect())
            .collect()
    };
    let (g, w) = (cells(got), cells(want));
    assert!(g[0].len() >= 5, "no rep_* columns: {:?}", g[0]);
    if let Some(i) = (0..rows).find(|&i| g[i] != w[i]) {
        panic!("member {member}, row {i}: {:?}\nmember A: {:?}", g[i], w[i]);
    }
}

fn local_expiry(home: &Home, key: &str) -> Option<i64> {
    let db = rusqlite::Connection::open(home.db()).ok()?;
    db.query_row(
        "SELECT expires_at FROM reputation_cache WHERE provider = 'hashlookup' AND key = ?1",
        [key],
        |r| r.get(0),
    )
    .ok()
}

#[test]
fn a_hash_looked_up_on_one_member_is_not_asked_again_on_the_others() {
    let _serial = serial();
    let Some(full) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    // The creations with hashes: a few dozen distinct files.
    let table = subset(
        &full,
        |i| cell(&full, i, "Hashes").contains("SHA256="),
        "hashed",
    );
    assert!(table.len() > 20, "{}", table.len());
    let hashlookup = provider();
    let conf = |shared: &str| {
        format!(
            "[state]\nshared = {shared}\nshared_budget = 10s\n\n[reputation]\nmax_retries = 0\n\n\
             [provider:hashlookup]\nbase_url = {}\n",
            hashlookup.url()
        )
    };
    let on = app_dir_with("shc_rep_on.", &conf("auto"));
    let off = app_dir_with("shc_rep_off.", &conf("off"));
    let args = [
        "providers=hashlookup",
        "backfill=false",
        "max_lookups=100000",
        "lookup_budget=60s",
    ];
    let kv = FakeKvStore::start(&full);
    let (a, b, c) = (
        Home::member("shc_ra."),
        Home::member("shc_rb."),
        Home::member("shc_rc."),
    );

    let on_a = run(&table, &a, on.path(), &args, Some(kv.uri()));
    let asked_a = hashlookup.count();
    let docs = kv.docs(REPUTATION);
    assert!(
        asked_a > 0 && !docs.is_empty(),
        "A asked {asked_a}, {} documents",
        docs.len()
    );
    assert!(
        docs.iter().any(|d| d["rep_verdict"] == "suspicious"),
        "no flagged verdict shared: {:?}",
        &docs[..docs.len().min(3)]
    );
    let on_b = run(&table, &b, on.path(), &args, Some(kv.uri()));
    assert_eq!(hashlookup.count(), asked_a, "member B asked the provider");
    same_rep("B", &on_b, &on_a, table.len(), "-");
    // B keeps the shared answers with the expiry A gave them.
    for d in &docs {
        let key = d["_key"]
            .as_str()
            .unwrap()
            .trim_start_matches("hashlookup:");
        assert_eq!(local_expiry(&b, key), d["expires"].as_i64(), "{key}");
    }

    // One shared answer expired: C asks the provider for that one only.
    let mut expired = docs[0].clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    expired["checked"] = (now - 100).into();
    expired["expires"] = (now - 1).into();
    kv.insert(REPUTATION, vec![expired.clone()]);
    let on_c = run(&table, &c, on.path(), &args, Some(kv.uri()));
    let asked_c = hashlookup.count() - asked_a;
    assert_eq!(
        asked_c, 1,
        "C asked {asked_c} times, not just for the expired answer"
    );
    let hash = expired["hash"].as_str().unwrap();
    assert!(
        hashlookup.requests().last().unwrap().target.contains(hash),
        "C asked for another hash"
    );
    // The same verdicts; the answer asked again is newer.
    same_rep("C", &on_c, &on_a, table.len(), "rep_checked=");

    // Without the tier, a second member asks again.
    let kv_off = FakeKvStore::start(&full);
    let d = Home::new("shc_rd.");
    let before = hashlookup.count();
    run(&table, &d, off.path(), &args, Some(kv_off.uri()));
    assert_eq!(
        hashlookup.count() - before,
        asked_a,
        "shared = off: a member asks for itself"
    );
    key_nowhere(&kv, &[&a, &b, &c]);
}

// ---------------------------------------------------------------------------
// (c) faults
// ---------------------------------------------------------------------------

#[test]
fn a_failing_kv_store_costs_at_most_its_budget_and_three_log_lines() {
    let _serial = serial();
    let Some(full) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    let args = ["backfill=false", "reputation=false"];
    let off = app_dir_with("shc_fault_off.", "[state]\nshared = off\n");
    let on = app_dir_with("shc_fault_on.", "[state]\nshared = auto\n");
    let budget = Duration::from_secs(2);
    // The same search without the tier, twice (the second warm, as the
    // fault runs are): the slower is the baseline.
    let baseline = (0..2)
        .map(|_| {
            let h = Home::new("shc_fault_base.");
            let t = Instant::now();
            run(&full, &h, off.path(), &args, None);
            t.elapsed()
        })
        .max()
        .unwrap();
    let modes = [
        KvMode::NotReady,
        KvMode::Hang,
        KvMode::Slow(Duration::from_secs(10)),
        KvMode::ForbidWrites,
        KvMode::Fail(503),
        KvMode::Garbage,
    ];
    let mut problems = Vec::new();
    for mode in modes {
        let kv = FakeKvStore::start(&full);
        kv.set_mode(mode);
        let home = Home::member("shc_fault.");
        let started = Instant::now();
        let out = run(&full, &home, on.path(), &args, Some(kv.uri()));
        let took = started.elapsed();
        let limit = baseline + budget + Duration::from_secs(2);
        let lines = tier_lines(&home.log());
        eprintln!(
            "{mode:?}: {:.2} s (baseline {:.2} s), {} rows, {} log lines about the tier",
            took.as_secs_f64(),
            baseline.as_secs_f64(),
            out.merged.len(),
            lines.len()
        );
        if took > limit {
            problems.push(format!("{mode:?}: took {took:?}, more than {limit:?}"));
        }
        if lines.len() > 3 {
            problems.push(format!("{mode:?}: {} lines: {lines:#?}", lines.len()));
        }
        // The local tier is whole whatever the KV store did.
        let local: i64 = rusqlite::Connection::open(home.db())
            .unwrap()
            .query_row("SELECT count(*) FROM processes", [], |r| r.get(0))
            .unwrap();
        if local == 0 {
            problems.push(format!("{mode:?}: the local process table is empty"));
        }
        if mode == KvMode::ForbidWrites {
            if !kv.docs(PROCESSES).is_empty() {
                problems.push("403: documents were written".into());
            }
            if !lines
                .iter()
                .any(|l| l.contains("INFO") && l.contains("not write"))
            {
                problems.push(format!("403: no INFO about read-only access: {lines:#?}"));
            }
            if !kv
                .data_requests(PROCESSES)
                .iter()
                .any(|r| r.method == "GET")
            {
                problems.push("403: reads stopped too".into());
            }
        }
        if matches!(
            mode,
            KvMode::Hang | KvMode::Slow(_) | KvMode::Fail(_) | KvMode::Garbage
        ) {
            if !lines.iter().any(|l| l.contains("WARN")) {
                problems.push(format!("{mode:?}: no WARN: {lines:#?}"));
            }
            // The cool-down is recorded: the next search skips the KV
            // store at once, with one WARN.
            let before = kv.requests().len();
            let t = Instant::now();
            run(&full, &home, on.path(), &args, Some(kv.uri()));
            let data = kv.requests()[before..]
                .iter()
                .filter(|r| !r.collection.is_empty())
                .count();
            if data > 0 {
                problems.push(format!(
                    "{mode:?}: the next search asked the KV store {data} times"
                ));
            }
            if t.elapsed() > baseline + Duration::from_secs(2) {
                problems.push(format!("{mode:?}: the next search took {:?}", t.elapsed()));
            }
        }
        key_nowhere(&kv, &[&home]);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn purge_by_search_or_user_deletes_their_process_documents() {
    use serde_json::json;
    use sysmonenrich::enrich::shared::tier::purge_processes_by;
    use sysmonenrich::protocol::metadata::Secret;
    use sysmonenrich::splunk::kvstore::KvStore;
    let kv = FakeKvStore::empty();
    let doc = |k: u32, sid: &str, user: &str| json!({"_key": format!("{{00000000-0000-0000-0000-{k:012}}}"), "writer_sid": sid, "writer_user": user});
    kv.insert(
        PROCESSES,
        vec![
            doc(1, "s1", "alice"),
            doc(2, "s1", "alice"),
            doc(3, "s2", "bob"),
            doc(4, "s3", "alice"),
        ],
    );
    let client = sysmonenrich::splunk::Client::new(&sysmonenrich::splunk::Target::new(&kv.uri()))
        .unwrap()
        .with_session_key(&Secret::new("k".to_string()));
    let store = KvStore::new(client);
    assert_eq!(purge_processes_by(&store, Some("s1"), None).unwrap(), 2);
    assert_eq!(kv.docs(PROCESSES).len(), 2);
    assert_eq!(purge_processes_by(&store, None, Some("alice")).unwrap(), 1);
    let left: Vec<String> = kv
        .docs(PROCESSES)
        .iter()
        .map(|d| d["writer_user"].to_string())
        .collect();
    assert_eq!(left, ["\"bob\""]);
    // Neither given: nothing deleted, no request.
    let before = kv.requests().len();
    assert_eq!(purge_processes_by(&store, None, None).unwrap(), 0);
    assert_eq!(kv.requests().len(), before);
}

#[test]
fn retention_deletes_old_process_documents_and_expired_answers_from_the_kv_store() {
    use serde_json::json;
    let _serial = serial();
    let Some(full) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    let app = app_dir_with(
        "shc_retention.",
        "[state]\nshared = auto\nshared_budget = 10s\nprocess_retention = 30d\n",
    );
    let kv = FakeKvStore::start(&full);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let process = |k: u32, seen_at: i64| {
        json!({"_key": format!("{{00000000-0000-0000-0000-{k:012}}}"), "seen_at": seen_at,
               "writer_sid": "old", "writer_user": "u"})
    };
    let answer = |hash: &str, expires: i64| {
        json!({"_key": hash, "hash": hash, "verdict": "clean", "checked": expires - 3600,
               "expires": expires})
    };
    kv.insert(
        PROCESSES,
        vec![
            process(1, now - 31 * 86_400), // past the 30 days
            process(2, now - 86_400),
        ],
    );
    kv.insert(
        REPUTATION,
        vec![
            answer(&"a".repeat(64), now - 60), // expired a minute ago
            answer(&"b".repeat(64), now + 86_400),
        ],
    );
    let home = Home::member("shc_retention_a.");
    run(
        &full,
        &home,
        app.path(),
        &["backfill=false", "reputation=false"],
        Some(kv.uri()),
    );
    let keys = |collection: &str| -> HashSet<String> {
        kv.docs(collection)
            .iter()
            .map(|d| d["_key"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let processes = keys(PROCESSES);
    assert!(
        !processes.contains("{00000000-0000-0000-0000-000000000001}"),
        "a process document past [state] process_retention is still there"
    );
    assert!(processes.contains("{00000000-0000-0000-0000-000000000002}"));
    let answers = keys(REPUTATION);
    assert!(
        !answers.contains(&"a".repeat(64)),
        "an expired answer is still there"
    );
    assert!(answers.contains(&"b".repeat(64)));
    // Once an hour per member, not per search: a second search sends no
    // delete.
    let deletes = |kv: &FakeKvStore| {
        kv.requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count()
    };
    let before = deletes(&kv);
    run(
        &full,
        &home,
        app.path(),
        &["backfill=false", "reputation=false"],
        Some(kv.uri()),
    );
    assert_eq!(
        deletes(&kv),
        before,
        "housekeeping ran again within its period"
    );
}
