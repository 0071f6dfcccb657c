//! The JSON half of a chunk, typed in both directions.
//!
//! splunkd has added keys release after release (`streaming_command_will_
//! restart` in 8.x, `command`, `maxresultrows`) and the SDK recorder rewrote
//! others (times as floats, `search` decoded), so decoding is forgiving:
//! unknown keys are ignored, every key but `action` is optional, times may
//! be strings or numbers, and `search` is percent-decoded. Replies are
//! small structs serialised with `serde_json`; nothing here builds JSON by
//! hand.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// What splunkd asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The first chunk: describe yourself.
    GetInfo,
    /// Process these rows.
    Execute,
    /// Anything else: a protocol error for us.
    Other(String),
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "getinfo" => Action::GetInfo,
            "execute" => Action::Execute,
            _ => Action::Other(s),
        })
    }
}

/// A request's metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    /// The action.
    pub action: Action,
    /// True when splunkd runs this pass for a preview.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub preview: bool,
    /// True on the last execute chunk (missing means false).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub finished: bool,
    /// Only in getinfo.
    #[serde(default)]
    pub searchinfo: Option<SearchInfo>,
}

impl Request {
    /// Decodes metadata bytes; the error says what was wrong.
    pub fn from_slice(bytes: &[u8]) -> Result<Request, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A splunkd session key: never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(<empty>)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(
            Option::<String>::deserialize(d)?.unwrap_or_default(),
        ))
    }
}

/// `searchinfo` of the getinfo chunk.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SearchInfo {
    /// Argument tokens with SPL quoting removed.
    pub args: Vec<String>,
    /// Argument tokens as typed.
    pub raw_args: Vec<String>,
    /// Job directory.
    pub dispatch_dir: String,
    /// Search id.
    pub sid: String,
    /// App context of the search.
    pub app: String,
    /// Knowledge-object owner.
    pub owner: String,
    /// User running the search.
    pub username: String,
    /// Session key for splunkd's REST API.
    pub session_key: Secret,
    /// `https://127.0.0.1:8089` or wherever splunkd's management port is.
    pub splunkd_uri: String,
    /// `8.2.1` etc.
    pub splunk_version: String,
    /// The whole search, percent-decoded.
    #[serde(deserialize_with = "percent_decoded")]
    pub search: String,
    /// Command name (8.x).
    pub command: String,
    /// Rows per chunk splunkd will send at most.
    #[serde(deserialize_with = "lenient_u64")]
    pub maxresultrows: Option<u64>,
    /// Epoch seconds; `None` (or `"0"`) is unbounded.
    #[serde(deserialize_with = "lenient_time")]
    pub earliest_time: Option<f64>,
    /// Epoch seconds; `None` (or `"0"`) is unbounded.
    #[serde(deserialize_with = "lenient_time")]
    pub latest_time: Option<f64>,
}

/// A JSON value that may be a number, a numeric string or null.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(f64),
    Text(String),
    Bool(bool),
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        Some(NumberOrString::Number(n)) => Some(n),
        Some(NumberOrString::Text(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|t: &f64| t.is_finite() && *t != 0.0))
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        Some(NumberOrString::Number(n)) if n >= 0.0 => Some(n as u64),
        Some(NumberOrString::Text(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        Some(NumberOrString::Bool(b)) => b,
        Some(NumberOrString::Number(n)) => n != 0.0,
        Some(NumberOrString::Text(s)) => matches!(s.trim(), "1" | "true" | "True" | "t"),
        None => false,
    })
}

fn percent_decoded<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    Ok(percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned())
}

/// Severity of an inspector message, as splunkd spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    /// Debug.
    #[serde(rename = "DEBUG")]
    Debug,
    /// Info.
    #[serde(rename = "INFO")]
    Info,
    /// Warning: shown to the user, the search goes on.
    #[serde(rename = "WARN")]
    Warn,
    /// Error: shown in red.
    #[serde(rename = "ERROR")]
    Error,
}

/// Messages for the job inspector and the search bar.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Inspector {
    /// `[level, text]` pairs.
    pub messages: Vec<(Level, String)>,
}

impl Inspector {
    /// Adds one message.
    pub fn push(&mut self, level: Level, text: impl Into<String>) {
        self.messages.push((level, text.into()));
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// How splunkd should schedule the command (getinfo `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandType {
    /// Record by record, may be distributed to indexers.
    Streaming,
    /// Record by record, search head only, one process, order kept.
    Stateful,
    /// Whole event set on the search head.
    Events,
    /// Transforming.
    Reporting,
}

/// The getinfo reply.
#[derive(Debug, Clone, Serialize)]
pub struct GetInfoReply {
    /// Command type.
    #[serde(rename = "type")]
    pub kind: CommandType,
    /// Input fields the command reads; splunkd sends only these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_fields: Vec<String>,
    /// Messages (argument errors go here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspector: Option<Inspector>,
    /// Set (true) only when refusing to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<bool>,
    /// Fatal error text shown to the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The reply to an execute chunk (and the error reply of SCPV2 §8).
#[derive(Debug, Clone, Serialize, Default)]
pub struct ExecuteReply {
    /// Echo of the request's `finished` (true on fatal errors).
    pub finished: bool,
    /// Messages, omitted when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inspector: Option<Inspector>,
    /// Fatal error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExecuteReply {
    /// The reply that ends a search with `text` as an ERROR: both the
    /// inspector form (SDK) and the `error` key (CEXC), so every splunkd
    /// version shows it.
    pub fn fatal(text: &str, mut inspector: Inspector) -> ExecuteReply {
        inspector.push(Level::Error, text);
        ExecuteReply {
            finished: true,
            inspector: Some(inspector),
            error: Some(text.to_string()),
        }
    }
}

/// Serialises a reply struct; these types cannot fail to serialise.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{\"finished\":true}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_splunkd_getinfo() {
        let bytes = br#"{"action":"getinfo","preview":false,"streaming_command_will_restart":false,"searchinfo":{"args":["a=1"],"raw_args":["a=1"],"dispatch_dir":"C:\\x","sid":"1629786023.114","app":"A","owner":"admin","username":"admin","session_key":"KEY","splunkd_uri":"https://127.0.0.1:8089","splunk_version":"8.2.1","search":"litsearch%20index%3Dbeetles%20%7C%20doubleage","command":"doubleage","maxresultrows":50000,"earliest_time":"1627333200","latest_time":"0"}}"#;
        let r = Request::from_slice(bytes).unwrap();
        assert_eq!(r.action, Action::GetInfo);
        let si = r.searchinfo.unwrap();
        assert_eq!(si.search, "litsearch index=beetles | doubleage");
        assert_eq!(si.earliest_time, Some(1627333200.0));
        assert_eq!(si.latest_time, None);
        assert_eq!(si.maxresultrows, Some(50000));
        assert_eq!(si.session_key.expose(), "KEY");
        assert!(!format!("{si:?}").contains("KEY"));
    }

    #[test]
    fn execute_forms() {
        let r = Request::from_slice(br#"{"action":"execute"}"#).unwrap();
        assert!(!r.finished);
        let r =
            Request::from_slice(br#"{"action":"execute","finished":true,"new_key":[1]}"#).unwrap();
        assert!(r.finished);
        let r = Request::from_slice(br#"{"action":"frobnicate"}"#).unwrap();
        assert_eq!(r.action, Action::Other("frobnicate".into()));
        assert!(Request::from_slice(b"not json").is_err());
        assert!(Request::from_slice(br#"{"finished":true}"#).is_err());
    }

    #[test]
    fn replies() {
        let mut i = Inspector::default();
        i.push(Level::Warn, "w");
        let r = ExecuteReply::fatal("boom", i);
        assert_eq!(
            String::from_utf8(to_json(&r)).unwrap(),
            r#"{"finished":true,"inspector":{"messages":[["WARN","w"],["ERROR","boom"]]},"error":"boom"}"#
        );
        let g = GetInfoReply {
            kind: CommandType::Stateful,
            required_fields: vec!["a".into()],
            inspector: None,
            finished: None,
            error: None,
        };
        assert_eq!(
            String::from_utf8(to_json(&g)).unwrap(),
            r#"{"type":"stateful","required_fields":["a"]}"#
        );
    }
}
