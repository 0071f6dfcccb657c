//! One hash at one provider: the per-provider limits, the request, and
//! retries with backoff — everything a lookup task does between "this
//! (hash, provider) is not cached" and an [`Outcome`].
//!
//! Order of the gates, and why:
//!
//! 1. the provider's concurrency permit (held across retries: a provider
//!    that struggles gets fewer parallel requests, not more);
//! 2. a key the provider already refused in this search, an open circuit
//!    (the provider is unreachable, see `crate::circuit`), or a quota
//!    pause → answer at once, no request;
//! 3. one of the search's `max_lookups` (given back if no request was
//!    made);
//! 4. per attempt: the shared quota booking, then the pacer, then the
//!    request. Transient failures are retried while the backoff still ends
//!    before the search's deadline.

use super::client::{describe_error, read_reply};
use super::clock::Clock;
use super::keys::{ApiKey, Scrubber};
use super::limit::{Allowance, Ledger, ProviderLimit};
use super::lookup::LookupKey;
use super::providers::HttpProvider;
use super::retry::{Backoff, RetryExt};
use super::settings::Settings;
use super::verdict::{Failure, Outcome, PendingReason};
use crate::circuit::Breaker;
use crate::http::{counts_against_circuit, is_unreachable};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::time::Instant;

/// After a provider answered 429 even after retries, this search leaves it
/// alone for a minute (VirusTotal's quota window) instead of spending a
/// request per remaining hash to hear the same.
const QUOTA_PAUSE_MS: i64 = 60_000;

/// One remote provider of this search.
pub(crate) struct Slot {
    pub(crate) provider: Box<dyn HttpProvider>,
    /// `None` when the provider's circuit was open from the start of the
    /// search: no request will be made, so no client (and no CA store) is
    /// built.
    pub(crate) client: Option<reqwest::Client>,
    pub(crate) limit: ProviderLimit,
    pub(crate) key: Mutex<Option<ApiKey>>,
    /// False when the key must not be sent (plain http to a remote host).
    pub(crate) key_allowed: bool,
    /// Set once the provider refused our key: the rest of the search gets
    /// the same answer without asking again.
    pub(crate) refused: Mutex<Option<Failure>>,
    /// Open once the provider proved unreachable.
    pub(crate) breaker: Breaker,
    /// Lookups that ended in an error this search, for its one WARN.
    pub(crate) failures: Failures,
}

/// The failed lookups of one provider in one search: counted per hash at
/// DEBUG, told once (a provider answering 500 to every hash used to write
/// a WARN per hash: a hundred lines per search saying one thing).
#[derive(Default)]
pub(crate) struct Failures {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Failures {
    fn note(&self, cause: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(cause.chars().take(200).collect());
        }
    }

    /// The one WARN for `provider`, when any lookup failed (once: the
    /// count is taken).
    pub(crate) fn take_warning(&self, provider: &str) -> Option<String> {
        let n = self.count.swap(0, Ordering::Relaxed);
        let cause = self
            .first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        (n > 0).then(|| {
            format!(
                "{provider}: {n} lookup{} failed this search (first: {cause}); those files are marked error",
                if n == 1 { "" } else { "s" }
            )
        })
    }
}

impl Slot {
    pub(crate) fn key(&self) -> Option<ApiKey> {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn refused(&self) -> Option<Failure> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn usable(&self) -> bool {
        !self.provider.needs_key() || self.key().is_some()
    }
}

/// What the lookup tasks share.
pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) slots: Vec<Slot>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ledger: Ledger,
    pub(crate) allowance: Allowance,
    pub(crate) backoff: Backoff,
    pub(crate) scrubber: RwLock<Scrubber>,
    pub(crate) requests: AtomicU64,
}

impl Inner {
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.scrubber
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .scrub(text)
    }
}

/// One hash at one provider: limits, request, retries.
pub(crate) async fn lookup(
    inner: &Inner,
    si: usize,
    hash: LookupKey,
    deadline: Instant,
) -> Outcome {
    let slot = &inner.slots[si];
    // Held across retries: a provider that struggles gets fewer requests.
    let _permit = slot.limit.semaphore.acquire().await;
    if let Some(answer) = gate(inner, slot) {
        return answer;
    }
    let key = slot.key();
    let mut retry = 0;
    let mut sent = false;
    loop {
        if let Err(reason) = book(inner, slot, &hash, deadline).await {
            if !sent {
                inner.allowance.give_back();
            }
            return Outcome::Failed(Failure::Pending(reason));
        }
        sent = true;
        let attempt = attempt(inner, slot, key.as_ref(), &hash).await;
        if attempt.transient && retry < inner.settings.max_retries {
            let delay = inner.backoff.delay(retry, attempt.retry_after);
            if Instant::now() + delay < deadline {
                log::debug!(
                    "{} {hash}: {}; retry {} in {delay:?}",
                    slot.provider.name(),
                    brief(&attempt.outcome, slot.provider.name()),
                    retry + 1
                );
                tokio::time::sleep(delay).await;
                retry += 1;
                continue;
            }
        }
        settle(inner, slot, &hash, &attempt.outcome, retry + 1);
        return attempt.outcome;
    }
}

/// The answers that need no request: a key the provider already refused,
/// a provider found unreachable, a quota pause, `max_lookups` spent.
fn gate(inner: &Inner, slot: &Slot) -> Option<Outcome> {
    if let Some(refused) = slot.refused() {
        return Some(Outcome::Failed(refused));
    }
    if slot.breaker.is_open() {
        if let Some(text) = slot.breaker.take_skip_warning() {
            log::warn!("{}", inner.scrub(&text));
        }
        return Some(Outcome::Failed(Failure::Pending(
            PendingReason::Unreachable,
        )));
    }
    if slot.limit.is_blocked(inner.clock.now_ms()) || !inner.allowance.take() {
        return Some(Outcome::Failed(Failure::Pending(PendingReason::Quota)));
    }
    None
}

/// Books one request: the provider's circuit (another lookup may have
/// opened it during our backoff), the shared quota, then the pacer.
async fn book(
    inner: &Inner,
    slot: &Slot,
    hash: &LookupKey,
    deadline: Instant,
) -> Result<(), PendingReason> {
    let name = slot.provider.name();
    if slot.breaker.is_open() {
        return Err(PendingReason::Unreachable);
    }
    if let Err(reason) = slot
        .limit
        .book(name, &inner.ledger, &*inner.clock, deadline)
        .await
    {
        log::debug!("{name} {hash}: postponed ({})", reason.as_str());
        return Err(reason);
    }
    slot.limit.pace().await;
    Ok(())
}

/// One request and what it says.
struct Attempt {
    outcome: Outcome,
    /// Worth asking again.
    transient: bool,
    retry_after: Option<std::time::Duration>,
}

/// Sends one request. A transport failure counts against the provider's
/// circuit (the WARN when it opens is the only one for it this search);
/// any answer closes it.
async fn attempt(inner: &Inner, slot: &Slot, key: Option<&ApiKey>, hash: &LookupKey) -> Attempt {
    let Some(client) = &slot.client else {
        return Attempt {
            outcome: Outcome::Failed(Failure::Pending(PendingReason::Unreachable)),
            transient: false,
            retry_after: None,
        };
    };
    inner.requests.fetch_add(1, Ordering::Relaxed);
    let reply = match slot.provider.request(client, key, hash).send().await {
        Ok(resp) => read_reply(resp).await,
        Err(e) => Err(e),
    };
    match reply {
        Ok(reply) => {
            let outcome = slot.provider.interpret(hash, &reply);
            // A 5xx or a body that makes no sense says as little as no
            // answer: it counts toward the circuit like a refused
            // connection. Any other answer closes it.
            let broken = if reply.status >= 500 {
                Some(format!("http {}", reply.status))
            } else if let Outcome::Failed(Failure::Error(text)) = &outcome {
                Some(inner.scrub(text))
            } else {
                None
            };
            match broken {
                Some(cause) => count_failure(inner, slot, &cause),
                None => slot.breaker.success(),
            }
            Attempt {
                transient: reply.should_retry(),
                outcome,
                retry_after: reply.retry_after,
            }
        }
        Err(e) if counts_against_circuit(&e) => {
            let cause = inner.scrub(&describe_error(&e));
            count_failure(inner, slot, &cause);
            Attempt {
                outcome: if is_unreachable(&e) {
                    Outcome::Failed(Failure::Pending(PendingReason::Unreachable))
                } else {
                    // Reset after the request, or a body cut off.
                    Outcome::Failed(Failure::Error(cause))
                },
                transient: !is_unreachable(&e) && e.should_retry(),
                retry_after: None,
            }
        }
        Err(e) => Attempt {
            outcome: if e.is_timeout() {
                Outcome::Failed(Failure::Pending(PendingReason::Timeout))
            } else {
                Outcome::Failed(Failure::Error(inner.scrub(&describe_error(&e))))
            },
            transient: e.should_retry(),
            retry_after: None,
        },
    }
}

/// One failure toward the provider's circuit; the WARN when it opens is
/// the only one about the circuit this search.
fn count_failure(inner: &Inner, slot: &Slot, cause: &str) {
    let (_, opened) = slot.breaker.failure(cause, inner.clock.now_secs());
    if let Some(text) = opened {
        log::warn!("{text}");
    }
}

/// Logs the final outcome and remembers what the rest of the search
/// should know: a refused key, a quota pause.
fn settle(inner: &Inner, slot: &Slot, hash: &LookupKey, outcome: &Outcome, attempts: u32) {
    let name = slot.provider.name();
    match outcome {
        Outcome::Failed(f @ Failure::KeyRejected { .. }) => {
            let mut refused = slot.refused.lock().unwrap_or_else(|e| e.into_inner());
            if refused.is_none() {
                log::warn!(
                    "{}; its lookups are skipped for the rest of this search",
                    f.describe(name)
                );
                *refused = Some(f.clone());
            }
        }
        Outcome::Failed(Failure::Pending(PendingReason::Quota)) => {
            log::warn!("{name}: still refused for quota after {attempts} attempts; pausing it");
            slot.limit
                .block_until(inner.clock.now_ms().saturating_add(QUOTA_PAUSE_MS));
        }
        // Its circuit speaks once for the provider; per hash is detail.
        Outcome::Failed(Failure::Pending(PendingReason::Unreachable)) => {
            log::debug!("{name} {hash}: unreachable")
        }
        // Per hash is detail; the provider's one WARN counts them.
        Outcome::Failed(f) => {
            let cause = inner.scrub(&f.describe(name));
            log::debug!("{name} {hash}: {cause} (after {attempts} attempts)");
            slot.failures.note(&cause);
        }
        _ => log::debug!("{name} {hash}: {}", brief(outcome, name)),
    }
}

/// A log-line description of an outcome.
fn brief(outcome: &Outcome, provider: &str) -> String {
    match outcome {
        Outcome::Found(f) => match (f.detections, f.engines) {
            (Some(d), Some(e)) => format!("{} ({d}/{e})", f.verdict),
            _ => f.verdict.to_string(),
        },
        Outcome::NotFound => "not found".into(),
        Outcome::Failed(f) => f.describe(provider),
    }
}
