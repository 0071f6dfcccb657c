//! The enrichment engine: rows in, rows with hash, reputation and lineage
//! cells out. The protocol command and the CLI both drive it.

pub mod backfill;
mod backfill_sigma;
mod chunk;
pub mod columns;
pub mod creations;
pub mod enricher;
mod layout;
pub mod lineage_composer;
mod lineage_writer;
mod noting;
pub mod output;
pub mod persist;
pub mod rep_store;
mod reply;
pub mod retention;
pub mod session;
pub mod shared;
pub mod sigma;
mod sigma_pool;
pub mod state_source;
pub mod stats;

pub use enricher::{Context, Enricher};
pub use stats::Stats;
