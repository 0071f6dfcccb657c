//! Hostile and broken input, written as raw bytes to the binary's stdin.
//!
//! Why: splunkd shows a failed command as "External search command exited
//! unexpectedly" unless the command answers the pending request with an
//! ERROR first (SCPV2 §8), and a command that hangs stalls the whole search
//! (and scheduled searches behind it). So for every kind of bad input: no
//! panic, no hang, exactly one reply per request that reached the binary
//! (once any bytes of a request arrived, a reply is owed), an ERROR in the
//! reply that failed, `finished:true` on it, and a non-zero exit. Invalid
//! UTF-8 inside a value is the exception: it is data, not an error, and must
//! pass through unchanged with exit 0.

mod common;

use common::creations;
use common::datasets;
use common::splunkd::{self, chunk, execute_chunk, run_raw, Options, RawOutcome, Step};
use std::sync::Arc;
use std::time::Duration;

const QUIET: [&str; 2] = ["lineage=false", "reputation=false"];

/// A run may take a while on a debug build with a 64 MiB body; a hang is
/// anything much longer.
const TIMEOUT: Duration = Duration::from_secs(120);

fn getinfo() -> Step {
    Step::GetInfo(QUIET.iter().map(|s| s.to_string()).collect())
}

/// splunkd's quoting for a raw cell: bare when empty or alphanumeric.
fn cell(out: &mut Vec<u8>, value: &[u8]) {
    if value.iter().all(u8::is_ascii_alphanumeric) {
        out.extend_from_slice(value);
    } else {
        out.push(b'"');
        for &b in value {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    }
}

/// A body in splunkd's form (plain columns, `_chunked_idx`, then `__mv_`
/// companions) with raw byte values, so non-UTF-8 can be sent.
fn body(rows: &[[&[u8]; 7]]) -> Vec<u8> {
    // Columns in splunkd's header style: a creation's, then its hashes.
    let mut names: Vec<String> = creations::COLUMNS
        .iter()
        .chain(&["Hashes"])
        .map(|s| s.to_string())
        .collect();
    names.push("_chunked_idx".into());
    let mv: Vec<String> = names.iter().map(|n| format!("__mv_{n}")).collect();
    let mut out = Vec::new();
    for (i, n) in names.iter().chain(&mv).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        cell(&mut out, n.as_bytes());
    }
    out.push(b'\n');
    for (idx, row) in rows.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            cell(&mut out, v);
        }
        out.push(b',');
        cell(&mut out, idx.to_string().as_bytes());
        out.extend(std::iter::repeat_n(b',', mv.len()));
        out.push(b'\n');
    }
    out
}

const HASHES: &[u8] = b"SHA1=5A7F1A4B0E8C7C5D2B3E4F5061728394A5B6C7D8,MD5=0123456789ABCDEF0123456789ABCDEF,\
SHA256=00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF,IMPHASH=FEDCBA9876543210FEDCBA9876543210";

fn good_row() -> [&'static [u8]; 7] {
    [
        b"1700000000.123",
        b"1",
        b"{8A1B2C3D-0000-1111-2222-333344445555}",
        b"{8A1B2C3D-0000-1111-2222-333344440000}",
        b"C:\\Windows\\System32\\cmd.exe",
        b"cmd.exe /c whoami",
        HASHES,
    ]
}

/// The checks every failing conversation shares: `replies` replies, the
/// last one an ERROR with `finished:true`, the others clean, non-zero exit.
fn assert_failed(out: &RawOutcome, replies: usize, what: &str) {
    let report = || format!("{what}\n{}", out.report());
    assert!(!out.timed_out, "hang: {}", report());
    assert!(!out.stderr.contains("panicked"), "panic: {}", report());
    assert!(out.framing.is_empty(), "stdout framing: {}", report());
    assert_eq!(
        out.chunks.len(),
        replies,
        "exactly one reply per request: {}",
        report()
    );
    let (last, earlier) = out.chunks.split_last().expect("at least one reply");
    for c in earlier {
        assert!(
            c.error_texts().is_empty(),
            "an earlier reply carries an error: {}",
            report()
        );
    }
    assert!(
        last.json().is_some(),
        "the error reply is not JSON: {}",
        report()
    );
    assert!(
        !last.error_texts().is_empty(),
        "no ERROR message or error key in the last reply: {}",
        report()
    );
    assert_eq!(
        last.finished(),
        Some(true),
        "the error reply must say finished:true: {}",
        report()
    );
    assert!(
        matches!(out.exit_code, Some(c) if c != 0),
        "exit must be non-zero after an error: {}",
        report()
    );
}

#[test]
fn malformed_header() {
    let out = run_raw(
        vec![
            Step::Write(b"chunked 1.0;20;0\n{\"action\":\"getinfo\"}".to_vec()),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 1, "malformed header");
}

#[test]
fn v1_protocol_header() {
    // What a v2 command gets when commands.conf lacks `chunked = true`
    // (SDK #165): a v1 header.
    let out = run_raw(
        vec![
            Step::Write(
                b"splunkVersion:8.2.1\ntruncated:0\nkeywords:\n\n_time,EventCode\n1,1\n".to_vec(),
            ),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 1, "v1 header");
}

#[test]
fn non_json_metadata() {
    let out = run_raw(
        vec![Step::Write(chunk(b"{not json at all", b"")), Step::Close],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 1, "non-JSON metadata");
}

#[test]
fn unknown_action_after_getinfo() {
    let out = run_raw(
        vec![
            getinfo(),
            Step::WaitReplies(1),
            Step::Write(chunk(b"{\"action\":\"frobnicate\"}", b"")),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 2, "unknown action");
    let texts = out.chunks[1].error_texts().join(" | ");
    assert!(
        texts.contains("frobnicate"),
        "the error should name the action: {texts}"
    );
}

#[test]
fn execute_before_getinfo() {
    let out = run_raw(
        vec![
            Step::Write(execute_chunk(true, &body(&[good_row()]))),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 1, "execute before getinfo");
}

#[test]
fn truncated_chunk_then_eof() {
    let mut partial = b"chunked 1.0,37,1000\n{\"action\":\"execute\",\"finished\":false}".to_vec();
    partial.extend_from_slice(&body(&[good_row()])[..100]);
    let out = run_raw(
        vec![
            getinfo(),
            Step::WaitReplies(1),
            Step::Write(partial),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 2, "body declared 1000 bytes, 100 sent, EOF");
}

#[test]
fn stdin_closed_in_the_middle_of_a_chunk() {
    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.push(good_row());
    }
    let out = run_raw(
        vec![
            getinfo(),
            Step::WaitReplies(1),
            Step::Write(execute_chunk(false, &body(&rows))),
            Step::WaitReplies(2),
            // Header complete, metadata cut after 14 of 37 bytes.
            Step::Write(b"chunked 1.0,37,180\n{\"action\":\"ex".to_vec()),
            Step::Sleep(Duration::from_millis(200)),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 3, "EOF inside the metadata of the third request");
}

#[test]
fn broken_csv_quoting() {
    // An unclosed quote swallows the rest of the body: the first data row
    // ends up with fewer fields than the header.
    let mut b = body(&[]);
    b.extend_from_slice(b"\"1700000000.1\",1,\"{8A1B2C3D-0000-1111-2222-333344445555}\",,\"C:\\Windows\\cmd.exe,cmd,,0,,,,,,,,\n");
    b.extend_from_slice(b"\"1700000000.2\",1,,,,cmd,,1,,,,,,,,\n");
    let out = run_raw(
        vec![
            getinfo(),
            Step::WaitReplies(1),
            Step::Write(execute_chunk(true, &b)),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 2, "broken CSV quoting");
}

#[test]
fn field_over_the_default_cap() {
    // 64 MiB in one field; the default cap is 32 MiB (Limits::default).
    let mut huge = b"powershell.exe -enc ".to_vec();
    huge.resize(64 << 20, b'A');
    let mut row = good_row();
    row[5] = &huge;
    let b = body(&[row]);
    drop(huge);
    let out = run_raw(
        vec![
            getinfo(),
            Step::WaitReplies(1),
            Step::Write(execute_chunk(true, &b)),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    assert_failed(&out, 2, "64 MiB field");
    let texts = out.chunks[1].error_texts().join(" | ");
    assert!(
        texts.contains("CommandLine"),
        "the error should name the field: {texts}"
    );
    let limit = (32u64 << 20).to_string();
    assert!(
        texts.contains(&limit) || texts.contains("32 MiB") || texts.contains("32MiB"),
        "the error should name the limit ({limit} bytes): {texts}"
    );
}

#[test]
fn invalid_utf8_in_a_value_passes_through() {
    let image: &[u8] = b"C:\\Users\\Ren\xe9\\caf\xe9.exe"; // Latin-1, not UTF-8
    let cmdline: &[u8] = b"caf\xe9.exe /x \xff\xfe\x80 \"quoted\", done";
    let mut row = good_row();
    row[4] = image;
    row[5] = cmdline;
    let rows = [good_row(), row];
    let out = run_raw(
        vec![
            getinfo(),
            Step::WaitReplies(1),
            Step::Write(execute_chunk(true, &body(&rows))),
            Step::WaitReplies(2),
            Step::Close,
        ],
        &[],
        TIMEOUT,
    );
    let report = || out.report();
    assert!(!out.timed_out, "hang: {}", report());
    assert!(!out.stderr.contains("panicked"), "panic: {}", report());
    assert!(out.framing.is_empty(), "{}", report());
    assert_eq!(out.chunks.len(), 2, "{}", report());
    for c in &out.chunks {
        assert!(
            c.error_texts().is_empty(),
            "invalid UTF-8 must not fail the search: {}",
            report()
        );
    }
    assert_eq!(out.chunks[1].finished(), Some(true), "{}", report());
    let (header, reply_rows) = out.chunks[1]
        .rows()
        .unwrap_or_else(|e| panic!("reply CSV: {e}\n{}", report()));
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("reply lacks {name}: {header:?}"))
    };
    assert_eq!(reply_rows.len(), 2, "{}", report());
    assert_eq!(reply_rows[0][col("_chunked_idx")], b"0");
    assert_eq!(reply_rows[1][col("_chunked_idx")], b"1");
    assert_eq!(reply_rows[1][col("Image")], image, "Image bytes changed");
    assert_eq!(
        reply_rows[1][col("CommandLine")],
        cmdline,
        "CommandLine bytes changed"
    );
    assert_eq!(out.exit_code, Some(0), "{}", report());
}

/// Bad arguments are refused in the getinfo reply itself: an ERROR naming
/// the argument, `finished:true`, then a non-zero exit (SCPV2 §7, DESIGN §2).
#[test]
fn bad_arguments_are_refused_in_getinfo() {
    let table = Arc::new(datasets::generated());
    for (arg, name) in [
        ("max_depth=abc", "max_depth"),
        ("frobnicate=1", "frobnicate"),
    ] {
        let out = splunkd::run(table.clone(), &Options::with_args(&[arg]));
        let report = out.report();
        assert!(out.violations.is_empty(), "{arg}:\n{report}");
        assert_eq!(out.replies, 1, "{arg}: only the getinfo reply\n{report}");
        let getinfo = out
            .getinfo
            .as_ref()
            .unwrap_or_else(|| panic!("{arg}: no getinfo reply\n{report}"));
        assert_eq!(
            getinfo.get("finished").and_then(serde_json::Value::as_bool),
            Some(true),
            "{arg}: getinfo reply must say finished:true\n{report}"
        );
        let errors: Vec<&String> = out
            .messages
            .iter()
            .filter(|(level, _)| level == "ERROR")
            .map(|(_, text)| text)
            .collect();
        assert!(
            errors.iter().any(|t| t.contains(name)),
            "{arg}: no ERROR inspector message naming {name}: {errors:?}\n{report}"
        );
        assert!(!out.stderr.contains("panicked"), "{arg}:\n{report}");
        assert!(
            matches!(out.exit_code, Some(c) if c != 0),
            "{arg}: exit must be non-zero\n{report}"
        );
    }
}
