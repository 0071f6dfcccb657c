//! A new user's first look, run as they run it (the built binary): `demo`
//! must show what the command finds, `-f table` must show whole field
//! names, and progress must stay off a stderr that is not a terminal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary with nothing of this machine's Splunk, keys or network.
fn cmd(home: &Path) -> Command {
    isolated(Command::new(env!("CARGO_BIN_EXE_sysmonenrich")), home)
}

fn isolated(mut c: Command, home: &Path) -> Command {
    c.env("HOME", home)
        .env_remove("SPLUNK_HOME")
        .env_remove("SYSMONENRICH_APP_DIR")
        .env_remove("SYSMONENRICH_VIRUSTOTAL_KEY")
        .env_remove("SYSMONENRICH_MALWAREBAZAAR_KEY")
        .env_remove("COLUMNS")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null());
    c
}

fn ok(o: Output) -> (String, String) {
    let out = String::from_utf8(o.stdout).expect("stdout is UTF-8");
    let err = String::from_utf8(o.stderr).expect("stderr is UTF-8");
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    (out, err)
}

/// Generated events (the synth module's sessions, written as an exported
/// CSV): runs without ../shared.
fn generated_csv(dir: &Path, blocks: usize) -> PathBuf {
    use sysmonenrich::synth::{csv_row, Generator, COLUMNS};
    let mut g = Generator::new(11, 3);
    let mut body = COLUMNS.join(",").into_bytes();
    body.push(b'\n');
    let mut all = Vec::new();
    for _ in 0..blocks {
        all.push(g.block(40));
    }
    for e in all.iter().rev().flatten() {
        csv_row(&mut body, e);
    }
    let path = dir.join("generated.csv");
    std::fs::write(&path, body).unwrap();
    path
}

/// A file under ../shared; `None` with the reason printed when ../shared
/// is absent, a failure when CI is set.
fn shared(relative: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but ../shared is missing at {}",
            dir.display()
        );
        eprintln!("skipping: ../shared not found at {}", dir.display());
        return None;
    }
    let path = dir.join(relative);
    assert!(
        path.is_file(),
        "{} is missing from ../shared",
        path.display()
    );
    Some(path)
}

/// The section of `text` that starts at the line starting with `title`
/// and ends before the next blank-line-separated title.
fn section<'a>(text: &'a str, title: &str, next: &str) -> &'a str {
    let start = text
        .find(title)
        .unwrap_or_else(|| panic!("no {title:?} in:\n{text}"));
    let rest = &text[start..];
    let end = rest.find(next).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn demo_leads_with_a_malicious_verdict_and_lineage_flags() {
    let home = tempfile::tempdir().unwrap();
    let (out, err) = ok(cmd(home.path()).arg("demo").output().unwrap());
    assert!(err.is_empty(), "demo wrote to stderr: {err}");

    // Order: findings, then events in full, then the summary.
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?} in:\n{out}"));
    assert!(at("Flagged lineages") < at("Malicious and suspicious hashes"));
    assert!(at("Malicious and suspicious hashes") < at("enriched events in full"));
    assert!(at("enriched events in full") < at("Summary"));

    // The planted macro chain and WMI execution, with their chains.
    let lineages = section(&out, "Flagged lineages", "Malicious and suspicious hashes");
    let rows: Vec<&str> = lineages.lines().skip(3).collect();
    assert!(
        rows.iter()
            .any(|l| l.contains("office_spawns_shell_or_lolbin")),
        "{lineages}"
    );
    assert!(lineages.contains("WINWORD.EXE > cmd.exe"), "{lineages}");
    assert!(
        lineages.contains("wmi_spawns_shell") && lineages.contains("WmiPrvSE.exe > cmd.exe"),
        "{lineages}"
    );

    // The deny-listed payload with where it ran (host and image).
    let hashes = section(
        &out,
        "Malicious and suspicious hashes",
        "enriched events in full",
    );
    let malicious: Vec<&str> = hashes
        .lines()
        .filter(|l| l.trim_start().starts_with("malicious"))
        .collect();
    assert_eq!(malicious.len(), 1, "{hashes}");
    assert!(malicious[0].contains("Demo.Trojan.Dropper"), "{hashes}");
    assert!(malicious[0].contains("msupdate.exe"), "{hashes}");
    assert!(malicious[0].contains(" WS000"), "{hashes}");
    assert!(
        hashes
            .lines()
            .any(|l| l.trim_start().starts_with("suspicious") && l.contains("pd64.exe")),
        "{hashes}"
    );

    // The summary counts the list's answers; nothing went to the network.
    let summary = &out[at("Summary")..];
    assert!(summary.contains("lineage for 2000 rows"), "{summary}");
    assert!(summary.contains("0 looked up (0 requests)"), "{summary}");
    assert!(!summary.contains(" 0 local list"), "{summary}");
}

#[test]
fn demo_events_in_json_carry_the_verdict_and_the_flags_and_repeat() {
    let home = tempfile::tempdir().unwrap();
    let run = || {
        ok(cmd(home.path())
            .args(["demo", "-f", "json", "--show", "5"])
            .output()
            .unwrap())
        .0
    };
    let out = run();
    let events: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5, "{out}");
    let verdict = |e: &serde_json::Value| e["rep_verdict"].as_str().unwrap_or("").to_string();
    let first = &events[0];
    assert_eq!(verdict(first), "malicious", "{first}");
    assert_eq!(first["rep_label"], "Demo.Trojan.Dropper");
    assert_eq!(first["rep_sources"], "local");
    assert!(
        first["Image"].as_str().unwrap().ends_with("\\msupdate.exe"),
        "{first}"
    );
    // Its child carries the malicious ancestor; some event carries flags.
    assert!(events.iter().any(|e| e["lineage_malicious_ancestor"]
        .as_str()
        .is_some_and(|a| a.ends_with("\\msupdate.exe"))));
    let flagged: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| !e["lineage_flags"].is_null())
        .collect();
    assert!(!flagged.is_empty(), "{out}");

    // Seeded: a second run prints the same (but for the lookup time).
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let again = run();
    assert_eq!(strip(&out), strip(&again));
    let ids = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} {}", v["ProcessGuid"], v["lineage"])
            })
            .collect()
    };
    assert_eq!(ids(&out), ids(&again));
}

/// Every header cell of every table block is a whole field name of the
/// output, and no line is wider than asked.
fn assert_table(file: &Path, extra: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let args = |format: &str| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> =
            vec!["enrich".into(), file.into(), "-f".into(), format.into()];
        for e in extra {
            a.push("-o".into());
            a.push(e.into());
        }
        a
    };
    let (csv_args, table_args) = (args("csv"), args("table"));
    let (csv, _) = ok(cmd(home.path()).args(&csv_args).output().unwrap());
    let header = csv.lines().next().unwrap();
    let fields: BTreeSet<&str> = header.split(',').collect();
    assert!(fields.contains("lineage_status"), "{header}");
    let mut wide = String::new();
    for width in [40u16, 60, 80, 120, 160, 250] {
        let (out, _) = ok(cmd(home.path())
            .args(&table_args)
            .env("COLUMNS", width.to_string())
            .output()
            .unwrap());
        let lines: Vec<&str> = out.lines().collect();
        let first = lines[0];
        let rule = |l: &str| l.trim().starts_with('-') && l.chars().all(|c| c == '-' || c == ' ');
        assert!(rule(lines[1]), "{}", lines[1]);
        let mut headers = 0;
        for (i, l) in lines.iter().enumerate().skip(1) {
            if !rule(l) {
                continue;
            }
            headers += 1;
            for cell in lines[i - 1].split_whitespace() {
                assert!(
                    fields.contains(cell),
                    "width {width}: header cell {cell:?} in {:?}",
                    lines[i - 1]
                );
            }
        }
        assert!(headers >= 1);
        let names: Vec<&str> = first.split_whitespace().collect();
        assert!(
            names.contains(&"Image") && names.contains(&"lineage"),
            "{first}"
        );
        if width >= 60 {
            for l in &lines {
                assert!(
                    l.chars().count() <= usize::from(width),
                    "width {width}: {l:?}"
                );
            }
        }
        if width == 250 {
            for name in [
                "host",
                "EventCode",
                "rep_verdict",
                "lineage_status",
                "lineage_flags",
            ] {
                assert!(names.contains(&name), "{first}");
            }
            wide = out;
        }
    }
    wide
}

#[test]
fn table_prints_whole_field_names_at_every_width() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated_csv(dir.path(), 6);
    let wide = assert_table(&file, &["reputation=false"]);
    // 1,000 rows per laid-out block: more than one header for this file.
    let rules = wide
        .lines()
        .filter(|l| l.trim().starts_with("---") && l.chars().all(|c| c == '-' || c == ' '))
        .count();
    assert!(rules >= 2, "{rules}");
}

#[test]
fn table_over_a_real_dataset_keeps_rule_names_whole() {
    let Some(file) = shared("data/sysmon/evtx_to_mitre_attack.csv") else {
        return;
    };
    let wide = assert_table(&file, &["reputation=false"]);
    let rules = [
        "office_spawns_shell_or_lolbin",
        "script_host_spawns_process",
        "wmi_spawns_shell",
        "unusual_parent_of_cmd",
    ];
    assert!(
        rules.iter().any(|r| wide
            .split_whitespace()
            .any(|w| w.trim_end_matches(',') == *r)),
        "no whole rule name in:\n{wide}"
    );
}

#[test]
fn no_progress_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated_csv(dir.path(), 20);
    let home = tempfile::tempdir().unwrap();
    let (out, err) = ok(cmd(home.path())
        .args(["enrich".as_ref(), file.as_os_str()])
        .args(["--chunk", "500", "-o", "reputation=false"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap());
    assert!(out.lines().count() > 4_000, "{}", out.lines().count());
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
    assert!(!err.contains("rows/s") && !err.contains("left"), "{err}");
    // Only the end-of-search summary.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("sysmonenrich: "), "{err}");
}

/// With a terminal (a pty from `script`), the same run draws a bar with
/// rows, rate and time left.
#[test]
fn progress_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `script` is missing"
        );
        eprintln!("skipping: no `script` (util-linux) to give the binary a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = generated_csv(dir.path(), 20);
    let home = tempfile::tempdir().unwrap();
    let inner = format!(
        "{} enrich {} --chunk 500 -o reputation=false > /dev/null",
        env!("CARGO_BIN_EXE_sysmonenrich"),
        file.display()
    );
    let (tty, _) = ok(isolated(Command::new("script"), home.path())
        .args(["-qec", &inner, "/dev/null"])
        .output()
        .unwrap());
    assert!(tty.contains("rows/s"), "{tty:?}");
    assert!(tty.contains("left"), "{tty:?}");
    assert!(tty.contains("sysmonenrich: "), "{tty:?}");
}
