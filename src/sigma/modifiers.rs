//! One detection item, `Field|mod|mod: value(s)`, turned into matchers.
//!
//! Modifiers are applied in the order written, as in pySigma: transforms
//! (`contains`, `startswith`, `endswith`, `windash`, `base64`,
//! `base64offset`, `utf16le`/`utf16be`/`utf16`/`wide`) rewrite each value,
//! possibly into several alternatives (`windash`, `base64offset`); the type
//! modifiers (`re`, `cidr`, `exists`, `fieldref`, `gt`…) change what kind
//! of test a value is; `all` and `cased` are flags. Anything else (`expand`
//! placeholders, unknown names) is an error that skips the rule.

use super::budget::{self, Cost};
use super::pattern::{self, Piece, StrPat};
use super::timestamp::Part;
use base64::Engine as _;
use std::net::IpAddr;

/// A rule value as YAML gave it; Splunk hands every field as text, so
/// numbers and booleans are compared in their written form.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// Text.
    Str(String),
    /// A number or boolean, as text (`445`, `true`).
    Other(String),
    /// `null` / `~`.
    Null,
}

/// Numeric comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `gt`.
    Gt,
    /// `gte`.
    Gte,
    /// `lt`.
    Lt,
    /// `lte`.
    Lte,
}

/// One test of one field value.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// A Sigma string (wildcards); lower-cased unless `cased`.
    Str {
        /// The compiled pattern.
        pat: StrPat,
        /// Compare letters as written.
        cased: bool,
    },
    /// `re`: unanchored, case-sensitive unless `i`. The regex crate's own
    /// engine, used directly for the memory figure it reports.
    Regex(regex_automata::meta::Regex),
    /// `cidr`: the value is an address inside the network.
    Cidr {
        /// IPv6 network (IPv4 networks are stored as IPv4-mapped).
        net: u128,
        /// Prefix length on the 128-bit form.
        bits: u32,
    },
    /// `null`: the field is empty or absent (the same thing in Splunk).
    Null,
    /// `exists`: the field has a non-empty value (`true`) or not (`false`).
    Exists(bool),
    /// `fieldref`: equal to this other field (interned id).
    FieldRef {
        /// The other field.
        field: usize,
        /// Compare letters as written.
        cased: bool,
    },
    /// `gt`/`gte`/`lt`/`lte` against a number.
    Cmp(CmpOp, f64),
    /// `minute`…`year`: that part of the field's timestamp equals the
    /// number.
    TimePart(Part, i64),
}

/// A whole detection item: the field (or `None` for a keyword, matched
/// against every value of the event) and its values. `values[i]` is one
/// value's alternatives (OR); values combine with OR, or AND under `all`.
#[derive(Clone, Debug)]
pub struct FieldCond {
    /// Interned field name; `None` searches every field.
    pub field: Option<usize>,
    /// Per value, its alternatives.
    pub values: Vec<Vec<Matcher>>,
    /// `|all`.
    pub all: bool,
    /// `|neq`: the item holds when its values do not (pySigma negates the
    /// whole item, so `neq: [a, b]` is neither `a` nor `b`).
    pub negated: bool,
    /// Per value, the literals one of which any match must contain
    /// (lower-cased), or `None` when the value has no such literal.
    pub literals: Vec<Option<Vec<String>>>,
    /// Many plain string alternatives tested in one pass (`any_of.rs`).
    pub any_of: super::any_of::Lazy,
}

enum Val {
    Pieces(Vec<Piece>),
    Bytes(Vec<u8>),
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `windash`: every `-` or `/` that starts a word (pySigma's `\B[-/]\b`)
/// may be any of the five dash-like characters Windows accepts: 5^n
/// variants for n dashes, refused past [`budget::MAX_WINDASH_VARIANTS`] or
/// past `room` (what the rule's budget has left) before any is made.
fn windash(pieces: Vec<Piece>, room: usize) -> Result<Vec<Vec<Piece>>, String> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    // Flatten to characters (None = wildcard) to find the positions.
    let mut flat: Vec<Option<char>> = Vec::new();
    let mut kinds: Vec<Piece> = Vec::new();
    for p in &pieces {
        match p {
            Piece::Lit(l) => flat.extend(l.chars().map(Some)),
            other => {
                flat.push(None);
                kinds.push(other.clone());
            }
        }
    }
    let spots: Vec<usize> = (0..flat.len())
        .filter(|&i| {
            matches!(flat[i], Some('-' | '/'))
                && (i == 0 || !flat[i - 1].is_some_and(is_word))
                && flat.get(i + 1).copied().flatten().is_some_and(is_word)
        })
        .collect();
    let variants = u32::try_from(spots.len())
        .ok()
        .and_then(|n| DASHES.len().checked_pow(n))
        .filter(|&v| v <= budget::MAX_WINDASH_VARIANTS)
        .ok_or_else(|| {
            format!(
                "windash on a value with {} dashes (more than {} variants)",
                spots.len(),
                budget::MAX_WINDASH_VARIANTS
            )
        })?;
    if variants > room {
        return Err(format!(
            "values expand to more than {} alternatives",
            budget::MAX_ALTERNATIVES
        ));
    }
    let mut out = Vec::with_capacity(variants);
    for combo in 0..variants {
        let mut chars = flat.clone();
        let mut k = combo;
        for &s in &spots {
            chars[s] = Some(DASHES[k % DASHES.len()]);
            k /= DASHES.len();
        }
        let mut ps = Vec::new();
        let mut lit = String::new();
        let mut wild = kinds.iter();
        for c in chars {
            match c {
                Some(c) => lit.push(c),
                None => {
                    if !lit.is_empty() {
                        ps.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    ps.push(wild.next().cloned().unwrap_or(Piece::Star));
                }
            }
        }
        if !lit.is_empty() {
            ps.push(Piece::Lit(lit));
        }
        out.push(ps);
    }
    Ok(out)
}

fn bytes_of(v: Val, modifier: &str) -> Result<Vec<u8>, String> {
    match v {
        Val::Bytes(b) => Ok(b),
        Val::Pieces(p) => pattern::plain_text(&p)
            .map(String::into_bytes)
            .ok_or_else(|| format!("`{modifier}` on a value with wildcards")),
    }
}

fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    // pySigma: encode with 0, 1, 2 leading bytes and cut the characters
    // that depend on the neighbouring bytes.
    let start = [0usize, 2, 3];
    let end_cut = [0usize, 3, 2];
    (0..3)
        .map(|i| {
            let mut buf = vec![b' '; i];
            buf.extend_from_slice(bytes);
            let enc = base64::engine::general_purpose::STANDARD.encode(&buf);
            let cut = end_cut[(bytes.len() + i) % 3];
            let stop = enc.len().saturating_sub(cut).max(start[i]);
            enc[start[i]..stop].to_owned()
        })
        .collect()
}

/// `text` as UTF-16 code units, each byte one character (`ab` → `a\0b\0`
/// little-endian): the form pySigma gives a wide string that is matched as
/// text rather than base64-encoded. ASCII only, as in pySigma.
fn wide_text(text: &str, modifier: &str) -> Result<String, String> {
    if !text.is_ascii() {
        return Err(format!("`{modifier}` on non-ASCII text matched as text"));
    }
    let be = modifier == "utf16be";
    Ok(text
        .chars()
        .flat_map(|c| if be { ['\0', c] } else { [c, '\0'] })
        .collect())
}

fn utf16(v: Val, modifier: &str) -> Result<Val, String> {
    // Wildcards stay wildcards (pySigma encodes the text between them).
    if let Val::Pieces(p) = &v {
        if pattern::plain_text(p).is_none() && modifier != "utf16" {
            return p
                .iter()
                .map(|piece| match piece {
                    Piece::Lit(l) => wide_text(l, modifier).map(Piece::Lit),
                    other => Ok(other.clone()),
                })
                .collect::<Result<_, _>>()
                .map(Val::Pieces);
        }
    }
    let text = String::from_utf8(bytes_of(v, modifier)?)
        .map_err(|_| format!("`{modifier}` on bytes that are not text"))?;
    let mut out = Vec::new();
    if modifier == "utf16" {
        out.extend_from_slice(&[0xFF, 0xFE]);
    }
    for u in text.encode_utf16() {
        if modifier == "utf16be" {
            out.extend_from_slice(&u.to_be_bytes());
        } else {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }
    Ok(Val::Bytes(out))
}

fn parse_cidr(text: &str) -> Result<(u128, u32), String> {
    let (addr, bits) = text.split_once('/').unwrap_or((text, ""));
    let ip: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a CIDR network"))?;
    let (net, max) = match ip {
        IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let bits: u32 = if bits.is_empty() {
        max
    } else {
        bits.trim()
            .parse()
            .map_err(|_| format!("`{text}` has a bad prefix length"))?
    };
    if bits > max {
        return Err(format!("`{text}` has a prefix longer than the address"));
    }
    let bits = bits + (128 - max);
    Ok((net & mask(bits), bits))
}

/// The network mask of a prefix length on 128 bits.
pub fn mask(bits: u32) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    }
}

/// Builds a detection item from its key (`Field|mods`, or `|mods` / empty
/// for keywords) and values.
pub fn build(
    key: Option<&str>,
    values: &[Scalar],
    intern: &mut dyn FnMut(&str) -> usize,
    cost: &mut Cost,
) -> Result<FieldCond, String> {
    let (field, mods): (Option<&str>, Vec<&str>) = match key {
        None => (None, Vec::new()),
        Some(k) => {
            let mut parts = k.split('|');
            let f = parts.next().unwrap_or("");
            (if f.is_empty() { None } else { Some(f) }, parts.collect())
        }
    };
    if values.is_empty() {
        return Err(format!(
            "`{}` has an empty list of values",
            key.unwrap_or("keywords")
        ));
    }
    let mut all = false;
    let mut negated = false;
    let mut cased = false;
    let mut kind: Option<&str> = None;
    let mut re_flags = String::new();
    let mut transforms: Vec<&str> = Vec::new();
    for m in &mods {
        match *m {
            "all" => all = true,
            "neq" => negated = true,
            "cased" => cased = true,
            "i" | "ignorecase" => re_flags.push('i'),
            "m" | "multiline" => re_flags.push('m'),
            "s" | "dotall" => re_flags.push('s'),
            "re" | "cidr" | "exists" | "fieldref" | "gt" | "gte" | "lt" | "lte" | "minute"
            | "hour" | "day" | "week" | "month" | "year" => {
                if let Some(k) = kind {
                    return Err(format!("modifiers `{k}` and `{m}` together"));
                }
                kind = Some(m);
            }
            "contains" | "startswith" | "endswith" | "windash" | "base64" | "base64offset"
            | "utf16le" | "utf16be" | "utf16" | "wide" => transforms.push(m),
            "expand" => return Err("placeholders (`expand`) are not supported".into()),
            other => return Err(format!("unsupported modifier `{other}`")),
        }
    }
    if !transforms.is_empty() && kind.is_some() {
        return Err(format!(
            "`{}` together with a type modifier",
            transforms.join("|")
        ));
    }
    if !re_flags.is_empty() && kind != Some("re") {
        return Err("regex flags without `re`".into());
    }
    // Keywords: a plain keyword is found anywhere in a value.
    if field.is_none() && kind.is_none() && transforms.is_empty() {
        transforms.push("contains");
    }
    let field_id = field.map(&mut *intern);
    let mut cond = FieldCond {
        field: field_id,
        values: Vec::new(),
        all,
        negated,
        literals: Vec::new(),
        any_of: Default::default(),
    };
    for v in values {
        let text = match v {
            Scalar::Null => {
                if kind.is_some() || !transforms.is_empty() {
                    return Err("`null` with a modifier".into());
                }
                cond.values.push(vec![Matcher::Null]);
                cond.literals.push(None);
                continue;
            }
            Scalar::Str(s) | Scalar::Other(s) => s,
        };
        cost.value(text)?;
        let (alts, lits) = match kind {
            Some("re") => {
                let pat = if re_flags.is_empty() {
                    text.clone()
                } else {
                    format!("(?{re_flags}){text}")
                };
                let re = compile_regex(&pat, cost)?;
                (
                    vec![Matcher::Regex(re)],
                    super::regex_literals::necessary(&pat),
                )
            }
            Some("cidr") => {
                cost.string(0)?;
                let (net, bits) = parse_cidr(text)?;
                (vec![Matcher::Cidr { net, bits }], None)
            }
            Some("exists") => {
                cost.string(0)?;
                let want = match text.to_ascii_lowercase().as_str() {
                    "true" | "yes" => true,
                    "false" | "no" => false,
                    _ => return Err(format!("`exists: {text}` is not a boolean")),
                };
                (vec![Matcher::Exists(want)], None)
            }
            Some("fieldref") => {
                cost.string(text.len())?;
                (
                    vec![Matcher::FieldRef {
                        field: intern(text),
                        cased,
                    }],
                    None,
                )
            }
            Some(op @ ("gt" | "gte" | "lt" | "lte")) => {
                cost.string(0)?;
                let n: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{op}: {text}` is not a number"))?;
                let op = match op {
                    "gt" => CmpOp::Gt,
                    "gte" => CmpOp::Gte,
                    "lt" => CmpOp::Lt,
                    _ => CmpOp::Lte,
                };
                (vec![Matcher::Cmp(op, n)], None)
            }
            Some(unit) if Part::parse(unit).is_some() => {
                cost.string(0)?;
                let n: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{unit}: {text}` is not a whole number"))?;
                let part = Part::parse(unit).unwrap_or(Part::Year);
                (vec![Matcher::TimePart(part, n)], None)
            }
            _ => string_alternatives(v, text, &transforms, cased, cost)?,
        };
        cond.values.push(alts);
        // A negated item matches events without its literals: it gives the
        // candidate index nothing to look for.
        cond.literals.push(if negated { None } else { lits });
    }
    cond.any_of = super::any_of::Lazy::new(&cond.values, all, cond.field.is_none());
    Ok(cond)
}

/// Compiles a rule regex within what the rule's budget has left, and
/// charges it what it reports it takes.
fn compile_regex(pat: &str, cost: &mut Cost) -> Result<regex_automata::meta::Regex, String> {
    use regex_automata::meta::Regex;
    use regex_automata::nfa::thompson::WhichCaptures;
    let limit = cost.regex_limit();
    let mut builder = Regex::builder();
    builder.configure(
        Regex::config()
            // Only `is_match` is asked: no capture groups kept.
            .which_captures(WhichCaptures::None)
            .nfa_size_limit(Some(limit))
            .onepass_size_limit(Some(limit))
            .hybrid_cache_capacity(budget::REGEX_CACHE),
    );
    let built = match regex_syntax::parse(pat) {
        Ok(hir) => builder.build_from_hir(&super::regex_trim::for_is_match(hir)),
        // The builder reports the same syntax error, with its reason.
        Err(_) => builder.build(pat),
    };
    let re = built.map_err(|e| match e.size_limit() {
        // Past what the rule had left rather than the per-regex bound.
        Some(_) if limit < budget::MAX_REGEX_MEMORY => cost.over(),
        _ => regex_reason(&e),
    })?;
    cost.regex(re.memory_usage())?;
    Ok(re)
}

fn regex_reason(e: &regex_automata::meta::BuildError) -> String {
    if e.size_limit().is_some() {
        return "regex too big to compile".into();
    }
    let Some(syntax) = e.syntax_error() else {
        return "regex does not compile".into();
    };
    let s = syntax.to_string();
    if s.contains("look-around") {
        "regex uses look-around (not supported)".into()
    } else if s.contains("backreferences") {
        "regex uses backreferences (not supported)".into()
    } else {
        format!(
            "regex does not compile: {}",
            s.lines().last().unwrap_or(&s).trim()
        )
    }
}

type Alts = (Vec<Matcher>, Option<Vec<String>>);

/// Encoded bytes matched as text (`wide` without `base64`): UTF-16 of
/// ASCII is valid text (each letter then a NUL), anything else is refused
/// rather than matched half-decoded.
fn bytes_as_text(b: Vec<u8>, modifier: &str) -> Result<String, String> {
    String::from_utf8(b).map_err(|_| format!("`{modifier}` on bytes that are not text"))
}

fn string_alternatives(
    original: &Scalar,
    text: &str,
    transforms: &[&str],
    cased: bool,
    cost: &mut Cost,
) -> Result<Alts, String> {
    let first = match original {
        Scalar::Str(_) => pattern::parse(text),
        _ => pattern::literal(text),
    };
    let mut vals = vec![Val::Pieces(first)];
    for t in transforms {
        let mut next = Vec::new();
        for v in vals {
            match *t {
                "contains" | "startswith" | "endswith" => {
                    let p = match v {
                        Val::Pieces(p) => p,
                        Val::Bytes(b) => pattern::literal(&bytes_as_text(b, t)?),
                    };
                    next.push(Val::Pieces(pattern::wrap(
                        p,
                        *t != "startswith",
                        *t != "endswith",
                    )))
                }
                "windash" => match v {
                    Val::Pieces(p) => {
                        let room = budget::MAX_ALTERNATIVES
                            .saturating_sub(cost.alternatives)
                            .saturating_sub(next.len());
                        next.extend(windash(p, room)?.into_iter().map(Val::Pieces));
                    }
                    Val::Bytes(_) => return Err("`windash` on encoded bytes".into()),
                },
                "base64" => {
                    let b = bytes_of(v, t)?;
                    let enc = base64::engine::general_purpose::STANDARD.encode(b);
                    next.push(Val::Pieces(pattern::literal(&enc)));
                }
                "base64offset" => {
                    let b = bytes_of(v, t)?;
                    next.extend(
                        base64_offsets(&b)
                            .iter()
                            .map(|s| Val::Pieces(pattern::literal(s))),
                    );
                }
                _ => next.push(utf16(v, t)?),
            }
        }
        vals = next;
    }
    let mut alts = Vec::new();
    let mut lits = Some(Vec::new());
    for v in vals {
        let pieces = match v {
            Val::Pieces(p) => p,
            Val::Bytes(b) => pattern::literal(&bytes_as_text(b, "wide")?),
        };
        cost.string(
            pieces
                .iter()
                .map(|p| match p {
                    Piece::Lit(l) => l.len(),
                    _ => 1,
                })
                .sum(),
        )?;
        let lit = pattern::longest_literal(&pieces);
        match (&mut lits, lit.is_empty()) {
            (Some(l), false) => l.push(lit),
            _ => lits = None,
        }
        alts.push(Matcher::Str {
            pat: StrPat::compile(&pieces, cased)?,
            cased,
        });
    }
    Ok((alts, lits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pieces: Vec<Vec<Piece>>) -> Vec<String> {
        pieces
            .into_iter()
            .map(|p| {
                p.iter()
                    .map(|x| match x {
                        Piece::Lit(l) => l.clone(),
                        Piece::Star => "*".into(),
                        Piece::One => "?".into(),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn windash_rewrites_only_dashes_that_start_a_word() {
        let v = texts(windash(pattern::parse("* -enc *"), 100).unwrap());
        assert_eq!(
            v,
            vec![
                "* -enc *",
                "* /enc *",
                "* \u{2013}enc *",
                "* \u{2014}enc *",
                "* \u{2015}enc *"
            ]
        );
        // A dash inside a word and a dash before a space are left alone.
        assert_eq!(
            texts(windash(pattern::parse("a-b - c"), 100).unwrap()),
            vec!["a-b - c"]
        );
        assert_eq!(windash(pattern::parse("-a -b"), 100).unwrap().len(), 25);
        // Any number of dashes, up to the bound on variants.
        assert_eq!(
            windash(pattern::parse("-a -b -c -d -e"), 10_000)
                .unwrap()
                .len(),
            3_125
        );
        let six = windash(pattern::parse("-a -b -c -d -e -f"), 100_000).unwrap_err();
        assert!(six.contains("6 dashes"), "{six}");
        // Past the rule's remaining room: refused before any is made.
        let room = windash(pattern::parse("-a -b"), 24).unwrap_err();
        assert!(room.contains("alternatives"), "{room}");
    }

    #[test]
    fn base64offset_matches_pysigma() {
        // pySigma's documented example for "/bin/bash".
        assert_eq!(
            base64_offsets(b"/bin/bash"),
            vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]
        );
        assert_eq!(
            base64_offsets(b"/bin/sh"),
            vec!["L2Jpbi9za", "9iaW4vc2", "vYmluL3No"]
        );
    }
}
