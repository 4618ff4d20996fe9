#!/usr/bin/env python3
"""A rollback as a competent engineer writes it with boto3, in one process (bench/run.sh's peer).

    python bench/peers/rollback.py LISTENER_ARN

The same three calls as rollback.sh: read the listener (live at weight 100, the previous release
at 0), check that every registered target of the previous release is healthy, swap the weights
in one ModifyListener. Exit 0 when traffic moved, 1 otherwise.
"""

import sys

import boto3
from botocore.config import Config


def forward(first: str, second: str) -> list:
    return [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": first, "Weight": 100},
        {"TargetGroupArn": second, "Weight": 0},
    ]}}]


def main(listener: str) -> int:
    elb = boto3.client("elbv2", config=Config(
        retries={"mode": "standard", "max_attempts": 5}, user_agent_appid="bench-boto3"))
    action = elb.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"][0]
    groups = sorted(action.get("ForwardConfig", {}).get("TargetGroups", []),
                    key=lambda g: g.get("Weight", 1), reverse=True)
    if len(groups) != 2:
        print("rollback: the listener must forward to two target groups", file=sys.stderr)
        return 1
    live, previous = groups[0]["TargetGroupArn"], groups[1]["TargetGroupArn"]
    states = [d["TargetHealth"]["State"] for d in
              elb.describe_target_health(TargetGroupArn=previous)["TargetHealthDescriptions"]]
    registered = [s for s in states if s != "draining"]
    if not registered or any(s != "healthy" for s in registered):
        print(f"rollback: previous target group is not healthy ({states}); not rolling back",
              file=sys.stderr)
        return 1
    elb.modify_listener(ListenerArn=listener, DefaultActions=forward(previous, live))
    print(f"rolled back: traffic on {previous}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
