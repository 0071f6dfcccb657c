//! Lineage rules: named parent/ancestor/child patterns, kept as data in
//! `default/lineage_rules.conf` (overridable in `local/`).
//!
//! A rule is one stanza; the stanza name is what `lineage_flags` shows.
//!
//! | key | meaning |
//! |---|---|
//! | `child` | the process itself (any process when absent) |
//! | `parent` | the direct parent must be one of these |
//! | `ancestor` | some ancestor (parent included) must be one of these |
//! | `parent_not` | the parent is known and is *none* of these |
//! | `severity` | `low` `medium` (default) `high` `critical` |
//! | `description` | free text for people |
//! | `disabled` | Splunk boolean; a disabled rule is not compiled |
//!
//! Lists are comma separated image *basenames*, compared case-insensitively
//! (ASCII), `*` matching any run of characters (`tomcat*.exe`). All
//! present conditions must hold. An empty list is the same as no list, so
//! a site can clear a condition in `local/`. Keys in `[default]` apply to
//! every rule (Splunk's inheritance); unknown keys are errors, because a
//! misspelt `chlid` silently ignored would turn a narrow rule into one
//! that matches everything.
//!
//! # Matching cost
//!
//! Every distinct name or pattern in the file is a *term* with a number.
//! Rules are compiled to bitsets of terms. For a chain, each image basename
//! is lower-cased once, looked up once in a hash map of exact terms and
//! tested against the (few) wildcard terms, giving the set of terms it
//! matches; each rule is then a handful of word-wide ANDs. No allocation
//! except the names of the rules that match.
//!
//! "Parent" and "ancestor" only consider real processes: the all-zero GUID
//! entry (Sysmon's unknown parent, image `?`/`-`) and entries with an empty
//! image never match a list, and a `parent_not` rule needs a known parent.

use super::chain::{basename, Chain};
use super::hash::GuidBuildHasher;
use crate::config::conf::{parse_bool, ConfFile, DEFAULT_STANZA};
use std::collections::HashMap;
use std::sync::Arc;

/// The rules shipped in `default/lineage_rules.conf`, compiled into the
/// binary so the CLI works without an app directory.
pub const DEFAULT_RULES: &str = include_str!("../../default/lineage_rules.conf");

/// A rule file problem: which rule, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lineage rule [{rule}]: {message}")]
pub struct RuleError {
    /// Stanza name.
    pub rule: String,
    /// What was wrong.
    pub message: String,
}

/// How bad a match is (for people; matching ignores it).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth a look when hunting.
    Low,
    /// Default.
    Medium,
    /// Usually malicious.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    fn parse(v: &str) -> Option<Severity> {
        match v.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A bitset over the terms of a rule file.
type TermSet = Box<[u64]>;

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    severity: Severity,
    description: Box<str>,
    child: Option<TermSet>,
    parent: Option<TermSet>,
    ancestor: Option<TermSet>,
    parent_not: Option<TermSet>,
}

impl Rule {
    /// The stanza name (the `lineage_flags` value).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// Description (may be empty).
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// A compiled rule set; cheap to share (`&Rules`) across a search.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    exact: HashMap<Box<[u8]>, u32, GuidBuildHasher>,
    wild: Vec<(Box<[u8]>, u32)>,
    words: usize,
}

const KEYS: [&str; 7] = [
    "severity",
    "description",
    "child",
    "parent",
    "ancestor",
    "parent_not",
    "disabled",
];

impl Rules {
    /// No rules: `lineage_flags` stays empty.
    pub fn empty() -> Rules {
        Rules::default()
    }

    /// The shipped [`DEFAULT_RULES`], compiled.
    pub fn builtin() -> Result<Rules, RuleError> {
        let conf = ConfFile::parse(DEFAULT_RULES).map_err(|e| RuleError {
            rule: "lineage_rules.conf".into(),
            message: e.to_string(),
        })?;
        Rules::from_conf(&conf)
    }

    /// Compiles every enabled stanza of a (layered) `lineage_rules.conf`,
    /// in file order. `[default]` is not a rule; its keys are inherited.
    pub fn from_conf(conf: &ConfFile) -> Result<Rules, RuleError> {
        struct Raw {
            name: Arc<str>,
            severity: Severity,
            description: Box<str>,
            lists: [Option<Vec<u32>>; 4],
        }
        let mut exact: HashMap<Box<[u8]>, u32, GuidBuildHasher> = HashMap::default();
        let mut wild: Vec<(Box<[u8]>, u32)> = Vec::new();
        let mut terms = 0u32;
        // Each distinct lower-cased name or pattern gets the next number.
        let mut term = |name: &[u8]| -> u32 {
            let lower: Box<[u8]> = name.to_ascii_lowercase().into();
            let next = terms;
            let t = if lower.contains(&b'*') {
                match wild.iter().find(|(p, _)| *p == lower) {
                    Some((_, t)) => *t,
                    None => {
                        wild.push((lower, next));
                        next
                    }
                }
            } else {
                *exact.entry(lower).or_insert(next)
            };
            if t == next {
                terms += 1;
            }
            t
        };

        let mut raws = Vec::new();
        for stanza in conf.stanzas() {
            let rule = stanza.name();
            let err = |message: String| RuleError {
                rule: rule.to_owned(),
                message,
            };
            for (key, _) in stanza.iter() {
                if !KEYS.contains(&key) {
                    return Err(err(format!(
                        "unknown key {key:?} (expected one of {})",
                        KEYS.join(", ")
                    )));
                }
            }
            if rule == DEFAULT_STANZA {
                continue;
            }
            let get = |key: &str| conf.get_inherited(rule, key);
            if let Some(v) = get("disabled") {
                match parse_bool(v) {
                    Some(true) => continue,
                    Some(false) => {}
                    None => return Err(err(format!("disabled = {v:?} is not a boolean"))),
                }
            }
            let severity = match get("severity") {
                None => Severity::Medium,
                Some(v) => Severity::parse(v).ok_or_else(|| {
                    err(format!(
                        "severity = {v:?} (expected low, medium, high or critical)"
                    ))
                })?,
            };
            let mut lists: [Option<Vec<u32>>; 4] = Default::default();
            for (slot, key) in lists
                .iter_mut()
                .zip(["child", "parent", "ancestor", "parent_not"])
            {
                let Some(v) = get(key) else { continue };
                let names: Vec<&str> = v
                    .split([',', '\n'])
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .collect();
                if names.is_empty() {
                    continue;
                }
                if let Some(bad) = names.iter().find(|n| n.contains(['\\', '/'])) {
                    return Err(err(format!(
                        "{key} lists {bad:?}: rules match image basenames, not paths"
                    )));
                }
                *slot = Some(names.iter().map(|n| term(n.as_bytes())).collect());
            }
            if lists.iter().all(Option::is_none) {
                return Err(err(
                    "no child, parent, ancestor or parent_not: it would match every process".into(),
                ));
            }
            raws.push(Raw {
                name: rule.into(),
                severity,
                description: get("description").unwrap_or("").into(),
                lists,
            });
        }

        let words = (terms as usize).div_ceil(64);
        let set = |ids: &Option<Vec<u32>>| -> Option<TermSet> {
            ids.as_ref().map(|ids| {
                let mut bits = vec![0u64; words];
                for &t in ids {
                    bits[t as usize / 64] |= 1 << (t % 64);
                }
                bits.into_boxed_slice()
            })
        };
        let rules = raws
            .into_iter()
            .map(|r| Rule {
                child: set(&r.lists[0]),
                parent: set(&r.lists[1]),
                ancestor: set(&r.lists[2]),
                parent_not: set(&r.lists[3]),
                name: r.name,
                severity: r.severity,
                description: r.description,
            })
            .collect();
        Ok(Rules {
            rules,
            exact,
            wild,
            words,
        })
    }

    /// The enabled rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of enabled rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no enabled rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Appends the names of the rules `chain` matches, in file order.
    pub fn evaluate(&self, chain: &Chain, scratch: &mut RuleScratch, out: &mut Vec<Arc<str>>) {
        if self.rules.is_empty() {
            return;
        }
        let w = self.words;
        let n = chain.depth() + 1;
        scratch.bits.clear();
        scratch.bits.resize(n * w, 0);
        scratch.state.clear();
        scratch.state.resize(n, Name::Pending);
        // Names are classified on first need, child first: most processes
        // match no rule's `child` list, and then only the parent (for the
        // rules without one) is ever looked at, not the whole chain.
        // `test(i, set)`: `None` when name `i` is not a real process,
        // else whether it matches `set`. Kept small so it inlines; the
        // classification itself is out of line (once per name).
        let mut test = |i: usize, set: &TermSet| -> Option<bool> {
            if scratch.state[i] == Name::Pending {
                self.classify_name(chain, i, scratch);
            }
            (scratch.state[i] == Name::Known).then(|| {
                scratch.bits[i * w..(i + 1) * w]
                    .iter()
                    .zip(set.iter())
                    .any(|(a, b)| a & b != 0)
            })
        };
        self.select(
            |who, set| match who {
                Who::Child => test(0, set),
                Who::Parent => (n >= 2).then(|| test(1, set)).flatten(),
                Who::AnyAncestor => Some((1..n).any(|i| test(i, set) == Some(true))),
            },
            |_, rule| out.push(rule.name.clone()),
        );
    }

    /// The one definition of what a rule matches, for both ways of
    /// classifying names: `test(who, set)` is `None` when that name is
    /// absent or not a real process, else whether it matches `set`.
    /// Calls `matched` with each matched rule (and its index), in file
    /// order.
    fn select(
        &self,
        mut test: impl FnMut(Who, &TermSet) -> Option<bool>,
        mut matched: impl FnMut(usize, &Rule),
    ) {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(set) = &rule.child {
                if test(Who::Child, set) != Some(true) {
                    continue;
                }
            }
            if let Some(set) = &rule.parent {
                if test(Who::Parent, set) != Some(true) {
                    continue;
                }
            }
            if let Some(set) = &rule.parent_not {
                // Needs a known parent that is none of these.
                if test(Who::Parent, set) != Some(false) {
                    continue;
                }
            }
            if let Some(set) = &rule.ancestor {
                if test(Who::AnyAncestor, set) != Some(true) {
                    continue;
                }
            }
            matched(i, rule);
        }
    }

    /// Classifies name `i` of `chain` (0 = the process, 1.. = ancestors,
    /// nearest first): sets its term bits and state.
    #[inline(never)]
    fn classify_name(&self, chain: &Chain, i: usize, scratch: &mut RuleScratch) {
        let w = self.words;
        // The zero-GUID entry is not a process.
        let (real, image) = match i {
            0 => (true, chain.image()),
            _ => match chain.ancestor(i - 1) {
                Some(a) => (!a.guid.is_zero(), a.image),
                None => (false, &b""[..]),
            },
        };
        let name = basename(image);
        if !real || name.is_empty() {
            scratch.state[i] = Name::Unknown;
            return;
        }
        self.term_bits(
            name,
            &mut scratch.lower,
            &mut scratch.bits[i * w..(i + 1) * w],
        );
        scratch.state[i] = Name::Known;
    }

    /// Sets the bits of the terms a (non-empty) basename matches.
    fn term_bits(&self, name: &[u8], lower: &mut Vec<u8>, bits: &mut [u64]) {
        lower.clear();
        lower.extend(name.iter().map(u8::to_ascii_lowercase));
        if let Some(&t) = self.exact.get(&lower[..]) {
            bits[t as usize / 64] |= 1 << (t % 64);
        }
        for (pattern, t) in &self.wild {
            if glob(pattern, lower) {
                bits[*t as usize / 64] |= 1 << (t % 64);
            }
        }
    }

    /// True when these rules' terms fit a [`NameClass`] (at most
    /// `64 × CLASS_WORDS` distinct names), so that
    /// [`Rules::evaluate_classes`] can be used.
    pub fn classes_fit(&self) -> bool {
        self.words <= CLASS_WORDS
    }

    /// Classifies one name of a chain: `image` is the process's or the
    /// ancestor's image, `real` false for the all-zero GUID entry. Meant
    /// for callers that keep classes per ancestor instead of per chain;
    /// only meaningful when [`Rules::classes_fit`].
    pub fn classify(&self, image: &[u8], real: bool, lower: &mut Vec<u8>) -> NameClass {
        let mut class = NameClass::default();
        let name = basename(image);
        if real && !name.is_empty() && self.classes_fit() {
            class.known = true;
            self.term_bits(name, lower, &mut class.bits[..self.words]);
        }
        class
    }

    /// [`Rules::evaluate`] from classes: `child` is the process's,
    /// `parent` its nearest ancestor's (none without ancestors), and
    /// `ancestors` the union of [`NameClass::bits`] over all ancestors.
    /// Pushes the indices (into [`Rules::rules`]) of the matched rules, in
    /// file order.
    pub fn evaluate_classes(
        &self,
        child: &NameClass,
        parent: Option<&NameClass>,
        ancestors: &TermBits,
        out: &mut Vec<u32>,
    ) {
        let hits =
            |bits: &TermBits, set: &TermSet| bits.iter().zip(set.iter()).any(|(a, b)| a & b != 0);
        let test = |c: &NameClass, set: &TermSet| c.known.then(|| hits(&c.bits, set));
        self.select(
            |who, set| match who {
                Who::Child => test(child, set),
                Who::Parent => parent.and_then(|p| test(p, set)),
                Who::AnyAncestor => Some(hits(ancestors, set)),
            },
            |i, _| out.push(i as u32),
        );
    }
}

/// Which name of a chain a rule condition looks at (see [`Rules::select`]).
#[derive(Copy, Clone)]
enum Who {
    Child,
    /// The nearest ancestor.
    Parent,
    /// Whether any ancestor matches.
    AnyAncestor,
}

/// Words of term bits a [`NameClass`] holds.
pub const CLASS_WORDS: usize = 4;

/// Term bits of a [`NameClass`].
pub type TermBits = [u64; CLASS_WORDS];

/// What the rules need to know about one name of a chain (see
/// [`Rules::classify`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NameClass {
    /// A real process with an image (else it matches nothing).
    known: bool,
    bits: TermBits,
}

impl NameClass {
    /// The terms it matches (none when not known), to union over
    /// ancestors.
    pub fn bits(&self) -> TermBits {
        self.bits
    }
}

/// Reusable buffers for [`Rules::evaluate`].
#[derive(Debug, Default)]
pub struct RuleScratch {
    bits: Vec<u64>,
    state: Vec<Name>,
    lower: Vec<u8>,
}

/// Classification state of one name of the chain.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Name {
    Pending,
    /// A real process with an image: its term bits are set.
    Known,
    /// The zero-GUID entry or an empty image: matches nothing.
    Unknown,
}

/// `*`-only glob: `*` matches any run of bytes (also empty); everything
/// else matches itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let mut parts = pattern.split(|&b| b == b'*');
    // `split` always yields at least one part.
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts = parts.peekable();
    if parts.peek().is_none() {
        // No `*` at all: exact.
        return rest.is_empty();
    }
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            // The last part must end the text (and not overlap what the
            // earlier parts consumed).
            return rest.ends_with(part);
        }
        match memchr::memmem::find(rest, part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::process::SourceKind;
    use crate::sysmon::guid::ProcessGuid;

    /// A chain for `own` with ancestors `images`, nearest first, GUID 0 for
    /// `-`.
    fn chain(own: &str, images: &[&str]) -> Chain {
        let mut c = Chain::new(own.as_bytes());
        for (i, img) in images.iter().enumerate() {
            let g = if *img == "-" { 0 } else { i as u128 + 1 };
            c.push(
                ProcessGuid::from_u128(g),
                img.as_bytes(),
                b"",
                SourceKind::Results,
            );
        }
        c
    }

    fn flags(rules: &Rules, own: &str, images: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        rules.evaluate(&chain(own, images), &mut RuleScratch::default(), &mut out);
        out.iter().map(|s| s.to_string()).collect()
    }

    const TEXT: &str = r"
[office_shell]
severity = high
parent = WINWORD.EXE, excel.exe
child = cmd.exe, powershell.exe

[office_above_shell]
ancestor = winword.exe
child = cmd.exe

[lsass_parent]
child = lsass.exe
parent_not = wininit.exe

[web]
parent = w3wp.exe, tomcat*.exe, *httpd*
child = cmd.exe

[proxy_anything]
parent = mshta.exe
";

    fn rules() -> Rules {
        Rules::from_conf(&ConfFile::parse(TEXT).unwrap()).unwrap()
    }

    #[test]
    fn parent_ancestor_child() {
        let r = rules();
        assert_eq!(r.len(), 5);
        assert_eq!(r.rules()[0].severity(), Severity::High);
        assert_eq!(r.rules()[1].severity(), Severity::Medium);
        assert_eq!(
            flags(&r, "C:\\W\\System32\\CMD.EXE", &["C:\\Office\\WinWord.exe"]),
            ["office_shell", "office_above_shell"]
        );
        // Ancestor two levels up: only the any-ancestor rule.
        assert_eq!(
            flags(
                &r,
                "cmd.exe",
                &["C:\\x\\explorer.exe", "C:\\Office\\winword.exe"]
            ),
            ["office_above_shell"]
        );
        assert!(flags(&r, "notepad.exe", &["winword.exe"]).is_empty());
        assert!(flags(&r, "cmd.exe", &[]).is_empty());
    }

    #[test]
    fn parent_not_needs_a_known_parent() {
        let r = rules();
        assert!(flags(
            &r,
            "C:\\Windows\\System32\\lsass.exe",
            &["C:\\Windows\\System32\\wininit.exe"]
        )
        .is_empty());
        assert_eq!(
            flags(&r, "lsass.exe", &["C:\\Temp\\evil.exe"]),
            ["lsass_parent"]
        );
        // Unknown parent (zero GUID, no ancestors, empty image): no claim.
        assert!(flags(&r, "lsass.exe", &["-"]).is_empty());
        assert!(flags(&r, "lsass.exe", &[]).is_empty());
        assert!(flags(&r, "lsass.exe", &[""]).is_empty());
    }

    #[test]
    fn wildcards_and_any_child() {
        let r = rules();
        assert_eq!(flags(&r, "cmd.exe", &["tomcat9.exe"]), ["web"]);
        assert_eq!(flags(&r, "cmd.exe", &["httpd.exe"]), ["web"]);
        assert_eq!(flags(&r, "cmd.exe", &["apache-httpd-x.exe"]), ["web"]);
        assert!(flags(&r, "cmd.exe", &["tomcat"]).is_empty());
        assert_eq!(
            flags(&r, "anything.exe", &["MSHTA.exe"]),
            ["proxy_anything"]
        );
        // The zero-GUID entry never counts as a parent.
        assert!(flags(&r, "x.exe", &["-", "mshta.exe"]).is_empty());
    }

    #[test]
    fn glob_cases() {
        assert!(glob(b"a*", b"a"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXbYc"));
        assert!(glob(b"a*b*c", b"abc"));
        assert!(!glob(b"a*b*c", b"acb"));
        assert!(!glob(b"ab*ba", b"aba"), "prefix and suffix may not overlap");
        assert!(glob(b"*.exe", b"x.exe"));
        assert!(!glob(b"x.exe", b"x.exe2"));
    }

    #[test]
    fn local_override_disables_and_changes() {
        let local = "[office_shell]\ndisabled = 1\n[lsass_parent]\nparent_not = wininit.exe, custom.exe\n[new_rule]\nchild = x.exe\n";
        let conf = ConfFile::layered(TEXT, Some(local)).unwrap();
        let r = Rules::from_conf(&conf).unwrap();
        let names: Vec<&str> = r.rules().iter().map(Rule::name).collect();
        assert_eq!(
            names,
            [
                "office_above_shell",
                "lsass_parent",
                "web",
                "proxy_anything",
                "new_rule"
            ]
        );
        assert!(flags(&r, "lsass.exe", &["custom.exe"]).is_empty());
        // [default] applies to every rule: disable all, re-enable one.
        let local = "[default]\ndisabled = true\n[web]\ndisabled = 0\n";
        let r = Rules::from_conf(&ConfFile::layered(TEXT, Some(local)).unwrap()).unwrap();
        assert_eq!(
            r.rules().iter().map(Rule::name).collect::<Vec<_>>(),
            ["web"]
        );
    }

    #[test]
    fn bad_rules_are_errors() {
        let bad = |text: &str| {
            Rules::from_conf(&ConfFile::parse(text).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[r]\nchlid = cmd.exe\n").contains("unknown key \"chlid\""));
        assert!(bad("[r]\nchild = cmd.exe\nseverity = hgih\n").contains("severity"));
        assert!(bad("[r]\ndescription = nothing\n").contains("every process"));
        assert!(bad("[r]\nchild =  , \n").contains("every process"));
        assert!(bad("[r]\nparent = C:\\x\\cmd.exe\n").contains("basenames"));
        assert!(bad("[r]\nchild = a\ndisabled = maybe\n").contains("boolean"));
    }

    #[test]
    fn many_terms_span_several_words() {
        let mut text = String::from("[big]\nparent = ");
        for i in 0..200 {
            text.push_str(&format!("p{i}.exe, "));
        }
        text.push_str("\n[other]\nchild = c199.exe\n");
        let r = Rules::from_conf(&ConfFile::parse(&text).unwrap()).unwrap();
        assert_eq!(flags(&r, "x", &["p199.exe"]), ["big"]);
        assert_eq!(flags(&r, "c199.exe", &["p0.exe"]), ["big", "other"]);
    }

    #[test]
    fn shipped_rules_compile() {
        let r = Rules::builtin().unwrap();
        assert!(r.len() >= 15, "{}", r.len());
        for rule in r.rules() {
            assert!(
                !rule.description().is_empty(),
                "{} has no description",
                rule.name()
            );
        }
    }
}
