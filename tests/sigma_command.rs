//! Sigma through the command: the binary, driven by the splunkd stand-in
//! (`common/splunkd.rs`), with SigmaHQ's rules of `../shared/sigma` loaded
//! through `[sigma] rules` of a temporary app folder.
//!
//! - SigmaHQ's own regression cases: every case's rule is in `sigma_ids`
//!   of at least one of its rows;
//! - no row carries a rule whose logsource category cannot produce the
//!   row's EventCode (checked against the rule files, read here), and every
//!   row with a match names the rules' authors (DRL 1.1);
//! - `lineage_sigma` names an ancestor's rule on its descendants' rows;
//! - bad rule input costs one WARN per problem, never a row;
//! - without rules, the command writes no Sigma column at all.

mod common;

use common::creations::{Creations, ParentColumns};
use common::datasets::{self, Table, Value};
use common::fake_splunkd::{FakeSplunkd, Mode};
use common::serial::serial;
use common::splunkd::{self, assert_clean, cell, FinalChunk, Options, Outcome};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A temporary `$SPLUNK_HOME` and app folder with a local conf.
struct Env {
    home: tempfile::TempDir,
    app: tempfile::TempDir,
}

impl Env {
    fn new(local_conf: &str) -> Env {
        let home = tempfile::tempdir().expect("home");
        let app = tempfile::tempdir().expect("app");
        std::fs::create_dir_all(app.path().join("local")).expect("local/");
        std::fs::write(app.path().join("local/sysmonenrich.conf"), local_conf).expect("conf");
        Env { home, app }
    }

    fn options(&self, args: &[&str], rows: usize) -> Options {
        let mut o = Options::with_args(args);
        o.rows_per_chunk = rows;
        o.final_chunk = FinalChunk::WithLastRows;
        o.env.push((
            "SPLUNK_HOME".into(),
            self.home.path().to_string_lossy().into_owned(),
        ));
        o.env.push((
            "SYSMONENRICH_APP_DIR".into(),
            self.app.path().to_string_lossy().into_owned(),
        ));
        o
    }
}

/// `[sigma] rules` naming the three rule folders of `../shared/sigma`.
fn shared_rules_conf(sigma: &Path) -> String {
    let dirs: Vec<String> = ["rules", "rules-threat-hunting", "rules-emerging-threats"]
        .iter()
        .map(|d| sigma.join(d).to_string_lossy().into_owned())
        .collect();
    format!("[sigma]\nrules = {}\n", dirs.join(","))
}

fn values(v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::One(s)) if s.is_empty() => Vec::new(),
        Some(Value::One(s)) => vec![s.clone()],
        Some(Value::Many(list)) => list.clone(),
    }
}

fn base(table: &Table, row: usize, field: &str) -> String {
    table
        .get(row, field)
        .map(|v| v.joined().into_owned())
        .unwrap_or_default()
}

/// Sigma's logsource categories → Sysmon EventCodes, as
/// `../shared/sigma/README.md` tabulates them (kept here, apart from the
/// engine's copy, so a slip in either shows).
fn category_codes(category: &str) -> Option<&'static [u32]> {
    Some(match category {
        "process_creation" => &[1],
        "file_change" => &[2],
        "network_connection" => &[3],
        "sysmon_status" => &[4, 16],
        "driver_load" => &[6],
        "image_load" => &[7],
        "create_remote_thread" => &[8],
        "raw_access_thread" => &[9],
        "process_access" => &[10],
        "file_event" => &[11],
        "registry_add" | "registry_delete" => &[12],
        "registry_set" => &[13],
        "registry_event" => &[12, 13, 14],
        "create_stream_hash" => &[15],
        "pipe_created" => &[17, 18],
        "wmi_event" => &[19, 20, 21],
        "dns_query" => &[22],
        "file_delete" => &[23, 26],
        "process_tampering" => &[25],
        "file_executable_detected" => &[29],
        "sysmon_error" => &[255],
        _ => return None,
    })
}

/// Rule id → its logsource category (`None` for `service: sysmon` rules),
/// read from the rule files themselves.
fn rule_categories(sigma: &Path) -> HashMap<String, Option<String>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read rules dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for d in ["rules", "rules-threat-hunting", "rules-emerging-threats"] {
        walk(&sigma.join(d), &mut files);
    }
    let mut map = HashMap::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(&text) else {
            continue;
        };
        let Some(doc) = docs.first() else { continue };
        let Some(id) = doc["id"].as_str() else {
            continue;
        };
        let cat = doc["logsource"]["category"].as_str().map(str::to_string);
        map.insert(id.to_string(), cat);
    }
    map
}

/// Every row's matches are of a category that produces its EventCode, and
/// every row with a match names authors. Returns the rows with a match.
fn check_rows(out: &Outcome, categories: &HashMap<String, Option<String>>) -> usize {
    let mut matched = 0;
    for r in 0..out.merged.len() {
        let ids = values(out.merged.get(r, "sigma_ids"));
        if ids.is_empty() {
            assert!(cell(out, r, "sigma_authors").is_empty(), "row {r}");
            assert!(cell(out, r, "sigma_level").is_empty(), "row {r}");
            continue;
        }
        matched += 1;
        let code: u32 = cell(out, r, "EventCode").trim().parse().expect("EventCode");
        for id in &ids {
            let cat = categories
                .get(id)
                .unwrap_or_else(|| panic!("row {r}: {id} is no rule of ../shared/sigma"));
            if let Some(cat) = cat {
                let codes = category_codes(cat).unwrap_or_else(|| panic!("category {cat}"));
                assert!(
                    codes.contains(&code),
                    "row {r}: rule {id} ({cat}) on EventCode {code}"
                );
            }
        }
        assert!(
            !values(out.merged.get(r, "sigma_authors")).is_empty(),
            "row {r}: matches {ids:?} without sigma_authors"
        );
        assert_eq!(
            values(out.merged.get(r, "sigma_titles")).len(),
            ids.len(),
            "row {r}: one title per id"
        );
        assert!(
            ["informational", "low", "medium", "high", "critical"]
                .contains(&cell(out, r, "sigma_level").as_str()),
            "row {r}: level {}",
            cell(out, r, "sigma_level")
        );
        for t in values(out.merged.get(r, "sigma_tags")) {
            assert!(t.starts_with("attack."), "row {r}: tag {t}");
        }
    }
    matched
}

#[test]
fn sigmahq_regression_cases_match_their_rule() {
    let _g = serial();
    let (Some(sigma), Some(csv)) = (
        datasets::shared_dir().map(|d| d.join("sigma")),
        datasets::shared_file("sigma/regression/sigma_regression_visible.csv"),
    ) else {
        return;
    };
    let table = Arc::new(datasets::load_csv(&csv));
    let expect = std::fs::read_to_string(
        datasets::shared_file("sigma/regression/sigma_regression_visible.expect.jsonl")
            .expect("expect.jsonl"),
    )
    .expect("read expect.jsonl");
    let env = Env::new(&shared_rules_conf(&sigma));
    let out = splunkd::run(
        table.clone(),
        &env.options(&["reputation=false", "backfill=false"], 50),
    );
    assert_clean("regression", &out);
    let mut rows_of: HashMap<String, Vec<usize>> = HashMap::new();
    for r in 0..table.len() {
        rows_of
            .entry(base(&table, r, "sigma_case"))
            .or_default()
            .push(r);
    }
    let (mut cases, mut misses) = (0, Vec::new());
    for line in expect.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("expect line");
        if case["events"].as_u64() == Some(0) {
            continue;
        }
        cases += 1;
        let id = case["rule_id"].as_str().expect("rule_id");
        let rows = rows_of
            .get(&case["case"].to_string())
            .cloned()
            .unwrap_or_default();
        assert!(!rows.is_empty(), "case {} has no rows", case["case"]);
        if !rows.iter().any(|&r| {
            values(out.merged.get(r, "sigma_ids"))
                .iter()
                .any(|v| v == id)
        }) {
            misses.push(format!("case {} {id} {}", case["case"], case["title"]));
        }
    }
    assert!(cases > 100, "only {cases} cases with events");
    assert!(
        misses.is_empty(),
        "{} of {cases} cases missed:\n{}",
        misses.len(),
        misses.join("\n")
    );
    let matched = check_rows(&out, &rule_categories(&sigma));
    assert!(matched >= cases, "{matched} rows matched for {cases} cases");
}

#[test]
fn every_match_fits_its_row_and_ancestors_carry_into_lineage_sigma() {
    let _g = serial();
    let Some(sigma) = datasets::shared_dir().map(|d| d.join("sigma")) else {
        return;
    };
    let Some(table) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    let table = Arc::new(table);
    let env = Env::new(&shared_rules_conf(&sigma));
    let out = splunkd::run(
        table.clone(),
        &env.options(&["reputation=false", "backfill=false"], 1_000),
    );
    assert_clean("evtx_attack_samples", &out);
    let matched = check_rows(&out, &rule_categories(&sigma));
    assert!(matched > 50, "only {matched} rows matched a rule");
    let pairs = check_lineage_sigma(&table, &out, 1_000, |_| true);
    assert!(
        pairs > 5,
        "only {pairs} parent/child pairs with a matching parent"
    );
}

/// For every process creation whose rules matched, each child creation's
/// `lineage_sigma` names `<parent image>: <title>` for each of them (for
/// the children `want_child` selects). Returns the pairs checked.
fn check_lineage_sigma(
    table: &Table,
    out: &Outcome,
    rows_per_chunk: usize,
    want_child: impl Fn(usize) -> bool,
) -> usize {
    let mut creations: HashMap<String, usize> = HashMap::new();
    for r in 0..table.len() {
        if base(table, r, "EventCode") == "1" {
            creations.insert(base(table, r, "ProcessGuid").to_uppercase(), r);
        }
    }
    let mut pairs = 0;
    for child in 0..table.len() {
        if base(table, child, "EventCode") != "1" || !want_child(child) {
            continue;
        }
        let parent_guid = base(table, child, "ParentProcessGuid").to_uppercase();
        let Some(&parent) = creations.get(&parent_guid) else {
            continue;
        };
        // Only where the parent's creation was read by the time the child
        // was written: in the same chunk or an earlier one (without
        // backfill, a parent in a later chunk is not evaluated yet).
        if parent / rows_per_chunk > child / rows_per_chunk {
            continue;
        }
        let titles = values(out.merged.get(parent, "sigma_titles"));
        if titles.is_empty() {
            continue;
        }
        let image = base(table, parent, "Image");
        let got = values(out.merged.get(child, "lineage_sigma"));
        for t in &titles {
            let want = format!("{image}: {t}");
            assert!(
                got.contains(&want),
                "row {child}: lineage_sigma {got:?} lacks {want:?}"
            );
        }
        // Nearest ancestor first: the parent's rules lead.
        assert!(
            got[0].starts_with(&format!("{image}: ")),
            "row {child}: {got:?}"
        );
        pairs += 1;
    }
    pairs
}

/// The creation rows of `table` whose parent's creation matched a rule in
/// `first` (a search over the whole table), and the sub-table of them.
fn children_of_matched(table: &Table, first: &Outcome) -> (Vec<usize>, Table) {
    let mut parents_with_matches: HashSet<String> = HashSet::new();
    for r in 0..table.len() {
        if base(table, r, "EventCode") == "1"
            && !values(first.merged.get(r, "sigma_ids")).is_empty()
        {
            parents_with_matches.insert(base(table, r, "ProcessGuid").to_uppercase());
        }
    }
    let children: Vec<usize> = (0..table.len())
        .filter(|&r| {
            base(table, r, "EventCode") == "1"
                && parents_with_matches
                    .contains(&base(table, r, "ParentProcessGuid").to_uppercase())
        })
        .collect();
    assert!(children.len() > 5, "only {} children", children.len());
    let sub = Table {
        name: "children".into(),
        columns: table.columns.clone(),
        rows: children.iter().map(|&r| table.rows[r].clone()).collect(),
    };
    (children, sub)
}

/// Every child's `lineage_sigma` in `second` (a search over the children
/// alone) equals the first search's; returns how many children's parent
/// was not in the second search (so came from another source).
fn same_lineage_sigma(
    table: &Table,
    first: &Outcome,
    second: &Outcome,
    children: &[usize],
) -> usize {
    let in_second: HashSet<String> = children
        .iter()
        .map(|&r| base(table, r, "ProcessGuid").to_uppercase())
        .collect();
    let mut elsewhere = 0;
    for (k, &r) in children.iter().enumerate() {
        let want = values(first.merged.get(r, "lineage_sigma"));
        let got = values(second.merged.get(k, "lineage_sigma"));
        assert!(
            !want.is_empty(),
            "row {r}: first search had no lineage_sigma"
        );
        assert_eq!(got, want, "row {r}: lineage_sigma of the second search");
        if !in_second.contains(&base(table, r, "ParentProcessGuid").to_uppercase()) {
            elsewhere += 1;
        }
    }
    elsewhere
}

#[test]
fn ancestors_from_the_process_table_keep_their_matches() {
    let _g = serial();
    let Some(sigma) = datasets::shared_dir().map(|d| d.join("sigma")) else {
        return;
    };
    let Some(table) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    let env = Env::new(&shared_rules_conf(&sigma));
    let args = ["reputation=false", "backfill=false"];
    // First search: the whole data set in one chunk (every parent known),
    // which fills the process table.
    let first = splunkd::run(Arc::new(table.clone()), &env.options(&args, 50_000));
    assert_clean("first search", &first);
    // Second search: the children alone; their parents come from the table.
    let (children, sub) = children_of_matched(&table, &first);
    let second = splunkd::run(Arc::new(sub), &env.options(&args, 1_000));
    assert_clean("second search", &second);
    let from_state = same_lineage_sigma(&table, &first, &second, &children);
    assert!(
        from_state > 5,
        "only {from_state} rows had their parent from state"
    );
}

#[test]
fn ancestors_from_backfill_are_matched_and_remembered() {
    let _g = serial();
    let Some(sigma) = datasets::shared_dir().map(|d| d.join("sigma")) else {
        return;
    };
    let Some(table) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    let reference_env = Env::new(&shared_rules_conf(&sigma));
    let first = splunkd::run(
        Arc::new(table.clone()),
        &reference_env.options(&["reputation=false", "backfill=false"], 50_000),
    );
    assert_clean("reference search", &first);
    let (children, sub) = children_of_matched(&table, &first);
    // The children alone, with an empty process table: their parents come
    // from splunkd (the fake serves the data set's creations, with only the
    // fields the backfill search asks for).
    let env = Env::new(&shared_rules_conf(&sigma));
    let fake = FakeSplunkd::start(&table, Mode::Normal);
    let mut opts = env.options(&["reputation=false"], 1_000);
    opts.splunkd_uri = Some(fake.uri());
    let second = splunkd::run(Arc::new(sub.clone()), &opts);
    assert_clean("backfill search", &second);
    let from_splunk = same_lineage_sigma(&table, &first, &second, &children);
    assert!(
        from_splunk > 5,
        "only {from_splunk} rows had their parent from splunkd"
    );
    let asked = fake.requests();
    assert!(!asked.is_empty(), "no backfill search");
    assert!(
        asked[0].search.contains(" OriginalFileName") && asked[0].search.contains(" EventCode"),
        "the backfill search does not ask for the rules' fields: {}",
        asked[0].search
    );
    // A third search, backfill off, same table: the matches of what
    // backfill found were stored with those processes.
    let mut opts = env.options(&["reputation=false", "backfill=false"], 1_000);
    opts.splunkd_uri = None;
    let third = splunkd::run(Arc::new(sub), &opts);
    assert_clean("third search", &third);
    same_lineage_sigma(&table, &first, &third, &children);
}

/// A table of process creations: (guid, parent guid, image, command line).
fn creations(rows: &[(&str, &str, &str, &str)]) -> Table {
    Creations::listed("creations", rows)
        .parent_columns(ParentColumns::BlankImage)
        .table()
}

#[test]
fn a_contradicting_creation_leaves_no_match_in_the_process_table() {
    let _g = serial();
    let rules = tempfile::tempdir().expect("rules");
    std::fs::write(
        rules.path().join("whoami.yml"),
        "title: Whoami\nid: 40000000-0000-0000-0000-000000000001\nstatus: test\nlevel: high\n\
         author: Tester\nlogsource:\n    product: windows\n    category: process_creation\n\
         detection:\n    selection:\n        Image|endswith: '\\whoami.exe'\n    condition: selection\n",
    )
    .expect("rule");
    let env = Env::new(&format!("[sigma]\nrules = {}\n", rules.path().display()));
    let args = ["reputation=false", "backfill=false"];
    const P: &str = "{11111111-0000-0000-0000-000000000001}";
    const C: &str = "{11111111-0000-0000-0000-000000000002}";
    const ROOT: &str = "{11111111-0000-0000-0000-000000000000}";
    // 1: the real creation of P (no match) enters the table.
    let real = creations(&[(P, ROOT, "C:\\Windows\\System32\\notepad.exe", "notepad")]);
    assert_clean(
        "real",
        &splunkd::run(Arc::new(real), &env.options(&args, 100)),
    );
    // 2: a forged creation of P that matches the rule: this search sees
    // its match, but the table keeps the real creation and no match.
    let forged = creations(&[(P, ROOT, "C:\\Windows\\System32\\whoami.exe", "whoami")]);
    let out = splunkd::run(Arc::new(forged), &env.options(&args, 100));
    assert_clean("forged", &out);
    assert_eq!(cell(&out, 0, "sigma_titles"), "Whoami");
    // 3: a child of P, P from the table: nothing names the forged match.
    let child = creations(&[(C, P, "C:\\Windows\\System32\\cmd.exe", "cmd")]);
    let out = splunkd::run(Arc::new(child.clone()), &env.options(&args, 100));
    assert_clean("child", &out);
    assert_eq!(cell(&out, 0, "lineage_sigma"), "");
    assert!(
        cell(&out, 0, "lineage").contains("notepad.exe"),
        "{}",
        cell(&out, 0, "lineage")
    );

    // The same forged creation as the first one the table sees is stored
    // with its match (the table has nothing to contradict), so the check
    // above is the trust rule, not a match that is never stored.
    let env = Env::new(&format!("[sigma]\nrules = {}\n", rules.path().display()));
    let forged = creations(&[(P, ROOT, "C:\\Windows\\System32\\whoami.exe", "whoami")]);
    assert_clean(
        "first",
        &splunkd::run(Arc::new(forged), &env.options(&args, 100)),
    );
    let out = splunkd::run(Arc::new(child), &env.options(&args, 100));
    assert_clean("child again", &out);
    assert_eq!(
        cell(&out, 0, "lineage_sigma"),
        "C:\\Windows\\System32\\whoami.exe: Whoami"
    );
}

#[test]
fn bad_rules_cost_one_warning_each_and_no_row() {
    let _g = serial();
    let Some(table) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    let rules = tempfile::tempdir().expect("rules");
    let good = "title: Whoami\nid: 20000000-0000-0000-0000-000000000001\nstatus: test\nlevel: high\n\
                author: Tester\ntags:\n    - attack.discovery\n    - attack.t1033\n    - cve.2020-0001\n\
                logsource:\n    product: windows\n    category: process_creation\n\
                detection:\n    selection:\n        Image|endswith: '\\whoami.exe'\n    condition: selection\n";
    std::fs::write(rules.path().join("good.yml"), good).expect("write");
    std::fs::write(
        rules.path().join("broken.yml"),
        "title: x\ndetection: [\n  - : :\n",
    )
    .expect("write");
    let huge = good
        .replace(
            "20000000-0000-0000-0000-000000000001",
            "20000000-0000-0000-0000-000000000002",
        )
        .replace(
            "Image|endswith: '\\whoami.exe'",
            &format!("CommandLine|re: '{}'", "(\\w{50}){50}|".repeat(20) + "end"),
        );
    std::fs::write(rules.path().join("huge_regex.yml"), huge).expect("write");
    let missing = rules.path().join("no-such-dir");
    let env = Env::new(&format!(
        "[sigma]\nrules = {},{}\n",
        rules.path().display(),
        missing.display()
    ));
    let out = splunkd::run(
        Arc::new(table.clone()),
        &env.options(&["reputation=false", "backfill=false"], 1_000),
    );
    assert_clean("bad rules", &out);
    assert_eq!(out.merged.len(), table.len());
    let sigma_warnings: Vec<&String> = out
        .messages
        .iter()
        .filter(|(level, text)| level == "WARN" && text.contains("sigma"))
        .map(|(_, t)| t)
        .collect();
    assert_eq!(sigma_warnings.len(), 3, "{sigma_warnings:?}");
    for name in ["broken.yml", "huge_regex.yml", "no-such-dir"] {
        assert!(
            sigma_warnings.iter().any(|w| w.contains(name)),
            "no warning names {name}: {sigma_warnings:?}"
        );
    }
    // The good rule still runs, with its metadata.
    let mut hits = 0;
    for r in 0..out.merged.len() {
        let image = base(&table, r, "Image").to_ascii_lowercase();
        let is_whoami = base(&table, r, "EventCode") == "1" && image.ends_with("\\whoami.exe");
        let ids = values(out.merged.get(r, "sigma_ids"));
        assert_eq!(is_whoami, !ids.is_empty(), "row {r}: {image} {ids:?}");
        if is_whoami {
            hits += 1;
            assert_eq!(cell(&out, r, "sigma_titles"), "Whoami");
            assert_eq!(cell(&out, r, "sigma_level"), "high");
            assert_eq!(cell(&out, r, "sigma_authors"), "Tester");
            assert_eq!(
                values(out.merged.get(r, "sigma_tags")),
                vec!["attack.discovery", "attack.t1033"]
            );
        }
    }
    assert!(hits > 0, "no whoami.exe creation in the data set");
}

#[test]
fn ten_thousand_rules_through_the_command() {
    let _g = serial();
    let Some(table) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    // The data set's creation images, by basename (lower-cased): the first
    // 40 get a rule each; the other 9,960 rules name images no row has.
    let mut images: Vec<String> = (0..table.len())
        .filter(|&r| base(&table, r, "EventCode") == "1")
        .filter_map(|r| {
            let image = base(&table, r, "Image");
            let name = image.rsplit('\\').next()?.to_ascii_lowercase();
            // Plain names only: no YAML quote, no Sigma wildcard.
            let plain = name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"'*?\\".contains(&b));
            (!name.is_empty() && plain).then_some(name)
        })
        .collect();
    images.sort();
    images.dedup();
    images.truncate(40);
    assert!(images.len() >= 10, "only {} creation images", images.len());
    let rules = tempfile::tempdir().expect("rules");
    for i in 0..10_000usize {
        let image = images
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("generated-{i}.exe"));
        let sub = rules.path().join(format!("d{}", i % 20));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(
            sub.join(format!("r{i}.yml")),
            format!(
                "title: Generated {i}\nid: 30000000-0000-0000-0000-{i:012}\nstatus: test\n\
                 level: low\nauthor: Generator\nlogsource:\n    product: windows\n    \
                 category: process_creation\ndetection:\n    selection:\n        \
                 Image|endswith: '\\{image}'\n    condition: selection\n"
            ),
        )
        .expect("write");
    }
    let env = Env::new(&format!("[sigma]\nrules = {}\n", rules.path().display()));
    let out = splunkd::run(
        Arc::new(table.clone()),
        &env.options(&["reputation=false", "backfill=false"], 1_000),
    );
    assert_clean("10,000 rules", &out);
    assert_eq!(out.merged.len(), table.len());
    let warnings: Vec<&(String, String)> = out
        .messages
        .iter()
        .filter(|(level, t)| level != "INFO" && t.contains("sigma"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut hits = 0;
    for r in 0..table.len() {
        let image = base(&table, r, "Image");
        let name = image.rsplit('\\').next().unwrap_or("").to_ascii_lowercase();
        let want: Vec<String> = match images.iter().position(|i| *i == name) {
            Some(i) if base(&table, r, "EventCode") == "1" => {
                vec![format!("30000000-0000-0000-0000-{i:012}")]
            }
            _ => Vec::new(),
        };
        assert_eq!(
            values(out.merged.get(r, "sigma_ids")),
            want,
            "row {r}: {image}"
        );
        hits += usize::from(!want.is_empty());
    }
    assert!(hits >= 10, "only {hits} rows matched");
}

#[test]
fn without_rules_there_are_no_sigma_columns() {
    let _g = serial();
    let table = Arc::new(datasets::generated());
    // The shipped default (`local/sigma`, absent here): no rules, no warning.
    let env = Env::new("[defaults]\nsigma = true\n");
    let out = splunkd::run(
        table,
        &env.options(&["reputation=false", "backfill=false"], 500),
    );
    assert_clean("no rules", &out);
    for (cols, _) in &out.reply_headers {
        assert!(
            !cols.iter().any(|c| c.contains("sigma")),
            "sigma column without rules: {cols:?}"
        );
    }
    assert!(
        !out.messages.iter().any(|(_, t)| t.contains("sigma")),
        "{:?}",
        out.messages
    );
}

#[test]
fn sigma_false_and_a_bad_level_option() {
    let _g = serial();
    let Some(sigma) = datasets::shared_dir().map(|d| d.join("sigma")) else {
        return;
    };
    let table = Arc::new(datasets::generated());
    let env = Env::new(&shared_rules_conf(&sigma));
    let out = splunkd::run(
        table.clone(),
        &env.options(&["reputation=false", "backfill=false", "sigma=false"], 500),
    );
    assert_clean("sigma=false", &out);
    assert!(out
        .reply_headers
        .iter()
        .all(|(cols, _)| !cols.iter().any(|c| c.contains("sigma"))));
    let out = splunkd::run(
        table,
        &env.options(&["reputation=false", "sigma_min_level=severe"], 500),
    );
    let errors = out.error_texts().join("\n");
    assert!(
        errors.contains("sigma_min_level=severe") && errors.contains("critical"),
        "{errors}"
    );
}

/// `[sigma] threads = 2` evaluates a chunk's rows on two threads ahead of
/// pass 1: every cell of every row must be what one thread writes, with
/// chunks of an odd size (rows striped unevenly over the threads) and
/// whole (every process's creations in one chunk).
#[test]
fn two_threads_write_what_one_writes() {
    let _g = serial();
    let Some(sigma) = datasets::shared_dir().map(|d| d.join("sigma")) else {
        return;
    };
    let Some(table) = datasets::sysmon_dataset("evtx_attack_samples.csv") else {
        return;
    };
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: one core, so `threads = 2` runs one thread");
        return;
    }
    let table = Arc::new(table);
    let args = ["reputation=false", "backfill=false"];
    for rows in [97, 5_000] {
        let one = Env::new(&format!("{}threads = 1\n", shared_rules_conf(&sigma)));
        let two = Env::new(&format!("{}threads = 2\n", shared_rules_conf(&sigma)));
        let a = splunkd::run(table.clone(), &one.options(&args, rows));
        let b = splunkd::run(table.clone(), &two.options(&args, rows));
        assert_clean("evtx_attack_samples, 1 thread", &a);
        assert_clean("evtx_attack_samples, 2 threads", &b);
        assert_eq!(a.merged.columns(), b.merged.columns());
        assert_eq!(a.merged.len(), b.merged.len());
        let mut matched = 0;
        for row in 0..a.merged.len() {
            for col in a.merged.columns() {
                assert_eq!(
                    a.merged.get(row, col),
                    b.merged.get(row, col),
                    "row {row}, column {col}, {rows} rows per chunk"
                );
            }
            matched += usize::from(!values(a.merged.get(row, "sigma_ids")).is_empty());
        }
        assert!(matched > 50, "only {matched} rows matched a rule");
    }
}
