//! Ancestor sources beyond the current results, and the level-by-level
//! backfill loop that asks them.
//!
//! The engine never does I/O. What it cannot find among the rows it asks
//! for through [`AncestorSource`], implemented by the persistent process
//! table (`state`) and by the splunkd REST backfill (`splunk`). [`backfill`]
//! drives them one tree level per round, all missing GUIDs of the chunk in
//! one batch per source, so a chunk whose deepest missing chain has k
//! levels costs at most k searches per source — not one per row.

use super::engine::{Anchor, Engine};
use super::process::{ProcessInfo, SourceKind};
use crate::sysmon::guid::ProcessGuid;
use std::error::Error as StdError;

/// A failure of an ancestor source (database locked, HTTP 503, timeout…).
/// The engine records it as a warning and stops asking that source for the
/// rest of the chunk.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl SourceError {
    /// An error described by `message` alone.
    pub fn new(message: impl Into<String>) -> SourceError {
        SourceError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with its underlying cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> SourceError {
        SourceError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Somewhere creation info of processes can be looked up by GUID.
///
/// `fetch` gets the GUIDs still missing (deduplicated, non-zero, at most
/// what one level of one chunk needs) and returns the creation info it
/// has — possibly for only some of them, possibly nothing. Running out of
/// a time or count budget is not an error: return what you have (and
/// nothing on later calls). Return `Err` only when the source is broken;
/// it is then skipped for the rest of the chunk.
pub trait AncestorSource {
    /// What `lineage_source` calls this source.
    fn kind(&self) -> SourceKind;

    /// Creation info for as many of `guids` as the source has.
    fn fetch(&mut self, guids: &[ProcessGuid]) -> Result<Vec<ProcessInfo>, SourceError>;

    /// True for a source that is cheap to ask (no level budget applies,
    /// see [`backfill`]): all but splunkd backfill.
    fn is_local(&self) -> bool {
        self.kind() != SourceKind::Splunk
    }
}

/// A source that failed during [`backfill`].
#[derive(Debug)]
pub struct SourceWarning {
    /// Which source.
    pub kind: SourceKind,
    /// Its error.
    pub error: SourceError,
}

/// What [`backfill`] did, for the search's summary line.
#[derive(Debug, Default)]
pub struct BackfillReport {
    /// Rounds (tree levels) that asked at least one source.
    pub rounds: usize,
    /// GUIDs requested, summed over rounds and sources.
    pub requested: usize,
    /// New entries added to the table, per source kind
    /// (`results`, `state`, `splunk` order).
    pub found: [usize; 3],
    /// GUIDs still needed when the loop stopped (the final frontier,
    /// including those known to be missing everywhere).
    pub unresolved: usize,
    /// Sources that failed (each at most once per call).
    pub warnings: Vec<SourceWarning>,
}

impl BackfillReport {
    /// New entries from sources of `kind`.
    pub fn found_from(&self, kind: SourceKind) -> usize {
        self.found[kind as usize]
    }
}

/// Extends the chains of `anchors` from `sources`, level by level.
///
/// Each round computes the frontier, drops GUIDs an earlier chunk already
/// learnt nobody has, and asks the sources in order (state before splunk:
/// cheap first), each only for what the ones before it did not return. It
/// stops when the frontier is empty or when a round adds nothing new.
///
/// Only remote sources ([`AncestorSource::is_local`] false: splunkd
/// backfill, a search per level) have a level budget: each is asked in at
/// most `remote_levels` rounds. Local ones (the process table: an index probe per GUID) are
/// asked until every chain is whole or `max_depth` long: a budget there
/// cut a 40-level chain the table held completely at 16 levels (issue 12).
/// Each round climbs at least one level of some chain, so the rounds are
/// bounded by `max_depth` (plus one for the acting processes themselves).
///
/// A GUID that every source was asked for and none returned is remembered
/// as missing, but only in a round where no source failed or was left out:
/// a source that was down (or past its budget) may well have had it.
pub fn backfill(
    engine: &mut Engine,
    anchors: &[Anchor],
    sources: &mut [&mut dyn AncestorSource],
    remote_levels: usize,
) -> BackfillReport {
    let mut report = BackfillReport::default();
    let mut broken = vec![false; sources.len()];
    // Levels each source was asked for (the budget counts for remote ones).
    let mut asked = vec![0usize; sources.len()];
    let askable = |i: usize, s: &dyn AncestorSource, broken: &[bool], asked: &[usize]| {
        !broken[i] && (s.is_local() || asked[i] < remote_levels)
    };
    let mut frontier = engine.frontier(anchors);
    for _ in 0..=engine.max_depth() {
        let mut missing = still_missing(engine, &frontier);
        if missing.is_empty()
            || !(0..sources.len()).any(|i| askable(i, &*sources[i], &broken, &asked))
        {
            break;
        }
        report.rounds += 1;
        let mut added = 0;
        let mut all_answered = true;
        for (i, source) in sources.iter_mut().enumerate() {
            if !askable(i, &**source, &broken, &asked) {
                all_answered = false;
                continue;
            }
            if missing.is_empty() {
                break;
            }
            asked[i] += 1;
            match ask(engine, &mut **source, &mut missing, &mut report) {
                Ok(n) => added += n,
                Err(()) => {
                    broken[i] = true;
                    all_answered = false;
                }
            }
        }
        if all_answered {
            for g in &missing {
                engine.note_missing(*g);
            }
        }
        frontier = engine.frontier(anchors);
        if added == 0 {
            break;
        }
    }
    report.unresolved = frontier.len();
    report
}

/// The frontier without the GUIDs every source already said it lacks.
fn still_missing(engine: &Engine, frontier: &[ProcessGuid]) -> Vec<ProcessGuid> {
    frontier
        .iter()
        .copied()
        .filter(|g| !engine.is_known_missing(*g))
        .collect()
}

/// Asks one source for `missing`, indexes what it returns and leaves in
/// `missing` what is still unknown; the number of new entries, or `Err`
/// when the source failed (recorded in `report`).
fn ask(
    engine: &mut Engine,
    source: &mut dyn AncestorSource,
    missing: &mut Vec<ProcessGuid>,
    report: &mut BackfillReport,
) -> Result<usize, ()> {
    report.requested += missing.len();
    match source.fetch(missing) {
        Ok(infos) => {
            let kind = source.kind();
            let mut added = 0;
            for info in &infos {
                // Anything a source returns is real creation info and may
                // serve other chains, requested or not.
                if engine.insert(info, kind) {
                    added += 1;
                    report.found[kind as usize] += 1;
                }
            }
            missing.retain(|g| !engine.contains(*g));
            Ok(added)
        }
        Err(error) => {
            log::warn!("lineage source {} failed: {error}", source.kind());
            report.warnings.push(SourceWarning {
                kind: source.kind(),
                error,
            });
            Err(())
        }
    }
}
