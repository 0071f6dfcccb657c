//! Persistence the reputation engine needs, behind [`ReputationStore`].
//!
//! Three things must outlive one search and be shared by every search of
//! the host at once, which is why they live in the state store and never in
//! process memory:
//!
//! - the **cache** of provider answers (see [`super::cache`] for what goes
//!   in);
//! - the **quota ledger**: one sliding window per provider, per minute and
//!   per day. Three scheduled searches starting at the same second must
//!   together send VirusTotal at most its 4 requests a minute, so the check
//!   and the booking are one atomic step ([`ReputationStore::quota_acquire`]);
//! - the **pending queue** of hashes a search could not look up (quota,
//!   budget), which a later search resolves first.
//!
//! The SQLite store (`crate::state`) implements this through an adapter;
//! [`MemoryStore`] implements the same semantics for tests and for a search
//! that runs without a database.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The value types are the state store's own: the SQLite store is what
/// persists them, so it defines them, and no adapter copies them.
pub use crate::state::{CachedEntry, PendingEntry, QuotaDecision};

/// The store could not do what was asked (locked, corrupt, I/O). The
/// engine carries on without it and says so once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state database failed; its error is kept (see
    /// [`StoreError::is_locked`], [`StoreError::is_corrupt`]).
    #[error("state store: {0}")]
    State(#[from] crate::state::StateError),
    /// A store without a database failed (a failing [`MemoryStore`]).
    #[error("state store: {0}")]
    Other(String),
}

impl StoreError {
    /// Another search held the database too long: transient.
    pub fn is_locked(&self) -> bool {
        matches!(self, StoreError::State(e) if e.is_locked())
    }

    /// The database is damaged or not ours: persistent until an admin acts.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::State(e) if e.is_corrupt())
    }
}

/// Persistence for the reputation engine. Every method is a short
/// synchronous call; the engine calls the quota method from a blocking
/// thread so a locked database never stalls the network work.
pub trait ReputationStore: Send + Sync {
    /// Unexpired cache entries of `provider` among `keys` (`expires_at >
    /// now`), by key; absent keys are misses.
    fn cache_get_many(
        &self,
        provider: &str,
        keys: &[&str],
        now: i64,
    ) -> Result<HashMap<String, CachedEntry>, StoreError>;

    /// Stores (or replaces) an entry that expires at `checked_at +
    /// ttl_secs`.
    fn cache_put(
        &self,
        provider: &str,
        key: &str,
        json: &str,
        checked_at: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError>;

    /// Forgets an entry (one that no longer decodes).
    fn cache_delete(&self, provider: &str, key: &str) -> Result<(), StoreError>;

    /// Atomically checks `provider`'s windows and, when both have room,
    /// books one request at `now_ms`: the minute window is strictly sliding
    /// (the 60 000 ms before `now_ms`, later bookings of other processes
    /// included), the day counts from 00:00 UTC (VirusTotal's daily reset).
    /// A limit of 0 means no limit on that window. The day is checked
    /// first: when it is full, waiting a minute would not help.
    fn quota_acquire(
        &self,
        provider: &str,
        now_ms: i64,
        per_minute: u32,
        per_day: u32,
    ) -> Result<QuotaDecision, StoreError>;

    /// Queues a hash, or, when it is already queued, keeps its place
    /// (`queued_at`), records the new reason and counts one more attempt.
    fn pending_add(&self, key: &str, reason: &str, now: i64) -> Result<(), StoreError>;

    /// [`ReputationStore::pending_add`] for a chunk's `(key, reason)`
    /// pairs at once: a database store writes them in one transaction
    /// instead of one per hash (hundreds of commits per chunk when a
    /// provider is unreachable).
    fn pending_add_many(&self, entries: &[(&str, &str)], now: i64) -> Result<(), StoreError> {
        entries
            .iter()
            .try_for_each(|(key, reason)| self.pending_add(key, reason, now))
    }

    /// The `limit` oldest queued hashes (by `queued_at`). They stay queued
    /// until [`ReputationStore::pending_remove`], so a search that dies
    /// halfway loses nothing.
    fn pending_take(&self, limit: usize) -> Result<Vec<PendingEntry>, StoreError>;

    /// Removes a resolved (or abandoned) hash from the queue; absent keys
    /// are not an error.
    fn pending_remove(&self, key: &str) -> Result<(), StoreError>;
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

#[derive(Default)]
struct Memory {
    cache: HashMap<(String, String), CachedEntry>,
    /// Booked request times per provider, oldest first, at most two days
    /// old.
    ledger: HashMap<String, VecDeque<i64>>,
    /// Queue in insertion order.
    pending: Vec<PendingEntry>,
}

/// An in-process [`ReputationStore`] with the same semantics as the
/// SQLite one; share it between "searches" with an `Arc`.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
    failing: AtomicBool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes every call fail (as a locked or corrupt database would), to
    /// test that the engine degrades instead of failing.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The queued hashes, oldest first (without taking them).
    pub fn pending(&self) -> Vec<PendingEntry> {
        self.lock().pending.clone()
    }

    /// Number of cache entries, expired or not.
    pub fn cache_len(&self) -> usize {
        self.lock().cache.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic elsewhere while holding the lock leaves plain data that
        // is still consistent enough for a cache.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self) -> Result<std::sync::MutexGuard<'_, Memory>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Other("database is locked (simulated)".into()));
        }
        Ok(self.lock())
    }
}

impl ReputationStore for MemoryStore {
    fn cache_get_many(
        &self,
        provider: &str,
        keys: &[&str],
        now: i64,
    ) -> Result<HashMap<String, CachedEntry>, StoreError> {
        let m = self.check()?;
        Ok(keys
            .iter()
            .filter_map(|k| {
                let e = m.cache.get(&(provider.to_string(), k.to_string()))?;
                (e.expires_at > now).then(|| (k.to_string(), e.clone()))
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
        let entry = CachedEntry {
            json: json.to_string(),
            checked_at,
            expires_at: checked_at.saturating_add(ttl_secs),
        };
        self.check()?
            .cache
            .insert((provider.to_string(), key.to_string()), entry);
        Ok(())
    }

    fn cache_delete(&self, provider: &str, key: &str) -> Result<(), StoreError> {
        self.check()?
            .cache
            .remove(&(provider.to_string(), key.to_string()));
        Ok(())
    }

    fn quota_acquire(
        &self,
        provider: &str,
        now_ms: i64,
        per_minute: u32,
        per_day: u32,
    ) -> Result<QuotaDecision, StoreError> {
        let mut m = self.check()?;
        let booked = m.ledger.entry(provider.to_string()).or_default();
        while booked.front().is_some_and(|&t| t < now_ms - 2 * DAY_MS) {
            booked.pop_front();
        }
        let day_start = now_ms - now_ms.rem_euclid(DAY_MS);
        if per_day > 0 && booked.iter().filter(|&&t| t >= day_start).count() >= per_day as usize {
            return Ok(QuotaDecision::DayExhausted);
        }
        if per_minute > 0 {
            let in_minute: Vec<i64> = booked
                .iter()
                .copied()
                .filter(|&t| t > now_ms - MINUTE_MS)
                .collect();
            if in_minute.len() >= per_minute as usize {
                // The window frees a slot when its oldest booking leaves.
                let oldest = in_minute[in_minute.len() - per_minute as usize];
                return Ok(QuotaDecision::MinuteExhausted {
                    retry_after_ms: (oldest + MINUTE_MS - now_ms).max(1),
                });
            }
        }
        booked.push_back(now_ms);
        Ok(QuotaDecision::Granted)
    }

    fn pending_add(&self, key: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        let mut m = self.check()?;
        match m.pending.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.reason = reason.to_string();
                e.updated_at = now;
                e.attempts = e.attempts.saturating_add(1);
            }
            None => m.pending.push(PendingEntry {
                key: key.to_string(),
                reason: reason.to_string(),
                queued_at: now,
                updated_at: now,
                attempts: 1,
            }),
        }
        Ok(())
    }

    fn pending_take(&self, limit: usize) -> Result<Vec<PendingEntry>, StoreError> {
        let m = self.check()?;
        let mut oldest: Vec<&PendingEntry> = m.pending.iter().collect();
        oldest.sort_by(|a, b| (a.queued_at, &a.key).cmp(&(b.queued_at, &b.key)));
        Ok(oldest.into_iter().take(limit).cloned().collect())
    }

    fn pending_remove(&self, key: &str) -> Result<(), StoreError> {
        self.check()?.pending.retain(|e| e.key != key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_expire_at_their_ttl() {
        let s = MemoryStore::new();
        s.cache_put("vt", "sha1:a", "{}", 100, 10).unwrap();
        assert_eq!(
            s.cache_get_many("vt", &["sha1:a", "sha1:b"], 109)
                .unwrap()
                .len(),
            1
        );
        assert!(s.cache_get_many("vt", &["sha1:a"], 110).unwrap().is_empty());
        assert!(s
            .cache_get_many("hashlookup", &["sha1:a"], 100)
            .unwrap()
            .is_empty());
        s.cache_delete("vt", "sha1:a").unwrap();
        assert_eq!(s.cache_len(), 0);
    }

    #[test]
    fn minute_window_slides() {
        let s = MemoryStore::new();
        for t in [0, 10_000, 20_000, 30_000] {
            assert_eq!(
                s.quota_acquire("vt", t, 4, 0).unwrap(),
                QuotaDecision::Granted
            );
        }
        assert_eq!(
            s.quota_acquire("vt", 40_000, 4, 0).unwrap(),
            QuotaDecision::MinuteExhausted {
                retry_after_ms: 20_000
            }
        );
        // At 60 s the first booking has left the window.
        assert_eq!(
            s.quota_acquire("vt", 60_000, 4, 0).unwrap(),
            QuotaDecision::Granted
        );
        assert!(matches!(
            s.quota_acquire("vt", 60_001, 4, 0).unwrap(),
            QuotaDecision::MinuteExhausted {
                retry_after_ms: 9_999
            }
        ));
        // Other providers have their own ledger.
        assert_eq!(
            s.quota_acquire("mb", 60_001, 4, 0).unwrap(),
            QuotaDecision::Granted
        );
    }

    #[test]
    fn day_counts_from_utc_midnight_and_is_checked_first() {
        let s = MemoryStore::new();
        let evening = 20 * DAY_MS - 10 * MINUTE_MS;
        for i in 0..3 {
            assert_eq!(
                s.quota_acquire("vt", evening + i * MINUTE_MS, 4, 3)
                    .unwrap(),
                QuotaDecision::Granted
            );
        }
        assert_eq!(
            s.quota_acquire("vt", evening + 5 * MINUTE_MS, 1, 3)
                .unwrap(),
            QuotaDecision::DayExhausted
        );
        // A new UTC day resets the count.
        assert_eq!(
            s.quota_acquire("vt", 20 * DAY_MS, 4, 3).unwrap(),
            QuotaDecision::Granted
        );
        assert_eq!(
            s.quota_acquire("vt", 20 * DAY_MS + 1, 0, 0).unwrap(),
            QuotaDecision::Granted
        );
    }

    #[test]
    fn queue_keeps_order_counts_attempts_and_upserts() {
        let s = MemoryStore::new();
        s.pending_add("sha1:a", "quota", 1).unwrap();
        s.pending_add("sha1:b", "timeout", 2).unwrap();
        s.pending_add("sha1:a", "timeout", 3).unwrap();
        let taken = s.pending_take(1).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(
            (
                taken[0].key.as_str(),
                taken[0].reason.as_str(),
                taken[0].queued_at,
                taken[0].attempts
            ),
            ("sha1:a", "timeout", 1, 2)
        );
        // Taking does not remove or count.
        assert_eq!(s.pending_take(10).unwrap().len(), 2);
        assert_eq!(s.pending_take(10).unwrap()[0].attempts, 2);
        s.pending_remove("sha1:a").unwrap();
        s.pending_remove("sha1:zz").unwrap();
        assert_eq!(s.pending().len(), 1);
    }

    #[test]
    fn failing_store_fails_every_call() {
        let s = MemoryStore::new();
        s.set_failing(true);
        assert!(s.cache_get_many("vt", &["k"], 0).is_err());
        assert!(s.quota_acquire("vt", 0, 1, 1).is_err());
        assert!(s.pending_take(1).is_err());
    }
}
