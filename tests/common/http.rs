//! The one fake HTTP server of the tests: binds `127.0.0.1:0`, answers
//! every request through a handler closure `Fn(&Request) -> Response`, one
//! thread per connection, `Connection: close` (no keep-alive to get
//! wrong), and records every request with its arrival [`Instant`]. A
//! [`Response`] can be a body, a chunked stream of lines (splunkd's
//! export), delayed, a hang until the server is dropped, garbage instead
//! of HTTP, or a close without a word. Dropping the server releases
//! hanging handlers, shuts every connection down and joins every thread.
//!
//! Why hand-written rather than `wiremock`: the tests need connections
//! that hang until the test ends, bytes that are not HTTP, and plain
//! threads (the code under test runs its own runtimes).
//!
//! The fakes of the services live beside it: `common_http::reputation`
//! (providers, `storage/passwords`) and [`super::fake_splunkd`] (export).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query as sent (`/api/v3/files/abc?x=1`).
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When the request head had arrived.
    pub at: Instant,
}

impl Request {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string (without `?`), empty when there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The last path segment (`abc` of `/api/v3/files/abc`).
    pub fn last_segment(&self) -> &str {
        self.path()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
    }

    /// A field of an `application/x-www-form-urlencoded` body (values are
    /// returned as sent; tests only send hex and words).
    pub fn form(&self, name: &str) -> Option<String> {
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Reply,
    /// 200 with `Transfer-Encoding: chunked`, one chunk per line (how
    /// splunkd streams an export).
    Stream(Vec<String>),
    Hang,
    Garbage,
    Close,
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    kind: Kind,
}

impl Response {
    /// A reply with a JSON body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
            kind: Kind::Reply,
        }
    }

    /// A reply with a plain-text body.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        let mut r = Response::json(status, body);
        r.headers = vec![("Content-Type".into(), "text/plain".into())];
        r
    }

    /// The status it answers (0 when it answers none).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Never answers; the connection stays open until the server is
    /// dropped.
    pub fn hang() -> Response {
        Response {
            kind: Kind::Hang,
            ..Response::json(0, "")
        }
    }

    /// Bytes that are not HTTP, then close.
    pub fn garbage() -> Response {
        Response {
            kind: Kind::Garbage,
            ..Response::json(0, "")
        }
    }

    /// Closes the connection without answering.
    pub fn close() -> Response {
        Response {
            kind: Kind::Close,
            ..Response::json(0, "")
        }
    }

    /// 200, the lines streamed with `Transfer-Encoding: chunked`, one
    /// chunk per line (each ends in `\n`), as splunkd streams an export.
    pub fn stream(lines: Vec<String>) -> Response {
        Response {
            kind: Kind::Stream(lines),
            ..Response::json(200, "")
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Waits this long before answering.
    pub fn delayed(mut self, delay: Duration) -> Response {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    shutdown: AtomicBool,
    /// Woken on drop, so hanging and delayed handlers end at once.
    wake: (Mutex<()>, Condvar),
    /// Every accepted connection, shut down on drop (a handler blocked
    /// reading a silent client ends too).
    streams: Mutex<Vec<TcpStream>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

/// A running fake server; stops when dropped, and then no thread of it
/// outlives it.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts a server on `127.0.0.1:0` that answers with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            streams: Mutex::new(Vec::new()),
            handlers: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(listener, shared))
        };
        FakeServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let (lock, cv) = &self.shared.wake;
            let _guard = lock.lock().unwrap();
            cv.notify_all();
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for s in self.shared.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let handlers: Vec<_> = self.shared.handlers.lock().unwrap().drain(..).collect();
        for h in handlers {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if let Ok(clone) = stream.try_clone() {
                    shared.streams.lock().unwrap().push(clone);
                }
                let s = shared.clone();
                let h = thread::spawn(move || serve(stream, &s));
                let mut handlers = shared.handlers.lock().unwrap();
                handlers.retain(|h| !h.is_finished());
                handlers.push(h);
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Sleeps up to `d` (forever: `None`), returning early (false) when the
/// server shuts down.
fn wait(shared: &Shared, d: Option<Duration>) -> bool {
    let end = d.map(|d| Instant::now() + d);
    let (lock, cv) = &shared.wake;
    let mut guard = lock.lock().unwrap();
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return false;
        }
        let step = match end {
            None => Duration::from_millis(200),
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return true;
                }
                left.min(Duration::from_millis(200))
            }
        };
        guard = cv.wait_timeout(guard, step).unwrap().0;
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    shared.requests.lock().unwrap().push(request.clone());
    let response = (shared.handler)(&request);
    if !response.delay.is_zero() && !wait(shared, Some(response.delay)) {
        return;
    }
    let head = |extra: &str| {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n{extra}Connection: close\r\n",
            response.status,
            reason(response.status),
        );
        for (n, v) in &response.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head
    };
    match &response.kind {
        Kind::Hang => {
            wait(shared, None);
        }
        Kind::Close => {}
        Kind::Garbage => {
            let _ = stream.write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n");
        }
        Kind::Reply => {
            let mut out =
                head(&format!("Content-Length: {}\r\n", response.body.len())).into_bytes();
            out.extend_from_slice(&response.body);
            let _ = stream.write_all(&out);
        }
        Kind::Stream(lines) => {
            let mut out = head("Transfer-Encoding: chunked\r\n").into_bytes();
            for l in lines {
                let data = format!("{l}\n");
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(data.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            let _ = stream.write_all(&out);
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}
fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        target,
        headers,
        body,
        at,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}
