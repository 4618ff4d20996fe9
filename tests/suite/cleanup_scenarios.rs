//! `greenlight cleanup` against the in-memory cloud: the real engine, the fake's clock and its
//! safety watch. Releases are deployed with the real deploy engine, the clock jumps past
//! `keep_warm`, and cleanup retires the previous fleet; then the same with a transient fault at
//! every call, a crash after every call, lying tags, a router changed under cleanup's feet, a
//! lock held by another runner, several services at once, and a dry run.
//!
//! The fake's invariant 3 ("the previous release stays at capacity while it is kept warm")
//! flags every shrink of a fleet tagged `warm`, even one past its `warm-until`, which is exactly
//! what cleanup retires. [`Watch`] records which warm fleets were still within their keep-warm
//! time at every `set_capacity`, and [`Watch::assert_safe`] accepts that one alarm only for a
//! fleet that was past it every time; every other violation fails the test.
//! `the_fakes_warm_invariant_accepts_a_retirement` keeps the strict check, ignored until the fake
//! knows about `warm-until`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use greenlight::core::analysis::{AlarmState, MetricWindow};
use greenlight::core::cleanup::{CleanupAction, CleanupPolicy, Decision, Item, Keep, Subject};
use greenlight::core::cloud::{
    Cloud, CloudErrorKind, CloudResult, LaunchTemplateVersion, ListenerForward, LockObject,
    TargetGroupInfo,
};
use greenlight::core::fleet::{Capacity, FleetConfig, FleetSummary, FleetTag, LaunchTemplateRef};
use greenlight::core::health::TargetHealth;
use greenlight::core::lock::{self, Holder};
use greenlight::core::names::{
    FleetName, ImageId, ListenerArn, RuleArn, ServiceName, TargetGroupArn,
};
use greenlight::core::router::{
    Forward, RouterAction, RouterId, RouterState, RouterWrite, Slots, Weight,
};
use greenlight::core::tags;
use greenlight::core::test_traffic::{ListenerRule, RuleCondition, rule_tags};
use greenlight::engine::cleanup::{
    CleanupEvent, CleanupOptions, CleanupRecorder, CleanupReport, CleanupSink, MAX_DRAIN_SLEEP,
    Outcome, Runner, Scope, ServiceReport, cleanup,
};
use greenlight::engine::clock::Clock;
use greenlight::exit;
use greenlight::fake::{FakeCloud, FaultTiming, sample, sample_config};

use super::scenarios::{World, block_on, holder, holder_on, tg, world};

const LOCK: &str = "greenlight-lock.checkout";
const V2: &str = "checkout-v2";
const V3: &str = "checkout-v3";
const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/checkout/50dc6c495c0c9188";

/// Calls that only read.
const READS: [&str; 21] = [
    "router",
    "target_group",
    "target_groups",
    "fleets",
    "fleet_config",
    "target_health",
    "image_exists",
    "launch_template_version",
    "find_launch_template_version",
    "fleet_summary",
    "read_lock",
    "listener_rules",
    "load_balancer_dns",
    "alarms",
    "target_group_metrics",
    "tagged_fleets",
    "listeners",
    "listener_forwards",
    "deregistration_delay",
    "launch_template_versions",
    "locks",
];

/// Calls that change something other than the lock.
const CHANGES: [&str; 13] = [
    "create_rule",
    "delete_rule",
    "create_launch_template_version",
    "create_fleet",
    "configure_fleet",
    "set_capacity",
    "tag_fleet",
    "untag_fleet",
    "suspend_processes",
    "resume_processes",
    "delete_fleet",
    "delete_launch_template_versions",
    "route",
];

fn dead(_: u32) -> bool {
    false
}

fn alive(_: u32) -> bool {
    true
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn ago(w: &World, d: Duration) -> SystemTime {
    w.clock.now() - d
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

fn listener(w: &World) -> ListenerArn {
    match &w.spec.router {
        RouterId::Listener(l) => l.clone(),
        RouterId::Rule(_) => unreachable!("the sample routes with a listener"),
    }
}

fn options(w: &World) -> CleanupOptions {
    CleanupOptions {
        dry_run: false,
        policy: CleanupPolicy {
            keep_failed: w.spec.retention.keep_failed,
            keep_releases: w.spec.retention.keep_releases,
        },
        deadline: w.clock.now() + mins(15),
        concurrency: 4,
    }
}

/// Keeps one launch template version greenlight made (besides those in use).
fn keep_one(w: &World) -> CleanupOptions {
    let mut o = options(w);
    o.policy.keep_releases = 1;
    o
}

fn config_scope(w: &World) -> Scope {
    Scope::Config(Box::new(w.spec.clone()))
}

fn checkout() -> ServiceName {
    ServiceName::parse("checkout").unwrap()
}

/// One cleanup run as `holder`, on a cloud handle the fake checks changes only under that
/// runner's lock.
fn run_as(
    w: &World,
    holder: &Holder,
    alive: fn(u32) -> bool,
    scope: &Scope,
    options: &CleanupOptions,
) -> (CleanupReport, Vec<CleanupEvent>) {
    let cloud = w.cloud.runner(&holder.token);
    let runner = Runner {
        cloud: &cloud,
        clock: &w.clock,
        holder,
        alive,
        stop: &w.stop,
    };
    let recorder = CleanupRecorder::default();
    let report = block_on(cleanup(&runner, scope, options, &recorder))
        .unwrap_or_else(|e| panic!("cleanup failed as a whole: {e}"));
    (report, recorder.0.into_inner().unwrap())
}

/// A run by a runner of its own on this host; earlier runners here are dead.
fn run(w: &World, scope: &Scope, options: &CleanupOptions) -> (CleanupReport, Vec<CleanupEvent>) {
    run_as(w, &holder(&unique("cleanup")), dead, scope, options)
}

fn only(report: CleanupReport) -> ServiceReport {
    assert_eq!(report.services.len(), 1, "{report:?}");
    report.services.into_iter().next().unwrap()
}

/// Cleanup of the sample service from its config.
fn clean_with(w: &World, options: &CleanupOptions) -> ServiceReport {
    only(run(w, &config_scope(w), options).0)
}

fn clean(w: &World) -> ServiceReport {
    clean_with(w, &options(w))
}

/// v2 deployed with the real engine (blue goes warm), then v3 (v2 goes warm; the deploy retires
/// blue to make room in slot a): v2 is greenlight's own warm fleet in slot b, v3 live in slot a.
/// The clock then jumps 70 minutes, past v2's keep-warm hour.
fn retired_world() -> World {
    let w = world();
    assert!(w.deploy("v2", sample::NEXT_IMAGE).0.unwrap().flipped);
    w.clock.advance(Duration::from_secs(2 * 3600));
    assert!(w.deploy("v3", sample::THIRD_IMAGE).0.unwrap().flipped);
    assert_eq!(w.tag(V2, tags::PHASE).as_deref(), Some("warm"));
    assert_eq!(w.tag(V3, tags::PHASE).as_deref(), Some("live"));
    assert_eq!(
        w.cloud.summary(V2).unwrap().target_groups,
        [tg(sample::TG_B)]
    );
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    // The listener still names slot b (at weight 0), so AWS lists the load balancer for it; the
    // fake keeps the sample's first answer (none) unless told.
    assert!(
        w.cloud
            .forwards(&w.spec.router)
            .iter()
            .any(|f| f.target_group == tg(sample::TG_B))
    );
    w.cloud
        .set_load_balancers(sample::TG_B, vec![LB.to_owned()]);
    w.clock.advance(mins(70));
    w
}

/// A leftover test-traffic rule of `release` on the production listener, forwarding to
/// `target_group`, as a release that crashed would leave it.
fn leftover_rule(w: &World, release: &str, target_group: &str) -> RuleArn {
    let arrange = w.cloud.put_lock(
        "greenlight-lock.arrange",
        BTreeMap::from([(lock::TOKEN.to_owned(), "arrange".to_owned())]),
    );
    let rule = block_on(w.cloud.create_rule(
        &listener(w),
        10,
        &[RuleCondition::header("X-Release", release)],
        &tg(target_group),
        &rule_tags(&checkout(), release),
    ))
    .unwrap();
    w.cloud.remove_lock(&arrange);
    rule
}

/// [`retired_world`] plus a leftover test rule of v2 (so v2 is routed until the rule goes),
/// cleaned with `keep_releases = 1` (so v2's launch template version goes once v2 is gone).
fn rich_world() -> World {
    let w = retired_world();
    leftover_rule(&w, "v2", sample::TG_B);
    w
}

/// What cleanup leaves that matters: every fleet not being deleted with its capacity, phase and
/// instance count, the router, the template's versions, the rules and the lock.
#[derive(Debug, Clone, PartialEq)]
struct EndState {
    fleets: Vec<(String, u32, Option<String>, usize)>,
    router: Vec<Forward>,
    versions: Vec<u64>,
    rules: Vec<RuleArn>,
    lock: bool,
}

fn end_state(w: &World) -> EndState {
    EndState {
        fleets: [sample::BLUE, V2, V3]
            .iter()
            .filter_map(|name| w.cloud.summary(name))
            .filter(|s| !s.deleting)
            .map(|s| {
                (
                    s.name.to_string(),
                    s.capacity.desired,
                    s.tags.get(tags::PHASE).cloned(),
                    s.instances.len(),
                )
            })
            .collect(),
        router: w.cloud.forwards(&w.spec.router),
        versions: w
            .cloud
            .template_versions(sample::TEMPLATE)
            .iter()
            .map(|v| v.number)
            .collect(),
        rules: w
            .cloud
            .rules(&listener(w))
            .into_iter()
            .map(|r| r.arn)
            .collect(),
        lock: w.cloud.lock_object(LOCK).is_some(),
    }
}

fn applied_names(report: &ServiceReport) -> Vec<&'static str> {
    report.applied.iter().map(CleanupAction::name).collect()
}

fn changes(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| CHANGES.contains(&c.as_str()))
        .cloned()
        .collect()
}

/// The live fleet as cleanup must leave it: same capacity, instances and tags.
fn live_fingerprint(w: &World) -> (Capacity, Vec<String>, BTreeMap<String, String>) {
    let v3 = w.cloud.summary(V3).expect("live fleet");
    (
        v3.capacity,
        v3.instances.iter().map(|i| i.id.clone()).collect(),
        v3.tags,
    )
}

fn item_for<'a>(report: &'a ServiceReport, fleet: &str) -> &'a Item {
    report
        .items
        .iter()
        .find(|i| matches!(&i.subject, Subject::Fleet { name, .. } if name.as_str() == fleet))
        .unwrap_or_else(|| panic!("no item for {fleet}: {report:?}"))
}

// ---------------------------------------------------------------------------------------------
// The safety watch

fn shrank_warm_alarm(violation: &str) -> Option<&str> {
    violation
        .strip_prefix("shrank warm fleet ")?
        .strip_suffix(", which a rollback needs")
}

/// Which warm fleets were still within their keep-warm time when some `set_capacity` was made.
struct Watch {
    kept_warm: Arc<Mutex<BTreeSet<String>>>,
    fleets: Vec<String>,
}

impl Watch {
    fn new(w: &World, fleets: &[&str]) -> Watch {
        Watch::with(w, fleets, |_| {})
    }

    /// Also runs `extra` before every call, as `FakeCloud::on_call` would.
    fn with(w: &World, fleets: &[&str], extra: impl Fn(&str) + Send + Sync + 'static) -> Watch {
        let kept_warm = Arc::new(Mutex::new(BTreeSet::new()));
        let fleets: Vec<String> = fleets.iter().map(|f| (*f).to_owned()).collect();
        let (cloud, clock, seen, names) = (
            w.cloud.clone_handle(),
            w.clock.clone(),
            kept_warm.clone(),
            fleets.clone(),
        );
        w.cloud.on_call(move |operation| {
            if operation == "set_capacity" {
                let now = clock.now();
                for name in &names {
                    let Some(s) = cloud.summary(name) else {
                        continue;
                    };
                    let warm = s.tags.get(tags::PHASE).map(String::as_str) == Some("warm");
                    let until = s
                        .tags
                        .get(tags::WARM_UNTIL)
                        .and_then(|t| humantime::parse_rfc3339(t).ok());
                    if warm && until.is_none_or(|until| until > now) {
                        seen.lock().unwrap().insert(name.clone());
                    }
                }
            }
            extra(operation);
        });
        Watch { kept_warm, fleets }
    }

    /// The fake's violations, less its false alarm about shrinking a warm fleet whose keep-warm
    /// time had passed (see the module's doc).
    fn violations(&self, w: &World) -> Vec<String> {
        let kept = self.kept_warm.lock().unwrap();
        w.cloud
            .violations()
            .into_iter()
            .filter(|v| {
                shrank_warm_alarm(v).is_none_or(|fleet| {
                    kept.contains(fleet) || !self.fleets.iter().any(|f| f == fleet)
                })
            })
            .collect()
    }

    /// No violation but that false alarm, and no lock left behind.
    fn assert_safe(&self, w: &World) {
        assert_eq!(self.violations(w), Vec::<String>::new());
        assert_eq!(w.cloud.lock_object(LOCK), None, "a lock was left behind");
    }
}

fn watch(w: &World) -> Watch {
    Watch::new(w, &[sample::BLUE, V2, V3])
}

// ---------------------------------------------------------------------------------------------
// 1. A full retirement

#[test]
fn a_full_retirement_scales_the_expired_warm_fleet_to_zero_then_deletes_it() {
    let w = retired_world();
    let watch = watch(&w);
    let live = live_fingerprint(&w);
    let router = w.cloud.forwards(&w.spec.router);
    let before = w.cloud.calls().len();

    let report = clean(&w);
    assert_eq!(report.outcome, Outcome::Done, "{report:?}");
    assert_eq!(
        applied_names(&report),
        ["scale_down", "delete_fleet"],
        "{report:?}"
    );
    assert!(
        matches!(&report.applied[0], CleanupAction::ScaleDown { fleet, release, capacity }
            if fleet.as_str() == V2 && release == "v2" && capacity.desired == 2),
        "{:?}",
        report.applied[0]
    );
    let calls = w.cloud.calls()[before..].to_vec();
    // The retiring-at tag, the scale to zero, the delete; the lock taken first, given back last.
    assert_eq!(
        changes(&calls),
        ["tag_fleet", "set_capacity", "delete_fleet"],
        "{calls:?}"
    );
    let lock_calls: Vec<&String> = calls
        .iter()
        .filter(|c| c.contains("lock") && *c != "read_lock")
        .collect();
    assert_eq!(lock_calls, ["create_lock", "delete_lock"], "{calls:?}");
    assert_eq!(calls.first().map(String::as_str), Some("create_lock"));
    assert_eq!(calls.last().map(String::as_str), Some("delete_lock"));
    let v2 = w.cloud.summary(V2).expect("v2 lingers while it is deleted");
    assert!(v2.deleting);
    assert!(v2.instances.is_empty());
    assert_eq!(v2.capacity.desired, 0);
    assert!(v2.tags.contains_key(tags::RETIRING_AT));
    // Deleting v2 is what the last pass saw.
    assert_eq!(
        item_for(&report, V2).decision,
        Decision::Keep {
            keep: Keep::Deleting
        }
    );
    // The live fleet and the router are untouched; the lock is handed back; nothing unsafe.
    assert_eq!(live_fingerprint(&w), live);
    assert_eq!(w.cloud.forwards(&w.spec.router), router);
    watch.assert_safe(&w);

    // A second run: nothing due, nothing changed.
    let before = w.cloud.calls().len();
    let again = clean(&w);
    assert_eq!(again.outcome, Outcome::NothingDue, "{again:?}");
    assert!(again.applied.is_empty());
    assert_eq!(changes(&w.cloud.calls()[before..]), Vec::<String>::new());
    // Once the deletion is over, v2 is gone for good and a run still finds nothing due.
    w.clock.advance(mins(10));
    assert_eq!(clean(&w).outcome, Outcome::NothingDue);
    assert_eq!(w.cloud.summary(V2), None);
    assert_eq!(live_fingerprint(&w), live);
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    watch.assert_safe(&w);
}

/// What a log sees of a drain: when each line could be printed (an event, or a `waiting` call
/// where the printer may add a heartbeat), on the fake clock.
struct Timed {
    clock: Arc<greenlight::fake::FakeClock>,
    /// (when, Some(next sleep) for a `waiting` call, None for an event)
    seen: Mutex<Vec<(SystemTime, Option<Duration>)>>,
}

impl CleanupSink for Timed {
    fn event(&self, _event: &CleanupEvent) {
        self.seen.lock().unwrap().push((self.clock.now(), None));
    }

    fn waiting(&self, _service: &str, fleets: usize, next: Duration) {
        assert!(fleets > 0);
        self.seen
            .lock()
            .unwrap()
            .push((self.clock.now(), Some(next)));
    }
}

#[test]
fn a_drain_gives_the_log_a_chance_to_speak_at_least_every_25_seconds() {
    let w = retired_world();
    // v2 lost its traffic 70 minutes ago; a 75-minute deregistration delay leaves about five
    // minutes of waiting before cleanup may touch it.
    w.cloud.set_deregistration_delay(sample::TG_B, mins(75));
    let sink = Timed {
        clock: w.clock.clone(),
        seen: Mutex::new(Vec::new()),
    };
    let cloud = w.cloud.runner(&holder(&unique("cleanup")).token);
    let runner_holder = holder(&unique("cleanup"));
    let runner = Runner {
        cloud: &cloud,
        clock: &w.clock,
        holder: &runner_holder,
        alive: dead,
        stop: &w.stop,
    };
    let started = w.clock.now();
    let report = block_on(cleanup(&runner, &config_scope(&w), &options(&w), &sink)).unwrap();
    assert_eq!(only(report).outcome, Outcome::Done);
    let seen = sink.seen.into_inner().unwrap();
    let waits: Vec<Duration> = seen.iter().filter_map(|(_, next)| *next).collect();
    assert!(!waits.is_empty(), "the retirement never waited: {seen:?}");
    assert!(
        waits.iter().all(|next| *next <= MAX_DRAIN_SLEEP),
        "{waits:?}"
    );
    // From the start to the end, no stretch longer than one drain sleep without a call that
    // can print: the printer's heartbeat (due 25 s after its last line) is never starved.
    let mut last = started;
    for (when, _) in &seen {
        let gap = when.duration_since(last).unwrap_or_default();
        assert!(
            gap <= MAX_DRAIN_SLEEP,
            "{gap:?} of silence before {when:?}: {seen:?}"
        );
        last = *when;
    }
    assert!(
        w.clock.now().duration_since(started).unwrap() > Duration::from_secs(60),
        "the drain was too short to show anything"
    );
}

/// The same retirement, held to the fake's own watch without the exception above.
#[test]
fn the_fakes_warm_invariant_accepts_a_retirement() {
    let w = retired_world();
    assert_eq!(clean(&w).outcome, Outcome::Done);
    w.assert_safe();
}

#[test]
fn a_rich_retirement_deletes_the_leftover_rule_then_the_fleet_then_its_version() {
    let w = rich_world();
    let watch = watch(&w);
    let live = live_fingerprint(&w);
    let router = w.cloud.forwards(&w.spec.router);
    let (report, events) = run(&w, &config_scope(&w), &keep_one(&w));
    let report = only(report);
    assert_eq!(report.outcome, Outcome::Done, "{report:?}");
    // While the rule forwards to v2, v2 is routed and kept; once it is gone, v2 is retired.
    assert_eq!(
        applied_names(&report),
        [
            "delete_rule",
            "scale_down",
            "delete_fleet",
            "delete_versions"
        ]
    );
    assert!(matches!(
        &report.applied[3],
        CleanupAction::DeleteVersions { template_id, versions }
            if template_id == sample::TEMPLATE && versions == &[2]
    ));
    let first_v2 = events
        .iter()
        .find_map(|e| match e {
            CleanupEvent::CleanupItem { item, .. }
                if matches!(&item.subject, Subject::Fleet { name, .. } if name.as_str() == V2) =>
            {
                Some(item.decision.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(&first_v2, Decision::Keep { keep: Keep::Routed { target_group, weight: 1, .. } }
            if *target_group == tg(sample::TG_B)),
        "{first_v2:?}"
    );
    assert_eq!(
        end_state(&w),
        EndState {
            fleets: vec![(V3.into(), 2, Some("live".into()), 2)],
            router,
            versions: vec![1, 3],
            rules: vec![],
            lock: false,
        }
    );
    assert_eq!(live_fingerprint(&w), live);
    watch.assert_safe(&w);
}

// ---------------------------------------------------------------------------------------------
// 2. Transient faults at every call position

/// Each call of a run as (operation, nth occurrence).
fn positions(calls: &[String]) -> Vec<(String, usize)> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    calls
        .iter()
        .map(|call| {
            let n = seen.entry(call.clone()).or_default();
            *n += 1;
            (call.clone(), *n)
        })
        .collect()
}

#[test]
fn a_transient_fault_at_every_call_converges_on_the_next_run() {
    let reference = rich_world();
    let before = reference.cloud.calls().len();
    let report = clean_with(&reference, &keep_one(&reference));
    assert_eq!(report.outcome, Outcome::Done);
    let calls = reference.cloud.calls()[before..].to_vec();
    let expected = end_state(&reference);

    let mut covered = 0;
    let mut ridden_out = 0;
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    let mut locks_left = Vec::new();
    for (operation, nth) in positions(&calls) {
        for timing in [FaultTiming::Before, FaultTiming::After] {
            let at = format!("{operation}#{nth} {timing:?}");
            let w = rich_world();
            let watch = watch(&w);
            let live = live_fingerprint(&w);
            w.cloud
                .fail(&operation, nth, timing, CloudErrorKind::Unavailable);
            let first = clean_with(&w, &keep_one(&w));
            covered += 1;
            match &first.outcome {
                Outcome::Done => ridden_out += 1,
                Outcome::Failed { exit_code, .. } => {
                    *failed.entry(format!("exit {exit_code}")).or_default() += 1;
                }
                other => panic!("{at}: {other:?}"),
            }
            if w.cloud.lock_object(LOCK).is_some() {
                locks_left.push(at.clone());
            }
            // Whatever the first run did, it never touched the live fleet.
            assert_eq!(live_fingerprint(&w), live, "{at}");
            let second = clean_with(&w, &keep_one(&w));
            assert!(
                matches!(second.outcome, Outcome::Done | Outcome::NothingDue),
                "{at}: {second:?}"
            );
            assert_eq!(end_state(&w), expected, "{at}");
            assert_eq!(live_fingerprint(&w), live, "{at}");
            watch.assert_safe(&w);
        }
    }
    assert_eq!(covered, calls.len() * 2);
    println!(
        "cleanup: a transient fault at each of {covered} positions ({} calls x before/after): \
         {ridden_out} ridden out by the run itself, failed first {failed:?}, lock left behind \
         by the first run at {locks_left:?}; every one converged on the next run",
        calls.len()
    );
}

/// A transient fault (throttling, a 5xx after the SDK's own retries) at any single call is
/// ridden out by the one run, as deploy does: the run completes.
#[test]
fn a_transient_fault_at_any_call_is_ridden_out_by_the_run() {
    let reference = rich_world();
    let before = reference.cloud.calls().len();
    clean_with(&reference, &keep_one(&reference));
    let calls = reference.cloud.calls()[before..].to_vec();
    let mut not_ridden = Vec::new();
    for (operation, nth) in positions(&calls) {
        for timing in [FaultTiming::Before, FaultTiming::After] {
            let w = rich_world();
            w.cloud
                .fail(&operation, nth, timing, CloudErrorKind::Unavailable);
            let first = clean_with(&w, &keep_one(&w));
            let lock_left = w.cloud.lock_object(LOCK).is_some();
            if first.outcome != Outcome::Done || lock_left {
                not_ridden.push(format!(
                    "{operation}#{nth} {timing:?}: {:?}{}",
                    first.outcome,
                    if lock_left { ", lock left behind" } else { "" }
                ));
            }
        }
    }
    assert_eq!(not_ridden, Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 3. A crash after every call

/// A cloud whose process dies after `limit` calls: the next call never returns, and the test
/// drops the run there, as a killed process would leave things (its lock included).
struct Crashing {
    inner: FakeCloud,
    limit: usize,
    made: AtomicUsize,
    crashed: Arc<AtomicBool>,
}

impl Crashing {
    fn new(inner: FakeCloud, limit: usize) -> Crashing {
        Crashing {
            inner,
            limit,
            made: AtomicUsize::new(0),
            crashed: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn gate(&self) {
        if self.made.fetch_add(1, Ordering::SeqCst) >= self.limit {
            self.crashed.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
    }
}

macro_rules! delegate {
    ($( fn $name:ident ( $( $arg:ident : $ty:ty ),* ) -> $ret:ty ; )*) => {
        $(
            async fn $name(&self, $( $arg: $ty ),*) -> CloudResult<$ret> {
                self.gate().await;
                self.inner.$name($( $arg ),*).await
            }
        )*
    };
}

impl Cloud for Crashing {
    delegate! {
        fn router(id: &RouterId) -> RouterState;
        fn target_group(arn: &TargetGroupArn) -> TargetGroupInfo;
        fn target_groups(arns: &[TargetGroupArn]) -> Vec<TargetGroupInfo>;
        fn fleets(target_groups: &[TargetGroupArn]) -> Vec<FleetSummary>;
        fn fleet_config(name: &FleetName) -> FleetConfig;
        fn target_health(target_group: &TargetGroupArn) -> Vec<TargetHealth>;
        fn image_exists(image: &ImageId) -> bool;
        fn launch_template_version(template: &LaunchTemplateRef) -> Option<LaunchTemplateVersion>;
        fn find_launch_template_version(
            template_id: &str,
            description: &str
        ) -> Option<LaunchTemplateVersion>;
        fn create_launch_template_version(
            template_id: &str,
            source_version: u64,
            image: &ImageId,
            description: &str,
            client_token: &str
        ) -> LaunchTemplateVersion;
        fn fleet_summary(name: &FleetName) -> Option<FleetSummary>;
        fn create_fleet(name: &FleetName, config: &FleetConfig) -> ();
        fn configure_fleet(name: &FleetName, config: &FleetConfig) -> ();
        fn set_capacity(name: &FleetName, capacity: Capacity) -> ();
        fn tag_fleet(name: &FleetName, tags: &[(String, String)]) -> ();
        fn untag_fleet(name: &FleetName, keys: &[String]) -> ();
        fn suspend_processes(name: &FleetName, processes: &[String]) -> ();
        fn resume_processes(name: &FleetName, processes: &[String]) -> ();
        fn delete_fleet(name: &FleetName) -> ();
        fn route(id: &RouterId, write: &RouterWrite) -> Vec<Forward>;
        fn create_lock(name: &str, tags: &[(String, String)], client_token: &str) -> String;
        fn read_lock(name: &str) -> Option<(String, BTreeMap<String, String>)>;
        fn tag_lock(id: &str, tags: &[(String, String)]) -> ();
        fn delete_lock(id: &str) -> ();
        fn listener_rules(listener: &ListenerArn) -> Vec<ListenerRule>;
        fn create_rule(
            listener: &ListenerArn,
            priority: u32,
            conditions: &[RuleCondition],
            target_group: &TargetGroupArn,
            tags: &[(String, String)]
        ) -> RuleArn;
        fn delete_rule(rule: &RuleArn) -> ();
        fn load_balancer_dns(load_balancer_arn: &str) -> String;
        fn alarms(names: &[String]) -> Vec<AlarmState>;
        fn target_group_metrics(
            load_balancer_arn: &str,
            target_groups: &[TargetGroupArn],
            start: SystemTime,
            end: SystemTime
        ) -> Vec<MetricWindow>;
        fn tagged_fleets(service: Option<&ServiceName>) -> Vec<FleetSummary>;
        fn listeners(load_balancer_arn: &str) -> Vec<ListenerArn>;
        fn listener_forwards(listener: &ListenerArn) -> Vec<ListenerForward>;
        fn deregistration_delay(target_group: &TargetGroupArn) -> Duration;
        fn launch_template_versions(template_id: &str) -> Vec<LaunchTemplateVersion>;
        fn delete_launch_template_versions(template_id: &str, versions: &[u64]) -> ();
        fn locks() -> Vec<LockObject>;
    }
}

/// Runs `future` until it completes (`Some`) or the cloud under it crashed (`None`: the future
/// is dropped where it stood).
fn until_crash<F: Future>(future: F, crashed: &AtomicBool) -> Option<F::Output> {
    block_on(async {
        let mut future = pin!(future);
        std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if crashed.load(Ordering::SeqCst) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await
    })
}

/// A cleanup run as `holder` that dies after `limit` calls; `None` if it died. Also returns the
/// number of calls it made.
fn crashing_run(
    w: &World,
    holder: &Holder,
    limit: usize,
    options: &CleanupOptions,
) -> (Option<ServiceReport>, usize) {
    let cloud = Crashing::new(w.cloud.runner(&holder.token), limit);
    let crashed = cloud.crashed.clone();
    let runner = Runner {
        cloud: &cloud,
        clock: &w.clock,
        holder,
        alive: dead,
        stop: &w.stop,
    };
    let scope = config_scope(w);
    let recorder = CleanupRecorder::default();
    let result = until_crash(cleanup(&runner, &scope, options, &recorder), &crashed);
    let made = cloud.made.load(Ordering::SeqCst).min(limit);
    (result.map(|r| only(r.expect("cleanup"))), made)
}

#[test]
fn a_crash_after_every_call_converges_when_the_lock_is_taken_over() {
    let reference = rich_world();
    let (report, total) = crashing_run(
        &reference,
        &holder(&unique("reference")),
        usize::MAX,
        &keep_one(&reference),
    );
    assert_eq!(report.unwrap().outcome, Outcome::Done);
    let expected = end_state(&reference);
    assert!(total > 10, "{total}");

    let mut crash_points = 0;
    let mut locks_left = 0;
    for k in 0..total {
        // The crashed run was on another machine: its lock is taken over once it expires.
        // Or on this one: its process is gone, so its lock is taken over at once.
        for same_host in [false, true] {
            let at = format!("crash after {k} calls, same host: {same_host}");
            let w = rich_world();
            let watch = watch(&w);
            let live = live_fingerprint(&w);
            let crashed = if same_host {
                holder(&unique("crashed"))
            } else {
                holder_on(&unique("crashed"), "build-7")
            };
            let (result, made) = crashing_run(&w, &crashed, k, &keep_one(&w));
            assert!(result.is_none(), "{at}: the run finished: {result:?}");
            assert_eq!(made, k, "{at}");
            crash_points += 1;
            let left = w.cloud.lock_object(LOCK);
            if let Some((_, tags)) = &left {
                locks_left += 1;
                assert_eq!(tags.get(lock::TOKEN), Some(&crashed.token), "{at}");
            }
            assert_eq!(live_fingerprint(&w), live, "{at}");
            if left.is_some() && !same_host {
                // Alive as far as anyone here can tell, and not expired: the re-run waits its
                // turn and changes nothing.
                let before = w.cloud.calls().len();
                let next = clean_with(&w, &keep_one(&w));
                assert!(
                    matches!(&next.outcome, Outcome::Locked { holder } if holder.contains("build-7")),
                    "{at}: {next:?}"
                );
                assert_eq!(changes(&w.cloud.calls()[before..]), Vec::<String>::new());
                w.clock.advance(w.spec.lock.ttl + Duration::from_secs(1));
            }
            let rerun = clean_with(&w, &keep_one(&w));
            assert!(
                matches!(rerun.outcome, Outcome::Done | Outcome::NothingDue),
                "{at}: {rerun:?}"
            );
            assert_eq!(end_state(&w), expected, "{at}");
            assert_eq!(live_fingerprint(&w), live, "{at}");
            watch.assert_safe(&w);
        }
    }
    assert!(locks_left > 0);
    println!(
        "cleanup: crash after each of 0..{total} calls, twice (another host: taken over once \
         expired; this host, dead pid: at once): {crash_points} crash points, {locks_left} \
         left the lock behind; all converged"
    );
}

/// A crash right after the scale to zero leaves v2 warm by its phase tag, at zero: a rollback
/// then refuses (it would drop requests) and routes nothing; the next cleanup finishes.
#[test]
fn a_rollback_to_a_half_retired_fleet_refuses_and_the_next_cleanup_finishes() {
    let reference = retired_world();
    let before = reference.cloud.calls().len();
    clean(&reference);
    let calls = reference.cloud.calls()[before..].to_vec();
    let scaled = calls.iter().position(|c| c == "set_capacity").unwrap() + 1;

    let w = retired_world();
    let watch = watch(&w);
    let live = live_fingerprint(&w);
    let router = w.cloud.forwards(&w.spec.router);
    let (result, made) = crashing_run(&w, &holder(&unique("crashed")), scaled, &options(&w));
    assert!(result.is_none());
    assert_eq!(made, scaled);
    let v2 = w.cloud.summary(V2).unwrap();
    assert_eq!((v2.capacity.desired, v2.instances.len()), (0, 0));
    assert_eq!(v2.tags.get(tags::PHASE).map(String::as_str), Some("warm"));

    let failure = w.rollback_to(None).unwrap_err();
    assert_eq!(exit::code(&failure), exit::NEEDS_ATTENTION, "{failure}");
    assert!(
        failure.to_string().contains("would drop requests"),
        "{failure}"
    );
    assert_eq!(w.cloud.forwards(&w.spec.router), router);
    assert_eq!(live_fingerprint(&w), live);

    let next = clean(&w);
    assert_eq!(next.outcome, Outcome::Done, "{next:?}");
    assert_eq!(applied_names(&next), ["delete_fleet"]);
    assert_eq!(live_fingerprint(&w), live);
    watch.assert_safe(&w);
}

// ---------------------------------------------------------------------------------------------
// 4. Lying tags and races

fn rule_router(w: &World, n: u64) -> RouterId {
    let path = listener(w)
        .as_str()
        .replace(":listener/", ":listener-rule/");
    RouterId::Rule(RuleArn::parse(&format!("{path}/{n:016x}")).unwrap())
}

fn forwards(pairs: &[(&str, u16)]) -> RouterAction {
    RouterAction::Forward {
        forwards: pairs
            .iter()
            .map(|(arn, w)| Forward {
                target_group: tg(arn),
                weight: Weight::new(*w).unwrap(),
            })
            .collect(),
    }
}

const OTHER_LB_LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/edge/3333333333333333/4444444444444444";

#[test]
fn a_fleet_whose_tags_say_expired_but_that_takes_traffic_is_never_touched() {
    type Arrange = fn(&World) -> String;
    let cases: [(&str, Arrange); 3] = [
        ("a weighted rule on the production listener", |w| {
            let rule = rule_router(w, 0x900);
            w.cloud
                .add_router(&rule, forwards(&[(sample::TG_A, 90), (sample::TG_B, 10)]));
            let RouterId::Rule(arn) = rule else {
                unreachable!()
            };
            arn.to_string()
        }),
        ("another listener of the same load balancer", |w| {
            let other = format!("{LB}/0000000000008443").replace(":loadbalancer/", ":listener/");
            let router = RouterId::Listener(ListenerArn::parse(&other).unwrap());
            w.cloud.add_router(&router, forwards(&[(sample::TG_B, 1)]));
            other
        }),
        ("a listener of another load balancer", |w| {
            let edge = ListenerArn::parse(OTHER_LB_LISTENER).unwrap();
            let edge_lb = RouterId::Listener(edge.clone())
                .load_balancer_arn()
                .unwrap();
            w.cloud
                .set_load_balancers(sample::TG_B, vec![LB.to_owned(), edge_lb]);
            w.cloud.add_router(
                &RouterId::Listener(edge.clone()),
                forwards(&[(sample::TG_B, 3)]),
            );
            edge.to_string()
        }),
    ];
    type ScopeOf = fn(&World) -> Scope;
    let scopes: [(&str, ScopeOf); 3] = [
        ("config", config_scope),
        ("named", |_| Scope::Named(checkout())),
        ("all", |_| Scope::All),
    ];
    for (case, arrange) in cases {
        for (scope_name, scope) in scopes {
            let at = format!("{case}, scope {scope_name}");
            let w = retired_world();
            let owner = arrange(&w);
            let watch = watch(&w);
            let v2_before = w.cloud.summary(V2).unwrap();
            let before = w.cloud.calls().len();
            let (report, _) = run(&w, &scope(&w), &options(&w));
            let exit_code = report.exit_code(true);
            let report = only(report);
            assert_eq!(report.outcome, Outcome::NothingDue, "{at}: {report:?}");
            assert!(report.applied.is_empty(), "{at}");
            assert!(
                matches!(&item_for(&report, V2).decision,
                    Decision::Keep { keep: Keep::Routed { target_group, owner: o, weight } }
                        if *target_group == tg(sample::TG_B) && *o == owner && *weight > 0),
                "{at}: {:?}",
                item_for(&report, V2)
            );
            assert_eq!(
                changes(&w.cloud.calls()[before..]),
                Vec::<String>::new(),
                "{at}"
            );
            let v2 = w.cloud.summary(V2).unwrap();
            assert_eq!(v2, v2_before, "{at}");
            assert_eq!(v2.instances.len(), 2, "{at}");
            assert_eq!(exit_code, exit::SUCCESS, "{at}");
            watch.assert_safe(&w);
        }
    }
}

#[test]
fn traffic_routed_to_the_fleet_between_decision_and_change_stops_cleanup() {
    // The race lands right after the observation (its last read is CloudWatch's), before the
    // router is read again ahead of the change: on the production listener, or on a rule
    // someone adds meanwhile.
    type Race = fn(&FakeCloud, &World);
    let races: [(&str, Race); 2] = [
        ("the production listener", |cloud, w| {
            cloud.set_router(
                &w.spec.router,
                forwards(&[(sample::TG_A, 80), (sample::TG_B, 20)]),
            );
        }),
        ("a new rule", |cloud, w| {
            cloud.add_router(&rule_router(w, 0x901), forwards(&[(sample::TG_B, 1)]));
        }),
    ];
    for (name, race) in races {
        let w = Arc::new(retired_world());
        let done = Arc::new(AtomicBool::new(false));
        let (cloud, world, flag) = (w.cloud.clone_handle(), w.clone(), done.clone());
        let watch = Watch::with(&w, &[sample::BLUE, V2, V3], move |operation| {
            if operation == "target_group_metrics" && !flag.swap(true, Ordering::SeqCst) {
                race(&cloud, &world);
            }
        });
        let before = w.cloud.calls().len();
        let (report, _) = run(&w, &config_scope(&w), &options(&w));
        let exit_code = report.exit_code(true);
        let report = only(report);
        assert!(done.load(Ordering::SeqCst), "{name}: the race happened");
        let Outcome::Failed {
            exit_code: code,
            message,
        } = &report.outcome
        else {
            panic!("{name}: {report:?}");
        };
        assert_eq!(*code, exit::NEEDS_ATTENTION, "{name}: {message}");
        assert!(message.contains("checkout-v2"), "{message}");
        assert!(message.contains("takes traffic"), "{message}");
        assert_eq!(exit_code, exit::NEEDS_ATTENTION);
        assert!(report.applied.is_empty());
        // Nothing was changed: not even the retiring-at tag.
        assert_eq!(
            changes(&w.cloud.calls()[before..]),
            Vec::<String>::new(),
            "{name}"
        );
        let v2 = w.cloud.summary(V2).unwrap();
        assert_eq!(v2.capacity.desired, 2, "{name}");
        assert_eq!(v2.instances.len(), 2, "{name}");
        assert!(!v2.tags.contains_key(tags::RETIRING_AT), "{name}");
        watch.assert_safe(&w);
        // And from now on the fleet is kept, routed.
        let next = clean(&w);
        assert_eq!(next.outcome, Outcome::NothingDue, "{name}: {next:?}");
        assert!(matches!(
            item_for(&next, V2).decision,
            Decision::Keep {
                keep: Keep::Routed { .. }
            }
        ));
        watch.assert_safe(&w);
    }
}

#[test]
fn traffic_routed_to_the_fleet_between_scale_down_and_delete_stops_the_delete() {
    let w = Arc::new(retired_world());
    let (cloud, world) = (w.cloud.clone_handle(), w.clone());
    let scaled = w.cloud.count("set_capacity");
    let watch = Watch::with(&w, &[sample::BLUE, V2, V3], move |operation| {
        // The re-read before the delete: v2 is at zero by then.
        if operation == "fleet_summary" && cloud.count("set_capacity") > scaled {
            let router = rule_router(&world, 0x902);
            if !cloud.forwards(&router).is_empty() {
                return;
            }
            cloud.add_router(&router, forwards(&[(sample::TG_B, 1)]));
        }
    });
    let report = clean(&w);
    assert!(
        matches!(&report.outcome, Outcome::Failed { exit_code, .. } if *exit_code == exit::NEEDS_ATTENTION),
        "{report:?}"
    );
    assert_eq!(applied_names(&report), ["scale_down"]);
    let v2 = w.cloud.summary(V2).unwrap();
    assert!(!v2.deleting, "the fleet was not deleted");
    watch.assert_safe(&w);
}

// ---------------------------------------------------------------------------------------------
// 5. Locks, and several services at once

fn lock_tags(
    service: &str,
    who: &str,
    host: &str,
    pid: u32,
    expires: SystemTime,
    now: SystemTime,
) -> BTreeMap<String, String> {
    [
        (lock::SERVICE, service.to_owned()),
        (lock::HOLDER, who.to_owned()),
        (lock::HOST, host.to_owned()),
        (lock::PID, pid.to_string()),
        (lock::TOKEN, format!("{who}-token")),
        (lock::COMMAND, "deploy".to_owned()),
        (lock::ACQUIRED_AT, tags::timestamp(now)),
        (lock::EXPIRES_AT, tags::timestamp(expires)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[test]
fn a_service_locked_by_a_live_runner_is_skipped_unchanged() {
    // Another machine's runner, or a live process on this host: both are busy.
    for (host, alive_here) in [("build-9", dead as fn(u32) -> bool), ("test-host", alive)] {
        let w = retired_world();
        let watch = watch(&w);
        let now = w.clock.now();
        let theirs = lock_tags("checkout", "ci@x", host, 4242, now + mins(60), now);
        w.cloud.put_lock(LOCK, theirs.clone());
        let held = w.cloud.lock_object(LOCK).unwrap();
        let before = w.cloud.calls().len();
        let (report, _) = run_as(
            &w,
            &holder(&unique("cleanup")),
            alive_here,
            &config_scope(&w),
            &options(&w),
        );
        let exit_code = report.exit_code(true);
        let report = only(report);
        assert!(
            matches!(&report.outcome, Outcome::Locked { holder } if holder.contains("ci@x (pid 4242)")),
            "{host}: {report:?}"
        );
        assert_eq!(exit_code, exit::BUSY);
        assert!(report.applied.is_empty());
        let calls = w.cloud.calls()[before..].to_vec();
        assert_eq!(changes(&calls), Vec::<String>::new(), "{host}");
        assert!(
            !calls.iter().any(|c| c == "delete_lock" || c == "tag_lock"),
            "{calls:?}"
        );
        assert_eq!(
            w.cloud.lock_object(LOCK),
            Some(held),
            "{host}: still theirs"
        );
        assert_eq!(w.cloud.summary(V2).unwrap().capacity.desired, 2);
        assert_eq!(watch.violations(&w), Vec::<String>::new());
    }
}

/// Another service on one load balancer of its own: `<service>-v2` live in slot a,
/// `<service>-v1` warm in slot b, past its keep-warm time 10 minutes ago (unrouted 70 minutes
/// ago), slot b draining for `delay`.
fn add_service(w: &World, service: &str, lb_id: &str, delay: Duration) {
    let lb = format!(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/{service}/{lb_id}"
    );
    let listener = format!(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/{service}/{lb_id}/aaaaaaaaaaaaaaaa"
    );
    let slot = |s: &str, id: &str| {
        format!(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{service}-{s}/{id}"
        )
    };
    let (a, b) = (slot("a", "1111111111111111"), slot("b", "2222222222222222"));
    w.cloud
        .add_target_group(&a, &format!("{service}-a"), vec![lb.clone()]);
    w.cloud
        .add_target_group(&b, &format!("{service}-b"), vec![lb]);
    w.cloud.set_deregistration_delay(&b, delay);
    let router = RouterId::Listener(ListenerArn::parse(&listener).unwrap());
    w.cloud.add_router(&router, forwards(&[(&a, 1)]));
    let slots = Slots::new(tg(&a), tg(&b)).unwrap();
    let fleet = |release: &str, slot: &str, extra: Vec<(&str, String)>| {
        let mut config = sample_config(&tg(slot));
        let mut all = vec![
            (tags::SERVICE, service.to_owned()),
            (tags::RELEASE, release.to_owned()),
            (tags::CREATED_AT, tags::timestamp(ago(w, mins(600)))),
        ];
        all.extend(extra);
        config.tags = all
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(tags::routing(&router, &slots))
            .map(|(key, value)| FleetTag {
                key,
                value,
                propagate_at_launch: false,
            })
            .collect();
        w.cloud.add_fleet(
            &FleetName::new(format!("{service}-{release}")),
            config,
            mins(600),
        );
    };
    fleet(
        "v2",
        &a,
        vec![
            (tags::PHASE, "live".into()),
            (tags::LIVE_AT, tags::timestamp(ago(w, mins(70)))),
        ],
    );
    fleet(
        "v1",
        &b,
        vec![
            (tags::PHASE, "warm".into()),
            (tags::UNROUTED_AT, tags::timestamp(ago(w, mins(70)))),
            (tags::WARM_UNTIL, tags::timestamp(ago(w, mins(10)))),
        ],
    );
}

#[test]
fn all_services_are_cleaned_two_at_a_time_sorted_and_stale_locks_go() {
    let w = retired_world();
    // Every due service waits for its slot b to drain a few minutes, so runs overlap.
    w.cloud.set_deregistration_delay(sample::TG_B, mins(75));
    add_service(&w, "payments", "2222222222222222", mins(74));
    add_service(&w, "search", "5555555555555555", mins(76));
    // billing: live only, nothing due.
    add_service(&w, "billing", "6666666666666666", mins(5));
    w.cloud.remove_fleet("billing-v1");
    // reviews: due, but a live runner on another machine holds its lock: skipped, unchanged.
    add_service(&w, "reviews", "7777777777777777", mins(5));
    let now = w.clock.now();
    let reviews = lock_tags("reviews", "ci@busy", "build-4", 4, now + mins(60), now);
    w.cloud.put_lock("greenlight-lock.reviews", reviews.clone());
    let reviews_v1 = w.cloud.summary("reviews-v1").unwrap();
    // A run that died an hour ago on another machine, for a service with nothing else to do
    // (stale: removed); one that is alive, for another (kept); an expired one on a due service
    // (taken over by its cleanup).
    let ledger = w.cloud.put_lock(
        "greenlight-lock.ledger",
        lock_tags(
            "ledger",
            "ci@old",
            "build-1",
            1,
            now - mins(60),
            now - mins(62),
        ),
    );
    let orders = lock_tags("orders", "ci@now", "build-2", 2, now + mins(60), now);
    w.cloud.put_lock("greenlight-lock.orders", orders.clone());
    w.cloud.put_lock(
        "greenlight-lock.search",
        lock_tags(
            "search",
            "ci@gone",
            "build-3",
            3,
            now - mins(1),
            now - mins(3),
        ),
    );

    let services = ["checkout", "payments", "search"];
    let in_flight = Arc::new(Mutex::new((0usize, Vec::<usize>::new())));
    let (cloud, seen) = (w.cloud.clone_handle(), in_flight.clone());
    let watch = Watch::with(&w, &[V2, "payments-v1", "search-v1"], move |_| {
        let held = services
            .iter()
            .filter(|s| {
                cloud
                    .lock_object(&format!("greenlight-lock.{s}"))
                    .is_some_and(|(_, t)| {
                        t.get(lock::COMMAND).map(String::as_str) == Some("cleanup")
                    })
            })
            .count();
        let mut seen = seen.lock().unwrap();
        seen.0 = seen.0.max(held);
        seen.1.push(held);
    });
    let live = live_fingerprint(&w);
    let mut opts = options(&w);
    opts.concurrency = 2;
    let (report, events) = run(&w, &Scope::All, &opts);

    let locked = report
        .services
        .iter()
        .find_map(|s| match &s.outcome {
            Outcome::Locked { holder } => Some(holder.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert!(locked.contains("ci@busy (pid 4)"), "{locked}");
    let outcomes: Vec<(&str, &Outcome)> = report
        .services
        .iter()
        .map(|s| (s.service.as_str(), &s.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("billing", &Outcome::NothingDue),
            ("checkout", &Outcome::Done),
            ("payments", &Outcome::Done),
            ("reviews", &Outcome::Locked { holder: locked }),
            ("search", &Outcome::Done),
        ],
        "{report:?}"
    );
    // A locked service among many is a skip, not a failure.
    assert_eq!(report.exit_code(false), exit::SUCCESS);
    assert_eq!(w.cloud.summary("reviews-v1").unwrap(), reviews_v1);
    assert_eq!(
        w.cloud
            .lock_object("greenlight-lock.reviews")
            .map(|(_, t)| t),
        Some(reviews)
    );
    for service in ["checkout", "payments", "search"] {
        let s = report
            .services
            .iter()
            .find(|s| s.service == service)
            .unwrap();
        assert_eq!(
            applied_names(s),
            ["scale_down", "delete_fleet"],
            "{service}"
        );
        assert_eq!(
            w.cloud.lock_object(&format!("greenlight-lock.{service}")),
            None,
            "{service}"
        );
    }
    for fleet in [V2, "payments-v1", "search-v1"] {
        assert!(w.cloud.summary(fleet).is_none_or(|s| s.deleting), "{fleet}");
    }
    for fleet in ["payments-v2", "search-v2", "billing-v2"] {
        let s = w.cloud.summary(fleet).unwrap();
        assert_eq!((s.capacity.desired, s.instances.len()), (2, 2), "{fleet}");
    }
    assert_eq!(live_fingerprint(&w), live);
    // The stale lock is gone; the live one stays.
    assert_eq!(report.stale_locks.len(), 1, "{:?}", report.stale_locks);
    assert_eq!(report.stale_locks[0].service, "ledger");
    assert_eq!(report.stale_locks[0].lock.id, ledger);
    assert!(report.stale_locks[0].removed);
    assert_eq!(w.cloud.lock_object("greenlight-lock.ledger"), None);
    assert_eq!(
        w.cloud
            .lock_object("greenlight-lock.orders")
            .map(|(_, t)| t),
        Some(orders)
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CleanupEvent::StaleLock { .. }))
    );
    // At most two services at once, and two did overlap.
    let (max, _) = in_flight.lock().unwrap().clone();
    assert_eq!(max, 2, "services cleaned at once");
    assert_eq!(watch.violations(&w), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 6. Dry run

#[test]
fn a_dry_run_changes_nothing_and_shows_what_the_real_run_applies() {
    let w = retired_world();
    // A leftover test rule of a release that is gone, forwarding to the live slot.
    let rule = leftover_rule(&w, "v9", sample::TG_A);
    let watch = watch(&w);
    let state = end_state(&w);
    let before = w.cloud.calls().len();
    let mut dry = keep_one(&w);
    dry.dry_run = true;
    let (report, events) = run(&w, &config_scope(&w), &dry);
    assert!(report.dry_run);
    let planned = only(report);
    let calls = w.cloud.calls()[before..].to_vec();
    let not_reads: Vec<&String> = calls
        .iter()
        .filter(|c| !READS.contains(&c.as_str()) || *c == "read_lock")
        .collect();
    assert_eq!(not_reads, Vec::<&String>::new(), "no change, no lock");
    assert_eq!(end_state(&w), state);
    assert_eq!(planned.outcome, Outcome::Done);
    assert!(planned.applied.is_empty());
    assert!(events.iter().all(|e| match e {
        CleanupEvent::CleanupItem { dry_run, .. } => *dry_run,
        CleanupEvent::CleanupApplied { .. } => false,
        _ => true,
    }));
    let plan: Vec<CleanupAction> = planned
        .items
        .iter()
        .filter_map(|i| match &i.decision {
            Decision::Act { action, .. } => Some(action.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        plan.iter().map(CleanupAction::name).collect::<Vec<_>>(),
        ["scale_down", "delete_rule"]
    );
    assert!(
        matches!(&plan[1], CleanupAction::DeleteRule { rule: r, release } if *r == rule && release == "v9")
    );

    // The real run applies that plan first, then what it leads to.
    let real = clean_with(&w, &keep_one(&w));
    assert_eq!(real.outcome, Outcome::Done);
    assert_eq!(real.applied[..plan.len()], plan[..]);
    assert_eq!(
        applied_names(&real)[plan.len()..],
        ["delete_fleet", "delete_versions"]
    );
    watch.assert_safe(&w);

    // A dry run over every service reports a stale lock without removing it.
    let now = w.clock.now();
    w.cloud.put_lock(
        "greenlight-lock.ledger",
        lock_tags(
            "ledger",
            "ci@old",
            "build-1",
            1,
            now - mins(60),
            now - mins(62),
        ),
    );
    let before = w.cloud.calls().len();
    let (report, _) = run(&w, &Scope::All, &dry);
    assert_eq!(report.stale_locks.len(), 1);
    assert!(!report.stale_locks[0].removed);
    assert!(w.cloud.lock_object("greenlight-lock.ledger").is_some());
    let calls = w.cloud.calls()[before..].to_vec();
    assert!(
        calls
            .iter()
            .all(|c| READS.contains(&c.as_str()) && c != "read_lock"),
        "{calls:?}"
    );
}
