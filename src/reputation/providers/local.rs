//! The local allow/deny list: a CSV the admin edits
//! (`lookups/sysmonenrich_reputation_local.csv` in the app).
//!
//! ```text
//! hash,verdict,label,comment
//! 0661d87116f44cbd5b5c6bec7fb06c4e5cd5b6ecbc5455d959e65f1ee46c54c8,malicious,AgentTesla,seen in IR-42
//! DA39A3EE5E6B4B0D3255BFEF95601890AFD80709,known_good,empty file,
//! ```
//!
//! - `hash`: MD5, SHA-1 or SHA-256 in any case (the width decides);
//!   a file matches when any of its hashes is listed;
//! - `verdict`: `malicious` (deny), `suspicious`, `known_good` (allow);
//! - `label` is shown as `rep_label`; `comment` is for people.
//!
//! Columns are found by header name, so extra columns (and Splunk's own
//! lookup editor re-ordering them) do no harm. A bad row is skipped with a
//! warning that names its line; one bad row never disables the list. When a
//! file is listed twice (say by MD5 and by SHA-256) with different
//! verdicts, the stronger verdict wins (deny over allow).

use crate::reputation::lookup::LookupKey;
use crate::reputation::verdict::{Finding, Verdict};
use crate::sysmon::hashes::FileHashes;
use std::collections::HashMap;
use std::path::Path;

/// The list could not be used at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalListError {
    /// The file could not be opened or read.
    #[error("cannot read the local reputation list {path}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The header has no `hash` or no `verdict` column.
    #[error(
        "{path}: the header must name the columns hash and verdict (hash,verdict,label,comment)"
    )]
    Header {
        /// The file.
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    verdict: Verdict,
    label: Option<String>,
}

/// The parsed list.
#[derive(Debug, Clone, Default)]
pub struct LocalList {
    entries: HashMap<LookupKey, Entry>,
    problems: Vec<String>,
}

impl LocalList {
    /// Loads the list at `path`; each skipped row is logged as a warning
    /// and kept in [`LocalList::problems`].
    pub fn from_path(path: &Path) -> Result<LocalList, LocalListError> {
        let origin = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| LocalListError::Io {
            path: origin.clone(),
            source,
        })?;
        LocalList::from_reader(file, &origin)
    }

    /// Parses a list; `origin` names it in warnings.
    ///
    /// Line by line rather than as one CSV stream: a row is one line (a
    /// hash list has no multi-line cells), so a warning can name the exact
    /// line, a `#` comment can never open a quote that swallows the rows
    /// after it, and a UTF-8 BOM (Excel) does not hide the header.
    pub fn from_reader(
        mut reader: impl std::io::Read,
        origin: &str,
    ) -> Result<LocalList, LocalListError> {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| LocalListError::Io {
                path: origin.to_string(),
                source,
            })?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut rows = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let header_error = || LocalListError::Header {
            path: origin.to_string(),
        };
        let headers = rows
            .next()
            .and_then(|(_, l)| split(l))
            .ok_or_else(header_error)?;
        let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(hash_col), Some(verdict_col)) = (column("hash"), column("verdict")) else {
            return Err(header_error());
        };
        let label_col = column("label");
        let mut list = LocalList::default();
        for (line, text) in rows {
            let Some(record) = split(text) else {
                list.problem(origin, line, "not a valid CSV row");
                continue;
            };
            let field = |i: usize| record.get(i).unwrap_or("");
            let Some(key) = LookupKey::parse_hex(field(hash_col)) else {
                list.problem(origin, line, "hash is not an MD5, SHA-1 or SHA-256 in hex");
                continue;
            };
            let verdict = match field(verdict_col).to_ascii_lowercase().as_str() {
                "malicious" => Verdict::Malicious,
                "suspicious" => Verdict::Suspicious,
                "known_good" => Verdict::KnownGood,
                _ => {
                    list.problem(
                        origin,
                        line,
                        "verdict must be malicious, suspicious or known_good",
                    );
                    continue;
                }
            };
            let label = label_col
                .map(field)
                .filter(|l| !l.is_empty())
                .map(str::to_string);
            match list.entries.get(&key) {
                Some(old) if old.verdict.rank() >= verdict.rank() => {}
                _ => {
                    list.entries.insert(key, Entry { verdict, label });
                }
            }
        }
        Ok(list)
    }

    fn problem(&mut self, origin: &str, line: u64, what: &str) {
        let text = format!("{origin}: line {line}: {what}; row skipped");
        log::warn!("{text}");
        self.problems.push(text);
    }

    /// Rows that were skipped, one text each (naming the line).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Listed hashes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The strongest entry matching any hash of the file.
    pub fn lookup(&self, file: &FileHashes) -> Option<Finding> {
        LookupKey::all_of(file)
            .filter_map(|k| self.entries.get(&k))
            .max_by_key(|e| e.verdict.rank())
            .map(|e| Finding {
                label: e.label.clone(),
                ..Finding::new(e.verdict)
            })
    }
}

/// One CSV line as trimmed fields; `None` when it is not valid CSV (an
/// unclosed quote, for instance).
fn split(line: &str) -> Option<csv::StringRecord> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match rdr.read_record(&mut record) {
        // The reader accepts an unclosed quote up to the end of input.
        Ok(true) if line.matches('"').count().is_multiple_of(2) => Some(record),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "0661D87116F44CBD5B5C6BEC7FB06C4E5CD5B6ECBC5455D959E65F1EE46C54C8";
    const MD5: &str = "596b3dbf07a287dcf76860b5e54762c3";
    const SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";

    fn list(text: &str) -> LocalList {
        LocalList::from_reader(text.as_bytes(), "list.csv").unwrap()
    }

    #[test]
    fn any_hash_kind_any_case_strongest_wins() {
        let l = list(&format!(
            "hash,verdict,label,comment\n{MD5},known_good,,\n{SHA256},malicious,AgentTesla,IR-42\n{},KNOWN_GOOD,empty file,\n",
            SHA1.to_uppercase()
        ));
        assert_eq!(l.len(), 3);
        assert!(l.problems().is_empty());
        let file = FileHashes::parse_sysmon(format!("MD5={MD5},SHA256={SHA256}").as_bytes());
        let f = l.lookup(&file).unwrap();
        assert_eq!(
            (f.verdict, f.label.as_deref()),
            (Verdict::Malicious, Some("AgentTesla"))
        );
        let empty = FileHashes::parse_sysmon(format!("SHA1={SHA1}").as_bytes());
        assert_eq!(l.lookup(&empty).unwrap().verdict, Verdict::KnownGood);
        assert!(l.lookup(&FileHashes::default()).is_none());
    }

    #[test]
    fn bad_rows_are_skipped_with_their_line() {
        let l = list(&format!(
            "hash,verdict,label,comment\n# a comment\nnothex,malicious,,\n{MD5},evil,,\n\n{SHA1},suspicious\n"
        ));
        assert_eq!(l.len(), 1);
        assert_eq!(l.problems().len(), 2);
        assert!(
            l.problems()[0].starts_with("list.csv: line 3: hash"),
            "{:?}",
            l.problems()
        );
        assert!(
            l.problems()[1].starts_with("list.csv: line 4: verdict"),
            "{:?}",
            l.problems()
        );
    }

    #[test]
    fn columns_by_name_and_header_required() {
        let l = list(&format!(
            "\u{feff}comment,Verdict,HASH\r\n\"a, b\",malicious,{MD5}\r\n\"open,malicious,{SHA1}\n"
        ));
        assert_eq!(l.len(), 1);
        assert_eq!(l.problems().len(), 1);
        assert!(matches!(
            LocalList::from_reader("md5,verdict\n".as_bytes(), "x.csv"),
            Err(LocalListError::Header { .. })
        ));
    }
}
