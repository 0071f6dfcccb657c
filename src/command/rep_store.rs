//! The SQLite state store behind the reputation engine's store trait, so
//! every concurrent search on the host shares one cache, one pending queue
//! and one quota ledger.

use crate::reputation::store::{self as rep, ReputationStore, StoreError};
use crate::state::{self, StateStore};
use std::collections::HashMap;
use std::sync::Arc;

/// `Arc<StateStore>` as a [`ReputationStore`].
pub struct SharedState(pub Arc<StateStore>);

fn err(e: state::StateError) -> StoreError {
    StoreError(e.to_string())
}

impl ReputationStore for SharedState {
    fn cache_get_many(
        &self,
        provider: &str,
        keys: &[&str],
        now: i64,
    ) -> Result<HashMap<String, rep::CachedEntry>, StoreError> {
        let got = self.0.cache_get_many(provider, keys, now).map_err(err)?;
        Ok(got
            .into_iter()
            .map(|(k, e)| {
                (
                    k,
                    rep::CachedEntry {
                        json: e.json,
                        checked_at: e.checked_at,
                        expires_at: e.expires_at,
                    },
                )
            })
            .collect())
    }

    fn cache_put(
        &self,
        provider: &str,
        key: &str,
        json: &str,
        checked_at: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        self.0
            .cache_put(provider, key, json, checked_at, ttl_secs)
            .map_err(err)
    }

    fn cache_delete(&self, provider: &str, key: &str) -> Result<(), StoreError> {
        self.0.cache_delete(provider, key).map(|_| ()).map_err(err)
    }

    fn quota_acquire(
        &self,
        provider: &str,
        now_ms: i64,
        per_minute: u32,
        per_day: u32,
    ) -> Result<rep::QuotaDecision, StoreError> {
        Ok(
            match self
                .0
                .quota_acquire(provider, now_ms, per_minute, per_day)
                .map_err(err)?
            {
                state::QuotaDecision::Granted => rep::QuotaDecision::Granted,
                state::QuotaDecision::MinuteExhausted { retry_after_ms } => {
                    rep::QuotaDecision::MinuteExhausted { retry_after_ms }
                }
                state::QuotaDecision::DayExhausted => rep::QuotaDecision::DayExhausted,
            },
        )
    }

    fn pending_add(&self, key: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        self.0.pending_add(key, reason, now).map_err(err)
    }

    fn pending_take(&self, limit: usize) -> Result<Vec<rep::PendingEntry>, StoreError> {
        Ok(self
            .0
            .pending_take(limit)
            .map_err(err)?
            .into_iter()
            .map(|e| rep::PendingEntry {
                key: e.key,
                reason: e.reason,
                queued_at: e.queued_at,
                attempts: e.attempts,
            })
            .collect())
    }

    fn pending_remove(&self, key: &str) -> Result<(), StoreError> {
        self.0.pending_remove(key).map(|_| ()).map_err(err)
    }
}
