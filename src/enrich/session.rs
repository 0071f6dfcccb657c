//! What one search runs against: the state store, splunkd backfill and the
//! lineage rules. Every piece is optional: a store that will not open, a
//! splunkd that is unreachable or a broken rules file costs a WARN, never
//! the search.

use super::backfill::SplunkBackfill;
use super::enricher::Context;
use super::rep_store::SharedState;
use super::shared::rep::TieredStore;
use super::shared::SharedTier;
use crate::circuit::Breaker;
use crate::config::conf::ConfFile;
use crate::config::options::Options;
use crate::config::paths::Paths;
use crate::config::settings::Settings;
use crate::lineage::Rules;
use crate::protocol::metadata::SearchInfo;
use crate::reputation::{ApiKeys, MemoryStore, ReputationStore, SearchOptions, Service};
use crate::splunk::{namespace, Client, Target};
use crate::state::{StateOptions, StateStore, Writer};
use std::sync::Arc;

/// What every search of one run starts from: the protocol command builds it
/// once per process, the CLI once per run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Everything from `sysmonenrich.conf`.
    pub settings: Settings,
    /// `SPLUNK_HOME`, the app folder (for `lineage_rules.conf` and the local
    /// reputation list), and for a person's run their home.
    pub paths: Paths,
    /// Problems found while loading the settings, shown once.
    pub warnings: Vec<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            settings: Settings::builtin(),
            paths: Paths::default(),
            warnings: Vec::new(),
        }
    }
}

impl Setup {
    /// The settings of the app in `paths.app_dir` (built-in defaults for
    /// anything missing or broken; the problems in `warnings`).
    pub fn load(paths: Paths) -> Setup {
        let (settings, loaded) = Settings::load(paths.app_dir.as_deref());
        Setup {
            settings,
            paths,
            warnings: loaded.warnings,
        }
    }
}

/// Opens what the search needs; returns it with warnings for the user.
/// The CLI's way: [`local_context`] then [`connect`] at once.
pub fn context(config: &Setup, options: &Options, si: &SearchInfo) -> (Context, Vec<String>) {
    let (mut ctx, mut warnings) = local_context(config, options, si);
    let connected = connect(config, options, si, ctx.state.clone(), &mut warnings);
    ctx.reputation = connected.reputation;
    ctx.backfill = connected.backfill;
    (ctx, warnings)
}

/// What the search needs from this host only (state store, Sigma and
/// lineage rules): all the getinfo reply depends on, and nothing that can
/// wait on splunkd.
pub fn local_context(config: &Setup, options: &Options, si: &SearchInfo) -> (Context, Vec<String>) {
    let mut warnings = Vec::new();
    let mut ctx = Context {
        origin: Writer {
            sid: si.sid.clone(),
            user: si.username.clone(),
        },
        ..Context::default()
    };
    let wants_state = config.settings.state.enabled && (options.lineage || options.reputation);
    if let (true, Some(path)) = (
        wants_state,
        config.paths.state_db(config.settings.state.path.as_deref()),
    ) {
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
    if options.sigma {
        ctx.sigma = sigma_rules(config, options, &mut warnings);
    }
    if options.lineage {
        ctx.rules = Some(rules(config, &mut warnings));
    }
    (ctx, warnings)
}

/// The parts of a search that may call splunkd.
#[derive(Default)]
pub struct Connected {
    /// Reputation, with the API keys from splunkd's credential store.
    pub reputation: Option<Service>,
    /// Backfill of missing ancestors through splunkd's export.
    pub backfill: Option<SplunkBackfill>,
    /// The KV store tier a search head cluster shares (`[state] shared`).
    pub shared: Option<Arc<SharedTier>>,
}

/// Builds what calls splunkd (the command does it after the getinfo
/// reply, so that reply never waits on splunkd). Every call shares one
/// `splunkd` circuit kept in the state database with a short budget
/// ([`crate::splunk::client::SEARCH_CALL_BUDGET`]): the first call that
/// times out or fails opens it, the search's other calls and the next
/// searches skip splunkd at once, and the search gets one WARN naming
/// splunkd and the cause.
pub fn connect(
    config: &Setup,
    options: &Options,
    si: &SearchInfo,
    state: Option<Arc<StateStore>>,
    warnings: &mut Vec<String>,
) -> Connected {
    let with_splunkd = !si.splunkd_uri.is_empty() && !si.session_key.is_empty();
    let splunkd = splunkd_circuit(state.as_ref());
    if with_splunkd && (options.reputation || (options.lineage && options.backfill)) {
        if let Some(text) = splunkd.take_skip_warning() {
            // Known unreachable: no API keys from it, no cluster size, no
            // backfill this search, at no cost.
            let text = format!("sysmonenrich: {text}");
            log::warn!("{text}");
            warnings.push(text);
        }
    }
    let mut connected = Connected::default();
    if options.reputation || options.lineage {
        connected.shared = super::shared::setup::shared_tier(
            &config.settings,
            si,
            state.as_ref(),
            &splunkd,
            warnings,
        );
    }
    if options.reputation {
        connected.reputation = reputation(
            config,
            options,
            si,
            state,
            &splunkd,
            warnings,
            connected.shared.clone(),
        );
    }
    if options.lineage && options.backfill && with_splunkd && !splunkd.is_open() {
        let target = Target {
            namespace: namespace(
                Some(or(&si.username, "nobody")),
                Some(or(&si.app, "search")),
            ),
            insecure_loopback: config.settings.splunkd_insecure_loopback,
            connect_timeout: crate::splunk::client::SEARCH_CONNECT_BUDGET,
            ..Target::new(&si.splunkd_uri)
        };
        match Client::new(&target) {
            Ok(client) => {
                connected.backfill = Some(backfill(
                    client.with_session_key(&si.session_key),
                    &config.settings,
                    splunkd,
                ))
            }
            Err(e) => warnings.push(format!("sysmonenrich: backfill disabled: {e}")),
        }
    }
    connected
}

/// The run's one `splunkd` circuit, its state kept in the state database
/// (when it opened) so that the next search knows splunkd is down without
/// waiting on it again.
pub fn splunkd_circuit(state: Option<&Arc<StateStore>>) -> Arc<Breaker> {
    let ledger = state.map(|s| Arc::clone(s) as Arc<dyn crate::circuit::CircuitLedger>);
    Arc::new(Breaker::new("splunkd", ledger, crate::circuit::now_secs()))
}

/// Backfill of missing ancestors through a ready splunkd client, bounded by
/// the `[backfill]` settings: the one set-up the command (after getinfo)
/// and `search --enrich` (with the client it searched with) share, so both
/// are bounded and skip a down splunkd alike.
pub fn backfill(client: Client, settings: &Settings, splunkd: Arc<Breaker>) -> SplunkBackfill {
    SplunkBackfill::new(client, settings.backfill.clone(), splunkd)
}

/// Logs and keeps the WARN of a splunkd call that opened the circuit.
fn splunkd_warning(text: Option<String>, warnings: &mut Vec<String>) {
    if let Some(text) = text {
        let text = format!("sysmonenrich: {text}");
        log::warn!("{text}");
        warnings.push(text);
    }
}

/// `s`, or `default` when it is empty.
fn or<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() {
        default
    } else {
        s
    }
}

/// The reputation service of one search: shared store (with the cache's
/// shared tier behind the local one when given), local list, keys.
pub fn reputation(
    config: &Setup,
    options: &Options,
    si: &SearchInfo,
    state: Option<Arc<StateStore>>,
    splunkd: &Breaker,
    warnings: &mut Vec<String>,
    shared: Option<Arc<SharedTier>>,
) -> Option<Service> {
    let store: Arc<dyn ReputationStore> = match (state.clone(), shared) {
        (Some(s), Some(shared)) => Arc::new(TieredStore {
            local: SharedState(s),
            shared,
        }),
        (Some(s), None) => Arc::new(SharedState(s)),
        (None, _) => {
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
    share_quotas(
        &mut settings,
        config,
        options,
        si,
        state.as_deref(),
        splunkd,
        warnings,
    );
    if settings.local_list.is_none() {
        settings.local_list = config
            .paths
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
    if let Some(state) = &state {
        builder = builder.circuits(state.clone());
    }
    if si.splunkd_uri.is_empty() {
        // Outside Splunk (CLI): keys from the environment.
        builder = builder.keys(ApiKeys::from_env());
    }
    match builder.build() {
        Ok(mut svc) => {
            if !si.splunkd_uri.is_empty() && !si.session_key.is_empty() {
                // Its warning comes back through `Service::warnings`.
                if splunkd.is_open() {
                    let until = splunkd_open_until(state.as_deref())
                        .map(|t| format!(" (circuit open until {t})"))
                        .unwrap_or_default();
                    let _ = svc.splunkd_unreachable(&format!("splunkd is unreachable{until}"));
                } else {
                    let (_, opened) =
                        svc.load_splunkd_keys_counted(&si.splunkd_uri, &si.session_key, splunkd);
                    splunkd_warning(opened, warnings);
                }
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

/// Divides the providers' quotas among the search heads that share them
/// (`[provider:*] quota_share`; see `reputation::settings::QuotaShare`).
fn share_quotas(
    settings: &mut crate::reputation::Settings,
    config: &Setup,
    options: &Options,
    si: &SearchInfo,
    state: Option<&StateStore>,
    splunkd: &Breaker,
    warnings: &mut Vec<String>,
) {
    let used = |name: &str| {
        options
            .providers
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
    };
    let needs_count = [
        ("virustotal", &settings.virustotal),
        ("hashlookup", &settings.hashlookup),
        ("malwarebazaar", &settings.malwarebazaar),
    ]
    .iter()
    .any(|(name, p)| {
        used(name)
            && p.quota_share == crate::reputation::QuotaShare::Auto
            && (p.per_minute > 0 || p.per_day > 0)
    });
    let members = if needs_count
        && !si.splunkd_uri.is_empty()
        && !si.session_key.is_empty()
        && !splunkd.is_open()
    {
        let (call_timeout, connect_timeout) =
            crate::splunk::client::search_budgets(settings.request_timeout);
        let target = Target {
            insecure_loopback: config.settings.splunkd_insecure_loopback,
            call_timeout,
            connect_timeout,
            ..Target::new(&si.splunkd_uri)
        };
        let (n, opened) =
            crate::splunk::info::search_heads_cached(&target, &si.session_key, state, splunkd);
        splunkd_warning(opened, warnings);
        n
    } else {
        1
    };
    settings.virustotal = settings.virustotal.shared(members);
    settings.hashlookup = settings.hashlookup.shared(members);
    settings.malwarebazaar = settings.malwarebazaar.shared(members);
}

/// When splunkd's circuit is open (see `crate::circuit`), until when.
fn splunkd_open_until(state: Option<&StateStore>) -> Option<String> {
    let record = state?.circuit("splunkd").ok()??;
    (record.open_until > crate::circuit::now_secs())
        .then(|| crate::circuit::clock_time(record.open_until))
}

/// The lineage rules of the app in `app_dir` (`default/` + `local/`
/// `lineage_rules.conf`), else the built-in copy of the shipped file.
pub fn app_rules(app_dir: Option<&std::path::Path>) -> Result<Rules, String> {
    match app_dir {
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
    }
}

fn rules(config: &Setup, warnings: &mut Vec<String>) -> Rules {
    app_rules(config.paths.app_dir.as_deref()).unwrap_or_else(|e| {
        warnings.push(format!(
            "sysmonenrich: lineage rules not loaded ({e}); no lineage_flags this search"
        ));
        Rules::empty()
    })
}

/// Skipped rules named one by one up to this many; past it, one warning
/// per reason (a SigmaHQ release skips a few dozen for the same reasons).
const SKIPS_NAMED: usize = 5;

/// The search's Sigma rules: `None` when none are configured or none load.
/// Every problem is a warning; none fails the search.
pub fn sigma_rules(
    config: &Setup,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Option<Arc<crate::sigma::RuleSet>> {
    let conf = &config.settings.sigma;
    let app_dir = config.paths.app_dir.as_deref();
    // The shipped default names a folder a fresh install does not have:
    // its absence is "no rules", not a problem.
    let paths: Vec<std::path::PathBuf> = conf
        .rule_paths(app_dir)
        .into_iter()
        .zip(&conf.rules)
        .filter(|(p, given)| p.exists() || given.as_path() != std::path::Path::new("local/sigma"))
        .map(|(p, _)| p)
        .collect();
    if paths.is_empty() {
        return None;
    }
    let filter = crate::sigma::Filter {
        min_level: options.sigma_min_level.or(conf.min_level),
        status: conf.status.clone(),
        disabled_ids: conf.disabled_ids.iter().cloned().collect(),
        memory_mb: conf
            .memory_mb
            .unwrap_or(crate::sigma::DEFAULT_SET_MEMORY_MB),
    };
    let started = std::time::Instant::now();
    let report = crate::sigma::RuleSet::load(&paths, &filter);
    log::info!(
        "sigma: {} rules loaded in {:.0} ms ({} skipped, {} filtered out, {} problems)",
        report.rules.len(),
        started.elapsed().as_secs_f64() * 1000.0,
        report.skipped.len(),
        report.filtered,
        report.problems.len()
    );
    let mut warn = |text: String| {
        log::warn!("{text}");
        warnings.push(text);
    };
    for p in &report.problems {
        warn(format!(
            "sysmonenrich: sigma rules: {}: {}",
            p.path.display(),
            p.message
        ));
    }
    if report.skipped.len() <= SKIPS_NAMED {
        for s in &report.skipped {
            warn(format!(
                "sysmonenrich: sigma rule skipped: {}: {}",
                s.path.display(),
                s.reason
            ));
        }
    } else {
        for g in report.skipped_by_reason() {
            let examples: Vec<String> =
                g.examples.iter().map(|p| p.display().to_string()).collect();
            warn(format!(
                "sysmonenrich: {} sigma rules skipped: {} (e.g. {})",
                g.count,
                g.reason,
                examples.join(", ")
            ));
        }
    }
    if report.rules.is_empty() {
        return None;
    }
    Some(Arc::new(report.rules))
}

pub use super::retention::maintain;
