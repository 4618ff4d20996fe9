//! The `Cloud` port: every AWS call greenlight makes goes through this trait, in greenlight's
//! own types. The AWS SDK adapter ([`crate::aws`]) and the in-memory fake ([`crate::fake`])
//! implement it; a fake can count every call and fail any of them.
//!
//! # Guarantees implementations give
//! - Reads never change anything.
//! - Every write is safe to repeat: repeating one after a crash or timeout converges to the same
//!   state (or fails with [`CloudErrorKind::Conflict`] where AWS refuses a duplicate).
//! - `route` is exactly one ModifyListener or ModifyRule call; nothing else changes routing. It is
//!   conditional: the write is checked against the router as read right before it (the
//!   deciding pass's own read when that is under a second old, else a new one), and refused
//!   ([`CloudErrorKind::Conflict`], code [`ROUTER_CHANGED`]) if it no longer matches what the
//!   deciding pass saw. It returns the forwards AWS answered with, for the caller to check.
//! - `create_lock` is a conditional create: [`CloudErrorKind::Conflict`] when the name is taken.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::analysis::{AlarmState, MetricWindow};
use super::fleet::{Capacity, FleetConfig, FleetSummary, LaunchTemplateRef};
use super::health::TargetHealth;
use super::names::{FleetName, ImageId, ListenerArn, RuleArn, ServiceName, TargetGroupArn};
use super::router::{Forward, RouterId, RouterState, RouterWrite};
use super::test_traffic::{ListenerRule, RuleCondition};

/// The error code `route` gives when the router changed since the deciding observation.
pub const ROUTER_CHANGED: &str = "RouterChanged";

/// What kind of failure a cloud call had: decides the exit code and whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudErrorKind {
    /// The named resource does not exist (in this account and region).
    NotFound,
    /// Credentials are valid but lack permission.
    AccessDenied,
    /// No credentials, or expired or invalid ones.
    Credentials,
    /// AWS rejected the request's parameters.
    InvalidRequest,
    /// The resource already exists, or is in use.
    Conflict,
    /// Throttled, timed out, or a 5xx: worth retrying later.
    Unavailable,
    /// The endpoint could not be reached at all (connection refused or reset, no route, DNS):
    /// worth riding out once AWS has answered, a wrong endpoint or a dead network on first
    /// contact.
    Unreachable,
    Other,
}

/// A failed cloud call, with the AWS error code kept for people and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub struct CloudError {
    pub kind: CloudErrorKind,
    /// The API operation, e.g. `ModifyListener`.
    pub operation: String,
    /// The AWS error code, e.g. `ListenerNotFound`.
    pub code: Option<String>,
    pub message: String,
}

impl CloudError {
    /// Whether trying again later may succeed.
    pub fn transient(&self) -> bool {
        matches!(
            self.kind,
            CloudErrorKind::Unavailable | CloudErrorKind::Unreachable
        )
    }

    pub fn new(kind: CloudErrorKind, operation: &str, message: impl Into<String>) -> CloudError {
        CloudError {
            kind,
            operation: operation.to_owned(),
            code: None,
            message: message.into(),
        }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> CloudError {
        self.code = Some(code.into());
        self
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message.trim().replace('\n', " "))
    }
}

pub type CloudResult<T> = Result<T, CloudError>;

/// The settings of a target group that validation checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroupInfo {
    pub arn: TargetGroupArn,
    pub name: String,
    /// `instance`, `ip`, `lambda` or `alb`: only `instance` works with Auto Scaling.
    pub target_type: String,
    pub vpc_id: Option<String>,
    pub load_balancer_arns: Vec<String>,
}

/// One launch template version, resolved to its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchTemplateVersion {
    pub template_id: String,
    pub number: u64,
    pub image_id: Option<String>,
    pub description: Option<String>,
}

/// One forward action on a listener: the default action or a rule's, with its weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerForward {
    /// The rule's ARN, or the listener's for its default action.
    pub owner: String,
    pub forwards: Vec<Forward>,
}

/// A lock object found by listing (every service's, for `cleanup --all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockObject {
    pub name: String,
    pub id: String,
    pub tags: BTreeMap<String, String>,
}

/// The AWS operations greenlight uses, in its own terms.
pub trait Cloud: Send + Sync {
    /// The router's current forward action (DescribeListeners / DescribeRules).
    fn router(&self, id: &RouterId) -> impl Future<Output = CloudResult<RouterState>> + Send;

    fn target_group(
        &self,
        arn: &TargetGroupArn,
    ) -> impl Future<Output = CloudResult<TargetGroupInfo>> + Send;

    /// Several target groups in one read (DescribeTargetGroups), in the order asked;
    /// [`CloudErrorKind::NotFound`] when any one is missing (AWS does not say which).
    fn target_groups(
        &self,
        arns: &[TargetGroupArn],
    ) -> impl Future<Output = CloudResult<Vec<TargetGroupInfo>>> + Send;

    /// Every fleet attached to any of `target_groups`, including fleets being deleted.
    fn fleets(
        &self,
        target_groups: &[TargetGroupArn],
    ) -> impl Future<Output = CloudResult<Vec<FleetSummary>>> + Send;

    /// The full configuration of one fleet: group settings, lifecycle hooks, scaling policies,
    /// scheduled actions, tags.
    fn fleet_config(
        &self,
        name: &FleetName,
    ) -> impl Future<Output = CloudResult<FleetConfig>> + Send;

    fn target_health(
        &self,
        target_group: &TargetGroupArn,
    ) -> impl Future<Output = CloudResult<Vec<TargetHealth>>> + Send;

    /// Whether the AMI exists and is visible to this account.
    fn image_exists(&self, image: &ImageId) -> impl Future<Output = CloudResult<bool>> + Send;

    /// Resolves a version (`3`, `$Latest`, `$Default`) of a template; `None` when missing.
    fn launch_template_version(
        &self,
        template: &LaunchTemplateRef,
    ) -> impl Future<Output = CloudResult<Option<LaunchTemplateVersion>>> + Send;

    /// The version of `template_id` whose description is exactly `description`, if any: how a
    /// release finds the version it created before a crash instead of creating another.
    fn find_launch_template_version(
        &self,
        template_id: &str,
        description: &str,
    ) -> impl Future<Output = CloudResult<Option<LaunchTemplateVersion>>> + Send;

    /// A new version of `template_id` copied from `source_version` with only the AMI changed.
    /// `client_token` makes a repeat of the same request (after a lost answer) return the first
    /// version instead of making another.
    fn create_launch_template_version(
        &self,
        template_id: &str,
        source_version: u64,
        image: &ImageId,
        description: &str,
        client_token: &str,
    ) -> impl Future<Output = CloudResult<LaunchTemplateVersion>> + Send;

    /// One fleet by name, cheaply (no policies or hooks); `None` when there is none.
    fn fleet_summary(
        &self,
        name: &FleetName,
    ) -> impl Future<Output = CloudResult<Option<FleetSummary>>> + Send;

    /// CreateAutoScalingGroup with everything that call accepts (launch, capacity, subnets,
    /// health checks, lifecycle hooks, tags, target groups, …). Conflict if the name is taken.
    fn create_fleet(
        &self,
        name: &FleetName,
        config: &FleetConfig,
    ) -> impl Future<Output = CloudResult<()>> + Send;

    /// What CreateAutoScalingGroup cannot carry: scaling policies, scheduled actions, metrics
    /// collection, suspended processes. Each is a put, so repeating it is harmless.
    fn configure_fleet(
        &self,
        name: &FleetName,
        config: &FleetConfig,
    ) -> impl Future<Output = CloudResult<()>> + Send;

    fn set_capacity(
        &self,
        name: &FleetName,
        capacity: Capacity,
    ) -> impl Future<Output = CloudResult<()>> + Send;

    /// Creates or overwrites tags on the group (not propagated to instances).
    fn tag_fleet(
        &self,
        name: &FleetName,
        tags: &[(String, String)],
    ) -> impl Future<Output = CloudResult<()>> + Send;

    fn untag_fleet(
        &self,
        name: &FleetName,
        keys: &[String],
    ) -> impl Future<Output = CloudResult<()>> + Send;

    /// Suspends Auto Scaling processes on the group (SuspendProcesses).
    fn suspend_processes(
        &self,
        name: &FleetName,
        processes: &[String],
    ) -> impl Future<Output = CloudResult<()>> + Send;

    /// Resumes Auto Scaling processes on the group (ResumeProcesses).
    fn resume_processes(
        &self,
        name: &FleetName,
        processes: &[String],
    ) -> impl Future<Output = CloudResult<()>> + Send;

    /// Deletes the group and terminates its instances (ForceDelete).
    fn delete_fleet(&self, name: &FleetName) -> impl Future<Output = CloudResult<()>> + Send;

    /// Sets the router's forward action to `write.forwards` in one call, if it still forwards
    /// as `write.expected`; keeps any other actions (authentication) and their order, and the
    /// stickiness as `write.stickiness` says. Returns the forwards AWS reports after the write.
    fn route(
        &self,
        id: &RouterId,
        write: &RouterWrite,
    ) -> impl Future<Output = CloudResult<Vec<Forward>>> + Send;

    /// Creates the lock object `name` with `tags`; [`CloudErrorKind::Conflict`] when it exists.
    /// Returns its id. `client_token` makes a repeat after a lost answer return the same object.
    fn create_lock(
        &self,
        name: &str,
        tags: &[(String, String)],
        client_token: &str,
    ) -> impl Future<Output = CloudResult<String>> + Send;

    /// The lock object `name`: its id and tags; `None` when there is none.
    fn read_lock(
        &self,
        name: &str,
    ) -> impl Future<Output = CloudResult<Option<(String, BTreeMap<String, String>)>>> + Send;

    /// Creates or overwrites tags on the lock object `id`; [`CloudErrorKind::NotFound`] when it
    /// is gone (taken over, or unlocked by force).
    fn tag_lock(
        &self,
        id: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = CloudResult<()>> + Send;

    /// Deletes the lock object `id` (never another object of the same name); succeeds when it
    /// is already gone.
    fn delete_lock(&self, id: &str) -> impl Future<Output = CloudResult<()>> + Send;

    /// Every rule of `listener` (DescribeRules, all pages), with its tags (DescribeTags), the
    /// default rule included (priority `None`).
    fn listener_rules(
        &self,
        listener: &ListenerArn,
    ) -> impl Future<Output = CloudResult<Vec<ListenerRule>>> + Send;

    /// CreateRule: a rule at `priority` that forwards requests matching `conditions` to
    /// `target_group`, created with `tags`. [`CloudErrorKind::Conflict`] when the priority is
    /// taken (another runner, or a person, took it since it was read).
    fn create_rule(
        &self,
        listener: &ListenerArn,
        priority: u32,
        conditions: &[RuleCondition],
        target_group: &TargetGroupArn,
        tags: &[(String, String)],
    ) -> impl Future<Output = CloudResult<RuleArn>> + Send;

    /// DeleteRule; succeeds when the rule is already gone.
    fn delete_rule(&self, rule: &RuleArn) -> impl Future<Output = CloudResult<()>> + Send;

    /// The load balancer's DNS name (DescribeLoadBalancers), for hooks to send requests to.
    fn load_balancer_dns(
        &self,
        load_balancer_arn: &str,
    ) -> impl Future<Output = CloudResult<String>> + Send;

    /// The named CloudWatch alarms' states (DescribeAlarms). An alarm that does not exist is
    /// missing from the answer.
    fn alarms(&self, names: &[String])
    -> impl Future<Output = CloudResult<Vec<AlarmState>>> + Send;

    /// What each target group of `load_balancer` served from `start` to `end`
    /// (GetMetricData on `AWS/ApplicationELB`: RequestCount and HTTPCode_Target_5XX_Count sums,
    /// TargetResponseTime p99), one window per target group, in order.
    fn target_group_metrics(
        &self,
        load_balancer_arn: &str,
        target_groups: &[TargetGroupArn],
        start: SystemTime,
        end: SystemTime,
    ) -> impl Future<Output = CloudResult<Vec<MetricWindow>>> + Send;

    /// Every fleet carrying the tag `greenlight:service` (with this value, when `service` is
    /// given), from DescribeAutoScalingGroups filtered by tag, all pages: what `cleanup` reads
    /// instead of a config. Fleets being deleted are included (`deleting`).
    fn tagged_fleets(
        &self,
        service: Option<&ServiceName>,
    ) -> impl Future<Output = CloudResult<Vec<FleetSummary>>> + Send;

    /// The listeners of a load balancer (DescribeListeners, all pages).
    fn listeners(
        &self,
        load_balancer_arn: &str,
    ) -> impl Future<Output = CloudResult<Vec<ListenerArn>>> + Send;

    /// Every forward action on `listener`: its default action and each rule's (DescribeRules,
    /// all pages), with weights. A forward naming one target group without a ForwardConfig has
    /// weight 1 for it.
    fn listener_forwards(
        &self,
        listener: &ListenerArn,
    ) -> impl Future<Output = CloudResult<Vec<ListenerForward>>> + Send;

    /// The target group's deregistration delay (DescribeTargetGroupAttributes,
    /// `deregistration_delay.timeout_seconds`; AWS's default is 300 s).
    fn deregistration_delay(
        &self,
        target_group: &TargetGroupArn,
    ) -> impl Future<Output = CloudResult<Duration>> + Send;

    /// Every version of the launch template (DescribeLaunchTemplateVersions, all pages).
    fn launch_template_versions(
        &self,
        template_id: &str,
    ) -> impl Future<Output = CloudResult<Vec<LaunchTemplateVersion>>> + Send;

    /// DeleteLaunchTemplateVersions (at most 200 a call; more are split). A version already
    /// gone counts as deleted; one AWS refuses to delete (the default) is an error.
    fn delete_launch_template_versions(
        &self,
        template_id: &str,
        versions: &[u64],
    ) -> impl Future<Output = CloudResult<()>> + Send;

    /// Every lock object in the region (launch templates named `greenlight-lock.*`), with tags.
    fn locks(&self) -> impl Future<Output = CloudResult<Vec<LockObject>>> + Send;
}
