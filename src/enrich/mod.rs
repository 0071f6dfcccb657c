//! The enrichment engine: rows in, rows with hash, reputation and lineage
//! cells out. The protocol command and the CLI both drive it.

pub mod cells;
mod chunk;
pub mod columns;
pub mod creations;
pub mod enricher;
mod layout;
mod lineage_cells;
pub mod output;
pub mod persist;
pub mod rep_store;
mod reply;
pub mod session;
pub mod sigma;
pub mod state_source;

pub use enricher::{Context, Enricher, Stats};
