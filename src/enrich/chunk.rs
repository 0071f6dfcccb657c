//! One chunk as read (pass 1): each row's span, its interned hashes, where
//! its lineage starts, and the chunk's process creations. Scratch: cleared
//! for every chunk, its buffers kept.

use super::creations::Creations;
use super::layout::{Layout, Passthrough};
use super::output::RepCells;
use super::sigma::{SigmaRun, Walk};
use super::Stats;
use crate::lineage::{agrees_with_raw, GuidBuildHasher, ProcessInfo, ProcessRef};
use crate::protocol::records::{BodyError, RowReader};
use crate::sysmon::{Event, FileHashes, ProcessGuid};
use std::collections::HashMap;
use std::ops::Range;

/// What lineage starts from for one row, owned (the row's record is reused).
#[derive(Debug, Clone, Copy)]
pub(super) enum RowStart {
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
pub(super) enum ImageAt {
    Body(u32, u32),
    Interned(u32),
}

/// One process named by rows of the chunk.
#[derive(Debug, Clone)]
pub(super) struct ProcSlot {
    pub(super) guid: ProcessGuid,
    /// Rows of the chunk naming it. A creation row shares its process's
    /// cells only when other rows need them too; alone, it is built from
    /// its own `Parent*` fields.
    pub(super) rows: u32,
    /// Already asked about (one anchor per acting process).
    pub(super) anchored: bool,
}

/// One row, as much as the writer needs after the record is gone.
#[derive(Debug)]
pub(super) struct RowInfo {
    pub(super) span: Range<usize>,
    /// Index into the chunk's distinct hash sets; [`NO_HASHES`] = none.
    pub(super) hashes: u32,
    pub(super) start: RowStart,
    /// Columns kept from the record (slow pass-through path only).
    pub(super) kept: Vec<Box<[u8]>>,
}

pub(super) const NO_HASHES: u32 = u32::MAX;

/// The chunk being enriched.
#[derive(Default)]
pub(super) struct Chunk {
    pub(super) rows: Vec<RowInfo>,
    pub(super) creations: Creations,
    /// The processes the rows name, and their index.
    pub(super) procs: Vec<ProcSlot>,
    proc_index: HashMap<ProcessGuid, u32, GuidBuildHasher>,
    /// The slot of each creation.
    pub(super) creation_slots: Vec<u32>,
    pub(super) hash_sets: Vec<FileHashes>,
    hash_index: HashMap<FileHashes, u32, GuidBuildHasher>,
    images: Vec<Box<[u8]>>,
    image_index: HashMap<Box<[u8]>, u32, GuidBuildHasher>,
    /// Pre-rendered `rep_*` cells per distinct hash set.
    pub(super) rep_cells: Vec<RepCells>,
    /// Whether each creation was new to the table (so the table holds
    /// exactly its row).
    pub(super) fresh: Vec<bool>,
    /// Ancestors splunkd backfill found, for the process-table writer.
    pub(super) found: Vec<ProcessInfo>,
}

impl Chunk {
    /// Pass 1: reads every row of `reader` once.
    pub(super) fn read(
        &mut self,
        body: &[u8],
        layout: &Layout,
        reader: &mut RowReader<'_>,
        lineage: bool,
        mut sigma: Option<&mut SigmaRun>,
        stats: &mut Stats,
    ) -> Result<(), BodyError> {
        self.rows.clear();
        self.creations.clear();
        self.procs.clear();
        self.proc_index.clear();
        self.creation_slots.clear();
        self.hash_sets.clear();
        self.hash_index.clear();
        self.images.clear();
        self.image_index.clear();
        while let Some(span) = reader.next_row()? {
            let (file_hashes, start) = if lineage {
                let event = layout.fields.event(&*reader);
                let start = self.row_start(body, &event);
                if let RowStart::Creation { creation, .. } = start {
                    let raw = layout.fields.raw(&*reader);
                    if !raw.is_empty()
                        && !agrees_with_raw(&self.creations.get(creation as usize), raw)
                    {
                        self.creations.distrust(creation);
                    }
                }
                (event.hashes, start)
            } else {
                (layout.fields.hashes_of(&*reader), RowStart::None)
            };
            let hashes = if file_hashes.is_empty() {
                NO_HASHES
            } else {
                stats.rows_with_hashes += 1;
                let next = self.hash_sets.len() as u32;
                *self.hash_index.entry(file_hashes).or_insert_with(|| {
                    self.hash_sets.push(file_hashes);
                    next
                })
            };
            if let Some(s) = sigma.as_deref_mut() {
                let (creation, walk) = match start {
                    RowStart::None => (None, Walk::None),
                    RowStart::Creation { creation, .. } => {
                        let c = self.creations.get(creation as usize);
                        (
                            Some((creation, c.guid, c.image)),
                            Walk::Parent(c.parent_guid),
                        )
                    }
                    RowStart::Process { slot, .. } => {
                        (None, Walk::Process(self.procs[slot as usize].guid))
                    }
                };
                s.read_row(reader, creation, walk);
            }
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

    /// A row's hashes and their `rep_*` cells, if it has hashes.
    pub(super) fn hashes(&self, row: &RowInfo) -> (Option<&FileHashes>, Option<&RepCells>) {
        if row.hashes == NO_HASHES {
            return (None, None);
        }
        let i = row.hashes as usize;
        (Some(&self.hash_sets[i]), self.rep_cells.get(i))
    }

    /// A row's image, noted by [`Chunk::read`].
    pub(super) fn image<'a>(&'a self, body: &'a [u8], at: ImageAt) -> &'a [u8] {
        match at {
            ImageAt::Body(a, b) => &body[a as usize..b as usize],
            ImageAt::Interned(i) => &self.images[i as usize],
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
