//! One search's connection to the shared tier: batched reads on the
//! search's thread, writes on a thread of their own, all bounded.
//!
//! Bounds, and why:
//!
//! - Time: every KV store call of the search spends one budget (`[state]
//!   shared_budget`, 2 s by default); each call's timeout is what is left,
//!   and the search's end waits for the last writes at most that long. A
//!   KV store that is slow or wedged so costs a search the budget once,
//!   not per chunk.
//! - Faults: a timeout, a 5xx, an unreachable splunkd or garbage opens the
//!   `kvstore` circuit at once (its cool-down recorded in the state
//!   database like a provider's): one WARN, and this search and the next
//!   ones skip the KV store until the cool-down ends. A 403 on a write
//!   means the user may read the collections but not write them: reads
//!   stay, writes stay local, one INFO. Any other refusal (401, 400, 404)
//!   turns the tier off for the search with one WARN.
//! - Memory: documents waiting for the writer are capped
//!   ([`MAX_QUEUED_DOCS`]); what does not fit is counted and dropped for
//!   the shared tier only (the local tier and the rows never wait on it),
//!   and the count is logged at the end.
//! - Trust: the writer sends only creations the local table has just
//!   accepted under its trust rules, and only those the KV store does not
//!   hold yet: one read first, and a creation that contradicts the stored
//!   one is a conflict, logged and not written (first write wins, as in
//!   the local table; `batch_save` alone would replace).

use super::docs::{SharedAnswer, SharedProcess, PROCESSES, REPUTATION};
use crate::circuit::Breaker;
use crate::splunk::kvstore::{or_groups, KvStore, MAX_QUERY_URL};
use crate::splunk::SplunkError;
use crate::state::StateStore;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Documents waiting for the KV store writer at most (about 1 KiB each).
pub const MAX_QUEUED_DOCS: usize = 20_000;
/// Batches waiting for the writer at most.
const QUEUE: usize = 16;

/// The time all KV store calls of a search share.
#[derive(Debug)]
pub struct Budget {
    left: Mutex<Duration>,
}

impl Budget {
    /// A budget of `total`.
    pub fn new(total: Duration) -> Budget {
        Budget {
            left: Mutex::new(total),
        }
    }

    /// What is left.
    pub fn left(&self) -> Duration {
        *self.left.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spend(&self, d: Duration) {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        *left = left.saturating_sub(d);
    }
}

/// What the tier's reads and writes share.
struct Inner {
    budget: Arc<Budget>,
    breaker: Arc<Breaker>,
    /// Writes allowed (false after a 403).
    writes: AtomicBool,
    /// The tier is off for the rest of the search.
    off: AtomicBool,
    /// The search's one WARN about the tier was given.
    warned: AtomicBool,
    /// WARN texts for the search's messages.
    warnings: Mutex<Vec<String>>,
    queued: AtomicUsize,
    dropped: AtomicU64,
    saved: AtomicU64,
    found: AtomicU64,
    refused: AtomicU64,
    conflicts: AtomicU64,
}

/// Conflict lines one search logs at most (the rest are counted).
const MAX_CONFLICT_LINES: u64 = 5;

impl Inner {
    fn usable(&self) -> bool {
        !self.off.load(Ordering::Relaxed) && !self.breaker.is_open()
    }

    /// Runs one KV store call within the budget, counting it on the
    /// circuit; `None` when skipped or failed (see the module docs).
    fn call<T>(&self, write: bool, f: impl FnOnce() -> Result<T, SplunkError>) -> Option<T> {
        if !self.usable() || (write && !self.writes.load(Ordering::Relaxed)) {
            return None;
        }
        if self.budget.left().is_zero() {
            return None;
        }
        let started = Instant::now();
        let result = f();
        self.budget.spend(started.elapsed());
        match result {
            Ok(v) => {
                self.breaker.success();
                Some(v)
            }
            Err(e) if write && e.status() == Some(403) => {
                if self.writes.swap(false, Ordering::Relaxed) {
                    log::info!(
                        "shared tier: this user may read the KV store collections but not \
                         write them ({e}); this search's writes stay local"
                    );
                }
                None
            }
            Err(e) if e.is_splunkd_failure() => {
                let (_, text) = self.breaker.trip(&e.brief(), crate::circuit::now_secs());
                if let Some(text) = text {
                    self.warn(format!(
                        "sysmonenrich: shared tier (KV store) {text}; this search goes on with the local state"
                    ));
                }
                None
            }
            Err(e) => {
                self.off.store(true, Ordering::Relaxed);
                self.warn(format!(
                    "sysmonenrich: shared tier (KV store) off for this search: {e}"
                ));
                None
            }
        }
    }

    /// Drops from `docs` the processes the KV store already holds: the
    /// same creation needs no write, and a different one is a conflict
    /// (logged, not written): as in the local table, the first writer
    /// wins, so one member cannot rewrite what the others read. Without
    /// an answer nothing is written (the circuit then skips the write
    /// anyway).
    fn first_write_wins(&self, kv: &KvStore, docs: &mut Vec<Value>) {
        let keys: Vec<String> = docs
            .iter()
            .filter_map(|d| d.get("_key").and_then(Value::as_str).map(str::to_string))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut stored: HashMap<String, Value> = HashMap::new();
        for q in or_groups("_key", &refs, MAX_QUERY_URL) {
            match self.call(false, || kv.query(PROCESSES, &q, 0, 0)) {
                Some(found) => {
                    for d in found {
                        if let Some(k) = d.get("_key").and_then(Value::as_str) {
                            stored.insert(k.to_string(), d);
                        }
                    }
                }
                None => {
                    self.dropped.fetch_add(docs.len() as u64, Ordering::Relaxed);
                    docs.clear();
                    return;
                }
            }
        }
        docs.retain(|d| {
            let key = d.get("_key").and_then(Value::as_str).unwrap_or("");
            let Some(old) = stored.get(key) else {
                return true;
            };
            if old.get("digest") != d.get("digest") {
                let n = self.conflicts.fetch_add(1, Ordering::Relaxed);
                if n < MAX_CONFLICT_LINES {
                    log::warn!(
                        "shared tier: conflict: sid={} brought a creation of {key} that \
                         contradicts the KV store's (written by sid={} user={}); not written",
                        d.get("writer_sid").and_then(Value::as_str).unwrap_or("?"),
                        old.get("writer_sid").and_then(Value::as_str).unwrap_or("?"),
                        old.get("writer_user")
                            .and_then(Value::as_str)
                            .unwrap_or("?"),
                    );
                }
            }
            false
        });
    }

    fn warn(&self, text: String) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!("{text}");
            if let Ok(mut w) = self.warnings.lock() {
                w.push(text);
            }
        }
    }
}

type Batch = (&'static str, Vec<Value>);

/// The shared tier of one search.
pub struct SharedTier {
    inner: Arc<Inner>,
    reader: KvStore,
    tx: Mutex<Option<SyncSender<Batch>>>,
    done: Mutex<Option<Receiver<()>>>,
    /// Reputation documents gathered during a chunk (sent per chunk).
    answers: Mutex<Vec<Value>>,
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier").finish_non_exhaustive()
    }
}

impl SharedTier {
    /// Starts the tier: `reader` for the search's reads, `writer` (its
    /// own client) for the writer thread; `breaker` is the `kvstore`
    /// circuit.
    pub fn start(
        reader: KvStore,
        writer: KvStore,
        budget: Duration,
        breaker: Arc<Breaker>,
    ) -> Arc<SharedTier> {
        let budget = Arc::new(Budget::new(budget));
        let inner = Arc::new(Inner {
            budget: budget.clone(),
            breaker,
            writes: AtomicBool::new(true),
            off: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            found: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        });
        let left = {
            let b = budget.clone();
            Arc::new(move || b.left())
        };
        let reader = reader.with_time_left(left.clone());
        let writer = writer.with_time_left(left);
        let (tx, rx) = sync_channel::<Batch>(QUEUE);
        let (done_tx, done) = sync_channel::<()>(1);
        let thread_inner = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("kvstore-writer".into())
            .spawn(move || {
                for (collection, mut docs) in rx {
                    let n = docs.len();
                    if collection == PROCESSES {
                        thread_inner.first_write_wins(&writer, &mut docs);
                    }
                    let saved = if docs.is_empty() {
                        Some(0)
                    } else {
                        thread_inner.call(true, || writer.batch_save(collection, &docs))
                    };
                    thread_inner.queued.fetch_sub(n, Ordering::Relaxed);
                    match saved {
                        Some(k) => thread_inner.saved.fetch_add(k as u64, Ordering::Relaxed),
                        None => thread_inner.dropped.fetch_add(n as u64, Ordering::Relaxed),
                    };
                }
                let _ = done_tx.send(());
            });
        let (tx, done) = match spawned {
            Ok(_) => (Some(tx), Some(done)),
            Err(e) => {
                log::info!("shared tier: no writer thread ({e}); writes stay local");
                (None, None)
            }
        };
        Arc::new(SharedTier {
            inner,
            reader,
            tx: Mutex::new(tx),
            done: Mutex::new(done),
            answers: Mutex::new(Vec::new()),
        })
    }

    /// True while reads may go to the KV store.
    pub fn usable(&self) -> bool {
        self.inner.usable() && !self.inner.budget.left().is_zero()
    }

    /// The WARN texts for the search's messages (each once).
    pub fn take_warnings(&self) -> Vec<String> {
        self.inner
            .warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// Documents of `collection` whose `_key` is one of `keys`: one
    /// request per group of keys that keeps the URL reasonable.
    fn read(&self, collection: &str, keys: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        for q in or_groups("_key", keys, MAX_QUERY_URL) {
            match self
                .inner
                .call(false, || self.reader.query(collection, &q, 0, 0))
            {
                Some(docs) => out.extend(docs),
                None => break,
            }
        }
        out
    }

    /// The unexpired shared answers of `provider` for `keys` (cache keys),
    /// by cache key.
    pub fn answers(
        &self,
        provider: &str,
        keys: &[&str],
        now: i64,
    ) -> HashMap<String, SharedAnswer> {
        let mut out = HashMap::new();
        if keys.is_empty() || !self.usable() {
            return out;
        }
        let doc_keys: Vec<String> = keys
            .iter()
            .map(|k| super::docs::answer_key(provider, k))
            .collect();
        let refs: Vec<&str> = doc_keys.iter().map(String::as_str).collect();
        let wanted: HashSet<&str> = keys.iter().copied().collect();
        for doc in self.read(REPUTATION, &refs) {
            match SharedAnswer::from_doc(&doc) {
                Ok(a) if a.provider == provider && wanted.contains(a.key.as_str()) => {
                    if a.expires > now {
                        out.insert(a.key.clone(), a);
                    }
                }
                Ok(_) => {}
                Err(reason) => self.refused(REPUTATION, &doc, &reason),
            }
        }
        self.inner
            .found
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// The shared creations of `guids` that pass the checks.
    pub fn processes(&self, guids: &[u128]) -> Vec<SharedProcess> {
        if guids.is_empty() || !self.usable() {
            return Vec::new();
        }
        let texts: Vec<String> = guids
            .iter()
            .map(|g| crate::sysmon::ProcessGuid::from_u128(*g).to_string())
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let wanted: HashSet<u128> = guids.iter().copied().collect();
        let mut out = Vec::new();
        for doc in self.read(PROCESSES, &refs) {
            match SharedProcess::from_doc(&doc) {
                Ok(p) if wanted.contains(&p.process.guid) => out.push(p),
                Ok(_) => {}
                Err(reason) => self.refused(PROCESSES, &doc, &reason),
            }
        }
        self.inner
            .found
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    fn refused(&self, collection: &str, doc: &Value, reason: &str) {
        // Debug only: a bad document is refused on every read until it is
        // rewritten, and must not flood the log.
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        log::debug!(
            "shared tier: {collection} document {} refused: {reason}",
            doc.get("_key").and_then(Value::as_str).unwrap_or("?")
        );
    }

    /// Keeps a reputation answer for the next [`SharedTier::flush`].
    pub fn put_answer(&self, answer: &SharedAnswer) {
        if !self.inner.usable() || !self.inner.writes.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut a) = self.answers.lock() {
            if a.len() < crate::splunk::kvstore::MAX_BATCH_DOCS * 10 {
                a.push(answer.to_doc());
                return;
            }
        }
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands `docs` to the writer thread, or counts them as dropped when
    /// the tier cannot take them (never waits).
    pub fn send(&self, collection: &'static str, docs: Vec<Value>) {
        let n = docs.len();
        if n == 0 {
            return;
        }
        let drop_them = |inner: &Inner| {
            inner.dropped.fetch_add(n as u64, Ordering::Relaxed);
        };
        if !self.inner.usable() || !self.inner.writes.load(Ordering::Relaxed) {
            return drop_them(&self.inner);
        }
        if self.inner.queued.fetch_add(n, Ordering::Relaxed) + n > MAX_QUEUED_DOCS {
            self.inner.queued.fetch_sub(n, Ordering::Relaxed);
            return drop_them(&self.inner);
        }
        let tx = self.tx.lock().ok().and_then(|t| t.clone());
        let sent = match tx {
            Some(tx) => match tx.try_send((collection, docs)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.inner.queued.fetch_sub(n, Ordering::Relaxed);
            drop_them(&self.inner);
        }
    }

    /// Sends the reputation answers gathered since the last flush (once
    /// per chunk).
    pub fn flush(&self) {
        let docs = self
            .answers
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default();
        self.send(REPUTATION, docs);
    }

    /// Ends the search's writes: waits for the writer at most what is
    /// left of the budget, then logs what was not written, if anything.
    pub fn finish(&self) {
        self.flush();
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            if done.recv_timeout(self.inner.budget.left()).is_err() {
                let waiting = self.inner.queued.load(Ordering::Relaxed);
                self.inner
                    .dropped
                    .fetch_add(waiting as u64, Ordering::Relaxed);
            }
        }
        let conflicts = self.inner.conflicts.load(Ordering::Relaxed);
        if conflicts > MAX_CONFLICT_LINES {
            log::warn!(
                "shared tier: {conflicts} process creations contradicted the KV store and were \
                 not written"
            );
        }
        let dropped = self.inner.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            log::info!(
                "shared tier: {dropped} document(s) not written to the KV store this search \
                 ({} written); they stay in the local state database",
                self.inner.saved.load(Ordering::Relaxed)
            );
        }
    }

    /// (documents read and accepted, written, dropped, refused) so far.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let i = &self.inner;
        (
            i.found.load(Ordering::Relaxed),
            i.saved.load(Ordering::Relaxed),
            i.dropped.load(Ordering::Relaxed),
            i.refused.load(Ordering::Relaxed),
        )
    }

    /// Deletes what `[state]` retention drops locally: process documents
    /// not seen for `retention_secs`, expired answers. One call each.
    pub fn prune(&self, now: i64, retention_secs: i64) {
        let cutoff = now.saturating_sub(retention_secs);
        let q = serde_json::json!({ "seen_at": { "$lt": cutoff } });
        self.inner.call(true, || self.reader.delete(PROCESSES, &q));
        let q = serde_json::json!({ "expires": { "$lt": now } });
        self.inner.call(true, || self.reader.delete(REPUTATION, &q));
    }
}

/// Writes what the KV store answered to the local tier, so the next
/// search on this member finds it there: creations with their writers
/// and Sigma matches (a creation the table holds differently is not
/// replaced: first write wins, as locally).
pub fn keep_processes(state: &StateStore, found: &[SharedProcess]) -> crate::state::Result<()> {
    let mut by_writer: HashMap<&crate::state::Writer, Vec<&SharedProcess>> = HashMap::new();
    for p in found {
        by_writer.entry(&p.writer).or_default().push(p);
    }
    for (writer, list) in by_writer {
        let id = state.writer_id(writer)?;
        state.put_process_rows_by(list.iter().map(|p| p.process.as_row()), Some(id))?;
    }
    let sigma: Vec<(u128, i64, &[u64])> = found
        .iter()
        .filter(|p| !p.sigma.is_empty())
        .map(|p| (p.process.guid, p.digest(), p.sigma.as_slice()))
        .collect();
    state.put_process_sigma(&sigma).map(drop)
}

/// Deletes the process documents one search or one user wrote: the KV
/// store's side of `sysmonenrich state purge --sid/--user`. Returns how
/// many documents matched (counted first, so the CLI can say it).
pub fn purge_processes_by(
    kv: &KvStore,
    sid: Option<&str>,
    user: Option<&str>,
) -> Result<usize, SplunkError> {
    let mut q = serde_json::Map::new();
    if let Some(s) = sid {
        q.insert("writer_sid".into(), s.into());
    }
    if let Some(u) = user {
        q.insert("writer_user".into(), u.into());
    }
    let q = Value::Object(q);
    if q.as_object().is_some_and(|o| o.is_empty()) {
        // `delete` refuses an empty query too; say why here.
        return Ok(0);
    }
    let matched = kv.query(PROCESSES, &q, 0, 0)?.len();
    if matched > 0 {
        kv.delete(PROCESSES, &q)?;
    }
    Ok(matched)
}
