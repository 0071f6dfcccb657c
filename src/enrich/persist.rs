//! Writing the process table off the critical path.
//!
//! Every process creation a search sees is stored so later searches can
//! resolve ancestors without asking splunkd. SQLite needs ~5 µs per row for
//! that; done inline it cost the 1,000,000-row benchmark about 40 % of its
//! throughput. splunkd waits for each reply, but nothing waits for the
//! table, so a writer thread takes each chunk's rows and the protocol loop
//! moves on. The hand-over is a rendezvous: a chunk's rows wait for the
//! writer to finish the previous chunk's, never in a queue. Memory stays
//! at two chunks' creations (one being written, one being gathered; a
//! queue of one chunk held a third: 30 MB of the memory benchmark's peak,
//! 384 → 354 MB, at the same rows/s), and a slow disk slows the search
//! rather than growing a backlog. The search's end joins the thread, so
//! everything is on disk before exit.
//!
//! The thread has its own connection (WAL: the main thread's ancestor
//! reads never wait for its transactions), converts rows to the store's
//! shape itself, and asks first which processes are already stored: a
//! scheduled search mostly sees processes an earlier run stored, and those
//! cost one index probe instead of an insert.
//!
//! What may enter the table (issue 12: the table is shared by every search
//! for 30 days, so one careless or hostile search must not rewrite
//! everyone's lineage): only creations the enricher trusts (standard field
//! names, rows that agree with their `_raw`), never a process that is its
//! own parent, each row naming the search that wrote it. A known GUID whose
//! creation differs from the stored one (digests first, then field by
//! field) is a conflict: not stored, recorded in the store and logged once
//! per search. Command lines are stored cut to `[state]
//! command_line_max_bytes`.
//!
//! When a write fails (a store locked beyond `busy_timeout`, a full disk),
//! the writer stops writing for the rest of the search: each further try
//! would wait as long again, and the process would outlive its last reply
//! by that much per chunk.

use super::creations::Creations;
use super::shared::docs::{SharedProcess, PROCESSES};
use super::shared::SharedTier;
use super::state_source::to_row;
use crate::config::settings::StateSettings;
use crate::lineage::ProcessRef;
use crate::state::StoredProcess;
use crate::state::{
    cap_text, contradictions, process_digest, Conflict, ProcessRow, StateStore, Writer,
};
use crate::sysmon::ProcessGuid;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Page cache of the writer's connection, KiB. Its probes and inserts
/// follow the chunk's GUIDs; 8 MiB holds the index pages they touch, and
/// a full-size cache (the reading connection's 16 MiB) would only add to
/// the search's peak (the memory benchmark's 400 MB limit).
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// Chunks waiting for the writer at most: none (see the module docs).
const QUEUE: usize = 0;
/// How often (in batches) a long search prunes the table to its cap.
const PRUNE_EVERY: u64 = 20;

/// One chunk's processes and the time they were seen (epoch seconds).
type Batch = (Creations, i64);

/// The writer thread of one search.
pub struct ProcessWriter {
    tx: Option<SyncSender<Batch>>,
    /// Written batches coming back, cleared, for reuse.
    spent: Receiver<Creations>,
    handle: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
    /// Set once a write failed: the store is not written again in this
    /// search, end-of-search maintenance included.
    gave_up: Arc<AtomicBool>,
}

/// What the writer thread needs besides the store.
struct Job {
    settings: StateSettings,
    origin: Writer,
    /// The origin's number in the store, once registered.
    writer: Option<i64>,
    /// GUIDs whose conflict this search has logged.
    logged: HashSet<u128>,
    /// The KV store tier: what the table newly stores goes there too.
    shared: Option<Arc<SharedTier>>,
}

impl ProcessWriter {
    /// Starts the writer for `state`; `origin` is the search writing.
    /// With `shared`, what the table newly stores is handed to the
    /// shared tier too (as documents, never waiting on it).
    pub fn start(
        state: Arc<StateStore>,
        settings: StateSettings,
        origin: Writer,
        shared: Option<Arc<SharedTier>>,
    ) -> ProcessWriter {
        let (tx, rx) = sync_channel::<Batch>(QUEUE);
        // Room for every batch in flight, so the writer never blocks here.
        let (back, spent) = sync_channel::<Creations>(QUEUE + 2);
        let state = match state.reopen() {
            Some(Ok(store)) => {
                if let Err(e) = store.set_cache_kib(WRITER_CACHE_KIB) {
                    log::warn!("process table: {e}");
                }
                Arc::new(store)
            }
            Some(Err(e)) => {
                log::warn!("process table: a second connection failed ({e}); sharing one");
                state
            }
            None => state,
        };
        let error = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&error);
        let gave_up = Arc::new(AtomicBool::new(false));
        let giving_up = Arc::clone(&gave_up);
        let mut job = Job {
            settings,
            origin,
            writer: None,
            logged: HashSet::new(),
            shared,
        };
        let handle = std::thread::Builder::new()
            .name("process-table".into())
            .spawn(move || {
                let mut batches = 0u64;
                for (mut batch, seen_at) in rx {
                    // After one failure (a store locked beyond its busy
                    // timeout, a full disk) every later write would wait
                    // as long again: the rest of the search drains only.
                    if !giving_up.load(Ordering::Relaxed) {
                        if let Err(e) = job.store(&state, &batch, seen_at) {
                            if let Ok(mut slot) = failed.lock() {
                                *slot = Some(e.to_string());
                            }
                            giving_up.store(true, Ordering::Relaxed);
                        }
                    }
                    batch.clear();
                    let _ = back.try_send(batch);
                    if giving_up.load(Ordering::Relaxed) {
                        continue;
                    }
                    batches += 1;
                    if batches.is_multiple_of(PRUNE_EVERY) {
                        let keep = job.settings.process_retention.as_secs() as i64;
                        let max = job.settings.process_max_rows;
                        if let Err(e) = state.prune_processes(seen_at, keep, max) {
                            log::warn!("pruning the process table failed: {e}");
                            giving_up.store(true, Ordering::Relaxed);
                        }
                    }
                }
                if !job.logged.is_empty() {
                    log::warn!(
                        "sid={}: {} process creation(s) contradicted the process table and were \
                         not stored (see the conflict lines above; `sysmonenrich state stats` \
                         counts them)",
                        job.origin.sid,
                        job.logged.len()
                    );
                }
            })
            .ok();
        ProcessWriter {
            tx: handle.as_ref().map(|_| tx),
            spent,
            handle,
            error,
            gave_up,
        }
    }

    /// Queues one chunk's processes, seen at `seen_at` (blocks only while
    /// the queue is full).
    pub fn write(&self, batch: Creations, seen_at: i64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((batch, seen_at));
        }
    }

    /// An empty batch whose buffers have already grown, when the writer
    /// has handed one back.
    pub fn recycle(&self) -> Option<Creations> {
        self.spent.try_recv().ok()
    }

    /// The first write error, once.
    pub fn take_error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// True once a write failed: the store is left alone for the rest of
    /// the search (end-of-search maintenance would only wait again).
    pub fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Relaxed)
    }

    /// Waits until everything queued is written.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Conflict lines one search writes to the log at most (the rest are
/// counted in its last line and in the store).
const MAX_CONFLICT_LINES: usize = 20;

impl Job {
    /// Stores the trusted processes of `batch` the table does not hold
    /// yet, and records those that contradict what it holds.
    fn store(
        &mut self,
        state: &StateStore,
        batch: &Creations,
        seen_at: i64,
    ) -> Result<(), crate::state::StateError> {
        let writer = match self.writer {
            Some(w) => w,
            None => {
                let w = state.writer_id(&self.origin)?;
                self.writer = Some(w);
                w
            }
        };
        let cap = self.settings.command_line_max_bytes;
        // A process is not its own parent: such a row comes from a wrong
        // field mapping, and stored it turned whole chains into cycles.
        // Indices and GUIDs only: a whole creation (its hashes are most of
        // its bytes) is read from the batch where it is needed, for the
        // digest of a known process or the row of a new one.
        let mut eligible: Vec<usize> = Vec::with_capacity(batch.len());
        let mut guids: Vec<u128> = Vec::with_capacity(batch.len());
        for (i, guid, parent) in batch.trusted_guids() {
            if parent != Some(guid) {
                eligible.push(i);
                guids.push(guid.as_u128());
            }
        }
        let known = state.known_processes(&guids, seen_at)?;
        let mut suspects: Vec<u128> = Vec::new();
        let mut fresh: Vec<ProcessRow<'_>> = Vec::new();
        for (&i, g) in eligible.iter().zip(&guids) {
            match known.get(g) {
                None => fresh.push(capped(to_row(&batch.get(i), seen_at), cap)),
                // Written before digests existed: not compared.
                Some(None) => {}
                Some(Some(d)) => {
                    if digest(&batch.get(i), cap) != *d {
                        suspects.push(*g);
                    }
                }
            }
        }
        state.put_process_rows_by(fresh.iter().cloned(), Some(writer))?;
        self.store_sigma(state, batch)?;
        self.share(batch, &fresh);
        if suspects.is_empty() {
            return Ok(());
        }
        let stored = state.get_processes(&suspects)?;
        let mut conflicts = Vec::new();
        let mut seen = HashSet::new();
        for (&i, &g) in eligible.iter().zip(&guids) {
            let Ok(k) = stored.binary_search_by_key(&g, |s| s.guid) else {
                continue;
            };
            let p = batch.get(i);
            let fields = contradictions(&stored[k], &capped(to_row(&p, seen_at), cap));
            if !fields.is_empty() && seen.insert(g) {
                conflicts.push(Conflict {
                    guid: g,
                    fields,
                    stored_by: None,
                });
            }
        }
        if conflicts.is_empty() {
            return Ok(());
        }
        state.record_conflicts(&conflicts, writer, seen_at)?;
        let guids: Vec<u128> = conflicts.iter().map(|c| c.guid).collect();
        let by = state.process_writers(&guids)?;
        for c in &mut conflicts {
            c.stored_by = by.get(&c.guid).cloned();
        }
        self.log(&conflicts);
        Ok(())
    }

    /// Hands the creations the table has just stored, with their Sigma
    /// matches, to the shared tier: the same trust rules decided them.
    fn share(&self, batch: &Creations, fresh: &[ProcessRow<'_>]) {
        let Some(shared) = &self.shared else {
            return;
        };
        if fresh.is_empty() {
            return;
        }
        let mut sigma: HashMap<u128, &[u64]> = HashMap::new();
        for (i, fps) in &batch.sigma {
            if let Some(p) = batch.get_trusted(*i as usize) {
                sigma.insert(p.guid.as_u128(), fps.as_slice());
            }
        }
        let docs = fresh
            .iter()
            .map(|r| {
                SharedProcess {
                    process: StoredProcess {
                        guid: r.guid,
                        parent_guid: r.parent_guid.filter(|g| *g != 0),
                        image: r.image.to_string(),
                        command_line: r.command_line.to_string(),
                        parent_image: r.parent_image.to_string(),
                        parent_command_line: r.parent_command_line.to_string(),
                        host: r.host.to_string(),
                        time: r.time,
                        md5: r.md5.as_deref().map(str::to_string),
                        sha1: r.sha1.as_deref().map(str::to_string),
                        sha256: r.sha256.as_deref().map(str::to_string),
                        imphash: r.imphash.as_deref().map(str::to_string),
                        seen_at: r.seen_at,
                    },
                    writer: self.origin.clone(),
                    sigma: sigma.get(&r.guid).map_or_else(Vec::new, |f| f.to_vec()),
                }
                .to_doc()
            })
            .collect();
        shared.send(PROCESSES, docs);
    }

    /// Records the Sigma matches of the batch's creations, each with the
    /// digest of the very creation it was evaluated on: the store keeps
    /// them only where it holds that creation (a distrusted row, its own
    /// parent, or a contradiction of the table never names a process).
    fn store_sigma(
        &self,
        state: &StateStore,
        batch: &Creations,
    ) -> Result<(), crate::state::StateError> {
        if batch.sigma.is_empty() {
            return Ok(());
        }
        let cap = self.settings.command_line_max_bytes;
        let rows: Vec<(u128, i64, &[u64])> = batch
            .sigma
            .iter()
            .filter_map(|(i, fps)| {
                let p = batch
                    .get_trusted(*i as usize)
                    .filter(|p| p.parent_guid != Some(p.guid))?;
                Some((p.guid.as_u128(), digest(&p, cap), fps.as_slice()))
            })
            .collect();
        state.put_process_sigma(&rows).map(drop)
    }

    /// Logs each conflicting GUID once per search (tamper evidence: who
    /// brought the contradicting creation, who wrote the stored one, which
    /// fields differ).
    fn log(&mut self, conflicts: &[Conflict]) {
        for c in conflicts {
            if !self.logged.insert(c.guid) || self.logged.len() > MAX_CONFLICT_LINES {
                continue;
            }
            let stored_by = c.stored_by.as_ref().map_or_else(
                || "an unrecorded search".to_string(),
                |w| format!("sid={} user={}", w.sid, w.user),
            );
            log::warn!(
                "process table conflict: sid={} user={} brought a creation of {} that \
                 contradicts the stored one (written by {stored_by}) in {}; not stored",
                self.origin.sid,
                self.origin.user,
                ProcessGuid::from_u128(c.guid),
                c.fields.join(", ")
            );
        }
    }
}

/// `row` with its command lines cut to `cap` bytes, as the table stores
/// them.
fn capped(mut row: ProcessRow<'_>, cap: usize) -> ProcessRow<'_> {
    row.command_line = cap_text(row.command_line, cap);
    row.parent_command_line = cap_text(row.parent_command_line, cap);
    row
}

/// The digest of `p` as the table would store it, without formatting its
/// hashes (see `state::process_digest`).
fn digest(p: &ProcessRef<'_>, cap: usize) -> i64 {
    fn text(b: &[u8], cap: usize) -> std::borrow::Cow<'_, str> {
        cap_text(String::from_utf8_lossy(b), cap)
    }
    let parent = p
        .parent_guid
        .filter(|g| !g.is_zero())
        .map(ProcessGuid::as_u128);
    process_digest(
        parent,
        [
            &String::from_utf8_lossy(p.image),
            &text(p.command_line, cap),
            &String::from_utf8_lossy(p.parent_image),
            &text(p.parent_command_line, cap),
            &String::from_utf8_lossy(p.host),
        ],
    )
}

impl Drop for ProcessWriter {
    fn drop(&mut self) {
        self.finish();
    }
}
