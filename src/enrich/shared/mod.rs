//! The shared tier: what a search head cluster's members share through
//! Splunk's KV store (issue 19), above the local SQLite tier of one
//! search head. Every member reads what any member learnt (reputation
//! answers, trusted process creations and their Sigma matches) instead of
//! asking providers and splunkd again.
//!
//! - [`docs`]: the documents of the two collections and their conversion
//!   to and from the state store's values (a reader trusts nothing it has
//!   not checked: a process document must match its digest).

pub mod docs;
