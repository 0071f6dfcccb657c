//! Candidate scans remembered per field value.
//!
//! Whole events rarely repeat on a busy day (a fresh GUID, a new command
//! line), but their fields do: the same `Hashes` for every run of one
//! binary version, the same `Image` and `ImageLoaded` paths, the same
//! parent command line for every child, `Signed: true` everywhere. The
//! literal scan of one field depends only on that field's raw value and on
//! the EventCode's table, so its result (which literal sets of which rules
//! the value holds) is remembered by (table, field, raw value) and replayed
//! on the next event with that value. On `synth::diverse` this answers most
//! scans of every field but `CommandLine`; the `Hashes` scan, hexadecimal
//! text against hundreds of hash literals, was a third of the engine's time.
//!
//! Arenas as in `memo.rs` (no allocation per entry once warm), emptied when
//! [`SCAN_MEMO_BYTES`] is reached; values longer than [`MAX_VALUE`] are
//! scanned every time and never stored.

use super::gate::Gate;
use std::collections::HashMap;

/// Bytes of values and results remembered per search and thread at most.
pub const SCAN_MEMO_BYTES: usize = 8 << 20;

/// Values longer than this are scanned and not remembered (long command
/// lines are nearly always unique; a 64 MB field would fill the memory).
const MAX_VALUE: usize = 2048;

/// Bookkeeping bytes per entry, on top of value and result.
const ENTRY_OVERHEAD: usize = 48;

#[derive(Clone, Copy)]
struct Entry {
    slot: u64,
    value: u32,
    value_len: u32,
    ids: u32,
    ids_len: u32,
}

/// Remembered scan results of one search (kept in its `Scratch`).
#[derive(Default)]
pub struct ScanMemo {
    map: HashMap<u64, u32, foldhash::fast::RandomState>,
    entries: Vec<Entry>,
    values: Vec<u8>,
    ids: Vec<u32>,
    state: foldhash::fast::RandomState,
    /// Hash of the last lookup (set by [`ScanMemo::get`]).
    hash: u64,
    bytes: usize,
    /// Never remember (see [`super::Scratch::forgetful`]).
    pub off: bool,
    /// Per slot, whether remembering pays (`gate.rs`); `skip`: the last
    /// [`ScanMemo::get`] did not look up, so its `put` keeps nothing.
    /// Indexed by table, then field (a slot's two halves): asked on every
    /// scan, so arrays rather than a hashed map.
    gates: Vec<Vec<Gate>>,
    skip: bool,
}

impl ScanMemo {
    /// The remembered result for `value` in `slot` (a table and field),
    /// or `None`; remembers the lookup for a following [`ScanMemo::put`].
    pub fn get(&mut self, slot: u64, value: &str) -> Option<&[u32]> {
        use std::hash::BuildHasher;
        self.skip = true;
        if self.off || value.len() > MAX_VALUE {
            return None;
        }
        let (table, field) = ((slot >> 32) as usize, slot as u32 as usize);
        if self.gates.len() <= table {
            self.gates.resize_with(table + 1, Vec::new);
        }
        let fields = &mut self.gates[table];
        if fields.len() <= field {
            fields.resize(field + 1, Gate::default());
        }
        let gate = &mut fields[field];
        if !gate.open() {
            return None;
        }
        self.skip = false;
        self.hash = self.state.hash_one((slot, value.as_bytes()));
        let found = self
            .map
            .get(&self.hash)
            .map(|&i| self.entries[i as usize])
            .filter(|e| {
                e.slot == slot
                    && &self.values[e.value as usize..(e.value + e.value_len) as usize]
                        == value.as_bytes()
            });
        gate.record(found.is_some());
        found.map(|e| &self.ids[e.ids as usize..(e.ids + e.ids_len) as usize])
    }

    /// Remembers `ids` for `value` in `slot`, after a
    /// [`ScanMemo::get`] of the same pair that missed.
    pub fn put(&mut self, slot: u64, value: &str, ids: &[u32]) {
        use std::collections::hash_map::Entry as Slot;
        if self.skip || value.len() > MAX_VALUE {
            return;
        }
        let size = value.len() + ids.len() * 4 + ENTRY_OVERHEAD;
        if self.bytes + size > SCAN_MEMO_BYTES {
            // Start again empty, keeping the arenas' memory.
            self.map.clear();
            self.entries.clear();
            self.values.clear();
            self.ids.clear();
            self.bytes = 0;
        }
        let Slot::Vacant(free) = self.map.entry(self.hash) else {
            return; // another value with this hash is remembered: keep it
        };
        free.insert(self.entries.len() as u32);
        self.entries.push(Entry {
            slot,
            value: self.values.len() as u32,
            value_len: value.len() as u32,
            ids: self.ids.len() as u32,
            ids_len: ids.len() as u32,
        });
        self.values.extend_from_slice(value.as_bytes());
        self.ids.extend_from_slice(ids);
        self.bytes += size;
    }

    /// Bytes remembered now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_slot_and_exact_value() {
        let mut m = ScanMemo::default();
        assert!(m.get(1, "C:\\Windows\\x.exe").is_none());
        m.put(1, "C:\\Windows\\x.exe", &[4, 9]);
        assert_eq!(m.get(1, "C:\\Windows\\x.exe"), Some(&[4, 9][..]));
        // Another table or field, or another case, is another value.
        assert!(m.get(2, "C:\\Windows\\x.exe").is_none());
        assert!(m.get(1, "c:\\windows\\x.exe").is_none());
        // An empty result is remembered too (most values hold no literal).
        m.get(1, "plain");
        m.put(1, "plain", &[]);
        assert_eq!(m.get(1, "plain"), Some(&[][..]));
    }

    #[test]
    fn memory_is_bounded_and_long_values_are_not_kept() {
        let mut m = ScanMemo::default();
        let long = "x".repeat(MAX_VALUE + 1);
        assert!(m.get(1, &long).is_none());
        m.put(1, &long, &[1]);
        assert!(m.get(1, &long).is_none());
        // Each value is asked twice, so remembering pays (`gate.rs`).
        for i in 0..20_000u32 {
            let v = format!("{i:01000}");
            if m.get(7, &v).is_none() {
                m.put(7, &v, &[i]);
            }
            assert_eq!(m.get(7, &v), Some(&[i][..]));
            assert!(m.bytes() <= SCAN_MEMO_BYTES);
        }
        // The newest value survives the restart.
        let v = format!("{:01000}", 19_999);
        assert_eq!(m.get(7, &v), Some(&[19_999][..]));
    }

    #[test]
    fn a_field_whose_values_never_repeat_is_not_remembered() {
        use crate::sigma::gate::{PROBE, WINDOW};
        let mut m = ScanMemo::default();
        let looked_up = |m: &mut ScanMemo, v: &str| {
            let missed = m.get(3, v).is_none();
            m.put(3, v, &[1]);
            missed && !m.skip
        };
        let n = WINDOW * 3;
        let lookups = (0..n)
            .filter(|i| looked_up(&mut m, &format!("hash {i}")))
            .count();
        assert_eq!(lookups as u32, WINDOW + (n - WINDOW) / PROBE);
        // Another slot is not affected.
        assert!(m.get(4, "x").is_none());
        assert!(!m.skip);
    }

    #[test]
    fn off_remembers_nothing() {
        let mut m = ScanMemo {
            off: true,
            ..ScanMemo::default()
        };
        m.get(1, "a");
        m.put(1, "a", &[1]);
        assert!(m.get(1, "a").is_none());
    }
}
