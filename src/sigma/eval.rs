//! Evaluating a compiled rule on one event, with Splunk's semantics.
//!
//! - Splunk has no null: an absent field and an empty one are the same
//!   value, `""`. So `Field: null` matches both, and a test that needs
//!   text (a filter on `SourceParentImage`, which EventCode 8 lacks) cannot
//!   match, which is what lets `selection and not filter` fire.
//! - Values keep the XML entities of `_raw` (`&amp;`, `&lt;`, …) because
//!   the add-on extracts them with a regex; rules are written against the
//!   plain text, so values are unescaped before any test.
//! - Strings compare case-insensitively unless `cased`; the event value is
//!   lower-cased once per field, lazily, only for fields a candidate rule
//!   actually tests.

use super::condition;
use super::modifiers::{mask, CmpOp, FieldCond, Matcher};
use super::rule::{Rule, Selection};
use std::borrow::Cow;
use std::net::IpAddr;

/// What the engine needs from an event. Implemented by the command's row
/// view and, for tests, by a map of field names to values.
pub trait Fields {
    /// The value of a field, `None` when the event has no such field (the
    /// engine treats that as the empty value). Names are case-sensitive
    /// (`ProcessId` is not `ProcessID`).
    fn get(&self, name: &str) -> Option<&str>;

    /// [`Fields::get`] for the rule set's field number `id` (its place in
    /// `RuleSet::field_names`). A view that maps the numbers to columns
    /// once per header answers without hashing the name for every event.
    fn get_field(&self, id: usize, name: &str) -> Option<&str> {
        let _ = id;
        self.get(name)
    }

    /// Every non-empty field value of the event, for keyword selections
    /// (an empty field is an absent one, as in Splunk: it has no value to
    /// search).
    fn values(&self) -> impl Iterator<Item = &str>;

    /// Sysmon's EventID: decides which rules apply.
    fn event_code(&self) -> Option<u32> {
        self.event_code_text()?.trim().parse().ok()
    }

    /// The `EventCode` field as text. Asked of every event, like
    /// [`Fields::event_type`]: a view that knows its column answers without
    /// hashing the name.
    fn event_code_text(&self) -> Option<&str> {
        self.get("EventCode")
    }

    /// The registry events' `EventType` (`SetValue`, `CreateKey`…), which
    /// some categories filter on.
    fn event_type(&self) -> Option<&str> {
        self.get("EventType")
    }
}

impl<S: std::hash::BuildHasher> Fields for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::HashMap::get(self, name).map(String::as_str)
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        std::collections::HashMap::values(self)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Replaces the five XML entities and numeric character references with
/// the characters they stand for, in one pass (`&amp;lt;` is `&lt;`).
/// Borrows when there is nothing to replace.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    unescape_into(s, &mut out);
    Cow::Owned(out)
}

/// Appends `s` unescaped (see [`unescape`]) to `out`: straight into the
/// scratch's buffer, since a value with an entity (`&quot;` in command
/// lines) is common and a copy per value showed in cold profiles.
fn unescape_into(s: &str, out: &mut String) {
    let mut rest = s;
    while let Some(at) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // An entity's name is at most 9 bytes (`&#x10FFFF;`).
        let end = rest.as_bytes()[1..]
            .iter()
            .take(10)
            .position(|&b| b == b';')
            .map(|e| e + 1);
        let decoded = end.and_then(|e| entity(&rest[1..e]));
        match (end, decoded) {
            (Some(e), Some(c)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Buffers reused from one event to the next (and the verdicts they
/// remember: keep one per search, not one per event), so the common path of
/// [`RuleSet::matches_with`](super::RuleSet::matches_with) allocates
/// nothing once warm: field values (unescaped, lower-cased) are cached per
/// interned field and invalidated by bumping an epoch instead of clearing.
#[derive(Default)]
pub struct Scratch {
    epoch: u32,
    text_at: Vec<u32>,
    lower_at: Vec<u32>,
    text: Vec<String>,
    lower: Vec<String>,
    /// The field's value read as an address (for `cidr`), per field:
    /// Microsoft's ranges run to dozens of networks per item, and several
    /// rules test the same `DestinationIp`.
    ip_at: Vec<u32>,
    ip: Vec<Option<u128>>,
    pub(super) candidates: Vec<u32>,
    pub(super) hits: super::index::Hits,
    memo: Vec<Option<bool>>,
    /// Every value of the event, unescaped and lower-cased, for keyword
    /// rules: filled once per event (`values_at` = its epoch), on first use.
    values_at: u32,
    values_len: usize,
    values_text: Vec<String>,
    values_lower: Vec<String>,
    /// One value that a keyword automaton cannot search as the row holds
    /// it, unescaped and lower-cased.
    keyword_text: String,
    keyword_lower: String,
    /// Every value for keyword automata, joined (`joined_at`: its epoch).
    joined_at: u32,
    joined: String,
    /// Verdicts remembered across events (see `memo.rs`).
    pub(super) verdicts: super::memo::Memo,
    /// Field scans remembered across events (see `scan_memo.rs`).
    pub(super) scans: super::scan_memo::ScanMemo,
}

impl Scratch {
    /// A scratch that remembers no verdict: every event is evaluated in
    /// full. For benchmarks of the engine's cold path and for checking
    /// that remembering changes nothing; a search uses the default.
    pub fn forgetful() -> Scratch {
        let mut s = Scratch::default();
        s.verdicts.off = true;
        s.scans.off = true;
        s
    }

    /// Starts a new event over `fields` interned names.
    pub(super) fn next_event(&mut self, fields: usize) {
        if self.text_at.len() < fields {
            self.text_at.resize(fields, 0);
            self.lower_at.resize(fields, 0);
            self.text.resize_with(fields, String::new);
            self.lower.resize_with(fields, String::new);
            self.ip_at.resize(fields, 0);
            self.ip.resize(fields, None);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.text_at.fill(0);
            self.lower_at.fill(0);
            self.ip_at.fill(0);
            self.values_at = 0;
            self.joined_at = 0;
            self.epoch = 1;
        }
        self.candidates.clear();
    }
}

/// Calls `f` with `v` as a keyword automaton searches it (see `any_of.rs`):
/// unescaped, and lower-cased unless `cased`. A value that is ASCII with no
/// entity reads the same either way for an automaton that folds ASCII case
/// itself, so it is passed as the row holds it, without a copy; any other
/// is made in `text` (and `lower`).
fn keyword_form<R>(
    v: &str,
    cased: bool,
    text: &mut String,
    lower: &mut String,
    f: impl FnOnce(&str) -> R,
) -> R {
    if v.is_ascii() && memchr::memchr(b'&', v.as_bytes()).is_none() {
        return f(v);
    }
    text.clear();
    unescape_into(v, text);
    if cased {
        return f(text);
    }
    lower_into(text, lower);
    f(lower)
}

/// `buf` = `text` lower-cased as the patterns are (Unicode; ASCII without
/// allocating).
fn lower_into(text: &str, buf: &mut String) {
    buf.clear();
    if text.is_ascii() {
        buf.push_str(text);
        buf.make_ascii_lowercase();
    } else {
        buf.push_str(&text.to_lowercase());
    }
}

/// One event being evaluated: field values fetched, unescaped and
/// lower-cased at most once each, into the reused [`Scratch`].
pub struct Ctx<'a, E: Fields> {
    ev: &'a E,
    names: &'a [String],
    s: &'a mut Scratch,
}

impl<'a, E: Fields> Ctx<'a, E> {
    /// A context over an event; `names` are the rule set's interned
    /// fields. The scratch must have been started with
    /// [`Scratch::next_event`].
    pub fn new(ev: &'a E, names: &'a [String], s: &'a mut Scratch) -> Self {
        Ctx { ev, names, s }
    }

    /// The field's value as the event holds it (`""` when absent).
    pub fn raw(&self, field: usize) -> &'a str {
        self.ev.get_field(field, &self.names[field]).unwrap_or("")
    }

    /// The field's unescaped value (`""` when absent).
    pub fn text(&mut self, field: usize) -> &str {
        if self.s.text_at[field] != self.s.epoch {
            let raw = self.raw(field);
            self.set_text(field, raw);
        }
        &self.s.text[field]
    }

    fn set_text(&mut self, field: usize, raw: &str) {
        let buf = &mut self.s.text[field];
        buf.clear();
        unescape_into(raw, buf);
        self.s.text_at[field] = self.s.epoch;
    }

    /// [`Ctx::lower`] for a field whose raw value the caller has just read
    /// with [`Ctx::raw`] (the candidate scan, for its memory): the value is
    /// not fetched from the row a second time.
    pub fn lower_from_raw(&mut self, field: usize, raw: &str) -> &str {
        debug_assert_eq!(raw, self.raw(field));
        if self.s.lower_at[field] != self.s.epoch {
            self.set_lower(field, raw);
        }
        &self.s.lower[field]
    }

    /// Fills the lower-cased value of `field` (raw value `raw`). Most
    /// values are ASCII without an entity: those are lower-cased straight
    /// from the row, and their unescaped text, which most fields tested
    /// case-insensitively never need, is left to be made on demand.
    fn set_lower(&mut self, field: usize, raw: &str) {
        if self.s.text_at[field] != self.s.epoch {
            if raw.is_ascii() && memchr::memchr(b'&', raw.as_bytes()).is_none() {
                let buf = &mut self.s.lower[field];
                buf.clear();
                buf.push_str(raw);
                buf.make_ascii_lowercase();
                self.s.lower_at[field] = self.s.epoch;
                return;
            }
            self.set_text(field, raw);
        }
        lower_into(&self.s.text[field], &mut self.s.lower[field]);
        self.s.lower_at[field] = self.s.epoch;
    }

    /// The field's value as an address ([`ip_bits`]), read once per event.
    fn ip(&mut self, field: usize) -> Option<u128> {
        if self.s.ip_at[field] != self.s.epoch {
            let ip = ip_bits(self.text(field));
            self.s.ip[field] = ip;
            self.s.ip_at[field] = self.s.epoch;
        }
        self.s.ip[field]
    }

    /// The field's unescaped value, lower-cased (Unicode).
    pub fn lower(&mut self, field: usize) -> &str {
        if self.s.lower_at[field] != self.s.epoch {
            let raw = self.raw(field);
            self.set_lower(field, raw);
        }
        &self.s.lower[field]
    }

    /// Whether the rule matches (its scope's EventType filter included;
    /// the EventCode was checked by the caller).
    pub fn rule(&mut self, rule: &Rule) -> bool {
        if let Some(types) = rule.scope.event_types {
            let t = self.ev.event_type().unwrap_or("").trim();
            if !types.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                return false;
            }
        }
        let mut memo = std::mem::take(&mut self.s.memo);
        memo.clear();
        memo.resize(rule.selections.len(), None);
        let hit = condition::eval(&rule.condition, &mut |i| {
            if let Some(v) = memo[i] {
                return v;
            }
            let v = self.selection(&rule.selections[i]);
            memo[i] = Some(v);
            v
        });
        self.s.memo = memo;
        hit
    }

    fn selection(&mut self, sel: &Selection) -> bool {
        sel.iter()
            .any(|map| map.iter().all(|fc| self.field_cond(fc)))
    }

    fn field_cond(&mut self, fc: &FieldCond) -> bool {
        self.field_values(fc) != fc.negated
    }

    fn field_values(&mut self, fc: &FieldCond) -> bool {
        let Some(field) = fc.field else {
            return self.keywords(fc);
        };
        if let Some(set) = fc.any_of.get(&fc.values) {
            let value = if set.cased {
                self.text(field)
            } else {
                self.lower(field)
            };
            return set.is_match(value);
        }
        let one = |ctx: &mut Self, alts: &[Matcher]| alts.iter().any(|m| ctx.test(field, m));
        if fc.all {
            fc.values.iter().all(|alts| one(self, alts))
        } else {
            fc.values.iter().any(|alts| one(self, alts))
        }
    }

    /// Fills the scratch's copy of every value of the event, once per event.
    fn load_values(&mut self) {
        let s = &mut *self.s;
        if s.values_at == s.epoch {
            return;
        }
        s.values_at = s.epoch;
        s.values_len = 0;
        for v in self.ev.values() {
            if s.values_len == s.values_text.len() {
                s.values_text.push(String::new());
                s.values_lower.push(String::new());
            }
            let (text, lower) = (
                &mut s.values_text[s.values_len],
                &mut s.values_lower[s.values_len],
            );
            text.clear();
            unescape_into(v, text);
            lower_into(text, lower);
            s.values_len += 1;
        }
    }

    /// Every value of the event, unescaped and lower-cased, joined by NUL
    /// bytes: one search per event instead of one per value, which cost
    /// more in call overhead than in scanning. No literal holds a NUL
    /// ([`AnyOf::joinable`](super::any_of::AnyOf::joinable)), so no match
    /// spans two values. Built once per event, on first use.
    fn joined_values(&mut self) -> &str {
        let s = &mut *self.s;
        if s.joined_at != s.epoch {
            s.joined_at = s.epoch;
            s.joined.clear();
            for v in self.ev.values() {
                let (text, lower) = (&mut s.keyword_text, &mut s.keyword_lower);
                keyword_form(v, false, text, lower, |t| s.joined.push_str(t));
                s.joined.push('\0');
            }
            // Lower-cased whole (ASCII values were pushed as they are), so
            // that the automaton need not fold case (see `any_of.rs`).
            s.joined.make_ascii_lowercase();
        }
        &s.joined
    }

    fn keywords(&mut self, fc: &FieldCond) -> bool {
        if let Some(set) = fc.any_of.get(&fc.values) {
            if !set.cased && set.joinable() {
                return set.is_match(self.joined_values());
            }
            let (text, lower) = (&mut self.s.keyword_text, &mut self.s.keyword_lower);
            return self
                .ev
                .values()
                .any(|v| keyword_form(v, set.cased, text, lower, |t| set.is_match(t)));
        }
        self.load_values();
        let s = &*self.s;
        let (texts, lowers) = (
            &s.values_text[..s.values_len],
            &s.values_lower[..s.values_len],
        );
        let hit = |alts: &[Matcher]| {
            texts
                .iter()
                .zip(lowers)
                .any(|(text, lower)| alts.iter().any(|m| test_text(m, text, lower)))
        };
        if fc.all {
            fc.values.iter().all(|a| hit(a))
        } else {
            fc.values.iter().any(|a| hit(a))
        }
    }

    fn test(&mut self, field: usize, m: &Matcher) -> bool {
        match m {
            Matcher::Str { pat, cased: false } => pat.is_match(self.lower(field)),
            Matcher::Cidr { net, bits } => self.ip(field).is_some_and(|a| a & mask(*bits) == *net),
            Matcher::FieldRef {
                field: other,
                cased,
            } => {
                let a = if *cased {
                    self.text(field).to_owned()
                } else {
                    self.lower(field).to_owned()
                };
                let b = if *cased {
                    self.text(*other)
                } else {
                    self.lower(*other)
                };
                !a.is_empty() && a == b
            }
            other => {
                let text = self.text(field);
                test_text(other, text, text)
            }
        }
    }
}

/// A matcher on one value given as text and lower-cased text (`lower` is
/// only read by case-insensitive string tests).
fn test_text(m: &Matcher, text: &str, lower: &str) -> bool {
    match m {
        Matcher::Str { pat, cased } => pat.is_match(if *cased { text } else { lower }),
        Matcher::Regex(re) => re.is_match(text),
        Matcher::Cidr { net, bits } => ip_bits(text).is_some_and(|a| a & mask(*bits) == *net),
        Matcher::Null => text.is_empty(),
        Matcher::Exists(want) => text.is_empty() != *want,
        Matcher::FieldRef { .. } => false,
        Matcher::Cmp(op, n) => text.trim().parse::<f64>().is_ok_and(|v| match op {
            CmpOp::Gt => v > *n,
            CmpOp::Gte => v >= *n,
            CmpOp::Lt => v < *n,
            CmpOp::Lte => v <= *n,
        }),
        Matcher::TimePart(part, n) => super::timestamp::part(text, *part) == Some(*n),
    }
}

/// An address as 128 bits, IPv4 as IPv4-mapped IPv6 (so IPv4 networks also
/// contain `::ffff:a.b.c.d`). Sysmon writes IPv6 without brackets.
fn ip_bits(text: &str) -> Option<u128> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    let t = t.split('%').next().unwrap_or(t);
    Some(match t.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_handles_entities_once() {
        assert_eq!(unescape("a &amp;&amp; b"), "a && b");
        assert_eq!(unescape("&lt;unknown process&gt;"), "<unknown process>");
        assert_eq!(unescape("&quot;x&apos;"), "\"x'");
        assert_eq!(unescape("&amp;lt;"), "&lt;");
        assert_eq!(unescape("&#65;&#x42;"), "AB");
        assert_eq!(unescape("AT&T & co;"), "AT&T & co;");
        assert_eq!(unescape("tail &"), "tail &");
        assert!(matches!(unescape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn ip_forms() {
        assert_eq!(ip_bits("10.0.0.1"), ip_bits("::ffff:10.0.0.1"));
        assert!(ip_bits("fe80::1%12").is_some());
        assert!(ip_bits("-").is_none());
    }
}
