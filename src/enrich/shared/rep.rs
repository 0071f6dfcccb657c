//! The reputation cache in two tiers: the local state database first,
//! then the KV store for the keys it misses (one query per provider per
//! chunk); a shared answer is kept locally too, with the expiry its first
//! member gave it, so it expires at the same moment on every member.
//! Answers go to both tiers; everything else (quota, pending queue) stays
//! local: quotas are already divided among members (`quota_share`).

use super::docs::SharedAnswer;
use super::tier::SharedTier;
use crate::enrich::rep_store::SharedState;
use crate::reputation::store::{
    CachedEntry, PendingEntry, QuotaDecision, ReputationStore, StoreError,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The local store with the shared tier behind it.
pub struct TieredStore {
    /// The state database.
    pub local: SharedState,
    /// The KV store tier of this search.
    pub shared: Arc<SharedTier>,
}

impl ReputationStore for TieredStore {
    fn cache_get_many(
        &self,
        provider: &str,
        keys: &[&str],
        now: i64,
    ) -> Result<HashMap<String, CachedEntry>, StoreError> {
        let mut hits = self.local.cache_get_many(provider, keys, now)?;
        let missing: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| !hits.contains_key(*k))
            .collect();
        if missing.is_empty() {
            return Ok(hits);
        }
        for (key, a) in self.shared.answers(provider, &missing, now) {
            if let Err(e) =
                self.local
                    .0
                    .cache_put(provider, &key, &a.json, a.checked, a.expires - a.checked)
            {
                log::debug!("shared tier: cannot keep a shared answer locally: {e}");
            }
            hits.insert(
                key,
                CachedEntry {
                    json: a.json,
                    checked_at: a.checked,
                    expires_at: a.expires,
                },
            );
        }
        Ok(hits)
    }

    fn cache_put(
        &self,
        provider: &str,
        key: &str,
        json: &str,
        checked_at: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        self.local
            .cache_put(provider, key, json, checked_at, ttl_secs)?;
        self.shared.put_answer(&SharedAnswer {
            provider: provider.to_string(),
            key: key.to_string(),
            json: json.to_string(),
            checked: checked_at,
            expires: checked_at.saturating_add(ttl_secs),
        });
        Ok(())
    }

    fn cache_delete(&self, provider: &str, key: &str) -> Result<(), StoreError> {
        self.local.cache_delete(provider, key)
    }

    fn quota_acquire(
        &self,
        provider: &str,
        now_ms: i64,
        per_minute: u32,
        per_day: u32,
    ) -> Result<QuotaDecision, StoreError> {
        self.local
            .quota_acquire(provider, now_ms, per_minute, per_day)
    }

    fn pending_add(&self, key: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        self.local.pending_add(key, reason, now)
    }

    fn pending_add_many(&self, entries: &[(&str, &str)], now: i64) -> Result<(), StoreError> {
        self.local.pending_add_many(entries, now)
    }

    fn pending_take(&self, limit: usize) -> Result<Vec<PendingEntry>, StoreError> {
        self.local.pending_take(limit)
    }

    fn pending_remove(&self, key: &str) -> Result<(), StoreError> {
        self.local.pending_remove(key)
    }
}
