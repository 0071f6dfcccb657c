//! The process table in two tiers as one ancestor source: the local table
//! first, then the KV store for the GUIDs it misses (one query per tree
//! level of a chunk). What the KV store answers is written to the local
//! table (with its writer and Sigma matches) before it is returned, so the
//! search's Sigma lookup of ancestors from state and the next searches on
//! this member find it there. It counts as `state` in `lineage_source`:
//! the same table, shared.

use super::tier::{keep_processes, SharedTier};
use crate::enrich::state_source::{from_stored, StateSource};
use crate::lineage::{AncestorSource, ProcessInfo, SourceError, SourceKind};
use crate::state::StateStore;
use crate::sysmon::ProcessGuid;
use std::collections::HashSet;

/// The local table, then the shared one.
pub struct TieredSource<'a> {
    /// The state database.
    pub local: &'a StateStore,
    /// The KV store tier, when the search has one.
    pub shared: Option<&'a SharedTier>,
}

impl AncestorSource for TieredSource<'_> {
    fn kind(&self) -> SourceKind {
        SourceKind::State
    }

    fn fetch(&mut self, guids: &[ProcessGuid]) -> Result<Vec<ProcessInfo>, SourceError> {
        let mut got = StateSource(self.local).fetch(guids)?;
        let Some(shared) = self.shared.filter(|s| s.usable()) else {
            return Ok(got);
        };
        let have: HashSet<ProcessGuid> = got.iter().map(|p| p.guid).collect();
        let missing: Vec<u128> = guids
            .iter()
            .filter(|g| !have.contains(g))
            .map(|g| g.as_u128())
            .collect();
        let found = shared.processes(&missing);
        if found.is_empty() {
            return Ok(got);
        }
        if let Err(e) = keep_processes(self.local, &found) {
            log::debug!("shared tier: cannot keep shared creations locally: {e}");
        }
        got.extend(found.iter().map(|p| from_stored(&p.process)));
        Ok(got)
    }
}
