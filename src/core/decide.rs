//! The decisions: given the spec, one fresh observation and the clock, what is the one next
//! step? Every step is idempotent, so a crash anywhere is healed by deciding again.
//!
//! The safety rules live here and nowhere else:
//! - traffic moves ([`Action::Flip`]) only to a fleet that is [`FleetHealth::ready`] in the
//!   very observation that decided the move;
//! - capacity changes and deletions only touch the idle slot, never a slot with traffic;
//! - a fleet greenlight does not manage for this service is never changed, only reported.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::fleet::Capacity;
use super::health::FleetHealth;
use super::names::{FleetName, ImageId, ReleaseName, TargetGroupArn};
use super::observed::{
    Observed, Occupancy, Occupant, crowded_message, foreign_fleet, straddling_fleets,
};
use super::router::Slot;
use super::spec::Spec;
use super::tags::{self, Phase, ReleaseTags};

/// What green launches from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Launch {
    /// A new launch template version, copied from the live fleet's with this AMI.
    Image(ImageId),
    /// An existing version of the live fleet's launch template.
    Version(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub release: ReleaseName,
    pub launch: Launch,
}

/// The clock, as the core sees it: an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: SystemTime,
    /// When a release that is still not healthy is failed.
    pub health_deadline: SystemTime,
}

/// The new release's fleet: what it is called, what it runs, where it goes, whom it copies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Green {
    pub fleet: FleetName,
    pub release: ReleaseName,
    /// The live fleet green is a twin of.
    pub source: FleetName,
    /// The idle slot's target group.
    pub target_group: TargetGroupArn,
    pub launch: Launch,
}

/// The Auto Scaling processes that would resize a warm fleet on their own: alarms driving its
/// target tracking and step policies, and its scheduled actions.
pub const WARM_SUSPENDS: [&str; 2] = ["AlarmNotification", "ScheduledActions"];

/// One idempotent step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Delete a fleet that sits in the idle slot but is not the release being deployed (the
    /// release before the previous one, or a failed one). It takes no traffic.
    RetireFleet {
        fleet: FleetName,
        release: String,
        phase: Option<Phase>,
    },
    /// Name the idle target group in the router's forward action at weight 0. AWS health-checks
    /// only target groups a listener or rule uses, and reports the targets of any other as
    /// `unused`; with weight 0 green is checked but takes no traffic.
    JoinRouter {
        target_group: TargetGroupArn,
        live: TargetGroupArn,
    },
    /// Create green as a twin of the live fleet, at zero capacity, attached to the idle slot.
    CreateFleet(Green),
    /// Apply green's remaining settings, scale it to the live fleet's capacity, mark it
    /// provisioning.
    ConfigureFleet(Green),
    /// Bring a failed release back to capacity to try it again.
    ReviveFleet {
        fleet: FleetName,
        capacity: Capacity,
    },
    /// One router call: all traffic to `to`.
    Flip {
        to: TargetGroupArn,
        from: TargetGroupArn,
        fleet: FleetName,
        release: String,
    },
    /// The fleet takes the traffic: resume the scaling greenlight suspended while it was warm.
    MarkLive {
        fleet: FleetName,
        release: String,
        resume: Vec<String>,
    },
    /// The fleet lost the traffic: keep it at capacity (its own scaling policies would shrink
    /// an idle fleet to its minimum) until `until`, so a rollback lands on enough instances.
    MarkWarm {
        fleet: FleetName,
        release: String,
        #[serde(with = "rfc3339")]
        until: SystemTime,
        suspend: Vec<String>,
    },
    /// Green never became healthy: scale it to zero and record why. Traffic never moved.
    FailRelease {
        fleet: FleetName,
        release: String,
        reasons: Vec<String>,
    },
}

impl Action {
    /// The short name events and logs use.
    pub fn name(&self) -> &'static str {
        match self {
            Action::RetireFleet { .. } => "retire_fleet",
            Action::JoinRouter { .. } => "join_router",
            Action::CreateFleet { .. } => "create_fleet",
            Action::ConfigureFleet { .. } => "configure_fleet",
            Action::ReviveFleet { .. } => "revive_fleet",
            Action::Flip { .. } => "flip",
            Action::MarkLive { .. } => "mark_live",
            Action::MarkWarm { .. } => "mark_warm",
            Action::FailRelease { .. } => "fail_release",
        }
    }

    /// The fleet the action changes; `None` for a router-only step.
    pub fn fleet(&self) -> Option<&FleetName> {
        Some(match self {
            Action::JoinRouter { .. } => return None,
            Action::RetireFleet { fleet, .. }
            | Action::CreateFleet(Green { fleet, .. })
            | Action::ConfigureFleet(Green { fleet, .. })
            | Action::ReviveFleet { fleet, .. }
            | Action::Flip { fleet, .. }
            | Action::MarkLive { fleet, .. }
            | Action::MarkWarm { fleet, .. }
            | Action::FailRelease { fleet, .. } => fleet,
        })
    }
}

/// Why greenlight will not go on; each maps to one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The request cannot be carried out as asked; nothing was changed.
    BadInput,
    /// Another release is being deployed into the idle slot.
    Busy,
    /// AWS is in a state greenlight will not act on without a person.
    NeedsAttention,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Act(Action),
    /// Nothing to do until green's health changes.
    Wait {
        fleet: FleetName,
        health: FleetHealth,
    },
    /// The requested release takes all traffic and the tags agree.
    Done {
        release: String,
        slot: Slot,
    },
    Refuse(Refusal),
}

/// Where traffic goes now and who serves it: the part of every decision that must hold before
/// anything else is considered.
pub struct Live<'a> {
    pub slot: Slot,
    pub occupant: Occupant<'a>,
}

/// The live slot and the one fleet serving it, or why greenlight cannot tell.
pub fn live<'a>(spec: &Spec, observed: &'a Observed) -> Result<Live<'a>, Refusal> {
    let routing = observed.routing(&spec.slots);
    if let Some(problem) = routing.describe_problem(&spec.router, &spec.slots) {
        return Err(Refusal::new(RefusalKind::NeedsAttention, problem));
    }
    let super::router::Routing::Live(slot) = routing else {
        unreachable!("describe_problem returns None only for Routing::Live")
    };
    if let Some((fleet, schema)) = observed
        .slots
        .iter()
        .flat_map(|slot| &slot.fleets)
        .filter_map(|f| Some((f, ReleaseTags::read(&f.tags).schema?)))
        .find(|(_, schema)| *schema > tags::SCHEMA_VERSION)
    {
        return Err(Refusal::new(
            RefusalKind::NeedsAttention,
            format!(
                "fleet {} carries greenlight tag schema {schema}, newer than this greenlight's \
                 ({}); upgrade greenlight",
                fleet.name,
                tags::SCHEMA_VERSION
            ),
        ));
    }
    let straddling = straddling_fleets(observed);
    if let Some(fleet) = straddling.first() {
        return Err(Refusal::new(
            RefusalKind::NeedsAttention,
            format!(
                "fleet {} is attached to both target groups; detach it from one",
                fleet.name
            ),
        ));
    }
    let target_group = spec.slots.get(slot);
    match observed.slot(slot).occupancy() {
        Occupancy::One(occupant) if foreign_fleet(&occupant, &spec.service) => Err(Refusal::new(
            RefusalKind::NeedsAttention,
            format!(
                "the live fleet {} belongs to service {}, not {}; check service in the config",
                occupant.fleet.name,
                occupant.tags.service.as_deref().unwrap_or_default(),
                spec.service
            ),
        )),
        Occupancy::One(occupant) => Ok(Live { slot, occupant }),
        Occupancy::Empty => Err(Refusal::new(
            RefusalKind::NeedsAttention,
            format!(
                "no fleet is attached to the live target group {}; attach the Auto Scaling \
                 group that serves it",
                target_group.short_name()
            ),
        )),
        Occupancy::Crowded(fleets) => Err(Refusal::new(
            RefusalKind::NeedsAttention,
            crowded_message(target_group, &fleets),
        )),
    }
}

/// The tag fixes that follow a flip (or a crash right after one): the fleet that lost traffic
/// becomes warm, then the fleet that has it becomes live. Warm is marked first so that, after
/// a crash between the two, "live fleet not yet marked" still identifies the fresh flip and
/// the previous fleet is recognised even when greenlight had never tagged it.
pub fn settle(
    spec: &Spec,
    observed: &Observed,
    now: SystemTime,
) -> Result<Option<Action>, Refusal> {
    settle_after_flip(spec, observed, now, None)
}

/// [`settle`], for a command that has just flipped traffic away from `left`: that fleet took
/// traffic, so it becomes warm even if a deploy's flip to it never got as far as marking it live
/// (a rollback right after an interrupted deploy).
pub fn settle_after_flip(
    spec: &Spec,
    observed: &Observed,
    now: SystemTime,
    left: Option<&FleetName>,
) -> Result<Option<Action>, Refusal> {
    let live = live(spec, observed)?;
    let fresh_flip = live.occupant.phase() != Some(Phase::Live);
    if let Occupancy::One(idle) = observed.slot(live.slot.other()).occupancy() {
        let was_live = match idle.phase() {
            Some(Phase::Live) => idle.tags.managed_for(&spec.service),
            Some(Phase::Provisioning) => {
                left == Some(&idle.fleet.name) && idle.tags.managed_for(&spec.service)
            }
            // Adopt a never-tagged fleet only right after greenlight flipped away from it; an
            // unknown fleet that merely sits in the idle slot is left alone.
            None => {
                fresh_flip
                    && idle.tags.service.is_none()
                    && live.occupant.tags.managed_for(&spec.service)
            }
            _ => false,
        };
        if was_live {
            // Recorded before anything is suspended, so a re-run resumes only what greenlight
            // suspended, never what the owner had suspended already.
            let suspend = idle.tags.suspended.clone().unwrap_or_else(|| {
                WARM_SUSPENDS
                    .iter()
                    .filter(|p| !idle.fleet.suspended_processes.iter().any(|s| s == *p))
                    .map(|p| (*p).to_owned())
                    .collect()
            });
            return Ok(Some(Action::MarkWarm {
                fleet: idle.fleet.name.clone(),
                release: idle.release(),
                until: now + spec.retention.keep_warm,
                suspend,
            }));
        }
    }
    if fresh_flip && !foreign_fleet(&live.occupant, &spec.service) {
        return Ok(Some(Action::MarkLive {
            fleet: live.occupant.fleet.name.clone(),
            release: live.occupant.release(),
            resume: live.occupant.tags.suspended.clone().unwrap_or_default(),
        }));
    }
    Ok(None)
}

/// A release name may be deployed again only with the artifact it was first deployed with.
fn same_artifact(occupant: &Occupant<'_>, request: &DeployRequest) -> Result<(), Refusal> {
    let tags = &occupant.tags;
    let conflict = match &request.launch {
        Launch::Image(image) => match (&tags.image, &tags.launch_template_version) {
            (Some(tagged), _) if tagged != image.as_str() => Some(format!("image {tagged}")),
            // Deployed from a version the pipeline made: its image is not greenlight's to know.
            (None, Some(version)) => Some(format!("launch template version {version}")),
            _ => None,
        },
        Launch::Version(version) => tags
            .launch_template_version
            .as_ref()
            .filter(|tagged| **tagged != version.to_string())
            .map(|tagged| format!("launch template version {tagged}")),
    };
    match conflict {
        Some(tagged) => Err(Refusal::new(
            RefusalKind::BadInput,
            format!(
                "release {} already exists (fleet {}) with {tagged}; give the new build a new \
                 --release name",
                request.release, occupant.fleet.name
            ),
        )),
        None => Ok(()),
    }
}

/// The next step of `greenlight deploy`.
pub fn decide_deploy(
    spec: &Spec,
    request: &DeployRequest,
    observed: &Observed,
    clock: Clock,
) -> Decision {
    match decide_deploy_inner(spec, request, observed, clock) {
        Ok(decision) => decision,
        Err(refusal) => Decision::Refuse(refusal),
    }
}

fn decide_deploy_inner(
    spec: &Spec,
    request: &DeployRequest,
    observed: &Observed,
    clock: Clock,
) -> Result<Decision, Refusal> {
    if let Some(action) = settle(spec, observed, clock.now)? {
        return Ok(Decision::Act(action));
    }
    let live = live(spec, observed)?;
    let idle_slot = live.slot.other();
    let idle_tg = spec.slots.get(idle_slot);
    let release = request.release.as_str();
    let managed = |o: &Occupant<'_>| o.tags.managed_for(&spec.service);

    if managed(&live.occupant) && live.occupant.release() == release {
        same_artifact(&live.occupant, request)?;
        return Ok(Decision::Done {
            release: release.to_owned(),
            slot: live.slot,
        });
    }

    let joined = observed.router.names(idle_tg);
    let join = || {
        Decision::Act(Action::JoinRouter {
            target_group: idle_tg.clone(),
            live: spec.slots.get(live.slot).clone(),
        })
    };

    let idle = match observed.slot(idle_slot).occupancy() {
        Occupancy::Empty if !joined => return Ok(join()),
        Occupancy::Empty => {
            return Ok(Decision::Act(Action::CreateFleet(Green {
                fleet: FleetName::for_release(&spec.service, &request.release),
                release: request.release.clone(),
                source: live.occupant.fleet.name.clone(),
                target_group: idle_tg.clone(),
                launch: request.launch.clone(),
            })));
        }
        Occupancy::Crowded(fleets) => {
            return Err(Refusal::new(
                RefusalKind::NeedsAttention,
                crowded_message(idle_tg, &fleets),
            ));
        }
        Occupancy::One(idle) => idle,
    };

    if !managed(&idle) {
        let owner = match &idle.tags.service {
            Some(other) => format!("belongs to service {other}"),
            None => "is not managed by greenlight".to_owned(),
        };
        return Err(Refusal::new(
            RefusalKind::NeedsAttention,
            format!(
                "fleet {} in the idle target group {} {owner}; detach it from that target \
                 group or delete it, then retry",
                idle.fleet.name,
                idle_tg.short_name()
            ),
        ));
    }

    if idle.release() != release {
        // Serving a target group outside the slots (another listener's, say) is taking traffic.
        let others: Vec<&str> = idle
            .fleet
            .target_groups
            .iter()
            .filter(|tg| spec.slots.slot_of(tg).is_none())
            .map(|tg| tg.short_name())
            .collect();
        return match idle.phase() {
            Some(Phase::Creating | Phase::Provisioning) => Err(Refusal::new(
                RefusalKind::Busy,
                format!(
                    "release {} is being deployed into target group {} (fleet {}); let that \
                     deploy finish, or re-run it with --release {} to resume it",
                    idle.release(),
                    idle_tg.short_name(),
                    idle.fleet.name,
                    idle.release()
                ),
            )),
            _ if !others.is_empty() => Err(Refusal::new(
                RefusalKind::NeedsAttention,
                format!(
                    "release {} (fleet {}) must make room in target group {}, but it also \
                     serves target group {}; greenlight will not delete it. Detach it from \
                     those target groups or delete it, then retry",
                    idle.release(),
                    idle.fleet.name,
                    idle_tg.short_name(),
                    others.join(", ")
                ),
            )),
            phase => Ok(Decision::Act(Action::RetireFleet {
                fleet: idle.fleet.name.clone(),
                release: idle.release(),
                phase,
            })),
        };
    }

    same_artifact(&idle, request)?;
    if !joined {
        return Ok(join());
    }
    let fleet = idle.fleet.name.clone();
    match idle.phase() {
        Some(Phase::Creating) => Ok(Decision::Act(Action::ConfigureFleet(Green {
            fleet,
            release: request.release.clone(),
            source: live.occupant.fleet.name.clone(),
            target_group: idle_tg.clone(),
            launch: request.launch.clone(),
        }))),
        Some(Phase::Failed) => Ok(Decision::Act(Action::ReviveFleet {
            fleet,
            capacity: live.occupant.fleet.capacity,
        })),
        _ if idle.health.ready() => Ok(Decision::Act(Action::Flip {
            to: idle_tg.clone(),
            from: spec.slots.get(live.slot).clone(),
            fleet,
            release: release.to_owned(),
        })),
        _ if clock.now >= clock.health_deadline => Ok(Decision::Act(Action::FailRelease {
            fleet,
            release: release.to_owned(),
            reasons: failure_reasons(&idle.health, &observed.slot(idle_slot).targets, &idle),
        })),
        _ => Ok(Decision::Wait {
            fleet,
            health: idle.health.clone(),
        }),
    }
}

fn failure_reasons(
    health: &FleetHealth,
    targets: &[super::health::TargetHealth],
    idle: &Occupant<'_>,
) -> Vec<String> {
    let mut reasons = vec![format!("not healthy in time: {}", health.progress())];
    reasons.extend(super::health::unhealthy_descriptions(idle.fleet, targets));
    reasons
}

/// Whether a rollback already flipped but did not finish its tags (it was interrupted): the
/// warm fleet has the traffic while the fleet tagged live has none. Running `rollback` again
/// then finishes that rollback instead of flipping back to the release it left.
pub fn rollback_unsettled(spec: &Spec, observed: &Observed) -> bool {
    let Ok(live) = live(spec, observed) else {
        return false;
    };
    let Occupancy::One(idle) = observed.slot(live.slot.other()).occupancy() else {
        return false;
    };
    live.occupant.phase() == Some(Phase::Warm)
        && idle.phase() == Some(Phase::Live)
        && idle.tags.managed_for(&spec.service)
}

/// The step of `greenlight rollback`: route back to the warm previous release, now, or say why
/// not. It never waits: a rollback is for when things are on fire.
pub fn decide_rollback(spec: &Spec, observed: &Observed) -> Result<Action, Refusal> {
    let live = live(spec, observed)?;
    let idle_slot = live.slot.other();
    let idle_tg = spec.slots.get(idle_slot);
    let refuse = |message: String| Err(Refusal::new(RefusalKind::NeedsAttention, message));
    let idle = match observed.slot(idle_slot).occupancy() {
        Occupancy::Empty => {
            return refuse(format!(
                "nothing to roll back to: no fleet is attached to target group {} (the previous \
                 release is gone); deploy the previous build as a new release instead",
                idle_tg.short_name()
            ));
        }
        Occupancy::Crowded(fleets) => return refuse(crowded_message(idle_tg, &fleets)),
        Occupancy::One(idle) => idle,
    };
    if !idle.tags.managed_for(&spec.service) {
        return refuse(format!(
            "fleet {} in target group {} is not a previous release of {}; greenlight will not \
             route traffic to it",
            idle.fleet.name,
            idle_tg.short_name(),
            spec.service
        ));
    }
    match idle.phase() {
        Some(Phase::Failed) => {
            return refuse(format!(
                "the fleet in target group {} is release {}, which failed ({}); it never took \
                 traffic and will not now",
                idle_tg.short_name(),
                idle.release(),
                idle.tags.failure.as_deref().unwrap_or("no reason recorded")
            ));
        }
        Some(Phase::Creating | Phase::Provisioning) => {
            return refuse(format!(
                "the fleet in target group {} is release {}, still being deployed; it has never \
                 taken traffic, so there is nothing to roll back to",
                idle_tg.short_name(),
                idle.release()
            ));
        }
        Some(Phase::Warm | Phase::Live) | None => {}
    }
    if !idle.health.ready() {
        return refuse(format!(
            "previous release {} (fleet {}) is not warm and healthy: {}; routing to it would \
             drop requests",
            idle.release(),
            idle.fleet.name,
            idle.health.progress()
        ));
    }
    Ok(Action::Flip {
        to: idle_tg.clone(),
        from: spec.slots.get(live.slot).clone(),
        fleet: idle.fleet.name.clone(),
        release: idle.release(),
    })
}

/// How long a warm fleet has left, for status output.
pub fn warm_left(until: SystemTime, now: SystemTime) -> Option<Duration> {
    until.duration_since(now).ok()
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::core::tags::timestamp(*t))
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
