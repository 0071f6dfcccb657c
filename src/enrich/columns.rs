//! The columns the command adds, declared once: the header, which input
//! columns are ours, and the empty cells of a row without a group's data
//! all come from [`GROUPS`], so adding a field is one line here and one
//! cell in that group's row writer (`output` for hashes and reputation,
//! `sigma`, `lineage_writer`).
//!
//! Every output field is present on every row, empty where it does not
//! apply (VT4Splunk learned this the hard way: columns that appear only on
//! some rows vanish from tables and break saved searches). Multivalue
//! fields get a `__mv_` companion column, after the plain columns of their
//! group: columns are mapped by name, and SCPV2.md §5 has splunkd accept
//! the SDK's interleaved `f,__mv_f` pairs as well as its own
//! all-plain-first order. Per group, a process's lineage cells, plain and
//! `__mv_`, are then one run of bytes that every row of the process shares
//! as a single piece of the reply, instead of three pieces around the
//! row's `__mv_rep_sources`.

use crate::protocol::multivalue::MV_PREFIX;

/// One group of output fields.
pub struct Group {
    /// `(name, multivalue)`, in column order.
    pub fields: &'static [(&'static str, bool)],
    /// Written only when the search runs Sigma.
    pub sigma_only: bool,
}

impl Group {
    /// Columns the group writes: its fields and their `__mv_` companions.
    pub const fn width(&self) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.fields.len() {
            n += if self.fields[i].1 { 2 } else { 1 };
            i += 1;
        }
        n
    }
}

/// A file's hashes, as Sysmon reported them.
pub const HASHES: Group = Group {
    fields: &[
        ("hash_md5", false),
        ("hash_sha1", false),
        ("hash_sha256", false),
        ("hash_imphash", false),
    ],
    sigma_only: false,
};

/// The reputation answer for the file (in `Answer::field_values` order).
pub const REPUTATION: Group = Group {
    fields: &[
        ("rep_verdict", false),
        ("rep_detections", false),
        ("rep_engines", false),
        ("rep_label", false),
        ("rep_sources", true),
        ("rep_checked", false),
        ("rep_cached", false),
        ("rep_link", false),
        ("rep_error", false),
    ],
    sigma_only: false,
};

/// The Sigma rules the row and its ancestors matched.
pub const SIGMA: Group = Group {
    fields: &[
        ("sigma_ids", true),
        ("sigma_titles", true),
        ("sigma_level", false),
        ("sigma_tags", true),
        ("sigma_authors", true),
        ("lineage_sigma", true),
    ],
    sigma_only: true,
};

/// The acting process's ancestor chain.
pub const LINEAGE: Group = Group {
    fields: &[
        ("lineage", false),
        ("lineage_depth", false),
        ("lineage_parents", true),
        ("lineage_guids", true),
        ("lineage_cmdlines", true),
        ("lineage_root", false),
        ("lineage_status", false),
        ("lineage_source", true),
        ("lineage_flags", true),
        ("lineage_malicious_ancestor", false),
    ],
    sigma_only: false,
};

/// The groups in column order.
pub const GROUPS: [&Group; 4] = [&HASHES, &REPUTATION, &SIGMA, &LINEAGE];

/// The groups a search writes.
fn groups(sigma: bool) -> impl Iterator<Item = &'static Group> {
    GROUPS.into_iter().filter(move |g| sigma || !g.sigma_only)
}

/// True when `name` (or the field it is the `__mv_` companion of) is one
/// of ours in a search that runs Sigma or not: such input columns are
/// replaced, never duplicated, and Sigma does not match on them.
pub fn is_owned(name: &[u8], sigma: bool) -> bool {
    let base = name.strip_prefix(MV_PREFIX).unwrap_or(name);
    groups(sigma).any(|g| g.fields.iter().any(|(f, _)| f.as_bytes() == base))
}

/// Appends our part of the header (leading comma included).
pub fn push_header(out: &mut Vec<u8>, sigma: bool) {
    for group in groups(sigma) {
        for (name, _) in group.fields {
            out.push(b',');
            out.extend_from_slice(name.as_bytes());
        }
        for (name, _) in group.fields.iter().filter(|(_, mv)| *mv) {
            out.push(b',');
            out.extend_from_slice(MV_PREFIX);
            out.extend_from_slice(name.as_bytes());
        }
    }
}

/// `N` commas, the last byte LF when `lf`: a group's empty cells.
const fn commas<const N: usize>(lf: bool) -> [u8; N] {
    let mut run = [b','; N];
    if lf {
        run[N - 1] = b'\n';
    }
    run
}

const NO_REPUTATION_RUN: [u8; REPUTATION.width()] = commas(false);
const NO_SIGMA_RUN: [u8; SIGMA.width()] = commas(false);
const NO_CHAIN_RUN: [u8; LINEAGE.width() + 1] = commas(true);

/// The reputation cells of a row without an answer.
pub const NO_REPUTATION: &[u8] = &NO_REPUTATION_RUN;
/// The Sigma cells of a row Sigma did not read.
pub const NO_SIGMA: &[u8] = &NO_SIGMA_RUN;
/// The lineage cells of a row without lineage, and the row's LF.
pub const NO_CHAIN: &[u8] = &NO_CHAIN_RUN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reputation_columns_follow_the_answer() {
        let names: Vec<&str> = REPUTATION.fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::reputation::verdict::ANSWER_FIELDS);
    }

    #[test]
    fn empty_runs_span_their_group() {
        let header = |sigma| {
            let mut h = Vec::new();
            push_header(&mut h, sigma);
            h.iter().filter(|&&b| b == b',').count()
        };
        let with = header(true);
        let without = header(false);
        assert_eq!(with - without, NO_SIGMA.len());
        assert_eq!(NO_SIGMA, b",,,,,,,,,,,");
        assert_eq!(NO_CHAIN, b",,,,,,,,,,,,,,,\n");
        assert_eq!(NO_REPUTATION, b",,,,,,,,,,");
        assert_eq!(
            without,
            HASHES.fields.len() + NO_REPUTATION.len() + NO_CHAIN.len() - 1
        );
    }

    #[test]
    fn ownership_follows_sigma() {
        assert!(is_owned(b"__mv_rep_sources", false) && is_owned(b"lineage", false));
        assert!(!is_owned(b"Image", true) && !is_owned(b"__mv_Image", true));
        assert!(!is_owned(b"sigma_ids", false) && is_owned(b"__mv_sigma_ids", true));
    }
}
