//! The Sigma engine on SigmaHQ's rule set and regression cases in
//! `../shared/sigma` (read in place: DRL 1.1 content, never copied here).

mod common;

use common::datasets::{self, sigma_dir, Table};
use std::collections::HashMap;
use std::path::PathBuf;
use sysmonenrich::sigma::{Fields, Filter, RuleId, RuleSet};

fn rule_dirs(dir: &std::path::Path) -> Vec<PathBuf> {
    ["rules", "rules-threat-hunting", "rules-emerging-threats"]
        .iter()
        .map(|d| dir.join(d))
        .collect()
}

/// One row of a table as the engine sees it.
struct Row<'a> {
    table: &'a Table,
    index: &'a HashMap<&'a str, usize>,
    row: usize,
}

impl Fields for Row<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match &self.table.rows[self.row][*self.index.get(name)?] {
            datasets::Value::One(s) => Some(s),
            datasets::Value::Many(v) => v.first().map(String::as_str),
        }
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.table.rows[self.row].iter().filter_map(|v| match v {
            datasets::Value::One(s) => Some(s.as_str()),
            datasets::Value::Many(v) => v.first().map(String::as_str),
        })
    }
}

fn column_index(t: &Table) -> HashMap<&str, usize> {
    t.columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect()
}

#[test]
fn loads_at_least_99_percent_and_reports_every_skip_reason() {
    let Some(dir) = sigma_dir() else { return };
    let started = std::time::Instant::now();
    let report = RuleSet::load(&rule_dirs(&dir), &Filter::default());
    let elapsed = started.elapsed();
    let loaded = report.rules.len();
    let total = loaded + report.skipped.len();
    eprintln!(
        "loaded {loaded} of {total} rules in {elapsed:?} (debug build); {} evaluated without a literal",
        report.rules.unindexed_count()
    );
    for g in report.skipped_by_reason() {
        eprintln!(
            "  {:4}  {}  e.g. {}",
            g.count,
            g.reason,
            g.examples[0].display()
        );
    }
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(total, 2238, "the shared set has 2,238 rule files");
    assert!(
        loaded * 100 >= total * 99,
        "only {loaded} of {total} rules load"
    );
}

fn load_shared(dir: &std::path::Path) -> RuleSet {
    let report = RuleSet::load(&rule_dirs(dir), &Filter::default());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    report.rules
}

/// Every rule matched on every row of a table.
fn evaluate(rules: &RuleSet, table: &Table) -> Vec<Vec<RuleId>> {
    let index = column_index(table);
    (0..table.len())
        .map(|row| {
            let mut out = Vec::new();
            rules.matches(
                &Row {
                    table,
                    index: &index,
                    row,
                },
                &mut out,
            );
            out
        })
        .collect()
}

/// A row never carries a rule whose logsource cannot produce its EventCode.
fn assert_scopes(rules: &RuleSet, table: &Table, matches: &[Vec<RuleId>]) {
    let code_col = table.position("EventCode").expect("EventCode column");
    for (row, ids) in matches.iter().enumerate() {
        let code: Option<u32> = table.rows[row][code_col].joined().trim().parse().ok();
        for id in ids {
            let rule = rules.rule(*id);
            if let Some(codes) = rule.event_codes() {
                assert!(
                    code.is_some_and(|c| codes.contains(&c)),
                    "{} row {row}: EventCode {code:?} matched `{}` ({})",
                    table.name,
                    rule.title,
                    rule.path.display()
                );
            }
        }
    }
}

#[test]
fn sigmahq_regression_cases_match_their_rule() {
    let Some(dir) = sigma_dir() else { return };
    let rules = load_shared(&dir);
    let table = datasets::load_csv(&dir.join("regression/sigma_regression_visible.csv"));
    let matches = evaluate(&rules, &table);
    assert_scopes(&rules, &table, &matches);
    let case_col = table.position("sigma_case").expect("sigma_case column");
    let expect =
        std::fs::read_to_string(dir.join("regression/sigma_regression_visible.expect.jsonl"))
            .expect("expect.jsonl");
    let (mut cases, mut missed) = (0, Vec::new());
    for line in expect.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if case["events"].as_u64() == Some(0) {
            continue;
        }
        cases += 1;
        let number = case["case"].to_string();
        let rule_id = case["rule_id"].as_str().expect("rule_id");
        let rows: Vec<usize> = (0..table.len())
            .filter(|&r| table.rows[r][case_col].joined() == number)
            .collect();
        assert_eq!(
            rows.len() as u64,
            case["events"].as_u64().unwrap_or(0),
            "case {number}: rows"
        );
        let hit = rows
            .iter()
            .any(|&r| matches[r].iter().any(|id| rules.rule(*id).id == rule_id));
        if !hit {
            missed.push(format!(
                "case {number}: {} ({})",
                case["title"], case["rule_path"]
            ));
        }
    }
    eprintln!(
        "{} of {cases} regression cases matched",
        cases - missed.len()
    );
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

/// Remembered verdicts (one `Scratch` for a whole data set, as the command
/// keeps one per search) are the verdicts of a fresh evaluation, row by
/// row, on every row of every shared data set and on the generated stream
/// (whose creations repeat, so most of its rows are answered from memory).
#[test]
fn remembered_verdicts_equal_fresh_evaluation_on_every_row() {
    let Some(dir) = sigma_dir() else { return };
    let rules = load_shared(&dir);
    let mut tables: Vec<Table> = [
        "evtx_attack_samples.csv",
        "evtx_to_mitre_attack.csv",
        "otrf_lsass_campaign_01.csv.gz",
    ]
    .iter()
    .filter_map(|f| datasets::sysmon_dataset(f))
    .collect();
    tables.push(datasets::generated());
    for table in &tables {
        let fresh = evaluate(&rules, table);
        let index = column_index(table);
        let mut scratch = sysmonenrich::sigma::Scratch::default();
        let mut matched = 0;
        for (row, want) in fresh.iter().enumerate() {
            let mut got = Vec::new();
            let ev = Row {
                table,
                index: &index,
                row,
            };
            rules.matches_with(&ev, &mut scratch, &mut got);
            assert_eq!(&got, want, "{} row {row}", table.name);
            matched += usize::from(!got.is_empty());
        }
        let (hits, misses) = RuleSet::memo_counts(&scratch);
        eprintln!(
            "{}: {} rows, {matched} with a match, {hits} answered from memory, {misses} evaluated",
            table.name,
            table.len()
        );
        assert!(hits > 0, "{}: nothing remembered", table.name);
    }
}
