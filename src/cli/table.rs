//! Tables for people: the `-f table` view and the demo's findings.
//!
//! A column name is what a reader copies into a search (`| where
//! rep_verdict=...`), so it is never cut or wrapped: each column is at
//! least as wide as its name. When the table cannot fit the width that way,
//! whole columns are left out, least important first, rather than squeezing
//! every name. Values wrap inside their column (a long `lineage` keeps its
//! near end readable on the next line) up to a few lines per row.
//!
//! The width is the terminal's when stdout is one; otherwise `COLUMNS` when
//! set (a shell that exports it knows the window), else [`DEFAULT_WIDTH`]:
//! wide enough for the usual columns, narrow enough to read in a pager or a
//! ticket.

use comfy_table::{
    Cell, ColumnConstraint, ContentArrangement, LineStyle, Row, Table, TableStyle, Width,
};
use std::io::{IsTerminal, Write};

/// Width of a table written to a file or a pipe (no `COLUMNS`).
pub const DEFAULT_WIDTH: u16 = 160;

/// Lines a row of a many-row table may take before its cells are cut with
/// `…`.
pub const ROW_LINES: usize = 4;

/// Spaces around a value (comfy-table pads one on each side).
const PADDING: u16 = 2;

/// Values' words up to this long are never broken (longer ones, such as
/// whole paths, wrap anywhere).
const WORD_CAP: usize = 30;

/// The blank between two columns (where the header rule has its gaps).
const GAP: u32 = 1;

/// One column of a table.
#[derive(Debug, Clone)]
pub struct Column {
    /// The header: a field name, shown whole.
    pub name: String,
    /// Lower keeps the column longer when the width is short (0 is always
    /// kept).
    pub priority: u8,
    /// The narrowest the values may be wrapped to (the header may make the
    /// column wider).
    pub min_width: u16,
    /// A value too long for the row is cut at its start rather than its end
    /// (a chain's near end says the most).
    pub keep_end: bool,
}

impl Column {
    /// A column named `name`.
    pub fn new(name: &str, priority: u8, min_width: u16) -> Column {
        Column {
            name: name.to_string(),
            priority,
            min_width,
            keep_end: false,
        }
    }

    /// The same column, cut at the start when too long.
    pub fn keep_end(mut self) -> Column {
        self.keep_end = true;
        self
    }

    /// The narrowest this column may be: its name whole, `min_width`,
    /// and the longest word of its values up to [`WORD_CAP`] (a rule name
    /// or a host split over two lines cannot be copied).
    fn floor(&self, index: usize, rows: &[Vec<String>]) -> u16 {
        let word = rows
            .iter()
            .filter_map(|r| r.get(index))
            .flat_map(|v| v.split_whitespace())
            .map(|w| w.chars().count())
            .max()
            .unwrap_or(0)
            .min(WORD_CAP);
        let name = self.name.chars().count();
        u16::try_from(name.max(word))
            .unwrap_or(u16::MAX)
            .max(self.min_width)
    }
}

/// The width to lay tables out in for stdout.
pub fn stdout_width() -> u16 {
    if std::io::stdout().is_terminal() {
        if let Some((_, cols)) = console::Term::stdout().size_checked() {
            return cols.max(20);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c >= 20)
        .unwrap_or(DEFAULT_WIDTH)
}

/// Which columns fit in `width` with every column at least its `floors`
/// wide: drops the highest `priority` numbers first (the last of equals
/// first), never a priority 0 column nor the last column standing.
pub fn fit(columns: &[Column], floors: &[u16], width: u16) -> Vec<bool> {
    let mut keep = vec![true; columns.len()];
    let need = |keep: &[bool]| -> u32 {
        let kept: Vec<u32> = floors
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(f, _)| u32::from(*f) + u32::from(PADDING))
            .collect();
        GAP * (kept.len() as u32).saturating_sub(1) + kept.iter().sum::<u32>()
    };
    while need(&keep) > u32::from(width) && keep.iter().filter(|k| **k).count() > 1 {
        let drop = columns
            .iter()
            .enumerate()
            .filter(|(i, c)| keep[*i] && c.priority > 0)
            .max_by_key(|(i, c)| (c.priority, *i))
            .map(|(i, _)| i);
        match drop {
            Some(i) => keep[i] = false,
            None => break,
        }
    }
    keep
}

/// Widths (without padding) for the kept columns: each gets its floor,
/// then the room left goes, evenly, to the columns whose values want more,
/// so a short column never takes space a long `lineage` could use.
fn widths(floors: &[u16], natural: &[u16], width: u16) -> Vec<u16> {
    let mut w = floors.to_vec();
    let gaps = GAP * (w.len() as u32).saturating_sub(1);
    let used: u32 = gaps
        + w.iter()
            .map(|x| u32::from(*x) + u32::from(PADDING))
            .sum::<u32>();
    let mut room = u32::from(width).saturating_sub(used);
    while room > 0 {
        let hungry: Vec<usize> = (0..w.len()).filter(|&i| w[i] < natural[i]).collect();
        if hungry.is_empty() {
            break;
        }
        let share = (room / hungry.len() as u32).max(1);
        for i in hungry {
            if room == 0 {
                break;
            }
            let give = share.min(u32::from(natural[i] - w[i])).min(room);
            w[i] += give as u16;
            room -= give;
        }
    }
    w
}

/// `value` cut to about what `lines` lines of `width` hold, at its start.
fn keep_end(value: &str, width: u16, lines: usize) -> String {
    // Wrapping breaks at spaces, so a full line holds less than `width`.
    let budget = (usize::from(width).saturating_mul(lines) / 4 * 3).max(8);
    let n = value.chars().count();
    if n <= budget {
        return value.to_string();
    }
    "…".to_string() + &value.chars().skip(n + 1 - budget).collect::<String>()
}

/// Writes `rows` (cells in `columns` order) as a table `width` wide, each
/// row at most `max_lines` lines.
pub fn write(
    out: &mut impl Write,
    columns: &[Column],
    rows: &[Vec<String>],
    width: u16,
    max_lines: usize,
) -> std::io::Result<()> {
    let all_floors: Vec<u16> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| c.floor(i, rows))
        .collect();
    let keep = fit(columns, &all_floors, width);
    let kept: Vec<usize> = (0..columns.len()).filter(|&i| keep[i]).collect();
    let natural: Vec<u16> = kept
        .iter()
        .map(|&i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .flat_map(|v| v.lines())
                .map(|l| u16::try_from(l.chars().count()).unwrap_or(u16::MAX))
                .chain([all_floors[i]])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let floors: Vec<u16> = kept.iter().map(|&i| all_floors[i]).collect();
    let widths = widths(&floors, &natural, width);
    let mut table = Table::new();
    table
        .load_style(TableStyle::new().header_separator(LineStyle::none().fill('-').junction(' ')))
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_truncation_indicator("…");
    table.set_header(kept.iter().map(|&i| Cell::new(&columns[i].name)));
    for cells in rows {
        let mut row = Row::from(kept.iter().zip(&widths).map(|(&i, w)| {
            let v = cells.get(i).map_or("", String::as_str);
            if columns[i].keep_end {
                Cell::new(keep_end(v, *w, max_lines))
            } else {
                Cell::new(v)
            }
        }));
        row.max_height(max_lines);
        table.add_row(row);
    }
    table.set_constraints(
        widths
            .iter()
            .map(|w| ColumnConstraint::Absolute(Width::Fixed(w + PADDING))),
    );
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Column> {
        vec![
            Column::new("host", 2, 0),
            Column::new("EventCode", 4, 0),
            Column::new("Image", 0, 8),
            Column::new("lineage_status", 3, 0),
            Column::new("lineage", 1, 20),
        ]
    }

    fn rows() -> Vec<Vec<String>> {
        vec![vec![
            "WS0001".into(),
            "1".into(),
            "powershell.exe".into(),
            "complete".into(),
            "explorer.exe > WINWORD.EXE > cmd.exe > powershell.exe > rundll32.exe".into(),
        ]]
    }

    fn render(width: u16) -> Vec<String> {
        let mut out = Vec::new();
        write(&mut out, &columns(), &rows(), width, ROW_LINES).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn names_are_whole_at_every_width_and_lines_fit() {
        let all: Vec<String> = columns().iter().map(|c| c.name.clone()).collect();
        for width in [20u16, 40, 60, 80, 100, 200] {
            let lines = render(width);
            let header: Vec<&str> = lines[0].split_whitespace().collect();
            assert!(!header.is_empty());
            for h in &header {
                assert!(
                    all.iter().any(|n| n == h),
                    "width {width}: header cell {h:?}"
                );
            }
            // The order of the kept columns is the order given.
            let pos: Vec<usize> = header
                .iter()
                .map(|h| all.iter().position(|n| n == h).unwrap())
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "{header:?}");
            if width >= 40 {
                for l in &lines {
                    assert!(l.chars().count() <= usize::from(width), "{width}: {l:?}");
                }
            }
        }
        // Wide: everything, the chain on one line.
        let wide = render(200);
        assert_eq!(wide[0].split_whitespace().count(), 5);
        assert!(wide[2].contains("explorer.exe > WINWORD.EXE > cmd.exe > powershell.exe"));
        // Narrow: the least important go first, Image stays.
        let narrow = render(40);
        let header: Vec<&str> = narrow[0].split_whitespace().collect();
        assert!(header.contains(&"Image"), "{header:?}");
        assert!(!header.contains(&"EventCode"), "{header:?}");
    }

    #[test]
    fn a_long_value_wraps_instead_of_vanishing() {
        let lines = render(60);
        let text = lines[2..].join("\n");
        assert!(text.contains("rundll32.exe"), "{text}");
    }
}
