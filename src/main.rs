//! The `sysmonenrich` binary: splunkd runs it with no arguments and speaks
//! the chunked protocol on stdin/stdout; people run it with a subcommand.

use std::process::ExitCode;

fn main() -> ExitCode {
    sysmonenrich::command::main()
}
