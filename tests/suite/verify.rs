//! Release verification on the in-memory cloud: test traffic opened and closed, hooks at their
//! stages, alarms and the metrics verdict stopping a release, and blue/green on a Network Load
//! Balancer through a test listener. The fake's safety watch checks every scenario.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenlight::core::analysis::AlarmValue;
use greenlight::core::cloud::CloudErrorKind;
use greenlight::core::decide::DeployRequest;
use greenlight::core::names::ListenerArn;
use greenlight::core::plan::Strategy;
use greenlight::core::router::{Forward, RouterAction, RouterId, Weight};
use greenlight::core::spec::Spec;
use greenlight::core::tags;
use greenlight::engine::clock::Clock;
use greenlight::engine::deploy::DeployOptions;
use greenlight::engine::events::Event;
use greenlight::engine::failure::Failure;
use greenlight::exit;
use greenlight::fake::{FakeClock, FakeCloud, FaultTiming, HealthScript, sample};

use super::scenarios::{World, request, tg, world_with};

const HEADER: &str = "[test_traffic]\nheader = \"X-Greenlight-Release\"\n";

fn listener() -> ListenerArn {
    ListenerArn::parse(sample::LISTENER).unwrap()
}

fn canary_request(w: &World) -> DeployRequest {
    DeployRequest {
        plan: w.spec.plan(Strategy::Canary).expect("a canary plan"),
        ..request("v2", sample::NEXT_IMAGE)
    }
}

fn deploy(w: &World, request: &DeployRequest) -> (Result<(), Failure>, Vec<Event>) {
    let (result, events) = w.deploy_with(request, DeployOptions::default());
    (result.map(drop), events)
}

/// Every router write's share for slot b, in order.
fn shares_of_b(w: &World) -> Vec<u16> {
    w.cloud
        .routes()
        .iter()
        .filter(|forwards| {
            // Production writes name slot a or b together; a test listener's names one.
            forwards.len() == 2
        })
        .map(|forwards| {
            forwards
                .iter()
                .filter(|f| f.target_group == tg(sample::TG_B))
                .map(|f| f.weight.get())
                .sum()
        })
        .collect()
}

fn position(calls: &[String], call: &str) -> usize {
    calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("no {call} in {calls:?}"))
}

#[test]
fn a_header_rule_carries_test_traffic_until_the_release_is_promoted() {
    let w = world_with(HEADER);
    // Someone else's rule: the test rule must come before it.
    w.cloud.add_rule(&listener(), 10, vec![]);
    let seen = Arc::new(Mutex::new(None));
    let (cloud, at_flip) = (w.cloud.clone_handle(), seen.clone());
    w.cloud.on_call(move |operation| {
        if operation == "route" && at_flip.lock().unwrap().is_none() {
            let rules = cloud.rules(&ListenerArn::parse(sample::LISTENER).unwrap());
            if rules.iter().any(|r| r.priority != Some(10)) {
                *at_flip.lock().unwrap() = Some(rules);
            }
        }
    });
    deploy(&w, &request("v2", sample::NEXT_IMAGE)).0.unwrap();
    let rules = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the test rule before the flip");
    let rule = rules.iter().find(|r| r.priority != Some(10)).unwrap();
    assert_eq!(rule.priority, Some(9), "before the other rule");
    assert_eq!(rule.target_groups, vec![tg(sample::TG_B)]);
    assert_eq!(rule.conditions.len(), 1);
    assert_eq!(rule.conditions[0].field, "http-header");
    assert_eq!(
        rule.conditions[0].header_name.as_deref(),
        Some("X-Greenlight-Release")
    );
    assert_eq!(rule.conditions[0].values, ["v2"]);
    assert_eq!(
        rule.tags.get("greenlight:test-traffic").map(String::as_str),
        Some("true")
    );
    // Gone once the release is live; only the other rule is left.
    let after: Vec<Option<u32>> = w
        .cloud
        .rules(&listener())
        .iter()
        .map(|r| r.priority)
        .collect();
    assert_eq!(after, [Some(10)]);
    let calls = w.cloud.calls();
    assert!(position(&calls, "create_rule") < position(&calls, "delete_rule"));
    w.assert_safe();
}

#[test]
fn a_test_rule_left_by_a_crash_is_removed_by_the_next_run() {
    for next in ["deploy", "abort"] {
        let w = world_with(HEADER);
        // The flip fails as if the process died there, after the test rule was made.
        w.cloud
            .fail("route", 2, FaultTiming::Before, CloudErrorKind::Other);
        assert!(deploy(&w, &request("v2", sample::NEXT_IMAGE)).0.is_err());
        assert_eq!(w.cloud.rules(&listener()).len(), 1, "{next}: left behind");
        match next {
            "deploy" => deploy(&w, &request("v2", sample::NEXT_IMAGE)).0.unwrap(),
            _ => drop(w.abort().unwrap()),
        }
        assert_eq!(w.cloud.rules(&listener()), vec![], "{next}");
        w.assert_safe();
    }
}

#[test]
fn a_failing_pre_traffic_hook_stops_the_release_before_any_traffic() {
    let w = world_with(&format!(
        "{HEADER}[hooks]\npre_traffic = [\"echo checking $GREENLIGHT_RELEASE; exit 1\"]\ntimeout = \"10s\"\n"
    ));
    let (result, events) = deploy(&w, &request("v2", sample::NEXT_IMAGE));
    let failure = result.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    let message = failure.to_string();
    assert!(
        message.contains("hook `echo checking $GREENLIGHT_RELEASE; exit 1` (pre_traffic) exited 1"),
        "{message}"
    );
    assert!(message.contains("checking v2"), "{message}");
    w.assert_traffic_never_left_a();
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("failed"));
    assert_eq!(w.cloud.summary("checkout-v2").unwrap().capacity.desired, 0);
    assert_eq!(w.cloud.rules(&listener()), vec![], "test traffic closed");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Hook { run } if !run.passed()))
    );
    w.assert_safe();
}

#[test]
fn hooks_run_once_per_stage_and_see_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let hook = format!(
        "echo \"$GREENLIGHT_STAGE $GREENLIGHT_RELEASE $GREENLIGHT_STEP $GREENLIGHT_WEIGHT $GREENLIGHT_TEST_HEADER=$GREENLIGHT_TEST_HEADER_VALUE $GREENLIGHT_SLOT\" >> {}",
        log.display()
    );
    let w = world_with(&format!(
        "strategy = \"canary\"\n{HEADER}[canary]\nsteps = [{{ weight = 10, pause = \"1m\" }}, {{ weight = 100 }}]\n\
         [hooks]\npre_traffic = [{hook:?}]\nafter_step = [{hook:?}]\npost_traffic = [{hook:?}]\n"
    ));
    // The first try dies at the flip, after the pre-traffic and after-step hooks ran.
    w.cloud
        .fail("route", 3, FaultTiming::Before, CloudErrorKind::Other);
    assert!(deploy(&w, &canary_request(&w)).0.is_err());
    deploy(&w, &canary_request(&w)).0.unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            "pre_traffic v2  0 X-Greenlight-Release=v2 b",
            "after_step v2 1 10 X-Greenlight-Release=v2 b",
            "post_traffic v2 2 100 X-Greenlight-Release=v2 b",
        ],
        "each stage once, even across the crash"
    );
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("live"));
    w.assert_safe();
}

#[test]
fn a_failing_after_step_hook_routes_traffic_back() {
    let w = world_with(
        "strategy = \"canary\"\n[canary]\nsteps = [{ weight = 20, pause = \"5m\" }, { weight = 100 }]\n\
         [hooks]\nafter_step = [\"echo 5xx spike >&2; exit 2\"]\n",
    );
    let failure = deploy(&w, &canary_request(&w)).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    assert!(
        failure
            .to_string()
            .contains("(after_step (step 1)) exited 2"),
        "{failure}"
    );
    assert!(failure.to_string().contains("5xx spike"), "{failure}");
    assert_eq!(shares_of_b(&w), [0, 20, 0]);
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("failed"));
    w.assert_safe();
}

#[test]
fn a_failing_post_traffic_hook_returns_all_traffic_to_the_previous_release() {
    let w = world_with("[hooks]\npost_traffic = [\"exit 4\"]\n");
    let failure = deploy(&w, &request("v2", sample::NEXT_IMAGE))
        .0
        .unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    assert!(
        failure.to_string().contains("(post_traffic) exited 4"),
        "{failure}"
    );
    // Flipped, then back in one call; blue was never marked warm nor shrunk.
    assert_eq!(shares_of_b(&w), [0, 100, 0]);
    assert_eq!(w.live_target_group(), tg(sample::TG_A));
    assert_eq!(w.tag(sample::BLUE, tags::PHASE).as_deref(), Some("live"));
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("failed"));
    w.assert_safe();
}

#[test]
fn an_alarm_in_alarm_mid_pause_stops_the_canary() {
    let w = world_with(
        "strategy = \"canary\"\n[canary]\nsteps = [{ weight = 25, pause = \"10m\" }, { weight = 100 }]\n\
         [analysis]\nalarms = [\"checkout-5xx\"]\n",
    );
    w.cloud.set_alarm("checkout-5xx", AlarmValue::Ok, "");
    let cloud = w.cloud.clone_handle();
    w.cloud.on_call(move |operation| {
        let at_step = cloud
            .summary("checkout-v2")
            .and_then(|s| s.tags.get(tags::STEP).cloned());
        if operation == "alarms" && at_step.as_deref() == Some("1") {
            cloud.set_alarm(
                "checkout-5xx",
                AlarmValue::Alarm,
                "Threshold Crossed: 1 datapoint [42.0] was greater than the threshold (5.0)",
            );
        }
    });
    let failure = deploy(&w, &canary_request(&w)).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    let message = failure.to_string();
    assert!(
        message.contains("alarm checkout-5xx is in ALARM"),
        "{message}"
    );
    assert!(message.contains("Threshold Crossed"), "{message}");
    assert_eq!(shares_of_b(&w), [0, 25, 0]);
    w.assert_safe();
}

#[test]
fn a_missing_alarm_is_bad_input_before_any_change() {
    let w = world_with("[analysis]\nalarms = [\"no-such-alarm\"]\n");
    let failure = deploy(&w, &request("v2", sample::NEXT_IMAGE))
        .0
        .unwrap_err();
    assert_eq!(exit::code(&failure), exit::BAD_INPUT, "{failure}");
    assert!(failure.to_string().contains("no-such-alarm"), "{failure}");
    assert_eq!(w.mutations(), Vec::<String>::new());
}

const ANALYSIS: &str = "strategy = \"canary\"\n[canary]\nsteps = [{ weight = 20, pause = \"5m\" }, { weight = 100 }]\n\
    [analysis]\nmax_5xx_rate = 0.05\nmax_5xx_ratio_vs_blue = 2.0\nmin_requests = 100\n";

#[test]
fn green_failing_far_more_than_blue_is_rolled_back_at_the_gate() {
    let w = world_with(ANALYSIS);
    // Per minute: green 200 requests, 6 of them 5xx (3%, under 5%, but 6x blue's 0.5%).
    w.cloud.serve(sample::TG_B, 200.0, 6.0, Some(80.0));
    w.cloud.serve(sample::TG_A, 800.0, 4.0, Some(70.0));
    let failure = deploy(&w, &canary_request(&w)).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    let message = failure.to_string();
    assert!(message.contains("analysis failed at step 1/2"), "{message}");
    assert!(message.contains("6.0x blue's 0.50%"), "{message}");
    assert_eq!(shares_of_b(&w), [0, 20, 0]);
    w.assert_safe();
}

#[test]
fn a_clean_release_passes_every_gate_and_keeps_its_verdict() {
    let w = world_with(ANALYSIS);
    w.cloud.serve(sample::TG_B, 200.0, 0.0, Some(80.0));
    w.cloud.serve(sample::TG_A, 800.0, 1.0, Some(70.0));
    let (result, events) = deploy(&w, &canary_request(&w));
    result.unwrap();
    assert_eq!(shares_of_b(&w), [0, 20, 100]);
    let verdict = w.tag("checkout-v2", tags::VERDICT).unwrap();
    assert!(
        verdict.starts_with("pass: green 0.00% 5xx (0/1000)"),
        "{verdict}"
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::Step { action } if action.name() == "flip" && format!("{action:?}").contains("pass: green"))
    ));
    w.assert_safe();
}

#[test]
fn an_idle_canary_waits_for_enough_requests_or_fails_as_configured() {
    // Too few requests for a verdict: wait (the default) until there are enough.
    let w = world_with(ANALYSIS);
    w.cloud.serve(sample::TG_B, 0.0, 0.0, None);
    w.cloud.serve(sample::TG_A, 800.0, 0.0, Some(70.0));
    // Requests start to reach green a while after its 5-minute pause has ended.
    let (cloud, clock) = (w.cloud.clone_handle(), w.clock.clone());
    w.cloud.on_call(move |operation| {
        let step_at = cloud
            .summary("checkout-v2")
            .and_then(|s| s.tags.get(tags::STEP_AT).cloned())
            .and_then(|t| humantime::parse_rfc3339(&t).ok());
        if operation == "target_group_metrics"
            && step_at.is_some_and(|at| clock.now() >= at + Duration::from_secs(8 * 60))
        {
            cloud.serve(sample::TG_B, 300.0, 0.0, Some(60.0));
        }
    });
    let (result, events) = deploy(&w, &canary_request(&w));
    result.unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::Analysis { .. })),
        "{events:#?}"
    );
    assert_eq!(shares_of_b(&w), [0, 20, 100]);
    w.assert_safe();

    // Or, configured so, stop.
    let w = world_with(&format!("{ANALYSIS}inconclusive = \"fail\"\n"));
    w.cloud.serve(sample::TG_A, 800.0, 0.0, Some(70.0));
    let failure = deploy(&w, &canary_request(&w)).0.unwrap_err();
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    assert!(failure.to_string().contains("inconclusive"), "{failure}");
    w.assert_safe();
}

/// Blue/green on a Network Load Balancer: green is health-checked because the test listener
/// forwards to it; the production listener's forward names one target group at a time.
#[test]
fn blue_green_on_a_network_load_balancer_through_a_test_listener() {
    let nlb = sample::LISTENER.replace("listener/app/", "listener/net/");
    let test = nlb.replace("f2f7dc8efc522ab2", "0000000000000001");
    let text = format!(
        "service = \"checkout\"\nregion = \"us-east-1\"\n[router]\nlistener_arn = \"{nlb}\"\n\
         target_groups = [\"{}\", \"{}\"]\n[health]\ntimeout = \"5m\"\ninterval = \"5s\"\n\
         [test_traffic]\nlistener_arn = \"{test}\"\n",
        sample::TG_A,
        sample::TG_B
    );
    let spec = Spec::parse(&text).unwrap();
    let clock = FakeClock::new(std::time::SystemTime::UNIX_EPOCH + super::scenarios::START);
    let (cloud, _) = FakeCloud::sample(clock.clone());
    let only = |arn: &str| RouterAction::Forward {
        forwards: vec![Forward {
            target_group: tg(arn),
            weight: Weight::ALL,
        }],
    };
    cloud.add_router(&spec.router, only(sample::TG_A));
    cloud.add_test_router(
        &RouterId::Listener(ListenerArn::parse(&test).unwrap()),
        only(sample::TG_A),
    );
    let lb = spec.router.load_balancer_arn().unwrap();
    cloud.set_load_balancers(sample::TG_A, vec![lb.clone()]);
    cloud.set_load_balancers(sample::TG_B, vec![lb]);
    cloud.script(
        "checkout-v2",
        HealthScript::healthy_after(Duration::from_secs(30)),
    );
    let w = World {
        clock,
        cloud,
        spec,
        stop: greenlight::engine::stop::Stop::new(),
    };
    deploy(&w, &request("v2", sample::NEXT_IMAGE)).0.unwrap();
    // All to green, the previous release still named at weight 0 (NLB weighted target groups),
    // so AWS keeps health-checking it and a rollback is one call.
    let weight_of = |forwards: &[Forward], arn: &str| {
        forwards
            .iter()
            .find(|f| f.target_group == tg(arn))
            .map(|f| f.weight.get())
    };
    let production = w.cloud.forwards(&w.spec.router);
    assert_eq!(production.len(), 2, "{production:?}");
    assert_eq!(
        weight_of(&production, sample::TG_B),
        Some(100),
        "{production:?}"
    );
    assert_eq!(
        weight_of(&production, sample::TG_A),
        Some(0),
        "{production:?}"
    );
    let test_listener = w
        .cloud
        .forwards(&RouterId::Listener(ListenerArn::parse(&test).unwrap()));
    assert_eq!(test_listener[0].target_group, tg(sample::TG_B));
    // The test listener moved to green before green was healthy (that is what health-checks
    // it on an NLB), the production listener only once it was.
    let routes = w.cloud.routes();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert_eq!(w.tag("checkout-v2", tags::PHASE).as_deref(), Some("live"));
    assert!(w.rollback().is_ok());
    let production = w.cloud.forwards(&w.spec.router);
    assert_eq!(
        weight_of(&production, sample::TG_A),
        Some(100),
        "{production:?}"
    );
    assert_eq!(
        weight_of(&production, sample::TG_B),
        Some(0),
        "{production:?}"
    );
    w.assert_safe();
}
