//! The time budget, retries of transient failures, and degradation: a slow,
//! hanging or failing provider (or state store) never holds a search
//! beyond its budget and never fails it.

mod common;

use common::services as common_http;

use common_http::reputation::{self as fake, files, key, search, settings};
use common_http::{FakeServer, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysmonenrich::reputation::{
    ApiKey, ApiKeys, MemoryStore, ReputationStore, SearchOptions, Service, Settings, Verdict,
};

const VT_KEY: &str = "vt-budget-key-77";

fn vt_keys() -> ApiKeys {
    let mut k = ApiKeys::new();
    k.insert("virustotal", ApiKey::new(VT_KEY));
    k
}

fn build(s: Settings, opts: SearchOptions, store: Arc<MemoryStore>) -> Service {
    Service::builder(s, opts, store)
        .keys(vt_keys())
        .build()
        .unwrap()
}

fn with_budget(providers: &[&str], budget: Duration) -> SearchOptions {
    let mut o = search(providers);
    o.lookup_budget = budget;
    o
}

#[test]
fn a_hanging_provider_costs_at_most_the_budget() {
    let vt = FakeServer::start(|_| Response::hang());
    let mut s = settings(Some(&vt), None, None);
    s.request_timeout = Duration::from_secs(30);
    let store = Arc::new(MemoryStore::new());
    let mut svc = build(
        s,
        with_budget(&["virustotal"], Duration::from_secs(2)),
        store.clone(),
    );
    let hashes: Vec<String> = (0..3).map(fake::sha256).collect();

    let started = Instant::now();
    let answers = svc.lookup_chunk(&files(&hashes));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    for a in answers.values() {
        assert_eq!(a.verdict, Verdict::Pending);
        assert_eq!(a.error.as_deref(), Some("timeout"));
    }
    assert_eq!(store.pending().len(), 3);
    assert!(store.pending().iter().all(|e| e.reason == "timeout"));
    assert_eq!(svc.budget_left(), Duration::ZERO);

    // The budget is for the whole search: the next chunk does not wait.
    let requests = vt.count();
    let started = Instant::now();
    let more = svc.lookup_chunk(&files(&[fake::sha256(9)]));
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(
        more[&key(&fake::sha256(9))].error.as_deref(),
        Some("timeout")
    );
    assert_eq!(vt.count(), requests);
    let s = svc.summary();
    assert_eq!(s.pending_timeout, 4);
    assert!(
        s.to_string().contains("pending (quota 0, timeout 4)"),
        "{s}"
    );
}

#[test]
fn one_hanging_provider_does_not_hide_the_others_answers() {
    let vt = FakeServer::start(|_| Response::hang());
    let h = fake::sha256(1);
    let hl = fake::hashlookup(vec![(
        h.clone(),
        Response::json(200, fake::circl_record("kernel32.dll", None)),
    )]);
    let store = Arc::new(MemoryStore::new());
    let mut svc = build(
        settings(Some(&vt), Some(&hl), None),
        with_budget(&["hashlookup", "virustotal"], Duration::from_millis(800)),
        store.clone(),
    );
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::KnownGood);
    assert_eq!(a.sources, ["hashlookup"]);
    // VirusTotal still has to be asked: the hash is queued, and counted.
    assert_eq!(store.pending().len(), 1);
    assert_eq!(svc.summary().queued, 1);
}

#[test]
fn slow_answers_within_the_budget_are_waited_for() {
    let h = fake::sha256(2);
    let vt = fake::virustotal(
        VT_KEY,
        vec![(
            h.clone(),
            Response::json(200, fake::vt_file(&h, 9, 60, "x")).delayed(Duration::from_millis(300)),
        )],
    );
    let store = Arc::new(MemoryStore::new());
    let mut svc = build(
        settings(Some(&vt), None, None),
        with_budget(&["virustotal"], Duration::from_secs(2)),
        store,
    );
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::Malicious);
    let left = svc.budget_left();
    assert!(
        left < Duration::from_millis(1750) && left > Duration::ZERO,
        "{left:?}"
    );
}

#[test]
fn request_timeouts_are_retried_then_pending_timeout() {
    let vt = FakeServer::start(|_| Response::hang());
    let mut s = settings(Some(&vt), None, None);
    s.request_timeout = Duration::from_millis(300);
    s.max_retries = 1;
    let store = Arc::new(MemoryStore::new());
    let mut svc = build(
        s,
        with_budget(&["virustotal"], Duration::from_secs(3)),
        store.clone(),
    );
    let h = fake::sha256(3);
    let started = Instant::now();
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(vt.count(), 2);
    assert_eq!(
        (a.verdict, a.error.as_deref()),
        (Verdict::Pending, Some("timeout"))
    );
    assert_eq!(store.pending()[0].reason, "timeout");
}

#[test]
fn server_errors_are_retried_and_may_recover() {
    let calls = AtomicUsize::new(0);
    let h = fake::sha256(4);
    let body = fake::vt_file(&h, 0, 70, "");
    let vt = FakeServer::start(move |_| match calls.fetch_add(1, Ordering::SeqCst) {
        0 => Response::json(503, r#"{"error":{"code":"TransientError","message":"m"}}"#),
        1 => Response::close(),
        _ => Response::json(200, body.clone()),
    });
    let mut s = settings(Some(&vt), None, None);
    s.max_retries = 3;
    let store = Arc::new(MemoryStore::new());
    let mut svc = build(
        s,
        with_budget(&["virustotal"], Duration::from_secs(3)),
        store,
    );
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::Clean, "{a:?}");
    assert_eq!(vt.count(), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let vt = FakeServer::start(|_| {
        Response::json(
            400,
            r#"{"error":{"code":"InvalidArgumentError","message":"m"}}"#,
        )
    });
    let store = Arc::new(MemoryStore::new());
    let mut svc = build(
        settings(Some(&vt), None, None),
        search(&["virustotal"]),
        store.clone(),
    );
    let h = fake::sha256(5);
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::Error);
    assert_eq!(
        a.error.as_deref(),
        Some("virustotal: http 400 InvalidArgumentError")
    );
    assert_eq!(vt.count(), 1);
    assert!(store.pending().is_empty());
}

#[test]
fn garbage_is_an_error_not_a_crash() {
    let vt = FakeServer::start(|r| {
        if r.last_segment().ends_with('1') {
            Response::garbage()
        } else {
            Response::json(200, "<html>surprise</html>")
        }
    });
    let store = Arc::new(MemoryStore::new());
    let mut svc = build(
        settings(Some(&vt), None, None),
        search(&["virustotal"]),
        store,
    );
    let (a, b) = (fake::sha256(1), fake::sha256(2));
    let answers = svc.lookup_chunk(&files(&[&a, &b]));
    for h in [&a, &b] {
        let ans = &answers[&key(h)];
        assert_eq!(ans.verdict, Verdict::Error, "{ans:?}");
        assert!(
            ans.error.as_deref().unwrap().starts_with("virustotal: "),
            "{ans:?}"
        );
    }
    assert!(answers[&key(&b)]
        .error
        .as_deref()
        .unwrap()
        .contains("unreadable reply"));
}

#[test]
fn a_failing_store_means_no_cache_but_answers_still_come() {
    let h = fake::sha256(6);
    let hl = fake::hashlookup(vec![(
        h.clone(),
        Response::json(200, fake::circl_record("a.dll", None)),
    )]);
    let store = Arc::new(MemoryStore::new());
    store.set_failing(true);
    let mut svc = build(
        settings(None, Some(&hl), None),
        search(&["hashlookup"]),
        store.clone(),
    );
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::KnownGood);
    let s = svc.summary();
    assert!(s.store_errors > 0 && s.is_warning());
    assert!(s.to_string().contains("state store unavailable"), "{s}");
}

#[test]
fn hashes_that_never_get_through_are_given_up_and_counted() {
    let store = Arc::new(MemoryStore::new());
    let stuck = key(&fake::sha256(7)).tagged();
    for _ in 0..3 {
        store.pending_add(&stuck, "timeout", 1).unwrap();
    }
    store.pending_add("sha256:not-a-hash", "quota", 1).unwrap();
    let mut s = settings(None, None, None);
    s.pending_max_attempts = 3;
    let mut svc = Service::builder(s, search(&["hashlookup"]), store.clone())
        .build()
        .unwrap();
    svc.lookup_chunk(&[]);
    assert!(store.pending().is_empty());
    let s = svc.summary();
    assert_eq!(s.queue_dropped, 2);
    assert!(
        s.to_string().contains("queue: 0 resolved, 2 given up"),
        "{s}"
    );
}

#[test]
fn a_queued_hash_that_meets_an_error_stays_queued() {
    let vt = FakeServer::start(|_| Response::json(500, "down"));
    let mut s = settings(Some(&vt), None, None);
    s.max_retries = 0;
    let store = Arc::new(MemoryStore::new());
    let queued = key(&fake::sha256(8)).tagged();
    store.pending_add(&queued, "quota", 1).unwrap();
    let mut svc = build(s, search(&["virustotal"]), store.clone());
    svc.lookup_chunk(&[]);
    assert_eq!(vt.count(), 1);
    let left = store.pending();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].reason.as_str(), left[0].attempts), ("error", 2));
    assert_eq!(svc.summary().queue_resolved, 0);
}
