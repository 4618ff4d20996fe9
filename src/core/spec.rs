//! `greenlight.toml`: parsed, validated, and turned into the [`Spec`] the rest of the code uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::analysis::{AnalysisSpec, DEFAULT_MIN_REQUESTS, Inconclusive};
use super::hooks::{DEFAULT_HOOK_TIMEOUT, HooksSpec};
use super::names::{ListenerArn, NameError, RuleArn, ServiceName, TargetGroupArn, parse_elb_arn};
use super::nginx::{self, Backend, CheckSpec, NginxSpec};
use super::plan::{Pause, Percent, Plan, Step, Strategy};
use super::router::{LoadBalancerKind, RouterId, Slot, Slots};

pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_KEEP_WARM: Duration = Duration::from_secs(60 * 60);
/// How long a failed release's fleet is kept (at zero capacity, for its tags and activity
/// history) before `cleanup` deletes it.
pub const DEFAULT_KEEP_FAILED: Duration = Duration::from_secs(60 * 60);
/// How many of the launch template versions greenlight made `cleanup` keeps, newest first.
pub const DEFAULT_KEEP_RELEASES: usize = 5;
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(2 * 60);
/// The longest duration any setting takes: a year. Bounding durations at parse time means no
/// deadline, pause end or warm-until time can overflow later.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The shortest lock lifetime: renewals happen every third of it, and AWS calls take time.
pub const MIN_LOCK_TTL: Duration = Duration::from_secs(1);
/// The longest TargetGroupStickinessConfig.DurationSeconds ELB accepts: 7 days.
pub const MAX_STICKINESS: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A configuration problem, in one line that names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<NameError> for ConfigError {
    fn from(e: NameError) -> Self {
        ConfigError(e.0)
    }
}

/// The validated configuration of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub service: ServiceName,
    /// `None`: the standard AWS chain decides (AWS_REGION, profile).
    pub region: Option<String>,
    pub router: RouterId,
    pub slots: Slots,
    pub health: HealthSpec,
    pub retention: RetentionSpec,
    /// The strategy `deploy` uses unless `--strategy` says otherwise.
    pub strategy: Strategy,
    /// The blue/green plan: one flip, maybe behind a gate.
    pub blue_green: Plan,
    /// The canary plan, when `[canary]` gives one.
    pub canary: Option<CanarySpec>,
    pub lock: LockSpec,
    pub test_traffic: TestTrafficSpec,
    pub hooks: HooksSpec,
    pub analysis: AnalysisSpec,
    /// Set for `[router] kind = "nginx"`: `router` and `slots` then name nginx's router and
    /// slots ([`super::nginx::router_arn`], [`super::nginx::slot_arn`]).
    pub nginx: Option<NginxSpec>,
}

/// `[test_traffic]`: how the new release is reached before production traffic.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestTrafficSpec {
    /// A header whose value names the release: a rule forwards such requests to green.
    pub header: Option<String>,
    /// A test listener of the same load balancer that forwards to green.
    pub listener: Option<ListenerArn>,
}

impl TestTrafficSpec {
    pub fn any(&self) -> bool {
        self.header.is_some() || self.listener.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CanarySpec {
    pub plan: Plan,
    /// Target-group stickiness while both slots take traffic, so a client stays on one release.
    pub stickiness: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockSpec {
    /// How long a lock holder that stops renewing keeps others out.
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthSpec {
    /// How long a new release may take to become healthy before it is failed.
    pub timeout: Duration,
    /// First wait between health polls; later waits back off from it.
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSpec {
    /// How long the previous release stays at capacity after a flip.
    pub keep_warm: Duration,
    /// How long `cleanup` keeps a failed release's fleet.
    pub keep_failed: Duration,
    /// How many launch template versions greenlight made `cleanup` keeps (those a fleet uses
    /// are always kept).
    pub keep_releases: usize,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        RetentionSpec {
            keep_warm: DEFAULT_KEEP_WARM,
            keep_failed: DEFAULT_KEEP_FAILED,
            keep_releases: DEFAULT_KEEP_RELEASES,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    service: String,
    region: Option<String>,
    strategy: Option<String>,
    router: RawRouter,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    retention: RawRetention,
    canary: Option<RawCanary>,
    #[serde(default)]
    bluegreen: RawBlueGreen,
    #[serde(default)]
    lock: RawLock,
    #[serde(default)]
    test_traffic: RawTestTraffic,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    analysis: RawAnalysis,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTestTraffic {
    header: Option<String>,
    listener_arn: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    #[serde(default)]
    pre_traffic: Vec<String>,
    #[serde(default)]
    after_step: Vec<String>,
    #[serde(default)]
    post_traffic: Vec<String>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    #[serde(default)]
    alarms: Vec<String>,
    max_5xx_rate: Option<f64>,
    max_5xx_ratio_vs_blue: Option<f64>,
    max_p99_latency: Option<String>,
    min_requests: Option<i64>,
    inconclusive: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    steps: Vec<RawStep>,
    stickiness: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    weight: i64,
    pause: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBlueGreen {
    pause_before_flip: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLock {
    ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    /// `"alb"` (the default) or `"nginx"`.
    kind: Option<String>,
    listener_arn: Option<String>,
    rule_arn: Option<String>,
    target_groups: Option<Vec<String>>,
    include: Option<String>,
    state: Option<String>,
    test: Option<Vec<String>>,
    reload: Option<Vec<String>>,
    access_log: Option<String>,
    backends: Option<Vec<Vec<String>>>,
    drain: Option<String>,
    health_check: Option<RawHealthCheck>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    path: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    healthy_threshold: Option<i64>,
    unhealthy_threshold: Option<i64>,
    matcher: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    timeout: Option<String>,
    interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_warm: Option<String>,
    keep_failed: Option<String>,
    keep_releases: Option<i64>,
}

/// `[retention] keep_releases`: at least 1 (the live release's version is kept anyway, but
/// 0 reads like "keep nothing", which greenlight will not do).
pub fn keep_releases(value: Option<i64>) -> Result<usize, ConfigError> {
    match value {
        None => Ok(DEFAULT_KEEP_RELEASES),
        Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Some(n) => Err(ConfigError(format!(
            "[retention] keep_releases = {n} is out of range; use a number from 1 to 1000"
        ))),
    }
}

fn duration(key: &str, value: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(value) => parse_duration(key, value),
    }
}

/// A humantime duration, more than zero and at most [`MAX_DURATION`].
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let parsed = humantime::parse_duration(value).map_err(|e| {
        ConfigError(format!(
            "{key} = {value:?} is not a duration ({e}); write e.g. \"90s\", \"10m\" or \"1h\""
        ))
    })?;
    if parsed.is_zero() {
        return Err(ConfigError(format!("{key} must be longer than zero")));
    }
    if parsed > MAX_DURATION {
        return Err(ConfigError(format!(
            "{key} = {value:?} is longer than a year; give at most \"365d\""
        )));
    }
    Ok(parsed)
}

/// A pause: `"manual"` or a duration.
fn parse_pause(key: &str, value: Option<&str>) -> Result<Pause, ConfigError> {
    match value.map(str::trim) {
        None => Ok(Pause::None),
        Some("manual") => Ok(Pause::Manual),
        Some(value) => parse_duration(key, value).map(Pause::For),
    }
}

fn canary_plan(raw: &RawCanary) -> Result<CanarySpec, ConfigError> {
    let steps = raw
        .steps
        .iter()
        .enumerate()
        .map(|(n, step)| {
            let key = format!("[canary] steps[{}]", n + 1);
            let weight = u8::try_from(step.weight)
                .ok()
                .and_then(Percent::new)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{key} weight = {} is outside 0 to 100; weights are percent of traffic to \
                         the new release",
                        step.weight
                    ))
                })?;
            let pause = parse_pause(&format!("{key} pause"), step.pause.as_deref())?;
            Ok(Step { weight, pause })
        })
        .collect::<Result<Vec<Step>, ConfigError>>()?;
    let plan = Plan::new(Strategy::Canary, steps)
        .map_err(|e| ConfigError(format!("[canary] steps {e}")))?;
    let stickiness = raw
        .stickiness
        .as_deref()
        .map(|value| parse_duration("[canary] stickiness", value))
        .transpose()?;
    if let Some(d) = stickiness
        && (d < Duration::from_secs(1) || d > MAX_STICKINESS)
    {
        return Err(ConfigError(
            "[canary] stickiness must be between 1s and 7d (what ELB accepts)".into(),
        ));
    }
    Ok(CanarySpec { plan, stickiness })
}

/// One line from a TOML error: the message and where it is.
fn toml_error_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

impl Spec {
    /// Parses and validates the text of a `greenlight.toml`.
    pub fn parse(text: &str) -> Result<Spec, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(toml_error_line(text, &e)))?;
        let service = ServiceName::parse(&raw.service)?;

        let nginx = match raw.router.kind.as_deref() {
            None | Some("alb") => None,
            Some("nginx") => Some(nginx(&service, &raw.router)?),
            Some(other) => {
                return Err(ConfigError(format!(
                    "[router] kind = {other:?} is not a router; write \"alb\" (the default) or \"nginx\""
                )));
            }
        };
        if let Some(nginx) = nginx {
            let router = nginx_router(&service);
            return Spec::finish(raw, service, router, Some(nginx));
        }
        for (key, set) in [
            ("include", raw.router.include.is_some()),
            ("state", raw.router.state.is_some()),
            ("test", raw.router.test.is_some()),
            ("reload", raw.router.reload.is_some()),
            ("access_log", raw.router.access_log.is_some()),
            ("backends", raw.router.backends.is_some()),
            ("drain", raw.router.drain.is_some()),
            ("health_check", raw.router.health_check.is_some()),
        ] {
            if set {
                return Err(ConfigError(format!(
                    "[router] {key} is for kind = \"nginx\"; on an ALB the target group's own \
                     settings apply. Remove it, or set kind = \"nginx\""
                )));
            }
        }

        let router = match (&raw.router.listener_arn, &raw.router.rule_arn) {
            (Some(l), None) => RouterId::Listener(ListenerArn::parse(l)?),
            (None, Some(r)) => RouterId::Rule(RuleArn::parse(r)?),
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "[router] has both listener_arn and rule_arn; keep the one greenlight should flip"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(ConfigError(
                    "[router] needs listener_arn (flip the default action) or rule_arn (flip one rule)"
                        .into(),
                ));
            }
        };

        let target_groups = raw.router.target_groups.as_deref().unwrap_or_default();
        let [a, b] = target_groups else {
            return Err(ConfigError(format!(
                "[router] target_groups lists {} target groups; list exactly two, one per slot",
                target_groups.len()
            )));
        };
        let slots =
            Slots::new(TargetGroupArn::parse(a)?, TargetGroupArn::parse(b)?).ok_or_else(|| {
                ConfigError("[router] target_groups names the same target group twice; list the two different \
                 target groups of slots a and b"
                    .into())
            })?;

        let router_arn = match &router {
            RouterId::Listener(arn) => arn.as_str(),
            RouterId::Rule(arn) => arn.as_str(),
        };
        let router_region = parse_elb_arn(router_arn).map(|arn| arn.region.to_owned());
        let mut regions = vec![("the router", router_region)];
        for (slot, tg) in slots.iter() {
            regions.push((
                if slot.index() == 0 {
                    "target group a"
                } else {
                    "target group b"
                },
                tg.region().map(str::to_owned),
            ));
        }
        if let Some(region) = &raw.region {
            if region.trim().is_empty() {
                return Err(ConfigError(
                    "region is empty; remove it to use AWS_REGION or name a region".into(),
                ));
            }
            for (what, arn_region) in &regions {
                if let Some(arn_region) = arn_region.as_ref().filter(|r| *r != region) {
                    return Err(ConfigError(format!(
                        "{what} is in {arn_region} but region = {region:?}; make them agree"
                    )));
                }
            }
        } else if regions
            .iter()
            .any(|(_, r)| r.as_ref() != regions[0].1.as_ref())
        {
            return Err(ConfigError(
                "the router and target groups are in different regions; they must share one".into(),
            ));
        }
        Spec::finish(raw, service, (router, slots), None)
    }

    /// Everything after the router: the same for every kind of router.
    fn finish(
        raw: RawConfig,
        service: ServiceName,
        (router, slots): (RouterId, Slots),
        nginx: Option<NginxSpec>,
    ) -> Result<Spec, ConfigError> {
        if nginx.is_some() {
            nginx_limits(&raw)?;
        }
        let canary = raw.canary.as_ref().map(canary_plan).transpose()?;
        let strategy = match raw.strategy.as_deref() {
            None => Strategy::BlueGreen,
            Some(value) => Strategy::parse(value).ok_or_else(|| {
                ConfigError(format!(
                    "strategy = {value:?} is not a strategy; write \"bluegreen\" or \"canary\""
                ))
            })?,
        };
        if strategy == Strategy::Canary && canary.is_none() {
            return Err(ConfigError(
                "strategy = \"canary\" needs [canary] steps, e.g. steps = [{ weight = 10, pause = \"5m\" }, { weight = 100 }]".into(),
            ));
        }
        if strategy == Strategy::Canary {
            check_canary_router(&router)?;
        }
        let pause_before_flip = parse_pause(
            "[bluegreen] pause_before_flip",
            raw.bluegreen.pause_before_flip.as_deref(),
        )?;
        let lock_ttl = duration("[lock] ttl", raw.lock.ttl.as_deref(), DEFAULT_LOCK_TTL)?;
        if lock_ttl < MIN_LOCK_TTL {
            return Err(ConfigError("[lock] ttl must be at least 1s".into()));
        }

        let test_traffic = test_traffic(&raw.test_traffic, &router, raw.region.as_deref())?;
        if router.load_balancer_kind() == Some(LoadBalancerKind::Network)
            && test_traffic.listener.is_none()
        {
            return Err(ConfigError(
                "the router is a Network Load Balancer listener: AWS health-checks a target group \
                 only once a listener uses it, and there greenlight reaches green through a test \
                 listener until the flip; set [test_traffic] listener_arn to another listener of \
                 the same load balancer"
                    .into(),
            ));
        }
        let hooks = hooks(&raw.hooks)?;
        let analysis = analysis(&raw.analysis)?;

        Ok(Spec {
            service,
            nginx,
            region: raw.region,
            test_traffic,
            hooks,
            analysis,
            router,
            slots,
            strategy,
            blue_green: Plan::blue_green(Some(pause_before_flip)),
            canary,
            lock: LockSpec { ttl: lock_ttl },
            health: HealthSpec {
                timeout: duration(
                    "[health] timeout",
                    raw.health.timeout.as_deref(),
                    DEFAULT_HEALTH_TIMEOUT,
                )?,
                interval: duration(
                    "[health] interval",
                    raw.health.interval.as_deref(),
                    DEFAULT_POLL_INTERVAL,
                )?,
            },
            retention: RetentionSpec {
                keep_warm: duration(
                    "[retention] keep_warm",
                    raw.retention.keep_warm.as_deref(),
                    DEFAULT_KEEP_WARM,
                )?,
                keep_failed: duration(
                    "[retention] keep_failed",
                    raw.retention.keep_failed.as_deref(),
                    DEFAULT_KEEP_FAILED,
                )?,
                keep_releases: keep_releases(raw.retention.keep_releases)?,
            },
        })
    }

    /// The region every ARN in the config names (they agree after validation).
    pub fn arn_region(&self) -> Option<&str> {
        self.slots.iter().next().and_then(|(_, tg)| tg.region())
    }

    /// The plan a new release of `strategy` follows; bad input when the config has none.
    pub fn plan(&self, strategy: Strategy) -> Result<Plan, ConfigError> {
        match strategy {
            Strategy::BlueGreen => Ok(self.blue_green.clone()),
            Strategy::Canary => {
                check_canary_router(&self.router)?;
                self.canary.as_ref().map(|c| c.plan.clone()).ok_or_else(|| {
                    ConfigError(
                        "--strategy canary needs [canary] steps in the config, e.g. steps = [{ weight = 10, pause = \"5m\" }, { weight = 100 }]"
                            .into(),
                    )
                })
            }
        }
    }

    /// The stickiness greenlight sets while traffic is split, when the config asks for it.
    pub fn canary_stickiness(&self) -> Option<Duration> {
        self.canary.as_ref().and_then(|c| c.stickiness)
    }
}

fn test_traffic(
    raw: &RawTestTraffic,
    router: &RouterId,
    region: Option<&str>,
) -> Result<TestTrafficSpec, ConfigError> {
    if let Some(header) = &raw.header {
        super::test_traffic::check_header_name(header).map_err(ConfigError)?;
    }
    let listener = match &raw.listener_arn {
        None => None,
        Some(arn) => {
            let listener = ListenerArn::parse(arn)
                .map_err(|e| ConfigError(format!("[test_traffic] listener_arn: {}", e.0)))?;
            let test = RouterId::Listener(listener.clone());
            if &test == router {
                return Err(ConfigError(
                    "[test_traffic] listener_arn is the router itself; name another listener \
                     (another port) of the same load balancer"
                        .into(),
                ));
            }
            if test.load_balancer_arn() != router.load_balancer_arn() {
                return Err(ConfigError(
                    "[test_traffic] listener_arn belongs to another load balancer than the \
                     router; name a listener of the router's load balancer"
                        .into(),
                ));
            }
            if let (Some(region), Some(arn)) = (region, parse_elb_arn(listener.as_str()))
                && arn.region != region
            {
                return Err(ConfigError(format!(
                    "[test_traffic] listener_arn is in {} but region = {region:?}; make them agree",
                    arn.region
                )));
            }
            Some(listener)
        }
    };
    Ok(TestTrafficSpec {
        header: raw.header.clone(),
        listener,
    })
}

fn hooks(raw: &RawHooks) -> Result<HooksSpec, ConfigError> {
    for (key, commands) in [
        ("pre_traffic", &raw.pre_traffic),
        ("after_step", &raw.after_step),
        ("post_traffic", &raw.post_traffic),
    ] {
        if commands.iter().any(|c| c.trim().is_empty()) {
            return Err(ConfigError(format!(
                "[hooks] {key} has an empty command; remove it or give the command to run"
            )));
        }
    }
    Ok(HooksSpec {
        pre_traffic: raw.pre_traffic.clone(),
        after_step: raw.after_step.clone(),
        post_traffic: raw.post_traffic.clone(),
        timeout: duration(
            "[hooks] timeout",
            raw.timeout.as_deref(),
            DEFAULT_HOOK_TIMEOUT,
        )?,
    })
}

fn analysis(raw: &RawAnalysis) -> Result<AnalysisSpec, ConfigError> {
    if let Some(rate) = raw.max_5xx_rate
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(ConfigError(format!(
            "[analysis] max_5xx_rate = {rate} is not a share between 0 and 1 (0.01 is 1%)"
        )));
    }
    if let Some(ratio) = raw.max_5xx_ratio_vs_blue
        && !(ratio > 0.0 && ratio.is_finite())
    {
        return Err(ConfigError(format!(
            "[analysis] max_5xx_ratio_vs_blue = {ratio} must be more than 0 (2.0: twice blue's rate)"
        )));
    }
    let min_requests = match raw.min_requests {
        None => DEFAULT_MIN_REQUESTS,
        Some(n) => u64::try_from(n)
            .map_err(|_| ConfigError(format!("[analysis] min_requests = {n} must be 0 or more")))?,
    };
    let inconclusive = raw
        .inconclusive
        .as_deref()
        .map(|v| {
            Inconclusive::parse(v).ok_or_else(|| {
                ConfigError(format!(
                    "[analysis] inconclusive = {v:?} is not one of \"wait\", \"pass\", \"fail\""
                ))
            })
        })
        .transpose()?;
    if raw.alarms.iter().any(|a| a.trim().is_empty()) {
        return Err(ConfigError(
            "[analysis] alarms has an empty name; list the CloudWatch alarm names".into(),
        ));
    }
    Ok(AnalysisSpec {
        alarms: raw.alarms.clone(),
        max_5xx_rate: raw.max_5xx_rate,
        max_5xx_ratio_vs_blue: raw.max_5xx_ratio_vs_blue,
        max_p99_latency: raw
            .max_p99_latency
            .as_deref()
            .map(|v| parse_duration("[analysis] max_p99_latency", v))
            .transpose()?,
        min_requests,
        inconclusive,
    })
}

/// Canary on a Network Load Balancer waits for its own issue (AWS has weighted NLB target groups
/// since November 2025; greenlight uses them only to keep the previous release named after a flip).
fn nginx_router(service: &ServiceName) -> (RouterId, Slots) {
    let slots = Slots::new(
        nginx::slot_arn(service, Slot::A),
        nginx::slot_arn(service, Slot::B),
    )
    .expect("two slots have two names");
    (RouterId::Listener(nginx::router_arn(service)), slots)
}

/// `[router] kind = "nginx"`'s own keys.
fn nginx(service: &ServiceName, raw: &RawRouter) -> Result<NginxSpec, ConfigError> {
    for (key, set) in [
        ("listener_arn", raw.listener_arn.is_some()),
        ("rule_arn", raw.rule_arn.is_some()),
        ("target_groups", raw.target_groups.is_some()),
    ] {
        if set {
            return Err(ConfigError(format!(
                "[router] {key} is for an ALB; with kind = \"nginx\" the slots are [router] \
                 backends. Remove {key}"
            )));
        }
    }
    let path = |key: &str, value: &Option<String>| -> Result<Option<PathBuf>, ConfigError> {
        match value.as_deref().map(str::trim) {
            None => Ok(None),
            Some(p) if Path::new(p).is_absolute() => Ok(Some(PathBuf::from(p))),
            Some(p) => Err(ConfigError(format!(
                "[router] {key} = {p:?} is not an absolute path; greenlight runs from anywhere \
                 (pipelines, cron), so give the full path"
            ))),
        }
    };
    let include = path("include", &raw.include)?.ok_or_else(|| {
        ConfigError(
            "[router] kind = \"nginx\" needs include, the absolute path of the file greenlight \
             writes and nginx includes at http level, e.g. include = \"/etc/nginx/greenlight/web.conf\""
                .into(),
        )
    })?;
    let state = match path("state", &raw.state)? {
        Some(state) => state,
        None => {
            let name = include
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| service.to_string());
            include.with_file_name(format!(".{name}.greenlight.json"))
        }
    };
    if state == include {
        return Err(ConfigError(
            "[router] state is the include itself; give greenlight's records their own file".into(),
        ));
    }
    let command = |key: &str, value: &Option<Vec<String>>, default: &[&str]| {
        let argv: Vec<String> = match value {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(argv) => argv.clone(),
        };
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(ConfigError(format!(
                "[router] {key} is empty; give the command as a list, e.g. {key} = {default:?}"
            )));
        }
        Ok(argv)
    };
    let test = command("test", &raw.test, &["nginx", "-t"])?;
    let reload = command("reload", &raw.reload, &["nginx", "-s", "reload"])?;
    let access_log = path("access_log", &raw.access_log)?;
    let backends = raw.backends.as_deref().unwrap_or_default();
    let [a, b] = backends else {
        return Err(ConfigError(format!(
            "[router] backends lists {} slots; list exactly two lists of host:port, one per slot, \
             e.g. backends = [[\"127.0.0.1:8081\"], [\"127.0.0.1:8082\"]]",
            backends.len()
        )));
    };
    let parse = |slot: Slot, list: &[String]| -> Result<Vec<Backend>, ConfigError> {
        if list.is_empty() {
            return Err(ConfigError(format!(
                "[router] backends for slot {slot} is empty; list its host:port backends"
            )));
        }
        let mut out: Vec<Backend> = Vec::new();
        for value in list {
            let backend = Backend::parse(value)
                .map_err(|e| ConfigError(format!("[router] backends for slot {slot}: {e}")))?;
            if out.contains(&backend) {
                return Err(ConfigError(format!(
                    "[router] backends for slot {slot} lists {value} twice"
                )));
            }
            out.push(backend);
        }
        Ok(out)
    };
    let backends = [parse(Slot::A, a)?, parse(Slot::B, b)?];
    if let Some(shared) = backends[0].iter().find(|b| backends[1].contains(b)) {
        return Err(ConfigError(format!(
            "[router] backends lists {} in both slots; a slot's backends run one release, so \
             the two slots need different ones",
            shared.as_str()
        )));
    }
    if backends[0].len() != backends[1].len() {
        return Err(ConfigError(format!(
            "[router] backends has {} in slot a and {} in slot b; a new release runs at the live \
             one's capacity, so give both slots the same number",
            backends[0].len(),
            backends[1].len()
        )));
    }
    let drain = match raw.drain.as_deref() {
        None => nginx::DEFAULT_DRAIN,
        Some(value) => parse_duration("[router] drain", value)?,
    };
    let check = health_check(raw.health_check.as_ref())?;
    Ok(NginxSpec {
        include,
        state,
        test,
        reload,
        access_log,
        backends,
        check,
        drain,
    })
}

fn health_check(raw: Option<&RawHealthCheck>) -> Result<CheckSpec, ConfigError> {
    let mut check = CheckSpec::default();
    let Some(raw) = raw else {
        return Ok(check);
    };
    if let Some(path) = &raw.path {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError(format!(
                "[router.health_check] path = {path:?} is not a request path; write e.g. \"/healthz\""
            )));
        }
        check.path = path.clone();
    }
    if let Some(v) = &raw.interval {
        check.interval = parse_duration("[router.health_check] interval", v)?;
    }
    if let Some(v) = &raw.timeout {
        check.timeout = parse_duration("[router.health_check] timeout", v)?;
    }
    let threshold = |key: &str, value: Option<i64>, default: u32| match value {
        None => Ok(default),
        Some(n) if (1..=10).contains(&n) => Ok(n as u32),
        Some(n) => Err(ConfigError(format!(
            "[router.health_check] {key} = {n} is out of range; use 1 to 10 checks in a row"
        ))),
    };
    check.healthy_threshold = threshold(
        "healthy_threshold",
        raw.healthy_threshold,
        check.healthy_threshold,
    )?;
    check.unhealthy_threshold = threshold(
        "unhealthy_threshold",
        raw.unhealthy_threshold,
        check.unhealthy_threshold,
    )?;
    if let Some(matcher) = &raw.matcher {
        let bad = || {
            ConfigError(format!(
                "[router.health_check] matcher = {matcher:?} is not a status code or range; \
                 write e.g. \"200\" or \"200-399\""
            ))
        };
        let code = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
        };
        check.matcher = match matcher.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (code(lo).ok_or_else(bad)?, code(hi).ok_or_else(bad)?);
                if lo > hi {
                    return Err(bad());
                }
                (lo, hi)
            }
            None => {
                let c = code(matcher).ok_or_else(bad)?;
                (c, c)
            }
        };
    }
    Ok(check)
}

/// What the nginx router cannot do (yet): each is one clear line rather than a silent no-op.
fn nginx_limits(raw: &RawConfig) -> Result<(), ConfigError> {
    if raw.test_traffic.header.is_some() || raw.test_traffic.listener_arn.is_some() {
        return Err(ConfigError(
            "[test_traffic] is for an ALB; with kind = \"nginx\" reach the new release on its \
             own backends ([router] backends) before the flip. Remove [test_traffic]"
                .into(),
        ));
    }
    if !raw.analysis.alarms.is_empty() {
        return Err(ConfigError(
            "[analysis] alarms are CloudWatch alarms, which an nginx router has none of; use \
             max_5xx_rate, max_5xx_ratio_vs_blue or max_p99_latency, read from [router] access_log"
                .into(),
        ));
    }
    let compares = raw.analysis.max_5xx_rate.is_some()
        || raw.analysis.max_5xx_ratio_vs_blue.is_some()
        || raw.analysis.max_p99_latency.is_some();
    if compares && raw.router.access_log.is_none() {
        return Err(ConfigError(
            "[analysis] compares metrics, which an nginx router reads from its access log; set \
             [router] access_log to the file of `access_log <path> greenlight_<service>;`"
                .into(),
        ));
    }
    if raw.region.is_some() {
        return Err(ConfigError(
            "region is for an ALB; an nginx router runs where greenlight runs. Remove region"
                .into(),
        ));
    }
    Ok(())
}

fn check_canary_router(router: &RouterId) -> Result<(), ConfigError> {
    if router.load_balancer_kind() == Some(LoadBalancerKind::Network) {
        return Err(ConfigError(
            "the router is a Network Load Balancer listener, where greenlight does not run \
             canaries; release there with blue/green (strategy = \"bluegreen\", or --strategy \
             bluegreen)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/checkout/50dc6c495c0c9188/f2f7dc8efc522ab2";
    const TG_A: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/6d0ecf831eec9f09";
    const TG_B: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-b/7e0ecf831eec9f10";

    fn config(router: &str, extra: &str) -> String {
        format!(
            "service = \"checkout\"\nregion = \"us-east-1\"\n[router]\n{router}\ntarget_groups = [\"{TG_A}\", \"{TG_B}\"]\n{extra}"
        )
    }

    fn nginx_config(router: &str, extra: &str) -> String {
        format!(
            "service = \"web\"\n[router]\nkind = \"nginx\"\ninclude = \"/etc/nginx/greenlight/web.conf\"\n\
             backends = [[\"127.0.0.1:8081\"], [\"127.0.0.1:8082\"]]\n{router}\n{extra}"
        )
    }

    #[test]
    fn an_nginx_router_is_two_slots_of_backends_under_greenlights_own_arns() {
        let spec = Spec::parse(&nginx_config(
            "access_log = \"/var/log/nginx/web.log\"\ndrain = \"3s\"\n\
             [router.health_check]\npath = \"/healthz\"\nmatcher = \"200\"\nhealthy_threshold = 3",
            "[analysis]\nmax_5xx_rate = 0.01\n",
        ))
        .unwrap();
        let nginx = spec.nginx.as_ref().unwrap();
        assert_eq!(
            nginx.state,
            PathBuf::from("/etc/nginx/greenlight/.web.conf.greenlight.json")
        );
        assert_eq!(nginx.test, ["nginx", "-t"]);
        assert_eq!(nginx.reload, ["nginx", "-s", "reload"]);
        assert_eq!(nginx.drain, Duration::from_secs(3));
        assert_eq!(nginx.check.path, "/healthz");
        assert_eq!(nginx.check.matcher, (200, 200));
        assert_eq!(nginx.check.healthy_threshold, 3);
        assert_eq!(spec.slots.get(Slot::A).short_name(), "web-a");
        assert_eq!(spec.slots.get(Slot::B).short_name(), "web-b");
        assert_eq!(
            spec.router.load_balancer_kind(),
            Some(LoadBalancerKind::Application)
        );
        assert!(spec.router.to_string().starts_with("nginx ("));
    }

    #[test]
    fn nginx_config_problems_are_one_line_naming_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("include = \"relative.conf\"", "", "not an absolute path"),
            ("backends = [[\"127.0.0.1:8081\"]]", "", "exactly two lists"),
            (
                "backends = [[\"127.0.0.1:8081\"], [\"127.0.0.1:8081\"]]",
                "",
                "in both slots",
            ),
            (
                "backends = [[\"127.0.0.1:8081\", \"127.0.0.1:8083\"], [\"127.0.0.1:8082\"]]",
                "",
                "the same number",
            ),
            (
                "backends = [[\"127.0.0.1\"], [\"127.0.0.1:8082\"]]",
                "",
                "not host:port",
            ),
            (
                "backends = [[], [\"127.0.0.1:8082\"]]",
                "",
                "slot a is empty",
            ),
            ("reload = []", "", "[router] reload is empty"),
            (
                "target_groups = []",
                "",
                "[router] target_groups is for an ALB",
            ),
            ("", "[analysis]\nalarms = [\"x\"]", "CloudWatch alarms"),
            (
                "",
                "[analysis]\nmax_5xx_rate = 0.01",
                "set [router] access_log",
            ),
            (
                "",
                "[test_traffic]\nheader = \"X-Release\"",
                "[test_traffic] is for an ALB",
            ),
            (
                "[router.health_check]\nhealthy_threshold = 0",
                "",
                "1 to 10",
            ),
            (
                "[router.health_check]\nmatcher = \"600\"",
                "",
                "not a status code",
            ),
            (
                "[router.health_check]\npath = \"healthz\"",
                "",
                "not a request path",
            ),
            (
                "state = \"/etc/nginx/greenlight/web.conf\"",
                "",
                "the include itself",
            ),
        ];
        for (router, extra, expected) in cases {
            let mut text = nginx_config(router, extra);
            // A key given twice is TOML's own error; the case's value replaces the default.
            for key in ["include", "backends"] {
                if router.starts_with(key) {
                    let first = text
                        .lines()
                        .find(|l| l.starts_with(key))
                        .unwrap()
                        .to_owned();
                    text = text.replacen(&format!("{first}\n"), "", 1);
                }
            }
            let error = Spec::parse(&text).expect_err(router);
            assert!(
                error.0.contains(expected),
                "{router} / {extra}: {}",
                error.0
            );
            assert_eq!(error.0.lines().count(), 1, "{}", error.0);
        }
        let error = Spec::parse(&config(
            &format!("listener_arn = \"{LISTENER}\"\ninclude = \"/x.conf\""),
            "",
        ))
        .unwrap_err();
        assert!(error.0.contains("is for kind = \"nginx\""), "{}", error.0);
        let error = Spec::parse(&config(
            &format!("kind = \"haproxy\"\nlistener_arn = \"{LISTENER}\""),
            "",
        ))
        .unwrap_err();
        assert!(error.0.contains("not a router"), "{}", error.0);
    }

    #[test]
    fn full_config() {
        let spec = Spec::parse(&config(
            &format!("listener_arn = \"{LISTENER}\""),
            "[health]\ntimeout = \"3m\"\ninterval = \"250ms\"\n[retention]\nkeep_warm = \"2h\"\n",
        ))
        .unwrap();
        assert_eq!(spec.service.as_str(), "checkout");
        assert_eq!(spec.health.timeout, Duration::from_secs(180));
        assert_eq!(spec.health.interval, Duration::from_millis(250));
        assert_eq!(spec.retention.keep_warm, Duration::from_secs(7200));
        assert!(matches!(spec.router, RouterId::Listener(_)));
        assert_eq!(spec.arn_region(), Some("us-east-1"));
    }

    #[test]
    fn defaults() {
        let spec = Spec::parse(&config(&format!("listener_arn = \"{LISTENER}\""), "")).unwrap();
        assert_eq!(spec.health.timeout, DEFAULT_HEALTH_TIMEOUT);
        assert_eq!(spec.retention.keep_warm, DEFAULT_KEEP_WARM);
    }

    #[test]
    fn errors_are_one_line_and_name_the_fix() {
        let listener = format!("listener_arn = \"{LISTENER}\"");
        let cases: Vec<(String, &str)> = vec![
            (config("", ""), "needs listener_arn"),
            (
                config(
                    &format!(
                        "{listener}\nrule_arn = \"{}\"",
                        LISTENER.replace("listener/", "listener-rule/")
                    ),
                    "",
                ),
                "both listener_arn and rule_arn",
            ),
            (
                config(&listener, "[health]\ntimeout = \"soon\"\n"),
                "is not a duration",
            ),
            (
                config(&listener, "[health]\ntimeout = \"0s\"\n"),
                "longer than zero",
            ),
            (
                config(&listener, "[health]\ntimout = \"1m\"\n"),
                "unknown field `timout`",
            ),
            (
                config(&format!("listener_arn = \"{TG_A}\""), ""),
                "is not a listener ARN",
            ),
            (
                config(&listener, "").replace("us-east-1\"\n[", "eu-west-1\"\n["),
                "is in us-east-1 but region = \"eu-west-1\"",
            ),
            (
                config(&listener, "").replace(TG_B, TG_A),
                "same target group twice",
            ),
            (
                config(&listener, "").replace(&format!(", \"{TG_B}\""), ""),
                "exactly two",
            ),
            (
                config(&listener, "").replace("checkout\"", "check out\""),
                "contains ' '",
            ),
            ("service = ".into(), "line 1"),
        ];
        for (text, expected) in cases {
            let err = Spec::parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert!(!err.contains('\n'), "{err:?} is not one line");
        }
    }
}
