//! Process lineage: who started the process behind each event, and who
//! started that one, up to the root.
//!
//! Pure and synchronous: a process table keyed by
//! [`ProcessGuid`](crate::sysmon::guid::ProcessGuid), the
//! ancestry walk, eviction, and rule matching. Anything that needs I/O
//! (the persistent table, splunkd backfill) plugs in through
//! [`AncestorSource`].
//!
//! # The chain
//!
//! A process-creation event (Sysmon EventCode 1) names the process, its
//! parent's GUID, image and command line. The chain of a process P created
//! by event C is:
//!
//! * entry 0 = C's parent (GUID, image, command line as C reports them),
//!   known even when the parent's own creation event was never seen;
//! * entry i+1 = the parent reported by the creation event of entry i, as
//!   long as that creation event is known.
//!
//! It stops at the all-zero GUID (included as the last entry; `complete`),
//! at an entry whose creation is unknown (`partial`), before a repeated
//! GUID (`cycle`), or at `max_depth` entries (`truncated`). Events other
//! than process creation get the chain of their acting process's creation
//! (or no entries and `partial` when it is unknown). This is exactly what
//! the reference tool behind `data/sysmon/*.lineage.jsonl` computes; the
//! tests compare every EventCode 1 row of the three datasets.
//!
//! # Order independence: the per-chunk protocol
//!
//! Splunk sends newest events first, so children arrive before their
//! parents, usually in an earlier chunk. The caller therefore works in
//! phases per chunk:
//!
//! ```text
//! 1. index   for every process creation row:  engine.index(&info, SourceKind::Results)
//!            for every row:                   anchors.push(Anchor::from_event(&event))
//! 2. extend  backfill(&mut engine, &anchors, &mut [&mut state, &mut splunk], max_rounds)
//!              └ repeat: engine.frontier(&anchors) → sources in order → engine.insert(..)
//! 3. resolve let mut r = engine.resolver(&rules, |h| verdict_is_malicious(h));
//!            for every row: r.resolve(&Start::from_event(&event)?) → Arc<Chain>
//! ```
//!
//! Earlier chunks stay in the table (bounded by entries and by bytes,
//! LRU), so a parent seen in an earlier chunk is found. A parent in a
//! *later* chunk cannot be: the rows of this chunk must be answered first
//! (lock-step protocol). Without the persistent table or splunkd
//! backfill, such chains are cut and reported `partial`: in chunks of
//! 1,000 rows, 337 of the 1,489 creations of `evtx_attack_samples` and 234
//! of the 269 of `otrf_lsass_campaign_01` (the chunked reference test).
//! With a backfill source, all match.
//!
//! # Performance
//!
//! Lookups hash a `u128` with `foldhash` (see `hash.rs` for why that
//! hasher, and its `quality` variant) and never allocate; the frontier memoises walks so shared ancestors are
//! walked once per call; the resolver caches the chain of each acting
//! process for the chunk, so the many non-creation rows of one process cost
//! a hash lookup each. A resolved chain is three allocations.
//!
//! Measured (release build, one core of a 2-core Xeon VM, built-in rules
//! and a hash predicate on): resolving creation rows ≈ 2.9 M rows/s
//! (0.35 µs each); index + frontier + resolve over whole datasets, in
//! chunks of 50,000 rows, ≈ 2.6 M rows/s for `evtx_attack_samples` (46 %
//! creations) and ≈ 11.9 M rows/s for `otrf_lsass_campaign_01` (mostly
//! cached non-creation rows). See `tests::reference::measure_resolve_speed`.
//!
//! The search command renders most chains without building a [`Chain`]:
//! `enrich::lineage_composer` keeps each ancestor of a chunk escaped once and linked
//! to its parent's, so a process costs its own first entry plus copies
//! (through [`Engine::record`], [`Engine::peek`] and
//! [`Rules::classify`]/[`Rules::evaluate_classes`]). The [`Resolver`] stays
//! the general path (cycles, `max_depth`, very deep chains) and the
//! reference those cells are tested against.

mod chain;
mod engine;
mod hash;
mod process;
mod rules;
mod source;
mod table;
mod trust;

#[cfg(test)]
mod tests;

pub(crate) use chain::push_span;
pub use chain::{
    basename, entry_name, guid_text, Ancestor, Chain, SourceSet, Status, StopReason, UNKNOWN_PARENT,
};
pub use engine::{
    Anchor, Engine, LineageSettings, Resolver, Start, DEFAULT_CAPACITY, DEFAULT_MAX_DEPTH,
    MAX_MAX_DEPTH,
};
pub use hash::{GuidBuildHasher, GuidHasher, GuidMap, GuidSet};
pub use process::{ProcessInfo, ProcessRef, SourceKind};
pub use rules::{
    NameClass, Rule, RuleError, RuleScratch, Rules, Severity, TermBits, CLASS_WORDS, DEFAULT_RULES,
};
pub use source::{backfill, AncestorSource, BackfillReport, SourceError, SourceWarning};
pub use table::Entry as Record;
pub use trust::agrees_with_raw;
