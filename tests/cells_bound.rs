//! Bounded lineage cells (issue 12), end to end: the binary, driven by the
//! splunkd stand-in (`common/splunkd.rs`), over process chains made here.
//!
//! Every row repeats what lineage knows of its ancestors, so without a
//! per-value cap a deep tree of long command lines multiplies the reply
//! (issue 12 measured 5.7x for ten 1 MB command lines, 55x for a
//! 100,000-level chain). With `[lineage] cell_value_max_bytes`:
//! - a 10-level chain of 1 MB command lines: the reply is at most 3x the
//!   request, the ancestors' values are cut with a mark of how much, and
//!   every event's own fields come back whole;
//! - a 100,000-level chain at the default `max_depth`: every row's lineage
//!   cells stay within the bound docs/lineage.md states,
//!   `2·C·(5·max_depth + 3) + 100·max_depth + 200` bytes (C the cap) plus
//!   twice the matched rules' names.
//!
//! No test here needs `../shared`.

mod common;

use common::creations::Creations;
use common::datasets::{Table, Value};
use common::splunkd::{self, assert_clean, cell, FinalChunk, Options, Outcome};
use std::path::Path;
use std::sync::Arc;

/// The shipped defaults the bound is stated for.
const CAP: usize = 4096;
const MAX_DEPTH: usize = 64;

/// Creations of one chain: process k (1..=n) started by k-1, process 1 by
/// a parent Sysmon did not know (the all-zero GUID and `-`, as Sysmon
/// writes it); newest (deepest) first, as splunkd sends them.
fn chain(n: u64, image: impl Fn(u64) -> String, command_line: impl Fn(u64) -> String) -> Table {
    Creations::chain(n, image, command_line)
        .unknown_parent_as("-")
        .table()
}

/// Stand-in options: lineage only, no state database (the table's own
/// command-line cap is tested in `integrity.rs`), no network.
fn options(home: &Path) -> Options {
    let app = home.join("app");
    std::fs::create_dir_all(app.join("local")).expect("local/");
    std::fs::write(
        app.join("local/sysmonenrich.conf"),
        "[state]\nenabled = false\n",
    )
    .expect("local conf");
    let mut o = Options::with_args(&["backfill=false", "reputation=false"]);
    o.rows_per_chunk = 50_000;
    o.header_only_unfinished = true;
    o.final_chunk = FinalChunk::HeaderOnly;
    o.reply_timeout = std::time::Duration::from_secs(600);
    o.env
        .push(("SPLUNK_HOME".into(), home.display().to_string()));
    o.env
        .push(("SYSMONENRICH_APP_DIR".into(), app.display().to_string()));
    o
}

/// The lineage fields the command writes, and whether each is multivalued
/// (written again as an `__mv_` cell).
const LINEAGE: [(&str, bool); 10] = [
    ("lineage", false),
    ("lineage_depth", false),
    ("lineage_parents", true),
    ("lineage_guids", true),
    ("lineage_cmdlines", true),
    ("lineage_root", false),
    ("lineage_status", false),
    ("lineage_source", true),
    ("lineage_flags", true),
    ("lineage_malicious_ancestor", false),
];

/// The bytes a row's lineage cells take in the reply, as the command
/// writes them: each cell quoted with `"` doubled, each multivalue again
/// as `$v1$;$v2$` with `$` doubled, a comma before each cell.
fn lineage_wire_bytes(out: &Outcome, row: usize) -> usize {
    let escaped = |v: &str, mv: bool| {
        v.len() + v.matches('"').count() + if mv { 2 + v.matches('$').count() } else { 0 }
    };
    let mut n = 0;
    for (field, multi) in LINEAGE {
        let values: Vec<&str> = match out.merged.get(row, field) {
            Some(Value::One(s)) => vec![s.as_str()],
            Some(Value::Many(v)) => v.iter().map(String::as_str).collect(),
            None => Vec::new(),
        };
        let seps = values.len().saturating_sub(1);
        n += 1 + 2 + seps + values.iter().map(|v| escaped(v, false)).sum::<usize>();
        if multi {
            n += 1 + 2 + seps;
            if values.len() > 1 {
                n += values.iter().map(|v| escaped(v, true)).sum::<usize>();
            }
        }
    }
    n
}

/// The bound on a row's lineage bytes (docs/lineage.md).
fn stated_bound(out: &Outcome, row: usize) -> usize {
    let flags = cell(out, row, "lineage_flags").len();
    2 * CAP * (5 * MAX_DEPTH + 3) + 100 * MAX_DEPTH + 200 + 2 * (flags + 2)
}

#[test]
fn megabyte_command_lines_are_cut_in_the_ancestors_and_whole_in_the_event() {
    let mb = 1 << 20;
    let t = Arc::new(chain(
        10,
        |k| format!("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell{k}.exe"),
        // One character outside ASCII right where a cut would fall.
        |k| format!("powershell.exe -enc é{}{k}", "QUJD€".repeat(mb / 7)),
    ));
    let home = tempfile::tempdir().expect("temp SPLUNK_HOME");
    let out = splunkd::run(t.clone(), &options(home.path()));
    assert_clean("1 MB command lines", &out);
    eprintln!(
        "10 x 1 MB command lines: {} bytes in, {} bytes out ({:.2}x)",
        out.request_bytes,
        out.reply_bytes,
        out.reply_bytes as f64 / out.request_bytes as f64
    );
    assert!(out.request_bytes > 19 * mb, "{}", out.request_bytes);
    assert!(
        out.reply_bytes <= 3 * out.request_bytes,
        "reply {} bytes for a request of {}",
        out.reply_bytes,
        out.request_bytes
    );
    assert_eq!(cell(&out, 0, "lineage_depth"), "10");
    assert_eq!(cell(&out, 0, "lineage_status"), "complete");
    for r in 0..t.len() {
        // The event's own fields: exactly what was sent.
        for f in ["CommandLine", "ParentCommandLine", "Image"] {
            let sent = t.get(r, f).expect("sent").joined().into_owned();
            assert!(cell(&out, r, f) == sent, "row {r}: {f} changed");
        }
        // The ancestors' command lines: cut, valid UTF-8 (a String), marked.
        let cmdlines = match out.merged.get(r, "lineage_cmdlines") {
            Some(Value::Many(v)) => v.clone(),
            Some(Value::One(s)) => vec![s.clone()],
            None => Vec::new(),
        };
        let depth: usize = cell(&out, r, "lineage_depth").parse().expect("depth");
        assert_eq!(cmdlines.len(), depth, "row {r}");
        // The last entry is the unknown parent (`-`): short, whole.
        for c in &cmdlines[..depth - 1] {
            assert!(c.len() <= CAP, "row {r}: {} bytes", c.len());
            assert!(c.starts_with("powershell.exe -enc é"), "row {r}: {c:.40}");
            let mark = c.rfind("…[+").expect("a cut mark");
            let told: usize = c[mark + "…[+".len()..c.len() - " bytes]".len()]
                .parse()
                .expect("a count");
            assert!(told > mb - CAP, "row {r}: {told}");
        }
        assert!(lineage_wire_bytes(&out, r) <= stated_bound(&out, r));
        // Where Sysmon did not know the parent, `lineage` says so.
        assert!(
            cell(&out, r, "lineage").starts_with("(unknown parent) > powershell1.exe"),
            "row {r}: {:.80}",
            cell(&out, r, "lineage")
        );
    }
}

/// Levels of the deep chain: 100,000 (issue 12's case) in an optimised
/// test build; a debug build writes the gigabyte of reply at a few MB/s
/// on a shared machine (233 s), so it takes 10,000, which is the same row
/// shape from level 64 on (every row `max_depth` deep).
/// `SYSMONENRICH_CHAIN_LEVELS` overrides either.
fn deep_levels() -> u64 {
    let n = std::env::var("SYSMONENRICH_CHAIN_LEVELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            10_000
        } else {
            100_000
        });
    if n < 100_000 {
        eprintln!(
            "deep chain: {n} levels (a debug build; `cargo test --release` or \
             SYSMONENRICH_CHAIN_LEVELS=100000 for issue 12's 100,000)"
        );
    }
    n
}

#[test]
fn a_hundred_thousand_level_chain_stays_within_the_stated_row_bound() {
    let n = deep_levels();
    // Every 997th process has a command line past the cap: rows near it
    // carry it among their ancestors.
    let t = Arc::new(chain(
        n,
        |k| format!("C:\\p\\proc{k}.exe"),
        |k| {
            if k % 997 == 0 {
                format!("cmd /c \"{}\" $x {k}", "A".repeat(3 * CAP))
            } else {
                format!("proc{k}")
            }
        },
    ));
    let home = tempfile::tempdir().expect("temp SPLUNK_HOME");
    let started = std::time::Instant::now();
    let out = splunkd::run(t.clone(), &options(home.path()));
    assert_clean("100,000 levels", &out);
    eprintln!(
        "{n}-level chain: {} bytes in, {} bytes out ({:.1}x) in {:.1?}",
        out.request_bytes,
        out.reply_bytes,
        out.reply_bytes as f64 / out.request_bytes as f64,
        started.elapsed()
    );
    let mut worst = (0, 0);
    let mut cut = 0;
    for r in 0..t.len() {
        let bytes = lineage_wire_bytes(&out, r);
        let bound = stated_bound(&out, r);
        assert!(bytes <= bound, "row {r}: {bytes} > {bound}");
        worst = worst.max((bytes, r));
        cut += usize::from(cell(&out, r, "lineage_cmdlines").contains(" bytes]"));
    }
    eprintln!("largest row's lineage: {} bytes (row {})", worst.0, worst.1);
    // Every process within 64 levels below a multiple of 997 has it among
    // its ancestors.
    assert!(
        cut as u64 > n / 997 * 60,
        "only {cut} rows carry a cut command line"
    );
    // Deep rows: truncated at max_depth; the oldest: complete.
    assert_eq!(cell(&out, 0, "lineage_depth"), MAX_DEPTH.to_string());
    assert_eq!(cell(&out, 0, "lineage_status"), "truncated");
    let last = t.len() - 1;
    assert_eq!(cell(&out, last, "lineage_status"), "complete");
    assert_eq!(cell(&out, last, "lineage"), "(unknown parent) > proc1.exe");
}
