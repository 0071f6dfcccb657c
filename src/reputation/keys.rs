//! Provider API keys: where they come from, and how they stay secret.
//!
//! - Under Splunk: the credential store, `storage/passwords`, realm
//!   `sysmonenrich`, user = provider name, read through the search's
//!   `splunkd_uri` with its session key. Reading it needs the
//!   `list_storage_passwords` capability; without it the key-less
//!   providers still run and the user gets one clear warning.
//! - On the command line: `SYSMONENRICH_<PROVIDER>_KEY` environment
//!   variables, or a key file of `provider = key` lines.
//!
//! A key lives in an [`ApiKey`], which never prints. It only ever travels
//! in a request header (never a URL, so a reqwest error cannot show it),
//! and every failure text that leaves the engine goes through a
//! [`Scrubber`] holding all keys anyway.

use crate::protocol::metadata::Secret;
use crate::splunk::{passwords, Client, SplunkError, Target};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The credential realm (and app) the keys are stored under.
pub use crate::splunk::passwords::REALM;

/// Providers that need a key.
pub const KEYED_PROVIDERS: [&str; 2] = ["virustotal", "malwarebazaar"];

/// An API key; `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (surrounding white space removed).
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into().trim().to_string())
    }

    /// The key, for the one place that needs it: a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Keys by provider name.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct ApiKeys(BTreeMap<String, ApiKey>);

/// The key file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the key file {path}")]
pub struct KeyFileError {
    /// The file.
    pub path: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl ApiKeys {
    /// No keys.
    pub fn new() -> ApiKeys {
        ApiKeys::default()
    }

    /// Sets the key of `provider` (an empty key is ignored).
    pub fn insert(&mut self, provider: &str, key: ApiKey) {
        if !key.0.is_empty() {
            self.0.insert(provider.to_ascii_lowercase(), key);
        }
    }

    /// The key of `provider`.
    pub fn get(&self, provider: &str) -> Option<&ApiKey> {
        self.0.get(provider)
    }

    /// Providers that have a key.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// True when no key is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `other`'s keys, replacing ours for the same provider.
    pub fn merge(&mut self, other: ApiKeys) {
        self.0.extend(other.0);
    }

    /// Keys from `SYSMONENRICH_VIRUSTOTAL_KEY` and
    /// `SYSMONENRICH_MALWAREBAZAAR_KEY`.
    pub fn from_env() -> ApiKeys {
        ApiKeys::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ApiKeys::from_env`] with a variable lookup of the caller's
    /// (tests must not change the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ApiKeys {
        let mut keys = ApiKeys::new();
        for p in KEYED_PROVIDERS {
            let var = format!("SYSMONENRICH_{}_KEY", p.to_ascii_uppercase());
            if let Some(v) = lookup(&var) {
                keys.insert(p, ApiKey::new(v));
            }
        }
        keys
    }

    /// Keys from a file of `provider = key` lines (`#` comments and blank
    /// lines allowed), with a warning per line it could not use (naming
    /// the line, never its text).
    pub fn from_file(path: &Path) -> Result<(ApiKeys, Vec<String>), KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError {
            path: path.display().to_string(),
            source,
        })?;
        Ok(ApiKeys::parse_file(&text, &path.display().to_string()))
    }

    /// The parser behind [`ApiKeys::from_file`]; `origin` names the file in
    /// warnings.
    pub fn parse_file(text: &str, origin: &str) -> (ApiKeys, Vec<String>) {
        let mut keys = ApiKeys::new();
        let mut warnings = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line
                .split_once('=')
                .map(|(p, k)| (p.trim().to_ascii_lowercase(), k.trim()))
                .filter(|(p, k)| KEYED_PROVIDERS.contains(&p.as_str()) && !k.is_empty());
            match parsed {
                Some((p, k)) => keys.insert(&p, ApiKey::new(k)),
                None => warnings.push(format!(
                    "{origin}: line {}: expected `virustotal = <key>` or `malwarebazaar = <key>`; line ignored",
                    n + 1
                )),
            }
        }
        (keys, warnings)
    }

    /// Every key, for scrubbing texts.
    pub(crate) fn secrets(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(|k| k.expose())
    }
}

/// The credential-store user whose secret is the proxy's password (the
/// `[proxy] url` of the conf holds no password).
pub const PROXY_USER: &str = "proxy";

/// The provider keys among a realm's `(user, secret)` pairs: users that
/// are a provider needing a key. Others (`proxy`, unknown users) are not
/// keys.
pub fn keys_of(pairs: Vec<(String, Secret)>) -> ApiKeys {
    let mut keys = ApiKeys::new();
    for (user, secret) in pairs {
        if KEYED_PROVIDERS.contains(&user.as_str()) {
            keys.insert(&user, ApiKey::new(secret.expose()));
        }
    }
    keys
}

/// The warning when the user may not read the credential store.
pub const NO_CAPABILITY_WARNING: &str = "cannot read API keys: the user lacks the \
list_storage_passwords capability; key-less providers still run";

/// Reads our keys from splunkd. `Err` is a warning for the user (the
/// search goes on with the key-less providers).
/// The keys and the proxy's password, or the warning.
pub(crate) type Fetched = Result<(ApiKeys, Option<Secret>), String>;

/// Also returns the WARN text when this call opened splunkd's circuit.
pub(crate) fn fetch_from_splunkd(
    target: &Target,
    session_key: &Secret,
    splunkd: &crate::circuit::Breaker,
) -> (Fetched, Option<String>) {
    let mut opened = None;
    let fetched = fetch(target, session_key, splunkd, &mut opened);
    (fetched, opened)
}

fn fetch(
    target: &Target,
    session_key: &Secret,
    splunkd: &crate::circuit::Breaker,
    opened: &mut Option<String>,
) -> Fetched {
    const STILL_RUN: &str = "key-less providers still run";
    if session_key.is_empty() {
        return Err(format!(
            "cannot read API keys: splunkd sent no session key; {STILL_RUN}"
        ));
    }
    let client = Client::new(target)
        .map_err(|e| format!("cannot read API keys: {}; {STILL_RUN}", e.brief()))?
        .with_session_key(session_key);
    let read = passwords::read(&client, "reading the API keys");
    *opened = crate::splunk::client::count_on(splunkd, &read);
    match read {
        Ok(pairs) => {
            let proxy = pairs
                .iter()
                .find(|(user, _)| user == PROXY_USER)
                .map(|(_, secret)| secret.clone());
            Ok((keys_of(pairs), proxy))
        }
        Err(e) => Err(match e.status() {
            Some(403) => NO_CAPABILITY_WARNING.to_string(),
            Some(401) => format!(
                "cannot read API keys: splunkd refused the search's session key (http 401); {STILL_RUN}"
            ),
            Some(s) => format!("cannot read API keys: splunkd answered http {s}; {STILL_RUN}"),
            None if matches!(e, SplunkError::Unreadable { .. }) => format!(
                "cannot read API keys: splunkd's storage/passwords reply is unreadable; {STILL_RUN}"
            ),
            None => format!(
                "cannot read API keys from splunkd ({}); {STILL_RUN}",
                e.brief()
            ),
        }),
    }
}

/// Removes secrets from texts that leave the engine (belt and braces:
/// keys are never put in texts on purpose).
#[derive(Clone, Default)]
pub struct Scrubber(Vec<String>);

impl Scrubber {
    /// A scrubber for these secrets (very short strings are ignored: they
    /// are not keys and would mangle ordinary words).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut s = Scrubber::default();
        for x in secrets {
            s.add(x);
        }
        s
    }

    /// Adds one more secret.
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 6 && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_string());
        }
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_print() {
        let k = ApiKey::new("  s3cr3t-vt-key ");
        assert_eq!(k.expose(), "s3cr3t-vt-key");
        let mut keys = ApiKeys::new();
        keys.insert("virustotal", k.clone());
        for text in [format!("{k}"), format!("{k:?}"), format!("{keys:?}")] {
            assert!(!text.contains("s3cr3t"), "{text}");
        }
    }

    #[test]
    fn env_lookup_names() {
        let keys = ApiKeys::from_lookup(|v| match v {
            "SYSMONENRICH_VIRUSTOTAL_KEY" => Some("vtkey123".into()),
            "SYSMONENRICH_MALWAREBAZAAR_KEY" => Some("   ".into()),
            _ => None,
        });
        assert_eq!(keys.get("virustotal").unwrap().expose(), "vtkey123");
        assert!(keys.get("malwarebazaar").is_none());
    }

    #[test]
    fn key_file_lines() {
        let (keys, warnings) = ApiKeys::parse_file(
            "# keys\n\nVirusTotal = abc123456\nmalwarebazaar=mbkey999\nshodan = nope\njunk line\n",
            "keys.conf",
        );
        assert_eq!(keys.get("virustotal").unwrap().expose(), "abc123456");
        assert_eq!(keys.get("malwarebazaar").unwrap().expose(), "mbkey999");
        assert_eq!(
            warnings
                .iter()
                .map(|w| w.split(':').nth(1).unwrap().trim())
                .collect::<Vec<_>>(),
            ["line 5", "line 6"]
        );
        assert!(!warnings.join(" ").contains("nope"));
    }

    #[test]
    fn keys_are_the_keyed_providers_only() {
        let pairs = vec![
            ("virustotal".to_string(), Secret::new("vt-secret")),
            ("someone".to_string(), Secret::new("x")),
            ("proxy".to_string(), Secret::new("proxy-pass")),
        ];
        let keys = keys_of(pairs);
        assert_eq!(keys.get("virustotal").unwrap().expose(), "vt-secret");
        assert_eq!(keys.providers().count(), 1);
    }

    #[test]
    fn scrubber_replaces_every_secret() {
        let s = Scrubber::new(["vt-secret-1", "ab"]);
        assert_eq!(
            s.scrub("x vt-secret-1 y vt-secret-1 ab"),
            "x <redacted> y <redacted> ab"
        );
    }
}
