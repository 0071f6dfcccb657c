//! The remote providers, each a pair of pure functions: build the request,
//! interpret the reply.
//!
//! Sending, retrying, limiting and caching are the same for every provider
//! and live in `service.rs`; a provider file only knows its API: the URL,
//! where the key goes, and what its bodies mean. That keeps every mapping
//! testable against the real example bodies without a server, and makes a
//! new provider one new file.
//!
//! The local allow/deny list is not a remote provider (no HTTP, no cache,
//! no quota) and has its own type, [`local::LocalList`].

pub mod hashlookup;
pub mod local;
pub mod malwarebazaar;
pub mod virustotal;

use super::client::HttpReply;
use super::keys::ApiKey;
use super::lookup::LookupKey;
use super::settings::Settings;
use super::verdict::{Failure, Outcome, PendingReason};
use reqwest::{Client, RequestBuilder};

/// A reputation service reached over HTTP.
pub trait HttpProvider: Send + Sync {
    /// The name used in settings, `rep_sources`, the cache and the quota
    /// ledger.
    fn name(&self) -> &'static str;

    /// True when requests need an API key (without one the provider is
    /// skipped).
    fn needs_key(&self) -> bool;

    /// The request for `hash`. The key, when there is one, goes in a
    /// header: never in the URL.
    fn request(&self, client: &Client, key: Option<&ApiKey>, hash: &LookupKey) -> RequestBuilder;

    /// What a (final) reply means.
    fn interpret(&self, hash: &LookupKey, reply: &HttpReply) -> Outcome;
}

/// The remote provider called `name`, configured from `settings`.
pub fn remote(name: &str, settings: &Settings) -> Option<Box<dyn HttpProvider>> {
    Some(match name {
        "virustotal" => Box::new(virustotal::VirusTotal::new(
            &settings.virustotal.base_url,
            settings.vt_malicious_threshold,
        )),
        "hashlookup" => Box::new(hashlookup::Hashlookup::new(&settings.hashlookup.base_url)),
        "malwarebazaar" => Box::new(malwarebazaar::MalwareBazaar::new(
            &settings.malwarebazaar.base_url,
        )),
        _ => return None,
    })
}

/// The meaning of a status a provider's own mapping does not cover: 429
/// is a quota (postponed, never an error: the hash is queued), 401/403 at
/// a keyed provider is a refused key, anything else is an error naming
/// the status.
pub(crate) fn status_fallback(status: u16, keyed: bool) -> Outcome {
    Outcome::Failed(match status {
        429 => Failure::Pending(PendingReason::Quota),
        401 | 403 if keyed => Failure::KeyRejected {
            why: format!("http {status}"),
        },
        _ => Failure::Error(format!("http {status}")),
    })
}

/// A reply body that did not parse.
pub(crate) fn unreadable(status: u16) -> Outcome {
    Outcome::Failed(Failure::Error(format!("unreadable reply (http {status})")))
}

/// A provider-chosen word (error code, status) made safe to show: the
/// word itself when it is 1–40 ASCII letters and underscores, else empty.
pub(crate) fn token(text: &str) -> String {
    // Provider codes and statuses are words (`NotFoundError`,
    // `hash_not_found`). Anything else is not shown at all: a reply that
    // echoes a request (and so possibly a key) must not reach a field.
    if !text.is_empty()
        && text.len() <= 40
        && text.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
    {
        text.to_string()
    } else {
        String::new()
    }
}

/// The part of a Windows or Unix path after its last separator.
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_statuses() {
        assert_eq!(
            status_fallback(429, false),
            Outcome::Failed(Failure::Pending(PendingReason::Quota))
        );
        assert!(matches!(
            status_fallback(403, true),
            Outcome::Failed(Failure::KeyRejected { .. })
        ));
        assert_eq!(
            status_fallback(403, false),
            Outcome::Failed(Failure::Error("http 403".into()))
        );
        assert_eq!(
            status_fallback(503, true),
            Outcome::Failed(Failure::Error("http 503".into()))
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(token("NotFoundError"), "NotFoundError");
        assert_eq!(token("hash_not_found"), "hash_not_found");
        assert_eq!(token("Not<Found>Error; rm -rf"), "");
        assert_eq!(token(&"ab12".repeat(16)), "");
        assert_eq!(basename("./usr/lib/x/requires.txt"), "requires.txt");
        assert_eq!(basename(r"C:\Windows\System32\cmd.exe"), "cmd.exe");
        assert_eq!(basename("network"), "network");
        for name in ["virustotal", "hashlookup", "malwarebazaar"] {
            assert_eq!(remote(name, &Settings::default()).unwrap().name(), name);
        }
        assert!(remote("local", &Settings::default()).is_none());
    }
}
