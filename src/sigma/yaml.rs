//! A rule file's YAML → one document, with bounds a hostile file cannot
//! get past.
//!
//! yaml-rust2's `YamlLoader` recurses once per nesting level (a 1 MiB file
//! of `[[[[…` overflows any stack) and expands every alias eagerly (a
//! 1 KB "billion laughs" file becomes gigabytes). So the documents are
//! built here from the parser's event stream, which is iterative: nesting
//! deeper than [`MAX_NESTING`] and any alias stop the read with a reason.
//! Sigma rules use neither (SigmaHQ's deepest is 5 levels, no aliases).

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;
use yaml_rust2::yaml::Hash;
use yaml_rust2::Yaml;

/// Deepest nesting of maps and lists accepted. Also bounds the depth of
/// every recursive walk (and drop) of the tree.
pub const MAX_NESTING: usize = 32;

/// An open map or list: the node and, for a map, the key read before
/// its value.
struct Open {
    node: Yaml,
    key: Option<Yaml>,
}

/// Parses every document of `source`: most rule files by the line reader
/// of `yaml_subset.rs`, any other with yaml-rust2's events.
pub fn load(source: &str) -> Result<Vec<Yaml>, String> {
    match super::yaml_subset::load(source) {
        Some(doc) => Ok(vec![doc]),
        None => load_events(source),
    }
}

/// Parses every document of `source` from yaml-rust2's events.
pub fn load_events(source: &str) -> Result<Vec<Yaml>, String> {
    let mut parser = Parser::new_from_str(source);
    let mut docs = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| format!("broken YAML: {e}"))?;
        let node = match event {
            Event::StreamEnd => return Ok(docs),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_NESTING {
                    return Err(format!(
                        "YAML nested deeper than {MAX_NESTING} levels (line {})",
                        mark.line()
                    ));
                }
                let node = match event {
                    Event::SequenceStart(..) => Yaml::Array(Vec::new()),
                    _ => Yaml::Hash(Hash::new()),
                };
                stack.push(Open { node, key: None });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(open) => open.node,
                None => return Err("broken YAML: unbalanced end of a map or list".into()),
            },
            Event::Scalar(text, style, _, tag) => {
                let as_text = style != TScalarStyle::Plain
                    || tag.is_some_and(|t| t.suffix == "str" || !t.handle.starts_with("tag:"));
                scalar(text, as_text)
            }
            Event::Alias(_) => {
                return Err(format!(
                    "YAML aliases are not supported (line {})",
                    mark.line()
                ))
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {
                continue
            }
        };
        match stack.last_mut() {
            None => docs.push(node),
            Some(Open {
                node: Yaml::Array(items),
                ..
            }) => items.push(node),
            Some(Open {
                node: Yaml::Hash(map),
                key,
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if map.contains_key(&k) {
                        return Err(format!(
                            "broken YAML: duplicated key {} in a map (line {})",
                            describe(&k),
                            mark.line()
                        ));
                    }
                    map.insert(k, node);
                }
            },
            Some(_) => return Err("broken YAML: a value outside a map or list".into()),
        }
    }
}

/// A scalar's node: a string when it is quoted, tagged as text or
/// `as_text` for any other reason, else read as YAML reads a plain scalar.
pub(super) fn scalar(text: String, as_text: bool) -> Yaml {
    if as_text || surely_text(&text) {
        Yaml::String(text)
    } else {
        Yaml::from_str(&text)
    }
}

/// Whether [`Yaml::from_str`] would read this plain scalar as a string:
/// what it reads otherwise (null, booleans, integers, reals) holds a
/// digit, starts with `.`, `+` or `-` (`.inf`, `-.nan`), or is one of a
/// few words. Most plain scalars of a rule (keys, `windows`, `high`) are
/// words: kept as they are, without `from_str`'s tries and copy.
fn surely_text(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with(['.', '+', '-', '~'])
        && !text.bytes().any(|b| b.is_ascii_digit())
        && !matches!(
            text,
            "null" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
        )
}

fn describe(key: &Yaml) -> String {
    match key {
        Yaml::String(s) => format!("`{}`", s.chars().take(60).collect::<String>()),
        _ => "(not text)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_yaml_loader_reads() {
        let src = "a: 1\nb: [x, 'y', 2.5, true, ~]\nc:\n  d: \"e\"\n  f: !!str 12\n";
        let ours = load(src).unwrap();
        let theirs = yaml_rust2::YamlLoader::load_from_str(src).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn plain_words_read_as_from_str_reads_them() {
        for text in [
            "",
            "~",
            "null",
            "Null",
            "true",
            "True",
            "TRUE",
            "false",
            "no",
            "yes",
            "0x1f",
            "0o17",
            "+12",
            "-3",
            "12",
            "1.5",
            "1e3",
            ".inf",
            "-.Inf",
            "+.INF",
            ".nan",
            ".NaN",
            "inf",
            "nan",
            "NaN",
            "infinity",
            "selection",
            "high",
            "windows",
            "x1",
            "a-b",
            "C:\\x",
            "é",
            "-",
            ".",
            "+",
            "_",
        ] {
            let ours = if surely_text(text) {
                Yaml::String(text.to_string())
            } else {
                Yaml::from_str(text)
            };
            assert_eq!(ours, Yaml::from_str(text), "{text:?}");
        }
        assert!(surely_text("selection") && !surely_text("null") && !surely_text("1"));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        // The scanner has its own limit on flow nesting (255 levels).
        let deep = "[".repeat(200_000) + &"]".repeat(200_000);
        let e = load(&deep).unwrap_err();
        assert!(e.contains("recursion limit"), "{e}");
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(load(&deep).unwrap_err().contains("nested deeper"));
        let maps = (0..100)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect::<String>();
        assert!(load(&maps).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn aliases_are_refused() {
        let laughs =
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n";
        assert!(load(laughs).unwrap_err().contains("aliases"));
        // An anchor alone is harmless.
        assert!(load("a: &x 1\n").is_ok());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(load("a: 1\na: 2\n").unwrap_err().contains("duplicated"));
    }
}
