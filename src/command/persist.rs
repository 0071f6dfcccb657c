//! Writing the process table off the critical path.
//!
//! Every process creation a search sees is stored so later searches can
//! resolve ancestors without asking splunkd. SQLite needs ~5 µs per row for
//! that; done inline it cost the 1,000,000-row benchmark about 40 % of its
//! throughput. splunkd waits for each reply, but nothing waits for the
//! table, so a writer thread takes each chunk's rows through a short queue
//! (one chunk deep: memory stays bounded, and a slow disk slows the search
//! rather than growing a backlog) and the protocol loop moves on. The
//! search's end joins the thread, so everything is on disk before exit.

use crate::config::settings::StateSettings;
use crate::state::{StateStore, StoredProcess};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Chunks waiting for the writer at most.
const QUEUE: usize = 1;
/// How often (in batches) a long search prunes the table to its cap.
const PRUNE_EVERY: u64 = 20;

/// The writer thread of one search.
pub struct ProcessWriter {
    tx: Option<SyncSender<Vec<StoredProcess>>>,
    handle: Option<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
}

impl ProcessWriter {
    /// Starts the writer for `state`.
    pub fn start(state: Arc<StateStore>, settings: StateSettings) -> ProcessWriter {
        let (tx, rx) = sync_channel::<Vec<StoredProcess>>(QUEUE);
        let error = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&error);
        let handle = std::thread::Builder::new()
            .name("process-table".into())
            .spawn(move || {
                let mut batches = 0u64;
                for batch in rx {
                    if let Err(e) = state.put_processes(&batch) {
                        if let Ok(mut slot) = failed.lock() {
                            *slot = Some(e.to_string());
                        }
                        // Keep draining so the sender never blocks on a dead writer.
                        continue;
                    }
                    batches += 1;
                    if batches % PRUNE_EVERY == 0 {
                        let now = batch.first().map_or(0, |p| p.seen_at);
                        let keep = settings.process_retention.as_secs() as i64;
                        if let Err(e) = state.prune_processes(now, keep, settings.process_max_rows)
                        {
                            log::warn!("pruning the process table failed: {e}");
                        }
                    }
                }
            })
            .ok();
        ProcessWriter {
            tx: handle.as_ref().map(|_| tx),
            handle,
            error,
        }
    }

    /// Queues one chunk's processes (blocks only while two are queued).
    pub fn write(&self, batch: Vec<StoredProcess>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(batch);
        }
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

impl Drop for ProcessWriter {
    fn drop(&mut self) {
        self.finish();
    }
}
