//! Pass 2: the reply to one chunk, as pieces of the request body and of
//! two buffers (`small`: per-row cells; `rendered`: lineage cells, one
//! copy per process, shared by its rows) for `writev`.

use super::chunk::{Chunk, RowInfo, RowStart};
use super::columns::NO_CHAIN;
use super::layout::{Layout, Passthrough};
use super::lineage_composer::Composer;
use super::sigma::SigmaRun;
use super::{output, Stats};
use crate::lineage::{Chain, Engine, Rules, SourceKind, Start, Status, StopReason};
use crate::protocol::pieces::Pieces;
use crate::protocol::records::push_field;
use crate::sysmon::FileHashes;
use std::ops::Range;

/// Piece sources: the request body, `small`, `rendered`.
const BODY: u8 = 0;
const SMALL: u8 = 1;
const RENDERED: u8 = 2;

/// A process's rendered lineage cells (and the row's LF) in `rendered`.
#[derive(Debug, Clone)]
struct Cells {
    range: Range<usize>,
    status: Status,
}

/// What rendering lineage cells needs from the search.
pub(super) struct Lineage<'a> {
    pub(super) engine: &'a mut Engine,
    pub(super) rules: &'a Rules,
    pub(super) is_malicious: &'a dyn Fn(&FileHashes) -> bool,
    /// `[lineage] cell_value_max_bytes`.
    pub(super) cell_cap: usize,
}

/// The reply being built, and the buffers reused from chunk to chunk.
#[derive(Default)]
pub(super) struct Reply {
    /// Cells written per row (source 1).
    pub(super) small: Vec<u8>,
    /// Rendered lineage cells (source 2).
    pub(super) rendered: Vec<u8>,
    /// The reply, as pieces of the body, `small` and `rendered`.
    pub(super) pieces: Pieces,
    /// Whether each creation shares its process's cells.
    shared: Vec<bool>,
    /// Each process's cells, once rendered (by slot).
    cells: Vec<Option<Cells>>,
    /// The chain being built on the general path (its buffers reused).
    chain: Chain,
    /// Renders chains by sharing each ancestor's (most rows).
    composer: Composer,
}

impl Reply {
    /// Empties the reply (not its buffers).
    pub(super) fn clear(&mut self) {
        self.pieces.clear();
        self.small.clear();
        self.rendered.clear();
    }

    /// Writes the header and every row of `chunk`.
    pub(super) fn write(
        &mut self,
        chunk: &Chunk,
        body: &[u8],
        layout: &Layout,
        mut lineage: Option<Lineage<'_>>,
        mut sigma: Option<&mut SigmaRun>,
        stats: &mut Stats,
    ) {
        layout.write_header(&mut self.small);
        self.pieces.push(SMALL, 0..self.small.len());
        self.cells.clear();
        self.cells.resize(chunk.procs.len(), None);
        self.shared.clear();
        if let Some(l) = lineage.as_ref() {
            self.share_creations(chunk, l.engine);
            self.composer.start_chunk(l.cell_cap);
        }
        for (i, row) in chunk.rows.iter().enumerate() {
            let sigma = sigma.as_deref_mut().map(|s| (s, i));
            self.write_row(chunk, row, body, layout, lineage.as_mut(), sigma, stats);
        }
    }

    /// Which creation rows share their process's cells. A creation row
    /// whose own info is what the table holds for its GUID has the same
    /// chain as every other event of that process: it shares the process's
    /// cells instead of building (and rendering) the chain twice.
    fn share_creations(&mut self, chunk: &Chunk, engine: &Engine) {
        let (creations, procs) = (&chunk.creations, &chunk.procs);
        self.shared.extend((0..creations.len()).map(|i| {
            let c = creations.get(i);
            if procs[chunk.creation_slots[i] as usize].rows < 2 {
                return false;
            }
            if chunk.fresh.get(i).copied().unwrap_or(false) {
                // Inserted from this very row: equal unless evicted.
                return engine.contains(c.guid);
            }
            engine.get(c.guid).is_some_and(|(t, kind)| {
                kind == SourceKind::Results
                    && t.parent_guid == c.parent_guid
                    && t.image == c.image
                    && t.parent_image == c.parent_image
                    && t.parent_command_line == c.parent_command_line
            })
        }));
    }

    /// One row: the columns passed through, then our cells.
    // Each argument is a separate borrow of the enricher's parts (the
    // chunk, the request body, the layout, lineage, Sigma): bundling them
    // would only move the list into a struct built per row.
    #[allow(clippy::too_many_arguments)]
    fn write_row(
        &mut self,
        chunk: &Chunk,
        row: &RowInfo,
        body: &[u8],
        layout: &Layout,
        lineage: Option<&mut Lineage<'_>>,
        sigma: Option<(&mut SigmaRun, usize)>,
        stats: &mut Stats,
    ) {
        let mark = self.small.len();
        match &layout.passthrough {
            Passthrough::Raw => self.pieces.push(BODY, row.span.clone()),
            Passthrough::Columns(_) => {
                for (k, v) in row.kept.iter().enumerate() {
                    if k > 0 {
                        self.small.push(b',');
                    }
                    push_field(&mut self.small, v);
                }
            }
        }
        let (hashes, rep) = chunk.hashes(row);
        let Some((lineage, slot, start)) = lineage.and_then(|l| {
            let (slot, start) = self.lineage_start(chunk, row, body)?;
            Some((l, slot, start))
        }) else {
            match sigma {
                None => output::push_cells(&mut self.small, hashes, rep, None),
                Some((s, i)) => {
                    output::push_cells_head(&mut self.small, hashes, rep);
                    s.write_row(i, None, &mut self.small);
                    self.small.extend_from_slice(NO_CHAIN);
                }
            }
            self.pieces.push(SMALL, mark..self.small.len());
            return;
        };
        let cells = self.lineage_cells(lineage, slot, &start);
        stats.lineage_rows += 1;
        match cells.status {
            Status::Complete => stats.lineage_complete += 1,
            Status::Partial => stats.lineage_partial += 1,
            Status::Truncated => stats.lineage_truncated += 1,
            Status::Cycle => stats.lineage_cycle += 1,
        }
        output::push_cells_head(&mut self.small, hashes, rep);
        if let Some((s, i)) = sigma {
            s.write_row(i, Some(&*lineage.engine), &mut self.small);
        }
        self.pieces.push(SMALL, mark..self.small.len());
        self.pieces.push(RENDERED, cells.range);
    }

    /// Where a row's chain starts, and the process whose cells it may
    /// share; `None` for a row without lineage.
    fn lineage_start<'c>(
        &self,
        chunk: &'c Chunk,
        row: &RowInfo,
        body: &'c [u8],
    ) -> Option<(Option<u32>, Start<'c>)> {
        match row.start {
            RowStart::None => None,
            RowStart::Creation { creation, slot } => {
                let c = chunk.creations.get(creation as usize);
                if self.shared[creation as usize] {
                    let start = Start::Process {
                        guid: c.guid,
                        image: c.image,
                    };
                    Some((Some(slot), start))
                } else {
                    Some((None, Start::creation(&c)))
                }
            }
            RowStart::Process { slot, image } => Some((
                Some(slot),
                Start::Process {
                    guid: chunk.procs[slot as usize].guid,
                    image: chunk.image(body, image),
                },
            )),
        }
    }

    /// The lineage cells of a chain starting at `start`: the process's
    /// (`slot`) if rendered already, else rendered now (composed from its
    /// ancestors' links, or built the general way) and kept for its other
    /// rows.
    fn lineage_cells(
        &mut self,
        l: &mut Lineage<'_>,
        slot: Option<u32>,
        start: &Start<'_>,
    ) -> Cells {
        if let Some(cells) = slot.and_then(|s| self.cells[s as usize].clone()) {
            return cells;
        }
        let composed =
            self.composer
                .cells(l.engine, l.rules, l.is_malicious, start, &mut self.rendered);
        let (range, stop) = match composed {
            Some(c) => (c.cells, c.stop),
            None => {
                l.engine
                    .resolver(l.rules, l.is_malicious)
                    .build_into(start, &mut self.chain);
                let c = self.composer.render_chain(&self.chain, &mut self.rendered);
                (c.cells, c.stop)
            }
        };
        let cells = Cells {
            range,
            status: stop.status(),
        };
        // Rows of one process share its cells. An unknown acting process
        // takes its image from each row, so its cells are not shared.
        if let Some(s) = slot.filter(|_| stop != StopReason::ProcessNotFound) {
            self.cells[s as usize] = Some(cells.clone());
        }
        cells
    }
}
