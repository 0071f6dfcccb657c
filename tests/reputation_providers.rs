//! Every example body of every provider, served by a fake server, maps to
//! the documented verdict and fields through the whole service (request
//! shape, headers, retries and combination included).

mod common;

use common::services as common_http;

use common_http::reputation::{self as fake, files, key, search, settings};
use common_http::{shared, Response};
use std::collections::HashMap;
use std::sync::Arc;
use sysmonenrich::reputation::{
    Answer, ApiKey, ApiKeys, LocalList, LookupKey, MemoryStore, Service, Settings, Summary, Verdict,
};

const VT_KEY: &str = "vt-test-key-0001";
const MB_KEY: &str = "mb-test-key-0002";

fn keys() -> ApiKeys {
    let mut k = ApiKeys::new();
    k.insert("virustotal", ApiKey::new(VT_KEY));
    k.insert("malwarebazaar", ApiKey::new(MB_KEY));
    k
}

fn run(
    settings: Settings,
    providers: &[&str],
    hexes: &[&str],
) -> (HashMap<LookupKey, Answer>, Summary, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let mut svc = Service::builder(settings, search(providers), store.clone())
        .keys(keys())
        .build()
        .unwrap();
    let answers = svc.lookup_chunk(&files(hexes));
    (answers, svc.summary(), store)
}

fn ok(body: String) -> Response {
    Response::json(200, body)
}

#[test]
fn virustotal_found_bodies_give_counts_label_and_link() {
    let Some(full) = shared::reputation("vt_v3_file_found_full.json") else {
        return;
    };
    let Some(subset) = shared::reputation("vt_v3_file_found_subset.json") else {
        return;
    };
    // The subset is asked by its MD5: the link still names the SHA-256.
    let md5 = "37ece581c10a7a88ee6c666b13807a03";
    let vt = fake::virustotal(
        VT_KEY,
        vec![(fake::VT_SHA256.into(), ok(full)), (md5.into(), ok(subset))],
    );
    let (answers, summary, _) = run(
        settings(Some(&vt), None, None),
        &["virustotal"],
        &[fake::VT_SHA256, md5],
    );
    for hex in [fake::VT_SHA256, md5] {
        let a = &answers[&key(hex)];
        assert_eq!(a.verdict, Verdict::Malicious, "{hex}");
        // 44 malicious; engines = 44 malicious + 0 suspicious + 29
        // undetected + 0 harmless (4 type-unsupported do not count).
        assert_eq!((a.detections, a.engines), (Some(44), Some(73)));
        assert_eq!(a.label.as_deref(), Some("ransomware.hive/recyl"));
        assert_eq!(
            a.link.as_deref(),
            Some(format!("https://www.virustotal.com/gui/file/{}", fake::VT_SHA256).as_str())
        );
        assert_eq!(a.sources, ["virustotal"]);
        assert!(!a.cached && a.error.is_none());
    }
    assert_eq!((summary.looked_up, summary.requests), (2, 2));
    for r in vt.requests() {
        assert_eq!(r.method, "GET");
        assert!(r.path().starts_with("/api/v3/files/"), "{}", r.target);
        assert_eq!(r.header("x-apikey"), Some(VT_KEY));
        assert!(r.header("user-agent").unwrap().starts_with("sysmonenrich/"));
        assert!(!r.target.contains(VT_KEY));
    }
}

#[test]
fn virustotal_not_found_bodies_are_unknown() {
    let Some(docs) = shared::reputation("vt_v3_error_notfound_docs.json") else {
        return;
    };
    let Some(vtpy) = shared::reputation("vt_v3_error_notfound_vtpy_test.json") else {
        return;
    };
    let (a, b) = (fake::sha256(1), fake::sha256(2));
    let vt = fake::virustotal(
        VT_KEY,
        vec![
            (a.clone(), Response::json(404, docs)),
            (b.clone(), Response::json(404, vtpy)),
        ],
    );
    let (answers, _, store) = run(settings(Some(&vt), None, None), &["virustotal"], &[&a, &b]);
    for h in [&a, &b] {
        let ans = &answers[&key(h)];
        assert_eq!(ans.verdict, Verdict::Unknown);
        assert_eq!(ans.sources, ["virustotal"]);
        assert_eq!(ans.error, None);
    }
    // A definitive "not found" is cached (on its own TTL).
    assert_eq!(store.cache_len(), 2);
}

#[test]
fn virustotal_401_is_an_error_naming_the_provider_and_the_key() {
    let Some(_) = shared::reputation("vt_v3_error_authrequired_docs.json") else {
        return;
    };
    // The fake wants another key, so it answers 401 with the docs body.
    let vt = fake::virustotal("the-right-key", vec![]);
    let mut s = settings(Some(&vt), None, None);
    s.virustotal.concurrency = 1;
    let (answers, summary, store) = run(s, &["virustotal"], &[&fake::sha256(1), &fake::sha256(2)]);
    for a in answers.values() {
        assert_eq!(a.verdict, Verdict::Error);
        let e = a.error.as_deref().unwrap();
        assert!(
            e.contains("virustotal") && e.contains("key was rejected"),
            "{e}"
        );
        assert!(e.contains("401"), "{e}");
    }
    // After the refusal the provider is not asked again in this search;
    // errors are neither cached nor queued.
    assert_eq!(vt.count(), 1);
    assert_eq!(summary.errors, 2);
    assert_eq!(store.cache_len(), 0);
    assert!(store.pending().is_empty());
}

#[test]
fn virustotal_429_is_retried_then_pending_quota() {
    let Some(quota) = shared::reputation("vt_v3_error_quota_exceeded_constructed.json") else {
        return;
    };
    let vt = common_http::FakeServer::start(move |_| Response::json(429, quota.clone()));
    let mut s = settings(Some(&vt), None, None);
    s.virustotal.concurrency = 1;
    s.max_retries = 2;
    let (a, b) = (fake::sha256(1), fake::sha256(2));
    let (answers, summary, store) = run(s, &["virustotal"], &[&a, &b]);
    for h in [&a, &b] {
        let ans = &answers[&key(h)];
        assert_eq!(ans.verdict, Verdict::Pending);
        assert_eq!(ans.error.as_deref(), Some("quota"));
    }
    // First hash: 1 + 2 retries; then the provider is paused, so the second
    // hash costs nothing.
    assert_eq!(vt.count(), 3);
    assert_eq!(summary.pending_quota, 2);
    let queued: Vec<String> = store.pending().into_iter().map(|e| e.key).collect();
    assert_eq!(queued.len(), 2);
    assert!(queued.contains(&key(&a).tagged()));
    assert!(store.pending().iter().all(|e| e.reason == "quota"));
    // Backoff waited between attempts.
    let times: Vec<_> = vt.requests().iter().map(|r| r.at).collect();
    assert!(times[2] - times[1] >= times[1] - times[0]);
}

#[test]
fn virustotal_429_then_success_is_an_answer() {
    let served = std::sync::atomic::AtomicUsize::new(0);
    let h = fake::sha256(7);
    let body = fake::vt_file(&h, 3, 60, "trojan.generic");
    let vt = common_http::FakeServer::start(move |_| {
        if served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Response::json(
                429,
                r#"{"error":{"code":"TooManyRequestsError","message":"m"}}"#,
            )
        } else {
            Response::json(200, body.clone())
        }
    });
    let (answers, summary, store) = run(settings(Some(&vt), None, None), &["virustotal"], &[&h]);
    let a = &answers[&key(&h)];
    // 3 detections, under the default threshold of 5.
    assert_eq!(a.verdict, Verdict::Suspicious);
    assert_eq!((a.detections, a.engines), (Some(3), Some(63)));
    assert_eq!(vt.count(), 2);
    assert_eq!(summary.requests, 2);
    assert!(store.pending().is_empty());
}

#[test]
fn hashlookup_example_bodies() {
    let Some(nsrl) = shared::reputation("circl_hashlookup_sha256_found_nsrl_measured.json") else {
        return;
    };
    let Some(km) = shared::reputation("circl_hashlookup_sha256_found_knownmalicious_measured.json")
    else {
        return;
    };
    let Some(nf) = shared::reputation("circl_hashlookup_not_found_404.json") else {
        return;
    };
    let Some(bad) = shared::reputation("circl_hashlookup_bad_format_400.json") else {
        return;
    };
    let Some(old) = shared::reputation("circl_hashlookup_md5_found_readme_2022.json") else {
        return;
    };
    let old_md5 = "8ed4b4ed952526d89899e723f3488de4";
    let (missing, refused) = (fake::sha256(3), fake::sha256(4));
    let hl = fake::hashlookup(vec![
        (fake::EMPTY_SHA256.into(), ok(nsrl)),
        (fake::TEST_SHA256.into(), ok(km)),
        (missing.clone(), Response::json(404, nf)),
        (refused.clone(), Response::json(400, bad)),
        (old_md5.into(), ok(old)),
    ]);
    let (answers, _, _) = run(
        settings(None, Some(&hl), None),
        &["hashlookup"],
        &[
            fake::EMPTY_SHA256,
            fake::TEST_SHA256,
            &missing,
            &refused,
            old_md5,
        ],
    );
    let nsrl = &answers[&key(fake::EMPTY_SHA256)];
    assert_eq!(nsrl.verdict, Verdict::KnownGood);
    assert_eq!(nsrl.label.as_deref(), Some("requires.txt (nsrl_legacy)"));
    assert_eq!(
        nsrl.link.as_deref(),
        Some(
            format!(
                "https://hashlookup.circl.lu/lookup/sha256/{}",
                fake::EMPTY_SHA256
            )
            .as_str()
        )
    );
    assert_eq!(nsrl.sources, ["hashlookup"]);
    // KnownMalicious is never known_good.
    let km = &answers[&key(fake::TEST_SHA256)];
    assert_eq!(km.verdict, Verdict::Suspicious);
    assert_eq!(km.label.as_deref(), Some("KnownMalicious: malshare.com"));
    assert_eq!(answers[&key(&missing)].verdict, Verdict::Unknown);
    let err = &answers[&key(&refused)];
    assert_eq!(err.verdict, Verdict::Error);
    assert!(
        err.error.as_deref().unwrap().starts_with("hashlookup: "),
        "{err:?}"
    );
    let old = &answers[&key(old_md5)];
    assert_eq!(old.verdict, Verdict::KnownGood);
    assert!(old
        .label
        .as_deref()
        .unwrap()
        .starts_with("wow64_microsoft-windows-i..timezones"));
    let paths: Vec<String> = hl.requests().iter().map(|r| r.path().to_string()).collect();
    assert!(
        paths.contains(&format!("/lookup/md5/{old_md5}")),
        "{paths:?}"
    );
    assert!(paths.contains(&format!("/lookup/sha256/{}", fake::EMPTY_SHA256)));
    // No key exists for hashlookup, and none is sent.
    assert!(hl
        .requests()
        .iter()
        .all(|r| r.header("x-apikey").is_none() && r.header("auth-key").is_none()));
}

#[test]
fn malwarebazaar_example_bodies() {
    let Some(tesla) = shared::reputation("malwarebazaar_get_info_ok_agenttesla.json") else {
        return;
    };
    let Some(dridex) = shared::reputation("malwarebazaar_get_info_ok_dridex_signed.json") else {
        return;
    };
    let Some(illegal) = shared::reputation("malwarebazaar_illegal_hash.json") else {
        return;
    };
    let (unknown, bad) = (fake::sha256(5), fake::sha256(6));
    // Dridex is asked by its MD5; the link still names the SHA-256.
    let dridex_md5 = "e614a69d706913376ab2bb20a703dcf5";
    let mb = fake::malwarebazaar(
        MB_KEY,
        vec![
            (fake::MB_AGENTTESLA_SHA256.into(), ok(tesla)),
            (dridex_md5.into(), ok(dridex)),
            (bad.clone(), ok(illegal)),
        ],
    );
    let (answers, _, _) = run(
        settings(None, None, Some(&mb)),
        &["malwarebazaar"],
        &[fake::MB_AGENTTESLA_SHA256, dridex_md5, &unknown, &bad],
    );
    for (hex, label, sha) in [
        (
            fake::MB_AGENTTESLA_SHA256,
            "AgentTesla",
            fake::MB_AGENTTESLA_SHA256,
        ),
        (dridex_md5, "Dridex", fake::MB_DRIDEX_SHA256),
    ] {
        let a = &answers[&key(hex)];
        assert_eq!(a.verdict, Verdict::Malicious);
        assert_eq!(a.label.as_deref(), Some(label));
        assert_eq!(
            a.link,
            Some(format!("https://bazaar.abuse.ch/sample/{sha}/"))
        );
        assert_eq!(a.sources, ["malwarebazaar"]);
        assert_eq!((a.detections, a.engines), (None, None));
    }
    assert_eq!(answers[&key(&unknown)].verdict, Verdict::Unknown);
    let e = &answers[&key(&bad)];
    assert_eq!(e.verdict, Verdict::Error);
    assert!(
        e.error.as_deref().unwrap().contains("illegal_hash"),
        "{e:?}"
    );
    for r in mb.requests() {
        assert_eq!((r.method.as_str(), r.path()), ("POST", "/api/v1/"));
        assert_eq!(r.header("auth-key"), Some(MB_KEY));
        assert_eq!(r.form("query").as_deref(), Some("get_info"));
        assert!(r.form("hash").is_some());
    }
}

#[test]
fn malwarebazaar_auth_key_required_is_a_rejected_key() {
    let Some(_) = shared::reputation("malwarebazaar_auth_key_required_mock.json") else {
        return;
    };
    let mb = fake::malwarebazaar("another-key", vec![]);
    let (answers, _, _) = run(
        settings(None, None, Some(&mb)),
        &["malwarebazaar"],
        &[fake::MB_AGENTTESLA_SHA256],
    );
    let a = &answers[&key(fake::MB_AGENTTESLA_SHA256)];
    assert_eq!(a.verdict, Verdict::Error);
    assert_eq!(
        a.error.as_deref(),
        Some("malwarebazaar: the API key was rejected (auth_key_required)")
    );
}

#[test]
fn combined_answers_follow_the_precedence_and_list_every_source() {
    let (bad, listed_good, listed_bad, nobody) = (
        fake::sha256(10),
        fake::sha256(11),
        fake::sha256(12),
        fake::sha256(13),
    );
    let vt = fake::virustotal(
        VT_KEY,
        vec![(
            bad.clone(),
            ok(fake::vt_file(&bad, 50, 20, "trojan.agent/x")),
        )],
    );
    let hl = fake::hashlookup(vec![(
        bad.clone(),
        ok(fake::circl_record("agent.exe", None)),
    )]);
    let mb = fake::malwarebazaar(MB_KEY, vec![(bad.clone(), ok(fake::mb_ok(&bad, "AgentX")))]);
    let list = LocalList::from_reader(
        format!("hash,verdict,label,comment\n{listed_good},known_good,in-house,\n{listed_bad},malicious,IR-7,\n")
            .as_bytes(),
        "list.csv",
    )
    .unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut svc = Service::builder(
        settings(Some(&vt), Some(&hl), Some(&mb)),
        search(&["local", "hashlookup", "virustotal", "malwarebazaar"]),
        store,
    )
    .keys(keys())
    .local_list(list)
    .build()
    .unwrap();
    let answers = svc.lookup_chunk(&files(&[&bad, &listed_good, &listed_bad, &nobody]));

    // Malicious (VirusTotal, MalwareBazaar) beats hashlookup's known_good;
    // the label comes from the first malicious provider in order, the
    // counts from VirusTotal.
    let a = &answers[&key(&bad)];
    assert_eq!(a.verdict, Verdict::Malicious);
    assert_eq!(a.sources, ["hashlookup", "virustotal", "malwarebazaar"]);
    assert_eq!(a.label.as_deref(), Some("trojan.agent/x"));
    assert_eq!((a.detections, a.engines), (Some(50), Some(70)));
    // The allow list suppresses "unknown".
    let g = &answers[&key(&listed_good)];
    assert_eq!(g.verdict, Verdict::KnownGood);
    assert_eq!(g.label.as_deref(), Some("in-house"));
    assert_eq!(
        g.sources,
        ["local", "hashlookup", "virustotal", "malwarebazaar"]
    );
    // The deny list decides alone: nothing can outrank it, so no request.
    let d = &answers[&key(&listed_bad)];
    assert_eq!(
        (d.verdict, d.sources.clone()),
        (Verdict::Malicious, vec!["local"])
    );
    for server in [&vt, &hl, &mb] {
        assert!(server
            .requests()
            .iter()
            .all(|r| !r.target.contains(listed_bad.as_str())
                && r.form("hash").as_deref() != Some(listed_bad.as_str())));
    }
    // Unknown only because every provider said "not found".
    let n = &answers[&key(&nobody)];
    assert_eq!(n.verdict, Verdict::Unknown);
    assert_eq!(n.sources, ["hashlookup", "virustotal", "malwarebazaar"]);
    let s = svc.summary();
    assert_eq!((s.hashes, s.local, s.looked_up), (4, 1, 3));
    assert_eq!(s.requests, 9);
}

#[test]
fn keyed_provider_without_key_is_skipped_with_a_warning() {
    let hl = fake::hashlookup(vec![]);
    let store = Arc::new(MemoryStore::new());
    let mut svc = Service::builder(
        settings(None, Some(&hl), None),
        search(&["hashlookup", "virustotal"]),
        store,
    )
    .build()
    .unwrap();
    let h = fake::sha256(20);
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::Unknown);
    assert_eq!(a.sources, ["hashlookup"]);
    let w = svc.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("virustotal: no API key"), "{w:?}");

    // Alone, it makes every file an error that says why.
    let mut alone = Service::builder(
        settings(None, None, None),
        search(&["virustotal"]),
        Arc::new(MemoryStore::new()),
    )
    .build()
    .unwrap();
    let a = &alone.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::Error);
    assert_eq!(
        a.error.as_deref(),
        Some("virustotal: no API key configured")
    );
}

#[test]
fn imphash_only_files_get_no_answer_and_duplicates_are_asked_once() {
    let hl = fake::hashlookup(vec![]);
    let h = fake::sha256(30);
    let mut chunk = files(&[&h, &h, &h]);
    chunk.push(sysmonenrich::sysmon::hashes::FileHashes::parse_sysmon(
        b"IMPHASH=272245E2988E1E430500B852C4FB5E18",
    ));
    let store = Arc::new(MemoryStore::new());
    let mut svc = Service::builder(
        settings(None, Some(&hl), None),
        search(&["hashlookup"]),
        store,
    )
    .build()
    .unwrap();
    let answers = svc.lookup_chunk(&chunk);
    assert_eq!(answers.len(), 1);
    assert_eq!(hl.count(), 1);
    assert_eq!(svc.summary().hashes, 1);
}
