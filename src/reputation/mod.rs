//! Hash reputation: what providers know about the files in Sysmon events.
//!
//! ```text
//! FileHashes of a chunk
//!   └► LookupKey (sha256 > sha1 > md5; imphash never)      lookup.rs
//!        └► local allow/deny list                          providers/local.rs
//!        └► cache (per provider; found / not-found TTLs)   cache.rs, store.rs
//!        └► providers over HTTP, concurrently              providers/*.rs
//!             one hash at one provider                      fetch.rs
//!             per-provider cap, pacing, shared quota        limit.rs
//!             retries with backoff                          retry.rs
//!             one deadline: the search's lookup_budget      service.rs
//!        └► one Answer (the rep_* fields) per file          combine.rs, verdict.rs
//! ```
//!
//! The command builds one [`Service`] per search ([`Service::builder`]),
//! loads keys ([`Service::load_splunkd_keys`] under Splunk, [`ApiKeys`] on
//! the command line), calls [`Service::lookup_chunk`] once per chunk from
//! its synchronous loop, and shows [`Service::warnings`] and
//! [`Service::summary`] as inspector messages.
//!
//! Reputation must never hurt the search: a failed lookup is an answer
//! (`pending` or `error` with `rep_error`), never an `Err`, a panic or a
//! wait beyond the budget. Postponed hashes are queued in the state store
//! ([`ReputationStore`]) and resolved by a later search.
//!
//! This module never sees CSV or the protocol; it takes [`FileHashes`]
//! and returns [`Answer`]s. Below it: the protocol's `Secret` (session
//! key, proxy password), `http` (user agent, loopback rule, capped
//! bodies, error texts), `circuit` (breakers), `state` (cache, queue and
//! quota rows) and `splunk` (the client that reads API keys from the
//! credential store).
//!
//! [`FileHashes`]: crate::sysmon::hashes::FileHashes

pub mod cache;
pub mod client;
pub mod clock;
pub mod combine;
pub mod error;
mod fetch;
pub mod keys;
mod limit;
pub mod lookup;
pub mod providers;
pub mod retry;
pub mod service;
pub mod settings;
pub mod store;
pub mod summary;
pub mod verdict;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ServiceError;
pub use keys::{ApiKey, ApiKeys};
pub use lookup::LookupKey;
pub use providers::local::LocalList;
pub use service::{Service, ServiceBuilder};
pub use settings::{ProviderSettings, QuotaShare, SearchOptions, Settings};
pub use store::{
    CachedEntry, MemoryStore, PendingEntry, QuotaDecision, ReputationStore, StoreError,
};
pub use summary::Summary;
pub use verdict::{Answer, Verdict, ANSWER_FIELDS};
