//! One execute body in, the same rows with our fields out.
//!
//! The shape of the work per chunk:
//!
//! 1. read every row (into reused records) and note its byte span;
//! 2. turn each row into a [`crate::sysmon::Event`];
//! 3. run the enrichment stages over all events of the chunk (lineage must
//!    see every process creation of the chunk before it resolves any row,
//!    because splunkd sends children before parents);
//! 4. write each row: its original bytes verbatim, then our cells.
//!
//! Memory is one chunk's rows plus the stages' bounded tables.

use super::args::Options;
use super::output::{self, RowValues};
use crate::protocol::records::{push_field, BodyError, Header, RowReader};
use crate::sysmon::{Event, FieldMap, FieldNames, FileHashes};
use csv::ByteRecord;
use std::ops::Range;

/// Counters for the per-search summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Execute chunks processed.
    pub chunks: u64,
    /// Rows processed.
    pub rows: u64,
    /// Rows that carried at least one valid hash.
    pub rows_with_hashes: u64,
    /// Chunks whose body was not valid UTF-8 (passed through as bytes).
    pub non_utf8_chunks: u64,
}

/// How the columns we do not own get into the output.
#[derive(Debug, Clone)]
enum Passthrough {
    /// Copy each row's original bytes: the common case, byte-exact.
    Raw,
    /// The input carries some of our own fields (an earlier `sysmonenrich`
    /// in the pipeline): keep only these columns, ours replace the rest.
    Columns(Vec<usize>),
}

/// Per-header preparation, reused while splunkd keeps sending the same
/// header (it does, chunk after chunk).
struct Layout {
    header: Header,
    fields: FieldMap,
    passthrough: Passthrough,
}

/// The per-search enrichment engine.
pub struct Enricher {
    options: Options,
    names: FieldNames,
    max_field: usize,
    layout: Option<Layout>,
    records: Vec<ByteRecord>,
    spans: Vec<Range<usize>>,
    values: RowValues,
    scratch: Vec<u8>,
    stats: Stats,
}

impl Enricher {
    /// A fresh engine for one search.
    pub fn new(options: Options, max_field: usize) -> Enricher {
        let names = FieldNames::with_overrides(&options.fields);
        Enricher {
            options,
            names,
            max_field,
            layout: None,
            records: Vec::new(),
            spans: Vec::new(),
            values: RowValues::default(),
            scratch: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What getinfo must ask splunkd to send.
    pub fn required_fields(&self) -> Vec<String> {
        self.names.required(self.options.raw)
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Enriches one body into `out` (cleared first). A body without rows
    /// gives an empty `out`.
    pub fn process(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), BodyError> {
        out.clear();
        self.stats.chunks += 1;
        if std::str::from_utf8(body).is_err() {
            self.stats.non_utf8_chunks += 1;
        }
        let Some(mut reader) = RowReader::new(body, self.max_field)? else {
            return Ok(());
        };
        if self.layout.as_ref().map(|l| &l.header) != Some(reader.header()) {
            self.layout = Some(prepare(reader.header().clone(), &self.names));
        }
        let n = self.read_rows(&mut reader)?;
        if n == 0 {
            return Ok(());
        }
        let Some(layout) = self.layout.as_ref() else {
            return Ok(());
        };
        let events: Vec<Event<'_>> = self.records[..n]
            .iter()
            .map(|r| layout.fields.event(r))
            .collect();

        write_header(out, layout);
        for (i, event) in events.iter().enumerate() {
            self.values.clear();
            if !event.hashes.is_empty() {
                self.stats.rows_with_hashes += 1;
            }
            set_hash_fields(&mut self.values, &event.hashes);
            match &layout.passthrough {
                Passthrough::Raw => out.extend_from_slice(&body[self.spans[i].clone()]),
                Passthrough::Columns(cols) => {
                    for (k, &c) in cols.iter().enumerate() {
                        if k > 0 {
                            out.push(b',');
                        }
                        push_field(out, self.records[i].get(c).unwrap_or(b""));
                    }
                }
            }
            self.values.push_row(out, &mut self.scratch);
            out.push(b'\n');
        }
        self.stats.rows += n as u64;
        Ok(())
    }

    /// Reads all rows into the record pool; returns how many.
    fn read_rows(&mut self, reader: &mut RowReader<'_>) -> Result<usize, BodyError> {
        self.spans.clear();
        let mut n = 0;
        loop {
            if n == self.records.len() {
                self.records.push(ByteRecord::new());
            }
            match reader.read(&mut self.records[n])? {
                Some(span) => {
                    self.spans.push(span);
                    n += 1;
                }
                None => break,
            }
        }
        // Keep the pool's size bounded by the largest chunk, not by history.
        self.records.truncate(n + 1);
        Ok(n)
    }
}

fn prepare(header: Header, names: &FieldNames) -> Layout {
    let fields = FieldMap::new(names, |n| header.position(n));
    let passthrough = if header.names().iter().any(|n| output::is_owned(n)) {
        Passthrough::Columns(
            (0..header.len())
                .filter(|&i| !output::is_owned(&header.names()[i]))
                .collect(),
        )
    } else {
        Passthrough::Raw
    };
    Layout {
        header,
        fields,
        passthrough,
    }
}

fn write_header(out: &mut Vec<u8>, layout: &Layout) {
    let names = layout.header.names();
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, name: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        push_field(out, name);
    };
    match &layout.passthrough {
        Passthrough::Raw => names.iter().for_each(|n| put(out, n)),
        Passthrough::Columns(cols) => cols.iter().for_each(|&c| put(out, &names[c])),
    }
    output::push_header(out);
    out.push(b'\n');
}

fn set_hash_fields(values: &mut RowValues, h: &FileHashes) {
    const MD5: usize = output::index("hash_md5");
    const SHA1: usize = output::index("hash_sha1");
    const SHA256: usize = output::index("hash_sha256");
    const IMPHASH: usize = output::index("hash_imphash");
    if let Some(d) = &h.md5 {
        values.set(MD5, d.as_bytes());
    }
    if let Some(d) = &h.sha1 {
        values.set(SHA1, d.as_bytes());
    }
    if let Some(d) = &h.sha256 {
        values.set(SHA256, d.as_bytes());
    }
    if let Some(d) = &h.imphash {
        values.set(IMPHASH, d.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> String {
        let mut e = Enricher::new(Options::default(), 1 << 20);
        let mut out = Vec::new();
        e.process(body.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_pass_through_verbatim_with_hashes_added() {
        let body = "EventCode,\"Hashes\",\"_chunked_idx\",__mv_EventCode\n1,\"MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0,IMPHASH=BAD\",0,\n3,,1,\n";
        let out = run(body);
        let mut lines = out.lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with("EventCode,Hashes,_chunked_idx,__mv_EventCode,hash_md5,"));
        let row0 = lines.next().unwrap();
        assert!(row0.starts_with("1,\"MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0,IMPHASH=BAD\",0,,975b4bd9b9d3b0a9c7d6e5f4a3b2c1d0,,,,"), "{row0}");
        assert!(lines.next().unwrap().starts_with("3,,1,,,,,,"));
    }

    #[test]
    fn owned_input_columns_are_replaced() {
        let body = "hash_md5,MD5,_chunked_idx\nstale,975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0,0\n";
        let out = run(body);
        let mut rdr = csv::Reader::from_reader(out.as_bytes());
        let h = rdr.headers().unwrap().clone();
        assert_eq!(h.iter().filter(|n| *n == "hash_md5").count(), 1);
        let rec = rdr.records().next().unwrap().unwrap();
        let md5 = rec
            .get(h.iter().position(|n| n == "hash_md5").unwrap())
            .unwrap();
        assert_eq!(md5, "975b4bd9b9d3b0a9c7d6e5f4a3b2c1d0");
    }

    #[test]
    fn header_only_and_empty() {
        assert_eq!(run(""), "");
        assert_eq!(run("EventCode,_chunked_idx\n"), "");
    }
}
