//! CSV bodies: reading splunkd's rows without disturbing them, and writing
//! ours.
//!
//! Rows are read by a scanner of our own ([`RowReader`]: why not the `csv`
//! crate is told there), fields read in place as spans of the body, and
//! each row keeps the byte span it occupied in the body. Columns the
//! command does not own are copied from that span verbatim, so pass-through
//! is byte-exact whatever quoting style or encoding the producer used, and
//! costs a `memcpy` instead of a re-quote. Values stay bytes: a non-UTF-8 byte in some event is data to
//! pass on, not a reason to fail a scheduled search.

use super::multivalue::MV_PREFIX;
use csv::ByteRecord;
use std::ops::Range;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The CSV itself is broken (field count, quoting that swallowed rows).
    #[error("CSV body, row {row}: {message}")]
    Csv {
        /// 1-based data row (0 is the header).
        row: u64,
        /// What was wrong.
        message: String,
    },
    /// One field is over the cap.
    #[error("CSV body, row {row}: field {field:?} is {len} bytes, over the limit of {limit} bytes (max_field_bytes in sysmonenrich.conf)")]
    FieldTooLarge {
        /// 1-based data row.
        row: u64,
        /// Column name.
        field: String,
        /// Its length.
        len: usize,
        /// The cap.
        limit: usize,
    },
}

/// A body's header row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    names: Vec<Vec<u8>>,
}

impl Header {
    /// Builds a header from names.
    pub fn new(names: Vec<Vec<u8>>) -> Header {
        Header { names }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True for a header without columns.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The column names.
    pub fn names(&self) -> &[Vec<u8>] {
        &self.names
    }

    /// Index of the column called `name` (exact, case-sensitive: Splunk
    /// field names are).
    pub fn position(&self, name: &[u8]) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Index of the `__mv_` companion of column `index`, if present.
    pub fn mv_position(&self, index: usize) -> Option<usize> {
        let name = self.names.get(index)?;
        self.names.iter().position(|n| {
            n.len() == MV_PREFIX.len() + name.len() && n.starts_with(MV_PREFIX) && n.ends_with(name)
        })
    }
}

/// One field of the current row: a range of the body, or (for a quoted
/// value with doubled quotes) of the row's unescape arena.
#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    in_arena: bool,
}

/// Streams the data rows of one body.
///
/// A hand-written scanner rather than `csv::Reader`: profiling the command
/// (callgrind, 20,000 splunkd-style rows) put `csv_core`'s byte-at-a-time
/// state machine at half of all instructions, copying every field of every
/// row into a record although the command reads a dozen of them. This one
/// jumps from delimiter to delimiter with `memchr`, records each field as a
/// span of the body, and copies only quoted values that contain `""`. It is
/// also stricter where strictness protects data: a character after a
/// closing quote, an unterminated quote, or a row whose field count differs
/// from the header is an error naming the row, never a silent merge.
pub struct RowReader<'b> {
    body: &'b [u8],
    pos: usize,
    header: Header,
    max_field: usize,
    row: u64,
    fields: Vec<Field>,
    arena: Vec<u8>,
    /// The body as text, checked once on the first [`RowReader::field_text`].
    text: std::cell::OnceCell<Option<&'b str>>,
    /// The row's arena as text, made on the first `field_text` of one of
    /// its fields: the Sigma engine reads a command line with quotes in it
    /// several times per row, and checking it at every read cost more than
    /// one copy of the arena.
    arena_text: std::cell::OnceCell<Option<String>>,
    /// The buffer `arena_text` had in an earlier row, kept for its capacity.
    spare: std::cell::Cell<String>,
}

impl<'b> RowReader<'b> {
    /// Reads the header row. `Ok(None)` for an empty body (no header, no
    /// rows), which splunkd sends and which is not an error.
    pub fn new(body: &'b [u8], max_field: usize) -> Result<Option<RowReader<'b>>, BodyError> {
        let mut rows = RowReader {
            body,
            pos: 0,
            header: Header::default(),
            max_field,
            row: 0,
            fields: Vec::new(),
            arena: Vec::new(),
            text: std::cell::OnceCell::new(),
            arena_text: std::cell::OnceCell::new(),
            spare: std::cell::Cell::default(),
        };
        if body.is_empty() {
            return Ok(None);
        }
        rows.scan_row()?;
        let names = (0..rows.fields.len())
            .map(|i| rows.field(i).unwrap_or_default().to_vec())
            .collect();
        rows.header = Header::new(names);
        Ok(Some(rows))
    }

    /// The header row.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Advances to the next row and returns the byte span it took in the
    /// body, without its line terminator. `Ok(None)` at the end.
    pub fn next_row(&mut self) -> Result<Option<Range<usize>>, BodyError> {
        loop {
            if self.pos >= self.body.len() {
                return Ok(None);
            }
            // A blank line is a row only in a one-column table (its one
            // value is empty); elsewhere it is stray white space.
            if self.header.len() != 1 {
                match self.body[self.pos] {
                    b'\n' => {
                        self.pos += 1;
                        continue;
                    }
                    b'\r' => {
                        self.pos += 1;
                        if self.body.get(self.pos) == Some(&b'\n') {
                            self.pos += 1;
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            break;
        }
        self.row += 1;
        let span = self.scan_row()?;
        if self.fields.len() != self.header.len() {
            return Err(BodyError::Csv {
                row: self.row,
                message: format!(
                    "{} field(s) where the header has {} (broken quoting or a truncated row)",
                    self.fields.len(),
                    self.header.len()
                ),
            });
        }
        Ok(Some(span))
    }

    /// Field `i` of the current row (the header right after `new`).
    #[inline]
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        let f = self.fields.get(i)?;
        Some(if f.in_arena {
            &self.arena[f.start..f.end]
        } else {
            &self.body[f.start..f.end]
        })
    }

    /// Whether field `i` of the current row holds at least one byte: a
    /// check without a slice, for a caller that skips the empty ones of
    /// a wide row (a Splunk result row carries every column of the
    /// search; for one event most are empty).
    pub fn has_value(&self, i: usize) -> bool {
        self.fields.get(i).is_some_and(|f| f.end > f.start)
    }

    /// Field `i` as text, `None` when absent or not UTF-8. The whole body
    /// is checked once, on the first call (by SIMD: std's check of 150 MB
    /// of diverse rows was 70 M instructions): the Sigma engine reads a dozen
    /// fields of every row, and checking each one as it read it was a
    /// twentieth of its instructions. Fields end at ASCII delimiters, so a
    /// field of a valid body is valid.
    pub fn field_text(&self, i: usize) -> Option<&str> {
        let f = self.fields.get(i)?;
        if f.in_arena {
            let whole = self.arena_text.get_or_init(|| {
                let mut text = self.spare.take();
                text.clear();
                let valid = simdutf8::basic::from_utf8(&self.arena).ok()?;
                text.push_str(valid);
                Some(text)
            });
            return match whole {
                Some(text) => text.get(f.start..f.end),
                // One broken field: the others still read.
                None => std::str::from_utf8(&self.arena[f.start..f.end]).ok(),
            };
        }
        match self
            .text
            .get_or_init(|| simdutf8::basic::from_utf8(self.body).ok())
        {
            Some(text) => text.get(f.start..f.end),
            None => std::str::from_utf8(&self.body[f.start..f.end]).ok(),
        }
    }

    /// Fields in the current row.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the current row has no fields (before the first row).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// [`RowReader::next_row`], copying the row into `record`: convenient,
    /// slower; the command itself reads fields in place.
    pub fn read(&mut self, record: &mut ByteRecord) -> Result<Option<Range<usize>>, BodyError> {
        let span = self.next_row()?;
        record.clear();
        if span.is_some() {
            for i in 0..self.fields.len() {
                record.push_field(self.field(i).unwrap_or_default());
            }
        }
        Ok(span)
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.row
    }

    /// The whole body.
    pub fn body(&self) -> &'b [u8] {
        self.body
    }

    /// Scans one row at `pos` into `fields`; returns its span without the
    /// terminator and leaves `pos` after the terminator.
    fn scan_row(&mut self) -> Result<Range<usize>, BodyError> {
        self.fields.clear();
        self.arena.clear();
        if let Some(Some(text)) = self.arena_text.take() {
            self.spare.set(text);
        }
        let body = self.body;
        let len = body.len();
        let start = self.pos;
        let mut i = start;
        let row_end;
        loop {
            if i < len && body[i] == b'"' {
                let (field, after) = self.quoted(i + 1)?;
                self.push(field)?;
                match body.get(after) {
                    Some(b',') => i = after + 1,
                    Some(b'\n') => {
                        row_end = after;
                        i = after + 1;
                        break;
                    }
                    Some(b'\r') => {
                        row_end = after;
                        i = after + 1;
                        if body.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                        break;
                    }
                    None => {
                        row_end = after;
                        i = after;
                        break;
                    }
                    Some(&c) => {
                        return Err(BodyError::Csv {
                            row: self.row,
                            message: format!(
                                "broken quoting: {:?} follows a closing quote (byte {after})",
                                c as char
                            ),
                        })
                    }
                }
            } else {
                // Fast path for the many empty cells (`__mv_` columns).
                let e = if i < len && body[i] == b',' {
                    i
                } else {
                    match memchr::memchr3(b',', b'\n', b'\r', &body[i..]) {
                        Some(k) => i + k,
                        None => len,
                    }
                };
                self.push(Field {
                    start: i,
                    end: e,
                    in_arena: false,
                })?;
                match body.get(e) {
                    Some(b',') => i = e + 1,
                    Some(b'\n') => {
                        row_end = e;
                        i = e + 1;
                        break;
                    }
                    Some(_) => {
                        row_end = e;
                        i = e + 1;
                        if body.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                        break;
                    }
                    None => {
                        row_end = len;
                        i = len;
                        break;
                    }
                }
            }
        }
        self.pos = i;
        Ok(start..row_end)
    }

    /// A quoted field whose content starts at `from`: its value and the
    /// position after the closing quote.
    fn quoted(&mut self, from: usize) -> Result<(Field, usize), BodyError> {
        let body = self.body;
        let mut j = from;
        let mut doubled = false;
        let close = loop {
            match memchr::memchr(b'"', &body[j..]) {
                None => {
                    return Err(BodyError::Csv {
                        row: self.row,
                        message: format!(
                            "broken quoting: a quote opened at byte {} is never closed",
                            from - 1
                        ),
                    })
                }
                Some(k) if body.get(j + k + 1) == Some(&b'"') => {
                    doubled = true;
                    j += k + 2;
                }
                Some(k) => break j + k,
            }
        };
        if !doubled {
            let f = Field {
                start: from,
                end: close,
                in_arena: false,
            };
            return Ok((f, close + 1));
        }
        let a = self.arena.len();
        let mut rest = &body[from..close];
        while let Some(k) = memchr::memchr(b'"', rest) {
            self.arena.extend_from_slice(&rest[..=k]);
            rest = &rest[k + 2..];
        }
        self.arena.extend_from_slice(rest);
        let f = Field {
            start: a,
            end: self.arena.len(),
            in_arena: true,
        };
        Ok((f, close + 1))
    }

    #[inline]
    fn push(&mut self, f: Field) -> Result<(), BodyError> {
        if f.end - f.start > self.max_field {
            return Err(self.too_large(f));
        }
        self.fields.push(f);
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_large(&self, f: Field) -> BodyError {
        {
            let i = self.fields.len();
            let field = self
                .header
                .names
                .get(i)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_else(|| format!("#{}", i + 1));
            BodyError::FieldTooLarge {
                row: self.row,
                field,
                len: f.end - f.start,
                limit: self.max_field,
            }
        }
    }
}

/// True when a value must be quoted in CSV.
#[inline]
/// True when a CSV field must be quoted.
pub fn needs_quotes(value: &[u8]) -> bool {
    memchr::memchr3(b',', b'"', b'\n', value).is_some() || memchr::memchr(b'\r', value).is_some()
}

/// Appends one CSV field (no separator), quoted only when it must be.
#[inline]
pub fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    if needs_quotes(value) {
        push_quoted(out, value);
    } else {
        out.extend_from_slice(value);
    }
}

/// Appends one CSV record: the fields joined by commas, each quoted only
/// when it must be, and a `\n`. The one writer of whole records, so that
/// every CSV we produce (CLI output, demo bodies, the bench's generated
/// stream) quotes alike.
pub fn push_record<F: AsRef<[u8]>>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = F>) {
    for (i, v) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_field(out, v.as_ref());
    }
    out.push(b'\n');
}

/// Appends one CSV field, always quoted.
pub fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    push_escaped(out, value);
    out.push(b'"');
}

/// Appends `value` with every `"` doubled: the inside of a quoted field
/// (for callers that quote several values as one field).
pub fn push_escaped(out: &mut Vec<u8>, value: &[u8]) {
    let mut rest = value;
    while let Some(i) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = Vec<(Vec<Vec<u8>>, Vec<u8>)>;

    fn rows(body: &[u8]) -> Result<(Header, Rows), BodyError> {
        let mut r = RowReader::new(body, 1 << 20)?.expect("header");
        let mut rec = ByteRecord::new();
        let mut out = Vec::new();
        while let Some(span) = r.read(&mut rec)? {
            out.push((
                rec.iter().map(<[u8]>::to_vec).collect(),
                body[span].to_vec(),
            ));
        }
        Ok((r.header().clone(), out))
    }

    #[test]
    fn spans_are_exact_rows() {
        let body = b"a,\"b c\",__mv_a\n1,\"x\ny\",\n\"2\",\"q\"\"\",$1$\r\n3,,";
        let (h, r) = rows(body).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.mv_position(0), Some(2));
        assert_eq!(h.mv_position(1), None);
        assert_eq!(r[0].1, b"1,\"x\ny\",");
        assert_eq!(r[0].0[1], b"x\ny");
        assert_eq!(r[1].1, b"\"2\",\"q\"\"\",$1$");
        assert_eq!(r[1].0[1], b"q\"");
        assert_eq!(r[2].1, b"3,,");
    }

    #[test]
    fn empty_and_header_only() {
        assert!(RowReader::new(b"", 10).unwrap().is_none());
        let (h, r) = rows(b"a,_chunked_idx\n").unwrap();
        assert_eq!(h.len(), 2);
        assert!(r.is_empty());
    }

    #[test]
    fn broken_rows_are_errors() {
        let err = rows(b"a,b\n1,2\n3\n").unwrap_err();
        assert!(err.to_string().contains("row 2"), "{err}");
        let err = rows(b"a,b\n\"1,2\n3,4\n").unwrap_err();
        assert!(matches!(err, BodyError::Csv { .. }), "{err}");
        let err = rows(b"a,b\n\"1\"x,2\n").unwrap_err();
        assert!(err.to_string().contains("follows a closing quote"), "{err}");
        let err = rows(b"a,b\n1,\"open\n").unwrap_err();
        assert!(err.to_string().contains("never closed"), "{err}");
    }

    #[test]
    fn field_text_reads_valid_fields_of_any_body() {
        // Valid body: fields in place and unquoted ones from the arena.
        let body = "a,b,c\nü,\"say \"\"hi\"\"\",\n".as_bytes();
        let mut r = RowReader::new(body, 100).unwrap().unwrap();
        r.next_row().unwrap().unwrap();
        assert_eq!(r.field_text(0), Some("ü"));
        assert_eq!(r.field_text(1), Some("say \"hi\""));
        assert_eq!(r.field_text(2), Some(""));
        assert_eq!(r.field_text(3), None);
        // A body with one broken field: that one is `None`, the others read.
        let mut body = b"a,b\nok,".to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(b"\nfine,\"q\"\"\"\n");
        let mut r = RowReader::new(&body, 100).unwrap().unwrap();
        r.next_row().unwrap().unwrap();
        assert_eq!(r.field_text(0), Some("ok"));
        assert_eq!(r.field_text(1), None);
        r.next_row().unwrap().unwrap();
        assert_eq!(r.field_text(0), Some("fine"));
        assert_eq!(r.field_text(1), Some("q\""));
        // Two fields in the arena, one of them broken: the other reads, and
        // the next row's arena is read afresh.
        let mut body = b"a,b\n\"x\"\"y\",\"".to_vec();
        body.extend_from_slice(&[0xff]);
        body.extend_from_slice(b"\"\"z\"\n\"\"\"\",\"\"\"\"\"\"\n");
        let mut r = RowReader::new(&body, 100).unwrap().unwrap();
        r.next_row().unwrap().unwrap();
        assert_eq!(r.field_text(0), Some("x\"y"));
        assert_eq!(r.field_text(1), None);
        assert_eq!(r.field_text(0), Some("x\"y"));
        r.next_row().unwrap().unwrap();
        assert_eq!(r.field_text(1), Some("\"\""));
        assert_eq!(r.field_text(0), Some("\""));
    }

    #[test]
    fn field_cap() {
        let body = format!("a,b\n1,{}\n", "x".repeat(100));
        let mut r = RowReader::new(body.as_bytes(), 50).unwrap().unwrap();
        let err = r.read(&mut ByteRecord::new()).unwrap_err();
        assert!(err.to_string().contains("\"b\" is 100 bytes"), "{err}");
    }

    #[test]
    fn writing() {
        let mut out = Vec::new();
        push_field(&mut out, b"plain");
        out.push(b',');
        push_field(&mut out, b"a,\"b\"");
        assert_eq!(out, b"plain,\"a,\"\"b\"\"\"");
        out.clear();
        push_record(&mut out, [&b"x"[..], b"", b"y\nz"]);
        assert_eq!(out, b"x,,\"y\nz\"\n");
    }
}
