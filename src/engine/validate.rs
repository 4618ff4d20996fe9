//! `greenlight validate`: every check a deploy depends on, without changing anything.

use serde::Serialize;

use crate::core::cloud::Cloud;
use crate::core::decide::{live, ready_to_start};
use crate::core::observed::{Occupancy, crowded_message};
use crate::core::spec::Spec;
use crate::core::twin::check_launch;

use super::failure::Failure;
use super::observe::observe;
use super::preflight::check_resources;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    pub service: String,
    pub checks: Vec<Check>,
    pub warnings: Vec<String>,
}

/// Passes when a deploy could start now; the first failing check is the error.
pub async fn validate<C: Cloud>(cloud: &C, spec: &Spec) -> Result<Validation, Failure> {
    let mut checks = Vec::new();
    let mut warnings = Vec::new();
    check_resources(cloud, spec).await?;
    checks.push(Check {
        name: "resources",
        detail: format!(
            "{} and target groups {}, {} exist; both take instance targets",
            spec.router,
            spec.slots.get(crate::core::router::Slot::A).short_name(),
            spec.slots.get(crate::core::router::Slot::B).short_name()
        ),
    });

    let observed = observe(cloud, spec).await.map_err(Failure::cloud(false))?;
    let live = live(spec, &observed)?;
    checks.push(Check {
        name: "routing",
        detail: format!(
            "all traffic goes to target group {} (slot {})",
            spec.slots.get(live.slot).short_name(),
            live.slot
        ),
    });
    checks.push(Check {
        name: "live fleet",
        detail: format!(
            "fleet {} serves release {}: {}",
            live.occupant.fleet.name,
            live.occupant.release(),
            live.occupant.health.progress()
        ),
    });
    if !live.occupant.health.ready() {
        warnings.push(format!(
            "the live fleet {} is not fully healthy: {}",
            live.occupant.fleet.name,
            live.occupant.health.progress()
        ));
    }

    let config = cloud
        .fleet_config(&live.occupant.fleet.name)
        .await
        .map_err(Failure::cloud(false))?;
    check_launch(&live.occupant.fleet.name, &config.launch)?;
    checks.push(Check {
        name: "twin",
        detail: format!("fleet {} can be copied", live.occupant.fleet.name),
    });

    let idle_slot = live.slot.other();
    let idle_tg = spec.slots.get(idle_slot);
    match observed.slot(idle_slot).occupancy() {
        Occupancy::Empty => checks.push(Check {
            name: "idle slot",
            detail: format!(
                "target group {} is free for the next release",
                idle_tg.short_name()
            ),
        }),
        Occupancy::One(idle) if idle.tags.managed_for(&spec.service) => checks.push(Check {
            name: "idle slot",
            detail: format!(
                "target group {} holds release {} ({}), which the next deploy replaces",
                idle_tg.short_name(),
                idle.release(),
                idle.phase().map_or("untagged".into(), |p| p.to_string())
            ),
        }),
        Occupancy::One(idle) => {
            return Err(Failure::NeedsAttention(format!(
                "fleet {} in the idle target group {} is not managed by greenlight for {}; \
                 detach it or delete it",
                idle.fleet.name,
                idle_tg.short_name(),
                spec.service
            )));
        }
        Occupancy::Crowded(fleets) => {
            return Err(Failure::NeedsAttention(crowded_message(idle_tg, &fleets)));
        }
    }
    ready_to_start(spec, &observed)?;
    if spec.test_traffic.header.is_some() || !spec.analysis.alarms.is_empty() {
        checks.push(Check {
            name: "verification",
            detail: verification_detail(spec),
        });
    }
    Ok(Validation {
        service: spec.service.to_string(),
        checks,
        warnings,
    })
}

fn verification_detail(spec: &Spec) -> String {
    let mut parts = Vec::new();
    if spec.test_traffic.header.is_some() {
        parts.push("the test-traffic rule has a free priority".to_owned());
    }
    if !spec.analysis.alarms.is_empty() {
        parts.push(format!(
            "no alarm in ALARM ({})",
            spec.analysis.alarms.join(", ")
        ));
    }
    parts.join("; ")
}
