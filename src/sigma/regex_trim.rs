//! A rule regex reduced to what decides whether it matches *somewhere*.
//!
//! The engine only asks `is_match` of an unanchored search, and then a
//! part at either end that can match the empty string changes nothing: a
//! match of the rest is a match of the whole with that part empty. Nor
//! does a repetition's upper bound at an end (`X{2,64}` at the end matches
//! wherever `X{2}` does). SigmaHQ writes such ends often, and they are the
//! expensive part: `svchost.exe`'s `-k\s\w{1,64}(?:\s?(?:-p|-s))?` is
//! sixty-four Unicode word classes and an optional group, where `-k\s\w`
//! answers the same; it cost 12 µs per command line (the lazy DFA gave up
//! on it) and a share of loading.
//!
//! Only parts without look-around are dropped (`a\b` must keep its `\b`),
//! and only the outer ends are trimmed: inside a repetition the copies
//! follow each other, so `(ab?){2}` is not `(a){2}`.

use regex_syntax::hir::{Hir, HirKind, Repetition};

#[derive(Clone, Copy)]
enum End {
    Head,
    Tail,
}

/// See the module docs.
pub fn for_is_match(hir: Hir) -> Hir {
    trim(trim(hir, End::Tail), End::Head)
}

/// Whether a part at an end may go: it can match empty, with no assertion.
fn droppable(h: &Hir) -> bool {
    h.properties().minimum_len() == Some(0) && h.properties().look_set().is_empty()
}

fn trim(h: Hir, end: End) -> Hir {
    if droppable(&h) {
        return Hir::empty();
    }
    let reducible = match h.kind() {
        HirKind::Concat(_) | HirKind::Capture(_) | HirKind::Alternation(_) => true,
        HirKind::Repetition(r) => r.min >= 1,
        _ => false,
    };
    if !reducible {
        return h;
    }
    match h.into_kind() {
        HirKind::Concat(mut parts) => {
            match end {
                End::Tail => {
                    while parts.last().is_some_and(droppable) {
                        parts.pop();
                    }
                    if let Some(last) = parts.pop() {
                        parts.push(trim(last, end));
                    }
                }
                End::Head => {
                    let keep = parts
                        .iter()
                        .position(|p| !droppable(p))
                        .unwrap_or(parts.len());
                    parts.drain(..keep);
                    if !parts.is_empty() {
                        let first = parts.remove(0);
                        parts.insert(0, trim(first, end));
                    }
                }
            }
            Hir::concat(parts)
        }
        HirKind::Capture(c) => trim(*c.sub, end),
        HirKind::Alternation(branches) => {
            Hir::alternation(branches.into_iter().map(|b| trim(b, end)).collect())
        }
        HirKind::Repetition(r) if r.min == 1 => trim(*r.sub, end),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: Some(r.min),
            greedy: r.greedy,
            sub: r.sub,
        }),
        // Not reached: `reducible` admitted only the kinds above.
        _ => Hir::empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trimmed(pat: &str) -> String {
        for_is_match(regex_syntax::parse(pat).unwrap()).to_string()
    }

    fn same(a: &str, b: &str) {
        assert_eq!(
            trimmed(a),
            regex_syntax::parse(b).unwrap().to_string(),
            "{a}"
        );
    }

    #[test]
    fn optional_and_bounded_ends_go() {
        same(r"-k\s\w{1,64}(?:\s?(?:-p|-s))?", r"-k\s\w");
        same(r"\d{2,10}x\s+", r"\d{2}x\s");
        same(r".*foo.*", r"foo");
        same(r"(?:a|bc+)d?", r"a|bc");
        same(r"[a-z]{40}", r"[a-z]{40}");
    }

    #[test]
    fn assertions_and_inner_parts_stay() {
        same(r"^a.*", r"^a");
        same(r"a\b", r"a\b");
        same(r"a(?:b\b)?", r"a(?:b\b)?");
        same(r"(ab?){2}", r"(ab?){2}");
        same(r"a{0,3}", r"");
    }

    /// Matches somewhere exactly when the original does.
    #[test]
    fn trimmed_regexes_agree_with_the_original() {
        let pats = [
            r"-k\s\w{1,64}(?:\s?(?:-p|-s))?",
            r"(?i)\.exe[\x22']?\s+[^\x22]{0,64}werfaultsecure\.exe[\x22']?\s+\d{2,10}",
            r"(ab?){2}c*",
            r"x{2,5}",
            r"\bcmd(?:\.exe)?\s*/c",
            r"a|b{3,}",
        ];
        let hays = [
            "svchost.exe -k netsvcs -p",
            "svchost.exe -k ",
            "C:\\x.exe  C:\\WerFaultSecure.exe 12",
            "C:\\x.exe  C:\\WerFaultSecure.exe 1",
            "aba",
            "aa",
            "x",
            "xx",
            "cmd /c",
            "xcmd /c",
            "bb",
            "bbb",
        ];
        for p in pats {
            let full = regex::Regex::new(p).unwrap();
            let short = regex::Regex::new(&trimmed(p)).unwrap();
            for h in hays {
                assert_eq!(full.is_match(h), short.is_match(h), "{p} on {h}");
            }
        }
    }
}
