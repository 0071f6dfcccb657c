//! Opening, failure modes and whole-store operations.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::processes::tests::process;
use super::*;

fn short_timeout() -> StateOptions {
    StateOptions {
        busy_timeout: Duration::from_millis(200),
    }
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<StateStore>();
    check::<StateError>();
}

#[test]
fn open_creates_directories_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/sysmonenrich/state.db");
    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
    assert!(path.exists());
    let conn = store.lock();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = StateStore::open(&path, &StateOptions::default()).unwrap();
        store.put_processes(&[process(42, None)]).unwrap();
        store.cache_put("vt", "k", "{}", 0, 100).unwrap();
        store.pending_add("k2", "quota", 0).unwrap();
    }
    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
    assert_eq!(store.get_processes(&[42]).unwrap().len(), 1);
    assert!(store.cache_get("vt", "k", 1).unwrap().is_some());
    assert_eq!(store.pending_count().unwrap(), 1);
}

#[test]
fn random_bytes_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // Deterministic "random" bytes (xorshift), several pages' worth.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let bytes: Vec<u8> = (0..3 * 4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let err = StateStore::open(&path, &short_timeout()).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(!err.is_locked());
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("not a database"), "{text}");
}

/// Writes a database with enough rows for many pages, closes it (which
/// checkpoints the WAL into the file) and returns its bytes.
fn populated_file(path: &Path) -> Vec<u8> {
    let store = StateStore::open(path, &StateOptions::default()).unwrap();
    let rows: Vec<_> = (1..=3000u128).map(|g| process(g, None)).collect();
    store.put_processes(&rows).unwrap();
    for i in 0..500 {
        store
            .cache_put("vt", &format!("k{i}"), &"x".repeat(300), 0, 100)
            .unwrap();
    }
    drop(store);
    std::fs::read(path).unwrap()
}

#[test]
fn truncated_files_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let full = populated_file(&path);
    assert!(full.len() > 100 * 4096, "{}", full.len());
    for keep in [50, 4096, 3 * 4096, full.len() / 2, full.len() - 4096] {
        let path = dir.path().join(format!("truncated-{keep}.db"));
        std::fs::write(&path, &full[..keep]).unwrap();
        let failure = match StateStore::open(&path, &short_timeout()) {
            Err(e) => e,
            // Damage beyond what the open-time probe reads shows up at
            // the first query that meets it, and in the full check.
            Ok(store) => {
                println!("truncated to {keep}: open succeeded");
                store.check_integrity().unwrap_err()
            }
        };
        println!("truncated to {keep}: {failure}");
        assert!(failure.is_corrupt(), "keep {keep}: {failure}");
    }
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let err = StateStore::open(&path, &short_timeout()).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE t; PRAGMA application_id = 7;")
            .unwrap();
    }
    let err = StateStore::open(&path, &short_timeout()).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(err.to_string().contains("application_id"), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(StateStore::open(&path, &StateOptions::default()).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1)
        .unwrap();
    let err = StateStore::open(&path, &short_timeout()).unwrap_err();
    assert!(matches!(err.kind(), StateErrorKind::TooNew { .. }), "{err}");
    assert!(!err.is_corrupt() && !err.is_locked());
}

/// A fresh file that another process holds exclusively (rollback journal,
/// `BEGIN EXCLUSIVE`): `open` cannot even read it and must give up after
/// the busy timeout, not hang.
#[test]
fn open_of_an_exclusively_locked_file_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch(
            "PRAGMA journal_mode = DELETE; CREATE TABLE x (y);
             BEGIN EXCLUSIVE; INSERT INTO x VALUES (1);",
        )
        .unwrap();
    let started = Instant::now();
    let err = StateStore::open(&path, &short_timeout()).unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_locked(), "{err}");
    assert!(!err.is_corrupt());
    assert!(err.to_string().contains("200 ms"), "{err}");
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    holder.execute_batch("ROLLBACK").unwrap();
}

/// In WAL mode a writer does not block readers, so `open` of a file that
/// another search is writing succeeds; our own write then waits for the
/// busy timeout and reports `is_locked`, and succeeds once the lock is
/// released.
#[test]
fn write_while_another_connection_writes_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(StateStore::open(&path, &StateOptions::default()).unwrap());

    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let store = StateStore::open(&path, &short_timeout()).unwrap();
    assert_eq!(store.process_count().unwrap(), 0, "reads still work");

    let started = Instant::now();
    let err = store.cache_put("vt", "k", "{}", 0, 100).unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_locked(), "{err}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let err = store.quota_acquire("vt", 0, 4, 500).unwrap_err();
    assert!(err.is_locked(), "{err}");
    assert_eq!(err.operation(), "acquiring quota");

    holder.execute_batch("COMMIT").unwrap();
    store.cache_put("vt", "k", "{}", 0, 100).unwrap();
    assert_eq!(
        store.quota_acquire("vt", 0, 4, 500).unwrap(),
        QuotaDecision::Granted
    );
}

#[test]
fn concurrent_first_opens_create_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/state.db");
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = StateStore::open(&path, &StateOptions::default()).unwrap();
                store.pending_add(&format!("k{i}"), "quota", i).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
    assert_eq!(store.pending_count().unwrap(), 6);
}

#[test]
fn stats_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
    store
        .put_processes(&[process(1, None), process(2, Some(1))])
        .unwrap();
    store.cache_put("vt", "a", "{}", 0, 10).unwrap();
    store.cache_put("vt", "b", "{}", 0, 10).unwrap();
    store.cache_put("mb", "a", "{}", 0, 10).unwrap();
    store.pending_add("p", "quota", 0).unwrap();
    store.quota_acquire("vt", 0, 0, 0).unwrap();

    let stats = store.stats().unwrap();
    assert_eq!(
        (
            stats.processes,
            stats.cache_entries,
            stats.pending,
            stats.quota_events
        ),
        (2, 3, 1, 1)
    );
    assert_eq!(stats.schema_version, schema::SCHEMA_VERSION);
    assert!(stats.file_bytes + stats.wal_bytes > 0);
    assert_eq!(stats.path, path);

    assert_eq!(store.purge(PurgeTarget::Cache).unwrap(), 3);
    assert_eq!(store.cache_count().unwrap(), 0);
    assert_eq!(store.process_count().unwrap(), 2);
    assert_eq!(store.purge(PurgeTarget::All).unwrap(), 4);
    let stats = store.stats().unwrap();
    assert_eq!(
        stats.processes + stats.cache_entries + stats.pending + stats.quota_events,
        0
    );
    store.vacuum().unwrap();
    store.check_integrity().unwrap();
}

#[test]
fn purge_targets_parse() {
    for name in PurgeTarget::NAMES {
        assert!(name.parse::<PurgeTarget>().is_ok());
    }
    assert_eq!(" Cache ".parse::<PurgeTarget>(), Ok(PurgeTarget::Cache));
    let err = "caches".parse::<PurgeTarget>().unwrap_err();
    assert!(err.contains("processes, cache"), "{err}");
}

#[test]
fn in_memory_store_works_and_reports_no_file() {
    let store = StateStore::open_in_memory().unwrap();
    store.put_processes(&[process(1, None)]).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.processes, stats.file_bytes), (1, 0));
    assert_eq!(store.path(), Path::new(":memory:"));
}

#[test]
fn a_panic_while_holding_the_lock_does_not_break_the_store() {
    let store = std::sync::Arc::new(StateStore::open_in_memory().unwrap());
    let s = std::sync::Arc::clone(&store);
    let result = std::thread::spawn(move || {
        let conn = s.lock();
        conn.execute_batch("BEGIN; INSERT INTO pending VALUES ('x', 'r', 0, 0, 1);")
            .unwrap();
        panic!("intentional panic to poison the state lock");
    })
    .join();
    assert!(result.is_err());
    // The half-done transaction is rolled back, the store keeps working.
    assert_eq!(store.pending_count().unwrap(), 0);
    store.pending_add("y", "quota", 0).unwrap();
    assert_eq!(store.pending_count().unwrap(), 1);
}

#[test]
fn unopenable_path_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // The path is a directory.
    let err = StateStore::open(dir.path(), &short_timeout()).unwrap_err();
    assert!(!err.is_locked() && !err.is_corrupt(), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    // The parent "directory" is a file.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let err = StateStore::open(&file.join("state.db"), &short_timeout()).unwrap_err();
    assert!(matches!(err.kind(), StateErrorKind::Io { .. }), "{err}");
}

/// A full disk, as SQLite sees one (`SQLITE_FULL`, here from a page
/// limit): the batch fails whole with an error that is neither "locked" nor
/// "corrupt", what was stored before stays, and the file stays sound.
#[test]
fn a_full_disk_fails_the_batch_and_keeps_the_file_sound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
    store.put_processes(&[process(1, None)]).unwrap();
    let pages: i64 = store
        .lock()
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    store
        .lock()
        .pragma_update(None, "max_page_count", pages + 2)
        .unwrap();
    let mut big: Vec<StoredProcess> = (2..200u128).map(|g| process(g, Some(1))).collect();
    for p in &mut big {
        p.command_line = "x".repeat(4000);
    }
    let e = store.put_processes(&big).unwrap_err();
    assert!(!e.is_locked() && !e.is_corrupt(), "{e}");
    assert_eq!(store.process_count().unwrap(), 1, "all or nothing");
    drop(store);
    let store = StateStore::open(&path, &StateOptions::default()).unwrap();
    store.check_integrity().unwrap();
    assert_eq!(store.put_processes(&big).unwrap(), big.len(), "room again");
}
