//! A process table no search can poison (issue 12), end to end: the
//! binary, driven by the splunkd stand-in (`common/splunkd.rs`), over the
//! shared Sysmon data and over chains made here.
//!
//! - **a** a search with `guid_field=ParentProcessGuid` (every process its
//!   own parent) changes nothing for later searches: the next normal
//!   search's lineage equals the one before it on every row;
//! - **b** a crafted creation that contradicts a stored one changes
//!   nothing either, and is logged as a conflict and counted by
//!   `state stats`; `state purge processes --user/--sid`;
//! - **c** a 10-level chain of 1 MB command lines keeps the state database
//!   under 8 MB;
//! - **d** a 40-level chain at 5 rows per chunk with the table warm: every
//!   creation `complete` at its true depth (local sources have no level
//!   budget);
//! - **e** a store locked by another process: every row back, the process
//!   gone within `busy_timeout` + 3 s;
//! - **f** `kill -9` while the table is being written, then `state check`
//!   and a normal search;
//! - **g** `SPLUNK_HOME` unset: one WARN, rows still enriched;
//! - **h** a search finds an over-full reputation cache and pending queue
//!   (issue 17) and leaves them within `[state] cache_max_rows` and
//!   `pending_max_rows`, expired answers gone, the most useful rows kept.
//!
//! Data set tests skip with a printed reason when `../shared` is absent
//! (and fail when `CI` is set).

mod common;

use common::creations::{chain_guid as guid, Creations};
use common::datasets::{self, Table, Value};
use common::home::{app_dir_with, Home};
use common::serial::serial;
use common::splunkd::{self, assert_clean, cell, FinalChunk, Options, Outcome, BINARY};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stand-in options for `rows` per chunk against `home`, no backfill, no
/// reputation (nothing here may reach a network).
fn options(extra: &[&str], rows: usize, home: &Home, app: Option<&Path>) -> Options {
    let mut args = vec!["backfill=false", "reputation=false"];
    args.extend_from_slice(extra);
    home.options(&args, rows, app)
}

const LINEAGE: [&str; 5] = [
    "lineage",
    "lineage_guids",
    "lineage_depth",
    "lineage_status",
    "lineage_source",
];

/// Rows whose lineage cells differ between two runs over the same table.
fn lineage_differences(a: &Outcome, b: &Outcome) -> Vec<String> {
    let mut diffs = Vec::new();
    for r in 0..a.merged.len() {
        for f in LINEAGE {
            let (x, y) = (cell(a, r, f), cell(b, r, f));
            if x != y {
                diffs.push(format!("row {r} {f}: {x:?} -> {y:?}"));
            }
        }
    }
    diffs
}

fn status_count(out: &Outcome, status: &str) -> usize {
    (0..out.merged.len())
        .filter(|&r| cell(out, r, "lineage_status") == status)
        .count()
}

/// A shared data set, or `None` (skip) without `../shared`: a failure in CI.
fn dataset(file: &str) -> Option<Table> {
    let t = datasets::sysmon_dataset(file);
    if t.is_none() && std::env::var_os("CI").is_some() {
        panic!("CI is set but ../shared is missing: {file} is needed");
    }
    t
}

/// Creations of one chain: process k (1..=n) started by k-1, process 1 by
/// no one; newest (deepest) first, as splunkd sends them.
fn chain_table(n: u64, command_line: impl Fn(u64) -> String) -> Table {
    let image = |k: u64| format!("C:\\Windows\\System32\\proc{k}.exe");
    Creations::chain(n, image, command_line)
        .computer("WIN-HOST01")
        .table()
}

// ---------------------------------------------------------------------------
// a, b: poisoning and forging
// ---------------------------------------------------------------------------

/// The creation whose GUID most other creations name as their parent: the
/// one whose forgery would change the most chains.
fn most_named_parent(t: &Table) -> usize {
    let code = t.position("EventCode").expect("EventCode");
    let guid = t.position("ProcessGuid").expect("ProcessGuid");
    let parent = t.position("ParentProcessGuid").expect("ParentProcessGuid");
    let text = |r: usize, c: usize| t.rows[r][c].joined().to_uppercase();
    let mut named: HashMap<String, usize> = HashMap::new();
    for r in 0..t.len() {
        if text(r, code) == "1" {
            *named.entry(text(r, parent)).or_default() += 1;
        }
    }
    (0..t.len())
        .filter(|&r| text(r, code) == "1" && !text(r, parent).contains("00000000-0000-0000-0000"))
        .max_by_key(|&r| (named.get(&text(r, guid)).copied().unwrap_or(0), r))
        .expect("a creation")
}

/// Two forged creations of the real process of row `r` of `t`: one naming
/// another parent and `userinit.exe`, one with only a `ParentImage` (the
/// `| makeresults | eval …` of issue 12).
fn forged(t: &Table, r: usize) -> Table {
    let get = |c: &str| {
        t.get(r, c)
            .map(|v| v.joined().into_owned())
            .unwrap_or_default()
    };
    let columns = [
        "EventCode",
        "ProcessGuid",
        "ParentProcessGuid",
        "Image",
        "ParentImage",
    ];
    let userinit = r"C:\Windows\System32\userinit.exe";
    let rows = vec![
        vec![
            "1".into(),
            get("ProcessGuid"),
            guid(0xF00D),
            get("Image"),
            userinit.into(),
        ],
        vec![
            "1".into(),
            get("ProcessGuid"),
            String::new(),
            get("Image"),
            userinit.into(),
        ],
    ];
    Table {
        name: "forged".into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(Value::one).collect())
            .collect(),
    }
}

#[test]
fn a_wrong_field_mapping_or_a_forged_creation_changes_no_later_lineage() {
    let _serial = serial();
    let Some(t) = dataset("evtx_attack_samples.csv") else {
        return;
    };
    let t = Arc::new(t);
    let home = Home::new("integrity_home.");
    // Warm the table, then the lineage every later search should keep
    // seeing (small chunks: parents come from the table).
    let warm = splunkd::run(t.clone(), &options(&[], 50_000, &home, None));
    assert_clean("warm-up", &warm);
    let before = splunkd::run(t.clone(), &options(&[], 1_000, &home, None));
    assert_clean("before", &before);
    assert_eq!(status_count(&before, "cycle"), 0);
    let processes = home.stat("processes");

    // a: every process its own parent. The search itself shows that (in
    // memory); the table learns nothing from it.
    let poison = splunkd::run(
        t.clone(),
        &options(&["guid_field=ParentProcessGuid"], 1_000, &home, None),
    );
    assert_clean("guid_field=ParentProcessGuid", &poison);
    assert!(
        status_count(&poison, "cycle") > 100,
        "the mapping should make cycles in its own search ({} rows)",
        status_count(&poison, "cycle")
    );
    let info = poison
        .messages
        .iter()
        .find(|(l, m)| l == "INFO" && m.contains("lineage for"))
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    assert!(
        info.contains(&format!("{} cycle", status_count(&poison, "cycle"))),
        "the INFO line counts cycles: {info}"
    );
    assert_eq!(home.stat("processes"), processes, "nothing stored");

    // b: forged creations of a real process.
    let r = most_named_parent(&t);
    let forged_table = Arc::new(forged(&t, r));
    let forgery = splunkd::run(forged_table, &options(&[], 1_000, &home, None));
    assert_clean("forged creations", &forgery);
    assert_eq!(home.stat("processes"), processes, "nothing stored");
    assert!(
        home.stat("conflicts").starts_with("1 "),
        "one GUID, one search: {}",
        home.stat("conflicts")
    );
    let log = home.log();
    let line = log
        .lines()
        .find(|l| l.contains("process table conflict"))
        .unwrap_or_else(|| panic!("no conflict line in the log:\n{log}"));
    let real = t
        .get(r, "ProcessGuid")
        .expect("guid")
        .joined()
        .to_uppercase();
    assert!(
        line.to_uppercase().contains(real.trim_matches(['{', '}']))
            && line.contains("parent_guid")
            && line.contains("parent_image")
            && line.contains("sid=1700000000.42 user=admin"),
        "{line}"
    );
    assert_eq!(
        log.matches("process table conflict").count(),
        1,
        "logged once per search"
    );

    let after = splunkd::run(t.clone(), &options(&[], 1_000, &home, None));
    assert_clean("after", &after);
    let diffs = lineage_differences(&before, &after);
    assert!(
        diffs.is_empty(),
        "{} differences, first: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );

    // What one user or search wrote can be taken back.
    let (out, err, ok) = home.state_cli(&["purge", "processes", "--user", "nobody"]);
    assert!(ok && out.starts_with("purged 0 processes"), "{out}{err}");
    let (out, err, ok) = home.state_cli(&["purge", "cache", "--sid", "1"]);
    assert!(!ok && err.contains("only"), "{out}{err}");
    let (out, err, ok) = home.state_cli(&["purge", "processes", "--sid", "1700000000.42"]);
    assert!(
        ok && out.starts_with(&format!("purged {processes} processes")),
        "{out}{err}"
    );
    assert_eq!(home.stat("processes"), "0");
}

#[test]
fn rows_that_disagree_with_their_raw_stay_out_of_the_table() {
    let _serial = serial();
    let Some(t) = dataset("evtx_attack_samples.csv") else {
        return;
    };
    // Creations only, one of them with a forged ParentImage but its real
    // `_raw`.
    let code = t.position("EventCode").expect("EventCode");
    let mut rows: Vec<Vec<Value>> = t
        .rows
        .iter()
        .filter(|r| r[code].joined() == "1")
        .take(50)
        .cloned()
        .collect();
    let pimg = t.position("ParentImage").expect("ParentImage");
    rows[7][pimg] = Value::one(r"C:\Windows\System32\userinit.exe");
    let t = Arc::new(Table {
        name: "forged against _raw".into(),
        columns: t.columns.clone(),
        rows,
    });
    let home = Home::new("integrity_home.");
    let out = splunkd::run(t.clone(), &options(&["raw=true"], 50_000, &home, None));
    assert_clean("raw=true", &out);
    let stored: usize = home.stat("processes").parse().expect("a number");
    let distinct: std::collections::HashSet<String> = (0..t.len())
        .map(|r| {
            t.get(r, "ProcessGuid")
                .expect("guid")
                .joined()
                .to_uppercase()
        })
        .collect();
    assert_eq!(stored, distinct.len() - 1, "all but the forged one");
}

// ---------------------------------------------------------------------------
// c: the state database stays small
// ---------------------------------------------------------------------------

#[test]
fn a_chain_of_megabyte_command_lines_keeps_the_state_small() {
    let _serial = serial();
    let mb = 1 << 20;
    let t = Arc::new(chain_table(10, |k| {
        format!("powershell.exe -enc {}", "QUJD".repeat(mb / 4)) + &k.to_string()
    }));
    let input: usize = t.rows.iter().flatten().map(|v| v.joined().len()).sum();
    assert!(input > 19 * mb, "{input}");
    let home = Home::new("integrity_home.");
    let out = splunkd::run(t.clone(), &options(&[], 50_000, &home, None));
    assert_clean("1 MB command lines", &out);
    assert_eq!(cell(&out, 0, "lineage_depth"), "10");
    assert_eq!(cell(&out, 0, "lineage_status"), "complete");
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let db = home.db();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let total = size(&db) + size(&wal);
    eprintln!("state database after 10 x 1 MB command lines: {total} bytes (db + WAL)");
    assert!(total < 8 * mb as u64, "{total} bytes");
    // Cut, with a note of how much.
    let conn = rusqlite::Connection::open(&db).expect("open");
    let (len, cmd): (i64, String) = conn
        .query_row(
            "SELECT length(CAST(command_line AS BLOB)), command_line FROM processes LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a process");
    assert!(len <= 32_768 && cmd.ends_with(" bytes cut]"), "{len}");
    // The next search over the same events still answers whole rows.
    let again = splunkd::run(t, &options(&[], 2, &home, None));
    assert_clean("again", &again);
    assert_eq!(cell(&again, 0, "lineage_status"), "complete");
}

// ---------------------------------------------------------------------------
// d: deep chains from the warm table
// ---------------------------------------------------------------------------

#[test]
fn a_forty_level_chain_in_small_chunks_resolves_from_the_warm_table() {
    let _serial = serial();
    let t = Arc::new(chain_table(40, |k| format!("proc{k}.exe /run {k}")));
    let home = Home::new("integrity_home.");
    let warm = splunkd::run(t.clone(), &options(&[], 50_000, &home, None));
    assert_clean("warm-up", &warm);
    let out = splunkd::run(t.clone(), &options(&[], 5, &home, None));
    assert_clean("5 rows per chunk", &out);
    let mut bad = Vec::new();
    for r in 0..t.len() {
        // Row r is process 40 - r, whose chain has 40 - r entries
        // (its ancestors and the zero GUID).
        let depth = (40 - r).to_string();
        let (d, s) = (
            cell(&out, r, "lineage_depth"),
            cell(&out, r, "lineage_status"),
        );
        if d != depth || s != "complete" {
            bad.push(format!(
                "row {r}: depth {d} status {s}, want {depth} complete"
            ));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

// ---------------------------------------------------------------------------
// e: a locked store
// ---------------------------------------------------------------------------

#[test]
fn a_locked_store_costs_one_busy_timeout_and_no_rows() {
    let _serial = serial();
    let home = Home::new("integrity_home.");
    let app = app_dir_with("integrity_app.", "[state]\nbusy_timeout = 2s\n");
    let t = Arc::new(chain_table(300, |k| format!("proc{k}.exe")));
    // Create the database, then hold it as another process would.
    let first = splunkd::run(
        Arc::new(chain_table(3, |k| format!("x{k}"))),
        &options(&[], 50_000, &home, Some(app.path())),
    );
    assert_clean("create", &first);
    let conn = rusqlite::Connection::open(home.db()).expect("open");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let started = Instant::now();
    let out = splunkd::run(t.clone(), &options(&[], 20, &home, Some(app.path())));
    let took = started.elapsed();
    conn.execute_batch("ROLLBACK").expect("unlock");
    assert_clean("locked", &out);
    assert_eq!(out.merged.len(), 300);
    assert_eq!(cell(&out, 299, "lineage_status"), "complete");
    assert!(
        out.messages
            .iter()
            .any(|(l, m)| l == "WARN" && m.contains("cannot write the process table")),
        "{:?}",
        out.messages
    );
    eprintln!("15 chunks against a locked store: {took:?}");
    let log = home.log();
    assert!(!log.contains("pruning the process table failed"), "{log}");
    assert!(
        took < Duration::from_secs(2 + 3),
        "the search took {took:?} (busy_timeout 2 s)"
    );
}

// ---------------------------------------------------------------------------
// f: kill -9 while writing
// ---------------------------------------------------------------------------

#[test]
fn kill_9_while_writing_the_table_leaves_a_sound_database() {
    let _serial = serial();
    let home = Home::new("integrity_home.");
    let t = chain_table(8_000, |k| format!("proc{k}.exe /c {}", "x".repeat(200)));
    let columns: Vec<&str> = t.columns.iter().map(String::as_str).collect();
    // Killed once the table holds the first chunks, while the writer is
    // still busy with the next ones (the feed goes on).
    for (round, kill_at) in [(0u64, 1_000u64), (1, 3_000)] {
        let mut child = Command::new(BINARY)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SPLUNK_HOME", home.path())
            .env("HOME", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let getinfo = splunkd::sample_getinfo(&["backfill=false", "reputation=false"]);
        let mut input = splunkd::chunk(getinfo.metadata().as_bytes(), b"");
        for start in (0..t.len()).step_by(1_000) {
            let body =
                splunkd::splunk_body(&t, &columns, start..(start + 1_000).min(t.len()), true);
            input.extend(splunkd::execute_chunk(false, &body));
        }
        // The replies go nowhere; the writer works while we feed.
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let stored = || -> u64 {
            rusqlite::Connection::open_with_flags(
                home.db(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|c| c.query_row("SELECT count(*) FROM processes", [], |r| r.get(0)))
            .unwrap_or(0)
        };
        while stored() < kill_at && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(7 * round));
        child.kill().expect("SIGKILL our child");
        let _ = child.wait();
        let _ = feeder.join();
        assert!(
            stored() >= kill_at,
            "round {round}: the writer never got there"
        );
        eprintln!("round {round}: killed at {} stored", stored());
    }
    let (out, err, ok) = home.state_cli(&["check"]);
    assert!(ok && out.contains("ok"), "{out}{err}");
    let stored: u64 = home.stat("processes").parse().expect("a number");
    eprintln!("after two kills: {stored} processes stored");
    assert!(stored < 8_000, "killed before the end: {stored}");
    // A normal search over the whole chain: the table completes it.
    let out = splunkd::run(Arc::new(t), &options(&[], 50_000, &home, None));
    assert_clean("after the kills", &out);
    assert_eq!(cell(&out, 7_999, "lineage_status"), "complete");
    assert_eq!(home.stat("processes"), "8000");
    let (out, err, ok) = home.state_cli(&["check"]);
    assert!(ok && out.contains("ok"), "{out}{err}");
}

// ---------------------------------------------------------------------------
// g: no SPLUNK_HOME
// ---------------------------------------------------------------------------

#[test]
fn without_splunk_home_one_warning() {
    let _serial = serial();
    let mut o = Options::with_args(&["backfill=false", "reputation=false"]);
    o.final_chunk = FinalChunk::WithLastRows;
    o.rows_per_chunk = 2;
    o.env.push(("SPLUNK_HOME".into(), String::new()));
    let out = splunkd::run(Arc::new(chain_table(5, |k| format!("p{k}"))), &o);
    assert!(
        out.exit_code == Some(0) && out.violations.is_empty(),
        "{}",
        out.report()
    );
    let warns: Vec<&String> = out
        .messages
        .iter()
        .filter(|(l, m)| l == "WARN" && m.contains("SPLUNK_HOME"))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(warns.len(), 1, "{:?}", out.messages);
    assert!(warns[0].contains("no state database"), "{}", warns[0]);
    assert_eq!(
        out.stderr.matches("SPLUNK_HOME").count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(cell(&out, 4, "lineage_status"), "complete");
    assert_eq!(cell(&out, 0, "lineage_depth"), "2", "cut: no process table");
}

// ---------------------------------------------------------------------------
// h: ancestors named by their own creation events
// ---------------------------------------------------------------------------

#[test]
fn without_parent_fields_ancestors_come_from_their_own_events() {
    let _serial = serial();
    let full = chain_table(6, |k| format!("proc{k}.exe /run {k}"));
    let keep: Vec<usize> = (0..full.columns.len())
        .filter(|&c| {
            !full.columns[c].starts_with("ParentImage") && full.columns[c] != "ParentCommandLine"
        })
        .collect();
    let t = Arc::new(Table {
        name: "no Parent* text".into(),
        columns: keep.iter().map(|&c| full.columns[c].clone()).collect(),
        rows: full
            .rows
            .iter()
            .map(|r| keep.iter().map(|&c| r[c].clone()).collect())
            .collect(),
    });
    assert_eq!(t.columns.len(), 7);
    for rows in [50_000, 2] {
        let home = Home::new("integrity_home.");
        let out = splunkd::run(t.clone(), &options(&[], rows, &home, None));
        assert_clean("no Parent* fields", &out);
        // The last row (process 1) has no ancestors with text; every row
        // whose parents arrived with or before it names them.
        let r = if rows == 2 { 4 } else { 0 };
        let k = 6 - r;
        let lineage = cell(&out, r, "lineage");
        // Process 1's parent is nobody Sysmon knew: named as such.
        let want = std::iter::once("(unknown parent)".to_string())
            .chain((1..=k).map(|n| format!("proc{n}.exe")))
            .collect::<Vec<_>>()
            .join(" > ");
        assert_eq!(lineage, want, "{rows} rows/chunk, row {r}");
        let cmdlines = cell(&out, r, "lineage_cmdlines");
        assert!(
            cmdlines.contains(&format!("proc{}.exe /run {}", k - 1, k - 1)),
            "{rows} rows/chunk, row {r}: {cmdlines:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// h: the cache and the queue keep their bounds
// ---------------------------------------------------------------------------

#[test]
fn a_search_trims_an_over_full_cache_and_pending_queue() {
    use sysmonenrich::state::{StateOptions, StateStore};
    let _serial = serial();
    let home = Home::new("integrity_home.");
    let app = app_dir_with(
        "integrity_app.",
        "[state]\ncache_max_rows = 20\npending_max_rows = 10\n",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hex = |n: u64| format!("{n:064x}");
    {
        let store = StateStore::open(&home.db(), &StateOptions::default()).expect("state.db");
        // 50 answers that expired a day ago, 30 live ones expiring one
        // hour apart (k = 0 first), and 40 queued hashes (k = 0 oldest).
        for k in 0..50 {
            let key = format!("sha256:{}", hex(1000 + k));
            store
                .cache_put("virustotal", &key, "{}", now - 2 * 86_400, 86_400)
                .expect("expired answer");
        }
        for k in 0..30 {
            let key = format!("sha256:{}", hex(k));
            store
                .cache_put("virustotal", &key, "{}", now, 86_400 + 3600 * k as i64)
                .expect("live answer");
        }
        for k in 0..40 {
            let key = format!("sha256:{}", hex(2000 + k));
            store
                .pending_add(&key, "quota", now - 1000 + k as i64)
                .expect("queued hash");
        }
        assert_eq!(store.cache_count().unwrap(), 80);
        assert_eq!(store.pending_count().unwrap(), 40);
    }

    let out = splunkd::run(
        Arc::new(chain_table(5, |k| format!("proc{k}.exe"))),
        &options(&[], 50_000, &home, Some(app.path())),
    );
    assert_clean("search", &out);

    let conn = rusqlite::Connection::open(home.db()).expect("open");
    let keys = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    // Expired answers gone; of the live ones, the 20 furthest from expiry.
    let cached = keys("SELECT key FROM reputation_cache ORDER BY expires_at");
    let want: Vec<String> = (10..30).map(|k| format!("sha256:{}", hex(k))).collect();
    assert_eq!(cached, want, "the cache after the search");
    // The queue: the 10 newest.
    let queued = keys("SELECT key FROM pending ORDER BY queued_at");
    let want: Vec<String> = (30..40)
        .map(|k| format!("sha256:{}", hex(2000 + k)))
        .collect();
    assert_eq!(queued, want, "the pending queue after the search");
    drop(conn);

    // A search that only looks hashes up (no process table write) keeps
    // the bounds too: 5 more expired answers, gone after it.
    {
        let store = StateStore::open(&home.db(), &StateOptions::default()).expect("state.db");
        for k in 0..5 {
            let key = format!("sha256:{}", hex(3000 + k));
            store
                .cache_put("virustotal", &key, "{}", now - 2 * 86_400, 86_400)
                .expect("expired answer");
        }
    }
    let mut o = options(&[], 50_000, &home, Some(app.path()));
    o.args = ["lineage=false", "backfill=false", "providers=local"]
        .map(String::from)
        .to_vec();
    let out = splunkd::run(Arc::new(chain_table(5, |k| format!("proc{k}.exe"))), &o);
    assert_clean("reputation-only search", &out);
    let store = StateStore::open(&home.db(), &StateOptions::default()).expect("state.db");
    assert_eq!(store.cache_count().unwrap(), 20, "expired answers left");
    assert!(store.pending_count().unwrap() <= 10);

    let log = home.log();
    for line in [
        "state: 5 expired answers purged from the reputation cache",
        "state: 50 expired answers purged from the reputation cache",
        "state: 10 answers trimmed from the reputation cache",
        "state: 30 hashes trimmed from the pending queue",
    ] {
        assert!(log.contains(line), "no `{line}` in the log:\n{log}");
    }
}
