//! `sysmonenrich sigma check` and `sigma install`, run as an admin runs
//! them: the built binary on SigmaHQ's rules in `../shared/sigma` (read in
//! place; zips are made in a temporary folder, never committed) and on
//! bad input.

mod common;

use common::datasets::sigma_dir;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use sysmonenrich::sigma::{Filter, RuleSet};

fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysmonenrich"));
    c.env_remove("SPLUNK_HOME")
        .env_remove("SYSMONENRICH_APP_DIR");
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run the binary");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A fresh app folder (`default/` is what marks one).
fn app() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(d.path().join("default")).expect("default/");
    d
}

/// The first `n` rule files under a shared rules folder, relative to
/// `../shared/sigma`.
fn some_rules(sigma: &Path, sub: &str, n: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sigma.join(sub))
        .expect("rules folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files.truncate(n);
    files
        .into_iter()
        .map(|p| p.strip_prefix(sigma).expect("under sigma").to_path_buf())
        .collect()
}

/// A zip as SigmaHQ publishes releases: the given files of `sigma` under
/// their relative paths, plus extra entries (name, bytes).
fn make_zip(path: &Path, sigma: &Path, files: &[PathBuf], extra: &[(&str, &[u8])]) {
    let f = std::fs::File::create(path).expect("zip file");
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for rel in files {
        z.start_file(rel.to_string_lossy(), opts).expect("entry");
        z.write_all(&std::fs::read(sigma.join(rel)).expect("rule"))
            .expect("write");
    }
    for (name, bytes) in extra {
        z.start_file(*name, opts).expect("entry");
        z.write_all(bytes).expect("write");
    }
    z.finish().expect("finish zip");
}

/// Every file under a folder, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The set an app's `local/sigma` points at, after checking that `sets/`
/// holds nothing else (no staging folder, no previous set).
fn current_set(installed: &Path) -> PathBuf {
    let name = std::fs::read_to_string(installed.join("current")).expect("pointer");
    let name = name.trim();
    let sets: Vec<_> = std::fs::read_dir(installed.join("sets"))
        .expect("sets/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sets, [name], "sets/ holds more than the current set");
    installed.join("sets").join(name)
}

#[test]
fn check_reports_the_shared_rule_set_as_the_engine_loads_it() {
    let Some(sigma) = sigma_dir() else { return };
    let dirs: Vec<PathBuf> = ["rules", "rules-threat-hunting", "rules-emerging-threats"]
        .iter()
        .map(|d| sigma.join(d))
        .collect();
    let report = RuleSet::load(&dirs, &Filter::default());
    let (ok, out, err) = run(cmd().arg("sigma").arg("check").args(&dirs));
    assert!(ok, "check failed: {err}");
    let headline = format!(
        "{} rules load, {} skipped, {} problems",
        report.rules.len(),
        report.skipped.len(),
        report.problems.len()
    );
    assert!(out.contains(&headline), "no `{headline}` in:\n{out}");
    assert!(report.rules.len() * 100 >= 2238 * 99, "{headline}");
    for g in report.skipped_by_reason() {
        assert!(out.contains(&g.reason), "reason `{}` not printed", g.reason);
    }
    // Per level and per category, the counts add up to the rules loaded.
    let section = |name: &str| -> usize {
        out.split(name)
            .nth(1)
            .expect("section")
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .expect("count")
            })
            .sum()
    };
    assert_eq!(section("by level:"), report.rules.len());
    assert_eq!(section("by category:"), report.rules.len());
    assert!(out.contains("process_creation"));
}

#[test]
fn check_explains_a_missing_dir_and_fails_when_nothing_loads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("no-such-rules");
    let (ok, out, err) = run(cmd().args(["sigma", "check"]).arg(&missing));
    assert!(!ok, "nothing loaded, yet success");
    assert!(out.contains("does not exist"), "{out}");
    assert!(out.contains("no-such-rules"), "{out}");
    assert!(err.contains("no rule loaded"), "{err}");

    // A folder whose only rule is broken: skipped with its reason, exit 1.
    std::fs::write(tmp.path().join("bad.yml"), "title: x\ndetection: [\n").expect("write");
    let (ok, out, _) = run(cmd().args(["sigma", "check"]).arg(tmp.path()));
    assert!(!ok);
    assert!(out.contains("0 rules load, 1 skipped"), "{out}");
    assert!(out.contains("bad.yml"), "example path missing:\n{out}");
}

#[test]
fn check_without_dir_uses_the_apps_configured_rules_else_local_sigma() {
    let Some(sigma) = sigma_dir() else { return };
    let app = app();
    // No local/sigma yet: says where it looked, fails.
    let (ok, out, _) = run(cmd()
        .env("SYSMONENRICH_APP_DIR", app.path())
        .args(["sigma", "check"]));
    assert!(!ok);
    assert!(out.contains("local/sigma"), "{out}");
    // `[sigma] rules` in local/sysmonenrich.conf wins.
    let rules = sigma.join("rules/windows/process_creation");
    std::fs::create_dir_all(app.path().join("local")).expect("local/");
    std::fs::write(
        app.path().join("local/sysmonenrich.conf"),
        format!("[sigma]\nrules = {}\n", rules.display()),
    )
    .expect("conf");
    let (ok, out, err) = run(cmd()
        .env("SYSMONENRICH_APP_DIR", app.path())
        .args(["sigma", "check"]));
    assert!(ok, "{err}");
    let expected = RuleSet::load(&[rules], &Filter::default()).rules.len();
    assert!(expected > 0);
    assert!(out.contains(&format!("{expected} rules load")), "{out}");
}

#[test]
fn install_from_a_zip_copies_rules_and_licence_and_replaces_the_previous_set() {
    let Some(sigma) = sigma_dir() else { return };
    let app = app();
    let tmp = tempfile::tempdir().expect("tmp");
    let first = some_rules(&sigma, "rules/windows/process_creation", 12);
    let zip = tmp.path().join("sigma_core.zip");
    let licence = std::fs::read(sigma.join("LICENSE.Detection.Rules.md")).expect("licence");
    make_zip(
        &zip,
        &sigma,
        &first,
        &[
            ("LICENSE.Detection.Rules.md", &licence),
            ("README.md", b"not a rule"),
            ("tools/convert.py", b"print(1)"),
            ("../escape.yml", b"title: outside\n"),
        ],
    );
    let (ok, out, err) = run(cmd()
        .args(["sigma", "install"])
        .arg(&zip)
        .arg("--app-dir")
        .arg(app.path()));
    assert!(ok, "install failed: {err}\n{out}");
    let installed = app.path().join("local/sigma");
    let mut want = first.clone();
    want.push(PathBuf::from("LICENSE.Detection.Rules.md"));
    want.sort();
    assert_eq!(
        tree(&current_set(&installed)),
        want,
        "only rules and the licence, paths kept"
    );
    assert!(!app.path().join("local/escape.yml").exists());
    assert!(!tmp.path().join("escape.yml").exists());
    let loaded = RuleSet::load(std::slice::from_ref(&installed), &Filter::default());
    assert_eq!(loaded.rules.len(), 12);
    assert!(out.contains("installed 13 files"), "{out}");
    assert!(out.contains("12 rules load"), "{out}");
    assert!(out.contains("licence: LICENSE.Detection.Rules.md"), "{out}");

    // A second release (a directory this time) replaces the first whole.
    let src = tmp.path().join("release");
    let second = some_rules(&sigma, "rules/windows/image_load", 5);
    for rel in &second {
        let to = src.join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(sigma.join(rel), &to).expect("copy");
    }
    std::fs::write(src.join("notes.txt"), "not copied").expect("write");
    let (ok, out, err) = run(cmd()
        .env("SYSMONENRICH_APP_DIR", app.path())
        .args(["sigma", "install"])
        .arg(&src));
    assert!(ok, "{err}\n{out}");
    assert_eq!(tree(&current_set(&installed)), second);
    assert!(out.contains("licence: none found"), "{out}");
    // No staging or old folder is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(app.path().join("local"))
        .expect("local/")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "sigma")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn install_refuses_bad_releases_and_keeps_the_installed_set() {
    let Some(sigma) = sigma_dir() else { return };
    let app = app();
    let tmp = tempfile::tempdir().expect("tmp");
    let good = some_rules(&sigma, "rules/windows/dns_query", 3);
    let zip = tmp.path().join("good.zip");
    make_zip(&zip, &sigma, &good, &[]);
    let install = |what: &Path| {
        run(cmd()
            .args(["sigma", "install"])
            .arg(what)
            .arg("--app-dir")
            .arg(app.path()))
    };
    let (ok, _, err) = install(&zip);
    assert!(ok, "{err}");
    let installed = app.path().join("local/sigma");
    let before = tree(&current_set(&installed));

    // A zip without rules.
    let empty = tmp.path().join("docs.zip");
    make_zip(&empty, &sigma, &[], &[("README.md", b"docs only")]);
    let (ok, _, err) = install(&empty);
    assert!(!ok);
    assert!(err.contains("no rule loads"), "{err}");
    assert!(err.contains("left unchanged"), "{err}");

    // A zip whose rules are all broken.
    let broken_rules = tmp.path().join("broken_rules.zip");
    make_zip(
        &broken_rules,
        &sigma,
        &[],
        &[
            ("rules/a.yml", b"title: a\ndetection: [\n"),
            ("rules/b.yml", b"\xff\xfe"),
        ],
    );
    let (ok, _, err) = install(&broken_rules);
    assert!(!ok);
    assert!(
        err.contains("no rule loads (2 rule files, 2 skipped)"),
        "{err}"
    );

    // Not a zip at all, and a truncated one.
    let garbage = tmp.path().join("garbage.zip");
    std::fs::write(&garbage, b"PK\x03\x04 this is not really a zip").expect("write");
    let (ok, _, err) = install(&garbage);
    assert!(!ok);
    assert!(err.contains("not a readable zip archive"), "{err}");
    let bytes = std::fs::read(&zip).expect("zip");
    let truncated = tmp.path().join("truncated.zip");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let (ok, _, err) = install(&truncated);
    assert!(!ok);
    assert!(err.contains("truncated.zip"), "{err}");

    // A source that does not exist.
    let (ok, _, err) = install(&tmp.path().join("nowhere"));
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");

    assert_eq!(
        tree(&current_set(&installed)),
        before,
        "a refused release changed the set"
    );
    let names: Vec<_> = std::fs::read_dir(app.path().join("local"))
        .expect("local/")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["sigma"], "staging folders left behind");
}

/// The first creation row of the shared data set whose process matches
/// shared rules, with the rules' (id, `title (level)`) as the engine says.
fn a_matching_creation(csv: &Path, rules: &RuleSet) -> (String, Vec<(String, String)>) {
    let mut reader = csv::Reader::from_path(csv).expect("data set");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    for rec in reader.records() {
        let rec = rec.expect("row");
        let row: std::collections::HashMap<String, String> = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_owned))
            .collect();
        if row.get("EventCode").map(String::as_str) != Some("1") {
            continue;
        }
        let mut ids = Vec::new();
        rules.matches(&row, &mut ids);
        if ids.len() >= 2 {
            let named = ids
                .iter()
                .map(|&id| {
                    let r = rules.rule(id);
                    (r.id.clone(), format!("{} ({})", r.title, r.level.as_str()))
                })
                .collect();
            return (row["ProcessGuid"].clone(), named);
        }
    }
    panic!("no creation in {} matches two rules", csv.display());
}

#[test]
fn tree_and_enrich_show_the_sigma_matches() {
    let Some(sigma) = sigma_dir() else { return };
    let csv = sigma.join("../data/sysmon/evtx_attack_samples.csv");
    let rules_dir = sigma.join("rules");
    let rules = RuleSet::load(std::slice::from_ref(&rules_dir), &Filter::default()).rules;
    let (guid, want) = a_matching_creation(&csv, &rules);

    let (ok, out, err) = run(cmd()
        .arg("tree")
        .arg(&guid)
        .arg(&csv)
        .arg("--sigma")
        .arg(&rules_dir));
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("▶"))
        .unwrap_or_else(|| panic!("no ▶ line: {out}"));
    let shown = line
        .split("  sigma: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no Sigma matches on the process: {line}"));
    let want_titles: Vec<&str> = want.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(shown.split("; ").collect::<Vec<_>>(), want_titles);
    // Without rules (no --sigma, no app): no Sigma on any line.
    let (ok, plain, err) = run(cmd().arg("tree").arg(&guid).arg(&csv));
    assert!(ok, "{err}");
    assert!(!plain.contains("sigma:"), "{plain}");

    let (ok, out, err) = run(cmd()
        .env("HOME", tempfile::tempdir().expect("home").path())
        .args(["enrich", "-f", "json", "-o", "reputation=false"])
        .arg(&csv)
        .arg("--sigma")
        .arg(&rules_dir));
    assert!(ok, "{err}");
    let row: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .find(|r| r["ProcessGuid"] == guid.as_str() && r["EventCode"] == "1")
        .expect("the creation in the output");
    let ids: Vec<&str> = row["sigma_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let want_ids: Vec<&str> = want.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, want_ids, "{row}");
}
