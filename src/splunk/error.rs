//! Why a splunkd call failed, in words a person can act on.
//!
//! Every text names what was being done and which splunkd (`scheme://
//! host:port`, never a path or query), and carries at most splunkd's first
//! message, cut short. No text holds a secret: secrets only travel in
//! request bodies and the `Authorization` header.

use std::time::Duration;

/// A failed splunkd call.
#[derive(Debug, thiserror::Error)]
pub enum SplunkError {
    /// 401: the credentials (session key, token, login) were refused.
    #[error("{what}: splunkd at {base} refused the credentials (HTTP 401: {message}); {hint}")]
    Unauthorized {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// splunkd's first message.
        message: String,
        /// What to check.
        hint: String,
    },
    /// The login itself was refused (wrong username or password).
    #[error("{what}: splunkd at {base} refused the login (HTTP {status}: {message}); {hint}")]
    LoginRefused {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// 400 or 401.
        status: u16,
        /// splunkd's first message.
        message: String,
        /// Where the username and password came from.
        hint: String,
    },
    /// 403: authenticated, but not allowed.
    #[error("{what}: splunkd at {base} answered HTTP 403 ({message}): the user lacks a capability this needs{needs}")]
    Forbidden {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// splunkd's first message.
        message: String,
        /// ` (…)`: which capability, when known.
        needs: String,
    },
    /// Any other unexpected status.
    #[error("{what}: splunkd at {base} answered HTTP {status}: {message}")]
    Status {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// Status code.
        status: u16,
        /// splunkd's first message.
        message: String,
    },
    /// Connection, TLS, DNS, proxy: splunkd was not reached.
    #[error("{what}: cannot reach splunkd at {base}: {cause}{hint}")]
    Transport {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// The kind and innermost cause (`connection failed: …`).
        cause: String,
        /// A hint for certificate or scheme problems.
        hint: String,
    },
    /// No (whole) answer in time.
    #[error("{what}: splunkd at {base} did not answer within {after:?}")]
    Timeout {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// The limit.
        after: Duration,
    },
    /// The answer was not what splunkd sends (not the JSON expected).
    #[error("{what}: splunkd at {base} sent a reply that is not {expected}")]
    Unreadable {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// What was expected.
        expected: String,
    },
}

impl SplunkError {
    /// The HTTP status splunkd answered, if it answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SplunkError::Unauthorized { .. } => Some(401),
            SplunkError::Forbidden { .. } => Some(403),
            SplunkError::Status { status, .. } | SplunkError::LoginRefused { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// True when splunkd was not reached at all (counts against its
    /// circuit; a slow or failing splunkd does not).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SplunkError::Transport { .. })
    }

    /// True when the call says splunkd is not serving: not reached, timed
    /// out, a 5xx, or an answer that is not what splunkd sends. What a
    /// search's splunkd circuit counts (see [`super::client::count_on`]).
    pub fn is_splunkd_failure(&self) -> bool {
        matches!(
            self,
            SplunkError::Transport { .. }
                | SplunkError::Timeout { .. }
                | SplunkError::Unreadable { .. }
        ) || self.status().is_some_and(|s| s >= 500)
    }

    /// The short cause without what or where (`connection failed: …`,
    /// `timed out`, `http 500`), for texts that name those themselves.
    pub fn brief(&self) -> String {
        match self {
            SplunkError::Transport { cause, .. } => cause.clone(),
            SplunkError::Timeout { .. } => "timed out".into(),
            SplunkError::Unreadable { expected, .. } => format!("reply is not {expected}"),
            other => format!("http {}", other.status().unwrap_or(0)),
        }
    }
}

/// splunkd's error body is `{"messages":[{"type":"ERROR","text":"…"}]}`
/// (or XML with `<msg>`); otherwise the start of the body. One line, at
/// most 200 characters.
pub fn first_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("messages")?
                .as_array()?
                .first()?
                .get("text")?
                .as_str()
                .map(str::to_string)
        });
    let text = from_json.unwrap_or_else(|| {
        let s = String::from_utf8_lossy(&body[..body.len().min(4096)]);
        match (s.find("<msg"), s.find("</msg>")) {
            (Some(a), Some(b)) if a < b => s[a..b]
                .split_once('>')
                .map_or(String::new(), |(_, t)| t.to_string()),
            _ => s.trim().to_string(),
        }
    });
    let text = text.replace(['\n', '\r'], " ");
    let text = text.trim();
    if text.is_empty() {
        return "no message".into();
    }
    if text.chars().count() > 200 {
        text.chars().take(200).collect::<String>() + "…"
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            first_message(
                br#"{"messages":[{"type":"WARN","text":"call not properly authenticated"}]}"#
            ),
            "call not properly authenticated"
        );
        assert_eq!(
            first_message(
                br#"{"messages":[{"type":"FATAL","text":"Unknown search command 'x'."}]}"#
            ),
            "Unknown search command 'x'."
        );
        assert_eq!(
            first_message(
                b"<response><messages><msg type=\"ERROR\">Login failed</msg></messages></response>"
            ),
            "Login failed"
        );
        assert_eq!(first_message(b""), "no message");
        assert!(first_message(&[b'x'; 500]).ends_with('…'));
    }

    #[test]
    fn briefs() {
        let e = SplunkError::Status {
            what: "x".into(),
            base: "https://h:8089".into(),
            status: 503,
            message: "busy".into(),
        };
        assert_eq!(e.brief(), "http 503");
        assert_eq!(e.status(), Some(503));
        assert!(!e.is_unreachable());
        let e = SplunkError::Transport {
            what: "x".into(),
            base: "https://h:8089".into(),
            cause: "connection failed: refused".into(),
            hint: String::new(),
        };
        assert!(e.is_unreachable());
        assert_eq!(e.brief(), "connection failed: refused");
    }
}
