//! One pass over a value for an item with many plain string alternatives.
//!
//! SigmaHQ writes long value lists: one side-loading rule names 443 DLLs
//! (`ImageLoaded|endswith`), its filters dozens of folders. Tested one by
//! one, each event that selects the rule compares its value with hundreds
//! of strings; that rule alone was a sixth of the rule-test time on diverse
//! data. Here the literals of such an item go into one Aho-Corasick
//! automaton, and a match counts when it sits where its kind says
//! (anywhere, at the start, at the end, or both).
//!
//! Keywords (items without a field) are searched in every value of the
//! event. NotPetya's `'\perfc.dat'` made every process creation unescape
//! and lower-case all of its values, a quarter of the rule-test time. Now
//! a set of `contains` keywords (nearly all of them) searches the event's
//! non-empty values joined into one text and lower-cased in one pass, with
//! an automaton that can use its fast prefilters (`memmem`, Teddy). Any
//! other keyword set folds ASCII case in its automaton, so a value that is
//! ASCII and holds no `&` (nothing to unescape, and lower-casing it is
//! ASCII folding) is searched as the row holds it, without a copy; any
//! other value is unescaped and lower-cased as before. Both give what the
//! one-by-one test gives: the literals are lower-cased, and a lower-cased
//! value holds no upper-case ASCII letter.
//!
//! The automaton is built on the first event that tests the item: most
//! items of a rule set never run on a given search, and load time counts.
//! It is bounded by [`MAX_LITERAL_BYTES`] (past it the alternatives are
//! tested one by one, as before), so its memory is a small multiple of what
//! the rule's compile budget already charged for the same literals.

use super::modifiers::Matcher;
use super::pattern::StrPat;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use std::sync::OnceLock;

const EXACT: u8 = 1;
const PREFIX: u8 = 2;
const SUFFIX: u8 = 4;
const CONTAINS: u8 = 8;

/// Fewest alternatives worth an automaton for an item with a field
/// (keywords always are: they search every value of the event).
pub const MIN_ALTERNATIVES: usize = 8;

/// Most literal bytes one item's automaton holds.
pub const MAX_LITERAL_BYTES: usize = 64 << 10;

/// Literal bytes below which the automaton may be a DFA (fastest to scan,
/// but its table grows with states times byte classes).
const DFA_LITERAL_BYTES: usize = 4 << 10;

/// The compiled alternatives of one item.
#[derive(Clone, Debug)]
pub struct AnyOf {
    automaton: AhoCorasick,
    /// Per pattern id, where its matches count (`EXACT | PREFIX | …`).
    kinds: Vec<u8>,
    /// Every pattern counts anywhere: the first match decides.
    only_contains: bool,
    /// No pattern holds a NUL byte (see [`AnyOf::joinable`]).
    no_nul: bool,
    /// Letters compare as written (`|cased`): test the unescaped value, not
    /// the lower-cased one.
    pub cased: bool,
}

impl AnyOf {
    /// Whether values may be searched joined by NUL bytes: every pattern
    /// counts anywhere and none holds a NUL, so a match is inside one value.
    pub fn joinable(&self) -> bool {
        self.only_contains && self.no_nul
    }

    /// Whether any alternative matches `value` (folded as the patterns are:
    /// lower-cased unless [`AnyOf::cased`]; for keyword sets that are not
    /// [`AnyOf::joinable`], ASCII folding is also done by the automaton).
    pub fn is_match(&self, value: &str) -> bool {
        if self.only_contains {
            return self.automaton.is_match(value);
        }
        let len = value.len();
        self.automaton.find_overlapping_iter(value).any(|m| {
            let k = self.kinds[m.pattern().as_usize()];
            let (start, end) = (m.start() == 0, m.end() == len);
            k & CONTAINS != 0
                || (k & PREFIX != 0 && start)
                || (k & SUFFIX != 0 && end)
                || (k & EXACT != 0 && start && end)
        })
    }
}

/// An item's automaton, built on first use when the item qualifies.
#[derive(Clone, Debug, Default)]
pub struct Lazy {
    /// Whether the item qualifies (decided at compile time, cheaply).
    eligible: bool,
    /// Search as a keyword: fold ASCII case, use a prefilter.
    keyword: bool,
    cell: OnceLock<Option<AnyOf>>,
}

/// The literal and kind of a plain string alternative, `None` for any
/// other matcher (and for empty literals, which an automaton cannot hold).
fn plain(m: &Matcher) -> Option<(&str, u8, bool)> {
    let Matcher::Str { pat, cased } = m else {
        return None;
    };
    let (text, kind) = match pat {
        StrPat::Exact(t) => (t.as_str(), EXACT),
        StrPat::Prefix(t) => (t.as_str(), PREFIX),
        StrPat::Suffix(t) => (t.as_str(), SUFFIX),
        StrPat::Contains(n) => (n.text(), CONTAINS),
        StrPat::Any | StrPat::Glob(_) => return None,
    };
    (!text.is_empty()).then_some((text, kind, *cased))
}

impl Lazy {
    /// Decides whether an item's values (`values[i]`: one value's
    /// alternatives, ORed unless `all`) get an automaton: every alternative
    /// a plain string, enough of them, few enough bytes.
    pub fn new(values: &[Vec<Matcher>], all: bool, keyword: bool) -> Lazy {
        let mut count = 0;
        let mut bytes = 0;
        let mut cased = None;
        let eligible =
            !all && values.iter().flatten().all(|m| match plain(m) {
                Some((text, _, c)) => {
                    count += 1;
                    bytes += text.len();
                    *cased.get_or_insert(c) == c
                }
                None => false,
            }) && count >= if keyword { 1 } else { MIN_ALTERNATIVES }
                && bytes <= MAX_LITERAL_BYTES;
        Lazy {
            eligible,
            keyword,
            cell: OnceLock::new(),
        }
    }

    /// The automaton, built on first call; `None` when the item does not
    /// qualify (or the automaton could not be built): test one by one.
    pub fn get(&self, values: &[Vec<Matcher>]) -> Option<&AnyOf> {
        if !self.eligible {
            return None;
        }
        self.cell
            .get_or_init(|| build(values, self.keyword))
            .as_ref()
    }
}

fn build(values: &[Vec<Matcher>], keyword: bool) -> Option<AnyOf> {
    let mut lits: Vec<(&str, u8)> = Vec::new();
    let mut cased = false;
    for m in values.iter().flatten() {
        let (text, kind, c) = plain(m)?;
        cased = c;
        lits.push((text, kind));
    }
    // One pattern per literal, with every kind it was written with.
    lits.sort_unstable();
    let mut patterns: Vec<&str> = Vec::new();
    let mut kinds: Vec<u8> = Vec::new();
    for (text, kind) in lits {
        if patterns.last() == Some(&text) {
            if let Some(k) = kinds.last_mut() {
                *k |= kind;
            }
        } else {
            patterns.push(text);
            kinds.push(kind);
        }
    }
    let bytes: usize = patterns.iter().map(|p| p.len()).sum();
    let only_contains = kinds.iter().all(|&k| k & CONTAINS != 0);
    let no_nul = patterns.iter().all(|p| !p.contains('\0'));
    // A joinable keyword set searches the event's values joined and
    // lower-cased (see `eval.rs`); any other keyword set searches values
    // as the row holds them, folding ASCII case itself. Folding in the
    // automaton rules out its best prefilters (`memmem` for one literal,
    // Teddy for a few): NotPetya's `\perfc.dat` got a start-byte
    // prefilter that stopped at every `\` of every path.
    let joinable = only_contains && no_nul;
    let automaton = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .ascii_case_insensitive(keyword && !cased && !joinable)
        // Field values share their bytes with the literals (`\`, `.dll`):
        // a prefilter would stop everywhere (see index.rs). A keyword is
        // looked for in every value, mostly absent: there it pays.
        .prefilter(keyword)
        .kind((bytes > DFA_LITERAL_BYTES).then_some(AhoCorasickKind::ContiguousNFA))
        .build(&patterns)
        .ok()?;
    Some(AnyOf {
        automaton,
        only_contains,
        no_nul,
        kinds,
        cased,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::pattern::{parse, wrap};

    fn alt(text: &str, front: bool, back: bool) -> Vec<Matcher> {
        let pat = StrPat::compile(&wrap(parse(text), front, back), false).unwrap();
        vec![Matcher::Str { pat, cased: false }]
    }

    /// The automaton agrees with the alternatives tested one by one, on
    /// matches at the start, the end, both, inside, and overlapping ones.
    #[test]
    fn agrees_with_one_by_one() {
        let mut values = vec![
            alt("\\a.dll", true, false),
            alt("c:\\windows\\", false, true),
            alt("c:\\x.dll", false, false),
            alt("temp", true, true),
            alt("\\b.dll", true, false),
            alt("\\a.dll", false, true),
            alt("ows\\sys", true, true),
        ];
        values.extend((0..8).map(|i| alt(&format!("\\n{i}.dll"), true, false)));
        let lazy = Lazy::new(&values, false, false);
        let set = lazy.get(&values).expect("qualifies");
        for v in [
            "c:\\windows\\a.dll",
            "c:\\a.dll\\x",
            "\\a.dll\\a.dll",
            "\\a.dll",
            "c:\\x.dll",
            "c:\\x.dll2",
            "d:\\windows\\",
            "d:\\windows\\system32\\q.dll",
            "d:\\temp\\q",
            "d:\\b.dll.bak",
            "d:\\n7.dll",
            "",
        ] {
            let one_by_one = values.iter().flatten().any(|m| match m {
                Matcher::Str { pat, .. } => pat.is_match(v),
                _ => false,
            });
            assert_eq!(set.is_match(v), one_by_one, "{v}");
        }
    }

    #[test]
    fn short_lists_mixed_matchers_and_all_are_tested_one_by_one() {
        let few: Vec<_> = (0..MIN_ALTERNATIVES - 1)
            .map(|i| alt(&format!("x{i}"), true, true))
            .collect();
        assert!(Lazy::new(&few, false, false).get(&few).is_none());
        // A keyword needs only one.
        assert!(Lazy::new(&few[..1], false, true).get(&few[..1]).is_some());
        let mut mixed: Vec<_> = (0..MIN_ALTERNATIVES)
            .map(|i| alt(&format!("x{i}"), true, true))
            .collect();
        assert!(Lazy::new(&mixed, false, false).get(&mixed).is_some());
        assert!(Lazy::new(&mixed, true, false).get(&mixed).is_none());
        mixed.push(vec![Matcher::Null]);
        assert!(Lazy::new(&mixed, false, false).get(&mixed).is_none());
        // A glob (`*` inside) stays a glob.
        mixed.pop();
        mixed.push(alt("a*b", false, false));
        assert!(Lazy::new(&mixed, false, false).get(&mixed).is_none());
    }

    #[test]
    fn keywords_fold_ascii_case_in_the_automaton_unless_joined() {
        // Joinable (contains only): the caller lower-cases the values.
        let values = vec![alt("\\perfc.dat", true, true)];
        let lazy = Lazy::new(&values, false, true);
        let set = lazy.get(&values).unwrap();
        assert!(set.joinable());
        assert!(set.is_match("c:\\windows\\perfc.dat"));
        assert!(!set.is_match("c:\\windows\\perfc.da"));
        // Not joinable (a keyword anchored at a value's start): values are
        // searched as the row holds them, the automaton folds ASCII case.
        let values = vec![alt("\\perfc.dat", false, true)];
        let lazy = Lazy::new(&values, false, true);
        let set = lazy.get(&values).unwrap();
        assert!(!set.joinable());
        assert!(set.is_match("\\PERFC.DAT and more"));
        assert!(!set.is_match("C:\\Windows\\PERFC.DAT"));
    }
}
