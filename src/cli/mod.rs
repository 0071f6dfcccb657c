//! The command-line face of the engine (DESIGN §5).
//!
//! The same [`crate::command::enrich::Enricher`] that serves splunkd runs
//! here over files, so what an analyst sees at a terminal is what the
//! search bar would show.

mod input;
mod print;

use crate::command::args::{self, Options};
use crate::command::enrich::Enricher;
use clap::{Parser, Subcommand, ValueEnum};
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

fn enrich(
    files: &[PathBuf],
    format: OutFormat,
    chunk: usize,
    opts: &[String],
) -> anyhow::Result<()> {
    let options = options(opts)?;
    let mut enricher = Enricher::new(options, crate::protocol::Limits::default().max_field);
    let stdout = std::io::stdout();
    let mut printer =
        print::Printer::new(format, std::io::BufWriter::new(stdout.lock()), usize::MAX);
    let mut out = Vec::new();
    for file in files {
        let mut run = |body: &Vec<u8>| -> anyhow::Result<()> {
            enricher
                .process(body, &mut out)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            printer.body(&out)
        };
        match input::Format::from_path(file) {
            input::Format::Csv => input::csv_batches(input::open(file)?, chunk, &mut run)?,
            input::Format::JsonLines => input::jsonl_batches(input::open(file)?, chunk, &mut run)?,
            input::Format::Evtx => input::evtx_batches(file, chunk, &mut run)?,
        }
    }
    printer.finish()?;
    eprintln!("{}", crate::command::serve::summary(&enricher));
    if let Some((_, text)) = enricher.reputation_summary() {
        eprintln!("{text}");
    }
    for w in enricher.take_warnings() {
        eprintln!("{w}");
    }
    Ok(())
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
