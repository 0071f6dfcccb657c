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

use super::args::Options;
use super::cells::Composer;
use super::creations::Creations;
use super::output::{self, RepCells};
use super::persist::ProcessWriter;
use super::state_source::StateSource;
use crate::config::settings::Settings;
use crate::lineage::{
    backfill, AncestorSource, Anchor, Chain, Engine, GuidBuildHasher, LineageSettings, ProcessInfo,
    ProcessRef, Rules, SourceKind, Start, Status, StopReason,
};
use crate::protocol::pieces::Pieces;
use crate::protocol::records::{push_field, BodyError, Header, RowReader};
use crate::reputation::{LookupKey, Service, Verdict};
use crate::splunk::backfill::SplunkBackfill;
use crate::state::StateStore;
use crate::sysmon::{Event, FieldMap, FieldNames, FileHashes, ProcessGuid};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

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

/// How the columns we do not own get into the output.
#[derive(Debug, Clone)]
enum Passthrough {
    /// Copy each row's original bytes: the common case, byte-exact.
    Raw,
    /// The input carries some of our own fields (an earlier `sysmonenrich`
    /// in the pipeline): keep only these columns, ours replace the rest.
    Columns(Vec<usize>),
}

/// Per-header preparation, reused while splunkd keeps sending the same
/// header (it does, chunk after chunk).
struct Layout {
    header: Header,
    fields: FieldMap,
    passthrough: Passthrough,
}

impl crate::sysmon::event::Row for RowReader<'_> {
    #[inline]
    fn get(&self, i: usize) -> Option<&[u8]> {
        self.field(i)
    }
}

/// What lineage starts from for one row, owned (the row's record is reused).
#[derive(Debug, Clone, Copy)]
enum RowStart {
    None,
    /// A process creation: index into the chunk's creations, and the
    /// process's slot.
    Creation {
        creation: u32,
        slot: u32,
    },
    /// Any other event: the acting process's slot and the row's image.
    Process {
        slot: u32,
        image: ImageAt,
    },
}

/// Where a row's image is: in the body (the common case, free), or
/// interned (a quoted field with doubled quotes, unescaped elsewhere).
#[derive(Debug, Clone, Copy)]
enum ImageAt {
    Body(u32, u32),
    Interned(u32),
}

/// A process's rendered lineage cells (and the row's LF) in the chunk's
/// render buffer.
#[derive(Debug, Clone)]
struct Cells {
    range: Range<usize>,
    status: Status,
}

/// One process named by rows of the chunk.
#[derive(Debug, Clone)]
struct ProcSlot {
    guid: ProcessGuid,
    /// Rows of the chunk naming it. A creation row shares its process's
    /// cells only when other rows need them too; alone, it is built from
    /// its own `Parent*` fields.
    rows: u32,
    /// Already asked about (one anchor per acting process).
    anchored: bool,
    /// Its cells, once rendered.
    cells: Option<Cells>,
}

/// One row, as much as the writer needs after the record is gone.
#[derive(Debug)]
struct RowInfo {
    span: Range<usize>,
    /// Index into the chunk's distinct hash sets; `u32::MAX` = none.
    hashes: u32,
    start: RowStart,
    /// Columns kept from the record (slow pass-through path only).
    kept: Vec<Box<[u8]>>,
}

const NO_HASHES: u32 = u32::MAX;
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
}

/// The per-search enrichment engine.
pub struct Enricher {
    options: Options,
    settings: Settings,
    names: FieldNames,
    layout: Option<Layout>,
    rows: Vec<RowInfo>,
    creations: Creations,
    /// Per chunk: the processes the rows name, and their index.
    procs: Vec<ProcSlot>,
    proc_index: HashMap<ProcessGuid, u32, GuidBuildHasher>,
    /// Per chunk: the slot of each creation.
    creation_slots: Vec<u32>,
    hash_sets: Vec<FileHashes>,
    hash_index: HashMap<FileHashes, u32, GuidBuildHasher>,
    images: Vec<Box<[u8]>>,
    image_index: HashMap<Box<[u8]>, u32, GuidBuildHasher>,
    engine: Option<Engine>,
    rules: Rules,
    state: Option<Arc<StateStore>>,
    backfill: Option<SplunkBackfill>,
    reputation: Option<Service>,
    /// Pre-rendered `rep_*` cells per distinct hash set of the chunk.
    rep_cells: Vec<RepCells>,
    /// Malicious verdicts seen in this search (for `lineage_malicious_ancestor`).
    malicious: HashMap<LookupKey, bool>,
    scratch: Vec<u8>,
    /// Rendered lineage cells of the chunk (source 2 of the reply).
    render_buf: Vec<u8>,
    /// Cells written per row (source 1 of the reply).
    small: Vec<u8>,
    /// The reply, as pieces of the body, `small` and `render_buf`.
    pieces: Pieces,
    /// The chain being rendered (its buffers reused).
    chain: Chain,
    /// Renders chains by sharing each ancestor's (most rows).
    composer: Composer,
    /// Background writer of the process table.
    writer: Option<ProcessWriter>,
    /// Ancestors splunkd backfill found in this chunk, for the writer.
    found: Vec<ProcessInfo>,
    /// Per chunk: whether each creation shares its process's cells.
    shared: Vec<bool>,
    /// Per chunk: whether each creation was new to the table (so the table
    /// holds exactly its row).
    fresh: Vec<bool>,
    warnings: Vec<String>,
    /// Every warning text already shown in this search.
    warned: std::collections::HashSet<String>,
    stats: Stats,
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
        Enricher {
            names,
            layout: None,
            rows: Vec::new(),
            creations: Creations::default(),
            procs: Vec::new(),
            proc_index: HashMap::default(),
            creation_slots: Vec::new(),
            hash_sets: Vec::new(),
            hash_index: HashMap::default(),
            images: Vec::new(),
            image_index: HashMap::default(),
            engine,
            rules,
            state: context.state,
            backfill: if options.backfill {
                context.backfill
            } else {
                None
            },
            reputation: if options.reputation {
                context.reputation
            } else {
                None
            },
            rep_cells: Vec::new(),
            malicious: HashMap::new(),
            scratch: Vec::new(),
            render_buf: Vec::new(),
            small: Vec::new(),
            pieces: Pieces::default(),
            chain: Chain::default(),
            composer: Composer::default(),
            writer: None,
            found: Vec::new(),
            shared: Vec::new(),
            fresh: Vec::new(),
            warnings: Vec::new(),
            warned: Default::default(),
            stats: Stats::default(),
            options,
            settings,
        }
    }

    /// The reply to the last [`Enricher::process_pieces`]: its pieces, of
    /// the request body (source 0) and of the two buffers returned (sources
    /// 1 and 2).
    pub fn reply(&self) -> ([&[u8]; 2], &Pieces) {
        ([&self.small, &self.render_buf], &self.pieces)
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What getinfo must ask splunkd to send.
    pub fn required_fields(&self) -> Vec<String> {
        self.names.required(self.options.raw)
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
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
        self.pieces
            .assemble(&[body, &self.small, &self.render_buf], out);
        Ok(())
    }

    /// Enriches one body into pieces of it and of this engine's buffers
    /// (see [`Enricher::reply`]): what the protocol loop writes with
    /// `writev`, without assembling the reply in memory.
    pub fn process_pieces(&mut self, body: &[u8]) -> Result<(), BodyError> {
        self.pieces.clear();
        self.small.clear();
        self.render_buf.clear();
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
            self.layout = Some(prepare(reader.header().clone(), &self.names));
        }
        self.read_rows(body, &mut reader)?;
        if self.rows.is_empty() {
            return Ok(());
        }
        self.look_up_reputation();
        if self.engine.is_some() {
            self.extend_lineage();
        }
        self.write(body);
        self.persist();
        self.stats.rows += self.rows.len() as u64;
        if let Some(e) = &self.engine {
            self.stats.table_entries = e.len() as u64;
            self.stats.table_bytes = e.bytes() as u64;
            self.stats.table_evictions = e.evictions();
        }
        Ok(())
    }

    /// Pass 1: every row once.
    fn read_rows(&mut self, body: &[u8], reader: &mut RowReader<'_>) -> Result<(), BodyError> {
        self.rows.clear();
        self.creations.clear();
        self.procs.clear();
        self.proc_index.clear();
        self.creation_slots.clear();
        self.hash_sets.clear();
        self.hash_index.clear();
        self.images.clear();
        self.image_index.clear();
        // Taken out for the loop (rows are noted through `&mut self`) and
        // put back whatever happens.
        let Some(layout) = self.layout.take() else {
            return Ok(());
        };
        let result = self.note_rows(body, &layout, reader);
        self.layout = Some(layout);
        result
    }

    fn note_rows(
        &mut self,
        body: &[u8],
        layout: &Layout,
        reader: &mut RowReader<'_>,
    ) -> Result<(), BodyError> {
        let lineage = self.engine.is_some();
        while let Some(span) = reader.next_row()? {
            let (file_hashes, start) = if lineage {
                let event = layout.fields.event(&*reader);
                (event.hashes, self.row_start(body, &event))
            } else {
                (layout.fields.hashes_of(&*reader), RowStart::None)
            };
            let hashes = if file_hashes.is_empty() {
                NO_HASHES
            } else {
                self.stats.rows_with_hashes += 1;
                let next = self.hash_sets.len() as u32;
                *self.hash_index.entry(file_hashes).or_insert_with(|| {
                    self.hash_sets.push(file_hashes);
                    next
                })
            };
            let kept = match &layout.passthrough {
                Passthrough::Raw => Vec::new(),
                Passthrough::Columns(cols) => cols
                    .iter()
                    .map(|&c| Box::from(reader.field(c).unwrap_or(b"")))
                    .collect(),
            };
            self.rows.push(RowInfo {
                span,
                hashes,
                start,
                kept,
            });
        }
        Ok(())
    }

    /// Looks up the chunk's distinct hashes and renders their cells once.
    fn look_up_reputation(&mut self) {
        self.rep_cells.clear();
        let Some(svc) = self.reputation.as_mut() else {
            return;
        };
        let answers = svc.lookup_chunk(&self.hash_sets);
        if self.malicious.len() > MAX_VERDICTS {
            // Bounded memory; forgetting only costs a missed ancestor flag.
            self.malicious.clear();
        }
        for h in &self.hash_sets {
            let key = LookupKey::from_hashes(h);
            let answer = key.as_ref().and_then(|k| answers.get(k));
            if let (Some(k), Some(a)) = (key, answer) {
                self.malicious.insert(k, a.verdict == Verdict::Malicious);
            }
            self.rep_cells
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
        self.fresh.clear();
        for (i, c) in self.creations.iter().enumerate() {
            let new = engine.index(&c, SourceKind::Results);
            self.fresh.push(new);
            if new {
                // The table now holds exactly this row for the process, so
                // the creation's own anchor walks the same parents as its
                // other rows would: they need no anchor of their own.
                self.procs[self.creation_slots[i] as usize].anchored = true;
            }
        }
        let mut anchors: Vec<Anchor> = Vec::with_capacity(self.rows.len());
        for r in &self.rows {
            match r.start {
                RowStart::None => {}
                RowStart::Creation { creation, .. } => {
                    let c = self.creations.get(creation as usize);
                    anchors.push(Anchor::Created {
                        guid: c.guid,
                        parent: c.parent_guid,
                    });
                }
                RowStart::Process { slot, .. } => {
                    // Many rows share an acting process: ask about each once.
                    let p = &mut self.procs[slot as usize];
                    if !p.anchored {
                        p.anchored = true;
                        anchors.push(Anchor::Acting(p.guid));
                    }
                }
            }
        }
        if let Some(b) = self.backfill.as_mut() {
            b.start_chunk();
        }
        let mut recorder = Recorder {
            inner: self.backfill.as_mut(),
            found: Vec::new(),
        };
        let mut state_source = self.state.as_deref().map(StateSource);
        let mut sources: Vec<&mut dyn AncestorSource> = Vec::new();
        if let Some(s) = state_source.as_mut() {
            sources.push(s);
        }
        if recorder.inner.is_some() {
            sources.push(&mut recorder);
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
        let found = std::mem::take(&mut recorder.found);
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
        self.found = found;
    }

    /// Hands this chunk's creations (and what backfill found) to the
    /// process-table writer, so later searches find them without asking
    /// splunkd. Runs after the rows are written: the creations move to the
    /// writer thread, which hands the emptied buffers back for reuse.
    fn persist(&mut self) {
        let found = std::mem::take(&mut self.found);
        let Some(state) = self.state.clone() else {
            return;
        };
        if self.creations.is_empty() && found.is_empty() {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let settings = self.settings.state.clone();
        let writer = self
            .writer
            .get_or_insert_with(|| ProcessWriter::start(state, settings));
        let fresh = writer.recycle().unwrap_or_default();
        let mut batch = std::mem::replace(&mut self.creations, fresh);
        batch.extend(&found);
        writer.write(batch, now);
        if let Some(e) = writer.take_error() {
            self.state = None;
            self.warn_once(format!(
                "sysmonenrich: cannot write the process table ({e}); continuing without it"
            ));
        }
    }

    /// Waits for background work (the process table writer) to finish.
    pub fn finish(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            w.finish();
        }
    }

    /// Pass 2: write every row.
    fn write(&mut self, body: &[u8]) {
        const BODY: u8 = 0;
        const SMALL: u8 = 1;
        const RENDERED: u8 = 2;
        let Some(layout) = self.layout.as_ref() else {
            return;
        };
        let out = &mut self.small;
        let pieces = &mut self.pieces;
        write_header(out, layout);
        pieces.push(SMALL, 0..out.len());
        let rules = &self.rules;
        let malicious = &self.malicious;
        let is_malicious = |h: &FileHashes| {
            LookupKey::from_hashes(h).is_some_and(|k| malicious.get(&k).copied().unwrap_or(false))
        };
        let procs = &mut self.procs;
        let creations = &self.creations;
        // A creation row whose own info is what the table holds for its
        // GUID has the same chain as every other event of that process:
        // it shares the process's cells instead of building (and
        // rendering) the chain twice.
        let shared = &mut self.shared;
        shared.clear();
        if let Some(e) = self.engine.as_ref() {
            let fresh = &self.fresh;
            shared.extend((0..creations.len()).map(|i| {
                let c = creations.get(i);
                if procs[self.creation_slots[i] as usize].rows < 2 {
                    return false;
                }
                if fresh.get(i).copied().unwrap_or(false) {
                    // Inserted from this very row: equal unless evicted.
                    return e.contains(c.guid);
                }
                e.get(c.guid).is_some_and(|(t, kind)| {
                    kind == SourceKind::Results
                        && t.parent_guid == c.parent_guid
                        && t.image == c.image
                        && t.parent_image == c.parent_image
                        && t.parent_command_line == c.parent_command_line
                })
            }));
        }
        let mut engine = self.engine.as_mut();
        let composer = &mut self.composer;
        composer.start_chunk();
        let stats = &mut self.stats;
        let chain = &mut self.chain;
        let scratch = &mut self.scratch;
        let render_buf = &mut self.render_buf;
        for row in &self.rows {
            let mark = out.len();
            match &layout.passthrough {
                Passthrough::Raw => pieces.push(BODY, row.span.clone()),
                Passthrough::Columns(_) => {
                    for (k, v) in row.kept.iter().enumerate() {
                        if k > 0 {
                            out.push(b',');
                        }
                        push_field(out, v);
                    }
                }
            }
            let hashes = (row.hashes != NO_HASHES).then(|| &self.hash_sets[row.hashes as usize]);
            let rep = (row.hashes != NO_HASHES)
                .then(|| self.rep_cells.get(row.hashes as usize))
                .flatten();
            // The process whose cells this row may share, and where its
            // chain starts if this is the first row to need them.
            let (engine, slot, start) = match (engine.as_deref_mut(), row.start) {
                (Some(e), RowStart::Creation { creation, slot }) => {
                    let c = creations.get(creation as usize);
                    if shared[creation as usize] {
                        let start = Start::Process {
                            guid: c.guid,
                            image: c.image,
                        };
                        (e, Some(slot), start)
                    } else {
                        (e, None, Start::creation(&c))
                    }
                }
                (Some(e), RowStart::Process { slot, image }) => (
                    e,
                    Some(slot),
                    Start::Process {
                        guid: procs[slot as usize].guid,
                        image: match image {
                            ImageAt::Body(a, b) => &body[a as usize..b as usize],
                            ImageAt::Interned(i) => &self.images[i as usize],
                        },
                    },
                ),
                _ => {
                    output::push_cells(out, hashes, rep, None);
                    pieces.push(SMALL, mark..out.len());
                    continue;
                }
            };
            let cached = slot.and_then(|s| procs[s as usize].cells.clone());
            let cells = match cached {
                Some(cells) => cells,
                None => {
                    let composed = composer.cells(engine, rules, &is_malicious, &start, render_buf);
                    let (range, stop) = match composed {
                        Some(c) => (c.cells, c.stop),
                        None => {
                            engine
                                .resolver(rules, &is_malicious)
                                .build_into(&start, chain);
                            let range = output::render_chain(chain, render_buf, scratch);
                            (range, chain.stop_reason())
                        }
                    };
                    let cells = Cells {
                        range,
                        status: stop.status(),
                    };
                    // Rows of one process share its cells. An unknown
                    // acting process takes its image from each row, so its
                    // cells are not shared.
                    if let Some(s) = slot.filter(|_| stop != StopReason::ProcessNotFound) {
                        procs[s as usize].cells = Some(cells.clone());
                    }
                    cells
                }
            };
            stats.lineage_rows += 1;
            match cells.status {
                Status::Complete => stats.lineage_complete += 1,
                Status::Partial => stats.lineage_partial += 1,
                _ => {}
            }
            output::push_cells_head(out, hashes, rep);
            pieces.push(SMALL, mark..out.len());
            pieces.push(RENDERED, cells.range);
        }
    }

    /// What lineage needs from one row.
    fn row_start(&mut self, body: &[u8], event: &Event<'_>) -> RowStart {
        let Some(guid) = event.guid.filter(|g| !g.is_zero()) else {
            return RowStart::None;
        };
        let next = self.procs.len() as u32;
        let slot = *self.proc_index.entry(guid).or_insert(next);
        if slot == next {
            self.procs.push(ProcSlot {
                guid,
                rows: 0,
                anchored: false,
                cells: None,
            });
        }
        self.procs[slot as usize].rows += 1;
        if let Some(p) = ProcessRef::from_event(event) {
            let creation = self.creations.push(&p);
            self.creation_slots.push(slot);
            return RowStart::Creation { creation, slot };
        }
        let image: &[u8] = &event.image;
        // Most cells are slices of the body: note where (address
        // arithmetic on two slices, no access); intern only the others.
        let offset = (image.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        if offset <= body.len() && image.len() <= body.len() - offset {
            if let (Ok(start), Ok(end)) =
                (u32::try_from(offset), u32::try_from(offset + image.len()))
            {
                return RowStart::Process {
                    slot,
                    image: ImageAt::Body(start, end),
                };
            }
        }
        let image = match self.image_index.get(image) {
            Some(&id) => id,
            None => {
                let id = self.images.len() as u32;
                self.images.push(Box::from(image));
                self.image_index.insert(Box::from(image), id);
                id
            }
        };
        RowStart::Process {
            slot,
            image: ImageAt::Interned(image),
        }
    }
}

/// Wraps the splunkd source to keep what it found, for the process table.
struct Recorder<'a> {
    inner: Option<&'a mut SplunkBackfill>,
    found: Vec<ProcessInfo>,
}

impl AncestorSource for Recorder<'_> {
    fn kind(&self) -> SourceKind {
        SourceKind::Splunk
    }

    fn fetch(
        &mut self,
        guids: &[ProcessGuid],
    ) -> Result<Vec<ProcessInfo>, crate::lineage::SourceError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(Vec::new());
        };
        let got = inner.fetch(guids)?;
        self.found.extend(got.iter().cloned());
        Ok(got)
    }
}

fn prepare(header: Header, names: &FieldNames) -> Layout {
    let fields = FieldMap::new(names, |n| header.position(n));
    let passthrough = if header.names().iter().any(|n| output::is_owned(n)) {
        Passthrough::Columns(
            (0..header.len())
                .filter(|&i| !output::is_owned(&header.names()[i]))
                .collect(),
        )
    } else {
        Passthrough::Raw
    };
    Layout {
        header,
        fields,
        passthrough,
    }
}

fn write_header(out: &mut Vec<u8>, layout: &Layout) {
    let names = layout.header.names();
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, name: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        push_field(out, name);
    };
    match &layout.passthrough {
        Passthrough::Raw => names.iter().for_each(|n| put(out, n)),
        Passthrough::Columns(cols) => cols.iter().for_each(|&c| put(out, &names[c])),
    }
    output::push_header(out);
    out.push(b'\n');
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
