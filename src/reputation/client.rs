//! The HTTP clients: rustls only, a `sysmonenrich/<version>` User-Agent,
//! per-request timeouts, proxies, and replies read with a size cap.
//!
//! Proxies: reqwest honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` on its
//! own; an explicit `proxy` setting replaces them. A loopback target (a
//! local splunkd, a test's fake server) never goes through a proxy: a
//! proxy elsewhere cannot reach our 127.0.0.1, and a corporate
//! `HTTPS_PROXY` without a `NO_PROXY` would otherwise break key loading.
//!
//! Error texts: reqwest errors print the request URL. Keys are only ever in
//! headers, never in URLs, but the texts made here still leave the URL
//! out and keep only the root cause ("connection refused", "invalid peer
//! certificate: UnknownIssuer"), which is what an admin needs.

use super::error::ServiceError;
use super::settings::Settings;
use crate::splunk::is_loopback;
use reqwest::{Client, Response, Url};
use std::error::Error as _;
use std::time::Duration;

/// The User-Agent of every request.
pub const USER_AGENT: &str = concat!("sysmonenrich/", env!("CARGO_PKG_VERSION"));

/// Replies larger than this are cut (a VirusTotal file object is ~30 KB);
/// a cut reply then fails to parse and becomes an error, not an OOM.
const MAX_BODY: usize = 4 << 20;

/// A reply, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// HTTP status code.
    pub status: u16,
    /// The body (at most 4 MiB).
    pub body: Vec<u8>,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
}

impl HttpReply {
    /// A reply with a status and a body (for tests and mapping tables).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpReply {
        HttpReply {
            status,
            body: body.into(),
            retry_after: None,
        }
    }
}

fn base(settings: &Settings) -> reqwest::ClientBuilder {
    Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .timeout(settings.request_timeout)
        .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
}

/// A provider base URL must be http(s).
pub(crate) fn check_base_url(provider: &'static str, base_url: &str) -> Result<(), ServiceError> {
    match Url::parse(base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(ServiceError::BaseUrl { provider }),
    }
}

/// The client for providers at `base_url` (already checked): a loopback
/// target bypasses proxies, others use the `proxy` setting or the
/// environment's.
pub(crate) fn provider_client(settings: &Settings, base_url: &str) -> Result<Client, ServiceError> {
    let mut b = base(settings);
    if is_loopback(base_url) {
        b = b.no_proxy();
    } else if let Some(proxy) = settings.proxy.as_deref().filter(|p| !p.trim().is_empty()) {
        b = b.proxy(reqwest::Proxy::all(proxy.trim()).map_err(|_| ServiceError::Proxy)?);
    }
    b.build().map_err(|e| ServiceError::Client(root_cause(&e)))
}

/// The client for splunkd's REST API at `splunkd_uri`: verified TLS,
/// except that a loopback splunkd may use Splunk's default self-signed
/// certificate when the setting allows it.
pub(crate) fn splunkd_client(settings: &Settings, splunkd_uri: &str) -> Result<Client, String> {
    let loopback = is_loopback(splunkd_uri);
    let mut b = base(settings);
    if loopback {
        b = b
            .no_proxy()
            .danger_accept_invalid_certs(settings.splunkd_insecure_loopback);
    }
    b.build().map_err(|e| root_cause(&e))
}

/// Reads a response whole (up to the cap).
pub(crate) async fn read_reply(mut resp: Response) -> Result<HttpReply, reqwest::Error> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(HttpReply {
        status,
        body,
        retry_after,
    })
}

/// A short text for a failed request, without its URL.
pub(crate) fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "unreadable reply"
    } else {
        "request failed"
    };
    let cause = root_cause(e);
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The innermost error's text (no URL: only the outermost reqwest error
/// carries one), cut to a sane length.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: Option<&dyn std::error::Error> = e.source();
    while let Some(next) = cause.and_then(|c| c.source()) {
        cause = Some(next);
    }
    let text = cause.map(|c| c.to_string()).unwrap_or_default();
    text.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_build_with_rustls_and_reject_bad_settings() {
        let s = Settings::default();
        assert!(provider_client(&s, "https://www.virustotal.com").is_ok());
        assert!(check_base_url("virustotal", "https://www.virustotal.com").is_ok());
        assert!(matches!(
            check_base_url("virustotal", "ftp://x"),
            Err(ServiceError::BaseUrl {
                provider: "virustotal"
            })
        ));
        let bad = Settings {
            proxy: Some("::not a proxy::".into()),
            ..Settings::default()
        };
        let err = provider_client(&bad, "https://hashlookup.circl.lu").unwrap_err();
        assert!(matches!(err, ServiceError::Proxy));
        assert!(!err.to_string().contains("not a proxy"));
        assert!(splunkd_client(&s, "https://127.0.0.1:8089").is_ok());
        assert!(USER_AGENT.starts_with("sysmonenrich/"));
    }
}
