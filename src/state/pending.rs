//! The pending queue: hashes a search could not look up.
//!
//! When the quota, the time budget or `max_lookups` runs out, or a provider
//! times out, the row says `rep_verdict=pending` and the hash is queued
//! here, so that a later search (or the CLI) resolves it first. The key is
//! the caller's normalised hash key; the reason is a short word for the
//! summary (`quota`, `timeout`, `budget`, `http 503`).
//!
//! An entry keeps its first `queued_at`, so that the queue is served oldest
//! first however often the hash is seen again; `attempts` counts how often
//! it was queued, which tells an admin a hash that never gets through.

use std::collections::BTreeMap;

use rusqlite::types::ValueRef;
use rusqlite::{params, Row};

use super::processes::text;
use super::{count, to_i64, Result, StateStore};

/// One queued lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The normalised hash key.
    pub key: String,
    /// Why it was queued the last time.
    pub reason: String,
    /// Epoch seconds when it was first queued.
    pub queued_at: i64,
    /// Epoch seconds when it was last queued.
    pub updated_at: i64,
    /// How many times it was queued.
    pub attempts: u32,
}

const UPSERT: &str = "INSERT INTO pending (key, reason, queued_at, updated_at, attempts) \
                      VALUES (?1, ?2, ?3, ?3, 1) \
                      ON CONFLICT (key) DO UPDATE SET \
                      reason = excluded.reason, \
                      updated_at = excluded.updated_at, \
                      attempts = min(attempts + 1, 4294967295)";

impl StateStore {
    /// Queues `key` for a later lookup, or, if it is already queued, keeps
    /// its place in the queue, records the new reason and counts one more
    /// attempt.
    pub fn pending_add(&self, key: &str, reason: &str, now: i64) -> Result<()> {
        self.pending_add_many(&[(key, reason)], now).map(|_| ())
    }

    /// [`StateStore::pending_add`] for many `(key, reason)` pairs in one
    /// transaction; returns how many were written.
    pub fn pending_add_many(&self, entries: &[(&str, &str)], now: i64) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        self.write("queueing pending lookups", |tx| {
            let mut stmt = tx.prepare_cached(UPSERT)?;
            for (key, reason) in entries {
                stmt.execute(params![key, reason, now])?;
            }
            Ok(entries.len())
        })
    }

    /// Up to `limit` queued entries, oldest first. They stay queued until
    /// [`StateStore::pending_remove`]: a search that dies halfway loses
    /// nothing.
    pub fn pending_take(&self, limit: usize) -> Result<Vec<PendingEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (entries, skipped) = self.read("reading pending lookups", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, reason, queued_at, updated_at, attempts \
                 FROM pending ORDER BY queued_at, key LIMIT ?1",
            )?;
            let mut rows = stmt.query([to_i64(limit)])?;
            let mut entries = Vec::new();
            let mut skipped = 0usize;
            while let Some(row) = rows.next()? {
                match decode(row)? {
                    Some(e) => entries.push(e),
                    None => skipped += 1,
                }
            }
            Ok((entries, skipped))
        })?;
        if skipped > 0 {
            log::warn!(
                "state database {}: skipped {skipped} undecodable pending rows",
                self.path.display()
            );
        }
        Ok(entries)
    }

    /// Removes `key` from the queue (it was resolved); returns whether it
    /// was queued.
    pub fn pending_remove(&self, key: &str) -> Result<bool> {
        self.pending_remove_many(&[key]).map(|n| n > 0)
    }

    /// Removes many keys in one transaction; returns how many were queued.
    pub fn pending_remove_many(&self, keys: &[&str]) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.write("removing pending lookups", |tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM pending WHERE key = ?1")?;
            let mut removed = 0;
            for key in keys {
                removed += stmt.execute([key])?;
            }
            Ok(removed)
        })
    }

    /// Keeps at most `max_rows` entries, dropping the oldest: the searches
    /// that wanted them finished long ago, and a hash seen again is queued
    /// again. Returns how many were dropped; 0 means no cap.
    pub fn pending_trim(&self, max_rows: u64) -> Result<u64> {
        if max_rows == 0 {
            return Ok(0);
        }
        self.delete_batched("trimming pending lookups", |tx, most| {
            let rows = count(tx, "pending")?;
            if rows <= max_rows {
                return Ok(0);
            }
            tx.prepare_cached(
                "DELETE FROM pending WHERE key IN \
                 (SELECT key FROM pending ORDER BY queued_at, key LIMIT ?1)",
            )?
            .execute([to_i64((rows - max_rows).min(most))])
            .map(|n| n as u64)
        })
    }

    /// Entries in the queue.
    pub fn pending_count(&self) -> Result<u64> {
        self.read("counting pending lookups", |conn| count(conn, "pending"))
    }

    /// Entries in the queue by their latest reason.
    pub fn pending_counts_by_reason(&self) -> Result<BTreeMap<String, u64>> {
        self.read("counting pending lookups", |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT reason, count(*) FROM pending GROUP BY reason")?;
            let mut rows = stmt.query([])?;
            let mut counts = BTreeMap::new();
            while let Some(row) = rows.next()? {
                if let (Some(Some(reason)), ValueRef::Integer(n)) =
                    (text(row.get_ref(0)?), row.get_ref(1)?)
                {
                    *counts.entry(reason).or_insert(0) += u64::try_from(n).unwrap_or(0);
                }
            }
            Ok(counts)
        })
    }
}

/// Decodes one row; `Ok(None)` when a column has a type we did not write.
fn decode(row: &Row<'_>) -> rusqlite::Result<Option<PendingEntry>> {
    let (Some(Some(key)), Some(Some(reason))) = (text(row.get_ref(0)?), text(row.get_ref(1)?))
    else {
        return Ok(None);
    };
    let (ValueRef::Integer(queued_at), ValueRef::Integer(updated_at), ValueRef::Integer(attempts)) =
        (row.get_ref(2)?, row.get_ref(3)?, row.get_ref(4)?)
    else {
        return Ok(None);
    };
    Ok(Some(PendingEntry {
        key,
        reason,
        queued_at,
        updated_at,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_round_trip() {
        let store = StateStore::open_in_memory().unwrap();
        store.pending_add("sha256:bb", "quota", 200).unwrap();
        store.pending_add("sha256:aa", "timeout", 100).unwrap();
        store.pending_add("sha256:cc", "quota", 300).unwrap();
        // Seen again later: keeps its place, new reason, one more attempt.
        store.pending_add("sha256:bb", "budget", 400).unwrap();

        assert_eq!(store.pending_count().unwrap(), 3);
        let all = store.pending_take(10).unwrap();
        let keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["sha256:aa", "sha256:bb", "sha256:cc"]);
        assert_eq!(
            all[1],
            PendingEntry {
                key: "sha256:bb".into(),
                reason: "budget".into(),
                queued_at: 200,
                updated_at: 400,
                attempts: 2,
            }
        );
        // take does not remove.
        assert_eq!(store.pending_take(1).unwrap()[0].key, "sha256:aa");
        assert!(store.pending_take(0).unwrap().is_empty());

        let by_reason = store.pending_counts_by_reason().unwrap();
        assert_eq!(
            by_reason.into_iter().collect::<Vec<_>>(),
            [
                ("budget".to_string(), 1),
                ("quota".to_string(), 1),
                ("timeout".to_string(), 1)
            ]
        );

        assert!(store.pending_remove("sha256:aa").unwrap());
        assert!(!store.pending_remove("sha256:aa").unwrap());
        assert_eq!(
            store.pending_remove_many(&["sha256:bb", "nope"]).unwrap(),
            1
        );
        assert_eq!(store.pending_count().unwrap(), 1);
    }

    #[test]
    fn many_and_trim() {
        let store = StateStore::open_in_memory().unwrap();
        let keys: Vec<String> = (0..50).map(|i| format!("k{i:02}")).collect();
        for (i, k) in keys.iter().enumerate() {
            store.pending_add(k, "quota", i as i64).unwrap();
        }
        let batch: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "timeout")).collect();
        assert_eq!(store.pending_add_many(&batch, 1000).unwrap(), 50);
        assert_eq!(store.pending_take(1).unwrap()[0].attempts, 2);

        assert_eq!(store.pending_trim(0).unwrap(), 0);
        assert_eq!(store.pending_trim(10).unwrap(), 40);
        assert_eq!(store.pending_take(1).unwrap()[0].key, "k40");
    }

    #[test]
    fn rows_with_wrong_types_are_skipped() {
        let store = StateStore::open_in_memory().unwrap();
        store.pending_add("good", "quota", 5).unwrap();
        store
            .lock()
            .execute_batch("INSERT INTO pending VALUES ('bad', 'quota', 1, 1, 'many')")
            .unwrap();
        let got = store.pending_take(10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].key, "good");
    }
}
