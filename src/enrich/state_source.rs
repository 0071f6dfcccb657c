//! The persistent process table as an ancestor source, and the conversion
//! between the engine's process info and the store's rows (`ProcessRow` to
//! write, `StoredProcess` read back).

use crate::lineage::{AncestorSource, ProcessInfo, ProcessRef, SourceError, SourceKind};
use crate::state::{ProcessRow, StateStore, StoredProcess};
use crate::sysmon::hashes::{Md5, Sha1, Sha256};
use crate::sysmon::{FileHashes, ProcessGuid};
use std::borrow::Cow;

/// Reads ancestors from the state store.
pub struct StateSource<'a>(pub &'a StateStore);

impl AncestorSource for StateSource<'_> {
    fn kind(&self) -> SourceKind {
        SourceKind::State
    }

    fn fetch(&mut self, guids: &[ProcessGuid]) -> Result<Vec<ProcessInfo>, SourceError> {
        let keys: Vec<u128> = guids.iter().map(|g| g.as_u128()).collect();
        let rows = self
            .0
            .get_processes(&keys)
            .map_err(|e| SourceError::with_source(format!("process table: {e}"), e))?;
        Ok(rows.iter().map(from_stored).collect())
    }
}

/// Engine → store, borrowing the text (valid UTF-8, as Sysmon writes it,
/// is not copied; anything else is repaired, as the store keeps text).
pub fn to_row<'a>(p: &ProcessRef<'a>, seen_at: i64) -> ProcessRow<'a> {
    fn hex<T: std::fmt::Display>(d: Option<T>) -> Option<Cow<'static, str>> {
        d.map(|d| Cow::Owned(d.to_string()))
    }
    ProcessRow {
        guid: p.guid.as_u128(),
        // Zero ("no parent") is kept: the store writes it as NULL, and
        // the conflict check tells it from a row without a parent GUID.
        parent_guid: p.parent_guid.map(ProcessGuid::as_u128),
        image: String::from_utf8_lossy(p.image),
        command_line: String::from_utf8_lossy(p.command_line),
        parent_image: String::from_utf8_lossy(p.parent_image),
        parent_command_line: String::from_utf8_lossy(p.parent_command_line),
        host: String::from_utf8_lossy(p.host),
        time: p.time,
        md5: hex(p.hashes.md5),
        sha1: hex(p.hashes.sha1),
        sha256: hex(p.hashes.sha256),
        imphash: hex(p.hashes.imphash),
        seen_at,
    }
}

/// Store → engine. The store keeps Sysmon's all-zero "no parent" as NULL;
/// it comes back as the zero GUID so chains end exactly as from results.
pub fn from_stored(s: &StoredProcess) -> ProcessInfo {
    let mut p = ProcessInfo::new(ProcessGuid::from_u128(s.guid));
    p.parent_guid = Some(ProcessGuid::from_u128(s.parent_guid.unwrap_or(0)));
    let b = |s: &str| s.as_bytes().to_vec().into_boxed_slice();
    p.image = b(&s.image);
    p.command_line = b(&s.command_line);
    p.parent_image = b(&s.parent_image);
    p.parent_command_line = b(&s.parent_command_line);
    p.host = b(&s.host);
    p.time = s.time;
    fn h(v: &Option<String>) -> Option<&[u8]> {
        v.as_deref().map(str::as_bytes)
    }
    p.hashes = FileHashes {
        md5: h(&s.md5).and_then(Md5::parse),
        sha1: h(&s.sha1).and_then(Sha1::parse),
        sha256: h(&s.sha256).and_then(Sha256::parse),
        imphash: h(&s.imphash).and_then(Md5::parse),
    };
    p
}
