//! Sigma string values: wildcards, escaping, and the matcher a value turns
//! into.
//!
//! A Sigma string is plain text where `*` is any run of characters and `?`
//! is exactly one; a backslash escapes `*`, `?` and itself, and any other
//! backslash is literal (so Windows paths need no doubling). This is how
//! pySigma reads values, which is what the rule authors test against.
//!
//! Matching is case-insensitive unless the rule says `cased`: both sides
//! are lower-cased (Unicode), the pattern once when compiled, the event
//! value once per event and field. Most values reduce to an equality, a
//! prefix, a suffix or a substring test; only values with wildcards in the
//! middle need the general glob matcher.

use std::sync::OnceLock;

/// One element of a parsed Sigma string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// Parses a Sigma string into pieces, merging adjacent literals.
pub fn parse(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    lit.push(next);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            _ => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

/// Pieces of a plain literal (no wildcard interpretation): for values made
/// by encoding modifiers and for numbers.
pub fn literal(text: &str) -> Vec<Piece> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Piece::Lit(text.to_owned())]
    }
}

/// The pieces joined back into text, wildcards as written (for messages and
/// for modifiers that only make sense on plain text).
pub fn plain_text(pieces: &[Piece]) -> Option<String> {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Lit(l) => s.push_str(l),
            _ => return None,
        }
    }
    Some(s)
}

/// Adds a leading and/or trailing `*` unless one is already there
/// (`contains`, `startswith`, `endswith`).
pub fn wrap(mut pieces: Vec<Piece>, front: bool, back: bool) -> Vec<Piece> {
    if back && pieces.last() != Some(&Piece::Star) {
        pieces.push(Piece::Star);
    }
    if front && pieces.first() != Some(&Piece::Star) {
        pieces.insert(0, Piece::Star);
    }
    pieces
}

/// A compiled string test. Texts are lower-cased unless `cased`.
#[derive(Clone, Debug)]
pub enum StrPat {
    /// The whole value equals the text.
    Exact(String),
    /// The value starts with the text.
    Prefix(String),
    /// The value ends with the text.
    Suffix(String),
    /// The value contains the text (searcher built on first use).
    Contains(Box<Needle>),
    /// Any non-empty value (`*`, `contains: ''`): the specification and
    /// Splunk's `Field=*` both need a value, and in Splunk an empty field
    /// and an absent one are the same.
    Any,
    /// Wildcards in the middle: the general matcher.
    Glob(Box<Glob>),
}

/// A `contains` text and its substring searcher, built the first time a
/// value is tested. Most are never tested: an item's alternatives go into
/// one automaton from eight on (`any_of.rs`), and a rule is tested only
/// when the index names it, so building every searcher at load (17,000
/// for SigmaHQ's rules, 4,432 for one driver rule) was a twentieth of
/// loading.
#[derive(Clone, Debug)]
pub struct Needle {
    text: Box<str>,
    finder: OnceLock<memchr::memmem::Finder<'static>>,
}

impl Needle {
    fn new(text: String) -> Needle {
        Needle {
            text: text.into_boxed_str(),
            finder: OnceLock::new(),
        }
    }

    /// The text searched for.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn finder(&self) -> &memchr::memmem::Finder<'static> {
        self.finder
            .get_or_init(|| memchr::memmem::Finder::new(self.text.as_bytes()).into_owned())
    }
}

/// A pattern with wildcards inside, matched in time linear in the value.
///
/// The classic two-pointer matcher backtracks to the last `*` and is
/// quadratic on hostile values (a 200 KB value took a second). Stars only:
/// the literals between them are found leftmost-first, each with a
/// substring search that resumes where the previous one ended, which is
/// exact for `*` (any run) and reads the value once. With `?` the pattern
/// becomes an anchored regex, which the regex crate runs in linear time.
#[derive(Clone, Debug)]
pub enum Glob {
    /// `head*mid*mid*tail`: `head` and `tail` may be empty (the pattern
    /// starts or ends with `*`).
    Stars {
        /// Text the value starts with.
        head: String,
        /// Texts found in this order between head and tail.
        mids: Vec<memchr::memmem::Finder<'static>>,
        /// Text the value ends with.
        tail: String,
    },
    /// Any pattern with `?`.
    Regex(regex::Regex),
}

impl Glob {
    fn is_match(&self, value: &str) -> bool {
        match self {
            Glob::Regex(re) => re.is_match(value),
            Glob::Stars { head, mids, tail } => {
                if value.len() < head.len() + tail.len()
                    || !value.starts_with(head.as_str())
                    || !value.ends_with(tail.as_str())
                {
                    return false;
                }
                let hay = &value.as_bytes()[head.len()..value.len() - tail.len()];
                let mut at = 0;
                for f in mids {
                    match f.find(&hay[at..]) {
                        Some(i) => at += i + f.needle().len(),
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

/// The most a `?` glob's regex may compile to (a rule's budget bounds the
/// pattern length long before this).
const GLOB_REGEX_LIMIT: usize = 1 << 20;

impl StrPat {
    /// Compiles pieces; `cased` keeps the letters as written.
    pub fn compile(pieces: &[Piece], cased: bool) -> Result<StrPat, String> {
        let fold = |s: &str| {
            if cased {
                s.to_owned()
            } else {
                s.to_lowercase()
            }
        };
        // Collapse runs of stars: they mean the same as one.
        let mut ps: Vec<&Piece> = Vec::with_capacity(pieces.len());
        for p in pieces {
            if *p == Piece::Star && ps.last() == Some(&&Piece::Star) {
                continue;
            }
            ps.push(p);
        }
        Ok(match ps.as_slice() {
            [] => StrPat::Exact(String::new()),
            [Piece::Star] => StrPat::Any,
            [Piece::Lit(l)] => StrPat::Exact(fold(l)),
            [Piece::Lit(l), Piece::Star] => StrPat::Prefix(fold(l)),
            [Piece::Star, Piece::Lit(l)] => StrPat::Suffix(fold(l)),
            [Piece::Star, Piece::Lit(l), Piece::Star] => {
                StrPat::Contains(Box::new(Needle::new(fold(l))))
            }
            _ if ps.contains(&&Piece::One) => {
                // A star at an end is an unanchored end: `*a?b*` searches
                // for `a.b` rather than running `^.*a.b.*$` over the value.
                let (lead, trail) = (ps[0] == &Piece::Star, ps[ps.len() - 1] == &Piece::Star);
                let inner = &ps[usize::from(lead)..ps.len() - usize::from(trail)];
                let mut re = String::from(if lead { "(?s:" } else { "^(?s:" });
                for p in inner {
                    match p {
                        Piece::Lit(l) => re.push_str(&regex::escape(&fold(l))),
                        Piece::One => re.push('.'),
                        Piece::Star => re.push_str(".*"),
                    }
                }
                re.push_str(if trail { ")" } else { ")$" });
                let re = regex::RegexBuilder::new(&re)
                    .size_limit(GLOB_REGEX_LIMIT)
                    .build()
                    .map_err(|_| "a wildcard pattern too big to compile".to_owned())?;
                StrPat::Glob(Box::new(Glob::Regex(re)))
            }
            _ => {
                // Stars only, at least one inside: split at the stars.
                let mut parts: Vec<String> = vec![String::new()];
                for p in &ps {
                    match p {
                        Piece::Lit(l) => {
                            if let Some(last) = parts.last_mut() {
                                last.push_str(&fold(l));
                            }
                        }
                        _ => parts.push(String::new()),
                    }
                }
                let tail = parts.pop().unwrap_or_default();
                let head = if parts.is_empty() {
                    String::new()
                } else {
                    parts.remove(0)
                };
                let mids = parts
                    .iter()
                    .filter(|m| !m.is_empty())
                    .map(|m| memchr::memmem::Finder::new(m.as_bytes()).into_owned())
                    .collect();
                StrPat::Glob(Box::new(Glob::Stars { head, mids, tail }))
            }
        })
    }

    /// Tests a value already folded the same way as the pattern.
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            StrPat::Exact(t) => value == t,
            StrPat::Prefix(t) => value.starts_with(t.as_str()),
            StrPat::Suffix(t) => value.ends_with(t.as_str()),
            StrPat::Contains(n) => n.finder().find(value.as_bytes()).is_some(),
            StrPat::Any => !value.is_empty(),
            StrPat::Glob(g) => g.is_match(value),
        }
    }
}

/// The longest literal piece, lower-cased exactly as [`StrPat::compile`]
/// folds it: what the candidate selection can look for in an event (any
/// match of the pattern contains it). Empty when there is none.
pub fn longest_literal(pieces: &[Piece]) -> String {
    let mut best = String::new();
    for p in pieces {
        if let Piece::Lit(l) = p {
            let lower = l.to_lowercase();
            if lower.len() > best.len() {
                best = lower;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, value: &str) -> bool {
        StrPat::compile(&parse(pattern), false)
            .unwrap()
            .is_match(&value.to_lowercase())
    }

    #[test]
    fn escapes_follow_pysigma() {
        assert_eq!(parse(r"a\*b"), vec![Piece::Lit("a*b".into())]);
        assert_eq!(parse(r"a\?b"), vec![Piece::Lit("a?b".into())]);
        assert_eq!(parse(r"a\\*"), vec![Piece::Lit(r"a\".into()), Piece::Star]);
        assert_eq!(
            parse(r"C:\Windows\"),
            vec![Piece::Lit(r"C:\Windows\".into())]
        );
        assert_eq!(parse(r"\\\\srv"), vec![Piece::Lit(r"\\srv".into())]);
        assert_eq!(
            parse("a*?b"),
            vec![
                Piece::Lit("a".into()),
                Piece::Star,
                Piece::One,
                Piece::Lit("b".into())
            ]
        );
    }

    #[test]
    fn wildcards_and_case() {
        assert!(m("cmd.exe", "CMD.EXE"));
        assert!(!m("cmd.exe", "xcmd.exe"));
        assert!(m("*\\cmd.exe", "C:\\Windows\\cmd.exe"));
        // `\*` is a backslash then a wildcard; `\*` alone would be a star.
        assert!(m(r"c:\\*\\cmd.exe", "C:\\Windows\\System32\\cmd.exe"));
        assert!(!m(r"c:\*\cmd.exe", "C:\\Windows\\cmd.exe"));
        assert!(m(r"c:\*\cmd.exe", "C:*\\cmd.exe"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("a*c*e", "abcde"));
        assert!(m("a*c*e", "ace"));
        assert!(!m("a*c*e", "acd"));
        assert!(!m("*", ""), "`*` needs a value");
        assert!(m("*", "x"));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m(r"100\*", "100*"));
        assert!(!m(r"100\*", "1000"));
        assert!(m(r"what\?", "WHAT?"));
        assert!(!m(r"what\?", "whatx"));
        assert!(m("ÄBC*", "äbcd"));
        assert!(m("a**b", "ab"));
    }

    /// The plain definition, exponential at worst: the reference the
    /// linear matcher is checked against on small inputs.
    fn reference(p: &[char], v: &[char]) -> bool {
        match p.first() {
            None => v.is_empty(),
            Some('*') => (0..=v.len()).any(|i| reference(&p[1..], &v[i..])),
            Some('?') => !v.is_empty() && reference(&p[1..], &v[1..]),
            Some(c) => v.first() == Some(c) && reference(&p[1..], &v[1..]),
        }
    }

    #[test]
    fn globs_agree_with_the_definition() {
        // Every pattern of up to 5 symbols over {a, b, *, ?} against every
        // value of up to 5 letters over {a, b}.
        let words = |alphabet: &[char], max: usize| {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        };
        let values = words(&['a', 'b'], 5);
        for p in words(&['a', 'b', '*', '?'], 5) {
            let pat: Vec<char> = p.chars().collect();
            let compiled = StrPat::compile(&parse(&p), true).unwrap();
            for v in &values {
                // Stars alone need a value (see `StrPat::Any`).
                let only_stars = !pat.is_empty() && pat.iter().all(|&c| c == '*');
                let want = reference(&pat, &v.chars().collect::<Vec<_>>())
                    && !(only_stars && v.is_empty());
                assert_eq!(compiled.is_match(v), want, "pattern {p:?} value {v:?}");
            }
        }
    }

    #[test]
    fn glob_time_is_linear_in_the_value() {
        // Quadratic for a backtracking matcher: every `a` restarts the
        // scan for `a…ab` (about 10^10 steps here).
        let value = "a".repeat(200_000);
        let started = std::time::Instant::now();
        for p in [
            format!("*{}b*c", "a".repeat(50_000)),
            format!("*a?{}b*", "a".repeat(1_000)),
        ] {
            assert!(!StrPat::compile(&parse(&p), false).unwrap().is_match(&value));
        }
        // Generous for a loaded 2-core machine in a debug build; the
        // backtracking matcher took minutes.
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }

    #[test]
    fn cased_keeps_letters() {
        let p = StrPat::compile(&parse("*Secret*"), true).unwrap();
        assert!(p.is_match("a Secret b"));
        assert!(!p.is_match("a secret b"));
    }

    #[test]
    fn literal_for_the_automata() {
        assert_eq!(
            longest_literal(&parse(r"*\System32\\*.exe")),
            "\\system32\\"
        );
        assert_eq!(longest_literal(&parse("*")), "");
        assert_eq!(longest_literal(&parse("x*ÄÄA")), "ääa");
    }
}
