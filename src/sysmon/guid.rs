//! Process GUIDs as Sysmon writes them, compared the way analysts expect.
//!
//! Sysmon renders `{747F3D96-D6ED-5D31-0000-0010C88A2500}`; CIM add-ons, JSON
//! exports and people typing in the search bar drop the braces or lower-case
//! the hex. We parse all of those into one `u128` so that comparison and
//! hashing never allocate and never depend on spelling.

use std::fmt;

/// Positions of the 32 hex digits in `8-4-4-4-12`.
const DIGITS: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35,
];

/// Hex digit → its value; 0x10 marks a non-hex byte.
static NIBBLE: [u8; 256] = {
    let mut t = [0x10u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => 0x10,
        };
        i += 1;
    }
    t
};

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
        if t.len() != 36 {
            return None;
        }
        if t[8] != b'-' || t[13] != b'-' || t[18] != b'-' || t[23] != b'-' {
            return None;
        }
        // Every row carries two or three GUIDs: a table load per digit,
        // one check at the end.
        let mut value: u128 = 0;
        let mut bad = 0u8;
        for &p in &DIGITS {
            let n = NIBBLE[t[p as usize] as usize];
            bad |= n;
            value = (value << 4) | u128::from(n & 0x0f);
        }
        (bad & 0x10 == 0).then_some(ProcessGuid(value))
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
    fn zero_is_no_parent() {
        let z = ProcessGuid::parse(b"{00000000-0000-0000-0000-000000000000}").unwrap();
        assert!(z.is_zero());
        assert_eq!(ProcessGuid::from_u128(z.as_u128()), z);
    }
}
