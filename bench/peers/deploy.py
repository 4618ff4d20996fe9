#!/usr/bin/env python3
"""A blue/green deploy as a competent engineer writes it with boto3, in one process
(bench/run.sh's peer).

    python bench/peers/deploy.py LISTENER_ARN SERVICE RELEASE IMAGE_ID

The same seven calls as deploy.sh (see there), health polled every 2 s for 10 minutes at most.
The old group stays as it is (warm, for rollback). Exit 0 when released, 1 otherwise.
"""

import sys
import time

import boto3
from botocore.config import Config


def forward(first: str, second: str) -> list:
    return [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": first, "Weight": 100},
        {"TargetGroupArn": second, "Weight": 0},
    ]}}]


def heaviest_first(listener: dict) -> list:
    groups = listener["DefaultActions"][0].get("ForwardConfig", {}).get("TargetGroups", [])
    return [g["TargetGroupArn"] for g in
            sorted(groups, key=lambda g: g.get("Weight", 1), reverse=True)]


def main(listener: str, service: str, release: str, image: str) -> int:
    session = boto3.session.Session()
    config = Config(retries={"mode": "standard", "max_attempts": 5},
                    user_agent_appid="bench-boto3")
    elb = session.client("elbv2", config=config)
    asg = session.client("autoscaling", config=config)
    ec2 = session.client("ec2", config=config)
    green = f"{service}-{release}"

    groups = heaviest_first(elb.describe_listeners(ListenerArns=[listener])["Listeners"][0])
    if len(groups) != 2:
        print("deploy: the listener must forward to two target groups", file=sys.stderr)
        return 1
    live, idle = groups
    blues = [g for g in asg.describe_auto_scaling_groups(
        Filters=[{"Name": "tag:Name", "Values": [service]}])["AutoScalingGroups"]
        if live in g.get("TargetGroupARNs", [])]
    if not blues:
        print(f"deploy: no group of {service} in {live}", file=sys.stderr)
        return 1
    blue = blues[0]
    template = blue["LaunchTemplate"]
    version = ec2.create_launch_template_version(
        LaunchTemplateId=template["LaunchTemplateId"], SourceVersion=template["Version"],
        VersionDescription=release, LaunchTemplateData={"ImageId": image},
    )["LaunchTemplateVersion"]["VersionNumber"]
    desired = blue["DesiredCapacity"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=green,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": str(version)},
        MinSize=blue["MinSize"], MaxSize=blue["MaxSize"], DesiredCapacity=desired,
        VPCZoneIdentifier=blue["VPCZoneIdentifier"], TargetGroupARNs=[idle],
        HealthCheckType="ELB", HealthCheckGracePeriod=blue.get("HealthCheckGracePeriod", 0),
        Tags=[{"Key": "Name", "Value": service, "PropagateAtLaunch": True},
              {"Key": "release", "Value": release, "PropagateAtLaunch": True}],
    )
    deadline = time.monotonic() + 600
    while True:
        health = elb.describe_target_health(TargetGroupArn=idle)["TargetHealthDescriptions"]
        healthy = sum(d["TargetHealth"]["State"] == "healthy" for d in health)
        if healthy >= desired:
            break
        if time.monotonic() >= deadline:
            print(f"deploy: {green} has {healthy}/{desired} healthy targets after 10 minutes; "
                  "traffic not moved", file=sys.stderr)
            return 1
        time.sleep(2)
    elb.modify_listener(ListenerArn=listener, DefaultActions=forward(idle, live))
    now = heaviest_first(elb.describe_listeners(ListenerArns=[listener])["Listeners"][0])[0]
    if now != idle:
        print(f"deploy: the listener forwards to {now}, not {idle}", file=sys.stderr)
        return 1
    print(f"released {release}: {green} takes the traffic ({idle})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
