//! The `sysmonenrich` binary: splunkd runs it with no arguments and speaks
//! the chunked protocol on stdin/stdout; people run it with a subcommand.
//! With neither (a person typed `sysmonenrich` at a terminal) it prints help
//! rather than wait forever for chunks that will never come.

use std::io::IsTerminal;
use std::process::ExitCode;
use sysmonenrich::command::{self, Outcome};
use sysmonenrich::config::paths::Paths;
use sysmonenrich::enrich::session::Setup;
use sysmonenrich::protocol::pieces::{reply_output, REPLY_BUFFER};

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() > 1 || std::io::stdin().is_terminal() {
        return sysmonenrich::cli::main(argv);
    }
    run_protocol()
}

/// One search: settings and logging first (a search's only voice besides
/// its replies is the log file), then the conversation on stdin/stdout.
fn run_protocol() -> ExitCode {
    let mut setup = Setup::load(Paths::for_search());
    sysmonenrich::logging::init(
        setup.paths.splunk_home.as_deref(),
        setup.settings.log_level,
        setup.settings.log_rotation,
        "",
    );
    for w in &setup.warnings {
        log::warn!("{w}");
    }
    if setup.paths.splunk_home.is_none() {
        // Without it there is no log file (this goes to stderr, which
        // splunkd keeps in search.log) and, unless `[state] path` is set,
        // no state database: say so once instead of running silently
        // without either.
        let text = format!(
            "sysmonenrich: SPLUNK_HOME is not set: no log file{}",
            if setup.settings.state.path.is_none() {
                ", and no state database (process table, reputation cache) for this search"
            } else {
                ""
            }
        );
        log::warn!("{text}");
        setup.warnings.push(text);
    }
    let stdin = std::io::stdin().lock();
    let outcome = command::serve(
        std::io::BufReader::with_capacity(1 << 20, stdin),
        std::io::BufWriter::with_capacity(REPLY_BUFFER, reply_output()),
        &setup,
    );
    log::logger().flush();
    match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::FAILURE,
    }
}
