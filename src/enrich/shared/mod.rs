//! The shared tier: what a search head cluster's members share through
//! Splunk's KV store (issue 19), above the local SQLite tier of one
//! search head. Every member reads what any member learnt (reputation
//! answers, trusted process creations and their Sigma matches) instead of
//! asking providers and splunkd again.
//!
//! - [`docs`]: the documents of the two collections and their conversion
//!   to and from the state store's values (a reader trusts nothing it has
//!   not checked: a process document must match its digest).
//! - [`tier`]: one search's reads and writes, bounded in time (one budget
//!   per search), memory (a capped queue) and faults (the `kvstore`
//!   circuit).
//! - [`rep`] and [`source`]: the tier behind the reputation store and the
//!   ancestor source the engine already has.
//! - [`setup`]: whether a search uses the tier (`[state] shared`), and
//!   housekeeping.

pub mod docs;
pub mod rep;
pub mod setup;
pub mod source;
pub mod tier;

pub use tier::SharedTier;
