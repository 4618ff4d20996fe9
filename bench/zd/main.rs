//! zd: the traffic proof for bench/zero-downtime.sh — real HTTP backends and a load generator,
//! so "zero downtime" is a count of failed requests rather than a claim.
//!
//! ```text
//! zd backend --listen 127.0.0.1:8081 --name v1-a [--report FILE] [--grace 5s]
//!     HTTP/1.1 keep-alive server. GET /healthz -> 200 "ok"; any other GET -> 200, body
//!     "<name>\n", header X-Backend: <name>. On SIGTERM (or SIGINT) it notes the instant, keeps
//!     serving for --grace (nginx never sees a refused connection), counts (and logs on stderr)
//!     every request that arrives after the stop, then writes
//!     {name, served, served_after_stop, stopped_at_ms, healthz, healthz_after_stop} to --report
//!     (stdout without it) and exits 0. After the stop /healthz answers 503 ("stopping"), as a
//!     draining server does; health checks are counted apart, not as violations.
//!
//! zd load --url http://127.0.0.1:PORT/ --connections 16 --stop-file F --out FILE
//!         [--duration 10m] [--min-requests N] [--marks FILE] [--abort-mark LABEL]
//!     N keep-alive connections, each looping GET until the stop file exists (and at least
//!     --min-requests were sent, when given) or --duration has passed. A request fails on:
//!     connection refused (or another connect error), a status other than 200, no complete
//!     response within 2 s, or the connection closed or reset once response bytes had arrived
//!     (or before any, on a new connection). A reused keep-alive connection that is closed
//!     before any byte of the response came back (nginx's reload closes idle keep-alives) is
//!     re-sent once on a new connection, as every HTTP client does for idempotent requests, and
//!     counted as retried_on_stale_connection, not as a failure. Writes JSON to --out: totals,
//!     failures by cause, requests per backend (X-Backend), latency p50/p90/p99/max, and with
//!     --marks (lines "<unix_ms> <label>") the same per window from each mark to the next; with
//!     --abort-mark, failed_after_abort and backends_after_abort (requests sent from that mark
//!     on). The last line on stdout is exactly "N requests, F failed".
//! ```
//!
//! Built as a cargo example (`cargo build --example zd`) so it shares greenlight's tokio; a
//! current-thread runtime is enough for several thousand requests/s on loopback.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(
    name = "zd",
    about = "HTTP backends and a load generator for bench/zero-downtime.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An HTTP/1.1 keep-alive backend that answers with its name.
    Backend {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        name: String,
        /// Where to write the JSON report on exit (stdout without it).
        #[arg(long)]
        report: Option<PathBuf>,
        /// How long to keep serving after SIGTERM.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Keep-alive GET load with per-request records.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// The load stops once this file exists.
        #[arg(long)]
        stop_file: PathBuf,
        /// Stop at the latest after this long, stop file or not.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Keep going past the stop file until this many requests were sent.
        #[arg(long, default_value_t = 0)]
        min_requests: u64,
        /// JSON results.
        #[arg(long)]
        out: PathBuf,
        /// Marks written by the scenario: "<unix_ms> <label>" per line.
        #[arg(long)]
        marks: Option<PathBuf>,
        /// The mark from which failures are counted apart (failed_after_abort).
        #[arg(long, requires = "marks")]
        abort_mark: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Backend {
            listen,
            name,
            report,
            grace,
        } => runtime.block_on(backend(listen, name, report, grace)),
        Command::Load {
            url,
            connections,
            stop_file,
            duration,
            min_requests,
            out,
            marks,
            abort_mark,
        } => runtime.block_on(load(LoadArgs {
            url,
            connections,
            stop_file,
            duration,
            min_requests,
            out,
            marks,
            abort_mark,
        })),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (case-insensitive) in a request or response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Whether the connection closes after this message: HTTP/1.0 unless keep-alive is asked for,
/// HTTP/1.1 when `Connection: close` says so.
fn closes(head: &str, http10: bool) -> bool {
    match header(head, "connection") {
        Some(v) if v.eq_ignore_ascii_case("close") => true,
        Some(v) if v.eq_ignore_ascii_case("keep-alive") => false,
        _ => http10,
    }
}

// ---------------------------------------------------------------------------------------------
// backend

struct Backend {
    name: String,
    /// Unix µs of the SIGTERM; 0 while running.
    stopped_at_us: AtomicU64,
    served: AtomicU64,
    served_after_stop: AtomicU64,
    healthz: AtomicU64,
    healthz_after_stop: AtomicU64,
}

#[derive(Serialize)]
struct BackendReport<'a> {
    name: &'a str,
    served: u64,
    served_after_stop: u64,
    stopped_at_ms: u64,
    healthz: u64,
    healthz_after_stop: u64,
}

async fn backend(
    listen: SocketAddr,
    name: String,
    report: Option<PathBuf>,
    grace: Duration,
) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("backend {name}: cannot listen on {listen}: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let state = Arc::new(Backend {
        name,
        stopped_at_us: AtomicU64::new(0),
        served: AtomicU64::new(0),
        served_after_stop: AtomicU64::new(0),
        healthz: AtomicU64::new(0),
        healthz_after_stop: AtomicU64::new(0),
    });
    eprintln!("backend {}: listening on {listen}", state.name);
    let accepting = state.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, accepting.clone()));
                }
                Err(e) => {
                    eprintln!("backend {}: accept: {e}", accepting.name);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let stopped = unix_us();
    state.stopped_at_us.store(stopped, Ordering::SeqCst);
    eprintln!(
        "backend {}: stopped at {} ms; serving {} more",
        state.name,
        stopped / 1000,
        humantime::format_duration(grace)
    );
    tokio::time::sleep(grace).await;
    let body = BackendReport {
        name: &state.name,
        served: state.served.load(Ordering::SeqCst),
        served_after_stop: state.served_after_stop.load(Ordering::SeqCst),
        stopped_at_ms: stopped / 1000,
        healthz: state.healthz.load(Ordering::SeqCst),
        healthz_after_stop: state.healthz_after_stop.load(Ordering::SeqCst),
    };
    let json = serde_json::to_string(&body).map_err(|e| e.to_string())?;
    match report {
        Some(path) => std::fs::write(&path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => println!("{json}"),
    }
    eprintln!(
        "backend {}: exiting: served {}, {} after the stop",
        state.name, body.served, body.served_after_stop
    );
    Ok(())
}

async fn serve_connection(mut stream: TcpStream, state: Arc<Backend>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(256);
    loop {
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            buf.reserve(4096);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let arrived = unix_us();
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut parts = head.split(' ');
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let http10 = head
            .split("\r\n")
            .next()
            .is_some_and(|l| l.ends_with("HTTP/1.0"));
        let body_len: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            buf.reserve(head_end + body_len - buf.len());
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        buf.drain(..head_end + body_len);
        let close = closes(&head, http10);

        let stopped = state.stopped_at_us.load(Ordering::SeqCst);
        let after_stop = stopped != 0 && arrived >= stopped;
        let (status, body, named) = if method != "GET" {
            ("405 Method Not Allowed", "GET only\n".to_string(), false)
        } else if path == "/healthz" {
            state.healthz.fetch_add(1, Ordering::Relaxed);
            if after_stop {
                state.healthz_after_stop.fetch_add(1, Ordering::Relaxed);
                ("503 Service Unavailable", "stopping\n".to_string(), false)
            } else {
                ("200 OK", "ok\n".to_string(), false)
            }
        } else {
            state.served.fetch_add(1, Ordering::Relaxed);
            if after_stop {
                let n = state.served_after_stop.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!(
                    "backend {}: VIOLATION #{n}: {method} {path} arrived at {} ms, {:.1} ms after the stop",
                    state.name,
                    arrived / 1000,
                    (arrived - stopped) as f64 / 1000.0
                );
            }
            ("200 OK", format!("{}\n", state.name), true)
        };
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        if named {
            out.extend_from_slice(b"\r\nX-Backend: ");
            out.extend_from_slice(state.name.as_bytes());
        }
        if close {
            out.extend_from_slice(b"\r\nConnection: close");
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
        if stream.write_all(&out).await.is_err() {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// load

struct LoadArgs {
    url: String,
    connections: usize,
    stop_file: PathBuf,
    duration: Duration,
    min_requests: u64,
    out: PathBuf,
    marks: Option<PathBuf>,
    abort_mark: Option<String>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const NO_BACKEND: u16 = u16::MAX;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    ConnectionRefused,
    ConnectError,
    Status(u16),
    Timeout,
    /// Closed or reset once response bytes had come back.
    ResetAfterResponseBytes,
    /// Closed or reset before any byte of the response, on a new connection (or on the retry).
    ClosedBeforeResponse,
    BadResponse,
}

impl Cause {
    fn label(self) -> String {
        match self {
            Cause::ConnectionRefused => "connection_refused".into(),
            Cause::ConnectError => "connect_error".into(),
            Cause::Status(code) => format!("status_{code}"),
            Cause::Timeout => "timeout".into(),
            Cause::ResetAfterResponseBytes => "reset_after_response_bytes".into(),
            Cause::ClosedBeforeResponse => "closed_before_response".into(),
            Cause::BadResponse => "bad_response".into(),
        }
    }
}

/// One request, as the load generator saw it.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// When it was sent, unix µs.
    sent_us: u64,
    latency_us: u32,
    /// Index into the worker's backend names; NO_BACKEND without an X-Backend header.
    backend: u16,
    failed: Option<Cause>,
    retried: bool,
}

struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Response {
    status: u16,
    backend: Option<String>,
    close: bool,
}

/// How an exchange on an open connection went wrong.
enum ExchangeError {
    /// Closed, reset or unwritable before any byte of the response came back.
    NoBytes,
    /// Closed or reset after some.
    AfterBytes,
    Bad,
}

async fn connect(addr: SocketAddr) -> Result<Conn, Cause> {
    match TcpStream::connect(addr).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            Ok(Conn {
                stream,
                buf: Vec::with_capacity(4096),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(Cause::ConnectionRefused),
        Err(_) => Err(Cause::ConnectError),
    }
}

impl Conn {
    /// Reads more into the buffer; Ok(false) at EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(4096);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response, ExchangeError> {
        self.buf.clear();
        if self.stream.write_all(request).await.is_err() {
            return Err(ExchangeError::NoBytes);
        }
        let lost = |buf: &Vec<u8>| {
            if buf.is_empty() {
                ExchangeError::NoBytes
            } else {
                ExchangeError::AfterBytes
            }
        };
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(ExchangeError::Bad);
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) | Err(_) => return Err(lost(&self.buf)),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status_line = head.split("\r\n").next().unwrap_or("");
        let mut words = status_line.split(' ');
        let version = words.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(ExchangeError::Bad);
        }
        let status: u16 = words
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(ExchangeError::Bad)?;
        let mut close = closes(&head, version == "HTTP/1.0");
        let backend = header(&head, "x-backend").map(str::to_string);
        let chunked = header(&head, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
        let mut pos = head_end;
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    if !self.fill().await.unwrap_or(false) {
                        return Err(ExchangeError::AfterBytes);
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buf[pos..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| ExchangeError::Bad)?;
                pos = line_end + 2;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        if let Some(p) = find(&self.buf[pos..], b"\r\n") {
                            let empty = p == 0;
                            pos += p + 2;
                            if empty {
                                break;
                            }
                        } else if !self.fill().await.unwrap_or(false) {
                            return Err(ExchangeError::AfterBytes);
                        }
                    }
                    break;
                }
                while self.buf.len() < pos + size + 2 {
                    if !self.fill().await.unwrap_or(false) {
                        return Err(ExchangeError::AfterBytes);
                    }
                }
                pos += size + 2;
            }
        } else if let Some(length) = length {
            while self.buf.len() < pos + length {
                if !self.fill().await.unwrap_or(false) {
                    return Err(ExchangeError::AfterBytes);
                }
            }
        } else if status != 204 && status != 304 {
            // No length: the body ends with the connection.
            while self.fill().await.map_err(|_| ExchangeError::AfterBytes)? {}
            close = true;
        }
        Ok(Response {
            status,
            backend,
            close,
        })
    }
}

/// One request, with the one re-send on a new connection when a reused one turns out closed.
async fn request(conn: &mut Option<Conn>, target: &Target) -> (Result<Response, Cause>, bool) {
    let reused = conn.is_some();
    if conn.is_none() {
        match connect(target.addr).await {
            Ok(c) => *conn = Some(c),
            Err(cause) => return (Err(cause), false),
        }
    }
    let first = conn
        .as_mut()
        .expect("connected")
        .exchange(&target.request)
        .await;
    let outcome = match first {
        Ok(response) => return (Ok(response), false),
        Err(ExchangeError::NoBytes) if reused => None,
        Err(ExchangeError::NoBytes) => Some(Cause::ClosedBeforeResponse),
        Err(ExchangeError::AfterBytes) => Some(Cause::ResetAfterResponseBytes),
        Err(ExchangeError::Bad) => Some(Cause::BadResponse),
    };
    *conn = None;
    if let Some(cause) = outcome {
        return (Err(cause), false);
    }
    // The stale keep-alive case: once more, on a new connection.
    match connect(target.addr).await {
        Ok(c) => *conn = Some(c),
        Err(cause) => return (Err(cause), true),
    }
    let second = conn
        .as_mut()
        .expect("connected")
        .exchange(&target.request)
        .await;
    match second {
        Ok(response) => (Ok(response), true),
        Err(e) => {
            *conn = None;
            let cause = match e {
                ExchangeError::NoBytes => Cause::ClosedBeforeResponse,
                ExchangeError::AfterBytes => Cause::ResetAfterResponseBytes,
                ExchangeError::Bad => Cause::BadResponse,
            };
            (Err(cause), true)
        }
    }
}

struct Shared {
    stop: AtomicBool,
    total: AtomicU64,
    failed: AtomicU64,
}

async fn worker(target: Arc<Target>, shared: Arc<Shared>) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::with_capacity(16 * 1024);
    let mut names: Vec<String> = Vec::new();
    let mut conn: Option<Conn> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let sent_us = unix_us();
        let started = Instant::now();
        let timed = tokio::time::timeout(REQUEST_TIMEOUT, request(&mut conn, &target)).await;
        let latency_us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let (result, retried) = match timed {
            Ok(outcome) => outcome,
            Err(_) => {
                conn = None;
                (Err(Cause::Timeout), false)
            }
        };
        let record = match result {
            Ok(response) => {
                if response.close {
                    conn = None;
                }
                let backend = match response.backend {
                    Some(name) => match names.iter().position(|n| *n == name) {
                        Some(i) => i as u16,
                        None => {
                            names.push(name);
                            (names.len() - 1) as u16
                        }
                    },
                    None => NO_BACKEND,
                };
                Record {
                    sent_us,
                    latency_us,
                    backend,
                    failed: (response.status != 200).then_some(Cause::Status(response.status)),
                    retried,
                }
            }
            Err(cause) => Record {
                sent_us,
                latency_us,
                backend: NO_BACKEND,
                failed: Some(cause),
                retried,
            },
        };
        if let Some(cause) = record.failed {
            let n = shared.failed.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= 20 {
                eprintln!(
                    "load: FAILED request sent at {} ms: {} after {:.1} ms",
                    sent_us / 1000,
                    cause.label(),
                    latency_us as f64 / 1000.0
                );
            }
            // A refused connection loops fast: do not spin.
            if matches!(cause, Cause::ConnectionRefused | Cause::ConnectError) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        shared.total.fetch_add(1, Ordering::Relaxed);
        records.push(record);
    }
    (records, names)
}

/// Parses "<unix_ms> <label>" lines (blank lines and # comments skipped), sorted by time
/// (stable: marks at the same millisecond keep their order).
fn parse_marks(text: &str) -> Result<Vec<(u64, String)>, String> {
    let mut marks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (time, label) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let time: u64 = time
            .parse()
            .map_err(|_| format!("marks line {}: not a unix time in ms: {line:?}", n + 1))?;
        marks.push((time, label.trim().to_string()));
    }
    marks.sort_by_key(|(time, _)| *time);
    Ok(marks)
}

/// Nearest-rank percentile of sorted values; 0 when there are none.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn latency(records: &[&Record]) -> Latency {
    let mut values: Vec<u32> = records.iter().map(|r| r.latency_us).collect();
    values.sort_unstable();
    Latency {
        p50: ms(percentile(&values, 50.0)),
        p90: ms(percentile(&values, 90.0)),
        p99: ms(percentile(&values, 99.0)),
        max: ms(values.last().copied().unwrap_or(0)),
    }
}

#[derive(Serialize)]
struct Window {
    mark: String,
    from_ms: u64,
    /// Absent for the last window (to the end of the run).
    to_ms: Option<u64>,
    count: usize,
    failed: usize,
    retried_on_stale_connection: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    backends: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Failure {
    sent_ms: u64,
    cause: String,
    latency_ms: f64,
}

#[derive(Serialize)]
struct LoadReport {
    url: String,
    connections: usize,
    started_ms: u64,
    ended_ms: u64,
    seconds: f64,
    requests_per_second: f64,
    total: usize,
    failed: usize,
    failed_by_cause: BTreeMap<String, u64>,
    retried_on_stale_connection: usize,
    backends: BTreeMap<String, u64>,
    latency_ms: Latency,
    windows: Vec<Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    abort_mark: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_after_abort: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backends_after_abort: Option<BTreeMap<String, u64>>,
    /// The first failures (at most 50), for a look at when and why.
    first_failures: Vec<Failure>,
}

fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

async fn load(args: LoadArgs) -> Result<(), String> {
    let (authority, path) = parse_url(&args.url)?;
    let addr = tokio::net::lookup_host(&authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let target = Arc::new(Target {
        addr,
        request: format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: zd-load\r\n\r\n")
            .into_bytes(),
    });
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        total: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let started_us = unix_us();
    let started = Instant::now();
    eprintln!(
        "load: {} connections to {} until {} exists{}",
        args.connections,
        args.url,
        args.stop_file.display(),
        if args.min_requests > 0 {
            format!(" and {} requests were sent", args.min_requests)
        } else {
            String::new()
        }
    );
    let workers: Vec<_> = (0..args.connections.max(1))
        .map(|_| tokio::spawn(worker(target.clone(), shared.clone())))
        .collect();

    // The stop: the stop file (and enough requests), or the duration.
    let mut last_progress = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let total = shared.total.load(Ordering::Relaxed);
        if started.elapsed() >= args.duration {
            eprintln!("load: --duration reached");
            break;
        }
        if args.stop_file.exists() && total >= args.min_requests {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            eprintln!(
                "load: {total} requests, {} failed ({:.0} s)",
                shared.failed.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
    }
    shared.stop.store(true, Ordering::Relaxed);

    let mut names: Vec<String> = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for handle in workers {
        let (mut worker_records, worker_names) = handle
            .await
            .map_err(|e| format!("a load worker died: {e}"))?;
        let map: Vec<u16> = worker_names
            .iter()
            .map(|name| match names.iter().position(|n| n == name) {
                Some(i) => i as u16,
                None => {
                    names.push(name.clone());
                    (names.len() - 1) as u16
                }
            })
            .collect();
        for r in &mut worker_records {
            if r.backend != NO_BACKEND {
                r.backend = map[r.backend as usize];
            }
        }
        records.extend(worker_records);
    }
    let ended_us = unix_us();
    let seconds = started.elapsed().as_secs_f64();
    records.sort_by_key(|r| r.sent_us);

    let backends_of = |rs: &[&Record]| {
        let mut counts = BTreeMap::new();
        for r in rs {
            let name = match r.backend {
                NO_BACKEND => "(none)".to_string(),
                i => names[i as usize].clone(),
            };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    };
    let all: Vec<&Record> = records.iter().collect();
    let mut failed_by_cause = BTreeMap::new();
    for r in &records {
        if let Some(cause) = r.failed {
            *failed_by_cause.entry(cause.label()).or_insert(0) += 1;
        }
    }
    let failed = records.iter().filter(|r| r.failed.is_some()).count();

    let marks = match &args.marks {
        Some(path) => parse_marks(
            &std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        )?,
        None => Vec::new(),
    };
    let windows: Vec<Window> = marks
        .iter()
        .enumerate()
        .map(|(i, (from, label))| {
            let to = marks.get(i + 1).map(|(t, _)| *t);
            let rs: Vec<&Record> = records
                .iter()
                .filter(|r| r.sent_us / 1000 >= *from && to.is_none_or(|to| r.sent_us / 1000 < to))
                .collect();
            let lat = latency(&rs);
            Window {
                mark: label.clone(),
                from_ms: *from,
                to_ms: to,
                count: rs.len(),
                failed: rs.iter().filter(|r| r.failed.is_some()).count(),
                retried_on_stale_connection: rs.iter().filter(|r| r.retried).count(),
                p50_ms: lat.p50,
                p99_ms: lat.p99,
                max_ms: lat.max,
                backends: backends_of(&rs),
            }
        })
        .collect();
    let (failed_after_abort, backends_after_abort) = match &args.abort_mark {
        Some(label) => match marks.iter().find(|(_, l)| l == label) {
            Some((at, _)) => {
                let rs: Vec<&Record> = records.iter().filter(|r| r.sent_us / 1000 >= *at).collect();
                (
                    Some(rs.iter().filter(|r| r.failed.is_some()).count()),
                    Some(backends_of(&rs)),
                )
            }
            None => return Err(format!("--abort-mark {label}: no such mark")),
        },
        None => (None, None),
    };
    let report = LoadReport {
        url: args.url.clone(),
        connections: args.connections,
        started_ms: started_us / 1000,
        ended_ms: ended_us / 1000,
        seconds: (seconds * 1000.0).round() / 1000.0,
        requests_per_second: (records.len() as f64 / seconds).round(),
        total: records.len(),
        failed,
        failed_by_cause,
        retried_on_stale_connection: records.iter().filter(|r| r.retried).count(),
        backends: backends_of(&all),
        latency_ms: latency(&all),
        windows,
        abort_mark: args.abort_mark.clone(),
        failed_after_abort,
        backends_after_abort,
        first_failures: records
            .iter()
            .filter_map(|r| {
                r.failed.map(|cause| Failure {
                    sent_ms: r.sent_us / 1000,
                    cause: cause.label(),
                    latency_ms: ms(r.latency_us),
                })
            })
            .take(50)
            .collect(),
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;

    // The summary, for people; the last line is the one scripts read.
    let join = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let l = &report.latency_ms;
    println!(
        "load: {} requests in {:.1} s ({}/s) over {} connections",
        report.total, report.seconds, report.requests_per_second, report.connections
    );
    if report.failed > 0 {
        println!("failed by cause: {}", join(&report.failed_by_cause));
    }
    println!(
        "retried on a stale keep-alive connection: {}",
        report.retried_on_stale_connection
    );
    println!("backends: {}", join(&report.backends));
    println!(
        "latency ms: p50 {} p90 {} p99 {} max {}",
        l.p50, l.p90, l.p99, l.max
    );
    for w in &report.windows {
        println!(
            "  {:<24} +{:>6.1} s {:>7} requests {:>3} failed {:>3} retried  p50 {:>6.3} ms  p99 {:>7.3} ms  max {:>8.3} ms  {}",
            w.mark,
            w.from_ms.saturating_sub(report.started_ms) as f64 / 1000.0,
            w.count,
            w.failed,
            w.retried_on_stale_connection,
            w.p50_ms,
            w.p99_ms,
            w.max_ms,
            join(&w.backends)
        );
    }
    if let (Some(label), Some(n), Some(b)) = (
        &report.abort_mark,
        report.failed_after_abort,
        &report.backends_after_abort,
    ) {
        println!("after {label}: {n} failed; backends: {}", join(b));
    }
    println!("{} requests, {} failed", report.total, report.failed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[], 99.0), 0);
        assert_eq!(percentile(&[1, 2, 3], 0.0), 1);
    }

    #[test]
    fn marks_are_parsed_and_sorted() {
        let marks =
            parse_marks("# start\n1764140000500 flip-end\n\n1764140000123 flip-start\n").unwrap();
        assert_eq!(
            marks,
            vec![
                (1764140000123, "flip-start".to_string()),
                (1764140000500, "flip-end".to_string())
            ]
        );
        assert!(parse_marks("soon flip").is_err());
    }

    #[test]
    fn headers_and_keep_alive() {
        let head = "HTTP/1.1 200 OK\r\nx-backend: v1-a\r\nConnection: close\r\n\r\n";
        assert_eq!(header(head, "X-Backend"), Some("v1-a"));
        assert!(closes(head, false));
        assert!(closes("HTTP/1.0 200 OK\r\n\r\n", true));
        assert!(!closes("HTTP/1.1 200 OK\r\n\r\n", false));
        assert_eq!(
            parse_url("http://127.0.0.1:8080/x").unwrap(),
            ("127.0.0.1:8080".to_string(), "/x".to_string())
        );
    }
}
