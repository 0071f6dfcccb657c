//! The one splunkd REST client: the search command's backfill and key
//! loader (with the search's session key) and the CLI (with a token or a
//! login from `.splunkrc`) all talk to splunkd through it.
//!
//! Rules it keeps for every caller:
//!
//! - TLS is verified, except for a *loopback* splunkd when the conf says
//!   `[splunkd] insecure_loopback = true` (Splunk ships a self-signed
//!   certificate, and nothing on the wire leaves the host), or when a CLI
//!   user passes `--insecure` for a remote one.
//! - A loopback splunkd is never reached through a proxy.
//! - Secrets travel in request bodies and the `Authorization` header only,
//!   never in a URL, so no error text can show one.
//! - Every call has a deadline; an export streams its results to the
//!   caller line by line instead of holding the whole body.
//!
//! It is blocking (a small runtime of its own), because its callers are:
//! the protocol loop waits on stdin, the CLI on the user.

use super::error::{first_message, SplunkError};
use crate::http::{describe_error, is_loopback, read_capped, USER_AGENT};
use crate::protocol::metadata::Secret;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use std::time::Duration;

/// Characters left as they are in a path segment (RFC 3986 unreserved).
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

/// `servicesNS/<owner>/<app>` (an empty part becomes `-`, splunkd's
/// wildcard), or `services` when neither is given.
pub fn namespace(owner: Option<&str>, app: Option<&str>) -> String {
    let part = |p: Option<&str>| segment(p.filter(|s| !s.is_empty()).unwrap_or("-"));
    match (
        owner.filter(|s| !s.is_empty()),
        app.filter(|s| !s.is_empty()),
    ) {
        (None, None) => "services".to_string(),
        _ => format!("servicesNS/{}/{}", part(owner), part(app)),
    }
}

/// Where splunkd is and how to trust it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://127.0.0.1:8089` (a trailing `/` is ignored).
    pub uri: String,
    /// Accept an unverified certificate from a loopback splunkd
    /// (`[splunkd] insecure_loopback`).
    pub insecure_loopback: bool,
    /// Accept an unverified certificate from any splunkd (the CLI's
    /// `--insecure`).
    pub insecure: bool,
    /// Namespace of searches (see [`namespace`]).
    pub namespace: String,
    /// Longest an ordinary call may take.
    pub call_timeout: Duration,
    /// Longest connecting may take.
    pub connect_timeout: Duration,
}

impl Target {
    /// A target with the defaults: verified TLS except a loopback splunkd,
    /// namespace `services`, 60 s per call, 15 s to connect.
    pub fn new(uri: &str) -> Target {
        Target {
            uri: uri.trim_end_matches('/').to_string(),
            insecure_loopback: true,
            insecure: false,
            namespace: "services".into(),
            call_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Longest a search waits to connect to splunkd: its management port is
/// on this host or the next, so more than this means it is wedged.
pub const SEARCH_CONNECT_BUDGET: Duration = Duration::from_secs(2);
/// Longest a search waits for one small splunkd call (server info, the
/// credential store): each answers in milliseconds when splunkd is well.
pub const SEARCH_CALL_BUDGET: Duration = Duration::from_secs(3);

/// The (call, connect) budgets of a search's small splunkd call: the
/// constants above, or the conf's shorter `request_timeout`.
pub fn search_budgets(request_timeout: Duration) -> (Duration, Duration) {
    let call = request_timeout.min(SEARCH_CALL_BUDGET);
    (call, call.min(SEARCH_CONNECT_BUDGET))
}

/// Counts a search's splunkd call against splunkd's circuit: a timeout, a
/// refused connection, a 5xx or an unreadable answer opens it at once
/// ([`crate::circuit::Breaker::trip`]), so the search's other splunkd
/// calls and the next searches skip it; any other answer (even 401 or
/// 404) shows splunkd is there. Returns the one WARN text when this call
/// opened the circuit.
pub fn count_on<T>(
    breaker: &crate::circuit::Breaker,
    result: &Result<T, SplunkError>,
) -> Option<String> {
    match result {
        Err(e) if e.is_splunkd_failure() => breaker.trip(&e.brief(), crate::circuit::now_secs()).1,
        _ => {
            breaker.success();
            None
        }
    }
}

/// The methods of [`Client::call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

/// Replies other than exports larger than this are cut (splunkd's listings
/// are kilobytes); a cut reply fails to parse and becomes an error.
const MAX_BODY: usize = 8 << 20;

/// A blocking splunkd client.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    authorization: Secret,
    /// What to check when a call gets 401.
    hint_401: String,
    namespace: String,
    call_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("authorization", &self.authorization)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client, without credentials yet (no request is made).
    pub fn new(target: &Target) -> Result<Client, SplunkError> {
        let base = target.uri.trim_end_matches('/').to_string();
        let fail = |cause: String| SplunkError::Transport {
            what: "preparing the splunkd client".into(),
            base: base.clone(),
            cause,
            hint: String::new(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .connect_timeout(target.connect_timeout);
        let unverified = if is_loopback(&base) {
            b = b.no_proxy();
            target.insecure_loopback || target.insecure
        } else {
            target.insecure
        };
        b = b.danger_accept_invalid_certs(unverified);
        if unverified || base.starts_with("http:") {
            // No certificate is checked: loading the system's CA store
            // (hundreds of certificates, every search) would buy nothing.
            b = b.tls_built_in_root_certs(false);
        }
        let http = b.build().map_err(|e| fail(describe_error(&e)))?;
        Ok(Client {
            runtime,
            http,
            base,
            authorization: Secret::default(),
            hint_401: "check the credentials".into(),
            namespace: target.namespace.clone(),
            call_timeout: target.call_timeout,
        })
    }

    /// Authenticates with a search's session key (`Splunk <key>`).
    pub fn with_session_key(mut self, key: &Secret) -> Client {
        self.authorization = Secret::new(format!("Splunk {}", key.expose()));
        self.hint_401 = "the search's session key was refused (expired?)".into();
        self
    }

    /// Authenticates with a ready `Authorization` value (`Bearer <token>`
    /// or `Splunk <key>`); `hint` says what to check on a 401.
    pub fn with_authorization(mut self, header: Secret, hint: String) -> Client {
        self.authorization = header;
        self.hint_401 = hint;
        self
    }

    /// Logs in (`POST /services/auth/login`, one request) and
    /// authenticates with the session key splunkd gives. `check` says
    /// where the username and password came from, for the error.
    pub fn login(
        mut self,
        username: &str,
        password: &Secret,
        check: &str,
    ) -> Result<Client, SplunkError> {
        let what = format!("logging in as {username:?}");
        let form = [
            ("username", username),
            ("password", password.expose()),
            ("output_mode", "json"),
        ];
        let request = self
            .http
            .post(format!("{}/services/auth/login", self.base))
            .form(&form);
        let reply = self.send(request, &what, self.call_timeout)?;
        match reply.status {
            200 => {}
            400 | 401 => {
                return Err(SplunkError::LoginRefused {
                    what,
                    base: self.base.clone(),
                    status: reply.status,
                    message: first_message(&reply.body),
                    hint: check.to_string(),
                })
            }
            _ => return Err(self.error(&what, reply)),
        }
        let key = session_key_of(&reply.body).ok_or_else(|| SplunkError::Unreadable {
            what: what.clone(),
            base: self.base.clone(),
            expected: "a login reply with a session key".into(),
        })?;
        self.authorization = Secret::new(format!("Splunk {key}"));
        self.hint_401 =
            format!("splunkd refused the session it gave user {username:?} (expired?); try again");
        Ok(self)
    }

    /// A second client with the same target and credentials (its own
    /// runtime, the same connection pool), e.g. for backfill next to a
    /// running export.
    pub fn duplicate(&self) -> Result<Client, SplunkError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SplunkError::Transport {
                what: "preparing the splunkd client".into(),
                base: self.base.clone(),
                cause: e.to_string(),
                hint: String::new(),
            })?;
        Ok(Client {
            runtime,
            http: self.http.clone(),
            base: self.base.clone(),
            authorization: self.authorization.clone(),
            hint_401: self.hint_401.clone(),
            namespace: self.namespace.clone(),
            call_timeout: self.call_timeout,
        })
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
    pub fn get(&self, path: &str, what: &str) -> Result<Reply, SplunkError> {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(self.authorized(req), what, self.call_timeout)
    }

    /// `POST path` with a form body.
    pub fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        what: &str,
    ) -> Result<Reply, SplunkError> {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(self.authorized(req), what, self.call_timeout)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str, what: &str) -> Result<Reply, SplunkError> {
        let req = self.http.delete(format!("{}{path}", self.base));
        self.send(self.authorized(req), what, self.call_timeout)
    }

    /// `GET path` expecting 200 and a JSON body of type `T`.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        expected: &str,
    ) -> Result<T, SplunkError> {
        let reply = self.ok(what, self.get(path, what)?)?;
        serde_json::from_slice(&reply.body).map_err(|_| SplunkError::Unreadable {
            what: what.into(),
            base: self.base.clone(),
            expected: expected.into(),
        })
    }

    /// A call with its own deadline: `method` (`GET`, `POST`, `DELETE`)
    /// on `path` (path and query, starting with `/`), with a JSON body
    /// when given. For callers that spend a budget of their own (the KV
    /// store's per-search budget) rather than the client's call timeout.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        what: &str,
        timeout: Duration,
    ) -> Result<Reply, SplunkError> {
        if timeout.is_zero() {
            return Err(self.timeout(what, timeout));
        }
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
            Method::Delete => self.http.delete(url),
        };
        if let Some(body) = json {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        self.send(self.authorized(req), what, timeout)
    }

    /// The client's timeout for an ordinary call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header(reqwest::header::AUTHORIZATION, self.authorization.expose())
    }

    fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
        timeout: Duration,
    ) -> Result<Reply, SplunkError> {
        let fut = async {
            let mut resp = request.send().await?;
            let status = resp.status().as_u16();
            let body = read_capped(&mut resp, MAX_BODY).await?;
            Ok::<_, reqwest::Error>(Reply { status, body })
        };
        match self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, fut).await })
        {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.transport(what, &e, timeout)),
            Err(_) => Err(self.timeout(what, timeout)),
        }
    }

    fn timeout(&self, what: &str, after: Duration) -> SplunkError {
        SplunkError::Timeout {
            what: what.into(),
            base: self.base.clone(),
            after,
        }
    }

    fn transport(&self, what: &str, e: &reqwest::Error, timeout: Duration) -> SplunkError {
        if e.is_timeout() {
            return self.timeout(what, timeout);
        }
        let cause = describe_error(e);
        let lower = cause.to_ascii_lowercase();
        let hint = if lower.contains("certificate") || lower.contains("unknown issuer") {
            "; splunkd's certificate is not trusted: install its CA, or (CLI) pass --insecure to skip verification"
        } else if lower.contains("invalid http")
            || lower.contains("corrupt message")
            || lower.contains("invalidcontenttype")
        {
            "; is scheme= right (https vs http)?"
        } else {
            ""
        };
        SplunkError::Transport {
            what: what.into(),
            base: self.base.clone(),
            cause,
            hint: hint.into(),
        }
    }

    /// The error for an unexpected status.
    pub fn error(&self, what: &str, reply: Reply) -> SplunkError {
        self.error_needing(what, reply, "")
    }

    /// [`Client::error`], naming the capability a 403 means is missing.
    pub fn error_needing(&self, what: &str, reply: Reply, capability: &str) -> SplunkError {
        let message = first_message(&reply.body);
        match reply.status {
            401 => SplunkError::Unauthorized {
                what: what.into(),
                base: self.base.clone(),
                message,
                hint: self.hint_401.clone(),
            },
            403 => SplunkError::Forbidden {
                what: what.into(),
                base: self.base.clone(),
                message,
                needs: if capability.is_empty() {
                    String::new()
                } else {
                    format!(" ({capability})")
                },
            },
            status => SplunkError::Status {
                what: what.into(),
                base: self.base.clone(),
                status,
                message,
            },
        }
    }

    /// `reply` when it is a 2xx, else the error for its status.
    pub fn ok(&self, what: &str, reply: Reply) -> Result<Reply, SplunkError> {
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(self.error(what, reply))
        }
    }

    /// Runs a blocking export search (`search/jobs/export` in the
    /// client's namespace, `output_mode=json`) and hands each final result
    /// to `on_result` as it arrives, until it returns false or the results
    /// end. Only one line of the body is held at a time. Stopping early
    /// closes the connection, which ends the search on splunkd. `form`
    /// holds `search` and the time range; returns splunkd's messages
    /// (`(type, text)`).
    pub fn export(
        &self,
        form: &[(&str, &str)],
        timeout: Duration,
        on_result: &mut dyn FnMut(serde_json::Map<String, serde_json::Value>) -> bool,
    ) -> Result<Vec<(String, String)>, SplunkError> {
        let what = "running the search";
        if timeout.is_zero() {
            return Err(self.timeout(what, timeout));
        }
        let url = format!("{}/{}/search/jobs/export", self.base, self.namespace);
        let mut form = form.to_vec();
        if !form.iter().any(|(k, _)| *k == "output_mode") {
            form.push(("output_mode", "json"));
        }
        let request = self.authorized(self.http.post(url).form(&form));
        let fut = async {
            let mut resp = request.send().await?;
            let status = resp.status().as_u16();
            if status != 200 {
                let body = resp.bytes().await?;
                let body = body[..body.len().min(MAX_BODY)].to_vec();
                return Ok(Err(Reply { status, body }));
            }
            let mut lines = super::export::Lines::default();
            while let Some(chunk) = resp.chunk().await? {
                if !lines.feed(&chunk, on_result) {
                    return Ok(Ok(lines.into_messages()));
                }
            }
            lines.finish(on_result);
            Ok(Ok(lines.into_messages()))
        };
        let outcome = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, fut).await });
        match outcome {
            Ok(Ok(Ok(messages))) => Ok(messages),
            Ok(Ok(Err(reply))) => Err(self.error(what, reply)),
            Ok(Err(e)) => Err(self.transport(what, &e, timeout)),
            Err(_) => Err(self.timeout(what, timeout)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_namespaces() {
        assert_eq!(
            segment("sysmonenrich:virustotal:"),
            "sysmonenrich%3Avirustotal%3A"
        );
        assert_eq!(segment("my-app_1.x"), "my-app_1.x");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(namespace(None, None), "services");
        assert_eq!(namespace(Some(""), Some("")), "services");
        assert_eq!(namespace(Some("ad min"), None), "servicesNS/ad%20min/-");
        assert_eq!(
            namespace(Some("admin"), Some("search")),
            "servicesNS/admin/search"
        );
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
    fn tls_rule_follows_the_target() {
        // Building never connects; the rule is exercised end to end in
        // tests/cli.rs. Here: every combination builds.
        for (uri, loopback_ok, insecure) in [
            ("https://127.0.0.1:8089", true, false),
            ("https://127.0.0.1:8089", false, false),
            ("https://splunk.example.com:8089", false, true),
        ] {
            let mut t = Target::new(uri);
            t.insecure_loopback = loopback_ok;
            t.insecure = insecure;
            assert!(Client::new(&t).is_ok());
        }
    }
}
