//! Reading exported events: CSV (as `| outputcsv` or the Splunk UI export
//! writes it), JSON lines (one object per event, as `| outputjson`-style
//! exports and the shared datasets' variant), and Windows `.evtx` files.
//!
//! Every reader yields batches as a CSV body in splunkd's shape, so the
//! CLI drives exactly the engine the search command runs.

use crate::protocol::records::push_record;
use crate::sysmon::time::utc_to_epoch;
use crate::sysmon::xml;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One batch of rows as a CSV body (header + rows).
pub type Body = Vec<u8>;

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// Windows event log file.
    Evtx,
}

impl Format {
    /// Guesses from the file name (`.gz` is looked through).
    pub fn from_path(path: &Path) -> Format {
        let name = path.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".evtx") {
            Format::Evtx
        } else if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
            Format::JsonLines
        } else {
            Format::Csv
        }
    }
}

/// Opens a file (or `-` for stdin), transparently gunzipping `.gz`.
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    open_with(path, None)
}

/// [`open`], counting the bytes read (before gunzip) on `progress`.
pub fn open_with(
    path: &Path,
    progress: Option<&super::progress::Progress>,
) -> std::io::Result<Box<dyn BufRead>> {
    let counted = |r: Box<dyn Read>| -> Box<dyn Read> {
        match progress {
            Some(p) => Box::new(p.wrap(r)),
            None => r,
        }
    };
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(counted(
            Box::new(std::io::stdin()),
        ))));
    }
    let file = counted(Box::new(std::fs::File::open(path)?));
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
    {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            file,
        ))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}

/// Reads a CSV stream in batches of `rows`, calling `f` with each body.
pub fn csv_batches(
    input: impl Read,
    rows: usize,
    mut f: impl FnMut(&Body) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = rdr.byte_headers()?.clone();
    let mut head = Vec::new();
    push_record(&mut head, header.iter());
    let mut body = head.clone();
    let mut n = 0;
    let mut rec = csv::ByteRecord::new();
    let mut line = 1u64;
    while rdr.read_byte_record(&mut rec)? {
        line += 1;
        if rec.len() != header.len() {
            log::warn!(
                "CSV row {line} has {} fields, the header has {}: padded/cut to fit",
                rec.len(),
                header.len()
            );
        }
        let fields = (0..header.len()).map(|i| rec.get(i).unwrap_or(b""));
        push_record(&mut body, fields);
        n += 1;
        if n == rows {
            f(&body)?;
            body.clone_from(&head);
            n = 0;
        }
    }
    if n > 0 {
        f(&body)?;
    }
    Ok(())
}

/// Turns a batch of key→value events into a body with the union of keys.
fn body_of(events: &[BTreeMap<String, String>], order: &mut Vec<String>) -> Body {
    for e in events {
        for k in e.keys() {
            if !order.contains(k) {
                order.push(k.clone());
            }
        }
    }
    let mut body = Vec::new();
    push_record(&mut body, order.iter().map(|k| k.as_bytes()));
    for e in events {
        push_record(
            &mut body,
            order
                .iter()
                .map(|k| e.get(k).map_or(&b""[..], |v| v.as_bytes())),
        );
    }
    body
}

/// Reads JSON lines in batches. Values that are not strings are written as
/// their JSON text; a line that is not a JSON object is reported and skipped.
pub fn jsonl_batches(
    input: impl BufRead,
    rows: usize,
    mut f: impl FnMut(&Body) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut order = Vec::new();
    let mut batch = Vec::with_capacity(rows);
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line) {
            Ok(obj) => {
                let e = obj
                    .into_iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect();
                batch.push(e);
            }
            Err(e) => log::warn!("JSON line {}: not an object ({e}); skipped", n + 1),
        }
        if batch.len() == rows {
            f(&body_of(&batch, &mut order))?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        f(&body_of(&batch, &mut order))?;
    }
    Ok(())
}

/// Reads the Sysmon records of an `.evtx` file in batches, in the shape the
/// Splunk add-on gives them (EventData names as fields, `EventCode`,
/// `Computer`, `_time` from `UtcTime`, `_raw` as XML). Other channels are
/// skipped; a damaged record is reported and skipped.
pub fn evtx_batches(
    path: &Path,
    rows: usize,
    mut f: impl FnMut(&Body) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut parser = evtx::EvtxParser::from_path(path)
        .map_err(|e| anyhow::anyhow!("{}: not a readable .evtx file: {e}", path.display()))?;
    let mut events: Vec<BTreeMap<String, String>> = Vec::new();
    // Splunk returns newest first; an .evtx file is oldest first.
    for record in parser.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{}: damaged record skipped: {e}", path.display());
                continue;
            }
        };
        let Some(x) = xml::parse_event_xml(record.data.as_bytes()) else {
            continue;
        };
        if x.channel.as_deref() != Some("Microsoft-Windows-Sysmon/Operational") {
            continue;
        }
        let mut e = BTreeMap::new();
        if let Some(code) = x.event_id {
            e.insert("EventCode".to_string(), code.to_string());
        }
        if let Some(c) = &x.computer {
            e.insert("Computer".to_string(), c.clone());
            e.insert(
                "host".to_string(),
                c.split('.').next().unwrap_or(c).to_string(),
            );
        }
        for (k, v) in &x.data {
            e.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(t) = x.get("UtcTime").and_then(utc_to_epoch) {
            e.insert("_time".to_string(), format!("{t:.3}"));
        }
        e.insert("_raw".to_string(), record.data.replace(['\n', '\r'], ""));
        events.push(e);
    }
    events.sort_by(|a, b| {
        let t = |e: &BTreeMap<String, String>| {
            e.get("_time")
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        t(b).total_cmp(&t(a))
    });
    let mut order = Vec::new();
    for batch in events.chunks(rows.max(1)) {
        f(&body_of(batch, &mut order))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_batches_keep_rows() {
        let text = "a,b\n1,\"x,y\"\n2,3\n3,4\n";
        let mut bodies = Vec::new();
        csv_batches(text.as_bytes(), 2, |b| {
            bodies.push(String::from_utf8(b.clone()).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(bodies, vec!["a,b\n1,\"x,y\"\n2,3\n", "a,b\n3,4\n"]);
    }

    #[test]
    fn jsonl_union_of_keys() {
        let text = "{\"a\":\"1\"}\nnot json\n{\"b\":2}\n";
        let mut bodies = Vec::new();
        jsonl_batches(text.as_bytes(), 10, |b| {
            bodies.push(String::from_utf8(b.clone()).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(bodies, vec!["a,b\n1,\n,2\n"]);
    }
}
