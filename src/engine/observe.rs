//! One fresh observation of the service: the router, the fleets on both slots, their targets.

use crate::core::cloud::{Cloud, CloudResult};
use crate::core::observed::{Observed, SlotObserved};
use crate::core::router::Slot;
use crate::core::spec::Spec;

pub async fn observe<C: Cloud>(cloud: &C, spec: &Spec) -> CloudResult<Observed> {
    let router = cloud.router(&spec.router).await?;
    let target_groups = [
        spec.slots.get(Slot::A).clone(),
        spec.slots.get(Slot::B).clone(),
    ];
    let fleets = cloud.fleets(&target_groups).await?;
    let mut slots = Vec::with_capacity(2);
    for target_group in target_groups {
        let targets = cloud.target_health(&target_group).await?;
        slots.push(SlotObserved {
            fleets: fleets
                .iter()
                .filter(|f| f.target_groups.contains(&target_group) && !f.deleting)
                .cloned()
                .collect(),
            target_group,
            targets,
        });
    }
    let [a, b]: [SlotObserved; 2] = slots.try_into().expect("two slots were pushed");
    Ok(Observed {
        router,
        slots: [a, b],
    })
}
