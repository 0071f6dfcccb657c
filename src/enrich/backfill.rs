//! Backfill: ancestors the results do not hold, searched for in the index.
//!
//! Splunk returns newest events first, and the time range of a search
//! rarely reaches back to when `explorer.exe` or `services.exe` started, so
//! many chains are cut at the edge of the results. For the GUIDs still
//! missing after the local sources, we run one search per tree level for all
//! of the chunk's missing parents at once:
//!
//! ```text
//! search `sysmonenrich_index` EventCode=1 ProcessGuid IN ("{…}", "{…}", …)
//! | dedup ProcessGuid | fields ProcessGuid ParentProcessGuid Image …
//! ```
//!
//! With Sigma on, each ancestor found is also matched against the
//! search's rules (the search then asks for the fields the rules read):
//! `lineage_sigma` names what an ancestor's creation matched wherever that
//! ancestor came from, and the matches go to the process table with it.
//!
//! Cost control is the point of this module: a count of searches and a
//! wall-clock budget per search run (both in `sysmonenrich.conf`); once
//! either is spent, the source answers "nothing" and rows stay `partial`.
//! A splunkd that fails (refused key, 5xx, timeout) is an error for the
//! engine, which stops asking it for the rest of the chunk; the search
//! itself always completes.

use super::backfill_sigma::SigmaOnFound;
use crate::circuit::Breaker;
use crate::config::BackfillSettings;
use crate::lineage::{AncestorSource, ProcessInfo, SourceError, SourceKind};
use crate::sigma::{RuleId, RuleSet};
use crate::splunk::{Client, SplunkError};
use crate::sysmon::{FileHashes, ProcessGuid};
use std::sync::Arc;
use std::time::Instant;

/// The fields every backfill search asks for.
const FIELDS: &str =
    "ProcessGuid ParentProcessGuid Image CommandLine ParentImage ParentCommandLine Computer Hashes _time";

/// The splunkd backfill as an ancestor source.
pub struct SplunkBackfill {
    client: Client,
    settings: BackfillSettings,
    started: Option<Instant>,
    searches: u32,
    chunk_searches: u32,
    exhausted: bool,
    /// splunkd refused the key or kept failing: no more requests this search.
    disabled: bool,
    failures: u32,
    notice: Option<String>,
    found: u64,
    /// Open once splunkd proved unreachable (here or in an earlier search).
    breaker: Arc<Breaker>,
    sigma: Option<SigmaOnFound>,
}

/// Consecutive failures after which backfill stops for the search.
const MAX_FAILURES: u32 = 3;

impl SplunkBackfill {
    /// A backfill for one search run.
    pub fn new(
        client: Client,
        settings: BackfillSettings,
        breaker: Arc<Breaker>,
    ) -> SplunkBackfill {
        SplunkBackfill {
            client,
            settings,
            started: None,
            searches: 0,
            chunk_searches: 0,
            exhausted: false,
            disabled: false,
            failures: 0,
            notice: None,
            found: 0,
            breaker,
            sigma: None,
        }
    }

    /// Matches every ancestor found against `rules` from now on (see the
    /// module docs); the searches then also ask for the fields they read.
    pub fn evaluate_sigma(&mut self, rules: Arc<RuleSet>) {
        self.sigma = Some(SigmaOnFound::new(rules, FIELDS));
    }

    /// The Sigma matches of the ancestors found since the last call.
    pub fn take_sigma(&mut self) -> Vec<(ProcessGuid, Vec<RuleId>)> {
        self.sigma
            .as_mut()
            .map(SigmaOnFound::take)
            .unwrap_or_default()
    }

    /// Searches run so far.
    pub fn searches(&self) -> u32 {
        self.searches
    }

    /// Ancestors found so far.
    pub fn found(&self) -> u64 {
        self.found
    }

    /// True once the count or time budget ran out.
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// A new chunk: its own allowance of searches (one per tree level).
    pub fn start_chunk(&mut self) {
        self.chunk_searches = 0;
    }

    /// A message for the user, once, when the budget ran out or backfill
    /// was switched off for the search.
    pub fn take_notice(&mut self) -> Option<String> {
        self.notice.take()
    }

    fn deadline(&mut self) -> Instant {
        let start = *self.started.get_or_insert_with(Instant::now);
        start + self.settings.time_budget
    }

    /// The SPL for one batch.
    pub fn search_text(&self, guids: &[ProcessGuid]) -> String {
        let list: Vec<String> = guids.iter().map(|g| format!("\"{g}\"")).collect();
        format!(
            "search {} EventCode=1 ProcessGuid IN ({}) | dedup ProcessGuid | fields {FIELDS}{}",
            self.settings.base_search,
            list.join(", "),
            self.sigma.as_ref().map_or("", SigmaOnFound::extra_fields)
        )
    }
}

impl AncestorSource for SplunkBackfill {
    fn kind(&self) -> SourceKind {
        SourceKind::Splunk
    }

    fn fetch(&mut self, guids: &[ProcessGuid]) -> Result<Vec<ProcessInfo>, SourceError> {
        let mut out = Vec::new();
        if self.disabled {
            return Ok(out);
        }
        if self.breaker.is_open() {
            // One WARN for the search, then silence: it is known.
            self.disabled = true;
            return match self.breaker.take_skip_warning() {
                Some(text) => Err(SourceError::new(format!("backfill: {text}"))),
                None => Ok(out),
            };
        }
        for batch in guids.chunks(self.settings.batch.max(1)) {
            let deadline = self.deadline();
            if self.chunk_searches >= self.settings.max_searches_per_chunk {
                break;
            }
            if self.searches >= self.settings.max_searches || Instant::now() >= deadline {
                if !self.exhausted {
                    self.notice = Some(format!(
                        "backfill budget spent ({} searches, {:?} per search; [backfill] in sysmonenrich.conf)",
                        self.searches, self.settings.time_budget
                    ));
                }
                self.exhausted = true;
                break;
            }
            self.searches += 1;
            self.chunk_searches += 1;
            let search = self.search_text(batch);
            let started = Instant::now();
            let earliest = self.settings.earliest.as_str();
            let form = [
                ("search", search.as_str()),
                ("earliest_time", earliest),
                ("latest_time", "now"),
            ];
            let left = deadline.saturating_duration_since(Instant::now());
            // Each result becomes creation info as it arrives: the export
            // body is never held whole.
            let before = out.len();
            let sigma = &mut self.sigma;
            let exported = self.client.export(&form, left, &mut |row| {
                let Some(p) = process_info(&row) else {
                    return true;
                };
                if let Some(s) = sigma.as_mut() {
                    s.evaluate(&row, p.guid);
                }
                out.push(p);
                true
            });
            match exported {
                Ok(_) => {
                    self.failures = 0;
                    self.breaker.success();
                }
                Err(e) if e.is_unreachable() => {
                    let (_, opened) = self.breaker.failure(&e.brief(), crate::circuit::now_secs());
                    if let Some(text) = opened {
                        self.disabled = true;
                        return Err(SourceError::with_source(format!("backfill: {text}"), e));
                    }
                    // Its circuit speaks once, when it opens.
                    log::debug!("backfill: {e}");
                    return Ok(out);
                }
                Err(e @ SplunkError::Timeout { .. }) => {
                    // splunkd's one circuit: the search's other calls and
                    // the next searches skip a splunkd that hung.
                    self.breaker.trip(&e.brief(), crate::circuit::now_secs());
                    self.exhausted = true;
                    self.disabled = true;
                    return Err(SourceError::new(format!(
                        "splunkd backfill search did not finish within the backfill budget ({:?})",
                        self.settings.time_budget
                    )));
                }
                Err(e) => {
                    self.failures += 1;
                    if matches!(e.status(), Some(401 | 403)) || self.failures >= MAX_FAILURES {
                        // A refused key will not work next chunk either;
                        // a splunkd failing again and again gets a rest.
                        self.disabled = true;
                    }
                    return Err(SourceError::with_source(format!("backfill: {e}"), e));
                }
            }
            log::info!(
                "backfill search {} for {} GUIDs: {} results in {:?}",
                self.searches,
                batch.len(),
                out.len() - before,
                started.elapsed()
            );
        }
        self.found += out.len() as u64;
        Ok(out)
    }
}

pub(super) fn text<'a>(row: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    match row.get(key) {
        Some(serde_json::Value::String(s)) => s,
        // Multivalue fields arrive as arrays; the first value is the event's.
        Some(serde_json::Value::Array(a)) => a.first().and_then(|v| v.as_str()).unwrap_or(""),
        _ => "",
    }
}

/// One export result → creation info (`None` without a valid GUID).
fn process_info(row: &serde_json::Map<String, serde_json::Value>) -> Option<ProcessInfo> {
    let guid = ProcessGuid::parse(text(row, "ProcessGuid").as_bytes())?;
    let mut p = ProcessInfo::new(guid);
    p.parent_guid = ProcessGuid::parse(text(row, "ParentProcessGuid").as_bytes());
    let b = |k: &str| text(row, k).as_bytes().to_vec().into_boxed_slice();
    p.image = b("Image");
    p.command_line = b("CommandLine");
    p.parent_image = b("ParentImage");
    p.parent_command_line = b("ParentCommandLine");
    p.host = b("Computer");
    p.hashes = FileHashes::parse_sysmon(text(row, "Hashes").as_bytes());
    p.time = export_time(text(row, "_time"));
    Some(p)
}

/// `_time` of an export result: epoch seconds, or ISO 8601 as splunkd's
/// JSON output writes it (`2022-02-19T17:35:16.196+00:00`).
fn export_time(t: &str) -> f64 {
    if let Ok(v) = t.parse::<f64>() {
        return v;
    }
    let (Some(date), Some(rest)) = (t.get(..10), t.get(11..)) else {
        return 0.0;
    };
    let cut = rest.find(['+', '-', 'Z']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(cut);
    let Some(base) = crate::sysmon::time::utc_to_epoch(&format!("{date} {clock}")) else {
        return 0.0;
    };
    let offset = match zone.as_bytes().first() {
        Some(&sign @ (b'+' | b'-')) => {
            let digits: String = zone[1..].chars().filter(char::is_ascii_digit).collect();
            let (h, m) = digits.split_at(digits.len().min(2));
            let secs =
                h.parse::<f64>().unwrap_or(0.0) * 3600.0 + m.parse::<f64>().unwrap_or(0.0) * 60.0;
            if sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => 0.0,
    };
    base - offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_row_to_info() {
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"ProcessGuid":"{747F3D96-D6ED-5D31-0000-0010C88A2500}","ParentProcessGuid":"{747F3D96-D4B8-5D31-0000-0010A8CE0600}","Image":"C:\\cmd.exe","Hashes":"MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0","_time":"1563547373.277"}"#,
        )
        .unwrap();
        let p = process_info(&row).unwrap();
        assert_eq!(&*p.image, b"C:\\cmd.exe");
        assert!(p.parent_guid.is_some() && p.hashes.md5.is_some());
        assert_eq!(p.time, 1563547373.277);
        assert!(process_info(&serde_json::Map::new()).is_none());
    }

    #[test]
    fn export_times() {
        assert_eq!(export_time("1563547373.277"), 1563547373.277);
        assert_eq!(export_time("2019-07-19T14:42:53.277+00:00"), 1563547373.277);
        assert_eq!(export_time("2019-07-19T16:42:53.277+02:00"), 1563547373.277);
        assert_eq!(export_time("garbage"), 0.0);
    }
}
