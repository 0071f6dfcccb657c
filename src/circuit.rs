//! Circuit breakers for the services a search reaches over the network
//! (each reputation provider, splunkd for backfill).
//!
//! Why: most search heads have no internet egress. Without a breaker every
//! hash of every search waits for its own failed connection and logs its
//! own WARN: seconds and a hundred log lines per search, again on the next
//! search. With one, a few transport failures in a row (DNS, connection
//! refused or reset, TLS, a proxy's refusal; not a slow or failing server,
//! which has other rules) open the circuit: the service is skipped for the
//! rest of the search, with one WARN, and the state database records
//! "unreachable until T" so the next searches on this search head skip it
//! at once. The cool-down starts at a minute and doubles each time the
//! circuit opens again, up to an hour; one success closes it and resets
//! the cool-down.
//!
//! The breaker itself is plain counters; where the "until T" lives is a
//! [`CircuitLedger`] (the state database, or nothing: then the circuit
//! lasts one search).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Transport failures in a row that open a circuit.
pub const THRESHOLD: u32 = 3;
/// The first cool-down, in seconds.
pub const MIN_COOLDOWN: i64 = 60;
/// The longest cool-down, in seconds.
pub const MAX_COOLDOWN: i64 = 3600;

/// What the ledger keeps per service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitRecord {
    /// The service (`hashlookup`, `splunkd`, ...).
    pub name: String,
    /// Skipped until this time (epoch seconds).
    pub open_until: i64,
    /// The cool-down that set `open_until`, in seconds (the next one is
    /// twice that).
    pub cooldown: i64,
    /// The last transport failure (no secrets: a root cause).
    pub cause: String,
    /// When it was written (epoch seconds).
    pub updated_at: i64,
}

/// Where circuits outlive a search.
pub trait CircuitLedger: Send + Sync {
    /// The record of `name`, if any.
    fn circuit_get(&self, name: &str) -> Result<Option<CircuitRecord>, String>;
    /// Writes (replaces) a record.
    fn circuit_put(&self, record: &CircuitRecord) -> Result<(), String>;
    /// Forgets `name` (it answered).
    fn circuit_clear(&self, name: &str) -> Result<(), String>;
}

/// The state of one circuit after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed that anyone needs to hear about.
    None,
    /// This failure opened the circuit (log the one WARN now).
    Opened,
}

/// One service's breaker for one search.
pub struct Breaker {
    name: String,
    ledger: Option<Arc<dyn CircuitLedger>>,
    failures: AtomicU32,
    open: AtomicBool,
    /// The stored record at the start (its cool-down grows from there).
    stored: Mutex<Option<CircuitRecord>>,
    /// The search's one WARN about this circuit was given.
    warned: AtomicBool,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// The breaker of `name` for a search starting at `now` (epoch
    /// seconds): open from the start when the ledger says so.
    pub fn new(name: &str, ledger: Option<Arc<dyn CircuitLedger>>, now: i64) -> Breaker {
        let stored = ledger.as_ref().and_then(|l| match l.circuit_get(name) {
            Ok(r) => r,
            Err(e) => {
                log::debug!("circuit {name}: cannot read its state ({e})");
                None
            }
        });
        let open = stored.as_ref().is_some_and(|r| r.open_until > now);
        Breaker {
            name: name.to_string(),
            ledger,
            failures: AtomicU32::new(0),
            open: AtomicBool::new(open),
            stored: Mutex::new(stored),
            warned: AtomicBool::new(false),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when calls are to be skipped.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// The warning for a circuit that was open when the search started,
    /// the first time it is asked for (one per search); `None` after, or
    /// when the circuit was not open from the start.
    pub fn take_skip_warning(&self) -> Option<String> {
        if !self.is_open() || self.warned.swap(true, Ordering::Relaxed) {
            return None;
        }
        let stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let r = stored.as_ref()?;
        Some(format!(
            "{}: unreachable ({}); skipped until {} (cool-down {})",
            self.name,
            r.cause,
            clock_time(r.open_until),
            span(r.cooldown)
        ))
    }

    /// The call reached the service: the circuit closes and its cool-down
    /// is reset.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let had = self
            .stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some();
        if had {
            if let Some(l) = &self.ledger {
                if let Err(e) = l.circuit_clear(&self.name) {
                    log::debug!("circuit {}: cannot clear its state ({e})", self.name);
                }
            }
        }
    }

    /// A transport failure at `now` (epoch seconds). Returns
    /// [`Transition::Opened`] with the WARN text when this one opened the
    /// circuit.
    pub fn failure(&self, cause: &str, now: i64) -> (Transition, Option<String>) {
        self.count(cause, now, false)
    }

    fn count(&self, cause: &str, now: i64, at_once: bool) -> (Transition, Option<String>) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < THRESHOLD || self.open.swap(true, Ordering::Relaxed) {
            return (Transition::None, None);
        }
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let cooldown = match stored.as_ref() {
            Some(r) if r.cooldown > 0 => (r.cooldown * 2).min(MAX_COOLDOWN),
            _ => MIN_COOLDOWN,
        };
        let record = CircuitRecord {
            name: self.name.clone(),
            open_until: now.saturating_add(cooldown),
            cooldown,
            cause: cause.chars().take(200).collect(),
            updated_at: now,
        };
        if let Some(l) = &self.ledger {
            if let Err(e) = l.circuit_put(&record) {
                log::debug!("circuit {}: cannot store its state ({e})", self.name);
            }
        }
        let after = if at_once {
            String::new()
        } else {
            format!(" after {n} failures in a row")
        };
        let text = format!(
            "{}: unreachable ({}){after}; skipped for the rest of this search and until {} (cool-down {})",
            self.name,
            record.cause,
            clock_time(record.open_until),
            span(cooldown)
        );
        *stored = Some(record);
        self.warned.store(true, Ordering::Relaxed);
        (Transition::Opened, Some(text))
    }
}

impl Breaker {
    /// A failure that opens the circuit at once, whatever the count: a
    /// splunkd call that timed out or failed. Each splunkd call of a
    /// search waits its whole budget on a wedged management port, so a
    /// second and third proof would cost the search that much more.
    pub fn trip(&self, cause: &str, now: i64) -> (Transition, Option<String>) {
        self.failures.fetch_max(THRESHOLD - 1, Ordering::Relaxed);
        self.count(cause, now, true)
    }
}

/// `14:05:00 UTC`.
pub fn clock_time(epoch: i64) -> String {
    let s = epoch.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, (s % 3600) / 60, s % 60)
}

/// `1 min`, `8 min`, `1 h`.
pub fn span(secs: i64) -> String {
    if secs >= 3600 && secs % 3600 == 0 {
        format!("{} h", secs / 3600)
    } else if secs >= 60 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Mem(Mutex<Vec<CircuitRecord>>);

    impl CircuitLedger for Mem {
        fn circuit_get(&self, name: &str) -> Result<Option<CircuitRecord>, String> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.name == name)
                .cloned())
        }
        fn circuit_put(&self, record: &CircuitRecord) -> Result<(), String> {
            let mut v = self.0.lock().unwrap();
            v.retain(|r| r.name != record.name);
            v.push(record.clone());
            Ok(())
        }
        fn circuit_clear(&self, name: &str) -> Result<(), String> {
            self.0.lock().unwrap().retain(|r| r.name != name);
            Ok(())
        }
    }

    #[test]
    fn opens_after_the_threshold_and_the_cooldown_doubles_to_an_hour() {
        let ledger: Arc<dyn CircuitLedger> = Arc::new(Mem::default());
        let mut now = 1_000_000;
        let mut expected = MIN_COOLDOWN;
        for _ in 0..9 {
            let b = Breaker::new("hashlookup", Some(ledger.clone()), now);
            assert!(!b.is_open());
            assert_eq!(b.failure("refused", now).0, Transition::None);
            assert_eq!(b.failure("refused", now).0, Transition::None);
            let (t, text) = b.failure("refused", now);
            assert_eq!(t, Transition::Opened);
            assert!(text.unwrap().contains("refused"));
            assert!(b.is_open());
            // Only once.
            assert_eq!(b.failure("refused", now).0, Transition::None);
            let r = ledger.circuit_get("hashlookup").unwrap().unwrap();
            assert_eq!((r.cooldown, r.open_until), (expected, now + expected));
            // The next search inside the cool-down starts open, warns once.
            let next = Breaker::new("hashlookup", Some(ledger.clone()), now + 1);
            assert!(next.is_open());
            assert!(next.take_skip_warning().is_some());
            assert!(next.take_skip_warning().is_none());
            now += expected;
            expected = (expected * 2).min(MAX_COOLDOWN);
        }
        assert_eq!(expected, MAX_COOLDOWN);
        // One success resets.
        let b = Breaker::new("hashlookup", Some(ledger.clone()), now);
        b.success();
        assert_eq!(ledger.circuit_get("hashlookup").unwrap(), None);
        let b = Breaker::new("hashlookup", Some(ledger), now);
        for _ in 0..THRESHOLD {
            b.failure("x", now);
        }
        assert!(b.is_open());
    }

    #[test]
    fn a_trip_opens_at_once_and_warns_once() {
        let b = Breaker::new("splunkd", None, 0);
        let (t, text) = b.trip("timed out", 0);
        assert_eq!(t, Transition::Opened);
        let text = text.unwrap();
        assert!(
            text.starts_with("splunkd: unreachable (timed out); skipped"),
            "{text}"
        );
        assert!(b.is_open());
        assert_eq!(b.trip("timed out", 0), (Transition::None, None));
    }

    #[test]
    fn a_success_between_failures_keeps_it_closed() {
        let b = Breaker::new("splunkd", None, 0);
        for _ in 0..5 {
            b.failure("x", 0);
            b.failure("x", 0);
            b.success();
        }
        assert!(!b.is_open());
        assert_eq!(span(60), "1 min");
        assert_eq!(span(3600), "1 h");
        assert_eq!(clock_time(3661), "01:01:01 UTC");
    }
}
