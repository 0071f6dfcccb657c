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

use super::creations::Creations;
use super::state_source::to_row;
use crate::config::settings::StateSettings;
use crate::state::StateStore;
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
}

impl ProcessWriter {
    /// Starts the writer for `state`.
    pub fn start(state: Arc<StateStore>, settings: StateSettings) -> ProcessWriter {
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
        let handle = std::thread::Builder::new()
            .name("process-table".into())
            .spawn(move || {
                let mut batches = 0u64;
                for (mut batch, seen_at) in rx {
                    let stored = store_new(&state, &batch, seen_at);
                    batch.clear();
                    let _ = back.try_send(batch);
                    if let Err(e) = stored {
                        if let Ok(mut slot) = failed.lock() {
                            *slot = Some(e.to_string());
                        }
                        // Keep draining so the sender never blocks on a dead writer.
                        continue;
                    }
                    batches += 1;
                    if batches % PRUNE_EVERY == 0 {
                        let keep = settings.process_retention.as_secs() as i64;
                        if let Err(e) =
                            state.prune_processes(seen_at, keep, settings.process_max_rows)
                        {
                            log::warn!("pruning the process table failed: {e}");
                        }
                    }
                }
            })
            .ok();
        ProcessWriter {
            tx: handle.as_ref().map(|_| tx),
            spent,
            handle,
            error,
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

    /// Waits until everything queued is written.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Stores the processes of `batch` the table does not hold yet.
fn store_new(
    state: &StateStore,
    batch: &Creations,
    seen_at: i64,
) -> Result<(), crate::state::StateError> {
    let guids: Vec<u128> = batch.iter().map(|p| p.guid.as_u128()).collect();
    let known = state.known_processes(&guids, seen_at)?;
    state.put_process_rows(
        batch
            .iter()
            .filter(|p| !known.contains(&p.guid.as_u128()))
            .map(|p| to_row(&p, seen_at)),
    )?;
    Ok(())
}

impl Drop for ProcessWriter {
    fn drop(&mut self) {
        self.finish();
    }
}
