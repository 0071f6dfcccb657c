//! The in-memory process table: creation info by GUID, bounded, LRU.
//!
//! # Why LRU and not "evict on EventCode 5"
//!
//! Splunk returns events newest first, so a process's termination
//! (EventCode 5) arrives *before* its creation and before most of its
//! children's events. Evicting on termination would drop exactly the
//! entries about to be needed. Instead the table holds at most `capacity`
//! entries and, when full, drops the least recently used one; inserting
//! and being walked through as an ancestor both count as use, so the
//! ancestors of what the search is currently looking at stay.
//!
//! # Memory per entry
//!
//! * the slot: 96 bytes (two GUIDs, time, text box, hashes box, 5 offsets,
//!   LRU links, flags);
//! * one heap block with all text (image, command line, parent image,
//!   parent command line, host), plus the allocator's ~16 bytes;
//! * when the event had hashes, one 172-byte `FileHashes` block (~190 with
//!   allocator overhead);
//! * the hash index: a 32-byte bucket plus 1 control byte, at hashbrown's
//!   load factor (≤ 7/8, ≥ 7/16 after growth) about 38–75 bytes.
//!
//! So ≈ 150–190 bytes + ~190 with hashes + the text itself. Measured with
//! a counting allocator, 200,000 entries built from the EventCode 1 rows of
//! `evtx_attack_samples` and of `otrf_lsass_campaign_01` (both average 266
//! bytes of text, all with hashes): 578 bytes requested per entry, about
//! 610 with malloc's per-block overhead, so the default cap of 200,000
//! entries is ≈ 120 MB when full. No per-entry `Vec`, at most two
//! allocations per insert, none per lookup.
//!
//! # Why a byte budget as well as a count
//!
//! The count bounds memory only as long as entries are small. Command
//! lines are not: an encoded PowerShell one runs to tens of kilobytes, and
//! 200,000 of those would be gigabytes. So the table also keeps the sum of
//! its entries' costs ([`entry_cost`]: the fixed part above plus the text)
//! under a budget, evicting least recently used entries until a newcomer
//! fits. On ordinary data the count binds first (200,000 × ~600 bytes is
//! below the default budget); on data with huge command lines the budget
//! does, and the table holds fewer, bigger entries.

use super::hash::{GuidBuildHasher, GuidMap};
use super::process::{ProcessRef, SourceKind};
use crate::sysmon::guid::ProcessGuid;
use crate::sysmon::hashes::FileHashes;

const NIL: u32 = u32::MAX;

/// What an entry costs besides its text: the slot, the index bucket and
/// the allocator's header of the text block (see the module docs).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Slot>() + 64;
/// What an entry's hashes cost: the boxed `FileHashes` and its header.
const HASHES_COST: usize = std::mem::size_of::<FileHashes>() + 16;

/// The memory an entry holds, as the byte budget counts it.
fn entry_cost(slot: &Slot) -> usize {
    ENTRY_OVERHEAD
        + slot.text.len()
        + if slot.hashes.is_some() {
            HASHES_COST
        } else {
            0
        }
}

/// Longest text field kept (bytes). Five of them always fit the `u32`
/// offsets; Sysmon itself caps command lines far below this.
const MAX_FIELD: usize = 1 << 26;

struct Slot {
    guid: ProcessGuid,
    parent: ProcessGuid,
    time: f64,
    /// image | command line | parent image | parent command line | host.
    text: Box<[u8]>,
    /// Boxed because most of the walk never needs them and many processes
    /// have none: 8 bytes when absent. (Storing the digests in binary in
    /// `text` halves their size, but rebuilding `FileHashes` for the
    /// malicious-ancestor check then cost ~1 µs per row, 4× the walk.)
    hashes: Option<Box<FileHashes>>,
    ends: [u32; 5],
    prev: u32,
    next: u32,
    parent_known: bool,
    source: SourceKind,
}

/// Read access to one entry: one process's creation info, as the table
/// holds it.
#[derive(Clone, Copy)]
pub struct Entry<'t> {
    slot: &'t Slot,
}

impl<'t> Entry<'t> {
    fn part(&self, i: usize) -> &'t [u8] {
        let start = if i == 0 {
            0
        } else {
            self.slot.ends[i - 1] as usize
        };
        &self.slot.text[start..self.slot.ends[i] as usize]
    }

    /// Its `ParentProcessGuid`, when the creation had a readable one.
    pub fn parent(&self) -> Option<ProcessGuid> {
        self.slot.parent_known.then_some(self.slot.parent)
    }

    /// Its image (may be empty: a backfill answer without the field).
    pub fn image(&self) -> &'t [u8] {
        self.part(0)
    }

    /// Its command line.
    pub fn command_line(&self) -> &'t [u8] {
        self.part(1)
    }

    /// The host it ran on.
    pub fn host(&self) -> &'t [u8] {
        self.part(4)
    }

    /// Its parent's image, as this creation reported it.
    pub fn parent_image(&self) -> &'t [u8] {
        self.part(2)
    }

    /// Its parent's command line, as this creation reported it.
    pub fn parent_command_line(&self) -> &'t [u8] {
        self.part(3)
    }

    /// Where the record came from.
    pub fn source(&self) -> SourceKind {
        self.slot.source
    }

    /// The hashes of the process's image, when any were known.
    pub fn hashes(&self) -> Option<&'t FileHashes> {
        self.slot.hashes.as_deref()
    }

    pub(crate) fn to_ref(self) -> ProcessRef<'t> {
        ProcessRef {
            guid: self.slot.guid,
            parent_guid: self.parent(),
            image: self.part(0),
            command_line: self.part(1),
            parent_image: self.part(2),
            parent_command_line: self.part(3),
            host: self.part(4),
            time: self.slot.time,
            hashes: self.hashes().copied().unwrap_or_default(),
        }
    }
}

/// Creation info by GUID, at most `capacity` entries costing at most
/// `budget` bytes together, least recently used evicted first. First info
/// inserted for a GUID wins (see [`ProcessTable::insert`]).
pub(crate) struct ProcessTable {
    map: GuidMap<u32>,
    slots: Vec<Slot>,
    /// Slots emptied by evictions that a newcomer did not take over.
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    capacity: usize,
    /// Most bytes the entries may cost together ([`entry_cost`]).
    budget: usize,
    /// What the entries cost now.
    bytes: usize,
    evictions: u64,
}

impl ProcessTable {
    pub(crate) fn new(capacity: usize, budget: usize) -> ProcessTable {
        // The table may never fill (a short search); grow on demand rather
        // than reserving the whole cap up front.
        let capacity = capacity.clamp(1, NIL as usize - 1);
        let initial = capacity.min(1024);
        ProcessTable {
            map: GuidMap::with_capacity_and_hasher(initial, GuidBuildHasher::new()),
            slots: Vec::with_capacity(initial),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
            budget,
            bytes: 0,
            evictions: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// What the entries cost together, as the budget counts it.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Index of `guid`'s entry, without counting it as use.
    #[inline]
    pub(crate) fn find(&self, guid: ProcessGuid) -> Option<u32> {
        self.map.get(&guid).copied()
    }

    #[inline]
    pub(crate) fn entry(&self, index: u32) -> Entry<'_> {
        Entry {
            slot: &self.slots[index as usize],
        }
    }

    /// Looks `guid` up and marks it most recently used.
    #[inline]
    pub(crate) fn find_touch(&mut self, guid: ProcessGuid) -> Option<u32> {
        let i = self.find(guid)?;
        self.touch(i);
        Some(i)
    }

    /// Inserts the creation info of `info.guid` unless the GUID is already
    /// known, in which case the existing entry is kept and only marked as
    /// used. First-wins keeps the result deterministic (rows are indexed in
    /// their order) and means a row of this search is never replaced by a
    /// later backfill answer for the same GUID; real duplicates (the same
    /// event exported twice) carry the same data anyway. Returns true when
    /// the entry is new.
    pub(crate) fn insert(&mut self, info: &ProcessRef<'_>, source: SourceKind) -> bool {
        if let Some(i) = self.find(info.guid) {
            self.touch(i);
            return false;
        }
        let slot = build_slot(info, source);
        let cost = entry_cost(&slot);
        // Room first: by count, then by bytes (an entry bigger than the
        // whole budget ends up alone in the table rather than refused: a
        // chain through it still resolves).
        while self.tail != NIL && (self.len() >= self.capacity || self.bytes + cost > self.budget) {
            self.evict_lru();
        }
        self.bytes += cost;
        let index = if let Some(free) = self.free.pop() {
            self.slots[free as usize] = slot;
            free
        } else {
            if self.slots.len() == self.slots.capacity() {
                // Grow by doubling, but never past the cap: the last
                // doubling of a large table would otherwise reserve up to
                // twice the memory the cap promises.
                let extra = self
                    .slots
                    .len()
                    .max(16)
                    .min(self.capacity - self.slots.len());
                self.slots.reserve_exact(extra);
            }
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.map.insert(info.guid, index);
        self.push_front(index);
        true
    }

    /// Fills the empty parent image and command line of entry `child`
    /// from the parent's own entry (data without `Parent*` fields still
    /// names each ancestor by what its own creation event says). Does not
    /// count as use of either.
    pub(crate) fn fill_parent_text(&mut self, child: u32) -> Fill {
        let c = self.entry(child);
        let (pimg, pcmd) = (c.parent_image(), c.parent_command_line());
        if !pimg.is_empty() && !pcmd.is_empty() {
            return Fill::Nothing;
        }
        let Some(parent) = c.parent().filter(|p| !p.is_zero()) else {
            return Fill::Nothing;
        };
        let Some(pi) = self.find(parent) else {
            return Fill::ParentUnknown;
        };
        let p = self.entry(pi);
        let image = if pimg.is_empty() { p.image() } else { pimg };
        let command_line = if pcmd.is_empty() {
            p.command_line()
        } else {
            pcmd
        };
        if image.len() == pimg.len() && command_line.len() == pcmd.len() {
            // The parent's own event had nothing either.
            return Fill::Nothing;
        }
        let parts = [c.image(), c.command_line(), image, command_line, c.host()];
        let (text, ends) = join_parts(parts);
        let slot = &mut self.slots[child as usize];
        let before = entry_cost(slot);
        slot.text = text;
        slot.ends = ends;
        self.bytes = self.bytes - before + entry_cost(&self.slots[child as usize]);
        // The copy counts against the budget like any text (a child of a
        // process with a huge command line now holds it too).
        while self.tail != NIL && self.bytes > self.budget {
            self.evict_lru();
        }
        Fill::Filled
    }

    /// Drops the least recently used entry, freeing its memory; its slot
    /// waits for the next newcomer.
    fn evict_lru(&mut self) {
        let victim = self.tail;
        self.unlink(victim);
        let old = std::mem::replace(&mut self.slots[victim as usize], Slot::vacant());
        self.map.remove(&old.guid);
        self.bytes -= entry_cost(&old);
        self.free.push(victim);
        self.evictions += 1;
    }

    pub(crate) fn touch(&mut self, index: u32) {
        if self.head != index {
            self.unlink(index);
            self.push_front(index);
        }
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next) = {
            let s = &self.slots[index as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, index: u32) {
        let old_head = self.head;
        {
            let s = &mut self.slots[index as usize];
            s.prev = NIL;
            s.next = old_head;
        }
        match old_head {
            NIL => self.tail = index,
            h => self.slots[h as usize].prev = index,
        }
        self.head = index;
    }

    /// GUIDs from most to least recently used (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn lru_order(&self) -> Vec<ProcessGuid> {
        let mut out = Vec::new();
        let mut i = self.head;
        while i != NIL {
            out.push(self.slots[i as usize].guid);
            i = self.slots[i as usize].next;
        }
        out
    }
}

impl Slot {
    /// An evicted slot: no text, no hashes, linked nowhere.
    fn vacant() -> Slot {
        Slot {
            guid: ProcessGuid::from_u128(0),
            parent: ProcessGuid::from_u128(0),
            time: 0.0,
            text: Box::default(),
            hashes: None,
            ends: [0; 5],
            prev: NIL,
            next: NIL,
            parent_known: false,
            source: SourceKind::Results,
        }
    }
}

/// What [`ProcessTable::fill_parent_text`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// The entry now shows its parent's image and command line.
    Filled,
    /// Nothing to fill, or nothing to fill it with.
    Nothing,
    /// The parent's entry is not in the table (yet).
    ParentUnknown,
}

/// The five text fields in one block, and where each ends.
fn join_parts(parts: [&[u8]; 5]) -> (Box<[u8]>, [u32; 5]) {
    let text_len: usize = parts.iter().map(|p| p.len().min(MAX_FIELD)).sum();
    let mut text = Vec::with_capacity(text_len);
    let mut ends = [0u32; 5];
    for (end, part) in ends.iter_mut().zip(parts) {
        text.extend_from_slice(&part[..part.len().min(MAX_FIELD)]);
        *end = text.len() as u32;
    }
    (text.into_boxed_slice(), ends)
}

fn build_slot(info: &ProcessRef<'_>, source: SourceKind) -> Slot {
    let (text, ends) = join_parts([
        info.image,
        info.command_line,
        info.parent_image,
        info.parent_command_line,
        info.host,
    ]);
    let hashes = (!info.hashes.is_empty()).then(|| Box::new(info.hashes));
    Slot {
        guid: info.guid,
        parent: info.parent_guid.unwrap_or(ProcessGuid::from_u128(0)),
        time: info.time,
        text,
        ends,
        prev: NIL,
        next: NIL,
        hashes,
        parent_known: info.parent_guid.is_some(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::process::ProcessInfo;

    fn g(n: u128) -> ProcessGuid {
        ProcessGuid::from_u128(n)
    }

    fn info(n: u128) -> ProcessInfo {
        let mut p = ProcessInfo::new(g(n));
        p.parent_guid = Some(g(n + 1000));
        p.image = format!("C:\\p{n}.exe").into_bytes().into();
        p
    }

    #[test]
    fn parent_text_is_filled_from_the_parents_own_entry_within_the_budget() {
        let mut t = ProcessTable::new(100, 1 << 20);
        let mut child = info(1);
        child.parent_guid = Some(g(2));
        child.parent_image = Box::from(&b"given.exe"[..]);
        t.insert(&child.as_ref(), SourceKind::Results);
        let i = t.find(g(1)).unwrap();
        assert_eq!(t.fill_parent_text(i), Fill::ParentUnknown);
        let mut parent = info(2);
        parent.command_line = Box::from(&b"p2 /x"[..]);
        t.insert(&parent.as_ref(), SourceKind::State);
        let before = t.bytes();
        assert_eq!(t.fill_parent_text(i), Fill::Filled);
        let e = t.entry(i);
        // What the child said stays; what it lacked comes from the parent.
        assert_eq!(e.parent_image(), b"given.exe");
        assert_eq!(e.parent_command_line(), b"p2 /x");
        assert_eq!((e.image(), e.host()), (&b"C:\\p1.exe"[..], &b""[..]));
        assert_eq!(t.bytes(), before + 5);
        assert_eq!(t.fill_parent_text(i), Fill::Nothing, "nothing left to fill");
        // A huge parent command line copied into the child stays within
        // the byte budget (older entries go).
        let mut t = ProcessTable::new(100, 4 * ENTRY_OVERHEAD + 3000);
        let mut big = info(5);
        big.command_line = vec![b'A'; 2000].into();
        let mut kid = info(4);
        kid.parent_guid = Some(g(5));
        t.insert(&info(3).as_ref(), SourceKind::Results);
        t.insert(&big.as_ref(), SourceKind::Results);
        t.insert(&kid.as_ref(), SourceKind::Results);
        let i = t.find(g(4)).unwrap();
        assert_eq!(t.fill_parent_text(i), Fill::Filled);
        assert!(t.bytes() <= 4 * ENTRY_OVERHEAD + 3000, "{}", t.bytes());
        assert!(t.find(g(3)).is_none(), "the least recently used went");
    }

    #[test]
    fn slot_stays_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 96,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn round_trip_text_and_hashes() {
        let mut p = ProcessInfo::new(g(7));
        p.parent_guid = Some(g(0));
        p.image = b"C:\\a\\b.exe".as_slice().into();
        p.command_line = b"b.exe /x \xff".as_slice().into();
        p.parent_image = b"?".as_slice().into();
        p.parent_command_line = Box::default();
        p.host = b"HOST".as_slice().into();
        p.time = 12.5;
        p.hashes = FileHashes::parse_sysmon(
            b"SHA1=8C5437CB7F4B7B4E3F0D5DB7C6D4B3A7E5A14B0B,MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0,IMPHASH=272245E2988E1E430500B852C4FB5E18",
        );
        let mut t = ProcessTable::new(10, usize::MAX);
        assert!(t.insert(&p.as_ref(), SourceKind::State));
        let e = t.entry(t.find(g(7)).unwrap());
        assert_eq!(e.to_ref().to_info(), p);
        assert_eq!(e.source(), SourceKind::State);
        // No parent GUID at all is not the same as the zero GUID.
        let mut q = ProcessInfo::new(g(8));
        q.parent_guid = None;
        t.insert(&q.as_ref(), SourceKind::Results);
        assert_eq!(t.entry(t.find(g(8)).unwrap()).to_ref().to_info(), q);
        assert!(t.entry(t.find(g(8)).unwrap()).hashes().is_none());
    }

    #[test]
    fn first_info_wins() {
        let mut t = ProcessTable::new(10, usize::MAX);
        assert!(t.insert(&info(1).as_ref(), SourceKind::Results));
        let mut other = info(1);
        other.image = b"other".as_slice().into();
        assert!(!t.insert(&other.as_ref(), SourceKind::Splunk));
        let e = t.entry(t.find(g(1)).unwrap());
        assert_eq!(
            (e.image(), e.source()),
            (&b"C:\\p1.exe"[..], SourceKind::Results)
        );
    }

    #[test]
    fn lru_eviction_is_bounded_and_respects_use() {
        let mut t = ProcessTable::new(3, usize::MAX);
        for n in 1..=3 {
            t.insert(&info(n).as_ref(), SourceKind::Results);
        }
        assert_eq!(t.lru_order(), [g(3), g(2), g(1)]);
        // Using 1 (e.g. walking through it as an ancestor) saves it.
        t.find_touch(g(1)).unwrap();
        t.insert(&info(4).as_ref(), SourceKind::Results);
        assert_eq!(t.lru_order(), [g(4), g(1), g(3)]);
        assert!(t.find(g(2)).is_none());
        assert_eq!((t.len(), t.evictions()), (3, 1));
        // Re-inserting a known GUID counts as use, evicts nothing.
        t.insert(&info(3).as_ref(), SourceKind::Results);
        assert_eq!(t.lru_order(), [g(3), g(4), g(1)]);
        for n in 10..1000 {
            t.insert(&info(n).as_ref(), SourceKind::Results);
            assert!(t.len() <= 3);
        }
        assert_eq!(t.lru_order(), [g(999), g(998), g(997)]);
        for n in [997, 998, 999] {
            assert_eq!(t.entry(t.find(g(n)).unwrap()).to_ref().to_info(), info(n));
        }
        assert_eq!(t.map.len(), 3);
    }

    /// A process whose command line is `len` bytes.
    fn big(n: u128, len: usize) -> ProcessInfo {
        let mut p = info(n);
        p.command_line = vec![b'A'; len].into();
        p
    }

    #[test]
    fn byte_budget_bounds_big_entries() {
        // Room by count for 1,000 entries, by bytes for about ten of 10 KB.
        let budget = 10 * (10_000 + ENTRY_OVERHEAD) + 5_000;
        let mut t = ProcessTable::new(1000, budget);
        for n in 0..200 {
            assert!(t.insert(&big(n, 10_000).as_ref(), SourceKind::Results));
            assert!(t.bytes() <= budget, "{} > {budget}", t.bytes());
            assert_eq!(t.map.len(), t.len());
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.evictions(), 190);
        // The newest stay, in use order, whole.
        assert_eq!(t.lru_order(), (190..200).rev().map(g).collect::<Vec<_>>());
        assert_eq!(
            t.entry(t.find(g(199)).unwrap()).to_ref().to_info(),
            big(199, 10_000)
        );
        // Evicted slots are emptied and reused: no growth past the entries
        // alive at the peak.
        assert!(t.slots.len() <= 11, "{}", t.slots.len());
        // Small entries fill the room big ones leave, up to the count.
        for n in 1000..1100 {
            t.insert(&info(n).as_ref(), SourceKind::Results);
        }
        assert!(
            t.len() > 100 && t.bytes() <= budget,
            "{} {}",
            t.len(),
            t.bytes()
        );
        // A big one makes room by dropping the least recently used: the
        // survivors are the most recently used, in order, and walking
        // through an entry (the oldest small one) counts as use.
        t.find_touch(g(1000)).unwrap();
        let before = t.lru_order();
        assert_eq!(before[0], g(1000));
        t.insert(&big(5000, 50_000).as_ref(), SourceKind::Results);
        let after = t.lru_order();
        assert_eq!(after[0], g(5000));
        assert_eq!(after[1..], before[..after.len() - 1]);
        assert!(after.len() < before.len() && t.bytes() <= budget);
        // An entry larger than the whole budget is kept, alone.
        t.insert(&big(6000, budget).as_ref(), SourceKind::Results);
        assert_eq!(t.lru_order(), [g(6000)]);
        assert_eq!(
            t.bytes(),
            entry_cost(&t.slots[t.find(g(6000)).unwrap() as usize])
        );
        // And leaves when the next one arrives.
        t.insert(&info(7000).as_ref(), SourceKind::Results);
        assert_eq!(t.lru_order(), [g(7000)]);
    }

    #[test]
    fn growth_never_passes_the_cap() {
        let mut t = ProcessTable::new(1500, usize::MAX);
        for n in 0..5000 {
            t.insert(&info(n).as_ref(), SourceKind::Results);
        }
        assert_eq!(t.len(), 1500);
        assert!(t.slots.capacity() <= 1500, "{}", t.slots.capacity());
    }
}
