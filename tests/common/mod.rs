//! Helpers shared by the integration tests.
//!
//! - [`splunkd`]: a splunkd stand-in written from `protocol/SCPV2.md` that
//!   drives the real binary over stdin/stdout and checks every reply the way
//!   splunkd would depend on it (plus a raw mode for hostile input).
//! - [`datasets`]: the shared Sysmon data sets (skipped with a printed reason
//!   when `../shared` is absent, failed when `CI` is set) and a self-made
//!   generator so that some end-to-end tests always run.
//! - [`creations`]: tables of process creations, listed or one chain.
//! - [`fake_kvstore`]: splunkd's KV store, server info and cluster
//!   members, on the same server as [`fake_splunkd`]'s export.
//! - [`home`]: a temporary `$SPLUNK_HOME` (state, log, `state` CLI) and app
//!   folder with a local conf.
//! - [`serial`]: the process-wide lock tests take to run the binary alone.
//!
//! Every test crate includes this module with `mod common;` and uses a
//! different subset of it, so unused-item warnings here would be noise.
#![allow(dead_code)]

pub mod creations;
pub mod datasets;
pub mod fake_kvstore;
pub mod fake_splunkd;
pub mod home;
pub mod http;
pub mod serial;
pub mod services;
pub mod splunkd;
