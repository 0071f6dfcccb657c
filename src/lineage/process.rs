//! What a process-creation event (Sysmon EventCode 1) tells about a process.

use crate::sysmon::event::Event;
use crate::sysmon::guid::ProcessGuid;
use crate::sysmon::hashes::FileHashes;

/// Where the creation info of an ancestor came from (`lineage_source`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// This search's rows (this chunk or an earlier one), including a row's
    /// own `Parent*` fields.
    Results,
    /// The persistent process table of earlier runs.
    State,
    /// A backfill search through splunkd's REST API.
    Splunk,
}

impl SourceKind {
    /// The value written into `lineage_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Results => "results",
            SourceKind::State => "state",
            SourceKind::Splunk => "splunk",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The creation info of one process, owned: what an [`AncestorSource`]
/// returns and the persistent table stores.
///
/// Text stays bytes: Splunk hands us whatever the event held (entity-escaped
/// XML text, occasionally not UTF-8), and lineage only compares and copies
/// it.
///
/// [`AncestorSource`]: super::AncestorSource
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessInfo {
    /// `ProcessGuid`.
    pub guid: ProcessGuid,
    /// `ParentProcessGuid`; `None` when the event had none (or an
    /// unreadable one); the all-zero GUID when Sysmon did not know the
    /// parent.
    pub parent_guid: Option<ProcessGuid>,
    /// `Image`.
    pub image: Box<[u8]>,
    /// `CommandLine`.
    pub command_line: Box<[u8]>,
    /// `ParentImage`.
    pub parent_image: Box<[u8]>,
    /// `ParentCommandLine`.
    pub parent_command_line: Box<[u8]>,
    /// `Computer`.
    pub host: Box<[u8]>,
    /// Creation time, epoch seconds (0 when unknown).
    pub time: f64,
    /// Hashes of `Image`.
    pub hashes: FileHashes,
}

impl ProcessInfo {
    /// Info about `guid` with nothing else known yet (fill the fields).
    pub fn new(guid: ProcessGuid) -> ProcessInfo {
        ProcessInfo {
            guid,
            parent_guid: None,
            image: Box::default(),
            command_line: Box::default(),
            parent_image: Box::default(),
            parent_command_line: Box::default(),
            host: Box::default(),
            time: 0.0,
            hashes: FileHashes::default(),
        }
    }

    /// Borrows this info in the form the engine indexes.
    pub fn as_ref(&self) -> ProcessRef<'_> {
        ProcessRef {
            guid: self.guid,
            parent_guid: self.parent_guid,
            image: &self.image,
            command_line: &self.command_line,
            parent_image: &self.parent_image,
            parent_command_line: &self.parent_command_line,
            host: &self.host,
            time: self.time,
            hashes: self.hashes,
        }
    }
}

/// The creation info of one process, borrowed: from a row of the current
/// chunk, or from the process table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessRef<'a> {
    /// `ProcessGuid`.
    pub guid: ProcessGuid,
    /// `ParentProcessGuid` (see [`ProcessInfo::parent_guid`]).
    pub parent_guid: Option<ProcessGuid>,
    /// `Image`.
    pub image: &'a [u8],
    /// `CommandLine`.
    pub command_line: &'a [u8],
    /// `ParentImage`.
    pub parent_image: &'a [u8],
    /// `ParentCommandLine`.
    pub parent_command_line: &'a [u8],
    /// `Computer`.
    pub host: &'a [u8],
    /// Creation time, epoch seconds (0 when unknown).
    pub time: f64,
    /// Hashes of `Image`.
    pub hashes: FileHashes,
}

impl<'a> ProcessRef<'a> {
    /// The creation info an event carries: `Some` only for a process
    /// creation with a readable `ProcessGuid`.
    pub fn from_event(event: &'a Event<'_>) -> Option<ProcessRef<'a>> {
        if !event.is_process_creation() {
            return None;
        }
        Some(ProcessRef {
            guid: event.guid?,
            parent_guid: event.parent_guid,
            image: &event.image,
            command_line: &event.command_line,
            parent_image: &event.parent_image,
            parent_command_line: &event.parent_command_line,
            host: &event.host,
            time: event.time,
            hashes: event.hashes,
        })
    }

    /// Copies into an owned [`ProcessInfo`] (e.g. to persist it).
    pub fn to_info(&self) -> ProcessInfo {
        ProcessInfo {
            guid: self.guid,
            parent_guid: self.parent_guid,
            image: self.image.into(),
            command_line: self.command_line.into(),
            parent_image: self.parent_image.into(),
            parent_command_line: self.parent_command_line.into(),
            host: self.host.into(),
            time: self.time,
            hashes: self.hashes,
        }
    }
}
