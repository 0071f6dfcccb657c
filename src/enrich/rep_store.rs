//! The SQLite state store behind the reputation engine's store trait, so
//! every concurrent search on the host shares one cache, one pending queue
//! and one quota ledger. The value types are the state store's own, and its
//! errors stay the source of the engine's (locked and corrupt stay
//! distinguishable), so this is only the mapping of calls.

use crate::reputation::store::{
    CachedEntry, PendingEntry, QuotaDecision, ReputationStore, StoreError,
};
use crate::state::StateStore;
use std::collections::HashMap;
use std::sync::Arc;

/// `Arc<StateStore>` as a [`ReputationStore`].
pub struct SharedState(pub Arc<StateStore>);

impl ReputationStore for SharedState {
    fn cache_get_many(
        &self,
        provider: &str,
        keys: &[&str],
        now: i64,
    ) -> Result<HashMap<String, CachedEntry>, StoreError> {
        Ok(self.0.cache_get_many(provider, keys, now)?)
    }

    fn cache_put(
        &self,
        provider: &str,
        key: &str,
        json: &str,
        checked_at: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        Ok(self
            .0
            .cache_put(provider, key, json, checked_at, ttl_secs)?)
    }

    fn cache_delete(&self, provider: &str, key: &str) -> Result<(), StoreError> {
        self.0.cache_delete(provider, key)?;
        Ok(())
    }

    fn quota_acquire(
        &self,
        provider: &str,
        now_ms: i64,
        per_minute: u32,
        per_day: u32,
    ) -> Result<QuotaDecision, StoreError> {
        Ok(self
            .0
            .quota_acquire(provider, now_ms, per_minute, per_day)?)
    }

    fn pending_add(&self, key: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        Ok(self.0.pending_add(key, reason, now)?)
    }

    fn pending_add_many(&self, entries: &[(&str, &str)], now: i64) -> Result<(), StoreError> {
        self.0.pending_add_many(entries, now)?;
        Ok(())
    }

    fn pending_take(&self, limit: usize) -> Result<Vec<PendingEntry>, StoreError> {
        Ok(self.0.pending_take(limit)?)
    }

    fn pending_remove(&self, key: &str) -> Result<(), StoreError> {
        self.0.pending_remove(key)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateOptions;

    #[test]
    fn the_state_error_stays_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, b"this is not a SQLite database, not even close").unwrap();
        let e = StateStore::open(&path, &StateOptions::default()).unwrap_err();
        let text = e.to_string();
        let e = StoreError::from(e);
        assert!(e.is_corrupt() && !e.is_locked(), "{e}");
        assert_eq!(e.to_string(), format!("state store: {text}"));
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.downcast_ref::<crate::state::StateError>().is_some());
    }

    /// A chunk's queued hashes cost one commit, as the trait promises: in
    /// write-ahead-log mode every commit appends at least one page to the
    /// log, so 200 commits would add 200 pages; one adds a handful.
    #[test]
    fn a_batch_of_pending_hashes_is_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = Arc::new(StateStore::open(&path, &StateOptions::default()).unwrap());
        let store = SharedState(state.clone());
        let wal = dir.path().join("state.db-wal");
        let size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        let before = size();
        let keys: Vec<String> = (0..200).map(|k| format!("sha256:{k:064x}")).collect();
        let entries: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "quota")).collect();
        store.pending_add_many(&entries, 1_700_000_000).unwrap();
        assert_eq!(state.pending_count().unwrap(), 200);
        let grown = size() - before;
        // 4 KiB pages (SQLite's default), 24 bytes of frame header each.
        let pages = grown / (4096 + 24);
        assert!(
            pages < 40,
            "{pages} pages ({grown} bytes) written for one batch"
        );
    }
}
