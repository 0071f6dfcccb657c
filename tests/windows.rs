//! The Windows build, run under Wine (issue 18), against this build's
//! Linux binary: the same protocol conversation must give the same bytes,
//! and a Windows-style `SPLUNK_HOME` (drive letter, backslashes, a space)
//! must hold the state database that later and concurrent searches share.
//!
//! Runs when `SYSMONENRICH_WINDOWS_RUNNER` names a program that starts
//! `sysmonenrich.exe` under Wine with its arguments (the Windows stage of
//! `.ci/run` writes one); without it, every test prints why and passes, so
//! `./test.sh` needs no Wine. The Windows stage also runs the protocol
//! tests themselves (`bad_input`, `conformance`, `protocol_recordings`)
//! with the runner as their binary.

mod common;

use common::datasets::{self, Table};
use common::splunkd::{
    self, chunk, run_raw_on, KeptReply, Options, Outcome, RawRows, Step, BINARY,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Fields whose value is the time of the run, not of the data.
const TIME_OF_RUN: [&str; 1] = ["rep_checked"];

/// The program that runs the Windows build, or `None` (and why, printed).
fn runner() -> Option<PathBuf> {
    match std::env::var_os("SYSMONENRICH_WINDOWS_RUNNER").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "skipped: SYSMONENRICH_WINDOWS_RUNNER is not set (the Windows stage of .ci/run sets it to a Wine runner for the .exe)"
            );
            None
        }
    }
}

/// A run's replies as raw cells, the time-of-run fields blanked: what
/// must be byte-identical between the two builds.
fn replies(out: &Outcome) -> Vec<RawRows> {
    out.kept
        .iter()
        .map(|r: &KeptReply| {
            let blank: Vec<usize> = r
                .header
                .iter()
                .enumerate()
                .filter(|(_, h)| TIME_OF_RUN.contains(&h.as_str()))
                .map(|(i, _)| i)
                .collect();
            let rows = r
                .rows
                .iter()
                .map(|row| {
                    let mut row = row.clone();
                    for &i in &blank {
                        if let Some(c) = row.get_mut(i) {
                            c.clear();
                        }
                    }
                    row
                })
                .collect();
            (r.header.clone(), rows)
        })
        .collect()
}

/// The rows `rows` of `table`, in that order.
fn subset(table: &Table, rows: &[usize]) -> Table {
    Table {
        name: table.name.clone(),
        columns: table.columns.clone(),
        rows: rows.iter().map(|&r| table.rows[r].clone()).collect(),
    }
}

fn options(args: &[&str], binary: Option<&Path>) -> Options {
    Options {
        keep_replies: true,
        binary: binary.map(Path::to_path_buf),
        // Wine starts in about a second; a loaded CI machine may take more.
        reply_timeout: Duration::from_secs(300),
        exit_timeout: Duration::from_secs(120),
        ..Options::with_args(args)
    }
}

fn assert_clean(out: &Outcome, what: &str) {
    assert!(
        !out.timed_out && out.exit_code == Some(0) && out.errors.is_empty(),
        "{what}: {}",
        out.report()
    );
    assert!(out.violations.is_empty(), "{what}: {:?}", out.violations);
}

/// An app folder whose conf points Sigma at the shared SigmaHQ rules.
fn sigma_app(rules: &Path) -> tempfile::TempDir {
    common::home::app_dir_with(
        "windows_app.",
        &format!("[sigma]\nrules = {}\n", rules.display()),
    )
}

#[test]
fn every_dataset_gives_the_linux_bytes() {
    let Some(exe) = runner() else { return };
    let sigma = datasets::sigma_dir();
    let app = sigma.as_deref().map(sigma_app);
    for name in datasets::SYSMON_DATASETS {
        let Some(table) = datasets::sysmon_dataset(name) else {
            return;
        };
        let table = Arc::new(table);
        let mut runs = vec![(vec!["reputation=false"], None)];
        // Sigma under Windows too: the rule walk, the regexes, the output.
        if let Some(app) = &app {
            runs.push((vec!["reputation=false", "sigma=true"], Some(app.path())));
        }
        // The whole default search: reputation from the local list only
        // (the stand-in's splunkd is a closed port, so no keys).
        runs.push((vec![], None));
        for (args, app) in runs {
            let with = |binary: Option<&Path>| {
                let mut o = options(&args, binary);
                if let Some(a) = app {
                    o.env
                        .push(("SYSMONENRICH_APP_DIR".into(), a.display().to_string()));
                }
                o
            };
            let linux = splunkd::run(table.clone(), &with(Some(Path::new(BINARY))));
            let windows = splunkd::run(table.clone(), &with(Some(&exe)));
            let what = format!("{name} {args:?}");
            assert_clean(&linux, &format!("linux {what}"));
            assert_clean(&windows, &format!("windows {what}"));
            assert_eq!(linux.merged.len(), table.len(), "{what}");
            let (l, w) = (replies(&linux), replies(&windows));
            assert_eq!(l.len(), w.len(), "{what}: number of replies");
            for (i, (l, w)) in l.iter().zip(&w).enumerate() {
                assert_eq!(l.0, w.0, "{what}: header of reply {i}");
                for (r, (lr, wr)) in l.1.iter().zip(&w.1).enumerate() {
                    if lr != wr {
                        let diff: Vec<String> =
                            l.0.iter()
                                .zip(lr.iter().zip(wr))
                                .filter(|(_, (a, b))| a != b)
                                .map(|(h, (a, b))| {
                                    format!(
                                        "{h}: linux {:?} windows {:?}",
                                        String::from_utf8_lossy(a),
                                        String::from_utf8_lossy(b)
                                    )
                                })
                                .collect();
                        panic!("{what}: reply {i} row {r} differs: {}", diff.join("; "));
                    }
                }
                assert_eq!(l.1.len(), w.1.len(), "{what}: rows of reply {i}");
            }
        }
    }
}

#[test]
fn malformed_input_gets_the_same_answer() {
    let Some(exe) = runner() else { return };
    let quiet = || Step::GetInfo(vec!["lineage=false".into(), "reputation=false".into()]);
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "malformed header",
            vec![
                Step::Write(b"chunked 1.0;20;0\n{\"action\":\"getinfo\"}".to_vec()),
                Step::Close,
            ],
        ),
        (
            "non-JSON metadata",
            vec![Step::Write(chunk(b"{not json at all", b"")), Step::Close],
        ),
        (
            "unknown action",
            vec![
                quiet(),
                Step::WaitReplies(1),
                Step::Write(chunk(b"{\"action\":\"frobnicate\"}", b"")),
                Step::Close,
            ],
        ),
        (
            "truncated chunk",
            vec![
                quiet(),
                Step::WaitReplies(1),
                Step::Write(
                    b"chunked 1.0,37,1000\n{\"action\":\"execute\",\"finished\":false}_time,x\n1,2\n"
                        .to_vec(),
                ),
                Step::Close,
            ],
        ),
        (
            "broken CSV quoting",
            vec![
                quiet(),
                Step::WaitReplies(1),
                Step::Write(chunk(
                    b"{\"action\":\"execute\",\"finished\":true}",
                    b"_time,CommandLine\n1,\"unterminated\n",
                )),
                Step::Close,
            ],
        ),
    ];
    let timeout = Duration::from_secs(120);
    for (what, steps) in cases {
        let linux = run_raw_on(Some(Path::new(BINARY)), steps.clone(), &[], timeout);
        let windows = run_raw_on(Some(&exe), steps, &[], timeout);
        assert!(!windows.timed_out, "{what}: {}", windows.report());
        assert_eq!(
            String::from_utf8_lossy(&linux.stdout),
            String::from_utf8_lossy(&windows.stdout),
            "{what}: the replies differ"
        );
        assert_eq!(linux.exit_code, windows.exit_code, "{what}: exit codes");
        assert!(windows.exit_code != Some(0), "{what}: must fail");
    }
}

/// `dir` as Windows names it under Wine, whose drive `Z:` is the Unix root:
/// `Z:\tmp\…\Program Files\Splunk`.
fn windows_path(dir: &Path) -> String {
    format!("Z:{}", dir.display().to_string().replace('/', "\\"))
}

#[test]
fn a_splunk_home_with_a_space_holds_the_table_for_later_and_concurrent_searches() {
    let Some(exe) = runner() else { return };
    let name = "evtx_attack_samples.csv";
    let Some(table) = datasets::sysmon_dataset(name) else {
        return;
    };
    let base = tempfile::Builder::new()
        .prefix("windows_home.")
        .tempdir()
        .unwrap();
    let home = base.path().join("Program Files").join("Splunk");
    std::fs::create_dir_all(&home).unwrap();
    let splunk_home = windows_path(&home);
    let on_home = |args: &[&str]| {
        let mut o = options(args, Some(&exe));
        o.env.push(("SPLUNK_HOME".into(), splunk_home.clone()));
        o
    };
    // The reference: one search over everything (no state kept).
    let all = Arc::new(table.clone());
    let whole = splunkd::run(all.clone(), &options(&["reputation=false"], Some(&exe)));
    assert_clean(&whole, "the whole dataset");

    // Search 1: the process creations; search 2: everything else, without
    // backfill, so its chains can only come from search 1's table.
    let creations: Vec<usize> = (0..table.len())
        .filter(|&r| table.get(r, "EventCode").map(|v| v.joined()).as_deref() == Some("1"))
        .collect();
    let others: Vec<usize> = (0..table.len())
        .filter(|r| !creations.contains(r))
        .collect();
    assert!(!creations.is_empty() && !others.is_empty());
    let first = splunkd::run(
        Arc::new(subset(&table, &creations)),
        &on_home(&["reputation=false"]),
    );
    assert_clean(&first, "search 1 (creations)");
    let db = home
        .join("var")
        .join("lib")
        .join("sysmonenrich")
        .join("state.db");
    assert!(
        db.is_file(),
        "the state database is not where SPLUNK_HOME={splunk_home} puts it ({})",
        db.display()
    );
    let second = splunkd::run(
        Arc::new(subset(&table, &others)),
        &on_home(&["reputation=false", "backfill=false"]),
    );
    assert_clean(&second, "search 2 (the rest)");
    let mut completed = 0;
    for (i, &r) in others.iter().enumerate() {
        for field in ["lineage", "lineage_status", "lineage_depth"] {
            assert_eq!(
                second.merged.get(i, field),
                whole.merged.get(r, field),
                "row {r} {field}: search 2 did not read search 1's table"
            );
        }
        if whole
            .merged
            .get(r, "lineage_status")
            .map(|v| v.joined())
            .as_deref()
            == Some("complete")
        {
            completed += 1;
        }
    }
    assert!(completed > 0, "no chain to complete from the table");

    // Two searches at once on the same database: one waits for the
    // other's writes, both return every row.
    let both: Vec<Outcome> = std::thread::scope(|s| {
        let a = s.spawn(|| splunkd::run(all.clone(), &on_home(&["reputation=false"])));
        let b = s.spawn(|| splunkd::run(all.clone(), &on_home(&["reputation=false"])));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for (i, out) in both.iter().enumerate() {
        assert_clean(out, &format!("concurrent search {i}"));
        assert_eq!(out.merged.len(), table.len(), "concurrent search {i}");
    }
    let log = std::fs::read_to_string(
        home.join("var")
            .join("log")
            .join("splunk")
            .join("sysmonenrich.log"),
    )
    .unwrap_or_default();
    assert!(
        !log.contains("state store unavailable"),
        "a search ran without the state database:\n{log}"
    );
}

/// Runs the CLI (Linux binary or Windows runner) and returns (stdout,
/// stderr, exit code).
fn cli(program: &Path, args: &[&str], home: &Path) -> (String, String, Option<i32>) {
    let out = Command::new(program)
        .args(args)
        .env("HOME", home)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// Two CLI outputs equal but for the lines of time-of-run fields; the
/// first difference named.
fn same_text(linux: &str, windows: &str, what: &str) {
    let keep = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !TIME_OF_RUN.iter().any(|f| l.contains(f)))
            .map(str::to_string)
            .collect()
    };
    let (l, w) = (keep(linux), keep(windows));
    if let Some(i) = (0..l.len().max(w.len())).find(|&i| l.get(i) != w.get(i)) {
        panic!(
            "{what}: line {} differs:\n  linux:   {:?}\n  windows: {:?}",
            i + 1,
            l.get(i),
            w.get(i)
        );
    }
}

#[test]
fn demo_sigma_check_and_enrich_say_what_the_linux_build_says() {
    let Some(exe) = runner() else { return };
    let home = tempfile::tempdir().unwrap();
    let linux = Path::new(BINARY);

    let (l, _, lc) = cli(linux, &["demo"], home.path());
    let (w, werr, wc) = cli(&exe, &["demo"], home.path());
    assert_eq!(wc, Some(0), "demo under Windows: {werr}");
    assert_eq!(lc, wc);
    same_text(&l, &w, "demo");

    if let Some(rules) = datasets::sigma_dir() {
        let rules = rules.display().to_string();
        let (l, _, lc) = cli(linux, &["sigma", "check", &rules], home.path());
        let (w, werr, wc) = cli(&exe, &["sigma", "check", &rules], home.path());
        assert_eq!(lc, wc, "sigma check exit codes: {werr}");
        // The same counts; paths are spelled by each system.
        let counts = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.chars().any(|c| c.is_ascii_digit()) && !l.contains('/'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            counts(&l),
            counts(&w),
            "sigma check differs:\n{l}\n---\n{w}"
        );
    }

    let name = "evtx_attack_samples.csv";
    let Some(file) = datasets::shared_file(&format!("data/sysmon/{name}")) else {
        return;
    };
    let file = file.display().to_string();
    let args = ["enrich", "-o", "reputation=false", &file];
    let (l, lerr, lc) = cli(linux, &args, home.path());
    let (w, werr, wc) = cli(&exe, &args, home.path());
    assert_eq!(lc, Some(0), "enrich (linux): {lerr}");
    assert_eq!(wc, Some(0), "enrich (windows): {werr}");
    same_text(&l, &w, "enrich");
}
