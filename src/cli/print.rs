//! Printing enriched bodies as CSV, JSON lines or a terminal table.

use super::table::{self, Column};
use super::OutFormat;
use crate::protocol::multivalue::{decode, MV_PREFIX};
use crate::protocol::records::{push_record, RowReader};
use std::io::Write;

/// Columns of the table view: the fields that say what ran and what the
/// command found, with how readily each is left out of a narrow terminal
/// (see [`table::fit`]) and how narrow its values may wrap.
const TABLE: &[(&str, u8, u16)] = &[
    ("host", 3, 0),
    ("EventCode", 6, 0),
    ("Image", 0, 12),
    ("hash_sha256", 5, 17),
    ("rep_verdict", 1, 0),
    ("rep_label", 7, 10),
    ("lineage_status", 4, 0),
    ("lineage", 0, 24),
    ("lineage_flags", 2, 20),
    ("sigma_titles", 2, 20),
];

/// Columns of [`TABLE`] shown only when the search wrote them (Sigma runs
/// only with rules: without, the column would be empty on every row).
const TABLE_IF_PRESENT: &[&str] = &["sigma_titles"];

/// Rows of the table view held before they are laid out: enough to size
/// the columns on, bounded whatever the input.
const TABLE_BLOCK: usize = 1_000;

/// Writes enriched bodies in one format.
pub struct Printer<W: Write> {
    format: OutFormat,
    out: W,
    header: Option<Vec<Vec<u8>>>,
    left: usize,
    line: Vec<u8>,
    /// Table view: its columns, rows waiting to be laid out, the width.
    columns: Vec<(&'static str, u8, u16)>,
    pending: Vec<Vec<String>>,
    width: u16,
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
            columns: Vec::new(),
            pending: Vec::new(),
            width: table::stdout_width(),
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
                    push_record(&mut self.line, target.iter().map(|name| value(name)));
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
                    let cells = self
                        .columns
                        .iter()
                        .map(|(name, _, _)| table_cell(name, value(name.as_bytes())))
                        .collect();
                    self.pending.push(cells);
                    if self.pending.len() >= TABLE_BLOCK {
                        self.flush_table()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Lays out and writes the rows held for the table view.
    fn flush_table(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let columns: Vec<Column> = self
            .columns
            .iter()
            .map(|(name, priority, min)| {
                let c = Column::new(name, *priority, *min);
                if *name == "lineage" {
                    c.keep_end()
                } else {
                    c
                }
            })
            .collect();
        table::write(
            &mut self.out,
            &columns,
            &self.pending,
            self.width,
            table::ROW_LINES,
        )?;
        self.pending.clear();
        Ok(())
    }

    fn start(&mut self, names: &[Vec<u8>]) -> anyhow::Result<()> {
        self.columns = TABLE
            .iter()
            .filter(|(n, _, _)| {
                !TABLE_IF_PRESENT.contains(n) || names.iter().any(|h| h == n.as_bytes())
            })
            .copied()
            .collect();
        match self.format {
            OutFormat::Csv => {
                self.line.clear();
                push_record(&mut self.line, names);
                self.out.write_all(&self.line)?;
            }
            OutFormat::Json => {}
            OutFormat::Table => {}
        }
        Ok(())
    }

    /// Flushes the output.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.flush_table()?;
        self.out.flush()?;
        Ok(())
    }
}

/// A value as the table view shows it: the file name of an image (its
/// folder is in the CSV and JSON output), a short hash prefix, multivalue
/// fields one value per line.
fn table_cell(name: &str, raw: &[u8]) -> String {
    let raw = String::from_utf8_lossy(raw);
    match name {
        "Image" => raw.rsplit(['\\', '/']).next().unwrap_or("").to_string(),
        "hash_sha256" if raw.chars().count() > 16 => raw.chars().take(16).collect::<String>() + "…",
        _ => raw.replace('\r', ""),
    }
}
