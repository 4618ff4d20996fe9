//! `greenlight status`: where traffic goes and what serves it, read-only.

use serde::Serialize;

use crate::core::cloud::Cloud;
use crate::core::names::TargetGroupArn;
use crate::core::observed::{Observed, Occupancy};
use crate::core::router::{RouterId, Routing, Slot};
use crate::core::spec::Spec;
use crate::core::tags::{self, ReleaseTags};

use super::failure::Failure;
use super::observe::observe;
use super::preflight::check_resources;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub service: String,
    pub router: RouterId,
    /// The release taking all traffic; `None` when traffic is split or goes elsewhere.
    pub live_release: Option<String>,
    pub live_slot: Option<Slot>,
    /// Why there is no single live release, when there is not.
    pub problem: Option<String>,
    pub traffic: Vec<SlotStatus>,
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
    pub failure: Option<String>,
    /// More fleets attached to the slot than the one reported.
    pub other_fleets: Vec<String>,
}

/// The report for an observation; pure, so its shape is tested without AWS.
pub fn report(spec: &Spec, observed: &Observed) -> StatusReport {
    let routing = observed.routing(&spec.slots);
    let live_slot = match routing {
        Routing::Live(slot) => Some(slot),
        _ => None,
    };
    let traffic: Vec<SlotStatus> = Slot::BOTH
        .into_iter()
        .map(|slot| slot_status(observed, slot))
        .collect();
    let live_release = live_slot.and_then(|slot| traffic[slot.index()].release.clone());
    StatusReport {
        service: spec.service.to_string(),
        router: spec.router.clone(),
        live_release,
        live_slot,
        problem: routing.describe_problem(&spec.router, &spec.slots),
        traffic,
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
        failure: None,
        other_fleets: Vec::new(),
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
            status.failure = release_tags.failure;
        }
    }
    status
}

pub async fn status<C: Cloud>(cloud: &C, spec: &Spec) -> Result<StatusReport, Failure> {
    check_resources(cloud, spec).await?;
    let observed = observe(cloud, spec).await.map_err(Failure::cloud(false))?;
    Ok(report(spec, &observed))
}
