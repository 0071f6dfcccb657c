//! The lookup service: one per search, called once per chunk from the
//! synchronous protocol loop.
//!
//! ```text
//! lookup_chunk(&[FileHashes])
//!   │ 1. distinct LookupKeys of the chunk (on the first call, the queued
//!   │    hashes of earlier searches go first)
//!   │ 2. local list      — a deny-list hit ends the lookup for that file
//!   │ 3. cache           — per provider; with refresh=true only answers
//!   │                      written since this search started count
//!   │ 4. providers       — the rest, concurrently, on the service's own
//!   │                      runtime, under per-provider limits, all inside
//!   │                      one deadline = what is left of lookup_budget
//!   │ 5. combine         — one Answer per file (combine.rs)
//!   │ 6. write back      — cache the answers, queue the postponed hashes,
//!   ▼                      unqueue the resolved ones, count for summary()
//! HashMap<LookupKey, Answer>
//! ```
//!
//! Why a runtime of its own: the protocol loop blocks on stdin and splunkd
//! waits for each reply, so there is nothing to overlap outside a chunk;
//! inside one, dozens of lookups should overlap. A current-thread runtime
//! driven by `block_on` gives exactly that (mini-redis's blocking client).
//! Store calls (SQLite) are made outside the async part, except the quota
//! booking, which must happen right before each request and therefore runs
//! on tokio's blocking pool.
//!
//! Why a deadline around the whole batch and not only per request: a
//! provider that accepts the connection and never answers would otherwise
//! hold the chunk for `request_timeout × (1 + max_retries)`. The batch
//! deadline is the remaining `lookup_budget`; what is not done by then
//! becomes `pending(timeout)` and is queued. Only time spent waiting on the
//! network counts against the budget (cache-only chunks are free).

use super::cache;
use super::client::{check_base_url, provider_client, proxy_has_password};
use super::clock::{Clock, SystemClock};
use super::combine::combine;
use super::error::ServiceError;
use super::fetch::{lookup, Inner, Slot};
use super::keys::{fetch_from_splunkd, ApiKeys, Scrubber, REALM};
use super::limit::{Allowance, Ledger, ProviderLimit};
use super::lookup::LookupKey;
use super::providers::local::LocalList;
use super::providers::remote;
use super::retry::Backoff;
use super::settings::{SearchOptions, Settings};
use super::store::ReputationStore;
use super::summary::Summary;
use super::verdict::{Answer, Failure, Outcome, PendingReason, ProviderResult, Verdict};
use crate::circuit::{Breaker, CircuitLedger};
use crate::protocol::metadata::Secret;
use crate::splunk::is_loopback;
use crate::sysmon::hashes::FileHashes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Errors remembered per search (see `Service::failed`); beyond this many
/// a repeated hash is simply asked again.
const FAILED_MEMO: usize = 10_000;

/// Builds a [`Service`].
pub struct ServiceBuilder {
    settings: Settings,
    search: SearchOptions,
    store: Arc<dyn ReputationStore>,
    clock: Arc<dyn Clock>,
    keys: ApiKeys,
    local: Option<LocalList>,
    circuits: Option<Arc<dyn CircuitLedger>>,
}

impl ServiceBuilder {
    /// Where providers found unreachable are remembered across searches
    /// (the state database); without it a circuit lasts one search.
    pub fn circuits(mut self, ledger: Arc<dyn CircuitLedger>) -> ServiceBuilder {
        self.circuits = Some(ledger);
        self
    }

    /// Uses `clock` for cache expiry, the quota ledger and the queue
    /// (tests move it forward instead of sleeping).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> ServiceBuilder {
        self.clock = clock;
        self
    }

    /// API keys known up front (the CLI's environment or key file).
    pub fn keys(mut self, keys: ApiKeys) -> ServiceBuilder {
        self.keys = keys;
        self
    }

    /// A local list already loaded (instead of `settings.local_list`).
    pub fn local_list(mut self, list: LocalList) -> ServiceBuilder {
        self.local = Some(list);
        self
    }

    /// Starts the runtime and the HTTP clients, loads the local list.
    pub fn build(self) -> Result<Service, ServiceError> {
        let ServiceBuilder {
            settings,
            search,
            store,
            clock,
            keys,
            local,
            circuits,
        } = self;
        let names = provider_names(&search, &settings)?;
        let mut warnings = Vec::new();
        let local = local_list(&names, local, &settings, &mut warnings);
        let slots = provider_slots(&names, &settings, circuits, &*clock, &mut warnings)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServiceError::Runtime)?;
        let scrubber = proxy_scrubber(&settings, &mut warnings);
        let started_at = clock.now_secs();
        let inner = Inner {
            backoff: Backoff {
                base: settings.retry_base_delay,
                max: settings.retry_max_delay,
            },
            allowance: Allowance::new(search.max_lookups),
            ledger: Ledger::new(store.clone()),
            settings,
            slots,
            clock,
            scrubber: RwLock::new(scrubber),
            requests: AtomicU64::new(0),
        };
        let mut service = Service {
            runtime: Some(runtime),
            inner: Arc::new(inner),
            store,
            local,
            budget_left: search.lookup_budget,
            search,
            queue_checked: false,
            started_at,
            refreshed: Default::default(),
            failed: HashMap::new(),
            summary: Summary::default(),
            warnings,
            keys_unreadable: false,
        };
        service.set_keys(keys);
        Ok(service)
    }
}

/// The search's providers, lower-cased, each once, in the order asked; an
/// unknown name fails the search before anything starts.
fn provider_names(
    search: &SearchOptions,
    settings: &Settings,
) -> Result<Vec<String>, ServiceError> {
    let mut names: Vec<String> = Vec::new();
    for p in &search.providers {
        let p = p.trim().to_ascii_lowercase();
        if p != "local" && settings.provider(&p).is_none() {
            return Err(ServiceError::UnknownProvider(p));
        }
        if !names.contains(&p) {
            names.push(p);
        }
    }
    Ok(names)
}

/// The local list when the search asks for `local`: the one handed in, or
/// the one `settings.local_list` names. A list that will not load, or has
/// bad rows, costs a warning, not the search.
fn local_list(
    names: &[String],
    given: Option<LocalList>,
    settings: &Settings,
    warnings: &mut Vec<String>,
) -> Option<LocalList> {
    let use_local = names.iter().any(|n| n == "local");
    let local = match (use_local, given, &settings.local_list) {
        (false, _, _) => None,
        (true, Some(list), _) => Some(list),
        (true, None, Some(path)) => match LocalList::from_path(path) {
            Ok(list) => Some(list),
            Err(e) => {
                let text = format!("local reputation list not used: {e}");
                log::warn!("{text}");
                warnings.push(text);
                None
            }
        },
        (true, None, None) => None,
    };
    if let Some(list) = &local {
        if !list.problems().is_empty() {
            warnings.push(format!(
                "local reputation list: {} bad rows skipped (see sysmonenrich.log)",
                list.problems().len()
            ));
        }
    }
    local
}

/// One slot per remote provider: its circuit, its HTTP client (none while
/// the circuit is open), its limits, and whether its key may be sent.
fn provider_slots(
    names: &[String],
    settings: &Settings,
    circuits: Option<Arc<dyn CircuitLedger>>,
    clock: &dyn Clock,
    warnings: &mut Vec<String>,
) -> Result<Vec<Slot>, ServiceError> {
    let mut slots = Vec::new();
    // One client per distinct configuration: loopback targets bypass
    // proxies, plain http needs no CA store, everything else shares one
    // client (and one pool).
    let mut clients: HashMap<(bool, bool), reqwest::Client> = HashMap::new();
    for name in names.iter().filter(|n| *n != "local") {
        let (Some(provider), Some(ps)) = (remote(name, settings), settings.provider(name)) else {
            return Err(ServiceError::UnknownProvider(name.clone()));
        };
        check_base_url(provider.name(), &ps.base_url)?;
        let loopback = is_loopback(&ps.base_url);
        let breaker = Breaker::new(provider.name(), circuits.clone(), clock.now_secs());
        let plain = ps.base_url.starts_with("http:");
        let client = match clients.get(&(loopback, plain)) {
            _ if breaker.is_open() => None,
            Some(c) => Some(c.clone()),
            None => {
                let c = provider_client(settings, &ps.base_url, None)?;
                clients.insert((loopback, plain), c.clone());
                Some(c)
            }
        };
        // Issue 12: a key never crosses the network in clear.
        let key_allowed = !provider.needs_key()
            || loopback
            || reqwest::Url::parse(&ps.base_url).is_ok_and(|u| u.scheme() == "https");
        if !key_allowed {
            let text = format!(
                "{name}: base_url is plain http to a remote host; its API key is not sent there, so its lookups are skipped (use https)"
            );
            log::warn!("{text}");
            warnings.push(text);
        }
        slots.push(Slot {
            provider,
            client,
            limit: ProviderLimit::new(ps),
            key: Mutex::new(None),
            key_allowed,
            refused: Mutex::new(None),
            breaker,
            failures: Default::default(),
        });
    }
    Ok(slots)
}

/// What must never reach a log from the proxy URL (its password), and a
/// warning when the conf holds one at all.
fn proxy_scrubber(settings: &Settings, warnings: &mut Vec<String>) -> Scrubber {
    let mut scrubber = Scrubber::default();
    if let Some(password) = settings
        .proxy
        .as_deref()
        .and_then(|p| reqwest::Url::parse(p).ok())
        .and_then(|u| u.password().map(str::to_string))
    {
        scrubber.add(&password);
    }
    if settings.proxy.as_deref().is_some_and(proxy_has_password) {
        let text = "sysmonenrich.conf [proxy] url holds a password: it is not used (a .conf file is no place for one); store it in splunkd's credential store, realm sysmonenrich, user proxy".to_string();
        log::warn!("{text}");
        warnings.push(text);
    }
    scrubber
}

/// Hash reputation for one search. Not for use inside an async context:
/// it drives its own runtime.
pub struct Service {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Arc<Inner>,
    store: Arc<dyn ReputationStore>,
    local: Option<LocalList>,
    search: SearchOptions,
    budget_left: Duration,
    queue_checked: bool,
    /// Epoch seconds when the search started: with `refresh`, cache
    /// entries older than this are ignored, newer ones (written by this
    /// search's earlier chunks, or a concurrent search) are used, so a hash
    /// is refreshed once per search, not once per chunk.
    started_at: i64,
    /// (provider, key) answered by this search itself: with `refresh`, an
    /// entry written in the very second the search started is only fresh
    /// when it is one of these (seconds are too coarse to tell).
    refreshed: std::collections::HashSet<(&'static str, String)>,
    /// Provider errors of this search by (slot, hash). Errors are not
    /// cached, so without this a hash that fails at a provider would be
    /// asked again in every chunk it appears in, hammering a failing
    /// service; the retries already happened.
    failed: HashMap<(usize, LookupKey), Failure>,
    summary: Summary,
    warnings: Vec<String>,
    /// The credential store could not be read: that one warning explains
    /// every missing key.
    keys_unreadable: bool,
}

/// One file of a chunk (or of the queue) on its way through the stages.
struct Work {
    key: LookupKey,
    file: FileHashes,
    in_chunk: bool,
    from_queue: bool,
    local: Option<ProviderResult>,
    /// By slot index; `None` = not asked.
    results: Vec<Option<ProviderResult>>,
    /// Nothing can change the verdict any more (a malicious answer).
    settled: bool,
}

impl Work {
    fn new(key: LookupKey, file: FileHashes, slots: usize) -> Work {
        Work {
            key,
            file,
            in_chunk: false,
            from_queue: false,
            local: None,
            results: vec![None; slots],
            settled: false,
        }
    }

    fn settle_if_malicious(&mut self) {
        self.settled =
            self.local.iter().chain(self.results.iter().flatten()).any(
                |r| matches!(&r.outcome, Outcome::Found(f) if f.verdict == Verdict::Malicious),
            );
    }
}

/// The hashes a queue key stands for.
fn file_of(key: LookupKey) -> FileHashes {
    let mut f = FileHashes::default();
    match key {
        LookupKey::Sha256(d) => f.sha256 = Some(d),
        LookupKey::Sha1(d) => f.sha1 = Some(d),
        LookupKey::Md5(d) => f.md5 = Some(d),
    }
    f
}

impl Service {
    /// A builder with the system clock, no keys, and the local list from
    /// `settings.local_list`.
    pub fn builder(
        settings: Settings,
        search: SearchOptions,
        store: Arc<dyn ReputationStore>,
    ) -> ServiceBuilder {
        ServiceBuilder {
            settings,
            search,
            store,
            clock: Arc::new(SystemClock),
            keys: ApiKeys::new(),
            local: None,
            circuits: None,
        }
    }

    /// Adds API keys (replacing earlier ones of the same provider).
    pub fn set_keys(&mut self, keys: ApiKeys) {
        let mut scrubber = self
            .inner
            .scrubber
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for secret in keys.secrets() {
            scrubber.add(secret);
        }
        drop(scrubber);
        for slot in self.inner.slots.iter().filter(|s| s.key_allowed) {
            if let Some(k) = keys.get(slot.provider.name()) {
                *slot.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(k.clone());
            }
        }
    }

    /// Reads the API keys from splunkd's credential store (realm
    /// `sysmonenrich`, user = provider name) with the search's session key.
    /// Returns a warning for the user when that is not possible (the
    /// key-less providers still run). Call once, before the first chunk.
    pub fn load_splunkd_keys(&mut self, splunkd_uri: &str, session_key: &Secret) -> Option<String> {
        let splunkd = crate::circuit::Breaker::new("splunkd", None, 0);
        self.load_splunkd_keys_counted(splunkd_uri, session_key, &splunkd)
            .0
    }

    /// [`Service::load_splunkd_keys`] as a search does it: within the
    /// short budget of a search's splunkd call, counted against splunkd's
    /// circuit. Returns the warning, and the WARN text when this call
    /// opened the circuit.
    pub fn load_splunkd_keys_counted(
        &mut self,
        splunkd_uri: &str,
        session_key: &Secret,
        splunkd: &crate::circuit::Breaker,
    ) -> (Option<String>, Option<String>) {
        // The store also holds the proxy's password.
        let needs_proxy = self.inner.settings.proxy.is_some();
        if !needs_proxy && !self.inner.slots.iter().any(|s| s.provider.needs_key()) {
            return (None, None);
        }
        self.inner
            .scrubber
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(session_key.expose());
        let (call_timeout, connect_timeout) =
            crate::splunk::client::search_budgets(self.inner.settings.request_timeout);
        let target = crate::splunk::Target {
            insecure_loopback: self.inner.settings.splunkd_insecure_loopback,
            call_timeout,
            connect_timeout,
            ..crate::splunk::Target::new(splunkd_uri)
        };
        let (fetched, opened) = fetch_from_splunkd(&target, session_key, splunkd);
        let warning = match fetched {
            Ok((keys, proxy_password)) => {
                log::info!(
                    "API keys read from splunkd for: {}",
                    keys.providers().collect::<Vec<_>>().join(", ")
                );
                self.set_keys(keys);
                if let Some(password) = proxy_password {
                    self.use_proxy_password(&password);
                }
                None
            }
            Err(w) => Some(self.key_warning(w)),
        };
        (warning, opened)
    }

    /// Instead of [`Service::load_splunkd_keys`] when splunkd is known to
    /// be unreachable (its circuit is open, `why` says until when): no
    /// connection is tried, the user gets the same one warning.
    pub fn splunkd_unreachable(&mut self, why: &str) -> Option<String> {
        if !self.inner.slots.iter().any(|s| s.provider.needs_key()) {
            return None;
        }
        Some(self.key_warning(format!(
            "cannot read API keys: {why}; key-less providers still run"
        )))
    }

    /// Rebuilds the clients that go through `[proxy] url` with the proxy's
    /// password from the credential store. Before the first lookup only
    /// (the clients are shared with no task yet).
    fn use_proxy_password(&mut self, password: &Secret) {
        self.inner
            .scrubber
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(password.expose());
        if self.inner.settings.proxy.is_none() {
            return;
        }
        let Some(inner) = Arc::get_mut(&mut self.inner) else {
            log::debug!("proxy password: lookups already started; not applied");
            return;
        };
        for slot in inner.slots.iter_mut().filter(|s| s.client.is_some()) {
            let Some(ps) = inner.settings.provider(slot.provider.name()) else {
                continue;
            };
            if is_loopback(&ps.base_url) {
                continue;
            }
            match provider_client(&inner.settings, &ps.base_url, Some(password)) {
                Ok(c) => slot.client = Some(c),
                Err(e) => log::warn!(
                    "{}: proxy with password not usable: {e}",
                    slot.provider.name()
                ),
            }
        }
    }

    /// Records (scrubbed) and returns a key-loading warning.
    fn key_warning(&mut self, text: String) -> String {
        self.keys_unreadable = true;
        let text = self.inner.scrub(&text);
        // The engine logs it with the search's other warnings, once.
        log::debug!("{text}");
        self.warnings.push(text.clone());
        text
    }

    /// Things the user should know before the results (a WARN inspector
    /// message each): unreadable key store, keyed providers without a key,
    /// a local list that could not be used or had bad rows.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        let missing = self
            .inner
            .slots
            .iter()
            .filter(|s| !s.usable() && s.key_allowed);
        for slot in missing.filter(|_| !self.keys_unreadable) {
            let name = slot.provider.name();
            out.push(format!(
                "{name}: no API key (store one in storage/passwords, realm {REALM}, user {name}); its lookups are skipped"
            ));
        }
        out
    }

    /// Counts for the per-search inspector line (cumulative over chunks).
    pub fn summary(&self) -> Summary {
        let mut s = self.summary.clone();
        for sample in &mut s.error_samples {
            *sample = self.inner.scrub(sample);
        }
        s.requests = self.inner.requests.load(Ordering::Relaxed);
        s.store_errors += self.inner.ledger.errors.load(Ordering::Relaxed);
        s
    }

    /// The network time this search has left.
    pub fn budget_left(&self) -> Duration {
        self.budget_left
    }

    /// The reputation of every file of a chunk, by its [`LookupKey`] (see
    /// [`LookupKey::from_hashes`] to find a row's answer). Files with only
    /// an IMPHASH (or nothing) get no entry. Never fails and never waits
    /// longer than the remaining `lookup_budget`.
    pub fn lookup_chunk(&mut self, hashes: &[FileHashes]) -> HashMap<LookupKey, Answer> {
        let now = self.inner.clock.now_secs();
        let slots = self.inner.slots.len();
        let mut work: Vec<Work> = Vec::new();
        let mut index: HashMap<LookupKey, usize> = HashMap::new();
        if !self.queue_checked {
            self.queue_checked = true;
            self.take_queue(&mut work, &mut index);
        }
        for h in hashes {
            let Some(key) = LookupKey::from_hashes(h) else {
                continue;
            };
            let i = *index.entry(key).or_insert_with(|| {
                work.push(Work::new(key, FileHashes::default(), slots));
                work.len() - 1
            });
            work[i].file.fill_from(h);
            work[i].in_chunk = true;
        }
        self.summary.hashes += work.iter().filter(|w| w.in_chunk).count() as u64;

        self.check_local(&mut work, now);
        self.check_cache(&mut work, now);
        // Everything not settled and not answered yet goes to the network
        // (or gets NoKey at once: no request can help).
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for (wi, w) in work.iter_mut().enumerate().filter(|(_, w)| !w.settled) {
            for (si, slot) in self.inner.slots.iter().enumerate() {
                if w.results[si].is_some() {
                    continue;
                }
                if let Some(f) = self.failed.get(&(si, w.key)) {
                    w.results[si] =
                        Some(fresh(slot.provider.name(), Outcome::Failed(f.clone()), now));
                } else if slot.usable() {
                    pairs.push((wi, si));
                } else {
                    w.results[si] = Some(fresh(
                        slot.provider.name(),
                        Outcome::Failed(Failure::NoKey),
                        now,
                    ));
                }
            }
        }
        let keys: Vec<(LookupKey, usize)> =
            pairs.iter().map(|&(wi, si)| (work[wi].key, si)).collect();
        for ((wi, si), outcome) in pairs.iter().zip(self.run(&keys)) {
            let name = self.inner.slots[*si].provider.name();
            if let Outcome::Failed(f @ Failure::Error(_)) = &outcome {
                if self.failed.len() < FAILED_MEMO {
                    self.failed.insert((*si, work[*wi].key), f.clone());
                }
            }
            work[*wi].results[*si] = Some(fresh(name, outcome, now));
        }
        self.finish(work, now)
    }

    /// Queued hashes of earlier searches, oldest first, ahead of the chunk.
    fn take_queue(&mut self, work: &mut Vec<Work>, index: &mut HashMap<LookupKey, usize>) {
        let entries = match self.store.pending_take(self.inner.settings.pending_batch) {
            Ok(e) => e,
            Err(e) => {
                self.store_error(&e.to_string());
                return;
            }
        };
        for e in entries {
            let key = LookupKey::parse_tagged(&e.key);
            let give_up = e.attempts >= self.inner.settings.pending_max_attempts;
            match key {
                Some(key) if !give_up => {
                    if let std::collections::hash_map::Entry::Vacant(v) = index.entry(key) {
                        v.insert(work.len());
                        let mut w = Work::new(key, file_of(key), self.inner.slots.len());
                        w.from_queue = true;
                        work.push(w);
                    }
                }
                _ => {
                    log::warn!(
                        "reputation queue: giving up on {} after {} attempts (queued at {}, last reason {})",
                        e.key,
                        e.attempts,
                        e.queued_at,
                        e.reason
                    );
                    self.summary.queue_dropped += 1;
                    if let Err(err) = self.store.pending_remove(&e.key) {
                        self.store_error(&err.to_string());
                    }
                }
            }
        }
    }

    fn check_local(&self, work: &mut [Work], now: i64) {
        let Some(list) = &self.local else {
            return;
        };
        for w in work.iter_mut() {
            if let Some(f) = list.lookup(&w.file) {
                w.local = Some(fresh("local", Outcome::Found(f), now));
                w.settle_if_malicious();
            }
        }
    }

    fn check_cache(&mut self, work: &mut [Work], now: i64) {
        for si in 0..self.inner.slots.len() {
            let name = self.inner.slots[si].provider.name();
            let wanted: Vec<(usize, String)> = work
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.settled)
                .map(|(i, w)| (i, w.key.tagged()))
                .collect();
            if wanted.is_empty() {
                return;
            }
            let keys: Vec<&str> = wanted.iter().map(|(_, k)| k.as_str()).collect();
            let hits = match self.store.cache_get_many(name, &keys, now) {
                Ok(h) => h,
                Err(e) => {
                    self.store_error(&e.to_string());
                    continue;
                }
            };
            for (wi, key) in &wanted {
                let Some(entry) = hits.get(key) else {
                    continue;
                };
                if self.search.refresh
                    && (entry.checked_at < self.started_at
                        || (entry.checked_at == self.started_at
                            && !self.refreshed.contains(&(name, key.clone()))))
                {
                    continue;
                }
                match cache::decode(&entry.json) {
                    Some(outcome) => {
                        work[*wi].results[si] = Some(ProviderResult {
                            provider: name,
                            outcome,
                            checked_at: entry.checked_at,
                            cached: true,
                        });
                        work[*wi].settle_if_malicious();
                    }
                    None => {
                        log::warn!(
                            "{name} {key}: cache entry does not decode; looking it up again"
                        );
                        if let Err(e) = self.store.cache_delete(name, key) {
                            self.store_error(&e.to_string());
                        }
                    }
                }
            }
        }
    }

    /// Runs the lookups `(hash, slot)` concurrently within the remaining
    /// budget; one outcome per pair, in order.
    fn run(&mut self, pairs: &[(LookupKey, usize)]) -> Vec<Outcome> {
        let timeout = Outcome::Failed(Failure::Pending(PendingReason::Timeout));
        let mut out = vec![timeout; pairs.len()];
        let Some(runtime) = self.runtime.as_ref() else {
            return out;
        };
        if pairs.is_empty() || self.budget_left.is_zero() {
            return out;
        }
        let started = std::time::Instant::now();
        let budget = self.budget_left;
        let inner = self.inner.clone();
        runtime.block_on(async {
            let deadline = Instant::now() + budget;
            let mut set = JoinSet::new();
            let mut ids = HashMap::new();
            for (i, &(key, si)) in pairs.iter().enumerate() {
                let inner = inner.clone();
                let handle = set.spawn(async move { (i, lookup(&inner, si, key, deadline).await) });
                ids.insert(handle.id(), i);
            }
            loop {
                match tokio::time::timeout_at(deadline, set.join_next()).await {
                    Ok(Some(Ok((i, outcome)))) => out[i] = outcome,
                    Ok(Some(Err(e))) => {
                        log::error!("reputation lookup task failed: {e}");
                        if let Some(&i) = ids.get(&e.id()) {
                            out[i] = Outcome::Failed(Failure::Error("internal error".into()));
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        log::warn!(
                            "reputation: lookup budget used up with {} lookups unfinished; they are queued",
                            set.len()
                        );
                        set.abort_all();
                        break;
                    }
                }
            }
        });
        self.budget_left = self.budget_left.saturating_sub(started.elapsed());
        out
    }

    /// Combines, caches, (un)queues and counts; returns the chunk's answers.
    fn finish(&mut self, work: Vec<Work>, now: i64) -> HashMap<LookupKey, Answer> {
        let mut answers = HashMap::new();
        let mut to_queue: Vec<(String, &'static str)> = Vec::new();
        for w in work {
            let tagged = w.key.tagged();
            for r in w.results.iter().flatten().filter(|r| !r.cached) {
                if let Some((json, ttl)) = cache::entry(&r.outcome, &self.inner.settings) {
                    if self.search.refresh {
                        self.refreshed.insert((r.provider, tagged.clone()));
                    }
                    if let Err(e) =
                        self.store
                            .cache_put(r.provider, &tagged, &json, r.checked_at, ttl)
                    {
                        self.store_error(&e.to_string());
                    }
                }
            }
            let postponed = w.results.iter().flatten().find_map(|r| match r.outcome {
                Outcome::Failed(Failure::Pending(reason)) => Some(reason),
                _ => None,
            });
            let results: Vec<ProviderResult> = w
                .local
                .into_iter()
                .chain(w.results.into_iter().flatten())
                .collect();
            let mut answer = combine(&results, now);
            // Queue what a provider still has to be asked about. A queued
            // hash leaves the queue only with an answer; one that met an
            // error stays (one more attempt counted, so that a hash that
            // never gets through is eventually given up). A hash of the
            // chunk that met an error is not queued: errors are not cached,
            // so the next search that sees it asks again anyway.
            match postponed {
                Some(reason) => to_queue.push((tagged, reason.as_str())),
                None if w.from_queue && answer.verdict == Verdict::Error => {
                    to_queue.push((tagged, "error"))
                }
                None if w.from_queue => {
                    self.summary.queue_resolved += 1;
                    if let Err(e) = self.store.pending_remove(&tagged) {
                        self.store_error(&e.to_string());
                    }
                }
                None => {}
            }
            if !w.in_chunk {
                continue;
            }
            answer.error = answer.error.map(|e| self.inner.scrub(&e));
            answer.label = answer.label.map(|l| self.inner.scrub(&l));
            self.summary.count(&results, &answer, postponed.is_some());
            answers.insert(w.key, answer);
        }
        let entries: Vec<(&str, &str)> = to_queue.iter().map(|(k, r)| (k.as_str(), *r)).collect();
        if let Err(e) = self.store.pending_add_many(&entries, now) {
            self.store_error(&e.to_string());
        }
        answers
    }

    fn store_error(&mut self, text: &str) {
        if self.summary.store_errors == 0 {
            log::warn!("reputation: {text}; continuing without it (no cache, no queue)");
        }
        self.summary.store_errors += 1;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The search is over: each provider's failures, told once.
        for slot in &self.inner.slots {
            if let Some(text) = slot.failures.take_warning(slot.provider.name()) {
                log::warn!("{}", self.inner.scrub(&text));
            }
        }
        // Aborted lookups and a store call stuck on a lock must not hold the
        // command at exit.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
    }
}

fn fresh(provider: &'static str, outcome: Outcome, now: i64) -> ProviderResult {
    ProviderResult {
        provider,
        outcome,
        checked_at: now,
        cached: false,
    }
}
