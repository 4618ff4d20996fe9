//! Release verification end to end: the real binary on the emulator, with test traffic (the
//! header rule and the test listener), hooks, CloudWatch alarms and the metrics verdict. AWS is
//! read and driven directly with the SDK (DescribeRules + DescribeTags, PutMetricAlarm,
//! SetAlarmState, PutMetricData) while a deploy runs as a child process.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_cloudwatch::Client as CwClient;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricDatum, StandardUnit, StateValue, Statistic,
};
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, PathPatternConditionConfig, RuleCondition,
};
use serde_json::{Value, json};

use super::harness::{Seeded, Session, forward_action, forwards_of, request, session};
use super::prober;

const HEADER: &str = "X-Greenlight-Release";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A listener's forward action as read back: (target group, weight) in the order AWS lists them.
#[derive(Debug, Clone, PartialEq)]
struct RouterView {
    forwards: Vec<(String, i32)>,
}

impl RouterView {
    fn weight(&self, tg: &str) -> i32 {
        self.forwards
            .iter()
            .filter(|(t, _)| t == tg)
            .map(|(_, w)| *w)
            .sum()
    }

    fn total(&self) -> i32 {
        self.forwards.iter().map(|(_, w)| *w).sum()
    }

    /// `tg`'s share of the traffic in percent.
    fn percent(&self, tg: &str) -> i32 {
        match self.total() {
            0 => 0,
            total => self.weight(tg) * 100 / total,
        }
    }
}

async fn read_router(elb: &ElbClient, listener: &str) -> Result<RouterView, String> {
    let out = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let actions = out
        .listeners()
        .first()
        .ok_or("no listener")?
        .default_actions()
        .to_vec();
    let action = forward_action(&actions).ok_or("no forward action")?;
    Ok(RouterView {
        forwards: forwards_of(action),
    })
}

/// One listener rule as DescribeRules and DescribeTags report it.
#[derive(Debug, Clone, PartialEq)]
struct RuleView {
    arn: String,
    /// `default` for the listener's default rule.
    priority: String,
    /// (field, header name, values), in order.
    conditions: Vec<(String, Option<String>, Vec<String>)>,
    forwards: Vec<(String, i32)>,
    tags: BTreeMap<String, String>,
}

impl RuleView {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    fn is_test_rule(&self) -> bool {
        self.tag("greenlight:test-traffic") == Some("true")
    }
}

/// A fleet as AWS has it.
#[derive(Debug)]
struct Group {
    desired: i32,
    in_service: usize,
    tags: BTreeMap<String, String>,
}

impl Group {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// Direct AWS reads and writes for the tests, independent of greenlight's adapter.
struct Aws {
    rt: tokio::runtime::Runtime,
    elb: ElbClient,
    asg: AsgClient,
    ec2: Ec2Client,
    cw: CwClient,
}

impl Aws {
    fn new(session: &Session) -> Aws {
        let rt = runtime();
        let conf = rt.block_on(session.sdk());
        Aws {
            elb: ElbClient::new(&conf),
            asg: AsgClient::new(&conf),
            ec2: Ec2Client::new(&conf),
            cw: CwClient::new(&conf),
            rt,
        }
    }

    fn router(&self, listener: &str) -> RouterView {
        self.rt
            .block_on(read_router(&self.elb, listener))
            .expect("read the listener")
    }

    /// Every rule of the listener with its tags, the default rule included.
    fn rules(&self, listener: &str) -> Vec<RuleView> {
        self.rt.block_on(async {
            let out = self
                .elb
                .describe_rules()
                .listener_arn(listener)
                .send()
                .await
                .expect("describe rules");
            let arns: Vec<String> = out
                .rules()
                .iter()
                .filter_map(|r| r.rule_arn().map(str::to_owned))
                .collect();
            let tags = self
                .elb
                .describe_tags()
                .set_resource_arns(Some(arns))
                .send()
                .await
                .expect("describe the rules' tags");
            let mut tags: BTreeMap<String, BTreeMap<String, String>> = tags
                .tag_descriptions()
                .iter()
                .map(|d| {
                    (
                        d.resource_arn().unwrap_or_default().to_owned(),
                        d.tags()
                            .iter()
                            .map(|t| {
                                (
                                    t.key().unwrap_or_default().to_owned(),
                                    t.value().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect(),
                    )
                })
                .collect();
            out.rules()
                .iter()
                .map(|r| {
                    let arn = r.rule_arn().unwrap_or_default().to_owned();
                    RuleView {
                        priority: r.priority().unwrap_or_default().to_owned(),
                        conditions: r
                            .conditions()
                            .iter()
                            .map(|c| {
                                let field = c.field().unwrap_or_default().to_owned();
                                let values = match field.as_str() {
                                    "http-header" => c
                                        .http_header_config()
                                        .map(|h| h.values().to_vec())
                                        .unwrap_or_default(),
                                    "host-header" => c
                                        .host_header_config()
                                        .map(|h| h.values().to_vec())
                                        .unwrap_or_default(),
                                    "path-pattern" => c
                                        .path_pattern_config()
                                        .map(|h| h.values().to_vec())
                                        .unwrap_or_default(),
                                    _ => Vec::new(),
                                };
                                let values = if values.is_empty() {
                                    c.values().to_vec()
                                } else {
                                    values
                                };
                                let header = c
                                    .http_header_config()
                                    .and_then(|h| h.http_header_name())
                                    .map(str::to_owned);
                                (field, header, values)
                            })
                            .collect(),
                        forwards: r
                            .actions()
                            .iter()
                            .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
                            .flat_map(forwards_of)
                            .collect(),
                        tags: tags.remove(&arn).unwrap_or_default(),
                        arn,
                    }
                })
                .collect()
        })
    }

    /// greenlight's test-traffic rules on the listener.
    fn test_rules(&self, listener: &str) -> Vec<RuleView> {
        self.rules(listener)
            .into_iter()
            .filter(RuleView::is_test_rule)
            .collect()
    }

    /// Someone else's rule: `/admin/*` to `target_group` at `priority`.
    fn add_rule(&self, listener: &str, priority: i32, target_group: &str) -> String {
        self.rt.block_on(async {
            let out = self
                .elb
                .create_rule()
                .listener_arn(listener)
                .priority(priority)
                .conditions(
                    RuleCondition::builder()
                        .field("path-pattern")
                        .path_pattern_config(
                            PathPatternConditionConfig::builder()
                                .values("/admin/*")
                                .build(),
                        )
                        .build(),
                )
                .actions(
                    ElbAction::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(target_group)
                        .build(),
                )
                .send()
                .await
                .expect("create a rule");
            out.rules()[0].rule_arn().unwrap().to_owned()
        })
    }

    fn set_priority(&self, rule: &str, priority: i32) {
        self.rt
            .block_on(
                self.elb
                    .set_rule_priorities()
                    .rule_priorities(
                        aws_sdk_elasticloadbalancingv2::types::RulePriorityPair::builder()
                            .rule_arn(rule)
                            .priority(priority)
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
            .unwrap_or_else(|e| panic!("set the rule's priority: {e:?}"));
    }

    fn dns_name(&self, load_balancer: &str) -> String {
        self.rt.block_on(async {
            let out = self
                .elb
                .describe_load_balancers()
                .load_balancer_arns(load_balancer)
                .send()
                .await
                .expect("describe the load balancer");
            out.load_balancers()[0].dns_name().unwrap().to_owned()
        })
    }

    fn group(&self, name: &str) -> Option<Group> {
        let out = self
            .rt
            .block_on(
                self.asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(name)
                    .send(),
            )
            .expect("describe groups");
        let g = out.auto_scaling_groups().first()?;
        Some(Group {
            desired: g.desired_capacity().unwrap_or_default(),
            in_service: g
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .count(),
            tags: g
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        })
    }

    /// Whether the service's lock object exists.
    fn locked(&self, seeded: &Seeded) -> bool {
        let name = format!("greenlight-lock.{}", seeded.service);
        self.rt
            .block_on(
                self.ec2
                    .describe_launch_templates()
                    .launch_template_names(&name)
                    .send(),
            )
            .is_ok_and(|out| !out.launch_templates().is_empty())
    }

    /// A CloudWatch alarm on green's 5xx count (it starts `OK` on the emulator).
    fn put_alarm(&self, name: &str, seeded: &Seeded) {
        let dimensions = metric_dimensions(seeded, &seeded.target_group(1));
        self.rt
            .block_on(
                self.cw
                    .put_metric_alarm()
                    .alarm_name(name)
                    .namespace("AWS/ApplicationELB")
                    .metric_name("HTTPCode_Target_5XX_Count")
                    .set_dimensions(Some(dimensions))
                    .statistic(Statistic::Sum)
                    .period(60)
                    .evaluation_periods(1)
                    .threshold(5.0)
                    .comparison_operator(ComparisonOperator::GreaterThanThreshold)
                    .send(),
            )
            .expect("put the alarm");
    }

    fn set_alarm(&self, name: &str, state: StateValue, reason: &str) {
        self.rt
            .block_on(
                self.cw
                    .set_alarm_state()
                    .alarm_name(name)
                    .state_value(state)
                    .state_reason(reason)
                    .send(),
            )
            .expect("set the alarm's state");
    }

    /// RequestCount and HTTPCode_Target_5XX_Count datapoints for one target group at `at`.
    fn serve(&self, seeded: &Seeded, target_group: &str, at: SystemTime, requests: f64, e5xx: f64) {
        let dimensions = metric_dimensions(seeded, target_group);
        let datum = |metric: &str, value: f64| {
            MetricDatum::builder()
                .metric_name(metric)
                .set_dimensions(Some(dimensions.clone()))
                .timestamp(DateTime::from(at))
                .value(value)
                .unit(StandardUnit::Count)
                .build()
        };
        self.rt
            .block_on(
                self.cw
                    .put_metric_data()
                    .namespace("AWS/ApplicationELB")
                    .metric_data(datum("RequestCount", requests))
                    .metric_data(datum("HTTPCode_Target_5XX_Count", e5xx))
                    .send(),
            )
            .expect("put metric data");
    }
}

/// The dimensions ALB metrics of `target_group` carry: TargetGroup `targetgroup/<name>/<id>`
/// and LoadBalancer `app/<name>/<id>`.
fn metric_dimensions(seeded: &Seeded, target_group: &str) -> Vec<Dimension> {
    let tg = target_group
        .split_once(":targetgroup/")
        .map(|(_, rest)| format!("targetgroup/{rest}"))
        .expect("a target group ARN");
    let lb = seeded
        .str("load_balancer_arn")
        .split_once(":loadbalancer/")
        .map(|(_, rest)| rest.to_owned())
        .expect("a load balancer ARN");
    vec![
        Dimension::builder().name("TargetGroup").value(tg).build(),
        Dimension::builder().name("LoadBalancer").value(lb).build(),
    ]
}

/// One finished greenlight run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The JSON events, one per stdout line.
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{self}"))
            })
            .collect()
    }

    /// The last event: `error` with the message, for a failed run.
    fn error_message(&self) -> String {
        let events = self.events();
        let last = events.last().unwrap_or_else(|| panic!("no events: {self}"));
        assert_eq!(last["event"], "error", "{self}");
        assert_eq!(last["exit_code"], json!(self.code.unwrap_or(-1)), "{self}");
        last["message"].as_str().unwrap_or_default().to_owned()
    }
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

fn gl(s: &Session, config: &Path, args: &[&str]) -> Run {
    Run::from(
        s.greenlight(config)
            .args(args)
            .output()
            .expect("run greenlight"),
    )
}

/// greenlight running in the background, as a second terminal or pipeline would run it.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Background {
    fn spawn(s: &Session, config: &Path, args: &[&str]) -> Background {
        let dir = tempfile::tempdir().expect("temp dir");
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_greenlight"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(s.aws_env())
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start greenlight");
        Background {
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    fn output(&self, code: Option<i32>) -> Run {
        Run {
            code,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// What it printed so far.
    fn so_far(&self) -> Run {
        self.output(None)
    }

    fn wait(mut self, timeout: Duration) -> Run {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.output(status.code());
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "greenlight did not exit within {timeout:?}:\n{}",
                    self.output(None)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A signal, as a terminal's Ctrl-C (SIGINT) or a pipeline's cancel (SIGTERM) sends it.
    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        assert!(pid > 1, "pid {pid}");
        // SAFETY: a plain kill(2) to our own child, whose pid is known and positive.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill {signal} {pid}");
    }

    /// SIGKILL: a crash, no safe point.
    fn kill(mut self) -> Run {
        self.child.kill().expect("kill");
        let status = self.child.wait().expect("wait");
        self.output(status.code())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it gives a value, or panics after `timeout` with `what` and the last
/// thing `check` saw.
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting until {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Rewrites the seeded config: a canary with `steps` (a TOML array) when given, `test_traffic`
/// lines in the `[test_traffic]` table (seed.py writes it last, with --test-listener or --nlb),
/// then `tables`.
fn configure(seeded: &Seeded, steps: Option<&str>, test_traffic: &str, tables: &str) {
    let text = std::fs::read_to_string(&seeded.config).expect("seeded config");
    // A top-level key must come before the first table.
    let mut text = match steps {
        Some(_) => format!("strategy = \"canary\"\n{text}\n"),
        None => format!("{text}\n"),
    };
    if !test_traffic.is_empty() {
        if !text.contains("[test_traffic]") {
            text.push_str("[test_traffic]\n");
        }
        text.push_str(test_traffic);
        text.push('\n');
    }
    if let Some(steps) = steps {
        text.push_str(&format!("[canary]\nsteps = {steps}\n"));
    }
    text.push_str(tables);
    text.push('\n');
    std::fs::write(&seeded.config, text).expect("write config");
}

fn header_line() -> String {
    format!("header = \"{HEADER}\"")
}

fn deploy_args<'a>(release: &'a str, image: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["deploy", "--release", release, "--image-id", image];
    args.extend_from_slice(more);
    args
}

fn position(events: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} event in {events:#?}"))
}

fn step_event(action: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["event"] == "step" && e["action"] == action
}

/// The emulator's request log from `mark` on: (service, action).
fn log_since(s: &Session, mark: usize) -> Vec<(String, String)> {
    let (status, body) = request(
        &s.emulator.endpoint,
        "GET",
        &format!("/_greenlight/requests?since={mark}"),
        "",
    )
    .expect("read the request log");
    assert_eq!(status, 200, "{body}");
    let log: Value = serde_json::from_str(&body).expect("request log JSON");
    log["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap_or_default().to_owned(),
                r["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn count(log: &[(String, String)], action: &str) -> usize {
    log.iter().filter(|(_, a)| a == action).count()
}

/// The release the seeded blue fleet runs, as greenlight names it.
fn blue_release(aws: &Aws, seeded: &Seeded) -> String {
    let blue = aws.group(&seeded.fleet("blue")).expect("blue fleet");
    blue.tag("greenlight:release")
        .map_or_else(|| seeded.fleet("blue"), str::to_owned)
}

/// Green's step and when it began, once greenlight recorded step `n`.
fn wait_for_step(aws: &Aws, seeded: &Seeded, n: u32, run: &mut Background) -> SystemTime {
    wait_until(
        &format!("step {n} recorded"),
        Duration::from_secs(60),
        || {
            if !run.running() {
                panic!("greenlight exited before step {n}: {}", run.so_far());
            }
            let green = aws.group(&seeded.fleet("v2"));
            match green
                .as_ref()
                .map(|g| (g.tag("greenlight:step"), g.tag("greenlight:step-at")))
            {
                Some((Some(step), Some(at))) if step == n.to_string() => {
                    Ok(humantime::parse_rfc3339_weak(at).expect("step-at"))
                }
                _ => Err(format!("{green:?}\n{}", run.so_far())),
            }
        },
    )
}

/// After a release was stopped: all traffic on blue, v2 scaled to zero and failed with
/// `reason`, blue live, no test rule, no lock.
fn assert_stopped(aws: &Aws, seeded: &Seeded, reason: &str) {
    let listener = seeded.str("listener_arn");
    let router = aws.router(&listener);
    assert_eq!(
        router.percent(&seeded.target_group(0)),
        100,
        "all traffic back on blue: {router:?}"
    );
    assert_eq!(router.weight(&seeded.target_group(1)), 0, "{router:?}");
    let green = aws.group(&seeded.fleet("v2")).expect("v2 fleet");
    assert_eq!(green.desired, 0, "{green:?}");
    assert_eq!(green.tag("greenlight:phase"), Some("failed"), "{green:?}");
    let failure = green.tag("greenlight:failure").unwrap_or_default();
    assert!(
        failure.contains(reason),
        "{failure:?} should say {reason:?}"
    );
    let blue = aws.group(&seeded.fleet("blue")).expect("blue fleet");
    assert_eq!(blue.tag("greenlight:phase"), Some("live"), "{blue:?}");
    assert_eq!((blue.desired, blue.in_service), (2, 2));
    assert_eq!(aws.test_rules(&listener), vec![], "test rule left behind");
    assert!(!aws.locked(seeded), "lock left behind");
}

/// The one test rule for v2, forwarding to green, with greenlight's tags.
fn assert_test_rule(rule: &RuleView, seeded: &Seeded) {
    assert_eq!(
        rule.forwards,
        [(seeded.target_group(1), 1)],
        "forwards to green only: {rule:?}"
    );
    assert_eq!(
        rule.tag("greenlight:test-traffic"),
        Some("true"),
        "{rule:?}"
    );
    assert_eq!(
        rule.tag("greenlight:service"),
        Some(seeded.service.as_str()),
        "{rule:?}"
    );
    assert_eq!(rule.tag("greenlight:release"), Some("v2"), "{rule:?}");
    let header = rule
        .conditions
        .iter()
        .find(|(field, _, _)| field == "http-header")
        .unwrap_or_else(|| panic!("no http-header condition: {rule:?}"));
    assert_eq!(header.1.as_deref(), Some(HEADER), "{rule:?}");
    assert_eq!(header.2, ["v2"], "{rule:?}");
}

#[test]
fn the_header_rule_reaches_green_at_a_gate_and_goes_with_promote() {
    let s = session();
    let seeded = s.seed("hdr", &[]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    // Someone else's rule: the test rule must be evaluated before it.
    let other = aws.add_rule(&listener, 10, &blue_tg);
    configure(
        &seeded,
        Some(r#"[{ weight = 0, pause = "manual" }, { weight = 100 }]"#),
        &header_line(),
        "",
    );
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--no-wait", "--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let events = run.events();
    let open = position(&events, "open_test_rule", step_event("open_test_rule"));
    let paused = position(&events, "paused", |e| e["event"] == "paused");
    assert!(open < paused, "{run}");
    assert_eq!(events[open]["release"], "v2", "{run}");
    assert_eq!(events[open]["priority"], 9, "{run}");
    assert_eq!(events[open]["listener"], listener.as_str(), "{run}");
    assert_eq!(events[open]["target_group"], green_tg.as_str(), "{run}");
    assert_eq!(events[paused]["weight"], 0, "{run}");
    let healthy = events
        .iter()
        .rposition(|e| e["event"] == "health")
        .unwrap_or(0);
    assert!(
        healthy < open,
        "the rule opens once green is healthy: {run}"
    );

    // AWS has it: before the other rule, the header naming v2, forwarding to green, tagged.
    let rules = aws.rules(&listener);
    let tests: Vec<&RuleView> = rules.iter().filter(|r| r.is_test_rule()).collect();
    assert_eq!(tests.len(), 1, "{rules:#?}");
    let rule = tests[0];
    assert_eq!(rule.priority, "9", "just before the rule at 10: {rules:#?}");
    assert_eq!(rule.conditions.len(), 1, "only the header: {rule:?}");
    assert_test_rule(rule, &seeded);
    assert!(
        rules.iter().any(|r| r.arn == other && r.priority == "10"),
        "the other rule is untouched: {rules:#?}"
    );
    // Production traffic is all on blue meanwhile.
    assert_eq!(aws.router(&listener).percent(&blue_tg), 100);
    // `status` lists the rule.
    let status = gl(&s, &seeded.config, &["status", "--output", "json"]);
    assert_eq!(status.code, Some(0), "{status}");
    let status: Value = serde_json::from_str(status.stdout.trim()).expect("status JSON");
    assert_eq!(
        status["test_rules"],
        json!([{"release": "v2", "priority": 9, "rule_arn": rule.arn}]),
        "{status}"
    );

    let promote = gl(&s, &seeded.config, &["promote", "--output", "json"]);
    assert_eq!(promote.code, Some(0), "{promote}");
    let events = promote.events();
    let flip = position(&events, "flip", step_event("flip"));
    let close = position(&events, "close_test_rule", step_event("close_test_rule"));
    let released = position(&events, "released", |e| e["event"] == "released");
    assert!(flip < close && close < released, "{promote}");
    assert_eq!(events[close]["rule"], rule.arn.as_str(), "{promote}");
    assert_eq!(events[close]["release"], "v2", "{promote}");
    let after = aws.rules(&listener);
    let priorities: Vec<&str> = after.iter().map(|r| r.priority.as_str()).collect();
    assert_eq!(priorities.len(), 2, "{after:#?}");
    assert!(
        priorities.contains(&"10") && priorities.contains(&"default"),
        "{after:#?}"
    );
    assert_eq!(aws.router(&listener).percent(&green_tg), 100);
    assert_eq!(
        aws.group(&seeded.fleet("v2"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );
    assert!(!aws.locked(&seeded));
}

#[test]
fn the_header_rule_before_a_rule_router_goes_with_abort() {
    let s = session();
    let seeded = s.seed("hdrrule", &["--rule"]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let router_rule = seeded.str("rule_arn");
    configure(
        &seeded,
        Some(r#"[{ weight = 0, pause = "manual" }, { weight = 100 }]"#),
        &header_line(),
        "",
    );
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--no-wait", "--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let rules = aws.rules(&listener);
    let tests: Vec<&RuleView> = rules.iter().filter(|r| r.is_test_rule()).collect();
    assert_eq!(tests.len(), 1, "{rules:#?}");
    let rule = tests[0];
    // Before the router's own rule (priority 10), with its host condition and the header.
    assert_eq!(rule.priority, "9", "{rules:#?}");
    assert_test_rule(rule, &seeded);
    assert!(
        rule.conditions.contains(&(
            "host-header".to_owned(),
            None,
            vec![format!("{}.example.com", seeded.service)]
        )),
        "the router rule's host condition is copied: {rule:?}"
    );
    assert_eq!(rule.conditions.len(), 2, "{rule:?}");
    let router = rules.iter().find(|r| r.arn == router_rule).unwrap();
    assert_eq!(router.priority, "10", "{router:?}");

    let abort = gl(&s, &seeded.config, &["abort", "--output", "json"]);
    assert_eq!(abort.code, Some(0), "{abort}");
    let events = abort.events();
    let close = position(&events, "close_test_rule", step_event("close_test_rule"));
    let fail = position(&events, "fail_release", step_event("fail_release"));
    let aborted = position(&events, "aborted", |e| e["event"] == "aborted");
    assert!(close < fail && fail < aborted, "{abort}");
    assert_eq!(aws.test_rules(&listener), vec![], "test rule left behind");
    let rules = aws.rules(&listener);
    let router = rules.iter().find(|r| r.arn == router_rule).unwrap();
    let share: i32 = router
        .forwards
        .iter()
        .filter(|(tg, _)| *tg == seeded.target_group(1))
        .map(|(_, w)| *w)
        .sum();
    assert_eq!(share, 0, "{router:?}");
    let green = aws.group(&seeded.fleet("v2")).unwrap();
    assert_eq!(green.tag("greenlight:phase"), Some("failed"), "{green:?}");
    assert_eq!(green.desired, 0);
    assert!(!aws.locked(&seeded));
}

#[test]
fn a_test_rule_left_by_a_kill_9_goes_with_the_rerun_or_an_abort() {
    let s = session();
    let aws = Aws::new(&s);

    // Killed in a timed pause: the re-run finishes the release, and the rule goes with it.
    let seeded = s.seed("crash", &[]);
    let listener = seeded.str("listener_arn");
    configure(
        &seeded,
        Some(r#"[{ weight = 10, pause = "3s" }, { weight = 100 }]"#),
        &header_line(),
        "",
    );
    let image = seeded.image(1);
    let args = deploy_args("v2", &image, &["--output", "json"]);
    let mut first = Background::spawn(&s, &seeded.config, &args);
    wait_for_step(&aws, &seeded, 1, &mut first);
    let killed = first.kill();
    assert_eq!(killed.code, None, "killed by a signal: {killed}");
    let left = aws.test_rules(&listener);
    assert_eq!(left.len(), 1, "the crash leaves the rule: {left:#?}");
    assert_test_rule(&left[0], &seeded);
    let rerun = gl(&s, &seeded.config, &args);
    assert_eq!(rerun.code, Some(0), "{rerun}");
    let events = rerun.events();
    let close = position(&events, "close_test_rule", step_event("close_test_rule"));
    assert_eq!(events[close]["rule"], left[0].arn.as_str(), "{rerun}");
    assert!(
        !events.iter().any(step_event("open_test_rule")),
        "the re-run opened another rule: {rerun}"
    );
    assert_eq!(aws.test_rules(&listener), vec![], "{rerun}");
    assert_eq!(aws.router(&listener).percent(&seeded.target_group(1)), 100);
    assert!(!aws.locked(&seeded));

    // Killed at a manual gate: `abort` (taking over the dead runner's lock) removes it.
    let seeded = s.seed("crash2", &[]);
    let listener = seeded.str("listener_arn");
    configure(
        &seeded,
        Some(r#"[{ weight = 0, pause = "manual" }, { weight = 100 }]"#),
        &header_line(),
        "",
    );
    let mut first = Background::spawn(&s, &seeded.config, &args);
    wait_for_step(&aws, &seeded, 1, &mut first);
    wait_until("the test rule", Duration::from_secs(30), || {
        let rules = aws.test_rules(&listener);
        (rules.len() == 1).then_some(()).ok_or(format!("{rules:?}"))
    });
    let killed = first.kill();
    assert_eq!(killed.code, None, "{killed}");
    assert!(aws.locked(&seeded), "the killed deploy's lock stays");
    let abort = gl(&s, &seeded.config, &["abort", "--output", "json"]);
    assert_eq!(abort.code, Some(0), "{abort}");
    position(
        &abort.events(),
        "close_test_rule",
        step_event("close_test_rule"),
    );
    assert_stopped(&aws, &seeded, "aborted by ");
}

#[test]
fn a_failing_hook_stops_the_release_and_shows_its_output() {
    let s = session();
    let aws = Aws::new(&s);

    // After the first step: traffic went to green, and comes back in one call.
    let seeded = s.seed("hookfail", &[]);
    let hook =
        "echo checking $GREENLIGHT_RELEASE at $GREENLIGHT_WEIGHT%; echo 5xx spike >&2; exit 1";
    configure(
        &seeded,
        Some(r#"[{ weight = 20, pause = "1s" }, { weight = 100 }]"#),
        &header_line(),
        &format!("[hooks]\nafter_step = [{hook:?}]\ntimeout = \"30s\"\n"),
    );
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let image = seeded.image(1);
    let run = gl(&s, &seeded.config, &deploy_args("v2", &image, &[]));
    assert_eq!(run.code, Some(3), "{run}");
    // Its output, streamed with the stage and command as prefix.
    let prefix = format!("[after_step {hook}]");
    assert!(
        run.stderr
            .lines()
            .any(|l| l == format!("{prefix} checking v2 at 20%")),
        "{run}"
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l == format!("{prefix} 5xx spike")),
        "{run}"
    );
    // The error names the hook, how it ended and its last lines.
    let named = format!("hook `{hook}` (after_step (step 1)) exited 1");
    let error = run
        .stderr
        .lines()
        .find(|l| l.contains(&named) && !l.starts_with('['))
        .unwrap_or_else(|| panic!("no error naming the hook: {run}"));
    assert!(
        error.contains("checking v2 at 20%") && error.contains("5xx spike"),
        "{error}"
    );
    assert_stopped(&aws, &seeded, "exited 1");
    if let Some(mark) = mark {
        // Join at 0, the 20% step, back to 0: nothing else moved traffic.
        let log = log_since(&s, mark);
        assert_eq!(count(&log, "ModifyListener"), 3, "{log:?}");
    }

    // Before any traffic, green reached through a test listener: the production listener is
    // never written, and the test listener goes back to blue.
    let seeded = s.seed("prefail", &["--test-listener"]);
    let test_listener = seeded.str("test_listener_arn");
    configure(
        &seeded,
        None,
        "",
        "[hooks]\npre_traffic = [\"echo not ready; exit 1\"]\n",
    );
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    assert_eq!(run.code, Some(3), "{run}");
    let message = run.error_message();
    assert!(
        message.contains("hook `echo not ready; exit 1` (pre_traffic) exited 1"),
        "{message}"
    );
    assert!(message.contains("not ready"), "{message}");
    let events = run.events();
    let hook = position(&events, "hook", |e| e["event"] == "hook");
    // (The `stage` field's shape is checked by the ignored test below.)
    assert_eq!(events[hook]["command"], "echo not ready; exit 1", "{run}");
    assert_eq!(events[hook]["outcome"], "failed", "{run}");
    assert_eq!(events[hook]["exit_code"], 1, "{run}");
    assert_eq!(events[hook]["last_lines"], json!(["not ready"]), "{run}");
    assert!(
        !events
            .iter()
            .any(|e| e["action"] == "shift" || e["action"] == "flip"),
        "{run}"
    );
    let points: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "point_test_listener")
        .collect();
    assert_eq!(points.len(), 2, "to green, then back: {run}");
    assert_eq!(points[0]["to"], seeded.target_group(1).as_str(), "{run}");
    assert_eq!(points[1]["to"], seeded.target_group(0).as_str(), "{run}");
    let back = position(&events, "point back", |e| {
        e["action"] == "point_test_listener" && e["to"] == seeded.target_group(0).as_str()
    });
    let fail = position(&events, "fail_release", step_event("fail_release"));
    assert!(hook < back && back < fail, "{run}");
    assert_stopped(&aws, &seeded, "(pre_traffic) exited 1");
    assert_eq!(
        aws.router(&seeded.str("listener_arn")).forwards,
        [(seeded.target_group(0), 1)],
        "the production listener as seeded, never written"
    );
    assert_eq!(
        aws.router(&test_listener).percent(&seeded.target_group(0)),
        100
    );
    if let Some(mark) = mark {
        let log = log_since(&s, mark);
        assert_eq!(
            count(&log, "ModifyListener"),
            2,
            "the test listener to green and back: {log:?}"
        );
    }
}

/// `KEY=VALUE` lines.
fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn hooks_run_once_per_stage_and_see_their_environment() {
    let s = session();
    let seeded = s.seed("hookenv", &["--test-listener"]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let test_listener = seeded.str("test_listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    let dir = tempfile::tempdir().unwrap();
    let hook = format!(
        "env | grep '^GREENLIGHT_' | sort > {}/$GREENLIGHT_STAGE.env; echo dumped $GREENLIGHT_STAGE",
        dir.path().display()
    );
    configure(
        &seeded,
        Some(r#"[{ weight = 10, pause = "1s" }, { weight = 100 }]"#),
        &header_line(),
        &format!(
            "[hooks]\npre_traffic = [{hook:?}]\nafter_step = [{hook:?}]\npost_traffic = [{hook:?}]\n"
        ),
    );
    let blue = blue_release(&aws, &seeded);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");

    let dns = aws.dns_name(&seeded.str("load_balancer_arn"));
    for (stage, step, weight) in [
        ("pre_traffic", None, "0"),
        ("after_step", Some("1"), "10"),
        ("post_traffic", Some("2"), "100"),
    ] {
        let env = env_file(&dir.path().join(format!("{stage}.env")));
        let mut expected: BTreeMap<String, String> = [
            ("GREENLIGHT_SERVICE", seeded.service.as_str()),
            ("GREENLIGHT_RELEASE", "v2"),
            ("GREENLIGHT_STAGE", stage),
            ("GREENLIGHT_STEPS", "2"),
            ("GREENLIGHT_WEIGHT", weight),
            ("GREENLIGHT_SLOT", "b"),
            ("GREENLIGHT_GREEN_TARGET_GROUP", green_tg.as_str()),
            ("GREENLIGHT_LIVE_TARGET_GROUP", blue_tg.as_str()),
            ("GREENLIGHT_LIVE_RELEASE", blue.as_str()),
            ("GREENLIGHT_LOAD_BALANCER_DNS", dns.as_str()),
            ("GREENLIGHT_TEST_HEADER", HEADER),
            ("GREENLIGHT_TEST_HEADER_VALUE", "v2"),
            ("GREENLIGHT_TEST_LISTENER_ARN", test_listener.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(step) = step {
            expected.insert("GREENLIGHT_STEP".into(), step.into());
        }
        assert_eq!(env, expected, "{stage}'s environment");
        assert!(
            run.stderr
                .lines()
                .any(|l| l == format!("[{stage} {hook}] dumped {stage}")),
            "{stage}'s output, prefixed: {run}"
        );
    }

    // Once per stage, in order: test traffic open before the pre-traffic hooks, each hook after
    // its step, the rule closed after the post-traffic hooks.
    let events = run.events();
    let hooks: Vec<&Value> = events.iter().filter(|e| e["event"] == "hook").collect();
    assert_eq!(hooks.len(), 3, "{run}");
    for (hook_event, stage) in hooks
        .iter()
        .zip(["pre_traffic", "after_step", "post_traffic"])
    {
        // The hook prints the stage it was told; the event's own `stage` field is checked by
        // the ignored test below.
        assert_eq!(hook_event["outcome"], "passed", "{hook_event}");
        assert_eq!(hook_event["command"], hook.as_str(), "{hook_event}");
        assert_eq!(
            hook_event["last_lines"],
            json!([format!("dumped {stage}")]),
            "{hook_event}"
        );
    }
    let at = |stage: &str| {
        let n = position(&events, stage, |e| {
            e["event"] == "hook" && e["last_lines"] == json!([format!("dumped {stage}")])
        });
        // Announced by the run_hooks step just before it, which names the stage.
        let announced = &events[n - 1];
        assert_eq!(announced["action"], "run_hooks", "{run}");
        assert_eq!(announced["stage"], stage, "{run}");
        n
    };
    let point = position(
        &events,
        "point_test_listener",
        step_event("point_test_listener"),
    );
    let open = position(&events, "open_test_rule", step_event("open_test_rule"));
    let shift = position(&events, "shift", step_event("shift"));
    let flip = position(&events, "flip", step_event("flip"));
    let close = position(&events, "close_test_rule", step_event("close_test_rule"));
    let released = position(&events, "released", |e| e["event"] == "released");
    let (pre, after, post) = (at("pre_traffic"), at("after_step"), at("post_traffic"));
    assert!(
        point < pre && open < pre && pre < shift && shift < after && after < flip,
        "{run}"
    );
    assert!(flip < post && post < close && close < released, "{run}");

    // The end: v2 live behind both listeners, no test rule, no in-progress tags.
    assert_eq!(aws.router(&listener).percent(&green_tg), 100);
    assert_eq!(aws.router(&test_listener).percent(&green_tg), 100);
    assert_eq!(aws.test_rules(&listener), vec![]);
    let green = aws.group(&seeded.fleet("v2")).unwrap();
    assert_eq!(green.tag("greenlight:phase"), Some("live"), "{green:?}");
    assert_eq!(green.tag("greenlight:hooks-done"), None, "{green:?}");
}

#[test]
fn an_alarm_in_alarm_mid_pause_stops_the_canary() {
    let s = session();
    let seeded = s.seed("alarmy", &[]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let image = seeded.image(1);
    let steps = Some(r#"[{ weight = 25, pause = "60s" }, { weight = 100 }]"#);

    // A missing alarm: bad input, before any change.
    let original = std::fs::read_to_string(&seeded.config).unwrap();
    configure(
        &seeded,
        steps,
        "",
        "[analysis]\nalarms = [\"alarmy-missing\"]\n",
    );
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.error_message().contains("alarmy-missing"), "{run}");
    if let Some(mark) = mark {
        assert_eq!(s.mutations_since(mark), Vec::<String>::new(), "{run}");
    }

    std::fs::write(&seeded.config, original).unwrap();
    aws.put_alarm("alarmy-5xx", &seeded);
    configure(
        &seeded,
        steps,
        "",
        "[analysis]\nalarms = [\"alarmy-5xx\"]\n",
    );
    let deploy = Background::spawn(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    wait_until("green at 25% in its pause", Duration::from_secs(60), || {
        let router = aws.router(&listener);
        let so_far = deploy.so_far();
        (router.weight(&seeded.target_group(1)) == 25
            && so_far.stdout.contains(r#""event":"pause""#))
        .then_some(())
        .ok_or(format!("{router:?}\n{so_far}"))
    });
    let reason = "Threshold Crossed: 1 datapoint [42.0] was greater than the threshold (5.0).";
    aws.set_alarm("alarmy-5xx", StateValue::Alarm, reason);
    let fired = Instant::now();
    let done = deploy.wait(Duration::from_secs(30));
    let took = fired.elapsed();
    eprintln!("stopped {took:?} after the alarm fired (pause of 60s)");
    assert_eq!(done.code, Some(3), "{done}");
    assert!(took < Duration::from_secs(10), "{took:?}: {done}");
    let message = done.error_message();
    assert!(
        message.contains("alarm alarmy-5xx is in ALARM"),
        "{message}"
    );
    assert!(message.contains("Threshold Crossed"), "{message}");
    let events = done.events();
    let back = position(&events, "route_back", step_event("route_back"));
    let fail = position(&events, "fail_release", step_event("fail_release"));
    assert!(back < fail, "{done}");
    assert_stopped(&aws, &seeded, "alarm alarmy-5xx is in ALARM");

    // Still in ALARM: the next release is refused before any change (validate says so too).
    let validate = gl(&s, &seeded.config, &["validate"]);
    assert_eq!(validate.code, Some(5), "{validate}");
    assert!(
        validate.stderr.contains("alarm alarmy-5xx is in ALARM"),
        "{validate}"
    );
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v3", &image, &["--output", "json"]),
    );
    assert_eq!(run.code, Some(5), "{run}");
    assert!(run.error_message().contains("Threshold Crossed"), "{run}");
    if let Some(mark) = mark {
        assert_eq!(s.mutations_since(mark), Vec::<String>::new(), "{run}");
    }
    aws.set_alarm("alarmy-5xx", StateValue::Ok, "back to normal");
    let validate = gl(&s, &seeded.config, &["validate"]);
    assert_eq!(validate.code, Some(0), "{validate}");
    assert!(
        validate.stdout.contains("no alarm in ALARM (alarmy-5xx)"),
        "{validate}"
    );
}

const ANALYSIS: &str =
    "[analysis]\nmax_5xx_rate = 0.05\nmax_5xx_ratio_vs_blue = 2.0\nmin_requests = 100\n";

#[test]
fn green_failing_far_more_than_blue_is_stopped_at_the_gate() {
    let s = session();
    let seeded = s.seed("metrics", &[]);
    let aws = Aws::new(&s);
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    configure(
        &seeded,
        Some(r#"[{ weight = 20, pause = "4s" }, { weight = 100 }]"#),
        "",
        ANALYSIS,
    );
    let image = seeded.image(1);
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let mut deploy = Background::spawn(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    let step_at = wait_for_step(&aws, &seeded, 1, &mut deploy);
    // Inside the step's window: green 3% 5xx (under 5%), six times blue's 0.5%.
    let at = step_at + Duration::from_secs(1);
    aws.serve(&seeded, &green_tg, at, 200.0, 6.0);
    aws.serve(&seeded, &blue_tg, at, 800.0, 4.0);
    let done = deploy.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(3), "{done}");
    let message = done.error_message();
    assert!(message.contains("analysis failed at step 1/2"), "{message}");
    assert!(message.contains("6.0x blue's 0.50%"), "{message}");
    assert!(
        message.contains("green 3.00% 5xx (6/200), blue 0.50% 5xx (4/800)"),
        "the verdict's numbers: {message}"
    );
    let events = done.events();
    assert!(!events.iter().any(step_event("flip")), "{done}");
    position(&events, "route_back", step_event("route_back"));
    assert_stopped(&aws, &seeded, "analysis failed at step 1/2");
    if let Some(mark) = mark {
        // Read once, at the end of the pause: not at every poll during it.
        let log = log_since(&s, mark);
        assert_eq!(count(&log, "GetMetricData"), 1, "{log:?}");
    }
}

#[test]
fn a_clean_release_passes_every_gate_and_keeps_its_verdict() {
    let s = session();
    let seeded = s.seed("clean", &[]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    aws.put_alarm("clean-5xx", &seeded);
    configure(
        &seeded,
        Some(r#"[{ weight = 20, pause = "3s" }, { weight = 50, pause = "3s" }, { weight = 100 }]"#),
        &header_line(),
        &format!(
            "{ANALYSIS}alarms = [\"clean-5xx\"]\n[hooks]\npre_traffic = [\"echo ok\"]\n\
             after_step = [\"echo ok\"]\npost_traffic = [\"echo ok\"]\n"
        ),
    );
    let image = seeded.image(1);
    let mut deploy = Background::spawn(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    // Good numbers for both, inside each step's window (different per step, to tell which
    // window a verdict read).
    let step_at = wait_for_step(&aws, &seeded, 1, &mut deploy);
    let at = step_at + Duration::from_secs(1);
    aws.serve(&seeded, &green_tg, at, 300.0, 0.0);
    aws.serve(&seeded, &blue_tg, at, 900.0, 1.0);
    let step_at = wait_for_step(&aws, &seeded, 2, &mut deploy);
    let at = step_at + Duration::from_secs(1);
    aws.serve(&seeded, &green_tg, at, 500.0, 1.0);
    aws.serve(&seeded, &blue_tg, at, 900.0, 2.0);
    // `status` shows the verdict that let the release on, while it is in progress.
    let first_verdict = "pass: green 0.00% 5xx (0/300), blue 0.11% 5xx (1/900)";
    let status = gl(&s, &seeded.config, &["status", "--output", "json"]);
    assert_eq!(status.code, Some(0), "{status}");
    let status: Value = serde_json::from_str(status.stdout.trim()).expect("status JSON");
    assert_eq!(status["release"]["step"], 2, "{status}");
    assert_eq!(status["release"]["verdict"], first_verdict, "{status}");
    let done = deploy.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(0), "{done}");

    let events = done.events();
    let shift50 = position(&events, "shift to 50", |e| {
        e["action"] == "shift" && e["weight"] == 50
    });
    let flip = position(&events, "flip", step_event("flip"));
    assert_eq!(
        events[shift50]["verdict"], "pass: green 0.00% 5xx (0/300), blue 0.11% 5xx (1/900)",
        "step 1's gate: {done}"
    );
    let last_verdict = "pass: green 0.20% 5xx (1/500), blue 0.22% 5xx (2/900)";
    assert_eq!(
        events[flip]["verdict"], last_verdict,
        "step 2's gate: {done}"
    );
    let shift20 = position(&events, "shift to 20", |e| {
        e["action"] == "shift" && e["weight"] == 20
    });
    assert!(
        events[shift20].get("verdict").is_none(),
        "no gate before the first step: {done}"
    );
    let hooks: Vec<&Value> = events.iter().filter(|e| e["event"] == "hook").collect();
    assert_eq!(hooks.len(), 4, "pre, after 1, after 2, post: {done}");
    assert!(hooks.iter().all(|h| h["outcome"] == "passed"), "{done}");
    assert!(
        !events.iter().any(|e| e["event"] == "analysis"),
        "no verdict was inconclusive: {done}"
    );
    assert_eq!(events.last().unwrap()["event"], "released", "{done}");

    let green = aws.group(&seeded.fleet("v2")).unwrap();
    assert_eq!(green.tag("greenlight:phase"), Some("live"), "{green:?}");
    assert_eq!(
        green.tag("greenlight:verdict"),
        Some(last_verdict),
        "{green:?}"
    );
    assert_eq!(aws.router(&listener).percent(&green_tg), 100);
    assert_eq!(aws.test_rules(&listener), vec![]);
    assert!(!aws.locked(&seeded));
    // Once live, `status` still shows the verdict that let it on, on its slot.
    let status = gl(&s, &seeded.config, &["status", "--output", "json"]);
    let status: Value = serde_json::from_str(status.stdout.trim()).expect("status JSON");
    assert!(status["release"].is_null(), "{status}");
    assert_eq!(status["traffic"][1]["verdict"], last_verdict, "{status}");
    let status = gl(&s, &seeded.config, &["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("slot b release v2 analysis: {last_verdict}")),
        "{status}"
    );
}

/// The shared prober (`prober.rs`) on the production listener and both slots, recording the
/// test listener too. `finish` checks its judgement on production (no traffic on a target
/// group without a healthy target, no failed read, a few samples at least; the test listener
/// sends test traffic to green before it is healthy, by design, and is not judged) and gives
/// every distinct (production, test listener) state it saw, in order.
struct Prober(prober::Prober);

impl Prober {
    fn start(session: &Session, seeded: &Seeded, test: &str) -> Prober {
        let probing = prober::Probing::seeded(seeded);
        Prober(
            probing
                .also(prober::Router::Listener(test.to_owned()))
                .start(session),
        )
    }

    fn finish(self) -> Vec<(RouterView, RouterView)> {
        let probe = self.0.stop();
        if let Err(problem) = probe.check(prober::MIN_SAMPLES) {
            panic!("{problem}\n{}", probe.summary());
        }
        let view = |routing: &prober::Routing| RouterView {
            forwards: routing.forwards.clone(),
        };
        probe
            .changes(|s| (view(&s.after), view(&s.also[0])))
            .into_iter()
            .map(|s| (view(&s.after), view(&s.also[0])))
            .collect()
    }
}

/// (production share of green, test listener share of green) in order, repeats merged.
fn green_shares(samples: &[(RouterView, RouterView)], green: &str) -> Vec<(i32, i32)> {
    let mut out: Vec<(i32, i32)> = Vec::new();
    for (production, test) in samples {
        let share = (production.percent(green), test.percent(green));
        if out.last() != Some(&share) {
            out.push(share);
        }
    }
    out
}

/// Blue/green on the seeded Network Load Balancer (`seed.py --nlb`): green is reached and
/// health-checked through the test listener, which moves first; production moves once, at the
/// flip. On this emulator the NLB's ARNs say `app` (moto), so greenlight treats it as an ALB;
/// the NLB-only behaviour is in the ignored test below.
#[test]
fn blue_green_through_the_test_listener_of_a_network_load_balancer() {
    let s = session();
    let seeded = s.seed("tcp", &["--nlb"]);
    assert_eq!(seeded.str("load_balancer_type"), "network");
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let test_listener = seeded.str("test_listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    let text = std::fs::read_to_string(&seeded.config).unwrap();
    assert!(
        text.contains(&format!(
            "[test_traffic]\nlistener_arn = \"{test_listener}\""
        )),
        "{text}"
    );
    if s.emulator.hooks {
        s.script_health(
            json!({"asg_name": seeded.fleet("v2")}),
            json!([{"state": "initial", "seconds": 1}, {"state": "healthy"}]),
        );
    }
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let prober = Prober::start(&s, &seeded, &test_listener);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    let samples = prober.finish();
    assert_eq!(run.code, Some(0), "{run}");
    // The test listener on green first (that is what gets green health-checked), production
    // all at once after.
    assert_eq!(
        green_shares(&samples, &green_tg),
        [(0, 0), (0, 100), (100, 100)],
        "{samples:#?}"
    );
    let events = run.events();
    let point = position(
        &events,
        "point_test_listener",
        step_event("point_test_listener"),
    );
    let flip = position(&events, "flip", step_event("flip"));
    assert!(point < flip, "{run}");
    assert_eq!(events[point]["to"], green_tg.as_str(), "{run}");
    assert!(
        !events.iter().any(step_event("join_router")),
        "the production listener is not joined at weight 0: {run}"
    );
    if let Some(mark) = mark {
        let log = log_since(&s, mark);
        assert_eq!(
            count(&log, "ModifyListener"),
            2,
            "the test listener, then the flip: {log:?}"
        );
    }
    let production = aws.router(&listener);
    assert_eq!(production.percent(&green_tg), 100, "{production:?}");
    assert_eq!(
        aws.group(&seeded.fleet("v2"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );

    let rollback = gl(&s, &seeded.config, &["rollback", "--output", "json"]);
    assert_eq!(rollback.code, Some(0), "{rollback}");
    let production = aws.router(&listener);
    assert_eq!(production.percent(&blue_tg), 100, "{production:?}");
    let test = aws.router(&test_listener);
    assert_eq!(
        test.percent(&blue_tg),
        100,
        "the test listener follows the live release once nothing is in progress: {test:?}"
    );
    assert_eq!(
        aws.group(&seeded.fleet("blue"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );

    // The next release, held before its flip: the test listener on it (after the rolled-back
    // v2 was retired from its slot); `abort` points it back at the live release.
    configure(
        &seeded,
        None,
        "",
        "[bluegreen]\npause_before_flip = \"manual\"\n",
    );
    let image3 = seeded.image(2);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v3", &image3, &["--no-wait", "--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let events = run.events();
    position(&events, "retire_fleet", step_event("retire_fleet"));
    assert_eq!(events.last().unwrap()["event"], "paused", "{run}");
    assert_eq!(aws.router(&test_listener).percent(&green_tg), 100);
    assert_eq!(aws.router(&listener).percent(&blue_tg), 100);
    let abort = gl(&s, &seeded.config, &["abort", "--output", "json"]);
    assert_eq!(abort.code, Some(0), "{abort}");
    let events = abort.events();
    let point = position(
        &events,
        "point_test_listener",
        step_event("point_test_listener"),
    );
    assert_eq!(events[point]["to"], blue_tg.as_str(), "{abort}");
    assert_eq!(aws.router(&test_listener).percent(&blue_tg), 100);
    assert_eq!(aws.router(&listener).percent(&blue_tg), 100);
    let v3 = aws.group(&seeded.fleet("v3")).unwrap();
    assert_eq!(v3.tag("greenlight:phase"), Some("failed"), "{v3:?}");
    assert!(!aws.locked(&seeded));
}

/// What only a real NLB ARN (`listener/net/...`) gets: after the flip the previous release
/// stays named at weight 0 (NLB weighted target groups), so it stays health-checked and a
/// rollback is one call; a canary is refused before any change.
#[test]
fn a_network_load_balancer_keeps_the_previous_release_named_and_refuses_a_canary() {
    let s = session();
    let seeded = s.seed("nlb", &["--nlb"]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let test_listener = seeded.str("test_listener_arn");
    assert!(listener.contains(":listener/net/"), "{listener}");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    let image = seeded.image(1);
    let run = gl(&s, &seeded.config, &deploy_args("v2", &image, &[]));
    assert_eq!(run.code, Some(0), "{run}");
    let weights = |listener: &str| {
        let mut view = aws.router(listener).forwards;
        view.sort();
        view
    };
    let mut expected = vec![(blue_tg.clone(), 0), (green_tg.clone(), 100)];
    expected.sort();
    assert_eq!(weights(&listener), expected);
    assert_eq!(weights(&test_listener), vec![(green_tg.clone(), 100)]);
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let rollback = gl(&s, &seeded.config, &["rollback"]);
    assert_eq!(rollback.code, Some(0), "{rollback}");
    let mut expected = vec![(blue_tg.clone(), 100), (green_tg.clone(), 0)];
    expected.sort();
    assert_eq!(weights(&listener), expected);
    if let Some(mark) = mark {
        let modified: Vec<String> = s
            .mutations_since(mark)
            .into_iter()
            .filter(|m| m.ends_with(":ModifyListener"))
            .collect();
        // The production listener in one call; then the test listener back on blue.
        assert_eq!(modified.len(), 2, "{modified:?}: {rollback}");
    }

    configure(
        &seeded,
        None,
        "",
        "[canary]\nsteps = [{ weight = 10, pause = \"1m\" }, { weight = 100 }]\n",
    );
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let image3 = seeded.image(2);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v3", &image3, &["--strategy", "canary"]),
    );
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("Network Load Balancer"), "{run}");
    if let Some(mark) = mark {
        assert_eq!(s.mutations_since(mark), Vec::<String>::new());
    }
}

/// README: a `hook` event has `stage` and `step` fields, as the `run_hooks` step does.
#[test]
fn hook_events_name_their_stage_and_step_as_documented() {
    let s = session();
    let seeded = s.seed("hookjson", &[]);
    configure(
        &seeded,
        Some(r#"[{ weight = 10, pause = "1s" }, { weight = 100 }]"#),
        "",
        "[hooks]\npre_traffic = [\"echo ok\"]\nafter_step = [\"echo ok\"]\n",
    );
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let events = run.events();
    let hooks: Vec<&Value> = events.iter().filter(|e| e["event"] == "hook").collect();
    assert_eq!(hooks.len(), 2, "{run}");
    assert_eq!(hooks[0]["stage"], "pre_traffic", "{run}");
    assert!(hooks[0].get("step").is_none(), "{run}");
    assert_eq!(hooks[1]["stage"], "after_step", "{run}");
    assert_eq!(hooks[1]["step"], 1, "{run}");
}

/// A hook that starts a helper in the background and exits 0 at once has passed: its shell
/// ended, even though the helper still holds the hook's stdout.
#[test]
fn a_hook_that_leaves_a_background_process_passes_when_its_shell_exits() {
    let s = session();
    let seeded = s.seed("hookbg", &[]);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("helper.pid");
    let hook = format!("sleep 20 & echo $! > {}; echo spawned", pid_file.display());
    configure(
        &seeded,
        None,
        "",
        &format!("[hooks]\npre_traffic = [{hook:?}]\ntimeout = \"5s\"\n"),
    );
    let image = seeded.image(1);
    let started = Instant::now();
    let run = gl(&s, &seeded.config, &deploy_args("v2", &image, &[]));
    let took = started.elapsed();
    // Clean up the helper whatever happened.
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    assert_eq!(run.code, Some(0), "{run}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {run}");
}

/// A hook that outlives its timeout is stopped with what it started: nothing of it keeps
/// running after greenlight has failed the release and exited.
#[test]
fn a_timed_out_hook_is_stopped_with_its_children() {
    let s = session();
    let seeded = s.seed("hookhang", &[]);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("sleep.pid");
    // The sleep runs in the foreground of the hook's shell; its pid is written first.
    let hook = format!(
        "echo started; sh -c 'echo $$ > {}; exec sleep 30'",
        pid_file.display()
    );
    configure(
        &seeded,
        None,
        "",
        &format!("[hooks]\npre_traffic = [{hook:?}]\ntimeout = \"2s\"\n"),
    );
    let image = seeded.image(1);
    let run = gl(&s, &seeded.config, &deploy_args("v2", &image, &[]));
    assert_eq!(run.code, Some(3), "{run}");
    assert!(run.stderr.contains("timed out after 2s"), "{run}");
    let pid = std::fs::read_to_string(&pid_file).expect("the hook wrote its sleep's pid");
    let pid = pid.trim().to_owned();
    // Gone (or a zombie waiting to be reaped) shortly after greenlight exited.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|status| {
                !status
                    .lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
            .unwrap_or(false)
    };
    let end = Instant::now() + Duration::from_secs(2);
    while alive() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = alive();
    if survived {
        let _ = Command::new("kill").arg(&pid).status();
    }
    assert!(
        !survived,
        "the timed-out hook's sleep (pid {pid}) kept running: {run}"
    );
}

/// A rule router at priority 1 leaves no room before it for the test rule: that is known from
/// the listener's rules before anything changes, so `validate` and `deploy` say so up front.
#[test]
fn no_room_for_the_test_rule_before_a_rule_router_is_refused_before_any_change() {
    let s = session();
    let seeded = s.seed("prio1", &["--rule"]);
    let aws = Aws::new(&s);
    aws.set_priority(&seeded.str("rule_arn"), 1);
    configure(&seeded, None, &header_line(), "");
    let validate = gl(&s, &seeded.config, &["validate"]);
    assert_eq!(validate.code, Some(2), "{validate}");
    assert!(validate.stderr.contains("priority"), "{validate}");
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let image = seeded.image(1);
    let run = gl(&s, &seeded.config, &deploy_args("v2", &image, &[]));
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("priority"), "{run}");
    if let Some(mark) = mark {
        assert_eq!(s.mutations_since(mark), Vec::<String>::new(), "{run}");
    }
    assert!(aws.group(&seeded.fleet("v2")).is_none(), "{run}");
}

/// A hook that runs longer than the lock lives unrenewed: the deploy keeps renewing the lock
/// meanwhile, so a second runner finds it held (not expired, not taken over) and the release
/// ends well.
#[test]
fn the_lock_is_renewed_while_a_hook_runs_longer_than_it_lives() {
    let s = session();
    let seeded = s.seed("longhook", &[]);
    configure(
        &seeded,
        None,
        "",
        "[hooks]\npre_traffic = [\"sleep 5\"]\n[lock]\nttl = \"2s\"\n",
    );
    let image = seeded.image(1);
    let deploy = Background::spawn(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    wait_until("the pre_traffic hook runs", Duration::from_secs(60), || {
        let so_far = deploy.so_far();
        so_far
            .stdout
            .contains(r#""action":"run_hooks""#)
            .then_some(())
            .ok_or(format!("{so_far}"))
    });
    // Twice the lock's life into the hook.
    std::thread::sleep(Duration::from_secs(4));
    let second = gl(
        &s,
        &seeded.config,
        &deploy_args("v3", &seeded.image(2), &[]),
    );
    assert_eq!(second.code, Some(4), "{second}");
    assert!(
        second.stderr.contains("is locked by") && second.stderr.contains("`greenlight deploy`"),
        "{second}"
    );
    let done = deploy.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(0), "{done}");
    assert_eq!(done.events().last().unwrap()["event"], "released", "{done}");
}

/// Ctrl-C while a hook runs: the hook is killed with what it started, greenlight stops at once
/// (exit 130), and the stage runs again when the deploy is re-run.
#[test]
fn a_signal_during_a_hook_stops_it_at_once_and_the_rerun_runs_it_again() {
    let s = session();
    let seeded = s.seed("hooksig", &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("sleep.pid");
    let runs = dir.path().join("runs");
    configure(
        &seeded,
        None,
        "",
        &format!(
            "[hooks]\npre_traffic = [\"echo run >> {runs}; if [ ! -e {pid}.done ]; then \
             touch {pid}.done; sleep 60 & echo $! > {pid}; wait; fi\"]\n",
            runs = runs.display(),
            pid = pid_file.display()
        ),
    );
    let image = seeded.image(1);
    let deploy = Background::spawn(&s, &seeded.config, &deploy_args("v2", &image, &[]));
    wait_until("the hook's sleep started", Duration::from_secs(60), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok())
            .ok_or(format!("{}", deploy.so_far()))
    });
    let sleep_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let sent = Instant::now();
    deploy.signal(libc::SIGINT);
    let stopped = deploy.wait(Duration::from_secs(20));
    let took = sent.elapsed();
    assert_eq!(stopped.code, Some(130), "{stopped}");
    assert!(took < Duration::from_secs(10), "{took:?}: {stopped}");
    assert!(stopped.stderr.contains("stopped by SIGINT"), "{stopped}");
    // SAFETY: kill(pid, 0) only asks whether the process exists.
    let alive = unsafe { libc::kill(sleep_pid, 0) } == 0
        && !std::fs::read_to_string(format!("/proc/{sleep_pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"));
    assert!(
        !alive,
        "the hook's sleep (pid {sleep_pid}) kept running: {stopped}"
    );

    let rerun = gl(&s, &seeded.config, &deploy_args("v2", &image, &[]));
    assert_eq!(rerun.code, Some(0), "{rerun}");
    let ran = std::fs::read_to_string(&runs).unwrap_or_default();
    assert_eq!(
        ran.lines().count(),
        2,
        "the stage ran again: {ran:?}; {rerun}"
    );
}
