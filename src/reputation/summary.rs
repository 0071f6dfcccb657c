//! The per-search counts behind the one-line inspector message.
//!
//! Nothing is dropped silently: every hash of every chunk is counted in
//! exactly one of local / cache / looked up / pending / error / unlisted,
//! and hashes postponed for later are counted as queued with their reason.

use super::verdict::{Answer, Outcome, PendingReason, ProviderResult, Verdict};
use std::fmt;

/// Counts over a search so far (a hash that appears in two chunks counts
/// twice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct hashes per chunk, summed.
    pub hashes: u64,
    /// Answered by the local list alone (no cache, no request).
    pub local: u64,
    /// Answered from the cache without a request.
    pub cache_hits: u64,
    /// Got at least one new answer from a provider.
    pub looked_up: u64,
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// `pending` because of a quota (provider, host ledger or max_lookups).
    pub pending_quota: u64,
    /// `pending` because the lookup budget ran out (or the provider kept
    /// timing out).
    pub pending_timeout: u64,
    /// `pending` because a provider could not be reached (its circuit).
    pub pending_unreachable: u64,
    /// Put in the queue for a later search (pending ones, and answered
    /// ones a provider still has to be asked about).
    pub queued: u64,
    /// `error` answers.
    pub errors: u64,
    /// Nobody to ask: only the local list was selected and it does not
    /// list the file (`unknown`).
    pub unlisted: u64,
    /// Up to three distinct provider failures behind `error` answers
    /// (`virustotal: http 503`; no secrets).
    pub error_samples: Vec<String>,
    /// Queued hashes of earlier searches answered by this one (and
    /// removed from the queue).
    pub queue_resolved: u64,
    /// Queued hashes given up after `pending_max_attempts`.
    pub queue_dropped: u64,
    /// Failed state-store calls (the search went on without cache/queue).
    pub store_errors: u64,
}

impl Summary {
    /// True when the line should be a WARN rather than an INFO.
    pub fn is_warning(&self) -> bool {
        self.pending_quota
            + self.pending_timeout
            + self.pending_unreachable
            + self.errors
            + self.queue_dropped
            + self.store_errors
            > 0
    }

    pub(crate) fn count(&mut self, results: &[ProviderResult], answer: &Answer, queued: bool) {
        let fresh_answer = results.iter().any(|r| {
            !r.cached
                && r.provider != "local"
                && matches!(r.outcome, Outcome::Found(_) | Outcome::NotFound)
        });
        match answer.verdict {
            Verdict::Pending => match answer.error.as_deref().and_then(PendingReason::parse) {
                Some(PendingReason::Timeout) => self.pending_timeout += 1,
                Some(PendingReason::Unreachable) => self.pending_unreachable += 1,
                _ => self.pending_quota += 1,
            },
            Verdict::Error => {
                self.errors += 1;
                // One sample per provider failure (an answer's rep_error
                // joins several), so the line stays readable.
                for r in results {
                    let Outcome::Failed(f) = &r.outcome else {
                        continue;
                    };
                    let text = f.describe(r.provider);
                    if self.error_samples.len() < 3 && !self.error_samples.contains(&text) {
                        self.error_samples.push(text);
                    }
                }
            }
            _ if fresh_answer => self.looked_up += 1,
            _ if answer.cached => self.cache_hits += 1,
            _ if results.iter().any(|r| r.provider == "local") => self.local += 1,
            _ => self.unlisted += 1,
        }
        if queued {
            self.queued += 1;
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reputation: {} hashes: {} local list, {} cached, {} looked up ({} requests)",
            self.hashes, self.local, self.cache_hits, self.looked_up, self.requests
        )?;
        let pending = self.pending_quota + self.pending_timeout + self.pending_unreachable;
        if pending > 0 {
            write!(
                f,
                "; {pending} pending (quota {}, timeout {}",
                self.pending_quota, self.pending_timeout
            )?;
            if self.pending_unreachable > 0 {
                write!(f, ", unreachable {}", self.pending_unreachable)?;
            }
            f.write_str(")")?;
        }
        if self.queued > 0 {
            write!(f, "; {} queued for a later search", self.queued)?;
        }
        if self.errors > 0 {
            write!(
                f,
                "; {} errors ({})",
                self.errors,
                self.error_samples.join("; ")
            )?;
        }
        if self.queue_resolved + self.queue_dropped > 0 {
            write!(
                f,
                "; queue: {} resolved, {} given up",
                self.queue_resolved, self.queue_dropped
            )?;
        }
        if self.store_errors > 0 {
            write!(
                f,
                "; state store unavailable ({} failed calls): no cache",
                self.store_errors
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_mentions_only_what_happened() {
        let s = Summary {
            hashes: 10,
            cache_hits: 4,
            looked_up: 3,
            requests: 5,
            ..Summary::default()
        };
        assert_eq!(
            s.to_string(),
            "reputation: 10 hashes: 0 local list, 4 cached, 3 looked up (5 requests)"
        );
        assert!(!s.is_warning());
        let s = Summary {
            pending_quota: 2,
            queued: 2,
            errors: 1,
            error_samples: vec!["virustotal: http 503".into()],
            ..s
        };
        assert!(s.is_warning());
        assert!(s.to_string().ends_with(
            "; 2 pending (quota 2, timeout 0); 2 queued for a later search; 1 errors (virustotal: http 503)"
        ));
    }
}
