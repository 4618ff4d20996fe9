//! Human output at a terminal and in a log, and the JSON event stream, as people and pipelines
//! see them: snapshots (insta, in tests/suite/snapshots) of a blue/green deploy, a canary to a
//! gate, a failed release, `status` (human and JSON) and a deploy's event stream, driven on the
//! in-memory fake and its jumping clock (deterministic, no test sleeps); the progress line drawn
//! into a terminal stand-in; the heartbeat of a log; `status --watch`; colour; and a few runs
//! of the real binary on the emulator (`status` columns, `--color`/`NO_COLOR`, `--watch` for
//! scripts, the JSON stream with its `time` and `elapsed_ms`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use greenlight::core::cloud::CloudErrorKind;
use greenlight::core::decide::DeployRequest;
use greenlight::core::lock::{Holder, LockRecord};
use greenlight::core::plan::Strategy;
use greenlight::engine::clock::Clock;
use greenlight::engine::deploy::{DeployOptions, Released, deploy};
use greenlight::engine::events::{Event, Recorder, Reporter};
use greenlight::engine::failure::Failure;
use greenlight::engine::status::{self, StatusReport, WatchOptions, WatchRead};
use greenlight::engine::stop::{Signal, Stop};
use greenlight::exit;
use greenlight::fake::{FaultTiming, HealthScript, sample};
use greenlight::output::human::{HumanReporter, status_text};
use greenlight::output::progress::{Capture, CaptureTerm, Progress, StatusView};
use serde_json::Value;

use super::harness::session;
use super::scenarios::{World, block_on, holder, request, world, world_with};

// ---------------------------------------------------------------------------------------------
// Helpers

/// `[canary]` with these steps.
fn canary(steps: &str) -> String {
    format!("strategy = \"canary\"\n[canary]\nsteps = [{steps}]\n")
}

fn canary_request(w: &World) -> DeployRequest {
    DeployRequest {
        plan: w.spec.plan(Strategy::Canary).expect("a canary plan"),
        ..request("v2", sample::NEXT_IMAGE)
    }
}

fn no_wait() -> DeployOptions {
    DeployOptions { no_wait: true }
}

/// A human reporter on the world's fake clock, writing plain lines (a log) into a capture.
fn log_reporter(w: &World, color: bool) -> (HumanReporter, Capture) {
    let out = Capture::new();
    let clock = w.clock.clone();
    let progress = Progress::plain(Box::new(out.clone()), color, clock.now());
    (HumanReporter::with(progress, move || clock.now()), out)
}

/// A human reporter on the world's fake clock, drawing into a terminal stand-in.
fn terminal_reporter(w: &World, color: bool) -> (HumanReporter, Arc<CaptureTerm>) {
    let term = CaptureTerm::new(200);
    let clock = w.clock.clone();
    let progress = Progress::terminal(term.clone(), color, clock.now());
    assert!(progress.is_terminal());
    (HumanReporter::with(progress, move || clock.now()), term)
}

fn run_deploy(
    w: &World,
    reporter: &mut dyn Reporter,
    request: &DeployRequest,
    options: DeployOptions,
) -> Result<Released, Failure> {
    let holder = holder("deploy-terminal");
    let cloud = w.cloud.runner(&holder.token);
    block_on(deploy(&w.ctx(&cloud, &holder), reporter, request, options))
}

/// What the binary prints for a failure on stderr (and as the JSON error event).
fn error_line(failure: &Failure) -> String {
    format!(
        "error (exit {}): {}",
        exit::code(failure),
        failure.message(None)
    )
}

/// The output of a deploy in a log, ending with the error the binary would print.
fn deploy_log(w: &World, request: &DeployRequest, options: DeployOptions) -> String {
    let (mut reporter, out) = log_reporter(w, false);
    let result = run_deploy(w, &mut reporter, request, options);
    drop(reporter);
    let mut text = out.text();
    if let Err(failure) = &result {
        text.push_str(&error_line(failure));
        text.push('\n');
    }
    text
}

/// Snapshots with what varies between runs or environments redacted: ARNs, times, instance
/// and lock ids, pids, `elapsed_ms`.
macro_rules! redacted {
    ($body:block) => {
        insta::with_settings!({
            filters => vec![
                (r"arn:aws:[A-Za-z0-9:/._-]+", "[arn]"),
                (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]"),
                (r"\bi-[0-9a-f]{8,17}\b", "[instance]"),
                (r"\blt-[0-9a-z]{10,17}\b", "[lt-id]"),
                (r"\bami-[0-9a-f]{8,17}\b", "[ami]"),
                (r"pid \d+", "pid [pid]"),
                (r#""pid": \d+"#, r#""pid": "[pid]""#),
                (r#""elapsed_ms": \d+"#, r#""elapsed_ms": "[ms]""#),
            ],
            omit_expression => true,
        }, $body)
    };
}

/// `[m:ss]` of each line, in seconds.
fn line_times(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| {
            let inner = line.strip_prefix('[')?.split_once(']')?.0.trim();
            let (m, s) = inner.split_once(':')?;
            Some(m.parse::<u64>().ok()? * 60 + s.parse::<u64>().ok()?)
        })
        .collect()
}

/// No two consecutive lines of `text` (whose `[m:ss]` are `times`) more than 30 s apart.
fn assert_no_gap_over_30s(times: &[u64], text: &str) {
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] <= 30,
            "{}s without a line:\n{text}",
            pair[1] - pair[0]
        );
    }
}

fn strip(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

// ---------------------------------------------------------------------------------------------
// Human output in a log: snapshots

#[test]
fn a_blue_green_deploy_in_a_log() {
    let w = world();
    let text = deploy_log(
        &w,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    );
    redacted!({ insta::assert_snapshot!(text) });
    w.assert_safe();
}

#[test]
fn a_canary_to_a_gate_in_a_log() {
    let w = world_with(&canary(
        "{ weight = 10, pause = \"2m\" }, { weight = 50, pause = \"manual\" }, { weight = 100 }",
    ));
    let text = deploy_log(&w, &canary_request(&w), no_wait());
    redacted!({ insta::assert_snapshot!(text) });
}

#[test]
fn a_failed_release_in_a_log() {
    let w = world();
    w.cloud.default_script(HealthScript::unhealthy(
        "Target.ResponseCodeMismatch",
        "Health checks failed with these codes: [500]",
    ));
    let text = deploy_log(
        &w,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    );
    redacted!({ insta::assert_snapshot!(text) });
    w.assert_safe();
}

// ---------------------------------------------------------------------------------------------
// The heartbeat

#[test]
fn a_log_gets_a_line_at_least_every_30s_while_a_deploy_waits() {
    // Green never turns healthy: 5 minutes of waiting, then the release fails.
    let w = world();
    w.cloud.default_script(HealthScript::unhealthy(
        "Target.Timeout",
        "Request timed out",
    ));
    let text = deploy_log(
        &w,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    );
    let times = line_times(&text);
    assert_eq!(times.first(), Some(&0), "{text}");
    assert_eq!(times.last(), Some(&300), "the health timeout is 5m: {text}");
    assert_no_gap_over_30s(&times, &text);
    let beats: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("… still waiting: "))
        .collect();
    assert!(beats.len() >= 9, "{text}");
    // Each says what it waits for, how long it has and how long is left.
    for beat in &beats {
        assert!(
            beat.contains("green checkout-v2: 0/2 healthy")
                && beat.contains(" elapsed, ")
                && beat.ends_with(" left"),
            "{beat}"
        );
    }

    // A canary's 10-minute pause: the same, with the step and the time to the next one.
    let w = world_with(&canary(
        "{ weight = 10, pause = \"10m\" }, { weight = 100 }",
    ));
    let text = deploy_log(&w, &canary_request(&w), DeployOptions::default());
    let times = line_times(&text);
    assert!(times.last().copied().unwrap_or(0) >= 600, "{text}");
    assert_no_gap_over_30s(&times, &text);
    let beat = text
        .lines()
        .find(|l| l.contains("… still waiting: step 1/2 at 10%: paused"))
        .unwrap_or_else(|| panic!("no heartbeat of the pause:\n{text}"));
    assert!(beat.contains("next step in "), "{beat}");
    // No heartbeat once the wait is over: the last lines are the release's.
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("✓ release v2 is live"),
        "{text}"
    );
}

#[test]
fn no_heartbeat_when_lines_come_often_enough() {
    // A short wait (green healthy in 36 s, health lines at 0, 23 and 36 s) needs none.
    let w = world();
    let text = deploy_log(
        &w,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    );
    assert!(!text.contains("still waiting"), "{text}");
}

#[test]
fn a_log_gets_a_line_at_least_every_30s_while_abort_waits_for_the_running_deploy() {
    // A canary at its gate, and a deploy on another host holding the lock for the next hour
    // that never acts on the request: abort waits its 2 minutes, then says who holds on.
    let w = world_with(&canary(
        "{ weight = 25, pause = \"manual\" }, { weight = 100 }",
    ));
    let (mut reporter, _) = log_reporter(&w, false);
    run_deploy(&w, &mut reporter, &canary_request(&w), no_wait()).expect("paused");
    hold_lock_for(&w, Duration::from_secs(3600));

    let (mut reporter, out) = log_reporter(&w, false);
    let holder = holder("aborter");
    let cloud = w.cloud.runner(&holder.token);
    let result = block_on(greenlight::engine::abort::abort(
        &w.ctx(&cloud, &holder),
        &mut reporter,
    ));
    drop(reporter);
    let failure = result.expect_err("the deploy never let go");
    assert!(matches!(failure, Failure::Busy(_)), "{failure:?}");
    let text = format!("{}{}\n", out.text(), error_line(&failure));

    let times = line_times(&text);
    assert_eq!(times.first(), Some(&0), "{text}");
    // The last heartbeat comes within 30 s of the end of the 2-minute wait.
    assert!(times.last().copied().unwrap_or(0) >= 90, "{text}");
    assert_no_gap_over_30s(&times, &text);
    let beats: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("… still waiting: the running deploy to stop v2"))
        .collect();
    assert!(beats.len() >= 3, "{text}");
    for beat in &beats {
        assert!(beat.contains(" elapsed, gives up in "), "{beat}");
    }
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("asked the running deploy to abort v2"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// The progress line on a terminal

#[test]
fn a_terminal_shows_a_live_line_while_waiting_and_only_the_permanent_lines_after() {
    let config = canary("{ weight = 10, pause = \"2m\" }, { weight = 100 }");
    let w = world_with(&config);
    let (mut reporter, term) = terminal_reporter(&w, false);
    let result = run_deploy(
        &w,
        &mut reporter,
        &canary_request(&w),
        DeployOptions::default(),
    );
    assert!(result.expect("released").flipped);
    drop(reporter);

    let frames = term.writes();
    let frame = |needle: &str| {
        frames
            .iter()
            .find(|f| !f.starts_with('[') && f.contains(needle))
            .unwrap_or_else(|| panic!("no frame with {needle:?}: {frames:#?}"))
            .clone()
    };
    // Green's health with the time left before the health timeout (5m).
    let health = frame("green checkout-v2: 0/2 healthy");
    assert!(
        health.contains("elapsed") && health.contains("left"),
        "{health}"
    );
    assert!(
        frames.iter().any(|f| f.contains("· 5s elapsed, 4m5")),
        "{frames:#?}"
    );
    // The canary step, its weight and the pause's remaining time, counting down.
    let pause = frame("step 1/2 at 10%: paused");
    assert!(pause.contains("next step in "), "{pause}");
    assert!(
        frames.iter().any(|f| f.contains("next step in 1m5")),
        "{frames:#?}"
    );
    assert!(
        frames.iter().any(|f| f.contains("next step in 0s")
            || f.contains("next step in 1s")
            || f.contains("next step in 2s")
            || f.contains("next step in 3s")
            || f.contains("next step in 4s")),
        "{frames:#?}"
    );
    // No colour asked, none written.
    assert!(frames.iter().all(|f| !f.contains('\x1b')), "{frames:#?}");

    // At the end: the permanent lines, in order, and no progress line; the same lines a log
    // gets, without its heartbeats.
    let screen = term.screen();
    let w = world_with(&config);
    let log = deploy_log(&w, &canary_request(&w), DeployOptions::default());
    let expected: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("still waiting"))
        .collect();
    assert_eq!(screen, expected);
}

#[test]
fn lines_during_a_wait_go_above_the_progress_line() {
    let w = world();
    let (mut reporter, term) = terminal_reporter(&w, false);
    // Sees the screen at each report: while green's health changes, the progress line (drawn at
    // the previous tick) stays the last line, under the new health line.
    struct Watching<'a> {
        inner: &'a mut HumanReporter,
        term: Arc<CaptureTerm>,
        seen: Vec<Vec<String>>,
    }
    impl Reporter for Watching<'_> {
        fn report(&mut self, event: &Event) {
            self.inner.report(event);
            if matches!(event, Event::Health { .. }) {
                self.seen.push(self.term.screen());
            }
        }
        fn tick(&mut self, wait: &greenlight::core::decide::Wait, now: SystemTime) {
            self.inner.tick(wait, now);
        }
    }
    let mut watching = Watching {
        inner: &mut reporter,
        term: term.clone(),
        seen: Vec::new(),
    };
    run_deploy(
        &w,
        &mut watching,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    )
    .expect("released");
    let seen = watching.seen;
    // The second health line came while the progress line was shown.
    let during = seen
        .iter()
        .find(|screen| {
            screen.len() >= 2
                && screen[screen.len() - 2].contains("green checkout-v2: 0/2 healthy, 2 initial")
        })
        .unwrap_or_else(|| panic!("no health line above a progress line: {seen:#?}"));
    let last = during.last().unwrap();
    assert!(
        !last.starts_with('[')
            && last.contains("green checkout-v2: 0/2 healthy")
            && last.contains("elapsed"),
        "{during:#?}"
    );
    drop(reporter);
    assert!(
        term.screen().iter().all(|l| l.starts_with('[')),
        "{:#?}",
        term.screen()
    );
}

// ---------------------------------------------------------------------------------------------
// Colour

#[test]
fn colour_is_green_for_done_yellow_for_waits_red_for_failures_and_off_when_asked() {
    let green = "\x1b[32m";
    let yellow = "\x1b[33m";
    let red = "\x1b[31m";
    let dim = "\x1b[2m";
    let line_with = |text: &str, needle: &str| -> String {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{text}"))
            .to_owned()
    };

    let w = world_with(&canary("{ weight = 10, pause = \"1m\" }, { weight = 100 }"));
    let (mut reporter, out) = log_reporter(&w, true);
    run_deploy(
        &w,
        &mut reporter,
        &canary_request(&w),
        DeployOptions::default(),
    )
    .expect("released");
    drop(reporter);
    let text = out.text();
    assert!(
        line_with(&text, "release v2 is live").contains(green),
        "{text:?}"
    );
    assert!(
        line_with(&text, "next step at").contains(yellow),
        "{text:?}"
    );
    assert!(
        line_with(&text, "flipping").starts_with(dim),
        "the time prefix is dim: {text:?}"
    );
    assert!(
        !line_with(&text, "flipping").contains(green),
        "a step is plain: {text:?}"
    );
    // The styles are whole: stripped, the text is the uncoloured output.
    let w2 = world_with(&canary("{ weight = 10, pause = \"1m\" }, { weight = 100 }"));
    let plain = deploy_log(&w2, &canary_request(&w2), DeployOptions::default());
    assert_eq!(strip(&text), plain);
    assert!(!plain.contains('\x1b'));

    let w = world();
    w.cloud.default_script(HealthScript::unhealthy(
        "Target.Timeout",
        "Request timed out",
    ));
    let (mut reporter, out) = log_reporter(&w, true);
    run_deploy(
        &w,
        &mut reporter,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    )
    .expect_err("fails");
    drop(reporter);
    let text = out.text();
    assert!(
        line_with(&text, "✗ release v2 failed").contains(red),
        "{text:?}"
    );
    assert!(
        line_with(&text, "still waiting").contains(yellow),
        "{text:?}"
    );

    // On a terminal too.
    let w = world();
    let (mut reporter, term) = terminal_reporter(&w, true);
    run_deploy(
        &w,
        &mut reporter,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    )
    .expect("released");
    drop(reporter);
    let screen = term.screen();
    assert!(
        line_with(&screen.join("\n"), "release v2 is live").contains(green),
        "{screen:?}"
    );
    assert!(
        term.writes()
            .iter()
            .any(|f| f.contains("green checkout-v2") && f.contains(dim)),
        "the progress line's times are dim"
    );
}

// ---------------------------------------------------------------------------------------------
// The JSON event stream (the fake): the events as the JSON reporter serializes them; `time`
// and `elapsed_ms`, which it adds on stdout, are in the binary's snapshot below.

#[test]
fn the_json_event_stream_of_a_deploy() {
    let w = world();
    let mut recorder = Recorder::default();
    run_deploy(
        &w,
        &mut recorder,
        &request("v2", sample::NEXT_IMAGE),
        DeployOptions::default(),
    )
    .expect("released");
    let events: Vec<Value> = recorder
        .events
        .iter()
        .map(|e| serde_json::to_value(e).expect("serializes"))
        .collect();
    redacted!({ insta::assert_json_snapshot!(events) });
}

// ---------------------------------------------------------------------------------------------
// status (the fake)

/// A lock as a deploy on another host holds it.
fn hold_lock(w: &World) {
    hold_lock_for(w, Duration::from_secs(30));
}

/// A lock as a deploy on another host holds it, for `left` from now.
fn hold_lock_for(w: &World, left: Duration) {
    let start = w.clock.now();
    let record = LockRecord {
        id: String::new(),
        service: "checkout".into(),
        holder: Holder {
            who: "ci@build-7".into(),
            host: "build-7".into(),
            pid: 4242,
            run: Some("GitHub Actions run acme/checkout#99 attempt 1".into()),
            token: "t-4242".into(),
        },
        command: "deploy".into(),
        acquired_at: start - Duration::from_secs(90),
        expires_at: start + left,
    };
    let tags: BTreeMap<String, String> = record.tags().into_iter().collect();
    w.cloud.put_lock("greenlight-lock.checkout", tags);
}

fn status_of(w: &World) -> (StatusReport, SystemTime) {
    let now = w.clock.now();
    let report = block_on(status::status(&w.cloud, &w.spec, now)).expect("status");
    (report, now)
}

#[test]
fn status_of_a_canary_in_its_pause_with_the_lock_held() {
    let w = world_with(&canary(
        "{ weight = 10, pause = \"10m\" }, { weight = 50, pause = \"manual\" }, { weight = 100 }",
    ));
    // Stop the deploy (as Ctrl-C would) as its first pause begins, and look 4 minutes in.
    struct StopAtPause(Stop);
    impl Reporter for StopAtPause {
        fn report(&mut self, event: &Event) {
            if matches!(event, Event::Pause { .. }) {
                self.0.request(Signal::Interrupt);
            }
        }
    }
    let result = run_deploy(
        &w,
        &mut StopAtPause(w.stop.clone()),
        &canary_request(&w),
        DeployOptions::default(),
    );
    assert!(
        matches!(result, Err(Failure::Interrupted { .. })),
        "{result:?}"
    );
    w.clock.advance(Duration::from_secs(240));
    hold_lock(&w);
    let (report, now) = status_of(&w);
    let release = report.release.as_ref().expect("a release in progress");
    assert_eq!((release.step, release.steps), (Some(1), Some(3)));
    assert!(release.pause_until.is_some() && !release.waiting_for_promote);
    // Each fleet's AMI and launch template version.
    assert_eq!(
        report.traffic[0].image_id.as_deref(),
        Some(sample::BLUE_IMAGE)
    );
    assert_eq!(
        report.traffic[1].image_id.as_deref(),
        Some(sample::NEXT_IMAGE)
    );
    assert_eq!(
        report.traffic[0].launch_template_id.as_deref(),
        Some(sample::TEMPLATE)
    );
    assert_eq!(
        report.traffic[0].launch_template_version.as_deref(),
        Some("1")
    );
    assert_eq!(
        report.traffic[1].launch_template_version.as_deref(),
        Some("2")
    );
    assert_eq!(report.lock.as_ref().map(|l| l.holder.pid), Some(4242));
    let text = strip(&status_text(&report, now));
    assert!(text.contains("(in 6m"), "the pause's time left: {text}");
    let json = serde_json::to_value(&report).expect("serializes");
    redacted!({
        insta::assert_snapshot!("status_in_a_pause_human", text);
        insta::assert_json_snapshot!("status_in_a_pause_json", json);
    });
}

#[test]
fn status_at_a_gate_and_after_a_failed_release() {
    let w = world_with(&canary(
        "{ weight = 25, pause = \"manual\" }, { weight = 100 }",
    ));
    let (mut reporter, _) = log_reporter(&w, false);
    run_deploy(&w, &mut reporter, &canary_request(&w), no_wait()).expect("paused");
    let (report, now) = status_of(&w);
    let text = strip(&status_text(&report, now));
    assert!(text.contains("waiting for `greenlight promote`"), "{text}");
    assert!(text.contains("lock: free"), "{text}");
    redacted!({ insta::assert_snapshot!("status_at_a_gate_human", text) });

    // The gate's release aborted: failed, its reason under the table, traffic on blue.
    let holder = holder("abort-status");
    let cloud = w.cloud.runner(&holder.token);
    block_on(greenlight::engine::abort::abort(
        &w.ctx(&cloud, &holder),
        &mut Recorder::default(),
    ))
    .expect("aborted");
    let (report, now) = status_of(&w);
    let text = strip(&status_text(&report, now));
    assert!(report.release.is_none(), "{text}");
    assert!(text.contains("slot b failed: "), "{text}");
    redacted!({ insta::assert_snapshot!("status_after_an_abort_human", text) });
}

// ---------------------------------------------------------------------------------------------
// status --watch (the fake)

/// Runs `status --watch` on `w` with `view`, alongside `meanwhile`; `stop_after` reads stop it
/// as Ctrl-C would.
fn watch_with<F: std::future::Future<Output = ()>>(
    w: &World,
    view: &mut StatusView,
    options: WatchOptions,
    stop_after: Option<usize>,
    meanwhile: F,
) -> (Result<(), Failure>, Vec<String>) {
    let stop = Stop::new();
    let mut reads = Vec::new();
    let watching = async {
        let mut show = |read: WatchRead<'_>, now: SystemTime| {
            reads.push(match read {
                WatchRead::Report(r) => format!(
                    "report: {}",
                    r.release.as_ref().map_or("settled".into(), |r| format!(
                        "{} step {:?}",
                        r.release, r.step
                    ))
                ),
                WatchRead::Failed(f) => format!("failed: {f}"),
            });
            view.show(read, now);
            if stop_after.is_some_and(|n| reads.len() >= n) {
                stop.request(Signal::Interrupt);
            }
        };
        status::watch(&w.cloud, &w.clock, &w.spec, &stop, options, &mut show).await
    };
    let (result, ()) = block_on(async { tokio::join!(watching, meanwhile) });
    view.finish();
    (result, reads)
}

fn every(seconds: u64, until_settled: bool) -> WatchOptions {
    WatchOptions {
        interval: Duration::from_secs(seconds),
        until_settled,
    }
}

#[test]
fn watch_until_settled_ends_at_once_when_nothing_is_in_progress() {
    let w = world();
    let out = Capture::new();
    let mut view = StatusView::plain(Box::new(out.clone()), false, Duration::from_secs(2));
    let (result, reads) = watch_with(&w, &mut view, every(2, true), None, async {});
    result.expect("settled");
    assert_eq!(reads, ["report: settled"]);
    let text = out.text();
    assert!(
        text.starts_with("[2026-"),
        "a timestamp over the block: {text}"
    );
    assert!(
        text.contains("service checkout: live release checkout-blue (slot a)"),
        "{text}"
    );
}

#[test]
fn watch_until_settled_follows_a_release_to_its_end_and_prints_only_changes() {
    let w = world_with(&canary(
        "{ weight = 25, pause = \"manual\" }, { weight = 100 }",
    ));
    let (mut reporter, _) = log_reporter(&w, false);
    run_deploy(&w, &mut reporter, &canary_request(&w), no_wait()).expect("paused");
    drop(reporter);
    let out = Capture::new();
    let mut view = StatusView::plain(Box::new(out.clone()), false, Duration::from_secs(2));
    // Someone promotes after half a minute.
    let start = w.clock.now();
    let promote = async {
        // Half a minute of the watch's reads (each sleep of the watch moves the fake clock).
        while w.clock.now() < start + Duration::from_secs(30) {
            tokio::task::yield_now().await;
        }
        let holder = holder("promote-watch");
        let cloud = w.cloud.runner(&holder.token);
        greenlight::engine::promote::promote(
            &w.ctx(&cloud, &holder),
            &mut Recorder::default(),
            false,
        )
        .await
        .expect("promoted");
    };
    let (result, reads) = watch_with(&w, &mut view, every(2, true), None, promote);
    result.expect("settled on v2");
    assert!(reads.len() > 3, "{reads:?}");
    assert_eq!(
        reads.first().map(String::as_str),
        Some("report: v2 step Some(1)")
    );
    assert_eq!(reads.last().map(String::as_str), Some("report: settled"));
    let text = out.text();
    // Two blocks: at the gate, and live; the reads in between changed nothing.
    let blocks = text.matches("service checkout: ").count();
    assert_eq!(blocks, 2, "{text}");
    assert!(text.contains("live release v2 (slot b)"), "{text}");
    w.assert_safe();
}

#[test]
fn watch_until_settled_fails_with_exit_3_when_the_release_is_aborted() {
    let w = world_with(&canary(
        "{ weight = 25, pause = \"manual\" }, { weight = 100 }",
    ));
    let (mut reporter, _) = log_reporter(&w, false);
    run_deploy(&w, &mut reporter, &canary_request(&w), no_wait()).expect("paused");
    drop(reporter);
    let out = Capture::new();
    let mut view = StatusView::plain(Box::new(out.clone()), false, Duration::from_secs(2));
    let start = w.clock.now();
    let abort = async {
        while w.clock.now() < start + Duration::from_secs(10) {
            tokio::task::yield_now().await;
        }
        let holder = holder("abort-watch");
        let cloud = w.cloud.runner(&holder.token);
        greenlight::engine::abort::abort(&w.ctx(&cloud, &holder), &mut Recorder::default())
            .await
            .expect("aborted");
    };
    let (result, _) = watch_with(&w, &mut view, every(2, true), None, abort);
    let failure = result.expect_err("the release failed");
    assert_eq!(exit::code(&failure), exit::RELEASE_FAILED, "{failure}");
    let message = failure.to_string();
    assert!(message.starts_with("release v2 failed: "), "{message}");
    assert!(
        message.contains("release checkout-blue takes all traffic"),
        "{message}"
    );
}

#[test]
fn watch_rides_out_a_failed_read_and_stops_on_ctrl_c() {
    let w = world();
    // The third read's fleets call is throttled.
    w.cloud.fail(
        "fleets",
        3,
        FaultTiming::Before,
        CloudErrorKind::Unavailable,
    );
    let out = Capture::new();
    let mut view = StatusView::plain(Box::new(out.clone()), false, Duration::from_secs(5));
    let (result, reads) = watch_with(&w, &mut view, every(5, false), Some(5), async {});
    result.expect("Ctrl-C ends a plain watch well");
    assert_eq!(reads.len(), 5, "{reads:?}");
    assert!(reads[2].starts_with("failed: "), "{reads:?}");
    assert!(reads[3].starts_with("report: "), "{reads:?}");
    let text = out.text();
    assert!(text.contains("warning: status read failed ("), "{text}");
    // Nothing changed: one block.
    assert_eq!(text.matches("service checkout: ").count(), 1, "{text}");

    // With --until-settled, Ctrl-C is not "settled": exit 130, saying where things stood.
    let w = world_with(&canary(
        "{ weight = 25, pause = \"manual\" }, { weight = 100 }",
    ));
    let (mut reporter, _) = log_reporter(&w, false);
    run_deploy(&w, &mut reporter, &canary_request(&w), no_wait()).expect("paused");
    drop(reporter);
    let mut view = StatusView::plain(Box::new(Capture::new()), false, Duration::from_secs(5));
    let (result, _) = watch_with(&w, &mut view, every(5, true), Some(2), async {});
    let failure = result.expect_err("interrupted");
    assert_eq!(exit::code(&failure), exit::INTERRUPTED);
    assert!(
        failure
            .to_string()
            .contains("release v2 was still in progress at step 1/2"),
        "{failure}"
    );
}

#[test]
fn watch_ends_on_a_failure_that_is_not_transient() {
    let w = world();
    w.cloud.fail(
        "fleets",
        2,
        FaultTiming::Before,
        CloudErrorKind::AccessDenied,
    );
    let mut view = StatusView::plain(Box::new(Capture::new()), false, Duration::from_secs(5));
    let (result, reads) = watch_with(&w, &mut view, every(5, false), Some(10), async {});
    let failure = result.expect_err("access denied ends it");
    assert_eq!(exit::code(&failure), exit::BAD_INPUT, "{failure}");
    assert_eq!(reads.len(), 1, "{reads:?}");
}

#[test]
fn watch_on_a_terminal_redraws_in_place() {
    let w = world();
    let term = CaptureTerm::new(200);
    let mut view = StatusView::terminal(term.clone(), false, Duration::from_secs(2));
    let (result, reads) = watch_with(&w, &mut view, every(2, false), Some(4), async {});
    result.expect("stopped");
    assert_eq!(reads.len(), 4);
    let screen = term.screen();
    // One status block (drawn four times over itself) and its footer, left on the screen.
    assert_eq!(
        screen
            .iter()
            .filter(|l| l.starts_with("service checkout:"))
            .count(),
        1,
        "{screen:#?}"
    );
    let footer = screen.last().expect("a footer");
    assert!(footer.starts_with("every 2s · read at 2026-"), "{footer}");
    assert!(footer.ends_with("Ctrl-C to stop"), "{footer:?}");
    assert!(
        term.writes()
            .iter()
            .filter(|w| w.starts_with("service checkout:"))
            .count()
            >= 4,
        "redrawn at each read"
    );
}

// ---------------------------------------------------------------------------------------------
// The real binary on the emulator

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn gl(
    s: &super::harness::Session,
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let out = s
        .greenlight(config)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run greenlight");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn the_binary_status_color_and_watch() {
    let s = session();
    let seeded = s.seed("term", &[]);
    let (config, blue_image) = (&seeded.config, seeded.image(0));
    let template = seeded.str("launch_template_id");

    // status: each fleet's AMI and launch template version.
    let human = gl(&s, config, &["status"], &[]);
    assert_eq!(human.code, Some(0), "{human}");
    assert!(
        human.stdout.contains("IMAGE") && human.stdout.contains("LAUNCH TEMPLATE"),
        "{human}"
    );
    let row = human
        .stdout
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap_or_else(|| panic!("no row for slot a: {human}"));
    assert!(row.contains(&blue_image), "{row}");
    assert!(row.contains(&format!("{template}:")), "{row}");
    let json = gl(&s, config, &["status", "--output", "json"], &[]);
    let report: Value = serde_json::from_str(&json.stdout).expect("one JSON object");
    assert_eq!(
        report["traffic"][0]["image_id"],
        blue_image.as_str(),
        "{report}"
    );
    assert_eq!(
        report["traffic"][0]["launch_template_id"],
        template.as_str(),
        "{report}"
    );
    assert!(
        report["traffic"][0]["launch_template_version"].is_string(),
        "{report}"
    );
    assert!(report["traffic"][1]["image_id"].is_null(), "{report}");

    // Colour: not on a pipe by default; --color always; CLICOLOR_FORCE unless NO_COLOR;
    // --color never over CLICOLOR_FORCE; --color always over NO_COLOR.
    let colored = |run: &Run| run.stdout.contains("\x1b[");
    assert!(!colored(&human), "{human}");
    for (args, env, expect) in [
        (vec!["--color", "always", "status"], vec![], true),
        (vec!["status"], vec![("CLICOLOR_FORCE", "1")], true),
        (
            vec!["status"],
            vec![("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
            false,
        ),
        (
            vec!["--color", "never", "status"],
            vec![("CLICOLOR_FORCE", "1")],
            false,
        ),
        (
            vec!["--color", "always", "status"],
            vec![("NO_COLOR", "1")],
            true,
        ),
    ] {
        let run = gl(&s, config, &args, &env);
        assert_eq!(run.code, Some(0), "{run}");
        assert_eq!(colored(&run), expect, "{args:?} {env:?}: {run}");
        assert_eq!(strip(&run.stdout), human.stdout, "{args:?} {env:?}");
    }

    // validate and cleanup too.
    for args in [vec!["validate"], vec!["cleanup", "--dry-run"]] {
        let plain = gl(&s, config, &args, &[]);
        assert_eq!(plain.code, Some(0), "{plain}");
        assert!(!colored(&plain), "{plain}");
        let always: Vec<&str> = ["--color", "always"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let run = gl(&s, config, &always, &[]);
        assert_eq!(run.code, Some(0), "{run}");
        assert!(colored(&run), "{args:?}: {run}");
        // The same text under the styles (times aside).
        let untimed = |text: &str| {
            text.lines()
                .map(|l| l.split_once("] ").map_or(l, |(_, rest)| rest).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            untimed(&strip(&run.stdout)),
            untimed(&plain.stdout),
            "{args:?}"
        );
    }

    // --watch --until-settled for scripts: settled at once, one object with its time.
    let run = gl(
        &s,
        config,
        &[
            "status",
            "--watch",
            "--until-settled",
            "--interval",
            "1s",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{run}");
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 1, "{run}");
    assert_eq!(lines[0]["service"], seeded.service.as_str(), "{run}");
    assert!(
        lines[0]["time"].is_string() && lines[0]["elapsed_ms"].is_u64(),
        "{run}"
    );
    let run = gl(&s, config, &["status", "--watch", "--until-settled"], &[]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("live release"), "{run}");
    // A bad interval changes nothing: exit 2.
    let run = gl(&s, config, &["status", "--watch", "--interval", "0s"], &[]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("--interval"), "{run}");
}

#[test]
fn the_binary_json_event_stream_of_a_deploy() {
    let s = session();
    let seeded = s.seed("termjson", &[]);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &[
            "deploy",
            "--release",
            "v2",
            "--image-id",
            &image,
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{run}");
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    // Every event has its time and elapsed_ms, in order.
    let mut last = 0;
    for event in &events {
        let elapsed = event["elapsed_ms"].as_u64().expect("elapsed_ms");
        assert!(elapsed >= last, "{run}");
        last = elapsed;
        assert!(
            event["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{event}"
        );
    }
    // Whether green is healthy at the first look or after a wait (and so how many health
    // events there are) depends on how fast the emulator is: health events are checked here and
    // left out of the snapshot. A wait's last one says green was healthy before the flip.
    let health: Vec<&Value> = events.iter().filter(|e| e["event"] == "health").collect();
    if let Some(last) = health.last() {
        assert_eq!(last["healthy"], last["desired"], "{run}");
    }
    let kept: Vec<&Value> = events.iter().filter(|e| e["event"] != "health").collect();
    // On an endpoint that keeps its state (LocalStack) the service name has a suffix.
    let kept: Value = serde_json::from_str(
        &serde_json::to_string(&kept)
            .expect("serializes")
            .replace(&seeded.service, "termjson"),
    )
    .expect("still JSON");
    redacted!({ insta::assert_json_snapshot!(kept) });
}
