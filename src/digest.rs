//! A stable 64-bit digest: fixed constants, 8 bytes per step with a folded
//! multiply (the wyhash construction; ~GB/s).
//!
//! Why its own leaf: its values are written to disk and compared across
//! builds (the process table's creation digests, Sigma rule fingerprints),
//! so it must never depend on a random seed or on std's unspecified
//! `DefaultHasher`, and both `state` and `sigma` need the same one. Not a
//! cryptographic hash.

const SEED: u64 = 0x2d35_8dcc_aa6c_78a5;
const K: u64 = 0x8bb8_4b93_962e_acc9;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a).wrapping_mul(u128::from(b));
    (m as u64) ^ ((m >> 64) as u64)
}

/// Streams byte strings into one digest; each field is length-prefixed so
/// that moving bytes from one field to the next changes the digest.
pub struct Digest(u64);

impl Digest {
    /// A digest of nothing yet.
    pub fn new() -> Self {
        Digest(SEED)
    }

    /// The digest of everything streamed in.
    pub fn finish(&self) -> u64 {
        self.0
    }

    /// Adds a byte string, length-prefixed so that bytes moved from one
    /// string to the next change the digest.
    pub fn bytes(&mut self, v: &[u8]) {
        self.word(v.len() as u64);
        let mut chunks = v.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }

    /// Adds one 64-bit word.
    #[inline]
    pub fn word(&mut self, w: u64) {
        self.0 = fold(self.0 ^ w, K);
    }
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

/// The digest of byte strings, each length-prefixed.
pub fn of_bytes<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut d = Digest::new();
    for p in parts {
        d.bytes(p);
    }
    d.finish()
}
