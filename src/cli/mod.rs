//! The command-line face of the engine.

use std::ffi::OsString;
use std::process::ExitCode;

/// Runs a CLI subcommand.
pub fn main(_argv: Vec<OsString>) -> ExitCode {
    eprintln!("sysmonenrich: subcommands are not implemented yet; splunkd runs this binary with no arguments");
    ExitCode::from(2)
}
