//! Printing enriched bodies as CSV, JSON lines or a terminal table.

use super::OutFormat;
use crate::protocol::multivalue::{decode, MV_PREFIX};
use crate::protocol::records::{push_field, RowReader};
use std::io::Write;

/// Columns of the table view, with their widths.
const TABLE: &[(&str, usize)] = &[
    ("host", 10),
    ("EventCode", 4),
    ("Image", 18),
    ("hash_sha256", 12),
    ("rep_verdict", 10),
    ("lineage_status", 9),
    ("lineage", 60),
    ("lineage_flags", 40),
];

/// Writes enriched bodies in one format.
pub struct Printer<W: Write> {
    format: OutFormat,
    out: W,
    header: Option<Vec<Vec<u8>>>,
    left: usize,
    line: Vec<u8>,
}

impl<W: Write> Printer<W> {
    /// A printer that prints at most `limit` rows.
    pub fn new(format: OutFormat, out: W, limit: usize) -> Self {
        Printer {
            format,
            out,
            header: None,
            left: limit,
            line: Vec::new(),
        }
    }

    /// Prints the rows of one enriched body.
    pub fn body(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let Some(mut rows) = RowReader::new(body, usize::MAX)? else {
            return Ok(());
        };
        let names = rows.header().names().to_vec();
        let mv: Vec<Option<usize>> = (0..names.len())
            .map(|i| rows.header().mv_position(i))
            .collect();
        if self.header.is_none() {
            self.start(&names)?;
            self.header = Some(names.clone());
        }
        let target = self.header.clone().unwrap_or_default();
        let mut rec = csv::ByteRecord::new();
        while self.left > 0 && rows.read(&mut rec)?.is_some() {
            self.left -= 1;
            let value = |name: &[u8]| -> &[u8] {
                names
                    .iter()
                    .position(|n| n == name)
                    .and_then(|i| rec.get(i))
                    .unwrap_or(b"")
            };
            match self.format {
                OutFormat::Csv => {
                    self.line.clear();
                    for (i, name) in target.iter().enumerate() {
                        if i > 0 {
                            self.line.push(b',');
                        }
                        push_field(&mut self.line, value(name));
                    }
                    self.line.push(b'\n');
                    self.out.write_all(&self.line)?;
                }
                OutFormat::Json => {
                    let mut obj = serde_json::Map::new();
                    for (i, name) in names.iter().enumerate() {
                        if name.starts_with(MV_PREFIX) {
                            continue;
                        }
                        let plain = rec.get(i).unwrap_or(b"");
                        let multi = mv[i].and_then(|m| rec.get(m)).filter(|m| !m.is_empty());
                        let v = match multi {
                            Some(m) => serde_json::Value::Array(
                                decode(m)
                                    .iter()
                                    .map(|v| {
                                        serde_json::Value::String(
                                            String::from_utf8_lossy(v).into_owned(),
                                        )
                                    })
                                    .collect(),
                            ),
                            None if plain.is_empty() => continue,
                            None => serde_json::Value::String(
                                String::from_utf8_lossy(plain).into_owned(),
                            ),
                        };
                        obj.insert(String::from_utf8_lossy(name).into_owned(), v);
                    }
                    serde_json::to_writer(&mut self.out, &obj)?;
                    self.out.write_all(b"\n")?;
                }
                OutFormat::Table => {
                    let mut line = String::new();
                    for (name, width) in TABLE {
                        let raw = String::from_utf8_lossy(value(name.as_bytes())).into_owned();
                        let mut v = match *name {
                            "Image" => raw.rsplit(['\\', '/']).next().unwrap_or("").to_string(),
                            _ => raw.replace('\n', "|"),
                        };
                        let n = v.chars().count();
                        if n > *width {
                            v = if *name == "lineage" {
                                // The near end of a chain says the most.
                                "…".to_string() + &v.chars().skip(n + 1 - width).collect::<String>()
                            } else {
                                v.chars().take(width - 1).collect::<String>() + "…"
                            };
                        }
                        line.push_str(&format!("{v:<width$} "));
                    }
                    writeln!(self.out, "{}", line.trim_end())?;
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, names: &[Vec<u8>]) -> anyhow::Result<()> {
        match self.format {
            OutFormat::Csv => {
                self.line.clear();
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        self.line.push(b',');
                    }
                    push_field(&mut self.line, n);
                }
                self.line.push(b'\n');
                self.out.write_all(&self.line)?;
            }
            OutFormat::Json => {}
            OutFormat::Table => {
                let mut line = String::new();
                for (name, width) in TABLE {
                    let mut n = name.to_string();
                    n.truncate(*width);
                    line.push_str(&format!("{n:<width$} "));
                }
                writeln!(self.out, "{}", line.trim_end())?;
            }
        }
        Ok(())
    }

    /// Flushes the output.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
