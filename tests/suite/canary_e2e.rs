//! Canary releases end to end: the real binary on the emulator, with the listener's weights read
//! back while it works (the shared prober, `prober.rs`), deploys run as child processes so
//! `promote`, `abort`, `status` and a crash happen from another process, and AWS read directly
//! with the SDK.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use serde_json::{Value, json};

use super::harness::{Seeded, Session, forward_action, forwards_of, request, session};
use super::prober;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The listener's forward action as read back: (target group, weight) in the order AWS lists
/// them, and its target-group stickiness (enabled, seconds) when it has one.
#[derive(Debug, Clone, PartialEq)]
struct RouterView {
    forwards: Vec<(String, i32)>,
    sticky: Option<(bool, Option<i32>)>,
}

impl RouterView {
    fn weight(&self, tg: &str) -> i32 {
        self.forwards
            .iter()
            .filter(|(t, _)| t == tg)
            .map(|(_, w)| *w)
            .sum()
    }

    fn total(&self) -> i32 {
        self.forwards.iter().map(|(_, w)| *w).sum()
    }

    /// `tg`'s share of the traffic in percent.
    fn percent(&self, tg: &str) -> i32 {
        match self.total() {
            0 => 0,
            total => self.weight(tg) * 100 / total,
        }
    }

    fn sticky_enabled(&self) -> bool {
        matches!(self.sticky, Some((true, _)))
    }
}

async fn read_router(elb: &ElbClient, listener: &str) -> Result<RouterView, String> {
    let out = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let actions = out
        .listeners()
        .first()
        .ok_or("no listener")?
        .default_actions()
        .to_vec();
    let action = forward_action(&actions).ok_or("no forward action")?;
    let config = action.forward_config();
    let forwards = forwards_of(action);
    let sticky = config
        .and_then(|c| c.target_group_stickiness_config())
        .map(|s| (s.enabled().unwrap_or(false), s.duration_seconds()));
    Ok(RouterView { forwards, sticky })
}

/// A fleet as AWS has it.
#[derive(Debug)]
struct Group {
    desired: i32,
    in_service: usize,
    target_groups: Vec<String>,
    tags: BTreeMap<String, String>,
}

impl Group {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// Direct AWS reads for assertions, independent of greenlight's adapter.
struct Aws {
    rt: tokio::runtime::Runtime,
    elb: ElbClient,
    asg: AsgClient,
    ec2: Ec2Client,
}

impl Aws {
    fn new(session: &Session) -> Aws {
        let rt = runtime();
        let conf = rt.block_on(session.sdk());
        Aws {
            elb: ElbClient::new(&conf),
            asg: AsgClient::new(&conf),
            ec2: Ec2Client::new(&conf),
            rt,
        }
    }

    fn router(&self, listener: &str) -> RouterView {
        self.rt
            .block_on(read_router(&self.elb, listener))
            .expect("read the listener")
    }

    fn group(&self, name: &str) -> Option<Group> {
        let out = self
            .rt
            .block_on(
                self.asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(name)
                    .send(),
            )
            .expect("describe groups");
        let g = out.auto_scaling_groups().first()?;
        Some(Group {
            desired: g.desired_capacity().unwrap_or_default(),
            in_service: g
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .count(),
            target_groups: g.target_group_arns().to_vec(),
            tags: g
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        })
    }

    /// The service's lock object: (id, tags), if one exists.
    fn lock(&self, seeded: &Seeded) -> Option<(String, BTreeMap<String, String>)> {
        let name = format!("greenlight-lock.{}", seeded.service);
        let out = self
            .rt
            .block_on(
                self.ec2
                    .describe_launch_templates()
                    .launch_template_names(&name)
                    .send(),
            )
            .ok()?;
        let template = out.launch_templates().first()?;
        let tags = template
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Some((template.launch_template_id()?.to_owned(), tags))
    }
}

/// One thing the prober saw: the listener, and the states of the targets in green's target
/// group (sorted; empty before green has any).
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    router: RouterView,
    green_health: Vec<String>,
}

impl Sample {
    /// Every green target registered is healthy, and there are `n` of them.
    fn green_healthy(&self, n: usize) -> bool {
        self.green_health.len() == n && self.green_health.iter().all(|s| s == "healthy")
    }
}

/// The shared prober (`prober.rs`) on the seeded listener and both slots. `finish` checks its
/// judgement (no traffic on a target group without a healthy target, no failed read, a few
/// samples at least) and gives every distinct (listener, green's target states) it saw, with
/// the time it first saw it: the order traffic moved in, read back from AWS. Green's health is
/// read just before the listener in each sample.
struct Prober {
    inner: prober::Prober,
    green_tg: String,
}

impl Prober {
    fn start(session: &Session, seeded: &Seeded) -> Prober {
        Prober {
            inner: prober::Probing::seeded(seeded).start(session),
            green_tg: seeded.target_group(1),
        }
    }

    fn finish(self) -> Vec<(SystemTime, Sample)> {
        let probe = self.inner.stop();
        if let Err(problem) = probe.check(prober::MIN_SAMPLES) {
            panic!("{problem}\n{}", probe.summary());
        }
        let green = self.green_tg.as_str();
        probe
            .changes(|s| (s.after.clone(), s.states(green)))
            .into_iter()
            .map(|s| {
                let router = RouterView {
                    forwards: s.after.forwards.clone(),
                    sticky: s.after.sticky,
                };
                let green_health = s.states(green);
                (
                    s.at,
                    Sample {
                        router,
                        green_health,
                    },
                )
            })
            .collect()
    }
}

/// One finished greenlight run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The JSON events, one per stdout line.
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{self}"))
            })
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{self}"))
    }
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

fn gl(s: &Session, config: &Path, args: &[&str]) -> Run {
    Run::from(
        s.greenlight(config)
            .args(args)
            .output()
            .expect("run greenlight"),
    )
}

/// greenlight running in the background, as a second terminal or pipeline would run it.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Background {
    fn spawn(s: &Session, config: &Path, args: &[&str]) -> Background {
        let dir = tempfile::tempdir().expect("temp dir");
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_greenlight"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(s.aws_env())
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start greenlight");
        Background {
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn output(&self, code: Option<i32>) -> Run {
        Run {
            code,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// What it printed so far.
    fn so_far(&self) -> Run {
        self.output(None)
    }

    fn wait(mut self, timeout: Duration) -> Run {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.output(status.code());
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "greenlight did not exit within {timeout:?}:\n{}",
                    self.output(None)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: a crash, no safe point.
    fn kill(mut self) -> Run {
        self.child.kill().expect("kill");
        let status = self.child.wait().expect("wait");
        self.output(status.code())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it gives a value, or panics after `timeout` with `what` and the last
/// thing `check` saw (through `last`).
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting until {what}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Makes the seeded config a canary with `steps` (TOML array) and `extra` lines in [canary].
fn make_canary(seeded: &Seeded, steps: &str, extra: &str) {
    let text = std::fs::read_to_string(&seeded.config).expect("seeded config");
    // A top-level key must come before the first table.
    let text = format!("strategy = \"canary\"\n{text}\n[canary]\nsteps = {steps}\n{extra}\n");
    std::fs::write(&seeded.config, text).expect("write config");
}

fn append_config(seeded: &Seeded, lines: &str) {
    let text = std::fs::read_to_string(&seeded.config).expect("seeded config");
    std::fs::write(&seeded.config, format!("{text}\n{lines}\n")).expect("write config");
}

fn status_json(s: &Session, seeded: &Seeded) -> Value {
    let run = gl(s, &seeded.config, &["status", "--output", "json"]);
    assert_eq!(run.code, Some(0), "{run}");
    run.json()
}

fn deploy_args<'a>(release: &'a str, image: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["deploy", "--release", release, "--image-id", image];
    args.extend_from_slice(more);
    args
}

/// Events named `name` (and, for `step`, only those whose action is `action`).
fn events_named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

fn position(events: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} event in {events:#?}"))
}

fn rfc3339(value: &Value) -> SystemTime {
    humantime::parse_rfc3339_weak(
        value
            .as_str()
            .unwrap_or_else(|| panic!("{value} is a time")),
    )
    .unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// The emulator's request log from `mark` on, with times: (service, action, unix seconds).
fn log_since(s: &Session, mark: usize) -> Vec<(String, String, f64)> {
    let (status, body) = request(
        &s.emulator.endpoint,
        "GET",
        &format!("/_greenlight/requests?since={mark}"),
        "",
    )
    .expect("read the request log");
    assert_eq!(status, 200, "{body}");
    let log: Value = serde_json::from_str(&body).expect("request log JSON");
    log["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap_or_default().to_owned(),
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["time"].as_f64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Green's targets report `initial` for two seconds after they are first read, then healthy,
/// so the wait before the first step is real (by time, not by reads: the prober reads too).
fn slow_healthy(s: &Session, asg: &str) {
    if s.emulator.hooks {
        s.script_health(
            json!({"asg_name": asg}),
            json!([
                {"state": "initial", "seconds": 2},
                {"state": "healthy"}
            ]),
        );
    }
}

/// The distinct (blue %, green %) states in order, consecutive repeats merged.
fn shares(samples: &[(SystemTime, Sample)], blue: &str, green: &str) -> Vec<(i32, i32)> {
    let mut out: Vec<(i32, i32)> = Vec::new();
    for (_, Sample { router: view, .. }) in samples {
        let share = (view.percent(blue), view.percent(green));
        if out.last() != Some(&share) {
            out.push(share);
        }
    }
    out
}

/// When the prober first saw green at `percent`.
fn first_seen(samples: &[(SystemTime, Sample)], green: &str, percent: i32) -> SystemTime {
    samples
        .iter()
        .find(|(_, s)| s.router.percent(green) == percent)
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("green never at {percent}%: {samples:#?}"))
}

#[test]
fn canary_weights_move_step_by_step_and_are_read_back() {
    let s = session();
    let seeded = s.seed("cart", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 10, pause = "1s" }, { weight = 50, pause = "1s" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    slow_healthy(&s, &seeded.fleet("v2"));
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let prober = Prober::start(&s, &seeded);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    let samples = prober.finish();
    assert_eq!(run.code, Some(0), "{run}");
    let events = run.events();

    // The stream: started as a canary with its plan, then the steps in order.
    let started = &events[0];
    assert_eq!(started["event"], "deploy_started", "{run}");
    assert_eq!(started["strategy"], "canary");
    assert_eq!(started["plan"], "canary 10@1s,50@1s,100");
    assert_eq!(started["release"], "v2");
    assert_eq!(started["idle_target_group"], green_tg.as_str());
    let moves: Vec<(String, Value, Value)> = events
        .iter()
        .filter(|e| e["event"] == "step" && (e["action"] == "shift" || e["action"] == "flip"))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["weight"].clone(),
                e["step"].clone(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("shift".to_owned(), json!(10), json!(1)),
            ("shift".to_owned(), json!(50), json!(2)),
            ("flip".to_owned(), Value::Null, Value::Null),
        ],
        "{run}"
    );
    for e in events.iter().filter(|e| e["action"] == "shift") {
        assert_eq!(e["of"], 3, "{e}");
        assert_eq!(e["to"], green_tg.as_str(), "{e}");
        assert_eq!(e["from"], blue_tg.as_str(), "{e}");
    }
    let pauses = events_named(&events, "pause");
    assert_eq!(pauses.len(), 2, "one pause event per timed pause: {run}");
    for (pause, (step, weight)) in pauses.iter().zip([(1, 10), (2, 50)]) {
        assert_eq!(pause["step"], step, "{pause}");
        assert_eq!(pause["of"], 3, "{pause}");
        assert_eq!(pause["weight"], weight, "{pause}");
        assert_eq!(pause["release"], "v2", "{pause}");
        let until = rfc3339(&pause["until"]);
        let now = SystemTime::now();
        assert!(
            until <= now && until + Duration::from_secs(60) > now,
            "{pause}"
        );
    }
    let at = |action: &str, weight: i64| {
        position(&events, action, |e| {
            e["event"] == "step"
                && e["action"] == action
                && (action == "flip" || e["weight"] == weight)
        })
    };
    let (shift10, shift50, flip) = (at("shift", 10), at("shift", 50), at("flip", 100));
    let pause1 = position(&events, "pause 1", |e| {
        e["event"] == "pause" && e["step"] == 1
    });
    let pause2 = position(&events, "pause 2", |e| {
        e["event"] == "pause" && e["step"] == 2
    });
    assert!(
        shift10 < pause1 && pause1 < shift50 && shift50 < pause2 && pause2 < flip,
        "{run}"
    );
    // With scripted health, the deploy reported green not healthy yet before the first move.
    if s.emulator.hooks {
        let unready = position(&events, "not-yet-healthy health", |e| {
            e["event"] == "health" && e["healthy"] != e["desired"]
        });
        assert!(unready < shift10, "{run}");
    }
    let last = events.last().unwrap();
    assert_eq!(last["event"], "released", "{run}");
    assert_eq!(last["release"], "v2");
    assert_eq!(last["flipped"], true);
    assert_eq!(last["slot"], "b");

    // Read back from AWS while it ran: 100/0 → 90/10 → 50/50 → 0/100, nothing else, and every
    // write greenlight made gave weights summing to 100.
    assert_eq!(
        shares(&samples, &blue_tg, &green_tg),
        [(100, 0), (90, 10), (50, 50), (0, 100)],
        "{samples:#?}"
    );
    for (_, sample) in &samples[1..] {
        assert_eq!(sample.router.total(), 100, "{sample:?}");
    }
    for (_, sample) in &samples {
        assert!(
            !sample.router.sticky_enabled(),
            "no stickiness asked: {sample:?}"
        );
    }
    // Each weight green got, it got while all its targets were healthy (the prober reads green's
    // health just before the listener), and the first only after they were not healthy yet.
    let first_move = samples
        .iter()
        .position(|(_, s)| s.router.weight(&green_tg) > 0)
        .expect("green took traffic");
    for (n, (_, sample)) in samples.iter().enumerate().skip(1) {
        if sample.router.weight(&green_tg) != samples[n - 1].1.router.weight(&green_tg) {
            assert!(
                sample.green_healthy(2),
                "green's weight changed while it was not healthy: {sample:?}\n{samples:#?}"
            );
        }
    }
    if s.emulator.hooks {
        assert!(
            samples[..first_move]
                .iter()
                .any(|(_, s)| s.green_health.iter().any(|h| h == "initial")),
            "green was never seen not healthy before it took traffic: {samples:#?}"
        );
    }
    // The pauses held: each weight stayed for its pause (step-at is rounded up to the second,
    // so a pause is never shorter), allowing the prober's own polling lag.
    let (t10, t50, t100) = (
        first_seen(&samples, &green_tg, 10),
        first_seen(&samples, &green_tg, 50),
        first_seen(&samples, &green_tg, 100),
    );
    let held_10 = t50.duration_since(t10).unwrap_or_default();
    let held_50 = t100.duration_since(t50).unwrap_or_default();
    eprintln!("held 10% for {held_10:?}, 50% for {held_50:?} (pauses of 1s)");
    for held in [held_10, held_50] {
        assert!(
            held >= Duration::from_millis(900) && held < Duration::from_secs(10),
            "a 1s pause held {held:?}"
        );
    }

    // Four router writes and no more: join at weight 0, two shifts, the flip.
    if let Some(mark) = mark {
        let log = log_since(&s, mark);
        let writes = log
            .iter()
            .filter(|(_, action, _)| action == "ModifyListener")
            .count();
        assert_eq!(writes, 4, "{log:?}");
    }

    // The end state: v2 live on slot b, blue warm at capacity, no lock, no progress tags.
    let green = aws.group(&seeded.fleet("v2")).expect("green fleet");
    assert_eq!(green.tag("greenlight:phase"), Some("live"));
    assert_eq!(green.target_groups, std::slice::from_ref(&green_tg));
    for key in [
        "greenlight:step",
        "greenlight:step-at",
        "greenlight:promoted",
    ] {
        assert_eq!(
            green.tag(key),
            None,
            "{key} left on green: {:?}",
            green.tags
        );
    }
    let blue = aws.group(&seeded.fleet("blue")).expect("blue fleet");
    assert_eq!(blue.tag("greenlight:phase"), Some("warm"));
    assert_eq!((blue.desired, blue.in_service), (2, 2));
    assert!(aws.lock(&seeded).is_none(), "lock left behind");
    let router = aws.router(&listener);
    assert_eq!(router.percent(&green_tg), 100, "{router:?}");
}

#[test]
fn stickiness_is_on_while_split_and_off_after_the_flip() {
    let s = session();
    let seeded = s.seed("basket", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 20, pause = "1s" }, { weight = 100 }]"#,
        r#"stickiness = "10m""#,
    );
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    let prober = Prober::start(&s, &seeded);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    let samples = prober.finish();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        shares(&samples, &blue_tg, &green_tg),
        [(100, 0), (80, 20), (0, 100)],
        "{samples:#?}"
    );
    let split: Vec<&RouterView> = samples
        .iter()
        .map(|(_, s)| &s.router)
        .filter(|v| v.weight(&blue_tg) > 0 && v.weight(&green_tg) > 0)
        .collect();
    assert!(!split.is_empty());
    for view in &split {
        assert_eq!(
            view.sticky,
            Some((true, Some(600))),
            "while split: {view:?}"
        );
    }
    let after = aws.router(&listener);
    assert_eq!(after.percent(&green_tg), 100, "{after:?}");
    assert!(
        !after.sticky_enabled(),
        "stickiness still on after the flip: {after:?}"
    );
    // Every state after the flip has it off too (the flip itself turns it off, in one call).
    let flipped_at = first_seen(&samples, &green_tg, 100);
    for (t, sample) in &samples {
        if *t >= flipped_at {
            assert!(!sample.router.sticky_enabled(), "{sample:?}");
        }
    }
}

#[test]
fn manual_gate_holds_until_promote_from_another_process() {
    let s = session();
    let seeded = s.seed("gate", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 25, pause = "manual" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    let image = seeded.image(1);
    let mut deploy = Background::spawn(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    let status = wait_until(
        "75/25 and waiting for promote",
        Duration::from_secs(60),
        || {
            let router = aws.router(&listener);
            if (router.weight(&blue_tg), router.weight(&green_tg)) != (75, 25) {
                return Err(format!("{router:?}\n{}", deploy.so_far()));
            }
            let status = status_json(&s, &seeded);
            if status["release"]["waiting_for_promote"] != true {
                return Err(status.to_string());
            }
            Ok(status)
        },
    );
    let release = &status["release"];
    assert_eq!(release["release"], "v2", "{status}");
    assert_eq!(release["strategy"], "canary", "{status}");
    assert_eq!(release["step"], 1, "{status}");
    assert_eq!(release["steps"], 2, "{status}");
    assert_eq!(release["weight"], 25, "{status}");
    assert_eq!(release["phase"], "releasing", "{status}");
    assert!(release["pause_until"].is_null(), "{status}");
    assert_eq!(status["lock"]["command"], "deploy", "{status}");
    assert_eq!(status["lock"]["holder"]["pid"], deploy.pid(), "{status}");

    // The gate holds: the weight does not move and the deploy keeps waiting.
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(2) {
        let router = aws.router(&listener);
        assert_eq!(
            (router.weight(&blue_tg), router.weight(&green_tg)),
            (75, 25),
            "{router:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        deploy.running(),
        "deploy left the gate: {}",
        deploy.so_far()
    );

    let promote = gl(&s, &seeded.config, &["promote", "--output", "json"]);
    assert_eq!(promote.code, Some(0), "{promote}");
    let events = promote.events();
    let promoted = events_named(&events, "promoted");
    assert_eq!(promoted.len(), 1, "{promote}");
    assert_eq!(promoted[0]["release"], "v2");
    assert_eq!(promoted[0]["step"], 1);
    assert_eq!(promoted[0]["full"], false);
    let driver = promoted[0]["driver"].as_str().unwrap();
    assert!(
        driver.contains(&format!("pid {}", deploy.pid())),
        "the driver names the deploy's holder: {driver:?}"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "step"),
        "promote moved traffic itself while a deploy runs: {promote}"
    );

    let done = deploy.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(0), "{done}");
    let events = done.events();
    let gate = position(&events, "gate", |e| e["event"] == "gate");
    assert_eq!(events[gate]["step"], 1);
    assert_eq!(events[gate]["weight"], 25);
    let flip = position(&events, "flip", |e| e["action"] == "flip");
    assert!(gate < flip, "{done}");
    assert_eq!(events.last().unwrap()["event"], "released", "{done}");

    let router = aws.router(&listener);
    assert_eq!(router.percent(&green_tg), 100, "{router:?}");
    let green = aws.group(&seeded.fleet("v2")).unwrap();
    assert_eq!(green.tag("greenlight:phase"), Some("live"));
    assert_eq!(
        aws.group(&seeded.fleet("blue"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("warm")
    );
    assert!(aws.lock(&seeded).is_none(), "lock left behind");
}

#[test]
fn promote_drives_the_release_itself_when_no_deploy_runs() {
    let s = session();
    let seeded = s.seed("gate2", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 25, pause = "manual" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--no-wait", "--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let events = run.events();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "paused", "{run}");
    assert_eq!((&last["step"], &last["of"]), (&json!(1), &json!(2)));
    assert_eq!(last["weight"], 25);
    let router = aws.router(&listener);
    assert_eq!(
        (router.weight(&blue_tg), router.weight(&green_tg)),
        (75, 25),
        "{router:?}"
    );
    assert!(
        aws.lock(&seeded).is_none(),
        "--no-wait left the lock behind"
    );

    let promote = gl(&s, &seeded.config, &["promote", "--output", "json"]);
    assert_eq!(promote.code, Some(0), "{promote}");
    let events = promote.events();
    let promoted = position(&events, "promoted", |e| e["event"] == "promoted");
    assert_eq!(events[promoted]["driver"], "this process", "{promote}");
    let flip = position(&events, "flip", |e| e["action"] == "flip");
    let released = position(&events, "released", |e| e["event"] == "released");
    assert!(promoted < flip && flip < released, "{promote}");
    assert_eq!(events[released]["release"], "v2");
    assert_eq!(events[released]["flipped"], true);
    assert_eq!(aws.router(&listener).percent(&green_tg), 100);
    assert_eq!(
        aws.group(&seeded.fleet("v2"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );
    assert!(aws.lock(&seeded).is_none(), "lock left behind");
}

/// The checks after a release was stopped at 25%: all traffic on blue, v2 scaled to zero and
/// failed with `reason`, blue live.
fn assert_stopped(aws: &Aws, seeded: &Seeded, reason: &str) {
    let listener = seeded.str("listener_arn");
    let router = aws.router(&listener);
    assert_eq!(
        router.percent(&seeded.target_group(0)),
        100,
        "all traffic back on blue: {router:?}"
    );
    assert_eq!(router.weight(&seeded.target_group(1)), 0, "{router:?}");
    let green = aws.group(&seeded.fleet("v2")).expect("v2 fleet");
    assert_eq!(green.desired, 0, "{green:?}");
    assert_eq!(green.tag("greenlight:phase"), Some("failed"), "{green:?}");
    let failure = green.tag("greenlight:failure").unwrap_or_default();
    assert!(
        failure.contains(reason),
        "{failure:?} should say {reason:?}"
    );
    let blue = aws.group(&seeded.fleet("blue")).expect("blue fleet");
    assert_eq!(blue.tag("greenlight:phase"), Some("live"), "{blue:?}");
    assert_eq!((blue.desired, blue.in_service), (2, 2));
    assert!(aws.lock(seeded).is_none(), "lock left behind");
}

/// The release the seeded blue fleet runs, as greenlight names it.
fn blue_release(aws: &Aws, seeded: &Seeded) -> String {
    let blue = aws.group(&seeded.fleet("blue")).expect("blue fleet");
    blue.tag("greenlight:release")
        .map_or_else(|| seeded.fleet("blue"), str::to_owned)
}

/// route_back, then fail_release, then `last`, in that order; `aborted` names `live`.
fn assert_stop_events(run: &Run, last: &str, live: &str) {
    let events = run.events();
    let back = position(&events, "route_back", |e| e["action"] == "route_back");
    let fail = position(&events, "fail_release", |e| e["action"] == "fail_release");
    let end = position(&events, last, |e| e["event"] == last);
    assert!(back < fail && fail < end, "{run}");
    assert_eq!(events[end]["release"], "v2", "{run}");
    if last == "aborted" {
        assert_eq!(events[end]["live_release"], live, "{run}");
        assert_eq!(events[end]["slot"], "a", "{run}");
    }
}

#[test]
fn abort_mid_canary_returns_all_traffic_to_blue() {
    let s = session();
    let seeded = s.seed("abort", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 25, pause = "manual" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--no-wait", "--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        aws.router(&seeded.str("listener_arn"))
            .weight(&seeded.target_group(1)),
        25
    );

    let abort = gl(&s, &seeded.config, &["abort", "--output", "json"]);
    assert_eq!(abort.code, Some(0), "{abort}");
    assert_stop_events(&abort, "aborted", &blue_release(&aws, &seeded));
    assert_stopped(&aws, &seeded, "aborted by ");

    // A second abort (a retried job) finds nothing to stop and changes nothing.
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let again = gl(&s, &seeded.config, &["abort", "--output", "json"]);
    assert_eq!(again.code, Some(0), "{again}");
    assert_eq!(
        again.events().last().unwrap()["event"],
        "nothing_to_abort",
        "{again}"
    );
    if let Some(mark) = mark {
        assert_eq!(s.mutations_since(mark), Vec::<String>::new());
    }
    assert_stopped(&aws, &seeded, "aborted by ");

    // The service is usable again: the next release replaces the failed one.
    let image3 = seeded.image(2);
    let next = gl(
        &s,
        &seeded.config,
        &deploy_args("v3", &image3, &["--strategy", "bluegreen"]),
    );
    assert_eq!(next.code, Some(0), "{next}");
    let router = aws.router(&seeded.str("listener_arn"));
    assert_eq!(router.percent(&seeded.target_group(1)), 100, "{router:?}");
    assert_eq!(
        aws.group(&seeded.fleet("v3"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );
    assert!(
        aws.group(&seeded.fleet("v2")).is_none(),
        "the failed release was retired"
    );
}

#[test]
fn rollback_mid_canary_is_an_abort() {
    let s = session();
    let seeded = s.seed("rollmid", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 25, pause = "manual" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--no-wait"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let rollback = gl(&s, &seeded.config, &["rollback", "--output", "json"]);
    assert_eq!(rollback.code, Some(0), "{rollback}");
    assert_stop_events(&rollback, "aborted", &blue_release(&aws, &seeded));
    assert_stopped(&aws, &seeded, "rolled back by ");
}

#[test]
fn abort_while_a_deploy_waits_at_the_gate_is_carried_out_by_that_deploy() {
    let s = session();
    let seeded = s.seed("handover", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 25, pause = "manual" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let image = seeded.image(1);
    let deploy = Background::spawn(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    wait_until("green at 25%", Duration::from_secs(60), || {
        let router = aws.router(&listener);
        (router.weight(&seeded.target_group(1)) == 25)
            .then_some(())
            .ok_or(format!("{router:?}"))
    });
    let abort = gl(&s, &seeded.config, &["abort", "--output", "json"]);
    assert_eq!(abort.code, Some(0), "{abort}");
    let events = abort.events();
    let requested = position(&events, "abort_requested", |e| {
        e["event"] == "abort_requested"
    });
    assert!(
        events[requested]["driver"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {}", deploy.pid())),
        "{abort}"
    );
    let aborted = position(&events, "aborted", |e| e["event"] == "aborted");
    assert!(requested < aborted, "{abort}");
    let done = deploy.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(3), "the stopped deploy exits 3: {done}");
    assert_stop_events(&done, "release_failed", "");
    let last = done.events().last().cloned().unwrap();
    assert_eq!(last["event"], "error", "{done}");
    assert_eq!(last["exit_code"], 3, "{done}");
    // Carried out by the deploy, the reason reads "aborted by … at …", as a direct abort.
    assert_stopped(&aws, &seeded, "aborted by ");
}

#[test]
fn a_deploy_killed_during_a_pause_resumes_with_the_pause_clock_intact() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: reads the emulator's request log");
        return;
    }
    let seeded = s.seed("crash", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 10, pause = "20s" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let green_tg = seeded.target_group(1);
    let image = seeded.image(1);
    let args = deploy_args("v2", &image, &["--output", "json"]);
    let first = Background::spawn(&s, &seeded.config, &args);
    let first_pid = first.pid();
    let step_at = wait_until("step 1 recorded", Duration::from_secs(60), || {
        let green = aws.group(&seeded.fleet("v2"));
        match green
            .as_ref()
            .map(|g| (g.tag("greenlight:step"), g.tag("greenlight:step-at")))
        {
            Some((Some("1"), Some(at))) => Ok(humantime::parse_rfc3339_weak(at).expect("step-at")),
            _ => Err(format!("{green:?}")),
        }
    });
    let killed = first.kill();
    assert_eq!(killed.code, None, "killed by a signal: {killed}");
    assert_eq!(aws.router(&listener).weight(&green_tg), 10);
    let lock = aws.lock(&seeded).expect("the killed deploy's lock stays");
    assert_eq!(
        lock.1.get("greenlight:lock-pid").map(String::as_str),
        Some(first_pid.to_string().as_str())
    );
    std::thread::sleep(Duration::from_secs(3));
    // step-at is the step's time rounded up to the second, so the re-run starts at least 2s
    // after it, and a pause restarted by the re-run would end at least 22s after it.

    let mark = s.request_mark();
    let rerun_at = SystemTime::now();
    let run = gl(&s, &seeded.config, &args);
    assert_eq!(run.code, Some(0), "{run}");
    let events = run.events();
    let log = log_since(&s, mark);
    let writes: Vec<f64> = log
        .iter()
        .filter(|(_, action, _)| action == "ModifyListener")
        .map(|(_, _, t)| *t)
        .collect();
    let shifts: Vec<&Value> = events.iter().filter(|e| e["action"] == "shift").collect();
    eprintln!(
        "re-run: {} router write(s), shift events {shifts:?}; step-at {}, re-run at {}",
        writes.len(),
        humantime::format_rfc3339_seconds(step_at),
        humantime::format_rfc3339_millis(rerun_at)
    );
    // The pause it resumes counts from step-at, and says so.
    let pause = position(&events, "pause", |e| e["event"] == "pause");
    assert_eq!(events[pause]["step"], 1, "{run}");
    assert_eq!(
        rfc3339(&events[pause]["until"]),
        step_at + Duration::from_secs(20),
        "the pause must end 20s after step-at: {run}"
    );
    // Only the flip moved traffic: the 10% step was not made again from scratch.
    assert!(
        shifts.is_empty(),
        "the re-run shifted again instead of resuming: {run}"
    );
    assert_eq!(writes.len(), 1, "only the flip writes the router: {log:?}");
    let flip_at = writes[0];
    let due = unix(step_at + Duration::from_secs(20));
    assert!(
        flip_at >= due,
        "flipped {:.2}s before the pause ended",
        due - flip_at
    );
    // A poll interval (200ms) and the flip's own calls of slack, short of the 2s by which a
    // pause restarted at the re-run would be late.
    assert!(
        flip_at < due + 1.5,
        "flipped {:.2}s after the pause ended (re-run at +{:.2}s): the pause restarted?",
        flip_at - due,
        unix(rerun_at) - unix(step_at)
    );
    eprintln!(
        "flip {:.2}s after step-at + 20s; the re-run started {:.2}s after step-at",
        flip_at - due,
        unix(rerun_at) - unix(step_at)
    );
    assert_eq!(aws.router(&listener).percent(&green_tg), 100);
    assert_eq!(
        aws.group(&seeded.fleet("v2"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );
    assert!(aws.lock(&seeded).is_none(), "lock left behind");
}

#[test]
fn blue_green_gate_holds_at_zero_until_promote() {
    let s = session();
    let seeded = s.seed("bggate", &[]);
    append_config(&seeded, "[bluegreen]\npause_before_flip = \"manual\"");
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let (blue_tg, green_tg) = (seeded.target_group(0), seeded.target_group(1));
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--no-wait", "--output", "json"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let events = run.events();
    assert_eq!(events[0]["plan"], "bluegreen 0@manual,100", "{run}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "paused", "{run}");
    assert_eq!(
        (&last["step"], &last["of"]),
        (&json!(1), &json!(2)),
        "{run}"
    );
    assert_eq!(last["weight"], 0, "{run}");
    assert!(
        !events
            .iter()
            .any(|e| e["action"] == "shift" || e["action"] == "flip"),
        "{run}"
    );
    let router = aws.router(&listener);
    assert_eq!(router.percent(&blue_tg), 100, "{router:?}");
    assert_eq!(router.weight(&green_tg), 0, "{router:?}");
    let status = status_json(&s, &seeded);
    assert_eq!(
        status["traffic"][1]["healthy"], 2,
        "green healthy: {status}"
    );
    assert_eq!(status["traffic"][1]["total"], 2, "{status}");
    assert_eq!(status["release"]["waiting_for_promote"], true, "{status}");
    assert_eq!(status["release"]["weight"], 0, "{status}");

    let promote = gl(&s, &seeded.config, &["promote", "--output", "json"]);
    assert_eq!(promote.code, Some(0), "{promote}");
    let events = promote.events();
    position(&events, "flip", |e| e["action"] == "flip");
    assert_eq!(events.last().unwrap()["event"], "released", "{promote}");
    let router = aws.router(&listener);
    assert_eq!(router.percent(&green_tg), 100, "{router:?}");
    assert_eq!(
        aws.group(&seeded.fleet("v2"))
            .unwrap()
            .tag("greenlight:phase"),
        Some("live")
    );
    assert!(aws.lock(&seeded).is_none());
}

#[test]
fn canary_on_a_network_load_balancer_is_refused_with_nothing_changed() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: reads the emulator's request log");
        return;
    }
    let seeded = s.seed("nlb", &[]);
    let listener = seeded.str("listener_arn");
    assert!(listener.contains(":listener/app/"), "{listener}");
    let nlb = listener.replace(":listener/app/", ":listener/net/");
    let text = std::fs::read_to_string(&seeded.config)
        .unwrap()
        .replace(&listener, &nlb);
    std::fs::write(&seeded.config, text).unwrap();
    let bluegreen = seeded.config.with_file_name("bluegreen.toml");
    std::fs::copy(&seeded.config, &bluegreen).unwrap();
    make_canary(
        &seeded,
        r#"[{ weight = 10, pause = "1m" }, { weight = 100 }]"#,
        "",
    );
    let image = seeded.image(1);
    let deploy = deploy_args("v2", &image, &[]);
    let canary_deploy = deploy_args("v2", &image, &["--strategy", "canary"]);
    let cases: Vec<(&Path, Vec<&str>)> = vec![
        (&seeded.config, vec!["validate"]),
        (&seeded.config, deploy.clone()),
        (&seeded.config, vec!["validate", "--output", "json"]),
        // The config's strategy is blue/green; the flag asks for a canary.
        (&bluegreen, canary_deploy),
    ];
    for (config, args) in cases {
        let mark = s.request_mark();
        let run = gl(&s, config, &args);
        assert_eq!(run.code, Some(2), "{args:?}: {run}");
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{args:?}: {run}");
        assert!(
            run.stderr.contains("Network Load Balancer"),
            "{args:?}: {run}"
        );
        assert_eq!(
            s.mutations_since(mark),
            Vec::<String>::new(),
            "{args:?} changed AWS"
        );
        let (requests, _) = s.requests_since(mark);
        eprintln!("{args:?}: {} AWS requests before refusing", requests.len());
        if args.contains(&"json") {
            let events = run.events();
            assert_eq!(events.last().unwrap()["event"], "error", "{run}");
            assert_eq!(events.last().unwrap()["exit_code"], 2, "{run}");
        }
    }
}

#[test]
fn status_during_a_canary_shows_step_weight_pause_and_lock() {
    let s = session();
    let seeded = s.seed("status", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 10, pause = "6s" }, { weight = 50, pause = "manual" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let listener = seeded.str("listener_arn");
    let green_tg = seeded.target_group(1);
    let image = seeded.image(1);
    let mut deploy = Background::spawn(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--output", "json"]),
    );
    let pid = deploy.pid();

    // In the timed pause of step 1.
    let status = wait_until("step 1 of 3 at 10%", Duration::from_secs(60), || {
        let status = status_json(&s, &seeded);
        if status["release"]["step"] == 1 && status["release"]["pause_until"].is_string() {
            Ok(status)
        } else {
            Err(format!("{status}\n{}", deploy.so_far()))
        }
    });
    let release = &status["release"];
    assert_eq!(release["strategy"], "canary", "{status}");
    assert_eq!(release["plan"], "canary 10@6s,50@manual,100", "{status}");
    assert_eq!(release["steps"], 3, "{status}");
    assert_eq!(release["weight"], 10, "{status}");
    assert_eq!(release["waiting_for_promote"], false, "{status}");
    let pause_until = rfc3339(&release["pause_until"]);
    assert!(
        pause_until > SystemTime::now() - Duration::from_secs(1)
            && pause_until < SystemTime::now() + Duration::from_secs(7),
        "{status}"
    );
    assert_eq!(
        status["live_release"],
        blue_release(&aws, &seeded).as_str(),
        "{status}"
    );
    assert_eq!(status["live_slot"], "a", "{status}");
    assert_eq!(status["traffic"][1]["percent"], 10, "{status}");
    let lock = &status["lock"];
    assert_eq!(lock["command"], "deploy", "{status}");
    assert_eq!(lock["holder"]["pid"], pid, "{status}");
    assert!(lock["holder"]["who"].is_string(), "{status}");
    assert!(lock["holder"]["host"].is_string(), "{status}");
    assert!(lock["acquired_at"].is_string(), "{status}");
    assert!(lock["expires_at"].is_string(), "{status}");
    let human = gl(&s, &seeded.config, &["status"]);
    assert_eq!(human.code, Some(0), "{human}");
    let line = human
        .stdout
        .lines()
        .find(|l| l.starts_with("in progress:"))
        .unwrap_or_else(|| panic!("no in-progress line: {human}"));
    assert!(line.contains("release v2"), "{line}");
    assert!(line.contains("step 1/3"), "{line}");
    assert!(line.contains("takes 10% of the traffic"), "{line}");
    assert!(line.contains("next step at "), "{line}");
    let locked = human
        .stdout
        .lines()
        .find(|l| l.starts_with("locked: "))
        .unwrap_or_else(|| panic!("no lock line: {human}"));
    assert!(locked.contains(&format!("pid {pid}")), "{locked}");
    assert!(locked.contains("greenlight deploy"), "{locked}");

    // At the manual gate of step 2, the deploy still running.
    let status = wait_until("step 2 of 3 at the gate", Duration::from_secs(60), || {
        let status = status_json(&s, &seeded);
        if status["release"]["step"] == 2 {
            Ok(status)
        } else {
            Err(format!("{status}\n{}", deploy.so_far()))
        }
    });
    let release = &status["release"];
    assert_eq!(release["weight"], 50, "{status}");
    assert_eq!(release["waiting_for_promote"], true, "{status}");
    assert!(release["pause_until"].is_null(), "{status}");
    assert_eq!(status["lock"]["holder"]["pid"], pid, "{status}");
    let human = gl(&s, &seeded.config, &["status"]);
    let line = human
        .stdout
        .lines()
        .find(|l| l.starts_with("in progress:"))
        .unwrap_or_else(|| panic!("no in-progress line: {human}"));
    assert!(line.contains("step 2/3"), "{line}");
    assert!(line.contains("takes 50% of the traffic"), "{line}");
    assert!(line.contains("waiting for `greenlight promote`"), "{line}");
    assert!(deploy.running(), "{}", deploy.so_far());

    let promote = gl(&s, &seeded.config, &["promote"]);
    assert_eq!(promote.code, Some(0), "{promote}");
    let done = deploy.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(0), "{done}");
    assert_eq!(aws.router(&listener).percent(&green_tg), 100);

    // After: no release in progress, the lock free.
    let status = status_json(&s, &seeded);
    assert!(status["release"].is_null(), "{status}");
    assert!(status["lock"].is_null(), "{status}");
    assert_eq!(status["live_release"], "v2", "{status}");
    let human = gl(&s, &seeded.config, &["status"]);
    assert!(human.stdout.lines().any(|l| l == "lock: free"), "{human}");
    assert!(!human.stdout.contains("in progress:"), "{human}");
}

#[test]
fn json_names_the_blue_green_strategy_as_the_config_and_cli_do() {
    let s = session();
    let seeded = s.seed("bgname", &[]);
    append_config(&seeded, "[bluegreen]\npause_before_flip = \"manual\"");
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args(
            "v2",
            &image,
            &["--strategy", "bluegreen", "--no-wait", "--output", "json"],
        ),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let started = &run.events()[0];
    assert_eq!(started["event"], "deploy_started", "{run}");
    // README: `strategy` (`bluegreen`, `canary`); the plan in the same event agrees.
    assert_eq!(started["strategy"], "bluegreen", "{run}");
    let status = status_json(&s, &seeded);
    assert_eq!(status["release"]["strategy"], "bluegreen", "{status}");
}

#[test]
fn a_second_rollback_after_a_mid_canary_rollback_is_a_no_op() {
    let s = session();
    let seeded = s.seed("rollagain", &[]);
    make_canary(
        &seeded,
        r#"[{ weight = 25, pause = "manual" }, { weight = 100 }]"#,
        "",
    );
    let aws = Aws::new(&s);
    let image = seeded.image(1);
    let run = gl(
        &s,
        &seeded.config,
        &deploy_args("v2", &image, &["--no-wait"]),
    );
    assert_eq!(run.code, Some(0), "{run}");
    let first = gl(&s, &seeded.config, &["rollback"]);
    assert_eq!(first.code, Some(0), "{first}");
    assert_stopped(&aws, &seeded, "rolled back by ");

    // The same rollback again, as a retried pipeline step runs it.
    let again = gl(&s, &seeded.config, &["rollback", "--output", "json"]);
    assert!(
        !again.stderr.contains("never took traffic"),
        "v2 took 25% of the traffic before it was rolled back: {again}"
    );
    assert_eq!(again.code, Some(0), "{again}");
    assert!(
        again.stdout.contains(r#""event":"already_rolled_back""#),
        "{again}"
    );
    assert_stopped(&aws, &seeded, "rolled back by ");
}
