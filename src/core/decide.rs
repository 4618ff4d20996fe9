//! The decisions: given the spec, one fresh observation and the clock, what is the one next
//! step? Every step is idempotent, so a crash anywhere is healed by deciding again.
//!
//! A release is a sequence of stages whose position lives in its fleet's tags: `creating` →
//! `provisioning` (until healthy) → `releasing` through the steps of its [`Plan`] (a weight, then
//! a pause) → `live`. Blue/green is the one-step plan. Every command decides here:
//! [`decide_deploy`], [`decide_rollback`], [`decide_abort`], [`decide_promote`], and [`settle`]
//! (the tag fixes after a flip) which they all run first.
//!
//! The safety rules live here and nowhere else:
//! - traffic moves to a fleet (a [`Action::Shift`] or [`Action::Flip`]) only when it is
//!   [`FleetHealth::ready`] in the very observation that decided the move, and only one weight
//!   change per pass; green's share only grows within a release, except [`Action::RouteBack`],
//!   which returns everything to the live release in one call;
//! - capacity changes and deletions only touch the idle slot, never a slot with traffic (the
//!   engine re-reads the router right before each of them);
//! - a fleet greenlight does not manage for this service is never changed, only reported; so is
//!   a split of traffic greenlight did not make.

mod abort;
mod deploy;
mod progress;
mod promote;
mod rollback;
mod settle;
mod situation;
mod verify;

use std::time::SystemTime;

use serde::Serialize;

use super::fleet::Capacity;
use super::health::FleetHealth;
use super::hooks::HookStage;
use super::names::{FleetName, ImageId, ListenerArn, ReleaseName, RuleArn, TargetGroupArn};
use super::plan::{Percent, Plan, StepNumber};
use super::reason::Reason;
use super::router::{RouterWrite, Slot};
use super::tags::Phase;
use super::test_traffic::RuleCondition;

pub use abort::decide_abort;
pub use deploy::decide_deploy;
pub use progress::{MIN_METRICS_WINDOW, metrics_due};
pub use promote::{PromoteRequest, decide_promote, decide_resume};
pub use rollback::decide_rollback;
pub use settle::{settle, settle_flips};
pub use situation::{InProgress, Live, in_progress, live};
pub use verify::ready_to_start;

/// What green launches from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Launch {
    /// A new launch template version, copied from the live fleet's with this AMI.
    Image(ImageId),
    /// An existing version of the live fleet's launch template.
    Version(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub release: ReleaseName,
    pub launch: Launch,
    /// The steps a new release takes; a release already under way keeps the plan it started
    /// with (its tags say which).
    pub plan: Plan,
}

/// The clock, as the core sees it: an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: SystemTime,
    /// When a release that is not healthy yet is failed, for a release that does not record
    /// its own deadline; a new release records this one.
    pub health_deadline: SystemTime,
}

/// The new release's fleet: what it is called, what it runs, where it goes, whom it copies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Green {
    pub fleet: FleetName,
    pub release: ReleaseName,
    /// The live fleet green is a twin of.
    pub source: FleetName,
    /// The idle slot's target group.
    pub target_group: TargetGroupArn,
    pub launch: Launch,
    #[serde(skip)]
    pub plan: Plan,
    #[serde(with = "rfc3339")]
    pub health_deadline: SystemTime,
}

/// The Auto Scaling processes that would resize a warm fleet on their own: alarms driving its
/// target tracking and step policies, and its scheduled actions.
pub const WARM_SUSPENDS: [&str; 2] = ["AlarmNotification", "ScheduledActions"];

/// One idempotent step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Delete a fleet that sits in the idle slot but is not the release being deployed (the
    /// release before the previous one, or a failed one). It takes no traffic.
    RetireFleet {
        fleet: FleetName,
        release: String,
        phase: Option<Phase>,
    },
    /// Name the idle target group in the router's forward action at weight 0. AWS health-checks
    /// only target groups a listener or rule uses, and reports the targets of any other as
    /// `unused`; with weight 0 green is checked but takes no traffic.
    JoinRouter {
        target_group: TargetGroupArn,
        live: TargetGroupArn,
        #[serde(flatten)]
        write: RouterWrite,
    },
    /// Create green as a twin of the live fleet, at zero capacity, attached to the idle slot.
    CreateFleet(Green),
    /// Apply green's remaining settings, scale it to the live fleet's capacity, mark it
    /// provisioning.
    ConfigureFleet(Green),
    /// Bring a failed release back to capacity to try it again, with a new health deadline.
    ReviveFleet {
        fleet: FleetName,
        release: String,
        capacity: Capacity,
        #[serde(skip)]
        plan: Plan,
        #[serde(with = "rfc3339")]
        health_deadline: SystemTime,
    },
    /// A previous release (warm, idle) deployed again: it goes through the plan like a new one.
    Restage {
        fleet: FleetName,
        release: String,
        #[serde(skip)]
        plan: Plan,
        #[serde(with = "rfc3339")]
        health_deadline: SystemTime,
    },
    /// Green is healthy and the plan starts at a gate (weight 0): record step 1, move nothing.
    Begin {
        fleet: FleetName,
        release: String,
        step: StepNumber,
        of: u32,
    },
    /// During a release, the live fleet grew (its own scaling): green follows, so it is never
    /// smaller than the share it takes or will take.
    MatchCapacity {
        fleet: FleetName,
        capacity: Capacity,
    },
    /// One router call: green's share becomes `weight`; then the step is recorded on green
    /// (with the analysis verdict that let it go on, if one was drawn).
    Shift {
        fleet: FleetName,
        release: String,
        to: TargetGroupArn,
        from: TargetGroupArn,
        weight: Percent,
        step: StepNumber,
        of: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        verdict: Option<String>,
        #[serde(flatten)]
        write: RouterWrite,
    },
    /// One router call: all traffic to `to`.
    Flip {
        to: TargetGroupArn,
        from: TargetGroupArn,
        fleet: FleetName,
        release: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        verdict: Option<String>,
        #[serde(flatten)]
        write: RouterWrite,
    },
    /// A listener rule, tagged as greenlight's, that forwards requests carrying the test header
    /// with the release's name to green: green is reachable before production traffic.
    OpenTestRule {
        fleet: FleetName,
        release: String,
        listener: ListenerArn,
        priority: u32,
        #[serde(skip)]
        conditions: Vec<RuleCondition>,
        target_group: TargetGroupArn,
    },
    /// Removes a test-traffic rule: its release was promoted, stopped, or is gone.
    CloseTestRule { rule: RuleArn, release: String },
    /// The test listener forwards to `to`: green's target group while a release is in progress
    /// (which also gets it health-checked on a Network Load Balancer), the live one otherwise.
    PointTestListener {
        listener: ListenerArn,
        to: TargetGroupArn,
        #[serde(flatten)]
        write: RouterWrite,
    },
    /// Runs the hooks of `stage`, then records the stage as done on green. A failing hook
    /// records why on green instead, and the next pass stops the release.
    RunHooks {
        fleet: FleetName,
        release: String,
        #[serde(flatten)]
        stage: HookStage,
        #[serde(skip)]
        context: HookContext,
        /// `greenlight:hooks-done` once this stage passed.
        #[serde(skip)]
        done: String,
    },
    /// One router call: all traffic back to the live release, away from the release in
    /// progress (`abort`, or an automatic abort).
    RouteBack {
        to: TargetGroupArn,
        from: TargetGroupArn,
        fleet: FleetName,
        release: String,
        reason: Reason,
        #[serde(flatten)]
        write: RouterWrite,
    },
    /// The fleet takes the traffic: resume the scaling greenlight suspended while it was warm.
    MarkLive {
        fleet: FleetName,
        release: String,
        resume: Vec<String>,
    },
    /// The fleet lost the traffic: keep it at capacity (its own scaling policies would shrink
    /// an idle fleet to its minimum) until `until`, so a rollback lands on enough instances.
    MarkWarm {
        fleet: FleetName,
        release: String,
        #[serde(with = "rfc3339")]
        until: SystemTime,
        suspend: Vec<String>,
        /// A rollback moved traffic away from it: a later plain `rollback` will not return.
        rolled_back: bool,
    },
    /// The release is being stopped: why, recorded on green before its test traffic is closed.
    RecordStop {
        fleet: FleetName,
        release: String,
        reason: Reason,
    },
    /// The release stops: green is scaled to zero and tagged failed with why. It takes no
    /// traffic (a [`Action::RouteBack`] comes first when it did).
    FailRelease {
        fleet: FleetName,
        release: String,
        reasons: Vec<Reason>,
    },
}

impl Action {
    /// The short name events and logs use.
    pub fn name(&self) -> &'static str {
        match self {
            Action::RetireFleet { .. } => "retire_fleet",
            Action::JoinRouter { .. } => "join_router",
            Action::CreateFleet { .. } => "create_fleet",
            Action::ConfigureFleet { .. } => "configure_fleet",
            Action::ReviveFleet { .. } => "revive_fleet",
            Action::Restage { .. } => "restage",
            Action::Begin { .. } => "begin",
            Action::MatchCapacity { .. } => "match_capacity",
            Action::Shift { .. } => "shift",
            Action::Flip { .. } => "flip",
            Action::OpenTestRule { .. } => "open_test_rule",
            Action::CloseTestRule { .. } => "close_test_rule",
            Action::PointTestListener { .. } => "point_test_listener",
            Action::RunHooks { .. } => "run_hooks",
            Action::RecordStop { .. } => "record_stop",
            Action::RouteBack { .. } => "route_back",
            Action::MarkLive { .. } => "mark_live",
            Action::MarkWarm { .. } => "mark_warm",
            Action::FailRelease { .. } => "fail_release",
        }
    }

    /// The fleet the action changes; `None` for a router-only step.
    pub fn fleet(&self) -> Option<&FleetName> {
        Some(match self {
            Action::JoinRouter { .. }
            | Action::CloseTestRule { .. }
            | Action::PointTestListener { .. } => return None,
            Action::RetireFleet { fleet, .. }
            | Action::CreateFleet(Green { fleet, .. })
            | Action::ConfigureFleet(Green { fleet, .. })
            | Action::ReviveFleet { fleet, .. }
            | Action::Restage { fleet, .. }
            | Action::Begin { fleet, .. }
            | Action::MatchCapacity { fleet, .. }
            | Action::Shift { fleet, .. }
            | Action::Flip { fleet, .. }
            | Action::OpenTestRule { fleet, .. }
            | Action::RunHooks { fleet, .. }
            | Action::RecordStop { fleet, .. }
            | Action::RouteBack { fleet, .. }
            | Action::MarkLive { fleet, .. }
            | Action::MarkWarm { fleet, .. }
            | Action::FailRelease { fleet, .. } => fleet,
        })
    }

    /// The production router write the action makes, if it moves traffic (or names a target
    /// group).
    pub fn router_write(&self) -> Option<&RouterWrite> {
        match self {
            Action::JoinRouter { write, .. }
            | Action::Shift { write, .. }
            | Action::Flip { write, .. }
            | Action::RouteBack { write, .. } => Some(write),
            _ => None,
        }
    }
}

/// Why greenlight will not go on; each maps to one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The request cannot be carried out as asked; nothing was changed.
    BadInput,
    /// Another release is being deployed into the idle slot.
    Busy,
    /// AWS is in a state greenlight will not act on without a person.
    NeedsAttention,
    /// The release was stopped (aborted, or failed) while this command waited on it.
    ReleaseFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn attention(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::NeedsAttention, message)
    }
}

/// What a command waits for, as data: the engine sleeps, renews its lock, and asks again.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum WaitReason {
    /// Green is not healthy yet.
    Health {
        fleet: FleetName,
        health: FleetHealth,
    },
    /// A timed pause (bake) at a step.
    Pause {
        release: String,
        step: StepNumber,
        of: u32,
        weight: Percent,
    },
    /// A manual gate: until `greenlight promote`.
    Gate {
        release: String,
        step: StepNumber,
        of: u32,
        weight: Percent,
    },
    /// The pause is over but the analysis is inconclusive (too few requests, no data): the
    /// window grows until it is not, or someone promotes or aborts.
    Analysis {
        release: String,
        step: StepNumber,
        of: u32,
        weight: Percent,
        verdict: String,
    },
    /// `abort` (or `rollback` during a release) asked the runner holding the lock to stop
    /// `release`, and waits until it has or lets go of the lock.
    Handover {
        release: String,
        /// Who was asked, e.g. ``ci@build-7 (pid 4242) running `greenlight deploy` ``.
        driver: String,
    },
}

/// What the hooks of one stage are told about the release (their environment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookContext {
    pub live_release: String,
    pub green_target_group: Option<TargetGroupArn>,
    pub live_target_group: Option<TargetGroupArn>,
    pub slot: Option<Slot>,
    pub weight: Percent,
    pub step: Option<StepNumber>,
    pub steps: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// When waiting ends on its own (a deadline or a pause's end); `None` for a manual gate.
    pub until: Option<SystemTime>,
    pub why: WaitReason,
}

/// How a command ended well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Done {
    /// `release` takes all traffic and the tags agree.
    Live { release: String, slot: Slot },
    /// A rollback found the previous release live already (it was rolled back before).
    AlreadyRolledBack {
        release: String,
        slot: Slot,
        from: String,
    },
    /// Nothing is in progress: the stable release keeps the traffic.
    NothingInProgress { release: String, slot: Slot },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Act(Action),
    Wait(Wait),
    Done(Done),
    Refuse(Refusal),
}

impl From<Refusal> for Decision {
    fn from(refusal: Refusal) -> Decision {
        Decision::Refuse(refusal)
    }
}

impl From<Action> for Decision {
    fn from(action: Action) -> Decision {
        Decision::Act(action)
    }
}

/// Runs a decision function written with `?` on refusals.
fn decided(result: Result<Decision, Refusal>) -> Decision {
    result.unwrap_or_else(Decision::Refuse)
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::core::tags::timestamp(*t))
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

#[cfg(test)]
mod verify_tests;
