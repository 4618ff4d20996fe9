//! Fleets (Auto Scaling groups): what greenlight observes of them each pass, and the full
//! configuration it copies when it builds a twin.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::names::{FleetName, TargetGroupArn};

/// Min, max and desired instance counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub min: u32,
    pub max: u32,
    pub desired: u32,
}

impl Capacity {
    pub const ZERO: Capacity = Capacity {
        min: 0,
        max: 0,
        desired: 0,
    };
}

/// One instance as its Auto Scaling group reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetInstance {
    pub id: String,
    /// `Pending`, `InService`, `Terminating`, … as Auto Scaling spells it.
    pub lifecycle_state: String,
    /// `Healthy` or `Unhealthy`: the group's own view, not the load balancer's.
    pub health_status: String,
}

impl FleetInstance {
    pub const IN_SERVICE: &'static str = "InService";

    pub fn in_service(&self) -> bool {
        self.lifecycle_state == Self::IN_SERVICE
    }
}

/// One write to a fleet's tags or suspended scaling processes, as a step made it. A runner that
/// holds the lock knows the fleet as its own writes left it (see [`FleetSummary::apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetWrite {
    Tag(Vec<(String, String)>),
    Untag(Vec<String>),
    /// An empty list writes nothing (SuspendProcesses without a list would suspend all).
    Suspend(Vec<String>),
    /// An empty list writes nothing (ResumeProcesses without a list would resume all).
    Resume(Vec<String>),
}

impl FleetSummary {
    /// The fleet as it reads after `write`.
    pub fn apply(&mut self, write: &FleetWrite) {
        match write {
            FleetWrite::Tag(tags) => {
                for (key, value) in tags {
                    self.tags.insert(key.clone(), value.clone());
                }
            }
            FleetWrite::Untag(keys) => {
                for key in keys {
                    self.tags.remove(key);
                }
            }
            FleetWrite::Suspend(processes) => {
                for process in processes {
                    if !self.suspended_processes.contains(process) {
                        self.suspended_processes.push(process.clone());
                    }
                }
            }
            FleetWrite::Resume(processes) => {
                self.suspended_processes.retain(|p| !processes.contains(p));
            }
        }
    }
}

/// What greenlight reads of every fleet attached to a slot on every pass: cheap to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetSummary {
    pub name: FleetName,
    pub capacity: Capacity,
    pub instances: Vec<FleetInstance>,
    pub tags: BTreeMap<String, String>,
    pub target_groups: Vec<TargetGroupArn>,
    /// Auto Scaling processes suspended on the group, e.g. `AlarmNotification`.
    pub suspended_processes: Vec<String>,
    /// A deletion is under way (`Status: Delete in progress`): the fleet is on its way out and
    /// no longer counts as occupying its slot.
    pub deleting: bool,
    /// The launch template (and version) it launches from, when the group names it by id
    /// (directly or in a mixed instances policy); `None` otherwise (by name, or none).
    pub launch_template: Option<LaunchTemplateRef>,
}

impl FleetSummary {
    pub fn in_service(&self) -> impl Iterator<Item = &FleetInstance> {
        self.instances.iter().filter(|i| i.in_service())
    }
}

/// A launch template and the version of it a fleet launches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchTemplateRef {
    pub id: String,
    /// A version number, `$Latest` or `$Default`.
    pub version: String,
}

/// What a fleet launches instances from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FleetLaunch {
    Template(LaunchTemplateRef),
    Mixed(MixedInstances),
    /// A legacy launch configuration, which greenlight does not copy.
    LaunchConfiguration {
        name: String,
    },
}

impl FleetLaunch {
    /// The template every instance is launched from, when there is exactly one.
    pub fn template(&self) -> Option<&LaunchTemplateRef> {
        match self {
            FleetLaunch::Template(t) => Some(t),
            FleetLaunch::Mixed(m) => Some(&m.template),
            FleetLaunch::LaunchConfiguration { .. } => None,
        }
    }

    /// The same launch, pointed at another version of its template.
    pub fn with_version(&self, version: &str) -> FleetLaunch {
        let retarget = |t: &LaunchTemplateRef| LaunchTemplateRef {
            id: t.id.clone(),
            version: version.to_owned(),
        };
        match self {
            FleetLaunch::Template(t) => FleetLaunch::Template(retarget(t)),
            FleetLaunch::Mixed(m) => FleetLaunch::Mixed(MixedInstances {
                template: retarget(&m.template),
                ..m.clone()
            }),
            other @ FleetLaunch::LaunchConfiguration { .. } => other.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixedInstances {
    pub template: LaunchTemplateRef,
    pub overrides: Vec<InstanceOverride>,
    pub distribution: Option<InstancesDistribution>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceOverride {
    pub instance_type: Option<String>,
    pub weighted_capacity: Option<String>,
    /// An override that launches from its own template: greenlight cannot swap its image.
    pub launch_template: Option<LaunchTemplateRef>,
    /// Attribute-based instance selection, which greenlight does not copy yet.
    pub has_instance_requirements: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct InstancesDistribution {
    pub on_demand_allocation_strategy: Option<String>,
    pub on_demand_base_capacity: Option<i32>,
    pub on_demand_percentage_above_base_capacity: Option<i32>,
    pub spot_allocation_strategy: Option<String>,
    pub spot_instance_pools: Option<i32>,
    pub spot_max_price: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleHook {
    pub name: String,
    pub transition: String,
    pub heartbeat_timeout: Option<i32>,
    pub default_result: Option<String>,
    pub notification_target_arn: Option<String>,
    pub role_arn: Option<String>,
    pub notification_metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAdjustment {
    pub lower_bound: Option<f64>,
    pub upper_bound: Option<f64>,
    pub scaling_adjustment: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDimension {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomizedMetric {
    pub metric_name: String,
    pub namespace: String,
    pub statistic: String,
    pub unit: Option<String>,
    pub dimensions: Vec<MetricDimension>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetTracking {
    pub predefined_metric_type: Option<String>,
    /// For `ALBRequestCountPerTarget`: `app/<lb>/<id>/targetgroup/<tg>/<id>`.
    pub resource_label: Option<String>,
    pub customized_metric: Option<CustomizedMetric>,
    pub target_value: f64,
    pub disable_scale_in: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingPolicy {
    pub name: String,
    /// `TargetTrackingScaling`, `StepScaling`, `SimpleScaling` or `PredictiveScaling`.
    pub policy_type: String,
    pub enabled: Option<bool>,
    pub adjustment_type: Option<String>,
    pub min_adjustment_magnitude: Option<i32>,
    pub scaling_adjustment: Option<i32>,
    pub cooldown: Option<i32>,
    pub metric_aggregation_type: Option<String>,
    pub estimated_instance_warmup: Option<i32>,
    pub step_adjustments: Vec<StepAdjustment>,
    pub target_tracking: Option<TargetTracking>,
    /// Metric math in a customized target-tracking metric, which greenlight does not copy yet.
    pub has_metric_math: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledAction {
    pub name: String,
    pub recurrence: Option<String>,
    #[serde(with = "optional_rfc3339")]
    pub start_time: Option<SystemTime>,
    #[serde(with = "optional_rfc3339")]
    pub end_time: Option<SystemTime>,
    pub min: Option<i32>,
    pub max: Option<i32>,
    pub desired: Option<i32>,
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsCollection {
    pub granularity: String,
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetTag {
    pub key: String,
    pub value: String,
    pub propagate_at_launch: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaintenancePolicy {
    pub min_healthy_percentage: Option<i32>,
    pub max_healthy_percentage: Option<i32>,
}

/// Everything about a fleet that its twin reproduces. Read in full only for the live fleet,
/// once per release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetConfig {
    pub launch: FleetLaunch,
    pub capacity: Capacity,
    /// Subnet ids (`VPCZoneIdentifier`).
    pub subnets: Vec<String>,
    pub availability_zones: Vec<String>,
    pub health_check_type: Option<String>,
    pub health_check_grace_period: Option<i32>,
    pub default_cooldown: Option<i32>,
    pub termination_policies: Vec<String>,
    pub default_instance_warmup: Option<i32>,
    pub capacity_rebalance: Option<bool>,
    pub max_instance_lifetime: Option<i32>,
    pub instance_maintenance_policy: Option<MaintenancePolicy>,
    pub new_instances_protected_from_scale_in: Option<bool>,
    pub placement_group: Option<String>,
    pub service_linked_role_arn: Option<String>,
    pub desired_capacity_type: Option<String>,
    pub lifecycle_hooks: Vec<LifecycleHook>,
    pub scaling_policies: Vec<ScalingPolicy>,
    pub scheduled_actions: Vec<ScheduledAction>,
    pub metrics: Option<MetricsCollection>,
    pub suspended_processes: Vec<String>,
    pub tags: Vec<FleetTag>,
    pub target_groups: Vec<TargetGroupArn>,
    /// A warm pool is configured; greenlight does not copy it yet.
    pub has_warm_pool: bool,
}

mod optional_rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> FleetSummary {
        FleetSummary {
            name: FleetName::new("checkout-v2"),
            capacity: Capacity::ZERO,
            instances: Vec::new(),
            tags: [
                ("greenlight:phase", "live"),
                ("greenlight:suspended", "AZRebalance"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            target_groups: Vec::new(),
            suspended_processes: vec!["Launch".to_owned()],
            deleting: false,
            launch_template: None,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_fleet_reads_as_the_writes_left_it() {
        // A write, then the fleet's tags and suspended processes after it.
        type Case = (
            FleetWrite,
            Vec<(&'static str, &'static str)>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                FleetWrite::Tag(vec![("greenlight:phase".into(), "warm".into())]),
                vec![
                    ("greenlight:phase", "warm"),
                    ("greenlight:suspended", "AZRebalance"),
                ],
                vec!["Launch"],
            ),
            (
                FleetWrite::Untag(strings(&["greenlight:suspended", "absent"])),
                vec![("greenlight:phase", "live")],
                vec!["Launch"],
            ),
            (
                FleetWrite::Suspend(strings(&["Launch", "AZRebalance"])),
                vec![
                    ("greenlight:phase", "live"),
                    ("greenlight:suspended", "AZRebalance"),
                ],
                vec!["Launch", "AZRebalance"],
            ),
            (
                FleetWrite::Resume(strings(&["Launch", "Terminate"])),
                vec![
                    ("greenlight:phase", "live"),
                    ("greenlight:suspended", "AZRebalance"),
                ],
                vec![],
            ),
            // Empty lists write nothing.
            (
                FleetWrite::Suspend(Vec::new()),
                vec![
                    ("greenlight:phase", "live"),
                    ("greenlight:suspended", "AZRebalance"),
                ],
                vec!["Launch"],
            ),
            (
                FleetWrite::Resume(Vec::new()),
                vec![
                    ("greenlight:phase", "live"),
                    ("greenlight:suspended", "AZRebalance"),
                ],
                vec!["Launch"],
            ),
        ];
        for (write, tags, suspended) in cases {
            let mut f = fleet();
            f.apply(&write);
            let tags: BTreeMap<String, String> = tags
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(f.tags, tags, "{write:?}");
            assert_eq!(f.suspended_processes, strings(&suspended), "{write:?}");
        }
    }
}
