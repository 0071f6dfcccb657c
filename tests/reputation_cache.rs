//! The persistent cache: reuse across searches, separate TTLs for found
//! and not found (on an injected clock), `refresh=true`, and what is never
//! cached.

mod common;

use common::services as common_http;

use common_http::reputation::{self as fake, files, key, search, settings};
use common_http::{FakeServer, Response};
use std::sync::Arc;
use std::time::Duration;
use sysmonenrich::reputation::{
    ApiKey, ApiKeys, ManualClock, MemoryStore, ReputationStore, Service, Settings, Verdict,
};

const VT_KEY: &str = "vt-cache-key-555";
const MB_KEY: &str = "mb-cache-key-555";
const DAY: Duration = Duration::from_secs(86_400);

fn keys() -> ApiKeys {
    let mut k = ApiKeys::new();
    k.insert("virustotal", ApiKey::new(VT_KEY));
    k.insert("malwarebazaar", ApiKey::new(MB_KEY));
    k
}

struct Setup {
    clock: ManualClock,
    store: Arc<MemoryStore>,
    settings: Settings,
}

impl Setup {
    fn new(vt: &FakeServer) -> Setup {
        let mut s = settings(Some(vt), None, None);
        s.cache_ttl_found = 7 * DAY;
        s.cache_ttl_not_found = DAY;
        s.max_retries = 0;
        Setup {
            clock: ManualClock::new(1_700_000_000_000),
            store: Arc::new(MemoryStore::new()),
            settings: s,
        }
    }

    fn service(&self, providers: &[&str], refresh: bool) -> Service {
        let mut opts = search(providers);
        opts.refresh = refresh;
        Service::builder(self.settings.clone(), opts, self.store.clone())
            .clock(Arc::new(self.clock.clone()))
            .keys(keys())
            .build()
            .unwrap()
    }
}

fn found_and_missing() -> (String, String, FakeServer) {
    let (found, missing) = (fake::sha256(1), fake::sha256(2));
    let vt = fake::virustotal(
        VT_KEY,
        vec![(
            found.clone(),
            Response::json(200, fake::vt_file(&found, 7, 60, "trojan.a")),
        )],
    );
    (found, missing, vt)
}

#[test]
fn a_second_search_over_the_same_hashes_sends_nothing() {
    let (found, missing, vt) = found_and_missing();
    let setup = Setup::new(&vt);
    let first = setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 2);
    assert!(first.values().all(|a| !a.cached));

    setup.clock.advance(Duration::from_secs(3600));
    let mut svc = setup.service(&["virustotal"], false);
    let second = svc.lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 2, "cache hits make no request");
    for h in [&found, &missing] {
        let (a, b) = (&first[&key(h)], &second[&key(h)]);
        assert!(b.cached);
        // Same answer, same check time: it is the first search's answer.
        assert_eq!(
            (a.verdict, a.checked, &a.label, a.detections),
            (b.verdict, b.checked, &b.label, b.detections)
        );
    }
    let s = svc.summary();
    assert_eq!((s.cache_hits, s.looked_up, s.requests), (2, 0, 0));
}

#[test]
fn not_found_expires_on_its_own_shorter_ttl() {
    let (found, missing, vt) = found_and_missing();
    let setup = Setup::new(&vt);
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 2);

    setup.clock.advance(DAY + Duration::from_secs(1));
    let answers = setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 3, "only the not-found answer expired");
    assert_eq!(vt.requests()[2].last_segment(), missing);
    assert!(answers[&key(&found)].cached && !answers[&key(&missing)].cached);

    // Day 6: the renewed not-found expired again; found is still good.
    setup.clock.advance(5 * DAY - Duration::from_secs(1));
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 4);
    assert_eq!(vt.requests()[3].last_segment(), missing);

    // Just past day 7: found expires too.
    setup.clock.advance(DAY + Duration::from_secs(1));
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 6);
}

#[test]
fn refresh_asks_again_and_overwrites() {
    let (found, missing, vt) = found_and_missing();
    let setup = Setup::new(&vt);
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    setup.clock.advance(Duration::from_secs(600));
    let refreshed = setup
        .service(&["virustotal"], true)
        .lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 4);
    assert!(refreshed.values().all(|a| !a.cached));
    let later = setup.clock.clone();
    let entry = setup
        .store
        .cache_get_many("virustotal", &[key(&found).tagged().as_str()], 0)
        .unwrap();
    let checked = entry.values().next().unwrap().checked_at;
    assert_eq!(checked, sysmonenrich::reputation::Clock::now_secs(&later));
    // And the refreshed entries serve the next search.
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    assert_eq!(vt.count(), 4);
}

#[test]
fn server_errors_are_not_cached() {
    let vt = FakeServer::start(|_| Response::json(500, "oops"));
    let setup = Setup::new(&vt);
    let h = fake::sha256(3);
    let a = &setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(
        (a.verdict, a.error.as_deref()),
        (Verdict::Error, Some("virustotal: http 500"))
    );
    assert_eq!(setup.store.cache_len(), 0);
    assert!(
        setup.store.pending().is_empty(),
        "errors are not queued either"
    );
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&h]));
    assert_eq!(vt.count(), 2, "the next search asks again");
}

#[test]
fn an_entry_that_does_not_decode_is_replaced() {
    let (found, _, vt) = found_and_missing();
    let setup = Setup::new(&vt);
    let now = 1_700_000_000;
    setup
        .store
        .cache_put("virustotal", &key(&found).tagged(), "{\"v\":99}", now, 1000)
        .unwrap();
    let a = &setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found]))[&key(&found)];
    assert_eq!(a.verdict, Verdict::Malicious);
    assert_eq!(vt.count(), 1);
    let fresh = setup
        .store
        .cache_get_many("virustotal", &[key(&found).tagged().as_str()], now)
        .unwrap();
    assert!(fresh
        .values()
        .next()
        .unwrap()
        .json
        .contains("\"malicious\""));
}

#[test]
fn a_cached_malicious_answer_saves_the_other_providers_quota() {
    let (found, _, vt) = found_and_missing();
    let mb = fake::malwarebazaar(MB_KEY, vec![]);
    let mut setup = Setup::new(&vt);
    setup.settings.malwarebazaar.base_url = mb.url();
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found]));
    let a = &setup
        .service(&["virustotal", "malwarebazaar"], false)
        .lookup_chunk(&files(&[&found]))[&key(&found)];
    assert_eq!((a.verdict, a.cached), (Verdict::Malicious, true));
    assert_eq!(a.sources, ["virustotal"]);
    assert_eq!((vt.count(), mb.count()), (1, 0));
}

#[test]
fn refresh_asks_once_per_search_not_once_per_chunk() {
    let (found, missing, vt) = found_and_missing();
    let setup = Setup::new(&vt);
    setup
        .service(&["virustotal"], false)
        .lookup_chunk(&files(&[&found, &missing]));
    setup.clock.advance(Duration::from_secs(60));
    let mut svc = setup.service(&["virustotal"], true);
    for _ in 0..3 {
        svc.lookup_chunk(&files(&[&found, &missing]));
    }
    assert_eq!(vt.count(), 4, "2 for the first search, 2 for the refresh");
}

#[test]
fn an_error_is_remembered_for_the_rest_of_the_search() {
    let vt = FakeServer::start(|_| Response::json(503, "busy"));
    let setup = Setup::new(&vt);
    let h = fake::sha256(9);
    let mut svc = setup.service(&["virustotal"], false);
    for _ in 0..3 {
        let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
        assert_eq!(a.error.as_deref(), Some("virustotal: http 503"));
    }
    assert_eq!(
        vt.count(),
        1,
        "later chunks reuse the error instead of asking again"
    );
    assert_eq!(svc.summary().errors, 3);
}
