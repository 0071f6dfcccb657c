//! Sigma on more than one core: a chunk's rows evaluated by a bounded set
//! of threads before pass 1 reads them.
//!
//! On varied data most events are evaluated in full (remembered verdicts
//! rarely answer), and that evaluation, not lineage, sets the pace of a
//! search with SigmaHQ's full rule set. Rows are independent of each other
//! for the engine, so thread `t` of `n` evaluates rows `t, t + n, …` of the
//! chunk with its own [`Scratch`] (its own remembered verdicts: a verdict
//! is the same whichever thread remembers it) and pass 1 takes each row's
//! matches from there, in row order, so that everything depending on the
//! order (a process's first creation, the table's records) is unchanged.
//!
//! Each thread reads the chunk with its own [`RowReader`]: scanning a row is
//! a small part of evaluating it, and no row spans need to be shared.
//! Threads live for one chunk (`std::thread::scope`); the first share runs
//! on the search's own thread.

use crate::protocol::records::RowReader;
use crate::sigma::{RuleId, RuleSet, Scratch};

/// One thread's results for a chunk: row `k` of its share is
/// `ids[ends[k - 1]..ends[k]]`.
#[derive(Default)]
struct Share {
    ids: Vec<RuleId>,
    ends: Vec<u32>,
}

/// The threads' scratches and last chunk's results.
pub(super) struct Pool {
    scratches: Vec<Scratch>,
    shares: Vec<Share>,
}

impl Pool {
    /// A pool of `threads` (at least 2: with one, the search evaluates
    /// inline and needs no pool), each with a scratch made by `scratch`.
    pub fn new(threads: usize, scratch: impl Fn() -> Scratch) -> Pool {
        let n = threads.max(2);
        Pool {
            scratches: (0..n).map(|_| scratch()).collect(),
            shares: (0..n).map(|_| Share::default()).collect(),
        }
    }

    /// Evaluates every row of `body` (a chunk, header first) with `eval`,
    /// which appends a row's matches. A row the readers cannot parse stops
    /// that thread's share there: pass 1 meets the same row and reports it.
    pub fn evaluate<F>(&mut self, body: &[u8], max_field: usize, eval: F)
    where
        F: Fn(&RowReader<'_>, &mut Scratch, &mut Vec<RuleId>) + Sync,
    {
        let n = self.scratches.len();
        let eval = &eval;
        let work = move |t: usize, scratch: &mut Scratch, share: &mut Share| {
            share.ids.clear();
            share.ends.clear();
            let Ok(Some(mut reader)) = RowReader::new(body, max_field) else {
                return;
            };
            let mut row = 0usize;
            while let Ok(Some(_)) = reader.next_row() {
                if row % n == t {
                    eval(&reader, scratch, &mut share.ids);
                    share.ends.push(share.ids.len() as u32);
                }
                row += 1;
            }
        };
        let mut parts = self.scratches.iter_mut().zip(self.shares.iter_mut());
        let Some((first_scratch, first_share)) = parts.next() else {
            return;
        };
        std::thread::scope(|scope| {
            for (t, (scratch, share)) in parts.enumerate() {
                scope.spawn(move || work(t + 1, scratch, share));
            }
            work(0, first_scratch, first_share);
        });
    }

    /// Row `row`'s matches from the last [`Pool::evaluate`], `None` when no
    /// thread got that far.
    pub fn matches(&self, row: usize) -> Option<&[RuleId]> {
        let n = self.shares.len();
        let share = &self.shares[row % n];
        let k = row / n;
        let end = *share.ends.get(k)? as usize;
        let start = match k {
            0 => 0,
            _ => share.ends[k - 1] as usize,
        };
        Some(&share.ids[start..end])
    }

    /// Remembered verdicts used and events evaluated, over all threads.
    pub fn remembered(&self) -> (u64, u64) {
        self.scratches
            .iter()
            .map(RuleSet::memo_counts)
            .fold((0, 0), |(h, m), (a, b)| (h + a, m + b))
    }
}
