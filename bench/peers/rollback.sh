#!/usr/bin/env bash
# A rollback as a competent engineer writes it with the AWS CLI (bench/run.sh's peer).
#
#   bench/peers/rollback.sh LISTENER_ARN
#
# The listener forwards to two target groups, the live one at weight 100 and the previous
# release's (kept warm) at weight 0. Three calls: read the listener, check that the previous
# release's targets are all healthy (refuse otherwise: rolling back onto nothing is an outage),
# and swap the weights in one ModifyListener. Exit 0 when traffic moved, 1 otherwise.
set -euo pipefail
listener="$1"

# 1. Where traffic goes: the forward action's target groups, heaviest first.
read -r live previous < <(aws elbv2 describe-listeners --listener-arns "$listener" \
    --query 'Listeners[0].DefaultActions[0].ForwardConfig.TargetGroups | reverse(sort_by(@, &Weight))[].TargetGroupArn' \
    --output text)
[[ -n "${previous:-}" ]] || { echo "rollback: the listener forwards to one target group only" >&2; exit 1; }

# 2. The previous release must be healthy: every registered target healthy, at least one.
read -r registered healthy < <(aws elbv2 describe-target-health --target-group-arn "$previous" \
    --query "[length(TargetHealthDescriptions[?TargetHealth.State!='draining']), length(TargetHealthDescriptions[?TargetHealth.State=='healthy'])]" \
    --output text)
if (( healthy == 0 || healthy != registered )); then
    echo "rollback: previous target group has $healthy/$registered healthy targets; not rolling back" >&2
    exit 1
fi

# 3. The flip: all traffic to the previous release, the current one kept at weight 0.
aws elbv2 modify-listener --listener-arn "$listener" --output text --query 'Listeners[0].ListenerArn' \
    --default-actions "[{\"Type\":\"forward\",\"ForwardConfig\":{\"TargetGroups\":[{\"TargetGroupArn\":\"$previous\",\"Weight\":100},{\"TargetGroupArn\":\"$live\",\"Weight\":0}]}}]" \
    > /dev/null
echo "rolled back: traffic on $previous"
