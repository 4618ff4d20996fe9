#!/usr/bin/env bash
# A blue/green deploy as a competent engineer writes it with the AWS CLI (bench/run.sh's peer).
#
#   bench/peers/deploy.sh LISTENER_ARN SERVICE RELEASE IMAGE_ID
#
# The listener forwards to two target groups, the live one at weight 100 and the idle one at 0
# (so the idle one is health-checked). The live Auto Scaling group carries the tag
# Name=SERVICE and is attached to the live target group. Seven calls, and one more per extra
# health poll:
#   1 describe-listeners              which target group is live, which idle
#   2 describe-auto-scaling-groups    the live group (tag Name=SERVICE, in the live target group)
#   3 create-launch-template-version  its launch template version with the new image
#   4 create-auto-scaling-group       SERVICE-RELEASE, sized as the live group, in the idle group
#   5 describe-target-health          until as many healthy targets as desired: every 2 s, for
#                                     10 minutes at most (`aws elbv2 wait target-in-service`
#                                     would poll every 15 s)
#   6 modify-listener                 all traffic to the idle target group, the live one at 0
#   7 describe-listeners              read back that the new group takes the traffic
# The old group stays as it is (warm, for rollback). Exit 0 when released, 1 otherwise.
set -euo pipefail
listener="$1" service="$2" release="$3" image="$4"
green="$service-$release"

# 1.
read -r live idle < <(aws elbv2 describe-listeners --listener-arns "$listener" \
    --query 'Listeners[0].DefaultActions[0].ForwardConfig.TargetGroups | reverse(sort_by(@, &Weight))[].TargetGroupArn' \
    --output text)
[[ -n "${idle:-}" ]] || { echo "deploy: the listener must forward to two target groups" >&2; exit 1; }

# 2.
read -r blue template version min max desired subnets grace < <(
    aws autoscaling describe-auto-scaling-groups --filters "Name=tag:Name,Values=$service" \
        --query "AutoScalingGroups[?contains(TargetGroupARNs, '$live')] | [0].[AutoScalingGroupName, LaunchTemplate.LaunchTemplateId, LaunchTemplate.Version, MinSize, MaxSize, DesiredCapacity, VPCZoneIdentifier, HealthCheckGracePeriod]" \
        --output text)
[[ "${blue:-None}" != None ]] || { echo "deploy: no group of $service in $live" >&2; exit 1; }

# 3.
new_version=$(aws ec2 create-launch-template-version --launch-template-id "$template" \
    --source-version "$version" --launch-template-data "{\"ImageId\":\"$image\"}" \
    --version-description "$release" \
    --query 'LaunchTemplateVersion.VersionNumber' --output text)

# 4.
aws autoscaling create-auto-scaling-group --auto-scaling-group-name "$green" \
    --launch-template "LaunchTemplateId=$template,Version=$new_version" \
    --min-size "$min" --max-size "$max" --desired-capacity "$desired" \
    --vpc-zone-identifier "$subnets" --target-group-arns "$idle" \
    --health-check-type ELB --health-check-grace-period "$grace" \
    --tags "Key=Name,Value=$service,PropagateAtLaunch=true" "Key=release,Value=$release,PropagateAtLaunch=true"

# 5.
deadline=$((SECONDS + 600))
while :; do
    healthy=$(aws elbv2 describe-target-health --target-group-arn "$idle" \
        --query "length(TargetHealthDescriptions[?TargetHealth.State=='healthy'])" --output text)
    (( healthy >= desired )) && break
    if (( SECONDS >= deadline )); then
        echo "deploy: $green has $healthy/$desired healthy targets after 10 minutes; traffic not moved" >&2
        exit 1
    fi
    sleep 2
done

# 6.
aws elbv2 modify-listener --listener-arn "$listener" --output text --query 'Listeners[0].ListenerArn' \
    --default-actions "[{\"Type\":\"forward\",\"ForwardConfig\":{\"TargetGroups\":[{\"TargetGroupArn\":\"$idle\",\"Weight\":100},{\"TargetGroupArn\":\"$live\",\"Weight\":0}]}}]" \
    > /dev/null

# 7.
now=$(aws elbv2 describe-listeners --listener-arns "$listener" \
    --query 'Listeners[0].DefaultActions[0].ForwardConfig.TargetGroups | reverse(sort_by(@, &Weight))[0].TargetGroupArn' \
    --output text)
[[ "$now" == "$idle" ]] || { echo "deploy: the listener forwards to $now, not $idle" >&2; exit 1; }
echo "released $release: $green takes the traffic ($idle)"
