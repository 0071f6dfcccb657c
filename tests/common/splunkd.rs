//! A splunkd stand-in, written from `protocol/SCPV2.md` (not from our own
//! protocol code, so a shared misunderstanding cannot make both sides agree).
//!
//! [`run`] plays the search head for a `stateful` command with
//! `required_fields`:
//! - starts the binary with no arguments (splunkd never passes any), stdin
//!   and stdout piped, stderr to a file, `SPLUNK_HOME` a fresh temp dir, and
//!   every network path (splunkd's REST port, HTTP proxies) pointing at a
//!   closed loopback port so nothing can reach the internet;
//! - sends getinfo byte-for-byte in splunkd 8.2.1's shape and key order;
//! - sends execute chunks in splunkd's CSV style (LF, its quoting rule,
//!   `__mv_` columns after all plain ones, hidden `_chunked_idx` last) with
//!   only the declared `required_fields`;
//! - checks every reply strictly (one per request, exact header, JSON
//!   object, echoed `finished`, CSV body, the rows it was sent, in order),
//!   recording *violations* instead of panicking, so a test can print them
//!   all at once;
//! - merges the replies back into the full rows by `_chunked_idx`, as
//!   splunkd does for commands that declared their required fields.
//!
//! [`run_raw`] writes arbitrary bytes instead (for hostile input) and parses
//! whatever comes back leniently.
//!
//! Reads and writes happen on their own threads with a watchdog per reply, so
//! a binary that hangs or stops reading fails the test instead of blocking it.

use super::datasets::{Table, Value};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_sysmonenrich");

/// The command's own output fields (DESIGN §2). Everything else is a
/// pass-through column that must come back untouched.
pub const OUTPUT_FIELDS: [&str; 23] = [
    "hash_md5",
    "hash_sha1",
    "hash_sha256",
    "hash_imphash",
    "rep_verdict",
    "rep_detections",
    "rep_engines",
    "rep_label",
    "rep_sources",
    "rep_checked",
    "rep_cached",
    "rep_link",
    "rep_error",
    "lineage",
    "lineage_depth",
    "lineage_parents",
    "lineage_guids",
    "lineage_cmdlines",
    "lineage_root",
    "lineage_status",
    "lineage_source",
    "lineage_flags",
    "lineage_malicious_ancestor",
];

/// A static empty cell, so [`Merged::get`] can hand out a reference for
/// columns a row never had.
static EMPTY: Value = Value::EMPTY;

/// The hidden column splunkd adds to streaming/stateful input and merges by.
pub const CHUNKED_IDX: &str = "_chunked_idx";

/// Inspector levels a reply may use (SCPV2 §4.2).
const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// What splunkd leaves unescaped in the percent-encoded `search` (the
/// RFC 3986 unreserved set; `/`, `=`, `|`, `"`, `,`, space are encoded in
/// the 8.2.1 captures).
const SEARCH_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A fake session key in splunkd's alphabet (never valid anywhere).
const SESSION_KEY: &str =
    "Xq9^fAkE_sEsSiOn_KeY^for_tests_only^Zk2mWv8pR0cJ7dT4yN1bL5hG3sQ6uE9aK_oI2^xY";

/// How the last execute chunk looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalChunk {
    /// A header-only body with `finished:true` after all data chunks
    /// (splunkd 8.2.1, ND captures).
    HeaderOnly,
    /// The last rows travel in the `finished:true` chunk (REC 6.3 captures).
    WithLastRows,
}

/// How to run one search.
#[derive(Clone, Debug)]
pub struct Options {
    /// `searchinfo.args`.
    pub args: Vec<String>,
    /// `searchinfo.raw_args`; `None` = same as `args`.
    pub raw_args: Option<Vec<String>>,
    /// `searchinfo.splunkd_uri`; `None` = a closed loopback port.
    pub splunkd_uri: Option<String>,
    /// Extra environment for the binary (applied last, so it can override).
    pub env: Vec<(String, String)>,
    /// Data rows per execute chunk (splunkd: at most `maxresultrows`).
    pub rows_per_chunk: usize,
    /// Send a header-only `finished:false` chunk after the data (8.2.1 does).
    pub header_only_unfinished: bool,
    /// Form of the `finished:true` chunk.
    pub final_chunk: FinalChunk,
    /// Send every column whatever `required_fields` says (what splunkd does
    /// for `events` commands, and a way to put multivalue cells through).
    pub send_all_columns: bool,
    /// Also send required fields the data does not have, as empty columns
    /// (splunkd did so in the ND `accumages` capture).
    pub include_absent_required: bool,
    /// Close stdin after this many execute chunks (0 = right after the
    /// getinfo reply), as splunkd does when a search is cancelled or a
    /// `head` upstream is satisfied.
    pub close_after: Option<usize>,
    /// getinfo `preview`.
    pub preview: bool,
    /// Watchdog per reply.
    pub reply_timeout: Duration,
    /// How long to wait for the exit after stdin is closed.
    pub exit_timeout: Duration,
    /// Keep every reply's cells as raw bytes in [`Outcome::kept`].
    pub keep_replies: bool,
    /// Withhold the last byte of each request for this long and flag a
    /// reply that starts before the request is complete (SCPV2 §1: never
    /// write before the whole request was read).
    pub hold_back: Option<Duration>,
    /// The program to run; `None` = this build's binary ([`BINARY`]). A
    /// script that starts the Windows build under Wine is one (the
    /// Windows stage of `.ci/run`, `tests/windows.rs`).
    pub binary: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            args: Vec::new(),
            raw_args: None,
            splunkd_uri: None,
            env: Vec::new(),
            rows_per_chunk: 50_000,
            header_only_unfinished: false,
            final_chunk: FinalChunk::HeaderOnly,
            send_all_columns: false,
            include_absent_required: false,
            close_after: None,
            preview: false,
            reply_timeout: Duration::from_secs(120),
            exit_timeout: Duration::from_secs(60),
            keep_replies: false,
            hold_back: None,
            binary: None,
        }
    }
}

impl Options {
    /// Options with these search arguments.
    pub fn with_args(args: &[&str]) -> Options {
        Options {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Options::default()
        }
    }
}

/// One reply as received, cells as raw bytes (for exact comparisons).
#[derive(Clone, Debug)]
pub struct KeptReply {
    /// The metadata.
    pub metadata: Json,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of raw cells.
    pub rows: Vec<Vec<Vec<u8>>>,
}

impl KeptReply {
    /// The raw cell of `row` in `column`.
    pub fn cell(&self, row: usize, column: &str) -> Option<&[u8]> {
        let i = self.header.iter().position(|c| c == column)?;
        Some(&self.rows[row][i])
    }
}

/// The result set as splunkd would hold it after merging the replies into
/// the original rows: the reply row with the same `_chunked_idx` adds or
/// overrides fields; all other fields keep their original values.
#[derive(Debug)]
pub struct Merged {
    base: Arc<Table>,
    columns: Vec<String>,
    index: HashMap<String, usize>,
    /// Per row, the cells that differ from the original or are new.
    overlay: Vec<Vec<(usize, Value)>>,
    returned: Vec<u32>,
}

impl Merged {
    fn new(base: Arc<Table>) -> Merged {
        let columns = base.columns.clone();
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        let n = base.rows.len();
        Merged {
            base,
            columns,
            index,
            overlay: vec![Vec::new(); n],
            returned: vec![0; n],
        }
    }

    /// The original data.
    pub fn base(&self) -> &Table {
        &self.base
    }

    /// Original columns, then the new ones in order of first appearance.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Number of rows (always the original number).
    pub fn len(&self) -> usize {
        self.returned.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.returned.is_empty()
    }

    /// The merged cell; `None` for an unknown column. New columns read as
    /// empty on rows whose reply did not set them.
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let i = *self.index.get(column)?;
        if let Some((_, v)) = self.overlay[row].iter().find(|(c, _)| *c == i) {
            return Some(v);
        }
        Some(self.base.rows[row].get(i).unwrap_or(&EMPTY))
    }

    /// The whole merged row in [`Merged::columns`] order.
    pub fn row(&self, row: usize) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| self.get(row, c).cloned().unwrap_or(Value::EMPTY))
            .collect()
    }

    /// How many reply rows carried this row's `_chunked_idx` (1 is right).
    pub fn times_returned(&self, row: usize) -> u32 {
        self.returned[row]
    }

    /// Original columns whose merged value differs from the original on
    /// `row`, with (original, merged). Cheap: only the overlay is scanned.
    pub fn changed_originals(&self, row: usize) -> Vec<(&str, &Value, &Value)> {
        self.overlay[row]
            .iter()
            .filter(|(c, _)| *c < self.base.columns.len())
            .map(|(c, v)| (self.columns[*c].as_str(), &self.base.rows[row][*c], v))
            .collect()
    }

    fn set(&mut self, row: usize, column: &str, value: Value) {
        let i = match self.index.get(column) {
            Some(&i) => i,
            None => {
                self.columns.push(column.to_string());
                self.index
                    .insert(column.to_string(), self.columns.len() - 1);
                self.columns.len() - 1
            }
        };
        let overlay = &mut self.overlay[row];
        overlay.retain(|(c, _)| *c != i);
        let original = self.base.rows[row].get(i);
        if original != Some(&value) && !(original.is_none() && value.is_empty()) {
            overlay.push((i, value));
        }
    }
}

/// Everything a search run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The getinfo reply metadata (if one arrived and was JSON).
    pub getinfo: Option<Json>,
    /// Its `type`.
    pub command_type: Option<String>,
    /// Its `required_fields`, if present.
    pub required_fields: Option<Vec<String>>,
    /// Plain columns sent in execute chunks (without `__mv_`, with `_chunked_idx`).
    pub sent_columns: Vec<String>,
    /// Requests sent, getinfo included.
    pub requests: usize,
    /// Replies received.
    pub replies: usize,
    /// Bytes of every request sent (metadata and bodies).
    pub request_bytes: usize,
    /// Bytes of every reply read (metadata and bodies).
    pub reply_bytes: usize,
    /// Why the search ended before the last request, if it did (an error
    /// or `finished:true` reply, a missing reply).
    pub ended_early: Option<String>,
    /// Every inspector message of every reply, `(level, text)`.
    pub messages: Vec<(String, String)>,
    /// Every `error` value of every reply.
    pub errors: Vec<String>,
    /// The merged result set.
    pub merged: Merged,
    /// Header of every execute reply, with its row count.
    pub reply_headers: Vec<(Vec<String>, usize)>,
    /// Raw replies, when [`Options::keep_replies`] is set.
    pub kept: Vec<KeptReply>,
    /// What the binary wrote to stderr.
    pub stderr: String,
    /// Exit code; `None` if killed by a signal (or by the watchdog).
    pub exit_code: Option<i32>,
    /// True if the watchdog had to kill the binary.
    pub timed_out: bool,
    /// Protocol violations, in the order they were seen.
    pub violations: Vec<String>,
}

impl Outcome {
    /// ERROR/FATAL inspector texts and `error` values: what a user would see
    /// as the search's failure.
    pub fn error_texts(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|(l, _)| l == "ERROR" || l == "FATAL")
            .map(|(_, t)| t.clone())
            .chain(self.errors.iter().cloned())
            .collect()
    }

    /// A summary for assertion messages.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "requests {}, replies {}, exit {:?}{}, ended early: {:?}",
            self.requests,
            self.replies,
            self.exit_code,
            if self.timed_out {
                " (killed by watchdog)"
            } else {
                ""
            },
            self.ended_early
        );
        let _ = writeln!(
            s,
            "getinfo reply: {}",
            self.getinfo.as_ref().map_or("-".into(), Json::to_string)
        );
        let _ = writeln!(s, "sent columns: {:?}", self.sent_columns);
        let _ = writeln!(s, "violations ({}):", self.violations.len());
        for v in self.violations.iter().take(40) {
            let _ = writeln!(s, "  - {v}");
        }
        if self.violations.len() > 40 {
            let _ = writeln!(s, "  … and {} more", self.violations.len() - 40);
        }
        let _ = writeln!(s, "messages: {:?}", first(&self.messages, 20));
        let _ = writeln!(s, "errors: {:?}", self.errors);
        let _ = writeln!(
            s,
            "stderr ({} bytes): {}",
            self.stderr.len(),
            shorten(&self.stderr, 4000)
        );
        s
    }
}

fn first<T>(v: &[T], n: usize) -> &[T] {
    &v[..v.len().min(n)]
}

/// At most `n` bytes of `s` (on a char boundary), marked when cut.
pub fn shorten(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

// ---------------------------------------------------------------------------
// Wire format helpers (splunkd's side)
// ---------------------------------------------------------------------------

/// One chunk in the exact form splunkd writes.
pub fn chunk(metadata: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = format!("chunked 1.0,{},{}\n", metadata.len(), body.len()).into_bytes();
    out.extend_from_slice(metadata);
    out.extend_from_slice(body);
    out
}

/// An execute chunk (`{"action":"execute","finished":…}` exactly as 8.2.1).
pub fn execute_chunk(finished: bool, body: &[u8]) -> Vec<u8> {
    let meta = format!("{{\"action\":\"execute\",\"finished\":{finished}}}");
    chunk(meta.as_bytes(), body)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn json_strings(v: &[String]) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

/// A getinfo exactly as [`run`] sends it, for these args.
pub fn sample_getinfo(args: &[&str]) -> GetInfo {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    GetInfo {
        raw_args: args.clone(),
        args,
        dispatch_dir: "/opt/splunk/var/run/splunk/dispatch/1700000000.42".into(),
        sid: SID.into(),
        splunkd_uri: "https://127.0.0.1:8089".into(),
        preview: false,
        maxresultrows: 50_000,
    }
}

/// What getinfo says about the search.
#[derive(Clone, Debug)]
pub struct GetInfo {
    /// `args`.
    pub args: Vec<String>,
    /// `raw_args`.
    pub raw_args: Vec<String>,
    /// `dispatch_dir`.
    pub dispatch_dir: String,
    /// `sid`.
    pub sid: String,
    /// `splunkd_uri`.
    pub splunkd_uri: String,
    /// `preview`.
    pub preview: bool,
    /// `maxresultrows`.
    pub maxresultrows: usize,
}

impl GetInfo {
    /// The metadata bytes in splunkd 8.2.1's exact shape: compact JSON, key
    /// order `action, preview, streaming_command_will_restart, searchinfo{…}`,
    /// `search` percent-encoded, times as strings (SCPV2 §3.1).
    pub fn metadata(&self) -> String {
        let search = format!(
            "search index=main source=\"XmlWinEventLog:Microsoft-Windows-Sysmon/Operational\" \
             | sysmonenrich {}",
            self.raw_args.join(" ")
        );
        let search = search.trim_end();
        format!(
            "{{\"action\":\"getinfo\",\"preview\":{},\"streaming_command_will_restart\":false,\
             \"searchinfo\":{{\"args\":{},\"raw_args\":{},\"dispatch_dir\":{},\"sid\":{},\
             \"app\":\"sysmonenrich\",\"owner\":\"admin\",\"username\":\"admin\",\
             \"session_key\":{},\"splunkd_uri\":{},\"splunk_version\":\"8.2.1\",\"search\":{},\
             \"command\":\"sysmonenrich\",\"maxresultrows\":{},\"earliest_time\":\"0\",\
             \"latest_time\":\"0\"}}}}",
            self.preview,
            json_strings(&self.args),
            json_strings(&self.raw_args),
            json_string(&self.dispatch_dir),
            json_string(&self.sid),
            json_string(SESSION_KEY),
            json_string(&self.splunkd_uri),
            json_string(&utf8_percent_encode(search, SEARCH_SAFE).to_string()),
            self.maxresultrows
        )
    }
}

/// True when splunkd would write the value without quotes: empty or purely
/// ASCII alphanumeric (SCPV2 §5, measured over all REC inputs).
fn bare(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Appends one cell in splunkd's quoting style.
pub fn push_splunk_cell(out: &mut Vec<u8>, value: &str) {
    if bare(value) {
        out.extend_from_slice(value.as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    }
}

/// `$v1$;$v2$;…` with `$` doubled inside values (SCPV2 §6).
pub fn mv_encode(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("${}$", v.replace('$', "$$")))
        .collect::<Vec<_>>()
        .join(";")
}

/// Inverse of [`mv_encode`], with the SDK regex's semantics
/// (`\$((?:\$\$|[^$])*)\$(?:;|$)`); text that does not follow the form is
/// one value.
pub fn mv_decode(cell: &str) -> Vec<String> {
    let b = cell.as_bytes();
    let mut values = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            return vec![cell.to_string()];
        }
        i += 1;
        let mut value = Vec::new();
        loop {
            match b.get(i) {
                None => return vec![cell.to_string()],
                Some(b'$') if b.get(i + 1) == Some(&b'$') => {
                    value.push(b'$');
                    i += 2;
                }
                Some(b'$') => {
                    i += 1;
                    break;
                }
                Some(&c) => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        values.push(String::from_utf8_lossy(&value).into_owned());
        match b.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(_) => return vec![cell.to_string()],
        }
    }
    values
}

/// Columns of a table to send: (name, index into the table or `None` for
/// an absent required field sent empty).
type SentColumns = Vec<(String, Option<usize>)>;

/// One execute body in splunkd's style: header, rows, LF line ends; plain
/// columns, `_chunked_idx` last among them, then the `__mv_` companions in
/// the same order.
fn execute_body(
    table: &Table,
    columns: &SentColumns,
    rows: std::ops::Range<usize>,
    with_chunked_idx: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    if with_chunked_idx {
        names.push(CHUNKED_IDX);
    }
    let mut header: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    header.extend(names.iter().map(|n| format!("__mv_{n}")));
    for (i, name) in header.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_splunk_cell(&mut out, name);
    }
    out.push(b'\n');
    for r in rows {
        let mut cells: Vec<Value> = columns
            .iter()
            .map(|(_, c)| c.map_or(Value::EMPTY, |c| table.rows[r][c].clone()))
            .collect();
        if with_chunked_idx {
            cells.push(Value::One(r.to_string()));
        }
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_splunk_cell(&mut out, &cell.joined());
        }
        for cell in &cells {
            out.push(b',');
            if let Value::Many(values) = cell {
                push_splunk_cell(&mut out, &mv_encode(values));
            }
        }
        out.push(b'\n');
    }
    out
}

/// An execute body for `columns` of `table` over `rows`, written the way
/// [`run`] writes it (with or without the `_chunked_idx` it adds), so tests
/// can compare the stand-in's bytes with real splunkd bodies.
pub fn splunk_body(
    table: &Table,
    columns: &[&str],
    rows: std::ops::Range<usize>,
    with_chunked_idx: bool,
) -> Vec<u8> {
    let columns: SentColumns = columns
        .iter()
        .map(|c| (c.to_string(), table.position(c)))
        .collect();
    execute_body(table, &columns, rows, with_chunked_idx)
}

// ---------------------------------------------------------------------------
// Process and threads
// ---------------------------------------------------------------------------

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A started binary and the temp dir it lives in.
struct Proc {
    child: Child,
    /// Kept so the directory lives as long as the process.
    _home: tempfile::TempDir,
    stderr_path: PathBuf,
    dispatch_dir: PathBuf,
    dead_uri: String,
}

const SID: &str = "1700000000.42";

/// The program the stand-in runs when a test names none: `SYSMONENRICH_TEST_BIN`
/// (a release build, or a script that starts the Windows build under Wine:
/// the Windows stage of `.ci/run` runs the protocol tests so), else this
/// build's binary.
pub fn default_binary() -> PathBuf {
    std::env::var_os("SYSMONENRICH_TEST_BIN")
        .filter(|b| !b.is_empty())
        .map_or_else(|| PathBuf::from(BINARY), PathBuf::from)
}

fn spawn(env: &[(String, String)], binary: Option<&Path>) -> (Proc, ChildStdin, ChildStdout) {
    let binary = binary.map_or_else(default_binary, Path::to_path_buf);
    let home = tempfile::Builder::new()
        .prefix("splunk_home.")
        .tempdir()
        .expect("temp SPLUNK_HOME");
    let dispatch_dir = home.path().join("var/run/splunk/dispatch").join(SID);
    fs::create_dir_all(&dispatch_dir).expect("dispatch dir");
    let stderr_path = home.path().join("stderr.txt");
    let stderr = File::create(&stderr_path).expect("stderr file");
    let port = closed_port();
    let dead_http = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(&binary);
    // A clean environment: what splunkd provides, plus proxies that lead
    // nowhere, so no code path can reach the internet from a test.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("SPLUNK_HOME", home.path())
        .env("SPLUNK_ETC", home.path().join("etc"))
        .env("SPLUNK_DB", home.path().join("var/lib/splunk"))
        .env("SPLUNK_SERVER_NAME", "stand-in")
        .env("TZ", "UTC")
        .env("LANG", "C.UTF-8");
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env(var, &dead_http);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .current_dir(&dispatch_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc {
        child,
        _home: home,
        stderr_path,
        dispatch_dir,
        dead_uri: format!("https://127.0.0.1:{port}"),
    };
    (proc, stdin, stdout)
}

impl Proc {
    /// Waits for the exit until `timeout`, then kills (our own child, by
    /// its handle). Returns (exit code, killed).
    fn wait(&mut self, timeout: Duration) -> (Option<i32>, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return (status.code(), false),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let status = self.child.wait().ok();
                    return (status.and_then(|s| s.code()), true);
                }
            }
        }
    }

    fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn getinfo(
        &self,
        args: &[String],
        raw_args: Option<&[String]>,
        uri: Option<&str>,
        preview: bool,
        maxresultrows: usize,
    ) -> GetInfo {
        GetInfo {
            args: args.to_vec(),
            raw_args: raw_args.unwrap_or(args).to_vec(),
            dispatch_dir: self.dispatch_dir.to_string_lossy().into_owned(),
            sid: SID.to_string(),
            splunkd_uri: uri.map_or_else(|| self.dead_uri.clone(), str::to_string),
            preview,
            maxresultrows,
        }
    }
}

/// A reply chunk as it came off the wire.
#[derive(Debug, Clone)]
pub struct WireChunk {
    /// Bytes (white space) that preceded the header.
    pub stray: Vec<u8>,
    /// The header line without its `\n`.
    pub header: Vec<u8>,
    /// Metadata bytes.
    pub metadata: Vec<u8>,
    /// Body bytes.
    pub body: Vec<u8>,
}

enum Wire {
    Chunk(WireChunk),
    Bad(String),
    Eof,
}

/// Parses `chunked 1.0,<m>,<b>` leniently (SDK regex): the strict form is
/// checked separately so a sloppy header is a violation, not a lost stream.
fn lenient_header(line: &[u8]) -> Option<(usize, usize)> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let rest = line.strip_prefix("chunked")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let rest = rest.trim_start().strip_prefix("1.0")?;
    let mut parts = rest.split(',');
    let (Some(empty), Some(m), Some(b), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if !empty.trim().is_empty() {
        return None;
    }
    let num = |s: &str| -> Option<usize> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    Some((num(m)?, num(b)?))
}

/// Reads one chunk; `Err` describes why the stream cannot be followed.
/// `started` is bumped when the first non-blank byte of a reply arrives.
fn read_wire_chunk<R: BufRead>(
    r: &mut R,
    started: &AtomicUsize,
) -> Result<Option<WireChunk>, String> {
    let mut stray = Vec::new();
    loop {
        let buf = r
            .fill_buf()
            .map_err(|e| format!("reading stdout failed: {e}"))?;
        if buf.is_empty() {
            return if stray.is_empty() {
                Ok(None)
            } else {
                Err(format!(
                    "stdout ended with {} stray byte(s) {:?}",
                    stray.len(),
                    String::from_utf8_lossy(&stray)
                ))
            };
        }
        let n = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        stray.extend_from_slice(&buf[..n]);
        let more = n < buf.len();
        r.consume(n);
        if more {
            break;
        }
    }
    started.fetch_add(1, Ordering::SeqCst);
    let mut header = Vec::new();
    loop {
        let buf = r
            .fill_buf()
            .map_err(|e| format!("reading stdout failed: {e}"))?;
        if buf.is_empty() {
            return Err(format!(
                "stdout ended inside a chunk header: {:?}",
                String::from_utf8_lossy(&header)
            ));
        }
        if let Some(p) = buf.iter().position(|&b| b == b'\n') {
            header.extend_from_slice(&buf[..p]);
            r.consume(p + 1);
            break;
        }
        let n = buf.len();
        header.extend_from_slice(buf);
        r.consume(n);
        if header.len() > 256 {
            return Err(format!(
                "no chunk header: {:?}",
                String::from_utf8_lossy(&header[..200])
            ));
        }
    }
    let Some((m, b)) = lenient_header(&header) else {
        return Err(format!(
            "malformed chunk header {:?}",
            String::from_utf8_lossy(&header)
        ));
    };
    let mut metadata = Vec::with_capacity(m);
    let mut body = Vec::with_capacity(b);
    let got = r
        .by_ref()
        .take(m as u64)
        .read_to_end(&mut metadata)
        .map_err(|e| e.to_string())?;
    if got < m {
        return Err(format!(
            "stdout ended inside chunk metadata: declared {m} bytes, got {got}"
        ));
    }
    let got = r
        .by_ref()
        .take(b as u64)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if got < b {
        return Err(format!(
            "stdout ended inside chunk body: declared {b} bytes, got {got}"
        ));
    }
    Ok(Some(WireChunk {
        stray,
        header,
        metadata,
        body,
    }))
}

fn reader_thread(
    stdout: ChildStdout,
    tx: Sender<Wire>,
    started: Arc<AtomicUsize>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 16, stdout);
        loop {
            let msg = match read_wire_chunk(&mut r, &started) {
                Ok(Some(c)) => Wire::Chunk(c),
                Ok(None) => Wire::Eof,
                Err(e) => Wire::Bad(e),
            };
            let last = !matches!(msg, Wire::Chunk(_));
            if tx.send(msg).is_err() || last {
                return;
            }
        }
    })
}

/// A request for the writer thread: bytes and the 0-based request number.
struct Request {
    bytes: Vec<u8>,
    number: usize,
}

fn writer_thread(
    mut stdin: ChildStdin,
    rx: Receiver<Request>,
    hold_back: Option<Duration>,
    started: Arc<AtomicUsize>,
    problems: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for req in rx {
            let split = match hold_back {
                Some(_) if !req.bytes.is_empty() => req.bytes.len() - 1,
                _ => req.bytes.len(),
            };
            let mut result = stdin
                .write_all(&req.bytes[..split])
                .and_then(|()| stdin.flush());
            if let (Ok(()), Some(pause)) = (&result, hold_back) {
                thread::sleep(pause);
                if started.load(Ordering::SeqCst) > req.number {
                    problems.lock().unwrap().push(format!(
                        "request #{}: a reply started before the request was complete \
                         (last byte withheld for {pause:?})",
                        req.number
                    ));
                }
                result = stdin
                    .write_all(&req.bytes[split..])
                    .and_then(|()| stdin.flush());
            }
            if let Err(e) = result {
                problems.lock().unwrap().push(format!(
                    "request #{}: writing to the command's stdin failed ({e}): it stopped reading",
                    req.number
                ));
                return;
            }
        }
        // Dropping stdin here is the EOF splunkd gives after the last chunk.
    })
}

// ---------------------------------------------------------------------------
// The search
// ---------------------------------------------------------------------------

struct Session {
    proc: Proc,
    to_writer: Option<Sender<Request>>,
    from_reader: Receiver<Wire>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    problems: Arc<Mutex<Vec<String>>>,
    requests: usize,
    replies: usize,
    request_bytes: usize,
    reply_bytes: usize,
    violations: Vec<String>,
    messages: Vec<(String, String)>,
    errors: Vec<String>,
    timeout: Duration,
    timed_out: bool,
}

/// What is left of a session once the process is gone.
struct Finished {
    violations: Vec<String>,
    messages: Vec<(String, String)>,
    errors: Vec<String>,
    stderr: String,
    exit_code: Option<i32>,
    timed_out: bool,
    requests: usize,
    replies: usize,
    request_bytes: usize,
    reply_bytes: usize,
}

/// What a reply said about the course of the search.
enum Course {
    Continue,
    End(String),
}

impl Session {
    fn start(opts: &Options) -> Session {
        let (proc, stdin, stdout) = spawn(&opts.env, opts.binary.as_deref());
        let started = Arc::new(AtomicUsize::new(0));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (wtx, wrx) = mpsc::channel();
        let (rtx, rrx) = mpsc::channel();
        let writer = writer_thread(
            stdin,
            wrx,
            opts.hold_back,
            started.clone(),
            problems.clone(),
        );
        let reader = reader_thread(stdout, rtx, started);
        Session {
            proc,
            to_writer: Some(wtx),
            from_reader: rrx,
            writer: Some(writer),
            reader: Some(reader),
            problems,
            requests: 0,
            replies: 0,
            request_bytes: 0,
            reply_bytes: 0,
            violations: Vec::new(),
            messages: Vec::new(),
            errors: Vec::new(),
            timeout: opts.reply_timeout,
            timed_out: false,
        }
    }

    /// Sends one request and waits for its reply, with the watchdog.
    fn exchange(&mut self, bytes: Vec<u8>, what: &str) -> Option<WireChunk> {
        let number = self.requests;
        self.requests += 1;
        self.request_bytes += bytes.len();
        if let Some(tx) = &self.to_writer {
            let _ = tx.send(Request { bytes, number });
        }
        match self.from_reader.recv_timeout(self.timeout) {
            Ok(Wire::Chunk(c)) => {
                self.replies += 1;
                self.reply_bytes += c.metadata.len() + c.body.len();
                Some(c)
            }
            Ok(Wire::Eof) | Err(RecvTimeoutError::Disconnected) => {
                self.violations
                    .push(format!("{what}: stdout closed without a reply"));
                None
            }
            Ok(Wire::Bad(e)) => {
                self.violations
                    .push(format!("{what}: unreadable reply: {e}"));
                None
            }
            Err(RecvTimeoutError::Timeout) => {
                self.violations
                    .push(format!("{what}: no reply within {:?} (hang)", self.timeout));
                self.timed_out = true;
                let _ = self.proc.child.kill();
                None
            }
        }
    }

    /// Checks the parts every reply shares and returns the metadata object.
    fn check_common(&mut self, what: &str, c: &WireChunk) -> Option<serde_json::Map<String, Json>> {
        if !c.stray.is_empty() {
            self.violations.push(format!(
                "{what}: {} stray byte(s) {:?} before the reply header",
                c.stray.len(),
                String::from_utf8_lossy(&c.stray)
            ));
        }
        let exact = format!("chunked 1.0,{},{}", c.metadata.len(), c.body.len());
        if c.header != exact.as_bytes() {
            self.violations.push(format!(
                "{what}: header {:?} is not exactly {exact:?}",
                String::from_utf8_lossy(&c.header)
            ));
        }
        let meta = match serde_json::from_slice::<Json>(&c.metadata) {
            Ok(Json::Object(m)) => m,
            Ok(other) => {
                self.violations
                    .push(format!("{what}: metadata is not a JSON object: {other}"));
                return None;
            }
            Err(e) => {
                self.violations.push(format!(
                    "{what}: metadata is not JSON ({e}): {:?}",
                    shorten(&String::from_utf8_lossy(&c.metadata), 300)
                ));
                return None;
            }
        };
        if let Some(inspector) = meta.get("inspector") {
            match inspector.get("messages").and_then(Json::as_array) {
                Some(list) => {
                    for m in list {
                        match m.as_array().map(Vec::as_slice) {
                            Some([Json::String(level), Json::String(text)])
                                if LEVELS.contains(&level.as_str()) =>
                            {
                                self.messages.push((level.clone(), text.clone()));
                            }
                            _ => self.violations.push(format!(
                                "{what}: inspector message is not [LEVEL, text]: {m}"
                            )),
                        }
                    }
                }
                None if inspector.is_object() => {}
                None => self
                    .violations
                    .push(format!("{what}: inspector is not an object: {inspector}")),
            }
        }
        match meta.get("error") {
            None => {}
            Some(Json::String(e)) => self.errors.push(e.clone()),
            Some(other) => self
                .violations
                .push(format!("{what}: error is not a string: {other}")),
        }
        if let Some(f) = meta.get("finished") {
            if !f.is_boolean() {
                self.violations
                    .push(format!("{what}: finished is not a boolean: {f}"));
            }
        }
        Some(meta)
    }

    /// True when the reply carries an `error` or an ERROR/FATAL message.
    fn is_error(meta: &serde_json::Map<String, Json>) -> bool {
        meta.contains_key("error")
            || meta
                .get("inspector")
                .and_then(|i| i.get("messages"))
                .and_then(Json::as_array)
                .is_some_and(|l| {
                    l.iter().any(|m| {
                        m.get(0)
                            .and_then(Json::as_str)
                            .is_some_and(|s| s == "ERROR" || s == "FATAL")
                    })
                })
    }

    /// Closes stdin, waits for the exit, drains stdout, joins the threads.
    fn finish(mut self, exit_timeout: Duration) -> Finished {
        self.to_writer = None;
        let (code, killed) = self.proc.wait(exit_timeout);
        if killed && !self.timed_out {
            self.violations.push(format!(
                "did not exit within {exit_timeout:?} after stdin was closed"
            ));
        }
        let timed_out = self.timed_out || killed;
        // Anything still on stdout is a reply nobody asked for.
        loop {
            match self.from_reader.recv_timeout(Duration::from_secs(10)) {
                Ok(Wire::Chunk(c)) => self.violations.push(format!(
                    "unsolicited reply after the last request: {}",
                    shorten(&String::from_utf8_lossy(&c.metadata), 200)
                )),
                Ok(Wire::Bad(e)) if !timed_out => {
                    self.violations.push(format!("after the last reply: {e}"))
                }
                Ok(Wire::Bad(_)) | Ok(Wire::Eof) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.violations.push(
                        "stdout stayed open after the exit (a child process holds it?)".into(),
                    );
                    break;
                }
            }
        }
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        let mut violations = std::mem::take(&mut self.violations);
        violations.append(&mut self.problems.lock().unwrap());
        Finished {
            violations,
            messages: std::mem::take(&mut self.messages),
            errors: std::mem::take(&mut self.errors),
            stderr: self.proc.stderr(),
            exit_code: code,
            timed_out,
            requests: self.requests,
            replies: self.replies,
            request_bytes: self.request_bytes,
            reply_bytes: self.reply_bytes,
        }
    }
}

/// Runs one search over `table` and returns what happened. Never panics on
/// misbehaviour of the binary: that is what [`Outcome::violations`] is for.
pub fn run(table: Arc<Table>, opts: &Options) -> Outcome {
    assert!(opts.rows_per_chunk > 0, "rows_per_chunk must be positive");
    let mut s = Session::start(opts);
    let mut merged = Merged::new(table.clone());
    let mut out_getinfo = None;
    let mut command_type = None;
    let mut required_fields: Option<Vec<String>> = None;
    let mut sent_columns = Vec::new();
    let mut ended_early = None;
    let mut reply_headers = Vec::new();
    let mut kept = Vec::new();

    let info = s.proc.getinfo(
        &opts.args,
        opts.raw_args.as_deref(),
        opts.splunkd_uri.as_deref(),
        opts.preview,
        opts.rows_per_chunk.max(50_000),
    );
    let request = chunk(info.metadata().as_bytes(), b"");
    'search: {
        let Some(reply) = s.exchange(request, "getinfo") else {
            ended_early = Some("no getinfo reply".to_string());
            break 'search;
        };
        let Some(meta) = s.check_common("getinfo reply", &reply) else {
            ended_early = Some("getinfo reply unreadable".to_string());
            break 'search;
        };
        out_getinfo = Some(Json::Object(meta.clone()));
        if !reply.body.is_empty() {
            s.violations.push(format!(
                "getinfo reply has a body of {} bytes (must be 0)",
                reply.body.len()
            ));
        }
        let error = Session::is_error(&meta);
        let finished = meta.get("finished").and_then(Json::as_bool) == Some(true);
        match meta.get("type").and_then(Json::as_str) {
            Some(t @ ("streaming" | "stateful" | "events" | "reporting")) => {
                command_type = Some(t.to_string())
            }
            Some(t) => s
                .violations
                .push(format!("getinfo reply: invalid type {t:?}")),
            None if error || finished => {}
            None => s.violations.push("getinfo reply: no type".into()),
        }
        match meta.get("required_fields") {
            None => {}
            Some(Json::Array(list)) if list.iter().all(Json::is_string) => {
                required_fields = Some(
                    list.iter()
                        .filter_map(Json::as_str)
                        .map(str::to_string)
                        .collect(),
                );
            }
            Some(other) => s.violations.push(format!(
                "getinfo reply: required_fields is not an array of strings: {other}"
            )),
        }
        if error || finished {
            if error && !finished {
                s.violations
                    .push("getinfo reply carries an error but not finished:true".into());
            }
            ended_early = Some(format!(
                "getinfo reply ended the search: {}",
                Json::Object(meta)
            ));
            break 'search;
        }

        // Which columns travel: the declared required fields (dataset order),
        // or everything for `*`/absent.
        let all = opts.send_all_columns
            || match &required_fields {
                None => true,
                Some(r) => r.iter().any(|f| f == "*"),
            };
        let mut columns: SentColumns = table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| all || required_fields.as_ref().is_some_and(|r| r.contains(c)))
            .map(|(i, c)| (c.clone(), Some(i)))
            .collect();
        if opts.include_absent_required && !all {
            for f in required_fields.iter().flatten() {
                if table.position(f).is_none() {
                    columns.push((f.clone(), None));
                }
            }
        }
        sent_columns = columns.iter().map(|(n, _)| n.clone()).collect();
        sent_columns.push(CHUNKED_IDX.to_string());

        // The chunk plan: (rows, finished).
        let n = table.rows.len();
        let data: Vec<std::ops::Range<usize>> = (0..n)
            .step_by(opts.rows_per_chunk)
            .map(|start| start..(start + opts.rows_per_chunk).min(n))
            .collect();
        let mut plan: Vec<(std::ops::Range<usize>, bool)> = Vec::new();
        match opts.final_chunk {
            FinalChunk::HeaderOnly => {
                plan.extend(data.iter().map(|r| (r.clone(), false)));
                if opts.header_only_unfinished {
                    plan.push((n..n, false));
                }
                plan.push((n..n, true));
            }
            FinalChunk::WithLastRows => {
                let (last, rest) = match data.split_last() {
                    Some((last, rest)) => (last.clone(), rest),
                    None => (n..n, &data[..]),
                };
                plan.extend(rest.iter().map(|r| (r.clone(), false)));
                if opts.header_only_unfinished {
                    plan.push((last.start..last.start, false));
                }
                plan.push((last, true));
            }
        }

        for (k, (rows, finished)) in plan.into_iter().enumerate() {
            if opts.close_after == Some(k) {
                break;
            }
            let what = format!(
                "execute #{} (rows {}..{}, finished={finished})",
                k + 1,
                rows.start,
                rows.end
            );
            let body = execute_body(&table, &columns, rows.clone(), true);
            let Some(reply) = s.exchange(execute_chunk(finished, &body), &what) else {
                ended_early = Some(format!("{what}: no reply"));
                break 'search;
            };
            drop(body);
            let Some(meta) = s.check_common(&what, &reply) else {
                ended_early = Some(format!("{what}: reply unreadable"));
                break 'search;
            };
            let error = Session::is_error(&meta);
            let got_finished = meta.get("finished").and_then(Json::as_bool);
            if meta.contains_key("error") && got_finished != Some(true) {
                s.violations.push(format!(
                    "{what}: reply has an error but not finished:true: {}",
                    Json::Object(meta.clone())
                ));
            }
            if !error && got_finished != Some(finished) {
                s.violations.push(format!(
                    "{what}: reply finished={got_finished:?}, request had {finished} (non-generating commands echo it)"
                ));
            }
            let course = if error && (got_finished == Some(true) || meta.contains_key("error")) {
                Course::End(format!(
                    "{what}: error reply {}",
                    Json::Object(meta.clone())
                ))
            } else if got_finished == Some(true) && !finished {
                Course::End(format!("{what}: finished:true before splunkd was done"))
            } else {
                Course::Continue
            };
            // Error replies may still carry rows (SDK: "plus any buffered
            // rows"); check them the same way, but allow fewer rows.
            let must_have_all = matches!(course, Course::Continue);
            merge_reply(
                &mut s.violations,
                &what,
                &reply,
                rows,
                must_have_all,
                &mut merged,
                &mut reply_headers,
                opts.keep_replies.then_some(&mut kept),
                meta,
            );
            if let Course::End(why) = course {
                ended_early = Some(why);
                break 'search;
            }
        }
    }
    let done = s.finish(opts.exit_timeout);
    Outcome {
        getinfo: out_getinfo,
        command_type,
        required_fields,
        sent_columns,
        requests: done.requests,
        replies: done.replies,
        request_bytes: done.request_bytes,
        reply_bytes: done.reply_bytes,
        ended_early,
        messages: done.messages,
        errors: done.errors,
        merged,
        reply_headers,
        kept,
        stderr: done.stderr,
        exit_code: done.exit_code,
        timed_out: done.timed_out,
        violations: done.violations,
    }
}

/// Parses a reply body and merges its rows into `merged`, recording every
/// deviation from "the rows of this request, each once, in order".
#[allow(clippy::too_many_arguments)]
fn merge_reply(
    violations: &mut Vec<String>,
    what: &str,
    reply: &WireChunk,
    sent: std::ops::Range<usize>,
    must_have_all: bool,
    merged: &mut Merged,
    reply_headers: &mut Vec<(Vec<String>, usize)>,
    kept: Option<&mut Vec<KeptReply>>,
    meta: serde_json::Map<String, Json>,
) {
    const MAX_ROW_VIOLATIONS: usize = 5;
    let mut row_violations = 0usize;
    let mut note = |violations: &mut Vec<String>, text: String| {
        row_violations += 1;
        if row_violations <= MAX_ROW_VIOLATIONS {
            violations.push(text);
        }
    };
    let mut header: Vec<String> = Vec::new();
    let mut raw_rows: Vec<Vec<Vec<u8>>> = Vec::new();
    if !reply.body.is_empty() {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(&reply.body[..]);
        let mut record = csv::ByteRecord::new();
        let mut first = true;
        loop {
            match csv.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) if first => {
                    header = record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect();
                    first = false;
                }
                Ok(true) => raw_rows.push(record.iter().map(<[u8]>::to_vec).collect()),
                Err(e) => {
                    violations.push(format!("{what}: reply body is not valid CSV: {e}"));
                    break;
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for h in &header {
        if !seen.insert(h) {
            violations.push(format!("{what}: reply header repeats column {h:?}"));
        }
    }
    reply_headers.push((header.clone(), raw_rows.len()));
    let idx_col = header.iter().position(|h| h == CHUNKED_IDX);
    let expected: Vec<usize> = sent.collect();
    if !raw_rows.is_empty() && idx_col.is_none() {
        violations.push(format!(
            "{what}: reply rows have no {CHUNKED_IDX} column (header {header:?})"
        ));
    }
    if raw_rows.len() != expected.len() && (must_have_all || raw_rows.len() > expected.len()) {
        violations.push(format!(
            "{what}: reply has {} row(s), the request had {}",
            raw_rows.len(),
            expected.len()
        ));
    }
    // Plain columns with their `__mv_` companions.
    let plain: Vec<(usize, Option<usize>)> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.starts_with("__mv_") && *h != CHUNKED_IDX)
        .map(|(i, h)| (i, header.iter().position(|m| *m == format!("__mv_{h}"))))
        .collect();
    let mut next = 0usize; // position in `expected` the next row must match
    for (r, row) in raw_rows.iter().enumerate() {
        let Some(ic) = idx_col else { break };
        let text = String::from_utf8_lossy(&row[ic]);
        let Ok(idx) = text.parse::<usize>() else {
            note(
                violations,
                format!("{what}: reply row {r} has {CHUNKED_IDX} {text:?}, not a row index"),
            );
            continue;
        };
        match expected[next.min(expected.len())..]
            .iter()
            .position(|&e| e == idx)
        {
            Some(0) => next += 1,
            Some(skip) => {
                note(
                    violations,
                    format!("{what}: reply row {r} is {CHUNKED_IDX} {idx}; {skip} sent row(s) before it are missing"),
                );
                next += skip + 1;
            }
            None if expected.contains(&idx) => {
                note(
                    violations,
                    format!("{what}: reply row {r}: {CHUNKED_IDX} {idx} repeated or out of order"),
                );
            }
            None => {
                note(
                    violations,
                    format!("{what}: reply row {r}: {CHUNKED_IDX} {idx} was not in this request"),
                );
                continue;
            }
        }
        if idx >= merged.len() {
            continue;
        }
        merged.returned[idx] += 1;
        for &(c, mv) in &plain {
            let value = match mv {
                Some(m) if !row[m].is_empty() => {
                    Value::from_values(mv_decode(&String::from_utf8_lossy(&row[m])))
                }
                _ => Value::One(String::from_utf8_lossy(&row[c]).into_owned()),
            };
            merged.set(idx, &header[c], value);
        }
    }
    if must_have_all
        && next < expected.len()
        && row_violations == 0
        && raw_rows.len() == expected.len()
    {
        violations.push(format!(
            "{what}: {} sent row(s) did not come back",
            expected.len() - next
        ));
    }
    if row_violations > MAX_ROW_VIOLATIONS {
        violations.push(format!(
            "{what}: … and {} more row violation(s) in this reply",
            row_violations - MAX_ROW_VIOLATIONS
        ));
    }
    if let Some(kept) = kept {
        kept.push(KeptReply {
            metadata: Json::Object(meta),
            header,
            rows: raw_rows,
        });
    }
}

// ---------------------------------------------------------------------------
// Raw mode
// ---------------------------------------------------------------------------

/// One step of a raw conversation.
#[derive(Clone, Debug)]
pub enum Step {
    /// A well-formed getinfo chunk with these args (built like [`run`]'s).
    GetInfo(Vec<String>),
    /// These bytes, verbatim.
    Write(Vec<u8>),
    /// Wait until this many complete reply chunks have arrived in total.
    WaitReplies(usize),
    /// Pause.
    Sleep(Duration),
    /// Close stdin (EOF), even in the middle of a chunk.
    Close,
}

/// A body as (header, rows of raw cells).
pub type RawRows = (Vec<String>, Vec<Vec<Vec<u8>>>);

/// One reply chunk found in raw mode.
#[derive(Clone, Debug)]
pub struct RawChunk {
    /// The header line (without `\n`).
    pub header: String,
    /// Metadata bytes.
    pub metadata: Vec<u8>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl RawChunk {
    /// The metadata as JSON, if it is.
    pub fn json(&self) -> Option<Json> {
        serde_json::from_slice(&self.metadata).ok()
    }

    /// `finished`, if present and boolean.
    pub fn finished(&self) -> Option<bool> {
        self.json()?.get("finished")?.as_bool()
    }

    /// ERROR/FATAL inspector texts and the `error` value.
    pub fn error_texts(&self) -> Vec<String> {
        let Some(j) = self.json() else {
            return Vec::new();
        };
        let mut out: Vec<String> = j
            .get("inspector")
            .and_then(|i| i.get("messages"))
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| match m.as_array().map(Vec::as_slice) {
                Some([Json::String(l), Json::String(t)]) if l == "ERROR" || l == "FATAL" => {
                    Some(t.clone())
                }
                _ => None,
            })
            .collect();
        if let Some(e) = j.get("error").and_then(Json::as_str) {
            out.push(e.to_string());
        }
        out
    }

    /// The body as (header, rows) of raw cells.
    pub fn rows(&self) -> Result<RawRows, String> {
        if self.body.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(&self.body[..]);
        let mut records = csv.byte_records();
        let header = match records.next() {
            Some(h) => h
                .map_err(|e| e.to_string())?
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect(),
            None => Vec::new(),
        };
        let rows = records
            .map(|r| {
                r.map(|r| r.iter().map(<[u8]>::to_vec).collect())
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok((header, rows))
    }
}

/// What a raw conversation produced.
#[derive(Debug)]
pub struct RawOutcome {
    /// Every byte written to stdout.
    pub stdout: Vec<u8>,
    /// The reply chunks found in it (leniently).
    pub chunks: Vec<RawChunk>,
    /// Framing problems in stdout: stray bytes, inexact headers, garbage or
    /// a truncated chunk at the end.
    pub framing: Vec<String>,
    /// Exit code; `None` if killed.
    pub exit_code: Option<i32>,
    /// True if the watchdog killed the binary.
    pub timed_out: bool,
    /// stderr text.
    pub stderr: String,
    /// Steps that could not be done (a write that failed because the
    /// binary had exited, a wait that timed out).
    pub step_notes: Vec<String>,
}

impl RawOutcome {
    /// A summary for assertion messages.
    pub fn report(&self) -> String {
        let mut s = format!(
            "exit {:?}{}, {} reply chunk(s), framing problems {:?}, step notes {:?}\n",
            self.exit_code,
            if self.timed_out {
                " (killed by watchdog)"
            } else {
                ""
            },
            self.chunks.len(),
            self.framing,
            self.step_notes
        );
        for (i, c) in self.chunks.iter().enumerate() {
            let _ = writeln!(
                s,
                "  reply {}: {} {} | body {} bytes: {}",
                i + 1,
                c.header,
                shorten(&String::from_utf8_lossy(&c.metadata), 600),
                c.body.len(),
                shorten(&String::from_utf8_lossy(&c.body), 300)
            );
        }
        let _ = writeln!(
            s,
            "stderr ({} bytes): {}",
            self.stderr.len(),
            shorten(&self.stderr, 4000)
        );
        s
    }
}

/// Splits stdout into chunks leniently; returns the complete chunks and
/// the framing problems found.
pub fn parse_lenient(bytes: &[u8]) -> (Vec<RawChunk>, Vec<String>) {
    let mut chunks = Vec::new();
    let mut problems = Vec::new();
    let mut r = bytes;
    let started = AtomicUsize::new(0);
    loop {
        match read_wire_chunk(&mut r, &started) {
            Ok(None) => break,
            Ok(Some(c)) => {
                if !c.stray.is_empty() {
                    problems.push(format!(
                        "reply {}: stray bytes {:?} before the header",
                        chunks.len() + 1,
                        String::from_utf8_lossy(&c.stray)
                    ));
                }
                let exact = format!("chunked 1.0,{},{}", c.metadata.len(), c.body.len());
                if c.header != exact.as_bytes() {
                    problems.push(format!(
                        "reply {}: header {:?} is not exactly {exact:?}",
                        chunks.len() + 1,
                        String::from_utf8_lossy(&c.header)
                    ));
                }
                chunks.push(RawChunk {
                    header: String::from_utf8_lossy(&c.header).into_owned(),
                    metadata: c.metadata,
                    body: c.body,
                });
            }
            Err(e) => {
                problems.push(e);
                break;
            }
        }
    }
    (chunks, problems)
}

type Shared = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// Runs a raw conversation: the steps are executed in order on a writer
/// thread while stdout is collected; the whole run is bounded by `timeout`.
pub fn run_raw(steps: Vec<Step>, env: &[(String, String)], timeout: Duration) -> RawOutcome {
    run_raw_on(None, steps, env, timeout)
}

/// [`run_raw`] with another program than this build's binary (see
/// [`Options::binary`]).
pub fn run_raw_on(
    binary: Option<&Path>,
    steps: Vec<Step>,
    env: &[(String, String)],
    timeout: Duration,
) -> RawOutcome {
    let (mut proc, stdin, mut stdout) = spawn(env, binary);
    let deadline = Instant::now() + timeout;
    let shared: Shared = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
    let reader = {
        let shared = shared.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*shared;
                let mut g = lock.lock().unwrap();
                if n == 0 {
                    g.1 = true;
                    cv.notify_all();
                    return;
                }
                g.0.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        })
    };
    let notes = Arc::new(Mutex::new(Vec::new()));
    let getinfo_bytes = |args: &[String]| {
        chunk(
            proc.getinfo(args, None, None, false, 50_000)
                .metadata()
                .as_bytes(),
            b"",
        )
    };
    let steps: Vec<Step> = steps
        .into_iter()
        .map(|s| match s {
            Step::GetInfo(args) => Step::Write(getinfo_bytes(&args)),
            other => other,
        })
        .collect();
    let writer = {
        let shared = shared.clone();
        let notes = notes.clone();
        thread::spawn(move || {
            let mut stdin = Some(stdin);
            for step in steps {
                match step {
                    Step::Write(bytes) => {
                        if let Some(w) = stdin.as_mut() {
                            if let Err(e) = w.write_all(&bytes).and_then(|()| w.flush()) {
                                notes
                                    .lock()
                                    .unwrap()
                                    .push(format!("write of {} bytes failed: {e}", bytes.len()));
                                stdin = None;
                            }
                        }
                    }
                    Step::Close => stdin = None,
                    Step::Sleep(d) => thread::sleep(d),
                    Step::WaitReplies(n) => {
                        let (lock, cv) = &*shared;
                        let mut g = lock.lock().unwrap();
                        loop {
                            let have = parse_lenient(&g.0).0.len();
                            if have >= n {
                                break;
                            }
                            if g.1 {
                                notes.lock().unwrap().push(format!(
                                    "stdout closed with {have} of {n} awaited replies"
                                ));
                                break;
                            }
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                notes.lock().unwrap().push(format!(
                                    "timed out waiting for {n} replies (have {have})"
                                ));
                                break;
                            }
                            g = cv
                                .wait_timeout(g, left.min(Duration::from_millis(200)))
                                .unwrap()
                                .0;
                        }
                    }
                    Step::GetInfo(_) => unreachable!("expanded above"),
                }
            }
            // Leaving closes stdin if no step did.
        })
    };
    let (code, killed) = proc.wait(deadline.saturating_duration_since(Instant::now()));
    let _ = writer.join();
    let _ = reader.join();
    let stdout = std::mem::take(&mut shared.0.lock().unwrap().0);
    let (chunks, framing) = parse_lenient(&stdout);
    let step_notes = std::mem::take(&mut *notes.lock().unwrap());
    RawOutcome {
        stdout,
        chunks,
        framing,
        exit_code: code,
        timed_out: killed,
        stderr: proc.stderr(),
        step_notes,
    }
}

/// Asserts a clean run: every row back exactly once, exit 0, no protocol
/// violation, no ERROR for the user.
pub fn assert_clean(what: &str, out: &Outcome) {
    let mut p: Vec<String> = out.violations.clone();
    if out.ended_early.is_some() || out.exit_code != Some(0) || out.timed_out {
        p.push(format!(
            "ended early {:?}, exit {:?}, killed {}",
            out.ended_early, out.exit_code, out.timed_out
        ));
    }
    p.extend(out.error_texts());
    if let Some(r) = (0..out.merged.len()).find(|&r| out.merged.times_returned(r) != 1) {
        p.push(format!(
            "row {r} returned {} times",
            out.merged.times_returned(r)
        ));
    }
    assert!(p.is_empty(), "{what}: {p:?}\n{}", out.report());
}

/// One merged cell as text (multivalues joined by `\n`; empty if absent).
pub fn cell(out: &Outcome, row: usize, field: &str) -> String {
    out.merged
        .get(row, field)
        .map(|v| v.joined().into_owned())
        .unwrap_or_default()
}
