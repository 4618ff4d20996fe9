//! Auto Scaling shapes ⇄ greenlight's fleet types. No I/O: requests are built here and sent by
//! the caller.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use aws_sdk_autoscaling::operation::create_auto_scaling_group::builders::CreateAutoScalingGroupFluentBuilder;
use aws_sdk_autoscaling::operation::put_scaling_policy::builders::PutScalingPolicyFluentBuilder;
use aws_sdk_autoscaling::operation::put_scheduled_update_group_action::builders::PutScheduledUpdateGroupActionFluentBuilder;
use aws_sdk_autoscaling::primitives::DateTime;
use aws_sdk_autoscaling::types as sdk;

use super::{
    CREATE_AUTO_SCALING_GROUP, DESCRIBE_AUTO_SCALING_GROUPS, DESCRIBE_LIFECYCLE_HOOKS,
    DESCRIBE_POLICIES, DESCRIBE_SCHEDULED_ACTIONS, PUT_SCALING_POLICY,
};
use crate::aws::error::missing;
use crate::core::cloud::{CloudError, CloudErrorKind, CloudResult};
use crate::core::fleet::{
    Capacity, CustomizedMetric, FleetConfig, FleetInstance, FleetLaunch, FleetSummary, FleetTag,
    InstanceOverride, InstancesDistribution, LaunchTemplateRef, LifecycleHook, MaintenancePolicy,
    MetricDimension, MetricsCollection, MixedInstances, ScalingPolicy, ScheduledAction,
    StepAdjustment, TargetTracking,
};
use crate::core::names::{FleetName, TargetGroupArn};

/// What AWS launches when a group names a template without a version.
const DEFAULT_VERSION: &str = "$Default";
/// The `Status` of a group whose deletion is under way.
const DELETE_IN_PROGRESS: &str = "Delete in progress";
/// AWS reserves tag keys with this prefix; a request carrying one is refused.
const AWS_TAG_PREFIX: &str = "aws:";
pub(super) const GROUP_RESOURCE_TYPE: &str = "auto-scaling-group";
/// PutScalingPolicy's default when a policy does not say.
const SIMPLE_SCALING: &str = "SimpleScaling";
const PREDICTIVE_SCALING: &str = "PredictiveScaling";

const A_GROUP: &str = "an Auto Scaling group";

pub(super) fn group_name(group: &sdk::AutoScalingGroup) -> CloudResult<&str> {
    group.auto_scaling_group_name().ok_or_else(|| {
        missing(
            DESCRIBE_AUTO_SCALING_GROUPS,
            A_GROUP,
            "AutoScalingGroupName",
        )
    })
}

fn capacity(group: &sdk::AutoScalingGroup) -> CloudResult<Capacity> {
    let op = DESCRIBE_AUTO_SCALING_GROUPS;
    let count = |value: Option<i32>, field: &str| -> CloudResult<u32> {
        let value = value.ok_or_else(|| missing(op, A_GROUP, field))?;
        u32::try_from(value).map_err(|_| {
            CloudError::new(
                CloudErrorKind::Other,
                op,
                format!("AWS returned {field} {value} for a group"),
            )
        })
    };
    Ok(Capacity {
        min: count(group.min_size(), "MinSize")?,
        max: count(group.max_size(), "MaxSize")?,
        desired: count(group.desired_capacity(), "DesiredCapacity")?,
    })
}

fn target_groups(operation: &str, arns: &[String]) -> CloudResult<Vec<TargetGroupArn>> {
    arns.iter()
        .map(|arn| {
            TargetGroupArn::parse(arn)
                .map_err(|e| CloudError::new(CloudErrorKind::Other, operation, e.0))
        })
        .collect()
}

pub(super) fn summary(group: &sdk::AutoScalingGroup) -> CloudResult<FleetSummary> {
    let op = DESCRIBE_AUTO_SCALING_GROUPS;
    let instances = group
        .instances()
        .iter()
        .map(|i| {
            Ok(FleetInstance {
                id: i
                    .instance_id()
                    .ok_or_else(|| missing(op, "an instance", "InstanceId"))?
                    .to_owned(),
                lifecycle_state: i
                    .lifecycle_state()
                    .ok_or_else(|| missing(op, "an instance", "LifecycleState"))?
                    .as_str()
                    .to_owned(),
                health_status: i
                    .health_status()
                    .ok_or_else(|| missing(op, "an instance", "HealthStatus"))?
                    .to_owned(),
            })
        })
        .collect::<CloudResult<Vec<_>>>()?;
    let tags = fleet_tags(group.tags())?
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect::<BTreeMap<_, _>>();
    let spec = group.launch_template().or_else(|| {
        group
            .mixed_instances_policy()
            .and_then(|m| m.launch_template())
            .and_then(|t| t.launch_template_specification())
    });
    let launch_template = spec.and_then(|spec| {
        spec.launch_template_id().map(|id| LaunchTemplateRef {
            id: id.to_owned(),
            version: spec.version().unwrap_or(DEFAULT_VERSION).to_owned(),
        })
    });
    Ok(FleetSummary {
        launch_template,
        name: FleetName::new(group_name(group)?),
        capacity: capacity(group)?,
        instances,
        tags,
        target_groups: target_groups(op, group.target_group_arns())?,
        suspended_processes: group
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_owned))
            .collect(),
        deleting: group.status() == Some(DELETE_IN_PROGRESS),
    })
}

fn fleet_tags(tags: &[sdk::TagDescription]) -> CloudResult<Vec<FleetTag>> {
    tags.iter()
        .map(|t| {
            Ok(FleetTag {
                key: t
                    .key()
                    .ok_or_else(|| missing(DESCRIBE_AUTO_SCALING_GROUPS, "a tag", "Key"))?
                    .to_owned(),
                value: t.value().unwrap_or_default().to_owned(),
                propagate_at_launch: t.propagate_at_launch().unwrap_or(false),
            })
        })
        .collect()
}

/// Every launch template the group names by name rather than id; the caller resolves them.
pub(super) fn template_names(group: &sdk::AutoScalingGroup) -> Vec<String> {
    let mut specs: Vec<&sdk::LaunchTemplateSpecification> = Vec::new();
    specs.extend(group.launch_template());
    if let Some(template) = group
        .mixed_instances_policy()
        .and_then(|m| m.launch_template())
    {
        specs.extend(template.launch_template_specification());
        specs.extend(
            template
                .overrides()
                .iter()
                .filter_map(|o| o.launch_template_specification()),
        );
    }
    let mut names: Vec<String> = specs
        .into_iter()
        .filter(|s| s.launch_template_id().is_none())
        .filter_map(|s| s.launch_template_name().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Template ids by name, for the templates [`template_names`] listed.
pub(super) type TemplateIds = HashMap<String, String>;

fn template_ref(
    spec: &sdk::LaunchTemplateSpecification,
    ids: &TemplateIds,
) -> CloudResult<LaunchTemplateRef> {
    let id = match (spec.launch_template_id(), spec.launch_template_name()) {
        (Some(id), _) => id.to_owned(),
        (None, Some(name)) => ids.get(name).cloned().ok_or_else(|| {
            CloudError::new(
                CloudErrorKind::NotFound,
                "DescribeLaunchTemplates",
                format!("launch template {name:?} not found"),
            )
        })?,
        (None, None) => {
            return Err(missing(
                DESCRIBE_AUTO_SCALING_GROUPS,
                "a launch template",
                "LaunchTemplateId",
            ));
        }
    };
    Ok(LaunchTemplateRef {
        id,
        version: spec.version().unwrap_or(DEFAULT_VERSION).to_owned(),
    })
}

fn launch(group: &sdk::AutoScalingGroup, ids: &TemplateIds) -> CloudResult<FleetLaunch> {
    let op = DESCRIBE_AUTO_SCALING_GROUPS;
    if let Some(spec) = group.launch_template() {
        return Ok(FleetLaunch::Template(template_ref(spec, ids)?));
    }
    if let Some(mixed) = group.mixed_instances_policy() {
        let template = mixed
            .launch_template()
            .ok_or_else(|| missing(op, "a mixed instances policy", "LaunchTemplate"))?;
        let spec = template.launch_template_specification().ok_or_else(|| {
            missing(
                op,
                "a mixed instances policy",
                "LaunchTemplateSpecification",
            )
        })?;
        let overrides = template
            .overrides()
            .iter()
            .map(|o| {
                Ok(InstanceOverride {
                    instance_type: o.instance_type().map(str::to_owned),
                    weighted_capacity: o.weighted_capacity().map(str::to_owned),
                    launch_template: o
                        .launch_template_specification()
                        .map(|s| template_ref(s, ids))
                        .transpose()?,
                    has_instance_requirements: o.instance_requirements().is_some(),
                })
            })
            .collect::<CloudResult<Vec<_>>>()?;
        let distribution = mixed
            .instances_distribution()
            .map(|d| InstancesDistribution {
                on_demand_allocation_strategy: d.on_demand_allocation_strategy().map(str::to_owned),
                on_demand_base_capacity: d.on_demand_base_capacity(),
                on_demand_percentage_above_base_capacity: d
                    .on_demand_percentage_above_base_capacity(),
                spot_allocation_strategy: d.spot_allocation_strategy().map(str::to_owned),
                spot_instance_pools: d.spot_instance_pools(),
                spot_max_price: d.spot_max_price().map(str::to_owned),
            });
        return Ok(FleetLaunch::Mixed(MixedInstances {
            template: template_ref(spec, ids)?,
            overrides,
            distribution,
        }));
    }
    if let Some(name) = group.launch_configuration_name() {
        return Ok(FleetLaunch::LaunchConfiguration {
            name: name.to_owned(),
        });
    }
    Err(missing(
        op,
        A_GROUP,
        "LaunchTemplate, MixedInstancesPolicy or LaunchConfigurationName",
    ))
}

/// The full configuration from the group and the three lists described alongside it.
pub(super) fn fleet_config(
    group: &sdk::AutoScalingGroup,
    ids: &TemplateIds,
    hooks: &[sdk::LifecycleHook],
    policies: &[sdk::ScalingPolicy],
    actions: &[sdk::ScheduledUpdateGroupAction],
) -> CloudResult<FleetConfig> {
    let op = DESCRIBE_AUTO_SCALING_GROUPS;
    let subnets = group
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let enabled = group.enabled_metrics();
    let metrics = match enabled.first() {
        None => None,
        Some(first) => Some(MetricsCollection {
            granularity: first
                .granularity()
                .ok_or_else(|| missing(op, "an enabled metric", "Granularity"))?
                .to_owned(),
            metrics: enabled
                .iter()
                .map(|m| {
                    m.metric()
                        .map(str::to_owned)
                        .ok_or_else(|| missing(op, "an enabled metric", "Metric"))
                })
                .collect::<CloudResult<_>>()?,
        }),
    };
    Ok(FleetConfig {
        launch: launch(group, ids)?,
        capacity: capacity(group)?,
        subnets,
        availability_zones: group.availability_zones().to_vec(),
        health_check_type: group.health_check_type().map(str::to_owned),
        health_check_grace_period: group.health_check_grace_period(),
        default_cooldown: group.default_cooldown(),
        termination_policies: group.termination_policies().to_vec(),
        default_instance_warmup: group.default_instance_warmup(),
        capacity_rebalance: group.capacity_rebalance(),
        max_instance_lifetime: group.max_instance_lifetime(),
        instance_maintenance_policy: group.instance_maintenance_policy().map(|p| {
            MaintenancePolicy {
                min_healthy_percentage: p.min_healthy_percentage(),
                max_healthy_percentage: p.max_healthy_percentage(),
            }
        }),
        new_instances_protected_from_scale_in: group.new_instances_protected_from_scale_in(),
        placement_group: group.placement_group().map(str::to_owned),
        service_linked_role_arn: group.service_linked_role_arn().map(str::to_owned),
        desired_capacity_type: group.desired_capacity_type().map(str::to_owned),
        lifecycle_hooks: hooks
            .iter()
            .map(lifecycle_hook)
            .collect::<CloudResult<_>>()?,
        scaling_policies: policies
            .iter()
            .map(scaling_policy)
            .collect::<CloudResult<_>>()?,
        scheduled_actions: actions
            .iter()
            .map(scheduled_action)
            .collect::<CloudResult<_>>()?,
        metrics,
        suspended_processes: group
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_owned))
            .collect(),
        tags: fleet_tags(group.tags())?,
        target_groups: target_groups(op, group.target_group_arns())?,
        has_warm_pool: group.warm_pool_configuration().is_some(),
    })
}

fn lifecycle_hook(hook: &sdk::LifecycleHook) -> CloudResult<LifecycleHook> {
    let op = DESCRIBE_LIFECYCLE_HOOKS;
    Ok(LifecycleHook {
        name: hook
            .lifecycle_hook_name()
            .ok_or_else(|| missing(op, "a lifecycle hook", "LifecycleHookName"))?
            .to_owned(),
        transition: hook
            .lifecycle_transition()
            .ok_or_else(|| missing(op, "a lifecycle hook", "LifecycleTransition"))?
            .to_owned(),
        heartbeat_timeout: hook.heartbeat_timeout(),
        default_result: hook.default_result().map(str::to_owned),
        notification_target_arn: hook.notification_target_arn().map(str::to_owned),
        role_arn: hook.role_arn().map(str::to_owned),
        notification_metadata: hook.notification_metadata().map(str::to_owned),
    })
}

fn scaling_policy(policy: &sdk::ScalingPolicy) -> CloudResult<ScalingPolicy> {
    let op = DESCRIBE_POLICIES;
    let step_adjustments = policy
        .step_adjustments()
        .iter()
        .map(|s| {
            Ok(StepAdjustment {
                lower_bound: s.metric_interval_lower_bound(),
                upper_bound: s.metric_interval_upper_bound(),
                scaling_adjustment: s
                    .scaling_adjustment()
                    .ok_or_else(|| missing(op, "a step adjustment", "ScalingAdjustment"))?,
            })
        })
        .collect::<CloudResult<Vec<_>>>()?;
    let customized = policy
        .target_tracking_configuration()
        .and_then(|t| t.customized_metric_specification());
    let has_metric_math = customized.is_some_and(|c| !c.metrics().is_empty());
    let target_tracking = policy
        .target_tracking_configuration()
        .map(|t| {
            Ok(TargetTracking {
                predefined_metric_type: t
                    .predefined_metric_specification()
                    .and_then(|p| p.predefined_metric_type())
                    .map(|m| m.as_str().to_owned()),
                resource_label: t
                    .predefined_metric_specification()
                    .and_then(|p| p.resource_label())
                    .map(str::to_owned),
                customized_metric: match t.customized_metric_specification() {
                    Some(c) if c.metrics().is_empty() => Some(customized_metric(c)?),
                    _ => None,
                },
                target_value: t
                    .target_value()
                    .ok_or_else(|| missing(op, "a target tracking policy", "TargetValue"))?,
                disable_scale_in: t.disable_scale_in(),
            })
        })
        .transpose()?;
    Ok(ScalingPolicy {
        name: policy
            .policy_name()
            .ok_or_else(|| missing(op, "a scaling policy", "PolicyName"))?
            .to_owned(),
        policy_type: policy.policy_type().unwrap_or(SIMPLE_SCALING).to_owned(),
        enabled: policy.enabled(),
        adjustment_type: policy.adjustment_type().map(str::to_owned),
        min_adjustment_magnitude: policy.min_adjustment_magnitude(),
        scaling_adjustment: policy.scaling_adjustment(),
        cooldown: policy.cooldown(),
        metric_aggregation_type: policy.metric_aggregation_type().map(str::to_owned),
        estimated_instance_warmup: policy.estimated_instance_warmup(),
        step_adjustments,
        target_tracking,
        has_metric_math,
    })
}

fn customized_metric(spec: &sdk::CustomizedMetricSpecification) -> CloudResult<CustomizedMetric> {
    let op = DESCRIBE_POLICIES;
    let what = "a customized metric";
    Ok(CustomizedMetric {
        metric_name: spec
            .metric_name()
            .ok_or_else(|| missing(op, what, "MetricName"))?
            .to_owned(),
        namespace: spec
            .namespace()
            .ok_or_else(|| missing(op, what, "Namespace"))?
            .to_owned(),
        statistic: spec
            .statistic()
            .ok_or_else(|| missing(op, what, "Statistic"))?
            .as_str()
            .to_owned(),
        unit: spec.unit().map(str::to_owned),
        dimensions: spec
            .dimensions()
            .iter()
            .map(|d| {
                Ok(MetricDimension {
                    name: d
                        .name()
                        .ok_or_else(|| missing(op, "a dimension", "Name"))?
                        .to_owned(),
                    value: d
                        .value()
                        .ok_or_else(|| missing(op, "a dimension", "Value"))?
                        .to_owned(),
                })
            })
            .collect::<CloudResult<_>>()?,
    })
}

fn scheduled_action(action: &sdk::ScheduledUpdateGroupAction) -> CloudResult<ScheduledAction> {
    let op = DESCRIBE_SCHEDULED_ACTIONS;
    let time = |t: Option<&DateTime>| -> CloudResult<Option<SystemTime>> {
        t.map(|t| {
            SystemTime::try_from(*t).map_err(|_| {
                CloudError::new(
                    CloudErrorKind::Other,
                    op,
                    format!("AWS returned a time out of range: {t}"),
                )
            })
        })
        .transpose()
    };
    Ok(ScheduledAction {
        name: action
            .scheduled_action_name()
            .ok_or_else(|| missing(op, "a scheduled action", "ScheduledActionName"))?
            .to_owned(),
        recurrence: action.recurrence().map(str::to_owned),
        start_time: time(action.start_time())?,
        end_time: time(action.end_time())?,
        min: action.min_size(),
        max: action.max_size(),
        desired: action.desired_capacity(),
        time_zone: action.time_zone().map(str::to_owned),
    })
}

fn launch_spec(template: &LaunchTemplateRef) -> sdk::LaunchTemplateSpecification {
    sdk::LaunchTemplateSpecification::builder()
        .launch_template_id(&template.id)
        .version(&template.version)
        .build()
}

fn mixed_policy(mixed: &MixedInstances) -> CloudResult<sdk::MixedInstancesPolicy> {
    let overrides = mixed
        .overrides
        .iter()
        .map(|o| {
            if o.has_instance_requirements {
                return Err(CloudError::new(
                    CloudErrorKind::InvalidRequest,
                    CREATE_AUTO_SCALING_GROUP,
                    "cannot copy an override with attribute-based instance requirements",
                ));
            }
            Ok(sdk::LaunchTemplateOverrides::builder()
                .set_instance_type(o.instance_type.clone())
                .set_weighted_capacity(o.weighted_capacity.clone())
                .set_launch_template_specification(o.launch_template.as_ref().map(launch_spec))
                .build())
        })
        .collect::<CloudResult<Vec<_>>>()?;
    let distribution = mixed.distribution.as_ref().map(|d| {
        sdk::InstancesDistribution::builder()
            .set_on_demand_allocation_strategy(d.on_demand_allocation_strategy.clone())
            .set_on_demand_base_capacity(d.on_demand_base_capacity)
            .set_on_demand_percentage_above_base_capacity(
                d.on_demand_percentage_above_base_capacity,
            )
            .set_spot_allocation_strategy(d.spot_allocation_strategy.clone())
            .set_spot_instance_pools(d.spot_instance_pools)
            .set_spot_max_price(d.spot_max_price.clone())
            .build()
    });
    Ok(sdk::MixedInstancesPolicy::builder()
        .launch_template(
            sdk::LaunchTemplate::builder()
                .launch_template_specification(launch_spec(&mixed.template))
                .set_overrides((!overrides.is_empty()).then_some(overrides))
                .build(),
        )
        .set_instances_distribution(distribution)
        .build())
}

/// Group tags as CreateAutoScalingGroup and CreateOrUpdateTags take them.
pub(super) fn group_tag(name: &FleetName, key: &str, value: &str, propagate: bool) -> sdk::Tag {
    sdk::Tag::builder()
        .resource_id(name.as_str())
        .resource_type(GROUP_RESOURCE_TYPE)
        .key(key)
        .value(value)
        .propagate_at_launch(propagate)
        .build()
}

fn count(operation: &str, field: &str, value: u32) -> CloudResult<i32> {
    i32::try_from(value).map_err(|_| {
        CloudError::new(
            CloudErrorKind::InvalidRequest,
            operation,
            format!("{field} {value} is too large"),
        )
    })
}

/// Min, max and desired as Auto Scaling takes them.
pub(super) fn sizes(operation: &str, capacity: Capacity) -> CloudResult<(i32, i32, i32)> {
    Ok((
        count(operation, "MinSize", capacity.min)?,
        count(operation, "MaxSize", capacity.max)?,
        count(operation, "DesiredCapacity", capacity.desired)?,
    ))
}

/// Everything of `config` that CreateAutoScalingGroup accepts, on `request`.
pub(super) fn create_request(
    request: CreateAutoScalingGroupFluentBuilder,
    name: &FleetName,
    config: &FleetConfig,
) -> CloudResult<CreateAutoScalingGroupFluentBuilder> {
    let op = CREATE_AUTO_SCALING_GROUP;
    let request = match &config.launch {
        FleetLaunch::Template(template) => request.launch_template(launch_spec(template)),
        FleetLaunch::Mixed(mixed) => request.mixed_instances_policy(mixed_policy(mixed)?),
        FleetLaunch::LaunchConfiguration { name } => request.launch_configuration_name(name),
    };
    let (min, max, desired) = sizes(op, config.capacity)?;
    let request = if config.subnets.is_empty() {
        request.set_availability_zones(Some(config.availability_zones.clone()))
    } else {
        request.vpc_zone_identifier(config.subnets.join(","))
    };
    let hooks: Vec<sdk::LifecycleHookSpecification> = config
        .lifecycle_hooks
        .iter()
        .map(|h| {
            sdk::LifecycleHookSpecification::builder()
                .lifecycle_hook_name(&h.name)
                .lifecycle_transition(&h.transition)
                .set_heartbeat_timeout(h.heartbeat_timeout)
                .set_default_result(h.default_result.clone())
                .set_notification_target_arn(h.notification_target_arn.clone())
                .set_role_arn(h.role_arn.clone())
                .set_notification_metadata(h.notification_metadata.clone())
                .build()
        })
        .collect();
    let tags: Vec<sdk::Tag> = config
        .tags
        .iter()
        .filter(|t| !t.key.starts_with(AWS_TAG_PREFIX))
        .map(|t| group_tag(name, &t.key, &t.value, t.propagate_at_launch))
        .collect();
    let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    Ok(request
        .auto_scaling_group_name(name.as_str())
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .set_health_check_type(config.health_check_type.clone())
        .set_health_check_grace_period(config.health_check_grace_period)
        .set_default_cooldown(config.default_cooldown)
        .set_termination_policies(non_empty(config.termination_policies.clone()))
        .set_default_instance_warmup(config.default_instance_warmup)
        .set_capacity_rebalance(config.capacity_rebalance)
        .set_max_instance_lifetime(config.max_instance_lifetime)
        .set_instance_maintenance_policy(config.instance_maintenance_policy.as_ref().map(|p| {
            sdk::InstanceMaintenancePolicy::builder()
                .set_min_healthy_percentage(p.min_healthy_percentage)
                .set_max_healthy_percentage(p.max_healthy_percentage)
                .build()
        }))
        .set_new_instances_protected_from_scale_in(config.new_instances_protected_from_scale_in)
        .set_placement_group(config.placement_group.clone())
        .set_service_linked_role_arn(config.service_linked_role_arn.clone())
        .set_desired_capacity_type(config.desired_capacity_type.clone())
        .set_lifecycle_hook_specification_list((!hooks.is_empty()).then_some(hooks))
        .set_tags((!tags.is_empty()).then_some(tags))
        .set_target_group_arns(non_empty(
            config
                .target_groups
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
        )))
}

/// Whether a policy is one PutScalingPolicy can recreate from what greenlight reads.
pub(super) fn copyable(policy: &ScalingPolicy) -> CloudResult<bool> {
    if policy.policy_type == PREDICTIVE_SCALING {
        return Ok(false);
    }
    if policy.has_metric_math {
        return Err(CloudError::new(
            CloudErrorKind::InvalidRequest,
            PUT_SCALING_POLICY,
            format!(
                "cannot copy scaling policy {:?}: its target tracking metric uses metric math",
                policy.name
            ),
        ));
    }
    Ok(true)
}

pub(super) fn put_policy_request(
    request: PutScalingPolicyFluentBuilder,
    group: &FleetName,
    policy: &ScalingPolicy,
) -> PutScalingPolicyFluentBuilder {
    let steps: Vec<sdk::StepAdjustment> = policy
        .step_adjustments
        .iter()
        .map(|s| {
            sdk::StepAdjustment::builder()
                .set_metric_interval_lower_bound(s.lower_bound)
                .set_metric_interval_upper_bound(s.upper_bound)
                .scaling_adjustment(s.scaling_adjustment)
                .build()
        })
        .collect();
    let tracking = policy.target_tracking.as_ref().map(|t| {
        let predefined = t.predefined_metric_type.as_ref().map(|m| {
            sdk::PredefinedMetricSpecification::builder()
                .predefined_metric_type(sdk::MetricType::from(m.as_str()))
                .set_resource_label(t.resource_label.clone())
                .build()
        });
        let customized = t.customized_metric.as_ref().map(|c| {
            sdk::CustomizedMetricSpecification::builder()
                .metric_name(&c.metric_name)
                .namespace(&c.namespace)
                .statistic(sdk::MetricStatistic::from(c.statistic.as_str()))
                .set_unit(c.unit.clone())
                .set_dimensions(Some(
                    c.dimensions
                        .iter()
                        .map(|d| {
                            sdk::MetricDimension::builder()
                                .name(&d.name)
                                .value(&d.value)
                                .build()
                        })
                        .collect(),
                ))
                .build()
        });
        sdk::TargetTrackingConfiguration::builder()
            .set_predefined_metric_specification(predefined)
            .set_customized_metric_specification(customized)
            .target_value(t.target_value)
            .set_disable_scale_in(t.disable_scale_in)
            .build()
    });
    request
        .auto_scaling_group_name(group.as_str())
        .policy_name(&policy.name)
        .policy_type(&policy.policy_type)
        .set_enabled(policy.enabled)
        .set_adjustment_type(policy.adjustment_type.clone())
        .set_min_adjustment_magnitude(policy.min_adjustment_magnitude)
        .set_scaling_adjustment(policy.scaling_adjustment)
        .set_cooldown(policy.cooldown)
        .set_metric_aggregation_type(policy.metric_aggregation_type.clone())
        .set_estimated_instance_warmup(policy.estimated_instance_warmup)
        .set_step_adjustments((!steps.is_empty()).then_some(steps))
        .set_target_tracking_configuration(tracking)
}

/// A recurring action reads back with its next run as StartTime; AWS refuses a StartTime in
/// the past, so one that has passed is left out and the recurrence alone decides.
pub(super) fn scheduled_request(
    request: PutScheduledUpdateGroupActionFluentBuilder,
    group: &FleetName,
    action: &ScheduledAction,
    now: SystemTime,
) -> PutScheduledUpdateGroupActionFluentBuilder {
    let start = action
        .start_time
        .filter(|start| action.recurrence.is_none() || *start > now);
    request
        .auto_scaling_group_name(group.as_str())
        .scheduled_action_name(&action.name)
        .set_recurrence(action.recurrence.clone())
        .set_start_time(start.map(DateTime::from))
        .set_end_time(action.end_time.map(DateTime::from))
        .set_min_size(action.min)
        .set_max_size(action.max)
        .set_desired_capacity(action.desired)
        .set_time_zone(action.time_zone.clone())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_autoscaling::config::{BehaviorVersion, Region};
    use aws_sdk_autoscaling::{Client, Config};

    use super::*;

    fn client() -> Client {
        Client::from_conf(
            Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        )
    }

    fn by_name(name: &str, version: Option<&str>) -> sdk::LaunchTemplateSpecification {
        sdk::LaunchTemplateSpecification::builder()
            .launch_template_name(name)
            .set_version(version.map(str::to_owned))
            .build()
    }

    fn group() -> sdk::builders::AutoScalingGroupBuilder {
        sdk::AutoScalingGroup::builder()
            .auto_scaling_group_name("checkout-v1")
            .min_size(1)
            .max_size(4)
            .desired_capacity(2)
    }

    #[test]
    fn templates_named_by_name_resolve_to_ids_and_default_version() {
        let mixed = sdk::MixedInstancesPolicy::builder()
            .launch_template(
                sdk::LaunchTemplate::builder()
                    .launch_template_specification(by_name("web", None))
                    .overrides(
                        sdk::LaunchTemplateOverrides::builder()
                            .instance_type("m6g.large")
                            .launch_template_specification(by_name("web-arm", Some("3")))
                            .build(),
                    )
                    .overrides(
                        sdk::LaunchTemplateOverrides::builder()
                            .instance_requirements(sdk::InstanceRequirements::builder().build())
                            .build(),
                    )
                    .build(),
            )
            .build();
        let group = group().mixed_instances_policy(mixed).build();
        assert_eq!(template_names(&group), ["web", "web-arm"]);
        let ids: TemplateIds = [("web", "lt-1"), ("web-arm", "lt-2")]
            .into_iter()
            .map(|(n, i)| (n.to_owned(), i.to_owned()))
            .collect();
        let FleetLaunch::Mixed(mixed) = launch(&group, &ids).unwrap() else {
            panic!("expected mixed instances");
        };
        assert_eq!(
            mixed.template,
            LaunchTemplateRef {
                id: "lt-1".into(),
                version: "$Default".into()
            }
        );
        assert_eq!(
            mixed.overrides[0].launch_template,
            Some(LaunchTemplateRef {
                id: "lt-2".into(),
                version: "3".into()
            })
        );
        assert!(mixed.overrides[1].has_instance_requirements);
        assert_eq!(mixed.distribution, None);
    }

    #[test]
    fn a_group_without_capacity_is_an_error_not_a_panic() {
        let group = sdk::AutoScalingGroup::builder()
            .auto_scaling_group_name("x")
            .build();
        let err = summary(&group).unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::Other);
        assert_eq!(err.operation, DESCRIBE_AUTO_SCALING_GROUPS);
        assert!(err.message.contains("MinSize"), "{}", err.message);
    }

    #[test]
    fn summary_reads_deleting_and_tags() {
        let group = group()
            .status("Delete in progress")
            .tags(
                sdk::TagDescription::builder()
                    .key("aws:cloudformation:stack-name")
                    .value("s")
                    .build(),
            )
            .instances(
                sdk::Instance::builder()
                    .instance_id("i-1")
                    .lifecycle_state(sdk::LifecycleState::Pending)
                    .health_status("Healthy")
                    .build(),
            )
            .build();
        let fleet = summary(&group).unwrap();
        assert!(fleet.deleting);
        assert_eq!(fleet.instances[0].lifecycle_state, "Pending");
        assert_eq!(
            fleet
                .tags
                .get("aws:cloudformation:stack-name")
                .map(String::as_str),
            Some("s")
        );
    }

    #[test]
    fn metric_math_is_flagged_and_refused() {
        let policy = sdk::ScalingPolicy::builder()
            .policy_name("math")
            .policy_type("TargetTrackingScaling")
            .target_tracking_configuration(
                sdk::TargetTrackingConfiguration::builder()
                    .customized_metric_specification(
                        sdk::CustomizedMetricSpecification::builder()
                            .metrics(
                                sdk::TargetTrackingMetricDataQuery::builder()
                                    .id("m1")
                                    .expression("a / b")
                                    .build(),
                            )
                            .build(),
                    )
                    .target_value(50.0)
                    .build(),
            )
            .build();
        let policy = scaling_policy(&policy).unwrap();
        assert!(policy.has_metric_math);
        assert_eq!(
            policy.target_tracking.as_ref().unwrap().customized_metric,
            None
        );
        assert_eq!(
            copyable(&policy).unwrap_err().kind,
            CloudErrorKind::InvalidRequest
        );
        let predictive = ScalingPolicy {
            policy_type: PREDICTIVE_SCALING.into(),
            has_metric_math: false,
            ..policy
        };
        assert!(!copyable(&predictive).unwrap());
    }

    #[test]
    fn customized_metric_round_trips_into_the_request() {
        let read = sdk::ScalingPolicy::builder()
            .policy_name("queue")
            .policy_type("TargetTrackingScaling")
            .target_tracking_configuration(
                sdk::TargetTrackingConfiguration::builder()
                    .customized_metric_specification(
                        sdk::CustomizedMetricSpecification::builder()
                            .metric_name("Backlog")
                            .namespace("Checkout")
                            .statistic(sdk::MetricStatistic::Average)
                            .dimensions(
                                sdk::MetricDimension::builder()
                                    .name("Queue")
                                    .value("orders")
                                    .build(),
                            )
                            .build(),
                    )
                    .target_value(10.0)
                    .build(),
            )
            .build();
        let policy = scaling_policy(&read).unwrap();
        let request = put_policy_request(
            client().put_scaling_policy(),
            &FleetName::new("copy"),
            &policy,
        );
        let input = request.as_input();
        assert_eq!(input.get_auto_scaling_group_name().as_deref(), Some("copy"));
        assert_eq!(
            input.get_target_tracking_configuration().as_ref(),
            read.target_tracking_configuration()
        );
    }

    #[test]
    fn a_passed_start_time_of_a_recurring_action_is_left_out() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let action = |recurrence: Option<&str>, start: u64| ScheduledAction {
            name: "nightly".into(),
            recurrence: recurrence.map(str::to_owned),
            start_time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(start)),
            end_time: None,
            min: None,
            max: None,
            desired: Some(1),
            time_zone: None,
        };
        let start_sent = |a: &ScheduledAction| {
            scheduled_request(
                client().put_scheduled_update_group_action(),
                &FleetName::new("copy"),
                a,
                now,
            )
            .as_input()
            .get_start_time()
            .is_some()
        };
        assert!(!start_sent(&action(Some("0 22 * * *"), 1_999_999_000)));
        assert!(start_sent(&action(Some("0 22 * * *"), 2_000_001_000)));
        assert!(start_sent(&action(None, 2_000_001_000)));
    }
}
