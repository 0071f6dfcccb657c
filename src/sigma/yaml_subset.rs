//! The YAML that rule files are written in, read without a YAML parser.
//!
//! yaml-rust2 reads about 130 instructions per byte (a character queue,
//! a token queue, an event per scalar): loading SigmaHQ's 3.7 MB of rules
//! spent more than half of its CPU there, on every search. Rule files use
//! a small part of YAML: block maps and lists indented with spaces, plain
//! and quoted one-line scalars, `|` blocks, comments. This reads that part
//! line by line and gives up, with `None`, on anything else (flow
//! collections, anchors, tags, folded or multi-line scalars, tabs, deep
//! nesting, duplicated keys, odd escapes, anything it is not sure of): the
//! caller then reads the file with yaml-rust2 (`yaml.rs`), so every file
//! still reads exactly as yaml-rust2 reads it, errors included. A test
//! checks that both agree on every SigmaHQ rule and on thousands of
//! mutated ones.

use super::yaml::{scalar, MAX_NESTING};
use yaml_rust2::yaml::Hash;
use yaml_rust2::Yaml;

/// The document of `source` when it is in the subset (see the module
/// docs); `None` when yaml-rust2 must read it.
pub fn load(source: &str) -> Option<Yaml> {
    // Control characters (tabs and CRs included), a byte-order mark and
    // the line separators some YAML readers honour: left to yaml-rust2.
    // (A fold rather than `any`: without the early exit it vectorises.)
    let control = source.bytes().fold(false, |seen, b| {
        seen | ((b < 0x20) & (b != b'\n')) | (b == 0x7f)
    });
    if control
        || (!source.is_ascii() && source.contains(['\u{feff}', '\u{85}', '\u{2028}', '\u{2029}']))
    {
        return None;
    }
    let mut p = Lines {
        lines: source.split('\n').collect(),
        at: 0,
    };
    let (indent, _) = p.peek()?;
    let doc = p.mapping(indent, 1, None)?;
    // Anything left (a line less indented than the document) is not ours.
    p.peek().is_none().then_some(doc)
}

struct Lines<'a> {
    lines: Vec<&'a str>,
    at: usize,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `-` alone or followed by a space: a list entry.
fn is_entry(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

impl<'a> Lines<'a> {
    /// The next line that holds something (not blank, not a comment), as
    /// its indent and its text after the indent; not consumed.
    fn peek(&mut self) -> Option<(usize, &'a str)> {
        while let Some(&line) = self.lines.get(self.at) {
            let content = line.trim_start_matches(' ');
            if content.is_empty() || content.starts_with('#') {
                self.at += 1;
                continue;
            }
            return Some((line.len() - content.len(), content));
        }
        None
    }

    /// A block map whose keys sit at column `n`; `first` is an entry
    /// already read from the current line (a list entry's `- key: value`).
    fn mapping(
        &mut self,
        n: usize,
        depth: usize,
        first: Option<(&'a str, &'a str)>,
    ) -> Option<Yaml> {
        if depth > MAX_NESTING {
            return None;
        }
        let mut map = Hash::new();
        if let Some((key, rest)) = first {
            self.entry(&mut map, key, rest, n, depth)?;
        }
        while let Some((indent, content)) = self.peek() {
            if indent < n {
                break;
            }
            if indent > n || is_entry(content) {
                return None;
            }
            self.at += 1;
            let (key, rest) = find_key(content)??;
            self.entry(&mut map, key, rest, n, depth)?;
        }
        Some(Yaml::Hash(map))
    }

    /// One `key: rest` of a map at column `n`, with its value.
    fn entry(
        &mut self,
        map: &mut Hash,
        key: &str,
        rest: &'a str,
        n: usize,
        depth: usize,
    ) -> Option<()> {
        let key = scalar(key.to_owned(), false);
        if map.contains_key(&key) {
            return None;
        }
        let value = self.value(rest, n, depth, true)?;
        map.insert(key, value);
        Some(())
    }

    /// The value after `key:` or `-` on a line whose structure sits at
    /// column `n`: inline, a block below, or nothing (null). A map's value
    /// may also be a list at the map's own column (`same_column_list`).
    fn value(
        &mut self,
        rest: &'a str,
        n: usize,
        depth: usize,
        same_column_list: bool,
    ) -> Option<Yaml> {
        let rest = rest.trim_start_matches(' ');
        if rest.is_empty() || rest.starts_with('#') {
            return Some(match self.peek() {
                Some((indent, content)) if indent > n => {
                    if is_entry(content) {
                        self.sequence(indent, depth + 1)?
                    } else {
                        self.mapping(indent, depth + 1, None)?
                    }
                }
                Some((indent, content)) if indent == n && same_column_list && is_entry(content) => {
                    self.sequence(n, depth + 1)?
                }
                _ => Yaml::Null,
            });
        }
        if rest.starts_with('|') {
            return self.literal(rest, n);
        }
        let value = inline(rest)?;
        // A more indented line after a one-line scalar continues it (a
        // multi-line scalar) or is an error: yaml-rust2 says which.
        match self.peek() {
            Some((indent, _)) if indent > n => None,
            _ => Some(value),
        }
    }

    /// A block list whose `-` sit at column `n`.
    fn sequence(&mut self, n: usize, depth: usize) -> Option<Yaml> {
        if depth > MAX_NESTING {
            return None;
        }
        let mut items = Vec::new();
        while let Some((indent, content)) = self.peek() {
            if indent != n || !is_entry(content) {
                if indent > n {
                    return None;
                }
                break;
            }
            self.at += 1;
            let after = &content[1..];
            let text = after.trim_start_matches(' ');
            let column = n + 1 + (after.len() - text.len());
            if is_entry(text) {
                return None; // `- - x`
            }
            // Nothing, a comment, a `|` block or a quoted scalar (a quoted
            // key, `- 'a': b`, is refused by `inline`) is a value; a plain
            // text may be a map's first `key: value`.
            let plain = !(text.is_empty() || text.starts_with(['#', '|', '\'', '"']));
            let first = if plain { find_key(text)? } else { None };
            let item = match first {
                Some(entry) => self.mapping(column, depth + 1, Some(entry))?,
                None => self.value(text, n, depth, false)?,
            };
            items.push(item);
        }
        Some(Yaml::Array(items))
    }

    /// A `|` or `|-` block scalar under a line whose structure sits at
    /// column `n`.
    fn literal(&mut self, header: &str, n: usize) -> Option<Yaml> {
        let strip = match header.trim_end_matches(' ') {
            "|" => false,
            "|-" => true,
            _ => return None, // `|+`, indentation indicators, comments
        };
        let mut block: Option<usize> = None;
        let mut lines: Vec<&str> = Vec::new();
        while let Some(&line) = self.lines.get(self.at) {
            let indent = indent_of(line);
            if indent == line.len() {
                // Blank: content only if no longer than the indentation.
                if block.is_some_and(|b| indent > b) {
                    return None;
                }
                lines.push("");
                self.at += 1;
                continue;
            }
            if indent <= n {
                break;
            }
            let b = *block.get_or_insert(indent);
            if indent < b {
                return None;
            }
            lines.push(&line[b..]);
            self.at += 1;
        }
        block?;
        if lines.first().is_some_and(|l| l.is_empty()) {
            return None; // leading blank lines: left to yaml-rust2
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut text = lines.join("\n");
        if !strip {
            text.push('\n');
        }
        Some(Yaml::String(text))
    }
}

/// `Some(Some((key, rest)))` when `text` is a plain `key: rest`,
/// `Some(None)` when it holds no such colon (a scalar), `None` when it is
/// something this reader leaves to yaml-rust2.
fn find_key(text: &str) -> Option<Option<(&str, &str)>> {
    let bytes = text.as_bytes();
    if starts_with_indicator(text) {
        return None;
    }
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'#' if i > 0 && bytes[i - 1] == b' ' => return Some(None),
            b':' if bytes.get(i + 1).is_none_or(|&c| c == b' ') => {
                let key = text[..i].trim_end_matches(' ');
                if key.is_empty() {
                    return None;
                }
                return Some(Some((key, &text[i + 1..])));
            }
            _ => {}
        }
    }
    Some(None)
}

/// Characters that make a scalar anything but plain text, and `-`, `?`,
/// `:` followed by a space (or nothing).
fn starts_with_indicator(text: &str) -> bool {
    let b = text.as_bytes();
    match b.first() {
        None => false,
        Some(
            b'[' | b']' | b'{' | b'}' | b',' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"'
            | b'%' | b'@' | b'`' | b'#' | b':',
        ) => true,
        Some(b'-' | b'?') => b.get(1).is_none_or(|&c| c == b' '),
        _ => false,
    }
}

/// A one-line scalar: quoted or plain, with an optional comment after it.
fn inline(text: &str) -> Option<Yaml> {
    let (value, after) = match text.as_bytes()[0] {
        b'\'' => single_quoted(&text[1..])?,
        b'"' => double_quoted(&text[1..])?,
        _ => {
            if starts_with_indicator(text) {
                return None;
            }
            let end = text.find(" #").unwrap_or(text.len());
            let plain = text[..end].trim_end_matches(' ');
            // `a: b` inside a value, or a trailing `:`, is a map, or an
            // error: not a plain scalar.
            if plain.contains(": ") || plain.ends_with(':') {
                return None;
            }
            return Some(scalar(plain.to_owned(), false));
        }
    };
    // Nothing after the closing quote but spaces and a comment, which
    // must follow a space (`'x'#c` is an error; `'a': b` a quoted key).
    let trimmed = after.trim_start_matches(' ');
    let clean = trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < after.len());
    clean.then_some(Yaml::String(value))
}

/// `'…'` (the opening quote already read): the text and what follows the
/// closing quote; `None` when the quote does not close on this line.
fn single_quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let q = rest.find('\'')?;
        out.push_str(&rest[..q]);
        if rest[q + 1..].starts_with('\'') {
            out.push('\'');
            rest = &rest[q + 2..];
        } else {
            return Some((out, &rest[q + 1..]));
        }
    }
}

/// `"…"` (the opening quote already read), with the escapes rule files
/// use; any other escape is left to yaml-rust2.
fn double_quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => out.push(match chars.next()?.1 {
                '\\' => '\\',
                '"' => '"',
                '/' => '/',
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                _ => return None,
            }),
            _ => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What yaml-rust2 reads (through `yaml.rs`), for comparison.
    fn slow(source: &str) -> Option<Yaml> {
        match super::super::yaml::load_events(source) {
            Ok(mut docs) if docs.len() == 1 => docs.pop(),
            _ => None,
        }
    }

    /// Where the subset reads a text, yaml-rust2 reads the same document.
    fn agrees(source: &str) -> bool {
        match load(source) {
            None => true,
            Some(fast) => slow(source).as_ref() == Some(&fast),
        }
    }

    const RULE: &str = "title: Suspicious 'x' \"y\"\nid: 1b2c\nstatus: test\n\
        description: |\n    Two lines\n      indented\n\n    and a blank one\n\
        references:\n    - https://example.com/a#b\n    - 'q: x'\n\
        author: A, B # a comment\ndate: 2023-01-05\ntags:\n- attack.t1\n- attack.t2\n\
        logsource:\n    category: process_creation\n    product: windows\n\
        detection:\n    selection:\n        - Image|endswith: '\\x.exe'\n          \
        CommandLine|contains:\n              - ' -a '\n              - \"C:\\\\Windows\\\\\"\n\
        \x20       - OriginalFileName: x.exe\n    filter:\n        Count: 12\n        \
        Flag: true\n        Empty:\n        Null: ~\n        Neg: -3\n        Dash: '-'\n    \
        condition: selection and not filter\n# trailing comment\nlevel: high\n";

    #[test]
    fn reads_a_rule_as_yaml_rust2_does() {
        let fast = load(RULE).expect("in the subset");
        assert_eq!(Some(fast.clone()), slow(RULE));
        assert_eq!(fast["detection"]["filter"]["Count"], Yaml::Integer(12));
        assert_eq!(
            fast["description"].as_str(),
            Some("Two lines\n  indented\n\nand a blank one\n")
        );
    }

    #[test]
    fn leaves_what_it_does_not_know_to_yaml_rust2() {
        for text in [
            "a: [1, 2]\n",
            "a: {b: 1}\n",
            "a: &x 1\n",
            "a: *x\n",
            "a: !!str 1\n",
            "a: >\n  folded\n",
            "a: |+\n  kept\n",
            "a: 'open\n  quote'\n",
            "a: plain\n  continued\n",
            "a: \"\\x41\"\n",
            "a:\tb\n",
            "a: 1\r\nb: 2\r\n",
            "a: 1\na: 2\n",
            "---\na: 1\n",
            "a: 1\n---\nb: 2\n",
            "'a': 1\n",
            "- a\n- b\n",
            "a: b: c\n",
            "a:\n  - - x\n",
            "",
            "# only a comment\n",
            "\u{feff}a: 1\n",
        ] {
            assert_eq!(load(text), None, "{text:?}");
        }
    }

    #[test]
    fn nesting_past_the_bound_is_left_to_yaml_rust2() {
        let deep = (0..40)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect::<String>()
            + &"  ".repeat(40)
            + "v: 1\n";
        assert_eq!(load(&deep), None);
        assert!(super::super::yaml::load(&deep).is_err());
    }

    /// Random edits of a text: one to three characters that YAML cares
    /// about inserted, deleted or replaced (xorshift, fixed seed).
    struct Mutator(u64);

    impl Mutator {
        fn next(&mut self, m: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % m as u64) as usize
        }

        fn mutate(&mut self, source: &str) -> String {
            const ALPHABET: &[char] = &[
                ' ', ':', '-', '#', '\'', '"', '|', '>', '\n', '[', ']', '{', '}', '\\', '&', '*',
                '!', '?', ',', '%', '@', '`', 'x', '1', '.', '\u{e9}',
            ];
            let mut text: Vec<char> = source.chars().collect();
            for _ in 0..1 + self.next(3) {
                let at = self.next(text.len().max(1)).min(text.len());
                let c = ALPHABET[self.next(ALPHABET.len())];
                match self.next(3) {
                    0 => text.insert(at, c),
                    _ if at == text.len() => {}
                    1 => {
                        text.remove(at);
                    }
                    _ => text[at] = c,
                }
            }
            text.into_iter().collect()
        }
    }

    /// Whatever the subset reads of a mutated rule, yaml-rust2 reads the
    /// same way (and it reads it only where yaml-rust2 reads it at all).
    #[test]
    fn agrees_with_yaml_rust2_on_mutated_rules() {
        let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
        let mut read = 0;
        for _ in 0..3000 {
            let text = m.mutate(RULE);
            assert!(agrees(&text), "disagree on:\n{text}");
            read += usize::from(load(&text).is_some());
        }
        // Most edits stay in the subset: the comparison is not vacuous.
        eprintln!("{read} of 3000 mutated rules read by the subset");
        assert!(read > 1000, "{read}");
    }

    /// Every rule of SigmaHQ's set that `../shared` holds, and three
    /// mutations of each: both readers agree, and nearly all rules are
    /// read by the subset. (Run once with 60 mutations per rule: 134,000
    /// texts, 77,000 of them read by the subset, no disagreement.)
    #[test]
    fn agrees_with_yaml_rust2_on_sigmahq() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/sigma");
        if !root.exists() {
            // CI's run has ../shared: a skip there would pass unseen.
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is absent and CI is set: the CI run must have it",
                root.display()
            );
            eprintln!("skipped: {} is absent", root.display());
            return;
        }
        let (mut total, mut read) = (0, 0);
        let mut m = Mutator(0x1234_5678_9abc_def1);
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "yml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for _ in 0..3 {
                        let mutated = m.mutate(&text);
                        assert!(agrees(&mutated), "disagree on:\n{mutated}");
                    }
                    total += 1;
                    if let Some(fast) = load(&text) {
                        read += 1;
                        assert_eq!(slow(&text), Some(fast), "{}", path.display());
                    }
                }
            }
        }
        eprintln!("{read} of {total} SigmaHQ rules read by the subset");
        assert!(total >= 2000, "{total}");
        assert!(read * 100 >= total * 98, "{read} of {total}");
    }
}
