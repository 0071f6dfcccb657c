//! The persistent state of one search head: a single SQLite file.
//!
//! ```text
//!  search A ─┐                          ┌─ processes        (lineage)
//!  search B ─┼─► StateStore ─► state.db ─┼─ reputation_cache (answers, TTL)
//!  CLI      ─┘   (one per process)       ├─ quota_events     (shared limits)
//!                                        └─ pending          (to retry)
//! ```
//!
//! The caller puts the file at `$SPLUNK_HOME/var/lib/sysmonenrich/state.db`
//! and opens it once per process with [`StateStore::open`]. Several searches
//! are separate OS processes running at the same time, so everything here is
//! designed for *cross-process* sharing, not just threads:
//!
//! - **WAL journal**: readers and the writer do not block each
//!   other; writers queue for milliseconds, bounded by the busy timeout.
//! - **Every write is one `BEGIN IMMEDIATE` transaction.** A deferred
//!   transaction that reads and then writes would take the write lock only
//!   at its first write; if another process committed in between, SQLite
//!   fails it with `SQLITE_BUSY` *without* waiting (its snapshot is stale),
//!   and a read-then-write decision such as "3 grants in the last minute, so
//!   grant a 4th" would be made on data that is no longer true. Taking the
//!   write lock first makes each read-decide-write step atomic across
//!   processes and lets the busy timeout do the waiting.
//! - **Batches are single transactions**: a chunk's thousands of process
//!   rows cost one commit, not thousands.
//!
//! # Failure is normal
//!
//! DESIGN §3: a locked or corrupt database must degrade to "no cache" with a
//! WARN, never fail the search. So every method returns a [`Result`] whose
//! [`StateError`] names the file, the operation and the cause, with [`StateError::is_locked`] and
//! [`StateError::is_corrupt`] for the two common cases; nothing here panics,
//! and rows with unexpected types (a file edited by hand, a bug in an old
//! build) are skipped, not fatal.
//!
//! # What is *not* stored
//!
//! Errors. The cache has no way to store a failed lookup: callers store
//! answers only ("found" and "not found", with their own TTLs) and put
//! hashes they could not look up (quota, timeout, budget, HTTP errors) in
//! the pending queue. A transient failure cached for a day would hide a
//! malicious hash for a day.
//!
//! # Files
//!
//! | file | job |
//! |---|---|
//! | `error.rs` | [`StateError`] and its classification |
//! | `schema.rs` | pragmas, schema, migrations, open-time probe |
//! | `batch.rs` | fixed-width `IN (...)` batches |
//! | `processes.rs` | the process table for lineage |
//! | `provenance.rs` | who wrote each process; conflicts; purge by search or user |
//! | `digest.rs` | the stable 64-bit digest of a stored creation |
//! | `cache.rs` | the reputation cache |
//! | `quota.rs` | the cross-process sliding-window quota ledger |
//! | `pending.rs` | the queue of lookups to retry |
//! | `circuits.rs` | circuit records of unreachable services, and facts learnt from splunkd |
//! | `sigma.rs` | the Sigma rules each stored process's creation matched |
//! | `scan.rs` | whole-table reads in pages, for copying a tier to another |
//! | `tests.rs` | tests across the tables |
#![deny(missing_docs)]

mod batch;
mod cache;
mod circuits;
mod digest;
mod error;
mod pending;
mod processes;
mod provenance;
mod quota;
mod scan;
mod schema;
mod sigma;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

pub use cache::{CachePut, CachedEntry};
pub use digest::of_parts as process_digest;
pub use error::{StateError, StateErrorKind};
pub use pending::PendingEntry;
pub use processes::{cap_text, ProcessRow, StoredProcess};
pub use provenance::{contradictions, Conflict, Writer};
pub use quota::QuotaDecision;
pub use scan::{CachedAnswer, ProcessPage};
pub use sigma::MAX_STORED as MAX_SIGMA_STORED;

/// `Result` with [`StateError`].
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Default for [`StateOptions::busy_timeout`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StateOptions {
    /// How long one statement waits for another process's lock before it
    /// fails with [`StateError::is_locked`]. Writes hold the lock for
    /// milliseconds, so waiting long only happens when something is wrong
    /// (a hung process, a network file system); the search then continues
    /// without state rather than stalling. Default 5 s.
    pub busy_timeout: Duration,
}

impl Default for StateOptions {
    fn default() -> StateOptions {
        StateOptions {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// The state database. `Send + Sync`: share one per process behind an `Arc`.
///
/// The connection sits behind a `std::sync::Mutex` that is held only for the
/// duration of one method's SQL, never across I/O of the caller or an
/// `.await`; the methods are synchronous and short. Async callers with big
/// batches may prefer `spawn_blocking`.
pub struct StateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    busy_timeout: Duration,
    file_backed: bool,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .field("busy_timeout", &self.busy_timeout)
            .finish_non_exhaustive()
    }
}

/// Row counts and file size, for the CLI `state` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStats {
    /// The database file (`:memory:` for an in-memory store).
    pub path: PathBuf,
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// Rows in the process table.
    pub processes: u64,
    /// Reputation cache entries, expired ones included until purged.
    pub cache_entries: u64,
    /// Recorded quota requests (the last two days).
    pub quota_events: u64,
    /// Hashes waiting for a lookup.
    pub pending: u64,
    /// Process creations that contradicted the stored one for their GUID
    /// (each GUID counted once per search that brought one).
    pub process_conflicts: u64,
    /// Size of the database file in bytes (0 in memory).
    pub file_bytes: u64,
    /// Size of the `-wal` file in bytes (0 when absent).
    pub wal_bytes: u64,
    /// Pages on the free list (space `vacuum` would return).
    pub free_pages: u64,
    /// Page size in bytes.
    pub page_size: u64,
}

/// What [`StateStore::purge`] empties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurgeTarget {
    /// The process table, with its record of writers and conflicts
    /// (lineage then relies on backfill until refilled).
    Processes,
    /// The reputation cache (every hash is looked up again).
    Cache,
    /// The pending queue.
    Pending,
    /// The quota ledger. Careful: concurrent searches then believe the
    /// provider quota is untouched and may exceed it.
    Quota,
    /// All of the above.
    All,
}

impl PurgeTarget {
    /// Every accepted name, for help text.
    pub const NAMES: [&'static str; 5] = ["processes", "cache", "pending", "quota", "all"];

    fn tables(self) -> &'static [&'static str] {
        match self {
            PurgeTarget::Processes => &["processes", "process_conflicts", "process_writers"],
            PurgeTarget::Cache => &["reputation_cache"],
            PurgeTarget::Pending => &["pending"],
            PurgeTarget::Quota => &["quota_events"],
            PurgeTarget::All => &schema::TABLES,
        }
    }
}

impl FromStr for PurgeTarget {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<PurgeTarget, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "processes" => Ok(PurgeTarget::Processes),
            "cache" => Ok(PurgeTarget::Cache),
            "pending" => Ok(PurgeTarget::Pending),
            "quota" => Ok(PurgeTarget::Quota),
            "all" => Ok(PurgeTarget::All),
            _ => Err(format!(
                "unknown state table {s:?}; expected one of {}",
                PurgeTarget::NAMES.join(", ")
            )),
        }
    }
}

impl StateStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// Creates the parent directories, switches to WAL, sets
    /// `synchronous=NORMAL` and the busy timeout, creates or migrates the
    /// schema and reads the first row of every table. Fails with
    /// [`StateError::is_corrupt`] for a file that is not (or no longer) a
    /// valid database of ours and [`StateError::is_locked`] when another
    /// process holds it beyond `options.busy_timeout`. The caller is
    /// expected to WARN and continue without persistent state.
    pub fn open(path: &Path, options: &StateOptions) -> Result<StateStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| {
                StateError::new(path, "creating the directory", StateErrorKind::Io { cause })
            })?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StateError::from_sqlite(path, "opening", options.busy_timeout, e))?;
        schema::prepare(&mut conn, path, options.busy_timeout, true)?;
        Ok(StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            busy_timeout: options.busy_timeout,
            file_backed: true,
        })
    }

    /// A second, independent connection to the same file, for a thread
    /// that writes while this one reads (WAL lets one writer and any number
    /// of readers work at once; one shared connection would serialise them
    /// behind its mutex). `None` for an in-memory store, which cannot be
    /// shared: the caller keeps using this one.
    pub fn reopen(&self) -> Option<Result<StateStore>> {
        self.file_backed.then(|| {
            StateStore::open(
                &self.path,
                &StateOptions {
                    busy_timeout: self.busy_timeout,
                },
            )
        })
    }

    /// Sets this connection's page cache to `kib` KiB (the default is
    /// 16 MiB). For a second connection whose work is mostly sequential
    /// (the process-table writer), where a full-size cache would only add
    /// to the search's peak memory.
    pub fn set_cache_kib(&self, kib: u32) -> Result<()> {
        let conn = self.lock();
        conn.pragma_update(None, "cache_size", -i64::from(kib))
            .map_err(self.err("setting cache_size"))
    }

    /// A private in-memory store with the same schema: for tests, and for
    /// running without persistent state. Nothing is shared or kept.
    pub fn open_in_memory() -> Result<StateStore> {
        let path = Path::new(":memory:");
        let timeout = DEFAULT_BUSY_TIMEOUT;
        let mut conn = Connection::open_in_memory()
            .map_err(|e| StateError::from_sqlite(path, "opening", timeout, e))?;
        schema::prepare(&mut conn, path, timeout, false)?;
        Ok(StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            busy_timeout: timeout,
            file_backed: false,
        })
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Row counts and file sizes.
    pub fn stats(&self) -> Result<StateStats> {
        let (counts, free_pages, page_size, schema_version) =
            self.read("reading statistics", |conn| {
                let mut counts = [0u64; 6];
                for (n, table) in counts.iter_mut().zip(schema::TABLES) {
                    *n = count(conn, table)?;
                }
                let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
                let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
                let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
                Ok((counts, free, page, version))
            })?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let (file_bytes, wal_bytes) = if self.file_backed {
            let mut wal = self.path.clone().into_os_string();
            wal.push("-wal");
            (size(&self.path), size(Path::new(&wal)))
        } else {
            (0, 0)
        };
        let [processes, cache_entries, quota_events, pending, process_conflicts, _writers] = counts;
        Ok(StateStats {
            path: self.path.clone(),
            schema_version,
            processes,
            cache_entries,
            quota_events,
            pending,
            process_conflicts,
            file_bytes,
            wal_bytes,
            free_pages: u64::try_from(free_pages).unwrap_or(0),
            page_size: u64::try_from(page_size).unwrap_or(0),
        })
    }

    /// Deletes every row of `what`; returns the number of rows deleted.
    /// The file does not shrink until [`StateStore::vacuum`].
    pub fn purge(&self, what: PurgeTarget) -> Result<u64> {
        self.write("purging", |tx| {
            let mut deleted = 0u64;
            for table in what.tables() {
                let n = tx.execute(&format!("DELETE FROM {table}"), [])?;
                deleted += n as u64;
            }
            Ok(deleted)
        })
    }

    /// Rebuilds the file to return free pages to the file system. Takes an
    /// exclusive lock for as long as it copies the file: for the CLI, not
    /// for a search.
    pub fn vacuum(&self) -> Result<()> {
        let conn = self.lock();
        conn.execute_batch("VACUUM").map_err(self.err("vacuuming"))
    }

    /// Runs `PRAGMA quick_check`, which reads every page (O(file size)):
    /// for the CLI, not for every search. A damaged file yields an error
    /// with [`StateError::is_corrupt`].
    pub fn check_integrity(&self) -> Result<()> {
        let problems = self.read("checking integrity", |conn| {
            let mut stmt = conn.prepare("PRAGMA quick_check(20)")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })?;
        if problems.len() == 1 && problems[0] == "ok" {
            return Ok(());
        }
        Err(StateError::new(
            &self.path,
            "checking integrity",
            StateErrorKind::Corrupt {
                detail: problems.join("; "),
            },
        ))
    }

    /// The connection. A panic in another thread while it held the lock
    /// left nothing half-done in SQLite (an open `Transaction` rolls back
    /// when dropped), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if !conn.is_autocommit() {
            // Only reachable if a panic escaped between BEGIN and the
            // guard's drop; start from a clean slate.
            let _ = conn.execute_batch("ROLLBACK");
        }
        conn
    }

    /// Maps a SQLite error of `operation` to a [`StateError`].
    fn err(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |e| StateError::from_sqlite(&self.path, operation, self.busy_timeout, e)
    }

    /// Runs `f` in one read transaction: one consistent snapshot even when
    /// `f` runs several statements, and no write lock.
    fn read<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.err(operation))?;
        let out = f(&tx).map_err(self.err(operation))?;
        tx.commit().map_err(self.err(operation))?;
        Ok(out)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction (see the module docs
    /// for why IMMEDIATE) and commits; any error rolls everything back.
    fn write<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err(operation))?;
        let out = f(&tx).map_err(self.err(operation))?;
        tx.commit().map_err(self.err(operation))?;
        Ok(out)
    }
}

/// Most rows one housekeeping transaction deletes. The write lock is
/// released between batches, so another search's write waits for one
/// batch (milliseconds), never for a whole purge: deleting 400,000 rows of
/// a cache that grew before its cap existed took 7.7 s in one transaction,
/// longer than the 5 s `busy_timeout` every other search waits.
const DELETE_BATCH: u64 = 10_000;

impl StateStore {
    /// Deletes in transactions of at most [`DELETE_BATCH`] rows until
    /// `step` (given the most it may delete) deletes fewer than that;
    /// returns the total.
    fn delete_batched(
        &self,
        operation: &'static str,
        step: impl Fn(&Connection, u64) -> rusqlite::Result<u64>,
    ) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.write(operation, |tx| step(tx, DELETE_BATCH))?;
            total += n;
            if n < DELETE_BATCH {
                return Ok(total);
            }
        }
    }
}

/// `SELECT count(*)` of a table name from our own constant list.
fn count(conn: &Connection, table: &str) -> rusqlite::Result<u64> {
    let n: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM {table}"))?
        .query_row([], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Converts a row count or limit to SQLite's `i64`, saturating.
fn to_i64<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
