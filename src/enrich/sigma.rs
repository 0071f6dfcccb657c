//! Sigma inside the command: every row matched against the search's rule
//! set in pass 1 (while its record is at hand), its cells written in pass 2.
//!
//! Every row is evaluated on its own fields, creation rows included (the
//! rule set's index only tries the rules of the row's EventCode, and
//! verdicts remembered by field values answer repeats): a creation row's
//! `sigma_ids` never come from another row, another search or another
//! rule set. A creation's matches are also kept with the process (by
//! GUID), so that every later event of it, and every descendant, names
//! them in `lineage_sigma`.
//!
//! Matches of ancestors known only from the process table come from what
//! earlier searches recorded, by rule fingerprint (`state/sigma.rs`): a
//! stored match counts only for a rule this search loaded in that very
//! version. A rule of this search that the recording search did not have
//! is not named for such an ancestor: its creation's fields are not
//! stored, so it cannot be evaluated, and "no match" is the only claim
//! that is not made up.

use super::columns::{self, NO_SIGMA};
use super::sigma_pool::Pool;
use crate::lineage::{Engine, GuidMap, ProcessInfo};
use crate::protocol::multivalue::{push_joined_cell, push_mv_cell};
use crate::protocol::records::{Header, RowReader};
use crate::sigma::{Fields, Level, RuleId, RuleSet, Scratch};
use crate::state::StateStore;
use crate::sysmon::ProcessGuid;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// Processes whose creation matches are remembered at most; past this the
/// memory is cleared (costing only `lineage_sigma` of older ancestors).
const MAX_PROCESSES: usize = 500_000;

/// A process's creation as Sigma saw it.
struct Creation {
    image: Box<[u8]>,
    rules: Box<[RuleId]>,
    /// Evaluated by this search on a row (else read from the process
    /// table, and replaced by the search's own evaluation of a row).
    own: bool,
}

/// Where a row's lineage Sigma walk starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Walk {
    /// No process: no `lineage_sigma`.
    None,
    /// A process creation: its ancestors (its own matches are its row's).
    Parent(Option<ProcessGuid>),
    /// Another event: its acting process, then that process's ancestors.
    Process(ProcessGuid),
}

/// Sigma's state for one search.
pub struct SigmaRun {
    rules: Arc<RuleSet>,
    /// Header name → column, for the current layout.
    columns: HashMap<Box<str>, usize>,
    /// Columns searched by keyword rules (not `_raw`, not `__mv_*`).
    value_columns: Vec<usize>,
    /// The rule set's field number → column of the header.
    field_columns: Vec<Option<usize>>,
    /// The columns of `EventCode` and `EventType`, asked of every row.
    code_columns: CodeColumns,
    /// The header `columns` was built for.
    header: Option<Header>,
    /// Creation matches by process.
    creations: GuidMap<Creation>,
    /// Matches of the chunk's rows, flat, and each row's range.
    matched: Vec<RuleId>,
    rows: Vec<(Range<u32>, Walk)>,
    /// `lineage_sigma` cells (plain and `__mv_`) rendered once per chunk
    /// for each walk start: every row of a process shares them.
    lineage_cells: GuidMap<(Range<usize>, Range<usize>)>,
    lineage_bytes: Vec<u8>,
    /// Scratch: the engine's buffers, kept from one event to the next.
    buf: Vec<RuleId>,
    scratch: Scratch,
    /// Threads evaluating a chunk's rows ahead of pass 1 (`None`: pass 1
    /// evaluates each row itself).
    pool: Option<Pool>,
    values: Vec<Vec<u8>>,
    /// Matched creations of the current chunk (index in the chunk's
    /// creations, rule fingerprints), for the process table.
    unsaved: Vec<(u32, Vec<u64>)>,
    /// Rule fingerprint → [`RuleId`], for matches read back from the table.
    by_fingerprint: HashMap<u64, RuleId>,
    /// Rows with at least one match, this search.
    pub(super) rows_matched: u64,
}

impl SigmaRun {
    /// Sigma for a search with these rules.
    pub fn new(rules: Arc<RuleSet>) -> SigmaRun {
        SigmaRun {
            rules,
            columns: HashMap::new(),
            value_columns: Vec::new(),
            field_columns: Vec::new(),
            code_columns: CodeColumns::default(),
            header: None,
            creations: GuidMap::default(),
            matched: Vec::new(),
            rows: Vec::new(),
            lineage_cells: GuidMap::default(),
            lineage_bytes: Vec::new(),
            buf: Vec::new(),
            scratch: new_scratch(),
            pool: None,
            values: Vec::new(),
            unsaved: Vec::new(),
            by_fingerprint: HashMap::new(),
            rows_matched: 0,
        }
    }

    /// Evaluates rows on up to `threads` threads (capped at the cores).
    pub fn with_threads(mut self, threads: usize) -> SigmaRun {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = threads.min(cores);
        self.pool = (n > 1).then(|| Pool::new(n, new_scratch));
        self
    }

    /// Events answered from remembered verdicts, and events evaluated.
    pub(super) fn remembered(&self) -> (u64, u64) {
        let (h, m) = RuleSet::memo_counts(&self.scratch);
        let (ph, pm) = self.pool.as_ref().map_or((0, 0), Pool::remembered);
        (h + ph, m + pm)
    }

    /// With a pool: evaluates every row of the chunk `body` now, on the
    /// pool's threads, for pass 1 to take (after [`SigmaRun::start_chunk`]).
    pub(super) fn evaluate_chunk(&mut self, body: &[u8], max_field: usize) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        let rules = &*self.rules;
        let code_columns = self.code_columns;
        let (columns, value_columns, field_columns) = (
            &self.columns,
            &self.value_columns[..],
            &self.field_columns[..],
        );
        pool.evaluate(body, max_field, |reader, scratch, out| {
            let row = RowFields {
                reader,
                columns,
                value_columns,
                field_columns,
                code_columns,
            };
            rules.matches_with(&row, scratch, out);
        });
    }

    /// The search's rules.
    pub(super) fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// The field names the rules test.
    pub(super) fn field_names(&self) -> impl Iterator<Item = &str> {
        self.rules.field_names().iter().map(String::as_str)
    }

    /// Prepares for a chunk under `header`.
    pub(super) fn start_chunk(&mut self, header: &Header) {
        self.matched.clear();
        self.rows.clear();
        // Ancestors and their matches may have grown since the last chunk.
        self.lineage_cells.clear();
        self.lineage_bytes.clear();
        if self.header.as_ref() == Some(header) {
            return;
        }
        self.columns.clear();
        self.value_columns.clear();
        for (i, name) in header.names().iter().enumerate() {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            self.columns.entry(name.into()).or_insert(i);
            if name != "_raw"
                && !name.starts_with("__mv_")
                && !columns::is_owned(name.as_bytes(), true)
            {
                self.value_columns.push(i);
            }
        }
        self.field_columns = self
            .rules
            .field_names()
            .iter()
            .map(|n| self.columns.get(n.as_str()).copied())
            .collect();
        self.code_columns = CodeColumns {
            code: self.columns.get("EventCode").copied(),
            kind: self.columns.get("EventType").copied(),
        };
        self.header = Some(header.clone());
    }

    /// Pass 1: matches the current row of `reader`. `creation` is the
    /// creation a creation row brings (its index among the chunk's
    /// creations, its GUID and image), else `None`.
    pub(super) fn read_row(
        &mut self,
        reader: &RowReader<'_>,
        creation: Option<(u32, ProcessGuid, &[u8])>,
        walk: Walk,
    ) {
        let start = self.matched.len() as u32;
        self.buf.clear();
        let ahead = self.pool.as_ref().and_then(|p| p.matches(self.rows.len()));
        match ahead {
            Some(ids) => self.buf.extend_from_slice(ids),
            None => {
                let row = RowFields {
                    reader,
                    columns: &self.columns,
                    value_columns: &self.value_columns,
                    field_columns: &self.field_columns,
                    code_columns: self.code_columns,
                };
                self.rules
                    .matches_with(&row, &mut self.scratch, &mut self.buf);
            }
        }
        self.matched.extend_from_slice(&self.buf);
        if let Some((index, guid, image)) = creation {
            if !self.buf.is_empty() {
                // Every creation row's own matches, each for its own
                // creation: the table's writer keeps those of the one it
                // stores.
                let fps = self.fingerprints(&self.buf);
                self.unsaved.push((index, fps));
            }
            // For `lineage_sigma` the first creation this search saw wins,
            // as in the lineage engine. What came from the table gives way
            // to this search's evaluation of the same process, not to a
            // creation with another image: the lineage engine, which met
            // the table's creation first, shows that one on descendants.
            let replace = match self.creations.get(&guid) {
                None => true,
                Some(c) => !c.own && (c.image.is_empty() || *c.image == *image),
            };
            if replace {
                let rules: Box<[RuleId]> = self.buf.as_slice().into();
                // A creation without matches is remembered too (what the
                // table recorded for the process is then not read), without
                // its image.
                let image = if rules.is_empty() {
                    Box::default()
                } else {
                    Box::from(image)
                };
                self.remember(guid, image, rules, true);
            }
        }
        let end = self.matched.len() as u32;
        if end > start {
            self.rows_matched += 1;
        }
        self.rows.push((start..end, walk));
    }

    /// Pass 2: appends row `i`'s Sigma cells (leading commas included), in
    /// `columns::SIGMA` order.
    /// `engine` links ancestors for `lineage_sigma`.
    pub(super) fn write_row(&mut self, i: usize, engine: Option<&Engine>, out: &mut Vec<u8>) {
        let Some((range, walk)) = self.rows.get(i).cloned() else {
            out.extend_from_slice(NO_SIGMA);
            return;
        };
        let (plain, mv) = self.lineage_sigma_cells(walk, engine);
        let ids = &self.matched[range.start as usize..range.end as usize];
        let rules = &self.rules;
        let mut tags: Vec<&str> = Vec::new();
        let mut authors: Vec<&str> = Vec::new();
        let mut level: Option<Level> = None;
        for &id in ids {
            let r = rules.rule(id);
            level = level.max(Some(r.level));
            for t in &r.tags {
                let attack = t
                    .get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("attack."));
                if attack && !tags.contains(&t.as_str()) {
                    tags.push(t);
                }
            }
            if !r.author.is_empty() && !authors.contains(&r.author.as_str()) {
                authors.push(&r.author);
            }
        }
        let id_vals = || ids.iter().map(|&id| rules.rule(id).id.as_bytes());
        let title_vals = || ids.iter().map(|&id| rules.rule(id).title.as_bytes());
        out.push(b',');
        push_joined_cell(out, id_vals());
        out.push(b',');
        push_joined_cell(out, title_vals());
        out.push(b',');
        if let Some(l) = level {
            out.extend_from_slice(l.as_str().as_bytes());
        }
        out.push(b',');
        push_joined_cell(out, tags.iter().map(|t| t.as_bytes()));
        out.push(b',');
        push_joined_cell(out, authors.iter().map(|a| a.as_bytes()));
        out.push(b',');
        out.extend_from_slice(&self.lineage_bytes[plain]);
        out.push(b',');
        push_mv_cell(out, id_vals());
        out.push(b',');
        push_mv_cell(out, title_vals());
        out.push(b',');
        push_mv_cell(out, tags.iter().map(|t| t.as_bytes()));
        out.push(b',');
        push_mv_cell(out, authors.iter().map(|a| a.as_bytes()));
        out.push(b',');
        out.extend_from_slice(&self.lineage_bytes[mv]);
    }

    /// The `lineage_sigma` cells (plain, `__mv_`) of a walk, as ranges of
    /// `lineage_bytes`: rendered on the first row of a walk start in this
    /// chunk, copied for the others.
    fn lineage_sigma_cells(
        &mut self,
        walk: Walk,
        engine: Option<&Engine>,
    ) -> (Range<usize>, Range<usize>) {
        let start = match walk {
            Walk::None => None,
            Walk::Parent(p) => p,
            Walk::Process(g) => Some(g),
        };
        let Some(start) = start.filter(|g| !g.is_zero() && !self.creations.is_empty()) else {
            return (0..0, 0..0);
        };
        if let Some(r) = self.lineage_cells.get(&start) {
            return r.clone();
        }
        self.values.clear();
        lineage_sigma(
            &self.creations,
            &self.rules,
            engine,
            walk,
            engine.map_or(64, Engine::max_depth),
            &mut self.values,
        );
        let lin = || self.values.iter().map(Vec::as_slice);
        let a = self.lineage_bytes.len();
        push_joined_cell(&mut self.lineage_bytes, lin());
        let b = self.lineage_bytes.len();
        push_mv_cell(&mut self.lineage_bytes, lin());
        let r = (a..b, b..self.lineage_bytes.len());
        self.lineage_cells.insert(start, r.clone());
        r
    }
}

impl SigmaRun {
    /// Reads back what earlier searches recorded for ancestors that came
    /// from the process table (`guids`), so `lineage_sigma` names them too.
    /// Only matches of rules this search loaded, in the same version (same
    /// fingerprint), count.
    pub(super) fn learn_from_state(
        &mut self,
        state: &StateStore,
        guids: &[ProcessGuid],
        engine: &Engine,
    ) -> Result<(), crate::state::StateError> {
        let ask: Vec<u128> = guids
            .iter()
            .filter(|g| !self.creations.contains_key(g))
            .map(|g| g.as_u128())
            .collect();
        if ask.is_empty() {
            return Ok(());
        }
        let found = state.process_sigma(&ask)?;
        if found.is_empty() {
            return Ok(());
        }
        if self.by_fingerprint.is_empty() {
            self.by_fingerprint = (0..self.rules.len() as u32)
                .map(|i| (self.rules.fingerprint(RuleId(i)), RuleId(i)))
                .collect();
        }
        for (guid, fps) in found {
            let guid = ProcessGuid::from_u128(guid);
            let mut rules: Vec<RuleId> = fps
                .iter()
                .filter_map(|f| self.by_fingerprint.get(f).copied())
                .collect();
            rules.sort_unstable();
            rules.dedup();
            let image = engine
                .get(guid)
                .map(|(p, _)| Box::from(p.image))
                .unwrap_or_default();
            self.remember(guid, image, rules.into(), false);
        }
        Ok(())
    }

    /// Remembers what backfill's ancestors (`found`) matched (`matches`,
    /// evaluated as they arrived), for `lineage_sigma` and the process
    /// table, like the search's own creations. `found` joins the chunk's
    /// creations at index `base` in the batch the table's writer gets.
    pub(super) fn learn_found(
        &mut self,
        matches: Vec<(ProcessGuid, Vec<RuleId>)>,
        found: &[ProcessInfo],
        base: usize,
    ) {
        if matches.is_empty() {
            return;
        }
        let mut at: HashMap<ProcessGuid, usize> = HashMap::with_capacity(found.len());
        for (i, p) in found.iter().enumerate() {
            at.entry(p.guid).or_insert(i);
        }
        for (guid, mut rules) in matches {
            if self.creations.get(&guid).is_some_and(|c| c.own) {
                continue;
            }
            let Some(&i) = at.get(&guid) else {
                continue;
            };
            rules.sort_unstable();
            rules.dedup();
            let image = Box::from(&*found[i].image);
            if let Ok(index) = u32::try_from(base + i) {
                let fps = self.fingerprints(&rules);
                self.unsaved.push((index, fps));
            }
            self.remember(guid, image, rules.into(), true);
        }
    }

    /// Keeps a process's creation matches (forgetting them all past
    /// [`MAX_PROCESSES`], which costs only older ancestors' `lineage_sigma`).
    fn remember(&mut self, guid: ProcessGuid, image: Box<[u8]>, rules: Box<[RuleId]>, own: bool) {
        if self.creations.len() >= MAX_PROCESSES {
            self.creations.clear();
        }
        self.creations.insert(guid, Creation { image, rules, own });
    }

    /// The fingerprints of `rules`, as the process table records them.
    fn fingerprints(&self, rules: &[RuleId]) -> Vec<u64> {
        rules.iter().map(|&id| self.rules.fingerprint(id)).collect()
    }

    /// The chunk's matched creations (index among the chunk's creations,
    /// rule fingerprints), for the process table's writer, which stores
    /// them only where it trusts the creation.
    pub(super) fn take_unsaved(&mut self, into: &mut Vec<(u32, Vec<u64>)>) {
        into.append(&mut self.unsaved);
    }
}

/// `<image>: <title>` for every rule matched by the creation of the
/// processes along the walk, nearest first.
fn lineage_sigma(
    creations: &GuidMap<Creation>,
    rules: &RuleSet,
    engine: Option<&Engine>,
    walk: Walk,
    max_depth: usize,
    out: &mut Vec<Vec<u8>>,
) {
    let mut next = match walk {
        Walk::None => return,
        Walk::Parent(p) => p,
        Walk::Process(g) => Some(g),
    };
    // max_depth bounds the walk (and so any cycle in forged data).
    for _ in 0..=max_depth {
        let Some(guid) = next.filter(|g| !g.is_zero()) else {
            return;
        };
        if let Some(c) = creations.get(&guid) {
            for &id in c.rules.iter() {
                let mut v = c.image.to_vec();
                v.extend_from_slice(b": ");
                v.extend_from_slice(rules.rule(id).title.as_bytes());
                out.push(v);
            }
        }
        next = engine
            .and_then(|e| e.get(guid))
            .and_then(|(p, _)| p.parent_guid);
    }
}

/// A row of the chunk as the Sigma engine sees it.
/// A scratch for one thread of a search. `SYSMONENRICH_SIGMA_MEMO=0`
/// evaluates every event in full: the throughput bench's `sigma-cold`
/// variant, and a way to rule the remembered verdicts out when a match
/// looks wrong.
fn new_scratch() -> Scratch {
    if std::env::var_os("SYSMONENRICH_SIGMA_MEMO").is_some_and(|v| v == "0") {
        Scratch::forgetful()
    } else {
        Scratch::default()
    }
}

struct RowFields<'a, 'r> {
    reader: &'a RowReader<'r>,
    columns: &'a HashMap<Box<str>, usize>,
    value_columns: &'a [usize],
    field_columns: &'a [Option<usize>],
    code_columns: CodeColumns,
}

/// Where a header holds `EventCode` and `EventType`.
#[derive(Clone, Copy, Default)]
struct CodeColumns {
    code: Option<usize>,
    kind: Option<usize>,
}

impl Fields for RowFields<'_, '_> {
    fn get(&self, name: &str) -> Option<&str> {
        let i = *self.columns.get(name)?;
        self.reader.field_text(i)
    }

    fn get_field(&self, id: usize, name: &str) -> Option<&str> {
        match self.field_columns.get(id) {
            Some(&Some(i)) => self.reader.field_text(i),
            Some(None) => None,
            None => self.get(name),
        }
    }

    fn event_code_text(&self) -> Option<&str> {
        self.reader.field_text(self.code_columns.code?)
    }

    fn event_type(&self) -> Option<&str> {
        self.reader.field_text(self.code_columns.kind?)
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.value_columns
            .iter()
            .filter(|&&i| self.reader.has_value(i))
            .filter_map(|&i| self.reader.field_text(i))
    }
}
