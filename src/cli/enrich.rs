//! `enrich FILE…` and the run it shares with `search --enrich`: the
//! protocol command's per-search set-up, built once for a person's run, and
//! a printer for what comes out.

use super::{input, options, output, print, progress, sigma, OutFormat};
use crate::config::options::Options;
use crate::config::paths::Paths;
use crate::enrich::enricher::Enricher;
use crate::enrich::session::{self, Setup};
use std::path::PathBuf;

/// The engine and the printer of one enrichment run: bodies in, enriched
/// rows on stdout, the summary on stderr. Shared by `enrich` (files) and
/// `search --enrich` (splunkd results).
pub(super) struct EnrichRun {
    enricher: Enricher,
    printer: print::Printer<output::Stdout>,
    out: Vec<u8>,
}

/// The per-search context the protocol command builds, for a run outside
/// Splunk: settings from the app folder if there is one, the state database
/// of `sysmonenrich state` (`$SPLUNK_HOME/...` or `~/.local/state/...`),
/// API keys from `SYSMONENRICH_VIRUSTOTAL_KEY` / `SYSMONENRICH_MALWAREBAZAAR_KEY`.
/// Backfill needs a splunkd session: `search --enrich` hands its client
/// over (`backfill`), bounded by the same `[backfill]` settings as the
/// command; `enrich` over files has none.
fn engine(
    options: &Options,
    backfill: Option<crate::splunk::Client>,
    sigma_rules: &[PathBuf],
) -> Enricher {
    let mut setup = Setup::load(Paths::for_person());
    sigma::use_rules(&mut setup, sigma_rules);
    for w in &setup.warnings {
        eprintln!("sysmonenrich: warning: {w}");
    }
    // What the process table records as the writer of this run's rows
    // (`state purge processes --sid cli` takes back what CLI runs wrote).
    let si = crate::protocol::metadata::SearchInfo {
        sid: "cli".into(),
        username: std::env::var("USER").unwrap_or_default(),
        ..Default::default()
    };
    let (mut context, warnings) = session::context(&setup, options, &si);
    for w in warnings {
        eprintln!("{w}");
    }
    if let (Some(client), true) = (backfill, options.lineage && options.backfill) {
        let splunkd = session::splunkd_circuit(context.state.as_ref());
        context.backfill = Some(session::backfill(client, &setup.settings, splunkd));
    }
    Enricher::with_context(options.clone(), setup.settings, context)
}

impl EnrichRun {
    /// A run over files; `sigma` replaces the app's Sigma rule paths.
    fn new(options: Options, format: OutFormat, sigma: &[PathBuf]) -> EnrichRun {
        EnrichRun::build(options, format, None, sigma)
    }

    /// A run whose lineage may search splunkd for missing ancestors.
    pub(super) fn with_backfill(
        options: Options,
        format: OutFormat,
        backfill: Option<crate::splunk::Client>,
    ) -> EnrichRun {
        EnrichRun::build(options, format, backfill, &[])
    }

    fn build(
        options: Options,
        format: OutFormat,
        backfill: Option<crate::splunk::Client>,
        sigma: &[PathBuf],
    ) -> EnrichRun {
        EnrichRun {
            enricher: engine(&options, backfill, sigma),
            printer: print::Printer::new(format, output::stdout(), usize::MAX),
            out: Vec::new(),
        }
    }

    /// Enriches and prints one body; `origin` names it in errors.
    pub(super) fn body(
        &mut self,
        origin: &dyn std::fmt::Display,
        body: &[u8],
    ) -> anyhow::Result<()> {
        self.enricher
            .process(body, &mut self.out)
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        self.printer.body(&self.out)
    }

    /// Flushes the output and prints the summary and warnings on stderr.
    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        self.printer.finish()?;
        self.enricher.finish();
        eprintln!("{}", self.enricher.summary());
        if let Some((_, text)) = self.enricher.reputation_summary() {
            eprintln!("{text}");
        }
        for w in self.enricher.take_warnings() {
            eprintln!("{w}");
        }
        Ok(())
    }
}

/// `enrich FILE…`: every file through one run, in batches of `chunk` rows.
pub(super) fn enrich(
    files: &[PathBuf],
    format: OutFormat,
    chunk: usize,
    opts: &[String],
    sigma: &[PathBuf],
) -> anyhow::Result<()> {
    let mut run = EnrichRun::new(options(opts)?, format, sigma);
    let progress = progress::Progress::for_files(files);
    for file in files {
        let origin = file.display();
        let mut f = |body: &Vec<u8>| {
            run.body(&origin, body)?;
            progress.rows(run.enricher.stats().rows);
            Ok(())
        };
        let open = || input::open_with(file, Some(&progress));
        match input::Format::from_path(file) {
            input::Format::Csv => input::csv_batches(open()?, chunk, &mut f)?,
            input::Format::JsonLines => input::jsonl_batches(open()?, chunk, &mut f)?,
            input::Format::Evtx => {
                input::evtx_batches(file, chunk, &mut f)?;
                progress.file_done(file);
            }
        }
    }
    progress.finish();
    run.finish()
}
