//! Differential test: this Sigma engine against a second implementation,
//! the `sigma-rust` crate, over every row of the shared Sysmon data sets.
//!
//! The two are fed the same thing where their data models agree, so that
//! what remains is a real difference of rule semantics:
//! - sigma-rust knows nothing of logsources, so it is only asked about the
//!   rules whose category can produce the row's EventCode;
//! - it gets the values unescaped (`&amp;` → `&`), as this engine matches
//!   them, and only the non-empty fields (Splunk's absent = empty);
//! - it types values strictly (`445` ≠ `"445"`) and tells an absent field
//!   from a null one; Splunk hands text and has no null.
//!
//! A disagreement is *explained* when it is one of those data-model
//! differences, shown by giving sigma-rust the row once more with the
//! difference aligned and seeing it agree (see [`explain`]); anything else
//! fails the test with the rule and the row.

mod common;

use common::datasets::{self, Table, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use sysmonenrich::sigma::{unescape, Fields, Filter, RuleSet};

struct Row<'a> {
    table: &'a Table,
    index: &'a HashMap<&'a str, usize>,
    row: usize,
}

fn first(v: &Value) -> &str {
    match v {
        Value::One(s) => s,
        Value::Many(v) => v.first().map(String::as_str).unwrap_or(""),
    }
}

impl Fields for Row<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Some(first(&self.table.rows[self.row][*self.index.get(name)?]))
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.table.rows[self.row].iter().map(first)
    }
}

/// The row for sigma-rust, unescaped. Plain: non-empty fields as text.
/// `numbers`: digit strings as integers too. `nulls`: every column of the
/// data set present, empty ones as null.
fn typed(table: &Table, row: usize, numbers: bool, nulls: bool) -> sigma_rust::Event {
    let mut ev = sigma_rust::Event::new();
    for (i, col) in table.columns.iter().enumerate() {
        let v = first(&table.rows[row][i]);
        if v.is_empty() {
            if nulls {
                ev.insert(col.as_str(), None::<i32>);
            }
        } else if let Some(n) = v
            .parse::<i64>()
            .ok()
            .filter(|_| numbers && (v == "0" || !v.starts_with('0')))
        {
            ev.insert(col.as_str(), n);
        } else {
            ev.insert(col.as_str(), unescape(v).into_owned());
        }
    }
    ev
}

/// Why the engines disagree on a row, `None` when no data-model
/// difference accounts for it.
fn explain(
    rule: &sysmonenrich::sigma::Rule,
    theirs: &sigma_rust::Rule,
    table: &Table,
    view: &Row,
    ours: bool,
) -> Option<&'static str> {
    if let Some(types) = rule.event_types() {
        let t = view.get("EventType").unwrap_or("");
        if !ours && !types.contains(&t) {
            return Some(
                "registry_add/registry_delete rule on an EventCode 12 row of another EventType",
            );
        }
    }
    let agrees = |numbers, nulls| theirs.is_match(&typed(table, view.row, numbers, nulls)) == ours;
    if agrees(true, false) {
        return Some(
            "a number in the rule against Splunk's text value (sigma-rust types strictly)",
        );
    }
    if agrees(false, true) {
        return Some("`null` / `''` on a field the event lacks (Splunk: absent = empty = null)");
    }
    if agrees(true, true) {
        return Some("a number and a null together");
    }
    None
}

#[test]
fn agrees_with_sigma_rust_on_every_row() {
    let Some(shared) = datasets::shared_dir() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "../shared is required under CI"
        );
        return;
    };
    let dirs: Vec<PathBuf> = ["rules", "rules-threat-hunting", "rules-emerging-threats"]
        .iter()
        .map(|d| shared.join("sigma").join(d))
        .collect();
    let report = RuleSet::load(&dirs, &Filter::default());
    let rules = report.rules;
    let mut theirs = Vec::new();
    let mut unparsed = 0;
    for r in rules.rules() {
        let text = std::fs::read_to_string(&r.path).expect("rule file");
        let parsed = sigma_rust::rule_from_yaml(&text).ok();
        if parsed.is_none() {
            unparsed += 1;
            eprintln!("sigma-rust cannot parse {}", r.path.display());
        }
        theirs.push(parsed);
    }
    eprintln!(
        "sigma-rust parses {} of {} rules",
        rules.len() - unparsed,
        rules.len()
    );
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_rule: BTreeMap<(String, bool), usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    let (mut rows_total, mut pairs) = (0usize, 0usize);
    for file in datasets::SYSMON_DATASETS {
        let Some(table) = datasets::sysmon_dataset(file) else {
            return;
        };
        let index: HashMap<&str, usize> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        for row in 0..table.len() {
            let view = Row {
                table: &table,
                index: &index,
                row,
            };
            let mut ours = Vec::new();
            rules.matches(&view, &mut ours);
            let code = view.event_code();
            for id in &ours {
                let codes = rules.rule(*id).event_codes();
                assert!(
                    codes.is_none_or(|c| code.is_some_and(|x| c.contains(&x))),
                    "{file} row {row}: EventCode {code:?} matched out-of-scope {}",
                    rules.rule(*id).path.display()
                );
            }
            let ev = typed(&table, row, false, false);
            rows_total += 1;
            for (i, rule) in rules.rules().iter().enumerate() {
                let Some(their_rule) = &theirs[i] else {
                    continue;
                };
                if !rule
                    .event_codes()
                    .is_none_or(|c| code.is_some_and(|x| c.contains(&x)))
                {
                    continue;
                }
                pairs += 1;
                let mine = ours.iter().any(|id| id.0 as usize == i);
                if mine == their_rule.is_match(&ev) {
                    continue;
                }
                *per_rule
                    .entry((rule.path.display().to_string(), mine))
                    .or_default() += 1;
                match explain(rule, their_rule, &table, &view, mine) {
                    Some(class) => *classes.entry(class.to_owned()).or_default() += 1,
                    None => unexplained.push(format!(
                        "{file} row {row}: ours={mine} {}",
                        rule.path.display()
                    )),
                }
            }
        }
    }
    eprintln!("{rows_total} rows, {pairs} (row, rule) pairs in scope");
    assert!(
        rows_total > 50_000 && pairs > 5_000_000,
        "the data sets are smaller than expected"
    );
    for (c, n) in &classes {
        eprintln!("  explained {n:6}  {c}");
    }
    for ((path, mine), n) in &per_rule {
        eprintln!("  {n:6} ours={mine} {path}");
    }
    assert!(
        unexplained.is_empty(),
        "{} unexplained, e.g.:\n{}",
        unexplained.len(),
        unexplained[..unexplained.len().min(20)].join("\n")
    );
}
