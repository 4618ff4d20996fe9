//! Tests of the decisions: a table per command that walks every branch of [`decide_deploy`],
//! [`decide_rollback`], [`decide_abort`], [`decide_promote`], [`decide_resume`] and [`settle`],
//! walks of whole releases through their stages, then properties over random observations for
//! the safety rules in the module doc, checked against arithmetic of the tests' own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

use super::{
    Action, Clock, Decision, DeployRequest, Done, Green, Launch, PromoteRequest, Refusal,
    RefusalKind, WARM_SUSPENDS, Wait, WaitReason, decide_abort, decide_deploy, decide_promote,
    decide_resume, decide_rollback, settle, settle_flips,
};
use crate::core::fleet::{Capacity, FleetInstance, FleetSummary};
use crate::core::health::{TargetHealth, TargetState, fleet_health};
use crate::core::names::{FleetName, ImageId, ListenerArn, ReleaseName, TargetGroupArn};
use crate::core::observed::{Observed, SlotObserved};
use crate::core::plan::{Pause, Percent, Plan, Step, StepNumber, Strategy as PlanStrategy};
use crate::core::reason::{Reason, ReasonCode};
use crate::core::router::{
    Forward, RouterAction, RouterId, RouterState, RouterWrite, Routing, Slot, Stickiness, Weight,
};
use crate::core::spec::Spec;
use crate::core::tags::{self, Phase, Promoted, ReleaseTags};

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
/// `[health] timeout` (the default): how long a new release may take to become healthy, and
/// how long a release under way may stay partly unhealthy at a step. The clock starts at
/// [`t0`].
const TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `[retention] keep_warm` in [`spec`].
const KEEP_WARM: Duration = Duration::from_secs(2 * 60 * 60);
/// The bake time of step 1 of [`canary`].
const BAKE: Duration = Duration::from_secs(5 * 60);
/// Who asks in `abort` and `rollback` cases.
const BY: &str = "alice";

fn config(extra: &str) -> String {
    format!(
        r#"
service = "{SERVICE}"
region = "us-east-1"

[router]
listener_arn = "{LISTENER}"
target_groups = ["{TG_A}", "{TG_B}"]

[retention]
keep_warm = "2h"
{extra}
"#
    )
}

/// Service `checkout`, slot a = `checkout-a`, slot b = `checkout-b`, previous releases kept
/// warm for two hours, no stickiness.
fn spec() -> Spec {
    Spec::parse(&config("")).expect("the test config is valid")
}

/// [`spec`] with a canary plan that asks for stickiness while traffic is split.
fn sticky_spec() -> Spec {
    Spec::parse(&config(
        r#"
[canary]
steps = [{ weight = 10, pause = "5m" }, { weight = 100 }]
stickiness = "1h"
"#,
    ))
    .expect("the sticky test config is valid")
}

fn arn(value: &str) -> TargetGroupArn {
    TargetGroupArn::parse(value).expect("test target group ARN")
}

fn tg_of(slot: Slot) -> &'static str {
    match slot {
        Slot::A => TG_A,
        Slot::B => TG_B,
    }
}

fn slot_tg(slot: Slot) -> TargetGroupArn {
    arn(tg_of(slot))
}

fn name(value: &str) -> FleetName {
    FleetName::new(value)
}

fn release(value: &str) -> ReleaseName {
    ReleaseName::parse(value).expect("test release name")
}

fn pct(value: u8) -> Percent {
    Percent::new(value).expect("test percent")
}

fn plan(encoded: &str) -> Plan {
    Plan::decode(encoded).expect("test plan")
}

/// Blue/green: one flip.
fn bluegreen() -> Plan {
    Plan::blue_green(None)
}

/// Blue/green with a gate before the flip: 0% until promoted, then 100%.
fn gated() -> Plan {
    Plan::blue_green(Some(Pause::Manual))
}

/// 10% for [`BAKE`], 25% until promoted, 50%, then 100%.
fn canary() -> Plan {
    plan("canary 10@5m,25@manual,50,100")
}

fn image(release_name: &str, ami: &str) -> DeployRequest {
    DeployRequest {
        release: release(release_name),
        launch: Launch::Image(ImageId::parse(ami).expect("test AMI id")),
        plan: bluegreen(),
    }
}

fn version(release_name: &str, number: u64) -> DeployRequest {
    DeployRequest {
        release: release(release_name),
        launch: Launch::Version(number),
        plan: bluegreen(),
    }
}

fn with_plan(request: DeployRequest, plan: Plan) -> DeployRequest {
    DeployRequest { plan, ..request }
}

/// `deploy --release v2 --image-id ami-22222222 --strategy canary`.
fn canary_v2() -> DeployRequest {
    with_plan(image("v2", AMI_2), canary())
}

/// When the deploy started, and when the step in effect was reached; the health deadline is
/// [`TIMEOUT`] later.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

/// The clock `since_start` after [`t0`].
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

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
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
            launch_template: None,
        },
        targets: Vec::new(),
    }
}

/// Fleet `checkout-<release>`, tagged by greenlight for `checkout` with `release` and `phase`.
fn ours(release_name: &str, phase: Phase) -> F {
    fleet(&format!("{SERVICE}-{release_name}")).release(release_name, phase)
}

/// Release v2 of `plan`, healthy and at step `n` since [`t0`] (no instances yet).
fn releasing(plan: &Plan, n: u32) -> F {
    ours("v2", Phase::Releasing)
        .image(AMI_2)
        .plan(plan)
        .at_step(n, t0())
}

/// The stable release during a canary: v1, live and ready.
fn stable() -> F {
    ours("v1", Phase::Live).image(AMI_1).serving(2)
}

impl F {
    fn tag(mut self, key: &str, value: &str) -> F {
        self.summary.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The tags greenlight writes for a release of `checkout`.
    fn release(self, release_name: &str, phase: Phase) -> F {
        self.tag(tags::SCHEMA, &tags::SCHEMA_VERSION.to_string())
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

    fn plan(self, plan: &Plan) -> F {
        self.tag(tags::PLAN, &plan.encode())
    }

    /// Step `n` of its plan took effect at `at`.
    fn at_step(self, n: u32, at: SystemTime) -> F {
        self.tag(tags::STEP, &n.to_string())
            .tag(tags::STEP_AT, &tags::timestamp(at))
    }

    fn promoted(self, value: &str) -> F {
        self.tag(tags::PROMOTED, value)
    }

    fn abort_requested(self, value: &str) -> F {
        self.tag(tags::ABORT, value)
    }

    fn health_deadline(self, at: SystemTime) -> F {
        self.tag(tags::HEALTH_DEADLINE, &tags::timestamp(at))
    }

    fn rolled_back_at(self, at: SystemTime) -> F {
        self.tag(tags::ROLLED_BACK_AT, &tags::timestamp(at))
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

    /// In service, failing its health checks.
    fn failing(self, count: u32) -> F {
        (0..count).fold(self, |f, _| {
            f.instance(
                IN_SERVICE,
                Some(TargetState::Unhealthy),
                Some("Target.Timeout"),
                None,
            )
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

fn forwards(list: &[(&str, u16)]) -> Vec<Forward> {
    list.iter()
        .map(|(target_group, weight)| Forward {
            target_group: arn(target_group),
            weight: Weight::new(*weight).expect("test weight"),
        })
        .collect()
}

fn forwarding(list: &[(&str, u16)]) -> RouterState {
    RouterState {
        id: router_id(),
        action: RouterAction::Forward {
            forwards: forwards(list),
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
        verify: Default::default(),
        router,
        slots: [slot_observed(TG_A, a), slot_observed(TG_B, b)],
    }
}

/// All traffic to `live`; the other slot named with weight 0, the way a user's router may
/// have it before greenlight ever wrote to it.
fn live_in(live: Slot, a: Vec<F>, b: Vec<F>) -> Observed {
    observe(
        forwarding(&[(tg_of(live), 1), (tg_of(live.other()), 0)]),
        a,
        b,
    )
}

/// The split greenlight writes: the slot other than `stable` takes `green` percent and
/// `stable` the rest.
fn split_in(stable: Slot, green: u16, a: Vec<F>, b: Vec<F>) -> Observed {
    observe(
        forwarding(&[(tg_of(stable), 100 - green), (tg_of(stable.other()), green)]),
        a,
        b,
    )
}

// ---------------------------------------------------------------------------------------------
// Expected actions
// ---------------------------------------------------------------------------------------------

/// A router write that expects `expected` and writes `written`, leaving stickiness alone.
fn write(expected: &[(&str, u16)], written: &[(&str, u16)]) -> RouterWrite {
    RouterWrite {
        expected: forwards(expected),
        forwards: forwards(written),
        stickiness: Stickiness::Keep,
    }
}

/// The forwards [`live_in`] observes.
fn seen_live(live: Slot) -> Vec<(&'static str, u16)> {
    vec![(tg_of(live), 1), (tg_of(live.other()), 0)]
}

/// The forwards [`split_in`] observes.
fn seen_split(stable: Slot, green: u16) -> Vec<(&'static str, u16)> {
    vec![(tg_of(stable), 100 - green), (tg_of(stable.other()), green)]
}

/// All traffic from `from` to the other slot in one call, expecting `seen`.
fn flip_from(from: Slot, fleet_name: &str, release_name: &str, seen: &[(&str, u16)]) -> Action {
    let to = from.other();
    Action::Flip {
        verdict: None,
        to: slot_tg(to),
        from: slot_tg(from),
        fleet: name(fleet_name),
        release: release_name.to_owned(),
        write: write(seen, &[(tg_of(from), 0), (tg_of(to), 100)]),
    }
}

/// Green (release v2, in the slot other than `stable`) to `weight`, step `step` of `of`.
fn shift(stable: Slot, weight: u8, step: u32, of: u32, seen: &[(&str, u16)]) -> Action {
    let green = stable.other();
    Action::Shift {
        verdict: None,
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        to: slot_tg(green),
        from: slot_tg(stable),
        weight: pct(weight),
        step: StepNumber(step),
        of,
        write: write(
            seen,
            &[
                (tg_of(stable), 100 - u16::from(weight)),
                (tg_of(green), u16::from(weight)),
            ],
        ),
    }
}

/// All traffic back to `stable`, away from release v2, for `reason`.
fn route_back(stable: Slot, reason: &str, seen: &[(&str, u16)]) -> Action {
    let green = stable.other();
    Action::RouteBack {
        to: slot_tg(stable),
        from: slot_tg(green),
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        reason: expected_reason(reason),
        write: write(seen, &[(tg_of(stable), 100), (tg_of(green), 0)]),
    }
}

fn fail(fleet_name: &str, release_name: &str, reasons: &[&str]) -> Action {
    Action::FailRelease {
        fleet: name(fleet_name),
        release: release_name.to_owned(),
        reasons: reasons.iter().map(|r| expected_reason(r)).collect(),
    }
}

/// The reason a stop with this description has: its code and target, by the test's own
/// reading of the words (the release in these tables is v2 on fleet checkout-v2).
pub(super) fn expected_reason(description: &str) -> Reason {
    let reason = |code| Reason::new(code, description);
    let after = |prefix: &str| description.strip_prefix(prefix).map(str::to_owned);
    if let Some(rest) = after("aborted by ") {
        let who = rest.split(" at ").next().unwrap_or(&rest).to_owned();
        return reason(ReasonCode::Aborted).on(who);
    }
    if let Some(rest) = after("rolled back by ") {
        let who = rest.trim_end_matches(" while in progress").to_owned();
        return reason(ReasonCode::RolledBack).on(who);
    }
    if let Some(rest) = after("alarm ") {
        let alarm = rest.split(' ').next().unwrap_or_default().to_owned();
        return reason(ReasonCode::Alarm).on(alarm);
    }
    if description.starts_with("not healthy in time") {
        return reason(ReasonCode::HealthTimeout).on("checkout-v2");
    }
    if description.starts_with("i-") {
        let instance = description.split(' ').next().unwrap_or_default().to_owned();
        return reason(ReasonCode::TargetUnhealthy).on(instance);
    }
    if description.contains("with no healthy target")
        || description.contains("not fully healthy again")
    {
        return reason(ReasonCode::HealthLost).on("checkout-v2");
    }
    if description.starts_with("analysis failed") {
        return reason(ReasonCode::AnalysisFailed).on("v2");
    }
    if description.starts_with("analysis inconclusive") {
        return reason(ReasonCode::AnalysisInconclusive).on("v2");
    }
    if let Some(rest) = after("hook `") {
        let command = rest.split('`').next().unwrap_or_default().to_owned();
        return reason(ReasonCode::HookFailed).on(command);
    }
    reason(ReasonCode::Recorded)
}

fn mark_live_action(fleet_name: &str, release_name: &str) -> Action {
    Action::MarkLive {
        fleet: name(fleet_name),
        release: release_name.to_owned(),
        resume: vec![],
    }
}

/// Warm, with both processes that would resize it suspended (none were before), at the
/// [`early`] clock.
fn mark_warm_action(fleet_name: &str, release_name: &str, rolled_back: bool) -> Action {
    Action::MarkWarm {
        fleet: name(fleet_name),
        release: release_name.to_owned(),
        until: early().now + KEEP_WARM,
        suspend: WARM_SUSPENDS.iter().map(|p| (*p).to_owned()).collect(),
        rolled_back,
    }
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Expect {
    Is(Decision),
    /// Waits for the health of `fleet` (which is not ready) until `until`.
    Waits {
        fleet: &'static str,
        progress: &'static str,
        until: SystemTime,
    },
    /// Refused with this kind and a message containing every one of these texts.
    Refused(RefusalKind, &'static [&'static str]),
}

/// The command a case runs.
#[derive(Debug)]
enum Command {
    Deploy(DeployRequest),
    Rollback(Option<&'static str>),
    Abort,
    Resume,
}

impl Command {
    fn decide(&self, spec: &Spec, observed: &Observed, clock: Clock) -> Decision {
        match self {
            Command::Deploy(request) => decide_deploy(spec, request, observed, clock),
            Command::Rollback(to) => decide_rollback(spec, observed, clock.now, *to, BY),
            Command::Abort => decide_abort(spec, observed, clock.now, BY),
            Command::Resume => decide_resume(spec, observed, clock),
        }
    }
}

struct Case {
    name: &'static str,
    observed: Observed,
    command: Command,
    clock: Clock,
    expect: Expect,
}

/// A `deploy` case, at the [`early`] clock.
fn case(name: &'static str, observed: Observed, request: DeployRequest, expect: Expect) -> Case {
    Case {
        name,
        observed,
        command: Command::Deploy(request),
        clock: early(),
        expect,
    }
}

/// A `rollback` case (`to`: `--to`), at the [`early`] clock.
fn rollback_case(
    name: &'static str,
    observed: Observed,
    to: Option<&'static str>,
    expect: Expect,
) -> Case {
    Case {
        command: Command::Rollback(to),
        ..case(name, observed, image("unused", AMI_2), expect)
    }
}

/// An `abort` case, at the [`early`] clock.
fn abort_case(name: &'static str, observed: Observed, expect: Expect) -> Case {
    Case {
        command: Command::Abort,
        ..case(name, observed, image("unused", AMI_2), expect)
    }
}

/// A case of the release driven without a deploy request, at the [`early`] clock.
fn resume_case(name: &'static str, observed: Observed, expect: Expect) -> Case {
    Case {
        command: Command::Resume,
        ..case(name, observed, image("unused", AMI_2), expect)
    }
}

impl Case {
    fn at(self, clock: Clock) -> Case {
        Case { clock, ..self }
    }
}

fn act(action: Action) -> Expect {
    Expect::Is(Decision::Act(action))
}

fn done(done: Done) -> Expect {
    Expect::Is(Decision::Done(done))
}

fn live_done(release_name: &str, slot: Slot) -> Expect {
    done(Done::Live {
        release: release_name.to_owned(),
        slot,
    })
}

fn waits(why: WaitReason, until: Option<SystemTime>) -> Expect {
    Expect::Is(Decision::Wait(Wait { until, why }))
}

fn needs_attention(parts: &'static [&'static str]) -> Expect {
    Expect::Refused(RefusalKind::NeedsAttention, parts)
}

fn mark_live(fleet_name: &str, release_name: &str) -> Expect {
    act(mark_live_action(fleet_name, release_name))
}

fn mark_warm(fleet_name: &str, release_name: &str, rolled_back: bool) -> Expect {
    act(mark_warm_action(fleet_name, release_name, rolled_back))
}

/// Checks a refusal: its kind, every part of its message, and that it is one line.
fn check_refusal(name: &str, refusal: &Refusal, kind: RefusalKind, parts: &[&str]) {
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

fn check(name: &str, decision: &Decision, expect: &Expect) {
    match expect {
        Expect::Is(expected) => assert_eq!(decision, expected, "{name}"),
        Expect::Waits {
            fleet,
            progress,
            until,
        } => match decision {
            Decision::Wait(Wait {
                until: waits_until,
                why:
                    WaitReason::Health {
                        fleet: waiting_on,
                        health,
                    },
            }) => {
                assert_eq!(waiting_on.as_str(), *fleet, "{name}");
                assert_eq!(health.progress(), *progress, "{name}");
                assert!(!health.ready(), "{name}: waits on a ready fleet");
                assert_eq!(*waits_until, Some(*until), "{name}");
            }
            other => panic!("{name}: expected to wait for health, decided {other:?}"),
        },
        Expect::Refused(kind, parts) => match decision {
            Decision::Refuse(refusal) => check_refusal(name, refusal, *kind, parts),
            other => panic!("{name}: expected {kind:?}, decided {other:?}"),
        },
    }
}

fn run_table_with(spec: &Spec, cases: Vec<Case>) {
    let mut names = BTreeSet::new();
    for case in cases {
        assert!(names.insert(case.name), "{}: named twice", case.name);
        let decision = case.command.decide(spec, &case.observed, case.clock);
        check(case.name, &decision, &case.expect);
    }
}

fn run_table(cases: Vec<Case>) {
    run_table_with(&spec(), cases);
}

// ---------------------------------------------------------------------------------------------
// Deploy tables
// ---------------------------------------------------------------------------------------------

#[test]
fn deploy_settles_the_tags_before_anything_else() {
    let blue = || fleet("checkout-blue").serving(2);
    let v2_green = || ours("v2", Phase::Provisioning).image(AMI_2).serving(2);
    run_table(vec![
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
            mark_warm("checkout-blue", "checkout-blue", false),
        ),
        case(
            "fresh flip: the previous live release is marked warm first, not rolled back",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![v2_green()],
            ),
            image("v2", AMI_2),
            mark_warm("checkout-v1", "v1", false),
        ),
        case(
            "fresh last step of a canary: the previous release is marked warm, not rolled back",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![releasing(&canary(), 3).serving(2)],
            ),
            canary_v2(),
            mark_warm("checkout-v1", "v1", false),
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
            "fresh rollback: the release traffic left is marked warm and rolled back, though \
             it is unhealthy",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![ours("v2", Phase::Live).desired(2).registering(2)],
            ),
            image("v3", AMI_2),
            mark_warm("checkout-v2", "v2", true),
        ),
        case(
            "both tagged live: the one without traffic is marked warm",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![ours("v2", Phase::Live).serving(2)],
            ),
            image("v2", AMI_2),
            mark_warm("checkout-v1", "v1", false),
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
        case(
            "a canary's split is not a flip: nothing to settle, the release goes on",
            split_in(
                Slot::A,
                50,
                vec![stable()],
                vec![releasing(&canary(), 3).serving(2)],
            ),
            canary_v2(),
            act(flip_from(
                Slot::A,
                "checkout-v2",
                "v2",
                &seen_split(Slot::A, 50),
            )),
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
        Ok(Some(mark_live_action("billing-blue", "b1")))
    );
}

fn green_of(fleet_name: &str, release_name: &str, source: &str, slot: Slot) -> Green {
    Green {
        fleet: name(fleet_name),
        release: release(release_name),
        source: name(source),
        target_group: slot_tg(slot),
        launch: Launch::Image(ImageId::parse(AMI_2).expect("AMI")),
        plan: bluegreen(),
        health_deadline: t0() + TIMEOUT,
    }
}

#[test]
fn deploy_builds_configures_and_revives_green_in_the_idle_slot() {
    let v1 = || {
        ours("v1", Phase::Live)
            .image(AMI_1)
            .capacity(2, 6, 3)
            .healthy(3)
    };
    run_table(vec![
        case(
            "empty idle slot b: create <service>-<release> there from the live fleet",
            live_in(Slot::A, vec![v1()], vec![]),
            image("v2", AMI_2),
            act(Action::CreateFleet(green_of(
                "checkout-v2",
                "v2",
                "checkout-v1",
                Slot::B,
            ))),
        ),
        case(
            "empty idle slot a: create there, from a launch template version, with its plan",
            live_in(Slot::B, vec![], vec![v1()]),
            with_plan(version("2026-11-25.3", 7), canary()),
            act(Action::CreateFleet(Green {
                launch: Launch::Version(7),
                plan: canary(),
                ..green_of(
                    "checkout-2026-11-25.3",
                    "2026-11-25.3",
                    "checkout-v1",
                    Slot::A,
                )
            })),
        ),
        case(
            "the idle slot is not in the router: name it at weight 0 first",
            observe(forwarding(&[(TG_A, 1)]), vec![v1()], vec![]),
            image("v2", AMI_2),
            act(Action::JoinRouter {
                target_group: arn(TG_B),
                live: arn(TG_A),
                write: write(&[(TG_A, 1)], &[(TG_B, 0), (TG_A, 100)]),
            }),
        ),
        case(
            "a fleet being deleted does not occupy the idle slot",
            live_in(
                Slot::A,
                vec![v1()],
                vec![ours("v0", Phase::Warm).serving(3).deleting()],
            ),
            image("v2", AMI_2),
            act(Action::CreateFleet(green_of(
                "checkout-v2",
                "v2",
                "checkout-v1",
                Slot::B,
            ))),
        ),
        case(
            "green is still being created: configure it",
            live_in(
                Slot::A,
                vec![v1()],
                vec![ours("v2", Phase::Creating).image(AMI_2).desired(0)],
            ),
            image("v2", AMI_2),
            act(Action::ConfigureFleet(green_of(
                "checkout-v2",
                "v2",
                "checkout-v1",
                Slot::B,
            ))),
        ),
        case(
            "green being created keeps the plan and deadline it recorded, not the request's",
            live_in(
                Slot::A,
                vec![v1()],
                vec![
                    ours("v2", Phase::Creating)
                        .image(AMI_2)
                        .plan(&canary())
                        .health_deadline(t0() + secs(60))
                        .desired(0),
                ],
            ),
            image("v2", AMI_2),
            act(Action::ConfigureFleet(Green {
                plan: canary(),
                health_deadline: t0() + secs(60),
                ..green_of("checkout-v2", "v2", "checkout-v1", Slot::B)
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
                launch: Launch::Version(7),
                ..green_of("checkout-v2", "v2", "checkout-v1", Slot::A)
            })),
        )
        .at(clock(TIMEOUT * 2)),
        case(
            "the same release failed before: revive it to the live fleet's capacity, with a \
             new plan and deadline",
            live_in(
                Slot::A,
                vec![v1()],
                vec![
                    ours("v2", Phase::Failed)
                        .image(AMI_2)
                        .plan(&bluegreen())
                        .tag(tags::FAILURE, "not healthy in time")
                        .desired(0),
                ],
            ),
            canary_v2(),
            act(Action::ReviveFleet {
                fleet: name("checkout-v2"),
                release: "v2".to_owned(),
                capacity: Capacity {
                    min: 2,
                    max: 6,
                    desired: 3,
                },
                plan: canary(),
                health_deadline: t0() + TIMEOUT,
            }),
        ),
        case(
            "deploying the warm previous release again restages it: a deploy never flips onto \
             a warm fleet",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
                vec![ours("v1", Phase::Warm).image(AMI_1).serving(2)],
            ),
            image("v1", AMI_1),
            act(Action::Restage {
                fleet: name("checkout-v1"),
                release: "v1".to_owned(),
                plan: bluegreen(),
                health_deadline: t0() + TIMEOUT,
            }),
        ),
        case(
            "a warm release rolled back from is restaged too, with the plan asked for",
            live_in(
                Slot::B,
                vec![
                    ours("v1", Phase::Warm)
                        .image(AMI_1)
                        .rolled_back_at(t0())
                        .serving(2),
                ],
                vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
            ),
            with_plan(image("v1", AMI_1), canary()),
            act(Action::Restage {
                fleet: name("checkout-v1"),
                release: "v1".to_owned(),
                plan: canary(),
                health_deadline: t0() + TIMEOUT,
            }),
        ),
    ]);
}

#[test]
fn deploy_flips_when_ready_waits_before_the_deadline_and_fails_after_it() {
    let v1 = || ours("v1", Phase::Live).image(AMI_1).serving(2);
    let green = || ours("v2", Phase::Provisioning).image(AMI_2).desired(2);
    let flip_to_b = || act(flip_from(Slot::A, "checkout-v2", "v2", &seen_live(Slot::A)));
    let one_unhealthy = || {
        green().healthy(1).instance(
            IN_SERVICE,
            Some(TargetState::Unhealthy),
            Some("Target.ResponseCodeMismatch"),
            Some("Health checks failed with these codes: [502]"),
        )
    };
    let deadline = t0() + TIMEOUT;
    run_table(vec![
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
            act(flip_from(Slot::B, "checkout-v2", "v2", &seen_live(Slot::B))),
        ),
        case(
            "green ready exactly at the deadline: flip, do not fail",
            live_in(Slot::A, vec![v1()], vec![green().healthy(2)]),
            image("v2", AMI_2),
            flip_to_b(),
        )
        .at(clock(TIMEOUT)),
        case(
            "the router gave the slots weights 0 and 100: the write still expects what it saw",
            observe(
                forwarding(&[(TG_B, 0), (TG_A, 100)]),
                vec![v1()],
                vec![green().healthy(2)],
            ),
            image("v2", AMI_2),
            act(flip_from(
                Slot::A,
                "checkout-v2",
                "v2",
                &[(TG_B, 0), (TG_A, 100)],
            )),
        ),
        case(
            "one target still registering: wait",
            live_in(Slot::A, vec![v1()], vec![green().healthy(1).registering(1)]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 initial (Elb.RegistrationInProgress)",
                until: deadline,
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
                until: deadline,
            },
        ),
        case(
            "fewer instances than desired, all healthy: wait",
            live_in(Slot::A, vec![v1()], vec![green().desired(3).healthy(2)]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "2/3 healthy",
                until: deadline,
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
                until: deadline,
            },
        ),
        case(
            "desired capacity zero is never ready: wait",
            live_in(Slot::A, vec![v1()], vec![green().desired(0)]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "0/0 healthy",
                until: deadline,
            },
        ),
        case(
            "a second before the deadline: still wait",
            live_in(Slot::A, vec![v1()], vec![one_unhealthy()]),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 unhealthy (Target.ResponseCodeMismatch)",
                until: deadline,
            },
        )
        .at(clock(TIMEOUT - secs(1))),
        case(
            "at the deadline: fail with the progress and AWS's reasons",
            live_in(Slot::A, vec![v1()], vec![one_unhealthy()]),
            image("v2", AMI_2),
            act(fail(
                "checkout-v2",
                "v2",
                &[
                    "not healthy in time: 1/2 healthy, 1 unhealthy (Target.ResponseCodeMismatch)",
                    "i-checkout-v2-1 unhealthy: Target.ResponseCodeMismatch: Health checks \
                     failed with these codes: [502]",
                ],
            )),
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
            act(fail(
                "checkout-v2",
                "v2",
                &["not healthy in time: 0/1 healthy, 1 unused (Target.NotRegistered)"],
            )),
        )
        .at(clock(TIMEOUT + secs(3600))),
        case(
            "the recorded deadline is honoured over the clock's: a re-run after a crash gets \
             no fresh timeout",
            live_in(
                Slot::A,
                vec![v1()],
                vec![one_unhealthy().health_deadline(t0() + secs(60))],
            ),
            image("v2", AMI_2),
            act(fail(
                "checkout-v2",
                "v2",
                &[
                    "not healthy in time: 1/2 healthy, 1 unhealthy (Target.ResponseCodeMismatch)",
                    "i-checkout-v2-1 unhealthy: Target.ResponseCodeMismatch: Health checks \
                     failed with these codes: [502]",
                ],
            )),
        )
        .at(clock(secs(60))),
        case(
            "before the recorded deadline: wait until it, not the clock's",
            live_in(
                Slot::A,
                vec![v1()],
                vec![one_unhealthy().health_deadline(t0() + secs(60))],
            ),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 unhealthy (Target.ResponseCodeMismatch)",
                until: t0() + secs(60),
            },
        ),
        case(
            "a later recorded deadline is honoured too: a revived release is not failed by \
             an old clock",
            live_in(
                Slot::A,
                vec![v1()],
                vec![one_unhealthy().health_deadline(t0() + TIMEOUT * 3)],
            ),
            image("v2", AMI_2),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 unhealthy (Target.ResponseCodeMismatch)",
                until: t0() + TIMEOUT * 3,
            },
        )
        .at(clock(TIMEOUT * 2)),
    ]);
}

#[test]
fn deploy_clears_the_idle_slot_of_other_releases_unless_one_is_being_deployed() {
    let v2 = || ours("v2", Phase::Live).image(AMI_2).serving(2);
    run_table(vec![
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
                    "release v3 is in progress in target group checkout-b (fleet checkout-v3, \
                     creating)",
                    "--release v3",
                    "greenlight abort",
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
            Expect::Refused(
                RefusalKind::Busy,
                &[
                    "release v3 is in progress",
                    "(fleet checkout-v3, provisioning)",
                ],
            ),
        )
        .at(clock(TIMEOUT * 3)),
        case(
            "another release at a step of its canary: busy, saying where it is",
            split_in(
                Slot::A,
                10,
                vec![v2()],
                vec![
                    ours("v3", Phase::Releasing)
                        .plan(&canary())
                        .at_step(1, t0())
                        .serving(2),
                ],
            ),
            image("v4", AMI_2),
            Expect::Refused(
                RefusalKind::Busy,
                &[
                    "release v3 is in progress in target group checkout-b (fleet checkout-v3, \
                     at step 1/4 with 10% of the traffic)",
                    "--release v3",
                ],
            ),
        ),
    ]);
}

#[test]
fn deploy_needs_attention_when_aws_is_in_a_state_it_will_not_guess_about() {
    let v1 = || ours("v1", Phase::Live).serving(2);
    let green = || ours("v2", Phase::Provisioning).image(AMI_2).serving(2);
    run_table(vec![
        case(
            "traffic split between the slots, and no release of a plan explains it",
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
    run_table(vec![
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
            "a warm release with another image is not restaged",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Live).serving(2)],
                vec![ours("v1", Phase::Warm).image(AMI_1).serving(2)],
            ),
            image("v1", AMI_2),
            Expect::Refused(RefusalKind::BadInput, &["release v1 already exists"]),
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
            live_done("v2", Slot::A),
        ),
        case(
            "done from slot b with the same version, whatever the idle slot holds",
            live_in(
                Slot::B,
                vec![fleet("stray").serving(1), fleet("stray-2")],
                vec![ours("v2", Phase::Live).version("3").serving(2)],
            ),
            version("v2", 3),
            live_done("v2", Slot::B),
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
            live_done("v2", Slot::A),
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
            live_done("checkout-blue", Slot::A),
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
            !matches!(decision, Decision::Done(_)),
            "{observed:?} decided {decision:?}"
        );
    }
    // The same fleet, ours: done. Keeps the test above from passing for another reason.
    let ours_now = billing.tag(tags::SERVICE, SERVICE);
    let observed = live_in(Slot::A, vec![ours_now], vec![]);
    assert_eq!(
        decide_deploy(&spec, &image("v2", AMI_2), &observed, early()),
        Decision::Done(Done::Live {
            release: "v2".to_owned(),
            slot: Slot::A,
        })
    );
}

/// A release first deployed with `--launch-template-version 3` and asked for again with an
/// image: the artifact differs, so the request is refused (a regression test of a fixed bug).
#[test]
fn bug_image_request_for_a_release_deployed_by_version_is_not_refused() {
    run_table(vec![case(
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
/// it) and asked for again with `--launch-template-version 3`: refused, because the version
/// tag is compared too (a regression test of a fixed bug).
#[test]
fn bug_version_request_for_a_release_deployed_by_image_is_not_refused() {
    run_table(vec![case(
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
/// is not managed by greenlight, so settle does not mark it warm (which would also write the
/// service tag), even on first contact with an unmanaged live fleet (a regression test).
#[test]
fn bug_idle_fleet_with_phase_but_no_service_is_adopted() {
    run_table(vec![case(
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
// The canary stage machine
// ---------------------------------------------------------------------------------------------

fn pause_at(step: u32, weight: u8, until: SystemTime) -> Expect {
    waits(
        WaitReason::Pause {
            release: "v2".to_owned(),
            step: StepNumber(step),
            of: 4,
            weight: pct(weight),
        },
        Some(until),
    )
}

fn gate_at(step: u32, of: u32, weight: u8) -> Expect {
    waits(
        WaitReason::Gate {
            release: "v2".to_owned(),
            step: StepNumber(step),
            of,
            weight: pct(weight),
        },
        None,
    )
}

#[test]
fn canary_moves_one_step_per_pass_through_its_pauses() {
    let at = |n: u32| releasing(&canary(), n).serving(2);
    let provisioning = || ours("v2", Phase::Provisioning).image(AMI_2).serving(2);
    run_table(vec![
        case(
            "provisioning and ready, the plan starts at a 0% gate: record step 1, move nothing",
            live_in(Slot::A, vec![stable()], vec![provisioning().plan(&gated())]),
            canary_v2(),
            act(Action::Begin {
                fleet: name("checkout-v2"),
                release: "v2".to_owned(),
                step: StepNumber(1),
                of: 2,
            }),
        ),
        case(
            "provisioning and ready: shift to step 1 of the canary (10%)",
            live_in(Slot::A, vec![stable()], vec![provisioning()]),
            canary_v2(),
            act(shift(Slot::A, 10, 1, 4, &seen_live(Slot::A))),
        ),
        case(
            "provisioning in slot a: shift from b",
            live_in(Slot::B, vec![provisioning()], vec![stable()]),
            canary_v2(),
            act(shift(Slot::B, 10, 1, 4, &seen_live(Slot::B))),
        ),
        case(
            "provisioning and not ready: wait for health, move nothing",
            live_in(
                Slot::A,
                vec![stable()],
                vec![
                    ours("v2", Phase::Provisioning)
                        .image(AMI_2)
                        .desired(2)
                        .healthy(1)
                        .registering(1),
                ],
            ),
            canary_v2(),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 initial (Elb.RegistrationInProgress)",
                until: t0() + TIMEOUT,
            },
        ),
        case(
            "step 1 (10%) with its bake under way: wait until step-at + 5m",
            split_in(Slot::A, 10, vec![stable()], vec![at(1)]),
            canary_v2(),
            pause_at(1, 10, t0() + BAKE),
        )
        .at(clock(mins(1))),
        case(
            "step 1 a second before its bake ends: still wait",
            split_in(Slot::A, 10, vec![stable()], vec![at(1)]),
            canary_v2(),
            pause_at(1, 10, t0() + BAKE),
        )
        .at(clock(BAKE - secs(1))),
        case(
            "step 1 once its bake is over: shift to step 2 (25%)",
            split_in(Slot::A, 10, vec![stable()], vec![at(1)]),
            canary_v2(),
            act(shift(Slot::A, 25, 2, 4, &seen_split(Slot::A, 10))),
        )
        .at(clock(BAKE)),
        case(
            "step 2 is a manual gate: wait for promote, however long",
            split_in(Slot::A, 25, vec![stable()], vec![at(2)]),
            canary_v2(),
            gate_at(2, 4, 25),
        )
        .at(clock(Duration::from_secs(86_400))),
        case(
            "step 2 promoted: shift to step 3 (50%)",
            split_in(Slot::A, 25, vec![stable()], vec![at(2).promoted("2")]),
            canary_v2(),
            act(shift(Slot::A, 50, 3, 4, &seen_split(Slot::A, 25))),
        ),
        case(
            "step 3 has no pause: flip (the last step)",
            split_in(Slot::A, 50, vec![stable()], vec![at(3)]),
            canary_v2(),
            act(flip_from(
                Slot::A,
                "checkout-v2",
                "v2",
                &seen_split(Slot::A, 50),
            )),
        ),
        case(
            "promoted full during step 1's bake: flip to the last step at once",
            split_in(Slot::A, 10, vec![stable()], vec![at(1).promoted("full")]),
            canary_v2(),
            act(flip_from(
                Slot::A,
                "checkout-v2",
                "v2",
                &seen_split(Slot::A, 10),
            )),
        )
        .at(clock(mins(1))),
        case(
            "promoted full while provisioning: flip straight to 100%",
            live_in(
                Slot::A,
                vec![stable()],
                vec![provisioning().promoted("full")],
            ),
            canary_v2(),
            act(flip_from(Slot::A, "checkout-v2", "v2", &seen_live(Slot::A))),
        ),
        case(
            "promoted full before a 0% gate is reached: begin first, the gate then ends",
            live_in(
                Slot::A,
                vec![stable()],
                vec![provisioning().plan(&gated()).promoted("full")],
            ),
            canary_v2(),
            act(Action::Begin {
                fleet: name("checkout-v2"),
                release: "v2".to_owned(),
                step: StepNumber(1),
                of: 2,
            }),
        ),
        case(
            "at the 0% gate of a blue/green release: wait for promote",
            live_in(
                Slot::A,
                vec![stable()],
                vec![releasing(&gated(), 1).serving(2)],
            ),
            with_plan(image("v2", AMI_2), gated()),
            gate_at(1, 2, 0),
        ),
        case(
            "the 0% gate promoted: flip",
            live_in(
                Slot::A,
                vec![stable()],
                vec![releasing(&gated(), 1).promoted("1").serving(2)],
            ),
            with_plan(image("v2", AMI_2), gated()),
            act(flip_from(Slot::A, "checkout-v2", "v2", &seen_live(Slot::A))),
        ),
        case(
            "the release keeps the plan it recorded whatever the request says now",
            split_in(Slot::A, 10, vec![stable()], vec![at(1)]),
            image("v2", AMI_2),
            pause_at(1, 10, t0() + BAKE),
        ),
        case(
            "the live fleet shrank: green keeps its capacity and goes on",
            split_in(
                Slot::A,
                10,
                vec![ours("v1", Phase::Live).image(AMI_1).serving(1)],
                vec![at(1)],
            ),
            canary_v2(),
            act(shift(Slot::A, 25, 2, 4, &seen_split(Slot::A, 10))),
        )
        .at(clock(BAKE)),
        case(
            "on slot a, stable in b: shift from b",
            split_in(Slot::B, 10, vec![at(1)], vec![stable()]),
            canary_v2(),
            act(shift(Slot::B, 25, 2, 4, &seen_split(Slot::B, 10))),
        )
        .at(clock(BAKE)),
    ]);
}

#[test]
fn canary_promote_ends_only_the_pause_it_names() {
    // 10% until promoted, 25% until promoted, then 100%.
    let two_gates = plan("canary 10@manual,25@manual,100");
    let at = |n: u32, promoted: &str| {
        let f = releasing(&two_gates, n).serving(2);
        if promoted.is_empty() {
            f
        } else {
            f.promoted(promoted)
        }
    };
    let request = with_plan(image("v2", AMI_2), two_gates.clone());
    let gate = |n: u32, weight: u8| gate_at(n, 3, weight);
    run_table(vec![
        case(
            "step 1 promoted: on to step 2",
            split_in(Slot::A, 10, vec![stable()], vec![at(1, "1")]),
            request.clone(),
            act(shift(Slot::A, 25, 2, 3, &seen_split(Slot::A, 10))),
        ),
        case(
            "at step 2, the promote of step 1 does not end step 2's gate",
            split_in(Slot::A, 25, vec![stable()], vec![at(2, "1")]),
            request.clone(),
            gate(2, 25),
        ),
        case(
            "at step 2, promoted 2: flip",
            split_in(Slot::A, 25, vec![stable()], vec![at(2, "2")]),
            request.clone(),
            act(flip_from(
                Slot::A,
                "checkout-v2",
                "v2",
                &seen_split(Slot::A, 25),
            )),
        ),
        case(
            "at step 1, not promoted: the gate holds",
            split_in(Slot::A, 10, vec![stable()], vec![at(1, "")]),
            request.clone(),
            gate(1, 10),
        ),
        case(
            "at step 2, promoted full: flip",
            split_in(Slot::A, 25, vec![stable()], vec![at(2, "full")]),
            request.clone(),
            act(flip_from(
                Slot::A,
                "checkout-v2",
                "v2",
                &seen_split(Slot::A, 25),
            )),
        ),
        case(
            "an unreadable promote tag ends nothing",
            split_in(Slot::A, 10, vec![stable()], vec![at(1, "soon")]),
            request,
            gate(1, 10),
        ),
    ]);
}

/// Release v2 of [`canary`] still tagged provisioning: its first shift may have landed.
fn first_shift_landed() -> F {
    ours("v2", Phase::Provisioning).image(AMI_2).plan(&canary())
}

#[test]
fn canary_heals_a_crash_and_refuses_splits_it_did_not_make() {
    let at = |n: u32| releasing(&canary(), n).serving(2);
    run_table(vec![
        case(
            "crash between route and tag: the router has step 2's weight, step 1 is recorded \
             → re-issue step 2, even mid-bake",
            split_in(Slot::A, 25, vec![stable()], vec![at(1)]),
            canary_v2(),
            act(shift(Slot::A, 25, 2, 4, &seen_split(Slot::A, 25))),
        )
        .at(clock(mins(1))),
        case(
            "crash between route and tag, from the 0% gate to the first weight",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![
                    releasing(&plan("canary 0@manual,10@5m,100"), 1)
                        .promoted("1")
                        .serving(2),
                ],
            ),
            with_plan(image("v2", AMI_2), plan("canary 0@manual,10@5m,100")),
            act(shift(Slot::A, 10, 2, 3, &seen_split(Slot::A, 10))),
        ),
        case(
            "the router has another step's weight, not the next one's: refused",
            split_in(Slot::A, 50, vec![stable()], vec![at(1)]),
            canary_v2(),
            needs_attention(&[
                "the router gives release v2 50% of the traffic, but it is at step 1/4 (10%)",
                "greenlight abort",
            ]),
        ),
        case(
            "the router has an earlier step's weight: refused, not shifted back up",
            split_in(Slot::A, 10, vec![stable()], vec![at(2)]),
            canary_v2(),
            needs_attention(&["gives release v2 10% of the traffic, but it is at step 2/4 (25%)"]),
        ),
        case(
            "a share that is no step of the plan: a split greenlight did not make",
            split_in(Slot::A, 40, vec![stable()], vec![at(1)]),
            canary_v2(),
            needs_attention(&[
                "splits traffic between both slots",
                "checkout-a weight 60",
                "checkout-b weight 40",
            ]),
        ),
        case(
            "a share that is not a whole percent (2:1): not greenlight's",
            observe(
                forwarding(&[(TG_A, 2), (TG_B, 1)]),
                vec![stable()],
                vec![at(1)],
            ),
            canary_v2(),
            needs_attention(&["splits traffic between both slots"]),
        ),
        case(
            "crash between the first shift's route and its tag (still provisioning): re-issue \
             step 1",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![first_shift_landed().serving(2)],
            ),
            canary_v2(),
            act(shift(Slot::A, 10, 1, 4, &seen_split(Slot::A, 10))),
        ),
        case(
            "the first shift landed, its record did not, and green lost every healthy target: \
             all traffic back",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![first_shift_landed().desired(2).failing(2)],
            ),
            canary_v2(),
            act(route_back(
                Slot::A,
                "release v2 took 10% of the traffic with no healthy target: 0/2 healthy, 2 \
                 unhealthy (Target.Timeout)",
                &seen_split(Slot::A, 10),
            )),
        ),
        case(
            "the first shift landed, its record did not, green partly unhealthy: wait until \
             its health deadline",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![first_shift_landed().desired(2).healthy(1).failing(1)],
            ),
            canary_v2(),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 unhealthy (Target.Timeout)",
                until: t0() + TIMEOUT,
            },
        ),
        case(
            "the first shift landed, its record did not, green partly unhealthy past its \
             deadline: all traffic back",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![first_shift_landed().desired(2).healthy(1).failing(1)],
            ),
            canary_v2(),
            act(route_back(
                Slot::A,
                "release v2 was not fully healthy again in time: 1/2 healthy, 1 unhealthy \
                 (Target.Timeout)",
                &seen_split(Slot::A, 10),
            )),
        )
        .at(clock(TIMEOUT)),
        case(
            "a split onto a provisioning release without a plan recorded: not greenlight's",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![ours("v2", Phase::Provisioning).image(AMI_2).serving(2)],
            ),
            canary_v2(),
            needs_attention(&["splits traffic between both slots"]),
        ),
        case(
            "a split onto a release still being created: not greenlight's",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![
                    ours("v2", Phase::Creating)
                        .image(AMI_2)
                        .plan(&canary())
                        .desired(0),
                ],
            ),
            canary_v2(),
            needs_attention(&["splits traffic between both slots"]),
        ),
        case(
            "a split onto a releasing fleet without a readable plan: not greenlight's",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![at(1).tag(tags::PLAN, "canary 10,50")],
            ),
            canary_v2(),
            needs_attention(&["splits traffic between both slots"]),
        ),
        case(
            "a split onto another service's releasing fleet: not greenlight's",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![at(1).tag(tags::SERVICE, "billing")],
            ),
            canary_v2(),
            needs_attention(&["splits traffic between both slots"]),
        ),
        case(
            "a split onto a warm fleet (a hand-made canary of the previous release)",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![ours("v0", Phase::Warm).plan(&canary()).serving(2)],
            ),
            canary_v2(),
            needs_attention(&["splits traffic between both slots"]),
        ),
        case(
            "a releasing fleet that records no step: refused",
            live_in(
                Slot::A,
                vec![stable()],
                vec![
                    ours("v2", Phase::Releasing)
                        .image(AMI_2)
                        .plan(&canary())
                        .serving(2),
                ],
            ),
            canary_v2(),
            needs_attention(&["release v2 is releasing but records no step of its plan"]),
        ),
        case(
            "a releasing fleet at a step its plan does not have: refused",
            live_in(Slot::A, vec![stable()], vec![at(9)]),
            canary_v2(),
            needs_attention(&["records no step of its plan"]),
        ),
    ]);
}

#[test]
fn canary_routes_back_when_green_fails_and_follows_the_live_fleet_s_capacity() {
    let at = |n: u32| releasing(&canary(), n);
    let gate = || releasing(&gated(), 1);
    run_table(vec![
        case(
            "green loses every healthy target while taking 10%: all traffic back at once",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![at(1).desired(2).failing(2)],
            ),
            canary_v2(),
            act(route_back(
                Slot::A,
                "release v2 took 10% of the traffic with no healthy target: 0/2 healthy, 2 \
                 unhealthy (Target.Timeout)",
                &seen_split(Slot::A, 10),
            )),
        ),
        case(
            "green scaled to zero while taking 25%: all traffic back",
            split_in(Slot::A, 25, vec![stable()], vec![at(2).desired(0)]),
            canary_v2(),
            act(route_back(
                Slot::A,
                "release v2 took 25% of the traffic with no healthy target: 0/0 healthy",
                &seen_split(Slot::A, 25),
            )),
        ),
        case(
            "partly unhealthy at 10%: hold the weight until step-at + the health timeout",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![at(1).desired(2).healthy(1).failing(1)],
            ),
            canary_v2(),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "1/2 healthy, 1 unhealthy (Target.Timeout)",
                until: t0() + TIMEOUT,
            },
        )
        .at(clock(TIMEOUT - secs(1))),
        case(
            "partly unhealthy at 10% at step-at + the health timeout: all traffic back",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![at(1).desired(2).healthy(1).failing(1)],
            ),
            canary_v2(),
            act(route_back(
                Slot::A,
                "release v2 was not fully healthy again in time: 1/2 healthy, \
                 1 unhealthy (Target.Timeout)",
                &seen_split(Slot::A, 10),
            )),
        )
        .at(clock(TIMEOUT)),
        case(
            "at a 0% gate with no healthy target: nothing to route back, wait for health",
            live_in(Slot::A, vec![stable()], vec![gate().desired(2).failing(2)]),
            with_plan(image("v2", AMI_2), gated()),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "0/2 healthy, 2 unhealthy (Target.Timeout)",
                until: t0() + TIMEOUT,
            },
        ),
        case(
            "at a 0% gate, unhealthy past the health timeout: fail the release, nothing moved",
            live_in(Slot::A, vec![stable()], vec![gate().desired(2).failing(2)]),
            with_plan(image("v2", AMI_2), gated()),
            act(fail(
                "checkout-v2",
                "v2",
                &["release v2 was not fully healthy again in time: 0/2 \
                   healthy, 2 unhealthy (Target.Timeout)"],
            )),
        )
        .at(clock(TIMEOUT)),
        case(
            "green with no healthy target and a stable release that cannot take it all back: \
             refused",
            split_in(
                Slot::A,
                10,
                vec![ours("v1", Phase::Live).desired(2).healthy(1).registering(1)],
                vec![at(1).desired(2).failing(2)],
            ),
            canary_v2(),
            needs_attention(&[
                "cannot return traffic to release v1: it is not fully healthy (1/2 healthy",
                "release v2 keeps 10% of the traffic",
            ]),
        ),
        case(
            "the live fleet grew to 4: green follows before anything else",
            split_in(
                Slot::A,
                10,
                vec![ours("v1", Phase::Live).image(AMI_1).serving(4)],
                vec![at(1).capacity(2, 3, 2).healthy(2)],
            ),
            canary_v2(),
            act(Action::MatchCapacity {
                fleet: name("checkout-v2"),
                capacity: Capacity {
                    min: 2,
                    max: 4,
                    desired: 4,
                },
            }),
        )
        .at(clock(BAKE)),
        case(
            "the live fleet grew while green's max is already larger: max kept",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Live).image(AMI_1).serving(3)],
                vec![gate().capacity(1, 8, 2).healthy(2)],
            ),
            with_plan(image("v2", AMI_2), gated()),
            act(Action::MatchCapacity {
                fleet: name("checkout-v2"),
                capacity: Capacity {
                    min: 1,
                    max: 8,
                    desired: 3,
                },
            }),
        ),
        case(
            "green grown to match, its new instances still registering: wait for health",
            split_in(
                Slot::A,
                10,
                vec![ours("v1", Phase::Live).image(AMI_1).serving(4)],
                vec![at(1).capacity(2, 4, 4).healthy(2).registering(2)],
            ),
            canary_v2(),
            Expect::Waits {
                fleet: "checkout-v2",
                progress: "2/4 healthy, 2 initial (Elb.RegistrationInProgress)",
                until: t0() + TIMEOUT,
            },
        )
        .at(clock(BAKE)),
    ]);
}

#[test]
fn canary_stops_when_an_abort_is_requested() {
    let request = "by bob@ci at 2026-11-25T17:00:00Z";
    let reason = "aborted by bob@ci at 2026-11-25T17:00:00Z";
    let at = |n: u32| releasing(&canary(), n).abort_requested(request).serving(2);
    run_table(vec![
        case(
            "abort requested at 10%: all traffic back first",
            split_in(Slot::A, 10, vec![stable()], vec![at(1)]),
            canary_v2(),
            act(route_back(Slot::A, reason, &seen_split(Slot::A, 10))),
        ),
        case(
            "abort requested, the traffic is back: fail the release",
            live_in(Slot::A, vec![stable()], vec![at(1)]),
            canary_v2(),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        case(
            "abort requested while provisioning: fail the release",
            live_in(
                Slot::A,
                vec![stable()],
                vec![
                    ours("v2", Phase::Provisioning)
                        .image(AMI_2)
                        .abort_requested(request)
                        .desired(2),
                ],
            ),
            canary_v2(),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        case(
            "abort requested while creating: not configured, failed",
            live_in(
                Slot::A,
                vec![stable()],
                vec![
                    ours("v2", Phase::Creating)
                        .image(AMI_2)
                        .abort_requested(request)
                        .desired(0),
                ],
            ),
            canary_v2(),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        case(
            "abort requested while creating, router not joined yet: failed, not joined",
            observe(
                forwarding(&[(TG_A, 1)]),
                vec![stable()],
                vec![
                    ours("v2", Phase::Creating)
                        .image(AMI_2)
                        .abort_requested(request)
                        .desired(0),
                ],
            ),
            canary_v2(),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        case(
            "abort requested at a gate that was promoted: the abort wins",
            split_in(Slot::A, 25, vec![stable()], vec![at(2).promoted("full")]),
            canary_v2(),
            act(route_back(Slot::A, reason, &seen_split(Slot::A, 25))),
        ),
    ]);
}

#[test]
fn canary_router_writes_set_stickiness_only_while_traffic_is_split() {
    let spec = sticky_spec();
    let sticky = |action: Action, stickiness: Stickiness| match action {
        Action::Shift {
            verdict: None,
            fleet,
            release,
            to,
            from,
            weight,
            step,
            of,
            write,
        } => Action::Shift {
            verdict: None,
            fleet,
            release,
            to,
            from,
            weight,
            step,
            of,
            write: RouterWrite {
                stickiness,
                ..write
            },
        },
        Action::Flip {
            verdict: None,
            to,
            from,
            fleet,
            release,
            write,
        } => Action::Flip {
            verdict: None,
            to,
            from,
            fleet,
            release,
            write: RouterWrite {
                stickiness,
                ..write
            },
        },
        Action::RouteBack {
            to,
            from,
            fleet,
            release,
            reason,
            write,
        } => Action::RouteBack {
            to,
            from,
            fleet,
            release,
            reason,
            write: RouterWrite {
                stickiness,
                ..write
            },
        },
        other => other,
    };
    let at = |n: u32| releasing(&canary(), n).serving(2);
    run_table_with(
        &spec,
        vec![
            case(
                "a shift turns stickiness on for the configured hour",
                split_in(Slot::A, 10, vec![stable()], vec![at(1)]),
                canary_v2(),
                act(sticky(
                    shift(Slot::A, 25, 2, 4, &seen_split(Slot::A, 10)),
                    Stickiness::On(3600),
                )),
            )
            .at(clock(BAKE)),
            case(
                "the flip turns it off, so every client moves",
                split_in(Slot::A, 50, vec![stable()], vec![at(3)]),
                canary_v2(),
                act(sticky(
                    flip_from(Slot::A, "checkout-v2", "v2", &seen_split(Slot::A, 50)),
                    Stickiness::Off,
                )),
            ),
            case(
                "routing back turns it off",
                split_in(
                    Slot::A,
                    10,
                    vec![stable()],
                    vec![releasing(&canary(), 1).desired(2).failing(2)],
                ),
                canary_v2(),
                act(sticky(
                    route_back(
                        Slot::A,
                        "release v2 took 10% of the traffic with no healthy target: 0/2 \
                         healthy, 2 unhealthy (Target.Timeout)",
                        &seen_split(Slot::A, 10),
                    ),
                    Stickiness::Off,
                )),
            ),
            case(
                "joining the router leaves it alone",
                observe(forwarding(&[(TG_A, 1)]), vec![stable()], vec![]),
                canary_v2(),
                act(Action::JoinRouter {
                    target_group: arn(TG_B),
                    live: arn(TG_A),
                    write: write(&[(TG_A, 1)], &[(TG_B, 0), (TG_A, 100)]),
                }),
            ),
            rollback_case(
                "a rollback's flip turns it off",
                live_in(
                    Slot::A,
                    vec![ours("v2", Phase::Live).serving(2)],
                    vec![ours("v1", Phase::Warm).serving(2)],
                ),
                None,
                act(sticky(
                    flip_from(Slot::A, "checkout-v1", "v1", &seen_live(Slot::A)),
                    Stickiness::Off,
                )),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Rollback tables
// ---------------------------------------------------------------------------------------------

#[test]
fn rollback_flips_to_the_warm_ready_previous_release_or_says_why_not() {
    let v2 = || ours("v2", Phase::Live).serving(2);
    run_table(vec![
        rollback_case(
            "the warm previous release is ready",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            None,
            act(flip_from(Slot::A, "checkout-v1", "v1", &seen_live(Slot::A))),
        ),
        rollback_case(
            "the warm previous release is ready in slot a",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Warm).serving(3)],
                vec![v2()],
            ),
            None,
            act(flip_from(Slot::B, "checkout-v1", "v1", &seen_live(Slot::B))),
        ),
        rollback_case(
            "an unsettled deploy is finished first: the previous release is marked warm, not \
             flipped to",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Provisioning).serving(2)],
                vec![ours("v1", Phase::Live).serving(2)],
            ),
            None,
            mark_warm("checkout-v1", "v1", false),
        ),
        rollback_case(
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
            None,
            act(flip_from(
                Slot::A,
                "checkout-blue",
                "checkout-blue",
                &seen_live(Slot::A),
            )),
        ),
        rollback_case(
            "the idle slot is empty",
            live_in(Slot::A, vec![v2()], vec![]),
            None,
            needs_attention(&[
                "nothing to roll back to: no fleet is attached to target group checkout-b",
                "deploy the previous build as a new release",
            ]),
        ),
        rollback_case(
            "the idle slot's only fleet is being deleted",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v1", Phase::Warm).serving(2).deleting()],
            ),
            None,
            needs_attention(&["nothing to roll back to"]),
        ),
        rollback_case(
            "the previous release is not ready",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v1", Phase::Warm).desired(2).healthy(1).registering(1)],
            ),
            None,
            needs_attention(&[
                "previous release v1 (fleet checkout-v1) is not warm and healthy: 1/2 healthy, \
                 1 initial (Elb.RegistrationInProgress)",
                "would drop requests",
            ]),
        ),
        rollback_case(
            "the previous release was scaled to zero",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Warm).desired(0)],
                vec![v2()],
            ),
            None,
            needs_attention(&["is not warm and healthy: 0/0 healthy"]),
        ),
        rollback_case(
            "the idle release failed (or was aborted): the live release is where a rollback \
             goes, nothing to do",
            live_in(
                Slot::A,
                vec![v2()],
                vec![
                    ours("v3", Phase::Failed)
                        .tag(tags::FAILURE, "not healthy in time: 0/2 healthy")
                        .serving(2),
                ],
            ),
            None,
            done(Done::AlreadyRolledBack {
                release: "v2".to_owned(),
                slot: Slot::A,
                from: "failed release v3".to_owned(),
            }),
        ),
        rollback_case(
            "--to the failed idle release, though its instances look healthy: refused",
            live_in(
                Slot::A,
                vec![v2()],
                vec![
                    ours("v3", Phase::Failed)
                        .tag(tags::FAILURE, "not healthy in time: 0/2 healthy")
                        .serving(2),
                ],
            ),
            Some("v3"),
            needs_attention(&[
                "release v3, which failed (not healthy in time: 0/2 healthy)",
                "will not route traffic to it",
            ]),
        ),
        rollback_case(
            "--to the failed idle release without a recorded reason: refused",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Failed).desired(0)],
            ),
            Some("v3"),
            needs_attention(&["which failed (no reason recorded)"]),
        ),
        rollback_case(
            "first contact, nothing warm: the untagged live fleet is not adopted by a rollback",
            live_in(Slot::A, vec![fleet("checkout-blue").serving(2)], vec![]),
            None,
            needs_attention(&["nothing to roll back to"]),
        ),
        rollback_case(
            "first contact, an untagged fleet in the idle slot: neither is adopted",
            live_in(
                Slot::A,
                vec![fleet("checkout-blue").serving(2)],
                vec![fleet("checkout-old").serving(2)],
            ),
            None,
            needs_attention(&[
                "fleet checkout-old in target group checkout-b is not a previous release",
            ]),
        ),
        rollback_case(
            "a release still provisioning, though ready, is aborted, never flipped to",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Provisioning).serving(2)],
            ),
            None,
            act(fail(
                "checkout-v3",
                "v3",
                &["rolled back by alice while in progress"],
            )),
        ),
        rollback_case(
            "a release still being created is aborted",
            live_in(
                Slot::A,
                vec![v2()],
                vec![ours("v3", Phase::Creating).desired(0)],
            ),
            None,
            act(fail(
                "checkout-v3",
                "v3",
                &["rolled back by alice while in progress"],
            )),
        ),
        rollback_case(
            "an untagged fleet sits in the idle slot, ready",
            live_in(Slot::A, vec![v2()], vec![fleet("checkout-blue").serving(2)]),
            None,
            needs_attention(&[
                "fleet checkout-blue in target group checkout-b is not a previous release of \
                 checkout",
            ]),
        ),
        rollback_case(
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
            None,
            needs_attention(&[
                "fleet checkout-v1 in target group checkout-b is not a previous release",
            ]),
        ),
        rollback_case(
            "two fleets in the idle slot",
            live_in(
                Slot::A,
                vec![v2()],
                vec![
                    ours("v1", Phase::Warm).serving(2),
                    ours("v0", Phase::Warm).serving(2),
                ],
            ),
            None,
            needs_attention(&["target group checkout-b has 2 fleets attached"]),
        ),
        rollback_case(
            "traffic is split by hand",
            observe(
                forwarding(&[(TG_A, 50), (TG_B, 50)]),
                vec![v2()],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            None,
            needs_attention(&["splits traffic"]),
        ),
        rollback_case(
            "the live slot is empty",
            live_in(Slot::A, vec![], vec![ours("v1", Phase::Warm).serving(2)]),
            None,
            needs_attention(&["no fleet is attached to the live target group checkout-a"]),
        ),
    ]);
}

#[test]
fn rollback_never_toggles_back_and_finishes_what_it_started() {
    let v1_live = || ours("v1", Phase::Live).serving(2);
    let v2_left = || ours("v2", Phase::Warm).image(AMI_2).rolled_back_at(t0());
    let v2_rolled_back = || v2_left().serving(2);
    run_table(vec![
        rollback_case(
            "a second rollback: the previous release was rolled back from, so nothing to do",
            live_in(Slot::A, vec![v1_live()], vec![v2_rolled_back()]),
            None,
            done(Done::AlreadyRolledBack {
                release: "v1".to_owned(),
                slot: Slot::A,
                from: format!("v2 at {}", tags::timestamp(t0())),
            }),
        ),
        rollback_case(
            "a second rollback, the release rolled back from since scaled down: still done",
            live_in(
                Slot::A,
                vec![v1_live()],
                vec![v2_left().desired(2).healthy(1)],
            ),
            None,
            done(Done::AlreadyRolledBack {
                release: "v1".to_owned(),
                slot: Slot::A,
                from: format!("v2 at {}", tags::timestamp(t0())),
            }),
        ),
        rollback_case(
            "--to the live release: done",
            live_in(Slot::A, vec![v1_live()], vec![v2_rolled_back()]),
            Some("v1"),
            live_done("v1", Slot::A),
        ),
        rollback_case(
            "--to the live release, nothing warm: done",
            live_in(Slot::B, vec![], vec![v1_live()]),
            Some("v1"),
            live_done("v1", Slot::B),
        ),
        rollback_case(
            "--to the release rolled back from: flip to it",
            live_in(Slot::A, vec![v1_live()], vec![v2_rolled_back()]),
            Some("v2"),
            act(flip_from(Slot::A, "checkout-v2", "v2", &seen_live(Slot::A))),
        ),
        rollback_case(
            "--to the warm previous release: flip to it",
            live_in(
                Slot::A,
                vec![ours("v2", Phase::Live).serving(2)],
                vec![ours("v1", Phase::Warm).serving(2)],
            ),
            Some("v1"),
            act(flip_from(Slot::A, "checkout-v1", "v1", &seen_live(Slot::A))),
        ),
        rollback_case(
            "--to a release that is not warm: refused, naming what is",
            live_in(Slot::A, vec![v1_live()], vec![v2_rolled_back()]),
            Some("v9"),
            needs_attention(&[
                "release v9 is not warm; target group checkout-b holds release v2 (warm), and \
                 release v1 is live",
            ]),
        ),
        rollback_case(
            "--to a release when nothing is warm: refused",
            live_in(Slot::A, vec![v1_live()], vec![]),
            Some("v9"),
            needs_attention(&[
                "release v9 is not warm: no fleet is attached to target group checkout-b \
                 (release v1 is live)",
            ]),
        ),
        rollback_case(
            "--to the failed release: refused",
            live_in(
                Slot::A,
                vec![v1_live()],
                vec![ours("v3", Phase::Failed).desired(0)],
            ),
            Some("v3"),
            needs_attention(&["release v3, which failed"]),
        ),
        rollback_case(
            "interrupted after the flip, before MarkWarm: the release left is marked warm and \
             rolled back, never flipped back to",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
            ),
            None,
            mark_warm("checkout-v2", "v2", true),
        ),
        rollback_case(
            "interrupted after MarkWarm, before MarkLive: the release rolled back to is marked \
             live",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![v2_rolled_back()],
            ),
            None,
            mark_live("checkout-v1", "v1"),
        ),
        rollback_case(
            "interrupted, and asked again with --to the release left: still finished first",
            live_in(
                Slot::A,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
            ),
            Some("v2"),
            mark_warm("checkout-v2", "v2", true),
        ),
        rollback_case(
            "a rollback during a canary routes all traffic back",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![releasing(&canary(), 1).serving(2)],
            ),
            None,
            act(route_back(
                Slot::A,
                "rolled back by alice while in progress",
                &seen_split(Slot::A, 10),
            )),
        ),
        rollback_case(
            "a rollback at a canary's 0% gate fails the release",
            live_in(
                Slot::A,
                vec![stable()],
                vec![releasing(&gated(), 1).serving(2)],
            ),
            None,
            act(fail(
                "checkout-v2",
                "v2",
                &["rolled back by alice while in progress"],
            )),
        ),
        rollback_case(
            "a rollback during a canary whose stable release is unhealthy: refused",
            split_in(
                Slot::A,
                25,
                vec![ours("v1", Phase::Live).desired(2).healthy(1).registering(1)],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            None,
            needs_attention(&["cannot return traffic to release v1"]),
        ),
        rollback_case(
            "after a canary's last step landed: settled first, as a deploy, not a rollback",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![releasing(&canary(), 3).serving(2)],
            ),
            None,
            mark_warm("checkout-v1", "v1", false),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Abort, promote and resume tables
// ---------------------------------------------------------------------------------------------

#[test]
fn abort_stops_a_release_at_every_stage() {
    let reason = &format!("aborted by {BY} at {}", tags::timestamp(early().now));
    run_table(vec![
        abort_case(
            "while creating: fail it",
            live_in(
                Slot::A,
                vec![stable()],
                vec![ours("v2", Phase::Creating).desired(0)],
            ),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        abort_case(
            "while provisioning: fail it",
            live_in(
                Slot::A,
                vec![stable()],
                vec![ours("v2", Phase::Provisioning).desired(2).registering(2)],
            ),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        abort_case(
            "at a 0% gate: fail it, nothing to route back",
            live_in(
                Slot::A,
                vec![stable()],
                vec![releasing(&gated(), 1).serving(2)],
            ),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        abort_case(
            "mid-canary with 25% of the traffic: all traffic back first",
            split_in(
                Slot::A,
                25,
                vec![stable()],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            act(route_back(Slot::A, reason, &seen_split(Slot::A, 25))),
        ),
        abort_case(
            "mid-canary on slot a: back to b",
            split_in(
                Slot::B,
                10,
                vec![releasing(&canary(), 1).serving(2)],
                vec![stable()],
            ),
            act(route_back(Slot::B, reason, &seen_split(Slot::B, 10))),
        ),
        abort_case(
            "mid-canary, the stable release not fully healthy: refused, traffic stays",
            split_in(
                Slot::A,
                25,
                vec![ours("v1", Phase::Live).desired(2).healthy(1).failing(1)],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            needs_attention(&[
                "cannot return traffic to release v1: it is not fully healthy (1/2 healthy, 1 \
                 unhealthy (Target.Timeout)); release v2 keeps 25% of the traffic",
            ]),
        ),
        abort_case(
            "mid-canary, the traffic already back (routed back, not failed yet): fail it",
            live_in(
                Slot::A,
                vec![stable()],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            act(fail("checkout-v2", "v2", &[reason])),
        ),
        abort_case(
            "the last step landed, unsettled: settle it (the previous release is warm)",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![releasing(&canary(), 3).serving(2)],
            ),
            mark_warm("checkout-v1", "v1", false),
        ),
        abort_case(
            "the last step landed, half settled: settle it (the new release is live)",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![releasing(&canary(), 3).serving(2)],
            ),
            mark_live("checkout-v2", "v2"),
        ),
        abort_case(
            "the last step landed and settled: nothing in progress, rollback is the way back",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Warm).serving(2)],
                vec![ours("v2", Phase::Live).serving(2)],
            ),
            done(Done::NothingInProgress {
                release: "v2".to_owned(),
                slot: Slot::B,
            }),
        ),
        abort_case(
            "the release already failed: nothing in progress",
            live_in(
                Slot::A,
                vec![stable()],
                vec![ours("v2", Phase::Failed).desired(0)],
            ),
            done(Done::NothingInProgress {
                release: "v1".to_owned(),
                slot: Slot::A,
            }),
        ),
        abort_case(
            "first contact: the untagged live fleet is not adopted, nothing in progress",
            live_in(Slot::B, vec![], vec![fleet("checkout-blue").serving(2)]),
            done(Done::NothingInProgress {
                release: "checkout-blue".to_owned(),
                slot: Slot::B,
            }),
        ),
        abort_case(
            "the first shift landed and its record did not (still provisioning): all traffic \
             back",
            split_in(
                Slot::A,
                10,
                vec![stable()],
                vec![first_shift_landed().serving(2)],
            ),
            act(route_back(Slot::A, reason, &seen_split(Slot::A, 10))),
        ),
        abort_case(
            "nothing in the idle slot: nothing in progress",
            live_in(Slot::A, vec![stable()], vec![]),
            done(Done::NothingInProgress {
                release: "v1".to_owned(),
                slot: Slot::A,
            }),
        ),
        abort_case(
            "another service's release being created in the idle slot is not aborted",
            live_in(
                Slot::A,
                vec![stable()],
                vec![
                    fleet("billing-v9")
                        .release("v9", Phase::Creating)
                        .tag(tags::SERVICE, "billing")
                        .desired(0),
                ],
            ),
            done(Done::NothingInProgress {
                release: "v1".to_owned(),
                slot: Slot::A,
            }),
        ),
        abort_case(
            "a split greenlight did not make: refused",
            observe(
                forwarding(&[(TG_A, 70), (TG_B, 30)]),
                vec![stable()],
                vec![releasing(&canary(), 1).serving(2)],
            ),
            needs_attention(&["splits traffic between both slots"]),
        ),
    ]);
}

#[test]
fn promote_names_the_pause_it_ends_or_says_why_there_is_none() {
    type PromoteExpect = Result<PromoteRequest, (RefusalKind, &'static [&'static str])>;
    let request = |promoted: Promoted, step: Option<u32>, of: u32| -> PromoteExpect {
        Ok(PromoteRequest {
            fleet: name("checkout-v2"),
            release: "v2".to_owned(),
            promoted,
            step: step.map(StepNumber),
            of,
        })
    };
    let provisioning = || {
        ours("v2", Phase::Provisioning)
            .plan(&canary())
            .desired(2)
            .healthy(1)
            .registering(1)
    };
    let cases: Vec<(&str, Observed, bool, PromoteExpect)> = vec![
        (
            "nothing in progress",
            live_in(
                Slot::A,
                vec![stable()],
                vec![ours("v0", Phase::Warm).serving(2)],
            ),
            false,
            Err((
                RefusalKind::NeedsAttention,
                &["nothing to promote: no release is in progress (release v1 is live)"],
            )),
        ),
        (
            "nothing in progress, --full",
            live_in(Slot::A, vec![stable()], vec![]),
            true,
            Err((RefusalKind::NeedsAttention, &["nothing to promote"])),
        ),
        (
            "provisioning: not at a pause yet",
            live_in(Slot::A, vec![stable()], vec![provisioning()]),
            false,
            Err((
                RefusalKind::NeedsAttention,
                &[
                    "release v2 is not at a pause yet (provisioning: 1/2 healthy",
                    "--full",
                ],
            )),
        ),
        (
            "creating: not at a pause yet",
            live_in(
                Slot::A,
                vec![stable()],
                vec![ours("v2", Phase::Creating).desired(0)],
            ),
            false,
            Err((
                RefusalKind::NeedsAttention,
                &["release v2 is not at a pause yet (creating"],
            )),
        ),
        (
            "provisioning, --full: every pause ends",
            live_in(Slot::A, vec![stable()], vec![provisioning()]),
            true,
            request(Promoted::Full, None, 4),
        ),
        (
            "at step 2 of 4: its pause ends",
            split_in(
                Slot::A,
                25,
                vec![stable()],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            false,
            request(Promoted::Step(StepNumber(2)), Some(2), 4),
        ),
        (
            "at step 2 of 4, --full",
            split_in(
                Slot::A,
                25,
                vec![stable()],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            true,
            request(Promoted::Full, None, 4),
        ),
        (
            "at the 0% gate of a blue/green release",
            live_in(
                Slot::A,
                vec![stable()],
                vec![releasing(&gated(), 1).serving(2)],
            ),
            false,
            request(Promoted::Step(StepNumber(1)), Some(1), 2),
        ),
        (
            "being aborted: nothing to promote",
            split_in(
                Slot::A,
                25,
                vec![stable()],
                vec![
                    releasing(&canary(), 2)
                        .abort_requested("by bob@ci at 2026-11-25T17:00:00Z")
                        .serving(2),
                ],
            ),
            true,
            Err((
                RefusalKind::ReleaseFailed,
                &["release v2 is being aborted (by bob@ci at 2026-11-25T17:00:00Z)"],
            )),
        ),
        (
            "a split greenlight did not make",
            split_in(
                Slot::A,
                30,
                vec![stable()],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            false,
            Err((
                RefusalKind::NeedsAttention,
                &["splits traffic between both slots"],
            )),
        ),
    ];
    let spec = spec();
    for (name, observed, full, expected) in cases {
        match (decide_promote(&spec, &observed, full), expected) {
            (Ok(got), Ok(expected)) => assert_eq!(got, expected, "{name}"),
            (Err(refusal), Err((kind, parts))) => check_refusal(name, &refusal, kind, parts),
            (got, expected) => panic!("{name}: expected {expected:?}, decided {got:?}"),
        }
    }
}

#[test]
fn resume_drives_the_release_in_progress_without_a_request() {
    run_table(vec![
        resume_case(
            "at a gate: wait for promote",
            split_in(
                Slot::A,
                25,
                vec![stable()],
                vec![releasing(&canary(), 2).serving(2)],
            ),
            gate_at(2, 4, 25),
        ),
        resume_case(
            "at a promoted gate: on to the next step",
            split_in(
                Slot::A,
                25,
                vec![stable()],
                vec![releasing(&canary(), 2).promoted("2").serving(2)],
            ),
            act(shift(Slot::A, 50, 3, 4, &seen_split(Slot::A, 25))),
        ),
        resume_case(
            "provisioning and promoted full: flip",
            live_in(
                Slot::A,
                vec![stable()],
                vec![
                    ours("v2", Phase::Provisioning)
                        .plan(&canary())
                        .promoted("full")
                        .serving(2),
                ],
            ),
            act(flip_from(Slot::A, "checkout-v2", "v2", &seen_live(Slot::A))),
        ),
        resume_case(
            "nothing in progress: the live release is done",
            live_in(Slot::A, vec![stable()], vec![]),
            live_done("v1", Slot::A),
        ),
        resume_case(
            "the last step landed: settle it first",
            live_in(
                Slot::B,
                vec![ours("v1", Phase::Live).serving(2)],
                vec![releasing(&canary(), 3).serving(2)],
            ),
            mark_warm("checkout-v1", "v1", false),
        ),
        resume_case(
            "still being created: only its deploy can go on",
            live_in(
                Slot::A,
                vec![stable()],
                vec![ours("v2", Phase::Creating).plan(&canary()).desired(0)],
            ),
            needs_attention(&[
                "release v2 is still being created; resume it by re-running its deploy",
            ]),
        ),
        resume_case(
            "being created and aborted: failed",
            live_in(
                Slot::A,
                vec![stable()],
                vec![
                    ours("v2", Phase::Creating)
                        .abort_requested("by bob")
                        .desired(0),
                ],
            ),
            act(fail("checkout-v2", "v2", &["aborted by bob"])),
        ),
        resume_case(
            "a release with no plan recorded cannot be driven without a request",
            live_in(
                Slot::A,
                vec![stable()],
                vec![ours("v2", Phase::Provisioning).serving(2)],
            ),
            needs_attention(&[
                "release v2 (fleet checkout-v2) records no plan (tag greenlight:plan)",
                "greenlight abort",
            ]),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Walks: a release decided and applied pass after pass
// ---------------------------------------------------------------------------------------------

fn fleet_mut<'a>(observed: &'a mut Observed, fleet: &FleetName) -> &'a mut FleetSummary {
    observed
        .slots
        .iter_mut()
        .flat_map(|slot| slot.fleets.iter_mut())
        .find(|f| &f.name == fleet)
        .unwrap_or_else(|| panic!("no fleet {fleet} to apply to"))
}

fn set_tags(summary: &mut FleetSummary, set: &[(&str, String)], remove: &[&str]) {
    for key in remove {
        summary.tags.remove(*key);
    }
    for (key, value) in set {
        summary.tags.insert((*key).to_owned(), value.clone());
    }
}

/// What applying `action` at `now` does to what greenlight observes next: the tests' own
/// model of the router writes and tag writes of `engine::execute`, enough to walk a release
/// from pass to pass.
fn applied(mut observed: Observed, action: &Action, now: SystemTime) -> Observed {
    let in_progress_tags = [
        tags::STEP,
        tags::STEP_AT,
        tags::PROMOTED,
        tags::ABORT,
        tags::HEALTH_DEADLINE,
    ];
    match action {
        Action::JoinRouter { write, .. } | Action::Flip { write, .. } => {
            observed.router.action = RouterAction::Forward {
                forwards: write.forwards.clone(),
            };
        }
        // Verification is off in these tests' spec: nothing decides these.
        Action::OpenTestRule { .. }
        | Action::CloseTestRule { .. }
        | Action::PointTestListener { .. }
        | Action::RunHooks { .. }
        | Action::RecordStop { .. } => unreachable!("no verification configured: {action:?}"),
        Action::RouteBack {
            fleet,
            reason,
            write,
            ..
        } => {
            // The reason is recorded on green before the traffic moves back.
            set_tags(
                fleet_mut(&mut observed, fleet),
                &[(tags::ABORT, reason.to_tag())],
                &[],
            );
            observed.router.action = RouterAction::Forward {
                forwards: write.forwards.clone(),
            };
        }
        Action::Shift {
            fleet, step, write, ..
        } => {
            observed.router.action = RouterAction::Forward {
                forwards: write.forwards.clone(),
            };
            set_tags(
                fleet_mut(&mut observed, fleet),
                &[
                    (tags::PHASE, "releasing".to_owned()),
                    (tags::STEP, step.to_string()),
                    (tags::STEP_AT, tags::timestamp(now)),
                ],
                &[],
            );
        }
        Action::Begin { fleet, step, .. } => set_tags(
            fleet_mut(&mut observed, fleet),
            &[
                (tags::PHASE, "releasing".to_owned()),
                (tags::STEP, step.to_string()),
                (tags::STEP_AT, tags::timestamp(now)),
            ],
            &[],
        ),
        Action::MarkWarm {
            fleet,
            release,
            until,
            suspend,
            rolled_back,
        } => {
            let mut set = vec![
                (tags::SERVICE, SERVICE.to_owned()),
                (tags::RELEASE, release.clone()),
                (tags::PHASE, "warm".to_owned()),
                (tags::WARM_UNTIL, tags::timestamp(*until)),
                (tags::SUSPENDED, suspend.join(",")),
            ];
            if *rolled_back {
                set.push((tags::ROLLED_BACK_AT, tags::timestamp(now)));
            }
            set_tags(fleet_mut(&mut observed, fleet), &set, &[]);
        }
        Action::MarkLive { fleet, release, .. } => {
            let mut gone = vec![
                tags::WARM_UNTIL,
                tags::FAILURE,
                tags::SUSPENDED,
                tags::ROLLED_BACK_AT,
            ];
            gone.extend(in_progress_tags);
            set_tags(
                fleet_mut(&mut observed, fleet),
                &[
                    (tags::SERVICE, SERVICE.to_owned()),
                    (tags::RELEASE, release.clone()),
                    (tags::PHASE, "live".to_owned()),
                ],
                &gone,
            );
        }
        Action::FailRelease { fleet, reasons, .. } => {
            let summary = fleet_mut(&mut observed, fleet);
            summary.capacity = Capacity::ZERO;
            summary.instances.clear();
            set_tags(
                summary,
                &[
                    (tags::PHASE, "failed".to_owned()),
                    (tags::FAILURE, crate::core::reason::describe(reasons)),
                ],
                &[tags::STEP, tags::STEP_AT, tags::PROMOTED],
            );
        }
        Action::MatchCapacity { fleet, capacity } => {
            fleet_mut(&mut observed, fleet).capacity = *capacity;
        }
        Action::ReviveFleet {
            fleet,
            capacity,
            plan,
            health_deadline,
            ..
        } => {
            let summary = fleet_mut(&mut observed, fleet);
            summary.capacity = *capacity;
            restaged(summary, plan, *health_deadline);
        }
        Action::Restage {
            fleet,
            plan,
            health_deadline,
            ..
        } => restaged(fleet_mut(&mut observed, fleet), plan, *health_deadline),
        Action::RetireFleet { fleet, .. } => {
            for slot in &mut observed.slots {
                slot.fleets.retain(|f| &f.name != fleet);
            }
        }
        Action::CreateFleet(_) | Action::ConfigureFleet(_) => {
            panic!("not modelled: {action:?}")
        }
    }
    observed
}

fn restaged(summary: &mut FleetSummary, plan: &Plan, health_deadline: SystemTime) {
    set_tags(
        summary,
        &[
            (tags::PHASE, "provisioning".to_owned()),
            (tags::PLAN, plan.encode()),
            (tags::HEALTH_DEADLINE, tags::timestamp(health_deadline)),
        ],
        &[
            tags::FAILURE,
            tags::WARM_UNTIL,
            tags::ROLLED_BACK_AT,
            tags::STEP,
            tags::STEP_AT,
            tags::PROMOTED,
            tags::ABORT,
        ],
    );
}

/// One line per decision, for transcripts.
fn line(decision: &Decision, start: SystemTime) -> String {
    let since = |t: &SystemTime| {
        t.duration_since(start)
            .map_or_else(|_| "before".to_owned(), |d| format!("+{}s", d.as_secs()))
    };
    match decision {
        Decision::Act(Action::Shift {
            weight, step, of, ..
        }) => format!("shift to {weight} (step {step}/{of})"),
        Decision::Act(Action::Begin { step, of, .. }) => format!("begin step {step}/{of}"),
        Decision::Act(Action::MarkWarm {
            release,
            rolled_back,
            ..
        }) => format!("mark {release} warm (rolled back: {rolled_back})"),
        Decision::Act(action) => format!(
            "{} {}",
            action.name(),
            action.fleet().map(ToString::to_string).unwrap_or_default()
        ),
        Decision::Wait(Wait { until, why }) => {
            let until = until.as_ref().map_or_else(|| "promote".to_owned(), since);
            match why {
                WaitReason::Analysis { step, .. } => {
                    format!("analysis at step {step} until {until}")
                }
                WaitReason::Health { fleet, .. } => format!("wait for {fleet} until {until}"),
                WaitReason::Pause { step, .. } => format!("bake step {step} until {until}"),
                WaitReason::Gate { step, .. } => format!("gate at step {step} until {until}"),
                WaitReason::Handover { .. } => unreachable!("only abort waits for a hand-over"),
            }
        }
        Decision::Done(done) => format!("{done:?}"),
        Decision::Refuse(refusal) => format!("refused: {}", refusal.message),
    }
}

/// Green's share of the router, by the tests' own arithmetic: its weight over the total, in
/// percent (0 when nothing forwards).
fn percent(forwards: &[Forward], slot: Slot) -> f64 {
    let total: u32 = forwards.iter().map(|f| u32::from(f.weight.get())).sum();
    let mine: u32 = forwards
        .iter()
        .filter(|f| f.target_group == slot_tg(slot))
        .map(|f| u32::from(f.weight.get()))
        .sum();
    if total == 0 {
        0.0
    } else {
        f64::from(mine) * 100.0 / f64::from(total)
    }
}

fn router_forwards(router: &RouterState) -> Vec<Forward> {
    match &router.action {
        RouterAction::Forward { forwards } => forwards.clone(),
        RouterAction::Other { .. } => Vec::new(),
    }
}

/// Runs `decide` pass after pass from `observed` at [`t0`], applying what it decides; at a
/// timed wait the clock jumps to its end, at a gate `promote` is run. Returns the transcript
/// and the last observation.
fn walk(
    mut observed: Observed,
    passes: usize,
    mut decide: impl FnMut(&Observed, Clock) -> Decision,
) -> (Vec<String>, Observed) {
    let spec = spec();
    let mut now = t0();
    let mut transcript = Vec::new();
    for _ in 0..passes {
        let clock = Clock {
            now,
            health_deadline: now + TIMEOUT,
        };
        let decision = decide(&observed, clock);
        transcript.push(line(&decision, t0()));
        match &decision {
            Decision::Act(action) => {
                if let Some(write) = action.router_write() {
                    let total: u32 = write
                        .forwards
                        .iter()
                        .map(|f| u32::from(f.weight.get()))
                        .sum();
                    assert_eq!(total, 100, "{action:?}");
                    assert_eq!(write.expected, router_forwards(&observed.router));
                }
                observed = applied(observed, action, now);
            }
            Decision::Wait(Wait { until: Some(t), .. }) => now = *t,
            Decision::Wait(Wait { until: None, .. }) => {
                let request = decide_promote(&spec, &observed, false).expect("promotable");
                transcript.push(format!("promote {}", request.promoted.encode()));
                let f = fleet_mut(&mut observed, &request.fleet);
                f.tags
                    .insert(tags::PROMOTED.to_owned(), request.promoted.encode());
            }
            Decision::Done(_) | Decision::Refuse(_) => return (transcript, observed),
        }
        now += secs(1);
    }
    panic!("no end after {passes} passes: {transcript:#?}");
}

#[test]
fn a_canary_walks_its_plan_from_provisioning_to_live() {
    let spec = spec();
    let start = live_in(
        Slot::A,
        vec![stable()],
        vec![
            ours("v2", Phase::Provisioning)
                .image(AMI_2)
                .plan(&canary())
                .serving(2),
        ],
    );
    let (transcript, end) = walk(start, 20, |observed, clock| {
        decide_deploy(&spec, &canary_v2(), observed, clock)
    });
    assert_eq!(
        transcript,
        [
            "shift to 10% (step 1/4)",
            "bake step 1 until +300s",
            "shift to 25% (step 2/4)",
            "gate at step 2 until promote",
            "promote 2",
            "shift to 50% (step 3/4)",
            "flip checkout-v2",
            "mark v1 warm (rolled back: false)",
            "mark_live checkout-v2",
            "Live { release: \"v2\", slot: B }",
        ]
    );
    assert_eq!(
        router_forwards(&end.router),
        forwards(&[(TG_A, 0), (TG_B, 100)])
    );
    let tags = ReleaseTags::read(&end.slots[1].fleets[0].tags);
    assert_eq!(tags.phase, Some(Phase::Live));
    assert_eq!((tags.step, tags.promoted), (None, None));
}

#[test]
fn a_gated_blue_green_release_walks_to_live_and_promote_full_skips_the_rest() {
    let spec = spec();
    let start = |plan: &Plan| {
        live_in(
            Slot::B,
            vec![
                ours("v2", Phase::Provisioning)
                    .image(AMI_2)
                    .plan(plan)
                    .serving(2),
            ],
            vec![stable()],
        )
    };
    let (transcript, _) = walk(start(&gated()), 20, |observed, clock| {
        decide_deploy(&spec, &image("v2", AMI_2), observed, clock)
    });
    assert_eq!(
        transcript,
        [
            "begin step 1/2",
            "gate at step 1 until promote",
            "promote 1",
            "flip checkout-v2",
            "mark v1 warm (rolled back: false)",
            "mark_live checkout-v2",
            "Live { release: \"v2\", slot: A }",
        ]
    );
    // Promoted in full at step 1 of the canary: the bake and the gate are skipped.
    let at_step_1 = split_in(
        Slot::B,
        10,
        vec![releasing(&canary(), 1).promoted("full").serving(2)],
        vec![stable()],
    );
    let (transcript, _) = walk(at_step_1, 20, |observed, clock| {
        decide_deploy(&spec, &canary_v2(), observed, clock)
    });
    assert_eq!(
        transcript,
        [
            "flip checkout-v2",
            "mark v1 warm (rolled back: false)",
            "mark_live checkout-v2",
            "Live { release: \"v2\", slot: A }",
        ]
    );
}

#[test]
fn a_second_rollback_never_toggles_back_and_to_returns_once_more() {
    let spec = spec();
    let start = live_in(
        Slot::A,
        vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
        vec![ours("v1", Phase::Warm).image(AMI_1).serving(2)],
    );
    let spec = &spec;
    let rollback = |to: Option<&'static str>| {
        move |o: &Observed, c: Clock| decide_rollback(spec, o, c.now, to, BY)
    };
    // The first rollback flips; an interrupted run is finished by the next one, which marks
    // the release it left rolled back; a third run is told there is nothing to return to.
    let (transcript, after) = walk(start, 10, rollback(None));
    assert_eq!(
        transcript,
        [
            "flip checkout-v1",
            "mark v2 warm (rolled back: true)",
            "mark_live checkout-v1",
            &format!(
                "AlreadyRolledBack {{ release: \"v1\", slot: B, from: \"v2 at {}\" }}",
                tags::timestamp(t0() + secs(1))
            ),
        ]
    );
    assert_eq!(
        decide_rollback(spec, &after, t0() + mins(5), None, BY),
        decide_rollback(spec, &after, t0() + mins(50), None, BY),
        "asking again and again changes nothing"
    );
    // --to the release rolled back from returns to it, once; then it is the one rolled back
    // to, and a plain rollback does not toggle again.
    let (transcript, _) = walk(after, 10, rollback(Some("v2")));
    assert_eq!(
        transcript,
        [
            "flip checkout-v2",
            "mark v1 warm (rolled back: true)",
            "mark_live checkout-v2",
            "Live { release: \"v2\", slot: A }",
        ]
    );
}

#[test]
fn an_aborted_canary_routes_back_fails_and_can_be_deployed_again() {
    let spec = spec();
    let start = split_in(
        Slot::A,
        25,
        vec![stable()],
        vec![releasing(&canary(), 2).serving(2)],
    );
    let (transcript, after) = walk(start, 10, |observed, clock| {
        decide_abort(&spec, observed, clock.now, BY)
    });
    assert_eq!(
        transcript,
        [
            "route_back checkout-v2",
            "fail_release checkout-v2",
            "NothingInProgress { release: \"v1\", slot: A }",
        ]
    );
    assert_eq!(
        router_forwards(&after.router),
        forwards(&[(TG_A, 100), (TG_B, 0)])
    );
    // The same release deployed again is revived with its plan and a fresh deadline.
    assert_eq!(
        decide_deploy(&spec, &canary_v2(), &after, early()),
        Decision::Act(Action::ReviveFleet {
            fleet: name("checkout-v2"),
            release: "v2".to_owned(),
            capacity: Capacity {
                min: 2,
                max: 4,
                desired: 2,
            },
            plan: canary(),
            health_deadline: t0() + TIMEOUT,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Bugs found in the core (ignored until fixed)
// ---------------------------------------------------------------------------------------------

/// The automatic abort (green lost every healthy target while taking traffic) records why on
/// green, then routes the traffic back; the next pass fails the release for that reason, at a
/// step and from `provisioning` alike, and never mistakes the 0% for someone's router edit nor
/// lets green take traffic again once it recovers.
#[test]
fn an_automatic_route_back_is_finished_by_failing_the_release() {
    let spec = spec();
    let start = split_in(
        Slot::A,
        10,
        vec![stable()],
        vec![releasing(&canary(), 1).desired(2).failing(2)],
    );
    let first = decide_deploy(&spec, &canary_v2(), &start, early());
    let Decision::Act(route_back @ Action::RouteBack { .. }) = &first else {
        panic!("control: expected RouteBack, decided {first:?}");
    };
    let after = applied(start, route_back, early().now);
    let next = decide_deploy(&spec, &canary_v2(), &after, clock(mins(1)));
    assert!(
        matches!(&next, Decision::Act(Action::FailRelease { fleet, .. }) if fleet.as_str() == "checkout-v2"),
        "after routing back, decided {next:?}"
    );
    // The same from `provisioning` (the first shift landed, its record did not): after the
    // traffic is back the release is provisioning again, and once healthy it takes traffic
    // again instead of being failed.
    let start = split_in(
        Slot::A,
        10,
        vec![stable()],
        vec![first_shift_landed().desired(2).failing(2)],
    );
    let first = decide_deploy(&spec, &canary_v2(), &start, early());
    let Decision::Act(route_back @ Action::RouteBack { .. }) = &first else {
        panic!("control: expected RouteBack, decided {first:?}");
    };
    let mut after = applied(start, route_back, early().now);
    for target in &mut after.slots[1].targets {
        target.state = TargetState::Healthy;
    }
    let next = decide_deploy(&spec, &canary_v2(), &after, clock(mins(1)));
    assert!(
        matches!(&next, Decision::Act(Action::FailRelease { fleet, .. }) if fleet.as_str() == "checkout-v2"),
        "after routing back from provisioning, decided {next:?}"
    );
}

/// A crash between a shift's router call and its step tag, after which green loses every
/// healthy target: the share is the next step's, so it is greenlight's own split, and green
/// taking 25% with no healthy target is routed back; partly unhealthy, it waits for health.
#[test]
fn a_crash_between_route_and_tag_then_green_down_is_routed_back() {
    let spec = spec();
    let down = split_in(
        Slot::A,
        25,
        vec![stable()],
        vec![releasing(&canary(), 1).desired(2).failing(2)],
    );
    let decision = decide_deploy(&spec, &canary_v2(), &down, clock(mins(1)));
    assert!(
        matches!(&decision, Decision::Act(Action::RouteBack { .. })),
        "decided {decision:?}"
    );
    let partly = split_in(
        Slot::A,
        25,
        vec![stable()],
        vec![releasing(&canary(), 1).desired(2).healthy(1).failing(1)],
    );
    let decision = decide_deploy(&spec, &canary_v2(), &partly, clock(mins(1)));
    assert!(
        matches!(
            &decision,
            Decision::Wait(Wait {
                why: WaitReason::Health { .. },
                ..
            })
        ),
        "decided {decision:?}"
    );
}

/// A plan tag that is there but unreadable (hand-edited, or written by a newer greenlight) is
/// not treated like no plan tag at all (a release from before plans): following the plan asked
/// for now could skip a recorded gate, so `deploy` refuses instead.
#[test]
fn an_unreadable_plan_is_not_replaced_by_the_requested_one() {
    let observed = live_in(
        Slot::A,
        vec![stable()],
        vec![
            ours("v2", Phase::Provisioning)
                .image(AMI_2)
                .tag(tags::PLAN, "bluegreen 0@Manual,100")
                .serving(2),
        ],
    );
    let decision = decide_deploy(&spec(), &image("v2", AMI_2), &observed, early());
    assert!(
        matches!(&decision, Decision::Refuse(r) if r.kind == RefusalKind::NeedsAttention && r.message.contains("greenlight:plan")),
        "decided {decision:?}"
    );
}

/// MatchCapacity keeps green never smaller than the share it takes or will take, from
/// `provisioning` too: a blue/green release whose live fleet grew meanwhile grows green first,
/// and flips only then (a canary's first shift, or a Restage of a warm release, likewise).
#[test]
fn green_matches_the_live_fleet_before_a_flip_from_provisioning() {
    let observed = live_in(
        Slot::A,
        vec![ours("v1", Phase::Live).image(AMI_1).serving(4)],
        vec![ours("v2", Phase::Provisioning).image(AMI_2).serving(2)],
    );
    let decision = decide_deploy(&spec(), &image("v2", AMI_2), &observed, early());
    assert!(
        matches!(&decision, Decision::Act(Action::MatchCapacity { capacity, .. }) if capacity.desired == 4),
        "decided {decision:?}"
    );
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
        1 => Just(Some("releasing")),
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

/// Either every instance healthy, or a few more or fewer instances than desired in random
/// states.
type Health = (bool, i64, Vec<(&'static str, Option<TargetState>)>);

fn arb_health() -> impl Strategy<Value = Health> {
    (
        any::<bool>(),
        prop_oneof![4 => Just(0i64), 1 => Just(-1), 1 => Just(1)],
        prop::collection::vec(arb_instance(), 5),
    )
}

/// `f` at `desired` capacity with instances as `health` says.
fn with_health(f: F, desired: u32, (all_healthy, extra, instances): Health) -> F {
    if all_healthy {
        return f.serving(desired);
    }
    let count = (i64::from(desired) + extra).clamp(0, 5);
    instances
        .into_iter()
        .take(usize::try_from(count).expect("0 to 5"))
        .fold(f.desired(desired), |f, (lifecycle, target)| {
            f.instance(lifecycle, target, Some("Some.Reason"), None)
        })
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
        arb_health(),
        tags,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(fleet_name, desired, health, tags, deleting)| {
            let mut f = fleet(fleet_name);
            f.summary.tags = tags;
            f.summary.deleting = deleting;
            let desired = if health.0 { desired.max(1) } else { desired };
            with_health(f, desired, health)
        })
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

/// `t0` moved by `seconds`, either way.
fn offset(seconds: i64) -> SystemTime {
    let by = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 { t0() + by } else { t0() - by }
}

fn arb_clock() -> impl Strategy<Value = Clock> {
    prop_oneof![1 => Just(0i64), 4 => -900i64..=900].prop_map(|seconds_left| Clock {
        now: t0(),
        health_deadline: offset(seconds_left),
    })
}

fn arb_request() -> impl Strategy<Value = DeployRequest> {
    let launch = prop_oneof![
        prop::sample::select(vec![AMI_1, AMI_2])
            .prop_map(|ami| Launch::Image(ImageId::parse(ami).expect("AMI"))),
        prop::sample::select(vec![3u64, 7]).prop_map(Launch::Version),
    ];
    let plan = prop_oneof![Just(bluegreen()), Just(gated()), Just(canary())];
    (prop::sample::select(RELEASES.to_vec()), launch, plan).prop_map(|(name, launch, plan)| {
        DeployRequest {
            release: release(name),
            launch,
            plan,
        }
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
    DeployRequest {
        release,
        launch,
        plan: request.plan,
    }
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
    router_forwards(&observed.router)
        .iter()
        .any(|f| f.target_group == slot_tg(slot) && f.weight.get() > 0)
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

/// The one router write a decision may make: it names both slots and nothing else, its weights
/// sum to 100, and it expects exactly the forwards the deciding observation saw.
fn check_write(observed: &Observed, action: &Action) -> Result<(), TestCaseError> {
    let write = match action {
        Action::JoinRouter { write, .. }
        | Action::Shift { write, .. }
        | Action::Flip { write, .. }
        | Action::RouteBack { write, .. } => write,
        other => {
            prop_assert!(
                other.router_write().is_none(),
                "{:?} writes the router",
                other
            );
            return Ok(());
        }
    };
    prop_assert_eq!(action.router_write(), Some(write));
    let total: u32 = write
        .forwards
        .iter()
        .map(|f| u32::from(f.weight.get()))
        .sum();
    prop_assert_eq!(total, 100, "{:?}", action);
    let mut named: Vec<&str> = write
        .forwards
        .iter()
        .map(|f| f.target_group.as_str())
        .collect();
    named.sort_unstable();
    prop_assert_eq!(named, vec![TG_A, TG_B]);
    prop_assert_eq!(&write.expected, &router_forwards(&observed.router));
    Ok(())
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
        write,
        ..
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
    check_write(observed, action)?;
    prop_assert_eq!(percent(&write.forwards, idle), 100.0);
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

/// The plan a release in the idle slot follows: the one it recorded, or the request's.
fn plan_of(tags: &ReleaseTags, request: &DeployRequest) -> Plan {
    tags.plan.clone().unwrap_or_else(|| request.plan.clone())
}

fn deploy_decision_is_safe(spec: &Spec, s: &Scenario) -> Result<(), TestCaseError> {
    let observed = &s.observed;
    let decision = decide_deploy(spec, &s.request, observed, s.clock);
    let action = match &decision {
        Decision::Act(action) => action,
        Decision::Done(Done::Live {
            release: done,
            slot,
        }) => return check_done(spec, s, done, *slot),
        Decision::Done(other) => {
            return Err(TestCaseError::fail(format!("deploy ended {other:?}")));
        }
        Decision::Wait(wait) => return check_wait(spec, s, wait),
        Decision::Refuse(_) => return Ok(()),
    };
    check_write(observed, action)?;
    let live = traffic_slot(&observed.router)
        .ok_or_else(|| TestCaseError::fail(format!("acted without a live slot: {action:?}")))?;
    let idle = live.other();
    let live_fleet = sole(observed, live)
        .ok_or_else(|| TestCaseError::fail(format!("acted without one live fleet: {action:?}")))?;
    prop_assert!(!straddling(observed), "acted with a straddling fleet");
    let idle_fleet = sole(observed, idle);
    let idle_tags = idle_fleet.map(|f| ReleaseTags::read(&f.tags));
    let names_idle_fleet = |fleet: &FleetName| idle_fleet.is_some_and(|f| &f.name == fleet);
    let idle_targets = &observed.slot(idle).targets;
    match action {
        Action::OpenTestRule { .. }
        | Action::CloseTestRule { .. }
        | Action::PointTestListener { .. }
        | Action::RunHooks { .. }
        | Action::RecordStop { .. } => {
            return Err(TestCaseError::fail(format!(
                "{} without verification configured",
                action.name()
            )));
        }
        Action::JoinRouter {
            target_group,
            live: live_tg,
            write,
        } => {
            // Only ever the idle slot, at weight 0, and only when the router does not name it.
            prop_assert_eq!(target_group, &slot_tg(idle));
            prop_assert_eq!(live_tg, &slot_tg(live));
            prop_assert!(!observed.router.names(target_group));
            prop_assert_eq!(percent(&write.forwards, live), 100.0);
            prop_assert!(
                idle_fleet.is_none_or(|f| ReleaseTags::read(&f.tags).managed_for(&spec.service))
            );
        }
        Action::Flip {
            release: flipped, ..
        } => {
            let tags = check_flip(spec, observed, action)?;
            prop_assert_eq!(flipped.as_str(), s.request.release.as_str());
            prop_assert_eq!(tags.phase, Some(Phase::Provisioning));
            let plan = plan_of(&tags, &s.request);
            prop_assert!(plan.len() == 1 || tags.promoted == Some(Promoted::Full));
        }
        Action::Shift {
            fleet,
            release: shifted,
            to,
            from,
            weight,
            step,
            of,
            write,
            ..
        } => {
            prop_assert_eq!(to, &slot_tg(idle));
            prop_assert_eq!(from, &slot_tg(live));
            prop_assert!(names_idle_fleet(fleet));
            prop_assert!(obviously_ready(idle_fleet.expect("idle"), idle_targets));
            prop_assert_eq!(shifted.as_str(), s.request.release.as_str());
            let tags = idle_tags.expect("idle");
            prop_assert_eq!(tags.phase, Some(Phase::Provisioning));
            let plan = plan_of(&tags, &s.request);
            prop_assert_eq!(*step, StepNumber(1));
            prop_assert_eq!(*of, plan.len());
            prop_assert_eq!(*weight, plan.steps[0].weight);
            prop_assert!(weight.get() > 0 && weight.get() < 100);
            prop_assert_eq!(percent(&write.forwards, idle), f64::from(weight.get()));
        }
        Action::Begin {
            fleet,
            release: begun,
            step,
            of,
        } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            prop_assert!(obviously_ready(idle_fleet.expect("idle"), idle_targets));
            prop_assert_eq!(begun.as_str(), s.request.release.as_str());
            let tags = idle_tags.expect("idle");
            prop_assert_eq!(tags.phase, Some(Phase::Provisioning));
            let plan = plan_of(&tags, &s.request);
            prop_assert_eq!(plan.steps[0].weight.get(), 0);
            prop_assert_eq!((*step, *of), (StepNumber(1), plan.len()));
        }
        Action::MatchCapacity { fleet, capacity } => {
            // Green ready in the idle slot and smaller than the live fleet: it grows to match
            // before it takes any traffic, and never shrinks.
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            let idle = idle_fleet.expect("idle");
            prop_assert!(obviously_ready(idle, idle_targets));
            let live_fleet = sole(observed, live).expect("a live fleet");
            prop_assert!(live_fleet.capacity.desired > idle.capacity.desired);
            prop_assert_eq!(capacity.desired, live_fleet.capacity.desired);
            prop_assert!(capacity.max >= capacity.desired);
        }
        Action::RouteBack { fleet, .. } => {
            // Needs a release taking traffic, which these observations never record.
            return Err(TestCaseError::fail(format!(
                "{} on {fleet} without a recorded step",
                action.name()
            )));
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
                Some(Phase::Creating | Phase::Provisioning | Phase::Releasing)
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
            prop_assert!(!obviously_ready(failing, idle_targets));
            prop_assert!(idle_tags.expect("idle").managed_for(&spec.service));
        }
        Action::ReviveFleet {
            fleet,
            release: revived,
            capacity,
            plan,
            health_deadline,
        } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            prop_assert_eq!(*capacity, live_fleet.capacity);
            prop_assert_eq!(revived.as_str(), s.request.release.as_str());
            prop_assert_eq!(plan, &s.request.plan);
            prop_assert_eq!(*health_deadline, s.clock.health_deadline);
            let tags = idle_tags.expect("idle");
            prop_assert!(tags.managed_for(&spec.service));
            prop_assert_eq!(tags.phase, Some(Phase::Failed));
        }
        Action::Restage {
            fleet,
            release: restaged,
            plan,
            health_deadline,
        } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            prop_assert_eq!(restaged.as_str(), s.request.release.as_str());
            prop_assert_eq!(plan, &s.request.plan);
            prop_assert_eq!(*health_deadline, s.clock.health_deadline);
            let tags = idle_tags.expect("idle");
            prop_assert!(tags.managed_for(&spec.service));
            // A previous release: not one in progress, not a failed one, not the live one.
            prop_assert!(matches!(tags.phase, None | Some(Phase::Warm)));
        }
        Action::ConfigureFleet(Green {
            fleet,
            source,
            target_group,
            plan,
            health_deadline,
            ..
        }) => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            prop_assert_eq!(target_group, &slot_tg(idle));
            prop_assert_eq!(source, &live_fleet.name);
            let tags = idle_tags.expect("idle");
            prop_assert!(tags.managed_for(&spec.service));
            prop_assert_eq!(tags.phase, Some(Phase::Creating));
            prop_assert_eq!(plan, &plan_of(&tags, &s.request));
            prop_assert_eq!(*health_deadline, s.clock.health_deadline);
        }
        Action::CreateFleet(Green {
            fleet,
            release: created,
            source,
            target_group,
            plan,
            health_deadline,
            ..
        }) => {
            prop_assert_eq!(target_group, &slot_tg(idle));
            prop_assert!(!takes_traffic(observed, idle));
            prop_assert!(idle_fleet.is_none());
            prop_assert!(observed.slot(idle).fleets.iter().all(|f| f.deleting));
            prop_assert_eq!(created, &s.request.release);
            prop_assert_eq!(fleet.as_str(), format!("{SERVICE}-{created}"));
            prop_assert_eq!(source, &live_fleet.name);
            prop_assert_eq!(plan, &s.request.plan);
            prop_assert_eq!(*health_deadline, s.clock.health_deadline);
        }
        Action::MarkWarm {
            fleet,
            until,
            rolled_back,
            ..
        } => {
            check_idle_only(observed, fleet)?;
            prop_assert!(names_idle_fleet(fleet));
            let service = idle_tags.expect("idle").service;
            prop_assert!(service.is_none() || service.as_deref() == Some(SERVICE));
            prop_assert_eq!(*until, s.clock.now + KEEP_WARM);
            let live_phase = ReleaseTags::read(&live_fleet.tags).phase;
            prop_assert_eq!(*rolled_back, live_phase == Some(Phase::Warm));
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

/// Waiting is only ever on the health of the requested release in the idle slot, not ready,
/// until the deadline, which is still ahead.
fn check_wait(spec: &Spec, s: &Scenario, wait: &Wait) -> Result<(), TestCaseError> {
    let Wait {
        until,
        why: WaitReason::Health { fleet, health },
    } = wait
    else {
        return Err(TestCaseError::fail(format!(
            "waits on a pause without a recorded step: {wait:?}"
        )));
    };
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
    prop_assert!(!obviously_ready(waiting_on, &observed.slot(idle).targets));
    prop_assert_eq!(*until, Some(s.clock.health_deadline));
    prop_assert!(
        s.clock.now < s.clock.health_deadline,
        "waits past the deadline"
    );
    let tags = ReleaseTags::read(&waiting_on.tags);
    prop_assert!(tags.managed_for(&spec.service));
    prop_assert_eq!(tags.phase, Some(Phase::Provisioning));
    let waiting_release = tags.release.unwrap_or_else(|| fleet.to_string());
    prop_assert_eq!(waiting_release.as_str(), s.request.release.as_str());
    Ok(())
}

fn rollback_decision_is_safe(
    spec: &Spec,
    observed: &Observed,
    now: SystemTime,
) -> Result<(), TestCaseError> {
    let decided = decide_rollback(spec, observed, now, None, BY);
    // Rollback finishes flips; it never adopts a live fleet greenlight never tagged.
    let settling = settle_flips(spec, observed, now);
    if let Ok(Some(Action::MarkLive { fleet, .. })) = &settling {
        let live = traffic_slot(&observed.router).and_then(|slot| sole(observed, slot));
        prop_assert!(
            live.is_some_and(|f| &f.name == fleet && ReleaseTags::read(&f.tags).phase.is_some())
        );
    }
    match &decided {
        Decision::Act(action @ Action::Flip { .. }) => {
            let tags = check_flip(spec, observed, action)?;
            prop_assert!(matches!(tags.phase, None | Some(Phase::Warm)));
            prop_assert_eq!(tags.rolled_back_at, None);
        }
        Decision::Act(action @ (Action::MarkWarm { .. } | Action::MarkLive { .. })) => {
            prop_assert_eq!(&settling, &Ok(Some(action.clone())));
        }
        Decision::Act(action @ Action::FailRelease { fleet, reasons, .. }) => {
            // A release in progress, without traffic: it is aborted, never flipped to.
            check_idle_only(observed, fleet)?;
            let live = traffic_slot(&observed.router)
                .ok_or_else(|| TestCaseError::fail(format!("{action:?} without a live slot")))?;
            let idle = sole(observed, live.other())
                .ok_or_else(|| TestCaseError::fail("fails no sole idle fleet"))?;
            prop_assert_eq!(&idle.name, fleet);
            prop_assert!(matches!(
                ReleaseTags::read(&idle.tags).phase,
                Some(Phase::Creating | Phase::Provisioning | Phase::Releasing)
            ));
            prop_assert_eq!(
                reasons,
                &vec![expected_reason(&format!(
                    "rolled back by {BY} while in progress"
                ))]
            );
        }
        Decision::Done(Done::AlreadyRolledBack { from, .. }) => {
            // Nothing to return to: the release after the live one failed (rolled back from
            // releases are never generated here).
            let live = traffic_slot(&observed.router)
                .ok_or_else(|| TestCaseError::fail("done without a live slot"))?;
            let idle = sole(observed, live.other())
                .ok_or_else(|| TestCaseError::fail("done without an idle fleet"))?;
            let tags = ReleaseTags::read(&idle.tags);
            prop_assert_eq!(tags.phase, Some(Phase::Failed));
            prop_assert!(tags.managed_for(&spec.service));
            let release = tags.release.unwrap_or_else(|| idle.name.to_string());
            prop_assert_eq!(from, &format!("failed release {release}"));
        }
        Decision::Refuse(_) => {}
        other => return Err(TestCaseError::fail(format!("rollback decided {other:?}"))),
    }
    // And the converse: everything a rollback needs is there, so it must act: settle the
    // tags, or flip.
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
            matches!(decided, Decision::Act(_)),
            "refused a possible rollback: {:?}",
            decided
        );
        if settling == Ok(None) {
            prop_assert!(
                matches!(decided, Decision::Act(Action::Flip { .. })),
                "settled, yet decided {:?}",
                decided
            );
        }
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
        Decision::Wait(Wait { why, .. }) => match why {
            WaitReason::Analysis { release, .. } => {
                ("wait analysis".to_owned(), Some(release.clone()))
            }
            WaitReason::Health { fleet, .. } => ("wait health".to_owned(), Some(fleet.to_string())),
            WaitReason::Pause { release, .. } => ("wait pause".to_owned(), Some(release.clone())),
            WaitReason::Gate { release, .. } => ("wait gate".to_owned(), Some(release.clone())),
            WaitReason::Handover { .. } => unreachable!("only abort waits for a hand-over"),
        },
        Decision::Done(Done::Live { release, slot }) => {
            (format!("done in {slot}"), Some(release.clone()))
        }
        Decision::Done(Done::AlreadyRolledBack { release, slot, .. }) => (
            format!("already rolled back in {slot}"),
            Some(release.clone()),
        ),
        Decision::Done(Done::NothingInProgress { release, slot }) => (
            format!("nothing in progress in {slot}"),
            Some(release.clone()),
        ),
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

    /// Unless all traffic goes to one slot served by one fleet (or a split greenlight made,
    /// which these observations never hold), nothing is done, by any command.
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
        let decisions = [
            ("deploy", decide_deploy(&spec, &s.request, &s.observed, s.clock)),
            ("rollback", decide_rollback(&spec, &s.observed, s.clock.now, None, BY)),
            ("abort", decide_abort(&spec, &s.observed, s.clock.now, BY)),
            ("resume", decide_resume(&spec, &s.observed, s.clock)),
        ];
        if !clear {
            for (command, decision) in &decisions {
                prop_assert!(
                    matches!(
                        decision,
                        Decision::Refuse(r) if r.kind == RefusalKind::NeedsAttention
                    ),
                    "{} decided {:?}",
                    command,
                    decision
                );
            }
            prop_assert!(settle(&spec, &s.observed, s.clock.now).is_err());
            prop_assert!(decide_promote(&spec, &s.observed, true).is_err());
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
    /// does so whenever that is possible once the tags are settled.
    #[test]
    fn rollback_only_flips_to_a_ready_previous_release(s in arb_scenario()) {
        rollback_decision_is_safe(&spec(), &s.observed, s.clock.now)?;
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
        rollback_seen.insert(gist(&decide_rollback(&spec, &s.observed, s.clock.now, None, BY)).0);
    }
    let expected =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| (*n).to_owned()).collect() };
    let deploy_expected = expected(&[
        "join_router",
        "retire_fleet",
        "create_fleet",
        "configure_fleet",
        "revive_fleet",
        "restage",
        "begin",
        "shift",
        "flip",
        "mark_live",
        "mark_warm",
        "fail_release",
        "wait health",
        "done in a",
        "done in b",
        "BadInput",
        "Busy",
        "NeedsAttention",
    ]);
    let missing: Vec<&String> = deploy_expected.difference(&deploy_seen).collect();
    assert!(missing.is_empty(), "deploy never decided: {missing:?}");
    let rollback_expected = expected(&[
        "flip",
        "mark_live",
        "mark_warm",
        "fail_release",
        "already rolled back in a",
        "already rolled back in b",
        "NeedsAttention",
    ]);
    let missing: Vec<&String> = rollback_expected.difference(&rollback_seen).collect();
    assert!(missing.is_empty(), "rollback never decided: {missing:?}");
}

// ---------------------------------------------------------------------------------------------
// Properties of a release in progress
// ---------------------------------------------------------------------------------------------

fn arb_pause() -> impl Strategy<Value = Pause> {
    prop_oneof![
        3 => Just(Pause::None),
        3 => (1u64..=900).prop_map(|s| Pause::For(secs(s))),
        1 => (1u64..=5_000).prop_map(|ms| Pause::For(Duration::from_millis(ms))),
        2 => Just(Pause::Manual),
    ]
}

/// Any valid plan: up to four strictly increasing weights below 100 (the first may be 0),
/// each with a pause, then 100.
fn arb_plan() -> impl Strategy<Value = Plan> {
    (
        prop::collection::btree_set(0u8..100, 0..=4),
        prop::collection::vec(arb_pause(), 4),
        any::<bool>(),
    )
        .prop_map(|(weights, pauses, blue_green)| {
            let mut steps: Vec<Step> = weights
                .into_iter()
                .zip(pauses)
                .map(|(weight, pause)| Step {
                    weight: pct(weight),
                    pause,
                })
                .collect();
            steps.push(Step {
                weight: Percent::ALL,
                pause: Pause::None,
            });
            let strategy = if blue_green && steps.len() <= 2 && steps[0].weight.get() == 0 {
                PlanStrategy::BlueGreen
            } else {
                PlanStrategy::Canary
            };
            Plan::new(strategy, steps).expect("a generated plan is valid")
        })
}

/// What the router gives green in a generated observation of a release in progress.
#[derive(Debug, Clone, Copy)]
enum Share {
    /// The weight of the step green records (0 before it records one).
    Recorded,
    /// The weight of the step after it (step 1's while provisioning): a shift landed and its
    /// record did not.
    Next,
    /// Any percent.
    Any(u8),
    /// Weights that need not sum to 100: `stable`, `green`.
    Raw(u16, u16),
    /// All to the stable slot, the other named at 0, as a user's router may have it.
    Untouched,
    /// All to the stable slot, the other not named.
    Unnamed,
}

#[derive(Debug, Clone, Copy)]
enum PlanTag {
    Recorded,
    Missing,
    Unreadable,
}

/// Release v2 under way from stable release v1, with a random plan.
#[derive(Debug, Clone)]
struct Canary {
    observed: Observed,
    plan: Plan,
    /// The slot of the release traffic moves away from.
    stable: Slot,
    /// When the step green records took effect.
    step_at: SystemTime,
    clock: Clock,
}

impl Canary {
    fn green_slot(&self) -> Slot {
        self.stable.other()
    }

    fn green(&self) -> &FleetSummary {
        sole(&self.observed, self.green_slot()).expect("one green fleet")
    }

    fn stable_fleet(&self) -> &FleetSummary {
        sole(&self.observed, self.stable).expect("one stable fleet")
    }

    fn green_ready(&self) -> bool {
        obviously_ready(self.green(), &self.observed.slot(self.green_slot()).targets)
    }

    fn tag(&self, key: &str) -> Option<&str> {
        self.green().tags.get(key).map(String::as_str)
    }

    /// Green's recorded step, read by hand.
    fn step(&self) -> Option<u32> {
        self.tag(tags::STEP).and_then(|v| v.parse().ok())
    }

    fn share_before(&self) -> f64 {
        percent(&router_forwards(&self.observed.router), self.green_slot())
    }

    fn request(&self) -> DeployRequest {
        with_plan(image("v2", AMI_2), self.plan.clone())
    }
}

#[allow(clippy::type_complexity)]
fn arb_green_tags() -> impl Strategy<
    Value = (
        Phase,
        PlanTag,
        u32,
        bool,
        u64,
        Option<u32>,
        bool,
        bool,
        Option<i64>,
    ),
> {
    (
        prop_oneof![1 => Just(Phase::Creating), 3 => Just(Phase::Provisioning), 8 => Just(Phase::Releasing)],
        prop_oneof![12 => Just(PlanTag::Recorded), 1 => Just(PlanTag::Missing), 1 => Just(PlanTag::Unreadable)],
        // The step: a draw mapped onto the plan's steps, one past its end, or none.
        0u32..=20,
        prop::bool::weighted(0.92),
        0u64..=1_800,
        // Promoted: a step (mapped like the step) or, with 0, `full`.
        prop::option::weighted(0.4, 0u32..=20),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
        prop::option::of(-900i64..=900),
    )
}

fn arb_share() -> impl Strategy<Value = Share> {
    prop_oneof![
        8 => Just(Share::Recorded),
        3 => Just(Share::Next),
        2 => (0u8..=100).prop_map(Share::Any),
        1 => (0u16..=20, 0u16..=20).prop_map(|(s, g)| Share::Raw(s, g)),
        2 => Just(Share::Untouched),
        1 => Just(Share::Unnamed),
    ]
}

fn arb_canary() -> impl Strategy<Value = Canary> {
    (
        arb_plan(),
        any::<bool>(),
        arb_green_tags(),
        arb_share(),
        (
            prop_oneof![9 => Just(Phase::Live), 1 => Just(Phase::Warm)],
            1u32..=4,
            arb_health(),
        ),
        (0u32..=4, arb_health(), 0u32..=3),
        -900i64..=900,
    )
        .prop_map(
            |(
                plan,
                stable_in_a,
                (phase, plan_tag, step, has_step, age, promoted, abort, no_step, deadline),
                share,
                (stable_phase, stable_desired, stable_health),
                (green_desired, green_health, spare),
                clock_deadline,
            )| {
                let len = plan.len();
                let stable = if stable_in_a { Slot::A } else { Slot::B };
                let step_at = t0() - secs(age);
                let step = (has_step && !no_step).then_some(step % (len + 1) + 1);
                let mut green = ours("v2", phase).image(AMI_2);
                green = match plan_tag {
                    PlanTag::Recorded => green.plan(&plan),
                    PlanTag::Missing => green,
                    PlanTag::Unreadable => green.tag(tags::PLAN, "canary 10@someday,100"),
                };
                if let Some(n) = step.filter(|_| phase == Phase::Releasing) {
                    green = green.at_step(n, step_at);
                }
                if let Some(p) = promoted {
                    green = green.promoted(&match p % (len + 1) {
                        0 => "full".to_owned(),
                        n => n.to_string(),
                    });
                }
                if abort {
                    green = green.abort_requested("by bob@ci at 2026-11-25T17:00:00Z");
                }
                if let Some(seconds) = deadline {
                    green = green.health_deadline(offset(seconds));
                }
                let mut green = with_health(green, green_desired, green_health);
                green.summary.capacity.max = green_desired + spare;
                let stable_fleet = with_health(
                    ours("v1", stable_phase).image(AMI_1),
                    stable_desired,
                    stable_health,
                );
                let weight_of = |n: u32| {
                    plan.step(StepNumber(n))
                        .map_or(0, |s| u16::from(s.weight.get()))
                };
                let recorded = match (phase, step) {
                    (Phase::Releasing, Some(n)) => Some(n),
                    _ => None,
                };
                let s = tg_of(stable);
                let g = tg_of(stable.other());
                let forwards: Vec<(&str, u16)> = match share {
                    Share::Recorded => {
                        let w = recorded.map_or(0, weight_of);
                        vec![(s, 100 - w), (g, w)]
                    }
                    Share::Next => {
                        let w = weight_of(recorded.map_or(1, |n| n + 1));
                        vec![(s, 100 - w), (g, w)]
                    }
                    Share::Any(w) => vec![(s, 100 - u16::from(w)), (g, u16::from(w))],
                    Share::Raw(ws, wg) => vec![(s, ws), (g, wg)],
                    Share::Untouched => vec![(s, 1), (g, 0)],
                    Share::Unnamed => vec![(s, 1)],
                };
                let (a, b) = if stable_in_a {
                    (vec![stable_fleet], vec![green])
                } else {
                    (vec![green], vec![stable_fleet])
                };
                Canary {
                    observed: observe(forwarding(&forwards), a, b),
                    plan,
                    stable,
                    step_at,
                    clock: Clock {
                        now: t0(),
                        health_deadline: offset(clock_deadline),
                    },
                }
            },
        )
}

/// Every command's decision on a release in progress.
fn canary_decisions(spec: &Spec, c: &Canary) -> [(&'static str, Decision); 4] {
    [
        (
            "deploy",
            decide_deploy(spec, &c.request(), &c.observed, c.clock),
        ),
        ("resume", decide_resume(spec, &c.observed, c.clock)),
        ("abort", decide_abort(spec, &c.observed, c.clock.now, BY)),
        (
            "rollback",
            decide_rollback(spec, &c.observed, c.clock.now, None, BY),
        ),
    ]
}

/// The safety rules, by the tests' own arithmetic, for one decision on a release in progress.
fn canary_decision_is_safe(
    c: &Canary,
    command: &str,
    decision: &Decision,
) -> Result<(), TestCaseError> {
    let green_slot = c.green_slot();
    let green = c.green();
    let before = c.share_before();
    let moves_forward = command == "deploy" || command == "resume";
    let action = match decision {
        Decision::Act(action) => action,
        Decision::Wait(wait) => return check_canary_wait(c, command, wait),
        Decision::Done(_) | Decision::Refuse(_) => return Ok(()),
    };
    check_write(&c.observed, action)?;
    // No decision resizes, fails or deletes the stable release.
    if let Action::RetireFleet { fleet, .. }
    | Action::ConfigureFleet(Green { fleet, .. })
    | Action::ReviveFleet { fleet, .. }
    | Action::Restage { fleet, .. }
    | Action::MatchCapacity { fleet, .. }
    | Action::FailRelease { fleet, .. } = action
    {
        prop_assert_ne!(
            fleet,
            &c.stable_fleet().name,
            "{} resizes the stable fleet",
            command
        );
        prop_assert_eq!(fleet, &green.name);
    }
    match action {
        Action::OpenTestRule { .. }
        | Action::CloseTestRule { .. }
        | Action::PointTestListener { .. }
        | Action::RunHooks { .. }
        | Action::RecordStop { .. } => {
            return Err(TestCaseError::fail(format!(
                "{} without verification configured",
                action.name()
            )));
        }
        Action::Shift {
            fleet,
            to,
            from,
            weight,
            step,
            of,
            write,
            ..
        } => {
            prop_assert!(moves_forward, "{} shifts", command);
            prop_assert_eq!(fleet, &green.name);
            prop_assert_eq!((to, from), (&slot_tg(green_slot), &slot_tg(c.stable)));
            prop_assert!(c.green_ready(), "shifts to a green that is not ready");
            let after = percent(&write.forwards, green_slot);
            prop_assert_eq!(after, f64::from(weight.get()));
            prop_assert!(
                after >= before,
                "green's share falls from {} to {}",
                before,
                after
            );
            prop_assert!(weight.get() > 0 && weight.get() < 100);
            // One step at a time: the step after the one recorded, or the first.
            let provisioning = c.tag(tags::PHASE) == Some("provisioning");
            let expected = if provisioning {
                1
            } else {
                c.step().map_or(0, |n| n + 1)
            };
            prop_assert_eq!(step.0, expected);
            prop_assert_eq!(*of, c.plan.len());
            prop_assert_eq!(Some(*weight), c.plan.step(*step).map(|s| s.weight));
        }
        Action::Flip {
            fleet, to, write, ..
        } => {
            prop_assert!(
                moves_forward,
                "{} flips onto a release in progress",
                command
            );
            prop_assert_eq!(fleet, &green.name);
            prop_assert_eq!(to, &slot_tg(green_slot));
            prop_assert!(c.green_ready(), "flips to a green that is not ready");
            prop_assert_eq!(percent(&write.forwards, green_slot), 100.0);
            // The last step: next after the recorded one (or the first), or promoted in full.
            let next = match c.tag(tags::PHASE) {
                Some("provisioning") => 1,
                _ => c.step().map_or(0, |n| n + 1),
            };
            prop_assert!(
                next == c.plan.len() || c.tag(tags::PROMOTED) == Some("full"),
                "skips from {:?} to the last step",
                c.step()
            );
        }
        Action::RouteBack {
            fleet,
            to,
            from,
            write,
            ..
        } => {
            prop_assert_eq!(fleet, &green.name);
            prop_assert_eq!((to, from), (&slot_tg(c.stable), &slot_tg(green_slot)));
            prop_assert!(before > 0.0, "routes back what was never moved");
            prop_assert_eq!(percent(&write.forwards, green_slot), 0.0);
            prop_assert_eq!(percent(&write.forwards, c.stable), 100.0);
            prop_assert!(
                obviously_ready(c.stable_fleet(), &c.observed.slot(c.stable).targets),
                "routes back onto a stable release that is not ready"
            );
        }
        Action::JoinRouter { target_group, .. } => {
            prop_assert_eq!(target_group, &slot_tg(green_slot));
            prop_assert!(
                !router_forwards(&c.observed.router)
                    .iter()
                    .any(|f| f.target_group == slot_tg(green_slot))
            );
        }
        Action::MatchCapacity { capacity, .. } => {
            prop_assert!(moves_forward);
            let own = green.capacity;
            prop_assert_eq!(capacity.desired, c.stable_fleet().capacity.desired);
            prop_assert!(capacity.desired > own.desired, "shrinks green");
            prop_assert_eq!(capacity.min, own.min);
            prop_assert!(capacity.max >= own.max && capacity.max >= capacity.desired);
        }
        Action::FailRelease { .. } => {
            prop_assert_eq!(before, 0.0, "fails a release that takes traffic");
        }
        Action::Begin { fleet, step, .. } => {
            prop_assert!(moves_forward);
            prop_assert_eq!(fleet, &green.name);
            prop_assert_eq!(c.tag(tags::PHASE), Some("provisioning"));
            prop_assert!(c.green_ready());
            prop_assert_eq!(*step, StepNumber(1));
            prop_assert_eq!(c.plan.steps[0].weight.get(), 0);
        }
        Action::ConfigureFleet(Green { fleet, .. }) => {
            prop_assert_eq!(command, "deploy");
            prop_assert_eq!(fleet, &green.name);
            prop_assert_eq!(c.tag(tags::PHASE), Some("creating"));
        }
        Action::MarkWarm { fleet, .. } => {
            // Only once the last step landed: the fleet that lost all traffic.
            prop_assert_eq!(slots_listing(&c.observed, fleet), vec![c.stable]);
            prop_assert_eq!(before, 100.0);
        }
        Action::MarkLive { fleet, .. } => {
            // The fleet that takes all the traffic once the last step landed, or a stable
            // release that was never marked live (a rollback's, interrupted): a fleet that
            // takes traffic, not tagged live yet.
            let slot = slots_listing(&c.observed, fleet);
            prop_assert_eq!(slot.len(), 1);
            let share = percent(&router_forwards(&c.observed.router), slot[0]);
            prop_assert!(share == 100.0 || (slot[0] == c.stable && share > 0.0));
            let phase = c.observed.slot(slot[0]).fleets[0].tags.get(tags::PHASE);
            prop_assert_ne!(phase.map(String::as_str), Some("live"));
        }
        Action::RetireFleet { .. }
        | Action::CreateFleet(_)
        | Action::ReviveFleet { .. }
        | Action::Restage { .. } => {
            return Err(TestCaseError::fail(format!(
                "{command} decided {action:?} with a release in progress"
            )));
        }
    }
    Ok(())
}

/// A wait on a release in progress: on green's health (not ready), on a timed pause that has
/// not ended, or at a manual gate nobody promoted; never by `abort` or `rollback`.
fn check_canary_wait(c: &Canary, command: &str, wait: &Wait) -> Result<(), TestCaseError> {
    prop_assert!(
        command == "deploy" || command == "resume",
        "{} waits",
        command
    );
    let now = c.clock.now;
    match &wait.why {
        WaitReason::Analysis { .. } => {
            return Err(TestCaseError::fail(
                "an analysis wait without [analysis] configured",
            ));
        }
        WaitReason::Handover { .. } => {
            return Err(TestCaseError::fail(
                "a deploy decided to wait for a hand-over",
            ));
        }
        WaitReason::Health { fleet, .. } => {
            prop_assert_eq!(fleet, &c.green().name);
            prop_assert!(!c.green_ready(), "waits on a ready green");
            let until = wait
                .until
                .ok_or_else(|| TestCaseError::fail("health waits forever"))?;
            prop_assert!(until > now);
        }
        WaitReason::Pause { step, weight, .. } => {
            prop_assert!(c.green_ready());
            prop_assert_eq!(Some(step.0), c.step());
            prop_assert_eq!(c.share_before(), f64::from(weight.get()));
            let Some(Pause::For(bake)) = c.plan.step(*step).map(|s| s.pause) else {
                return Err(TestCaseError::fail("a timed wait at a step without a bake"));
            };
            // Step-at is recorded to the second.
            prop_assert_eq!(wait.until, Some(c.step_at + bake));
            prop_assert!(c.step_at + bake > now);
            let promoted = c.tag(tags::PROMOTED).and_then(|p| p.parse::<u32>().ok());
            prop_assert!(promoted.is_none_or(|p| p < step.0), "promoted, yet baking");
            prop_assert_ne!(c.tag(tags::PROMOTED), Some("full"));
        }
        WaitReason::Gate { step, weight, .. } => {
            prop_assert!(c.green_ready());
            prop_assert_eq!(wait.until, None);
            prop_assert_eq!(Some(step.0), c.step());
            prop_assert_eq!(c.share_before(), f64::from(weight.get()));
            prop_assert_eq!(c.plan.step(*step).map(|s| s.pause), Some(Pause::Manual));
            let promoted = c.tag(tags::PROMOTED).and_then(|p| p.parse::<u32>().ok());
            prop_assert!(
                promoted.is_none_or(|p| p < step.0),
                "promoted, yet at the gate"
            );
            prop_assert_ne!(c.tag(tags::PROMOTED), Some("full"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Over random releases in progress with random plans, for every command: each router
    /// write names both slots, sums to 100 and expects what was seen; green's share only
    /// grows, except by a RouteBack that gives it 0; a Shift goes one step at a time and, like
    /// a Flip, only onto a green that is obviously ready; the stable release is never resized,
    /// failed or deleted; waits are honest.
    #[test]
    fn a_release_in_progress_moves_safely(c in arb_canary()) {
        let spec = spec();
        for (command, decision) in canary_decisions(&spec, &c) {
            canary_decision_is_safe(&c, command, &decision)
                .map_err(|e| TestCaseError::fail(format!("{command}: {decision:?}: {e}")))?;
        }
    }

    /// Stickiness is on exactly while a write leaves both slots with traffic.
    #[test]
    fn stickiness_is_on_only_while_traffic_is_split(c in arb_canary()) {
        let spec = sticky_spec();
        for (command, decision) in canary_decisions(&spec, &c) {
            let Decision::Act(action) = &decision else { continue };
            let Some(write) = action.router_write() else { continue };
            let split = write.forwards.iter().filter(|f| f.weight.get() > 0).count() == 2;
            let expected = match action {
                Action::JoinRouter { .. } => Stickiness::Keep,
                _ if split => Stickiness::On(3600),
                _ => Stickiness::Off,
            };
            prop_assert_eq!(write.stickiness, expected, "{}: {:?}", command, action);
        }
    }

    /// The plan a release records reads back as itself, whatever its pauses.
    #[test]
    fn a_recorded_plan_reads_back_as_itself(plan in arb_plan()) {
        let tags = BTreeMap::from([(tags::PLAN.to_owned(), plan.encode())]);
        prop_assert!(plan.encode().len() <= tags::MAX_VALUE_LEN);
        prop_assert_eq!(ReleaseTags::read(&tags).plan, Some(plan));
    }
}

/// The generator of releases in progress reaches every stage of the machine.
#[test]
fn generated_releases_in_progress_reach_every_stage() {
    let spec = spec();
    let strategy = arb_canary();
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for _ in 0..4000 {
        let c = strategy
            .new_tree(&mut runner)
            .expect("generates a release in progress")
            .current();
        for (command, decision) in canary_decisions(&spec, &c) {
            seen.entry(command).or_default().insert(gist(&decision).0);
        }
    }
    let expect = |command: &str, names: &[&str]| {
        let missing: Vec<&&str> = names
            .iter()
            .filter(|n| !seen[command].contains(**n))
            .collect();
        assert!(missing.is_empty(), "{command} never decided {missing:?}");
    };
    expect(
        "deploy",
        &[
            "configure_fleet",
            "join_router",
            "begin",
            "shift",
            "flip",
            "match_capacity",
            "route_back",
            "fail_release",
            "mark_warm",
            "mark_live",
            "wait health",
            "wait pause",
            "wait gate",
            "NeedsAttention",
        ],
    );
    expect(
        "resume",
        &[
            "begin",
            "shift",
            "flip",
            "match_capacity",
            "route_back",
            "fail_release",
            "wait health",
            "wait pause",
            "wait gate",
            "NeedsAttention",
        ],
    );
    expect(
        "abort",
        &[
            "route_back",
            "fail_release",
            "mark_warm",
            "mark_live",
            "NeedsAttention",
        ],
    );
    expect(
        "rollback",
        &[
            "route_back",
            "fail_release",
            "mark_warm",
            "mark_live",
            "NeedsAttention",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Single cases
// ---------------------------------------------------------------------------------------------

#[test]
fn a_previous_release_serving_another_target_group_is_not_retired() {
    let v2 = ours("v2", Phase::Live).image(AMI_2).serving(2);
    let mut observed = live_in(Slot::A, vec![v2], vec![ours("v1", Phase::Warm).serving(2)]);
    let retire = decide_deploy(&spec(), &image("v3", AMI_2), &observed, early());
    assert!(
        matches!(&retire, Decision::Act(Action::RetireFleet { .. })),
        "control: {retire:?}"
    );
    let internal = arn(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/internal/0123456789abcdef",
    );
    observed.slots[1].fleets[0].target_groups.push(internal);
    match decide_deploy(&spec(), &image("v3", AMI_2), &observed, early()) {
        Decision::Refuse(refusal) => check_refusal(
            "serves another target group",
            &refusal,
            RefusalKind::NeedsAttention,
            &["also serves target group internal"],
        ),
        other => panic!("retired a fleet that serves another target group: {other:?}"),
    }
}

#[test]
fn a_newer_tag_schema_is_not_acted_on() {
    let v2 = || ours("v2", Phase::Live).image(AMI_2).serving(2);
    // Schema 1 (before plans) is still read: the control.
    let older = live_in(
        Slot::A,
        vec![v2()],
        vec![ours("v1", Phase::Warm).tag(tags::SCHEMA, "1").serving(2)],
    );
    assert!(matches!(
        decide_deploy(&spec(), &image("v3", AMI_2), &older, early()),
        Decision::Act(Action::RetireFleet { .. })
    ));
    let newer_version = (tags::SCHEMA_VERSION + 1).to_string();
    let newer = live_in(
        Slot::A,
        vec![v2()],
        vec![
            ours("v1", Phase::Warm)
                .tag(tags::SCHEMA, &newer_version)
                .serving(2),
        ],
    );
    let spec = spec();
    let decisions = [
        decide_deploy(&spec, &image("v3", AMI_2), &newer, early()),
        decide_rollback(&spec, &newer, t0(), None, BY),
        decide_abort(&spec, &newer, t0(), BY),
        decide_resume(&spec, &newer, early()),
        decide_promote(&spec, &newer, true).err().map_or(
            Decision::Done(Done::Live {
                release: "promote".to_owned(),
                slot: Slot::A,
            }),
            Decision::Refuse,
        ),
    ];
    let says = format!("schema {newer_version}");
    for decision in decisions {
        match decision {
            Decision::Refuse(refusal) => check_refusal(
                "newer schema",
                &refusal,
                RefusalKind::NeedsAttention,
                &[&says, "upgrade greenlight"],
            ),
            other => panic!("acted on a newer schema: {other:?}"),
        }
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

/// After a rollback's flip the release left is marked rolled back; after a deploy's flip it is
/// not, and a rollback first finishes the deploy, then flips back to the release it left.
#[test]
fn an_unsettled_rollback_is_told_apart_from_an_unsettled_deploy() {
    let spec = spec();
    // Rollback flipped to the warm v1; v2 still tagged live.
    let after_rollback = live_in(
        Slot::A,
        vec![ours("v1", Phase::Warm).serving(2)],
        vec![ours("v2", Phase::Live).image(AMI_2).serving(2)],
    );
    assert!(matches!(
        settle(&spec, &after_rollback, t0()),
        Ok(Some(Action::MarkWarm {
            rolled_back: true,
            ..
        }))
    ));
    // Deploy flipped to the provisioning v2; v1 still tagged live: not rolled back, and a
    // rollback settles the deploy, then flips back to v1.
    let after_deploy = live_in(
        Slot::B,
        vec![ours("v1", Phase::Live).serving(2)],
        vec![ours("v2", Phase::Provisioning).image(AMI_2).serving(2)],
    );
    assert!(matches!(
        settle(&spec, &after_deploy, t0()),
        Ok(Some(Action::MarkWarm {
            rolled_back: false,
            ..
        }))
    ));
    let (transcript, _) = walk(after_deploy, 10, |observed, clock| {
        decide_rollback(&spec, observed, clock.now, None, BY)
    });
    assert_eq!(
        transcript,
        [
            "mark v1 warm (rolled back: false)",
            "mark_live checkout-v2",
            "flip checkout-v1",
            "mark v2 warm (rolled back: true)",
            "mark_live checkout-v1",
            &format!(
                "AlreadyRolledBack {{ release: \"v1\", slot: A, from: \"v2 at {}\" }}",
                tags::timestamp(t0() + secs(3))
            ),
        ]
    );
    // Settled: nothing is pending.
    let settled = live_in(
        Slot::A,
        vec![ours("v1", Phase::Live).serving(2)],
        vec![ours("v2", Phase::Warm).image(AMI_2).serving(2)],
    );
    assert_eq!(settle(&spec, &settled, t0()), Ok(None));
}

/// While `provisioning`, only the first step's share is taken as greenlight's own (the first
/// shift landed without its record); a split made by hand at a later step's weight is refused,
/// so a manual gate nobody promoted is never skipped.
#[test]
fn a_provisioning_release_takes_only_the_first_step_s_share_as_its_own() {
    let spec = spec();
    let gate_first = plan("canary 0@manual,10@5m,100");
    let observed = split_in(
        Slot::A,
        10,
        vec![stable()],
        vec![
            ours("v2", Phase::Provisioning)
                .image(AMI_2)
                .plan(&gate_first)
                .serving(2),
        ],
    );
    let decision = decide_deploy(
        &spec,
        &with_plan(image("v2", AMI_2), gate_first),
        &observed,
        early(),
    );
    assert!(
        matches!(&decision, Decision::Refuse(r) if r.kind == RefusalKind::NeedsAttention),
        "gate skipped: decided {decision:?}"
    );
    let at_step_2_weight = split_in(
        Slot::A,
        25,
        vec![stable()],
        vec![first_shift_landed().serving(2)],
    );
    let decision = decide_deploy(&spec, &canary_v2(), &at_step_2_weight, early());
    assert!(
        matches!(&decision, Decision::Refuse(r) if r.kind == RefusalKind::NeedsAttention),
        "step 1 skipped: decided {decision:?}"
    );
}
