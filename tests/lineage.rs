//! Process lineage end to end: the binary, driven by the splunkd stand-in
//! (`common/splunkd.rs`), with the backfill answered by a fake splunkd REST
//! server (`common/fake_splunkd.rs`), compared with the ground truth of
//! `../shared/data/sysmon/<dataset>.lineage.jsonl` and with a reference
//! computed here from the rows.
//!
//! What is checked and why:
//! - **a** every EventCode 1 row of every data set gets exactly the
//!   reference chain (`lineage_guids`, `lineage_depth`), at splunkd's
//!   50,000-row maximum and at 1,000 rows per chunk, where most parents
//!   arrive in a later chunk than their children and only the backfill can
//!   supply them; a clean protocol run (no violations, exit 0, empty stderr);
//! - **b/c** without backfill: one chunk from an empty state store, then
//!   small chunks with the process table warm from that run (`state`);
//! - **d** every other event gets the chain of its acting process's
//!   creation (8/10: the *source* process);
//! - **e** a splunkd that hangs, fails or refuses the session key costs at
//!   most the backfill budget, leaves rows `partial` with a WARN, and the
//!   session key appears nowhere the user or `_internal` can see it;
//! - **f** lineage rules fire on real data (Office spawning a shell);
//! - **g** generated data (the test generator and the library's
//!   `synth::Generator`) against a reference computed here.
//!
//! Data set tests skip with a printed reason when `../shared` is absent; the
//! generated-data tests always run.

mod common;

use common::datasets::{self, Table, Value};
use common::fake_splunkd::{self, FakeSplunkd, Mode};
use common::home::{app_dir_with, Home};
use common::serial::serial;
use common::splunkd::{self, Options, Outcome};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZERO: &str = "00000000-0000-0000-0000-000000000000";
/// The binary's default `max_depth`.
const MAX_DEPTH: usize = 64;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Upper case, no braces: how GUIDs compare.
fn norm(g: &str) -> String {
    fake_splunkd::normalize_guid(g)
}

/// A multivalue output cell as its list of values.
fn values(v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::One(s)) if s.is_empty() => Vec::new(),
        Some(Value::One(s)) => vec![s.clone()],
        Some(Value::Many(list)) => list.clone(),
    }
}

fn cell(out: &Outcome, row: usize, field: &str) -> String {
    out.merged
        .get(row, field)
        .map(|v| v.joined().into_owned())
        .unwrap_or_default()
}

fn out_guids(out: &Outcome, row: usize) -> Vec<String> {
    values(out.merged.get(row, "lineage_guids"))
        .iter()
        .map(|g| norm(g))
        .collect()
}

/// Stand-in options: splunkd's chunk styles (8.2.1 at 50,000 rows, 6.3 at
/// smaller sizes), our SPLUNK_HOME, optionally a splunkd URI and app dir.
fn options(
    args: &[&str],
    rows: usize,
    home: &Home,
    uri: Option<String>,
    app_dir: Option<&Path>,
) -> Options {
    let mut o = home.options(args, rows, app_dir);
    o.splunkd_uri = uri;
    o
}

/// Protocol-level cleanliness: no violations, exit 0, empty stderr, no
/// ERROR messages, every row back once.
fn clean_problems(out: &Outcome) -> Vec<String> {
    let mut p: Vec<String> = out
        .violations
        .iter()
        .map(|v| format!("violation: {v}"))
        .collect();
    if let Some(e) = &out.ended_early {
        p.push(format!("ended early: {e}"));
    }
    if out.exit_code != Some(0) || out.timed_out {
        p.push(format!(
            "exit {:?} (killed: {})",
            out.exit_code, out.timed_out
        ));
    }
    if !out.stderr.is_empty() {
        p.push(format!(
            "stderr not empty: {}",
            splunkd::shorten(&out.stderr, 1000)
        ));
    }
    for t in out.error_texts() {
        p.push(format!("ERROR message: {t}"));
    }
    if let Some(r) = (0..out.merged.len()).find(|&r| out.merged.times_returned(r) != 1) {
        p.push(format!(
            "row {r} returned {} time(s)",
            out.merged.times_returned(r)
        ));
    }
    p
}

fn assert_clean(what: &str, out: &Outcome) {
    let p = clean_problems(out);
    assert!(
        p.is_empty(),
        "{what}: not a clean run:\n  {}\n{}",
        p.join("\n  "),
        out.report()
    );
}

/// Column lookups for the lineage inputs of a table.
struct Cols {
    code: usize,
    guid: Option<usize>,
    parent: Option<usize>,
    source: Vec<usize>,
}

impl Cols {
    fn of(t: &Table) -> Cols {
        Cols {
            code: t
                .position("EventCode")
                .or_else(|| t.position("EventID"))
                .expect("EventCode column"),
            guid: t.position("ProcessGuid"),
            parent: t.position("ParentProcessGuid"),
            source: ["SourceProcessGuid", "SourceProcessGUID"]
                .iter()
                .filter_map(|c| t.position(c))
                .collect(),
        }
    }

    fn text(t: &Table, row: usize, col: Option<usize>) -> String {
        col.map(|c| t.rows[row][c].joined().trim().to_string())
            .unwrap_or_default()
    }

    fn code(&self, t: &Table, row: usize) -> String {
        Cols::text(t, row, Some(self.code))
    }

    fn is_creation(&self, t: &Table, row: usize) -> bool {
        self.code(t, row) == "1"
    }

    /// The acting process (8/10: the source process), normalised.
    fn acting(&self, t: &Table, row: usize) -> String {
        let code = self.code(t, row);
        if code == "8" || code == "10" {
            self.source
                .iter()
                .map(|&c| norm(&t.rows[row][c].joined()))
                .find(|g| !g.is_empty())
                .unwrap_or_default()
        } else {
            norm(&Cols::text(t, row, self.guid))
        }
    }

    fn parent(&self, t: &Table, row: usize) -> String {
        norm(&Cols::text(t, row, self.parent))
    }
}

/// How a reference chain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    NoParent,
    Missing,
    Cycle,
    MaxDepth,
}

impl Stop {
    fn status(self) -> &'static str {
        match self {
            Stop::NoParent => "complete",
            Stop::Missing => "partial",
            Stop::Cycle => "cycle",
            Stop::MaxDepth => "truncated",
        }
    }
}

/// The simple reference (data/sysmon/README.md, "Lineage ground truth"):
/// entry 0 = the creation's ParentProcessGuid; entry i+1 = the parent
/// reported by the creation of entry i while that creation is known
/// (`creation_of`); stop after the all-zero GUID (included), at an unknown
/// creation, before a repeat, or at `MAX_DEPTH` entries.
fn reference_chain(
    t: &Table,
    cols: &Cols,
    row: usize,
    creation_of: &dyn Fn(&str) -> Option<usize>,
) -> (Vec<String>, Stop) {
    let own = norm(&Cols::text(t, row, cols.guid));
    let first = cols.parent(t, row);
    if first.is_empty() {
        return (Vec::new(), Stop::Missing);
    }
    if first == own {
        return (Vec::new(), Stop::Cycle);
    }
    let mut chain = vec![first];
    loop {
        let last = chain.last().expect("non-empty").clone();
        if last == ZERO {
            return (chain, Stop::NoParent);
        }
        let Some(c) = creation_of(&last) else {
            return (
                chain.clone(),
                if chain.len() >= MAX_DEPTH {
                    Stop::MaxDepth
                } else {
                    Stop::Missing
                },
            );
        };
        let next = cols.parent(t, c);
        if next.is_empty() {
            return (chain, Stop::Missing);
        }
        if next == own || chain.contains(&next) {
            return (chain, Stop::Cycle);
        }
        if chain.len() >= MAX_DEPTH {
            return (chain, Stop::MaxDepth);
        }
        chain.push(next);
    }
}

/// First EventCode 1 row of every GUID.
fn creation_index(t: &Table, cols: &Cols) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in 0..t.len() {
        if cols.is_creation(t, r) {
            let g = norm(&Cols::text(t, r, cols.guid));
            if !g.is_empty() {
                m.entry(g).or_insert(r);
            }
        }
    }
    m
}

/// Reference chains of every EventCode 1 row with all creations known.
fn full_reference(t: &Table) -> HashMap<usize, (Vec<String>, Stop)> {
    let cols = Cols::of(t);
    let idx = creation_index(t, &cols);
    let known = |g: &str| idx.get(g).copied();
    (0..t.len())
        .filter(|&r| cols.is_creation(t, r))
        .map(|r| (r, reference_chain(t, &cols, r, &known)))
        .collect()
}

/// Reference chains when only what arrived so far is known (no backfill,
/// empty state): for a row in chunk k, creations in chunks 0..=k.
fn chunked_reference(t: &Table, rows_per_chunk: usize) -> HashMap<usize, (Vec<String>, Stop)> {
    let cols = Cols::of(t);
    let idx = creation_index(t, &cols);
    (0..t.len())
        .filter(|&r| cols.is_creation(t, r))
        .map(|r| {
            let end = (r / rows_per_chunk + 1) * rows_per_chunk;
            let known = |g: &str| idx.get(g).copied().filter(|&c| c < end);
            (r, reference_chain(t, &cols, r, &known))
        })
        .collect()
}

/// Where two chains part: the first index whose GUIDs differ, with both.
fn first_difference(want: &[String], got: &[String]) -> String {
    let i = want.iter().zip(got).take_while(|(a, b)| a == b).count();
    let at = |v: &[String]| v.get(i).map_or("(end)".to_string(), |g| format!("{{{g}}}"));
    format!(
        "first difference at entry {i}: want {}, got {}",
        at(want),
        at(got)
    )
}

/// Compares creation rows with a reference; returns (checked, mismatches).
fn compare_creations(
    out: &Outcome,
    reference: &HashMap<usize, (Vec<String>, Stop)>,
    check_status: bool,
) -> (usize, Vec<String>) {
    let mut rows: Vec<_> = reference.keys().copied().collect();
    rows.sort_unstable();
    let mut bad = Vec::new();
    for r in &rows {
        let (want, stop) = &reference[r];
        let got = out_guids(out, *r);
        let depth = cell(out, *r, "lineage_depth");
        let status = cell(out, *r, "lineage_status");
        if &got != want
            || depth != want.len().to_string()
            || (check_status && status != stop.status())
        {
            bad.push(format!(
                "row {r}: want depth {} ({}), got depth {depth} ({status}); {}; lineage {:?}",
                want.len(),
                stop.status(),
                first_difference(want, &got),
                cell(out, *r, "lineage")
            ));
        }
    }
    (rows.len(), bad)
}

/// Non-creation rows whose acting process's creation is in `t`: (row,
/// that creation's row).
fn acting_rows(t: &Table) -> Vec<(usize, usize)> {
    let cols = Cols::of(t);
    let idx = creation_index(t, &cols);
    (0..t.len())
        .filter(|&r| !cols.is_creation(t, r))
        .filter_map(|r| {
            let g = cols.acting(t, r);
            idx.get(&g).map(|&c| (r, c))
        })
        .collect()
}

/// Case d: every acting row has exactly its creation's chain as the output
/// gave it for the creation row and as the reference says.
fn compare_acting(
    t: &Table,
    out: &Outcome,
    reference: &HashMap<usize, (Vec<String>, Stop)>,
) -> (usize, Vec<String>) {
    let rows = acting_rows(t);
    let mut bad = Vec::new();
    for &(r, c) in &rows {
        let want = &reference[&c].0;
        let got = out_guids(out, r);
        let depth = cell(out, r, "lineage_depth");
        if &got != want || depth != want.len().to_string() {
            bad.push(format!(
                "row {r} (EventCode {}, creation row {c}): want depth {}, got depth {depth} ({}); {}",
                Cols::of(t).code(t, r),
                want.len(),
                cell(out, r, "lineage_status"),
                first_difference(want, &got)
            ));
        }
    }
    (rows.len(), bad)
}

fn report_bad(what: &str, checked: usize, bad: &[String]) -> Option<String> {
    if bad.is_empty() {
        return None;
    }
    Some(format!(
        "{what}: {} of {checked} rows differ, e.g.\n    {}",
        bad.len(),
        bad.iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ")
    ))
}

/// Distinct `lineage_source` values over all rows.
fn sources_seen(out: &Outcome) -> Vec<String> {
    let mut s: Vec<String> = (0..out.merged.len())
        .flat_map(|r| values(out.merged.get(r, "lineage_source")))
        .collect();
    s.sort();
    s.dedup();
    s
}

// ---------------------------------------------------------------------------
// Data sets and their ground truth
// ---------------------------------------------------------------------------

struct Dataset {
    name: String,
    table: Arc<Table>,
    /// The lineage.jsonl reference by row index of the table.
    reference: HashMap<usize, (Vec<String>, Stop)>,
}

fn load_dataset(file: &str) -> Option<Dataset> {
    let table = datasets::sysmon_dataset(file)?;
    let stem = file.trim_end_matches(".gz").trim_end_matches(".csv");
    let path = datasets::shared_file(&format!("data/sysmon/{stem}.lineage.jsonl"))?;
    let text = std::fs::read_to_string(&path).expect("read lineage.jsonl");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("lineage.jsonl line"))
        .collect();
    let cols = Cols::of(&table);
    let creations: Vec<usize> = (0..table.len())
        .filter(|&r| cols.is_creation(&table, r))
        .collect();
    assert_eq!(
        creations.len(),
        lines.len(),
        "{stem}: EventCode 1 rows vs reference lines"
    );
    let mut reference = HashMap::new();
    for (&r, l) in creations.iter().zip(&lines) {
        assert_eq!(
            norm(l["ProcessGuid"].as_str().unwrap_or("")),
            norm(&Cols::text(&table, r, cols.guid)),
            "{stem}: reference line out of step at row {r}"
        );
        let guids: Vec<String> = l["ancestor_guids"]
            .as_array()
            .expect("ancestor_guids")
            .iter()
            .map(|g| norm(g.as_str().unwrap_or("")))
            .collect();
        let depth = l["depth"].as_u64().expect("depth") as usize;
        assert_eq!(depth, guids.len(), "{stem}: depth = len(ancestor_guids)");
        let stop = match l["stop_reason"].as_str().unwrap_or("") {
            "no_parent" => Stop::NoParent,
            "cycle" => Stop::Cycle,
            "max_depth" => Stop::MaxDepth,
            _ => Stop::Missing,
        };
        reference.insert(r, (guids, stop));
    }
    // Our reference function agrees with the ground truth: it is what the
    // generated-data tests rely on.
    let ours = full_reference(&table);
    for (r, (g, _)) in &reference {
        assert_eq!(&ours[r].0, g, "{stem}: reference function, row {r}");
    }
    Some(Dataset {
        name: stem.to_string(),
        table: Arc::new(table),
        reference,
    })
}

fn all_datasets() -> Option<Vec<Dataset>> {
    datasets::shared_dir()?;
    Some(
        datasets::SYSMON_DATASETS
            .iter()
            .filter_map(|f| load_dataset(f))
            .collect(),
    )
}

/// What the backfill searches looked like: the request shape the command
/// must send.
fn check_backfill_requests(what: &str, fake: &FakeSplunkd) -> Vec<String> {
    let mut p = Vec::new();
    for (i, r) in fake.requests().iter().enumerate() {
        let mut bad = |m: String| p.push(format!("{what}: backfill request {i}: {m}"));
        if r.method != "POST" {
            bad(format!("method {}", r.method));
        }
        if r.path != "/servicesNS/admin/sysmonenrich/search/jobs/export" {
            bad(format!("path {}", r.path));
        }
        if !matches!(r.session_key(), Some(k) if !k.is_empty()) {
            bad(format!("Authorization {:?}", r.authorization));
        }
        if !r
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        {
            bad(format!("Content-Type {:?}", r.content_type));
        }
        if r.field("output_mode") != Some("json") {
            bad(format!("output_mode {:?}", r.field("output_mode")));
        }
        if r.field("earliest_time").is_none() || r.field("latest_time").is_none() {
            bad("no earliest_time/latest_time".into());
        }
        let s = &r.search;
        if !(s.starts_with("search ")
            && s.contains(" EventCode=1 ")
            && s.contains("ProcessGuid IN (")
            && s.contains("| dedup ProcessGuid")
            && s.contains("| fields "))
        {
            bad(format!("search text {s:?}"));
        }
        if r.guids.is_empty() {
            bad("no GUIDs in the search".into());
        }
        let mut distinct: Vec<String> = r.guids.iter().map(|g| norm(g)).collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != r.guids.len() {
            bad(format!("repeated GUIDs in one search: {:?}", r.guids));
        }
        if distinct.iter().any(|g| g == ZERO) {
            bad("asked for the all-zero GUID".into());
        }
        if r.status != 200 {
            bad(format!("answered {}", r.status));
        }
    }
    p
}

// ---------------------------------------------------------------------------
// The fake splunkd itself
// ---------------------------------------------------------------------------

/// One raw HTTP exchange with the fake (std only, so the fake is checked
/// independently of the command's HTTP client).
fn http_post(uri: &str, path: &str, key: &str, form: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let addr = uri.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to fake");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Splunk {key}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // De-chunk when chunked.
    let body = if text.contains("Transfer-Encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, body, started.elapsed())
}

fn form_encode(search: &str) -> String {
    let enc: String =
        percent_encoding::utf8_percent_encode(search, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%20", "+");
    format!("search={enc}&output_mode=json&earliest_time=-30d&latest_time=now")
}

#[test]
fn fake_splunkd_answers_like_splunkd() {
    assert_eq!(
        fake_splunkd::parse_form(b"a=x+y%2Bz&search=%22%7Bab%7D%22&b"),
        [
            ("a".to_string(), "x y+z".to_string()),
            ("search".to_string(), "\"{ab}\"".to_string()),
            ("b".to_string(), String::new())
        ]
    );
    let s = "search `sysmonenrich_index` EventCode=1 ProcessGuid IN (\"{a-b}\", \"C-D\") | dedup ProcessGuid | fields ProcessGuid _time";
    assert_eq!(fake_splunkd::search_guids(s), ["{a-b}", "C-D"]);
    assert_eq!(
        fake_splunkd::search_fields(s).unwrap(),
        ["ProcessGuid", "_time"]
    );
    assert_eq!(
        fake_splunkd::render_time("1645292116.196"),
        "2022-02-19T17:35:16.196+00:00"
    );

    let table = datasets::generated();
    let cols = Cols::of(&table);
    let idx = creation_index(&table, &cols);
    let (g, &row) = idx.iter().min_by_key(|(_, r)| **r).unwrap();
    let g = g.clone();
    let path = "/servicesNS/admin/search/search/jobs/export";
    let search = format!(
        "search `sysmonenrich_index` EventCode=1 ProcessGuid IN (\"{{{}}}\", \"{{{ZERO}}}\") | dedup ProcessGuid | fields {}",
        g.to_lowercase(),
        fake_splunkd::EXPORT_FIELDS.join(" ")
    );
    let fake = FakeSplunkd::start(&table, Mode::Normal);
    let (status, body, _) = http_post(&fake.uri(), path, "k1", &form_encode(&search));
    assert_eq!(status, 200, "{body}");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{body}");
    assert_eq!(lines[0]["preview"], false);
    assert_eq!(lines[0]["offset"], 0);
    assert_eq!(lines[0]["lastrow"], true);
    let result = lines[0]["result"].as_object().unwrap();
    assert_eq!(
        norm(result["ProcessGuid"].as_str().unwrap()),
        g,
        "case-insensitive match"
    );
    assert_eq!(
        result["Image"],
        table.get(row, "Image").unwrap().joined().as_ref()
    );
    assert!(result["_time"].as_str().unwrap().ends_with("+00:00"));
    assert!(result
        .keys()
        .all(|k| fake_splunkd::EXPORT_FIELDS.contains(&k.as_str())));
    let (_, _, fast) = http_post(&fake.uri(), "/services/other", "k1", "");
    assert!(fast < Duration::from_secs(2));

    fake.set_mode(Mode::Fail(500));
    let (status, body, _) = http_post(&fake.uri(), path, "k1", &form_encode(&search));
    assert_eq!(status, 500);
    assert!(body.contains("\"messages\""), "{body}");

    fake.set_mode(Mode::RejectKey);
    fake.expect_key("right");
    let (status, body, _) = http_post(&fake.uri(), path, "wrong", &form_encode(&search));
    assert_eq!(
        (status, body.as_str()),
        (401, fake_splunkd::UNAUTHORIZED_BODY)
    );
    let (status, _, _) = http_post(&fake.uri(), path, "right", &form_encode(&search));
    assert_eq!(status, 200);

    fake.set_mode(Mode::Slow(Duration::from_millis(400)));
    let (status, _, took) = http_post(&fake.uri(), path, "k1", &form_encode(&search));
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(400), "{took:?}");

    let reqs = fake.requests();
    assert_eq!(fake.request_count(), 6);
    assert_eq!(reqs.len(), 6);
    assert_eq!(reqs[0].search, search);
    assert_eq!(reqs[0].session_key(), Some("k1"));
    assert_eq!(reqs[0].results, 1);
    assert_eq!(reqs[1].status, 404);
    assert!(reqs.windows(2).all(|w| w[0].at <= w[1].at));

    // A hanging request is released when the server is dropped, and the
    // drop does not wait for it.
    fake.set_mode(Mode::Hang);
    let uri = fake.uri();
    let client = std::thread::spawn(move || http_post(&uri, path, "k1", "search=x"));
    while fake.request_count() < 7 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!client.is_finished(), "Hang answered");
    let t = Instant::now();
    drop(fake);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        t.elapsed()
    );
    let (status, _, _) = client.join().unwrap();
    assert_eq!(status, 0, "a hung request gets no status line");
}

// ---------------------------------------------------------------------------
// a, d: data sets with backfill from the fake splunkd
// ---------------------------------------------------------------------------

#[test]
fn datasets_with_backfill_match_the_ground_truth() {
    let _serial = serial();
    let Some(sets) = all_datasets() else { return };
    let mut failures = Vec::new();
    for d in &sets {
        for rows in [50_000, 1_000] {
            let home = Home::new("lineage_home.");
            let fake = FakeSplunkd::start(&d.table, Mode::Normal);
            let what = format!("{} at {rows} rows/chunk, backfill", d.name);
            let opts = options(&["reputation=false"], rows, &home, Some(fake.uri()), None);
            let started = Instant::now();
            let out = splunkd::run(d.table.clone(), &opts);
            let took = started.elapsed();
            let problems = clean_problems(&out);
            if !problems.is_empty() {
                failures.push(format!(
                    "{what}: not clean:\n  {}\n{}",
                    problems.join("\n  "),
                    out.report()
                ));
                continue;
            }
            let (n, bad) = compare_creations(&out, &d.reference, true);
            failures.extend(report_bad(&format!("{what} (a: EventCode 1)"), n, &bad));
            let (na, bad_a) = compare_acting(&d.table, &out, &d.reference);
            failures.extend(report_bad(&format!("{what} (d: acting)"), na, &bad_a));
            failures.extend(check_backfill_requests(&what, &fake));
            let sources = sources_seen(&out);
            let chunks = d.table.len().div_ceil(rows);
            if chunks > 1 && !sources.iter().any(|s| s == "splunk") {
                failures.push(format!(
                    "{what}: {chunks} chunks but no ancestor came from splunk (sources {sources:?})"
                ));
            }
            let guids: usize = fake.requests().iter().map(|r| r.guids.len()).sum();
            if std::env::var_os("LINEAGE_DEBUG").is_some() {
                for r in fake.requests() {
                    eprintln!("  {what}: search for {:?}: {} results", r.guids, r.results);
                }
                for (level, text) in &out.messages {
                    eprintln!("  {what}: {level} {text}");
                }
            }
            eprintln!(
                "{what}: {} rows, {n} creations, {na} acting rows checked in {:.1} s; \
                 {} backfill searches for {guids} GUIDs; sources {sources:?}; {} of {n} differ",
                d.table.len(),
                took.as_secs_f64(),
                fake.request_count(),
                bad.len(),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// b, c, d: no backfill; empty state, then the process table warm
// ---------------------------------------------------------------------------

#[test]
fn datasets_without_backfill_then_from_the_warm_process_table() {
    let _serial = serial();
    let Some(sets) = all_datasets() else { return };
    let args = ["backfill=false", "reputation=false"];
    let mut failures = Vec::new();
    for d in &sets {
        let home = Home::new("lineage_home.");
        // b: one chunk (every data set fits in 50,000 rows), empty state.
        assert!(d.table.len() <= 50_000, "{} does not fit a chunk", d.name);
        let what = format!(
            "{} (b: 50,000 rows/chunk, no backfill, empty state)",
            d.name
        );
        let t = Instant::now();
        let out = splunkd::run(d.table.clone(), &options(&args, 50_000, &home, None, None));
        assert_clean(&what, &out);
        let (n, bad) = compare_creations(&out, &d.reference, true);
        failures.extend(report_bad(&what, n, &bad));
        let (na, bad_a) = compare_acting(&d.table, &out, &d.reference);
        failures.extend(report_bad(&format!("{what} d"), na, &bad_a));
        eprintln!(
            "{what}: {:.1} s, sources {:?}",
            t.elapsed().as_secs_f64(),
            sources_seen(&out)
        );
        assert!(
            home.path().join("var/lib/sysmonenrich/state.db").is_file(),
            "{what}: no state.db"
        );

        // c: small chunks, same SPLUNK_HOME: parents in later chunks come
        // from the process table.
        let what = format!("{} (c: 1,000 rows/chunk, no backfill, warm state)", d.name);
        let t = Instant::now();
        let out = splunkd::run(d.table.clone(), &options(&args, 1_000, &home, None, None));
        assert_clean(&what, &out);
        let (n, bad) = compare_creations(&out, &d.reference, true);
        failures.extend(report_bad(&what, n, &bad));
        let (na, bad_a) = compare_acting(&d.table, &out, &d.reference);
        failures.extend(report_bad(&format!("{what} d"), na, &bad_a));
        let sources = sources_seen(&out);
        let state_rows = (0..out.merged.len())
            .filter(|&r| {
                values(out.merged.get(r, "lineage_source"))
                    .iter()
                    .any(|s| s == "state")
            })
            .count();
        eprintln!(
            "{what}: {:.1} s, sources {sources:?}, {state_rows} rows with state",
            t.elapsed().as_secs_f64()
        );
        // With one chunk everything is in the results; only data sets that
        // span several chunks can need the table.
        if d.table.len() > 1_000 && state_rows == 0 {
            failures.push(format!("{what}: no row has lineage_source=state"));
        }
        // Without the warm table these rows would be cut: make sure the
        // comparison above was not vacuous.
        let cold = chunked_reference(&d.table, 1_000);
        let needed = cold
            .iter()
            .filter(|(r, (g, _))| d.reference[r].0 != *g)
            .count();
        eprintln!("{what}: {needed} creation rows need ancestors from later chunks");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// e: a splunkd that hangs, fails or refuses the key
// ---------------------------------------------------------------------------

/// A synthetic result set from the library generator, newest first: the
/// blocks in reverse order, each block already newest first.
fn synth_table(seed: u64, hosts: usize, blocks: usize, processes: usize) -> Table {
    use sysmonenrich::synth;
    let mut g = synth::Generator::new(seed, hosts);
    let mut all: Vec<Vec<synth::SynthEvent>> = (0..blocks).map(|_| g.block(processes)).collect();
    all.reverse();
    Table {
        name: format!("synth(seed {seed}, {blocks}×{processes})"),
        columns: synth::COLUMNS.iter().map(|c| c.to_string()).collect(),
        rows: all
            .into_iter()
            .flatten()
            .map(|e| e.values.into_iter().map(Value::One).collect())
            .collect(),
    }
}

/// The first `n` rows of `t` (what the search returned), same columns.
fn head(t: &Table, n: usize) -> Table {
    Table {
        name: format!("{} (newest {n})", t.name),
        columns: t.columns.clone(),
        rows: t.rows[..n.min(t.len())].to_vec(),
    }
}

struct FailureCase {
    mode: Mode,
    /// `RejectKey` with an expected key the search does not have.
    key: Option<&'static str>,
}

/// Runs `sent` against a fake serving `full` in `case.mode` and checks what
/// DESIGN §2 promises when backfill cannot help. Returns problems.
fn run_failure_case(
    full: &Table,
    sent: Arc<Table>,
    rows_per_chunk: usize,
    case: &FailureCase,
    budget: Duration,
) -> Vec<String> {
    run_failure_case_with_warnings(full, sent, rows_per_chunk, case, budget).0
}

/// [`run_failure_case`], also returning every WARN text of the search.
fn run_failure_case_with_warnings(
    full: &Table,
    sent: Arc<Table>,
    rows_per_chunk: usize,
    case: &FailureCase,
    budget: Duration,
) -> (Vec<String>, Vec<String>) {
    let what = format!(
        "{} with splunkd {:?}, {rows_per_chunk} rows/chunk",
        sent.name, case.mode
    );
    let home = Home::new("lineage_home.");
    let app = app_dir_with(
        "lineage_app.",
        &format!("[backfill]\ntime_budget = {}s\n", budget.as_secs()),
    );
    let fake = FakeSplunkd::start(full, case.mode);
    if let Some(k) = case.key {
        fake.expect_key(k);
    }
    let mut opts = options(
        &["reputation=false"],
        rows_per_chunk,
        &home,
        Some(fake.uri()),
        Some(app.path()),
    );
    opts.keep_replies = true;
    opts.reply_timeout = budget + Duration::from_secs(60);
    let started = Instant::now();
    let out = splunkd::run(sent.clone(), &opts);
    let took = started.elapsed();
    let mut p: Vec<String> = clean_problems(&out)
        .into_iter()
        .map(|x| format!("{what}: {x}"))
        .collect();
    let limit = budget + Duration::from_secs(1);
    if took > limit {
        p.push(format!(
            "{what}: the search took {:.2} s, more than the backfill budget + 1 s ({:.0} s)",
            took.as_secs_f64(),
            limit.as_secs_f64()
        ));
    }
    // WARN that names the backfill.
    let warns: Vec<String> = out
        .messages
        .iter()
        .filter(|(l, _)| l == "WARN")
        .map(|(_, t)| t.clone())
        .collect();
    if !warns.iter().any(|t| t.to_lowercase().contains("backfill")) {
        p.push(format!("{what}: no WARN mentions backfill: {warns:?}"));
    }
    // Chains: exactly what the results alone give; cut ones are partial.
    let expected = chunked_reference(&sent, rows_per_chunk);
    let (n, bad) = compare_creations(&out, &expected, true);
    p.extend(report_bad(&what, n, &bad));
    let full_ref = full_reference(full);
    let cut = expected
        .iter()
        .filter(|(r, (g, s))| *s == Stop::Missing && full_ref[r].0.len() > g.len())
        .count();
    if cut == 0 {
        p.push(format!(
            "{what}: test data has no row the backfill would have extended"
        ));
    }
    // The key: recorded by the fake, and nowhere in what the user sees.
    let reqs = fake.requests();
    if reqs.is_empty() {
        p.push(format!("{what}: the command never asked splunkd"));
    }
    let key = reqs
        .iter()
        .find_map(|r| r.session_key().map(str::to_string))
        .unwrap_or_default();
    if key.len() >= 16 {
        let mut seen = Vec::new();
        for k in &out.kept {
            if k.metadata.to_string().contains(&key) {
                seen.push("reply metadata".to_string());
            }
            if k.rows
                .iter()
                .flatten()
                .any(|c| String::from_utf8_lossy(c).contains(&key))
            {
                seen.push("reply rows".to_string());
            }
        }
        if out.messages.iter().any(|(_, t)| t.contains(&key))
            || out.errors.iter().any(|t| t.contains(&key))
        {
            seen.push("inspector messages".into());
        }
        if out.stderr.contains(&key) {
            seen.push("stderr".into());
        }
        let log = home.log();
        if log.contains(&key) {
            seen.push("sysmonenrich.log".into());
        }
        if log.is_empty() {
            p.push(format!("{what}: no log file written"));
        }
        if !seen.is_empty() {
            p.push(format!("{what}: the session key appears in {seen:?}"));
        }
    } else {
        p.push(format!("{what}: no usable session key recorded ({key:?})"));
    }
    let same_warn_repeats =
        warns.len() - warns.iter().collect::<std::collections::HashSet<_>>().len();
    eprintln!(
        "{what}: {:.2} s, {} backfill request(s), {} WARN(s) ({} repeats), {cut} rows cut, {} of {n} differ",
        took.as_secs_f64(),
        reqs.len(),
        warns.len(),
        same_warn_repeats,
        bad.len()
    );
    drop(fake);
    (p, warns)
}

/// 40 sessions of 10 processes on 4 hosts (about 2,400 rows); the search
/// returned the newest 1,500 rows, cutting a session in two: its older half
/// only splunkd has.
fn split_synth() -> (Table, Arc<Table>) {
    let full = synth_table(11, 4, 40, 10);
    let sent = Arc::new(head(&full, 1_500));
    (full, sent)
}

#[test]
fn backfill_failures_cost_at_most_the_budget_and_never_leak_the_key() {
    let _serial = serial();
    let (full, sent) = split_synth();
    let budget = Duration::from_secs(2);
    let cases = [
        FailureCase {
            mode: Mode::Hang,
            key: None,
        },
        FailureCase {
            mode: Mode::Fail(500),
            key: None,
        },
        FailureCase {
            mode: Mode::RejectKey,
            key: Some("not-the-search-session-key"),
        },
    ];
    let mut problems = Vec::new();
    for case in &cases {
        problems.extend(run_failure_case(&full, sent.clone(), 1_000, case, budget));
    }
    // The same split with a working splunkd: the cut rows are complete,
    // so the checks above really exercised missing ancestors.
    let home = Home::new("lineage_home.");
    let fake = FakeSplunkd::start(&full, Mode::Normal);
    let out = splunkd::run(
        sent.clone(),
        &options(&["reputation=false"], 1_000, &home, Some(fake.uri()), None),
    );
    assert_clean("working splunkd", &out);
    let reference: HashMap<_, _> = full_reference(&full)
        .into_iter()
        .filter(|(r, _)| *r < sent.len())
        .collect();
    let (n, bad) = compare_creations(&out, &reference, true);
    problems.extend(report_bad("same split, working splunkd", n, &bad));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A splunkd that keeps failing is one problem for the user, not one per
/// chunk: `Enricher::take_warnings` promises each warning once per search,
/// and DESIGN §2 a one-line summary, not a wall of repeats.
#[test]
fn backfill_failure_is_warned_once_per_search() {
    let _serial = serial();
    let (full, sent) = split_synth();
    let mut problems = Vec::new();
    for case in [
        FailureCase {
            mode: Mode::Fail(503),
            key: None,
        },
        FailureCase {
            mode: Mode::RejectKey,
            key: Some("not-the-search-session-key"),
        },
    ] {
        let (_, warns) =
            run_failure_case_with_warnings(&full, sent.clone(), 500, &case, Duration::from_secs(5));
        let mut seen = std::collections::HashSet::new();
        let repeated: Vec<&String> = warns.iter().filter(|w| !seen.insert(*w)).collect();
        if !repeated.is_empty() {
            problems.push(format!(
                "splunkd {:?}: {} WARN messages, {} of them repeats, e.g. {:?}",
                case.mode,
                warns.len(),
                repeated.len(),
                repeated[0]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dataset_backfill_hang_costs_at_most_the_budget() {
    let _serial = serial();
    let Some(d) = datasets::shared_dir().and_then(|_| load_dataset("evtx_attack_samples.csv"))
    else {
        return;
    };
    let case = FailureCase {
        mode: Mode::Hang,
        key: None,
    };
    let p = run_failure_case(
        &d.table,
        d.table.clone(),
        1_000,
        &case,
        Duration::from_secs(2),
    );
    assert!(p.is_empty(), "{}", p.join("\n"));
}

// ---------------------------------------------------------------------------
// f: rules
// ---------------------------------------------------------------------------

/// The stanza of `default/lineage_rules.conf` that flags an Office parent
/// starting `cmd.exe` directly (by its `parent`/`child` lists).
fn office_rule_name() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("default/lineage_rules.conf"),
    )
    .expect("default/lineage_rules.conf");
    let joined = text.replace("\\\n", " ");
    let mut name = String::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut found = None;
    let mut check = |name: &str, keys: &HashMap<String, String>| {
        let list = |k: &str| -> Vec<String> {
            keys.get(k)
                .map(|v| v.split(',').map(|s| s.trim().to_lowercase()).collect())
                .unwrap_or_default()
        };
        if list("parent").contains(&"winword.exe".into())
            && list("child").contains(&"cmd.exe".into())
        {
            found.get_or_insert_with(|| name.to_string());
        }
    };
    for line in joined.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            check(&name, &keys);
            name = line.trim_matches(['[', ']']).to_string();
            keys.clear();
        } else if let Some((k, v)) = line.split_once('=') {
            keys.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    check(&name, &keys);
    found.expect("an Office → cmd.exe rule in default/lineage_rules.conf")
}

fn basename(p: &str) -> String {
    p.rsplit(['\\', '/']).next().unwrap_or(p).to_lowercase()
}

/// Rows created by an Office parent starting cmd.exe must carry `rule`.
fn office_rows_flagged(t: &Table, out: &Outcome, rule: &str) -> (usize, Vec<String>) {
    let cols = Cols::of(t);
    let (Some(img), Some(pimg)) = (t.position("Image"), t.position("ParentImage")) else {
        return (0, Vec::new());
    };
    let mut n = 0;
    let mut bad = Vec::new();
    for r in 0..t.len() {
        if !cols.is_creation(t, r) {
            continue;
        }
        let child = basename(&t.rows[r][img].joined());
        let parent = basename(&t.rows[r][pimg].joined());
        if child == "cmd.exe"
            && ["winword.exe", "outlook.exe", "excel.exe"].contains(&parent.as_str())
        {
            n += 1;
            let flags = values(out.merged.get(r, "lineage_flags"));
            let lineage = cell(out, r, "lineage");
            let tail = format!("{parent} > cmd.exe");
            if !flags.iter().any(|f| f == rule) || !lineage.to_lowercase().ends_with(&tail) {
                bad.push(format!("row {r}: lineage {lineage:?}, flags {flags:?}"));
            }
        }
    }
    (n, bad)
}

#[test]
fn rules_flag_real_and_generated_office_shells() {
    let _serial = serial();
    let rule = office_rule_name();
    // Generated (always): OUTLOOK.EXE > cmd.exe in the phishing tree.
    let gen = Arc::new(datasets::generated());
    let home = Home::new("lineage_home.");
    let out = splunkd::run(
        gen.clone(),
        &options(
            &["backfill=false", "reputation=false"],
            1_000,
            &home,
            None,
            None,
        ),
    );
    assert_clean("generated", &out);
    let (n, bad) = office_rows_flagged(&gen, &out, &rule);
    assert!(n > 0, "the generated data has no Office → cmd.exe row");
    assert!(
        bad.is_empty(),
        "generated: {rule} missing:\n{}",
        bad.join("\n")
    );

    let Some(d) = datasets::shared_dir().and_then(|_| load_dataset("evtx_attack_samples.csv"))
    else {
        return;
    };
    let home = Home::new("lineage_home.");
    let out = splunkd::run(
        d.table.clone(),
        &options(
            &["backfill=false", "reputation=false"],
            50_000,
            &home,
            None,
            None,
        ),
    );
    assert_clean("evtx_attack_samples", &out);
    let flagged = (0..out.merged.len())
        .filter(|&r| !values(out.merged.get(r, "lineage_flags")).is_empty())
        .count();
    let mut names: Vec<String> = (0..out.merged.len())
        .flat_map(|r| values(out.merged.get(r, "lineage_flags")))
        .collect();
    names.sort();
    names.dedup();
    eprintln!("evtx_attack_samples: {flagged} rows with lineage_flags: {names:?}");
    assert!(
        flagged > 0,
        "no row of evtx_attack_samples has lineage_flags"
    );
    let (n, bad) = office_rows_flagged(&d.table, &out, &rule);
    assert!(
        n > 0,
        "evtx_attack_samples has no WINWORD.EXE → cmd.exe row any more"
    );
    assert!(
        bad.is_empty(),
        "evtx_attack_samples: {rule} missing:\n{}",
        bad.join("\n")
    );
}

// ---------------------------------------------------------------------------
// g: generated data against the reference computed here
// ---------------------------------------------------------------------------

fn generated_case(table: Arc<Table>) -> Vec<String> {
    let what = table.name.clone();
    let home = Home::new("lineage_home.");
    let fake = FakeSplunkd::start(&table, Mode::Normal);
    let out = splunkd::run(
        table.clone(),
        &options(&["reputation=false"], 1_000, &home, Some(fake.uri()), None),
    );
    let mut p: Vec<String> = clean_problems(&out)
        .into_iter()
        .map(|x| format!("{what}: {x}"))
        .collect();
    if !p.is_empty() {
        p.push(out.report());
        return p;
    }
    let reference = full_reference(&table);
    let (n, bad) = compare_creations(&out, &reference, true);
    p.extend(report_bad(&format!("{what} creations"), n, &bad));
    let (na, bad_a) = compare_acting(&table, &out, &reference);
    p.extend(report_bad(&format!("{what} acting"), na, &bad_a));
    p.extend(check_backfill_requests(&what, &fake));
    let max_depth = reference.values().map(|(g, _)| g.len()).max().unwrap_or(0);
    let cold = chunked_reference(&table, 1_000);
    let needed = cold
        .iter()
        .filter(|(r, (g, _))| reference[r].0 != *g)
        .count();
    eprintln!(
        "{what}: {} rows, {n} creations (max depth {max_depth}, {needed} need backfill), {na} acting rows; \
         {} backfill searches; sources {:?}; {} differ",
        table.len(),
        fake.request_count(),
        sources_seen(&out),
        bad.len() + bad_a.len()
    );
    p
}

#[test]
fn generated_data_with_backfill_matches_the_reference() {
    let _serial = serial();
    let mut p = generated_case(Arc::new(datasets::generated()));
    // Several sessions on a few hosts: most chunk boundaries cut trees.
    p.extend(generated_case(Arc::new(synth_table(5, 3, 6, 40))));
    assert!(p.is_empty(), "{}", p.join("\n"));
}
