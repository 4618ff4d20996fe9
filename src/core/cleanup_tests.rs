//! Tables of what cleanup may retire, then a property: whatever the tags say, no fleet whose
//! target group has weight in any forward action is ever acted on, judged with the test's own
//! arithmetic over the forwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::cleanup::{
    CleanupAction, CleanupPolicy, DEFAULT_DEREGISTRATION_DELAY, Decision, Item, Keep,
    REQUEST_GRACE, ServiceRouting, ServiceView, Subject, TemplateVersions, candidate, plan_cleanup,
    requests_due,
};
use super::cloud::{LaunchTemplateVersion, ListenerForward};
use super::fleet::{Capacity, FleetInstance, FleetSummary};
use super::health::{TargetHealth, TargetState};
use super::names::{FleetName, ListenerArn, RuleArn, ServiceName, TargetGroupArn};
use super::router::{Forward, RouterId, Slots, Weight};
use super::tags::{self, Phase};
use super::test_traffic::{ListenerRule, RuleCondition, rule_tags};

const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2";
const OTHER_LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/aaaaaaaaaaaaaaaa";
const TG_A: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/6d0ecf831eec9f09";
const TG_B: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/7e0ecf831eec9f10";
const RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2/0000000000000009";

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn tg(arn: &str) -> TargetGroupArn {
    TargetGroupArn::parse(arn).unwrap()
}

fn routing() -> ServiceRouting {
    ServiceRouting {
        service: ServiceName::parse("checkout").unwrap(),
        router: RouterId::Listener(ListenerArn::parse(LISTENER).unwrap()),
        slots: Slots::new(tg(TG_A), tg(TG_B)).unwrap(),
    }
}

fn policy() -> CleanupPolicy {
    CleanupPolicy {
        keep_failed: mins(60),
        keep_releases: 2,
    }
}

/// A fleet greenlight created for `checkout`, in `phase`, attached to `target_group`, with two
/// instances at capacity 2 (or none at zero capacity).
fn fleet(
    release: &str,
    phase: Phase,
    target_group: &str,
    extra: &[(&str, String)],
) -> FleetSummary {
    let mut tags: BTreeMap<String, String> = [
        (tags::SERVICE, "checkout".to_owned()),
        (tags::RELEASE, release.to_owned()),
        (tags::PHASE, phase.to_string()),
        (tags::CREATED_AT, tags::timestamp(t0() - mins(600))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        tags.insert((*k).to_owned(), v.clone());
    }
    let scaled = phase != Phase::Failed;
    FleetSummary {
        name: FleetName::new(format!("checkout-{release}")),
        capacity: if scaled {
            Capacity {
                min: 2,
                max: 4,
                desired: 2,
            }
        } else {
            Capacity::ZERO
        },
        instances: if scaled {
            (0..2)
                .map(|i| FleetInstance {
                    id: format!("i-{release}{i}"),
                    lifecycle_state: FleetInstance::IN_SERVICE.into(),
                    health_status: "Healthy".into(),
                })
                .collect()
        } else {
            Vec::new()
        },
        tags,
        target_groups: vec![tg(target_group)],
        suspended_processes: Vec::new(),
        deleting: false,
        launch_template: None,
    }
}

fn live() -> FleetSummary {
    fleet(
        "v2",
        Phase::Live,
        TG_B,
        &[(tags::LIVE_AT, tags::timestamp(t0() - mins(120)))],
    )
}

/// v1, warm in slot a, lost traffic two hours ago, warm until `until`.
fn warm(until: SystemTime) -> FleetSummary {
    fleet(
        "v1",
        Phase::Warm,
        TG_A,
        &[
            (tags::WARM_UNTIL, tags::timestamp(until)),
            (tags::UNROUTED_AT, tags::timestamp(t0() - mins(120))),
        ],
    )
}

fn forward(owner: &str, weights: &[(&str, u16)]) -> ListenerForward {
    ListenerForward {
        owner: owner.to_owned(),
        forwards: weights
            .iter()
            .map(|(arn, w)| Forward {
                target_group: tg(arn),
                weight: Weight::new(*w).unwrap(),
            })
            .collect(),
    }
}

/// All traffic on slot b (v2), slot a named at weight 0.
fn flipped() -> Vec<ListenerForward> {
    vec![forward(LISTENER, &[(TG_B, 1), (TG_A, 0)])]
}

fn view(fleets: Vec<FleetSummary>) -> ServiceView {
    ServiceView {
        fleets,
        forwards: flipped(),
        deregistration_delay: [
            (tg(TG_A), Duration::from_secs(30)),
            (tg(TG_B), Duration::from_secs(30)),
        ]
        .into_iter()
        .collect(),
        ..ServiceView::default()
    }
}

fn decision_for(items: &[Item], fleet: &str) -> Decision {
    items
        .iter()
        .find(|i| matches!(&i.subject, Subject::Fleet { name, .. } if name.as_str() == fleet))
        .unwrap_or_else(|| panic!("no decision for {fleet}: {items:#?}"))
        .decision
        .clone()
}

#[derive(Debug, PartialEq)]
enum Want {
    ScaleDown,
    Delete,
    Wait,
    Keep(&'static str),
}

fn kind(decision: &Decision) -> Want {
    match decision {
        Decision::Act {
            action: CleanupAction::ScaleDown { .. },
            ..
        } => Want::ScaleDown,
        Decision::Act {
            action: CleanupAction::DeleteFleet { .. },
            ..
        } => Want::Delete,
        Decision::Act { action, .. } => panic!("unexpected action {action:?}"),
        Decision::Wait { .. } => Want::Wait,
        Decision::Keep { keep } => Want::Keep(match keep {
            Keep::Unmanaged => "unmanaged",
            Keep::OtherService { .. } => "other_service",
            Keep::InUse { .. } => "in_use",
            Keep::Routed { .. } => "routed",
            Keep::NotExpired { .. } => "not_expired",
            Keep::NoExpiry => "no_expiry",
            Keep::StillServing { .. } => "still_serving",
            Keep::Deleting => "deleting",
            Keep::ReleaseInProgress => "release_in_progress",
        }),
    }
}

#[test]
fn what_cleanup_may_retire() {
    let expired = || warm(t0() - mins(1));
    let cases: Vec<(&str, ServiceView, SystemTime, Want)> = vec![
        (
            "warm, expired, drained: scale to zero",
            view(vec![live(), expired()]),
            t0(),
            Want::ScaleDown,
        ),
        (
            "warm, not expired",
            view(vec![live(), warm(t0() + mins(5))]),
            t0(),
            Want::Keep("not_expired"),
        ),
        (
            "warm with no warm-until: kept for a person to decide",
            view(vec![live(), fleet("v1", Phase::Warm, TG_A, &[])]),
            t0(),
            Want::Keep("no_expiry"),
        ),
        (
            "tags say warm and expired, but the listener sends it 10%: kept",
            ServiceView {
                forwards: vec![forward(LISTENER, &[(TG_B, 90), (TG_A, 10)])],
                ..view(vec![live(), expired()])
            },
            t0(),
            Want::Keep("routed"),
        ),
        (
            "tags lie, and only another listener's rule sends it traffic: kept",
            ServiceView {
                forwards: vec![
                    forward(LISTENER, &[(TG_B, 1), (TG_A, 0)]),
                    forward(OTHER_LISTENER, &[(TG_A, 1)]),
                ],
                ..view(vec![live(), expired()])
            },
            t0(),
            Want::Keep("routed"),
        ),
        (
            "targets still draining: wait",
            ServiceView {
                targets: [(
                    tg(TG_A),
                    vec![TargetHealth {
                        target_id: "i-v10".into(),
                        state: TargetState::Draining,
                        reason: Some("Target.DeregistrationInProgress".into()),
                        description: None,
                    }],
                )]
                .into_iter()
                .collect(),
                ..view(vec![live(), expired()])
            },
            t0(),
            Want::Wait,
        ),
        (
            "lost traffic less than a deregistration delay ago: wait",
            view(vec![
                live(),
                fleet(
                    "v1",
                    Phase::Warm,
                    TG_A,
                    &[
                        (tags::WARM_UNTIL, tags::timestamp(t0() - mins(1))),
                        (
                            tags::UNROUTED_AT,
                            tags::timestamp(t0() - Duration::from_secs(10)),
                        ),
                    ],
                ),
            ]),
            t0(),
            Want::Wait,
        ),
        (
            "CloudWatch counted requests since it lost traffic: kept",
            ServiceView {
                requests: [(FleetName::new("checkout-v1"), 12.0)]
                    .into_iter()
                    .collect(),
                ..view(vec![live(), expired()])
            },
            t0(),
            Want::Keep("still_serving"),
        ),
        (
            "no requests counted: retired",
            ServiceView {
                requests: [(FleetName::new("checkout-v1"), 0.0)].into_iter().collect(),
                ..view(vec![live(), expired()])
            },
            t0(),
            Want::ScaleDown,
        ),
        (
            "scaled to zero, instances still terminating: wait",
            view(vec![
                live(),
                FleetSummary {
                    capacity: Capacity::ZERO,
                    ..expired()
                },
            ]),
            t0(),
            Want::Wait,
        ),
        (
            "scaled to zero and empty: delete",
            view(vec![
                live(),
                FleetSummary {
                    capacity: Capacity::ZERO,
                    instances: Vec::new(),
                    ..expired()
                },
            ]),
            t0(),
            Want::Delete,
        ),
        (
            "failed within keep_failed: kept",
            view(vec![
                live(),
                fleet(
                    "v3",
                    Phase::Failed,
                    TG_A,
                    &[(tags::UNROUTED_AT, tags::timestamp(t0() - mins(30)))],
                ),
            ]),
            t0(),
            Want::Keep("not_expired"),
        ),
        (
            "failed past keep_failed, at zero already: delete",
            view(vec![
                live(),
                fleet(
                    "v3",
                    Phase::Failed,
                    TG_A,
                    &[(tags::UNROUTED_AT, tags::timestamp(t0() - mins(61)))],
                ),
            ]),
            t0(),
            Want::Delete,
        ),
        (
            "another service's fleet on our target group: never touched",
            view(vec![live(), {
                let mut f = expired();
                f.tags.insert(tags::SERVICE.into(), "search".into());
                f
            }]),
            t0(),
            Want::Keep("other_service"),
        ),
        (
            "a fleet greenlight did not create (no created-at): never touched",
            view(vec![live(), {
                let mut f = expired();
                f.tags.remove(tags::CREATED_AT);
                f
            }]),
            t0(),
            Want::Keep("unmanaged"),
        ),
        (
            "being deleted already",
            view(vec![
                live(),
                FleetSummary {
                    deleting: true,
                    ..expired()
                },
            ]),
            t0(),
            Want::Keep("deleting"),
        ),
        (
            "a release in progress, even an old one: not cleanup's",
            view(vec![live(), fleet("v3", Phase::Releasing, TG_A, &[])]),
            t0(),
            Want::Keep("in_use"),
        ),
    ];
    for (name, view, now, want) in cases {
        let items = plan_cleanup(&routing(), &view, &policy(), now);
        let fleet = format!("checkout-{}", view.fleets[1].tags[tags::RELEASE]);
        assert_eq!(kind(&decision_for(&items, &fleet)), want, "{name}");
        // The live fleet is kept in every case.
        assert_eq!(
            kind(&decision_for(&items, "checkout-v2")),
            Want::Keep("in_use"),
            "{name}: live fleet"
        );
    }
}

#[test]
fn without_its_own_record_a_fleet_lost_traffic_when_the_next_release_went_live() {
    // A fleet marked warm before `unrouted-at` existed: v2 went live 10 s ago, so the load
    // balancer may still drain to v1 for the rest of its 30 s delay.
    let mut v1 = warm(t0() - mins(1));
    v1.tags.remove(tags::UNROUTED_AT);
    let mut v2 = live();
    v2.tags.insert(
        tags::LIVE_AT.into(),
        tags::timestamp(t0() - Duration::from_secs(10)),
    );
    let items = plan_cleanup(&routing(), &view(vec![v2, v1]), &policy(), t0());
    match decision_for(&items, "checkout-v1") {
        Decision::Wait { until, .. } => {
            assert_eq!(until, Some(t0() + Duration::from_secs(20)));
        }
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn an_unread_deregistration_delay_is_aws_default() {
    let mut v1 = warm(t0() - mins(1));
    v1.tags.insert(
        tags::UNROUTED_AT.into(),
        tags::timestamp(t0() - Duration::from_secs(200)),
    );
    let view = ServiceView {
        deregistration_delay: BTreeMap::new(),
        ..view(vec![live(), v1])
    };
    let items = plan_cleanup(&routing(), &view, &policy(), t0());
    assert!(matches!(
        decision_for(&items, "checkout-v1"),
        Decision::Wait { until: Some(until), .. }
            if until == t0() - Duration::from_secs(200) + DEFAULT_DEREGISTRATION_DELAY
    ));
}

#[test]
fn requests_are_read_only_for_fleets_about_to_go_and_from_after_the_drain() {
    let v1 = warm(t0() - mins(1));
    let due = requests_due(&routing(), &view(vec![live(), v1]), &policy(), t0());
    assert_eq!(due.len(), 1);
    let (fleet, target_groups, since) = &due[0];
    assert_eq!(fleet.as_str(), "checkout-v1");
    assert_eq!(target_groups, &vec![tg(TG_A)]);
    assert_eq!(
        *since,
        t0() - mins(120) + Duration::from_secs(30) + REQUEST_GRACE
    );
    // Not for kept fleets.
    let kept = requests_due(
        &routing(),
        &view(vec![live(), warm(t0() + mins(1))]),
        &policy(),
        t0(),
    );
    assert!(kept.is_empty());
}

fn test_rule(release: &str) -> ListenerRule {
    ListenerRule {
        arn: RuleArn::parse(RULE).unwrap(),
        priority: Some(9),
        conditions: vec![RuleCondition::header("X-Greenlight-Release", release)],
        target_groups: vec![tg(TG_A)],
        tags: rule_tags(&ServiceName::parse("checkout").unwrap(), release)
            .into_iter()
            .collect(),
    }
}

#[test]
fn test_rules_go_when_their_release_is_no_longer_in_progress() {
    let rule_decision = |fleets: Vec<FleetSummary>, release: &str| {
        let view = ServiceView {
            rules: Some(vec![test_rule(release)]),
            ..view(fleets)
        };
        plan_cleanup(&routing(), &view, &policy(), t0())
            .into_iter()
            .find(|i| matches!(i.subject, Subject::Rule { .. }))
            .map(|i| i.decision)
    };
    assert!(matches!(
        rule_decision(vec![live(), fleet("v3", Phase::Releasing, TG_A, &[])], "v3"),
        Some(Decision::Keep {
            keep: Keep::ReleaseInProgress
        })
    ));
    assert!(matches!(
        rule_decision(vec![live(), fleet("v3", Phase::Failed, TG_A, &[])], "v3"),
        Some(Decision::Act {
            action: CleanupAction::DeleteRule { .. },
            ..
        })
    ));
    // Another service's rule, or a rule greenlight did not make, is not an item at all.
    let mut other = test_rule("v3");
    other.tags.insert(tags::SERVICE.into(), "search".into());
    let view = ServiceView {
        rules: Some(vec![other]),
        ..view(vec![live()])
    };
    assert!(
        plan_cleanup(&routing(), &view, &policy(), t0())
            .iter()
            .all(|i| !matches!(i.subject, Subject::Rule { .. }))
    );
}

fn version(number: u64, description: Option<&str>) -> LaunchTemplateVersion {
    LaunchTemplateVersion {
        template_id: "lt-0abc".into(),
        number,
        image_id: None,
        description: description.map(str::to_owned),
    }
}

#[test]
fn launch_template_versions_beyond_keep_releases_go_unless_used_or_default_or_latest() {
    let versions = vec![
        version(1, None),
        version(2, Some("greenlight checkout v2")),
        version(3, Some("greenlight checkout v3")),
        version(4, Some("greenlight checkout-other v4")),
        version(5, Some("greenlight checkout v5")),
        version(6, Some("greenlight checkout v6")),
        version(7, Some("greenlight checkout v7")),
        version(8, Some("made by hand")),
    ];
    let template = TemplateVersions {
        template_id: "lt-0abc".into(),
        versions,
        default_version: Some(2),
        in_use: BTreeSet::from([3, 7]),
    };
    let view = ServiceView {
        templates: vec![template],
        ..view(vec![live()])
    };
    let items = plan_cleanup(&routing(), &view, &policy(), t0());
    let deleted: Vec<u64> = items
        .iter()
        .find_map(|i| match &i.decision {
            Decision::Act {
                action: CleanupAction::DeleteVersions { versions, .. },
                ..
            } => Some(versions.clone()),
            _ => None,
        })
        .expect("some versions go");
    // Greenlight's for checkout: 2, 3, 5, 6, 7; newest two (7, 6) kept; 3 in use; 2 default.
    assert_eq!(deleted, vec![5]);
}

#[test]
fn candidates_by_tags_alone() {
    let now = t0();
    assert!(candidate(&warm(now - mins(1)), &policy(), now));
    assert!(!candidate(&warm(now + mins(1)), &policy(), now));
    assert!(!candidate(&live(), &policy(), now));
    let mut unmanaged = warm(now - mins(1));
    unmanaged.tags.remove(tags::CREATED_AT);
    assert!(!candidate(&unmanaged, &policy(), now));
    let mut retiring = warm(now + mins(1));
    retiring
        .tags
        .insert(tags::RETIRING_AT.into(), tags::timestamp(now));
    assert!(candidate(&retiring, &policy(), now));
}

fn arb_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Creating),
        Just(Phase::Provisioning),
        Just(Phase::Releasing),
        Just(Phase::Live),
        Just(Phase::Warm),
        Just(Phase::Failed),
    ]
}

proptest! {
    /// Whatever the tags claim (phase, expiry, service), no fleet whose target group has
    /// weight above 0 in any forward action is ever acted on.
    #[test]
    fn nothing_that_takes_traffic_is_ever_acted_on(
        phases in prop::collection::vec(arb_phase(), 1..4),
        expired in prop::collection::vec(any::<bool>(), 4),
        weights in prop::collection::vec((0u16..3, 0u16..3), 1..3),
        scaled in any::<bool>(),
    ) {
        let fleets: Vec<FleetSummary> = phases
            .iter()
            .enumerate()
            .map(|(i, phase)| {
                let target_group = if i % 2 == 0 { TG_A } else { TG_B };
                let until = if expired[i] { t0() - mins(600) } else { t0() + mins(1) };
                let mut f = fleet(
                    &format!("v{i}"),
                    *phase,
                    target_group,
                    &[
                        (tags::WARM_UNTIL, tags::timestamp(until)),
                        (tags::UNROUTED_AT, tags::timestamp(t0() - mins(600))),
                    ],
                );
                if !scaled {
                    f.capacity = Capacity::ZERO;
                    f.instances.clear();
                }
                f
            })
            .collect();
        let forwards: Vec<ListenerForward> = weights
            .iter()
            .enumerate()
            .map(|(i, (a, b))| {
                let owner = if i == 0 { LISTENER } else { OTHER_LISTENER };
                forward(owner, &[(TG_A, *a), (TG_B, *b)])
            })
            .collect();
        // The test's own arithmetic: which target groups any forward sends traffic to.
        let hot: BTreeSet<&str> = weights
            .iter()
            .flat_map(|(a, b)| {
                [(TG_A, *a), (TG_B, *b)]
                    .into_iter()
                    .filter(|(_, w)| *w > 0)
                    .map(|(t, _)| t)
            })
            .collect();
        let view = ServiceView { forwards, ..view(fleets.clone()) };
        for item in plan_cleanup(&routing(), &view, &policy(), t0()) {
            if let (Subject::Fleet { name, .. }, Decision::Act { .. }) = (&item.subject, &item.decision) {
                let f = fleets.iter().find(|f| &f.name == name).unwrap();
                prop_assert!(
                    f.target_groups.iter().all(|t| !hot.contains(t.as_str())),
                    "acted on {} which takes traffic", name
                );
                let phase = tags::ReleaseTags::read(&f.tags).phase;
                prop_assert!(matches!(phase, Some(Phase::Warm | Phase::Failed)));
            }
        }
    }
}
