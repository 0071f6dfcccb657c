//! API keys from splunkd's credential store (and from a key file), and
//! what happens when they cannot be read.

mod common;

use common::services as common_http;

use common_http::reputation::{self as fake, files, key, search, settings};
use common_http::{FakeServer, Response};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysmonenrich::protocol::metadata::Secret;
use sysmonenrich::reputation::keys::NO_CAPABILITY_WARNING;
use sysmonenrich::reputation::{ApiKeys, MemoryStore, Service, Settings, Verdict};

const SESSION: &str = "session-key-from-getinfo-0123456789";
const VT_KEY: &str = "vt-key-from-splunk-abcdef";
const MB_KEY: &str = "mb-key-from-splunk-abcdef";

fn service(s: Settings, providers: &[&str]) -> Service {
    Service::builder(s, search(providers), Arc::new(MemoryStore::new()))
        .build()
        .unwrap()
}

#[test]
fn keys_from_storage_passwords_go_into_the_provider_headers() {
    let splunkd = fake::splunkd(
        SESSION,
        fake::storage_passwords_body(&[("virustotal", VT_KEY), ("malwarebazaar", MB_KEY)]),
        None,
    );
    let h = fake::sha256(1);
    let vt = fake::virustotal(
        VT_KEY,
        vec![(h.clone(), Response::json(200, fake::vt_file(&h, 0, 70, "")))],
    );
    let mb = fake::malwarebazaar(MB_KEY, vec![]);
    let mut svc = service(
        settings(Some(&vt), None, Some(&mb)),
        &["virustotal", "malwarebazaar"],
    );
    assert_eq!(
        svc.load_splunkd_keys(&splunkd.url(), &Secret::new(SESSION)),
        None
    );
    assert!(svc.warnings().is_empty(), "{:?}", svc.warnings());

    let r = &splunkd.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.path(),
        "/servicesNS/nobody/sysmonenrich/storage/passwords"
    );
    assert_eq!(
        r.query(),
        "output_mode=json&count=0&search=realm%3Dsysmonenrich"
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Splunk {SESSION}").as_str())
    );

    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::Clean);
    assert_eq!(a.sources, ["virustotal", "malwarebazaar"]);
    assert_eq!(vt.requests()[0].header("x-apikey"), Some(VT_KEY));
    assert_eq!(mb.requests()[0].header("auth-key"), Some(MB_KEY));
}

#[test]
fn other_realms_are_ignored_and_a_missing_key_is_a_warning() {
    // The captured body holds another app's credential; only ours counts.
    let splunkd = fake::splunkd(
        SESSION,
        fake::storage_passwords_body(&[("virustotal", VT_KEY)]),
        None,
    );
    let mb = fake::malwarebazaar(MB_KEY, vec![]);
    let mut svc = service(
        settings(None, None, Some(&mb)),
        &["virustotal", "malwarebazaar"],
    );
    assert_eq!(
        svc.load_splunkd_keys(&splunkd.url(), &Secret::new(SESSION)),
        None
    );
    let w = svc.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("malwarebazaar: no API key"), "{w:?}");
    svc.lookup_chunk(&files(&[fake::sha256(2)]));
    assert_eq!(mb.count(), 0, "no key, no request");
}

#[test]
fn without_the_capability_the_user_is_warned_and_hashlookup_still_answers() {
    let splunkd = fake::splunkd(SESSION, String::new(), Some(403));
    let h = fake::sha256(3);
    let hl = fake::hashlookup(vec![(
        h.clone(),
        Response::json(200, fake::circl_record("cmd.exe", None)),
    )]);
    let mut svc = service(
        settings(None, Some(&hl), None),
        &["hashlookup", "virustotal"],
    );
    let warning = svc.load_splunkd_keys(&splunkd.url(), &Secret::new(SESSION));
    assert_eq!(
        warning.as_deref(),
        Some("cannot read API keys: the user lacks the list_storage_passwords capability; key-less providers still run")
    );
    assert_eq!(warning.as_deref(), Some(NO_CAPABILITY_WARNING));
    // One warning for the cause, not one more per keyed provider.
    assert_eq!(svc.warnings(), [NO_CAPABILITY_WARNING]);
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::KnownGood);
    assert_eq!(a.sources, ["hashlookup"]);
}

#[test]
fn a_refused_session_or_an_absent_splunkd_is_a_warning_too() {
    let splunkd = fake::splunkd(SESSION, fake::storage_passwords_body(&[]), None);
    let mut svc = service(settings(None, None, None), &["virustotal"]);
    let w = svc
        .load_splunkd_keys(&splunkd.url(), &Secret::new("stale-session-key"))
        .unwrap();
    assert!(
        w.contains("http 401") && w.ends_with("key-less providers still run"),
        "{w}"
    );
    assert!(!w.contains("stale-session-key"));

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let w = svc
        .load_splunkd_keys(&closed, &Secret::new(SESSION))
        .unwrap();
    assert!(
        w.starts_with("cannot read API keys from splunkd (connection failed"),
        "{w}"
    );

    let w = svc
        .load_splunkd_keys(&splunkd.url(), &Secret::new(""))
        .unwrap();
    assert!(w.contains("no session key"), "{w}");
}

#[test]
fn a_hanging_splunkd_is_bounded_by_the_request_timeout() {
    let splunkd = FakeServer::start(|_| Response::hang());
    let mut s = settings(None, None, None);
    s.request_timeout = Duration::from_millis(400);
    let mut svc = service(s, &["virustotal"]);
    let started = Instant::now();
    let w = svc
        .load_splunkd_keys(&splunkd.url(), &Secret::new(SESSION))
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(w.contains("timed out"), "{w}");
}

#[test]
fn keyless_searches_do_not_ask_splunkd() {
    let splunkd = fake::splunkd(SESSION, fake::storage_passwords_body(&[]), None);
    let mut svc = service(settings(None, None, None), &["local", "hashlookup"]);
    assert_eq!(
        svc.load_splunkd_keys(&splunkd.url(), &Secret::new(SESSION)),
        None
    );
    assert_eq!(splunkd.count(), 0);
}

#[test]
fn cli_key_file_feeds_the_service() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "# sysmonenrich keys\nvirustotal = {VT_KEY}\nbogus line"
    )
    .unwrap();
    let (keys, warnings) = ApiKeys::from_file(file.path()).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(!warnings[0].contains("bogus"));
    let h = fake::sha256(4);
    let vt = fake::virustotal(VT_KEY, vec![]);
    let mut svc = Service::builder(
        settings(Some(&vt), None, None),
        search(&["virustotal"]),
        Arc::new(MemoryStore::new()),
    )
    .keys(keys)
    .build()
    .unwrap();
    assert_eq!(
        svc.lookup_chunk(&files(&[&h]))[&key(&h)].verdict,
        Verdict::Unknown
    );
    assert_eq!(vt.requests()[0].header("x-apikey"), Some(VT_KEY));
}

#[test]
fn the_proxy_password_comes_from_the_credential_store_never_the_conf() {
    // A proxy that answers for the provider and records what it was sent.
    let h = fake::sha256(9);
    let answer = fake::circl_record("cmd.exe", None);
    let proxy = FakeServer::start(move |_| Response::json(200, answer.clone()));
    let splunkd = fake::splunkd(
        SESSION,
        fake::storage_passwords_body(&[("proxy", "store-pass")]),
        None,
    );
    let mut s = settings(None, None, None);
    // Not loopback, so it goes through the proxy (nothing is resolved: the
    // proxy answers).
    s.hashlookup.base_url = "http://hashlookup.example".into();
    let port = proxy.url().rsplit(':').next().unwrap().to_string();
    s.proxy = Some(format!("http://squid:conf-pass@127.0.0.1:{port}"));
    let mut svc = service(s, &["hashlookup"]);
    assert!(svc
        .warnings()
        .iter()
        .any(|w| w.contains("[proxy] url holds a password: it is not used")));
    assert_eq!(
        svc.load_splunkd_keys(&splunkd.url(), &Secret::new(SESSION)),
        None
    );
    let a = &svc.lookup_chunk(&files(&[&h]))[&key(&h)];
    assert_eq!(a.verdict, Verdict::KnownGood);
    let req = &proxy.requests()[0];
    assert!(
        req.target.starts_with("http://hashlookup.example/"),
        "{}",
        req.target
    );
    // base64("squid:store-pass"): the store's password, the conf's user.
    assert_eq!(
        req.header("proxy-authorization"),
        Some("Basic c3F1aWQ6c3RvcmUtcGFzcw==")
    );
    for w in svc.warnings() {
        assert!(!w.contains("conf-pass") && !w.contains("store-pass"), "{w}");
    }
}
