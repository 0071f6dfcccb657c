//! The combination rule: many provider results → one [`Answer`].
//!
//! Precedence, highest first:
//!
//! 1. `malicious` — the deny list or any provider that says malicious wins
//!    over everything, including an allow-list entry. A hash can be both in
//!    NSRL and malware (NSRL lists hacking tools, CIRCL flags
//!    `KnownMalicious` entries), and an analyst would rather see the alarm.
//! 2. `suspicious`.
//! 3. `known_good` — the allow list or CIRCL hashlookup; it only suppresses
//!    `unknown`/`clean`, it never hides a detection.
//! 4. `clean` — VirusTotal scanned it and nobody flagged it.
//! 5. `unknown` — only when every provider that answered said "not found".
//! 6. `pending`, then `error` — only when no provider answered at all.
//!    `pending` beats `error`: a later search may still get the answer.
//!
//! "Answered" means found or not found; failures are not answers and never
//! appear in `rep_sources`. The label and link come from the first provider
//! (in the search's provider order) with the winning verdict, falling back
//! to other answers with the same verdict; detection counts come from
//! whichever answer has them (VirusTotal), even when another provider
//! decides the verdict, because "0/72 engines" still helps the analyst.
//! `rep_checked` is the oldest answer's time (the answer is at least that
//! fresh); `rep_cached` is set when every provider answer came from the
//! cache.

use super::verdict::{Answer, Failure, Outcome, ProviderResult, Verdict};

/// Combines the results of one file, given in provider order. `now` is
/// the check time when nobody answered.
pub fn combine(results: &[ProviderResult], now: i64) -> Answer {
    let answered: Vec<&ProviderResult> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Found(_) | Outcome::NotFound))
        .collect();
    if answered.is_empty() {
        return unanswered(results, now);
    }
    let findings = || {
        answered.iter().filter_map(|r| match &r.outcome {
            Outcome::Found(f) => Some(f),
            _ => None,
        })
    };
    let verdict = findings()
        .map(|f| f.verdict)
        .max_by_key(|v| v.rank())
        .unwrap_or(Verdict::Unknown);
    let same = || findings().filter(move |f| f.verdict == verdict);
    let counted = findings().find(|f| f.engines.is_some());
    Answer {
        verdict,
        detections: counted.and_then(|f| f.detections),
        engines: counted.and_then(|f| f.engines),
        label: same().find_map(|f| f.label.clone()),
        sources: answered.iter().map(|r| r.provider).collect(),
        checked: answered.iter().map(|r| r.checked_at).min().unwrap_or(now),
        // The local list is read by every search: it is neither a cache
        // hit nor a new lookup, so only the providers decide `rep_cached`.
        cached: {
            let mut remote = answered.iter().filter(|r| r.provider != "local").peekable();
            remote.peek().is_some() && remote.all(|r| r.cached)
        },
        link: same()
            .find_map(|f| f.link.clone())
            .or_else(|| findings().find_map(|f| f.link.clone())),
        error: None,
    }
}

/// Nobody answered: pending if any lookup is only postponed, else error
/// with every reason; a file no provider was asked about (only the local
/// list, which has no entry) is simply unknown.
fn unanswered(results: &[ProviderResult], now: i64) -> Answer {
    let pending = results.iter().find_map(|r| match &r.outcome {
        Outcome::Failed(Failure::Pending(reason)) => Some(*reason),
        _ => None,
    });
    if let Some(reason) = pending {
        return Answer::failed(Verdict::Pending, reason.as_str().to_string(), now);
    }
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(f) => Some(f.describe(r.provider)),
            _ => None,
        })
        .collect();
    if errors.is_empty() {
        let mut a = Answer::failed(Verdict::Unknown, String::new(), now);
        a.error = None;
        return a;
    }
    Answer::failed(Verdict::Error, errors.join("; "), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reputation::verdict::{Finding, PendingReason};

    fn r(provider: &'static str, outcome: Outcome) -> ProviderResult {
        ProviderResult {
            provider,
            outcome,
            checked_at: 100,
            cached: false,
        }
    }

    fn found(v: Verdict, label: &str) -> Outcome {
        Outcome::Found(Finding {
            label: Some(label.into()),
            ..Finding::new(v)
        })
    }

    #[test]
    fn malicious_beats_allow_list() {
        let a = combine(
            &[
                r("local", found(Verdict::KnownGood, "in-house tool")),
                r("virustotal", found(Verdict::Malicious, "trojan.x")),
            ],
            0,
        );
        assert_eq!(a.verdict, Verdict::Malicious);
        assert_eq!(a.label.as_deref(), Some("trojan.x"));
        assert_eq!(a.sources, ["local", "virustotal"]);
    }

    #[test]
    fn known_good_suppresses_unknown_and_clean_keeps_counts() {
        let vt_clean = Outcome::Found(Finding {
            detections: Some(0),
            engines: Some(70),
            ..Finding::new(Verdict::Clean)
        });
        let a = combine(
            &[
                r("hashlookup", found(Verdict::KnownGood, "kernel32.dll")),
                r("virustotal", vt_clean),
                r("malwarebazaar", Outcome::NotFound),
            ],
            0,
        );
        assert_eq!(a.verdict, Verdict::KnownGood);
        assert_eq!((a.detections, a.engines), (Some(0), Some(70)));
        assert_eq!(a.sources.len(), 3);
    }

    #[test]
    fn clean_beats_unknown_and_unknown_needs_all_not_found() {
        let clean = Outcome::Found(Finding::new(Verdict::Clean));
        let a = combine(
            &[r("hashlookup", Outcome::NotFound), r("virustotal", clean)],
            0,
        );
        assert_eq!(a.verdict, Verdict::Clean);
        let a = combine(
            &[
                r("hashlookup", Outcome::NotFound),
                r(
                    "virustotal",
                    Outcome::Failed(Failure::Pending(PendingReason::Quota)),
                ),
            ],
            0,
        );
        // A definitive "not found" outranks a postponed lookup.
        assert_eq!(a.verdict, Verdict::Unknown);
        assert_eq!(a.sources, ["hashlookup"]);
        assert_eq!(a.error, None);
    }

    #[test]
    fn pending_only_when_nobody_answered_and_beats_error() {
        let a = combine(
            &[
                r(
                    "virustotal",
                    Outcome::Failed(Failure::Pending(PendingReason::Timeout)),
                ),
                r(
                    "malwarebazaar",
                    Outcome::Failed(Failure::KeyRejected {
                        why: "http 403".into(),
                    }),
                ),
            ],
            7,
        );
        assert_eq!(a.verdict, Verdict::Pending);
        assert_eq!(a.error.as_deref(), Some("timeout"));
        assert!(a.sources.is_empty());
        assert_eq!(a.checked, 7);
        let a = combine(
            &[
                r(
                    "virustotal",
                    Outcome::Failed(Failure::Error("http 503".into())),
                ),
                r("malwarebazaar", Outcome::Failed(Failure::NoKey)),
            ],
            7,
        );
        assert_eq!(a.verdict, Verdict::Error);
        assert_eq!(
            a.error.as_deref(),
            Some("virustotal: http 503; malwarebazaar: no API key configured")
        );
    }

    #[test]
    fn nothing_asked_is_unknown() {
        let a = combine(&[], 5);
        assert_eq!(a.verdict, Verdict::Unknown);
        assert!(a.error.is_none() && a.sources.is_empty());
    }

    #[test]
    fn oldest_check_time_and_cached_only_if_all_cached() {
        let mut a = r("hashlookup", Outcome::NotFound);
        a.checked_at = 50;
        a.cached = true;
        let b = r("virustotal", Outcome::NotFound);
        let ans = combine(&[a.clone(), b], 0);
        assert_eq!(ans.checked, 50);
        assert!(!ans.cached);
        assert!(combine(&[a], 0).cached);
    }
}
