//! Safe under concurrency and failure: the real binary against the emulator, with AWS failing
//! under it (a seeded fault-injecting proxy), with the process killed at random moments, stopped
//! by signals, and run with credentials that must never be printed.
//!
//! After every command the tests read AWS directly (the SDK against the emulator, never through
//! the proxy) and check what a release must never break:
//! 1. the router gives weight only to target groups with healthy targets;
//! 2. a fleet behind a target group with traffic is whole (desired = in service) and healthy;
//! 3. once a command has run to the end, all traffic is on one target group whose one fleet is
//!    whole and healthy, no fleet is duplicated or left dangling, each release has exactly one
//!    launch template version, and no lock is left behind.
//!
//! Every loop is seeded (`seed 1..=N`), and an assertion names its seed; set
//! `GREENLIGHT_FAULT_SEED=N` to run only seed N of the proxy test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use serde_json::{Value, json};

use super::harness::{Seeded, Session, forward_action, forwards_of, is_read, session};
use super::proxy::{FaultKind, FaultPlan, FaultProxy};

// ---------------------------------------------------------------------------------------------
// Reading AWS directly

#[derive(Debug, Clone, PartialEq)]
struct Group {
    name: String,
    min: i32,
    max: i32,
    desired: i32,
    /// Instance ids of the InService instances.
    in_service: Vec<String>,
    instances: usize,
    target_groups: Vec<String>,
    tags: BTreeMap<String, String>,
}

impl Group {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// Everything about the group a deploy may change, in one line.
    fn describe(&self) -> String {
        format!(
            "{} {}/{}/{} ({} instances, {} in service) {:?} {:?}",
            self.name,
            self.min,
            self.max,
            self.desired,
            self.instances,
            self.in_service.len(),
            self.target_groups,
            self.tags
        )
    }
}

struct Aws {
    runtime: tokio::runtime::Runtime,
    elb: ElbClient,
    asg: AsgClient,
    ec2: Ec2Client,
}

impl Aws {
    fn new(session: &Session) -> Aws {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let conf = runtime.block_on(session.sdk());
        Aws {
            elb: ElbClient::new(&conf),
            asg: AsgClient::new(&conf),
            ec2: Ec2Client::new(&conf),
            runtime,
        }
    }

    fn run<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// (target group, weight) of the listener's default forward action.
    fn forwards(&self, listener: &str) -> Vec<(String, i32)> {
        let out = self
            .run(self.elb.describe_listeners().listener_arns(listener).send())
            .expect("DescribeListeners");
        let actions = out.listeners()[0].default_actions().to_vec();
        forwards(&actions)
    }

    /// (instance id, state) of every target of `target_group`.
    fn health(&self, target_group: &str) -> Vec<(String, String)> {
        let out = self
            .run(
                self.elb
                    .describe_target_health()
                    .target_group_arn(target_group)
                    .send(),
            )
            .expect("DescribeTargetHealth");
        out.target_health_descriptions()
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
            .collect()
    }

    /// The service's Auto Scaling groups: those named `fleets` and those tagged for the service
    /// (greenlight names every fleet it makes `<service>-<release>` and tags it), read by name and
    /// by tag rather than listing every group of the emulator, which other services fill.
    fn groups(&self, seeded: &Seeded, fleets: &[String]) -> Vec<Group> {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let by_tag = aws_sdk_autoscaling::types::Filter::builder()
            .name("tag:greenlight:service")
            .values(&seeded.service)
            .build();
        let queries = [
            self.asg
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(fleets.to_vec())),
            self.asg.describe_auto_scaling_groups().filters(by_tag),
        ];
        for query in queries {
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .run(query.clone().set_next_token(token.clone()).send())
                    .expect("DescribeAutoScalingGroups");
                for g in out.auto_scaling_groups() {
                    let group = group_of(g);
                    groups.insert(group.name.clone(), group);
                }
                token = out.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
        }
        groups.into_values().collect()
    }

    /// Force-deletes the service's fleets, so later tests' listings stay short.
    fn delete_fleets(&self, seeded: &Seeded, fleets: &[String]) {
        for group in self.groups(seeded, fleets) {
            self.run(
                self.asg
                    .delete_auto_scaling_group()
                    .auto_scaling_group_name(&group.name)
                    .force_delete(true)
                    .send(),
            )
            .expect("DeleteAutoScalingGroup");
        }
    }

    /// (version number, description) of every version of the service's launch template.
    fn versions(&self, seeded: &Seeded) -> Vec<(i64, String)> {
        let mut versions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .run(
                    self.ec2
                        .describe_launch_template_versions()
                        .launch_template_id(seeded.str("launch_template_id"))
                        // moto answers 15 by default and never a NextToken (AWS pages them).
                        .max_results(200)
                        .set_next_token(token.clone())
                        .send(),
                )
                .expect("DescribeLaunchTemplateVersions");
            for v in out.launch_template_versions() {
                versions.push((
                    v.version_number().unwrap_or_default(),
                    v.version_description().unwrap_or_default().to_owned(),
                ));
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        versions.sort();
        versions
    }

    /// The service's lock object, if there is one: its id and who holds it.
    fn lock(&self, seeded: &Seeded) -> Option<String> {
        let name = format!("greenlight-lock.{}", seeded.service);
        let out = self.run(
            self.ec2
                .describe_launch_templates()
                .launch_template_names(&name)
                .send(),
        );
        let out = match out {
            Ok(out) => out,
            Err(e) if e.code().is_some_and(|c| c.contains("NotFound")) => return None,
            Err(e) => panic!("DescribeLaunchTemplates {name}: {e:?}"),
        };
        let template = out.launch_templates().first()?;
        let tag = |key: &str| {
            template
                .tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
                .unwrap_or("-")
                .to_owned()
        };
        Some(format!(
            "{name} {} held by {} (pid {}) for `{}`",
            template.launch_template_id().unwrap_or_default(),
            tag("greenlight:lock-holder"),
            tag("greenlight:lock-pid"),
            tag("greenlight:lock-command")
        ))
    }

    /// Where traffic goes and the fleets behind it, read once.
    fn snapshot(&self, seeded: &Seeded, fleets: &[String]) -> Snapshot {
        let forwards = self.forwards(&seeded.str("listener_arn"));
        let health = forwards
            .iter()
            .filter(|(_, weight)| *weight > 0)
            .map(|(tg, _)| (tg.clone(), self.health(tg)))
            .collect();
        Snapshot {
            groups: self.groups(seeded, fleets),
            forwards,
            health,
        }
    }

    /// Everything a deploy changes but the lock: to tell whether a killed run changed anything.
    /// (Reads no target health: that would count as observations of scripted health.)
    fn fingerprint(&self, seeded: &Seeded, fleets: &[String]) -> String {
        let groups: Vec<String> = self
            .groups(seeded, fleets)
            .iter()
            .map(Group::describe)
            .collect();
        format!(
            "{:?}\n{}\n{:?}",
            self.forwards(&seeded.str("listener_arn")),
            groups.join("\n"),
            self.versions(seeded)
        )
    }

    /// Invariant 3 (with 1 and 2): a finished command left one live fleet (`live`, the release's
    /// fleet name) taking 100% of the traffic, at most one fleet per slot and none unattached,
    /// one launch template version per release in `releases`, and no lock.
    fn converged_violations(
        &self,
        seeded: &Seeded,
        fleets: &[String],
        live: &str,
        releases: &[String],
    ) -> Vec<String> {
        let snapshot = self.snapshot(seeded, fleets);
        let mut violations = snapshot.serving_violations();
        let Snapshot {
            forwards, groups, ..
        } = &snapshot;
        let slots = [seeded.target_group(0), seeded.target_group(1)];
        let weighted: Vec<&(String, i32)> = forwards.iter().filter(|(_, w)| *w > 0).collect();
        if weighted.len() != 1 {
            violations.push(format!(
                "traffic is not on exactly one target group: {forwards:?}"
            ));
        } else {
            let tg = &weighted[0].0;
            let attached: Vec<&str> = groups
                .iter()
                .filter(|g| g.target_groups.contains(tg))
                .map(|g| g.name.as_str())
                .collect();
            if attached != [live] {
                violations.push(format!(
                    "the live target group {} has fleets {attached:?}, expected [{live}]",
                    short(tg)
                ));
            }
            if let Some(g) = groups.iter().find(|g| g.name == live)
                && g.tag("greenlight:phase") != Some("live")
            {
                violations.push(format!(
                    "live fleet {live} is tagged phase {:?}",
                    g.tag("greenlight:phase")
                ));
            }
        }
        for slot in &slots {
            let attached: Vec<&str> = groups
                .iter()
                .filter(|g| g.target_groups.contains(slot))
                .map(|g| g.name.as_str())
                .collect();
            if attached.len() > 1 {
                violations.push(format!(
                    "slot {} has {} fleets: {attached:?}",
                    short(slot),
                    attached.len()
                ));
            }
        }
        for g in groups {
            if !g.target_groups.iter().any(|t| slots.contains(t)) {
                violations.push(format!(
                    "fleet {} is attached to no slot (tags {:?})",
                    g.name, g.tags
                ));
            }
        }
        let versions = self.versions(seeded);
        let mut per_description: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, description) in &versions {
            *per_description.entry(description.as_str()).or_default() += 1;
        }
        let prefix = format!("greenlight {} ", seeded.service);
        for (description, n) in &per_description {
            if description.starts_with(&prefix) && *n != 1 {
                violations.push(format!(
                    "{n} launch template versions for {description:?}: {versions:?}"
                ));
            }
        }
        for release in releases {
            let description = format!("{prefix}{release}");
            if !per_description.contains_key(description.as_str()) {
                violations.push(format!(
                    "no launch template version {description:?}: {versions:?}"
                ));
            }
        }
        if let Some(lock) = self.lock(seeded) {
            violations.push(format!("a lock was left behind: {lock}"));
        }
        violations
    }
}

/// What the router and the fleets looked like at one moment.
#[derive(Debug)]
struct Snapshot {
    forwards: Vec<(String, i32)>,
    groups: Vec<Group>,
    /// (instance, state) of the targets of each target group with weight > 0.
    health: BTreeMap<String, Vec<(String, String)>>,
}

impl Snapshot {
    /// Invariants 1 and 2: every target group with weight > 0 has healthy targets, and every
    /// fleet attached to it is whole (desired = in service > 0) with all its instances healthy.
    fn serving_violations(&self) -> Vec<String> {
        let mut violations = Vec::new();
        let weighted: Vec<&(String, i32)> = self.forwards.iter().filter(|(_, w)| *w > 0).collect();
        if weighted.is_empty() {
            violations.push(format!(
                "no target group takes traffic: {:?}",
                self.forwards
            ));
        }
        for (tg, weight) in weighted {
            let health = &self.health[tg];
            let healthy: BTreeSet<&str> = health
                .iter()
                .filter(|(_, state)| state == "healthy")
                .map(|(id, _)| id.as_str())
                .collect();
            if healthy.is_empty() {
                violations.push(format!(
                    "weight {weight} on {} which has no healthy target: {health:?}",
                    short(tg)
                ));
            }
            let attached: Vec<&Group> = self
                .groups
                .iter()
                .filter(|g| g.target_groups.contains(tg))
                .collect();
            if attached.is_empty() {
                violations.push(format!(
                    "weight {weight} on {} which no fleet is attached to",
                    short(tg)
                ));
            }
            for g in attached {
                if g.desired == 0 || g.desired as usize != g.in_service.len() {
                    violations.push(format!(
                        "fleet {} behind {} (weight {weight}) is not whole: desired {}, in service {}",
                        g.name,
                        short(tg),
                        g.desired,
                        g.in_service.len()
                    ));
                }
                for id in &g.in_service {
                    if !healthy.contains(id.as_str()) {
                        violations.push(format!(
                            "fleet {} behind {} (weight {weight}) has instance {id} not healthy: {health:?}",
                            g.name,
                            short(tg)
                        ));
                    }
                }
            }
        }
        violations
    }
}

fn group_of(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> Group {
    Group {
        name: g.auto_scaling_group_name().unwrap_or_default().to_owned(),
        min: g.min_size().unwrap_or_default(),
        max: g.max_size().unwrap_or_default(),
        desired: g.desired_capacity().unwrap_or_default(),
        in_service: g
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect(),
        instances: g.instances().len(),
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
    }
}

fn forwards(actions: &[aws_sdk_elasticloadbalancingv2::types::Action]) -> Vec<(String, i32)> {
    forwards_of(forward_action(actions).expect("a forward action"))
}

/// `name/id` of a target group ARN, for messages.
fn short(arn: &str) -> &str {
    arn.rsplit_once(":targetgroup/").map_or(arn, |(_, t)| t)
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// splitmix64: the seeded choices of these tests (sleep lengths, latencies).
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last `n` lines of `s`, for failure messages.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout (tail) ---\n{}\n--- stderr ---\n{}",
        output.status.code(),
        tail(&text(&output.stdout), 15),
        text(&output.stderr)
    )
}

/// The binary as `Session::greenlight` sets it up, as a plain `std::process::Command` so it can
/// be spawned, signalled and killed.
fn spawnable(session: &Session, config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greenlight"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(session.aws_env())
        .arg("--config")
        .arg(config);
    cmd
}

fn deploy_args(release: &str, image: &str) -> Vec<String> {
    ["deploy", "--release", release, "--image-id", image]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Green's targets stay `initial` for `observations` reads, then turn healthy.
fn slow_health(session: &Session, fleet: &str, observations: u32) {
    session.script_health(
        json!({"asg_name": fleet}),
        json!([
            {"state": "initial", "observations": observations},
            {"state": "healthy"}
        ]),
    );
}

/// Waits up to `limit` for `child` to exit.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let began = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if began.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `work(item)` for every item on `workers` threads; results in the order of `items`.
fn parallel<T: Send>(items: &[u64], workers: usize, work: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(usize, T)>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&item) = items.get(i) else { break };
                    let result = work(item);
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// `work()`, with a panic (an AWS read that failed, say) turned into an error naming `what`.
fn caught<T>(what: &str, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|m| (*m).to_owned()))
            .unwrap_or_default();
        Err(format!("{what}: panicked: {message}"))
    })
}

/// `Err(message())` unless `ok`.
fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(message()) }
}

// ---------------------------------------------------------------------------------------------
// 1. Faults through the proxy

const FAULT_RATE: f64 = 0.2;
const FAULT_CYCLES: u64 = 20;
/// Cycles run side by side, each on its own service and proxy: most of a faulted run is the
/// SDK's retry backoff (about half a second per retried call), not work for the emulator.
const FAULT_WORKERS: usize = 20;

/// What one seeded cycle saw.
#[derive(Debug, Default)]
struct Cycle {
    commands: usize,
    reruns: usize,
    /// (exit code, what failed and why), for each faulted command that did not exit 0.
    failures: Vec<(i32, String)>,
    requests: u64,
    faults: BTreeMap<&'static str, u64>,
    /// Calls that change AWS whose response the proxy dropped after they landed, by action.
    lost_writes: BTreeMap<String, u64>,
}

/// deploy v2 → rollback → deploy v3 on a fresh service, every command through a proxy that
/// faults 20% of the requests (plan seed `10 × seed + command`), each failed command re-run
/// without faults; the invariants checked after every run. `attempts` sets AWS_MAX_ATTEMPTS.
fn fault_cycle(s: &Session, seed: u64, attempts: Option<&str>) -> Result<Cycle, String> {
    let seeded = s.seed(&format!("faults-{seed}"), &[]);
    let aws = Aws::new(s);
    let proxy = FaultProxy::start(&s.emulator.endpoint, FaultPlan::none());
    let latency = Duration::from_millis(50 + mix(seed) % 151);
    let kinds = vec![
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::Reset,
        FaultKind::Latency(latency),
        FaultKind::LoseResponse,
    ];
    let (v2, v3) = ("v2".to_owned(), "v3".to_owned());
    let steps: [(Vec<String>, &str, Vec<String>); 3] = [
        (deploy_args(&v2, &seeded.image(1)), "v2", vec![v2.clone()]),
        (vec!["rollback".into()], "blue", vec![v2.clone()]),
        (
            deploy_args(&v3, &seeded.image(2)),
            "v3",
            vec![v2.clone(), v3.clone()],
        ),
    ];
    let fleets: Vec<String> = ["blue", "v2", "v3"].map(|r| seeded.fleet(r)).to_vec();
    let mut cycle = Cycle::default();
    for (k, (args, live, releases)) in steps.iter().enumerate() {
        let plan_seed = seed * 10 + k as u64;
        let what = format!(
            "seed {seed}, command {k} `greenlight {}` (plan seed {plan_seed}, latency {latency:?}, \
             AWS_MAX_ATTEMPTS {})",
            args.join(" "),
            attempts.unwrap_or("unset")
        );
        let run = || {
            let mut cmd = s.greenlight(&seeded.config);
            if let Some(attempts) = attempts {
                cmd.env("AWS_MAX_ATTEMPTS", attempts);
            }
            cmd.env("AWS_ENDPOINT_URL", proxy.endpoint())
                .args(args)
                .args(["--output", "json"])
                .output()
                .expect("run greenlight")
        };
        proxy.reset_stats();
        proxy.set_plan(FaultPlan::new(plan_seed, FAULT_RATE, kinds.clone()));
        let out = run();
        let stats = proxy.stats();
        cycle.commands += 1;
        cycle.requests += stats.requests;
        for (kind, n) in &stats.faults {
            *cycle.faults.entry(kind).or_default() += n;
        }
        for (action, counts) in &stats.actions {
            let name = action.rsplit(':').next().unwrap_or(action);
            if let Some(n) = counts.faults.get("LoseResponse")
                && !is_read(name)
            {
                *cycle.lost_writes.entry(name.to_owned()).or_default() += n;
            }
        }
        let faults_seen = || {
            let log: Vec<String> = stats
                .log
                .iter()
                .map(|(action, fault)| match fault {
                    Some(kind) => format!("{action} <{kind:?}>"),
                    None => action.clone(),
                })
                .collect();
            format!(
                "--- requests of the faulted run (last 25 of {}) ---\n{}",
                log.len(),
                log[log.len().saturating_sub(25)..].join("\n")
            )
        };
        let code = out.status.code().unwrap_or(-1);
        ensure([0, 1, 3, 4, 5].contains(&code), || {
            format!(
                "{what}: exit code {code} is not one a fault may cause\n{}\n{}",
                show(&out),
                faults_seen()
            )
        })?;
        let violations = aws.snapshot(&seeded, &fleets).serving_violations();
        ensure(violations.is_empty(), || {
            format!(
                "{what}: traffic unsafe after the faulted run:\n  {}\n{}\n{}",
                violations.join("\n  "),
                show(&out),
                faults_seen()
            )
        })?;
        if code != 0 {
            let last: Value = text(&out.stdout)
                .lines()
                .last()
                .and_then(|line| serde_json::from_str(line).ok())
                .unwrap_or_default();
            ensure(
                last["event"] == "error" && last["exit_code"] == code,
                || {
                    format!(
                        "{what}: exit {code} without a last `error` event\n{}",
                        show(&out)
                    )
                },
            )?;
        }
        let mut rerun = None;
        if code != 0 {
            cycle
                .failures
                .push((code, format!("{what}: {}", text(&out.stderr).trim())));
            proxy.set_plan(FaultPlan::none());
            let again = run();
            cycle.reruns += 1;
            ensure(again.status.success(), || {
                format!(
                    "{what}: the re-run without faults did not converge\n{}\n--- the faulted run ---\n{}\n{}",
                    show(&again),
                    show(&out),
                    faults_seen()
                )
            })?;
            rerun = Some(again);
        }
        let violations = aws.converged_violations(&seeded, &fleets, &seeded.fleet(live), releases);
        ensure(violations.is_empty(), || {
            format!(
                "{what}: not converged{}:\n  {}\n{}\n{}{}",
                if rerun.is_some() {
                    " after the re-run"
                } else {
                    ""
                },
                violations.join("\n  "),
                show(&out),
                faults_seen(),
                rerun
                    .as_ref()
                    .map(|r| format!("\n--- the re-run ---\n{}", show(r)))
                    .unwrap_or_default()
            )
        })?;
    }
    aws.delete_fleets(&seeded, &fleets);
    Ok(cycle)
}

/// As users run it: the SDK tries each call up to 5 times, which rides out nearly every fault.
#[test]
fn deploy_rollback_deploy_under_aws_faults_never_hurts_traffic_and_converges() {
    fault_cycles(1..=FAULT_CYCLES, None);
}

/// The SDK gives up after 2 tries (AWS_MAX_ATTEMPTS=2, which greenlight honours), so faults reach
/// greenlight's own handling: commands fail (exit 1 before any change) and are re-run, and
/// failures mid-release are ridden out by the driver. Seeds 101..=120.
#[test]
fn deploy_rollback_deploy_when_the_sdk_gives_up_early_never_hurts_traffic_and_converges() {
    fault_cycles(101..=100 + FAULT_CYCLES, Some("2"));
}

/// The lock is handed back at the end of every command, even when AWS fails that call: a
/// deterministic reproduction of what the cycles above hit by chance. A rollback runs through
/// the proxy with a plan, found by search, that faults exactly the lock's DeleteLaunchTemplate
/// and the SDK's one retry of it (where in the requests that call comes is learnt from a dry run
/// of the same rollback on an identical service).
#[test]
fn a_lock_release_that_fails_is_retried_not_left_behind() {
    let s = session();
    let aws = Aws::new(&s);
    let dry = s.seed("unlock-dry", &[]);
    let real = s.seed("unlock-real", &[]);
    for seeded in [&dry, &real] {
        let out = s
            .greenlight(&seeded.config)
            .args(deploy_args("v2", &seeded.image(1)))
            .output()
            .expect("run greenlight");
        assert!(out.status.success(), "{}", show(&out));
    }
    let proxy = FaultProxy::start(&s.emulator.endpoint, FaultPlan::none());
    let rollback = |seeded: &Seeded| {
        s.greenlight(&seeded.config)
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .env("AWS_MAX_ATTEMPTS", "2")
            .args(["rollback", "--output", "json"])
            .output()
            .expect("run greenlight")
    };
    let out = rollback(&dry);
    assert!(out.status.success(), "the dry run: {}", show(&out));
    let log: Vec<String> = proxy.stats().log.into_iter().map(|(a, _)| a).collect();
    let n = log
        .iter()
        .rposition(|a| a == "ec2:DeleteLaunchTemplate")
        .unwrap_or_else(|| panic!("the dry run never handed the lock back: {log:?}"));
    let rate = 2.0 / (n as f64 + 2.0);
    let plan = (1..2_000_000)
        .map(|seed| FaultPlan::new(seed, rate, vec![FaultKind::ServerError]))
        .find(|plan| {
            let faults = plan.sequence(n + 2);
            faults[..n].iter().all(Option::is_none) && faults[n..].iter().all(Option::is_some)
        })
        .expect("a plan that faults only the release and its retry");
    proxy.reset_stats();
    proxy.set_plan(plan.clone());
    let out = rollback(&real);
    let stats = proxy.stats();
    let faulted: Vec<&str> = stats
        .log
        .iter()
        .filter(|(_, fault)| fault.is_some())
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(
        faulted,
        ["ec2:DeleteLaunchTemplate"; 2],
        "not a reproduction: the rollback's requests differ from the dry run's ({plan:?})\n{}",
        show(&out)
    );
    assert!(out.status.success(), "{}", show(&out));
    let mut problems = Vec::new();
    if let Some(lock) = aws.lock(&real) {
        problems.push(format!(
            "the rollback exited 0 and left its lock (another host gets exit 4 until it \
             expires): {lock}"
        ));
    }
    if text(&out.stdout).contains("stopped part-way") {
        problems.push("the completed rollback's warning says it stopped part-way".to_owned());
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        show(&out)
    );
}

/// Runs the cycles of `seeds` (or only `GREENLIGHT_FAULT_SEED`) and reports what happened.
fn fault_cycles(seeds: std::ops::RangeInclusive<u64>, attempts: Option<&str>) {
    let s = session();
    let began = Instant::now();
    let seeds: Vec<u64> = match std::env::var("GREENLIGHT_FAULT_SEED") {
        Ok(seed) => vec![seed.parse().expect("GREENLIGHT_FAULT_SEED is a number")],
        Err(_) => seeds.collect(),
    };
    let results = parallel(&seeds, FAULT_WORKERS, |seed| {
        caught(&format!("seed {seed}"), || fault_cycle(&s, seed, attempts))
    });
    let (mut commands, mut reruns, mut requests) = (0, 0, 0);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut lost_writes: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(cycle) => {
                commands += cycle.commands;
                reruns += cycle.reruns;
                requests += cycle.requests;
                for (kind, n) in cycle.faults {
                    *faults.entry(kind).or_default() += n;
                }
                for (action, n) in cycle.lost_writes {
                    *lost_writes.entry(action).or_default() += n;
                }
                for (code, failure) in cycle.failures {
                    failures.entry(code).or_default().push(failure);
                }
            }
            Err(error) => errors.push(error),
        }
    }
    let mut report = format!(
        "faults (AWS_MAX_ATTEMPTS {}): {} cycles (seeds {}..={}), {commands} faulted commands, {reruns} re-runs without \
         faults, in {:.1?}; {requests} requests through the proxies, {} faulted: {faults:?}; \
         responses lost after a change landed: {lost_writes:?}",
        attempts.unwrap_or("unset"),
        seeds.len(),
        seeds[0],
        seeds[seeds.len() - 1],
        began.elapsed(),
        faults.values().sum::<u64>(),
    );
    for (code, list) in &failures {
        let _ = write!(report, "\n  exit {code}: {}", list.len());
        for failure in list {
            let _ = write!(report, "\n    {failure}");
        }
    }
    eprintln!("{report}");
    assert!(
        errors.is_empty(),
        "{} of {} cycles broke an invariant:\n\n{}\n\n{report}",
        errors.len(),
        seeds.len(),
        errors.join("\n\n")
    );
    if seeds.len() > 1 {
        for kind in [
            "Throttle",
            "ServerError",
            "Reset",
            "Latency",
            "LoseResponse",
        ] {
            assert!(
                faults.get(kind).copied().unwrap_or_default() > 0,
                "no {kind} fault was injected: {report}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 at seeded random moments

const KILLS: usize = 50;
/// Services killed side by side, `KILLS / KILL_SERVICES` kills each, one after the other.
const KILL_SERVICES: u64 = 5;

/// The seeded moment of a kill: after the deploy printed `after_lines` events (0: right after it
/// started), and then `delay` more. A deploy prints `deploy_started` once it holds the lock,
/// then a `step` line before each step (retire, create, configure, flip, mark warm, mark live)
/// and `health` lines while it waits, so the kills spread over every stage whatever the speed
/// of the machine.
fn kill_moment(seed: u64) -> (usize, Duration) {
    let after_lines = (mix(seed) % 9) as usize;
    let spread = if after_lines == 0 { 900 } else { 300 };
    (
        after_lines,
        Duration::from_millis(mix(seed ^ 0x5eed) % spread),
    )
}

/// Where the kills landed, as the state after each kill shows.
#[derive(Debug, Default)]
struct Kills {
    /// Seeds whose run had already exited when the kill came (not counted as kills).
    finished_first: Vec<u64>,
    /// AWS (but for the lock) exactly as before the run.
    before_first_change: Vec<u64>,
    /// Something changed, traffic not on the new release yet.
    mid_deploy: Vec<u64>,
    /// Traffic already on the new release: the kill landed while settling after the flip.
    after_flip: Vec<u64>,
    /// The last step the killed run announced (`-` for none), per kill.
    last_step: BTreeMap<String, usize>,
    /// Locks the killed runs left, all taken over by the re-run.
    locks_left: usize,
}

impl Kills {
    fn kills(&self) -> usize {
        self.before_first_change.len() + self.mid_deploy.len() + self.after_flip.len()
    }
}

fn last_step(stdout: &str) -> String {
    stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "step")
        .map_or("-".to_owned(), |event| {
            event["action"].as_str().unwrap_or("?").to_owned()
        })
}

/// On a fresh service, one release per seed (alternating images; seeds `worker + 1`,
/// `worker + 1 + KILL_SERVICES`, …) until this series has its share of kills: start the deploy,
/// SIGKILL it at the seed's moment, check traffic is safe, re-run the same deploy to the end and
/// check it converged.
fn kill_series(s: &Session, worker: u64) -> Result<Kills, String> {
    let seeded = s.seed(&format!("killed-{worker}"), &[]);
    let aws = Aws::new(s);
    let mut fleets = vec![seeded.fleet("blue")];
    let mut releases: Vec<String> = Vec::new();
    let mut kills = Kills::default();
    let share = KILLS / KILL_SERVICES as usize;
    let seeds = (0..).map(|j| worker + 1 + j * KILL_SERVICES);
    for seed in seeds.take(3 * share) {
        if kills.kills() == share {
            break;
        }
        let release = format!("r{seed}");
        let image = seeded.image(1 + (seed % 2) as usize);
        let fleet = seeded.fleet(&release);
        fleets.push(fleet.clone());
        slow_health(s, &fleet, 3);
        let before = aws.fingerprint(&seeded, &fleets);
        let (after_lines, delay) = kill_moment(seed);
        let mut cmd = spawnable(s, &seeded.config);
        cmd.args(deploy_args(&release, &image))
            .args(["--output", "json"]);
        let mut run = Running::start(cmd);
        for _ in 0..after_lines {
            if run.lines.recv_timeout(Duration::from_secs(60)).is_err() {
                break;
            }
        }
        std::thread::sleep(delay);
        let finished = run.kill();
        let (_, stdout, _) = run.finish(Duration::from_secs(30));
        let events = stdout.join("\n");
        let step = last_step(&events);
        let what = format!(
            "seed {seed}: deploy {release} killed {delay:?} after its event #{after_lines}, last \
             step {step}"
        );

        let snapshot = aws.snapshot(&seeded, &fleets);
        let violations = snapshot.serving_violations();
        ensure(violations.is_empty(), || {
            format!(
                "{what}: traffic unsafe after the kill:\n  {}\n--- events ---\n{events}",
                violations.join("\n  ")
            )
        })?;
        let green_live = snapshot.groups.iter().any(|g| {
            g.name == fleet
                && snapshot
                    .forwards
                    .iter()
                    .any(|(tg, w)| *w > 0 && g.target_groups.contains(tg))
        });
        if finished {
            kills.finished_first.push(seed);
        } else {
            *kills.last_step.entry(step.clone()).or_default() += 1;
            if aws.fingerprint(&seeded, &fleets) == before {
                kills.before_first_change.push(seed);
            } else if green_live {
                kills.after_flip.push(seed);
            } else {
                kills.mid_deploy.push(seed);
            }
            if aws.lock(&seeded).is_some() {
                kills.locks_left += 1;
            }
        }

        let out = s
            .greenlight(&seeded.config)
            .args(deploy_args(&release, &image))
            .args(["--output", "json"])
            .output()
            .expect("run greenlight");
        ensure(out.status.success(), || {
            format!(
                "{what}: the re-run did not complete\n{}\n--- events of the killed run ---\n{events}",
                show(&out)
            )
        })?;
        releases.push(release.clone());
        let violations = aws.converged_violations(&seeded, &fleets, &fleet, &releases);
        ensure(violations.is_empty(), || {
            format!(
                "{what}: not converged after the re-run:\n  {}\n{}\n--- events of the killed run ---\n{events}",
                violations.join("\n  "),
                show(&out)
            )
        })?;
    }
    aws.delete_fleets(&seeded, &fleets);
    ensure(kills.kills() == share, || {
        format!(
            "series {worker}: only {} of {share} runs were killed before they finished: {kills:?}",
            kills.kills()
        )
    })?;
    Ok(kills)
}

#[test]
fn kill_9_at_random_moments_then_the_same_deploy_completes() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: needs greenlight's emulator to script target health");
        return;
    }
    let began = Instant::now();
    let workers: Vec<u64> = (0..KILL_SERVICES).collect();
    let results = parallel(&workers, workers.len(), |worker| {
        caught(&format!("series {worker}"), || kill_series(&s, worker))
    });
    let mut total = Kills::default();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(k) => {
                total.finished_first.extend(k.finished_first);
                total.before_first_change.extend(k.before_first_change);
                total.mid_deploy.extend(k.mid_deploy);
                total.after_flip.extend(k.after_flip);
                total.locks_left += k.locks_left;
                for (step, n) in k.last_step {
                    *total.last_step.entry(step).or_default() += n;
                }
            }
            Err(error) => errors.push(error),
        }
    }
    let report = format!(
        "kill -9: {} kills in {:.1?}; {} killed before the first change, {} mid-deploy, {} after the flip; {} more runs finished before their kill \
         {:?}; {} kills left a lock (taken over by the re-run); last step announced before the \
         kill: {:?}",
        total.kills(),
        began.elapsed(),
        total.before_first_change.len(),
        total.mid_deploy.len(),
        total.after_flip.len(),
        total.finished_first.len(),
        total.finished_first,
        total.locks_left,
        total.last_step
    );
    eprintln!("{report}");
    assert!(
        errors.is_empty(),
        "{} of {KILL_SERVICES} series failed:\n\n{}\n\n{report}",
        errors.len(),
        errors.join("\n\n")
    );
    // The kills must have landed in every part of a deploy for the test to mean anything.
    assert!(
        !total.before_first_change.is_empty()
            && !total.mid_deploy.is_empty()
            && !total.after_flip.is_empty(),
        "the kills did not cover the whole deploy: {report}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Signals

/// A running `greenlight ... --output json` whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<Vec<String>>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn greenlight");
        let (send, lines) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = send.send(line.clone());
                all.push(line);
            }
            all
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Running {
            child,
            lines,
            stdout,
            stderr,
        }
    }

    /// Waits until an event named `event` is printed; false if the run ends or `limit` passes.
    fn wait_for_event(&self, event: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
                    if parsed["event"] == event {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILLs the run unless it has exited already; says whether it had.
    fn kill(&mut self) -> bool {
        if self.child.try_wait().expect("try_wait").is_some() {
            return true;
        }
        self.child.kill().expect("SIGKILL");
        false
    }

    /// Waits up to `limit` for the exit; kills the run if it is still going then.
    fn finish(mut self, limit: Duration) -> (Option<ExitStatus>, Vec<String>, String) {
        let status = wait_for(&mut self.child, limit);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let stdout = self.stdout.join().expect("stdout reader");
        let stderr = self.stderr.join().expect("stderr reader");
        (status, stdout, stderr)
    }
}

#[test]
fn sigterm_and_sigint_stop_a_deploy_at_a_safe_point_and_a_rerun_completes() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: needs greenlight's emulator to script target health");
        return;
    }
    let seeded = s.seed("signals", &[]);
    let aws = Aws::new(&s);
    let fleets: Vec<String> = ["blue", "v2", "v3", "v4"].map(|r| seeded.fleet(r)).to_vec();
    let cases: [(&str, &[&str], i32); 3] = [
        ("v2", &["-TERM"], 143),
        ("v3", &["-INT"], 130),
        ("v4", &["-TERM", "-TERM"], 143),
    ];
    // How the stop message names the live release: the seeded fleet has no release tag yet.
    let mut live_release = seeded.fleet("blue");
    let mut releases: Vec<String> = Vec::new();
    for (n, (release, signals, code)) in cases.into_iter().enumerate() {
        let fleet = seeded.fleet(release);
        let image = seeded.image(1 + n % 2);
        let what = format!("deploy {release}, then kill {}", signals.join(" "));
        // Green stays `initial`: the deploy waits for its health until it is told to stop.
        s.script_health(json!({"asg_name": fleet}), json!([{"state": "initial"}]));
        // Through a proxy, so the stop after the first of two signals can be made slow.
        let proxy = FaultProxy::start(&s.emulator.endpoint, FaultPlan::none());
        let mut cmd = spawnable(&s, &seeded.config);
        cmd.env("AWS_ENDPOINT_URL", proxy.endpoint())
            .args(deploy_args(release, &image))
            .args(["--output", "json"]);
        let run = Running::start(cmd);
        assert!(
            run.wait_for_event("health", Duration::from_secs(60)),
            "{what}: the deploy never waited for health"
        );
        if signals.len() > 1 {
            // Every AWS call now takes 2 s, handing back the lock too: the second signal comes
            // while the run is still stopping at its safe point, never after it exited.
            proxy.set_plan(FaultPlan::always(FaultKind::Latency(Duration::from_secs(
                2,
            ))));
        }
        let mut sent = Instant::now();
        for (i, signal) in signals.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(300));
                sent = Instant::now();
            }
            run.signal(signal);
        }
        let (status, stdout, stderr) = run.finish(Duration::from_secs(30));
        let took = sent.elapsed();
        let all = format!(
            "--- stdout ---\n{}\n--- stderr ---\n{stderr}",
            stdout.join("\n")
        );
        eprintln!(
            "{what}: exit {:?} after {took:.2?}\n{all}",
            status.map(|s| s.code())
        );
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(code),
            "{what}: exit status\n{all}"
        );
        let last: Value =
            serde_json::from_str(stdout.last().map_or("", String::as_str)).unwrap_or_default();
        if signals.len() == 1 {
            // Stopped at a safe point: the error event, one line saying where things stand and
            // what resumes, and the lock handed back.
            assert_eq!(last["event"], "error", "{what}: last event\n{all}");
            assert_eq!(last["exit_code"], code, "{what}: last event\n{all}");
            let name = if code == 143 { "SIGTERM" } else { "SIGINT" };
            let message = stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or_else(|| panic!("{what}: no error line\n{all}"));
            assert!(
                message.contains(&format!("stopped by {name} at a safe point")),
                "{what}: {message}"
            );
            assert!(
                message.contains(&format!(
                    "release {live_release} (slot {}) takes 100% of the traffic",
                    ["a", "b"][n % 2]
                )),
                "{what}: says where traffic is: {message}"
            );
            assert!(
                message.contains(&format!("release {release} is provisioning with 0%")),
                "{what}: says where the release in progress is: {message}"
            );
            assert!(
                message.contains("re-run the same deploy"),
                "{what}: says which command resumes: {message}"
            );
            assert_eq!(
                aws.lock(&seeded),
                None,
                "{what}: the lock was not handed back"
            );
        } else {
            assert!(
                took < Duration::from_secs(1),
                "{what}: the second signal exits at once, not after {took:?}\n{all}"
            );
            assert!(
                stderr.contains("again: exiting now"),
                "{what}: says it did not stop at a safe point\n{all}"
            );
            eprintln!(
                "{what}: the lock {} left behind",
                if aws.lock(&seeded).is_some() {
                    "was"
                } else {
                    "was not"
                }
            );
        }
        let violations = aws.snapshot(&seeded, &fleets).serving_violations();
        assert!(
            violations.is_empty(),
            "{what}: traffic unsafe after the signal:\n  {}\n{all}",
            violations.join("\n  ")
        );

        // Green turns healthy; the same deploy, re-run, finishes the release (taking over the
        // lock of a run that died holding it: same host, dead pid).
        s.script_health(json!({"asg_name": fleet}), json!([{"state": "healthy"}]));
        let out = s
            .greenlight(&seeded.config)
            .args(deploy_args(release, &image))
            .args(["--output", "json"])
            .output()
            .expect("run greenlight");
        assert!(out.status.success(), "{what}: the re-run\n{}", show(&out));
        releases.push(release.to_owned());
        live_release = release.to_owned();
        let violations = aws.converged_violations(&seeded, &fleets, &fleet, &releases);
        assert!(
            violations.is_empty(),
            "{what}: not converged after the re-run:\n  {}\n{}",
            violations.join("\n  "),
            show(&out)
        );
    }
}

/// The documented contract: with `--output json`, the last line of every run that exits
/// non-zero is an `error` event. The second signal's immediate exit skips it.
#[test]
fn a_second_signal_still_ends_json_output_with_an_error_event() {
    let s = session();
    if !s.emulator.hooks {
        eprintln!("skipped: needs greenlight's emulator to script target health");
        return;
    }
    let seeded = s.seed("twice", &[]);
    s.script_health(
        json!({"asg_name": seeded.fleet("v2")}),
        json!([{"state": "initial"}]),
    );
    let mut cmd = spawnable(&s, &seeded.config);
    cmd.args(deploy_args("v2", &seeded.image(1)))
        .args(["--output", "json"]);
    let run = Running::start(cmd);
    assert!(run.wait_for_event("health", Duration::from_secs(60)));
    run.signal("-TERM");
    run.signal("-TERM");
    let (status, stdout, stderr) = run.finish(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(143), "{stderr}");
    let last: Value =
        serde_json::from_str(stdout.last().map_or("", String::as_str)).unwrap_or_default();
    assert_eq!(
        (last["event"].as_str(), last["exit_code"].as_i64()),
        (Some("error"), Some(143)),
        "last line: {:?}\nstderr: {stderr}",
        stdout.last()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Secrets

const MARKER_KEY: &str = "AKIAMARKERKEY0000001";
const MARKER_SECRET: &str = "markersecret/abc+def";
const MARKER_TOKEN: &str = "markersessiontoken";

/// What must never be printed: the credentials (also percent-encoded, or in part), and anything
/// of a request signature.
fn leaks(output: &str) -> Vec<&'static str> {
    let lower = output.to_lowercase();
    [
        MARKER_KEY,
        MARKER_SECRET,
        "markersecret",
        "markersecret%2fabc%2bdef",
        "abc+def",
        MARKER_TOKEN,
        "Signature=",
        "X-Amz-Signature",
        "Credential=",
        "X-Amz-Credential",
        // Not the token header's name: the SDK's trace logs print the canonical request with
        // the token's value redacted (`x-amz-security-token:** redacted (length=18) **`),
        // which gives nothing away. Its value is MARKER_TOKEN, above.
        "AWS4-HMAC-SHA256",
        "Authorization:",
    ]
    .into_iter()
    .filter(|needle| lower.contains(&needle.to_lowercase()))
    .collect()
}

/// (arguments, extra environment, the exit codes it may end with)
type Case<'a> = (Vec<&'a str>, Vec<(&'static str, String)>, &'static [i32]);

#[test]
fn credentials_and_signatures_never_appear_in_any_output() {
    let s = session();
    let seeded = s.seed("secrets", &[]);
    let aws = Aws::new(&s);
    let failing = FaultProxy::start(
        &s.emulator.endpoint,
        FaultPlan::always(FaultKind::ServerError),
    );
    let throttling =
        FaultProxy::start(&s.emulator.endpoint, FaultPlan::always(FaultKind::Throttle));
    let resetting = FaultProxy::start(&s.emulator.endpoint, FaultPlan::always(FaultKind::Reset));
    let (v2, dead) = (seeded.image(1), "ami-0000000000000dead");
    let cases: Vec<Case> = vec![
        (vec!["validate"], vec![], &[0]),
        (vec!["validate", "--output", "json"], vec![], &[0]),
        (
            vec!["deploy", "--release", "v2", "--image-id", &v2],
            vec![],
            &[0],
        ),
        (vec!["status"], vec![], &[0]),
        (vec!["status", "--output", "json"], vec![], &[0]),
        (vec!["rollback", "--output", "json"], vec![], &[0]),
        (vec!["rollback"], vec![], &[0]),
        // Failures, whose messages quote AWS's answers and the SDK's errors.
        (
            vec!["deploy", "--release", "v3", "--image-id", dead],
            vec![],
            &[2],
        ),
        (
            vec![
                "deploy",
                "--release",
                "v3",
                "--image-id",
                dead,
                "--output",
                "json",
            ],
            vec![],
            &[2],
        ),
        (
            vec![
                "deploy",
                "--release",
                "v3",
                "--image-id",
                &v2,
                "--output",
                "json",
            ],
            vec![
                ("AWS_ENDPOINT_URL", failing.endpoint()),
                ("AWS_MAX_ATTEMPTS", "1".into()),
            ],
            &[1],
        ),
        (
            vec!["status"],
            vec![
                ("AWS_ENDPOINT_URL", throttling.endpoint()),
                ("AWS_MAX_ATTEMPTS", "1".into()),
            ],
            &[1],
        ),
        (
            vec!["rollback"],
            vec![
                ("AWS_ENDPOINT_URL", resetting.endpoint()),
                ("AWS_MAX_ATTEMPTS", "1".into()),
            ],
            &[1],
        ),
        (
            vec!["validate"],
            vec![
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
                ("AWS_MAX_ATTEMPTS", "1".into()),
            ],
            &[1],
        ),
        // Verbose or debug output, if the CLI has it (exit 2 if it does not).
        (vec!["-v", "status"], vec![], &[0, 2]),
        (vec!["status", "--verbose"], vec![], &[0, 2]),
        (vec!["status", "--debug"], vec![], &[0, 2]),
        (vec!["unlock", "--force"], vec![], &[0]),
    ];
    let mut verbose = Vec::new();
    for (args, env, codes) in &cases {
        let out = s
            .greenlight(&seeded.config)
            .env("AWS_ACCESS_KEY_ID", MARKER_KEY)
            .env("AWS_SECRET_ACCESS_KEY", MARKER_SECRET)
            .env("AWS_SESSION_TOKEN", MARKER_TOKEN)
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "full")
            .envs(env.iter().cloned())
            .args(args)
            .output()
            .expect("run greenlight");
        let code = out.status.code().unwrap_or(-1);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            codes.contains(&code),
            "greenlight {args:?}: exit {code}\n{}",
            show(&out)
        );
        let leaked = leaks(&all);
        assert!(
            leaked.is_empty(),
            "greenlight {args:?} printed {leaked:?}:\n{all}"
        );
        if args
            .iter()
            .any(|a| ["-v", "--verbose", "--debug"].contains(a))
        {
            verbose.push(format!(
                "{args:?} → exit {code}: {}",
                text(&out.stderr).trim()
            ));
        }
    }
    // The marker credentials were the ones used: the deploy above went through with them.
    assert_eq!(
        aws.groups(&seeded, &[seeded.fleet("v2")])
            .iter()
            .filter(|g| g.name == seeded.fleet("v2"))
            .count(),
        1
    );
    eprintln!(
        "secrets: {} runs with marker credentials and RUST_LOG=trace printed none of them; \
         verbose flags: {verbose:?}",
        cases.len()
    );
}
