//! The IAM policies are exactly what the binary needs, proven from the emulator's request log.
//!
//! One tour of the real binary through every code path that calls AWS (validate, status, a
//! canary deploy to a manual gate with a timed pause whose gate reads CloudWatch metrics, abort,
//! a blue/green deploy with a header test rule, a test listener, a pre_traffic hook and an alarm,
//! rollback, rollback --to, another canary deploy that retires the seeded fleet, promote,
//! cleanup --dry-run, cleanup retiring a warm fleet with a leftover test rule and old launch
//! template versions, unlock --force, cleanup --all removing a stale lock) on a service routed by
//! a listener rule with a test listener. Every AWS call greenlight makes carries `app/greenlight`
//! in its user agent, and the emulator's request log records it, so the calls of seed.py and of
//! the test's own SDK clients are left out.
//!
//! Then: the actions the binary called are exactly what infra/iam-policy.json grants, but for
//! the few that AWS checks on the binary's behalf without the binary calling them (the
//! [`IMPLIED`] table, each with the call that implies it, which must have been made); and the
//! cleanup commands of the tour called only what the cleanup Lambda's role grants
//! (infra/cleanup-lambda.yaml, its `cleanup` policy), and every action it grants.
//! infra/deployer-role.yaml grants the same actions as iam-policy.json (tests/suite/infra.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_autoscaling::types::Tag as AsgTag;
use aws_sdk_cloudwatch::Client as CwClient;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, HttpHeaderConditionConfig, RuleCondition, Tag as ElbTag,
};
use serde_json::{Value, json};

use super::harness::{Seeded, Session, request, session, yaml};

/// Actions AWS checks against the caller's policy on a call the binary makes, without the
/// binary calling them: (implied action, the call that implies it, why).
const IMPLIED: &[(&str, &str, &str)] = &[
    (
        "ec2:RunInstances",
        "autoscaling:CreateAutoScalingGroup",
        "Auto Scaling checks that the caller may launch from the group's launch template \
         (CreateAutoScalingGroup, and UpdateAutoScalingGroup when it changes the template)",
    ),
    (
        "iam:PassRole",
        "autoscaling:CreateAutoScalingGroup",
        "the launch template's instance profile role, and a lifecycle hook's notification role, \
         are passed by the caller of CreateAutoScalingGroup",
    ),
    (
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:CreateRule",
        "CreateRule with Tags is also authorized as AddTags (the test-traffic rule is tagged \
         when it is created)",
    ),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

// ---------------------------------------------------------------------------------------------
// The policies

fn one_or_many(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// Every action an Allow statement of `document` grants.
fn policy_actions(document: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for statement in one_or_many(&document["Statement"]) {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        for action in one_or_many(&statement["Action"]) {
            let action = action.as_str().expect("an action string").to_owned();
            assert!(!action.contains('*'), "wildcard action {action}");
            actions.insert(action);
        }
    }
    actions
}

fn deployer_actions() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("infra/iam-policy.json")).unwrap();
    policy_actions(&serde_json::from_str(&text).expect("infra/iam-policy.json is JSON"))
}

/// The cleanup Lambda role's `cleanup` policy, and its other policies' actions.
fn lambda_actions() -> (BTreeSet<String>, BTreeSet<String>) {
    let template = yaml(&root().join("infra/cleanup-lambda.yaml"));
    let mut cleanup = None;
    let mut others = BTreeSet::new();
    for policy in one_or_many(&template["Resources"]["Role"]["Properties"]["Policies"]) {
        let actions = policy_actions(&policy["PolicyDocument"]);
        if policy["PolicyName"] == "cleanup" {
            cleanup = Some(actions);
        } else {
            others.extend(actions);
        }
    }
    (
        cleanup.expect("cleanup-lambda.yaml's role has a policy named cleanup"),
        others,
    )
}

// ---------------------------------------------------------------------------------------------
// The request log

/// The IAM service prefix of a SigV4 signing name.
fn iam_prefix(signing_name: &str) -> &str {
    match signing_name {
        "monitoring" => "cloudwatch",
        other => other, // autoscaling, ec2, elasticloadbalancing: the same
    }
}

/// The emulator's request log from `since` on: the IAM actions (`prefix:Action`) of the
/// requests greenlight made (user agent `app/greenlight`), how many requests others made, and
/// the log's total (the next mark).
fn greenlight_calls(s: &Session, since: usize) -> (Vec<String>, usize, usize) {
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
    let mut ours = Vec::new();
    let mut others = 0;
    for entry in log["requests"].as_array().expect("requests") {
        if entry["app"] != "greenlight" {
            others += 1;
            continue;
        }
        let (Some(service), Some(action)) = (entry["service"].as_str(), entry["action"].as_str())
        else {
            panic!("a request of greenlight's the emulator could not name: {entry}");
        };
        ours.push(format!("{}:{action}", iam_prefix(service)));
    }
    (ours, others, total)
}

// ---------------------------------------------------------------------------------------------
// The tour

/// One greenlight run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{self}"))
            })
            .collect()
    }

    fn last(&self) -> Value {
        self.events()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no events: {self}"))
    }

    fn applied(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "cleanup_applied")
            .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
            .collect()
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

/// What each tour step made greenlight call.
struct Tour<'s> {
    s: &'s Session,
    config: PathBuf,
    mark: usize,
    called: Called,
    /// What the `cleanup` steps called.
    by_cleanup: Called,
    started: Instant,
    /// The last step's arguments.
    last: Option<Vec<String>>,
}

impl Tour<'_> {
    /// Runs `greenlight --output json <args>`, expects exit 0, and records its calls.
    fn run(&mut self, args: &[&str]) -> Run {
        self.run_with(&self.config.clone(), args)
    }

    fn run_with(&mut self, config: &Path, args: &[&str]) -> Run {
        let out = self
            .s
            .greenlight(config)
            .args(["--output", "json"])
            .args(args)
            .output()
            .expect("run greenlight");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let step = args.join(" ");
        eprintln!(
            "[{:5.1}s] greenlight {step}: exit {:?}",
            self.started.elapsed().as_secs_f64(),
            run.code
        );
        assert_eq!(run.code, Some(0), "greenlight {step}:\n{run}");
        let (calls, _, total) = greenlight_calls(self.s, self.mark);
        self.mark = total;
        assert!(
            !calls.is_empty(),
            "greenlight {step} made no AWS call the emulator saw as greenlight's (user agent \
             app/greenlight)"
        );
        self.last = Some(args.iter().map(|a| a.to_string()).collect());
        self.record(calls);
        run
    }

    fn record(&mut self, calls: Vec<String>) {
        let Some(args) = &self.last else {
            // No greenlight of the tour's has run yet: these come from an earlier test's
            // process, or an attempt a fault proxy of an earlier test forwarded after its
            // client had given up (the emulator outlives a test; its log is reset with it).
            if !calls.is_empty() {
                eprintln!("greenlight calls before the tour's first step, not counted: {calls:?}");
            }
            return;
        };
        let step = args.join(" ");
        let cleanup = args.first().map(String::as_str) == Some("cleanup");
        for action in calls {
            if cleanup {
                self.by_cleanup
                    .entry(action.clone())
                    .or_default()
                    .insert(step.clone());
            }
            self.called.entry(action).or_default().insert(step.clone());
        }
    }

    /// Skips what the test's own SDK calls and seed.py made since the last step.
    ///
    /// A greenlight call logged now was still sent by the last step: the emulator logs a request
    /// when a server thread takes it up, and under load an attempt greenlight abandoned at its
    /// per-call timeout (and retried) can be taken up after the process exited. It counts as
    /// the last step's.
    fn skip_others(&mut self) {
        let (calls, _, total) = greenlight_calls(self.s, self.mark);
        if !calls.is_empty() {
            eprintln!("late calls of the last step: {calls:?}");
        }
        self.record(calls);
        self.mark = total;
    }
}

struct Aws {
    asg: AsgClient,
    elb: ElbClient,
    ec2: Ec2Client,
    cw: CwClient,
}

impl Aws {
    fn new(s: &Session) -> Aws {
        let conf = block_on(s.sdk());
        Aws {
            asg: AsgClient::new(&conf),
            elb: ElbClient::new(&conf),
            ec2: Ec2Client::new(&conf),
            cw: CwClient::new(&conf),
        }
    }

    fn tag_fleet(&self, fleet: &str, tags: &[(&str, &str)]) {
        block_on(
            self.asg
                .create_or_update_tags()
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| {
                            AsgTag::builder()
                                .resource_id(fleet)
                                .resource_type("auto-scaling-group")
                                .key(*k)
                                .value(*v)
                                .propagate_at_launch(false)
                                .build()
                        })
                        .collect(),
                ))
                .send(),
        )
        .expect("tag the fleet");
    }

    /// An alarm for `[analysis] alarms` (OK on the emulator until its state is set).
    fn put_alarm(&self, name: &str) {
        block_on(
            self.cw
                .put_metric_alarm()
                .alarm_name(name)
                .namespace("AWS/ApplicationELB")
                .metric_name("HTTPCode_Target_5XX_Count")
                .statistic(Statistic::Sum)
                .period(60)
                .evaluation_periods(1)
                .threshold(5.0)
                .comparison_operator(ComparisonOperator::GreaterThanThreshold)
                .send(),
        )
        .expect("put the alarm");
    }

    /// A test-traffic rule a crashed run left for a release long gone.
    fn leftover_test_rule(&self, seeded: &Seeded, listener: &str, target_group: &str) {
        let tag = |k: &str, v: &str| ElbTag::builder().key(k).value(v).build();
        block_on(
            self.elb
                .create_rule()
                .listener_arn(listener)
                .priority(7)
                .conditions(
                    RuleCondition::builder()
                        .field("http-header")
                        .http_header_config(
                            HttpHeaderConditionConfig::builder()
                                .http_header_name("X-Greenlight-Release")
                                .values("v0")
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
                .tags(tag("greenlight:service", &seeded.service))
                .tags(tag("greenlight:release", "v0"))
                .tags(tag("greenlight:test-traffic", "true"))
                .send(),
        )
        .expect("create the leftover rule");
    }

    /// A lock object as a greenlight on another host holds it, expiring at `expires_at`.
    fn put_lock(&self, service: &str, expires_at: &str) {
        use aws_sdk_ec2::types::{RequestLaunchTemplateData, ResourceType, Tag, TagSpecification};
        let tags = [
            ("greenlight:lock", service),
            ("greenlight:lock-holder", "ci@elsewhere"),
            ("greenlight:lock-host", "elsewhere"),
            ("greenlight:lock-pid", "4242"),
            ("greenlight:lock-token", "someone-else"),
            ("greenlight:lock-command", "deploy"),
            ("greenlight:lock-acquired-at", "2026-01-01T00:00:00Z"),
            ("greenlight:lock-expires-at", expires_at),
        ];
        block_on(
            self.ec2
                .create_launch_template()
                .launch_template_name(format!("greenlight-lock.{service}"))
                .launch_template_data(RequestLaunchTemplateData::builder().build())
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::LaunchTemplate)
                        .set_tags(Some(
                            tags.iter()
                                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                                .collect(),
                        ))
                        .build(),
                )
                .send(),
        )
        .expect("create the lock");
    }

    fn lock_exists(&self, service: &str) -> bool {
        block_on(
            self.ec2
                .describe_launch_templates()
                .launch_template_names(format!("greenlight-lock.{service}"))
                .send(),
        )
        .is_ok_and(|out| !out.launch_templates().is_empty())
    }
}

fn deploy_event(run: &Run, event: &str) {
    let last = run.last();
    assert_eq!(last["event"], event, "{run}");
}

/// IAM action -> the tour steps that called it.
type Called = BTreeMap<String, BTreeSet<String>>;

/// The tour; returns what greenlight called, in all and in its cleanup commands.
fn tour(s: &Session) -> (Called, Called) {
    let started = Instant::now();
    // A rule router (ModifyRule) with a test listener (ModifyListener) on an ALB; the seeded
    // blue fleet carries scaling policies (target tracking and step), a lifecycle hook, a
    // scheduled action, metrics collection and a suspended process, which a twin copies.
    let seeded = s.seed(
        "tour",
        &[
            "--rule",
            "--test-listener",
            "--capacity",
            "1",
            "--deregistration-delay",
            "1",
            "--keep-warm",
            "1s",
        ],
    );
    let aws = Aws::new(s);
    let listener = seeded.str("listener_arn");
    let slot_a = seeded.target_group(0);
    aws.put_alarm("tour-5xx");
    // seed.py writes [test_traffic] (the test listener) last: the header joins it.
    let mut text = std::fs::read_to_string(&seeded.config).expect("seeded config");
    text.push_str(
        "header = \"X-Greenlight-Release\"\n\n\
         [lock]\nttl = \"2s\"\n\n\
         [canary]\nsteps = [{ weight = 20, pause = \"1s\" }, { weight = 50, pause = \"manual\" }, \
         { weight = 100 }]\n\n\
         [hooks]\npre_traffic = [\"true\"]\n\n\
         [analysis]\nalarms = [\"tour-5xx\"]\nmax_5xx_rate = 0.05\nmin_requests = 1\n\
         inconclusive = \"pass\"\n",
    );
    std::fs::write(&seeded.config, text).expect("write config");

    let mut t = Tour {
        s,
        config: seeded.config.clone(),
        mark: 0,
        called: BTreeMap::new(),
        by_cleanup: BTreeMap::new(),
        started,
        last: None,
    };
    t.skip_others();
    let (image1, image2) = (seeded.image(1), seeded.image(2));

    t.run(&["validate"]);
    t.run(&["status"]);
    // Canary to the manual gate: 20% for 1 s, its gate reads the metrics, then 50%.
    let run = t.run(&[
        "deploy",
        "--release",
        "v2",
        "--image-id",
        &image1,
        "--strategy",
        "canary",
        "--no-wait",
    ]);
    deploy_event(&run, "paused");
    assert_eq!(run.last()["weight"], 50, "{run}");
    // Traffic back to blue, v2 failed.
    let run = t.run(&["abort"]);
    deploy_event(&run, "aborted");
    // Blue/green into slot b (retiring the failed v2): header rule, test listener, hook, alarm.
    let run = t.run(&["deploy", "--release", "v3", "--image-id", &image2]);
    deploy_event(&run, "released");
    // Blue live again (its suspended processes resumed), then v3 again.
    let run = t.run(&["rollback"]);
    deploy_event(&run, "rolled_back");
    let run = t.run(&["rollback", "--to", "v3"]);
    deploy_event(&run, "rolled_back");
    // A canary into slot a, which retires the seeded fleet; promote drives it to the end, and
    // v3 goes warm (greenlight's, so cleanup may retire it).
    let run = t.run(&[
        "deploy",
        "--release",
        "v4",
        "--image-id",
        &image1,
        "--strategy",
        "canary",
        "--no-wait",
    ]);
    deploy_event(&run, "paused");
    let run = t.run(&["promote"]);
    deploy_event(&run, "released");

    // Cleanup: the warm v3 (keep_warm 1s, deregistration delay 1s), a leftover test rule, and
    // launch template versions beyond the newest one (v2's is used by no fleet).
    // v3 lost the traffic "five minutes ago" (its tags are the record cleanup reads): past
    // warm-until, and long enough ago that cleanup asks CloudWatch whether it still got
    // requests (it does so only from the deregistration delay plus a minute's grace on).
    let long_ago =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(300)).to_string();
    aws.tag_fleet(
        &seeded.fleet("v3"),
        &[
            ("greenlight:unrouted-at", &long_ago),
            ("greenlight:warm-until", &long_ago),
        ],
    );
    // Its targets report `draining` for 1.5 s: cleanup waits (renewing its 2 s lock) before
    // it scales the fleet down.
    s.script_health(
        json!({"asg_name": seeded.fleet("v3")}),
        json!([{"state": "draining", "seconds": 1.5}, {"state": "healthy"}]),
    );
    aws.leftover_test_rule(&seeded, &listener, &slot_a);
    t.skip_others();
    let run = t.run(&["cleanup", "--dry-run"]);
    assert!(run.applied().is_empty(), "{run}");
    let run = t.run(&["cleanup", "--keep-releases", "1"]);
    let applied = run.applied();
    for action in [
        "scale_down",
        "delete_fleet",
        "delete_rule",
        "delete_versions",
    ] {
        assert!(
            applied.iter().any(|a| a == action),
            "cleanup did not {action}: {applied:?}\n{run}"
        );
    }

    // A lock held by a runner gone elsewhere, removed by force.
    aws.put_lock(&seeded.service, "2099-01-01T00:00:00Z");
    t.skip_others();
    t.run(&["unlock", "--force"]);
    assert!(!aws.lock_exists(&seeded.service), "unlock --force left it");

    // Every service from tags, with a crashed run's stale lock of a service that is gone.
    aws.put_lock("gone", "2026-01-01T00:00:00Z");
    t.skip_others();
    let run = t.run_with(
        Path::new("/nonexistent/greenlight.toml"),
        &["cleanup", "--all"],
    );
    assert_eq!(run.last()["event"], "cleanup_done", "{run}");
    assert!(!aws.lock_exists("gone"), "the stale lock stayed:\n{run}");
    eprintln!("tour done in {:.1}s", started.elapsed().as_secs_f64());
    (t.called, t.by_cleanup)
}

fn named(actions: &[&String], called: &Called) -> String {
    actions
        .iter()
        .map(|a| match called.get(*a) {
            Some(steps) => format!(
                "{a} (by {})",
                steps.iter().cloned().collect::<Vec<_>>().join("; ")
            ),
            None => (*a).clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn the_policies_grant_exactly_what_the_binary_calls_across_a_tour_of_every_command() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: needs greenlight's emulator (its request log records the caller)");
        return;
    }
    let (called, by_cleanup) = tour(&s);
    // The log tells greenlight's calls from others': seed.py's and the test's own SDK calls
    // are there too, and not counted.
    let (_, others, _) = greenlight_calls(&s, 0);
    assert!(
        others > 0,
        "the request log holds no request of seed.py or the test's SDK clients"
    );
    eprintln!(
        "greenlight called {} actions, {} of them in cleanup:\n{}",
        called.len(),
        by_cleanup.len(),
        called.keys().cloned().collect::<Vec<_>>().join("\n")
    );
    let mut problems = Vec::new();

    // The deployer policy: what was called, plus what AWS checks on those calls, nothing else.
    let granted = deployer_actions();
    let implied: BTreeSet<String> = IMPLIED.iter().map(|(a, _, _)| (*a).to_owned()).collect();
    for (action, by, why) in IMPLIED {
        if !called.contains_key(*by) {
            problems.push(format!(
                "{action} is granted because AWS checks it on {by}, which the tour never called"
            ));
        }
        if !granted.contains(*action) {
            problems.push(format!(
                "infra/iam-policy.json lacks {action}, which AWS checks on {by}: {why}"
            ));
        }
    }
    let called_set: BTreeSet<String> = called.keys().cloned().collect();
    let needed: BTreeSet<String> = granted.difference(&implied).cloned().collect();
    let missing: Vec<&String> = called_set.difference(&granted).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "infra/iam-policy.json (and deployer-role.yaml) lack actions the binary called: {}",
            named(&missing, &called)
        ));
    }
    let unused: Vec<&String> = needed.difference(&called_set).collect();
    if !unused.is_empty() {
        problems.push(format!(
            "infra/iam-policy.json (and deployer-role.yaml) grant actions the binary never \
             called in the tour (nor does AWS check them on a call it made): {}",
            named(&unused, &called)
        ));
    }

    // The cleanup Lambda's role: what the cleanup commands called, and all of it.
    let (lambda, lambda_others) = lambda_actions();
    if let Some(other) = lambda_others.iter().find(|a| !a.starts_with("logs:")) {
        problems.push(format!(
            "the cleanup Lambda role's other policies grant more than its logs: {other}"
        ));
    }
    let cleanup_set: BTreeSet<String> = by_cleanup.keys().cloned().collect();
    let missing: Vec<&String> = cleanup_set.difference(&lambda).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "infra/cleanup-lambda.yaml's cleanup policy lacks actions cleanup called: {}",
            named(&missing, &by_cleanup)
        ));
    }
    let unused: Vec<&String> = lambda.difference(&cleanup_set).collect();
    if !unused.is_empty() {
        problems.push(format!(
            "infra/cleanup-lambda.yaml's cleanup policy grants actions cleanup never called \
             in the tour: {}",
            named(&unused, &by_cleanup)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
