//! The command-line face of the engine (DESIGN §5).
//!
//! The same [`crate::command::enrich::Enricher`] that serves splunkd runs
//! here over files, so what an analyst sees at a terminal is what the
//! search bar would show.
//!
//! | subcommand | file | what |
//! |---|---|---|
//! | `enrich FILE…` | here, `input.rs`, `print.rs` | CSV / JSON lines / `.evtx` through the engine |
//! | `demo` | here | synthetic events through the engine |
//! | `search 'SPL'` | `search.rs`, `rest.rs` | export search on splunkd, optionally enriched |
//! | `apps` | `apps.rs`, `rest.rs` | apps installed on splunkd |
//! | `keys set/list/delete` | `keys.rs`, `rest.rs` | provider API keys in splunkd's credential store |
//! | `tree GUID FILE…` | `tree.rs` | a process tree a person can read |
//! | `state [stats/purge/check]` | `state.rs` | the state database |
//!
//! Commands that talk to splunkd read `.splunkrc` (`splunkrc.rs`).

mod apps;
mod input;
mod keys;
mod print;
pub mod rest;
pub mod search;
pub mod splunkrc;
pub mod state;
mod tree;

use crate::command::args::{self, Options};
use crate::command::enrich::Enricher;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::io::Write;
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
        /// Rows to print (the summary covers all).
        #[arg(long, default_value_t = 15)]
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
        /// The search, as typed in the search bar (`search ` is added when
        /// it starts with neither `search` nor `|`).
        spl: String,
        /// Earliest time (`-24h`, `-7d@d`, an epoch, an ISO time; empty =
        /// all time).
        #[arg(long, default_value = "-24h", allow_hyphen_values = true)]
        earliest: String,
        /// Latest time.
        #[arg(long, default_value = "now", allow_hyphen_values = true)]
        latest: String,
        /// Stop after this many results (0 = all of them, held in memory).
        #[arg(long, default_value_t = 100)]
        max_rows: usize,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = OutFormat::Csv)]
        format: OutFormat,
        /// Pipe the results through the enrichment (as `| sysmonenrich`).
        #[arg(long)]
        enrich: bool,
        /// Enrichment options as in the search bar, e.g. `max_depth=10`
        /// (with --enrich).
        #[arg(long = "option", short = 'o', value_name = "NAME=VALUE")]
        options: Vec<String>,
        /// Longest the search may run, e.g. `90s`, `10m`.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        connect: Connect,
    },
    /// Show the process tree around one process: its ancestors, the process
    /// and its descendants, with the lineage rules each matches.
    #[command(after_help = "Example:\n  \
sysmonenrich tree '{747F3D96-D6ED-5D31-0000-0010C88A2500}' sysmon.csv.gz more.evtx")]
    Tree {
        /// The ProcessGuid (braces optional, any case).
        guid: String,
        /// Input files: CSV, JSON lines or .evtx (gzip allowed), read whole.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Show whole command lines (default: cut at 120 characters).
        #[arg(long)]
        full: bool,
        /// Levels of descendants to show (default: all).
        #[arg(long)]
        depth: Option<usize>,
        /// A lineage_rules.conf to use instead of the app's or the built-in.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
    },
    /// Statistics and clean-up of the state database (process table,
    /// reputation cache, pending queue, quota ledger).
    #[command(after_help = "Examples:\n  \
sysmonenrich state\n  \
sysmonenrich state purge cache\n  \
sysmonenrich state --db /opt/splunk/var/lib/sysmonenrich/state.db check")]
    State {
        /// The database (default: `[state] path` of the app's conf, else
        /// $SPLUNK_HOME/var/lib/sysmonenrich/state.db, else
        /// ~/.local/state/sysmonenrich/state.db).
        #[arg(long, value_name = "PATH", global = true)]
        db: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<StateCommand>,
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
    /// splunkd is always accepted: Splunk's certificate is self-signed).
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

#[derive(Subcommand, Debug, Clone, Copy)]
enum StateCommand {
    /// Row counts, file size, pending lookups by reason, quota use
    /// (the default).
    Stats,
    /// Empty a table: processes, cache, pending, quota or all.
    Purge {
        /// processes, cache, pending, quota or all.
        #[arg(value_parser = parse_purge)]
        what: crate::state::PurgeTarget,
        /// Shrink the file afterwards (VACUUM; locks the database while it
        /// copies).
        #[arg(long)]
        vacuum: bool,
    },
    /// Run the integrity check (reads the whole file).
    Check,
}

fn parse_purge(s: &str) -> Result<crate::state::PurgeTarget, String> {
    s.parse()
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
        } => enrich(&files, format, chunk, &options),
        Command::Demo { rows, format, show } => demo(rows, format, show),
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
        Command::Search {
            spl,
            earliest,
            latest,
            max_rows,
            format,
            enrich,
            options,
            timeout,
            connect,
        } => connect.rest().and_then(|rest| {
            search::run(
                &rest,
                &search::SearchArgs {
                    spl,
                    earliest,
                    latest,
                    max_rows,
                    format,
                    enrich,
                    options,
                    timeout,
                },
            )
        }),
        Command::Tree {
            guid,
            files,
            full,
            depth,
            rules,
        } => tree::run(&tree::TreeArgs {
            guid,
            files,
            full,
            depth,
            rules,
        }),
        Command::State { db, action } => state::run(
            db.as_deref(),
            match action.unwrap_or(StateCommand::Stats) {
                StateCommand::Stats => state::Action::Stats,
                StateCommand::Purge { what, vacuum } => state::Action::Purge { what, vacuum },
                StateCommand::Check => state::Action::Check,
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sysmonenrich: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Connect {
    /// Reads the `.splunkrc` and connects (logging in when it has to).
    fn rest(&self) -> anyhow::Result<rest::Rest> {
        let rc = splunkrc::SplunkRc::load(self.splunkrc.as_deref())?;
        rest::Rest::connect(&rc, self.insecure)
    }
}

/// `| head` closing our stdout is not an error (ripgrep does the same).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn options(list: &[String]) -> anyhow::Result<Options> {
    args::parse(list, &Options::default()).map_err(|problems| anyhow::anyhow!(problems.join("\n")))
}

/// The engine and the printer of one enrichment run: bodies in, enriched
/// rows on stdout, the summary on stderr. Shared by `enrich` (files) and
/// `search --enrich` (splunkd results).
struct EnrichRun {
    enricher: Enricher,
    printer: print::Printer<std::io::BufWriter<std::io::StdoutLock<'static>>>,
    out: Vec<u8>,
}

/// The per-search context the protocol command builds, for a run outside
/// Splunk: settings from the app folder if there is one, the state database
/// of `sysmonenrich state` (`$SPLUNK_HOME/...` or `~/.local/state/...`),
/// API keys from `SYSMONENRICH_VIRUSTOTAL_KEY` / `SYSMONENRICH_MALWAREBAZAAR_KEY`.
/// Backfill needs a search's splunkd session and is off here.
fn engine(options: &Options) -> Enricher {
    let app_dir = crate::config::settings::app_dir();
    let (mut settings, loaded) = crate::config::settings::Settings::load(app_dir.as_deref());
    for w in &loaded.warnings {
        eprintln!("sysmonenrich: warning: {w}");
    }
    settings.state.path = state::default_db_path(&settings);
    let config = crate::command::serve::ServeConfig {
        settings: settings.clone(),
        app_dir,
        splunk_home: crate::command::splunk_home(),
        warnings: Vec::new(),
    };
    let si = crate::protocol::metadata::SearchInfo::default();
    let (context, warnings) = crate::command::session::context(&config, options, &si);
    for w in warnings {
        eprintln!("{w}");
    }
    Enricher::with_context(options.clone(), settings, context)
}

impl EnrichRun {
    fn new(options: Options, format: OutFormat) -> EnrichRun {
        EnrichRun {
            enricher: engine(&options),
            printer: print::Printer::new(
                format,
                std::io::BufWriter::new(std::io::stdout().lock()),
                usize::MAX,
            ),
            out: Vec::new(),
        }
    }

    /// Enriches and prints one body; `origin` names it in errors.
    fn body(&mut self, origin: &dyn std::fmt::Display, body: &[u8]) -> anyhow::Result<()> {
        self.enricher
            .process(body, &mut self.out)
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        self.printer.body(&self.out)
    }

    /// Flushes the output and prints the summary and warnings on stderr.
    fn finish(mut self) -> anyhow::Result<()> {
        self.printer.finish()?;
        self.enricher.finish();
        eprintln!("{}", crate::command::serve::summary(&self.enricher));
        if let Some((_, text)) = self.enricher.reputation_summary() {
            eprintln!("{text}");
        }
        for w in self.enricher.take_warnings() {
            eprintln!("{w}");
        }
        Ok(())
    }
}

fn enrich(
    files: &[PathBuf],
    format: OutFormat,
    chunk: usize,
    opts: &[String],
) -> anyhow::Result<()> {
    let mut run = EnrichRun::new(options(opts)?, format);
    for file in files {
        let origin = file.display();
        let mut f = |body: &Vec<u8>| run.body(&origin, body);
        match input::Format::from_path(file) {
            input::Format::Csv => input::csv_batches(input::open(file)?, chunk, &mut f)?,
            input::Format::JsonLines => input::jsonl_batches(input::open(file)?, chunk, &mut f)?,
            input::Format::Evtx => input::evtx_batches(file, chunk, &mut f)?,
        }
    }
    run.finish()
}

fn demo(rows: usize, format: OutFormat, show: usize) -> anyhow::Result<()> {
    let mut generator = crate::synth::Generator::new(2026, 4);
    let mut events = Vec::new();
    while events.len() < rows {
        events.push(generator.block(40));
    }
    // Blocks move forward in time; a search returns newest first.
    let events: Vec<_> = events.into_iter().rev().flatten().take(rows).collect();
    let mut body = Vec::new();
    for (i, c) in crate::synth::COLUMNS.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(c.as_bytes());
    }
    body.push(b'\n');
    for e in &events {
        crate::synth::csv_row(&mut body, e);
    }
    let mut enricher = Enricher::new(
        Options::default_offline(),
        crate::protocol::Limits::default().max_field,
    );
    let mut out = Vec::new();
    enricher.process(&body, &mut out)?;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    writeln!(
        lock,
        "sysmonenrich demo: {rows} generated Sysmon events from 4 hosts, newest first, as a search would return them\n"
    )?;
    let mut printer = print::Printer::new(format, std::io::BufWriter::new(lock), show);
    printer.body(&out)?;
    printer.finish()?;
    println!("\n{}", crate::command::serve::summary(&enricher));
    Ok(())
}
