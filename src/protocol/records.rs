//! CSV bodies: reading splunkd's rows without disturbing them, and writing
//! ours.
//!
//! Rows are parsed with the `csv` crate into a reused [`csv::ByteRecord`]
//! (its documented fast path), and each row also keeps the byte span it
//! occupied in the body. Columns the command does not own are copied from
//! that span verbatim, so pass-through is byte-exact whatever quoting style
//! or encoding the producer used, and costs a `memcpy` instead of a
//! re-quote. Values stay bytes: a non-UTF-8 byte in some event is data to
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

/// Streams the data rows of one body.
pub struct RowReader<'b> {
    body: &'b [u8],
    reader: csv::Reader<&'b [u8]>,
    header: Header,
    max_field: usize,
    row: u64,
}

impl<'b> RowReader<'b> {
    /// Reads the header row. `Ok(None)` for an empty body (no header, no
    /// rows), which splunkd sends and which is not an error.
    pub fn new(body: &'b [u8], max_field: usize) -> Result<Option<RowReader<'b>>, BodyError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(body);
        let mut record = ByteRecord::new();
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(0, &e))?;
        if !more {
            return Ok(None);
        }
        let header = Header::new(record.iter().map(<[u8]>::to_vec).collect());
        let rows = RowReader {
            body,
            reader,
            header,
            max_field,
            row: 0,
        };
        rows.check_fields(&record)?;
        Ok(Some(rows))
    }

    /// The header row.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads the next row into `record` and returns the byte span it took in
    /// the body, without its line terminator. `Ok(None)` at the end.
    pub fn read(&mut self, record: &mut ByteRecord) -> Result<Option<Range<usize>>, BodyError> {
        let more = self
            .reader
            .read_byte_record(record)
            .map_err(|e| csv_error(self.row + 1, &e))?;
        if !more {
            return Ok(None);
        }
        self.row += 1;
        self.check_fields(record)?;
        let mut start = record.position().map_or(0, |p| p.byte() as usize);
        let mut end = (self.reader.position().byte() as usize).min(self.body.len());
        // After a CRLF the reader reports the LF as the start of the next
        // record; an unquoted record cannot begin with CR or LF, so skip them.
        while start < end && matches!(self.body[start], b'\r' | b'\n') {
            start += 1;
        }
        // The reader's position is past the terminator; give it back.
        if end > start && self.body[end - 1] == b'\n' {
            end -= 1;
            if end > start && self.body[end - 1] == b'\r' {
                end -= 1;
            }
        } else if end > start && self.body[end - 1] == b'\r' {
            end -= 1;
        }
        Ok(Some(start..end))
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.row
    }

    /// The whole body.
    pub fn body(&self) -> &'b [u8] {
        self.body
    }

    fn check_fields(&self, record: &ByteRecord) -> Result<(), BodyError> {
        if record.as_slice().len() <= self.max_field {
            return Ok(());
        }
        for (i, f) in record.iter().enumerate() {
            if f.len() > self.max_field {
                let field = self
                    .header
                    .names
                    .get(i)
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_else(|| format!("#{}", i + 1));
                return Err(BodyError::FieldTooLarge {
                    row: self.row,
                    field,
                    len: f.len(),
                    limit: self.max_field,
                });
            }
        }
        Ok(())
    }
}

fn csv_error(row: u64, e: &csv::Error) -> BodyError {
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "{len} field(s) where the header has {expected_len} (broken quoting or a truncated row)"
        ),
        _ => e.to_string(),
    };
    BodyError::Csv { row, message }
}

/// True when a value must be quoted in CSV.
#[inline]
fn needs_quotes(value: &[u8]) -> bool {
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

/// Appends one CSV field, always quoted.
pub fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    let mut rest = value;
    while let Some(i) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(body: &[u8]) -> Result<(Header, Vec<(Vec<Vec<u8>>, Vec<u8>)>), BodyError> {
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
    }
}
