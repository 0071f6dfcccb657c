//! `sysmonenrich state` and the shared tier: the app's KV store
//! collections on splunkd, reached with the CLI's usual connection
//! (`--splunkrc`, else `~/.splunkrc`; `--insecure`).
//!
//! ```text
//! state stats                   the local tier, then each collection's documents
//! state purge processes --sid   the local rows, then the matching documents
//! state push / pull             (state_copy.rs)
//! ```
//!
//! A person without a `.splunkrc` uses the local tier only: `stats` says
//! in one line that the shared tier was not looked at, and succeeds. With
//! one, a splunkd that cannot be reached is an error like any other
//! connection failure (exit 1), after the local figures are printed.
//!
//! Reading whole collections goes by `_key` ranges (`{"_key":{"$gt":…}}`,
//! sorted by `_key`), not by `skip`: documents written meanwhile would
//! shift a `skip` window and a page would repeat or lose some.

use super::connect;
use super::splunkrc::{self, SplunkRc};
use crate::config::settings::SharedMode;
use crate::enrich::shared::docs::{PROCESSES, REPUTATION};
use crate::enrich::shared::setup::{decide, Decision};
use crate::enrich::shared::tier::purge_processes_by;
use crate::splunk::kvstore::{KvStore, APP_NAMESPACE};
use crate::splunk::{segment, Method, SplunkError};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Documents one read asks for: well under splunkd's default
/// `max_rows_per_query` (50,000), and a page of process documents (command
/// lines up to 32 KB each) stays a few MB.
pub const PAGE: usize = 1000;
/// `_key`s one counting read asks for (nothing else is returned).
const COUNT_PAGE: usize = 10_000;

/// How `state` may reach the KV store.
pub enum Reach {
    /// No `.splunkrc` to read (and none named): the local tier only.
    NotConfigured(PathBuf),
    /// Connected and logged in.
    Connected(Box<KvStore>, String),
}

/// Connects when a `.splunkrc` is named or `~/.splunkrc` exists. A named
/// file that is missing, or a splunkd that refuses, is an error.
pub fn reach(splunkrc: Option<&Path>, insecure: bool) -> anyhow::Result<Reach> {
    if splunkrc.is_none() {
        match splunkrc::default_path() {
            Some(p) if p.exists() => {}
            Some(p) => return Ok(Reach::NotConfigured(p)),
            None => return Ok(Reach::NotConfigured(PathBuf::from("~/.splunkrc"))),
        }
    }
    let rc = SplunkRc::load(splunkrc)?;
    let base = rc.base_url();
    let client = connect::connect(&rc, insecure)
        .map_err(|e| anyhow::anyhow!("shared tier (KV store on {base}): {e:#}"))?;
    Ok(Reach::Connected(Box::new(KvStore::new(client)), base))
}

/// Like [`reach`], but a missing `.splunkrc` is an error too (for `push`
/// and `pull`, which have nothing to do without the KV store).
pub fn require(splunkrc: Option<&Path>, insecure: bool) -> anyhow::Result<(KvStore, String)> {
    match reach(splunkrc, insecure)? {
        Reach::Connected(kv, base) => Ok((*kv, base)),
        Reach::NotConfigured(p) => anyhow::bail!(
            "{} does not exist: the KV store is reached through splunkd; create it with host=, \
             port=, and token= or username= and password= lines (mode 600), or pass --splunkrc PATH",
            p.display()
        ),
    }
}

/// Fails unless splunkd says its KV store is `ready`.
pub fn ensure_ready(kv: &KvStore, base: &str) -> anyhow::Result<()> {
    let status = kv
        .status()
        .map_err(|e| anyhow::anyhow!("shared tier (KV store on {base}): {e}"))?;
    if !status.ready() {
        anyhow::bail!(
            "shared tier (KV store on {base}): not ready (kvStoreStatus {})",
            status.kv_store_status.as_deref().unwrap_or("not reported")
        );
    }
    Ok(())
}

/// One page of `collection` after `after` (by `_key`), matching `query`
/// (an object; `{}` for all), `limit` documents at most, only `fields`
/// when given.
pub fn page(
    kv: &KvStore,
    collection: &str,
    query: &Value,
    after: Option<&str>,
    limit: usize,
    fields: Option<&str>,
) -> Result<Vec<Value>, SplunkError> {
    let query = match after {
        None => query.clone(),
        Some(k) => {
            let range = json!({ "_key": { "$gt": k } });
            if query.as_object().is_some_and(|o| o.is_empty()) {
                range
            } else {
                json!({ "$and": [query, range] })
            }
        }
    };
    let what = format!("reading the KV store collection {collection}");
    let mut path = format!(
        "/{APP_NAMESPACE}/storage/collections/data/{}?output_mode=json&sort=_key&limit={limit}&query={}",
        segment(collection),
        segment(&query.to_string()),
    );
    if let Some(f) = fields {
        path.push_str("&fields=");
        path.push_str(&segment(f));
    }
    let client = kv.client();
    let reply = client.call(Method::Get, &path, None, &what, client.call_timeout())?;
    let reply = client.ok(&what, reply)?;
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(Value::Array(docs)) => Ok(docs),
        _ => Err(SplunkError::Unreadable {
            what,
            base: client.base().to_string(),
            expected: "a JSON array of documents".into(),
        }),
    }
}

/// The `_key` of a document, when it has a text one.
pub fn key_of(doc: &Value) -> Option<&str> {
    doc.get("_key").and_then(Value::as_str)
}

/// How many documents of `collection` match `query` (reads their `_key`s
/// only, [`COUNT_PAGE`] at a time).
pub fn count(kv: &KvStore, collection: &str, query: &Value) -> Result<u64, SplunkError> {
    let mut n = 0u64;
    let mut after: Option<String> = None;
    loop {
        let docs = page(
            kv,
            collection,
            query,
            after.as_deref(),
            COUNT_PAGE,
            Some("_key"),
        )?;
        n += docs.len() as u64;
        let last = docs.last().and_then(key_of).map(str::to_string);
        match last {
            // A page that came back short is the last one; a page whose
            // last key does not move forward would loop for ever.
            Some(k) if docs.len() == COUNT_PAGE && after.as_deref() < Some(k.as_str()) => {
                after = Some(k)
            }
            _ => return Ok(n),
        }
    }
}

/// The shared tier's lines of `state stats`.
pub fn stats(out: &mut impl Write, reach: Reach, mode: SharedMode, now: i64) -> anyhow::Result<()> {
    let (kv, base) = match reach {
        Reach::NotConfigured(p) => {
            writeln!(
                out,
                "shared tier    not looked at: no {} (pass --splunkrc PATH to see the KV store)",
                p.display()
            )?;
            return Ok(());
        }
        Reach::Connected(kv, base) => (kv, base),
    };
    let failed = |e: SplunkError| anyhow::anyhow!("shared tier (KV store on {base}): {e}");
    let status = kv.status().map_err(failed)?;
    let state = status.kv_store_status.as_deref().unwrap_or("not reported");
    let role = if status.shc_member() {
        "a search head cluster member"
    } else {
        "not a cluster member"
    };
    // What the searches of this search head (its app conf) make of it.
    let used = match decide(mode, &status) {
        Decision::Use => "searches here use it".to_string(),
        Decision::Skip(why) => format!("searches here do not: {why}"),
    };
    if !status.ready() {
        writeln!(
            out,
            "shared tier    {base}: KV store {state} ({role}); {used}"
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "shared tier    {base}: KV store ready ({role}); {used}"
    )?;
    let answers = count(&kv, REPUTATION, &json!({})).map_err(failed)?;
    let valid = count(&kv, REPUTATION, &json!({ "expires": { "$gt": now } })).map_err(failed)?;
    writeln!(
        out,
        "  {REPUTATION}  {answers} answer{} ({valid} unexpired)",
        plural(answers)
    )?;
    let processes = count(&kv, PROCESSES, &json!({})).map_err(failed)?;
    writeln!(
        out,
        "  {PROCESSES}   {processes} process{}",
        if processes == 1 { "" } else { "es" }
    )?;
    Ok(())
}

/// Deletes the process documents written by `sid`/`user`; prints how many.
pub fn purge_by(
    out: &mut impl Write,
    reach: Reach,
    sid: Option<&str>,
    user: Option<&str>,
    who: &str,
) -> anyhow::Result<()> {
    let (kv, base) = match reach {
        Reach::NotConfigured(p) => {
            writeln!(
                out,
                "shared tier not purged: no {} (pass --splunkrc PATH to purge the KV store too)",
                p.display()
            )?;
            return Ok(());
        }
        Reach::Connected(kv, base) => (kv, base),
    };
    ensure_ready(&kv, &base)?;
    let n = purge_processes_by(&kv, sid, user)
        .map_err(|e| anyhow::anyhow!("shared tier (KV store on {base}): {e}"))?;
    writeln!(
        out,
        "purged {n} process{} written by {who} from the KV store collection {PROCESSES} on {base}",
        if n == 1 { "" } else { "es" }
    )?;
    Ok(())
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
