//! The body of `search/jobs/export?output_mode=json`, read as it streams:
//! one JSON object per line, `{"preview":false,"result":{…}}`, or one with
//! `messages`, or `lastrow`. Only the current line is held, so a search
//! that returns a million rows costs one row of memory here.

use serde_json::{Map, Value};

/// The longest line kept: a longer one (a result with a runaway field) is
/// dropped whole rather than grown without bound.
const MAX_LINE: usize = 64 << 20;

/// Splits a streamed export body into lines and hands the results on.
#[derive(Default)]
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// The current line is over [`MAX_LINE`]: skip to its end.
    skipping: bool,
    messages: Vec<(String, String)>,
}

impl Lines {
    /// Takes the next piece of the body; false once `on_result` said stop.
    pub(crate) fn feed(
        &mut self,
        mut chunk: &[u8],
        on_result: &mut dyn FnMut(Map<String, Value>) -> bool,
    ) -> bool {
        while let Some(i) = memchr::memchr(b'\n', chunk) {
            let go_on = if self.skipping {
                self.skipping = false;
                true
            } else if self.buf.is_empty() {
                line(&chunk[..i], &mut self.messages, on_result)
            } else {
                self.buf.extend_from_slice(&chunk[..i]);
                let whole = std::mem::take(&mut self.buf);
                let go_on = line(&whole, &mut self.messages, on_result);
                self.buf = whole;
                self.buf.clear();
                go_on
            };
            if !go_on {
                return false;
            }
            chunk = &chunk[i + 1..];
        }
        if !self.skipping {
            if self.buf.len() + chunk.len() > MAX_LINE {
                self.buf.clear();
                self.skipping = true;
            } else {
                self.buf.extend_from_slice(chunk);
            }
        }
        true
    }

    /// The body ended: whatever is left is one more line.
    pub(crate) fn finish(&mut self, on_result: &mut dyn FnMut(Map<String, Value>) -> bool) {
        if !self.skipping && !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            line(&rest, &mut self.messages, on_result);
        }
    }

    /// splunkd's messages, `(type, text)`.
    pub(crate) fn into_messages(self) -> Vec<(String, String)> {
        self.messages
    }
}

/// One line. Preview results (a reporting search's partial tables) are
/// skipped: the final ones follow. Unreadable lines are skipped. Returns
/// false to stop.
fn line(
    line: &[u8],
    messages: &mut Vec<(String, String)>,
    on_result: &mut dyn FnMut(Map<String, Value>) -> bool,
) -> bool {
    let line = line.trim_ascii();
    if line.is_empty() {
        return true;
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice(line) else {
        return true;
    };
    if let Some(Value::Array(list)) = obj.get("messages") {
        for m in list {
            let field = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            messages.push((field("type"), field("text")));
        }
    }
    if obj.get("preview").and_then(|p| p.as_bool()) == Some(true) {
        return true;
    }
    match obj.remove("result") {
        Some(Value::Object(result)) => on_result(result),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"{\"preview\":true,\"result\":{\"a\":\"0\"}}\n{\"preview\":false,\"offset\":0,\"result\":{\"a\":\"1\",\"x\":[\"1\",\"2\"]}}\n\n{\"messages\":[{\"type\":\"INFO\",\"text\":\"hi\"}]}\ngarbage\n{\"preview\":false,\"lastrow\":true,\"result\":{\"a\":\"2\"}}";

    fn run(pieces: &[&[u8]], stop_after: usize) -> (Vec<String>, Vec<(String, String)>) {
        let mut got = Vec::new();
        let mut take = |r: Map<String, Value>| {
            got.push(r["a"].as_str().unwrap_or("").to_string());
            got.len() < stop_after
        };
        let mut lines = Lines::default();
        let mut go_on = true;
        for p in pieces {
            go_on = lines.feed(p, &mut take);
            if !go_on {
                break;
            }
        }
        if go_on {
            lines.finish(&mut take);
        }
        (got, lines.into_messages())
    }

    #[test]
    fn results_in_one_piece_or_byte_by_byte() {
        let (got, messages) = run(&[BODY], usize::MAX);
        assert_eq!(got, ["1", "2"]);
        assert_eq!(messages, [("INFO".to_string(), "hi".to_string())]);
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(run(&bytes, usize::MAX).0, ["1", "2"]);
        let odd: Vec<&[u8]> = BODY.chunks(7).collect();
        assert_eq!(run(&odd, usize::MAX).0, ["1", "2"]);
    }

    #[test]
    fn stops_when_asked() {
        assert_eq!(run(&[BODY], 1).0, ["1"]);
    }
}
