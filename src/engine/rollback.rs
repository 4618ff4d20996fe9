//! `greenlight rollback`: one router call back to the warm previous release, then the tags.

use crate::core::cloud::Cloud;
use crate::core::decide::{Action, decide_rollback, live, rollback_unsettled, settle_after_flip};
use crate::core::router::Slot;
use crate::core::spec::Spec;

use super::clock::Clock;
use super::events::{Event, Reporter};
use super::execute::apply;
use super::failure::Failure;
use super::observe::observe;
use super::preflight::check_resources;

const MAX_SETTLE_PASSES: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub release: String,
    pub slot: Slot,
}

/// Routes all traffic to the previous release if it is still warm and healthy.
///
/// # Guarantees
/// Nothing is awaited between the observation that found the previous release healthy and the
/// flip; tags are fixed only after traffic has moved.
pub async fn rollback<C: Cloud, K: Clock>(
    cloud: &C,
    clock: &K,
    reporter: &mut dyn Reporter,
    spec: &Spec,
) -> Result<RolledBack, Failure> {
    check_resources(cloud, spec).await?;
    let observed = observe(cloud, spec).await.map_err(Failure::cloud(false))?;
    // The fleet that had the traffic before this rollback, if it flips.
    let mut left = None;
    let rolled_back = if rollback_unsettled(spec, &observed) {
        // An interrupted rollback: traffic is already back; only its tags are left to do.
        let live = live(spec, &observed)?;
        RolledBack {
            release: live.occupant.release(),
            slot: live.slot,
        }
    } else {
        left = Some(live(spec, &observed)?.occupant.fleet.name.clone());
        let flip = decide_rollback(spec, &observed)?;
        let Action::Flip { to, release, .. } = &flip else {
            unreachable!("decide_rollback only flips")
        };
        let slot = spec.slots.slot_of(to).expect("flip targets a slot");
        reporter.report(&Event::Step {
            action: flip.clone(),
        });
        apply(cloud, spec, &flip, clock.now()).await?;
        RolledBack {
            release: release.clone(),
            slot,
        }
    };
    let slot = rolled_back.slot;
    // Marking warm, then live: two steps, plus slack for a tag write AWS shows late.
    for _ in 0..MAX_SETTLE_PASSES {
        let observed = observe(cloud, spec).await.map_err(Failure::cloud(true))?;
        let now = clock.now();
        let Some(action) = settle_after_flip(spec, &observed, now, left.as_ref())? else {
            break;
        };
        reporter.report(&Event::Step {
            action: action.clone(),
        });
        apply(cloud, spec, &action, now).await?;
    }
    reporter.report(&Event::RolledBack {
        release: rolled_back.release.clone(),
        slot,
    });
    Ok(rolled_back)
}
