//! What a Sysmon event means, independent of how it travelled.
//!
//! Splunk hands us Sysmon events under three naming schemes at once: the
//! raw EventData names (`ProcessGuid`, `Hashes`), the CIM names the add-on
//! derives (`process_guid`, `process_hash`), and the XML in `_raw`. This
//! module is the one place that knows which name means what for which
//! EventCode (including the CIM trap that maps EventCode 8/10's *source*
//! process to `parent_process_*`), and turns any of them into an [`Event`].
//! It is pure: no I/O, no CSV, no async.

pub mod event;
pub mod guid;
pub mod hashes;
pub mod time;
pub mod xml;

pub use event::{Event, FieldMap, FieldNames};
pub use guid::ProcessGuid;
pub use hashes::FileHashes;
