//! Test traffic: reaching the new release before any production request does. Either a listener
//! rule that forwards requests carrying a header (`X-Greenlight-Release: v3`) to green's target
//! group, or a test listener (another port of the same load balancer) whose default action
//! forwards to green. The rule is tagged as greenlight's, so one left behind by a crash is found
//! again and removed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::names::{ListenerArn, RuleArn, ServiceName, TargetGroupArn};

/// Tags on a test-traffic rule.
pub const SERVICE: &str = "greenlight:service";
pub const RELEASE: &str = "greenlight:release";
pub const TEST_TRAFFIC: &str = "greenlight:test-traffic";

/// The highest priority a listener rule may have.
pub const MAX_PRIORITY: u32 = 50_000;

/// A listener rule's condition, as ELBv2 models it, kept whole so it can be copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCondition {
    /// `host-header`, `path-pattern`, `http-header`, `http-request-method`, `query-string`,
    /// `source-ip`.
    pub field: String,
    /// The values (of the field's config, or the legacy `Values`).
    pub values: Vec<String>,
    /// For `http-header`: the header's name.
    pub header_name: Option<String>,
    /// For `query-string`: (key, value) pairs.
    pub query: Vec<(Option<String>, String)>,
}

impl RuleCondition {
    pub fn header(name: &str, value: &str) -> RuleCondition {
        RuleCondition {
            field: "http-header".into(),
            values: vec![value.to_owned()],
            header_name: Some(name.to_owned()),
            query: Vec::new(),
        }
    }
}

/// One rule of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerRule {
    pub arn: RuleArn,
    /// `None` for the listener's default rule.
    pub priority: Option<u32>,
    pub conditions: Vec<RuleCondition>,
    /// The target groups its forward action names, if it forwards.
    pub target_groups: Vec<TargetGroupArn>,
    pub tags: BTreeMap<String, String>,
}

impl ListenerRule {
    /// The release this rule carries test traffic for, when it is one of `service`'s.
    pub fn test_release(&self, service: &ServiceName) -> Option<&str> {
        (self.tags.get(TEST_TRAFFIC).map(String::as_str) == Some("true")
            && self.tags.get(SERVICE).map(String::as_str) == Some(service.as_str()))
        .then(|| self.tags.get(RELEASE).map(String::as_str))
        .flatten()
    }
}

/// The tags a test rule for `release` is created with.
pub fn rule_tags(service: &ServiceName, release: &str) -> Vec<(String, String)> {
    vec![
        (TEST_TRAFFIC.to_owned(), "true".to_owned()),
        (SERVICE.to_owned(), service.to_string()),
        (RELEASE.to_owned(), release.to_owned()),
    ]
}

/// The priority for a new test rule: a free one evaluated before `before` (the router's own
/// rule's priority, for a rule router) or before every rule (for a listener's default action),
/// so requests with the header reach the test rule first; the closest such one, leaving room
/// below. For a listener's default action with no room before every rule, the lowest free one
/// (the other rules serve other hosts and paths). `None` when there is none: behind a rule
/// router's own rule, a test rule would never match.
pub fn free_priority(rules: &[ListenerRule], before: Option<u32>) -> Option<u32> {
    let taken: Vec<u32> = rules.iter().filter_map(|r| r.priority).collect();
    let free = |p: &u32| !taken.contains(p);
    match before {
        Some(limit) => (1..limit).rev().find(free),
        None => {
            let limit = taken.iter().min().copied().unwrap_or(MAX_PRIORITY + 1);
            (1..limit)
                .rev()
                .find(free)
                .or_else(|| (1..=MAX_PRIORITY).find(free))
        }
    }
}

/// The conditions of a test rule: the router rule's own (a host or path it serves), plus the
/// header naming the release.
pub fn conditions(
    router_rule: Option<&ListenerRule>,
    header: &str,
    release: &str,
) -> Vec<RuleCondition> {
    let mut conditions: Vec<RuleCondition> = router_rule
        .map(|r| r.conditions.clone())
        .unwrap_or_default();
    conditions.push(RuleCondition::header(header, release));
    conditions
}

/// The listener a rule belongs to, from the rule's ARN:
/// `…:listener-rule/app/<lb>/<lb-id>/<listener-id>/<rule-id>` → `…:listener/app/<lb>/<lb-id>/<listener-id>`.
pub fn listener_of(rule: &RuleArn) -> Option<ListenerArn> {
    let (prefix, rest) = rule.as_str().split_once(":listener-rule/")?;
    let (listener, _rule_id) = rest.rsplit_once('/')?;
    ListenerArn::parse(&format!("{prefix}:listener/{listener}")).ok()
}

/// An HTTP header name ALB can match: 1 to 40 token characters.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > 40 || !name.chars().all(token) {
        return Err(format!(
            "[test_traffic] header = {name:?} is not an HTTP header name ALB can match (1 to 40 \
             letters, digits or -!#$%&'*+.^_`|~)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: Option<u32>) -> ListenerRule {
        ListenerRule {
            arn: RuleArn::parse(
                "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/lb/1/2/3",
            )
            .unwrap(),
            priority,
            conditions: vec![],
            target_groups: vec![],
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn priorities() {
        let rules = [rule(None), rule(Some(10)), rule(Some(9)), rule(Some(20))];
        // Before the router's rule at 10: the highest free number under it.
        assert_eq!(free_priority(&rules, Some(10)), Some(8));
        // A listener's default action: before every rule.
        assert_eq!(free_priority(&rules, None), Some(8));
        assert_eq!(free_priority(&[rule(None)], None), Some(50_000));
        // Nothing free before a rule router's rule: none (a test rule behind it never matches).
        assert_eq!(free_priority(&[rule(Some(1))], Some(1)), None);
        // Before every rule of a listener's default action: the lowest free one if need be.
        assert_eq!(free_priority(&[rule(Some(1))], None), Some(2));
    }

    #[test]
    fn a_rule_s_listener() {
        let rule = RuleArn::parse(
            "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/shop/50dc/f2f7/9a3b",
        )
        .unwrap();
        assert_eq!(
            listener_of(&rule).unwrap().as_str(),
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/shop/50dc/f2f7"
        );
    }

    #[test]
    fn header_names() {
        assert!(check_header_name("X-Greenlight-Release").is_ok());
        assert!(check_header_name("").is_err());
        assert!(check_header_name("X Release").is_err());
        assert!(check_header_name(&"x".repeat(41)).is_err());
    }

    #[test]
    fn test_rules_are_told_by_their_tags() {
        let service = ServiceName::parse("checkout").unwrap();
        let mut r = rule(Some(5));
        assert_eq!(r.test_release(&service), None);
        r.tags = rule_tags(&service, "v3").into_iter().collect();
        assert_eq!(r.test_release(&service), Some("v3"));
        assert_eq!(r.test_release(&ServiceName::parse("search").unwrap()), None);
    }
}
