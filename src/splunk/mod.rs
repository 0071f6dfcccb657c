//! splunkd's REST API, as far as this command needs it: running a search
//! and streaming its results back (`search/jobs/export`, JSON lines).
//!
//! The command runs inside a search, so it authenticates with that search's
//! session key (`Authorization: Splunk <key>`) against the `splunkd_uri`
//! splunkd handed us (never an assumed `https://127.0.0.1:8089`: peers got
//! that wrong, VT4Splunk 1.6.4/1.8.2). Splunk ships a self-signed
//! certificate, so a *loopback* splunkd may be accepted unverified when the
//! conf says so; anything else is verified.

pub mod backfill;

use crate::protocol::metadata::Secret;
use std::time::{Duration, Instant};

/// splunkd's JSON listing envelope (`{"entry":[{"name":…,"content":{…}}]}`),
/// shared by every caller that lists REST objects (apps, credentials); each
/// reads only the `content` keys it needs, as `C`.
#[derive(Debug, serde::Deserialize)]
#[serde(bound(deserialize = "C: serde::Deserialize<'de> + Default"))]
pub struct Listing<C> {
    /// The objects.
    #[serde(default = "Vec::new")]
    pub entry: Vec<Entry<C>>,
}

/// One object of a [`Listing`].
#[derive(Debug, serde::Deserialize)]
#[serde(bound(deserialize = "C: serde::Deserialize<'de> + Default"))]
pub struct Entry<C> {
    /// Its name (`realm:user:` for credentials, the folder for apps).
    #[serde(default)]
    pub name: String,
    /// Its attributes.
    #[serde(default)]
    pub content: C,
}

/// How to reach splunkd.
#[derive(Debug, Clone)]
pub struct Splunkd {
    /// `https://127.0.0.1:8089`.
    pub uri: String,
    /// The search's session key.
    pub session_key: Secret,
    /// Namespace for searches (`servicesNS/<owner>/<app>`), so macros shared
    /// by our app resolve.
    pub owner: String,
    /// App context.
    pub app: String,
    /// Accept an unverified certificate from a loopback splunkd.
    pub insecure_loopback: bool,
}

/// Why a REST call failed (texts never carry the key or the URL's query).
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// splunkd said 401/403.
    #[error("splunkd rejected the search's session key (HTTP {0})")]
    Unauthorized(u16),
    /// Any other non-200.
    #[error("splunkd answered HTTP {status}: {message}")]
    Status {
        /// Status code.
        status: u16,
        /// First message splunkd gave.
        message: String,
    },
    /// Connection, TLS, timeout.
    #[error("cannot reach splunkd: {0}")]
    Transport(String),
    /// Ran past the deadline.
    #[error("splunkd did not answer within {0:?}")]
    Timeout(Duration),
}

/// True when the URL's host is loopback (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(uri: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(uri) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A blocking client for one search's lifetime: owns a small runtime, so the
/// synchronous protocol loop can call it directly.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    splunkd: Splunkd,
}

impl Client {
    /// Builds the client (no request is made).
    pub fn new(splunkd: Splunkd) -> Result<Client, RestError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RestError::Transport(e.to_string()))?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("sysmonenrich/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&splunkd.uri) {
            // A proxy elsewhere cannot reach our loopback splunkd.
            b = b
                .no_proxy()
                .danger_accept_invalid_certs(splunkd.insecure_loopback);
        }
        let http = b
            .build()
            .map_err(|e| RestError::Transport(root_cause(&e)))?;
        Ok(Client {
            runtime,
            http,
            splunkd,
        })
    }

    /// Runs `search` through the export endpoint and returns each result
    /// as a JSON object, giving up at `deadline`.
    pub fn export(
        &self,
        search: &str,
        earliest: &str,
        latest: &str,
        deadline: Instant,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, RestError> {
        let url = format!(
            "{}/servicesNS/{}/{}/search/jobs/export",
            self.splunkd.uri.trim_end_matches('/'),
            enc(&self.splunkd.owner, "nobody"),
            enc(&self.splunkd.app, "search"),
        );
        let form = [
            ("search", search),
            ("output_mode", "json"),
            ("earliest_time", earliest),
            ("latest_time", latest),
        ];
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RestError::Timeout(Duration::ZERO));
        }
        let request = self
            .http
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Splunk {}", self.splunkd.session_key.expose()),
            )
            .form(&form)
            .timeout(left);
        let fut = async {
            let resp = request.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(transport)?;
            Ok::<_, RestError>((status, body))
        };
        let (status, body) = self
            .runtime
            .block_on(async { tokio::time::timeout(left, fut).await })
            .map_err(|_| RestError::Timeout(left))??;
        match status {
            200 => Ok(parse_export(&body)),
            401 | 403 => Err(RestError::Unauthorized(status)),
            _ => Err(RestError::Status {
                status,
                message: first_message(&body),
            }),
        }
    }
}

fn enc(s: &str, default: &str) -> String {
    let s = if s.is_empty() { default } else { s };
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn transport(e: reqwest::Error) -> RestError {
    if e.is_timeout() {
        RestError::Timeout(Duration::ZERO)
    } else {
        RestError::Transport(root_cause(&e))
    }
}

/// The innermost cause of a reqwest error, without the URL.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Export JSON is one object per line: `{"preview":false,"result":{...}}`,
/// plus lines with `messages` or `lastrow`. Unreadable lines are skipped.
pub fn parse_export(body: &[u8]) -> Vec<serde_json::Map<String, serde_json::Value>> {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|v| !v.get("preview").and_then(|p| p.as_bool()).unwrap_or(false))
        .filter_map(|v| match v.get("result") {
            Some(serde_json::Value::Object(m)) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// splunkd's error body is `{"messages":[{"type":"FATAL","text":"…"}]}`.
fn first_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("messages")?
                .as_array()?
                .first()?
                .get("text")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines() {
        let body = b"{\"preview\":false,\"offset\":0,\"result\":{\"ProcessGuid\":\"{A}\",\"x\":[\"1\",\"2\"]}}\n{\"preview\":false,\"lastrow\":true,\"result\":{\"ProcessGuid\":\"{B}\"}}\n\n{\"messages\":[]}\ngarbage\n";
        let r = parse_export(body);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["ProcessGuid"], "{A}");
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("https://127.0.0.1:8089"));
        assert!(is_loopback("https://127.9.0.1:8089"));
        assert!(is_loopback("https://[::1]:8089"));
        assert!(is_loopback("https://LOCALHOST:8089"));
        assert!(!is_loopback("https://splunk.example.com:8089"));
        assert!(!is_loopback("https://10.0.0.1:8089"));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            first_message(
                br#"{"messages":[{"type":"FATAL","text":"Unknown search command 'x'."}]}"#
            ),
            "Unknown search command 'x'."
        );
    }
}
