//! Loading rule files into a [`RuleSet`], and the report of what was left
//! out and why.
//!
//! Nothing here fails: a missing directory or an unreadable file is a
//! *problem* in the report, a rule the engine cannot run is *skipped* with
//! its reason, a rule outside the configured level/status/ids is
//! *filtered*. The command logs the report once and runs with what loaded.

use super::compile_pool::{compile_threads, Compiled, Item, Pool};
use super::eval::{Ctx, Fields, Scratch};
use super::index::Index;
use super::rule::{self, Level, Rule};
use super::sets;
use super::walk::{self, Limits, Links};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A rule file larger than this is refused unread (SigmaHQ's largest is
/// about 40 KB): a stray big file in the rules folder must not cost memory.
pub const MAX_RULE_FILE: u64 = 1 << 20;

/// What one load may read. Generous for any real rule repository
/// (SigmaHQ's whole repository is about 3,500 rule files and 15 MB): the
/// bounds are there so a hostile folder costs seconds, not the machine.
const LIMITS: Limits = Limits {
    max_file: MAX_RULE_FILE,
    max_files: MAX_RULE_FILES,
    max_bytes: 512 << 20,
    max_entries: 1_000_000,
    max_depth: 32,
};

/// Most rule files one load reads.
pub const MAX_RULE_FILES: usize = 50_000;

/// Whether a walked file is a rule file by its name.
pub fn is_rule_file(rel: &Path) -> bool {
    rel.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
}
/// Part of every rule's fingerprint: raise it when a change of the engine
/// changes what some unchanged rule text matches, so that matches stored by
/// older builds stop counting as this build's (see [`RuleSet::fingerprint`]).
const SEMANTICS: &[u8] = b"sysmonenrich-sigma-2";

/// Which loaded rules to keep.
#[derive(Clone, Debug)]
pub struct Filter {
    /// Keep rules at this level or above.
    pub min_level: Option<Level>,
    /// Keep only these statuses (lower case); empty keeps all.
    pub status: Vec<String>,
    /// Rule ids never to load.
    pub disabled_ids: HashSet<String>,
    /// The whole set's estimated memory, in MiB: rules that would take it
    /// past this are skipped, each named (`[sigma] memory_mb`).
    pub memory_mb: u64,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            min_level: None,
            status: Vec::new(),
            disabled_ids: HashSet::new(),
            memory_mb: super::budget::DEFAULT_SET_MEMORY_MB,
        }
    }
}

impl Filter {
    fn keeps(&self, r: &Rule) -> bool {
        self.min_level.is_none_or(|m| m <= r.level)
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
    /// The installed sets read (folders named by a set pointer).
    pub sets: Vec<PathBuf>,
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
    memory: usize,
}

/// Collects rule sources and interns field names while compiling.
#[derive(Default)]
pub struct Builder {
    rules: Vec<Rule>,
    fingerprints: Vec<u64>,
    fields: Vec<String>,
    field_ids: HashMap<String, usize>,
    ids: HashSet<String>,
    /// Estimated memory of the rules kept so far.
    memory: usize,
    /// Rules not loaded, with why.
    pub skipped: Vec<Skipped>,
    /// Rules left out by the filter.
    pub filtered: usize,
}

impl Builder {
    /// Compiles one rule file's text; a rule that cannot run is recorded
    /// in `skipped`.
    #[cfg(test)]
    pub fn add(&mut self, path: PathBuf, source: &str, filter: &Filter) {
        let compiled = Compiled::new(path, source);
        self.admit(compiled, filter);
    }

    /// Keeps a compiled rule (its fields numbered in the set's table) or
    /// records why not.
    fn admit(&mut self, c: Compiled, filter: &Filter) {
        let path = c.path;
        match c.rule {
            Err(reason) => self.skipped.push(Skipped { path, reason }),
            Ok(r) if !filter.keeps(&r) => self.filtered += 1,
            Ok(r) if !self.ids.insert(r.id.clone()) => self.skipped.push(Skipped {
                path,
                reason: "duplicate rule id (an earlier file has it)".into(),
            }),
            Ok(r) if self.memory.saturating_add(r.memory) > budget_bytes(filter) => {
                self.skipped.push(Skipped {
                    path,
                    reason: format!(
                        "over the rule set's memory budget ([sigma] memory_mb = {})",
                        filter.memory_mb
                    ),
                })
            }
            Ok(mut r) => {
                let ids: Vec<usize> = c.fields.iter().map(|f| self.intern(f)).collect();
                rule::renumber_fields(&mut r, &ids);
                self.memory += r.memory;
                self.fingerprints.push(c.fingerprint);
                self.rules.push(r);
            }
        }
    }

    fn intern(&mut self, name: &str) -> usize {
        let fields = &mut self.fields;
        *self.field_ids.entry(name.to_owned()).or_insert_with(|| {
            fields.push(name.to_owned());
            fields.len() - 1
        })
    }

    /// The compiled set.
    pub fn finish(self) -> RuleSet {
        let index = Index::build(&self.rules);
        let mut sorted = self.fingerprints.clone();
        sorted.sort_unstable();
        let bytes: Vec<u8> = sorted.iter().flat_map(|f| f.to_le_bytes()).collect();
        let digest = crate::digest::of_bytes([SEMANTICS, &bytes]);
        RuleSet {
            rules: self.rules,
            fingerprints: self.fingerprints,
            digest,
            fields: self.fields,
            index,
            memory: self.memory,
        }
    }
}

fn budget_bytes(filter: &Filter) -> usize {
    usize::try_from(filter.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// A rule's identity across searches and builds: its `id`, the whole text
/// of its file (any change to detection, scope or metadata is another
/// rule) and the engine's [`SEMANTICS`].
pub(super) fn fingerprint(id: &str, source: &str) -> u64 {
    crate::digest::of_bytes([SEMANTICS, id.as_bytes(), source.as_bytes()])
}

impl RuleSet {
    /// Loads every `.yml`/`.yaml` file under the given files and
    /// directories (recursively, in path order; a folder of installed sets
    /// is read as the one set its pointer names, see `sets.rs`). Never
    /// fails: see [`LoadReport`].
    pub fn load(paths: &[PathBuf], filter: &Filter) -> LoadReport {
        let mut problems = Vec::new();
        let mut b = Builder::default();
        let mut pool = Pool::start(compile_threads());
        let admit = |b: &mut Builder, items: Vec<Item>| {
            for item in items {
                match item {
                    Item::Compiled(c) => b.admit(*c, filter),
                    Item::Skipped(s) => b.skipped.push(s),
                }
            }
        };
        let mut sets = Vec::new();
        // Held until every file is read: an install cannot remove a set
        // while this load reads it.
        let mut locks = Vec::new();
        for p in paths {
            let root = match sets::resolve(p) {
                Ok(None) => p.clone(),
                Ok(Some(set)) => {
                    let dir = set.dir.clone();
                    sets.push(dir.clone());
                    locks.push(set);
                    dir
                }
                Err(message) => {
                    problems.push(Problem {
                        path: p.clone(),
                        message,
                    });
                    continue;
                }
            };
            if !root.exists() && std::fs::symlink_metadata(&root).is_err() {
                problems.push(Problem {
                    path: p.clone(),
                    message: "does not exist".into(),
                });
                continue;
            }
            let refused = walk::walk(&root, Links::Follow, &LIMITS, is_rule_file, |f| {
                pool.submit(f.path, f.bytes);
                admit(&mut b, pool.ready());
            });
            for r in refused {
                match r.kind {
                    walk::Kind::File | walk::Kind::Dir => pool.skip(Skipped {
                        path: r.path,
                        reason: r.reason,
                    }),
                    walk::Kind::Unreadable | walk::Kind::Limit => problems.push(Problem {
                        path: r.path,
                        message: r.reason,
                    }),
                }
            }
        }
        admit(&mut b, pool.finish());
        drop(locks);
        let (skipped, filtered) = (std::mem::take(&mut b.skipped), b.filtered);
        LoadReport {
            rules: b.finish(),
            skipped,
            problems,
            filtered,
            sets,
        }
    }

    /// The compiled rules' estimated memory in bytes, as charged against
    /// `[sigma] memory_mb`.
    pub fn estimated_memory(&self) -> usize {
        self.memory
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
        self.index.always_count(&self.rules)
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
        s.candidates.sort_unstable();
        s.candidates
    }

    /// Fills `s.candidates` for an event of EventCode `code`.
    fn select<E: Fields>(&self, ev: &E, code: Option<u32>, s: &mut Scratch) {
        s.next_event(self.fields.len());
        let mut out = std::mem::take(&mut s.candidates);
        let mut hits = std::mem::take(&mut s.hits);
        let mut scans = std::mem::take(&mut s.scans);
        self.index.candidates(
            &self.rules,
            code,
            &mut Ctx::new(ev, &self.fields, s),
            &mut out,
            &mut hits,
            &mut scans,
        );
        s.candidates = out;
        s.hits = hits;
        s.scans = scans;
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
        let plan = self.index.plan(&self.rules, code);
        let mut key = std::mem::take(&mut s.verdicts.key);
        let keyed = s.verdicts.admit(code)
            && plan.key(
                code,
                |f| ev.get_field(f, &self.fields[f]).unwrap_or(""),
                || ev.event_type().unwrap_or(""),
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
        // Candidates come in no particular order; the rules that matched
        // are given in `RuleId` order.
        out[start..].sort_unstable();
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
            .is_none_or(|codes| code.is_some_and(|c| codes.contains(&c)));
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
