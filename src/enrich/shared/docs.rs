//! The documents of the app's KV store collections, and their conversion
//! to and from what the local state store keeps.
//!
//! Why they look the way they do:
//!
//! - `sysmonenrich_reputation`: one document per (provider, cached key),
//!   `_key` = `<provider>:<cache key>` (`virustotal:sha256:…`), so a
//!   member's answer replaces the older one instead of piling up. `hash`
//!   and `rep_verdict` are top-level fields so that `| lookup
//!   sysmonenrich_reputation hash OUTPUT rep_verdict` works in any
//!   search; `answer` is the cached JSON exactly as the local cache
//!   stores it, so a reader gets what a provider said, not a summary.
//!   `checked` and `expires` are epoch seconds: a reader honours
//!   `expires` as the local cache does.
//! - `sysmonenrich_processes`: one document per process, `_key` = the
//!   `ProcessGuid` text, with the creation facts as the persist writer
//!   stores them (command lines already cut) and their `digest`. A reader
//!   recomputes the digest from the document's fields and refuses a
//!   document that does not match it (a member's write cut short, or a
//!   hand edit in the collection), so the shared tier cannot feed a
//!   chain what the trust rules would not. The KV store keeps numbers as
//!   doubles, so the 64-bit digest and the rule fingerprints are hex
//!   text. `sigma` holds the fingerprints of the Sigma rules the creation
//!   matched (`state/sigma.rs`): a fingerprint is the identity of one
//!   version of one rule under one engine, so a reader names only rules
//!   its own rule set has in that very version.
//!
//! No document holds a key or a session key: only what the providers
//! answered and what Sysmon logged.

use crate::state::{process_digest, StoredProcess, Writer};
use crate::sysmon::hashes::{Md5, Sha1, Sha256};
use crate::sysmon::ProcessGuid;
use serde_json::{json, Map, Value};

/// The reputation cache's collection (and its KV-store lookup).
pub const REPUTATION: &str = "sysmonenrich_reputation";
/// The process table's collection.
pub const PROCESSES: &str = "sysmonenrich_processes";

/// Sigma fingerprints kept per process document at most (as locally).
pub const MAX_SIGMA: usize = crate::state::MAX_SIGMA_STORED;

/// One cached reputation answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAnswer {
    /// `virustotal`, `hashlookup`, ...
    pub provider: String,
    /// The cache key (`sha256:<hex>`, lower case).
    pub key: String,
    /// The cached JSON, as the local cache stores it.
    pub json: String,
    /// When the provider answered (epoch seconds).
    pub checked: i64,
    /// When the answer expires (epoch seconds).
    pub expires: i64,
}

impl SharedAnswer {
    /// The document's `_key`.
    pub fn doc_key(&self) -> String {
        answer_key(&self.provider, &self.key)
    }

    /// The document.
    pub fn to_doc(&self) -> Value {
        let hash = self
            .key
            .split_once(':')
            .map_or(self.key.as_str(), |(_, h)| h);
        let mut doc = json!({
            "_key": self.doc_key(),
            "hash": hash,
            "provider": self.provider,
            "checked": self.checked,
            "expires": self.expires,
            "answer": self.json,
        });
        let answer: Value = serde_json::from_str(&self.json).unwrap_or(Value::Null);
        let status = answer.get("status").and_then(Value::as_str).unwrap_or("");
        let verdict = match status {
            "found" => answer
                .get("verdict")
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
            _ => "unknown",
        };
        let o = doc.as_object_mut().expect("an object");
        o.insert("rep_status".into(), status.into());
        o.insert("rep_verdict".into(), verdict.into());
        for (field, from) in [
            ("rep_detections", "detections"),
            ("rep_engines", "engines"),
            ("rep_label", "label"),
        ] {
            if let Some(v) = answer.get(from).filter(|v| !v.is_null()) {
                o.insert(field.into(), v.clone());
            }
        }
        doc
    }

    /// The answer a document holds, or why it is refused.
    pub fn from_doc(doc: &Value) -> Result<SharedAnswer, String> {
        let o = object(doc)?;
        let provider = text(o, "provider")?;
        let doc_key = text(o, "_key")?;
        let key = doc_key
            .strip_prefix(provider.as_str())
            .and_then(|k| k.strip_prefix(':'))
            .ok_or_else(|| format!("_key {doc_key:?} does not start with provider {provider:?}"))?
            .to_string();
        let (algorithm, hex) = key
            .split_once(':')
            .ok_or_else(|| format!("cache key {key:?} is not algorithm:hex"))?;
        let valid = match algorithm {
            "sha256" => Sha256::parse(hex.as_bytes()).is_some(),
            "sha1" => Sha1::parse(hex.as_bytes()).is_some(),
            "md5" => Md5::parse(hex.as_bytes()).is_some(),
            _ => false,
        };
        if !valid || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("cache key {key:?} is not a lower-case hash"));
        }
        let json = text(o, "answer")?;
        if !serde_json::from_str::<Value>(&json).is_ok_and(|v| v.is_object()) {
            return Err("answer is not a JSON object".into());
        }
        let checked = seconds(o, "checked")?;
        let expires = seconds(o, "expires")?;
        if expires < checked {
            return Err(format!("expires {expires} is before checked {checked}"));
        }
        Ok(SharedAnswer {
            provider,
            key,
            json,
            checked,
            expires,
        })
    }
}

/// A reputation document's `_key`.
pub fn answer_key(provider: &str, cache_key: &str) -> String {
    format!("{provider}:{cache_key}")
}

/// One trusted process creation with who wrote it and its Sigma matches.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedProcess {
    /// The creation as the local table stores it (command lines cut).
    pub process: StoredProcess,
    /// The search that wrote it.
    pub writer: Writer,
    /// Fingerprints of the Sigma rules its creation matched.
    pub sigma: Vec<u64>,
}

impl SharedProcess {
    /// The digest of the creation (`state::process_digest`).
    pub fn digest(&self) -> i64 {
        digest_of(&self.process)
    }

    /// The document.
    pub fn to_doc(&self) -> Value {
        let p = &self.process;
        let guid = |g: u128| ProcessGuid::from_u128(g).to_string();
        let sigma: Vec<String> = self
            .sigma
            .iter()
            .take(MAX_SIGMA)
            .map(|f| format!("{f:016x}"))
            .collect();
        json!({
            "_key": guid(p.guid),
            "parent_guid": p.parent_guid.filter(|g| *g != 0).map(guid),
            "image": p.image,
            "command_line": p.command_line,
            "parent_image": p.parent_image,
            "parent_command_line": p.parent_command_line,
            "host": p.host,
            "time": p.time,
            "md5": p.md5,
            "sha1": p.sha1,
            "sha256": p.sha256,
            "imphash": p.imphash,
            "digest": format!("{:016x}", self.digest() as u64),
            "writer_sid": self.writer.sid,
            "writer_user": self.writer.user,
            "seen_at": p.seen_at,
            "sigma": sigma,
        })
    }

    /// The process a document holds, or why it is refused (a missing or
    /// garbage field, or a digest its fields do not give).
    pub fn from_doc(doc: &Value) -> Result<SharedProcess, String> {
        let o = object(doc)?;
        let key = text(o, "_key")?;
        let guid = ProcessGuid::parse(key.as_bytes())
            .ok_or_else(|| format!("_key {key:?} is not a ProcessGuid"))?;
        let parent_guid = match o.get("parent_guid") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(
                ProcessGuid::parse(s.as_bytes())
                    .ok_or_else(|| format!("parent_guid {s:?} is not a ProcessGuid"))?
                    .as_u128(),
            )
            .filter(|g| *g != 0),
            Some(_) => return Err("parent_guid is not text".into()),
        };
        let hash = |name: &str, valid: fn(&[u8]) -> bool| -> Result<Option<String>, String> {
            match o.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if valid(s.as_bytes()) => Ok(Some(s.to_ascii_lowercase())),
                Some(_) => Err(format!("{name} is not a hash")),
            }
        };
        let time = o
            .get("time")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite())
            .ok_or("time is missing or not a number")?;
        let process = StoredProcess {
            guid: guid.as_u128(),
            parent_guid,
            image: text(o, "image")?,
            command_line: text(o, "command_line")?,
            parent_image: text(o, "parent_image")?,
            parent_command_line: text(o, "parent_command_line")?,
            host: text(o, "host")?,
            time,
            md5: hash("md5", |b| Md5::parse(b).is_some())?,
            sha1: hash("sha1", |b| Sha1::parse(b).is_some())?,
            sha256: hash("sha256", |b| Sha256::parse(b).is_some())?,
            imphash: hash("imphash", |b| Md5::parse(b).is_some())?,
            seen_at: seconds(o, "seen_at")?,
        };
        if parent_guid == Some(process.guid) {
            return Err("the process is its own parent".into());
        }
        let stated = text(o, "digest")?;
        let stated = u64::from_str_radix(&stated, 16)
            .ok()
            .filter(|_| stated.len() == 16)
            .ok_or_else(|| format!("digest {stated:?} is not 16 hex digits"))?;
        if stated as i64 != digest_of(&process) {
            return Err("its fields do not match its digest".into());
        }
        let sigma = match o.get("sigma") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .take(MAX_SIGMA)
                .map(|f| {
                    f.as_str()
                        .filter(|t| t.len() == 16)
                        .and_then(|t| u64::from_str_radix(t, 16).ok())
                        .ok_or_else(|| "sigma holds something other than fingerprints".to_string())
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("sigma is not a list".into()),
        };
        Ok(SharedProcess {
            process,
            writer: Writer {
                sid: text(o, "writer_sid")?,
                user: text(o, "writer_user")?,
            },
            sigma,
        })
    }
}

/// The digest of a stored creation (the local table's).
pub fn digest_of(p: &StoredProcess) -> i64 {
    process_digest(
        p.parent_guid.filter(|g| *g != 0),
        [
            &p.image,
            &p.command_line,
            &p.parent_image,
            &p.parent_command_line,
            &p.host,
        ],
    )
}

fn object(doc: &Value) -> Result<&Map<String, Value>, String> {
    doc.as_object()
        .ok_or_else(|| "the document is not a JSON object".to_string())
}

fn text(o: &Map<String, Value>, name: &str) -> Result<String, String> {
    match o.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{name} is not text")),
        None => Err(format!("{name} is missing")),
    }
}

/// Epoch seconds; the KV store may hand back a number as a double or, for
/// a field typed `string`, as text.
fn seconds(o: &Map<String, Value>, name: &str) -> Result<i64, String> {
    let v = o.get(name).ok_or_else(|| format!("{name} is missing"))?;
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.filter(|n| *n >= 0)
        .ok_or_else(|| format!("{name} is not epoch seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Change = Box<dyn Fn(&mut Value)>;

    fn answer() -> SharedAnswer {
        SharedAnswer {
            provider: "virustotal".into(),
            key: format!("sha256:{}", "ab".repeat(32)),
            json: r#"{"status":"found","verdict":"malicious","detections":41,"engines":70,"label":"trojan.x"}"#
                .into(),
            checked: 1_700_000_000,
            expires: 1_700_086_400,
        }
    }

    fn process() -> SharedProcess {
        SharedProcess {
            process: StoredProcess {
                guid: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
                parent_guid: Some(0x42),
                image: r"C:\Windows\System32\cmd.exe".into(),
                command_line: r#"cmd.exe /c "echo ü""#.into(),
                parent_image: r"C:\Windows\explorer.exe".into(),
                parent_command_line: r"C:\Windows\Explorer.EXE".into(),
                host: "WS01.corp".into(),
                time: 1_645_292_116.196,
                md5: Some("0".repeat(32)),
                sha1: None,
                sha256: Some("f".repeat(64)),
                imphash: None,
                seen_at: 1_700_000_000,
            },
            writer: Writer {
                sid: "scheduler__admin__search__RMD5_at_1700000000_1".into(),
                user: "admin".into(),
            },
            sigma: vec![0xdead_beef_0000_0001, 7],
        }
    }

    #[test]
    fn answers_round_trip_with_lookup_fields() {
        let a = answer();
        let doc = a.to_doc();
        assert_eq!(
            doc["_key"],
            format!("virustotal:sha256:{}", "ab".repeat(32))
        );
        assert_eq!(doc["hash"], "ab".repeat(32));
        assert_eq!(doc["rep_verdict"], "malicious");
        assert_eq!(doc["rep_detections"], 41);
        assert_eq!(doc["rep_label"], "trojan.x");
        assert_eq!(SharedAnswer::from_doc(&doc).unwrap(), a);
        let nf = SharedAnswer {
            json: r#"{"status":"not_found"}"#.into(),
            ..a
        };
        let doc = nf.to_doc();
        assert_eq!(doc["rep_verdict"], "unknown");
        assert_eq!(doc["rep_status"], "not_found");
        assert_eq!(SharedAnswer::from_doc(&doc).unwrap(), nf);
    }

    #[test]
    fn bad_answer_documents_are_refused_with_a_reason() {
        let good = answer().to_doc();
        let cases: Vec<(&str, Change)> = vec![
            ("not a JSON object", Box::new(|d| *d = json!([1]))),
            (
                "provider is missing",
                Box::new(|d| drop(d.as_object_mut().unwrap().remove("provider"))),
            ),
            (
                "does not start with provider",
                Box::new(|d| d["_key"] = "hashlookup:sha256:00".into()),
            ),
            (
                "not a lower-case hash",
                Box::new(|d| d["_key"] = "virustotal:sha256:xyz".into()),
            ),
            (
                "answer is not a JSON object",
                Box::new(|d| d["answer"] = "{broken".into()),
            ),
            (
                "expires is not epoch seconds",
                Box::new(|d| d["expires"] = "soon".into()),
            ),
            ("before checked", Box::new(|d| d["expires"] = 5.into())),
        ];
        for (reason, change) in cases {
            let mut d = good.clone();
            change(&mut d);
            let e = SharedAnswer::from_doc(&d).unwrap_err();
            assert!(e.contains(reason), "{reason}: {e}");
        }
        // What the KV store may hand back: numbers as doubles or text.
        let mut d = good.clone();
        d["checked"] = json!(1.7e9);
        d["expires"] = json!("1700086400");
        assert!(SharedAnswer::from_doc(&d).is_ok());
    }

    #[test]
    fn processes_round_trip() {
        let p = process();
        let doc = p.to_doc();
        assert_eq!(doc["_key"], "{01234567-89AB-CDEF-0011-223344556677}");
        assert_eq!(
            doc["sigma"],
            json!(["deadbeef00000001", "0000000000000007"])
        );
        assert_eq!(SharedProcess::from_doc(&doc).unwrap(), p);
        // Through text, as the KV store hands it back.
        let back: Value = serde_json::from_str(&doc.to_string()).unwrap();
        assert_eq!(SharedProcess::from_doc(&back).unwrap(), p);
        // No parent (Sysmon's zero GUID) is stored as null.
        let mut orphan = process();
        orphan.process.parent_guid = None;
        let doc = orphan.to_doc();
        assert!(doc["parent_guid"].is_null());
        assert_eq!(SharedProcess::from_doc(&doc).unwrap(), orphan);
    }

    #[test]
    fn a_process_document_must_match_its_digest() {
        let good = process().to_doc();
        let cases: Vec<(&str, Change)> = vec![
            (
                "do not match its digest",
                Box::new(|d| d["command_line"] = "cmd.exe /c evil".into()),
            ),
            (
                "do not match its digest",
                Box::new(|d| d["parent_guid"] = "{00000000-0000-0000-0000-000000000043}".into()),
            ),
            (
                "do not match its digest",
                Box::new(|d| d["host"] = "OTHER".into()),
            ),
            (
                "not 16 hex digits",
                Box::new(|d| d["digest"] = "xyz".into()),
            ),
            (
                "digest is missing",
                Box::new(|d| drop(d.as_object_mut().unwrap().remove("digest"))),
            ),
            (
                "is not a ProcessGuid",
                Box::new(|d| d["_key"] = "not-a-guid".into()),
            ),
            ("image is not text", Box::new(|d| d["image"] = json!(5))),
            (
                "time is missing",
                Box::new(|d| d["time"] = "yesterday".into()),
            ),
            (
                "sha256 is not a hash",
                Box::new(|d| d["sha256"] = "zz".into()),
            ),
            ("sigma holds", Box::new(|d| d["sigma"] = json!(["nope"]))),
            (
                "writer_sid is missing",
                Box::new(|d| drop(d.as_object_mut().unwrap().remove("writer_sid"))),
            ),
            (
                "its own parent",
                Box::new(|d| d["parent_guid"] = d["_key"].clone()),
            ),
        ];
        for (reason, change) in cases {
            let mut d = good.clone();
            change(&mut d);
            let e = SharedProcess::from_doc(&d).unwrap_err();
            assert!(e.contains(reason), "{reason}: {e}");
        }
        // Hashes and time are not in the digest; a changed time passes.
        let mut d = good.clone();
        d["time"] = json!(5.5);
        assert!(SharedProcess::from_doc(&d).is_ok());
    }
}
