//! What one search runs against: the state store, splunkd backfill and the
//! lineage rules. Every piece is optional: a store that will not open, a
//! splunkd that is unreachable or a broken rules file costs a WARN, never
//! the search.

use super::args::Options;
use super::enrich::Context;
use super::rep_store::SharedState;
use super::serve::ServeConfig;
use crate::config::conf::ConfFile;
use crate::config::settings::Settings;
use crate::lineage::Rules;
use crate::protocol::metadata::SearchInfo;
use crate::reputation::{ApiKeys, MemoryStore, ReputationStore, SearchOptions, Service};
use crate::splunk::backfill::SplunkBackfill;
use crate::splunk::{Client, Splunkd};
use crate::state::{StateOptions, StateStore};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the state database lives.
pub fn state_path(config: &ServeConfig) -> Option<PathBuf> {
    config.settings.state.path.clone().or_else(|| {
        config
            .splunk_home
            .as_ref()
            .map(|h| h.join("var/lib/sysmonenrich/state.db"))
    })
}

/// Opens what the search needs; returns it with warnings for the user.
pub fn context(config: &ServeConfig, options: &Options, si: &SearchInfo) -> (Context, Vec<String>) {
    let mut warnings = Vec::new();
    let mut ctx = Context::default();
    let wants_state = config.settings.state.enabled && (options.lineage || options.reputation);
    if let (true, Some(path)) = (wants_state, state_path(config)) {
        let opts = StateOptions {
            busy_timeout: config.settings.state.busy_timeout,
        };
        match StateStore::open(&path, &opts) {
            Ok(store) => ctx.state = Some(Arc::new(store)),
            Err(e) => {
                let text = format!("sysmonenrich: state store unavailable ({e}); running without cache and process table");
                log::warn!("{text}");
                warnings.push(text);
            }
        }
    }
    if options.reputation {
        ctx.reputation = reputation(config, options, si, ctx.state.clone(), &mut warnings);
    }
    if options.lineage {
        ctx.rules = Some(rules(config, &mut warnings));
        if options.backfill && !si.splunkd_uri.is_empty() && !si.session_key.is_empty() {
            let splunkd = Splunkd {
                uri: si.splunkd_uri.clone(),
                session_key: si.session_key.clone(),
                owner: si.username.clone(),
                app: si.app.clone(),
                insecure_loopback: config.settings.splunkd_insecure_loopback,
            };
            match Client::new(splunkd) {
                Ok(client) => {
                    ctx.backfill = Some(SplunkBackfill::new(
                        client,
                        config.settings.backfill.clone(),
                    ))
                }
                Err(e) => warnings.push(format!("sysmonenrich: backfill disabled: {e}")),
            }
        }
    }
    (ctx, warnings)
}

/// The reputation service of one search: shared store, local list, keys.
pub fn reputation(
    config: &ServeConfig,
    options: &Options,
    si: &SearchInfo,
    state: Option<Arc<StateStore>>,
    warnings: &mut Vec<String>,
) -> Option<Service> {
    let store: Arc<dyn ReputationStore> = match state {
        Some(s) => Arc::new(SharedState(s)),
        None => {
            if options.providers.iter().any(|p| p != "local") {
                warnings.push(
                    "sysmonenrich: no state store: reputation answers are not cached and quotas are counted for this search only"
                        .to_string(),
                );
            }
            Arc::new(MemoryStore::new())
        }
    };
    let mut settings = config.settings.reputation.clone();
    if settings.local_list.is_none() {
        settings.local_list = config
            .app_dir
            .as_ref()
            .map(|d| d.join("lookups/sysmonenrich_reputation_local.csv"))
            .filter(|p| p.is_file());
    }
    let search = SearchOptions {
        providers: options.providers.clone(),
        max_lookups: options.max_lookups,
        lookup_budget: options.lookup_budget,
        refresh: options.refresh,
    };
    let mut builder = Service::builder(settings, search, store);
    if si.splunkd_uri.is_empty() {
        // Outside Splunk (CLI): keys from the environment.
        builder = builder.keys(ApiKeys::from_env());
    }
    match builder.build() {
        Ok(mut svc) => {
            if !si.splunkd_uri.is_empty() && !si.session_key.is_empty() {
                // Its warning comes back through `Service::warnings`.
                let _ = svc.load_splunkd_keys(&si.splunkd_uri, &si.session_key);
            }
            Some(svc)
        }
        Err(e) => {
            warnings.push(format!(
                "sysmonenrich: reputation disabled for this search: {e}"
            ));
            None
        }
    }
}

fn rules(config: &ServeConfig, warnings: &mut Vec<String>) -> Rules {
    let loaded = match &config.app_dir {
        Some(dir) => ConfFile::load(dir, "lineage_rules")
            .map_err(|e| e.to_string())
            .and_then(|conf| {
                if conf.is_empty() {
                    Rules::builtin().map_err(|e| e.to_string())
                } else {
                    Rules::from_conf(&conf).map_err(|e| e.to_string())
                }
            }),
        None => Rules::builtin().map_err(|e| e.to_string()),
    };
    loaded.unwrap_or_else(|e| {
        warnings.push(format!(
            "sysmonenrich: lineage rules not loaded ({e}); no lineage_flags this search"
        ));
        Rules::empty()
    })
}

/// End-of-search housekeeping: retention and size caps.
pub fn maintain(state: &StateStore, settings: &Settings) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let s = &settings.state;
    match state.prune_processes(
        now,
        s.process_retention.as_secs() as i64,
        s.process_max_rows,
    ) {
        Ok(0) => {}
        Ok(n) => log::info!("pruned {n} processes from the process table"),
        Err(e) => log::warn!("pruning the process table failed: {e}"),
    }
}
