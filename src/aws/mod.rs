//! The [`Cloud`] port over the AWS SDK: one client per service, wired together here.

mod autoscaling;
mod cloudwatch;
mod ec2;
mod elbv2;
mod error;
mod trace;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use self::autoscaling::AutoScaling;
use self::cloudwatch::CloudWatch;
use self::ec2::Ec2;
use self::elbv2::Elbv2;
use crate::core::analysis::{AlarmState, MetricWindow};
use crate::core::cloud::{
    Cloud, CloudResult, LaunchTemplateVersion, ListenerForward, LockObject, TargetGroupInfo,
};
use crate::core::fleet::{Capacity, FleetConfig, FleetSummary, LaunchTemplateRef};
use crate::core::health::TargetHealth;
use crate::core::names::{FleetName, ImageId, ListenerArn, RuleArn, ServiceName, TargetGroupArn};
use crate::core::router::{Forward, RouterId, RouterState, RouterWrite};
use crate::core::test_traffic::{ListenerRule, RuleCondition};

/// Attempts per call (the first and its retries) unless `AWS_MAX_ATTEMPTS` or the profile says
/// otherwise: the SDK's standard mode, with exponential backoff and jitter.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long one attempt may take: a hung connection must not stall a deploy past its deadline.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call may take, retries included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(40);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// greenlight's cloud on AWS: Elastic Load Balancing v2, Auto Scaling, EC2 and CloudWatch in one
/// region.
pub struct AwsCloud {
    elbv2: Elbv2,
    autoscaling: AutoScaling,
    ec2: Ec2,
    cloudwatch: CloudWatch,
    region: Option<String>,
}

impl AwsCloud {
    /// Loads configuration the way the AWS CLI does (environment, `AWS_PROFILE`, SSO, instance
    /// roles, `AWS_ENDPOINT_URL`, …); `region` overrides the configured region.
    ///
    /// Every call is bounded ([`ATTEMPT_TIMEOUT`], [`CALL_TIMEOUT`]) and retried by the SDK's
    /// standard retry mode ([`MAX_ATTEMPTS`] unless the environment or profile sets its own).
    pub async fn connect(region: Option<&str>, profile: Option<&str>) -> AwsCloud {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(CALL_TIMEOUT)
                .build(),
        );
        let configured = ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"]
            .iter()
            .any(|key| std::env::var_os(key).is_some());
        if !configured {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        }
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        // `app/greenlight` in every call's user agent: CloudTrail shows who made a change.
        if let Ok(app) = aws_config::AppName::new("greenlight") {
            loader = loader.app_name(app);
        }
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        AwsCloud::from_conf(&loader.load().await)
    }

    pub fn from_conf(conf: &SdkConfig) -> AwsCloud {
        AwsCloud {
            elbv2: Elbv2::new(conf),
            autoscaling: AutoScaling::new(conf),
            ec2: Ec2::new(conf),
            cloudwatch: CloudWatch::new(conf),
            region: conf.region().map(|r| r.as_ref().to_owned()),
        }
    }

    /// The region calls go to, when one is configured.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }
}

impl Cloud for AwsCloud {
    async fn router(&self, id: &RouterId) -> CloudResult<RouterState> {
        self.elbv2.router(id).await
    }

    async fn target_group(&self, arn: &TargetGroupArn) -> CloudResult<TargetGroupInfo> {
        self.elbv2.target_group(arn).await
    }

    async fn target_groups(&self, arns: &[TargetGroupArn]) -> CloudResult<Vec<TargetGroupInfo>> {
        self.elbv2.target_groups(arns).await
    }

    async fn fleets(&self, target_groups: &[TargetGroupArn]) -> CloudResult<Vec<FleetSummary>> {
        self.autoscaling.fleets(target_groups).await
    }

    async fn fleet_config(&self, name: &FleetName) -> CloudResult<FleetConfig> {
        self.autoscaling.fleet_config(name, &self.ec2).await
    }

    async fn target_health(&self, target_group: &TargetGroupArn) -> CloudResult<Vec<TargetHealth>> {
        self.elbv2.target_health(target_group).await
    }

    async fn image_exists(&self, image: &ImageId) -> CloudResult<bool> {
        self.ec2.image_exists(image).await
    }

    async fn launch_template_version(
        &self,
        template: &LaunchTemplateRef,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        self.ec2.launch_template_version(template).await
    }

    async fn find_launch_template_version(
        &self,
        template_id: &str,
        description: &str,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        self.ec2
            .find_launch_template_version(template_id, description)
            .await
    }

    async fn create_launch_template_version(
        &self,
        template_id: &str,
        source_version: u64,
        image: &ImageId,
        description: &str,
        client_token: &str,
    ) -> CloudResult<LaunchTemplateVersion> {
        self.ec2
            .create_launch_template_version(
                template_id,
                source_version,
                image,
                description,
                client_token,
            )
            .await
    }

    async fn fleet_summary(&self, name: &FleetName) -> CloudResult<Option<FleetSummary>> {
        self.autoscaling.fleet_summary(name).await
    }

    async fn create_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        self.autoscaling.create_fleet(name, config).await
    }

    async fn configure_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        self.autoscaling.configure_fleet(name, config).await
    }

    async fn set_capacity(&self, name: &FleetName, capacity: Capacity) -> CloudResult<()> {
        self.autoscaling.set_capacity(name, capacity).await
    }

    async fn tag_fleet(&self, name: &FleetName, tags: &[(String, String)]) -> CloudResult<()> {
        self.autoscaling.tag_fleet(name, tags).await
    }

    async fn untag_fleet(&self, name: &FleetName, keys: &[String]) -> CloudResult<()> {
        self.autoscaling.untag_fleet(name, keys).await
    }

    async fn suspend_processes(&self, name: &FleetName, processes: &[String]) -> CloudResult<()> {
        self.autoscaling.suspend_processes(name, processes).await
    }

    async fn resume_processes(&self, name: &FleetName, processes: &[String]) -> CloudResult<()> {
        self.autoscaling.resume_processes(name, processes).await
    }

    async fn delete_fleet(&self, name: &FleetName) -> CloudResult<()> {
        self.autoscaling.delete_fleet(name).await
    }

    async fn route(&self, id: &RouterId, write: &RouterWrite) -> CloudResult<Vec<Forward>> {
        self.elbv2.route(id, write).await
    }

    async fn create_lock(
        &self,
        name: &str,
        tags: &[(String, String)],
        client_token: &str,
    ) -> CloudResult<String> {
        self.ec2.create_lock(name, tags, client_token).await
    }

    async fn read_lock(
        &self,
        name: &str,
    ) -> CloudResult<Option<(String, BTreeMap<String, String>)>> {
        self.ec2.read_lock(name).await
    }

    async fn tag_lock(&self, id: &str, tags: &[(String, String)]) -> CloudResult<()> {
        self.ec2.tag_lock(id, tags).await
    }

    async fn delete_lock(&self, id: &str) -> CloudResult<()> {
        self.ec2.delete_lock(id).await
    }

    async fn listener_rules(&self, listener: &ListenerArn) -> CloudResult<Vec<ListenerRule>> {
        self.elbv2.listener_rules(listener).await
    }

    async fn create_rule(
        &self,
        listener: &ListenerArn,
        priority: u32,
        conditions: &[RuleCondition],
        target_group: &TargetGroupArn,
        tags: &[(String, String)],
    ) -> CloudResult<RuleArn> {
        self.elbv2
            .create_rule(listener, priority, conditions, target_group, tags)
            .await
    }

    async fn delete_rule(&self, rule: &RuleArn) -> CloudResult<()> {
        self.elbv2.delete_rule(rule).await
    }

    async fn load_balancer_dns(&self, load_balancer_arn: &str) -> CloudResult<String> {
        self.elbv2.load_balancer_dns(load_balancer_arn).await
    }

    async fn alarms(&self, names: &[String]) -> CloudResult<Vec<AlarmState>> {
        self.cloudwatch.alarms(names).await
    }

    async fn target_group_metrics(
        &self,
        load_balancer_arn: &str,
        target_groups: &[TargetGroupArn],
        start: SystemTime,
        end: SystemTime,
    ) -> CloudResult<Vec<MetricWindow>> {
        self.cloudwatch
            .target_group_metrics(load_balancer_arn, target_groups, start, end)
            .await
    }

    async fn tagged_fleets(&self, service: Option<&ServiceName>) -> CloudResult<Vec<FleetSummary>> {
        self.autoscaling.tagged_fleets(service).await
    }

    async fn listeners(&self, load_balancer_arn: &str) -> CloudResult<Vec<ListenerArn>> {
        self.elbv2.listeners(load_balancer_arn).await
    }

    async fn listener_forwards(&self, listener: &ListenerArn) -> CloudResult<Vec<ListenerForward>> {
        self.elbv2.listener_forwards(listener).await
    }

    async fn deregistration_delay(&self, target_group: &TargetGroupArn) -> CloudResult<Duration> {
        self.elbv2.deregistration_delay(target_group).await
    }

    async fn launch_template_versions(
        &self,
        template_id: &str,
    ) -> CloudResult<Vec<LaunchTemplateVersion>> {
        self.ec2.launch_template_versions(template_id).await
    }

    async fn delete_launch_template_versions(
        &self,
        template_id: &str,
        versions: &[u64],
    ) -> CloudResult<()> {
        self.ec2
            .delete_launch_template_versions(template_id, versions)
            .await
    }

    async fn locks(&self) -> CloudResult<Vec<LockObject>> {
        self.ec2.locks().await
    }
}
