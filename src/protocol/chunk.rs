//! One chunk on the wire: `chunked 1.0,<meta_len>,<body_len>\n`, then that
//! many bytes of JSON metadata, then that many bytes of CSV body.
//!
//! The reader is tolerant where splunkd and old SDKs are known to be sloppy
//! (white space between chunks, CRLF or extra blanks in the header) and
//! strict where sloppiness would lose data: lengths are byte counts, checked
//! against caps *before* anything is allocated (mini-redis' check-before-
//! parse), and EOF inside a chunk is an error, never a silent short read
//! (the SDK's bug, kept alive by the `generatehello.input` recording).
//! The writer emits exactly one form, the one every real splunkd chunk uses.

use std::io::{self, BufRead, Write};

/// The longest header line we accept. Real headers are under 40 bytes; a
/// longer line means we are not looking at the chunked protocol (a v1
/// header, a binary stream) and reading on would only waste memory.
const MAX_HEADER_LINE: usize = 256;

/// Size caps for one request chunk. Both are settings (`[protocol]` in
/// `sysmonenrich.conf`) because what is "too big" depends on the site's
/// `maxresultrows` and event sizes, not on us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest metadata part accepted, bytes.
    pub max_metadata: usize,
    /// Largest body part accepted, bytes.
    pub max_body: usize,
    /// Largest single CSV field accepted, bytes (enforced by the records layer).
    pub max_field: usize,
}

impl Default for Limits {
    /// splunkd's biggest real chunk is ~16 MB for 50,000 rows (REC
    /// `sum.map.input`); 512 MiB leaves room for fat `_raw` events while
    /// still refusing a runaway length. The SDK raised its field limit to
    /// 10 MiB (SPL-12117); we allow 32 MiB.
    fn default() -> Self {
        Limits {
            max_metadata: 16 << 20,
            max_body: 512 << 20,
            max_field: 32 << 20,
        }
    }
}

/// Why a chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The header line is not `chunked 1.0,<n>,<n>`.
    #[error(
        "malformed chunk header {line:?} (expected \"chunked 1.0,<metadata bytes>,<body bytes>\")"
    )]
    MalformedHeader {
        /// The offending line, shortened for display.
        line: String,
    },
    /// A declared length is over its cap.
    #[error("chunk declares {part} of {declared} bytes, over the limit of {limit} bytes ({setting} in sysmonenrich.conf)")]
    TooLarge {
        /// `metadata` or `body`.
        part: &'static str,
        /// Declared length.
        declared: u64,
        /// The cap.
        limit: usize,
        /// The conf setting that raises it.
        setting: &'static str,
    },
    /// The stream ended inside a chunk.
    #[error("input ended inside a chunk: {what} declared {need} bytes, only {have} arrived")]
    Truncated {
        /// Which part was cut short.
        what: &'static str,
        /// Declared length.
        need: usize,
        /// Bytes that arrived.
        have: usize,
    },
    /// Metadata length 0: splunkd never sends it and there is nothing to decode.
    #[error("chunk has empty metadata (length 0)")]
    EmptyMetadata,
    /// The underlying read failed.
    #[error("reading the chunk failed: {0}")]
    Io(#[from] io::Error),
}

/// The two lengths of a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Metadata length in bytes.
    pub metadata_len: u64,
    /// Body length in bytes.
    pub body_len: u64,
}

impl ChunkHeader {
    /// Parses one header line (without or with its `\n`/`\r\n`), following
    /// the SDK's regex `chunked\s+1.0\s*,\s*(\d+)\s*,\s*(\d+)\s*\n`.
    pub fn parse(line: &[u8]) -> Result<ChunkHeader, ChunkError> {
        let malformed = || ChunkError::MalformedHeader {
            line: String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
        };
        let rest = line.strip_prefix(b"chunked").ok_or_else(malformed)?;
        let trimmed = rest.trim_ascii_start();
        if trimmed.len() == rest.len() {
            return Err(malformed()); // at least one blank after `chunked`
        }
        let rest = trimmed.strip_prefix(b"1.0").ok_or_else(malformed)?;
        let mut parts = rest.split(|&b| b == b',');
        let (Some(empty), Some(m), Some(b), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        if !empty.trim_ascii().is_empty() {
            return Err(malformed());
        }
        let number = |s: &[u8]| -> Option<u64> {
            let s = s.trim_ascii();
            if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(s).ok()?.parse().ok()
        };
        Ok(ChunkHeader {
            metadata_len: number(m).ok_or_else(malformed)?,
            body_len: number(b).ok_or_else(malformed)?,
        })
    }
}

/// One request chunk, its buffers owned so they can be reused.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The JSON metadata bytes.
    pub metadata: Vec<u8>,
    /// The CSV body bytes (possibly empty).
    pub body: Vec<u8>,
}

/// Reads the next chunk into `chunk` (reusing its buffers). `Ok(false)` is a
/// clean end of input: EOF where a header would start, after optional white
/// space.
pub fn read_chunk<R: BufRead>(
    input: &mut R,
    limits: &Limits,
    chunk: &mut Chunk,
) -> Result<bool, ChunkError> {
    if !skip_blank(input)? {
        return Ok(false);
    }
    let line = read_header_line(input)?;
    let header = ChunkHeader::parse(&line)?;
    let meta_len = check_len(
        "metadata",
        header.metadata_len,
        limits.max_metadata,
        "max_metadata_bytes",
    )?;
    let body_len = check_len("body", header.body_len, limits.max_body, "max_chunk_bytes")?;
    if meta_len == 0 {
        return Err(ChunkError::EmptyMetadata);
    }
    read_part(input, &mut chunk.metadata, meta_len, "metadata")?;
    read_part(input, &mut chunk.body, body_len, "body")?;
    Ok(true)
}

fn check_len(
    part: &'static str,
    declared: u64,
    limit: usize,
    setting: &'static str,
) -> Result<usize, ChunkError> {
    match usize::try_from(declared) {
        Ok(n) if n <= limit => Ok(n),
        _ => Err(ChunkError::TooLarge {
            part,
            declared,
            limit,
            setting,
        }),
    }
}

/// Skips SP, HTAB, CR and LF. Returns false on EOF.
fn skip_blank<R: BufRead>(input: &mut R) -> io::Result<bool> {
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(false);
        }
        let n = buf
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        let more = n < buf.len();
        input.consume(n);
        if more {
            return Ok(true);
        }
    }
}

fn read_header_line<R: BufRead>(input: &mut R) -> Result<Vec<u8>, ChunkError> {
    let mut line = Vec::with_capacity(48);
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            // EOF before the header's LF: a header is part of a chunk.
            return Err(ChunkError::Truncated {
                what: "header",
                need: line.len() + 1,
                have: line.len(),
            });
        }
        let room = MAX_HEADER_LINE - line.len();
        let window = &buf[..buf.len().min(room)];
        if let Some(pos) = memchr::memchr(b'\n', window) {
            line.extend_from_slice(&window[..pos]);
            input.consume(pos + 1);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        let n = window.len();
        line.extend_from_slice(window);
        input.consume(n);
        if line.len() >= MAX_HEADER_LINE {
            return Err(ChunkError::MalformedHeader {
                line: String::from_utf8_lossy(&line[..80]).into_owned() + "…",
            });
        }
    }
}

fn read_part<R: BufRead>(
    input: &mut R,
    buf: &mut Vec<u8>,
    len: usize,
    what: &'static str,
) -> Result<(), ChunkError> {
    buf.clear();
    buf.reserve(len);
    // `take` + `read_to_end` grows in place and tells us how much arrived,
    // which `read_exact` would not.
    let have = io::Read::read_to_end(&mut io::Read::take(&mut *input, len as u64), buf)?;
    if have < len {
        return Err(ChunkError::Truncated {
            what,
            need: len,
            have,
        });
    }
    Ok(())
}

/// Writes one chunk in the exact form splunkd writes them and flushes, so
/// splunkd is never left waiting for bytes sitting in our buffer.
pub fn write_chunk<W: Write>(out: &mut W, metadata: &[u8], body: &[u8]) -> io::Result<()> {
    writeln!(out, "chunked 1.0,{},{}", metadata.len(), body.len())?;
    out.write_all(metadata)?;
    out.write_all(body)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Result<Vec<(String, String)>, ChunkError> {
        let mut input = bytes;
        let mut out = Vec::new();
        let mut chunk = Chunk::default();
        while read_chunk(&mut input, &Limits::default(), &mut chunk)? {
            out.push((
                String::from_utf8_lossy(&chunk.metadata).into_owned(),
                String::from_utf8_lossy(&chunk.body).into_owned(),
            ));
        }
        Ok(out)
    }

    #[test]
    fn header_forms() {
        let h = ChunkHeader::parse(b"chunked 1.0,12,0").unwrap();
        assert_eq!((h.metadata_len, h.body_len), (12, 0));
        let h = ChunkHeader::parse(b"chunked\t 1.0 , 3 ,\t4 ").unwrap();
        assert_eq!((h.metadata_len, h.body_len), (3, 4));
        for bad in [
            &b"chunked1.0,1,1"[..],
            b"chunked 2.0,1,1",
            b"chunked 1.0,1",
            b"chunked 1.0,1,1,1",
            b"chunked 1.0,-1,1",
            b"chunked 1.0,,1",
            b"splunkVersion:6.3",
            b"chunked 1.0,99999999999999999999,1",
        ] {
            assert!(
                ChunkHeader::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lengths_are_bytes_and_blanks_are_skipped() {
        let body = "a\n\u{0e17}\n"; // Thai character: 3 bytes
        let stream = format!("\n\r\nchunked 1.0,2,{}\r\n{{}}{}\n", body.len(), body);
        let chunks = read_all(stream.as_bytes()).unwrap();
        assert_eq!(chunks, vec![("{}".to_string(), body.to_string())]);
    }

    #[test]
    fn eof_inside_chunk_is_an_error() {
        for cut in [
            "chunked 1.0,2",
            "chunked 1.0,2,3\n{",
            "chunked 1.0,2,3\n{}ab",
        ] {
            let err = read_all(cut.as_bytes()).unwrap_err();
            assert!(matches!(err, ChunkError::Truncated { .. }), "{cut}: {err}");
        }
    }

    #[test]
    fn caps_are_checked_before_reading() {
        let limits = Limits {
            max_metadata: 10,
            max_body: 10,
            max_field: 10,
        };
        let mut input = &b"chunked 1.0,2,11\n{}"[..];
        let err = read_chunk(&mut input, &limits, &mut Chunk::default()).unwrap_err();
        assert!(err.to_string().contains("max_chunk_bytes"), "{err}");
    }

    #[test]
    fn overlong_header_line_is_rejected() {
        let junk = vec![b'x'; 10_000];
        let err = read_all(&junk).unwrap_err();
        assert!(matches!(err, ChunkError::MalformedHeader { .. }));
    }

    #[test]
    fn writer_is_exact() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"{\"finished\":true}", b"").unwrap();
        assert_eq!(out, b"chunked 1.0,17,0\n{\"finished\":true}");
    }
}
