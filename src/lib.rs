//! `sysmonenrich`: a Splunk custom search command (chunked protocol v2)
//! that adds hash reputation and process lineage to Microsoft Sysmon
//! events, and the same engine as a command-line tool.
//!
//! # Layout
//!
//! `main.rs` owns the process: it picks the mode (a subcommand or a
//! terminal: the CLI; otherwise the protocol on stdin/stdout), starts
//! logging and hands stdout over as a plain file. Below it, dependencies
//! point down only (each module may use any module drawn lower; modules
//! side by side not each other). `tests/layering.rs` reads this map and
//! fails on any import that points up, so it is drawn from the imports:
//!
//! ```text
//! main.rs ─┬► cli          subcommands: enrich files, demo, tree, state, keys, apps, search
//!          └► command      the protocol conversation (getinfo, execute), nothing else
//!               (neither imports the other; both drive:)
//!             enrich       the engine: Enricher, lineage cells, output, the per-search
//!                          Setup/context; the ancestor sources that are not
//!                          lineage's own (state, splunkd backfill with Sigma on
//!                          what it finds) and the adapters of state to reputation;
//!                          `enrich::shared`: the KV store tier a search head
//!                          cluster shares (documents, reads, writes)
//!             config       settings (`default/` + `local/` .conf), search options, paths
//!             reputation   providers, cache, quotas, keys (value types from state)
//!             splunk       the one splunkd REST client: login, export, storage/passwords,
//!                          server info, KV store collections (a pure client: no
//!                          lineage, no engine)
//!             state        SQLite store (process table, cache, queue, quota ledger,
//!                          circuit records)
//!             circuit      breakers for unreachable providers and splunkd
//!             http         what every HTTP client shares (user agent, loopback rule,
//!                          error texts, capped bodies)
//!             sigma        Sigma rules: load, compile, match (pure; reads rule files)
//!             lineage      process table, ancestor chains, rules (pure; reads rule
//!                          files with the .conf parser below)
//!             config::conf the .conf parser (a leaf: imports nothing of the crate)
//!             synth        realistic generated Sysmon events (demo, benches, tests)
//!             protocol     chunks, metadata, CSV bodies, `writev` replies (no Sysmon)
//!             sysmon       GUIDs, hashes, field names, `_raw` XML (pure)
//!             logging      the log file, rotation, peak memory
//!             platform     where Linux and Windows differ (a leaf)
//!             digest       the stable 64-bit digest stored across builds (a leaf)
//!             calendar     dates and day numbers, UTC (a leaf)
//! ```
//!
//! The protocol loop is synchronous: splunkd waits for each reply, so there
//! is nothing to overlap at that level. Work that waits on the network
//! (reputation, backfill) is bounded by time budgets per chunk.

pub mod calendar;
pub mod circuit;
pub mod cli;
pub mod command;
pub mod config;
pub mod digest;
pub mod enrich;
pub mod http;
pub mod lineage;
pub mod logging;
pub mod platform;
pub mod protocol;
pub mod reputation;
pub mod sigma;
pub mod splunk;
pub mod state;
pub mod synth;
pub mod sysmon;
