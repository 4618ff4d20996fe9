//! Canary releases, promote, abort, the lock, signals, and faults at every call, against the
//! in-memory cloud. Every scenario also checks the fake's safety watch (its own arithmetic, not
//! the core's) found nothing and that no lock was left behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use greenlight::core::cloud::CloudErrorKind;
use greenlight::core::decide::DeployRequest;
use greenlight::core::lock;
use greenlight::core::plan::Strategy;
use greenlight::core::tags;
use greenlight::engine::abort::{Aborted, abort};
use greenlight::engine::clock::Clock;
use greenlight::engine::deploy::{DeployOptions, Released, deploy};
use greenlight::engine::events::{Event, Recorder};
use greenlight::engine::failure::Failure;
use greenlight::engine::lease::force_unlock;
use greenlight::engine::promote::{Promotion, promote};
use greenlight::engine::rollback::RolledBack;
use greenlight::engine::stop::Signal;
use greenlight::exit;
use greenlight::fake::{FaultTiming, HealthScript, sample};

use super::scenarios::{World, block_on, holder, holder_on, request, tg, world, world_with};

const LOCK: &str = "greenlight-lock.checkout";

/// `[canary]` with these steps.
fn canary(steps: &str) -> String {
    format!("strategy = \"canary\"\n[canary]\nsteps = [{steps}]\n")
}

fn canary_request(w: &World, release: &str, image: &str) -> DeployRequest {
    DeployRequest {
        plan: w.spec.plan(Strategy::Canary).expect("a canary plan"),
        ..request(release, image)
    }
}

fn no_wait() -> DeployOptions {
    DeployOptions { no_wait: true }
}

/// Every router write's weights, in order, as slot b's share in percent; and each sums to 100.
fn shares_of_b(w: &World) -> Vec<u16> {
    w.cloud
        .routes()
        .iter()
        .map(|forwards| {
            let total: u16 = forwards.iter().map(|f| f.weight.get()).sum();
            assert_eq!(total, 100, "weights sum to 100: {forwards:?}");
            forwards
                .iter()
                .filter(|f| f.target_group == tg(sample::TG_B))
                .map(|f| f.weight.get())
                .sum()
        })
        .collect()
}

/// When each router write happened (a hook on the fake records the clock).
fn route_times(w: &World) -> Arc<Mutex<Vec<SystemTime>>> {
    let times = Arc::new(Mutex::new(Vec::new()));
    let (clock, seen) = (w.clock.clone(), times.clone());
    w.cloud.on_call(move |operation| {
        if operation == "route" {
            seen.lock().unwrap().push(clock.now());
        }
    });
    times
}

#[test]
fn a_canary_moves_through_its_timed_steps_and_ends_live() {
    let w = world_with(&canary(
        "{ weight = 10, pause = \"5m\" }, { weight = 50, pause = \"10m\" }, { weight = 100 }",
    ));
    let times = route_times(&w);
    let (result, events) = w.deploy_with(
        &canary_request(&w, "v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    );
    assert!(result.unwrap().flipped);
    // Join at 0, then 10, 50, 100: green's share only grows, one step per write.
    assert_eq!(shares_of_b(&w), [0, 10, 50, 100]);
    let times = times.lock().unwrap().clone();
    assert!(times[2] >= times[1] + Duration::from_secs(300), "{times:?}");
    assert!(times[3] >= times[2] + Duration::from_secs(600), "{times:?}");
    // Not long after either: the pause ends the wait, not a backoff that overshoots.
    assert!(
        times[3] <= times[2] + Duration::from_secs(600 + 30),
        "{times:?}"
    );
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("live"));
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("warm"));
    assert_eq!(
        w.tag("checkout-v2", tags::STEP),
        None,
        "progress tags cleared"
    );
    let pauses: Vec<(u32, u8)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Pause { step, weight, .. } => Some((step.0, weight.get())),
            _ => None,
        })
        .collect();
    assert_eq!(pauses, [(1, 10), (2, 50)]);
    assert!(matches!(
        &events[0],
        Event::DeployStarted { strategy: Strategy::Canary, plan, .. } if plan == "canary 10@5m,50@10m,100"
    ));
    w.assert_safe();
}

#[test]
fn a_manual_gate_waits_and_promote_drives_when_no_deploy_runs() {
    let w = world_with(&canary(
        "{ weight = 0, pause = \"manual\" }, { weight = 25, pause = \"manual\" }, { weight = 100 }",
    ));
    let (result, events) = w.deploy_with(&canary_request(&w, "v2", sample::NEXT_IMAGE), no_wait());
    let released = result.unwrap();
    assert_eq!(
        released.paused_at.map(|(s, p)| (s.0, p.get())),
        Some((1, 0))
    );
    assert!(events.iter().any(|e| matches!(e, Event::Paused { .. })));
    assert_eq!(w.share_of_b(), 0);
    assert_eq!(
        w.tag("checkout-v2", tags::PHASE).as_deref(),
        Some("releasing")
    );
    assert_eq!(w.tag("checkout-v2", tags::STEP).as_deref(), Some("1"));

    // Nobody waits: promote takes the lock and drives to the next gate.
    let promoted = w.promote(false).unwrap();
    assert!(
        matches!(&promoted, Promotion::Driven(Released { paused_at: Some((step, _)), .. }) if step.0 == 2),
        "{promoted:?}"
    );
    assert_eq!(w.share_of_b(), 25);
    // A promote of step 1 does not end step 2's pause.
    assert_eq!(w.tag("checkout-v2", tags::STEP).as_deref(), Some("2"));

    assert!(matches!(
        w.promote(false).unwrap(),
        Promotion::Driven(Released {
            paused_at: None,
            ..
        })
    ));
    assert_eq!(w.live_target_group(), tg(sample::TG_B));
    assert_eq!(shares_of_b(&w), [0, 25, 100]);
    w.assert_safe();
}

#[test]
fn promote_full_skips_every_remaining_step() {
    let w = world_with(&canary(
        "{ weight = 5, pause = \"manual\" }, { weight = 25, pause = \"1h\" }, { weight = 100 }",
    ));
    w.deploy_with(&canary_request(&w, "v2", sample::NEXT_IMAGE), no_wait())
        .0
        .unwrap();
    assert_eq!(w.share_of_b(), 5);
    assert!(matches!(
        w.promote(true).unwrap(),
        Promotion::Driven(Released {
            paused_at: None,
            ..
        })
    ));
    assert_eq!(shares_of_b(&w), [0, 5, 100]);
    w.assert_safe();
}

#[test]
fn promote_with_nothing_in_progress_is_refused_and_changes_nothing() {
    let w = world();
    let failure = w.promote(false).unwrap_err();
    assert_eq!(exit::code(&failure), exit::NEEDS_ATTENTION, "{failure}");
    assert!(
        failure.to_string().contains("nothing to promote"),
        "{failure}"
    );
    assert_eq!(w.mutations(), Vec::<String>::new());
    w.assert_safe();
}

/// A deploy waiting at a gate, and a second runner acting meanwhile: both run on one runtime and
/// take turns whenever one waits, as two processes would.
fn while_deploy_waits<T>(
    w: &World,
    release_request: &DeployRequest,
    at_step: &'static str,
    other: impl AsyncFnOnce() -> T,
) -> (Result<greenlight::engine::deploy::Released, Failure>, T) {
    // On another machine: the other runner cannot tell it is gone, so it must wait for it.
    let deployer = holder_on("deployer", "build-1");
    let cloud = w.cloud.runner(&deployer.token);
    let ctx = w.ctx(&cloud, &deployer);
    let mut recorder = Recorder::default();
    block_on(async {
        let deploying = deploy(
            &ctx,
            &mut recorder,
            release_request,
            DeployOptions::default(),
        );
        let meanwhile = async {
            while w.tag("checkout-v2", tags::STEP).as_deref() != Some(at_step) {
                tokio::task::yield_now().await;
            }
            other().await
        };
        tokio::join!(deploying, meanwhile)
    })
}

#[test]
fn promote_from_another_runner_lets_the_waiting_deploy_carry_on() {
    let w = world_with(&canary(
        "{ weight = 20, pause = \"manual\" }, { weight = 100 }",
    ));
    let request = canary_request(&w, "v2", sample::NEXT_IMAGE);
    let promoter = holder("promoter");
    let promoter_cloud = w.cloud.runner(&promoter.token);
    let (deployed, promoted) = while_deploy_waits(&w, &request, "1", async || {
        let mut recorder = Recorder::default();
        let result = promote(&w.ctx(&promoter_cloud, &promoter), &mut recorder, false).await;
        (result, recorder.events)
    });
    assert!(deployed.unwrap().flipped);
    let (promoted, events) = promoted;
    assert!(
        matches!(&promoted, Ok(Promotion::HandedOver { holder, .. }) if holder.contains("deployer")),
        "{promoted:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Promoted { driver, .. } if driver.contains("deployer")))
    );
    assert_eq!(w.live_target_group(), tg(sample::TG_B));
    assert_eq!(shares_of_b(&w), [0, 20, 100]);
    w.assert_safe();
}

#[test]
fn abort_from_another_runner_stops_the_running_canary() {
    let w = world_with(&canary(
        "{ weight = 30, pause = \"manual\" }, { weight = 100 }",
    ));
    let request = canary_request(&w, "v2", sample::NEXT_IMAGE);
    let aborter = holder("aborter");
    let aborter_cloud = w.cloud.runner(&aborter.token);
    let (deployed, aborted) = while_deploy_waits(&w, &request, "1", async || {
        abort(&w.ctx(&aborter_cloud, &aborter), &mut Recorder::default()).await
    });
    let failure = deployed.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    assert!(failure.to_string().contains("aborted"), "{failure}");
    assert!(
        matches!(&aborted, Ok(Aborted::Stopped { release, .. }) if release == "v2"),
        "{aborted:?}"
    );
    // One call moved everything back.
    assert_eq!(shares_of_b(&w), [0, 30, 0]);
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("failed"));
    assert_eq!(w.cloud.summary("checkout-v2").unwrap().capacity.desired, 0);
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("live"));
    w.assert_safe();
}

#[test]
fn abort_with_no_deploy_running_routes_back_in_one_call() {
    let w = world_with(&canary(
        "{ weight = 40, pause = \"manual\" }, { weight = 100 }",
    ));
    w.deploy_with(&canary_request(&w, "v2", sample::NEXT_IMAGE), no_wait())
        .0
        .unwrap();
    let routes = w.cloud.count("route");
    let aborted = w.abort().unwrap();
    assert!(matches!(aborted, Aborted::Stopped { .. }), "{aborted:?}");
    assert_eq!(w.cloud.count("route"), routes + 1);
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert!(
        w.tag("checkout-v2", tags::FAILURE)
            .unwrap()
            .contains("aborted by")
    );
    // Nothing left to abort: says so, changes nothing.
    let before = w.mutations().len();
    assert!(matches!(
        w.abort().unwrap(),
        Aborted::NothingInProgress { .. }
    ));
    assert_eq!(w.mutations().len(), before);
    // And the next release is not blocked.
    assert!(w.deploy("v3", sample::THIRD_IMAGE).0.unwrap().flipped);
    w.assert_safe();
}

#[test]
fn rollback_during_a_canary_is_an_abort() {
    let w = world_with(&canary(
        "{ weight = 10, pause = \"manual\" }, { weight = 100 }",
    ));
    w.deploy_with(&canary_request(&w, "v2", sample::NEXT_IMAGE), no_wait())
        .0
        .unwrap();
    let rolled = w.rollback_to(None).unwrap();
    assert!(
        matches!(rolled, RolledBack::Aborted(Aborted::Stopped { .. })),
        "{rolled:?}"
    );
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("failed"));
    w.assert_safe();
}

/// An abort from every point a deploy can stop at (a crash before or after each of its
/// changes): traffic ends all on blue, the new release failed and scaled to zero.
#[test]
fn abort_from_every_stage_leaves_blue_live() {
    let plan = canary("{ weight = 25, pause = \"5m\" }, { weight = 100 }");
    let reference = world_with(&plan);
    reference
        .deploy_with(
            &canary_request(&reference, "v2", sample::NEXT_IMAGE),
            DeployOptions::default(),
        )
        .0
        .unwrap();
    let steps = reference.mutations();
    let mut positions = 0;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for step in &steps {
        let nth = {
            let n = seen.entry(step.clone()).or_default();
            *n += 1;
            *n
        };
        let w = world_with(&plan);
        w.cloud
            .fail(step, nth, FaultTiming::Before, CloudErrorKind::Other);
        if w.deploy_with(
            &canary_request(&w, "v2", sample::NEXT_IMAGE),
            DeployOptions::default(),
        )
        .0
        .is_ok()
        {
            continue;
        }
        positions += 1;
        match w.abort() {
            Ok(Aborted::Stopped { .. }) => {}
            Ok(Aborted::NothingInProgress { .. }) if w.live_target_group() == tg(sample::TG_B) => {
                // The last step had landed before the crash: the release was promoted, and
                // abort finished its tags instead (rollback is the way back from there).
                assert_eq!(
                    w.tag("checkout-v2", tags::PHASE).as_deref(),
                    Some("live"),
                    "{step}#{nth}"
                );
                w.assert_safe();
                continue;
            }
            Ok(Aborted::NothingInProgress { .. }) => {}
            Err(e) => panic!("{step}#{nth}: abort failed: {e}"),
        }
        assert_eq!(w.live_target_group(), tg(sample::TG_A), "{step}#{nth}");
        if let Some(green) = w.cloud.summary("checkout-v2") {
            assert_eq!(green.capacity.desired, 0, "{step}#{nth}");
            assert_eq!(
                green.tags.get(tags::PHASE).map(String::as_str),
                Some("failed"),
                "{step}#{nth}"
            );
        }
        w.assert_safe();
    }
    assert!(positions >= 8, "{positions}");
    println!("abort after a crash at {positions} positions");
}

#[test]
fn a_crashed_canary_resumes_at_its_step_with_its_pause_clock() {
    let w = world_with(&canary(
        "{ weight = 10, pause = \"10m\" }, { weight = 100 }",
    ));
    let times = route_times(&w);
    // The flip (third router write) fails as if the process died there.
    w.cloud
        .fail("route", 3, FaultTiming::Before, CloudErrorKind::Other);
    let request = canary_request(&w, "v2", sample::NEXT_IMAGE);
    assert!(w.deploy_with(&request, DeployOptions::default()).0.is_err());
    let step_at = humantime::parse_rfc3339(&w.tag("checkout-v2", tags::STEP_AT).unwrap()).unwrap();
    assert_eq!(w.tag("checkout-v2", tags::STEP).as_deref(), Some("1"));
    // The crash came at the end of the pause; the re-run starts two minutes later.
    w.clock.advance(Duration::from_secs(120));
    let rerun = w.clock.now();
    assert!(
        w.deploy_with(&request, DeployOptions::default())
            .0
            .unwrap()
            .flipped
    );
    let times = times.lock().unwrap().clone();
    let flip = *times.last().unwrap();
    // The pause counted from the step, not from the re-run: no second ten minutes.
    assert!(flip >= step_at + Duration::from_secs(600));
    assert!(
        flip < rerun + Duration::from_secs(60),
        "{flip:?} vs {rerun:?}"
    );
    // The flip failed before it landed; the re-run made it once.
    assert_eq!(shares_of_b(&w), [0, 10, 100]);
    w.assert_safe();
}

#[test]
fn green_follows_the_live_fleet_when_it_grows_during_a_canary() {
    let w = world_with(&canary(
        "{ weight = 50, pause = \"manual\" }, { weight = 100 }",
    ));
    w.deploy_with(&canary_request(&w, "v2", sample::NEXT_IMAGE), no_wait())
        .0
        .unwrap();
    assert_eq!(w.cloud.summary("checkout-v2").unwrap().capacity.desired, 2);
    // Blue's own scaling takes it to 4 while it shares the traffic.
    w.cloud.scale(sample::BLUE, 4);
    w.clock.advance(Duration::from_secs(120));
    assert!(matches!(
        w.promote(false).unwrap(),
        Promotion::Driven(Released {
            paused_at: None,
            ..
        })
    ));
    assert_eq!(w.cloud.summary("checkout-v2").unwrap().capacity.desired, 4);
    assert!(
        w.cloud.calls().iter().any(|c| c == "set_capacity"),
        "green was scaled"
    );
    w.assert_safe();
}

#[test]
fn blue_green_with_a_gate_before_the_flip() {
    let w = world_with("[bluegreen]\npause_before_flip = \"manual\"\n");
    let released = w
        .deploy_with(
            &DeployRequest {
                plan: w.spec.plan(Strategy::BlueGreen).unwrap(),
                ..request("v2", sample::NEXT_IMAGE)
            },
            no_wait(),
        )
        .0
        .unwrap();
    assert_eq!(
        released.paused_at.map(|(s, p)| (s.0, p.get())),
        Some((1, 0))
    );
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert!(w.cloud.summary("checkout-v2").is_some());
    assert!(matches!(
        w.promote(false).unwrap(),
        Promotion::Driven(Released {
            paused_at: None,
            ..
        })
    ));
    assert_eq!(w.live_target_group(), tg(sample::TG_B));
    w.assert_safe();
}

// ---------------------------------------------------------------------------------------------
// The lock

fn lock_tags(
    who: &str,
    host: &str,
    pid: u32,
    expires_in: i64,
    now: SystemTime,
) -> BTreeMap<String, String> {
    let expires = if expires_in >= 0 {
        now + Duration::from_secs(expires_in as u64)
    } else {
        now - Duration::from_secs((-expires_in) as u64)
    };
    [
        (lock::SERVICE, "checkout".to_owned()),
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
fn a_second_runner_is_refused_while_the_lock_is_held() {
    let w = world();
    let now = w.clock.now();
    w.cloud
        .put_lock(LOCK, lock_tags("ci@build-9", "build-9", 4242, 3600, now));
    let failure = w.deploy("v2", sample::NEXT_IMAGE).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::BUSY, "{failure}");
    let message = failure.to_string();
    assert!(message.contains("ci@build-9 (pid 4242)"), "{message}");
    assert!(message.contains("greenlight deploy"), "{message}");
    assert!(message.contains("unlock --force"), "{message}");
    assert_eq!(w.mutations(), Vec::<String>::new());
    // Still theirs.
    assert!(w.cloud.lock_object(LOCK).is_some());
    // Rollback and abort with no release in progress are refused the same way.
    assert_eq!(exit::code(&w.rollback().unwrap_err()), exit::BUSY);
    assert_eq!(w.mutations(), Vec::<String>::new());
}

#[test]
fn an_expired_lock_or_a_dead_local_holder_is_taken_over() {
    for (host, expires_in) in [("build-9", -1), ("test-host", 3600)] {
        let w = world();
        let now = w.clock.now();
        // Another host's lock that expired, or this host's lock whose process is gone.
        let id = w
            .cloud
            .put_lock(LOCK, lock_tags("ci@x", host, 4242, expires_in, now));
        assert!(
            w.deploy("v2", sample::NEXT_IMAGE).0.unwrap().flipped,
            "{host}"
        );
        assert_eq!(
            w.cloud.lock_object(LOCK),
            None,
            "{host}: released at the end"
        );
        assert!(w.cloud.calls().iter().any(|c| c == "delete_lock"));
        let _ = id;
        w.assert_safe();
    }
}

#[test]
fn a_run_that_lost_its_lock_stops_before_its_next_change() {
    let w = world_with("[lock]\nttl = \"30s\"\n");
    w.cloud.script(
        "checkout-v2",
        HealthScript::healthy_after(Duration::from_secs(120)),
    );
    // While green becomes healthy, someone removes the lock by force and another runner takes
    // it: the deploy looks again before its next change (and while it waits) and stops.
    let cloud = w.cloud.clone_handle();
    let now = w.clock.now();
    let taken = Arc::new(Mutex::new(false));
    let flag = taken.clone();
    w.cloud.on_call(move |operation| {
        if operation != "target_health" {
            return;
        }
        let provisioning = cloud
            .summary("checkout-v2")
            .and_then(|s| s.tags.get(tags::PHASE).cloned())
            .as_deref()
            == Some("provisioning");
        let mut taken = flag.lock().unwrap();
        if provisioning && !*taken {
            *taken = true;
            if let Some((id, _)) = cloud.lock_object(LOCK) {
                cloud.remove_lock(&id);
            }
            cloud.put_lock(LOCK, lock_tags("ops@laptop", "laptop", 7, 3600, now));
        }
    });
    let (result, _) = w.deploy("v2", sample::NEXT_IMAGE);
    let failure = result.unwrap_err();
    assert!(*taken.lock().unwrap());
    assert_eq!(exit::code(&failure), exit::BUSY, "{failure}");
    assert!(failure.to_string().contains("lost the lock"), "{failure}");
    assert!(failure.to_string().contains("ops@laptop"), "{failure}");
    // It made no change after losing the lock, and left the other runner's lock alone.
    assert_eq!(w.cloud.violations(), Vec::<String>::new());
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    let (_, tags) = w.cloud.lock_object(LOCK).unwrap();
    assert_eq!(
        tags.get(lock::HOLDER).map(String::as_str),
        Some("ops@laptop")
    );
}

#[test]
fn unlock_force_removes_whatever_lock_there_is() {
    let w = world();
    let now = w.clock.now();
    w.cloud
        .put_lock(LOCK, lock_tags("ci@build-9", "build-9", 4242, 3600, now));
    let removed = block_on(force_unlock(&w.cloud, &w.spec)).unwrap().unwrap();
    assert_eq!(removed.holder.who, "ci@build-9");
    assert_eq!(w.cloud.lock_object(LOCK), None);
    assert_eq!(block_on(force_unlock(&w.cloud, &w.spec)).unwrap(), None);
    assert!(w.deploy("v2", sample::NEXT_IMAGE).0.unwrap().flipped);
    w.assert_safe();
}

// ---------------------------------------------------------------------------------------------
// Signals

#[test]
fn a_signal_stops_the_run_at_the_next_safe_point_and_releases_the_lock() {
    for signal in [Signal::Terminate, Signal::Interrupt] {
        let w = world();
        w.cloud.script(
            "checkout-v2",
            HealthScript::healthy_after(Duration::from_secs(60)),
        );
        let stop = w.stop.clone();
        let cloud = w.cloud.clone_handle();
        w.cloud.on_call(move |operation| {
            // While green is provisioning, someone presses Ctrl-C (or the pipeline is cancelled).
            let provisioning = cloud
                .summary("checkout-v2")
                .and_then(|s| s.tags.get(tags::PHASE).cloned())
                .as_deref()
                == Some("provisioning");
            if operation == "target_health" && provisioning {
                stop.request(signal);
            }
        });
        let (result, _) = w.deploy("v2", sample::NEXT_IMAGE);
        let failure = result.unwrap_err();
        assert!(
            matches!(&failure, Failure::Interrupted { signal: s, .. } if *s == signal),
            "{failure:?}"
        );
        assert_eq!(exit::code(&failure), signal.exit_code());
        let message = failure.to_string();
        assert!(message.contains("provisioning"), "{message}");
        assert!(message.contains("re-run the same deploy"), "{message}");
        assert_eq!(w.cloud.lock_object(LOCK), None, "lock released");
        assert_eq!(w.live_target_group(), tg(sample::TG_A));
        // Nothing is left half-done: the same deploy finishes it.
        let w2 = World {
            clock: w.clock.clone(),
            cloud: w.cloud.clone_handle(),
            spec: w.spec.clone(),
            stop: greenlight::engine::stop::Stop::new(),
        };
        assert!(w2.deploy("v2", sample::NEXT_IMAGE).0.unwrap().flipped);
        w2.assert_safe();
    }
}

// ---------------------------------------------------------------------------------------------
// Faults at every call

/// Every call of `run`'s reference run, failed once before or after it lands with the given
/// kind; returns (operation, nth) positions.
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

/// Throttling, 5xx and timeouts at every single call of a canary deploy (the checks before any
/// change, the lock's calls, and the release itself) are ridden out: the one run completes,
/// with the same end state, no invariant breaks, and the lock is handed back.
#[test]
fn transient_faults_at_every_call_of_a_canary_are_ridden_out() {
    let plan = canary("{ weight = 10, pause = \"2m\" }, { weight = 100 }");
    let reference = world_with(&plan);
    reference
        .deploy_with(
            &canary_request(&reference, "v2", sample::NEXT_IMAGE),
            DeployOptions::default(),
        )
        .0
        .unwrap();
    let calls = reference.cloud.calls();
    let mut covered = 0;
    for (operation, nth) in positions(&calls) {
        for timing in [FaultTiming::Before, FaultTiming::After] {
            let w = world_with(&plan);
            w.cloud
                .fail(&operation, nth, timing, CloudErrorKind::Unavailable);
            let (result, _) = w.deploy_with(
                &canary_request(&w, "v2", sample::NEXT_IMAGE),
                DeployOptions::default(),
            );
            covered += 1;
            result.unwrap_or_else(|e| panic!("{operation}#{nth} {timing:?}: {e}"));
            assert_eq!(w.live_target_group(), tg(sample::TG_B), "{operation}#{nth}");
            assert_eq!(
                w.tag("checkout-v2", tags::PHASE).as_deref(),
                Some("live"),
                "{operation}#{nth} {timing:?}"
            );
            assert_eq!(w.cloud.template_versions(sample::TEMPLATE).len(), 2);
            w.assert_safe();
        }
    }
    assert_eq!(covered, calls.len() * 2);
    println!("canary deploy: a transient fault ridden out at each of {covered} positions");
}

/// A crash (a failure the run does not ride out) at every mutating call of a canary deploy, a
/// rollback and an abort; the re-run converges to the uninterrupted end state.
#[test]
fn a_crash_at_every_change_of_deploy_rollback_and_abort_converges_on_rerun() {
    let plan = canary("{ weight = 20, pause = \"1m\" }, { weight = 100 }");
    type Setup = fn(&World);
    type Command = fn(&World) -> Result<(), Failure>;
    fn canary_deploy(w: &World) -> Result<(), Failure> {
        w.deploy_with(
            &canary_request(w, "v2", sample::NEXT_IMAGE),
            DeployOptions::default(),
        )
        .0
        .map(drop)
    }
    fn nothing(_: &World) {}
    fn deployed(w: &World) {
        canary_deploy(w).unwrap();
    }
    fn at_gate(w: &World) {
        w.deploy_with(
            &DeployRequest {
                plan: greenlight::core::plan::Plan::new(
                    Strategy::Canary,
                    vec![
                        greenlight::core::plan::Step {
                            weight: greenlight::core::plan::Percent::new(30).unwrap(),
                            pause: greenlight::core::plan::Pause::Manual,
                        },
                        greenlight::core::plan::Step {
                            weight: greenlight::core::plan::Percent::ALL,
                            pause: greenlight::core::plan::Pause::None,
                        },
                    ],
                )
                .unwrap(),
                ..request("v2", sample::NEXT_IMAGE)
            },
            DeployOptions { no_wait: true },
        )
        .0
        .unwrap();
    }
    fn rollback(w: &World) -> Result<(), Failure> {
        w.rollback_to(None).map(drop)
    }
    fn abort_it(w: &World) -> Result<(), Failure> {
        w.abort().map(drop)
    }
    let cases: [(&str, Setup, Command, &str); 3] = [
        ("canary deploy", nothing, canary_deploy, "b"),
        ("rollback", deployed, rollback, "a"),
        ("abort", at_gate, abort_it, "a"),
    ];
    let mut total = 0;
    for (name, setup, command, live_slot) in cases {
        let reference = world_with(&plan);
        setup(&reference);
        let before = reference.mutations().len();
        command(&reference).unwrap();
        let changes: Vec<String> = reference.mutations()[before..].to_vec();
        assert!(!changes.is_empty(), "{name}");
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for change in &changes {
            let nth = {
                let n = seen.entry(change.clone()).or_default();
                *n += 1;
                *n
            };
            for timing in [FaultTiming::Before, FaultTiming::After] {
                let w = world_with(&plan);
                setup(&w);
                // Counted from now: the command's own nth call of it.
                w.cloud.fail(change, nth, timing, CloudErrorKind::Other);
                let first = command(&w);
                assert!(
                    first.is_err(),
                    "{name}: {change}#{nth} {timing:?}: not reported"
                );
                command(&w).unwrap_or_else(|e| panic!("{name}: {change}#{nth} {timing:?}: {e}"));
                let expected = tg(if live_slot == "a" {
                    sample::TG_A
                } else {
                    sample::TG_B
                });
                assert_eq!(
                    w.live_target_group(),
                    expected,
                    "{name}: {change}#{nth} {timing:?}"
                );
                w.assert_safe();
                total += 1;
            }
        }
        println!("{name}: crash at {} positions", changes.len() * 2);
    }
    println!("crash positions covered: {total}");
}

#[test]
fn a_lost_answer_to_the_launch_template_version_makes_one_version() {
    let w = world();
    // The version is made, its answer lost; the SDK (or a re-run) repeats the same request.
    w.cloud.fail(
        "create_launch_template_version",
        1,
        FaultTiming::After,
        CloudErrorKind::Unavailable,
    );
    assert!(w.deploy("v2", sample::NEXT_IMAGE).0.unwrap().flipped);
    assert_eq!(w.cloud.template_versions(sample::TEMPLATE).len(), 2);
    w.assert_safe();
}
