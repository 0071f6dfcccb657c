//! `sysmonenrich state`: look into and clean the state database (process
//! table, reputation cache, pending queue, quota ledger).
//!
//! ```text
//! sysmonenrich state [stats]            counts, sizes, quota use
//! sysmonenrich state purge cache        empty one table (or `all`)
//! sysmonenrich state check              PRAGMA quick_check
//! ```
//!
//! The database is the one searches use: `--db PATH`, else `[state] path`
//! of the app's `sysmonenrich.conf`, else
//! `$SPLUNK_HOME/var/lib/sysmonenrich/state.db`, else
//! `~/.local/state/sysmonenrich/state.db` (see [`default_db_path`]).

use crate::config::settings::Settings;
use crate::state::{PurgeTarget, StateOptions, StateStore};
use std::path::{Path, PathBuf};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print statistics.
    Stats,
    /// Empty tables, then optionally shrink the file.
    Purge {
        /// Which.
        what: PurgeTarget,
        /// Run `VACUUM` afterwards.
        vacuum: bool,
    },
    /// Integrity check.
    Check,
}

/// The state database the CLI uses when no `--db` is given: the conf
/// file's `[state] path`, else `$SPLUNK_HOME/var/lib/sysmonenrich/state.db`
/// (the search head's), else `~/.local/state/sysmonenrich/state.db`.
pub fn default_db_path(settings: &Settings) -> Option<PathBuf> {
    if let Some(p) = &settings.state.path {
        return Some(p.clone());
    }
    if let Some(home) = crate::command::splunk_home() {
        return Some(home.join("var/lib/sysmonenrich/state.db"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/sysmonenrich/state.db"))
}

/// Runs `state`.
pub fn run(db: Option<&Path>, action: Action) -> anyhow::Result<()> {
    let (settings, loaded) = Settings::load(crate::config::settings::app_dir().as_deref());
    for w in &loaded.warnings {
        eprintln!("sysmonenrich: warning: {w}");
    }
    let path = match db {
        Some(p) => p.to_path_buf(),
        None => default_db_path(&settings)
            .ok_or_else(|| anyhow::anyhow!("no SPLUNK_HOME and no HOME: pass --db PATH"))?,
    };
    if !path.exists() {
        // Opening would create it; looking must not.
        println!(
            "no state database at {} yet: searches create it when they first need it",
            path.display()
        );
        return Ok(());
    }
    let store = StateStore::open(
        &path,
        &StateOptions {
            busy_timeout: settings.state.busy_timeout,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}{}", advice(&e)))?;
    match action {
        Action::Stats => stats(&store, &settings),
        Action::Purge { what, vacuum } => {
            if matches!(what, PurgeTarget::Quota | PurgeTarget::All) {
                eprintln!(
                    "sysmonenrich: note: the quota ledger is emptied: searches running now may exceed the providers' quotas for the rest of the day"
                );
            }
            let n = store.purge(what)?;
            println!(
                "purged {n} row{} ({}) from {}",
                if n == 1 { "" } else { "s" },
                target_name(what),
                path.display()
            );
            if vacuum {
                let before = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                store.vacuum()?;
                let after = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                println!("vacuumed: {} → {}", size(before), size(after));
            }
            Ok(())
        }
        Action::Check => {
            store
                .check_integrity()
                .map_err(|e| anyhow::anyhow!("{e}{}", advice(&e)))?;
            println!("{}: ok (integrity check passed)", path.display());
            Ok(())
        }
    }
}

/// What a person can do about a store error.
fn advice(e: &crate::state::StateError) -> &'static str {
    if e.is_corrupt() {
        "\nThe file is damaged. Move it aside (keep it for a bug report); the next search \
         creates a new one, and the cache and process table refill as searches run."
    } else if e.is_locked() {
        "\nAnother process holds the database locked; try again when searches have finished."
    } else {
        ""
    }
}

fn target_name(t: PurgeTarget) -> &'static str {
    match t {
        PurgeTarget::Processes => "processes",
        PurgeTarget::Cache => "cache",
        PurgeTarget::Pending => "pending",
        PurgeTarget::Quota => "quota",
        PurgeTarget::All => "all tables",
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn stats(store: &StateStore, settings: &Settings) -> anyhow::Result<()> {
    let s = store.stats()?;
    let by_reason = store.pending_counts_by_reason()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    println!("database       {}", s.path.display());
    println!("schema         version {}", s.schema_version);
    println!(
        "file size      {} (WAL {}; {} free page{} of {} bytes)",
        size(s.file_bytes),
        size(s.wal_bytes),
        s.free_pages,
        if s.free_pages == 1 { "" } else { "s" },
        s.page_size
    );
    println!("processes      {}", s.processes);
    println!(
        "cache entries  {} (expired ones included until purged)",
        s.cache_entries
    );
    let reasons = by_reason
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if reasons.is_empty() {
        println!("pending        {}", s.pending);
    } else {
        println!("pending        {} ({reasons})", s.pending);
    }
    let r = &settings.reputation;
    for (name, p) in [
        ("virustotal", &r.virustotal),
        ("malwarebazaar", &r.malwarebazaar),
        ("hashlookup", &r.hashlookup),
    ] {
        let (minute, today) = store.quota_usage(name, now_ms)?;
        if name != "virustotal" && minute == 0 && today == 0 {
            continue;
        }
        let limit = |n: u32, unit: &str| {
            if n == 0 {
                "no limit".to_string()
            } else {
                format!("limit {n}/{unit}")
            }
        };
        println!(
            "quota          {name}: {minute} request{} in the last minute ({}), {today} today UTC ({})",
            if minute == 1 { "" } else { "s" },
            limit(p.per_minute, "min"),
            limit(p.per_day, "day"),
        );
    }
    println!(
        "quota ledger   {} recorded requests (kept two days)",
        s.quota_events
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }
}
