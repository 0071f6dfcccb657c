//! One hash at one provider: the per-provider limits, the request, and
//! retries with backoff — everything a lookup task does between "this
//! (hash, provider) is not cached" and an [`Outcome`].
//!
//! Order of the gates, and why:
//!
//! 1. the provider's concurrency permit (held across retries: a provider
//!    that struggles gets fewer parallel requests, not more);
//! 2. a key the provider already refused in this search, or a quota pause
//!    → answer at once, no request;
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
    pub(crate) client: reqwest::Client,
    pub(crate) limit: ProviderLimit,
    pub(crate) key: Mutex<Option<ApiKey>>,
    /// Set once the provider refused our key: the rest of the search gets
    /// the same answer without asking again.
    pub(crate) refused: Mutex<Option<Failure>>,
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
    let name = slot.provider.name();
    // Held across retries: a provider that struggles gets fewer requests.
    let _permit = slot.limit.semaphore.acquire().await;
    if let Some(refused) = slot.refused() {
        return Outcome::Failed(refused);
    }
    if slot.limit.is_blocked(inner.clock.now_ms()) || !inner.allowance.take() {
        return Outcome::Failed(Failure::Pending(PendingReason::Quota));
    }
    let key = slot.key();
    let mut retry = 0;
    let mut sent = false;
    loop {
        if let Err(reason) = slot
            .limit
            .book(name, &inner.ledger, &*inner.clock, deadline)
            .await
        {
            if !sent {
                inner.allowance.give_back();
            }
            log::debug!("{name} {hash}: postponed ({})", reason.as_str());
            return Outcome::Failed(Failure::Pending(reason));
        }
        slot.limit.pace().await;
        sent = true;
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let reply = match slot
            .provider
            .request(&slot.client, key.as_ref(), &hash)
            .send()
            .await
        {
            Ok(resp) => read_reply(resp).await,
            Err(e) => Err(e),
        };
        let (transient, outcome, retry_after) = match reply {
            Ok(reply) => (
                reply.should_retry(),
                slot.provider.interpret(&hash, &reply),
                reply.retry_after,
            ),
            Err(e) => {
                let outcome = if e.is_timeout() {
                    Outcome::Failed(Failure::Pending(PendingReason::Timeout))
                } else {
                    Outcome::Failed(Failure::Error(inner.scrub(&describe_error(&e))))
                };
                (e.should_retry(), outcome, None)
            }
        };
        if transient && retry < inner.settings.max_retries {
            let delay = inner.backoff.delay(retry, retry_after);
            if Instant::now() + delay < deadline {
                log::debug!(
                    "{name} {hash}: {}; retry {} in {delay:?}",
                    brief(&outcome, name),
                    retry + 1
                );
                tokio::time::sleep(delay).await;
                retry += 1;
                continue;
            }
        }
        match &outcome {
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
                log::warn!(
                    "{name}: still refused for quota after {} attempts; pausing it",
                    retry + 1
                );
                slot.limit
                    .block_until(inner.clock.now_ms().saturating_add(QUOTA_PAUSE_MS));
            }
            Outcome::Failed(f) => log::warn!(
                "{name} {hash}: {} (after {} attempts)",
                inner.scrub(&f.describe(name)),
                retry + 1
            ),
            _ => log::debug!("{name} {hash}: {}", brief(&outcome, name)),
        }
        return outcome;
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
