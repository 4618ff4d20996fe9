//! `greenlight.toml`: parsed, validated, and turned into the [`Spec`] the rest of the code uses.

use std::time::Duration;

use serde::Deserialize;

use super::names::{ListenerArn, NameError, RuleArn, ServiceName, TargetGroupArn, parse_elb_arn};
use super::router::{RouterId, Slots};

pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_KEEP_WARM: Duration = Duration::from_secs(60 * 60);

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    service: String,
    region: Option<String>,
    router: RawRouter,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    retention: RawRetention,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    listener_arn: Option<String>,
    rule_arn: Option<String>,
    target_groups: Vec<String>,
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
}

fn duration(key: &str, value: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let parsed = humantime::parse_duration(value).map_err(|e| {
        ConfigError(format!(
            "{key} = {value:?} is not a duration ({e}); write e.g. \"90s\", \"10m\" or \"1h\""
        ))
    })?;
    if parsed.is_zero() {
        return Err(ConfigError(format!("{key} must be longer than zero")));
    }
    Ok(parsed)
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

        let [a, b] = raw.router.target_groups.as_slice() else {
            return Err(ConfigError(format!(
                "[router] target_groups lists {} target groups; list exactly two, one per slot",
                raw.router.target_groups.len()
            )));
        };
        let slots =
            Slots::new(TargetGroupArn::parse(a)?, TargetGroupArn::parse(b)?).ok_or_else(|| {
                ConfigError("[router] target_groups names the same target group twice".into())
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

        Ok(Spec {
            service,
            region: raw.region,
            router,
            slots,
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
            },
        })
    }

    /// The region every ARN in the config names (they agree after validation).
    pub fn arn_region(&self) -> Option<&str> {
        self.slots.iter().next().and_then(|(_, tg)| tg.region())
    }
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
