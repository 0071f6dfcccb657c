//! A fake splunkd REST server for the lineage backfill: `search/jobs/export`
//! over a data set.
//!
//! The command asks splunkd for the creation events of missing ancestors
//! with one export search per tree level:
//!
//! ```text
//! POST {splunkd_uri}/servicesNS/{user}/{app}/search/jobs/export
//! Authorization: Splunk <session_key>
//! search=search `sysmonenrich_index` EventCode=1 ProcessGuid IN ("{…}", "{…}")
//!        | dedup ProcessGuid | fields ProcessGuid ParentProcessGuid Image …
//! &output_mode=json&earliest_time=-30d&latest_time=now
//! ```
//!
//! [`FakeSplunkd`] runs on the tests' one HTTP server ([`super::http`]:
//! `127.0.0.1:0`, plain HTTP, one thread per connection, `Connection:
//! close`), decodes the form body, takes the GUIDs
//! out of the `ProcessGuid IN (…)` list and answers, from the EventCode 1
//! rows of its table, the first creation per GUID (case-insensitive, braces
//! optional) as export JSON lines — `{"preview":false,"offset":N,
//! "result":{…}}`, the last one with `"lastrow":true`, streamed with
//! `Transfer-Encoding: chunked` as splunkd streams exports — holding only
//! the fields the search's `| fields` asked for. `_time` is rendered the way
//! splunkd's JSON output renders it (ISO 8601 with offset), not as the
//! epoch seconds of the CSV.
//!
//! [`Mode`] switches it into the failures the command must survive: slow,
//! hanging, 5xx, and a session key it does not accept. Every request is
//! recorded (search text, GUIDs, auth header, arrival time, status).
//! Dropping the server stops it: hanging handlers are released and every
//! connection is shut down, so no thread outlives it.

use super::datasets::{Table, Value};
use super::http::{FakeServer, Request, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fields the backfill asks for (`| fields …`).
pub const EXPORT_FIELDS: [&str; 9] = [
    "ProcessGuid",
    "ParentProcessGuid",
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "Computer",
    "Hashes",
    "_time",
];

/// splunkd's answer to a missing or wrong session key.
pub const UNAUTHORIZED_BODY: &str =
    r#"{"messages":[{"type":"WARN","text":"call not properly authenticated"}]}"#;

/// How the server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answer at once.
    Normal,
    /// Wait this long before answering.
    Slow(Duration),
    /// Accept and read the request, never answer (until the server is
    /// dropped, which closes the connection).
    Hang,
    /// Answer this HTTP status with a splunkd error body.
    Fail(u16),
    /// 401 unless `Authorization: Splunk <key>` carries the expected key
    /// (see [`FakeSplunkd::expect_key`]); the right key gets a normal answer.
    RejectKey,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// `POST`, `GET`, …
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The decoded form fields, in order.
    pub form: Vec<(String, String)>,
    /// The decoded `search` field (empty when absent).
    pub search: String,
    /// GUIDs of the `ProcessGuid IN (…)` list, as written.
    pub guids: Vec<String>,
    /// When the request head arrived.
    pub at: Instant,
    /// The status answered (0: never answered, [`Mode::Hang`]).
    pub status: u16,
    /// Results answered.
    pub results: usize,
}

impl ExportRequest {
    /// A decoded form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The session key of `Authorization: Splunk <key>`, if that is the
    /// header's form.
    pub fn session_key(&self) -> Option<&str> {
        self.authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Splunk "))
            .map(str::trim)
    }
}

/// The EventCode 1 rows of a table, by normalised GUID: the requested
/// fields of the first creation of each GUID.
struct Index {
    by_guid: HashMap<String, Vec<(String, Value)>>,
}

/// Upper case without braces or surrounding blanks: how GUIDs compare.
pub fn normalize_guid(g: &str) -> String {
    g.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim()
        .to_ascii_uppercase()
}

impl Index {
    fn new(table: &Table) -> Index {
        let code = table
            .position("EventCode")
            .or_else(|| table.position("EventID"));
        let guid = table.position("ProcessGuid");
        let mut by_guid = HashMap::new();
        let (Some(code), Some(guid)) = (code, guid) else {
            return Index { by_guid };
        };
        for row in &table.rows {
            if row[code].joined().trim() != "1" {
                continue;
            }
            let g = normalize_guid(&row[guid].joined());
            if g.is_empty() || by_guid.contains_key(&g) {
                continue;
            }
            let fields = table
                .columns
                .iter()
                .zip(row)
                .filter(|(_, v)| !v.is_empty())
                .map(|(c, v)| (c.clone(), v.clone()))
                .collect();
            by_guid.insert(g, fields);
        }
        Index { by_guid }
    }
}

struct State {
    mode: Mutex<Mode>,
    key: Mutex<Option<String>>,
    index: Index,
    requests: Mutex<Vec<ExportRequest>>,
}

/// The fake splunkd (on the tests' one HTTP server); stops when dropped.
pub struct FakeSplunkd {
    server: FakeServer,
    state: Arc<State>,
}

impl FakeSplunkd {
    /// Serves the EventCode 1 rows of `table` on `127.0.0.1:<any port>`.
    pub fn start(table: &Table, mode: Mode) -> FakeSplunkd {
        FakeSplunkd::start_with(table, mode, |_| None)
    }

    /// [`FakeSplunkd::start`] with more endpoints: `extra` answers first
    /// (the KV store of [`super::fake_kvstore`], server info); what it
    /// leaves (`None`) goes to the export as usual, so one server is the
    /// whole splunkd of a test. [`Mode`] applies to the export only.
    pub fn start_with(
        table: &Table,
        mode: Mode,
        extra: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static,
    ) -> FakeSplunkd {
        let state = Arc::new(State {
            mode: Mutex::new(mode),
            key: Mutex::new(None),
            index: Index::new(table),
            requests: Mutex::new(Vec::new()),
        });
        let handler_state = state.clone();
        let server =
            FakeServer::start(move |req| extra(req).unwrap_or_else(|| handle(req, &handler_state)));
        FakeSplunkd { server, state }
    }

    /// `http://127.0.0.1:<port>`: what getinfo's `splunkd_uri` should say.
    pub fn uri(&self) -> String {
        self.server.url()
    }

    /// Changes the behaviour for the next requests.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// The session key [`Mode::RejectKey`] accepts (none: every key fails).
    pub fn expect_key(&self, key: &str) {
        *self.state.key.lock().unwrap() = Some(key.to_string());
    }

    /// Requests so far (any path, answered or not).
    pub fn request_count(&self) -> usize {
        self.server.count()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ExportRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Number of distinct GUIDs the server can answer.
    pub fn creations(&self) -> usize {
        self.state.index.by_guid.len()
    }
}

/// `application/x-www-form-urlencoded` → pairs (`+` is a space, then
/// percent-decoding).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

/// The GUIDs of `ProcessGuid IN ("{…}", …)` (quotes removed), or of
/// `ProcessGuid="{…}" OR …` when the search is written that way.
pub fn search_guids(search: &str) -> Vec<String> {
    let lower = search.to_ascii_lowercase();
    if let Some(start) = lower.find("processguid in (") {
        let rest = &search[start + "processguid in (".len()..];
        let list = rest.split(')').next().unwrap_or("");
        return list
            .split(',')
            .map(|g| g.trim().trim_matches('"').trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
    }
    let mut out = Vec::new();
    let mut rest = search;
    while let Some(i) = rest.to_ascii_lowercase().find("processguid=") {
        let after = &rest[i + "processguid=".len()..];
        let value: String = after
            .trim_start_matches('"')
            .chars()
            .take_while(|c| !matches!(c, '"' | ' ' | ')'))
            .collect();
        if !value.is_empty() {
            out.push(value);
        }
        rest = after;
    }
    out
}

/// The field list of the search's `| fields a b c` (all fields if none).
pub fn search_fields(search: &str) -> Option<Vec<String>> {
    let part = search
        .split('|')
        .map(str::trim)
        .find(|p| p.starts_with("fields ") && !p.starts_with("fields -"))?;
    Some(
        part["fields ".len()..]
            .split([' ', ','])
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// Epoch seconds (`1645292116.196`) → splunkd's JSON rendering of `_time`
/// (`2022-02-19T17:35:16.196+00:00`); other text is passed through.
pub fn render_time(epoch: &str) -> String {
    let Ok(t) = epoch.trim().parse::<f64>() else {
        return epoch.to_string();
    };
    let ms = (t * 1000.0).round() as i64;
    let date_time = sysmonenrich::calendar::utc_date_time(ms.div_euclid(1000), 'T');
    format!("{date_time}.{:03}+00:00", ms.rem_euclid(1000))
}

fn json_value(field: &str, v: &Value) -> serde_json::Value {
    match v {
        Value::One(s) if field == "_time" => serde_json::Value::String(render_time(s)),
        Value::One(s) => serde_json::Value::String(s.clone()),
        Value::Many(list) => serde_json::Value::Array(
            list.iter()
                .map(|s| serde_json::Value::String(s.clone()))
                .collect(),
        ),
    }
}

/// The export body for one search: JSON lines of the matching creations.
fn export_lines(index: &Index, search: &str, guids: &[String]) -> Vec<String> {
    let fields = search_fields(search);
    let mut seen = std::collections::HashSet::new();
    let mut results = Vec::new();
    for g in guids {
        let key = normalize_guid(g);
        if !seen.insert(key.clone()) {
            continue;
        }
        let Some(row) = index.by_guid.get(&key) else {
            continue;
        };
        let mut obj = serde_json::Map::new();
        match &fields {
            Some(list) => {
                for f in list {
                    if let Some((_, v)) = row.iter().find(|(c, _)| c == f) {
                        obj.insert(f.clone(), json_value(f, v));
                    }
                }
            }
            None => {
                for (c, v) in row {
                    obj.insert(c.clone(), json_value(c, v));
                }
            }
        }
        results.push(obj);
    }
    let n = results.len();
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut line = serde_json::Map::new();
            line.insert("preview".into(), false.into());
            line.insert("offset".into(), i.into());
            if i + 1 == n {
                line.insert("lastrow".into(), true.into());
            }
            line.insert("result".into(), serde_json::Value::Object(r));
            serde_json::Value::Object(line).to_string()
        })
        .collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// splunkd's error body.
fn error_body(status: u16, text: &str) -> Response {
    Response::json(
        status,
        format!(r#"{{"messages":[{{"type":"ERROR","text":"{text}"}}]}}"#),
    )
    .with_header("Server", "Splunkd")
}

fn handle(req: &Request, state: &State) -> Response {
    let at = req.at;
    let mode = *state.mode.lock().unwrap();
    let form = parse_form(&req.body);
    let search = form
        .iter()
        .find(|(k, _)| k == "search")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let guids = search_guids(&search);
    let authorization = req.header("Authorization").map(str::to_string);
    let path = req.path().to_string();
    let is_export = req.method == "POST"
        && path.starts_with("/servicesNS/")
        && path.ends_with("/search/jobs/export")
        && path.split('/').count() == 7;
    let key_ok = {
        let expected = state.key.lock().unwrap();
        let given = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Splunk "))
            .map(str::trim);
        matches!((expected.as_deref(), given), (Some(e), Some(g)) if e == g)
    };
    let lines = if is_export {
        export_lines(&state.index, &search, &guids)
    } else {
        Vec::new()
    };
    let status = match mode {
        Mode::Hang => 0,
        Mode::Fail(s) => s,
        Mode::RejectKey if !key_ok => 401,
        _ if !is_export => 404,
        _ => 200,
    };
    let results = if status == 200 { lines.len() } else { 0 };
    state.requests.lock().unwrap().push(ExportRequest {
        method: req.method.clone(),
        path: req.target.clone(),
        authorization,
        content_type: req.header("Content-Type").map(str::to_string),
        form,
        search,
        guids,
        at,
        status,
        results,
    });
    let response = match status {
        0 => return Response::hang(),
        200 => Response::stream(lines)
            .with_header("Server", "Splunkd")
            .with_header("Content-Type", "application/json; charset=UTF-8"),
        401 => Response::json(401, UNAUTHORIZED_BODY).with_header("Server", "Splunkd"),
        404 => error_body(404, "Not Found"),
        s => error_body(
            s,
            &format!("{}: search process failed (fake splunkd)", reason(s)),
        ),
    };
    match mode {
        // Slow answers after its delay (or never, if the server stops first).
        Mode::Slow(d) => response.delayed(d),
        _ => response,
    }
}
