//! The process table: every process creation any earlier search saw.
//!
//! Splunk returns events newest first, so a child usually arrives long
//! before its parent, often in another search. Lineage resolution therefore
//! looks here (DESIGN §2, step 3) for ancestors that are not in the current
//! results, before it resorts to backfill searches.
//!
//! Growth is bounded by [`StateStore::prune_processes`] (retention and a row
//! cap), driven by `seen_at`, the last time any search saw the process.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row};

use super::batch::{bind_padded, placeholders, IN_BATCH};
use super::{count, to_i64, Result, StateStore};

/// One process creation, as kept between searches.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProcess {
    /// `ProcessGuid` as its 128-bit value (`ProcessGuid::as_u128`). Never 0.
    pub guid: u128,
    /// `ParentProcessGuid`; `None` when Sysmon did not know the parent (an
    /// all-zero GUID is stored as `None`).
    pub parent_guid: Option<u128>,
    /// `Image`.
    pub image: String,
    /// `CommandLine`.
    pub command_line: String,
    /// `ParentImage`.
    pub parent_image: String,
    /// `ParentCommandLine`.
    pub parent_command_line: String,
    /// `Computer`.
    pub host: String,
    /// Event time, epoch seconds (`_time`). A NaN is stored as 0.
    pub time: f64,
    /// MD5, lower-case hex.
    pub md5: Option<String>,
    /// SHA1, lower-case hex.
    pub sha1: Option<String>,
    /// SHA256, lower-case hex.
    pub sha256: Option<String>,
    /// IMPHASH, lower-case hex.
    pub imphash: Option<String>,
    /// Epoch seconds when a search last saw this process; drives pruning.
    pub seen_at: i64,
}

/// How far behind a search's clock a stored `seen_at` may stay before
/// [`StateStore::known_processes`] rewrites it. Retention is counted in days
/// (30 by default), so an hour of imprecision changes nothing, and it spares
/// a write for every process a frequent scheduled search sees again.
pub const SEEN_AT_SLACK: i64 = 3600;

/// A process to store, borrowing its text: what a search hands the
/// process-table writer, which then copies no command lines or paths (only
/// the hex digests are formatted).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRow<'a> {
    /// See [`StoredProcess::guid`].
    pub guid: u128,
    /// See [`StoredProcess::parent_guid`].
    pub parent_guid: Option<u128>,
    /// `Image`.
    pub image: Cow<'a, str>,
    /// `CommandLine`.
    pub command_line: Cow<'a, str>,
    /// `ParentImage`.
    pub parent_image: Cow<'a, str>,
    /// `ParentCommandLine`.
    pub parent_command_line: Cow<'a, str>,
    /// `Computer`.
    pub host: Cow<'a, str>,
    /// See [`StoredProcess::time`].
    pub time: f64,
    /// MD5, lower-case hex.
    pub md5: Option<Cow<'a, str>>,
    /// SHA1, lower-case hex.
    pub sha1: Option<Cow<'a, str>>,
    /// SHA256, lower-case hex.
    pub sha256: Option<Cow<'a, str>>,
    /// IMPHASH, lower-case hex.
    pub imphash: Option<Cow<'a, str>>,
    /// See [`StoredProcess::seen_at`].
    pub seen_at: i64,
}

impl StoredProcess {
    /// Borrows this process as a row to store.
    pub fn as_row(&self) -> ProcessRow<'_> {
        ProcessRow {
            guid: self.guid,
            parent_guid: self.parent_guid,
            image: Cow::Borrowed(&self.image),
            command_line: Cow::Borrowed(&self.command_line),
            parent_image: Cow::Borrowed(&self.parent_image),
            parent_command_line: Cow::Borrowed(&self.parent_command_line),
            host: Cow::Borrowed(&self.host),
            time: self.time,
            md5: self.md5.as_deref().map(Cow::Borrowed),
            sha1: self.sha1.as_deref().map(Cow::Borrowed),
            sha256: self.sha256.as_deref().map(Cow::Borrowed),
            imphash: self.imphash.as_deref().map(Cow::Borrowed),
            seen_at: self.seen_at,
        }
    }
}

/// Moves one process's `seen_at` forward (never back).
const TOUCH: &str = "UPDATE processes SET seen_at = ?2 WHERE guid = ?1 AND seen_at < ?2";

/// The lookup keys for `guids`: big-endian blobs, sorted, each once, the
/// zero GUID ("no process") left out.
fn guid_keys(guids: &[u128]) -> Vec<[u8; 16]> {
    let mut keys: Vec<[u8; 16]> = guids
        .iter()
        .filter(|g| **g != 0)
        .map(|g| g.to_be_bytes())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

pub(super) const COLUMNS: &str = "guid, parent_guid, image, command_line, parent_image, \
                       parent_command_line, host, time, md5, sha1, sha256, \
                       imphash, seen_at";

/// Cuts `text` to at most `max` bytes (on a character boundary) with a
/// visible note of how much was cut; 0 = no cap.
///
/// Why the state database caps command lines: it keeps every process a
/// search saw for 30 days, and a 1 MB encoded PowerShell line stored whole
/// (twice: as the process's and as its children's parent command line)
/// made a ten-process chain 20 MB. Lineage needs the chain of GUIDs and
/// images; a command line beyond the cap is kept only in the events.
pub fn cap_text(text: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if max == 0 || text.len() <= max {
        return text;
    }
    let note = |cut: usize| format!("…[{cut} bytes cut]");
    // The note's length depends on the number it shows; reserve the
    // longest it can be.
    let room = max.saturating_sub(note(text.len()).len());
    let mut end = room;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(max);
    out.push_str(&text[..end]);
    out.push_str(&note(text.len() - end));
    Cow::Owned(out)
}

impl StateStore {
    /// Stores a batch of processes in one transaction; returns how many were
    /// new.
    ///
    /// **First write wins**: a GUID names one process for ever, and the
    /// first row stored for it came from that process's own creation event.
    /// A later row for the same GUID is at best identical and at worst
    /// poorer (fields missing from a narrower search, a different
    /// extraction), so it is ignored, which also saves rewriting large rows.
    /// Only `seen_at` moves forward, so that long-lived processes that keep
    /// appearing as ancestors (services, `explorer.exe`) are not pruned
    /// while they are still being referenced.
    ///
    /// Rows with GUID 0 are skipped (that value means "no process").
    pub fn put_processes(&self, processes: &[StoredProcess]) -> Result<usize> {
        self.put_process_rows(processes.iter().map(StoredProcess::as_row))
    }

    /// [`StateStore::put_processes`] for borrowed rows.
    pub fn put_process_rows<'a, I>(&self, processes: I) -> Result<usize>
    where
        I: IntoIterator<Item = ProcessRow<'a>>,
    {
        self.put_process_rows_by(processes, None)
    }

    /// [`StateStore::put_process_rows`], each new row recording the search
    /// that wrote it (`writer`, from [`StateStore::writer_id`]) and its
    /// digest, by which later searches notice a contradicting creation.
    pub fn put_process_rows_by<'a, I>(&self, processes: I, writer: Option<i64>) -> Result<usize>
    where
        I: IntoIterator<Item = ProcessRow<'a>>,
    {
        let mut processes = processes.into_iter().peekable();
        if processes.peek().is_none() {
            return Ok(0);
        }
        self.write("storing processes", |tx| {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO processes ({COLUMNS}, writer, digest) \
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            ))?;
            let mut touch = tx.prepare_cached(TOUCH)?;
            let mut inserted = 0;
            for p in processes.filter(|p| p.guid != 0) {
                let guid = p.guid.to_be_bytes();
                let parent = p.parent_guid.filter(|g| *g != 0).map(u128::to_be_bytes);
                // SQLite stores NaN as NULL, which the NOT NULL constraint
                // would turn into a failed batch.
                let time = if p.time.is_nan() { 0.0 } else { p.time };
                let n = insert.execute(params![
                    guid,
                    parent,
                    &*p.image,
                    &*p.command_line,
                    &*p.parent_image,
                    &*p.parent_command_line,
                    &*p.host,
                    time,
                    p.md5.as_deref(),
                    p.sha1.as_deref(),
                    p.sha256.as_deref(),
                    p.imphash.as_deref(),
                    p.seen_at,
                    writer,
                    super::digest::of_row(&p),
                ])?;
                if n == 0 {
                    touch.execute(params![guid, p.seen_at])?;
                } else {
                    inserted += 1;
                }
            }
            Ok(inserted)
        })
    }

    /// Which of `guids` the table already holds, moving their `seen_at`
    /// forward to `seen_at` where it lags by more than `SEEN_AT_SLACK`.
    ///
    /// Why: scheduled searches keep seeing the same processes (a search of
    /// the last 24 hours every 15 minutes sees each one ~96 times). Asking
    /// first costs one index probe per GUID in a read transaction; storing
    /// blindly cost an `INSERT OR IGNORE` with thirteen bound values plus a
    /// `seen_at` update (a row and an index write) for every one, which was
    /// a quarter of a warm search's CPU. The caller stores only the rest
    /// with [`StateStore::put_processes`], whose `OR IGNORE` still settles
    /// a race with another search storing the same process in between.
    ///
    /// Each known GUID comes with the stored row's digest (`None` for rows
    /// written before schema version 2), so the caller can tell a repeat
    /// from a contradiction without reading the row.
    pub fn known_processes(
        &self,
        guids: &[u128],
        seen_at: i64,
    ) -> Result<HashMap<u128, Option<i64>>> {
        let keys = guid_keys(guids);
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self.read("checking processes", |conn| {
            let sql = format!(
                "SELECT guid, seen_at, digest FROM processes WHERE guid IN ({})",
                placeholders(IN_BATCH)
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut found = Vec::with_capacity(keys.len());
            for batch in keys.chunks(IN_BATCH) {
                bind_padded(&mut stmt, 1, batch)?;
                let mut rows = stmt.raw_query();
                while let Some(row) = rows.next()? {
                    let guid = blob_guid(row.get_ref(0)?).flatten();
                    let seen = match row.get_ref(1)? {
                        ValueRef::Integer(i) => i,
                        _ => i64::MIN,
                    };
                    let digest = match row.get_ref(2)? {
                        ValueRef::Integer(i) => Some(i),
                        _ => None,
                    };
                    if let Some(g) = guid {
                        found.push((g, seen, digest));
                    }
                }
            }
            Ok(found)
        })?;
        let stale: Vec<u128> = found
            .iter()
            .filter(|(_, seen, _)| *seen < seen_at.saturating_sub(SEEN_AT_SLACK))
            .map(|(g, _, _)| *g)
            .collect();
        if !stale.is_empty() {
            self.write("touching processes", |tx| {
                let mut touch = tx.prepare_cached(TOUCH)?;
                for g in &stale {
                    touch.execute(params![g.to_be_bytes(), seen_at])?;
                }
                Ok(())
            })?;
        }
        Ok(found.into_iter().map(|(g, _, d)| (g, d)).collect())
    }

    /// Looks up many GUIDs at once; returns the processes found, each once,
    /// ordered by GUID. Unknown GUIDs are simply absent. Rows that cannot be
    /// decoded (wrong types in a hand-edited file) are skipped with a WARN.
    pub fn get_processes(&self, guids: &[u128]) -> Result<Vec<StoredProcess>> {
        let keys = guid_keys(guids);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (mut found, skipped) =
            self.read("reading processes", |conn| read_batches(conn, &keys))?;
        if skipped > 0 {
            log::warn!(
                "state database {}: skipped {skipped} undecodable process \
                 rows",
                self.path.display()
            );
        }
        found.sort_unstable_by_key(|p| p.guid);
        Ok(found)
    }

    /// Deletes processes not seen for more than `retention_secs` before
    /// `now`, then the least recently seen ones beyond `max_rows`; returns
    /// the number deleted. A limit of 0 (or a negative retention) disables
    /// that limit. Runs in one transaction.
    pub fn prune_processes(&self, now: i64, retention_secs: i64, max_rows: u64) -> Result<u64> {
        self.write("pruning processes", |tx| {
            let mut deleted = 0u64;
            if retention_secs > 0 {
                let cutoff = now.saturating_sub(retention_secs);
                deleted += tx
                    .prepare_cached("DELETE FROM processes WHERE seen_at < ?1")?
                    .execute([cutoff])? as u64;
                // Conflicts are evidence about processes: kept as long.
                tx.prepare_cached("DELETE FROM process_conflicts WHERE at < ?1")?
                    .execute([cutoff])?;
            }
            if max_rows > 0 {
                let rows = count(tx, "processes")?;
                if rows > max_rows {
                    // `seen_at, rowid` is the order of the seen_at index,
                    // so this walks the index from its oldest end.
                    deleted += tx
                        .prepare_cached(
                            "DELETE FROM processes WHERE rowid IN \
                             (SELECT rowid FROM processes \
                              ORDER BY seen_at, rowid LIMIT ?1)",
                        )?
                        .execute([to_i64(rows - max_rows)])? as u64;
                }
            }
            Ok(deleted)
        })
    }

    /// Rows in the process table.
    pub fn process_count(&self) -> Result<u64> {
        self.read("counting processes", |conn| count(conn, "processes"))
    }
}

/// Runs the fixed-width `IN` lookup over `keys`; returns the decoded rows
/// and the number of rows skipped.
fn read_batches(
    conn: &Connection,
    keys: &[[u8; 16]],
) -> rusqlite::Result<(Vec<StoredProcess>, usize)> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT {COLUMNS} FROM processes WHERE guid IN ({})",
            placeholders(IN_BATCH)
        )
    });
    let mut stmt = conn.prepare_cached(sql)?;
    let mut found = Vec::with_capacity(keys.len());
    let mut skipped = 0;
    for batch in keys.chunks(IN_BATCH) {
        bind_padded(&mut stmt, 1, batch)?;
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            match decode(row)? {
                Some(p) => found.push(p),
                None => skipped += 1,
            }
        }
    }
    Ok((found, skipped))
}

/// Decodes one row; `Ok(None)` when a column has a type we did not write.
pub(super) fn decode(row: &Row<'_>) -> rusqlite::Result<Option<StoredProcess>> {
    let guid = match blob_guid(row.get_ref(0)?) {
        Some(Some(g)) => g,
        _ => return Ok(None),
    };
    let Some(parent_guid) = blob_guid(row.get_ref(1)?) else {
        return Ok(None);
    };
    let mut texts: [String; 5] = Default::default();
    for (i, slot) in texts.iter_mut().enumerate() {
        match text(row.get_ref(2 + i)?) {
            Some(Some(t)) => *slot = t,
            _ => return Ok(None),
        }
    }
    let time = match row.get_ref(7)? {
        ValueRef::Real(f) => f,
        ValueRef::Integer(i) => i as f64,
        _ => return Ok(None),
    };
    let mut hashes: [Option<String>; 4] = Default::default();
    for (i, slot) in hashes.iter_mut().enumerate() {
        match text(row.get_ref(8 + i)?) {
            Some(h) => *slot = h,
            None => return Ok(None),
        }
    }
    let ValueRef::Integer(seen_at) = row.get_ref(12)? else {
        return Ok(None);
    };
    let [image, command_line, parent_image, parent_command_line, host] = texts;
    let [md5, sha1, sha256, imphash] = hashes;
    Ok(Some(StoredProcess {
        guid,
        parent_guid,
        image,
        command_line,
        parent_image,
        parent_command_line,
        host,
        time,
        md5,
        sha1,
        sha256,
        imphash,
        seen_at,
    }))
}

/// `Some(None)` for NULL, `Some(Some(g))` for a 16-byte blob, `None` for
/// anything else.
fn blob_guid(v: ValueRef<'_>) -> Option<Option<u128>> {
    match v {
        ValueRef::Null => Some(None),
        ValueRef::Blob(b) => {
            let bytes: [u8; 16] = b.try_into().ok()?;
            Some(Some(u128::from_be_bytes(bytes)))
        }
        _ => None,
    }
}

/// `Some(None)` for NULL, `Some(Some(s))` for text (invalid UTF-8 replaced),
/// `None` for anything else.
pub(crate) fn text(v: ValueRef<'_>) -> Option<Option<String>> {
    match v {
        ValueRef::Null => Some(None),
        ValueRef::Text(t) => Some(Some(String::from_utf8_lossy(t).into_owned())),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use super::*;

    pub(crate) fn process(guid: u128, parent: Option<u128>) -> StoredProcess {
        StoredProcess {
            guid,
            parent_guid: parent,
            image: format!(r"C:\Windows\System32\proc{guid}.exe"),
            command_line: format!("proc{guid}.exe /c something --flag {guid}"),
            parent_image: r"C:\Windows\explorer.exe".into(),
            parent_command_line: "explorer.exe".into(),
            host: "WIN-HOST01".into(),
            time: 1_700_000_000.25,
            md5: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            sha1: None,
            sha256: Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()),
            imphash: None,
            seen_at: 1000,
        }
    }

    #[test]
    fn round_trip() {
        let store = StateStore::open_in_memory().unwrap();
        let big = u128::MAX - 5;
        let rows = vec![process(1, None), process(2, Some(1)), process(big, Some(2))];
        assert_eq!(store.put_processes(&rows).unwrap(), 3);
        assert_eq!(store.process_count().unwrap(), 3);
        let got = store.get_processes(&[big, 2, 1, 2, 77, 0]).unwrap();
        assert_eq!(got, rows, "ordered by guid, deduplicated, unknown absent");
        assert!(store.get_processes(&[]).unwrap().is_empty());
    }

    #[test]
    fn known_processes_probe_and_touch_only_stale_rows() {
        let store = StateStore::open_in_memory().unwrap();
        store
            .put_processes(&[process(1, None), process(2, Some(1))])
            .unwrap();
        let seen = |g: u128| store.get_processes(&[g]).unwrap()[0].seen_at;
        // Within the slack: found, nothing rewritten.
        let known = store.known_processes(&[2, 1, 3, 0, 2], 1000 + 60).unwrap();
        let digest = |g: u128| Some(super::super::digest::of_row(&process(g, None).as_row()));
        assert_eq!(
            known,
            HashMap::from([(1, digest(1)), (2, store_digest(&store, 2))])
        );
        assert_ne!(known[&2], digest(2), "the parent counts");
        assert_eq!((seen(1), seen(2)), (1000, 1000));
        // Past the slack: `seen_at` moves forward, for the asked one only.
        let later = 1000 + SEEN_AT_SLACK + 1;
        assert_eq!(
            store
                .known_processes(&[1], later)
                .unwrap()
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!((seen(1), seen(2)), (later, 1000));
        // Never backwards.
        store.known_processes(&[1], 5).unwrap();
        assert_eq!(seen(1), later);
        assert!(store.known_processes(&[], later).unwrap().is_empty());
    }

    fn store_digest(store: &StateStore, g: u128) -> Option<i64> {
        Some(super::super::digest::of_row(
            &store.get_processes(&[g]).unwrap()[0].as_row(),
        ))
    }

    #[test]
    fn command_lines_are_capped_with_a_note() {
        let long = "é".repeat(3000); // 6,000 bytes
        let cut = cap_text(Cow::Borrowed(&long), 1000);
        assert!(cut.len() <= 1000, "{}", cut.len());
        assert!(cut.ends_with(" bytes cut]"), "{cut}");
        let kept = cut.split('…').next().unwrap();
        assert!(long.starts_with(kept) && kept.len() > 900);
        let n: usize = cut
            .rsplit('[')
            .next()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(kept.len() + n, long.len(), "the note says how much is gone");
        assert_eq!(cap_text(Cow::Borrowed("short"), 1000), "short");
        assert_eq!(cap_text(Cow::Borrowed(&long), 0).len(), 6000, "0 = no cap");
    }

    #[test]
    fn borrowed_rows_store_like_owned_ones() {
        let store = StateStore::open_in_memory().unwrap();
        let p = process(9, Some(4));
        assert_eq!(store.put_process_rows([p.as_row()]).unwrap(), 1);
        assert_eq!(
            store.put_process_rows([p.as_row()]).unwrap(),
            0,
            "first write wins"
        );
        assert_eq!(store.get_processes(&[9]).unwrap(), vec![p]);
    }

    #[test]
    fn zero_guids_are_no_process() {
        let store = StateStore::open_in_memory().unwrap();
        let mut orphan = process(5, Some(0));
        assert_eq!(
            store
                .put_processes(&[process(0, None), orphan.clone()])
                .unwrap(),
            1
        );
        orphan.parent_guid = None;
        assert_eq!(store.get_processes(&[5, 0]).unwrap(), vec![orphan]);
    }

    #[test]
    fn first_write_wins_but_seen_at_moves_forward() {
        let store = StateStore::open_in_memory().unwrap();
        let first = process(9, Some(1));
        store.put_processes(std::slice::from_ref(&first)).unwrap();

        let mut later = process(9, Some(2));
        later.image = "other.exe".into();
        later.seen_at = 5000;
        assert_eq!(store.put_processes(&[later]).unwrap(), 0);
        let got = store.get_processes(&[9]).unwrap().remove(0);
        assert_eq!(got.image, first.image);
        assert_eq!(got.parent_guid, Some(1));
        assert_eq!(got.seen_at, 5000);

        let mut older = first.clone();
        older.seen_at = 10;
        store.put_processes(&[older]).unwrap();
        assert_eq!(store.get_processes(&[9]).unwrap()[0].seen_at, 5000);
    }

    #[test]
    fn nan_time_does_not_fail_the_batch() {
        let store = StateStore::open_in_memory().unwrap();
        let mut p = process(3, None);
        p.time = f64::NAN;
        assert_eq!(store.put_processes(&[p, process(4, None)]).unwrap(), 2);
        assert_eq!(store.get_processes(&[3]).unwrap()[0].time, 0.0);
    }

    #[test]
    fn rows_with_wrong_types_are_skipped() {
        let store = StateStore::open_in_memory().unwrap();
        store
            .put_processes(&[process(1, None), process(2, None)])
            .unwrap();
        {
            let conn = store.lock();
            // A hand-edited file: text where a number belongs, a short GUID
            // and a blob where text belongs.
            conn.execute_batch(
                "UPDATE processes SET time = 'yesterday' \
                     WHERE guid = x'00000000000000000000000000000002';
                 INSERT INTO processes VALUES (x'0102', NULL, 'a', 'b', 'c',
                     'd', 'e', 1.0, NULL, NULL, NULL, NULL, 1, NULL, NULL);
                 INSERT INTO processes VALUES
                     (x'00000000000000000000000000000007', NULL, x'00', 'b',
                     'c', 'd', 'e', 1.0, NULL, NULL, NULL, NULL, 1, NULL, NULL);
                 INSERT INTO processes VALUES
                     (x'00000000000000000000000000000008', x'0000', 'a', 'b',
                     'c', 'd', 'e', 1.0, NULL, NULL, NULL, NULL, 1, NULL, NULL);",
            )
            .unwrap();
        }
        let got = store.get_processes(&[1, 2, 7, 8]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].guid, 1);
    }

    #[test]
    fn prune_by_retention_then_by_count() {
        let store = StateStore::open_in_memory().unwrap();
        let rows: Vec<_> = (1..=10u128)
            .map(|g| StoredProcess {
                seen_at: 100 * g as i64,
                ..process(g, None)
            })
            .collect();
        store.put_processes(&rows).unwrap();

        // now=1000, retention 500: seen_at < 500 goes (g = 1..=4).
        assert_eq!(store.prune_processes(1000, 500, 0).unwrap(), 4);
        assert_eq!(store.process_count().unwrap(), 6);
        // Nothing more to do with the same limits.
        assert_eq!(store.prune_processes(1000, 500, 0).unwrap(), 0);

        // Cap 2: the least recently seen go first (g = 5..=8).
        assert_eq!(store.prune_processes(1000, 0, 2).unwrap(), 4);
        let left: Vec<u128> = store
            .get_processes(&(1..=10).collect::<Vec<_>>())
            .unwrap()
            .iter()
            .map(|p| p.guid)
            .collect();
        assert_eq!(left, vec![9, 10]);

        // A refreshed seen_at protects a row from the cap.
        store
            .put_processes(&[StoredProcess {
                seen_at: 5000,
                ..process(9, None)
            }])
            .unwrap();
        assert_eq!(store.prune_processes(1000, 0, 1).unwrap(), 1);
        assert_eq!(store.get_processes(&[9, 10]).unwrap()[0].guid, 9);
    }

    /// Not a benchmark (those live in `benches/`): a guard that batching,
    /// cached statements and the single transaction stay in place, with
    /// the times printed for the record.
    #[test]
    fn fifty_thousand_rows_in_one_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(
            &dir.path().join("state.db"),
            &super::super::StateOptions::default(),
        )
        .unwrap();
        const N: u128 = 50_000;
        // Spread GUIDs like real ones (random-looking high bits).
        let guid = |i: u128| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) | 1;
        let rows: Vec<_> = (0..N)
            .map(|i| process(guid(i), Some(guid(i + 1))))
            .collect();
        let started = Instant::now();
        assert_eq!(store.put_processes(&rows).unwrap(), N as usize);
        let put = started.elapsed();

        let wanted: Vec<u128> = (0..N).map(guid).collect();
        let started = Instant::now();
        let got = store.get_processes(&wanted).unwrap();
        let get = started.elapsed();
        assert_eq!(got.len(), N as usize);

        let started = Instant::now();
        assert_eq!(store.put_processes(&rows).unwrap(), 0);
        let again = started.elapsed();
        println!(
            "state timings: put_processes(50,000 new) {put:?}, \
             get_processes(50,000) {get:?}, \
             put_processes(50,000 existing) {again:?}"
        );
    }
}
