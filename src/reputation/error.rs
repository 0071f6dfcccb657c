//! Errors that stop the reputation engine from being built. Once built it
//! never returns an error: failed lookups are answers (`pending`/`error`).

/// Why a [`super::Service`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A provider name the engine does not know.
    #[error(
        "unknown reputation provider \"{0}\" (known: local, hashlookup, virustotal, malwarebazaar)"
    )]
    UnknownProvider(String),
    /// A base URL that does not parse as http(s).
    #[error("{provider}: base URL is not a valid http(s) URL")]
    BaseUrl {
        /// The provider it belongs to.
        provider: &'static str,
    },
    /// The proxy setting does not parse (the value is not echoed: it may
    /// carry a password).
    #[error("the reputation proxy setting is not a valid proxy URL")]
    Proxy,
    /// The HTTP client (TLS backend) could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// The async runtime could not be started.
    #[error("cannot start the reputation runtime")]
    Runtime(#[source] std::io::Error),
}
