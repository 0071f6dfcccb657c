//! A blocking splunkd REST client for the CLI: connects with a
//! [`SplunkRc`], logs in when it has to, and maps splunkd's answers to
//! errors a person can act on.
//!
//! The search command's own client (`crate::splunk::Client`) runs inside a
//! search with the session key splunkd handed it; this one runs at a
//! terminal or in a script with credentials from `.splunkrc`, and also
//! writes (`storage/passwords`), so it is a separate, small type with the
//! same rules:
//!
//! - TLS is verified, except for a loopback splunkd (Splunk ships a
//!   self-signed certificate, and nothing on the wire leaves the host) or
//!   when the user passes `--insecure`.
//! - Secrets travel in request bodies and the `Authorization` header only,
//!   never in a URL, so no error text (reqwest's include the URL) can show
//!   one. Texts taken from splunkd's replies are cut short.

use super::splunkrc::{Auth, SplunkRc};
use crate::protocol::metadata::Secret;
use crate::splunk::is_loopback;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use std::time::Duration;

/// Characters left as they are in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment (`sysmonenrich:virustotal:` →
/// `sysmonenrich%3Avirustotal%3A`).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// How long an ordinary REST call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A failed REST call. The texts never carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401: the credentials were refused.
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
    /// Connection, TLS, DNS.
    #[error("{what}: cannot reach splunkd at {base}: {cause}{hint}")]
    Transport {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// The innermost cause.
        cause: String,
        /// A hint for certificate problems.
        hint: String,
    },
    /// No answer in time.
    #[error("{what}: splunkd at {base} did not answer within {after:?}")]
    Timeout {
        /// What was being done.
        what: String,
        /// `scheme://host:port`.
        base: String,
        /// The limit.
        after: Duration,
    },
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

/// A connected client.
pub struct Rest {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    authorization: Secret,
    /// What to check when a call gets 401.
    hint_401: String,
    /// `servicesNS/<owner>/<app>` from `.splunkrc`, or `services`.
    namespace: String,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .field("authorization", &self.authorization)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// Connects: builds the HTTP client and, for a username/password,
    /// logs in (one request). Warnings go to stderr.
    pub fn connect(rc: &SplunkRc, insecure: bool) -> anyhow::Result<Rest> {
        for w in &rc.warnings {
            eprintln!("sysmonenrich: warning: {w}");
        }
        let base = rc.base_url();
        let loopback = is_loopback(&base);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("sysmonenrich/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT);
        if loopback {
            // Splunk's default certificate is self-signed, and a proxy
            // elsewhere cannot reach our loopback anyway.
            b = b.no_proxy().danger_accept_invalid_certs(true);
        } else if insecure {
            if rc.scheme == "https" {
                eprintln!(
                    "sysmonenrich: warning: --insecure: the certificate of {} is not verified",
                    rc.host
                );
            }
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build()?;
        let path = rc.path.display();
        let auth = rc.auth()?;
        if rc.scheme == "http" && !loopback {
            eprintln!(
                "sysmonenrich: warning: scheme=http: credentials go to {} unencrypted",
                rc.host
            );
        }
        let namespace = match (&rc.owner, &rc.app) {
            (None, None) => "services".to_string(),
            (owner, app) => format!(
                "servicesNS/{}/{}",
                segment(owner.as_deref().unwrap_or("-")),
                segment(app.as_deref().unwrap_or("-"))
            ),
        };
        let mut rest = Rest {
            runtime,
            http,
            base,
            authorization: Secret::default(),
            hint_401: String::new(),
            namespace,
        };
        match auth {
            Auth::Header(h) => {
                rest.authorization = h;
                rest.hint_401 = format!(
                    "check token= in {path} (expired, revoked, or token authentication disabled?)"
                );
            }
            Auth::Login { username, password } => {
                rest.authorization = rest.login(&username, &password, &path.to_string())?;
                rest.hint_401 = format!(
                    "splunkd refused the session it gave user {username:?} (expired?); try again"
                );
            }
        }
        Ok(rest)
    }

    /// `POST /services/auth/login` → `Splunk <sessionKey>`.
    fn login(&self, username: &str, password: &Secret, path: &str) -> anyhow::Result<Secret> {
        let what = format!("logging in as {username:?}");
        let form = [
            ("username", username),
            ("password", password.expose()),
            ("output_mode", "json"),
        ];
        let url = format!("{}/services/auth/login", self.base);
        let request = self.http.post(url).form(&form);
        let reply = self.send(request, &what, CALL_TIMEOUT)?;
        match reply.status {
            200 => {}
            400 | 401 => anyhow::bail!(
                "{what}: splunkd at {} refused the login (HTTP {}: {}); check username= and password= in {path}",
                self.base,
                reply.status,
                first_message(&reply.body)
            ),
            _ => return Err(self.error(&what, reply).into()),
        }
        let key = session_key_of(&reply.body).ok_or_else(|| {
            anyhow::anyhow!(
                "{what}: splunkd at {} answered the login without a session key",
                self.base
            )
        })?;
        Ok(Secret::new(format!("Splunk {key}")))
    }

    /// `scheme://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The search namespace (`services` or `servicesNS/<owner>/<app>`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `GET path` (path and query, starting with `/`).
    pub fn get(&self, path: &str, what: &str) -> Result<Reply, RestError> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(self.authorized(req), what, CALL_TIMEOUT)
    }

    /// `POST path` with a form body.
    pub fn post(&self, path: &str, form: &[(&str, &str)], what: &str) -> Result<Reply, RestError> {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(self.authorized(req), what, CALL_TIMEOUT)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str, what: &str) -> Result<Reply, RestError> {
        let req = self.http.delete(format!("{}{path}", self.base));
        self.send(self.authorized(req), what, CALL_TIMEOUT)
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header(reqwest::header::AUTHORIZATION, self.authorization.expose())
    }

    fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        timeout: Duration,
    ) -> Result<Reply, RestError> {
        let fut = async {
            let resp = request.send().await?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Reply { status, body })
        };
        match self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, fut).await })
        {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.transport(what, &e, timeout)),
            Err(_) => Err(RestError::Timeout {
                what: what.into(),
                base: self.base.clone(),
                after: timeout,
            }),
        }
    }

    fn transport(&self, what: &str, e: &reqwest::Error, timeout: Duration) -> RestError {
        if e.is_timeout() {
            return RestError::Timeout {
                what: what.into(),
                base: self.base.clone(),
                after: timeout,
            };
        }
        let cause = root_cause(e);
        let lower = cause.to_ascii_lowercase();
        let hint = if lower.contains("certificate") || lower.contains("unknown issuer") {
            "; splunkd's certificate is not trusted: install its CA, or pass --insecure to skip verification"
        } else if lower.contains("invalid http")
            || lower.contains("corrupt message")
            || lower.contains("invalidcontenttype")
        {
            "; is scheme= right (https vs http)?"
        } else {
            ""
        };
        RestError::Transport {
            what: what.into(),
            base: self.base.clone(),
            cause,
            hint: hint.into(),
        }
    }

    /// The error for an unexpected status.
    pub fn error(&self, what: &str, reply: Reply) -> RestError {
        self.error_needing(what, reply, "")
    }

    /// [`Rest::error`], naming the capability a 403 means is missing.
    pub fn error_needing(&self, what: &str, reply: Reply, capability: &str) -> RestError {
        let message = first_message(&reply.body);
        match reply.status {
            401 => RestError::Unauthorized {
                what: what.into(),
                base: self.base.clone(),
                message,
                hint: self.hint_401.clone(),
            },
            403 => RestError::Forbidden {
                what: what.into(),
                base: self.base.clone(),
                message,
                needs: if capability.is_empty() {
                    String::new()
                } else {
                    format!(" ({capability})")
                },
            },
            status => RestError::Status {
                what: what.into(),
                base: self.base.clone(),
                status,
                message,
            },
        }
    }

    /// `reply` when it is a 2xx, else the error for its status.
    pub fn ok(&self, what: &str, reply: Reply) -> Result<Reply, RestError> {
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(self.error(what, reply))
        }
    }

    /// Runs a blocking export search (`search/jobs/export`,
    /// `output_mode=json`) and hands each final result to `on_result`
    /// until it returns false or the results end. Reading stops as soon as
    /// `on_result` says so, which closes the connection and so ends the
    /// search on splunkd. Returns splunkd's messages (`(type, text)`).
    pub fn export(
        &self,
        form: &[(&str, &str)],
        timeout: Duration,
        on_result: &mut dyn FnMut(serde_json::Map<String, serde_json::Value>) -> bool,
    ) -> Result<Vec<(String, String)>, RestError> {
        let what = "running the search";
        let url = format!("{}/{}/search/jobs/export", self.base, self.namespace);
        let request = self.authorized(self.http.post(url).form(form));
        let fut = async {
            let mut resp = request.send().await?;
            let status = resp.status().as_u16();
            if status != 200 {
                let body = resp.bytes().await?.to_vec();
                return Ok(Err(Reply { status, body }));
            }
            let mut messages = Vec::new();
            let mut buf: Vec<u8> = Vec::new();
            let mut more = true;
            while more {
                let chunk = resp.chunk().await?;
                let end = chunk.is_none();
                if let Some(c) = chunk {
                    buf.extend_from_slice(&c);
                }
                // Whole lines; at the end, whatever is left is one too.
                let mut start = 0;
                loop {
                    let rest = &buf[start..];
                    let (line, next) = match memchr::memchr(b'\n', rest) {
                        Some(i) => (&rest[..i], start + i + 1),
                        None if end && !rest.is_empty() => (rest, buf.len()),
                        None => break,
                    };
                    start = next;
                    if !export_line(line, &mut messages, on_result) {
                        more = false;
                        break;
                    }
                }
                buf.drain(..start);
                if end {
                    break;
                }
            }
            Ok(Ok(messages))
        };
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, fut).await });
        match outcome {
            Ok(Ok(Ok(messages))) => Ok(messages),
            Ok(Ok(Err(reply))) => Err(self.error(what, reply)),
            Ok(Err(e)) => Err(self.transport(what, &e, timeout)),
            Err(_) => Err(RestError::Timeout {
                what: what.into(),
                base: self.base.clone(),
                after: timeout,
            }),
        }
    }
}

/// One line of export JSON: `{"preview":false,"result":{…}}`, or one
/// with `messages`. Preview results (a reporting search's partial
/// tables) are skipped: the final ones follow. Returns false to stop.
fn export_line(
    line: &[u8],
    messages: &mut Vec<(String, String)>,
    on_result: &mut dyn FnMut(serde_json::Map<String, serde_json::Value>) -> bool,
) -> bool {
    let line = line.trim_ascii();
    if line.is_empty() {
        return true;
    }
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(line) else {
        return true;
    };
    if let Some(serde_json::Value::Array(list)) = obj.get("messages") {
        for m in list {
            let field = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            messages.push((field("type"), field("text")));
        }
    }
    if obj.get("preview").and_then(|p| p.as_bool()) == Some(true) {
        return true;
    }
    match obj.remove("result") {
        Some(serde_json::Value::Object(result)) => on_result(result),
        _ => true,
    }
}

/// The session key of a login reply (JSON, or XML from an old splunkd
/// that ignores `output_mode`).
fn session_key_of(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return v
            .get("sessionKey")
            .and_then(|k| k.as_str())
            .filter(|k| !k.is_empty())
            .map(str::to_string);
    }
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<sessionKey>")? + "<sessionKey>".len();
    let len = text[start..].find("</sessionKey>")?;
    Some(text[start..start + len].trim().to_string()).filter(|k| !k.is_empty())
}

/// splunkd's error body is `{"messages":[{"type":"ERROR","text":"…"}]}`
/// (or XML with `<msg>`); otherwise the start of the body.
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
        let s = String::from_utf8_lossy(body);
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

/// The innermost cause of a reqwest error (without the URL).
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(
            segment("sysmonenrich:virustotal:"),
            "sysmonenrich%3Avirustotal%3A"
        );
        assert_eq!(segment("my-app_1.x"), "my-app_1.x");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

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
                b"<response><messages><msg type=\"ERROR\">Login failed</msg></messages></response>"
            ),
            "Login failed"
        );
        assert_eq!(first_message(b""), "no message");
        assert!(first_message(&[b'x'; 500]).ends_with('…'));
    }

    #[test]
    fn session_keys() {
        assert_eq!(
            session_key_of(br#"{"sessionKey":"abc"}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            session_key_of(b"<response>\n<sessionKey>xyz</sessionKey>\n</response>").as_deref(),
            Some("xyz")
        );
        assert_eq!(session_key_of(br#"{"sessionKey":""}"#), None);
    }

    #[test]
    fn export_lines() {
        let mut got = Vec::new();
        let mut messages = Vec::new();
        let mut take = |r: serde_json::Map<String, serde_json::Value>| {
            got.push(r);
            got.len() < 2
        };
        assert!(export_line(
            br#"{"preview":true,"result":{"a":"0"}}"#,
            &mut messages,
            &mut take
        ));
        assert!(export_line(
            br#"{"preview":false,"result":{"a":"1"}}"#,
            &mut messages,
            &mut take
        ));
        assert!(export_line(
            br#"{"messages":[{"type":"INFO","text":"hi"}]}"#,
            &mut messages,
            &mut take
        ));
        assert!(export_line(b"garbage", &mut messages, &mut take));
        assert!(!export_line(
            br#"{"preview":false,"lastrow":true,"result":{"a":"2"}}"#,
            &mut messages,
            &mut take
        ));
        assert_eq!(got.len(), 2);
        assert_eq!(messages, [("INFO".to_string(), "hi".to_string())]);
    }
}
