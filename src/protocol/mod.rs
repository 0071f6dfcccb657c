//! Splunk's chunked custom search command protocol, version 2.
//!
//! This module knows nothing about Sysmon: it moves chunks, decodes and
//! encodes their metadata, and reads and writes CSV bodies.
//!
//! # Wire format
//!
//! Both directions carry the same frame (`chunk.rs`):
//!
//! ```text
//! chunked 1.0,<metadata bytes>,<body bytes>\n<metadata JSON><body CSV>
//! ```
//!
//! ## getinfo (splunkd → command, first chunk, body empty)
//! `{"action":"getinfo","preview":false,"searchinfo":{"args":[…],
//! "session_key":…,"splunkd_uri":…,"search":"<percent-encoded>",…}}`.
//! The reply (`metadata.rs`, [`metadata::GetInfoReply`]) says how splunkd
//! must schedule us (`type`) and which fields to send (`required_fields`).
//!
//! ## execute (splunkd → command, 1..n chunks)
//! `{"action":"execute","finished":false|true}` plus a CSV body: header row,
//! plain columns first, then `__mv_` columns (`multivalue.rs`), hidden
//! `_chunked_idx` by which splunkd merges our output back. The reply echoes
//! `finished` and carries the rows, each with its own header.
//!
//! ## Lock-step
//! Exactly one reply per request, written only after the whole request was
//! read (SDK #299/#301: two replies desynchronise splunkd). [`Channel`]
//! enforces it: it will not read a new request while a reply is owed, nor
//! write a reply nobody asked for.
//!
//! ## Errors
//! A failure after a request arrived is answered with
//! `{"finished":true,"inspector":{"messages":[["ERROR",…]]},"error":…}`
//! and a non-zero exit (SCPV2 §8).

pub mod chunk;
pub mod metadata;
pub mod multivalue;
pub mod pieces;
pub mod records;

pub use chunk::{Chunk, ChunkError, Limits};
pub use metadata::{Action, Request};

use std::io::{self, BufRead, Write};

/// Why a request could not be taken from the channel.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Framing.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The metadata is not the JSON we expect.
    #[error("chunk metadata is not valid request JSON: {0}")]
    Metadata(#[from] serde_json::Error),
    /// A read was attempted while the previous request was unanswered.
    #[error("protocol misuse: a reply is still owed for request {0}")]
    ReplyOwed(u64),
    /// A reply was attempted with no request waiting for it.
    #[error("protocol misuse: no request is waiting for a reply")]
    NoRequest,
    /// Writing to splunkd failed.
    #[error("writing the reply failed: {0}")]
    Write(#[source] io::Error),
}

/// The one owner of stdin and stdout (mini-redis' `Connection`).
pub struct Channel<R, W> {
    input: R,
    output: W,
    limits: Limits,
    chunk: Chunk,
    requests: u64,
    owed: bool,
}

impl<R: BufRead, W: Write> Channel<R, W> {
    /// Wraps the two streams.
    pub fn new(input: R, output: W, limits: Limits) -> Self {
        Channel {
            input,
            output,
            limits,
            chunk: Chunk::default(),
            requests: 0,
            owed: false,
        }
    }

    /// Reads the next request. `Ok(None)` is a clean EOF between chunks.
    /// After an error that happened once bytes of a request arrived, a reply
    /// is owed ([`Channel::reply_owed`]).
    pub fn read_request(&mut self) -> Result<Option<(Request, &[u8])>, ProtocolError> {
        if self.owed {
            return Err(ProtocolError::ReplyOwed(self.requests));
        }
        let got = match chunk::read_chunk(&mut self.input, &self.limits, &mut self.chunk) {
            Ok(got) => got,
            Err(e) => {
                // Something arrived; splunkd (if still listening) waits for an answer.
                self.owed = true;
                self.requests += 1;
                return Err(e.into());
            }
        };
        if !got {
            return Ok(None);
        }
        self.requests += 1;
        self.owed = true;
        let request = Request::from_slice(&self.chunk.metadata)?;
        Ok(Some((request, &self.chunk.body)))
    }

    /// The body of the last request (valid until the next read).
    pub fn body(&self) -> &[u8] {
        &self.chunk.body
    }

    /// Writes the reply owed for the last request.
    pub fn reply(&mut self, metadata: &[u8], body: &[u8]) -> Result<(), ProtocolError> {
        if !self.owed {
            return Err(ProtocolError::NoRequest);
        }
        self.owed = false;
        chunk::write_chunk(&mut self.output, metadata, body).map_err(ProtocolError::Write)
    }

    /// Writes the reply owed for the last request, its body given as
    /// pieces of the request body (source 0) and of `extra` (sources 1..).
    pub fn reply_pieces(
        &mut self,
        metadata: &[u8],
        extra: &[&[u8]],
        pieces: &pieces::Pieces,
    ) -> Result<(), ProtocolError> {
        if !self.owed {
            return Err(ProtocolError::NoRequest);
        }
        self.owed = false;
        let mut sources: Vec<&[u8]> = Vec::with_capacity(extra.len() + 1);
        sources.push(&self.chunk.body);
        sources.extend_from_slice(extra);
        pieces::write_chunk_pieces(&mut self.output, metadata, &sources, pieces)
            .map_err(ProtocolError::Write)
    }

    /// True when the last request has not been answered yet.
    pub fn reply_owed(&self) -> bool {
        self.owed
    }

    /// Requests read so far (1-based number of the current one).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_step_is_enforced() {
        let input =
            b"chunked 1.0,20,0\n{\"action\":\"getinfo\"}chunked 1.0,20,0\n{\"action\":\"execute\"}";
        let mut out = Vec::new();
        let mut ch = Channel::new(&input[..], &mut out, Limits::default());
        assert!(matches!(
            ch.reply(b"{}", b""),
            Err(ProtocolError::NoRequest)
        ));
        let (r, _) = ch.read_request().unwrap().unwrap();
        assert_eq!(r.action, Action::GetInfo);
        assert!(matches!(
            ch.read_request(),
            Err(ProtocolError::ReplyOwed(1))
        ));
        ch.reply(b"{}", b"").unwrap();
        let (r, _) = ch.read_request().unwrap().unwrap();
        assert_eq!(r.action, Action::Execute);
        ch.reply(b"{}", b"").unwrap();
        assert!(ch.read_request().unwrap().is_none());
        assert_eq!(out, b"chunked 1.0,2,0\n{}chunked 1.0,2,0\n{}");
    }
}
