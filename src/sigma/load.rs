//! Loading rule files into a [`RuleSet`], and the report of what was left
//! out and why.
//!
//! Nothing here fails: a missing directory or an unreadable file is a
//! *problem* in the report, a rule the engine cannot run is *skipped* with
//! its reason, a rule outside the configured level/status/ids is
//! *filtered*. The command logs the report once and runs with what loaded.

use super::eval::{Ctx, Fields, Scratch};
use super::index::Index;
use super::rule::{self, Level, Rule};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A rule file larger than this is refused unread (SigmaHQ's largest is
/// about 40 KB): a stray big file in the rules folder must not cost memory.
pub const MAX_RULE_FILE: u64 = 1 << 20;

/// Part of every rule's fingerprint: raise it when a change of the engine
/// changes what some unchanged rule text matches, so that matches stored by
/// older builds stop counting as this build's (see [`RuleSet::fingerprint`]).
const SEMANTICS: &[u8] = b"sysmonenrich-sigma-2";

/// Directory depth limit (guards against symlink loops).
const MAX_DEPTH: usize = 32;

/// Which loaded rules to keep.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Keep rules at this level or above.
    pub min_level: Option<Level>,
    /// Keep only these statuses (lower case); empty keeps all.
    pub status: Vec<String>,
    /// Rule ids never to load.
    pub disabled_ids: HashSet<String>,
}

impl Filter {
    fn keeps(&self, r: &Rule) -> bool {
        self.min_level.map_or(true, |m| m <= r.level)
            && (self.status.is_empty()
                || self
                    .status
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&r.status)))
            && !self.disabled_ids.contains(&r.id)
    }
}

/// A rule file the engine could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// A path that could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The path.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// Skipped rules with one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkipGroup {
    /// The reason.
    pub reason: String,
    /// How many rules.
    pub count: usize,
    /// A few of their paths.
    pub examples: Vec<PathBuf>,
}

/// What [`RuleSet::load`] did.
pub struct LoadReport {
    /// The rules that will run.
    pub rules: RuleSet,
    /// Rule files that were not loaded, with why.
    pub skipped: Vec<Skipped>,
    /// Paths that could not be read.
    pub problems: Vec<Problem>,
    /// Rules left out by the [`Filter`].
    pub filtered: usize,
}

impl LoadReport {
    /// Skips grouped by reason, most frequent first, with up to three
    /// example paths each.
    pub fn skipped_by_reason(&self) -> Vec<SkipGroup> {
        let mut groups: BTreeMap<&str, SkipGroup> = BTreeMap::new();
        for s in &self.skipped {
            let g = groups.entry(&s.reason).or_insert_with(|| SkipGroup {
                reason: s.reason.clone(),
                count: 0,
                examples: Vec::new(),
            });
            g.count += 1;
            if g.examples.len() < 3 {
                g.examples.push(s.path.clone());
            }
        }
        let mut v: Vec<SkipGroup> = groups.into_values().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        v
    }
}

/// A matched rule: its index in the [`RuleSet`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u32);

/// Compiled rules and their candidate index. Immutable and `Sync`: one per
/// search, shared by every row.
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Each rule's fingerprint, in [`RuleId`] order.
    fingerprints: Vec<u64>,
    /// The set's identity: a digest of its fingerprints, sorted.
    digest: u64,
    fields: Vec<String>,
    index: Index,
}

/// Collects rule sources and interns field names while compiling.
#[derive(Default)]
pub struct Builder {
    rules: Vec<Rule>,
    fingerprints: Vec<u64>,
    fields: Vec<String>,
    field_ids: HashMap<String, usize>,
    ids: HashSet<String>,
    /// Rules not loaded, with why.
    pub skipped: Vec<Skipped>,
    /// Rules left out by the filter.
    pub filtered: usize,
}

impl Builder {
    /// Compiles one rule file's text; a rule that cannot run is recorded
    /// in `skipped`.
    pub fn add(&mut self, path: PathBuf, source: &str, filter: &Filter) {
        let fields = &mut self.fields;
        let field_ids = &mut self.field_ids;
        let mut intern = |name: &str| {
            *field_ids.entry(name.to_owned()).or_insert_with(|| {
                fields.push(name.to_owned());
                fields.len() - 1
            })
        };
        match rule::compile(path.clone(), source, &mut intern) {
            Err(reason) => self.skipped.push(Skipped { path, reason }),
            Ok(r) if !filter.keeps(&r) => self.filtered += 1,
            Ok(r) if !self.ids.insert(r.id.clone()) => self.skipped.push(Skipped {
                path,
                reason: "duplicate rule id (an earlier file has it)".into(),
            }),
            Ok(r) => {
                self.fingerprints.push(fingerprint(&r.id, source));
                self.rules.push(r);
            }
        }
    }

    /// The compiled set.
    pub fn finish(self) -> RuleSet {
        let index = Index::build(&self.rules);
        let mut sorted = self.fingerprints.clone();
        sorted.sort_unstable();
        let bytes: Vec<u8> = sorted.iter().flat_map(|f| f.to_le_bytes()).collect();
        let digest = crate::state::stable_digest([SEMANTICS, &bytes]);
        RuleSet {
            rules: self.rules,
            fingerprints: self.fingerprints,
            digest,
            fields: self.fields,
            index,
        }
    }
}

/// A rule's identity across searches and builds: its `id`, the whole text
/// of its file (any change to detection, scope or metadata is another
/// rule) and the engine's [`SEMANTICS`].
fn fingerprint(id: &str, source: &str) -> u64 {
    crate::state::stable_digest([SEMANTICS, id.as_bytes(), source.as_bytes()])
}

fn walk(path: &Path, depth: usize, files: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                path: path.to_owned(),
                message: format!("cannot read directory: {e}"),
            });
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            if depth >= MAX_DEPTH {
                problems.push(Problem {
                    path: child,
                    message: "directories nested too deep".into(),
                });
            } else {
                walk(&child, depth + 1, files, problems);
            }
        } else if child.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(child);
        }
    }
}

impl RuleSet {
    /// Loads every `.yml`/`.yaml` file under the given files and
    /// directories (recursively, in path order). Never fails: see
    /// [`LoadReport`].
    pub fn load(paths: &[PathBuf], filter: &Filter) -> LoadReport {
        let mut problems = Vec::new();
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                walk(p, 0, &mut files, &mut problems);
            } else if p.exists() {
                files.push(p.clone());
            } else {
                problems.push(Problem {
                    path: p.clone(),
                    message: "does not exist".into(),
                });
            }
        }
        let mut b = Builder::default();
        for f in files {
            match std::fs::metadata(&f) {
                Ok(m) if m.len() > MAX_RULE_FILE => b.skipped.push(Skipped {
                    path: f,
                    reason: format!("rule file larger than {} KiB", MAX_RULE_FILE / 1024),
                }),
                _ => match std::fs::read(&f) {
                    Err(e) => problems.push(Problem {
                        path: f,
                        message: format!("cannot read: {e}"),
                    }),
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => b.add(f, &text, filter),
                        Err(_) => b.skipped.push(Skipped {
                            path: f,
                            reason: "not UTF-8 text".into(),
                        }),
                    },
                },
            }
        }
        let (skipped, filtered) = (std::mem::take(&mut b.skipped), b.filtered);
        LoadReport {
            rules: b.finish(),
            skipped,
            problems,
            filtered,
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True without rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A rule's metadata.
    pub fn rule(&self, id: RuleId) -> &Rule {
        &self.rules[id.0 as usize]
    }

    /// Rule `id`'s fingerprint: the same for the same rule text under the
    /// same engine semantics, in any search, on any build. Matches stored
    /// for later searches are recorded by fingerprint, so a search counts
    /// a stored match only for a rule it loaded in that very version.
    pub fn fingerprint(&self, id: RuleId) -> u64 {
        self.fingerprints[id.0 as usize]
    }

    /// The set's identity: equal for two searches exactly when they loaded
    /// the same rules (same fingerprints, in any file order).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// All rules, in [`RuleId`] order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rules evaluated on every event of their EventCodes because they
    /// have no literal to be selected by.
    pub fn unindexed_count(&self) -> usize {
        self.index.always_count()
    }

    /// How many rules the literal index selects for an event before the
    /// full test (for benchmarks and diagnostics).
    pub fn candidate_count(&self, ev: &impl Fields) -> usize {
        self.candidate_ids(ev).len()
    }

    #[doc(hidden)]
    pub fn candidate_ids(&self, ev: &impl Fields) -> Vec<u32> {
        let mut s = Scratch::default();
        self.select(ev, ev.event_code(), &mut s);
        s.candidates
    }

    /// Fills `s.candidates` for an event of EventCode `code`.
    fn select<E: Fields>(&self, ev: &E, code: Option<u32>, s: &mut Scratch) {
        s.next_event(self.fields.len());
        let mut out = std::mem::take(&mut s.candidates);
        let mut hits = std::mem::take(&mut s.hits);
        self.index.candidates(
            code,
            &mut Ctx::new(ev, &self.fields, s),
            &mut out,
            &mut hits,
        );
        s.candidates = out;
        s.hits = hits;
    }

    /// Appends the rules matching an event to `out` in [`RuleId`] order
    /// (`out` is not cleared, so a caller can reuse one buffer).
    /// Allocates per call; [`RuleSet::matches_with`] reuses buffers.
    pub fn matches(&self, ev: &impl Fields, out: &mut Vec<RuleId>) {
        self.matches_with(ev, &mut Scratch::default(), out);
    }

    /// [`RuleSet::matches`] with buffers kept from one event to the next:
    /// keep one [`Scratch`] per search and pass it on every call (it also
    /// remembers verdicts by the fields the rules read, see `memo.rs`).
    pub fn matches_with(&self, ev: &impl Fields, s: &mut Scratch, out: &mut Vec<RuleId>) {
        if self.rules.is_empty() {
            return;
        }
        let code = ev.event_code();
        let plan = self.index.plan(code);
        let mut key = std::mem::take(&mut s.verdicts.key);
        let keyed = !s.verdicts.off
            && plan.key(
                code,
                |f| ev.get_field(f, &self.fields[f]).unwrap_or(""),
                || ev.get("EventType").unwrap_or(""),
                &mut key,
            );
        s.verdicts.key = key;
        let start = out.len();
        if keyed {
            if let Some(ids) = s.verdicts.get() {
                out.extend(ids.iter().map(|&i| RuleId(i)));
                if !plan.volatile.is_empty() {
                    s.next_event(self.fields.len());
                    let mut ctx = Ctx::new(ev, &self.fields, s);
                    for &i in &plan.volatile {
                        if self.test(&mut ctx, i, code) {
                            out.push(RuleId(i));
                        }
                    }
                    out[start..].sort_unstable();
                }
                return;
            }
        }
        self.select(ev, code, s);
        let candidates = std::mem::take(&mut s.candidates);
        let mut ctx = Ctx::new(ev, &self.fields, s);
        for &c in &candidates {
            if self.test(&mut ctx, c, code) {
                out.push(RuleId(c));
            }
        }
        s.candidates = candidates;
        if keyed {
            let remembered = out[start..]
                .iter()
                .map(|r| r.0)
                .filter(|&i| !plan.is_volatile(i));
            s.verdicts.put(remembered);
        }
    }

    /// Rule `i` in full on the event of `ctx` (EventCode `code`).
    fn test<E: Fields>(&self, ctx: &mut Ctx<'_, E>, i: u32, code: Option<u32>) -> bool {
        let rule = &self.rules[i as usize];
        let in_scope = rule
            .scope
            .codes
            .map_or(true, |codes| code.is_some_and(|c| codes.contains(&c)));
        in_scope && ctx.rule(rule)
    }

    /// Events answered from remembered verdicts, and events evaluated,
    /// in `s` so far (for the end-of-search log line and benchmarks).
    pub fn memo_counts(s: &Scratch) -> (u64, u64) {
        (s.verdicts.hits, s.verdicts.misses)
    }
}

/// What the command asks splunkd to send (kept apart from the engine's own
/// API: the command's only addition).
impl RuleSet {
    /// Every field name a rule of the set tests: splunkd sends only the
    /// fields a command declares, so these join `required_fields`.
    pub fn field_names(&self) -> &[String] {
        &self.fields
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    fn set(files: &[&str]) -> RuleSet {
        let mut b = Builder::default();
        for (i, text) in files.iter().enumerate() {
            b.add(PathBuf::from(format!("r{i}.yml")), text, &Filter::default());
        }
        assert!(b.skipped.is_empty(), "{:?}", b.skipped);
        b.finish()
    }

    const A: &str = "title: A\nid: a\nlogsource:\n    category: process_creation\n\
                     detection:\n    s:\n        Image|endswith: '\\a.exe'\n    condition: s\n";
    const B: &str = "title: B\nid: b\nlogsource:\n    category: process_creation\n\
                     detection:\n    s:\n        Image|endswith: '\\b.exe'\n    condition: s\n";

    #[test]
    fn a_rule_is_its_id_and_text_and_a_set_its_rules_in_any_order() {
        let ab = set(&[A, B]);
        let ba = set(&[B, A]);
        // Stored in the process table and compared across builds: a change
        // of the digest (or of SEMANTICS) forgets every stored match.
        assert_eq!(ab.fingerprint(RuleId(0)), 0xfed1_8e95_24aa_13f1);
        assert_eq!(ab.fingerprint(RuleId(0)), ba.fingerprint(RuleId(1)));
        assert_eq!(ab.digest(), ba.digest());
        // Another detection under the same id is another rule.
        let b2 = B.replace("b.exe", "c.exe");
        let ab2 = set(&[A, &b2]);
        assert_eq!(ab2.rule(RuleId(1)).id, "b");
        assert_ne!(ab2.fingerprint(RuleId(1)), ab.fingerprint(RuleId(1)));
        assert_ne!(ab2.digest(), ab.digest());
        // A subset is another set, with the same rule fingerprints.
        let a = set(&[A]);
        assert_eq!(a.fingerprint(RuleId(0)), ab.fingerprint(RuleId(0)));
        assert_ne!(a.digest(), ab.digest());
    }
}
