//! The twin: the green fleet's configuration, derived from the live fleet's so that the new
//! release runs exactly as the old one does, except for its image and its target group.

use std::time::SystemTime;

use super::fleet::{FleetConfig, FleetLaunch, FleetTag, ScalingPolicy, ScheduledAction};
use super::names::{FleetName, ReleaseName, ServiceName, TargetGroupArn};
use super::plan::Plan;
use super::tags;

/// What the twin needs to know besides the live fleet's configuration.
#[derive(Debug, Clone)]
pub struct TwinPlan<'a> {
    pub service: &'a ServiceName,
    pub release: &'a ReleaseName,
    pub live_fleet: &'a FleetName,
    pub green_fleet: &'a FleetName,
    pub live_target_group: &'a TargetGroupArn,
    pub idle_target_group: &'a TargetGroupArn,
    /// The launch template version (a number) green launches from.
    pub launch_template_version: &'a str,
    /// The AMI the version was made with, when greenlight made it.
    pub image: Option<&'a str>,
    /// The steps the release will take, recorded on green so every later run follows them.
    pub release_plan: &'a Plan,
    pub health_deadline: SystemTime,
    pub now: SystemTime,
}

/// A live fleet greenlight cannot copy faithfully; deploying from it would run green
/// differently from blue, so deploy refuses before changing anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot twin fleet {fleet}: {reason}")]
pub struct TwinError {
    pub fleet: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Twin {
    pub config: FleetConfig,
    /// Settings of the live fleet the twin leaves out, for a warning.
    pub omitted: Vec<String>,
}

/// Refuses fleets whose launch greenlight cannot re-point at a new image.
pub fn check_launch(fleet: &FleetName, launch: &FleetLaunch) -> Result<(), TwinError> {
    let refuse = |reason: String| {
        Err(TwinError {
            fleet: fleet.to_string(),
            reason,
        })
    };
    match launch {
        FleetLaunch::LaunchConfiguration { name } => refuse(format!(
            "it launches from launch configuration {name}; move it to a launch template"
        )),
        FleetLaunch::Mixed(mixed) => {
            if mixed.overrides.iter().any(|o| o.launch_template.is_some()) {
                return refuse(
                    "an instance type override launches from its own launch template, whose \
                     image greenlight would not replace; use one launch template"
                        .into(),
                );
            }
            if mixed.overrides.iter().any(|o| o.has_instance_requirements) {
                return refuse(
                    "it selects instance types by attributes (InstanceRequirements), which \
                     greenlight does not copy yet; list instance types instead"
                        .into(),
                );
            }
            Ok(())
        }
        FleetLaunch::Template(_) => Ok(()),
    }
}

/// Builds green's configuration from the live fleet's.
pub fn twin(live: &FleetConfig, plan: &TwinPlan<'_>) -> Result<Twin, TwinError> {
    check_launch(plan.live_fleet, &live.launch)?;
    let mut omitted = Vec::new();

    let live_label = plan.live_target_group.label_suffix();
    let idle_label = plan.idle_target_group.label_suffix();
    let retarget = |text: &str| -> String {
        let text = match (&live_label, &idle_label) {
            (Some(live), Some(idle)) => text.replace(live.as_str(), idle),
            _ => text.to_owned(),
        };
        if text == plan.live_fleet.as_str() {
            plan.green_fleet.to_string()
        } else {
            text
        }
    };

    let mut scaling_policies: Vec<ScalingPolicy> = Vec::new();
    for policy in &live.scaling_policies {
        if policy.policy_type == "PredictiveScaling" {
            omitted.push(format!("predictive scaling policy {}", policy.name));
            continue;
        }
        if policy.has_metric_math {
            omitted.push(format!(
                "target tracking policy {} (metric math)",
                policy.name
            ));
            continue;
        }
        let mut policy = policy.clone();
        if let Some(tracking) = policy.target_tracking.as_mut() {
            tracking.resource_label = tracking.resource_label.as_deref().map(retarget);
            if let Some(metric) = tracking.customized_metric.as_mut() {
                for dimension in &mut metric.dimensions {
                    dimension.value = retarget(&dimension.value);
                }
            }
        }
        scaling_policies.push(policy);
    }

    let scheduled_actions: Vec<ScheduledAction> = live
        .scheduled_actions
        .iter()
        .filter(|a| a.end_time.is_none_or(|end| end > plan.now))
        .map(|a| ScheduledAction {
            // Auto Scaling refuses a start time in the past; the recurrence carries on from now.
            start_time: a.start_time.filter(|start| *start > plan.now),
            ..a.clone()
        })
        .collect();

    let mut fleet_tags: Vec<FleetTag> = live
        .tags
        .iter()
        .filter(|t| !t.key.starts_with(tags::PREFIX) && !t.key.starts_with("aws:"))
        .cloned()
        .collect();
    fleet_tags.extend(
        tags::for_new_release(&tags::NewRelease {
            service: plan.service,
            release: plan.release,
            image: plan.image,
            launch_template_version: Some(plan.launch_template_version),
            plan: plan.release_plan,
            health_deadline: plan.health_deadline,
            now: plan.now,
        })
        .into_iter()
        .map(|(key, value)| FleetTag {
            key,
            value,
            propagate_at_launch: false,
        }),
    );

    // Processes greenlight suspended to keep a fleet warm are not the owner's settings.
    let suspended_by_greenlight: Vec<String> = live
        .tags
        .iter()
        .find(|t| t.key == tags::SUSPENDED)
        .map(|t| t.value.split(',').map(|p| p.trim().to_owned()).collect())
        .unwrap_or_default();
    let suspended_processes = live
        .suspended_processes
        .iter()
        .filter(|p| !suspended_by_greenlight.contains(p))
        .cloned()
        .collect();

    if live.has_warm_pool {
        omitted.push("warm pool".into());
    }
    let other_target_groups = live
        .target_groups
        .iter()
        .filter(|tg| *tg != plan.live_target_group)
        .count();
    if other_target_groups > 0 {
        omitted.push(format!(
            "{other_target_groups} other target group(s) (green joins only its slot)"
        ));
    }

    Ok(Twin {
        config: FleetConfig {
            launch: live.launch.with_version(plan.launch_template_version),
            scaling_policies,
            scheduled_actions,
            suspended_processes,
            tags: fleet_tags,
            // Only the idle slot: attaching green anywhere that takes traffic would route to it
            // before it is healthy.
            target_groups: vec![plan.idle_target_group.clone()],
            has_warm_pool: false,
            ..live.clone()
        },
        omitted,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::fleet::*;

    const TG_A: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/checkout-a/aaaa";
    const TG_B: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/checkout-b/bbbb";
    const TG_OTHER: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/internal/cccc";

    pub fn live_config() -> FleetConfig {
        FleetConfig {
            launch: FleetLaunch::Template(LaunchTemplateRef {
                id: "lt-0abc".into(),
                version: "$Default".into(),
            }),
            capacity: Capacity {
                min: 2,
                max: 6,
                desired: 3,
            },
            subnets: vec!["subnet-1".into(), "subnet-2".into()],
            availability_zones: vec!["us-east-1a".into(), "us-east-1b".into()],
            health_check_type: Some("ELB".into()),
            health_check_grace_period: Some(60),
            default_cooldown: Some(300),
            termination_policies: vec!["OldestInstance".into()],
            default_instance_warmup: Some(30),
            capacity_rebalance: Some(true),
            max_instance_lifetime: Some(604_800),
            instance_maintenance_policy: Some(MaintenancePolicy {
                min_healthy_percentage: Some(90),
                max_healthy_percentage: Some(120),
            }),
            new_instances_protected_from_scale_in: Some(false),
            placement_group: None,
            service_linked_role_arn: None,
            desired_capacity_type: None,
            lifecycle_hooks: vec![LifecycleHook {
                name: "warmup".into(),
                transition: "autoscaling:EC2_INSTANCE_LAUNCHING".into(),
                heartbeat_timeout: Some(300),
                default_result: Some("CONTINUE".into()),
                notification_target_arn: None,
                role_arn: None,
                notification_metadata: None,
            }],
            scaling_policies: vec![
                ScalingPolicy {
                    name: "requests".into(),
                    policy_type: "TargetTrackingScaling".into(),
                    enabled: Some(true),
                    adjustment_type: None,
                    min_adjustment_magnitude: None,
                    scaling_adjustment: None,
                    cooldown: None,
                    metric_aggregation_type: None,
                    estimated_instance_warmup: None,
                    step_adjustments: vec![],
                    target_tracking: Some(TargetTracking {
                        predefined_metric_type: Some("ALBRequestCountPerTarget".into()),
                        resource_label: Some(
                            "app/checkout/1234/targetgroup/checkout-a/aaaa".into(),
                        ),
                        customized_metric: None,
                        target_value: 1000.0,
                        disable_scale_in: None,
                    }),
                    has_metric_math: false,
                },
                ScalingPolicy {
                    name: "latency".into(),
                    policy_type: "TargetTrackingScaling".into(),
                    enabled: Some(true),
                    adjustment_type: None,
                    min_adjustment_magnitude: None,
                    scaling_adjustment: None,
                    cooldown: None,
                    metric_aggregation_type: None,
                    estimated_instance_warmup: None,
                    step_adjustments: vec![],
                    target_tracking: Some(TargetTracking {
                        predefined_metric_type: None,
                        resource_label: None,
                        customized_metric: Some(CustomizedMetric {
                            metric_name: "Latency".into(),
                            namespace: "Checkout".into(),
                            statistic: "Average".into(),
                            unit: None,
                            dimensions: vec![MetricDimension {
                                name: "AutoScalingGroupName".into(),
                                value: "checkout-blue".into(),
                            }],
                        }),
                        target_value: 0.2,
                        disable_scale_in: Some(true),
                    }),
                    has_metric_math: false,
                },
                ScalingPolicy {
                    name: "forecast".into(),
                    policy_type: "PredictiveScaling".into(),
                    enabled: Some(true),
                    adjustment_type: None,
                    min_adjustment_magnitude: None,
                    scaling_adjustment: None,
                    cooldown: None,
                    metric_aggregation_type: None,
                    estimated_instance_warmup: None,
                    step_adjustments: vec![],
                    target_tracking: None,
                    has_metric_math: false,
                },
            ],
            scheduled_actions: vec![
                ScheduledAction {
                    name: "weekday-morning".into(),
                    recurrence: Some("0 9 * * 1-5".into()),
                    start_time: Some(SystemTime::UNIX_EPOCH),
                    end_time: None,
                    min: Some(4),
                    max: None,
                    desired: None,
                    time_zone: Some("Europe/Berlin".into()),
                },
                ScheduledAction {
                    name: "black-friday-over".into(),
                    recurrence: None,
                    start_time: Some(SystemTime::UNIX_EPOCH),
                    end_time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1)),
                    min: Some(2),
                    max: None,
                    desired: None,
                    time_zone: None,
                },
            ],
            metrics: Some(MetricsCollection {
                granularity: "1Minute".into(),
                metrics: vec!["GroupInServiceInstances".into()],
            }),
            suspended_processes: vec!["AZRebalance".into()],
            tags: vec![
                FleetTag {
                    key: "Name".into(),
                    value: "checkout".into(),
                    propagate_at_launch: true,
                },
                FleetTag {
                    key: "aws:cloudformation:stack-name".into(),
                    value: "checkout".into(),
                    propagate_at_launch: true,
                },
                FleetTag {
                    key: "greenlight:phase".into(),
                    value: "live".into(),
                    propagate_at_launch: false,
                },
            ],
            target_groups: vec![
                TargetGroupArn::parse(TG_A).unwrap(),
                TargetGroupArn::parse(TG_OTHER).unwrap(),
            ],
            has_warm_pool: true,
        }
    }

    fn plan_and_twin(live: &FleetConfig) -> Result<Twin, TwinError> {
        let service = ServiceName::parse("checkout").unwrap();
        let release = ReleaseName::parse("v2").unwrap();
        let live_fleet = FleetName::new("checkout-blue");
        let green = FleetName::new("checkout-v2");
        let tg_a = TargetGroupArn::parse(TG_A).unwrap();
        let tg_b = TargetGroupArn::parse(TG_B).unwrap();
        twin(
            live,
            &TwinPlan {
                service: &service,
                release: &release,
                live_fleet: &live_fleet,
                green_fleet: &green,
                live_target_group: &tg_a,
                idle_target_group: &tg_b,
                launch_template_version: "7",
                image: Some("ami-0123456789abcdef0"),
                release_plan: &Plan::blue_green(None),
                health_deadline: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_600),
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            },
        )
    }

    #[test]
    fn twin_copies_settings_and_retargets() {
        let live = live_config();
        let twin = plan_and_twin(&live).unwrap();
        let green = &twin.config;
        assert_eq!(
            green.launch,
            FleetLaunch::Template(LaunchTemplateRef {
                id: "lt-0abc".into(),
                version: "7".into()
            })
        );
        assert_eq!(green.capacity, live.capacity);
        assert_eq!(green.subnets, live.subnets);
        assert_eq!(green.health_check_type, live.health_check_type);
        assert_eq!(
            green.health_check_grace_period,
            live.health_check_grace_period
        );
        assert_eq!(green.termination_policies, live.termination_policies);
        assert_eq!(green.default_instance_warmup, live.default_instance_warmup);
        assert_eq!(green.capacity_rebalance, live.capacity_rebalance);
        assert_eq!(green.max_instance_lifetime, live.max_instance_lifetime);
        assert_eq!(
            green.instance_maintenance_policy,
            live.instance_maintenance_policy
        );
        assert_eq!(green.lifecycle_hooks, live.lifecycle_hooks);
        assert_eq!(green.metrics, live.metrics);
        assert_eq!(green.suspended_processes, live.suspended_processes);
        assert_eq!(
            green.target_groups,
            vec![TargetGroupArn::parse(TG_B).unwrap()]
        );

        let requests = &green.scaling_policies[0];
        assert_eq!(
            requests
                .target_tracking
                .as_ref()
                .unwrap()
                .resource_label
                .as_deref(),
            Some("app/checkout/1234/targetgroup/checkout-b/bbbb")
        );
        let latency = &green.scaling_policies[1];
        assert_eq!(
            latency
                .target_tracking
                .as_ref()
                .unwrap()
                .customized_metric
                .as_ref()
                .unwrap()
                .dimensions[0]
                .value,
            "checkout-v2"
        );
        assert_eq!(
            green.scaling_policies.len(),
            2,
            "predictive policy left out"
        );

        assert_eq!(green.scheduled_actions.len(), 1, "expired action left out");
        assert_eq!(green.scheduled_actions[0].start_time, None);
        assert_eq!(
            green.scheduled_actions[0].time_zone.as_deref(),
            Some("Europe/Berlin")
        );

        let keys: Vec<&str> = green.tags.iter().map(|t| t.key.as_str()).collect();
        assert!(keys.contains(&"Name"));
        assert!(!keys.contains(&"aws:cloudformation:stack-name"));
        assert!(
            green
                .tags
                .iter()
                .any(|t| t.key == tags::PHASE && t.value == "creating")
        );
        assert!(
            green
                .tags
                .iter()
                .any(|t| t.key == tags::RELEASE && t.value == "v2")
        );
        assert!(!green.has_warm_pool);
        assert_eq!(twin.omitted.len(), 3, "{:?}", twin.omitted);
    }

    #[test]
    fn processes_greenlight_suspended_are_not_copied() {
        let mut live = live_config();
        live.suspended_processes = vec!["AZRebalance".into(), "AlarmNotification".into()];
        live.tags.push(FleetTag {
            key: tags::SUSPENDED.into(),
            value: "AlarmNotification,ScheduledActions".into(),
            propagate_at_launch: false,
        });
        let green = plan_and_twin(&live).unwrap().config;
        assert_eq!(green.suspended_processes, vec!["AZRebalance".to_owned()]);
        assert!(!green.tags.iter().any(|t| t.key == tags::SUSPENDED));
    }

    #[test]
    fn refuses_what_it_cannot_copy() {
        let mut live = live_config();
        live.launch = FleetLaunch::LaunchConfiguration { name: "old".into() };
        let err = plan_and_twin(&live).unwrap_err();
        assert!(
            err.to_string().contains("launch configuration old"),
            "{err}"
        );

        live.launch = FleetLaunch::Mixed(MixedInstances {
            template: LaunchTemplateRef {
                id: "lt-1".into(),
                version: "1".into(),
            },
            overrides: vec![InstanceOverride {
                instance_type: Some("m5.large".into()),
                weighted_capacity: None,
                launch_template: Some(LaunchTemplateRef {
                    id: "lt-2".into(),
                    version: "1".into(),
                }),
                has_instance_requirements: false,
            }],
            distribution: None,
        });
        assert!(plan_and_twin(&live).is_err());
    }

    #[test]
    fn mixed_instances_keep_overrides_and_get_the_new_version() {
        let mut live = live_config();
        let mixed = MixedInstances {
            template: LaunchTemplateRef {
                id: "lt-1".into(),
                version: "$Latest".into(),
            },
            overrides: vec![InstanceOverride {
                instance_type: Some("m5.large".into()),
                weighted_capacity: Some("2".into()),
                launch_template: None,
                has_instance_requirements: false,
            }],
            distribution: Some(InstancesDistribution {
                on_demand_base_capacity: Some(1),
                ..Default::default()
            }),
        };
        live.launch = FleetLaunch::Mixed(mixed.clone());
        let green = plan_and_twin(&live).unwrap().config;
        let FleetLaunch::Mixed(green_mixed) = green.launch else {
            panic!("not mixed")
        };
        assert_eq!(green_mixed.template.version, "7");
        assert_eq!(green_mixed.overrides, mixed.overrides);
        assert_eq!(green_mixed.distribution, mixed.distribution);
    }
}
