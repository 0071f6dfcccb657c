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
//! Cost control is the point of this module: a count of searches and a
//! wall-clock budget per search run (both in `sysmonenrich.conf`); once
//! either is spent, the source answers "nothing" and rows stay `partial`.
//! A splunkd that fails (refused key, 5xx, timeout) is an error for the
//! engine, which stops asking it for the rest of the chunk; the search
//! itself always completes.

use super::{Client, RestError};
use crate::lineage::{AncestorSource, ProcessInfo, SourceError, SourceKind};
use crate::sysmon::{FileHashes, ProcessGuid};
use std::time::{Duration, Instant};

/// Limits and shape of the backfill searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillSettings {
    /// Searches this run may start, in total.
    pub max_searches: u32,
    /// Wall-clock time this run may spend waiting for them, in total.
    pub time_budget: Duration,
    /// GUIDs per search (SPL gets long; splunkd caps URI/form sizes).
    pub batch: usize,
    /// How far back to look for a parent (`earliest_time`), e.g. `-30d`.
    pub earliest: String,
    /// Base search; normally the app's macro, which users edit.
    pub base_search: String,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            max_searches: 20,
            time_budget: Duration::from_secs(30),
            batch: 500,
            earliest: "-30d".to_string(),
            base_search: "`sysmonenrich_index`".to_string(),
        }
    }
}

/// The splunkd backfill as an ancestor source.
pub struct SplunkBackfill {
    client: Client,
    settings: BackfillSettings,
    started: Option<Instant>,
    searches: u32,
    exhausted: bool,
    found: u64,
}

impl SplunkBackfill {
    /// A backfill for one search run.
    pub fn new(client: Client, settings: BackfillSettings) -> SplunkBackfill {
        SplunkBackfill {
            client,
            settings,
            started: None,
            searches: 0,
            exhausted: false,
            found: 0,
        }
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

    fn deadline(&mut self) -> Instant {
        let start = *self.started.get_or_insert_with(Instant::now);
        start + self.settings.time_budget
    }

    /// The SPL for one batch.
    pub fn search_text(&self, guids: &[ProcessGuid]) -> String {
        let list: Vec<String> = guids.iter().map(|g| format!("\"{g}\"")).collect();
        format!(
            "search {} EventCode=1 ProcessGuid IN ({}) | dedup ProcessGuid | fields ProcessGuid ParentProcessGuid Image CommandLine ParentImage ParentCommandLine Computer Hashes _time",
            self.settings.base_search,
            list.join(", ")
        )
    }
}

impl AncestorSource for SplunkBackfill {
    fn kind(&self) -> SourceKind {
        SourceKind::Splunk
    }

    fn fetch(&mut self, guids: &[ProcessGuid]) -> Result<Vec<ProcessInfo>, SourceError> {
        let mut out = Vec::new();
        for batch in guids.chunks(self.settings.batch.max(1)) {
            let deadline = self.deadline();
            if self.searches >= self.settings.max_searches || Instant::now() >= deadline {
                if !self.exhausted {
                    log::warn!(
                        "lineage backfill budget spent ({} searches, {:?}); remaining ancestors stay partial",
                        self.searches,
                        self.settings.time_budget
                    );
                }
                self.exhausted = true;
                break;
            }
            self.searches += 1;
            let search = self.search_text(batch);
            let started = Instant::now();
            let rows = match self
                .client
                .export(&search, &self.settings.earliest, "now", deadline)
            {
                Ok(rows) => rows,
                Err(RestError::Timeout(_)) => {
                    self.exhausted = true;
                    return Err(SourceError::new(format!(
                        "splunkd backfill search did not finish within the backfill budget ({:?})",
                        self.settings.time_budget
                    )));
                }
                Err(e) => return Err(SourceError::with_source(format!("backfill: {e}"), e)),
            };
            log::info!(
                "backfill search {} for {} GUIDs: {} results in {:?}",
                self.searches,
                batch.len(),
                rows.len(),
                started.elapsed()
            );
            out.extend(rows.iter().filter_map(process_info));
        }
        self.found += out.len() as u64;
        Ok(out)
    }
}

fn text<'a>(row: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
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
    p.time = text(row, "_time").parse().unwrap_or(0.0);
    Some(p)
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
}
