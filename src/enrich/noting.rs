//! One wrapper that lets a search see what an ancestor source found, for
//! whoever needs it after the walk: the process table keeps what splunkd
//! returned, Sigma reads the matches the state database holds for what it
//! returned. The sources themselves stay unaware of either.

use crate::lineage::{AncestorSource, ProcessInfo, SourceError, SourceKind};
use crate::sysmon::ProcessGuid;

/// An ancestor source that hands every answer to `note` before passing it
/// on unchanged.
pub(super) struct Noting<'a, S: ?Sized, F> {
    pub(super) inner: &'a mut S,
    pub(super) note: F,
}

impl<S, F> AncestorSource for Noting<'_, S, F>
where
    S: AncestorSource + ?Sized,
    F: FnMut(&[ProcessInfo]),
{
    fn kind(&self) -> SourceKind {
        self.inner.kind()
    }

    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    fn fetch(&mut self, guids: &[ProcessGuid]) -> Result<Vec<ProcessInfo>, SourceError> {
        let got = self.inner.fetch(guids)?;
        (self.note)(&got);
        Ok(got)
    }
}
