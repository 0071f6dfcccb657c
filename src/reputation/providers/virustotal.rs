//! VirusTotal API v3: `GET {base}/api/v3/files/{md5|sha1|sha256}` with
//! the key in `x-apikey`.
//!
//! Mapping of a 200 file object (`data.attributes`):
//!
//! - `rep_detections` = `last_analysis_stats.malicious`;
//! - `rep_engines` = malicious + suspicious + undetected + harmless: the
//!   engines that gave a verdict. `timeout`, `confirmed-timeout`,
//!   `failure` and `type-unsupported` are left out — those engines did not
//!   look at the file, and counting them would make "44/77" read as if 33
//!   engines had cleared it;
//! - verdict: detections ≥ `vt_malicious_threshold` → malicious, 1 up to
//!   the threshold − 1 → suspicious, 0 → clean; no engine at all (nothing
//!   analysed yet) → unknown;
//! - `rep_label` = `popular_threat_classification.suggested_threat_label`,
//!   the only string there (`popular_threat_category` and
//!   `popular_threat_name` are lists of `{value, count}` and are not used);
//! - `rep_link` = `https://www.virustotal.com/gui/file/<sha256>`, the
//!   object id, whatever hash was asked;
//! - first seen = `first_submission_date` (epoch seconds).
//!
//! Errors are `{"error": {"code", "message"}}`: 404 `NotFoundError` is
//! "not found"; 401 (`AuthenticationRequiredError`, `WrongCredentialsError`,
//! `UserNotActiveError`) and 403 `ForbiddenError` mean the key was refused;
//! 429 (`QuotaExceededError`, `TooManyRequestsError`) is a quota. Only the
//! error *code* is ever shown, never the message.

use super::{status_fallback, token, unreadable, HttpProvider};
use crate::reputation::client::HttpReply;
use crate::reputation::keys::ApiKey;
use crate::reputation::lookup::LookupKey;
use crate::reputation::verdict::{Failure, Finding, Outcome, Verdict};
use reqwest::{Client, RequestBuilder};
use serde::Deserialize;

/// The VirusTotal provider.
#[derive(Debug, Clone)]
pub struct VirusTotal {
    base_url: String,
    threshold: u32,
}

impl VirusTotal {
    /// A provider at `base_url` with the malicious threshold (at least 1).
    pub fn new(base_url: &str, malicious_threshold: u32) -> VirusTotal {
        VirusTotal {
            base_url: base_url.trim_end_matches('/').to_string(),
            threshold: malicious_threshold.max(1),
        }
    }
}

#[derive(Deserialize)]
struct FileObject {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize, Default)]
struct Attributes {
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    first_submission_date: Option<i64>,
    #[serde(default)]
    last_analysis_stats: Option<Stats>,
    #[serde(default)]
    popular_threat_classification: Option<Classification>,
}

#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    malicious: u32,
    #[serde(default)]
    suspicious: u32,
    #[serde(default)]
    undetected: u32,
    #[serde(default)]
    harmless: u32,
}

#[derive(Deserialize)]
struct Classification {
    #[serde(default)]
    suggested_threat_label: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
}

impl VirusTotal {
    fn finding(&self, hash: &LookupKey, body: &[u8]) -> Option<Finding> {
        let obj: FileObject = serde_json::from_slice(body).ok()?;
        let a = obj.data.attributes;
        let sha256 = a
            .sha256
            .or(obj.data.id)
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|s| s.to_ascii_lowercase())
            .or_else(|| matches!(hash, LookupKey::Sha256(_)).then(|| hash.hex().to_string()));
        let (detections, engines) = a
            .last_analysis_stats
            .map(|s| {
                let engines = s.malicious + s.suspicious + s.undetected + s.harmless;
                (s.malicious, engines)
            })
            .unwrap_or((0, 0));
        let verdict = if engines == 0 {
            Verdict::Unknown
        } else if detections >= self.threshold {
            Verdict::Malicious
        } else if detections > 0 {
            Verdict::Suspicious
        } else {
            Verdict::Clean
        };
        Some(Finding {
            verdict,
            detections: Some(detections),
            engines: Some(engines),
            label: a
                .popular_threat_classification
                .and_then(|c| c.suggested_threat_label)
                .filter(|l| !l.trim().is_empty()),
            link: sha256.map(|s| format!("https://www.virustotal.com/gui/file/{s}")),
            first_seen: a.first_submission_date.map(|t| t.to_string()),
        })
    }
}

impl HttpProvider for VirusTotal {
    fn name(&self) -> &'static str {
        "virustotal"
    }

    fn needs_key(&self) -> bool {
        true
    }

    fn request(&self, client: &Client, key: Option<&ApiKey>, hash: &LookupKey) -> RequestBuilder {
        let mut r = client
            .get(format!("{}/api/v3/files/{}", self.base_url, hash.hex()))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(k) = key {
            r = r.header("x-apikey", k.expose());
        }
        r
    }

    fn interpret(&self, hash: &LookupKey, reply: &HttpReply) -> Outcome {
        match reply.status {
            200 => match self.finding(hash, &reply.body) {
                Some(f) => Outcome::Found(f),
                None => unreadable(200),
            },
            404 => Outcome::NotFound,
            401 | 403 | 429 => status_fallback(reply.status, true),
            s @ 400..=499 => {
                let code = serde_json::from_slice::<ErrorBody>(&reply.body)
                    .map(|e| token(&e.error.code))
                    .unwrap_or_default();
                Outcome::Failed(Failure::Error(
                    format!("http {s} {code}").trim_end().to_string(),
                ))
            }
            s => status_fallback(s, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vt() -> VirusTotal {
        VirusTotal::new("https://vt.test/", 5)
    }

    fn body(malicious: u32, undetected: u32) -> String {
        format!(
            r#"{{"data":{{"id":"{id}","type":"file","attributes":{{
              "last_analysis_stats":{{"malicious":{malicious},"suspicious":1,"undetected":{undetected},"harmless":0,
                "timeout":2,"confirmed-timeout":0,"failure":1,"type-unsupported":4}},
              "first_submission_date":1747109144,
              "popular_threat_classification":{{"popular_threat_category":[{{"value":"trojan","count":3}}],
                "suggested_threat_label":"trojan.x/y"}}}}}}}}"#,
            id = "ab".repeat(32)
        )
    }

    fn key() -> LookupKey {
        LookupKey::parse_hex(&"cd".repeat(20)).unwrap()
    }

    #[test]
    fn threshold_decides_and_engines_exclude_non_verdicts() {
        let cases = [
            (5, Verdict::Malicious),
            (4, Verdict::Suspicious),
            (1, Verdict::Suspicious),
            (0, Verdict::Clean),
        ];
        for (m, want) in cases {
            let Outcome::Found(f) = vt().interpret(&key(), &HttpReply::new(200, body(m, 10)))
            else {
                panic!("not found for {m}");
            };
            assert_eq!(f.verdict, want, "{m}");
            assert_eq!(f.detections, Some(m));
            assert_eq!(f.engines, Some(m + 1 + 10));
            assert_eq!(f.label.as_deref(), Some("trojan.x/y"));
            // The link names the object id (sha256) although a sha1 was asked.
            assert_eq!(
                f.link.as_deref(),
                Some(format!("https://www.virustotal.com/gui/file/{}", "ab".repeat(32)).as_str())
            );
            assert_eq!(f.first_seen.as_deref(), Some("1747109144"));
        }
    }

    #[test]
    fn no_engines_is_unknown_and_garbage_is_an_error() {
        let empty = format!(
            r#"{{"data":{{"id":"{}","attributes":{{}}}}}}"#,
            "ab".repeat(32)
        );
        let Outcome::Found(f) = vt().interpret(&key(), &HttpReply::new(200, empty)) else {
            panic!()
        };
        assert_eq!(f.verdict, Verdict::Unknown);
        assert!(matches!(
            vt().interpret(&key(), &HttpReply::new(200, "<html>")),
            Outcome::Failed(Failure::Error(_))
        ));
    }

    #[test]
    fn error_statuses() {
        let err = |s, code: &str| {
            vt().interpret(
                &key(),
                &HttpReply::new(
                    s,
                    format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#),
                ),
            )
        };
        assert_eq!(err(404, "NotFoundError"), Outcome::NotFound);
        assert!(matches!(
            err(401, "WrongCredentialsError"),
            Outcome::Failed(Failure::KeyRejected { .. })
        ));
        assert!(matches!(
            err(429, "QuotaExceededError"),
            Outcome::Failed(Failure::Pending(_))
        ));
        assert_eq!(
            err(400, "InvalidArgumentError"),
            Outcome::Failed(Failure::Error("http 400 InvalidArgumentError".into()))
        );
        assert_eq!(
            err(503, "TransientError"),
            Outcome::Failed(Failure::Error("http 503".into()))
        );
    }

    #[test]
    fn key_goes_in_a_header_never_the_url() {
        let client = Client::new();
        let req = vt()
            .request(&client, Some(&ApiKey::new("secret-key-1")), &key())
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            format!("https://vt.test/api/v3/files/{}", "cd".repeat(20))
        );
        assert_eq!(req.headers()["x-apikey"], "secret-key-1");
        assert!(!req.url().as_str().contains("secret"));
    }
}
