//! Memory stays bounded: a stream of millions of DISTINCT processes through
//! the protocol command must not grow the command's memory with the stream.
//!
//! ```text
//! cargo bench --bench memory -- [--processes N] [--limit-mb M] [--chunk ROWS] [--tree T] [--long-cmdline BYTES] [--no-state] [--generate-only]
//! ```
//!
//! Why a stream of distinct processes: every EventCode 1 row adds a process
//! the lineage engine may need later (a child in a later chunk, a later
//! search), so a naive table grows with the search. DESIGN §2 promises a cap
//! (`[lineage] memory_processes`, 200,000 by default) with the persistent
//! table (state.db) holding the rest.
//!
//! What runs: the release binary (`cargo bench` builds it with the bench
//! profile) with the shipped defaults, `backfill=false reputation=false`
//! (no network), the state store ON in a fresh temporary `SPLUNK_HOME`. A
//! writer thread generates the chunks on the fly (never the whole stream in
//! memory) into the child's stdin: `--processes` EventCode 1 rows (default
//! 5,000,000), each a new `ProcessGuid`, `--chunk` rows per execute chunk
//! (default 50,000, splunkd's maximum), in splunkd's CSV style, newest
//! first. Processes form session trees of `--tree` processes (default 400):
//! a root, a hub under it (explorer-like), and processes under the hub or
//! under a recent process of depth < 8, so chains are several levels deep
//! and children always arrive before their parents. A reader thread drains
//! stdout, checks the framing lightly (one reply per request, every row
//! back) and tallies `lineage_status` of the first reply.
//!
//! `--long-cmdline BYTES` gives every process without children a command
//! line of that many bytes (an encoded PowerShell one), so the process
//! table's entries are big: its count cap alone would then hold gigabytes,
//! and the byte budget (`[lineage] memory_mb`) is what keeps the search
//! bounded. Leaves only, so no row's lineage cells repeat them (output that
//! large is the reply's size, not the table's).
//!
//! Measured: the child's peak RSS (`VmHWM`, which it logs as `peak_rss_kb=`
//! in its end-of-search line in `$SPLUNK_HOME/var/log/splunk/sysmonenrich.log`,
//! cross-checked by sampling `/proc/<pid>/status`), wall time, rows/s, the
//! size of state.db and the rows it kept. Fails (exit 101) when the peak is
//! at or above `--limit-mb` (default 400 MB) or the framing is off.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use sysmonenrich::protocol::chunk::write_chunk;
use sysmonenrich::synth::{self, Rng};

struct Args {
    processes: u64,
    limit_mb: u64,
    chunk: u64,
    tree: u64,
    /// Command-line length of childless processes (0: the usual ones).
    long_cmdline: u64,
    /// Diagnosis only: `[state] enabled = false`, to see what the state
    /// store costs.
    no_state: bool,
    /// Diagnosis only: time the generator alone (no child).
    generate_only: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        processes: 5_000_000,
        limit_mb: 400,
        chunk: 50_000,
        tree: 400,
        long_cmdline: 0,
        no_state: false,
        generate_only: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || {
            argv.get(i + 1)
                .and_then(|v| v.replace('_', "").parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{} needs a whole number", argv[i]))
        };
        match argv[i].as_str() {
            "--processes" => a.processes = value(),
            "--limit-mb" => a.limit_mb = value(),
            "--chunk" => a.chunk = value().max(1),
            "--tree" => a.tree = value().max(3),
            "--long-cmdline" => a.long_cmdline = value(),
            "--no-state" | "--generate-only" => {
                if argv[i] == "--no-state" {
                    a.no_state = true;
                } else {
                    a.generate_only = true;
                }
                i += 1;
                continue;
            }
            _ => {
                i += 1; // cargo passes --bench
                continue;
            }
        }
        i += 2;
    }
    a
}

/// Images and command lines of generated processes (some need quoting).
const IMAGES: &[(&str, &str)] = &[
    ("C:\\Windows\\System32\\cmd.exe", "cmd.exe /c \"dir C:\\Users\\Public & whoami\""),
    ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "powershell.exe -NoProfile -Command \"Get-Process | Select-Object -First 5\""),
    ("C:\\Windows\\System32\\conhost.exe", "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1"),
    ("C:\\Windows\\System32\\PING.EXE", "ping -n 1 10.0.0.1"),
    ("C:\\Windows\\System32\\svchost.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule"),
    ("C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\" --type=renderer --lang=de"),
    ("C:\\Windows\\System32\\rundll32.exe", "rundll32.exe shell32.dll,Control_RunDLL"),
    ("C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE\" /n \"C:\\Users\\alice\\invoice, final.docm\""),
];
const ROOT: (&str, &str) = ("C:\\Windows\\System32\\userinit.exe", "userinit.exe");
const HUB: (&str, &str) = ("C:\\Windows\\explorer.exe", "C:\\Windows\\Explorer.EXE");
const SYSTEM: (&str, &str) = ("System", "");
const ZERO_GUID: &str = "{00000000-0000-0000-0000-000000000000}";

const COLUMNS: &[&str] = &[
    "_time",
    "EventCode",
    "ProcessGuid",
    "ParentProcessGuid",
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "Computer",
    "Hashes",
];

/// Process `k` of the stream: a unique GUID (host in the first group, `k`
/// in the last), the way Sysmon GUIDs of one machine share a prefix.
fn guid(k: u64, hosts: u64) -> String {
    format!(
        "{{{:08X}-{:04X}-{:04X}-0000-0010{:08X}}}",
        0x747F_3D96u64 + (k / 400) % hosts,
        (k >> 48) & 0xFFFF,
        (k >> 32) & 0xFFFF,
        k & 0xFFFF_FFFF
    )
}

/// One session tree, generated oldest first from its own seed, so trees can
/// be produced in any order (the stream goes newest tree first).
struct Tree {
    /// First process number of the tree.
    first: u64,
    /// Per process (oldest first): parent index in the tree (`None` = the
    /// root's parent outside the data), image index (usize::MAX: root/hub).
    parent: Vec<Option<u32>>,
    image: Vec<usize>,
    depth: Vec<u16>,
    /// Whether any process of the tree is its child.
    has_child: Vec<bool>,
    /// The root's parent: the all-zero GUID (started by System at boot) or
    /// a process older than the search.
    root_parent_zero: bool,
}

fn tree(t: u64, size: u64, total: u64) -> Tree {
    let first = t * size;
    let n = size.min(total - first) as usize;
    let mut rng = Rng::new(0x5EED_0000 ^ t.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut parent = Vec::with_capacity(n);
    let mut image = Vec::with_capacity(n);
    let mut depth: Vec<u16> = Vec::with_capacity(n);
    for i in 0..n {
        match i {
            0 => {
                parent.push(None);
                image.push(usize::MAX);
                depth.push(1);
            }
            1 => {
                parent.push(Some(0));
                image.push(usize::MAX);
                depth.push(2);
            }
            _ => {
                // Under the hub, or under a recent process that is not too
                // deep: real trees are bushy, a few levels deep.
                let recent: Vec<usize> = (i.saturating_sub(16)..i)
                    .filter(|&j| depth[j] < 8)
                    .collect();
                let p = if recent.is_empty() || rng.chance(0.35) {
                    1
                } else {
                    recent[rng.below(recent.len())]
                };
                parent.push(Some(p as u32));
                image.push(rng.below(IMAGES.len()));
                depth.push(depth[p] + 1);
            }
        }
    }
    let mut has_child = vec![false; n];
    for p in parent.iter().flatten() {
        has_child[*p as usize] = true;
    }
    Tree {
        first,
        parent,
        image,
        depth,
        has_child,
        root_parent_zero: rng.chance(0.25),
    }
}

fn image_of(tree: &Tree, i: usize) -> (&'static str, &'static str) {
    match (i, tree.image[i]) {
        (0, _) => ROOT,
        (1, _) => HUB,
        (_, x) => IMAGES[x],
    }
}

fn push_cell(out: &mut Vec<u8>, v: &str) {
    synth::push_splunkd_field(out, v);
}

/// splunkd's header: plain columns, `_chunked_idx`, `__mv_` companions.
fn header(out: &mut Vec<u8>) {
    let mut names: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    names.push("_chunked_idx".into());
    names.extend(COLUMNS.iter().map(|c| format!("__mv_{c}")));
    names.push("__mv__chunked_idx".into());
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_cell(out, n);
    }
    out.push(b'\n');
}

/// The stream, newest first: trees from the last to the first, each tree's
/// processes from the newest to the oldest.
struct Stream {
    total: u64,
    size: u64,
    hosts: u64,
    next_tree: Option<u64>,
    current: Option<(Tree, usize)>,
    hashes: Vec<String>,
    emitted: u64,
    depth_sum: u64,
    max_depth: u16,
    /// The command line of childless processes, when `--long-cmdline`.
    long_cmdline: Option<String>,
}

impl Stream {
    fn new(total: u64, size: u64, long_cmdline: u64) -> Stream {
        let trees = total.div_ceil(size);
        let mut hashes: Vec<String> = IMAGES
            .iter()
            .enumerate()
            .map(|(i, (img, _))| synth::hashes_for(img, i))
            .collect();
        hashes.push(synth::hashes_for(ROOT.0, 0));
        hashes.push(synth::hashes_for(HUB.0, 0));
        Stream {
            total,
            size,
            hosts: 50,
            next_tree: trees.checked_sub(1),
            current: None,
            hashes,
            emitted: 0,
            depth_sum: 0,
            max_depth: 0,
            long_cmdline: (long_cmdline > 0).then(|| {
                // Base64 of UTF-16 text, as `-enc` carries it.
                let mut c = String::from("powershell.exe -NoProfile -enc ");
                while c.len() < long_cmdline as usize {
                    c.push_str("SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA");
                }
                c.truncate(long_cmdline as usize);
                c
            }),
        }
    }

    /// Appends the next row; false at the end.
    fn row(&mut self, out: &mut Vec<u8>, chunked_idx: u64) -> bool {
        if !matches!(&self.current, Some((_, left)) if *left > 0) {
            let Some(t) = self.next_tree else {
                return false;
            };
            self.next_tree = t.checked_sub(1);
            let tr = tree(t, self.size, self.total);
            let n = tr.parent.len();
            self.current = Some((tr, n));
        }
        let Some((tr, left)) = self.current.as_mut() else {
            return false;
        };
        *left -= 1;
        let i = *left;
        let k = tr.first + i as u64;
        let (img, usual) = image_of(tr, i);
        let cmd: &str = match &self.long_cmdline {
            Some(long) if !tr.has_child[i] => long,
            _ => usual,
        };
        let (pguid, (pimg, pcmd)) = match tr.parent[i] {
            Some(p) => (
                guid(tr.first + u64::from(p), self.hosts),
                image_of(tr, p as usize),
            ),
            None if tr.root_parent_zero => (ZERO_GUID.to_string(), SYSTEM),
            None => (
                // A process older than the search (services.exe at boot).
                guid(u64::MAX / 2 + k, self.hosts),
                ("C:\\Windows\\System32\\winlogon.exe", "winlogon.exe"),
            ),
        };
        let hash = match (i, tr.image[i]) {
            (0, _) => &self.hashes[IMAGES.len()],
            (1, _) => &self.hashes[IMAGES.len() + 1],
            (_, x) => &self.hashes[x],
        };
        self.depth_sum += u64::from(tr.depth[i]);
        self.max_depth = self.max_depth.max(tr.depth[i]);
        let time = format!("{:.3}", 1_700_000_000.0 + k as f64 * 0.013);
        let host = format!("WS{:04}.corp.example.com", (k / self.size) % self.hosts);
        let cells: [&str; 10] = [
            &time,
            "1",
            &guid(k, self.hosts),
            &pguid,
            img,
            cmd,
            pimg,
            pcmd,
            &host,
            hash,
        ];
        for c in cells {
            push_cell(out, c);
            out.push(b',');
        }
        out.extend_from_slice(chunked_idx.to_string().as_bytes());
        // The `__mv_` companions (all empty): one per plain column and one
        // for `_chunked_idx`.
        for _ in 0..=COLUMNS.len() {
            out.push(b',');
        }
        out.push(b'\n');
        self.emitted += 1;
        true
    }
}

fn getinfo() -> Vec<u8> {
    let meta = "{\"action\":\"getinfo\",\"preview\":false,\"streaming_command_will_restart\":false,\
        \"searchinfo\":{\"args\":[\"backfill=false\",\"reputation=false\"],\
        \"raw_args\":[\"backfill=false\",\"reputation=false\"],\"dispatch_dir\":\"/tmp\",\
        \"sid\":\"bench.memory\",\"app\":\"search\",\"owner\":\"admin\",\"username\":\"admin\",\
        \"session_key\":\"none\",\"splunkd_uri\":\"https://127.0.0.1:1\",\"splunk_version\":\"9.1.0\",\
        \"search\":\"search%20index%3Dsysmon%20%7C%20sysmonenrich%20backfill%3Dfalse%20reputation%3Dfalse\",\
        \"command\":\"sysmonenrich\",\"maxresultrows\":50000,\"earliest_time\":\"0\",\"latest_time\":\"0\"}}";
    let mut out = Vec::new();
    write_chunk(&mut out, meta.as_bytes(), b"").expect("getinfo");
    out
}

/// What the reader saw.
#[derive(Default)]
struct Replies {
    chunks: u64,
    rows: u64,
    problems: Vec<String>,
    status_sample: BTreeMap<String, u64>,
    depth_sample: BTreeMap<u64, u64>,
    last_at: Option<Instant>,
}

fn read_replies<R: Read>(stdout: R) -> Replies {
    let mut r = BufReader::with_capacity(1 << 20, stdout);
    let mut out = Replies::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                out.problems.push(format!("reading stdout: {e}"));
                break;
            }
        }
        let text = String::from_utf8_lossy(&line);
        let Some((m, b)) = text
            .trim_end()
            .strip_prefix("chunked 1.0,")
            .and_then(|s| s.split_once(','))
            .and_then(|(m, b)| Some((m.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        else {
            out.problems
                .push(format!("reply {}: bad header {text:?}", out.chunks + 1));
            break;
        };
        let mut meta = vec![0u8; m];
        let mut body = vec![0u8; b];
        if r.read_exact(&mut meta)
            .and_then(|()| r.read_exact(&mut body))
            .is_err()
        {
            out.problems
                .push(format!("reply {}: truncated", out.chunks + 1));
            break;
        }
        out.chunks += 1;
        out.last_at = Some(Instant::now());
        let meta = String::from_utf8_lossy(&meta);
        if meta.contains("\"ERROR\"") || meta.contains("\"error\"") {
            out.problems.push(format!("reply {}: {}", out.chunks, meta));
        }
        if body.is_empty() {
            continue;
        }
        // Records (output cells hold line breaks: multivalue fields are
        // written joined by `\n` in their plain column), minus the header.
        out.rows += records(&body).saturating_sub(1);
        if out.chunks == 2 {
            sample(&body, &mut out);
        }
    }
    out
}

/// CSV records in a body: line ends outside quotes (a doubled quote inside
/// a quoted cell toggles twice, so it needs no special case).
fn records(b: &[u8]) -> u64 {
    let mut quoted = false;
    let mut n = 0;
    for &c in b {
        match c {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => n += 1,
            _ => {}
        }
    }
    n
}

/// `lineage_status` and `lineage_depth` of the first data reply.
fn sample(body: &[u8], out: &mut Replies) {
    let mut rdr = csv::ReaderBuilder::new().from_reader(body);
    let Ok(h) = rdr.headers().cloned() else {
        return;
    };
    let (Some(s), Some(d)) = (
        h.iter().position(|c| c == "lineage_status"),
        h.iter().position(|c| c == "lineage_depth"),
    ) else {
        out.problems
            .push("no lineage_status/lineage_depth column".into());
        return;
    };
    for rec in rdr.records().map_while(Result::ok) {
        *out.status_sample.entry(rec[s].to_string()).or_default() += 1;
        *out.depth_sample
            .entry(rec[d].parse().unwrap_or(0))
            .or_default() += 1;
    }
}

fn vm_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Writes getinfo and the execute chunks, generated on the fly; returns
/// (chunks sent, rows, sum of depths, max depth). Dropping `w` at the end is
/// splunkd's EOF after the last chunk.
fn write_stream<W: Write>(
    w: W,
    total: u64,
    chunk: u64,
    size: u64,
    long_cmdline: u64,
    bytes_in: &AtomicU64,
) -> (u64, u64, u64, u16) {
    let chunks = total.div_ceil(chunk);
    let mut w = BufWriter::with_capacity(1 << 20, w);
    w.write_all(&getinfo()).expect("write getinfo");
    let mut stream = Stream::new(total, size, long_cmdline);
    let mut body = Vec::with_capacity(chunk as usize * 480);
    let mut idx = 0u64;
    let mut sent = 0u64;
    while sent < chunks {
        body.clear();
        header(&mut body);
        let mut n = 0;
        while n < chunk && stream.row(&mut body, idx) {
            n += 1;
            idx += 1;
        }
        sent += 1;
        let meta = format!("{{\"action\":\"execute\",\"finished\":{}}}", sent == chunks);
        bytes_in.fetch_add(body.len() as u64, Ordering::Relaxed);
        if write_chunk(&mut w, meta.as_bytes(), &body).is_err() {
            eprintln!("the command stopped reading after {sent} chunks");
            break;
        }
    }
    (sent, stream.emitted, stream.depth_sum, stream.max_depth)
}

fn main() {
    let args = parse_args();
    let exe = env!("CARGO_BIN_EXE_sysmonenrich");
    let home = tempfile::Builder::new()
        .prefix("memory_bench.")
        .tempdir()
        .expect("temp SPLUNK_HOME");
    let stderr_path = home.path().join("stderr.txt");
    let chunks = args.processes.div_ceil(args.chunk);
    eprintln!(
        "memory bench: {} distinct processes in {} chunks of {} rows, trees of {}, long command lines {} bytes, limit {} MB, binary {exe}",
        args.processes, chunks, args.chunk, args.tree, args.long_cmdline, args.limit_mb
    );

    if args.generate_only {
        let t = Instant::now();
        let bytes = AtomicU64::new(0);
        let (_, rows, _, _) = write_stream(
            std::io::sink(),
            args.processes,
            args.chunk,
            args.tree,
            args.long_cmdline,
            &bytes,
        );
        let secs = t.elapsed().as_secs_f64();
        println!(
            "generator alone: {rows} rows, {:.0} MB in {secs:.1} s ({:.0} rows/s)",
            bytes.load(Ordering::Relaxed) as f64 / 1e6,
            rows as f64 / secs
        );
        return;
    }
    let app_dir = home.path().join("app");
    let mut cmd = Command::new(exe);
    // A clean environment, as splunkd gives: only what is set below.
    cmd.env_clear();
    if args.no_state {
        std::fs::create_dir_all(app_dir.join("local")).expect("app dir");
        std::fs::write(
            app_dir.join("local/sysmonenrich.conf"),
            "[state]\nenabled = false\n",
        )
        .expect("local conf");
        cmd.env("SYSMONENRICH_APP_DIR", &app_dir);
        eprintln!("diagnosis run: state store disabled");
    }
    let started = Instant::now();
    let mut child = cmd
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("SPLUNK_HOME", home.path())
        .env("TZ", "UTC")
        .current_dir(home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start sysmonenrich");
    let pid = child.id();
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");

    let bytes_in = Arc::new(AtomicU64::new(0));
    let writer = {
        let bytes_in = bytes_in.clone();
        let (total, chunk, size, long) = (args.processes, args.chunk, args.tree, args.long_cmdline);
        thread::spawn(move || write_stream(stdin, total, chunk, size, long, &bytes_in))
    };
    let reader = thread::spawn(move || read_replies(stdout));

    // Sample the child's VmHWM while it runs: a cross-check of what it logs,
    // and the only measure of the end-of-search housekeeping (state
    // pruning), which runs after that log line.
    let mut sampled_max_kb = 0;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if let Some(kb) = vm_kb(pid, "VmHWM:") {
            sampled_max_kb = sampled_max_kb.max(kb);
        }
        thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let (sent_chunks, emitted, depth_sum, max_depth) = writer.join().expect("writer");
    let replies = reader.join().expect("reader");

    let log = std::fs::read_to_string(home.path().join("var/log/splunk/sysmonenrich.log"))
        .unwrap_or_default();
    let peak_kb: Option<u64> = log
        .lines()
        .rev()
        .find_map(|l| l.split("peak_rss_kb=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    let db = home.path().join("var/lib/sysmonenrich/state.db");
    let db_bytes = file_size(&db);
    let wal_bytes = file_size(&home.path().join("var/lib/sysmonenrich/state.db-wal"));
    let kept = if !db.exists() {
        "no state.db,".to_string()
    } else {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM processes", [], |r| r.get::<_, i64>(0)))
            .map_or_else(|e| format!("? ({e})"), |n| n.to_string())
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let to_last_reply = replies
        .last_at
        .map_or(f64::NAN, |t| t.duration_since(started).as_secs_f64());

    let secs = elapsed.as_secs_f64();
    let peak_mb = peak_kb.map(|k| k as f64 / 1024.0);
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| distinct processes (EventCode 1 rows) | {emitted} |");
    println!(
        "| execute chunks sent / replies (getinfo incl.) | {sent_chunks} / {} |",
        replies.chunks
    );
    println!("| rows returned | {} |", replies.rows);
    println!(
        "| input CSV | {:.0} MB |",
        bytes_in.load(Ordering::Relaxed) as f64 / 1e6
    );
    println!(
        "| mean / max tree depth of a process | {:.1} / {max_depth} |",
        depth_sum as f64 / emitted.max(1) as f64
    );
    println!("| wall time, spawn → exit | {secs:.1} s |");
    println!("| wall time, spawn → last reply | {to_last_reply:.1} s |");
    println!("| rows/s (to exit) | {:.0} |", emitted as f64 / secs);
    println!(
        "| peak RSS (VmHWM, from the log) | {} |",
        peak_mb.map_or("not logged".to_string(), |m| format!("{m:.0} MB"))
    );
    println!(
        "| peak RSS (VmHWM, sampled every 50 ms until exit) | {:.0} MB |",
        sampled_max_kb as f64 / 1024.0
    );
    println!(
        "| state.db (+ WAL) | {:.0} MB (+ {:.0} MB), {kept} processes kept |",
        db_bytes as f64 / 1e6,
        wal_bytes as f64 / 1e6
    );
    println!(
        "| lineage_status, first reply | {:?} |",
        replies.status_sample
    );
    println!(
        "| lineage_depth, first reply | {:?} |",
        replies.depth_sample
    );
    println!();

    let mut problems = replies.problems.clone();
    if !status.success() {
        problems.push(format!("sysmonenrich exited with {status}"));
    }
    if !stderr.is_empty() {
        problems.push(format!("stderr: {}", &stderr[..stderr.len().min(2000)]));
    }
    if replies.chunks != sent_chunks + 1 {
        problems.push(format!(
            "{} replies for {} requests",
            replies.chunks,
            sent_chunks + 1
        ));
    }
    if replies.rows != emitted {
        problems.push(format!("{} rows returned, {emitted} sent", replies.rows));
    }
    match peak_kb {
        None => problems.push("no peak_rss_kb= in the end-of-search log line".into()),
        Some(kb) if kb >= args.limit_mb * 1024 => problems.push(format!(
            "peak RSS {:.0} MB is not below the limit of {} MB",
            kb as f64 / 1024.0,
            args.limit_mb
        )),
        Some(_) => {}
    }
    if sampled_max_kb >= args.limit_mb * 1024 {
        problems.push(format!(
            "sampled VmHWM {:.0} MB (including end-of-search housekeeping) is not below the limit of {} MB",
            sampled_max_kb as f64 / 1024.0,
            args.limit_mb
        ));
    }
    if !problems.is_empty() {
        eprintln!("memory bench FAILED:\n  {}", problems.join("\n  "));
        std::process::exit(101);
    }
    eprintln!(
        "memory bench passed: peak RSS {:.0} MB < {} MB",
        peak_mb.unwrap_or(0.0),
        args.limit_mb
    );
}
