//! The wiring: which mode the binary runs in, and the protocol command.
//!
//! splunkd starts us with no arguments and a pipe on stdin: that is the
//! protocol. With a subcommand we are a CLI. With neither (a person typed
//! `sysmonenrich` at a terminal) we print help rather than wait forever for
//! chunks that will never come.

pub mod args;
pub mod cells;
pub mod creations;
pub mod enrich;
pub mod output;
pub mod persist;
pub mod rep_store;
pub mod serve;
pub mod session;
pub mod state_source;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() > 1 || std::io::stdin().is_terminal() {
        return crate::cli::main(argv);
    }
    run_protocol()
}

/// `SPLUNK_HOME`, when we run under Splunk.
pub fn splunk_home() -> Option<PathBuf> {
    std::env::var_os("SPLUNK_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Buffer for reply headers and metadata. Bodies go around it: they are
/// written with `writev` from where their bytes already are, and a body
/// window of at least this size bypasses the buffer (a 1 MiB buffer made
/// the buffer copy every window again).
pub const REPLY_BUFFER: usize = 64 << 10;

/// Where replies go: stdout as a plain file. `Stdout` is line-buffered and
/// scans what it writes for newlines; a duplicate of descriptor 1 takes
/// `writev` straight to the pipe. Nothing else writes to stdout while the
/// protocol runs (logs go to their file).
#[cfg(unix)]
pub fn reply_output() -> Box<dyn std::io::Write> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// Where replies go (elsewhere than Unix: plain stdout).
#[cfg(not(unix))]
pub fn reply_output() -> Box<dyn std::io::Write> {
    Box::new(std::io::stdout())
}

fn run_protocol() -> ExitCode {
    let home = splunk_home();
    let app_dir = crate::config::settings::app_dir();
    let (settings, loaded) = crate::config::settings::Settings::load(app_dir.as_deref());
    crate::logging::init(
        home.as_deref(),
        settings.log_level,
        settings.log_rotation,
        "",
    );
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    let config = serve::ServeConfig {
        settings,
        app_dir,
        splunk_home: home,
        warnings: loaded.warnings,
    };
    let stdin = std::io::stdin().lock();
    let outcome = serve::serve(
        std::io::BufReader::with_capacity(1 << 20, stdin),
        std::io::BufWriter::with_capacity(REPLY_BUFFER, reply_output()),
        &config,
    );
    log::logger().flush();
    match outcome {
        serve::Outcome::Done => ExitCode::SUCCESS,
        serve::Outcome::Failed => ExitCode::FAILURE,
    }
}
