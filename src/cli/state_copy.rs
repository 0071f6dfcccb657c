//! `sysmonenrich state push` and `state pull`: copying between this search
//! head's database and the app's KV store collections.
//!
//! `push` seeds the shared tier from a search head that ran alone before
//! it joined a cluster: its process table and its unexpired cached
//! answers. `pull` is the reverse, for a new member that should not start
//! with an empty near tier.
//!
//! Both keep the trust rules of a search: the first stored creation of a
//! GUID wins, so neither side's process is ever overwritten; a creation
//! that contradicts the other side's is counted as a conflict and left
//! out (and, on pull, recorded in the local conflict table as a search
//! would record it). `pull` reads every document as a search reads the
//! shared tier (`SharedProcess::from_doc`, `SharedAnswer::from_doc`): a
//! document whose fields do not give its digest, or that is otherwise not
//! what the command writes, is refused and counted, never stored. A
//! cached answer replaces the other side's only when it is newer, and
//! expired answers are not copied.

use super::state_shared::{self, key_of, PAGE};
use crate::enrich::shared::docs::{digest_of, SharedAnswer, SharedProcess, PROCESSES, REPUTATION};
use crate::splunk::kvstore::KvStore;
use crate::splunk::SplunkError;
use crate::state::{cap_text, contradictions, CachePut, Conflict, StateStore, Writer};
use crate::sysmon::ProcessGuid;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;

/// Refused documents named on stderr at most (the rest are counted).
const MAX_REFUSED_LINES: usize = 5;

/// Who a pushed process names as its writer when the local table does not
/// know (rows written before writers were recorded).
fn unrecorded() -> Writer {
    Writer {
        sid: "unrecorded".into(),
        user: "unrecorded".into(),
    }
}

/// What one direction of one collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Written to the other side.
    pub copied: u64,
    /// Already there, the same (or, for answers, as new or newer).
    pub present: u64,
    /// Creations that contradict the other side's for the same GUID.
    pub conflicts: u64,
    /// Left out: unreadable or untrusted rows or documents.
    pub refused: u64,
}

/// A page of `collection` after `after`, asking for `limit` documents and
/// halving it while the reply is unreadable: splunkd's reply is read up to
/// 8 MB, and a page of documents with long command lines can be more than
/// that (a cut reply is not JSON). Returns the documents and whether the
/// page was full (more may follow).
fn read_page(
    kv: &KvStore,
    collection: &str,
    query: &Value,
    after: Option<&str>,
    limit: &mut usize,
) -> Result<(Vec<Value>, bool), SplunkError> {
    loop {
        match state_shared::page(kv, collection, query, after, *limit, None) {
            Ok(docs) => {
                let full = docs.len() >= *limit;
                return Ok((docs, full));
            }
            Err(SplunkError::Unreadable { .. }) if *limit > 1 => *limit /= 2,
            Err(e) => return Err(e),
        }
    }
}

fn failed(base: &str) -> impl Fn(SplunkError) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("shared tier (KV store on {base}): {e}")
}

/// `state push`: the local process table and unexpired answers to the KV
/// store.
pub fn push(
    out: &mut impl Write,
    store: &StateStore,
    kv: &KvStore,
    base: &str,
    now: i64,
) -> anyhow::Result<()> {
    state_shared::ensure_ready(kv, base)?;
    let p = push_processes(store, kv, base)?;
    writeln!(
        out,
        "pushed {} process{} to {PROCESSES} ({} already there, {} conflict{}, {} left out: no digest or a digest its fields do not give)",
        p.copied,
        if p.copied == 1 { "" } else { "es" },
        p.present,
        p.conflicts,
        if p.conflicts == 1 { "" } else { "s" },
        p.refused
    )?;
    let a = push_answers(store, kv, base, now)?;
    writeln!(
        out,
        "pushed {} answer{} to {REPUTATION} ({} already there or newer, {} left out)",
        a.copied,
        if a.copied == 1 { "" } else { "s" },
        a.present,
        a.refused
    )?;
    Ok(())
}

fn push_processes(store: &StateStore, kv: &KvStore, base: &str) -> anyhow::Result<Tally> {
    let mut t = Tally::default();
    let mut after = None;
    loop {
        let page = store.processes_page(after, PAGE)?;
        t.refused += page.skipped as u64;
        let guids: Vec<u128> = page.rows.iter().map(|(p, _)| p.guid).collect();
        let writers = store.process_writers(&guids)?;
        let mut sigma = store.process_sigma(&guids)?;
        let mut shared = Vec::with_capacity(page.rows.len());
        for (process, digest) in page.rows {
            // Only rows whose stored digest their fields still give: the
            // shared tier must not launder a row the local table could not
            // vouch for.
            if digest != Some(digest_of(&process)) {
                t.refused += 1;
                continue;
            }
            shared.push(SharedProcess {
                writer: writers
                    .get(&process.guid)
                    .cloned()
                    .unwrap_or_else(unrecorded),
                sigma: sigma.remove(&process.guid).unwrap_or_default(),
                process,
            });
        }
        let keys: Vec<String> = shared
            .iter()
            .map(|s| ProcessGuid::from_u128(s.process.guid).to_string())
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let there: HashMap<String, Value> = kv
            .query_any(PROCESSES, "_key", &refs)
            .map_err(failed(base))?
            .into_iter()
            .filter_map(|d| Some((key_of(&d)?.to_string(), d)))
            .collect();
        let mut docs = Vec::new();
        for (s, key) in shared.iter().zip(&keys) {
            match there.get(key) {
                None => docs.push(s.to_doc()),
                Some(doc) => match SharedProcess::from_doc(doc) {
                    Ok(o) if o.digest() == s.digest() => t.present += 1,
                    Ok(_) => t.conflicts += 1,
                    // A broken document is replaced by a sound one.
                    Err(_) => docs.push(s.to_doc()),
                },
            }
        }
        t.copied += kv.batch_save(PROCESSES, &docs).map_err(failed(base))? as u64;
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(t),
        }
    }
}

fn push_answers(store: &StateStore, kv: &KvStore, base: &str, now: i64) -> anyhow::Result<Tally> {
    let mut t = Tally::default();
    let mut after: Option<(String, String)> = None;
    loop {
        let page = store.cache_page(
            after.as_ref().map(|(p, k)| (p.as_str(), k.as_str())),
            now,
            PAGE,
        )?;
        let Some(last) = page.last() else {
            return Ok(t);
        };
        after = Some((last.provider.clone(), last.key.clone()));
        let mut answers = Vec::with_capacity(page.len());
        for a in page {
            let answer = SharedAnswer {
                provider: a.provider,
                key: a.key,
                json: a.entry.json,
                checked: a.entry.checked_at,
                expires: a.entry.expires_at,
            };
            // What a reader would refuse is not written.
            if SharedAnswer::from_doc(&answer.to_doc()).is_err() {
                t.refused += 1;
                continue;
            }
            answers.push(answer);
        }
        let keys: Vec<String> = answers.iter().map(SharedAnswer::doc_key).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let there: HashMap<String, i64> = kv
            .query_any(REPUTATION, "_key", &refs)
            .map_err(failed(base))?
            .iter()
            .filter_map(|d| SharedAnswer::from_doc(d).ok())
            .map(|a| (a.doc_key(), a.checked))
            .collect();
        let docs: Vec<Value> = answers
            .iter()
            .zip(&keys)
            .filter(|(a, k)| match there.get(*k) {
                Some(checked) if *checked >= a.checked => {
                    t.present += 1;
                    false
                }
                _ => true,
            })
            .map(|(a, _)| a.to_doc())
            .collect();
        t.copied += kv.batch_save(REPUTATION, &docs).map_err(failed(base))? as u64;
    }
}

/// `state pull`: the KV store's processes and unexpired answers into the
/// local database.
pub fn pull(
    out: &mut impl Write,
    store: &StateStore,
    kv: &KvStore,
    base: &str,
    now: i64,
    command_line_cap: usize,
) -> anyhow::Result<()> {
    state_shared::ensure_ready(kv, base)?;
    let mut refused_lines = 0;
    let mut refused = |key: &str, why: &str| {
        if refused_lines < MAX_REFUSED_LINES {
            eprintln!("sysmonenrich: warning: refused the KV store document {key:?}: {why}");
        }
        refused_lines += 1;
    };
    let p = pull_processes(store, kv, base, now, command_line_cap, &mut refused)?;
    writeln!(
        out,
        "pulled {} process{} from {PROCESSES} ({} already here, {} conflict{}, {} refused)",
        p.copied,
        if p.copied == 1 { "" } else { "es" },
        p.present,
        p.conflicts,
        if p.conflicts == 1 { "" } else { "s" },
        p.refused
    )?;
    let a = pull_answers(store, kv, base, now, &mut refused)?;
    writeln!(
        out,
        "pulled {} answer{} from {REPUTATION} ({} already here or newer, {} refused)",
        a.copied,
        if a.copied == 1 { "" } else { "s" },
        a.present,
        a.refused
    )?;
    Ok(())
}

fn pull_processes(
    store: &StateStore,
    kv: &KvStore,
    base: &str,
    now: i64,
    cap: usize,
    refused: &mut impl FnMut(&str, &str),
) -> anyhow::Result<Tally> {
    let mut t = Tally::default();
    let mut after: Option<String> = None;
    let mut writer_ids: HashMap<Writer, i64> = HashMap::new();
    let mut limit = PAGE;
    loop {
        let (docs, full) = read_page(kv, PROCESSES, &json!({}), after.as_deref(), &mut limit)
            .map_err(failed(base))?;
        let next = docs.last().and_then(key_of).map(str::to_string);
        let mut shared = Vec::with_capacity(docs.len());
        for doc in &docs {
            match SharedProcess::from_doc(doc) {
                Ok(mut s) => {
                    // Bounded as the local table bounds what searches write.
                    let p = &mut s.process;
                    p.command_line =
                        cap_text(std::mem::take(&mut p.command_line).into(), cap).into_owned();
                    p.parent_command_line =
                        cap_text(std::mem::take(&mut p.parent_command_line).into(), cap)
                            .into_owned();
                    shared.push(s);
                }
                Err(why) => {
                    t.refused += 1;
                    refused(key_of(doc).unwrap_or("(no _key)"), &why);
                }
            }
        }
        let guids: Vec<u128> = shared.iter().map(|s| s.process.guid).collect();
        let known = store.known_processes(&guids, i64::MIN)?;
        let mut suspects = Vec::new();
        let mut by_writer: HashMap<Writer, Vec<&SharedProcess>> = HashMap::new();
        for s in &shared {
            match known.get(&s.process.guid) {
                None => by_writer.entry(s.writer.clone()).or_default().push(s),
                Some(Some(d)) if *d != digest_of(&s.process) => suspects.push(s),
                Some(_) => t.present += 1,
            }
        }
        for (writer, list) in &by_writer {
            let id = writer_id(store, &mut writer_ids, writer)?;
            t.copied += store
                .put_process_rows_by(list.iter().map(|s| s.process.as_row()), Some(id))?
                as u64;
        }
        // A digest that differs only by what one side left empty is no
        // contradiction (as for a search); the stored creation stays.
        let contradicting = record(store, &mut writer_ids, &suspects, now)?;
        t.conflicts += contradicting;
        t.present += suspects.len() as u64 - contradicting;
        let sigma: Vec<(u128, i64, &[u64])> = shared
            .iter()
            .filter(|s| !s.sigma.is_empty())
            .map(|s| (s.process.guid, digest_of(&s.process), s.sigma.as_slice()))
            .collect();
        store.put_process_sigma(&sigma)?;
        match next {
            Some(k) if full && after.as_deref() < Some(k.as_str()) => after = Some(k),
            _ => return Ok(t),
        }
    }
}

fn writer_id(
    store: &StateStore,
    ids: &mut HashMap<Writer, i64>,
    writer: &Writer,
) -> anyhow::Result<i64> {
    if let Some(id) = ids.get(writer) {
        return Ok(*id);
    }
    let id = store.writer_id(writer)?;
    ids.insert(writer.clone(), id);
    Ok(id)
}

/// Records the documents that contradict the stored creation of their
/// GUID, as a search records them; returns how many do.
fn record(
    store: &StateStore,
    ids: &mut HashMap<Writer, i64>,
    suspects: &[&SharedProcess],
    now: i64,
) -> anyhow::Result<u64> {
    if suspects.is_empty() {
        return Ok(0);
    }
    let guids: Vec<u128> = suspects.iter().map(|s| s.process.guid).collect();
    let stored = store.get_processes(&guids)?;
    let mut n = 0;
    for s in suspects {
        let Ok(i) = stored.binary_search_by_key(&s.process.guid, |p| p.guid) else {
            continue;
        };
        let fields = contradictions(&stored[i], &s.process.as_row());
        if fields.is_empty() {
            continue;
        }
        n += 1;
        let id = writer_id(store, ids, &s.writer)?;
        store.record_conflicts(
            &[Conflict {
                guid: s.process.guid,
                fields,
                stored_by: None,
            }],
            id,
            now,
        )?;
    }
    Ok(n)
}

fn pull_answers(
    store: &StateStore,
    kv: &KvStore,
    base: &str,
    now: i64,
    refused: &mut impl FnMut(&str, &str),
) -> anyhow::Result<Tally> {
    let mut t = Tally::default();
    let mut after: Option<String> = None;
    let unexpired = json!({ "expires": { "$gt": now } });
    let mut limit = PAGE;
    loop {
        let (docs, full) = read_page(kv, REPUTATION, &unexpired, after.as_deref(), &mut limit)
            .map_err(failed(base))?;
        let next = docs.last().and_then(key_of).map(str::to_string);
        let mut by_provider: HashMap<String, Vec<SharedAnswer>> = HashMap::new();
        for doc in &docs {
            match SharedAnswer::from_doc(doc) {
                Ok(a) if a.expires > now => {
                    by_provider.entry(a.provider.clone()).or_default().push(a)
                }
                Ok(_) => {}
                Err(why) => {
                    t.refused += 1;
                    refused(key_of(doc).unwrap_or("(no _key)"), &why);
                }
            }
        }
        for (provider, answers) in &by_provider {
            let keys: Vec<&str> = answers.iter().map(|a| a.key.as_str()).collect();
            let here = store.cache_get_many(provider, &keys, now)?;
            let puts: Vec<CachePut<'_>> = answers
                .iter()
                .filter(|a| match here.get(&a.key) {
                    Some(e) if e.checked_at >= a.checked => {
                        t.present += 1;
                        false
                    }
                    _ => true,
                })
                .map(|a| CachePut {
                    key: &a.key,
                    json: &a.json,
                    checked_at: a.checked,
                    ttl_secs: a.expires - a.checked,
                })
                .collect();
            t.copied += store.cache_put_many(provider, &puts)? as u64;
        }
        match next {
            Some(k) if full && after.as_deref() < Some(k.as_str()) => after = Some(k),
            _ => return Ok(t),
        }
    }
}
