//! The fast hasher of the hot maps: [`ProcessGuid`] keys (the process
//! table is looked up once per ancestor per row), interned hashes and
//! images of a chunk, rule names.
//!
//! std's SipHash costs about 20 ns per 16-byte key. `foldhash` (folded
//! multiplies, the wyhash construction) hashes a GUID in two multiplies and
//! short byte strings without SipHash's setup. Its `quality` variant, not
//! `fast`: hashbrown needs the hash spread over both ends (low bits pick
//! the bucket, top 7 bits are the tag), and on the sequential GUIDs Sysmon
//! makes (a counter part) `fast` left more buckets empty than a random
//! function would (the spread test below failed about one run in eight);
//! `quality`'s final multiply costs a few cycles per lookup. Its seed is random per
//! process, so a crafted set of GUIDs injected into an index cannot be
//! precomputed to collide. Nothing we output depends on map iteration
//! order, so the seed never shows.

use crate::sysmon::guid::ProcessGuid;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

/// `HashMap` keyed by process GUID with the fast hasher.
pub type GuidMap<V> = HashMap<ProcessGuid, V, GuidBuildHasher>;
/// `HashSet` of process GUIDs with the fast hasher.
pub type GuidSet = HashSet<ProcessGuid, GuidBuildHasher>;

/// The hasher `foldhash` builds.
pub type GuidHasher = foldhash::quality::FoldHasher<'static>;

/// Builds [`GuidHasher`]s sharing one random seed (`foldhash`'s).
#[derive(Clone, Debug, Default)]
pub struct GuidBuildHasher(foldhash::quality::RandomState);

impl GuidBuildHasher {
    /// A hasher factory with a fresh random seed.
    pub fn new() -> GuidBuildHasher {
        GuidBuildHasher::default()
    }
}

impl BuildHasher for GuidBuildHasher {
    type Hasher = GuidHasher;

    #[inline]
    fn build_hasher(&self) -> GuidHasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_equal_hashes_and_spread() {
        let b = GuidBuildHasher::new();
        let g = |v: u128| ProcessGuid::from_u128(v);
        assert_eq!(b.hash_one(g(42)), b.hash_one(g(42)));
        // Sequential GUIDs (Sysmon's counter part) must differ in the low
        // bits (bucket) and in the top 7 bits (tag) most of the time.
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for i in 0..4096u128 {
            let h = b.hash_one(g(0x747F_3D96_D6ED_5D31_0000_0010_0000_0000 + i));
            low.insert(h & 0xFFF);
            top.insert(h >> 57);
        }
        assert!(low.len() > 2400, "{}", low.len());
        assert_eq!(top.len(), 128);
        let mut set = GuidSet::default();
        assert!(set.insert(g(1)) && !set.insert(g(1)));
    }
}
