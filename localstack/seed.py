#!/usr/bin/env python3
"""Seed a sample blue/green-ready service into an AWS emulator (greenlight's, or LocalStack).

    AWS_ENDPOINT_URL=http://127.0.0.1:4566 python localstack/seed.py [--service checkout]
        [--region us-east-1] [--config PATH] [--rule] [--test-listener | --nlb] [--capacity 2]
        [--deregistration-delay 5] [--health-timeout 2m] [--keep-warm 1h]

Creates a VPC with two subnets in two AZs, a security group, an internet-facing ALB with two
instance target groups (slots a and b), an HTTP:80 listener forwarding to slot a (optionally a
host-header rule too, and an HTTP:8080 test listener), a launch template, and the blue ASG
`<service>-blue` attached to slot a with the settings a production group tends to carry
(policies, hook, schedule, metrics, tags). With `--nlb` the service is behind a Network Load
Balancer instead: TCP target groups, a TCP:80 listener and a TCP:8080 test listener.

Prints one JSON object describing what it made on stdout; `--config` also writes a
greenlight.toml for it. Errors: one line on stderr, exit status 1.

It only ever talks to the endpoint named by AWS_ENDPOINT_URL and refuses to run without one, so
it cannot create resources in a real AWS account by accident.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from reexec import use_venv_if_needed

USER_DATA = """#!/bin/bash
# Sample user data: what a real service's launch template would carry.
set -euo pipefail
mkdir -p /var/www && echo ok > /var/www/health
cd /var/www && nohup python3 -m http.server 80 >/var/log/app.log 2>&1 &
"""

# AWS caps load balancer and target group names at 32 characters.
MAX_ELB_NAME = 32
# The test listener's port (--test-listener, --nlb).
TEST_PORT = 8080


class SeedError(Exception):
    """A failure with a message fit for one line on stderr."""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors follow the script's contract too: one line on stderr, exit status 1."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"seed.py: {message} (see --help)", file=sys.stderr)
        sys.exit(1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--service", default="checkout", help="service name (default checkout)")
    p.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        help="region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)",
    )
    p.add_argument("--config", type=Path, help="write a greenlight.toml for the service here")
    p.add_argument(
        "--rule",
        action="store_true",
        help="also create a host-header rule <service>.example.com -> slot a and route via it",
    )
    p.add_argument(
        "--test-listener",
        action="store_true",
        help="also create a test listener (port 8080) forwarding to slot a; the config's "
        "[test_traffic] listener_arn names it",
    )
    p.add_argument(
        "--nlb",
        action="store_true",
        help="put the service behind a Network Load Balancer (TCP target groups, TCP:80 listener, "
        "TCP:8080 test listener) instead of an ALB",
    )
    p.add_argument(
        "--capacity", type=int, default=2, help="blue desired = min (max = 2x); default 2"
    )
    p.add_argument(
        "--deregistration-delay",
        type=int,
        default=5,
        help="target groups' deregistration_delay.timeout_seconds (default 5)",
    )
    p.add_argument(
        "--health-timeout", default="2m", help="[health] timeout in the config (default 2m)"
    )
    p.add_argument(
        "--keep-warm", default="1h", help="[retention] keep_warm in the config (default 1h)"
    )
    args = p.parse_args(argv)
    if args.capacity < 1:
        p.error("--capacity must be at least 1")
    if args.nlb and args.rule:
        p.error("--rule needs an ALB: Network Load Balancer listeners have no rules")
    # An NLB release reaches green through its test listener (greenlight requires one there).
    args.test_listener = args.test_listener or args.nlb
    if args.deregistration_delay < 0 or args.deregistration_delay > 3600:
        p.error("--deregistration-delay must be between 0 and 3600 seconds")
    longest = f"{args.service}-alb"
    if len(longest) > MAX_ELB_NAME or not args.service.replace("-", "").isalnum():
        p.error(
            f"--service must be letters, digits and '-', at most {MAX_ELB_NAME - 4} characters "
            "(load balancer and target group names are capped at 32)"
        )
    return args


def clients(region: str) -> dict[str, Any]:
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SeedError(
            "AWS_ENDPOINT_URL is not set; seed.py only seeds emulators (e.g. "
            "AWS_ENDPOINT_URL=http://localhost:4566)"
        )
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        # Emulators accept any credentials; never fall back to a real profile for them.
        os.environ["AWS_ACCESS_KEY_ID"] = "testing"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
        os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        import boto3
        from botocore.config import Config
    except ImportError as err:
        raise SeedError(
            f"boto3 is missing ({err}); run localstack/install.sh and use its venv"
        ) from err

    config = Config(region_name=region, retries={"mode": "standard", "max_attempts": 5})
    session = boto3.session.Session(region_name=region)
    return {name: session.client(name, config=config) for name in ("ec2", "elbv2", "autoscaling")}


def tags(**kv: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in kv.items()]


def find_images(ec2: Any) -> list[str]:
    """Three distinct x86_64 AMIs: the blue release's and two for later releases.

    Asks DescribeImages instead of hard-coding ids, because emulators ship different image sets
    (moto's and LocalStack's catalogues differ, and change between versions).
    """
    filters = [
        {"Name": "architecture", "Values": ["x86_64"]},
        {"Name": "state", "Values": ["available"]},
    ]
    images = ec2.describe_images(Owners=["amazon"], Filters=filters)["Images"]
    if len(images) < 3:
        images = ec2.describe_images(Filters=filters)["Images"]
    # Prefer Linux images, newest names first, for a stable and plausible choice.
    images.sort(key=lambda i: (i.get("Platform") == "windows", i.get("Name") or "", i["ImageId"]))
    ids: list[str] = []
    for image in images:
        if image["ImageId"] not in ids:
            ids.append(image["ImageId"])
    if len(ids) < 3:
        raise SeedError(f"DescribeImages returned {len(ids)} x86_64 images; need 3")
    return ids[:3]


def resource_label(lb_arn: str, tg_arn: str) -> str:
    """The ALBRequestCountPerTarget ResourceLabel: app/<lb>/<id>/targetgroup/<tg>/<id>."""
    return (
        lb_arn.split(":loadbalancer/", 1)[1] + "/targetgroup/" + tg_arn.split(":targetgroup/", 1)[1]
    )


def seed(args: argparse.Namespace) -> dict[str, Any]:
    c = clients(args.region)
    ec2, elbv2, asg = c["ec2"], c["elbv2"], c["autoscaling"]
    svc = args.service
    existing = elbv2.describe_load_balancers()["LoadBalancers"]
    for lb in existing:
        if lb["LoadBalancerName"] in (f"{svc}-alb", f"{svc}-nlb"):
            raise SeedError(
                f"service {svc} is already seeded at this endpoint (load balancer "
                f"{lb['LoadBalancerName']} exists); pick another --service or reset the emulator"
            )

    # --- network -----------------------------------------------------------------------------
    vpc_id = ec2.create_vpc(
        CidrBlock="10.0.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": tags(Name=svc)}],
    )["Vpc"]["VpcId"]
    igw_id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)  # internet-facing ALB

    zones = sorted(
        z["ZoneName"]
        for z in ec2.describe_availability_zones()["AvailabilityZones"]
        if z.get("State", "available") == "available"
    )
    if len(zones) < 2:
        raise SeedError(f"region {args.region} has {len(zones)} availability zones; need 2")
    subnet_ids = [
        ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=f"10.0.{i + 1}.0/24",
            AvailabilityZone=zone,
            TagSpecifications=[{"ResourceType": "subnet", "Tags": tags(Name=f"{svc}-{zone}")}],
        )["Subnet"]["SubnetId"]
        for i, zone in enumerate(zones[:2])
    ]
    sg_id = ec2.create_security_group(
        GroupName=f"{svc}-web", Description=f"{svc} web traffic", VpcId=vpc_id
    )["GroupId"]
    ports = [80, TEST_PORT] if args.test_listener and not args.nlb else [80]
    ec2.authorize_security_group_ingress(
        GroupId=sg_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
            for port in ports
        ],
    )

    # --- load balancer: two slots, one listener (and a test listener) ----------------------
    if args.nlb:
        # No security group: an NLB created without one cannot get one later, and the
        # instances' group already admits port 80 from anywhere (NLBs keep the client's IP).
        lb_arn = elbv2.create_load_balancer(
            Name=f"{svc}-nlb",
            Subnets=subnet_ids,
            Scheme="internet-facing",
            Type="network",
            IpAddressType="ipv4",
            Tags=tags(service=svc),
        )["LoadBalancers"][0]["LoadBalancerArn"]
    else:
        lb_arn = elbv2.create_load_balancer(
            Name=f"{svc}-alb",
            Subnets=subnet_ids,
            SecurityGroups=[sg_id],
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Tags=tags(service=svc),
        )["LoadBalancers"][0]["LoadBalancerArn"]

    if args.nlb:
        # TCP health checks: a connection to the traffic port (no path, no matcher).
        protocol: dict[str, Any] = {"Protocol": "TCP", "HealthCheckProtocol": "TCP"}
    else:
        protocol = {
            "Protocol": "HTTP",
            "HealthCheckProtocol": "HTTP",
            "HealthCheckPath": "/health",
            "Matcher": {"HttpCode": "200"},
        }
    tg_arns = []
    for slot in ("a", "b"):
        tg = elbv2.create_target_group(
            Name=f"{svc}-{slot}",
            Port=80,
            VpcId=vpc_id,
            TargetType="instance",
            HealthCheckIntervalSeconds=10,
            HealthCheckTimeoutSeconds=5,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
            Tags=tags(service=svc, slot=slot),
            **protocol,
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=tg,
            Attributes=[
                {
                    "Key": "deregistration_delay.timeout_seconds",
                    "Value": str(args.deregistration_delay),
                }
            ],
        )
        tg_arns.append(tg)

    forward_a = [{"Type": "forward", "TargetGroupArn": tg_arns[0]}]
    listener_protocol = "TCP" if args.nlb else "HTTP"
    listener_arn = elbv2.create_listener(
        LoadBalancerArn=lb_arn, Protocol=listener_protocol, Port=80, DefaultActions=forward_a
    )["Listeners"][0]["ListenerArn"]
    test_listener_arn = None
    if args.test_listener:
        test_listener_arn = elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol=listener_protocol,
            Port=TEST_PORT,
            DefaultActions=forward_a,
        )["Listeners"][0]["ListenerArn"]
    rule_arn = None
    if args.rule:
        rule_arn = elbv2.create_rule(
            ListenerArn=listener_arn,
            Priority=10,
            Conditions=[
                {"Field": "host-header", "HostHeaderConfig": {"Values": [f"{svc}.example.com"]}}
            ],
            Actions=forward_a,
        )["Rules"][0]["RuleArn"]

    # --- launch template ---------------------------------------------------------------------
    images = find_images(ec2)
    lt_id = ec2.create_launch_template(
        LaunchTemplateName=svc,
        VersionDescription="seed: first release",
        LaunchTemplateData={
            "ImageId": images[0],
            "InstanceType": "t3.micro",
            "SecurityGroupIds": [sg_id],
            "UserData": base64.b64encode(USER_DATA.encode()).decode(),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags(service=svc)}],
        },
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags(service=svc)}],
    )["LaunchTemplate"]["LaunchTemplateId"]

    # --- the blue Auto Scaling group ---------------------------------------------------------
    blue = f"{svc}-blue"
    n = args.capacity
    asg.create_auto_scaling_group(
        AutoScalingGroupName=blue,
        LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "1"},
        MinSize=n,
        MaxSize=2 * n,
        DesiredCapacity=n,
        VPCZoneIdentifier=",".join(subnet_ids),
        TargetGroupARNs=[tg_arns[0]],
        HealthCheckType="ELB",
        HealthCheckGracePeriod=60,
        TerminationPolicies=["OldestInstance", "Default"],
        DefaultInstanceWarmup=30,
        CapacityRebalance=False,
        MaxInstanceLifetime=604800,
        Tags=[
            {"Key": "Name", "Value": svc, "PropagateAtLaunch": True},
            {"Key": "team", "Value": "payments", "PropagateAtLaunch": False},
        ],
    )
    asg.put_lifecycle_hook(
        AutoScalingGroupName=blue,
        LifecycleHookName=f"{svc}-launching",
        LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
        HeartbeatTimeout=300,
        DefaultResult="CONTINUE",
    )
    asg.put_scaling_policy(
        AutoScalingGroupName=blue,
        PolicyName="cpu50",
        PolicyType="TargetTrackingScaling",
        TargetTrackingConfiguration={
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
            "TargetValue": 50.0,
        },
    )
    if not args.nlb:  # ALBRequestCountPerTarget exists for ALB target groups only
        asg.put_scaling_policy(
            AutoScalingGroupName=blue,
            PolicyName="requests-per-target",
            PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration={
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "ALBRequestCountPerTarget",
                    "ResourceLabel": resource_label(lb_arn, tg_arns[0]),
                },
                "TargetValue": 1000.0,
            },
        )
    asg.put_scaling_policy(
        AutoScalingGroupName=blue,
        PolicyName="step-out",
        PolicyType="StepScaling",
        AdjustmentType="ChangeInCapacity",
        MetricAggregationType="Average",
        EstimatedInstanceWarmup=60,
        StepAdjustments=[
            {
                "MetricIntervalLowerBound": 0.0,
                "MetricIntervalUpperBound": 20.0,
                "ScalingAdjustment": 1,
            },
            {"MetricIntervalLowerBound": 20.0, "ScalingAdjustment": 2},
        ],
    )
    asg.put_scheduled_update_group_action(
        AutoScalingGroupName=blue,
        ScheduledActionName="weekday-morning",
        Recurrence="0 9 * * 1-5",
        MinSize=n,
        MaxSize=2 * n,
        DesiredCapacity=n,
    )
    asg.enable_metrics_collection(
        AutoScalingGroupName=blue,
        Metrics=["GroupInServiceInstances", "GroupDesiredCapacity"],
        Granularity="1Minute",
    )
    asg.suspend_processes(AutoScalingGroupName=blue, ScalingProcesses=["AZRebalance"])

    return {
        "service": svc,
        "region": args.region,
        "vpc_id": vpc_id,
        "subnet_ids": subnet_ids,
        "load_balancer_arn": lb_arn,
        "load_balancer_type": "network" if args.nlb else "application",
        "listener_arn": listener_arn,
        "test_listener_arn": test_listener_arn,
        "rule_arn": rule_arn,
        "target_groups": tg_arns,
        "launch_template_id": lt_id,
        "blue_asg": blue,
        "images": images,
    }


def toml_str(value: str) -> str:
    """A TOML basic string (JSON string escapes are a valid subset for our values)."""
    return json.dumps(value)


def write_config(path: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    router_key, router_arn = (
        ("rule_arn", out["rule_arn"]) if out["rule_arn"] else ("listener_arn", out["listener_arn"])
    )
    text = "\n".join(
        [
            f"service = {toml_str(out['service'])}",
            f"region = {toml_str(out['region'])}",
            "",
            "[router]",
            f"{router_key} = {toml_str(router_arn)}",
            "target_groups = [" + ", ".join(toml_str(t) for t in out["target_groups"]) + "]",
            "",
            "[health]",
            f"timeout = {toml_str(args.health_timeout)}",
            'interval = "1s"',
            "",
            "[retention]",
            f"keep_warm = {toml_str(args.keep_warm)}",
            "",
        ]
        + (
            # Last, so a caller can append more [test_traffic] keys (header = ...) below it.
            ["[test_traffic]", f"listener_arn = {toml_str(out['test_listener_arn'])}", ""]
            if out["test_listener_arn"]
            else []
        )
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        raise SeedError(f"failed to write {path}: {err.strerror}") from err


def main(argv: list[str] | None = None) -> int:
    use_venv_if_needed("boto3", __file__)
    args = parse_args(argv)
    try:
        out = seed(args)
        if args.config:
            write_config(args.config, args, out)
    except SeedError as err:
        print(f"seed.py: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # botocore ClientError, EndpointConnectionError, ...
        message = " ".join(str(err).split())  # keep it to one line
        print(
            f"seed.py: failed to seed {args.service}: {type(err).__name__}: {message}",
            file=sys.stderr,
        )
        return 1
    if args.nlb and ":loadbalancer/app/" in out["load_balancer_arn"]:
        # AWS names an NLB loadbalancer/net/..., and so does greenlight's emulator (its fidelity
        # layer); stock moto, and endpoints built on it such as LocalStack, name every load
        # balancer loadbalancer/app/.... greenlight tells the kinds apart by the ARN (a note, not
        # an error: exit 0).
        print(
            "seed.py: note: this endpoint gave the network load balancer an application ARN "
            "(loadbalancer/app/...), so greenlight will treat it as an ALB (greenlight's "
            "emulator, localstack/emulator.py, names it loadbalancer/net/... as AWS does)",
            file=sys.stderr,
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
