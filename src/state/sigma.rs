//! The Sigma rules each process's creation matched (schema v4), so that
//! `lineage_sigma` names them for ancestors that come from the process
//! table rather than from the search's own rows.

use super::{Result, StateStore};
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;

/// Most GUIDs asked per statement (SQLite's default variable limit is
/// 32,766; a chunk's ancestors from state are far fewer).
const BATCH: usize = 500;

impl StateStore {
    /// Records the rule ids (the rules' own `id`s, comma-separated) that
    /// processes' creations matched: `(guid, digest, ids)`, where `digest`
    /// is the digest of the creation the rules were evaluated on. A row is
    /// kept only while the table holds that very creation for the GUID
    /// (the trust rule of the process table: matches of a forged or
    /// contradicting creation never name a stored process). Ids already
    /// recorded stay (a search with fewer rules, `sigma_min_level=high`
    /// say, does not erase what a fuller search found); readers leave out
    /// rules they did not load. Returns how many processes were recorded.
    pub fn put_process_sigma(&self, rows: &[(u128, i64, &str)]) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.write("recording Sigma matches", |tx| {
            let mut stored = tx.prepare_cached(
                "SELECT s.rules FROM processes p LEFT JOIN process_sigma s ON s.guid = p.guid \
                 WHERE p.guid = ?1 AND p.digest = ?2",
            )?;
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO process_sigma (guid, rules) VALUES (?1, ?2)",
            )?;
            let mut recorded = 0;
            for (guid, digest, rules) in rows {
                let key = &guid.to_be_bytes()[..];
                let old: Option<Option<String>> = stored
                    .query_row(params![key, digest], |r| r.get(0))
                    .optional()?;
                let Some(old) = old else {
                    continue; // not this creation in the table: not trusted
                };
                let mut ids: Vec<&str> = old
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .chain(rules.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                put.execute(params![key, ids.join(",")])?;
                recorded += 1;
            }
            Ok(recorded)
        })
    }

    /// The recorded rule ids of those of `guids` that have any.
    pub fn process_sigma(&self, guids: &[u128]) -> Result<HashMap<u128, String>> {
        let mut out = HashMap::new();
        for part in guids.chunks(BATCH) {
            let marks = vec!["?"; part.len()].join(",");
            let sql = format!("SELECT guid, rules FROM process_sigma WHERE guid IN ({marks})");
            let keys: Vec<[u8; 16]> = part.iter().map(|g| g.to_be_bytes()).collect();
            let rows = self.read("reading Sigma matches", |conn| {
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(keys.iter().map(|k| &k[..])),
                    |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?)),
                )?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })?;
            for (key, rules) in rows {
                if let Ok(b) = <[u8; 16]>::try_from(key.as_slice()) {
                    out.insert(u128::from_be_bytes(b), rules);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process row with `digest`, as the writer would store it.
    fn process(s: &StateStore, guid: u128, digest: i64) {
        s.write("test", |tx| {
            tx.execute(
                "INSERT INTO processes (guid, image, command_line, parent_image, \
                 parent_command_line, host, time, seen_at, digest) \
                 VALUES (?1,'','','','','',0,0,?2)",
                params![&guid.to_be_bytes()[..], digest],
            )?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn matches_round_trip_and_go_with_their_process() {
        let s = StateStore::open_in_memory().unwrap();
        process(&s, 7, 70);
        process(&s, 9, 90);
        assert_eq!(
            s.put_process_sigma(&[(7, 70, "b,a"), (9, 90, "c")])
                .unwrap(),
            2
        );
        let got = s.process_sigma(&[7, 8, 9]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&7], "a,b");
        // A later search adds to what was found; it does not erase it.
        s.put_process_sigma(&[(7, 70, "d,a")]).unwrap();
        assert_eq!(s.process_sigma(&[7]).unwrap()[&7], "a,b,d");
        // Pruning a process drops its matches (the trigger of schema v4).
        s.write("test", |tx| {
            tx.execute(
                "DELETE FROM processes WHERE guid = ?1",
                [&9u128.to_be_bytes()[..]],
            )?;
            Ok(())
        })
        .unwrap();
        assert!(s.process_sigma(&[9]).unwrap().is_empty());
    }

    #[test]
    fn matches_of_another_creation_or_an_unknown_process_are_refused() {
        let s = StateStore::open_in_memory().unwrap();
        process(&s, 7, 70);
        // Evaluated on a creation that contradicts the stored one, and on
        // a process the table does not hold.
        assert_eq!(
            s.put_process_sigma(&[(7, 71, "x"), (8, 80, "y")]).unwrap(),
            0
        );
        assert!(s.process_sigma(&[7, 8]).unwrap().is_empty());
    }
}
