//! The KV store client (`splunk::kvstore`) against the fake splunkd KV
//! store: the documented calls, splunkd's batch limit, its failures, and
//! no session key anywhere but the `Authorization` header.

mod common;

use common::fake_kvstore::{FakeKvStore, KvMode, MAX_BATCH};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysmonenrich::protocol::metadata::Secret;
use sysmonenrich::splunk::kvstore::KvStore;
use sysmonenrich::splunk::{Client, Method, Target};

const KEY: &str = "kv-session-key-0123456789";

fn kv(fake: &FakeKvStore) -> KvStore {
    let client = Client::new(&Target::new(&fake.uri()))
        .unwrap()
        .with_session_key(&Secret::new(KEY.to_string()));
    KvStore::new(client)
}

fn docs(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"_key": format!("k{i:05}"), "n": i, "hash": format!("{i:064x}")}))
        .collect()
}

#[test]
fn saves_in_batches_of_splunkds_limit_queries_and_deletes() {
    let fake = FakeKvStore::empty();
    fake.expect_key(KEY);
    let kv = kv(&fake);
    assert_eq!(kv.batch_save("c", &docs(2500)).unwrap(), 2500);
    let saves = fake.data_requests("c");
    assert_eq!(saves.len(), 3, "2,500 documents in 3 requests");
    for r in &saves {
        let n = serde_json::from_slice::<Vec<Value>>(&r.body).unwrap().len();
        assert!(n <= MAX_BATCH, "{n}");
        assert_eq!(r.status, 200);
    }
    assert_eq!(fake.docs("c").len(), 2500);
    // Upsert by _key.
    kv.batch_save("c", &[json!({"_key":"k00001","n":-1})])
        .unwrap();
    assert_eq!(fake.docs("c").len(), 2500);

    let q = json!({"$or":[{"_key":"k00001"},{"_key":"k00007"},{"_key":"nope"}]});
    let got = kv.query("c", &q, 0, 0).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["n"], -1);
    let page = kv
        .query("c", &json!({"n":{"$gte":10,"$lt":20}}), 5, 3)
        .unwrap();
    let ns: Vec<i64> = page.iter().map(|d| d["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [13, 14, 15, 16, 17]);
    // Many keys: split into requests of reasonable length, all found.
    let keys: Vec<String> = (0..600).map(|i| format!("k{i:05}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let before = fake.requests().len();
    assert_eq!(kv.query_any("c", "_key", &refs).unwrap().len(), 600);
    let reads = &fake.requests()[before..];
    assert!(reads.len() > 1);
    assert!(reads.iter().all(|r| r.target.len() <= 8200), "long target");

    kv.delete("c", &json!({"n":{"$lt":100}})).unwrap();
    assert_eq!(fake.docs("c").len(), 2400);
    // An empty query (splunkd would empty the collection) is refused
    // before any request.
    let before = fake.requests().len();
    let e = kv.delete("c", &json!({})).unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("empty query"), "{e}");
    assert_eq!(fake.requests().len(), before);
    assert_eq!(fake.docs("c").len(), 2400);

    // The session key is in the header of every request and nowhere else.
    for r in fake.requests() {
        assert_eq!(r.authorization.as_deref(), Some(&*format!("Splunk {KEY}")));
        assert!(!r.target.contains(KEY), "{}", r.target);
        assert!(!String::from_utf8_lossy(&r.body).contains(KEY));
    }
}

#[test]
fn status_reports_readiness_and_roles() {
    let fake = FakeKvStore::empty();
    let kv = kv(&fake);
    let s = kv.status().unwrap();
    assert!(s.ready() && s.shc_member());
    fake.set_server(None, &["search_head"]);
    let s = kv.status().unwrap();
    assert!(!s.ready() && !s.shc_member());
    fake.set_server(Some("ready"), &["search_head"]);
    fake.set_mode(KvMode::NotReady);
    assert!(!kv.status().unwrap().ready());
}

#[test]
fn failures_are_splunk_errors_with_their_status() {
    let fake = FakeKvStore::empty();
    let kv = kv(&fake);
    fake.set_mode(KvMode::ForbidWrites);
    assert!(kv.query("c", &json!({"_key":"x"}), 0, 0).is_ok());
    let e = kv.batch_save("c", &docs(2)).unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(!e.to_string().contains(KEY));
    fake.set_mode(KvMode::Fail(503));
    let e = kv.query("c", &json!({"_key":"x"}), 0, 0).unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert!(e.is_splunkd_failure());
    fake.set_mode(KvMode::Garbage);
    let e = kv.query("c", &json!({"_key":"x"}), 0, 0).unwrap_err();
    assert!(e.to_string().contains("JSON array"), "{e}");
    let e = kv.batch_save("c", &docs(1)).unwrap_err();
    assert!(e.to_string().contains("JSON array"), "{e}");
    fake.set_mode(KvMode::NotReady);
    assert_eq!(
        kv.query("c", &json!({"_key":"x"}), 0, 0)
            .unwrap_err()
            .status(),
        Some(503)
    );
    // The wrong key: 401.
    fake.set_mode(KvMode::Normal);
    fake.expect_key("another");
    let e = kv.query("c", &json!({"_key":"x"}), 0, 0).unwrap_err();
    assert_eq!(e.status(), Some(401));
}

#[test]
fn the_budget_bounds_each_call() {
    let fake = FakeKvStore::empty();
    fake.set_mode(KvMode::Hang);
    let kv = kv(&fake).with_time_left(Arc::new(|| Duration::from_millis(300)));
    let started = Instant::now();
    let e = kv.query("c", &json!({"_key":"x"}), 0, 0).unwrap_err();
    assert!(e.is_splunkd_failure(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Nothing left: no request at all.
    let kv = kv_zero(&fake);
    let before = fake.requests().len();
    assert!(kv.batch_save("c", &docs(1)).is_err());
    assert_eq!(fake.requests().len(), before);
}

fn kv_zero(fake: &FakeKvStore) -> KvStore {
    kv(fake).with_time_left(Arc::new(|| Duration::ZERO))
}

#[test]
fn the_fake_refuses_more_than_splunkds_batch_limit() {
    // The fake keeps splunkd's limit, so the client's split is tested
    // against something that would refuse a bigger batch.
    let fake = FakeKvStore::empty();
    let body = serde_json::to_vec(&docs(MAX_BATCH + 1)).unwrap();
    let client = Client::new(&Target::new(&fake.uri()))
        .unwrap()
        .with_session_key(&Secret::new(KEY.to_string()));
    let r = client
        .call(
            Method::Post,
            "/servicesNS/nobody/sysmonenrich/storage/collections/data/c/batch_save",
            Some(body),
            "test",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("max_documents_per_batch_save"));
    assert!(fake.docs("c").is_empty());
}

mod tier {
    use super::*;
    use sysmonenrich::circuit::Breaker;
    use sysmonenrich::enrich::shared::docs::{SharedProcess, PROCESSES};
    use sysmonenrich::enrich::shared::tier::{SharedTier, MAX_QUEUED_DOCS};
    use sysmonenrich::state::{StoredProcess, Writer};

    fn process(guid: u128, image: &str, sid: &str) -> SharedProcess {
        SharedProcess {
            process: StoredProcess {
                guid,
                parent_guid: Some(1),
                image: image.into(),
                command_line: format!("{image} /x"),
                parent_image: r"C:\Windows\explorer.exe".into(),
                parent_command_line: String::new(),
                host: "WS01".into(),
                time: 1.5,
                md5: None,
                sha1: None,
                sha256: None,
                imphash: None,
                seen_at: 1_700_000_000,
            },
            writer: Writer {
                sid: sid.into(),
                user: "u".into(),
            },
            sigma: vec![],
        }
    }

    fn tier(fake: &FakeKvStore) -> Arc<SharedTier> {
        SharedTier::start(
            kv(fake),
            kv(fake),
            Duration::from_secs(10),
            Arc::new(Breaker::new("kvstore", None, 0)),
        )
    }

    /// `batch_save` replaces by `_key`; the tier must not let a member
    /// rewrite a creation another member stored (the local table's
    /// first-write-wins rule), and need not rewrite an identical one.
    #[test]
    fn the_first_writer_of_a_process_wins() {
        let fake = FakeKvStore::empty();
        let first = process(7, r"C:\a.exe", "first");
        fake.insert(PROCESSES, vec![first.to_doc()]);
        let t = tier(&fake);
        let forged = process(7, r"C:\evil.exe", "second");
        let same = process(7, r"C:\a.exe", "second");
        let new = process(8, r"C:\b.exe", "second");
        t.send(
            PROCESSES,
            vec![forged.to_doc(), same.to_doc(), new.to_doc()],
        );
        t.finish();
        let docs = fake.docs(PROCESSES);
        assert_eq!(docs.len(), 2);
        let stored7 = SharedProcess::from_doc(&docs[0]).unwrap();
        assert_eq!(stored7.writer.sid, "first");
        assert_eq!(stored7.process.image, r"C:\a.exe");
        assert_eq!(SharedProcess::from_doc(&docs[1]).unwrap(), new);
        let saves: Vec<_> = fake
            .data_requests(PROCESSES)
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(saves.len(), 1);
        let body: Vec<Value> = serde_json::from_slice(&saves[0].body).unwrap();
        assert_eq!(body.len(), 1, "only the new process is written");
    }

    #[test]
    fn documents_beyond_the_queue_are_dropped_not_waited_for() {
        let fake = FakeKvStore::empty();
        fake.set_mode(KvMode::Hang);
        let t = tier(&fake);
        let docs: Vec<Value> = (0..MAX_QUEUED_DOCS as u128 + 1)
            .map(|g| process(g + 10, "x", "s").to_doc())
            .collect();
        let started = Instant::now();
        t.send(PROCESSES, docs);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(t.counts().2, MAX_QUEUED_DOCS as u64 + 1);
        assert!(fake.requests().is_empty());
    }
}
