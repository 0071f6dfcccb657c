//! The fields the command owns, and how one row of them is written.
//!
//! Every output field is present on every row, empty where it does not
//! apply (VT4Splunk learned this the hard way: columns that appear only on
//! some rows vanish from tables and break saved searches). Multivalue
//! fields get a `__mv_` companion column, after the plain columns of their
//! group (see [`FIELD_GROUPS`]).

use crate::protocol::multivalue::MV_PREFIX;
use crate::protocol::records::{push_escaped, push_field};
use crate::reputation::Answer;
use crate::sysmon::FileHashes;

/// Output fields of reputation (hashes and `rep_*`), with whether each is
/// multivalue.
pub const REPUTATION_FIELDS: &[(&str, bool)] = &[
    ("hash_md5", false),
    ("hash_sha1", false),
    ("hash_sha256", false),
    ("hash_imphash", false),
    ("rep_verdict", false),
    ("rep_detections", false),
    ("rep_engines", false),
    ("rep_label", false),
    ("rep_sources", true),
    ("rep_checked", false),
    ("rep_cached", false),
    ("rep_link", false),
    ("rep_error", false),
];

/// Output fields of lineage, with whether each is multivalue.
pub const LINEAGE_FIELDS: &[(&str, bool)] = &[
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
];

/// The groups in column order. Each group's `__mv_` columns follow its
/// own plain columns (columns are mapped by name, and SCPV2.md §5 has
/// splunkd accept the SDK's interleaved `f,__mv_f` pairs as well as its own
/// all-plain-first order): a process's lineage cells, plain and `__mv_`, are then one
/// run of bytes that every row of the process shares as a single piece of
/// the reply, instead of three pieces around the row's `__mv_rep_sources`.
pub const FIELD_GROUPS: [&[(&str, bool)]; 2] = [REPUTATION_FIELDS, LINEAGE_FIELDS];

/// True when `name` (or the field it is the `__mv_` companion of) is ours:
/// such input columns are replaced, never duplicated.
pub fn is_owned(name: &[u8]) -> bool {
    let base = name.strip_prefix(MV_PREFIX).unwrap_or(name);
    FIELD_GROUPS
        .iter()
        .any(|g| g.iter().any(|(f, _)| f.as_bytes() == base))
}

/// Appends our part of the header (leading comma included); the Sigma
/// group, when Sigma runs, between reputation and lineage.
pub fn push_header(out: &mut Vec<u8>, sigma: bool) {
    for (k, group) in FIELD_GROUPS.into_iter().enumerate() {
        if k == 1 && sigma {
            super::sigma::push_header(out);
        }
        for (name, _) in group {
            out.push(b',');
            out.extend_from_slice(name.as_bytes());
        }
        for (name, mv) in group {
            if *mv {
                out.push(b',');
                out.extend_from_slice(MV_PREFIX);
                out.extend_from_slice(name.as_bytes());
            }
        }
    }
}

/// Appends a multivalue's plain cell: the values joined by LF, quoted
/// whenever there is more than one (the LF forces it). Written straight
/// into `out`: lineage cells are most of what the command writes.
pub(super) fn push_joined<'v, I>(out: &mut Vec<u8>, values: I)
where
    I: ExactSizeIterator<Item = &'v [u8]>,
{
    let n = values.len();
    let mut values = values;
    if n == 1 {
        if let Some(v) = values.next() {
            push_field(out, v);
        }
        return;
    }
    if n == 0 {
        return;
    }
    out.push(b'"');
    for (k, v) in values.enumerate() {
        if k > 0 {
            out.push(b'\n');
        }
        push_escaped(out, v);
    }
    out.push(b'"');
}

/// Appends a multivalue's `__mv_` cell (empty for fewer than two values):
/// `$v1$;$v2$` with `$` doubled inside values, CSV-quoted when a value
/// needs it (rare: then the cell is written again, quoted).
pub(super) fn push_mv<'v, I>(out: &mut Vec<u8>, values: I)
where
    I: ExactSizeIterator<Item = &'v [u8]>,
{
    if values.len() < 2 {
        return;
    }
    let mark = out.len();
    for (k, mut v) in values.enumerate() {
        if k > 0 {
            out.push(b';');
        }
        out.push(b'$');
        while let Some(i) = memchr::memchr(b'$', v) {
            out.extend_from_slice(&v[..=i]);
            out.push(b'$');
            v = &v[i + 1..];
        }
        out.extend_from_slice(v);
        out.push(b'$');
    }
    let cell = &out[mark..];
    if memchr::memchr3(b',', b'"', b'\n', cell).is_some() || memchr::memchr(b'\r', cell).is_some() {
        let text = out.split_off(mark);
        crate::protocol::records::push_quoted(out, &text);
    }
}

fn push_digest(out: &mut Vec<u8>, d: Option<&[u8]>) {
    out.push(b',');
    if let Some(d) = d {
        out.extend_from_slice(d); // hex: never needs quoting
    }
}

/// The `rep_*` cells of one answer, rendered once per distinct file of a
/// chunk: `plain` is the nine cells (each with its leading comma), `mv` the
/// `__mv_rep_sources` cell.
#[derive(Debug, Clone, Default)]
pub struct RepCells {
    plain: Vec<u8>,
    mv: Vec<u8>,
}

/// Renders an answer's cells.
pub fn render_answer(a: &Answer) -> RepCells {
    let mut cells = RepCells::default();
    for (name, values) in a.field_values() {
        cells.plain.push(b',');
        push_joined(&mut cells.plain, values.iter().map(|v| v.as_bytes()));
        if name == "rep_sources" {
            push_mv(&mut cells.mv, values.iter().map(|v| v.as_bytes()));
        }
    }
    cells
}

/// Appends one row's cells in column order (leading comma included) and
/// the row's LF: `chain` is a process's lineage cells as
/// `lineage_cells::write_cells` leaves them (LF included), `None` for a row
/// without lineage.
pub fn push_cells(
    out: &mut Vec<u8>,
    hashes: Option<&FileHashes>,
    rep: Option<&RepCells>,
    chain: Option<&[u8]>,
) {
    push_cells_head(out, hashes, rep);
    out.extend_from_slice(chain.unwrap_or(NO_CHAIN));
}

/// The lineage cells (plain and `__mv_`) of a row without lineage, and the
/// row's LF.
pub const NO_CHAIN: &[u8] = b",,,,,,,,,,,,,,,\n";

/// The cells before the lineage cells: hashes, `rep_*` and
/// `__mv_rep_sources`. Split from [`push_cells`] so a writer can take the
/// lineage cells from elsewhere (see `protocol::pieces`).
pub fn push_cells_head(out: &mut Vec<u8>, hashes: Option<&FileHashes>, rep: Option<&RepCells>) {
    let h = hashes.copied().unwrap_or_default();
    push_digest(out, h.md5.as_ref().map(|d| d.as_bytes()));
    push_digest(out, h.sha1.as_ref().map(|d| d.as_bytes()));
    push_digest(out, h.sha256.as_ref().map(|d| d.as_bytes()));
    push_digest(out, h.imphash.as_ref().map(|d| d.as_bytes()));
    match rep {
        Some(r) if !r.plain.is_empty() => out.extend_from_slice(&r.plain),
        _ => out.extend_from_slice(b",,,,,,,,,"),
    }
    out.push(b',');
    out.extend_from_slice(rep.map_or(&b""[..], |r| &r.mv[..]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_empty_row_line_up() {
        let mut h = b"x".to_vec();
        push_header(&mut h, false);
        let mut row = b"y".to_vec();
        let hashes = FileHashes::parse_sysmon(b"MD5=975B4BD9B9D3B0A9C7D6E5F4A3B2C1D0");
        push_cells(&mut row, Some(&hashes), None, None);
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&h),
            String::from_utf8_lossy(&row)
        );
        let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let head = rdr.headers().unwrap().clone();
        let rec = rdr.records().next().unwrap().unwrap();
        assert_eq!(head.len(), rec.len());
        let get = |n: &str| {
            rec.get(head.iter().position(|x| x == n).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(get("hash_md5"), "975b4bd9b9d3b0a9c7d6e5f4a3b2c1d0");
        assert_eq!(get("lineage"), "");
        assert!(is_owned(b"__mv_rep_sources") && is_owned(b"lineage") && !is_owned(b"Image"));
    }

    #[test]
    fn multivalue_cells() {
        let mut out = Vec::new();
        push_joined(&mut out, [&b"a,b"[..], b"c"].into_iter());
        assert_eq!(out, b"\"a,b\nc\"");
        let mut out = Vec::new();
        push_mv(&mut out, [&b"x$"[..], b"y"].into_iter());
        assert_eq!(out, b"$x$$$;$y$");
        let mut out = Vec::new();
        push_mv(&mut out, [&b"a \"q\", b"[..], b"z"].into_iter());
        assert_eq!(out, b"\"$a \"\"q\"\", b$;$z$\"");
        let mut out = Vec::new();
        push_mv(&mut out, [&b"only"[..]].into_iter());
        assert!(out.is_empty());
    }
}
