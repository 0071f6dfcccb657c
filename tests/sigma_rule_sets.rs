//! Sigma matches belong to a rule set (issue 20): through the binary,
//! driven by the splunkd stand-in, with small rules written here and the
//! process table of a temporary `$SPLUNK_HOME` shared by the searches of
//! one test.
//!
//! - a creation row's `sigma_ids` are its own fields' matches under this
//!   search's rules, whatever an earlier search with other rules stored
//!   for the process, and whatever an earlier row of the same GUID said;
//! - an ancestor's stored match counts in `lineage_sigma` only for a rule
//!   this search loaded in the version that matched.
//!
//! Every expectation is also the answer of a search on a fresh state.

mod common;

use common::creations::Creations;
use common::datasets::{Table, Value};
use common::serial::serial;
use common::splunkd::{self, assert_clean, cell, FinalChunk, Options, Outcome};
use std::path::Path;
use std::sync::Arc;

const ROOT: &str = "{22222222-0000-0000-0000-000000000000}";
const P: &str = "{22222222-0000-0000-0000-000000000001}";
const C: &str = "{22222222-0000-0000-0000-000000000002}";
const WHOAMI: &str = "C:\\Windows\\System32\\whoami.exe";
const NOTEPAD: &str = "C:\\Windows\\System32\\notepad.exe";
const CMD: &str = "C:\\Windows\\System32\\cmd.exe";

const ID_A: &str = "50000000-0000-0000-0000-00000000000a";
const ID_B: &str = "50000000-0000-0000-0000-00000000000b";

/// A process-creation rule.
fn rule(title: &str, id: &str, selection: &str) -> String {
    format!(
        "title: {title}\nid: {id}\nstatus: test\nlevel: high\nauthor: Tester\n\
         logsource:\n    product: windows\n    category: process_creation\n\
         detection:\n    selection:\n        {selection}\n    condition: selection\n"
    )
}

/// Rule A: the image.
fn rule_a() -> String {
    rule("Whoami", ID_A, "Image|endswith: '\\whoami.exe'")
}

/// Rule B, first version: `/priv` on the command line.
fn rule_b1() -> String {
    rule("Whoami Privileges", ID_B, "CommandLine|contains: '/priv'")
}

/// Rule B, second version (same id): `/all` instead.
fn rule_b2() -> String {
    rule("Whoami All", ID_B, "CommandLine|contains: '/all'")
}

/// A folder of rule files.
fn rules(files: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("rules");
    for (i, text) in files.iter().enumerate() {
        std::fs::write(dir.path().join(format!("r{i}.yml")), text).expect("rule");
    }
    dir
}

/// A temporary `$SPLUNK_HOME` (and so process table) and app folder.
struct Env {
    home: tempfile::TempDir,
    app: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let home = tempfile::tempdir().expect("home");
        let app = tempfile::tempdir().expect("app");
        std::fs::create_dir_all(app.path().join("local")).expect("local/");
        Env { home, app }
    }

    /// One search over `table` with the rules of `dir`, `rows` per chunk.
    fn search(&self, dir: &Path, table: &Table, rows: usize) -> Outcome {
        std::fs::write(
            self.app.path().join("local/sysmonenrich.conf"),
            format!("[sigma]\nrules = {}\n", dir.display()),
        )
        .expect("conf");
        let mut o = Options::with_args(&["reputation=false", "backfill=false"]);
        o.rows_per_chunk = rows;
        o.final_chunk = FinalChunk::WithLastRows;
        for (k, v) in [
            ("SPLUNK_HOME", &self.home),
            ("SYSMONENRICH_APP_DIR", &self.app),
        ] {
            o.env
                .push((k.into(), v.path().to_string_lossy().into_owned()));
        }
        let out = splunkd::run(Arc::new(table.clone()), &o);
        assert_clean(&table.name, &out);
        assert_eq!(out.merged.len(), table.len());
        out
    }
}

/// Process creations: (guid, parent guid, image, command line).
fn creations(name: &str, rows: &[(&str, &str, &str, &str)]) -> Table {
    Creations::listed(name, rows).table()
}

fn ids(out: &Outcome, row: usize) -> Vec<String> {
    list(out, row, "sigma_ids")
}

/// A cell's values.
fn list(out: &Outcome, row: usize, field: &str) -> Vec<String> {
    match out.merged.get(row, field) {
        None => Vec::new(),
        Some(Value::One(s)) if s.is_empty() => Vec::new(),
        Some(Value::One(s)) => vec![s.clone()],
        Some(Value::Many(list)) => list.clone(),
    }
}

fn all_ids(out: &Outcome) -> Vec<Vec<String>> {
    (0..out.merged.len()).map(|r| ids(out, r)).collect()
}

#[test]
fn a_creation_row_gets_the_rules_of_its_own_search_after_the_set_grew() {
    let _g = serial();
    let set1 = rules(&[rule_a()]);
    let set2 = rules(&[rule_a(), rule_b1()]);
    let parent = creations("parent", &[(P, ROOT, WHOAMI, "whoami /priv")]);
    // The child's row first, one row per chunk: the parent is an ancestor
    // from the table (with search 1's matches) before its own row comes.
    let both = creations(
        "child first",
        &[(C, P, CMD, "cmd /c x"), (P, ROOT, WHOAMI, "whoami /priv")],
    );

    let env = Env::new();
    let first = env.search(set1.path(), &parent, 1);
    assert_eq!(ids(&first, 0), [ID_A]);
    let second = env.search(set2.path(), &both, 1);
    assert_eq!(ids(&second, 1), [ID_A, ID_B], "the parent's own row");
    assert_eq!(
        list(&second, 1, "sigma_titles"),
        ["Whoami", "Whoami Privileges"]
    );

    let fresh = Env::new().search(set2.path(), &both, 1);
    assert_eq!(all_ids(&second), all_ids(&fresh));
}

#[test]
fn an_ancestors_stored_match_counts_only_for_the_rule_version_that_matched() {
    let _g = serial();
    let set1 = rules(&[rule_a(), rule_b1()]);
    let set2 = rules(&[rule_a(), rule_b2()]);
    let only_a = rules(&[rule_a()]);
    let parent = creations("parent", &[(P, ROOT, WHOAMI, "whoami /priv")]);
    let child = creations("child", &[(C, P, CMD, "cmd /c x")]);
    let env = Env::new();
    assert_eq!(
        ids(&env.search(set1.path(), &parent, 1), 0),
        [ID_A, ID_B],
        "both versions-1 rules match the parent"
    );

    // B's second version is another rule: its id is in this set, but the
    // stored match was of the first version, which this search lacks.
    let out = env.search(set2.path(), &child, 1);
    let want = format!("{WHOAMI}: Whoami");
    assert_eq!(cell(&out, 0, "lineage_sigma"), want);
    assert!(cell(&out, 0, "lineage").contains("whoami.exe"));
    // What the child would show had the parent been stored under this
    // very set.
    let reference = Env::new();
    reference.search(set2.path(), &parent, 1);
    let fresh = reference.search(set2.path(), &child, 1);
    assert_eq!(
        cell(&out, 0, "lineage_sigma"),
        cell(&fresh, 0, "lineage_sigma")
    );

    // A set without B at all, and the first set again: the stored
    // versions-1 match counts once its own version is loaded.
    let out = env.search(only_a.path(), &child, 1);
    assert_eq!(cell(&out, 0, "lineage_sigma"), want);
    let out = env.search(set1.path(), &child, 1);
    assert_eq!(
        list(&out, 0, "lineage_sigma"),
        [want, format!("{WHOAMI}: Whoami Privileges")]
    );
}

#[test]
fn a_second_creation_row_of_a_guid_is_evaluated_on_its_own_fields() {
    let _g = serial();
    let set = rules(&[rule_a(), rule_b1()]);
    let plain = (P, ROOT, NOTEPAD, "notepad");
    let matching = (P, ROOT, WHOAMI, "whoami /priv");
    for rows_per_chunk in [1, 100] {
        for rows in [[plain, matching], [matching, plain]] {
            let table = creations("same GUID twice", &rows);
            let out = Env::new().search(set.path(), &table, rows_per_chunk);
            for (r, row) in rows.iter().enumerate() {
                let fresh = Env::new().search(set.path(), &creations("alone", &[*row]), 1);
                assert_eq!(
                    ids(&out, r),
                    ids(&fresh, 0),
                    "{} at row {r}, {rows_per_chunk} rows per chunk",
                    row.2
                );
                let want: &[&str] = if row.2 == WHOAMI { &[ID_A, ID_B] } else { &[] };
                assert_eq!(ids(&out, r), want, "{} at row {r}", row.2);
            }
        }
    }

    // The table keeps the first creation of the chunk, and exactly that
    // creation's matches: a child names its parent's matches only when
    // the stored parent is the one that matched.
    let child = creations("child", &[(C, P, CMD, "cmd")]);
    let env = Env::new();
    env.search(
        set.path(),
        &creations("plain first", &[plain, matching]),
        100,
    );
    let out = env.search(set.path(), &child, 1);
    assert!(cell(&out, 0, "lineage").contains("notepad.exe"));
    assert_eq!(cell(&out, 0, "lineage_sigma"), "");
    let env = Env::new();
    env.search(
        set.path(),
        &creations("matching first", &[matching, plain]),
        100,
    );
    let out = env.search(set.path(), &child, 1);
    assert!(cell(&out, 0, "lineage").contains("whoami.exe"));
    assert_eq!(
        list(&out, 0, "lineage_sigma"),
        [
            format!("{WHOAMI}: Whoami"),
            format!("{WHOAMI}: Whoami Privileges")
        ]
    );
}

#[test]
fn a_contradicting_creation_row_does_not_rename_the_tables_matches_on_descendants() {
    let _g = serial();
    let notepad = rule("Notepad", ID_B, "Image|endswith: '\\notepad.exe'");
    let set = rules(&[rule_a(), notepad]);
    let env = Env::new();
    env.search(
        set.path(),
        &creations("stored", &[(P, ROOT, NOTEPAD, "notepad")]),
        1,
    );
    // One row per chunk: C's row brings P from the table (and its stored
    // match), then a creation row of P that contradicts it, then D.
    const D: &str = "{22222222-0000-0000-0000-000000000003}";
    let table = creations(
        "contradiction",
        &[
            (C, P, CMD, "cmd"),
            (P, ROOT, WHOAMI, "whoami"),
            (D, P, CMD, "cmd /c y"),
        ],
    );
    let out = env.search(set.path(), &table, 1);
    // The row is evaluated on its own fields ...
    assert_eq!(ids(&out, 1), [ID_A]);
    // ... and the descendants show the table's creation, in lineage and
    // in lineage_sigma alike.
    for r in [0, 2] {
        assert!(cell(&out, r, "lineage").contains("notepad.exe"), "row {r}");
        assert_eq!(
            cell(&out, r, "lineage_sigma"),
            format!("{NOTEPAD}: Notepad"),
            "row {r}"
        );
    }
}
