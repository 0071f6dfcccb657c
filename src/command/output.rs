//! The fields the command owns, and how one row of them is written.
//!
//! Every output field is present on every row, empty where it does not
//! apply (VT4Splunk learned this the hard way: columns that appear only on
//! some rows vanish from tables and break saved searches). Multivalue
//! fields get a `__mv_` companion column; all `__mv_` columns follow the
//! plain ones, as splunkd orders its own.

use crate::protocol::multivalue::MV_PREFIX;
use crate::protocol::records::push_field;

/// Output fields in column order, with whether each is multivalue.
pub const FIELDS: &[(&str, bool)] = &[
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

/// True when `name` (or the field it is the `__mv_` companion of) is ours:
/// such input columns are replaced, never duplicated.
pub fn is_owned(name: &[u8]) -> bool {
    let base = name.strip_prefix(MV_PREFIX).unwrap_or(name);
    FIELDS.iter().any(|(f, _)| f.as_bytes() == base)
}

/// Appends our part of the header (leading comma included).
pub fn push_header(out: &mut Vec<u8>) {
    for (name, _) in FIELDS {
        out.push(b',');
        out.extend_from_slice(name.as_bytes());
    }
    for (name, mv) in FIELDS {
        if *mv {
            out.push(b',');
            out.extend_from_slice(MV_PREFIX);
            out.extend_from_slice(name.as_bytes());
        }
    }
}

/// One row's output values, filled by the enrichment stages. Multivalue
/// fields hold their values; the writer encodes them.
#[derive(Debug, Default, Clone)]
pub struct RowValues {
    /// Single-valued cells by `FIELDS` index (multivalue slots unused).
    pub single: [Vec<u8>; FIELDS.len()],
    /// Multivalue cells by `FIELDS` index (single slots unused).
    pub multi: [Vec<Vec<u8>>; FIELDS.len()],
}

/// Index of a field in [`FIELDS`]; a typo is a compile-time-visible panic
/// in tests, never at run time on data.
pub const fn index(name: &str) -> usize {
    let mut i = 0;
    while i < FIELDS.len() {
        if const_eq(FIELDS[i].0, name) {
            return i;
        }
        i += 1;
    }
    panic!("not an output field")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl RowValues {
    /// Empties every cell, keeping allocations for the next row.
    pub fn clear(&mut self) {
        for s in &mut self.single {
            s.clear();
        }
        for m in &mut self.multi {
            m.clear();
        }
    }

    /// Sets a single-valued cell.
    pub fn set(&mut self, field: usize, value: &[u8]) {
        let cell = &mut self.single[field];
        cell.clear();
        cell.extend_from_slice(value);
    }

    /// Appends our cells to a row (leading comma included).
    pub fn push_row(&self, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        for (i, (_, mv)) in FIELDS.iter().enumerate() {
            out.push(b',');
            if *mv {
                match self.multi[i].as_slice() {
                    [] => {}
                    [one] => push_field(out, one),
                    many => {
                        // The plain cell of a multivalue: values joined by LF.
                        scratch.clear();
                        for (n, v) in many.iter().enumerate() {
                            if n > 0 {
                                scratch.push(b'\n');
                            }
                            scratch.extend_from_slice(v);
                        }
                        push_field(out, scratch);
                    }
                }
            } else {
                push_field(out, &self.single[i]);
            }
        }
        for (i, (_, mv)) in FIELDS.iter().enumerate() {
            if *mv {
                out.push(b',');
                if self.multi[i].len() > 1 {
                    scratch.clear();
                    crate::protocol::multivalue::encode_into(&self.multi[i], scratch);
                    push_field(out, scratch);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_row_line_up() {
        let mut h = Vec::new();
        push_header(&mut h);
        let mut r = RowValues::default();
        r.set(index("hash_md5"), b"abc");
        r.multi[index("lineage_guids")] = vec![b"{A}".to_vec(), b"{B}".to_vec()];
        r.multi[index("lineage_parents")] = vec![b"one,two".to_vec()];
        let mut row = Vec::new();
        r.push_row(&mut row, &mut Vec::new());
        let text = format!(
            "x{}\ny{}\n",
            String::from_utf8_lossy(&h),
            String::from_utf8_lossy(&row)
        );
        let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let head = rdr.headers().unwrap().clone();
        let rec = rdr.records().next().unwrap().unwrap();
        let get = |n: &str| {
            rec.get(head.iter().position(|x| x == n).unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(get("hash_md5"), "abc");
        assert_eq!(get("lineage_guids"), "{A}\n{B}");
        assert_eq!(get("__mv_lineage_guids"), "${A}$;${B}$");
        assert_eq!(get("lineage_parents"), "one,two");
        assert_eq!(get("__mv_lineage_parents"), "");
        assert!(is_owned(b"__mv_rep_sources") && is_owned(b"lineage") && !is_owned(b"Image"));
    }
}
