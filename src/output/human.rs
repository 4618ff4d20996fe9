//! Text for a person at a terminal: one progress line per step, tables for status. Coloured
//! (anstyle, through anstream) as `--color` says: green for done, yellow for waits and warnings,
//! red for failures, dim for what is secondary.

use std::io::Write;
use std::time::SystemTime;

use anstyle::Style;

use super::progress::{Progress, short};
use super::style::{self, paint};
use crate::core::decide::{Action, Green, Wait};
use crate::core::lock::LockRecord;
use crate::core::spec::Spec;
use crate::engine::events::{Event, Reporter};
use crate::engine::status::StatusReport;
use crate::engine::validate::Validation;

pub struct HumanReporter {
    /// The command's clock: the `[m:ss]` of each line, and a heartbeat's times.
    now: Box<dyn Fn() -> SystemTime + Send>,
    /// Where lines go, with the progress line (a terminal) or heartbeats (a log) while waiting.
    progress: Progress,
    /// Why this run stopped a release, once a line said it (a failed hook's line, or the first
    /// step of the stop): the steps that follow refer back to it instead of repeating it.
    stop: Option<Stop>,
    /// Whether this run sent traffic back to the previous release.
    routed_back: bool,
}

struct Stop {
    reason: String,
    /// How the steps after it refer to it.
    short: &'static str,
}

impl Stop {
    /// Whether `reason` is this one, maybe as read back from green's tag (clipped).
    fn is(&self, reason: &str) -> bool {
        match reason.strip_suffix('…') {
            Some(clipped) => self.reason.starts_with(clipped),
            None => reason == self.reason,
        }
    }
}

impl HumanReporter {
    /// On stdout, on the wall clock.
    pub fn new() -> HumanReporter {
        HumanReporter::stdout()
    }

    /// On stdout, on the wall clock: a progress line on a terminal, heartbeats otherwise.
    pub fn stdout() -> HumanReporter {
        HumanReporter::with(Progress::stdout(SystemTime::now()), SystemTime::now)
    }

    /// Lines through `progress`, timed by `now` (a test's fake clock, say).
    pub fn with(
        progress: Progress,
        now: impl Fn() -> SystemTime + Send + 'static,
    ) -> HumanReporter {
        HumanReporter {
            now: Box::new(now),
            progress,
            stop: None,
            routed_back: false,
        }
    }
}

impl HumanReporter {
    /// The lines `event` prints as, without the time prefix, given the events before it.
    fn lines(&mut self, event: &Event) -> Vec<String> {
        match event {
            Event::Hook { run } if !run.passed() => {
                self.stop = Some(Stop {
                    reason: run.failure(),
                    short: "the hook failed",
                });
                describe(event)
            }
            Event::Step { action } => {
                if let Action::RouteBack { .. } = action {
                    self.routed_back = true;
                }
                let line = match &self.stop {
                    Some(stop) => describe_action(&refer_back(action, stop)),
                    None => describe_action(action),
                };
                if let (
                    None,
                    Action::RouteBack { reason, .. } | Action::RecordStop { reason, .. },
                ) = (&self.stop, action)
                {
                    self.stop = Some(Stop {
                        reason: reason.description.clone(),
                        short: "stopped",
                    });
                }
                vec![line]
            }
            Event::ReleaseFailed { release, reasons } => {
                let traffic = if self.routed_back {
                    "traffic is back on the previous release"
                } else {
                    "traffic stayed on the previous release"
                };
                let mut lines = vec![format!("✗ release {release} failed; {traffic}")];
                lines.extend(
                    reasons
                        .iter()
                        .filter(|r| {
                            !self
                                .stop
                                .as_ref()
                                .is_some_and(|stop| stop.is(&r.description))
                        })
                        .map(|r| format!("  {r}")),
                );
                lines
            }
            _ => describe(event),
        }
    }
}

impl Default for HumanReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for HumanReporter {
    fn report(&mut self, event: &Event) {
        let mut lines = self.lines(event);
        if let (Some(first), Some(tone)) = (lines.first_mut(), tone(event)) {
            *first = paint(tone, first);
        }
        let now = (self.now)();
        self.progress.lines(&lines, now, during_wait(event));
    }

    fn tick(&mut self, wait: &Wait, now: SystemTime) {
        self.progress.tick(wait, now);
    }
}

/// The colour of an event's (first) line: done, waiting, failed; `None` for the rest.
fn tone(event: &Event) -> Option<Style> {
    match event {
        Event::Released { .. }
        | Event::RolledBack { .. }
        | Event::AlreadyRolledBack { .. }
        | Event::Aborted { .. }
        | Event::NothingToAbort { .. } => Some(style::OK),
        Event::ReleaseFailed { .. } | Event::Error { .. } => Some(style::FAIL),
        Event::Hook { run } if !run.passed() => Some(style::FAIL),
        Event::Step {
            action:
                Action::RouteBack { .. } | Action::RecordStop { .. } | Action::FailRelease { .. },
        } => Some(style::FAIL),
        Event::Pause { .. }
        | Event::Gate { .. }
        | Event::Paused { .. }
        | Event::Analysis { .. }
        | Event::Warning { .. }
        | Event::AbortRequested { .. } => Some(style::WAIT),
        _ => None,
    }
}

/// Whether an event happens while a wait goes on (its line goes above the progress line), or
/// ends it.
fn during_wait(event: &Event) -> bool {
    matches!(
        event,
        Event::Health { .. }
            | Event::Pause { .. }
            | Event::Gate { .. }
            | Event::Analysis { .. }
            | Event::Warning { .. }
    )
}

/// The lines an event prints as, without the time prefix.
pub fn describe(event: &Event) -> Vec<String> {
    match event {
        Event::DeployStarted {
            service,
            release,
            live_release,
            live_slot,
            live_target_group,
            idle_target_group,
            strategy,
            plan,
        } => vec![format!(
            "deploying {service} {release} ({}): live is {live_release} in {} (slot {live_slot}); the new release goes to {}",
            plan_words(*strategy, plan),
            live_target_group.short_name(),
            idle_target_group.short_name()
        )],
        Event::Pause {
            release,
            step,
            of,
            weight,
            until,
        } => vec![format!(
            "step {step}/{of}: {release} takes {weight}; next step at {} (or `greenlight promote`)",
            crate::core::tags::timestamp(*until)
        )],
        Event::Gate {
            release,
            step,
            of,
            weight,
        } => vec![format!(
            "step {step}/{of}: {release} takes {weight}; waiting for `greenlight promote` (or `greenlight abort`)"
        )],
        Event::Paused {
            release,
            step,
            of,
            weight,
        } => vec![format!(
            "⏸ release {release} waits at step {step}/{of} ({weight}); run `greenlight promote` to go on, `greenlight abort` to stop it"
        )],
        Event::Promoted {
            release,
            step,
            full,
            driver,
        } => {
            let what = match (full, step) {
                (true, _) => "every remaining pause skipped".to_owned(),
                (false, Some(step)) => format!("pause of step {step} ended"),
                (false, None) => "promoted".to_owned(),
            };
            vec![if driver == "this process" {
                format!("promoting {release}: {what}; carrying on from here")
            } else {
                format!("promoting {release}: {what}; the running deploy carries on ({driver})")
            }]
        }
        Event::AbortRequested { release, driver } => vec![format!(
            "asked the running deploy to abort {release}; waiting for it ({driver})"
        )],
        Event::Aborted {
            release,
            live_release,
            slot,
        } => vec![format!(
            "✓ aborted release {release}: {live_release} takes all traffic (slot {slot})"
        )],
        Event::Analysis {
            release,
            step,
            of,
            weight,
            verdict,
        } => vec![format!(
            "step {step}/{of}: {release} takes {weight}; analysis {verdict}; waiting for more requests (or `greenlight promote`)"
        )],
        Event::Hook { run } if run.passed() => vec![format!(
            "hook {} `{}` passed ({:.1}s)",
            run.stage, run.command, run.seconds
        )],
        // One line: its output was streamed as it came, and the release's failure that
        // follows carries its last lines.
        Event::Hook { run } => vec![format!("✗ {} ({:.1}s)", run.failure(), run.seconds)],
        Event::NothingToAbort { live_release, slot } => vec![format!(
            "nothing to abort: no release is in progress; {live_release} takes all traffic (slot {slot})"
        )],
        Event::Step { action } => vec![describe_action(action)],
        Event::Health { fleet, summary, .. } => vec![format!("green {fleet}: {summary}")],
        Event::Warning { message } => vec![format!("warning: {message}")],
        Event::Released {
            release,
            slot,
            flipped: true,
        } => vec![format!("✓ release {release} is live (slot {slot})")],
        Event::Released {
            release,
            slot,
            flipped: false,
        } => vec![format!(
            "✓ release {release} was already live (slot {slot}); nothing to do"
        )],
        Event::ReleaseFailed { release, reasons } => {
            let mut lines = vec![format!(
                "✗ release {release} failed; traffic stayed on the previous release"
            )];
            lines.extend(reasons.iter().map(|r| format!("  {r}")));
            lines
        }
        Event::RolledBack {
            release,
            slot,
            flipped: true,
        } => {
            vec![format!(
                "✓ rolled back: release {release} takes all traffic (slot {slot})"
            )]
        }
        Event::RolledBack {
            release,
            slot,
            flipped: false,
        } => vec![format!(
            "✓ release {release} takes all traffic (slot {slot}); finished the rollback that was under way"
        )],
        Event::AlreadyRolledBack {
            release,
            slot,
            from,
        } if from.is_empty() => vec![format!(
            "✓ release {release} is live already (slot {slot}); nothing to do"
        )],
        Event::AlreadyRolledBack {
            release,
            slot,
            from,
        } if from.starts_with("failed release") => vec![format!(
            "✓ release {release} is live already (slot {slot}); the {from} takes no traffic; nothing to do"
        )],
        Event::AlreadyRolledBack {
            release,
            slot,
            from,
        } => vec![format!(
            "✓ release {release} is live already (slot {slot}): rolled back from {from}; nothing to do (`--to` picks a release explicitly)"
        )],
        Event::Error { message, .. } => vec![format!("error: {message}")],
    }
}

fn describe_action(action: &Action) -> String {
    match action {
        Action::JoinRouter { target_group, .. } => format!(
            "adding {} to the router at weight 0, so the load balancer health-checks it",
            target_group.short_name()
        ),
        Action::RetireFleet {
            fleet,
            release,
            phase,
        } => format!(
            "retiring fleet {fleet} (release {release}, {}) from the idle slot",
            phase.map_or("untagged".into(), |p| p.to_string())
        ),
        Action::CreateFleet(Green {
            fleet,
            source,
            target_group,
            ..
        }) => format!(
            "creating fleet {fleet} as a twin of {source}, attached to {}",
            target_group.short_name()
        ),
        Action::ConfigureFleet(Green { fleet, source, .. }) => format!(
            "configuring {fleet} (policies, schedules, metrics) and scaling it to {source}'s capacity"
        ),
        Action::ReviveFleet {
            fleet, capacity, ..
        } => format!(
            "retrying failed fleet {fleet}: scaling to desired {}",
            capacity.desired
        ),
        Action::Restage { fleet, release, .. } => format!(
            "deploying previous release {release} (fleet {fleet}) again: it goes through the plan like a new one"
        ),
        Action::Begin {
            release, step, of, ..
        } => format!("{release} is healthy; step {step}/{of} is a gate at 0%"),
        Action::MatchCapacity { fleet, capacity } => format!(
            "the live fleet grew: scaling {fleet} to desired {} too",
            capacity.desired
        ),
        Action::Shift {
            release,
            weight,
            step,
            of,
            to,
            verdict,
            ..
        } => format!(
            "step {step}/{of}: shifting {weight} of the traffic to {} (release {release}){}",
            to.short_name(),
            verdict
                .as_ref()
                .map(|v| format!("; analysis {v}"))
                .unwrap_or_default()
        ),
        Action::OpenTestRule {
            release,
            priority,
            target_group,
            ..
        } => format!(
            "opening test traffic: a rule at priority {priority} sends requests with the test header naming {release} to {}",
            target_group.short_name()
        ),
        Action::RecordStop {
            release, reason, ..
        } => format!("stopping release {release}: {reason}"),
        Action::CloseTestRule { release, .. } => {
            format!("closing the test-traffic rule of release {release}")
        }
        Action::PointTestListener { to, .. } => {
            format!("pointing the test listener at {}", to.short_name())
        }
        Action::RunHooks { release, stage, .. } => {
            format!("running the {stage} hooks of release {release}")
        }
        Action::RouteBack {
            to,
            release,
            reason,
            ..
        } => format!(
            "{reason}: all traffic back to {} (away from release {release})",
            to.short_name()
        ),
        Action::Flip {
            to,
            release,
            verdict,
            ..
        } => format!(
            "flipping all traffic to {} (release {release}){}",
            to.short_name(),
            verdict
                .as_ref()
                .map(|v| format!("; analysis {v}"))
                .unwrap_or_default()
        ),
        Action::MarkLive {
            fleet,
            release,
            resume,
        } => {
            let scaling = if resume.is_empty() {
                String::new()
            } else {
                format!("; resuming {}", resume.join(", "))
            };
            format!("marking {fleet} (release {release}) live{scaling}")
        }
        Action::MarkWarm {
            fleet,
            release,
            until,
            suspend,
            ..
        } => {
            let scaling = if suspend.is_empty() {
                String::new()
            } else {
                format!(" at its capacity (suspending {})", suspend.join(", "))
            };
            format!(
                "keeping {fleet} (release {release}) warm{scaling} until {}",
                crate::core::tags::timestamp(*until)
            )
        }
        Action::FailRelease { fleet, reasons, .. } => format!(
            "{}: scaling {fleet} to 0 and marking it failed",
            reasons
                .first()
                .map_or("stopping", |r| r.description.as_str())
        ),
    }
}

/// `action` with a reason that is `stop`'s (maybe as recorded on green: clipped) replaced by a
/// reference to it: the line that said it said it whole.
fn refer_back(action: &Action, stop: &Stop) -> Action {
    let mut action = action.clone();
    match &mut action {
        Action::RouteBack { reason, .. } | Action::RecordStop { reason, .. }
            if stop.is(&reason.description) =>
        {
            reason.description = stop.short.to_owned();
        }
        Action::FailRelease { reasons, .. } => {
            if let Some(first) = reasons
                .first_mut()
                .filter(|first| stop.is(&first.description))
            {
                first.description = stop.short.to_owned();
            }
        }
        _ => {}
    }
    action
}

fn plan_words(strategy: crate::core::plan::Strategy, plan: &str) -> String {
    let steps = plan.split_once(' ').map_or(plan, |(_, steps)| steps);
    match strategy {
        crate::core::plan::Strategy::BlueGreen if steps == "100" => "blue/green".to_owned(),
        crate::core::plan::Strategy::BlueGreen => "blue/green, gate before the flip".to_owned(),
        crate::core::plan::Strategy::Canary => format!("canary {steps}"),
    }
}

pub fn print_unlock(spec: &Spec, removed: Option<&LockRecord>) {
    let mut out = super::stdout().lock();
    let _ = match removed {
        Some(lock) => writeln!(
            out,
            "{} the lock on {}: it was held by {}",
            paint(style::OK, "removed"),
            spec.service,
            lock.describe()
        ),
        None => writeln!(out, "{} was not locked; nothing to do", spec.service),
    };
}

/// `greenlight status`, as of `now`.
pub fn print_status(report: &StatusReport, now: SystemTime) {
    let mut out = super::stdout().lock();
    let _ = writeln!(out, "{}", status_text(report, now));
    let _ = out.flush();
}

/// The status as lines of text (styled; the stream strips the styles when colour is off), as
/// of `now` (for the time left in a pause). No trailing newline.
pub fn status_text(report: &StatusReport, now: SystemTime) -> String {
    let mut text = String::new();
    write_status(&mut text, report, now);
    text.truncate(text.trim_end().len());
    text
}

fn write_status(out: &mut String, report: &StatusReport, now: SystemTime) {
    use std::fmt::Write as _;
    let live = match (&report.live_release, report.live_slot) {
        (Some(release), Some(slot)) => {
            paint(style::OK, &format!("live release {release} (slot {slot})"))
        }
        _ => paint(style::WAIT, "no single live release"),
    };
    let _ = writeln!(
        out,
        "service {}: {live}",
        paint(style::BOLD, &report.service)
    );
    let _ = writeln!(out, "router: {}", report.router);
    if let Some(problem) = &report.problem {
        let _ = writeln!(out, "{} {problem}", paint(style::FAIL, "attention:"));
    }
    if let Some(r) = &report.release {
        let step = match (r.step, r.steps) {
            (Some(n), Some(of)) => format!(", step {n}/{of}"),
            _ => String::new(),
        };
        let mut line = format!(
            "{} release {} ({}{step}) takes {} of the traffic",
            paint(style::WAIT, "in progress:"),
            r.release,
            r.phase.as_deref().unwrap_or("untagged"),
            r.weight
        );
        if let Some(until) = &r.pause_until {
            line.push_str(&format!("; next step at {until}"));
            if let Ok(end) = humantime::parse_rfc3339_weak(until) {
                let left = end.duration_since(now).unwrap_or_default();
                line.push_str(&paint(style::DIM, &format!(" (in {})", short(left))));
            }
        }
        if r.waiting_for_promote {
            line.push_str("; waiting for `greenlight promote`");
        }
        if let Some(deadline) = &r.health_deadline {
            line.push_str(&format!("; must be healthy by {deadline}"));
        }
        if let Some(abort) = &r.abort_requested {
            line.push_str(&format!("; abort requested ({abort})"));
        }
        let _ = writeln!(out, "{line}");
        if let Some(verdict) = &r.verdict {
            let _ = writeln!(out, "analysis: {verdict}");
        }
    }
    for alarm in &report.alarms {
        let state = serde_json::to_value(alarm.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_uppercase))
            .unwrap_or_default();
        let tone = match state.as_str() {
            "OK" => style::OK,
            "ALARM" => style::FAIL,
            _ => style::WAIT,
        };
        let _ = writeln!(out, "alarm {}: {}", alarm.name, paint(tone, &state));
    }
    for rule in &report.test_rules {
        let _ = writeln!(
            out,
            "test traffic: release {} through rule {} (priority {})",
            rule.release,
            rule.rule_arn,
            rule.priority
                .map_or("default".to_owned(), |p| p.to_string())
        );
    }
    match &report.lock {
        Some(lock) => {
            let _ = writeln!(out, "{} {}", paint(style::WAIT, "locked:"), lock.describe());
        }
        None => {
            let _ = writeln!(out, "lock: free");
        }
    }
    let header = [
        "SLOT",
        "TARGET GROUP",
        "WEIGHT",
        "FLEET",
        "RELEASE",
        "PHASE",
        "DESIRED",
        "IN SERVICE",
        "HEALTHY",
        "WARM UNTIL",
        "IMAGE",
        "LAUNCH TEMPLATE",
    ];
    let dash = || "-".to_owned();
    let rows: Vec<[String; 12]> = report
        .traffic
        .iter()
        .map(|s| {
            let count = |n: u32| {
                if s.asg.is_some() {
                    n.to_string()
                } else {
                    dash()
                }
            };
            [
                s.slot.to_string(),
                s.target_group.clone(),
                format!("{} ({}%)", s.weight, s.percent),
                s.asg.clone().unwrap_or_else(dash),
                s.release.clone().unwrap_or_else(dash),
                s.phase.clone().unwrap_or_else(dash),
                count(s.desired),
                count(s.in_service),
                count(s.healthy),
                s.warm_until.clone().unwrap_or_else(dash),
                s.image_id.clone().unwrap_or_else(dash),
                match (&s.launch_template_id, &s.launch_template_version) {
                    (Some(id), Some(version)) => format!("{id}:{version}"),
                    _ => dash(),
                },
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let _ = writeln!(out, "{}", paint(style::DIM, &line(header.to_vec())));
    for (row, s) in rows.iter().zip(&report.traffic) {
        let tone = match s.phase.as_deref() {
            Some("failed") => style::FAIL,
            _ if s.percent > 0 => style::OK,
            _ => Style::new(),
        };
        let _ = writeln!(
            out,
            "{}",
            paint(tone, &line(row.iter().map(String::as_str).collect()))
        );
    }
    let in_progress = report.release.as_ref().map(|r| r.slot);
    for s in &report.traffic {
        if let Some(failure) = &s.failure {
            let _ = writeln!(
                out,
                "{} {failure}",
                paint(style::FAIL, &format!("slot {} failed:", s.slot))
            );
        }
        // The release in progress shows its verdict above.
        if let (Some(verdict), Some(release)) = (&s.verdict, &s.release)
            && in_progress != Some(s.slot)
        {
            let _ = writeln!(out, "slot {} release {release} analysis: {verdict}", s.slot);
        }
        if !s.other_fleets.is_empty() {
            let _ = writeln!(
                out,
                "slot {} has several fleets attached: {}",
                s.slot,
                s.other_fleets.join(", ")
            );
        }
    }
}

pub fn print_validation(validation: &Validation) {
    let mut out = super::stdout().lock();
    for check in &validation.checks {
        let _ = writeln!(
            out,
            "{} {}",
            paint(style::OK, &format!("✓ {}:", check.name)),
            check.detail
        );
    }
    for warning in &validation.warnings {
        let _ = writeln!(out, "{} {warning}", paint(style::WAIT, "warning:"));
    }
    let _ = writeln!(
        out,
        "{}",
        paint(
            style::OK,
            &format!("{} is ready to deploy", validation.service)
        )
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::core::reason::{Reason, ReasonCode};

    /// A reason as read back from a tag without a code: the renderer only shows descriptions.
    fn recorded(description: &str) -> Reason {
        Reason::new(ReasonCode::Recorded, description)
    }
    use crate::core::decide::Launch;
    use crate::core::names::{FleetName, ImageId, ReleaseName, TargetGroupArn};
    use crate::core::plan::{Pause, Percent, Plan, StepNumber, Strategy};
    use crate::core::router::{RouterWrite, Slot, Stickiness, all_to, split};
    use crate::core::tags::Phase;

    fn write(forwards: Vec<crate::core::router::Forward>) -> RouterWrite {
        RouterWrite {
            expected: Vec::new(),
            forwards,
            stickiness: Stickiness::Keep,
        }
    }

    fn tg(name: &str) -> TargetGroupArn {
        TargetGroupArn::parse(&format!(
            "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{name}/0123"
        ))
        .unwrap()
    }

    #[test]
    fn every_event_reads_as_a_sentence() {
        let fleet = |n: &str| FleetName::new(n);
        let green = Green {
            fleet: fleet("checkout-v2"),
            release: ReleaseName::parse("v2").unwrap(),
            source: fleet("checkout-blue"),
            target_group: tg("checkout-b"),
            launch: Launch::Image(ImageId::parse("ami-12345678").unwrap()),
            plan: Plan::blue_green(None),
            health_deadline: SystemTime::UNIX_EPOCH,
        };
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let ten = Percent::new(10).unwrap();
        let cases: Vec<(Event, &[&str])> = vec![
            (
                Event::DeployStarted {
                    service: "checkout".into(),
                    release: "v2".into(),
                    live_release: "v1".into(),
                    live_slot: Slot::A,
                    live_target_group: tg("checkout-a"),
                    idle_target_group: tg("checkout-b"),
                    strategy: Strategy::BlueGreen,
                    plan: "bluegreen 100".into(),
                },
                &[
                    "deploying checkout v2 (blue/green): live is v1 in checkout-a (slot a); the new release goes to checkout-b",
                ],
            ),
            (
                Event::DeployStarted {
                    service: "checkout".into(),
                    release: "v2".into(),
                    live_release: "v1".into(),
                    live_slot: Slot::A,
                    live_target_group: tg("checkout-a"),
                    idle_target_group: tg("checkout-b"),
                    strategy: Strategy::Canary,
                    plan: Plan::new(
                        Strategy::Canary,
                        vec![
                            crate::core::plan::Step {
                                weight: ten,
                                pause: Pause::Manual,
                            },
                            crate::core::plan::Step {
                                weight: Percent::ALL,
                                pause: Pause::None,
                            },
                        ],
                    )
                    .unwrap()
                    .encode(),
                },
                &[
                    "deploying checkout v2 (canary 10@manual,100): live is v1 in checkout-a (slot a); the new release goes to checkout-b",
                ],
            ),
            (
                Event::Step {
                    action: Action::Shift {
                        fleet: fleet("checkout-v2"),
                        release: "v2".into(),
                        to: tg("checkout-b"),
                        from: tg("checkout-a"),
                        weight: ten,
                        step: StepNumber(1),
                        of: 2,
                        verdict: None,
                        write: write(split(&tg("checkout-b"), ten, &tg("checkout-a"))),
                    },
                },
                &["step 1/2: shifting 10% of the traffic to checkout-b (release v2)"],
            ),
            (
                Event::Gate {
                    release: "v2".into(),
                    step: StepNumber(1),
                    of: 2,
                    weight: ten,
                },
                &[
                    "step 1/2: v2 takes 10%; waiting for `greenlight promote` (or `greenlight abort`)",
                ],
            ),
            (
                Event::Pause {
                    release: "v2".into(),
                    step: StepNumber(1),
                    of: 2,
                    weight: ten,
                    until,
                },
                &[
                    "step 1/2: v2 takes 10%; next step at 2026-11-18T11:06:40Z (or `greenlight promote`)",
                ],
            ),
            (
                Event::Aborted {
                    release: "v2".into(),
                    live_release: "v1".into(),
                    slot: Slot::A,
                },
                &["✓ aborted release v2: v1 takes all traffic (slot a)"],
            ),
            (
                Event::AlreadyRolledBack {
                    release: "v1".into(),
                    slot: Slot::A,
                    from: "v2 at 2026-11-18T10:13:20Z".into(),
                },
                &[
                    "✓ release v1 is live already (slot a): rolled back from v2 at 2026-11-18T10:13:20Z; nothing to do (`--to` picks a release explicitly)",
                ],
            ),
            (
                Event::Step {
                    action: Action::JoinRouter {
                        target_group: tg("checkout-b"),
                        live: tg("checkout-a"),
                        write: write(all_to(&tg("checkout-a"), &tg("checkout-b"))),
                    },
                },
                &[
                    "adding checkout-b to the router at weight 0, so the load balancer health-checks it",
                ],
            ),
            (
                Event::Step {
                    action: Action::CreateFleet(green.clone()),
                },
                &["creating fleet checkout-v2 as a twin of checkout-blue, attached to checkout-b"],
            ),
            (
                Event::Step {
                    action: Action::RetireFleet {
                        fleet: fleet("checkout-v0"),
                        release: "v0".into(),
                        phase: Some(Phase::Warm),
                    },
                },
                &["retiring fleet checkout-v0 (release v0, warm) from the idle slot"],
            ),
            (
                Event::Step {
                    action: Action::MarkWarm {
                        fleet: fleet("checkout-blue"),
                        release: "v1".into(),
                        until,
                        suspend: vec!["AlarmNotification".into()],
                        rolled_back: false,
                    },
                },
                &[
                    "keeping checkout-blue (release v1) warm at its capacity (suspending AlarmNotification) until 2026-11-18T11:06:40Z",
                ],
            ),
            (
                Event::Health {
                    fleet: fleet("checkout-v2"),
                    desired: 4,
                    in_service: 4,
                    healthy: 3,
                    summary: "3/4 healthy, 1 initial (Elb.RegistrationInProgress)".into(),
                },
                &["green checkout-v2: 3/4 healthy, 1 initial (Elb.RegistrationInProgress)"],
            ),
            (
                Event::ReleaseFailed {
                    release: "v2".into(),
                    reasons: vec![recorded("not healthy in time: 0/2 healthy")],
                },
                &[
                    "✗ release v2 failed; traffic stayed on the previous release",
                    "  not healthy in time: 0/2 healthy",
                ],
            ),
            (
                Event::Released {
                    release: "v2".into(),
                    slot: Slot::B,
                    flipped: false,
                },
                &["✓ release v2 was already live (slot b); nothing to do"],
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(describe(&event), expected, "{event:?}");
        }
    }

    #[test]
    fn a_failed_hook_is_named_once_and_the_steps_it_causes_refer_back_to_it() {
        use crate::core::hooks::HookStage;
        use crate::engine::hooks::{HookOutcome, HookRun};
        let run = HookRun {
            stage: HookStage::AfterStep(StepNumber(1)),
            command: format!("./check.sh {}", "x".repeat(300)),
            outcome: HookOutcome::Failed {
                exit_code: Some(1),
                signal: None,
            },
            seconds: 0.25,
            last_lines: vec!["checking".into(), "5xx spike".into()],
        };
        let failure = run.failure();
        let mut reporter = HumanReporter::new();
        let lines = reporter.lines(&Event::Hook { run });
        assert_eq!(lines, [format!("✗ {failure} (0.2s)")]);
        let route_back = Event::Step {
            action: Action::RouteBack {
                to: tg("checkout-a"),
                from: tg("checkout-b"),
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
                reason: recorded(&failure),
                write: write(all_to(&tg("checkout-a"), &tg("checkout-b"))),
            },
        };
        assert_eq!(
            reporter.lines(&route_back),
            ["the hook failed: all traffic back to checkout-a (away from release v2)"]
        );
        // As read back from green's tag, clipped.
        let clipped = crate::core::tags::clip(&failure);
        assert_ne!(clipped, failure);
        let fail = Event::Step {
            action: Action::FailRelease {
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
                reasons: vec![
                    recorded(&clipped),
                    recorded("hook output ended with: checking | 5xx spike"),
                ],
            },
        };
        assert_eq!(
            reporter.lines(&fail),
            ["the hook failed: scaling checkout-v2 to 0 and marking it failed"]
        );
        // Another reason is shown as it is.
        let other = Event::Step {
            action: Action::FailRelease {
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
                reasons: vec![recorded("alarm checkout-5xx is in ALARM")],
            },
        };
        assert_eq!(
            reporter.lines(&other),
            ["alarm checkout-5xx is in ALARM: scaling checkout-v2 to 0 and marking it failed"]
        );
        // Without a failed hook before it, a step says its reason.
        assert_eq!(
            HumanReporter::new().lines(&route_back),
            [format!(
                "{failure}: all traffic back to checkout-a (away from release v2)"
            )]
        );
    }

    #[test]
    fn a_stop_says_why_once_and_the_failure_says_where_traffic_is() {
        let why = "analysis failed at step 1/2: green's 5xx rate 20.00% is over max_5xx_rate \
                   1.00% (green 20.00% 5xx (60/300), blue 0.22% 5xx (2/900))";
        let mut reporter = HumanReporter::new();
        let route_back = Event::Step {
            action: Action::RouteBack {
                to: tg("checkout-a"),
                from: tg("checkout-b"),
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
                reason: recorded(why),
                write: write(all_to(&tg("checkout-a"), &tg("checkout-b"))),
            },
        };
        assert_eq!(
            reporter.lines(&route_back),
            [format!(
                "{why}: all traffic back to checkout-a (away from release v2)"
            )]
        );
        let fail = Event::Step {
            action: Action::FailRelease {
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
                reasons: vec![recorded(why)],
            },
        };
        assert_eq!(
            reporter.lines(&fail),
            ["stopped: scaling checkout-v2 to 0 and marking it failed"]
        );
        let failed = Event::ReleaseFailed {
            release: "v2".into(),
            reasons: vec![recorded(why)],
        };
        assert_eq!(
            reporter.lines(&failed),
            ["✗ release v2 failed; traffic is back on the previous release"]
        );
        // A stop before any traffic moved: recorded first, said once, traffic stayed.
        let mut reporter = HumanReporter::new();
        let alarm = "alarm checkout-5xx is in ALARM (Threshold Crossed)";
        let record = Event::Step {
            action: Action::RecordStop {
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
                reason: recorded(alarm),
            },
        };
        assert_eq!(
            reporter.lines(&record),
            [format!("stopping release v2: {alarm}")]
        );
        let failed = Event::ReleaseFailed {
            release: "v2".into(),
            reasons: vec![recorded(alarm), recorded("something else")],
        };
        assert_eq!(
            reporter.lines(&failed),
            [
                "✗ release v2 failed; traffic stayed on the previous release",
                "  something else"
            ]
        );
    }

    #[test]
    fn json_events_are_tagged_objects() {
        let event = Event::Step {
            action: Action::Flip {
                to: tg("checkout-b"),
                from: tg("checkout-a"),
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
                verdict: None,
                write: write(all_to(&tg("checkout-b"), &tg("checkout-a"))),
            },
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["event"], "step");
        assert_eq!(value["action"], "flip");
        assert_eq!(value["fleet"], "checkout-v2");
        assert_eq!(value["to"], tg("checkout-b").as_str());
    }
}
