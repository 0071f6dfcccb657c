//! A reply body described as pieces of existing buffers, written with
//! `writev` instead of being copied into one buffer first.
//!
//! Why: an enriched row is mostly bytes that already exist elsewhere: the
//! row's own columns in the request body, and its process's lineage cells,
//! rendered once per process and shared by all its rows (about 1.2 KB per
//! row on the benchmark). Copying them into a reply buffer was the largest
//! single cost after parsing (11% of a lineage search's CPU); the kernel
//! has to copy them into the pipe anyway, and `writev` lets that one copy
//! read them where they are.

use std::io::{self, IoSlice, Write};
use std::ops::Range;

/// Buffer for reply headers and metadata. Bodies go around it: they are
/// written with `writev` from where their bytes already are, and a body
/// window of at least this size bypasses the buffer (a 1 MiB buffer made
/// the buffer copy every window again).
pub const REPLY_BUFFER: usize = 64 << 10;

/// Where replies go (see [`crate::platform::reply_output`]). Nothing else
/// may write to stdout while the protocol runs (logs go to their file).
pub fn reply_output() -> Box<dyn std::io::Write> {
    crate::platform::reply_output()
}

/// `IoSlice`s handed to one `write_vectored` call: Linux's `IOV_MAX`.
const WINDOW: usize = 1024;

/// Bytes `range` of buffer `source`: 0 is the request body being answered,
/// `k > 0` the caller's `k`-th extra buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Which buffer.
    pub source: u8,
    /// Which bytes of it.
    pub range: Range<usize>,
}

/// An ordered list of pieces; adjacent pieces of one buffer are merged.
#[derive(Clone, Debug, Default)]
pub struct Pieces {
    list: Vec<Piece>,
    len: usize,
}

impl Pieces {
    /// Empties the list, keeping its memory.
    pub fn clear(&mut self) {
        self.list.clear();
        self.len = 0;
    }

    /// Appends `range` of `source` (empty ranges are dropped).
    #[inline]
    pub fn push(&mut self, source: u8, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        self.len += range.len();
        if let Some(last) = self.list.last_mut() {
            if last.source == source && last.range.end == range.start {
                last.range.end = range.end;
                return;
            }
        }
        self.list.push(Piece { source, range });
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn as_slice(&self) -> &[Piece] {
        &self.list
    }

    /// Copies the bytes into `out` (cleared first): for callers that want
    /// one buffer (files, tests).
    pub fn assemble(&self, sources: &[&[u8]], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.len);
        for p in &self.list {
            out.extend_from_slice(&sources[p.source as usize][p.range.clone()]);
        }
    }

    /// Writes every piece to `out`, in windows of at most `WINDOW`
    /// slices, resuming after partial writes.
    pub fn write_to<W: Write>(&self, sources: &[&[u8]], out: &mut W) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(WINDOW.min(self.list.len()));
        for window in self.list.chunks(WINDOW) {
            slices.clear();
            slices.extend(
                window
                    .iter()
                    .map(|p| IoSlice::new(&sources[p.source as usize][p.range.clone()])),
            );
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                match out.write_vectored(rest) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => IoSlice::advance_slices(&mut rest, n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// Writes one chunk whose body is `pieces` of `sources`, in the form of
/// [`super::chunk::write_chunk`], and flushes.
pub fn write_chunk_pieces<W: Write>(
    out: &mut W,
    metadata: &[u8],
    sources: &[&[u8]],
    pieces: &Pieces,
) -> io::Result<()> {
    writeln!(out, "chunked 1.0,{},{}", metadata.len(), pieces.len())?;
    out.write_all(metadata)?;
    pieces.write_to(sources, out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call, to exercise the
    /// resume-after-partial-write path.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut room = self.max;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(room);
                self.got.extend_from_slice(&b[..k]);
                room -= k;
                n += k;
                if room == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn merges_and_writes_in_order_through_partial_writes() {
        let body = b"a,b\n1,2\n3,4\n";
        let cells = b",x,y";
        let mut p = Pieces::default();
        p.push(0, 0..3);
        p.push(1, 0..2);
        p.push(1, 2..2); // empty: dropped
        p.push(0, 3..4);
        p.push(0, 4..7);
        p.push(1, 2..4);
        p.push(0, 7..12);
        assert_eq!(p.as_slice().len(), 5, "{:?}", p.as_slice());
        let sources: [&[u8]; 2] = [body, cells];
        let mut whole = Vec::new();
        p.assemble(&sources, &mut whole);
        assert_eq!(whole, b"a,b,x\n1,2,y\n3,4\n");
        for max in [1, 2, 5, 100] {
            let mut t = Trickle {
                got: Vec::new(),
                max,
            };
            write_chunk_pieces(&mut t, b"{}", &sources, &p).unwrap();
            assert_eq!(
                t.got, b"chunked 1.0,2,16\n{}a,b,x\n1,2,y\n3,4\n",
                "max {max}"
            );
        }
    }

    #[test]
    fn many_pieces_span_several_windows() {
        let src: Vec<u8> = (0..=255u8).cycle().take(3 * WINDOW + 7).collect();
        let mut p = Pieces::default();
        // Every other byte, so nothing merges: 1.5 windows of pieces.
        for i in (0..src.len()).step_by(2) {
            p.push(0, i..i + 1);
        }
        let mut out = Vec::new();
        p.write_to(&[&src], &mut out).unwrap();
        let want: Vec<u8> = src.iter().step_by(2).copied().collect();
        assert_eq!(out, want);
        assert!(p.as_slice().len() > WINDOW);
    }
}
