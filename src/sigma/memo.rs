//! Verdicts remembered by what the rules can see of an event.
//!
//! A rule's verdict depends only on the fields it reads. Real Sysmon data
//! repeats itself: the same `svchost.exe -k netsvcs` on every host, the
//! same DLL loaded by the same image thousands of times a day. So per
//! EventCode the engine knows which fields any of that code's rules read
//! (its *key fields*), and an event whose key fields equal an earlier
//! event's gets the earlier verdict without scanning or testing anything.
//! Fields no rule reads (`ProcessGuid`, `_time`, `ProcessId`…) do not
//! split the key.
//!
//! Keyword rules (a value list with no field: "anywhere in the event")
//! read every field, so they are never remembered: they run on each event,
//! hit or miss. Keys are the raw values (before entity unescaping, which
//! is a function of them), length-prefixed so that no two different
//! events share a key. Memory is bounded: past [`MEMO_BYTES`] the memory
//! starts again empty (a scheduled search over a stream with no repeats
//! pays only the key building, about 2% of an evaluation).

use super::gate::Gate;
use super::modifiers::Matcher;
use super::rule::Rule;
use std::collections::HashMap;

/// Bytes of keys and verdicts remembered per search at most (about the
/// size of the lineage engine's per-chunk caches).
pub const MEMO_BYTES: usize = 16 << 20;

/// Events whose key is longer than this are evaluated and not remembered
/// (a 30 MB command line would crowd out everything else).
const MAX_KEY: usize = 16 << 10;

/// Bookkeeping bytes per remembered event, on top of key and verdict.
const ENTRY_OVERHEAD: usize = 64;

/// What one EventCode's key is made of.
#[derive(Debug, Default)]
pub struct KeyPlan {
    /// Interned fields the code's remembered rules read, sorted.
    fields: Vec<usize>,
    /// Some rule reads `EventType` (its category's scope).
    event_type: bool,
    /// Rules that read every field (keywords): evaluated on every event.
    pub volatile: Vec<u32>,
}

impl KeyPlan {
    /// Adds rule `i` to the plan of its EventCode.
    pub fn add(&mut self, i: u32, rule: &Rule) {
        let mut reads_all = false;
        for map in rule.selections.iter().flatten() {
            for fc in map {
                match fc.field {
                    None => reads_all = true,
                    Some(f) => self.fields.push(f),
                }
                for m in fc.values.iter().flatten() {
                    if let Matcher::FieldRef { field, .. } = m {
                        self.fields.push(*field);
                    }
                }
            }
        }
        self.event_type |= rule.scope.event_types.is_some();
        if reads_all {
            self.volatile.push(i);
        }
    }

    /// Sorts and dedups once every rule is added.
    pub fn finish(&mut self) {
        self.fields.sort_unstable();
        self.fields.dedup();
        self.volatile.sort_unstable();
        self.volatile.dedup();
    }

    /// True when rule `i` is never remembered.
    pub fn is_volatile(&self, i: u32) -> bool {
        self.volatile.binary_search(&i).is_ok()
    }

    /// Writes the event's key into `key`; `false` when it is too long to
    /// remember. `value(field)` is the raw value of an interned field.
    pub fn key<'v>(
        &self,
        code: Option<u32>,
        mut value: impl FnMut(usize) -> &'v str,
        event_type: impl FnOnce() -> &'v str,
        key: &mut Vec<u8>,
    ) -> bool {
        key.clear();
        key.extend_from_slice(&code.unwrap_or(u32::MAX).to_le_bytes());
        let push = |v: &str, key: &mut Vec<u8>| {
            key.extend_from_slice(&(v.len() as u32).to_le_bytes());
            key.extend_from_slice(v.as_bytes());
        };
        for &f in &self.fields {
            push(value(f), key);
            if key.len() > MAX_KEY {
                return false;
            }
        }
        if self.event_type {
            push(event_type(), key);
        }
        key.len() <= MAX_KEY
    }
}

/// One remembered verdict: where its key and rule numbers sit in the
/// arenas of [`Memo`].
#[derive(Clone, Copy)]
struct Entry {
    key: u32,
    key_len: u32,
    ids: u32,
    ids_len: u32,
}

/// The remembered verdicts of one search (kept in its `Scratch`).
///
/// Keys and verdicts live in two arenas that are emptied, not freed, when
/// the budget is reached: on a stream where values rarely repeat nearly
/// every event is a miss that is remembered, and a map of boxed keys cost
/// two allocations per event plus the page faults of refilling freed
/// memory (a tenth of a cold evaluation). The map holds only key hashes;
/// a hit still compares the whole key, so two events share a verdict only
/// when their keys are equal (a second key with the same hash is simply
/// not remembered).
#[derive(Default)]
pub struct Memo {
    map: HashMap<u64, u32, foldhash::fast::RandomState>,
    entries: Vec<Entry>,
    keys: Vec<u8>,
    ids: Vec<u32>,
    state: foldhash::fast::RandomState,
    /// Hash of the current key (set by [`Memo::get`]).
    hash: u64,
    bytes: usize,
    /// The key being built (reused).
    pub key: Vec<u8>,
    /// Lookups answered from memory, and those that were not.
    pub hits: u64,
    pub misses: u64,
    /// Never remember (see [`super::Scratch::forgetful`]).
    pub off: bool,
    /// Per EventCode, whether remembering pays (`gate.rs`), and the code
    /// of the current event.
    gates: HashMap<u32, Gate, foldhash::fast::RandomState>,
    code: u32,
}

impl Memo {
    /// Whether to key (look up and remember) this event of EventCode
    /// `code`: never when off, and not while the code's verdicts keep
    /// missing (see `gate.rs`).
    pub fn admit(&mut self, code: Option<u32>) -> bool {
        if self.off {
            return false;
        }
        self.code = code.unwrap_or(u32::MAX);
        self.gates.entry(self.code).or_default().open()
    }

    /// The remembered verdict (rule numbers, sorted) of the current key.
    pub fn get(&mut self) -> Option<&[u32]> {
        use std::hash::BuildHasher;
        self.hash = self.state.hash_one(self.key.as_slice());
        let found = self.map.get(&self.hash).and_then(|&i| {
            let e = self.entries[i as usize];
            let key = &self.keys[e.key as usize..(e.key + e.key_len) as usize];
            (key == self.key.as_slice()).then_some(e)
        });
        if let Some(gate) = self.gates.get_mut(&self.code) {
            gate.record(found.is_some());
        }
        match found {
            Some(e) => {
                self.hits += 1;
                Some(&self.ids[e.ids as usize..(e.ids + e.ids_len) as usize])
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Bytes remembered now (keys, verdicts and bookkeeping).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Remembers `ids` for the current key (after a [`Memo::get`] that
    /// missed).
    pub fn put(&mut self, ids: impl Iterator<Item = u32>) {
        let ids_start = self.ids.len();
        self.ids.extend(ids);
        let ids_len = self.ids.len() - ids_start;
        let size = self.key.len() + ids_len * 4 + ENTRY_OVERHEAD;
        if self.bytes + size > MEMO_BYTES {
            // Start again empty, keeping the arenas' memory.
            self.ids.drain(..ids_start);
            self.map.clear();
            self.entries.clear();
            self.keys.clear();
            self.bytes = 0;
            return self.insert(0, ids_len, size);
        }
        self.insert(ids_start, ids_len, size);
    }

    fn insert(&mut self, ids_start: usize, ids_len: usize, size: usize) {
        use std::collections::hash_map::Entry as Slot;
        let Slot::Vacant(slot) = self.map.entry(self.hash) else {
            // Another key with this hash is remembered: keep that one.
            self.ids.truncate(ids_start);
            return;
        };
        slot.insert(self.entries.len() as u32);
        self.entries.push(Entry {
            key: self.keys.len() as u32,
            key_len: self.key.len() as u32,
            ids: ids_start as u32,
            ids_len: ids_len as u32,
        });
        self.keys.extend_from_slice(&self.key);
        self.bytes += size;
    }
}
