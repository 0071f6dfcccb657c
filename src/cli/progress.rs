//! Progress of `enrich` on stderr, for a person waiting at a terminal.
//!
//! The bar measures bytes read from the input files (what is known in
//! advance: the file sizes, compressed for `.gz`), because a row count is
//! not known until the end; the message carries the rows enriched and their
//! rate. When stderr is not a terminal (a script, a pipe, a log file) there
//! is no bar at all: its redraws would be noise in a captured log.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The progress of one `enrich` run.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    /// A bar over `files` when stderr is a terminal, else a hidden one.
    /// Also hidden when the rows themselves go to the terminal: they would
    /// scroll through the bar and tear it.
    pub fn for_files(files: &[PathBuf]) -> Progress {
        let visible = std::io::stderr().is_terminal() && !std::io::stdout().is_terminal();
        Progress::new(files, visible)
    }

    fn new(files: &[PathBuf], visible: bool) -> Progress {
        let sizes: Option<u64> = files
            .iter()
            .map(|f| {
                (f != Path::new("-"))
                    .then(|| std::fs::metadata(f).ok().map(|m| m.len()))
                    .flatten()
            })
            .sum();
        let bar = match (visible, sizes) {
            (false, _) => ProgressBar::hidden(),
            (true, Some(total)) => {
                let bar = ProgressBar::with_draw_target(
                    Some(total),
                    ProgressDrawTarget::stderr_with_hz(4),
                );
                bar.set_style(
                    ProgressStyle::with_template(
                        "{elapsed:>4} [{bar:30}] {percent:>3}%  {msg}  {eta} left",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            }
            // stdin: no size, so no bar and no time left.
            (true, None) => {
                let bar =
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
                bar.set_style(
                    ProgressStyle::with_template("{elapsed:>4} {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            }
        };
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// `reader`, counting its bytes on the bar.
    pub fn wrap<R: Read>(&self, reader: R) -> indicatif::ProgressBarIter<R> {
        self.bar.wrap_read(reader)
    }

    /// A file read by its own parser (`.evtx`) is done: its bytes count.
    pub fn file_done(&self, path: &Path) {
        if let Ok(m) = std::fs::metadata(path) {
            self.bar.inc(m.len());
        }
    }

    /// `rows` rows enriched so far.
    pub fn rows(&self, rows: u64) {
        if self.bar.is_hidden() {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{} rows, {} rows/s",
            thousands(rows),
            thousands((rows as f64 / secs) as u64)
        ));
    }

    /// Removes the bar, so the summary after it starts on a clean line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn hidden_bar_counts_nothing_and_reads_everything() {
        let p = Progress::new(&[PathBuf::from("-")], false);
        assert!(p.bar.is_hidden());
        let mut s = String::new();
        p.wrap(&b"a,b\n1,2\n"[..]).read_to_string(&mut s).unwrap();
        assert_eq!(s, "a,b\n1,2\n");
        p.rows(2);
        p.finish();
    }
}
