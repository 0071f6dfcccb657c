//! `sysmonenrich state`: look into and clean the state database (process
//! table, reputation cache, pending queue, quota ledger).
//!
//! ```text
//! sysmonenrich state [stats]            counts, sizes, quota use
//! sysmonenrich state purge cache        empty one table (or `all`)
//! sysmonenrich state purge processes --sid SID | --user USER
//!                                       what one search / user wrote
//! sysmonenrich state check              PRAGMA quick_check
//! sysmonenrich state push               local tier → the KV store (state_copy.rs)
//! sysmonenrich state pull               the KV store → local tier
//! ```
//!
//! `stats` and `purge processes --sid/--user` also cover the shared tier
//! (the app's KV store collections) when a `.splunkrc` is named or
//! `~/.splunkrc` exists (`state_shared.rs`).
//!
//! The database is the one searches use: `--db PATH`, else `[state] path`
//! of the app's `sysmonenrich.conf`, else
//! `$SPLUNK_HOME/var/lib/sysmonenrich/state.db`, else
//! `~/.local/state/sysmonenrich/state.db` (see [`Paths::state_db`]).

use super::{state_copy, state_shared};
use crate::config::paths::Paths;
use crate::config::settings::Settings;
use crate::state::{PurgeTarget, StateOptions, StateStore};
use std::io::Write;
use std::path::Path;

/// What `state` does.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Row counts, file size, pending lookups by reason, quota use
    /// (the default).
    Stats,
    /// Empty a table: processes, cache, pending, quota or all.
    Purge {
        /// processes, cache, pending, quota or all.
        #[arg(value_parser = parse_purge)]
        what: PurgeTarget,
        /// Shrink the file afterwards (VACUUM; locks the database while it
        /// copies).
        #[arg(long)]
        vacuum: bool,
        /// processes only: remove what the search with this sid wrote.
        #[arg(long)]
        sid: Option<String>,
        /// processes only: remove what this user's searches wrote.
        #[arg(long)]
        user: Option<String>,
    },
    /// Run the integrity check (reads the whole file).
    Check,
    /// Copy the process table and the unexpired cached answers to the
    /// KV store (for a search head joining a cluster): a process already
    /// there is never overwritten, an answer only by a newer one.
    Push,
    /// Copy the KV store's processes and unexpired answers into the
    /// database (for a new cluster member), with the checks a search
    /// makes: a document whose fields do not give its digest is refused,
    /// a creation that contradicts a stored one is a counted conflict.
    Pull,
}

/// How `state` reaches splunkd for the shared tier.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    /// `--splunkrc`: else `~/.splunkrc` when it exists.
    pub splunkrc: Option<&'a Path>,
    /// `--insecure`.
    pub insecure: bool,
}

fn parse_purge(s: &str) -> Result<PurgeTarget, String> {
    s.parse()
}

/// Runs `state`.
pub fn run(db: Option<&Path>, reach: Reach<'_>, action: Action) -> anyhow::Result<()> {
    let mut out = super::output::stdout();
    let done = run_to(&mut out, db, reach, action);
    let flushed = out.flush();
    done?;
    Ok(flushed?)
}

fn run_to(
    out: &mut impl Write,
    db: Option<&Path>,
    reach: Reach<'_>,
    action: Action,
) -> anyhow::Result<()> {
    let paths = Paths::for_person();
    let (settings, loaded) = Settings::load(paths.app_dir.as_deref());
    for w in &loaded.warnings {
        eprintln!("sysmonenrich: warning: {w}");
    }
    let path = match db {
        Some(p) => p.to_path_buf(),
        None => paths
            .state_db(settings.state.path.as_deref())
            .ok_or_else(|| anyhow::anyhow!("no SPLUNK_HOME and no HOME: pass --db PATH"))?,
    };
    if !path.exists() && action != Action::Pull {
        // Opening would create it; looking must not.
        writeln!(
            out,
            "no state database at {} yet: searches create it when they first need it",
            path.display()
        )?;
        if action == Action::Stats {
            let shared = state_shared::reach(reach.splunkrc, reach.insecure)?;
            state_shared::stats(out, shared, settings.state.shared, now_secs())?;
        }
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
        Action::Stats => {
            stats(out, &store, &settings)?;
            // The local figures are out before splunkd is asked.
            out.flush()?;
            let shared = state_shared::reach(reach.splunkrc, reach.insecure)?;
            state_shared::stats(out, shared, settings.state.shared, now_secs())
        }
        Action::Push => {
            let (kv, base) = state_shared::require(reach.splunkrc, reach.insecure)?;
            state_copy::push(out, &store, &kv, &base, now_secs())
        }
        Action::Pull => {
            let (kv, base) = state_shared::require(reach.splunkrc, reach.insecure)?;
            state_copy::pull(
                out,
                &store,
                &kv,
                &base,
                now_secs(),
                settings.state.command_line_max_bytes,
            )
        }
        Action::Purge {
            what,
            vacuum,
            sid,
            user,
        } => {
            if sid.is_some() || user.is_some() {
                if what != PurgeTarget::Processes {
                    anyhow::bail!("--sid and --user apply to `purge processes` only");
                }
                let n = store.purge_processes_by(sid.as_deref(), user.as_deref())?;
                let who = [
                    sid.as_ref().map(|s| format!("sid {s}")),
                    user.as_ref().map(|u| format!("user {u}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
                writeln!(
                    out,
                    "purged {n} process{} written by {who} from {}",
                    if n == 1 { "" } else { "es" },
                    path.display()
                )?;
                out.flush()?;
                let shared = state_shared::reach(reach.splunkrc, reach.insecure)?;
                return state_shared::purge_by(out, shared, sid.as_deref(), user.as_deref(), &who);
            }
            if matches!(what, PurgeTarget::Quota | PurgeTarget::All) {
                eprintln!(
                    "sysmonenrich: note: the quota ledger is emptied: searches running now may exceed the providers' quotas for the rest of the day"
                );
            }
            let n = store.purge(what)?;
            writeln!(
                out,
                "purged {n} row{} ({}) from {}",
                if n == 1 { "" } else { "s" },
                target_name(what),
                path.display()
            )?;
            if vacuum {
                let before = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                store.vacuum()?;
                let after = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                writeln!(out, "vacuumed: {} → {}", size(before), size(after))?;
            }
            Ok(())
        }
        Action::Check => {
            store
                .check_integrity()
                .map_err(|e| anyhow::anyhow!("{e}{}", advice(&e)))?;
            writeln!(out, "{}: ok (integrity check passed)", path.display())?;
            Ok(())
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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

fn stats(out: &mut impl Write, store: &StateStore, settings: &Settings) -> anyhow::Result<()> {
    let s = store.stats()?;
    let by_reason = store.pending_counts_by_reason()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    writeln!(out, "database       {}", s.path.display())?;
    writeln!(out, "schema         version {}", s.schema_version)?;
    writeln!(
        out,
        "file size      {} (WAL {}; {} free page{} of {} bytes)",
        size(s.file_bytes),
        size(s.wal_bytes),
        s.free_pages,
        if s.free_pages == 1 { "" } else { "s" },
        s.page_size
    )?;
    writeln!(out, "processes      {}", s.processes)?;
    writeln!(
        out,
        "conflicts      {} (creations that contradicted a stored process; see the log)",
        s.process_conflicts
    )?;
    writeln!(
        out,
        "cache entries  {} (expired ones included until purged)",
        s.cache_entries
    )?;
    let reasons = by_reason
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if reasons.is_empty() {
        writeln!(out, "pending        {}", s.pending)?;
    } else {
        writeln!(out, "pending        {} ({reasons})", s.pending)?;
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
        writeln!(out,
            "quota          {name}: {minute} request{} in the last minute ({}), {today} today UTC ({})",
            if minute == 1 { "" } else { "s" },
            limit(p.per_minute, "min"),
            limit(p.per_day, "day"),
        )?;
    }
    writeln!(
        out,
        "quota ledger   {} recorded requests (kept two days)",
        s.quota_events
    )?;
    let now = now_ms / 1000;
    let circuits = store.circuits()?;
    if circuits.is_empty() {
        writeln!(
            out,
            "circuits       none (every provider and splunkd reachable when last tried)"
        )?;
    }
    for c in circuits {
        writeln!(out, "circuit        {}", circuit_line(&c, now))?;
    }
    Ok(())
}

/// `hashlookup: open, skipped for 42 s more (cool-down 2 min): connection
/// failed: …`, or `closed` once the cool-down is over (the next search
/// tries again).
fn circuit_line(c: &crate::circuit::CircuitRecord, now: i64) -> String {
    let cooldown = crate::circuit::span(c.cooldown);
    if c.open_until > now {
        format!(
            "{}: open, skipped for {} more (cool-down {cooldown}): {}",
            c.name,
            crate::circuit::span(c.open_until - now),
            c.cause
        )
    } else {
        format!(
            "{}: cool-down over, tried again by the next search (last cool-down {cooldown}): {}",
            c.name, c.cause
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_lines() {
        let c = crate::circuit::CircuitRecord {
            name: "hashlookup".into(),
            open_until: 1_120,
            cooldown: 120,
            cause: "connection failed: dns error".into(),
            updated_at: 1_000,
        };
        assert_eq!(
            circuit_line(&c, 1_000),
            "hashlookup: open, skipped for 2 min more (cool-down 2 min): connection failed: dns error"
        );
        assert!(circuit_line(&c, 2_000).contains("cool-down over"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }
}
