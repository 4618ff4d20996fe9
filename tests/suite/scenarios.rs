//! Whole commands against the in-memory cloud: happy path, failures, crashes at every step,
//! rollback. Every scenario also checks the fake's safety watch found nothing.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use greenlight::core::cloud::CloudErrorKind;
use greenlight::core::decide::{DeployRequest, Launch};
use greenlight::core::fleet::{Capacity, FleetLaunch};
use greenlight::core::health::TargetState;
use greenlight::core::lock::Holder;
use greenlight::core::names::{ImageId, ReleaseName, TargetGroupArn};
use greenlight::core::plan::Plan;
use greenlight::core::router::{Forward, RouterAction, Weight};
use greenlight::core::spec::Spec;
use greenlight::core::tags;
use greenlight::engine::abort::{Aborted, abort};
use greenlight::engine::clock::Clock;
use greenlight::engine::context::Context;
use greenlight::engine::deploy::{DeployOptions, Released, deploy};
use greenlight::engine::events::{Event, Recorder};
use greenlight::engine::failure::Failure;
use greenlight::engine::promote::{Promotion, promote};
use greenlight::engine::rollback::{RolledBack, rollback};
use greenlight::engine::stop::Stop;
use greenlight::exit;
use greenlight::fake::{FakeClock, FakeCloud, FaultTiming, HealthScript, sample};

pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

pub struct World {
    pub clock: Arc<FakeClock>,
    pub cloud: FakeCloud,
    pub spec: Spec,
    pub stop: Stop,
}

/// A fixed start, so warm-until times are predictable.
pub const START: Duration = Duration::from_secs(1_795_000_000);

pub fn world() -> World {
    world_with("")
}

/// The sample world with `extra` appended to its config (e.g. a `[canary]` table).
pub fn world_with(extra: &str) -> World {
    let clock = FakeClock::new(SystemTime::UNIX_EPOCH + START);
    let (cloud, spec) = FakeCloud::sample(clock.clone());
    let spec = if extra.is_empty() {
        spec
    } else {
        // Top-level keys of `extra` go first, its tables after the sample's.
        let split = extra.find("\n[").map_or(0, |i| i + 1);
        let split = if extra.starts_with('[') { 0 } else { split };
        let (top, tables) = extra.split_at(split);
        Spec::parse(&format!("{top}\n{}\n{tables}", sample_config_text(&spec)))
            .expect("extra config")
    };
    World {
        clock,
        cloud,
        spec,
        stop: Stop::new(),
    }
}

/// The sample's config as text, so tests can add tables to it.
fn sample_config_text(spec: &Spec) -> String {
    let greenlight::core::router::RouterId::Listener(listener) = &spec.router else {
        unreachable!("the sample routes with a listener")
    };
    format!(
        "service = \"checkout\"\nregion = \"us-east-1\"\n[router]\nlistener_arn = \"{listener}\"\n\
         target_groups = [\"{}\", \"{}\"]\n[health]\ntimeout = \"5m\"\ninterval = \"5s\"\n\
         [retention]\nkeep_warm = \"1h\"\n",
        sample::TG_A,
        sample::TG_B
    )
}

pub fn request(release: &str, image: &str) -> DeployRequest {
    DeployRequest {
        release: ReleaseName::parse(release).unwrap(),
        launch: Launch::Image(ImageId::parse(image).unwrap()),
        plan: Plan::blue_green(None),
    }
}

pub fn tg(arn: &str) -> TargetGroupArn {
    TargetGroupArn::parse(arn).unwrap()
}

/// Each command runs as a runner of its own, as separate processes would: its own lock token
/// and pid. Every earlier runner is gone (its process dead) unless a test says otherwise.
pub fn holder(name: &str) -> Holder {
    holder_on(name, "test-host")
}

/// A runner on `host`: a runner on another host is alive as far as this one can tell.
pub fn holder_on(name: &str, host: &str) -> Holder {
    static PID: AtomicU32 = AtomicU32::new(1000);
    Holder {
        who: format!("{name}@{host}"),
        host: host.into(),
        pid: PID.fetch_add(1, Ordering::Relaxed),
        run: None,
        token: name.to_owned(),
    }
}

fn dead(_: u32) -> bool {
    false
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl World {
    /// A context for one runner whose lock token is `holder.token`, on its own cloud handle so
    /// the fake checks it only changes things while it holds the lock.
    pub fn ctx<'a>(
        &'a self,
        cloud: &'a FakeCloud,
        holder: &'a Holder,
    ) -> Context<'a, FakeCloud, Arc<FakeClock>> {
        Context {
            cloud,
            clock: &self.clock,
            spec: &self.spec,
            stop: &self.stop,
            holder,
            alive: dead,
        }
    }

    pub fn deploy(&self, release: &str, image: &str) -> (Result<Released, Failure>, Vec<Event>) {
        self.deploy_with(&request(release, image), DeployOptions::default())
    }

    pub fn deploy_with(
        &self,
        request: &DeployRequest,
        options: DeployOptions,
    ) -> (Result<Released, Failure>, Vec<Event>) {
        let holder = holder(&unique("deploy"));
        let cloud = self.cloud.runner(&holder.token);
        let mut recorder = Recorder::default();
        let result = block_on(deploy(
            &self.ctx(&cloud, &holder),
            &mut recorder,
            request,
            options,
        ));
        (result, recorder.events)
    }

    pub fn rollback_to(&self, to: Option<&str>) -> Result<RolledBack, Failure> {
        let holder = holder(&unique("rollback"));
        let cloud = self.cloud.runner(&holder.token);
        block_on(rollback(
            &self.ctx(&cloud, &holder),
            &mut Recorder::default(),
            to,
        ))
    }

    /// The release a plain rollback left live.
    pub fn rollback(&self) -> Result<String, Failure> {
        self.rollback_to(None).map(|r| match r {
            RolledBack::To { release, .. } | RolledBack::Already { release, .. } => release,
            RolledBack::Aborted(other) => panic!("rollback aborted instead: {other:?}"),
        })
    }

    pub fn promote(&self, full: bool) -> Result<Promotion, Failure> {
        let holder = holder(&unique("promote"));
        let cloud = self.cloud.runner(&holder.token);
        block_on(promote(
            &self.ctx(&cloud, &holder),
            &mut Recorder::default(),
            full,
        ))
    }

    pub fn abort(&self) -> Result<Aborted, Failure> {
        let holder = holder(&unique("abort"));
        let cloud = self.cloud.runner(&holder.token);
        block_on(abort(&self.ctx(&cloud, &holder), &mut Recorder::default()))
    }

    /// The target group with all the traffic.
    pub fn live_target_group(&self) -> TargetGroupArn {
        let forwards = self.cloud.forwards(&self.spec.router);
        let taking: Vec<&Forward> = forwards.iter().filter(|f| f.weight.get() > 0).collect();
        assert_eq!(taking.len(), 1, "traffic split: {forwards:?}");
        taking[0].target_group.clone()
    }

    /// Slot b's share of the traffic, in percent of the weights.
    pub fn share_of_b(&self) -> u32 {
        let forwards = self.cloud.forwards(&self.spec.router);
        let total: u32 = forwards.iter().map(|f| u32::from(f.weight.get())).sum();
        let b: u32 = forwards
            .iter()
            .filter(|f| f.target_group == tg(sample::TG_B))
            .map(|f| u32::from(f.weight.get()))
            .sum();
        b * 100 / total.max(1)
    }

    pub fn tag(&self, fleet: &str, key: &str) -> Option<String> {
        self.cloud.summary(fleet)?.tags.get(key).cloned()
    }

    /// Every call that changes the service (not reads, not the lock's own calls).
    pub fn mutations(&self) -> Vec<String> {
        const NOT_CHANGES: [&str; 19] = [
            "listener_rules",
            "load_balancer_dns",
            "alarms",
            "target_group_metrics",
            "router",
            "target_group",
            "target_groups",
            "fleets",
            "fleet_config",
            "fleet_summary",
            "target_health",
            "image_exists",
            "launch_template_version",
            "find_launch_template_version",
            "create_lock",
            "read_lock",
            "tag_lock",
            "delete_lock",
            "",
        ];
        self.cloud
            .calls()
            .into_iter()
            .filter(|c| !NOT_CHANGES.contains(&c.as_str()))
            .collect()
    }

    /// No router call ever gave slot b any traffic.
    pub fn assert_traffic_never_left_a(&self) {
        for forwards in self.cloud.routes() {
            for f in forwards {
                if f.target_group == tg(sample::TG_B) {
                    assert_eq!(f.weight, Weight::ZERO, "slot b got traffic");
                }
            }
        }
    }

    /// The fake's watch found nothing, and no lock is left behind.
    pub fn assert_safe(&self) {
        assert_eq!(self.cloud.violations(), Vec::<String>::new());
        assert_eq!(
            self.cloud.lock_object("greenlight-lock.checkout"),
            None,
            "a lock was left behind"
        );
    }
}

#[test]
fn happy_path_twins_blue_waits_for_health_and_flips() {
    let w = world();
    let blue_before = w.cloud.config(sample::BLUE).unwrap();
    w.cloud.script(
        "checkout-v2",
        HealthScript::healthy_after(Duration::from_secs(40)),
    );
    let (result, events) = w.deploy("v2", sample::NEXT_IMAGE);
    assert_eq!(
        result.unwrap(),
        Released {
            release: "v2".into(),
            flipped: true,
            paused_at: None,
        }
    );

    assert_eq!(w.live_target_group(), tg(sample::TG_B));
    let green = w.cloud.summary("checkout-v2").expect("green exists");
    assert_eq!(
        green.capacity,
        w.cloud.summary(sample::BLUE).unwrap().capacity
    );
    assert_eq!(green.target_groups, vec![tg(sample::TG_B)]);
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("live"));
    assert_eq!(w.tag("checkout-v2", tags::RELEASE).as_deref(), Some("v2"));
    assert_eq!(
        w.tag("checkout-v2", tags::IMAGE).as_deref(),
        Some(sample::NEXT_IMAGE)
    );

    // Blue stays warm: untouched capacity, tagged with the time it is kept until.
    let blue = w.cloud.summary(sample::BLUE).unwrap();
    assert_eq!(blue.capacity.desired, 2);
    assert_eq!(blue.instances.len(), 2);
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("warm"));
    // Blue's own scaling would shrink it now that it is idle: suspended, and recorded as ours.
    assert_eq!(
        w.cloud.config(sample::BLUE).unwrap().suspended_processes,
        ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    );
    assert_eq!(
        w.tag(sample::BLUE, tags::SUSPENDED).as_deref(),
        Some("AlarmNotification,ScheduledActions")
    );
    let warm_until = w.tag(sample::BLUE, tags::WARM_UNTIL).unwrap();
    let warm_until = humantime::parse_rfc3339(&warm_until).unwrap();
    assert!(
        warm_until > w.clock.now() + Duration::from_secs(3500),
        "{warm_until:?}"
    );

    // The new launch template version carries the new image, and green launches it.
    let versions = w.cloud.template_versions(sample::TEMPLATE);
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].image_id.as_deref(), Some(sample::NEXT_IMAGE));
    let green_config = w.cloud.config("checkout-v2").unwrap();
    assert_eq!(
        green_config.launch.template().unwrap().version,
        versions[1].number.to_string()
    );

    // Faithful twin: every copied setting matches blue's as it was when green was made.
    let blue_config = blue_before;
    assert_eq!(green_config.lifecycle_hooks, blue_config.lifecycle_hooks);
    assert_eq!(green_config.scaling_policies, blue_config.scaling_policies);
    assert_eq!(
        green_config.scheduled_actions,
        blue_config.scheduled_actions
    );
    assert_eq!(green_config.metrics, blue_config.metrics);
    assert_eq!(
        green_config.suspended_processes,
        blue_config.suspended_processes
    );
    assert_eq!(
        green_config.termination_policies,
        blue_config.termination_policies
    );
    assert_eq!(
        green_config.health_check_type,
        blue_config.health_check_type
    );
    assert_eq!(green_config.subnets, blue_config.subnets);
    assert!(
        green_config
            .tags
            .iter()
            .any(|t| t.key == "team" && t.propagate_at_launch)
    );

    // Progress was reported while waiting, and the flip came after green was healthy.
    let health: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Health { .. }))
        .collect();
    assert!(health.len() >= 2, "{events:?}");
    let flip = events
        .iter()
        .position(|e| matches!(e, Event::Step { action } if action.name() == "flip"))
        .unwrap();
    let last_health = events
        .iter()
        .rposition(|e| matches!(e, Event::Health { .. }))
        .unwrap();
    assert!(last_health < flip);
    // Two router calls: slot b joins at weight 0 (so AWS health-checks green), then the flip.
    assert_eq!(w.cloud.count("route"), 2);
    let join = events
        .iter()
        .position(|e| matches!(e, Event::Step { action } if action.name() == "join_router"))
        .unwrap();
    let create = events
        .iter()
        .position(|e| matches!(e, Event::Step { action } if action.name() == "create_fleet"))
        .unwrap();
    assert!(join < create, "{events:?}");
    w.assert_safe();
}

#[test]
fn health_timeout_fails_the_release_and_traffic_never_moves() {
    let w = world();
    w.cloud.script(
        "checkout-v2",
        HealthScript::unhealthy(
            "Target.ResponseCodeMismatch",
            "Health checks failed with these codes: [502]",
        ),
    );
    let (result, events) = w.deploy("v2", sample::NEXT_IMAGE);
    let failure = result.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED);
    let message = failure.to_string();
    assert!(message.contains("Target.ResponseCodeMismatch"), "{message}");
    assert!(message.contains("[502]"), "{message}");

    w.assert_traffic_never_left_a();
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    let green = w.cloud.summary("checkout-v2").unwrap();
    assert_eq!(green.capacity, Capacity::ZERO);
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("failed"));
    assert!(
        w.tag("checkout-v2", tags::FAILURE)
            .unwrap()
            .contains("ResponseCodeMismatch")
    );
    assert_eq!(w.cloud.summary(sample::BLUE).unwrap().capacity.desired, 2);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ReleaseFailed { .. }))
    );
    // The timeout is the configured one, measured on the deploy's clock.
    let elapsed = w
        .clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH + START)
        .unwrap();
    assert!(elapsed >= w.spec.health.timeout, "{elapsed:?}");
    assert!(
        elapsed < w.spec.health.timeout + Duration::from_secs(60),
        "{elapsed:?}"
    );
    w.assert_safe();
}

#[test]
fn partially_healthy_green_is_never_routed_to() {
    let w = world();
    w.cloud.scripts(
        "checkout-v2",
        vec![
            HealthScript::healthy_after(Duration::from_secs(10)),
            HealthScript::unhealthy("Target.Timeout", "Request timed out"),
        ],
    );
    let (result, _) = w.deploy("v2", sample::NEXT_IMAGE);
    let failure = result.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED);
    assert!(failure.to_string().contains("1/2 healthy"), "{failure}");
    assert!(failure.to_string().contains("Target.Timeout"), "{failure}");
    w.assert_traffic_never_left_a();
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    w.assert_safe();
}

#[test]
fn failed_release_can_be_retried_under_the_same_name() {
    let w = world();
    w.cloud.script(
        "checkout-v2",
        HealthScript::unhealthy("Target.Timeout", "Request timed out"),
    );
    assert!(w.deploy("v2", sample::NEXT_IMAGE).0.is_err());
    w.cloud.script(
        "checkout-v2",
        HealthScript::healthy_after(Duration::from_secs(5)),
    );
    let (result, events) = w.deploy("v2", sample::NEXT_IMAGE);
    assert!(result.unwrap().flipped);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Step { action } if action.name() == "revive_fleet"))
    );
    assert_eq!(w.tag("checkout-v2", tags::FAILURE), None);
    assert_eq!(w.cloud.template_versions(sample::TEMPLATE).len(), 2);
    w.assert_safe();
}

/// Every mutating call of a deploy, failed once before or after it lands; re-running the
/// same deploy must converge to the same end state as an uninterrupted one.
#[test]
fn crash_at_every_step_then_rerun_converges() {
    let reference = world();
    reference.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    let steps = reference.mutations();
    assert!(steps.len() >= 8, "{steps:?}");

    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut crashes = 0;
    for step in &steps {
        let nth = {
            let n = seen.entry(step.clone()).or_default();
            *n += 1;
            *n
        };
        for timing in [FaultTiming::Before, FaultTiming::After] {
            let w = world();
            // `Other`: a failure the run does not ride out, standing for the process dying.
            w.cloud.fail(step, nth, timing, CloudErrorKind::Other);
            let (first, _) = w.deploy("v2", sample::NEXT_IMAGE);
            let Err(failure) = first else {
                panic!("{step}#{nth} {timing:?}: the injected fault was not reported")
            };
            crashes += 1;
            assert!(
                matches!(exit::code(&failure), exit::NEEDS_ATTENTION | exit::INTERNAL),
                "{step}#{nth} {timing:?}: {failure}"
            );
            let (second, _) = w.deploy("v2", sample::NEXT_IMAGE);
            second.unwrap_or_else(|e| panic!("{step}#{nth} {timing:?}: re-run failed: {e}"));

            assert_eq!(
                w.live_target_group(),
                tg(sample::TG_B),
                "{step}#{nth} {timing:?}"
            );
            assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("live"));
            assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("warm"));
            assert_eq!(w.cloud.summary(sample::BLUE).unwrap().capacity.desired, 2);
            let green = w.cloud.summary("checkout-v2").unwrap();
            assert_eq!(green.capacity.desired, 2, "{step}#{nth} {timing:?}");
            assert_eq!(
                w.cloud.config("checkout-v2").unwrap().scaling_policies,
                w.cloud.config(sample::BLUE).unwrap().scaling_policies,
                "{step}#{nth} {timing:?}"
            );
            assert_eq!(
                w.cloud.template_versions(sample::TEMPLATE).len(),
                2,
                "{step}#{nth} {timing:?}: one launch template version per release"
            );
            w.assert_safe();
        }
    }
    assert_eq!(crashes, steps.len() * 2);
}

#[test]
fn a_rollback_reads_the_state_once_before_and_once_under_the_lock_and_nothing_after_its_flip() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    let before = w.cloud.calls().len();
    assert_eq!(w.rollback().unwrap(), sample::BLUE);
    let calls = w.cloud.calls()[before..].to_vec();
    // One observation before the lock, with the resource checks; one under it, whose router
    // read the route is checked against.
    let look = ["router", "fleets", "target_health", "target_health"];
    let mut expected = vec!["target_groups"];
    expected.extend(look);
    expected.push("create_lock");
    expected.extend(look);
    expected.push("route");
    // Then the old fleet warm and the new one live, from this run's own writes: no reads.
    expected.extend(["tag_fleet", "suspend_processes", "tag_fleet"]);
    expected.extend(["resume_processes", "untag_fleet", "tag_fleet"]);
    expected.push("delete_lock");
    assert_eq!(calls, expected);
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("live"));
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("warm"));
    w.assert_safe();
}

#[test]
fn rollback_when_blue_is_warm_is_one_router_call() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    let routes_before = w.cloud.count("route");
    let mutations_before = w.mutations().len();

    assert_eq!(w.rollback().unwrap(), sample::BLUE);
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert_eq!(w.cloud.count("route"), routes_before + 1);
    // The flip is the rollback's first change; tags follow it.
    assert_eq!(w.mutations()[mutations_before], "route");
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("live"));
    assert_eq!(w.tag(sample::BLUE, tags::WARM_UNTIL), None);
    // Live again: scaling resumed, the owner's own suspension kept.
    assert_eq!(
        w.cloud.config(sample::BLUE).unwrap().suspended_processes,
        ["AZRebalance"]
    );
    assert_eq!(w.tag(sample::BLUE, tags::SUSPENDED), None);
    assert_eq!(
        w.cloud.config("checkout-v2").unwrap().suspended_processes,
        ["AZRebalance", "AlarmNotification", "ScheduledActions"]
    );
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("warm"));
    assert_eq!(w.cloud.summary("checkout-v2").unwrap().capacity.desired, 2);
    w.assert_safe();
}

#[test]
fn rollback_refused_when_blue_is_gone() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    w.cloud.remove_fleet(sample::BLUE);
    let failure = w.rollback().unwrap_err();
    assert_eq!(exit::code(&failure), exit::NEEDS_ATTENTION);
    assert!(
        failure.to_string().contains("nothing to roll back to"),
        "{failure}"
    );
    assert_eq!(w.live_target_group(), tg(sample::TG_B));
    w.assert_safe();
}

#[test]
fn rollback_refused_when_blue_is_unhealthy() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    w.cloud.break_fleet(sample::BLUE);
    let routes = w.cloud.count("route");
    let failure = w.rollback().unwrap_err();
    assert_eq!(exit::code(&failure), exit::NEEDS_ATTENTION);
    assert!(failure.to_string().contains("0/2 healthy"), "{failure}");
    assert!(failure.to_string().contains("Target.Timeout"), "{failure}");
    assert_eq!(w.cloud.count("route"), routes);
    w.assert_safe();
}

#[test]
fn second_deploy_uses_the_other_slot_and_retires_the_oldest() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    let (result, events) = w.deploy("v3", sample::THIRD_IMAGE);
    assert!(result.unwrap().flipped);
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Step { action } if action.name() == "retire_fleet"))
    );
    let blue = w.cloud.summary(sample::BLUE);
    assert!(blue.is_none_or(|b| b.deleting), "blue retired");
    assert_eq!(w.tag("checkout-v3", tags::PHASE).as_deref(), Some("live"));
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("warm"));
    assert_eq!(
        w.cloud.config("checkout-v3").unwrap().target_groups,
        vec![tg(sample::TG_A)]
    );
    // v3 is a twin of v2, which was a twin of blue: the warm suspension is not copied.
    assert_eq!(
        w.cloud.config("checkout-v3").unwrap().suspended_processes,
        ["AZRebalance"]
    );
    assert_eq!(
        w.cloud.config("checkout-v3").unwrap().scaling_policies,
        w.cloud.config("checkout-v2").unwrap().scaling_policies
    );
    // And rollback now returns to v2.
    assert_eq!(w.rollback().unwrap(), "v2");
    w.assert_safe();
}

#[test]
fn deploying_the_live_release_again_changes_nothing() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    let mutations = w.mutations().len();
    let (result, _) = w.deploy("v2", sample::NEXT_IMAGE);
    assert!(!result.unwrap().flipped);
    assert_eq!(w.mutations().len(), mutations);
}

#[test]
fn a_deploy_in_progress_blocks_another_release() {
    let w = world();
    // The first deploy stops right before its flip (the first router call is the join).
    w.cloud
        .fail("route", 2, FaultTiming::Before, CloudErrorKind::Other);
    assert!(w.deploy("v2", sample::NEXT_IMAGE).0.is_err());
    let mutations = w.mutations().len();

    let failure = w.deploy("v3", sample::THIRD_IMAGE).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::BUSY);
    assert!(
        failure.to_string().contains("release v2 is in progress"),
        "{failure}"
    );
    assert_eq!(
        w.mutations().len(),
        mutations,
        "a busy refusal changes nothing"
    );

    // Re-running the interrupted deploy finishes it.
    assert!(w.deploy("v2", sample::NEXT_IMAGE).0.unwrap().flipped);
    w.assert_safe();
}

#[test]
fn bad_input_changes_nothing() {
    let cases: Vec<(DeployRequest, &str)> = vec![
        (
            request("v2", "ami-99999999"),
            "image ami-99999999 was not found",
        ),
        (
            DeployRequest {
                release: ReleaseName::parse("v2").unwrap(),
                launch: Launch::Version(42),
                plan: Plan::blue_green(None),
            },
            "has no version 42",
        ),
    ];
    for (request, expected) in cases {
        let w = world();
        let failure = w
            .deploy_with(&request, DeployOptions::default())
            .0
            .unwrap_err();
        assert_eq!(exit::code(&failure), exit::BAD_INPUT, "{failure}");
        assert!(failure.to_string().contains(expected), "{failure}");
        assert_eq!(w.mutations(), Vec::<String>::new());
    }
}

#[test]
fn same_release_name_with_another_image_is_refused() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    let mutations = w.mutations().len();
    let failure = w.deploy("v2", sample::THIRD_IMAGE).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::BAD_INPUT);
    assert!(
        failure.to_string().contains("new --release name"),
        "{failure}"
    );
    assert_eq!(w.mutations().len(), mutations);
}

#[test]
fn split_traffic_needs_attention_and_changes_nothing() {
    let w = world();
    w.cloud.set_router(
        &w.spec.router,
        RouterAction::Forward {
            forwards: vec![
                Forward {
                    target_group: tg(sample::TG_A),
                    weight: Weight::new(90).unwrap(),
                },
                Forward {
                    target_group: tg(sample::TG_B),
                    weight: Weight::new(10).unwrap(),
                },
            ],
        },
    );
    let failure = w.deploy("v2", sample::NEXT_IMAGE).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::NEEDS_ATTENTION);
    assert!(failure.to_string().contains("splits traffic"), "{failure}");
    assert_eq!(w.mutations(), Vec::<String>::new());
}

#[test]
fn existing_launch_template_version_is_released_as_is() {
    let w = world();
    // A version the pipeline made itself, e.g. with new user data.
    block_on(async {
        use greenlight::core::cloud::Cloud;
        w.cloud
            .create_launch_template_version(
                sample::TEMPLATE,
                1,
                &ImageId::parse(sample::NEXT_IMAGE).unwrap(),
                "built by CI",
                "ci-token",
            )
            .await
            .unwrap()
    });
    w.deploy_with(
        &DeployRequest {
            release: ReleaseName::parse("v2").unwrap(),
            launch: Launch::Version(2),
            plan: Plan::blue_green(None),
        },
        DeployOptions::default(),
    )
    .0
    .unwrap();
    assert_eq!(
        w.cloud.template_versions(sample::TEMPLATE).len(),
        2,
        "no new version"
    );
    let FleetLaunch::Template(template) = w.cloud.config("checkout-v2").unwrap().launch else {
        panic!("template launch")
    };
    assert_eq!(template.version, "2");
    assert_eq!(
        w.tag("checkout-v2", tags::LAUNCH_TEMPLATE_VERSION)
            .as_deref(),
        Some("2")
    );
}

#[test]
fn green_instances_not_yet_in_service_are_waited_for() {
    let w = world();
    w.cloud.script(
        "checkout-v2",
        HealthScript {
            pending_for: Duration::from_secs(90),
            initial_for: Duration::from_secs(10),
            then: TargetState::Healthy,
            reason: None,
            description: None,
        },
    );
    let (result, events) = w.deploy("v2", sample::NEXT_IMAGE);
    result.unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Health { summary, .. } if summary.contains("not yet in service")
    )));
    w.assert_safe();
}

#[test]
fn a_foreign_group_with_green_name_is_not_taken_over() {
    let w = world();
    let mut stray = greenlight::fake::sample_config(&tg(sample::TG_A));
    stray.target_groups.clear();
    w.cloud.add_fleet(
        &greenlight::core::names::FleetName::new("checkout-v2"),
        stray,
        Duration::ZERO,
    );
    let failure = w.deploy("v2", sample::NEXT_IMAGE).0.unwrap_err();
    // Found before any change: AWS would refuse the name only after the router was changed.
    assert_eq!(exit::code(&failure), exit::BAD_INPUT);
    assert!(failure.to_string().contains("already exists"), "{failure}");
    assert_eq!(w.mutations(), Vec::<String>::new());
    assert!(
        w.cloud
            .summary("checkout-v2")
            .unwrap()
            .target_groups
            .is_empty()
    );
    w.assert_safe();
}

#[test]
fn a_target_group_of_another_load_balancer_is_bad_input() {
    let w = world();
    let other = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/other/1234";
    w.cloud
        .set_load_balancers(sample::TG_B, vec![other.to_owned()]);
    let failure = w.deploy("v2", sample::NEXT_IMAGE).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::BAD_INPUT);
    assert!(
        failure.to_string().contains("used by load balancer")
            && failure.to_string().contains(other),
        "{failure}"
    );
    assert_eq!(w.mutations(), Vec::<String>::new());
}

#[test]
fn an_interrupted_rollback_is_finished_not_repeated() {
    let w = world();
    w.deploy("v2", sample::NEXT_IMAGE).0.unwrap();
    // The flip lands; the connection drops before the tags are written.
    w.cloud
        .fail("tag_fleet", 1, FaultTiming::Before, CloudErrorKind::Other);
    let failure = w.rollback().unwrap_err();
    assert_eq!(exit::code(&failure), exit::NEEDS_ATTENTION, "{failure}");
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    let routes = w.cloud.count("route");

    // Running rollback again finishes it: no flip back to v2.
    assert_eq!(w.rollback().unwrap(), sample::BLUE);
    assert_eq!(w.cloud.count("route"), routes);
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("live"));
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("warm"));

    // A third one still changes nothing: rollback never toggles.
    assert!(matches!(
        w.rollback_to(None).unwrap(),
        RolledBack::Already { .. }
    ));
    assert_eq!(w.cloud.count("route"), routes);
    // Going back to v2 takes saying so.
    assert!(matches!(
        w.rollback_to(Some("v2")).unwrap(),
        RolledBack::To { flipped: true, .. }
    ));
    assert_eq!(w.live_target_group(), tg(sample::TG_B));
    w.assert_safe();
}

#[test]
fn rollback_right_after_an_interrupted_deploy_leaves_a_clean_state() {
    let w = world();
    // The deploy flips to v2, then stops before blue is marked warm.
    w.cloud.fail(
        "suspend_processes",
        1,
        FaultTiming::Before,
        CloudErrorKind::Other,
    );
    assert!(w.deploy("v2", sample::NEXT_IMAGE).0.is_err());
    assert_eq!(w.live_target_group(), tg(sample::TG_B));

    assert_eq!(w.rollback().unwrap(), sample::BLUE);
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("live"));
    // v2 took traffic, so it is warm now, not a deploy still in progress.
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("warm"));

    // So the next release is not blocked by it.
    assert!(w.deploy("v3", sample::THIRD_IMAGE).0.unwrap().flipped);
    assert_eq!(w.live_target_group(), tg(sample::TG_B));
    w.assert_safe();
}
