//! splunkd's multivalue encoding (SCPV2 §6).
//!
//! A field `F` with values v1…vn (n ≥ 2) travels as two columns: `F` holds
//! the values joined by `\n`, `__mv_F` holds `$v1$;$v2$;…` with every `$`
//! inside a value doubled. A single value leaves `__mv_F` empty, and a
//! non-empty `__mv_F` is the truth when both are present.

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
/// the caller quotes the cell).
pub fn encode_into<V: AsRef<[u8]>>(values: &[V], out: &mut Vec<u8>) {
    for (n, v) in values.iter().enumerate() {
        if n > 0 {
            out.push(b';');
        }
        out.push(b'$');
        for &b in v.as_ref() {
            if b == b'$' {
                out.push(b'$');
            }
            out.push(b);
        }
        out.push(b'$');
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
    fn malformed_is_one_value() {
        assert_eq!(decode(b"plain"), vec![b"plain".to_vec()]);
        assert_eq!(decode(b"$open"), vec![b"$open".to_vec()]);
        assert_eq!(decode(b"$a$x"), vec![b"$a$x".to_vec()]);
    }
}
