//! Splunk `.conf` files: parsing, `default/` + `local/` layering, typed
//! values.
//!
//! An app ships its settings in `default/<name>.conf`; an admin changes them
//! in `local/<name>.conf`, which Splunk never overwrites on upgrade. Splunk
//! merges the two per stanza and per key (local wins), and so do we: a site
//! can change one key of one stanza, add a stanza, or switch a stanza off
//! with `disabled = 1`, without copying the whole file.
//!
//! # Format (as Splunk reads it)
//!
//! ```text
//! # a comment: '#' first on the line (after optional white space)
//! key_before_any_stanza = belongs to [default]
//!
//! [stanza name]
//! key = value          # NOT a comment: '#' inside a value is data
//! long = first line \
//! second line          # a trailing '\' continues the value; the line break stays in it
//! ```
//!
//! * White space around `=` and at both ends of a value is trimmed.
//! * A key repeated in one stanza: the last one wins. A stanza repeated in
//!   one file: the two are merged (again, last key wins).
//! * Keys in `[default]` apply to every stanza that does not set them
//!   (Splunk's inheritance); [`ConfFile::get`] is the exact lookup,
//!   [`ConfFile::get_inherited`] and the typed getters apply the fallback.
//! * Lines that are none of the above (no `=`, an empty key, a `[` header
//!   without `]`) are errors naming the line: Splunk only warns about them
//!   in `btool check`, but a silently ignored line in a rules file changes
//!   what the rules do, so we refuse to guess.
//!
//! Parsing is pure; only [`ConfFile::load`] touches the file system.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What can go wrong reading a `.conf` file or one of its values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// A line that is not a stanza header, a setting, a comment or blank.
    #[error("{}line {line}: {message}", origin_prefix(.origin))]
    Syntax {
        /// The file, when the text came from one.
        origin: Option<PathBuf>,
        /// 1-based line number (of the first line of a continued value).
        line: usize,
        /// What was wrong, for a person.
        message: String,
    },
    /// The file exists but could not be read (permissions, not UTF-8, …).
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A value that does not parse as the type the setting needs.
    #[error("[{stanza}] {key} = {value:?}: expected {expected}")]
    Value {
        /// Stanza of the setting.
        stanza: String,
        /// Key of the setting.
        key: String,
        /// The value as written.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
}

fn origin_prefix(origin: &Option<PathBuf>) -> String {
    match origin {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

/// Short name used by callers that load an app's settings:
/// `Conf::load(app_dir, "sysmonenrich")`.
pub type Conf = ConfFile;

/// Name of the stanza that holds keys written before any header, and whose
/// keys every other stanza inherits.
pub const DEFAULT_STANZA: &str = "default";

/// One `[stanza]`: its name and its settings in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    name: Box<str>,
    // A stanza has a handful of keys; a linear scan beats hashing them and
    // keeps file order for free.
    entries: Vec<(Box<str>, Box<str>)>,
}

impl Stanza {
    fn new(name: &str) -> Stanza {
        Stanza {
            name: name.into(),
            entries: Vec::new(),
        }
    }

    /// The name between the brackets.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key` in this stanza only (no `[default]` fallback).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// Settings in file order (a key overridden later keeps its first
    /// position).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the stanza has no keys (a bare `[name]` header).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn set(&mut self, key: &str, value: Box<str>) {
        match self.entries.iter_mut().find(|(k, _)| &**k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.into(), value)),
        }
    }
}

/// A parsed (possibly layered) `.conf` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfFile {
    stanzas: Vec<Stanza>,
    index: HashMap<Box<str>, usize>,
}

impl ConfFile {
    /// Parses the text of one `.conf` file. Errors name the 1-based line.
    pub fn parse(text: &str) -> Result<ConfFile, ConfError> {
        parse_text(text, None)
    }

    /// Parses `default` and lays `local` over it: per stanza, local keys
    /// replace default keys and add new ones; stanzas only in local are
    /// appended after the default ones, in local's order.
    pub fn layered(default_text: &str, local_text: Option<&str>) -> Result<ConfFile, ConfError> {
        let mut conf = ConfFile::parse(default_text)?;
        if let Some(local) = local_text {
            conf.overlay(ConfFile::parse(local)?);
        }
        Ok(conf)
    }

    /// Reads `<app_dir>/default/<name>.conf` and `<app_dir>/local/<name>.conf`
    /// and layers them. A missing file counts as empty (apps often ship no
    /// `local/`); any other read error, and syntax errors, are reported with
    /// the path.
    pub fn load(app_dir: &Path, name: &str) -> Result<ConfFile, ConfError> {
        let file = format!("{name}.conf");
        let mut conf = read_optional(&app_dir.join("default").join(&file))?;
        conf.overlay(read_optional(&app_dir.join("local").join(&file))?);
        Ok(conf)
    }

    /// Lays `upper` over `self` (Splunk's local-over-default merge).
    pub fn overlay(&mut self, upper: ConfFile) {
        for stanza in upper.stanzas {
            let target = self.stanza_mut(&stanza.name);
            for (k, v) in stanza.entries {
                target.set(&k, v);
            }
        }
    }

    /// Stanzas in file order (`[default]` included when present).
    pub fn stanzas(&self) -> impl Iterator<Item = &Stanza> {
        self.stanzas.iter()
    }

    /// The stanza called `name`.
    pub fn stanza(&self, name: &str) -> Option<&Stanza> {
        self.index.get(name).map(|&i| &self.stanzas[i])
    }

    /// True when there are no stanzas at all.
    pub fn is_empty(&self) -> bool {
        self.stanzas.is_empty()
    }

    /// The value of `key` written in `stanza` itself.
    pub fn get(&self, stanza: &str, key: &str) -> Option<&str> {
        self.stanza(stanza)?.get(key)
    }

    /// The value of `key` in `stanza`, else in `[default]`: what Splunk
    /// applies to the stanza.
    pub fn get_inherited(&self, stanza: &str, key: &str) -> Option<&str> {
        self.get(stanza, key)
            .or_else(|| self.get(DEFAULT_STANZA, key))
    }

    /// A Splunk boolean (`1/0/true/false/t/f/yes/no/y/n`, any case), with
    /// `[default]` fallback. `Ok(None)` when the key is not set.
    pub fn get_bool(&self, stanza: &str, key: &str) -> Result<Option<bool>, ConfError> {
        self.typed(
            stanza,
            key,
            parse_bool,
            "a boolean (1/0, true/false, t/f, yes/no, y/n)",
        )
    }

    /// An unsigned integer, with `[default]` fallback.
    pub fn get_u64(&self, stanza: &str, key: &str) -> Result<Option<u64>, ConfError> {
        self.typed(stanza, key, |v| v.parse().ok(), "a non-negative integer")
    }

    /// A signed integer, with `[default]` fallback.
    pub fn get_i64(&self, stanza: &str, key: &str) -> Result<Option<i64>, ConfError> {
        self.typed(stanza, key, |v| v.parse().ok(), "an integer")
    }

    /// A duration (`30s`, `5m`, `2h`, `7d`, or plain seconds), with
    /// `[default]` fallback. See [`parse_duration`].
    pub fn get_duration(&self, stanza: &str, key: &str) -> Result<Option<Duration>, ConfError> {
        self.typed(
            stanza,
            key,
            parse_duration,
            "a duration such as 30s, 5m, 2h, 7d or plain seconds",
        )
    }

    fn typed<T>(
        &self,
        stanza: &str,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &'static str,
    ) -> Result<Option<T>, ConfError> {
        let Some(raw) = self.get_inherited(stanza, key) else {
            return Ok(None);
        };
        match parse(raw.trim()) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfError::Value {
                stanza: stanza.to_owned(),
                key: key.to_owned(),
                value: raw.to_owned(),
                expected,
            }),
        }
    }

    fn stanza_mut(&mut self, name: &str) -> &mut Stanza {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.stanzas.push(Stanza::new(name));
                let i = self.stanzas.len() - 1;
                self.index.insert(name.into(), i);
                i
            }
        };
        &mut self.stanzas[i]
    }
}

fn read_optional(path: &Path) -> Result<ConfFile, ConfError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_text(&text, Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfFile::default()),
        Err(source) => Err(ConfError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_text(text: &str, origin: Option<&Path>) -> Result<ConfFile, ConfError> {
    let syntax = |line: usize, message: String| ConfError::Syntax {
        origin: origin.map(Path::to_path_buf),
        line,
        message,
    };
    // Windows editors put a byte-order mark in front; Splunk reads past it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut conf = ConfFile::default();
    let mut current = DEFAULT_STANZA.to_owned();
    // `str::lines` also strips the `\r` of CRLF files.
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((number, line)) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            // Stanza names may themselves contain brackets
            // (`[source::...[x]]`), so the header runs to the LAST `]`.
            let Some(name) = rest.strip_suffix(']') else {
                return Err(syntax(
                    number,
                    format!("stanza header {trimmed:?} has no closing ']'"),
                ));
            };
            current = name.trim().to_owned();
            conf.stanza_mut(&current);
            continue;
        }
        let Some(eq) = line.find('=') else {
            return Err(syntax(
                number,
                format!("expected `key = value`, `[stanza]` or `# comment`, found {trimmed:?}"),
            ));
        };
        let key = line[..eq].trim();
        if key.is_empty() {
            return Err(syntax(
                number,
                format!("setting without a key: {trimmed:?}"),
            ));
        }
        let mut value = line[eq + 1..].trim_start().to_owned();
        // Continuation: the backslash goes, the line break stays (Splunk keeps
        // multi-line searches and descriptions readable that way). A
        // continuation line is raw value text, even if it starts with '#'.
        while value.ends_with('\\') {
            value.pop();
            match lines.next() {
                Some((_, next)) => {
                    value.push('\n');
                    value.push_str(next);
                }
                // A trailing backslash on the last line continues nothing.
                None => break,
            }
        }
        let value = value.trim_end();
        conf.stanza_mut(&current).set(key, value.into());
    }
    Ok(conf)
}

/// Splunk's booleans: `1/0`, `true/false`, `t/f`, `yes/no`, `y/n`, any
/// case, surrounding white space ignored.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim();
    const TRUE: [&str; 5] = ["1", "true", "t", "yes", "y"];
    const FALSE: [&str; 5] = ["0", "false", "f", "no", "n"];
    if TRUE.iter().any(|t| v.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| v.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// A duration: a non-negative integer of seconds, optionally followed (white
/// space allowed, any case) by a unit: `ms`, `s`/`sec`/`secs`/`second(s)`,
/// `m`/`min`/`mins`/`minute(s)`, `h`/`hr`/`hrs`/`hour(s)`, `d`/`day(s)`,
/// `w`/`week(s)`. Fractions and negative values are refused: a typo in a
/// TTL should be an error, not a surprise.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = v[..digits].parse().ok()?;
    let unit = v[digits..].trim_start().to_ascii_lowercase();
    let seconds_per = match unit.as_str() {
        "ms" => return Some(Duration::from_millis(n)),
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return None,
    };
    n.checked_mul(seconds_per).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_keys_comments_and_default() {
        let text = "# leading comment\r\n\
                    top = level\r\n\
                    \r\n\
                    [first]\r\n\
                    a = 1\r\n\
                    \t# indented comment\r\n\
                    b=two words  \r\n\
                    url = http://x/#anchor\r\n\
                    [second]\r\n\
                    a = 3\r\n";
        let c = ConfFile::parse(text).unwrap();
        let names: Vec<&str> = c.stanzas().map(Stanza::name).collect();
        assert_eq!(names, ["default", "first", "second"]);
        assert_eq!(c.get("default", "top"), Some("level"));
        assert_eq!(c.get("first", "a"), Some("1"));
        assert_eq!(c.get("first", "b"), Some("two words"));
        // '#' is only a comment at the start of a line.
        assert_eq!(c.get("first", "url"), Some("http://x/#anchor"));
        assert_eq!(c.get("second", "a"), Some("3"));
        assert_eq!(c.get("second", "b"), None);
        assert_eq!(c.get("nope", "a"), None);
        // [default] applies to every stanza that does not set the key.
        assert_eq!(c.get("second", "top"), None);
        assert_eq!(c.get_inherited("second", "top"), Some("level"));
        assert_eq!(c.get_inherited("second", "a"), Some("3"));
    }

    #[test]
    fn duplicates_last_wins_and_stanzas_merge() {
        let c = ConfFile::parse("[s]\nk = 1\nj = x\nk = 2\n[t]\n[s]\nl = 3\n").unwrap();
        let s = c.stanza("s").unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [("k", "2"), ("j", "x"), ("l", "3")]
        );
        assert_eq!(c.stanzas().count(), 2);
        assert!(c.stanza("t").unwrap().is_empty());
    }

    #[test]
    fn continuation_keeps_the_line_break() {
        let c = ConfFile::parse(
            "[m]\ndefinition = index=a \\\n| stats count \\\n# not a comment\nnext = 1\n",
        )
        .unwrap();
        assert_eq!(
            c.get("m", "definition"),
            Some("index=a \n| stats count \n# not a comment")
        );
        assert_eq!(c.get("m", "next"), Some("1"));
        // Backslash on the last line: nothing to continue.
        let c = ConfFile::parse("[m]\nx = a\\").unwrap();
        assert_eq!(c.get("m", "x"), Some("a"));
    }

    #[test]
    fn empty_values_and_bom() {
        let c = ConfFile::parse("\u{feff}[s]\nempty =\nspaced =    \n").unwrap();
        assert_eq!(c.get("s", "empty"), Some(""));
        assert_eq!(c.get("s", "spaced"), Some(""));
    }

    #[test]
    fn errors_name_the_line() {
        let e = ConfFile::parse("[ok]\na = 1\njust words\n").unwrap_err();
        assert!(matches!(e, ConfError::Syntax { line: 3, .. }), "{e}");
        assert!(
            e.to_string().starts_with("line 3: expected `key = value`"),
            "{e}"
        );
        let e = ConfFile::parse("\n[broken\n").unwrap_err();
        assert!(matches!(e, ConfError::Syntax { line: 2, .. }), "{e}");
        let e = ConfFile::parse("[s]\n = v\n").unwrap_err();
        assert!(e.to_string().contains("without a key"), "{e}");
    }

    #[test]
    fn layering_local_over_default() {
        let default = "[a]\nx = 1\ny = 2\n[b]\nx = 3\n";
        let local = "[b]\nx = 30\nz = 4\n[c]\nnew = yes\n";
        let c = ConfFile::layered(default, Some(local)).unwrap();
        assert_eq!(c.get("a", "x"), Some("1"));
        assert_eq!(c.get("a", "y"), Some("2"));
        assert_eq!(c.get("b", "x"), Some("30"));
        assert_eq!(c.get("b", "z"), Some("4"));
        assert_eq!(c.get("c", "new"), Some("yes"));
        let names: Vec<&str> = c.stanzas().map(Stanza::name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            ConfFile::layered(default, None).unwrap(),
            ConfFile::parse(default).unwrap()
        );
    }

    #[test]
    fn load_reads_default_and_local() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing at all: empty, not an error.
        assert!(Conf::load(dir.path(), "x").unwrap().is_empty());
        std::fs::create_dir(dir.path().join("default")).unwrap();
        std::fs::write(dir.path().join("default/x.conf"), "[s]\na = 1\nb = 2\n").unwrap();
        let c = Conf::load(dir.path(), "x").unwrap();
        assert_eq!(c.get("s", "b"), Some("2"));
        std::fs::create_dir(dir.path().join("local")).unwrap();
        std::fs::write(dir.path().join("local/x.conf"), "[s]\nb = 20\n").unwrap();
        let c = Conf::load(dir.path(), "x").unwrap();
        assert_eq!((c.get("s", "a"), c.get("s", "b")), (Some("1"), Some("20")));
        // Syntax errors carry the path.
        std::fs::write(dir.path().join("local/x.conf"), "[s]\noops\n").unwrap();
        let e = Conf::load(dir.path(), "x").unwrap_err();
        assert!(e.to_string().contains("local/x.conf: line 2:"), "{e}");
        // A read error other than "missing" is reported (a directory here).
        std::fs::remove_file(dir.path().join("local/x.conf")).unwrap();
        std::fs::create_dir(dir.path().join("local/x.conf")).unwrap();
        assert!(matches!(
            Conf::load(dir.path(), "x"),
            Err(ConfError::Read { .. })
        ));
    }

    #[test]
    fn typed_values() {
        let c = ConfFile::parse(
            "flag = Yes\n[s]\noff = f\nn = 42\nneg = -7\nttl = 5m\nbad = maybe\nbig = 99999999999999999999d\n",
        )
        .unwrap();
        assert_eq!(c.get_bool("s", "off").unwrap(), Some(false));
        assert_eq!(
            c.get_bool("s", "flag").unwrap(),
            Some(true),
            "inherited from [default]"
        );
        assert_eq!(c.get_bool("s", "missing").unwrap(), None);
        let e = c.get_bool("s", "bad").unwrap_err();
        assert_eq!(
            e.to_string(),
            "[s] bad = \"maybe\": expected a boolean (1/0, true/false, t/f, yes/no, y/n)"
        );
        assert_eq!(c.get_u64("s", "n").unwrap(), Some(42));
        assert!(c.get_u64("s", "neg").is_err());
        assert_eq!(c.get_i64("s", "neg").unwrap(), Some(-7));
        assert_eq!(
            c.get_duration("s", "ttl").unwrap(),
            Some(Duration::from_secs(300))
        );
        assert!(c.get_duration("s", "big").is_err(), "overflow is an error");
    }

    #[test]
    fn booleans_and_durations() {
        for t in ["1", "true", "TRUE", "t", "T", "yes", "Y", " y "] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "false", "False", "f", "no", "NO", "n"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "2", "on", "off", "yess"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
        let s = Duration::from_secs;
        assert_eq!(parse_duration("30"), Some(s(30)));
        assert_eq!(parse_duration("30s"), Some(s(30)));
        assert_eq!(parse_duration("5m"), Some(s(300)));
        assert_eq!(parse_duration("2h"), Some(s(7_200)));
        assert_eq!(parse_duration("7d"), Some(s(604_800)));
        assert_eq!(parse_duration("1w"), Some(s(604_800)));
        assert_eq!(parse_duration(" 10 Min "), Some(s(600)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "s", "-5s", "1.5h", "5x", "5 m s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
