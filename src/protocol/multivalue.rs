//! splunkd's multivalue encoding (SCPV2 §6).
//!
//! A field `F` with values v1…vn (n ≥ 2) travels as two columns: `F` holds
//! the values joined by `\n`, `__mv_F` holds `$v1$;$v2$;…` with every `$`
//! inside a value doubled. A single value leaves `__mv_F` empty, and a
//! non-empty `__mv_F` is the truth when both are present.

use super::records::{needs_quotes, push_escaped, push_field, push_quoted};

/// Prefix of the companion column.
pub const MV_PREFIX: &[u8] = b"__mv_";

/// Decodes a non-empty `__mv_` cell into its values. Text that does not
/// follow the `$…$;` form is taken as one value (splunkd never sends that;
/// losing it would be worse than keeping it).
pub fn decode(cell: &[u8]) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    let mut i = 0;
    while i < cell.len() {
        if cell[i] != b'$' {
            return vec![cell.to_vec()];
        }
        i += 1;
        let mut value = Vec::new();
        loop {
            match cell.get(i) {
                None => return vec![cell.to_vec()],
                Some(b'$') if cell.get(i + 1) == Some(&b'$') => {
                    value.push(b'$');
                    i += 2;
                }
                Some(b'$') => {
                    i += 1;
                    break;
                }
                Some(&b) => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        values.push(value);
        match cell.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(_) => return vec![cell.to_vec()],
        }
    }
    values
}

/// Appends the `__mv_` encoding of `values` to `out` (unquoted CSV text;
/// the caller quotes the cell, or uses [`push_mv_cell`]).
pub fn encode_into<I>(values: I, out: &mut Vec<u8>)
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    for (n, v) in values.into_iter().enumerate() {
        if n > 0 {
            out.push(b';');
        }
        push_value(out, v.as_ref(), b"", Escape::Dollar);
    }
}

/// What [`push_value`] must double in a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Nothing: the caller knows the value holds neither `$` nor `"`
    /// (lineage scans each value once for all of its cells).
    Nothing,
    /// `$`: the `__mv_` encoding proper.
    Dollar,
    /// `$` and `"`, in one pass: the value goes into a cell the caller
    /// quotes (lineage escapes each ancestor once this way and copies the
    /// result into many cells).
    DollarAndQuote,
}

/// Appends one value of a `__mv_` cell: `$`, the value (`escape` says
/// what to double), `suffix` (text known to need no escaping, such as a
/// cut mark), `$`.
#[inline]
pub fn push_value(out: &mut Vec<u8>, value: &[u8], suffix: &[u8], escape: Escape) {
    out.push(b'$');
    let mut rest = value;
    loop {
        let hit = match escape {
            Escape::Nothing => None,
            Escape::Dollar => memchr::memchr(b'$', rest),
            Escape::DollarAndQuote => memchr::memchr2(b'$', b'"', rest),
        };
        let Some(i) = hit else { break };
        out.extend_from_slice(&rest[..=i]);
        out.push(rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(suffix);
    out.push(b'$');
}

/// Appends a multivalue's plain cell: the values joined by LF, quoted
/// whenever there is more than one (the LF forces it). Written straight
/// into `out`: lineage and Sigma cells are most of what the command writes.
pub fn push_joined_cell<'v, I>(out: &mut Vec<u8>, values: I)
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

/// Appends a multivalue's `__mv_` cell (empty for fewer than two values),
/// CSV-quoted when a value needs it (rare: then the cell is encoded
/// unquoted first and written again, quoted).
pub fn push_mv_cell<'v, I>(out: &mut Vec<u8>, values: I)
where
    I: ExactSizeIterator<Item = &'v [u8]>,
{
    if values.len() < 2 {
        return;
    }
    let mark = out.len();
    encode_into(values, out);
    if needs_quotes(&out[mark..]) {
        let text = out.split_off(mark);
        push_quoted(out, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(decode(b"$a$$b$"), vec![b"a$b".to_vec()]);
        assert_eq!(
            decode(b"$x$;$$;$y$"),
            vec![b"x".to_vec(), b"".to_vec(), b"y".to_vec()]
        );
        assert_eq!(
            decode(b"$FIREFLY-WIN$;$beatles$"),
            vec![b"FIREFLY-WIN".to_vec(), b"beatles".to_vec()]
        );
        let mut out = Vec::new();
        encode_into(&[&b"x"[..], b"", b"y$z"], &mut out);
        assert_eq!(out, b"$x$;$$;$y$$z$");
        assert_eq!(
            decode(&out),
            vec![b"x".to_vec(), b"".to_vec(), b"y$z".to_vec()]
        );
    }

    #[test]
    fn cells() {
        let mut out = Vec::new();
        push_joined_cell(&mut out, [&b"a,b"[..], b"c"].into_iter());
        assert_eq!(out, b"\"a,b\nc\"");
        let mut out = Vec::new();
        push_mv_cell(&mut out, [&b"x$"[..], b"y"].into_iter());
        assert_eq!(out, b"$x$$$;$y$");
        let mut out = Vec::new();
        push_mv_cell(&mut out, [&b"a \"q\", b"[..], b"z"].into_iter());
        assert_eq!(out, b"\"$a \"\"q\"\", b$;$z$\"");
        let mut out = Vec::new();
        push_mv_cell(&mut out, [&b"only"[..]].into_iter());
        assert!(out.is_empty());
    }

    #[test]
    fn values_escaped_for_a_quoted_cell() {
        let mut out = Vec::new();
        push_value(
            &mut out,
            b"C:\\a \"$b\".exe",
            b"[cut]",
            Escape::DollarAndQuote,
        );
        assert_eq!(out, b"$C:\\a \"\"$$b\"\".exe[cut]$");
        let mut out = Vec::new();
        push_value(&mut out, b"\"$", b"", Escape::Dollar);
        assert_eq!(out, b"$\"$$$");
    }

    #[test]
    fn malformed_is_one_value() {
        assert_eq!(decode(b"plain"), vec![b"plain".to_vec()]);
        assert_eq!(decode(b"$open"), vec![b"$open".to_vec()]);
        assert_eq!(decode(b"$a$x"), vec![b"$a$x".to_vec()]);
    }
}
