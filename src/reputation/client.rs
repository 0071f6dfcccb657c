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
pub(crate) use crate::http::describe_error;
pub use crate::http::USER_AGENT;
use crate::http::{is_loopback, read_capped, root_cause};
use crate::protocol::metadata::Secret;
use reqwest::{Client, Response, Url};
use std::time::Duration;

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
/// environment's. The proxy's password comes from the credential store
/// (`proxy_password`), never from the conf: a password in `[proxy] url` is
/// dropped (see [`proxy_url`]).
pub(crate) fn provider_client(
    settings: &Settings,
    base_url: &str,
    proxy_password: Option<&Secret>,
) -> Result<Client, ServiceError> {
    let mut b = base(settings);
    if base_url.starts_with("http:") {
        // Plain http (a loopback test double, a local mirror): no CA store.
        b = b.tls_built_in_root_certs(false);
    }
    if is_loopback(base_url) {
        b = b.no_proxy();
    } else if let Some((url, user)) = settings.proxy.as_deref().and_then(proxy_url) {
        let mut proxy = reqwest::Proxy::all(url.as_str()).map_err(|_| ServiceError::Proxy)?;
        if let Some(password) = proxy_password {
            proxy = proxy.basic_auth(&user, password.expose());
        }
        b = b.proxy(proxy);
    }
    b.build().map_err(|e| ServiceError::Client(root_cause(&e)))
}

/// `[proxy] url` without credentials, and its user name (empty when it
/// has none); `None` when empty. An unparsable URL is kept as written, so
/// that reqwest reports it.
pub(crate) fn proxy_url(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let Ok(mut url) = Url::parse(text) else {
        return Some((text.to_string(), String::new()));
    };
    let user = percent_encoding::percent_decode_str(url.username())
        .decode_utf8_lossy()
        .into_owned();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some((url.to_string(), user))
}

/// True when `[proxy] url` holds a password (which is not used).
pub(crate) fn proxy_has_password(text: &str) -> bool {
    Url::parse(text.trim()).is_ok_and(|u| u.password().is_some())
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
    let body = read_capped(&mut resp, MAX_BODY).await?;
    Ok(HttpReply {
        status,
        body,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_build_with_rustls_and_reject_bad_settings() {
        let s = Settings::default();
        assert!(provider_client(&s, "https://www.virustotal.com", None).is_ok());
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
        let err = provider_client(&bad, "https://hashlookup.circl.lu", None).unwrap_err();
        assert!(matches!(err, ServiceError::Proxy));
        assert!(!err.to_string().contains("not a proxy"));
        assert!(USER_AGENT.starts_with("sysmonenrich/"));
        assert_eq!(
            proxy_url("http://squid:s3cret@proxy.example:3128"),
            Some((
                "http://proxy.example:3128/".to_string(),
                "squid".to_string()
            ))
        );
        assert!(proxy_has_password("http://squid:s3cret@proxy.example:3128"));
        assert!(!proxy_has_password("http://squid@proxy.example:3128"));
        assert_eq!(proxy_url("  "), None);
    }
}
