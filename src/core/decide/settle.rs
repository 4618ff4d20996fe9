//! The tag fixes that follow a flip, by a deploy or a rollback, or a crash right after one: the
//! fleet that lost traffic becomes warm, then the fleet that has it becomes live.

use std::time::SystemTime;

use super::progress::write_share;
use super::situation::{Live, live};
use super::verify::{self, HookAt};
use super::{Action, Refusal, WARM_SUSPENDS};
use crate::core::hooks::HookStage;
use crate::core::observed::{Observed, Occupancy, foreign_fleet};
use crate::core::plan::{Percent, StepNumber};
use crate::core::reason::Reason;
use crate::core::spec::Spec;
use crate::core::tags::Phase;

/// The next tag fix after a flip, if any.
///
/// Warm is marked first so that, after a crash between the two, "live fleet not yet marked"
/// still identifies the fresh flip and the previous fleet is recognised even when greenlight had
/// never tagged it. A flip onto a fleet tagged `warm` can only be a rollback's (a deploy first
/// restages a warm release), so the fleet it left is marked rolled back: a second `rollback`
/// then knows there is nothing to return to, even if the first one was interrupted.
pub fn settle(
    spec: &Spec,
    observed: &Observed,
    now: SystemTime,
) -> Result<Option<Action>, Refusal> {
    settle_as(spec, observed, now, true)
}

/// After the last step of a release: an abort request or a firing alarm returns the traffic to
/// the previous release (still at capacity, not yet marked warm); otherwise the `post_traffic`
/// hooks run, and the release's test-traffic rule goes.
fn verify_after_last_step(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    drive: bool,
) -> Result<Option<Action>, Refusal> {
    let release = live.occupant.release();
    let reason = match &live.occupant.tags.abort {
        Some(recorded) => Some(Reason::from_tag(recorded)),
        None => verify::alarm_reason(observed),
    };
    if let Some(reason) = reason {
        let idle_slot = live.slot.other();
        let Occupancy::One(previous) = observed.slot(idle_slot).occupancy() else {
            return Err(Refusal::attention(format!(
                "release {release} must be stopped ({reason}), but no previous release is \
                 left in target group {} to return the traffic to",
                spec.slots.get(idle_slot).short_name()
            )));
        };
        if !previous.health.ready() {
            return Err(Refusal::attention(format!(
                "release {release} must be stopped ({reason}), but the previous release {} is \
                 not fully healthy ({}); traffic stays on {release}",
                previous.release(),
                previous.health.progress()
            )));
        }
        return Ok(Some(Action::RouteBack {
            to: spec.slots.get(idle_slot).clone(),
            from: spec.slots.get(live.slot).clone(),
            fleet: live.occupant.fleet.name.clone(),
            release,
            reason,
            write: write_share(spec, observed, live, Percent::ALL),
        }));
    }
    if !drive {
        return Ok(None);
    }
    let steps = live.occupant.tags.plan.as_ref().map_or(1, |p| p.len());
    let previous = match observed.slot(live.slot.other()).occupancy() {
        Occupancy::One(previous) => previous.release(),
        _ => String::new(),
    };
    if let Some(hooks) = verify::hooks_due(
        spec,
        live.slot,
        &live.occupant,
        HookAt {
            stage: HookStage::PostTraffic,
            live_release: previous,
            weight: Percent::ALL,
            step: Some(StepNumber(steps)),
            steps,
        },
    ) {
        return Ok(Some(hooks));
    }
    Ok(verify::close_own(spec, observed, &release, None))
}

/// [`settle`] without adopting a live fleet greenlight never tagged: for commands that only
/// finish what a flip started (`rollback`, `abort`), and change nothing when there was none.
pub fn settle_flips(
    spec: &Spec,
    observed: &Observed,
    now: SystemTime,
) -> Result<Option<Action>, Refusal> {
    settle_as(spec, observed, now, false)
}

fn settle_as(
    spec: &Spec,
    observed: &Observed,
    now: SystemTime,
    adopt: bool,
) -> Result<Option<Action>, Refusal> {
    let live = live(spec, observed)?;
    let fresh_flip = live.occupant.phase() != Some(Phase::Live);
    let rollback = live.occupant.phase() == Some(Phase::Warm);
    // A release whose last step just landed is verified once more before it is declared live.
    let promoted = matches!(
        live.occupant.phase(),
        Some(Phase::Provisioning | Phase::Releasing)
    ) && live.occupant.tags.managed_for(&spec.service);
    // A failed check sends the traffic back whichever command looks; only deploy and promote
    // (which drive the release) run its last hooks and close its test traffic here.
    if promoted && let Some(action) = verify_after_last_step(spec, observed, &live, adopt)? {
        return Ok(Some(action));
    }
    if let Occupancy::One(idle) = observed.slot(live.slot.other()).occupancy() {
        let was_live = match idle.phase() {
            Some(Phase::Live) => idle.tags.managed_for(&spec.service),
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
                rolled_back: rollback,
            }));
        }
    }
    let adopting = live.occupant.phase().is_none();
    if fresh_flip && !foreign_fleet(&live.occupant, &spec.service) && (adopt || !adopting) {
        return Ok(Some(Action::MarkLive {
            fleet: live.occupant.fleet.name.clone(),
            release: live.occupant.release(),
            resume: live.occupant.tags.suspended.clone().unwrap_or_default(),
        }));
    }
    Ok(None)
}
