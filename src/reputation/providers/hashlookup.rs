//! CIRCL hashlookup: `GET {base}/lookup/{md5|sha1|sha256}/{hash}`, no key.
//!
//! hashlookup is a set of *known* files (NSRL and other package sets), so a
//! hit means "a known, published file", which is what `known_good` is for:
//! it suppresses `unknown` for the thousands of Windows binaries in Sysmon
//! data. It is not a malware verdict service.
//!
//! - 200 → `known_good`, label `<file name> (<db or source>)` (the base name
//!   only: the package-internal path is noise);
//! - 200 with a `KnownMalicious` key (a malware feed, e.g. `malshare.com`,
//!   also lists the file) → **`suspicious`**, label
//!   `KnownMalicious: <feed>`. Not `known_good`: the file is on a malware
//!   list. Not `malicious` either: the flag names a feed without any
//!   detection evidence, and CIRCL's own measured example is the 4-byte
//!   file "test", flagged with trust 100 — a popular file that happens to
//!   be in a feed. VirusTotal or MalwareBazaar decide `malicious`;
//! - 404 → not found; 400 → an error (the hash format was refused, which
//!   validated hex should never cause).
//!
//! Hash values and file sizes in replies are upper-case strings; neither
//! is used. `rep_link` is the public JSON record.

use super::{basename, status_fallback, unreadable, HttpProvider};
use crate::reputation::client::HttpReply;
use crate::reputation::keys::ApiKey;
use crate::reputation::lookup::LookupKey;
use crate::reputation::verdict::{Failure, Finding, Outcome, Verdict};
use reqwest::{Client, RequestBuilder};
use serde_json::{Map, Value};

/// The CIRCL hashlookup provider.
#[derive(Debug, Clone)]
pub struct Hashlookup {
    base_url: String,
}

impl Hashlookup {
    /// A provider at `base_url`.
    pub fn new(base_url: &str) -> Hashlookup {
        Hashlookup {
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }
}

fn text<'a>(record: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    record
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn finding(hash: &LookupKey, record: &Map<String, Value>) -> Finding {
    let origin = text(record, "db").or_else(|| text(record, "source"));
    let name = text(record, "FileName")
        .map(basename)
        .filter(|n| !n.is_empty());
    let (verdict, label) = match record.get("KnownMalicious").filter(|v| !v.is_null()) {
        Some(feed) => {
            let feed = feed
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| feed.to_string());
            (Verdict::Suspicious, Some(format!("KnownMalicious: {feed}")))
        }
        None => {
            let label = match (name, origin) {
                (Some(n), Some(o)) => Some(format!("{n} ({o})")),
                (Some(n), None) => Some(n.to_string()),
                (None, o) => o.map(str::to_string),
            };
            (Verdict::KnownGood, label)
        }
    };
    Finding {
        verdict,
        label,
        link: Some(format!(
            "https://hashlookup.circl.lu/lookup/{}/{}",
            hash.algorithm(),
            hash.hex()
        )),
        first_seen: text(record, "insert-timestamp").map(str::to_string),
        ..Finding::new(verdict)
    }
}

impl HttpProvider for Hashlookup {
    fn name(&self) -> &'static str {
        "hashlookup"
    }

    fn needs_key(&self) -> bool {
        false
    }

    fn request(&self, client: &Client, _key: Option<&ApiKey>, hash: &LookupKey) -> RequestBuilder {
        client
            .get(format!(
                "{}/lookup/{}/{}",
                self.base_url,
                hash.algorithm(),
                hash.hex()
            ))
            .header(reqwest::header::ACCEPT, "application/json")
    }

    fn interpret(&self, hash: &LookupKey, reply: &HttpReply) -> Outcome {
        match reply.status {
            200 => match serde_json::from_slice::<Map<String, Value>>(&reply.body) {
                Ok(record) => Outcome::Found(finding(hash, &record)),
                Err(_) => unreadable(200),
            },
            404 => Outcome::NotFound,
            400 => Outcome::Failed(Failure::Error(
                "the hash format was refused (http 400)".into(),
            )),
            s => status_fallback(s, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LookupKey {
        LookupKey::parse_hex(&"e3".repeat(32)).unwrap()
    }

    fn found(body: &str) -> Finding {
        match Hashlookup::new("http://x").interpret(&key(), &HttpReply::new(200, body)) {
            Outcome::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn known_file_is_known_good_with_name_and_db() {
        let f = found(
            r#"{"FileName":"./usr/lib/x/requires.txt","db":"nsrl_legacy","source":"snap:1"}"#,
        );
        assert_eq!(f.verdict, Verdict::KnownGood);
        assert_eq!(f.label.as_deref(), Some("requires.txt (nsrl_legacy)"));
        assert!(f
            .link
            .unwrap()
            .ends_with(&format!("/lookup/sha256/{}", "e3".repeat(32))));
        // 2022 format: no db/source.
        assert_eq!(
            found(r#"{"FileName":"network","MD5":"X"}"#)
                .label
                .as_deref(),
            Some("network")
        );
        assert_eq!(found(r#"{"source":"NSRL"}"#).label.as_deref(), Some("NSRL"));
    }

    #[test]
    fn known_malicious_is_suspicious_not_known_good() {
        let f =
            found(r#"{"FileName":"t.txt","KnownMalicious":"malshare.com","hashlookup:trust":100}"#);
        assert_eq!(f.verdict, Verdict::Suspicious);
        assert_eq!(f.label.as_deref(), Some("KnownMalicious: malshare.com"));
    }

    #[test]
    fn statuses() {
        let p = Hashlookup::new("http://x");
        assert_eq!(
            p.interpret(&key(), &HttpReply::new(404, "{}")),
            Outcome::NotFound
        );
        assert!(matches!(
            p.interpret(&key(), &HttpReply::new(400, "{}")),
            Outcome::Failed(Failure::Error(_))
        ));
        assert!(matches!(
            p.interpret(&key(), &HttpReply::new(200, "[1]")),
            Outcome::Failed(Failure::Error(_))
        ));
        // No key, so a 403 is not a key problem.
        assert_eq!(
            p.interpret(&key(), &HttpReply::new(403, "")),
            Outcome::Failed(Failure::Error("http 403".into()))
        );
    }
}
