//! Elastic Load Balancing v2: the router's forward action, target groups and target health.

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupStickinessConfig, TargetGroupTuple,
};

use super::error::{Endpoint, missing};
use crate::core::cloud::{
    CloudError, CloudErrorKind, CloudResult, ROUTER_CHANGED, TargetGroupInfo,
};
use crate::core::health::{TargetHealth, TargetState};
use crate::core::names::TargetGroupArn;
use crate::core::router::{
    Forward, RouterAction, RouterId, RouterState, RouterWrite, Stickiness, Weight, same_forwards,
};

const DESCRIBE_LISTENERS: &str = "DescribeListeners";
const DESCRIBE_RULES: &str = "DescribeRules";
const MODIFY_LISTENER: &str = "ModifyListener";
const MODIFY_RULE: &str = "ModifyRule";
const DESCRIBE_TARGET_GROUPS: &str = "DescribeTargetGroups";
const DESCRIBE_TARGET_HEALTH: &str = "DescribeTargetHealth";

/// ELBv2 gives a forward target group without a weight the weight 1.
const DEFAULT_WEIGHT: i32 = 1;

pub(crate) struct Elbv2 {
    client: Client,
    endpoint: Endpoint,
}

impl Elbv2 {
    pub(crate) fn new(conf: &SdkConfig) -> Elbv2 {
        Elbv2 {
            client: Client::new(conf),
            endpoint: Endpoint::new(
                "Elastic Load Balancing",
                conf.endpoint_url(),
                conf.region().map(|r| r.as_ref()),
            ),
        }
    }

    pub(crate) async fn router(&self, id: &RouterId) -> CloudResult<RouterState> {
        let (operation, actions) = self.actions(id).await?;
        Ok(RouterState {
            id: id.clone(),
            action: read_action(operation, &actions)?,
        })
    }

    /// The write is conditional on the router still forwarding as `write.expected`: the read
    /// it needs anyway (to keep authentication actions) is the check. AWS answers a modify with
    /// the actions it stored, which are returned as read back.
    pub(crate) async fn route(
        &self,
        id: &RouterId,
        write: &RouterWrite,
    ) -> CloudResult<Vec<Forward>> {
        let (read_op, actions) = self.actions(id).await?;
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
        let op = DESCRIBE_TARGET_GROUPS;
        let out = self
            .client
            .describe_target_groups()
            .target_group_arns(arn.as_str())
            .send()
            .await
            .map_err(self.endpoint.on(op))?;
        let group = out.target_groups().first().ok_or_else(|| {
            CloudError::new(
                CloudErrorKind::NotFound,
                op,
                format!("target group {arn} not found"),
            )
        })?;
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
