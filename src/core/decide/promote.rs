//! `greenlight promote`: end the current pause of the release in progress (or every remaining
//! one with `--full`). The request is a tag on the release's fleet, so a deploy that is running
//! elsewhere sees it on its next pass; when none is running, `promote` drives the release itself
//! with [`decide_resume`].

use serde::Serialize;

use super::progress::advance;
use super::settle::settle;
use super::situation::{in_progress, live};
use super::verify;
use super::{Clock, Decision, Done, Refusal, decided};
use crate::core::names::FleetName;
use crate::core::observed::Observed;
use crate::core::plan::StepNumber;
use crate::core::spec::Spec;
use crate::core::tags::{Phase, Promoted};

/// The tag `promote` writes, and on which fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromoteRequest {
    pub fleet: FleetName,
    pub release: String,
    pub promoted: Promoted,
    /// The step whose pause ends (the current one), when not `--full`.
    pub step: Option<StepNumber>,
    pub of: u32,
}

/// What `promote` asks for, or why there is nothing to promote.
pub fn decide_promote(
    spec: &Spec,
    observed: &Observed,
    full: bool,
) -> Result<PromoteRequest, Refusal> {
    let live = live(spec, observed)?;
    let Some(green) = in_progress(spec, observed, &live) else {
        return Err(Refusal::attention(format!(
            "nothing to promote: no release is in progress (release {} is live)",
            live.occupant.release()
        )));
    };
    let release = green.release();
    if let Some(request) = &green.occupant.tags.abort {
        return Err(Refusal::new(
            super::RefusalKind::ReleaseFailed,
            format!("release {release} is being aborted ({request}); nothing to promote"),
        ));
    }
    let of = green.plan.as_ref().map_or(1, |p| p.len());
    if full {
        return Ok(PromoteRequest {
            fleet: green.occupant.fleet.name.clone(),
            release,
            promoted: Promoted::Full,
            step: None,
            of,
        });
    }
    match (green.occupant.phase(), green.occupant.tags.step) {
        (Some(Phase::Releasing), Some(n)) => Ok(PromoteRequest {
            fleet: green.occupant.fleet.name.clone(),
            release,
            promoted: Promoted::Step(n),
            step: Some(n),
            of,
        }),
        (phase, _) => Err(Refusal::attention(format!(
            "release {release} is not at a pause yet ({}: {}); promote it once it reaches one, \
             or use --full to skip every pause",
            phase.map_or("untagged".to_owned(), |p| p.to_string()),
            green.occupant.health.progress()
        ))),
    }
}

/// The next step of the release in progress, for a command that drives it without a deploy
/// request (`promote` when no deploy is running).
pub fn decide_resume(spec: &Spec, observed: &Observed, clock: Clock) -> Decision {
    decided((|| {
        if let Some(action) = settle(spec, observed, clock.now)? {
            return Ok(Decision::Act(action));
        }
        let live = live(spec, observed)?;
        let green = in_progress(spec, observed, &live);
        let keep = green.as_ref().map(|g| g.release());
        if let Some(close) = verify::close_stale(spec, observed, &live, keep.as_deref(), true) {
            return Ok(Decision::Act(close));
        }
        let Some(green) = green else {
            return Ok(Decision::Done(Done::Live {
                release: live.occupant.release(),
                slot: live.slot,
            }));
        };
        if green.occupant.phase() == Some(Phase::Creating) && green.occupant.tags.abort.is_none() {
            return Err(Refusal::attention(format!(
                "release {} is still being created; resume it by re-running its deploy",
                green.release()
            )));
        }
        advance(spec, observed, &live, &green, clock, None)
    })())
}
