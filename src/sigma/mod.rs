//! Sigma detection: SigmaHQ's rules for the event categories Sysmon writes,
//! evaluated on every event.
//!
//! Pure: no I/O besides reading rule files ([`RuleSet::load`]), no global
//! state. The command builds one [`RuleSet`] per search and calls
//! [`RuleSet::matches`] per event through the [`Fields`] view.
//!
//! | file | job |
//! |---|---|
//! | `rule.rs` | YAML → metadata, logsource scope, selections, condition |
//! | `pattern.rs` | Sigma strings: wildcards, escaping, string tests |
//! | `any_of.rs` | an item's many string alternatives in one automaton |
//! | `modifiers.rs` | `Field|mod|mod: values` → matchers |
//! | `regex_literals.rs` | literals every match of a regex contains, for the index |
//! | `regex_trim.rs` | a regex cut to what decides `is_match` |
//! | `budget.rs` | what one rule and the whole set may cost to compile |
//! | `timestamp.rs` | time modifiers: a part of `_time`/`UtcTime` |
//! | `condition.rs` | `sel and not 1 of filter_*` → a tree |
//! | `yaml.rs` | YAML text → document, bounded (nesting, no aliases) |
//! | `logsource.rs` | category → Sysmon EventCodes |
//! | `eval.rs` | one rule on one event, Splunk's semantics (absent = empty, entities) |
//! | `index.rs` | literal automata that pick the few candidate rules per event |
//! | `keyed.rs` | the index's hash lists: a prefix and a map of keys, not an automaton |
//! | `memo.rs` | verdicts remembered by the fields the rules read |
//! | `gate.rs` | per kind of lookup, whether remembering pays |
//! | `scan_memo.rs` | each field's literal scan remembered by its value |
//! | `load.rs` | files and directories → [`RuleSet`] + [`LoadReport`] |
//! | `compile_pool.rs` | rule files compiled on worker threads, admitted in walk order |
//! | `walk.rs` | the bounded walk of a rule folder (loader and install) |
//! | `sets.rs` | installed sets: versioned folders behind one pointer |
//!
//! Sigma semantics follow the specification as pySigma implements it (the
//! reference the rule authors test with); where Splunk's data model
//! differs (no null, entities kept in values, all values text), the
//! Splunk reading wins, because that is what a user of `| sysmonenrich`
//! compares against.

mod any_of;
mod budget;
mod compile_pool;
mod condition;
mod eval;
mod gate;
mod index;
mod keyed;
mod load;
mod logsource;
mod memo;
mod modifiers;
mod pattern;
mod regex_literals;
mod regex_trim;
mod rule;
mod scan_memo;
pub mod sets;
mod timestamp;
mod walk;
mod yaml;
mod yaml_subset;

pub use budget::DEFAULT_SET_MEMORY_MB;
pub use eval::{unescape, Fields, Scratch};
pub use load::{
    is_rule_file, Filter, LoadReport, Problem, RuleId, RuleSet, SkipGroup, Skipped, MAX_RULE_FILE,
    MAX_RULE_FILES,
};
pub use rule::{Level, Rule};
pub use walk::{walk, Found, Kind as RefusalKind, Limits as WalkLimits, Links, Refusal};

#[cfg(test)]
mod tests;
