//! Throughput and memory of the protocol command, against a bare protocol
//! pass-through, on one machine in one run (the only comparison that means
//! anything on a noisy shared host: ratios, medians).
//!
//! ```text
//! cargo bench --bench throughput -- [--rows N] [--chunk N] [--runs K] [--variants a,b]
//! ```
//!
//! The generator (`sysmonenrich::synth`) writes N realistic Sysmon rows in
//! splunkd's CSV style into execute chunks of `--chunk` rows, once, to a
//! temporary file. Each variant then runs as its own process, fed through a
//! pipe exactly as splunkd feeds it (getinfo, then the chunks), its output
//! drained to /dev/null. Time is wall clock from spawn to exit; peak RSS is
//! the child's own `VmHWM`, which it reports at exit.
//!
//! Variants:
//! - `passthrough`: this bench binary in child mode: read each chunk, scan
//!   every CSV row with the command's own row scanner (field spans, quoting
//!   checked), write the rows back unchanged (with `writev` from the request
//!   body and the same stdout handling as the command). The floor any
//!   command pays for speaking the protocol.
//! - `wide`: the pass-through, plus one constant cell of `--pad` bytes on
//!   every row (default 1,195: what `lineage` adds per row to this
//!   stream), written as one shared piece the way the command writes a
//!   process's lineage cells. The floor for any command that must write
//!   lineage's output volume: the cost of the bytes alone, no lineage.
//! - `hashes`: `sysmonenrich lineage=false reputation=false`.
//! - `cached`: `sysmonenrich lineage=false providers=hashlookup`, with
//!   CIRCL hashlookup played by a tiny fake on 127.0.0.1 (every lookup a
//!   404) set in a temporary app's `local/sysmonenrich.conf`. One warming
//!   run fills the reputation cache with every distinct hash (the generator
//!   has few), so the measured runs are the cost of reputation answered
//!   from the state store; the fake's request count during them is
//!   printed (it must be 0).
//! - `lineage`: `sysmonenrich reputation=false backfill=false`, process
//!   table warm from a previous run over the same data.
//! - `full`: `sysmonenrich backfill=false providers=local` (lineage and the
//!   local reputation list; no network).
//! - `sigma`: `lineage` with SigmaHQ's full rule set of `../shared/sigma`
//!   (`[sigma] rules` in a temporary app's local conf), process table warm
//!   likewise; skipped with a message when `../shared/sigma` is absent.
//!   Compare with `lineage`: the same search without rules. The stream's
//!   events repeat the way a fleet's do (one image loading the same DLLs,
//!   the same command lines on many hosts), so most verdicts come from
//!   the engine's memory (see `sigma/memo.rs`).
//! - `sigma-cold`: `sigma` with that memory off
//!   (`SYSMONENRICH_SIGMA_MEMO=0`): every event evaluated in full, the
//!   cost on a stream where nothing repeats.
//! - `shared` / `shared-off`: `lineage` with `[state] shared = kvstore`
//!   (what `auto` becomes on a cluster member) against a fake splunkd on
//!   127.0.0.1 that reports a ready KV store (a tiny keep-alive server in
//!   this bench), and
//!   the same search with `shared = off` against it. Process table warm
//!   likewise (the warming run, which writes every creation to the KV
//!   store, is timed and reported too). The ratio is issue 19's bar
//!   (≥ 80 %).
//! - `lineage-diverse`, `sigma-diverse` (any variant with `-diverse`):
//!   the same search on the diverse stream of `synth::diverse` (a day of
//!   a fleet: fresh random GUIDs, command lines, paths, ports, hashes and
//!   registry keys varied per event, every EventCode 1–29, a share of
//!   attack patterns), generated with the same row count. The pair
//!   `sigma-diverse` / `lineage-diverse` is the cost of the rules when
//!   remembered verdicts rarely answer.
//!
//! Besides wall time, each run's CPU time (user + system of the child, from
//! this process's `cutime`/`cstime` in `/proc/self/stat` around the
//! child's reaping) is reported: a variant that spreads work over threads
//! shows up there.
//!
//! Every run's output is digested (every byte but the `rep_checked` time
//! stamps); the table shows each variant's digest, so a refactor that must
//! not change a byte can be checked by comparing digests before and after
//! (the bench stops if two runs of one variant disagree). `--baseline PATH` also runs every
//! command variant with another build of `sysmonenrich` (named
//! `variant@base`), in the same run: the only rows/s comparison between two
//! builds that the noise of a shared host allows.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use sysmonenrich::protocol::chunk::{read_chunk, write_chunk, Chunk, Limits};
use sysmonenrich::protocol::pieces::{write_chunk_pieces, Pieces};
use sysmonenrich::protocol::records::RowReader;
use sysmonenrich::synth;

struct Args {
    rows: usize,
    chunk: usize,
    runs: usize,
    variants: Vec<String>,
    /// Bytes the `wide` variant adds per row.
    pad: usize,
    /// Write getinfo (with these args) + the stream to this file and stop:
    /// the input for a profiler run (`valgrind --tool=callgrind`).
    save: Option<(PathBuf, String)>,
    /// `--save-diverse`: save the diverse stream instead.
    save_diverse: bool,
    /// Another `sysmonenrich` binary to run every command variant with too.
    baseline: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        rows: 1_000_000,
        chunk: 50_000,
        runs: 3,
        variants: vec![
            "passthrough".into(),
            "hashes".into(),
            "cached".into(),
            "lineage".into(),
            "full".into(),
            "wide".into(),
        ],
        pad: 1195,
        save: None,
        save_diverse: false,
        baseline: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--rows" => a.rows = value.parse().expect("--rows N"),
            "--chunk" => a.chunk = value.parse().expect("--chunk N"),
            "--runs" => a.runs = value.parse().expect("--runs K"),
            "--variants" => a.variants = value.split(',').map(String::from).collect(),
            "--pad" => a.pad = value.parse().expect("--pad N"),
            "--baseline" => a.baseline = Some(PathBuf::from(value)),
            "--save" | "--save-diverse" => {
                let args = argv.get(i + 2).cloned().unwrap_or_default();
                a.save = Some((PathBuf::from(value), args));
                a.save_diverse = argv[i] == "--save-diverse";
                i += 1;
            }
            _ => {
                i += 1;
                continue; // cargo passes --bench
            }
        }
        i += 2;
    }
    a
}

/// Writes the execute chunks for `rows` rows to `path`; returns body bytes.
/// `diverse` picks `synth::diverse` (see the module docs).
fn write_stream(path: &Path, rows: usize, chunk: usize, diverse: bool) -> u64 {
    let mut out = BufWriter::new(File::create(path).expect("create stream file"));
    let mut generator = synth::Generator::new(42, 50);
    let mut varied = synth::diverse::Generator::new(42, 200, 0.02);
    let mut pending: Vec<synth::SynthEvent> = Vec::new();
    let mut written = 0usize;
    let mut body_bytes = 0u64;
    while written < rows {
        let n = chunk.min(rows - written);
        while pending.len() < n {
            let mut block = if diverse {
                varied.block(200)
            } else {
                generator.block(200)
            };
            block.reverse(); // pop() from the end keeps newest-first order
            pending.splice(0..0, block);
        }
        let mut body = Vec::with_capacity(n * 700);
        if diverse {
            synth::splunkd_header_for(&mut body, synth::diverse::COLUMNS);
        } else {
            synth::splunkd_header(&mut body);
        }
        for k in 0..n {
            let e = pending.pop().expect("rows");
            synth::splunkd_row(&mut body, &e, (written + k) as u64);
        }
        written += n;
        let meta = if written == rows {
            &b"{\"action\":\"execute\",\"finished\":true}"[..]
        } else {
            &b"{\"action\":\"execute\",\"finished\":false}"[..]
        };
        body_bytes += body.len() as u64;
        write_chunk(&mut out, meta, &body).expect("write stream");
    }
    out.flush().expect("flush stream");
    body_bytes
}

fn getinfo(args: &[&str]) -> Vec<u8> {
    getinfo_at(args, "https://127.0.0.1:1")
}

/// [`getinfo`] naming `splunkd_uri`.
fn getinfo_at(args: &[&str], splunkd_uri: &str) -> Vec<u8> {
    let args_json: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
    let meta = format!(
        "{{\"action\":\"getinfo\",\"preview\":false,\"streaming_command_will_restart\":false,\"searchinfo\":{{\"args\":[{a}],\"raw_args\":[{a}],\"dispatch_dir\":\"/tmp\",\"sid\":\"bench\",\"app\":\"search\",\"owner\":\"admin\",\"username\":\"admin\",\"session_key\":\"none\",\"splunkd_uri\":\"{uri}\",\"splunk_version\":\"9.1.0\",\"search\":\"search%20%7C%20sysmonenrich\",\"command\":\"sysmonenrich\",\"maxresultrows\":50000,\"earliest_time\":\"0\",\"latest_time\":\"0\"}}}}",
        a = args_json.join(","),
        uri = splunkd_uri
    );
    let mut out = Vec::new();
    write_chunk(&mut out, meta.as_bytes(), b"").expect("getinfo");
    out
}

struct Measurement {
    seconds: f64,
    /// User + system CPU seconds of the child.
    cpu: f64,
    peak_kb: u64,
    out_bytes: u64,
    /// Hash of every output byte (SipHash with fixed keys: the same bytes
    /// give the same digest in every run of one toolchain).
    digest: u64,
}

/// A digest of a variant's whole output (SipHash with fixed keys: the same
/// output gives the same digest in every run of one toolchain): every
/// reply's metadata and every cell, except the `rep_checked` cells, which
/// hold the time the answer was fetched (a reputation variant's output
/// differs by that from one run to the next, and from one build to another).
fn output_digest(out: &[u8]) -> u64 {
    use std::hash::Hasher;
    #[allow(deprecated)] // SipHasher: fixed keys, which is what a digest needs
    let mut h = std::hash::SipHasher::new();
    let mut input = out;
    let mut chunk = Chunk::default();
    let limits = Limits {
        max_metadata: usize::MAX,
        max_body: usize::MAX,
        max_field: usize::MAX,
    };
    while read_chunk(&mut input, &limits, &mut chunk).expect("a reply chunk") {
        h.write(&chunk.metadata);
        h.write_u8(0);
        let Some(mut rows) = RowReader::new(&chunk.body, usize::MAX).expect("a reply body") else {
            h.write(&chunk.body);
            continue;
        };
        let checked = rows.header().position(b"rep_checked");
        for name in rows.header().names() {
            h.write(name);
            h.write_u8(1);
        }
        while rows.next_row().expect("a reply row").is_some() {
            for i in (0..rows.len()).filter(|&i| Some(i) != checked) {
                h.write(rows.field(i).unwrap_or_default());
                h.write_u8(1);
            }
            h.write_u8(2);
        }
    }
    h.finish()
}

fn run_once(mut cmd: Command, stream: &Path, getinfo: &[u8], home: &Path) -> Measurement {
    let report = home.join("peak_kb");
    let _ = std::fs::remove_file(&report);
    cmd.env("SPLUNK_HOME", home)
        .env("SYSMONENRICH_PEAK_FILE", &report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn variant");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let getinfo = getinfo.to_vec();
    let stream = stream.to_path_buf();
    let feeder = std::thread::spawn(move || {
        stdin.write_all(&getinfo).expect("feed getinfo");
        let mut f = File::open(stream).expect("open stream");
        std::io::copy(&mut f, &mut stdin).expect("feed stream");
    });
    // Kept whole (digested after the clock stops, so the digest costs the
    // variant nothing).
    let mut out = Vec::with_capacity(64 << 20);
    stdout.read_to_end(&mut out).expect("drain output");
    feeder.join().expect("feeder");
    let cpu_before = children_cpu();
    let status = child.wait().expect("wait");
    let seconds = start.elapsed().as_secs_f64();
    let cpu = children_cpu() - cpu_before;
    assert!(status.success(), "variant failed: {status}");
    let out_bytes = out.len() as u64;
    let digest = output_digest(&out);
    // The pass-through child writes its peak to `report`; sysmonenrich logs
    // `peak_rss_kb=` in its end-of-search line.
    let log =
        std::fs::read_to_string(home.join("var/log/splunk/sysmonenrich.log")).unwrap_or_default();
    let from_log = log
        .lines()
        .rev()
        .find_map(|l| l.split("peak_rss_kb=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    let peak_kb = std::fs::read_to_string(&report)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .or(from_log)
        .unwrap_or(0);
    Measurement {
        seconds,
        cpu,
        peak_kb,
        out_bytes,
        digest,
    }
}

/// CPU seconds (user + system) of every child this process has reaped:
/// `cutime` + `cstime` of `/proc/self/stat`, in USER_HZ (100 per second
/// on Linux whatever the kernel's tick).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(16) + ticks(17)) / 100.0
}

/// Child mode: the bare pass-through; with `pad > 0` every row also gets
/// one shared cell of `pad` bytes.
fn passthrough(pad: usize) {
    let stdin = std::io::stdin().lock();
    let mut input = BufReader::with_capacity(1 << 20, stdin);
    let mut output = BufWriter::with_capacity(
        sysmonenrich::protocol::pieces::REPLY_BUFFER,
        sysmonenrich::protocol::pieces::reply_output(),
    );
    let limits = Limits::default();
    let mut chunk = Chunk::default();
    let mut small = Vec::new();
    let mut pieces = Pieces::default();
    let mut first = true;
    // `,"xx…x"`: one quoted cell of `pad` bytes with its comma.
    let mut cell = Vec::new();
    if pad > 0 {
        cell.extend_from_slice(b",\"");
        cell.resize(pad.max(3) - 1, b'x');
        cell.push(b'"');
    }
    while read_chunk(&mut input, &limits, &mut chunk).expect("chunk") {
        small.clear();
        pieces.clear();
        small.extend_from_slice(b"\n");
        if let Some(mut rows) = RowReader::new(&chunk.body, limits.max_field).expect("body") {
            let header_end = memchr::memchr(b'\n', &chunk.body).map_or(0, |i| i);
            pieces.push(0, 0..header_end);
            if pad > 0 {
                small.extend_from_slice(b",pad");
                pieces.push(1, 1..small.len());
            }
            pieces.push(1, 0..1);
            while let Some(span) = rows.next_row().expect("row") {
                pieces.push(0, span);
                pieces.push(2, 0..cell.len());
                pieces.push(1, 0..1);
            }
        }
        let meta: &[u8] = if first {
            b"{\"type\":\"stateful\"}"
        } else {
            b"{\"finished\":false}"
        };
        first = false;
        write_chunk_pieces(&mut output, meta, &[&chunk.body, &small, &cell], &pieces)
            .expect("reply");
    }
    write_peak();
}

fn write_peak() {
    if let Some(path) = std::env::var_os("SYSMONENRICH_PEAK_FILE") {
        let kb = sysmonenrich::logging::peak_rss_kb().unwrap_or(0);
        let _ = std::fs::write(path, kb.to_string());
    }
}

/// CIRCL hashlookup as far as the `cached` variant needs it: a server on
/// 127.0.0.1 (std threads, HTTP/1.1 keep-alive) that answers every
/// `GET /lookup/<alg>/<hash>` with CIRCL's 404 body, and counts requests.
struct FakeHashlookup {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl FakeHashlookup {
    fn start() -> FakeHashlookup {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        // Lives as long as the bench process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || serve_lookups(stream, &counter));
            }
        });
        FakeHashlookup { url, requests }
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The next request head on a keep-alive connection (bytes after it stay
/// in `buf` for the body); `None` when the client closed it.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, chunk: &mut [u8]) -> Option<String> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(head)
}

/// One connection: requests (GET, no body) until the client closes it.
fn serve_lookups(mut stream: TcpStream, counter: &AtomicUsize) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(head) = read_head(&mut stream, &mut buf, &mut chunk) else {
            return;
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let target = head.split_whitespace().nth(1).unwrap_or("");
        let mut parts = target.trim_start_matches('/').split('/');
        let (status, body) = match (parts.next(), parts.next(), parts.next()) {
            (Some("lookup"), Some(alg), Some(hash)) => {
                let name = match alg {
                    "md5" => "MD5",
                    "sha1" => "SHA-1",
                    _ => "SHA-256",
                };
                let hash: String = hash.chars().filter(char::is_ascii_hexdigit).collect();
                (
                    "404 Not Found",
                    format!(r#"{{"message":"Non existing {name}","query":"{hash}"}}"#),
                )
            }
            _ => (
                "404 Not Found",
                r#"{"message":"no such endpoint"}"#.to_string(),
            ),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A temporary app folder whose `local/sysmonenrich.conf` points
/// hashlookup at `url`, unpaced, with room for every lookup.
/// An app folder whose `[sigma] rules` name the shared SigmaHQ rules;
/// `None` without `../shared/sigma`. Prints the rule set's load time.
fn sigma_app(dir: &Path) -> Option<PathBuf> {
    let sigma = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/sigma");
    if !sigma.is_dir() {
        return None;
    }
    let paths: Vec<PathBuf> = ["rules", "rules-threat-hunting", "rules-emerging-threats"]
        .iter()
        .map(|d| sigma.join(d))
        .collect();
    let t = Instant::now();
    let report = sysmonenrich::sigma::RuleSet::load(&paths, &Default::default());
    eprintln!(
        "sigma: {} rules loaded ({} skipped) in {:.0} ms",
        report.rules.len(),
        report.skipped.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    let app = dir.join("sigma-app");
    std::fs::create_dir_all(app.join("local")).expect("sigma app");
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(
        app.join("local/sysmonenrich.conf"),
        format!("[sigma]\nrules = {}\n", list.join(",")),
    )
    .expect("sigma app conf");
    Some(app)
}

/// An app folder with `[state] shared = kvstore` (the fake splunkd says
/// its KV store is ready; on a cluster member `auto` is the same) or `off`.
fn shared_app(dir: &Path, on: bool) -> PathBuf {
    let app = dir.join(if on { "app-shared" } else { "app-shared-off" });
    std::fs::create_dir_all(app.join("local")).expect("app dir");
    std::fs::write(
        app.join("local/sysmonenrich.conf"),
        format!("[state]\nshared = {}\n", if on { "kvstore" } else { "off" }),
    )
    .expect("write local/sysmonenrich.conf");
    app
}

/// A fake splunkd with the KV store on 127.0.0.1 for the `shared`
/// variants: `server/info` (KV store ready, a cluster member), reads by
/// `_key` (`$or` of equalities, what the command sends), `batch_save`
/// upserts, deletes accepted. Keep-alive, so the command's connection
/// pool is measured as it would run against splunkd.
struct FakeKv {
    url: String,
    docs: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl FakeKv {
    fn start() -> FakeKv {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let docs: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> = Arc::default();
        let store = docs.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = store.clone();
                std::thread::spawn(move || serve_kv(stream, &store));
            }
        });
        FakeKv { url, docs }
    }

    fn docs(&self) -> usize {
        self.docs.lock().map_or(0, |d| d.len())
    }
}

fn serve_kv(
    mut stream: TcpStream,
    docs: &std::sync::Mutex<std::collections::HashMap<String, String>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let Some(head) = read_head(&mut stream, &mut buf, &mut chunk) else {
            return;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("");
        let target = words.next().unwrap_or("");
        let path = target.split('?').next().unwrap_or("");
        let reply = if path == "/services/server/info" {
            r#"{"entry":[{"name":"server-info","content":{"kvStoreStatus":"ready","server_roles":["search_head","kv_store","shc_member"]}}]}"#.to_string()
        } else if path == "/services/shcluster/member/members" {
            r#"{"entry":[{"name":"a"},{"name":"b"},{"name":"c"}]}"#.to_string()
        } else if method == "POST" && path.ends_with("/batch_save") {
            let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
            let mut keys = Vec::new();
            let mut d = docs.lock().expect("docs");
            for doc in list {
                if let Some(k) = doc.get("_key").and_then(|k| k.as_str()) {
                    keys.push(serde_json::Value::String(k.to_string()));
                    d.insert(k.to_string(), doc.to_string());
                }
            }
            serde_json::Value::Array(keys).to_string()
        } else if method == "GET" {
            let query = target
                .split_once("query=")
                .map(|(_, q)| q.split('&').next().unwrap_or(""))
                .unwrap_or("");
            let query = percent_encoding::percent_decode_str(query).decode_utf8_lossy();
            let q: serde_json::Value = serde_json::from_str(&query).unwrap_or_default();
            let d = docs.lock().expect("docs");
            let found: Vec<&str> = q["$or"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|e| d.get(e["_key"].as_str()?).map(String::as_str))
                        .collect()
                })
                .unwrap_or_default();
            format!("[{}]", found.join(","))
        } else {
            String::new()
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn cached_app(dir: &Path, url: &str) -> PathBuf {
    let app = dir.join("app-cached");
    std::fs::create_dir_all(app.join("local")).expect("app dir");
    std::fs::write(
        app.join("local/sysmonenrich.conf"),
        format!(
            "[provider:hashlookup]\nbase_url = {url}\nmin_interval = 0\nconcurrency = 8\n\n\
             [defaults]\nmax_lookups = 100000\nlookup_budget = 600s\n"
        ),
    )
    .expect("write local/sysmonenrich.conf");
    app
}

/// One variant with one binary, set up once and run every round.
struct Job {
    name: String,
    variant: String,
    exe: PathBuf,
    envs: Vec<(&'static str, PathBuf)>,
    stream: PathBuf,
    body_bytes: u64,
    home: PathBuf,
    gi: Vec<u8>,
    runs: Vec<Measurement>,
}

impl Job {
    fn command(&self, me: &Path, pad: usize) -> Command {
        if self.variant == "passthrough" || self.variant == "wide" {
            let mut c = Command::new(me);
            c.arg("--child-passthrough");
            if self.variant == "wide" {
                c.arg("--child-pad").arg(pad.to_string());
            }
            return c;
        }
        let mut c = Command::new(&self.exe);
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }
}

/// One variant's result: medians over its runs.
struct Outcome {
    variant: String,
    rows_per_s: f64,
    mb_per_s: f64,
    /// Median CPU seconds (user + system) per run.
    cpu: f64,
    peak_kb: u64,
    /// Bytes written in one run (every run writes the same).
    out_bytes: u64,
    /// Digest of those bytes (every run writes the same: checked).
    digest: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--child-passthrough") {
        let pad = std::env::args()
            .skip_while(|a| a != "--child-pad")
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        passthrough(pad);
        return;
    }
    let args = parse_args();
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = dir.path().join("stream.bin");
    let t = Instant::now();
    let body_bytes = write_stream(&stream, args.rows, args.chunk, false);
    eprintln!(
        "generated {} rows ({:.1} MB of CSV) in {:.1}s",
        args.rows,
        body_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let stream_diverse = dir.path().join("stream-diverse.bin");
    let mut diverse_bytes = 0;
    if args.save_diverse || args.variants.iter().any(|v| v.ends_with("-diverse")) {
        let t = Instant::now();
        diverse_bytes = write_stream(&stream_diverse, args.rows, args.chunk, true);
        eprintln!(
            "generated {} diverse rows ({:.1} MB of CSV) in {:.1}s",
            args.rows,
            diverse_bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }
    if let Some((path, command_args)) = &args.save {
        let list: Vec<&str> = command_args.split_whitespace().collect();
        let mut out = File::create(path).expect("create --save file");
        out.write_all(&getinfo(&list)).expect("write getinfo");
        let source = if args.save_diverse {
            &stream_diverse
        } else {
            &stream
        };
        std::io::copy(&mut File::open(source).expect("stream"), &mut out).expect("copy");
        eprintln!("saved to {}", path.display());
        return;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sysmonenrich"));
    let me = std::env::current_exe().expect("current exe");
    let mut results: Vec<Outcome> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // Started only when the `cached` variant runs.
    let mut hashlookup: Option<(FakeHashlookup, PathBuf)> = None;
    let mut kv: Option<FakeKv> = None;
    // (name in the table, variant, binary): each command variant once with
    // this build and, with `--baseline`, once more with the other build.
    let mut plan: Vec<(String, &str, &Path)> = Vec::new();
    for variant in &args.variants {
        plan.push((variant.clone(), variant, &exe));
        if let (false, Some(base)) = (
            variant == "passthrough" || variant == "wide",
            &args.baseline,
        ) {
            plan.push((format!("{variant}@base"), variant, base));
        }
    }
    // Every job is set up and warmed first; then the measured runs go
    // round by round, one run of each job per round, so that a job's runs
    // sit beside the others' in time: on a shared machine whose speed
    // drifts from minute to minute, comparing variants measured minutes
    // apart compared the minutes. Ratios are also taken per round.
    let mut jobs: Vec<Job> = Vec::new();
    for (name, full_variant, exe) in plan {
        let (variant, stream, body_bytes) = match full_variant.strip_suffix("-diverse") {
            Some(v) => (v, &stream_diverse, diverse_bytes),
            None => (full_variant, &stream, body_bytes),
        };
        let home = dir.path().join(format!("home-{name}"));
        std::fs::create_dir_all(&home).expect("home");
        let command_args: Vec<&str> = match variant {
            "passthrough" | "wide" => vec![],
            "hashes" => vec!["lineage=false", "reputation=false"],
            "lineage" | "sigma" | "sigma-cold" => vec!["reputation=false", "backfill=false"],
            "full" => vec!["backfill=false", "providers=local"],
            "cached" => vec!["lineage=false", "providers=hashlookup"],
            "shared" | "shared-off" => vec!["reputation=false", "backfill=false"],
            other => panic!("unknown variant {other}"),
        };
        if variant.starts_with("shared") && kv.is_none() {
            kv = Some(FakeKv::start());
        }
        let shared_app = variant
            .starts_with("shared")
            .then(|| shared_app(dir.path(), variant == "shared"));
        if variant == "cached" && hashlookup.is_none() {
            let fake = FakeHashlookup::start();
            let app = cached_app(dir.path(), &fake.url);
            hashlookup = Some((fake, app));
        }
        let sigma_app = if variant.starts_with("sigma") {
            match sigma_app(dir.path()) {
                Some(app) => Some(app),
                None => {
                    let note = "sigma: skipped: ../shared/sigma not found".to_string();
                    eprintln!("{note}");
                    notes.push(note);
                    continue;
                }
            }
        } else {
            None
        };
        let mut envs: Vec<(&str, PathBuf)> = Vec::new();
        if let (true, Some((_, app))) = (variant == "cached", &hashlookup) {
            envs.push(("SYSMONENRICH_APP_DIR", app.clone()));
        }
        if let Some(app) = sigma_app.or(shared_app) {
            envs.push(("SYSMONENRICH_APP_DIR", app));
        }
        if variant == "sigma-cold" {
            envs.push(("SYSMONENRICH_SIGMA_MEMO", "0".into()));
        }
        let gi = match &kv {
            Some(kv) if variant.starts_with("shared") => getinfo_at(&command_args, &kv.url),
            _ => getinfo(&command_args),
        };
        let job = Job {
            name,
            variant: variant.to_string(),
            exe: exe.to_path_buf(),
            envs,
            stream: stream.clone(),
            body_bytes,
            home,
            gi,
            runs: Vec::new(),
        };
        if [
            "lineage",
            "full",
            "cached",
            "sigma",
            "sigma-cold",
            "shared",
            "shared-off",
        ]
        .contains(&variant)
        {
            // Warm the persistent state (process table, caches) once.
            let t = Instant::now();
            run_once(job.command(&me, args.pad), &job.stream, &job.gi, &job.home);
            if variant.starts_with("shared") {
                let note = format!(
                    "{}: the warming run (empty local table) took {:.2}s; the fake KV store \
                     holds {} documents after it",
                    job.name,
                    t.elapsed().as_secs_f64(),
                    kv.as_ref().map_or(0, |k| k.docs())
                );
                eprintln!("{note}");
                notes.push(note);
            }
        }
        jobs.push(job);
    }
    let requests_before = hashlookup.as_ref().map_or(0, |(f, _)| f.count());
    for _ in 0..args.runs.max(1) {
        for job in &mut jobs {
            let m = run_once(job.command(&me, args.pad), &job.stream, &job.gi, &job.home);
            eprintln!(
                "{}: {:.2}s, cpu {:.2}s, peak {} MB, {:.1} MB out, digest {:016x}",
                job.name,
                m.seconds,
                m.cpu,
                m.peak_kb / 1024,
                m.out_bytes as f64 / 1e6,
                m.digest
            );
            assert!(
                job.runs.first().is_none_or(|d| d.digest == m.digest),
                "{}: two runs wrote different output",
                job.name
            );
            job.runs.push(m);
        }
    }
    if let Some((fake, _)) = &hashlookup {
        let during = fake.count() - requests_before;
        let note = format!(
            "cached: the fake hashlookup saw {requests_before} requests before and \
             {during} during the {} measured rounds (must be 0)",
            args.runs.max(1)
        );
        eprintln!("{note}");
        notes.push(note);
    }
    for job in &jobs {
        let s = median(job.runs.iter().map(|m| m.seconds).collect());
        let last = job.runs.last().expect("at least one run");
        results.push(Outcome {
            variant: job.name.clone(),
            rows_per_s: args.rows as f64 / s,
            mb_per_s: job.body_bytes as f64 / 1e6 / s,
            cpu: median(job.runs.iter().map(|m| m.cpu).collect()),
            peak_kb: job.runs.iter().map(|m| m.peak_kb).max().unwrap_or(0),
            out_bytes: last.out_bytes,
            digest: last.digest,
        });
    }
    // Per round, the ratio of a variant to the one it is compared with.
    let per_round = |with: &str, without: &str| -> Option<(f64, f64)> {
        let (w, o) = (
            jobs.iter().find(|j| j.name == with)?,
            jobs.iter().find(|j| j.name == without)?,
        );
        let pairs = w.runs.iter().zip(&o.runs);
        let speed = median(pairs.clone().map(|(w, o)| o.seconds / w.seconds).collect());
        let cpu = median(pairs.map(|(w, o)| w.cpu / o.cpu).collect());
        Some((speed, cpu))
    };
    let find = |name: &str| results.iter().find(|r| r.variant == name);
    let base = find("passthrough").map(|r| r.rows_per_s);
    let largest_chunk_mb = body_bytes as f64 / 1e6 / (args.rows as f64 / args.chunk as f64).ceil();
    println!(
        "\n{} rows, {} rows/chunk, largest chunk ≈ {:.1} MB, median of {} runs\n",
        args.rows, args.chunk, largest_chunk_mb, args.runs
    );
    println!("| variant | rows/s | MB/s | CPU s | peak RSS MB | vs passthrough | output digest |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &results {
        // Blank when passthrough was not among the variants.
        let share = base.map_or(String::new(), |b| {
            format!("{:.0}%", 100.0 * r.rows_per_s / b)
        });
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {:.0} | {} | {:016x} |",
            r.variant,
            r.rows_per_s,
            r.mb_per_s,
            r.cpu,
            r.peak_kb as f64 / 1024.0,
            share,
            r.digest
        );
    }
    if let (Some(pass), Some(wide), Some(core), Some(lineage)) = (
        find("passthrough"),
        find("wide"),
        find("hashes"),
        find("lineage"),
    ) {
        // Phases of a chunk run one after the other (splunkd waits for each
        // reply), so times add: a lineage that cost no CPU at all would
        // still take the core's time plus the time its extra bytes take
        // through the pipe. `wide` minus `passthrough` measures what bytes
        // cost here; scaled to the bytes lineage writes beyond the core's.
        let per_byte = if wide.out_bytes > pass.out_bytes {
            (1.0 / wide.rows_per_s - 1.0 / pass.rows_per_s)
                / (wide.out_bytes - pass.out_bytes) as f64
        } else {
            f64::NAN
        };
        let extra = lineage.out_bytes as f64 - core.out_bytes as f64;
        let bytes = per_byte * extra;
        let (core, lineage) = (core.rows_per_s, lineage.rows_per_s);
        let ceiling = 1.0 / (1.0 / core + bytes);
        println!(
            "\nlineage: {:.0}% of the core (hashes). Ceiling for any lineage writing these \
             cells on this machine (the core's time plus the time of lineage's {:.0} extra bytes \
             per row, priced by wide - passthrough: {:.2} s per million rows): {:.0} rows/s = \
             {:.0}% of the core",
            100.0 * lineage / core,
            extra / args.rows as f64,
            bytes * 1e6,
            ceiling,
            100.0 * ceiling / core
        );
    }
    for (without, with) in [
        ("lineage", "sigma"),
        ("lineage", "sigma-cold"),
        ("lineage-diverse", "sigma-diverse"),
        ("lineage-diverse", "sigma-cold-diverse"),
    ] {
        if let (Some(l), Some(r), Some((speed, cpu))) =
            (find(without), find(with), per_round(with, without))
        {
            println!(
                "\n{with}: {:.0}% of the throughput of the same search without rules \
                 ({without}), {:.2}x its CPU time (medians); per round, medians of the \
                 ratios: {:.0}% and {:.2}x",
                100.0 * r.rows_per_s / l.rows_per_s,
                r.cpu / l.cpu,
                100.0 * speed,
                cpu
            );
        }
    }
    if !notes.is_empty() {
        println!();
        for n in &notes {
            println!("{n}");
        }
    }
}
