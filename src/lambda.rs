//! `greenlight cleanup` as an AWS Lambda function (custom runtime `provided.al2023`, the
//! `bootstrap` binary, feature `lambda`), run on an EventBridge schedule.
//!
//! Which services and what to keep come from the environment (`GREENLIGHT_SERVICES`,
//! `GREENLIGHT_DRY_RUN`, `GREENLIGHT_KEEP_RELEASES`, `GREENLIGHT_KEEP_FAILED`), overridden field by
//! field by the event: `{"services": "all" | ["checkout", …], "dry_run": true, "keep_releases": 5,
//! "keep_failed": "1h"}` (every key optional). An EventBridge event (a schedule's `Scheduled Event`)
//! carries none of these: it runs with the environment's settings.
//!
//! Every cleanup event is logged as one JSON line on stdout (CloudWatch Logs), and the report as
//! a last `cleanup_done` line. The response is the report; if a service failed, the invocation
//! fails with error type `CleanupFailed` naming each failed service (the others' results are in
//! the logged report). A bad event or environment is error type `BadInput`, naming the field.
//!
//! Logs (what cleanup observes, decides and applies; with `greenlight=debug`, every AWS call) are
//! JSON lines on stderr, each with the invocation's `request_id` in its span: the filter is
//! `GREENLIGHT_LOG`, else `RUST_LOG`, else `warn,greenlight=info` ([`crate::logging::init_lambda`]).

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Map, Value};

use crate::aws::AwsCloud;
use crate::core::cleanup::CleanupPolicy;
use crate::core::cloud::Cloud;
use crate::core::names::ServiceName;
use crate::core::spec::{self, DEFAULT_KEEP_FAILED, DEFAULT_KEEP_RELEASES};
use crate::engine::cleanup::{
    self, CleanupEvent, CleanupOptions, CleanupReport, CleanupSink, DEFAULT_CONCURRENCY, Outcome,
    Runner, Scope, ServiceReport,
};
use crate::engine::clock::{Clock, SystemClock};
use crate::engine::lease::holder_from_env;
use crate::engine::stop::Stop;
use crate::exit;

/// Taken off the invocation's deadline, so that waiting for fleets to drain ends (and the lock is
/// handed back) before Lambda stops the function.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

pub const ENV_SERVICES: &str = "GREENLIGHT_SERVICES";
pub const ENV_DRY_RUN: &str = "GREENLIGHT_DRY_RUN";
pub const ENV_KEEP_RELEASES: &str = "GREENLIGHT_KEEP_RELEASES";
pub const ENV_KEEP_FAILED: &str = "GREENLIGHT_KEEP_FAILED";

/// The keys an event may carry.
const FIELDS: [&str; 4] = ["services", "dry_run", "keep_releases", "keep_failed"];

/// Which services one invocation cleans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Services {
    /// Every greenlight service in the region, found from tags.
    All,
    /// These, each by name (in this order, without repeats).
    Named(Vec<ServiceName>),
}

/// What one invocation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub services: Services,
    pub dry_run: bool,
    pub policy: CleanupPolicy,
}

/// How an invocation fails; `error_type` is Lambda's `errorType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LambdaError {
    /// The event or the function's environment is wrong; nothing was done.
    #[error("{0}")]
    BadInput(String),
    /// Cleanup failed for some services (or could not start); the others' results are logged.
    #[error("{0}")]
    CleanupFailed(String),
}

impl LambdaError {
    pub fn error_type(&self) -> &'static str {
        match self {
            LambdaError::BadInput(_) => "BadInput",
            LambdaError::CleanupFailed(_) => "CleanupFailed",
        }
    }
}

impl From<LambdaError> for Diagnostic {
    fn from(error: LambdaError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

impl Default for Request {
    /// Every service, for real, with the config's retention defaults.
    fn default() -> Request {
        Request {
            services: Services::All,
            dry_run: false,
            policy: CleanupPolicy {
                keep_failed: DEFAULT_KEEP_FAILED,
                keep_releases: DEFAULT_KEEP_RELEASES,
            },
        }
    }
}

impl Request {
    /// The function's settings from its environment (`var` reads one variable); unset or empty
    /// variables keep the defaults.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Request, LambdaError> {
        let var = |key: &str| var(key).filter(|v| !v.trim().is_empty());
        let mut request = Request::default();
        if let Some(value) = var(ENV_SERVICES) {
            request.services = services_from_str(ENV_SERVICES, &value)?;
        }
        if let Some(value) = var(ENV_DRY_RUN) {
            request.dry_run = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(LambdaError::BadInput(format!(
                        "{ENV_DRY_RUN}={value:?} is not a boolean; use true or false"
                    )));
                }
            };
        }
        if let Some(value) = var(ENV_KEEP_RELEASES) {
            let n = value.trim().parse::<i64>().map_err(|_| {
                LambdaError::BadInput(format!(
                    "{ENV_KEEP_RELEASES}={value:?} is not a whole number; use 1 to 1000"
                ))
            })?;
            request.policy.keep_releases = keep_releases(ENV_KEEP_RELEASES, n)?;
        }
        if let Some(value) = var(ENV_KEEP_FAILED) {
            request.policy.keep_failed = spec::parse_duration(ENV_KEEP_FAILED, value.trim())
                .map_err(|e| LambdaError::BadInput(e.0))?;
        }
        Ok(request)
    }

    /// These settings overridden by the event's fields. An EventBridge event (it has `source`
    /// and `detail-type`) overrides nothing.
    pub fn with_event(mut self, event: &Value) -> Result<Request, LambdaError> {
        let fields = match event {
            Value::Null => return Ok(self),
            Value::Object(fields) if is_eventbridge(fields) => return Ok(self),
            Value::Object(fields) => fields,
            other => {
                return Err(LambdaError::BadInput(format!(
                    "the event must be a JSON object like {{\"services\": \"all\", \"dry_run\": \
                     true}}, not {}",
                    kind(other)
                )));
            }
        };
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(LambdaError::BadInput(format!(
                "the event has an unknown field {unknown:?}; expected {}",
                FIELDS.join(", ")
            )));
        }
        let field = |key: &str| fields.get(key).filter(|v| !v.is_null());
        if let Some(value) = field("services") {
            self.services = match value {
                Value::String(s) => services_from_str("event field \"services\"", s)?,
                Value::Array(items) => {
                    let mut names = Vec::with_capacity(items.len());
                    for item in items {
                        let Value::String(name) = item else {
                            return Err(LambdaError::BadInput(format!(
                                "event field \"services\" lists {}, not a service name",
                                kind(item)
                            )));
                        };
                        names.push(name.clone());
                    }
                    named_services("event field \"services\"", names)?
                }
                other => {
                    return Err(LambdaError::BadInput(format!(
                        "event field \"services\" is {}; use \"all\" or a list of service names",
                        kind(other)
                    )));
                }
            };
        }
        if let Some(value) = field("dry_run") {
            self.dry_run = value.as_bool().ok_or_else(|| {
                LambdaError::BadInput(format!(
                    "event field \"dry_run\" is {}; use true or false",
                    kind(value)
                ))
            })?;
        }
        if let Some(value) = field("keep_releases") {
            let n = value.as_i64().ok_or_else(|| {
                LambdaError::BadInput(format!(
                    "event field \"keep_releases\" is {}; use a whole number from 1 to 1000",
                    kind(value)
                ))
            })?;
            self.policy.keep_releases = keep_releases("event field \"keep_releases\"", n)?;
        }
        if let Some(value) = field("keep_failed") {
            let Value::String(text) = value else {
                return Err(LambdaError::BadInput(format!(
                    "event field \"keep_failed\" is {}; use a duration like \"1h\" or \"30m\"",
                    kind(value)
                )));
            };
            self.policy.keep_failed = spec::parse_duration("event field \"keep_failed\"", text)
                .map_err(|e| LambdaError::BadInput(e.0))?;
        }
        Ok(self)
    }
}

/// An EventBridge event's envelope (a schedule's, or any rule's): not settings for us.
fn is_eventbridge(fields: &Map<String, Value>) -> bool {
    fields.contains_key("source") && fields.contains_key("detail-type")
}

/// "all", or names separated by commas.
fn services_from_str(what: &str, value: &str) -> Result<Services, LambdaError> {
    if value.trim().eq_ignore_ascii_case("all") {
        return Ok(Services::All);
    }
    named_services(
        what,
        value
            .split(',')
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect(),
    )
}

fn named_services(what: &str, names: Vec<String>) -> Result<Services, LambdaError> {
    let mut parsed: Vec<ServiceName> = Vec::with_capacity(names.len());
    for name in names {
        let name = ServiceName::parse(&name)
            .map_err(|e| LambdaError::BadInput(format!("{what}: {}", e.0)))?;
        if !parsed.contains(&name) {
            parsed.push(name);
        }
    }
    if parsed.is_empty() {
        return Err(LambdaError::BadInput(format!(
            "{what} names no service; use \"all\" or name at least one"
        )));
    }
    Ok(Services::Named(parsed))
}

fn keep_releases(what: &str, n: i64) -> Result<usize, LambdaError> {
    spec::keep_releases(Some(n)).map_err(|_| {
        LambdaError::BadInput(format!(
            "{what} = {n} is out of range; use a number from 1 to 1000"
        ))
    })
}

/// What a JSON value is, for error messages (never the value itself: it may be long).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Where the function's JSON log lines go: stdout (CloudWatch Logs), or a test's recorder.
pub trait Log: Send + Sync {
    fn line(&self, line: Value);
}

/// Cleanup's events as log lines.
struct LogSink<'a>(&'a dyn Log);

impl CleanupSink for LogSink<'_> {
    fn event(&self, event: &CleanupEvent) {
        if let Ok(value) = serde_json::to_value(event) {
            self.0.line(value);
        }
    }
}

/// One invocation: the settings (`defaults`, from the environment) overridden by `event`, cleanup
/// of each service until `deadline`, and the report, logged and returned.
pub async fn handle<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    defaults: &Result<Request, LambdaError>,
    event: &Value,
    deadline: SystemTime,
    log: &dyn Log,
) -> Result<Value, LambdaError> {
    let result = run(runner, defaults, event, deadline, log).await;
    if let Err(error) = &result {
        log.line(serde_json::json!({
            "event": "error",
            "error_type": error.error_type(),
            "message": error.to_string(),
        }));
    }
    result
}

async fn run<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    defaults: &Result<Request, LambdaError>,
    event: &Value,
    deadline: SystemTime,
    log: &dyn Log,
) -> Result<Value, LambdaError> {
    let request = defaults.clone()?.with_event(event)?;
    let options = CleanupOptions {
        dry_run: request.dry_run,
        policy: request.policy,
        deadline,
        concurrency: DEFAULT_CONCURRENCY,
    };
    let sink = LogSink(log);
    let report = match &request.services {
        Services::All => cleanup::cleanup(runner, &Scope::All, &options, &sink)
            .await
            .map_err(|failure| {
                LambdaError::CleanupFailed(one_line(&format!("cleanup failed: {failure}")))
            })?,
        Services::Named(names) => {
            // Each on its own, so that one failing does not hide the others' results.
            let reports: Vec<CleanupReport> = futures::stream::iter(names)
                .map(|name| named(runner, name, &options, &sink))
                .buffered(DEFAULT_CONCURRENCY)
                .collect()
                .await;
            CleanupReport {
                dry_run: options.dry_run,
                services: reports.iter().flat_map(|r| r.services.clone()).collect(),
                stale_locks: reports.into_iter().flat_map(|r| r.stale_locks).collect(),
            }
        }
    };
    let value = serde_json::to_value(&report).unwrap_or_default();
    let mut done = Map::new();
    done.insert("event".into(), "cleanup_done".into());
    if let Value::Object(fields) = &value {
        done.extend(fields.clone());
    }
    log.line(Value::Object(done));

    let failures: Vec<String> = report
        .services
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Failed { message, .. } => Some(format!("{}: {message}", s.service)),
            _ => None,
        })
        .collect();
    if failures.is_empty() {
        Ok(value)
    } else {
        Err(LambdaError::CleanupFailed(one_line(&format!(
            "cleanup failed for {} of {} services: {}",
            failures.len(),
            report.services.len(),
            failures.join("; ")
        ))))
    }
}

/// One service by name; a failure before it could be looked at (no such service, AWS
/// unreachable) is that service's outcome, not the invocation's.
async fn named<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    name: &ServiceName,
    options: &CleanupOptions,
    sink: &dyn CleanupSink,
) -> CleanupReport {
    match cleanup::cleanup(runner, &Scope::Named(name.clone()), options, sink).await {
        Ok(report) => report,
        Err(failure) => {
            let outcome = Outcome::Failed {
                exit_code: exit::code(&failure),
                message: failure.to_string(),
            };
            sink.event(&CleanupEvent::CleanupService {
                service: name.to_string(),
                outcome: outcome.clone(),
            });
            CleanupReport {
                dry_run: options.dry_run,
                services: vec![ServiceReport {
                    service: name.to_string(),
                    outcome,
                    items: Vec::new(),
                    applied: Vec::new(),
                }],
                stale_locks: Vec::new(),
            }
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The deadline cleanup works to: the invocation's, less [`DEADLINE_MARGIN`], and never before
/// `now` (then nothing is waited for; what is left draining is finished by the next run).
pub fn work_deadline(invocation: SystemTime, now: SystemTime) -> SystemTime {
    invocation
        .checked_sub(DEADLINE_MARGIN)
        .filter(|deadline| *deadline > now)
        .unwrap_or(now)
}

/// Log lines on stdout, one JSON object each, with the invocation's request id.
struct Stdout<'a> {
    request_id: &'a str,
}

impl Log for Stdout<'_> {
    fn line(&self, mut line: Value) {
        if let Value::Object(fields) = &mut line {
            fields.insert("request_id".into(), self.request_id.into());
        }
        println!("{line}");
    }
}

/// The `bootstrap` binary: the Lambda runtime loop, invocation after invocation.
pub fn main() -> ExitCode {
    crate::logging::init_lambda();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("greenlight: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenlight: the Lambda runtime stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    // Lambda sets AWS_REGION and the role's credentials in the environment.
    let cloud = AwsCloud::connect(None, None).await;
    let defaults = match cloud.region() {
        None => Err(LambdaError::BadInput(
            "no AWS region: set AWS_REGION in the function's environment".into(),
        )),
        Some(_) => Request::from_env(|key| std::env::var(key).ok()),
    };
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "lambda".into());
    let stop = Stop::new();
    let (cloud, defaults, function, stop) = (&cloud, &defaults, function.as_str(), &stop);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let LambdaEvent { payload, context } = event;
        let mut holder = holder_from_env();
        holder.who = format!("{function}@{}", holder.host);
        holder.run = Some(format!(
            "Lambda function {function} request {}",
            context.request_id
        ));
        let runner = Runner {
            cloud,
            clock: &SystemClock,
            holder: &holder,
            // Another invocation's process is in another sandbox, out of sight: a lock is
            // taken over only once it expires.
            alive: |_| true,
            stop,
        };
        let deadline = work_deadline(context.deadline(), SystemClock.now());
        let log = Stdout {
            request_id: &context.request_id,
        };
        let span = tracing::info_span!("invocation", request_id = %context.request_id);
        tracing::Instrument::instrument(handle(&runner, defaults, &payload, deadline, &log), span)
            .await
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::fake::{FakeClock, FakeCloud};

    fn env(vars: &[(&str, &str)]) -> Result<Request, LambdaError> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Request::from_env(|key| vars.get(key).cloned())
    }

    fn names(names: &[&str]) -> Services {
        Services::Named(
            names
                .iter()
                .map(|n| ServiceName::parse(n).unwrap())
                .collect(),
        )
    }

    fn bad(result: Result<Request, LambdaError>) -> String {
        match result {
            Err(LambdaError::BadInput(message)) => message,
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    #[test]
    fn without_environment_every_service_is_cleaned_with_the_config_defaults() {
        let request = env(&[]).unwrap();
        assert_eq!(request.services, Services::All);
        assert!(!request.dry_run);
        assert_eq!(request.policy.keep_releases, 5);
        assert_eq!(request.policy.keep_failed, Duration::from_secs(3600));
        // Empty variables (a CloudFormation parameter left blank) are unset.
        assert_eq!(
            env(&[(ENV_SERVICES, " "), (ENV_KEEP_FAILED, "")]).unwrap(),
            request
        );
    }

    #[test]
    fn the_environment_sets_services_dry_run_and_retention() {
        let request = env(&[
            (ENV_SERVICES, " checkout, cart ,,checkout"),
            (ENV_DRY_RUN, "TRUE"),
            (ENV_KEEP_RELEASES, "3"),
            (ENV_KEEP_FAILED, "30m"),
        ])
        .unwrap();
        assert_eq!(request.services, names(&["checkout", "cart"]));
        assert!(request.dry_run);
        assert_eq!(request.policy.keep_releases, 3);
        assert_eq!(request.policy.keep_failed, Duration::from_secs(1800));
        assert_eq!(
            env(&[(ENV_SERVICES, "ALL"), (ENV_DRY_RUN, "0")])
                .unwrap()
                .services,
            Services::All
        );
    }

    #[test]
    fn a_bad_environment_names_the_variable() {
        for (vars, expected) in [
            (vec![(ENV_DRY_RUN, "maybe")], ENV_DRY_RUN),
            (vec![(ENV_KEEP_RELEASES, "five")], ENV_KEEP_RELEASES),
            (vec![(ENV_KEEP_RELEASES, "0")], ENV_KEEP_RELEASES),
            (vec![(ENV_KEEP_FAILED, "soon")], ENV_KEEP_FAILED),
            (vec![(ENV_KEEP_FAILED, "0s")], ENV_KEEP_FAILED),
            (vec![(ENV_SERVICES, "check.out")], ENV_SERVICES),
            (vec![(ENV_SERVICES, ",,")], ENV_SERVICES),
        ] {
            let message = bad(env(&vars));
            assert!(message.contains(expected), "{vars:?}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn the_event_overrides_the_environment_field_by_field() {
        let defaults = env(&[
            (ENV_SERVICES, "checkout"),
            (ENV_DRY_RUN, "true"),
            (ENV_KEEP_RELEASES, "3"),
        ])
        .unwrap();
        let request = defaults
            .clone()
            .with_event(&json!({"dry_run": false, "keep_failed": "2h"}))
            .unwrap();
        assert_eq!(request.services, names(&["checkout"]));
        assert!(!request.dry_run);
        assert_eq!(request.policy.keep_releases, 3);
        assert_eq!(request.policy.keep_failed, Duration::from_secs(7200));

        let request = defaults
            .clone()
            .with_event(&json!({"services": "all", "keep_releases": 10}))
            .unwrap();
        assert_eq!(request.services, Services::All);
        assert!(request.dry_run);
        assert_eq!(request.policy.keep_releases, 10);

        let request = defaults
            .clone()
            .with_event(&json!({"services": ["cart", "search", "cart"], "dry_run": null}))
            .unwrap();
        assert_eq!(request.services, names(&["cart", "search"]));
        assert!(request.dry_run, "null keeps the default");
        assert_eq!(
            defaults
                .clone()
                .with_event(&json!({"services": "cart,search"}))
                .unwrap()
                .services,
            names(&["cart", "search"])
        );
        assert_eq!(defaults.clone().with_event(&json!({})).unwrap(), defaults);
        assert_eq!(defaults.clone().with_event(&Value::Null).unwrap(), defaults);
    }

    #[test]
    fn an_eventbridge_schedule_runs_with_the_environment() {
        let defaults = env(&[(ENV_SERVICES, "checkout"), (ENV_DRY_RUN, "yes")]).unwrap();
        let scheduled = json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-25T12:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/greenlight-cleanup"],
            "detail": {}
        });
        assert_eq!(defaults.clone().with_event(&scheduled).unwrap(), defaults);
    }

    #[test]
    fn a_bad_event_names_the_field() {
        let defaults = Request::default();
        for (event, expected) in [
            (json!({"keep_releases": "five"}), "keep_releases"),
            (json!({"keep_releases": 0}), "keep_releases"),
            (json!({"keep_releases": 2.5}), "keep_releases"),
            (json!({"keep_failed": 3600}), "keep_failed"),
            (json!({"keep_failed": "an hour"}), "keep_failed"),
            (json!({"dry_run": "yes"}), "dry_run"),
            (json!({"services": 3}), "services"),
            (json!({"services": []}), "services"),
            (json!({"services": [""]}), "services"),
            (json!({"services": ["ok", 7]}), "services"),
            (json!({"services": ["Check Out"]}), "services"),
            (json!({"dryrun": true}), "dryrun"),
            (json!([1, 2]), "JSON object"),
            (json!("all"), "JSON object"),
        ] {
            let message = bad(defaults.clone().with_event(&event));
            assert!(message.contains(expected), "{event}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn the_deadline_leaves_a_margin_and_is_never_in_the_past() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            work_deadline(now + Duration::from_secs(900), now),
            now + Duration::from_secs(880)
        );
        assert_eq!(work_deadline(now + Duration::from_secs(10), now), now);
        assert_eq!(work_deadline(SystemTime::UNIX_EPOCH, now), now);
    }

    #[test]
    fn errors_map_to_lambda_error_types() {
        let diagnostic = Diagnostic::from(LambdaError::BadInput("x".into()));
        assert_eq!(diagnostic.error_type, "BadInput");
        assert_eq!(diagnostic.error_message, "x");
        let diagnostic = Diagnostic::from(LambdaError::CleanupFailed("y".into()));
        assert_eq!(diagnostic.error_type, "CleanupFailed");
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<Value>>);

    impl Log for Lines {
        fn line(&self, line: Value) {
            self.0.lock().unwrap().push(line);
        }
    }

    fn invoke(
        cloud: &FakeCloud,
        clock: &std::sync::Arc<FakeClock>,
        defaults: Result<Request, LambdaError>,
        event: Value,
    ) -> (Result<Value, LambdaError>, Vec<Value>) {
        let holder = holder_from_env();
        let stop = Stop::new();
        let runner = Runner {
            cloud,
            clock,
            holder: &holder,
            alive: |_| true,
            stop: &stop,
        };
        let lines = Lines::default();
        let deadline = clock.now() + Duration::from_secs(600);
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(handle(&runner, &defaults, &event, deadline, &lines));
        (result, lines.0.into_inner().unwrap())
    }

    #[test]
    fn unknown_services_fail_the_invocation_each_named_and_the_report_is_logged() {
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let (cloud, _spec) = FakeCloud::sample(clock.clone());
        let (result, lines) = invoke(
            &cloud,
            &clock,
            Ok(Request::default()),
            json!({"services": ["nope", "gone"], "dry_run": true}),
        );
        let Err(LambdaError::CleanupFailed(message)) = result else {
            panic!("expected CleanupFailed, got {result:?}");
        };
        assert!(message.starts_with("cleanup failed for 2 of 2 services: nope: "));
        assert!(message.contains("; gone: "), "{message}");
        let done = lines
            .iter()
            .find(|l| l["event"] == "cleanup_done")
            .expect("the report is logged");
        let outcomes: Vec<(&str, &str)> = done["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["service"].as_str().unwrap(),
                    s["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(outcomes, [("nope", "failed"), ("gone", "failed")]);
        assert_eq!(done["services"][0]["exit_code"], 2);
        let last = lines.last().unwrap();
        assert_eq!(last["event"], "error");
        assert_eq!(last["error_type"], "CleanupFailed");
        let calls = cloud.calls();
        assert!(
            !calls.is_empty() && calls.iter().all(|c| c.starts_with("tagged_fleets")),
            "{calls:?}"
        );
    }

    #[test]
    fn a_bad_environment_fails_every_invocation_before_any_call() {
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let (cloud, _spec) = FakeCloud::sample(clock.clone());
        let (result, lines) = invoke(
            &cloud,
            &clock,
            env(&[(ENV_KEEP_RELEASES, "-1")]),
            json!({"dry_run": true}),
        );
        assert!(
            matches!(&result, Err(LambdaError::BadInput(m)) if m.contains(ENV_KEEP_RELEASES)),
            "{result:?}"
        );
        assert_eq!(cloud.calls(), Vec::<String>::new());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["error_type"], "BadInput");
    }

    #[test]
    fn all_services_on_an_empty_region_is_an_empty_report() {
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let cloud = FakeCloud::new(clock.clone());
        let (result, lines) = invoke(&cloud, &clock, Ok(Request::default()), Value::Null);
        let report = result.unwrap();
        assert_eq!(report["dry_run"], false);
        assert_eq!(report["services"], json!([]));
        assert_eq!(lines.last().unwrap()["event"], "cleanup_done");
    }
}
