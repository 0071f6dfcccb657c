//! Connection settings, the schema and its migrations.
//!
//! The schema version lives in `PRAGMA user_version` (an integer in the file
//! header, free to read), and the file is stamped with
//! `PRAGMA application_id` so that a stray SQLite file of another program at
//! our path is reported instead of being "migrated" into ours.
//!
//! Migrations only ever append to [`MIGRATIONS`]: entry `i` takes a file
//! from version `i` to `i + 1`. A file with a higher version than this build
//! knows was written by a newer app; we refuse it (`TooNew`) rather than
//! guess, and the caller degrades to no persistent state.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::error::{StateError, StateErrorKind};

/// `application_id` stamped into the header: ASCII "SMNE".
pub(crate) const APPLICATION_ID: i32 = 0x534D_4E45;

/// The schema version this build writes and understands.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Table names, for probes, statistics and purges.
pub(crate) const TABLES: [&str; 6] = [
    "processes",
    "reputation_cache",
    "quota_events",
    "pending",
    "process_conflicts",
    "process_writers",
];

/// Upper bound for the `-wal` file after a checkpoint. Without it the WAL
/// keeps the size of the largest transaction ever written (a 50,000-row
/// chunk of processes), forever.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Page cache per connection, in KiB (as a negative `cache_size`). Lineage
/// lookups hit the GUID index and the table in random order; SQLite's
/// default of 2 MiB makes a 50,000-GUID batch re-read most pages from the
/// OS. Memory is only used as pages are touched, and it is bounded: 16 MiB
/// holds the GUID index of ~500,000 processes; past that, pages come from
/// the OS's file cache (microseconds), and the memory benchmark's search
/// of 5,000,000 processes stays under its limit.
const CACHE_SIZE_KIB: i64 = -16 * 1024;

/// Statements kept prepared per connection. Every statement the store runs
/// is a fixed string, so a small cache holds all of them.
const STATEMENT_CACHE: usize = 64;

/// Schema migrations; entry `i` upgrades version `i` to `i + 1`.
///
/// Version 2 adds `circuits` (services found unreachable, see
/// `crate::circuit`) and `facts` (small values learnt from splunkd with an
/// expiry, such as the number of search head cluster members). Both stay
/// a few rows.
///
/// Notes on version 1:
/// - `processes.guid` is the 16-byte big-endian GUID, so the primary-key
///   order is the numeric order of [`u128`]. Rows are not `WITHOUT ROWID`
///   because command lines can be kilobytes long, and SQLite advises rowid
///   tables for rows that large.
/// - `seen_at`, `expires_at` and `queued_at` are indexed because pruning,
///   purging and the pending queue walk them in order.
/// - `quota_events` is indexed by `(provider, at_ms)`: every quota question
///   is a range count over one provider.
pub(crate) const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE processes (
    guid                BLOB PRIMARY KEY NOT NULL,
    parent_guid         BLOB,
    image               TEXT NOT NULL,
    command_line        TEXT NOT NULL,
    parent_image        TEXT NOT NULL,
    parent_command_line TEXT NOT NULL,
    host                TEXT NOT NULL,
    time                REAL NOT NULL,
    md5                 TEXT,
    sha1                TEXT,
    sha256              TEXT,
    imphash             TEXT,
    seen_at             INTEGER NOT NULL
);
CREATE INDEX processes_seen_at ON processes(seen_at);

CREATE TABLE reputation_cache (
    provider   TEXT NOT NULL,
    key        TEXT NOT NULL,
    json       TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (provider, key)
);
CREATE INDEX reputation_cache_expires ON reputation_cache(expires_at);

CREATE TABLE quota_events (
    provider TEXT NOT NULL,
    at_ms    INTEGER NOT NULL
);
CREATE INDEX quota_events_provider_at ON quota_events(provider, at_ms);

CREATE TABLE pending (
    key        TEXT PRIMARY KEY NOT NULL,
    reason     TEXT NOT NULL,
    queued_at  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL
);
CREATE INDEX pending_queued ON pending(queued_at, key);
",
    r"
-- Version 2: who wrote each process, and the creations that contradicted
-- a stored one (issue 12: one search must not rewrite everyone's lineage).
--
-- A search is named once in `process_writers`; each process row refers to
-- it by number, so the sid and user cost a few bytes per row, not two
-- strings. No index on `processes.writer`: only `state purge --sid/--user`
-- looks rows up by writer (a table scan, from the CLI), and an index would
-- cost every insert of every search an extra b-tree write.
--
-- `digest` is a 64-bit hash of the stored creation (see `digest.rs`): a
-- search that sees a known GUID compares digests, read with the probe it
-- already makes, and reads the whole row only when they differ. Rows from
-- version 1 have none and are not compared.
CREATE TABLE process_writers (
    id   INTEGER PRIMARY KEY,
    sid  TEXT NOT NULL,
    user TEXT NOT NULL,
    UNIQUE (sid, user)
);
ALTER TABLE processes ADD COLUMN writer INTEGER;
ALTER TABLE processes ADD COLUMN digest INTEGER;
CREATE TABLE process_conflicts (
    guid   BLOB NOT NULL,
    writer INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (guid, writer)
);
",
    r"
-- Version 3: circuit breakers (a provider or splunkd known to be
-- unreachable, and until when) and facts cached for a while (the number of
-- search heads that share a quota).
CREATE TABLE circuits (
    name       TEXT PRIMARY KEY NOT NULL,
    open_until INTEGER NOT NULL,
    cooldown   INTEGER NOT NULL,
    cause      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE facts (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
",
    r"
-- Version 4: the Sigma rules a process's creation matched (rule ids, the
-- rules' own `id`s, comma-separated), so a later search names them in its
-- descendants' lineage_sigma without the creation event. Only processes
-- with a match have a row; it goes when the process goes (pruning).
CREATE TABLE process_sigma (
    guid  BLOB PRIMARY KEY NOT NULL,
    rules TEXT NOT NULL
);
CREATE TRIGGER processes_sigma_gone AFTER DELETE ON processes BEGIN
    DELETE FROM process_sigma WHERE guid = old.guid;
END;
",
    r"
-- Version 5: matches belong to a rule version. `rules` now holds rule
-- fingerprints (16 hex digits each: the rule's id, its whole file and the
-- engine's semantics, see `sigma::RuleSet::fingerprint`), so a search
-- counts a stored match only for a rule it loaded in that very version.
-- Rows of version 4 name bare ids: which text of the rule matched, under
-- which engine, is unknown, so they are dropped rather than trusted (an
-- ancestor's lineage_sigma comes back when a search sees its creation
-- again; the process rows themselves are kept).
DELETE FROM process_sigma;
",
];

/// Applies connection settings, creates or migrates the schema and reads a
/// little of every table, so that a damaged file fails here, in `open`,
/// where the caller expects it, rather than halfway through a search.
pub(crate) fn prepare(
    conn: &mut Connection,
    path: &Path,
    busy_timeout: Duration,
    file_backed: bool,
) -> Result<(), StateError> {
    let err = |op: &'static str| {
        move |e: rusqlite::Error| StateError::from_sqlite(path, op, busy_timeout, e)
    };
    conn.busy_timeout(busy_timeout)
        .map_err(err("setting the busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);

    if file_backed {
        set_wal(conn, path, busy_timeout)?;
        // In WAL mode NORMAL syncs only at checkpoints: a commit survives a
        // crash of the process, and at worst the last few commits are lost
        // on power failure. That is the right trade for a cache and a
        // ledger that are rebuilt by the next search anyway, and it keeps a
        // commit (one per quota grant) cheap.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err("setting synchronous=NORMAL"))?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(err("setting journal_size_limit"))?;
    }
    conn.pragma_update(None, "cache_size", CACHE_SIZE_KIB)
        .map_err(err("setting cache_size"))?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(err("setting temp_store"))?;

    migrate(conn, path, busy_timeout)?;
    probe(conn).map_err(err("reading the tables"))?;
    Ok(())
}

/// Switches the file to write-ahead logging.
///
/// Why WAL: several searches (separate processes) share the file. In WAL
/// mode readers never block the writer and the writer never blocks readers,
/// so a search reading the process table is not stalled by another one
/// recording a quota grant; only writers queue behind each other, for the
/// few milliseconds a write transaction takes.
///
/// The switch itself needs an exclusive lock once in the life of the file,
/// and SQLite may report `SQLITE_BUSY` for it without calling the busy
/// handler, so we retry here until the busy timeout is spent.
fn set_wal(conn: &Connection, path: &Path, busy_timeout: Duration) -> Result<(), StateError> {
    let started = Instant::now();
    loop {
        let result = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0));
        match result {
            Ok(mode) => {
                if !mode.eq_ignore_ascii_case("wal") {
                    // E.g. a file system without shared memory. Still
                    // correct (rollback journal), only less concurrent.
                    log::warn!(
                        "state database {}: journal_mode is {mode}, not wal; \
                         concurrent searches will wait for each other more",
                        path.display()
                    );
                }
                return Ok(());
            }
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && started.elapsed() < busy_timeout =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(StateError::from_sqlite(
                    path,
                    "enabling WAL journal mode",
                    busy_timeout,
                    e,
                ))
            }
        }
    }
}

/// Brings the schema to [`SCHEMA_VERSION`].
///
/// The fast path (already current) only reads the header. Otherwise the
/// version is read again inside a `BEGIN IMMEDIATE` transaction, so that two
/// searches opening a new file at the same moment do not both create the
/// tables: the second waits for the first and then finds nothing to do.
fn migrate(conn: &mut Connection, path: &Path, busy_timeout: Duration) -> Result<(), StateError> {
    let err = |op: &'static str| {
        move |e: rusqlite::Error| StateError::from_sqlite(path, op, busy_timeout, e)
    };
    let (version, app_id) = header(conn).map_err(err("reading the schema version"))?;
    check_header(path, version, app_id)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("locking the database to create the schema"))?;
    let (version, app_id) = header(&tx).map_err(err("reading the schema version"))?;
    check_header(path, version, app_id)?;
    if version == 0 && has_foreign_tables(&tx).map_err(err("reading the schema"))? {
        return Err(StateError::new(
            path,
            "reading the schema",
            StateErrorKind::Corrupt {
                detail: "the file holds tables of another application".into(),
            },
        ));
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(err("creating the schema"))?;
        log::debug!(
            "state database {}: migrated schema {from} -> {}",
            path.display(),
            from + 1
        );
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(err("writing the application id"))?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(err("writing the schema version"))?;
    tx.commit().map_err(err("committing the schema"))?;
    Ok(())
}

fn header(conn: &Connection) -> rusqlite::Result<(i64, i32)> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    Ok((version, app_id))
}

fn check_header(path: &Path, version: i64, app_id: i32) -> Result<(), StateError> {
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StateError::new(
            path,
            "reading the schema version",
            StateErrorKind::Corrupt {
                detail: format!(
                    "application_id is {app_id:#x}, not sysmonenrich's \
                     {APPLICATION_ID:#x}"
                ),
            },
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(StateError::new(
            path,
            "reading the schema version",
            StateErrorKind::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            },
        ));
    }
    if version < 0 {
        return Err(StateError::new(
            path,
            "reading the schema version",
            StateErrorKind::Corrupt {
                detail: format!("user_version is {version}"),
            },
        ));
    }
    Ok(())
}

/// True when an unversioned file already has tables: it is someone else's
/// database, and creating ours next to theirs would hide the mistake.
fn has_foreign_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Touches the first row of every table and index, in O(depth) page reads.
///
/// This catches files that are not databases at all, zeroed or overwritten
/// headers and truncations that cut off a b-tree root, without the O(size)
/// cost of `PRAGMA quick_check` on every search. Damage deeper in a table
/// is still reported, as `is_corrupt()`, by the query that meets it; the
/// CLI can run the full check with `StateStore::check_integrity`.
fn probe(conn: &Connection) -> rusqlite::Result<()> {
    for sql in [
        "SELECT guid FROM processes ORDER BY guid LIMIT 1",
        "SELECT seen_at FROM processes ORDER BY seen_at DESC LIMIT 1",
        "SELECT image FROM processes LIMIT 1",
        "SELECT key FROM reputation_cache ORDER BY provider, key LIMIT 1",
        "SELECT expires_at FROM reputation_cache ORDER BY expires_at LIMIT 1",
        "SELECT json FROM reputation_cache LIMIT 1",
        "SELECT at_ms FROM quota_events ORDER BY provider, at_ms LIMIT 1",
        "SELECT provider FROM quota_events LIMIT 1",
        "SELECT key FROM pending ORDER BY key LIMIT 1",
        "SELECT key FROM pending ORDER BY queued_at, key LIMIT 1",
        "SELECT reason FROM pending LIMIT 1",
        "SELECT writer, digest FROM processes LIMIT 1",
        "SELECT guid FROM process_conflicts ORDER BY guid, writer LIMIT 1",
        "SELECT id, sid, user FROM process_writers ORDER BY id LIMIT 1",
    ] {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(())
}
