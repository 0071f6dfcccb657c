//! The `condition` of a Sigma detection: a boolean expression over the
//! names of its selections.
//!
//! Grammar (precedence low to high): `or`, `and`, `not`, then atoms: a
//! name, `( … )`, `1 of PATTERN`, `all of PATTERN`, `N of PATTERN`, where a
//! pattern is a name with `*` wildcards or `them` (every selection whose
//! name does not start with `_`). Keywords are case-insensitive. Anything
//! with a pipe (`| count() …`, old aggregations) is refused: the rule is
//! skipped with that reason rather than half-evaluated.

/// Deepest nesting of parentheses and `not` in a condition (SigmaHQ's
/// deepest is 4). The parser and every walk of the tree recurse once per
/// level, so this bound is what keeps a hostile condition off the stack
/// (tests run on threads with 2 MB stacks).
pub const MAX_DEPTH: usize = 64;

/// Most words and parentheses in one condition (SigmaHQ's longest has
/// 83): each name is looked up among the selections, so a condition of a
/// million names over a thousand selections must not get that far.
pub const MAX_TOKENS: usize = 4_096;

/// A parsed condition, selections resolved to their index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// The selection with this index matched.
    Sel(usize),
    /// Negation.
    Not(Box<Cond>),
    /// All hold.
    And(Vec<Cond>),
    /// Any holds.
    Or(Vec<Cond>),
    /// At least this many hold.
    AtLeast(usize, Vec<Cond>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        match c {
            '(' | ')' | ' ' | '\t' | '\r' | '\n' => {
                if !word.is_empty() {
                    out.push(Tok::Word(std::mem::take(&mut word)));
                }
                match c {
                    '(' => out.push(Tok::Open),
                    ')' => out.push(Tok::Close),
                    _ => {}
                }
            }
            '|' => return Err("aggregation in the condition (`|`) is not supported".into()),
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(Tok::Word(word));
    }
    if out.len() > MAX_TOKENS {
        return Err(format!(
            "the condition has more than {MAX_TOKENS} words and parentheses"
        ));
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    names: &'a [String],
}

fn keyword(t: Option<&Tok>, k: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
}

impl Parser<'_> {
    /// Enters one nesting level (a `(` or a `not`), refused past
    /// [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "the condition nests `(` and `not` deeper than {MAX_DEPTH} levels"
            ));
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.and()?];
        while keyword(self.peek(), "or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.not()?];
        while keyword(self.peek(), "and") {
            self.pos += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::And(parts)
        })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if keyword(self.peek(), "not") {
            self.pos += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, String> {
        let tok = self.peek().cloned();
        self.pos += 1;
        match tok {
            Some(Tok::Open) => {
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::Close) {
                    return Err("unbalanced parenthesis in the condition".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Close) => Err("unexpected `)` in the condition".into()),
            None => Err("the condition ends too early".into()),
            Some(Tok::Word(w)) => {
                if keyword(self.peek(), "of") {
                    self.pos += 1;
                    let Some(Tok::Word(pattern)) = self.peek().cloned() else {
                        return Err(format!("`{w} of` without a selection pattern"));
                    };
                    self.pos += 1;
                    let sels = self.resolve(&pattern)?;
                    let sels: Vec<Cond> = sels.into_iter().map(Cond::Sel).collect();
                    return if w.eq_ignore_ascii_case("all") {
                        Ok(Cond::And(sels))
                    } else if w.eq_ignore_ascii_case("any") || w == "1" {
                        Ok(Cond::Or(sels))
                    } else {
                        match w.parse::<usize>() {
                            Ok(n) if n > 0 => Ok(Cond::AtLeast(n, sels)),
                            _ => Err(format!("`{w} of` is not a quantifier")),
                        }
                    };
                }
                if ["and", "or", "not", "of", "them"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
                {
                    return Err(format!("unexpected `{w}` in the condition"));
                }
                match self.names.iter().position(|n| *n == w) {
                    Some(i) => Ok(Cond::Sel(i)),
                    None => Err(format!(
                        "the condition names `{w}`, which is not a selection"
                    )),
                }
            }
        }
    }

    fn resolve(&self, pattern: &str) -> Result<Vec<usize>, String> {
        let found: Vec<usize> = if pattern.eq_ignore_ascii_case("them") {
            (0..self.names.len())
                .filter(|&i| !self.names[i].starts_with('_'))
                .collect()
        } else {
            let pat = super::pattern::StrPat::compile(&super::pattern::parse(pattern), true)?;
            (0..self.names.len())
                .filter(|&i| pat.is_match(&self.names[i]))
                .collect()
        };
        if found.is_empty() {
            return Err(format!("`of {pattern}` matches no selection"));
        }
        Ok(found)
    }
}

/// Parses one condition against the rule's selection names (in order).
pub fn parse(text: &str, names: &[String]) -> Result<Cond, String> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
        depth: 0,
        names,
    };
    let cond = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!(
            "unexpected text after the condition in `{}`",
            text.trim()
        ));
    }
    Ok(cond)
}

/// Evaluates a condition given each selection's result.
pub fn eval(cond: &Cond, sel: &mut impl FnMut(usize) -> bool) -> bool {
    match cond {
        Cond::Sel(i) => sel(*i),
        Cond::Not(c) => !eval(c, sel),
        Cond::And(cs) => cs.iter().all(|c| eval(c, sel)),
        Cond::Or(cs) => cs.iter().any(|c| eval(c, sel)),
        Cond::AtLeast(n, cs) => cs.iter().filter(|c| eval(c, sel)).take(*n).count() >= *n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "selection",
            "sel_a",
            "sel_b",
            "filter_main_x",
            "filter_optional_y",
            "_hidden",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn truth(text: &str, on: &[usize]) -> bool {
        let c = parse(text, &names()).unwrap();
        eval(&c, &mut |i| on.contains(&i))
    }

    #[test]
    fn precedence_not_and_or() {
        assert!(truth("selection and not filter_main_x", &[0]));
        assert!(!truth("selection and not filter_main_x", &[0, 3]));
        assert!(truth("sel_a or sel_b and selection", &[1]));
        assert!(!truth("(sel_a or sel_b) and selection", &[1]));
        assert!(truth("not not selection", &[0]));
        assert!(truth("selection AND NOT filter_main_x", &[0]));
    }

    #[test]
    fn quantifiers() {
        assert!(truth("1 of sel_*", &[2]));
        assert!(!truth("all of sel_*", &[2]));
        assert!(truth("all of sel_*", &[1, 2]));
        assert!(truth("selection and not 1 of filter_*", &[0]));
        assert!(!truth("selection and not 1 of filter_*", &[0, 4]));
        assert!(truth("1 of them", &[4]));
        assert!(
            !truth("1 of them", &[5]),
            "`them` leaves out names starting with _"
        );
        assert!(!truth("all of them", &[0, 1, 2, 3]));
        assert!(truth("all of them", &[0, 1, 2, 3, 4]));
        assert!(truth("2 of sel*", &[0, 2]));
        assert!(!truth("2 of sel*", &[2]));
        assert!(truth("any of sel_*", &[1]));
        assert!(truth("1 of sel*", &[0]), "sel* covers selection too");
    }

    #[test]
    fn multi_line_and_nested() {
        let text = "selection and\n(\n  1 of sel_*\n  or\n  (filter_main_x and not _hidden)\n)";
        assert!(truth(text, &[0, 3]));
        assert!(!truth(text, &[0, 3, 5]));
    }

    #[test]
    fn errors_name_the_problem() {
        let n = names();
        assert!(parse("selection | count() > 5", &n)
            .unwrap_err()
            .contains("aggregation"));
        assert!(parse("missing", &n).unwrap_err().contains("missing"));
        assert!(parse("1 of nope*", &n).unwrap_err().contains("nope*"));
        assert!(parse("(selection", &n).unwrap_err().contains("parenthesis"));
        assert!(parse("selection and", &n).is_err());
        assert!(parse("selection sel_a", &n).is_err());
        assert!(parse("", &n).is_err());
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        let n = names();
        // Run where the tests' stacks are smallest: a thread of 2 MB.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                // The files: too long before they are too deep.
                let parens = "(".repeat(20_000) + "selection" + &")".repeat(20_000);
                assert!(parse(&parens, &n).unwrap_err().contains("the condition"));
                let nots = "not ".repeat(100_000) + "selection";
                assert!(parse(&nots, &n).unwrap_err().contains("the condition"));
                let d = MAX_DEPTH + 1;
                let parens = "(".repeat(d) + "selection" + &")".repeat(d);
                assert!(parse(&parens, &n).unwrap_err().contains("deeper than"));
                let nots = "not ".repeat(d) + "selection";
                assert!(parse(&nots, &n).unwrap_err().contains("deeper than"));
                let ok = "(".repeat(MAX_DEPTH) + "selection" + &")".repeat(MAX_DEPTH);
                assert!(parse(&ok, &n).is_ok());
                let long = vec!["selection"; MAX_TOKENS].join(" or ");
                assert!(parse(&long, &n).unwrap_err().contains("more than"));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
