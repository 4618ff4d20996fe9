//! Elastic Load Balancing v2: the router's forward action, target groups and target health,
//! listener rules (for test traffic) and the load balancer's DNS name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, HostHeaderConditionConfig,
    HttpHeaderConditionConfig, HttpRequestMethodConditionConfig, PathPatternConditionConfig,
    QueryStringConditionConfig, QueryStringKeyValuePair, Rule, RuleCondition as SdkCondition,
    SourceIpConditionConfig, Tag, TargetGroupAttribute, TargetGroupStickinessConfig,
    TargetGroupTuple,
};

use super::error::{Endpoint, missing};
use crate::core::cloud::{
    CloudError, CloudErrorKind, CloudResult, ListenerForward, ROUTER_CHANGED, TargetGroupInfo,
};
use crate::core::health::{TargetHealth, TargetState};
use crate::core::names::{ListenerArn, RuleArn, TargetGroupArn};
use crate::core::router::{
    Forward, RouterAction, RouterId, RouterState, RouterWrite, Stickiness, Weight, same_forwards,
};
use crate::core::test_traffic::{ListenerRule, RuleCondition};

const DESCRIBE_LISTENERS: &str = "DescribeListeners";
const DESCRIBE_RULES: &str = "DescribeRules";
const MODIFY_LISTENER: &str = "ModifyListener";
const MODIFY_RULE: &str = "ModifyRule";
const CREATE_RULE: &str = "CreateRule";
const DELETE_RULE: &str = "DeleteRule";
const DESCRIBE_TAGS: &str = "DescribeTags";
const DESCRIBE_LOAD_BALANCERS: &str = "DescribeLoadBalancers";
const DESCRIBE_TARGET_GROUPS: &str = "DescribeTargetGroups";
const DESCRIBE_TARGET_HEALTH: &str = "DescribeTargetHealth";
const DESCRIBE_TARGET_GROUP_ATTRIBUTES: &str = "DescribeTargetGroupAttributes";

/// The target group attribute that holds the deregistration delay, in seconds.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// AWS's deregistration delay for a target group that does not set one.
const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

/// The most resource ARNs one DescribeTags call takes.
const TAGS_PER_CALL: usize = 20;
/// How many times `listener_rules` reads the rules when one it listed is gone before its tags
/// are read (another runner deleted its test rule in between).
const RULE_READS: usize = 3;

/// ELBv2 gives a forward target group without a weight the weight 1.
const DEFAULT_WEIGHT: i32 = 1;

/// How old a read of a router may be for `route` to check its write against it instead of
/// reading again: the deciding pass's own observation, made moments before its write.
pub(crate) const ROUTER_READ_FRESH: Duration = Duration::from_secs(1);

pub(crate) struct Elbv2 {
    client: Client,
    endpoint: Endpoint,
    /// The last read of each router (listener or rule ARN): when, by which operation, and its
    /// actions. `route` checks and builds its write from it while it is fresh, which saves one
    /// call (and a round trip before every flip); any failure forgets it.
    last_read: Mutex<HashMap<String, RouterRead>>,
}

/// One read of a router's actions: when, and by which operation.
struct RouterRead {
    at: Instant,
    operation: &'static str,
    actions: Vec<Action>,
}

impl Elbv2 {
    pub(crate) fn new(conf: &SdkConfig) -> Elbv2 {
        Elbv2 {
            // Every call logged at -vv (src/aws/trace.rs).
            client: Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(conf)
                    .interceptor(super::trace::CallLog)
                    .build(),
            ),
            endpoint: Endpoint::new(
                "Elastic Load Balancing",
                conf.endpoint_url(),
                conf.region().map(|r| r.as_ref()),
            ),
            last_read: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, id: &RouterId, operation: &'static str, actions: &[Action]) {
        let mut reads = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
        reads.insert(
            id.to_string(),
            RouterRead {
                at: Instant::now(),
                operation,
                actions: actions.to_vec(),
            },
        );
    }

    fn forget(&self, id: &RouterId) {
        let mut reads = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
        reads.remove(&id.to_string());
    }

    /// The router's actions as read under [`ROUTER_READ_FRESH`] ago, else read now.
    async fn fresh_actions(&self, id: &RouterId) -> CloudResult<(&'static str, Vec<Action>)> {
        let cached = {
            let reads = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
            reads
                .get(&id.to_string())
                .filter(|read| read.at.elapsed() < ROUTER_READ_FRESH)
                .map(|read| (read.operation, read.actions.clone()))
        };
        match cached {
            Some(read) => Ok(read),
            None => self.actions(id).await,
        }
    }

    pub(crate) async fn router(&self, id: &RouterId) -> CloudResult<RouterState> {
        let (operation, actions) = self.actions(id).await?;
        self.remember(id, operation, &actions);
        Ok(RouterState {
            id: id.clone(),
            action: read_action(operation, &actions)?,
        })
    }

    /// The write is conditional on the router still forwarding as `write.expected`: the read
    /// it needs anyway (to keep authentication actions) is the check. That read is the deciding
    /// pass's own when it is under [`ROUTER_READ_FRESH`] old, else a new one. AWS answers a
    /// modify with the actions it stored, which are returned as read back.
    pub(crate) async fn route(
        &self,
        id: &RouterId,
        write: &RouterWrite,
    ) -> CloudResult<Vec<Forward>> {
        let routed = self.route_once(id, write).await;
        if routed.is_err() {
            // Whatever the router holds now, the next write reads it first.
            self.forget(id);
        }
        routed
    }

    async fn route_once(&self, id: &RouterId, write: &RouterWrite) -> CloudResult<Vec<Forward>> {
        let (read_op, actions) = self.fresh_actions(id).await?;
        let now = match read_action(read_op, &actions)? {
            RouterAction::Forward { forwards } => forwards,
            RouterAction::Other { .. } => Vec::new(),
        };
        if !same_forwards(&now, &write.expected) {
            return Err(CloudError::new(
                CloudErrorKind::Conflict,
                read_op,
                format!(
                    "{id} changed since greenlight read it (it forwards to {}); not writing",
                    describe(&now)
                ),
            )
            .with_code(ROUTER_CHANGED));
        }
        let actions = with_forwards(&actions, &write.forwards, write.stickiness);
        let (op, answered) = match id {
            RouterId::Listener(arn) => (
                MODIFY_LISTENER,
                self.client
                    .modify_listener()
                    .listener_arn(arn.as_str())
                    .set_default_actions(Some(actions))
                    .send()
                    .await
                    .map_err(self.endpoint.on(MODIFY_LISTENER))?
                    .listeners()
                    .first()
                    .map(|l| l.default_actions().to_vec()),
            ),
            RouterId::Rule(arn) => (
                MODIFY_RULE,
                self.client
                    .modify_rule()
                    .rule_arn(arn.as_str())
                    .set_actions(Some(actions))
                    .send()
                    .await
                    .map_err(self.endpoint.on(MODIFY_RULE))?
                    .rules()
                    .first()
                    .map(|r| r.actions().to_vec()),
            ),
        };
        let answered = answered.ok_or_else(|| missing(op, "its answer", "the modified actions"))?;
        self.remember(id, op, &answered);
        Ok(match read_action(op, &answered)? {
            RouterAction::Forward { forwards } => forwards,
            RouterAction::Other { .. } => Vec::new(),
        })
    }

    /// The listener's default actions or the rule's actions, with the operation that read them.
    async fn actions(&self, id: &RouterId) -> CloudResult<(&'static str, Vec<Action>)> {
        match id {
            RouterId::Listener(arn) => {
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(arn.as_str())
                    .send()
                    .await
                    .map_err(self.endpoint.on(DESCRIBE_LISTENERS))?;
                let listener = out.listeners().first().ok_or_else(|| {
                    CloudError::new(
                        CloudErrorKind::NotFound,
                        DESCRIBE_LISTENERS,
                        format!("listener {arn} not found"),
                    )
                })?;
                Ok((DESCRIBE_LISTENERS, listener.default_actions().to_vec()))
            }
            RouterId::Rule(arn) => {
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(arn.as_str())
                    .send()
                    .await
                    .map_err(self.endpoint.on(DESCRIBE_RULES))?;
                let rule = out.rules().first().ok_or_else(|| {
                    CloudError::new(
                        CloudErrorKind::NotFound,
                        DESCRIBE_RULES,
                        format!("rule {arn} not found"),
                    )
                })?;
                Ok((DESCRIBE_RULES, rule.actions().to_vec()))
            }
        }
    }

    pub(crate) async fn target_group(&self, arn: &TargetGroupArn) -> CloudResult<TargetGroupInfo> {
        let mut groups = self.target_groups(std::slice::from_ref(arn)).await?;
        Ok(groups.remove(0))
    }

    pub(crate) async fn target_groups(
        &self,
        arns: &[TargetGroupArn],
    ) -> CloudResult<Vec<TargetGroupInfo>> {
        let op = DESCRIBE_TARGET_GROUPS;
        let out = self
            .client
            .describe_target_groups()
            .set_target_group_arns(Some(arns.iter().map(|a| a.as_str().to_owned()).collect()))
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        arns.iter()
            .map(|arn| {
                let group = out
                    .target_groups()
                    .iter()
                    .find(|g| g.target_group_arn() == Some(arn.as_str()))
                    .ok_or_else(|| {
                        CloudError::new(
                            CloudErrorKind::NotFound,
                            op,
                            format!("target group {arn} not found"),
                        )
                    })?;
                target_group_info(arn, group)
            })
            .collect()
    }
}

fn target_group_info(
    arn: &TargetGroupArn,
    group: &aws_sdk_elasticloadbalancingv2::types::TargetGroup,
) -> CloudResult<TargetGroupInfo> {
    let op = DESCRIBE_TARGET_GROUPS;
    {
        Ok(TargetGroupInfo {
            arn: arn.clone(),
            name: group
                .target_group_name()
                .ok_or_else(|| missing(op, "a target group", "TargetGroupName"))?
                .to_owned(),
            target_type: group
                .target_type()
                .ok_or_else(|| missing(op, "a target group", "TargetType"))?
                .as_str()
                .to_owned(),
            vpc_id: group.vpc_id().map(str::to_owned),
            load_balancer_arns: group.load_balancer_arns().to_vec(),
        })
    }
}

impl Elbv2 {
    pub(crate) async fn target_health(
        &self,
        target_group: &TargetGroupArn,
    ) -> CloudResult<Vec<TargetHealth>> {
        let op = DESCRIBE_TARGET_HEALTH;
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(target_group.as_str())
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        out.target_health_descriptions()
            .iter()
            .map(|description| {
                let target_id = description
                    .target()
                    .and_then(|t| t.id())
                    .ok_or_else(|| missing(op, "a target", "Target.Id"))?;
                let health = description.target_health();
                Ok(TargetHealth {
                    target_id: target_id.to_owned(),
                    // A state this version does not know cannot count as healthy.
                    state: health
                        .and_then(|h| h.state())
                        .and_then(|s| TargetState::parse(s.as_str()))
                        .unwrap_or(TargetState::Unavailable),
                    reason: health
                        .and_then(|h| h.reason())
                        .map(|r| r.as_str().to_owned()),
                    description: health.and_then(|h| h.description()).map(str::to_owned),
                })
            })
            .collect()
    }
}

/// Listener rules, for test traffic, and the load balancer's address.
impl Elbv2 {
    pub(crate) async fn listener_rules(
        &self,
        listener: &ListenerArn,
    ) -> CloudResult<Vec<ListenerRule>> {
        let mut reads = 1;
        loop {
            let rules = self.describe_rules(listener).await?;
            let arns: Vec<&str> = rules.iter().filter_map(Rule::rule_arn).collect();
            match self.tags(&arns).await {
                Ok(mut tags) => {
                    return rules
                        .iter()
                        .map(|rule| listener_rule(DESCRIBE_RULES, rule, &mut tags))
                        .collect();
                }
                // A rule listed a moment ago is gone: the list is stale, so read it again.
                Err(e) if e.kind == CloudErrorKind::NotFound && reads < RULE_READS => reads += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Every rule of the listener, the default rule included: all pages (`Marker` /
    /// `NextMarker`).
    async fn describe_rules(&self, listener: &ListenerArn) -> CloudResult<Vec<Rule>> {
        let mut pages = self
            .client
            .describe_rules()
            .listener_arn(listener.as_str())
            .into_paginator()
            .send();
        let mut rules = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.endpoint.on(DESCRIBE_RULES))?;
            rules.extend(page.rules().iter().cloned());
        }
        Ok(rules)
    }

    /// The tags of each resource, by ARN, in batches of what DescribeTags takes.
    async fn tags(&self, arns: &[&str]) -> CloudResult<BTreeMap<String, BTreeMap<String, String>>> {
        let op = DESCRIBE_TAGS;
        let mut out = BTreeMap::new();
        for batch in arns.chunks(TAGS_PER_CALL) {
            let answer = self
                .client
                .describe_tags()
                .set_resource_arns(Some(batch.iter().map(|a| (*a).to_owned()).collect()))
                .send()
                .await
                .map_err(self.endpoint.on(op))?;
            for description in answer.tag_descriptions() {
                let arn = description
                    .resource_arn()
                    .ok_or_else(|| missing(op, "a tag description", "ResourceArn"))?;
                let tags = description
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
                    .collect();
                out.insert(arn.to_owned(), tags);
            }
        }
        Ok(out)
    }

    /// CreateRule with the conditions in their typed configs (never the legacy `Values`), one
    /// forward to `target_group`, and the tags in the same call, so the rule never exists
    /// untagged (which is why it also needs elasticloadbalancing:AddTags).
    pub(crate) async fn create_rule(
        &self,
        listener: &ListenerArn,
        priority: u32,
        conditions: &[RuleCondition],
        target_group: &TargetGroupArn,
        tags: &[(String, String)],
    ) -> CloudResult<RuleArn> {
        let op = CREATE_RULE;
        let conditions = conditions
            .iter()
            .map(|c| sdk_condition(op, c))
            .collect::<CloudResult<Vec<_>>>()?;
        let priority = i32::try_from(priority).map_err(|_| {
            CloudError::new(
                CloudErrorKind::InvalidRequest,
                op,
                format!("rule priority {priority} is out of range"),
            )
        })?;
        let out = self
            .client
            .create_rule()
            .listener_arn(listener.as_str())
            .priority(priority)
            .set_conditions(Some(conditions))
            .actions(
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .order(1)
                    .target_group_arn(target_group.as_str())
                    .build(),
            )
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        let arn = out
            .rules()
            .first()
            .and_then(Rule::rule_arn)
            .ok_or_else(|| missing(op, "its answer", "RuleArn"))?;
        RuleArn::parse(arn).map_err(|e| CloudError::new(CloudErrorKind::Other, op, e.0))
    }

    /// DeleteRule; a rule that is already gone counts as deleted.
    pub(crate) async fn delete_rule(&self, rule: &RuleArn) -> CloudResult<()> {
        match self
            .client
            .delete_rule()
            .rule_arn(rule.as_str())
            .send()
            .await
            .map_err(self.endpoint.on(DELETE_RULE))
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind == CloudErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn load_balancer_dns(&self, load_balancer_arn: &str) -> CloudResult<String> {
        let op = DESCRIBE_LOAD_BALANCERS;
        let out = self
            .client
            .describe_load_balancers()
            .load_balancer_arns(load_balancer_arn)
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        let balancer = out
            .load_balancers()
            .iter()
            .find(|b| b.load_balancer_arn() == Some(load_balancer_arn))
            .ok_or_else(|| {
                CloudError::new(
                    CloudErrorKind::NotFound,
                    op,
                    format!("load balancer {load_balancer_arn} not found"),
                )
            })?;
        balancer
            .dns_name()
            .map(str::to_owned)
            .ok_or_else(|| missing(op, "a load balancer", "DNSName"))
    }
}

/// What `cleanup` reads: a load balancer's listeners, every forward on a listener, and how
/// long a target group drains.
impl Elbv2 {
    pub(crate) async fn listeners(&self, load_balancer_arn: &str) -> CloudResult<Vec<ListenerArn>> {
        let op = DESCRIBE_LISTENERS;
        let mut pages = self
            .client
            .describe_listeners()
            .load_balancer_arn(load_balancer_arn)
            .into_paginator()
            .send();
        let mut listeners = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(self.endpoint.on(op))?;
            for listener in page.listeners() {
                let arn = listener
                    .listener_arn()
                    .ok_or_else(|| missing(op, "a listener", "ListenerArn"))?;
                listeners.push(
                    ListenerArn::parse(arn)
                        .map_err(|e| CloudError::new(CloudErrorKind::Other, op, e.0))?,
                );
            }
        }
        Ok(listeners)
    }

    /// The default rule's forward (owned by the listener) and each rule's, from DescribeRules;
    /// rules that end in anything but a forward (redirect, fixed response) have none.
    pub(crate) async fn listener_forwards(
        &self,
        listener: &ListenerArn,
    ) -> CloudResult<Vec<ListenerForward>> {
        let rules = self.describe_rules(listener).await?;
        rules
            .iter()
            .filter_map(|rule| rule_forward(DESCRIBE_RULES, listener, rule).transpose())
            .collect()
    }

    pub(crate) async fn deregistration_delay(
        &self,
        target_group: &TargetGroupArn,
    ) -> CloudResult<Duration> {
        let op = DESCRIBE_TARGET_GROUP_ATTRIBUTES;
        let out = self
            .client
            .describe_target_group_attributes()
            .target_group_arn(target_group.as_str())
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        deregistration_delay(op, out.attributes())
    }
}

/// The forward a rule ends in, owned by the rule, or by the listener for its default rule.
fn rule_forward(
    operation: &str,
    listener: &ListenerArn,
    rule: &Rule,
) -> CloudResult<Option<ListenerForward>> {
    let forwards = match read_action(operation, rule.actions())? {
        RouterAction::Forward { forwards } => forwards,
        RouterAction::Other { .. } => return Ok(None),
    };
    let default = rule.is_default() == Some(true) || rule.priority() == Some("default");
    let owner = if default {
        listener.as_str()
    } else {
        rule.rule_arn()
            .ok_or_else(|| missing(operation, "a rule", "RuleArn"))?
    };
    Ok(Some(ListenerForward {
        owner: owner.to_owned(),
        forwards,
    }))
}

/// The deregistration delay among a target group's attributes; AWS's default when absent.
fn deregistration_delay(
    operation: &str,
    attributes: &[TargetGroupAttribute],
) -> CloudResult<Duration> {
    let Some(value) = attributes
        .iter()
        .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
        .and_then(TargetGroupAttribute::value)
    else {
        return Ok(DEFAULT_DEREGISTRATION_DELAY);
    };
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            CloudError::new(
                CloudErrorKind::Other,
                operation,
                format!("AWS returned {DEREGISTRATION_DELAY} {value:?}, not a number of seconds"),
            )
        })
}

/// One rule as DescribeRules reports it, with its tags (taken out of `tags`).
fn listener_rule(
    operation: &str,
    rule: &Rule,
    tags: &mut BTreeMap<String, BTreeMap<String, String>>,
) -> CloudResult<ListenerRule> {
    let arn = rule
        .rule_arn()
        .ok_or_else(|| missing(operation, "a rule", "RuleArn"))?;
    let priority = match rule.priority() {
        _ if rule.is_default() == Some(true) => None,
        Some("default") => None,
        Some(p) => Some(p.parse::<u32>().map_err(|_| {
            CloudError::new(
                CloudErrorKind::Other,
                operation,
                format!("rule {arn} has priority {p:?}, not a number"),
            )
        })?),
        None => return Err(missing(operation, "a rule", "Priority")),
    };
    let conditions = rule
        .conditions()
        .iter()
        .map(|c| read_condition(operation, c))
        .collect::<CloudResult<Vec<_>>>()?;
    let mut target_groups: Vec<TargetGroupArn> = Vec::new();
    for action in rule.actions() {
        if action.r#type() != Some(&ActionTypeEnum::Forward) {
            continue;
        }
        let tuples = action
            .forward_config()
            .map(|c| c.target_groups())
            .unwrap_or_default();
        // AWS reports a plain forward both ways; a weighted one only in the ForwardConfig.
        let arns: Vec<&str> = if tuples.is_empty() {
            action.target_group_arn().into_iter().collect()
        } else {
            tuples.iter().filter_map(|t| t.target_group_arn()).collect()
        };
        for arn in arns {
            let group = parse_target_group(operation, arn)?;
            if !target_groups.contains(&group) {
                target_groups.push(group);
            }
        }
    }
    Ok(ListenerRule {
        arn: RuleArn::parse(arn)
            .map_err(|e| CloudError::new(CloudErrorKind::Other, operation, e.0))?,
        priority,
        conditions,
        target_groups,
        tags: tags.remove(arn).unwrap_or_default(),
    })
}

/// A condition kept whole: the values of the field's config, or the legacy `Values` when there
/// is no config (a rule created with `Values` only may be reported that way).
fn read_condition(operation: &str, c: &SdkCondition) -> CloudResult<RuleCondition> {
    let field = c
        .field()
        .ok_or_else(|| missing(operation, "a rule condition", "Field"))?;
    let configured: &[String] = match field {
        "host-header" => c.host_header_config().map(|h| h.values()),
        "path-pattern" => c.path_pattern_config().map(|p| p.values()),
        "http-header" => c.http_header_config().map(|h| h.values()),
        "http-request-method" => c.http_request_method_config().map(|m| m.values()),
        "source-ip" => c.source_ip_config().map(|s| s.values()),
        _ => None,
    }
    .unwrap_or_default();
    let values = if configured.is_empty() {
        c.values()
    } else {
        configured
    };
    Ok(RuleCondition {
        field: field.to_owned(),
        values: values.to_vec(),
        header_name: c
            .http_header_config()
            .and_then(|h| h.http_header_name())
            .map(str::to_owned),
        query: c
            .query_string_config()
            .map(|q| q.values())
            .unwrap_or_default()
            .iter()
            .map(|pair| {
                (
                    pair.key().map(str::to_owned),
                    pair.value().unwrap_or("").to_owned(),
                )
            })
            .collect(),
    })
}

/// A condition as CreateRule takes it: the field and its typed config.
fn sdk_condition(operation: &str, c: &RuleCondition) -> CloudResult<SdkCondition> {
    let values = Some(c.values.clone());
    let condition = SdkCondition::builder().field(&c.field);
    let condition = match c.field.as_str() {
        "host-header" => condition.host_header_config(
            HostHeaderConditionConfig::builder()
                .set_values(values)
                .build(),
        ),
        "path-pattern" => condition.path_pattern_config(
            PathPatternConditionConfig::builder()
                .set_values(values)
                .build(),
        ),
        "http-header" => {
            let name = c.header_name.as_deref().ok_or_else(|| {
                CloudError::new(
                    CloudErrorKind::InvalidRequest,
                    operation,
                    "an http-header condition needs a header name",
                )
            })?;
            condition.http_header_config(
                HttpHeaderConditionConfig::builder()
                    .http_header_name(name)
                    .set_values(values)
                    .build(),
            )
        }
        "http-request-method" => condition.http_request_method_config(
            HttpRequestMethodConditionConfig::builder()
                .set_values(values)
                .build(),
        ),
        "source-ip" => condition.source_ip_config(
            SourceIpConditionConfig::builder()
                .set_values(values)
                .build(),
        ),
        "query-string" => condition.query_string_config(
            QueryStringConditionConfig::builder()
                .set_values(Some(
                    c.query
                        .iter()
                        .map(|(key, value)| {
                            QueryStringKeyValuePair::builder()
                                .set_key(key.clone())
                                .value(value)
                                .build()
                        })
                        .collect(),
                ))
                .build(),
        ),
        other => {
            return Err(CloudError::new(
                CloudErrorKind::InvalidRequest,
                operation,
                format!("cannot create a rule condition on field {other:?}"),
            ));
        }
    };
    Ok(condition.build())
}

/// Actions that end the chain; authentication and JWT validation come before one of them.
fn is_terminal(action: &Action) -> bool {
    matches!(
        action.r#type(),
        Some(ActionTypeEnum::Forward | ActionTypeEnum::Redirect | ActionTypeEnum::FixedResponse)
    )
}

/// What the router does with a request that passed any authentication in front.
fn read_action(operation: &str, actions: &[Action]) -> CloudResult<RouterAction> {
    let mut ordered: Vec<&Action> = actions.iter().collect();
    ordered.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
    let Some(terminal) = ordered.iter().find(|a| is_terminal(a)) else {
        let action_type = ordered
            .last()
            .and_then(|a| a.r#type())
            .map_or("none", |t| t.as_str());
        return Ok(RouterAction::Other {
            action_type: action_type.to_owned(),
        });
    };
    if terminal.r#type() != Some(&ActionTypeEnum::Forward) {
        let action_type = terminal.r#type().map_or("none", |t| t.as_str());
        return Ok(RouterAction::Other {
            action_type: action_type.to_owned(),
        });
    }
    let tuples = terminal
        .forward_config()
        .map(|c| c.target_groups())
        .unwrap_or_default();
    // AWS reports a plain forward both ways; the ForwardConfig carries the weights.
    if tuples.is_empty() {
        let arn = terminal
            .target_group_arn()
            .ok_or_else(|| missing(operation, "a forward action", "TargetGroupArn"))?;
        return Ok(RouterAction::Forward {
            forwards: vec![Forward {
                target_group: parse_target_group(operation, arn)?,
                weight: Weight::ALL,
            }],
        });
    }
    let forwards = tuples
        .iter()
        .map(|tuple| {
            let arn = tuple
                .target_group_arn()
                .ok_or_else(|| missing(operation, "a forward target", "TargetGroupArn"))?;
            let raw = tuple.weight().unwrap_or(DEFAULT_WEIGHT);
            let weight = u16::try_from(raw)
                .ok()
                .and_then(Weight::new)
                .ok_or_else(|| {
                    CloudError::new(
                        CloudErrorKind::Other,
                        operation,
                        format!(
                            "target group {arn} has weight {raw}, outside 0 to {}",
                            Weight::MAX
                        ),
                    )
                })?;
            Ok(Forward {
                target_group: parse_target_group(operation, arn)?,
                weight,
            })
        })
        .collect::<CloudResult<Vec<_>>>()?;
    Ok(RouterAction::Forward { forwards })
}

fn describe(forwards: &[Forward]) -> String {
    let parts: Vec<String> = forwards
        .iter()
        .map(|f| format!("{} {}", f.target_group.short_name(), f.weight.get()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The stickiness to send: as it was, or as the write says.
fn stickiness(
    previous: Option<&ForwardActionConfig>,
    change: Stickiness,
) -> Option<TargetGroupStickinessConfig> {
    match change {
        Stickiness::Keep => previous.and_then(|p| p.target_group_stickiness_config().cloned()),
        Stickiness::On(seconds) => Some(
            TargetGroupStickinessConfig::builder()
                .enabled(true)
                .duration_seconds(i32::try_from(seconds).unwrap_or(i32::MAX))
                .build(),
        ),
        Stickiness::Off => Some(
            TargetGroupStickinessConfig::builder()
                .enabled(false)
                .build(),
        ),
    }
}

/// `actions` with the terminal action replaced by a weighted forward to `forwards`: the
/// actions in front of it (authentication) stay as they were, and the forward's stickiness as
/// `change` says.
fn with_forwards(actions: &[Action], forwards: &[Forward], change: Stickiness) -> Vec<Action> {
    let tuples: Vec<TargetGroupTuple> = forwards
        .iter()
        .map(|f| {
            TargetGroupTuple::builder()
                .target_group_arn(f.target_group.as_str())
                .weight(i32::from(f.weight.get()))
                .build()
        })
        .collect();
    let forward = |order: Option<i32>, previous: Option<&ForwardActionConfig>| {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .set_order(order)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(tuples.clone()))
                    .set_target_group_stickiness_config(stickiness(previous, change))
                    .build(),
            )
            .build()
    };
    let mut replaced = false;
    let mut out: Vec<Action> = actions
        .iter()
        .map(|action| {
            if is_terminal(action) {
                replaced = true;
                forward(action.order(), action.forward_config())
            } else {
                resendable(action)
            }
        })
        .collect();
    if !replaced {
        let order = actions
            .iter()
            .filter_map(Action::order)
            .max()
            .map(|o| o + 1);
        out.push(forward(order, None));
    }
    out
}

/// An action as DescribeListeners returned it, made acceptable to ModifyListener: AWS never
/// returns an OIDC client secret, so the existing one must be asked for explicitly.
fn resendable(action: &Action) -> Action {
    let mut action = action.clone();
    if let Some(oidc) = action.authenticate_oidc_config.as_mut()
        && oidc.client_secret.is_none()
    {
        oidc.use_existing_client_secret = Some(true);
    }
    action
}

fn parse_target_group(operation: &str, arn: &str) -> CloudResult<TargetGroupArn> {
    TargetGroupArn::parse(arn).map_err(|e| CloudError::new(CloudErrorKind::Other, operation, e.0))
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::types::{
        AuthenticateOidcActionConfig, FixedResponseActionConfig, TargetGroupStickinessConfig,
    };

    use super::*;

    const A: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1";
    const B: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/2";

    fn tg(arn: &str) -> TargetGroupArn {
        TargetGroupArn::parse(arn).unwrap()
    }

    fn weighted(pairs: &[(&str, Option<i32>)]) -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(2)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(
                        pairs
                            .iter()
                            .map(|(arn, w)| {
                                TargetGroupTuple::builder()
                                    .target_group_arn(*arn)
                                    .set_weight(*w)
                                    .build()
                            })
                            .collect(),
                    ))
                    .target_group_stickiness_config(
                        TargetGroupStickinessConfig::builder()
                            .enabled(true)
                            .duration_seconds(300)
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    fn oidc() -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .order(1)
            .authenticate_oidc_config(
                AuthenticateOidcActionConfig::builder()
                    .issuer("https://idp")
                    .client_id("app")
                    .build(),
            )
            .build()
    }

    fn forwards(pairs: &[(&str, u16)]) -> Vec<Forward> {
        pairs
            .iter()
            .map(|(arn, w)| Forward {
                target_group: tg(arn),
                weight: Weight::new(*w).unwrap(),
            })
            .collect()
    }

    #[test]
    fn reads_weights_with_missing_weight_as_one() {
        let action = read_action("Op", &[oidc(), weighted(&[(A, Some(0)), (B, None)])]).unwrap();
        assert_eq!(
            action,
            RouterAction::Forward {
                forwards: forwards(&[(A, 0), (B, 1)])
            }
        );
    }

    #[test]
    fn reads_plain_target_group_as_weight_one() {
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(A)
            .build();
        assert_eq!(
            read_action("Op", &[plain]).unwrap(),
            RouterAction::Forward {
                forwards: forwards(&[(A, 1)])
            }
        );
    }

    #[test]
    fn reads_other_terminal_actions_as_other() {
        let fixed = Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .order(2)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("503")
                    .build(),
            )
            .build();
        assert_eq!(
            read_action("Op", &[oidc(), fixed]).unwrap(),
            RouterAction::Other {
                action_type: "fixed-response".into()
            }
        );
    }

    #[test]
    fn rejects_weights_out_of_range() {
        let err = read_action("DescribeRules", &[weighted(&[(A, Some(1000))])]).unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::Other);
        assert_eq!(err.operation, "DescribeRules");
    }

    #[test]
    fn rewrite_keeps_authentication_order_and_stickiness() {
        let before = [oidc(), weighted(&[(A, Some(1)), (B, Some(0))])];
        let after = with_forwards(&before, &forwards(&[(A, 0), (B, 1)]), Stickiness::Keep);
        assert_eq!(after.len(), 2);
        let auth = after[0].authenticate_oidc_config().unwrap();
        assert_eq!(auth.use_existing_client_secret(), Some(true));
        assert_eq!(auth.client_id(), Some("app"));
        assert_eq!(after[0].order(), Some(1));
        let forward = &after[1];
        assert_eq!(forward.order(), Some(2));
        assert_eq!(forward.target_group_arn(), None);
        let config = forward.forward_config().unwrap();
        assert_eq!(
            config.target_group_stickiness_config(),
            before[1]
                .forward_config()
                .unwrap()
                .target_group_stickiness_config()
        );
        let weights: Vec<_> = config
            .target_groups()
            .iter()
            .map(|t| (t.target_group_arn().unwrap(), t.weight().unwrap()))
            .collect();
        assert_eq!(weights, [(A, 0), (B, 1)]);
        assert_eq!(
            read_action("Op", &after).unwrap(),
            RouterAction::Forward {
                forwards: forwards(&[(A, 0), (B, 1)])
            }
        );
    }

    #[test]
    fn rewrite_turns_stickiness_on_and_off_as_asked() {
        let before = [weighted(&[(A, Some(100)), (B, Some(0))])];
        let on = with_forwards(&before, &forwards(&[(A, 90), (B, 10)]), Stickiness::On(600));
        let config = on[0].forward_config().unwrap();
        let sticky = config.target_group_stickiness_config().unwrap();
        assert_eq!(sticky.enabled(), Some(true));
        assert_eq!(sticky.duration_seconds(), Some(600));
        let off = with_forwards(&on, &forwards(&[(A, 100), (B, 0)]), Stickiness::Off);
        let sticky = off[0]
            .forward_config()
            .unwrap()
            .target_group_stickiness_config()
            .unwrap();
        assert_eq!(sticky.enabled(), Some(false));
    }

    fn condition(field: &str, values: &[&str]) -> RuleCondition {
        RuleCondition {
            field: field.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            header_name: None,
            query: vec![],
        }
    }

    #[test]
    fn conditions_go_in_typed_configs_and_read_back_whole() {
        let conditions = [
            condition("host-header", &["shop.example.com", "*.shop.example.com"]),
            condition("path-pattern", &["/api/*"]),
            RuleCondition::header("X-Greenlight-Release", "v3"),
            condition("http-request-method", &["GET", "HEAD"]),
            condition("source-ip", &["10.0.0.0/8"]),
            RuleCondition {
                query: vec![(Some("canary".into()), "1".into()), (None, "beta".into())],
                ..condition("query-string", &[])
            },
        ];
        for c in &conditions {
            let sent = sdk_condition("CreateRule", c).unwrap();
            assert_eq!(sent.field(), Some(c.field.as_str()));
            assert!(sent.values().is_empty(), "legacy Values sent: {sent:?}");
            assert_eq!(&read_condition("DescribeRules", &sent).unwrap(), c);
        }
        let header = sdk_condition("CreateRule", &conditions[2]).unwrap();
        let config = header.http_header_config().unwrap();
        assert_eq!(config.http_header_name(), Some("X-Greenlight-Release"));
        assert_eq!(config.values(), ["v3"]);
    }

    #[test]
    fn legacy_values_are_read_when_there_is_no_config() {
        let legacy = SdkCondition::builder()
            .field("path-pattern")
            .values("/api/*")
            .build();
        assert_eq!(
            read_condition("DescribeRules", &legacy).unwrap(),
            condition("path-pattern", &["/api/*"])
        );
        // AWS reports a host-header condition both ways; they agree, and the config is read.
        let both = SdkCondition::builder()
            .field("host-header")
            .values("a.example.com")
            .host_header_config(
                HostHeaderConditionConfig::builder()
                    .values("a.example.com")
                    .values("b.example.com")
                    .build(),
            )
            .build();
        assert_eq!(
            read_condition("DescribeRules", &both).unwrap().values,
            ["a.example.com", "b.example.com"]
        );
    }

    #[test]
    fn conditions_create_rule_cannot_take_are_refused() {
        let nameless = RuleCondition {
            header_name: None,
            ..RuleCondition::header("X", "v")
        };
        for c in [condition("cookie", &["x"]), nameless] {
            let err = sdk_condition("CreateRule", &c).unwrap_err();
            assert_eq!(err.kind, CloudErrorKind::InvalidRequest, "{c:?}");
        }
    }

    const RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/lb/1/2/3";

    fn sdk_rule(priority: &str, default: bool, actions: Vec<Action>) -> Rule {
        Rule::builder()
            .rule_arn(RULE)
            .priority(priority)
            .is_default(default)
            .conditions(
                SdkCondition::builder()
                    .field("path-pattern")
                    .values("/x")
                    .build(),
            )
            .set_actions(Some(actions))
            .build()
    }

    #[test]
    fn rules_read_with_priority_target_groups_and_tags() {
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(A)
            .build();
        let mut tags = BTreeMap::from([(
            RULE.to_owned(),
            BTreeMap::from([("greenlight:release".to_owned(), "v3".to_owned())]),
        )]);
        let default = listener_rule(
            "DescribeRules",
            &sdk_rule("default", true, vec![plain]),
            &mut tags,
        )
        .unwrap();
        assert_eq!(default.priority, None);
        assert_eq!(default.target_groups, [tg(A)]);
        assert_eq!(
            default.tags.get("greenlight:release").map(String::as_str),
            Some("v3")
        );

        let split = weighted(&[(A, Some(90)), (B, Some(10))]);
        let rule = listener_rule(
            "DescribeRules",
            &sdk_rule("12", false, vec![oidc(), split]),
            &mut tags,
        )
        .unwrap();
        assert_eq!(rule.priority, Some(12));
        assert_eq!(rule.target_groups, [tg(A), tg(B)]);
        assert_eq!(rule.conditions, [condition("path-pattern", &["/x"])]);
        assert!(rule.tags.is_empty());

        let fixed = Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .build();
        let rule = listener_rule(
            "DescribeRules",
            &sdk_rule("3", false, vec![fixed]),
            &mut tags,
        )
        .unwrap();
        assert!(rule.target_groups.is_empty());

        let err = listener_rule(
            "DescribeRules",
            &sdk_rule("first", false, vec![]),
            &mut tags,
        )
        .unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::Other);
    }

    const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1/2";

    #[test]
    fn rule_forwards_are_owned_by_the_rule_or_the_listener() {
        let listener = ListenerArn::parse(LISTENER).unwrap();
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(A)
            .build();
        let default = rule_forward(
            "DescribeRules",
            &listener,
            &sdk_rule("default", true, vec![plain]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(default.owner, LISTENER);
        assert_eq!(default.forwards, forwards(&[(A, 1)]));

        let split = weighted(&[(A, Some(90)), (B, None)]);
        let rule = rule_forward(
            "DescribeRules",
            &listener,
            &sdk_rule("7", false, vec![oidc(), split]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(rule.owner, RULE);
        assert_eq!(rule.forwards, forwards(&[(A, 90), (B, 1)]));

        let fixed = Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .build();
        assert_eq!(
            rule_forward(
                "DescribeRules",
                &listener,
                &sdk_rule("8", false, vec![fixed])
            )
            .unwrap(),
            None
        );
    }

    fn attribute(key: &str, value: &str) -> TargetGroupAttribute {
        TargetGroupAttribute::builder()
            .key(key)
            .value(value)
            .build()
    }

    #[test]
    fn deregistration_delay_is_read_or_defaults_to_300_seconds() {
        let op = "DescribeTargetGroupAttributes";
        let attributes = [
            attribute("stickiness.enabled", "false"),
            attribute("deregistration_delay.timeout_seconds", "45"),
        ];
        assert_eq!(
            deregistration_delay(op, &attributes).unwrap(),
            Duration::from_secs(45)
        );
        assert_eq!(
            deregistration_delay(op, &attributes[..1]).unwrap(),
            Duration::from_secs(300)
        );
        let err = deregistration_delay(
            op,
            &[attribute("deregistration_delay.timeout_seconds", "soon")],
        )
        .unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::Other);
        assert_eq!(err.operation, op);
    }

    #[test]
    fn rewrite_replaces_a_plain_forward_without_sending_its_arn() {
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(1)
            .target_group_arn(A)
            .build();
        let after = with_forwards(&[plain], &forwards(&[(B, 1), (A, 0)]), Stickiness::Keep);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].target_group_arn(), None);
        assert_eq!(after[0].order(), Some(1));
        assert_eq!(after[0].forward_config().unwrap().target_groups().len(), 2);
    }
}
