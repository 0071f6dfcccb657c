//! `sysmonenrich search 'SPL'`: a blocking export search through splunkd's
//! REST API, cut at a row limit, printed, and optionally piped through the
//! same engine as `| sysmonenrich`.
//!
//! The results arrive as JSON objects (`output_mode=json`); they are turned
//! into the CSV body splunkd would send the command (union of the keys in
//! order of first appearance, multivalue fields as a `\n`-joined value plus
//! an `__mv_` column), so `--enrich` runs exactly what the search bar runs.

use super::enrich::EnrichRun;
use super::table::{self, Column};
use super::OutFormat;
use crate::protocol::multivalue::encode_into;
use crate::protocol::records::push_record;
use crate::splunk::Client as Rest;
use serde_json::{Map, Value};
use std::io::Write;
use std::time::Duration;

/// Rows per engine batch (what splunkd sends at most per chunk).
const BATCH: usize = 50_000;

/// What `search` was asked.
#[derive(clap::Args, Debug, Clone)]
pub struct SearchArgs {
    /// The search, as typed in the search bar (`search ` is added when
    /// it starts with neither `search` nor `|`).
    pub spl: String,
    /// Earliest time (`-24h`, `-7d@d`, an epoch, an ISO time; empty =
    /// all time).
    #[arg(long, default_value = "-24h", allow_hyphen_values = true)]
    pub earliest: String,
    /// Latest time.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub latest: String,
    /// Stop after this many results (0 = all of them, held in memory).
    #[arg(long, default_value_t = 100)]
    pub max_rows: usize,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = OutFormat::Csv)]
    pub format: OutFormat,
    /// Pipe the results through the enrichment (as `| sysmonenrich`).
    #[arg(long)]
    pub enrich: bool,
    /// Enrichment options as in the search bar, e.g. `max_depth=10`
    /// (with --enrich).
    #[arg(long = "option", short = 'o', value_name = "NAME=VALUE")]
    pub options: Vec<String>,
    /// Longest the search may run, e.g. `90s`, `10m`.
    #[arg(long, default_value = "10m", value_parser = super::parse_duration)]
    pub timeout: Duration,
}

/// The search as splunkd's export endpoint wants it: a search that does not
/// start with a generating command (`| tstats …`) or `search` gets the
/// implicit `search ` the search bar adds.
pub fn normalize_spl(spl: &str) -> String {
    let s = spl.trim();
    let first = s.split_whitespace().next().unwrap_or("");
    if s.starts_with('|') || first.eq_ignore_ascii_case("search") {
        s.to_string()
    } else {
        format!("search {s}")
    }
}

/// Runs the search and prints the results.
pub fn run(rest: &Rest, args: &SearchArgs) -> anyhow::Result<()> {
    if !args.options.is_empty() && !args.enrich {
        anyhow::bail!("-o/--option sets options of the enrichment: add --enrich");
    }
    // Bad options should fail before the search runs, not after.
    let options = if args.enrich {
        Some(super::options(&args.options)?)
    } else {
        None
    };
    if args.spl.trim().is_empty() {
        anyhow::bail!("the search is empty");
    }
    let spl = normalize_spl(&args.spl);
    let mut form = vec![("search", spl.as_str()), ("output_mode", "json")];
    if !args.earliest.is_empty() {
        form.push(("earliest_time", args.earliest.as_str()));
    }
    if !args.latest.is_empty() {
        form.push(("latest_time", args.latest.as_str()));
    }
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    let limit = if args.max_rows == 0 {
        usize::MAX
    } else {
        args.max_rows
    };
    let messages = rest.export(&form, args.timeout, &mut |r| {
        rows.push(r);
        rows.len() < limit
    })?;
    let mut failed = None;
    for (kind, text) in &messages {
        match kind.to_ascii_uppercase().as_str() {
            "FATAL" | "ERROR" => {
                eprintln!("splunkd: {kind}: {text}");
                failed.get_or_insert_with(|| text.clone());
            }
            "WARN" | "WARNING" => eprintln!("splunkd: {kind}: {text}"),
            _ => {}
        }
    }
    if let (Some(text), true) = (failed, rows.is_empty()) {
        anyhow::bail!("the search failed: {text}");
    }

    match options {
        Some(options) => {
            // Ancestors outside the results are searched for like the
            // command does, with this session.
            let backfill = match rest.duplicate() {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("sysmonenrich: warning: backfill disabled: {e}");
                    None
                }
            };
            let mut run = EnrichRun::with_backfill(options, args.format, backfill);
            let mut order = Vec::new();
            for batch in rows.chunks(BATCH) {
                run.body(&"search results", &body_of(batch, &mut order))?;
            }
            run.finish()?;
        }
        None => print_plain(&rows, args.format)?,
    }
    let n = rows.len();
    if n == limit {
        eprintln!("{n} results (stopped at --max-rows {limit}; there may be more)");
    } else {
        eprintln!("{n} results");
    }
    Ok(())
}

/// A result value as one cell, and its values when it is multivalue.
fn cell(v: &Value) -> (String, Option<Vec<String>>) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match v {
        Value::Array(items) => {
            let values: Vec<String> = items.iter().map(text).collect();
            (values.join("\n"), Some(values))
        }
        other => (text(other), None),
    }
}

/// The CSV body splunkd would send for these results: the union of their
/// keys (`order` carries the column order across batches), and an
/// `__mv_<field>` column for every field that is multivalue in some row.
pub fn body_of(rows: &[Map<String, Value>], order: &mut Vec<String>) -> Vec<u8> {
    for r in rows {
        for k in r.keys() {
            if !order.contains(k) {
                order.push(k.clone());
            }
        }
    }
    let multi: Vec<bool> = order
        .iter()
        .map(|k| {
            rows.iter()
                .any(|r| matches!(r.get(k), Some(Value::Array(_))))
        })
        .collect();
    let mut body = Vec::new();
    let header = order.iter().zip(&multi).flat_map(|(k, m)| {
        let mv = m.then(|| format!("__mv_{k}"));
        std::iter::once(k.clone()).chain(mv)
    });
    push_record(&mut body, header);
    let mut fields = Vec::new();
    for r in rows {
        fields.clear();
        for (k, m) in order.iter().zip(&multi) {
            let (plain, values) = r.get(k).map(cell).unwrap_or_default();
            fields.push(plain.into_bytes());
            if *m {
                let mut mv = Vec::new();
                // A single value leaves `__mv_` empty (SCPV2 §6).
                if let Some(values) = values.filter(|v| v.len() > 1) {
                    encode_into(&values, &mut mv);
                }
                fields.push(mv);
            }
        }
        push_record(&mut body, &fields);
    }
    body
}

/// Prints results without enrichment.
fn print_plain(rows: &[Map<String, Value>], format: OutFormat) -> anyhow::Result<()> {
    let mut out = super::output::stdout();
    match format {
        OutFormat::Json => {
            for r in rows {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
        }
        OutFormat::Csv => {
            let mut order: Vec<String> = Vec::new();
            for r in rows {
                for k in r.keys() {
                    if !order.contains(k) {
                        order.push(k.clone());
                    }
                }
            }
            let mut w = csv::Writer::from_writer(&mut out);
            if !order.is_empty() {
                w.write_record(&order)?;
            }
            for r in rows {
                w.write_record(
                    order
                        .iter()
                        .map(|k| r.get(k).map(cell).unwrap_or_default().0),
                )?;
            }
            w.flush()?;
        }
        OutFormat::Table => table(rows, &mut out, table::stdout_width())?,
    }
    out.flush()?;
    Ok(())
}

/// A terminal table: `_time` and the fields people care about, not
/// splunkd's internal `_` fields (`_raw` only when nothing else is there),
/// laid out by the shared printer (`table.rs`) like `enrich -f table`:
/// whole field names, the terminal's width, later columns left out first
/// when they do not fit.
fn table(rows: &[Map<String, Value>], out: &mut impl Write, width: u16) -> anyhow::Result<()> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if (k == "_time" || !k.starts_with('_')) && !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    cols.sort_by_key(|k| k != "_time");
    if cols.iter().all(|k| k == "_time") && rows.iter().any(|r| r.contains_key("_raw")) {
        cols.push("_raw".into());
    }
    if cols.is_empty() {
        return Ok(());
    }
    // The first column always stays; then the search's own order.
    let columns: Vec<Column> = cols
        .iter()
        .enumerate()
        .map(|(i, k)| Column::new(k, u8::try_from(i).unwrap_or(u8::MAX), 0))
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|k| r.get(k).map(cell).unwrap_or_default().0.replace('\r', ""))
                .collect()
        })
        .collect();
    table::write(out, &columns, &cells, width, table::ROW_LINES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: serde_json::Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn spl_prefix() {
        assert_eq!(normalize_spl("index=main"), "search index=main");
        assert_eq!(normalize_spl("  search index=x"), "search index=x");
        assert_eq!(normalize_spl("SEARCH index=x"), "SEARCH index=x");
        assert_eq!(normalize_spl("| tstats count"), "| tstats count");
        assert_eq!(normalize_spl("searchable=1"), "search searchable=1");
    }

    #[test]
    fn bodies_with_union_and_multivalue() {
        let rows = [
            obj(serde_json::json!({"a": "1", "m": ["x", "y"]})),
            obj(serde_json::json!({"b": "q,\"r\"", "m": "z"})),
        ];
        let mut order = Vec::new();
        let body = String::from_utf8(body_of(&rows, &mut order)).unwrap();
        assert_eq!(
            body,
            "a,m,__mv_m,b\n1,\"x\ny\",$x$;$y$,\n,z,,\"q,\"\"r\"\"\"\n"
        );
    }

    #[test]
    fn tables_show_whole_names_and_values() {
        let long = "ParentProcessGuid_as_reported_by_the_forwarder_tag";
        let value = r"C:\Program Files\Some Vendor\Agent\bin\agent-service-host.exe";
        let rows = [obj(serde_json::json!({
            "_time": "2024-05-01T10:00:00",
            "_cd": "1:2",
            long: value,
            "multi": ["a", "b"],
        }))];
        let mut out = Vec::new();
        table(&rows, &mut out, 160).unwrap();
        let text = String::from_utf8(out).unwrap();
        let header = text.lines().next().unwrap();
        assert!(header.trim_start().starts_with("_time"), "{text}");
        assert!(header.contains(long), "{text}");
        assert!(text.contains(value), "{text}");
        assert!(!text.contains("_cd"), "{text}");
        assert!(!text.contains('…'), "{text}");
        // Narrow: later columns go whole, none is cut.
        let mut out = Vec::new();
        table(&rows, &mut out, 40).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("ParentProcessGuid_as"), "{text}");
        assert!(
            text.lines()
                .next()
                .unwrap()
                .trim_start()
                .starts_with("_time"),
            "{text}"
        );
    }
}
