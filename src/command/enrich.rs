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
//! row; the process table is bounded by its own capacity.

use super::args::Options;
use super::output::{self, RepCells};
use super::persist::ProcessWriter;
use super::state_source::{to_stored, StateSource};
use crate::config::settings::Settings;
use crate::lineage::{
    backfill, AncestorSource, Anchor, Engine, GuidBuildHasher, LineageSettings, ProcessInfo, Rules,
    SourceKind, Start,
};
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

/// Chains rendered in this chunk, by `Arc` address: the chain (kept alive
/// so the address stays unique) and its plain and `__mv_` cell ranges.
type Rendered =
    HashMap<usize, (Arc<crate::lineage::Chain>, Range<usize>, Range<usize>), GuidBuildHasher>;

/// What lineage starts from for one row, owned (the row's record is reused).
#[derive(Debug)]
enum RowStart {
    None,
    /// Index into the chunk's creations.
    Creation(u32),
    /// Acting process and the row's image (interned).
    Process(ProcessGuid, u32),
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
    creations: Vec<ProcessInfo>,
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
    /// Rendered lineage cells of the chunk (reused).
    render_buf: Vec<u8>,
    /// Background writer of the process table.
    writer: Option<ProcessWriter>,
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
            creations: Vec::new(),
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
            writer: None,
            warnings: Vec::new(),
            warned: Default::default(),
            stats: Stats::default(),
            options,
            settings,
        }
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
        out.clear();
        self.stats.chunks += 1;
        if !body.is_ascii() && std::str::from_utf8(body).is_err() {
            self.stats.non_utf8_chunks += 1;
        }
        let Some(mut reader) = RowReader::new(body, self.settings.limits.max_field)? else {
            return Ok(());
        };
        if self.layout.as_ref().map(|l| &l.header) != Some(reader.header()) {
            self.layout = Some(prepare(reader.header().clone(), &self.names));
        }
        self.read_rows(&mut reader)?;
        if self.rows.is_empty() {
            return Ok(());
        }
        self.look_up_reputation();
        if self.engine.is_some() {
            self.extend_lineage();
        }
        self.write(body, out);
        self.stats.rows += self.rows.len() as u64;
        Ok(())
    }

    /// Pass 1: every row once.
    fn read_rows(&mut self, reader: &mut RowReader<'_>) -> Result<(), BodyError> {
        self.rows.clear();
        self.creations.clear();
        self.hash_sets.clear();
        self.hash_index.clear();
        self.images.clear();
        self.image_index.clear();
        let Some(layout) = self.layout.as_ref() else {
            return Ok(());
        };
        let lineage = self.engine.is_some();
        while let Some(span) = reader.next_row()? {
            let event = layout.fields.event(&*reader);
            let hashes = if event.hashes.is_empty() {
                NO_HASHES
            } else {
                self.stats.rows_with_hashes += 1;
                let next = self.hash_sets.len() as u32;
                *self.hash_index.entry(event.hashes).or_insert_with(|| {
                    self.hash_sets.push(event.hashes);
                    next
                })
            };
            let start = if lineage {
                row_start(
                    &event,
                    &mut self.creations,
                    &mut self.images,
                    &mut self.image_index,
                )
            } else {
                RowStart::None
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
        for c in &self.creations {
            engine.insert(c, SourceKind::Results);
        }
        let mut anchors: Vec<Anchor> = Vec::with_capacity(self.rows.len());
        for r in &self.rows {
            match r.start {
                RowStart::None => {}
                RowStart::Creation(i) => {
                    let c = &self.creations[i as usize];
                    anchors.push(Anchor::Created {
                        guid: c.guid,
                        parent: c.parent_guid,
                    });
                }
                RowStart::Process(guid, _) => anchors.push(Anchor::Acting(guid)),
            }
        }
        // Many rows share an acting process: ask about each once.
        let mut seen = crate::lineage::GuidSet::with_hasher(GuidBuildHasher::new());
        anchors.retain(|a| match *a {
            Anchor::Acting(g) => seen.insert(g),
            Anchor::Created { .. } => true,
        });
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
        self.persist(&found);
    }

    /// Stores this chunk's creations (and what backfill found) so later
    /// searches find them without asking splunkd.
    fn persist(&mut self, found: &[ProcessInfo]) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let stored: Vec<_> = self
            .creations
            .iter()
            .chain(found)
            .map(|p| to_stored(p, now))
            .collect();
        let settings = self.settings.state.clone();
        let writer = self
            .writer
            .get_or_insert_with(|| ProcessWriter::start(state, settings));
        writer.write(stored);
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
    fn write(&mut self, body: &[u8], out: &mut Vec<u8>) {
        let Some(layout) = self.layout.as_ref() else {
            return;
        };
        write_header(out, layout);
        let rules = &self.rules;
        let malicious = &self.malicious;
        let is_malicious = |h: &FileHashes| {
            LookupKey::from_hashes(h).is_some_and(|k| malicious.get(&k).copied().unwrap_or(false))
        };
        // A creation row whose own info is what the table holds for its
        // GUID has the same chain as every other event of that process:
        // resolve it through the per-process cache instead of building
        // (and rendering) the chain twice.
        // How many rows of this chunk each process has: only processes with
        // several rows are worth caching (a chunk of 50,000 distinct
        // creations would otherwise keep 50,000 chains and their text).
        let mut per_process: HashMap<ProcessGuid, u32, GuidBuildHasher> = HashMap::default();
        for row in &self.rows {
            let guid = match row.start {
                RowStart::Creation(i) => self.creations[i as usize].guid,
                RowStart::Process(g, _) => g,
                RowStart::None => continue,
            };
            *per_process.entry(guid).or_insert(0) += 1;
        }
        let repeated = |g: ProcessGuid| per_process.get(&g).is_some_and(|&n| n > 1);
        let shared: Vec<bool> = match self.engine.as_ref() {
            Some(e) => self
                .creations
                .iter()
                .map(|c| {
                    repeated(c.guid)
                        && e.get(c.guid).is_some_and(|(t, kind)| {
                            kind == SourceKind::Results
                                && t.parent_guid == c.parent_guid
                                && t.image == &*c.image
                                && t.parent_image == &*c.parent_image
                                && t.parent_command_line == &*c.parent_command_line
                        })
                })
                .collect(),
            None => Vec::new(),
        };
        let mut resolver = self
            .engine
            .as_mut()
            .map(|e| e.resolver(rules, is_malicious));
        let mut stats = std::mem::take(&mut self.stats);
        let mut rendered: Rendered = HashMap::default();
        let mut render_buf = std::mem::take(&mut self.render_buf);
        render_buf.clear();
        let mut one_off: Vec<u8> = Vec::new();
        for row in &self.rows {
            match &layout.passthrough {
                Passthrough::Raw => out.extend_from_slice(&body[row.span.clone()]),
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
            let chain = match (&mut resolver, &row.start) {
                (Some(r), RowStart::Creation(i)) => {
                    let c = &self.creations[*i as usize];
                    if shared[*i as usize] {
                        Some(r.resolve(&Start::Process {
                            guid: c.guid,
                            image: &c.image,
                        }))
                    } else {
                        Some(r.resolve(&Start::creation(&c.as_ref())))
                    }
                }
                (Some(r), RowStart::Process(guid, image)) => Some(r.resolve(&Start::Process {
                    guid: *guid,
                    image: &self.images[*image as usize],
                })),
                _ => None,
            };
            let cells = chain.map(|c| {
                stats.lineage_rows += 1;
                match c.status() {
                    crate::lineage::Status::Complete => stats.lineage_complete += 1,
                    crate::lineage::Status::Partial => stats.lineage_partial += 1,
                    _ => {}
                }
                let guid = match row.start {
                    RowStart::Creation(i) => self.creations[i as usize].guid,
                    RowStart::Process(g, _) => g,
                    RowStart::None => ProcessGuid::from_u128(0),
                };
                if !repeated(guid) {
                    // A process with one row: render, use, forget.
                    one_off.clear();
                    let (plain, mv) = output::render_chain(&c, &mut one_off, &mut self.scratch);
                    return (true, plain, mv);
                }
                // Rows of one process share one Arc'd chain: render it once.
                // The map keeps the Arc, so its address cannot be reused by
                // another chain while the entry lives.
                let key = Arc::as_ptr(&c) as usize;
                let (_, plain, mv) = rendered.entry(key).or_insert_with(|| {
                    let (plain, mv) = output::render_chain(&c, &mut render_buf, &mut self.scratch);
                    (c, plain, mv)
                });
                (false, plain.clone(), mv.clone())
            });
            let rep = (row.hashes != NO_HASHES)
                .then(|| self.rep_cells.get(row.hashes as usize))
                .flatten();
            let cells = cells.map(|(once, p, m)| {
                let buf = if once { &one_off } else { &render_buf };
                output::ChainCells {
                    plain: &buf[p],
                    mv: &buf[m],
                }
            });
            output::push_cells(out, hashes, rep, cells);
            out.push(b'\n');
        }
        self.stats = stats;
        drop(rendered);
        self.render_buf = render_buf;
    }
}

/// What lineage needs from one row.
fn row_start(
    event: &Event<'_>,
    creations: &mut Vec<ProcessInfo>,
    images: &mut Vec<Box<[u8]>>,
    image_index: &mut HashMap<Box<[u8]>, u32, GuidBuildHasher>,
) -> RowStart {
    let Some(guid) = event.guid.filter(|g| !g.is_zero()) else {
        return RowStart::None;
    };
    if event.is_process_creation() {
        let mut p = ProcessInfo::new(guid);
        p.parent_guid = event.parent_guid;
        p.image = Box::from(&*event.image);
        p.command_line = Box::from(&*event.command_line);
        p.parent_image = Box::from(&*event.parent_image);
        p.parent_command_line = Box::from(&*event.parent_command_line);
        p.host = Box::from(&*event.host);
        p.time = event.time;
        p.hashes = event.hashes;
        creations.push(p);
        return RowStart::Creation(creations.len() as u32 - 1);
    }
    let image: &[u8] = &event.image;
    let id = match image_index.get(image) {
        Some(&id) => id,
        None => {
            let id = images.len() as u32;
            images.push(Box::from(image));
            image_index.insert(Box::from(image), id);
            id
        }
    };
    RowStart::Process(guid, id)
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
