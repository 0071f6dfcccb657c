//! Process GUIDs as Sysmon writes them, compared the way analysts expect.
//!
//! Sysmon renders `{747F3D96-D6ED-5D31-0000-0010C88A2500}`; CIM add-ons, JSON
//! exports and people typing in the search bar drop the braces or lower-case
//! the hex. We parse all of those into one `u128` so that comparison and
//! hashing never allocate and never depend on spelling.

use std::fmt;

/// The value of eight ASCII hex digits (first digit in the lowest byte,
/// most significant), or `None` if any byte is not a hex digit. SWAR: all
/// eight bytes at once, about a fifth of the cost of a table per digit, on
/// the two or three GUIDs of every row.
#[inline(always)]
fn hex8(v: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte `b` < 0x80: bit 7 of `(b + 0x80 - lo) & !(b + 0x80 - hi - 1)`
    // is set exactly when lo <= b <= hi. No carries cross bytes: every
    // addend keeps each byte below 0x100.
    let in_range = |x: u64, lo: u8, hi: u8| {
        let a = x + ONES * u64::from(0x80 - lo);
        let b = x + ONES * u64::from(0x80 - hi - 1);
        a & !b & HIGH
    };
    if v & HIGH != 0 {
        return None;
    }
    let digit = in_range(v, b'0', b'9');
    let letter = in_range(v | (ONES * 0x20), b'a', b'f');
    if digit | letter != HIGH {
        return None;
    }
    // '0'..'9' → low nibble; letters → low nibble + 9.
    let nibbles = (v & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Digit 0 in the top nibble: reverse the bytes, then pack pairs.
    let x = nibbles.swap_bytes();
    let x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    let x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x >> 16)) & 0x0000_0000_ffff_ffff;
    Some(x as u32)
}

/// A normalised Sysmon `ProcessGuid`.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Ord, PartialOrd)]
pub struct ProcessGuid(u128);

impl ProcessGuid {
    /// Parses `{8-4-4-4-12}` hex, braces optional, any case, surrounding
    /// white space ignored. Anything else (wrong length, stray characters,
    /// `-`, empty) is not a GUID and yields `None`.
    pub fn parse(text: &[u8]) -> Option<ProcessGuid> {
        let t = text.trim_ascii();
        let t = match t {
            [b'{', inner @ .., b'}'] => inner,
            _ => t,
        };
        let t: &[u8; 36] = t.try_into().ok()?;
        if t[8] != b'-' || t[13] != b'-' || t[18] != b'-' || t[23] != b'-' {
            return None;
        }
        // Every row carries two or three GUIDs: eight digits at a time.
        let q = |a: usize| u64::from(u32::from_le_bytes([t[a], t[a + 1], t[a + 2], t[a + 3]]));
        let a = hex8(q(0) | q(4) << 32);
        let b = hex8(q(9) | q(14) << 32);
        let c = hex8(q(19) | q(24) << 32);
        let d = hex8(q(28) | q(32) << 32);
        let (a, b, c, d) = (a?, b?, c?, d?);
        let high = (u64::from(a) << 32) | u64::from(b);
        let low = (u64::from(c) << 32) | u64::from(d);
        Some(ProcessGuid((u128::from(high) << 64) | u128::from(low)))
    }

    /// The all-zero GUID Sysmon writes for a parent it does not know
    /// (`ParentImage` is then `?` or `-`): the chain ends here.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The raw 128-bit value (stable key for storage).
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// Rebuilds a GUID from [`ProcessGuid::as_u128`].
    pub fn from_u128(value: u128) -> ProcessGuid {
        ProcessGuid(value)
    }
}

impl fmt::Display for ProcessGuid {
    /// Sysmon's own rendering: upper case, with braces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{{{:08X}-{:04X}-{:04X}-{:04X}-{:012X}}}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xFFFF_FFFF_FFFF
        )
    }
}

impl fmt::Debug for ProcessGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_compare_equal() {
        let a = ProcessGuid::parse(b"{747F3D96-D6ED-5D31-0000-0010C88A2500}").unwrap();
        let b = ProcessGuid::parse(b"747f3d96-d6ed-5d31-0000-0010c88a2500").unwrap();
        let c = ProcessGuid::parse(b" {747f3d96-D6ED-5d31-0000-0010C88A2500}\r").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_string(), "{747F3D96-D6ED-5D31-0000-0010C88A2500}");
    }

    #[test]
    fn rejects_non_guids() {
        for bad in [
            &b""[..],
            b"-",
            b"{747F3D96-D6ED-5D31-0000-0010C88A250}",
            b"{747F3D96-D6ED-5D31-0000-0010C88A25000}",
            b"{747F3D96D6ED-5D31-0000-0010C88A25000}",
            b"{747F3D96-D6ED-5D31-0000-0010C88A250G}",
            b"747F3D96-D6ED-5D31-0000-0010C88A2500}",
        ] {
            assert_eq!(
                ProcessGuid::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_byte_in_every_position() {
        // Against the plain per-digit definition: each of the 32 digit
        // positions with each of the 256 byte values.
        let value = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        };
        let base = *b"747F3D96-D6ED-5D31-0000-0010C88A2500";
        let positions = (0..36).filter(|&i| ![8, 13, 18, 23].contains(&i));
        for (k, pos) in positions.enumerate() {
            for b in 0..=255u8 {
                let mut t = base;
                t[pos] = b;
                let want = value(b).map(|n| {
                    let v = ProcessGuid::parse(&base).unwrap().as_u128();
                    let shift = 124 - 4 * k;
                    (v & !(0xf << shift)) | (u128::from(n) << shift)
                });
                assert_eq!(
                    ProcessGuid::parse(&t).map(|g| g.as_u128()),
                    want,
                    "byte {b:#x} at {pos}"
                );
            }
        }
        assert_eq!(
            ProcessGuid::parse(&base).unwrap().as_u128(),
            0x747F3D96_D6ED_5D31_0000_0010C88A2500
        );
    }

    #[test]
    fn zero_is_no_parent() {
        let z = ProcessGuid::parse(b"{00000000-0000-0000-0000-000000000000}").unwrap();
        assert!(z.is_zero());
        assert_eq!(ProcessGuid::from_u128(z.as_u128()), z);
    }
}
