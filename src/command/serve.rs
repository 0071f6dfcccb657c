//! The protocol conversation: getinfo, then execute until EOF.
//!
//! ```text
//! read getinfo ─► parse args ─► reply {type: stateful, required_fields}
//!      └─ then what calls splunkd (keys, cluster size, backfill)
//!      └─ bad args: reply with ERROR messages + finished, exit 1
//! loop: read execute ─► enrich ─► reply {finished: <echo>} + rows
//!      └─ any failure once a request arrived: error reply, exit 1
//! EOF between chunks: exit 0
//! ```

use crate::config::options as args;
use crate::enrich::enricher::Enricher;
use crate::enrich::session::{self, Setup};
use crate::protocol::metadata::{
    to_json, CommandType, ExecuteReply, GetInfoReply, Inspector, Level, SearchInfo,
};
use crate::protocol::{Action, Channel, ProtocolError};
use std::io::{BufRead, Write};

/// How the conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// EOF after the work: exit 0.
    Done,
    /// An error was reported (or could not even be reported): exit non-zero.
    Failed,
}

/// Runs the whole conversation on `input`/`output`.
pub fn serve<R: BufRead, W: Write>(input: R, output: W, config: &Setup) -> Outcome {
    let mut channel = Channel::new(input, output, config.settings.limits);
    let searchinfo = match channel.read_request() {
        Ok(None) => {
            log::info!("stdin closed before getinfo; nothing to do");
            return Outcome::Done;
        }
        Ok(Some((request, _))) if request.action == Action::GetInfo => {
            request.searchinfo.unwrap_or_default()
        }
        Ok(Some((request, _))) => {
            let text = format!(
                "protocol error: the first chunk must be getinfo, got action {:?}",
                request.action
            );
            return fail(&mut channel, &text, Inspector::default());
        }
        Err(e) => return fail_on(&mut channel, e),
    };
    log::info!(
        "search sid={} app={} user={} splunk={} args={:?}",
        searchinfo.sid,
        searchinfo.app,
        searchinfo.username,
        searchinfo.splunk_version,
        searchinfo.args
    );
    let options = match args::parse(&searchinfo.args, &config.settings.options) {
        Ok(o) => o,
        Err(problems) => return refuse(&mut channel, &problems),
    };
    // Only what this host has before the reply: getinfo never waits on
    // splunkd (its fields depend on the options and rules alone).
    let (context, mut warnings) = session::local_context(config, &options, &searchinfo);
    warnings.extend(config.warnings.iter().cloned());
    let state = context.state.clone();
    // Left to the operating system when the search ends (below): the
    // process exits right after, and freeing SigmaHQ's 2,238 compiled
    // rules one allocation at a time cost about 1 % of a search's CPU.
    let rules_at_exit = context.sigma.clone();
    let mut enricher = Enricher::with_context(options.clone(), config.settings.clone(), context);
    let reply = GetInfoReply {
        kind: CommandType::Stateful,
        required_fields: enricher.required_fields(),
        inspector: None,
        finished: None,
        error: None,
    };
    if let Err(e) = channel.reply(&to_json(&reply), b"") {
        log::error!("{e}");
        return Outcome::Failed;
    }
    // splunkd waits for the first chunk's reply now, not for getinfo's.
    let connected = session::connect(config, &options, &searchinfo, state.clone(), &mut warnings);
    enricher.attach(connected.reputation, connected.backfill);
    enricher.attach_shared(connected.shared.clone());
    let outcome = execute_loop(&mut channel, &mut enricher, &searchinfo, warnings);
    enricher.finish();
    if let Some(state) = state.filter(|_| enricher.maintenance_due()) {
        session::maintain(&state, &config.settings);
        if let Some(tier) = &connected.shared {
            crate::enrich::shared::setup::maintain(tier, &state, &config.settings);
        }
    }
    // The rule set holds memory only (no file, thread or lock), so not
    // dropping it skips nothing but the freeing.
    std::mem::forget(rules_at_exit);
    outcome
}

fn execute_loop<R: BufRead, W: Write>(
    channel: &mut Channel<R, W>,
    enricher: &mut Enricher,
    searchinfo: &SearchInfo,
    mut warnings: Vec<String>,
) -> Outcome {
    let mut warned_utf8 = false;
    loop {
        let request = match channel.read_request() {
            Ok(None) => {
                log::info!(
                    "sid={} done: {:?} peak_rss_kb={}",
                    searchinfo.sid,
                    enricher.stats(),
                    crate::logging::peak_rss_kb().unwrap_or(0)
                );
                return Outcome::Done;
            }
            Ok(Some((request, _))) => request,
            Err(e) => return fail_on(channel, e),
        };
        match request.action {
            Action::Execute => {}
            other => {
                let text =
                    format!("protocol error: unexpected action {other:?} (expected execute)");
                return fail(channel, &text, Inspector::default());
            }
        }
        let chunk_no = channel.requests();
        let result = enricher.process_pieces(channel.body());
        let mut inspector = Inspector::default();
        if let Err(e) = result {
            let text = format!("chunk {chunk_no}: {e}");
            return fail(channel, &text, inspector);
        }
        if enricher.stats().non_utf8_chunks > 0 && !warned_utf8 {
            warned_utf8 = true;
            let text =
                "sysmonenrich: some events are not valid UTF-8; they were passed through unchanged";
            log::warn!("{text}");
            inspector.push(Level::Warn, text);
        }
        warnings.extend(enricher.take_warnings());
        for w in warnings.drain(..) {
            inspector.push(Level::Warn, w);
        }
        if request.finished {
            inspector.push(Level::Info, enricher.summary());
            if let Some((warn, text)) = enricher.reputation_summary() {
                inspector.push(if warn { Level::Warn } else { Level::Info }, text);
            }
        }
        let reply = ExecuteReply {
            finished: request.finished,
            inspector: (!inspector.is_empty()).then_some(inspector),
            error: None,
        };
        let (extra, pieces) = enricher.reply();
        if let Err(e) = channel.reply_pieces(&to_json(&reply), &extra, pieces) {
            // splunkd went away (cancelled search): nobody to tell.
            log::warn!("sid={}: {e}", searchinfo.sid);
            return Outcome::Failed;
        }
    }
}

/// getinfo reply refusing to run: every argument problem as an ERROR.
fn refuse<R: BufRead, W: Write>(channel: &mut Channel<R, W>, problems: &[String]) -> Outcome {
    let mut inspector = Inspector::default();
    for p in problems {
        log::warn!("argument error: {p}");
        inspector.push(Level::Error, p.clone());
    }
    let reply = GetInfoReply {
        kind: CommandType::Stateful,
        required_fields: Vec::new(),
        inspector: Some(inspector),
        finished: Some(true),
        error: Some(problems.join("; ")),
    };
    let _ = channel.reply(&to_json(&reply), b"");
    Outcome::Failed
}

fn fail_on<R: BufRead, W: Write>(channel: &mut Channel<R, W>, e: ProtocolError) -> Outcome {
    fail(channel, &e.to_string(), Inspector::default())
}

/// The error reply of SCPV2 §8, when a reply is owed; then exit non-zero.
fn fail<R: BufRead, W: Write>(
    channel: &mut Channel<R, W>,
    text: &str,
    inspector: Inspector,
) -> Outcome {
    log::error!("{text}");
    if channel.reply_owed() {
        let reply = ExecuteReply::fatal(&format!("sysmonenrich: {text}"), inspector);
        // The peer may already be gone (EOF mid-chunk); nothing more to do.
        let _ = channel.reply(&to_json(&reply), b"");
    }
    Outcome::Failed
}
