//! Hostile rule *files* (issue 20): what a careless or hostile admin can
//! put in a rule folder or a release folder, run with the built binary.
//!
//! - each hostile file class beside a good rule, in `sigma check` and
//!   through the command: done in under 10 s and under 1 GB peak RSS, the
//!   good rule fires, the bad file is named (in one WARN for a search),
//!   every row comes back;
//! - `sigma install` from a folder holding links out of it, a loop and a
//!   FIFO: each refused by name, nothing outside the folder copied, the
//!   leftovers of killed installs cleaned;
//! - installs alternating with searches and `sigma check`: every load sees
//!   all of one set (`SYSMONENRICH_INSTALL_RACE_SECS`, default 8; the CI
//!   run sets 60).
//!
//! Peak RSS is the largest `VmHWM` of this process's `sysmonenrich`
//! children, sampled every 10 ms (a load that ran away passes 1 GB long
//! before it could finish between two samples).

mod common;

use common::datasets::{self, Table, Value};
use common::serial::serial;
use common::splunkd::{self, assert_clean, FinalChunk, Options, Outcome};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sysmonenrich");
const GOOD_ID: &str = "20000000-0000-0000-0000-00000000a001";
const LOAD_BUDGET: Duration = Duration::from_secs(10);
const RSS_BUDGET_KB: u64 = 1 << 20;

fn good_rule() -> String {
    format!(
        "title: Whoami\nid: {GOOD_ID}\nstatus: test\nlevel: high\nauthor: Tester\n\
         logsource:\n    product: windows\n    category: process_creation\n\
         detection:\n    selection:\n        Image|endswith: '\\whoami.exe'\n    condition: selection\n"
    )
}

/// A rule matching creations of `image`, with a numbered id.
fn numbered_rule(n: usize, image: &str, title: &str) -> String {
    format!(
        "title: {title} {n}\nid: 40000000-0000-0000-0000-{n:012}\nstatus: test\nlevel: low\n\
         author: Generator\nlogsource:\n    product: windows\n    category: process_creation\n\
         detection:\n    selection:\n        Image|endswith: '\\{image}'\n        \
         CommandLine|contains: ' -n{n} '\n    condition: selection\n"
    )
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {} failed", path.display());
}

/// The largest `VmHWM` (kB) of this process's `sysmonenrich` children,
/// sampled until dropped.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn children_peak_kb() -> u64 {
    let me = std::process::id().to_string();
    let mut peak = 0;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for p in procs.flatten() {
        let dir = p.path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).unwrap_or("");
        if ppid != me || !head.ends_with("(sysmonenrich") {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("VmHWM:") {
                let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                peak = peak.max(kb);
            }
        }
    }
    peak
}

impl PeakRss {
    fn start() -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(children_peak_kb(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        PeakRss {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn kb(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A finished run of the binary.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
    killed: bool,
}

/// Runs the binary with `args` (and `env`), killed (by its handle) after
/// `timeout`.
fn run_bin(args: &[&std::ffi::OsStr], env: &[(&str, &Path)], timeout: Duration) -> Run {
    let out = tempfile::tempdir().expect("tmp");
    let (o, e) = (out.path().join("out"), out.path().join("err"));
    let mut c = Command::new(BIN);
    c.env_remove("SPLUNK_HOME")
        .env_remove("SYSMONENRICH_APP_DIR")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).expect("out"))
        .stderr(std::fs::File::create(&e).expect("err"));
    for (k, v) in env {
        c.env(k, v);
    }
    let started = Instant::now();
    let mut child = c.spawn().expect("start the binary");
    let (ok, killed) = loop {
        match child.try_wait().expect("wait") {
            Some(s) => break (s.success(), false),
            None if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, true);
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let took = started.elapsed();
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run {
        ok,
        stdout: read(&o),
        stderr: read(&e),
        took,
        killed,
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// A hostile file class: what it puts beside the good rule, the names
/// that must be refused, and the words of the reason.
struct Class {
    what: &'static str,
    make: fn(&Path, &Path),
    bad: &'static [&'static str],
    reason: &'static str,
}

const CLASSES: &[Class] = &[
    Class {
        what: "two links to the folder itself",
        make: |d, _| {
            symlink(".", d.join("self-link-a")).expect("link");
            symlink(".", d.join("self-link-b")).expect("link");
        },
        bad: &["self-link-a", "self-link-b"],
        reason: "directory already read through another path",
    },
    Class {
        what: "a FIFO named *.yml",
        make: |d, _| mkfifo(&d.join("fifo-rule.yml")),
        bad: &["fifo-rule.yml"],
        reason: "a FIFO, not a regular file",
    },
    Class {
        what: "a .yml link to a FIFO elsewhere",
        make: |d, elsewhere| {
            mkfifo(&elsewhere.join("pipe"));
            symlink(elsewhere.join("pipe"), d.join("to-fifo.yml")).expect("link");
        },
        bad: &["to-fifo.yml"],
        reason: "a FIFO, not a regular file",
    },
    Class {
        what: "a .yml link to /dev/zero",
        make: |d, _| symlink("/dev/zero", d.join("zero-rule.yml")).expect("link"),
        bad: &["zero-rule.yml"],
        reason: "a character device, not a regular file",
    },
    Class {
        what: "a .yml link to itself",
        make: |d, _| symlink("self-loop.yml", d.join("self-loop.yml")).expect("link"),
        bad: &["self-loop.yml"],
        reason: "symbolic link that cannot be followed",
    },
    Class {
        what: "a sparse 4 GiB .yml file",
        make: |d, _| {
            let f = std::fs::File::create(d.join("sparse-rule.yml")).expect("create");
            f.set_len(4 << 30).expect("set_len");
        },
        bad: &["sparse-rule.yml"],
        reason: "file larger than 1024 KiB",
    },
];

/// A rule folder holding the good rule and one hostile class; the second
/// folder holds what the class points at.
fn folder(class: &Class) -> (tempfile::TempDir, tempfile::TempDir) {
    let d = tempfile::tempdir().expect("rules");
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    std::fs::write(d.path().join("good.yml"), good_rule()).expect("write");
    (class.make)(d.path(), elsewhere.path());
    (d, elsewhere)
}

#[test]
fn each_hostile_file_class_in_sigma_check() {
    let _g = serial();
    for class in CLASSES {
        let (d, _elsewhere) = folder(class);
        let rss = PeakRss::start();
        let run = run_bin(
            &[os("sigma"), os("check"), d.path().as_os_str()],
            &[],
            LOAD_BUDGET * 2,
        );
        let peak = rss.kb();
        drop(rss);
        let what = class.what;
        assert!(!run.killed, "{what}: sigma check still running after 20 s");
        assert!(run.ok, "{what}: {}\n{}", run.stdout, run.stderr);
        assert!(run.took < LOAD_BUDGET, "{what}: took {:?}", run.took);
        assert!(peak < RSS_BUDGET_KB, "{what}: peak RSS {peak} kB");
        assert!(
            run.stdout
                .contains(&format!("1 rules load, {} skipped", class.bad.len())),
            "{what}:\n{}",
            run.stdout
        );
        // Grouped by reason, with its count, each bad file named.
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(class.reason))
            .unwrap_or_else(|| panic!("{what}: no reason line:\n{}", run.stdout));
        assert_eq!(
            line.split_whitespace().next(),
            Some(class.bad.len().to_string().as_str()),
            "{what}: {line}"
        );
        for bad in class.bad {
            assert!(
                run.stdout.contains(bad),
                "{what}: {bad} not named:\n{}",
                run.stdout
            );
        }
    }
}

fn values(v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::One(s)) if s.is_empty() => Vec::new(),
        Some(Value::One(s)) => vec![s.clone()],
        Some(Value::Many(list)) => list.clone(),
    }
}

fn base(table: &Table, row: usize, field: &str) -> String {
    table
        .get(row, field)
        .map(|v| v.joined().into_owned())
        .unwrap_or_default()
}

/// A search's options with `$SPLUNK_HOME` = `home` and the app in `app`.
fn search_options(home: &Path, app: &Path) -> Options {
    let mut o = Options::with_args(&["reputation=false", "backfill=false"]);
    o.rows_per_chunk = 500;
    o.final_chunk = FinalChunk::WithLastRows;
    o.reply_timeout = LOAD_BUDGET * 3;
    o.exit_timeout = LOAD_BUDGET;
    o.env
        .push(("SPLUNK_HOME".into(), home.display().to_string()));
    o.env
        .push(("SYSMONENRICH_APP_DIR".into(), app.display().to_string()));
    o
}

fn sigma_warnings(out: &Outcome) -> Vec<&String> {
    out.messages
        .iter()
        .filter(|(level, text)| level == "WARN" && text.contains("sigma"))
        .map(|(_, t)| t)
        .collect()
}

#[test]
fn each_hostile_file_class_through_the_command() {
    let _g = serial();
    let table = Arc::new(datasets::generated());
    let whoami: Vec<usize> = (0..table.len())
        .filter(|&r| {
            base(&table, r, "EventCode") == "1"
                && base(&table, r, "Image")
                    .to_ascii_lowercase()
                    .ends_with("\\whoami.exe")
        })
        .collect();
    assert!(!whoami.is_empty(), "no whoami.exe creation in the data");
    for class in CLASSES {
        let what = class.what;
        let (d, _elsewhere) = folder(class);
        let home = tempfile::tempdir().expect("home");
        let app = tempfile::tempdir().expect("app");
        std::fs::create_dir_all(app.path().join("local")).expect("local/");
        std::fs::write(
            app.path().join("local/sysmonenrich.conf"),
            format!("[sigma]\nrules = {}\n", d.path().display()),
        )
        .expect("conf");
        let rss = PeakRss::start();
        let started = Instant::now();
        let out = splunkd::run(table.clone(), &search_options(home.path(), app.path()));
        let took = started.elapsed();
        let peak = rss.kb();
        drop(rss);
        assert_clean(what, &out);
        assert_eq!(out.merged.len(), table.len(), "{what}: rows");
        assert!(took < LOAD_BUDGET, "{what}: the search took {took:?}");
        assert!(peak < RSS_BUDGET_KB, "{what}: peak RSS {peak} kB");
        let warnings = sigma_warnings(&out);
        for bad in class.bad {
            let naming = warnings.iter().filter(|w| w.contains(bad)).count();
            assert_eq!(naming, 1, "{what}: {bad} in {naming} WARNs: {warnings:?}");
        }
        assert!(
            warnings.iter().all(|w| w.contains(class.reason)),
            "{what}: {warnings:?}"
        );
        for r in 0..table.len() {
            let want: Vec<String> = if whoami.contains(&r) {
                vec![GOOD_ID.into()]
            } else {
                Vec::new()
            };
            assert_eq!(
                values(out.merged.get(r, "sigma_ids")),
                want,
                "{what}: row {r}"
            );
        }
    }
}

/// Every file under `dir` (links not followed), relative, with contents.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let t = e.file_type().expect("file type");
            if t.is_dir() {
                walk(root, &p, out);
            } else if t.is_file() {
                let rel = p.strip_prefix(root).expect("under root").to_path_buf();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn install(source: &Path, app: &Path) -> Run {
    run_bin(
        &[
            os("sigma"),
            os("install"),
            source.as_os_str(),
            os("--app-dir"),
            app.as_os_str(),
        ],
        &[],
        Duration::from_secs(60),
    )
}

/// The set the app's pointer names.
fn current_set(app: &Path) -> PathBuf {
    let root = app.join("local/sigma");
    let name = std::fs::read_to_string(root.join("current")).expect("pointer");
    root.join("sets").join(name.trim())
}

#[test]
fn install_from_a_folder_refuses_links_out_loops_and_fifos_by_name() {
    let _g = serial();
    let outside = tempfile::tempdir().expect("outside");
    let secret = numbered_rule(900, "secret.exe", "OUTSIDE-SECRET");
    std::fs::write(outside.path().join("secret.yml"), &secret).expect("write");
    let neighbour = outside.path().join("neighbour");
    std::fs::create_dir(&neighbour).expect("mkdir");
    for i in 0..5 {
        std::fs::write(
            neighbour.join(format!("n{i}.yml")),
            numbered_rule(910 + i, "neighbour.exe", "NEIGHBOUR"),
        )
        .expect("write");
    }
    std::fs::write(neighbour.join("DRL-notes.txt"), "DRL").expect("write");

    let src = tempfile::tempdir().expect("src");
    let s = src.path();
    std::fs::create_dir(s.join("rules")).expect("mkdir");
    std::fs::write(s.join("rules/good1.yml"), numbered_rule(1, "a.exe", "Good")).expect("w");
    std::fs::write(s.join("rules/good2.yml"), numbered_rule(2, "b.exe", "Good")).expect("w");
    symlink(outside.path().join("secret.yml"), s.join("x.yml")).expect("link");
    symlink(&neighbour, s.join("other")).expect("link");
    symlink("loop-b", s.join("loop-a")).expect("link");
    symlink("loop-a", s.join("loop-b")).expect("link");
    symlink(".", s.join("rules/back-to-rules")).expect("link");
    mkfifo(&s.join("fifo.yml"));

    // Leftovers of killed installs, which this one must not trip on.
    let app = tempfile::tempdir().expect("app");
    let root = app.path().join("local/sigma");
    std::fs::create_dir_all(root.join("sets/.new-1-2-3/rules")).expect("mkdir");
    std::fs::write(root.join("sets/.new-1-2-3/rules/half.yml"), good_rule()).expect("w");
    std::fs::create_dir_all(root.join("sets/.old-0-0-1")).expect("mkdir");
    std::fs::write(root.join("current.tmp-99"), "garbage").expect("w");

    let run = install(s, app.path());
    assert!(!run.killed, "install still running after 60 s");
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    for (name, reason) in [
        ("x.yml", "leading outside the source folder"),
        ("other", "leading outside the source folder"),
        ("loop-a", "cannot be followed"),
        ("loop-b", "cannot be followed"),
        ("back-to-rules", "already read"),
        ("fifo.yml", "a FIFO"),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with("not copied: ") && l.contains(&format!("/{name}: ")))
            .unwrap_or_else(|| panic!("{name} not named:\n{}", run.stdout));
        assert!(line.contains(reason), "{name}: {line}");
    }
    // Only the two good rules, nothing from outside, nothing stale.
    let set = current_set(app.path());
    let names: Vec<PathBuf> = files_under(&set).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        names,
        [
            PathBuf::from("rules/good1.yml"),
            PathBuf::from("rules/good2.yml")
        ]
    );
    let everything = files_under(app.path());
    for (path, bytes) in &everything {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("OUTSIDE-SECRET") && !text.contains("NEIGHBOUR") && text != "DRL",
            "{} came from outside the source",
            path.display()
        );
    }
    let mut left: Vec<String> = everything
        .iter()
        .map(|(p, _)| p.display().to_string())
        .filter(|p| !p.starts_with("local/sigma/sets/"))
        .collect();
    left.sort();
    assert_eq!(left, ["local/sigma/.install.lock", "local/sigma/current"]);
    let sets: Vec<_> = std::fs::read_dir(root.join("sets"))
        .expect("sets/")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert!(run.stdout.contains("2 rules load"), "{}", run.stdout);
}

#[test]
fn install_over_rules_of_the_old_layout_replaces_them() {
    let _g = serial();
    let app = tempfile::tempdir().expect("app");
    let root = app.path().join("local/sigma");
    std::fs::create_dir_all(root.join("windows")).expect("mkdir");
    for i in 0..3 {
        std::fs::write(
            root.join(format!("windows/old{i}.yml")),
            numbered_rule(100 + i, "old.exe", "Old"),
        )
        .expect("w");
    }
    let src = tempfile::tempdir().expect("src");
    for i in 0..2 {
        std::fs::write(
            src.path().join(format!("new{i}.yml")),
            numbered_rule(200 + i, "new.exe", "New"),
        )
        .expect("w");
    }
    let run = install(src.path(), app.path());
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(!root.join("windows").exists(), "old rules left in place");
    let check = run_bin(
        &[os("sigma"), os("check")],
        &[("SYSMONENRICH_APP_DIR", app.path())],
        LOAD_BUDGET * 2,
    );
    assert!(check.ok, "{}\n{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("2 rules load, 0 skipped"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("installed set read: "),
        "{}",
        check.stdout
    );
}

/// A release folder of `n` rules over 20 subfolders, ids from `first`.
fn release(dir: &Path, first: usize, n: usize) {
    for i in first..first + n {
        let sub = dir.join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(
            sub.join(format!("r{i}.yml")),
            numbered_rule(i, "race.exe", "Race"),
        )
        .expect("write");
    }
}

/// The rule count a search logged (`sigma: N rules loaded ... (S skipped,
/// F filtered out, P problems)`), with S and P.
fn logged_load(home: &Path) -> Option<(usize, usize, usize)> {
    let log = std::fs::read_to_string(home.join("var/log/splunk/sysmonenrich.log")).ok()?;
    let line = log.lines().rev().find(|l| l.contains("rules loaded in"))?;
    let after = |word: &str| -> Option<usize> {
        let (before, _) = line.split_once(word)?;
        before
            .split_whitespace()
            .last()?
            .trim_start_matches('(')
            .parse()
            .ok()
    };
    Some((
        after(" rules loaded")?,
        after(" skipped")?,
        after(" problems")?,
    ))
}

#[test]
fn installs_racing_searches_and_checks_never_show_a_mixture() {
    let _g = serial();
    let secs: u64 = std::env::var("SYSMONENRICH_INSTALL_RACE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let (a_n, b_n) = (1_200, 700);
    let a = tempfile::tempdir().expect("a");
    let b = tempfile::tempdir().expect("b");
    release(a.path(), 0, a_n);
    release(b.path(), 5_000, b_n);
    let app = tempfile::tempdir().expect("app");
    std::fs::create_dir_all(app.path().join("default")).expect("default/");
    let first = install(a.path(), app.path());
    assert!(first.ok, "{}\n{}", first.stdout, first.stderr);

    let deadline = Instant::now() + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let installer = {
        let (a, b, app) = (
            a.path().to_path_buf(),
            b.path().to_path_buf(),
            app.path().to_path_buf(),
        );
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let src = if n.is_multiple_of(2) { &b } else { &a };
                let run = install(src, &app);
                assert!(run.ok, "install {n}: {}\n{}", run.stdout, run.stderr);
                n += 1;
            }
            n
        })
    };
    let table = Arc::new({
        let mut t = datasets::generated();
        t.rows.truncate(200);
        t
    });
    let (mut searches, mut checks) = (0, 0);
    let mut failures = Vec::new();
    while Instant::now() < deadline && failures.is_empty() {
        let home = tempfile::tempdir().expect("home");
        let out = splunkd::run(table.clone(), &search_options(home.path(), app.path()));
        assert_clean("search during installs", &out);
        let warnings = sigma_warnings(&out);
        match logged_load(home.path()) {
            Some((n, 0, 0)) if (n == a_n || n == b_n) && warnings.is_empty() => {}
            other => {
                let shown: Vec<_> = warnings.iter().take(5).collect();
                failures.push(format!("search {searches}: {other:?} {shown:?}"));
            }
        }
        searches += 1;
        let check = run_bin(
            &[os("sigma"), os("check")],
            &[("SYSMONENRICH_APP_DIR", app.path())],
            LOAD_BUDGET * 3,
        );
        let whole = [a_n, b_n].iter().any(|n| {
            check
                .stdout
                .contains(&format!("{n} rules load, 0 skipped, 0 problems"))
        });
        if !(check.ok && whole) {
            let text: String = check.stdout.chars().take(1500).collect();
            failures.push(format!("check {checks}: {text}\n{}", check.stderr));
        }
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let installs = installer.join().expect("installer");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        installs >= 2 && searches >= 2,
        "too little overlap: {installs} installs, {searches} searches"
    );
    eprintln!("{installs} installs, {searches} searches, {checks} checks in {secs} s: each saw one whole set");
}
