//! Target health as the load balancer reports it, and the one rule that decides whether a
//! fleet may take traffic.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::fleet::FleetSummary;

/// A target's state in its target group, as ELBv2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    UnhealthyDraining,
    Unused,
    Draining,
    Unavailable,
}

impl TargetState {
    pub fn parse(value: &str) -> Option<TargetState> {
        Some(match value {
            "initial" => TargetState::Initial,
            "healthy" => TargetState::Healthy,
            "unhealthy" => TargetState::Unhealthy,
            "unhealthy.draining" => TargetState::UnhealthyDraining,
            "unused" => TargetState::Unused,
            "draining" => TargetState::Draining,
            "unavailable" => TargetState::Unavailable,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::UnhealthyDraining => "unhealthy.draining",
            TargetState::Unused => "unused",
            TargetState::Draining => "draining",
            TargetState::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered target's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetHealth {
    /// The instance id.
    pub target_id: String,
    pub state: TargetState,
    /// e.g. `Elb.RegistrationInProgress`, `Target.ResponseCodeMismatch`.
    pub reason: Option<String>,
    pub description: Option<String>,
}

/// How ready a fleet is to take traffic through its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetHealth {
    pub desired: u32,
    pub in_service: u32,
    /// InService instances of the fleet whose target is `healthy` in the slot.
    pub healthy: u32,
    /// InService instances per non-healthy target state (not registered counts as `unused`),
    /// with the distinct reasons AWS gave.
    pub waiting: BTreeMap<TargetState, (u32, Vec<String>)>,
    /// Instances not yet (or no longer) InService.
    pub not_in_service: u32,
}

impl FleetHealth {
    /// The one rule for routing: the fleet runs its full desired capacity, at least one
    /// instance, and every InService instance is healthy in the target group.
    pub fn ready(&self) -> bool {
        self.desired > 0
            && self.in_service >= self.desired
            && self.healthy == self.in_service
            && self.not_in_service == 0
    }

    /// The reasons AWS gave for targets that are not healthy, for failure messages.
    pub fn reasons(&self) -> Vec<String> {
        self.waiting
            .iter()
            .map(|(state, (count, reasons))| {
                let why = if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join("; "))
                };
                format!("{count} {state}{why}")
            })
            .collect()
    }

    /// e.g. `3/4 healthy, 1 initial (Elb.RegistrationInProgress)`.
    pub fn progress(&self) -> String {
        let mut parts = vec![format!("{}/{} healthy", self.healthy, self.desired)];
        if self.not_in_service > 0 {
            parts.push(format!("{} not yet in service", self.not_in_service));
        }
        for (state, (count, reasons)) in &self.waiting {
            let codes = if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            };
            parts.push(format!("{count} {state}{codes}"));
        }
        parts.join(", ")
    }
}

/// Health of `fleet`'s instances among the `targets` of its slot. Targets that belong to other
/// fleets (a previous release draining out, say) are ignored.
pub fn fleet_health(fleet: &FleetSummary, targets: &[TargetHealth]) -> FleetHealth {
    let mut health = FleetHealth {
        desired: fleet.capacity.desired,
        in_service: 0,
        healthy: 0,
        waiting: BTreeMap::new(),
        not_in_service: 0,
    };
    for instance in &fleet.instances {
        if !instance.in_service() {
            health.not_in_service += 1;
            continue;
        }
        health.in_service += 1;
        let target = targets.iter().find(|t| t.target_id == instance.id);
        let (state, reason) = match target {
            Some(t) if t.state == TargetState::Healthy => {
                health.healthy += 1;
                continue;
            }
            Some(t) => (t.state, t.reason.clone()),
            None => (TargetState::Unused, Some("Target.NotRegistered".to_owned())),
        };
        let entry = health.waiting.entry(state).or_insert((0, Vec::new()));
        entry.0 += 1;
        if let Some(reason) = reason.filter(|r| !entry.1.contains(r)) {
            entry.1.push(reason);
        }
    }
    health
}

/// Descriptions AWS gave for unhealthy targets, deduplicated; the detail a failure report needs.
pub fn unhealthy_descriptions(
    fleet: &FleetSummary,
    targets: &[TargetHealth],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for target in targets {
        if target.state == TargetState::Healthy
            || !fleet.instances.iter().any(|i| i.id == target.target_id)
        {
            continue;
        }
        let text = match (&target.reason, &target.description) {
            (Some(r), Some(d)) => format!("{} {}: {r}: {d}", target.target_id, target.state),
            (Some(r), None) => format!("{} {}: {r}", target.target_id, target.state),
            _ => format!("{} {}", target.target_id, target.state),
        };
        out.push((target.target_id.clone(), text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fleet::{Capacity, FleetInstance};
    use crate::core::names::FleetName;

    fn fleet(desired: u32, states: &[&str]) -> FleetSummary {
        FleetSummary {
            name: FleetName::new("checkout-v2"),
            capacity: Capacity {
                min: desired,
                max: desired,
                desired,
            },
            instances: states
                .iter()
                .enumerate()
                .map(|(n, s)| FleetInstance {
                    id: format!("i-{n}"),
                    lifecycle_state: (*s).into(),
                    health_status: "Healthy".into(),
                })
                .collect(),
            tags: Default::default(),
            target_groups: vec![],
            suspended_processes: vec![],
            deleting: false,
            launch_template: None,
        }
    }

    fn target(n: usize, state: TargetState, reason: Option<&str>) -> TargetHealth {
        TargetHealth {
            target_id: format!("i-{n}"),
            state,
            reason: reason.map(str::to_owned),
            description: None,
        }
    }

    #[test]
    fn progress_line_names_states_and_reasons() {
        let f = fleet(4, &["InService"; 4]);
        let targets = [
            target(0, TargetState::Healthy, None),
            target(1, TargetState::Healthy, None),
            target(2, TargetState::Healthy, None),
            target(3, TargetState::Initial, Some("Elb.RegistrationInProgress")),
        ];
        let h = fleet_health(&f, &targets);
        assert_eq!(
            h.progress(),
            "3/4 healthy, 1 initial (Elb.RegistrationInProgress)"
        );
        assert!(!h.ready());
    }

    #[test]
    fn readiness_table() {
        use TargetState::*;
        let cases: &[(u32, &[&str], &[TargetState], bool)] = &[
            (2, &["InService", "InService"], &[Healthy, Healthy], true),
            (2, &["InService", "Pending"], &[Healthy, Healthy], false),
            (2, &["InService"], &[Healthy], false),
            (2, &["InService", "InService"], &[Healthy, Unhealthy], false),
            (2, &["InService", "InService"], &[Healthy], false),
            (0, &[], &[], false),
            (1, &["InService"], &[Draining], false),
        ];
        for (desired, states, targets, ready) in cases {
            let f = fleet(*desired, states);
            let t: Vec<_> = targets
                .iter()
                .enumerate()
                .map(|(n, s)| target(n, *s, None))
                .collect();
            assert_eq!(
                fleet_health(&f, &t).ready(),
                *ready,
                "{desired} {states:?} {targets:?}"
            );
        }
    }

    #[test]
    fn unregistered_instances_count_as_unused() {
        let f = fleet(1, &["InService"]);
        let h = fleet_health(&f, &[]);
        assert_eq!(h.progress(), "0/1 healthy, 1 unused (Target.NotRegistered)");
    }
}
