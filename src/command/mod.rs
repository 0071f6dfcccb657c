//! The protocol command: the conversation with splunkd (getinfo, then
//! execute chunks) around the enrichment engine. `main.rs` decides that a
//! run is one; [`crate::enrich`] does the work.

pub mod serve;

pub use serve::{serve, Outcome};
