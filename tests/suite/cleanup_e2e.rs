//! `greenlight cleanup` as a user runs it, against the AWS emulator: what it retires, what it
//! never touches (whatever the tags say), `--dry-run` with zero mutating calls, `--all` over
//! several services from tags alone with a locked one skipped and a stale lock removed.

use std::future::Future;

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};
use serde_json::{Value, json};

use super::harness::{Seeded, Session, session};

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

struct Aws {
    elb: ElbClient,
    asg: AsgClient,
    ec2: Ec2Client,
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

    /// (desired capacity, instances), or `None` when the group is gone.
    fn group(&self, name: &str) -> Option<(i32, usize)> {
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
                (
                    g.desired_capacity().unwrap_or_default(),
                    g.instances().len(),
                )
            })
    }

    fn tag(&self, group: &str, key: &str) -> Option<String> {
        let out = block_on(
            self.asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(group)
                .send(),
        )
        .unwrap();
        out.auto_scaling_groups().first().and_then(|g| {
            g.tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value().map(str::to_owned))
        })
    }

    fn forward(&self, listener: &str, weights: &[(&str, i32)]) {
        let config = ForwardActionConfig::builder()
            .set_target_groups(Some(
                weights
                    .iter()
                    .map(|(arn, w)| {
                        TargetGroupTuple::builder()
                            .target_group_arn(*arn)
                            .weight(*w)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        block_on(
            self.elb
                .modify_listener()
                .listener_arn(listener)
                .default_actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .forward_config(config)
                        .build(),
                )
                .send(),
        )
        .unwrap();
    }

    fn versions(&self, template_id: &str) -> Vec<i64> {
        let out = block_on(
            self.ec2
                .describe_launch_template_versions()
                .launch_template_id(template_id)
                .send(),
        )
        .unwrap();
        let mut v: Vec<i64> = out
            .launch_template_versions()
            .iter()
            .filter_map(|v| v.version_number())
            .collect();
        v.sort_unstable();
        v
    }

    /// A lock object as a greenlight on another host would hold it, expiring at `expires_at`.
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
        .unwrap();
    }

    fn lock_exists(&self, service: &str) -> bool {
        block_on(
            self.ec2
                .describe_launch_templates()
                .launch_template_names(format!("greenlight-lock.{service}"))
                .send(),
        )
        .map(|out| !out.launch_templates().is_empty())
        .unwrap_or(false)
    }
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

/// The JSON events a run printed, and its exit code.
fn cleanup(s: &Session, seeded: &Seeded, args: &[&str]) -> (Vec<Value>, i32, String) {
    let out = s
        .greenlight(&seeded.config)
        .args(["cleanup", "--output", "json"])
        .args(args)
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        events,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The decision the last `cleanup_item` event gives `fleet`.
fn decision<'a>(events: &'a [Value], fleet: &str) -> &'a Value {
    events
        .iter()
        .rev()
        .find(|e| {
            e["event"] == "cleanup_item"
                && e["subject"]["kind"] == "fleet"
                && e["subject"]["name"] == fleet
        })
        .unwrap_or_else(|| panic!("no decision about {fleet}: {events:#?}"))
}

fn applied(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "cleanup_applied")
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap_or_default(),
                e["fleet"]
                    .as_str()
                    .or(e["template_id"].as_str())
                    .or(e["rule"].as_str())
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// v1 (the seeded `blue`), then v2 and v3 deployed: v3 live, v2 warm with `keep_warm = 1s`,
/// the seeded fleet retired by v3's deploy.
fn two_releases_later(s: &Session, service: &str) -> Seeded {
    let seeded = s.seed(
        service,
        &["--keep-warm", "1s", "--deregistration-delay", "1"],
    );
    deploy(s, &seeded, "v2", 1);
    deploy(s, &seeded, "v3", 2);
    seeded
}

#[test]
fn an_expired_warm_fleet_is_planned_by_a_dry_run_then_retired_and_the_live_one_kept() {
    let s = session();
    if !s.emulator.hooks {
        return; // the request log and reset are the emulator's
    }
    let seeded = two_releases_later(&s, "checkout");
    let aws = Aws::new(&s);
    let (warm, live) = (seeded.fleet("v2"), seeded.fleet("v3"));
    assert_eq!(aws.group(&warm), Some((2, 2)));
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // Dry run: the plan, and not one mutating call.
    let mark = s.request_mark();
    let (events, code, stderr) = cleanup(&s, &seeded, &["--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(s.mutations_since(mark), Vec::<String>::new());
    let planned = decision(&events, &warm);
    assert_eq!(planned["decision"], "act", "{planned}");
    assert_eq!(planned["action"], "scale_down", "{planned}");
    assert_eq!(planned["dry_run"], true);
    assert!(
        planned["why"].as_str().unwrap().contains("expired"),
        "{planned}"
    );
    assert_eq!(decision(&events, &live)["decision"], "keep");
    assert_eq!(decision(&events, &live)["reason"], "in_use");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "cleanup_done");
    assert_eq!(done["dry_run"], true);
    assert_eq!(
        aws.group(&warm),
        Some((2, 2)),
        "a dry run changed the fleet"
    );

    // For real: scaled to zero, drained, deleted; the live fleet untouched.
    let (events, code, stderr) = cleanup(&s, &seeded, &[]);
    assert_eq!(code, 0, "{stderr}\n{events:#?}");
    assert_eq!(
        applied(&events),
        [format!("scale_down {warm}"), format!("delete_fleet {warm}")],
        "{events:#?}"
    );
    assert_eq!(aws.group(&warm), None, "the warm fleet is gone");
    assert_eq!(aws.group(&live), Some((2, 2)));
    assert_eq!(aws.tag(&live, "greenlight:phase").as_deref(), Some("live"));
    assert!(
        !aws.lock_exists(&seeded.service),
        "cleanup released its lock"
    );

    // Again: nothing due, nothing changed.
    let mark = s.request_mark();
    let (events, code, _) = cleanup(&s, &seeded, &[]);
    assert_eq!(code, 0);
    assert!(applied(&events).is_empty(), "{events:#?}");
    let mutations = s.mutations_since(mark);
    assert!(
        mutations
            .iter()
            .all(|m| m.ends_with("CreateLaunchTemplate") || m.ends_with("DeleteLaunchTemplate")),
        "only the lock may be written: {mutations:?}"
    );
}

#[test]
fn a_fleet_the_router_sends_traffic_to_is_never_retired_whatever_its_tags_say() {
    let s = session();
    let seeded = two_releases_later(&s, "checkout");
    let aws = Aws::new(&s);
    let warm = seeded.fleet("v2");
    let listener = seeded.str("listener_arn");
    // v3 is on slot a again (v1's), v2 on slot b. Someone sends v2 10% by hand; its tags
    // still say warm and expired.
    let (tg_a, tg_b) = (seeded.target_group(0), seeded.target_group(1));
    aws.forward(&listener, &[(&tg_a, 90), (&tg_b, 10)]);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let (events, code, stderr) = cleanup(&s, &seeded, &[]);
    assert_eq!(code, 0, "{stderr}");
    let kept = decision(&events, &warm);
    assert_eq!(kept["decision"], "keep", "{kept}");
    assert_eq!(kept["reason"], "routed", "{kept}");
    assert_eq!(kept["weight"], 10);
    assert!(applied(&events).is_empty(), "{events:#?}");
    assert_eq!(aws.group(&warm), Some((2, 2)));
}

#[test]
fn a_failed_release_is_kept_for_keep_failed_then_deleted() {
    let s = session();
    let seeded = s.seed("checkout", &["--health-timeout", "2s"]);
    let aws = Aws::new(&s);
    let failed = seeded.fleet("v2");
    if s.emulator.hooks {
        s.script_health(
            json!({"asg_name": failed}),
            json!([{"state": "unhealthy", "reason": "Target.ResponseCodeMismatch",
                    "description": "Health checks failed with these codes: [500]"}]),
        );
    } else {
        return;
    }
    let out = s
        .greenlight(&seeded.config)
        .args(["deploy", "--release", "v2", "--image-id", &seeded.image(1)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(aws.group(&failed), Some((0, 0)));

    let (events, code, _) = cleanup(&s, &seeded, &[]);
    assert_eq!(code, 0);
    let kept = decision(&events, &failed);
    assert_eq!(kept["reason"], "not_expired", "{kept}");
    assert_eq!(aws.group(&failed), Some((0, 0)));

    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (events, code, stderr) = cleanup(&s, &seeded, &["--keep-failed", "1s"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(applied(&events), [format!("delete_fleet {failed}")]);
    assert_eq!(aws.group(&failed), None);
    // The seeded fleet (not created by greenlight) is live and kept.
    let blue = decision(&events, &seeded.fleet("blue"));
    assert_eq!(blue["decision"], "keep");
}

#[test]
fn cleanup_all_finds_services_from_tags_skips_a_locked_one_and_removes_a_stale_lock() {
    let s = session();
    if !s.emulator.hooks {
        return; // several services with fixed names need a fresh emulator
    }
    let aws = Aws::new(&s);
    let due = two_releases_later(&s, "cart");
    let locked = two_releases_later(&s, "search");
    let idle = s.seed("orders", &["--keep-warm", "1h"]);
    deploy(&s, &idle, "v2", 1);
    // search is locked by a live runner elsewhere; a crashed run left a lock on a service that
    // has no fleet at all any more.
    aws.put_lock("search", "2099-01-01T00:00:00Z");
    aws.put_lock("gone", "2026-01-01T00:00:00Z");
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // No config: --all needs only a region.
    let out = s
        .greenlight(std::path::Path::new("/nonexistent/greenlight.toml"))
        .args(["cleanup", "--all", "--output", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = events.last().unwrap();
    assert_eq!(done["event"], "cleanup_done");
    let outcome = |service: &str| {
        done["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == service)
            .unwrap_or_else(|| panic!("no {service} in {done:#}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome("cart"), "done");
    assert_eq!(outcome("search"), "locked");
    assert_eq!(outcome("orders"), "nothing_due");
    assert_eq!(
        aws.group(&due.fleet("v2")),
        None,
        "cart's warm fleet retired"
    );
    assert_eq!(
        aws.group(&locked.fleet("v2")),
        Some((2, 2)),
        "search untouched"
    );
    assert_eq!(
        aws.group(&idle.fleet("blue")),
        Some((2, 2)),
        "orders untouched"
    );
    assert!(aws.lock_exists("search"), "a live lock is never removed");
    assert!(!aws.lock_exists("gone"), "the stale lock is removed");
    let stale = &done["stale_locks"];
    assert_eq!(stale.as_array().map(Vec::len), Some(1), "{done:#}");
    assert_eq!(stale[0]["service"], "gone");
}

#[test]
fn leftover_test_rules_and_old_launch_template_versions_go() {
    let s = session();
    if !s.emulator.hooks {
        return;
    }
    let seeded = s.seed(
        "checkout",
        &["--keep-warm", "1h", "--deregistration-delay", "1"],
    );
    let aws = Aws::new(&s);
    deploy(&s, &seeded, "v2", 1);
    deploy(&s, &seeded, "v3", 2);
    deploy(&s, &seeded, "v4", 1);
    let template = seeded.str("launch_template_id");
    let before = aws.versions(&template);
    assert_eq!(before, [1, 2, 3, 4], "one version per release");

    // A test rule a crashed run left for v2, which is long gone.
    let listener = seeded.str("listener_arn");
    let tg_b = seeded.target_group(1);
    block_on(
        aws.elb
            .create_rule()
            .listener_arn(&listener)
            .priority(7)
            .conditions(
                aws_sdk_elasticloadbalancingv2::types::RuleCondition::builder()
                    .field("http-header")
                    .http_header_config(
                        aws_sdk_elasticloadbalancingv2::types::HttpHeaderConditionConfig::builder()
                            .http_header_name("X-Greenlight-Release")
                            .values("v2")
                            .build(),
                    )
                    .build(),
            )
            .actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(&tg_b)
                    .build(),
            )
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key("greenlight:service")
                    .value(&seeded.service)
                    .build(),
            )
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key("greenlight:release")
                    .value("v2")
                    .build(),
            )
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key("greenlight:test-traffic")
                    .value("true")
                    .build(),
            )
            .send(),
    )
    .unwrap();

    let (events, code, stderr) = cleanup(&s, &seeded, &["--keep-releases", "1"]);
    assert_eq!(code, 0, "{stderr}\n{events:#?}");
    let done = applied(&events);
    assert!(
        done.iter().any(|a| a.starts_with("delete_rule ")),
        "{events:#?}"
    );
    // Kept: 4 (newest, v4 live), 3 (v3 warm uses it), 1 (not greenlight's, the default).
    assert_eq!(aws.versions(&template), [1, 3, 4], "{events:#?}");
    let rules = block_on(aws.elb.describe_rules().listener_arn(&listener).send()).unwrap();
    assert!(
        rules.rules().iter().all(|r| r.priority() != Some("7")),
        "the leftover rule is gone"
    );
}

#[test]
fn cleanup_of_a_service_locked_by_another_runner_exits_4_and_changes_nothing() {
    let s = session();
    if !s.emulator.hooks {
        return;
    }
    let seeded = two_releases_later(&s, "checkout");
    let aws = Aws::new(&s);
    aws.put_lock(&seeded.service, "2099-01-01T00:00:00Z");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mark = s.request_mark();
    let (events, code, stderr) = cleanup(&s, &seeded, &[]);
    assert_eq!(code, 4, "{stderr}\n{events:#?}");
    assert!(stderr.contains("locked by ci@elsewhere"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // The one write tried is the conditional create of the lock, which AWS refused.
    assert_eq!(s.mutations_since(mark), ["ec2:CreateLaunchTemplate"]);
    assert_eq!(aws.group(&seeded.fleet("v2")), Some((2, 2)));
}
