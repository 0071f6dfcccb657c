//! The process creations of one chunk, with all their text in one buffer.
//!
//! A chunk of 50,000 rows holds thousands of creations, each with five text
//! fields. Owned `Box<[u8]>` fields cost five allocations per creation on
//! the protocol thread and five frees on the process-table writer (glibc
//! then passes the memory between the two threads' arenas, under a lock).
//! Here a chunk's creations cost nothing once the buffers have grown: the
//! writer hands each batch back, cleared, for the next chunk.

use crate::lineage::{push_span, Engine, ProcessInfo, ProcessRef};
use crate::sysmon::{FileHashes, ProcessGuid};
use std::ops::Range;

/// One creation; its text lives in [`Creations::text`].
#[derive(Debug, Clone)]
struct Item {
    guid: ProcessGuid,
    parent_guid: Option<ProcessGuid>,
    /// image, command line, parent image, parent command line, host.
    fields: [Range<u32>; 5],
    time: f64,
    hashes: FileHashes,
    /// May enter the persistent table (see [`Creations::distrust`]).
    trusted: bool,
}

/// A chunk's process creations (and what backfill found for it).
#[derive(Debug, Clone, Default)]
pub struct Creations {
    text: Vec<u8>,
    items: Vec<Item>,
    /// The fingerprints of the Sigma rules that creations of this batch
    /// matched, by the creation's index in the batch (not by GUID: two
    /// creations of one GUID each have their own matches). They travel
    /// with the creations so the process-table writer stores them under
    /// the same trust rules: only for a process whose stored creation is
    /// the very one evaluated.
    pub sigma: Vec<(u32, Vec<u64>)>,
}

impl Creations {
    /// Forgets everything, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.items.clear();
        self.sigma.clear();
    }

    /// Number of creations.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds the creation `p`; returns its index.
    pub fn push(&mut self, p: &ProcessRef<'_>) -> u32 {
        let fields = [
            push_span(&mut self.text, p.image),
            push_span(&mut self.text, p.command_line),
            push_span(&mut self.text, p.parent_image),
            push_span(&mut self.text, p.parent_command_line),
            push_span(&mut self.text, p.host),
        ];
        self.items.push(Item {
            guid: p.guid,
            parent_guid: p.parent_guid,
            fields,
            time: p.time,
            hashes: p.hashes,
            trusted: true,
        });
        (self.items.len() - 1) as u32
    }

    /// Adds owned infos (what backfill found).
    pub fn extend(&mut self, infos: &[ProcessInfo]) {
        for p in infos {
            self.push(&p.as_ref());
        }
    }

    /// Creation `i` (panics when out of range, like slice indexing).
    #[inline]
    pub fn get(&self, i: usize) -> ProcessRef<'_> {
        let item = &self.items[i];
        let t = |k: usize| {
            let r = &item.fields[k];
            &self.text[r.start as usize..r.end as usize]
        };
        ProcessRef {
            guid: item.guid,
            parent_guid: item.parent_guid,
            image: t(0),
            command_line: t(1),
            parent_image: t(2),
            parent_command_line: t(3),
            host: t(4),
            time: item.time,
            hashes: item.hashes,
        }
    }

    /// Every creation, in order.
    pub fn iter(&self) -> impl Iterator<Item = ProcessRef<'_>> + '_ {
        (0..self.items.len()).map(|i| self.get(i))
    }

    /// Sets the parent image and command line of creation `i` (what the
    /// parent's own creation said, when the row had none).
    pub fn set_parent_text(&mut self, i: usize, image: &[u8], command_line: &[u8]) {
        if i >= self.items.len() {
            return;
        }
        let image = push_span(&mut self.text, image);
        let command_line = push_span(&mut self.text, command_line);
        let item = &mut self.items[i];
        item.fields[2] = image;
        item.fields[3] = command_line;
    }

    /// Names each ancestor by its own creation event when its child's row had
    /// no `Parent*` image or command line: in the table (for later rows and
    /// chunks) and in the chunk's creations (for the creation rows themselves,
    /// whose chain starts from their own fields).
    pub fn fill_parent_text(&mut self, engine: &mut Engine, found: &[ProcessInfo]) {
        let lacking =
            |p: &ProcessRef<'_>| p.parent_image.is_empty() || p.parent_command_line.is_empty();
        let guids: Vec<ProcessGuid> = self
            .iter()
            .filter(|c| lacking(c))
            .map(|c| c.guid)
            .chain(
                found
                    .iter()
                    .filter(|f| lacking(&f.as_ref()))
                    .map(|f| f.guid),
            )
            .collect();
        engine.fill_parent_text(guids);
        for i in 0..self.len() {
            let c = self.get(i);
            if !lacking(&c) {
                continue;
            }
            let Some(parent) = c.parent_guid.filter(|g| !g.is_zero()) else {
                continue;
            };
            let Some(p) = engine.peek(parent) else {
                continue;
            };
            let image = if c.parent_image.is_empty() {
                p.image()
            } else {
                c.parent_image
            };
            let cmd = if c.parent_command_line.is_empty() {
                p.command_line()
            } else {
                c.parent_command_line
            };
            if image.len() != c.parent_image.len() || cmd.len() != c.parent_command_line.len() {
                let (image, cmd) = (image.to_vec(), cmd.to_vec());
                self.set_parent_text(i, &image, &cmd);
            }
        }
    }

    /// Keeps creation `i` out of the persistent table (its row disagrees
    /// with its `_raw`); this search still uses it.
    pub fn distrust(&mut self, i: u32) {
        if let Some(item) = self.items.get_mut(i as usize) {
            item.trusted = false;
        }
    }

    /// Creation `i`, when it may enter the persistent table.
    pub fn get_trusted(&self, i: usize) -> Option<ProcessRef<'_>> {
        self.items
            .get(i)
            .filter(|item| item.trusted)
            .map(|_| self.get(i))
    }

    /// The index, GUID and parent GUID of each creation that may enter
    /// the persistent table, in order: what deciding about a creation
    /// needs before its text and hashes are read.
    pub fn trusted_guids(
        &self,
    ) -> impl Iterator<Item = (usize, ProcessGuid, Option<ProcessGuid>)> + '_ {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.trusted)
            .map(|(i, item)| (i, item.guid, item.parent_guid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reuses_buffers() {
        let mut info = ProcessInfo::new(ProcessGuid::from_u128(7));
        info.parent_guid = Some(ProcessGuid::from_u128(3));
        info.image = Box::from(&b"C:\\w\\cmd.exe"[..]);
        info.parent_command_line = Box::from(&b"\"x\" /c"[..]);
        info.time = 12.5;
        let mut c = Creations::default();
        c.extend(std::slice::from_ref(&info));
        c.push(&info.as_ref());
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(1), info.as_ref());
        assert_eq!(c.iter().count(), 2);
        c.distrust(0);
        assert!(c.get_trusted(0).is_none() && c.get_trusted(2).is_none());
        assert_eq!(c.get_trusted(1), Some(info.as_ref()));
        let guids: Vec<_> = c.trusted_guids().collect();
        assert_eq!(guids, [(1, info.guid, info.parent_guid)]);
        c.set_parent_text(1, b"p.exe", b"p /x");
        assert_eq!(c.get(1).parent_image, b"p.exe");
        assert_eq!(c.get(1).parent_command_line, b"p /x");
        assert_eq!(c.get(1).image, info.image.as_ref());
        let cap = c.text.capacity();
        c.clear();
        assert!(c.is_empty() && c.text.capacity() == cap);
    }
}
