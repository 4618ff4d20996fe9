//! `greenlight status`: where traffic goes, what serves it (each fleet's AMI and launch template
//! version), the release in progress (its canary step), the lock. Read-only. With `--watch`, read
//! again every interval ([`watch`]).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::core::analysis::AlarmState;
use crate::core::cloud::{Cloud, CloudErrorKind, LaunchTemplateVersion};
use crate::core::decide::{in_progress, live};
use crate::core::lock::LockRecord;
use crate::core::names::TargetGroupArn;
use crate::core::observed::{Observed, Occupancy};
use crate::core::plan::{PauseState, Percent, Strategy, pause_state};
use crate::core::reason::{Reason, ReasonCode};
use crate::core::router::{RouterId, Routing, Slot};
use crate::core::spec::Spec;
use crate::core::tags::{self, Phase, Promoted, ReleaseTags};

use super::clock::Clock;
use super::driver::TRANSIENT_PATIENCE;
use super::failure::Failure;
use super::lease;
use super::observe::observe;
use super::preflight::look;
use super::stop::Stop;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub service: String,
    pub router: RouterId,
    /// The release taking all traffic (or, during a canary, the one traffic is moving from).
    pub live_release: Option<String>,
    pub live_slot: Option<Slot>,
    /// Why there is no single live release, when there is not.
    pub problem: Option<String>,
    pub traffic: Vec<SlotStatus>,
    /// The release under way in the idle slot, if any.
    pub release: Option<ReleaseStatus>,
    /// Who holds the service's lock, if anyone.
    pub lock: Option<LockRecord>,
    /// The `[analysis] alarms`, with their states.
    pub alarms: Vec<AlarmState>,
    /// The test-traffic rules greenlight keeps on the router's listener (release → priority).
    pub test_rules: Vec<TestRuleStatus>,
}

/// A test-traffic rule on the router's listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestRuleStatus {
    pub release: String,
    pub priority: Option<u32>,
    pub rule_arn: String,
}

/// A release in progress: its strategy, where it is in its plan, and what it waits for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseStatus {
    pub release: String,
    pub fleet: String,
    pub slot: Slot,
    pub phase: Option<String>,
    pub strategy: Option<Strategy>,
    /// The plan, e.g. `canary 5@5m,25@10m,50@manual,100`.
    pub plan: Option<String>,
    /// The step whose weight is in effect (1-based), and how many there are.
    pub step: Option<u32>,
    pub steps: Option<u32>,
    /// The new release's share of the traffic, in percent.
    pub weight: Percent,
    /// When the current timed pause ends.
    pub pause_until: Option<String>,
    /// The release holds at a manual gate until `greenlight promote`.
    pub waiting_for_promote: bool,
    /// When green must be healthy by (while provisioning).
    pub health_deadline: Option<String>,
    /// A `promote` request not yet acted on.
    pub promoted: Option<String>,
    /// An `abort` request not yet acted on.
    pub abort_requested: Option<String>,
    /// The hook stages that ran and passed.
    pub hooks_done: Option<String>,
    /// The last analysis verdict, with its numbers.
    pub verdict: Option<String>,
}

/// One slot: its share of traffic and the fleet behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotStatus {
    pub slot: Slot,
    pub target_group_arn: TargetGroupArn,
    pub target_group: String,
    pub weight: u16,
    pub percent: u32,
    /// The Auto Scaling group attached to the slot.
    pub asg: Option<String>,
    pub release: Option<String>,
    pub phase: Option<String>,
    pub desired: u32,
    pub in_service: u32,
    /// The fleet's InService instances healthy in the target group.
    pub healthy: u32,
    /// The fleet's desired capacity: `healthy` of `total`.
    pub total: u32,
    pub health: Option<String>,
    pub warm_until: Option<String>,
    /// When a rollback moved traffic away from this release.
    pub rolled_back_at: Option<String>,
    pub failure: Option<String>,
    /// The last analysis verdict of the release on this slot (kept once it is live).
    pub verdict: Option<String>,
    /// More fleets attached to the slot than the one reported.
    pub other_fleets: Vec<String>,
    /// The AMI the fleet launches: its launch template version's, or (when that cannot be
    /// read) the one its release was deployed with (`--image-id`).
    pub image_id: Option<String>,
    /// The launch template the fleet launches from (when the group names it by id), and the
    /// version it names (`3`, `$Latest`, `$Default`).
    pub launch_template_id: Option<String>,
    pub launch_template_version: Option<String>,
}

/// The report for an observation; pure, so its shape is tested without AWS.
pub fn report(
    spec: &Spec,
    observed: &Observed,
    lock: Option<LockRecord>,
    now: SystemTime,
) -> StatusReport {
    let routing = observed.routing(&spec.slots);
    let live_found = live(spec, observed).ok();
    let live_slot = match (&live_found, routing.clone()) {
        (Some(live), _) => Some(live.slot),
        (None, Routing::Live(slot)) => Some(slot),
        _ => None,
    };
    let traffic: Vec<SlotStatus> = Slot::BOTH
        .into_iter()
        .map(|slot| slot_status(observed, slot))
        .collect();
    let live_release = live_slot.and_then(|slot| traffic[slot.index()].release.clone());
    let release = live_found
        .as_ref()
        .and_then(|live| in_progress(spec, observed, live))
        .map(|green| {
            let t = &green.occupant.tags;
            let plan = green.plan.as_ref();
            let (mut pause_until, mut waiting_for_promote) = (None, false);
            if let (Some(Phase::Releasing), Some(plan), Some(n)) =
                (green.occupant.phase(), plan, t.step)
                && let Some(step) = plan.step(n)
            {
                let promoted = t.promoted.is_some_and(|p| p.ends(n));
                match pause_state(step.pause, t.step_at.unwrap_or(now), promoted, now) {
                    PauseState::Until(end) => pause_until = Some(tags::timestamp(end)),
                    PauseState::Manual => waiting_for_promote = true,
                    PauseState::Over => {}
                }
            }
            ReleaseStatus {
                release: green.release(),
                fleet: green.occupant.fleet.name.to_string(),
                slot: green.slot,
                phase: green.occupant.phase().map(|p| p.to_string()),
                strategy: plan.map(|p| p.strategy),
                plan: plan.map(|p| p.encode()),
                step: t.step.map(|n| n.0),
                steps: plan.map(|p| p.len()),
                weight: green.weight,
                pause_until,
                waiting_for_promote,
                health_deadline: (green.occupant.phase() != Some(Phase::Releasing))
                    .then_some(t.health_deadline)
                    .flatten()
                    .map(tags::timestamp),
                promoted: t.promoted.map(|p| match p {
                    Promoted::Full => "full".to_owned(),
                    Promoted::Step(n) => format!("step {n}"),
                }),
                abort_requested: t.abort.clone(),
                hooks_done: t.hooks_done.clone(),
                verdict: t.verdict.clone(),
            }
        });
    let problem = match &live_found {
        Some(_) => None,
        None => routing.describe_problem(&spec.router, &spec.slots),
    };
    StatusReport {
        service: spec.service.to_string(),
        router: spec.router.clone(),
        live_release,
        live_slot,
        problem,
        traffic,
        release,
        lock,
        alarms: observed.verify.alarms.clone(),
        test_rules: observed
            .verify
            .rules
            .iter()
            .flatten()
            .filter_map(|r| {
                Some(TestRuleStatus {
                    release: r.test_release(&spec.service)?.to_owned(),
                    priority: r.priority,
                    rule_arn: r.arn.to_string(),
                })
            })
            .collect(),
    }
}

fn slot_status(observed: &Observed, slot: Slot) -> SlotStatus {
    let seen = observed.slot(slot);
    let tg = &seen.target_group;
    let mut status = SlotStatus {
        slot,
        target_group_arn: tg.clone(),
        target_group: tg.short_name().to_owned(),
        weight: observed.router.weight_of(tg).get(),
        percent: observed.router.percent_of(tg),
        asg: None,
        release: None,
        phase: None,
        desired: 0,
        in_service: 0,
        healthy: 0,
        total: 0,
        health: None,
        warm_until: None,
        rolled_back_at: None,
        failure: None,
        verdict: None,
        other_fleets: Vec::new(),
        image_id: None,
        launch_template_id: None,
        launch_template_version: None,
    };
    match seen.occupancy() {
        Occupancy::Empty => {}
        Occupancy::Crowded(fleets) => {
            status.other_fleets = fleets.iter().map(|f| f.name.to_string()).collect();
        }
        Occupancy::One(occupant) => {
            let release_tags = ReleaseTags::read(&occupant.fleet.tags);
            status.asg = Some(occupant.fleet.name.to_string());
            status.release = Some(occupant.release());
            status.phase = release_tags.phase.map(|p| p.to_string());
            status.desired = occupant.health.desired;
            status.in_service = occupant.health.in_service;
            status.healthy = occupant.health.healthy;
            status.total = occupant.health.desired;
            status.health = Some(occupant.health.progress());
            status.warm_until = release_tags.warm_until.map(tags::timestamp);
            status.rolled_back_at = release_tags.rolled_back_at.map(tags::timestamp);
            status.failure = release_tags.failure;
            status.verdict = release_tags.verdict;
            status.image_id = release_tags.image;
            if let Some(template) = &occupant.fleet.launch_template {
                status.launch_template_id = Some(template.id.clone());
                status.launch_template_version = Some(template.version.clone());
            }
        }
    }
    status
}

/// Each slot's AMI from the launch template version its fleet launches, as read.
pub fn with_templates(
    mut report: StatusReport,
    versions: [Option<LaunchTemplateVersion>; 2],
) -> StatusReport {
    for (slot, version) in report.traffic.iter_mut().zip(versions) {
        if let Some(image) = version.and_then(|v| v.image_id) {
            slot.image_id = Some(image);
        }
    }
    report
}

/// The launch template version the fleet in `slot` launches (one DescribeLaunchTemplateVersions
/// call), when it names one by id. What cannot be read is left out: the AMI is what a person
/// checks, and the rest of the status does not depend on it.
async fn template_of<C: Cloud>(
    cloud: &C,
    observed: &Observed,
    slot: Slot,
) -> Option<LaunchTemplateVersion> {
    let template = match observed.slot(slot).occupancy() {
        Occupancy::One(occupant) => occupant.fleet.launch_template.clone()?,
        _ => return None,
    };
    cloud
        .launch_template_version(&template)
        .await
        .ok()
        .flatten()
}

pub async fn status<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    now: SystemTime,
) -> Result<StatusReport, Failure> {
    // The first read checks the resources too (in the same round of reads).
    let (observed, lock) = tokio::join!(look(cloud, spec), lease::current(cloud, spec));
    report_of(cloud, spec, observed?, lock, now).await
}

/// The status, the service's resources known to exist.
async fn read<C: Cloud>(cloud: &C, spec: &Spec, now: SystemTime) -> Result<StatusReport, Failure> {
    let (observed, lock) = tokio::join!(observe(cloud, spec), lease::current(cloud, spec));
    let observed = observed.map_err(Failure::cloud(false))?;
    report_of(cloud, spec, observed, lock, now).await
}

async fn report_of<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    observed: Observed,
    lock: Result<Option<LockRecord>, Failure>,
    now: SystemTime,
) -> Result<StatusReport, Failure> {
    let (a, b) = tokio::join!(
        template_of(cloud, &observed, Slot::A),
        template_of(cloud, &observed, Slot::B)
    );
    Ok(with_templates(report(spec, &observed, lock?, now), [a, b]))
}

/// What `status --watch` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Time between two reads.
    pub interval: Duration,
    /// Stop once no release is in progress and one release takes all traffic: `Ok` when the
    /// release seen in progress went live (or none was), [`Failure::ReleaseFailed`] (exit 3)
    /// when it did not (failed, aborted, rolled back).
    pub until_settled: bool,
}

/// One read of `status --watch`.
#[derive(Debug, Clone, Copy)]
pub enum WatchRead<'a> {
    Report(&'a StatusReport),
    /// A read failed in a way worth trying again (throttling, 5xx, a lost connection); the
    /// watch goes on.
    Failed(&'a Failure),
}

/// `status --watch`: reads the status every `options.interval` and shows each read, until a
/// signal (then `Ok`, or with `until_settled` [`Failure::Interrupted`]: not settled), or, with
/// `until_settled`, until it is settled.
///
/// A failed read is shown and tried again at the next interval when it is transient
/// (throttling, 5xx, timeouts; after a first good read also an endpoint that cannot be
/// reached), for up to a minute in a row (or three intervals, if longer); any other failure
/// ends the watch. The service's resources are checked at the first read only.
pub async fn watch<C: Cloud, K: Clock>(
    cloud: &C,
    clock: &K,
    spec: &Spec,
    stop: &Stop,
    options: WatchOptions,
    show: &mut dyn FnMut(WatchRead<'_>, SystemTime),
) -> Result<(), Failure> {
    let patience = TRANSIENT_PATIENCE.max(options.interval * 3);
    let mut checked = false;
    let mut streak: Option<SystemTime> = None;
    // The release seen in progress, and how things stood at the last good read.
    let mut watched: Option<String> = None;
    let mut state = "nothing was read yet".to_owned();
    loop {
        if let Some(signal) = stop.requested() {
            if !options.until_settled {
                return Ok(());
            }
            return Err(Failure::Interrupted {
                signal,
                state,
                resume: "`greenlight status --watch --until-settled` waits again".to_owned(),
            });
        }
        let now = clock.now();
        let read = if checked {
            read(cloud, spec, now).await
        } else {
            status(cloud, spec, now).await
        };
        match read {
            Ok(report) => {
                checked = true;
                streak = None;
                show(WatchRead::Report(&report), now);
                state = unsettled(&report);
                if options.until_settled {
                    if let Some(release) = &report.release {
                        watched = Some(release.release.clone());
                    } else if let Some(outcome) = settled(&report, watched.as_deref()) {
                        return outcome;
                    }
                }
            }
            Err(failure)
                if worth_retrying(&failure, checked)
                    && now < *streak.get_or_insert(now) + patience =>
            {
                show(WatchRead::Failed(&failure), now);
            }
            Err(failure) => return Err(failure),
        }
        tokio::select! {
            () = clock.sleep(options.interval) => {}
            () = stop.wait() => {}
        }
    }
}

fn worth_retrying(failure: &Failure, read_before: bool) -> bool {
    match failure {
        Failure::Cloud { error, .. } => match error.kind {
            CloudErrorKind::Unavailable => true,
            // Before any good read that is a wrong endpoint or no network: say so at once.
            CloudErrorKind::Unreachable => read_before,
            _ => false,
        },
        _ => false,
    }
}

/// How a report stands, for the message of a watch stopped before it settled.
fn unsettled(report: &StatusReport) -> String {
    match &report.release {
        Some(r) => {
            let step = match (r.step, r.steps) {
                (Some(n), Some(of)) => format!(" at step {n}/{of}"),
                _ => String::new(),
            };
            format!(
                "release {} was still in progress{step} with {} of the traffic",
                r.release, r.weight
            )
        }
        None => match &report.live_release {
            Some(live) => format!("release {live} is live and nothing is in progress"),
            None => "no single release takes all traffic".to_owned(),
        },
    }
}

/// `Some` once nothing is in progress and one release takes all traffic: `Ok`, or the failure
/// of `watched` (the release seen in progress) when it is not the one live.
fn settled(report: &StatusReport, watched: Option<&str>) -> Option<Result<(), Failure>> {
    if report.release.is_some() || report.problem.is_some() {
        return None;
    }
    let live = report.live_slot?;
    let slot = &report.traffic[live.index()];
    if slot.percent != 100 {
        return None;
    }
    let live_release = slot.release.clone().unwrap_or_default();
    match watched {
        Some(watched) if watched != live_release => {
            // The failure as the fleet's tag recorded it (descriptions only), then why the
            // watch calls it failed.
            let mut reasons: Vec<Reason> = report
                .traffic
                .iter()
                .filter(|s| s.release.as_deref() == Some(watched))
                .filter_map(|s| s.failure.clone())
                .map(|f| Reason::new(ReasonCode::Recorded, f))
                .collect();
            reasons.push(Reason::new(
                ReasonCode::ReleaseFailed,
                format!("release {live_release} takes all traffic"),
            ));
            Some(Err(Failure::ReleaseFailed {
                release: watched.to_owned(),
                reasons,
            }))
        }
        _ => Some(Ok(())),
    }
}
