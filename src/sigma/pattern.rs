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
    /// The value contains the text (searcher built once).
    Contains(Box<memchr::memmem::Finder<'static>>),
    /// Any value, the empty one included (`*`).
    Any,
    /// Wildcards in the middle: the general matcher.
    Glob(Vec<GlobChar>),
}

/// One character position of a general glob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobChar {
    /// This character.
    Lit(char),
    /// Any one character.
    One,
    /// Any run.
    Star,
}

impl StrPat {
    /// Compiles pieces; `cased` keeps the letters as written.
    pub fn compile(pieces: &[Piece], cased: bool) -> StrPat {
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
        match ps.as_slice() {
            [] => StrPat::Exact(String::new()),
            [Piece::Star] => StrPat::Any,
            [Piece::Lit(l)] => StrPat::Exact(fold(l)),
            [Piece::Lit(l), Piece::Star] => StrPat::Prefix(fold(l)),
            [Piece::Star, Piece::Lit(l)] => StrPat::Suffix(fold(l)),
            [Piece::Star, Piece::Lit(l), Piece::Star] => {
                StrPat::Contains(Box::new(memchr::memmem::Finder::new(&fold(l)).into_owned()))
            }
            _ => {
                let mut g = Vec::new();
                for p in ps {
                    match p {
                        Piece::Lit(l) => g.extend(fold(l).chars().map(GlobChar::Lit)),
                        Piece::One => g.push(GlobChar::One),
                        Piece::Star => g.push(GlobChar::Star),
                    }
                }
                StrPat::Glob(g)
            }
        }
    }

    /// Tests a value already folded the same way as the pattern.
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            StrPat::Exact(t) => value == t,
            StrPat::Prefix(t) => value.starts_with(t.as_str()),
            StrPat::Suffix(t) => value.ends_with(t.as_str()),
            StrPat::Contains(f) => f.find(value.as_bytes()).is_some(),
            StrPat::Any => true,
            StrPat::Glob(g) => glob_match(g, value),
        }
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in
/// practice, O(pattern × value) at worst, never recursive.
fn glob_match(pat: &[GlobChar], value: &str) -> bool {
    let text: Vec<char> = value.chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(GlobChar::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(GlobChar::One) => {
                p += 1;
                t += 1;
            }
            Some(GlobChar::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|g| *g == GlobChar::Star)
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
        StrPat::compile(&parse(pattern), false).is_match(&value.to_lowercase())
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
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m(r"100\*", "100*"));
        assert!(!m(r"100\*", "1000"));
        assert!(m(r"what\?", "WHAT?"));
        assert!(!m(r"what\?", "whatx"));
        assert!(m("ÄBC*", "äbcd"));
        assert!(m("a**b", "ab"));
    }

    #[test]
    fn cased_keeps_letters() {
        let p = StrPat::compile(&parse("*Secret*"), true);
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
