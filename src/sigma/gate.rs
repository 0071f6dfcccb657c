//! Whether remembering pays, per kind of lookup.
//!
//! The two memories (`memo.rs`: an event's verdicts; `scan_memo.rs`: a
//! field's scan) pay on repeating data and cost on data that does not
//! repeat: a key or value is hashed and copied for every lookup, and the
//! memory fills with entries nobody asks for again. On the generated
//! diverse stream (fresh command lines, hashes and GUIDs) the verdict key
//! of a process creation never repeated while image loads still did. So
//! each kind of lookup (an EventCode's verdicts, a table's field) keeps
//! its own hit rate: after [`WINDOW`] lookups under one in [`MIN_RATE`],
//! it stops looking up and remembering, except one event in [`PROBE`],
//! whose lookups keep measuring (and filling) so that data that starts to
//! repeat opens it again. Answers are the same either way: only the work
//! to reach them changes.

/// Lookups per decision.
pub const WINDOW: u32 = 1024;

/// A kind whose hits are under one in this many lookups is closed.
pub const MIN_RATE: u32 = 16;

/// A closed kind still looks up one time in this many.
pub const PROBE: u32 = 32;

/// One kind's hit rate and state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gate {
    lookups: u32,
    hits: u32,
    closed: bool,
    skipped: u32,
}

impl Gate {
    /// Whether to look up (and remember) this time.
    pub fn open(&mut self) -> bool {
        if !self.closed {
            return true;
        }
        self.skipped = self.skipped.wrapping_add(1);
        self.skipped.is_multiple_of(PROBE)
    }

    /// Counts a lookup; decides at the end of each window.
    pub fn record(&mut self, hit: bool) {
        self.lookups += 1;
        self.hits += u32::from(hit);
        if self.lookups == WINDOW {
            self.closed = self.hits * MIN_RATE < self.lookups;
            self.lookups = 0;
            self.hits = 0;
        }
    }

    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_on_misses_and_reopens_on_probed_hits() {
        let mut g = Gate::default();
        for _ in 0..WINDOW {
            assert!(g.open());
            g.record(false);
        }
        assert!(g.is_closed());
        // Closed: one in PROBE looks up.
        let opened = (0..PROBE * 10).filter(|_| g.open()).count();
        assert_eq!(opened, 10);
        // The probes hit from now on: after a window of them it reopens.
        for _ in 0..WINDOW {
            g.record(true);
        }
        assert!(!g.is_closed());
        assert!(g.open());
    }

    #[test]
    fn a_rate_at_the_bar_stays_open() {
        let mut g = Gate::default();
        for i in 0..WINDOW {
            g.record(i % MIN_RATE == 0);
        }
        assert!(!g.is_closed());
    }
}
