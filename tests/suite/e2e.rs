//! The real binary against the AWS emulator, as a user runs it: seed a service, deploy, look at
//! AWS directly (with the SDK, not through greenlight), roll back, break things.

use std::future::Future;

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use serde_json::{Value, json};

use super::harness::{Seeded, Session, forward_action, forwards_of, session};

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Direct AWS reads for assertions.
struct Aws {
    elb: ElbClient,
    asg: AsgClient,
    ec2: Ec2Client,
}

#[derive(Debug)]
struct Group {
    desired: i32,
    in_service: usize,
    instance_ids: Vec<String>,
    target_groups: Vec<String>,
    tags: Vec<(String, String)>,
    suspended: Vec<String>,
}

impl Group {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Aws {
    fn new(session: &Session) -> Aws {
        let conf = block_on(session.sdk());
        Aws {
            elb: ElbClient::new(&conf),
            asg: AsgClient::new(&conf),
            ec2: Ec2Client::new(&conf),
        }
    }

    /// (target group, weight) of the listener's default forward action.
    fn listener_forwards(&self, listener: &str) -> Vec<(String, i32)> {
        let out = block_on(self.elb.describe_listeners().listener_arns(listener).send()).unwrap();
        let actions = out.listeners()[0].default_actions().to_vec();
        forwards(&actions)
    }

    fn rule_forwards(&self, rule: &str) -> Vec<(String, i32)> {
        let out = block_on(self.elb.describe_rules().rule_arns(rule).send()).unwrap();
        forwards(out.rules()[0].actions())
    }

    /// The target group that takes all the traffic.
    fn live(&self, forwards: &[(String, i32)]) -> String {
        let taking: Vec<&(String, i32)> = forwards.iter().filter(|(_, w)| *w > 0).collect();
        assert_eq!(taking.len(), 1, "{forwards:?}");
        taking[0].0.clone()
    }

    fn group(&self, name: &str) -> Option<Group> {
        let out = block_on(
            self.asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send(),
        )
        .unwrap();
        let g = out.auto_scaling_groups().first()?;
        Some(Group {
            desired: g.desired_capacity().unwrap_or_default(),
            in_service: g
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .count(),
            instance_ids: g
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect(),
            target_groups: g.target_group_arns().to_vec(),
            suspended: {
                let mut processes: Vec<String> = g
                    .suspended_processes()
                    .iter()
                    .filter_map(|p| p.process_name().map(str::to_owned))
                    .collect();
                processes.sort();
                processes
            },
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

    fn images_of(&self, instance_ids: &[String]) -> Vec<String> {
        let out = block_on(
            self.ec2
                .describe_instances()
                .set_instance_ids(Some(instance_ids.to_vec()))
                .send(),
        )
        .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.image_id().map(str::to_owned))
            .collect()
    }

    /// Everything a greenlight command could change, to prove a failed one changed nothing.
    /// The service's lock object, as (id, holder), if one exists.
    fn lock(&self, seeded: &Seeded) -> Option<(String, String)> {
        let name = format!("greenlight-lock.{}", seeded.service);
        let out = block_on(
            self.ec2
                .describe_launch_templates()
                .launch_template_names(&name)
                .send(),
        )
        .ok()?;
        let template = out.launch_templates().first()?;
        let holder = template
            .tags()
            .iter()
            .find(|t| t.key() == Some("greenlight:lock-holder"))
            .and_then(|t| t.value())
            .unwrap_or("")
            .to_owned();
        Some((template.launch_template_id()?.to_owned(), holder))
    }

    fn fingerprint(&self, seeded: &Seeded) -> String {
        let listener = self.listener_forwards(&seeded.str("listener_arn"));
        let groups = block_on(self.asg.describe_auto_scaling_groups().send()).unwrap();
        let mut groups: Vec<String> = groups
            .auto_scaling_groups()
            .iter()
            .map(|g| {
                let mut tags: Vec<String> = g
                    .tags()
                    .iter()
                    .map(|t| format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or("")))
                    .collect();
                tags.sort();
                format!(
                    "{} {}/{}/{} {:?} {:?}",
                    g.auto_scaling_group_name().unwrap_or(""),
                    g.min_size().unwrap_or(0),
                    g.max_size().unwrap_or(0),
                    g.desired_capacity().unwrap_or(0),
                    g.target_group_arns(),
                    tags
                )
            })
            .collect();
        groups.sort();
        let versions = block_on(
            self.ec2
                .describe_launch_template_versions()
                .launch_template_id(seeded.str("launch_template_id"))
                .send(),
        )
        .unwrap()
        .launch_template_versions()
        .len();
        format!("{listener:?}\n{groups:#?}\nlaunch template versions: {versions}")
    }
}

fn forwards(actions: &[aws_sdk_elasticloadbalancingv2::types::Action]) -> Vec<(String, i32)> {
    forwards_of(forward_action(actions).expect("a forward action"))
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Green's targets report `initial` for a few polls before they turn healthy, so the wait and
/// its progress lines are exercised.
fn slow_healthy(session: &Session, asg: &str) {
    if session.emulator.hooks {
        session.script_health(
            json!({"asg_name": asg}),
            json!([
                {"state": "initial", "reason": "Elb.RegistrationInProgress",
                 "description": "Target registration is in progress", "observations": 2},
                {"state": "healthy"}
            ]),
        );
    }
}

#[test]
fn deploy_status_rollback_end_to_end() {
    let s = session();
    let seeded = s.seed("checkout", &[]);
    let aws = Aws::new(&s);
    let (tg_a, tg_b) = (seeded.target_group(0), seeded.target_group(1));
    let listener = seeded.str("listener_arn");

    s.greenlight(&seeded.config)
        .arg("validate")
        .assert()
        .success();

    slow_healthy(&s, &seeded.fleet("v2"));
    let out = s
        .greenlight(&seeded.config)
        .args(["deploy", "--release", "v2", "--image-id", &seeded.image(1)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("release v2 is live"), "{text}");
    if s.emulator.hooks {
        assert!(
            text.contains("initial (Elb.RegistrationInProgress)"),
            "{text}"
        );
    }

    // Traffic on green, blue still at capacity, green runs the new image.
    assert_eq!(aws.live(&aws.listener_forwards(&listener)), tg_b);
    let blue = aws.group(&seeded.fleet("blue")).unwrap();
    assert_eq!((blue.desired, blue.in_service), (2, 2));
    assert_eq!(blue.tag("greenlight:phase"), Some("warm"));
    assert!(blue.tag("greenlight:warm-until").is_some());
    // Kept at capacity: its own scaling is suspended while it is warm.
    assert_eq!(
        blue.suspended,
        ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    );
    let green = aws.group(&seeded.fleet("v2")).unwrap();
    assert_eq!((green.desired, green.in_service), (2, 2));
    assert_eq!(green.target_groups, vec![tg_b.clone()]);
    assert_eq!(green.tag("greenlight:phase"), Some("live"));
    assert_eq!(green.tag("team"), Some("payments"));
    assert_eq!(green.suspended, ["AZRebalance"]);
    if s.emulator.hooks {
        let images = aws.images_of(&green.instance_ids);
        assert_eq!(images, vec![seeded.image(1); 2]);
    }

    // Status, for machines.
    let out = s
        .greenlight(&seeded.config)
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["service"], seeded.service.as_str());
    assert_eq!(status["live_release"], "v2");
    let traffic = status["traffic"].as_array().unwrap();
    assert_eq!(traffic.len(), 2);
    assert_eq!(traffic[0]["target_group_arn"], tg_a.as_str());
    assert_eq!(traffic[0]["weight"], 0);
    assert_eq!(traffic[0]["asg"], seeded.fleet("blue").as_str());
    assert_eq!(traffic[0]["healthy"], 2);
    assert_eq!(traffic[0]["total"], 2);
    assert_eq!(traffic[1]["weight"], 100);
    assert_eq!(traffic[1]["release"], "v2");
    assert!(traffic[0]["warm_until"].is_string());

    // Status, for people.
    let out = s.greenlight(&seeded.config).arg("status").output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("live release v2 (slot b)"), "{text}");
    let row = |slot: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{slot} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row for slot {slot}: {text}"))
    };
    // SLOT TARGET-GROUP WEIGHT (PERCENT) FLEET RELEASE PHASE DESIRED IN-SERVICE HEALTHY WARM-UNTIL
    let a = row("a");
    assert_eq!(&a[2..4], ["0", "(0%)"], "{text}");
    assert_eq!(&a[6..10], ["warm", "2", "2", "2"], "{text}");
    let b = row("b");
    assert_eq!(&b[2..4], ["100", "(100%)"], "{text}");
    assert_eq!(&b[5..11], ["v2", "live", "2", "2", "2", "-"], "{text}");
    assert!(text.contains(&seeded.fleet("blue")), "{text}");

    // Rollback: one call, back to blue.
    let out = s
        .greenlight(&seeded.config)
        .arg("rollback")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(aws.live(&aws.listener_forwards(&listener)), tg_a);
    assert_eq!(
        aws.group(&seeded.fleet("blue"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );
    let blue = aws.group(&seeded.fleet("blue")).unwrap();
    assert_eq!(
        blue.suspended,
        ["AZRebalance"],
        "scaling resumed, the owner's kept"
    );
    let green = aws.group(&seeded.fleet("v2")).unwrap();
    assert_eq!(green.tag("greenlight:phase"), Some("warm"));
    assert!(green.tag("greenlight:rolled-back-at").is_some());
    assert_eq!(green.desired, 2);
    assert_eq!(
        green.suspended,
        ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    );

    // A second rollback (a retried CI job) changes nothing: v2 was rolled back from.
    let before = aws.fingerprint(&seeded);
    let out = s
        .greenlight(&seeded.config)
        .args(["rollback", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(r#""event":"already_rolled_back""#),
        "{}",
        stdout(&out)
    );
    assert_eq!(aws.fingerprint(&seeded), before);
    assert_eq!(aws.live(&aws.listener_forwards(&listener)), tg_a);
    // And the lock was handed back by every command.
    assert_eq!(aws.lock(&seeded), None);
}

#[test]
fn unhealthy_green_fails_with_exit_3_and_traffic_stays_on_blue() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: needs greenlight's emulator to script target health");
        return;
    }
    let seeded = s.seed("payments", &["--health-timeout", "3s"]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    s.script_health(
        json!({"asg_name": seeded.fleet("v2")}),
        json!([
            {"state": "initial", "reason": "Elb.RegistrationInProgress", "observations": 1},
            {"state": "unhealthy", "reason": "Target.ResponseCodeMismatch",
             "description": "Health checks failed with these codes: [502]"}
        ]),
    );
    let out = s
        .greenlight(&seeded.config)
        .args([
            "deploy",
            "--release",
            "v2",
            "--image-id",
            &seeded.image(1),
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("Target.ResponseCodeMismatch"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    // Every event is one JSON object; none of them moved traffic.
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(events.iter().all(|e| e["event"].is_string()));
    assert!(!events.iter().any(|e| e["action"] == "flip"), "{events:?}");
    let failed = events
        .iter()
        .find(|e| e["event"] == "release_failed")
        .expect("a release_failed event");
    assert_eq!(events.last().unwrap()["event"], "error");
    assert_eq!(events.last().unwrap()["exit_code"], 3);
    // Why, structured: the deadline on the fleet, then each target with AWS's reason.
    let reasons = failed["reasons"].as_array().expect("reasons");
    assert_eq!(reasons[0]["code"], "health_timeout", "{failed}");
    assert_eq!(
        reasons[0]["target"],
        seeded.fleet("v2").as_str(),
        "{failed}"
    );
    assert!(reasons.len() > 1, "{failed}");
    for target in &reasons[1..] {
        assert_eq!(target["code"], "target_unhealthy", "{target}");
        assert!(
            target["target"].as_str().unwrap().starts_with("i-"),
            "{target}"
        );
        assert!(
            target["description"]
                .as_str()
                .unwrap()
                .contains("Target.ResponseCodeMismatch"),
            "{target}"
        );
    }
    assert_eq!(&events.last().unwrap()["reasons"], &failed["reasons"]);

    assert_eq!(
        aws.live(&aws.listener_forwards(&listener)),
        seeded.target_group(0)
    );
    let green = aws.group(&seeded.fleet("v2")).unwrap();
    assert_eq!(green.desired, 0);
    assert_eq!(green.tag("greenlight:phase"), Some("failed"));
    assert!(
        green
            .tag("greenlight:failure")
            .unwrap()
            .contains("ResponseCodeMismatch")
    );
    let blue = aws.group(&seeded.fleet("blue")).unwrap();
    assert_eq!((blue.desired, blue.in_service), (2, 2));
}

#[test]
fn second_deploy_uses_the_other_slot() {
    let s = session();
    let seeded = s.seed("search", &[]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    for (release, image) in [("v2", seeded.image(1)), ("v3", seeded.image(2))] {
        let out = s
            .greenlight(&seeded.config)
            .args(["deploy", "--release", release, "--image-id", &image])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{release}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert_eq!(
        aws.live(&aws.listener_forwards(&listener)),
        seeded.target_group(0)
    );
    let v3 = aws.group(&seeded.fleet("v3")).unwrap();
    assert_eq!(v3.target_groups, vec![seeded.target_group(0)]);
    assert_eq!(v3.tag("greenlight:phase"), Some("live"));
    assert_eq!(
        aws.group(&seeded.fleet("v2"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("warm")
    );
    assert!(
        aws.group(&seeded.fleet("blue")).is_none(),
        "the oldest release was retired"
    );
}

#[test]
fn listener_rule_is_flipped_and_the_default_action_left_alone() {
    let s = session();
    let seeded = s.seed("catalog", &["--rule"]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let rule = seeded.str("rule_arn");
    let default_before = aws.listener_forwards(&listener);
    let out = s
        .greenlight(&seeded.config)
        .args(["deploy", "--release", "v2", "--image-id", &seeded.image(1)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(aws.live(&aws.rule_forwards(&rule)), seeded.target_group(1));
    assert_eq!(aws.listener_forwards(&listener), default_before);
}

#[test]
fn rollback_is_refused_when_the_previous_release_is_gone() {
    let s = session();
    let seeded = s.seed("ledger", &[]);
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    s.greenlight(&seeded.config)
        .args(["deploy", "--release", "v2", "--image-id", &seeded.image(1)])
        .assert()
        .success();
    block_on(
        aws.asg
            .delete_auto_scaling_group()
            .auto_scaling_group_name(seeded.fleet("blue"))
            .force_delete(true)
            .send(),
    )
    .unwrap();
    let out = s
        .greenlight(&seeded.config)
        .arg("rollback")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to roll back to"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        aws.live(&aws.listener_forwards(&listener)),
        seeded.target_group(1)
    );
}

#[test]
fn bad_input_exits_2_with_one_line_and_changes_nothing() {
    let s = session();
    let seeded = s.seed("orders", &[]);
    let aws = Aws::new(&s);
    let before = aws.fingerprint(&seeded);
    let config = std::fs::read_to_string(&seeded.config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let listener = seeded.str("listener_arn");
    let missing_listener = write(
        "missing-listener.toml",
        config.replace(&listener, &{
            // Another id of the same form: change its last digit to a different one.
            let (head, last) = listener.split_at(listener.len() - 1);
            format!("{head}{}", if last == "0" { "1" } else { "0" })
        }),
    );
    let typo = write(
        "typo.toml",
        config.replace("[health]", "[health]\ntimout = \"1m\""),
    );
    let image = seeded.image(1);

    let cases: Vec<(Vec<&str>, &std::path::Path, &str)> = vec![
        (
            vec![
                "deploy",
                "--release",
                "v2",
                "--image-id",
                "ami-0000000000000dead",
            ],
            &seeded.config,
            "not found",
        ),
        (
            vec!["deploy", "--release", "v 2", "--image-id", &image],
            &seeded.config,
            "release",
        ),
        (
            vec!["deploy", "--release", "v2"],
            &seeded.config,
            "--image-id",
        ),
        (
            vec![
                "deploy",
                "--release",
                "v2",
                "--launch-template-version",
                "99",
            ],
            &seeded.config,
            "no version 99",
        ),
        (
            vec!["deploy", "--release", "v2", "--image-id", &image],
            &missing_listener,
            "not found",
        ),
        (
            vec!["deploy", "--release", "v2", "--image-id", &image],
            &typo,
            "timout",
        ),
        (
            vec!["deploy", "--release", "v2", "--image-id", &image],
            std::path::Path::new("/nonexistent/greenlight.toml"),
            "not found",
        ),
        (vec!["validate"], &missing_listener, "not found"),
        (vec!["rollback"], &seeded.config, "nothing to roll back to"),
    ];
    for (args, config, expected) in cases {
        let out = s.greenlight(config).args(&args).output().unwrap();
        let err = stderr(&out);
        let code = out.status.code();
        // Rollback with nothing to go back to is exit 5; the rest are bad input.
        let want = if args == ["rollback"] { 5 } else { 2 };
        assert_eq!(code, Some(want), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(aws.fingerprint(&seeded), before, "{args:?} changed AWS");
    }

    // The wrong region (from the environment, as the config names none) is named as such,
    // before any call.
    let regionless = write(
        "regionless.toml",
        config
            .lines()
            .filter(|l| !l.starts_with("region"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let out = s
        .greenlight(&regionless)
        .env("AWS_REGION", "eu-west-1")
        .args(["deploy", "--release", "v2", "--image-id", &image])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("eu-west-1") && err.contains("us-east-1"),
        "{err}"
    );
    assert_eq!(aws.fingerprint(&seeded), before);

    // No credentials anywhere: one line that says which and how to fix it.
    let out = s
        .greenlight(&seeded.config)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["deploy", "--release", "v2", "--image-id", &image])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no AWS credentials found"), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    assert!(err.len() < 300, "short: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(aws.fingerprint(&seeded), before);

    // A profile that does not exist is named, and the advice is about it.
    let out = s
        .greenlight(&seeded.config)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "nope")
        .args(["deploy", "--release", "v2", "--image-id", &image])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("profile nope"), "{err}");
    assert!(!err.contains("set AWS_PROFILE"), "{err}");
    assert!(err.len() < 300, "short: {err}");
    assert_eq!(aws.fingerprint(&seeded), before);
}

#[test]
fn validate_reports_checks_as_json() {
    let s = session();
    let seeded = s.seed("profile", &[]);
    let out = s
        .greenlight(&seeded.config)
        .args(["validate", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["resources", "routing", "live fleet", "twin", "idle slot"]
    );
}

#[test]
fn emulator_fidelity_selftest() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: checks greenlight's own emulator");
        return;
    }
    let out = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("localstack/.venv/bin/python"),
    )
    .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("localstack/selftest.py"))
    .envs(s.aws_env())
    .output()
    .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn a_slot_used_by_another_load_balancer_is_refused_before_any_change() {
    let s = session();
    let seeded = s.seed("billing", &[]);
    let aws = Aws::new(&s);
    let subnets: Vec<String> = seeded.info["subnet_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let other = block_on(
        aws.elb
            .create_load_balancer()
            .name(format!("{}-other", seeded.service))
            .set_subnets(Some(subnets))
            .send(),
    )
    .unwrap();
    let other_arn = other.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    block_on(
        aws.elb
            .create_listener()
            .load_balancer_arn(&other_arn)
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(8080)
            .default_actions(
                aws_sdk_elasticloadbalancingv2::types::Action::builder()
                    .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                    .target_group_arn(seeded.target_group(1))
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let before = aws.fingerprint(&seeded);
    let out = s
        .greenlight(&seeded.config)
        .args(["deploy", "--release", "v2", "--image-id", &seeded.image(1)])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("used by load balancer") && err.contains(&other_arn),
        "{err}"
    );
    assert_eq!(aws.fingerprint(&seeded), before);
}
