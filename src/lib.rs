//! `sysmonenrich`: a Splunk custom search command (chunked protocol v2)
//! that adds hash reputation and process lineage to Microsoft Sysmon
//! events, and the same engine as a command-line tool.
//!
//! # Layout
//!
//! Dependencies point down only:
//!
//! ```text
//! main.rs ─► command ─► protocol      (chunks, metadata, CSV bodies; no Sysmon)
//!               │    └► sysmon        (GUIDs, hashes, field names, _raw XML; pure)
//!               │    └► lineage       (process table, ancestor chains, rules; pure)
//!               │    └► config        (default/ + local/ .conf files)
//!               └► cli                (enrich files, demo; same engine)
//! ```
//!
//! The protocol loop is synchronous: splunkd waits for each reply, so there
//! is nothing to overlap at that level. Work that waits on the network
//! (reputation, backfill) is bounded by time budgets per chunk.

pub mod cli;
pub mod command;
pub mod config;
pub mod lineage;
pub mod logging;
pub mod protocol;
pub mod reputation;
pub mod splunk;
pub mod state;
pub mod synth;
pub mod sysmon;
