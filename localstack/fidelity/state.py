"""What the fidelity layer remembers beside moto's models, and the scripted-health rules.

All of it is process-global (like moto's backends) and is cleared by `STATE.reset()`, which the
emulator calls on `POST /moto-api/reset`. Only the emulator's request thread touches it, under
the emulator's lock, so there is no locking here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup
from moto.elbv2.models import FakeTargetGroup

# DescribeTargetHealth states AWS can report, with the reason/description AWS gives when a
# scripted step names a state but no reason. `healthy` never carries a reason.
DEFAULT_REASONS: dict[str, tuple[str, str] | None] = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "healthy": None,
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
    "unused": (
        "Target.NotInUse",
        "Target group is not configured to receive traffic from the load balancer",
    ),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
    "unavailable": ("Target.HealthCheckDisabled", "Health checks are disabled"),
    "unhealthy.draining": (
        "Target.DeregistrationInProgress",
        "Target deregistration is in progress",
    ),
}
DRAINING = DEFAULT_REASONS["draining"]
NOT_IN_USE = DEFAULT_REASONS["unused"]

DEREGISTRATION_DELAY_KEY = "deregistration_delay.timeout_seconds"
AWS_DEFAULT_DEREGISTRATION_DELAY = 300

TargetKey = tuple[str, str]  # (target group ARN, target id)


def now() -> float:
    """Monotonic seconds: scripted steps and drains must not jump with the wall clock."""
    return time.monotonic()


@dataclass
class Step:
    state: str
    reason: str | None
    description: str | None
    observations: int | None  # lasts this many reports of the target ...
    seconds: float | None  # ... or this much wall time, whichever ends first

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        for key in ("reason", "description", "observations", "seconds"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class HealthRule:
    id: int
    target_group_arn: str | None
    asg_name: str | None
    instance_id: str | None
    steps: list[Step]

    def matches(self, tg_arn: str, instance_id: str, asg_name: str | None) -> bool:
        return (
            (self.target_group_arn is None or self.target_group_arn == tg_arn)
            and (self.instance_id is None or self.instance_id == instance_id)
            and (self.asg_name is None or self.asg_name == asg_name)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target_group_arn": self.target_group_arn,
            "asg_name": self.asg_name,
            "instance_id": self.instance_id,
            "sequence": [s.as_json() for s in self.steps],
        }


@dataclass
class Binding:
    """Where one (target group, target) pair is in its rule's sequence."""

    rule_id: int
    step: int = 0
    step_started: float = field(default_factory=now)
    observations: int = 0  # reports of this target during the current step


@dataclass
class Drain:
    target: dict[str, Any]  # {"Id": ..., "Port": ...} as it was registered
    until: float


class FidelityState:
    def __init__(self) -> None:
        self.not_in_use = False  # --report-not-in-use; survives reset (it is configuration)
        self.reset()

    def reset(self) -> None:
        self.rules: list[HealthRule] = []
        self.next_rule_id = 1
        self.bindings: dict[TargetKey, Binding] = {}
        self.draining: dict[TargetKey, Drain] = {}
        # instance id -> name of the ASG that launched or attached it. Survives detach and
        # termination, so `asg_name` rules and drain bookkeeping still know where it came from.
        self.instance_asg: dict[str, str] = {}
        # instance id -> the LaunchTemplate spec the ASG launched it with.
        self.instance_launch_template: dict[str, dict[str, Any]] = {}
        # (launch template id, version number) to use while an ASG is launching instances.
        self.launch_pin: tuple[str, int] | None = None
        # (account, region, action, ClientToken) -> (the request's parameters, its result), for
        # the idempotent EC2 calls (idempotency.py).
        self.client_tokens: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    # -- scripted health ----------------------------------------------------------------------

    def add_health_rule(self, body: Any) -> dict[str, Any]:
        rule = parse_health_rule(body, self.next_rule_id)
        self.next_rule_id += 1
        self.rules.append(rule)
        return rule.as_json()

    def clear_health_rules(self) -> None:
        self.rules.clear()
        self.bindings.clear()

    def scripted_step(self, tg_arn: str, target_id: str) -> Step | None:
        """The step to report for this pair now, counting this report as an observation.

        The pair follows the newest rule that matches it; it (re)binds to that rule the first
        time it is reported after the rule was added, starting at the rule's first step.
        """
        key = (tg_arn, target_id)
        asg = self.instance_asg.get(target_id)
        rule = next((r for r in reversed(self.rules) if r.matches(tg_arn, target_id, asg)), None)
        if rule is None:
            self.bindings.pop(key, None)
            return None
        binding = self.bindings.get(key)
        if binding is None or binding.rule_id != rule.id:
            binding = self.bindings[key] = Binding(rule.id)
        last = len(rule.steps) - 1
        t = now()
        # Time-limited steps end on their own; catch up on any that ran out between reports.
        while binding.step < last and rule.steps[binding.step].seconds is not None:
            ends = binding.step_started + rule.steps[binding.step].seconds
            if t < ends:
                break
            binding.step, binding.step_started, binding.observations = binding.step + 1, ends, 0
        step = rule.steps[binding.step]
        binding.observations += 1
        if (
            binding.step < last
            and step.observations is not None
            and binding.observations >= step.observations
        ):
            binding.step, binding.step_started, binding.observations = binding.step + 1, t, 0
        return step

    def forget_binding(self, tg_arn: str, target_id: str) -> None:
        """A (re-)registered target starts its script from the beginning, as on AWS."""
        self.bindings.pop((tg_arn, target_id), None)

    # -- draining -----------------------------------------------------------------------------

    def start_draining(self, tg: FakeTargetGroup, target: dict[str, Any]) -> None:
        self.forget_binding(tg.arn, target["Id"])
        delay = deregistration_delay(tg)
        if delay > 0:
            self.draining[(tg.arn, target["Id"])] = Drain(dict(target), now() + delay)

    def draining_targets(self, tg_arn: str) -> list[dict[str, Any]]:
        """Targets of this group still draining; expired drains are dropped on the way."""
        t = now()
        out = []
        for key, drain in list(self.draining.items()):
            if drain.until <= t:
                del self.draining[key]
            elif key[0] == tg_arn:
                out.append(drain.target)
        return out

    def is_draining(self, tg_arn: str, target_id: str) -> bool:
        return any(t["Id"] == target_id for t in self.draining_targets(tg_arn))

    # -- launch template pinning -------------------------------------------------------------

    @contextlib.contextmanager
    def pinned_launch_template(self, group: FakeAutoScalingGroup) -> Iterator[None]:
        """While `group` launches instances, resolve its template to the version it names."""
        lt = group.ec2_launch_template
        previous = self.launch_pin
        if lt is not None:
            self.launch_pin = (lt.id, lt.get_version(group.launch_template_version).number)
        try:
            yield
        finally:
            self.launch_pin = previous

    # -- debugging ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        t = now()
        for tg_arn in {k[0] for k in self.draining}:
            self.draining_targets(tg_arn)  # drop expired entries first
        return {
            "rules": [r.as_json() for r in self.rules],
            "bindings": [
                {
                    "target_group_arn": tg,
                    "instance_id": target,
                    "rule": b.rule_id,
                    "step": b.step,
                    "observations_in_step": b.observations,
                    "seconds_in_step": round(t - b.step_started, 3),
                }
                for (tg, target), b in self.bindings.items()
            ],
            "draining": [
                {"target_group_arn": tg, "target_id": target, "seconds_left": round(d.until - t, 3)}
                for (tg, target), d in self.draining.items()
            ],
            "instance_asg": dict(self.instance_asg),
            "report_not_in_use": self.not_in_use,
        }


STATE = FidelityState()


def parse_health_rule(body: Any, rule_id: int) -> HealthRule:
    """Validate the test endpoint's JSON strictly: a typo must fail loudly, not match everything."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    allowed = {"target_group_arn", "asg_name", "instance_id", "sequence"}
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    selectors = {}
    for key in ("target_group_arn", "asg_name", "instance_id"):
        value = body.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{key} must be a non-empty string")
        selectors[key] = value
    sequence = body.get("sequence")
    if not isinstance(sequence, list) or not sequence:
        raise ValueError("sequence must be a non-empty list of steps")
    steps = []
    for i, raw in enumerate(sequence):
        where = f"sequence[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be an object")
        unknown = set(raw) - {"state", "reason", "description", "observations", "seconds"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        state = raw.get("state")
        if state not in DEFAULT_REASONS:
            raise ValueError(f"{where}.state must be one of {sorted(DEFAULT_REASONS)}")
        observations, seconds = raw.get("observations"), raw.get("seconds")
        if observations is not None and (
            isinstance(observations, bool) or not isinstance(observations, int) or observations < 1
        ):
            raise ValueError(f"{where}.observations must be an integer >= 1")
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not seconds > 0
            or math.isinf(seconds)
        ):
            raise ValueError(f"{where}.seconds must be a number > 0")
        if observations is None and seconds is None and i < len(sequence) - 1:
            observations = 1  # a step needs an end; the shortest is one report
        default = DEFAULT_REASONS[state]
        reason, description = raw.get("reason"), raw.get("description")
        for name, value in (("reason", reason), ("description", description)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}.{name} must be a string")
        if state == "healthy":
            if reason or description:
                raise ValueError(f"{where}: AWS reports no reason or description for healthy")
        elif default is not None:
            reason = reason or default[0]
            description = description or default[1]
        steps.append(Step(state, reason, description, observations, seconds))
    return HealthRule(rule_id, steps=steps, **selectors)


def deregistration_delay(tg: FakeTargetGroup) -> float:
    try:
        return float(tg.attributes.get(DEREGISTRATION_DELAY_KEY, AWS_DEFAULT_DEREGISTRATION_DELAY))
    except (TypeError, ValueError):
        return AWS_DEFAULT_DEREGISTRATION_DELAY
