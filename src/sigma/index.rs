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
//! A rule usually needs several such sets at once (`Image` ends with
//! `\rundll32.exe` *and* `ParentImage` ends with `\explorer.exe`): each
//! part of an AND contributes its own set, and a rule becomes a candidate
//! only when every one of its sets (up to [`MAX_GROUPS`], the most
//! selective) has a literal in the event. On SigmaHQ's rules this halves
//! the candidates per event compared with one set per rule.
//!
//! Per EventCode, the literals of every field go into one Aho-Corasick
//! automaton; an event is scanned once per field with a literal, and only
//! the rules all of whose sets were seen are evaluated in full. The cost
//! per event grows with the length of its values, not with the rule count.

use super::condition::Cond;
use super::eval::{Ctx, Fields};
use super::keyed::{self, Family};
use super::logsource;
use super::memo::KeyPlan;
use super::modifiers::FieldCond;
use super::rule::{Rule, Selection};
use super::scan_memo::ScanMemo;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::HashMap;
use std::sync::OnceLock;

type Need = Option<Vec<(usize, String)>>;

/// How selective a set of literals is for the candidate index, higher
/// being better: its shortest literal's length (a long literal rarely
/// occurs by chance; past 12 bytes that gains nothing more), then fewer
/// literals.
pub(super) fn selectivity<'a>(lits: impl ExactSizeIterator<Item = &'a str>) -> (usize, usize) {
    let count = lits.len();
    let shortest = lits.map(str::len).min().unwrap_or(0).min(12);
    (shortest, usize::MAX - count)
}

fn group_selectivity(g: &[(usize, String)]) -> (usize, usize) {
    selectivity(g.iter().map(|(_, l)| l.as_str()))
}

/// Which of two necessary sets to keep for an AND: the more selective.
fn better(a: Need, b: Need) -> Need {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(if group_selectivity(&b) > group_selectivity(&a) {
            b
        } else {
            a
        }),
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

/// Necessary sets of literals that must *all* be present (each set: one
/// of its literals), at most this many per rule, the most selective kept.
pub const MAX_GROUPS: usize = 4;

type Group = Vec<(usize, String)>;

fn field_groups(fc: &FieldCond) -> Vec<Group> {
    let Some(field) = fc.field else {
        return Vec::new(); // keywords: no field to scan
    };
    if fc.all {
        // Every value must match: each value's literals are a set.
        fc.literals
            .iter()
            .flatten()
            .map(|l| l.iter().map(|s| (field, s.clone())).collect())
            .collect()
    } else {
        need_field(fc).into_iter().collect()
    }
}

fn groups(cond: &Cond, sels: &[Selection]) -> Vec<Group> {
    match cond {
        Cond::Sel(i) => match sels[*i].as_slice() {
            // One map: an AND of its field conditions.
            [map] => map.iter().flat_map(field_groups).collect(),
            _ => need_selection(&sels[*i]).into_iter().collect(),
        },
        Cond::Not(_) => Vec::new(),
        Cond::And(cs) => cs.iter().flat_map(|c| groups(c, sels)).collect(),
        Cond::Or(_) | Cond::AtLeast(..) => need(cond, sels).into_iter().collect(),
    }
}

/// The sets of literals a rule needs all of (see the module docs); empty
/// when it has none (the rule is evaluated on every event of its codes).
pub fn rule_groups(rule: &Rule) -> Vec<Group> {
    let mut all = groups(&rule.condition, &rule.selections);
    for g in &mut all {
        g.sort_unstable();
        g.dedup();
    }
    all.sort_unstable();
    all.dedup();
    // Most selective first.
    all.sort_by_key(|g| std::cmp::Reverse(group_selectivity(g)));
    all.truncate(MAX_GROUPS);
    all
}

struct FieldScan {
    field: usize,
    /// Where this table's scans of this field are remembered
    /// (`scan_memo.rs`): the table's number and the field's.
    slot: u64,
    /// `None` when every literal of the field is in a family.
    automaton: Option<AhoCorasick>,
    /// Per pattern id, the (rule, set) pairs it satisfies, packed as
    /// `rule * MAX_GROUPS + set`.
    rules: Vec<Vec<u32>>,
    /// Hash lists, looked up rather than scanned (see `keyed.rs`), each
    /// with the (rule, set) pairs of its members.
    families: Vec<(Family, Vec<Vec<u32>>)>,
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
///
/// A code's table is built on the first event of that code: the automata
/// were most of the time to load SigmaHQ's rules, and a search over real
/// captures sees a handful of the 29 codes. Built once, then shared
/// read-only by every thread of the search.
pub struct Index {
    /// Per EventCode (Sysmon's are 1–255), its table; looked up for every
    /// event, so an array rather than a hashed map.
    by_code: Vec<Option<usize>>,
    /// Per table, the EventCode it serves (`None`: the other codes).
    codes: Vec<Option<u32>>,
    buckets: Vec<OnceLock<Bucket>>,
    other: usize,
    /// Per rule, its literal sets (see [`rule_groups`]).
    needs: Vec<Vec<Group>>,
    /// Per rule, how many literal sets it needs (0: always a candidate).
    sets: Vec<u8>,
}

fn build_bucket(
    rules: &[Rule],
    needs: &[Vec<Group>],
    table: usize,
    pick: impl Fn(&Rule) -> bool,
) -> Bucket {
    let mut fields: HashMap<usize, HashMap<&str, Vec<u32>>> = HashMap::new();
    let mut bucket = Bucket::default();
    for (i, rule) in rules.iter().enumerate() {
        if !pick(rule) {
            continue;
        }
        bucket.plan.add(i as u32, rule);
        if needs[i].is_empty() {
            bucket.always.push(i as u32);
            continue;
        }
        for (g, group) in needs[i].iter().enumerate() {
            let packed = (i * MAX_GROUPS + g) as u32;
            for (field, lit) in group {
                let ids = fields
                    .entry(*field)
                    .or_default()
                    .entry(lit.as_str())
                    .or_default();
                if ids.last() != Some(&packed) {
                    ids.push(packed);
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
        // No prefilter: the literals of a field share the bytes its values
        // are made of (hexadecimal digits in `Hashes`, `\\` and `.exe` in
        // paths), so a rare-byte prefilter stops at nearly every byte and
        // restarts the automaton; without it the `Hashes` scan took a third
        // of the instructions and the whole engine 19 % fewer (callgrind,
        // 20,000 diverse events).
        let texts: Vec<&str> = lits.iter().map(|(l, _)| *l).collect();
        let (families, rest) = keyed::split(&texts);
        let mut take = |i: usize| std::mem::take(&mut lits[i].1);
        let families: Vec<(Family, Vec<Vec<u32>>)> = families
            .into_iter()
            .map(|(f, members)| (f, members.into_iter().map(&mut take).collect()))
            .collect();
        let mut rest_ids: Vec<Vec<u32>> = rest.iter().map(|&i| take(i)).collect();
        let built = (!rest.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(rest.iter().map(|&i| texts[i]))
        });
        let automaton = match built {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                // Past the automaton's limits the rules still run,
                // unselected.
                bucket
                    .always
                    .extend(rest_ids.drain(..).flatten().map(|p| p / MAX_GROUPS as u32));
                None
            }
        };
        if automaton.is_none() && families.is_empty() {
            continue;
        }
        bucket.scans.push(FieldScan {
            field,
            slot: ((table as u64) << 32) | field as u64,
            automaton,
            rules: rest_ids,
            families,
        });
    }
    bucket.always.sort_unstable();
    bucket.always.dedup();
    bucket.plan.finish();
    bucket
}

impl Index {
    /// The tables for a rule set (each built on first use).
    pub fn build(rules: &[Rule]) -> Index {
        let needs: Vec<Vec<Group>> = rules.iter().map(rule_groups).collect();
        let sets = needs.iter().map(|g| g.len() as u8).collect();
        let mut by_code = Vec::new();
        let mut codes = Vec::new();
        for code in logsource::all_codes() {
            let at = code as usize;
            if by_code.len() <= at {
                by_code.resize(at + 1, None);
            }
            by_code[at] = Some(codes.len());
            codes.push(Some(code));
        }
        let other = codes.len();
        codes.push(None);
        Index {
            by_code,
            buckets: codes.iter().map(|_| OnceLock::new()).collect(),
            codes,
            other,
            needs,
            sets,
        }
    }

    /// Number of rules that are evaluated on every event of some code
    /// (no literal to select them by), for reports. Builds every table.
    pub fn always_count(&self, rules: &[Rule]) -> usize {
        let mut all: Vec<u32> = (0..self.buckets.len())
            .flat_map(|b| self.built(rules, b).always.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    }

    fn built(&self, rules: &[Rule], b: usize) -> &Bucket {
        self.buckets[b].get_or_init(|| match self.codes[b] {
            Some(code) => build_bucket(rules, &self.needs, b, |r| {
                r.scope.codes.is_none_or(|c| c.contains(&code))
            }),
            None => build_bucket(rules, &self.needs, b, |r| r.scope.codes.is_none()),
        })
    }

    fn bucket(&self, rules: &[Rule], code: Option<u32>) -> &Bucket {
        let b = code
            .and_then(|c| {
                self.by_code
                    .get(usize::try_from(c).ok()?)
                    .copied()
                    .flatten()
            })
            .unwrap_or(self.other);
        self.built(rules, b)
    }

    /// How verdicts of events with this EventCode are remembered.
    pub fn plan(&self, rules: &[Rule], code: Option<u32>) -> &KeyPlan {
        &self.bucket(rules, code).plan
    }

    /// Appends the candidate rules for an event to `out`, in no particular
    /// order, without duplicates. Field values come from `ctx` (unescaped once, shared
    /// with the full test); `hits` is reused from one event to the next;
    /// `memo` remembers each field's scan by its raw value.
    pub fn candidates<E: Fields>(
        &self,
        rules: &[Rule],
        code: Option<u32>,
        ctx: &mut Ctx<'_, E>,
        out: &mut Vec<u32>,
        hits: &mut Hits,
        memo: &mut ScanMemo,
    ) {
        let bucket = self.bucket(rules, code);
        out.extend_from_slice(&bucket.always);
        hits.reset(self.sets.len());
        for scan in &bucket.scans {
            let raw = ctx.raw(scan.field);
            if raw.is_empty() {
                continue;
            }
            if let Some(seen) = memo.get(scan.slot, raw) {
                seen.iter().for_each(|&p| hits.see(p));
                continue;
            }
            // Lower-cased the way the full test folds it (Unicode), so a
            // literal with non-ASCII letters (lower-cased too) is found.
            let hay = ctx.lower_from_raw(scan.field, raw);
            hits.begin_scan(self.sets.len() * MAX_GROUPS);
            if let Some(automaton) = &scan.automaton {
                for m in automaton.find_overlapping_iter(hay) {
                    for &p in &scan.rules[m.pattern().as_usize()] {
                        hits.see_found(p);
                    }
                }
            }
            for (family, ids) in &scan.families {
                family.find(hay.as_bytes(), |m| {
                    for &p in &ids[m as usize] {
                        hits.see_found(p);
                    }
                });
            }
            memo.put(scan.slot, raw, &hits.found);
        }
        // A rule is a candidate once every one of its sets was seen.
        for &rule in &hits.touched {
            let mask = hits.masks[rule as usize];
            if mask.count_ones() == u32::from(self.sets[rule as usize]) {
                out.push(rule);
            }
        }
        // Each rule was added once (`always` rules have no sets). Left
        // unsorted: the caller sorts the few that match, not the hundreds
        // that are candidates.
    }
}

/// Which literal sets of which rules an event's scan has seen: one bit per
/// set, per rule. A ubiquitous literal (`.exe` in `Image`) names hundreds
/// of rules on every event; marking bits costs a store per name, where
/// collecting the names and sorting them was a tenth of a cold evaluation.
#[derive(Default)]
pub struct Hits {
    masks: Vec<u8>,
    /// Rules with a bit set, each once, in the order first seen.
    touched: Vec<u32>,
    /// The sets one field's scan found, each once, in the order found
    /// (what `ScanMemo` keeps).
    found: Vec<u32>,
    /// By packed set: the number of the last scan that found it. A
    /// ubiquitous literal occurs many times in a value and names hundreds
    /// of sets; this keeps each once without sorting them.
    stamps: Vec<u32>,
    scan: u32,
}

impl Hits {
    /// Clears the previous event's bits (only those that were set).
    fn reset(&mut self, rules: usize) {
        for &r in &self.touched {
            self.masks[r as usize] = 0;
        }
        self.touched.clear();
        if self.masks.len() < rules {
            self.masks.resize(rules, 0);
        }
    }

    /// Starts one field's scan (`packed` sets in all).
    fn begin_scan(&mut self, packed: usize) {
        self.found.clear();
        if self.stamps.len() < packed {
            self.stamps.resize(packed, 0);
        }
        self.scan = self.scan.wrapping_add(1);
        if self.scan == 0 {
            // Wrapped: stamps of 4 billion scans ago would look current.
            self.stamps.fill(0);
            self.scan = 1;
        }
    }

    /// [`Hits::see`] for a set the current scan found, recorded in
    /// `found` the first time this scan finds it.
    fn see_found(&mut self, packed: u32) {
        let stamp = &mut self.stamps[packed as usize];
        if *stamp != self.scan {
            *stamp = self.scan;
            self.found.push(packed);
            self.see(packed);
        }
    }

    /// Marks set `packed % MAX_GROUPS` of rule `packed / MAX_GROUPS`.
    fn see(&mut self, packed: u32) {
        let rule = packed / MAX_GROUPS as u32;
        let mask = &mut self.masks[rule as usize];
        if *mask == 0 {
            self.touched.push(rule);
        }
        *mask |= 1 << (packed % MAX_GROUPS as u32);
    }
}
