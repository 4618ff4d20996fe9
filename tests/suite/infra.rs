//! infra/: every CloudFormation template lints clean (infra/lint.sh, cfn-lint), the sample
//! service's stack is what greenlight releases (deployed into the emulator's CloudFormation by
//! localstack/stack.py, then the real binary validates, deploys and cleans up against its
//! outputs), and the IAM policies agree: infra/iam-policy.json and deployer-role.yaml grant the
//! same actions, the cleanup Lambda's role a subset, and every action the binary called in these
//! runs is granted.
//!
//! moto 5.2.5's CloudFormation creates every resource type sample-service.yaml uses
//! (AWS::EC2::SecurityGroup, AWS::ElasticLoadBalancingV2::LoadBalancer, ::TargetGroup,
//! ::Listener, AWS::EC2::LaunchTemplate, AWS::AutoScaling::AutoScalingGroup), with two gaps:
//! a TargetGroup's `TargetGroupAttributes` and `Tags` are ignored (the deregistration delay stays
//! 300 s: the tests set it with the SDK, as CloudFormation would have), and a Listener's forward
//! action needs `TargetGroupArn` (moto raises KeyError on a `ForwardConfig`-only forward; the
//! template names both, which AWS accepts for one target group).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::TargetGroupAttribute;
use serde_json::Value;

use super::harness::{Session, forward_action, forwards_of, is_read, session, venv, yaml};

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
// (a) cfn-lint

#[test]
fn every_template_in_infra_passes_cfn_lint() {
    venv(); // installs cfn-lint with the emulator's venv, once per test process
    let out = Command::new("bash")
        .arg(root().join("infra/lint.sh"))
        .output()
        .expect("run infra/lint.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "infra/lint.sh failed:\n{text}");
    let templates = std::fs::read_dir(root().join("infra"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert!(
        templates >= 3,
        "sample-service, cleanup-lambda, deployer-role"
    );
    assert!(
        text.contains(&format!("on {templates} template(s)")),
        "lint.sh must lint every template in infra/: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) the sample service's stack, released by the real binary

struct Stack {
    service: String,
    info: Value,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn output(&self, key: &str) -> String {
        self.info["outputs"][key]
            .as_str()
            .unwrap_or_else(|| panic!("stack output {key} missing: {}", self.info))
            .to_owned()
    }

    fn image(&self, n: usize) -> String {
        self.info["images"][n].as_str().unwrap().to_owned()
    }

    fn fleet(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.service)
    }
}

/// Creates the sample-service.yaml stack with `params`, and a greenlight.toml made from its
/// GreenlightConfig output plus `extra`.
fn sample_stack(s: &Session, service: &str, params: &[&str], extra: &str) -> Stack {
    // On an endpoint that keeps its state (LocalStack), names must be new each run.
    let service = if s.emulator.hooks {
        service.to_owned()
    } else {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000)
            .unwrap_or_default();
        format!("{service}-{stamp}")
    };
    let mut cmd = Command::new(venv().join("bin/python"));
    cmd.arg(root().join("localstack/stack.py"))
        .arg(root().join("infra/sample-service.yaml"))
        .args(["--stack-name", &service, "--network", "--image", "0"])
        .args(["--param", &format!("ServiceName={service}")]);
    for p in params {
        cmd.args(["--param", p]);
    }
    let out = cmd.envs(s.aws_env()).output().expect("run stack.py");
    assert!(
        out.status.success(),
        "stack.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).expect("stack.py prints JSON");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greenlight.toml");
    let snippet = info["outputs"]["GreenlightConfig"]
        .as_str()
        .expect("GreenlightConfig output");
    std::fs::write(&config, format!("{snippet}\n{extra}")).unwrap();
    Stack {
        service,
        info,
        config,
        _dir: dir,
    }
}

struct Aws {
    elb: ElbClient,
    asg: AsgClient,
}

impl Aws {
    fn new(s: &Session) -> Aws {
        let conf = block_on(s.sdk());
        Aws {
            elb: ElbClient::new(&conf),
            asg: AsgClient::new(&conf),
        }
    }

    /// (target group, weight) of the listener's default forward action.
    fn forwards(&self, listener: &str) -> Vec<(String, i32)> {
        let out = block_on(self.elb.describe_listeners().listener_arns(listener).send()).unwrap();
        forwards_of(forward_action(out.listeners()[0].default_actions()).expect("a forward action"))
    }

    /// The one target group the listener sends traffic to.
    fn live(&self, listener: &str) -> String {
        let forwards = self.forwards(listener);
        let taking: Vec<_> = forwards.iter().filter(|(_, w)| *w > 0).collect();
        assert_eq!(taking.len(), 1, "traffic split: {forwards:?}");
        taking[0].0.clone()
    }

    /// (target groups, greenlight:phase tag), or `None` when the group is gone.
    fn group(&self, name: &str) -> Option<(Vec<String>, Option<String>)> {
        let out = block_on(
            self.asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send(),
        )
        .unwrap();
        out.auto_scaling_groups()
            .first()
            .filter(|g| g.status().is_none())
            .map(|g| {
                let phase = g
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("greenlight:phase"))
                    .and_then(|t| t.value().map(str::to_owned));
                (g.target_group_arns().to_vec(), phase)
            })
    }

    fn deregistration_delay(&self, target_group: &str) -> String {
        let out = block_on(
            self.elb
                .describe_target_group_attributes()
                .target_group_arn(target_group)
                .send(),
        )
        .unwrap();
        out.attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value().map(str::to_owned))
            .unwrap_or_default()
    }

    /// What CloudFormation would have done with the template's TargetGroupAttributes.
    fn set_deregistration_delay(&self, target_group: &str, seconds: &str) {
        block_on(
            self.elb
                .modify_target_group_attributes()
                .target_group_arn(target_group)
                .attributes(
                    TargetGroupAttribute::builder()
                        .key("deregistration_delay.timeout_seconds")
                        .value(seconds)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    }
}

/// Runs greenlight; returns (exit code, stdout JSON events, stderr).
fn run(s: &Session, stack: &Stack, args: &[&str]) -> (i32, Vec<Value>, String) {
    let out = s.greenlight(&stack.config).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events = if args.contains(&"json") {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    } else {
        Vec::new()
    };
    (
        out.status.code().unwrap_or(-1),
        events,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// The IAM actions (`service:Action`) the binary called since `mark` (emulator hook).
fn called_since(s: &Session, mark: usize) -> BTreeSet<String> {
    s.requests_since(mark)
        .0
        .into_iter()
        .map(|(service, action)| format!("{service}:{action}"))
        .collect()
}

#[test]
fn the_sample_service_stack_is_what_greenlight_releases() {
    let s = session();
    let stack = sample_stack(
        &s,
        "shop",
        &[],
        "[health]\ntimeout = \"2m\"\ninterval = \"200ms\"\n",
    );
    let aws = Aws::new(&s);

    // Every resource was created, and the stack's outputs are the shape greenlight expects.
    let types: BTreeSet<&str> = stack.info["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "CREATE_COMPLETE", "{r}");
            r["type"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "AWS::AutoScaling::AutoScalingGroup",
            "AWS::EC2::LaunchTemplate",
            "AWS::EC2::SecurityGroup",
            "AWS::ElasticLoadBalancingV2::Listener",
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "AWS::ElasticLoadBalancingV2::TargetGroup",
        ])
    );
    let (listener, slot_a, slot_b) = (
        stack.output("ListenerArn"),
        stack.output("TargetGroupAArn"),
        stack.output("TargetGroupBArn"),
    );
    assert!(slot_a.contains(&format!(":targetgroup/{}-a/", stack.service)));
    assert!(slot_b.contains(&format!(":targetgroup/{}-b/", stack.service)));
    assert_eq!(aws.forwards(&listener), vec![(slot_a.clone(), 1)]);
    let initial = stack.output("AutoScalingGroupName");
    assert_eq!(initial, stack.fleet("initial"));
    assert_eq!(aws.group(&initial), Some((vec![slot_a.clone()], None)));

    let mark = if s.emulator.hooks {
        s.request_mark()
    } else {
        0
    };
    let (code, _, out) = run(&s, &stack, &["validate"]);
    assert_eq!(code, 0, "validate:\n{out}");

    let image = stack.image(1);
    let (code, events, out) = run(
        &s,
        &stack,
        &[
            "deploy",
            "--release",
            "v2",
            "--image-id",
            &image,
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "deploy:\n{out}");
    let last = events.last().expect("events");
    assert_eq!(last["event"], "released", "{out}");
    assert_eq!(last["slot"], "b", "{out}");

    // Traffic moved: the listener now sends everything to slot b, where v2's fleet runs; the
    // stack's fleet is the warm previous release.
    assert_eq!(aws.live(&listener), slot_b);
    assert_eq!(
        aws.group(&stack.fleet("v2")),
        Some((vec![slot_b.clone()], Some("live".to_owned())))
    );
    assert_eq!(
        aws.group(&initial),
        Some((vec![slot_a.clone()], Some("warm".to_owned())))
    );

    // status agrees (JSON on stdout).
    let (code, events, out) = run(&s, &stack, &["status", "--output", "json"]);
    assert_eq!(code, 0, "status:\n{out}");
    assert!(out.contains(&stack.fleet("v2")), "{out}");
    assert!(!events.is_empty(), "{out}");

    if s.emulator.hooks {
        // Everything the binary called is in the deployer policy.
        let granted = policy_actions(&iam_policy_json());
        let missing: Vec<_> = called_since(&s, mark)
            .into_iter()
            .filter(|a| !granted.contains(a))
            .collect();
        assert!(
            missing.is_empty(),
            "called but not in infra/iam-policy.json: {missing:?}"
        );
    }
}

#[test]
fn cleanup_retires_the_warm_fleet_of_a_stack_made_service_and_never_the_stacks_own_fleet() {
    let s = session();
    let stack = sample_stack(
        &s,
        "shop",
        &["DeregistrationDelaySeconds=1"],
        "[health]\ntimeout = \"2m\"\ninterval = \"200ms\"\n\n[retention]\nkeep_warm = \"1s\"\n",
    );
    let aws = Aws::new(&s);
    let (listener, slot_a, slot_b) = (
        stack.output("ListenerArn"),
        stack.output("TargetGroupAArn"),
        stack.output("TargetGroupBArn"),
    );
    for tg in [&slot_a, &slot_b] {
        if aws.deregistration_delay(tg) != "1" {
            // moto ignores TargetGroupAttributes (see the module comment).
            aws.set_deregistration_delay(tg, "1");
        }
    }
    let initial = stack.fleet("initial");
    let cleanup_role = lambda_cleanup_actions();
    let cleanup = |what: &str| {
        let mark = if s.emulator.hooks {
            s.request_mark()
        } else {
            0
        };
        let (code, events, out) = run(&s, &stack, &["cleanup", "--output", "json"]);
        assert_eq!(code, 0, "cleanup ({what}):\n{out}");
        if s.emulator.hooks {
            let missing: Vec<_> = called_since(&s, mark)
                .into_iter()
                .filter(|a| !cleanup_role.contains(a))
                .collect();
            assert!(
                missing.is_empty(),
                "cleanup called what the Lambda's role (cleanup-lambda.yaml) does not grant: \
                 {missing:?}"
            );
        }
        events
    };
    let decision = |events: &[Value], fleet: &str| -> Value {
        events
            .iter()
            .rev()
            .find(|e| e["event"] == "cleanup_item" && e["subject"]["name"] == fleet)
            .cloned()
            .unwrap_or_else(|| panic!("no decision about {fleet}: {events:#?}"))
    };
    let deploy = |release: &str, image: usize| {
        let (code, _, out) = run(
            &s,
            &stack,
            &[
                "deploy",
                "--release",
                release,
                "--image-id",
                &stack.image(image),
                "--output",
                "json",
            ],
        );
        assert_eq!(code, 0, "deploy {release}:\n{out}");
    };

    // v2 live; the stack's fleet warm and expired, but cleanup never retires a fleet greenlight
    // did not create: CloudFormation's stays.
    deploy("v2", 1);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let events = cleanup("stack fleet warm");
    let kept = decision(&events, &initial);
    assert_eq!(kept["decision"], "keep", "{kept}");
    assert_eq!(kept["reason"], "unmanaged", "{kept}");
    assert_eq!(
        aws.group(&initial).map(|g| g.1),
        Some(Some("warm".to_owned()))
    );

    // v3 makes room in slot a: the deploy retires the stack's fleet (from then on the stack
    // shows it as deleted: drift by design, see the template). v2 goes warm.
    deploy("v3", 2);
    assert_eq!(
        aws.group(&initial),
        None,
        "deploy v3 retired the stack's fleet"
    );
    assert_eq!(aws.live(&listener), slot_a);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // Cleanup retires v2 (warm until 1 s after v3 went live, drained after the 1 s delay).
    let v2 = stack.fleet("v2");
    let events = cleanup("v2 warm");
    let applied: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "cleanup_applied")
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["fleet"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        applied,
        [format!("scale_down {v2}"), format!("delete_fleet {v2}")],
        "{events:#?}"
    );
    assert_eq!(aws.group(&v2), None, "the warm fleet is gone");
    assert_eq!(
        aws.group(&stack.fleet("v3")),
        Some((vec![slot_a.clone()], Some("live".to_owned())))
    );
    assert_eq!(aws.live(&listener), slot_a);
}

// ---------------------------------------------------------------------------------------------
// (c) the IAM policies

fn iam_policy_json() -> Value {
    let text = std::fs::read_to_string(root().join("infra/iam-policy.json")).unwrap();
    serde_json::from_str(&text).expect("infra/iam-policy.json is JSON")
}

fn deployer_policy() -> Value {
    let template = yaml(&root().join("infra/deployer-role.yaml"));
    template["Resources"]["DeployerPolicy"]["Properties"]["PolicyDocument"].clone()
}

/// The cleanup Lambda role's inline policies, by name.
fn lambda_policies() -> Vec<(String, Value)> {
    let template = yaml(&root().join("infra/cleanup-lambda.yaml"));
    template["Resources"]["Role"]["Properties"]["Policies"]
        .as_array()
        .expect("the Lambda role's inline policies")
        .iter()
        .map(|p| {
            (
                p["PolicyName"].as_str().unwrap().to_owned(),
                p["PolicyDocument"].clone(),
            )
        })
        .collect()
}

fn lambda_cleanup_actions() -> BTreeSet<String> {
    let policies = lambda_policies();
    let (_, cleanup) = policies
        .iter()
        .find(|(name, _)| name == "cleanup")
        .expect("a policy named cleanup");
    policy_actions(cleanup)
}

fn one_or_many(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// Every action an Allow statement of `document` grants (no wildcards allowed in actions).
fn policy_actions(document: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for statement in one_or_many(&document["Statement"]) {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        assert!(statement.get("NotAction").is_none(), "{statement}");
        for action in one_or_many(&statement["Action"]) {
            let action = action.as_str().expect("an action string").to_owned();
            assert!(!action.contains('*'), "wildcard action {action}");
            actions.insert(action);
        }
    }
    actions
}

/// Write actions granted on `Resource: "*"` with no condition: not least privilege.
fn unscoped_writes(document: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for statement in one_or_many(&document["Statement"]) {
        let everywhere = one_or_many(&statement["Resource"])
            .iter()
            .any(|r| r.as_str() == Some("*"));
        if everywhere && statement.get("Condition").is_none() {
            for action in one_or_many(&statement["Action"]) {
                let action = action.as_str().unwrap();
                if !is_read(action.split_once(':').unwrap().1) {
                    out.insert(action.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn the_deployer_policies_grant_the_same_actions_and_the_cleanup_role_a_subset() {
    // Every template is plain YAML (long-form intrinsics): `yaml` fails otherwise.
    for name in [
        "sample-service.yaml",
        "cleanup-lambda.yaml",
        "deployer-role.yaml",
    ] {
        let template = yaml(&root().join("infra").join(name));
        assert!(template["Resources"].is_object(), "{name}");
    }

    let json = policy_actions(&iam_policy_json());
    let yaml = policy_actions(&deployer_policy());
    assert_eq!(
        json, yaml,
        "infra/iam-policy.json and deployer-role.yaml differ"
    );

    let cleanup = lambda_cleanup_actions();
    let beyond: Vec<_> = cleanup.difference(&json).collect();
    assert!(
        beyond.is_empty(),
        "the cleanup Lambda's role grants what the deployer policy does not: {beyond:?}"
    );
    // What cleanup calls (its adapter), all granted to the Lambda.
    for action in [
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteAutoScalingGroup",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DeleteRule",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DeleteLaunchTemplateVersions",
        "ec2:DescribeLaunchTemplates",
        "ec2:CreateLaunchTemplate",
        "ec2:DeleteLaunchTemplate",
        "ec2:CreateTags",
        "cloudwatch:GetMetricData",
    ] {
        assert!(cleanup.contains(action), "the Lambda's role lacks {action}");
    }
    // Cleanup never routes traffic, makes fleets or releases.
    for action in [
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:CreateRule",
        "autoscaling:CreateAutoScalingGroup",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:RunInstances",
        "iam:PassRole",
    ] {
        assert!(
            !cleanup.contains(action),
            "the Lambda's role grants {action}"
        );
    }
    // The Lambda's other policy is its own logging, nothing of greenlight's.
    for (name, document) in lambda_policies() {
        if name != "cleanup" {
            let actions = policy_actions(&document);
            assert!(
                actions.iter().all(|a| a.starts_with("logs:")),
                "{name}: {actions:?}"
            );
        }
    }

    // Least privilege: no write on "*" without a condition, but RunInstances (checked by Auto
    // Scaling against the caller when a group uses a launch template; see deployer-role.yaml).
    assert_eq!(
        unscoped_writes(&iam_policy_json()),
        BTreeSet::from(["ec2:RunInstances".to_owned()])
    );
    assert_eq!(
        unscoped_writes(&deployer_policy()),
        BTreeSet::from(["ec2:RunInstances".to_owned()])
    );
    let lambda = lambda_policies();
    let cleanup_doc = &lambda.iter().find(|(n, _)| n == "cleanup").unwrap().1;
    assert_eq!(unscoped_writes(cleanup_doc), BTreeSet::new());
}
