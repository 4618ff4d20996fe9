//! Tests of the decisions: a table per command that walks every branch of [`decide_deploy`],
//! [`decide_rollback`] and [`settle`], then properties over random observations for the safety
//! rules in the module doc.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

use super::{
    Action, Clock, Decision, DeployRequest, Green, Launch, RefusalKind, WARM_SUSPENDS,
    decide_deploy, decide_rollback, settle,
};
use crate::core::fleet::{Capacity, FleetInstance, FleetSummary};
use crate::core::health::{FleetHealth, TargetHealth, TargetState, fleet_health};
use crate::core::names::{FleetName, ImageId, ListenerArn, ReleaseName, TargetGroupArn};
use crate::core::observed::{Observed, SlotObserved};
use crate::core::router::{Forward, RouterAction, RouterId, RouterState, Routing, Slot, Weight};
use crate::core::spec::Spec;
use crate::core::tags::{self, Phase, ReleaseTags};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

const SERVICE: &str = "checkout";
const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2";
const TG_A: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/6d0ecf831eec9f09";
const TG_B: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/7e0ecf831eec9f10";
/// A target group that is neither slot.
const TG_OTHER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/search-a/8f0ecf831eec9f11";
const AMI_1: &str = "ami-11111111";
const AMI_2: &str = "ami-22222222";
const IN_SERVICE: &str = FleetInstance::IN_SERVICE;
/// `[health] timeout` of the test spec's deploys; the clock starts at [`t0`].
const TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `[retention] keep_warm` in [`spec`].
const KEEP_WARM: Duration = Duration::from_secs(2 * 60 * 60);

/// Service `checkout`, slot a = `checkout-a`, slot b = `checkout-b`, previous releases kept
/// warm for two hours.
fn spec() -> Spec {
    Spec::parse(&format!(
        r#"
service = "{SERVICE}"
region = "us-east-1"

[router]
listener_arn = "{LISTENER}"
target_groups = ["{TG_A}", "{TG_B}"]

[retention]
keep_warm = "2h"
"#
    ))
    .expect("the test config is valid")
}

fn arn(value: &str) -> TargetGroupArn {
    TargetGroupArn::parse(value).expect("test target group ARN")
}

fn slot_tg(slot: Slot) -> TargetGroupArn {
    arn(match slot {
        Slot::A => TG_A,
        Slot::B => TG_B,
    })
}

fn name(value: &str) -> FleetName {
    FleetName::new(value)
}

fn release(value: &str) -> ReleaseName {
    ReleaseName::parse(value).expect("test release name")
}

fn image(release_name: &str, ami: &str) -> DeployRequest {
    DeployRequest {
        release: release(release_name),
        launch: Launch::Image(ImageId::parse(ami).expect("test AMI id")),
    }
}

fn version(release_name: &str, number: u64) -> DeployRequest {
    DeployRequest {
        release: release(release_name),
        launch: Launch::Version(number),
    }
}

/// When the deploy started; the health deadline is [`TIMEOUT`] later.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

/// The clock `since_start` into a deploy that started at [`t0`].
fn clock(since_start: Duration) -> Clock {
    Clock {
        now: t0() + since_start,
        health_deadline: t0() + TIMEOUT,
    }
}

/// Half a minute into the deploy: well before the deadline.
fn early() -> Clock {
    clock(Duration::from_secs(30))
}

/// A fleet and the targets its instances have in the fleet's slot.
#[derive(Debug, Clone)]
struct F {
    summary: FleetSummary,
    targets: Vec<TargetHealth>,
}

/// A fleet with no tags, no instances and a desired capacity of 2.
fn fleet(fleet_name: &str) -> F {
    F {
        summary: FleetSummary {
            name: name(fleet_name),
            capacity: Capacity {
                min: 2,
                max: 4,
                desired: 2,
            },
            instances: Vec::new(),
            tags: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
            target_groups: Vec::new(),
            suspended_processes: Vec::new(),
            deleting: false,
        },
        targets: Vec::new(),
    }
}

/// Fleet `checkout-<release>`, tagged by greenlight for `checkout` with `release` and `phase`.
fn ours(release_name: &str, phase: Phase) -> F {
    fleet(&format!("{SERVICE}-{release_name}")).release(release_name, phase)
}

impl F {
    fn tag(mut self, key: &str, value: &str) -> F {
        self.summary.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The tags greenlight writes for a release of `checkout`.
    fn release(self, release_name: &str, phase: Phase) -> F {
        self.tag(tags::SCHEMA, "1")
            .tag(tags::SERVICE, SERVICE)
            .tag(tags::RELEASE, release_name)
            .tag(tags::PHASE, phase.as_str())
    }

    fn image(self, ami: &str) -> F {
        self.tag(tags::IMAGE, ami)
    }

    fn version(self, number: &str) -> F {
        self.tag(tags::LAUNCH_TEMPLATE_VERSION, number)
    }

    fn capacity(mut self, min: u32, max: u32, desired: u32) -> F {
        self.summary.capacity = Capacity { min, max, desired };
        self
    }

    fn desired(self, desired: u32) -> F {
        self.capacity(desired, desired.max(1) * 2, desired)
    }

    fn deleting(mut self) -> F {
        self.summary.deleting = true;
        self
    }

    /// One more instance, in `lifecycle`, with a target in `target` state (or unregistered).
    fn instance(
        mut self,
        lifecycle: &str,
        target: Option<TargetState>,
        reason: Option<&str>,
        description: Option<&str>,
    ) -> F {
        let id = format!("i-{}-{}", self.summary.name, self.summary.instances.len());
        if let Some(state) = target {
            self.targets.push(TargetHealth {
                target_id: id.clone(),
                state,
                reason: reason.map(str::to_owned),
                description: description.map(str::to_owned),
            });
        }
        self.summary.instances.push(FleetInstance {
            id,
            lifecycle_state: lifecycle.to_owned(),
            health_status: "Healthy".to_owned(),
        });
        self
    }

    fn healthy(self, count: u32) -> F {
        (0..count).fold(self, |f, _| {
            f.instance(IN_SERVICE, Some(TargetState::Healthy), None, None)
        })
    }

    /// In service, registering with the load balancer.
    fn registering(self, count: u32) -> F {
        (0..count).fold(self, |f, _| {
            f.instance(
                IN_SERVICE,
                Some(TargetState::Initial),
                Some("Elb.RegistrationInProgress"),
                None,
            )
        })
    }

    /// `desired` instances, all in service and healthy: ready.
    fn serving(self, desired: u32) -> F {
        self.desired(desired).healthy(desired)
    }
}

fn router_id() -> RouterId {
    RouterId::Listener(ListenerArn::parse(LISTENER).expect("test listener ARN"))
}

fn forwarding(forwards: &[(&str, u16)]) -> RouterState {
    RouterState {
        id: router_id(),
        action: RouterAction::Forward {
            forwards: forwards
                .iter()
                .map(|(target_group, weight)| Forward {
                    target_group: arn(target_group),
                    weight: Weight::new(*weight).expect("test weight"),
                })
                .collect(),
        },
    }
}

fn not_forwarding(action_type: &str) -> RouterState {
    RouterState {
        id: router_id(),
        action: RouterAction::Other {
            action_type: action_type.to_owned(),
        },
    }
}

fn slot_observed(target_group: &str, fleets: Vec<F>) -> SlotObserved {
    let target_group = arn(target_group);
    SlotObserved {
        fleets: fleets
            .iter()
            .map(|f| FleetSummary {
                target_groups: vec![target_group.clone()],
                ..f.summary.clone()
            })
            .collect(),
        targets: fleets.into_iter().flat_map(|f| f.targets).collect(),
        target_group,
    }
}

/// The fleets attached to slot a and slot b, behind `router`.
fn observe(router: RouterState, a: Vec<F>, b: Vec<F>) -> Observed {
    Observed {
        router,
        slots: [slot_observed(TG_A, a), slot_observed(TG_B, b)],
    }
}

/// All traffic to `live`; the other slot named with weight 0, as greenlight leaves it.
fn live_in(live: Slot, a: Vec<F>, b: Vec<F>) -> Observed {
    let (on, off) = match live {
        Slot::A => (TG_A, TG_B),
        Slot::B => (TG_B, TG_A),
    };
    observe(forwarding(&[(on, 1), (off, 0)]), a, b)
}

// ---------------------------------------------------------------------------------------------
// Deploy tables
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Expect {
    Is(Decision),
    Waits {
        fleet: &'static str,
        progress: &'static str,
    },
    /// Refused with this kind and a message containing every one of these texts.
    Refused(RefusalKind, &'static [&'static str]),
}

struct DeployCase {
    name: &'static str,
    observed: Observed,
    request: DeployRequest,
    clock: Clock,
    expect: Expect,
}

fn case(
    name: &'static str,
    observed: Observed,
    request: DeployRequest,
    expect: Expect,
) -> DeployCase {
    DeployCase {
        name,
        observed,
        request,
        clock: early(),
        expect,
    }
}

impl DeployCase {
    fn at(self, clock: Clock) -> DeployCase {
        DeployCase { clock, ..self }
    }
}

fn act(action: Action) -> Expect {
    Expect::Is(Decision::Act(action))
}

fn needs_attention(parts: &'static [&'static str]) -> Expect {
    Expect::Refused(RefusalKind::NeedsAttention, parts)
}

fn run_deploy_table(cases: Vec<DeployCase>) {
    let spec = spec();
    for case in cases {
        let decision = decide_deploy(&spec, &case.request, &case.observed, case.clock);
        let name = case.name;
        match case.expect {
            Expect::Is(expected) => assert_eq!(decision, expected, "{name}"),
            Expect::Waits { fleet, progress } => match &decision {
                Decision::Wait {
                    fleet: waiting_on,
                    health,
                } => {
                    assert_eq!(waiting_on.as_str(), fleet, "{name}");
                    assert_eq!(health.progress(), progress, "{name}");
                    assert!(!health.ready(), "{name}: waits on a ready fleet");
                }
                other => panic!("{name}: expected to wait, decided {other:?}"),
            },
            Expect::Refused(kind, parts) => match &decision {
                Decision::Refuse(refusal) => {
                    assert_eq!(refusal.kind, kind, "{name}: {}", refusal.message);
                    for part in parts {
                        assert!(
                            refusal.message.contains(part),
                            "{name}: {:?} does not say {part:?}",
                            refusal.message
                        );
                    }
                    assert!(!refusal.message.contains('\n'), "{name}: not one line");
                }
                other => panic!("{name}: expected {kind:?}, decided {other:?}"),
            },
        }
    }
}

fn mark_live(fleet_name: &str, release_name: &str) -> Expect {
    act(Action::MarkLive {
        fleet: name(fleet_name),
        release: release_name.to_owned(),
        resume: vec![],
    })
}

/// Warm, with both processes that would resize it suspended (none were before).
fn mark_warm(fleet_name: &str, release_name: &str) -> Expect {
    act(Action::MarkWarm {
        fleet: name(fleet_name),
        release: release_name.to_owned(),
        until: early().now + KEEP_WARM,
        suspend: WARM_SUSPENDS.iter().map(|p| (*p).to_owned()).collect(),
    })
}

#[test]
fn deploy_settles_the_tags_before_anything_else() {
    let blue = || fleet("checkout-blue").serving(2);
    let v2_green = || ours("v2", Phase::Provisioning).image(AMI_2).serving(2);
    run_deploy_table(vec![
        case(
            "first contact: the untagged live fleet is marked live",
            live_in(Slot::A, vec![blue()], vec![]),
            image("v2", AMI_2),
            mark_live("checkout-blue", "checkout-blue"),
        ),
        case(
            "first contact: an untagged fleet in the idle slot is not adopted",
            live_in(Slot::A, vec![blue()], vec![fleet("stray").serving(2)]),
            image("v2", AMI_2),
            mark_live("checkout-blue", "checkout-blue"),
        ),
        case(
            "first contact on slot b: the idle untagged fleet is still not adopted",
            live_in(Slot::B, vec![fleet("stray").serving(1)], vec![blue()]),
            image("v2", AMI_2),
            mark_live("checkout-blue", "checkout-blue"),
        ),
        case(
            "after first contact the unknown idle fleet is reported, not adopted",
            live_in(
                Slot::A,
                vec![blue().release("checkout-blue", Phase::Live)],
                vec![fleet("stray").serving(2)],
            ),
            image("v2", AMI_2),
            needs_attention(&[
                "fleet stray in the idle target group checkout-b is not managed by greenlight",
            ]),
        ),
        case(
            "fresh first flip: the untagged previous fleet is marked warm first",
            live_in(Slot::B, vec![blue()], vec![v2_green()]),
            image("v2", AMI_2),
            mark_warm("checkout-blue", "checkout-blue"),
        ),
        case(
            "fresh flip: the previous live release is marked warm first",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![v2_green()],
            ),
            image("v2", AMI_2),
            mark_warm("checkout-v1", "v1"),
        ),
        case(
            "fresh flip: once the previous release is warm the new one is marked live",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![v2_green()],
            ),
            image("v2", AMI_2),
            mark_live("checkout-v2", "v2"),
        ),
        case(
            "fresh rollback: the release traffic left is marked warm though it is unhealthy",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![ours("v2", Phase::Live).desired(2).registering(2)],
            ),
            image("v3", AMI_2),
            mark_warm("checkout-v2", "v2"),
        ),
        case(
            "both tagged live: the one without traffic is marked warm",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![ours("v2", Phase::Live).serving(2)],
            ),
            image("v2", AMI_2),
            mark_warm("checkout-v1", "v1"),
        ),
        case(
            "a live-tagged fleet of another service in the idle slot is not marked warm",
            live_in(
                Slot::B,
                vec![
                    fleet("billing-v1")
                        .release("v1", Phase::Live)
                        .tag(tags::SERVICE, "billing")
                        .serving(2),
                ],
                vec![v2_green()],
            ),
            image("v2", AMI_2),
            mark_live("checkout-v2", "v2"),
        ),
        case(
            "an untagged idle fleet is not adopted when the live fleet is already settled",
            live_in(
                Slot::B,
                vec![fleet("checkout-blue").serving(2)],
                vec![ours("v2", Phase::Live).serving(2)],
            ),
            image("v3", AMI_2),
            needs_attention(&["fleet checkout-blue", "is not managed by greenlight"]),
        ),
        case(
            "a failed fleet that somehow took traffic is marked live, not deployed over",
            live_in(Slot::A, vec![ours("v1", Phase::Failed).serving(2)], vec![]),
            image("v2", AMI_2),
            mark_live("checkout-v1", "v1"),
        ),
    ]);
}

#[test]
fn settle_never_tags_a_live_fleet_of_another_service() {
    let observed = live_in(
        Slot::A,
        vec![
            fleet("billing-blue")
                .tag(tags::SERVICE, "billing")
                .tag(tags::RELEASE, "b1")
                .tag(tags::PHASE, "provisioning")
                .serving(2),
        ],
        vec![],
    );
    let refused = settle(&spec(), &observed, t0()).unwrap_err();
    assert_eq!(refused.kind, RefusalKind::NeedsAttention);
    assert!(
        refused.message.contains("belongs to service billing"),
        "{}",
        refused.message
    );
    // The same fleet without the service tag is adopted: the contrast keeps the test honest.
    let mut adoptable = observed.clone();
    adoptable.slots[0].fleets[0].tags.remove(tags::SERVICE);
    assert_eq!(
        settle(&spec(), &adoptable, t0()),
        Ok(Some(Action::MarkLive {
            fleet: name("billing-blue"),
            release: "b1".to_owned(),
            resume: vec![],
        }))
    );
}

#[test]
fn deploy_builds_configures_and_revives_green_in_the_idle_slot() {
    let v1 = || {
        ours("v1", Phase::Live)
            .image(AMI_1)
            .capacity(2, 6, 3)
            .healthy(3)
    };
    run_deploy_table(vec![
        case(
            "empty idle slot b: create <service>-<release> there from the live fleet",
            live_in(Slot::A, vec![v1()], vec![]),
            image("v2", AMI_2),
            act(Action::CreateFleet(Green {
                fleet: name("checkout-v2"),
                release: release("v2"),
                source: name("checkout-v1"),
                target_group: arn(TG_B),
                launch: Launch::Image(ImageId::parse(AMI_2).expect("AMI")),
            })),
        ),
        case(
            "empty idle slot a: create there, from a launch template version",
            live_in(Slot::B, vec![], vec![v1()]),
            version("2026-11-25.3", 7),
            act(Action::CreateFleet(Green {
                fleet: name("checkout-2026-11-25.3"),
                release: release("2026-11-25.3"),
                source: name("checkout-v1"),
                target_group: arn(TG_A),
                launch: Launch::Version(7),
            })),
        ),
        case(
            "a fleet being deleted does not occupy the idle slot",
            live_in(
                Slot::A,
                vec![v1()],
                vec![ours("v0", Phase::Warm).serving(3).deleting()],
            ),
            image("v2", AMI_2),
            act(Action::CreateFleet(Green {
                fleet: name("checkout-v2"),
                release: release("v2"),
                source: name("checkout-v1"),
                target_group: arn(TG_B),
                launch: Launch::Image(ImageId::parse(AMI_2).expect("AMI")),
            })),
        ),
        case(
            "green is still being created: configure it",
            live_in(
                Slot::A,
                vec![v1()],
                vec![ours("v2", Phase::Creating).image(AMI_2).desired(0)],
            ),
            image("v2", AMI_2),
            act(Action::ConfigureFleet(Green {
                fleet: name("checkout-v2"),
                release: release("v2"),
                source: name("checkout-v1"),
                target_group: arn(TG_B),
                launch: Launch::Image(ImageId::parse(AMI_2).expect("AMI")),
            })),
        ),
        case(
            "green in creating is configured even after the deadline",
            live_in(
                Slot::B,
                vec![ours("v2", Phase::Creating).version("7").desired(0)],
                vec![v1()],
            ),
            version("v2", 7),
            act(Action::ConfigureFleet(Green {
                fleet: name("checkout-v2"),
                release: release("v2"),
                source: name("checkout-v1"),
                target_group: arn(TG_A),
                launch: Launch::Version(7),
            })),
        )
        .at(clock(TIMEOUT * 2)),
        case(
            "the same release failed before: revive it to the live fleet's capacity",
            live_in(
                Slot::A,
                vec![v1()],
                vec![
                    ours("v2", Phase::Failed)
                        .image(AMI_2)
                        .tag(tags::FAILURE, "not healthy in time")
                        .desired(0),
                ],
            ),
            image("v2", AMI_2),
            act(Action::ReviveFleet {
                fleet: name("checkout-v2"),
                capacity: Capacity {
                    min: 2,
                    max: 6,
                    desired: 3,
                },
            }),
        ),
    ]);
}

#[test]
fn deploy_flips_when_ready_waits_before_the_deadline_and_fails_after_it() {
    let v1 = || ours("v1", Phase::Live).image(AMI_1).serving(2);
    let green = || ours("v2", Phase::Provisioning).image(AMI_2).desired(2);
    let flip_to_b = || {
        act(Action::Flip {
            to: arn(TG_B),
            from: arn(TG_A),
            fleet: name("checkout-v2"),
            release: "v2".to_owned(),
        })
    };
    let one_unhealthy = || {
        green().healthy(1).instance(
            IN_SERVICE,
            Some(TargetState::Unhealthy),
            Some("Target.ResponseCodeMismatch"),
            Some("Health checks failed with these codes: [502]"),
        )
    };
    run_deploy_table(vec![
        case(
            "green ready: flip all traffic to its slot",
            live_in(Slot::A, vec![v1()], vec![green().healthy(2)]),
            image("v2", AMI_2),
            flip_to_b(),
        ),
        case(
            "green ready in slot a: flip from b to a",
            live_in(Slot::B, vec![green().healthy(2)], vec![v1()]),
            image("v2", AMI_2),
            act(Action::Flip {
                to: arn(TG_A),
                from: arn(TG_B),
                fleet: name("checkout-v2"),
                release: "v2".to_owned(),
            }),
        ),
        case(
            "green ready exactly at the deadline: flip, do not fail",
            live_in(Slot::A, vec![v1()], vec![green().healthy(2)]),
            image("v2", AMI_2),
            flip_to_b(),
        )
        .at(clock(TIMEOUT)),
        case(
            "deploying the warm previous release again flips back to it",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
                vec![ours("v1", Phase::Warm).image(AMI_1).serving(2)],
            ),
            image("v1", AMI_1),
            act(Action::Flip {
                to: arn(TG_B),
                from: arn(TG_A),
                fleet: name("checkout-v1"),
                release: "v1".to_owned(),
            }),
        ),
        case(
            "one target still registering: wait",
            live_in(Slot::A, vec![v1()], vec![green().healthy(1).registering(1)]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 initial (Elb.RegistrationInProgress)",
            },
        ),
        case(
            "one instance not in service yet: wait",
            live_in(
                Slot::A,
                vec![v1()],
                vec![green().healthy(1).instance("Pending", None, None, None)],
            ),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 not yet in service",
            },
        ),
        case(
            "fewer instances than desired, all healthy: wait",
            live_in(Slot::A, vec![v1()], vec![green().desired(3).healthy(2)]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "2/3 healthy",
            },
        ),
        case(
            "an instance healthy in the target group but no longer in service: wait",
            live_in(
                Slot::A,
                vec![v1()],
                vec![green().healthy(2).instance(
                    "Terminating",
                    Some(TargetState::Healthy),
                    None,
                    None,
                )],
            ),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "2/2 healthy, 1 not yet in service",
            },
        ),
        case(
            "desired capacity zero is never ready: wait",
            live_in(Slot::A, vec![v1()], vec![green().desired(0)]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "0/0 healthy",
            },
        ),
        case(
            "a second before the deadline: still wait",
            live_in(Slot::A, vec![v1()], vec![one_unhealthy()]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 unhealthy (Target.ResponseCodeMismatch)",
            },
        )
        .at(clock(TIMEOUT - Duration::from_secs(1))),
        case(
            "at the deadline: fail with the progress and AWS's reasons",
            live_in(Slot::A, vec![v1()], vec![one_unhealthy()]),
            image("v2", AMI_2),
            act(Action::FailRelease {
                fleet: name("checkout-v2"),
                release: "v2".to_owned(),
                reasons: vec![
                    "not healthy in time: 1/2 healthy, 1 unhealthy (Target.ResponseCodeMismatch)"
                        .to_owned(),
                    "i-checkout-v2-1 unhealthy: Target.ResponseCodeMismatch: Health checks \
                     failed with these codes: [502]"
                        .to_owned(),
                ],
            }),
        )
        .at(clock(TIMEOUT)),
        case(
            "after the deadline, never registered: fail with the progress alone",
            live_in(
                Slot::A,
                vec![v1()],
                vec![green().desired(1).instance(IN_SERVICE, None, None, None)],
            ),
            image("v2", AMI_2),
            act(Action::FailRelease {
                fleet: name("checkout-v2"),
                release: "v2".to_owned(),
                reasons: vec![
                    "not healthy in time: 0/1 healthy, 1 unused (Target.NotRegistered)".to_owned(),
                ],
            }),
        )
        .at(clock(TIMEOUT + Duration::from_secs(3600))),
    ]);
}

#[test]
fn deploy_clears_the_idle_slot_of_other_releases_unless_one_is_being_deployed() {
    let v2 = || ours("v2", Phase::Live).image(AMI_2).serving(2);
    run_deploy_table(vec![
        case(
            "the warm previous release is retired to make room",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            image("v3", AMI_2),
            act(Action::RetireFleet {
                fleet: name("checkout-v1"),
                release: "v1".to_owned(),
                phase: Some(Phase::Warm),
            }),
        ),
        case(
            "a failed other release is retired",
            live_in(
                Slot::B,
                vec![ours("v3", Phase::Failed).desired(0)],
                vec![v2()],
            ),
            image("v4", AMI_2),
            act(Action::RetireFleet {
                fleet: name("checkout-v3"),
                release: "v3".to_owned(),
                phase: Some(Phase::Failed),
            }),
        ),
        case(
            "another release being created: busy",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Creating).desired(0)],
            ),
            image("v4", AMI_2),
            Expect::Refused(
                RefusalKind::Busy,
                &[
                    "release v3 is being deployed into target group checkout-b (fleet checkout-v3)",
                    "--release v3",
                ],
            ),
        ),
        case(
            "another release provisioning, even ready and late: busy",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Provisioning).serving(2)],
            ),
            image("v4", AMI_2),
            Expect::Refused(RefusalKind::Busy, &["release v3 is being deployed"]),
        )
        .at(clock(TIMEOUT * 3)),
    ]);
}

#[test]
fn deploy_needs_attention_when_aws_is_in_a_state_it_will_not_guess_about() {
    let v1 = || ours("v1", Phase::Live).serving(2);
    let green = || ours("v2", Phase::Provisioning).image(AMI_2).serving(2);
    run_deploy_table(vec![
        case(
            "traffic split between the slots",
            observe(
                forwarding(&[(TG_A, 90), (TG_B, 10)]),
                vec![v1()],
                vec![green()],
            ),
            image("v2", AMI_2),
            needs_attention(&[
                "splits traffic between both slots",
                "checkout-a weight 90",
                "checkout-b weight 10",
            ]),
        ),
        case(
            "forwarding to a target group that is no slot",
            observe(forwarding(&[(TG_OTHER, 1)]), vec![v1()], vec![green()]),
            image("v2", AMI_2),
            needs_attention(&["forwards to target group", "search-a", "not one of the two"]),
        ),
        case(
            "a slot and a foreign target group both take traffic",
            observe(
                forwarding(&[(TG_A, 1), (TG_OTHER, 5), (TG_B, 0)]),
                vec![v1()],
                vec![green()],
            ),
            image("v2", AMI_2),
            needs_attention(&["search-a", "not one of the two"]),
        ),
        case(
            "the router redirects",
            observe(not_forwarding("redirect"), vec![v1()], vec![green()]),
            image("v2", AMI_2),
            needs_attention(&["does not forward to a target group (redirect)"]),
        ),
        case(
            "the router forwards with every weight 0",
            observe(
                forwarding(&[(TG_A, 0), (TG_B, 0)]),
                vec![v1()],
                vec![green()],
            ),
            image("v2", AMI_2),
            needs_attention(&["does not forward", "every weight 0"]),
        ),
        case(
            "nothing in the live slot, a ready green in the idle one",
            live_in(Slot::A, vec![], vec![green()]),
            image("v2", AMI_2),
            needs_attention(&["no fleet is attached to the live target group checkout-a"]),
        ),
        case(
            "the live slot's only fleet is being deleted",
            live_in(Slot::A, vec![v1().deleting()], vec![green()]),
            image("v2", AMI_2),
            needs_attention(&["no fleet is attached to the live target group checkout-a"]),
        ),
        case(
            "two fleets in the live slot",
            live_in(
                Slot::A,
                vec![v1(), fleet("checkout-blue").serving(2)],
                vec![],
            ),
            image("v2", AMI_2),
            needs_attention(&[
                "target group checkout-a has 2 fleets attached (checkout-v1, checkout-blue)",
            ]),
        ),
        case(
            "two fleets in the idle slot",
            live_in(
                Slot::A,
                vec![v1()],
                vec![green(), ours("v3", Phase::Failed).desired(0)],
            ),
            image("v2", AMI_2),
            needs_attention(&[
                "target group checkout-b has 2 fleets attached (checkout-v2, checkout-v3)",
            ]),
        ),
        case(
            "one fleet attached to both slots",
            live_in(Slot::A, vec![v1()], vec![v1()]),
            image("v2", AMI_2),
            needs_attention(&["fleet checkout-v1 is attached to both target groups"]),
        ),
        case(
            "one fleet attached to both slots, though leaving the idle one",
            live_in(Slot::B, vec![green().deleting()], vec![green()]),
            image("v2", AMI_2),
            needs_attention(&["fleet checkout-v2 is attached to both target groups"]),
        ),
        case(
            "another service's fleet of the same release name in the idle slot",
            live_in(
                Slot::A,
                vec![v1()],
                vec![green().tag(tags::SERVICE, "billing")],
            ),
            image("v2", AMI_2),
            needs_attention(&[
                "fleet checkout-v2 in the idle target group checkout-b belongs to service billing",
            ]),
        ),
        case(
            "another service's fleet being created in the idle slot is not ours to wait on",
            live_in(
                Slot::B,
                vec![
                    fleet("billing-v9")
                        .release("v9", Phase::Creating)
                        .tag(tags::SERVICE, "billing")
                        .desired(0),
                ],
                vec![v1()],
            ),
            image("v2", AMI_2),
            needs_attention(&[
                "fleet billing-v9 in the idle target group checkout-a belongs to service billing",
            ]),
        ),
    ]);
}

#[test]
fn deploy_refuses_a_release_name_with_another_artifact_and_is_done_when_live() {
    run_deploy_table(vec![
        case(
            "green exists with another image",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![ours("v2", Phase::Provisioning).image(AMI_1).serving(2)],
            ),
            image("v2", AMI_2),
            Expect::Refused(
                RefusalKind::BadInput,
                &[
                    "release v2 already exists (fleet checkout-v2) with image ami-11111111",
                    "new --release name",
                ],
            ),
        ),
        case(
            "a failed green with another image is not revived",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![ours("v2", Phase::Failed).image(AMI_1).desired(0)],
            ),
            image("v2", AMI_2),
            Expect::Refused(RefusalKind::BadInput, &["with image ami-11111111"]),
        ),
        case(
            "green being created from another launch template version",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![ours("v2", Phase::Creating).version("3").desired(0)],
            ),
            version("v2", 4),
            Expect::Refused(
                RefusalKind::BadInput,
                &[
                    "release v2 already exists",
                    "with launch template version 3",
                ],
            ),
        ),
        case(
            "the live release with another image",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Live).image(AMI_1).version("7").serving(2)],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            image("v2", AMI_2),
            Expect::Refused(RefusalKind::BadInput, &["with image ami-11111111"]),
        ),
        case(
            "the live release with another version",
            live_in(
                Slot::B,
                vec![],
                vec![ours("v2", Phase::Live).version("3").serving(2)],
            ),
            version("v2", 4),
            Expect::Refused(
                RefusalKind::BadInput,
                &["(fleet checkout-v2) with launch template version 3"],
            ),
        ),
        case(
            "the release is live and settled: done",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Live).image(AMI_2).version("7").serving(2)],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            image("v2", AMI_2),
            Expect::Is(Decision::Done {
                release: "v2".to_owned(),
                slot: Slot::A,
            }),
        ),
        case(
            "done from slot b with the same version, whatever the idle slot holds",
            live_in(
                Slot::B,
                vec![fleet("stray").serving(1), fleet("stray-2")],
                vec![ours("v2", Phase::Live).version("3").serving(2)],
            ),
            version("v2", 3),
            Expect::Is(Decision::Done {
                release: "v2".to_owned(),
                slot: Slot::B,
            }),
        ),
        case(
            "done even when the live release is not healthy: traffic is already there",
            live_in(
                Slot::A,
                vec![
                    ours("v2", Phase::Live)
                        .image(AMI_2)
                        .desired(2)
                        .registering(2),
                ],
                vec![],
            ),
            image("v2", AMI_2),
            Expect::Is(Decision::Done {
                release: "v2".to_owned(),
                slot: Slot::A,
            }),
        ),
        case(
            "the adopted first fleet is done under its own name",
            live_in(
                Slot::A,
                vec![
                    fleet("checkout-blue")
                        .release("checkout-blue", Phase::Live)
                        .serving(2),
                ],
                vec![],
            ),
            image("checkout-blue", AMI_2),
            Expect::Is(Decision::Done {
                release: "checkout-blue".to_owned(),
                slot: Slot::A,
            }),
        ),
        case(
            "the release is live but not yet marked: mark it, not done",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Provisioning).image(AMI_2).serving(2)],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            image("v2", AMI_2),
            mark_live("checkout-v2", "v2"),
        ),
    ]);
}

#[test]
fn deploy_is_never_done_on_another_services_fleet() {
    let billing = fleet("billing-v2")
        .release("v2", Phase::Live)
        .tag(tags::SERVICE, "billing")
        .image(AMI_2)
        .serving(2);
    let spec = spec();
    for idle in [vec![], vec![ours("v1", Phase::Warm).serving(2)]] {
        let observed = live_in(Slot::A, vec![billing.clone()], idle);
        let decision = decide_deploy(&spec, &image("v2", AMI_2), &observed, early());
        assert!(
            !matches!(decision, Decision::Done { .. }),
            "{observed:?} decided {decision:?}"
        );
    }
    // The same fleet, ours: done. Keeps the test above from passing for another reason.
    let ours_now = billing.tag(tags::SERVICE, SERVICE);
    let observed = live_in(Slot::A, vec![ours_now], vec![]);
    assert_eq!(
        decide_deploy(&spec, &image("v2", AMI_2), &observed, early()),
        Decision::Done {
            release: "v2".to_owned(),
            slot: Slot::A,
        }
    );
}

/// A release first deployed with `--launch-template-version 3` and asked for again with an
/// image: the artifact differs, yet the request is accepted (here: reported done).
#[test]
fn bug_image_request_for_a_release_deployed_by_version_is_not_refused() {
    run_deploy_table(vec![case(
        "live v2 was deployed from version 3, not from an image",
        live_in(
            Slot::A,
            vec![ours("v2", Phase::Live).version("3").serving(2)],
            vec![ours("v1", Phase::Warm).serving(2)],
        ),
        image("v2", AMI_2),
        Expect::Refused(RefusalKind::BadInput, &["release v2 already exists"]),
    )]);
}

/// A release first deployed with `--image-id` (greenlight made launch template version 7 for
/// it) and asked for again with `--launch-template-version 3`: accepted, because the version tag
/// is only compared when no image tag is present.
#[test]
fn bug_version_request_for_a_release_deployed_by_image_is_not_refused() {
    run_deploy_table(vec![case(
        "green v2 was deployed from ami-11111111 (version 7)",
        live_in(
            Slot::A,
            vec![ours("v1", Phase::Live).serving(2)],
            vec![
                ours("v2", Phase::Provisioning)
                    .image(AMI_1)
                    .version("7")
                    .serving(2),
            ],
        ),
        version("v2", 3),
        Expect::Refused(RefusalKind::BadInput, &["release v2 already exists"]),
    )]);
}

/// An idle fleet with a hand-written `greenlight:phase = live` but no `greenlight:service` tag
/// is not managed by greenlight, yet settle marks it warm (which also writes the service tag),
/// even on first contact with an unmanaged live fleet, where an untagged idle fleet is left
/// alone.
#[test]
fn bug_idle_fleet_with_phase_but_no_service_is_adopted() {
    run_deploy_table(vec![case(
        "first contact; the idle fleet carries only greenlight:phase",
        live_in(
            Slot::A,
            vec![fleet("checkout-blue").serving(2)],
            vec![fleet("stray").tag(tags::PHASE, "live").serving(2)],
        ),
        image("v2", AMI_2),
        mark_live("checkout-blue", "checkout-blue"),
    )]);
}

// ---------------------------------------------------------------------------------------------
// Rollback table
// ---------------------------------------------------------------------------------------------

/// The flip a rollback should decide, or texts its refusal should contain.
type RollbackExpect = Result<Action, &'static [&'static str]>;

fn refused(parts: &'static [&'static str]) -> RollbackExpect {
    Err(parts)
}

fn flip(to: &str, from: &str, fleet_name: &str, release_name: &str) -> Action {
    Action::Flip {
        to: arn(to),
        from: arn(from),
        fleet: name(fleet_name),
        release: release_name.to_owned(),
    }
}

#[test]
fn rollback_flips_to_the_warm_ready_previous_release_or_says_why_not() {
    let v2 = || ours("v2", Phase::Live).serving(2);
    let cases: Vec<(&str, Observed, RollbackExpect)> = vec![
        (
            "the warm previous release is ready",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            Ok(flip(TG_B, TG_A, "checkout-v1", "v1")),
        ),
        (
            "the warm previous release is ready in slot a",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Warm).serving(3)],
                vec![v2()],
            ),
            Ok(flip(TG_A, TG_B, "checkout-v1", "v1")),
        ),
        (
            "the previous release is still tagged live (tags not settled yet)",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Provisioning).serving(2)],
                vec![ours("v1", Phase::Live).serving(2)],
            ),
            Ok(flip(TG_B, TG_A, "checkout-v1", "v1")),
        ),
        (
            "the adopted first fleet, warm under its own name",
            live_in(
                Slot::A,
                vec![v2()],
                vec![
                    fleet("checkout-blue")
                        .release("checkout-blue", Phase::Warm)
                        .serving(2),
                ],
            ),
            Ok(flip(TG_B, TG_A, "checkout-blue", "checkout-blue")),
        ),
        (
            "the idle slot is empty",
            live_in(Slot::A, vec![v2()], vec![]),
            refused(&[
                "nothing to roll back to: no fleet is attached to target group checkout-b",
                "deploy the previous build as a new release",
            ]),
        ),
        (
            "the idle slot's only fleet is being deleted",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v1", Phase::Warm).serving(2).deleting()],
            ),
            refused(&["nothing to roll back to"]),
        ),
        (
            "the previous release is not ready",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v1", Phase::Warm).desired(2).healthy(1).registering(1)],
            ),
            refused(&[
                "previous release v1 (fleet checkout-v1) is not warm and healthy: 1/2 healthy, \
                 1 initial (Elb.RegistrationInProgress)",
                "would drop requests",
            ]),
        ),
        (
            "the previous release was scaled to zero",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Warm).desired(0)],
                vec![v2()],
            ),
            refused(&["is not warm and healthy: 0/0 healthy"]),
        ),
        (
            "the idle release failed, though its instances look healthy",
            live_in(
                Slot::A,
                vec![v2()],
                vec![
                    ours("v3", Phase::Failed)
                        .tag(tags::FAILURE, "not healthy in time: 0/2 healthy")
                        .serving(2),
                ],
            ),
            refused(&[
                "release v3, which failed (not healthy in time: 0/2 healthy)",
                "never took traffic",
            ]),
        ),
        (
            "the idle release failed without a recorded reason",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Failed).desired(0)],
            ),
            refused(&["which failed (no reason recorded)"]),
        ),
        (
            "the idle release is still provisioning, though ready",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Provisioning).serving(2)],
            ),
            refused(&[
                "release v3, still being deployed",
                "nothing to roll back to",
            ]),
        ),
        (
            "the idle release is still being created",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Creating).desired(0)],
            ),
            refused(&["release v3, still being deployed"]),
        ),
        (
            "an untagged fleet sits in the idle slot, ready",
            live_in(Slot::A, vec![v2()], vec![fleet("checkout-blue").serving(2)]),
            refused(&[
                "fleet checkout-blue in target group checkout-b is not a previous release of \
                 checkout",
            ]),
        ),
        (
            "another service's warm fleet sits in the idle slot, ready",
            live_in(
                Slot::A,
                vec![v2()],
                vec![
                    ours("v1", Phase::Warm)
                        .tag(tags::SERVICE, "billing")
                        .serving(2),
                ],
            ),
            refused(&["fleet checkout-v1 in target group checkout-b is not a previous release"]),
        ),
        (
            "two fleets in the idle slot",
            live_in(
                Slot::A,
                vec![v2()],
                vec![
                    ours("v1", Phase::Warm).serving(2),
                    ours("v0", Phase::Warm).serving(2),
                ],
            ),
            refused(&["target group checkout-b has 2 fleets attached"]),
        ),
        (
            "traffic is split",
            observe(
                forwarding(&[(TG_A, 50), (TG_B, 50)]),
                vec![v2()],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            refused(&["splits traffic"]),
        ),
        (
            "the live slot is empty",
            live_in(Slot::A, vec![], vec![ours("v1", Phase::Warm).serving(2)]),
            refused(&["no fleet is attached to the live target group checkout-a"]),
        ),
    ];
    let spec = spec();
    for (name, observed, expected) in cases {
        match (decide_rollback(&spec, &observed), expected) {
            (Ok(action), Ok(expected)) => assert_eq!(action, expected, "{name}"),
            (Err(refusal), Err(parts)) => {
                assert_eq!(refusal.kind, RefusalKind::NeedsAttention, "{name}");
                for part in parts {
                    assert!(
                        refusal.message.contains(part),
                        "{name}: {:?} does not say {part:?}",
                        refusal.message
                    );
                }
            }
            (got, expected) => panic!("{name}: expected {expected:?}, decided {got:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties over random observations
// ---------------------------------------------------------------------------------------------

/// Fleet names drawn from a small pool, so that fleets collide (straddle both slots, crowd
/// one) and match `<service>-<release>` now and then.
const FLEET_NAMES: [&str; 9] = [
    "checkout-v1",
    "checkout-v2",
    "checkout-v3",
    "checkout-v4",
    "checkout-blue",
    "checkout-green",
    "stray",
    "legacy",
    "billing-v1",
];
const RELEASES: [&str; 4] = ["v1", "v2", "v3", "checkout-blue"];

fn tag_map(pairs: [(&str, Option<&str>); 5]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
        .collect()
}

fn arb_artifact() -> impl Strategy<Value = (Option<&'static str>, Option<&'static str>)> {
    (
        prop::option::of(prop::sample::select(vec![AMI_1, AMI_2])),
        prop::option::of(prop::sample::select(vec!["3", "7"])),
    )
}

/// Any tags: none at all, or greenlight's for this or another service, in any phase
/// (including one this version does not know).
fn arb_tags() -> impl Strategy<Value = BTreeMap<String, String>> {
    let service = prop_oneof![
        4 => Just(Some(SERVICE)),
        1 => Just(None),
        1 => Just(Some("billing")),
    ];
    let release = prop::option::weighted(0.9, prop::sample::select(RELEASES.to_vec()));
    let phase = arb_phase();
    let tagged = (service, release, phase, arb_artifact()).prop_map(
        |(service, release, phase, (image, version))| {
            tag_map([
                (tags::SERVICE, service),
                (tags::RELEASE, release),
                (tags::PHASE, phase),
                (tags::IMAGE, image),
                (tags::LAUNCH_TEMPLATE_VERSION, version),
            ])
        },
    );
    prop_oneof![1 => Just(BTreeMap::new()), 5 => tagged]
}

fn arb_phase() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some("creating")),
        2 => Just(Some("provisioning")),
        2 => Just(Some("live")),
        2 => Just(Some("warm")),
        1 => Just(Some("failed")),
        1 => Just(Some("retired")),
    ]
}

/// Tags greenlight writes for a release of this service, in a phase from `phase`.
fn arb_our_tags(
    phase: impl Strategy<Value = Option<&'static str>>,
) -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        prop::sample::select(RELEASES.to_vec()),
        phase,
        arb_artifact(),
    )
        .prop_map(|(release, phase, (image, version))| {
            tag_map([
                (tags::SERVICE, Some(SERVICE)),
                (tags::RELEASE, Some(release)),
                (tags::PHASE, phase),
                (tags::IMAGE, image),
                (tags::LAUNCH_TEMPLATE_VERSION, version),
            ])
        })
}

fn arb_instance() -> impl Strategy<Value = (&'static str, Option<TargetState>)> {
    let lifecycle = prop_oneof![
        8 => Just(IN_SERVICE),
        1 => Just("Pending"),
        1 => Just("Terminating:Wait"),
    ];
    let target = prop_oneof![
        10 => Just(Some(TargetState::Healthy)),
        1 => Just(None),
        2 => prop::sample::select(vec![
            TargetState::Initial,
            TargetState::Unhealthy,
            TargetState::UnhealthyDraining,
            TargetState::Unused,
            TargetState::Draining,
            TargetState::Unavailable,
        ])
        .prop_map(Some),
    ];
    (lifecycle, target)
}

/// Where a generated fleet sits, which biases its tags towards what greenlight leaves there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The slot with all the traffic: mostly a settled live release of this service.
    Live,
    /// The other slot: half the time a release of this service, in any phase.
    Idle,
    /// No slot takes all traffic.
    Unknown,
}

/// A fleet with tags biased by `role`, and either random instances or exactly its desired
/// capacity, all healthy.
fn arb_fleet(role: Role) -> impl Strategy<Value = F> {
    let tags = match role {
        Role::Live => prop_oneof![2 => arb_our_tags(Just(Some("live"))), 1 => arb_tags()].boxed(),
        Role::Idle => prop_oneof![1 => arb_our_tags(arb_phase()), 1 => arb_tags()].boxed(),
        Role::Unknown => arb_tags().boxed(),
    };
    (
        prop::sample::select(FLEET_NAMES.to_vec()),
        0u32..=3,
        prop_oneof![4 => Just(0i64), 1 => Just(-1), 1 => Just(1)],
        prop::collection::vec(arb_instance(), 4),
        any::<bool>(),
        tags,
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(fleet_name, desired, extra, instances, all_healthy, tags, deleting)| {
                let mut f = fleet(fleet_name);
                f.summary.tags = tags;
                f.summary.deleting = deleting;
                if all_healthy {
                    return f.serving(desired.max(1));
                }
                let count = (i64::from(desired) + extra).clamp(0, 4);
                instances
                    .into_iter()
                    .take(usize::try_from(count).expect("0 to 4"))
                    .fold(f.desired(desired), |f, (lifecycle, target)| {
                        f.instance(lifecycle, target, Some("Some.Reason"), None)
                    })
            },
        )
}

fn arb_slot_fleets(role: Role) -> impl Strategy<Value = Vec<F>> {
    let empty = if role == Role::Live { 1 } else { 3 };
    prop_oneof![
        empty => Just(0usize),
        8 => Just(1),
        1 => Just(2),
        1 => Just(3),
    ]
    .prop_flat_map(move |count| prop::collection::vec(arb_fleet(role), count))
}

/// Targets of instances no fleet in the slot owns (a fleet that was detached, say).
fn arb_stray_targets() -> impl Strategy<Value = Vec<TargetHealth>> {
    prop::collection::vec(
        prop::sample::select(vec![TargetState::Healthy, TargetState::Draining]),
        0..=2,
    )
    .prop_map(|states| {
        states
            .into_iter()
            .enumerate()
            .map(|(n, state)| TargetHealth {
                target_id: format!("i-gone-{n}"),
                state,
                reason: None,
                description: None,
            })
            .collect()
    })
}

fn arb_router() -> impl Strategy<Value = RouterState> {
    let clean = (
        any::<bool>(),
        1u16..=Weight::MAX,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(to_a, weight, name_other, other_first)| {
            let (on, off) = if to_a { (TG_A, TG_B) } else { (TG_B, TG_A) };
            let mut forwards = vec![(on, weight)];
            if name_other {
                forwards.insert(usize::from(other_first), (off, 0));
            }
            forwarding(&forwards)
        });
    let weight = prop_oneof![3 => Just(0u16), 2 => Just(1u16), 1 => 2u16..=Weight::MAX];
    let target_group = prop_oneof![4 => Just(TG_A), 4 => Just(TG_B), 1 => Just(TG_OTHER)];
    let any_forwards = prop::collection::vec((target_group, weight), 1..=3)
        .prop_map(|forwards| forwarding(&forwards));
    let other = prop::sample::select(vec!["redirect", "fixed-response"]).prop_map(not_forwarding);
    prop_oneof![8 => clean, 3 => any_forwards, 1 => other]
}

fn arb_clock() -> impl Strategy<Value = Clock> {
    prop_oneof![1 => Just(0i64), 4 => -900i64..=900].prop_map(|seconds_left| {
        let left = Duration::from_secs(seconds_left.unsigned_abs());
        Clock {
            now: t0(),
            health_deadline: if seconds_left >= 0 {
                t0() + left
            } else {
                t0() - left
            },
        }
    })
}

fn arb_request() -> impl Strategy<Value = DeployRequest> {
    let launch = prop_oneof![
        prop::sample::select(vec![AMI_1, AMI_2])
            .prop_map(|ami| Launch::Image(ImageId::parse(ami).expect("AMI"))),
        prop::sample::select(vec![3u64, 7]).prop_map(Launch::Version),
    ];
    (prop::sample::select(RELEASES.to_vec()), launch).prop_map(|(name, launch)| DeployRequest {
        release: release(name),
        launch,
    })
}

#[derive(Debug, Clone)]
struct Scenario {
    observed: Observed,
    request: DeployRequest,
    clock: Clock,
}

/// Which fleet's release (and artifact) the request repeats, so that requests often name a
/// release that is already in a slot, as re-runs, resumed deploys and redeploys do.
#[derive(Debug, Clone, Copy)]
struct Echo {
    /// The slot without traffic (slot b when no slot takes all traffic), or the other one.
    idle: bool,
    artifact: bool,
}

fn arb_echo() -> impl Strategy<Value = Option<Echo>> {
    let echo = |idle, artifact| Just(Some(Echo { idle, artifact }));
    prop_oneof![
        2 => Just(None),
        4 => echo(true, true),
        1 => echo(true, false),
        2 => echo(false, true),
        1 => echo(false, false),
    ]
}

/// `request`, renamed after the release of the first fleet in the echoed slot (and launching
/// what that fleet's tags say it launched), when there is one.
fn echoed(request: DeployRequest, echo: Option<Echo>, observed: &Observed) -> DeployRequest {
    let Some(Echo { idle, artifact }) = echo else {
        return request;
    };
    let live = traffic_slot(&observed.router).unwrap_or(Slot::A);
    let slot = if idle { live.other() } else { live };
    let Some(tags) = observed
        .slot(slot)
        .fleets
        .first()
        .map(|f| ReleaseTags::read(&f.tags))
    else {
        return request;
    };
    let Some(release) = tags
        .release
        .as_deref()
        .and_then(|r| ReleaseName::parse(r).ok())
    else {
        return request;
    };
    let launch = match (artifact, tags.image, tags.launch_template_version) {
        (false, _, _) | (true, None, None) => request.launch,
        (true, Some(image), _) => Launch::Image(ImageId::parse(&image).expect("generated AMI")),
        (true, None, Some(number)) => Launch::Version(number.parse().expect("generated version")),
    };
    DeployRequest { release, launch }
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    arb_router()
        .prop_flat_map(|router| {
            let role = |slot: Slot| match traffic_slot(&router) {
                Some(live) if live == slot => Role::Live,
                Some(_) => Role::Idle,
                None => Role::Unknown,
            };
            (
                Just(router.clone()),
                arb_slot_fleets(role(Slot::A)),
                arb_slot_fleets(role(Slot::B)),
                arb_stray_targets(),
                arb_stray_targets(),
                arb_clock(),
                (arb_request(), arb_echo()),
            )
        })
        .prop_map(
            |(router, a, b, strays_a, strays_b, clock, (request, echo))| {
                let mut observed = observe(router, a, b);
                observed.slots[0].targets.extend(strays_a);
                observed.slots[1].targets.extend(strays_b);
                Scenario {
                    request: echoed(request, echo, &observed),
                    observed,
                    clock,
                }
            },
        )
}

/// The one slot that takes all traffic, read from the forwards without [`Routing`].
fn traffic_slot(router: &RouterState) -> Option<Slot> {
    let RouterAction::Forward { forwards } = &router.action else {
        return None;
    };
    let taking = |target_group: &str| {
        forwards
            .iter()
            .any(|f| f.weight.get() > 0 && f.target_group.as_str() == target_group)
    };
    let foreign = forwards.iter().any(|f| {
        f.weight.get() > 0 && f.target_group.as_str() != TG_A && f.target_group.as_str() != TG_B
    });
    match (foreign, taking(TG_A), taking(TG_B)) {
        (false, true, false) => Some(Slot::A),
        (false, false, true) => Some(Slot::B),
        _ => None,
    }
}

fn takes_traffic(observed: &Observed, slot: Slot) -> bool {
    observed.router.weight_of(&slot_tg(slot)).get() > 0
}

/// The slots that list a fleet of this name, being deleted or not.
fn slots_listing(observed: &Observed, fleet: &FleetName) -> Vec<Slot> {
    Slot::BOTH
        .into_iter()
        .filter(|slot| observed.slot(*slot).fleets.iter().any(|f| &f.name == fleet))
        .collect()
}

/// The slot's fleet when exactly one that is not being deleted is attached.
fn sole(observed: &Observed, slot: Slot) -> Option<&FleetSummary> {
    let mut fleets = observed.slot(slot).fleets.iter().filter(|f| !f.deleting);
    match (fleets.next(), fleets.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

fn straddling(observed: &Observed) -> bool {
    observed.slot(Slot::A).fleets.iter().any(|f| {
        observed
            .slot(Slot::B)
            .fleets
            .iter()
            .any(|g| g.name == f.name)
    })
}

/// Readiness from first principles: at least one instance desired, at least that many
/// instances, every one in service with a healthy target in the slot.
fn obviously_ready(fleet: &FleetSummary, targets: &[TargetHealth]) -> bool {
    let desired = usize::try_from(fleet.capacity.desired).expect("small");
    desired > 0
        && fleet.instances.len() >= desired
        && fleet.instances.iter().all(|i| {
            i.lifecycle_state == IN_SERVICE
                && targets
                    .iter()
                    .find(|t| t.target_id == i.id)
                    .is_some_and(|t| t.state == TargetState::Healthy)
        })
}

/// Checks a flip against the observation that decided it: the router forwarded all traffic to
/// one slot, and the flip goes from it to the other slot's single fleet, which is ready.
fn check_flip(
    spec: &Spec,
    observed: &Observed,
    action: &Action,
) -> Result<ReleaseTags, TestCaseError> {
    let Action::Flip {
        to,
        from,
        fleet,
        release: flipped_release,
    } = action
    else {
        return Err(TestCaseError::fail(format!("not a flip: {action:?}")));
    };
    let live = traffic_slot(&observed.router)
        .ok_or_else(|| TestCaseError::fail("flip while traffic is not on exactly one slot"))?;
    prop_assert_eq!(observed.routing(&spec.slots), Routing::Live(live));
    let idle = live.other();
    prop_assert_eq!(to, &slot_tg(idle));
    prop_assert_eq!(from, &slot_tg(live));
    prop_assert!(!straddling(observed));
    prop_assert!(sole(observed, live).is_some());
    let target = sole(observed, idle)
        .ok_or_else(|| TestCaseError::fail("flip to a slot without exactly one fleet"))?;
    prop_assert_eq!(&target.name, fleet);
    let targets = &observed.slot(idle).targets;
    prop_assert!(fleet_health(target, targets).ready());
    prop_assert!(obviously_ready(target, targets));
    let tags = ReleaseTags::read(&target.tags);
    prop_assert!(tags.managed_for(&spec.service));
    let expected_release = tags.release.clone().unwrap_or_else(|| fleet.to_string());
    prop_assert_eq!(flipped_release, &expected_release);
    Ok(tags)
}

/// The fleet is attached somewhere, and only to slots that take no traffic.
fn check_idle_only(observed: &Observed, fleet: &FleetName) -> Result<(), TestCaseError> {
    let slots = slots_listing(observed, fleet);
    prop_assert!(!slots.is_empty(), "{} is attached nowhere", fleet);
    for slot in slots {
        prop_assert!(
            !takes_traffic(observed, slot),
            "{} is attached to slot {} which takes traffic",
            fleet,
            slot
        );
    }
    Ok(())
}

fn deploy_decision_is_safe(spec: &Spec, s: &Scenario) -> Result<(), TestCaseError> {
    let observed = &s.observed;
    let decision = decide_deploy(spec, &s.request, observed, s.clock);
    let action = match &decision {
        Decision::Act(action) => action,
        Decision::Done {
            release: done,
            slot,
        } => return check_done(spec, s, done, *slot),
        Decision::Wait { fleet, health } => return check_wait(spec, s, fleet, health),
        Decision::Refuse(_) => return Ok(()),
    };
    let live = traffic_slot(&observed.router)
        .ok_or_else(|| TestCaseError::fail(format!("acted without a live slot: {action:?}")))?;
    let idle = live.other();
    let live_fleet = sole(observed, live)
        .ok_or_else(|| TestCaseError::fail(format!("acted without one live fleet: {action:?}")))?;
    prop_assert!(!straddling(observed), "acted with a straddling fleet");
    let idle_fleet = sole(observed, idle);
    let idle_tags = idle_fleet.map(|f| ReleaseTags::read(&f.tags));
    let names_idle_fleet = |fleet: &FleetName| idle_fleet.is_some_and(|f| &f.name == fleet);
    match action {
        Action::JoinRouter {
            target_group,
            live: live_tg,
        } => {
            // Only ever the idle slot, at weight 0, and only when the router does not name it.
            prop_assert_eq!(target_group, &slot_tg(idle));
            prop_assert_eq!(live_tg, &slot_tg(live));
            prop_assert!(!observed.router.names(target_group));
            prop_assert!(
                idle_fleet.is_none_or(|f| ReleaseTags::read(&f.tags).managed_for(&spec.service))
            );
        }
        Action::Flip {
            release: flipped, ..
        } => {
            let tags = check_flip(spec, observed, action)?;
            prop_assert_eq!(flipped.as_str(), s.request.release.as_str());
            prop_assert!(!matches!(tags.phase, Some(Phase::Creating | Phase::Failed)));
        }
        Action::RetireFleet {
            fleet,
            release: retired,
            phase,
        } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            let tags = idle_tags.expect("idle fleet exists");
            prop_assert!(
                tags.managed_for(&spec.service),
                "retires an unmanaged fleet"
            );
            prop_assert!(!matches!(
                tags.phase,
                Some(Phase::Creating | Phase::Provisioning)
            ));
            prop_assert_eq!(*phase, tags.phase);
            prop_assert_ne!(retired.as_str(), s.request.release.as_str());
        }
        Action::FailRelease { fleet, .. } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            prop_assert!(
                s.clock.now >= s.clock.health_deadline,
                "failed before the deadline"
            );
            let failing = idle_fleet.expect("idle fleet exists");
            prop_assert!(!fleet_health(failing, &observed.slot(idle).targets).ready());
            prop_assert!(idle_tags.expect("idle").managed_for(&spec.service));
        }
        Action::ReviveFleet { fleet, capacity } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            prop_assert_eq!(*capacity, live_fleet.capacity);
            let tags = idle_tags.expect("idle");
            prop_assert!(tags.managed_for(&spec.service));
            prop_assert_eq!(tags.phase, Some(Phase::Failed));
        }
        Action::ConfigureFleet(Green {
            fleet,
            source,
            target_group,
            ..
        }) => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            prop_assert_eq!(target_group, &slot_tg(idle));
            prop_assert_eq!(source, &live_fleet.name);
            let tags = idle_tags.expect("idle");
            prop_assert!(tags.managed_for(&spec.service));
            prop_assert_eq!(tags.phase, Some(Phase::Creating));
        }
        Action::CreateFleet(Green {
            fleet,
            release: created,
            source,
            target_group,
            ..
        }) => {
            prop_assert_eq!(target_group, &slot_tg(idle));
            prop_assert!(!takes_traffic(observed, idle));
            prop_assert!(idle_fleet.is_none());
            prop_assert!(observed.slot(idle).fleets.iter().all(|f| f.deleting));
            prop_assert_eq!(created, &s.request.release);
            prop_assert_eq!(fleet.as_str(), format!("{SERVICE}-{created}"));
            prop_assert_eq!(source, &live_fleet.name);
        }
        Action::MarkWarm { fleet, until, .. } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            let service = idle_tags.expect("idle").service;
            prop_assert!(service.is_none() || service.as_deref() == Some(SERVICE));
            prop_assert_eq!(*until, s.clock.now + KEEP_WARM);
        }
        Action::MarkLive { fleet, .. } => {
            prop_assert_eq!(fleet, &live_fleet.name);
            let tags = ReleaseTags::read(&live_fleet.tags);
            prop_assert!(tags.service.is_none() || tags.managed_for(&spec.service));
            prop_assert_ne!(tags.phase, Some(Phase::Live));
        }
    }
    Ok(())
}

/// Done only when the requested release of this service takes all traffic, tagged live, and
/// the tags need no fixing.
fn check_done(spec: &Spec, s: &Scenario, done: &str, slot: Slot) -> Result<(), TestCaseError> {
    let observed = &s.observed;
    prop_assert_eq!(traffic_slot(&observed.router), Some(slot));
    prop_assert!(!straddling(observed));
    prop_assert_eq!(done, s.request.release.as_str());
    let live = sole(observed, slot).ok_or_else(|| TestCaseError::fail("done without one fleet"))?;
    let tags = ReleaseTags::read(&live.tags);
    prop_assert!(
        tags.managed_for(&spec.service),
        "done on an unmanaged fleet"
    );
    prop_assert_eq!(tags.phase, Some(Phase::Live));
    let live_release = tags.release.unwrap_or_else(|| live.name.to_string());
    prop_assert_eq!(live_release.as_str(), done);
    prop_assert_eq!(settle(spec, observed, s.clock.now), Ok(None));
    Ok(())
}

/// Waiting is only ever on the requested release in the idle slot, not ready, before the
/// deadline.
fn check_wait(
    spec: &Spec,
    s: &Scenario,
    fleet: &FleetName,
    health: &FleetHealth,
) -> Result<(), TestCaseError> {
    let observed = &s.observed;
    let live = traffic_slot(&observed.router)
        .ok_or_else(|| TestCaseError::fail("wait without traffic"))?;
    let idle = live.other();
    let waiting_on =
        sole(observed, idle).ok_or_else(|| TestCaseError::fail("wait on a crowded slot"))?;
    prop_assert_eq!(&waiting_on.name, fleet);
    prop_assert_eq!(
        health,
        &fleet_health(waiting_on, &observed.slot(idle).targets)
    );
    prop_assert!(!health.ready());
    prop_assert!(!obviously_ready(waiting_on, &observed.slot(idle).targets));
    prop_assert!(
        s.clock.now < s.clock.health_deadline,
        "waits past the deadline"
    );
    let tags = ReleaseTags::read(&waiting_on.tags);
    prop_assert!(tags.managed_for(&spec.service));
    let waiting_release = tags.release.unwrap_or_else(|| fleet.to_string());
    prop_assert_eq!(waiting_release.as_str(), s.request.release.as_str());
    Ok(())
}

fn rollback_decision_is_safe(spec: &Spec, observed: &Observed) -> Result<(), TestCaseError> {
    let decided = decide_rollback(spec, observed);
    if let Ok(action) = &decided {
        let tags = check_flip(spec, observed, action)?;
        prop_assert!(!matches!(
            tags.phase,
            Some(Phase::Creating | Phase::Provisioning | Phase::Failed)
        ));
    }
    // And the converse: everything a rollback needs is there, so it must flip.
    let Some(live) = traffic_slot(&observed.router) else {
        return Ok(());
    };
    let idle = live.other();
    let Some(previous) = sole(observed, idle) else {
        return Ok(());
    };
    let tags = ReleaseTags::read(&previous.tags);
    let possible = !straddling(observed)
        && sole(observed, live).is_some_and(|fleet| {
            ReleaseTags::read(&fleet.tags)
                .service
                .is_none_or(|service| service == spec.service.as_str())
        })
        && tags.managed_for(&spec.service)
        && matches!(tags.phase, None | Some(Phase::Warm | Phase::Live))
        && obviously_ready(previous, &observed.slot(idle).targets);
    if possible {
        prop_assert!(
            decided.is_ok(),
            "refused a possible rollback: {:?}",
            decided
        );
    }
    Ok(())
}

/// What a decision amounts to, without the detail that may depend on list order.
fn gist(decision: &Decision) -> (String, Option<String>) {
    match decision {
        Decision::Act(action) => (
            action.name().to_owned(),
            action.fleet().map(ToString::to_string),
        ),
        Decision::Wait { fleet, .. } => ("wait".to_owned(), Some(fleet.to_string())),
        Decision::Done { release, slot } => (format!("done in {slot}"), Some(release.clone())),
        Decision::Refuse(refusal) => (format!("{:?}", refusal.kind), None),
    }
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Shrunk failures are printed; no regression files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Traffic moves only to the idle slot's single fleet, ready in this very observation,
    /// and only from a router that sends everything to the other slot.
    #[test]
    fn deploy_flips_only_to_the_ready_idle_fleet(s in arb_scenario()) {
        let spec = spec();
        if let Decision::Act(action @ Action::Flip { .. }) =
            decide_deploy(&spec, &s.request, &s.observed, s.clock)
        {
            check_flip(&spec, &s.observed, &action)?;
        }
    }

    /// Every change touches only fleets in the slot without traffic, and never one that
    /// greenlight does not manage for this service; waiting and done mean what they say.
    #[test]
    fn deploy_changes_only_the_idle_slot(s in arb_scenario()) {
        deploy_decision_is_safe(&spec(), &s)?;
    }

    /// Unless all traffic goes to one slot served by one fleet, nothing is done.
    #[test]
    fn nothing_is_done_unless_one_slot_takes_all_traffic(s in arb_scenario()) {
        let spec = spec();
        let clear = traffic_slot(&s.observed.router).is_some_and(|live| {
            sole(&s.observed, live).is_some_and(|fleet| {
                ReleaseTags::read(&fleet.tags)
                    .service
                    .is_none_or(|service| service == spec.service.as_str())
            })
        }) && !straddling(&s.observed);
        let decision = decide_deploy(&spec, &s.request, &s.observed, s.clock);
        let rollback = decide_rollback(&spec, &s.observed);
        if !clear {
            prop_assert!(
                matches!(
                    &decision,
                    Decision::Refuse(r) if r.kind == RefusalKind::NeedsAttention
                ),
                "decided {:?}",
                decision
            );
            prop_assert!(
                matches!(&rollback, Err(r) if r.kind == RefusalKind::NeedsAttention),
                "rollback decided {:?}",
                rollback
            );
            prop_assert!(settle(&spec, &s.observed, s.clock.now).is_err());
        } else {
            prop_assert!(settle(&spec, &s.observed, s.clock.now).is_ok());
        }
    }

    /// The same inputs give the same decision, and the order AWS lists targets in does not
    /// change what is decided.
    #[test]
    fn deploy_is_deterministic(s in arb_scenario()) {
        let spec = spec();
        let first = decide_deploy(&spec, &s.request, &s.observed, s.clock);
        let again = decide_deploy(&spec, &s.request, &s.observed.clone(), s.clock);
        prop_assert_eq!(&first, &again);
        let mut reordered = s.observed.clone();
        for slot in &mut reordered.slots {
            slot.targets.reverse();
        }
        let other_order = decide_deploy(&spec, &s.request, &reordered, s.clock);
        prop_assert_eq!(gist(&first), gist(&other_order));
    }

    /// A rollback only ever flips to the idle slot's ready, managed previous release, and
    /// does so whenever that is possible.
    #[test]
    fn rollback_only_flips_to_a_ready_previous_release(s in arb_scenario()) {
        rollback_decision_is_safe(&spec(), &s.observed)?;
    }
}

/// The properties above mean little if the generator never reaches a branch: every kind of
/// decision must turn up among a few thousand generated observations.
#[test]
fn generated_observations_reach_every_decision() {
    let spec = spec();
    let strategy = arb_scenario();
    let mut runner = TestRunner::deterministic();
    let mut deploy_seen = BTreeSet::new();
    let mut rollback_seen = BTreeSet::new();
    for _ in 0..4000 {
        let s = strategy
            .new_tree(&mut runner)
            .expect("generates a scenario")
            .current();
        deploy_seen.insert(gist(&decide_deploy(&spec, &s.request, &s.observed, s.clock)).0);
        rollback_seen.insert(decide_rollback(&spec, &s.observed).is_ok());
    }
    let expected: BTreeSet<String> = [
        "retire_fleet",
        "create_fleet",
        "configure_fleet",
        "revive_fleet",
        "flip",
        "mark_live",
        "mark_warm",
        "fail_release",
        "wait",
        "done in a",
        "done in b",
        "BadInput",
        "Busy",
        "NeedsAttention",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let missing: Vec<&String> = expected.difference(&deploy_seen).collect();
    assert!(missing.is_empty(), "never decided: {missing:?}");
    assert_eq!(rollback_seen, BTreeSet::from([false, true]));
}

#[test]
fn a_previous_release_serving_another_target_group_is_not_retired() {
    let v2 = ours("v2", Phase::Live).image(AMI_2).serving(2);
    let mut observed = live_in(Slot::A, vec![v2], vec![ours("v1", Phase::Warm).serving(2)]);
    let retire = decide_deploy(
        &spec(),
        &image("v3", AMI_2),
        &observed,
        clock(Duration::ZERO),
    );
    assert!(
        matches!(&retire, Decision::Act(Action::RetireFleet { .. })),
        "control: {retire:?}"
    );
    let internal = arn(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/internal/0123456789abcdef",
    );
    observed.slots[1].fleets[0].target_groups.push(internal);
    match decide_deploy(
        &spec(),
        &image("v3", AMI_2),
        &observed,
        clock(Duration::ZERO),
    ) {
        Decision::Refuse(refusal) => {
            assert_eq!(refusal.kind, RefusalKind::NeedsAttention);
            assert!(
                refusal
                    .message
                    .contains("also serves target group internal"),
                "{}",
                refusal.message
            );
        }
        other => panic!("retired a fleet that serves another target group: {other:?}"),
    }
}

#[test]
fn a_newer_tag_schema_is_not_acted_on() {
    let v2 = || ours("v2", Phase::Live).image(AMI_2).serving(2);
    let observed = live_in(
        Slot::A,
        vec![v2()],
        vec![ours("v1", Phase::Warm).serving(2)],
    );
    assert!(matches!(
        decide_deploy(
            &spec(),
            &image("v3", AMI_2),
            &observed,
            clock(Duration::ZERO)
        ),
        Decision::Act(_)
    ));
    let newer = live_in(
        Slot::A,
        vec![v2()],
        vec![ours("v1", Phase::Warm).tag(tags::SCHEMA, "2").serving(2)],
    );
    for refusal in [
        match decide_deploy(&spec(), &image("v3", AMI_2), &newer, clock(Duration::ZERO)) {
            Decision::Refuse(refusal) => refusal,
            other => panic!("acted on a newer schema: {other:?}"),
        },
        decide_rollback(&spec(), &newer).unwrap_err(),
    ] {
        assert_eq!(refusal.kind, RefusalKind::NeedsAttention);
        assert!(refusal.message.contains("schema 2"), "{}", refusal.message);
    }
}

#[test]
fn warm_suspends_only_what_was_running_and_live_resumes_only_that() {
    // A fresh flip to v2: v1 lost the traffic. Its owner had suspended AlarmNotification.
    let mut observed = live_in(
        Slot::A,
        vec![ours("v2", Phase::Provisioning).image(AMI_2).serving(2)],
        vec![ours("v1", Phase::Live).serving(2)],
    );
    observed.slots[1].fleets[0].suspended_processes = vec!["AlarmNotification".into()];
    let Ok(Some(Action::MarkWarm { suspend, .. })) = settle(&spec(), &observed, t0()) else {
        panic!("expected MarkWarm")
    };
    assert_eq!(suspend, ["ScheduledActions"]);

    // A re-run after a crash, with both suspended by now: the record decides, not the state.
    observed.slots[1].fleets[0].suspended_processes =
        vec!["AlarmNotification".into(), "ScheduledActions".into()];
    observed.slots[1].fleets[0]
        .tags
        .insert(tags::SUSPENDED.into(), "ScheduledActions".into());
    let Ok(Some(Action::MarkWarm { suspend, .. })) = settle(&spec(), &observed, t0()) else {
        panic!("expected MarkWarm")
    };
    assert_eq!(suspend, ["ScheduledActions"]);

    // Rolled back to v1: it resumes what greenlight suspended, and only that.
    let rolled_back = live_in(
        Slot::B,
        vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
        vec![
            ours("v1", Phase::Warm)
                .tag(tags::SUSPENDED, "ScheduledActions")
                .serving(2),
        ],
    );
    let Ok(Some(Action::MarkWarm { .. })) = settle(&spec(), &rolled_back, t0()) else {
        panic!("v2 is marked warm first")
    };
    let mut rolled_back = rolled_back;
    rolled_back.slots[0].fleets[0]
        .tags
        .insert(tags::PHASE.into(), "warm".into());
    assert_eq!(
        settle(&spec(), &rolled_back, t0()),
        Ok(Some(Action::MarkLive {
            fleet: name("checkout-v1"),
            release: "v1".into(),
            resume: vec!["ScheduledActions".into()],
        }))
    );
}

#[test]
fn an_unsettled_rollback_is_told_apart_from_an_unsettled_deploy() {
    // Rollback flipped to the warm v1; v2 still tagged live.
    let after_rollback = live_in(
        Slot::A,
        vec![ours("v1", Phase::Warm).serving(2)],
        vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
    );
    assert!(super::rollback_unsettled(&spec(), &after_rollback));
    // Deploy flipped to the provisioning v2; v1 still tagged live: a rollback must flip.
    let after_deploy = live_in(
        Slot::B,
        vec![ours("v1", Phase::Live).serving(2)],
        vec![ours("v2", Phase::Provisioning).image(AMI_2).serving(2)],
    );
    assert!(!super::rollback_unsettled(&spec(), &after_deploy));
    assert!(matches!(
        decide_rollback(&spec(), &after_deploy),
        Ok(Action::Flip { .. })
    ));
    // Settled: nothing is pending.
    let settled = live_in(
        Slot::A,
        vec![ours("v1", Phase::Live).serving(2)],
        vec![ours("v2", Phase::Warm).image(AMI_2).serving(2)],
    );
    assert!(!super::rollback_unsettled(&spec(), &settled));
}
