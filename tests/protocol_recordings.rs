//! The protocol library against real and deliberately broken test vectors
//! (`../shared/protocol/recordings/`, described in its README).
//!
//! Why: the recordings are the only ground truth we have for what splunkd
//! and the reference SDK actually put on the wire. Every `.input`/`.output`
//! file is read with the same chunk reader, metadata decoder, CSV row reader
//! and multivalue codec the binary uses; the README's chunk and row counts
//! are asserted, the byte-exact files are checked to be exactly consumed,
//! and the two broken vectors must be rejected with a clear error rather
//! than silently truncated (the SDK's short-read bug).
//!
//! All tests skip with a printed reason when `../shared` is absent.

mod common;

use common::datasets::shared_dir;
use std::path::{Path, PathBuf};
use sysmonenrich::protocol::chunk::{read_chunk, Chunk, ChunkError, Limits};
use sysmonenrich::protocol::metadata::{Action, Request};
use sysmonenrich::protocol::multivalue::{decode, encode_into};
use sysmonenrich::protocol::records::RowReader;

/// How a vector's chunk stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// EOF at a chunk boundary (after optional white space).
    Clean,
    /// EOF inside a chunk: must be `ChunkError::Truncated`.
    Truncated,
    /// Bytes after a chunk that are not a header: `ChunkError::MalformedHeader`.
    Malformed,
}

/// What a chunk's body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// Zero bytes.
    Empty,
    /// A header row and this many data rows.
    Rows(u64),
    /// Not checked (the body of a broken chunk).
    Unchecked,
}

use Body::{Empty, Rows, Unchecked};

/// One recording and what the README (and a careful count) says about it.
struct Vector {
    path: &'static str,
    end: End,
    /// Every declared length matches and nothing is left over (README's
    /// "byte-exact"); headers are exactly `chunked 1.0,<m>,<b>\n`.
    byte_exact: bool,
    /// One entry per complete chunk.
    bodies: &'static [Body],
}

const VECTORS: &[Vector] = &[
    // §1 scpv2/Splunk-6.3
    Vector { path: "scpv2/Splunk-6.3/countmatches.input", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(500)] },
    Vector { path: "scpv2/Splunk-6.3/countmatches.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(500)] },
    Vector { path: "scpv2/Splunk-6.3/generatehello.input", end: End::Truncated, byte_exact: false, bodies: &[Empty] },
    Vector { path: "scpv2/Splunk-6.3/generatehello.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(1000)] },
    Vector { path: "scpv2/Splunk-6.3/pypygeneratetext.input", end: End::Clean, byte_exact: false, bodies: &[Empty] },
    Vector { path: "scpv2/Splunk-6.3/pypygeneratetext.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(1000)] },
    Vector { path: "scpv2/Splunk-6.3/sum.map.input", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(50_000)] },
    Vector { path: "scpv2/Splunk-6.3/sum.map.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(1)] },
    Vector { path: "scpv2/Splunk-6.3/sum.map.output.py3", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(1)] },
    Vector { path: "scpv2/Splunk-6.3/sum.reduce.input", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(1)] },
    Vector { path: "scpv2/Splunk-6.3/sum.reduce.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(1)] },
    Vector {
        path: "scpv2/Splunk-6.3/TestInternals.test_record_writer_with_recordings.1443154424.42.output",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Rows(31)],
    },
    // §2 scpv2-2015/Splunk-6.3
    Vector {
        path: "scpv2-2015/Splunk-6.3/TestInternals.test_record_writer_with_recordings.1443140714.71.output",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Rows(10), Rows(10), Rows(10), Rows(1)],
    },
    Vector { path: "scpv2-2015/Splunk-6.3/countmatches.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(500)] },
    Vector { path: "scpv2-2015/Splunk-6.3/generatehello.input", end: End::Clean, byte_exact: true, bodies: &[Empty] },
    Vector { path: "scpv2-2015/Splunk-6.3/generatehello.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(1000)] },
    Vector { path: "scpv2-2015/Splunk-6.3/pypygeneratetext.output", end: End::Malformed, byte_exact: false, bodies: &[Empty, Unchecked] },
    Vector { path: "scpv2-2015/Splunk-6.3/sum.map.output", end: End::Clean, byte_exact: false, bodies: &[Empty, Rows(1)] },
    // §3 custom_search
    Vector {
        path: "custom_search/multibyte_input",
        end: End::Clean,
        byte_exact: true,
        bodies: &[
            Empty,
            Rows(6638),
            Rows(5861),
            Rows(1),
            Rows(6574),
            Rows(5926),
            Rows(6412),
            Rows(6088),
            Rows(1741),
            Rows(1441),
        ],
    },
    // §4 ndietrich-8.2.1
    Vector { path: "ndietrich-8.2.1/doubleage-streaming.input", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(5), Rows(0)] },
    Vector { path: "ndietrich-8.2.1/doubleage-streaming.output", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(5), Empty] },
    Vector {
        path: "ndietrich-8.2.1/doubleage-streaming-timerange.input",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Empty, Rows(5), Rows(0)],
    },
    Vector {
        path: "ndietrich-8.2.1/doubleage-streaming-timerange.output",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Empty, Rows(5), Rows(0)],
    },
    Vector {
        path: "ndietrich-8.2.1/accumages-stateful.input",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Empty, Rows(5), Rows(0), Rows(0)],
    },
    Vector {
        path: "ndietrich-8.2.1/accumages-stateful.output",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Empty, Rows(5), Empty, Empty],
    },
    Vector { path: "ndietrich-8.2.1/sortages-events.input", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(5)] },
    Vector { path: "ndietrich-8.2.1/sortages-events.output", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(5)] },
    Vector { path: "ndietrich-8.2.1/averageage-reporting.input", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(5)] },
    Vector { path: "ndietrich-8.2.1/averageage-reporting.output", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(1)] },
    Vector { path: "ndietrich-8.2.1/generateevents-generating.input", end: End::Clean, byte_exact: true, bodies: &[Empty, Rows(0)] },
    Vector { path: "ndietrich-8.2.1/generateevents-generating.output", end: End::Clean, byte_exact: true, bodies: &[Empty] },
    Vector {
        path: "ndietrich-8.2.1/doubleage-as-events-multivalue.input",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Empty, Rows(5)],
    },
    Vector {
        path: "ndietrich-8.2.1/doubleage-as-events-multivalue.output",
        end: End::Clean,
        byte_exact: true,
        bodies: &[Empty, Rows(5)],
    },
];

fn recordings() -> Option<PathBuf> {
    let dir = shared_dir()?.join("protocol/recordings");
    assert!(dir.is_dir(), "{} is missing from ../shared", dir.display());
    Some(dir)
}

/// Every `.input` / `.output` (and `.output.py3`, and the extension-less
/// `multibyte_input`) file under the recordings, dispatch dirs excluded.
fn recording_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if !name.ends_with(".dispatch_dir") {
                    walk(root, &p, out);
                }
            } else if name.contains(".input")
                || name.contains(".output")
                || name == "multibyte_input"
            {
                out.push(
                    p.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// The complete chunks of a stream and how it ended, plus the byte-exact
/// verdict (every chunk starts exactly where the previous one ended, with a
/// canonical header, and nothing follows the last).
struct Parsed {
    chunks: Vec<(Vec<u8>, Vec<u8>)>,
    end: Result<(), ChunkError>,
    byte_exact: bool,
}

fn parse_stream(bytes: &[u8]) -> Parsed {
    let mut input = bytes;
    let mut chunk = Chunk::default();
    let mut chunks = Vec::new();
    let mut byte_exact = true;
    let end = loop {
        let before = bytes.len() - input.len();
        match read_chunk(&mut input, &Limits::default(), &mut chunk) {
            Ok(true) => {
                let after = bytes.len() - input.len();
                let header = format!(
                    "chunked 1.0,{},{}\n",
                    chunk.metadata.len(),
                    chunk.body.len()
                );
                if !bytes[before..].starts_with(header.as_bytes())
                    || after != before + header.len() + chunk.metadata.len() + chunk.body.len()
                {
                    byte_exact = false;
                }
                chunks.push((chunk.metadata.clone(), chunk.body.clone()));
            }
            Ok(false) => {
                if before != bytes.len() {
                    byte_exact = false; // trailing white space
                }
                break Ok(());
            }
            Err(e) => {
                byte_exact = false;
                break Err(e);
            }
        }
    };
    Parsed {
        chunks,
        end,
        byte_exact,
    }
}

/// Data rows of a body with the library's row reader (`None` = empty body).
fn count_rows(body: &[u8]) -> Result<Option<(usize, u64)>, String> {
    let Some(mut rows) =
        RowReader::new(body, Limits::default().max_field).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let mut record = csv::ByteRecord::new();
    while rows.read(&mut record).map_err(|e| e.to_string())?.is_some() {}
    Ok(Some((rows.header().len(), rows.rows_read())))
}

#[test]
fn every_recording_is_described_and_parses_as_the_readme_says() {
    let Some(dir) = recordings() else { return };
    let files = recording_files(&dir);
    let mut failures = Vec::new();
    for f in &files {
        if !VECTORS.iter().any(|v| v.path == f) {
            failures.push(format!(
                "{f}: not in this test's table (new recording? describe it)"
            ));
        }
    }
    for v in VECTORS {
        if !files.iter().any(|f| f == v.path) {
            failures.push(format!("{}: listed but not found", v.path));
            continue;
        }
        let bytes = std::fs::read(dir.join(v.path)).expect("read recording");
        let parsed = parse_stream(&bytes);
        if parsed.chunks.len() != v.bodies.len() {
            failures.push(format!(
                "{}: {} complete chunk(s), expected {}",
                v.path,
                parsed.chunks.len(),
                v.bodies.len()
            ));
        }
        match (&parsed.end, v.end) {
            (Ok(()), End::Clean) => {}
            (Err(ChunkError::Truncated { .. }), End::Truncated) => {}
            (Err(ChunkError::MalformedHeader { .. }), End::Malformed) => {}
            (got, want) => failures.push(format!(
                "{}: stream ended with {got:?}, expected {want:?}",
                v.path
            )),
        }
        if let Err(e) = &parsed.end {
            // A clear error names what is wrong.
            let text = e.to_string();
            if text.len() < 20 {
                failures.push(format!("{}: error text too terse: {text:?}", v.path));
            }
        }
        if v.byte_exact && !parsed.byte_exact {
            failures.push(format!(
                "{}: README says byte-exact, but lengths/headers do not line up exactly",
                v.path
            ));
        }
        for (i, ((_, body), want)) in parsed.chunks.iter().zip(v.bodies).enumerate() {
            let got = count_rows(body);
            let ok = match (want, &got) {
                (Unchecked, _) => true,
                (Empty, Ok(None)) => body.is_empty(),
                (Rows(n), Ok(Some((_, m)))) => n == m,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{} chunk {}: body {got:?}, expected {want:?}",
                    v.path,
                    i + 1
                ));
            }
        }
    }
    assert!(failures.is_empty(), "recordings:\n{}", failures.join("\n"));
}

#[test]
fn request_metadata_decodes_in_every_input() {
    let Some(dir) = recordings() else { return };
    let mut failures = Vec::new();
    for v in VECTORS
        .iter()
        .filter(|v| v.path.ends_with(".input") || v.path.ends_with("multibyte_input"))
    {
        let parsed = parse_stream(&std::fs::read(dir.join(v.path)).expect("read"));
        for (i, (meta, body)) in parsed.chunks.iter().enumerate() {
            let request = match Request::from_slice(meta) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{} chunk {}: {e}", v.path, i + 1));
                    continue;
                }
            };
            let last = i + 1 == parsed.chunks.len() && parsed.end.is_ok();
            match (i, &request.action) {
                (0, Action::GetInfo) => {
                    let Some(si) = &request.searchinfo else {
                        failures.push(format!("{}: getinfo without searchinfo", v.path));
                        continue;
                    };
                    if !body.is_empty() {
                        failures.push(format!("{}: getinfo with a body", v.path));
                    }
                    if si.search.contains("%20") || si.search.is_empty() {
                        failures.push(format!(
                            "{}: search not percent-decoded: {:?}",
                            v.path, si.search
                        ));
                    }
                    if v.path.starts_with("ndietrich") {
                        // Raw 8.2.1 getinfo: the new keys are there.
                        if si.splunk_version != "8.2.1"
                            || si.maxresultrows != Some(50_000)
                            || si.command.is_empty()
                        {
                            failures
                                .push(format!("{}: 8.2.1 searchinfo not decoded: {si:?}", v.path));
                        }
                        if !si.search.contains(&si.command) {
                            failures.push(format!(
                                "{}: decoded search {:?} lacks {:?}",
                                v.path, si.search, si.command
                            ));
                        }
                    }
                    if v.path.contains("timerange") && si.earliest_time != Some(1_627_333_200.0) {
                        failures.push(format!("{}: earliest_time {:?}", v.path, si.earliest_time));
                    }
                }
                (0, other) => failures.push(format!("{}: first chunk is {other:?}", v.path)),
                (_, Action::Execute) => {
                    // All but the last execute are finished:false (SCPV2 §7);
                    // the truncated vector's hand-written execute is false too.
                    if request.finished != last {
                        failures.push(format!(
                            "{} chunk {}: finished={} but it is {}the last chunk",
                            v.path,
                            i + 1,
                            request.finished,
                            if last { "" } else { "not " }
                        ));
                    }
                }
                (_, other) => {
                    failures.push(format!("{} chunk {}: action {other:?}", v.path, i + 1))
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "request metadata:\n{}",
        failures.join("\n")
    );
}

#[test]
fn reply_metadata_is_json_except_the_synthetic_surrogates() {
    let Some(dir) = recordings() else { return };
    let mut failures = Vec::new();
    for v in VECTORS.iter().filter(|v| v.path.contains(".output")) {
        let parsed = parse_stream(&std::fs::read(dir.join(v.path)).expect("read"));
        for (i, (meta, _)) in parsed.chunks.iter().enumerate() {
            let result = serde_json::from_slice::<serde_json::Value>(meta);
            if v.path.contains("TestInternals") {
                // Lone surrogates: strict parsers may refuse; it must only be
                // a clean error, which reaching this line already shows.
                if let Err(e) = result {
                    assert!(!e.to_string().is_empty());
                }
                continue;
            }
            match result {
                Ok(serde_json::Value::Object(_)) => {}
                other => failures.push(format!("{} chunk {}: {other:?}", v.path, i + 1)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "reply metadata:\n{}",
        failures.join("\n")
    );
}

#[test]
fn broken_vectors_are_rejected_with_a_clear_error() {
    let Some(dir) = recordings() else { return };
    // The hand-written execute declares 150 bytes of body; the file ends
    // after its metadata and one LF.
    let bytes = std::fs::read(dir.join("scpv2/Splunk-6.3/generatehello.input")).expect("read");
    let parsed = parse_stream(&bytes);
    match parsed.end {
        Err(ChunkError::Truncated { what, need, have }) => {
            assert_eq!((what, need), ("body", 150), "truncation details");
            assert!(have < need);
        }
        other => panic!("generatehello.input: expected Truncated, got {other:?}"),
    }
    // The 2015 pypygeneratetext output declares 37,842 body bytes but 39,840
    // follow: the rest is not a chunk header.
    let bytes =
        std::fs::read(dir.join("scpv2-2015/Splunk-6.3/pypygeneratetext.output")).expect("read");
    let parsed = parse_stream(&bytes);
    assert_eq!(parsed.chunks.len(), 2);
    assert_eq!(parsed.chunks[1].1.len(), 37_842);
    match parsed.end {
        Err(e @ ChunkError::MalformedHeader { .. }) => {
            let text = e.to_string();
            assert!(text.contains("malformed chunk header"), "{text}");
        }
        other => panic!("pypygeneratetext.output (2015): expected MalformedHeader, got {other:?}"),
    }
}

#[test]
fn non_utf8_recording_does_not_panic_and_keeps_its_bytes() {
    let Some(dir) = recordings() else { return };
    let path =
        "scpv2/Splunk-6.3/TestInternals.test_record_writer_with_recordings.1443154424.42.output";
    let bytes = std::fs::read(dir.join(path)).expect("read");
    let parsed = parse_stream(&bytes);
    parsed.end.as_ref().expect("clean end");
    let (meta, body) = &parsed.chunks[0];
    assert_eq!(meta.len(), 14_904, "metadata length from the README");
    assert!(
        std::str::from_utf8(body).is_err(),
        "the body is meant to hold non-UTF-8 bytes"
    );
    // Whether the lone surrogates decode is not asserted; only that decoding
    // ends in a value or an error, not a panic.
    let _ = Request::from_slice(meta);
    let _ = serde_json::from_slice::<serde_json::Value>(meta);
    // Rows are bytes: the non-UTF-8 cells survive the reader unchanged.
    let mut rows = RowReader::new(body, Limits::default().max_field)
        .expect("header")
        .expect("rows");
    let mut record = csv::ByteRecord::new();
    let mut non_utf8_cells = 0;
    while let Some(span) = rows.read(&mut record).expect("row") {
        assert!(span.end <= body.len());
        non_utf8_cells += record
            .iter()
            .filter(|c| std::str::from_utf8(c).is_err())
            .count();
    }
    assert_eq!(rows.rows_read(), 31);
    assert!(
        non_utf8_cells > 0,
        "expected non-UTF-8 cells to reach the row reader"
    );
}

#[test]
fn large_and_multibyte_bodies() {
    let Some(dir) = recordings() else { return };
    let parsed =
        parse_stream(&std::fs::read(dir.join("scpv2/Splunk-6.3/sum.map.input")).expect("read"));
    let body = &parsed.chunks[1].1;
    assert_eq!(body.len(), 16_109_782, "sum.map body size (README)");
    assert_eq!(count_rows(body).unwrap(), Some((48, 50_000)));

    // countmatches: UTF-8 multibyte text and a quoted value with literal
    // newlines (row 13); lengths are bytes.
    let parsed = parse_stream(
        &std::fs::read(dir.join("scpv2/Splunk-6.3/countmatches.input")).expect("read"),
    );
    let body = &parsed.chunks[1].1;
    assert_eq!(body.len(), 48_108);
    let mut rows = RowReader::new(body, Limits::default().max_field)
        .unwrap()
        .unwrap();
    let mut record = csv::ByteRecord::new();
    let (mut newline_rows, mut non_ascii) = (Vec::new(), false);
    while rows.read(&mut record).unwrap().is_some() {
        if record.iter().any(|f| f.contains(&b'\n')) {
            newline_rows.push(rows.rows_read());
        }
        non_ascii |= record.iter().any(|f| f.iter().any(|b| !b.is_ascii()));
    }
    // The README counts rows from 0; `rows_read` counts from 1.
    assert_eq!(
        newline_rows.first(),
        Some(&14),
        "row 13 (0-based) is the first with literal newlines; rows with newlines: {newline_rows:?}"
    );
    assert!(non_ascii, "countmatches carries multibyte text");

    // multibyte_input: 9 executes, 4 columns, Thai text; total rows.
    let parsed =
        parse_stream(&std::fs::read(dir.join("custom_search/multibyte_input")).expect("read"));
    let mut total = 0;
    for (_, body) in &parsed.chunks[1..] {
        let (cols, n) = count_rows(body).unwrap().unwrap();
        assert_eq!(cols, 4);
        total += n;
    }
    assert_eq!(total, 40_682);
}

#[test]
fn real_multivalue_sample_decodes_and_reencodes_byte_identically() {
    let Some(dir) = recordings() else { return };
    let bytes = std::fs::read(dir.join("ndietrich-8.2.1/doubleage-as-events-multivalue.input"))
        .expect("read");
    let parsed = parse_stream(&bytes);
    let body = &parsed.chunks[1].1;
    assert_eq!(body.len(), 3_108);
    let mut rows = RowReader::new(body, Limits::default().max_field)
        .unwrap()
        .unwrap();
    let header = rows.header().clone();
    assert_eq!(header.len(), 70);
    let si = header.position(b"_si").expect("_si column");
    let mv = header.position(b"__mv__si").expect("__mv__si column");
    assert_eq!(header.mv_position(si), Some(mv), "companion lookup by name");
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while let Some(span) = rows.read(&mut record).unwrap() {
        n += 1;
        assert_eq!(&record[si], b"FIREFLY-WIN\nbeatles");
        let cell = &record[mv];
        assert_eq!(cell, b"$FIREFLY-WIN$;$beatles$");
        let values = decode(cell);
        assert_eq!(values, vec![b"FIREFLY-WIN".to_vec(), b"beatles".to_vec()]);
        let mut again = Vec::new();
        encode_into(&values, &mut again);
        assert_eq!(again, cell, "re-encoding is byte-identical");
        // The span is the row's own bytes: re-reading it gives the same cells.
        let line = &body[span];
        let mut rr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line);
        let mut again = csv::ByteRecord::new();
        assert!(rr.read_byte_record(&mut again).unwrap());
        assert_eq!(again, record);
    }
    assert_eq!(n, 5);
}
