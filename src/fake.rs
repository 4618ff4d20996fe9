//! An in-memory AWS for tests: a stateful implementation of the `Cloud` port, with a clock
//! that jumps instead of sleeping, scripted target health, injected faults at any call, a log
//! of every call, and a watch on the safety invariants after every change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::core::analysis::{AlarmState, AlarmValue, MetricWindow};
use crate::core::cloud::{
    Cloud, CloudError, CloudErrorKind, CloudResult, LaunchTemplateVersion, ListenerForward,
    LockObject, ROUTER_CHANGED, TargetGroupInfo,
};
use crate::core::fleet::{
    Capacity, FleetConfig, FleetInstance, FleetLaunch, FleetSummary, FleetTag, LaunchTemplateRef,
    LifecycleHook, MetricsCollection, ScalingPolicy, ScheduledAction, TargetTracking,
};
use crate::core::health::{TargetHealth, TargetState, fleet_health};
use crate::core::names::{FleetName, ImageId, ListenerArn, RuleArn, ServiceName, TargetGroupArn};
use crate::core::router::{
    Forward, RouterAction, RouterId, RouterState, RouterWrite, Weight, same_forwards,
};
use crate::core::spec::Spec;
use crate::core::test_traffic::{ListenerRule, RuleCondition};
use crate::engine::clock::Clock;

/// A clock that only moves when something sleeps on it (or a test advances it).
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<SystemTime>,
}

impl FakeClock {
    pub fn new(start: SystemTime) -> Arc<FakeClock> {
        Arc::new(FakeClock {
            now: Mutex::new(start),
        })
    }

    pub fn advance(&self, by: Duration) {
        *self.now.lock().expect("clock lock") += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().expect("clock lock")
    }

    async fn sleep(&self, duration: Duration) {
        // Never zero: a loop that sleeps must see time pass, as it would for real.
        self.advance(duration.max(Duration::from_millis(1)));
        // Let other runners on the same runtime take their turn, as a real wait would.
        tokio::task::yield_now().await;
    }
}

impl Clock for Arc<FakeClock> {
    fn now(&self) -> SystemTime {
        self.as_ref().now()
    }

    async fn sleep(&self, duration: Duration) {
        self.as_ref().sleep(duration).await;
    }
}

/// How a new instance of a fleet behaves, measured from its launch.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthScript {
    /// Time in `Pending` before `InService` (and registered in the target group).
    pub pending_for: Duration,
    /// Time in `initial` after registration.
    pub initial_for: Duration,
    /// The state after that, for good.
    pub then: TargetState,
    pub reason: Option<String>,
    pub description: Option<String>,
}

impl HealthScript {
    /// Registers and passes health checks after a realistic delay.
    pub fn healthy_after(initial_for: Duration) -> HealthScript {
        HealthScript {
            pending_for: Duration::from_secs(20),
            initial_for,
            then: TargetState::Healthy,
            reason: None,
            description: None,
        }
    }

    /// Registers, then fails health checks for good.
    pub fn unhealthy(reason: &str, description: &str) -> HealthScript {
        HealthScript {
            pending_for: Duration::from_secs(20),
            initial_for: Duration::from_secs(30),
            then: TargetState::Unhealthy,
            reason: Some(reason.into()),
            description: Some(description.into()),
        }
    }
}

/// Whether an injected fault happens before the call takes effect or after (the call landed
/// but its answer was lost, as with a timeout or a crash right after the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTiming {
    Before,
    After,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    /// 1-based occurrence of the operation that fails.
    nth: usize,
    timing: FaultTiming,
    error: CloudError,
}

#[derive(Debug, Clone)]
struct FakeInstance {
    id: String,
    launched: SystemTime,
    script: HealthScript,
}

#[derive(Debug, Clone)]
struct FakeFleet {
    config: FleetConfig,
    instances: Vec<FakeInstance>,
    deleted_at: Option<SystemTime>,
}

/// How long a deleted group stays visible as "Delete in progress".
const DELETION_LINGERS: Duration = Duration::from_secs(120);

/// A test's hook, run before every call with the operation's name.
type Hook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct World {
    routers: Vec<(RouterId, RouterAction)>,
    target_groups: BTreeMap<TargetGroupArn, TargetGroupInfo>,
    fleets: BTreeMap<FleetName, FakeFleet>,
    templates: BTreeMap<String, Vec<LaunchTemplateVersion>>,
    images: BTreeSet<String>,
    scripts: BTreeMap<FleetName, Vec<HealthScript>>,
    default_script: Option<HealthScript>,
    next_instance: u64,
    calls: Vec<String>,
    routes: Vec<Vec<Forward>>,
    faults: Vec<Fault>,
    violations: Vec<String>,
    /// Lock objects by name: (id, tags).
    locks: BTreeMap<String, (String, BTreeMap<String, String>)>,
    next_lock: u64,
    /// Client tokens of creates that succeeded, with what they returned.
    tokens: BTreeMap<String, String>,
    /// Who held each lock object while a change was made: (lock id, holder token).
    mutations_under: Vec<(String, Option<String>)>,
    /// Called before every call, with the operation: tests use it to act "meanwhile" (another
    /// runner, a person at the console) at a precise point.
    hook: Option<Hook>,
    /// Listener rules (not the default one) by listener: (rule, what it forwards to).
    rules: BTreeMap<ListenerArn, Vec<ListenerRule>>,
    next_rule: u64,
    load_balancer_dns: BTreeMap<String, String>,
    /// Routers that carry test traffic only.
    test_routers: Vec<RouterId>,
    alarms: BTreeMap<String, AlarmState>,
    /// What each target group serves per minute from now on (requests, 5xx, p99 ms), as a test
    /// scripts it; metrics over a window are that rate times the window's minutes.
    traffic: BTreeMap<TargetGroupArn, (f64, f64, Option<f64>)>,
    /// Deregistration delays a test set; a target group without one has AWS's default.
    deregistration_delays: BTreeMap<TargetGroupArn, Duration>,
    /// The highest version number each template ever had: EC2 never reuses a number, even
    /// after the version is deleted.
    highest_versions: BTreeMap<String, u64>,
}

/// AWS's deregistration delay for a target group that does not set one.
const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);
/// The most versions one DeleteLaunchTemplateVersions call takes.
const VERSIONS_PER_DELETE: usize = 200;

pub struct FakeCloud {
    world: Arc<Mutex<World>>,
    /// Which runner this handle is (its lock holder token), when a test runs several.
    runner: Option<String>,
    clock: Arc<FakeClock>,
}

/// Names used by [`FakeCloud::sample`].
pub mod sample {
    pub const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2";
    pub const TG_A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/6d0ecf831eec9f09";
    pub const TG_B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/7a1fdf942ffd0a1a";
    pub const TEMPLATE: &str = "lt-0123456789abcdef0";
    pub const BLUE: &str = "checkout-blue";
    pub const BLUE_IMAGE: &str = "ami-11111111";
    pub const NEXT_IMAGE: &str = "ami-22222222";
    pub const THIRD_IMAGE: &str = "ami-33333333";
}

impl FakeCloud {
    pub fn new(clock: Arc<FakeClock>) -> FakeCloud {
        FakeCloud {
            world: Arc::new(Mutex::new(World::default())),
            runner: None,
            clock,
        }
    }

    /// The sample service: a listener forwarding to slot a, whose fleet `checkout-blue` runs 2
    /// healthy instances from launch template version 1; slot b empty.
    pub fn sample(clock: Arc<FakeClock>) -> (FakeCloud, Spec) {
        use sample::*;
        let cloud = FakeCloud::new(clock);
        let spec = Spec::parse(&format!(
            "service = \"checkout\"\nregion = \"us-east-1\"\n[router]\nlistener_arn = \"{LISTENER}\"\n\
             target_groups = [\"{TG_A}\", \"{TG_B}\"]\n[health]\ntimeout = \"5m\"\ninterval = \"5s\"\n\
             [retention]\nkeep_warm = \"1h\"\n"
        ))
        .expect("sample spec parses");
        let tg_a = TargetGroupArn::parse(TG_A).expect("sample arn");
        {
            let mut w = cloud.lock();
            w.routers.push((
                spec.router.clone(),
                RouterAction::Forward {
                    forwards: vec![Forward {
                        target_group: tg_a.clone(),
                        weight: Weight::ALL,
                    }],
                },
            ));
            let load_balancer = spec
                .router
                .load_balancer_arn()
                .expect("sample listener arn");
            // Slot b is not used by any listener yet: AWS lists no load balancer for it.
            for (arn, name, load_balancers) in [
                (TG_A, "checkout-a", vec![load_balancer]),
                (TG_B, "checkout-b", vec![]),
            ] {
                let arn = TargetGroupArn::parse(arn).expect("sample arn");
                w.target_groups.insert(
                    arn.clone(),
                    TargetGroupInfo {
                        arn,
                        name: name.into(),
                        target_type: "instance".into(),
                        vpc_id: Some("vpc-1".into()),
                        load_balancer_arns: load_balancers,
                    },
                );
            }
            w.templates.insert(
                TEMPLATE.into(),
                vec![LaunchTemplateVersion {
                    template_id: TEMPLATE.into(),
                    number: 1,
                    image_id: Some(BLUE_IMAGE.into()),
                    description: None,
                }],
            );
            for image in [BLUE_IMAGE, NEXT_IMAGE, THIRD_IMAGE] {
                w.images.insert(image.into());
            }
        }
        cloud.add_fleet(&FleetName::new(BLUE), sample_config(&tg_a), Duration::ZERO);
        (cloud, spec)
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("fake world lock")
    }

    /// Another handle on the same world for a second runner, whose lock holder token is
    /// `token`: every change it makes is checked to happen while it holds the lock.
    pub fn runner(&self, token: &str) -> FakeCloud {
        FakeCloud {
            world: self.world.clone(),
            runner: Some(token.to_owned()),
            clock: self.clock.clone(),
        }
    }

    /// Another handle on the same world, like the first (for hooks that act on it).
    pub fn clone_handle(&self) -> FakeCloud {
        FakeCloud {
            world: self.world.clone(),
            runner: self.runner.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Adds a listener rule someone else made (a host rule of another service, say).
    pub fn add_rule(
        &self,
        listener: &ListenerArn,
        priority: u32,
        conditions: Vec<RuleCondition>,
    ) -> RuleArn {
        let mut w = self.lock();
        w.next_rule += 1;
        let arn = rule_arn(listener, w.next_rule);
        w.rules
            .entry(listener.clone())
            .or_default()
            .push(ListenerRule {
                arn: arn.clone(),
                priority: Some(priority),
                conditions,
                target_groups: Vec::new(),
                tags: BTreeMap::new(),
            });
        arn
    }

    /// The rules of `listener`, default rule excluded.
    pub fn rules(&self, listener: &ListenerArn) -> Vec<ListenerRule> {
        self.lock().rules.get(listener).cloned().unwrap_or_default()
    }

    /// Sets an alarm's state, as CloudWatch (or SetAlarmState) would.
    pub fn set_alarm(&self, name: &str, state: AlarmValue, reason: &str) {
        self.lock().alarms.insert(
            name.to_owned(),
            AlarmState {
                name: name.to_owned(),
                state,
                reason: reason.to_owned(),
            },
        );
    }

    /// What `target_group` serves per minute from now on: requests, 5xx, p99 in ms.
    pub fn serve(
        &self,
        target_group: &str,
        per_minute: f64,
        errors_per_minute: f64,
        p99_ms: Option<f64>,
    ) {
        let arn = TargetGroupArn::parse(target_group).expect("target group arn");
        self.lock()
            .traffic
            .insert(arn, (per_minute, errors_per_minute, p99_ms));
    }

    /// Removes the lock object `id`, as `unlock --force` from elsewhere would.
    pub fn remove_lock(&self, id: &str) {
        self.lock().locks.retain(|_, (lock_id, _)| lock_id != id);
    }

    /// Runs `hook` before every call from now on, with the operation's name.
    pub fn on_call(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.lock().hook = Some(Arc::new(hook));
    }

    /// The lock object of `name`, as (id, tags).
    pub fn lock_object(&self, name: &str) -> Option<(String, BTreeMap<String, String>)> {
        self.lock().locks.get(name).cloned()
    }

    /// Puts a lock object in place, as another runner (or a crashed one) would have.
    pub fn put_lock(&self, name: &str, tags: BTreeMap<String, String>) -> String {
        let mut w = self.lock();
        w.next_lock += 1;
        let id = format!("lt-lock{:010}", w.next_lock);
        w.locks.insert(name.to_owned(), (id.clone(), tags));
        id
    }

    /// Every (call, holder) of a change: which lock token was in place when it was made.
    pub fn changes_under_lock(&self) -> Vec<(String, Option<String>)> {
        self.lock().mutations_under.clone()
    }

    /// Adds a fleet whose instances are already up (`age` ago).
    pub fn add_fleet(&self, name: &FleetName, config: FleetConfig, age: Duration) {
        let now = self.clock.now();
        let mut w = self.lock();
        let mut fleet = FakeFleet {
            config,
            instances: Vec::new(),
            deleted_at: None,
        };
        let script = HealthScript {
            pending_for: Duration::ZERO,
            initial_for: Duration::ZERO,
            then: TargetState::Healthy,
            reason: None,
            description: None,
        };
        for _ in 0..fleet.config.capacity.desired {
            w.next_instance += 1;
            fleet.instances.push(FakeInstance {
                id: format!("i-{:017x}", w.next_instance),
                launched: now.checked_sub(age).unwrap_or(now),
                script: script.clone(),
            });
        }
        w.fleets.insert(name.clone(), fleet);
    }

    /// How instances launched from now on in `fleet` behave.
    pub fn script(&self, fleet: &str, script: HealthScript) {
        self.scripts(fleet, vec![script]);
    }

    /// Instance k launched from now on in `fleet` follows `scripts[k]` (the last one repeats),
    /// e.g. to make one instance of several fail.
    pub fn scripts(&self, fleet: &str, scripts: Vec<HealthScript>) {
        assert!(!scripts.is_empty(), "at least one script");
        self.lock().scripts.insert(FleetName::new(fleet), scripts);
    }

    /// How instances of fleets without their own script behave.
    pub fn default_script(&self, script: HealthScript) {
        self.lock().default_script = Some(script);
    }

    /// The `nth` call (1-based, counted from now) of `operation` fails with `kind`.
    pub fn fail(&self, operation: &str, nth: usize, timing: FaultTiming, kind: CloudErrorKind) {
        let mut w = self.lock();
        let already = w.calls.iter().filter(|c| *c == operation).count();
        w.faults.push(Fault {
            operation: operation.into(),
            nth: already + nth,
            timing,
            error: CloudError::new(kind, operation, "injected fault").with_code("Injected"),
        });
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Every forward configuration a `route` call applied, in order.
    pub fn routes(&self) -> Vec<Vec<Forward>> {
        self.lock().routes.clone()
    }

    pub fn count(&self, operation: &str) -> usize {
        self.lock().calls.iter().filter(|c| *c == operation).count()
    }

    /// Safety invariants broken so far; every test expects none.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    pub fn forwards(&self, router: &RouterId) -> Vec<Forward> {
        match self.lock().routers.iter().find(|(id, _)| id == router) {
            Some((_, RouterAction::Forward { forwards })) => forwards.clone(),
            _ => Vec::new(),
        }
    }

    /// Adds a listener (a test listener on another port, say) with `action` as its default.
    pub fn add_router(&self, router: &RouterId, action: RouterAction) {
        self.lock().routers.push((router.clone(), action));
    }

    /// Adds a test listener: it carries test requests only, so the safety watch does not hold
    /// it to production's rules (it forwards to green before green is healthy, to get it
    /// health-checked).
    pub fn add_test_router(&self, router: &RouterId, action: RouterAction) {
        let mut w = self.lock();
        w.routers.push((router.clone(), action));
        w.test_routers.push(router.clone());
    }

    /// Overwrites the router's action, as a person with the console would.
    pub fn set_router(&self, router: &RouterId, action: RouterAction) {
        let mut w = self.lock();
        if let Some(entry) = w.routers.iter_mut().find(|(id, _)| id == router) {
            entry.1 = action;
        }
    }

    pub fn summary(&self, name: &str) -> Option<FleetSummary> {
        let now = self.clock.now();
        let w = self.lock();
        w.fleets
            .get(&FleetName::new(name))
            .map(|f| summarize(&FleetName::new(name), f, now))
    }

    pub fn config(&self, name: &str) -> Option<FleetConfig> {
        self.lock()
            .fleets
            .get(&FleetName::new(name))
            .map(|f| f.config.clone())
    }

    /// Says which load balancers use a target group, as DescribeTargetGroups would.
    pub fn set_load_balancers(&self, target_group: &str, load_balancers: Vec<String>) {
        let arn = TargetGroupArn::parse(target_group).expect("target group arn");
        if let Some(info) = self.lock().target_groups.get_mut(&arn) {
            info.load_balancer_arns = load_balancers;
        }
    }

    /// Adds a target group (another service's, say), used by `load_balancers`.
    pub fn add_target_group(&self, arn: &str, name: &str, load_balancers: Vec<String>) {
        let arn = TargetGroupArn::parse(arn).expect("target group arn");
        self.lock().target_groups.insert(
            arn.clone(),
            TargetGroupInfo {
                arn,
                name: name.into(),
                target_type: "instance".into(),
                vpc_id: Some("vpc-1".into()),
                load_balancer_arns: load_balancers,
            },
        );
    }

    /// Sets the target group's deregistration delay (AWS's default, 300 s, until set).
    pub fn set_deregistration_delay(&self, target_group: &str, delay: Duration) {
        let arn = TargetGroupArn::parse(target_group).expect("target group arn");
        self.lock().deregistration_delays.insert(arn, delay);
    }

    /// Removes a fleet at once, as an out-of-band cleanup would.
    pub fn remove_fleet(&self, name: &str) {
        self.lock().fleets.remove(&FleetName::new(name));
    }

    /// Changes a fleet's desired capacity as its own scaling would (not a call greenlight makes).
    pub fn scale(&self, name: &str, desired: u32) {
        let now = self.clock.now();
        let mut w = self.lock();
        let fleet = FleetName::new(name);
        if let Some(f) = w.fleets.get_mut(&fleet) {
            f.config.capacity.desired = desired;
            f.config.capacity.max = f.config.capacity.max.max(desired);
        }
        w.converge(&fleet, now);
    }

    /// Makes every instance of `fleet` fail health checks from now on.
    pub fn break_fleet(&self, name: &str) {
        let now = self.clock.now();
        let mut w = self.lock();
        if let Some(fleet) = w.fleets.get_mut(&FleetName::new(name)) {
            for instance in &mut fleet.instances {
                instance.launched = now;
                instance.script = HealthScript {
                    pending_for: Duration::ZERO,
                    initial_for: Duration::ZERO,
                    then: TargetState::Unhealthy,
                    reason: Some("Target.Timeout".into()),
                    description: Some("Request timed out".into()),
                };
            }
        }
    }

    pub fn template_versions(&self, template: &str) -> Vec<LaunchTemplateVersion> {
        self.lock()
            .templates
            .get(template)
            .cloned()
            .unwrap_or_default()
    }

    /// Records the call, applies a `Before` fault, runs `f`, applies an `After` fault.
    fn call<T>(
        &self,
        operation: &str,
        f: impl FnOnce(&mut World, SystemTime) -> CloudResult<T>,
    ) -> CloudResult<T> {
        let hook = self.lock().hook.clone();
        if let Some(hook) = hook {
            hook(operation);
        }
        let now = self.clock.now();
        let mut w = self.lock();
        w.fleets
            .retain(|_, f| f.deleted_at.is_none_or(|at| now < at + DELETION_LINGERS));
        w.calls.push(operation.to_owned());
        if CHANGES.contains(&operation) {
            self.watch_lock(&mut w, operation);
        }
        let occurrence = w.calls.iter().filter(|c| *c == operation).count();
        let fault = w
            .faults
            .iter()
            .position(|f| f.operation == operation && f.nth == occurrence)
            .map(|i| w.faults.remove(i));
        if let Some(fault) = fault.as_ref().filter(|f| f.timing == FaultTiming::Before) {
            return Err(fault.error.clone());
        }
        let result = f(&mut w, now);
        match fault {
            Some(fault) if result.is_ok() => Err(fault.error),
            _ => result,
        }
    }
}

/// A rule ARN under `listener`.
fn rule_arn(listener: &ListenerArn, n: u64) -> RuleArn {
    let path = listener.as_str().replace(":listener/", ":listener-rule/");
    RuleArn::parse(&format!("{path}/{n:016x}")).expect("rule arn")
}

/// The listener a rule ARN belongs to: `…:listener-rule/app/<lb>/<id>/<listener>/<rule>` →
/// `…:listener/app/<lb>/<id>/<listener>`.
fn listener_of(rule: &RuleArn) -> Option<ListenerArn> {
    let (path, _) = rule.as_str().rsplit_once('/')?;
    ListenerArn::parse(&path.replace(":listener-rule/", ":listener/")).ok()
}

/// The calls that change a service (lock calls and `tag_fleet`, which may carry a request,
/// are judged on their own).
const CHANGES: [&str; 15] = [
    "create_rule",
    "delete_rule",
    "create_launch_template_version",
    "create_fleet",
    "configure_fleet",
    "set_capacity",
    "untag_fleet",
    "suspend_processes",
    "resume_processes",
    "delete_fleet",
    "delete_launch_template_versions",
    "route",
    "tag_fleet",
    "tag_lock",
    "delete_lock",
];

impl FakeCloud {
    /// Invariant 4: a change is made by the runner holding the service's lock (any holder, for a
    /// handle that is not a named runner). `promote`/`abort` requests are tags anyone may write;
    /// `tag_fleet` reports those itself.
    fn watch_lock(&self, w: &mut World, operation: &str) {
        if matches!(operation, "tag_fleet" | "tag_lock" | "delete_lock") {
            return;
        }
        self.record_change(w, operation);
    }

    fn record_change(&self, w: &mut World, operation: &str) {
        let holders: Vec<String> = w
            .locks
            .values()
            .filter_map(|(_, tags)| tags.get(crate::core::lock::TOKEN).cloned())
            .collect();
        let held = match &self.runner {
            Some(me) => holders.iter().any(|h| h == me),
            None => !holders.is_empty(),
        };
        w.mutations_under
            .push((operation.to_owned(), holders.first().cloned()));
        if !held {
            w.violations.push(format!(
                "{operation} by {} while it did not hold the lock (holders: {holders:?})",
                self.runner.as_deref().unwrap_or("a runner")
            ));
        }
    }
}

fn not_found(operation: &str, what: String) -> CloudError {
    CloudError::new(
        CloudErrorKind::NotFound,
        operation,
        format!("{what} not found"),
    )
    .with_code("NotFound")
}

fn lifecycle(instance: &FakeInstance, now: SystemTime) -> &'static str {
    if now >= instance.launched + instance.script.pending_for {
        FleetInstance::IN_SERVICE
    } else {
        "Pending"
    }
}

fn target_of(instance: &FakeInstance, now: SystemTime) -> Option<TargetHealth> {
    if lifecycle(instance, now) != FleetInstance::IN_SERVICE {
        return None;
    }
    let script = &instance.script;
    let registered = instance.launched + script.pending_for;
    let (state, reason, description) = if now < registered + script.initial_for {
        (
            TargetState::Initial,
            Some("Elb.RegistrationInProgress".to_owned()),
            Some("Target registration is in progress".to_owned()),
        )
    } else {
        (
            script.then,
            script.reason.clone(),
            script.description.clone(),
        )
    };
    Some(TargetHealth {
        target_id: instance.id.clone(),
        state,
        reason,
        description,
    })
}

fn summarize(name: &FleetName, fleet: &FakeFleet, now: SystemTime) -> FleetSummary {
    FleetSummary {
        name: name.clone(),
        capacity: fleet.config.capacity,
        instances: fleet
            .instances
            .iter()
            .map(|i| FleetInstance {
                id: i.id.clone(),
                lifecycle_state: lifecycle(i, now).into(),
                health_status: "Healthy".into(),
            })
            .collect(),
        tags: fleet
            .config
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        target_groups: fleet.config.target_groups.clone(),
        suspended_processes: fleet.config.suspended_processes.clone(),
        deleting: fleet.deleted_at.is_some(),
        launch_template: fleet.config.launch.template().cloned(),
    }
}

impl World {
    /// The weight production routers give `target_group` (test listeners do not count).
    fn weight(&self, target_group: &TargetGroupArn) -> u16 {
        self.routers
            .iter()
            .filter(|(id, _)| !self.test_routers.contains(id))
            .filter_map(|(_, action)| match action {
                RouterAction::Forward { forwards } => Some(forwards),
                RouterAction::Other { .. } => None,
            })
            .flatten()
            .filter(|f| &f.target_group == target_group)
            .map(|f| f.weight.get())
            .sum()
    }

    fn takes_traffic(&self, fleet: &FakeFleet) -> bool {
        fleet
            .config
            .target_groups
            .iter()
            .any(|tg| self.weight(tg) > 0)
    }

    fn targets(&self, target_group: &TargetGroupArn, now: SystemTime) -> Vec<TargetHealth> {
        // As on AWS: a target group no listener or rule names is not health-checked at all.
        let in_use = self.routers.iter().any(|(_, action)| {
            matches!(action, RouterAction::Forward { forwards }
                if forwards.iter().any(|f| &f.target_group == target_group))
        });
        self.fleets
            .values()
            .filter(|f| f.config.target_groups.contains(target_group))
            .flat_map(|f| f.instances.iter().filter_map(|i| target_of(i, now)))
            .map(|target| {
                if in_use {
                    target
                } else {
                    TargetHealth {
                        state: TargetState::Unused,
                        reason: Some("Target.NotInUse".into()),
                        description: Some(
                            "Target group is not configured to receive traffic from the load balancer"
                                .into(),
                        ),
                        ..target
                    }
                }
            })
            .collect()
    }

    /// Launches or terminates instances until the fleet runs its desired capacity.
    fn converge(&mut self, name: &FleetName, now: SystemTime) {
        let scripts = self.scripts.get(name).cloned().unwrap_or_else(|| {
            vec![
                self.default_script
                    .clone()
                    .unwrap_or_else(|| HealthScript::healthy_after(Duration::from_secs(15))),
            ]
        });
        let Some(desired) = self.fleets.get(name).map(|f| f.config.capacity.desired) else {
            return;
        };
        let mut launched = Vec::new();
        let running = self.fleets[name].instances.len();
        for k in running..desired as usize {
            self.next_instance += 1;
            launched.push(FakeInstance {
                id: format!("i-{:017x}", self.next_instance),
                launched: now,
                script: scripts[k.min(scripts.len() - 1)].clone(),
            });
        }
        let fleet = self.fleets.get_mut(name).expect("checked above");
        fleet.instances.extend(launched);
        fleet.instances.truncate(desired as usize);
    }

    /// Every listener the fake knows: listener routers (test listeners too), the listeners of
    /// rule routers, and listeners with rules.
    fn known_listeners(&self) -> Vec<ListenerArn> {
        let mut known: Vec<ListenerArn> = Vec::new();
        let from_routers = self.routers.iter().filter_map(|(id, _)| match id {
            RouterId::Listener(arn) => Some(arn.clone()),
            RouterId::Rule(arn) => listener_of(arn),
        });
        for listener in from_routers.chain(self.rules.keys().cloned()) {
            if !known.contains(&listener) {
                known.push(listener);
            }
        }
        known
    }

    fn fleet_mut(&mut self, operation: &str, name: &FleetName) -> CloudResult<&mut FakeFleet> {
        self.fleets
            .get_mut(name)
            .filter(|f| f.deleted_at.is_none())
            .ok_or_else(|| not_found(operation, format!("Auto Scaling group {name}")))
    }
}

impl Cloud for FakeCloud {
    async fn router(&self, id: &RouterId) -> CloudResult<RouterState> {
        self.call("router", |w, _| {
            w.routers
                .iter()
                .find(|(r, _)| r == id)
                .map(|(id, action)| RouterState {
                    id: id.clone(),
                    action: action.clone(),
                })
                .ok_or_else(|| not_found("DescribeListeners", id.to_string()))
        })
    }

    async fn target_group(&self, arn: &TargetGroupArn) -> CloudResult<TargetGroupInfo> {
        self.call("target_group", |w, _| {
            w.target_groups
                .get(arn)
                .cloned()
                .ok_or_else(|| not_found("DescribeTargetGroups", format!("target group {arn}")))
        })
    }

    async fn target_groups(&self, arns: &[TargetGroupArn]) -> CloudResult<Vec<TargetGroupInfo>> {
        self.call("target_groups", |w, _| {
            arns.iter()
                .map(|arn| {
                    w.target_groups.get(arn).cloned().ok_or_else(|| {
                        not_found("DescribeTargetGroups", format!("target group {arn}"))
                    })
                })
                .collect()
        })
    }

    async fn fleets(&self, target_groups: &[TargetGroupArn]) -> CloudResult<Vec<FleetSummary>> {
        self.call("fleets", |w, now| {
            Ok(w.fleets
                .iter()
                .filter(|(_, f)| {
                    f.config
                        .target_groups
                        .iter()
                        .any(|tg| target_groups.contains(tg))
                })
                .map(|(name, f)| summarize(name, f, now))
                .collect())
        })
    }

    async fn fleet_config(&self, name: &FleetName) -> CloudResult<FleetConfig> {
        self.call("fleet_config", |w, _| {
            w.fleet_mut("DescribeAutoScalingGroups", name)
                .map(|f| f.config.clone())
        })
    }

    async fn target_health(&self, target_group: &TargetGroupArn) -> CloudResult<Vec<TargetHealth>> {
        self.call("target_health", |w, now| {
            if !w.target_groups.contains_key(target_group) {
                return Err(not_found(
                    "DescribeTargetHealth",
                    format!("target group {target_group}"),
                ));
            }
            Ok(w.targets(target_group, now))
        })
    }

    async fn image_exists(&self, image: &ImageId) -> CloudResult<bool> {
        self.call("image_exists", |w, _| Ok(w.images.contains(image.as_str())))
    }

    async fn launch_template_version(
        &self,
        template: &LaunchTemplateRef,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        self.call("launch_template_version", |w, _| {
            let Some(versions) = w.templates.get(&template.id) else {
                return Ok(None);
            };
            Ok(match template.version.as_str() {
                "$Default" => versions.first().cloned(),
                "$Latest" => versions.last().cloned(),
                number => versions
                    .iter()
                    .find(|v| v.number.to_string() == number)
                    .cloned(),
            })
        })
    }

    async fn find_launch_template_version(
        &self,
        template_id: &str,
        description: &str,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        self.call("find_launch_template_version", |w, _| {
            Ok(w.templates.get(template_id).and_then(|versions| {
                versions
                    .iter()
                    .rev()
                    .find(|v| v.description.as_deref() == Some(description))
                    .cloned()
            }))
        })
    }

    async fn create_launch_template_version(
        &self,
        template_id: &str,
        source_version: u64,
        image: &ImageId,
        description: &str,
        client_token: &str,
    ) -> CloudResult<LaunchTemplateVersion> {
        self.call("create_launch_template_version", |w, _| {
            // As EC2 does: the same token returns what the first request made.
            if let Some(number) = w.tokens.get(client_token).cloned() {
                return w
                    .templates
                    .get(template_id)
                    .and_then(|vs| vs.iter().find(|v| v.number.to_string() == number).cloned())
                    .ok_or_else(|| not_found("CreateLaunchTemplateVersion", number));
            }
            let versions = w.templates.get_mut(template_id).ok_or_else(|| {
                not_found(
                    "CreateLaunchTemplateVersion",
                    format!("launch template {template_id}"),
                )
            })?;
            if !versions.iter().any(|v| v.number == source_version) {
                return Err(not_found(
                    "CreateLaunchTemplateVersion",
                    format!("version {source_version} of {template_id}"),
                ));
            }
            let highest = versions.iter().map(|v| v.number).max().unwrap_or(0);
            let number = highest.max(w.highest_versions.get(template_id).copied().unwrap_or(0)) + 1;
            let versions = w.templates.get_mut(template_id).expect("checked above");
            let version = LaunchTemplateVersion {
                template_id: template_id.into(),
                number,
                image_id: Some(image.to_string()),
                description: Some(description.into()),
            };
            versions.push(version.clone());
            w.tokens
                .insert(client_token.to_owned(), version.number.to_string());
            Ok(version)
        })
    }

    async fn fleet_summary(&self, name: &FleetName) -> CloudResult<Option<FleetSummary>> {
        self.call("fleet_summary", |w, now| {
            Ok(w.fleets.get(name).map(|f| summarize(name, f, now)))
        })
    }

    async fn create_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        self.call("create_fleet", |w, now| {
            if w.fleets.contains_key(name) {
                return Err(CloudError::new(
                    CloudErrorKind::Conflict,
                    "CreateAutoScalingGroup",
                    format!("AutoScalingGroup by this name already exists - {name}"),
                )
                .with_code("AlreadyExists"));
            }
            let fleet = FakeFleet {
                config: FleetConfig {
                    // Only what CreateAutoScalingGroup carries; the rest comes with configure.
                    scaling_policies: Vec::new(),
                    scheduled_actions: Vec::new(),
                    metrics: None,
                    suspended_processes: Vec::new(),
                    ..config.clone()
                },
                instances: Vec::new(),
                deleted_at: None,
            };
            if w.takes_traffic(&fleet) {
                w.violations.push(format!(
                    "created fleet {name} attached to a target group with traffic"
                ));
            }
            w.fleets.insert(name.clone(), fleet);
            w.converge(name, now);
            Ok(())
        })
    }

    async fn configure_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        self.call("configure_fleet", |w, _| {
            let fleet = w.fleet_mut("PutScalingPolicy", name)?;
            fleet.config.scaling_policies = config.scaling_policies.clone();
            fleet.config.scheduled_actions = config.scheduled_actions.clone();
            fleet.config.metrics = config.metrics.clone();
            fleet.config.suspended_processes = config.suspended_processes.clone();
            Ok(())
        })
    }

    async fn set_capacity(&self, name: &FleetName, capacity: Capacity) -> CloudResult<()> {
        self.call("set_capacity", |w, now| {
            let before = w.fleet_mut("UpdateAutoScalingGroup", name)?.config.capacity;
            let fleet = w.fleets.get(name).expect("checked above").clone();
            if capacity.desired < before.desired && w.takes_traffic(&fleet) {
                w.violations
                    .push(format!("shrank fleet {name} while it takes traffic"));
            }
            // Invariant 3: the previous release stays at capacity while it is kept warm, that
            // is until its warm-until time (then cleanup may retire it).
            let tag = |key: &str| {
                fleet
                    .config
                    .tags
                    .iter()
                    .find(|t| t.key == key)
                    .map(|t| t.value.clone())
            };
            let warm = tag(crate::core::tags::PHASE).as_deref() == Some("warm")
                && tag(crate::core::tags::WARM_UNTIL)
                    .and_then(|v| humantime::parse_rfc3339_weak(&v).ok())
                    .is_none_or(|until| until > now);
            if capacity.desired < before.desired && warm {
                w.violations
                    .push(format!("shrank warm fleet {name}, which a rollback needs"));
            }
            w.fleet_mut("UpdateAutoScalingGroup", name)?.config.capacity = capacity;
            w.converge(name, now);
            Ok(())
        })
    }

    async fn tag_fleet(&self, name: &FleetName, tags: &[(String, String)]) -> CloudResult<()> {
        let request_only = tags
            .iter()
            .all(|(k, _)| k == crate::core::tags::PROMOTED || k == crate::core::tags::ABORT);
        self.call("tag_fleet", |w, _| {
            if !request_only {
                self.record_change(w, "tag_fleet");
            }
            let fleet = w.fleet_mut("CreateOrUpdateTags", name)?;
            for (key, value) in tags {
                match fleet.config.tags.iter_mut().find(|t| &t.key == key) {
                    Some(tag) => tag.value = value.clone(),
                    None => fleet.config.tags.push(FleetTag {
                        key: key.clone(),
                        value: value.clone(),
                        propagate_at_launch: false,
                    }),
                }
            }
            Ok(())
        })
    }

    async fn untag_fleet(&self, name: &FleetName, keys: &[String]) -> CloudResult<()> {
        self.call("untag_fleet", |w, _| {
            let fleet = w.fleet_mut("DeleteTags", name)?;
            fleet.config.tags.retain(|t| !keys.contains(&t.key));
            Ok(())
        })
    }

    async fn suspend_processes(&self, name: &FleetName, processes: &[String]) -> CloudResult<()> {
        self.call("suspend_processes", |w, _| {
            let fleet = w.fleet_mut("SuspendProcesses", name)?;
            for process in processes {
                if !fleet.config.suspended_processes.contains(process) {
                    fleet.config.suspended_processes.push(process.clone());
                }
            }
            Ok(())
        })
    }

    async fn resume_processes(&self, name: &FleetName, processes: &[String]) -> CloudResult<()> {
        self.call("resume_processes", |w, _| {
            let fleet = w.fleet_mut("ResumeProcesses", name)?;
            fleet
                .config
                .suspended_processes
                .retain(|p| !processes.contains(p));
            Ok(())
        })
    }

    async fn delete_fleet(&self, name: &FleetName) -> CloudResult<()> {
        self.call("delete_fleet", |w, now| {
            let Some(fleet) = w.fleets.get(name).cloned() else {
                return Ok(());
            };
            if w.takes_traffic(&fleet) {
                w.violations
                    .push(format!("deleted fleet {name} while it takes traffic"));
            }
            let fleet = w.fleets.get_mut(name).expect("checked above");
            fleet.instances.clear();
            fleet.deleted_at.get_or_insert(now);
            Ok(())
        })
    }

    async fn route(&self, id: &RouterId, write: &RouterWrite) -> CloudResult<Vec<Forward>> {
        let forwards = &write.forwards;
        self.call("route", |w, now| {
            let current = match w.routers.iter().find(|(r, _)| r == id) {
                Some((_, RouterAction::Forward { forwards })) => forwards.clone(),
                Some((_, RouterAction::Other { .. })) => Vec::new(),
                None => return Err(not_found("DescribeListeners", id.to_string())),
            };
            if !same_forwards(&current, &write.expected) {
                return Err(CloudError::new(
                    CloudErrorKind::Conflict,
                    "DescribeListeners",
                    format!("{id} changed since it was read"),
                )
                .with_code(ROUTER_CHANGED));
            }
            let production = !w.test_routers.contains(id);
            for forward in forwards.iter().filter(|f| production && f.weight.get() > 0) {
                let fleets: Vec<(FleetName, FakeFleet)> = w
                    .fleets
                    .iter()
                    .filter(|(_, f)| {
                        f.deleted_at.is_none()
                            && f.config.target_groups.contains(&forward.target_group)
                    })
                    .map(|(n, f)| (n.clone(), f.clone()))
                    .collect();
                let targets = w.targets(&forward.target_group, now);
                let ready = fleets.len() == 1
                    && fleet_health(&summarize(&fleets[0].0, &fleets[0].1, now), &targets).ready();
                if !ready {
                    w.violations.push(format!(
                        "routed traffic to target group {} which is not ready",
                        forward.target_group.short_name()
                    ));
                }
            }
            let entry = w
                .routers
                .iter_mut()
                .find(|(r, _)| r == id)
                .ok_or_else(|| not_found("ModifyListener", id.to_string()))?;
            entry.1 = RouterAction::Forward {
                forwards: forwards.to_vec(),
            };
            // As on AWS: a target group a listener forwards to belongs to its load balancer.
            if let Some(lb) = id.load_balancer_arn() {
                for forward in forwards.iter() {
                    if let Some(info) = w.target_groups.get_mut(&forward.target_group)
                        && !info.load_balancer_arns.contains(&lb)
                    {
                        info.load_balancer_arns.push(lb.clone());
                    }
                }
            }
            w.routes.push(forwards.to_vec());
            Ok(forwards.to_vec())
        })
    }

    async fn create_lock(
        &self,
        name: &str,
        tags: &[(String, String)],
        client_token: &str,
    ) -> CloudResult<String> {
        self.call("create_lock", |w, _| {
            if let Some(id) = w.tokens.get(client_token).cloned() {
                return Ok(id);
            }
            if w.locks.contains_key(name) {
                return Err(CloudError::new(
                    CloudErrorKind::Conflict,
                    "CreateLaunchTemplate",
                    "Launch template name already in use.",
                )
                .with_code("InvalidLaunchTemplateName.AlreadyExistsException"));
            }
            w.next_lock += 1;
            let id = format!("lt-lock{:010}", w.next_lock);
            w.locks.insert(
                name.to_owned(),
                (id.clone(), tags.iter().cloned().collect()),
            );
            w.tokens.insert(client_token.to_owned(), id.clone());
            Ok(id)
        })
    }

    async fn read_lock(
        &self,
        name: &str,
    ) -> CloudResult<Option<(String, BTreeMap<String, String>)>> {
        self.call("read_lock", |w, _| Ok(w.locks.get(name).cloned()))
    }

    async fn tag_lock(&self, id: &str, tags: &[(String, String)]) -> CloudResult<()> {
        self.call("tag_lock", |w, _| {
            let (_, existing) = w
                .locks
                .values_mut()
                .find(|(lock_id, _)| lock_id == id)
                .ok_or_else(|| not_found("CreateTags", format!("launch template {id}")))?;
            existing.extend(tags.iter().cloned());
            Ok(())
        })
    }

    async fn delete_lock(&self, id: &str) -> CloudResult<()> {
        self.call("delete_lock", |w, _| {
            w.locks.retain(|_, (lock_id, _)| lock_id != id);
            Ok(())
        })
    }

    async fn listener_rules(&self, listener: &ListenerArn) -> CloudResult<Vec<ListenerRule>> {
        self.call("listener_rules", |w, _| {
            let router = RouterId::Listener(listener.clone());
            let Some((_, action)) = w.routers.iter().find(|(id, _)| *id == router) else {
                return Err(not_found("DescribeRules", format!("listener {listener}")));
            };
            let default = ListenerRule {
                arn: rule_arn(listener, 0),
                priority: None,
                conditions: Vec::new(),
                target_groups: match action {
                    RouterAction::Forward { forwards } => {
                        forwards.iter().map(|f| f.target_group.clone()).collect()
                    }
                    RouterAction::Other { .. } => Vec::new(),
                },
                tags: BTreeMap::new(),
            };
            let mut rules = vec![default];
            rules.extend(w.rules.get(listener).cloned().unwrap_or_default());
            Ok(rules)
        })
    }

    async fn create_rule(
        &self,
        listener: &ListenerArn,
        priority: u32,
        conditions: &[RuleCondition],
        target_group: &TargetGroupArn,
        tags: &[(String, String)],
    ) -> CloudResult<RuleArn> {
        self.call("create_rule", |w, _| {
            let rules = w.rules.entry(listener.clone()).or_default();
            if rules.iter().any(|r| r.priority == Some(priority)) {
                return Err(CloudError::new(
                    CloudErrorKind::Conflict,
                    "CreateRule",
                    format!("Priority '{priority}' is currently in use"),
                )
                .with_code("PriorityInUse"));
            }
            w.next_rule += 1;
            let arn = rule_arn(listener, w.next_rule);
            w.rules
                .entry(listener.clone())
                .or_default()
                .push(ListenerRule {
                    arn: arn.clone(),
                    priority: Some(priority),
                    conditions: conditions.to_vec(),
                    target_groups: vec![target_group.clone()],
                    tags: tags.iter().cloned().collect(),
                });
            Ok(arn)
        })
    }

    async fn delete_rule(&self, rule: &RuleArn) -> CloudResult<()> {
        self.call("delete_rule", |w, _| {
            for rules in w.rules.values_mut() {
                rules.retain(|r| &r.arn != rule);
            }
            Ok(())
        })
    }

    async fn load_balancer_dns(&self, load_balancer_arn: &str) -> CloudResult<String> {
        self.call("load_balancer_dns", |w, _| {
            Ok(w.load_balancer_dns
                .get(load_balancer_arn)
                .cloned()
                .unwrap_or_else(|| "checkout-1234567890.us-east-1.elb.amazonaws.com".to_owned()))
        })
    }

    async fn alarms(&self, names: &[String]) -> CloudResult<Vec<AlarmState>> {
        self.call("alarms", |w, _| {
            Ok(names
                .iter()
                .filter_map(|n| w.alarms.get(n).cloned())
                .collect())
        })
    }

    async fn target_group_metrics(
        &self,
        load_balancer_arn: &str,
        target_groups: &[TargetGroupArn],
        start: SystemTime,
        end: SystemTime,
    ) -> CloudResult<Vec<MetricWindow>> {
        let _ = load_balancer_arn;
        self.call("target_group_metrics", |w, _| {
            let minutes = end.duration_since(start).unwrap_or_default().as_secs_f64() / 60.0;
            Ok(target_groups
                .iter()
                .map(|tg| {
                    let (requests, errors, p99) =
                        w.traffic.get(tg).copied().unwrap_or((0.0, 0.0, None));
                    MetricWindow {
                        target_group: tg.clone(),
                        requests: (requests * minutes).floor(),
                        errors_5xx: (errors * minutes).floor(),
                        p99_ms: p99.filter(|_| requests * minutes >= 1.0),
                    }
                })
                .collect())
        })
    }

    async fn tagged_fleets(&self, service: Option<&ServiceName>) -> CloudResult<Vec<FleetSummary>> {
        self.call("tagged_fleets", |w, now| {
            Ok(w.fleets
                .iter()
                .filter(|(_, f)| {
                    f.config.tags.iter().any(|t| {
                        t.key == crate::core::tags::SERVICE
                            && service.is_none_or(|s| t.value == s.as_str())
                    })
                })
                .map(|(name, f)| summarize(name, f, now))
                .collect())
        })
    }

    async fn listeners(&self, load_balancer_arn: &str) -> CloudResult<Vec<ListenerArn>> {
        self.call("listeners", |w, _| {
            let balancer = |l: &ListenerArn| {
                RouterId::Listener(l.clone()).load_balancer_arn().as_deref()
                    == Some(load_balancer_arn)
            };
            let known = w.known_listeners();
            let lb_known = known.iter().any(balancer)
                || w.load_balancer_dns.contains_key(load_balancer_arn)
                || w.target_groups.values().any(|tg| {
                    tg.load_balancer_arns
                        .iter()
                        .any(|lb| lb == load_balancer_arn)
                });
            if !lb_known {
                return Err(not_found(
                    "DescribeListeners",
                    format!("load balancer {load_balancer_arn}"),
                ));
            }
            Ok(known.into_iter().filter(|l| balancer(l)).collect())
        })
    }

    async fn listener_forwards(&self, listener: &ListenerArn) -> CloudResult<Vec<ListenerForward>> {
        self.call("listener_forwards", |w, _| {
            if !w.known_listeners().contains(listener) {
                return Err(not_found("DescribeRules", format!("listener {listener}")));
            }
            let mut found = Vec::new();
            // The default action: the listener router's forward.
            let default = RouterId::Listener(listener.clone());
            if let Some((_, RouterAction::Forward { forwards })) =
                w.routers.iter().find(|(id, _)| *id == default)
            {
                found.push(ListenerForward {
                    owner: listener.to_string(),
                    forwards: forwards.clone(),
                });
            }
            // Rule routers on this listener, with the weights they carry now.
            let mut owners = BTreeSet::new();
            for (id, action) in &w.routers {
                let RouterId::Rule(rule) = id else { continue };
                if listener_of(rule).as_ref() != Some(listener) || !owners.insert(rule.clone()) {
                    continue;
                }
                if let RouterAction::Forward { forwards } = action {
                    found.push(ListenerForward {
                        owner: rule.to_string(),
                        forwards: forwards.clone(),
                    });
                }
            }
            // Other rules (test rules, others' rules): a plain forward to each target group.
            for rule in w.rules.get(listener).into_iter().flatten() {
                if rule.target_groups.is_empty() || !owners.insert(rule.arn.clone()) {
                    continue;
                }
                found.push(ListenerForward {
                    owner: rule.arn.to_string(),
                    forwards: rule
                        .target_groups
                        .iter()
                        .map(|tg| Forward {
                            target_group: tg.clone(),
                            weight: Weight::ALL,
                        })
                        .collect(),
                });
            }
            Ok(found)
        })
    }

    async fn deregistration_delay(&self, target_group: &TargetGroupArn) -> CloudResult<Duration> {
        self.call("deregistration_delay", |w, _| {
            if !w.target_groups.contains_key(target_group) {
                return Err(not_found(
                    "DescribeTargetGroupAttributes",
                    format!("target group {target_group}"),
                ));
            }
            Ok(w.deregistration_delays
                .get(target_group)
                .copied()
                .unwrap_or(DEFAULT_DEREGISTRATION_DELAY))
        })
    }

    async fn launch_template_versions(
        &self,
        template_id: &str,
    ) -> CloudResult<Vec<LaunchTemplateVersion>> {
        self.call("launch_template_versions", |w, _| {
            w.templates.get(template_id).cloned().ok_or_else(|| {
                not_found(
                    "DescribeLaunchTemplateVersions",
                    format!("launch template {template_id}"),
                )
            })
        })
    }

    /// As EC2 does: one call per 200 versions; the default version (the template's first, as
    /// `$Default` resolves here) is refused, a version already gone (or a template gone) is
    /// fine, and the refusals are one error once every call is made.
    async fn delete_launch_template_versions(
        &self,
        template_id: &str,
        versions: &[u64],
    ) -> CloudResult<()> {
        let mut refused = Vec::new();
        for chunk in versions.chunks(VERSIONS_PER_DELETE) {
            let chunk_refused = self.call("delete_launch_template_versions", |w, _| {
                let Some(existing) = w.templates.get_mut(template_id) else {
                    return Ok(Vec::new());
                };
                let default = existing.first().map(|v| v.number);
                let mut refused = Vec::new();
                let mut deleted = Vec::new();
                for &number in chunk {
                    if Some(number) == default {
                        refused.push(number);
                    } else if existing.iter().any(|v| v.number == number) {
                        existing.retain(|v| v.number != number);
                        deleted.push(number);
                    }
                }
                if let Some(&highest) = deleted.iter().max() {
                    let entry = w
                        .highest_versions
                        .entry(template_id.to_owned())
                        .or_default();
                    *entry = (*entry).max(highest);
                }
                Ok(refused)
            })?;
            refused.extend(chunk_refused);
        }
        if refused.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = refused
            .iter()
            .map(|n| {
                format!(
                    "version {n} (unexpectedError: Cannot delete the default version of a \
                     launch template.)"
                )
            })
            .collect();
        Err(CloudError::new(
            CloudErrorKind::InvalidRequest,
            "DeleteLaunchTemplateVersions",
            format!(
                "EC2 did not delete {} of launch template {template_id}",
                parts.join(", ")
            ),
        )
        .with_code("unexpectedError"))
    }

    async fn locks(&self) -> CloudResult<Vec<LockObject>> {
        self.call("locks", |w, _| {
            Ok(w.locks
                .iter()
                .filter(|(name, _)| name.starts_with(crate::core::lock::NAME_PREFIX))
                .map(|(name, (id, tags))| LockObject {
                    name: name.clone(),
                    id: id.clone(),
                    tags: tags.clone(),
                })
                .collect())
        })
    }
}

/// The sample blue fleet's configuration: every setting greenlight copies, set.
pub fn sample_config(target_group: &TargetGroupArn) -> FleetConfig {
    FleetConfig {
        launch: FleetLaunch::Template(LaunchTemplateRef {
            id: sample::TEMPLATE.into(),
            version: "1".into(),
        }),
        capacity: Capacity {
            min: 2,
            max: 4,
            desired: 2,
        },
        subnets: vec!["subnet-1".into(), "subnet-2".into()],
        availability_zones: vec!["us-east-1a".into(), "us-east-1b".into()],
        health_check_type: Some("ELB".into()),
        health_check_grace_period: Some(60),
        default_cooldown: Some(300),
        termination_policies: vec!["OldestInstance".into(), "Default".into()],
        default_instance_warmup: Some(30),
        capacity_rebalance: Some(false),
        max_instance_lifetime: Some(604_800),
        instance_maintenance_policy: None,
        new_instances_protected_from_scale_in: Some(false),
        placement_group: None,
        service_linked_role_arn: None,
        desired_capacity_type: None,
        lifecycle_hooks: vec![LifecycleHook {
            name: "drain-logs".into(),
            transition: "autoscaling:EC2_INSTANCE_LAUNCHING".into(),
            heartbeat_timeout: Some(300),
            default_result: Some("CONTINUE".into()),
            notification_target_arn: None,
            role_arn: None,
            notification_metadata: None,
        }],
        scaling_policies: vec![ScalingPolicy {
            name: "cpu50".into(),
            policy_type: "TargetTrackingScaling".into(),
            enabled: Some(true),
            adjustment_type: None,
            min_adjustment_magnitude: None,
            scaling_adjustment: None,
            cooldown: None,
            metric_aggregation_type: None,
            estimated_instance_warmup: None,
            step_adjustments: vec![],
            target_tracking: Some(TargetTracking {
                predefined_metric_type: Some("ASGAverageCPUUtilization".into()),
                resource_label: None,
                customized_metric: None,
                target_value: 50.0,
                disable_scale_in: None,
            }),
            has_metric_math: false,
        }],
        scheduled_actions: vec![ScheduledAction {
            name: "weekday-morning".into(),
            recurrence: Some("0 9 * * 1-5".into()),
            start_time: None,
            end_time: None,
            min: Some(2),
            max: None,
            desired: Some(3),
            time_zone: None,
        }],
        metrics: Some(MetricsCollection {
            granularity: "1Minute".into(),
            metrics: vec!["GroupInServiceInstances".into()],
        }),
        suspended_processes: vec!["AZRebalance".into()],
        tags: vec![FleetTag {
            key: "team".into(),
            value: "payments".into(),
            propagate_at_launch: true,
        }],
        target_groups: vec![target_group.clone()],
        has_warm_pool: false,
    }
}

#[cfg(test)]
mod cleanup_port_tests {
    use std::time::UNIX_EPOCH;

    use super::sample::*;
    use super::*;
    use crate::core::lock::{NAME_PREFIX, TOKEN};
    use crate::core::tags::SERVICE;

    fn cloud() -> (FakeCloud, Spec) {
        FakeCloud::sample(FakeClock::new(
            UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ))
    }

    fn tg(arn: &str) -> TargetGroupArn {
        TargetGroupArn::parse(arn).unwrap()
    }

    fn forwards(pairs: &[(&str, u16)]) -> Vec<Forward> {
        pairs
            .iter()
            .map(|(arn, w)| Forward {
                target_group: tg(arn),
                weight: Weight::new(*w).unwrap(),
            })
            .collect()
    }

    /// Holds the sample service's lock, so changes made to arrange a test are legal.
    fn hold_lock(cloud: &FakeCloud) {
        cloud.put_lock(
            &format!("{NAME_PREFIX}checkout"),
            BTreeMap::from([(TOKEN.to_owned(), "test".to_owned())]),
        );
    }

    fn tagged(tags: &[(&str, &str)]) -> FleetConfig {
        let mut config = sample_config(&tg(TG_B));
        config.capacity.desired = 1;
        config.tags = tags
            .iter()
            .map(|(k, v)| FleetTag {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
                propagate_at_launch: false,
            })
            .collect();
        config
    }

    fn names(fleets: &[FleetSummary]) -> BTreeSet<&str> {
        fleets.iter().map(|f| f.name.as_str()).collect()
    }

    #[tokio::test]
    async fn tagged_fleets_are_those_with_the_service_tag_deleting_ones_included() {
        let (cloud, _) = cloud();
        hold_lock(&cloud);
        let add = |name: &str, tags: &[(&str, &str)]| {
            cloud.add_fleet(&FleetName::new(name), tagged(tags), Duration::ZERO);
        };
        add(
            "checkout-v2",
            &[(SERVICE, "checkout"), ("team", "payments")],
        );
        add("checkout-v3", &[(SERVICE, "checkout")]);
        add("payments-v1", &[(SERVICE, "payments")]);
        add("decoy", &[("owner", "checkout")]);
        let checkout = ServiceName::parse("checkout").unwrap();

        let mine = cloud.tagged_fleets(Some(&checkout)).await.unwrap();
        assert_eq!(names(&mine), BTreeSet::from(["checkout-v2", "checkout-v3"]));
        let all = cloud.tagged_fleets(None).await.unwrap();
        assert_eq!(
            names(&all),
            BTreeSet::from(["checkout-v2", "checkout-v3", "payments-v1"])
        );
        let nobody = ServiceName::parse("nobody").unwrap();
        assert!(cloud.tagged_fleets(Some(&nobody)).await.unwrap().is_empty());
        assert_eq!(cloud.count("tagged_fleets"), 3);

        // A fleet being deleted is listed as deleting until it is gone.
        cloud
            .delete_fleet(&FleetName::new("checkout-v3"))
            .await
            .unwrap();
        let mine = cloud.tagged_fleets(Some(&checkout)).await.unwrap();
        let deleting = mine
            .iter()
            .find(|f| f.name.as_str() == "checkout-v3")
            .unwrap();
        assert!(deleting.deleting);
        assert!(deleting.instances.is_empty());
        cloud.clock.advance(DELETION_LINGERS);
        let mine = cloud.tagged_fleets(Some(&checkout)).await.unwrap();
        assert_eq!(names(&mine), BTreeSet::from(["checkout-v2"]));

        cloud.fail(
            "tagged_fleets",
            1,
            FaultTiming::Before,
            CloudErrorKind::Unavailable,
        );
        let err = cloud.tagged_fleets(None).await.unwrap_err();
        assert!(err.transient(), "{err}");
        assert_eq!(cloud.violations(), Vec::<String>::new());
    }

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/checkout/50dc6c495c0c9188";
    const TEST_LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/0000000000008080";
    const ELSEWHERE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/other/1111111111111111/2222222222222222";

    #[tokio::test]
    async fn listeners_and_their_forwards_come_from_routers_and_rules() {
        let (cloud, spec) = cloud();
        hold_lock(&cloud);
        let listener = ListenerArn::parse(LISTENER).unwrap();
        let test_listener = ListenerArn::parse(TEST_LISTENER).unwrap();
        assert_eq!(spec.router.load_balancer_arn().as_deref(), Some(LB));
        cloud.add_test_router(
            &RouterId::Listener(test_listener.clone()),
            RouterAction::Forward {
                forwards: forwards(&[(TG_B, 1)]),
            },
        );
        cloud.add_router(
            &RouterId::Listener(ListenerArn::parse(ELSEWHERE).unwrap()),
            RouterAction::Forward {
                forwards: forwards(&[(TG_B, 1)]),
            },
        );
        // A rule router on the production listener, splitting traffic.
        let split = rule_arn(&listener, 900);
        cloud.add_router(
            &RouterId::Rule(split.clone()),
            RouterAction::Forward {
                forwards: forwards(&[(TG_A, 90), (TG_B, 10)]),
            },
        );
        // A test rule forwarding to b, and someone else's rule that forwards nowhere we know.
        let test_rule = cloud
            .create_rule(
                &listener,
                5,
                &[RuleCondition::header("X-Release", "v2")],
                &tg(TG_B),
                &[],
            )
            .await
            .unwrap();
        cloud.add_rule(&listener, 7, vec![]);

        let found: BTreeSet<String> = cloud
            .listeners(LB)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(
            found,
            BTreeSet::from([LISTENER.to_owned(), TEST_LISTENER.to_owned()])
        );
        let err = cloud
            .listeners(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gone/1",
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::NotFound);
        assert_eq!(err.operation, "DescribeListeners");

        let by_owner: BTreeMap<String, Vec<Forward>> = cloud
            .listener_forwards(&listener)
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.owner, f.forwards))
            .collect();
        assert_eq!(
            by_owner,
            BTreeMap::from([
                (LISTENER.to_owned(), forwards(&[(TG_A, 1)])),
                (split.to_string(), forwards(&[(TG_A, 90), (TG_B, 10)])),
                (test_rule.to_string(), forwards(&[(TG_B, 1)])),
            ])
        );
        // A route is seen at once.
        let router = RouterId::Rule(split.clone());
        cloud.set_router(
            &router,
            RouterAction::Forward {
                forwards: forwards(&[(TG_A, 0), (TG_B, 1)]),
            },
        );
        let after = cloud.listener_forwards(&listener).await.unwrap();
        let owned = after.iter().find(|f| f.owner == split.as_str()).unwrap();
        assert_eq!(owned.forwards, forwards(&[(TG_A, 0), (TG_B, 1)]));

        let test = cloud.listener_forwards(&test_listener).await.unwrap();
        assert_eq!(
            test,
            [ListenerForward {
                owner: TEST_LISTENER.to_owned(),
                forwards: forwards(&[(TG_B, 1)]),
            }]
        );
        let gone = ListenerArn::parse(&format!("{LISTENER}0")).unwrap();
        let err = cloud.listener_forwards(&gone).await.unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::NotFound);
        assert_eq!(err.operation, "DescribeRules");
        assert_eq!(cloud.count("listeners"), 2);
        assert_eq!(cloud.count("listener_forwards"), 4);
        assert_eq!(cloud.violations(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn deregistration_delay_defaults_to_300_seconds_and_can_be_set() {
        let (cloud, _) = cloud();
        assert_eq!(
            cloud.deregistration_delay(&tg(TG_A)).await.unwrap(),
            Duration::from_secs(300)
        );
        cloud.set_deregistration_delay(TG_B, Duration::from_secs(5));
        assert_eq!(
            cloud.deregistration_delay(&tg(TG_B)).await.unwrap(),
            Duration::from_secs(5)
        );
        let unknown = tg("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1");
        let err = cloud.deregistration_delay(&unknown).await.unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::NotFound);
        assert_eq!(err.operation, "DescribeTargetGroupAttributes");
        assert_eq!(cloud.count("deregistration_delay"), 3);
    }

    fn numbers(versions: &[LaunchTemplateVersion]) -> Vec<u64> {
        versions.iter().map(|v| v.number).collect()
    }

    #[tokio::test]
    async fn launch_template_versions_are_listed_and_deleted_but_never_the_default() {
        let (cloud, _) = cloud();
        hold_lock(&cloud);
        let image = ImageId::parse(NEXT_IMAGE).unwrap();
        for n in 2..=5 {
            let token = format!("token-{n}");
            let made = cloud
                .create_launch_template_version(TEMPLATE, 1, &image, &format!("r{n}"), &token)
                .await
                .unwrap();
            assert_eq!(made.number, n);
        }
        let versions = cloud.launch_template_versions(TEMPLATE).await.unwrap();
        assert_eq!(numbers(&versions), [1, 2, 3, 4, 5]);
        assert_eq!(versions[3].description.as_deref(), Some("r4"));

        // Gone already (9) is fine.
        cloud
            .delete_launch_template_versions(TEMPLATE, &[2, 3, 9])
            .await
            .unwrap();
        assert_eq!(numbers(&cloud.template_versions(TEMPLATE)), [1, 4, 5]);

        // The default is refused, by name and code; what could go went.
        let err = cloud
            .delete_launch_template_versions(TEMPLATE, &[1, 5])
            .await
            .unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::InvalidRequest);
        assert_eq!(err.operation, "DeleteLaunchTemplateVersions");
        assert_eq!(err.code.as_deref(), Some("unexpectedError"));
        assert!(err.message.contains("version 1 "), "{err}");
        assert_eq!(numbers(&cloud.template_versions(TEMPLATE)), [1, 4]);
        assert_eq!(
            cloud
                .launch_template_version(&LaunchTemplateRef {
                    id: TEMPLATE.into(),
                    version: "$Default".into(),
                })
                .await
                .unwrap()
                .map(|v| v.number),
            Some(1)
        );

        // A deleted number is never reused.
        let next = cloud
            .create_launch_template_version(TEMPLATE, 1, &image, "r6", "token-6")
            .await
            .unwrap();
        assert_eq!(next.number, 6);

        // 450 versions: three calls (200 + 200 + 50); nothing: no call.
        let before = cloud.count("delete_launch_template_versions");
        let many: Vec<u64> = (100..550).collect();
        cloud
            .delete_launch_template_versions(TEMPLATE, &many)
            .await
            .unwrap();
        cloud
            .delete_launch_template_versions(TEMPLATE, &[])
            .await
            .unwrap();
        assert_eq!(cloud.count("delete_launch_template_versions"), before + 3);

        // A template that is gone has nothing left to delete; listing it is NotFound.
        cloud
            .delete_launch_template_versions("lt-gone", &[2])
            .await
            .unwrap();
        let err = cloud.launch_template_versions("lt-gone").await.unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::NotFound);

        // A fault on the second call of a split delete: the first chunk's deletes stay done.
        cloud.fail(
            "delete_launch_template_versions",
            2,
            FaultTiming::Before,
            CloudErrorKind::Unavailable,
        );
        let mut doomed: Vec<u64> = (1000..1200).collect();
        doomed.push(4);
        let err = cloud
            .delete_launch_template_versions(TEMPLATE, &doomed)
            .await
            .unwrap_err();
        assert!(err.transient(), "{err}");
        assert_eq!(numbers(&cloud.template_versions(TEMPLATE)), [1, 4, 6]);
        assert_eq!(cloud.violations(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn deleting_versions_without_the_lock_is_a_violation() {
        let (cloud, _) = cloud();
        cloud
            .delete_launch_template_versions(TEMPLATE, &[2])
            .await
            .unwrap();
        assert_eq!(cloud.violations().len(), 1, "{:?}", cloud.violations());
    }

    #[tokio::test]
    async fn locks_are_every_lock_object_with_its_tags() {
        let (cloud, _) = cloud();
        assert!(cloud.locks().await.unwrap().is_empty());
        let tags = BTreeMap::from([(TOKEN.to_owned(), "t1".to_owned())]);
        let first = cloud.put_lock(&format!("{NAME_PREFIX}checkout"), tags.clone());
        let second = cloud
            .create_lock(
                &format!("{NAME_PREFIX}payments"),
                &[(TOKEN.to_owned(), "t2".to_owned())],
                "token",
            )
            .await
            .unwrap();
        let found = cloud.locks().await.unwrap();
        assert_eq!(
            found,
            [
                LockObject {
                    name: format!("{NAME_PREFIX}checkout"),
                    id: first.clone(),
                    tags,
                },
                LockObject {
                    name: format!("{NAME_PREFIX}payments"),
                    id: second,
                    tags: BTreeMap::from([(TOKEN.to_owned(), "t2".to_owned())]),
                },
            ]
        );
        cloud.remove_lock(&first);
        let names: Vec<String> = cloud
            .locks()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, [format!("{NAME_PREFIX}payments")]);
        assert_eq!(cloud.count("locks"), 3);
    }
}
