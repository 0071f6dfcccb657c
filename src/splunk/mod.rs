//! splunkd's REST API, as far as this program needs it, through one
//! client: export searches streamed back as JSON lines (what the engine's
//! backfill and the CLI's `search` read), the credential store (API keys, the proxy password),
//! server and cluster info, the installed apps, the app's KV store
//! collections.
//!
//! The command runs inside a search, so it authenticates with that search's
//! session key (`Authorization: Splunk <key>`) against the `splunkd_uri`
//! splunkd handed us (never an assumed `https://127.0.0.1:8089`: peers got
//! that wrong, VT4Splunk 1.6.4/1.8.2). The CLI logs in with `.splunkrc`.
//! Both follow one TLS rule (see [`client`]): Splunk ships a self-signed
//! certificate, so a *loopback* splunkd may be accepted unverified when the
//! conf says so; anything else is verified unless a CLI user says
//! `--insecure`.

pub mod client;
pub mod error;
mod export;
pub mod info;
pub mod kvstore;
pub mod passwords;

pub use crate::http::is_loopback;
pub use client::{namespace, segment, Client, Method, Reply, Target};
pub use error::{first_message, SplunkError};

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
