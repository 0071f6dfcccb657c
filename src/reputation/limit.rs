//! Per-provider limits (lychee's per-host `Host`, one per provider):
//!
//! - a **concurrency cap** (`Semaphore`): at most `concurrency` requests of
//!   one search in flight at a provider;
//! - a **pacer**: at least `min_interval` between two requests of one
//!   search (free services publish no limit; this keeps us polite);
//! - the **shared quota** (per minute, per day) booked in the state store
//!   before every request, so all concurrent searches of the host share it.
//!   A full minute window is waited out only when the wait fits in the
//!   search's remaining budget; otherwise the hash becomes
//!   `pending(quota)`, and the provider is marked blocked until the window
//!   frees, so the other hashes of the search do not each ask the store
//!   again. A full day window blocks the provider for the rest of the
//!   search;
//! - the search's **`max_lookups`** allowance ([`Allowance`]).

use super::clock::Clock;
use super::settings::ProviderSettings;
use super::store::{MemoryStore, QuotaDecision, ReputationStore};
use super::verdict::PendingReason;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

/// The limits of one provider within one search.
pub(crate) struct ProviderLimit {
    /// Requests in flight.
    pub(crate) semaphore: Semaphore,
    min_interval: Duration,
    next_slot: Mutex<Option<Instant>>,
    per_minute: u32,
    per_day: u32,
    /// Epoch ms (the engine's clock) before which no request is tried.
    blocked_until_ms: AtomicI64,
}

impl ProviderLimit {
    pub(crate) fn new(s: &ProviderSettings) -> ProviderLimit {
        ProviderLimit {
            semaphore: Semaphore::new(s.concurrency.max(1)),
            min_interval: s.min_interval,
            next_slot: Mutex::new(None),
            per_minute: s.per_minute,
            per_day: s.per_day,
            blocked_until_ms: AtomicI64::new(0),
        }
    }

    /// No request before `until_ms` (keeps the later of two blocks).
    pub(crate) fn block_until(&self, until_ms: i64) {
        self.blocked_until_ms.fetch_max(until_ms, Ordering::SeqCst);
    }

    /// True while blocked.
    pub(crate) fn is_blocked(&self, now_ms: i64) -> bool {
        now_ms < self.blocked_until_ms.load(Ordering::SeqCst)
    }

    /// Waits for this search's next request slot.
    pub(crate) async fn pace(&self) {
        if self.min_interval.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.min_interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Books one request in the shared quota, waiting for the minute window
    /// when that ends before `deadline`.
    pub(crate) async fn book(
        &self,
        provider: &'static str,
        ledger: &Ledger,
        clock: &dyn Clock,
        deadline: Instant,
    ) -> Result<(), PendingReason> {
        loop {
            let now = clock.now_ms();
            if self.is_blocked(now) {
                return Err(PendingReason::Quota);
            }
            if self.per_minute == 0 && self.per_day == 0 {
                return Ok(());
            }
            match ledger
                .acquire(provider, now, self.per_minute, self.per_day)
                .await
            {
                QuotaDecision::Granted => return Ok(()),
                QuotaDecision::DayExhausted => {
                    log::warn!(
                        "{provider}: the daily quota is used up; lookups wait for a later search"
                    );
                    self.block_until(i64::MAX);
                    return Err(PendingReason::Quota);
                }
                QuotaDecision::MinuteExhausted { retry_after_ms } => {
                    let wait = Duration::from_millis(retry_after_ms.max(1) as u64);
                    if Instant::now() + wait < deadline {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    self.block_until(now.saturating_add(retry_after_ms));
                    return Err(PendingReason::Quota);
                }
            }
        }
    }
}

/// The quota ledger: the shared store, or an in-process one while the
/// store fails (a locked database must not stop lookups, and must not lift
/// the limits either).
pub(crate) struct Ledger {
    store: Arc<dyn ReputationStore>,
    fallback: MemoryStore,
    warned: AtomicBool,
    /// Store failures seen.
    pub(crate) errors: AtomicU64,
}

impl Ledger {
    pub(crate) fn new(store: Arc<dyn ReputationStore>) -> Ledger {
        Ledger {
            store,
            fallback: MemoryStore::new(),
            warned: AtomicBool::new(false),
            errors: AtomicU64::new(0),
        }
    }

    /// Asks the store on a blocking thread: SQLite may wait on a lock, and
    /// that must not stall the other requests or the budget timer.
    async fn acquire(
        &self,
        provider: &'static str,
        now_ms: i64,
        pm: u32,
        pd: u32,
    ) -> QuotaDecision {
        let store = self.store.clone();
        let asked =
            tokio::task::spawn_blocking(move || store.quota_acquire(provider, now_ms, pm, pd))
                .await;
        match asked {
            Ok(Ok(d)) => d,
            failed => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "the store call did not finish".to_string(),
                    };
                    log::warn!("quota ledger unavailable ({why}); counting in this process only");
                }
                self.fallback
                    .quota_acquire(provider, now_ms, pm, pd)
                    .unwrap_or(QuotaDecision::DayExhausted)
            }
        }
    }
}

/// What is left of a search's `max_lookups`.
pub(crate) struct Allowance(AtomicU64);

impl Allowance {
    pub(crate) fn new(max: u64) -> Allowance {
        Allowance(AtomicU64::new(max))
    }

    /// Takes one lookup; false when none is left.
    pub(crate) fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Gives back a lookup that made no request.
    pub(crate) fn give_back(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reputation::clock::ManualClock;

    fn limit(per_minute: u32) -> ProviderLimit {
        ProviderLimit::new(&ProviderSettings {
            base_url: String::new(),
            concurrency: 1,
            per_minute,
            per_day: 0,
            min_interval: Duration::from_millis(20),
            quota_share: crate::reputation::settings::QuotaShare::Auto,
        })
    }

    #[tokio::test]
    async fn minute_window_beyond_deadline_blocks_the_provider() {
        let store: Arc<dyn ReputationStore> = Arc::new(MemoryStore::new());
        let ledger = Ledger::new(store);
        let clock = ManualClock::new(1_000_000);
        let l = limit(1);
        let deadline = Instant::now() + Duration::from_millis(200);
        assert_eq!(l.book("vt", &ledger, &clock, deadline).await, Ok(()));
        assert_eq!(
            l.book("vt", &ledger, &clock, deadline).await,
            Err(PendingReason::Quota)
        );
        assert!(l.is_blocked(clock.now_ms()));
        clock.advance(Duration::from_secs(60));
        assert_eq!(l.book("vt", &ledger, &clock, deadline).await, Ok(()));
    }

    #[tokio::test]
    async fn a_minute_window_that_frees_within_the_deadline_is_waited_for() {
        use crate::reputation::clock::SystemClock;
        let mem = Arc::new(MemoryStore::new());
        let now = SystemClock.now_ms();
        // Another search booked the only slot 59.9 s ago: it frees in 100 ms.
        assert_eq!(
            mem.quota_acquire("vt", now - 59_900, 1, 0).unwrap(),
            QuotaDecision::Granted
        );
        let ledger = Ledger::new(mem);
        let l = limit(1);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);
        assert_eq!(l.book("vt", &ledger, &SystemClock, deadline).await, Ok(()));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn failing_store_falls_back_to_local_counting() {
        let mem = Arc::new(MemoryStore::new());
        mem.set_failing(true);
        let ledger = Ledger::new(mem);
        let clock = ManualClock::new(0);
        let l = limit(2);
        let deadline = Instant::now();
        assert!(l.book("vt", &ledger, &clock, deadline).await.is_ok());
        assert!(l.book("vt", &ledger, &clock, deadline).await.is_ok());
        assert!(l.book("vt", &ledger, &clock, deadline).await.is_err());
        assert_eq!(ledger.errors.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn pacer_spaces_requests() {
        let l = limit(0);
        let start = Instant::now();
        for _ in 0..3 {
            l.pace().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn allowance_counts_down_and_back() {
        let a = Allowance::new(1);
        assert!(a.take());
        assert!(!a.take());
        a.give_back();
        assert!(a.take());
    }
}
