//! One execute body in, the same rows with our fields out.
//!
//! The shape of the work per chunk:
//!
//! 1. read every row once: note its byte span, its hashes (interned: a
//!    chunk has few distinct ones), what lineage needs, and the creation
//!    info of every process creation;
//! 2. lineage: index all creations of the chunk *before* resolving any row
//!    (splunkd sends children before parents), then ask the persistent
//!    table and splunkd for what is still missing, level by level;
//! 3. write each row: its original bytes verbatim, then our cells.
//!
//! Memory per chunk is the body, the output, and about a hundred bytes per
//! row; the process table is bounded by its own caps (entries and bytes).
//!
//! The [`Enricher`] holds what lasts for the search (options, lineage
//! engine, sources, verdicts, counters); a `Chunk` (pass 1, `chunk.rs`)
//! and a `Reply` (pass 2, `reply.rs`) hold what lasts for one chunk,
//! their buffers reused.

use super::backfill::SplunkBackfill;
use super::chunk::{Chunk, RowStart};
use super::layout::Layout;
use super::noting::Noting;
use super::output;
use super::persist::ProcessWriter;
use super::reply::{Lineage, Reply};
use super::shared::source::TieredSource;
use super::shared::SharedTier;
use super::sigma::SigmaRun;
use super::stats::Stats;
use crate::config::options::Options;
use crate::config::settings::Settings;
use crate::lineage::{
    backfill, AncestorSource, Anchor, Engine, LineageSettings, ProcessInfo, Rules, SourceKind,
};
use crate::protocol::pieces::Pieces;
use crate::protocol::records::{BodyError, RowReader};
use crate::reputation::{LookupKey, Service, Verdict};
use crate::state::{StateStore, Writer};
use crate::sysmon::{FieldNames, FileHashes};
use std::collections::HashMap;
use std::sync::Arc;

/// Verdicts remembered per search for ancestor flags.
const MAX_VERDICTS: usize = 200_000;

/// What the search runs against besides its rows.
#[derive(Default)]
pub struct Context {
    /// Shared state store, when it opened.
    pub state: Option<Arc<StateStore>>,
    /// splunkd backfill, when enabled and possible.
    pub backfill: Option<SplunkBackfill>,
    /// Lineage rules.
    pub rules: Option<Rules>,
    /// Reputation service.
    pub reputation: Option<Service>,
    /// The search, as the process table records its writers.
    pub origin: Writer,
    /// Sigma rules, when configured, loaded and wanted.
    pub sigma: Option<Arc<crate::sigma::RuleSet>>,
}

/// The per-search enrichment engine.
pub struct Enricher {
    options: Options,
    settings: Settings,
    names: FieldNames,
    /// The layout of the last header seen.
    layout: Option<Layout>,
    engine: Option<Engine>,
    rules: Rules,
    state: Option<Arc<StateStore>>,
    backfill: Option<SplunkBackfill>,
    reputation: Option<Service>,
    /// Malicious verdicts seen in this search (for `lineage_malicious_ancestor`).
    malicious: HashMap<LookupKey, bool>,
    /// Background writer of the process table.
    writer: Option<ProcessWriter>,
    /// Who this search is, for the process table's rows.
    origin: Writer,
    warnings: Vec<String>,
    /// Every warning text already shown in this search.
    warned: std::collections::HashSet<String>,
    stats: Stats,
    /// The chunk being enriched (pass 1) …
    chunk: Chunk,
    /// … and its reply (pass 2).
    reply: Reply,
    /// Sigma, when it runs.
    sigma: Option<SigmaRun>,
    /// The KV store tier a search head cluster shares, when in use.
    shared: Option<Arc<SharedTier>>,
}

impl Enricher {
    /// A fresh engine for one search with default settings and no state.
    pub fn new(options: Options, max_field: usize) -> Enricher {
        let mut settings = Settings::builtin();
        settings.limits.max_field = max_field;
        Enricher::with_context(options, settings, Context::default())
    }

    /// A fresh engine for one search.
    pub fn with_context(options: Options, settings: Settings, context: Context) -> Enricher {
        let names = FieldNames::with_overrides(&options.fields);
        let engine = options.lineage.then(|| {
            Engine::new(LineageSettings {
                capacity: settings.lineage.memory_processes,
                memory_bytes: settings.lineage.memory_bytes,
                max_depth: options.max_depth,
            })
        });
        let rules = context
            .rules
            .unwrap_or_else(|| Rules::builtin().unwrap_or_else(|_| Rules::empty()));
        let sigma = context
            .sigma
            .filter(|r| options.sigma && !r.is_empty())
            .map(|r| SigmaRun::new(r).with_threads(settings.sigma.threads));
        let mut backfill = context.backfill.filter(|_| options.backfill);
        if let (Some(b), Some(s)) = (backfill.as_mut(), sigma.as_ref()) {
            b.evaluate_sigma(Arc::clone(s.rules()));
        }
        Enricher {
            shared: None,
            sigma,
            names,
            layout: None,
            engine,
            rules,
            state: context.state,
            backfill,
            reputation: if options.reputation {
                context.reputation
            } else {
                None
            },
            malicious: HashMap::new(),
            writer: None,
            origin: context.origin,
            warnings: Vec::new(),
            warned: Default::default(),
            stats: Stats::default(),
            chunk: Chunk::default(),
            reply: Reply::default(),
            options,
            settings,
        }
    }

    /// The reply to the last [`Enricher::process_pieces`]: its pieces, of
    /// the request body (source 0) and of the two buffers returned (sources
    /// 1 and 2).
    pub fn reply(&self) -> ([&[u8]; 2], &Pieces) {
        (
            [&self.reply.small, &self.reply.rendered],
            &self.reply.pieces,
        )
    }

    /// Rows that matched a Sigma rule, when Sigma runs.
    pub fn sigma_rows_matched(&self) -> Option<u64> {
        self.sigma.as_ref().map(|s| s.rows_matched)
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What getinfo must ask splunkd to send.
    pub fn required_fields(&self) -> Vec<String> {
        let mut out = self.names.required(self.options.raw);
        if let Some(s) = &self.sigma {
            // The rules' fields, and what decides which rules apply.
            for name in s.field_names().chain(["EventCode", "EventType"]) {
                if !out.iter().any(|o| o == name) {
                    out.push(name.to_string());
                }
            }
        }
        out
    }

    /// Adds what calls splunkd, built after the getinfo reply (see
    /// `command::serve`); as [`Enricher::with_context`] would have.
    pub fn attach(&mut self, reputation: Option<Service>, backfill: Option<SplunkBackfill>) {
        self.reputation = reputation.filter(|_| self.options.reputation);
        self.backfill = backfill.filter(|_| self.options.backfill);
        if let (Some(b), Some(s)) = (self.backfill.as_mut(), self.sigma.as_ref()) {
            b.evaluate_sigma(Arc::clone(s.rules()));
        }
    }

    /// Adds the shared tier (`[state] shared`), built with what calls
    /// splunkd: ancestors the local table misses are read from it, and
    /// what this search stores goes to it too.
    pub fn attach_shared(&mut self, shared: Option<Arc<SharedTier>>) {
        self.shared = shared;
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The one-line summary shown at the end of a search.
    pub fn summary(&self) -> String {
        self.stats
            .summary(self.options.lineage, self.sigma_rows_matched())
    }

    /// Warnings raised since the last call (each once per search).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn warn_once(&mut self, text: String) {
        if self.warned.insert(text.clone()) {
            log::warn!("{text}");
            self.warnings.push(text);
        }
    }

    /// Enriches one body into `out` (cleared first). A body without rows
    /// gives an empty `out`.
    pub fn process(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), BodyError> {
        self.process_pieces(body)?;
        let r = &self.reply;
        r.pieces.assemble(&[body, &r.small, &r.rendered], out);
        Ok(())
    }

    /// Enriches one body into pieces of it and of this engine's buffers
    /// (see [`Enricher::reply`]): what the protocol loop writes with
    /// `writev`, without assembling the reply in memory.
    pub fn process_pieces(&mut self, body: &[u8]) -> Result<(), BodyError> {
        self.reply.clear();
        self.stats.chunks += 1;
        // simdutf8: the whole body is checked on every chunk, and std's
        // validator was ~10% of the protocol core's time on non-ASCII data.
        if simdutf8::basic::from_utf8(body).is_err() {
            self.stats.non_utf8_chunks += 1;
        }
        let Some(mut reader) = RowReader::new(body, self.settings.limits.max_field)? else {
            return Ok(());
        };
        if self.layout.as_ref().map(|l| &l.header) != Some(reader.header()) {
            self.layout = Some(Layout::new(
                reader.header().clone(),
                &self.names,
                self.sigma.is_some(),
            ));
        }
        let Some(layout) = self.layout.as_ref() else {
            return Ok(());
        };
        let lineage = self.engine.is_some();
        if let Some(s) = self.sigma.as_mut() {
            s.start_chunk(&layout.header);
            s.evaluate_chunk(body, self.settings.limits.max_field);
        }
        self.chunk.read(
            body,
            layout,
            &mut reader,
            lineage,
            self.sigma.as_mut(),
            &mut self.stats,
        )?;
        if self.chunk.rows.is_empty() {
            return Ok(());
        }
        self.look_up_reputation();
        if self.engine.is_some() {
            self.extend_lineage();
        }
        self.write(body);
        self.persist();
        if let Some(t) = &self.shared {
            // This chunk's answers, in one batch; the tier logged its
            // warnings itself.
            t.flush();
            self.warnings.extend(t.take_warnings());
        }
        self.stats.rows += self.chunk.rows.len() as u64;
        if let Some(e) = &self.engine {
            self.stats.table_entries = e.len() as u64;
            self.stats.table_bytes = e.bytes() as u64;
            self.stats.table_evictions = e.evictions();
        }
        Ok(())
    }

    /// Looks up the chunk's distinct hashes and renders their cells once.
    fn look_up_reputation(&mut self) {
        let chunk = &mut self.chunk;
        chunk.rep_cells.clear();
        let Some(svc) = self.reputation.as_mut() else {
            return;
        };
        let answers = svc.lookup_chunk(&chunk.hash_sets);
        if self.malicious.len() > MAX_VERDICTS {
            // Bounded memory; forgetting only costs a missed ancestor flag.
            self.malicious.clear();
        }
        for h in &chunk.hash_sets {
            let key = LookupKey::from_hashes(h);
            let answer = key.as_ref().and_then(|k| answers.get(k));
            if let (Some(k), Some(a)) = (key, answer) {
                self.malicious.insert(k, a.verdict == Verdict::Malicious);
            }
            chunk
                .rep_cells
                .push(answer.map(output::render_answer).unwrap_or_default());
        }
        for w in svc.warnings() {
            self.warn_once(w);
        }
    }

    /// The reputation summary line, if reputation ran.
    pub fn reputation_summary(&self) -> Option<(bool, String)> {
        let s = self.reputation.as_ref()?.summary();
        Some((s.is_warning(), s.to_string()))
    }

    /// Indexes the chunk's creations, asks the other sources for what is
    /// missing, and remembers what was learnt.
    fn extend_lineage(&mut self) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let anchors = index_creations(engine, &mut self.chunk);
        if let Some(b) = self.backfill.as_mut() {
            b.start_chunk();
        }
        // What splunkd found goes into the process table; what the state
        // database found is looked up for its Sigma matches (only when
        // Sigma runs).
        let mut found: Vec<ProcessInfo> = Vec::new();
        let mut state_found = Vec::new();
        let note_state = self.sigma.is_some();
        let shared = self.shared.as_deref();
        let mut state = self
            .state
            .as_deref()
            .map(|local| TieredSource { local, shared });
        let mut state_source = state.as_mut().map(|inner| Noting {
            inner,
            note: |got: &[ProcessInfo]| {
                if note_state {
                    state_found.extend(got.iter().map(|p| p.guid));
                }
            },
        });
        let mut splunk_source = self.backfill.as_mut().map(|inner| Noting {
            inner,
            note: |got: &[ProcessInfo]| found.extend(got.iter().cloned()),
        });
        let mut sources: Vec<&mut dyn AncestorSource> = Vec::new();
        if let Some(s) = state_source.as_mut() {
            sources.push(s);
        }
        if let Some(s) = splunk_source.as_mut() {
            sources.push(s);
        }
        let mut new_warnings = Vec::new();
        if !sources.is_empty() {
            let report = backfill(
                engine,
                &anchors,
                &mut sources,
                self.settings.lineage.max_rounds,
            );
            self.stats.from_state += report.found_from(SourceKind::State) as u64;
            self.stats.from_splunk += report.found_from(SourceKind::Splunk) as u64;
            for w in report.warnings {
                new_warnings.push((w.kind, w.error.to_string()));
            }
        }
        drop(sources);
        if let Some(engine) = self.engine.as_mut() {
            self.chunk.creations.fill_parent_text(engine, &found);
        }
        if let (Some(sigma), Some(b)) = (self.sigma.as_mut(), self.backfill.as_mut()) {
            sigma.learn_found(b.take_sigma(), &found, self.chunk.creations.len());
        }
        if let (Some(sigma), Some(state), Some(engine)) = (
            self.sigma.as_mut(),
            self.state.as_deref(),
            self.engine.as_ref(),
        ) {
            if let Err(e) = sigma.learn_from_state(state, &state_found, engine) {
                new_warnings.push((SourceKind::State, e.to_string()));
            }
        }
        if let Some(notice) = self.backfill.as_mut().and_then(|b| b.take_notice()) {
            new_warnings.push((SourceKind::Splunk, notice));
        }
        for (kind, text) in new_warnings {
            if kind == SourceKind::State {
                // A broken store is not retried for every chunk.
                self.state = None;
            }
            self.warn_once(format!(
                "sysmonenrich: lineage source {kind}: {text}; affected rows are marked partial"
            ));
        }
        self.chunk.found = found;
    }

    /// True when this search may have grown the state store (it wrote to
    /// the process table, or looked hashes up: the cache and the pending
    /// queue) and no process-table write failed: only then is
    /// end-of-search maintenance due. After a failed write the store is
    /// locked or full, where maintenance would only wait for another
    /// `busy_timeout`.
    pub fn maintenance_due(&self) -> bool {
        match &self.writer {
            Some(w) => !w.gave_up(),
            None => self.options().reputation,
        }
    }

    /// Pass 2: writes every row.
    fn write(&mut self, body: &[u8]) {
        let Some(layout) = self.layout.as_ref() else {
            return;
        };
        let malicious = &self.malicious;
        let is_malicious = |h: &FileHashes| {
            LookupKey::from_hashes(h).is_some_and(|k| malicious.get(&k).copied().unwrap_or(false))
        };
        let lineage = self.engine.as_mut().map(|engine| Lineage {
            engine,
            rules: &self.rules,
            is_malicious: &is_malicious,
            cell_cap: self.settings.lineage.cell_value_max_bytes,
        });
        self.reply.write(
            &self.chunk,
            body,
            layout,
            lineage,
            self.sigma.as_mut(),
            &mut self.stats,
        );
    }

    /// Hands this chunk's creations (and what backfill found) to the
    /// process-table writer, so later searches find them without asking
    /// splunkd. Runs after the rows are written: the creations move to the
    /// writer thread, which hands the emptied buffers back for reuse.
    fn persist(&mut self) {
        let found = std::mem::take(&mut self.chunk.found);
        if let Some(sigma) = self.sigma.as_mut() {
            sigma.take_unsaved(&mut self.chunk.creations.sigma);
        }
        let Some(state) = self.state.clone() else {
            return;
        };
        if self.options.fields.any() {
            // Read with other field names: maybe right for this search,
            // but not what every later search should believe.
            return;
        }
        if self.chunk.creations.is_empty() && found.is_empty() {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let settings = self.settings.state.clone();
        let writer = self.writer.get_or_insert_with(|| {
            ProcessWriter::start(state, settings, self.origin.clone(), self.shared.clone())
        });
        let fresh = writer.recycle().unwrap_or_default();
        let mut batch = std::mem::replace(&mut self.chunk.creations, fresh);
        batch.extend(&found);
        writer.write(batch, now);
        if let Some(e) = writer.take_error() {
            self.state = None;
            self.warn_once(format!(
                "sysmonenrich: cannot write the process table ({e}); continuing without it"
            ));
        }
    }

    /// Waits for background work (the process table writer, then the
    /// shared tier's writes, within its budget) to finish.
    pub fn finish(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            w.finish();
        }
        if let Some(t) = &self.shared {
            t.finish();
        }
        if let Some(s) = &self.sigma {
            let (hits, misses) = s.remembered();
            // The set's digest tells two searches' rule sets apart (the
            // process table records matches by rule version, see
            // `state/sigma.rs`).
            log::info!(
                "sigma: {} rows matched; {hits} of {} events answered from remembered verdicts; \
                 rule set {:016x}",
                s.rows_matched,
                hits + misses,
                s.rules().digest()
            );
        }
    }
}

/// Indexes the chunk's creations in the table (all of them before any row
/// is resolved: splunkd sends children before parents) and returns what to
/// ask the other sources about: each creation's parent, each acting
/// process once.
fn index_creations(engine: &mut Engine, chunk: &mut Chunk) -> Vec<Anchor> {
    chunk.fresh.clear();
    for (i, c) in chunk.creations.iter().enumerate() {
        let new = engine.index(&c, SourceKind::Results);
        chunk.fresh.push(new);
        if new {
            // The table now holds exactly this row for the process, so
            // the creation's own anchor walks the same parents as its
            // other rows would: they need no anchor of their own.
            chunk.procs[chunk.creation_slots[i] as usize].anchored = true;
        }
    }
    let mut anchors: Vec<Anchor> = Vec::with_capacity(chunk.rows.len());
    for r in &chunk.rows {
        match r.start {
            RowStart::None => {}
            RowStart::Creation { creation, .. } => {
                let c = chunk.creations.get(creation as usize);
                anchors.push(Anchor::Created {
                    guid: c.guid,
                    parent: c.parent_guid,
                });
            }
            RowStart::Process { slot, .. } => {
                // Many rows share an acting process: ask about each once.
                let p = &mut chunk.procs[slot as usize];
                if !p.anchored {
                    p.anchored = true;
                    anchors.push(Anchor::Acting(p.guid));
                }
            }
        }
    }
    anchors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> String {
        let mut e = Enricher::new(Options::default_offline(), 1 << 20);
        let mut out = Vec::new();
        e.process(body.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn column(out: &str, row: usize, name: &str) -> String {
        let mut rdr = csv::Reader::from_reader(out.as_bytes());
        let h = rdr.headers().unwrap().clone();
        let rec = rdr.records().nth(row).unwrap().unwrap();
        rec.get(h.iter().position(|n| n == name).unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn rows_pass_through_verbatim_with_hashes_added() {
        let body = "EventCode,\"Hashes\",\"_chunked_idx\",__mv_EventCode\n1,\"MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0,IMPHASH=BAD\",0,\n3,,1,\n";
        let out = run(body);
        let mut lines = out.lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with("EventCode,Hashes,_chunked_idx,__mv_EventCode,hash_md5,"));
        let row0 = lines.next().unwrap();
        assert!(row0.starts_with("1,\"MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0,IMPHASH=BAD\",0,,975b4bd9b9d3b0a9c7d6e5f4a3b2c1d0,,,,"), "{row0}");
        assert!(lines.next().unwrap().starts_with("3,,1,,,,,,"));
    }

    #[test]
    fn owned_input_columns_are_replaced() {
        let body = "hash_md5,MD5,_chunked_idx\nstale,975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0,0\n";
        let out = run(body);
        let mut rdr = csv::Reader::from_reader(out.as_bytes());
        let h = rdr.headers().unwrap().clone();
        assert_eq!(h.iter().filter(|n| *n == "hash_md5").count(), 1);
        assert_eq!(
            column(&out, 0, "hash_md5"),
            "975b4bd9b9d3b0a9c7d6e5f4a3b2c1d0"
        );
    }

    #[test]
    fn header_only_and_empty() {
        assert_eq!(run(""), "");
        assert_eq!(run("EventCode,_chunked_idx\n"), "");
    }

    #[test]
    fn huge_command_lines_stay_within_the_table_budget() {
        // 300 creations in three chunks, each with a 100 KB command line;
        // the budget holds about ten.
        let mut settings = Settings::builtin();
        settings.lineage.memory_bytes = 1 << 20;
        let mut e =
            Enricher::with_context(Options::default_offline(), settings, Context::default());
        let cmd = "A".repeat(100_000);
        let mut out = Vec::new();
        for chunk in 0..3u32 {
            let mut body = String::from(
                "EventCode,ProcessGuid,ParentProcessGuid,Image,CommandLine,_chunked_idx\n",
            );
            for i in 0..100u32 {
                let n = chunk * 100 + i + 1;
                body.push_str(&format!(
                    "1,{{00000000-0000-0000-0000-{n:012}}},{{00000000-0000-0000-0000-{:012}}},C:\\p.exe,{cmd},{i}\n",
                    n + 1
                ));
            }
            out.clear();
            e.process(body.as_bytes(), &mut out).unwrap();
            let s = e.stats();
            assert!(s.table_bytes <= 1 << 20, "{s:?}");
            assert!(s.table_entries < 12, "{s:?}");
        }
        // Every row still answered, with its lineage fields.
        let text = String::from_utf8(out).unwrap();
        assert_eq!(column(&text, 99, "lineage_depth"), "1");
        assert_eq!(e.stats().rows, 300);
        assert!(e.stats().table_evictions > 280, "{:?}", e.stats());
    }

    #[test]
    fn children_before_parents_in_one_chunk() {
        let body = "EventCode,ProcessGuid,ParentProcessGuid,Image,ParentImage,_chunked_idx\n\
3,{00000000-0000-0000-0000-000000000003},,C:\\w\\ping.exe,,0\n\
1,{00000000-0000-0000-0000-000000000003},{00000000-0000-0000-0000-000000000002},C:\\w\\ping.exe,C:\\w\\cmd.exe,1\n\
1,{00000000-0000-0000-0000-000000000002},{00000000-0000-0000-0000-000000000001},C:\\w\\cmd.exe,C:\\o\\WINWORD.EXE,2\n";
        let out = run(body);
        assert_eq!(
            column(&out, 0, "lineage"),
            "WINWORD.EXE > cmd.exe > ping.exe"
        );
        assert_eq!(column(&out, 0, "lineage_depth"), "2");
        assert_eq!(column(&out, 0, "lineage_status"), "partial");
        assert_eq!(
            column(&out, 1, "__mv_lineage_guids"),
            "${00000000-0000-0000-0000-000000000002}$;${00000000-0000-0000-0000-000000000001}$"
        );
        assert_eq!(column(&out, 2, "lineage_parents"), "C:\\o\\WINWORD.EXE");
        assert_eq!(column(&out, 2, "lineage_source"), "results");
    }
}
