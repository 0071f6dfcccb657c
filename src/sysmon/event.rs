//! From a result row to an [`Event`].
//!
//! Every logical input has a list of candidate field names, tried in order
//! per row ("first non-empty wins"), because a merged result set mixes
//! event types: an EventCode 1 row fills `Image`, an EventCode 10 row fills
//! `SourceImage`, and CIM-only data fills neither but has `process_path`.

use super::guid::ProcessGuid;
use super::hashes::{FileHashes, Md5, Sha1, Sha256};
use super::xml::{self, XmlEvent};
use std::borrow::Cow;

/// Candidate field names for each input, in priority order. The defaults
/// are DESIGN §2's table; options (`guid_field=` …) replace single entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldNames {
    /// EventCode.
    pub event_code: Vec<String>,
    /// Acting process GUID (all codes but 8/10).
    pub guid: Vec<String>,
    /// Acting (source) process GUID for EventCode 8 and 10.
    pub source_guid: Vec<String>,
    /// Parent GUID (EventCode 1).
    pub parent_guid: Vec<String>,
    /// Acting process image (all codes but 8/10).
    pub image: Vec<String>,
    /// Acting (source) image for EventCode 8 and 10.
    pub source_image: Vec<String>,
    /// Parent image (EventCode 1).
    pub parent_image: Vec<String>,
    /// Command line (EventCode 1).
    pub command_line: Vec<String>,
    /// Parent command line (EventCode 1).
    pub parent_command_line: Vec<String>,
    /// Sysmon-style `NAME=hex,…` hash strings.
    pub hashes: Vec<String>,
    /// Pre-split MD5 column.
    pub md5: Vec<String>,
    /// Pre-split SHA1 column.
    pub sha1: Vec<String>,
    /// Pre-split SHA256 column.
    pub sha256: Vec<String>,
    /// Pre-split IMPHASH column.
    pub imphash: Vec<String>,
    /// Host.
    pub host: Vec<String>,
    /// Event time (epoch seconds).
    pub time: Vec<String>,
    /// The raw event, parsed when the fields above are missing.
    pub raw: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            event_code: names(&["EventCode", "EventID"]),
            guid: names(&["ProcessGuid", "process_guid"]),
            // CIM's parent_process_guid is the *source* process for 8/10.
            source_guid: names(&[
                "SourceProcessGuid",
                "SourceProcessGUID",
                "parent_process_guid",
            ]),
            parent_guid: names(&["ParentProcessGuid", "parent_process_guid"]),
            image: names(&["Image", "process_path"]),
            source_image: names(&["SourceImage", "parent_process_path"]),
            parent_image: names(&["ParentImage", "parent_process_path"]),
            command_line: names(&["CommandLine", "process"]),
            parent_command_line: names(&["ParentCommandLine", "parent_process"]),
            hashes: names(&["Hashes", "Hash", "process_hash"]),
            md5: names(&["MD5"]),
            sha1: names(&["SHA1"]),
            sha256: names(&["SHA256"]),
            imphash: names(&["IMPHASH"]),
            host: names(&["Computer", "dest", "host"]),
            time: names(&["_time"]),
            raw: names(&["_raw"]),
        }
    }
}

/// Which user override replaces which candidate list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldOverrides {
    /// `guid_field=`: the acting process GUID for every EventCode.
    pub guid: Option<String>,
    /// `parent_guid_field=`.
    pub parent_guid: Option<String>,
    /// `image_field=`.
    pub image: Option<String>,
    /// `hashes_field=`: a Sysmon-style hash string; disables the other hash sources.
    pub hashes: Option<String>,
}

impl FieldOverrides {
    /// True when any field name is overridden.
    pub fn any(&self) -> bool {
        self.guid.is_some()
            || self.parent_guid.is_some()
            || self.image.is_some()
            || self.hashes.is_some()
    }
}

impl FieldNames {
    /// Defaults with the user's overrides applied.
    pub fn with_overrides(o: &FieldOverrides) -> FieldNames {
        let mut n = FieldNames::default();
        if let Some(f) = &o.guid {
            n.guid = vec![f.clone()];
            n.source_guid = vec![f.clone()];
        }
        if let Some(f) = &o.parent_guid {
            n.parent_guid = vec![f.clone()];
        }
        if let Some(f) = &o.image {
            n.image = vec![f.clone()];
            n.source_image = vec![f.clone()];
        }
        if let Some(f) = &o.hashes {
            n.hashes = vec![f.clone()];
            n.md5.clear();
            n.sha1.clear();
            n.sha256.clear();
            n.imphash.clear();
        }
        n
    }

    fn lists(&self) -> [&Vec<String>; 16] {
        [
            &self.event_code,
            &self.guid,
            &self.source_guid,
            &self.parent_guid,
            &self.image,
            &self.source_image,
            &self.parent_image,
            &self.command_line,
            &self.parent_command_line,
            &self.hashes,
            &self.md5,
            &self.sha1,
            &self.sha256,
            &self.imphash,
            &self.host,
            &self.time,
        ]
    }

    /// Every field the command reads, for getinfo's `required_fields`
    /// (`_raw` only when asked: it is by far the largest field).
    pub fn required(&self, with_raw: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let raw = if with_raw { Some(&self.raw) } else { None };
        for list in self.lists().into_iter().chain(raw) {
            for name in list {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        out
    }
}

/// Column indices of the candidates in one body's header.
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    event_code: Vec<usize>,
    guid: Vec<usize>,
    source_guid: Vec<usize>,
    parent_guid: Vec<usize>,
    image: Vec<usize>,
    source_image: Vec<usize>,
    parent_image: Vec<usize>,
    command_line: Vec<usize>,
    parent_command_line: Vec<usize>,
    hashes: Vec<usize>,
    md5: Vec<usize>,
    sha1: Vec<usize>,
    sha256: Vec<usize>,
    imphash: Vec<usize>,
    host: Vec<usize>,
    time: Vec<usize>,
    raw: Vec<usize>,
}

/// Read access to one row's cells by column index: a parsed body row or a
/// `csv::ByteRecord`, so this module stays free of any CSV reader.
pub trait Row {
    /// Cell `i`, `None` past the end.
    fn get(&self, i: usize) -> Option<&[u8]>;
}

impl Row for csv::ByteRecord {
    fn get(&self, i: usize) -> Option<&[u8]> {
        csv::ByteRecord::get(self, i)
    }
}

/// One event, as far as lineage and reputation care.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event<'a> {
    /// Sysmon EventCode.
    pub code: Option<u32>,
    /// The process that acted (for 8/10: the source process).
    pub guid: Option<ProcessGuid>,
    /// Its parent (process creation only).
    pub parent_guid: Option<ProcessGuid>,
    /// The acting process's image.
    pub image: Cow<'a, [u8]>,
    /// Parent image (process creation only).
    pub parent_image: Cow<'a, [u8]>,
    /// Command line (process creation only).
    pub command_line: Cow<'a, [u8]>,
    /// Parent command line (process creation only).
    pub parent_command_line: Cow<'a, [u8]>,
    /// Host the event came from.
    pub host: Cow<'a, [u8]>,
    /// Epoch seconds, 0 when unknown.
    pub time: f64,
    /// The file hashes the event carries.
    pub hashes: FileHashes,
}

impl Event<'_> {
    /// True for a process creation (EventCode 1; or no EventCode but a
    /// parent GUID, as CIM-only data looks).
    pub fn is_process_creation(&self) -> bool {
        match self.code {
            Some(c) => c == 1,
            None => self.parent_guid.is_some(),
        }
    }
}

/// EventCodes whose acting process is the *source* of an access.
fn is_source_code(code: Option<u32>) -> bool {
    matches!(code, Some(8) | Some(10))
}

/// Takes the first line of a cell: GUIDs and codes are single values, and a
/// multivalue cell (values joined by `\n`) should not make them unreadable.
fn first_line(v: &[u8]) -> &[u8] {
    match memchr::memchr(b'\n', v) {
        Some(i) => &v[..i],
        None => v,
    }
}

/// The first non-empty value among `cols` (a field may come under several
/// names: Sysmon's, CIM's), or empty.
fn first_value<'r, R: Row + ?Sized>(row: &'r R, cols: &[usize]) -> &'r [u8] {
    cols.iter()
        .filter_map(|&i| row.get(i))
        .find(|v| !v.is_empty())
        .unwrap_or(b"")
}

fn parse_code(v: &[u8]) -> Option<u32> {
    let v = first_line(v).trim_ascii();
    if v.is_empty() || v.len() > 9 {
        return None;
    }
    v.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

fn parse_time(v: &[u8]) -> f64 {
    std::str::from_utf8(first_line(v).trim_ascii())
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .unwrap_or(0.0)
}

impl FieldMap {
    /// Resolves candidate names against a header (`position` maps a name to
    /// its column).
    pub fn new(names: &FieldNames, position: impl Fn(&[u8]) -> Option<usize>) -> FieldMap {
        let idx = |list: &Vec<String>| -> Vec<usize> {
            list.iter().filter_map(|n| position(n.as_bytes())).collect()
        };
        FieldMap {
            event_code: idx(&names.event_code),
            guid: idx(&names.guid),
            source_guid: idx(&names.source_guid),
            parent_guid: idx(&names.parent_guid),
            image: idx(&names.image),
            source_image: idx(&names.source_image),
            parent_image: idx(&names.parent_image),
            command_line: idx(&names.command_line),
            parent_command_line: idx(&names.parent_command_line),
            hashes: idx(&names.hashes),
            md5: idx(&names.md5),
            sha1: idx(&names.sha1),
            sha256: idx(&names.sha256),
            imphash: idx(&names.imphash),
            host: idx(&names.host),
            time: idx(&names.time),
            raw: idx(&names.raw),
        }
    }

    /// The hashes of one row: exactly `self.event(row).hashes`, without
    /// reading what only lineage needs (GUIDs, times, images) when the row
    /// has an EventCode and hash fields, as most hashed rows do. For
    /// `lineage=false`, where that reading was a fifth of the work.
    pub fn hashes_of<R: Row + ?Sized>(&self, row: &R) -> FileHashes {
        let code = parse_code(first_value(row, &self.event_code));
        let hashes = self.read_hashes(row);
        if code.is_some() && !hashes.is_empty() {
            return hashes;
        }
        // The full reading decides whether `_raw` has to be consulted.
        self.event(row).hashes
    }

    /// The row's `_raw` (empty when absent).
    pub fn raw<'r, R: Row + ?Sized>(&self, row: &'r R) -> &'r [u8] {
        first_value(row, &self.raw)
    }

    /// The hash fields of one row (no `_raw`).
    fn read_hashes<R: Row + ?Sized>(&self, row: &R) -> FileHashes {
        let get = |cols: &[usize]| first_value(row, cols);
        // `Hashes`, `Hash` and CIM `process_hash` usually hold the same
        // string: parse each distinct one once, and only while an
        // algorithm is still missing.
        let mut hashes = FileHashes::default();
        let mut parsed: Option<&[u8]> = None;
        for &i in &self.hashes {
            if hashes.is_complete() {
                break;
            }
            if let Some(v) = row.get(i).filter(|v| !v.is_empty()) {
                if parsed != Some(v) {
                    hashes.fill_from(&FileHashes::parse_sysmon(v));
                    parsed = Some(v);
                }
            }
        }
        if hashes.md5.is_none() {
            hashes.md5 = Md5::parse(get(&self.md5));
        }
        if hashes.sha1.is_none() {
            hashes.sha1 = Sha1::parse(get(&self.sha1));
        }
        if hashes.sha256.is_none() {
            hashes.sha256 = Sha256::parse(get(&self.sha256));
        }
        if hashes.imphash.is_none() {
            hashes.imphash = Md5::parse(get(&self.imphash));
        }
        hashes
    }

    /// Reads one row.
    pub fn event<'r, R: Row + ?Sized>(&self, row: &'r R) -> Event<'r> {
        let get = |cols: &[usize]| first_value(row, cols);
        let code = parse_code(get(&self.event_code));
        let source = is_source_code(code);
        let guid = if source {
            ProcessGuid::parse(first_line(get(&self.source_guid)))
        } else {
            ProcessGuid::parse(first_line(get(&self.guid)))
        };
        let creation = code == Some(1) || code.is_none();
        let parent_guid = if creation {
            ProcessGuid::parse(first_line(get(&self.parent_guid)))
        } else {
            None
        };
        let hashes = self.read_hashes(row);
        let empty: &[u8] = b"";
        let mut event = Event {
            code,
            guid,
            parent_guid,
            image: Cow::Borrowed(if source {
                get(&self.source_image)
            } else {
                get(&self.image)
            }),
            parent_image: Cow::Borrowed(if creation {
                get(&self.parent_image)
            } else {
                empty
            }),
            command_line: Cow::Borrowed(if creation {
                get(&self.command_line)
            } else {
                empty
            }),
            parent_command_line: Cow::Borrowed(if creation {
                get(&self.parent_command_line)
            } else {
                empty
            }),
            host: Cow::Borrowed(get(&self.host)),
            // Only process creations keep a time (float parsing is dear).
            time: if creation {
                parse_time(get(&self.time))
            } else {
                0.0
            },
            hashes,
        };
        if code.is_none() || (event.guid.is_none() && event.hashes.is_empty()) {
            let raw = get(&self.raw);
            if !raw.is_empty() {
                if let Some(x) = xml::parse_event_xml(raw) {
                    event.fill_from_xml(&x);
                }
            }
        }
        event
    }
}

impl Event<'_> {
    /// Fills what the fields did not give from the parsed `_raw`.
    pub fn fill_from_xml(&mut self, x: &XmlEvent) {
        let get = |names: &[&str]| -> Option<&str> {
            names
                .iter()
                .filter_map(|n| x.get(n))
                .find(|v| !v.is_empty())
        };
        let owned = |v: Option<&str>| Cow::Owned(v.unwrap_or("").as_bytes().to_vec());
        if self.code.is_none() {
            self.code = x.event_id;
        }
        let source = is_source_code(self.code);
        let creation = self.code == Some(1);
        if self.guid.is_none() {
            let names: &[&str] = if source {
                &["SourceProcessGuid", "SourceProcessGUID"]
            } else {
                &["ProcessGuid"]
            };
            self.guid = get(names).and_then(|v| ProcessGuid::parse(v.as_bytes()));
        }
        if creation && self.parent_guid.is_none() {
            self.parent_guid =
                get(&["ParentProcessGuid"]).and_then(|v| ProcessGuid::parse(v.as_bytes()));
        }
        if self.image.is_empty() {
            self.image = owned(get(if source { &["SourceImage"] } else { &["Image"] }));
        }
        if creation {
            if self.parent_image.is_empty() {
                self.parent_image = owned(get(&["ParentImage"]));
            }
            if self.command_line.is_empty() {
                self.command_line = owned(get(&["CommandLine"]));
            }
            if self.parent_command_line.is_empty() {
                self.parent_command_line = owned(get(&["ParentCommandLine"]));
            }
        }
        if self.host.is_empty() {
            self.host = owned(x.computer.as_deref());
        }
        if self.hashes.is_empty() {
            if let Some(v) = get(&["Hashes", "Hash"]) {
                self.hashes = FileHashes::parse_sysmon(v.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of(header: &[&str], row: &[&str]) -> Event<'static> {
        let map = FieldMap::new(&FieldNames::default(), |n| {
            header.iter().position(|h| h.as_bytes() == n)
        });
        let rec = Box::leak(Box::new(csv::ByteRecord::from(row.to_vec())));
        map.event(rec)
    }

    #[test]
    fn process_creation_fields() {
        let e = event_of(
            &[
                "EventCode",
                "ProcessGuid",
                "ParentProcessGuid",
                "Image",
                "Hashes",
                "MD5",
            ],
            &[
                "1",
                "{747F3D96-D6ED-5D31-0000-0010C88A2500}",
                "747f3d96-d4b8-5d31-0000-0010a8ce0600",
                "C:\\cmd.exe",
                "SHA256=36562B23E3CF2F5BDE5A5B0A84DDE0AC04A4E0D4E1BB2C7C47B4B5D8CFA3A5F2",
                "975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0",
            ],
        );
        assert!(e.is_process_creation());
        assert!(e.guid.is_some() && e.parent_guid.is_some());
        assert_eq!(&*e.image, b"C:\\cmd.exe");
        assert_eq!(
            e.hashes.md5.unwrap().as_str(),
            "975b4bd9b9d3b0a9c7d6e5f4a3b2c1d0"
        );
        assert!(e.hashes.sha256.is_some());
    }

    #[test]
    fn process_access_uses_source_not_cim_target() {
        let e = event_of(
            &[
                "EventCode",
                "SourceProcessGUID",
                "SourceImage",
                "process_guid",
                "parent_process_guid",
            ],
            &[
                "10",
                "{11111111-1111-1111-1111-111111111111}",
                "C:\\mimikatz.exe",
                "{22222222-2222-2222-2222-222222222222}",
                "{11111111-1111-1111-1111-111111111111}",
            ],
        );
        assert_eq!(
            e.guid.unwrap().to_string(),
            "{11111111-1111-1111-1111-111111111111}"
        );
        assert_eq!(&*e.image, b"C:\\mimikatz.exe");
        assert!(e.parent_guid.is_none());
        // CIM only: the source is in parent_process_guid.
        let e = event_of(
            &["EventCode", "process_guid", "parent_process_guid"],
            &[
                "8",
                "{22222222-2222-2222-2222-222222222222}",
                "{11111111-1111-1111-1111-111111111111}",
            ],
        );
        assert_eq!(
            e.guid.unwrap().to_string(),
            "{11111111-1111-1111-1111-111111111111}"
        );
    }

    #[test]
    fn raw_xml_fallback() {
        let raw = "<Event><System><EventID>1</EventID><Computer>PC1</Computer></System><EventData><Data Name='ProcessGuid'>{747F3D96-D6ED-5D31-0000-0010C88A2500}</Data><Data Name='Image'>C:\\a.exe</Data><Data Name='Hashes'>MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0</Data><Data Name='ParentProcessGuid'>{00000000-0000-0000-0000-000000000000}</Data></EventData></Event>";
        let e = event_of(&["_raw", "_time"], &[raw, "1563547373.277"]);
        assert_eq!(e.code, Some(1));
        assert_eq!(&*e.host, b"PC1");
        assert_eq!(&*e.image, b"C:\\a.exe");
        assert!(e.parent_guid.unwrap().is_zero());
        assert!(e.hashes.md5.is_some());
        assert_eq!(e.time, 1563547373.277);
    }

    #[test]
    fn overrides_replace_candidates() {
        let n = FieldNames::with_overrides(&FieldOverrides {
            hashes: Some("my_hashes".into()),
            ..Default::default()
        });
        let req = n.required(false);
        assert!(req.contains(&"my_hashes".to_string()));
        assert!(!req.contains(&"MD5".to_string()));
        assert!(!req.contains(&"_raw".to_string()));
        assert!(n.required(true).contains(&"_raw".to_string()));
    }
}
