//! The layering map in `src/lib.rs` is the source of truth: every module
//! may use only modules drawn below it, and modules drawn side by side
//! (the `►` branches from `main.rs`) not each other. This test reads the
//! map from lib.rs, reads every `crate::…` path in `src/` and fails naming
//! each import that points up or sideways, so the map cannot drift from
//! the code again (issue 17 found a loop of folders the map did not show).
//!
//! An entry may name a file inside a folder (`config::conf`): that file is
//! then its own node, drawn where its own imports allow, and paths into it
//! count for it, not for the folder.
//!
//! Comments are skipped (a doc link is no dependency). `super::` is
//! followed only out of a file that is a node of its own, where it could
//! reach its folder: elsewhere it stays inside the top-level module.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// One node of the map: a module path and its rank (0 = the top).
#[derive(Debug)]
struct Entry {
    path: Vec<String>,
    rank: usize,
}

/// Column before which a map line's first word is an entry; descriptions
/// and their continuation lines start further right.
const ENTRY_COLUMN: usize = 16;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `text` block of lib.rs's `# Layout` section, as entries in order.
fn read_map(lib: &str) -> Vec<Entry> {
    let docs: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let layout = docs
        .iter()
        .position(|l| l.trim() == "# Layout")
        .expect("lib.rs has a `# Layout` section");
    let open = layout
        + docs[layout..]
            .iter()
            .position(|l| l.trim() == "```text")
            .expect("the Layout section draws the map in a ```text block");
    let close = open
        + 1
        + docs[open + 1..]
            .iter()
            .position(|l| l.trim() == "```")
            .expect("the map's block is closed");
    let mut entries = Vec::new();
    let mut rank = 0;
    let mut in_branch = false;
    for line in &docs[open + 1..close] {
        let line = line.strip_prefix("main.rs").unwrap_or(line);
        let branch = line.contains('►');
        let start = line
            .char_indices()
            .find(|(_, c)| !matches!(c, ' ' | '─' | '┬' | '├' | '└' | '►' | '│'))
            .map(|(i, _)| i);
        let Some(start) = start else { continue };
        if line[..start].chars().count() >= ENTRY_COLUMN {
            continue;
        }
        let word = line[start..].split_whitespace().next().unwrap_or("");
        let is_path = !word.is_empty()
            && word
                .split("::")
                .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        if !is_path {
            continue;
        }
        // Consecutive branches share a rank: side by side, not above.
        let beside = branch && in_branch;
        if !beside && !entries.is_empty() {
            rank += 1;
        }
        in_branch = branch;
        entries.push(Entry {
            path: word.split("::").map(str::to_string).collect(),
            rank,
        });
    }
    entries
}

/// The top-level modules lib.rs declares.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// The map entry a module path belongs to: the longest one it starts with.
fn node_of<'a>(entries: &'a [Entry], path: &[String]) -> Option<&'a Entry> {
    entries
        .iter()
        .filter(|e| path.starts_with(&e.path))
        .max_by_key(|e| e.path.len())
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/config/conf.rs` → `config::conf`; `src/enrich/mod.rs` → `enrich`.
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut path: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// The code of a file without its comments (line comments; the project
/// writes no block comments around imports).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifier path starting at `text` (`a::b::C` → `[a, b, C]`),
/// expanding one level of braces (`a::{b, c::D}` → `[a, b]`, `[a, c, D]`).
fn paths_at(text: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> usize {
        s.bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or(s.len())
    };
    let mut prefix = Vec::new();
    let mut rest = text;
    loop {
        let n = ident(rest);
        if n == 0 {
            break;
        }
        prefix.push(rest[..n].to_string());
        rest = &rest[n..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![prefix],
        }
    }
    if let Some(inner) = rest.strip_prefix('{') {
        let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
        return inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .flat_map(|s| {
                paths_at(s).into_iter().map(|p| {
                    let mut whole = prefix.clone();
                    whole.extend(p);
                    whole
                })
            })
            .collect();
    }
    vec![prefix]
}

/// The module paths a file's code names, each as a path from the crate
/// root (`crate::` always; `super::` as the module docs say).
fn imports(file_path: &[String], own_node: bool, text: &str) -> Vec<Vec<String>> {
    let code = code(text);
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        out.extend(paths_at(&code[i + "crate::".len()..]));
    }
    if own_node {
        for (i, _) in code.match_indices("super::") {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut rest = &code[i..];
            let mut base = file_path.to_vec();
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            // `use super::*`: the idiom of a file's inline tests.
            if rest.starts_with('*') {
                continue;
            }
            for p in paths_at(rest) {
                let mut whole = base.clone();
                whole.extend(p);
                out.push(whole);
            }
        }
    }
    out
}

#[test]
fn every_import_points_down_the_map() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let entries = read_map(&lib);
    assert!(!entries.is_empty(), "no map found in src/lib.rs");

    // Every module is drawn, once; every node drawn exists.
    let declared = declared_modules(&lib);
    let mut drawn: HashMap<Vec<String>, usize> = HashMap::new();
    for e in &entries {
        *drawn.entry(e.path.clone()).or_default() += 1;
    }
    for (path, n) in &drawn {
        assert_eq!(*n, 1, "`{}` is drawn {n} times", path.join("::"));
        assert!(
            declared.contains(&path[0]),
            "the map draws `{}`, which lib.rs does not declare",
            path.join("::")
        );
        let file = path.iter().fold(src(), |p, s| p.join(s));
        assert!(
            file.with_extension("rs").is_file() || file.join("mod.rs").is_file(),
            "the map draws `{}`, which has no file",
            path.join("::")
        );
    }
    for module in &declared {
        assert!(
            drawn.contains_key(&vec![module.clone()]),
            "lib.rs declares `{module}` but the map does not draw it"
        );
    }

    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let path = module_path(file);
        if path.is_empty() || path == ["lib"] || path == ["main"] {
            continue;
        }
        let Some(from) = node_of(&entries, &path) else {
            panic!("{} belongs to no module of the map", file.display());
        };
        let own_node = from.path.len() > 1;
        let text = fs::read_to_string(file).unwrap();
        for import in imports(&path, own_node, &text) {
            let Some(to) = node_of(&entries, &import) else {
                continue;
            };
            if std::ptr::eq(to, from) || to.rank > from.rank {
                continue;
            }
            wrong.push(format!(
                "{}: `{}` (drawn at level {}) uses `{}` (level {}): {}",
                file.strip_prefix(src().parent().unwrap())
                    .unwrap()
                    .display(),
                from.path.join("::"),
                from.rank,
                to.path.join("::"),
                to.rank,
                import.join("::")
            ));
        }
    }
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways in the map of src/lib.rs:\n{}",
        wrong.join("\n")
    );
}

/// Two seams a total order cannot state, because the map draws `lineage`
/// low (it is pure) and `config` above `splunk` (its settings hold the
/// reputation settings, which reach splunkd): the REST client knows no
/// engine, and settings do not reach into the client (issue 17).
#[test]
fn the_rest_client_knows_no_engine_and_settings_no_client() {
    let forbidden: [(&str, &[&str]); 2] = [
        ("splunk", &["lineage", "enrich", "sigma"]),
        ("config", &["splunk"]),
    ];
    let mut wrong = Vec::new();
    for (from, targets) in forbidden {
        let mut files = Vec::new();
        let dir = src().join(from);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(dir.with_extension("rs"));
        }
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for import in imports(&module_path(&file), false, &text) {
                if targets.contains(&import[0].as_str()) {
                    wrong.push(format!("{}: {}", file.display(), import.join("::")));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports across a seam:\n{}",
        wrong.join("\n")
    );
}

/// The parser itself, on a map drawn here: ranks, branches, entries vs
/// description lines, and paths with braces.
#[test]
fn the_map_parser_reads_what_it_should() {
    let lib = "//! # Layout\n//!\n//! ```text\n\
               //! main.rs ─┬► cli          the CLI\n\
               //!          └► command      the protocol\n\
               //!               (neither imports the other; both drive:)\n\
               //!             enrich       the engine: state and lineage\n\
               //!                          config and more words\n\
               //!             config::conf the parser\n\
               //! ```\n";
    let map = read_map(lib);
    let got: Vec<(String, usize)> = map.iter().map(|e| (e.path.join("::"), e.rank)).collect();
    assert_eq!(
        got,
        [
            ("cli".to_string(), 0),
            ("command".to_string(), 0),
            ("enrich".to_string(), 1),
            ("config::conf".to_string(), 2)
        ]
    );
    let conf = vec!["config".to_string(), "conf".to_string(), "X".to_string()];
    assert_eq!(
        node_of(&map, &conf).unwrap().path.join("::"),
        "config::conf"
    );
    assert_eq!(
        paths_at("a::{b, c::D}; x"),
        [vec!["a", "b"], vec!["a", "c", "D"]]
    );
    let file = ["config".to_string(), "conf".to_string()];
    let found = imports(
        &file,
        true,
        "use super::settings::X; // crate::cli\nuse super::*;",
    );
    assert_eq!(found, [vec!["config", "settings", "X"]]);
}
