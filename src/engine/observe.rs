//! One fresh observation of the service: the router, the fleets on both slots, their targets.
//! The four reads are independent, so they go out together.

use crate::core::cloud::{Cloud, CloudResult};
use crate::core::observed::{Observed, SlotObserved};
use crate::core::router::Slot;
use crate::core::spec::Spec;

pub async fn observe<C: Cloud>(cloud: &C, spec: &Spec) -> CloudResult<Observed> {
    let target_groups = [
        spec.slots.get(Slot::A).clone(),
        spec.slots.get(Slot::B).clone(),
    ];
    let (router, fleets, targets_a, targets_b) = tokio::join!(
        cloud.router(&spec.router),
        cloud.fleets(&target_groups),
        cloud.target_health(&target_groups[0]),
        cloud.target_health(&target_groups[1]),
    );
    let (router, fleets) = (router?, fleets?);
    let slot = |target_group: &crate::core::names::TargetGroupArn, targets| SlotObserved {
        fleets: fleets
            .iter()
            .filter(|f| f.target_groups.contains(target_group) && !f.deleting)
            .cloned()
            .collect(),
        target_group: target_group.clone(),
        targets,
    };
    let a = slot(&target_groups[0], targets_a?);
    let b = slot(&target_groups[1], targets_b?);
    Ok(Observed {
        router,
        slots: [a, b],
    })
}
