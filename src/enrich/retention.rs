//! End-of-search housekeeping of the state store: every table that
//! searches grow is held to its bounds here, after the last reply, so a
//! search pays for it once and never mid-stream.
//!
//! - the process table: retention by age and a row cap;
//! - the reputation cache: answers past their TTL are deleted (a lookup
//!   already ignores them, but they would stay on disk for ever), then a
//!   row cap, dropping the answers closest to expiry first;
//! - the pending queue: a row cap, dropping the oldest first (a queue
//!   longer than the providers' daily quota can work off only grows).
//!
//! Every step is one short transaction; a step that fails (a locked or
//! full store) is logged and ends the housekeeping, since the next steps
//! would wait on the same lock.

use crate::config::settings::Settings;
use crate::state::{Result, StateStore};

/// Runs every bound of `settings.state` once (see the module docs).
pub fn maintain(state: &StateStore, settings: &Settings) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let s = &settings.state;
    // (what was done, what failed, the step)
    type Step<'a> = (&'a str, &'a str, &'a dyn Fn() -> Result<u64>);
    let steps: [Step; 4] = [
        (
            "processes pruned from the process table",
            "pruning the process table",
            &|| {
                state.prune_processes(
                    now,
                    s.process_retention.as_secs() as i64,
                    s.process_max_rows,
                )
            },
        ),
        (
            "expired answers purged from the reputation cache",
            "purging the reputation cache",
            &|| state.cache_purge_expired(now),
        ),
        (
            "answers trimmed from the reputation cache ([state] cache_max_rows)",
            "trimming the reputation cache",
            &|| state.cache_trim(s.cache_max_rows),
        ),
        (
            "hashes trimmed from the pending queue ([state] pending_max_rows)",
            "trimming the pending queue",
            &|| state.pending_trim(s.pending_max_rows),
        ),
    ];
    for (done, doing, step) in steps {
        match step() {
            Ok(0) => {}
            Ok(n) => log::info!("state: {n} {done}"),
            Err(e) => {
                // The next steps would wait on the same lock.
                log::warn!("{doing} failed: {e}; state housekeeping stopped");
                return;
            }
        }
    }
    if let Err(e) = state.gc_writers() {
        log::warn!("forgetting old searches of the process table failed: {e}");
    }
}
