//! Cleanup: what of a service may be retired, decided from one observation and the clock.
//!
//! The rules, in the order they are applied to a fleet:
//! - a fleet greenlight did not create (no `greenlight:created-at`), or one of another service,
//!   is never touched, only reported;
//! - the router's live state decides over tags: a fleet any of whose target groups has weight
//!   above 0 in any forward action (a listener's default action or any rule, on any listener of
//!   any load balancer the target group belongs to) is kept, whatever its tags say;
//! - only a `warm` fleet past its `warm-until`, or a `failed` fleet past the grace period, is
//!   retired; live fleets and releases in progress are not;
//! - a fleet is retired only once the load balancer has stopped sending it requests: at least
//!   the target groups' deregistration delay after it lost traffic, no target of it still
//!   draining, and no request counted by CloudWatch since (where CloudWatch has the data);
//! - retiring is two steps, each safe to repeat: scale to zero (Auto Scaling deregisters the
//!   instances and waits for them to drain before terminating them), then, once no instance is
//!   left, delete the group.
//!
//! Leftover test-traffic rules of releases no longer in progress and launch template versions
//! greenlight made beyond `keep_releases` that nothing uses are retired too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::cloud::{LaunchTemplateVersion, ListenerForward};
use super::fleet::{Capacity, FleetSummary};
use super::health::{TargetHealth, TargetState};
use super::names::{FleetName, RuleArn, ServiceName, TargetGroupArn};
use super::router::{RouterId, Slots};
use super::tags::{Phase, ReleaseTags};
use super::test_traffic::ListenerRule;

/// The deregistration delay assumed for a target group whose attribute was not read: AWS's
/// default.
pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

/// How long after a fleet lost traffic (plus the deregistration delay) its request count is
/// checked from: a request in flight at the flip is counted in the minute of the flip.
pub const REQUEST_GRACE: Duration = Duration::from_secs(60);

/// What the config (or the Lambda's event) says to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CleanupPolicy {
    /// How long a failed release's fleet is kept after it failed.
    #[serde(with = "humantime_serde_secs")]
    pub keep_failed: Duration,
    /// How many launch template versions greenlight made are kept, newest first.
    pub keep_releases: usize,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::tags::timestamp(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// The versions of one launch template the service's fleets launch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVersions {
    pub template_id: String,
    pub versions: Vec<LaunchTemplateVersion>,
    /// The template's default version (AWS refuses to delete it).
    pub default_version: Option<u64>,
    /// Versions a fleet launches from, resolved to numbers (`$Latest`, `$Default` included).
    pub in_use: BTreeSet<u64>,
}

/// One observation of a service, as cleanup needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceView {
    /// Every fleet tagged with the service, and every fleet attached to its slots.
    pub fleets: Vec<FleetSummary>,
    /// Every forward action naming a target group one of the fleets is attached to.
    pub forwards: Vec<ListenerForward>,
    /// Targets of each target group a candidate fleet is attached to.
    pub targets: BTreeMap<TargetGroupArn, Vec<TargetHealth>>,
    /// Deregistration delay of each target group read; [`DEFAULT_DEREGISTRATION_DELAY`] otherwise.
    pub deregistration_delay: BTreeMap<TargetGroupArn, Duration>,
    /// Requests CloudWatch counted for a fleet's target groups since it lost traffic (read for
    /// the fleets [`requests_due`] names). Absent: not read, or no data.
    pub requests: BTreeMap<FleetName, f64>,
    /// The rules of the router's listener, when read.
    pub rules: Option<Vec<ListenerRule>>,
    /// The launch templates of the service's fleets, when read.
    pub templates: Vec<TemplateVersions>,
}

/// Where a service's traffic goes, from its config or from its fleets' tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRouting {
    pub service: ServiceName,
    pub router: RouterId,
    pub slots: Slots,
}

/// What cleanup does to one thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CleanupAction {
    /// Scale the fleet to zero (and record `retiring-at`): Auto Scaling deregisters its
    /// instances, lets them drain, and terminates them.
    ScaleDown {
        fleet: FleetName,
        release: String,
        capacity: Capacity,
    },
    /// Delete the group, now empty.
    DeleteFleet { fleet: FleetName, release: String },
    /// Delete a test-traffic rule whose release is no longer in progress.
    DeleteRule { rule: RuleArn, release: String },
    /// Delete launch template versions greenlight made that are beyond `keep_releases` and
    /// that no fleet uses.
    DeleteVersions {
        template_id: String,
        versions: Vec<u64>,
    },
}

impl CleanupAction {
    pub fn name(&self) -> &'static str {
        match self {
            CleanupAction::ScaleDown { .. } => "scale_down",
            CleanupAction::DeleteFleet { .. } => "delete_fleet",
            CleanupAction::DeleteRule { .. } => "delete_rule",
            CleanupAction::DeleteVersions { .. } => "delete_versions",
        }
    }

    /// Whether this action removes or shrinks a fleet (the router is re-read right before it).
    pub fn fleet(&self) -> Option<&FleetName> {
        match self {
            CleanupAction::ScaleDown { fleet, .. } | CleanupAction::DeleteFleet { fleet, .. } => {
                Some(fleet)
            }
            _ => None,
        }
    }
}

/// Why something is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Keep {
    /// Greenlight did not create it (no `greenlight:created-at`): the owner's, maybe a stack's.
    Unmanaged,
    /// Tagged for another service.
    OtherService { service: String },
    /// The live release, or a release in progress.
    InUse { phase: Option<Phase> },
    /// A target group of it takes traffic, whatever its tags say.
    Routed {
        target_group: TargetGroupArn,
        /// The listener or rule that forwards to it.
        owner: String,
        weight: u16,
    },
    /// Warm until, or failed and kept until, this time.
    NotExpired {
        #[serde(serialize_with = "rfc3339")]
        until: SystemTime,
    },
    /// Warm without a `warm-until` time: kept until a person decides.
    NoExpiry,
    /// CloudWatch counted requests to it after it should have stopped getting any: something
    /// still sends it traffic.
    StillServing { requests: u64 },
    /// A deletion is already under way.
    Deleting,
    /// The test rule of a release still in progress.
    ReleaseInProgress,
}

impl Keep {
    pub fn describe(&self) -> String {
        match self {
            Keep::Unmanaged => {
                "not created by greenlight (a first fleet, maybe a stack's); the next \
                                  deploy into its slot replaces it"
                    .to_owned()
            }
            Keep::OtherService { service } => format!("belongs to service {service}"),
            Keep::InUse { phase: Some(phase) } => format!("{phase}"),
            Keep::InUse { phase: None } => "in use".to_owned(),
            Keep::Routed {
                target_group,
                owner,
                weight,
            } => format!(
                "target group {} takes traffic (weight {weight} on {}), whatever its tags say",
                target_group.short_name(),
                owner
                    .split_once(":listener")
                    .map_or(owner.as_str(), |(_, rest)| rest.trim_start_matches('/'))
            ),
            Keep::NotExpired { until } => {
                format!("not due until {}", super::tags::timestamp(*until))
            }
            Keep::NoExpiry => "warm with no warm-until tag".to_owned(),
            Keep::StillServing { requests } => format!(
                "CloudWatch counted {requests} requests to it since it lost traffic; find what \
                 still sends it traffic"
            ),
            Keep::Deleting => "already being deleted".to_owned(),
            Keep::ReleaseInProgress => "its release is in progress".to_owned(),
        }
    }
}

/// What cleanup makes of one thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Do this now.
    Act {
        #[serde(flatten)]
        action: CleanupAction,
        why: String,
    },
    /// To be retired, but not yet: look again at `until` (or at the next poll).
    Wait {
        #[serde(serialize_with = "rfc3339_opt")]
        until: Option<SystemTime>,
        why: String,
    },
    /// Left alone.
    Keep {
        #[serde(flatten)]
        keep: Keep,
    },
}

/// What a decision is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    Fleet {
        name: FleetName,
        release: Option<String>,
        phase: Option<Phase>,
    },
    Rule {
        arn: RuleArn,
        release: String,
    },
    LaunchTemplate {
        id: String,
    },
}

impl Subject {
    pub fn describe(&self) -> String {
        match self {
            Subject::Fleet {
                name,
                release: Some(release),
                phase: Some(phase),
            } => format!("fleet {name} (release {release}, {phase})"),
            Subject::Fleet { name, .. } => format!("fleet {name}"),
            Subject::Rule { arn, release } => {
                format!("test rule {arn} (release {release})")
            }
            Subject::LaunchTemplate { id } => format!("launch template {id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub subject: Subject,
    #[serde(flatten)]
    pub decision: Decision,
}

/// Everything cleanup decides for one service in one pass.
pub fn plan_cleanup(
    routing: &ServiceRouting,
    view: &ServiceView,
    policy: &CleanupPolicy,
    now: SystemTime,
) -> Vec<Item> {
    let mut items: Vec<Item> = view
        .fleets
        .iter()
        .map(|fleet| Item {
            subject: fleet_subject(fleet),
            decision: fleet_decision(routing, view, policy, now, fleet),
        })
        .collect();
    if let Some(rules) = &view.rules {
        items.extend(
            rules
                .iter()
                .filter_map(|rule| rule_item(routing, view, rule)),
        );
    }
    items.extend(
        view.templates
            .iter()
            .filter_map(|t| versions_item(&routing.service, t, policy)),
    );
    items
}

fn fleet_subject(fleet: &FleetSummary) -> Subject {
    let tags = ReleaseTags::read(&fleet.tags);
    Subject::Fleet {
        name: fleet.name.clone(),
        release: tags.release,
        phase: tags.phase,
    }
}

/// The first forward with weight above 0 that names one of `target_groups`.
pub fn routed(
    forwards: &[ListenerForward],
    target_groups: &[TargetGroupArn],
) -> Option<(TargetGroupArn, String, u16)> {
    forwards.iter().find_map(|f| {
        f.forwards
            .iter()
            .find(|fw| fw.weight.get() > 0 && target_groups.contains(&fw.target_group))
            .map(|fw| (fw.target_group.clone(), f.owner.clone(), fw.weight.get()))
    })
}

/// Whether the fleet is one greenlight may retire: created by greenlight for this service.
fn ownership(service: &ServiceName, fleet: &FleetSummary) -> Option<Keep> {
    let tags = ReleaseTags::read(&fleet.tags);
    match tags.service.as_deref() {
        Some(s) if s != service.as_str() => Some(Keep::OtherService {
            service: s.to_owned(),
        }),
        None => Some(Keep::Unmanaged),
        Some(_) if tags.created_at.is_none() => Some(Keep::Unmanaged),
        Some(_) => None,
    }
}

/// When the fleet stopped taking traffic: its own record, else when the release after it went
/// live (a fleet marked warm by a greenlight before `unrouted-at` existed), else its creation.
fn lost_traffic_at(view: &ServiceView, tags: &ReleaseTags) -> Option<SystemTime> {
    tags.unrouted_at.or_else(|| {
        view.fleets
            .iter()
            .filter_map(|f| ReleaseTags::read(&f.tags).live_at)
            .max()
            .or(tags.created_at)
    })
}

/// The expiry of a fleet that is past its keep time, or why it is kept.
fn expiry(
    tags: &ReleaseTags,
    policy: &CleanupPolicy,
    now: SystemTime,
    lost: Option<SystemTime>,
) -> Result<String, Keep> {
    match tags.phase {
        Some(Phase::Warm) => match tags.warm_until {
            None => Err(Keep::NoExpiry),
            Some(until) if until > now => Err(Keep::NotExpired { until }),
            Some(until) => Ok(format!(
                "warm until {}, expired",
                super::tags::timestamp(until)
            )),
        },
        Some(Phase::Failed) => {
            let since = lost.or(tags.created_at).unwrap_or(now);
            let until = since + policy.keep_failed;
            if until > now {
                Err(Keep::NotExpired { until })
            } else {
                Ok(format!(
                    "failed at {}, kept {} for inspection",
                    super::tags::timestamp(since),
                    humantime::format_duration(policy.keep_failed)
                ))
            }
        }
        phase => Err(Keep::InUse { phase }),
    }
}

fn drain_delay(view: &ServiceView, fleet: &FleetSummary) -> Duration {
    fleet
        .target_groups
        .iter()
        .map(|tg| {
            view.deregistration_delay
                .get(tg)
                .copied()
                .unwrap_or(DEFAULT_DEREGISTRATION_DELAY)
        })
        .max()
        .unwrap_or(Duration::ZERO)
}

fn fleet_decision(
    routing: &ServiceRouting,
    view: &ServiceView,
    policy: &CleanupPolicy,
    now: SystemTime,
    fleet: &FleetSummary,
) -> Decision {
    let keep = |keep| Decision::Keep { keep };
    if fleet.deleting {
        return keep(Keep::Deleting);
    }
    if let Some(k) = ownership(&routing.service, fleet) {
        return keep(k);
    }
    let tags = ReleaseTags::read(&fleet.tags);
    // Only warm and failed fleets are ever retired: the rest are kept for what they are.
    if !matches!(tags.phase, Some(Phase::Warm | Phase::Failed)) {
        return keep(Keep::InUse { phase: tags.phase });
    }
    if let Some((target_group, owner, weight)) = routed(&view.forwards, &fleet.target_groups) {
        return keep(Keep::Routed {
            target_group,
            owner,
            weight,
        });
    }
    let lost = lost_traffic_at(view, &tags);
    let expired = match expiry(&tags, policy, now, lost) {
        Ok(why) => why,
        Err(k) => return keep(k),
    };
    let release = tags.release.clone().unwrap_or_default();

    let drained_at = lost.unwrap_or(now) + drain_delay(view, fleet);
    if now < drained_at {
        return Decision::Wait {
            until: Some(drained_at),
            why: format!(
                "{expired}; the load balancer may still send it requests until its \
                 deregistration delay has passed"
            ),
        };
    }
    let ids: BTreeSet<&str> = fleet.instances.iter().map(|i| i.id.as_str()).collect();
    let draining = fleet
        .target_groups
        .iter()
        .filter_map(|tg| view.targets.get(tg))
        .flatten()
        .filter(|t| {
            ids.contains(t.target_id.as_str())
                && matches!(
                    t.state,
                    TargetState::Draining | TargetState::UnhealthyDraining
                )
        })
        .count();
    if draining > 0 {
        return Decision::Wait {
            until: None,
            why: format!("{expired}; {draining} targets still draining"),
        };
    }
    if let Some(requests) = view.requests.get(&fleet.name).filter(|r| **r > 0.0) {
        return keep(Keep::StillServing {
            requests: requests.round() as u64,
        });
    }
    if fleet.capacity != Capacity::ZERO {
        return Decision::Act {
            action: CleanupAction::ScaleDown {
                fleet: fleet.name.clone(),
                release,
                capacity: fleet.capacity,
            },
            why: expired,
        };
    }
    if !fleet.instances.is_empty() {
        return Decision::Wait {
            until: None,
            why: format!(
                "{expired}; scaled to zero, {} instances still draining or terminating",
                fleet.instances.len()
            ),
        };
    }
    Decision::Act {
        action: CleanupAction::DeleteFleet {
            fleet: fleet.name.clone(),
            release,
        },
        why: expired,
    }
}

/// For which fleets CloudWatch's request count is worth reading: those about to be scaled down
/// or deleted, from when the load balancer should have stopped sending them requests.
pub fn requests_due(
    routing: &ServiceRouting,
    view: &ServiceView,
    policy: &CleanupPolicy,
    now: SystemTime,
) -> Vec<(FleetName, Vec<TargetGroupArn>, SystemTime)> {
    view.fleets
        .iter()
        .filter(|fleet| {
            matches!(
                fleet_decision(routing, view, policy, now, fleet),
                Decision::Act { .. }
            )
        })
        .filter_map(|fleet| {
            let tags = ReleaseTags::read(&fleet.tags);
            let since = lost_traffic_at(view, &tags)? + drain_delay(view, fleet) + REQUEST_GRACE;
            (since + REQUEST_GRACE <= now)
                .then(|| (fleet.name.clone(), fleet.target_groups.clone(), since))
        })
        .collect()
}

fn rule_item(routing: &ServiceRouting, view: &ServiceView, rule: &ListenerRule) -> Option<Item> {
    let release = rule.test_release(&routing.service)?.to_owned();
    let in_progress = view.fleets.iter().any(|f| {
        let tags = ReleaseTags::read(&f.tags);
        !f.deleting
            && tags.managed_for(&routing.service)
            && tags.release.as_deref() == Some(release.as_str())
            && matches!(
                tags.phase,
                Some(Phase::Creating | Phase::Provisioning | Phase::Releasing)
            )
    });
    let decision = if in_progress {
        Decision::Keep {
            keep: Keep::ReleaseInProgress,
        }
    } else {
        Decision::Act {
            action: CleanupAction::DeleteRule {
                rule: rule.arn.clone(),
                release: release.clone(),
            },
            why: "left behind: its release is no longer in progress".to_owned(),
        }
    };
    Some(Item {
        subject: Subject::Rule {
            arn: rule.arn.clone(),
            release,
        },
        decision,
    })
}

/// The description greenlight gives the launch template versions it makes for `service`.
pub fn made_by_greenlight(service: &ServiceName, version: &LaunchTemplateVersion) -> bool {
    version
        .description
        .as_deref()
        .and_then(|d| d.strip_prefix("greenlight "))
        .and_then(|rest| rest.strip_prefix(service.as_str()))
        .is_some_and(|rest| rest.starts_with(' '))
}

fn versions_item(
    service: &ServiceName,
    template: &TemplateVersions,
    policy: &CleanupPolicy,
) -> Option<Item> {
    let latest = template.versions.iter().map(|v| v.number).max();
    let mut ours: Vec<u64> = template
        .versions
        .iter()
        .filter(|v| made_by_greenlight(service, v))
        .map(|v| v.number)
        .collect();
    ours.sort_unstable_by(|a, b| b.cmp(a));
    let doomed: Vec<u64> = ours
        .into_iter()
        .skip(policy.keep_releases)
        .filter(|n| {
            !template.in_use.contains(n)
                && Some(*n) != template.default_version
                && Some(*n) != latest
        })
        .rev()
        .collect();
    if doomed.is_empty() {
        return None;
    }
    Some(Item {
        subject: Subject::LaunchTemplate {
            id: template.template_id.clone(),
        },
        decision: Decision::Act {
            why: format!(
                "{} versions greenlight made beyond the newest {} (none is used by a fleet)",
                doomed.len(),
                policy.keep_releases
            ),
            action: CleanupAction::DeleteVersions {
                template_id: template.template_id.clone(),
                versions: doomed,
            },
        },
    })
}

/// Whether a fleet's tags make it worth a closer look (`cleanup --all` reads the router and
/// targets only for services with such a fleet): a warm fleet past its warm-until, a failed one
/// past the grace period, or one cleanup already started retiring.
pub fn candidate(fleet: &FleetSummary, policy: &CleanupPolicy, now: SystemTime) -> bool {
    let tags = ReleaseTags::read(&fleet.tags);
    if fleet.deleting || tags.created_at.is_none() {
        return false;
    }
    tags.retiring_at.is_some()
        || match tags.phase {
            Some(Phase::Warm) => tags.warm_until.is_some_and(|until| until <= now),
            Some(Phase::Failed) => {
                tags.unrouted_at.or(tags.created_at).unwrap_or(now) + policy.keep_failed <= now
            }
            _ => false,
        }
}
