//! `sysmonenrich.conf` → typed settings for every module.
//!
//! The app ships every setting with its default in
//! `default/sysmonenrich.conf` (documented in
//! `README/sysmonenrich.conf.spec`); admins override in `local/`. The same
//! defaults are compiled in, so the binary behaves identically when run
//! outside an app folder (CLI, tests) and a missing or broken conf file
//! never stops a search: problems become warnings and the default holds.

use super::conf::ConfFile;
use super::options::{self as args, Options};
use crate::logging::Rotation;
use crate::protocol::Limits;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shipped defaults, compiled in.
pub const DEFAULT_CONF: &str = include_str!("../../default/sysmonenrich.conf");

/// Limits and shape of the backfill searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillSettings {
    /// Searches this run may start, in total.
    pub max_searches: u32,
    /// Searches one chunk may start (one per tree level).
    pub max_searches_per_chunk: u32,
    /// Wall-clock time this run may spend waiting for them, in total.
    pub time_budget: Duration,
    /// GUIDs per search (SPL gets long; splunkd caps URI/form sizes).
    pub batch: usize,
    /// How far back to look for a parent (`earliest_time`), e.g. `-30d`.
    pub earliest: String,
    /// Base search; normally the app's macro, which users edit.
    pub base_search: String,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            max_searches: 200,
            max_searches_per_chunk: 8,
            time_budget: Duration::from_secs(30),
            batch: 500,
            earliest: "-30d".to_string(),
            base_search: "`sysmonenrich_index`".to_string(),
        }
    }
}

/// State store settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// Use the SQLite store at all.
    pub enabled: bool,
    /// Database path; `None` = `$SPLUNK_HOME/var/lib/sysmonenrich/state.db`.
    pub path: Option<PathBuf>,
    /// How long a statement waits for another search's lock.
    pub busy_timeout: Duration,
    /// Processes not seen for this long are pruned.
    pub process_retention: Duration,
    /// At most this many processes are kept (oldest pruned first).
    pub process_max_rows: u64,
    /// Command lines longer than this are stored cut (0 = whole).
    pub command_line_max_bytes: usize,
    /// At most this many reputation answers are cached (0 = no cap).
    pub cache_max_rows: u64,
    /// At most this many hashes wait in the pending queue (0 = no cap).
    pub pending_max_rows: u64,
    /// Whether the KV store tier is used (`[state] shared`).
    pub shared: SharedMode,
    /// Longest all KV store calls of one search may take together.
    pub shared_budget: Duration,
}

/// `[state] shared`: when a search also reads and writes the KV store
/// collections a search head cluster shares (issue 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedMode {
    /// When splunkd reports the KV store ready and the search head is a
    /// cluster member: the one case where members would otherwise differ.
    #[default]
    Auto,
    /// Whenever the KV store is ready, a single search head included.
    KvStore,
    /// Never: the local tier only.
    Off,
}

/// Lineage engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageConf {
    /// In-memory process table capacity (entries).
    pub memory_processes: usize,
    /// … and the bytes its entries may hold together.
    pub memory_bytes: usize,
    /// Tree levels backfilled per chunk at most.
    pub max_rounds: usize,
    /// Longest value lineage writes about an ancestor (image, command
    /// line, name), its cut mark included; 0 = whole.
    pub cell_value_max_bytes: usize,
}

/// `[sigma]`: which Sigma rules the command runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SigmaConf {
    /// Rule files and directories, relative to the app directory or
    /// absolute. The shipped default, `local/sigma`, is empty until an
    /// admin installs a SigmaHQ release there (the rules are DRL 1.1 and
    /// not ours to ship).
    pub rules: Vec<PathBuf>,
    /// Only rules at this level or above (`None`: all).
    pub min_level: Option<crate::sigma::Level>,
    /// Only rules with one of these statuses (lower case; empty: all).
    pub status: Vec<String>,
    /// Rule ids never loaded (a noisy rule is switched off here, not by
    /// editing SigmaHQ's files, so an update does not bring it back).
    pub disabled_ids: Vec<String>,
    /// The rule set's estimated memory budget in MiB (`None`: the
    /// engine's default); rules past it are skipped and named.
    pub memory_mb: Option<u64>,
    /// Threads that evaluate a chunk's rows (at most the machine's cores;
    /// 0 from `Default`, like 1: the search's own thread only).
    pub threads: usize,
}

/// `[sigma] threads` unless set. One: measured on the shared 2-core test
/// machine while other builds ran (load 4–5), two threads made the diverse
/// stream's search slower in wall time (10.8 s against 7.0 s, 200,000
/// rows) and cost 15% more CPU (each thread reads the whole chunk). A
/// search head's cores are usually busy with other searches; an admin with
/// idle cores opts in.
pub const DEFAULT_SIGMA_THREADS: u64 = 1;

impl SigmaConf {
    /// The rule paths, relative ones resolved against `app_dir`.
    pub fn rule_paths(&self, app_dir: Option<&Path>) -> Vec<PathBuf> {
        self.rules
            .iter()
            .map(|p| match app_dir {
                Some(d) if p.is_relative() => d.join(p),
                _ => p.clone(),
            })
            .collect()
    }
}

/// Everything the conf file sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Chunk and field caps.
    pub limits: Limits,
    /// Defaults of the search options.
    pub options: Options,
    /// State store.
    pub state: StateSettings,
    /// Lineage engine.
    pub lineage: LineageConf,
    /// Splunk backfill.
    pub backfill: BackfillSettings,
    /// Accept a loopback splunkd's self-signed certificate.
    pub splunkd_insecure_loopback: bool,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Log rotation.
    pub log_rotation: Rotation,
    /// Reputation providers, cache and quotas.
    pub reputation: crate::reputation::Settings,
    /// Sigma rules.
    pub sigma: SigmaConf,
}

/// Where the settings came from, and what was wrong with them.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Problems found (each already names file, stanza and key).
    pub warnings: Vec<String>,
}

impl Settings {
    /// The compiled-in defaults.
    pub fn builtin() -> Settings {
        let conf = ConfFile::parse(DEFAULT_CONF).unwrap_or_default();
        Settings::from_conf(&conf, &mut Vec::new())
    }

    /// Settings for the app in `app_dir` (`default/` + `local/`), falling
    /// back to the built-in defaults for anything missing or invalid.
    pub fn load(app_dir: Option<&Path>) -> (Settings, Loaded) {
        let mut warnings = Vec::new();
        let mut conf = ConfFile::parse(DEFAULT_CONF).unwrap_or_default();
        if let Some(dir) = app_dir {
            match ConfFile::load(dir, "sysmonenrich") {
                Ok(file) => conf.overlay(file),
                Err(e) => warnings.push(format!("sysmonenrich.conf: {e}; using defaults")),
            }
        }
        let s = Settings::from_conf(&conf, &mut warnings);
        (s, Loaded { warnings })
    }

    fn from_conf(conf: &ConfFile, warnings: &mut Vec<String>) -> Settings {
        let mut r = Reader { conf, warnings };
        let dflt = Options::default();
        let providers = r
            .string("defaults", "providers")
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                    .filter(|p| args::PROVIDERS.contains(&p.as_str()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or(dflt.providers.clone());
        let options = Options {
            lineage: r.bool("defaults", "lineage", dflt.lineage),
            reputation: r.bool("defaults", "reputation", dflt.reputation),
            backfill: r.bool("defaults", "backfill", dflt.backfill),
            providers,
            max_lookups: r.u64("defaults", "max_lookups", dflt.max_lookups),
            lookup_budget: r.duration("defaults", "lookup_budget", dflt.lookup_budget),
            max_depth: r
                .u64("defaults", "max_depth", dflt.max_depth as u64)
                .clamp(1, 1000) as usize,
            refresh: false,
            raw: r.bool("defaults", "request_raw", dflt.raw),
            fields: Default::default(),
            sigma: r.bool("defaults", "sigma", dflt.sigma),
            sigma_min_level: None,
        };
        let lim = Limits::default();
        let limits = Limits {
            max_metadata: r.u64("protocol", "max_metadata_bytes", lim.max_metadata as u64) as usize,
            max_body: r.u64("protocol", "max_chunk_bytes", lim.max_body as u64) as usize,
            max_field: r.u64("protocol", "max_field_bytes", lim.max_field as u64) as usize,
        };
        let state = StateSettings {
            enabled: r.bool("state", "enabled", true),
            path: r
                .string("state", "path")
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from),
            busy_timeout: r.duration("state", "busy_timeout", Duration::from_secs(5)),
            process_retention: r.duration(
                "state",
                "process_retention",
                Duration::from_secs(30 * 86400),
            ),
            process_max_rows: r.u64("state", "process_max_rows", 2_000_000),
            // Room for the cut note and some text; 0 keeps lines whole.
            command_line_max_bytes: match r.u64("state", "command_line_max_bytes", 32_768) {
                0 => 0,
                n => n.max(256) as usize,
            },
            cache_max_rows: r.u64("state", "cache_max_rows", 500_000),
            pending_max_rows: r.u64("state", "pending_max_rows", 50_000),
            shared: match r.string("state", "shared").as_deref().map(str::trim) {
                None | Some("") | Some("auto") => SharedMode::Auto,
                Some("kvstore") => SharedMode::KvStore,
                Some("off") => SharedMode::Off,
                Some(_) => {
                    r.warn("state", "shared", "not auto, kvstore or off");
                    SharedMode::Auto
                }
            },
            shared_budget: r.duration("state", "shared_budget", Duration::from_secs(2)),
        };
        let lineage = LineageConf {
            memory_processes: r.u64("lineage", "memory_processes", 200_000).max(1000) as usize,
            memory_bytes: (r.u64("lineage", "memory_mb", 160).clamp(8, 1 << 20) as usize) << 20,
            max_rounds: r.u64("lineage", "backfill_max_levels", 16).max(1) as usize,
            // Room for the cut mark (at most 32 bytes) and some text.
            cell_value_max_bytes: match r.u64("lineage", "cell_value_max_bytes", 4096) {
                0 => 0,
                n => n.clamp(64, u32::MAX as u64) as usize,
            },
        };
        let b = BackfillSettings::default();
        let backfill = BackfillSettings {
            max_searches: r.u64("backfill", "max_searches", u64::from(b.max_searches)) as u32,
            max_searches_per_chunk: r
                .u64(
                    "backfill",
                    "max_searches_per_chunk",
                    u64::from(b.max_searches_per_chunk),
                )
                .max(1) as u32,
            time_budget: r.duration("backfill", "time_budget", b.time_budget),
            batch: r.u64("backfill", "guids_per_search", b.batch as u64).max(1) as usize,
            earliest: r.string("backfill", "earliest").unwrap_or(b.earliest),
            base_search: r.string("backfill", "base_search").unwrap_or(b.base_search),
        };
        let level = match r
            .string("logging", "level")
            .unwrap_or_default()
            .to_ascii_uppercase()
            .as_str()
        {
            "DEBUG" => log::LevelFilter::Debug,
            "WARN" | "WARNING" => log::LevelFilter::Warn,
            "ERROR" => log::LevelFilter::Error,
            "OFF" | "NONE" => log::LevelFilter::Off,
            _ => log::LevelFilter::Info,
        };
        let rot = Rotation::default();
        let reputation = reputation_settings(&mut r);
        let sigma = sigma_settings(&mut r);
        Settings {
            sigma,
            reputation,
            limits,
            options,
            state,
            lineage,
            backfill,
            splunkd_insecure_loopback: r.bool("splunkd", "insecure_loopback", true),
            log_level: level,
            log_rotation: Rotation {
                max_bytes: r.u64("logging", "max_bytes", rot.max_bytes),
                keep: r.u64("logging", "backups", u64::from(rot.keep)) as u32,
            },
        }
    }
}

fn sigma_settings(r: &mut Reader<'_>) -> SigmaConf {
    let list = |v: Option<String>| -> Vec<String> {
        v.unwrap_or_default()
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let rules = list(r.string("sigma", "rules").or(Some("local/sigma".into())))
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let min_level = match r.string("sigma", "min_level").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match crate::sigma::Level::parse(&v) {
            Some(l) => Some(l),
            None => {
                r.warn(
                    "sigma",
                    "min_level",
                    "not informational, low, medium, high or critical",
                );
                None
            }
        },
    };
    let memory_mb = match r.u64("sigma", "memory_mb", crate::sigma::DEFAULT_SET_MEMORY_MB) {
        0 => {
            r.warn("sigma", "memory_mb", "must be at least 1");
            None
        }
        mb => Some(mb),
    };
    let threads = match r.u64("sigma", "threads", DEFAULT_SIGMA_THREADS) {
        0 => {
            r.warn("sigma", "threads", "must be at least 1");
            DEFAULT_SIGMA_THREADS
        }
        n => n.min(64),
    } as usize;
    SigmaConf {
        rules,
        min_level,
        status: list(r.string("sigma", "status"))
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        disabled_ids: list(r.string("sigma", "disabled_ids")),
        memory_mb,
        threads,
    }
}

fn reputation_settings(r: &mut Reader<'_>) -> crate::reputation::Settings {
    let d = crate::reputation::Settings::default();
    let mut provider = |name: &str, p: &crate::reputation::ProviderSettings| {
        let stanza = format!("provider:{name}");
        crate::reputation::ProviderSettings {
            base_url: r
                .string(&stanza, "base_url")
                .filter(|u| !u.is_empty())
                .unwrap_or(p.base_url.clone()),
            concurrency: r
                .u64(&stanza, "concurrency", p.concurrency as u64)
                .clamp(1, 64) as usize,
            per_minute: r.u64(&stanza, "requests_per_minute", u64::from(p.per_minute)) as u32,
            per_day: r.u64(&stanza, "requests_per_day", u64::from(p.per_day)) as u32,
            min_interval: r.duration(&stanza, "min_interval", p.min_interval),
            quota_share: match r.string(&stanza, "quota_share") {
                None => p.quota_share,
                Some(v) if v.is_empty() => p.quota_share,
                Some(v) => match crate::reputation::settings::QuotaShare::parse(&v) {
                    Some(q) => q,
                    None => {
                        r.warn(
                            &stanza,
                            "quota_share",
                            "not auto or a fraction above 0 up to 1",
                        );
                        p.quota_share
                    }
                },
            },
        }
    };
    let virustotal = provider("virustotal", &d.virustotal);
    let hashlookup = provider("hashlookup", &d.hashlookup);
    let malwarebazaar = provider("malwarebazaar", &d.malwarebazaar);
    let s = "reputation";
    crate::reputation::Settings {
        virustotal,
        hashlookup,
        malwarebazaar,
        vt_malicious_threshold: r
            .u64(
                s,
                "vt_malicious_threshold",
                u64::from(d.vt_malicious_threshold),
            )
            .max(1) as u32,
        request_timeout: r.duration(s, "request_timeout", d.request_timeout),
        max_retries: r.u64(s, "max_retries", u64::from(d.max_retries)).min(10) as u32,
        retry_base_delay: r.duration(s, "retry_base_delay", d.retry_base_delay),
        retry_max_delay: r.duration(s, "retry_max_delay", d.retry_max_delay),
        cache_ttl_found: r.duration(s, "cache_ttl_found", d.cache_ttl_found),
        cache_ttl_not_found: r.duration(s, "cache_ttl_not_found", d.cache_ttl_not_found),
        proxy: r.string("proxy", "url").filter(|u| !u.is_empty()),
        splunkd_insecure_loopback: r.bool("splunkd", "insecure_loopback", true),
        local_list: r
            .string(s, "local_list")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        pending_batch: r.u64(s, "pending_batch", d.pending_batch as u64) as usize,
        pending_max_attempts: r.u64(s, "pending_max_attempts", u64::from(d.pending_max_attempts))
            as u32,
    }
}

/// Typed reads that fall back to a default and record a warning.
struct Reader<'a> {
    conf: &'a ConfFile,
    warnings: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn string(&mut self, stanza: &str, key: &str) -> Option<String> {
        self.conf.get(stanza, key).map(|v| v.trim().to_string())
    }

    fn warn(&mut self, stanza: &str, key: &str, what: &str) {
        self.warnings.push(format!(
            "sysmonenrich.conf [{stanza}] {key}: {what}; using the default"
        ));
    }

    fn bool(&mut self, stanza: &str, key: &str, default: bool) -> bool {
        match self.conf.get_bool(stanza, key) {
            Ok(v) => v.unwrap_or(default),
            Err(_) => {
                self.warn(stanza, key, "not a boolean");
                default
            }
        }
    }

    fn u64(&mut self, stanza: &str, key: &str, default: u64) -> u64 {
        match self.conf.get_u64(stanza, key) {
            Ok(v) => v.unwrap_or(default),
            Err(_) => {
                self.warn(stanza, key, "not a whole number");
                default
            }
        }
    }

    fn duration(&mut self, stanza: &str, key: &str, default: Duration) -> Duration {
        match self.conf.get(stanza, key) {
            None => default,
            Some(v) => match args::duration(v) {
                Ok(d) => d,
                Err(_) => {
                    self.warn(stanza, key, "not a duration (10, 30s, 5m, 2h, 1d)");
                    default
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One source for defaults: the shipped file. Read with no conf at all,
    /// every key takes its fallback (the `Default` impls of `Options`,
    /// `Limits`, `BackfillSettings`, `reputation::Settings`, `Rotation`,
    /// and the values written in `from_conf`), and the result must be what
    /// `default/sysmonenrich.conf` says, key for key.
    #[test]
    fn every_fallback_equals_the_shipped_conf() {
        let mut warnings = Vec::new();
        let fallbacks = Settings::from_conf(&ConfFile::default(), &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        let shipped = Settings::builtin();
        assert_eq!(fallbacks.options, shipped.options);
        assert_eq!(fallbacks.limits, shipped.limits);
        assert_eq!(fallbacks.state, shipped.state);
        assert_eq!(fallbacks.lineage, shipped.lineage);
        assert_eq!(fallbacks.backfill, shipped.backfill);
        assert_eq!(fallbacks.log_level, shipped.log_level);
        assert_eq!(fallbacks.log_rotation, shipped.log_rotation);
        assert!(fallbacks.reputation == shipped.reputation, "reputation");
        assert_eq!(fallbacks, shipped);
        // The CLI's options start from `Options::default()`.
        assert_eq!(Options::default(), shipped.options);
    }

    /// The shipped file sets every key `from_conf` reads: a key missing
    /// there would silently take a fallback only this binary knows.
    #[test]
    fn the_shipped_conf_sets_every_key() {
        let conf = ConfFile::parse(DEFAULT_CONF).unwrap();
        let src = include_str!("settings.rs");
        let body = &src[..src.find("#[cfg(test)]").unwrap()];
        // Every `r.<kind>("stanza", "key"` read with a literal stanza.
        let mut checked = 0;
        for (i, _) in body.match_indices("(\"") {
            let rest = &body[i + 2..];
            let Some((stanza, rest)) = rest.split_once('"') else {
                continue;
            };
            let Some(rest) = rest.strip_prefix(", \"") else {
                continue;
            };
            let Some((key, _)) = rest.split_once('"') else {
                continue;
            };
            if stanza.contains(' ') || key.contains(' ') {
                continue;
            }
            assert!(
                conf.get(stanza, key).is_some(),
                "[{stanza}] {key} is read but not in default/sysmonenrich.conf"
            );
            checked += 1;
        }
        assert!(
            checked > 25,
            "only {checked} keys found: the scan is broken"
        );
    }

    #[test]
    fn builtin_defaults_parse_cleanly() {
        let (s, loaded) = Settings::load(None);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(s.options.lineage && s.options.reputation);
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.lineage.memory_processes, 200_000);
        assert_eq!(s.lineage.memory_bytes, 160 << 20);
        assert_eq!(s.state.command_line_max_bytes, 32_768);
        assert_eq!(s.lineage.cell_value_max_bytes, 4096);
    }

    #[test]
    fn cell_value_cap_is_whole_or_at_least_64() {
        for (value, want) in [("0", 0), ("10", 64), ("1000", 1000)] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("local")).unwrap();
            std::fs::write(
                dir.path().join("local/sysmonenrich.conf"),
                format!("[lineage]\ncell_value_max_bytes = {value}\n"),
            )
            .unwrap();
            let (s, _) = Settings::load(Some(dir.path()));
            assert_eq!(s.lineage.cell_value_max_bytes, want, "{value}");
        }
    }

    #[test]
    fn command_line_cap_is_whole_or_at_least_256() {
        for (value, want) in [("0", 0), ("10", 256), ("1000", 1000)] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("local")).unwrap();
            std::fs::write(
                dir.path().join("local/sysmonenrich.conf"),
                format!("[state]\ncommand_line_max_bytes = {value}\n"),
            )
            .unwrap();
            let (s, _) = Settings::load(Some(dir.path()));
            assert_eq!(s.state.command_line_max_bytes, want, "{value}");
        }
    }

    #[test]
    fn local_overrides_and_bad_values_warn() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("local")).unwrap();
        std::fs::write(
            dir.path().join("local/sysmonenrich.conf"),
            "[defaults]\nmax_depth = 7\nlineage = perhaps\n[backfill]\ntime_budget = 3s\n\
             [lineage]\nmemory_mb = 64\n",
        )
        .unwrap();
        let (s, loaded) = Settings::load(Some(dir.path()));
        assert_eq!(s.options.max_depth, 7);
        assert!(s.options.lineage);
        assert_eq!(s.backfill.time_budget, Duration::from_secs(3));
        assert_eq!(s.lineage.memory_bytes, 64 << 20);
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("[defaults] lineage"));
    }
}
