//! One resolved ancestry chain, and how its output fields are written.

use super::process::SourceKind;
use crate::sysmon::guid::ProcessGuid;
use std::ops::Range;
use std::sync::Arc;

/// `lineage_status`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The chain reached a process with no parent (all-zero parent GUID).
    Complete,
    /// An ancestor's creation info is missing (not in this search, the
    /// state or the backfill), or the acting process itself is unknown.
    Partial,
    /// `max_depth` entries and more would follow.
    Truncated,
    /// A GUID repeated; the chain stops before the repeat.
    Cycle,
}

impl Status {
    /// The value written into `lineage_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Partial => "partial",
            Status::Truncated => "truncated",
            Status::Cycle => "cycle",
        }
    }
}

/// Why the walk stopped, finer than [`Status`] (for diagnostics, the CLI
/// tree view and the comparison with the reference tool).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The last entry is the all-zero GUID (Sysmon's "no parent").
    /// Status [`Status::Complete`].
    NoParent,
    /// The creation info of the last entry is not known. The reference tool
    /// calls this `parent_not_in_dataset`. Status [`Status::Partial`].
    ParentNotFound,
    /// The acting process of a non-creation event is not known at all, so
    /// there are no entries. Status [`Status::Partial`].
    ProcessNotFound,
    /// A known creation has no (readable) `ParentProcessGuid`. Status
    /// [`Status::Partial`].
    ParentGuidMissing,
    /// A GUID would have repeated. Status [`Status::Cycle`].
    Cycle,
    /// `max_depth` reached. Status [`Status::Truncated`].
    MaxDepth,
}

impl StopReason {
    /// The status this stop implies.
    pub fn status(self) -> Status {
        match self {
            StopReason::NoParent => Status::Complete,
            StopReason::ParentNotFound
            | StopReason::ProcessNotFound
            | StopReason::ParentGuidMissing => Status::Partial,
            StopReason::Cycle => Status::Cycle,
            StopReason::MaxDepth => Status::Truncated,
        }
    }

    /// Snake-case name (`no_parent`, `parent_not_found`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::NoParent => "no_parent",
            StopReason::ParentNotFound => "parent_not_found",
            StopReason::ProcessNotFound => "process_not_found",
            StopReason::ParentGuidMissing => "parent_guid_missing",
            StopReason::Cycle => "cycle",
            StopReason::MaxDepth => "max_depth",
        }
    }
}

/// Distinct [`SourceKind`]s in order of first use (`lineage_source`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceSet {
    kinds: [Option<SourceKind>; 3],
}

impl SourceSet {
    /// Adds `kind` unless already present.
    pub fn add(&mut self, kind: SourceKind) {
        for k in &mut self.kinds {
            match k {
                Some(existing) if *existing == kind => return,
                Some(_) => {}
                None => {
                    *k = Some(kind);
                    return;
                }
            }
        }
    }

    /// The kinds, first used first.
    pub fn iter(&self) -> impl Iterator<Item = SourceKind> + '_ {
        self.kinds.iter().map_while(|k| *k)
    }

    /// True when nothing was used (no ancestors).
    pub fn is_empty(&self) -> bool {
        self.kinds[0].is_none()
    }
}

/// One ancestor as the chain saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ancestor<'c> {
    /// Its GUID (the all-zero GUID for Sysmon's "no parent").
    pub guid: ProcessGuid,
    /// Its image (full path, as the child's event reported it).
    pub image: &'c [u8],
    /// Its command line (may be empty).
    pub command_line: &'c [u8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    guid: ProcessGuid,
    image: Range<u32>,
    command_line: Range<u32>,
}

/// The lineage of one process: the process itself and its ancestors,
/// nearest first, with status, sources, matched rules and the nearest
/// malicious ancestor.
///
/// Built by the engine; the command reads it through the accessors and
/// the `write_*` helpers. All text lives in one buffer so a chain costs
/// three allocations, whatever its depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    text: Vec<u8>,
    image: Range<u32>,
    ancestors: Vec<Span>,
    stop: StopReason,
    sources: SourceSet,
    flags: Vec<Arc<str>>,
    malicious: Option<u32>,
}

/// Basename of a Windows or POSIX path: the text after the last `\` or `/`.
pub fn basename(path: &[u8]) -> &[u8] {
    match memchr::memrchr2(b'\\', b'/', path) {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// What `lineage` names an ancestor: its image's basename; `?` when the
/// image is not known; [`UNKNOWN_PARENT`] where Sysmon itself did not know
/// the parent (it writes `-` as the image, and the all-zero GUID when it
/// never saw the parent start), so a chain's end reads as what it is
/// rather than as a process called `-`.
pub fn entry_name(guid: ProcessGuid, image: &[u8]) -> &[u8] {
    match basename(image) {
        b"-" => UNKNOWN_PARENT,
        b"" if guid.is_zero() => UNKNOWN_PARENT,
        b"" => b"?",
        n => n,
    }
}

/// The name `lineage` gives a parent Sysmon did not know (see
/// [`entry_name`]); stable: searches may match it.
pub const UNKNOWN_PARENT: &[u8] = b"(unknown parent)";

/// Sysmon's rendering of a GUID (`{UPPER-CASE}`) without allocating.
pub fn guid_text(guid: ProcessGuid) -> [u8; 38] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // Where each of the 32 nibbles goes, most significant first: every
    // chain renders several GUIDs twice, so this is a straight loop.
    const AT: [u8; 32] = {
        let mut at = [0u8; 32];
        let (mut n, mut pos) = (0, 1);
        while n < 32 {
            if pos == 9 || pos == 14 || pos == 19 || pos == 24 {
                pos += 1;
            }
            at[n] = pos as u8;
            n += 1;
            pos += 1;
        }
        at
    };
    let mut out = *b"{00000000-0000-0000-0000-000000000000}";
    let v = guid.as_u128();
    for (n, &pos) in AT.iter().enumerate() {
        out[pos as usize] = HEX[((v >> (124 - 4 * n)) & 15) as usize];
    }
    out
}

/// Appends `t` to a text buffer addressed by `u32` offsets; returns its
/// span. Offsets are u32 to keep spans small; past 4 GiB of text (never
/// seen, but command lines are attacker-controlled) values are cut rather
/// than corrupting the offsets.
pub(crate) fn push_span(text: &mut Vec<u8>, t: &[u8]) -> Range<u32> {
    let room = (u32::MAX as usize).saturating_sub(text.len());
    let t = &t[..t.len().min(room)];
    let start = text.len() as u32;
    text.extend_from_slice(t);
    start..text.len() as u32
}

impl Default for Chain {
    /// An empty chain, as a buffer for [`super::Resolver::build_into`].
    fn default() -> Chain {
        Chain::new(b"")
    }
}

impl Chain {
    pub(crate) fn new(image: &[u8]) -> Chain {
        // Sized for a typical chain (depth ≤ 6, short command lines) so
        // that building it rarely reallocates.
        let mut chain = Chain {
            text: Vec::with_capacity(image.len() + 256),
            image: 0..0,
            ancestors: Vec::with_capacity(6),
            stop: StopReason::ParentNotFound,
            sources: SourceSet::default(),
            flags: Vec::new(),
            malicious: None,
        };
        chain.image = chain.push_text(image);
        chain
    }

    /// Empties the chain for reuse as the chain of `image`, keeping its
    /// buffers: a chunk builds thousands of chains and renders each once.
    pub(crate) fn reset(&mut self, image: &[u8]) {
        self.text.clear();
        self.ancestors.clear();
        self.stop = StopReason::ParentNotFound;
        self.sources = SourceSet::default();
        self.flags.clear();
        self.malicious = None;
        self.image = self.push_text(image);
    }

    fn push_text(&mut self, t: &[u8]) -> Range<u32> {
        push_span(&mut self.text, t)
    }

    pub(crate) fn push(
        &mut self,
        guid: ProcessGuid,
        image: &[u8],
        command_line: &[u8],
        source: SourceKind,
    ) {
        let image = self.push_text(image);
        let command_line = self.push_text(command_line);
        self.ancestors.push(Span {
            guid,
            image,
            command_line,
        });
        self.sources.add(source);
    }

    pub(crate) fn set_stop(&mut self, stop: StopReason) {
        self.stop = stop;
    }

    pub(crate) fn set_malicious(&mut self, index: usize) {
        self.malicious = Some(index as u32);
    }

    pub(crate) fn flags_mut(&mut self) -> &mut Vec<Arc<str>> {
        &mut self.flags
    }

    pub(crate) fn contains(&self, guid: ProcessGuid) -> bool {
        self.ancestors.iter().any(|a| a.guid == guid)
    }

    pub(crate) fn last_guid(&self) -> Option<ProcessGuid> {
        self.ancestors.last().map(|a| a.guid)
    }

    fn slice(&self, r: &Range<u32>) -> &[u8] {
        &self.text[r.start as usize..r.end as usize]
    }

    /// The process's own image.
    pub fn image(&self) -> &[u8] {
        self.slice(&self.image)
    }

    /// `lineage_status`.
    pub fn status(&self) -> Status {
        self.stop.status()
    }

    /// Why the walk stopped.
    pub fn stop_reason(&self) -> StopReason {
        self.stop
    }

    /// `lineage_depth`: number of entries (the all-zero "no parent" entry
    /// counts, as in the reference tool).
    pub fn depth(&self) -> usize {
        self.ancestors.len()
    }

    /// Ancestors, nearest first.
    pub fn ancestors(
        &self,
    ) -> impl ExactSizeIterator<Item = Ancestor<'_>> + DoubleEndedIterator + '_ {
        self.ancestors.iter().map(move |s| Ancestor {
            guid: s.guid,
            image: self.slice(&s.image),
            command_line: self.slice(&s.command_line),
        })
    }

    /// Ancestor `i` (0 = parent).
    pub fn ancestor(&self, i: usize) -> Option<Ancestor<'_>> {
        let s = self.ancestors.get(i)?;
        Some(Ancestor {
            guid: s.guid,
            image: self.slice(&s.image),
            command_line: self.slice(&s.command_line),
        })
    }

    /// `lineage_parents`: ancestor images (full paths), nearest first.
    pub fn parents(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.ancestors.iter().map(move |s| self.slice(&s.image))
    }

    /// `lineage_guids` values (Sysmon rendering), nearest first.
    pub fn guids(&self) -> impl ExactSizeIterator<Item = [u8; 38]> + '_ {
        self.ancestors.iter().map(|s| guid_text(s.guid))
    }

    /// `lineage_cmdlines`, nearest first (entries may be empty).
    pub fn cmdlines(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.ancestors
            .iter()
            .map(move |s| self.slice(&s.command_line))
    }

    /// `lineage_root`: image of the farthest entry (`None` with no
    /// ancestors).
    pub fn root(&self) -> Option<&[u8]> {
        self.ancestors.last().map(|s| self.slice(&s.image))
    }

    /// `lineage_source`.
    pub fn sources(&self) -> SourceSet {
        self.sources
    }

    /// `lineage_flags`: names of matched rules, in rule-file order.
    pub fn flags(&self) -> &[Arc<str>] {
        &self.flags
    }

    /// `lineage_malicious_ancestor`: the nearest ancestor whose hashes the
    /// caller's predicate called malicious.
    pub fn malicious_ancestor(&self) -> Option<Ancestor<'_>> {
        self.ancestor(self.malicious? as usize)
    }

    /// Appends `lineage`: root-first image basenames including the process
    /// itself, joined by ` > ` (`svchost.exe > cmd.exe > ipconfig.exe`). An
    /// ancestor is named by [`entry_name`] (`?` for an empty image,
    /// `(unknown parent)` where Sysmon did not know it), so the path keeps
    /// one name per level.
    pub fn write_lineage(&self, out: &mut Vec<u8>) {
        for s in self.ancestors.iter().rev() {
            out.extend_from_slice(entry_name(s.guid, self.slice(&s.image)));
            out.extend_from_slice(b" > ");
        }
        let b = basename(self.image());
        out.extend_from_slice(if b.is_empty() { b"?" } else { b });
    }

    /// `lineage` as a new buffer (see [`Chain::write_lineage`]).
    pub fn lineage(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_lineage(&mut out);
        out
    }

    /// Appends `lineage_depth` as decimal text.
    pub fn write_depth(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.depth().to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basenames() {
        assert_eq!(basename(b"C:\\Windows\\System32\\cmd.exe"), b"cmd.exe");
        assert_eq!(basename(b"/usr/bin/bash"), b"bash");
        assert_eq!(basename(b"System"), b"System");
        assert_eq!(basename(b"C:\\dir\\"), b"");
        assert_eq!(basename(b"\\\\VBoxSvr\\x/y\\z.exe"), b"z.exe");
    }

    #[test]
    fn guid_rendering_matches_display() {
        for v in [0u128, 1, u128::MAX, 0x747F3D96_D6ED_5D31_0000_0010C88A2500] {
            let g = ProcessGuid::from_u128(v);
            assert_eq!(&guid_text(g)[..], g.to_string().as_bytes());
        }
    }

    #[test]
    fn source_set_keeps_first_use_order() {
        let mut s = SourceSet::default();
        assert!(s.is_empty());
        for k in [
            SourceKind::State,
            SourceKind::Results,
            SourceKind::State,
            SourceKind::Splunk,
        ] {
            s.add(k);
        }
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [SourceKind::State, SourceKind::Results, SourceKind::Splunk]
        );
    }

    #[test]
    fn fields_of_a_chain() {
        let g = ProcessGuid::from_u128;
        let mut c = Chain::new(b"C:\\Windows\\System32\\ipconfig.exe");
        c.push(
            g(2),
            b"C:\\Windows\\System32\\cmd.exe",
            b"cmd /c ipconfig",
            SourceKind::Results,
        );
        c.push(
            g(3),
            b"C:\\Windows\\System32\\svchost.exe",
            b"",
            SourceKind::State,
        );
        c.push(g(0), b"", b"", SourceKind::State);
        c.set_stop(StopReason::NoParent);
        c.set_malicious(1);
        assert_eq!(
            c.lineage(),
            b"(unknown parent) > svchost.exe > cmd.exe > ipconfig.exe"
        );
        assert_eq!(c.depth(), 3);
        assert_eq!(c.status().as_str(), "complete");
        assert_eq!(c.root(), Some(&b""[..]));
        assert_eq!(
            c.parents().next(),
            Some(&b"C:\\Windows\\System32\\cmd.exe"[..])
        );
        assert_eq!(
            c.cmdlines().collect::<Vec<_>>(),
            [&b"cmd /c ipconfig"[..], b"", b""]
        );
        assert_eq!(
            c.guids().next().unwrap(),
            *b"{00000000-0000-0000-0000-000000000002}"
        );
        assert_eq!(
            c.malicious_ancestor().unwrap().image,
            b"C:\\Windows\\System32\\svchost.exe"
        );
        let mut d = Vec::new();
        c.write_depth(&mut d);
        assert_eq!(d, b"3");
        assert_eq!(Chain::new(b"x\\a.exe").lineage(), b"a.exe");
    }
}
