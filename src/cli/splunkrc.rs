//! `.splunkrc`: where splunkd is and how to log in, in the Splunk SDKs'
//! format, so one file serves this CLI and the SDK examples alike.
//!
//! ```text
//! # comments start with #
//! host=splunk.example.com      (default localhost)
//! port=8089                    (default 8089)
//! scheme=https                 (default https; http for a test server)
//! username=admin               (`user=` is accepted too)
//! password=changeme
//! token=eyJraWQiOi...          (a Splunk authentication token: Bearer)
//! app=search                   (namespace for searches; optional)
//! owner=admin                  (namespace for searches; optional)
//! version=9.1                  (accepted and ignored, as the SDKs do)
//! ```
//!
//! A token wins over a username and password: it needs no login round
//! trip and can be revoked alone. `bearerToken=` / `splunkToken=` are the
//! SDKs' other spellings of `token=`; `sessionKey=` takes an existing
//! session key (`Authorization: Splunk <key>`).
//!
//! Secrets are [`Secret`]s: `Debug` prints `<redacted>`, and nothing here
//! ever quotes a line of the file in a warning (a malformed line may be a
//! password).

use crate::protocol::metadata::Secret;
use std::path::{Path, PathBuf};

/// The parsed file.
#[derive(Debug, Clone)]
pub struct SplunkRc {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// `https` or `http`.
    pub scheme: String,
    /// Host name or address (no scheme, no port).
    pub host: String,
    /// Management port.
    pub port: u16,
    /// Login name.
    pub username: Option<String>,
    /// Login password.
    pub password: Option<Secret>,
    /// Authentication token (sent as `Bearer`, unless it already says
    /// `Splunk …`/`Bearer …`).
    pub token: Option<Secret>,
    /// An existing session key.
    pub session_key: Option<Secret>,
    /// App namespace for searches.
    pub app: Option<String>,
    /// Owner namespace for searches.
    pub owner: Option<String>,
    /// Splunk version (informational).
    pub version: Option<String>,
    /// Problems that did not stop parsing (each names a line or a key,
    /// never a value).
    pub warnings: Vec<String>,
}

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A ready `Authorization` header value (`Bearer …` or `Splunk …`).
    Header(Secret),
    /// Log in with `POST /services/auth/login` first.
    Login {
        /// Login name.
        username: String,
        /// Password.
        password: Secret,
    },
}

impl Default for SplunkRc {
    fn default() -> Self {
        SplunkRc {
            path: PathBuf::new(),
            scheme: "https".into(),
            host: "localhost".into(),
            port: 8089,
            username: None,
            password: None,
            token: None,
            session_key: None,
            app: None,
            owner: None,
            version: None,
            warnings: Vec::new(),
        }
    }
}

/// `~/.splunkrc` (`%USERPROFILE%\.splunkrc` on Windows).
pub fn default_path() -> Option<PathBuf> {
    crate::platform::user_home().map(|h| h.join(".splunkrc"))
}

impl SplunkRc {
    /// Reads `path`, or `~/.splunkrc` when `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<SplunkRc> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => default_path().ok_or_else(|| {
                anyhow::anyhow!("no home directory to find .splunkrc in; pass --splunkrc PATH")
            })?,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{} does not exist: create it with host=, port=, and token= or \
                     username= and password= lines (mode 600), or pass --splunkrc PATH",
                    path.display()
                )
            } else {
                anyhow::anyhow!("cannot read {}: {e}", path.display())
            }
        })?;
        let mut rc = SplunkRc::parse(&text, &path)?;
        if rc.has_secret() {
            if let Some(w) = permissions_warning(&path) {
                rc.warnings.push(w);
            }
        }
        Ok(rc)
    }

    /// Parses the text of a file read from `path`.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<SplunkRc> {
        let origin = path.display().to_string();
        let mut rc = SplunkRc {
            path: path.to_path_buf(),
            ..SplunkRc::default()
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                rc.warnings
                    .push(format!("{origin}: line {}: not key=value; ignored", n + 1));
                continue;
            };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let key: String = key
                .trim()
                .chars()
                .filter(|c| !matches!(c, '_' | '-' | ' '))
                .flat_map(char::to_lowercase)
                .collect();
            match key.as_str() {
                "host" => {
                    if value.contains("://") || value.contains('/') {
                        anyhow::bail!(
                            "{origin}: line {}: host= takes a host name only; put the scheme in scheme= and the port in port=",
                            n + 1
                        );
                    }
                    rc.host = value.trim_start_matches('[').trim_end_matches(']').into();
                }
                "port" => {
                    rc.port = value.parse().map_err(|_| {
                        anyhow::anyhow!("{origin}: line {}: port= is not a port number", n + 1)
                    })?
                }
                "scheme" => {
                    let s = value.to_ascii_lowercase();
                    if s != "https" && s != "http" {
                        anyhow::bail!("{origin}: line {}: scheme= must be https or http", n + 1);
                    }
                    rc.scheme = s;
                }
                "username" | "user" => rc.username = Some(value.into()),
                "password" => rc.password = Some(Secret::new(value)),
                "token" | "bearertoken" | "splunktoken" => rc.token = Some(Secret::new(value)),
                "sessionkey" => rc.session_key = Some(Secret::new(value)),
                "app" => rc.app = Some(value.into()),
                "owner" => rc.owner = Some(value.into()),
                "version" => rc.version = Some(value.into()),
                // Other SDK settings this CLI has no use for.
                "namespace" | "autologin" | "basic" => {}
                other => rc.warnings.push(format!(
                    "{origin}: line {}: unknown key {other:?}; ignored",
                    n + 1
                )),
            }
        }
        Ok(rc)
    }

    /// True when the file holds a password, token or session key.
    pub fn has_secret(&self) -> bool {
        self.password.is_some() || self.token.is_some() || self.session_key.is_some()
    }

    /// `scheme://host:port` (IPv6 addresses bracketed).
    pub fn base_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}", self.scheme, self.port)
    }

    /// How to authenticate: a token first, then a session key, then a
    /// login.
    pub fn auth(&self) -> anyhow::Result<Auth> {
        if let Some(t) = &self.token {
            let v = t.expose();
            let header = if starts_with_word(v, "Bearer") || starts_with_word(v, "Splunk") {
                v.to_string()
            } else {
                format!("Bearer {v}")
            };
            return Ok(Auth::Header(Secret::new(header)));
        }
        if let Some(k) = &self.session_key {
            return Ok(Auth::Header(Secret::new(format!("Splunk {}", k.expose()))));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => Ok(Auth::Login {
                username: u.clone(),
                password: p.clone(),
            }),
            (Some(_), None) => anyhow::bail!(
                "{}: username= is set but password= is not",
                self.path.display()
            ),
            _ => anyhow::bail!(
                "{}: no credentials: set token= (a Splunk authentication token) or username= and password=",
                self.path.display()
            ),
        }
    }
}

/// `text` starts with `word` and a space (any case).
fn starts_with_word(text: &str, word: &str) -> bool {
    text.len() > word.len()
        && text[..word.len()].eq_ignore_ascii_case(word)
        && text.as_bytes()[word.len()] == b' '
}

/// A warning when others may read a file that holds a secret (see
/// [`crate::platform::secret_file_warning`]).
fn permissions_warning(path: &Path) -> Option<String> {
    crate::platform::secret_file_warning(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SplunkRc {
        SplunkRc::parse(text, Path::new("rc")).unwrap()
    }

    #[test]
    fn sdk_format() {
        let rc = parse(
            "# Splunk host\nhost=splunk.example.com\nport = 8090\nscheme=https\n\
             username=admin\npassword=pa=ss#word\nversion=9.1\napp=search\nowner=admin\n",
        );
        assert_eq!(rc.base_url(), "https://splunk.example.com:8090");
        assert_eq!(rc.username.as_deref(), Some("admin"));
        assert_eq!(rc.password.as_ref().unwrap().expose(), "pa=ss#word");
        assert_eq!(rc.app.as_deref(), Some("search"));
        assert!(rc.warnings.is_empty(), "{:?}", rc.warnings);
        match rc.auth().unwrap() {
            Auth::Login { username, password } => {
                assert_eq!(username, "admin");
                assert_eq!(password.expose(), "pa=ss#word");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_token() {
        let rc = parse("token=abc.def.ghi\nusername=admin\npassword=x\n");
        assert_eq!(rc.base_url(), "https://localhost:8089");
        match rc.auth().unwrap() {
            Auth::Header(h) => assert_eq!(h.expose(), "Bearer abc.def.ghi"),
            other => panic!("{other:?}"),
        }
        let rc = parse("bearerToken=Splunk sess\n");
        match rc.auth().unwrap() {
            Auth::Header(h) => assert_eq!(h.expose(), "Splunk sess"),
            other => panic!("{other:?}"),
        }
        let rc = parse("sessionKey=k1\nhost=::1\n");
        assert_eq!(rc.base_url(), "https://[::1]:8089");
        match rc.auth().unwrap() {
            Auth::Header(h) => assert_eq!(h.expose(), "Splunk k1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_never_print() {
        let rc = parse("username=admin\npassword=hunter2hunter2\ntoken=tok-secret-123\n");
        let text = format!("{rc:?} {:?}", rc.auth().unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("tok-secret"), "{text}");
    }

    #[test]
    fn problems() {
        let rc = parse("garbage line with secret\ncolour=blue\n");
        assert_eq!(rc.warnings.len(), 2);
        assert!(!rc.warnings.join(" ").contains("secret"));
        assert!(rc
            .auth()
            .unwrap_err()
            .to_string()
            .contains("no credentials"));
        assert!(parse("username=a\n")
            .auth()
            .unwrap_err()
            .to_string()
            .contains("password"));
        for bad in [
            "port=http\n",
            "scheme=ftp\n",
            "host=https://x:8089\n",
            "port=70000\n",
        ] {
            assert!(SplunkRc::parse(bad, Path::new("rc")).is_err(), "{bad}");
        }
    }
}
