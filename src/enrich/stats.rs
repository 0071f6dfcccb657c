//! What a search counted, and the one line that sums it up at its end
//! (the protocol command shows it in the job inspector, the CLI on
//! stderr).

/// Counters for the per-search summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Execute chunks processed.
    pub chunks: u64,
    /// Rows processed.
    pub rows: u64,
    /// Rows that carried at least one valid hash.
    pub rows_with_hashes: u64,
    /// Chunks whose body was not valid UTF-8 (passed through as bytes).
    pub non_utf8_chunks: u64,
    /// Rows that name a process (lineage applies).
    pub lineage_rows: u64,
    /// … of which the chain reached a process without parent.
    pub lineage_complete: u64,
    /// … of which an ancestor was missing.
    pub lineage_partial: u64,
    /// … of which the chain reached `max_depth`.
    pub lineage_truncated: u64,
    /// … of which a GUID repeated (a wrong field mapping, or forged data).
    pub lineage_cycle: u64,
    /// Ancestors found in the persistent table.
    pub from_state: u64,
    /// Ancestors found by splunkd backfill.
    pub from_splunk: u64,
    /// Processes in the in-memory table at the end of the last chunk …
    pub table_entries: u64,
    /// … the bytes they hold (as `[lineage] memory_mb` counts them) …
    pub table_bytes: u64,
    /// … and how many it dropped to stay within its caps: many means
    /// the caps are small for this search (ancestors then come from the
    /// persistent table or splunkd again).
    pub table_evictions: u64,
}

impl Stats {
    /// The one-line summary shown at the end of a search: `lineage` when
    /// the search ran lineage, `sigma_rows_matched` when it ran Sigma.
    pub fn summary(&self, lineage: bool, sigma_rows_matched: Option<u64>) -> String {
        let s = self;
        let mut text = format!(
            "sysmonenrich: {} rows in {} chunks, {} with hashes",
            s.rows, s.chunks, s.rows_with_hashes
        );
        if lineage {
            // Every status, `cycle` included: a search whose rows turn to
            // cycles is the visible sign of a wrong field mapping.
            text.push_str(&format!(
                "; lineage for {} rows: {} complete, {} partial, {} truncated, {} cycle",
                s.lineage_rows,
                s.lineage_complete,
                s.lineage_partial,
                s.lineage_truncated,
                s.lineage_cycle
            ));
            if s.from_state + s.from_splunk > 0 {
                text.push_str(&format!(
                    " (ancestors from the process table: {}, from splunkd backfill: {})",
                    s.from_state, s.from_splunk
                ));
            }
        }
        if let Some(n) = sigma_rows_matched {
            text.push_str(&format!("; sigma: {n} rows matched a rule"));
        }
        text
    }
}
