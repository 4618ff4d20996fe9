//! A fault-injecting HTTP/1.1 proxy to put between a client (the real binary through
//! `AWS_ENDPOINT_URL`, or the SDK) and the emulator: it relays requests and, as a seeded plan
//! says, answers some with the service's own throttling or server error, resets the connection
//! before forwarding, delays them, or forwards them and then drops the response.
//!
//! std only: one thread accepts, one thread per client connection (keep-alive, as hyper uses
//! it), a fresh upstream connection per request. Requests to the emulator's hooks
//! (`/_greenlight/`, `/moto-api/`) are relayed untouched and not counted. Bodies are relayed
//! whole and re-framed with `Content-Length` (chunked ones de-chunked); the other headers, the
//! status and the body are passed on as they are, hop-by-hop headers excepted.
//!
//! Faults are decided in the order requests arrive, so a seed replays the same faults when the
//! client sends its requests in the same order (as it does when it makes one call at a time).
//!
//! ```ignore
//! let proxy = FaultProxy::start(&session.emulator.endpoint, FaultPlan::new(7, 0.2, kinds));
//! // run greenlight with AWS_ENDPOINT_URL=proxy.endpoint() ...
//! eprintln!("{}", proxy.stats());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What the proxy does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer, without forwarding, with the service's throttling error.
    Throttle,
    /// Answer, without forwarding, with a 500 or a 503 (chosen by the plan's generator).
    ServerError,
    /// Close the client connection without answering; the request is not forwarded.
    Reset,
    /// Wait this long, then forward normally.
    Latency(Duration),
    /// Forward, read the whole response (the request took effect), then close the client
    /// connection without sending it.
    LoseResponse,
}

impl FaultKind {
    /// The name counted in [`Stats`] (every latency counts as `Latency`).
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Throttle => "Throttle",
            FaultKind::ServerError => "ServerError",
            FaultKind::Reset => "Reset",
            FaultKind::Latency(_) => "Latency",
            FaultKind::LoseResponse => "LoseResponse",
        }
    }
}

/// Which requests get a fault: each counted request gets one with probability `rate`, its kind
/// picked uniformly from `kinds`, all drawn from a generator seeded with `seed`. The same seed
/// gives the same faults for the same order of requests.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    pub rate: f64,
    pub kinds: Vec<FaultKind>,
}

impl FaultPlan {
    pub fn new(seed: u64, rate: f64, kinds: Vec<FaultKind>) -> FaultPlan {
        FaultPlan { seed, rate, kinds }
    }

    /// Every request passes through.
    pub fn none() -> FaultPlan {
        FaultPlan::new(0, 0.0, Vec::new())
    }

    /// Every request gets `kind`.
    pub fn always(kind: FaultKind) -> FaultPlan {
        FaultPlan::new(0, 1.0, vec![kind])
    }

    /// The faults this plan gives to a sequence of requests, from the first.
    pub fn faults(&self) -> Faults {
        Faults {
            plan: self.clone(),
            rng: SplitMix64(self.seed),
        }
    }

    /// The faults of the first `n` requests.
    pub fn sequence(&self, n: usize) -> Vec<Option<FaultKind>> {
        self.faults().take(n).collect()
    }
}

/// The faults of successive requests under one plan.
pub struct Faults {
    plan: FaultPlan,
    rng: SplitMix64,
}

/// One request's fate: its fault, and a further random word (which server error, request id).
#[derive(Clone, Copy, Debug)]
struct Decision {
    fault: Option<FaultKind>,
    extra: u64,
}

impl Faults {
    fn decide(&mut self) -> Decision {
        // Always three draws, so a request's fate never depends on earlier requests' fates.
        let roll = self.rng.next_f64();
        let pick = self.rng.next_u64();
        let extra = self.rng.next_u64();
        let kinds = &self.plan.kinds;
        let fault = (!kinds.is_empty() && roll < self.plan.rate)
            .then(|| kinds[(pick % kinds.len() as u64) as usize]);
        Decision { fault, extra }
    }
}

impl Iterator for Faults {
    type Item = Option<FaultKind>;

    fn next(&mut self) -> Option<Option<FaultKind>> {
        Some(self.decide().fault)
    }
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, and good enough to pick faults.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the proxy has seen since it started (or since [`FaultProxy::reset_stats`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Client connections accepted (fewer than requests when the client keeps them alive).
    pub connections: u64,
    /// Requests counted, i.e. all but those to the emulator's hooks.
    pub requests: u64,
    /// Faults injected, by [`FaultKind::name`].
    pub faults: BTreeMap<&'static str, u64>,
    /// By `service:Action`, e.g. `elasticloadbalancing:DescribeLoadBalancers`.
    pub actions: BTreeMap<String, ActionStats>,
    /// Every counted request in order: its `service:Action` and its fault.
    pub log: Vec<(String, Option<FaultKind>)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActionStats {
    pub requests: u64,
    pub faults: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Faults injected, of every kind.
    pub fn faulted(&self) -> u64 {
        self.faults.values().sum()
    }

    fn record(&mut self, action: &str, fault: Option<FaultKind>) {
        self.requests += 1;
        let entry = self.actions.entry(action.to_owned()).or_default();
        entry.requests += 1;
        if let Some(kind) = fault {
            *self.faults.entry(kind.name()).or_default() += 1;
            *entry.faults.entry(kind.name()).or_default() += 1;
        }
        self.log.push((action.to_owned(), fault));
    }
}

fn counts(counts: &BTreeMap<&'static str, u64>) -> String {
    counts
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests on {} connections, {} faulted",
            self.requests,
            self.connections,
            self.faulted()
        )?;
        if !self.faults.is_empty() {
            write!(f, " ({})", counts(&self.faults))?;
        }
        for (action, stats) in &self.actions {
            write!(f, "\n  {action}: {}", stats.requests)?;
            if !stats.faults.is_empty() {
                write!(f, " ({})", counts(&stats.faults))?;
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Shared {
    /// host:port
    upstream: String,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    stop: AtomicBool,
    /// A handle on each open client connection, to close them all on drop.
    clients: Mutex<HashMap<u64, TcpStream>>,
    next_client: AtomicU64,
}

impl Shared {
    fn decide(&self, action: &str) -> Decision {
        let mut faults = lock(&self.faults);
        let decision = faults.decide();
        lock(&self.stats).record(action, decision.fault);
        decision
    }
}

/// The proxy: listening on a loopback port until dropped.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) on a free loopback port.
    pub fn start(upstream: &str, plan: FaultPlan) -> FaultProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the fault proxy speaks plain http, not {upstream}"))
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let address = listener.local_addr().expect("the fault proxy's address");
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(plan.faults()),
            stats: Mutex::new(Stats::default()),
            stop: AtomicBool::new(false),
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("fault-proxy".into())
                .spawn(move || accept(listener, shared))
                .expect("start the fault proxy")
        };
        FaultProxy {
            address,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` or an SDK's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Replaces the plan; its generator starts afresh from the new plan's seed.
    pub fn set_plan(&self, plan: FaultPlan) {
        *lock(&self.shared.faults) = plan.faults();
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor, which then drops the listener.
        let woke = TcpStream::connect_timeout(&self.address, Duration::from_secs(1)).is_ok();
        // End idle keep-alive connections; a request in flight fails on its next write.
        for (_, client) in lock(&self.shared.clients).drain() {
            let _ = client.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take().filter(|_| woke) {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else {
            // Out of file descriptors, say: do not spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = shared.next_client.fetch_add(1, Ordering::SeqCst);
        if let Ok(handle) = client.try_clone() {
            lock(&shared.clients).insert(id, handle);
        }
        // Drop may have closed the registered connections just before this one was added.
        if shared.stop.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            break;
        }
        lock(&shared.stats).connections += 1;
        let shared = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name("fault-proxy-client".into())
            .spawn(move || {
                serve(&shared, client);
                lock(&shared.clients).remove(&id);
            });
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1, as much as the SDK and moto use

struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    /// Decoded (de-chunked).
    body: Vec<u8>,
}

struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    /// Decoded (de-chunked).
    body: Vec<u8>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Headers for this hop only, which the proxy does not pass on: it frames bodies itself.
fn hop_by_hop(headers: &[(String, String)], name: &str) -> bool {
    const HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "expect",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) || has_token(headers, "connection", name)
}

fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

fn eof(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("eof in {what}"))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| eof("headers"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| eof("chunk size"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, dropped, up to the empty line.
            read_headers(reader)?;
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?.ok_or_else(|| eof("chunk"))?;
    }
}

/// The body framed by `headers`, or everything up to EOF if `to_eof` and unframed.
fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    if has_token(headers, "transfer-encoding", "chunked") {
        return read_chunked(reader);
    }
    if let Some(length) = header(headers, "content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// The next request on a client connection, or `None` at a clean EOF between requests.
fn read_request(reader: &mut impl BufRead, writer: &mut impl Write) -> io::Result<Option<Request>> {
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {line:?}")));
    };
    let headers = read_headers(reader)?;
    if has_token(&headers, "expect", "100-continue") {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let body = read_body(reader, &headers, false)?;
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
        body,
    }))
}

fn read_response(reader: &mut impl BufRead, head: bool) -> io::Result<Response> {
    loop {
        let line = read_line(reader)?.ok_or_else(|| eof("status line"))?;
        let mut parts = line.splitn(3, ' ');
        let _version = parts.next();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = read_headers(reader)?;
        if (100..200).contains(&status) && status != 101 {
            continue; // an interim response
        }
        let body = if head || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(reader, &headers, true)?
        };
        return Ok(Response {
            status,
            reason,
            headers,
            body,
        });
    }
}

fn write_response(
    writer: &mut impl Write,
    response: &Response,
    head: bool,
    close: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", response.status, response.reason);
    for (name, value) in &response.headers {
        if !hop_by_hop(&response.headers, name) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let bodiless = (100..200).contains(&response.status) || [204, 304].contains(&response.status);
    if head {
        // What a GET would have had.
        if let Some(length) = header(&response.headers, "content-length") {
            out.push_str(&format!("Content-Length: {length}\r\n"));
        }
    } else if !bodiless {
        out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head && !bodiless {
        bytes.extend_from_slice(&response.body);
    }
    writer.write_all(&bytes)?;
    writer.flush()
}

/// Sends `request` to the upstream on a fresh connection and reads the whole response.
fn forward(upstream: &str, request: &Request) -> io::Result<Response> {
    let mut stream = TcpStream::connect(upstream)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_write_timeout(Some(Duration::from_secs(120)))?;
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        if !hop_by_hop(&request.headers, name) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if !request.body.is_empty() || header(&request.headers, "content-length").is_some() {
        out.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&request.body);
    stream.write_all(&bytes)?;
    stream.flush()?;
    read_response(&mut BufReader::new(stream), request.method == "HEAD")
}

/// Closes a client connection so that the client sees a connection error: with a reset where
/// the platform allows (SO_LINGER 0, then the last handle's close), else with a FIN.
fn abort(client: &TcpStream) {
    if !linger_zero(client) {
        let _ = client.shutdown(Shutdown::Both);
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn linger_zero(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    // std's TcpStream::set_linger is unstable; setsockopt is in the libc std links anyway.
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid open socket and a pointer to a live `struct linger` of the given size.
    let result = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            size_of::<Linger>() as u32,
        )
    };
    result == 0
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn linger_zero(_stream: &TcpStream) -> bool {
    false
}

// ---------------------------------------------------------------------------------------------
// AWS: which service and action a request is, and the errors the proxy answers for them

/// The signing name in the SigV4 credential scope: `Credential=AKID/date/region/SERVICE/aws4_request`.
fn service_of(request: &Request) -> String {
    header(&request.headers, "authorization")
        .and_then(|auth| auth.split_once("Credential="))
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .and_then(|scope| scope.rsplit('/').nth(1))
        .unwrap_or("unknown")
        .to_owned()
}

/// A parameter of a form body or of the query string (names and values as sent, not decoded).
fn param(request: &Request, name: &str) -> Option<String> {
    let query = request.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let body = String::from_utf8_lossy(&request.body);
    body.split('&')
        .chain(query.split('&'))
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
}

/// The Query protocol's `Action`, or the JSON protocols' `X-Amz-Target` operation.
fn action_of(request: &Request) -> String {
    param(request, "Action")
        .or_else(|| {
            let target = header(&request.headers, "x-amz-target")?;
            Some(target.rsplit('.').next().unwrap_or(target).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[derive(Clone, Copy)]
enum Failure {
    Throttle,
    Internal,
    Unavailable,
}

/// A request id shaped like AWS's (a UUID), from the request's random word.
fn request_id(extra: u64) -> String {
    let low = SplitMix64(extra).next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        extra >> 32,
        (extra >> 16) & 0xffff,
        extra & 0xfff,
        low >> 52,
        low & 0xffff_ffff_ffff
    )
}

/// The error `service` itself answers with, in its protocol's shape.
fn failure_response(request: &Request, failure: Failure, id: &str) -> Response {
    let service = service_of(request);
    let (status, content_type, body) = match service.as_str() {
        "elasticloadbalancing" | "autoscaling" => {
            let (status, kind, code, message) = match failure {
                Failure::Throttle => (400, "Sender", "Throttling", "Rate exceeded"),
                Failure::Internal => (
                    500,
                    "Receiver",
                    "InternalFailure",
                    "The request processing has failed because of an unknown error, exception or failure.",
                ),
                Failure::Unavailable => (
                    503,
                    "Receiver",
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                ),
            };
            // The service's namespace: botocore's xmlNamespace for ELBv2 (2015-12-01) and
            // Auto Scaling (2011-01-01); the request's Version, for classic ELB (2012-06-01).
            let version = param(request, "Version").unwrap_or_else(|| {
                if service == "autoscaling" {
                    "2011-01-01".into()
                } else {
                    "2015-12-01".into()
                }
            });
            let body = format!(
                "<ErrorResponse xmlns=\"http://{service}.amazonaws.com/doc/{version}/\">\n  \
                 <Error>\n    <Type>{kind}</Type>\n    <Code>{code}</Code>\n    \
                 <Message>{message}</Message>\n  </Error>\n  <RequestId>{id}</RequestId>\n\
                 </ErrorResponse>\n"
            );
            (status, "text/xml", body)
        }
        "ec2" => {
            let (status, code, message) = match failure {
                Failure::Throttle => (503, "RequestLimitExceeded", "Request limit exceeded."),
                Failure::Internal => (500, "InternalError", "An internal error has occurred."),
                Failure::Unavailable => (
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                ),
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                 <Code>{code}</Code><Message>{message}</Message></Error></Errors>\
                 <RequestID>{id}</RequestID></Response>"
            );
            (status, "text/xml;charset=UTF-8", body)
        }
        _ => {
            let (status, code, message) = match failure {
                Failure::Throttle => (400, "ThrottlingException", "Rate exceeded"),
                Failure::Internal => (500, "InternalFailure", "Internal failure"),
                Failure::Unavailable => (503, "ServiceUnavailable", "Service unavailable"),
            };
            let body = format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}");
            (status, "application/x-amz-json-1.1", body)
        }
    };
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    Response {
        status,
        reason: reason.to_owned(),
        headers: vec![
            ("x-amzn-RequestId".to_owned(), id.to_owned()),
            ("Content-Type".to_owned(), content_type.to_owned()),
        ],
        body: body.into_bytes(),
    }
}

fn bad_gateway(error: &io::Error) -> Response {
    Response {
        status: 502,
        reason: "Bad Gateway".to_owned(),
        headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
        body: format!("fault proxy: upstream: {error}\n").into_bytes(),
    }
}

// ---------------------------------------------------------------------------------------------
// One client connection

fn serve(shared: &Shared, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let Ok(mut writer) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client);
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok(Some(request)) = read_request(&mut reader, &mut writer) else {
            break;
        };
        match handle(shared, &request, &mut writer) {
            Ok(true) => continue,
            Ok(false) | Err(_) => break,
        }
    }
}

/// Answers one request (or does not); whether to keep the connection open.
fn handle(shared: &Shared, request: &Request, client: &mut TcpStream) -> io::Result<bool> {
    let head = request.method == "HEAD";
    let keep_alive =
        request.version == "HTTP/1.1" && !has_token(&request.headers, "connection", "close");
    let relay = |client: &mut TcpStream| {
        let response = forward(&shared.upstream, request).unwrap_or_else(|e| bad_gateway(&e));
        write_response(client, &response, head, !keep_alive).map(|()| keep_alive)
    };
    let path = request.target.split('?').next().unwrap_or_default();
    if path.starts_with("/_greenlight/") || path.starts_with("/moto-api/") {
        return relay(client);
    }
    let action = format!("{}:{}", service_of(request), action_of(request));
    let decision = shared.decide(&action);
    let answer = |client: &mut TcpStream, failure| {
        let response = failure_response(request, failure, &request_id(decision.extra));
        write_response(client, &response, head, !keep_alive).map(|()| keep_alive)
    };
    match decision.fault {
        None => relay(client),
        Some(FaultKind::Latency(delay)) => {
            thread::sleep(delay);
            relay(client)
        }
        Some(FaultKind::Throttle) => answer(client, Failure::Throttle),
        Some(FaultKind::ServerError) if decision.extra & 1 == 0 => {
            answer(client, Failure::Internal)
        }
        Some(FaultKind::ServerError) => answer(client, Failure::Unavailable),
        Some(FaultKind::Reset) => {
            abort(client);
            Ok(false)
        }
        Some(FaultKind::LoseResponse) => {
            let _ = forward(&shared.upstream, request);
            abort(client);
            Ok(false)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests of the proxy itself

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::time::Instant;

    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_autoscaling::Client as AsgClient;
    use aws_sdk_autoscaling::config::Credentials;
    use aws_sdk_ec2::Client as Ec2Client;
    use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
    use aws_sdk_elasticloadbalancingv2::config::http::HttpResponse;
    use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, Tag};

    use super::*;
    use crate::harness::{REGION, Session, session};

    const ALL: [FaultKind; 5] = [
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::Reset,
        FaultKind::Latency(Duration::from_millis(5)),
        FaultKind::LoseResponse,
    ];

    /// An SDK config through `endpoint`, trying each call `attempts` times with hardly a wait.
    async fn sdk(endpoint: &str, attempts: u32) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .load()
            .await
    }

    struct Clients {
        elb: ElbClient,
        asg: AsgClient,
        ec2: Ec2Client,
    }

    async fn clients(endpoint: &str, attempts: u32) -> Clients {
        let conf = sdk(endpoint, attempts).await;
        Clients {
            elb: ElbClient::new(&conf),
            asg: AsgClient::new(&conf),
            ec2: Ec2Client::new(&conf),
        }
    }

    /// What a client saw of one call.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Ok,
        Service { status: u16, code: String },
        Dispatch,
        Other(String),
    }

    fn outcome<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> Outcome
    where
        E: ProvideErrorMetadata + Debug,
    {
        match result {
            Ok(_) => Outcome::Ok,
            Err(SdkError::DispatchFailure(_)) => Outcome::Dispatch,
            Err(err @ SdkError::ServiceError(_)) => Outcome::Service {
                status: err.raw_response().map_or(0, |r| r.status().as_u16()),
                code: err.code().unwrap_or_default().to_owned(),
            },
            Err(err) => Outcome::Other(format!("{err:?}")),
        }
    }

    fn service(status: u16, code: &str) -> Outcome {
        Outcome::Service {
            status,
            code: code.to_owned(),
        }
    }

    fn start(session: &Session, plan: FaultPlan) -> FaultProxy {
        FaultProxy::start(&session.emulator.endpoint, plan)
    }

    async fn vpc(ec2: &Ec2Client, cidr: &str) -> String {
        let out = ec2.create_vpc().cidr_block(cidr).send().await.unwrap();
        out.vpc().and_then(|v| v.vpc_id()).unwrap().to_owned()
    }

    async fn vpcs_with(ec2: &Ec2Client, cidr: &str) -> usize {
        let out = ec2.describe_vpcs().send().await.unwrap();
        out.vpcs()
            .iter()
            .filter(|v| v.cidr_block() == Some(cidr))
            .count()
    }

    #[test]
    fn a_seed_gives_the_same_faults() {
        let plan = FaultPlan::new(42, 0.5, ALL.to_vec());
        let first = plan.sequence(1000);
        assert_eq!(first, plan.sequence(1000));
        assert_eq!(first, plan.clone().faults().take(1000).collect::<Vec<_>>());
        assert_ne!(first, FaultPlan::new(43, 0.5, ALL.to_vec()).sequence(1000));
        let faulted = first.iter().flatten().count();
        assert!(
            (400..600).contains(&faulted),
            "{faulted} of 1000 at rate 0.5"
        );
        for kind in ALL {
            let n = first.iter().filter(|f| **f == Some(kind)).count();
            assert!((50..150).contains(&n), "{n} of {kind:?}");
        }
        // Whether a request is faulted does not depend on which kinds the plan has.
        let throttles = FaultPlan::new(42, 0.5, vec![FaultKind::Throttle]).sequence(1000);
        let same: Vec<bool> = first.iter().map(Option::is_some).collect();
        assert_eq!(
            same,
            throttles.iter().map(Option::is_some).collect::<Vec<_>>()
        );
        assert!(FaultPlan::none().sequence(100).iter().all(Option::is_none));
        assert!(
            FaultPlan::new(1, 0.0, ALL.to_vec())
                .sequence(100)
                .iter()
                .all(Option::is_none)
        );
        assert!(
            FaultPlan::new(1, 1.0, vec![])
                .sequence(100)
                .iter()
                .all(Option::is_none)
        );
        let always = FaultPlan::always(FaultKind::Reset).sequence(100);
        assert!(always.iter().all(|f| *f == Some(FaultKind::Reset)));
    }

    #[tokio::test]
    async fn without_faults_calls_pass_through_on_kept_alive_connections() {
        let session = session();
        let proxy = start(&session, FaultPlan::none());
        let aws = clients(&proxy.endpoint(), 1).await;
        for _ in 0..3 {
            aws.elb.describe_load_balancers().send().await.unwrap();
        }
        aws.asg.describe_auto_scaling_groups().send().await.unwrap();
        let vpc = vpc(&aws.ec2, "10.71.0.0/16").await;
        let created = aws
            .elb
            .create_target_group()
            .name("proxy-pass")
            .protocol(ProtocolEnum::Http)
            .port(80)
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        let arn = created.target_groups()[0].target_group_arn().unwrap();
        let described = aws
            .elb
            .describe_target_groups()
            .target_group_arns(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(described.target_groups()[0].vpc_id(), Some(vpc.as_str()));

        let stats = proxy.stats();
        assert_eq!(stats.requests, 7, "{stats}");
        assert_eq!(stats.faulted(), 0, "{stats}");
        assert!(stats.connections < stats.requests, "{stats}");
        let actions: Vec<(&str, u64)> = stats
            .actions
            .iter()
            .map(|(a, s)| (a.as_str(), s.requests))
            .collect();
        assert_eq!(
            actions,
            [
                ("autoscaling:DescribeAutoScalingGroups", 1),
                ("ec2:CreateVpc", 1),
                ("elasticloadbalancing:CreateTargetGroup", 1),
                ("elasticloadbalancing:DescribeLoadBalancers", 3),
                ("elasticloadbalancing:DescribeTargetGroups", 1),
            ]
        );
        proxy.reset_stats();
        assert_eq!(proxy.stats(), Stats::default());
    }

    const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
        Credential=testing/20261125/us-east-1/elasticloadbalancing/aws4_request, \
        SignedHeaders=host, Signature=0000";

    /// Raw HTTP on one connection: a chunked request, a sized one, then a throttled one.
    #[test]
    fn chunked_and_sized_requests_share_a_connection_and_a_throttle_is_protocol_shaped() {
        let session = session();
        let proxy = start(&session, FaultPlan::none());
        let address = proxy.endpoint().trim_start_matches("http://").to_owned();
        let stream = TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let form = "Action=DescribeLoadBalancers&Version=2015-12-01";
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {address}\r\nAuthorization: {AUTHORIZATION}\r\n\
             Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
        );
        let (one, two) = form.split_at(10);
        write!(
            writer,
            "{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{one}\r\n{:x};ext=1\r\n{two}\r\n0\r\n\r\n",
            one.len(),
            two.len()
        )
        .unwrap();
        let first = read_response(&mut reader, false).unwrap();
        assert_eq!(
            first.status,
            200,
            "{}",
            String::from_utf8_lossy(&first.body)
        );
        assert!(String::from_utf8_lossy(&first.body).contains("<DescribeLoadBalancersResult"));

        write!(writer, "{head}Content-Length: {}\r\n\r\n{form}", form.len()).unwrap();
        let second = read_response(&mut reader, false).unwrap();
        assert_eq!(second.status, 200);
        assert!(String::from_utf8_lossy(&second.body).contains("<DescribeLoadBalancersResult"));

        proxy.set_plan(FaultPlan::always(FaultKind::Throttle));
        write!(writer, "{head}Content-Length: {}\r\n\r\n{form}", form.len()).unwrap();
        let throttled = read_response(&mut reader, false).unwrap();
        let body = String::from_utf8(throttled.body).unwrap();
        assert_eq!(throttled.status, 400);
        assert_eq!(header(&throttled.headers, "content-type"), Some("text/xml"));
        assert!(
            body.starts_with(
                "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">"
            ),
            "{body}"
        );
        assert!(body.contains("<Type>Sender</Type>"), "{body}");
        assert!(body.contains("<Code>Throttling</Code>"), "{body}");
        assert!(body.contains("<Message>Rate exceeded</Message>"), "{body}");
        let id = header(&throttled.headers, "x-amzn-requestid").unwrap();
        assert!(
            body.contains(&format!("<RequestId>{id}</RequestId>")),
            "{body}"
        );

        let stats = proxy.stats();
        assert_eq!(stats.connections, 1, "{stats}");
        assert_eq!(
            stats.log,
            [
                (
                    "elasticloadbalancing:DescribeLoadBalancers".to_owned(),
                    None
                ),
                (
                    "elasticloadbalancing:DescribeLoadBalancers".to_owned(),
                    None
                ),
                (
                    "elasticloadbalancing:DescribeLoadBalancers".to_owned(),
                    Some(FaultKind::Throttle)
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_throttle_is_each_services_own_and_the_sdk_retries_it() {
        let session = session();
        let proxy = start(&session, FaultPlan::always(FaultKind::Throttle));
        let aws = clients(&proxy.endpoint(), 1).await;
        let elb = aws.elb.describe_load_balancers().send().await;
        assert_eq!(outcome(elb), service(400, "Throttling"));
        let asg = aws.asg.describe_auto_scaling_groups().send().await;
        assert_eq!(outcome(asg), service(400, "Throttling"));
        let ec2 = aws.ec2.describe_vpcs().send().await;
        assert_eq!(outcome(ec2), service(503, "RequestLimitExceeded"));
        let err = aws.elb.describe_load_balancers().send().await.unwrap_err();
        assert_eq!(err.message(), Some("Rate exceeded"));

        // The SDK's standard retry classifies each as retryable: three attempts each.
        let retrying = clients(&proxy.endpoint(), 3).await;
        proxy.reset_stats();
        let elb = retrying.elb.describe_load_balancers().send().await;
        assert_eq!(outcome(elb), service(400, "Throttling"));
        let ec2 = retrying.ec2.describe_vpcs().send().await;
        assert_eq!(outcome(ec2), service(503, "RequestLimitExceeded"));
        let stats = proxy.stats();
        assert_eq!(stats.requests, 6, "{stats}");
        assert_eq!(stats.faults.get("Throttle"), Some(&6), "{stats}");
    }

    #[tokio::test]
    async fn a_server_error_is_a_500_or_a_503_and_never_lands() {
        let session = session();
        let proxy = start(&session, FaultPlan::always(FaultKind::ServerError));
        let aws = clients(&proxy.endpoint(), 1).await;
        let direct = clients(&session.emulator.endpoint, 1).await;
        let mut statuses = Vec::new();
        for _ in 0..6 {
            match outcome(aws.elb.describe_load_balancers().send().await) {
                Outcome::Service { status: 500, code } => assert_eq!(code, "InternalFailure"),
                Outcome::Service { status: 503, code } => assert_eq!(code, "ServiceUnavailable"),
                other => panic!("{other:?}"),
            }
            match outcome(aws.ec2.create_vpc().cidr_block("10.72.0.0/16").send().await) {
                Outcome::Service { status: 500, code } => assert_eq!(code, "InternalError"),
                Outcome::Service { status, code } => {
                    assert_eq!((status, code.as_str()), (503, "ServiceUnavailable"))
                }
                other => panic!("{other:?}"),
            }
            let asg = aws.asg.describe_auto_scaling_groups().send().await;
            let Outcome::Service { status, .. } = outcome(asg) else {
                panic!("not a service error")
            };
            statuses.push(status);
        }
        assert!(
            statuses.contains(&500) && statuses.contains(&503),
            "{statuses:?}"
        );
        assert_eq!(vpcs_with(&direct.ec2, "10.72.0.0/16").await, 0);
        assert_eq!(proxy.stats().faults.get("ServerError"), Some(&18));
    }

    #[tokio::test]
    async fn a_reset_is_a_dispatch_failure_and_the_request_never_lands() {
        let session = session();
        let proxy = start(&session, FaultPlan::always(FaultKind::Reset));
        let aws = clients(&proxy.endpoint(), 1).await;
        let direct = clients(&session.emulator.endpoint, 1).await;
        let elb = aws.elb.describe_load_balancers().send().await;
        assert_eq!(outcome(elb), Outcome::Dispatch);
        let ec2 = aws.ec2.create_vpc().cidr_block("10.73.0.0/16").send().await;
        assert_eq!(outcome(ec2), Outcome::Dispatch);
        assert_eq!(vpcs_with(&direct.ec2, "10.73.0.0/16").await, 0);

        // A connection error is transient to the SDK: it tries again.
        let retrying = clients(&proxy.endpoint(), 2).await;
        proxy.reset_stats();
        let asg = retrying.asg.describe_auto_scaling_groups().send().await;
        assert_eq!(outcome(asg), Outcome::Dispatch);
        assert_eq!(proxy.stats().faults.get("Reset"), Some(&2));

        // After faults, the same clients work again through the same proxy.
        proxy.set_plan(FaultPlan::none());
        aws.elb.describe_load_balancers().send().await.unwrap();
        retrying
            .asg
            .describe_auto_scaling_groups()
            .send()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lost_response_fails_the_call_but_the_write_lands() {
        let session = session();
        let direct = clients(&session.emulator.endpoint, 1).await;
        let vpc = vpc(&direct.ec2, "10.74.0.0/16").await;
        let created = direct
            .elb
            .create_target_group()
            .name("proxy-lost")
            .protocol(ProtocolEnum::Http)
            .port(80)
            .vpc_id(vpc)
            .send()
            .await
            .unwrap();
        let arn = created.target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_owned();
        direct
            .asg
            .create_launch_configuration()
            .launch_configuration_name("proxy-lost")
            .image_id("ami-12c6146b")
            .instance_type("t3.micro")
            .send()
            .await
            .unwrap();
        direct
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name("proxy-lost")
            .launch_configuration_name("proxy-lost")
            .min_size(0)
            .max_size(1)
            .availability_zones("us-east-1a")
            .send()
            .await
            .unwrap();

        let proxy = start(&session, FaultPlan::always(FaultKind::LoseResponse));
        let aws = clients(&proxy.endpoint(), 1).await;
        let tag = Tag::builder().key("lost").value("but-landed").build();
        let tagged = aws
            .elb
            .add_tags()
            .resource_arns(&arn)
            .tags(tag)
            .send()
            .await;
        assert_eq!(outcome(tagged), Outcome::Dispatch);
        let asg_tag = aws_sdk_autoscaling::types::Tag::builder()
            .resource_id("proxy-lost")
            .resource_type("auto-scaling-group")
            .key("lost")
            .value("but-landed")
            .propagate_at_launch(false)
            .build();
        let tagged = aws.asg.create_or_update_tags().tags(asg_tag).send().await;
        assert_eq!(outcome(tagged), Outcome::Dispatch);

        let tags = direct
            .elb
            .describe_tags()
            .resource_arns(&arn)
            .send()
            .await
            .unwrap();
        let tags: Vec<(&str, &str)> = tags.tag_descriptions()[0]
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
            .collect();
        assert!(tags.contains(&("lost", "but-landed")), "{tags:?}");
        let groups = direct
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("proxy-lost")
            .send()
            .await
            .unwrap();
        let tags: Vec<(&str, &str)> = groups.auto_scaling_groups()[0]
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
            .collect();
        assert!(tags.contains(&("lost", "but-landed")), "{tags:?}");

        let stats = proxy.stats();
        assert_eq!(stats.faults.get("LoseResponse"), Some(&2), "{stats}");
        let action = &stats.actions["autoscaling:CreateOrUpdateTags"];
        assert_eq!(action.faults.get("LoseResponse"), Some(&1), "{stats}");
    }

    /// What a read call shows of its fault: a reset and a lost response look alike, and a
    /// latency like no fault.
    fn seen(fault: Option<FaultKind>) -> Outcome {
        match fault {
            None | Some(FaultKind::Latency(_)) => Outcome::Ok,
            Some(FaultKind::Throttle) => service(400, "Throttling"),
            Some(FaultKind::ServerError) => service(0, "5xx"),
            Some(FaultKind::Reset | FaultKind::LoseResponse) => Outcome::Dispatch,
        }
    }

    #[tokio::test]
    async fn a_seed_replays_the_same_faults_through_the_network() {
        let session = session();
        let plan = FaultPlan::new(7, 0.6, ALL.to_vec());
        let proxy = start(&session, plan.clone());
        let aws = clients(&proxy.endpoint(), 1).await;
        let expected: Vec<Outcome> = plan.sequence(30).into_iter().map(seen).collect();
        for round in 0..2 {
            proxy.set_plan(plan.clone());
            proxy.reset_stats();
            let mut observed = Vec::new();
            for _ in 0..30 {
                let mut got = outcome(aws.elb.describe_load_balancers().send().await);
                if let Outcome::Service { status, code } = &mut got
                    && *status >= 500
                {
                    *status = 0;
                    *code = "5xx".into();
                }
                observed.push(got);
            }
            assert_eq!(observed, expected, "round {round}");
            let stats = proxy.stats();
            let faults: Vec<Option<FaultKind>> = stats.log.iter().map(|(_, f)| *f).collect();
            assert_eq!(faults, plan.sequence(30), "round {round}");
            for kind in ALL {
                assert!(stats.faults.contains_key(kind.name()), "{stats}");
            }
        }

        proxy.set_plan(FaultPlan::always(FaultKind::Latency(
            Duration::from_millis(200),
        )));
        let began = Instant::now();
        aws.elb.describe_load_balancers().send().await.unwrap();
        assert!(began.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn the_real_binary_works_through_the_proxy() {
        let session = session();
        let seeded = session.seed("proxied", &[]);
        let proxy = start(&session, FaultPlan::none());
        let out = session
            .greenlight(&seeded.config)
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .args(["status", "--output", "json"])
            .output()
            .unwrap();
        let stats = proxy.stats();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stats.requests > 0, "{stats}");
        assert!(
            stats.actions.keys().all(|a| !a.contains("unknown")),
            "{stats}"
        );
    }

    #[test]
    fn hooks_pass_untouched_and_drop_stops_the_proxy() {
        let session = session();
        let proxy = start(&session, FaultPlan::always(FaultKind::Reset));
        if session.emulator.hooks {
            let (status, body) =
                crate::harness::request(&proxy.endpoint(), "POST", "/moto-api/reset", "").unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(proxy.stats().requests, 0);
        }
        let address = proxy.endpoint().trim_start_matches("http://").to_owned();
        let mut idle = TcpStream::connect(&address).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Let the acceptor register the idle connection.
        thread::sleep(Duration::from_millis(50));
        let began = Instant::now();
        drop(proxy);
        assert!(began.elapsed() < Duration::from_secs(1));
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0);
        assert!(TcpStream::connect(&address).is_err());
    }
}
