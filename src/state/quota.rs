//! The quota ledger: provider requests of *all* searches on this host.
//!
//! Provider quotas are per API key, and every search on the search head uses
//! the same key, so a limiter in process memory would let three concurrent
//! searches spend three times the quota. The ledger is therefore a table of
//! request timestamps, `quota_events(provider, at_ms)`, that every process
//! consults and appends to under the database's write lock.
//!
//! # Why a strict sliding window
//!
//! VirusTotal's public API allows 4 requests per minute and counts them in a
//! rolling minute; a fixed window (a counter reset at :00) allows 8 requests
//! in two seconds across the boundary, and the provider answers the excess
//! with 429s that cost time and retries. So a request is granted only if
//! fewer than `per_minute` requests were recorded in the 60,000 ms before
//! it. Because every recorded request *after* it counts too (a clock that
//! lags another process's), no 60-second interval, anywhere, ever holds
//! more than `per_minute` grants, whatever order the processes' clocks and
//! locks interleave in.
//!
//! The daily limit counts from 00:00 UTC, because that is when VirusTotal
//! resets daily quotas.
//!
//! # Why `BEGIN IMMEDIATE`
//!
//! Count, decide and record must be one atomic step across processes: two
//! searches that both count 3 and both insert would make 5. An IMMEDIATE
//! transaction takes the write lock *before* counting, so the second search
//! waits (busy timeout) and then counts the first one's grant.
//!
//! The ledger keeps two days: anything older can no longer affect a
//! decision and is deleted as a side effect of acquiring.

use rusqlite::{params, Connection};

use super::{to_i64, Result, StateStore};

/// Length of the sliding window for `per_minute`.
const MINUTE_MS: i64 = 60_000;
/// Length of a UTC day.
const DAY_MS: i64 = 86_400_000;
/// Events older than this are of no use for any decision.
const KEEP_MS: i64 = 2 * DAY_MS;

/// The answer of [`StateStore::quota_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaDecision {
    /// The request may go out now; it has been recorded.
    Granted,
    /// `per_minute` requests already went out in the last minute. The
    /// earliest a new one could be granted is `retry_after_ms` from now
    /// (always at least 1), if no one else takes the slot first.
    MinuteExhausted {
        /// Milliseconds until the oldest blocking request leaves the window.
        retry_after_ms: i64,
    },
    /// `per_day` requests already went out since 00:00 UTC; the rest of the
    /// day's hashes belong in the pending queue.
    DayExhausted,
}

impl StateStore {
    /// Asks for permission to send one request to `provider` at `now_ms`
    /// (epoch milliseconds) and records it if granted. A limit of 0 means
    /// unlimited. When both limits are spent the answer is `DayExhausted`,
    /// since waiting a minute would not help.
    ///
    /// On `Err` (e.g. the database is locked), nothing was recorded and the
    /// caller must not assume a grant.
    pub fn quota_acquire(
        &self,
        provider: &str,
        now_ms: i64,
        per_minute: u32,
        per_day: u32,
    ) -> Result<QuotaDecision> {
        self.write("acquiring quota", |tx| {
            tx.prepare_cached("DELETE FROM quota_events WHERE provider = ?1 AND at_ms < ?2")?
                .execute(params![provider, now_ms.saturating_sub(KEEP_MS)])?;

            if per_day > 0 {
                let today = count_since(tx, provider, day_start(now_ms))?;
                if today >= i64::from(per_day) {
                    return Ok(QuotaDecision::DayExhausted);
                }
            }
            if per_minute > 0 {
                let floor = now_ms.saturating_sub(MINUTE_MS);
                let recent = count_since(tx, provider, floor.saturating_add(1))?;
                if recent >= i64::from(per_minute) {
                    // The window holds `recent` events; it frees a slot when
                    // the (recent - per_minute)-th oldest of them leaves it.
                    let blocking: i64 = tx
                        .prepare_cached(
                            "SELECT at_ms FROM quota_events \
                             WHERE provider = ?1 AND at_ms > ?2 \
                             ORDER BY at_ms LIMIT 1 OFFSET ?3",
                        )?
                        .query_row(
                            params![provider, floor, recent - i64::from(per_minute)],
                            |r| r.get(0),
                        )?;
                    let retry_after_ms = blocking
                        .saturating_add(MINUTE_MS)
                        .saturating_sub(now_ms)
                        .max(1);
                    return Ok(QuotaDecision::MinuteExhausted { retry_after_ms });
                }
            }
            tx.prepare_cached("INSERT INTO quota_events (provider, at_ms) VALUES (?1, ?2)")?
                .execute(params![provider, now_ms])?;
            Ok(QuotaDecision::Granted)
        })
    }

    /// Requests recorded for `provider` in the minute before `now_ms` and
    /// since 00:00 UTC of its day, for the per-search summary.
    pub fn quota_usage(&self, provider: &str, now_ms: i64) -> Result<(u32, u32)> {
        self.read("reading quota usage", |conn| {
            let minute = count_since(
                conn,
                provider,
                now_ms.saturating_sub(MINUTE_MS).saturating_add(1),
            )?;
            let today = count_since(conn, provider, day_start(now_ms))?;
            let clamp = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
            Ok((clamp(minute), clamp(today)))
        })
    }
}

/// 00:00 UTC of the day holding `now_ms`.
fn day_start(now_ms: i64) -> i64 {
    now_ms.div_euclid(DAY_MS) * DAY_MS
}

/// Events of `provider` at or after `from_ms`, later ones included: a
/// process whose clock lags still sees what the others recorded.
fn count_since(conn: &Connection, provider: &str, from_ms: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM quota_events WHERE provider = ?1 AND at_ms >= ?2")?
        .query_row(params![provider, to_i64(from_ms)], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::state::StateOptions;

    /// The largest number of grants inside any half-open window of
    /// `MINUTE_MS`.
    fn max_in_any_window(grants: &mut [i64]) -> usize {
        grants.sort_unstable();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..grants.len() {
            while grants[hi] - grants[lo] >= MINUTE_MS {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn sliding_window_not_fixed() {
        let store = StateStore::open_in_memory().unwrap();
        let t0 = 10 * DAY_MS + 59_000; // one second before a minute boundary
        for i in 0..4 {
            assert_eq!(
                store.quota_acquire("vt", t0 + i * 100, 4, 0).unwrap(),
                QuotaDecision::Granted
            );
        }
        // Past the wall-clock minute boundary, but not 60 s later.
        assert_eq!(
            store.quota_acquire("vt", t0 + 2_000, 4, 0).unwrap(),
            QuotaDecision::MinuteExhausted {
                retry_after_ms: 58_000
            }
        );
        // Exactly 60 s after the first grant, it has left the window.
        assert_eq!(
            store.quota_acquire("vt", t0 + 60_000, 4, 0).unwrap(),
            QuotaDecision::Granted
        );
        assert_eq!(
            store.quota_acquire("vt", t0 + 60_050, 4, 0).unwrap(),
            QuotaDecision::MinuteExhausted { retry_after_ms: 50 }
        );
        // Other providers have their own ledger.
        assert_eq!(
            store.quota_acquire("mb", t0, 4, 0).unwrap(),
            QuotaDecision::Granted
        );
        assert_eq!(store.quota_usage("vt", t0 + 60_050).unwrap(), (4, 5));
    }

    #[test]
    fn daily_limit_resets_at_utc_midnight() {
        let store = StateStore::open_in_memory().unwrap();
        let day = 20_000 * DAY_MS;
        let evening = day + DAY_MS - 10 * MINUTE_MS;
        for i in 0..3 {
            let t = evening + i * MINUTE_MS;
            assert_eq!(
                store.quota_acquire("vt", t, 0, 3).unwrap(),
                QuotaDecision::Granted
            );
        }
        assert_eq!(
            store
                .quota_acquire("vt", evening + 4 * MINUTE_MS, 4, 3)
                .unwrap(),
            QuotaDecision::DayExhausted
        );
        // Both exhausted: the day wins.
        assert_eq!(
            store
                .quota_acquire("vt", evening + 2 * MINUTE_MS + 1, 1, 3)
                .unwrap(),
            QuotaDecision::DayExhausted
        );
        let next = day + DAY_MS;
        assert_eq!(
            store.quota_acquire("vt", next, 0, 3).unwrap(),
            QuotaDecision::Granted
        );
        assert_eq!(store.quota_usage("vt", next).unwrap(), (1, 1));
    }

    #[test]
    fn zero_means_unlimited() {
        let store = StateStore::open_in_memory().unwrap();
        for _ in 0..100 {
            assert_eq!(
                store.quota_acquire("local", 5, 0, 0).unwrap(),
                QuotaDecision::Granted
            );
        }
        assert_eq!(store.quota_usage("local", 5).unwrap(), (100, 100));
    }

    #[test]
    fn old_events_are_dropped() {
        let store = StateStore::open_in_memory().unwrap();
        store.quota_acquire("vt", 0, 0, 0).unwrap();
        store.quota_acquire("vt", DAY_MS, 0, 0).unwrap();
        assert_eq!(store.stats().unwrap().quota_events, 2);
        store.quota_acquire("vt", 2 * DAY_MS + 1, 0, 0).unwrap();
        assert_eq!(store.stats().unwrap().quota_events, 2);
    }

    /// The reference model: the same rule over a plain vector.
    fn model(ledger: &mut Vec<i64>, now: i64, per_minute: usize) -> bool {
        let recent = ledger.iter().filter(|&&t| t > now - MINUTE_MS).count();
        if recent < per_minute {
            ledger.push(now);
            true
        } else {
            false
        }
    }

    /// Three connections (like three searches) hammer one file. At each
    /// tick of a shared clock every thread makes several attempts at the
    /// same moment, so they race for the same slots; a barrier between
    /// ticks makes the expected number of grants exact.
    #[test]
    fn three_connections_share_one_sliding_window() {
        const THREADS: usize = 3;
        const ATTEMPTS_PER_TICK: usize = 3;
        const TICKS: i64 = 400;
        const STEP_MS: i64 = 1_700;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
                    let mut grants = Vec::new();
                    for tick in 0..TICKS {
                        barrier.wait();
                        let now = 1_700_000_000_000 + tick * STEP_MS;
                        for _ in 0..ATTEMPTS_PER_TICK {
                            match store.quota_acquire("vt", now, 4, 0).unwrap() {
                                QuotaDecision::Granted => grants.push(now),
                                QuotaDecision::MinuteExhausted { retry_after_ms } => {
                                    assert!(retry_after_ms >= 1)
                                }
                                QuotaDecision::DayExhausted => {
                                    unreachable!("no daily limit")
                                }
                            }
                        }
                    }
                    grants
                })
            })
            .collect();
        let mut grants: Vec<i64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();

        let mut ledger = Vec::new();
        let mut expected = 0;
        for tick in 0..TICKS {
            let now = 1_700_000_000_000 + tick * STEP_MS;
            for _ in 0..THREADS * ATTEMPTS_PER_TICK {
                expected += usize::from(model(&mut ledger, now, 4));
            }
        }
        assert_eq!(grants.len(), expected);
        assert_eq!(max_in_any_window(&mut grants), 4);
    }

    /// Like the test above but without a barrier: each thread runs its own
    /// clock at its own pace, so "now" goes backwards between connections.
    /// The window must still hold.
    #[test]
    fn skewed_clocks_never_exceed_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let handles: Vec<_> = (0..3i64)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
                    let mut grants = Vec::new();
                    for i in 0..600i64 {
                        let now = 5_000_000 + t * 7_000 + i * (300 + 97 * t);
                        if store.quota_acquire("vt", now, 4, 0).unwrap() == QuotaDecision::Granted {
                            grants.push(now);
                        }
                    }
                    grants
                })
            })
            .collect();
        let mut grants: Vec<i64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(grants.len() >= 4, "{grants:?}");
        assert!(max_in_any_window(&mut grants) <= 4);
    }

    const CHILD_ENV: &str = "SYSMONENRICH_STATE_QUOTA_CHILD";

    /// Worker for [`separate_processes_share_one_sliding_window`]: does
    /// nothing unless started by it.
    #[test]
    fn quota_child_worker() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return;
        };
        let (path, offset) = spec.split_once('|').unwrap();
        let offset: i64 = offset.parse().unwrap();
        let store = StateStore::open(std::path::Path::new(path), &StateOptions::default()).unwrap();
        let mut out = String::new();
        for i in 0..300i64 {
            let now = 9_000_000 + offset + i * 500;
            if store.quota_acquire("vt", now, 4, 0).unwrap() == QuotaDecision::Granted {
                out.push_str(&format!("GRANT {now}\n"));
            }
        }
        print!("{out}");
    }

    /// Three real OS processes (this test binary, re-run with a filter)
    /// share one file: the case the ledger exists for.
    #[test]
    fn separate_processes_share_one_sliding_window() {
        if std::env::var_os(CHILD_ENV).is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..3)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "state::quota::tests::quota_child_worker",
                        "--nocapture",
                        "--test-threads=1",
                        "--quiet",
                    ])
                    .env(CHILD_ENV, format!("{}|{}", path.display(), i * 150))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut grants = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "child failed: {out:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            grants.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("GRANT "))
                    .map(|n| n.parse::<i64>().unwrap()),
            );
        }
        // 300 ticks of 500 ms span 150 s: at least the first window's 4.
        assert!(grants.len() >= 4, "{grants:?}");
        assert!(max_in_any_window(&mut grants) <= 4, "{grants:?}");
    }
}
