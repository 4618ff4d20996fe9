//! `greenlight deploy`: make room in the idle slot, build green there, then hand it to the
//! stage machine ([`super::progress`]) until it takes all the traffic.

use super::progress::{advance, busy};
use super::settle::settle;
use super::situation::{InProgress, Live, in_progress, live};
use super::verify;
use super::{
    Action, Clock, Decision, DeployRequest, Done, Green, Launch, Refusal, RefusalKind, decided,
};
use crate::core::names::FleetName;
use crate::core::observed::{Observed, Occupancy, Occupant, crowded_message};
use crate::core::plan::Percent;
use crate::core::router::{RouterWrite, Stickiness, all_to};
use crate::core::spec::Spec;
use crate::core::tags::Phase;

/// The step that gets the idle target group health-checked: the router names it at weight 0,
/// or, with a test listener, the test listener forwards to it.
fn join(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    idle_tg: &crate::core::names::TargetGroupArn,
) -> Action {
    if verify::joins_through_test_listener(spec)
        && let Some(point) = verify::point_test_listener(spec, observed, idle_tg)
    {
        return point;
    }
    Action::JoinRouter {
        target_group: idle_tg.clone(),
        live: spec.slots.get(live.slot).clone(),
        write: RouterWrite {
            expected: observed.router.forwards().to_vec(),
            forwards: all_to(spec.slots.get(live.slot), idle_tg),
            stickiness: Stickiness::Keep,
        },
    }
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
    decided(deploy(spec, request, observed, clock))
}

fn deploy(
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

    let in_progress = in_progress(spec, observed, &live);
    let keep = in_progress.as_ref().map(|g| g.release());
    if let Some(close) = verify::close_stale(spec, observed, &live, keep.as_deref(), false) {
        return Ok(Decision::Act(close));
    }
    if let Some(green) = in_progress {
        if green.release() != release {
            return Err(busy(&green, idle_tg.short_name()));
        }
        same_artifact(&green.occupant, request)?;
        return ours_in_progress(spec, request, observed, &live, &green, clock);
    }

    if managed(&live.occupant) && live.occupant.release() == release {
        same_artifact(&live.occupant, request)?;
        return Ok(Decision::Done(Done::Live {
            release: release.to_owned(),
            slot: live.slot,
        }));
    }

    // A new release begins here: the first change it would make is the next action.
    verify::ready_to_start(spec, observed)?;
    let joined = verify::joined(spec, observed, idle_tg);
    let join = || Decision::Act(join(spec, observed, &live, idle_tg));
    let green = |fleet: FleetName| Green {
        fleet,
        release: request.release.clone(),
        source: live.occupant.fleet.name.clone(),
        target_group: idle_tg.clone(),
        launch: request.launch.clone(),
        plan: request.plan.clone(),
        health_deadline: clock.health_deadline,
    };

    let idle = match observed.slot(idle_slot).occupancy() {
        Occupancy::Empty if !joined => return Ok(join()),
        Occupancy::Empty => {
            return Ok(Decision::Act(Action::CreateFleet(green(
                FleetName::for_release(&spec.service, &request.release),
            ))));
        }
        Occupancy::Crowded(fleets) => {
            return Err(Refusal::attention(crowded_message(idle_tg, &fleets)));
        }
        Occupancy::One(idle) => idle,
    };

    if !managed(&idle) {
        let owner = match &idle.tags.service {
            Some(other) => format!("belongs to service {other}"),
            None => "is not managed by greenlight".to_owned(),
        };
        return Err(Refusal::attention(format!(
            "fleet {} in the idle target group {} {owner}; detach it from that target group or \
             delete it, then retry",
            idle.fleet.name,
            idle_tg.short_name()
        )));
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
        if !others.is_empty() {
            return Err(Refusal::attention(format!(
                "release {} (fleet {}) must make room in target group {}, but it also serves \
                 target group {}; greenlight will not delete it. Detach it from those target \
                 groups or delete it, then retry",
                idle.release(),
                idle.fleet.name,
                idle_tg.short_name(),
                others.join(", ")
            )));
        }
        return Ok(Decision::Act(Action::RetireFleet {
            fleet: idle.fleet.name.clone(),
            release: idle.release(),
            phase: idle.phase(),
        }));
    }

    same_artifact(&idle, request)?;
    if !joined {
        return Ok(join());
    }
    let fleet = idle.fleet.name.clone();
    Ok(Decision::Act(match idle.phase() {
        Some(Phase::Failed) => Action::ReviveFleet {
            fleet,
            release: release.to_owned(),
            capacity: live.occupant.fleet.capacity,
            plan: request.plan.clone(),
            health_deadline: clock.health_deadline,
        },
        // A previous release (warm, or a fleet greenlight never tagged) goes through the plan
        // again like a new one, rather than taking the traffic the way a rollback would.
        _ => Action::Restage {
            fleet,
            release: release.to_owned(),
            plan: request.plan.clone(),
            health_deadline: clock.health_deadline,
        },
    }))
}

/// The requested release is under way in the idle slot: finish building it, then advance it.
fn ours_in_progress(
    spec: &Spec,
    request: &DeployRequest,
    observed: &Observed,
    live: &Live<'_>,
    green: &InProgress<'_>,
    clock: Clock,
) -> Result<Decision, Refusal> {
    let idle_tg = spec.slots.get(green.slot);
    if green.occupant.tags.abort.is_none()
        && green.weight == Percent::ZERO
        && !verify::joined(spec, observed, idle_tg)
    {
        return Ok(Decision::Act(join(spec, observed, live, idle_tg)));
    }
    if green.occupant.phase() == Some(Phase::Creating) && green.occupant.tags.abort.is_none() {
        return Ok(Decision::Act(Action::ConfigureFleet(Green {
            fleet: green.occupant.fleet.name.clone(),
            release: request.release.clone(),
            source: live.occupant.fleet.name.clone(),
            target_group: idle_tg.clone(),
            launch: request.launch.clone(),
            plan: green.plan.clone().unwrap_or_else(|| request.plan.clone()),
            health_deadline: green
                .occupant
                .tags
                .health_deadline
                .unwrap_or(clock.health_deadline),
        })));
    }
    // A release a greenlight without plans started goes on with the plan asked for now.
    advance(spec, observed, live, green, clock, Some(&request.plan))
}
