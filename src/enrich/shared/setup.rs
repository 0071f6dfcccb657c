//! Whether a search uses the shared tier, and its housekeeping.
//!
//! `[state] shared = auto` uses the KV store when splunkd reports it
//! `ready` and this search head is a cluster member (`shc_member`): on a
//! single search head the local database already is all there is to
//! share. `kvstore` drops the membership condition. Membership is read
//! first from this Splunk's own `server.conf` (`[shclustering]`), so a
//! single search head asks splunkd nothing for the tier; a member then
//! confirms it, with the KV store's status, from the server info the quota
//! share reads too, cached as a fact in the state database.

use super::tier::SharedTier;
use crate::circuit::Breaker;
use crate::config::settings::{Settings, SharedMode};
use crate::protocol::metadata::SearchInfo;
use crate::splunk::kvstore::KvStore;
use crate::splunk::{Client, Target};
use crate::state::StateStore;
use std::sync::Arc;

/// Why the tier is (not) used, for tests and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Used: the KV store is ready (and, for `auto`, this is a member).
    Use,
    /// Not used, for this reason.
    Skip(String),
}

/// What `mode` decides for a KV store status and roles.
pub fn decide(mode: SharedMode, info: &crate::splunk::kvstore::KvStatus) -> Decision {
    let status = info.kv_store_status.as_deref().unwrap_or("not reported");
    match mode {
        SharedMode::Off => Decision::Skip("[state] shared = off".into()),
        SharedMode::Auto if !info.shc_member() => {
            Decision::Skip("not a search head cluster member (shared = auto)".into())
        }
        _ if !info.ready() => Decision::Skip(format!("KV store status: {status}")),
        _ => Decision::Use,
    }
}

/// The search's shared tier, or `None` (off, no splunkd, not a member,
/// KV store not ready, or its circuit open: then one WARN in `warnings`).
///
/// With `shared = auto` only a search head whose `server.conf` makes it a
/// cluster member gets this far (see the module docs), so a single search
/// head never asks; a member asks once an hour (the cached server info).
pub fn shared_tier(
    settings: &Settings,
    si: &SearchInfo,
    state: Option<&Arc<StateStore>>,
    splunkd: &Breaker,
    warnings: &mut Vec<String>,
) -> Option<Arc<SharedTier>> {
    let conf = &settings.state;
    if conf.shared == SharedMode::Off
        || state.is_none()
        || si.splunkd_uri.is_empty()
        || si.session_key.is_empty()
        || splunkd.is_open()
        || conf.shared_budget.is_zero()
    {
        return None;
    }
    if conf.shared == SharedMode::Auto
        && !crate::config::paths::splunk_home()
            .is_some_and(|h| crate::config::paths::shc_member_configured(&h))
    {
        return None;
    }
    let budget = conf.shared_budget;
    let (call, connect) = crate::splunk::client::search_budgets(budget);
    let target = Target {
        insecure_loopback: settings.splunkd_insecure_loopback,
        call_timeout: call,
        connect_timeout: connect,
        ..Target::new(&si.splunkd_uri)
    };
    let (info, opened) = crate::splunk::info::server_info_cached(
        &target,
        &si.session_key,
        state.map(|s| &**s),
        splunkd,
    );
    if let Some(text) = opened {
        let text = format!("sysmonenrich: {text}");
        log::warn!("{text}");
        warnings.push(text);
    }
    let info = match info {
        Ok(i) => i,
        Err(e) => {
            log::info!("shared tier: cannot read the KV store status ({e}); this search uses the local state only");
            return None;
        }
    };
    match decide(conf.shared, &info) {
        Decision::Use => {}
        Decision::Skip(why) => {
            if info.shc_member() || conf.shared == SharedMode::KvStore {
                log::info!("shared tier: not used ({why}); this search uses the local state only");
            }
            return None;
        }
    }
    let ledger = state.map(|s| Arc::clone(s) as Arc<dyn crate::circuit::CircuitLedger>);
    let breaker = Breaker::new("kvstore", ledger, crate::circuit::now_secs());
    if breaker.is_open() {
        if let Some(text) = breaker.take_skip_warning() {
            let text = format!("sysmonenrich: shared tier (KV store) {text}");
            log::warn!("{text}");
            warnings.push(text);
        }
        return None;
    }
    let reader = match Client::new(&target) {
        Ok(c) => c.with_session_key(&si.session_key),
        Err(e) => {
            log::info!("shared tier: {e}; this search uses the local state only");
            return None;
        }
    };
    // Its own client, not `duplicate()`: a pooled connection belongs to
    // the runtime that opened it, and the reader's runtime only runs
    // while the search's thread waits in a call, so the writer thread
    // would wait on a connection nobody drives (found by the throughput
    // bench against a keep-alive splunkd: "runtime dropped the dispatch
    // task" after the whole budget).
    let writer = match Client::new(&target) {
        Ok(c) => c.with_session_key(&si.session_key),
        Err(e) => {
            log::info!("shared tier: {e}; this search uses the local state only");
            return None;
        }
    };
    log::info!(
        "shared tier: KV store collections in use (kvStoreStatus ready{}); budget {:?} per search",
        if info.shc_member() {
            ", search head cluster member"
        } else {
            ""
        },
        budget
    );
    Some(SharedTier::start(
        KvStore::new(reader),
        KvStore::new(writer),
        budget,
        Arc::new(breaker),
    ))
}

/// The fact that holds back the next KV store housekeeping on this host.
const PRUNED_FACT: &str = "kvstore_pruned";
/// How often a host prunes the shared collections: every member runs
/// searches, and one delete per hour per member is plenty.
const PRUNE_EVERY: i64 = 3600;

/// Deletes, at most once an hour per host, the process documents past
/// `[state] process_retention` and the expired answers.
pub fn maintain(tier: &SharedTier, state: &StateStore, settings: &Settings) {
    let now = crate::circuit::now_secs();
    if !tier.usable() || state.fact(PRUNED_FACT, now).ok().flatten().is_some() {
        return;
    }
    if let Err(e) = state.fact_put(PRUNED_FACT, "1", now + PRUNE_EVERY) {
        log::debug!("shared tier: cannot record the housekeeping time: {e}");
    }
    tier.prune(now, settings.state.process_retention.as_secs() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splunk::kvstore::KvStatus;

    fn info(status: Option<&str>, roles: &[&str]) -> KvStatus {
        KvStatus {
            kv_store_status: status.map(str::to_string),
            server_roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn auto_needs_a_ready_kv_store_and_a_cluster_member() {
        let member = info(Some("ready"), &["search_head", "shc_member"]);
        let single = info(Some("ready"), &["search_head"]);
        let starting = info(Some("starting"), &["shc_member"]);
        let silent = info(None, &["shc_member"]);
        assert_eq!(decide(SharedMode::Auto, &member), Decision::Use);
        assert!(matches!(
            decide(SharedMode::Auto, &single),
            Decision::Skip(_)
        ));
        assert!(
            matches!(decide(SharedMode::Auto, &starting), Decision::Skip(w) if w.contains("starting"))
        );
        assert!(
            matches!(decide(SharedMode::Auto, &silent), Decision::Skip(w) if w.contains("not reported"))
        );
        assert_eq!(decide(SharedMode::KvStore, &single), Decision::Use);
        assert!(matches!(
            decide(SharedMode::KvStore, &starting),
            Decision::Skip(_)
        ));
        assert!(matches!(
            decide(SharedMode::Off, &member),
            Decision::Skip(_)
        ));
    }
}
