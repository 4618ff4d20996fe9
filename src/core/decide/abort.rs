//! Stopping a release in progress: all traffic back to the live release in one call if any had
//! moved, then green scaled to zero and tagged failed with why.

use std::time::SystemTime;

use super::progress::write_share;
use super::settle::settle_flips;
use super::situation::{InProgress, Live, in_progress, live};
use super::verify;
use super::{Action, Decision, Done, Refusal, decided};
use crate::core::observed::Observed;
use crate::core::plan::Percent;
use crate::core::reason::{Reason, ReasonCode};
use crate::core::spec::Spec;

/// The next step of stopping `green`, for `reason`.
pub(super) fn stop(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    green: &InProgress<'_>,
    reason: Reason,
) -> Result<Decision, Refusal> {
    if green.weight > Percent::ZERO {
        // The live release takes it all back; it must be able to, or nobody is served.
        if !live.occupant.health.ready() {
            return Err(Refusal::attention(format!(
                "cannot return traffic to release {}: it is not fully healthy ({}); release {} \
                 keeps {} of the traffic",
                live.occupant.release(),
                live.occupant.health.progress(),
                green.release(),
                green.weight
            )));
        }
        return Ok(Decision::Act(Action::RouteBack {
            to: spec.slots.get(live.slot).clone(),
            from: spec.slots.get(green.slot).clone(),
            fleet: green.occupant.fleet.name.clone(),
            release: green.release(),
            reason,
            write: write_share(spec, observed, live, Percent::ZERO),
        }));
    }
    // Test traffic closed before green goes: its rule, and the test listener back on live.
    if let Some(close) = verify::close_own(
        spec,
        observed,
        &green.release(),
        Some(spec.slots.get(live.slot)),
    ) {
        if green.occupant.tags.abort.is_none() {
            // Why, first, so that no later pass takes the release up again meanwhile (a
            // deploy would point the test listener back at green).
            return Ok(Decision::Act(Action::RecordStop {
                fleet: green.occupant.fleet.name.clone(),
                release: green.release(),
                reason,
            }));
        }
        return Ok(Decision::Act(close));
    }
    Ok(Decision::Act(Action::FailRelease {
        fleet: green.occupant.fleet.name.clone(),
        release: green.release(),
        reasons: vec![reason],
    }))
}

/// The next step of `greenlight abort` (and of `rollback` while a release is in progress):
/// `by` says who asked, for the failure reason.
///
/// A release whose last step already landed is not in progress any more: it is settled as
/// live, and abort says so ([`Done::NothingInProgress`]); `rollback` is the way back from it.
pub fn decide_abort(spec: &Spec, observed: &Observed, now: SystemTime, by: &str) -> Decision {
    decided((|| {
        if let Some(action) = settle_flips(spec, observed, now)? {
            return Ok(Decision::Act(action));
        }
        let live = live(spec, observed)?;
        let green = in_progress(spec, observed, &live);
        let keep = green.as_ref().map(|g| g.release());
        if let Some(close) = verify::close_stale(spec, observed, &live, keep.as_deref(), true) {
            return Ok(Decision::Act(close));
        }
        let Some(green) = green else {
            return Ok(Decision::Done(Done::NothingInProgress {
                release: live.occupant.release(),
                slot: live.slot,
            }));
        };
        stop(
            spec,
            observed,
            &live,
            &green,
            Reason::new(
                ReasonCode::Aborted,
                format!("aborted by {by} at {}", crate::core::tags::timestamp(now)),
            )
            .on(by),
        )
    })())
}
