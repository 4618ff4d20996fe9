//! The cleanup Lambda as AWS runs it: the real `bootstrap` binary (feature `lambda`) against a
//! Lambda Runtime API served here on loopback (`/2018-06-01/runtime/invocation/next`, `/response`,
//! `/error`, `/init/error`), with the AWS emulator as AWS. Covers a dry run from an EventBridge
//! schedule (zero mutating calls), a real retirement, bad events (`BadInput`) and a missing
//! service among others (`CleanupFailed`, the others' results still logged).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_autoscaling::Client as AsgClient;
use serde_json::{Value, json};

use super::harness::{Seeded, Session, session};

/// What the function posted for one invocation.
#[derive(Debug, Clone)]
struct Posted {
    request_id: String,
    /// `response` or `error`.
    kind: String,
    body: Value,
}

#[derive(Default)]
struct ApiState {
    events: VecDeque<(String, Value)>,
    posted: Vec<Posted>,
    init_errors: Vec<Value>,
    /// Every request line served, in order.
    requests: Vec<String>,
}

/// A Lambda Runtime API serving a fixed list of events, one per `next`; once they are all
/// handed out, `next` blocks as it does on Lambda between invocations.
struct RuntimeApi {
    address: String,
    state: Arc<Mutex<ApiState>>,
    stop: Arc<AtomicBool>,
}

impl RuntimeApi {
    fn start(events: Vec<Value>) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the runtime API");
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(ApiState {
            events: events
                .into_iter()
                .enumerate()
                .map(|(i, e)| (format!("req-{i}-{}", std::process::id()), e))
                .collect(),
            ..ApiState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (state.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (state, stop) = (state2.clone(), stop2.clone());
                        std::thread::spawn(move || serve(stream, &state, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        RuntimeApi {
            address,
            state,
            stop,
        }
    }

    fn posted(&self) -> Vec<Posted> {
        self.state.lock().unwrap().posted.clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One connection: HTTP/1.1 requests, kept alive, until the client closes it or the test ends.
fn serve(stream: TcpStream, state: &Mutex<ApiState>, stop: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let Some((method, path, headers, body)) = read_request(&mut reader, stop) else {
            return;
        };
        state
            .lock()
            .unwrap()
            .requests
            .push(format!("{method} {path}"));
        let base = "/2018-06-01/runtime";
        if method == "GET" && path == format!("{base}/invocation/next") {
            // The next event, or wait (as Lambda does) until the test ends.
            let next = loop {
                if let Some(next) = state.lock().unwrap().events.pop_front() {
                    break next;
                }
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let (id, event) = next;
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 120_000;
            let body = event.to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Lambda-Runtime-Aws-Request-Id: {id}\r\n\
                 Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: \
                 arn:aws:lambda:us-east-1:123456789012:function:greenlight-cleanup\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if out.write_all(response.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let parsed: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        let invocation = path
            .strip_prefix(&format!("{base}/invocation/"))
            .and_then(|rest| rest.rsplit_once('/'));
        let status = match (method.as_str(), invocation) {
            ("POST", Some((id, kind))) if kind == "response" || kind == "error" => {
                let mut body = parsed;
                if kind == "error"
                    && let Some(t) = headers.get("lambda-runtime-function-error-type")
                {
                    body["header_error_type"] = Value::String(t.clone());
                }
                state.lock().unwrap().posted.push(Posted {
                    request_id: id.to_owned(),
                    kind: kind.to_owned(),
                    body,
                });
                "202 Accepted"
            }
            ("POST", None) if path == format!("{base}/init/error") => {
                state.lock().unwrap().init_errors.push(parsed);
                "202 Accepted"
            }
            _ => "404 Not Found",
        };
        let reply = "{\"status\":\"OK\"}";
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

type Request = (
    String,
    String,
    std::collections::HashMap<String, String>,
    Vec<u8>,
);

/// One request (method, path, lower-cased headers, body: by Content-Length or chunked), or
/// `None` when the connection closes or the test ends.
fn read_request(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<Request> {
    let mut line = String::new();
    let read_line = |reader: &mut BufReader<TcpStream>, line: &mut String| -> Option<()> {
        loop {
            match reader.read_line(line) {
                Ok(0) => return None,
                Ok(_) => return Some(()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if stop.load(Ordering::SeqCst) {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
    };
    read_line(reader, &mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = std::collections::HashMap::new();
    loop {
        let mut header = String::new();
        read_line(reader, &mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            read_line(reader, &mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = headers.get("content-length") {
        let mut chunk = vec![0; length.parse().ok()?];
        reader.read_exact(&mut chunk).ok()?;
        body = chunk;
    }
    Some((method, path, headers, body))
}

/// What one run of the bootstrap produced.
struct Run {
    posted: Vec<Posted>,
    /// stdout's JSON lines.
    log: Vec<Value>,
    stderr: String,
    init_errors: Vec<Value>,
    requests: Vec<String>,
}

/// Runs the `bootstrap` binary until it has answered every event (at most two minutes), with
/// the emulator's AWS environment (`aws`) and the function's `env`.
fn bootstrap(aws: &[(&'static str, String)], env: &[(&str, &str)], events: Vec<Value>) -> Run {
    // GREENLIGHT_TEST_BOOTSTRAP runs these tests against another build, e.g. the `bootstrap`
    // in a release zip of scripts/release.sh. Else cargo's, set only when the binary is built,
    // i.e. with --features lambda (the tests are ignored without it).
    let binary = match (
        std::env::var("GREENLIGHT_TEST_BOOTSTRAP"),
        option_env!("CARGO_BIN_EXE_bootstrap"),
    ) {
        (Ok(path), _) => path,
        (Err(_), Some(built)) => built.to_owned(),
        (Err(_), None) => panic!("the bootstrap binary is built with --features lambda only"),
    };
    let count = events.len();
    let api = RuntimeApi::start(events);
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(aws.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "greenlight-cleanup")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/greenlight-cleanup",
        )
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/25/[$LATEST]0123456789abcdef",
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start bootstrap");
    let started = Instant::now();
    let exited = loop {
        if api.posted().len() >= count || started.elapsed() > Duration::from_secs(120) {
            break None;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if exited.is_none() {
        // The bootstrap is done with the last event once it asks for the next one: wait for that
        // (bounded) so the log and the request list are complete, whatever the machine's load.
        let asked = || {
            let state = api.state.lock().unwrap();
            state
                .requests
                .iter()
                .filter(|r| r.ends_with("/invocation/next"))
                .count()
        };
        let waiting = Instant::now();
        while asked() <= count && waiting.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let stderr = read(&stderr);
    let log = read(&stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}\n{stderr}"))
        })
        .collect();
    let state = api.state.lock().unwrap();
    let run = Run {
        posted: state.posted.clone(),
        log,
        stderr,
        init_errors: state.init_errors.clone(),
        requests: state.requests.clone(),
    };
    assert!(
        exited.is_none(),
        "bootstrap exited ({exited:?}) before answering every event: {}",
        run.stderr
    );
    assert_eq!(run.posted.len(), count, "{}", run.stderr);
    assert!(run.init_errors.is_empty(), "{:?}", run.init_errors);
    run
}

impl Run {
    /// The log's `cleanup_done` line for the `n`th invocation.
    fn done(&self, n: usize) -> &Value {
        let id = &self.posted[n].request_id;
        self.log
            .iter()
            .find(|l| l["event"] == "cleanup_done" && l["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no cleanup_done for {id}: {:#?}", self.log))
    }
}

fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {report:#}"))
        .iter()
        .find(|s| s["service"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// (desired capacity, instances) of an Auto Scaling group, `None` once it is gone.
fn group(s: &Session, name: &str) -> Option<(i32, usize)> {
    let asg = AsgClient::new(&block_on(s.sdk()));
    let out = block_on(
        asg.describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send(),
    )
    .unwrap();
    out.auto_scaling_groups()
        .first()
        .filter(|g| g.status().is_none())
        .map(|g| {
            (
                g.desired_capacity().unwrap_or_default(),
                g.instances().len(),
            )
        })
}

fn deploy(s: &Session, seeded: &Seeded, release: &str, image: usize) {
    let out = s
        .greenlight(&seeded.config)
        .args([
            "deploy",
            "--release",
            release,
            "--image-id",
            &seeded.image(image),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy {release}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The seeded fleet, then v2 and v3 deployed with `keep_warm = "1s"` and a 1 s deregistration
/// delay: v3 live, v2 a warm fleet greenlight made, expired a moment later.
fn warm_fleet_expired(s: &Session, service: &str) -> Seeded {
    let seeded = s.seed(
        service,
        &["--keep-warm", "1s", "--deregistration-delay", "1"],
    );
    deploy(s, &seeded, "v2", 1);
    deploy(s, &seeded, "v3", 2);
    std::thread::sleep(Duration::from_millis(1500));
    seeded
}

fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-25T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/greenlight-cleanup"],
        "detail": {}
    })
}

#[test]
#[cfg_attr(not(feature = "lambda"), ignore = "needs --features lambda")]
fn a_scheduled_dry_run_over_all_services_plans_the_retirement_and_changes_nothing() {
    let s = session();
    if !s.emulator.hooks {
        return; // the request log is the emulator's
    }
    let seeded = warm_fleet_expired(&s, "checkout");
    let warm = seeded.fleet("v2");
    let mark = s.request_mark();
    let run = bootstrap(
        &s.aws_env(),
        &[
            ("GREENLIGHT_SERVICES", "all"),
            ("GREENLIGHT_DRY_RUN", "true"),
        ],
        vec![scheduled_event()],
    );
    assert_eq!(s.mutations_since(mark), Vec::<String>::new());
    let posted = &run.posted[0];
    assert_eq!(posted.kind, "response", "{:#}", posted.body);
    let report = &posted.body;
    assert_eq!(report["dry_run"], true, "{report:#}");
    let checkout = service(report, "checkout");
    assert_eq!(checkout["outcome"], "done", "{checkout:#}");
    assert_eq!(checkout["applied"], json!([]));
    let planned = checkout["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["subject"]["name"] == warm.as_str() && i["decision"] == "act")
        .unwrap_or_else(|| panic!("no action planned for {warm}: {checkout:#}"));
    assert_eq!(planned["action"], "scale_down", "{planned}");
    assert_eq!(
        group(&s, &warm),
        Some((2, 2)),
        "a dry run changed the fleet"
    );
    // Logged: the events as they happened, then the report, each line with the request id.
    assert_eq!(&run.done(0)["services"], &report["services"]);
    assert!(
        run.log
            .iter()
            .any(|l| l["event"] == "cleanup_item" && l["dry_run"] == true),
        "{:#?}",
        run.log
    );
    assert!(
        run.log
            .iter()
            .all(|l| l["request_id"] == posted.request_id.as_str())
    );
    assert_eq!(
        run.requests,
        [
            "GET /2018-06-01/runtime/invocation/next".to_owned(),
            format!(
                "POST /2018-06-01/runtime/invocation/{}/response",
                posted.request_id
            ),
            "GET /2018-06-01/runtime/invocation/next".to_owned(),
        ]
    );
}

#[test]
#[cfg_attr(not(feature = "lambda"), ignore = "needs --features lambda")]
fn an_expired_warm_fleet_of_a_named_service_is_retired() {
    let s = session();
    let seeded = warm_fleet_expired(&s, "checkout");
    let (warm, live) = (seeded.fleet("v2"), seeded.fleet("v3"));
    assert_eq!(group(&s, &warm), Some((2, 2)));
    let started = Instant::now();
    let run = bootstrap(
        &s.aws_env(),
        // The environment says dry run and another service; the event overrides both.
        &[
            ("GREENLIGHT_SERVICES", "someone-else"),
            ("GREENLIGHT_DRY_RUN", "true"),
        ],
        vec![json!({"services": [seeded.service], "dry_run": false})],
    );
    let took = started.elapsed();
    let posted = &run.posted[0];
    assert_eq!(posted.kind, "response", "{:#}\n{}", posted.body, run.stderr);
    let report = &posted.body;
    assert_eq!(report["dry_run"], false);
    assert_eq!(
        report["services"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    let checkout = service(report, &seeded.service);
    assert_eq!(checkout["outcome"], "done", "{checkout:#}");
    let applied: Vec<String> = checkout["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["action"].as_str().unwrap(),
                a["fleet"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        applied,
        [format!("scale_down {warm}"), format!("delete_fleet {warm}")],
        "{checkout:#}"
    );
    assert_eq!(group(&s, &warm), None, "the warm fleet is gone");
    assert_eq!(group(&s, &live), Some((2, 2)), "the live fleet is kept");
    assert!(
        run.log
            .iter()
            .any(|l| l["event"] == "cleanup_applied" && l["action"] == "delete_fleet"),
        "{:#?}",
        run.log
    );
    assert_eq!(&run.done(0)["services"], &report["services"]);
    assert!(took < Duration::from_secs(100), "took {took:?}");
}

/// The AWS environment of a run that must make no AWS call: nothing listens there.
fn no_aws() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ("AWS_MAX_ATTEMPTS", "1".into()),
    ]
}

#[test]
#[cfg_attr(not(feature = "lambda"), ignore = "needs --features lambda")]
fn a_bad_event_is_a_bad_input_error_naming_the_field_and_the_function_carries_on() {
    let run = bootstrap(
        &no_aws(),
        &[("GREENLIGHT_DRY_RUN", "true")],
        vec![
            json!({"keep_releases": "five"}),
            json!({"services": "all", "dryrun": false}),
            json!(["checkout"]),
            json!({"keep_failed": "soon"}),
            json!({"services": ["check.out"]}),
        ],
    );
    let expected = [
        "keep_releases",
        "\"dryrun\"",
        "JSON object",
        "keep_failed",
        "services",
    ];
    for (posted, field) in run.posted.iter().zip(expected) {
        assert_eq!(posted.kind, "error", "{:#}", posted.body);
        assert_eq!(posted.body["errorType"], "BadInput", "{:#}", posted.body);
        let message = posted.body["errorMessage"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {message}");
        let logged = run
            .log
            .iter()
            .find(|l| l["request_id"] == posted.request_id.as_str())
            .unwrap_or_else(|| panic!("nothing logged for {}", posted.request_id));
        assert_eq!(logged["event"], "error");
        assert_eq!(logged["error_type"], "BadInput");
        assert_eq!(logged["message"], message);
    }
    assert!(!run.log.iter().any(|l| l["event"] == "cleanup_done"));
}

#[test]
#[cfg_attr(not(feature = "lambda"), ignore = "needs --features lambda")]
fn a_missing_service_fails_the_invocation_and_the_others_results_are_still_logged() {
    let s = session();
    let seeded = warm_fleet_expired(&s, "checkout");
    let warm = seeded.fleet("v2");
    let missing = if s.emulator.hooks {
        "nope".to_owned()
    } else {
        format!("{}-nope", seeded.service)
    };
    let run = bootstrap(
        &s.aws_env(),
        &[(
            "GREENLIGHT_SERVICES",
            &format!("{missing},{}", seeded.service),
        )],
        vec![scheduled_event()],
    );
    let posted = &run.posted[0];
    assert_eq!(posted.kind, "error", "{:#}", posted.body);
    assert_eq!(
        posted.body["errorType"], "CleanupFailed",
        "{:#}",
        posted.body
    );
    let message = posted.body["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("cleanup failed for 1 of 2 services: {missing}: ")),
        "{message}"
    );
    assert!(message.contains("no fleet is tagged"), "{message}");
    assert!(!message.contains('\n'));
    // The other service was cleaned all the same, and the whole report is in the log.
    let done = run.done(0);
    assert_eq!(service(done, &missing)["outcome"], "failed", "{done:#}");
    assert_eq!(service(done, &missing)["exit_code"], 2, "{done:#}");
    assert_eq!(
        service(done, &seeded.service)["outcome"],
        "done",
        "{done:#}"
    );
    assert_eq!(
        group(&s, &warm),
        None,
        "the other service's warm fleet is retired"
    );
    let last = run.log.last().unwrap();
    assert_eq!(last["event"], "error", "{last}");
    assert_eq!(last["error_type"], "CleanupFailed");
}
