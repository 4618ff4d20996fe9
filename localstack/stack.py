#!/usr/bin/env python3
"""Deploy a CloudFormation template (infra/sample-service.yaml, say) into an AWS emulator.

    AWS_ENDPOINT_URL=http://127.0.0.1:4566 python localstack/stack.py TEMPLATE
        [--stack-name NAME] [--network] [--image N] [--param Key=Value ...] [--region R]
        [--timeout 60]

Creates the stack, waits until it is CREATE_COMPLETE, and prints one JSON object on stdout:
{"stack_name", "stack_id", "status", "outputs": {key: value}, "parameters": {...},
"resources": [{"logical_id", "type", "physical_id", "status"}], "images": [AMI ids the
endpoint knows], "vpc_id"/"subnet_ids" (with --network)}.

--network first makes what the template takes as parameters and a real account already has: a
VPC with two subnets in two Availability Zones (passed as VpcId and SubnetIds). --image N
passes the N-th AMI of the endpoint's catalogue (0 by default) as ImageId. Other parameters:
--param Key=Value (a list parameter takes a comma-separated value).

Errors (including a stack that ends in any status but CREATE_COMPLETE, with the failed
resources' reasons): one line on stderr, exit status 1. Like seed.py it refuses to run without
AWS_ENDPOINT_URL, so it cannot create a stack in a real account by accident.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from reexec import use_venv_if_needed


class StackError(Exception):
    """A failure with a message fit for one line on stderr."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"stack.py: {message} (see --help)", file=sys.stderr)
        sys.exit(1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("template", type=Path, help="the template file (YAML or JSON)")
    p.add_argument("--stack-name", default="greenlight-sample", help="default greenlight-sample")
    p.add_argument("--region", default=None, help="default: as seed.py (AWS_REGION, us-east-1)")
    p.add_argument(
        "--network", action="store_true", help="make a VPC and two subnets; pass VpcId, SubnetIds"
    )
    p.add_argument(
        "--image",
        type=int,
        default=None,
        help="pass the N-th of the endpoint's AMIs as ImageId (as seed.py picks them)",
    )
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a stack parameter"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    args = p.parse_args(argv)
    for param in args.param:
        if "=" not in param:
            p.error(f"--param {param!r} is not KEY=VALUE")
    return args


def network(ec2: Any, name: str) -> tuple[str, list[str]]:
    vpc_id = ec2.create_vpc(
        CidrBlock="10.0.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}]}],
    )["Vpc"]["VpcId"]
    igw_id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    zones = sorted(
        z["ZoneName"]
        for z in ec2.describe_availability_zones()["AvailabilityZones"]
        if z.get("State", "available") == "available"
    )
    if len(zones) < 2:
        raise StackError(f"the region has {len(zones)} availability zones; need 2")
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{i + 1}.0/24", AvailabilityZone=zone)[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate(zones[:2])
    ]
    return vpc_id, subnets


def deploy(args: argparse.Namespace) -> dict[str, Any]:
    import seed  # the same client setup and AMI choice as the seeded services

    region = (
        args.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    seed.clients(region)  # checks AWS_ENDPOINT_URL, sets dummy credentials
    import boto3
    from botocore.config import Config

    config = Config(region_name=region, retries={"mode": "standard", "max_attempts": 5})
    session = boto3.session.Session(region_name=region)
    ec2 = session.client("ec2", config=config)
    cfn = session.client("cloudformation", config=config)

    try:
        body = args.template.read_text()
    except OSError as err:
        raise StackError(f"cannot read {args.template}: {err.strerror}") from err

    params: dict[str, str] = {}
    out: dict[str, Any] = {"images": seed.find_images(ec2)}
    if args.network:
        out["vpc_id"], out["subnet_ids"] = network(ec2, args.stack_name)
        params["VpcId"] = out["vpc_id"]
        params["SubnetIds"] = ",".join(out["subnet_ids"])
    if args.image is not None:
        if not 0 <= args.image < len(out["images"]):
            raise StackError(f"--image {args.image}: the endpoint has {len(out['images'])} AMIs")
        params["ImageId"] = out["images"][args.image]
    for param in args.param:
        key, value = param.split("=", 1)
        params[key] = value

    stack_id = cfn.create_stack(
        StackName=args.stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )["StackId"]
    deadline = time.monotonic() + args.timeout
    while True:
        stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    resources = [
        {
            "logical_id": r["LogicalResourceId"],
            "type": r["ResourceType"],
            "physical_id": r.get("PhysicalResourceId"),
            "status": r.get("ResourceStatus"),
            "reason": r.get("ResourceStatusReason"),
        }
        for r in cfn.describe_stack_resources(StackName=stack_id)["StackResources"]
    ]
    if status != "CREATE_COMPLETE":
        failed = [
            f"{r['logical_id']} ({r['type']}): {r['status']} {r['reason'] or ''}".strip()
            for r in resources
            if r["status"] != "CREATE_COMPLETE"
        ]
        raise StackError(
            f"stack {args.stack_name} is {status}: {stack.get('StackStatusReason') or ''} "
            + "; ".join(failed)
        )
    out.update(
        stack_name=args.stack_name,
        stack_id=stack_id,
        status=status,
        parameters=params,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        resources=resources,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    use_venv_if_needed("boto3", __file__)
    args = parse_args(argv)
    try:
        out = deploy(args)
    except Exception as err:  # StackError, SeedError, botocore ClientError, ...
        message = " ".join(str(err).split())
        kind = "" if type(err).__name__ in ("StackError", "SeedError") else f"{type(err).__name__}: "
        print(f"stack.py: {kind}{message}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
