//! Who wrote each stored process, and what contradicted it.
//!
//! The process table is shared by every search of the search head, so one
//! search's rows shape everybody's lineage for 30 days. Each row therefore
//! names the search that wrote it (sid and user, from getinfo), so that
//! `state purge processes --sid SID | --user USER` can take back what one
//! search or one user wrote; and a creation that contradicts the stored one
//! for its GUID is never stored (first write wins) but recorded in
//! `process_conflicts`, which `state stats` counts: a GUID names one
//! process for ever, so two different creations for it mean a wrong field
//! mapping or a forged event.

use std::collections::HashMap;

use rusqlite::params;

use super::processes::{ProcessRow, StoredProcess};
use super::{count, Result, StateStore};

/// The search that writes: its sid and user, as getinfo reports them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Writer {
    /// `searchinfo.sid`.
    pub sid: String,
    /// `searchinfo.username`.
    pub user: String,
}

/// A creation that contradicts the stored one for the same GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The GUID both claim.
    pub guid: u128,
    /// The fields that differ (names as in the process table).
    pub fields: Vec<&'static str>,
    /// Who wrote the stored row, when known (not for rows written before
    /// schema version 2).
    pub stored_by: Option<Writer>,
}

/// The fields in which `new` contradicts `stored`: values that differ
/// where both rows have one. An empty value is not a contradiction: a
/// narrower search (a `fields` command upstream, an event cut by
/// `TRUNCATE`) leaves fields out without claiming anything else.
pub fn contradictions(stored: &StoredProcess, new: &ProcessRow<'_>) -> Vec<&'static str> {
    let mut out = Vec::new();
    // `None` in a new row: the search had no parent GUID (no claim); the
    // store keeps Sysmon's zero "no parent" as `None`.
    if new
        .parent_guid
        .is_some_and(|g| g != stored.parent_guid.unwrap_or(0))
    {
        out.push("parent_guid");
    }
    let texts: [(&'static str, &str, &str); 5] = [
        ("image", &stored.image, &new.image),
        ("command_line", &stored.command_line, &new.command_line),
        ("parent_image", &stored.parent_image, &new.parent_image),
        (
            "parent_command_line",
            &stored.parent_command_line,
            &new.parent_command_line,
        ),
        ("host", &stored.host, &new.host),
    ];
    for (name, a, b) in texts {
        if !a.is_empty() && !b.is_empty() && !same_text(a, b) {
            out.push(name);
        }
    }
    let hashes: [(&'static str, &Option<String>, Option<&str>); 4] = [
        ("md5", &stored.md5, new.md5.as_deref()),
        ("sha1", &stored.sha1, new.sha1.as_deref()),
        ("sha256", &stored.sha256, new.sha256.as_deref()),
        ("imphash", &stored.imphash, new.imphash.as_deref()),
    ];
    for (name, a, b) in hashes {
        if let (Some(a), Some(b)) = (a.as_deref(), b) {
            if a != b {
                out.push(name);
            }
        }
    }
    out
}

/// Two readings of one value: equal, equal once XML entities are decoded
/// (the Sysmon add-on's fields keep `&amp;`, values parsed from `_raw` do
/// not), or one cut short of the other (Splunk's `TRUNCATE`, this table's
/// own cap, whose note then follows the common part).
fn same_text(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let cut = short.rfind("…[").map_or(short, |i| &short[..i]);
    if cut.len() < short.len() && long.starts_with(cut) {
        return true;
    }
    if long.starts_with(short) {
        return true;
    }
    let decode = |s: &str| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    };
    (a.contains('&') || b.contains('&')) && decode(a) == decode(b)
}

/// Writers kept before the unreferenced ones are looked for (a table scan
/// of the processes, so not at every prune).
const WRITERS_BEFORE_GC: u64 = 10_000;

impl StateStore {
    /// The number that stands for `writer` in the process table, created on
    /// first use.
    pub fn writer_id(&self, writer: &Writer) -> Result<i64> {
        self.write("registering the search", |tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO process_writers (sid, user) VALUES (?1, ?2)")?
                .execute(params![writer.sid, writer.user])?;
            tx.prepare_cached("SELECT id FROM process_writers WHERE sid = ?1 AND user = ?2")?
                .query_row(params![writer.sid, writer.user], |r| r.get(0))
        })
    }

    /// Who wrote the stored rows of `guids` (those written with a writer).
    pub fn process_writers(&self, guids: &[u128]) -> Result<HashMap<u128, Writer>> {
        self.read("reading process writers", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT w.sid, w.user FROM processes p \
                 JOIN process_writers w ON w.id = p.writer WHERE p.guid = ?1",
            )?;
            let mut out = HashMap::new();
            for g in guids {
                let mut rows = stmt.query([g.to_be_bytes()])?;
                if let Some(r) = rows.next()? {
                    let (Ok(sid), Ok(user)) = (r.get(0), r.get(1)) else {
                        continue;
                    };
                    out.insert(*g, Writer { sid, user });
                }
            }
            Ok(out)
        })
    }

    /// Records `conflicts` brought by search `writer` at `at` (epoch
    /// seconds); a GUID counts once per search. Returns how many were new.
    pub fn record_conflicts(&self, conflicts: &[Conflict], writer: i64, at: i64) -> Result<usize> {
        if conflicts.is_empty() {
            return Ok(0);
        }
        self.write("recording conflicts", |tx| {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO process_conflicts (guid, writer, at, fields) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut n = 0;
            for c in conflicts {
                n += insert.execute(params![
                    c.guid.to_be_bytes(),
                    writer,
                    at,
                    c.fields.join(",")
                ])?;
            }
            Ok(n)
        })
    }

    /// Rows in the conflict record.
    pub fn conflict_count(&self) -> Result<u64> {
        self.read("counting conflicts", |conn| {
            count(conn, "process_conflicts")
        })
    }

    /// Deletes the processes written by the searches matching `sid` and
    /// `user` (each `None` = any; both `None` deletes nothing: that is
    /// [`StateStore::purge`]); returns how many. Rows written before
    /// schema version 2 name no search and stay.
    pub fn purge_processes_by(&self, sid: Option<&str>, user: Option<&str>) -> Result<u64> {
        if sid.is_none() && user.is_none() {
            return Ok(0);
        }
        self.write("purging processes by writer", |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM processes WHERE writer IN \
                     (SELECT id FROM process_writers \
                      WHERE (?1 IS NULL OR sid = ?1) AND (?2 IS NULL OR user = ?2))",
                )?
                .execute(params![sid, user])?;
            Ok(n as u64)
        })
    }

    /// Forgets searches that no stored process or conflict refers to any
    /// more, once there are many (see [`WRITERS_BEFORE_GC`]).
    pub fn gc_writers(&self) -> Result<u64> {
        self.write("forgetting old searches", |tx| {
            if count(tx, "process_writers")? < WRITERS_BEFORE_GC {
                return Ok(0);
            }
            let n = tx.execute(
                "DELETE FROM process_writers WHERE id NOT IN \
                 (SELECT writer FROM processes WHERE writer IS NOT NULL \
                  UNION SELECT writer FROM process_conflicts)",
                [],
            )?;
            Ok(n as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::processes::tests::process;
    use super::super::PurgeTarget;
    use super::*;

    fn writer(sid: &str, user: &str) -> Writer {
        Writer {
            sid: sid.into(),
            user: user.into(),
        }
    }

    #[test]
    fn rows_remember_their_search_and_purge_by_sid_or_user() {
        let store = StateStore::open_in_memory().unwrap();
        let a = store.writer_id(&writer("1.1", "alice")).unwrap();
        assert_eq!(store.writer_id(&writer("1.1", "alice")).unwrap(), a);
        let b = store.writer_id(&writer("2.2", "bob")).unwrap();
        let c = store.writer_id(&writer("3.3", "bob")).unwrap();
        assert!(a != b && b != c);
        let put = |gs: &[u128], w: Option<i64>| {
            let rows: Vec<_> = gs.iter().map(|&g| process(g, None)).collect();
            store
                .put_process_rows_by(rows.iter().map(StoredProcess::as_row), w)
                .unwrap()
        };
        put(&[1, 2], Some(a));
        put(&[3], Some(b));
        put(&[4, 5], Some(c));
        put(&[6], None);
        assert_eq!(
            store.process_writers(&[1, 3, 6, 9]).unwrap(),
            HashMap::from([(1, writer("1.1", "alice")), (3, writer("2.2", "bob"))])
        );
        assert_eq!(store.purge_processes_by(None, None).unwrap(), 0);
        assert_eq!(store.purge_processes_by(Some("2.2"), None).unwrap(), 1);
        assert_eq!(store.purge_processes_by(None, Some("bob")).unwrap(), 2);
        assert_eq!(
            store.purge_processes_by(Some("1.1"), Some("bob")).unwrap(),
            0
        );
        let left: Vec<u128> = store
            .get_processes(&[1, 2, 3, 4, 5, 6])
            .unwrap()
            .iter()
            .map(|p| p.guid)
            .collect();
        assert_eq!(left, vec![1, 2, 6]);
    }

    #[test]
    fn contradictions_are_differences_where_both_have_a_value() {
        let stored = process(9, Some(4));
        assert!(contradictions(&stored, &stored.as_row()).is_empty());
        let mut poorer = stored.clone();
        poorer.parent_command_line.clear();
        poorer.md5 = None;
        assert!(contradictions(&stored, &poorer.as_row()).is_empty());
        let mut forged = stored.clone();
        forged.parent_guid = Some(9);
        forged.parent_image = r"C:\Windows\System32\userinit.exe".into();
        forged.sha256 = Some("00".repeat(32));
        assert_eq!(
            contradictions(&stored, &forged.as_row()),
            vec!["parent_guid", "parent_image", "sha256"]
        );
        // Other readings of the same values: entities, a cut.
        let mut reread = stored.clone();
        reread.command_line = stored.command_line.replace(" --flag", " &amp;&amp; --flag");
        let mut stored_amp = stored.clone();
        stored_amp.command_line = stored.command_line.replace(" --flag", " && --flag");
        assert!(contradictions(&stored_amp, &reread.as_row()).is_empty());
        let mut cut = stored.clone();
        cut.command_line.truncate(8);
        assert!(contradictions(&stored, &cut.as_row()).is_empty());
        assert!(contradictions(&cut, &stored.as_row()).is_empty());
        let mut changed = stored.clone();
        changed.command_line.push_str(" /evil");
        changed.command_line.remove(0);
        assert_eq!(
            contradictions(&stored, &changed.as_row()),
            vec!["command_line"]
        );
        let mut orphaned = stored.clone();
        orphaned.parent_guid = Some(0);
        assert_eq!(
            contradictions(&stored, &orphaned.as_row()),
            vec!["parent_guid"]
        );
    }

    #[test]
    fn conflicts_count_once_per_search_and_purge_with_the_processes() {
        let store = StateStore::open_in_memory().unwrap();
        let w = store.writer_id(&writer("1.1", "eve")).unwrap();
        let c = Conflict {
            guid: 7,
            fields: vec!["parent_image"],
            stored_by: None,
        };
        assert_eq!(
            store
                .record_conflicts(&[c.clone(), c.clone()], w, 10)
                .unwrap(),
            1
        );
        assert_eq!(store.record_conflicts(&[c], w, 11).unwrap(), 0);
        assert_eq!(store.conflict_count().unwrap(), 1);
        assert_eq!(store.stats().unwrap().process_conflicts, 1);
        // Kept as long as processes are.
        store.prune_processes(100, 50, 0).unwrap();
        assert_eq!(store.conflict_count().unwrap(), 0);
        let c = Conflict {
            guid: 8,
            fields: vec!["image"],
            stored_by: None,
        };
        store.record_conflicts(&[c], w, 100).unwrap();
        store.purge(PurgeTarget::Processes).unwrap();
        assert_eq!(store.conflict_count().unwrap(), 0);
    }

    #[test]
    fn a_version_1_file_is_migrated_and_its_rows_kept_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(super::super::schema::MIGRATIONS[0])
                .unwrap();
            conn.execute_batch(&format!(
                "PRAGMA application_id = {}; PRAGMA user_version = 1;
                 INSERT INTO processes VALUES (x'00000000000000000000000000000009',
                     NULL, 'a.exe', 'a', 'p.exe', 'p', 'h', 1.0, NULL, NULL,
                     NULL, NULL, 5);",
                super::super::schema::APPLICATION_ID
            ))
            .unwrap();
        }
        let store = StateStore::open(&path, &Default::default()).unwrap();
        assert_eq!(
            store.stats().unwrap().schema_version,
            super::super::schema::SCHEMA_VERSION
        );
        assert_eq!(store.get_processes(&[9]).unwrap()[0].image, "a.exe");
        assert_eq!(
            store.known_processes(&[9], 5).unwrap(),
            HashMap::from([(9, None)]),
            "no digest: not compared"
        );
        assert_eq!(store.conflict_count().unwrap(), 0);
    }
}
