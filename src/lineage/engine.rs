//! The engine: index creations, report the frontier, resolve rows.

use super::chain::{Chain, StopReason};
use super::hash::{GuidBuildHasher, GuidMap, GuidSet};
use super::process::{ProcessInfo, ProcessRef, SourceKind};
use super::rules::{RuleScratch, Rules};
use super::table::{Fill, ProcessTable};
use crate::sysmon::event::Event;
use crate::sysmon::guid::ProcessGuid;
use crate::sysmon::hashes::FileHashes;
use std::sync::Arc;

/// Default `max_depth`: deeper than any real Windows tree (the datasets top
/// out at 6), shallow enough that a corrupt cycle-free chain stays cheap.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Largest `max_depth` accepted; larger settings are clamped.
pub const MAX_MAX_DEPTH: usize = 1024;
/// Default in-memory table size (entries): about 120 MB when full with
/// typical Sysmon creation events (≈ 610 bytes each, measured).
pub const DEFAULT_CAPACITY: usize = 200_000;
/// Default byte budget of the process table: above what
/// [`DEFAULT_CAPACITY`] ordinary entries take (≈ 120 MB), so on ordinary
/// data the count binds and the budget only stops big command lines.
pub const DEFAULT_MEMORY_BYTES: usize = 160 << 20;
/// GUIDs remembered as "no source has it" before that memory is reset.
const MAX_MISSES: usize = 100_000;

/// Engine limits. Named fields, so the two numbers cannot be swapped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LineageSettings {
    /// Entries in the in-memory process table (least recently used
    /// evicted beyond it). Keep it well above the process creations of one
    /// chunk plus their ancestors, or a chunk's own chains get cut.
    pub capacity: usize,
    /// Most bytes the table's entries may hold together (see
    /// `table`'s docs: long command lines make entries big).
    pub memory_bytes: usize,
    /// Longest chain (entries); clamped to `1..=MAX_MAX_DEPTH`.
    pub max_depth: usize,
}

impl Default for LineageSettings {
    fn default() -> Self {
        LineageSettings {
            capacity: DEFAULT_CAPACITY,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// What a row's chain hangs from, without borrowing the row: enough to
/// compute the frontier for a whole chunk.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// A process-creation row: the chain starts with the row's own parent.
    Created {
        /// The row's `ProcessGuid`.
        guid: ProcessGuid,
        /// The row's `ParentProcessGuid`.
        parent: Option<ProcessGuid>,
    },
    /// Any other event: the chain of the acting process.
    Acting(ProcessGuid),
}

impl Anchor {
    /// The anchor of an event; `None` when it names no process.
    pub fn from_event(event: &Event<'_>) -> Option<Anchor> {
        let guid = event.guid?;
        Some(if event.is_process_creation() {
            Anchor::Created {
                guid,
                parent: event.parent_guid,
            }
        } else {
            Anchor::Acting(guid)
        })
    }
}

/// A row to resolve, borrowing its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start<'a> {
    /// A process-creation row: the chain starts from the row's own
    /// `Parent*` fields (source `results`), whatever the table holds for
    /// its GUID.
    Creation {
        /// The row's `ProcessGuid`.
        guid: ProcessGuid,
        /// The row's `Image`.
        image: &'a [u8],
        /// The row's `ParentProcessGuid`.
        parent_guid: Option<ProcessGuid>,
        /// The row's `ParentImage`.
        parent_image: &'a [u8],
        /// The row's `ParentCommandLine`.
        parent_command_line: &'a [u8],
    },
    /// Any other event: exactly the chain of the acting process's
    /// creation; `image` (the event's `Image`) is used for `lineage` only
    /// when the creation is unknown.
    Process {
        /// The acting `ProcessGuid` (8/10: the source process).
        guid: ProcessGuid,
        /// The event's image of the acting process.
        image: &'a [u8],
    },
}

impl<'a> Start<'a> {
    /// The start of an event; `None` when it names no process (no lineage).
    pub fn from_event(event: &'a Event<'_>) -> Option<Start<'a>> {
        if let Some(info) = ProcessRef::from_event(event) {
            return Some(Start::creation(&info));
        }
        Some(Start::Process {
            guid: event.guid?,
            image: &event.image,
        })
    }

    /// The start of a process-creation row.
    pub fn creation(info: &ProcessRef<'a>) -> Start<'a> {
        Start::Creation {
            guid: info.guid,
            image: info.image,
            parent_guid: info.parent_guid,
            parent_image: info.parent_image,
            parent_command_line: info.parent_command_line,
        }
    }

    /// The row-independent part (see [`Anchor`]).
    pub fn anchor(&self) -> Anchor {
        match *self {
            Start::Creation {
                guid, parent_guid, ..
            } => Anchor::Created {
                guid,
                parent: parent_guid,
            },
            Start::Process { guid, .. } => Anchor::Acting(guid),
        }
    }
}

/// The lineage engine of one search: the process table plus what the
/// frontier and backfill remember. Pure: no I/O, no clock, no threads.
pub struct Engine {
    table: ProcessTable,
    max_depth: usize,
    /// GUIDs every source was asked for and none had (see
    /// [`Engine::note_missing`]).
    misses: GuidSet,
    /// [`Engine::frontier`]'s working sets, kept between chunks so that
    /// each call does not grow three hash tables from nothing again.
    scratch: FrontierScratch,
    /// Entries without their parent's image or command line whose parent
    /// was not in the table yet (see [`Engine::fill_parent_text`]).
    unfilled: GuidSet,
}

#[derive(Default)]
struct FrontierScratch {
    wanted: GuidSet,
    walked: GuidMap<u32>,
    acting_seen: GuidSet,
}

impl Engine {
    /// An empty engine.
    pub fn new(settings: LineageSettings) -> Engine {
        Engine {
            table: ProcessTable::new(settings.capacity, settings.memory_bytes),
            max_depth: settings.max_depth.clamp(1, MAX_MAX_DEPTH),
            misses: GuidSet::with_hasher(GuidBuildHasher::new()),
            scratch: FrontierScratch::default(),
            unfilled: GuidSet::with_hasher(GuidBuildHasher::new()),
        }
    }

    /// The effective `max_depth`.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The table's cap.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// What the table's entries hold together, as its byte budget counts.
    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Entries dropped so far to stay within the cap.
    pub fn evictions(&self) -> u64 {
        self.table.evictions()
    }

    /// Indexes a process creation. First info for a GUID wins (documented
    /// on the table: deterministic, and a row of this search is never
    /// replaced by a later backfill answer); a repeat only counts as use.
    /// Returns true when the GUID was new.
    pub fn index(&mut self, info: &ProcessRef<'_>, source: SourceKind) -> bool {
        self.table.insert(info, source)
    }

    /// [`Engine::index`] for owned info (what sources return).
    pub fn insert(&mut self, info: &ProcessInfo, source: SourceKind) -> bool {
        self.table.insert(&info.as_ref(), source)
    }

    /// True when the creation info of `guid` is in the table.
    pub fn contains(&self, guid: ProcessGuid) -> bool {
        self.peek(guid).is_some()
    }

    /// The creation record of `guid`, counted as use (what a chain walk
    /// does for each entry it passes).
    pub fn record(&mut self, guid: ProcessGuid) -> Option<super::Record<'_>> {
        let i = self.table.find_touch(guid)?;
        Some(self.table.entry(i))
    }

    /// The creation record of `guid`, without counting as use.
    pub fn peek(&self, guid: ProcessGuid) -> Option<super::Record<'_>> {
        Some(self.table.entry(self.table.find(guid)?))
    }

    /// The creation info of `guid` and where it came from (does not count
    /// as use).
    pub fn get(&self, guid: ProcessGuid) -> Option<(ProcessRef<'_>, SourceKind)> {
        let e = self.peek(guid)?;
        Some((e.to_ref(), e.source()))
    }

    /// The GUIDs whose creation info would extend some anchor's chain by
    /// one level: for each chain, the first entry whose creation is
    /// unknown (or the acting process itself), unless the chain already
    /// ends (no parent, cycle, `max_depth`). Deduplicated, in order of
    /// first need (anchor order), so batches are deterministic. Entries
    /// walked through count as used, which keeps this chunk's ancestors
    /// safe from eviction by the backfill that follows.
    pub fn frontier(&mut self, anchors: &[Anchor]) -> Vec<ProcessGuid> {
        let mut out = Vec::new();
        let FrontierScratch {
            wanted,
            walked,
            acting_seen,
        } = &mut self.scratch;
        wanted.clear();
        // GUID -> smallest depth index at which a walk this call passed
        // through it. A later walk arriving at the same GUID no shallower
        // has nothing new to find: many rows share ancestors, so this turns
        // O(rows × depth) into O(distinct processes).
        walked.clear();
        acting_seen.clear();
        let mut want = |g: ProcessGuid, out: &mut Vec<ProcessGuid>| {
            if wanted.insert(g) {
                out.push(g);
            }
        };
        for anchor in anchors {
            let (own, first) = match *anchor {
                Anchor::Created { guid, parent } => (guid, parent),
                Anchor::Acting(guid) => {
                    // The all-zero GUID names no process (`<unknown
                    // process>`): nothing to look up anywhere.
                    if guid.is_zero() || !acting_seen.insert(guid) {
                        continue;
                    }
                    match self.table.find_touch(guid) {
                        None => {
                            want(guid, &mut out);
                            continue;
                        }
                        Some(i) => (guid, self.table.entry(i).parent()),
                    }
                }
            };
            let Some(mut cur) = first else { continue };
            if cur == own {
                continue;
            }
            // `depth` = index of `cur` in the chain.
            let mut depth = 0u32;
            loop {
                if cur.is_zero() {
                    break;
                }
                match walked.get_mut(&cur) {
                    Some(d) if *d <= depth => break,
                    Some(d) => *d = depth,
                    None => {
                        walked.insert(cur, depth);
                    }
                }
                if depth as usize + 1 >= self.max_depth {
                    // The chain is full at `cur`: resolution will say
                    // truncated (or cycle) without needing more.
                    break;
                }
                match self.table.find_touch(cur) {
                    None => {
                        want(cur, &mut out);
                        break;
                    }
                    Some(i) => match self.table.entry(i).parent() {
                        // A repeat (cycle) is caught by `walked` next turn.
                        Some(next) if next != own => {
                            cur = next;
                            depth += 1;
                        }
                        _ => break,
                    },
                }
            }
        }
        out
    }

    /// Gives the entries of `guids` whose creation lacked the parent's image
    /// or command line (data without `Parent*` fields) those of the
    /// parent's own creation, when the table has it; entries whose parent
    /// is still unknown are tried again at every later call (the parent
    /// usually arrives in a later chunk). Call after indexing and backfill,
    /// before resolving. Data with `Parent*` fields costs nothing here:
    /// callers pass only the creations that lacked them.
    pub fn fill_parent_text(&mut self, guids: impl IntoIterator<Item = ProcessGuid>) {
        let mut waiting = std::mem::take(&mut self.unfilled);
        waiting.extend(guids);
        for g in waiting.drain() {
            let Some(i) = self.table.find(g) else {
                continue;
            };
            if self.table.fill_parent_text(i) == Fill::ParentUnknown
                && self.unfilled.len() < MAX_MISSES
            {
                self.unfilled.insert(g);
            }
        }
    }

    /// Records that no source has `guid`, so later chunks of this search do
    /// not ask again (a root started before the searched time range stays
    /// missing). The memory is capped; past the cap it starts over.
    pub fn note_missing(&mut self, guid: ProcessGuid) {
        if self.misses.len() >= MAX_MISSES {
            self.misses.clear();
        }
        self.misses.insert(guid);
    }

    /// True when every source already said it does not have `guid`.
    pub fn is_known_missing(&self, guid: ProcessGuid) -> bool {
        self.misses.contains(&guid)
    }

    /// A resolver for this chunk: applies `rules` and flags the nearest
    /// ancestor whose hashes `is_malicious` accepts. It caches chains per
    /// acting GUID for its lifetime, so create one per chunk, after all
    /// indexing and backfill (it borrows the engine, so nothing can change
    /// the table under the cache).
    pub fn resolver<'e, F>(&'e mut self, rules: &'e Rules, is_malicious: F) -> Resolver<'e, F>
    where
        F: Fn(&FileHashes) -> bool,
    {
        Resolver {
            engine: self,
            rules,
            is_malicious,
            cache: GuidMap::with_hasher(GuidBuildHasher::new()),
            scratch: RuleScratch::default(),
        }
    }

    /// Builds the chain of one start into `chain` (no rules, no cache):
    /// see [`Resolver::resolve`]. Three steps: where the chain hangs from
    /// ([`Engine::head`]), its first entry ([`first_entry`]), then the
    /// walk up the table ([`Engine::walk`]).
    fn build(
        &mut self,
        start: &Start<'_>,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        chain: &mut Chain,
    ) {
        let Some(head) = self.head(start, chain) else {
            chain.set_stop(StopReason::ProcessNotFound);
            return;
        };
        let own = head.own;
        if let Err(stop) = first_entry(&head, chain) {
            chain.set_stop(stop);
            return;
        }
        let stop = self.walk(own, is_malicious, chain);
        chain.set_stop(stop);
    }

    /// Resets `chain` to the start's own image and returns what its first
    /// entry comes from: the row itself (a creation) or the table's entry
    /// for the acting process; `None` when that process is unknown (the
    /// chain then shows the row's image alone).
    fn head<'s>(&'s mut self, start: &Start<'s>, chain: &mut Chain) -> Option<Head<'s>> {
        match *start {
            Start::Creation {
                guid,
                image,
                parent_guid,
                parent_image,
                parent_command_line,
            } => {
                chain.reset(image);
                Some(Head {
                    own: guid,
                    parent: parent_guid,
                    parent_image,
                    parent_command_line,
                    source: SourceKind::Results,
                })
            }
            Start::Process { guid, image } => {
                let Some(i) = self.table.find_touch(guid) else {
                    chain.reset(image);
                    return None;
                };
                let e = self.table.entry(i);
                // An entry without an image (a backfill answer missing the
                // field) still shows the row's.
                chain.reset(if e.image().is_empty() {
                    image
                } else {
                    e.image()
                });
                Some(Head {
                    own: guid,
                    parent: e.parent(),
                    parent_image: e.parent_image(),
                    parent_command_line: e.parent_command_line(),
                    source: e.source(),
                })
            }
        }
    }

    /// Climbs from the chain's last entry through the table until the
    /// chain ends: the root (the zero GUID), an unknown creation, a
    /// repeat, or `max_depth`. Flags the nearest malicious ancestor.
    fn walk(
        &mut self,
        own: ProcessGuid,
        is_malicious: &dyn Fn(&FileHashes) -> bool,
        chain: &mut Chain,
    ) -> StopReason {
        let mut malicious_found = false;
        loop {
            // The chain holds at least one entry here.
            let index = chain.depth() - 1;
            let Some(last) = chain.last_guid() else {
                return StopReason::ParentNotFound;
            };
            if last.is_zero() {
                return StopReason::NoParent;
            }
            let Some(i) = self.table.find_touch(last) else {
                // Full and unknown: we chose not to look further, so it is
                // truncated rather than partial.
                return if chain.depth() >= self.max_depth {
                    StopReason::MaxDepth
                } else {
                    StopReason::ParentNotFound
                };
            };
            let e = self.table.entry(i);
            if !malicious_found && e.hashes().is_some_and(is_malicious) {
                chain.set_malicious(index);
                malicious_found = true;
            }
            let Some(next) = e.parent() else {
                return StopReason::ParentGuidMissing;
            };
            if next == own || chain.contains(next) {
                return StopReason::Cycle;
            }
            if chain.depth() >= self.max_depth {
                return StopReason::MaxDepth;
            }
            chain.push(next, e.parent_image(), e.parent_command_line(), e.source());
        }
    }
}

/// Where a chain hangs from: its process and what its creation says about
/// the parent (the chain's first entry).
struct Head<'a> {
    own: ProcessGuid,
    parent: Option<ProcessGuid>,
    parent_image: &'a [u8],
    parent_command_line: &'a [u8],
    source: SourceKind,
}

/// Pushes the chain's first entry, the parent as `head` reports it, or
/// says why there is none: no parent GUID, or the process is its own
/// parent.
fn first_entry(head: &Head<'_>, chain: &mut Chain) -> Result<(), StopReason> {
    match head.parent {
        None => Err(StopReason::ParentGuidMissing),
        Some(p) if p == head.own => Err(StopReason::Cycle),
        Some(p) => {
            chain.push(p, head.parent_image, head.parent_command_line, head.source);
            Ok(())
        }
    }
}

/// Resolves the rows of one chunk (see [`Engine::resolver`]).
///
/// Two ways to use it: [`Resolver::resolve`] shares one `Arc`'d chain
/// among the rows of a process; [`Resolver::build_into`] fills a caller's
/// chain buffer, for callers that cache the rendered text themselves.
pub struct Resolver<'e, F> {
    engine: &'e mut Engine,
    rules: &'e Rules,
    is_malicious: F,
    cache: GuidMap<Arc<Chain>>,
    scratch: RuleScratch,
}

impl<F: Fn(&FileHashes) -> bool> Resolver<'_, F> {
    /// The chain of one row, rules applied, built into `chain` (its
    /// buffers are reused; nothing is cached).
    pub fn build_into(&mut self, start: &Start<'_>, chain: &mut Chain) {
        self.engine.build(start, &self.is_malicious, chain);
        let mut flags = std::mem::take(chain.flags_mut());
        self.rules.evaluate(chain, &mut self.scratch, &mut flags);
        *chain.flags_mut() = flags;
    }

    /// The chain of one row, rules applied.
    ///
    /// Rows of the same acting process (non-creation events) share one
    /// cached chain: the common case (image loads, registry, process
    /// access) costs one hash lookup and a reference-count increment.
    /// Creation rows are built from their own `Parent*` fields each time
    /// (they are mostly distinct processes anyway).
    pub fn resolve(&mut self, start: &Start<'_>) -> Arc<Chain> {
        if let Start::Process { guid, .. } = start {
            if let Some(c) = self.cache.get(guid) {
                return Arc::clone(c);
            }
        }
        let mut chain = Chain::default();
        self.build_into(start, &mut chain);
        let chain = Arc::new(chain);
        if let Start::Process { guid, .. } = start {
            // An unknown acting process is cheap to redo, and its image
            // comes from the row, so it is not shared.
            if chain.stop_reason() != StopReason::ProcessNotFound {
                self.cache.insert(*guid, Arc::clone(&chain));
            }
        }
        chain
    }
}
