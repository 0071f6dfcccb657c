//! Quotas shared by concurrent searches, `max_lookups`, and the pending
//! queue that later searches resolve first.

mod common;

use common::services as common_http;

use common_http::reputation::{self as fake, files, key, search, settings};
use common_http::{FakeServer, Response};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;
use sysmonenrich::reputation::{
    ApiKey, ApiKeys, Clock, ManualClock, MemoryStore, ReputationStore, Service, Settings, Verdict,
};

const VT_KEY: &str = "vt-quota-key-123";
const MINUTE_MS: i64 = 60_000;

fn vt_keys() -> ApiKeys {
    let mut k = ApiKeys::new();
    k.insert("virustotal", ApiKey::new(VT_KEY));
    k
}

/// A fake VirusTotal that knows every file (0 detections) and records a
/// violation whenever a request would be the 5th in a 60-second window of
/// the searches' (virtual) clock.
struct StrictVt {
    server: FakeServer,
    violations: Arc<Mutex<Vec<String>>>,
    hashes: Arc<Mutex<Vec<String>>>,
}

fn strict_vt(clock: ManualClock, per_minute: usize) -> StrictVt {
    let violations = Arc::new(Mutex::new(Vec::new()));
    let hashes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::<i64>::new()));
    let (v, h) = (violations.clone(), hashes.clone());
    let server = FakeServer::start(move |r| {
        let now = clock.now_ms();
        let mut seen = seen.lock().unwrap();
        let in_window = seen.iter().filter(|&&t| t > now - MINUTE_MS).count();
        if in_window >= per_minute {
            v.lock().unwrap().push(format!(
                "request #{} at {now} with {in_window} in the window",
                seen.len() + 1
            ));
            return Response::json(
                429,
                r#"{"error":{"code":"QuotaExceededError","message":"m"}}"#,
            );
        }
        seen.push(now);
        let hash = r.last_segment().to_string();
        h.lock().unwrap().push(hash.clone());
        Response::json(200, fake::vt_file(&hash, 0, 70, ""))
    });
    StrictVt {
        server,
        violations,
        hashes,
    }
}

fn vt_settings(vt: &FakeServer, per_minute: u32, per_day: u32) -> Settings {
    let mut s = settings(Some(vt), None, None);
    s.virustotal.per_minute = per_minute;
    s.virustotal.per_day = per_day;
    s.max_retries = 0;
    s
}

fn service(
    s: Settings,
    store: Arc<dyn ReputationStore>,
    clock: &ManualClock,
    budget: Duration,
    max_lookups: u64,
) -> Service {
    let mut opts = search(&["virustotal"]);
    opts.lookup_budget = budget;
    opts.max_lookups = max_lookups;
    Service::builder(s, opts, store)
        .clock(Arc::new(clock.clone()))
        .keys(vt_keys())
        .build()
        .unwrap()
}

#[test]
fn concurrent_searches_share_the_quota_and_later_searches_drain_the_queue() {
    let clock = ManualClock::new(1_700_000_000_000);
    let vt = strict_vt(clock.clone(), 4);
    let store = Arc::new(MemoryStore::new());
    let searches = 3;
    let per_search = 6;
    let all: Vec<String> = (0..searches * per_search).map(fake::sha256).collect();

    // Three "searches" at once, each with its own runtime and store handle
    // onto the same store.
    let barrier = Arc::new(Barrier::new(searches as usize));
    let threads: Vec<_> = (0..searches)
        .map(|i| {
            let mine: Vec<String> =
                all[(i * per_search) as usize..((i + 1) * per_search) as usize].to_vec();
            let (s, store, clock, barrier) = (
                vt_settings(&vt.server, 4, 500),
                store.clone(),
                clock.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                let mut svc = service(s, store, &clock, Duration::from_secs(2), 1000);
                barrier.wait();
                let answers = svc.lookup_chunk(&files(&mine));
                (answers, svc.summary())
            })
        })
        .collect();
    let mut pending = 0;
    let mut answered = 0;
    for t in threads {
        let (answers, summary) = t.join().unwrap();
        assert_eq!(answers.len(), per_search as usize);
        for a in answers.values() {
            match a.verdict {
                Verdict::Pending => {
                    assert_eq!(a.error.as_deref(), Some("quota"));
                    pending += 1;
                }
                Verdict::Clean => answered += 1,
                v => panic!("unexpected {v}: {a:?}"),
            }
        }
        assert_eq!(summary.pending_quota, summary.queued);
    }
    assert!(
        vt.violations.lock().unwrap().is_empty(),
        "{:?}",
        vt.violations.lock().unwrap()
    );
    assert_eq!(vt.server.count(), 4);
    assert_eq!((answered, pending), (4, 14));
    let queue = store.pending();
    assert_eq!(queue.len(), 14);
    assert!(queue.iter().all(|e| e.reason == "quota"));

    // Later searches (a minute later each) resolve the queue first, four at
    // a time, and remove what they resolved.
    let mut runs = 0;
    while !store.pending().is_empty() {
        runs += 1;
        assert!(runs <= 4, "the queue does not drain: {:?}", store.pending());
        clock.advance(Duration::from_millis(MINUTE_MS as u64 + 1_000));
        let before = vt.server.count();
        let queued_before = store.pending().len();
        let mut svc = service(
            vt_settings(&vt.server, 4, 500),
            store.clone(),
            &clock,
            Duration::from_secs(2),
            1000,
        );
        let answers = svc.lookup_chunk(&[]);
        assert!(
            answers.is_empty(),
            "queued hashes are not rows of this search"
        );
        let sent = vt.server.count() - before;
        assert_eq!(sent, 4.min(queued_before));
        assert_eq!(store.pending().len(), queued_before - sent);
        assert_eq!(svc.summary().queue_resolved, sent as u64);
    }
    assert_eq!(runs, 4);
    assert!(vt.violations.lock().unwrap().is_empty());
    let mut asked = vt.hashes.lock().unwrap().clone();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), 18, "every hash asked exactly once");
    assert_eq!(vt.server.count(), 18);

    // Now everything is cached: a search over all of them sends nothing.
    let mut svc = service(
        vt_settings(&vt.server, 4, 500),
        store.clone(),
        &clock,
        Duration::from_secs(2),
        1000,
    );
    let answers = svc.lookup_chunk(&files(&all));
    assert_eq!(vt.server.count(), 18);
    assert!(answers
        .values()
        .all(|a| a.verdict == Verdict::Clean && a.cached));
    assert_eq!(svc.summary().cache_hits, 18);
}

#[test]
fn max_lookups_leaves_the_rest_pending_quota() {
    let clock = ManualClock::new(1_700_000_000_000);
    let vt = strict_vt(clock.clone(), 1000);
    let store = Arc::new(MemoryStore::new());
    let hashes: Vec<String> = (100..105).map(fake::sha256).collect();
    let mut svc = service(
        vt_settings(&vt.server, 0, 0),
        store.clone(),
        &clock,
        Duration::from_secs(2),
        2,
    );
    let answers = svc.lookup_chunk(&files(&hashes));
    assert_eq!(vt.server.count(), 2);
    let pending: Vec<_> = answers
        .values()
        .filter(|a| a.verdict == Verdict::Pending)
        .collect();
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().all(|a| a.error.as_deref() == Some("quota")));
    // max_lookups is per search: the next chunk gets nothing either.
    let more = svc.lookup_chunk(&files(&[fake::sha256(200)]));
    assert_eq!(more[&key(&fake::sha256(200))].verdict, Verdict::Pending);
    assert_eq!(vt.server.count(), 2);
    let s = svc.summary();
    assert_eq!((s.pending_quota, s.queued, s.requests), (4, 4, 2));
    assert!(
        s.to_string().contains("4 pending (quota 4, timeout 0)"),
        "{s}"
    );
    assert_eq!(store.pending().len(), 4);
}

#[test]
fn queued_hashes_go_before_the_new_chunk() {
    let clock = ManualClock::new(1_700_000_000_000);
    let vt = strict_vt(clock.clone(), 1000);
    let store = Arc::new(MemoryStore::new());
    let (old1, old2) = (fake::sha256(300), fake::sha256(301));
    store.pending_add(&key(&old1).tagged(), "quota", 1).unwrap();
    store
        .pending_add(&key(&old2).tagged(), "timeout", 2)
        .unwrap();
    let mut s = vt_settings(&vt.server, 0, 0);
    s.virustotal.concurrency = 1;
    let mut svc = service(s, store.clone(), &clock, Duration::from_secs(2), 2);
    let new: Vec<String> = vec![fake::sha256(302), fake::sha256(303)];
    let answers = svc.lookup_chunk(&files(&new));
    assert_eq!(*vt.hashes.lock().unwrap(), [old1.clone(), old2.clone()]);
    assert!(answers.values().all(|a| a.verdict == Verdict::Pending));
    let queued: Vec<String> = store.pending().into_iter().map(|e| e.key).collect();
    assert_eq!(queued, [key(&new[0]).tagged(), key(&new[1]).tagged()]);
    assert_eq!(svc.summary().queue_resolved, 2);
}

#[test]
fn daily_quota_blocks_the_provider_for_the_search() {
    let clock = ManualClock::new(1_700_000_000_000);
    let vt = strict_vt(clock.clone(), 1000);
    let store = Arc::new(MemoryStore::new());
    let hashes: Vec<String> = (400..406).map(fake::sha256).collect();
    let mut svc = service(
        vt_settings(&vt.server, 0, 3),
        store.clone(),
        &clock,
        Duration::from_secs(2),
        100,
    );
    let answers = svc.lookup_chunk(&files(&hashes));
    assert_eq!(vt.server.count(), 3);
    assert_eq!(
        answers
            .values()
            .filter(|a| a.verdict == Verdict::Pending)
            .count(),
        3
    );
    // Another search on the same host, the same day: nothing is sent.
    let mut other = service(
        vt_settings(&vt.server, 0, 3),
        store.clone(),
        &clock,
        Duration::from_secs(2),
        100,
    );
    other.lookup_chunk(&files(&[fake::sha256(500)]));
    assert_eq!(vt.server.count(), 3);
}
