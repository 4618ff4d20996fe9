#!/usr/bin/env python3
"""Seed N greenlight services into greenlight's emulator, fast, for `bench/cleanup-all.sh`.

    AWS_ENDPOINT_URL=http://127.0.0.1:PORT localstack/.venv/bin/python bench/seed_many.py \
        --services 1000 [--due-every 20] [--warm-every 3] [--per-alb 50] [--prefix svc]

What a service looks like (the tags are the ones greenlight writes, src/core/tags.rs, schema 2):

* shared: one VPC, two subnets, one security group, one launch template (version 1);
* one ALB (HTTP:80 listener, default action fixed-response 404) per `--per-alb` services, each
  service routed by its own host-header rule (`greenlight:router` = the rule ARN; AWS's default
  quota is 100 rules per listener, so 50 keeps a realistic shape);
* per service two target groups `<svc>-a` / `<svc>-b` (slots), its rule forwarding to slot a;
* per service a live fleet `<svc>-r2` on slot a (phase live, desired 0: moto stays fast);
* every `--warm-every`-th service (not due) also a warm fleet `<svc>-r1` on slot b whose
  `greenlight:warm-until` is an hour ahead (desired 0);
* every `--due-every`-th service instead has a warm fleet `<svc>-r1` on slot b whose
  `warm-until` passed an hour ago, at desired 1 (a warm fleet is kept at capacity): that
  service is "due" and `cleanup --all --dry-run` plans to retire the fleet;
* locks: two live locks (`greenlight-lock.<svc>`, expiring in an hour) on services with
  nothing due, and one stale lock (expired an hour ago), so the lock listing has content.

Prints one JSON object on stdout: counts, the due services, the fleets made, seconds taken.
Only ever talks to AWS_ENDPOINT_URL (refuses to run without it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--due-every", type=int, default=20, help="every k-th service is due (5%%)")
    p.add_argument("--warm-every", type=int, default=3, help="every k-th has a warm fleet")
    p.add_argument("--per-alb", type=int, default=50, help="services (rules) per ALB listener")
    p.add_argument("--prefix", default="svc")
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    args = p.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("seed_many.py: AWS_ENDPOINT_URL is not set; it only seeds emulators")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    import boto3
    from botocore.config import Config

    config = Config(
        region_name=args.region,
        retries={"mode": "standard", "max_attempts": 5},
        user_agent_appid="bench-seed",
    )
    session = boto3.session.Session(region_name=args.region)
    ec2 = session.client("ec2", config=config)
    elbv2 = session.client("elbv2", config=config)
    asg = session.client("autoscaling", config=config)

    started = time.monotonic()
    now = datetime.now(timezone.utc)

    # --- shared network and launch template -------------------------------------------------
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    zones = sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"])
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i + 1}.0/24", AvailabilityZone=z)[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate(zones[:2])
    ]
    sg = ec2.create_security_group(GroupName="bench-web", Description="bench", VpcId=vpc)[
        "GroupId"
    ]
    image = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}]
    )["Images"][0]["ImageId"]
    lt = ec2.create_launch_template(
        LaunchTemplateName="bench-shared",
        VersionDescription="bench: shared template",
        LaunchTemplateData={
            "ImageId": image,
            "InstanceType": "t3.micro",
            "SecurityGroupIds": [sg],
        },
    )["LaunchTemplate"]["LaunchTemplateId"]

    # --- per service -----------------------------------------------------------------------
    listeners: list[str] = []
    due: list[str] = []
    fleets: dict[str, int] = {"live": 0, "warm": 0, "warm_expired": 0}
    names = [f"{args.prefix}-{i:04d}" for i in range(args.services)]
    services: dict[str, dict[str, Any]] = {}
    for i, svc in enumerate(names):
        if i % args.per_alb == 0:
            lb = elbv2.create_load_balancer(
                Name=f"bench-alb-{i // args.per_alb:03d}",
                Subnets=subnets,
                SecurityGroups=[sg],
                Scheme="internet-facing",
                Type="application",
            )["LoadBalancers"][0]["LoadBalancerArn"]
            listener = elbv2.create_listener(
                LoadBalancerArn=lb,
                Protocol="HTTP",
                Port=80,
                DefaultActions=[
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {"StatusCode": "404"},
                    }
                ],
            )["Listeners"][0]["ListenerArn"]
            listeners.append(listener)
        tgs = [
            elbv2.create_target_group(
                Name=f"{svc}-{slot}",
                Protocol="HTTP",
                Port=80,
                VpcId=vpc,
                TargetType="instance",
                HealthCheckPath="/health",
            )["TargetGroups"][0]["TargetGroupArn"]
            for slot in ("a", "b")
        ]
        rule = elbv2.create_rule(
            ListenerArn=listeners[-1],
            Priority=i % args.per_alb + 1,
            Conditions=[{"Field": "host-header", "Values": [f"{svc}.example.com"]}],
            Actions=[{"Type": "forward", "TargetGroupArn": tgs[0]}],
        )["Rules"][0]["RuleArn"]
        services[svc] = {"rule": rule, "target_groups": tgs}

        common = {
            "greenlight:schema": "2",
            "greenlight:service": svc,
            "greenlight:router": rule,
            "greenlight:slot-a": tgs[0],
            "greenlight:slot-b": tgs[1],
            "greenlight:launch-template-version": "1",
        }

        def fleet(name: str, tg: str, desired: int, extra: dict[str, str]) -> None:
            tag_map = {**common, **extra}
            asg.create_auto_scaling_group(
                AutoScalingGroupName=name,
                LaunchTemplate={"LaunchTemplateId": lt, "Version": "1"},
                MinSize=0,
                MaxSize=2,
                DesiredCapacity=desired,
                VPCZoneIdentifier=",".join(subnets),
                TargetGroupARNs=[tg],
                HealthCheckType="ELB",
                HealthCheckGracePeriod=60,
                Tags=[
                    {
                        "ResourceId": name,
                        "ResourceType": "auto-scaling-group",
                        "Key": k,
                        "Value": v,
                        "PropagateAtLaunch": False,
                    }
                    for k, v in tag_map.items()
                ],
            )

        # The live release, on slot a.
        fleet(
            f"{svc}-r2",
            tgs[0],
            0,
            {
                "greenlight:release": "r2",
                "greenlight:phase": "live",
                "greenlight:created-at": rfc3339(now - timedelta(hours=3)),
                "greenlight:live-at": rfc3339(now - timedelta(hours=2, minutes=50)),
            },
        )
        fleets["live"] += 1
        is_due = i % args.due_every == args.due_every // 2
        warm_extra = {
            "greenlight:release": "r1",
            "greenlight:phase": "warm",
            "greenlight:created-at": rfc3339(now - timedelta(days=2)),
            "greenlight:live-at": rfc3339(now - timedelta(days=2)),
            "greenlight:unrouted-at": rfc3339(now - timedelta(hours=2, minutes=50)),
        }
        if is_due:
            # Kept warm until an hour ago: due for retirement.
            warm_extra["greenlight:warm-until"] = rfc3339(now - timedelta(hours=1))
            fleet(f"{svc}-r1", tgs[1], 1, warm_extra)
            fleets["warm_expired"] += 1
            due.append(svc)
        elif i % args.warm_every == 0:
            warm_extra["greenlight:warm-until"] = rfc3339(now + timedelta(hours=1))
            fleet(f"{svc}-r1", tgs[1], 0, warm_extra)
            fleets["warm"] += 1

    # --- locks: two held, one stale, on services with nothing due --------------------------
    quiet = [s for s in names if s not in set(due)]
    locks = []
    for svc, expires in zip(
        quiet[:3],
        [now + timedelta(hours=1), now + timedelta(hours=1), now - timedelta(hours=1)],
        strict=False,
    ):
        lock_tags = {
            "greenlight:lock": svc,
            "greenlight:lock-holder": "ci@bench",
            "greenlight:lock-host": "bench-host",
            "greenlight:lock-pid": "4242",
            "greenlight:lock-token": f"token-{svc}",
            "greenlight:lock-command": "deploy",
            "greenlight:lock-acquired-at": rfc3339(expires - timedelta(minutes=2)),
            "greenlight:lock-expires-at": rfc3339(expires),
        }
        ec2.create_launch_template(
            LaunchTemplateName=f"greenlight-lock.{svc}",
            LaunchTemplateData={"InstanceType": "t3.micro"},
            TagSpecifications=[
                {
                    "ResourceType": "launch-template",
                    "Tags": [{"Key": k, "Value": v} for k, v in lock_tags.items()],
                }
            ],
        )
        locks.append({"service": svc, "stale": expires < now})

    print(
        json.dumps(
            {
                "services": args.services,
                "due": due,
                "fleets": fleets,
                "fleets_total": sum(fleets.values()),
                "load_balancers": len(listeners),
                "target_groups": 2 * args.services,
                "locks": locks,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
