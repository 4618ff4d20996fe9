//! The loop every command that changes a service runs: observe, ask the core, apply one step or
//! wait as the core says, repeat. It holds the service's lock throughout, renews it while
//! waiting and before each change, rides out transient AWS failures, and stops at a safe point
//! when a signal asks it to.

use std::time::{Duration, SystemTime};

use crate::core::cloud::{Cloud, CloudError, CloudErrorKind};
use crate::core::decide::{Action, Decision, Done, Wait, WaitReason, in_progress, live};
use crate::core::fleet::FleetWrite;
use crate::core::names::FleetName;
use crate::core::observed::{Observed, Occupancy};
use crate::core::plan::StepNumber;
use crate::core::reason::{Reason, ReasonCode};
use crate::core::router::RouterAction;
use crate::core::spec::Spec;

use super::backoff::Backoff;
use super::clock::Clock;
use super::events::{Event, Reporter, TICK_EVERY};
use super::execute::{Applied, apply};
use super::failure::Failure;
use super::lease::Lease;
use super::observe::{observe, with_metrics};
use super::stop::Stop;

/// How often the same step may be decided again before the command gives up on it.
const MAX_REPEATS: u32 = 5;

/// How long a streak of transient AWS failures (throttling, 5xx, timeouts) is ridden out before
/// the command gives up, unless it is waiting for something that ends later.
pub const TRANSIENT_PATIENCE: Duration = Duration::from_secs(60);

/// How a drive ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The core said the command's work is done.
    Done(Done),
    /// Stopped at a manual gate because the caller asked not to wait there.
    Paused(WaitReason),
    /// A release was failed (scaled to zero, tagged) and the caller stops there.
    Failed {
        release: String,
        reasons: Vec<Reason>,
    },
}

/// Makes the event that says where a command starts from, from its first observation.
pub type Announce<'a> = dyn Fn(&Observed) -> Option<Event> + 'a;

/// What the caller wants from a drive.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Return [`Ending::Paused`] at a manual gate instead of waiting for `promote`.
    pub stop_at_gate: bool,
    /// Return [`Ending::Failed`] as soon as a release is failed (a deploy); otherwise go on until
    /// the core is done (an abort, whose last step is failing the release).
    pub end_on_failure: bool,
    /// What to tell a person who stops the run with a signal, e.g. "re-run the same deploy".
    pub resume_hint: &'static str,
    /// An event to report from the first observation made while holding the lock (where the
    /// command starts from), if any.
    pub announce: Option<&'a Announce<'a>>,
}

/// Everything a drive needs, borrowed from the command.
pub struct Driver<'a, C, K> {
    pub cloud: &'a C,
    pub clock: &'a K,
    pub reporter: &'a mut dyn Reporter,
    pub spec: &'a Spec,
    pub stop: &'a Stop,
    pub lease: &'a mut Lease,
    /// Whether this run changed anything in AWS yet.
    pub changed: bool,
    /// Whether this run moved traffic.
    pub moved_traffic: bool,
    /// The release this run failed (stopped), if it did.
    pub failed_release: Option<String>,
    /// The hook that failed in this run, if one did: its last lines go into the error.
    pub hook_failure: Option<crate::engine::hooks::HookRun>,
}

fn transient(error: &CloudError) -> bool {
    error.transient() || error.kind == CloudErrorKind::Conflict
}

/// One streak of transient failures: when it started.
#[derive(Debug, Default)]
struct Streak {
    since: Option<SystemTime>,
}

impl Streak {
    /// Whether to ride out one more failure at `now`; `until` is when the current wait would end
    /// anyway (a health deadline), which extends the patience.
    fn ride_out(&mut self, now: SystemTime, until: Option<SystemTime>) -> bool {
        let since = *self.since.get_or_insert(now);
        let limit = (since + TRANSIENT_PATIENCE).max(until.unwrap_or(since));
        now < limit
    }

    fn end(&mut self) {
        self.since = None;
    }
}

impl<C: Cloud, K: Clock> Driver<'_, C, K> {
    /// Runs `decide` to the end. `decide` sees each fresh observation and the time.
    pub async fn drive(
        &mut self,
        mut decide: impl FnMut(&Observed, SystemTime) -> Decision,
        options: Options<'_>,
    ) -> Result<Ending, Failure> {
        let mut announce = options.announce;
        let mut backoff = Backoff::new(self.spec.health.interval);
        let mut last_action: Option<Action> = None;
        let mut repeats = 0;
        let mut last_wait: Option<(String, Option<SystemTime>)> = None;
        let mut streak = Streak::default();
        let mut wait_until: Option<SystemTime> = None;
        let mut last_seen: Option<Observed> = None;
        // The fleet whose health the last wait was on.
        let mut health_wait: Option<FleetName> = None;
        // The decisions, logged at -v when they change.
        let mut trail = crate::logging::Trail::default();
        // After a step that only wrote fleets' tags and processes, or the production router:
        // the last observation with those writes applied ([`after_step`]). This runner holds
        // the lock, so nothing else changes what it wrote; what it did not write (targets'
        // health) is as old as that observation, a moment. A pass on such a view may only go
        // on with another such step, or end: any other decision is made again on a fresh look.
        let mut known: Option<Observed> = None;
        loop {
            self.check_stop(last_seen.as_ref(), options)?;
            let now = self.clock.now();
            let predicted = known.is_some();
            let look = match known.take() {
                Some(observed) => Ok(observed),
                None => observe_for_decision(self.cloud, self.spec, now).await,
            };
            let observed = match look {
                Ok(observed) => observed,
                Err(error) if transient(&error) && streak.ride_out(now, wait_until) => {
                    self.note_transient(&error, &mut streak);
                    self.pause(backoff.next_wait(now, now + TRANSIENT_PATIENCE))
                        .await?;
                    continue;
                }
                Err(error) => return Err(Failure::cloud(self.changed)(error)),
            };
            streak.end();
            if let Some(event) = announce.take().and_then(|a| a(&observed)) {
                self.reporter.report(&event);
            }
            let now = self.clock.now();
            let (decision, redo) = {
                let _span = tracing::info_span!("decide").entered();
                let decision = decide(&observed, now);
                let redo = predicted && !goes_on_predicted(&decision);
                if !redo {
                    trail.decided(&decision);
                }
                (decision, redo)
            };
            if redo {
                continue;
            }
            if let (Decision::Act(_), Some(fleet)) = (&decision, health_wait.take()) {
                // Waiting on green's health is over: say where it got to, as the wait did.
                if let Some(event) = health_now(&observed, &fleet) {
                    self.reporter.report(&event);
                }
            }
            last_seen = Some(observed);
            match decision {
                Decision::Act(action) => {
                    wait_until = None;
                    last_wait = None;
                    if last_action.as_ref() == Some(&action) {
                        // AWS reads can lag writes; give the last step time to show before
                        // repeating it, and give up if it never does.
                        repeats += 1;
                        if repeats > MAX_REPEATS {
                            let on = action
                                .fleet()
                                .map(|fleet| format!(" on fleet {fleet}"))
                                .unwrap_or_default();
                            return Err(Failure::NeedsAttention(format!(
                                "step {}{on} did not take effect after {MAX_REPEATS} tries",
                                action.name(),
                            )));
                        }
                        self.pause(backoff.next_wait(now, now + self.spec.health.timeout))
                            .await?;
                    } else {
                        repeats = 0;
                        backoff = Backoff::new(self.spec.health.interval);
                    }
                    last_action = Some(action.clone());
                    match self.lease.ensure(self.cloud, self.clock.now()).await {
                        Ok(()) => {}
                        Err(Failure::Cloud { error, .. })
                            if transient(&error) && streak.ride_out(self.clock.now(), None) =>
                        {
                            self.note_transient(&error, &mut streak);
                            continue;
                        }
                        Err(failure) => return Err(failure),
                    }
                    self.reporter.report(&Event::Step {
                        action: action.clone(),
                    });
                    let applied = if matches!(action, Action::RunHooks { .. }) {
                        match self.run_hooks(&action).await {
                            Some(applied) => applied,
                            None => {
                                // Stopped mid-hook: the hooks' process groups are killed and
                                // the stage, not recorded as done, runs again on resume.
                                self.reporter.report(&Event::Warning {
                                    message: format!(
                                        "stopped while {} ran; they were killed and run again \
                                         on resume",
                                        action.name()
                                    ),
                                });
                                continue;
                            }
                        }
                    } else {
                        apply(self.cloud, self.spec, &action, self.clock.now()).await
                    };
                    self.changed = true;
                    match applied {
                        Ok(applied) => {
                            known = last_seen
                                .as_ref()
                                .and_then(|seen| after_step(&action, seen, &applied.fleet_writes));
                            for omitted in applied.omitted {
                                self.reporter.report(&Event::Warning {
                                    message: format!("not copied from the live fleet: {omitted}"),
                                });
                            }
                            for run in applied.hooks {
                                if !run.passed() {
                                    self.hook_failure = Some(run.clone());
                                }
                                self.reporter.report(&Event::Hook { run });
                            }
                        }
                        Err(Failure::Cloud { error, .. })
                            if transient(&error) && streak.ride_out(self.clock.now(), None) =>
                        {
                            // Every step is idempotent: look again and decide again.
                            self.note_transient(&error, &mut streak);
                            continue;
                        }
                        Err(failure) => return Err(failure),
                    }
                    match action {
                        Action::Flip { .. } | Action::Shift { .. } | Action::RouteBack { .. } => {
                            self.moved_traffic = true;
                        }
                        Action::FailRelease {
                            release,
                            mut reasons,
                            ..
                        } => {
                            if let Some(run) = &self.hook_failure
                                && !run.last_lines.is_empty()
                            {
                                // The tag holds a few words; the error gets the whole tail.
                                reasons.push(
                                    Reason::new(
                                        ReasonCode::HookFailed,
                                        format!(
                                            "hook output ended with: {}",
                                            run.last_lines.join(" | ")
                                        ),
                                    )
                                    .on(run.command.clone()),
                                );
                            }
                            self.reporter.report(&Event::ReleaseFailed {
                                release: release.clone(),
                                reasons: reasons.clone(),
                            });
                            self.failed_release = Some(release.clone());
                            if options.end_on_failure {
                                return Ok(Ending::Failed { release, reasons });
                            }
                        }
                        _ => {}
                    }
                }
                Decision::Wait(wait) => {
                    last_action = None;
                    wait_until = wait.until;
                    health_wait = match &wait.why {
                        WaitReason::Health { fleet, .. } => Some(fleet.clone()),
                        _ => None,
                    };
                    let key = (wait_key(&wait), wait.until);
                    if last_wait.as_ref() != Some(&key) {
                        if last_wait.as_ref().map(|(k, _)| k) != Some(&key.0) {
                            backoff = Backoff::new(self.spec.health.interval);
                        }
                        self.reporter.report(&Event::waiting(&wait));
                        last_wait = Some(key);
                    }
                    if options.stop_at_gate && matches!(wait.why, WaitReason::Gate { .. }) {
                        return Ok(Ending::Paused(wait.why));
                    }
                    self.reporter.tick(&wait, now);
                    let end = wait
                        .until
                        .unwrap_or(now + super::backoff::MAX_POLL_INTERVAL);
                    self.pause_ticking(backoff.next_wait(now, end), &wait)
                        .await?;
                }
                Decision::Done(done) => return Ok(Ending::Done(done)),
                Decision::Refuse(refusal) => {
                    let failure = Failure::from(refusal);
                    return Err(match failure {
                        // A refusal after this run changed something is no longer "nothing
                        // changed".
                        Failure::BadInput(message) if self.changed => {
                            Failure::NeedsAttention(message)
                        }
                        other => other,
                    });
                }
            }
        }
    }

    fn note_transient(&mut self, error: &CloudError, streak: &mut Streak) {
        let _ = streak;
        self.reporter.report(&Event::Warning {
            message: format!("{error}; retrying"),
        });
    }

    fn check_stop(&self, seen: Option<&Observed>, options: Options<'_>) -> Result<(), Failure> {
        let Some(signal) = self.stop.requested() else {
            return Ok(());
        };
        Err(Failure::Interrupted {
            signal,
            state: seen.map_or_else(
                || "nothing was read or changed yet".to_owned(),
                |o| describe_state(self.spec, o),
            ),
            resume: options.resume_hint.to_owned(),
        })
    }

    /// Applies a hook step, which lasts as long as its hooks (up to their timeout, minutes: longer
    /// than the lock lives unrenewed). Meanwhile the lock is renewed, on wall time like the hooks'
    /// own timeout, and a lost lock or a signal ends the step at once, killing the hooks (their
    /// process groups go with the dropped future). `None` when a signal stopped it.
    async fn run_hooks(&mut self, action: &Action) -> Option<Result<Applied, Failure>> {
        let (cloud, spec, clock, stop) = (self.cloud, self.spec, self.clock, self.stop);
        let run = apply(cloud, spec, action, clock.now());
        tokio::pin!(run);
        loop {
            let renew = self.lease.renew_every();
            tokio::select! {
                applied = &mut run => return Some(applied),
                () = stop.wait() => return None,
                () = tokio::time::sleep(renew) => {
                    match self.lease.ensure(cloud, clock.now()).await {
                        Err(Failure::Cloud { error, .. }) if transient(&error) => {}
                        Err(lost) => return Some(Err(lost)),
                        Ok(()) => {}
                    }
                }
            }
        }
    }

    /// [`Driver::pause`] in slices of at most [`TICK_EVERY`], telling the reporter after each
    /// that the wait goes on: a terminal's progress line redraws, a log gets its heartbeat.
    async fn pause_ticking(&mut self, duration: Duration, wait: &Wait) -> Result<(), Failure> {
        let end = self.clock.now() + duration;
        loop {
            let now = self.clock.now();
            if now >= end || self.stop.requested().is_some() {
                return Ok(());
            }
            self.pause(end.duration_since(now).unwrap_or_default().min(TICK_EVERY))
                .await?;
            let now = self.clock.now();
            if now < end {
                self.reporter.tick(wait, now);
            }
        }
    }

    /// Sleeps `duration`, renewing the lock as often as it needs, and wakes early on a signal.
    async fn pause(&mut self, duration: Duration) -> Result<(), Failure> {
        let end = self.clock.now() + duration;
        loop {
            let now = self.clock.now();
            if now >= end || self.stop.requested().is_some() {
                return Ok(());
            }
            let chunk = (end.duration_since(now).unwrap_or_default()).min(self.lease.renew_every());
            tokio::select! {
                () = self.clock.sleep(chunk) => {}
                () = self.stop.wait() => return Ok(()),
            }
            match self.lease.keep(self.cloud, self.clock.now()).await {
                // A failed renewal is tried again at the next chunk; a lost lock stops the run.
                Err(Failure::Cloud { error, .. }) if transient(&error) => {}
                other => other?,
            }
        }
    }
}

/// `fleet`'s health in `observed`, as an event, if it is still there.
fn health_now(observed: &Observed, fleet: &FleetName) -> Option<Event> {
    observed
        .slots
        .iter()
        .find_map(|slot| match slot.occupancy() {
            Occupancy::One(o) if &o.fleet.name == fleet => {
                Some(Event::health(&o.fleet.name, &o.health))
            }
            _ => None,
        })
}

/// One observation, with the metrics a decision at a gate needs.
async fn observe_for_decision<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    now: SystemTime,
) -> Result<Observed, CloudError> {
    let observed = observe(cloud, spec).await?;
    with_metrics(cloud, spec, observed, now).await
}

/// Whether `action` writes nothing but fleets' tags and suspended processes.
fn fleets_only(action: &Action) -> bool {
    matches!(
        action,
        Action::MarkLive { .. }
            | Action::MarkWarm { .. }
            | Action::Begin { .. }
            | Action::RecordStop { .. }
    )
}

/// Whether a decision made on a view predicted from this run's own writes may be carried out:
/// a step that only tags fleets (its own writes are all it depends on), or the end.
fn goes_on_predicted(decision: &Decision) -> bool {
    match decision {
        Decision::Act(action) => fleets_only(action),
        Decision::Done(_) => true,
        Decision::Wait(_) | Decision::Refuse(_) => false,
    }
}

/// What the next pass can start from after `action`, applied to what `seen` showed, made
/// `writes`, without reading anything again; `None` when it must look afresh.
///
/// - A step that only tags fleets and suspends or resumes their processes changes only that.
/// - A production router write (flip, shift, route back) leaves the router as AWS answered
///   it holds it (the write checked the answer), plus its tags on green.
///
/// Not a join (a newly joined target group's targets start being health-checked), nor any
/// step that changes capacity, hooks, test traffic or fleets themselves.
fn after_step(
    action: &Action,
    seen: &Observed,
    writes: &[(FleetName, FleetWrite)],
) -> Option<Observed> {
    let routed = match action {
        action if fleets_only(action) => None,
        Action::Flip { write, .. }
        | Action::Shift { write, .. }
        | Action::RouteBack { write, .. } => Some(&write.forwards),
        _ => return None,
    };
    let mut next = seen.clone();
    if let Some(forwards) = routed {
        next.router.action = RouterAction::Forward {
            forwards: forwards.clone(),
        };
    }
    for (fleet, write) in writes {
        next.apply(fleet, write);
    }
    Some(next)
}

/// What a wait is about, so a change of subject is reported and a repeat is not.
fn wait_key(wait: &Wait) -> String {
    match &wait.why {
        WaitReason::Health { fleet, health } => format!("health {fleet} {}", health.progress()),
        WaitReason::Pause { release, step, .. } => format!("pause {release} {step}"),
        WaitReason::Gate { release, step, .. } => format!("gate {release} {step}"),
        WaitReason::Analysis {
            release, verdict, ..
        } => format!("analysis {release} {verdict}"),
        WaitReason::Handover { release, .. } => format!("handover {release}"),
    }
}

/// Where traffic and the release in progress stand, in one line for people.
pub fn describe_state(spec: &Spec, observed: &Observed) -> String {
    let Ok(live) = live(spec, observed) else {
        return "traffic is split in a way greenlight did not make; see `greenlight status`"
            .to_owned();
    };
    let mut text = format!(
        "release {} (slot {}) takes",
        live.occupant.release(),
        live.slot
    );
    match in_progress(spec, observed, &live) {
        Some(green) => {
            let step = match (green.occupant.tags.step, &green.plan) {
                (Some(StepNumber(n)), Some(plan)) => format!(", step {n}/{}", plan.len()),
                _ => String::new(),
            };
            text.push_str(&format!(
                " {} of the traffic; release {} is {}{step} with {}, {}",
                green.weight.rest(),
                green.release(),
                green
                    .occupant
                    .phase()
                    .map_or("untagged".to_owned(), |p| p.to_string()),
                green.weight,
                green.occupant.health.progress()
            ));
        }
        None => text.push_str(" all traffic"),
    }
    text
}
