//! Logs on stderr (`-v`, `-vv`, `--log-format json`, `RUST_LOG`) against the AWS emulator: one
//! line per AWS call attempt, each naming its operation and request id, as many as the emulator
//! served (and, through the fault proxy, one per attempt with retries numbered and failures
//! named); the JSON event stream on stdout untouched; nothing at all on stderr without a flag.
//!
//! One emulator test (two services seeded, about 12 s) and two without AWS (milliseconds).

use std::collections::BTreeMap;

use serde_json::Value;

use super::harness::{Seeded, Session, request, session};
use super::proxy::{FaultKind, FaultPlan, FaultProxy};

/// One greenlight run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{self}");
        self
    }

    /// stdout as the JSON event stream: every line one event object.
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                let event: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line not JSON ({e}): {l:?}\n{self}"));
                assert!(event["event"].is_string(), "not an event: {l}\n{self}");
                event
            })
            .collect()
    }
}

fn run(s: &Session, seeded: &Seeded, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = s.greenlight(&seeded.config);
    cmd.args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run greenlight");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The events as (event, action) pairs, the service's own names taken out: what a pipeline
/// reads, comparable between two services.
fn shape(events: &[Value], service: &str) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap_or_default(),
                e["action"].as_str().unwrap_or_default()
            )
            .replace(service, "SERVICE")
        })
        .collect()
}

/// The operations of the requests greenlight made (user agent `app/greenlight`) that the
/// emulator logged from `since` on, and the log's total (the next mark).
fn greenlight_requests(s: &Session, since: usize) -> (Vec<String>, usize) {
    let (status, body) = request(
        &s.emulator.endpoint,
        "GET",
        &format!("/_greenlight/requests?since={since}"),
        "",
    )
    .expect("read the request log");
    assert_eq!(status, 200, "request log: {body}");
    let log: Value = serde_json::from_str(&body).expect("request log JSON");
    let total = log["total"].as_u64().expect("total") as usize;
    let ours = log["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["app"] == "greenlight")
        .map(|r| r["action"].as_str().unwrap_or("?").to_owned())
        .collect();
    (ours, total)
}

/// One AWS call attempt as a log line shows it.
#[derive(Debug)]
struct Call {
    operation: String,
    attempt: u32,
    request_id: Option<String>,
    /// The HTTP status, when an answer came.
    status: Option<u16>,
    /// The AWS error code, or what went wrong without one (`connection failed`, `timeout`).
    error: Option<String>,
}

/// `name="value"` or `name=value` in a text log line's span fields.
fn text_field(fields: &str, name: &str) -> Option<String> {
    let start = [' ', '{']
        .iter()
        .find_map(|c| fields.find(&format!("{c}{name}=")))?
        + name.len()
        + 2;
    let rest = &fields[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted[..quoted.find('"')?].to_owned(),
        None => rest.split([' ', '}']).next()?.to_owned(),
    })
}

/// The AWS call lines of a text log: `… DEBUG <spans>:aws{service=… operation=… attempt=…
/// latency_ms=… status=… request_id=…}: greenlight::aws: AWS call`.
fn text_calls(stderr: &str) -> Vec<Call> {
    stderr
        .lines()
        .filter(|l| l.contains(" greenlight::aws: AWS call"))
        .map(|l| {
            let fields = &l[l.find("aws{").unwrap_or_else(|| panic!("no aws span: {l}"))..];
            let field =
                |name| text_field(fields, name).unwrap_or_else(|| panic!("no {name} in {l:?}"));
            field("service");
            field("latency_ms").parse::<u64>().expect("latency_ms");
            Call {
                operation: field("operation"),
                attempt: field("attempt").parse().expect("attempt"),
                request_id: text_field(fields, "request_id"),
                status: text_field(fields, "status").map(|s| s.parse().expect("status")),
                error: text_field(fields, "error"),
            }
        })
        .collect()
}

/// The AWS call lines of a JSON log (their fields are the `aws` span's).
fn json_calls(lines: &[Value]) -> Vec<Call> {
    lines
        .iter()
        .filter(|l| l["target"] == "greenlight::aws")
        .map(|l| {
            let span = &l["span"];
            assert_eq!(span["name"], "aws", "{l}");
            assert!(span["service"].is_string(), "{l}");
            assert!(span["latency_ms"].is_u64(), "{l}");
            let text = |name: &str| span[name].as_str().map(str::to_owned);
            Call {
                operation: text("operation").unwrap_or_default(),
                attempt: span["attempt"].as_u64().expect("attempt") as u32,
                request_id: text("request_id"),
                status: span["status"].as_u64().map(|s| s as u16),
                error: text("error"),
            }
        })
        .collect()
}

fn counts(operations: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for op in operations {
        *counts.entry(op).or_default() += 1;
    }
    counts
}

/// Every logged call has a request id, and the calls are exactly the requests the emulator
/// served greenlight, operation by operation.
fn assert_calls_match(s: &Session, calls: &[Call], since: usize, run: &Run) -> usize {
    assert!(!calls.is_empty(), "no AWS call lines\n{run}");
    for call in calls {
        assert!(
            call.request_id.as_ref().is_some_and(|id| !id.is_empty()),
            "{call:?} has no request id\n{run}"
        );
        assert!(call.status.is_some(), "{call:?} has no HTTP status\n{run}");
        assert_ne!(call.operation, "?", "{call:?}");
    }
    let (served, total) = greenlight_requests(s, since);
    let logged = counts(calls.iter().map(|c| c.operation.clone()));
    assert_eq!(
        logged,
        counts(served.clone()),
        "AWS call lines (left) against the requests the emulator served greenlight (right)\n{run}"
    );
    assert_eq!(calls.len(), served.len());
    total
}

/// Drops what differs from one run to the next (times), to compare two outputs.
fn timeless(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.retain(|k, _| !matches!(k.as_str(), "time" | "elapsed_ms"));
            for v in map.values_mut() {
                *v = timeless(v.take());
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = timeless(v.take());
            }
        }
        _ => {}
    }
    value
}

#[test]
fn logs_go_to_stderr_one_line_per_aws_call_and_leave_stdout_alone() {
    let s = session();
    // Two services deployed alike, one without logs and one with -vv: same events.
    let plain = s.seed("logs-plain", &[]);
    let loud = s.seed("logs-loud", &[]);

    // No flag: nothing on stderr on success.
    let quiet = run(
        &s,
        &plain,
        &[
            "deploy",
            "--release",
            "v2",
            "--image-id",
            &plain.image(1),
            "--output",
            "json",
        ],
        &[],
    )
    .ok();
    assert_eq!(quiet.stderr, "", "{quiet}");
    let quiet_events = quiet.events();

    // -vv: the same events on stdout, and on stderr what happened, each AWS call included.
    let mark = if s.emulator.hooks {
        s.request_mark()
    } else {
        0
    };
    let vv = run(
        &s,
        &loud,
        &[
            "deploy",
            "--release",
            "v2",
            "--image-id",
            &loud.image(1),
            "--output",
            "json",
            "-vv",
        ],
        &[],
    )
    .ok();
    let vv_events = vv.events();
    assert_eq!(
        shape(&vv_events, &loud.service),
        shape(&quiet_events, &plain.service),
        "-vv changed the event stream\n{vv}"
    );
    assert!(!vv.stderr.contains('\x1b'), "colour on a pipe\n{vv}");
    for line in vv.stderr.lines() {
        // Text lines: time, level, spans and target, message.
        let mut words = line.split_whitespace();
        let (time, level) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert!(["INFO", "DEBUG", "WARN"].contains(&level), "{line}\n{vv}");
    }
    // observe, decide, apply: one "applied" line per step event, in its apply span.
    for event in vv_events.iter().filter(|e| e["event"] == "step") {
        let action = event["action"].as_str().unwrap();
        assert!(
            vv.stderr.lines().any(|l| l.contains(" INFO ")
                && l.contains(&format!("apply{{action=\"{action}\""))
                && l.contains(&format!("applied {action}"))),
            "no applied line for {action}\n{vv}"
        );
    }
    assert!(
        vv.stderr
            .contains("observe: greenlight::engine: observed traffic all to a; a: logs-loud-blue"),
        "{vv}"
    );
    assert!(
        vv.stderr
            .contains("decide: greenlight::engine: decided act flip on fleet logs-loud-v2"),
        "{vv}"
    );
    let calls = text_calls(&vv.stderr);
    // Observations' calls are in the observe span.
    assert!(vv.stderr.contains("observe:aws{"), "{vv}");
    let mut mark = mark;
    if s.emulator.hooks {
        mark = assert_calls_match(&s, &calls, mark, &vv);
    }

    // --log-format json: every line an object with time, level, target, fields and spans;
    // status's stdout is the same document as without logs.
    let quiet_status = run(&s, &loud, &["status", "--output", "json"], &[]).ok();
    assert_eq!(quiet_status.stderr, "");
    if s.emulator.hooks {
        mark = greenlight_requests(&s, mark).1;
    }
    let json = run(
        &s,
        &loud,
        &["status", "--output", "json", "-vv", "--log-format", "json"],
        &[],
    )
    .ok();
    let parse = |text: &str| -> Value { serde_json::from_str(text).expect("status JSON") };
    assert_eq!(
        timeless(parse(&json.stdout)),
        timeless(parse(&quiet_status.stdout)),
        "{json}"
    );
    let lines: Vec<Value> = json
        .stderr
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}\n{json}"));
            assert!(line["timestamp"].is_string(), "{l}");
            assert!(line["level"].is_string(), "{l}");
            assert!(line["target"].is_string(), "{l}");
            assert!(line["fields"]["message"].is_string(), "{l}");
            line
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["target"] == "greenlight::engine"),
        "{json}"
    );
    let calls = json_calls(&lines);
    if s.emulator.hooks {
        assert_calls_match(&s, &calls, mark, &json);
    }

    // Through a proxy that throttles, fails and drops some requests: one line per attempt
    // the proxy saw, retries numbered, each failure with its code (or what happened).
    let plan = FaultPlan::new(
        5,
        0.3,
        vec![
            FaultKind::Throttle,
            FaultKind::ServerError,
            FaultKind::Reset,
        ],
    );
    assert!(plan.sequence(8).iter().flatten().count() >= 2, "{plan:?}");
    let proxy = FaultProxy::start(&s.emulator.endpoint, plan);
    let faulty = run(
        &s,
        &loud,
        &["status", "--output", "json", "-vv"],
        &[("AWS_ENDPOINT_URL", &proxy.endpoint())],
    );
    let stats = proxy.stats();
    let calls = text_calls(&faulty.stderr);
    assert_eq!(
        counts(calls.iter().map(|c| c.operation.clone())),
        counts(
            stats.log.iter().map(|(action, _)| action
                .split(':')
                .nth(1)
                .unwrap_or(action)
                .to_owned())
        ),
        "AWS call lines (left) against the requests the proxy saw (right)\n{stats}\n{faulty}"
    );
    let fault = |kind: &str| stats.faults.get(kind).copied().unwrap_or(0) as usize;
    assert!(
        fault("Throttle") + fault("ServerError") + fault("Reset") >= 2,
        "{stats}"
    );
    let answered_with_error = calls
        .iter()
        .filter(|c| {
            c.status.is_some_and(|s| s >= 400)
                && c.request_id.is_some()
                && c.error.as_ref().is_some_and(|e| {
                    [
                        "Throttling",
                        "RequestLimitExceeded",
                        "InternalFailure",
                        "InternalError",
                        "ServiceUnavailable",
                    ]
                    .contains(&e.as_str())
                })
        })
        .count();
    assert_eq!(
        answered_with_error,
        fault("Throttle") + fault("ServerError"),
        "{stats}\n{faulty}"
    );
    let unanswered = calls
        .iter()
        .filter(|c| c.status.is_none() && c.request_id.is_none() && c.error.is_some())
        .count();
    assert_eq!(unanswered, fault("Reset"), "{stats}\n{faulty}");
    if faulty.code == Some(0) {
        // Every fault was retried: as many later attempts as faults.
        let retries = calls.iter().filter(|c| c.attempt > 1).count();
        assert_eq!(retries, stats.faulted() as usize, "{stats}\n{faulty}");
        assert_eq!(
            timeless(parse(&faulty.stdout)),
            timeless(parse(&quiet_status.stdout)),
            "{faulty}"
        );
    }

    // RUST_LOG decides instead of the flags: greenlight's info lines only (no AWS calls).
    let info = run(
        &s,
        &plain,
        &["rollback"],
        &[("RUST_LOG", "greenlight=info")],
    )
    .ok();
    assert!(info.stderr.contains("applied flip"), "{info}");
    assert!(
        info.stderr.lines().all(|l| l.contains(" INFO ")),
        "only info lines\n{info}"
    );
    assert!(!info.stderr.contains("greenlight::aws"), "{info}");
    // And over -vv: RUST_LOG=off silences everything.
    let off = run(&s, &plain, &["status", "-vv"], &[("RUST_LOG", "off")]).ok();
    assert_eq!(off.stderr, "", "{off}");

    // --color always colours even on a pipe; NO_COLOR is for auto only.
    let colour = run(
        &s,
        &plain,
        &["status", "-v", "--color", "always"],
        &[("NO_COLOR", "1")],
    )
    .ok();
    assert!(colour.stderr.contains('\x1b'), "{colour}");
}

/// Without AWS: the config is missing, so the command fails before any call.
fn missing_config(args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = assert_cmd::Command::cargo_bin("greenlight").expect("binary built");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run greenlight");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_error_is_still_one_line_without_flags_and_the_last_line_with_them() {
    let plain = missing_config(&["status"], &[]);
    assert_eq!(plain.code, Some(2), "{plain}");
    assert_eq!(plain.stderr.lines().count(), 1, "{plain}");
    assert!(plain.stderr.starts_with("error: config "), "{plain}");

    let json = missing_config(
        &["status", "--output", "json", "-vv", "--log-format", "json"],
        &[],
    );
    assert_eq!(json.code, Some(2), "{json}");
    let events = json.events();
    assert_eq!(events.last().unwrap()["event"], "error", "{json}");
    let last = json.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: config ") && last.contains("missing.toml not found"),
        "{json}"
    );
}

#[test]
fn an_invalid_rust_log_is_named_and_the_flags_apply() {
    let run = missing_config(&["status"], &[("RUST_LOG", "greenlight=loud")]);
    assert_eq!(run.code, Some(2), "{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{run}");
    assert!(
        lines[0].starts_with("warning: RUST_LOG is not a valid log filter"),
        "{run}"
    );
    assert!(lines[1].starts_with("error: config "), "{run}");
}
