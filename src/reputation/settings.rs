//! What the reputation engine can be told: host-wide settings (from
//! `sysmonenrich.conf`) and the per-search options (from the search bar).
//!
//! They are two structs on purpose: the conf file is read once per process
//! and is the same for every search on the host, while `max_lookups`,
//! `lookup_budget`, `providers` and `refresh` change from one search to the
//! next. Defaults are named so the conf spec and the code cannot drift.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default VirusTotal API base URL.
pub const DEFAULT_VIRUSTOTAL_URL: &str = "https://www.virustotal.com";
/// Default CIRCL hashlookup base URL.
pub const DEFAULT_HASHLOOKUP_URL: &str = "https://hashlookup.circl.lu";
/// Default MalwareBazaar API base URL.
pub const DEFAULT_MALWAREBAZAAR_URL: &str = "https://mb-api.abuse.ch";

/// Limits and address of one remote provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Scheme, host and port (no trailing path); tests point this at a fake.
    pub base_url: String,
    /// Requests to this provider in flight at once, per search.
    pub concurrency: usize,
    /// Requests per sliding minute shared by every search on the host
    /// (through the state store); 0 = no limit.
    pub per_minute: u32,
    /// Requests per sliding day shared by every search on the host; 0 = no
    /// limit.
    pub per_day: u32,
    /// Smallest gap between two requests of one search (politeness towards
    /// free services that publish no limit); zero = none.
    pub min_interval: Duration,
    /// This search head's part of `per_minute` and `per_day` (see
    /// [`QuotaShare`]).
    pub quota_share: QuotaShare,
}

/// How much of a provider's quota this search head may spend.
///
/// Each search head keeps its own ledger, so the members of a search head
/// cluster would each spend the whole quota (three members: three times
/// the provider's limit, and 429s). `Auto` divides the quota by the number
/// of cluster members splunkd reports (1 outside a cluster); `Fraction`
/// takes a fixed part, in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaShare {
    /// 1 / the number of search head cluster members.
    Auto,
    /// A fixed part, in thousandths (1..=1000).
    Permille(u32),
}

impl QuotaShare {
    /// `auto`, or a fraction `0 < f <= 1` (`0.5`, `.25`, `1`).
    pub fn parse(text: &str) -> Option<QuotaShare> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Some(QuotaShare::Auto);
        }
        let f: f64 = t.parse().ok()?;
        (f > 0.0 && f <= 1.0).then(|| QuotaShare::Permille(((f * 1000.0).round() as u32).max(1)))
    }
}

impl ProviderSettings {
    /// These settings with the quota this search head may spend when the
    /// cluster has `members` members (1 outside a cluster). A limit stays
    /// at least 1 per window: 0 would mean "no limit".
    pub fn shared(&self, members: u32) -> ProviderSettings {
        let part = |limit: u32| -> u32 {
            if limit == 0 {
                return 0;
            }
            let n = match self.quota_share {
                QuotaShare::Auto => limit / members.max(1),
                QuotaShare::Permille(pm) => {
                    (u64::from(limit) * u64::from(pm) / 1000).min(u64::from(limit)) as u32
                }
            };
            n.max(1)
        };
        ProviderSettings {
            per_minute: part(self.per_minute),
            per_day: part(self.per_day),
            ..self.clone()
        }
    }
}

/// Host-wide settings (the `[reputation]` part of `sysmonenrich.conf`).
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// VirusTotal API v3 (key needed). Free keys: 4/min, 500/day.
    pub virustotal: ProviderSettings,
    /// CIRCL hashlookup (no key, best effort, no published limit).
    pub hashlookup: ProviderSettings,
    /// MalwareBazaar (key needed, no published limit).
    pub malwarebazaar: ProviderSettings,
    /// VirusTotal detections at or above this make a file `malicious`;
    /// 1 up to this − 1 make it `suspicious`; 0 is `clean`.
    pub vt_malicious_threshold: u32,
    /// Whole-request timeout for one HTTP request (connect to last byte).
    pub request_timeout: Duration,
    /// Retries after the first attempt, for timeouts, resets, 408, 429, 5xx.
    pub max_retries: u32,
    /// First backoff delay; doubled per retry.
    pub retry_base_delay: Duration,
    /// Largest backoff delay.
    pub retry_max_delay: Duration,
    /// Cache lifetime of an answer that knows the file.
    pub cache_ttl_found: Duration,
    /// Cache lifetime of "the provider does not know this file" (shorter:
    /// new samples get known within hours).
    pub cache_ttl_not_found: Duration,
    /// Explicit proxy URL for provider requests (overrides `HTTPS_PROXY`);
    /// may carry credentials, so it is never printed.
    pub proxy: Option<String>,
    /// Accept splunkd's certificate without verification when
    /// `splunkd_uri` is a loopback address (Splunk's default self-signed
    /// certificate). Other hosts are always verified.
    pub splunkd_insecure_loopback: bool,
    /// The allow/deny list CSV (`hash,verdict,label,comment`).
    pub local_list: Option<PathBuf>,
    /// Queued (pending) hashes a search tries to resolve first.
    pub pending_batch: usize,
    /// A hash queued this many times without an answer is dropped from the
    /// queue (counted in the summary and logged).
    pub pending_max_attempts: u32,
}

/// Default retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default VirusTotal malicious threshold.
pub const DEFAULT_VT_MALICIOUS_THRESHOLD: u32 = 5;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            virustotal: ProviderSettings {
                base_url: DEFAULT_VIRUSTOTAL_URL.into(),
                concurrency: 4,
                per_minute: 4,
                per_day: 500,
                min_interval: Duration::ZERO,
                quota_share: QuotaShare::Auto,
            },
            hashlookup: ProviderSettings {
                base_url: DEFAULT_HASHLOOKUP_URL.into(),
                concurrency: 8,
                per_minute: 0,
                per_day: 0,
                min_interval: Duration::from_millis(50),
                quota_share: QuotaShare::Auto,
            },
            malwarebazaar: ProviderSettings {
                base_url: DEFAULT_MALWAREBAZAAR_URL.into(),
                concurrency: 4,
                per_minute: 0,
                per_day: 0,
                min_interval: Duration::from_millis(100),
                quota_share: QuotaShare::Auto,
            },
            vt_malicious_threshold: DEFAULT_VT_MALICIOUS_THRESHOLD,
            request_timeout: Duration::from_secs(10),
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(8),
            cache_ttl_found: Duration::from_secs(7 * 86_400),
            cache_ttl_not_found: Duration::from_secs(86_400),
            proxy: None,
            splunkd_insecure_loopback: true,
            local_list: None,
            pending_batch: 100,
            pending_max_attempts: 20,
        }
    }
}

impl Settings {
    /// The settings of a remote provider by name.
    pub fn provider(&self, name: &str) -> Option<&ProviderSettings> {
        match name {
            "virustotal" => Some(&self.virustotal),
            "hashlookup" => Some(&self.hashlookup),
            "malwarebazaar" => Some(&self.malwarebazaar),
            _ => None,
        }
    }
}

// By hand, because `proxy` may hold `user:password@`.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("virustotal", &self.virustotal)
            .field("hashlookup", &self.hashlookup)
            .field("malwarebazaar", &self.malwarebazaar)
            .field("vt_malicious_threshold", &self.vt_malicious_threshold)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("cache_ttl_found", &self.cache_ttl_found)
            .field("cache_ttl_not_found", &self.cache_ttl_not_found)
            .field("proxy", &self.proxy.as_ref().map(|_| "<set>"))
            .field("splunkd_insecure_loopback", &self.splunkd_insecure_loopback)
            .field("local_list", &self.local_list)
            .field("pending_batch", &self.pending_batch)
            .field("pending_max_attempts", &self.pending_max_attempts)
            .finish()
    }
}

/// What one search asks for (the search-bar options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOptions {
    /// Providers in order of preference (`local`, `hashlookup`,
    /// `virustotal`, `malwarebazaar`); the order breaks ties when choosing
    /// the label and link of a combined answer.
    pub providers: Vec<String>,
    /// Most provider lookups (one hash at one provider, retries included)
    /// this search may make.
    pub max_lookups: u64,
    /// Longest this search waits for the network, over all its chunks.
    pub lookup_budget: Duration,
    /// Ignore cached answers (new answers still overwrite the cache).
    pub refresh: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            providers: ["local", "hashlookup", "virustotal", "malwarebazaar"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_lookups: 100,
            lookup_budget: Duration::from_secs(10),
            refresh: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_proxy() {
        let s = Settings {
            proxy: Some("http://user:hunter2@proxy:3128".into()),
            ..Settings::default()
        };
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<set>"));
    }
}
