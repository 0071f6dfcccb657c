//! The command-line face of the engine (DESIGN §5).
//!
//! The same [`crate::enrich::enricher::Enricher`] that serves splunkd runs
//! here over files, so what an analyst sees at a terminal is what the
//! search bar would show.
//!
//! | subcommand | file | what |
//! |---|---|---|
//! | `enrich FILE…` | `enrich.rs`, `input.rs`, `print.rs`, `progress.rs` | CSV / JSON lines / `.evtx` through the engine |
//! | `demo` | `demo.rs`, `table.rs` | synthetic events through the engine, findings first |
//! | `search 'SPL'` | `search.rs`, `connect.rs` | export search on splunkd, optionally enriched |
//! | `apps` | `apps.rs`, `connect.rs` | apps installed on splunkd |
//! | `keys set/list/delete` | `keys.rs`, `connect.rs` | provider API keys in splunkd's credential store |
//! | `tree GUID FILE…` | `tree.rs` | a process tree a person can read |
//! | `state [stats/purge/check/push/pull]` | `state.rs`, `state_shared.rs`, `state_copy.rs` | the state database and the shared tier (KV store) |
//! | `sigma check/install` | `sigma.rs` | what a Sigma rule set loads; install a SigmaHQ release |
//!
//! Commands that talk to splunkd read `.splunkrc` (`splunkrc.rs`) and
//! connect through `connect.rs` with the one splunkd client
//! ([`crate::splunk::Client`]). Every one writes to stdout through
//! `output.rs` (a closed pipe ends the output quietly); `print!` and
//! `println!` are refused here.

#![deny(clippy::print_stdout)]

mod apps;
mod connect;
mod demo;
mod enrich;
mod input;
mod keys;
mod output;
mod print;
mod progress;
pub mod search;
mod sigma;
pub mod splunkrc;
pub mod state;
mod state_copy;
mod state_shared;
mod table;
mod tree;

use crate::config::options::{self as args, Options};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sysmonenrich",
    version,
    about = "Hash reputation and process lineage for Microsoft Sysmon events",
    long_about = "Inside Splunk this binary is the custom search command `| sysmonenrich` \
(splunkd starts it with no arguments and speaks the chunked protocol on stdin/stdout). \
Outside Splunk it enriches exported files."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enrich exported events: CSV, JSON lines or .evtx (gzip allowed).
    Enrich {
        /// Input files (`-` for CSV on stdin), enriched in order as one search.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = OutFormat::Csv)]
        format: OutFormat,
        /// Rows per batch (splunkd sends at most 50,000 per chunk).
        #[arg(long, default_value_t = 50_000)]
        chunk: usize,
        /// Search options as in the search bar, e.g. `lineage=false max_depth=10`.
        #[arg(long = "option", short = 'o', value_name = "NAME=VALUE")]
        options: Vec<String>,
        /// Sigma rule files or folders (repeatable) instead of the app's
        /// `[sigma] rules`: the rows gain the `sigma_*` fields.
        #[arg(long, value_name = "PATH")]
        sigma: Vec<PathBuf>,
    },
    /// Generate realistic Sysmon events, enrich them, and show the result:
    /// a look at the command with nothing but this binary.
    Demo {
        /// Events to generate.
        #[arg(long, default_value_t = 2_000)]
        rows: usize,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = OutFormat::Table)]
        format: OutFormat,
        /// Enriched events to show in full after the findings.
        #[arg(long, default_value_t = 3)]
        show: usize,
    },
    /// Manage the providers' API keys in splunkd's credential store
    /// (storage/passwords, app and realm `sysmonenrich`).
    #[command(after_help = "Examples:\n  \
sysmonenrich keys set virustotal                 (asks for the key, input hidden)\n  \
sysmonenrich keys set malwarebazaar --key-file mb.key\n  \
pass show vt | sysmonenrich keys set virustotal\n  \
sysmonenrich keys list\n  \
sysmonenrich keys delete virustotal")]
    Keys {
        #[command(flatten)]
        connect: Connect,
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// List the apps installed on splunkd.
    Apps {
        #[command(flatten)]
        connect: Connect,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = OutFormat::Table)]
        format: OutFormat,
    },
    /// Run a search on splunkd (blocking export, row limit), optionally
    /// enrich the results, and print them.
    #[command(after_help = "Examples:\n  \
sysmonenrich search 'index=sysmon EventCode=1' --max-rows 1000 --enrich -f table\n  \
sysmonenrich search '`sysmonenrich_index` EventCode=1 Image=*\\\\powershell.exe' --earliest -7d --enrich -o max_depth=10 -f json\n  \
sysmonenrich search '| tstats count where index=sysmon by host' -f table")]
    Search {
        #[command(flatten)]
        args: search::SearchArgs,
        #[command(flatten)]
        connect: Connect,
    },
    /// Show the process tree around one process: its ancestors, the process
    /// and its descendants, with the lineage rules each matches.
    #[command(after_help = "Example:\n  \
sysmonenrich tree '{747F3D96-D6ED-5D31-0000-0010C88A2500}' sysmon.csv.gz more.evtx")]
    Tree {
        #[command(flatten)]
        args: tree::TreeArgs,
    },
    /// Statistics and clean-up of the state database (process table,
    /// reputation cache, pending queue, quota ledger) and of the shared
    /// tier (the app's KV store collections); copying between the two.
    #[command(after_help = "Examples:\n  \
sysmonenrich state\n  \
sysmonenrich state purge cache\n  \
sysmonenrich state --db /opt/splunk/var/lib/sysmonenrich/state.db check\n  \
sysmonenrich state push                 (seed the KV store from this search head)\n  \
sysmonenrich state pull --splunkrc ~/shc.splunkrc")]
    State {
        /// The database (default: `[state] path` of the app's conf, else
        /// $SPLUNK_HOME/var/lib/sysmonenrich/state.db, else
        /// ~/.local/state/sysmonenrich/state.db).
        #[arg(long, value_name = "PATH", global = true)]
        db: Option<PathBuf>,
        /// splunkd, for the shared tier (the app's KV store collections):
        /// `stats` and `purge processes --sid/--user` use it when a
        /// .splunkrc is named or ~/.splunkrc exists; `push` and `pull`
        /// need it.
        #[command(flatten)]
        connect: Connect,
        #[command(subcommand)]
        action: Option<state::Action>,
    },
    /// Sigma rules: what a rule set loads, and installing a SigmaHQ release
    /// into the app.
    #[command(after_help = "Examples:\n  \
sysmonenrich sigma check                          (the app's rules: [sigma] rules, else local/sigma)\n  \
sysmonenrich sigma check ~/sigma/rules ~/sigma/rules-threat-hunting\n  \
sysmonenrich sigma install sigma_all_rules.zip")]
    Sigma {
        #[command(subcommand)]
        action: SigmaCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SigmaCommand {
    /// Load rules as a search would and print how many load, what is
    /// skipped and why, problems, and counts per level and category. Exits
    /// non-zero when no rule loads.
    Check {
        /// Rule files or directories (default: `[sigma] rules` of the app's
        /// sysmonenrich.conf, else the app's local/sigma).
        dirs: Vec<PathBuf>,
    },
    /// Check a SigmaHQ release (a directory or a .zip as published on the
    /// Releases page of SigmaHQ/sigma) and copy its rule files and licence
    /// into a new set under the app's local/sigma/sets/, then make it the
    /// one searches read. From a directory, only regular files inside it
    /// are copied (links out of it, loops and special files are named and
    /// skipped). Refused when no rule loads.
    Install {
        /// The release: a directory or a .zip.
        source: PathBuf,
        /// The app folder (default: the one this binary runs from, or
        /// SYSMONENRICH_APP_DIR).
        #[arg(long, value_name = "DIR")]
        app_dir: Option<PathBuf>,
    },
}

/// How to reach splunkd.
#[derive(Args, Debug, Clone)]
struct Connect {
    /// The .splunkrc with host=, port=, scheme= and token= or username= and
    /// password= (default: ~/.splunkrc).
    #[arg(long, value_name = "PATH", global = true)]
    splunkrc: Option<PathBuf>,
    /// Accept splunkd's TLS certificate without verifying it (a loopback
    /// splunkd's self-signed certificate is accepted when the app's
    /// `[splunkd] insecure_loopback` says so, as for the search command).
    #[arg(long, global = true)]
    insecure: bool,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Store a provider's key (replacing the stored one). The key is read
    /// from --key-file, else from the terminal without echo, else from
    /// stdin; never from the command line.
    Set {
        /// `virustotal` or `malwarebazaar`.
        provider: String,
        /// A file holding the key (one line).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Show which providers have a key (never the key).
    List,
    /// Delete a provider's key.
    Delete {
        /// `virustotal` or `malwarebazaar`.
        provider: String,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    args::duration(s)
}

/// Output formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFormat {
    /// All columns, CSV.
    Csv,
    /// One JSON object per row (multivalue fields as arrays).
    Json,
    /// A readable table of the key columns.
    Table,
}

/// Runs a CLI subcommand.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    crate::logging::init(None, log::LevelFilter::Warn, Default::default(), "");
    let result = match cli.command {
        Command::Enrich {
            files,
            format,
            chunk,
            options,
            sigma,
        } => enrich::enrich(&files, format, chunk, &options, &sigma),
        Command::Demo { rows, format, show } => demo::run(rows, format, show),
        Command::Keys { connect, action } => match action {
            KeysCommand::Set { provider, key_file } => {
                keys::prepare_set(&provider, key_file.as_deref()).and_then(|(provider, key)| {
                    connect
                        .rest()
                        .and_then(|rest| keys::set(&rest, &provider, &key))
                })
            }
            KeysCommand::List => connect.rest().and_then(|rest| keys::list(&rest)),
            KeysCommand::Delete { provider } => connect
                .rest()
                .and_then(|rest| keys::delete(&rest, &provider)),
        },
        Command::Apps { connect, format } => {
            connect.rest().and_then(|rest| apps::run(&rest, format))
        }
        Command::Search { args, connect } => {
            connect.rest().and_then(|rest| search::run(&rest, &args))
        }
        Command::Tree { args } => tree::run(&args),
        Command::State {
            db,
            connect,
            action,
        } => state::run(
            db.as_deref(),
            state::Reach {
                splunkrc: connect.splunkrc.as_deref(),
                insecure: connect.insecure,
            },
            action.unwrap_or(state::Action::Stats),
        ),
        Command::Sigma { action } => match action {
            SigmaCommand::Check { dirs } => sigma::check(&dirs),
            SigmaCommand::Install { source, app_dir } => {
                sigma::install(&source, app_dir.as_deref())
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::ended_by_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sysmonenrich: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Connect {
    /// Reads the `.splunkrc` and connects (logging in when it has to).
    fn rest(&self) -> anyhow::Result<crate::splunk::Client> {
        let rc = splunkrc::SplunkRc::load(self.splunkrc.as_deref())?;
        connect::connect(&rc, self.insecure)
    }
}

fn options(list: &[String]) -> anyhow::Result<Options> {
    args::parse(list, &Options::default()).map_err(|problems| anyhow::anyhow!(problems.join("\n")))
}
