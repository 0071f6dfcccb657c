//! The one way the CLI writes to stdout.
//!
//! Why: `sysmonenrich state | head -1` closes our stdout early. Rust
//! ignores SIGPIPE, so the next write fails with `BrokenPipe`, and
//! `println!` turns that into a panic (exit 101 and a backtrace hint on
//! stderr). Every subcommand writes through [`stdout`] instead: a write
//! error is returned (never a panic), a closed pipe is remembered, and
//! [`ended_by_closed_pipe`] lets `main` treat it as the end of the
//! output, exit 0 and nothing said, as `head` and `rg` do. The flag is
//! needed because some writers (csv, serde_json) wrap the I/O error in
//! their own type, whose chain does not always lead back to it.
//!
//! `src/cli/` forbids `print!`/`println!` (`clippy::print_stdout` in
//! `cli/mod.rs`), so a new subcommand cannot slip past this path.

use std::io::{self, BufWriter, StdoutLock, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Buffered, locked stdout that remembers a closed pipe.
pub struct Stdout(BufWriter<StdoutLock<'static>>);

/// The CLI's stdout.
pub fn stdout() -> Stdout {
    Stdout(BufWriter::new(io::stdout().lock()))
}

fn note(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
    e
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(note)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).map_err(note)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(note)
    }
}

/// True when `e` (or any write before it) met a closed stdout: the reader
/// has what it wanted, which is not an error.
pub fn ended_by_closed_pipe(e: &anyhow::Error) -> bool {
    CLOSED.load(Ordering::Relaxed)
        || e.chain().any(|c| {
            c.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
        })
}
