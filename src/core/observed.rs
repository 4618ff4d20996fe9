//! One snapshot of the service as AWS reports it, taken fresh on every pass, and the reading of
//! it that every command shares: which slot is live, which fleet runs where.

use serde::Serialize;

use super::analysis::{AlarmState, Comparison};
use super::fleet::{FleetSummary, FleetWrite};
use super::health::{FleetHealth, TargetHealth, fleet_health};
use super::names::{FleetName, ServiceName, TargetGroupArn};
use super::router::{RouterState, Routing, Slot, Slots};
use super::tags::{Phase, ReleaseTags};
use super::test_traffic::ListenerRule;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observed {
    pub router: RouterState,
    pub slots: [SlotObserved; 2],
    /// What verification reads, as far as the config asks for it.
    pub verify: VerifyObserved,
}

/// Test traffic, alarms and metrics, read only when `[test_traffic]` or `[analysis]` ask.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct VerifyObserved {
    /// The rules of the router's listener, with their tags (`[test_traffic] header`).
    pub rules: Option<Vec<ListenerRule>>,
    /// The test listener (`[test_traffic] listener_arn`).
    pub test_listener: Option<RouterState>,
    /// The `[analysis] alarms` that exist, with their states.
    pub alarms: Vec<AlarmState>,
    /// Green and blue over green's current step, while green takes traffic and metrics are
    /// compared.
    pub metrics: Option<Comparison>,
}

/// A slot's target group, the fleets attached to it, and its targets' health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotObserved {
    pub target_group: TargetGroupArn,
    /// Attached fleets that are not being deleted.
    pub fleets: Vec<FleetSummary>,
    pub targets: Vec<TargetHealth>,
}

impl Observed {
    /// The same observation with `write` applied to `fleet`, wherever it sits.
    pub fn apply(&mut self, fleet: &FleetName, write: &FleetWrite) {
        for summary in self.slots.iter_mut().flat_map(|s| s.fleets.iter_mut()) {
            if &summary.name == fleet {
                summary.apply(write);
            }
        }
    }

    pub fn slot(&self, slot: Slot) -> &SlotObserved {
        &self.slots[slot.index()]
    }

    pub fn routing(&self, slots: &Slots) -> Routing {
        Routing::of(&self.router, slots)
    }
}

/// A fleet as seen in its slot, with its tags parsed and its health computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Occupant<'a> {
    pub fleet: &'a FleetSummary,
    pub tags: ReleaseTags,
    pub health: FleetHealth,
}

impl Occupant<'_> {
    /// The release the fleet runs: its tag, or its group name for a fleet greenlight has not
    /// released yet (the first blue fleet a user brings).
    pub fn release(&self) -> String {
        self.tags
            .release
            .clone()
            .unwrap_or_else(|| self.fleet.name.to_string())
    }

    pub fn phase(&self) -> Option<Phase> {
        self.tags.phase
    }
}

/// Who occupies a slot.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "made twice per pass and matched at once; a box would only add an allocation"
)]
pub enum Occupancy<'a> {
    Empty,
    One(Occupant<'a>),
    /// More than one live (not deleting) fleet: greenlight will not guess which one counts.
    Crowded(Vec<&'a FleetSummary>),
}

impl SlotObserved {
    pub fn occupancy(&self) -> Occupancy<'_> {
        let fleets: Vec<&FleetSummary> = self.fleets.iter().filter(|f| !f.deleting).collect();
        match fleets.as_slice() {
            [] => Occupancy::Empty,
            [fleet] => Occupancy::One(Occupant {
                fleet,
                tags: ReleaseTags::read(&fleet.tags),
                health: fleet_health(fleet, &self.targets),
            }),
            _ => Occupancy::Crowded(fleets),
        }
    }
}

/// A fleet attached to both slots would take traffic whichever way the router points.
pub fn straddling_fleets(observed: &Observed) -> Vec<&FleetSummary> {
    let b = &observed.slot(Slot::B).fleets;
    observed
        .slot(Slot::A)
        .fleets
        .iter()
        .filter(|f| b.iter().any(|g| g.name == f.name))
        .collect()
}

/// Text naming the fleets crowding one slot, for messages.
pub fn crowded_message(target_group: &TargetGroupArn, fleets: &[&FleetSummary]) -> String {
    let names: Vec<&str> = fleets.iter().map(|f| f.name.as_str()).collect();
    format!(
        "target group {} has {} fleets attached ({}); detach all but one",
        target_group.short_name(),
        fleets.len(),
        names.join(", ")
    )
}

/// A fleet in the idle slot that belongs to another service is never touched.
pub fn foreign_fleet(occupant: &Occupant<'_>, service: &ServiceName) -> bool {
    occupant.tags.service.is_some() && !occupant.tags.managed_for(service)
}
