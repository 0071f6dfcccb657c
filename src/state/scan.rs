//! Whole-table reads in pages: what `sysmonenrich state push` copies from
//! this search head's database to the shared tier.
//!
//! Why pages by key rather than one query: the process table holds up to
//! two million rows, which must not sit in memory at once, and one read
//! transaction held for the whole copy (minutes over the network) would
//! keep every search's WAL from being checkpointed meanwhile. Each page is
//! its own short read that starts after the last key of the previous one,
//! so a row is never returned twice and concurrent writes are simply
//! picked up or not.

use rusqlite::types::ValueRef;

use super::cache::decode as decode_answer;
use super::processes::{decode as decode_process, COLUMNS};
use super::{CachedEntry, Result, StateStore, StoredProcess};

/// One page of the process table, in GUID order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessPage {
    /// The processes, each with the digest of its stored creation (`None`
    /// for rows written before digests existed).
    pub rows: Vec<(StoredProcess, Option<i64>)>,
    /// Rows of the page that could not be decoded (wrong column types in a
    /// hand-edited file): counted, not returned.
    pub skipped: usize,
    /// Where the next page starts; `None` when this was the last one.
    pub next: Option<u128>,
}

/// One unexpired cached answer with its provider and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    /// The provider that answered.
    pub provider: String,
    /// The cache key (`sha256:<hex>`, …).
    pub key: String,
    /// The answer and its times.
    pub entry: CachedEntry,
}

impl StateStore {
    /// Up to `limit` processes with a GUID greater than `after` (from the
    /// first when `None`), in GUID order.
    pub fn processes_page(&self, after: Option<u128>, limit: usize) -> Result<ProcessPage> {
        let limit = limit.max(1);
        let start = after.map_or([0u8; 16], u128::to_be_bytes);
        // `>=` on the zero key: GUID 0 is never stored, so from the start
        // this is `>` all the same.
        let op = if after.is_some() { ">" } else { ">=" };
        let sql = format!(
            "SELECT {COLUMNS}, digest FROM processes WHERE guid {op} ?1 ORDER BY guid LIMIT ?2"
        );
        self.read("reading the process table", |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params![start, super::to_i64(limit)])?;
            let mut page = ProcessPage::default();
            let mut read = 0usize;
            let mut last = None;
            while let Some(row) = rows.next()? {
                read += 1;
                if let ValueRef::Blob(b) = row.get_ref(0)? {
                    if let Ok(bytes) = <[u8; 16]>::try_from(b) {
                        last = Some(u128::from_be_bytes(bytes));
                    }
                }
                let digest = match row.get_ref(13)? {
                    ValueRef::Integer(d) => Some(d),
                    _ => None,
                };
                match decode_process(row)? {
                    Some(p) => page.rows.push((p, digest)),
                    None => page.skipped += 1,
                }
            }
            page.next = if read == limit { last } else { None };
            Ok(page)
        })
    }

    /// Up to `limit` answers still valid at `now` that come after `after`
    /// (provider, key) in (provider, key) order.
    pub fn cache_page(
        &self,
        after: Option<(&str, &str)>,
        now: i64,
        limit: usize,
    ) -> Result<Vec<CachedAnswer>> {
        let limit = super::to_i64(limit.max(1));
        self.read("reading the reputation cache", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT json, checked_at, expires_at, provider, key FROM reputation_cache \
                 WHERE (provider, key) > (?1, ?2) AND expires_at > ?3 \
                 ORDER BY provider, key LIMIT ?4",
            )?;
            // '' sorts before every stored provider name.
            let (p, k) = after.unwrap_or(("", ""));
            let mut rows = stmt.query(rusqlite::params![p, k, now, limit])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let name = |i| match row.get_ref(i) {
                    Ok(ValueRef::Text(t)) => Some(String::from_utf8_lossy(t).into_owned()),
                    _ => None,
                };
                if let (Some(provider), Some(key), Some(entry)) =
                    (name(3), name(4), decode_answer(row)?)
                {
                    out.push(CachedAnswer {
                        provider,
                        key,
                        entry,
                    });
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::CachePut;

    fn process(guid: u128) -> StoredProcess {
        StoredProcess {
            guid,
            parent_guid: Some(guid + 1_000),
            image: format!("C:\\p{guid}.exe"),
            command_line: format!("p{guid}"),
            parent_image: String::new(),
            parent_command_line: String::new(),
            host: "h".into(),
            time: 1.0,
            md5: None,
            sha1: None,
            sha256: Some("ab".repeat(32)),
            imphash: None,
            seen_at: 100,
        }
    }

    #[test]
    fn process_pages_cover_the_table_once_in_order() {
        let store = StateStore::open_in_memory().unwrap();
        let all: Vec<StoredProcess> = (1..=25u128).rev().map(|g| process(g << 64 | g)).collect();
        store.put_processes(&all).unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.processes_page(after, 10).unwrap();
            assert_eq!(page.skipped, 0);
            seen.extend(page.rows.iter().map(|(p, _)| p.guid));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut want: Vec<u128> = all.iter().map(|p| p.guid).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        let first = store.processes_page(None, 1).unwrap();
        assert_eq!(first.rows[0].0, process(1 << 64 | 1));
    }

    #[test]
    fn cache_pages_skip_expired_answers() {
        let store = StateStore::open_in_memory().unwrap();
        let keys: Vec<String> = (0..7).map(|i| format!("sha256:{i:064x}")).collect();
        let puts: Vec<CachePut<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| CachePut {
                key: k,
                json: "{}",
                checked_at: 1_000,
                // Every third one is already expired at 2_000.
                ttl_secs: if i % 3 == 0 { 500 } else { 5_000 },
            })
            .collect();
        store.cache_put_many("virustotal", &puts).unwrap();
        store.cache_put_many("hashlookup", &puts[..2]).unwrap();
        let mut got = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = store
                .cache_page(
                    after.as_ref().map(|(p, k)| (p.as_str(), k.as_str())),
                    2_000,
                    2,
                )
                .unwrap();
            if page.is_empty() {
                break;
            }
            let last = page.last().unwrap();
            after = Some((last.provider.clone(), last.key.clone()));
            got.extend(page.into_iter().map(|a| (a.provider, a.key)));
        }
        let mut want: Vec<(String, String)> = vec![("hashlookup".into(), keys[1].clone())];
        for (i, k) in keys.iter().enumerate() {
            if i % 3 != 0 {
                want.push(("virustotal".into(), k.clone()));
            }
        }
        assert_eq!(got, want);
    }
}
