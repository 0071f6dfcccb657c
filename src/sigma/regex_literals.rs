//! Literals one of which every match of a regex contains: what lets a
//! regex-only rule enter the candidate index instead of running on every
//! event of its category.
//!
//! Three sets are tried and the most selective kept: the prefixes and the
//! suffixes of the matches (regex-syntax's extractor), and literals
//! *inside* the pattern. The inner set matters for SigmaHQ's regexes,
//! which often start with something common: the HackTool `wsass` rule's
//! `(?i)\.exe["']?\s+[^"]{0,64}werfaultsecure\.exe…` has only `.exe` as a
//! prefix, which every command line holds, so the rule ran on every
//! process creation; `ecure.exe` is in none but the ones it looks for.
//!
//! The literals are lower-cased, because the index scans the lower-cased
//! value; `None` when the regex can match without a literal of at least
//! three ASCII bytes (non-ASCII literals are left out because Unicode
//! lower-casing of the event value need not keep them as substrings).

use regex_syntax::hir::{Class, Hir, HirKind};

/// Shortest literal worth looking for.
const MIN_LEN: usize = 3;

type Set = Vec<String>;

/// See the module docs.
pub fn necessary(pat: &str) -> Option<Set> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::parse(pat).ok()?;
    let extracted = |kind| -> Option<Set> {
        let seq = Extractor::new().kind(kind).extract(&hir);
        let mut out = Vec::new();
        for lit in seq.literals()? {
            let text = std::str::from_utf8(lit.as_bytes()).ok()?;
            if !text.is_ascii() {
                return None;
            }
            out.push(text.to_ascii_lowercase());
        }
        Some(out)
    };
    [
        extracted(ExtractKind::Prefix),
        extracted(ExtractKind::Suffix),
        inner(&hir),
    ]
    .into_iter()
    .map(|s| s.map(tidy).filter(usable))
    .fold(None, better)
}

fn tidy(mut set: Set) -> Set {
    set.sort_unstable();
    set.dedup();
    set
}

fn usable(set: &Set) -> bool {
    !set.is_empty() && set.iter().all(|l| l.len() >= MIN_LEN)
}

/// The more selective of two sets (the index's measure).
fn better(a: Option<Set>, b: Option<Set>) -> Option<Set> {
    let score = |v: &Set| super::index::selectivity(v.iter().map(String::as_str));
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
    }
}

/// The one lower-case ASCII character every character a class matches
/// lower-cases to (`[Ee]` under `(?i)`), if there is one. A class with a
/// character that lower-cases to something else (`(?i)s` also matches
/// `ſ`, which stays `ſ`) has none.
fn folded_char(class: &Class) -> Option<char> {
    let mut chars: Vec<char> = Vec::new();
    match class {
        Class::Unicode(c) => {
            for r in c.ranges() {
                if (r.end() as u32) - (r.start() as u32) > 4 {
                    return None;
                }
                chars.extend(r.start()..=r.end());
            }
        }
        Class::Bytes(c) => {
            for r in c.ranges() {
                if r.end() - r.start() > 4 {
                    return None;
                }
                chars.extend((r.start()..=r.end()).map(char::from));
            }
        }
    }
    let mut folded = None;
    for c in chars {
        let mut lower = c.to_lowercase();
        let (Some(l), None) = (lower.next(), lower.next()) else {
            return None;
        };
        if !l.is_ascii() || *folded.get_or_insert(l) != l {
            return None;
        }
    }
    folded
}

/// The text a piece of a concatenation adds to a literal run, if it is
/// one: ASCII literal text, or a class of one folded character.
fn run_text(h: &Hir) -> Option<String> {
    match h.kind() {
        HirKind::Literal(l) => {
            let text = std::str::from_utf8(&l.0).ok()?;
            text.is_ascii().then(|| text.to_ascii_lowercase())
        }
        HirKind::Class(c) => folded_char(c).map(String::from),
        _ => None,
    }
}

/// A set one of whose literals occurs inside every match of `h`.
fn inner(h: &Hir) -> Option<Set> {
    match h.kind() {
        HirKind::Literal(_) | HirKind::Class(_) => run_text(h).map(|t| vec![t]),
        HirKind::Capture(c) => inner(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => inner(&r.sub),
        HirKind::Concat(parts) => {
            let mut best = None;
            let mut run = String::new();
            for p in parts {
                if let Some(t) = run_text(p) {
                    run.push_str(&t);
                    continue;
                }
                if !run.is_empty() {
                    best = better(best, Some(vec![std::mem::take(&mut run)]));
                }
                best = better(best, inner(p));
            }
            if !run.is_empty() {
                best = better(best, Some(vec![run]));
            }
            best
        }
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for b in branches {
                all.extend(inner(b)?);
            }
            Some(all)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(pat: &str) -> Option<Vec<String>> {
        necessary(pat)
    }

    #[test]
    fn an_inner_literal_beats_a_common_prefix() {
        // SigmaHQ's wsass rule: `(?i)s` also matches `ſ`, so `s` ends a run.
        let got = lits(r#"(?i)\.exe[\"\']?\s+[^\"]{0,64}werfaultsecure\.exe[\"\']?\s+\d{2,10}"#);
        assert_eq!(got, Some(vec!["ecure.exe".to_string()]));
        assert_eq!(
            lits(r"-k\s\w{1,64}(?:\s?(?:-p|-s))?"),
            None,
            "no literal of three bytes"
        );
        assert_eq!(
            lits(r"[a-z](?:foo|bar)[a-z]"),
            Some(vec!["bar".to_string(), "foo".to_string()])
        );
        assert_eq!(
            lits(r"[a-z]+ (?:mimikatz|rubeus)\.exe"),
            Some(vec![" mimikatz.exe".into(), " rubeus.exe".into()])
        );
    }

    #[test]
    fn every_match_holds_one_of_the_literals() {
        let cases = [
            (
                r#"(?i)\.exe[\"\']?\s+[^\"]{0,64}werfaultsecure\.exe[\"\']?\s+\d{2,10}"#,
                "C:\\x.EXE  C:\\WerFaultSecure.exe 1234",
            ),
            (r"\\(?:foo|bar)\d+\.dll", "c:\\x\\bar12.dll"),
            (r"(?i)a(?:bc)+d", "ABCBCD"),
            (r"x(?:yz)?abc", "xabc"),
        ];
        for (pat, value) in cases {
            let re = regex::Regex::new(pat).unwrap();
            assert!(re.is_match(value), "{pat} on {value}");
            let set = lits(pat).expect(pat);
            let lower = value.to_lowercase();
            assert!(
                set.iter().any(|l| lower.contains(l.as_str())),
                "{pat}: {set:?}"
            );
        }
    }

    #[test]
    fn optional_parts_and_unfoldable_classes_give_nothing() {
        assert_eq!(lits(r"(?:abcdef)?x"), None);
        assert_eq!(lits(r"(?i)ss"), None);
        assert_eq!(lits(r"a|bcd"), None);
    }
}
