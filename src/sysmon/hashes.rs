//! File hashes from every place Splunk may put them.
//!
//! Sysmon writes one `Hashes` value (`SHA1=…,MD5=…,SHA256=…,IMPHASH=…`, any
//! subset in the order of the config's `HashAlgorithms`); image-load and
//! file events call it `Hash`; the add-ons also split it into `MD5`, `SHA1`,
//! `SHA256`, `IMPHASH`, and CIM copies the whole string into `process_hash`.
//! All of them end up as one [`FileHashes`] of validated lower-case hex, so a
//! malformed value can never reach a reputation provider or the cache key.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Eight bytes (one little-endian word) at once: the word lower-cased, and
/// whether all eight are hex digits. Branch-free, a dozen operations for
/// eight bytes where a table costs a load and a test per byte.
///
/// Why it holds: for a byte `x` below 0x80, `x + (0x80 - lo)` has its high
/// bit set exactly when `x >= lo`, and `x + (0x7f - hi)` exactly when
/// `x > hi`, with no carry into the next byte. A byte at or above 0x80
/// may carry into its neighbour and spoil that neighbour's tests, but such
/// a word is refused anyway by the `!w & HIGH` term. `| 0x20` maps `A-F`
/// onto `a-f` and leaves digits alone (0x30-0x39 have that bit); the only
/// bytes it maps into `a-f` are `A-F` and `a-f`, so testing the letter
/// range on the lower-cased word is exact; digits are tested on the word
/// itself (0x10-0x19 would otherwise pass as digits).
#[inline]
fn hex_word(w: u64) -> (u64, bool) {
    let lower = w | (0x20 * ONES);
    let in_range = |x: u64, lo: u64, hi: u64| {
        x.wrapping_add((0x80 - lo) * ONES) & !x.wrapping_add((0x7f - hi) * ONES)
    };
    let hex = (in_range(w, 0x30, 0x39) | in_range(lower, 0x61, 0x66)) & !w & HIGH;
    (lower, hex == HIGH)
}

/// A hex digest of `N` characters, stored lower-case, always valid hex.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Ord, PartialOrd)]
pub struct Digest<const N: usize>([u8; N]);

/// 32 hex characters: MD5 and IMPHASH.
pub type Md5 = Digest<32>;
/// 40 hex characters.
pub type Sha1 = Digest<40>;
/// 64 hex characters.
pub type Sha256 = Digest<64>;

impl<const N: usize> Digest<N> {
    /// Accepts exactly `N` hex characters (any case, surrounding white space
    /// ignored). Anything else is not a hash of this kind.
    pub fn parse(text: &[u8]) -> Option<Self> {
        let t = text.trim_ascii();
        if t.len() != N {
            return None;
        }
        // Eight bytes per step: every digest has a multiple of eight
        // characters (checked when the type is used), and a digest is
        // parsed for every hash of every row.
        const { assert!(N.is_multiple_of(8), "a digest is whole 64-bit words") };
        let mut out = [0u8; N];
        let mut ok = true;
        for (o, c) in out.chunks_exact_mut(8).zip(t.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            let (lower, hex) = hex_word(u64::from_le_bytes(w));
            ok &= hex;
            o.copy_from_slice(&lower.to_le_bytes());
        }
        ok.then_some(Digest(out))
    }

    /// The lower-case hex text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The lower-case hex bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> std::fmt::Display for Digest<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Debug for Digest<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hashes of one file, each present only when it was valid hex.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FileHashes {
    /// MD5.
    pub md5: Option<Md5>,
    /// SHA-1.
    pub sha1: Option<Sha1>,
    /// SHA-256.
    pub sha256: Option<Sha256>,
    /// PE import hash (same width as MD5).
    pub imphash: Option<Md5>,
}

impl std::hash::Hash for FileHashes {
    /// One 128-bit word: 120 bits of the strongest digest plus which
    /// algorithms are present. Equal values hash equally; different files
    /// differ in their digest bits. Chunks intern their rows' hashes in a
    /// map, so this runs once per row and must be cheap.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let head: &[u8] = match (&self.sha256, &self.sha1, &self.md5, &self.imphash) {
            (Some(d), ..) => &d.0[..30],
            (None, Some(d), ..) => &d.0[..30],
            (None, None, Some(d), _) => &d.0[..30],
            (None, None, None, Some(d)) => &d.0[..30],
            _ => &[],
        };
        let mut word = 0u128;
        for pair in head.chunks(2) {
            // Two hex characters are one byte of digest.
            let nib = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
            word = (word << 8) | u128::from(nib(pair[0]) << 4 | nib(pair[1]));
        }
        let present = u128::from(self.md5.is_some())
            | u128::from(self.sha1.is_some()) << 1
            | u128::from(self.sha256.is_some()) << 2
            | u128::from(self.imphash.is_some()) << 3;
        state.write_u128(word << 8 | present);
    }
}

/// Which algorithm a `NAME=` token of a `Hashes` value names.
enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Imphash,
}

fn algorithm(name: &[u8]) -> Option<Algorithm> {
    let name = name.trim_ascii();
    if name.eq_ignore_ascii_case(b"MD5") {
        Some(Algorithm::Md5)
    } else if name.eq_ignore_ascii_case(b"SHA1") || name.eq_ignore_ascii_case(b"SHA-1") {
        Some(Algorithm::Sha1)
    } else if name.eq_ignore_ascii_case(b"SHA256") || name.eq_ignore_ascii_case(b"SHA-256") {
        Some(Algorithm::Sha256)
    } else if name.eq_ignore_ascii_case(b"IMPHASH") {
        Some(Algorithm::Imphash)
    } else {
        None
    }
}

impl FileHashes {
    /// Parses a Sysmon `Hashes`/`Hash` value (or CIM `process_hash`, which is
    /// the same string). Tokens are `NAME=hex` separated by commas (the old
    /// community TA's multivalue form separates by newlines, accepted too);
    /// unknown algorithms (`SHA384`, `CRC32`…) and invalid hex are skipped.
    /// The first valid value of each algorithm wins.
    pub fn parse_sysmon(value: &[u8]) -> FileHashes {
        let mut out = FileHashes::default();
        let mut rest = value;
        while !rest.is_empty() {
            let end = memchr::memchr3(b',', b'\n', b';', rest).unwrap_or(rest.len());
            let token = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            let Some(eq) = memchr::memchr(b'=', token) else {
                continue;
            };
            let (name, hex) = (&token[..eq], &token[eq + 1..]);
            match algorithm(name) {
                Some(Algorithm::Md5) if out.md5.is_none() => out.md5 = Md5::parse(hex),
                Some(Algorithm::Sha1) if out.sha1.is_none() => out.sha1 = Sha1::parse(hex),
                Some(Algorithm::Sha256) if out.sha256.is_none() => out.sha256 = Sha256::parse(hex),
                Some(Algorithm::Imphash) if out.imphash.is_none() => out.imphash = Md5::parse(hex),
                _ => {}
            }
        }
        out
    }

    /// True when no algorithm produced a valid digest.
    pub fn is_empty(&self) -> bool {
        self.md5.is_none() && self.sha1.is_none() && self.sha256.is_none() && self.imphash.is_none()
    }

    /// True when every algorithm is present.
    pub fn is_complete(&self) -> bool {
        self.md5.is_some() && self.sha1.is_some() && self.sha256.is_some() && self.imphash.is_some()
    }

    /// Fills each algorithm still missing here from `other`; what is already
    /// known is never overwritten (first source wins).
    pub fn fill_from(&mut self, other: &FileHashes) {
        self.md5 = self.md5.or(other.md5);
        self.sha1 = self.sha1.or(other.sha1);
        self.sha256 = self.sha256.or(other.sha256);
        self.imphash = self.imphash.or(other.imphash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "8C5437CB7F4B7B4E3F0D5DB7C6D4B3A7E5A14B0B";
    const MD5: &str = "975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0";
    const SHA256: &str = "36562B23E3CF2F5BDE5A5B0A84DDE0AC04A4E0D4E1BB2C7C47B4B5D8CFA3A5F2";
    const IMP: &str = "272245E2988E1E430500B852C4FB5E18";

    #[test]
    fn full_sysmon_value_any_order() {
        let v = format!("SHA1={SHA1},MD5={MD5},SHA256={SHA256},IMPHASH={IMP}");
        let h = FileHashes::parse_sysmon(v.as_bytes());
        assert_eq!(h.md5.unwrap().as_str(), MD5.to_ascii_lowercase());
        assert_eq!(h.sha1.unwrap().as_str(), SHA1.to_ascii_lowercase());
        assert_eq!(h.sha256.unwrap().as_str(), SHA256.to_ascii_lowercase());
        assert_eq!(h.imphash.unwrap().as_str(), IMP.to_ascii_lowercase());
        let v2 = format!("IMPHASH={IMP},MD5={MD5}");
        let h2 = FileHashes::parse_sysmon(v2.as_bytes());
        assert_eq!(h2.md5, h.md5);
        assert_eq!(h2.imphash, h.imphash);
        assert!(h2.sha1.is_none() && h2.sha256.is_none());
    }

    #[test]
    fn invalid_hex_is_not_a_hash() {
        let h = FileHashes::parse_sysmon(
            b"MD5=XYZ,SHA1=12,SHA256=,IMPHASH=272245E2988E1E430500B852C4FB5E1",
        );
        assert!(h.is_empty());
        assert!(Md5::parse(b"975B4BD9B9D3B0A9C7D6E5F4A3B2C1DG").is_none());
    }

    /// Hex digit → its lower-case form; 0 for anything that is not hex:
    /// the byte-at-a-time reference the word parse is checked against.
    fn table_lower(b: u8) -> u8 {
        match b {
            b'0'..=b'9' | b'a'..=b'f' => b,
            b'A'..=b'F' => b + 32,
            _ => 0,
        }
    }

    /// The eight-at-a-time parse agrees with the byte table for every
    /// byte value at every position of a word, next to every neighbour
    /// class (a byte at or above 0x80 can carry into the next one).
    #[test]
    fn word_parse_agrees_with_the_table() {
        let neighbours = [b'0', b'f', b'F', 0x7f, 0x80, 0xff, 0x19, b'@', b'G'];
        for b in 0..=255u8 {
            for pos in 0..8 {
                for &n in &neighbours {
                    let mut text = [b'a'; 32];
                    text[8..16].fill(n);
                    text[8 + pos] = b;
                    let want = text.iter().map(|&c| table_lower(c)).collect::<Vec<u8>>();
                    let got = Md5::parse(&text);
                    if want.contains(&0) {
                        assert!(got.is_none(), "byte {b:#04x} at {pos} beside {n:#04x}");
                    } else {
                        assert_eq!(got.map(|d| d.0.to_vec()), Some(want), "byte {b:#04x}");
                    }
                }
            }
        }
    }

    #[test]
    fn fill_keeps_first_source() {
        let mut a = FileHashes::parse_sysmon(format!("MD5={MD5}").as_bytes());
        let b = FileHashes::parse_sysmon(
            b"MD5=00000000000000000000000000000000,SHA1=0000000000000000000000000000000000000000",
        );
        a.fill_from(&b);
        assert_eq!(a.md5.unwrap().as_str(), MD5.to_ascii_lowercase());
        assert!(a.sha1.is_some());
    }
}
