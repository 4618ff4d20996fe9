//! Several greenlight processes against one service at the same time, as separate pipelines
//! would run them: the real binary, started as child processes against the emulator, racing for
//! the service's lock. While they run, the *state prober* (`prober.rs`) reads the listener and
//! both target groups directly with the SDK every few milliseconds; its samples are checked for
//! traffic on a target group without a healthy target, for a slot holding two fleets, and for
//! no target group taking traffic.
//!
//! The emulator serialises requests, so the prober's reads interleave with the commands' calls.
//! A sample reads the listener, both target groups' health, the fleets, and the listener again;
//! a target group counts as taking traffic during the sample only if both listener reads give
//! it weight, so a sample that straddles a router write never reports a break that was not one.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use serde_json::{Value, json};

use super::harness::{Seeded, Session, forward_action, forwards_of, request, session};
use super::prober::{self, short};

/// How long the prober sleeps between two samples: modest, since every read it makes holds the
/// emulator's lock while the commands wait.
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// Samples a probe takes at least: fewer means the prober did not work.
const MIN_SAMPLES: usize = 5;

/// How long any one command may take here before it counts as stuck (and is killed).
const STUCK: Duration = Duration::from_secs(45);

/// How long `abort` may wait for a lock holder to stop the release: a holder polls every few
/// hundred milliseconds in these tests, so anything near abort's own 120 s patience is stuck.
const HANDOVER_STUCK: Duration = Duration::from_secs(15);

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn reset(s: &Session) {
    let (status, body) =
        request(&s.emulator.endpoint, "POST", "/moto-api/reset", "").expect("reset");
    assert!((200..300).contains(&status), "reset: {status} {body}");
}

/// Green's targets report `initial` for `observations` reads (the commands' and the prober's)
/// before they turn healthy, so a deploy spends a while waiting with the lock held.
fn slow_health(s: &Session, fleet: &str, observations: u32) {
    s.script_health(
        json!({"asg_name": fleet}),
        json!([
            {"state": "initial", "reason": "Elb.RegistrationInProgress",
             "observations": observations},
            {"state": "healthy"}
        ]),
    );
}

/// The canary plan of scenarios 4 and 5: a gate at 0%, a gate at 50%, then everything.
fn canary_config(seeded: &Seeded) {
    let text = std::fs::read_to_string(&seeded.config).expect("seeded config");
    // `strategy` is a top-level key: it goes before the first table.
    let text = format!(
        "strategy = \"canary\"\n{text}\n[canary]\nsteps = [{{ weight = 0, pause = \"manual\" }}, \
         {{ weight = 50, pause = \"manual\" }}, {{ weight = 100 }}]\n"
    );
    std::fs::write(&seeded.config, text).expect("write canary config");
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A greenlight process running in the background, `--output json`.
struct Proc {
    label: String,
    child: Child,
    started: Instant,
    lines: Receiver<String>,
    seen: Vec<String>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
    ended: Option<(ExitStatus, Duration)>,
}

/// Waits for every process to exit, each by `timeout` or killed then; their outcomes, in order.
fn finish_all(mut procs: Vec<Proc>, timeout: Duration) -> Vec<Outcome> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut done = true;
        for proc in &mut procs {
            done &= proc.poll();
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    procs.into_iter().map(Proc::collect).collect()
}

/// How a process ended.
struct Outcome {
    label: String,
    pid: u32,
    /// `None` when it was killed for taking too long.
    code: Option<i32>,
    events: Vec<Value>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Proc {
    /// Starts `greenlight --config <config> --output json <args>` with the environment
    /// [`Session::greenlight`] gives the binary.
    fn spawn(s: &Session, config: &Path, label: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("greenlight"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(s.aws_env())
            .arg("--config")
            .arg(config)
            .args(["--output", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start greenlight");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Proc {
            label: label.to_owned(),
            child,
            started: Instant::now(),
            lines,
            seen: Vec::new(),
            stdout: Some(stdout),
            stderr: Some(stderr),
            ended: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the process prints an event `matches` accepts.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let event = serde_json::from_str::<Value>(&line).ok();
                    self.seen.push(line);
                    if let Some(event) = event.filter(|e| matches(e)) {
                        return Ok(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} printed no {what} within {timeout:?}; it printed:\n{}",
                        self.label,
                        self.seen.join("\n")
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "{} ended before it printed {what}; it printed:\n{}",
                        self.label,
                        self.seen.join("\n")
                    ));
                }
            }
        }
    }

    /// Whether the process has exited; records when it did.
    fn poll(&mut self) -> bool {
        if self.ended.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.ended = Some((status, self.started.elapsed()));
        }
        self.ended.is_some()
    }

    /// Waits for the process to exit; kills it after `timeout`.
    fn finish(self, timeout: Duration) -> Outcome {
        finish_all(vec![self], timeout).pop().expect("one outcome")
    }

    fn collect(mut self) -> Outcome {
        let (code, elapsed) = match self.ended {
            Some((status, elapsed)) => (status.code(), elapsed),
            None => {
                // Still running at the deadline: ours, started by this test.
                let _ = self.child.kill();
                let _ = self.child.wait();
                (None, self.started.elapsed())
            }
        };
        if let Some(reader) = self.stdout.take() {
            let _ = reader.join();
        }
        self.seen.extend(self.lines.try_iter());
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let events = self
            .seen
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| json!({"event": "not json", "line": line}))
            })
            .collect();
        Outcome {
            label: self.label,
            pid: self.child.id(),
            code,
            events,
            stdout: self.seen.join("\n"),
            stderr,
            elapsed,
        }
    }
}

impl Outcome {
    fn events(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    fn has(&self, kind: &str) -> bool {
        !self.events(kind).is_empty()
    }

    fn did(&self, action: &str) -> bool {
        self.events
            .iter()
            .any(|e| e["event"] == "step" && e["action"] == action)
    }

    fn steps(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "step")
            .map(|e| e["action"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// One line: label, exit, time, the events' kinds.
    fn brief(&self) -> String {
        let kinds: Vec<String> = self
            .events
            .iter()
            .map(|e| match e["event"].as_str() {
                Some("step") => format!("step:{}", e["action"].as_str().unwrap_or("?")),
                Some(kind) => kind.to_owned(),
                None => "?".to_owned(),
            })
            .filter(|k| k != "health")
            .collect();
        format!(
            "{} (pid {}): {} in {:.2}s [{}]",
            self.label,
            self.pid,
            match self.code {
                Some(code) => format!("exit {code}"),
                None => "KILLED (still running)".to_owned(),
            },
            self.elapsed.as_secs_f64(),
            kinds.join(", ")
        )
    }

    /// Everything, for failure messages.
    fn full(&self) -> String {
        format!(
            "--- {}\nstdout:\n{}\nstderr:\n{}",
            self.brief(),
            self.stdout,
            self.stderr
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Reading AWS directly

fn forwards(actions: &[aws_sdk_elasticloadbalancingv2::types::Action]) -> Vec<(String, i32)> {
    forward_action(actions).map(forwards_of).unwrap_or_default()
}

fn weight_of(forwards: &[(String, i32)], target_group: &str) -> i32 {
    forwards
        .iter()
        .filter(|(tg, _)| tg == target_group)
        .map(|(_, w)| *w)
        .sum()
}

#[derive(Debug, Clone)]
struct Group {
    name: String,
    desired: i32,
    in_service: usize,
    target_groups: Vec<String>,
    tags: Vec<(String, String)>,
}

impl Group {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Aws {
    elb: ElbClient,
    asg: AsgClient,
    ec2: Ec2Client,
}

impl Aws {
    fn new(conf: &aws_config::SdkConfig) -> Aws {
        Aws {
            elb: ElbClient::new(conf),
            asg: AsgClient::new(conf),
            ec2: Ec2Client::new(conf),
        }
    }

    async fn forwards(&self, listener: &str) -> Result<Vec<(String, i32)>, String> {
        let out = self
            .elb
            .describe_listeners()
            .listener_arns(listener)
            .send()
            .await
            .map_err(|e| format!("DescribeListeners: {e:?}"))?;
        Ok(out
            .listeners()
            .first()
            .map(|l| forwards(l.default_actions()))
            .unwrap_or_default())
    }

    /// (instance, state) of every target the target group reports.
    async fn targets(&self, target_group: &str) -> Result<Vec<(String, String)>, String> {
        super::prober::read_targets(&self.elb, target_group).await
    }

    async fn groups(&self) -> Result<Vec<Group>, String> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .send()
            .await
            .map_err(|e| format!("DescribeAutoScalingGroups: {e:?}"))?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .map(|g| Group {
                name: g.auto_scaling_group_name().unwrap_or_default().to_owned(),
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
            .collect())
    }

    /// The service's lock, as (holder, command), if one exists.
    async fn lock(&self, service: &str) -> Result<Option<(String, String)>, String> {
        let out = self
            .ec2
            .describe_launch_templates()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("launch-template-name")
                    .values(format!("greenlight-lock.{service}"))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("DescribeLaunchTemplates: {e:?}"))?;
        Ok(out.launch_templates().first().map(|t| {
            let tag = |key: &str| {
                t.tags()
                    .iter()
                    .find(|tag| tag.key() == Some(key))
                    .and_then(|tag| tag.value())
                    .unwrap_or("")
                    .to_owned()
            };
            (
                tag("greenlight:lock-holder"),
                tag("greenlight:lock-command"),
            )
        }))
    }
}

/// Where a race left the service, when it left it well.
#[derive(Debug)]
struct Settled {
    /// The fleet taking all the traffic.
    live: String,
    groups: Vec<Group>,
}

impl Settled {
    fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// The service is at rest: 100% on one target group whose one fleet is live, at capacity and
/// entirely healthy; no slot holds two fleets; no lock is left.
fn settled(aws: &Aws, seeded: &Seeded) -> Result<Settled, String> {
    block_on(async {
        let forwards = aws.forwards(&seeded.str("listener_arn")).await?;
        let taking: Vec<&(String, i32)> = forwards.iter().filter(|(_, w)| *w > 0).collect();
        let [(tg, _)] = taking.as_slice() else {
            return Err(format!("traffic is not on one target group: {forwards:?}"));
        };
        let groups = aws.groups().await?;
        let in_slot = |tg: &str| -> Vec<&Group> {
            groups
                .iter()
                .filter(|g| g.target_groups.iter().any(|t| t == tg))
                .collect()
        };
        for slot in [seeded.target_group(0), seeded.target_group(1)] {
            if in_slot(&slot).len() > 1 {
                return Err(format!(
                    "two fleets in slot {}: {:?}",
                    short(&slot),
                    in_slot(&slot)
                ));
            }
        }
        let serving = in_slot(tg);
        let [live] = serving.as_slice() else {
            return Err(format!(
                "no fleet serves {}, which takes all the traffic",
                short(tg)
            ));
        };
        let targets = aws.targets(tg).await?;
        let healthy = targets.iter().filter(|(_, s)| s == "healthy").count();
        if live.desired < 1
            || live.in_service != live.desired as usize
            || healthy != live.desired as usize
            || live.tag("greenlight:phase") != Some("live")
        {
            return Err(format!(
                "the fleet taking the traffic is not live, at capacity and healthy: {live:?}, \
                 targets {targets:?}"
            ));
        }
        if let Some(lock) = aws.lock(&seeded.service).await? {
            return Err(format!("a lock is left: {lock:?}"));
        }
        Ok(Settled {
            live: live.name.clone(),
            groups: groups.clone(),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// The state prober

/// What the prober saw, judged: the shared prober's samples (see `prober.rs`), with this
/// module's own invariants added.
#[derive(Debug, Default)]
struct Probe {
    samples: usize,
    /// Samples in which a target group took traffic with no healthy target, or a slot held two
    /// fleets, or no target group took traffic (the first 20).
    breaks: Vec<String>,
    break_count: usize,
    errors: Vec<String>,
    /// Distinct traffic shares seen, e.g. "a:100 b:0", in order.
    shares: Vec<String>,
}

impl Probe {
    fn check(&self) -> Result<(), String> {
        if self.samples < MIN_SAMPLES {
            return Err(format!("the prober took only {} samples", self.samples));
        }
        if !self.errors.is_empty() {
            return Err(format!("the prober's reads failed: {:?}", self.errors));
        }
        if self.break_count > 0 {
            return Err(format!(
                "{} of {} samples broke an invariant:\n{}",
                self.break_count,
                self.samples,
                self.breaks.join("\n")
            ));
        }
        Ok(())
    }

    /// The shared prober's judgement (traffic on a target group with no healthy target), plus
    /// two fleets in one slot, and no target group taking traffic.
    fn of(seen: prober::Probe) -> Probe {
        let slots = &seen.target_groups;
        let mut probe = Probe {
            samples: seen.samples.len(),
            errors: seen.errors.clone(),
            ..Probe::default()
        };
        for (n, sample) in seen.samples.iter().enumerate() {
            let share = format!(
                "a:{} b:{}",
                sample.after.percent(&slots[0]),
                sample.after.percent(&slots[1])
            );
            if probe.shares.last() != Some(&share) {
                probe.shares.push(share);
            }
            let fleets = sample.fleets.clone().unwrap_or_default();
            let mut problems: Vec<String> = sample
                .violations(n)
                .iter()
                .map(|v| {
                    let slot = slots.iter().position(|tg| *tg == v.target_group);
                    let fleets = slot.and_then(|i| fleets.get(i));
                    format!("{v}; fleets {fleets:?}")
                })
                .collect();
            for (i, tg) in slots.iter().enumerate() {
                if fleets.get(i).is_some_and(|f| f.len() > 1) {
                    problems.push(format!(
                        "sample {n} at {} ms: two fleets in slot {}: {:?}",
                        sample.offset.as_millis(),
                        short(tg),
                        fleets[i]
                    ));
                }
            }
            if sample.before.total() == 0 && sample.after.total() == 0 {
                problems.push(format!(
                    "sample {n} at {} ms: no target group takes traffic: {:?}",
                    sample.offset.as_millis(),
                    sample.after.forwards
                ));
            }
            for problem in problems {
                probe.break_count += 1;
                if probe.breaks.len() < 20 {
                    probe.breaks.push(problem);
                }
            }
        }
        probe
    }
}

/// The shared prober on the seeded listener and both slots.
struct Prober(prober::Prober);

impl Prober {
    /// Starts sampling; the fleets (the heaviest read) are read every `fleets_every` samples.
    fn start(s: &Session, seeded: &Seeded, fleets_every: usize) -> Prober {
        Prober(
            prober::Probing::seeded(seeded)
                .every(PROBE_EVERY)
                .min_samples(MIN_SAMPLES)
                .fleets_every(fleets_every)
                .start(s),
        )
    }

    fn stop(self) -> Probe {
        Probe::of(self.0.stop())
    }
}

/// The results of the rounds of one test: each round's report, and what went wrong.
#[derive(Default)]
struct Rounds {
    lines: Vec<String>,
    /// Lines for the report that are not rounds.
    notes: Vec<String>,
    failures: Vec<String>,
    samples: usize,
}

impl Rounds {
    fn record(&mut self, name: &str, probe: &Probe, result: Result<String, String>) {
        self.samples += probe.samples;
        let shares = probe.shares.join(" -> ");
        match result.and_then(|summary| probe.check().map(|()| summary)) {
            Ok(summary) => self.lines.push(format!(
                "{name}: ok; {} prober samples, traffic {shares}\n    {summary}",
                probe.samples
            )),
            Err(problem) => {
                self.lines.push(format!(
                    "{name}: FAILED; {} prober samples, traffic {shares}",
                    probe.samples
                ));
                self.failures.push(format!("{name}: {problem}"));
            }
        }
    }

    fn finish(self, test: &str, started: Instant) {
        let report = format!(
            "{test}: {} rounds, {} prober samples, {:.1}s\n{}{}",
            self.lines.len(),
            self.samples,
            started.elapsed().as_secs_f64(),
            self.lines.join("\n"),
            self.notes
                .iter()
                .map(|note| format!("\n{note}"))
                .collect::<String>()
        );
        eprintln!("{report}");
        assert!(
            self.failures.is_empty(),
            "{report}\n\nFAILURES:\n{}",
            self.failures.join("\n\n")
        );
    }
}

fn deploy_args<'a>(release: &'a str, image: &'a str) -> Vec<&'a str> {
    vec!["deploy", "--release", release, "--image-id", image]
}

/// Runs a deploy to the end in the foreground; it must succeed.
fn deploy_now(s: &Session, seeded: &Seeded, release: &str, image: &str, extra: &[&str]) {
    let mut args = deploy_args(release, image);
    args.extend_from_slice(extra);
    let out = Proc::spawn(s, &seeded.config, &format!("deploy {release}"), &args).finish(STUCK);
    assert_eq!(out.code, Some(0), "setup failed:\n{}", out.full());
}

/// The prober is not vacuous: traffic sent to a target group with no targets is caught.
#[test]
fn the_prober_sees_traffic_on_a_target_group_without_healthy_targets() {
    let s = session();
    if skip_without_hooks(&s) {
        return;
    }
    let seeded = s.seed("probe", &[]);
    let aws = Aws::new(&block_on(s.sdk()));
    let prober = Prober::start(&s, &seeded, 1);
    std::thread::sleep(Duration::from_millis(150));
    let forward = |tg: String| {
        aws_sdk_elasticloadbalancingv2::types::Action::builder()
            .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
            .target_group_arn(tg)
            .build()
    };
    // Slot b has no fleet: nobody serves this.
    block_on(
        aws.elb
            .modify_listener()
            .listener_arn(seeded.str("listener_arn"))
            .default_actions(forward(seeded.target_group(1)))
            .send(),
    )
    .expect("ModifyListener");
    std::thread::sleep(Duration::from_millis(300));
    let probe = prober.stop();
    assert!(probe.errors.is_empty(), "{:?}", probe.errors);
    assert!(probe.break_count > 0, "no break seen: {probe:?}");
    assert!(
        probe.breaks[0].contains("no healthy target") && probe.breaks[0].contains("probe-b"),
        "{probe:?}"
    );
    let before_the_change = probe.samples - probe.break_count;
    assert!(before_the_change > 0, "no clean sample first: {probe:?}");
    assert!(settled(&aws, &seeded).is_err());
}

fn skip_without_hooks(s: &Session) -> bool {
    if !s.emulator.hooks {
        eprintln!("skipped: needs greenlight's emulator (reset, scripted health, request log)");
        return true;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// 1. Two deploys of different releases at once

#[test]
fn two_deploys_of_different_releases_at_once_one_wins_the_other_is_busy() {
    let s = session();
    if skip_without_hooks(&s) {
        return;
    }
    let started = Instant::now();
    let mut rounds = Rounds::default();
    for round in 0..3 {
        reset(&s);
        let seeded = s.seed("orders", &[]);
        let aws = Aws::new(&block_on(s.sdk()));
        let images = [("v2", seeded.image(1)), ("v3", seeded.image(2))];
        for (release, _) in &images {
            slow_health(&s, &seeded.fleet(release), 8);
        }
        // Alternate which one is started first.
        let order: Vec<&(&str, String)> = if round % 2 == 0 {
            images.iter().collect()
        } else {
            images.iter().rev().collect()
        };
        let prober = Prober::start(&s, &seeded, 1);
        let procs: Vec<Proc> = order
            .iter()
            .map(|(release, image)| {
                Proc::spawn(
                    &s,
                    &seeded.config,
                    &format!("deploy {release}"),
                    &deploy_args(release, image),
                )
            })
            .collect();
        let outs = finish_all(procs, STUCK);
        let result = (|| {
            let all = || {
                outs.iter()
                    .map(Outcome::full)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let winners: Vec<&Outcome> = outs.iter().filter(|o| o.code == Some(0)).collect();
            let losers: Vec<&Outcome> = outs.iter().filter(|o| o.code == Some(4)).collect();
            let ([winner], [loser]) = (winners.as_slice(), losers.as_slice()) else {
                return Err(format!("expected one exit 0 and one exit 4:\n{}", all()));
            };
            let won = winner.label.trim_start_matches("deploy ");
            let lost = loser.label.trim_start_matches("deploy ");
            if !winner
                .events("released")
                .iter()
                .any(|e| e["release"] == won)
            {
                return Err(format!("the winner did not release {won}:\n{}", all()));
            }
            // The loser names the holder: the other runner's deploy, by its pid.
            if !(loser.stderr.contains("`greenlight deploy`")
                && loser.stderr.contains(&format!("pid {}", winner.pid)))
            {
                return Err(format!(
                    "the loser's message does not name the winner's deploy (pid {}):\n{}",
                    winner.pid,
                    all()
                ));
            }
            if !loser.steps().is_empty() {
                return Err(format!("the loser changed something:\n{}", all()));
            }
            let state = settled(&aws, &seeded)?;
            if state.live != seeded.fleet(won) {
                return Err(format!("{} is live, not {won}", state.live));
            }
            // Nothing is stuck: the release that lost deploys now.
            let image = &images.iter().find(|(r, _)| *r == lost).unwrap().1;
            let third = Proc::spawn(
                &s,
                &seeded.config,
                &format!("deploy {lost} again"),
                &deploy_args(lost, image),
            )
            .finish(STUCK);
            if third.code != Some(0) {
                return Err(format!("the third deploy failed:\n{}", third.full()));
            }
            let state = settled(&aws, &seeded)?;
            if state.live != seeded.fleet(lost) {
                return Err(format!("{} is live, not {lost}", state.live));
            }
            Ok(format!(
                "{}\n    {}\n    {}",
                winner.brief(),
                loser.brief(),
                third.brief()
            ))
        })();
        let probe = prober.stop();
        rounds.record(
            &format!("round {round} ({} started first)", order[0].0),
            &probe,
            result,
        );
    }
    rounds.finish("two deploys at once", started);
}

// ---------------------------------------------------------------------------------------------
// 2. A deploy and a rollback at once, at offsets from 0 to 100 ms

/// Whichever wins, traffic only ever goes to healthy targets, each process exits 0, 4, or (the
/// deploy, aborted by the rollback through it) 3, and the service ends at rest on one release.
///
/// Fails today, two ways:
/// - at offsets where the rollback reads the service just after the deploy (holding the lock)
///   retired the warm blue fleet and before it created v3: since rollback decides before it
///   takes the lock, it refuses with exit 5 "nothing to roll back to … the previous release is
///   gone" instead of exit 4 naming the running deploy (a rollback after that deploy would
///   work: v2 is then warm);
/// - when the rollback runs whole between the deploy's checks and its lock: the deploy's
///   `deploy_started` event still describes what it saw before the lock (live v2 in slot b,
///   idle slot a) while it then retires v2 and creates v3 in slot b.
#[test]
fn deploy_and_rollback_at_once_at_offsets_0_to_100ms() {
    let s = session();
    if skip_without_hooks(&s) {
        return;
    }
    let started = Instant::now();
    let mut rounds = Rounds::default();
    let mut tally: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    // Every 10 ms from 0 to 100 ms; the rollback, whose checks before the lock are shorter,
    // usually wins those. The longer offsets let the deploy take the lock and create v3 first,
    // so the rollback has to abort it through the running deploy.
    let offsets = (0..=100).step_by(10).chain([150, 300, 600, 1000]);
    for offset in offsets {
        reset(&s);
        let seeded = s.seed("ledger", &[]);
        let aws = Aws::new(&block_on(s.sdk()));
        // v2 live, the seeded release (blue, "v1") warm.
        deploy_now(&s, &seeded, "v2", &seeded.image(1), &[]);
        slow_health(&s, &seeded.fleet("v3"), 40);
        let prober = Prober::start(&s, &seeded, 4);
        let image = seeded.image(2);
        let deploy = Proc::spawn(&s, &seeded.config, "deploy v3", &deploy_args("v3", &image));
        std::thread::sleep(Duration::from_millis(offset));
        let rollback = Proc::spawn(&s, &seeded.config, "rollback", &["rollback"]);
        let [deploy, rollback]: [Outcome; 2] = finish_all(vec![deploy, rollback], STUCK)
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        let result = (|| {
            let all = || format!("{}\n{}", deploy.full(), rollback.full());
            let (blue, v2, v3) = (seeded.fleet("blue"), seeded.fleet("v2"), seeded.fleet("v3"));
            let state = settled(&aws, &seeded).map_err(|e| format!("{e}\n{}", all()))?;
            let outcome = match (deploy.code, rollback.code) {
                // The rollback won the lock: one flip back to blue; the deploy is busy.
                (Some(4), Some(0)) if rollback.has("rolled_back") => {
                    if !deploy.stderr.contains("`greenlight rollback`") {
                        return Err(format!(
                            "the deploy's refusal names no rollback:\n{}",
                            all()
                        ));
                    }
                    if state.live != blue {
                        return Err(format!(
                            "rolled back, but {} is live:\n{}",
                            state.live,
                            all()
                        ));
                    }
                    let v2 = state.group(&v2).ok_or("v2 is gone")?;
                    if v2.tag("greenlight:phase") != Some("warm") || v2.desired < 1 {
                        return Err(format!("v2 is not warm: {v2:?}"));
                    }
                    "rollback flipped to blue, deploy busy"
                }
                // The deploy won and v3 was under way: the rollback aborted it through the
                // deploy, which stopped with exit 3.
                (Some(3), Some(0)) if rollback.has("aborted") => {
                    if !rollback.has("abort_requested") {
                        return Err(format!("aborted without asking the deploy:\n{}", all()));
                    }
                    if state.live != v2 {
                        return Err(format!("aborted, but {} is live:\n{}", state.live, all()));
                    }
                    let v3 = state.group(&v3).ok_or("v3 is gone")?;
                    if v3.tag("greenlight:phase") != Some("failed") || v3.desired != 0 {
                        return Err(format!("v3 is not failed at 0: {v3:?}"));
                    }
                    "deploy won, rollback aborted v3 through it (deploy exit 3)"
                }
                // The deploy won before v3 existed: the rollback is busy; v3 goes live.
                (Some(0), Some(4)) => {
                    if !rollback.stderr.contains("`greenlight deploy`") {
                        return Err(format!(
                            "the rollback's refusal names no deploy:\n{}",
                            all()
                        ));
                    }
                    if state.live != v3 {
                        return Err(format!("deployed, but {} is live:\n{}", state.live, all()));
                    }
                    "deploy won, rollback busy, v3 live"
                }
                // One after the other: the rollback took and handed back the lock before the
                // deploy (past its checks) asked for it; the deploy then replaced v2, the
                // release rolled back from, with v3.
                (Some(0), Some(0)) if rollback.has("rolled_back") && deploy.has("released") => {
                    if state.live != v3 {
                        return Err(format!("deployed, but {} is live:\n{}", state.live, all()));
                    }
                    let blue = state.group(&blue).ok_or("blue is gone")?;
                    if blue.tag("greenlight:phase") != Some("warm") || blue.desired < 1 {
                        return Err(format!("blue is not warm: {blue:?}"));
                    }
                    "rollback flipped to blue, then the deploy released v3 over it"
                }
                _ => return Err(format!("inconsistent outcome:\n{}", all())),
            };
            // What the deploy announced is what it did: v3 went where deploy_started said.
            let announced = deploy.events("deploy_started");
            let created = deploy.events("step");
            let created = created.iter().find(|e| e["action"] == "create_fleet");
            if let (Some(announced), Some(created)) = (announced.first(), created)
                && announced["idle_target_group"] != created["target_group"]
            {
                return Err(format!(
                    "deploy_started named {} as the idle target group, but v3 was created in \
                     {} ({outcome}):\n{}",
                    announced["idle_target_group"],
                    created["target_group"],
                    all()
                ));
            }
            tally.entry(outcome.to_owned()).or_default().push(offset);
            Ok(format!(
                "{outcome}\n    {}\n    {}",
                deploy.brief(),
                rollback.brief()
            ))
        })();
        let probe = prober.stop();
        rounds.record(&format!("offset {offset} ms"), &probe, result);
    }
    rounds
        .notes
        .push(format!("outcomes by offset (ms): {tally:?}"));
    rounds.finish("deploy and rollback at once", started);
}

// ---------------------------------------------------------------------------------------------
// 3. Two rollbacks at once

#[test]
fn two_rollbacks_at_once_flip_once() {
    let s = session();
    if skip_without_hooks(&s) {
        return;
    }
    let started = Instant::now();
    let mut rounds = Rounds::default();
    for offset in [0u64, 0, 10, 30] {
        reset(&s);
        let seeded = s.seed("wallet", &[]);
        let aws = Aws::new(&block_on(s.sdk()));
        deploy_now(&s, &seeded, "v2", &seeded.image(1), &[]);
        let prober = Prober::start(&s, &seeded, 4);
        let mark = s.request_mark();
        let first = Proc::spawn(&s, &seeded.config, "rollback 1", &["rollback"]);
        std::thread::sleep(Duration::from_millis(offset));
        let second = Proc::spawn(&s, &seeded.config, "rollback 2", &["rollback"]);
        let outs = finish_all(vec![first, second], STUCK);
        let probe = prober.stop();
        let writes = s
            .requests_since(mark)
            .0
            .iter()
            .filter(|(_, action)| action == "ModifyListener" || action == "ModifyRule")
            .count();
        let result = (|| {
            let all = || {
                outs.iter()
                    .map(Outcome::full)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let flipped: Vec<&Outcome> = outs
                .iter()
                .filter(|o| {
                    o.code == Some(0)
                        && o.events("rolled_back").iter().any(|e| e["flipped"] == true)
                })
                .collect();
            let [winner] = flipped.as_slice() else {
                return Err(format!("expected exactly one rollback to flip:\n{}", all()));
            };
            let other = outs.iter().find(|o| o.pid != winner.pid).unwrap();
            let how = match other.code {
                Some(0) if other.has("already_rolled_back") && other.steps().is_empty() => {
                    "already rolled back"
                }
                Some(4) if other.stderr.contains("`greenlight rollback`") => "locked",
                _ => return Err(format!("the other rollback:\n{}", all())),
            };
            if writes != 1 {
                return Err(format!("the router was written {writes} times:\n{}", all()));
            }
            let state = settled(&aws, &seeded)?;
            if state.live != seeded.fleet("blue") {
                return Err(format!("{} is live, not blue:\n{}", state.live, all()));
            }
            let v2 = state.group(&seeded.fleet("v2")).ok_or("v2 is gone")?;
            if v2.tag("greenlight:phase") != Some("warm")
                || v2.tag("greenlight:rolled-back-at").is_none()
                || v2.desired < 1
            {
                return Err(format!("v2 is not warm and rolled back from: {v2:?}"));
            }
            Ok(format!(
                "one flip; the other {how}; router writes: {writes}\n    {}\n    {}",
                outs[0].brief(),
                outs[1].brief()
            ))
        })();
        rounds.record(&format!("offset {offset} ms"), &probe, result);
    }
    rounds.finish("two rollbacks at once", started);
}

// ---------------------------------------------------------------------------------------------
// 4. Promote and abort at once on a canary paused at a manual gate

/// Whatever the order, abort ends the release (100% on blue, v2 failed at 0), nothing is left
/// stuck, and promote's exit says what happened to the promotion.
///
/// Fails today, two ways:
/// - when `abort` holds the lock, `promote` still exits 0 with `promoted` and `driver` = the
///   abort's holder ("… running `greenlight abort` …"): it hands its request to a runner that
///   is stopping the release and will never act on it, and reports success;
/// - when `promote` holds the lock and reaches gate 2 (exits 0, paused), an `abort` that found
///   the lock busy a moment earlier has tagged the fleet and waits (up to 120 s) for a holder
///   that is gone: nobody acts on the request, abort ends with exit 4 and the release stays at
///   50% with `greenlight:abort` set until someone runs `abort` again.
#[test]
fn promote_and_abort_at_once_on_a_manual_gate() {
    let s = session();
    if skip_without_hooks(&s) {
        return;
    }
    let started = Instant::now();
    let mut rounds = Rounds::default();
    // (promote's delay, abort's delay), in ms.
    let offsets: [(u64, u64); 10] = [
        (0, 0),
        (0, 20),
        (0, 50),
        (0, 100),
        (0, 200),
        (20, 0),
        (50, 0),
        (100, 0),
        (250, 0),
        (500, 0),
    ];
    for (promote_after, abort_after) in offsets {
        reset(&s);
        let seeded = s.seed("cart", &[]);
        canary_config(&seeded);
        let aws = Aws::new(&block_on(s.sdk()));
        deploy_now(&s, &seeded, "v2", &seeded.image(1), &["--no-wait"]);
        let prober = Prober::start(&s, &seeded, 4);
        let (promote, abort) = if promote_after <= abort_after {
            let promote = Proc::spawn(&s, &seeded.config, "promote", &["promote"]);
            std::thread::sleep(Duration::from_millis(abort_after - promote_after));
            let abort = Proc::spawn(&s, &seeded.config, "abort", &["abort"]);
            (promote, abort)
        } else {
            let abort = Proc::spawn(&s, &seeded.config, "abort", &["abort"]);
            std::thread::sleep(Duration::from_millis(promote_after - abort_after));
            let promote = Proc::spawn(&s, &seeded.config, "promote", &["promote"]);
            (promote, abort)
        };
        let [promote, abort]: [Outcome; 2] = finish_all(vec![promote, abort], HANDOVER_STUCK)
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        let result = (|| {
            let all = || format!("{}\n{}", promote.full(), abort.full());
            // Abort always ends the release: step 2 is a gate, so v2 can never go live here.
            if abort.code != Some(0)
                || !abort.events("aborted").iter().any(|e| e["release"] == "v2")
            {
                return Err(format!("abort did not stop v2:\n{}", all()));
            }
            let promoted = promote.events("promoted");
            let outcome = match promote.code {
                // Promote won and reached the next gate; abort stopped it from there.
                Some(0)
                    if promoted.iter().any(|e| e["driver"] == "this process")
                        && promote.did("shift")
                        && promote
                            .events("paused")
                            .iter()
                            .any(|e| e["step"] == 2 && e["weight"] == 50) =>
                {
                    if !abort.did("route_back") {
                        return Err(format!(
                            "promote left v2 at 50% and abort did not route back:\n{}",
                            all()
                        ));
                    }
                    "promote reached gate 2, then abort routed back"
                }
                // Promote was driving when abort asked: it stopped the release itself.
                Some(3) if abort.has("abort_requested") => "promote was stopped by abort (exit 3)",
                // Abort got there first; promote refuses (release aborted, busy, or nothing to
                // promote) and claims nothing.
                Some(3..=5) if !promote.did("shift") => "abort won; promote refused",
                _ => {
                    return Err(format!(
                        "inconsistent outcome (promote exit 0 must mean it moved v2 to the next \
                         gate itself):\n{}",
                        all()
                    ));
                }
            };
            let state = settled(&aws, &seeded).map_err(|e| format!("{e}\n{}", all()))?;
            if state.live != seeded.fleet("blue") {
                return Err(format!("{} is live, not blue:\n{}", state.live, all()));
            }
            let v2 = state.group(&seeded.fleet("v2")).ok_or("v2 is gone")?;
            if v2.tag("greenlight:phase") != Some("failed") || v2.desired != 0 {
                return Err(format!("v2 is not failed at 0: {v2:?}"));
            }
            // Nothing is stuck: the next release goes through.
            let next = Proc::spawn(
                &s,
                &seeded.config,
                "deploy v3",
                &[
                    "deploy",
                    "--release",
                    "v3",
                    "--image-id",
                    &seeded.image(2),
                    "--strategy",
                    "bluegreen",
                ],
            )
            .finish(STUCK);
            if next.code != Some(0) {
                return Err(format!("deploy v3 afterwards failed:\n{}", next.full()));
            }
            let state = settled(&aws, &seeded)?;
            if state.live != seeded.fleet("v3") {
                return Err(format!("{} is live, not v3", state.live));
            }
            Ok(format!(
                "{outcome}\n    {}\n    {}\n    {}",
                promote.brief(),
                abort.brief(),
                next.brief()
            ))
        })();
        let probe = prober.stop();
        rounds.record(
            &format!("promote +{promote_after} ms, abort +{abort_after} ms"),
            &probe,
            result,
        );
    }
    rounds.finish("promote and abort at once", started);
}

// ---------------------------------------------------------------------------------------------
// 5. A deploy waiting at a manual gate, promoted and then aborted from other processes

#[test]
fn a_deploy_waiting_at_gates_is_promoted_then_aborted_from_other_processes() {
    let s = session();
    if skip_without_hooks(&s) {
        return;
    }
    let started = Instant::now();
    let mut rounds = Rounds::default();
    let seeded = s.seed("basket", &[]);
    canary_config(&seeded);
    let aws = Aws::new(&block_on(s.sdk()));
    let prober = Prober::start(&s, &seeded, 4);
    let image = seeded.image(1);
    let mut running = Some(Proc::spawn(
        &s,
        &seeded.config,
        "deploy v2",
        &deploy_args("v2", &image),
    ));
    let result = (|| {
        let deploy = running.as_mut().expect("the deploy");
        let gate = |step: u64, weight: u64| {
            move |e: &Value| e["event"] == "gate" && e["step"] == step && e["weight"] == weight
        };
        deploy.wait_for("the gate at step 1", STUCK, gate(1, 0))?;
        let promote = Proc::spawn(&s, &seeded.config, "promote", &["promote"]).finish(STUCK);
        let driver = promote
            .events("promoted")
            .first()
            .map(|e| e["driver"].as_str().unwrap_or_default().to_owned());
        let names_deploy = driver.as_deref().is_some_and(|d| {
            d.contains("`greenlight deploy`") && d.contains(&format!("pid {}", deploy.pid()))
        });
        if promote.code != Some(0) || !names_deploy || !promote.steps().is_empty() {
            return Err(format!(
                "promote did not hand over to the running deploy (pid {}):\n{}",
                deploy.pid(),
                promote.full()
            ));
        }
        // The running deploy carries on to step 2 and waits at its gate.
        deploy.wait_for("the gate at step 2", STUCK, gate(2, 50))?;
        let forwards = block_on(aws.forwards(&seeded.str("listener_arn")))?;
        let share = weight_of(&forwards, &seeded.target_group(1)) * 100
            / forwards.iter().map(|(_, w)| *w).sum::<i32>().max(1);
        if share != 50 {
            return Err(format!("at gate 2 v2 has {share}%: {forwards:?}"));
        }
        let abort = Proc::spawn(&s, &seeded.config, "abort", &["abort"]).finish(HANDOVER_STUCK);
        let deploy_out = running.take().expect("the deploy").finish(STUCK);
        let all = || {
            format!(
                "{}\n{}\n{}",
                promote.full(),
                deploy_out.full(),
                abort.full()
            )
        };
        if abort.code != Some(0)
            || !abort.has("abort_requested")
            || !abort.events("aborted").iter().any(|e| e["release"] == "v2")
        {
            return Err(format!(
                "abort did not stop v2 through the deploy:\n{}",
                all()
            ));
        }
        let requested = abort.events("abort_requested");
        if !requested.iter().any(|e| {
            e["driver"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("pid {}", deploy_out.pid)))
        }) {
            return Err(format!("abort's request names no deploy:\n{}", all()));
        }
        let last = deploy_out.events.last().cloned().unwrap_or_default();
        if deploy_out.code != Some(3)
            || last["event"] != "error"
            || last["exit_code"] != 3
            || !deploy_out.did("route_back")
            || !deploy_out.did("fail_release")
        {
            return Err(format!("the deploy did not stop with exit 3:\n{}", all()));
        }
        let state = settled(&aws, &seeded).map_err(|e| format!("{e}\n{}", all()))?;
        if state.live != seeded.fleet("blue") {
            return Err(format!("{} is live, not blue", state.live));
        }
        let v2 = state.group(&seeded.fleet("v2")).ok_or("v2 is gone")?;
        if v2.tag("greenlight:phase") != Some("failed") || v2.desired != 0 {
            return Err(format!("v2 is not failed at 0: {v2:?}"));
        }
        Ok(format!(
            "{}\n    {}\n    {}",
            promote.brief(),
            deploy_out.brief(),
            abort.brief()
        ))
    })();
    if let Some(deploy) = running.take() {
        let _ = deploy.finish(Duration::ZERO);
    }
    let probe = prober.stop();
    rounds.record("deploy at gates", &probe, result);
    rounds.finish("deploy at gates, promote and abort", started);
}
