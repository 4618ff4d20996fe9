//! `greenlight rollback`: the previous release takes all traffic again, once.

use std::time::SystemTime;

use super::abort::stop;
use super::progress::write_share;
use super::settle::settle_flips;
use super::situation::{in_progress, live};
use super::verify;
use super::{Action, Decision, Done, Refusal, decided};
use crate::core::observed::{Observed, Occupancy, crowded_message};
use crate::core::plan::Percent;
use crate::core::reason::{Reason, ReasonCode};
use crate::core::spec::Spec;
use crate::core::tags::{Phase, timestamp};

/// The next step of `greenlight rollback` (`to`: the release named with `--to`).
///
/// It never waits: a rollback is for when things are on fire. In order:
/// - an earlier flip's tags are settled first, so an interrupted rollback (or deploy) is
///   finished, never reversed;
/// - a release in progress is aborted (a rollback during a canary is an abort);
/// - without `--to`, a previous release that was itself rolled back from is not returned to:
///   the release live now is the one a rollback wanted, and the answer is [`Done`];
/// - otherwise one router call moves all traffic to the warm previous release, if it is ready.
pub fn decide_rollback(
    spec: &Spec,
    observed: &Observed,
    now: SystemTime,
    to: Option<&str>,
    by: &str,
) -> Decision {
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
        if let Some(green) = green {
            return stop(
                spec,
                observed,
                &live,
                &green,
                Reason::new(
                    ReasonCode::RolledBack,
                    format!("rolled back by {by} while in progress"),
                )
                .on(by),
            );
        }
        let idle_slot = live.slot.other();
        let idle_tg = spec.slots.get(idle_slot);
        if to == Some(live.occupant.release().as_str()) {
            return Ok(Decision::Done(Done::Live {
                release: live.occupant.release(),
                slot: live.slot,
            }));
        }
        let idle = match observed.slot(idle_slot).occupancy() {
            Occupancy::Empty => {
                return Err(Refusal::attention(match to {
                    Some(release) => format!(
                        "release {release} is not warm: no fleet is attached to target group {} \
                         (release {} is live); deploy that build as a new release instead",
                        idle_tg.short_name(),
                        live.occupant.release()
                    ),
                    None => format!(
                        "nothing to roll back to: no fleet is attached to target group {} (the \
                         previous release is gone); deploy the previous build as a new release \
                         instead",
                        idle_tg.short_name()
                    ),
                }));
            }
            Occupancy::Crowded(fleets) => {
                return Err(Refusal::attention(crowded_message(idle_tg, &fleets)));
            }
            Occupancy::One(idle) => idle,
        };
        if !idle.tags.managed_for(&spec.service) {
            return Err(Refusal::attention(format!(
                "fleet {} in target group {} is not a previous release of {}; greenlight will \
                 not route traffic to it",
                idle.fleet.name,
                idle_tg.short_name(),
                spec.service
            )));
        }
        let warm = |phase: Option<Phase>| {
            format!(
                "release {} ({})",
                idle.release(),
                phase.map_or("untagged".to_owned(), |p| p.to_string())
            )
        };
        if let Some(release) = to.filter(|r| *r != idle.release()) {
            return Err(Refusal::attention(format!(
                "release {release} is not warm; target group {} holds {}, and release {} is live",
                idle_tg.short_name(),
                warm(idle.phase()),
                live.occupant.release()
            )));
        }
        if idle.phase() == Some(Phase::Failed) {
            if to.is_none() {
                // The release after the live one failed (or was stopped): the live release is
                // where a rollback would go. A retried rollback after an abort lands here too.
                return Ok(Decision::Done(Done::AlreadyRolledBack {
                    release: live.occupant.release(),
                    slot: live.slot,
                    from: format!("failed release {}", idle.release()),
                }));
            }
            return Err(Refusal::attention(format!(
                "the fleet in target group {} is release {}, which failed ({}); greenlight \
                 will not route traffic to it",
                idle_tg.short_name(),
                idle.release(),
                idle.tags.failure.as_deref().unwrap_or("no reason recorded")
            )));
        }
        if let (None, Some(at)) = (to, idle.tags.rolled_back_at) {
            return Ok(Decision::Done(Done::AlreadyRolledBack {
                release: live.occupant.release(),
                slot: live.slot,
                from: format!("{} at {}", idle.release(), timestamp(at)),
            }));
        }
        if !idle.health.ready() {
            return Err(Refusal::attention(format!(
                "previous release {} (fleet {}) is not warm and healthy: {}; routing to it \
                 would drop requests",
                idle.release(),
                idle.fleet.name,
                idle.health.progress()
            )));
        }
        // Routing: `live` is the slot with the traffic, so "green" for the write is the idle one.
        Ok(Decision::Act(Action::Flip {
            to: idle_tg.clone(),
            from: spec.slots.get(live.slot).clone(),
            fleet: idle.fleet.name.clone(),
            release: idle.release(),
            verdict: None,
            write: write_share(spec, observed, &live, Percent::ALL),
        }))
    })())
}
