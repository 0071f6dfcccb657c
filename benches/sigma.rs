//! Cost of the Sigma engine on the full shared rule set.
//!
//! ```text
//! cargo bench --bench sigma -- [--passes N] [--diverse ROWS]
//! ```
//!
//! Prints the time to load and compile the 2,238 rules of `../shared/sigma`
//! (best and median of five, with the process CPU time, on the compile
//! threads and on one thread, alternately), then the time to
//! build the candidate tables of every EventCode (a search builds each on
//! the first event of its code), and rows per second over
//! `evtx_attack_samples.csv` (3,234 real Sysmon rows in Splunk's shape)
//! evaluated `--passes` times (default 20), each pass as one search (a new
//! `Scratch`: verdicts are remembered within a pass, by the fields the
//! rules read, never across passes). This is the engine alone, before the
//! command's once-per-process reuse of process-creation matches. Skips
//! with a message when `../shared` is absent.
//!
//! `--diverse ROWS` also evaluates ROWS events of `synth::diverse` (values
//! rarely repeat: the engine's cold path), once as one search and once
//! with remembered verdicts off, in this process: the loop to profile
//! (`perf record`) when the command's `sigma-diverse` variant is slow. Its
//! CPU time per row is printed beside the wall clock, which on a shared
//! host mostly measures the other processes. `SIGMA_BENCH_TOP=1` lists the
//! rules most often selected as candidates, and how often each matched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sysmonenrich::sigma::{Fields, Filter, RuleSet, Scratch};

struct Row<'a> {
    cells: &'a [String],
    index: &'a HashMap<&'a str, usize>,
}

impl Fields for Row<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Some(&self.cells[*self.index.get(name)?])
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.cells.iter().map(String::as_str)
    }
}

/// `../shared`, or `None` after saying why the bench has nothing to do.
fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.join("sigma").is_dir() {
        Some(dir)
    } else {
        println!(
            "skipping: {} not found (rules and data sets live outside the repository)",
            dir.join("sigma").display()
        );
        None
    }
}

/// Header and rows of a CSV data set.
fn load_csv(path: &Path) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let mut csv = csv::Reader::from_path(path).ok()?;
    let header = csv.headers().ok()?.iter().map(str::to_owned).collect();
    let rows = csv
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(str::to_owned).collect())
        .collect();
    Some((header, rows))
}

/// A generated event as the engine sees it; `by_id` maps the rule set's
/// field numbers to columns once (as the command does per header).
struct Synth<'a> {
    event: &'a sysmonenrich::synth::SynthEvent,
    by_id: &'a [Option<usize>],
}

impl Fields for Synth<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let i = sysmonenrich::synth::diverse::COLUMNS
            .iter()
            .position(|c| *c == name)?;
        Some(&self.event.values[i])
    }

    fn get_field(&self, id: usize, _name: &str) -> Option<&str> {
        Some(&self.event.values[(*self.by_id.get(id)?)?])
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.event.values.iter().map(String::as_str)
    }
}

/// This thread's CPU time (user + system) in seconds, from
/// `/proc/thread-self/stat` (USER_HZ ticks): on a shared host the wall
/// clock mostly measures the other processes. 0 when unreadable.
fn cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/thread-self/stat")
}

/// The whole process's CPU time (rule loading compiles on several threads).
fn process_cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat")
}

fn cpu_seconds_of(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// Candidates per row; with `SIGMA_BENCH_TOP` set, also the rules most
/// often selected and how often each then matched (what to look at when
/// the full tests dominate a profile).
fn candidate_stats(label: &str, rules: &RuleSet, rows: &[impl Fields]) {
    let mut per_rule = vec![0usize; rules.len()];
    let mut total = 0usize;
    for r in rows {
        for c in rules.candidate_ids(r) {
            per_rule[c as usize] += 1;
            total += 1;
        }
    }
    println!(
        "{label}: candidates per row: {:.1} on average",
        total as f64 / rows.len().max(1) as f64
    );
    if std::env::var_os("SIGMA_BENCH_TOP").is_none() {
        return;
    }
    let mut matched_per_rule = vec![0usize; rules.len()];
    for r in rows {
        let mut out = Vec::new();
        rules.matches(r, &mut out);
        for id in out {
            matched_per_rule[id.0 as usize] += 1;
        }
    }
    let mut v: Vec<_> = per_rule.iter().enumerate().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    for (i, n) in v.iter().take(40) {
        println!(
            "{n:6} {:6} {}",
            matched_per_rule[*i],
            rules.rules()[*i].path.display()
        );
    }
}

/// Rows/s of the rule set over `n` diverse generated events.
fn diverse(rules: &RuleSet, n: usize) {
    let mut g = sysmonenrich::synth::diverse::Generator::new(42, 200, 0.02);
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        events.extend(g.block(200));
    }
    events.truncate(n);
    let by_id: Vec<Option<usize>> = rules
        .field_names()
        .iter()
        .map(|f| {
            sysmonenrich::synth::diverse::COLUMNS
                .iter()
                .position(|c| c == f)
        })
        .collect();
    let rows: Vec<Synth> = events
        .iter()
        .map(|event| Synth {
            event,
            by_id: &by_id,
        })
        .collect();
    candidate_stats("diverse", rules, &rows);
    for (label, mut scratch) in [
        ("one search", Scratch::default()),
        ("verdicts off", Scratch::forgetful()),
    ] {
        let mut out = Vec::new();
        let mut matched = 0usize;
        let (t, cpu) = (Instant::now(), cpu_seconds());
        for row in &rows {
            out.clear();
            rules.matches_with(row, &mut scratch, &mut out);
            matched += usize::from(!out.is_empty());
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        let (hits, misses) = RuleSet::memo_counts(&scratch);
        println!(
            "diverse ({label}): {n} rows in {secs:.2} s = {:.0} rows/s, CPU {cpu:.2} s = {:.1} µs/row; \
             {matched} rows with a match; {hits} of {} answered by a remembered verdict",
            n as f64 / secs,
            cpu * 1e6 / n as f64,
            hits + misses
        );
    }
}

fn main() {
    let mut passes = 20usize;
    let mut diverse_rows = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--passes" {
            passes = args.next().and_then(|n| n.parse().ok()).unwrap_or(passes);
        }
        if a == "--diverse" {
            diverse_rows = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    let Some(shared) = shared_dir() else { return };
    let dirs: Vec<_> = ["rules", "rules-threat-hunting", "rules-emerging-threats"]
        .iter()
        .map(|d| shared.join("sigma").join(d))
        .collect();
    // Loading compiles on up to 4 threads (`compile_threads` in load.rs);
    // `SYSMONENRICH_SIGMA_LOAD_THREADS=1` is the one-thread load, measured
    // alternately in the same run for comparison.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut runs: [(Vec<Duration>, Vec<f64>); 2] = Default::default();
    let mut report = None;
    for round in 0..10 {
        let one = round % 2 == 1;
        if one {
            std::env::set_var("SYSMONENRICH_SIGMA_LOAD_THREADS", "1");
        } else {
            std::env::remove_var("SYSMONENRICH_SIGMA_LOAD_THREADS");
        }
        let (t, c) = (Instant::now(), process_cpu_seconds());
        let r = RuleSet::load(&dirs, &Filter::default());
        runs[usize::from(one)].0.push(t.elapsed());
        runs[usize::from(one)].1.push(process_cpu_seconds() - c);
        report = Some(r);
    }
    std::env::remove_var("SYSMONENRICH_SIGMA_LOAD_THREADS");
    for (times, cpu) in &mut runs {
        times.sort();
        cpu.sort_by(f64::total_cmp);
    }
    let Some(report) = report else { return };
    // The candidate tables are built per EventCode on first use; here all
    // at once, so that the figure above is not mistaken for the whole cost.
    let (t, c) = (Instant::now(), cpu_seconds());
    let unindexed = report.rules.unindexed_count();
    println!(
        "candidate tables of every EventCode (built on first use): {:.0} ms, CPU {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3,
        (cpu_seconds() - c) * 1e3
    );
    if diverse_rows > 0 {
        diverse(&report.rules, diverse_rows);
    }
    for ((times, cpu), label) in runs
        .iter()
        .zip([format!("{threads} threads"), "1 thread".into()])
    {
        println!(
            "load+compile {} rules ({} skipped), {label}: best {:.0} ms, median {:.0} ms \
             (process CPU median {:.0} ms) of {}",
            report.rules.len(),
            report.skipped.len(),
            times[0].as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            cpu[cpu.len() / 2] * 1e3,
            times.len()
        );
    }
    println!("{unindexed} rules without a literal");
    let Some((columns, cells)) = load_csv(&shared.join("data/sysmon/evtx_attack_samples.csv"))
    else {
        println!("skipping rows/s: evtx_attack_samples.csv unreadable");
        return;
    };
    let index: HashMap<&str, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let rows: Vec<Row> = cells
        .iter()
        .map(|cells| Row {
            cells,
            index: &index,
        })
        .collect();
    let rules = &report.rules;
    candidate_stats("evtx_attack_samples", rules, &rows);
    let mut out = Vec::new();
    let mut matched = 0usize;
    let mut remembered = (0, 0);
    let t = Instant::now();
    for _ in 0..passes {
        // Each pass is one search: its own buffers and remembered verdicts.
        let mut scratch = Scratch::default();
        matched = 0;
        for row in &rows {
            out.clear();
            rules.matches_with(row, &mut scratch, &mut out);
            matched += usize::from(!out.is_empty());
        }
        remembered = RuleSet::memo_counts(&scratch);
    }
    let secs = t.elapsed().as_secs_f64();
    let n = rows.len() * passes;
    println!(
        "evtx_attack_samples: {} rows x {passes} passes (each a new search) in {secs:.2} s = {:.0} rows/s; \
         {matched} rows with a match; {} of {} rows answered by a remembered verdict",
        rows.len(),
        n as f64 / secs,
        remembered.0,
        remembered.0 + remembered.1
    );
}
