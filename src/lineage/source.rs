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
/// stops when the frontier is empty, when a round adds nothing new, or
/// after `max_rounds` rounds. A GUID that every source was asked for and
/// none returned is remembered as missing, but only in a round where no
/// source failed: a source that was down may well have had it.
pub fn backfill(
    engine: &mut Engine,
    anchors: &[Anchor],
    sources: &mut [&mut dyn AncestorSource],
    max_rounds: usize,
) -> BackfillReport {
    let mut report = BackfillReport::default();
    let mut broken = vec![false; sources.len()];
    let mut frontier = engine.frontier(anchors);
    for _ in 0..max_rounds {
        let mut missing: Vec<ProcessGuid> = frontier
            .iter()
            .copied()
            .filter(|g| !engine.is_known_missing(*g))
            .collect();
        if missing.is_empty() || broken.iter().all(|&b| b) {
            break;
        }
        report.rounds += 1;
        let mut added = 0;
        let mut all_answered = true;
        for (source, broken) in sources.iter_mut().zip(broken.iter_mut()) {
            if *broken {
                all_answered = false;
                continue;
            }
            if missing.is_empty() {
                break;
            }
            report.requested += missing.len();
            match source.fetch(&missing) {
                Ok(infos) => {
                    let kind = source.kind();
                    for info in &infos {
                        // Anything a source returns is real creation info
                        // and may serve other chains, requested or not.
                        if engine.insert(info, kind) {
                            added += 1;
                            report.found[kind as usize] += 1;
                        }
                    }
                    missing.retain(|g| !engine.contains(*g));
                }
                Err(error) => {
                    log::warn!("lineage source {} failed: {error}", source.kind());
                    report.warnings.push(SourceWarning {
                        kind: source.kind(),
                        error,
                    });
                    *broken = true;
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
