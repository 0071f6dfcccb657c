//! Candidate selection: which few rules can possibly match an event.
//!
//! Evaluating 2,238 rules one by one costs per rule. Instead, each rule is
//! reduced at load time to a *necessary* set of (field, literal) pairs: if
//! the rule matches, one of those literals occurs in that field (ASCII
//! case folded). The set follows the condition: an AND needs only one of
//! its parts (the most selective is kept), an OR needs all of its parts'
//! sets, a NOT gives nothing. Rules without such a set (only negations,
//! regexes, CIDR, `null`…) are always candidates for their EventCodes.
//!
//! Per EventCode, the literals of every field go into one Aho-Corasick
//! automaton; an event is scanned once per field with a literal, and only
//! the rules whose literal was seen are evaluated in full. The cost per
//! event grows with the length of its values, not with the rule count.

use super::condition::Cond;
use super::eval::{Ctx, Fields};
use super::logsource;
use super::memo::KeyPlan;
use super::modifiers::FieldCond;
use super::rule::{Rule, Selection};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::HashMap;

type Need = Option<Vec<(usize, String)>>;

/// Which of two necessary sets to keep for an AND: the one whose shortest
/// literal is longest (fewer false candidates), then the smaller one.
fn better(a: Need, b: Need) -> Need {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => {
            let score = |v: &Vec<(usize, String)>| {
                (
                    v.iter().map(|(_, l)| l.len()).min().unwrap_or(0).min(12),
                    usize::MAX - v.len(),
                )
            };
            Some(if score(&b) > score(&a) { b } else { a })
        }
    }
}

fn union(parts: impl Iterator<Item = Need>) -> Need {
    let mut all = Vec::new();
    for p in parts {
        all.extend(p?);
    }
    if all.is_empty() {
        None
    } else {
        Some(all)
    }
}

fn need_field(fc: &FieldCond) -> Need {
    let field = fc.field?;
    let per_value = fc.literals.iter().map(|l| {
        l.as_ref()
            .map(|v| v.iter().map(|s| (field, s.clone())).collect::<Vec<_>>())
    });
    if fc.all {
        per_value.fold(None, better)
    } else {
        union(per_value)
    }
}

fn need_selection(sel: &Selection) -> Need {
    union(
        sel.iter()
            .map(|map| map.iter().map(need_field).fold(None, better)),
    )
}

fn need(cond: &Cond, sels: &[Selection]) -> Need {
    match cond {
        Cond::Sel(i) => need_selection(&sels[*i]),
        Cond::Not(_) => None,
        Cond::And(cs) => cs.iter().map(|c| need(c, sels)).fold(None, better),
        Cond::Or(cs) | Cond::AtLeast(_, cs) => union(cs.iter().map(|c| need(c, sels))),
    }
}

/// The necessary literals of a rule, `None` when it has none.
pub fn rule_need(rule: &Rule) -> Need {
    need(&rule.condition, &rule.selections)
}

struct FieldScan {
    field: usize,
    automaton: AhoCorasick,
    /// Rules per pattern id.
    rules: Vec<Vec<u32>>,
}

#[derive(Default)]
struct Bucket {
    scans: Vec<FieldScan>,
    always: Vec<u32>,
    /// What a remembered verdict for this code is keyed by.
    plan: KeyPlan,
}

/// The candidate tables, one per EventCode, plus one for events whose
/// code no category maps to (only `service: sysmon` rules apply there).
pub struct Index {
    by_code: HashMap<u32, usize>,
    buckets: Vec<Bucket>,
    other: usize,
}

fn build_bucket(rules: &[Rule], needs: &[Need], pick: impl Fn(&Rule) -> bool) -> Bucket {
    let mut fields: HashMap<usize, HashMap<&str, Vec<u32>>> = HashMap::new();
    let mut bucket = Bucket::default();
    for (i, rule) in rules.iter().enumerate() {
        if !pick(rule) {
            continue;
        }
        bucket.plan.add(i as u32, rule);
        match &needs[i] {
            None => bucket.always.push(i as u32),
            Some(lits) => {
                for (field, lit) in lits {
                    let ids = fields
                        .entry(*field)
                        .or_default()
                        .entry(lit.as_str())
                        .or_default();
                    if ids.last() != Some(&(i as u32)) {
                        ids.push(i as u32);
                    }
                }
            }
        }
    }
    let mut fields: Vec<_> = fields.into_iter().collect();
    fields.sort_by_key(|(f, _)| *f);
    for (field, lits) in fields {
        let mut lits: Vec<(&str, Vec<u32>)> = lits.into_iter().collect();
        lits.sort_unstable();
        // Literals are lower-case and scanned against the lower-cased
        // value (which the full test needs anyway): an automaton that
        // folded case itself would have twice the transitions, and
        // building those was 40% of loading SigmaHQ's rules.
        let built = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(lits.iter().map(|(l, _)| l));
        match built {
            Ok(automaton) => bucket.scans.push(FieldScan {
                field,
                automaton,
                rules: lits.into_iter().map(|(_, r)| r).collect(),
            }),
            // Past the automaton's limits the rules still run, unselected.
            Err(_) => bucket.always.extend(lits.into_iter().flat_map(|(_, r)| r)),
        }
    }
    bucket.always.sort_unstable();
    bucket.always.dedup();
    bucket.plan.finish();
    bucket
}

impl Index {
    /// Builds the tables for a rule set.
    pub fn build(rules: &[Rule]) -> Index {
        let needs: Vec<Need> = rules.iter().map(rule_need).collect();
        let mut by_code = HashMap::new();
        let mut buckets = Vec::new();
        for code in logsource::all_codes() {
            by_code.insert(code, buckets.len());
            buckets.push(build_bucket(rules, &needs, |r| {
                r.scope.codes.map_or(true, |c| c.contains(&code))
            }));
        }
        let other = buckets.len();
        buckets.push(build_bucket(rules, &needs, |r| r.scope.codes.is_none()));
        Index {
            by_code,
            buckets,
            other,
        }
    }

    /// Number of rules that are evaluated on every event of some code
    /// (no literal to select them by), for reports.
    pub fn always_count(&self) -> usize {
        let mut all: Vec<u32> = self
            .buckets
            .iter()
            .flat_map(|b| b.always.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    }

    fn bucket(&self, code: Option<u32>) -> &Bucket {
        let b = code
            .and_then(|c| self.by_code.get(&c))
            .copied()
            .unwrap_or(self.other);
        &self.buckets[b]
    }

    /// How verdicts of events with this EventCode are remembered.
    pub fn plan(&self, code: Option<u32>) -> &KeyPlan {
        &self.bucket(code).plan
    }

    /// Appends the candidate rules for an event to `out`, sorted, without
    /// duplicates. Field values come from `ctx` (unescaped once, shared
    /// with the full test); `hits` is a reused buffer.
    pub fn candidates<E: Fields>(
        &self,
        code: Option<u32>,
        ctx: &mut Ctx<'_, E>,
        out: &mut Vec<u32>,
        hits: &mut Vec<usize>,
    ) {
        let bucket = self.bucket(code);
        out.extend_from_slice(&bucket.always);
        for scan in &bucket.scans {
            // Lower-cased the way the full test folds it (Unicode), so a
            // literal with non-ASCII letters (lower-cased too) is found.
            let hay = ctx.lower(scan.field);
            if hay.is_empty() {
                continue;
            }
            hits.clear();
            hits.extend(
                scan.automaton
                    .find_overlapping_iter(hay)
                    .map(|m| m.pattern().as_usize()),
            );
            hits.sort_unstable();
            hits.dedup();
            for &p in hits.iter() {
                out.extend_from_slice(&scan.rules[p]);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}
