//! The binary, end to end, driven by the splunkd stand-in
//! (`common/splunkd.rs`) over real and generated Sysmon results.
//!
//! Why these checks: splunkd trusts the command completely. A missing or
//! extra reply desynchronises the stream, a row that comes back twice or
//! not at all corrupts the merge, a pass-through field that changes silently
//! changes the user's data, and anything on stderr lands in search.log as an
//! ERROR. So every run must show zero protocol violations, every row once
//! and in order, every column the command does not own unchanged byte for
//! byte, the DESIGN §2 output fields on every row, exit 0 and an empty
//! stderr, at both splunkd's maximum chunk size and a small one, with and
//! without lineage/reputation.
//!
//! Tests on `../shared` data skip with a printed reason when it is absent;
//! the generated-data tests always run.

mod common;

use common::datasets::{self, Table, Value};
use common::splunkd::{self, FinalChunk, Options, Outcome, OUTPUT_FIELDS};
use std::sync::Arc;
use std::time::Duration;

/// Inputs DESIGN §2 says the command reads and that every Sysmon search has.
const MUST_REQUIRE: [&str; 5] = [
    "EventCode",
    "ProcessGuid",
    "Hashes",
    "Image",
    "ParentProcessGuid",
];

/// Output field ← data set column whose lower-cased value it must equal.
const HASH_FIELDS: [(&str, &str); 4] = [
    ("hash_md5", "MD5"),
    ("hash_sha1", "SHA1"),
    ("hash_sha256", "SHA256"),
    ("hash_imphash", "IMPHASH"),
];

const QUIET: [&str; 2] = ["lineage=false", "reputation=false"];

/// The four standard runs: quiet and default arguments, each at splunkd's
/// 50,000-row maximum (8.2.1 style: data, header-only `finished:false`,
/// header-only `finished:true`) and at 1,000 rows (6.3 style: the last rows
/// travel with `finished:true`).
fn standard_runs() -> Vec<(String, Options)> {
    let mut runs = Vec::new();
    for args in [&QUIET[..], &[][..]] {
        for rows in [50_000, 1_000] {
            let mut o = Options::with_args(args);
            o.rows_per_chunk = rows;
            if rows == 50_000 {
                o.header_only_unfinished = true;
                o.final_chunk = FinalChunk::HeaderOnly;
            } else {
                o.final_chunk = FinalChunk::WithLastRows;
            }
            runs.push((format!("args {args:?}, {rows} rows/chunk"), o));
        }
    }
    runs
}

/// Collects failures by kind, keeping a few examples of each.
#[derive(Default)]
struct Failures {
    kinds: Vec<(String, usize, Vec<String>)>,
}

impl Failures {
    fn add(&mut self, kind: &str, example: impl FnOnce() -> String) {
        let entry = match self.kinds.iter_mut().position(|(k, _, _)| k == kind) {
            Some(i) => &mut self.kinds[i],
            None => {
                self.kinds.push((kind.to_string(), 0, Vec::new()));
                self.kinds.last_mut().unwrap()
            }
        };
        entry.1 += 1;
        if entry.2.len() < 5 {
            entry.2.push(example());
        }
    }

    fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    fn render(&self) -> String {
        let mut s = String::new();
        for (kind, n, examples) in &self.kinds {
            s.push_str(&format!("  {kind}: {n} time(s)\n"));
            for e in examples {
                s.push_str(&format!("      e.g. {e}\n"));
            }
        }
        s
    }
}

/// Everything a clean run over `table` must satisfy.
fn check_clean_run(table: &Table, out: &Outcome) -> Failures {
    let mut f = Failures::default();
    for v in &out.violations {
        f.add("protocol violation", || v.clone());
    }
    if let Some(why) = &out.ended_early {
        f.add("search ended early", || why.clone());
    }
    if out.exit_code != Some(0) || out.timed_out {
        f.add("exit status", || {
            format!(
                "exit {:?}, killed by watchdog: {}",
                out.exit_code, out.timed_out
            )
        });
    }
    if !out.stderr.is_empty() {
        f.add("stderr not empty", || splunkd::shorten(&out.stderr, 2000));
    }
    for (level, text) in &out.messages {
        if level == "ERROR" || level == "FATAL" {
            f.add("ERROR message in a run that should succeed", || {
                text.clone()
            });
        }
    }
    if out.command_type.as_deref() != Some("stateful") {
        f.add("getinfo type", || format!("{:?}", out.command_type));
    }
    if out.ended_early.is_some() {
        return f; // the row checks below would only repeat the cause
    }
    let m = &out.merged;
    for row in 0..m.len() {
        let n = m.times_returned(row);
        if n != 1 {
            f.add("row not returned exactly once", || {
                format!("row {row} came back {n} time(s)")
            });
        }
    }
    for field in OUTPUT_FIELDS {
        if !m.columns().iter().any(|c| c == field) {
            f.add("output field missing from the results", || {
                field.to_string()
            });
        }
    }
    for (i, (header, rows)) in out.reply_headers.iter().enumerate() {
        if *rows == 0 {
            continue;
        }
        for field in OUTPUT_FIELDS {
            if !header.iter().any(|c| c == field) {
                f.add("output field missing from a reply with rows", || {
                    format!("{field} not in reply {} ({rows} rows)", i + 1)
                });
            }
        }
    }
    for row in 0..m.len() {
        for (column, was, now) in m.changed_originals(row) {
            if !OUTPUT_FIELDS.contains(&column) {
                f.add("pass-through column changed", || {
                    format!("row {row} {column}: sent {was:?}, merged {now:?}")
                });
            }
        }
        for (out_field, src) in HASH_FIELDS {
            let expected = table
                .get(row, src)
                .map(|v| v.joined().to_lowercase())
                .unwrap_or_default();
            let got = m.get(row, out_field);
            if got != Some(&Value::One(expected.clone())) {
                f.add(&format!("{out_field} != lower({src})"), || {
                    format!(
                        "row {row} (EventCode {:?}, Hashes {:?}): expected {expected:?}, got {got:?}",
                        table.get(row, "EventCode").map(|v| v.joined().into_owned()).unwrap_or_default(),
                        table.get(row, "Hashes").map(|v| v.joined().into_owned()).unwrap_or_default(),
                    )
                });
            }
        }
    }
    f
}

/// Runs every configuration over `table` and fails with one report for all.
fn run_all(table: Table, runs: Vec<(String, Options)>) {
    let table = Arc::new(table);
    let mut report = String::new();
    for (name, opts) in runs {
        let started = std::time::Instant::now();
        let out = splunkd::run(table.clone(), &opts);
        let failures = check_clean_run(&table, &out);
        eprintln!(
            "{} ({} rows), {name}: {} request(s), {:.1} s, {}",
            table.name,
            table.len(),
            out.requests,
            started.elapsed().as_secs_f64(),
            if failures.is_empty() { "ok" } else { "FAILED" }
        );
        if !failures.is_empty() {
            report.push_str(&format!(
                "\n== {} ({} rows), {name}\n{}{}",
                table.name,
                table.len(),
                failures.render(),
                out.report()
            ));
        }
    }
    assert!(report.is_empty(), "{report}");
}

#[test]
fn getinfo_declares_stateful_with_the_sysmon_inputs() {
    let out = splunkd::run(Arc::new(datasets::generated()), &Options::default());
    assert!(out.violations.is_empty(), "{}", out.report());
    assert_eq!(
        out.command_type.as_deref(),
        Some("stateful"),
        "{}",
        out.report()
    );
    let required = out
        .required_fields
        .clone()
        .unwrap_or_else(|| panic!("no required_fields in the getinfo reply\n{}", out.report()));
    for f in MUST_REQUIRE {
        assert!(
            required.iter().any(|r| r == f),
            "required_fields {required:?} lacks {f}"
        );
    }
    assert!(
        !required.iter().any(|r| r == "*"),
        "required_fields {required:?} asks for everything"
    );
    assert!(
        !required.iter().any(|r| r == "_raw"),
        "required_fields {required:?} asks for _raw, which makes splunkd send every event's XML"
    );
    let getinfo = out.getinfo.as_ref().unwrap();
    assert!(
        getinfo.get("finished").is_none_or_false(),
        "a getinfo reply that is not refusing must not say finished:true: {getinfo}"
    );
}

/// `Option<&Json>` is absent or `false`.
trait AbsentOrFalse {
    fn is_none_or_false(&self) -> bool;
}

impl AbsentOrFalse for Option<&serde_json::Value> {
    fn is_none_or_false(&self) -> bool {
        match self {
            None => true,
            Some(v) => v.as_bool() == Some(false),
        }
    }
}

#[test]
fn dataset_evtx_attack_samples() {
    let Some(table) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    assert_eq!(table.len(), 3234, "row count from the data README");
    run_all(table, standard_runs());
}

#[test]
fn dataset_otrf_lsass_campaign_01() {
    let Some(table) = datasets::sysmon_dataset("otrf_lsass_campaign_01.csv.gz") else {
        return;
    };
    assert_eq!(table.len(), 47_906, "row count from the data README");
    run_all(table, standard_runs());
}

#[test]
fn dataset_evtx_to_mitre_attack() {
    let Some(table) = datasets::sysmon_dataset("evtx_to_mitre_attack.csv") else {
        return;
    };
    assert_eq!(table.len(), 113, "row count from the data README");
    run_all(table, standard_runs());
}

#[test]
fn generated_data() {
    let table = datasets::generated();
    assert!(table.len() > 100);
    let mut runs = standard_runs();
    // Tiny chunks: many round trips, rows split anywhere in a tree.
    for rows in [7, 1] {
        let mut o = Options::with_args(&QUIET);
        o.rows_per_chunk = rows;
        runs.push((format!("quiet, {rows} rows/chunk"), o));
    }
    // A reply must never start before the whole request has arrived.
    let mut o = Options::with_args(&QUIET);
    o.rows_per_chunk = 40;
    o.hold_back = Some(Duration::from_millis(30));
    runs.push(("quiet, 40 rows/chunk, last byte withheld".into(), o));
    // Required fields the data lacks arrive as empty columns (8.2.1 did so).
    let mut o = Options::with_args(&QUIET);
    o.rows_per_chunk = 25;
    o.include_absent_required = true;
    runs.push(("quiet, absent required fields sent empty".into(), o));
    // A preview pass.
    let o = Options {
        preview: true,
        ..Options::default()
    };
    runs.push(("default args, preview".into(), o));
    run_all(table, runs);
}

/// Every column sent (as splunkd does for some pipelines), so multivalue
/// cells (`tag`, `eventtype`, `dest`), `$` inside them, `_raw` with line
/// breaks and non-ASCII text all go through the command; they must come back
/// unchanged, both in the merge and in the reply rows themselves.
#[test]
fn generated_data_all_columns_pass_through() {
    let table = Arc::new(datasets::generated());
    for rows in [50_000, 9] {
        let mut opts = Options::with_args(&QUIET);
        opts.rows_per_chunk = rows;
        opts.send_all_columns = true;
        opts.keep_replies = true;
        let out = splunkd::run(table.clone(), &opts);
        let failures = check_clean_run(&table, &out);
        assert!(
            failures.is_empty(),
            "{rows} rows/chunk:\n{}{}",
            failures.render(),
            out.report()
        );
        let echo = check_echo(&table, &out);
        assert!(echo.is_empty(), "{rows} rows/chunk:\n{}", echo.render());
    }
}

/// Each reply row carries every column it was sent, with the same value
/// (multivalue decoded from `__mv_`), as DESIGN §2 promises ("every column
/// it does not own passes through untouched").
fn check_echo(table: &Table, out: &Outcome) -> Failures {
    let mut f = Failures::default();
    for reply in &out.kept {
        let Some(ic) = reply.header.iter().position(|h| h == splunkd::CHUNKED_IDX) else {
            continue; // already a protocol violation
        };
        for row in &reply.rows {
            let Some(idx) = std::str::from_utf8(&row[ic])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                continue; // already a protocol violation
            };
            if idx >= table.len() {
                continue;
            }
            for column in out
                .sent_columns
                .iter()
                .filter(|c| *c != splunkd::CHUNKED_IDX)
            {
                let Some(col) = reply.header.iter().position(|h| h == column) else {
                    f.add("sent column missing from the reply", || column.clone());
                    continue;
                };
                let mv = reply
                    .header
                    .iter()
                    .position(|h| *h == format!("__mv_{column}"));
                let got = match mv {
                    Some(m) if !row[m].is_empty() => {
                        Value::from_values(splunkd::mv_decode(&String::from_utf8_lossy(&row[m])))
                    }
                    _ => Value::One(String::from_utf8_lossy(&row[col]).into_owned()),
                };
                let sent = table.get(idx, column).cloned().unwrap_or(Value::EMPTY);
                if got != sent {
                    f.add("reply row changed a sent column", || {
                        format!("row {idx} {column}: sent {sent:?}, reply {got:?}")
                    });
                }
            }
        }
    }
    f
}

/// The only real splunkd multivalue sample (8.2.1, 70 columns including
/// `_si`/`__mv__si`, `_cd`, `_bkt`, `_serial`, `tag::eventtype`) replayed
/// through the command with all columns sent.
#[test]
fn real_multivalue_recording_passes_through() {
    let Some(path) = datasets::shared_file(
        "protocol/recordings/ndietrich-8.2.1/doubleage-as-events-multivalue.input",
    ) else {
        return;
    };
    let bytes = std::fs::read(path).expect("read recording");
    // Second chunk's body: skip the getinfo chunk by its declared lengths.
    let body = chunks(&bytes)[1].1;
    let table = datasets::table_from_splunk_body("doubleage-as-events-multivalue", body);
    assert_eq!(table.columns.len(), 35, "35 plain + 35 __mv_ columns");
    assert_eq!(table.len(), 5);
    assert_eq!(
        table.get(0, "_si"),
        Some(&Value::Many(vec!["FIREFLY-WIN".into(), "beatles".into()]))
    );
    let table = Arc::new(table);
    let mut opts = Options::with_args(&QUIET);
    opts.send_all_columns = true;
    opts.keep_replies = true;
    let out = splunkd::run(table.clone(), &opts);
    // No Sysmon fields here, so only the protocol and pass-through matter;
    // the hash fields are empty because the data has none.
    let failures = check_clean_run(&table, &out);
    assert!(failures.is_empty(), "{}{}", failures.render(), out.report());
    let echo = check_echo(&table, &out);
    assert!(echo.is_empty(), "{}{}", echo.render(), out.report());
    // And the multivalue cell itself, byte for byte.
    let reply = &out.kept[0];
    for r in 0..reply.rows.len() {
        assert_eq!(
            reply.cell(r, "_si"),
            Some(&b"FIREFLY-WIN\nbeatles"[..]),
            "row {r} _si"
        );
        assert_eq!(
            reply.cell(r, "__mv__si"),
            Some(&b"$FIREFLY-WIN$;$beatles$"[..]),
            "row {r} __mv__si"
        );
    }
}

/// splunkd closes stdin when a search is cancelled or has enough results,
/// possibly right after getinfo: EOF at a chunk boundary is a normal end.
#[test]
fn eof_right_after_getinfo_exits_0() {
    let mut opts = Options::with_args(&QUIET);
    opts.close_after = Some(0);
    let out = splunkd::run(Arc::new(datasets::generated()), &opts);
    assert!(out.violations.is_empty(), "{}", out.report());
    assert_eq!(out.replies, 1, "{}", out.report());
    assert_eq!(out.exit_code, Some(0), "{}", out.report());
    assert!(!out.stderr.contains("panicked"), "{}", out.report());
}

#[test]
fn eof_between_chunks_exits_0() {
    for args in [&QUIET[..], &[][..]] {
        let mut opts = Options::with_args(args);
        opts.rows_per_chunk = 10;
        opts.close_after = Some(2);
        let out = splunkd::run(Arc::new(datasets::generated()), &opts);
        assert!(out.violations.is_empty(), "{args:?}\n{}", out.report());
        assert_eq!(out.replies, 3, "{args:?}\n{}", out.report());
        assert_eq!(out.exit_code, Some(0), "{args:?}\n{}", out.report());
        assert!(
            !out.stderr.contains("panicked"),
            "{args:?}\n{}",
            out.report()
        );
    }
}

// ---------------------------------------------------------------------------
// The stand-in itself: a test harness that drifts from splunkd proves nothing.
// ---------------------------------------------------------------------------

/// Every execute body splunkd wrote in the recordings (6.3 REC, 8.0.3
/// multibyte, 8.2.1 ND), decoded and re-encoded by the stand-in, comes out
/// byte for byte identical: same quoting rule, column order, `__mv_` cells
/// and line ends as the real thing.
#[test]
fn stand_in_writes_bodies_exactly_like_splunkd() {
    let Some(dir) = datasets::shared_dir() else {
        return;
    };
    let dir = dir.join("protocol/recordings");
    let inputs = [
        "scpv2/Splunk-6.3/countmatches.input",
        "scpv2/Splunk-6.3/sum.map.input",
        "scpv2/Splunk-6.3/sum.reduce.input",
        "custom_search/multibyte_input",
        "ndietrich-8.2.1/doubleage-streaming.input",
        "ndietrich-8.2.1/doubleage-streaming-timerange.input",
        "ndietrich-8.2.1/accumages-stateful.input",
        "ndietrich-8.2.1/sortages-events.input",
        "ndietrich-8.2.1/averageage-reporting.input",
        "ndietrich-8.2.1/generateevents-generating.input",
        "ndietrich-8.2.1/doubleage-as-events-multivalue.input",
    ];
    let mut compared = 0;
    for name in inputs {
        let bytes = std::fs::read(dir.join(name)).expect("read recording");
        for (i, (_, body)) in chunks(&bytes).into_iter().enumerate().skip(1) {
            let table = datasets::table_from_splunk_body(name, body);
            let columns: Vec<&str> = table.columns.iter().map(String::as_str).collect();
            let again = splunkd::splunk_body(&table, &columns, 0..table.len(), false);
            if again != body {
                let at = again
                    .iter()
                    .zip(body)
                    .position(|(a, b)| a != b)
                    .unwrap_or(again.len().min(body.len()));
                panic!(
                    "{name} chunk {}: stand-in bytes differ from splunkd's at offset {at}:\n splunkd:  {:?}\n stand-in: {:?}",
                    i + 1,
                    String::from_utf8_lossy(&body[at.saturating_sub(40)..(at + 40).min(body.len())]),
                    String::from_utf8_lossy(&again[at.saturating_sub(40)..(at + 40).min(again.len())]),
                );
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 23, "execute bodies compared");

    // With the hidden index added, a required-fields body is exactly 8.2.1's
    // (ND doubleage: `age` plus `_chunked_idx`; accumages: an absent
    // required field travels as an empty column).
    let bytes = std::fs::read(dir.join("ndietrich-8.2.1/accumages-stateful.input")).unwrap();
    let real = chunks(&bytes);
    let ages = Table {
        name: "ages".into(),
        columns: vec!["age".into()],
        rows: ["66", "18", "25", "96", "52"]
            .iter()
            .map(|a| vec![Value::one(*a)])
            .collect(),
    };
    assert_eq!(
        splunkd::splunk_body(&ages, &["age", "accum_age"], 0..5, true),
        real[1].1
    );
    assert_eq!(
        splunkd::splunk_body(&ages, &["age", "accum_age"], 5..5, true),
        real[2].1
    );
}

/// The getinfo metadata has 8.2.1's keys in 8.2.1's order and decodes the
/// way the library decodes the real one.
#[test]
fn stand_in_getinfo_has_splunkd_8_2_1_shape() {
    let mine = splunkd::sample_getinfo(&["lineage=false", "max_depth=3"]).metadata();
    let parsed: serde_json::Value = serde_json::from_str(&mine).expect("getinfo is JSON");
    assert_eq!(
        parsed["searchinfo"]["args"],
        serde_json::json!(["lineage=false", "max_depth=3"])
    );
    assert!(
        !mine.contains(' '),
        "compact JSON, search percent-encoded: {mine}"
    );
    let request = sysmonenrich::protocol::metadata::Request::from_slice(mine.as_bytes())
        .expect("library decodes it");
    let si = request.searchinfo.expect("searchinfo");
    assert!(
        si.search
            .ends_with("| sysmonenrich lineage=false max_depth=3"),
        "{}",
        si.search
    );
    assert_eq!(si.maxresultrows, Some(50_000));
    let Some(path) =
        datasets::shared_file("protocol/recordings/ndietrich-8.2.1/doubleage-streaming.input")
    else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    let real = String::from_utf8(chunks(&bytes)[0].0.to_vec()).unwrap();
    assert_eq!(
        json_keys(&mine),
        json_keys(&real),
        "key order differs from splunkd 8.2.1"
    );
}

/// Object keys of a JSON text in order of appearance (any depth).
fn json_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    s.push(c);
                    s.extend(chars.next());
                }
                '"' => break,
                _ => s.push(c),
            }
        }
        if chars.peek() == Some(&':') {
            keys.push(s);
        }
    }
    keys
}

/// The stand-in's own framing checks flag what splunkd would choke on.
#[test]
fn stand_in_flags_sloppy_framing() {
    let good = splunkd::chunk(b"{\"finished\":true}", b"");
    let (chunks, problems) = splunkd::parse_lenient(&good);
    assert_eq!((chunks.len(), problems.len()), (1, 0));
    for (bytes, what) in [
        (b"\nchunked 1.0,2,0\n{}".to_vec(), "stray bytes"),
        (b"chunked 1.0, 2,0\n{}".to_vec(), "not exactly"),
        (b"chunked 1.0,2,0\r\n{}".to_vec(), "not exactly"),
        (b"chunked 1.0,2,5\n{}ab".to_vec(), "ended inside chunk body"),
        (
            b"chunked 1.0,2,0\n{}garbage".to_vec(),
            "ended inside a chunk header",
        ),
        (
            b"chunked 1.0,2,0\n{}garbage\n".to_vec(),
            "malformed chunk header",
        ),
    ] {
        let (_, problems) = splunkd::parse_lenient(&bytes);
        assert!(
            problems.iter().any(|p| p.contains(what)),
            "{:?}: expected a problem containing {what:?}, got {problems:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // Multivalue codec (SCPV2 §6 examples).
    let values = vec!["x".to_string(), String::new(), "y$z".to_string()];
    assert_eq!(splunkd::mv_encode(&values), "$x$;$$;$y$$z$");
    assert_eq!(splunkd::mv_decode("$x$;$$;$y$$z$"), values);
    assert_eq!(splunkd::mv_decode("$a$$b$"), vec!["a$b".to_string()]);
}

/// (metadata, body) of every chunk of a well-formed recording.
fn chunks(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes[pos].is_ascii_whitespace() {
            pos += 1;
            continue;
        }
        let nl = pos
            + bytes[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("header line");
        let header = std::str::from_utf8(&bytes[pos..nl]).expect("ASCII header");
        let mut parts = header.trim_start_matches("chunked 1.0,").split(',');
        let m: usize = parts.next().unwrap().trim().parse().unwrap();
        let b: usize = parts.next().unwrap().trim().parse().unwrap();
        let meta = nl + 1;
        out.push((&bytes[meta..meta + m], &bytes[meta + m..meta + m + b]));
        pos = meta + m + b;
    }
    out
}
