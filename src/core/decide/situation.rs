//! Reading an observation: which release is live (stable), and which release, if any, is in
//! progress in the idle slot and how far it got. Every decision starts here.

use super::Refusal;
use crate::core::names::ServiceName;
use crate::core::observed::{Observed, Occupancy, Occupant, crowded_message, foreign_fleet};
use crate::core::plan::{Percent, Plan, StepNumber};
use crate::core::router::{Routing, Slot};
use crate::core::spec::Spec;
use crate::core::tags::{self, Phase, ReleaseTags};

/// Where the live (stable) release is and who serves it. Outside a release it takes all the
/// traffic; during a canary it is the side greenlight's split takes traffic from.
pub struct Live<'a> {
    pub slot: Slot,
    pub occupant: Occupant<'a>,
}

/// A release under way in the idle slot: its fleet, its plan, and green's share now.
pub struct InProgress<'a> {
    pub slot: Slot,
    pub occupant: Occupant<'a>,
    /// `None` when the fleet carries no readable plan (made by greenlight before plans).
    pub plan: Option<Plan>,
    /// Green's share of the traffic now.
    pub weight: Percent,
}

impl InProgress<'_> {
    pub fn release(&self) -> String {
        self.occupant.release()
    }
}

fn in_progress_phase(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        Some(Phase::Creating | Phase::Provisioning | Phase::Releasing)
    )
}

/// A slot's sole fleet, when it is a release of `service` under way with a plan it recorded:
/// releasing, or still tagged provisioning when its first shift landed and a crash kept the
/// step from being recorded.
fn releasing<'a>(
    observed: &'a Observed,
    slot: Slot,
    service: &ServiceName,
) -> Option<Occupant<'a>> {
    match observed.slot(slot).occupancy() {
        Occupancy::One(o)
            if o.tags.managed_for(service)
                && matches!(o.phase(), Some(Phase::Releasing | Phase::Provisioning))
                && o.tags.plan.is_some() =>
        {
            Some(o)
        }
        _ => None,
    }
}

/// The stable slot of a split greenlight made: the other slot holds a release of this service
/// under way, and its share is a weight of that release's plan.
fn own_split(spec: &Spec, observed: &Observed) -> Option<Slot> {
    Slot::BOTH.into_iter().find_map(|green_slot| {
        let green = releasing(observed, green_slot, &spec.service)?;
        let plan = green.tags.plan.as_ref()?;
        let share = observed.router.exact_percent(spec.slots.get(green_slot))?;
        let n = plan.step_with_weight(share)?;
        // Before its first step is recorded, only the first shift can have landed.
        (green.phase() == Some(Phase::Releasing) || n == StepNumber(1)).then(|| green_slot.other())
    })
}

/// The live slot and the one fleet serving it, or why greenlight cannot tell.
pub fn live<'a>(spec: &Spec, observed: &'a Observed) -> Result<Live<'a>, Refusal> {
    let routing = observed.routing(&spec.slots);
    let slot = match routing {
        Routing::Live(slot) => slot,
        Routing::Split { .. } => match own_split(spec, observed) {
            Some(slot) => slot,
            None => {
                return Err(Refusal::attention(
                    routing
                        .describe_problem(&spec.router, &spec.slots)
                        .unwrap_or_default(),
                ));
            }
        },
        _ => {
            return Err(Refusal::attention(
                routing
                    .describe_problem(&spec.router, &spec.slots)
                    .unwrap_or_default(),
            ));
        }
    };
    if let Some((fleet, schema)) = observed
        .slots
        .iter()
        .flat_map(|slot| &slot.fleets)
        .filter_map(|f| Some((f, ReleaseTags::read(&f.tags).schema?)))
        .find(|(_, schema)| *schema > tags::SCHEMA_VERSION)
    {
        return Err(Refusal::attention(format!(
            "fleet {} carries greenlight tag schema {schema}, newer than this greenlight's \
             ({}); upgrade greenlight",
            fleet.name,
            tags::SCHEMA_VERSION
        )));
    }
    if let Some(fleet) = crate::core::observed::straddling_fleets(observed).first() {
        return Err(Refusal::attention(format!(
            "fleet {} is attached to both target groups; detach it from one",
            fleet.name
        )));
    }
    let target_group = spec.slots.get(slot);
    match observed.slot(slot).occupancy() {
        Occupancy::One(occupant) if foreign_fleet(&occupant, &spec.service) => {
            Err(Refusal::attention(format!(
                "the live fleet {} belongs to service {}, not {}; check service in the config",
                occupant.fleet.name,
                occupant.tags.service.as_deref().unwrap_or_default(),
                spec.service
            )))
        }
        Occupancy::One(occupant) => Ok(Live { slot, occupant }),
        Occupancy::Empty => Err(Refusal::attention(format!(
            "no fleet is attached to the live target group {}; attach the Auto Scaling group \
             that serves it",
            target_group.short_name()
        ))),
        Occupancy::Crowded(fleets) => {
            Err(Refusal::attention(crowded_message(target_group, &fleets)))
        }
    }
}

/// The release of this service under way in the idle slot, if any: created, provisioning, or
/// releasing through its plan.
pub fn in_progress<'a>(
    spec: &Spec,
    observed: &'a Observed,
    live: &Live<'_>,
) -> Option<InProgress<'a>> {
    let slot = live.slot.other();
    let Occupancy::One(occupant) = observed.slot(slot).occupancy() else {
        return None;
    };
    if !occupant.tags.managed_for(&spec.service) || !in_progress_phase(occupant.phase()) {
        return None;
    }
    let weight = observed
        .router
        .exact_percent(spec.slots.get(slot))
        .unwrap_or(Percent::ZERO);
    Some(InProgress {
        slot,
        plan: occupant.tags.plan.clone(),
        occupant,
        weight,
    })
}
