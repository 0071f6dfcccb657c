//! The Sigma rules each process's creation matched, so that
//! `lineage_sigma` names them for ancestors that come from the process
//! table rather than from the search's own rows.
//!
//! Matches are recorded by rule *fingerprint* (schema v5: a digest of the
//! rule's id, its whole file and the engine's semantics), not by bare id:
//! after a rule set changes, a stored match counts only for a search that
//! loaded that very version of the rule. Only matches are recorded; a rule
//! a search has that no earlier search evaluated on a stored creation is
//! simply not named for it (the creation's fields are not stored).

use super::{Result, StateStore};
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;

/// Most GUIDs asked per statement (SQLite's default variable limit is
/// 32,766; a chunk's ancestors from state are far fewer).
const BATCH: usize = 500;

/// Fingerprints kept per process at most (this search's first): SigmaHQ's
/// noisiest creation matches a few dozen rules, but every rule change adds
/// fingerprints that no later search may load again.
pub const MAX_STORED: usize = 256;

/// The stored text: fingerprints as 16 hex digits, comma-separated.
fn encode(fps: &[u64]) -> String {
    let mut s = String::with_capacity(fps.len() * 17);
    for (i, f) in fps.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{f:016x}"));
    }
    s
}

/// The fingerprints of a stored text; anything else in it is ignored.
fn decode(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.split(',')
        .map(str::trim)
        .filter(|t| t.len() == 16)
        .filter_map(|t| u64::from_str_radix(t, 16).ok())
}

impl StateStore {
    /// Records the fingerprints of the rules that processes' creations
    /// matched: `(guid, digest, fingerprints)`, where `digest` is the
    /// digest of the creation the rules were evaluated on. A row is kept
    /// only while the table holds that very creation for the GUID (the
    /// trust rule of the process table: matches of a forged or
    /// contradicting creation never name a stored process). Fingerprints
    /// already recorded stay (a search with fewer rules,
    /// `sigma_min_level=high` say, does not erase what a fuller search
    /// found; one with another version of a rule adds its own), up to
    /// [`MAX_STORED`]. Returns how many processes were recorded.
    pub fn put_process_sigma(&self, rows: &[(u128, i64, &[u64])]) -> Result<usize> {
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
            for (guid, digest, fps) in rows {
                let key = &guid.to_be_bytes()[..];
                let old: Option<Option<String>> = stored
                    .query_row(params![key, digest], |r| r.get(0))
                    .optional()?;
                let Some(old) = old else {
                    continue; // not this creation in the table: not trusted
                };
                let mut all: Vec<u64> = Vec::with_capacity(fps.len());
                for f in fps
                    .iter()
                    .copied()
                    .chain(decode(old.as_deref().unwrap_or("")))
                {
                    if !all.contains(&f) && all.len() < MAX_STORED {
                        all.push(f);
                    }
                }
                recorded += 1;
                // A search over a window an earlier one saw (scheduled
                // searches overlap) finds what is stored: nothing to write.
                let encoded = encode(&all);
                if old.as_deref() == Some(encoded.as_str()) {
                    continue;
                }
                put.execute(params![key, encoded])?;
            }
            Ok(recorded)
        })
    }

    /// The recorded fingerprints of those of `guids` that have any.
    pub fn process_sigma(&self, guids: &[u128]) -> Result<HashMap<u128, Vec<u64>>> {
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
                    out.insert(u128::from_be_bytes(b), decode(&rules).collect());
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
            s.put_process_sigma(&[(7, 70, &[0xb, 0xa]), (9, 90, &[0xc])])
                .unwrap(),
            2
        );
        let got = s.process_sigma(&[7, 8, 9]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&7], [0xb, 0xa]);
        // A later search (another rule set) adds to what was found; it
        // does not erase it.
        s.put_process_sigma(&[(7, 70, &[0xd, 0xa])]).unwrap();
        assert_eq!(s.process_sigma(&[7]).unwrap()[&7], [0xd, 0xa, 0xb]);
        // Bounded, this search's first.
        let many: Vec<u64> = (100..100 + MAX_STORED as u64).collect();
        s.put_process_sigma(&[(7, 70, &many)]).unwrap();
        assert_eq!(s.process_sigma(&[7]).unwrap()[&7], many);
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

    /// A call with many rows, one GUID twice among them, keeps every
    /// match.
    #[test]
    fn many_rows_and_a_guid_twice_in_one_call() {
        let s = StateStore::open_in_memory().unwrap();
        let n = 600;
        for g in 1..=n {
            process(&s, g, g as i64 * 10);
        }
        let fps: Vec<[u64; 1]> = (1..=n).map(|g| [g as u64]).collect();
        let mut rows: Vec<(u128, i64, &[u64])> = (1..=n)
            .map(|g| (g, g as i64 * 10, &fps[g as usize - 1][..]))
            .collect();
        rows.push((5, 50, &[0xee]));
        // Unknown, and a contradicting creation, among them.
        rows.push((n + 1, 1, &[1]));
        rows.push((6, 61, &[2]));
        assert_eq!(s.put_process_sigma(&rows).unwrap(), n as usize + 1);
        let guids: Vec<u128> = (1..=n + 1).collect();
        let got = s.process_sigma(&guids).unwrap();
        assert_eq!(got.len(), n as usize);
        assert_eq!(got[&5], [0xee, 5]);
        assert_eq!(got[&6], [6]);
        assert_eq!(got[&n], [n as u64]);
    }

    #[test]
    fn matches_of_another_creation_or_an_unknown_process_are_refused() {
        let s = StateStore::open_in_memory().unwrap();
        process(&s, 7, 70);
        // Evaluated on a creation that contradicts the stored one, and on
        // a process the table does not hold.
        assert_eq!(
            s.put_process_sigma(&[(7, 71, &[1]), (8, 80, &[2])])
                .unwrap(),
            0
        );
        assert!(s.process_sigma(&[7, 8]).unwrap().is_empty());
    }

    #[test]
    fn bare_rule_ids_of_schema_v4_are_dropped_by_the_migration() {
        use super::super::schema::{APPLICATION_ID, MIGRATIONS};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..4] {
                conn.execute_batch(m).unwrap();
            }
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 4;
                 INSERT INTO processes (guid, image, command_line, parent_image,
                     parent_command_line, host, time, seen_at, digest)
                 VALUES (x'00000000000000000000000000000007', '', '', '', '', '',
                     0, 0, 70);
                 INSERT INTO process_sigma VALUES
                     (x'00000000000000000000000000000007',
                      '0123456789abcdef,5f0bbd2e-0000-0000-0000-000000000001');"
            ))
            .unwrap();
        }
        let s = StateStore::open(&path, &Default::default()).unwrap();
        // Which version of those rules matched, under which engine, is
        // unknown: nothing of them is trusted, not even an id that reads
        // like a fingerprint. The process itself stays.
        assert!(s.process_sigma(&[7]).unwrap().is_empty());
        assert_eq!(s.put_process_sigma(&[(7, 70, &[5])]).unwrap(), 1);
        assert_eq!(s.process_sigma(&[7]).unwrap()[&7], [5]);
    }
}
