//! One rule file: YAML → metadata, scope and compiled detection.
//!
//! Anything this engine cannot evaluate faithfully is an error with a
//! reason (the loader skips the rule and reports it): a rule evaluated
//! half-way would fire where its author never meant it to, or never fire.

use super::budget::Cost;
use super::condition::{self, Cond};
use super::logsource::{self, Scope};
use super::modifiers::{self, FieldCond, Matcher, Scalar};
use std::fmt;
use std::path::PathBuf;
use yaml_rust2::Yaml;

/// A rule's `level`, ordered from least to most severe.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `informational`.
    Informational,
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
}

impl Level {
    /// Parses a level name (case-insensitive).
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    /// The name as Sigma writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A selection: maps combined with OR, each map's items with AND.
pub type Selection = Vec<Vec<FieldCond>>;

/// A compiled rule with the metadata the command shows.
#[derive(Clone, Debug)]
pub struct Rule {
    /// `id` (a UUID in SigmaHQ's rules).
    pub id: String,
    /// `title`.
    pub title: String,
    /// `level` (`medium` when the rule has none).
    pub level: Level,
    /// `status` as written, lower-cased (empty when absent).
    pub status: String,
    /// Every tag as written (`attack.t1059.001`, `attack.execution`, `cve.…`).
    pub tags: Vec<String>,
    /// `author`: DRL 1.1 asks that messages based on a match name it.
    pub author: String,
    /// The file the rule came from.
    pub path: PathBuf,
    /// The logsource as a label: its `category`, else `service: <name>`
    /// (for reports that count rules per kind of event).
    pub logsource: String,
    pub(crate) scope: Scope,
    pub(crate) selections: Vec<Selection>,
    pub(crate) condition: Cond,
    /// Estimated memory of the compiled rule (for the whole set's budget).
    pub(crate) memory: usize,
}

impl Rule {
    /// The ATT&CK tags only (`attack.*`).
    pub fn attack_tags(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .map(String::as_str)
            .filter(|t| t.starts_with("attack."))
    }

    /// The compiled rule's estimated memory in bytes (what it is charged
    /// against `[sigma] memory_mb`).
    pub fn memory_estimate(&self) -> usize {
        self.memory
    }

    /// EventCodes this rule can match (`None`: any Sysmon event).
    pub fn event_codes(&self) -> Option<&'static [u32]> {
        self.scope.codes
    }

    /// `EventType` values the category needs (`registry_add`,
    /// `registry_delete`), `None` when any will do.
    pub fn event_types(&self) -> Option<&'static [&'static str]> {
        self.scope.event_types
    }
}

fn text<'a>(doc: &'a Yaml, key: &str) -> Option<&'a str> {
    doc[key].as_str()
}

fn scalar(y: &Yaml) -> Result<Scalar, String> {
    Ok(match y {
        Yaml::String(s) => Scalar::Str(s.clone()),
        Yaml::Integer(i) => Scalar::Other(i.to_string()),
        Yaml::Real(r) => Scalar::Other(r.clone()),
        Yaml::Boolean(b) => Scalar::Other(b.to_string()),
        Yaml::Null => Scalar::Null,
        _ => return Err("a detection value is a list or map where text was expected".into()),
    })
}

fn scalars(y: &Yaml) -> Result<Vec<Scalar>, String> {
    match y {
        Yaml::Array(items) => items.iter().map(scalar).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

fn map_conds(
    map: &yaml_rust2::yaml::Hash,
    intern: &mut dyn FnMut(&str) -> usize,
    cost: &mut Cost,
) -> Result<Vec<FieldCond>, String> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let key = match k {
            Yaml::String(s) => s.as_str(),
            _ => return Err("a detection field name is not text".into()),
        };
        out.push(modifiers::build(Some(key), &scalars(v)?, intern, cost)?);
    }
    Ok(out)
}

fn selection(
    y: &Yaml,
    intern: &mut dyn FnMut(&str) -> usize,
    cost: &mut Cost,
) -> Result<Selection, String> {
    match y {
        Yaml::Hash(map) => Ok(vec![map_conds(map, intern, cost)?]),
        Yaml::Array(items) if items.iter().all(|i| matches!(i, Yaml::Hash(_))) => items
            .iter()
            .map(|i| match i {
                Yaml::Hash(m) => map_conds(m, intern, &mut *cost),
                _ => Err("unreachable".into()),
            })
            .collect(),
        Yaml::Array(items) if items.iter().any(|i| matches!(i, Yaml::Hash(_))) => {
            Err("a selection mixes maps and keywords".into())
        }
        Yaml::Array(_) | Yaml::String(_) | Yaml::Integer(_) => Ok(vec![vec![modifiers::build(
            None,
            &scalars(y)?,
            intern,
            cost,
        )?]]),
        _ => Err("a selection is neither a map, a list nor a keyword".into()),
    }
}

/// Most selections in one rule (SigmaHQ's most: 34); the condition looks
/// names up among them.
const MAX_SELECTIONS: usize = 1_024;

/// Compiles the YAML text of one rule file. `intern` gives field names
/// their index in the rule set.
/// Renumbers the fields a rule names: field `i` of the numbering it was
/// compiled with becomes `ids[i]` (see `load.rs`: rules compiled on
/// several threads number their fields alone, then join the set's table).
pub fn renumber_fields(rule: &mut Rule, ids: &[usize]) {
    for fc in rule.selections.iter_mut().flatten().flatten() {
        if let Some(f) = &mut fc.field {
            *f = ids[*f];
        }
        for m in fc.values.iter_mut().flatten() {
            if let Matcher::FieldRef { field, .. } = m {
                *field = ids[*field];
            }
        }
    }
}

pub fn compile(
    path: PathBuf,
    source: &str,
    intern: &mut dyn FnMut(&str) -> usize,
) -> Result<Rule, String> {
    let docs = super::yaml::load(source)?;
    let doc = match docs.as_slice() {
        [one] => one,
        [] => return Err("empty file".into()),
        _ => return Err("multi-document rule files (rule collections) are not supported".into()),
    };
    if doc["correlation"].as_hash().is_some() {
        return Err("correlation rules are not supported".into());
    }
    let title = text(doc, "title").ok_or("no `title`")?.trim().to_owned();
    let id = text(doc, "id").ok_or("no `id`")?.trim().to_owned();
    let level = match &doc["level"] {
        Yaml::BadValue | Yaml::Null => Level::Medium,
        y => y.as_str().and_then(Level::parse).ok_or("unknown `level`")?,
    };
    let status = text(doc, "status")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let tags = match &doc["tags"] {
        Yaml::Array(items) => items
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let author = text(doc, "author").unwrap_or("").trim().to_owned();
    let ls = &doc["logsource"];
    let scope = logsource::scope(
        text(ls, "product"),
        text(ls, "category"),
        text(ls, "service"),
    )?;
    let logsource = match (text(ls, "category"), text(ls, "service")) {
        (Some(c), _) => c.trim().to_ascii_lowercase(),
        (None, Some(s)) => format!("service: {}", s.trim().to_ascii_lowercase()),
        (None, None) => String::new(),
    };
    let detection = doc["detection"].as_hash().ok_or("no `detection` map")?;
    if detection.len() > MAX_SELECTIONS {
        return Err(format!("more than {MAX_SELECTIONS} selections"));
    }
    let mut names = Vec::new();
    let mut selections = Vec::new();
    let mut cond_texts: Vec<String> = Vec::new();
    let mut cost = Cost::default();
    for (k, v) in detection {
        let name = k.as_str().ok_or("a selection name is not text")?;
        match name {
            "condition" => match v {
                Yaml::String(s) => cond_texts.push(s.clone()),
                Yaml::Array(items) => {
                    for i in items {
                        cond_texts.push(i.as_str().ok_or("a condition is not text")?.to_owned());
                    }
                }
                _ => return Err("`condition` is not text".into()),
            },
            "timeframe" => {
                return Err("`timeframe` (aggregation over time) is not supported".into())
            }
            _ => {
                selections.push(selection(v, intern, &mut cost)?);
                names.push(name.to_owned());
            }
        }
    }
    let mut conds = cond_texts
        .iter()
        .map(|c| condition::parse(c, &names))
        .collect::<Result<Vec<_>, _>>()?;
    let condition = match conds.len() {
        0 => return Err("no `condition`".into()),
        1 => conds.remove(0),
        _ => Cond::Or(conds),
    };
    Ok(Rule {
        id,
        title,
        level,
        status,
        tags,
        author,
        path,
        logsource,
        scope,
        selections,
        condition,
        memory: cost.memory,
    })
}
