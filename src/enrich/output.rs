//! One row's hash and reputation cells (the first groups of
//! `columns`), and where the other groups' cells join them.

use super::columns::{self, NO_CHAIN, NO_REPUTATION};
use crate::protocol::multivalue::{push_joined_cell, push_mv_cell};
use crate::reputation::Answer;
use crate::sysmon::FileHashes;

fn push_digest(out: &mut Vec<u8>, d: Option<&[u8]>) {
    out.push(b',');
    if let Some(d) = d {
        out.extend_from_slice(d); // hex: never needs quoting
    }
}

/// The `rep_*` cells of one answer, rendered once per distinct file of a
/// chunk: `plain` is the plain cells, `mv` the `__mv_` ones (each cell
/// with its leading comma).
#[derive(Debug, Clone, Default)]
pub struct RepCells {
    plain: Vec<u8>,
    mv: Vec<u8>,
}

/// Renders an answer's cells.
pub fn render_answer(a: &Answer) -> RepCells {
    let mut cells = RepCells::default();
    // The names are `columns::REPUTATION`'s (a test holds them equal).
    for ((_, values), (_, mv)) in a.field_values().iter().zip(columns::REPUTATION.fields) {
        cells.plain.push(b',');
        push_joined_cell(&mut cells.plain, values.iter().map(|v| v.as_bytes()));
        if *mv {
            cells.mv.push(b',');
            push_mv_cell(&mut cells.mv, values.iter().map(|v| v.as_bytes()));
        }
    }
    cells
}

/// Appends one row's cells in column order (leading comma included) and
/// the row's LF: `chain` is a process's lineage cells as
/// `lineage_writer::write_cells` leaves them (LF included), `None` for a row
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
        Some(r) if !r.plain.is_empty() => {
            out.extend_from_slice(&r.plain);
            out.extend_from_slice(&r.mv);
        }
        _ => out.extend_from_slice(NO_REPUTATION),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_empty_row_line_up() {
        let mut h = b"x".to_vec();
        columns::push_header(&mut h, false);
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
    }
}
