//! The state prober, shared by the emulator tests: a thread that reads the router (the listener's
//! default action, or a listener rule) and the health of both target groups with its own plain
//! SDK calls every few milliseconds while greenlight works, and keeps every sample with the time
//! it was taken. Its judgement is its own arithmetic, not greenlight's: a target group that takes
//! traffic (weight > 0) while none of its targets is `healthy` is a violation.
//!
//! A sample reads the router, then each target group's health, then the router again. The
//! emulator serialises requests, so greenlight's writes interleave with those reads: a target
//! group counts as taking traffic at the instant its health was read only if both router reads
//! give it weight. A sample that straddles a router write therefore never reports a violation
//! that was not one; a real one lasts until the group turns healthy, and the next sample sees it.
//!
//! Then the tests: a blue/green deploy (on a listener and on a listener rule), a canary in four
//! steps and a rollback, each under the prober; and the judge on hand-made samples, to show it
//! can fail.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::Action;
use serde_json::{Value, json};

use super::harness::{Seeded, Session, forward_action, forwards_of, session};

/// How long the prober sleeps between two samples, unless told otherwise.
pub const EVERY: Duration = Duration::from_millis(5);
/// Samples a prober takes at least, unless told otherwise: it keeps sampling after `stop` until
/// it has them (or its reads keep failing).
pub const MIN_SAMPLES: usize = 5;
/// Errors after which a stopped prober gives up reaching its minimum.
const GIVE_UP_AFTER_ERRORS: usize = 5;
/// Errors kept for the report (all are counted).
const ERRORS_KEPT: usize = 20;

// ---------------------------------------------------------------------------------------------
// What is read

/// Where the traffic is split: a listener's default action, or a listener rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Router {
    Listener(String),
    Rule(String),
}

impl Router {
    /// The router greenlight was configured with for `seeded`: its rule when it was seeded with
    /// `--rule`, else its listener.
    pub fn of(seeded: &Seeded) -> Router {
        match seeded.info["rule_arn"].as_str() {
            Some(rule) => Router::Rule(rule.to_owned()),
            None => Router::Listener(seeded.str("listener_arn")),
        }
    }

    async fn read(&self, elb: &ElbClient) -> Result<Routing, String> {
        let actions = match self {
            Router::Listener(arn) => {
                let out = elb
                    .describe_listeners()
                    .listener_arns(arn)
                    .send()
                    .await
                    .map_err(|e| format!("DescribeListeners: {e:?}"))?;
                let listener = out.listeners().first().ok_or("DescribeListeners: none")?;
                listener.default_actions().to_vec()
            }
            Router::Rule(arn) => {
                let out = elb
                    .describe_rules()
                    .rule_arns(arn)
                    .send()
                    .await
                    .map_err(|e| format!("DescribeRules: {e:?}"))?;
                let rule = out.rules().first().ok_or("DescribeRules: none")?;
                rule.actions().to_vec()
            }
        };
        Ok(Routing::of(&actions))
    }
}

/// A router's forward action as read back: (target group, weight) in the order AWS lists them,
/// and its target-group stickiness (enabled, seconds) when it has one. No forward action reads
/// as no target groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub forwards: Vec<(String, i32)>,
    pub sticky: Option<(bool, Option<i32>)>,
}

impl Routing {
    fn of(actions: &[Action]) -> Routing {
        let Some(action) = forward_action(actions) else {
            return Routing::default();
        };
        let config = action.forward_config();
        let forwards = forwards_of(action);
        let sticky = config
            .and_then(|c| c.target_group_stickiness_config())
            .map(|s| (s.enabled().unwrap_or(false), s.duration_seconds()));
        Routing { forwards, sticky }
    }

    pub fn weight(&self, target_group: &str) -> i32 {
        self.forwards
            .iter()
            .filter(|(tg, _)| tg == target_group)
            .map(|(_, w)| *w)
            .sum()
    }

    pub fn total(&self) -> i32 {
        self.forwards.iter().map(|(_, w)| *w).sum()
    }

    /// `target_group`'s share of the traffic in percent.
    pub fn percent(&self, target_group: &str) -> i32 {
        match self.total() {
            0 => 0,
            total => self.weight(target_group) * 100 / total,
        }
    }
}

/// One sample: the router, every probed target group's targets, the fleets (when read), the
/// router again, then any other routers it records.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the sample was complete.
    pub at: SystemTime,
    /// From the prober's start to this sample's health reads.
    pub offset: Duration,
    /// The router, read before the health.
    pub before: Routing,
    /// (target group, its targets as (id, state)), in the prober's order.
    pub health: Vec<(String, Vec<(String, String)>)>,
    /// The router, read after the health (and the fleets): what a sample "shows".
    pub after: Routing,
    /// Per probed target group, the Auto Scaling groups attached to it, on the samples that
    /// read them.
    pub fleets: Option<Vec<Vec<String>>>,
    /// The other routers asked for with [`Probing::also`], read last, in order; not judged.
    pub also: Vec<Routing>,
}

impl Sample {
    /// `target_group`'s targets, if this sample read them.
    pub fn targets(&self, target_group: &str) -> Option<&[(String, String)]> {
        self.health
            .iter()
            .find(|(tg, _)| tg == target_group)
            .map(|(_, targets)| targets.as_slice())
    }

    pub fn healthy(&self, target_group: &str) -> usize {
        self.targets(target_group)
            .unwrap_or_default()
            .iter()
            .filter(|(_, state)| state == "healthy")
            .count()
    }

    /// The states of `target_group`'s targets, sorted.
    pub fn states(&self, target_group: &str) -> Vec<String> {
        let mut states: Vec<String> = self
            .targets(target_group)
            .unwrap_or_default()
            .iter()
            .map(|(_, state)| state.clone())
            .collect();
        states.sort();
        states
    }

    /// The weight `target_group` had at the instant its health was read, as far as the two
    /// router reads around it tell: the smaller, so a write between them never counts.
    pub fn weight_at_health_read(&self, target_group: &str) -> i32 {
        self.before
            .weight(target_group)
            .min(self.after.weight(target_group))
    }

    /// The samples' violations: each target group with weight > 0 at the health read that has
    /// no `healthy` target, or whose health was not read at all.
    pub fn violations(&self, n: usize) -> Vec<Violation> {
        let mut groups: Vec<&str> = Vec::new();
        for (tg, _) in self.before.forwards.iter().chain(&self.after.forwards) {
            if !groups.contains(&tg.as_str()) {
                groups.push(tg);
            }
        }
        groups
            .into_iter()
            .filter(|tg| self.weight_at_health_read(tg) > 0)
            .filter(|tg| self.healthy(tg) == 0)
            .map(|tg| Violation {
                sample: n,
                offset: self.offset,
                target_group: tg.to_owned(),
                weights: (self.before.weight(tg), self.after.weight(tg)),
                targets: self.targets(tg).map(<[_]>::to_vec),
            })
            .collect()
    }
}

/// A target group that took traffic with no healthy target.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The sample's index.
    pub sample: usize,
    pub offset: Duration,
    pub target_group: String,
    /// Its weight in the router read before and after its health.
    pub weights: (i32, i32),
    /// Its targets, or `None` when the prober does not read its health.
    pub targets: Option<Vec<(String, String)>>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w1, w2) = self.weights;
        write!(
            f,
            "sample {} at {} ms: target group {} takes traffic (weight {w1}, then {w2}) with no \
             healthy target: ",
            self.sample,
            self.offset.as_millis(),
            short(&self.target_group)
        )?;
        match &self.targets {
            Some(targets) => write!(f, "{targets:?}"),
            None => write!(f, "its health is not probed"),
        }
    }
}

/// The judge: every violation in `samples`, in order. Pure arithmetic on what was read.
pub fn judge(samples: &[Sample]) -> Vec<Violation> {
    samples
        .iter()
        .enumerate()
        .flat_map(|(n, sample)| sample.violations(n))
        .collect()
}

/// A target group's name, from its ARN.
pub fn short(target_group: &str) -> &str {
    target_group
        .split("targetgroup/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(target_group)
}

// ---------------------------------------------------------------------------------------------
// Sampling

/// What to probe, and how; [`Probing::start`] starts the prober.
pub struct Probing {
    router: Router,
    target_groups: Vec<String>,
    every: Duration,
    min_samples: usize,
    fleets_every: Option<usize>,
    also: Vec<Router>,
}

impl Probing {
    /// `seeded`'s router (see [`Router::of`]) and both its target groups.
    pub fn seeded(seeded: &Seeded) -> Probing {
        Probing {
            router: Router::of(seeded),
            target_groups: vec![seeded.target_group(0), seeded.target_group(1)],
            every: EVERY,
            min_samples: MIN_SAMPLES,
            fleets_every: None,
            also: Vec::new(),
        }
    }

    pub fn every(mut self, every: Duration) -> Probing {
        self.every = every;
        self
    }

    pub fn min_samples(mut self, n: usize) -> Probing {
        self.min_samples = n;
        self
    }

    /// Also reads which fleets are attached to each target group, every `n` samples (the
    /// heaviest read, so not necessarily on every one).
    pub fn fleets_every(mut self, n: usize) -> Probing {
        self.fleets_every = Some(n.max(1));
        self
    }

    /// Also records `router` in each sample (in [`Sample::also`]); it is not judged.
    pub fn also(mut self, router: Router) -> Probing {
        self.also.push(router);
        self
    }

    /// Starts sampling from a thread of its own. Returns once the first sample was attempted,
    /// so the state before whatever the test does next is in the probe.
    pub fn start(self, s: &Session) -> Prober {
        let conf = runtime().block_on(s.sdk());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let (first_tx, first_rx) = channel();
        let handle = std::thread::spawn(move || {
            let rt = runtime();
            let elb = ElbClient::new(&conf);
            let asg = AsgClient::new(&conf);
            let started = Instant::now();
            let mut probe = Probe {
                router: self.router.clone(),
                target_groups: self.target_groups.clone(),
                samples: Vec::new(),
                errors: Vec::new(),
                error_count: 0,
            };
            let mut attempts = 0usize;
            loop {
                let last_round = stopping.load(Ordering::SeqCst);
                let fleets = self
                    .fleets_every
                    .is_some_and(|n| attempts.is_multiple_of(n));
                attempts += 1;
                match rt.block_on(self.sample(&elb, &asg, started, fleets)) {
                    Ok(sample) => probe.samples.push(sample),
                    Err(e) => {
                        probe.error_count += 1;
                        if probe.errors.len() < ERRORS_KEPT {
                            probe
                                .errors
                                .push(format!("at {} ms: {e}", started.elapsed().as_millis()));
                        }
                    }
                }
                if attempts == 1 {
                    let _ = first_tx.send(());
                }
                if last_round
                    && (probe.samples.len() >= self.min_samples
                        || probe.error_count >= GIVE_UP_AFTER_ERRORS)
                {
                    return probe;
                }
                std::thread::sleep(self.every);
            }
        });
        // The first sample (a few requests) is quick; a prober that cannot take it within this
        // shows up as missing samples, not as a hang here.
        let _ = first_rx.recv_timeout(Duration::from_secs(30));
        Prober {
            stop,
            handle: Some(handle),
        }
    }

    async fn sample(
        &self,
        elb: &ElbClient,
        asg: &AsgClient,
        started: Instant,
        read_fleets: bool,
    ) -> Result<Sample, String> {
        let before = self.router.read(elb).await?;
        let offset = started.elapsed();
        let mut health = Vec::new();
        for tg in &self.target_groups {
            health.push((tg.clone(), read_targets(elb, tg).await?));
        }
        let fleets = if read_fleets {
            Some(read_fleets_of(asg, &self.target_groups).await?)
        } else {
            None
        };
        let after = self.router.read(elb).await?;
        let mut also = Vec::new();
        for router in &self.also {
            also.push(router.read(elb).await?);
        }
        Ok(Sample {
            at: SystemTime::now(),
            offset,
            before,
            health,
            after,
            fleets,
            also,
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// (id, state) of every target the target group reports.
pub async fn read_targets(
    elb: &ElbClient,
    target_group: &str,
) -> Result<Vec<(String, String)>, String> {
    let out = elb
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(|e| format!("DescribeTargetHealth {}: {e:?}", short(target_group)))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .map(|d| {
            (
                d.target()
                    .and_then(|t| t.id())
                    .unwrap_or_default()
                    .to_owned(),
                d.target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect())
}

/// Per target group, the names of the Auto Scaling groups attached to it.
async fn read_fleets_of(
    asg: &AsgClient,
    target_groups: &[String],
) -> Result<Vec<Vec<String>>, String> {
    let out = asg
        .describe_auto_scaling_groups()
        .send()
        .await
        .map_err(|e| format!("DescribeAutoScalingGroups: {e:?}"))?;
    Ok(target_groups
        .iter()
        .map(|tg| {
            out.auto_scaling_groups()
                .iter()
                .filter(|g| g.target_group_arns().contains(tg))
                .map(|g| g.auto_scaling_group_name().unwrap_or_default().to_owned())
                .collect()
        })
        .collect())
}

/// A running prober.
pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Probe>>,
}

impl Prober {
    /// Stops sampling (after one more sample, and at least the minimum) and returns everything.
    pub fn stop(mut self) -> Probe {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .expect("not stopped yet")
            .join()
            .expect("the prober panicked")
    }
}

impl Drop for Prober {
    /// A test that panics before `stop` still ends its prober.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Everything a prober saw.
#[derive(Debug)]
pub struct Probe {
    pub router: Router,
    pub target_groups: Vec<String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// The reads that failed (the first few).
    pub errors: Vec<String>,
    pub error_count: usize,
}

impl Probe {
    pub fn violations(&self) -> Vec<Violation> {
        judge(&self.samples)
    }

    /// The samples whose `key` differs from the sample before: each distinct state, when it
    /// was first seen.
    pub fn changes<K: PartialEq>(&self, key: impl Fn(&Sample) -> K) -> Vec<&Sample> {
        let mut out: Vec<&Sample> = Vec::new();
        let mut last: Option<K> = None;
        for sample in &self.samples {
            let k = key(sample);
            if last.as_ref() != Some(&k) {
                out.push(sample);
                last = Some(k);
            }
        }
        out
    }

    /// The probed target groups' shares of the traffic in percent, per distinct state in order
    /// (consecutive repeats merged), e.g. `[[100, 0], [0, 100]]`.
    pub fn shares(&self) -> Vec<Vec<i32>> {
        let percents = |s: &Sample| -> Vec<i32> {
            self.target_groups
                .iter()
                .map(|tg| s.after.percent(tg))
                .collect()
        };
        self.changes(percents).into_iter().map(percents).collect()
    }

    /// The prober worked and saw no violation: at least `min_samples` samples, no failed
    /// read, no target group taking traffic without a healthy target.
    pub fn check(&self, min_samples: usize) -> Result<(), String> {
        if self.samples.len() < min_samples {
            return Err(format!(
                "the prober took only {} samples (at least {min_samples} expected)",
                self.samples.len()
            ));
        }
        if self.error_count > 0 {
            return Err(format!(
                "{} of the prober's reads failed: {:?}",
                self.error_count, self.errors
            ));
        }
        let violations = self.violations();
        if !violations.is_empty() {
            return Err(format!(
                "{} violations in {} samples:\n{}",
                violations.len(),
                self.samples.len(),
                violations
                    .iter()
                    .take(20)
                    .map(Violation::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        Ok(())
    }

    /// One line for the test's output: samples, how long, the shares seen.
    pub fn summary(&self) -> String {
        let span = match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => last.offset.saturating_sub(first.offset),
            _ => Duration::ZERO,
        };
        format!(
            "{} samples over {} ms, {} failed reads, shares {:?}",
            self.samples.len(),
            span.as_millis(),
            self.error_count,
            self.shares()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Samples each scenario must take at least. A sample is four requests to an emulator that
/// serialises them and serves greenlight at the same time, so one takes 20-50 ms here; every
/// scenario lasts most of a second or more.
const SCENARIO_MIN_SAMPLES: usize = 20;

fn deploy(s: &Session, seeded: &Seeded, release: &str, image: &str) -> Value {
    let out = s
        .greenlight(&seeded.config)
        .args(["deploy", "--release", release, "--image-id", image])
        .args(["--output", "json"])
        .output()
        .expect("run greenlight");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy {release}: {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `fleet`'s targets report `initial` for `seconds` after they are first read in use, then
/// healthy: the router must wait for them.
fn slow_health(s: &Session, fleet: &str, seconds: f64) {
    if s.emulator.hooks {
        s.script_health(
            json!({"asg_name": fleet}),
            json!([
                {"state": "initial", "reason": "Elb.RegistrationInProgress", "seconds": seconds},
                {"state": "healthy"}
            ]),
        );
    }
}

/// The probe is clean, and its first and last samples show `from` and `to` (percent per
/// target group, slots a and b).
fn assert_clean_transition(probe: &Probe, from: [i32; 2], to: [i32; 2]) {
    eprintln!("{:?}: {}", probe.router, probe.summary());
    if let Err(problem) = probe.check(SCENARIO_MIN_SAMPLES) {
        panic!("{problem}\n{}", probe.summary());
    }
    let shares = probe.shares();
    assert_eq!(shares.first(), Some(&from.to_vec()), "{}", probe.summary());
    assert_eq!(shares.last(), Some(&to.to_vec()), "{}", probe.summary());
}

/// With scripted health, the prober saw green in the router at weight 0 while none of its
/// targets was healthy: the window a premature shift would have fallen into was watched.
fn assert_saw_green_not_ready_at_weight_0(s: &Session, probe: &Probe, green: &str) {
    if !s.emulator.hooks {
        return;
    }
    let watched = probe
        .samples
        .iter()
        .filter(|sample| {
            sample.after.forwards.iter().any(|(tg, _)| tg == green)
                && sample.after.weight(green) == 0
                && sample.healthy(green) == 0
                && !sample.states(green).is_empty()
        })
        .count();
    assert!(
        watched > 0,
        "no sample saw green named at weight 0 and not healthy yet: {}",
        probe.summary()
    );
    eprintln!("{watched} samples saw green at weight 0, not healthy yet");
}

fn blue_green_under_the_prober(service: &str, extra: &[&str]) {
    let s = session();
    let seeded = s.seed(service, extra);
    let green = seeded.target_group(1);
    slow_health(&s, &seeded.fleet("v2"), 1.0);
    let prober = Probing::seeded(&seeded).start(&s);
    let released = deploy(&s, &seeded, "v2", &seeded.image(1));
    let probe = prober.stop();
    // The prober read the router greenlight was configured with: the rule, when seeded so.
    assert_eq!(
        matches!(probe.router, Router::Rule(_)),
        extra.contains(&"--rule"),
        "{:?}",
        probe.router
    );
    assert_eq!(released["event"], "released", "{released}");
    assert_eq!(released["flipped"], true, "{released}");
    assert_clean_transition(&probe, [100, 0], [0, 100]);
    // One flip: nothing in between.
    assert_eq!(probe.shares(), [[100, 0], [0, 100]], "{}", probe.summary());
    // And the join before it, at weight 0: blue alone, then both, then green taking it all.
    let routings: Vec<Vec<(&str, i32)>> = probe
        .changes(|sample| sample.after.forwards.clone())
        .into_iter()
        .map(|sample| {
            sample
                .after
                .forwards
                .iter()
                .map(|(tg, w)| (short(tg), *w))
                .collect()
        })
        .collect();
    eprintln!("routings seen: {routings:?}");
    assert_eq!(routings.len(), 3, "{routings:?}");
    assert!(
        !routings[0].iter().any(|(tg, _)| *tg == short(&green)),
        "{routings:?}"
    );
    assert!(routings[1].contains(&(short(&green), 0)), "{routings:?}");
    assert_saw_green_not_ready_at_weight_0(&s, &probe, &green);
}

#[test]
fn a_blue_green_flip_on_a_listener_never_routes_to_a_group_without_healthy_targets() {
    blue_green_under_the_prober("flip", &[]);
}

#[test]
fn a_blue_green_flip_on_a_listener_rule_never_routes_to_a_group_without_healthy_targets() {
    blue_green_under_the_prober("flip-rule", &["--rule"]);
}

#[test]
fn a_canary_in_four_steps_never_routes_to_a_group_without_healthy_targets() {
    let s = session();
    let seeded = s.seed("canary", &[]);
    let text = std::fs::read_to_string(&seeded.config).expect("seeded config");
    let steps = r#"[{ weight = 10, pause = "1s" }, { weight = 30, pause = "1s" }, { weight = 60, pause = "1s" }, { weight = 100 }]"#;
    std::fs::write(
        &seeded.config,
        format!("strategy = \"canary\"\n{text}\n[canary]\nsteps = {steps}\n"),
    )
    .expect("write config");
    let green = seeded.target_group(1);
    slow_health(&s, &seeded.fleet("v2"), 1.0);
    let prober = Probing::seeded(&seeded).start(&s);
    let released = deploy(&s, &seeded, "v2", &seeded.image(1));
    let probe = prober.stop();
    assert_eq!(released["event"], "released", "{released}");
    assert_clean_transition(&probe, [100, 0], [0, 100]);
    // Every step seen, in order, and nothing else.
    assert_eq!(
        probe.shares(),
        [[100, 0], [90, 10], [70, 30], [40, 60], [0, 100]],
        "{}",
        probe.summary()
    );
    // Each step held for its pause, so the prober saw each several times.
    for percent in [10, 30, 60] {
        let seen = probe
            .samples
            .iter()
            .filter(|sample| sample.after.percent(&green) == percent)
            .count();
        assert!(seen >= 5, "green at {percent}% in only {seen} samples");
    }
    assert_saw_green_not_ready_at_weight_0(&s, &probe, &green);
}

#[test]
fn a_rollback_never_routes_to_a_group_without_healthy_targets() {
    let s = session();
    let seeded = s.seed("rollback", &[]);
    deploy(&s, &seeded, "v2", &seeded.image(1));
    let prober = Probing::seeded(&seeded).start(&s);
    // Long enough to watch the state before: the rollback itself is one router call.
    std::thread::sleep(Duration::from_millis(300));
    let out = s
        .greenlight(&seeded.config)
        .args(["rollback", "--output", "json"])
        .output()
        .expect("run greenlight");
    std::thread::sleep(Duration::from_millis(300));
    let probe = prober.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "rollback: {stdout}");
    assert!(stdout.contains(r#""event":"rolled_back""#), "{stdout}");
    assert_clean_transition(&probe, [0, 100], [100, 0]);
    assert_eq!(probe.shares(), [[0, 100], [100, 0]], "{}", probe.summary());
    // Blue was read healthy before it got the traffic back (and, no violation, while it had it).
    let blue = seeded.target_group(0);
    assert!(
        probe.samples[0].healthy(&blue) > 0,
        "{:?}",
        probe.samples[0]
    );
}

// The judge on hand-made samples: it can fail.

const A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/svc-a/1";
const B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/svc-b/2";

fn routing(a: i32, b: i32) -> Routing {
    Routing {
        forwards: vec![(A.to_owned(), a), (B.to_owned(), b)],
        sticky: None,
    }
}

fn targets(states: &[&str]) -> Vec<(String, String)> {
    states
        .iter()
        .enumerate()
        .map(|(i, state)| (format!("i-{i}"), (*state).to_owned()))
        .collect()
}

fn hand_made(before: (i32, i32), a: &[&str], b: &[&str], after: (i32, i32)) -> Sample {
    Sample {
        at: SystemTime::UNIX_EPOCH,
        offset: Duration::from_millis(5),
        before: routing(before.0, before.1),
        health: vec![(A.to_owned(), targets(a)), (B.to_owned(), targets(b))],
        after: routing(after.0, after.1),
        fleets: None,
        also: Vec::new(),
    }
}

#[test]
fn the_judge_reports_a_weighted_target_group_without_a_healthy_target() {
    let ok = ["healthy", "healthy"];
    let samples = vec![
        // Blue takes everything, green joined at 0 and not healthy yet: fine.
        hand_made((100, 0), &ok, &["initial", "initial"], (100, 0)),
        // A write between the reads gave green weight: its health was read before that.
        hand_made((100, 0), &ok, &["initial", "initial"], (50, 50)),
        // Green takes half and none of its targets is healthy: the violation.
        hand_made((50, 50), &ok, &["initial", "unhealthy"], (50, 50)),
        // One healthy target is enough for this invariant.
        hand_made((50, 50), &ok, &["healthy", "initial"], (50, 50)),
        // Blue, at weight 100, has no targets at all: a violation too.
        hand_made((100, 0), &[], &ok, (100, 0)),
    ];
    let violations = judge(&samples);
    assert_eq!(
        violations
            .iter()
            .map(|v| (v.sample, short(&v.target_group)))
            .collect::<Vec<_>>(),
        [(2, "svc-b"), (4, "svc-a")],
        "{violations:#?}"
    );
    assert_eq!(violations[0].weights, (50, 50));
    let text = violations[0].to_string();
    assert!(
        text.contains("no healthy target") && text.contains("svc-b") && text.contains("unhealthy"),
        "{text}"
    );

    // A target group the router weights but whose health is not probed is a violation.
    let mut unprobed = hand_made((0, 100), &ok, &ok, (0, 100));
    let c = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/svc-c/3";
    unprobed.before.forwards.push((c.to_owned(), 1));
    unprobed.after.forwards.push((c.to_owned(), 1));
    let violations = judge(&[unprobed]);
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(violations[0].targets, None);
    assert!(violations[0].to_string().contains("not probed"));

    // And the probe's check fails on them, and on too few samples.
    let probe = Probe {
        router: Router::Listener("listener".into()),
        target_groups: vec![A.to_owned(), B.to_owned()],
        samples,
        errors: Vec::new(),
        error_count: 0,
    };
    let err = probe.check(1).unwrap_err();
    assert!(err.starts_with("2 violations in 5 samples"), "{err}");
    assert!(probe.check(6).unwrap_err().contains("only 5 samples"));
    assert_eq!(probe.shares(), [[100, 0], [50, 50], [100, 0]]);
}
