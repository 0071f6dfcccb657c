//! `sysmonenrich demo`: the command's point, shown with nothing but the
//! binary.
//!
//! A first look has to answer "what would this find in my data?", so the
//! demo leads with its findings (flagged lineages with their chains,
//! malicious and suspicious hashes with where they ran), then shows a few
//! enriched events whole, then the per-search summary that Splunk's job
//! inspector would show. Rows in generation order would bury all of that
//! under image loads and registry writes.
//!
//! The data is [`crate::synth`]'s ordinary sessions with two planted
//! incidents ([`Incident`]); the reputation comes from a demo deny list
//! held in memory (the `local` provider's format, never the app's shipped
//! lookup, never the network), and the flags from the shipped lineage
//! rules. Everything is seeded, so two runs print the same.

use super::print::Printer;
use super::progress::thousands;
use super::table::{self, Column};
use super::OutFormat;
use crate::config::options::Options;
use crate::config::settings::Settings;
use crate::enrich::enricher::{Context, Enricher};
use crate::lineage::Rules;
use crate::protocol::multivalue::MV_PREFIX;
use crate::protocol::records::{push_record, RowReader};
use crate::reputation::{LocalList, MemoryStore, SearchOptions, Service};
use crate::synth::{self, Generator, Incident, SynthEvent};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;

/// The generator's seed and machine count: fixed, so the demo repeats.
const SEED: u64 = 2026;
const HOSTS: usize = 4;
/// Rows per enrichment batch, as splunkd's largest chunk.
const CHUNK: usize = 50_000;
/// Lines of each findings table before "and N more".
const SHOWN: usize = 10;
/// Distinct chains or hash locations remembered (bounds memory for a huge
/// `--rows`).
const MAX_GROUPS: usize = 10_000;
/// Events the incidents add, roughly: the ordinary sessions stop this
/// short of `rows` so the incidents are among the newest rows.
const INCIDENT_ROOM: usize = 60;

/// Runs the demo: `rows` events, `show` of them printed whole.
pub fn run(rows: usize, format: OutFormat, show: usize) -> anyhow::Result<()> {
    let events = generate(rows);
    let mut enricher = engine()?;
    let rules = Rules::builtin().unwrap_or_else(|_| Rules::empty());
    let mut findings = Findings::new(&rules);
    let mut out = Vec::new();
    for batch in events.chunks(CHUNK) {
        enricher.process(&body(batch), &mut out)?;
        findings.add(&out, show)?;
    }
    enricher.finish();
    let mut w = super::output::stdout();
    let width = table::stdout_width();
    writeln!(
        w,
        "sysmonenrich demo: {} generated Sysmon events from {HOSTS} hosts, enriched as\n\
         `| sysmonenrich` would: lineage with the shipped rules, reputation from a demo\n\
         deny list (no network)\n",
        thousands(events.len() as u64)
    )?;
    findings.write_lineages(&mut w, width)?;
    findings.write_hashes(&mut w, width)?;
    findings.write_examples(&mut w, format, show, width)?;
    writeln!(w, "Summary\n")?;
    writeln!(w, "{}", enricher.summary())?;
    if let Some((_, text)) = enricher.reputation_summary() {
        writeln!(w, "{text}")?;
    }
    for warning in enricher.take_warnings() {
        writeln!(w, "{warning}")?;
    }
    w.flush()?;
    Ok(())
}

/// `rows` events, newest first: ordinary sessions, then (newest) the two
/// incidents with one more session between them.
pub fn generate(rows: usize) -> Vec<SynthEvent> {
    let mut g = Generator::new(SEED, HOSTS);
    let mut blocks: Vec<Vec<SynthEvent>> = Vec::new();
    let mut total = 0;
    while total + INCIDENT_ROOM < rows {
        let block = g.block(40);
        total += block.len();
        blocks.push(block);
    }
    blocks.push(g.incident(Incident::MacroDropper));
    blocks.push(g.block(8));
    blocks.push(g.incident(Incident::WmiLateral));
    // Blocks move forward in time; a search returns newest first.
    blocks.into_iter().rev().flatten().take(rows).collect()
}

/// The demo's deny list, in the `local` provider's CSV format: the
/// incidents' payloads by MD5 and SHA-256 (Sysmon may be configured to log
/// either), and one allowed browser.
pub fn deny_list() -> String {
    let mut csv = String::from("hash,verdict,label,comment\n");
    let entries = [
        (synth::DROPPER_IMAGE, "malicious", "Demo.Trojan.Dropper"),
        (synth::DUMPER_IMAGE, "suspicious", "ProcDump (renamed)"),
        (
            "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
            "known_good",
            "Google Chrome",
        ),
    ];
    for (image, verdict, label) in entries {
        let hashes = synth::hashes_for(image, 0);
        for part in hashes.split(',') {
            if let Some(("MD5" | "SHA256", hex)) = part.split_once('=') {
                csv.push_str(&format!("{hex},{verdict},{label},sysmonenrich demo\n"));
            }
        }
    }
    csv
}

/// The search's engine: lineage with the shipped rules, reputation from
/// the demo list only, nothing persisted.
fn engine() -> anyhow::Result<Enricher> {
    let options = Options::default_offline();
    let settings = Settings::builtin();
    let list = LocalList::from_reader(deny_list().as_bytes(), "demo deny list")?;
    let search = SearchOptions {
        providers: vec!["local".to_string()],
        max_lookups: options.max_lookups,
        lookup_budget: options.lookup_budget,
        refresh: false,
    };
    let service = Service::builder(
        settings.reputation.clone(),
        search,
        Arc::new(MemoryStore::new()),
    )
    .local_list(list)
    .build()?;
    let context = Context {
        rules: Some(Rules::builtin()?),
        reputation: Some(service),
        ..Context::default()
    };
    Ok(Enricher::with_context(options, settings, context))
}

/// One CSV body of `events`, as the CLI reads exported files.
fn body(events: &[SynthEvent]) -> Vec<u8> {
    let mut body = Vec::new();
    push_record(&mut body, synth::COLUMNS);
    for e in events {
        synth::csv_row(&mut body, e);
    }
    body
}

/// The process creations that matched one set of lineage rules, with the
/// chain of one of them.
#[derive(Default)]
struct Flagged {
    severity: Option<crate::lineage::Severity>,
    hosts: BTreeSet<String>,
    count: u64,
    /// The example: a chain with a listed binary in it if there is one,
    /// else the newest.
    chain: String,
    host: String,
    time: String,
    listed: bool,
}

/// Where a listed hash ran.
#[derive(Default)]
struct Sighting {
    label: String,
    events: u64,
    creations: u64,
}

/// Why an event is worth showing whole; lower shows first.
const PICKS: [&str; 4] = [
    "a binary on the deny list",
    "a child of a malicious process",
    "a dual-use tool",
    "the most severe lineage flag",
];

/// What the demo found, gathered body by body.
struct Findings {
    severity: HashMap<String, crate::lineage::Severity>,
    /// By the flags, one per line.
    flagged: HashMap<String, Flagged>,
    /// By (verdict, hash, host, Image).
    hashes: HashMap<(String, String, String, String), Sighting>,
    header: Option<Vec<Vec<u8>>>,
    /// Chosen events, by pick (see [`PICKS`]; `PICKS.len()` = other flags).
    examples: Vec<(usize, csv::ByteRecord)>,
}

impl Findings {
    fn new(rules: &Rules) -> Findings {
        Findings {
            severity: rules
                .rules()
                .iter()
                .map(|r| (r.name().to_string(), r.severity()))
                .collect(),
            flagged: HashMap::new(),
            hashes: HashMap::new(),
            header: None,
            examples: Vec::new(),
        }
    }

    /// Adds one enriched body; keeps at most `show` examples.
    fn add(&mut self, body: &[u8], show: usize) -> anyhow::Result<()> {
        let Some(mut rows) = RowReader::new(body, usize::MAX)? else {
            return Ok(());
        };
        let names = rows.header().names().to_vec();
        let col = |n: &str| names.iter().position(|x| x == n.as_bytes());
        let [time, host, code, image, verdict, label, lineage, flags, ancestor, sha256, sha1, md5] =
            [
                "_time",
                "host",
                "EventCode",
                "Image",
                "rep_verdict",
                "rep_label",
                "lineage",
                "lineage_flags",
                "lineage_malicious_ancestor",
                "hash_sha256",
                "hash_sha1",
                "hash_md5",
            ]
            .map(col);
        if self.header.is_none() {
            self.header = Some(names.clone());
        }
        let mut rec = csv::ByteRecord::new();
        while rows.read(&mut rec)?.is_some() {
            let get = |c: Option<usize>| -> String {
                c.and_then(|i| rec.get(i))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let creation = get(code) == "1";
            let v = get(verdict);
            if v == "malicious" || v == "suspicious" {
                let hash = [sha256, sha1, md5]
                    .into_iter()
                    .map(get)
                    .find(|h| !h.is_empty())
                    .unwrap_or_default();
                let key = (v.clone(), hash, get(host), get(image));
                if self.hashes.len() < MAX_GROUPS || self.hashes.contains_key(&key) {
                    let s = self.hashes.entry(key).or_default();
                    s.label = get(label);
                    s.events += 1;
                    s.creations += u64::from(creation);
                }
            }
            let f = get(flags);
            if !creation {
                continue;
            }
            let worst = f
                .lines()
                .filter_map(|n| self.severity.get(n))
                .max()
                .copied();
            if !f.is_empty() {
                let listed = v == "malicious" || v == "suspicious" || !get(ancestor).is_empty();
                if self.flagged.len() < MAX_GROUPS || self.flagged.contains_key(&f) {
                    let g = self.flagged.entry(f.clone()).or_default();
                    g.severity = worst;
                    g.hosts.insert(get(host));
                    g.count += 1;
                    if g.chain.is_empty() || (listed && !g.listed) {
                        g.chain = get(lineage);
                        g.host = get(host);
                        g.time = utc(&get(time));
                        g.listed = listed;
                    }
                }
            }
            let pick = if v == "malicious" {
                Some(0)
            } else if !get(ancestor).is_empty() {
                Some(1)
            } else if v == "suspicious" {
                Some(2)
            } else if worst >= Some(crate::lineage::Severity::High) {
                Some(3)
            } else if !f.is_empty() {
                Some(PICKS.len())
            } else {
                None
            };
            if let Some(p) = pick {
                let taken = self.examples.iter().filter(|(q, _)| *q == p).count();
                let room = if p < PICKS.len() { 1 } else { show };
                if taken < room {
                    self.examples.push((p, rec.clone()));
                    self.examples.sort_by_key(|(q, _)| *q);
                    self.examples.truncate(show);
                }
            }
        }
        Ok(())
    }

    fn write_lineages(&self, w: &mut impl Write, width: u16) -> anyhow::Result<()> {
        let mut groups: Vec<(&String, &Flagged)> = self.flagged.iter().collect();
        // Worst first; among equals, the ones with a listed binary in the
        // chain, then the most frequent.
        groups.sort_by(|a, b| {
            (b.1.severity, b.1.listed, b.1.count, a.0).cmp(&(
                a.1.severity,
                a.1.listed,
                a.1.count,
                b.0,
            ))
        });
        let creations: u64 = groups.iter().map(|g| g.1.count).sum();
        writeln!(
            w,
            "Flagged lineages: {} process creations matched the lineage rules,\n\
             in {} combinations of rules (one example chain each)\n",
            thousands(creations),
            thousands(groups.len() as u64)
        )?;
        let columns = [
            Column::new("severity", 1, 0),
            Column::new("lineage_flags", 0, 20),
            Column::new("creations", 3, 0),
            Column::new("hosts", 4, 0),
            Column::new("lineage", 0, 30).keep_end(),
            Column::new("host", 2, 0),
            Column::new("_time", 5, 0),
        ];
        let rows: Vec<Vec<String>> = groups
            .iter()
            .take(SHOWN)
            .map(|(flags, g)| {
                vec![
                    g.severity.map_or("", |s| s.as_str()).to_string(),
                    flags.to_string(),
                    g.count.to_string(),
                    g.hosts.len().to_string(),
                    g.chain.clone(),
                    g.host.clone(),
                    g.time.clone(),
                ]
            })
            .collect();
        table::write(w, &columns, &rows, width, table::ROW_LINES)?;
        more(w, groups.len())
    }

    fn write_hashes(&self, w: &mut impl Write, width: u16) -> anyhow::Result<()> {
        let mut sightings: Vec<_> = self.hashes.iter().collect();
        sightings.sort_by(|a, b| (&a.0 .0, b.1.events, a.0).cmp(&(&b.0 .0, a.1.events, b.0)));
        let distinct: BTreeSet<&String> = sightings.iter().map(|s| &s.0 .1).collect();
        writeln!(
            w,
            "Malicious and suspicious hashes: {} on the deny list, and where they ran\n",
            distinct.len()
        )?;
        let columns = [
            Column::new("rep_verdict", 0, 0),
            Column::new("rep_label", 0, 12),
            Column::new("hash", 1, 17),
            Column::new("host", 0, 0),
            Column::new("Image", 0, 20),
            Column::new("creations", 3, 0),
            Column::new("events", 2, 0),
        ];
        let rows: Vec<Vec<String>> = sightings
            .iter()
            .take(SHOWN)
            .map(|((verdict, hash, host, image), s)| {
                vec![
                    verdict.clone(),
                    s.label.clone(),
                    short_hash(hash),
                    host.clone(),
                    image.clone(),
                    s.creations.to_string(),
                    s.events.to_string(),
                ]
            })
            .collect();
        table::write(w, &columns, &rows, width, table::ROW_LINES)?;
        more(w, sightings.len())
    }

    fn write_examples(
        &self,
        w: &mut impl Write,
        format: OutFormat,
        show: usize,
        width: u16,
    ) -> anyhow::Result<()> {
        let Some(names) = &self.header else {
            return Ok(());
        };
        let examples = &self.examples[..self.examples.len().min(show)];
        if examples.is_empty() {
            return Ok(());
        }
        writeln!(w, "{} enriched events in full\n", examples.len())?;
        if format != OutFormat::Table {
            let mut body = Vec::new();
            push_record(&mut body, names);
            for (_, rec) in examples {
                push_record(&mut body, rec.iter());
            }
            let mut printer = Printer::new(format, &mut *w, usize::MAX);
            printer.body(&body)?;
            printer.finish()?;
            writeln!(w)?;
            return Ok(());
        }
        let columns = [Column::new("field", 0, 0), Column::new("value", 0, 30)];
        for (pick, rec) in examples {
            let why = PICKS.get(*pick).copied().unwrap_or("a flagged lineage");
            writeln!(w, "# {why}")?;
            let rows: Vec<Vec<String>> = names
                .iter()
                .zip(rec.iter())
                .filter(|(n, v)| !v.is_empty() && !n.starts_with(MV_PREFIX))
                .map(|(n, v)| {
                    vec![
                        String::from_utf8_lossy(n).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ]
                })
                .collect();
            // Whole: a multivalue field shows every value.
            table::write(w, &columns, &rows, width, usize::MAX)?;
            writeln!(w)?;
        }
        Ok(())
    }
}

fn more(w: &mut impl Write, total: usize) -> anyhow::Result<()> {
    if total > SHOWN {
        writeln!(w, "… and {} more", thousands((total - SHOWN) as u64))?;
    }
    writeln!(w)?;
    Ok(())
}

fn short_hash(h: &str) -> String {
    if h.chars().count() > 16 {
        h.chars().take(16).collect::<String>() + "…"
    } else {
        h.to_string()
    }
}

/// An epoch `_time` as `2023-11-14 22:13:20` UTC (the demo's data has no
/// time zone to honour).
fn utc(epoch: &str) -> String {
    let Ok(secs) = epoch.parse::<f64>() else {
        return epoch.to_string();
    };
    crate::calendar::utc_date_time(secs as i64, ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc("0"), "1970-01-01 00:00:00");
        assert_eq!(utc("1700000000.123"), "2023-11-14 22:13:20");
        assert_eq!(utc("951782400"), "2000-02-29 00:00:00");
        assert_eq!(utc("x"), "x");
    }

    #[test]
    fn deny_list_parses_and_names_both_payloads() {
        let text = deny_list();
        let list = LocalList::from_reader(text.as_bytes(), "demo").unwrap();
        assert!(list.problems().is_empty(), "{:?}", list.problems());
        assert_eq!(text.lines().count(), 7, "{text}");
    }

    #[test]
    fn same_data_every_run_and_the_incidents_are_in_it() {
        let a = generate(2_000);
        let b = generate(2_000);
        assert_eq!(a.len(), 2_000);
        assert!(a.iter().zip(&b).all(|(x, y)| x.values == y.values));
        for image in [synth::DROPPER_IMAGE, synth::DUMPER_IMAGE] {
            assert!(
                a.iter()
                    .any(|e| e.get("EventCode") == "1" && e.get("Image") == image),
                "{image}"
            );
        }
    }
}
