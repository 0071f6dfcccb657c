//! A fake splunkd KV store, with the server info and cluster members a
//! search head cluster member reports, on the same server as
//! [`super::fake_splunkd`]'s export: one fake splunkd that three members
//! (three `SPLUNK_HOME`s) share, as a real cluster shares its replicated
//! KV store.
//!
//! What it answers, as splunkd documents it:
//!
//! - `GET /servicesNS/<owner>/<app>/storage/collections/data/<c>` with
//!   `query=<JSON>` (equality, `$gt`/`$gte`/`$lt`/`$lte`/`$ne`, `$in`,
//!   `$and`, `$or`, `$not`, on any field, `_key` included), `limit`
//!   (0 = all) and `skip`: a JSON array of documents, in `_key` order.
//! - `POST …/data/<c>/batch_save`: a JSON array, upserted by `_key` (a
//!   document without one gets a generated key); more than 1,000
//!   documents (splunkd's default `max_documents_per_batch_save`) are
//!   refused with splunkd's 400 body and nothing is saved. Answers the
//!   array of saved keys.
//! - `DELETE …/data/<c>?query=<JSON>`: deletes the matches (all without a
//!   query, as splunkd does).
//! - `GET /services/server/info`: `kvStoreStatus` and `server_roles`.
//! - `GET /services/shcluster/member/members`: N members.
//!
//! [`KvMode`] switches the data endpoints into the failures a search must
//! survive (not ready, slow, 403 on writes, a 5xx, garbage, hang); server
//! info stays quick (its own status says `starting` when not ready).
//! Every request is recorded with its decoded query and body; with
//! [`FakeKvStore::expect_key`] a request without that session key gets
//! splunkd's 401.

use super::datasets::Table;
use super::fake_splunkd::{FakeSplunkd, Mode, UNAUTHORIZED_BODY};
use super::http::{Request, Response};
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the KV store's data endpoints behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvMode {
    /// Answer at once.
    Normal,
    /// `kvStoreStatus` = `starting`; data calls get 503.
    NotReady,
    /// Every data call waits this long first.
    Slow(Duration),
    /// Reads answer; `batch_save` and `DELETE` get 403.
    ForbidWrites,
    /// Every data call gets this status with splunkd's error body.
    Fail(u16),
    /// Data calls get 200 with a body that is not JSON.
    Garbage,
    /// Data calls never answer (until the server is dropped).
    Hang,
}

/// splunkd's answer to a `batch_save` over its limit.
pub const TOO_MANY_DOCS_BODY: &str = r#"{"messages":[{"type":"ERROR","text":"Request exceeds API limits - see limits.conf for details. (Too many documents for a single batch save, max_documents_per_batch_save=1000)"}]}"#;

/// The batch limit the fake enforces.
pub const MAX_BATCH: usize = 1000;

/// One KV store request as the fake saw it.
#[derive(Clone, Debug)]
pub struct KvRequest {
    /// `GET`, `POST`, `DELETE`.
    pub method: String,
    /// The request target, verbatim.
    pub target: String,
    /// The collection (empty for server info and members).
    pub collection: String,
    /// The decoded `query` parameter, if any.
    pub query: Option<Value>,
    /// The body, verbatim.
    pub body: Vec<u8>,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// When it arrived.
    pub at: Instant,
    /// The status answered (0: never).
    pub status: u16,
}

impl KvRequest {
    /// A write (`batch_save` or `DELETE`).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

struct KvState {
    mode: Mutex<KvMode>,
    key: Mutex<Option<String>>,
    kv_status: Mutex<Option<String>>,
    roles: Mutex<Vec<String>>,
    members: Mutex<usize>,
    collections: Mutex<HashMap<String, BTreeMap<String, Value>>>,
    requests: Mutex<Vec<KvRequest>>,
    next_key: Mutex<u64>,
}

/// The fake splunkd with a KV store; stops when dropped.
pub struct FakeKvStore {
    splunkd: FakeSplunkd,
    state: Arc<KvState>,
}

impl FakeKvStore {
    /// A KV store (ready, this search head an `shc_member` of 3) and the
    /// export of `table`'s creations, on `127.0.0.1:<any port>`.
    pub fn start(table: &Table) -> FakeKvStore {
        let state = Arc::new(KvState {
            mode: Mutex::new(KvMode::Normal),
            key: Mutex::new(None),
            kv_status: Mutex::new(Some("ready".into())),
            roles: Mutex::new(vec![
                "search_head".into(),
                "kv_store".into(),
                "shc_member".into(),
            ]),
            members: Mutex::new(3),
            collections: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            next_key: Mutex::new(0),
        });
        let handler = state.clone();
        let splunkd =
            FakeSplunkd::start_with(table, Mode::Normal, move |req| handle(req, &handler));
        FakeKvStore { splunkd, state }
    }

    /// A KV store without an export table.
    pub fn empty() -> FakeKvStore {
        FakeKvStore::start(&Table::default())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        self.splunkd.uri()
    }

    /// The export side (its requests, its mode).
    pub fn splunkd(&self) -> &FakeSplunkd {
        &self.splunkd
    }

    /// Changes how the data endpoints behave.
    pub fn set_mode(&self, mode: KvMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Requests without `Authorization: Splunk <key>` get 401.
    pub fn expect_key(&self, key: &str) {
        *self.state.key.lock().unwrap() = Some(key.to_string());
        self.splunkd.expect_key(key);
    }

    /// What `server/info` says: `kvStoreStatus` (None: absent) and roles.
    pub fn set_server(&self, kv_status: Option<&str>, roles: &[&str]) {
        *self.state.kv_status.lock().unwrap() = kv_status.map(str::to_string);
        *self.state.roles.lock().unwrap() = roles.iter().map(|r| r.to_string()).collect();
    }

    /// How many members `shcluster/member/members` lists.
    pub fn set_members(&self, n: usize) {
        *self.state.members.lock().unwrap() = n;
    }

    /// The documents of `collection`, in `_key` order.
    pub fn docs(&self, collection: &str) -> Vec<Value> {
        self.state
            .collections
            .lock()
            .unwrap()
            .get(collection)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Puts documents in directly (as another member, or an admin).
    pub fn insert(&self, collection: &str, docs: Vec<Value>) {
        let mut all = self.state.collections.lock().unwrap();
        let c = all.entry(collection.to_string()).or_default();
        for d in docs {
            let key = d["_key"].as_str().expect("_key").to_string();
            c.insert(key, d);
        }
    }

    /// Every KV store and server-info request so far, in arrival order.
    pub fn requests(&self) -> Vec<KvRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests to `collection`'s data so far.
    pub fn data_requests(&self, collection: &str) -> Vec<KvRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.collection == collection)
            .collect()
    }
}

fn error_body(status: u16, text: &str) -> Response {
    Response::json(
        status,
        json!({"messages":[{"type":"ERROR","text":text}]}).to_string(),
    )
    .with_header("Server", "Splunkd")
}

/// The query parameter `name`, percent-decoded (`+` as a space).
pub fn query_param(target: &str, name: &str) -> Option<String> {
    let q = target.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// `(collection, is batch_save)` of a data path
/// `/servicesNS/<owner>/<app>/storage/collections/data/<c>[/batch_save]`.
fn data_path(path: &str) -> Option<(String, bool)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["servicesNS", _, _, "storage", "collections", "data", c] => Some((decode(c), false)),
        ["servicesNS", _, _, "storage", "collections", "data", c, "batch_save"] => {
            Some((decode(c), true))
        }
        _ => None,
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn handle(req: &Request, state: &KvState) -> Option<Response> {
    let path = req.path();
    let data = data_path(path);
    let info = path == "/services/server/info";
    let members = path == "/services/shcluster/member/members";
    if data.is_none() && !info && !members {
        return None;
    }
    let (collection, batch) = data.clone().unwrap_or_default();
    let query =
        query_param(&req.target, "query").map(|q| serde_json::from_str(&q).unwrap_or(Value::Null));
    let mut record = KvRequest {
        method: req.method.clone(),
        target: req.target.clone(),
        collection: collection.clone(),
        query: query.clone(),
        body: req.body.clone(),
        authorization: req.header("Authorization").map(str::to_string),
        at: req.at,
        status: 0,
    };
    let key_ok = match state.key.lock().unwrap().as_deref() {
        None => record
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Splunk ")),
        Some(k) => record.authorization.as_deref() == Some(&format!("Splunk {k}")),
    };
    let mode = *state.mode.lock().unwrap();
    let response = if !key_ok {
        Response::json(401, UNAUTHORIZED_BODY).with_header("Server", "Splunkd")
    } else if info {
        let status = state.kv_status.lock().unwrap().clone();
        let status = if mode == KvMode::NotReady {
            Some("starting".to_string())
        } else {
            status
        };
        let mut content = json!({ "server_roles": *state.roles.lock().unwrap() });
        if let Some(s) = status {
            content["kvStoreStatus"] = s.into();
        }
        Response::json(
            200,
            json!({"entry":[{"name":"server-info","content":content}]}).to_string(),
        )
    } else if members {
        let n = *state.members.lock().unwrap();
        let entry: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("member{i}"), "content": {"status": "Up"}}))
            .collect();
        Response::json(200, json!({ "entry": entry }).to_string())
    } else {
        match mode {
            KvMode::NotReady => error_body(503, "KV Store is initializing. Please try again later."),
            KvMode::Fail(s) => error_body(s, "KV Store is not available (fake splunkd)"),
            KvMode::Garbage => Response::json(200, "<html>502 proxy error, not JSON"),
            KvMode::Hang => {
                record.status = 0;
                state.requests.lock().unwrap().push(record);
                return Some(Response::hang());
            }
            KvMode::ForbidWrites if req.method != "GET" => error_body(
                403,
                "User 'analyst' with roles { analyst, user } cannot write: /nobody/sysmonenrich/collections/data/",
            ),
            _ => data_call(req, state, &collection, batch, query.as_ref()),
        }
    };
    record.status = response.status();
    state.requests.lock().unwrap().push(record);
    Some(match mode {
        KvMode::Slow(d) if data.is_some() => response.delayed(d),
        _ => response,
    })
}

fn data_call(
    req: &Request,
    state: &KvState,
    collection: &str,
    batch: bool,
    query: Option<&Value>,
) -> Response {
    if query == Some(&Value::Null) {
        return error_body(400, "Invalid query: not JSON");
    }
    let mut all = state.collections.lock().unwrap();
    match (req.method.as_str(), batch) {
        ("GET", false) => {
            let num = |name: &str| {
                query_param(&req.target, name)
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            let (limit, skip) = (num("limit"), num("skip"));
            let docs: Vec<Value> = all
                .get(collection)
                .map(|c| {
                    c.values()
                        .filter(|d| query.is_none_or(|q| matches(d, q)))
                        .skip(skip)
                        .take(if limit == 0 { usize::MAX } else { limit })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            Response::json(200, Value::Array(docs).to_string())
        }
        ("POST", true) => {
            let Ok(Value::Array(docs)) = serde_json::from_slice::<Value>(&req.body) else {
                return error_body(400, "Malformed JSON: expected an array of documents");
            };
            if docs.len() > MAX_BATCH {
                return Response::json(400, TOO_MANY_DOCS_BODY).with_header("Server", "Splunkd");
            }
            if docs.iter().any(|d| !d.is_object()) {
                return error_body(400, "Malformed JSON: a document is not an object");
            }
            let c = all.entry(collection.to_string()).or_default();
            let mut keys = Vec::new();
            for mut d in docs {
                let key = match d.get("_key").and_then(Value::as_str) {
                    Some(k) => k.to_string(),
                    None => {
                        let mut n = state.next_key.lock().unwrap();
                        *n += 1;
                        let k = format!("{:024x}", *n);
                        d["_key"] = k.clone().into();
                        k
                    }
                };
                d["_user"] = "nobody".into();
                c.insert(key.clone(), d);
                keys.push(Value::String(key));
            }
            Response::json(200, Value::Array(keys).to_string())
        }
        ("DELETE", false) => {
            if let Some(c) = all.get_mut(collection) {
                c.retain(|_, d| query.is_some_and(|q| !matches(d, q)));
            }
            Response::json(200, "")
        }
        _ => error_body(405, "Method not allowed"),
    }
}

/// Does `doc` match the (documented subset of the) query language?
pub fn matches(doc: &Value, query: &Value) -> bool {
    let Some(q) = query.as_object() else {
        return false;
    };
    q.iter().all(|(k, v)| match k.as_str() {
        "$or" => v
            .as_array()
            .is_some_and(|l| l.iter().any(|s| matches(doc, s))),
        "$and" => v
            .as_array()
            .is_some_and(|l| l.iter().all(|s| matches(doc, s))),
        "$not" => !matches(doc, v),
        field => field_matches(doc.get(field), v),
    })
}

fn field_matches(value: Option<&Value>, cond: &Value) -> bool {
    let ops = cond
        .as_object()
        .filter(|o| !o.is_empty() && o.keys().all(|k| k.starts_with('$')));
    let Some(ops) = ops else {
        return value.is_some_and(|v| equal(v, cond));
    };
    ops.iter().all(|(op, arg)| {
        let cmp = value.and_then(|v| compare(v, arg));
        match op.as_str() {
            "$gt" => cmp == Some(Ordering::Greater),
            "$gte" => matches!(cmp, Some(Ordering::Greater | Ordering::Equal)),
            "$lt" => cmp == Some(Ordering::Less),
            "$lte" => matches!(cmp, Some(Ordering::Less | Ordering::Equal)),
            "$ne" => !value.is_some_and(|v| equal(v, arg)),
            "$in" => arg
                .as_array()
                .is_some_and(|l| value.is_some_and(|v| l.iter().any(|a| equal(v, a)))),
            _ => false,
        }
    })
}

fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(Ordering::Equal) || a == b
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_language() {
        let d = json!({"_key":"a","n":5,"s":"x"});
        assert!(matches(&d, &json!({"_key":"a"})));
        assert!(matches(&d, &json!({"$or":[{"_key":"b"},{"n":5}]})));
        assert!(!matches(
            &d,
            &json!({"$and":[{"_key":"a"},{"n":{"$gt":5}}]})
        ));
        assert!(matches(&d, &json!({"n":{"$gte":5,"$lt":6}})));
        assert!(matches(&d, &json!({"s":{"$in":["y","x"]}})));
        assert!(matches(&d, &json!({"missing":{"$ne":1}})));
        assert!(!matches(&d, &json!({"n":{"$lte":4}})));
    }
}
