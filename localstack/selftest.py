#!/usr/bin/env python3
"""Self-check of the emulator's fidelity layer, with boto3, against AWS_ENDPOINT_URL.

    AWS_ENDPOINT_URL=http://127.0.0.1:PORT python localstack/selftest.py [--skip-reset]

Checks, each against resources of its own (unique names, so a non-empty emulator is fine):
  scripted-health-observations  initial x2 -> unhealthy (with reason) -> healthy, by reports
  scripted-health-seconds       a timed step ends on the wall clock
  draining-after-scale-in       scale-in drains the removed target for the delay, then it is
                                gone; only InService instances stay registered
  launch-template-versions      SourceVersion honoured, VersionDescription kept, instances
                                launched from the version the ASG names, with its UserData
  removals-drain                terminate, detach and ForceDelete drain targets; a replacement
                                is registered; delete without ForceDelete is refused
  api-fidelity                  policies scoped to their group, desired > max rejected,
                                ForwardConfig weights and LoadBalancerArns, weight 1000 rejected
  network-load-balancer-arns    an NLB is loadbalancer/net/..., its listener listener/net/<name>/
                                <lb-id>/<id>, its default rule listener-rule/net/...; found by
                                those ARNs in DescribeLoadBalancers, DescribeListeners,
                                DescribeTargetGroups, ModifyListener, Add/RemoveTags, DescribeTags
                                and DeleteListener, not by their app/ spelling; CreateRule refused;
                                a gateway load balancer is loadbalancer/gwy/...; the ALB stays app/
  client-token-idempotency      CreateLaunchTemplate / CreateLaunchTemplateVersion repeated with
                                the same ClientToken answer the first result and create nothing;
                                other parameters -> IdempotentParameterMismatch (HTTP 400)
  launch-template-tags          CreateTags / DeleteTags on lt-... show in DescribeLaunchTemplates'
                                Tags and its tag:/tag-key filters; name filter; missing names;
                                a deleted template's tags are gone and cannot be set
  modify-responses              ModifyListener / ModifyRule answer the actions exactly as
                                DescribeListeners / DescribeRules then do (weights, stickiness)
  request-log                   /_greenlight/requests?since=N lists the AWS calls made since N
                                (service = signing name, action from form body, X-Amz-Target or
                                the CBOR path), errors included, moto-api and test calls not
  cloudwatch-cbor-request-shape rpcv2cbor.py sends what aws-sdk-cloudwatch sends (headers,
                                SigV4 scope, indefinite-length maps, tag-1 float64 timestamps)
  cloudwatch-cbor-alarms        over Smithy RPC v2 CBOR: PutMetricAlarm -> DescribeAlarms ->
                                SetAlarmState ALARM -> DescribeAlarms by name and StateValue
                                (every filter applies); logged once each as monitoring + op
  cloudwatch-cbor-metrics       PutMetricData for two target groups (and a gzipped one) ->
                                GetMetricData Sum/Average/Maximum/SampleCount per target group;
                                p99 answers no datapoints (moto computes no percentiles)
  cloudwatch-cbor-errors        CBOR errors with __type, status and x-amzn-query-error: missing
                                required member, bad enum/range, ResourceNotFound, moto's own
                                ValidationError, untagged timestamp, broken CBOR, no
                                smithy-protocol header, unknown operation
  cloudwatch-cbor-botocore      the same through botocore's own rpcv2Cbor client
  reset-clears-rules            DELETE /_greenlight/target-health and POST /moto-api/reset
                                clear the rules, DELETE /_greenlight/requests and the reset
                                clear the request log (this one wipes the whole emulator: it runs
                                last, and --skip-reset leaves it out when the emulator is shared)

Prints one line per check and `N passed, M failed`; exit status 0 only if all passed.
Needs the greenlight emulator (emulator.py): LocalStack has no /_greenlight endpoint.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from reexec import use_venv_if_needed


use_venv_if_needed("cbor2", __file__)  # cbor2 (and boto3) live in .venv

import boto3  # noqa: E402 (after the venv switch above)
import botocore.session  # noqa: E402
import cbor2  # noqa: E402
from botocore.config import Config  # noqa: E402

import rpcv2cbor  # noqa: E402 (a client that sends what the Rust SDK's CloudWatch sends)

REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
DELAY = 1  # seconds of deregistration delay: long enough to observe, short enough to wait out
USER_DATA = "#!/bin/bash\necho selftest\n"


class CheckFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_error(call: Callable[..., Any], code: str, status: int = 400, **kwargs: Any) -> None:
    """call(**kwargs) must fail with this AWS error code and HTTP status."""
    try:
        call(**kwargs)
    except Exception as err:  # botocore's ClientError, whichever client raised it
        response = getattr(err, "response", None)
        if response is None:
            raise
        got = (response["Error"].get("Code"), response["ResponseMetadata"].get("HTTPStatusCode"))
        expect(got == (code, status), f"{call.__name__}: expected {code} ({status}), got {got}")
    else:
        raise CheckFailed(f"{call.__name__} succeeded; expected {code}")


class Emulator:
    """boto3 clients plus the test-only endpoint, and a tiny fixture: VPC, subnet, ALB, TG."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        config = Config(region_name=REGION, retries={"mode": "standard", "max_attempts": 3})
        session = boto3.session.Session(
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing",
            region_name=REGION,
        )
        self.ec2 = session.client("ec2", endpoint_url=self.endpoint, config=config)
        self.elbv2 = session.client("elbv2", endpoint_url=self.endpoint, config=config)
        self.asg = session.client("autoscaling", endpoint_url=self.endpoint, config=config)
        self.client = lambda name: session.client(name, endpoint_url=self.endpoint, config=config)
        self.run = uuid.uuid4().hex[:8]
        self._fixture: dict[str, Any] | None = None
        # CloudWatch over Smithy RPC v2 CBOR, as aws-sdk-cloudwatch speaks it.
        self.cbor = rpcv2cbor.CloudWatchCbor(
            self.endpoint,
            REGION,
            os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
            os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing",
        )

    def http(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def http_status(
        self, method: str, path: str, headers: dict[str, str] | None = None, data: bytes = b""
    ) -> int:
        """The HTTP status of a request to the emulator (errors included)."""
        req = urllib.request.Request(
            self.endpoint + path, data=data or None, headers=headers or {}, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    def requests_since(self, mark: int) -> dict[str, Any]:
        return self.http("GET", f"/_greenlight/requests?since={mark}")

    def script(self, **rule: Any) -> dict[str, Any]:
        return self.http("POST", "/_greenlight/target-health", rule)

    # -- fixture --------------------------------------------------------------------------

    def fixture(self) -> dict[str, Any]:
        if self._fixture is None:
            vpc = self.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
            zones = sorted(
                z["ZoneName"] for z in self.ec2.describe_availability_zones()["AvailabilityZones"]
            )
            subnets = [
                self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=z)[
                    "Subnet"
                ]["SubnetId"]
                for i, z in enumerate(zones[:2])
            ]
            lb = self.elbv2.create_load_balancer(Name=f"st-{self.run}", Subnets=subnets)[
                "LoadBalancers"
            ][0]
            images = [i["ImageId"] for i in self.ec2.describe_images(Owners=["amazon"])["Images"]]
            expect(len(set(images)) >= 2, "DescribeImages returned fewer than 2 images")
            self._fixture = {
                "vpc": vpc,
                "subnets": subnets,
                "lb": lb["LoadBalancerArn"],
                "images": sorted(set(images))[:2],
                "listener": None,
            }
        return self._fixture

    def target_group(self, name: str) -> str:
        f = self.fixture()
        tg = self.elbv2.create_target_group(
            Name=f"{name}-{self.run}"[:32],
            Protocol="HTTP",
            Port=80,
            VpcId=f["vpc"],
            HealthCheckPath="/health",
        )["TargetGroups"][0]["TargetGroupArn"]
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=tg,
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(DELAY)}],
        )
        # Put the group behind the load balancer, as greenlight's slots are.
        if f["listener"] is None:
            f["listener"] = self.elbv2.create_listener(
                LoadBalancerArn=f["lb"], Protocol="HTTP", Port=80,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
            )["Listeners"][0]["ListenerArn"]  # fmt: skip
        else:
            priority = 1 + len(self.elbv2.describe_rules(ListenerArn=f["listener"])["Rules"])
            self.elbv2.create_rule(
                ListenerArn=f["listener"], Priority=priority,
                Conditions=[{"Field": "path-pattern", "Values": [f"/{name}/*"]}],
                Actions=[{"Type": "forward", "TargetGroupArn": tg}],
            )  # fmt: skip
        return tg

    def launch_template(self, name: str) -> str:
        f = self.fixture()
        return self.ec2.create_launch_template(
            LaunchTemplateName=f"{name}-{self.run}",
            VersionDescription="v1",
            LaunchTemplateData={
                "ImageId": f["images"][0],
                "InstanceType": "t3.micro",
                "UserData": base64.b64encode(USER_DATA.encode()).decode(),
            },
        )["LaunchTemplate"]["LaunchTemplateId"]

    def group(
        self, name: str, tg: str, capacity: int, lt: str | None = None, version: str = "1"
    ) -> str:
        f = self.fixture()
        asg_name = f"{name}-{self.run}"
        template = {"LaunchTemplateId": lt or self.launch_template(name), "Version": version}
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=asg_name,
            LaunchTemplate=template,
            MinSize=0, MaxSize=capacity * 2, DesiredCapacity=capacity,
            VPCZoneIdentifier=",".join(f["subnets"]), TargetGroupARNs=[tg], HealthCheckType="ELB",
        )  # fmt: skip
        return asg_name

    def instances(self, asg_name: str) -> list[str]:
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])[
            "AutoScalingGroups"
        ][0]
        return [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]

    def health(self, tg: str, targets: list[str] | None = None) -> dict[str, dict[str, Any]]:
        kwargs: dict[str, Any] = {"TargetGroupArn": tg}
        if targets:
            kwargs["Targets"] = [{"Id": t} for t in targets]
        descs = self.elbv2.describe_target_health(**kwargs)["TargetHealthDescriptions"]
        return {d["Target"]["Id"]: d["TargetHealth"] for d in descs}


# -- checks -------------------------------------------------------------------------------------


def check_scripted_health_observations(emu: Emulator) -> None:
    tg = emu.target_group("obs")
    asg_name = emu.group("obs", tg, capacity=2)
    rule = emu.script(
        asg_name=asg_name,
        sequence=[
            {"state": "initial", "observations": 2},
            {
                "state": "unhealthy",
                "reason": "Target.ResponseCodeMismatch",
                "description": "Health checks failed with these codes: [502]",
                "observations": 1,
            },
            {"state": "healthy"},
        ],
    )
    expect(rule.get("status") == "ok", f"POST rule answered {rule}")
    ids = emu.instances(asg_name)
    expect(len(ids) == 2, f"expected 2 InService instances, got {ids}")
    seen = []
    for _ in range(5):
        h = emu.health(tg)
        expect(sorted(h) == sorted(ids), f"targets {sorted(h)} != instances {sorted(ids)}")
        states = {h[i]["State"] for i in ids}
        expect(len(states) == 1, f"both targets should move together, got {h}")
        seen.append(h[ids[0]])
    expect(
        [s["State"] for s in seen] == ["initial", "initial", "unhealthy", "healthy", "healthy"],
        f"state sequence was {[s['State'] for s in seen]}",
    )
    expect(seen[0].get("Reason") == "Elb.RegistrationInProgress", f"initial reason: {seen[0]}")
    expect(
        seen[2].get("Reason") == "Target.ResponseCodeMismatch"
        and seen[2].get("Description") == "Health checks failed with these codes: [502]",
        f"unhealthy reason/description: {seen[2]}",
    )
    expect(
        "Reason" not in seen[3] and "Description" not in seen[3],
        f"healthy carries a reason: {seen[3]}",
    )


def check_scripted_health_seconds(emu: Emulator) -> None:
    tg = emu.target_group("secs")
    asg_name = emu.group("secs", tg, capacity=1)
    target = emu.instances(asg_name)[0]
    emu.script(
        instance_id=target,
        target_group_arn=tg,
        sequence=[{"state": "initial", "seconds": 0.6}, {"state": "healthy"}],
    )
    first = [emu.health(tg)[target]["State"] for _ in range(3)]
    expect(first == ["initial"] * 3, f"before 0.6 s: {first}")
    time.sleep(0.7)
    expect(emu.health(tg)[target]["State"] == "healthy", "timed step did not end")


def check_draining_after_scale_in(emu: Emulator) -> None:
    tg = emu.target_group("drain")
    asg_name = emu.group("drain", tg, capacity=2)
    oldest, newest = emu.instances(asg_name)
    emu.asg.update_auto_scaling_group(AutoScalingGroupName=asg_name, DesiredCapacity=1)
    expect(emu.instances(asg_name) == [newest], "scale-in should remove the oldest instance")
    t0 = time.monotonic()
    h = emu.health(tg)
    expect(set(h) == {oldest, newest}, f"draining target should still be listed: {h}")
    expect(h[newest]["State"] == "healthy", f"remaining target: {h[newest]}")
    expect(
        h[oldest] == {
            "State": "draining",
            "Reason": "Target.DeregistrationInProgress",
            "Description": "Target deregistration is in progress",
        },
        f"removed target: {h[oldest]}",
    )  # fmt: skip
    # A capacity change must not re-register the drained instance (stock moto does).
    emu.asg.set_desired_capacity(AutoScalingGroupName=asg_name, DesiredCapacity=2)
    third = [i for i in emu.instances(asg_name) if i != newest]
    expect(len(third) == 1, f"scale-out should add one instance: {emu.instances(asg_name)}")
    h = emu.health(tg)
    expect(h[oldest]["State"] == "draining", f"drained target re-registered: {h[oldest]}")
    time.sleep(max(0.0, DELAY + 0.2 - (time.monotonic() - t0)))
    h = emu.health(tg)
    expect(set(h) == {newest, third[0]}, f"after the delay only InService targets remain: {h}")
    gone = emu.health(tg, [oldest])[oldest]
    expect(
        gone["State"] == "unused" and gone.get("Reason") == "Target.NotRegistered",
        f"drained target: {gone}",
    )


def check_launch_template_versions(emu: Emulator) -> None:
    f = emu.fixture()
    old_ami, new_ami = f["images"]
    lt = emu.launch_template("lt")
    v2 = emu.ec2.create_launch_template_version(
        LaunchTemplateId=lt,
        SourceVersion="1",
        VersionDescription="release v2",
        LaunchTemplateData={"ImageId": new_ami},
    )["LaunchTemplateVersion"]
    expect(v2["VersionNumber"] == 2, f"new version number {v2['VersionNumber']}")
    versions = emu.ec2.describe_launch_template_versions(LaunchTemplateId=lt, Versions=["2"])[
        "LaunchTemplateVersions"
    ]
    data = versions[0]["LaunchTemplateData"]
    expect(
        versions[0].get("VersionDescription") == "release v2", f"VersionDescription: {versions[0]}"
    )
    expect(data.get("ImageId") == new_ami, f"v2 ImageId {data.get('ImageId')} != {new_ami}")
    expect(data.get("InstanceType") == "t3.micro", f"SourceVersion ignored: v2 data {data}")
    expect(bool(data.get("UserData")), f"SourceVersion ignored: v2 has no UserData: {data}")
    # A version carrying its own UserData must not break launches (stock moto: HTTP 500).
    emu.ec2.create_launch_template_version(
        LaunchTemplateId=lt,
        SourceVersion="2",
        LaunchTemplateData={"UserData": base64.b64encode(b"#!/bin/bash\necho v3\n").decode()},
    )
    # The default version stays 1; the groups below name other versions explicitly.
    tg = emu.target_group("lt")
    for version, ami, marker in (
        ("2", new_ami, "selftest"),
        ("$Latest", new_ami, "v3"),
        ("$Default", old_ami, "selftest"),
    ):
        asg_name = emu.group(
            f"lt{version.strip('$').lower()}", tg, capacity=1, lt=lt, version=version
        )
        (iid,) = emu.instances(asg_name)
        inst = emu.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        expect(
            inst["ImageId"] == ami,
            f"Version {version}: instance runs {inst['ImageId']}, want {ami}",
        )
        user_data = emu.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")[
            "UserData"
        ]
        text = base64.b64decode(user_data.get("Value", "")).decode()
        expect(marker in text, f"Version {version}: instance user data {text!r} lacks {marker!r}")
    # Updating the group's version applies to the instances launched afterwards.
    asg_name = emu.group("ltupd", tg, capacity=1, lt=lt, version="1")
    emu.asg.update_auto_scaling_group(
        AutoScalingGroupName=asg_name,
        LaunchTemplate={"LaunchTemplateId": lt, "Version": "2"},
        DesiredCapacity=2,
    )
    images = {
        i["InstanceId"]: i["ImageId"]
        for r in emu.ec2.describe_instances(InstanceIds=emu.instances(asg_name))["Reservations"]
        for i in r["Instances"]
    }
    expect(sorted(images.values()) == sorted([old_ami, new_ami]), f"after update: {images}")


def check_removals_drain(emu: Emulator) -> None:
    tg = emu.target_group("rm")
    asg_name = emu.group("rm", tg, capacity=3)
    first, second, third = emu.instances(asg_name)
    emu.asg.terminate_instance_in_auto_scaling_group(
        InstanceId=first, ShouldDecrementDesiredCapacity=False
    )
    emu.asg.detach_instances(
        AutoScalingGroupName=asg_name, InstanceIds=[second], ShouldDecrementDesiredCapacity=True
    )
    h = emu.health(tg)
    expect(h[first]["State"] == h[second]["State"] == "draining", f"terminate/detach: {h}")
    replacement = [i for i in emu.instances(asg_name) if i != third]
    expect(len(replacement) == 1, f"terminate without decrement should replace: {replacement}")
    expect(h[replacement[0]]["State"] == "healthy", f"replacement not registered: {h}")
    try:
        emu.asg.delete_auto_scaling_group(AutoScalingGroupName=asg_name)
    except emu.asg.exceptions.ClientError as err:
        code = err.response["Error"]["Code"]
        expect(code == "ResourceInUse", f"delete without ForceDelete: {code}")
    else:
        raise CheckFailed("delete without ForceDelete succeeded with instances in the group")
    emu.asg.delete_auto_scaling_group(AutoScalingGroupName=asg_name, ForceDelete=True)
    h = emu.health(tg)
    expect(
        {state["State"] for state in h.values()} == {"draining"} and len(h) == 4,
        f"after ForceDelete every target should drain: {h}",
    )


def check_api_fidelity(emu: Emulator) -> None:
    f = emu.fixture()
    a, b = emu.target_group("fa"), emu.target_group("fb")
    # Policies are scoped to their group: a second group's "cpu" must not replace the first's.
    groups = [emu.group(f"pol{i}", a, capacity=0) for i in (1, 2)]
    for value, group in zip((40.0, 60.0), groups, strict=True):
        emu.asg.put_scaling_policy(
            AutoScalingGroupName=group,
            PolicyName="cpu",
            PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration={
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "ASGAverageCPUUtilization"
                },
                "TargetValue": value,
            },
        )
    for value, group in zip((40.0, 60.0), groups, strict=True):
        policies = emu.asg.describe_policies(AutoScalingGroupName=group)["ScalingPolicies"]
        expect(len(policies) == 1, f"{group} has {len(policies)} policies, want 1")
        got = policies[0]["TargetTrackingConfiguration"]["TargetValue"]
        expect(got == value, f"{group}'s policy has target {got}, want {value}")
    try:
        emu.asg.set_desired_capacity(AutoScalingGroupName=groups[0], DesiredCapacity=99)
    except emu.asg.exceptions.ClientError as err:
        expect(err.response["Error"]["Code"] == "ValidationError", f"desired > max: {err}")
    else:
        raise CheckFailed("SetDesiredCapacity above MaxSize was accepted")
    # Weighted forward: weights read back, LoadBalancerArns follow the listener, bad weights fail.
    listener = f["listener"]
    forward = {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": a, "Weight": 90},
                {"TargetGroupArn": b, "Weight": 10},
            ]
        },
    }
    emu.elbv2.modify_listener(ListenerArn=listener, DefaultActions=[forward])
    (action,) = emu.elbv2.describe_listeners(ListenerArns=[listener])["Listeners"][0][
        "DefaultActions"
    ]
    weights = {t["TargetGroupArn"]: t["Weight"] for t in action["ForwardConfig"]["TargetGroups"]}
    expect(weights == {a: 90, b: 10}, f"weights read back as {weights}")
    for tg in emu.elbv2.describe_target_groups(TargetGroupArns=[a, b])["TargetGroups"]:
        expect(tg["LoadBalancerArns"] == [f["lb"]], f"LoadBalancerArns of {tg['TargetGroupName']}")
    forward["ForwardConfig"]["TargetGroups"][0]["Weight"] = 1000
    try:
        emu.elbv2.modify_listener(ListenerArn=listener, DefaultActions=[forward])
    except emu.elbv2.exceptions.ClientError as err:
        expect(err.response["Error"]["Code"] == "ValidationError", f"weight 1000: {err}")
    else:
        raise CheckFailed("ModifyListener accepted weight 1000")


def check_network_load_balancer_arns(emu: Emulator) -> None:
    f = emu.fixture()
    elbv2 = emu.elbv2
    name = f"st-nlb-{emu.run}"
    nlb = elbv2.create_load_balancer(Name=name, Subnets=f["subnets"], Type="network")[
        "LoadBalancers"
    ][0]
    lb = nlb["LoadBalancerArn"]
    expect(f":loadbalancer/net/{name}/" in lb and nlb["Type"] == "network", f"NLB ARN {lb}")
    lb_id = lb.rsplit("/", 1)[1]
    # The ALB fixture keeps its app/ ARN; a gateway load balancer gets gwy/.
    expect(f":loadbalancer/app/st-{emu.run}/" in f["lb"], f"ALB ARN {f['lb']}")
    gwlb = elbv2.create_load_balancer(
        Name=f"st-gwy-{emu.run}", Subnets=f["subnets"][:1], Type="gateway"
    )["LoadBalancers"][0]["LoadBalancerArn"]
    expect(f":loadbalancer/gwy/st-gwy-{emu.run}/" in gwlb, f"GWLB ARN {gwlb}")
    # Found by ARN and by name, with the net/ ARN; its app/ spelling does not exist (as on AWS).
    by_arn = elbv2.describe_load_balancers(LoadBalancerArns=[lb])["LoadBalancers"]
    by_name = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
    expect([x["LoadBalancerArn"] for x in by_arn + by_name] == [lb, lb], f"{by_arn} {by_name}")
    app_spelling = lb.replace(":loadbalancer/net/", ":loadbalancer/app/")
    expect_error(
        elbv2.describe_load_balancers, "LoadBalancerNotFound", LoadBalancerArns=[app_spelling]
    )
    tgs = [
        elbv2.create_target_group(
            Name=f"st-nlb{slot}-{emu.run}", Protocol="TCP", Port=80, VpcId=f["vpc"],
            HealthCheckProtocol="TCP",
        )["TargetGroups"][0]["TargetGroupArn"]
        for slot in "ab"
    ]  # fmt: skip
    expect_error(
        elbv2.create_listener, "LoadBalancerNotFound", LoadBalancerArn=app_spelling,
        Protocol="TCP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tgs[0]}],
    )  # fmt: skip
    created = elbv2.create_listener(
        LoadBalancerArn=lb, Protocol="TCP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tgs[0]}],
    )["Listeners"][0]  # fmt: skip
    listener = created["ListenerArn"]
    prefix = lb.replace(":loadbalancer/net/", ":listener/net/") + "/"
    expect(listener.startswith(prefix) and "/" not in listener[len(prefix):], f"{listener}")
    expect(created["LoadBalancerArn"] == lb, f"CreateListener answered {created}")
    listed = elbv2.describe_listeners(LoadBalancerArn=lb)["Listeners"]
    named = elbv2.describe_listeners(ListenerArns=[listener])["Listeners"]
    for got in listed + named:
        expect((got["ListenerArn"], got["LoadBalancerArn"]) == (listener, lb), f"{got}")
    expect(len(listed) == 1, f"DescribeListeners(LoadBalancerArn): {listed}")
    expect_error(
        elbv2.describe_listeners, "ListenerNotFound",
        ListenerArns=[listener.replace(":listener/net/", ":listener/app/")],
    )  # fmt: skip
    # Target groups name the NLB, and are found through it.
    for tg in elbv2.describe_target_groups(TargetGroupArns=tgs)["TargetGroups"]:
        want = [lb] if tg["TargetGroupArn"] == tgs[0] else []
        expect(tg["LoadBalancerArns"] == want, f"LoadBalancerArns of {tg['TargetGroupName']}")
    behind = elbv2.describe_target_groups(LoadBalancerArn=lb)["TargetGroups"]
    expect([tg["TargetGroupArn"] for tg in behind] == [tgs[0]], f"behind the NLB: {behind}")
    # ModifyListener by the net/ ARN; a weighted forward to both slots is accepted (AWS supports
    # weighted target groups on NLBs since November 2025).
    answer = elbv2.modify_listener(
        ListenerArn=listener, DefaultActions=[{"Type": "forward", "TargetGroupArn": tgs[1]}]
    )["Listeners"][0]
    expect((answer["ListenerArn"], answer["LoadBalancerArn"]) == (listener, lb), f"{answer}")
    weighted = {"TargetGroups": [{"TargetGroupArn": tgs[0], "Weight": 90},
                                 {"TargetGroupArn": tgs[1], "Weight": 10}]}  # fmt: skip
    elbv2.modify_listener(
        ListenerArn=listener, DefaultActions=[{"Type": "forward", "ForwardConfig": weighted}]
    )
    for tg in elbv2.describe_target_groups(TargetGroupArns=tgs)["TargetGroups"]:
        expect(tg["LoadBalancerArns"] == [lb], f"weighted: {tg['TargetGroupName']}")
    # No rules on an NLB listener; the default rule it has carries the net/ ARN.
    expect_error(
        elbv2.create_rule, "ValidationError", ListenerArn=listener, Priority=1,
        Conditions=[{"Field": "host-header", "Values": ["x.example.com"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": tgs[0]}],
    )  # fmt: skip
    rules = elbv2.describe_rules(ListenerArn=listener)["Rules"]
    rule_prefix = listener.replace(":listener/net/", ":listener-rule/net/") + "/"
    expect(
        [r["IsDefault"] for r in rules] == [True] and rules[0]["RuleArn"].startswith(rule_prefix),
        f"rules {rules}",
    )
    # Tags on the NLB and its listener, by their net/ ARNs.
    elbv2.add_tags(ResourceArns=[lb, listener], Tags=[{"Key": "slot", "Value": "net"}])
    described = elbv2.describe_tags(ResourceArns=[lb, listener])["TagDescriptions"]
    expect(
        sorted(d["ResourceArn"] for d in described) == sorted([lb, listener])
        and all({"Key": "slot", "Value": "net"} in d["Tags"] for d in described),
        f"DescribeTags {described}",
    )
    elbv2.remove_tags(ResourceArns=[listener], TagKeys=["slot"])
    described = elbv2.describe_tags(ResourceArns=[listener])["TagDescriptions"]
    expect(described == [{"ResourceArn": listener, "Tags": []}], f"after RemoveTags {described}")
    elbv2.delete_listener(ListenerArn=listener)
    expect(elbv2.describe_listeners(LoadBalancerArn=lb)["Listeners"] == [], "listener not deleted")
    expect_error(elbv2.describe_listeners, "ListenerNotFound", ListenerArns=[listener])
    elbv2.delete_load_balancer(LoadBalancerArn=lb)
    elbv2.delete_load_balancer(LoadBalancerArn=gwlb)
    expect_error(elbv2.describe_load_balancers, "LoadBalancerNotFound", LoadBalancerArns=[lb])


def check_client_token_idempotency(emu: Emulator) -> None:
    ec2, (old_ami, new_ami) = emu.ec2, emu.fixture()["images"]
    # greenlight's per-service lock: a template whose name is the lock, created conditionally.
    name = f"greenlight-lock.st-{emu.run}"
    create = {
        "LaunchTemplateName": name,
        "ClientToken": f"lock-{emu.run}",
        "LaunchTemplateData": {"ImageId": old_ami},
        "TagSpecifications": [
            {"ResourceType": "launch-template", "Tags": [{"Key": "owner", "Value": "selftest"}]}
        ],
    }
    first = ec2.create_launch_template(**create)["LaunchTemplate"]
    again = ec2.create_launch_template(**create)["LaunchTemplate"]  # a retry after a lost answer
    lt = first["LaunchTemplateId"]
    expect(again["LaunchTemplateId"] == lt, f"retry answered {again['LaunchTemplateId']}, not {lt}")
    expect(again == first, f"retry answered {again}, first answer was {first}")
    found = ec2.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [name]}]
    )["LaunchTemplates"]
    expect([t["LaunchTemplateId"] for t in found] == [lt], f"templates named {name}: {found}")
    expect_error(
        ec2.create_launch_template, "IdempotentParameterMismatch",
        **{**create, "VersionDescription": "another request"},
    )  # fmt: skip
    # Another holder (another token) finds the name taken: the lock is held.
    expect_error(
        ec2.create_launch_template, "InvalidLaunchTemplateName.AlreadyExistsException",
        **{**create, "ClientToken": f"other-{emu.run}"},
    )  # fmt: skip
    # Versions: a retried CreateLaunchTemplateVersion must not make a second version.
    version = {
        "LaunchTemplateId": lt,
        "ClientToken": f"release-v2-{emu.run}",
        "SourceVersion": "1",
        "VersionDescription": "v2",
        "LaunchTemplateData": {"ImageId": new_ami},
    }
    v2 = ec2.create_launch_template_version(**version)["LaunchTemplateVersion"]
    retry = ec2.create_launch_template_version(**version)["LaunchTemplateVersion"]
    expect(v2["VersionNumber"] == 2, f"first version call made version {v2['VersionNumber']}")
    expect(retry == v2, f"retry answered {retry}, first answer was {v2}")
    expect_error(
        ec2.create_launch_template_version, "IdempotentParameterMismatch",
        **{**version, "LaunchTemplateData": {"ImageId": old_ami}},
    )  # fmt: skip
    latest = ec2.describe_launch_templates(LaunchTemplateIds=[lt])["LaunchTemplates"][0]
    expect(latest["LatestVersionNumber"] == 2, f"versions after retries: {latest}")
    # Tokens are per operation: the template's token is new to CreateLaunchTemplateVersion.
    v3 = ec2.create_launch_template_version(**{**version, "ClientToken": create["ClientToken"]})
    expect(v3["LaunchTemplateVersion"]["VersionNumber"] == 3, f"per-operation token: {v3}")


def check_launch_template_tags(emu: Emulator) -> None:
    ec2 = emu.ec2
    name = f"tags-{emu.run}"
    lt = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"ImageId": emu.fixture()["images"][0]},
        TagSpecifications=[
            {
                "ResourceType": "launch-template",
                "Tags": [{"Key": "holder", "Value": "first"}, {"Key": "keep", "Value": "1"}],
            }
        ],
    )["LaunchTemplate"]["LaunchTemplateId"]
    by_name = {"Name": "launch-template-name", "Values": [name]}

    def tags() -> dict[str, str]:
        (template,) = ec2.describe_launch_templates(LaunchTemplateIds=[lt])["LaunchTemplates"]
        return {t["Key"]: t["Value"] for t in template.get("Tags", [])}

    def matching(*filters: dict[str, Any]) -> list[str]:
        found = ec2.describe_launch_templates(Filters=[by_name, *filters])["LaunchTemplates"]
        return [t["LaunchTemplateId"] for t in found]

    expect(matching() == [lt], f"launch-template-name filter: {matching()}")
    ec2.create_tags(
        Resources=[lt],
        Tags=[{"Key": "holder", "Value": "second"}, {"Key": "added", "Value": "yes"}],
    )
    want = {"holder": "second", "keep": "1", "added": "yes"}
    expect(tags() == want, f"after CreateTags: {tags()}, want {want}")
    expect(matching({"Name": "tag:holder", "Values": ["second"]}) == [lt], "tag: filter (new)")
    expect(matching({"Name": "tag:holder", "Values": ["first"]}) == [], "tag: filter (old)")
    expect(matching({"Name": "tag-key", "Values": ["added"]}) == [lt], "tag-key filter")
    ec2.delete_tags(Resources=[lt], Tags=[{"Key": "added"}, {"Key": "keep", "Value": "other"}])
    want = {"holder": "second", "keep": "1"}  # a Value that does not match deletes nothing
    expect(tags() == want, f"after DeleteTags: {tags()}, want {want}")
    expect(matching({"Name": "tag-key", "Values": ["added"]}) == [], "tag-key after DeleteTags")
    # The template's own tags are not part of the data it launches instances with.
    (v1,) = ec2.describe_launch_template_versions(LaunchTemplateId=lt)["LaunchTemplateVersions"]
    expect(
        "TagSpecifications" not in v1["LaunchTemplateData"],
        f"template tags leaked into LaunchTemplateData: {v1['LaunchTemplateData']}",
    )
    expect_error(
        ec2.describe_launch_templates, "InvalidLaunchTemplateName.NotFoundException",
        LaunchTemplateNames=[f"missing-{emu.run}"],
    )  # fmt: skip
    ec2.delete_launch_template(LaunchTemplateId=lt)
    left = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [lt]}])["Tags"]
    expect(left == [], f"a deleted template's tags are still listed: {left}")
    expect_error(
        ec2.create_tags, "InvalidLaunchTemplateId.NotFound",
        Resources=[lt], Tags=[{"Key": "holder", "Value": "third"}],
    )  # fmt: skip


def check_modify_responses(emu: Emulator) -> None:
    f = emu.fixture()
    a, b = emu.target_group("ma"), emu.target_group("mb")
    # A listener of its own, so the other checks' routing is left alone.
    listener = emu.elbv2.create_listener(
        LoadBalancerArn=f["lb"], Protocol="HTTP", Port=8080,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": a}],
    )["Listeners"][0]["ListenerArn"]  # fmt: skip
    rule = emu.elbv2.create_rule(
        ListenerArn=listener, Priority=1,
        Conditions=[{"Field": "path-pattern", "Values": ["/modify/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": a}],
    )["Rules"][0]["RuleArn"]  # fmt: skip
    off = {"Enabled": False}
    for weights, stickiness in (
        ((90, 10), None),
        ((0, 100), {"Enabled": True, "DurationSeconds": 300}),
        ((1, 999), off),
    ):
        config: dict[str, Any] = {
            "TargetGroups": [
                {"TargetGroupArn": arn, "Weight": w} for arn, w in zip((a, b), weights, strict=True)
            ]
        }
        if stickiness is not None:
            config["TargetGroupStickinessConfig"] = stickiness
        want = {**config, "TargetGroupStickinessConfig": stickiness or off}
        actions = [{"Type": "forward", "ForwardConfig": config}]
        answered = emu.elbv2.modify_listener(ListenerArn=listener, DefaultActions=actions)
        described = emu.elbv2.describe_listeners(ListenerArns=[listener])["Listeners"][0]
        got = answered["Listeners"][0]["DefaultActions"]
        expect(got == described["DefaultActions"], f"ModifyListener answered {got}, Describe "
               f"shows {described['DefaultActions']}")  # fmt: skip
        expect(got[0].get("ForwardConfig") == want, f"ModifyListener {weights}: {got}")
        answered = emu.elbv2.modify_rule(RuleArn=rule, Actions=actions)
        described = emu.elbv2.describe_rules(RuleArns=[rule])["Rules"][0]
        got = answered["Rules"][0]["Actions"]
        expect(got == described["Actions"], f"ModifyRule answered {got}, Describe "
               f"shows {described['Actions']}")  # fmt: skip
        expect(got[0].get("ForwardConfig") == want, f"ModifyRule {weights}: {got}")


def check_request_log(emu: Emulator) -> None:
    f = emu.fixture()  # before the mark: only the calls below may follow it
    sts, cloudwatch = emu.client("sts"), emu.client("cloudwatch")
    mark = emu.requests_since(0)["total"]
    started = time.time()
    emu.ec2.describe_vpcs(VpcIds=[f["vpc"]])
    emu.http_status("GET", "/_greenlight/target-health")  # test endpoints are not logged ...
    emu.http_status("GET", "/moto-api/config")  # ... nor moto's own
    emu.elbv2.describe_load_balancers(LoadBalancerArns=[f["lb"]])
    emu.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"none-{emu.run}"])
    sts.get_caller_identity()
    expect_error(
        emu.elbv2.describe_target_groups, "TargetGroupNotFound", Names=[f"none-{emu.run}"]
    )  # an error answer is logged too
    cloudwatch.list_metrics()  # boto3 picks CloudWatch's JSON protocol: X-Amz-Target
    # The Rust SDK's CloudWatch speaks Smithy RPC v2 CBOR: logged by the path's operation name
    # (an empty map lacks GetMetricData's required members, so the answer is a ValidationError;
    # with --stock moto answers 404). The signature is not checked, only its credential scope.
    emu.http_status(
        "POST",
        "/service/GraniteServiceVersion20100801/operation/GetMetricData",
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/monitoring/"
            "aws4_request, SignedHeaders=host;smithy-protocol, Signature=0",
            "smithy-protocol": "rpc-v2-cbor",
            "Content-Type": "application/cbor",
        },
        data=b"\xa0",  # an empty CBOR map
    )
    finished = time.time()
    log = emu.requests_since(mark)
    entries = log["requests"]
    expect(log["since"] == mark, f"since echoed as {log['since']}, not {mark}")
    expect(log["total"] == mark + len(entries), f"total {log['total']} != {mark} + {len(entries)}")
    got = [(e["service"], e["action"]) for e in entries]
    want = [
        ("ec2", "DescribeVpcs"),
        ("elasticloadbalancing", "DescribeLoadBalancers"),
        ("autoscaling", "DescribeAutoScalingGroups"),
        ("sts", "GetCallerIdentity"),
        ("elasticloadbalancing", "DescribeTargetGroups"),
        ("monitoring", "ListMetrics"),
        ("monitoring", "GetMetricData"),
    ]
    # Equal when nobody else uses the emulator; in order (with others' calls between) if shared.
    rest = iter(got)
    expect(all(item in rest for item in want), f"logged {got}, want {want} in order")
    # moto-api and test-endpoint requests are unsigned: they would show as a null service.
    expect(all(s and a for s, a in got), f"logged a request that is not an AWS call: {got}")
    times = [e["time"] for e in entries]
    expect(
        all(isinstance(t, float) for t in times)
        and times == sorted(times)
        and started - 1 <= times[0] <= times[-1] <= finished + 1,
        f"times {times} not in order within [{started}, {finished}]",
    )
    total = log["total"]
    beyond = emu.requests_since(total + 10)
    expect(beyond["requests"] == [] and beyond["total"] >= total, f"since > total: {beyond}")
    for bad in ("since=-1", "since=x", "from=1"):
        status = emu.http_status("GET", f"/_greenlight/requests?{bad}")
        expect(status == 400, f"GET /_greenlight/requests?{bad} answered {status}")


# -- CloudWatch over Smithy RPC v2 CBOR (fidelity/cloudwatch_cbor.py) ---------------------------


def expect_cbor_answer(r: rpcv2cbor.Response, status: int, what: str) -> None:
    """The headers every rpcv2Cbor answer carries; a body only with a Content-Type."""
    expect(r.status == status, f"{what}: HTTP {r.status}, want {status} ({r.code}: {r.message})")
    expect(r.headers.get("smithy-protocol") == "rpc-v2-cbor", f"{what}: headers {r.headers}")
    expect(r.headers.get("x-amzn-requestid"), f"{what}: no x-amzn-requestid in {r.headers}")
    if r.body:
        expect(r.headers.get("content-type") == "application/cbor", f"{what}: {r.headers}")
        expect(rpcv2cbor.floats_are_float64(r.body), f"{what}: a float narrower than float64")
    else:
        expect("content-type" not in r.headers, f"{what}: Content-Type without a body")


def expect_cbor_error(
    r: rpcv2cbor.Response, status: int, code: str, shape_id: str, what: str
) -> str:
    """An error answer as aws-sdk-cloudwatch reads it: code (from x-amzn-query-error), message."""
    expect_cbor_answer(r, status, what)
    raw = cbor2.loads(r.body)
    expect(raw.get("__type") == shape_id, f"{what}: __type {raw.get('__type')!r}, want {shape_id}")
    expect(r.code == code, f"{what}: the SDK would read code {r.code!r}, want {code!r}")
    fault = "Receiver" if status >= 500 else "Sender"
    expect(r.headers.get("x-amzn-query-error") == f"{code};{fault}", f"{what}: {r.headers}")
    expect(bool(r.message), f"{what}: no message in {raw}")
    return r.message or ""


def check_cloudwatch_cbor_request_shape(emu: Emulator) -> None:
    """What our client sends is what aws-sdk-cloudwatch sends (see rpcv2cbor.py's notes)."""
    r = emu.cbor.call("DescribeAlarms", {"AlarmNames": [f"none-{emu.run}"], "MaxRecords": 10})
    sent = {k.lower(): v for k, v in r.sent_headers.items()}
    for name, value in (
        ("content-type", "application/cbor"),
        ("smithy-protocol", "rpc-v2-cbor"),
        ("accept", "application/cbor"),
        ("x-amzn-query-mode", "true"),
        ("content-length", str(len(r.sent_body))),
    ):
        expect(sent.get(name) == value, f"sent {name}: {sent.get(name)!r}, want {value!r}")
    expect("/monitoring/aws4_request" in sent.get("authorization", ""), f"signing: {sent}")
    expect("x-amz-target" not in sent, "an rpcv2Cbor request must not carry X-Amz-Target")
    # A structure is an indefinite-length map; MaxRecords 10 is the one-byte integer 0x0a.
    body = r.sent_body
    expect(body[:1] == b"\xbf" and body[-1:] == b"\xff", f"body framing: {body.hex()}")
    expect(b"\x6aMaxRecords\x0a" in body, f"MaxRecords encoding: {body.hex()}")
    expect(cbor2.loads(body) == {"AlarmNames": [f"none-{emu.run}"], "MaxRecords": 10}, "body")
    expect_cbor_answer(r, 200, "DescribeAlarms")
    expect(r.output == {"MetricAlarms": [], "CompositeAlarms": []}, f"no alarms: {r.output}")
    # Timestamps: tag 1 over a float64, as smithy-rs writes them.
    query = {
        "MetricDataQueries": [
            {"Id": "q", "MetricStat": {
                "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount"},
                "Period": 60, "Stat": "Sum"}}
        ],
        "StartTime": 1767225600.25,
        "EndTime": 1767225660.5,
    }  # fmt: skip
    body = bytes(rpcv2cbor.encode(emu.cbor.operation("GetMetricData").input_shape, query))
    expect(b"\x69StartTime\xc1\xfb" in body, f"StartTime is not tag 1 + float64: {body.hex()}")
    decoded = cbor2.loads(body)["StartTime"]
    expect(decoded.timestamp() == 1767225600.25, f"StartTime decodes as {decoded}")


def check_cloudwatch_cbor_alarms(emu: Emulator) -> None:
    cw = emu.cbor
    mark = emu.requests_since(0)["total"]
    name = f"st-5xx-{emu.run}"
    dimensions = [
        {"Name": "TargetGroup", "Value": f"targetgroup/st-a-{emu.run}/0123456789abcdef"},
        {"Name": "LoadBalancer", "Value": f"app/st-{emu.run}/50dc6c495c0c9188"},
    ]
    alarm = {
        "AlarmName": name,
        "AlarmDescription": "5XX from the new slot",
        "ActionsEnabled": False,
        "MetricName": "HTTPCode_Target_5XX_Count",
        "Namespace": "AWS/ApplicationELB",
        "Statistic": "Sum",
        "Dimensions": dimensions,
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 1,
        "Threshold": 5,  # a double: sent as float64 5.0
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "Tags": [{"Key": "team", "Value": "payments"}],
    }
    started = time.time()
    r = cw.call("PutMetricAlarm", alarm)
    expect_cbor_answer(r, 200, "PutMetricAlarm")
    expect(r.body == b"", f"PutMetricAlarm has no output, answered {r.body!r}")

    def describe(**params: Any) -> list[dict[str, Any]]:
        r = cw.call("DescribeAlarms", params)
        expect_cbor_answer(r, 200, f"DescribeAlarms {params}")
        assert r.output is not None
        expect(r.output.get("CompositeAlarms") == [], f"CompositeAlarms: {r.output}")
        return r.output["MetricAlarms"]

    (got,) = describe(AlarmNames=[name])
    for key in ("AlarmName", "AlarmDescription", "ActionsEnabled", "MetricName", "Namespace",
                "Statistic", "Dimensions", "Period", "EvaluationPeriods", "DatapointsToAlarm",
                "ComparisonOperator", "TreatMissingData"):  # fmt: skip
        expect(got.get(key) == alarm[key], f"{key}: {got.get(key)!r}, want {alarm[key]!r}")
    expect(got["Threshold"] == 5.0 and isinstance(got["Threshold"], float), f"{got['Threshold']}")
    expect(got["AlarmArn"].endswith(f":alarm:{name}"), f"AlarmArn {got['AlarmArn']}")
    # moto starts alarms in OK (AWS: INSUFFICIENT_DATA) and never evaluates them.
    expect(got["StateValue"] == "OK", f"initial state {got['StateValue']}")
    for key in ("StateUpdatedTimestamp", "AlarmConfigurationUpdatedTimestamp"):
        expect(started - 5 <= got[key] <= time.time() + 5, f"{key} {got[key]} is not now")
    r = cw.call(
        "SetAlarmState",
        {"AlarmName": name, "StateValue": "ALARM", "StateReason": "selftest: 5XX over 5"},
    )
    expect_cbor_answer(r, 200, "SetAlarmState")
    (firing,) = describe(AlarmNames=[name], StateValue="ALARM")
    expect(firing["StateValue"] == "ALARM", f"after SetAlarmState: {firing['StateValue']}")
    expect(firing["StateReason"] == "selftest: 5XX over 5", f"StateReason {firing}")
    expect(firing["StateUpdatedTimestamp"] >= got["StateUpdatedTimestamp"], "state timestamp")
    # Every filter applies (stock moto uses only the first it finds: AlarmNames here).
    expect(describe(AlarmNames=[name], StateValue="OK") == [], "AlarmNames + StateValue=OK")
    by_state = [a["AlarmName"] for a in describe(StateValue="ALARM", AlarmNamePrefix="st-5xx-")]
    expect(name in by_state, f"StateValue=ALARM + prefix: {by_state}")
    expect(
        name not in [a["AlarmName"] for a in describe(StateValue="OK")], "StateValue=OK alone"
    )
    # The request log names the service and the operation, once per call.
    got_log = [(e["service"], e["action"]) for e in emu.requests_since(mark)["requests"]]
    want = [("monitoring", op) for op in ("PutMetricAlarm", "DescribeAlarms", "SetAlarmState")]
    want += [("monitoring", "DescribeAlarms")] * 4
    rest = iter(got_log)
    expect(all(item in rest for item in want), f"logged {got_log}, want {want} in order")
    # The JSON request the layer makes to moto is internal: not logged a second time.
    for op in ("PutMetricAlarm", "SetAlarmState"):
        expect(got_log.count(("monitoring", op)) == 1, f"{op} logged twice: {got_log}")


def check_cloudwatch_cbor_metrics(emu: Emulator) -> None:
    cw = emu.cbor
    lb = f"app/st-{emu.run}/50dc6c495c0c9188"
    tgs = {slot: f"targetgroup/st-{slot}-{emu.run}/0123456789abcdef" for slot in "abc"}
    now = time.time()
    points = {  # (metric, slot) -> [(seconds ago, value)]
        ("RequestCount", "a"): [(90, 100.0), (30, 50.0)],
        ("RequestCount", "b"): [(90, 40.0), (30, 2.0)],
        ("HTTPCode_Target_5XX_Count", "a"): [(90, 3.0), (30, 1.0)],
        ("HTTPCode_Target_5XX_Count", "b"): [(30, 0.0)],
        ("TargetResponseTime", "a"): [(90, 0.12), (30, 0.3)],
        ("TargetResponseTime", "b"): [(30, 0.05)],
    }

    def dims(slot: str) -> list[dict[str, str]]:
        return [{"Name": "TargetGroup", "Value": tgs[slot]}, {"Name": "LoadBalancer", "Value": lb}]

    data = [
        {"MetricName": metric, "Dimensions": dims(slot), "Timestamp": now - ago, "Value": value,
         "Unit": "Seconds" if metric == "TargetResponseTime" else "Count"}
        for (metric, slot), series in points.items()
        for ago, value in series
    ]  # fmt: skip
    r = cw.call("PutMetricData", {"Namespace": "AWS/ApplicationELB", "MetricData": data})
    expect_cbor_answer(r, 200, "PutMetricData")
    expect("Content-Encoding" not in r.sent_headers, "a small body must not be compressed")
    # A body of 10 KiB or more is gzipped by the SDK (Content-Encoding: gzip).
    many = [
        {"MetricName": "RequestCount", "Dimensions": dims("c"), "Timestamp": now - 60 + i / 10,
         "Value": 1.0, "Unit": "Count"}
        for i in range(150)
    ]  # fmt: skip
    r = cw.call("PutMetricData", {"Namespace": "AWS/ApplicationELB", "MetricData": many})
    expect(r.sent_headers.get("Content-Encoding") == "gzip", f"not gzipped: {r.sent_headers}")
    expect_cbor_answer(r, 200, "PutMetricData (gzip)")

    def stat(qid: str, metric: str, slot: str, statistic: str) -> dict[str, Any]:
        return {
            "Id": qid,
            "MetricStat": {
                "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": metric,
                           "Dimensions": dims(slot)},
                "Period": 60,
                "Stat": statistic,
            },
        }  # fmt: skip

    queries = [
        stat("requests_a", "RequestCount", "a", "Sum"),
        stat("requests_b", "RequestCount", "b", "Sum"),
        stat("errors_a", "HTTPCode_Target_5XX_Count", "a", "Sum"),
        stat("errors_b", "HTTPCode_Target_5XX_Count", "b", "Sum"),
        stat("latency_avg_a", "TargetResponseTime", "a", "Average"),
        stat("latency_max_a", "TargetResponseTime", "a", "Maximum"),
        stat("latency_n_a", "TargetResponseTime", "a", "SampleCount"),
        stat("latency_p99_a", "TargetResponseTime", "a", "p99"),
        stat("requests_c", "RequestCount", "c", "Sum"),
        stat("requests_n_c", "RequestCount", "c", "SampleCount"),
    ]
    r = cw.call(
        "GetMetricData",
        {"MetricDataQueries": queries, "StartTime": now - 600, "EndTime": now + 60},
    )
    expect_cbor_answer(r, 200, "GetMetricData")
    assert r.output is not None
    results = {m["Id"]: m for m in r.output["MetricDataResults"]}
    expect(sorted(results) == sorted(q["Id"] for q in queries), f"results {sorted(results)}")
    for result in results.values():
        expect(result["StatusCode"] == "Complete", f"{result}")
        expect(len(result["Timestamps"]) == len(result["Values"]), f"{result}")
        expect(all(now - 700 <= t <= now + 60 for t in result["Timestamps"]), f"{result}")

    def total(qid: str) -> float:
        return round(sum(results[qid]["Values"]), 6)

    want = {"requests_a": 150.0, "requests_b": 42.0, "errors_a": 4.0, "errors_b": 0.0,
            "latency_n_a": 2.0, "requests_c": 150.0, "requests_n_c": 150.0}  # fmt: skip
    got = {qid: total(qid) for qid in want}
    expect(got == want, f"per-target-group sums {got}, want {want}")
    # One datapoint per minute: the two latency samples fall in different periods.
    for qid in ("latency_avg_a", "latency_max_a"):
        values = sorted(round(v, 6) for v in results[qid]["Values"])
        expect(values == [0.12, 0.3], f"{qid}: {results[qid]['Values']}")
    # moto computes no percentiles: p99 answers no datapoints (AWS would answer the p99).
    p99 = results["latency_p99_a"]
    expect(p99["Values"] == [] and p99["Timestamps"] == [], f"p99: {p99}")
    expect(results["requests_a"]["Label"] == "RequestCount Sum", f"label {results['requests_a']}")


def check_cloudwatch_cbor_errors(emu: Emulator) -> None:
    cw = emu.cbor
    ns = "com.amazonaws.cloudwatch"
    coral = "com.amazon.coral.service"
    # A missing required member: ValidationError, the model's shape, HTTP 400.
    r = cw.call("GetMetricData", {"StartTime": time.time() - 60, "EndTime": time.time()})
    message = expect_cbor_error(r, 400, "ValidationError", f"{ns}#ValidationException",
                                "GetMetricData without MetricDataQueries")  # fmt: skip
    expect("Value null at 'metricDataQueries'" in message, f"message: {message}")
    # A bad parameter: a value outside the enum, a number below its minimum.
    r = cw.call("DescribeAlarms", {"StateValue": "FIRING", "MaxRecords": 0})
    message = expect_cbor_error(r, 400, "ValidationError", f"{ns}#ValidationException",
                                "DescribeAlarms StateValue=FIRING")  # fmt: skip
    expect(message.startswith("2 validation errors detected:") and "'stateValue'" in message
           and "'maxRecords'" in message, f"message: {message}")  # fmt: skip
    # moto's own errors keep their code: the SDK matches SetAlarmStateError::ResourceNotFound.
    r = cw.call(
        "SetAlarmState", {"AlarmName": f"none-{emu.run}", "StateValue": "OK", "StateReason": "x"}
    )
    expect_cbor_error(r, 404, "ResourceNotFound", f"{ns}#ResourceNotFound", "SetAlarmState")
    query = {"Id": "q", "MetricStat": {"Metric": {"Namespace": "N", "MetricName": "M"},
                                       "Period": 60, "Stat": "Sum"}}  # fmt: skip
    r = cw.call("GetMetricData", {"MetricDataQueries": [query], "StartTime": time.time(),
                                  "EndTime": time.time() - 60})  # fmt: skip
    message = expect_cbor_error(r, 400, "ValidationError", f"{ns}#ValidationException",
                                "GetMetricData EndTime before StartTime")  # fmt: skip
    expect("EndTime must be greater than StartTime" in message, f"message: {message}")
    # Protocol errors: wrong CBOR types, broken CBOR, unknown operations, a missing header.
    untagged = b"\xbf\x69StartTime\x1a\x69\x6b\x8c\x00\xff"  # StartTime as a bare integer
    r = cw.call("GetMetricData", body=untagged)
    message = expect_cbor_error(r, 400, "SerializationException", f"{coral}#SerializationException",
                                "untagged timestamp")  # fmt: skip
    expect("StartTime" in message, f"message: {message}")
    r = cw.call("DescribeAlarms", body=b"\xbf\x6aMaxRecords")  # truncated
    expect_cbor_error(r, 400, "SerializationException", f"{coral}#SerializationException",
                      "truncated CBOR")  # fmt: skip
    r = cw.call("DescribeAlarms", {}, drop_headers=("smithy-protocol",))
    expect_cbor_error(r, 400, "SerializationException", f"{coral}#SerializationException",
                      "no smithy-protocol header")  # fmt: skip
    r = cw.call("NoSuchOperation", body=b"\xbf\xff")
    expect_cbor_error(r, 400, "UnknownOperation", f"{coral}#UnknownOperationException",
                      "unknown operation")  # fmt: skip
    # An empty body is an empty input (the spec: servers accept it).
    r = cw.call("DescribeAlarms", body=b"", drop_headers=("Content-Type",))
    expect_cbor_answer(r, 200, "DescribeAlarms with an empty body")


def check_cloudwatch_cbor_botocore(emu: Emulator) -> None:
    """A second, independent rpcv2Cbor client: botocore's own, made to pick CBOR."""
    model = botocore.session.get_session().get_component("data_loader").load_service_model(
        "cloudwatch", "service-2"
    )
    model = json.loads(json.dumps(model))
    model["metadata"]["protocols"] = ["smithy-rpc-v2-cbor"]
    model["metadata"]["protocol"] = "smithy-rpc-v2-cbor"
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "cloudwatch", model["metadata"]["apiVersion"])
        os.makedirs(folder)
        with open(os.path.join(folder, "service-2.json"), "w") as f:
            json.dump(model, f)
        session = botocore.session.get_session()
        session.get_component("data_loader").search_paths.insert(0, tmp)
        cw = session.create_client(
            "cloudwatch",
            region_name=REGION,
            endpoint_url=emu.endpoint,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing",
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )
    expect(cw.meta.service_model.resolved_protocol == "smithy-rpc-v2-cbor", "not CBOR")
    name = f"st-boto-{emu.run}"
    cw.put_metric_alarm(
        AlarmName=name, MetricName="RequestCount", Namespace="AWS/ApplicationELB",
        Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1.5,
        ComparisonOperator="LessThanThreshold",
    )  # fmt: skip
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="botocore")
    answer = cw.describe_alarms(AlarmNames=[name], StateValue="ALARM")
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    expect(headers.get("content-type") == "application/cbor", f"headers {headers}")
    (alarm,) = answer["MetricAlarms"]
    expect(alarm["Threshold"] == 1.5 and alarm["StateReason"] == "botocore", f"{alarm}")
    expect(abs(alarm["StateUpdatedTimestamp"].timestamp() - time.time()) < 60, f"{alarm}")
    try:
        cw.set_alarm_state(AlarmName=f"none-{emu.run}", StateValue="OK", StateReason="x")
    except cw.exceptions.ResourceNotFound as err:
        expect(err.response["ResponseMetadata"]["HTTPStatusCode"] == 404, f"{err.response}")
    else:
        raise CheckFailed("SetAlarmState on a missing alarm succeeded")
    expect_error(cw.describe_alarms, "ValidationError", StateValue="FIRING")  # enum, server side
    now = time.time()
    dims = [{"Name": "TargetGroup", "Value": f"targetgroup/st-boto-{emu.run}/0123456789abcdef"}]
    cw.put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[{"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": now - 30,
                     "Value": 7.0, "Unit": "Count"}],
    )  # fmt: skip
    metric = {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount", "Dimensions": dims}
    (result,) = cw.get_metric_data(
        MetricDataQueries=[{"Id": "r", "MetricStat": {"Metric": metric, "Period": 60,
                                                      "Stat": "Sum"}}],
        StartTime=now - 300, EndTime=now + 60,
    )["MetricDataResults"]  # fmt: skip
    expect(result["Values"] == [7.0] and len(result["Timestamps"]) == 1, f"{result}")

def check_reset_clears_rules(emu: Emulator) -> None:
    emu.script(asg_name=f"nobody-{emu.run}", sequence=[{"state": "unhealthy"}])
    expect(len(emu.http("GET", "/_greenlight/target-health")["rules"]) >= 1, "rule not listed")
    emu.http("DELETE", "/_greenlight/target-health")
    expect(emu.http("GET", "/_greenlight/target-health")["rules"] == [], "DELETE left rules behind")
    emu.script(asg_name=f"nobody-{emu.run}", sequence=[{"state": "unhealthy"}])
    # The request log: DELETE empties it, and the next call is entry 0.
    expect(emu.http("DELETE", "/_greenlight/requests") == {"status": "ok"}, "DELETE requests")
    expect(emu.requests_since(0)["total"] == 0, "DELETE /_greenlight/requests left entries")
    emu.ec2.describe_vpcs()
    logged = emu.requests_since(0)["requests"]
    expect([e["action"] for e in logged] == ["DescribeVpcs"], f"after DELETE: {logged}")
    emu.http("POST", "/moto-api/reset")
    state = emu.http("GET", "/_greenlight/target-health")
    expect(state["rules"] == [] and state["draining"] == [], f"reset left state behind: {state}")
    expect(emu.requests_since(0)["total"] == 0, "reset left the request log behind")
    expect(
        emu.asg.describe_auto_scaling_groups()["AutoScalingGroups"] == [],
        "reset left groups behind",
    )


CHECKS: list[tuple[str, Callable[[Emulator], None]]] = [
    ("scripted-health-observations", check_scripted_health_observations),
    ("scripted-health-seconds", check_scripted_health_seconds),
    ("draining-after-scale-in", check_draining_after_scale_in),
    ("launch-template-versions", check_launch_template_versions),
    ("removals-drain", check_removals_drain),
    ("api-fidelity", check_api_fidelity),
    ("network-load-balancer-arns", check_network_load_balancer_arns),
    ("client-token-idempotency", check_client_token_idempotency),
    ("launch-template-tags", check_launch_template_tags),
    ("modify-responses", check_modify_responses),
    ("request-log", check_request_log),
    ("cloudwatch-cbor-request-shape", check_cloudwatch_cbor_request_shape),
    ("cloudwatch-cbor-alarms", check_cloudwatch_cbor_alarms),
    ("cloudwatch-cbor-metrics", check_cloudwatch_cbor_metrics),
    ("cloudwatch-cbor-errors", check_cloudwatch_cbor_errors),
    ("cloudwatch-cbor-botocore", check_cloudwatch_cbor_botocore),
    ("reset-clears-rules", check_reset_clears_rules),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-reset", action="store_true", help="leave out reset-clears-rules")
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        print("selftest.py: AWS_ENDPOINT_URL is not set", file=sys.stderr)
        return 2
    emu = Emulator(endpoint)
    passed = failed = 0
    for name, check in CHECKS:
        if args.skip_reset and name == "reset-clears-rules":
            continue
        started = time.monotonic()
        try:
            check(emu)
        except Exception as err:  # a failed expectation, or the emulator answering an error
            failed += 1
            print(f"FAIL {name}: {type(err).__name__}: {err}")
            if args.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - started:.1f}s)")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
