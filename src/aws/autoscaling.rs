//! Auto Scaling: reading fleets and their configuration, creating and changing them.

mod convert;

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter, Tag};

use super::ec2::Ec2;
use super::error::Endpoint;
use crate::core::cloud::{CloudError, CloudErrorKind, CloudResult};
use crate::core::fleet::{Capacity, FleetConfig, FleetSummary};
use crate::core::names::{FleetName, ServiceName, TargetGroupArn};
use crate::core::tags;

const DESCRIBE_AUTO_SCALING_GROUPS: &str = "DescribeAutoScalingGroups";
const DESCRIBE_LIFECYCLE_HOOKS: &str = "DescribeLifecycleHooks";
const DESCRIBE_POLICIES: &str = "DescribePolicies";
const DESCRIBE_SCHEDULED_ACTIONS: &str = "DescribeScheduledActions";
const CREATE_AUTO_SCALING_GROUP: &str = "CreateAutoScalingGroup";
const PUT_SCALING_POLICY: &str = "PutScalingPolicy";
const PUT_SCHEDULED_UPDATE_GROUP_ACTION: &str = "PutScheduledUpdateGroupAction";
const ENABLE_METRICS_COLLECTION: &str = "EnableMetricsCollection";
const SUSPEND_PROCESSES: &str = "SuspendProcesses";
const RESUME_PROCESSES: &str = "ResumeProcesses";
const UPDATE_AUTO_SCALING_GROUP: &str = "UpdateAutoScalingGroup";
const CREATE_OR_UPDATE_TAGS: &str = "CreateOrUpdateTags";
const DELETE_TAGS: &str = "DeleteTags";
const DELETE_AUTO_SCALING_GROUP: &str = "DeleteAutoScalingGroup";

/// The most groups DescribeAutoScalingGroups returns per page.
const MAX_RECORDS: i32 = 100;

pub(crate) struct AutoScaling {
    client: Client,
    endpoint: Endpoint,
}

impl AutoScaling {
    pub(crate) fn new(conf: &SdkConfig) -> AutoScaling {
        AutoScaling {
            // Every call logged at -vv (src/aws/trace.rs).
            client: Client::from_conf(
                aws_sdk_autoscaling::config::Builder::from(conf)
                    .interceptor(super::trace::CallLog)
                    .build(),
            ),
            endpoint: Endpoint::new(
                "Auto Scaling",
                conf.endpoint_url(),
                conf.region().map(|r| r.as_ref()),
            ),
        }
    }

    pub(crate) async fn fleets(
        &self,
        target_groups: &[TargetGroupArn],
    ) -> CloudResult<Vec<FleetSummary>> {
        if target_groups.is_empty() {
            return Ok(Vec::new());
        }
        // Auto Scaling cannot filter by target group, so every group is read and sifted here.
        let mut pages = self
            .client
            .describe_auto_scaling_groups()
            .max_records(MAX_RECORDS)
            .into_paginator()
            .send();
        let mut fleets = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.endpoint.on(DESCRIBE_AUTO_SCALING_GROUPS))?;
            for group in page.auto_scaling_groups() {
                let attached = group
                    .target_group_arns()
                    .iter()
                    .any(|arn| target_groups.iter().any(|t| t.as_str() == arn));
                if attached {
                    fleets.push(convert::summary(group)?);
                }
            }
        }
        Ok(fleets)
    }

    /// Every group tagged `greenlight:service` (with `service` as its value, when given): the
    /// filter is applied by Auto Scaling, every page is read, and the tag is checked again here
    /// so a filter an endpoint ignores cannot bring in another service's groups.
    pub(crate) async fn tagged_fleets(
        &self,
        service: Option<&ServiceName>,
    ) -> CloudResult<Vec<FleetSummary>> {
        let filter = match service {
            Some(service) => Filter::builder()
                .name(format!("tag:{}", tags::SERVICE))
                .values(service.as_str()),
            None => Filter::builder().name("tag-key").values(tags::SERVICE),
        }
        .build();
        let mut pages = self
            .client
            .describe_auto_scaling_groups()
            .filters(filter)
            .max_records(MAX_RECORDS)
            .into_paginator()
            .send();
        let mut fleets = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.endpoint.on(DESCRIBE_AUTO_SCALING_GROUPS))?;
            for group in page.auto_scaling_groups() {
                let tagged = group.tags().iter().any(|t| {
                    t.key() == Some(tags::SERVICE)
                        && service.is_none_or(|s| t.value() == Some(s.as_str()))
                });
                if tagged {
                    fleets.push(convert::summary(group)?);
                }
            }
        }
        Ok(fleets)
    }

    /// One group by name, summarised; `None` when there is no such group.
    pub(crate) async fn fleet_summary(
        &self,
        name: &FleetName,
    ) -> CloudResult<Option<FleetSummary>> {
        self.find_group(name)
            .await?
            .as_ref()
            .map(convert::summary)
            .transpose()
    }

    async fn find_group(&self, name: &FleetName) -> CloudResult<Option<AutoScalingGroup>> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name.as_str())
            .send()
            .await
            .map_err(self.endpoint.on(DESCRIBE_AUTO_SCALING_GROUPS))?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name.as_str()))
            .cloned())
    }

    async fn group(&self, name: &FleetName) -> CloudResult<AutoScalingGroup> {
        self.find_group(name).await?.ok_or_else(|| {
            CloudError::new(
                CloudErrorKind::NotFound,
                DESCRIBE_AUTO_SCALING_GROUPS,
                format!("Auto Scaling group {name} not found"),
            )
        })
    }

    /// The group and everything attached to it; launch templates named by name are resolved
    /// to ids through `ec2`. The four reads go out together (one round trip, not four).
    pub(crate) async fn fleet_config(
        &self,
        name: &FleetName,
        ec2: &Ec2,
    ) -> CloudResult<FleetConfig> {
        let group = async {
            let group = self.group(name).await?;
            let mut ids = convert::TemplateIds::new();
            for template in convert::template_names(&group) {
                let id = ec2.template_id(&template).await?;
                ids.insert(template, id);
            }
            Ok((group, ids))
        };
        let hooks = async {
            Ok(self
                .client
                .describe_lifecycle_hooks()
                .auto_scaling_group_name(name.as_str())
                .send()
                .await
                .map_err(self.endpoint.on(DESCRIBE_LIFECYCLE_HOOKS))?
                .lifecycle_hooks
                .unwrap_or_default())
        };
        let policies = async {
            let mut policies = Vec::new();
            let mut pages = self
                .client
                .describe_policies()
                .auto_scaling_group_name(name.as_str())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.endpoint.on(DESCRIBE_POLICIES))?;
                policies.extend(page.scaling_policies.unwrap_or_default());
            }
            Ok(policies)
        };
        let actions = async {
            let mut actions = Vec::new();
            let mut pages = self
                .client
                .describe_scheduled_actions()
                .auto_scaling_group_name(name.as_str())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.endpoint.on(DESCRIBE_SCHEDULED_ACTIONS))?;
                actions.extend(page.scheduled_update_group_actions.unwrap_or_default());
            }
            Ok(actions)
        };
        let (group, hooks, policies, actions): (
            CloudResult<_>,
            CloudResult<_>,
            CloudResult<_>,
            CloudResult<_>,
        ) = tokio::join!(group, hooks, policies, actions);
        let (group, ids) = group?;
        convert::fleet_config(&group, &ids, &hooks?, &policies?, &actions?)
    }

    pub(crate) async fn create_fleet(
        &self,
        name: &FleetName,
        config: &FleetConfig,
    ) -> CloudResult<()> {
        convert::create_request(self.client.create_auto_scaling_group(), name, config)?
            .send()
            .await
            .map_err(self.endpoint.on(CREATE_AUTO_SCALING_GROUP))?;
        Ok(())
    }

    pub(crate) async fn configure_fleet(
        &self,
        name: &FleetName,
        config: &FleetConfig,
    ) -> CloudResult<()> {
        // Refuse before the first put, so a policy that cannot be copied leaves nothing half done.
        let mut policies = Vec::new();
        for policy in &config.scaling_policies {
            if convert::copyable(policy)? {
                policies.push(policy);
            }
        }
        // The four kinds of setting are independent of each other: written side by side, each
        // kind in order. The caller records the fleet as configured only once all have landed.
        let policies = async {
            for policy in policies {
                convert::put_policy_request(self.client.put_scaling_policy(), name, policy)
                    .send()
                    .await
                    .map_err(self.endpoint.on(PUT_SCALING_POLICY))?;
            }
            Ok(())
        };
        let now = SystemTime::now();
        let scheduled = async {
            for action in &config.scheduled_actions {
                convert::scheduled_request(
                    self.client.put_scheduled_update_group_action(),
                    name,
                    action,
                    now,
                )
                .send()
                .await
                .map_err(self.endpoint.on(PUT_SCHEDULED_UPDATE_GROUP_ACTION))?;
            }
            Ok(())
        };
        let metrics = async {
            if let Some(metrics) = &config.metrics {
                self.client
                    .enable_metrics_collection()
                    .auto_scaling_group_name(name.as_str())
                    .granularity(&metrics.granularity)
                    .set_metrics((!metrics.metrics.is_empty()).then(|| metrics.metrics.clone()))
                    .send()
                    .await
                    .map_err(self.endpoint.on(ENABLE_METRICS_COLLECTION))?;
            }
            Ok(())
        };
        let suspended = self.suspend_processes(name, &config.suspended_processes);
        let (policies, scheduled, metrics, suspended): (
            CloudResult<()>,
            CloudResult<()>,
            CloudResult<()>,
            CloudResult<()>,
        ) = tokio::join!(policies, scheduled, metrics, suspended);
        policies.and(scheduled).and(metrics).and(suspended)
    }

    /// An empty list means no call: SuspendProcesses without a list would suspend everything.
    pub(crate) async fn suspend_processes(
        &self,
        name: &FleetName,
        processes: &[String],
    ) -> CloudResult<()> {
        if processes.is_empty() {
            return Ok(());
        }
        self.client
            .suspend_processes()
            .auto_scaling_group_name(name.as_str())
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map_err(self.endpoint.on(SUSPEND_PROCESSES))?;
        Ok(())
    }

    /// An empty list means no call: ResumeProcesses without a list would resume everything,
    /// including what the group's owner suspended.
    pub(crate) async fn resume_processes(
        &self,
        name: &FleetName,
        processes: &[String],
    ) -> CloudResult<()> {
        if processes.is_empty() {
            return Ok(());
        }
        self.client
            .resume_processes()
            .auto_scaling_group_name(name.as_str())
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map_err(self.endpoint.on(RESUME_PROCESSES))?;
        Ok(())
    }

    pub(crate) async fn set_capacity(
        &self,
        name: &FleetName,
        capacity: Capacity,
    ) -> CloudResult<()> {
        let (min, max, desired) = convert::sizes(UPDATE_AUTO_SCALING_GROUP, capacity)?;
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(name.as_str())
            .min_size(min)
            .max_size(max)
            .desired_capacity(desired)
            .send()
            .await
            .map_err(self.endpoint.on(UPDATE_AUTO_SCALING_GROUP))?;
        Ok(())
    }

    pub(crate) async fn tag_fleet(
        &self,
        name: &FleetName,
        tags: &[(String, String)],
    ) -> CloudResult<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(key, value)| convert::group_tag(name, key, value, false))
            .collect();
        self.client
            .create_or_update_tags()
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(self.endpoint.on(CREATE_OR_UPDATE_TAGS))?;
        Ok(())
    }

    pub(crate) async fn untag_fleet(&self, name: &FleetName, keys: &[String]) -> CloudResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let tags: Vec<Tag> = keys
            .iter()
            .map(|key| {
                Tag::builder()
                    .resource_id(name.as_str())
                    .resource_type(convert::GROUP_RESOURCE_TYPE)
                    .key(key)
                    .build()
            })
            .collect();
        self.client
            .delete_tags()
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(self.endpoint.on(DELETE_TAGS))?;
        Ok(())
    }

    pub(crate) async fn delete_fleet(&self, name: &FleetName) -> CloudResult<()> {
        let deleted = self
            .client
            .delete_auto_scaling_group()
            .auto_scaling_group_name(name.as_str())
            .force_delete(true)
            .send()
            .await
            .map_err(self.endpoint.on(DELETE_AUTO_SCALING_GROUP));
        match deleted {
            Ok(_) => Ok(()),
            // Already gone: the outcome a repeated delete is after.
            Err(e) if e.kind == CloudErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
