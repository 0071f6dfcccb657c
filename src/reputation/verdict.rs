//! What a provider says about a file ([`Outcome`]) and what the search
//! gets for it ([`Answer`], exactly the `rep_*` output fields).
//!
//! A lookup that did not work is data, not an `Err`: the row still gets an
//! answer (`pending` or `error` with a reason), so reputation can never
//! fail a search.

use serde::{Deserialize, Serialize};
use std::fmt;

/// `rep_verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Known bad (deny list, MalwareBazaar sample, VirusTotal at or above
    /// the threshold).
    Malicious,
    /// Some evidence, not enough for malicious.
    Suspicious,
    /// VirusTotal scanned it and no engine flagged it.
    Clean,
    /// Listed as a known file (allow list, CIRCL hashlookup/NSRL).
    KnownGood,
    /// Every provider that answered does not know the file.
    Unknown,
    /// Not asked yet (quota or time budget); queued for a later search.
    Pending,
    /// No provider could answer (key rejected, bad reply, ...).
    Error,
}

impl Verdict {
    /// The field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Malicious => "malicious",
            Verdict::Suspicious => "suspicious",
            Verdict::Clean => "clean",
            Verdict::KnownGood => "known_good",
            Verdict::Unknown => "unknown",
            Verdict::Pending => "pending",
            Verdict::Error => "error",
        }
    }

    /// Precedence when answers are combined (higher wins), see
    /// [`super::combine`].
    pub(crate) fn rank(self) -> u8 {
        match self {
            Verdict::Malicious => 6,
            Verdict::Suspicious => 5,
            Verdict::KnownGood => 4,
            Verdict::Clean => 3,
            Verdict::Unknown => 2,
            Verdict::Pending => 1,
            Verdict::Error => 0,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one provider knows about a file it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// One of malicious, suspicious, clean, known_good (or unknown when
    /// a record exists but says nothing, e.g. no engine scanned it).
    pub verdict: Verdict,
    /// Engines flagging it (VirusTotal only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detections: Option<u32>,
    /// Engines that gave a verdict (VirusTotal only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engines: Option<u32>,
    /// Threat label or file description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A page an analyst can open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// When the provider first saw the file, as the provider writes it
    /// (kept in the cache; DESIGN §2 has no field for it yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
}

impl Finding {
    /// A finding with only a verdict.
    pub fn new(verdict: Verdict) -> Finding {
        Finding {
            verdict,
            detections: None,
            engines: None,
            label: None,
            link: None,
            first_seen: None,
        }
    }
}

/// Why a lookup was not made (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PendingReason {
    /// A quota (the provider's, the host's ledger, or `max_lookups`).
    Quota,
    /// The search's `lookup_budget` ran out, or the provider kept timing
    /// out.
    Timeout,
    /// The provider could not be reached (DNS, connection, TLS, proxy), or
    /// its circuit is open (see `crate::circuit`).
    Unreachable,
}

impl PendingReason {
    /// `quota` / `timeout` / `unreachable`, the `rep_error` value and the queue reason.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingReason::Quota => "quota",
            PendingReason::Timeout => "timeout",
            PendingReason::Unreachable => "unreachable",
        }
    }

    /// The inverse of [`PendingReason::as_str`].
    pub fn parse(text: &str) -> Option<PendingReason> {
        match text {
            "quota" => Some(PendingReason::Quota),
            "timeout" => Some(PendingReason::Timeout),
            "unreachable" => Some(PendingReason::Unreachable),
            _ => None,
        }
    }
}

/// A lookup that produced no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not asked (or asked too late); worth trying in a later search.
    Pending(PendingReason),
    /// The provider refused our API key (401/403, MalwareBazaar
    /// `auth_key_required`/`unknown_auth_key`).
    KeyRejected {
        /// How it was refused: `http 401`, `auth_key_required`, ...
        why: String,
    },
    /// The provider needs a key and none is configured.
    NoKey,
    /// Anything else, as a short text without secrets (`http 503`,
    /// `unreadable reply`, ...).
    Error(String),
}

impl Failure {
    /// `rep_error` text for this failure at `provider`. Pending reasons
    /// are the bare words `quota`/`timeout` (what users filter on); errors
    /// name the provider because several may fail differently.
    pub fn describe(&self, provider: &str) -> String {
        match self {
            Failure::Pending(r) => r.as_str().to_string(),
            Failure::KeyRejected { why } => {
                format!("{provider}: the API key was rejected ({why})")
            }
            Failure::NoKey => format!("{provider}: no API key configured"),
            Failure::Error(text) => format!("{provider}: {text}"),
        }
    }
}

/// What one provider said about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider has a record of the file.
    Found(Finding),
    /// The provider does not know the file (a definitive answer).
    NotFound,
    /// No answer.
    Failed(Failure),
}

/// An [`Outcome`] with where and when it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderResult {
    /// Provider name.
    pub provider: &'static str,
    /// What it said.
    pub outcome: Outcome,
    /// Epoch seconds of the answer.
    pub checked_at: i64,
    /// True when read from the cache.
    pub cached: bool,
}

/// The reputation of one file: the `rep_*` fields of DESIGN §2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `rep_verdict`.
    pub verdict: Verdict,
    /// `rep_detections`.
    pub detections: Option<u32>,
    /// `rep_engines`.
    pub engines: Option<u32>,
    /// `rep_label`.
    pub label: Option<String>,
    /// `rep_sources` (multivalue): providers that answered, in provider
    /// order.
    pub sources: Vec<&'static str>,
    /// `rep_checked`: epoch seconds of the oldest answer combined here (the
    /// answer is at least this fresh).
    pub checked: i64,
    /// `rep_cached`: every answer combined here came from the cache.
    pub cached: bool,
    /// `rep_link`.
    pub link: Option<String>,
    /// `rep_error`: why `pending`/`error`; empty otherwise.
    pub error: Option<String>,
}

/// Output field names in the order of [`Answer::field_values`].
pub const ANSWER_FIELDS: [&str; 9] = [
    "rep_verdict",
    "rep_detections",
    "rep_engines",
    "rep_label",
    "rep_sources",
    "rep_checked",
    "rep_cached",
    "rep_link",
    "rep_error",
];

impl Answer {
    /// An answer that carries only a verdict and a reason.
    pub fn failed(verdict: Verdict, error: String, now: i64) -> Answer {
        Answer {
            verdict,
            detections: None,
            engines: None,
            label: None,
            sources: Vec::new(),
            checked: now,
            cached: false,
            link: None,
            error: Some(error),
        }
    }

    /// Every `rep_*` field with its values (none = empty cell; only
    /// `rep_sources` may have several), in [`ANSWER_FIELDS`] order, so the
    /// command never needs to know how each is spelled.
    pub fn field_values(&self) -> [(&'static str, Vec<String>); 9] {
        let one = |v: Option<String>| v.into_iter().collect::<Vec<_>>();
        [
            (ANSWER_FIELDS[0], vec![self.verdict.as_str().to_string()]),
            (
                ANSWER_FIELDS[1],
                one(self.detections.map(|d| d.to_string())),
            ),
            (ANSWER_FIELDS[2], one(self.engines.map(|d| d.to_string()))),
            (ANSWER_FIELDS[3], one(self.label.clone())),
            (
                ANSWER_FIELDS[4],
                self.sources.iter().map(|s| s.to_string()).collect(),
            ),
            (ANSWER_FIELDS[5], vec![self.checked.to_string()]),
            (
                ANSWER_FIELDS[6],
                vec![if self.cached { "1" } else { "0" }.to_string()],
            ),
            (ANSWER_FIELDS[7], one(self.link.clone())),
            (ANSWER_FIELDS[8], one(self.error.clone())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_cover_every_field_once() {
        let a = Answer {
            verdict: Verdict::Malicious,
            detections: Some(44),
            engines: Some(73),
            label: Some("ransomware.hive/recyl".into()),
            sources: vec!["virustotal", "malwarebazaar"],
            checked: 1_700_000_000,
            cached: true,
            link: None,
            error: None,
        };
        let f = a.field_values();
        assert_eq!(f.clone().map(|(n, _)| n), ANSWER_FIELDS);
        assert_eq!(f[0].1, ["malicious"]);
        assert_eq!(f[4].1, ["virustotal", "malwarebazaar"]);
        assert_eq!(f[6].1, ["1"]);
        assert!(f[7].1.is_empty() && f[8].1.is_empty());
    }

    #[test]
    fn pending_reasons_are_bare_words() {
        assert_eq!(
            Failure::Pending(PendingReason::Quota).describe("virustotal"),
            "quota"
        );
        let k = Failure::KeyRejected {
            why: "http 401".into(),
        }
        .describe("virustotal");
        assert!(
            k.contains("virustotal") && k.contains("key was rejected"),
            "{k}"
        );
        assert_eq!(
            PendingReason::parse("timeout"),
            Some(PendingReason::Timeout)
        );
    }
}
