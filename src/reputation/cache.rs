//! What goes in the reputation cache, and for how long.
//!
//! - Cached: a provider's definitive answers only — "found" (with its
//!   verdict, counts, label, link) and "not found".
//! - Never cached: errors, key rejections, quota and timeout postponements
//!   (they say nothing about the file, and caching them would hide the
//!   answer for a whole TTL), and local-list answers (the CSV is the
//!   source of truth and is re-read by every search).
//! - Key: `(provider, "algorithm:hex")`, lower-case ([`super::LookupKey`]).
//! - Lifetime: `cache_ttl_found` for found, the shorter
//!   `cache_ttl_not_found` for not found (a new sample gets known within
//!   hours). Expiry is the store's job: it never returns an entry past
//!   `checked_at + ttl`.
//! - Value: a small versionless JSON object (below); an entry that does not
//!   decode (written by another version) is deleted and looked up again.

use super::settings::Settings;
use super::verdict::{Finding, Outcome};
use serde::{Deserialize, Serialize};

/// The JSON shape: `{"status":"found","verdict":"malicious",...}` or
/// `{"status":"not_found"}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Cached {
    Found(Finding),
    NotFound,
}

/// The JSON to store for `outcome` and its lifetime in seconds, or `None`
/// when it must not be cached.
pub(crate) fn entry(outcome: &Outcome, settings: &Settings) -> Option<(String, i64)> {
    let (value, ttl) = match outcome {
        Outcome::Found(f) => (Cached::Found(f.clone()), settings.cache_ttl_found),
        Outcome::NotFound => (Cached::NotFound, settings.cache_ttl_not_found),
        Outcome::Failed(_) => return None,
    };
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    if ttl <= 0 {
        return None;
    }
    serde_json::to_string(&value).ok().map(|json| (json, ttl))
}

/// The outcome stored as `json`, or `None` when it does not decode.
pub(crate) fn decode(json: &str) -> Option<Outcome> {
    match serde_json::from_str::<Cached>(json).ok()? {
        Cached::Found(f) => Some(Outcome::Found(f)),
        Cached::NotFound => Some(Outcome::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reputation::verdict::{Failure, PendingReason, Verdict};
    use std::time::Duration;

    #[test]
    fn only_answers_are_cached_each_with_its_ttl() {
        let s = Settings {
            cache_ttl_found: Duration::from_secs(1000),
            cache_ttl_not_found: Duration::from_secs(10),
            ..Settings::default()
        };
        let found = Outcome::Found(Finding {
            detections: Some(3),
            label: Some("x".into()),
            ..Finding::new(Verdict::Suspicious)
        });
        let (json, ttl) = entry(&found, &s).unwrap();
        assert_eq!(ttl, 1000);
        assert_eq!(decode(&json), Some(found));
        let (json, ttl) = entry(&Outcome::NotFound, &s).unwrap();
        assert_eq!((json.as_str(), ttl), (r#"{"status":"not_found"}"#, 10));
        for f in [
            Failure::Pending(PendingReason::Quota),
            Failure::Pending(PendingReason::Timeout),
            Failure::Error("http 500".into()),
            Failure::KeyRejected {
                why: "http 401".into(),
            },
            Failure::NoKey,
        ] {
            assert!(entry(&Outcome::Failed(f), &s).is_none());
        }
    }

    #[test]
    fn zero_ttl_disables_and_garbage_does_not_decode() {
        let s = Settings {
            cache_ttl_not_found: Duration::ZERO,
            ..Settings::default()
        };
        assert!(entry(&Outcome::NotFound, &s).is_none());
        assert!(decode("{").is_none());
        assert!(decode(r#"{"status":"maybe"}"#).is_none());
    }
}
