//! Tests of release verification in the decisions: `[test_traffic]` (a header rule and a test
//! listener), `[hooks]` at their stages, and `[analysis]` (alarms, and the metrics verdict at
//! each gate). Tables of named cases for the gates a ready release passes before its first step,
//! the join through a test listener, hooks and alarms during a step, the verdict at the end of a
//! pause, the stop sequence, what follows the last step and the test traffic a crash left over;
//! walks of whole releases through the tests' own model of the engine; and a property over
//! random verification states of a release in progress, checked against the sequence as the
//! tests spell it out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

use super::{
    Action, Clock, Decision, DeployRequest, Done, HookContext, Launch, RefusalKind, WARM_SUSPENDS,
    Wait, WaitReason, decide_abort, decide_deploy, decide_promote, decide_resume, decide_rollback,
    metrics_due,
};
use crate::core::analysis::{AlarmState, AlarmValue, Comparison, MetricWindow};
use crate::core::fleet::{Capacity, FleetInstance, FleetSummary};
use crate::core::health::{TargetHealth, TargetState};
use crate::core::hooks::HookStage;
use crate::core::names::{FleetName, ImageId, ListenerArn, ReleaseName, RuleArn, TargetGroupArn};
use crate::core::observed::{Observed, SlotObserved};
use crate::core::plan::{Pause, Percent, Plan, StepNumber};
use crate::core::reason::{Reason, ReasonCode};
use crate::core::router::{
    Forward, RouterAction, RouterId, RouterState, RouterWrite, Slot, Stickiness, Weight,
};
use crate::core::spec::Spec;
use crate::core::tags::{self, Phase};
use crate::core::test_traffic::{self, ListenerRule, RuleCondition};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

const SERVICE: &str = "checkout";
const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2";
/// Another port of the router's load balancer.
const TEST_LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/0a1b2c3d4e5f6a7b";
/// A rule of [`LISTENER`], the router when the config names a rule.
const ROUTER_RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2/9a3b0c1d2e3f4a5b";
const TG_A: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/6d0ecf831eec9f09";
const TG_B: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/7e0ecf831eec9f10";
/// A target group that is neither slot.
const TG_OTHER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/search-a/8f0ecf831eec9f11";
const HEADER: &str = "X-Greenlight-Release";
/// The one alarm of `[analysis] alarms`.
const ALARM: &str = "checkout-5xx";
const ALARM_REASON: &str = "Threshold Crossed: 1 datapoint [12.0] was greater than 5.0";
const AMI_1: &str = "ami-11111111";
const AMI_2: &str = "ami-22222222";
/// `[health] timeout` (the default).
const TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `[retention] keep_warm`.
const KEEP_WARM: Duration = Duration::from_secs(2 * 60 * 60);
/// The bake time of step 1 of [`canary`].
const BAKE: Duration = Duration::from_secs(5 * 60);
/// Who runs `abort` and `rollback`.
const BY: &str = "alice";
/// An abort request another runner left on green.
const BOB: &str = "by bob at 2026-11-19T10:00:00Z";
/// A rollback's stop, as [`Action::RouteBack`] leaves it on green.
const ROLLED_BACK: &str = "rolled back by alice while in progress";
/// An alarm's stop, as [`Action::RecordStop`] leaves it on green.
const ALARM_STOP: &str =
    "alarm checkout-5xx is in ALARM (Threshold Crossed: 1 datapoint [12.0] was greater than 5.0)";

/// The verdicts of [`Metrics`], as a Shift, a Flip or a wait carries them.
const PASS_TEXT: &str = "pass: green 0.10% 5xx (1/1000), blue 0.10% 5xx (9/9000), green p99 120ms";
const THIN_TEXT: &str =
    "inconclusive: green 0.00% 5xx (0/20), blue 0.10% 5xx (9/9000), green p99 100ms";

/// Which verification the config asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cfg {
    header: bool,
    listener: bool,
    pre: bool,
    after: bool,
    post: bool,
    alarms: bool,
    /// `max_5xx_rate = 0.01` and `max_p99_latency = "500ms"` (min_requests: the default 100).
    metrics: bool,
    inconclusive: Option<&'static str>,
    /// `[router] rule_arn` instead of the listener's default action.
    rule_router: bool,
}

impl Cfg {
    /// No verification at all.
    fn none() -> Cfg {
        Cfg::default()
    }

    /// Every kind of verification.
    fn all() -> Cfg {
        Cfg {
            header: true,
            listener: true,
            pre: true,
            after: true,
            post: true,
            alarms: true,
            metrics: true,
            inconclusive: None,
            rule_router: false,
        }
    }

    fn toml(self) -> String {
        let router = if self.rule_router {
            format!("rule_arn = \"{ROUTER_RULE}\"")
        } else {
            format!("listener_arn = \"{LISTENER}\"")
        };
        let mut text = format!(
            "service = \"{SERVICE}\"\nregion = \"us-east-1\"\n\n[router]\n{router}\n\
             target_groups = [\"{TG_A}\", \"{TG_B}\"]\n\n[retention]\nkeep_warm = \"2h\"\n\n\
             [test_traffic]\n"
        );
        if self.header {
            text.push_str(&format!("header = \"{HEADER}\"\n"));
        }
        if self.listener {
            text.push_str(&format!("listener_arn = \"{TEST_LISTENER}\"\n"));
        }
        text.push_str("\n[hooks]\n");
        if self.pre {
            text.push_str("pre_traffic = [\"./smoke-test.sh\"]\n");
        }
        if self.after {
            text.push_str("after_step = [\"./check.sh\"]\n");
        }
        if self.post {
            text.push_str("post_traffic = [\"./announce.sh\"]\n");
        }
        text.push_str("\n[analysis]\n");
        if self.alarms {
            text.push_str(&format!("alarms = [\"{ALARM}\"]\n"));
        }
        if self.metrics {
            text.push_str("max_5xx_rate = 0.01\nmax_p99_latency = \"500ms\"\n");
        }
        if let Some(mode) = self.inconclusive {
            text.push_str(&format!("inconclusive = \"{mode}\"\n"));
        }
        text
    }

    fn spec(self) -> Spec {
        let text = self.toml();
        Spec::parse(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
    }
}

fn arn(value: &str) -> TargetGroupArn {
    TargetGroupArn::parse(value).expect("test target group ARN")
}

fn name(value: &str) -> FleetName {
    FleetName::new(value)
}

fn plan(encoded: &str) -> Plan {
    Plan::decode(encoded).expect("test plan")
}

fn bluegreen() -> Plan {
    Plan::blue_green(None)
}

/// Blue/green behind a gate: 0% until promoted, then 100%.
fn gated() -> Plan {
    Plan::blue_green(Some(Pause::Manual))
}

/// 10% for [`BAKE`], 25% until promoted, 50%, then 100%.
fn canary() -> Plan {
    plan("canary 10@5m,25@manual,50,100")
}

/// A canary that starts at a 0% gate: 0% until promoted, 20% for 5m, then 100%.
fn gated_canary() -> Plan {
    plan("canary 0@manual,20@5m,100")
}

fn request(release: &str, plan: Plan) -> DeployRequest {
    DeployRequest {
        release: ReleaseName::parse(release).expect("test release"),
        launch: Launch::Image(ImageId::parse(AMI_2).expect("test AMI")),
        plan,
    }
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

/// The clock `since` after [`t0`]; a release that records no deadline must be healthy by
/// [`TIMEOUT`] after `t0`.
fn clock(since: Duration) -> Clock {
    Clock {
        now: t0() + since,
        health_deadline: t0() + TIMEOUT,
    }
}

/// Half a minute after the step in effect began: its pause is not over.
fn early() -> Clock {
    clock(Duration::from_secs(30))
}

/// Six minutes after the step in effect began: [`BAKE`] is over, the health timeout is not.
fn late() -> Clock {
    clock(Duration::from_secs(6 * 60))
}

/// A fleet and its targets in its slot.
#[derive(Debug, Clone)]
struct F {
    summary: FleetSummary,
    targets: Vec<TargetHealth>,
}

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
            tags: BTreeMap::new(),
            target_groups: Vec::new(),
            suspended_processes: Vec::new(),
            deleting: false,
            launch_template: None,
        },
        targets: Vec::new(),
    }
}

/// Fleet `checkout-<release>`, tagged by greenlight with `release` and `phase`.
fn ours(release: &str, phase: Phase) -> F {
    fleet(&format!("{SERVICE}-{release}"))
        .tag(tags::SCHEMA, &tags::SCHEMA_VERSION.to_string())
        .tag(tags::SERVICE, SERVICE)
        .tag(tags::RELEASE, release)
        .tag(tags::PHASE, phase.as_str())
}

impl F {
    fn tag(mut self, key: &str, value: &str) -> F {
        self.summary.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    fn plan(self, plan: &Plan) -> F {
        self.tag(tags::PLAN, &plan.encode())
    }

    /// Step `n` took effect at [`t0`].
    fn at_step(self, n: u32) -> F {
        self.tag(tags::STEP, &n.to_string())
            .tag(tags::STEP_AT, &tags::timestamp(t0()))
    }

    fn hooks_done(self, value: &str) -> F {
        self.tag(tags::HOOKS_DONE, value)
    }

    fn abort(self, value: &str) -> F {
        self.tag(tags::ABORT, value)
    }

    fn promoted(self, value: &str) -> F {
        self.tag(tags::PROMOTED, value)
    }

    fn instance(mut self, state: TargetState) -> F {
        let id = format!("i-{}-{}", self.summary.name, self.summary.instances.len());
        self.targets.push(TargetHealth {
            target_id: id.clone(),
            state,
            reason: None,
            description: None,
        });
        self.summary.instances.push(FleetInstance {
            id,
            lifecycle_state: FleetInstance::IN_SERVICE.to_owned(),
            health_status: "Healthy".to_owned(),
        });
        self
    }

    /// Two instances in service, both healthy: ready.
    fn serving(self) -> F {
        self.instance(TargetState::Healthy)
            .instance(TargetState::Healthy)
    }

    /// One healthy instance and one still registering: not ready, not down.
    fn starting(self) -> F {
        self.instance(TargetState::Healthy)
            .instance(TargetState::Initial)
    }
}

/// The live release: v1, ready.
fn v1() -> F {
    ours("v1", Phase::Live).tag(tags::IMAGE, AMI_1).serving()
}

/// Release v2 of `plan` in `phase`, no instances yet.
fn v2(plan: &Plan, phase: Phase) -> F {
    ours("v2", phase).tag(tags::IMAGE, AMI_2).plan(plan)
}

/// Release v2, healthy, not started on its plan.
fn provisioning(plan: &Plan) -> F {
    v2(plan, Phase::Provisioning).serving()
}

/// Release v2, healthy, at step `n` since [`t0`].
fn releasing(plan: &Plan, n: u32) -> F {
    v2(plan, Phase::Releasing).at_step(n).serving()
}

fn forwards(list: &[(&str, u16)]) -> Vec<Forward> {
    list.iter()
        .map(|(target_group, weight)| Forward {
            target_group: arn(target_group),
            weight: Weight::new(*weight).expect("test weight"),
        })
        .collect()
}

fn router(list: &[(&str, u16)]) -> RouterState {
    RouterState {
        id: RouterId::Listener(ListenerArn::parse(LISTENER).expect("test listener")),
        action: RouterAction::Forward {
            forwards: forwards(list),
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

fn observe(router_state: RouterState, a: Vec<F>, b: Vec<F>) -> Observed {
    Observed {
        router: router_state,
        slots: [slot_observed(TG_A, a), slot_observed(TG_B, b)],
        verify: Default::default(),
    }
}

/// The forwards the router has while v1 in slot a takes everything (b named at 0).
fn seen_gate() -> Vec<(&'static str, u16)> {
    vec![(TG_A, 1), (TG_B, 0)]
}

/// The forwards of greenlight's split: green in slot b takes `green` percent.
fn seen_split(green: u16) -> Vec<(&'static str, u16)> {
    vec![(TG_A, 100 - green), (TG_B, green)]
}

/// The forwards after the flip to slot b.
fn seen_flipped() -> Vec<(&'static str, u16)> {
    vec![(TG_A, 0), (TG_B, 100)]
}

/// v1 live in slot a with all traffic, `green` in slot b.
fn at_gate(green: F) -> Observed {
    observe(router(&seen_gate()), vec![v1()], vec![green])
}

/// v1 in slot a, `green` in slot b taking `share` percent.
fn taking(share: u16, green: F) -> Observed {
    observe(router(&seen_split(share)), vec![v1()], vec![green])
}

/// The last step landed: `green` in slot b takes all traffic, `previous` in slot a.
fn flipped(green: F, previous: Vec<F>) -> Observed {
    observe(router(&seen_flipped()), previous, vec![green])
}

fn rule_arn(id: &str) -> RuleArn {
    RuleArn::parse(&format!(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2/{id}"
    ))
    .expect("test rule ARN")
}

fn host(value: &str) -> RuleCondition {
    RuleCondition {
        field: "host-header".into(),
        values: vec![value.to_owned()],
        header_name: None,
        query: Vec::new(),
    }
}

/// The listener's default rule: forwards to slot a.
fn default_rule() -> ListenerRule {
    ListenerRule {
        arn: rule_arn("default"),
        priority: None,
        conditions: Vec::new(),
        target_groups: vec![arn(TG_A)],
        tags: BTreeMap::new(),
    }
}

/// Another service's rule on the same listener, at priority 10.
fn shop_rule() -> ListenerRule {
    ListenerRule {
        arn: rule_arn("shop"),
        priority: Some(10),
        conditions: vec![host("shop.example.com")],
        target_groups: vec![arn(TG_OTHER)],
        tags: BTreeMap::new(),
    }
}

/// The router's own rule, when the config names a rule.
fn router_rule(priority: u32) -> ListenerRule {
    ListenerRule {
        arn: RuleArn::parse(ROUTER_RULE).expect("router rule ARN"),
        priority: Some(priority),
        conditions: vec![host("checkout.example.com")],
        target_groups: vec![arn(TG_A), arn(TG_B)],
        tags: BTreeMap::new(),
    }
}

/// The id in the ARN of the test rule for `release`.
fn test_rule_id(release: &str) -> String {
    format!("test-{release}")
}

/// A test rule as greenlight opens it, tagged for `service` and `release`, at `priority`.
fn test_rule_of(service: &str, release: &str, priority: u32) -> ListenerRule {
    let service_name = crate::core::names::ServiceName::parse(service).expect("test service");
    ListenerRule {
        arn: rule_arn(&format!("{}-{service}", test_rule_id(release))),
        priority: Some(priority),
        conditions: vec![RuleCondition::header(HEADER, release)],
        target_groups: vec![arn(TG_B)],
        tags: test_traffic::rule_tags(&service_name, release)
            .into_iter()
            .collect(),
    }
}

/// This service's test rule for `release`.
fn test_rule(release: &str, priority: u32) -> ListenerRule {
    ListenerRule {
        arn: rule_arn(&test_rule_id(release)),
        ..test_rule_of(SERVICE, release, priority)
    }
}

/// A rule that names a release of this service but is not tagged as test traffic.
fn lookalike_rule(release: &str, priority: u32) -> ListenerRule {
    let mut rule = test_rule_of(SERVICE, release, priority);
    rule.arn = rule_arn(&format!("lookalike-{release}"));
    rule.tags.remove(test_traffic::TEST_TRAFFIC);
    rule
}

/// The listener's rules before any test rule: its default, and another service's at 10.
fn base_rules() -> Vec<ListenerRule> {
    vec![default_rule(), shop_rule()]
}

/// [`base_rules`] and the test rule of `release` at 9.
fn with_rule(release: &str) -> Vec<ListenerRule> {
    let mut rules = base_rules();
    rules.push(test_rule(release, 9));
    rules
}

/// Green's and blue's metrics over green's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metrics {
    /// 0.1% 5xx over 1000 requests, p99 120ms.
    Pass,
    /// 5% 5xx over 1000 requests.
    Fail,
    /// 20 requests: too few for a verdict.
    Thin,
}

fn comparison(m: Metrics) -> Comparison {
    let (requests, errors, p99) = match m {
        Metrics::Pass => (1000.0, 1.0, 120.0),
        Metrics::Fail => (1000.0, 50.0, 120.0),
        Metrics::Thin => (20.0, 0.0, 100.0),
    };
    Comparison {
        green: MetricWindow {
            target_group: arn(TG_B),
            requests,
            errors_5xx: errors,
            p99_ms: Some(p99),
        },
        blue: MetricWindow {
            target_group: arn(TG_A),
            requests: 9000.0,
            errors_5xx: 9.0,
            p99_ms: None,
        },
        since: t0(),
    }
}

fn test_listener_state(target_group: &str) -> RouterState {
    RouterState {
        id: RouterId::Listener(ListenerArn::parse(TEST_LISTENER).expect("test listener")),
        action: RouterAction::Forward {
            forwards: forwards(&[(target_group, 1)]),
        },
    }
}

/// What the engine reads for verification, set on an observation.
trait Verifying: Sized {
    fn rules(self, rules: Vec<ListenerRule>) -> Self;
    fn test_listener_on(self, target_group: &str) -> Self;
    fn alarm(self, state: AlarmValue) -> Self;
    fn metrics(self, m: Metrics) -> Self;
}

impl Verifying for Observed {
    fn rules(mut self, rules: Vec<ListenerRule>) -> Self {
        self.verify.rules = Some(rules);
        self
    }

    fn test_listener_on(mut self, target_group: &str) -> Self {
        self.verify.test_listener = Some(test_listener_state(target_group));
        self
    }

    fn alarm(mut self, state: AlarmValue) -> Self {
        self.verify.alarms = vec![AlarmState {
            name: ALARM.to_owned(),
            state,
            reason: ALARM_REASON.to_owned(),
        }];
        self
    }

    fn metrics(mut self, m: Metrics) -> Self {
        self.verify.metrics = Some(comparison(m));
        self
    }
}

/// The full verification state of a release whose test traffic is in place: the header rule
/// for v2, the test listener on green, alarms quiet.
fn verified(observed: Observed) -> Observed {
    observed
        .rules(with_rule("v2"))
        .test_listener_on(TG_B)
        .alarm(AlarmValue::Ok)
}

// ---------------------------------------------------------------------------------------------
// Expected actions
// ---------------------------------------------------------------------------------------------

fn write(expected: &[(&str, u16)], written: &[(&str, u16)]) -> RouterWrite {
    RouterWrite {
        expected: forwards(expected),
        forwards: forwards(written),
        stickiness: Stickiness::Keep,
    }
}

/// v2's header rule on the router's listener, forwarding to slot b.
fn open_rule(priority: u32, conditions: Vec<RuleCondition>) -> Action {
    Action::OpenTestRule {
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        listener: ListenerArn::parse(LISTENER).expect("listener"),
        priority,
        conditions,
        target_group: arn(TG_B),
    }
}

fn header_v2() -> Vec<RuleCondition> {
    vec![RuleCondition::header(HEADER, "v2")]
}

fn close_rule(release: &str) -> Action {
    Action::CloseTestRule {
        rule: rule_arn(&test_rule_id(release)),
        release: release.to_owned(),
    }
}

/// The test listener, now forwarding to `from`, to `to`.
fn point(to: &str, from: &str) -> Action {
    Action::PointTestListener {
        listener: ListenerArn::parse(TEST_LISTENER).expect("test listener"),
        to: arn(to),
        write: write(&[(from, 1)], &[(to, 100)]),
    }
}

/// The hooks of `stage` for v2 in slot b (v1 live in slot a), recording `done`.
fn run_hooks(stage: HookStage, done: &str, weight: u8, step: Option<u32>, steps: u32) -> Action {
    Action::RunHooks {
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        stage,
        context: HookContext {
            live_release: "v1".to_owned(),
            green_target_group: Some(arn(TG_B)),
            live_target_group: Some(arn(TG_A)),
            slot: Some(Slot::B),
            weight: Percent::new(weight).expect("weight"),
            step: step.map(StepNumber),
            steps,
        },
        done: done.to_owned(),
    }
}

fn begin(of: u32) -> Action {
    Action::Begin {
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        step: StepNumber(1),
        of,
    }
}

fn shift(weight: u8, step: u32, of: u32, seen: &[(&str, u16)], verdict: Option<&str>) -> Action {
    Action::Shift {
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        to: arn(TG_B),
        from: arn(TG_A),
        weight: Percent::new(weight).expect("weight"),
        step: StepNumber(step),
        of,
        verdict: verdict.map(str::to_owned),
        write: write(
            seen,
            &[(TG_A, 100 - u16::from(weight)), (TG_B, u16::from(weight))],
        ),
    }
}

fn flip(seen: &[(&str, u16)], verdict: Option<&str>) -> Action {
    Action::Flip {
        to: arn(TG_B),
        from: arn(TG_A),
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        verdict: verdict.map(str::to_owned),
        write: write(seen, &seen_flipped()),
    }
}

fn mark_warm_v1(now: SystemTime) -> Action {
    Action::MarkWarm {
        fleet: name("checkout-v1"),
        release: "v1".to_owned(),
        until: now + KEEP_WARM,
        suspend: WARM_SUSPENDS.iter().map(|p| (*p).to_owned()).collect(),
        rolled_back: false,
    }
}

fn mark_live_v2() -> Action {
    Action::MarkLive {
        fleet: name("checkout-v2"),
        release: "v2".to_owned(),
        resume: Vec::new(),
    }
}

fn pause_wait(step: u32, of: u32, weight: u8, until: Option<SystemTime>) -> Decision {
    Decision::Wait(Wait {
        until,
        why: WaitReason::Pause {
            release: "v2".to_owned(),
            step: StepNumber(step),
            of,
            weight: Percent::new(weight).expect("weight"),
        },
    })
}

fn gate_wait(step: u32, of: u32, weight: u8) -> Decision {
    Decision::Wait(Wait {
        until: None,
        why: WaitReason::Gate {
            release: "v2".to_owned(),
            step: StepNumber(step),
            of,
            weight: Percent::new(weight).expect("weight"),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// The command a case runs.
#[derive(Debug, Clone)]
enum Cmd {
    Deploy(DeployRequest),
    Resume,
    Abort,
    Rollback,
}

impl Cmd {
    fn deploy(plan: Plan) -> Cmd {
        Cmd::Deploy(request("v2", plan))
    }

    fn decide(&self, spec: &Spec, observed: &Observed, clock: Clock) -> Decision {
        match self {
            Cmd::Deploy(request) => decide_deploy(spec, request, observed, clock),
            Cmd::Resume => decide_resume(spec, observed, clock),
            Cmd::Abort => decide_abort(spec, observed, clock.now, BY),
            Cmd::Rollback => decide_rollback(spec, observed, clock.now, None, BY),
        }
    }
}

#[derive(Debug)]
enum Expect {
    Is(Decision),
    /// An action of this kind ([`Action::name`]).
    Kind(&'static str),
    /// All of release v2's share (slot b) back to v1 (slot a) in one call, expecting the
    /// router as observed, for a reason that says every one of these.
    RouteBack(&'static [&'static str]),
    /// Release v2 failed for one reason that says every one of these.
    Fails(&'static [&'static str]),
    /// Release v2's stop recorded on its fleet, before its test traffic closes, for a reason
    /// that says every one of these.
    Records(&'static [&'static str]),
    /// Waits for release v2 to be healthy.
    Health,
    /// Refused with this kind, for a reason that says every one of these.
    Refused(RefusalKind, &'static [&'static str]),
}

fn act(action: Action) -> Expect {
    Expect::Is(Decision::Act(action))
}

struct Case {
    name: &'static str,
    cfg: Cfg,
    cmd: Cmd,
    observed: Observed,
    clock: Clock,
    expect: Expect,
}

/// A case of `cmd` with every kind of verification configured, at the [`early`] clock.
fn case(name: &'static str, cmd: Cmd, observed: Observed, expect: Expect) -> Case {
    Case {
        name,
        cfg: Cfg::all(),
        cmd,
        observed,
        clock: early(),
        expect,
    }
}

impl Case {
    fn cfg(self, cfg: Cfg) -> Case {
        Case { cfg, ..self }
    }

    fn at(self, clock: Clock) -> Case {
        Case { clock, ..self }
    }
}

fn says(name: &str, text: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            text.contains(part),
            "{name}: {text:?} does not say {part:?}"
        );
    }
    assert!(!text.contains('\n'), "{name}: {text:?} is not one line");
}

/// Green's (slot b's) share of `forwards`, in percent.
fn share_b(forwards: &[Forward]) -> u32 {
    let total: u32 = forwards.iter().map(|f| u32::from(f.weight.get())).sum();
    let b: u32 = forwards
        .iter()
        .filter(|f| f.target_group == arn(TG_B))
        .map(|f| u32::from(f.weight.get()))
        .sum();
    (b * 100).checked_div(total).unwrap_or(0)
}

fn check(name: &str, observed: &Observed, decision: &Decision, expect: &Expect) {
    match (expect, decision) {
        (Expect::Is(expected), _) => assert_eq!(decision, expected, "{name}"),
        (Expect::Kind(kind), Decision::Act(action)) => {
            assert_eq!(action.name(), *kind, "{name}: {action:?}")
        }
        (
            Expect::RouteBack(parts),
            Decision::Act(Action::RouteBack {
                to,
                from,
                fleet,
                release,
                reason,
                write,
            }),
        ) => {
            assert_eq!(
                (to, from, fleet.as_str(), release.as_str()),
                (&arn(TG_A), &arn(TG_B), "checkout-v2", "v2"),
                "{name}"
            );
            assert_eq!(write.expected, observed.router.forwards(), "{name}");
            assert_eq!(share_b(&write.forwards), 0, "{name}: {write:?}");
            assert!(
                write.forwards.iter().any(|f| f.target_group == arn(TG_A)),
                "{name}: {write:?}"
            );
            says(name, &reason.description, parts);
        }
        (
            Expect::Fails(parts),
            Decision::Act(Action::FailRelease {
                fleet,
                release,
                reasons,
            }),
        ) => {
            assert_eq!((fleet.as_str(), release.as_str()), ("checkout-v2", "v2"));
            assert_eq!(reasons.len(), 1, "{name}: {reasons:?}");
            says(name, &reasons[0].description, parts);
        }
        (
            Expect::Records(parts),
            Decision::Act(Action::RecordStop {
                fleet,
                release,
                reason,
            }),
        ) => {
            assert_eq!((fleet.as_str(), release.as_str()), ("checkout-v2", "v2"));
            says(name, &reason.description, parts);
        }
        (
            Expect::Health,
            Decision::Wait(Wait {
                why: WaitReason::Health { fleet, health },
                ..
            }),
        ) => {
            assert_eq!(fleet.as_str(), "checkout-v2", "{name}");
            assert!(!health.ready(), "{name}: waits on a ready fleet");
        }
        (Expect::Refused(kind, parts), Decision::Refuse(refusal)) => {
            assert_eq!(refusal.kind, *kind, "{name}: {}", refusal.message);
            says(name, &refusal.message, parts);
        }
        (expect, decision) => panic!("{name}: expected {expect:?}, decided {decision:?}"),
    }
}

fn run(cases: Vec<Case>) -> usize {
    let mut names = BTreeSet::new();
    let count = cases.len();
    for c in cases {
        assert!(names.insert(c.name), "{}: named twice", c.name);
        let spec = c.cfg.spec();
        let decision = c.cmd.decide(&spec, &c.observed, c.clock);
        check(c.name, &c.observed, &decision, &c.expect);
    }
    count
}

// ---------------------------------------------------------------------------------------------
// 1. The gates when green becomes ready
// ---------------------------------------------------------------------------------------------

#[test]
fn a_ready_release_opens_test_traffic_then_runs_its_hooks_then_takes_its_first_step() {
    let resume = || Cmd::Resume;
    let g = gated;
    run(vec![
        case(
            "not ready yet: nothing opens",
            resume(),
            at_gate(v2(&g(), Phase::Provisioning).starting())
                .rules(base_rules())
                .test_listener_on(TG_B)
                .alarm(AlarmValue::Ok),
            Expect::Health,
        ),
        case(
            "ready: the header rule first, before every other rule",
            resume(),
            at_gate(provisioning(&g()))
                .rules(base_rules())
                .test_listener_on(TG_B)
                .alarm(AlarmValue::Ok),
            act(open_rule(9, header_v2())),
        ),
        case(
            "ready, deploy with the test listener on green: the header rule",
            Cmd::deploy(g()),
            at_gate(provisioning(&g()))
                .rules(base_rules())
                .test_listener_on(TG_B)
                .alarm(AlarmValue::Ok),
            act(open_rule(9, header_v2())),
        ),
        case(
            "ready, the test listener elsewhere: the header rule before the listener",
            resume(),
            at_gate(provisioning(&g()))
                .rules(base_rules())
                .test_listener_on(TG_A)
                .alarm(AlarmValue::Ok),
            act(open_rule(9, header_v2())),
        ),
        case(
            "deploy re-joins green through the test listener before anything else",
            Cmd::deploy(g()),
            at_gate(provisioning(&g()))
                .rules(base_rules())
                .test_listener_on(TG_A)
                .alarm(AlarmValue::Ok),
            act(point(TG_B, TG_A)),
        ),
        case(
            "rule in place: the test listener to green",
            resume(),
            at_gate(provisioning(&g()))
                .rules(with_rule("v2"))
                .test_listener_on(TG_A)
                .alarm(AlarmValue::Ok),
            act(point(TG_B, TG_A)),
        ),
        case(
            "rule in place, the test listener on another target group: to green",
            resume(),
            at_gate(provisioning(&g()))
                .rules(with_rule("v2"))
                .test_listener_on(TG_OTHER)
                .alarm(AlarmValue::Ok),
            act(point(TG_B, TG_OTHER)),
        ),
        case(
            "rule and listener in place: the pre_traffic hooks",
            resume(),
            verified(at_gate(provisioning(&g()))),
            act(run_hooks(HookStage::PreTraffic, "pre_traffic", 0, None, 2)),
        ),
        case(
            "rule and listener in place, deploy: the pre_traffic hooks",
            Cmd::deploy(g()),
            verified(at_gate(provisioning(&g()))),
            act(run_hooks(HookStage::PreTraffic, "pre_traffic", 0, None, 2)),
        ),
        case(
            "another stage done: pre_traffic is still due, and recorded beside it",
            resume(),
            verified(at_gate(provisioning(&g()).hooks_done("after_step:1"))),
            act(run_hooks(
                HookStage::PreTraffic,
                "after_step:1,pre_traffic",
                0,
                None,
                2,
            )),
        ),
        case(
            "all in place, a gate first: begin at 0%",
            resume(),
            verified(at_gate(provisioning(&g()).hooks_done("pre_traffic"))),
            act(begin(2)),
        ),
        case(
            "all in place, blue/green: the flip",
            resume(),
            verified(at_gate(
                provisioning(&bluegreen()).hooks_done("pre_traffic"),
            )),
            act(flip(&seen_gate(), None)),
        ),
        case(
            "all in place, canary: the first shift",
            resume(),
            verified(at_gate(provisioning(&canary()).hooks_done("pre_traffic"))),
            act(shift(10, 1, 4, &seen_gate(), None)),
        ),
        case(
            "all in place, deploy of a canary: the first shift",
            Cmd::deploy(canary()),
            verified(at_gate(provisioning(&canary()).hooks_done("pre_traffic"))),
            act(shift(10, 1, 4, &seen_gate(), None)),
        ),
        case(
            "all in place, promoted in full: the flip",
            resume(),
            verified(at_gate(
                provisioning(&canary())
                    .hooks_done("pre_traffic")
                    .promoted("full"),
            )),
            act(flip(&seen_gate(), None)),
        ),
        case(
            "the pre_traffic hooks before the flip even when promoted in full",
            resume(),
            verified(at_gate(provisioning(&canary()).promoted("full"))),
            act(run_hooks(HookStage::PreTraffic, "pre_traffic", 0, None, 4)),
        ),
        case(
            "another service's test rule for the same release name does not count",
            resume(),
            at_gate(provisioning(&g()))
                .rules(vec![
                    default_rule(),
                    shop_rule(),
                    test_rule_of("search", "v2", 9),
                ])
                .test_listener_on(TG_B)
                .alarm(AlarmValue::Ok),
            act(open_rule(8, header_v2())),
        ),
        case(
            "a rule naming the release without the test-traffic tag does not count",
            resume(),
            at_gate(provisioning(&g()))
                .rules(vec![default_rule(), shop_rule(), lookalike_rule("v2", 9)])
                .test_listener_on(TG_B)
                .alarm(AlarmValue::Ok),
            act(open_rule(8, header_v2())),
        ),
        case(
            "the free priority closest before the first rule",
            resume(),
            at_gate(provisioning(&g()))
                .rules(vec![
                    default_rule(),
                    ListenerRule {
                        priority: Some(3),
                        arn: rule_arn("other"),
                        ..shop_rule()
                    },
                    shop_rule(),
                ])
                .test_listener_on(TG_B),
            act(open_rule(2, header_v2())),
        ),
        case(
            "alarms quiet (insufficient data): on to the step",
            resume(),
            verified(at_gate(provisioning(&g()).hooks_done("pre_traffic")))
                .alarm(AlarmValue::InsufficientData),
            act(begin(2)),
        ),
    ]);
}

#[test]
fn a_rule_router_s_test_rule_copies_its_conditions_and_comes_before_it() {
    let cfg = Cfg {
        rule_router: true,
        ..Cfg::all()
    };
    let rules = vec![default_rule(), shop_rule(), router_rule(20)];
    run(vec![
        case(
            "before the router's rule, with its host and the header",
            Cmd::Resume,
            at_gate(provisioning(&gated()))
                .rules(rules.clone())
                .test_listener_on(TG_B)
                .alarm(AlarmValue::Ok),
            act(open_rule(
                19,
                vec![
                    host("checkout.example.com"),
                    RuleCondition::header(HEADER, "v2"),
                ],
            )),
        )
        .cfg(cfg),
        case(
            "the closest free priority before the router's rule",
            Cmd::Resume,
            at_gate(provisioning(&gated()))
                .rules(vec![
                    default_rule(),
                    router_rule(20),
                    ListenerRule {
                        priority: Some(19),
                        arn: rule_arn("other"),
                        ..shop_rule()
                    },
                ])
                .test_listener_on(TG_B),
            act(open_rule(
                18,
                vec![
                    host("checkout.example.com"),
                    RuleCondition::header(HEADER, "v2"),
                ],
            )),
        )
        .cfg(cfg),
        case(
            "the rule in place: the hooks",
            Cmd::Resume,
            at_gate(provisioning(&gated()))
                .rules({
                    let mut rules = rules.clone();
                    rules.push(test_rule("v2", 19));
                    rules
                })
                .test_listener_on(TG_B),
            act(run_hooks(HookStage::PreTraffic, "pre_traffic", 0, None, 2)),
        )
        .cfg(cfg),
    ]);
}

#[test]
fn without_verification_a_ready_release_goes_straight_to_its_step() {
    let header = Cfg {
        header: true,
        ..Cfg::none()
    };
    let listener = Cfg {
        listener: true,
        ..Cfg::none()
    };
    let hooks = Cfg {
        pre: true,
        after: true,
        post: true,
        ..Cfg::none()
    };
    let alarms = Cfg {
        alarms: true,
        ..Cfg::none()
    };
    run(vec![
        case(
            "nothing configured, gated: begin",
            Cmd::Resume,
            at_gate(provisioning(&gated())),
            act(begin(2)),
        )
        .cfg(Cfg::none()),
        case(
            "nothing configured, blue/green: flip",
            Cmd::deploy(bluegreen()),
            at_gate(provisioning(&bluegreen())),
            act(flip(&seen_gate(), None)),
        )
        .cfg(Cfg::none()),
        case(
            "nothing configured, canary: shift",
            Cmd::deploy(canary()),
            at_gate(provisioning(&canary())),
            act(shift(10, 1, 4, &seen_gate(), None)),
        )
        .cfg(Cfg::none()),
        case(
            "nothing configured: rules in the observation change nothing",
            Cmd::Resume,
            at_gate(provisioning(&gated())).rules(base_rules()),
            act(begin(2)),
        )
        .cfg(Cfg::none()),
        case(
            "header only: the rule",
            Cmd::Resume,
            at_gate(provisioning(&gated())).rules(base_rules()),
            act(open_rule(9, header_v2())),
        )
        .cfg(header),
        case(
            "header only, the rule in place: begin",
            Cmd::Resume,
            at_gate(provisioning(&gated())).rules(with_rule("v2")),
            act(begin(2)),
        )
        .cfg(header),
        case(
            "test listener only, elsewhere: to green",
            Cmd::Resume,
            at_gate(provisioning(&gated())).test_listener_on(TG_A),
            act(point(TG_B, TG_A)),
        )
        .cfg(listener),
        case(
            "test listener only, on green: flip",
            Cmd::deploy(bluegreen()),
            at_gate(provisioning(&bluegreen())).test_listener_on(TG_B),
            act(flip(&seen_gate(), None)),
        )
        .cfg(listener),
        case(
            "hooks only: pre_traffic",
            Cmd::Resume,
            at_gate(provisioning(&bluegreen())),
            act(run_hooks(HookStage::PreTraffic, "pre_traffic", 0, None, 1)),
        )
        .cfg(hooks),
        case(
            "alarms only, quiet: flip",
            Cmd::Resume,
            at_gate(provisioning(&bluegreen())).alarm(AlarmValue::Ok),
            act(flip(&seen_gate(), None)),
        )
        .cfg(alarms),
    ]);
}

// ---------------------------------------------------------------------------------------------
// 2. Joining through the test listener
// ---------------------------------------------------------------------------------------------

#[test]
fn deploy_joins_the_idle_slot_through_the_test_listener_when_there_is_one() {
    let listener = Cfg {
        listener: true,
        ..Cfg::none()
    };
    let header = Cfg {
        header: true,
        ..Cfg::none()
    };
    let unnamed = || router(&[(TG_A, 1)]);
    let empty_idle = |r: RouterState| observe(r, vec![v1()], vec![]);
    let failed_v2 = || ours("v2", Phase::Failed).tag(tags::IMAGE, AMI_2);
    run(vec![
        case(
            "an empty idle slot: the test listener to it, not the router",
            Cmd::deploy(bluegreen()),
            empty_idle(router(&seen_gate())).test_listener_on(TG_A),
            act(point(TG_B, TG_A)),
        )
        .cfg(listener),
        case(
            "the router does not name the idle slot: still the test listener, router untouched",
            Cmd::deploy(bluegreen()),
            empty_idle(unnamed()).test_listener_on(TG_A),
            act(point(TG_B, TG_A)),
        )
        .cfg(listener),
        case(
            "every kind configured: the test listener",
            Cmd::deploy(bluegreen()),
            empty_idle(unnamed())
                .rules(base_rules())
                .test_listener_on(TG_A)
                .alarm(AlarmValue::Ok),
            act(point(TG_B, TG_A)),
        ),
        case(
            "the test listener already on the idle slot: create green",
            Cmd::deploy(bluegreen()),
            empty_idle(unnamed()).test_listener_on(TG_B),
            Expect::Kind("create_fleet"),
        )
        .cfg(listener),
        case(
            "no test listener: the router names the idle slot at 0",
            Cmd::deploy(bluegreen()),
            empty_idle(unnamed()),
            act(Action::JoinRouter {
                target_group: arn(TG_B),
                live: arn(TG_A),
                write: write(&[(TG_A, 1)], &[(TG_B, 0), (TG_A, 100)]),
            }),
        )
        .cfg(Cfg::none()),
        case(
            "a header but no test listener: the router joins",
            Cmd::deploy(bluegreen()),
            empty_idle(unnamed()).rules(base_rules()),
            act(Action::JoinRouter {
                target_group: arn(TG_B),
                live: arn(TG_A),
                write: write(&[(TG_A, 1)], &[(TG_B, 0), (TG_A, 100)]),
            }),
        )
        .cfg(header),
        case(
            "no test listener, the router names it: create green",
            Cmd::deploy(bluegreen()),
            empty_idle(router(&seen_gate())),
            Expect::Kind("create_fleet"),
        )
        .cfg(Cfg::none()),
        case(
            "a failed release deployed again: the test listener first",
            Cmd::deploy(bluegreen()),
            observe(unnamed(), vec![v1()], vec![failed_v2()]).test_listener_on(TG_A),
            act(point(TG_B, TG_A)),
        )
        .cfg(listener),
        case(
            "a failed release deployed again, the test listener on it: revive",
            Cmd::deploy(bluegreen()),
            observe(unnamed(), vec![v1()], vec![failed_v2()]).test_listener_on(TG_B),
            Expect::Kind("revive_fleet"),
        )
        .cfg(listener),
        case(
            "green being created: the test listener to it before configuring it",
            Cmd::deploy(bluegreen()),
            observe(
                unnamed(),
                vec![v1()],
                vec![v2(&bluegreen(), Phase::Creating)],
            )
            .test_listener_on(TG_A),
            act(point(TG_B, TG_A)),
        )
        .cfg(listener),
        case(
            "provisioning green that lost its test listener: joined again",
            Cmd::deploy(bluegreen()),
            observe(
                unnamed(),
                vec![v1()],
                vec![v2(&bluegreen(), Phase::Provisioning).starting()],
            )
            .test_listener_on(TG_A),
            act(point(TG_B, TG_A)),
        )
        .cfg(listener),
        case(
            "a release being aborted is not joined again",
            Cmd::deploy(bluegreen()),
            observe(
                unnamed(),
                vec![v1()],
                vec![provisioning(&bluegreen()).abort(BOB)],
            )
            .test_listener_on(TG_A),
            Expect::Fails(&["aborted by bob at"]),
        )
        .cfg(listener),
    ]);
}

// ---------------------------------------------------------------------------------------------
// 3. During a step: hooks after it, and alarms
// ---------------------------------------------------------------------------------------------

#[test]
fn after_step_hooks_run_before_the_pause_counts() {
    let c = canary;
    let done1 = "pre_traffic,after_step:1";
    run(vec![
        case(
            "step 1 at 10%: its hooks",
            Cmd::Resume,
            verified(taking(10, releasing(&c(), 1).hooks_done("pre_traffic"))),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(1)),
                done1,
                10,
                Some(1),
                4,
            )),
        ),
        case(
            "step 1 at 10%, deploy: its hooks",
            Cmd::deploy(c()),
            verified(taking(10, releasing(&c(), 1).hooks_done("pre_traffic"))),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(1)),
                done1,
                10,
                Some(1),
                4,
            )),
        ),
        case(
            "step 1 with its bake over: still the hooks first",
            Cmd::Resume,
            verified(taking(10, releasing(&c(), 1).hooks_done("pre_traffic")))
                .metrics(Metrics::Pass),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(1)),
                done1,
                10,
                Some(1),
                4,
            )),
        )
        .at(late()),
        case(
            "step 1 promoted in full: the hooks first",
            Cmd::Resume,
            verified(taking(
                10,
                releasing(&c(), 1)
                    .hooks_done("pre_traffic")
                    .promoted("full"),
            )),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(1)),
                done1,
                10,
                Some(1),
                4,
            )),
        ),
        case(
            "step 1's hooks done: the bake counts",
            Cmd::Resume,
            verified(taking(10, releasing(&c(), 1).hooks_done(done1))),
            Expect::Is(pause_wait(1, 4, 10, Some(t0() + BAKE))),
        ),
        case(
            "step 2: its own hooks, though step 1's ran",
            Cmd::Resume,
            verified(taking(25, releasing(&c(), 2).hooks_done(done1))),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(2)),
                "pre_traffic,after_step:1,after_step:2",
                25,
                Some(2),
                4,
            )),
        ),
        case(
            "step 3 at 50% (no pause): its hooks before the flip",
            Cmd::Resume,
            verified(taking(
                50,
                releasing(&c(), 3).hooks_done("pre_traffic,after_step:1,after_step:2"),
            )),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(3)),
                "pre_traffic,after_step:1,after_step:2,after_step:3",
                50,
                Some(3),
                4,
            )),
        ),
        case(
            "at the 0% gate: no after_step hooks",
            Cmd::Resume,
            verified(at_gate(releasing(&gated(), 1).hooks_done("pre_traffic"))),
            Expect::Is(gate_wait(1, 2, 0)),
        ),
        case(
            "at a canary's 0% gate, promoted: no hooks, on to 20%",
            Cmd::Resume,
            verified(at_gate(
                releasing(&gated_canary(), 1)
                    .hooks_done("pre_traffic")
                    .promoted("1"),
            )),
            act(shift(20, 2, 3, &seen_gate(), None)),
        ),
        case(
            "not fully healthy at step 1: health, not hooks",
            Cmd::Resume,
            verified(taking(
                10,
                v2(&c(), Phase::Releasing)
                    .at_step(1)
                    .hooks_done("pre_traffic")
                    .starting(),
            )),
            Expect::Health,
        ),
        case(
            "no after_step hooks configured: the bake counts",
            Cmd::Resume,
            verified(taking(10, releasing(&c(), 1).hooks_done("pre_traffic"))),
            Expect::Is(pause_wait(1, 4, 10, Some(t0() + BAKE))),
        )
        .cfg(Cfg {
            after: false,
            ..Cfg::all()
        }),
    ]);
}

#[test]
fn an_alarm_stops_the_release_wherever_green_is_healthy_or_takes_traffic() {
    let alarming = |o: Observed| verified(o).alarm(AlarmValue::Alarm);
    let alarm_parts: &'static [&'static str] = &[
        "alarm checkout-5xx is in ALARM",
        "Threshold Crossed: 1 datapoint",
    ];
    let all_done = "pre_traffic,after_step:1,after_step:2,after_step:3";
    run(vec![
        case(
            "provisioning and ready: the stop is recorded first, no route back",
            Cmd::Resume,
            alarming(at_gate(provisioning(&gated()))),
            Expect::Records(alarm_parts),
        ),
        case(
            "provisioning and ready, deploy: the stop is recorded first",
            Cmd::deploy(gated()),
            alarming(at_gate(provisioning(&gated()))),
            Expect::Records(alarm_parts),
        ),
        case(
            "provisioning and ready, no rule yet: the stop is recorded first",
            Cmd::Resume,
            alarming(at_gate(provisioning(&gated()))).rules(base_rules()),
            Expect::Records(alarm_parts),
        ),
        case(
            "provisioning, stop recorded: its rule",
            Cmd::Resume,
            alarming(at_gate(provisioning(&gated()).abort(ALARM_STOP))),
            act(close_rule("v2")),
        ),
        case(
            "provisioning, stop recorded, deploy: its rule",
            Cmd::deploy(gated()),
            alarming(at_gate(provisioning(&gated()).abort(ALARM_STOP))),
            act(close_rule("v2")),
        ),
        case(
            "provisioning, stop recorded, no rule: the test listener back on live",
            Cmd::Resume,
            alarming(at_gate(provisioning(&gated()).abort(ALARM_STOP))).rules(base_rules()),
            act(point(TG_A, TG_B)),
        ),
        case(
            "provisioning, stop recorded, the alarm over: the stop goes on",
            Cmd::Resume,
            verified(at_gate(provisioning(&gated()).abort(ALARM_STOP))),
            act(close_rule("v2")),
        ),
        case(
            "provisioning and ready, test traffic closed: failed for the alarm",
            Cmd::Resume,
            alarming(at_gate(provisioning(&gated())))
                .rules(base_rules())
                .test_listener_on(TG_A),
            Expect::Fails(alarm_parts),
        ),
        case(
            "provisioning and ready, before its pre_traffic hooks: stopped",
            Cmd::Resume,
            alarming(at_gate(provisioning(&bluegreen())))
                .rules(base_rules())
                .test_listener_on(TG_A),
            Expect::Fails(alarm_parts),
        ),
        case(
            "provisioning, not healthy yet, no traffic: waits",
            Cmd::Resume,
            alarming(at_gate(v2(&gated(), Phase::Provisioning).starting())),
            Expect::Health,
        ),
        case(
            "at 10%: routed back",
            Cmd::Resume,
            alarming(taking(
                10,
                releasing(&canary(), 1).hooks_done("pre_traffic"),
            )),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "at 10% under deploy: routed back",
            Cmd::deploy(canary()),
            alarming(taking(
                10,
                releasing(&canary(), 1).hooks_done("pre_traffic"),
            )),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "at 10%, its after_step hooks due: routed back first",
            Cmd::Resume,
            alarming(taking(10, releasing(&canary(), 1))),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "at 10%, green not fully healthy: routed back",
            Cmd::Resume,
            alarming(taking(
                10,
                v2(&canary(), Phase::Releasing).at_step(1).starting(),
            )),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "at 25% with the pause over and the metrics passing: routed back",
            Cmd::Resume,
            alarming(taking(
                25,
                releasing(&canary(), 2).hooks_done(all_done).promoted("2"),
            ))
            .metrics(Metrics::Pass),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "provisioning with its first shift landed: routed back",
            Cmd::Resume,
            alarming(taking(10, provisioning(&canary()))),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "at the 0% gate, healthy: the stop is recorded first",
            Cmd::Resume,
            alarming(at_gate(releasing(&gated(), 1))),
            Expect::Records(alarm_parts),
        ),
        case(
            "at the 0% gate, the stop recorded: its rule",
            Cmd::Resume,
            alarming(at_gate(releasing(&gated(), 1).abort(ALARM_STOP))),
            act(close_rule("v2")),
        ),
        case(
            "at the 0% gate, not fully healthy: waits",
            Cmd::Resume,
            alarming(at_gate(
                v2(&gated(), Phase::Releasing).at_step(1).starting(),
            )),
            Expect::Health,
        ),
        case(
            "at 10%, the live release not fully healthy: refused, traffic stays",
            Cmd::Resume,
            alarming(observe(
                router(&seen_split(10)),
                vec![ours("v1", Phase::Live).starting()],
                vec![releasing(&canary(), 1)],
            )),
            Expect::Refused(
                RefusalKind::NeedsAttention,
                &["cannot return traffic to release v1", "keeps 10%"],
            ),
        ),
        case(
            "an alarm in OK: the hooks",
            Cmd::Resume,
            verified(taking(
                10,
                releasing(&canary(), 1).hooks_done("pre_traffic"),
            )),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(1)),
                "pre_traffic,after_step:1",
                10,
                Some(1),
                4,
            )),
        ),
        case(
            "an alarm with insufficient data: the hooks",
            Cmd::Resume,
            verified(taking(
                10,
                releasing(&canary(), 1).hooks_done("pre_traffic"),
            ))
            .alarm(AlarmValue::InsufficientData),
            act(run_hooks(
                HookStage::AfterStep(StepNumber(1)),
                "pre_traffic,after_step:1",
                10,
                Some(1),
                4,
            )),
        ),
        case(
            "an abort request comes before the alarm",
            Cmd::Resume,
            alarming(taking(10, releasing(&canary(), 1).abort(BOB))),
            Expect::RouteBack(&["aborted by bob at 2026-11-19T10:00:00Z"]),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// 4. The verdict at the end of a pause
// ---------------------------------------------------------------------------------------------

#[test]
fn the_metrics_verdict_decides_at_the_end_of_each_pause() {
    let done = "pre_traffic,after_step:1,after_step:2,after_step:3";
    // Step 1 at 10%, its bake over (the [`late`] clock), its hooks done.
    let baked = |m: Option<Metrics>| {
        let o = verified(taking(10, releasing(&canary(), 1).hooks_done(done)));
        match m {
            Some(m) => o.metrics(m),
            None => o,
        }
    };
    // Step 2 at 25%, a manual gate, promoted.
    let promoted = |m: Metrics, value: &str| {
        verified(taking(
            25,
            releasing(&canary(), 2).hooks_done(done).promoted(value),
        ))
        .metrics(m)
    };
    let inconclusive = |mode| Cfg {
        inconclusive: Some(mode),
        ..Cfg::all()
    };
    let no_metrics = Cfg {
        metrics: false,
        ..Cfg::all()
    };
    run(vec![
        case(
            "fail: routed back with the reasons and the numbers",
            Cmd::Resume,
            baked(Some(Metrics::Fail)),
            Expect::RouteBack(&[
                "analysis failed at step 1/4",
                "green's 5xx rate 5.00% is over max_5xx_rate 1.00%",
                "green 5.00% 5xx (50/1000)",
            ]),
        )
        .at(late()),
        case(
            "fail under deploy: routed back",
            Cmd::deploy(canary()),
            baked(Some(Metrics::Fail)),
            Expect::RouteBack(&["analysis failed at step 1/4"]),
        )
        .at(late()),
        case(
            "inconclusive, wait (the default): waits for the analysis",
            Cmd::Resume,
            baked(Some(Metrics::Thin)),
            Expect::Is(Decision::Wait(Wait {
                until: None,
                why: WaitReason::Analysis {
                    release: "v2".to_owned(),
                    step: StepNumber(1),
                    of: 4,
                    weight: Percent::new(10).expect("weight"),
                    verdict: THIN_TEXT.to_owned(),
                },
            })),
        )
        .at(late()),
        case(
            "inconclusive, wait named: waits for the analysis",
            Cmd::Resume,
            baked(Some(Metrics::Thin)),
            Expect::Is(Decision::Wait(Wait {
                until: None,
                why: WaitReason::Analysis {
                    release: "v2".to_owned(),
                    step: StepNumber(1),
                    of: 4,
                    weight: Percent::new(10).expect("weight"),
                    verdict: THIN_TEXT.to_owned(),
                },
            })),
        )
        .cfg(inconclusive("wait"))
        .at(late()),
        case(
            "inconclusive, fail: routed back",
            Cmd::Resume,
            baked(Some(Metrics::Thin)),
            Expect::RouteBack(&[
                "analysis inconclusive at step 1/4",
                "inconclusive = \"fail\"",
                "green served 20 requests, fewer than min_requests = 100",
            ]),
        )
        .cfg(inconclusive("fail"))
        .at(late()),
        case(
            "inconclusive, pass: the next step carries the verdict",
            Cmd::Resume,
            baked(Some(Metrics::Thin)),
            act(shift(25, 2, 4, &seen_split(10), Some(THIN_TEXT))),
        )
        .cfg(inconclusive("pass"))
        .at(late()),
        case(
            "pass: the next step carries the verdict",
            Cmd::Resume,
            baked(Some(Metrics::Pass)),
            act(shift(25, 2, 4, &seen_split(10), Some(PASS_TEXT))),
        )
        .at(late()),
        case(
            "pass at 50%: the flip carries the verdict",
            Cmd::Resume,
            verified(taking(50, releasing(&canary(), 3).hooks_done(done))).metrics(Metrics::Pass),
            act(flip(&seen_split(50), Some(PASS_TEXT))),
        ),
        case(
            "fail at 50%: routed back, no flip",
            Cmd::Resume,
            verified(taking(50, releasing(&canary(), 3).hooks_done(done))).metrics(Metrics::Fail),
            Expect::RouteBack(&["analysis failed at step 3/4"]),
        ),
        case(
            "a promoted gate passes an inconclusive verdict",
            Cmd::Resume,
            promoted(Metrics::Thin, "2"),
            act(shift(50, 3, 4, &seen_split(25), Some(THIN_TEXT))),
        ),
        case(
            "a promoted gate passes an inconclusive verdict even with inconclusive = fail",
            Cmd::Resume,
            promoted(Metrics::Thin, "2"),
            act(shift(50, 3, 4, &seen_split(25), Some(THIN_TEXT))),
        )
        .cfg(inconclusive("fail")),
        case(
            "a promoted gate does not pass a failing verdict",
            Cmd::Resume,
            promoted(Metrics::Fail, "2"),
            Expect::RouteBack(&["analysis failed at step 2/4"]),
        ),
        case(
            "promoted in full: an inconclusive verdict passes to the flip",
            Cmd::Resume,
            promoted(Metrics::Thin, "full"),
            act(flip(&seen_split(25), Some(THIN_TEXT))),
        ),
        case(
            "promoted in full: a failing verdict does not",
            Cmd::Resume,
            promoted(Metrics::Fail, "full"),
            Expect::RouteBack(&["analysis failed at step 2/4"]),
        ),
        case(
            "a manual gate not promoted: waits whatever the verdict",
            Cmd::Resume,
            verified(taking(25, releasing(&canary(), 2).hooks_done(done))).metrics(Metrics::Fail),
            Expect::Is(gate_wait(2, 4, 25)),
        ),
        case(
            "before the pause ends: no verdict",
            Cmd::Resume,
            baked(Some(Metrics::Fail)),
            Expect::Is(pause_wait(1, 4, 10, Some(t0() + BAKE))),
        ),
        case(
            "no metrics configured: no verdict, whatever was read",
            Cmd::Resume,
            baked(Some(Metrics::Fail)),
            act(shift(25, 2, 4, &seen_split(10), None)),
        )
        .cfg(no_metrics)
        .at(late()),
        case(
            "metrics configured but not read: inconclusive, never an unchecked pass",
            Cmd::Resume,
            baked(None),
            Expect::Is(Decision::Wait(Wait {
                until: None,
                why: WaitReason::Analysis {
                    release: "v2".into(),
                    step: StepNumber(1),
                    of: 4,
                    weight: Percent::new(10).expect("a percent"),
                    verdict: "inconclusive: no metrics read".into(),
                },
            })),
        )
        .at(late()),
        case(
            "at a 0% gate: no verdict",
            Cmd::Resume,
            verified(at_gate(
                releasing(&gated(), 1)
                    .hooks_done("pre_traffic")
                    .promoted("1"),
            ))
            .metrics(Metrics::Fail),
            act(flip(&seen_gate(), None)),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// 5. The stop sequence
// ---------------------------------------------------------------------------------------------

#[test]
fn a_stop_routes_back_closes_test_traffic_then_fails_the_release() {
    let at25 = || releasing(&canary(), 2).hooks_done("pre_traffic,after_step:1");
    // Traffic routed back already: v2 at 0% with the abort request RouteBack recorded.
    let back = |f: F| at_gate(f);
    let none = Cfg::none();
    run(vec![
        case(
            "an abort request at 25%: routed back first",
            Cmd::Resume,
            verified(taking(25, at25().abort(BOB))),
            Expect::RouteBack(&["aborted by bob at"]),
        ),
        case(
            "routed back, its rule open: the rule closes",
            Cmd::Resume,
            verified(back(at25().abort(BOB))),
            act(close_rule("v2")),
        ),
        case(
            "routed back, deploy: the rule closes",
            Cmd::deploy(canary()),
            verified(back(at25().abort(BOB))),
            act(close_rule("v2")),
        ),
        case(
            "rule closed: the test listener back on live",
            Cmd::Resume,
            verified(back(at25().abort(BOB))).rules(base_rules()),
            act(point(TG_A, TG_B)),
        ),
        case(
            "rule closed, deploy: the test listener back on live",
            Cmd::deploy(canary()),
            verified(back(at25().abort(BOB))).rules(base_rules()),
            act(point(TG_A, TG_B)),
        ),
        case(
            "test traffic closed: failed for the request",
            Cmd::Resume,
            verified(back(at25().abort(BOB)))
                .rules(base_rules())
                .test_listener_on(TG_A),
            Expect::Fails(&["aborted by bob at 2026-11-19T10:00:00Z"]),
        ),
        case(
            "an automatic stop's reason is kept as it is",
            Cmd::Resume,
            verified(back(at25().abort("alarm checkout-5xx is in ALARM (x)")))
                .rules(base_rules())
                .test_listener_on(TG_A),
            Expect::Fails(&["alarm checkout-5xx is in ALARM (x)"]),
        ),
        case(
            "a leftover rule of another release goes before the release's own",
            Cmd::Resume,
            verified(back(at25().abort(BOB))).rules({
                let mut rules = with_rule("v2");
                rules.push(test_rule("v1", 8));
                rules
            }),
            act(close_rule("v1")),
        ),
        case(
            "abort at 25%: routed back",
            Cmd::Abort,
            verified(taking(25, at25())),
            Expect::RouteBack(&["aborted by alice at"]),
        ),
        case(
            "abort, routed back: the rule",
            Cmd::Abort,
            verified(back(
                at25().abort("aborted by alice at 2026-11-19T10:00:00Z"),
            )),
            act(close_rule("v2")),
        ),
        case(
            "abort, rule closed: the test listener",
            Cmd::Abort,
            verified(back(
                at25().abort("aborted by alice at 2026-11-19T10:00:00Z"),
            ))
            .rules(base_rules()),
            act(point(TG_A, TG_B)),
        ),
        case(
            "abort, test traffic closed: failed",
            Cmd::Abort,
            verified(back(
                at25().abort("aborted by alice at 2026-11-19T10:00:00Z"),
            ))
            .rules(base_rules())
            .test_listener_on(TG_A),
            Expect::Fails(&["aborted by alice at"]),
        ),
        case(
            "abort while provisioning and ready: no route back, the stop recorded",
            Cmd::Abort,
            verified(at_gate(provisioning(&gated()))),
            Expect::Records(&["aborted by alice at"]),
        ),
        case(
            "abort while provisioning, recorded: the rule",
            Cmd::Abort,
            verified(at_gate(provisioning(&gated()).abort(BOB))),
            act(close_rule("v2")),
        ),
        case(
            "abort while not healthy yet, no rule: the stop recorded",
            Cmd::Abort,
            at_gate(v2(&gated(), Phase::Provisioning).starting())
                .rules(base_rules())
                .test_listener_on(TG_B),
            Expect::Records(&["aborted by alice at"]),
        ),
        case(
            "abort while not healthy yet, recorded: the test listener back on live",
            Cmd::Abort,
            at_gate(v2(&gated(), Phase::Provisioning).abort(BOB).starting())
                .rules(base_rules())
                .test_listener_on(TG_B),
            act(point(TG_A, TG_B)),
        ),
        case(
            "rollback at 25%: routed back",
            Cmd::Rollback,
            verified(taking(25, at25())),
            Expect::RouteBack(&["rolled back by alice while in progress"]),
        ),
        case(
            "rollback, routed back: the rule",
            Cmd::Rollback,
            verified(back(at25().abort(ROLLED_BACK))),
            act(close_rule("v2")),
        ),
        case(
            "rollback at 0%, nothing recorded: the stop recorded first",
            Cmd::Rollback,
            verified(back(at25())),
            Expect::Records(&["rolled back by alice while in progress"]),
        ),
        case(
            "rollback, test traffic closed: failed",
            Cmd::Rollback,
            verified(back(at25()))
                .rules(base_rules())
                .test_listener_on(TG_A),
            Expect::Fails(&["rolled back by alice while in progress"]),
        ),
        case(
            "a failed pre_traffic hook (its reason recorded) stops the release",
            Cmd::Resume,
            verified(at_gate(
                provisioning(&gated()).abort("pre_traffic hook ./smoke-test.sh exited 1"),
            )),
            act(close_rule("v2")),
        ),
        case(
            "nothing configured: route back, then straight to failed",
            Cmd::Resume,
            taking(25, at25().abort(BOB)),
            Expect::RouteBack(&["aborted by bob"]),
        )
        .cfg(none),
        case(
            "nothing configured, routed back: failed",
            Cmd::Resume,
            back(at25().abort(BOB)),
            Expect::Fails(&["aborted by bob"]),
        )
        .cfg(none),
    ]);
}

// ---------------------------------------------------------------------------------------------
// 6. After the last step
// ---------------------------------------------------------------------------------------------

#[test]
fn after_the_last_step_post_traffic_hooks_and_the_rule_come_before_live() {
    let done = "pre_traffic,after_step:1,after_step:2,after_step:3";
    let landed = || releasing(&canary(), 3).hooks_done(done);
    let post_done = || releasing(&canary(), 3).hooks_done(&format!("{done},post_traffic"));
    let alarm_parts: &'static [&'static str] = &["alarm checkout-5xx is in ALARM"];
    run(vec![
        case(
            "an abort request: all traffic back to the previous release",
            Cmd::Resume,
            verified(flipped(landed().abort(BOB), vec![v1()])),
            Expect::RouteBack(&["aborted by bob at 2026-11-19T10:00:00Z"]),
        ),
        case(
            "an alarm: back to the previous release",
            Cmd::Resume,
            verified(flipped(landed(), vec![v1()])).alarm(AlarmValue::Alarm),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "an alarm under deploy: back to the previous release",
            Cmd::deploy(canary()),
            verified(flipped(landed(), vec![v1()])).alarm(AlarmValue::Alarm),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "an alarm under the next release's deploy: v2 goes back first",
            Cmd::Deploy(request("v3", bluegreen())),
            verified(flipped(landed(), vec![v1()])).alarm(AlarmValue::Alarm),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "an alarm after its post_traffic hooks and rule: still back",
            Cmd::Resume,
            verified(flipped(post_done(), vec![v1()]))
                .rules(base_rules())
                .alarm(AlarmValue::Alarm),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "an alarm with the previous release already warm: back to it",
            Cmd::Resume,
            verified(flipped(
                post_done(),
                vec![ours("v1", Phase::Warm).tag(tags::IMAGE, AMI_1).serving()],
            ))
            .rules(base_rules())
            .alarm(AlarmValue::Alarm),
            Expect::RouteBack(alarm_parts),
        ),
        case(
            "an alarm, the previous release not fully healthy: refused",
            Cmd::Resume,
            verified(flipped(landed(), vec![ours("v1", Phase::Live).starting()]))
                .alarm(AlarmValue::Alarm),
            Expect::Refused(
                RefusalKind::NeedsAttention,
                &[
                    "release v2 must be stopped",
                    "previous release v1 is not fully healthy",
                    "traffic stays on v2",
                ],
            ),
        ),
        case(
            "an abort request, no previous release left: refused",
            Cmd::Resume,
            verified(flipped(landed().abort(BOB), vec![])),
            Expect::Refused(
                RefusalKind::NeedsAttention,
                &[
                    "release v2 must be stopped (aborted by bob",
                    "no previous release is left in target group checkout-a",
                ],
            ),
        ),
        case(
            "quiet: the post_traffic hooks",
            Cmd::Resume,
            verified(flipped(landed(), vec![v1()])),
            act(run_hooks(
                HookStage::PostTraffic,
                &format!("{done},post_traffic"),
                100,
                Some(4),
                4,
            )),
        ),
        case(
            "alarm with insufficient data: the post_traffic hooks",
            Cmd::deploy(canary()),
            verified(flipped(landed(), vec![v1()])).alarm(AlarmValue::InsufficientData),
            act(run_hooks(
                HookStage::PostTraffic,
                &format!("{done},post_traffic"),
                100,
                Some(4),
                4,
            )),
        ),
        case(
            "a blue/green flip from provisioning: the post_traffic hooks too",
            Cmd::Resume,
            verified(flipped(
                provisioning(&bluegreen()).hooks_done("pre_traffic"),
                vec![v1()],
            )),
            act(run_hooks(
                HookStage::PostTraffic,
                "pre_traffic,post_traffic",
                100,
                Some(1),
                1,
            )),
        ),
        case(
            "post_traffic done: the rule closes, the test listener stays on green",
            Cmd::Resume,
            verified(flipped(post_done(), vec![v1()])),
            act(close_rule("v2")),
        ),
        case(
            "no post_traffic hooks configured: the rule closes",
            Cmd::Resume,
            verified(flipped(landed(), vec![v1()])),
            act(close_rule("v2")),
        )
        .cfg(Cfg {
            post: false,
            ..Cfg::all()
        }),
        case(
            "test traffic closed: the previous release is kept warm",
            Cmd::Resume,
            verified(flipped(post_done(), vec![v1()])).rules(base_rules()),
            act(mark_warm_v1(early().now)),
        ),
        case(
            "the previous release warm: live",
            Cmd::Resume,
            verified(flipped(
                post_done(),
                vec![ours("v1", Phase::Warm).tag(tags::IMAGE, AMI_1).serving()],
            ))
            .rules(base_rules()),
            act(mark_live_v2()),
        ),
        case(
            "live and settled: done, the test listener left on it",
            Cmd::Resume,
            verified(flipped(
                ours("v2", Phase::Live).serving(),
                vec![ours("v1", Phase::Warm).serving()],
            ))
            .rules(base_rules()),
            Expect::Is(Decision::Done(Done::Live {
                release: "v2".to_owned(),
                slot: Slot::B,
            })),
        ),
        case(
            "the next release's deploy runs v2's post_traffic hooks first",
            Cmd::Deploy(request("v3", bluegreen())),
            verified(flipped(landed(), vec![v1()])),
            act(run_hooks(
                HookStage::PostTraffic,
                &format!("{done},post_traffic"),
                100,
                Some(4),
                4,
            )),
        ),
        case(
            "recorded at the last step: post_traffic hooks, never after_step",
            Cmd::Resume,
            verified(flipped(
                v2(&canary(), Phase::Releasing)
                    .at_step(4)
                    .hooks_done(done)
                    .serving(),
                vec![v1()],
            )),
            act(run_hooks(
                HookStage::PostTraffic,
                &format!("{done},post_traffic"),
                100,
                Some(4),
                4,
            )),
        ),
        case(
            "abort after the last step, quiet: settled live (documented)",
            Cmd::Abort,
            verified(flipped(landed(), vec![v1()])),
            act(mark_warm_v1(early().now)),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// 7. Leftovers of a crash
// ---------------------------------------------------------------------------------------------

#[test]
fn test_traffic_left_over_by_a_crash_is_closed_first() {
    let leftover = || {
        let mut rules = base_rules();
        rules.push(test_rule("v0", 8));
        rules
    };
    let in_progress = || {
        at_gate(provisioning(&gated()))
            .rules({
                let mut rules = leftover();
                rules.push(test_rule("v2", 9));
                rules
            })
            .test_listener_on(TG_B)
            .alarm(AlarmValue::Ok)
    };
    let warm_v0 = || ours("v0", Phase::Warm).tag(tags::IMAGE, AMI_1).serving();
    // Nothing in progress: v1 live in slot a, v0 warm in slot b.
    let settled = || observe(router(&seen_gate()), vec![v1()], vec![warm_v0()]);
    let nothing = |release: &str| {
        Expect::Is(Decision::Done(Done::NothingInProgress {
            release: release.to_owned(),
            slot: Slot::A,
        }))
    };
    run(vec![
        case(
            "deploy: another release's rule closes first",
            Cmd::deploy(gated()),
            in_progress(),
            act(close_rule("v0")),
        ),
        case(
            "abort: another release's rule closes first",
            Cmd::Abort,
            in_progress(),
            act(close_rule("v0")),
        ),
        case(
            "rollback: another release's rule closes first",
            Cmd::Rollback,
            in_progress(),
            act(close_rule("v0")),
        ),
        case(
            "resume: another release's rule closes first",
            Cmd::Resume,
            in_progress(),
            act(close_rule("v0")),
        ),
        case(
            "deploy, nothing in progress: a leftover rule closes first",
            Cmd::deploy(gated()),
            settled().rules(leftover()).test_listener_on(TG_A),
            act(close_rule("v0")),
        ),
        case(
            "deploy, nothing in progress: the live release's own leftover rule closes",
            Cmd::deploy(gated()),
            settled().rules({
                let mut rules = base_rules();
                rules.push(test_rule("v1", 8));
                rules
            }),
            act(close_rule("v1")),
        ),
        case(
            "abort, nothing in progress: a leftover rule closes first",
            Cmd::Abort,
            settled().rules(leftover()).test_listener_on(TG_A),
            act(close_rule("v0")),
        ),
        case(
            "rollback, nothing in progress: a leftover rule closes first",
            Cmd::Rollback,
            settled().rules(leftover()).test_listener_on(TG_A),
            act(close_rule("v0")),
        ),
        case(
            "resume, nothing in progress: a leftover rule closes first",
            Cmd::Resume,
            settled().rules(leftover()).test_listener_on(TG_A),
            act(close_rule("v0")),
        ),
        case(
            "a failed release's rule closes before it is retired",
            Cmd::deploy(gated()),
            observe(
                router(&seen_gate()),
                vec![v1()],
                vec![ours("v0", Phase::Failed)],
            )
            .rules(leftover())
            .test_listener_on(TG_B),
            act(close_rule("v0")),
        ),
        case(
            "another service's test rule is never closed",
            Cmd::Abort,
            settled()
                .rules(vec![
                    default_rule(),
                    shop_rule(),
                    test_rule_of("search", "v0", 8),
                ])
                .test_listener_on(TG_A),
            nothing("v1"),
        ),
        case(
            "a rule naming a release without the test-traffic tag is never closed",
            Cmd::Abort,
            settled()
                .rules(vec![default_rule(), shop_rule(), lookalike_rule("v0", 8)])
                .test_listener_on(TG_A),
            nothing("v1"),
        ),
        case(
            "abort, nothing in progress: the test listener back on live",
            Cmd::Abort,
            settled().rules(base_rules()).test_listener_on(TG_B),
            act(point(TG_A, TG_B)),
        ),
        case(
            "rollback, nothing in progress: the test listener back on live first",
            Cmd::Rollback,
            settled().rules(base_rules()).test_listener_on(TG_B),
            act(point(TG_A, TG_B)),
        ),
        case(
            "resume, nothing in progress: the test listener back on live",
            Cmd::Resume,
            settled().rules(base_rules()).test_listener_on(TG_B),
            act(point(TG_A, TG_B)),
        ),
        case(
            "abort, the test listener on a foreign target group: back on live",
            Cmd::Abort,
            settled().rules(base_rules()).test_listener_on(TG_OTHER),
            act(point(TG_A, TG_OTHER)),
        ),
        case(
            "abort, the test listener on live: nothing in progress",
            Cmd::Abort,
            settled().rules(base_rules()).test_listener_on(TG_A),
            nothing("v1"),
        ),
        case(
            "deploy, nothing in progress: the test listener is left for the new release",
            Cmd::deploy(gated()),
            settled().rules(base_rules()).test_listener_on(TG_B),
            Expect::Kind("retire_fleet"),
        ),
        case(
            "deploy, an empty idle slot the test listener points at: green is created",
            Cmd::deploy(gated()),
            observe(router(&seen_gate()), vec![v1()], vec![])
                .rules(base_rules())
                .test_listener_on(TG_B),
            Expect::Kind("create_fleet"),
        ),
        case(
            "deploy, the test listener on a foreign target group: joined to the idle slot",
            Cmd::deploy(gated()),
            observe(router(&seen_gate()), vec![v1()], vec![])
                .rules(base_rules())
                .test_listener_on(TG_OTHER),
            act(point(TG_B, TG_OTHER)),
        ),
        case(
            "a release in progress keeps its own rule and test listener",
            Cmd::Resume,
            verified(at_gate(provisioning(&gated()).hooks_done("pre_traffic"))),
            act(begin(2)),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Walks: decided and applied pass after pass
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

fn route(observed: &mut Observed, write: &RouterWrite) {
    observed.router.action = RouterAction::Forward {
        forwards: write.forwards.clone(),
    };
}

/// What applying `action` at `now` changes in what greenlight observes next: the tests' own
/// model of the engine's calls. A hook of stage `failing` fails (its reason recorded on green
/// as the engine does); every other hook passes.
fn applied(observed: &mut Observed, action: &Action, now: SystemTime, failing: Option<HookStage>) {
    let step_tags = |step: &StepNumber| {
        vec![
            (tags::PHASE, "releasing".to_owned()),
            (tags::STEP, step.to_string()),
            (tags::STEP_AT, tags::timestamp(now)),
        ]
    };
    match action {
        Action::JoinRouter { write, .. } => route(observed, write),
        Action::Flip {
            fleet,
            write,
            verdict,
            ..
        } => {
            route(observed, write);
            if let Some(v) = verdict {
                set_tags(
                    fleet_mut(observed, fleet),
                    &[(tags::VERDICT, v.clone())],
                    &[],
                );
            }
        }
        Action::Shift {
            fleet,
            step,
            write,
            verdict,
            ..
        } => {
            route(observed, write);
            let mut set = step_tags(step);
            if let Some(v) = verdict {
                set.push((tags::VERDICT, v.clone()));
            }
            set_tags(fleet_mut(observed, fleet), &set, &[]);
        }
        Action::Begin { fleet, step, .. } => {
            set_tags(fleet_mut(observed, fleet), &step_tags(step), &[])
        }
        Action::RecordStop { fleet, reason, .. } => {
            set_tags(
                fleet_mut(observed, fleet),
                &[(tags::ABORT, reason.to_tag())],
                &[],
            );
        }
        Action::RouteBack {
            fleet,
            reason,
            write,
            ..
        } => {
            set_tags(
                fleet_mut(observed, fleet),
                &[(tags::ABORT, reason.to_tag())],
                &[],
            );
            route(observed, write);
        }
        Action::OpenTestRule {
            release,
            priority,
            conditions,
            target_group,
            ..
        } => {
            let service = crate::core::names::ServiceName::parse(SERVICE).expect("service");
            observed
                .verify
                .rules
                .as_mut()
                .expect("rules are read")
                .push(ListenerRule {
                    arn: rule_arn(&test_rule_id(release)),
                    priority: Some(*priority),
                    conditions: conditions.clone(),
                    target_groups: vec![target_group.clone()],
                    tags: test_traffic::rule_tags(&service, release)
                        .into_iter()
                        .collect(),
                });
        }
        Action::CloseTestRule { rule, .. } => {
            let rules = observed.verify.rules.as_mut().expect("rules are read");
            let before = rules.len();
            rules.retain(|r| &r.arn != rule);
            assert_eq!(rules.len() + 1, before, "closes a rule that is there");
        }
        Action::PointTestListener { write, .. } => {
            let listener = observed
                .verify
                .test_listener
                .as_mut()
                .expect("the test listener is read");
            assert_eq!(listener.forwards(), write.expected.as_slice());
            listener.action = RouterAction::Forward {
                forwards: write.forwards.clone(),
            };
        }
        Action::RunHooks {
            fleet, stage, done, ..
        } => {
            let tag = if failing == Some(*stage) {
                (
                    tags::ABORT,
                    format!("{} hook ./check.sh exited 1", stage.key()),
                )
            } else {
                (tags::HOOKS_DONE, done.clone())
            };
            set_tags(fleet_mut(observed, fleet), &[tag], &[]);
        }
        Action::MarkWarm {
            fleet,
            until,
            suspend,
            ..
        } => set_tags(
            fleet_mut(observed, fleet),
            &[
                (tags::PHASE, "warm".to_owned()),
                (tags::WARM_UNTIL, tags::timestamp(*until)),
                (tags::SUSPENDED, suspend.join(",")),
            ],
            &[],
        ),
        Action::MarkLive { fleet, .. } => {
            let mut gone = vec![
                tags::WARM_UNTIL,
                tags::FAILURE,
                tags::SUSPENDED,
                tags::ROLLED_BACK_AT,
            ];
            gone.extend(tags::IN_PROGRESS);
            set_tags(
                fleet_mut(observed, fleet),
                &[(tags::PHASE, "live".to_owned())],
                &gone,
            );
        }
        Action::FailRelease { fleet, reasons, .. } => {
            let summary = fleet_mut(observed, fleet);
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
            fleet_mut(observed, fleet).capacity = *capacity;
        }
        Action::RetireFleet { .. }
        | Action::CreateFleet(_)
        | Action::ConfigureFleet(_)
        | Action::ReviveFleet { .. }
        | Action::Restage { .. } => panic!("not modelled: {action:?}"),
    }
}

fn verdict_word(verdict: &Option<String>) -> String {
    verdict
        .as_deref()
        .and_then(|v| v.split(':').next())
        .map(|word| format!(", {word}"))
        .unwrap_or_default()
}

/// One line per decision, for transcripts.
fn line(decision: &Decision) -> String {
    match decision {
        Decision::Act(action) => match action {
            Action::OpenTestRule {
                release, priority, ..
            } => format!("open test rule {release} at {priority}"),
            Action::CloseTestRule { release, .. } => format!("close test rule {release}"),
            Action::PointTestListener { to, .. } => {
                format!("test listener to {}", to.short_name())
            }
            Action::RunHooks { stage, .. } => format!("hooks {}", stage.encode()),
            Action::Begin { step, of, .. } => format!("begin {step}/{of}"),
            Action::Shift {
                weight,
                step,
                of,
                verdict,
                ..
            } => format!("shift {weight} ({step}/{of}){}", verdict_word(verdict)),
            Action::Flip {
                release, verdict, ..
            } => format!("flip to {release}{}", verdict_word(verdict)),
            Action::RouteBack { release, to, .. } => {
                format!("route {release} back to {}", to.short_name())
            }
            Action::FailRelease { release, .. } => format!("fail {release}"),
            Action::RecordStop { release, .. } => format!("record stop {release}"),
            Action::MarkWarm { release, .. } => format!("warm {release}"),
            Action::MarkLive { release, .. } => format!("live {release}"),
            other => other.name().to_owned(),
        },
        Decision::Wait(Wait { why, .. }) => match why {
            WaitReason::Health { .. } => "wait for health".to_owned(),
            WaitReason::Pause { step, .. } => format!("bake step {step}"),
            WaitReason::Gate { step, .. } => format!("gate at step {step}"),
            WaitReason::Analysis { step, .. } => format!("analysis inconclusive at step {step}"),
            WaitReason::Handover { .. } => unreachable!("only abort waits for a hand-over"),
        },
        Decision::Done(Done::Live { release, .. }) => format!("done: {release} live"),
        Decision::Done(Done::NothingInProgress { release, .. }) => {
            format!("done: nothing in progress, {release} live")
        }
        Decision::Done(other) => format!("done: {other:?}"),
        Decision::Refuse(refusal) => format!("refused: {}", refusal.message),
    }
}

/// Runs `cmd` pass after pass from `observed` at [`t0`], applying what it decides; a timed wait
/// jumps the clock to its end, a gate is promoted. Ends at done, a refusal, a wait for the
/// analysis, a deploy's failed release, or after 40 passes (the last line says so).
fn walk(
    cfg: Cfg,
    cmd: Cmd,
    observed: Observed,
    failing: Option<HookStage>,
) -> (Vec<String>, Observed) {
    walk_with(cfg, cmd, observed, failing, |_, _| {})
}

/// [`walk`], with `tweak` changing each observation before it is decided (pass number given).
fn walk_with(
    cfg: Cfg,
    cmd: Cmd,
    mut observed: Observed,
    failing: Option<HookStage>,
    mut tweak: impl FnMut(usize, &mut Observed),
) -> (Vec<String>, Observed) {
    let spec = cfg.spec();
    let mut now = t0();
    let mut transcript = Vec::new();
    for pass in 0..40 {
        tweak(pass, &mut observed);
        let clock = Clock {
            now,
            health_deadline: now + TIMEOUT,
        };
        let decision = cmd.decide(&spec, &observed, clock);
        transcript.push(line(&decision));
        match &decision {
            Decision::Act(action) => {
                if let Some(write) = action.router_write() {
                    assert_eq!(write.expected, observed.router.forwards(), "{action:?}");
                }
                applied(&mut observed, action, now, failing);
                if matches!(cmd, Cmd::Deploy(_)) && matches!(action, Action::FailRelease { .. }) {
                    // A deploy ends when its release fails.
                    return (transcript, observed);
                }
            }
            Decision::Wait(Wait { until: Some(t), .. }) => now = *t,
            Decision::Wait(Wait {
                until: None,
                why: WaitReason::Gate { .. },
            }) => {
                let request = decide_promote(&spec, &observed, false).expect("promotable");
                transcript.push(format!("promote {}", request.promoted.encode()));
                set_tags(
                    fleet_mut(&mut observed, &request.fleet),
                    &[(tags::PROMOTED, request.promoted.encode())],
                    &[],
                );
            }
            Decision::Wait(_) | Decision::Done(_) | Decision::Refuse(_) => {
                return (transcript, observed);
            }
        }
        now += Duration::from_secs(1);
    }
    transcript.push("(no end after 40 passes)".to_owned());
    (transcript, observed)
}

fn tag_of<'a>(observed: &'a Observed, fleet: &str) -> &'a BTreeMap<String, String> {
    &observed
        .slots
        .iter()
        .flat_map(|s| &s.fleets)
        .find(|f| f.name.as_str() == fleet)
        .unwrap_or_else(|| panic!("no fleet {fleet}"))
        .tags
}

#[test]
fn a_gated_blue_green_release_walks_through_every_gate_to_live() {
    let (transcript, end) = walk(
        Cfg::all(),
        Cmd::Resume,
        at_gate(provisioning(&gated()))
            .rules(base_rules())
            .test_listener_on(TG_A)
            .alarm(AlarmValue::Ok),
        None,
    );
    assert_eq!(
        transcript,
        [
            "open test rule v2 at 9",
            "test listener to checkout-b",
            "hooks pre_traffic",
            "begin 1/2",
            "gate at step 1",
            "promote 1",
            "flip to v2",
            "hooks post_traffic",
            "close test rule v2",
            "warm v1",
            "live v2",
            "done: v2 live",
        ]
    );
    assert_eq!(end.verify.rules, Some(base_rules()), "no test rule is left");
    assert_eq!(
        end.verify.test_listener,
        Some(RouterState {
            id: RouterId::Listener(ListenerArn::parse(TEST_LISTENER).expect("listener")),
            action: RouterAction::Forward {
                forwards: forwards(&[(TG_B, 100)]),
            },
        }),
        "the test listener stays on the release that went live"
    );
}

#[test]
fn a_canary_walks_hooks_and_verdicts_at_every_step() {
    let (transcript, end) = walk(
        Cfg::all(),
        Cmd::deploy(canary()),
        at_gate(provisioning(&canary()))
            .rules(base_rules())
            .test_listener_on(TG_B)
            .alarm(AlarmValue::Ok)
            .metrics(Metrics::Pass),
        None,
    );
    assert_eq!(
        transcript,
        [
            "open test rule v2 at 9",
            "hooks pre_traffic",
            "shift 10% (1/4)",
            "hooks after_step:1",
            "bake step 1",
            "shift 25% (2/4), pass",
            "hooks after_step:2",
            "gate at step 2",
            "promote 2",
            "shift 50% (3/4), pass",
            "hooks after_step:3",
            "flip to v2, pass",
            "hooks post_traffic",
            "close test rule v2",
            "warm v1",
            "live v2",
            "done: v2 live",
        ]
    );
    assert_eq!(
        tag_of(&end, "checkout-v2")
            .get(tags::VERDICT)
            .map(String::as_str),
        Some(PASS_TEXT)
    );
    assert_eq!(
        tag_of(&end, "checkout-v2").get(tags::HOOKS_DONE),
        None,
        "the stages done go with the release's other progress tags"
    );
}

#[test]
fn an_inconclusive_analysis_waits_until_the_gate_is_promoted() {
    let spec = Cfg::all().spec();
    let at1 = verified(taking(
        10,
        releasing(&canary(), 1).hooks_done("pre_traffic,after_step:1"),
    ))
    .metrics(Metrics::Thin);
    let waits = decide_resume(&spec, &at1, late());
    assert!(
        matches!(
            &waits,
            Decision::Wait(Wait {
                until: None,
                why: WaitReason::Analysis { .. }
            })
        ),
        "{waits:?}"
    );
    let request = decide_promote(&spec, &at1, false).expect("promotable");
    let mut promoted = at1.clone();
    set_tags(
        fleet_mut(&mut promoted, &request.fleet),
        &[(tags::PROMOTED, request.promoted.encode())],
        &[],
    );
    assert_eq!(
        decide_resume(&spec, &promoted, late()),
        Decision::Act(shift(25, 2, 4, &seen_split(10), Some(THIN_TEXT)))
    );
}

#[test]
fn an_abort_at_25_percent_walks_the_whole_stop_sequence() {
    let (transcript, end) = walk(
        Cfg::all(),
        Cmd::Abort,
        verified(taking(
            25,
            releasing(&canary(), 2).hooks_done("pre_traffic,after_step:1"),
        )),
        None,
    );
    assert_eq!(
        transcript,
        [
            "route v2 back to checkout-a",
            "close test rule v2",
            "test listener to checkout-a",
            "fail v2",
            "done: nothing in progress, v1 live",
        ]
    );
    let failure = tag_of(&end, "checkout-v2").get(tags::FAILURE).cloned();
    assert!(
        failure
            .as_deref()
            .is_some_and(|f| f.starts_with("aborted by alice at")),
        "{failure:?}"
    );
}

#[test]
fn an_alarm_mid_canary_walks_the_stop_sequence_and_fails_for_it() {
    for cmd in [Cmd::Resume, Cmd::deploy(canary())] {
        let (transcript, end) = walk(
            Cfg::all(),
            cmd.clone(),
            verified(taking(
                25,
                releasing(&canary(), 2).hooks_done("pre_traffic,after_step:1,after_step:2"),
            ))
            .alarm(AlarmValue::Alarm),
            None,
        );
        let mut expected = vec![
            "route v2 back to checkout-a",
            "close test rule v2",
            "test listener to checkout-a",
            "fail v2",
        ];
        if let Cmd::Resume = cmd {
            expected.push("done: v1 live");
        }
        assert_eq!(transcript, expected, "{cmd:?}");
        let failure = tag_of(&end, "checkout-v2").get(tags::FAILURE).cloned();
        assert_eq!(
            failure.as_deref(),
            Some(format!("alarm {ALARM} is in ALARM ({ALARM_REASON})").as_str()),
            "{cmd:?}"
        );
    }
}

#[test]
fn an_alarm_while_provisioning_closes_test_traffic_and_fails_without_a_route_back() {
    let (transcript, end) = walk(
        Cfg::all(),
        Cmd::Resume,
        verified(at_gate(provisioning(&gated()))).alarm(AlarmValue::Alarm),
        None,
    );
    assert_eq!(
        transcript,
        [
            "record stop v2",
            "close test rule v2",
            "test listener to checkout-a",
            "fail v2",
            "done: v1 live",
        ]
    );
    assert_eq!(
        end.router.forwards(),
        forwards(&seen_gate()),
        "router untouched"
    );
}

#[test]
fn a_failing_hook_stops_the_release_at_its_stage() {
    let cases: Vec<(HookStage, Observed, &[&str])> = vec![
        (
            HookStage::PreTraffic,
            verified(at_gate(provisioning(&canary()))),
            &[
                "hooks pre_traffic",
                "close test rule v2",
                "test listener to checkout-a",
                "fail v2",
                "done: v1 live",
            ],
        ),
        (
            HookStage::AfterStep(StepNumber(1)),
            verified(at_gate(provisioning(&canary()))),
            &[
                "hooks pre_traffic",
                "shift 10% (1/4)",
                "hooks after_step:1",
                "route v2 back to checkout-a",
                "close test rule v2",
                "test listener to checkout-a",
                "fail v2",
                "done: v1 live",
            ],
        ),
        (
            HookStage::PostTraffic,
            verified(at_gate(provisioning(&bluegreen()))),
            &[
                "hooks pre_traffic",
                "flip to v2",
                "hooks post_traffic",
                "route v2 back to checkout-a",
                "close test rule v2",
                "test listener to checkout-a",
                "fail v2",
                "done: v1 live",
            ],
        ),
    ];
    for (stage, observed, expected) in cases {
        let (transcript, end) = walk(Cfg::all(), Cmd::Resume, observed, Some(stage));
        assert_eq!(transcript, expected, "{stage}");
        let failure = tag_of(&end, "checkout-v2").get(tags::FAILURE).cloned();
        assert_eq!(
            failure,
            Some(format!("{} hook ./check.sh exited 1", stage.key())),
            "{stage}"
        );
    }
}

#[test]
fn an_alarm_after_the_flip_returns_the_traffic_and_fails_the_release() {
    // The flip lands at the first pass; the alarm goes off from the next one on.
    let (transcript, end) = walk_with(
        Cfg::all(),
        Cmd::Resume,
        verified(at_gate(
            provisioning(&bluegreen()).hooks_done("pre_traffic"),
        )),
        None,
        |pass, observed| {
            if pass >= 1 {
                observed.verify.alarms = vec![AlarmState {
                    name: ALARM.to_owned(),
                    state: AlarmValue::Alarm,
                    reason: ALARM_REASON.to_owned(),
                }];
            }
        },
    );
    assert_eq!(
        transcript,
        [
            "flip to v2",
            "route v2 back to checkout-a",
            "close test rule v2",
            "test listener to checkout-a",
            "fail v2",
            "done: v1 live",
        ]
    );
    assert_eq!(share_b(end.router.forwards()), 0);
    assert_eq!(
        tag_of(&end, "checkout-v1")
            .get(tags::PHASE)
            .map(String::as_str),
        Some("live"),
        "the previous release was never marked warm"
    );
}

/// Green at 0% (ready, provisioning) with a test listener, an alarm goes off. The stop records
/// itself on green before it points the test listener back on live, or deploy's join would point
/// it at green again and the two would alternate forever. The same at a 0% gate whose green is
/// not healthy again in time.
#[test]
fn deploy_stops_a_release_at_zero_percent_when_it_joins_through_a_test_listener() {
    let (transcript, _) = walk(
        Cfg::all(),
        Cmd::deploy(gated()),
        verified(at_gate(provisioning(&gated()))).alarm(AlarmValue::Alarm),
        None,
    );
    assert_eq!(
        transcript,
        [
            "record stop v2",
            "close test rule v2",
            "test listener to checkout-a",
            "fail v2"
        ]
    );
    // Test traffic closed with no stop recorded (an older greenlight's stop, say): the join
    // comes first, then the stop runs its course.
    let (transcript, _) = walk(
        Cfg::all(),
        Cmd::deploy(gated()),
        at_gate(provisioning(&gated()))
            .rules(base_rules())
            .test_listener_on(TG_A)
            .alarm(AlarmValue::Alarm),
        None,
    );
    assert_eq!(
        transcript.last().map(String::as_str),
        Some("fail v2"),
        "{transcript:?}"
    );
    assert!(transcript.len() <= 6, "{transcript:?}");
    // Not healthy again in time at a 0% gate: recorded, then closed, then failed for it.
    let spec = Cfg::all().spec();
    let late = clock(TIMEOUT + Duration::from_secs(60));
    let unhealthy = at_gate(v2(&gated(), Phase::Releasing).at_step(1).starting())
        .rules(base_rules())
        .test_listener_on(TG_B);
    match decide_deploy(&spec, &request("v2", gated()), &unhealthy, late) {
        Decision::Act(Action::RecordStop { reason, .. }) => says(
            "not healthy in time",
            &reason.description,
            &["was not fully healthy again in time"],
        ),
        other => panic!("not healthy in time: decided {other:?}"),
    }
}

/// A rule router whose own rule has priority 1: no priority is free before it, and the test
/// rule is opened after it (priority 2). Its conditions are the router rule's plus the header,
/// so the router rule matches every request it would: test traffic goes to production, and the
/// pre_traffic hooks test the live release instead of green.
#[test]
fn a_test_rule_is_never_opened_behind_the_rule_router_s_own_rule() {
    let spec = Cfg {
        rule_router: true,
        ..Cfg::all()
    }
    .spec();
    let observed = at_gate(provisioning(&gated()))
        .rules(vec![default_rule(), router_rule(1)])
        .test_listener_on(TG_B)
        .alarm(AlarmValue::Ok);
    let decision = decide_resume(&spec, &observed, early());
    if let Decision::Act(Action::OpenTestRule { priority, .. }) = &decision {
        assert!(
            *priority < 1,
            "the test rule at priority {priority} is evaluated after the router's rule at 1"
        );
    }
    check(
        "rule router at priority 1",
        &observed,
        &decision,
        &Expect::Refused(RefusalKind::NeedsAttention, &["priority"]),
    );
}

/// A release that could not be verified is refused before its first change: no room for its
/// test rule, or an alarm already in ALARM. One already under way is not refused by them (it
/// is stopped, or waits, as the sequence says).
#[test]
fn a_release_that_could_not_be_verified_is_refused_before_any_change() {
    let rule_router = Cfg {
        rule_router: true,
        ..Cfg::all()
    };
    let idle = || {
        observe(router(&seen_gate()), vec![v1()], vec![])
            .test_listener_on(TG_A)
            .alarm(AlarmValue::Ok)
    };
    let no_room = || vec![default_rule(), router_rule(1)];
    let cases = run(vec![
        case(
            "rule router at priority 1: no room before it",
            Cmd::deploy(gated()),
            idle().rules(no_room()),
            Expect::Refused(
                RefusalKind::BadInput,
                &[
                    "no free rule priority before the router's rule (1)",
                    "[test_traffic] header",
                ],
            ),
        )
        .cfg(rule_router),
        case(
            "rule router at priority 2: the test listener joins first",
            Cmd::deploy(gated()),
            idle().rules(vec![default_rule(), router_rule(2)]),
            act(point(TG_B, TG_A)),
        )
        .cfg(rule_router),
        case(
            "no room, but no header configured: not checked",
            Cmd::deploy(gated()),
            idle().rules(no_room()),
            act(point(TG_B, TG_A)),
        )
        .cfg(Cfg {
            header: false,
            rule_router: true,
            ..Cfg::all()
        }),
        case(
            "an alarm in ALARM: refused, naming it and its reason",
            Cmd::deploy(gated()),
            idle().rules(base_rules()).alarm(AlarmValue::Alarm),
            Expect::Refused(
                RefusalKind::NeedsAttention,
                &[
                    "alarm checkout-5xx is in ALARM",
                    "Threshold Crossed",
                    "[analysis] alarms",
                ],
            ),
        ),
        case(
            "an alarm in ALARM, the release under way: stopped, not refused",
            Cmd::deploy(gated()),
            alarming_gate(),
            Expect::Records(&["alarm checkout-5xx is in ALARM"]),
        ),
        case(
            "an alarm in INSUFFICIENT_DATA: starts",
            Cmd::deploy(gated()),
            idle()
                .rules(base_rules())
                .alarm(AlarmValue::InsufficientData),
            act(point(TG_B, TG_A)),
        ),
    ]);
    assert_eq!(cases, 6);
}

fn alarming_gate() -> Observed {
    verified(at_gate(provisioning(&gated()))).alarm(AlarmValue::Alarm)
}

/// After the last step, with an abort request recorded on the release (a failed post_traffic
/// hook, or a request that crossed the flip) or an alarm going off, `deploy` and `promote`
/// route the traffic back to the previous release; `greenlight abort` instead settles the
/// release live (MarkWarm of the previous release, then MarkLive, which erases the recorded
/// request) and reports nothing in progress.
#[test]
fn abort_after_the_last_step_routes_back_when_verification_failed() {
    let spec = Cfg::all().spec();
    let done = "pre_traffic,after_step:1,after_step:2,after_step:3";
    let hook_failed = verified(flipped(
        releasing(&canary(), 3)
            .hooks_done(done)
            .abort("post_traffic hook ./announce.sh exited 1"),
        vec![v1()],
    ));
    let alarm = verified(flipped(
        releasing(&canary(), 3).hooks_done(done),
        vec![v1()],
    ))
    .alarm(AlarmValue::Alarm);
    for (name, observed) in [("hook failed", hook_failed), ("alarm", alarm)] {
        // What deploy and promote do:
        check(
            name,
            &observed,
            &decide_resume(&spec, &observed, early()),
            &Expect::RouteBack(&[]),
        );
        // What abort does:
        check(
            name,
            &observed,
            &decide_abort(&spec, &observed, early().now, BY),
            &Expect::RouteBack(&[]),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Property: random verification states of a release in progress
// ---------------------------------------------------------------------------------------------

/// `promote` as recorded on green.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Promo {
    None,
    /// The step green is at.
    Here,
    Full,
}

/// A release v2 of one of four plans in slot b, v1 live in slot a, with random verification
/// around it.
#[derive(Debug, Clone)]
struct Gen {
    cfg: Cfg,
    plan: Plan,
    /// 0: provisioning (at 0%); n: releasing at step n (never the last).
    step: u32,
    ready: bool,
    /// v2's own test rule.
    own_rule: bool,
    /// A test rule of v0, left over by a crash.
    leftover_rule: bool,
    /// Another service's test rule, and a rule without the test-traffic tag.
    lookalikes: bool,
    /// Where the test listener forwards (when configured).
    listener_on: &'static str,
    pre_done: bool,
    after_done: [bool; 3],
    alarm: Option<AlarmValue>,
    metrics: Option<Metrics>,
    abort: bool,
    promoted: Promo,
    /// The pause of a timed step is over (and the health timeout is not).
    late: bool,
    cmd: usize,
}

const COMMANDS: [&str; 4] = ["deploy", "resume", "abort", "rollback"];

fn arb_gen() -> impl Strategy<Value = Gen> {
    let cfg = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["wait", "pass", "fail"])),
    )
        .prop_map(
            |(header, listener, pre, after, alarms, metrics, inconclusive)| Cfg {
                header,
                listener,
                pre,
                after,
                post: pre,
                alarms,
                metrics,
                inconclusive,
                rule_router: false,
            },
        );
    let plan = prop::sample::select(vec![bluegreen(), gated(), canary(), gated_canary()]);
    let rules = (any::<bool>(), prop::bool::weighted(0.2), any::<bool>());
    let hooks = (any::<bool>(), any::<[bool; 3]>());
    let alarm = prop::option::of(prop::sample::select(vec![
        AlarmValue::Ok,
        AlarmValue::Alarm,
        AlarmValue::InsufficientData,
    ]));
    let metrics = prop::option::of(prop::sample::select(vec![
        Metrics::Pass,
        Metrics::Fail,
        Metrics::Thin,
    ]));
    let promoted = prop::sample::select(vec![Promo::None, Promo::None, Promo::Here, Promo::Full]);
    (
        cfg,
        plan,
        0u32..4,
        prop::bool::weighted(0.8),
        rules,
        prop::sample::select(vec![TG_A, TG_B, TG_B, TG_OTHER]),
        hooks,
        alarm,
        metrics,
        prop::bool::weighted(0.15),
        (promoted, any::<bool>()),
        prop::sample::select(vec![0usize, 0, 1, 1, 2, 3]),
    )
        .prop_map(
            |(
                cfg,
                plan,
                step,
                ready,
                (own_rule, leftover_rule, lookalikes),
                listener_on,
                (pre_done, after_done),
                alarm,
                metrics,
                abort,
                (promoted, late),
                cmd,
            )| {
                let step = step % plan.len();
                Gen {
                    cfg,
                    plan,
                    step,
                    ready,
                    own_rule,
                    leftover_rule,
                    lookalikes,
                    listener_on,
                    pre_done,
                    after_done,
                    alarm,
                    metrics,
                    abort,
                    promoted,
                    late,
                    cmd,
                }
            },
        )
}

impl Gen {
    fn weight(&self) -> u8 {
        match self.step {
            0 => 0,
            n => self.plan.steps[n as usize - 1].weight.get(),
        }
    }

    fn command(&self) -> Cmd {
        match self.cmd {
            0 => Cmd::Deploy(request("v2", self.plan.clone())),
            1 => Cmd::Resume,
            2 => Cmd::Abort,
            _ => Cmd::Rollback,
        }
    }

    fn clock(&self) -> Clock {
        if self.late { late() } else { early() }
    }

    fn rules(&self) -> Vec<ListenerRule> {
        let mut rules = base_rules();
        if self.own_rule {
            rules.push(test_rule("v2", 9));
        }
        if self.leftover_rule {
            rules.push(test_rule("v0", 8));
        }
        if self.lookalikes {
            rules.push(test_rule_of("search", "v2", 7));
            rules.push(lookalike_rule("v0", 6));
        }
        rules
    }

    fn observed(&self) -> Observed {
        let phase = if self.step == 0 {
            Phase::Provisioning
        } else {
            Phase::Releasing
        };
        let mut green = v2(&self.plan, phase);
        if self.step > 0 {
            green = green.at_step(self.step);
        }
        let mut done: Vec<String> = Vec::new();
        if self.pre_done {
            done.push("pre_traffic".into());
        }
        for (i, ran) in self.after_done.iter().enumerate() {
            if *ran {
                done.push(format!("after_step:{}", i + 1));
            }
        }
        if !done.is_empty() {
            green = green.hooks_done(&done.join(","));
        }
        if self.abort {
            green = green.abort(BOB);
        }
        match self.promoted {
            Promo::None => {}
            Promo::Here if self.step == 0 => {}
            Promo::Here => green = green.promoted(&self.step.to_string()),
            Promo::Full => green = green.promoted("full"),
        }
        green = if self.ready {
            green.serving()
        } else {
            green.starting()
        };
        let w = u16::from(self.weight());
        let mut observed = if w == 0 {
            at_gate(green)
        } else {
            taking(w, green)
        };
        if self.cfg.header {
            observed = observed.rules(self.rules());
        }
        if self.cfg.listener {
            observed = observed.test_listener_on(self.listener_on);
        }
        if self.cfg.alarms
            && let Some(state) = self.alarm
        {
            observed = observed.alarm(state);
        }
        if let Some(m) = self.metrics {
            observed = observed.metrics(m);
        }
        observed
    }

    fn alarm_firing(&self) -> bool {
        self.cfg.alarms && self.alarm == Some(AlarmValue::Alarm)
    }

    /// The hook stage due now, if its hooks have not run: pre_traffic while provisioning,
    /// after_step:n at a step that takes traffic.
    fn hook_due(&self) -> bool {
        if self.step == 0 {
            self.cfg.pre && !self.pre_done
        } else {
            self.weight() > 0 && self.cfg.after && !self.after_done[self.step as usize - 1]
        }
    }

    fn verdict_fails(&self) -> bool {
        self.cfg.metrics && self.metrics == Some(Metrics::Fail) && self.weight() > 0
    }

    /// The known bug: deploy points the test listener at green while it stops green at 0%.
    /// The next step of the stop sequence, for `reason`.
    fn stop(&self, reason: &str) -> String {
        if self.weight() > 0 {
            format!("route_back: {reason}")
        } else if !self.abort
            && ((self.cfg.header && self.own_rule)
                || (self.cfg.listener && self.listener_on != TG_A))
        {
            format!("record_stop: {reason}")
        } else if self.cfg.header && self.own_rule {
            "close_test_rule v2".into()
        } else if self.cfg.listener && self.listener_on != TG_A {
            "point checkout-a".into()
        } else {
            format!("fail_release: {reason}")
        }
    }

    fn move_to(&self, next: u32, verdict: Option<&str>) -> String {
        let verdict = verdict.map(|v| format!(", {v}")).unwrap_or_default();
        if next == self.plan.len() {
            format!("flip{verdict}")
        } else {
            format!(
                "shift {} ({next}/{}){verdict}",
                self.plan.steps[next as usize - 1].weight,
                self.plan.len()
            )
        }
    }

    /// The one next step, by the sequence as the tests spell it out.
    fn expected(&self) -> String {
        let w = self.weight();
        let len = self.plan.len();
        if self.cfg.header && self.leftover_rule {
            return "close_test_rule v0".into();
        }
        match self.cmd {
            2 => return self.stop("abort command"),
            3 => return self.stop("rollback command"),
            _ => {}
        }
        if self.abort {
            return self.stop("abort request");
        }
        // Deploy joins a release nothing has stopped yet before it looks any further; the
        // stop, recorded, keeps it from joining again.
        if self.cmd == 0 && w == 0 && self.cfg.listener && self.listener_on != TG_B {
            return "point checkout-b".into();
        }
        if self.alarm_firing() && (self.ready || w > 0) {
            return self.stop("alarm");
        }
        if !self.ready {
            return "wait health".into();
        }
        let full = self.promoted == Promo::Full;
        if self.step == 0 {
            if self.cfg.header && !self.own_rule {
                return "open_test_rule".into();
            }
            if self.cfg.listener && self.listener_on != TG_B {
                return "point checkout-b".into();
            }
            if self.cfg.pre && !self.pre_done {
                return "run_hooks pre_traffic".into();
            }
            if self.plan.steps[0].weight == Percent::ZERO {
                return format!("begin 1/{len}");
            }
            return self.move_to(if full { len } else { 1 }, None);
        }
        let n = self.step;
        if w > 0 && self.cfg.after && !self.after_done[n as usize - 1] {
            return format!("run_hooks after_step:{n}");
        }
        let promoted = self.promoted != Promo::None;
        let over = match self.plan.steps[n as usize - 1].pause {
            Pause::None => true,
            Pause::For(_) => self.late || promoted,
            Pause::Manual => promoted,
        };
        if !over {
            return match self.plan.steps[n as usize - 1].pause {
                Pause::Manual => format!("gate step {n}"),
                _ => format!("bake step {n}"),
            };
        }
        let next = if full { len } else { n + 1 };
        // Metrics not read count as too few.
        let verdict = if w > 0 && self.cfg.metrics {
            Some(self.metrics.unwrap_or(Metrics::Thin))
        } else {
            None
        };
        match verdict {
            None => self.move_to(next, None),
            Some(Metrics::Pass) => self.move_to(next, Some("pass")),
            Some(Metrics::Fail) => self.stop("analysis failed"),
            Some(Metrics::Thin) => match (self.cfg.inconclusive.unwrap_or("wait"), promoted) {
                ("fail", false) => self.stop("analysis inconclusive"),
                ("wait", false) => format!("analysis step {n}"),
                _ => self.move_to(next, Some("inconclusive")),
            },
        }
    }
}

/// Why a release is stopped, as the property names it: by its code and target (alice runs
/// commands here; bob's abort request is read back from a tag).
fn reason_class(reason: &Reason) -> String {
    let target = reason.target.as_deref().unwrap_or_default();
    let class = match reason.code {
        ReasonCode::Aborted if target == "alice" => "abort command",
        ReasonCode::Aborted if target.starts_with("bob") => "abort request",
        ReasonCode::RolledBack if target == "alice" => "rollback command",
        ReasonCode::Alarm if target == "checkout-5xx" => "alarm",
        ReasonCode::AnalysisFailed => "analysis failed",
        ReasonCode::AnalysisInconclusive => "analysis inconclusive",
        _ => return format!("other ({reason:?})"),
    };
    class.to_owned()
}

/// The gist of a decision, in the words of [`Gen::expected`].
fn gist(decision: &Decision) -> String {
    let word = |verdict: &Option<String>| {
        verdict
            .as_deref()
            .and_then(|v| v.split(':').next())
            .map(|w| format!(", {w}"))
            .unwrap_or_default()
    };
    match decision {
        Decision::Act(action) => match action {
            Action::OpenTestRule { .. } => "open_test_rule".into(),
            Action::CloseTestRule { release, .. } => format!("close_test_rule {release}"),
            Action::PointTestListener { to, .. } => format!("point {}", to.short_name()),
            Action::RunHooks { stage, .. } => format!("run_hooks {}", stage.encode()),
            Action::Begin { step, of, .. } => format!("begin {step}/{of}"),
            Action::Shift {
                weight,
                step,
                of,
                verdict,
                ..
            } => format!("shift {weight} ({step}/{of}){}", word(verdict)),
            Action::Flip { verdict, .. } => format!("flip{}", word(verdict)),
            Action::RouteBack { reason, .. } => format!("route_back: {}", reason_class(reason)),
            Action::RecordStop { reason, .. } => format!("record_stop: {}", reason_class(reason)),
            Action::FailRelease { reasons, .. } => {
                let first = reasons.first().map(reason_class).unwrap_or_default();
                format!("fail_release: {first}")
            }
            other => other.name().to_owned(),
        },
        Decision::Wait(Wait { why, .. }) => match why {
            WaitReason::Health { .. } => "wait health".into(),
            WaitReason::Pause { step, .. } => format!("bake step {step}"),
            WaitReason::Gate { step, .. } => format!("gate step {step}"),
            WaitReason::Analysis { step, .. } => format!("analysis step {step}"),
            WaitReason::Handover { .. } => unreachable!("only abort waits for a hand-over"),
        },
        Decision::Done(done) => format!("done {done:?}"),
        Decision::Refuse(refusal) => format!("refused {:?}: {}", refusal.kind, refusal.message),
    }
}

/// The safety rules, whatever the sequence: green's share grows only when no hook stage is
/// due, no alarm goes off and the verdict does not fail; test rules closed are greenlight's of
/// this service; a test rule opens before every other rule, for a ready green; the test
/// listener only ever goes to one of the slots.
fn check_safety(g: &Gen, observed: &Observed, decision: &Decision) -> Result<(), TestCaseError> {
    let Decision::Act(action) = decision else {
        return Ok(());
    };
    if let Some(write) = action.router_write() {
        let before = share_b(observed.router.forwards());
        let after = share_b(&write.forwards);
        if after > before {
            prop_assert!(
                !g.hook_due(),
                "more share with a hook stage due: {:?}",
                action
            );
            prop_assert!(!g.alarm_firing(), "more share with an alarm going off");
            prop_assert!(!g.verdict_fails(), "more share with a failing verdict");
            prop_assert!(!g.abort, "more share with an abort request");
            prop_assert!(g.ready, "more share for a green that is not ready");
        }
    }
    let service = crate::core::names::ServiceName::parse(SERVICE).expect("service");
    match action {
        Action::CloseTestRule { rule, release } => {
            let named = observed
                .verify
                .rules
                .iter()
                .flatten()
                .find(|r| &r.arn == rule);
            prop_assert!(named.is_some(), "closes a rule that is not there");
            prop_assert_eq!(
                named.and_then(|r| r.test_release(&service)),
                Some(release.as_str()),
                "closes a rule that is not a test rule of this service's {}",
                release
            );
        }
        Action::OpenTestRule {
            release,
            priority,
            conditions,
            target_group,
            listener,
            ..
        } => {
            let rules = observed.verify.rules.as_ref().expect("rules read");
            let first = rules
                .iter()
                .filter_map(|r| r.priority)
                .min()
                .unwrap_or(u32::MAX);
            prop_assert!(
                *priority < first,
                "priority {} not before {}",
                priority,
                first
            );
            prop_assert_eq!(release.as_str(), "v2");
            prop_assert_eq!(target_group, &arn(TG_B));
            prop_assert_eq!(listener.as_str(), LISTENER);
            prop_assert_eq!(conditions.clone(), header_v2());
            prop_assert!(g.ready && g.cfg.header);
        }
        Action::PointTestListener { to, listener, .. } => {
            prop_assert!(g.cfg.listener);
            prop_assert_eq!(listener.as_str(), TEST_LISTENER);
            prop_assert!(to == &arn(TG_A) || to == &arn(TG_B), "to {}", to);
        }
        Action::RunHooks { stage, .. } => {
            prop_assert!(g.ready, "hooks for a green that is not ready");
            prop_assert!(
                !g.abort && !g.alarm_firing(),
                "hooks for a release being stopped"
            );
            prop_assert!(*stage != HookStage::PostTraffic);
        }
        _ => {}
    }
    Ok(())
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Every decision over a release in progress with random verification around it is the
    /// next step of the sequence, and safe.
    #[test]
    fn a_release_in_progress_takes_the_next_step_of_its_verification(g in arb_gen()) {
        let spec = g.cfg.spec();
        let observed = g.observed();
        let decision = g.command().decide(&spec, &observed, g.clock());
        check_safety(&g, &observed, &decision)
            .map_err(|e| TestCaseError::fail(format!("{}: {decision:?}: {e}", COMMANDS[g.cmd])))?;
        prop_assert_eq!(gist(&decision), g.expected(), "{}", COMMANDS[g.cmd]);
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// GetMetricData is called only when the next decision is at a gate that compares them
    /// ([`metrics_due`]), and every decision that depends on the metrics is made with them.
    #[test]
    fn metrics_are_read_for_every_decision_on_them_and_never_mid_pause(g in arb_gen()) {
        let spec = g.cfg.spec();
        let clock = g.clock();
        let observed = g.observed();
        let with = |m: Option<Metrics>| {
            let mut o = observed.clone();
            o.verify.metrics = m.map(comparison);
            g.command().decide(&spec, &o, clock)
        };
        let depends = [Some(Metrics::Fail), Some(Metrics::Thin)]
            .into_iter()
            .any(|m| with(m) != with(Some(Metrics::Pass)))
            || with(None) != with(Some(Metrics::Pass));
        let due = metrics_due(&spec, &observed, clock.now);
        prop_assert!(!depends || due.is_some(), "decides on metrics it did not read");
        if due.is_some() {
            // Not at every poll of a pause: only once it is over (a hook due, an alarm or an
            // abort may still come first, for one pass).
            let waits_out_a_pause = matches!(
                with(Some(Metrics::Pass)),
                Decision::Wait(Wait { why: WaitReason::Pause { .. } | WaitReason::Gate { .. }, .. })
                    | Decision::Wait(Wait { why: WaitReason::Health { .. }, .. })
            );
            prop_assert!(!waits_out_a_pause, "reads metrics during a pause");
            prop_assert_eq!(due, Some(t0()), "the window starts when the step took effect");
        }
    }
}

/// The generator reaches every step of the sequence, for the property to mean something.
#[test]
fn generated_verification_states_reach_every_step() {
    let strategy = arb_gen();
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    for _ in 0..20_000 {
        let g = strategy.new_tree(&mut runner).expect("generates").current();
        let expected = g.expected();
        let kind = expected
            .split([' ', ','])
            .next()
            .unwrap_or_default()
            .trim_end_matches(':')
            .to_owned();
        seen.insert(kind.clone());
        if expected.contains(": ") || expected.starts_with("close_test_rule") {
            seen.insert(expected.clone());
        }
        if expected.contains(", pass") || expected.contains(", inconclusive") {
            seen.insert(format!("{kind} with a verdict"));
        }
    }
    for expected in [
        "open_test_rule",
        "close_test_rule v0",
        "close_test_rule v2",
        "point",
        "run_hooks",
        "begin",
        "shift",
        "shift with a verdict",
        "flip",
        "flip with a verdict",
        "route_back: abort command",
        "route_back: rollback command",
        "route_back: abort request",
        "route_back: alarm",
        "route_back: analysis failed",
        "route_back: analysis inconclusive",
        "record_stop: alarm",
        "record_stop: abort command",
        "fail_release: alarm",
        "fail_release: abort command",
        "wait",
        "bake",
        "gate",
        "analysis",
    ] {
        assert!(
            seen.contains(expected),
            "never generated: {expected}; seen {seen:#?}"
        );
    }
}
