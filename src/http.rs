//! What every HTTP client of the program shares (the splunkd client in
//! [`crate::splunk`], the reputation providers' in `reputation::client`):
//! the User-Agent, the loopback rule, and how a reqwest error becomes a
//! short text.
//!
//! Why one place: reqwest's own error texts carry the request URL, and the
//! first versions of this program had three slightly different helpers
//! digging the useful cause ("connection refused", "invalid peer
//! certificate: UnknownIssuer") out of them. A text made here never holds
//! a URL, so no query string, path or host name of a request ends up in a
//! log line or a search message through an error.

use std::error::Error as _;

/// The User-Agent of every request.
pub const USER_AGENT: &str = concat!("sysmonenrich/", env!("CARGO_PKG_VERSION"));

/// True when the URL's host is loopback (127.0.0.0/8, ::1, localhost).
///
/// A loopback target never goes through a proxy (a proxy elsewhere cannot
/// reach our 127.0.0.1), may skip TLS verification when the conf allows it
/// (Splunk ships a self-signed certificate), and may receive an API key
/// over plain http (nothing leaves the host).
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

/// The innermost cause of a reqwest error (only the outermost one carries
/// the URL), cut to a sane length.
pub fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: Option<&dyn std::error::Error> = e.source();
    while let Some(next) = cause.and_then(|c| c.source()) {
        cause = Some(next);
    }
    // Without a source, reqwest's own text would add the URL: nothing.
    let text = cause.map(|c| c.to_string()).unwrap_or_default();
    text.chars().take(160).collect()
}

/// A short text for a failed request, without its URL: what kind of
/// failure, then the root cause (`connection failed: tcp connect error:
/// Connection refused (os error 111)`).
pub fn describe_error(e: &reqwest::Error) -> String {
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

/// Reads a response's body, keeping at most `max` bytes: a runaway reply
/// is cut (and then fails to parse, an error) instead of filling memory.
pub async fn read_capped(
    resp: &mut reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    Ok(body)
}

/// A failure to reach a server at all (DNS, connection refused, reset or
/// timed out while connecting, TLS, a proxy's refusal), as opposed to a
/// server that answered, even badly, or was slow to answer. What a circuit
/// breaker counts: a firewall that drops packets is as unreachable as one
/// that refuses them.
pub fn is_unreachable(e: &reqwest::Error) -> bool {
    e.is_connect()
}

/// What a provider's circuit counts: every transport failure but a
/// timeout (a slow server is the lookup budget's business). A connection
/// reset after the request or a body cut off is as broken as a refused
/// connection, and a provider that does it to every hash would otherwise
/// be asked again for each one.
pub fn counts_against_circuit(e: &reqwest::Error) -> bool {
    !e.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback() {
        assert!(is_loopback("https://127.0.0.1:8089"));
        assert!(is_loopback("https://127.9.0.1:8089"));
        assert!(is_loopback("https://[::1]:8089"));
        assert!(is_loopback("https://LOCALHOST:8089"));
        assert!(!is_loopback("https://splunk.example.com:8089"));
        assert!(!is_loopback("https://10.0.0.1:8089"));
        assert!(!is_loopback("not a url"));
    }
}
