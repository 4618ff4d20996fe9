//! The tag schema: greenlight keeps a release's progress on its fleet's tags and nowhere else.
//!
//! Schema version 2 (`greenlight:schema = 2`; version 1 had no canary keys and no `releasing`
//! phase, and is still read). Every key starts with `greenlight:`:
//!
//! | key | value |
//! |---|---|
//! | `greenlight:schema` | `1` |
//! | `greenlight:service` | the service name |
//! | `greenlight:release` | the release this fleet runs |
//! | `greenlight:phase` | `creating`, `provisioning`, `releasing`, `live`, `warm` or `failed` |
//! | `greenlight:image` | the AMI the release was deployed with (when `--image-id` was used) |
//! | `greenlight:launch-template-version` | the launch template version the fleet launches |
//! | `greenlight:created-at` | RFC 3339 time the fleet was created |
//! | `greenlight:live-at` | RFC 3339 time the fleet last started taking traffic |
//! | `greenlight:warm-until` | RFC 3339 time until which a previous release is kept warm |
//! | `greenlight:failure` | why the release failed (phase `failed`), at most 256 characters |
//! | `greenlight:suspended` | scaling processes greenlight suspended to keep a warm fleet at capacity (comma-separated), resumed when it goes live again |
//! | `greenlight:plan` | the release's plan, e.g. `canary 5@5m,25@10m,50@manual,100` ([`Plan::encode`]) |
//! | `greenlight:health-deadline` | RFC 3339 time by which the release must be healthy, or it fails |
//! | `greenlight:step` | the number of the plan step whose weight is in effect (phase `releasing`) |
//! | `greenlight:step-at` | RFC 3339 time that step's weight took effect: where its pause counts from |
//! | `greenlight:promoted` | a `promote` request: the step number whose pause it ends, or `full` |
//! | `greenlight:abort` | an `abort` request: RFC 3339 time and who asked |
//! | `greenlight:rolled-back-at` | on a previous release: when a rollback moved traffic away from it |
//! | `greenlight:hooks-done` | the hook stages that ran and passed, e.g. `pre_traffic,after_step:1` |
//! | `greenlight:verdict` | the last analysis verdict, with its numbers |
//! | `greenlight:router` | the listener or rule ARN the service's traffic goes through, so `cleanup --all` can re-check traffic without a config |
//! | `greenlight:slot-a`, `greenlight:slot-b` | the service's two target group ARNs, for the same reason |
//! | `greenlight:unrouted-at` | RFC 3339 time the fleet stopped taking traffic (it went warm, or its release failed) |
//! | `greenlight:retiring-at` | RFC 3339 time `cleanup` scaled the fleet to zero to delete it |
//!
//! Readers ignore keys they do not know, so later versions may add keys without a bump; a
//! change of meaning bumps the schema and readers refuse a newer schema than they know.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use super::names::{ListenerArn, ReleaseName, RuleArn, ServiceName, TargetGroupArn};
use super::plan::{Plan, StepNumber};
use super::router::{RouterId, Slot, Slots};

pub const PREFIX: &str = "greenlight:";
pub const SCHEMA: &str = "greenlight:schema";
pub const SERVICE: &str = "greenlight:service";
pub const RELEASE: &str = "greenlight:release";
pub const PHASE: &str = "greenlight:phase";
pub const IMAGE: &str = "greenlight:image";
pub const LAUNCH_TEMPLATE_VERSION: &str = "greenlight:launch-template-version";
pub const CREATED_AT: &str = "greenlight:created-at";
pub const LIVE_AT: &str = "greenlight:live-at";
pub const WARM_UNTIL: &str = "greenlight:warm-until";
pub const FAILURE: &str = "greenlight:failure";
pub const SUSPENDED: &str = "greenlight:suspended";
pub const PLAN: &str = "greenlight:plan";
pub const HEALTH_DEADLINE: &str = "greenlight:health-deadline";
pub const STEP: &str = "greenlight:step";
pub const STEP_AT: &str = "greenlight:step-at";
pub const PROMOTED: &str = "greenlight:promoted";
pub const ABORT: &str = "greenlight:abort";
pub const ROLLED_BACK_AT: &str = "greenlight:rolled-back-at";
pub const HOOKS_DONE: &str = "greenlight:hooks-done";
pub const VERDICT: &str = "greenlight:verdict";
pub const ROUTER: &str = "greenlight:router";
pub const SLOT_A: &str = "greenlight:slot-a";
pub const SLOT_B: &str = "greenlight:slot-b";
pub const UNROUTED_AT: &str = "greenlight:unrouted-at";
pub const RETIRING_AT: &str = "greenlight:retiring-at";

/// The request tags and progress tags a release carries only while it is in progress.
pub const IN_PROGRESS: [&str; 6] = [STEP, STEP_AT, PROMOTED, ABORT, HEALTH_DEADLINE, HOOKS_DONE];

pub const SCHEMA_VERSION: u32 = 2;
/// `promoted` value that ends every remaining pause.
pub const PROMOTED_FULL: &str = "full";

/// Longest tag value Auto Scaling accepts.
pub const MAX_VALUE_LEN: usize = 256;

/// Where a release's fleet is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The group exists at zero capacity; its policies and settings may be incomplete.
    Creating,
    /// Fully configured and scaled; waiting for its targets to be healthy.
    Provisioning,
    /// Healthy, and moving through its plan: at a gate, or taking part of the traffic.
    Releasing,
    /// Takes the traffic.
    Live,
    /// A previous release, kept at capacity so rollback is one call.
    Warm,
    /// Never became healthy; scaled to zero.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "creating",
            Phase::Provisioning => "provisioning",
            Phase::Releasing => "releasing",
            Phase::Live => "live",
            Phase::Warm => "warm",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Phase> {
        [
            Phase::Creating,
            Phase::Provisioning,
            Phase::Releasing,
            Phase::Live,
            Phase::Warm,
            Phase::Failed,
        ]
        .into_iter()
        .find(|p| p.as_str() == value)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The greenlight tags of one fleet, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReleaseTags {
    pub schema: Option<u32>,
    pub service: Option<String>,
    pub release: Option<String>,
    pub phase: Option<Phase>,
    pub image: Option<String>,
    pub launch_template_version: Option<String>,
    pub warm_until: Option<SystemTime>,
    pub failure: Option<String>,
    /// Processes greenlight suspended (and must resume); `None` when it suspended nothing.
    pub suspended: Option<Vec<String>>,
    pub plan: Option<Plan>,
    /// The plan tag was there but unreadable (written by a newer greenlight, or by hand).
    pub plan_unreadable: bool,
    pub health_deadline: Option<SystemTime>,
    pub step: Option<StepNumber>,
    pub step_at: Option<SystemTime>,
    pub promoted: Option<Promoted>,
    pub abort: Option<String>,
    pub rolled_back_at: Option<SystemTime>,
    pub hooks_done: Option<String>,
    pub verdict: Option<String>,
    pub created_at: Option<SystemTime>,
    pub live_at: Option<SystemTime>,
    pub unrouted_at: Option<SystemTime>,
    pub retiring_at: Option<SystemTime>,
}

/// What `promote` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Promoted {
    /// End the pause of this step (and only this one).
    Step(StepNumber),
    /// Skip every remaining pause and step: go to 100%.
    Full,
}

impl Promoted {
    pub fn encode(self) -> String {
        match self {
            Promoted::Step(n) => n.to_string(),
            Promoted::Full => PROMOTED_FULL.to_owned(),
        }
    }

    pub fn decode(value: &str) -> Option<Promoted> {
        match value.trim() {
            PROMOTED_FULL => Some(Promoted::Full),
            n => n.parse().ok().map(|n| Promoted::Step(StepNumber(n))),
        }
    }

    /// Whether this request ends the pause of step `n`.
    pub fn ends(self, n: StepNumber) -> bool {
        match self {
            Promoted::Full => true,
            Promoted::Step(m) => m >= n,
        }
    }
}

fn time(tags: &BTreeMap<String, String>, key: &str) -> Option<SystemTime> {
    tags.get(key)
        .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
}

impl ReleaseTags {
    pub fn read(tags: &BTreeMap<String, String>) -> ReleaseTags {
        let get = |key: &str| tags.get(key).cloned();
        ReleaseTags {
            schema: tags.get(SCHEMA).and_then(|v| v.parse().ok()),
            service: get(SERVICE),
            release: get(RELEASE),
            phase: tags.get(PHASE).and_then(|v| Phase::parse(v)),
            image: get(IMAGE),
            launch_template_version: get(LAUNCH_TEMPLATE_VERSION),
            warm_until: time(tags, WARM_UNTIL),
            failure: get(FAILURE),
            suspended: tags.get(SUSPENDED).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            plan: tags.get(PLAN).and_then(|v| Plan::decode(v)),
            plan_unreadable: tags.get(PLAN).is_some_and(|v| Plan::decode(v).is_none()),
            health_deadline: time(tags, HEALTH_DEADLINE),
            step: tags
                .get(STEP)
                .and_then(|v| v.trim().parse().ok())
                .map(StepNumber),
            step_at: time(tags, STEP_AT),
            promoted: tags.get(PROMOTED).and_then(|v| Promoted::decode(v)),
            abort: get(ABORT),
            rolled_back_at: time(tags, ROLLED_BACK_AT),
            hooks_done: get(HOOKS_DONE),
            verdict: get(VERDICT),
            created_at: time(tags, CREATED_AT),
            live_at: time(tags, LIVE_AT),
            unrouted_at: time(tags, UNROUTED_AT),
            retiring_at: time(tags, RETIRING_AT),
        }
    }

    /// Whether greenlight manages this fleet for `service`.
    pub fn managed_for(&self, service: &ServiceName) -> bool {
        self.service.as_deref() == Some(service.as_str())
    }
}

/// The tags that name where a service's traffic goes: written on every fleet greenlight
/// creates or marks, so `cleanup --all` can find the router of a service from its fleets alone.
pub fn routing(router: &RouterId, slots: &Slots) -> Vec<(String, String)> {
    let router = match router {
        RouterId::Listener(arn) => arn.to_string(),
        RouterId::Rule(arn) => arn.to_string(),
    };
    vec![
        (ROUTER.to_owned(), router),
        (SLOT_A.to_owned(), slots.get(Slot::A).to_string()),
        (SLOT_B.to_owned(), slots.get(Slot::B).to_string()),
    ]
}

/// The router and slots a fleet's tags name, when all three are there and parse.
pub fn read_routing(tags: &BTreeMap<String, String>) -> Option<(RouterId, Slots)> {
    let router = tags.get(ROUTER)?;
    let router = if router.contains(":listener-rule/") {
        RouterId::Rule(RuleArn::parse(router).ok()?)
    } else {
        RouterId::Listener(ListenerArn::parse(router).ok()?)
    };
    let a = TargetGroupArn::parse(tags.get(SLOT_A)?).ok()?;
    let b = TargetGroupArn::parse(tags.get(SLOT_B)?).ok()?;
    Some((router, Slots::new(a, b)?))
}

/// RFC 3339 to the second, as tags store times.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `t` rounded up to the whole second, for a start time stored in a tag (which keeps seconds):
/// a pause counted from it is never shorter than asked.
pub fn ceil_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) if d.subsec_nanos() > 0 => {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs() + 1)
        }
        _ => t,
    }
}

/// Cuts `value` to what a tag can hold, on a character boundary.
pub fn clip(value: &str) -> String {
    if value.len() <= MAX_VALUE_LEN {
        return value.to_owned();
    }
    let mut end = MAX_VALUE_LEN - '…'.len_utf8();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// What a new release records about itself when its fleet is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease<'a> {
    pub service: &'a ServiceName,
    pub release: &'a ReleaseName,
    pub image: Option<&'a str>,
    pub launch_template_version: Option<&'a str>,
    pub plan: &'a Plan,
    pub health_deadline: SystemTime,
    pub now: SystemTime,
}

/// The tags a new release fleet is created with.
pub fn for_new_release(new: &NewRelease<'_>) -> Vec<(String, String)> {
    let NewRelease {
        service,
        release,
        image,
        launch_template_version,
        plan,
        health_deadline,
        now,
    } = new;
    let mut tags = vec![
        (SCHEMA.to_owned(), SCHEMA_VERSION.to_string()),
        (SERVICE.to_owned(), service.to_string()),
        (RELEASE.to_owned(), release.to_string()),
        (PHASE.to_owned(), Phase::Creating.to_string()),
        (CREATED_AT.to_owned(), timestamp(*now)),
        (PLAN.to_owned(), plan.encode()),
        (HEALTH_DEADLINE.to_owned(), timestamp(*health_deadline)),
    ];
    if let Some(image) = image {
        tags.push((IMAGE.to_owned(), (*image).to_owned()));
    }
    if let Some(version) = launch_template_version {
        tags.push((LAUNCH_TEMPLATE_VERSION.to_owned(), (*version).to_owned()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn round_trip() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let service = ServiceName::parse("checkout").unwrap();
        let release = ReleaseName::parse("v2").unwrap();
        let plan = Plan::blue_green(None);
        let mut map: BTreeMap<String, String> = for_new_release(&NewRelease {
            service: &service,
            release: &release,
            image: Some("ami-12345678"),
            launch_template_version: Some("3"),
            plan: &plan,
            health_deadline: now + Duration::from_secs(600),
            now,
        })
        .into_iter()
        .collect();
        map.insert(WARM_UNTIL.into(), timestamp(now));
        map.insert("team".into(), "payments".into());
        let tags = ReleaseTags::read(&map);
        assert_eq!(tags.schema, Some(SCHEMA_VERSION));
        assert_eq!(tags.plan, Some(plan));
        assert_eq!(tags.health_deadline, Some(now + Duration::from_secs(600)));
        assert!(tags.managed_for(&service));
        assert_eq!(tags.release.as_deref(), Some("v2"));
        assert_eq!(tags.phase, Some(Phase::Creating));
        assert_eq!(tags.image.as_deref(), Some("ami-12345678"));
        assert_eq!(tags.launch_template_version.as_deref(), Some("3"));
        assert_eq!(tags.warm_until, Some(now));
    }

    #[test]
    fn clip_respects_limit_and_char_boundaries() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(300);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_VALUE_LEN);
        assert!(clipped.ends_with('…'));
    }
}
