//! The reputation cache: provider answers, by provider and key, with a TTL.
//!
//! The answer is opaque JSON text owned by the reputation module; this file
//! only knows when it was checked and when it expires. The caller picks the
//! TTL per answer (long for "found", short for "not found", since a new
//! sample may be uploaded tomorrow) and normalises keys (lower-case hex,
//! tagged with the algorithm, e.g. `sha256:…`) so that one hash is one
//! entry.
//!
//! **Errors are never cached**, and there is deliberately no API to do so:
//! a timeout, a 429 or a 503 says nothing about the file, and caching it
//! would hide a malicious hash until the entry expired. The caller's
//! contract is to store answers only, and to queue everything else with
//! [`StateStore::pending_add`].
//!
//! Expired entries are invisible to reads at once and deleted by
//! [`StateStore::cache_purge_expired`]; [`StateStore::cache_trim`] caps the
//! row count. Both run at the end of every search that looked hashes up
//! (`enrich::retention`), deleting in batches so that other searches'
//! writes never wait for a whole purge.

use std::collections::HashMap;
use std::sync::OnceLock;

use rusqlite::types::ValueRef;
use rusqlite::{params, OptionalExtension, Row};

use super::batch::{bind_padded, placeholders, IN_BATCH};
use super::processes::text;
use super::{count, to_i64, Result, StateStore};

/// One cached provider answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    /// The answer as the reputation module serialised it.
    pub json: String,
    /// Epoch seconds when the provider answered.
    pub checked_at: i64,
    /// Epoch seconds from which the entry is no longer returned.
    pub expires_at: i64,
}

/// One entry for [`StateStore::cache_put_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePut<'a> {
    /// Normalised key, e.g. `sha256:<hex>`.
    pub key: &'a str,
    /// The answer.
    pub json: &'a str,
    /// Epoch seconds when the provider answered.
    pub checked_at: i64,
    /// Seconds the answer stays valid; 0 or less stores an entry that is
    /// already expired (it replaces, and so invalidates, an older one).
    pub ttl_secs: i64,
}

const UPSERT: &str = "INSERT INTO reputation_cache \
                      (provider, key, json, checked_at, expires_at) \
                      VALUES (?1, ?2, ?3, ?4, ?5) \
                      ON CONFLICT (provider, key) DO UPDATE SET \
                      json = excluded.json, \
                      checked_at = excluded.checked_at, \
                      expires_at = excluded.expires_at";

impl StateStore {
    /// The unexpired answer of `provider` for `key` at `now` (epoch
    /// seconds), if any. An entry expires when `now >= expires_at`.
    pub fn cache_get(&self, provider: &str, key: &str, now: i64) -> Result<Option<CachedEntry>> {
        let row = self.read("reading the reputation cache", |conn| {
            conn.prepare_cached(
                "SELECT json, checked_at, expires_at FROM reputation_cache \
                 WHERE provider = ?1 AND key = ?2 AND expires_at > ?3",
            )?
            .query_row(params![provider, key, now], decode)
            .optional()
        })?;
        Ok(row.flatten())
    }

    /// [`StateStore::cache_get`] for a whole chunk's keys at once: the
    /// unexpired entries found, by key. Keys not found are absent.
    pub fn cache_get_many(
        &self,
        provider: &str,
        keys: &[&str],
        now: i64,
    ) -> Result<HashMap<String, CachedEntry>> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!(
                "SELECT json, checked_at, expires_at, key \
                 FROM reputation_cache \
                 WHERE provider = ?1 AND expires_at > ?2 AND key IN ({})",
                placeholders(IN_BATCH)
            )
        });
        self.read("reading the reputation cache", |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut found = HashMap::with_capacity(keys.len());
            for batch in keys.chunks(IN_BATCH) {
                stmt.raw_bind_parameter(1, provider)?;
                stmt.raw_bind_parameter(2, now)?;
                bind_padded(&mut stmt, 3, batch)?;
                let mut rows = stmt.raw_query();
                while let Some(row) = rows.next()? {
                    let key = text(row.get_ref(3)?).flatten();
                    if let (Some(key), Some(entry)) = (key, decode(row)?) {
                        found.insert(key, entry);
                    }
                }
            }
            Ok(found)
        })
    }

    /// Stores (or replaces) the answer of `provider` for `key`, valid for
    /// `ttl_secs` from `checked_at`. Only answers belong here, never errors
    /// (see the module docs).
    pub fn cache_put(
        &self,
        provider: &str,
        key: &str,
        json: &str,
        checked_at: i64,
        ttl_secs: i64,
    ) -> Result<()> {
        let entry = CachePut {
            key,
            json,
            checked_at,
            ttl_secs,
        };
        self.cache_put_many(provider, &[entry]).map(|_| ())
    }

    /// Stores many answers of one provider in one transaction; returns the
    /// number stored.
    pub fn cache_put_many(&self, provider: &str, entries: &[CachePut<'_>]) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        self.write("writing the reputation cache", |tx| {
            let mut stmt = tx.prepare_cached(UPSERT)?;
            for e in entries {
                let expires_at = e.checked_at.saturating_add(e.ttl_secs);
                stmt.execute(params![provider, e.key, e.json, e.checked_at, expires_at])?;
            }
            Ok(entries.len())
        })
    }

    /// Forgets the answer of `provider` for `key` (e.g. `refresh=true`
    /// found it stale); returns whether there was one.
    pub fn cache_delete(&self, provider: &str, key: &str) -> Result<bool> {
        self.write("deleting from the reputation cache", |tx| {
            tx.prepare_cached("DELETE FROM reputation_cache WHERE provider = ?1 AND key = ?2")?
                .execute(params![provider, key])
                .map(|n| n > 0)
        })
    }

    /// Deletes every entry expired at `now`; returns how many.
    pub fn cache_purge_expired(&self, now: i64) -> Result<u64> {
        self.delete_batched("purging the reputation cache", |tx, most| {
            tx.prepare_cached(
                "DELETE FROM reputation_cache WHERE rowid IN \
                 (SELECT rowid FROM reputation_cache WHERE expires_at <= ?1 LIMIT ?2)",
            )?
            .execute(params![now, to_i64(most)])
            .map(|n| n as u64)
        })
    }

    /// Keeps at most `max_rows` entries, deleting those closest to expiry
    /// first (they are worth least); returns how many were deleted. 0 means
    /// no cap.
    pub fn cache_trim(&self, max_rows: u64) -> Result<u64> {
        if max_rows == 0 {
            return Ok(0);
        }
        self.delete_batched("trimming the reputation cache", |tx, most| {
            let rows = count(tx, "reputation_cache")?;
            if rows <= max_rows {
                return Ok(0);
            }
            tx.prepare_cached(
                "DELETE FROM reputation_cache WHERE rowid IN \
                 (SELECT rowid FROM reputation_cache \
                  ORDER BY expires_at, rowid LIMIT ?1)",
            )?
            .execute([to_i64((rows - max_rows).min(most))])
            .map(|n| n as u64)
        })
    }

    /// Entries in the cache, expired ones included until purged.
    pub fn cache_count(&self) -> Result<u64> {
        self.read("counting the reputation cache", |conn| {
            count(conn, "reputation_cache")
        })
    }
}

/// Decodes `json, checked_at, expires_at`; `Ok(None)` for wrong types.
pub(super) fn decode(row: &Row<'_>) -> rusqlite::Result<Option<CachedEntry>> {
    let (ValueRef::Text(json), ValueRef::Integer(checked_at), ValueRef::Integer(expires_at)) =
        (row.get_ref(0)?, row.get_ref(1)?, row.get_ref(2)?)
    else {
        return Ok(None);
    };
    let Ok(json) = std::str::from_utf8(json) else {
        return Ok(None);
    };
    Ok(Some(CachedEntry {
        json: json.to_owned(),
        checked_at,
        expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_upsert() {
        let store = StateStore::open_in_memory().unwrap();
        assert_eq!(store.cache_get("vt", "sha256:aa", 100).unwrap(), None);
        store
            .cache_put("vt", "sha256:aa", r#"{"v":1}"#, 100, 3600)
            .unwrap();
        let want = CachedEntry {
            json: r#"{"v":1}"#.into(),
            checked_at: 100,
            expires_at: 3700,
        };
        assert_eq!(store.cache_get("vt", "sha256:aa", 200).unwrap(), Some(want));
        // Per provider.
        assert_eq!(store.cache_get("mb", "sha256:aa", 200).unwrap(), None);

        store
            .cache_put("vt", "sha256:aa", r#"{"v":2}"#, 150, 60)
            .unwrap();
        let got = store.cache_get("vt", "sha256:aa", 200).unwrap().unwrap();
        assert_eq!((got.json.as_str(), got.expires_at), (r#"{"v":2}"#, 210));
        assert_eq!(store.cache_count().unwrap(), 1);

        assert!(store.cache_delete("vt", "sha256:aa").unwrap());
        assert!(!store.cache_delete("vt", "sha256:aa").unwrap());
        assert_eq!(store.cache_count().unwrap(), 0);
    }

    #[test]
    fn expiry_and_purge() {
        let store = StateStore::open_in_memory().unwrap();
        store.cache_put("vt", "found", "{}", 1000, 86_400).unwrap();
        store.cache_put("vt", "notfound", "{}", 1000, 600).unwrap();
        store.cache_put("vt", "zero", "{}", 1000, 0).unwrap();

        assert!(store.cache_get("vt", "zero", 1000).unwrap().is_none());
        assert!(store.cache_get("vt", "notfound", 1599).unwrap().is_some());
        assert!(store.cache_get("vt", "notfound", 1600).unwrap().is_none());
        assert!(store.cache_get("vt", "found", 1600).unwrap().is_some());

        assert_eq!(store.cache_purge_expired(1600).unwrap(), 2);
        assert_eq!(store.cache_count().unwrap(), 1);
        assert_eq!(store.cache_purge_expired(1600).unwrap(), 0);
        assert_eq!(store.cache_purge_expired(1000 + 86_400).unwrap(), 1);
    }

    #[test]
    fn many_at_once() {
        let store = StateStore::open_in_memory().unwrap();
        let keys: Vec<String> = (0..700).map(|i| format!("sha256:{i:064x}")).collect();
        let entries: Vec<CachePut<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| CachePut {
                key: k,
                json: "{\"n\":1}",
                checked_at: 0,
                // Every third entry is already expired at now=10.
                ttl_secs: if i % 3 == 0 { 5 } else { 100 },
            })
            .collect();
        assert_eq!(store.cache_put_many("vt", &entries).unwrap(), 700);

        let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
        wanted.push("sha256:unknown");
        wanted.push(keys[1].as_str());
        let found = store.cache_get_many("vt", &wanted, 10).unwrap();
        assert_eq!(found.len(), 700 - 234);
        assert!(found.contains_key(&keys[1]));
        assert!(!found.contains_key(&keys[0]));
        assert!(store.cache_get_many("mb", &wanted, 10).unwrap().is_empty());
        assert!(store.cache_get_many("vt", &[], 10).unwrap().is_empty());
    }

    #[test]
    fn trim_keeps_the_longest_lived() {
        let store = StateStore::open_in_memory().unwrap();
        for i in 0..10 {
            store
                .cache_put("vt", &format!("k{i}"), "{}", 0, 100 + i)
                .unwrap();
        }
        assert_eq!(store.cache_trim(0).unwrap(), 0);
        assert_eq!(store.cache_trim(3).unwrap(), 7);
        let left = store.cache_get_many("vt", &["k7", "k8", "k9", "k0"], 0);
        let mut left: Vec<String> = left.unwrap().into_keys().collect();
        left.sort();
        assert_eq!(left, ["k7", "k8", "k9"]);
    }

    /// More rows than one delete batch: every one goes, in several
    /// transactions, and the cap still keeps the longest-lived.
    #[test]
    fn purge_and_trim_run_past_one_batch() {
        let store = StateStore::open_in_memory().unwrap();
        let keys: Vec<String> = (0..25_000).map(|i| format!("k{i}")).collect();
        let entries: Vec<CachePut> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| CachePut {
                key,
                json: "{}",
                checked_at: 0,
                // The first 12,000 expire at 100 or before, the rest later.
                ttl_secs: if i < 12_000 { 100 } else { 1000 + i as i64 },
            })
            .collect();
        store.cache_put_many("vt", &entries).unwrap();
        assert_eq!(store.cache_purge_expired(100).unwrap(), 12_000);
        assert_eq!(store.cache_count().unwrap(), 13_000);
        store.cache_put_many("mb", &entries[..11_000]).unwrap();
        assert_eq!(store.cache_trim(1_000).unwrap(), 23_000);
        assert_eq!(store.cache_count().unwrap(), 1_000);
        let last = keys[24_999].as_str();
        assert!(store
            .cache_get_many("vt", &[last], 200)
            .unwrap()
            .contains_key(last));
    }

    #[test]
    fn rows_with_wrong_types_are_skipped() {
        let store = StateStore::open_in_memory().unwrap();
        store.cache_put("vt", "good", "{}", 0, 100).unwrap();
        store
            .lock()
            .execute_batch(
                "INSERT INTO reputation_cache VALUES ('vt', 'blob', x'7b7d', 0, 100);
                 INSERT INTO reputation_cache VALUES ('vt', 'when', '{}', 'noon', 100);",
            )
            .unwrap();
        assert_eq!(store.cache_get("vt", "blob", 1).unwrap(), None);
        assert_eq!(store.cache_get("vt", "when", 1).unwrap(), None);
        let found = store
            .cache_get_many("vt", &["good", "blob", "when"], 1)
            .unwrap();
        assert_eq!(found.len(), 1);
    }
}
