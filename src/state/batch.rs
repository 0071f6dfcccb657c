//! Batched `IN (...)` lookups with one prepared statement.
//!
//! A chunk of results can ask for thousands of GUIDs or hundreds of hashes.
//! One statement per key costs a VM run per key; one statement per chunk
//! with a variable-length `IN` list would be a different SQL text (and a
//! fresh `prepare`) for every length. Instead every batch has exactly
//! [`IN_BATCH`] placeholders, and a short last batch repeats its last key
//! (duplicates inside `IN` are harmless). So each lookup is one cached
//! statement, run `ceil(n / IN_BATCH)` times, and far below SQLite's limit
//! on bound variables (999 in old builds, 32,766 in ours).

use rusqlite::{Statement, ToSql};

/// Placeholders per statement.
pub(crate) const IN_BATCH: usize = 256;

/// `?,?,...,?` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// Binds `keys` (at most [`IN_BATCH`], at least one) to the placeholders
/// starting at index `first` (1-based), padding with the last key.
pub(crate) fn bind_padded<T: ToSql>(
    stmt: &mut Statement<'_>,
    first: usize,
    keys: &[T],
) -> rusqlite::Result<()> {
    debug_assert!(!keys.is_empty() && keys.len() <= IN_BATCH);
    let Some(last) = keys.last() else {
        return Ok(());
    };
    for i in 0..IN_BATCH {
        let key = keys.get(i).unwrap_or(last);
        stmt.raw_bind_parameter(first + i, key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(0), "");
        assert_eq!(placeholders(1), "?");
        assert_eq!(placeholders(3), "?,?,?");
    }
}
