//! Wall-clock time as the engine sees it, injectable for tests.
//!
//! Cache expiry, the quota ledger and the pending queue all compare epoch
//! times that must agree across processes, so they use this clock. Waiting
//! (budgets, backoff) uses tokio's monotonic clock instead: a test can move
//! this clock a day forward without sleeping, and the network deadlines
//! stay real.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of epoch time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told; clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `epoch_ms`.
    pub fn new(epoch_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(epoch_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_by_clones() {
        let c = ManualClock::new(1_000_500);
        let d = c.clone();
        d.advance(Duration::from_secs(61));
        assert_eq!(c.now_ms(), 1_061_500);
        assert_eq!(c.now_secs(), 1_061);
        assert!(SystemClock.now_secs() > 1_600_000_000);
    }
}
