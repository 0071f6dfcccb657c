//! A fast hasher for [`ProcessGuid`] keys.
//!
//! The process table is looked up several times per row (one lookup per
//! ancestor), so the hasher is on the hot path. std's SipHash costs about
//! 20 ns per 16-byte key; a GUID is already 128 well-spread bits (time,
//! counter, machine part), so two folded multiplies (the wyhash/foldhash
//! construction) are enough to spread them over both ends of the 64-bit
//! hash, which hashbrown needs (low bits pick the bucket, top 7 bits are
//! the tag). Seeds come from std's `RandomState` so a crafted set of GUIDs
//! injected into an index cannot be precomputed to collide. Nothing we
//! output depends on map iteration order, so the seed never shows.

use crate::sysmon::guid::ProcessGuid;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

/// `HashMap` keyed by process GUID with the fast hasher.
pub type GuidMap<V> = HashMap<ProcessGuid, V, GuidBuildHasher>;
/// `HashSet` of process GUIDs with the fast hasher.
pub type GuidSet = HashSet<ProcessGuid, GuidBuildHasher>;

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a).wrapping_mul(u128::from(b));
    (m as u64) ^ ((m >> 64) as u64)
}

/// Builds [`GuidHasher`]s sharing one random seed.
#[derive(Clone, Copy, Debug)]
pub struct GuidBuildHasher {
    seed: [u64; 2],
}

impl GuidBuildHasher {
    /// A hasher factory with a fresh random seed.
    pub fn new() -> GuidBuildHasher {
        // RandomState is seeded per process (and per instance); hashing two
        // constants with it is the cheapest std way to get random bits.
        let rs = std::collections::hash_map::RandomState::new();
        GuidBuildHasher {
            seed: [rs.hash_one(K0) | 1, rs.hash_one(K1) | 1],
        }
    }
}

impl Default for GuidBuildHasher {
    fn default() -> Self {
        GuidBuildHasher::new()
    }
}

impl BuildHasher for GuidBuildHasher {
    type Hasher = GuidHasher;

    #[inline]
    fn build_hasher(&self) -> GuidHasher {
        GuidHasher {
            seed: self.seed,
            state: self.seed[0],
        }
    }
}

/// Hasher for 128-bit GUID keys (`write_u128`, what `ProcessGuid`'s derived
/// `Hash` calls). Other writes fall back to a correct but slower byte loop,
/// so the type is safe to use with any key.
#[derive(Clone, Copy, Debug)]
pub struct GuidHasher {
    seed: [u64; 2],
    state: u64,
}

impl Hasher for GuidHasher {
    #[inline]
    fn write_u128(&mut self, v: u128) {
        let lo = v as u64;
        let hi = (v >> 64) as u64;
        let x = fold(lo ^ self.seed[0] ^ self.state, hi ^ self.seed[1]);
        self.state = fold(x ^ K0, self.seed[1] ^ K1);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.state = fold(self.state ^ u64::from_le_bytes(word), self.seed[1] ^ K1);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.state
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
