//! Families of index literals that are one prefix and a fixed-length
//! hexadecimal key (`md5=<32 hex>`, `imphash=<32 hex>`): the hash lists of
//! IOC rules, found by the prefix and a map lookup instead of an automaton.
//!
//! Why: SigmaHQ's vulnerable-driver rule alone lists 4,432 hashes (5,221
//! with its malicious-driver sibling). As automaton patterns they made the
//! `driver_load` table the second costliest of all to build (about 21 ms,
//! nearly as much as process creation's thousands of command-line
//! literals), paid by every search that sees one driver load. A map of the
//! keys builds in a fraction of that and answers the same question.
//!
//! Same answers as the automaton: it reports every occurrence of every
//! pattern (overlapping search), and here every occurrence of the prefix
//! is looked at. The prefix ends at the literal's first `=`, so it holds no
//! other `=` and two occurrences of it cannot overlap: a search that skips
//! past each occurrence still sees them all.

use memchr::memmem::Finder;
use std::collections::HashMap;

/// Fewer members than this stay in the automaton (not worth a map).
pub(super) const MIN_FAMILY: usize = 64;
/// Longest prefix (with its `=`); `sha256=` is 7.
const MAX_PREFIX: usize = 16;
/// Shortest key: shorter hex runs are not hashes.
const MIN_KEY: usize = 16;

/// One family: its prefix, its key length and its keys.
pub(super) struct Family {
    prefix: Finder<'static>,
    key_len: usize,
    /// Key → member number (position in the list given to [`split`]'s
    /// caller's family).
    keys: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
}

/// The prefix length (with the `=`) and key length of a literal of the
/// family shape, else `None`.
fn shape(lit: &str) -> Option<(usize, usize)> {
    let prefix = lit.find('=')? + 1;
    let key = &lit.as_bytes()[prefix..];
    (prefix <= MAX_PREFIX && key.len() >= MIN_KEY && key.iter().all(u8::is_ascii_hexdigit))
        .then_some((prefix, key.len()))
}

/// Splits `lits` into families of at least [`MIN_FAMILY`] members, each
/// with its members' positions in `lits` (member number `m` of a family is
/// `positions[m]`), and the positions of the rest.
pub(super) fn split(lits: &[&str]) -> (Vec<(Family, Vec<usize>)>, Vec<usize>) {
    let mut groups: HashMap<(&str, usize), Vec<usize>> = HashMap::new();
    let mut rest = Vec::new();
    for (i, lit) in lits.iter().enumerate() {
        match shape(lit) {
            Some((p, k)) => groups.entry((&lit[..p], k)).or_default().push(i),
            None => rest.push(i),
        }
    }
    let mut families = Vec::new();
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable();
    for ((prefix, key_len), members) in groups {
        if members.len() < MIN_FAMILY {
            rest.extend(members);
            continue;
        }
        let keys = members
            .iter()
            .enumerate()
            .map(|(m, &i)| (Box::from(&lits[i].as_bytes()[prefix.len()..]), m as u32))
            .collect();
        let family = Family {
            prefix: Finder::new(prefix.as_bytes()).into_owned(),
            key_len,
            keys,
        };
        families.push((family, members));
    }
    rest.sort_unstable();
    (families, rest)
}

impl Family {
    /// Calls `hit` with the member number of every occurrence of a member
    /// in `hay`.
    pub(super) fn find(&self, hay: &[u8], mut hit: impl FnMut(u32)) {
        for at in self.prefix.find_iter(hay) {
            let start = at + self.prefix.needle().len();
            if let Some(&m) = hay
                .get(start..start + self.key_len)
                .and_then(|key| self.keys.get(key))
            {
                hit(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::{AhoCorasick, MatchKind};

    fn hex(i: usize, len: usize) -> String {
        format!(
            "{:0len$x}",
            (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
        )[..len]
            .to_string()
    }

    /// Member numbers found by the families, as the positions in `lits`.
    fn by_families(lits: &[&str], hay: &str) -> Vec<usize> {
        let (families, rest) = split(lits);
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(rest.iter().map(|&i| lits[i]))
            .unwrap();
        let mut found: Vec<usize> = ac
            .find_overlapping_iter(hay)
            .map(|m| rest[m.pattern().as_usize()])
            .collect();
        for (f, members) in &families {
            f.find(hay.as_bytes(), |m| found.push(members[m as usize]));
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    fn by_automaton(lits: &[&str], hay: &str) -> Vec<usize> {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(lits)
            .unwrap();
        let mut found: Vec<usize> = ac
            .find_overlapping_iter(hay)
            .map(|m| m.pattern().as_usize())
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    #[test]
    fn families_find_what_the_automaton_finds() {
        let mut owned: Vec<String> = Vec::new();
        for i in 0..200 {
            owned.push(format!("md5={}", hex(i, 32)));
            owned.push(format!("sha256={}", hex(i, 64)));
        }
        // Too few to be a family, a short key, not hex, no `=`.
        for i in 0..10 {
            owned.push(format!("sha1={}", hex(i, 40)));
        }
        owned.extend(["md5=abc".into(), "md5=zz".into(), ".exe".into()]);
        owned.push(format!("x={}", hex(7, 32)));
        let lits: Vec<&str> = owned.iter().map(String::as_str).collect();
        let (families, rest) = split(&lits);
        assert_eq!(families.len(), 2);
        assert_eq!(rest.len(), 14);
        let hays = [
            format!(
                "sha1={},md5={},sha256={},imphash={}",
                hex(3, 40),
                hex(5, 32),
                hex(9, 64),
                hex(5, 32)
            ),
            // A key inside a longer hex run, a prefix at the very end, a
            // key cut short, a prefix with a key of another family.
            format!("md5={}ff,md5={}", hex(11, 32), &hex(12, 32)[..20]),
            format!("amd5={}md5=", hex(13, 32)),
            format!("sha256={}", hex(14, 32)),
            format!("c:\\x.exe x={} md5=abc", hex(7, 32)),
            String::new(),
        ];
        for hay in &hays {
            let want = by_automaton(&lits, hay);
            assert_eq!(by_families(&lits, hay), want, "{hay}");
        }
        assert!(by_automaton(&lits, &hays[0]).len() >= 3);
    }
}
