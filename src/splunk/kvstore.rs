//! The app's KV store collections through splunkd's REST API
//! (`storage/collections/data/<collection>`): what a search head cluster
//! replicates to every member, so the one place members can share what
//! they learnt.
//!
//! Only what splunkd documents is used: documents are JSON objects keyed
//! by `_key`; a read is `GET …/data/<collection>?query=<JSON>` with
//! `limit`/`skip`, and the query language is the documented subset
//! (equality, `$gt`/`$gte`/`$lt`/`$lte`/`$ne`, `$and`, `$or`, `$not`);
//! writes go through `POST …/batch_save` (a JSON array, an upsert by
//! `_key`), at most `limits.conf [kvstore] max_documents_per_batch_save`
//! (1,000 by default) per request and well under its
//! `max_size_per_batch_save_mb` (50 MB); deletes are `DELETE` with a
//! query (without one splunkd empties the collection, so this client
//! refuses an empty query).
//!
//! The collections live in the app's namespace owned by `nobody`, so every
//! member and every user reads the same documents whatever app the search
//! runs in. Every call gets its time from the caller (the per-search
//! budget), and every error is a [`SplunkError`] naming the call, never a
//! key: the session key travels in the `Authorization` header only, and
//! the documents are the caller's.

use super::client::{segment, Client, Method};
use super::error::SplunkError;
use super::Listing;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Where the app's collections are: shared by every user of the app.
pub const APP_NAMESPACE: &str = "servicesNS/nobody/sysmonenrich";
/// splunkd's default `limits.conf [kvstore] max_documents_per_batch_save`.
pub const MAX_BATCH_DOCS: usize = 1000;
/// Bytes of one `batch_save` body at most: a fifth of splunkd's default
/// `max_size_per_batch_save_mb` (50), so a conf that lowered it a little
/// still takes our batches, and one request never holds much memory.
pub const MAX_BATCH_BYTES: usize = 10 << 20;
/// Longest request target a read builds: proxies and splunkd itself
/// accept far more, but a query of a few hundred keys per request is
/// already one round trip for a whole chunk.
pub const MAX_QUERY_URL: usize = 8000;

/// How much time the next call may take (the per-search budget's rest).
pub type TimeLeft = Arc<dyn Fn() -> Duration + Send + Sync>;

/// A client for the app's collections.
pub struct KvStore {
    client: Client,
    time_left: Option<TimeLeft>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// What `server/info` says about the KV store and the search head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStatus {
    /// `kvStoreStatus` (`ready`, `starting`, `failed`, `disabled`, ...);
    /// `None` when splunkd does not say.
    pub kv_store_status: Option<String>,
    /// `server_roles` (`search_head`, `shc_member`, ...).
    pub server_roles: Vec<String>,
}

impl KvStatus {
    /// The KV store answers queries (only `ready` does; anything else,
    /// or nothing, is not ready).
    pub fn ready(&self) -> bool {
        self.kv_store_status.as_deref() == Some("ready")
    }

    /// The search head is a search head cluster member.
    pub fn shc_member(&self) -> bool {
        self.server_roles.iter().any(|r| r == "shc_member")
    }
}

#[derive(serde::Deserialize, Default)]
struct InfoContent {
    #[serde(default, rename = "kvStoreStatus")]
    kv_store_status: Option<String>,
    #[serde(default)]
    server_roles: Vec<String>,
}

impl KvStore {
    /// The collections of the app through `client` (authenticated); each
    /// call takes the client's call timeout until [`KvStore::with_time_left`].
    pub fn new(client: Client) -> KvStore {
        KvStore {
            client,
            time_left: None,
        }
    }

    /// Each call's timeout comes from `f` (zero: the call fails at once
    /// with a timeout, without a request).
    pub fn with_time_left(mut self, f: TimeLeft) -> KvStore {
        self.time_left = Some(f);
        self
    }

    /// The splunkd client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn timeout(&self) -> Duration {
        match &self.time_left {
            Some(f) => f(),
            None => self.client.call_timeout(),
        }
    }

    fn data_path(collection: &str) -> String {
        format!(
            "/{APP_NAMESPACE}/storage/collections/data/{}",
            segment(collection)
        )
    }

    /// The documents of `collection` matching `query`, `limit` at most (0:
    /// splunkd's own cap, `max_rows_per_query`), after skipping `skip`.
    pub fn query(
        &self,
        collection: &str,
        query: &Value,
        limit: usize,
        skip: usize,
    ) -> Result<Vec<Value>, SplunkError> {
        let what = format!("reading the KV store collection {collection}");
        let path = format!(
            "{}?output_mode=json&query={}&limit={limit}&skip={skip}",
            Self::data_path(collection),
            segment(&query.to_string()),
        );
        let reply = self
            .client
            .call(Method::Get, &path, None, &what, self.timeout())?;
        let reply = self.client.ok(&what, reply)?;
        match serde_json::from_slice::<Value>(&reply.body) {
            Ok(Value::Array(docs)) => Ok(docs),
            _ => Err(SplunkError::Unreadable {
                what,
                base: self.client.base().to_string(),
                expected: "a JSON array of documents".into(),
            }),
        }
    }

    /// The documents whose `field` is one of `values`, as few requests as
    /// keep each target under [`MAX_QUERY_URL`] (an `$or` of equalities:
    /// what splunkd documents; `$in` it does not). Stops at the first
    /// failure.
    pub fn query_any(
        &self,
        collection: &str,
        field: &str,
        values: &[&str],
    ) -> Result<Vec<Value>, SplunkError> {
        let mut out = Vec::new();
        for group in or_groups(field, values, MAX_QUERY_URL) {
            out.extend(self.query(collection, &group, 0, 0)?);
        }
        Ok(out)
    }

    /// Saves (inserts or replaces, by `_key`) `docs`, in requests of at
    /// most [`MAX_BATCH_DOCS`] documents and [`MAX_BATCH_BYTES`] bytes.
    /// Returns how many splunkd confirmed; stops at the first failure.
    pub fn batch_save(&self, collection: &str, docs: &[Value]) -> Result<usize, SplunkError> {
        let what = format!("writing to the KV store collection {collection}");
        let path = format!(
            "{}/batch_save?output_mode=json",
            Self::data_path(collection)
        );
        let mut saved = 0;
        for body in batches(docs, MAX_BATCH_DOCS, MAX_BATCH_BYTES) {
            let reply = self
                .client
                .call(Method::Post, &path, Some(body), &what, self.timeout())?;
            let reply = self.client.ok(&what, reply)?;
            match serde_json::from_slice::<Value>(&reply.body) {
                Ok(Value::Array(keys)) => saved += keys.len(),
                _ => {
                    return Err(SplunkError::Unreadable {
                        what,
                        base: self.client.base().to_string(),
                        expected: "a JSON array of saved keys".into(),
                    })
                }
            }
        }
        Ok(saved)
    }

    /// Deletes the documents of `collection` matching `query`, which must
    /// be a non-empty object (splunkd deletes everything without one).
    pub fn delete(&self, collection: &str, query: &Value) -> Result<(), SplunkError> {
        let what = format!("deleting from the KV store collection {collection}");
        if query.as_object().is_none_or(|o| o.is_empty()) {
            return Err(SplunkError::Status {
                what,
                base: self.client.base().to_string(),
                status: 400,
                message: "refused before sending: an empty query would delete the whole collection"
                    .into(),
            });
        }
        let path = format!(
            "{}?output_mode=json&query={}",
            Self::data_path(collection),
            segment(&query.to_string())
        );
        let reply = self
            .client
            .call(Method::Delete, &path, None, &what, self.timeout())?;
        self.client.ok(&what, reply).map(drop)
    }

    /// The KV store's status and the server's roles
    /// (`GET /services/server/info`).
    pub fn status(&self) -> Result<KvStatus, SplunkError> {
        let what = "reading the server info";
        let reply = self.client.call(
            Method::Get,
            "/services/server/info?output_mode=json",
            None,
            what,
            self.timeout(),
        )?;
        let reply = self.client.ok(what, reply)?;
        status_of(&reply.body).ok_or_else(|| SplunkError::Unreadable {
            what: what.into(),
            base: self.client.base().to_string(),
            expected: "the server/info JSON listing".into(),
        })
    }
}

/// The KV store status and roles of a `server/info` body.
pub fn status_of(body: &[u8]) -> Option<KvStatus> {
    let listing: Listing<InfoContent> = serde_json::from_slice(body).ok()?;
    let content = listing.entry.into_iter().next()?.content;
    Some(KvStatus {
        kv_store_status: content.kv_store_status.filter(|s| !s.is_empty()),
        server_roles: content.server_roles,
    })
}

/// `{"$or":[{field:v1},{field:v2},…]}` queries for `values`, each one's
/// request target at most `max_url` bytes long (a value longer than that
/// alone still gets its own query).
pub fn or_groups(field: &str, values: &[&str], max_url: usize) -> Vec<Value> {
    // Room for the path and the other parameters.
    let budget = max_url.saturating_sub(256);
    let wrapper = segment(r#"{"$or":[]}"#).len();
    let mut out = Vec::new();
    let mut group: Vec<Value> = Vec::new();
    let mut size = wrapper;
    for v in values {
        let one = serde_json::json!({ field: v });
        let len = segment(&one.to_string()).len() + 3; // `,` encoded
        if !group.is_empty() && size + len > budget {
            out.push(serde_json::json!({ "$or": std::mem::take(&mut group) }));
            size = wrapper;
        }
        size += len;
        group.push(one);
    }
    if !group.is_empty() {
        out.push(serde_json::json!({ "$or": group }));
    }
    out
}

/// `docs` as JSON array bodies of at most `max_docs` documents and
/// `max_bytes` bytes (a larger document goes alone).
fn batches(docs: &[Value], max_docs: usize, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut n = 0;
    for doc in docs {
        let text = doc.to_string();
        if n > 0 && (n == max_docs || body.len() + 1 + text.len() + 1 > max_bytes) {
            body.push(b']');
            out.push(std::mem::take(&mut body));
            n = 0;
        }
        body.push(if n == 0 { b'[' } else { b',' });
        body.extend_from_slice(text.as_bytes());
        n += 1;
    }
    if n > 0 {
        body.push(b']');
        out.push(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batches_keep_both_limits() {
        let docs: Vec<Value> = (0..2501).map(|i| json!({"_key": i.to_string()})).collect();
        let bodies = batches(&docs, MAX_BATCH_DOCS, MAX_BATCH_BYTES);
        let counts: Vec<usize> = bodies
            .iter()
            .map(|b| serde_json::from_slice::<Vec<Value>>(b).unwrap().len())
            .collect();
        assert_eq!(counts, [1000, 1000, 501]);
        let big = "x".repeat(400);
        let docs: Vec<Value> = (0..10).map(|i| json!({"_key": i, "v": big})).collect();
        let bodies = batches(&docs, 1000, 1000);
        assert!(bodies.iter().all(|b| b.len() <= 1000), "{:?}", bodies.len());
        let total: usize = bodies
            .iter()
            .map(|b| serde_json::from_slice::<Vec<Value>>(b).unwrap().len())
            .sum();
        assert_eq!(total, 10);
        assert!(batches(&[], 1000, 1000).is_empty());
    }

    #[test]
    fn or_groups_split_by_encoded_length() {
        let keys: Vec<String> = (0..300)
            .map(|i| format!("virustotal:sha256:{i:064x}"))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let groups = or_groups("_key", &refs, MAX_QUERY_URL);
        assert!(groups.len() > 1);
        let mut back = Vec::new();
        for g in &groups {
            assert!(segment(&g.to_string()).len() <= MAX_QUERY_URL);
            for e in g["$or"].as_array().unwrap() {
                back.push(e["_key"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(back, keys);
        assert!(or_groups("_key", &[], 100).is_empty());
    }

    #[test]
    fn status_from_server_info() {
        let body = br#"{"entry":[{"name":"server-info","content":{"kvStoreStatus":"ready","server_roles":["search_head","shc_member","kv_store"]}}]}"#;
        let s = status_of(body).unwrap();
        assert!(s.ready() && s.shc_member());
        let s = status_of(br#"{"entry":[{"content":{"kvStoreStatus":"starting"}}]}"#).unwrap();
        assert!(!s.ready() && !s.shc_member());
        // Absent: not ready.
        let s = status_of(br#"{"entry":[{"content":{"server_roles":["search_head"]}}]}"#).unwrap();
        assert_eq!(s.kv_store_status, None);
        assert!(!s.ready());
        assert_eq!(status_of(b"<html>"), None);
        assert_eq!(status_of(br#"{"entry":[]}"#), None);
    }
}
