//! The CLI's failure paths that must stay bounded (issue 21): output into
//! a pipe whose reader is gone, and process trees far deeper than any
//! real one. The built binary runs as a user runs it, with a clean home;
//! splunkd is a stand-in on 127.0.0.1 port 0.

mod common;

use common::services::{FakeServer, Request, Response};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "TOKEN-closed-pipe";

/// The binary under test: the one cargo built for this test, or
/// `SYSMONENRICH_TEST_BIN` (to time a release build, or to check that a
/// test fails on an older binary).
fn bin() -> String {
    std::env::var("SYSMONENRICH_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sysmonenrich").to_string())
}

fn cmd(home: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("HOME", home)
        .env_remove("SPLUNK_HOME")
        .env_remove("SYSMONENRICH_APP_DIR")
        .env_remove("SYSMONENRICH_VIRUSTOTAL_KEY")
        .env_remove("SYSMONENRICH_MALWAREBAZAAR_KEY")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    c
}

/// Runs with stdout a pipe whose read end is closed as soon as the child
/// exists (before it can have written: it still has to start up), so
/// the child's first write meets a closed pipe.
fn run_into_closed_pipe(home: &Path, args: &[&str]) -> Output {
    let mut child = cmd(home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sysmonenrich");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

fn assert_quiet_exit(what: &str, o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked")
            && !err.contains("Broken pipe")
            && !err.contains("RUST_BACKTRACE"),
        "{what}: stderr mentions a panic or the pipe:\n{err}"
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}: exit status; stderr:\n{err}"
    );
}

/// A home whose `.splunkrc` points at `server` with a token.
fn home_with(server: &FakeServer) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let port = server.url().rsplit(':').next().unwrap().to_string();
    let rc = home.path().join(".splunkrc");
    std::fs::write(
        &rc,
        format!("scheme=http\nhost=127.0.0.1\nport={port}\ntoken={TOKEN}\nversion=9.2\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    home
}

fn guid(n: u32) -> String {
    format!("{{5EED0000-0000-0000-0000-{n:012}}}")
}

/// Export JSON of `n` process creations (a chain), as splunkd streams it.
fn export_lines(n: u32) -> Vec<String> {
    let mut lines: Vec<String> = (1..=n)
        .rev()
        .map(|i| {
            let result = serde_json::json!({
                "_time": "2024-05-01T10:00:00.000+00:00",
                "host": "wks01",
                "EventCode": "1",
                "ProcessGuid": guid(i),
                "ParentProcessGuid": guid(i - 1),
                "Image": "C:\\Windows\\System32\\cmd.exe",
                "ParentImage": "C:\\Windows\\System32\\cmd.exe",
                "CommandLine": format!("cmd.exe /c step {i}"),
            });
            format!(
                "{}\n",
                serde_json::json!({"preview": false, "result": result})
            )
        })
        .collect();
    lines.push("{\"preview\":false,\"messages\":[{\"type\":\"INFO\",\"text\":\"done\"}]}\n".into());
    lines
}

/// apps/local and search/jobs/export, each large enough to outgrow a pipe
/// buffer.
fn splunkd() -> FakeServer {
    FakeServer::start(|r: &Request| {
        if r.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Response::json(401, r#"{"messages":[{"type":"WARN","text":"no"}]}"#);
        }
        match r.path() {
            "/services/apps/local" => {
                let entries: Vec<String> = (0..3000)
                    .map(|i| {
                        format!(
                            r#"{{"name":"app{i}","content":{{"version":"1.0.{i}","label":"App number {i}","disabled":false}}}}"#
                        )
                    })
                    .collect();
                Response::json(200, format!(r#"{{"entry":[{}]}}"#, entries.join(",")))
            }
            p if p.ends_with("/search/jobs/export") => Response::stream(export_lines(2000)),
            _ => Response::json(404, r#"{"messages":[{"type":"ERROR","text":"no"}]}"#),
        }
    })
}

/// A chain of `depth` process creations, newest (deepest) first as Splunk
/// exports: 1 > 2 > … > depth.
fn write_chain(dir: &Path, depth: u32) -> PathBuf {
    let mut csv = String::from(
        "_time,EventCode,Computer,ProcessGuid,ProcessId,Image,CommandLine,ParentProcessGuid,ParentProcessId,ParentImage\n",
    );
    for i in (1..=depth).rev() {
        csv.push_str(&format!(
            "{},1,WS01,{},{i},C:\\Windows\\System32\\cmd.exe,cmd.exe /c step {i},{},{},C:\\Windows\\System32\\cmd.exe\n",
            1_700_000_000 + i,
            guid(i),
            guid(i - 1),
            i.saturating_sub(1)
        ));
    }
    let path = dir.join(format!("chain{depth}.csv"));
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn every_subcommand_ends_quietly_on_a_closed_pipe() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();

    // state: a real database with a few rows.
    let db = dir.join("state.db");
    sysmonenrich::state::StateStore::open(&db, &Default::default()).unwrap();
    let db_arg = db.to_str().unwrap();
    for args in [
        vec!["state", "--db", db_arg],
        vec!["state", "--db", db_arg, "check"],
        vec!["state", "--db", db_arg, "purge", "cache"],
    ] {
        assert_quiet_exit(&args.join(" "), &run_into_closed_pipe(dir, &args));
    }

    // sigma check: one rule in Sigma's format.
    let rules = dir.join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("whoami.yml"),
        "title: Whoami Execution\nid: 8e1a4b1c-1a2b-4c3d-8e9f-0a1b2c3d4e5f\nstatus: test\nlevel: medium\n\
         logsource:\n  category: process_creation\n  product: windows\n\
         detection:\n  selection:\n    Image|endswith: '\\whoami.exe'\n  condition: selection\n",
    )
    .unwrap();
    let o = run_into_closed_pipe(dir, &["sigma", "check", rules.to_str().unwrap()]);
    assert_quiet_exit("sigma check", &o);

    // tree and enrich: a file big enough to outgrow a pipe buffer.
    let chain = write_chain(dir, 3000);
    let chain_arg = chain.to_str().unwrap();
    let o = run_into_closed_pipe(dir, &["tree", &guid(1), chain_arg]);
    assert_quiet_exit("tree", &o);
    let o = run_into_closed_pipe(
        dir,
        &[
            "enrich",
            chain_arg,
            "-o",
            "reputation=false",
            "-o",
            "backfill=false",
        ],
    );
    assert_quiet_exit("enrich", &o);
    let o = run_into_closed_pipe(dir, &["demo", "-f", "csv"]);
    assert_quiet_exit("demo", &o);

    // apps and search through a splunkd stand-in.
    let server = splunkd();
    let home = home_with(&server);
    for args in [
        vec!["apps"],
        vec!["apps", "-f", "json"],
        vec!["search", "index=sysmon", "-f", "csv"],
        vec!["search", "index=sysmon", "-f", "json"],
        vec![
            "search",
            "index=sysmon",
            "--enrich",
            "-o",
            "reputation=false",
            "-o",
            "backfill=false",
            "-f",
            "csv",
        ],
    ] {
        let o = run_into_closed_pipe(home.path(), &args);
        assert_quiet_exit(&args.join(" "), &o);
    }
}

/// Runs `tree` and returns stdout and the wall time.
fn tree_timed(dir: &Path, target: u32, file: &Path) -> (String, Duration) {
    let started = Instant::now();
    let o = cmd(dir)
        .args(["tree", &guid(target), file.to_str().unwrap()])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        o.status.success(),
        "tree: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (String::from_utf8_lossy(&o.stdout).into_owned(), took)
}

/// Wall-time limits for `tree` (4,000-level chain, 100,000-level chain).
/// The issue's figures hold for a release build (run with
/// `SYSMONENRICH_TEST_BIN=target/release/sysmonenrich`); the debug binary
/// cargo builds for tests is some 5 times slower at this, so it gets
/// margins that still catch the cubic drawing (minutes at 4,000 levels).
fn tree_limits() -> (Duration, Duration) {
    if std::env::var_os("SYSMONENRICH_TEST_BIN").is_some() {
        (Duration::from_secs(1), Duration::from_secs(10))
    } else {
        (Duration::from_secs(10), Duration::from_secs(60))
    }
}

#[test]
fn tree_of_deep_chains_is_fast_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (short, long) = tree_limits();

    let chain = write_chain(dir.path(), 4000);
    let (out, took) = tree_timed(dir.path(), 1, &chain);
    assert!(
        took < short,
        "tree from the root of 4,000 levels took {took:?}"
    );
    assert!(
        out.contains("1 ancestor, 3999 descendants"),
        "{}",
        &out[..200]
    );
    let lines = out.lines().count();
    // Heading, blank, the absent parent, the root, 3,999 below.
    assert_eq!(lines, 4 + 3999, "every level drawn under the cap");
    assert!(out.contains("step 4000\""), "the leaf is drawn");
    let (out, took) = tree_timed(dir.path(), 4000, &chain);
    assert!(
        took < short,
        "tree from the leaf of 4,000 levels took {took:?}"
    );
    assert!(
        out.contains("(older ancestors not shown: the chain goes on above the 1024 nearest)"),
        "{}",
        &out[..400]
    );

    let chain = write_chain(dir.path(), 100_000);
    let (out, took) = tree_timed(dir.path(), 1, &chain);
    assert!(
        took < long,
        "tree from the root of 100,000 levels took {took:?}"
    );
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("… 95001 more descendants not drawn (a tree stops at 5000 lines"),
        "{last}"
    );
    assert!(out.lines().count() <= 5000 + 3, "the cap holds");
    let (out, took) = tree_timed(dir.path(), 100_000, &chain);
    assert!(
        took < long,
        "tree from the leaf of 100,000 levels took {took:?}"
    );
    assert!(out.contains("▶ cmd.exe (pid 100000)"), "{}", &out[..300]);
}
