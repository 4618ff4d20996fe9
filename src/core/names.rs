//! Names and identifiers, validated once at the edge so the rest of the code can trust them.

use std::fmt;

use serde::Serialize;

/// Why a name or ARN was rejected; the message names the problem and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// The service being released; part of fleet names and of every greenlight tag.
    ServiceName
);
string_newtype!(
    /// One release of the service, e.g. `v2` or `2026-11-25.3`; the green fleet is named
    /// `<service>-<release>`.
    ReleaseName
);
string_newtype!(
    /// An Auto Scaling group name.
    FleetName
);
string_newtype!(
    /// A target group ARN: one slot of the service.
    TargetGroupArn
);
string_newtype!(
    /// An ALB listener ARN.
    ListenerArn
);
string_newtype!(
    /// An ALB listener rule ARN.
    RuleArn
);
string_newtype!(
    /// An EC2 image (AMI) id.
    ImageId
);

/// Longest service or release name: keeps `<service>-<release>` well inside the 255 characters
/// an Auto Scaling group name allows and inside the 256 characters of a tag value.
pub const MAX_NAME_LEN: usize = 64;

fn check_name(kind: &str, value: &str, extra: &[char]) -> Result<(), NameError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c);
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(NameError(format!(
            "{kind} {value:?} must be 1 to {MAX_NAME_LEN} characters long"
        )));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        let extras: String = extra.iter().collect();
        return Err(NameError(format!(
            "{kind} {value:?} contains {bad:?}; use letters, digits, '-'{}",
            if extras.is_empty() {
                String::new()
            } else {
                format!(" and {extras:?}")
            }
        )));
    }
    if value.starts_with('-') {
        return Err(NameError(format!(
            "{kind} {value:?} must not start with '-'"
        )));
    }
    Ok(())
}

impl ServiceName {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        check_name("service", value, &[])?;
        Ok(Self(value.to_owned()))
    }
}

impl ReleaseName {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        check_name("release", value, &['.', '_'])?;
        Ok(Self(value.to_owned()))
    }
}

impl FleetName {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The name of the fleet that runs `release` of `service`.
    pub fn for_release(service: &ServiceName, release: &ReleaseName) -> Self {
        Self(format!("{service}-{release}"))
    }
}

impl ImageId {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let hex = value.strip_prefix("ami-").unwrap_or("");
        if hex.len() < 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(NameError(format!(
                "image id {value:?} is not an AMI id; expected ami- followed by 8 or 17 hex digits"
            )));
        }
        Ok(Self(value.to_owned()))
    }
}

/// The parts of an Elastic Load Balancing ARN that greenlight checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElbArn<'a> {
    pub region: &'a str,
    pub account: &'a str,
    /// `targetgroup`, `listener` or `listener-rule`.
    pub resource_type: &'a str,
    /// What follows the resource type, e.g. `checkout-a/6d0ecf831eec9f09`.
    pub resource: &'a str,
}

/// Splits `arn:<partition>:elasticloadbalancing:<region>:<account>:<type>/<rest>`.
pub fn parse_elb_arn(value: &str) -> Option<ElbArn<'_>> {
    let mut parts = value.splitn(6, ':');
    let (arn, _partition, service, region, account, tail) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn != "arn" || service != "elasticloadbalancing" || region.is_empty() {
        return None;
    }
    let (resource_type, resource) = tail.split_once('/')?;
    if resource.is_empty() {
        return None;
    }
    Some(ElbArn {
        region,
        account,
        resource_type,
        resource,
    })
}

fn parse_typed_arn(kind: &str, value: &str, resource_type: &str) -> Result<String, NameError> {
    match parse_elb_arn(value) {
        Some(arn) if arn.resource_type == resource_type => Ok(value.to_owned()),
        _ => Err(NameError(format!(
            "{kind} {value:?} is not a {kind}; expected arn:aws:elasticloadbalancing:<region>:<account>:{resource_type}/…"
        ))),
    }
}

impl TargetGroupArn {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        parse_typed_arn("target group ARN", value, "targetgroup").map(Self)
    }

    /// The target group's name, the middle part of its ARN, for people to read.
    pub fn short_name(&self) -> &str {
        parse_elb_arn(&self.0)
            .and_then(|arn| arn.resource.split('/').next())
            .unwrap_or(&self.0)
    }

    /// `targetgroup/<name>/<id>`: how CloudWatch and ALBRequestCountPerTarget labels name it.
    pub fn label_suffix(&self) -> Option<String> {
        parse_elb_arn(&self.0).map(|arn| format!("targetgroup/{}", arn.resource))
    }

    pub fn region(&self) -> Option<&str> {
        parse_elb_arn(&self.0).map(|arn| arn.region)
    }
}

impl ListenerArn {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        parse_typed_arn("listener ARN", value, "listener").map(Self)
    }
}

impl RuleArn {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        parse_typed_arn("listener rule ARN", value, "listener-rule").map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-a/6d0ecf831eec9f09";

    #[test]
    fn target_group_arn_parts() {
        let tg = TargetGroupArn::parse(TG).unwrap();
        assert_eq!(tg.short_name(), "checkout-a");
        assert_eq!(tg.region(), Some("us-east-1"));
        assert_eq!(
            tg.label_suffix().as_deref(),
            Some("targetgroup/checkout-a/6d0ecf831eec9f09")
        );
    }

    #[test]
    fn rejects_wrong_kinds_of_arn() {
        for bad in [
            "",
            "checkout-a",
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x/1",
            "arn:aws:ec2:us-east-1:1:targetgroup/x/1",
            "arn:aws:elasticloadbalancing::1:targetgroup/x/1",
        ] {
            assert!(TargetGroupArn::parse(bad).is_err(), "{bad}");
        }
        assert!(ListenerArn::parse(TG).is_err());
        assert!(
            RuleArn::parse("arn:aws:elasticloadbalancing:eu-west-1:1:listener-rule/app/a/b/c/d")
                .is_ok()
        );
    }

    #[test]
    fn names() {
        assert!(ReleaseName::parse("v2.1_rc-3").is_ok());
        assert!(ReleaseName::parse("").is_err());
        assert!(ReleaseName::parse("v2 beta").is_err());
        assert!(ReleaseName::parse("-v2").is_err());
        assert!(ReleaseName::parse(&"a".repeat(65)).is_err());
        assert!(ServiceName::parse("check.out").is_err());
        assert!(ImageId::parse("ami-12c6146b").is_ok());
        assert!(ImageId::parse("ami-0123456789abcdef0").is_ok());
        assert!(ImageId::parse("ami-xyz").is_err());
        assert!(ImageId::parse("i-12c6146b").is_err());
    }
}
