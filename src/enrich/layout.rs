//! What a chunk's header means for the rows under it: where our input
//! fields are, and how the columns we do not own reach the output.
//! Prepared once per header (splunkd repeats the same one chunk after
//! chunk).

use super::columns;
use crate::protocol::records::{push_field, Header, RowReader};
use crate::sysmon::{FieldMap, FieldNames};

/// How the columns we do not own get into the output.
#[derive(Debug, Clone)]
pub(super) enum Passthrough {
    /// Copy each row's original bytes: the common case, byte-exact.
    Raw,
    /// The input carries some of our own fields (an earlier `sysmonenrich`
    /// in the pipeline): keep only these columns, ours replace the rest.
    Columns(Vec<usize>),
}

/// Per-header preparation.
pub(super) struct Layout {
    pub(super) header: Header,
    pub(super) fields: FieldMap,
    pub(super) passthrough: Passthrough,
    /// Sigma runs: its columns are ours too.
    pub(super) sigma: bool,
}

impl crate::sysmon::event::Row for RowReader<'_> {
    #[inline]
    fn get(&self, i: usize) -> Option<&[u8]> {
        self.field(i)
    }
}

impl Layout {
    /// The layout of `header`, our input fields named by `names`.
    pub(super) fn new(header: Header, names: &FieldNames, sigma: bool) -> Layout {
        let fields = FieldMap::new(names, |n| header.position(n));
        let owned = |n: &[u8]| columns::is_owned(n, sigma);
        let passthrough = if header.names().iter().any(|n| owned(n)) {
            Passthrough::Columns(
                (0..header.len())
                    .filter(|&i| !owned(&header.names()[i]))
                    .collect(),
            )
        } else {
            Passthrough::Raw
        };
        Layout {
            header,
            fields,
            passthrough,
            sigma,
        }
    }

    /// The reply's header row: the columns passed through, then ours.
    pub(super) fn write_header(&self, out: &mut Vec<u8>) {
        let names = self.header.names();
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, name: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            push_field(out, name);
        };
        match &self.passthrough {
            Passthrough::Raw => names.iter().for_each(|n| put(out, n)),
            Passthrough::Columns(cols) => cols.iter().for_each(|&c| put(out, &names[c])),
        }
        columns::push_header(out, self.sigma);
        out.push(b'\n');
    }
}
