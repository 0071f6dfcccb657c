//! Rule files compiled on worker threads while the loader walks the folder.
//!
//! Loading SigmaHQ's 2,238 rules is about 0.3 s of CPU, nearly all of it
//! YAML parsing and compiling each file on its own, and a search waits for
//! it before its first row. The loader's thread walks and reads the files
//! and hands each one to the pool; workers compile (each rule numbering
//! its fields alone); the loader takes the results back *in walk order*
//! and admits them one by one, so that field numbers, duplicate ids, the
//! set's memory budget and every skip reason come out exactly as a load on
//! one thread makes them.
//!
//! Bounded: at most [`IN_FLIGHT`] files wait for a worker (the walk blocks
//! beyond), and a result waits only until the files before it are done.
//! A worker that cannot start or stops leaves its work to the loader's
//! thread.

use super::load::fingerprint;
use super::rule::{self, Rule};
use super::Skipped;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Stack of a compiling thread: what the main thread has, since the
/// condition and YAML depth bounds were measured there.
const COMPILE_STACK: usize = 8 << 20;

/// Files handed to the workers and not yet taken (each at most
/// `MAX_RULE_FILE`).
const IN_FLIGHT: usize = 64;

/// Threads that compile a rule set: the cores, at most 4 (past that the
/// walk and the in-order admission dominate).
/// `SYSMONENRICH_SIGMA_LOAD_THREADS=N` overrides it: the sigma bench's
/// one-thread comparison, or a way to rule the threads out when a load
/// looks wrong. 1 compiles on the loader's thread alone.
pub fn compile_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::env::var("SYSMONENRICH_SIGMA_LOAD_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(cores, |n| n.clamp(1, 64))
}

/// One rule file compiled on its own, its fields numbered in the order it
/// names them (renumbered into the set's table when admitted).
pub struct Compiled {
    pub path: PathBuf,
    pub rule: Result<Rule, String>,
    pub fields: Vec<String>,
    pub fingerprint: u64,
}

impl Compiled {
    /// Compiles a file's bytes (which must be UTF-8 text).
    pub fn from_bytes(path: PathBuf, bytes: &[u8]) -> Compiled {
        match std::str::from_utf8(bytes) {
            Ok(text) => Compiled::new(path, text),
            Err(_) => Compiled::failed(path, "not UTF-8 text"),
        }
    }

    /// Compiles a rule file's text.
    pub fn new(path: PathBuf, source: &str) -> Compiled {
        let mut fields: Vec<String> = Vec::new();
        let mut intern = |name: &str| match fields.iter().position(|f| f == name) {
            Some(i) => i,
            None => {
                fields.push(name.to_owned());
                fields.len() - 1
            }
        };
        let rule = rule::compile(path.clone(), source, &mut intern);
        let fingerprint = match &rule {
            Ok(r) => fingerprint(&r.id, source),
            Err(_) => 0,
        };
        Compiled {
            path,
            rule,
            fields,
            fingerprint,
        }
    }

    fn failed(path: PathBuf, reason: &str) -> Compiled {
        Compiled {
            path,
            rule: Err(reason.into()),
            fields: Vec::new(),
            fingerprint: 0,
        }
    }
}

/// What the loader admits, in walk order.
pub enum Item {
    Compiled(Box<Compiled>),
    /// A file the walk refused (kept in order with the compiled ones).
    Skipped(Skipped),
}

type Job = (u64, PathBuf, Vec<u8>);

/// The workers of one load.
pub struct Pool {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<(u64, Compiled)>,
    workers: Vec<JoinHandle<()>>,
    /// Sequence number of the next file or skip.
    next_in: u64,
    /// Sequence number of the next item to hand out.
    next_out: u64,
    pending: BTreeMap<u64, Item>,
}

impl Pool {
    /// Starts `threads` workers (none for 1: everything compiles in
    /// [`Pool::submit`]).
    pub fn start(threads: usize) -> Pool {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = mpsc::channel();
        let mut workers = Vec::new();
        if threads > 1 {
            for _ in 0..threads {
                let (rx, tx) = (Arc::clone(&job_rx), done_tx.clone());
                let spawned = std::thread::Builder::new()
                    .name("sigma-compile".into())
                    .stack_size(COMPILE_STACK)
                    .spawn(move || work(&rx, &tx));
                match spawned {
                    Ok(handle) => workers.push(handle),
                    Err(_) => break,
                }
            }
        }
        Pool {
            jobs: (!workers.is_empty()).then_some(job_tx),
            done,
            workers,
            next_in: 0,
            next_out: 0,
            pending: BTreeMap::new(),
        }
    }

    /// Hands a file to the workers (blocks while [`IN_FLIGHT`] wait), or
    /// compiles it here when there are none.
    pub fn submit(&mut self, path: PathBuf, bytes: Vec<u8>) {
        let seq = self.next_in;
        self.next_in += 1;
        let job = match &self.jobs {
            Some(tx) => match tx.send((seq, path, bytes)) {
                Ok(()) => return,
                // Every worker is gone: the job comes back.
                Err(mpsc::SendError(job)) => job,
            },
            None => (seq, path, bytes),
        };
        self.jobs = None;
        let (_, path, bytes) = job;
        let c = Compiled::from_bytes(path, &bytes);
        self.pending.insert(seq, Item::Compiled(Box::new(c)));
    }

    /// Queues a refused file in order with the compiled ones.
    pub fn skip(&mut self, s: Skipped) {
        self.pending.insert(self.next_in, Item::Skipped(s));
        self.next_in += 1;
    }

    /// The items ready in order now, without waiting.
    pub fn ready(&mut self) -> Vec<Item> {
        while let Ok((seq, c)) = self.done.try_recv() {
            self.pending.insert(seq, Item::Compiled(Box::new(c)));
        }
        self.take_in_order()
    }

    /// Every remaining item in order, once the workers are done.
    pub fn finish(mut self) -> Vec<Item> {
        self.jobs = None; // workers stop when the queue is empty
        let mut out = Vec::new();
        while self.next_out < self.next_in {
            out.extend(self.take_in_order());
            if self.next_out == self.next_in {
                break;
            }
            match self.done.recv() {
                Ok((seq, c)) => {
                    self.pending.insert(seq, Item::Compiled(Box::new(c)));
                }
                // No worker left with a result to send: what is pending
                // goes out in order (a lost file cannot happen unless a
                // worker died, and each worker catches its panics).
                Err(_) => {
                    out.extend(std::mem::take(&mut self.pending).into_values());
                    break;
                }
            }
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        out
    }

    fn take_in_order(&mut self) -> Vec<Item> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.next_out {
                break;
            }
            out.push(entry.remove());
            self.next_out += 1;
        }
        out
    }
}

/// A worker: compiles files until the queue closes. A file that makes the
/// compiler panic (a bug) becomes a skip with that reason rather than a
/// lost file.
fn work(jobs: &Mutex<Receiver<Job>>, done: &mpsc::Sender<(u64, Compiled)>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, path, bytes)) = job else { return };
        let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Compiled::from_bytes(path.clone(), &bytes)
        }))
        .unwrap_or_else(|_| Compiled::failed(path, "the rule compiler failed on this file"));
        if done.send((seq, compiled)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u32, field: &str) -> Vec<u8> {
        format!(
            "title: T{id}\nid: 00000000-0000-0000-0000-{id:012}\nlogsource:\n    product: windows\n    \
             category: process_creation\ndetection:\n    selection:\n        {field}: 'x{id}'\n    \
             condition: selection\n"
        )
        .into_bytes()
    }

    fn order(threads: usize) -> Vec<String> {
        let mut pool = Pool::start(threads);
        let mut out = Vec::new();
        let mut seen = |items: Vec<Item>| {
            for item in items {
                out.push(match item {
                    Item::Compiled(c) => match c.rule {
                        Ok(r) => format!("{} {:?}", r.id, c.fields),
                        Err(e) => format!("{} {e}", c.path.display()),
                    },
                    Item::Skipped(s) => format!("{} {}", s.path.display(), s.reason),
                });
            }
        };
        for i in 0..300u32 {
            if i % 50 == 7 {
                pool.skip(Skipped {
                    path: PathBuf::from(format!("fifo{i}.yml")),
                    reason: "not a regular file".into(),
                });
            }
            let bytes = if i % 97 == 3 {
                vec![0xff, 0xfe]
            } else {
                rule(i, ["Image", "CommandLine", "User"][i as usize % 3])
            };
            pool.submit(PathBuf::from(format!("r{i}.yml")), bytes);
            seen(pool.ready());
        }
        seen(pool.finish());
        out
    }

    #[test]
    fn workers_hand_back_what_one_thread_makes_in_the_same_order() {
        let one = order(1);
        assert_eq!(one.len(), 306);
        assert!(one[3].contains("not UTF-8"), "{}", one[3]);
        assert!(one.iter().any(|l| l.starts_with("fifo7.yml not a regular")));
        for threads in [2, 4] {
            assert_eq!(order(threads), one);
        }
    }
}
