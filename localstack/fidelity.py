"""The fidelity layer: monkeypatches that make moto 5.2.5 behave like AWS where greenlight cares.

Each patch is small and says why it exists. They fall into groups:

* Target health (DescribeTargetHealth): scripted per-target health sequences set through the
  test-only endpoint, `draining` for the deregistration delay after a target leaves, and
  (optionally) `unused` for target groups no listener forwards to.
* Auto Scaling <-> target group registration: only InService instances are registered; scale-in,
  termination, detach and delete drain targets instead of leaving them registered `healthy`.
* Launch templates: SourceVersion, UserData in later versions, and launching from the version
  the group names.
* Smaller API gaps on the calls greenlight makes (see README.md, "Other fixes").

Everything here runs inside the emulator's request lock (emulator.py), so no extra locking.
Call `install()` once, before the first request. `STATE.reset()` forgets everything we hold.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    LifecycleHook,
)
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.utils import utcnow
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.responses.launch_templates import LaunchTemplates as LaunchTemplateResponse
from moto.ec2.utils import parse_user_data
from moto.elbv2.exceptions import ELBClientError, TargetGroupNotFoundError
from moto.elbv2.models import (
    ELBv2Backend,
    FakeAction,
    FakeHealthStatus,
    FakeTargetGroup,
    elbv2_backends,
)

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

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
    "unhealthy.draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
}
DRAINING = DEFAULT_REASONS["draining"]
NOT_IN_USE = DEFAULT_REASONS["unused"]

DEREGISTRATION_DELAY_KEY = "deregistration_delay.timeout_seconds"
AWS_DEFAULT_DEREGISTRATION_DELAY = 300

# ForwardConfig weights AWS accepts.
MAX_FORWARD_WEIGHT = 999

# Every metric EnableMetricsCollection accepts; AWS enables all of them when Metrics is empty.
ALL_GROUP_METRICS = [
    "GroupMinSize", "GroupMaxSize", "GroupDesiredCapacity", "GroupInServiceInstances",
    "GroupPendingInstances", "GroupStandbyInstances", "GroupTerminatingInstances",
    "GroupTotalInstances", "GroupInServiceCapacity", "GroupPendingCapacity",
    "GroupStandbyCapacity", "GroupTerminatingCapacity", "GroupTotalCapacity",
    "WarmPoolDesiredCapacity", "WarmPoolWarmedCapacity", "WarmPoolPendingCapacity",
    "WarmPoolTerminatingCapacity", "WarmPoolTotalCapacity", "GroupAndWarmPoolDesiredCapacity",
    "GroupAndWarmPoolTotalCapacity",
]  # fmt: skip

# Lifecycle hooks: AWS's GlobalTimeout is 100 x HeartbeatTimeout, capped at 48 hours.
HOOK_GLOBAL_TIMEOUT_FACTOR = 100
HOOK_GLOBAL_TIMEOUT_MAX = 172800

TargetKey = tuple[str, str]  # (target group ARN, target id)


def now() -> float:
    """Monotonic seconds: scripted steps and drains must not jump with the wall clock."""
    return time.monotonic()


# --------------------------------------------------------------------------------------------
# State the fidelity layer keeps beside moto's models
# --------------------------------------------------------------------------------------------


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
        if binding.step < last and step.observations is not None and binding.observations >= step.observations:
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
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0
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


def wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace cls.name with make(original), keeping the original reachable for debugging."""
    original = getattr(cls, name)
    replacement = make(original)
    replacement.__name__ = name
    replacement.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(cls, name, replacement)


# --------------------------------------------------------------------------------------------
# ELBv2: target health, draining, listener/rule fidelity
# --------------------------------------------------------------------------------------------


def patch_target_groups() -> None:
    # Registration cancels a drain and restarts the target's health script (AWS puts a
    # re-registered target through `initial` again).
    def make_register(original: Callable[..., Any]) -> Callable[..., Any]:
        def register(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
            fresh = [t["Id"] for t in targets if t["Id"] not in self.targets]
            original(self, targets)
            for target_id in fresh:
                STATE.draining.pop((self.arn, target_id), None)
                STATE.forget_binding(self.arn, target_id)

        return register

    wrap(FakeTargetGroup, "register", make_register)

    # Stock moto forgets a deregistered target at once; AWS keeps it `draining` for the
    # group's deregistration delay. Deregistering a target that is already draining is a no-op.
    def make_deregister(original: Callable[..., Any]) -> Callable[..., Any]:
        def deregister(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
            live = [
                t for t in targets
                if t["Id"] in self.targets or not STATE.is_draining(self.arn, t["Id"])
            ]  # fmt: skip
            original(self, live)  # raises InvalidTarget for ids that were never registered
            for t in live:
                STATE.start_draining(self, self.deregistered_targets[t["Id"]])

        return deregister

    wrap(FakeTargetGroup, "deregister", make_deregister)

    # EC2 TerminateInstances: stock moto leaves the target `draining` forever. AWS drains it
    # for the deregistration delay and then it is gone.
    def deregister_terminated_instances(self: FakeTargetGroup, instance_ids: list[str]) -> None:
        for target_id in [t for t in self.targets if t in instance_ids]:
            target = self.targets.pop(target_id)
            self.deregistered_targets[target_id] = target
            STATE.start_draining(self, target)

    deregister_terminated_instances.__doc__ = "fidelity: drain terminated targets, then forget them"
    FakeTargetGroup.deregister_terminated_instances = deregister_terminated_instances

    # LoadBalancerArns: stock moto appends on CreateListener/CreateRule (duplicates when both
    # name the group) and never updates it on ModifyListener/ModifyRule/Delete*. AWS derives it
    # from what currently forwards to the group, so we compute it the same way.
    def load_balancer_arns(self: FakeTargetGroup) -> list[str]:
        backend = elbv2_backends[self.account_id][self.region_name]
        arns: list[str] = []
        for lb in backend.load_balancers.values():
            for listener in lb.listeners.values():
                for rule in listener.rules.values():
                    for action in rule.actions:
                        if action.type != "forward" or lb.arn in arns:
                            continue
                        if self.arn in forward_target_groups(action.data):
                            arns.append(lb.arn)
        return arns

    # moto assigns/appends to this attribute; with the property those writes become no-ops.
    FakeTargetGroup.load_balancer_arns = property(load_balancer_arns, lambda self, value: None)


def forward_target_groups(action: dict[str, Any]) -> list[str]:
    arns = [tg["TargetGroupArn"] for tg in action.get("ForwardConfig", {}).get("TargetGroups", [])]
    if action.get("TargetGroupArn") and action["TargetGroupArn"] not in arns:
        arns.append(action["TargetGroupArn"])
    return arns


def patch_describe_target_health() -> None:
    def describe_target_health(
        self: ELBv2Backend, target_group_arn: str, targets: list[dict[str, Any]]
    ) -> list[FakeHealthStatus]:
        tg = self.target_groups.get(target_group_arn)
        if tg is None:
            raise TargetGroupNotFoundError()
        draining = {t["Id"]: t for t in STATE.draining_targets(tg.arn)}
        if not targets:
            # AWS lists draining targets alongside registered ones.
            targets = list(tg.targets.values()) + [
                t for tid, t in draining.items() if tid not in tg.targets
            ]
        in_use = not STATE.not_in_use or bool(tg.load_balancer_arns)
        out = []
        for target in targets:
            target_id = target["Id"]
            if target_id in draining and target_id not in tg.targets:
                t = draining[target_id]
                out.append(FakeHealthStatus(target_id, t["Port"], tg.health_check_port, "draining", *DRAINING))
                continue
            stock = tg.health_for(target, self.ec2_backend)
            if target_id not in tg.targets or stock.status != "healthy":
                out.append(stock)  # not registered, stopped instance, ...: moto's answer stands
            elif not in_use:
                out.append(FakeHealthStatus(target_id, stock.port, tg.health_check_port, "unused", *NOT_IN_USE))
            elif (step := STATE.scripted_step(tg.arn, target_id)) is not None:
                out.append(
                    FakeHealthStatus(
                        target_id, stock.port, tg.health_check_port, step.state, step.reason, step.description
                    )
                )
            else:
                out.append(stock)
        return out

    describe_target_health.__doc__ = "fidelity: scripted health, draining, optional NotInUse"
    ELBv2Backend.describe_target_health = describe_target_health


def patch_forward_actions() -> None:
    # AWS answers a plain `forward` + TargetGroupArn action with both forms: the ARN and a
    # ForwardConfig naming that one group at weight 1 with stickiness off (getmoto/moto#4716).
    # Code that reads only ForwardConfig, or that expects weights to sum to 100, must see this.
    def make_init(original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: FakeAction, data: dict[str, Any]) -> None:
            if data.get("Type") == "forward" and data.get("TargetGroupArn") and not data.get("ForwardConfig"):
                data = dict(data)
                data["ForwardConfig"] = {
                    "TargetGroups": [{"TargetGroupArn": data["TargetGroupArn"], "Weight": 1}],
                    "TargetGroupStickinessConfig": {"Enabled": False},
                }
            original(self, data)

        return __init__

    wrap(FakeAction, "__init__", make_init)

    # ModifyListener/ModifyRule: stock moto accepts forwards to target groups that do not exist
    # and any weight. AWS rejects both; a weight bug in greenlight must fail here too.
    def validate_forward(backend: ELBv2Backend, actions: list[dict[str, Any]], field: str) -> None:
        for i, action in enumerate(actions or [], start=1):
            if action.get("Type") != "forward":
                continue
            tuples = action.get("ForwardConfig", {}).get("TargetGroups", [])
            for j, tg in enumerate(tuples, start=1):
                weight = tg.get("Weight")
                if weight is not None and not 0 <= int(weight) <= MAX_FORWARD_WEIGHT:
                    raise ELBClientError(
                        "ValidationError",
                        f"1 validation error detected: Value '{weight}' at "
                        f"'{field}.{i}.member.forwardConfig.targetGroups.{j}.member.weight' failed "
                        f"to satisfy constraint: Member must have value less than or equal to "
                        f"{MAX_FORWARD_WEIGHT}",
                    )
            if action.get("TargetGroupArn") and tuples and [t["TargetGroupArn"] for t in tuples] != [action["TargetGroupArn"]]:
                raise ELBClientError(
                    "ValidationError",
                    "You cannot specify both a target group ARN and a forward config with "
                    "different target groups",
                )
            for arn in forward_target_groups(action):
                if arn not in backend.target_groups:
                    raise ELBClientError("TargetGroupNotFound", f"Target groups '{arn}' not found")

    def make_modify_listener(original: Callable[..., Any]) -> Callable[..., Any]:
        def modify_listener(self: ELBv2Backend, arn: str, *args: Any, **kwargs: Any) -> Any:
            validate_forward(self, kwargs.get("actions") or [], "defaultActions")
            return original(self, arn, *args, **kwargs)

        return modify_listener

    wrap(ELBv2Backend, "modify_listener", make_modify_listener)

    def make_modify_rule(original: Callable[..., Any]) -> Callable[..., Any]:
        def modify_rule(self: ELBv2Backend, rule_arn: str, conditions: Any, actions: Any) -> Any:
            validate_forward(self, actions or [], "actions")
            return original(self, rule_arn, conditions, actions)

        return modify_rule

    wrap(ELBv2Backend, "modify_rule", make_modify_rule)


# --------------------------------------------------------------------------------------------
# Auto Scaling <-> target groups
# --------------------------------------------------------------------------------------------


def patch_asg_registration() -> None:
    # Stock moto registers every instance of the group (whatever its lifecycle state) on every
    # capacity change and never deregisters. AWS keeps exactly the InService instances
    # registered; instances that leave (scale-in, terminate, detach, standby, delete) drain.
    def update_attached_target_groups(self: AutoScalingBackend, group_name: str) -> None:
        group = self.autoscaling_groups[group_name]
        wanted = [  # in launch order, so targets list oldest first
            s.instance.id
            for s in group.instance_states
            if s.lifecycle_state == "InService" and s.instance.state == "running"
        ]
        for arn in group.target_group_arns:
            tg = self.elbv2_backend.target_groups.get(arn)
            if tg is None:
                continue  # target groups can be deleted before the group that uses them
            add = [i for i in wanted if i not in tg.targets]
            remove = [
                i for i in tg.targets if STATE.instance_asg.get(i) == group_name and i not in wanted
            ]
            if add:
                tg.register([{"Id": i, "Port": tg.port} for i in add])
            if remove:
                tg.deregister([{"Id": i} for i in remove])

    update_attached_target_groups.__doc__ = "fidelity: register InService instances only"
    AutoScalingBackend.update_attached_target_groups = update_attached_target_groups

    # DetachLoadBalancerTargetGroups: stock moto deregisters every instance of the group,
    # failing with InvalidTarget when one was never registered (e.g. in Standby).
    def detach_load_balancer_target_groups(
        self: AutoScalingBackend, group_name: str, target_group_arns: list[str]
    ) -> None:
        group = self.autoscaling_groups[group_name]
        group.target_group_arns = [x for x in group.target_group_arns if x not in target_group_arns]
        for arn in target_group_arns:
            tg = self.elbv2_backend.target_groups.get(arn)
            if tg is None:
                continue
            ours = [tid for tid in tg.targets if STATE.instance_asg.get(tid) == group_name]
            if ours:
                tg.deregister([{"Id": i} for i in ours])

    AutoScalingBackend.detach_load_balancer_target_groups = detach_load_balancer_target_groups

    # Remember which group each instance came from (for `asg_name` health rules and for
    # draining the right targets), even after it is detached or terminated.
    def make_attach_instances(original: Callable[..., Any]) -> Callable[..., Any]:
        def attach_instances(self: AutoScalingBackend, group_name: str, instance_ids: list[str]) -> None:
            for instance_id in instance_ids:
                STATE.instance_asg[instance_id] = group_name
            original(self, group_name, instance_ids)

        return attach_instances

    wrap(AutoScalingBackend, "attach_instances", make_attach_instances)


def patch_asg_launches() -> None:
    # Launching instances. Stock moto
    #   * passes the launch template without a version to RunInstances, so tags, user data and
    #     block devices come from $Default whatever version the group names;
    #   * puts every instance in the first subnet of VPCZoneIdentifier.
    # We pin the template version for the duration of the launch and launch one instance at a
    # time into the subnet with the fewest of the group's instances (AWS balances AZs).
    def make_replace(original: Callable[..., Any]) -> Callable[..., Any]:
        def replace_autoscaling_group_instances(
            self: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]
        ) -> None:
            before = {s.instance.id for s in self.instance_states}
            subnets = [s for s in (self.vpc_zone_identifier or "").split(",") if s]
            vpc_zone_identifier = self.vpc_zone_identifier
            try:
                with STATE.pinned_launch_template(self):
                    if len(subnets) < 2:
                        original(self, count_needed, dict(propagated_tags))
                    else:
                        for _ in range(count_needed):
                            counts = {s: 0 for s in subnets}
                            for state in self.instance_states:
                                if state.instance.subnet_id in counts:
                                    counts[state.instance.subnet_id] += 1
                            subnet = min(subnets, key=lambda s: counts[s])  # first on ties
                            # moto launches into the first subnet listed; list ours first.
                            self.vpc_zone_identifier = ",".join([subnet] + [s for s in subnets if s != subnet])
                            original(self, 1, dict(propagated_tags))
            finally:
                self.vpc_zone_identifier = vpc_zone_identifier
            spec = self.launch_template
            if spec is not None:
                spec = {**spec, "Version": self.launch_template_version}
            for state in self.instance_states:
                if state.instance.id not in before:
                    STATE.instance_asg[state.instance.id] = self.name
                    if spec is not None:
                        STATE.instance_launch_template[state.instance.id] = spec

        return replace_autoscaling_group_instances

    wrap(FakeAutoScalingGroup, "replace_autoscaling_group_instances", make_replace)

    def make_get_template(original: Callable[..., Any]) -> Callable[..., Any]:
        def _get_template_from_args(self: InstanceBackend, launch_template_arg: dict[str, Any]) -> Any:
            pin = STATE.launch_pin
            if pin is not None and "Version" not in launch_template_arg:
                if launch_template_arg.get("LaunchTemplateId") == pin[0] or (
                    "LaunchTemplateName" in launch_template_arg
                    and self.launch_template_name_to_ids.get(launch_template_arg["LaunchTemplateName"]) == pin[0]  # type: ignore[attr-defined]
                ):
                    launch_template_arg = {**launch_template_arg, "Version": pin[1]}
            return original(self, launch_template_arg)

        return _get_template_from_args

    wrap(InstanceBackend, "_get_template_from_args", make_get_template)

    # An instance's LaunchTemplate in DescribeAutoScalingGroups/-Instances: stock moto shows the
    # template's *default* version number for every instance. AWS shows what it launched with,
    # which is how one tells old instances from new after a template change.
    original_lt = InstanceState.launch_template

    def launch_template(self: InstanceState) -> dict[str, Any] | None:
        spec = STATE.instance_launch_template.get(self.instance.id)
        return dict(spec) if spec is not None else original_lt.fget(self)

    InstanceState.launch_template = property(launch_template)

    # Scale-in: moto removes the first instances of its list (the oldest, matching
    # OldestInstance/Default), but rebuilds the list from a set afterwards, scrambling the order
    # so the *next* scale-in picks at random. Keep launch order.
    def make_set_desired(original: Callable[..., Any]) -> Callable[..., Any]:
        def set_desired_capacity(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
            order = {id(s): i for i, s in enumerate(self.instance_states)}
            original(self, new_capacity)
            self.instance_states.sort(key=lambda s: order.get(id(s), len(order)))

        return set_desired_capacity

    wrap(FakeAutoScalingGroup, "set_desired_capacity", make_set_desired)


# --------------------------------------------------------------------------------------------
# Launch templates
# --------------------------------------------------------------------------------------------


def patch_launch_templates() -> None:
    # UserData reaches later versions as a plain str (only CreateLaunchTemplate parses it), and
    # moto asserts it is a Base64EncodedString when an ASG launches from that version: HTTP 500.
    def make_create_version(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_version(self: LaunchTemplate, data: dict[str, Any], description: str) -> Any:
            if isinstance(data.get("UserData"), str):
                data = {**data, "UserData": parse_user_data(data["UserData"])}
            return original(self, data, description)

        return create_version

    wrap(LaunchTemplate, "create_version", make_create_version)

    # CreateLaunchTemplateVersion: stock moto ignores SourceVersion, so a version that changes
    # only ImageId loses the instance type, security groups, user data, ... AWS copies the
    # source version and overlays the given LaunchTemplateData (top-level keys replace).
    def make_create_lt_version(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_launch_template_version(self: LaunchTemplateResponse) -> Any:
            source = self._get_param("SourceVersion")
            name, tmpl_id = self._get_param("LaunchTemplateName"), self._get_param("LaunchTemplateId")
            if source is None or not (name or tmpl_id):
                return original(self)
            template = (
                self.ec2_backend.get_launch_template(tmpl_id)
                if tmpl_id
                else self.ec2_backend.get_launch_template_by_name(name)
            )
            base = copy.deepcopy(template.get_version(source).data)
            overlay = self._get_param("LaunchTemplateData", {})
            base.update(overlay)
            # Hand the merged data to the stock implementation: it stays in charge of dry-run,
            # the response shape and CreatedBy.
            original_get_param = self._get_param

            def _get_param(param_name: str, if_none: Any = None) -> Any:
                if param_name == "LaunchTemplateData":
                    return base
                return original_get_param(param_name, if_none)

            self._get_param = _get_param  # type: ignore[method-assign]
            try:
                return original(self)
            finally:
                del self._get_param

        return create_launch_template_version

    wrap(LaunchTemplateResponse, "create_launch_template_version", make_create_lt_version)


# --------------------------------------------------------------------------------------------
# Auto Scaling API gaps
# --------------------------------------------------------------------------------------------


def group_or_error(backend: AutoScalingBackend, name: str) -> FakeAutoScalingGroup:
    group = backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return group


def check_bounds(min_size: int | None, max_size: int | None, desired: int | None) -> None:
    """AWS's CreateAutoScalingGroup/UpdateAutoScalingGroup validation (moto has none)."""
    if min_size is not None and max_size is not None and min_size > max_size:
        raise ValidationError(f"Max bound, {max_size}, must be greater than or equal to min bound, {min_size}")
    if desired is not None and (
        (min_size is not None and desired < min_size) or (max_size is not None and desired > max_size)
    ):
        raise ValidationError(
            f"Desired capacity:{desired} must be between the specified min size:{min_size} "
            f"and max size:{max_size}"
        )


def apply_group_settings(group: FakeAutoScalingGroup, response: AutoScalingResponse, update: bool) -> None:
    """Settings moto's Create/UpdateAutoScalingGroup drop (or, on update, ignore)."""
    for param, attr in (("DefaultInstanceWarmup", "default_instance_warmup"), ("MaxInstanceLifetime", "max_instance_lifetime")):
        value = response._get_int_param(param)
        if value is not None:
            setattr(group, attr, value)
        elif not update:
            setattr(group, attr, None)
    if update:
        if (policies := response._get_param("TerminationPolicies")) is not None:
            group.termination_policies = policies
        if (cooldown := response._get_int_param("DefaultCooldown")) is not None:
            group.default_cooldown = cooldown
        if (rebalance := response._get_bool_param("CapacityRebalance")) is not None:
            group.capacity_rebalance = rebalance


def patch_autoscaling_api() -> None:
    backend_of: Callable[[AutoScalingResponse], AutoScalingBackend] = lambda r: r.autoscaling_backend  # noqa: E731

    # -- Create/Update/SetDesiredCapacity: bounds, dropped settings, lifecycle hook specs --------
    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_auto_scaling_group(self: AutoScalingResponse) -> Any:
            check_bounds(
                self._get_int_param("MinSize"), self._get_int_param("MaxSize"), self._get_int_param("DesiredCapacity")
            )
            name = self._get_param("AutoScalingGroupName")
            if name in backend_of(self).autoscaling_groups:
                raise AutoscalingClientError("AlreadyExists", f"AutoScalingGroup by this name already exists - A group with the name {name} already exists")
            result = original(self)
            group = backend_of(self).autoscaling_groups[name]
            apply_group_settings(group, self, update=False)
            for spec in self._get_param("LifecycleHookSpecificationList", []) or []:
                put_hook(backend_of(self), name, spec)
            return result

        return create_auto_scaling_group

    wrap(AutoScalingResponse, "create_auto_scaling_group", make_create)

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_auto_scaling_group(self: AutoScalingResponse) -> Any:
            group = group_or_error(backend_of(self), self._get_param("AutoScalingGroupName"))
            min_size, max_size = self._get_int_param("MinSize"), self._get_int_param("MaxSize")
            check_bounds(
                group.min_size if min_size is None else min_size,
                group.max_size if max_size is None else max_size,
                self._get_int_param("DesiredCapacity"),
            )
            # Stock moto sets MixedInstancesPolicy to whatever the request carries, so any update
            # that does not repeat it (e.g. a desired-capacity change) silently deletes it.
            mixed = group.mixed_instances_policy
            result = original(self)
            if self._get_param("MixedInstancesPolicy") is None:
                group.mixed_instances_policy = mixed
            apply_group_settings(group, self, update=True)
            return result

        return update_auto_scaling_group

    wrap(AutoScalingResponse, "update_auto_scaling_group", make_update)

    def make_set_desired(original: Callable[..., Any]) -> Callable[..., Any]:
        def set_desired_capacity(self: AutoScalingResponse) -> Any:
            group = group_or_error(backend_of(self), self._get_param("AutoScalingGroupName"))
            desired = self._get_int_param("DesiredCapacity")
            if desired is not None and group.max_size is not None and desired > group.max_size:
                raise ValidationError(
                    f"New SetDesiredCapacity value {desired} is above max value {group.max_size} for the AutoScalingGroup."
                )
            if desired is not None and group.min_size is not None and desired < group.min_size:
                raise ValidationError(
                    f"New SetDesiredCapacity value {desired} is below min value {group.min_size} for the AutoScalingGroup."
                )
            return original(self)

        return set_desired_capacity

    wrap(AutoScalingResponse, "set_desired_capacity", make_set_desired)

    # -- DeleteAutoScalingGroup ------------------------------------------------------------------
    # Stock moto ignores ForceDelete: it deletes a group that still has instances (AWS refuses),
    # leaves scale-in-protected instances running and registered, and keeps the group's
    # policies, hooks and scheduled actions (AWS deletes them with the group).
    def make_delete(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_auto_scaling_group(self: AutoScalingResponse) -> Any:
            backend = backend_of(self)
            name = self._get_param("AutoScalingGroupName")
            group = group_or_error(backend, name)
            if group.instance_states and not self._get_bool_param("ForceDelete", False):
                raise AutoscalingClientError(
                    "ResourceInUse",
                    "You cannot delete an AutoScalingGroup while there are instances or pending "
                    "Spot instance request(s) still in the group.",
                )
            for state in group.instance_states:
                state.protected_from_scale_in = False
            result = original(self)
            for store in (backend.policies, backend.scheduled_actions, backend.lifecycle_hooks):
                for key, item in list(store.items()):
                    if item.auto_scaling_group_name == name:
                        del store[key]
            return result

        return delete_auto_scaling_group

    wrap(AutoScalingResponse, "delete_auto_scaling_group", make_delete)

    # -- Scaling policies ------------------------------------------------------------------------
    # Stock moto keys policies by name alone, so a second group's "cpu50" silently replaces the
    # first group's. AWS scopes names to the group. We key by (group, name).
    def make_put_policy(original: Callable[..., Any]) -> Callable[..., Any]:
        def put_scaling_policy(self: AutoScalingBackend, *args: Any, **kwargs: Any) -> Any:
            policy = original(self, *args, **kwargs)
            self.policies.pop(policy.name, None)
            self.policies[(policy.auto_scaling_group_name, policy.name)] = policy
            if policy.policy_type != "PredictiveScaling":
                # moto returns an empty PredictiveScalingConfiguration for every policy; AWS
                # omits it, and a copy of it would be rejected by PutScalingPolicy.
                policy.predictive_scaling_configuration = None
            return policy

        return put_scaling_policy

    wrap(AutoScalingBackend, "put_scaling_policy", make_put_policy)

    def make_put_policy_response(original: Callable[..., Any]) -> Callable[..., Any]:
        def put_scaling_policy(self: AutoScalingResponse) -> Any:
            group_or_error(backend_of(self), self._get_param("AutoScalingGroupName"))
            result = original(self)
            key = (self._get_param("AutoScalingGroupName"), self._get_param("PolicyName"))
            enabled = self._get_bool_param("Enabled")
            backend_of(self).policies[key].enabled = True if enabled is None else enabled
            return result

        return put_scaling_policy

    wrap(AutoScalingResponse, "put_scaling_policy", make_put_policy_response)

    def find_policy(backend: AutoScalingBackend, group: str | None, name: str) -> Any:
        """PolicyName may be a name (with AutoScalingGroupName) or a policy ARN."""
        if name.startswith("arn:") and ":policyName/" in name:
            group = name.split(":autoScalingGroupName/", 1)[1].split(":policyName/", 1)[0]
            name = name.split(":policyName/", 1)[1]
        candidates = [k for k in backend.policies if k[1] == name and (group is None or k[0] == group)]
        return candidates[0] if len(candidates) == 1 else None

    def delete_policy(self: AutoScalingResponse) -> Any:
        backend = backend_of(self)
        key = find_policy(backend, self._get_param("AutoScalingGroupName"), self._get_param("PolicyName"))
        if key is None:
            raise ValidationError("Policy not found")  # NB: AWS says "...does not exist"; close enough
        del backend.policies[key]
        from moto.core.responses import EmptyResult

        return EmptyResult()

    AutoScalingResponse.delete_policy = delete_policy

    def execute_policy(self: AutoScalingResponse) -> Any:
        backend = backend_of(self)
        key = find_policy(backend, self._get_param("AutoScalingGroupName"), self._get_param("PolicyName"))
        if key is None:
            raise ValidationError("Policy not found")
        backend.policies[key].execute()
        from moto.core.responses import EmptyResult

        return EmptyResult()

    AutoScalingResponse.execute_policy = execute_policy

    # -- Scheduled actions: same name-collision bug as policies; also no ARN ---------------------
    def make_put_scheduled(original: Callable[..., Any]) -> Callable[..., Any]:
        def put_scheduled_update_group_action(self: AutoScalingBackend, *args: Any, **kwargs: Any) -> Any:
            action = original(self, *args, **kwargs)
            group_name, name = action.auto_scaling_group_name, action.scheduled_action_name
            self.scheduled_actions.pop(name, None)
            self.scheduled_actions[(group_name, name)] = action
            action.scheduled_action_arn = (
                f"arn:{self.partition}:autoscaling:{self.region_name}:{self.account_id}:"
                f"scheduledUpdateGroupAction:{stable_uuid(group_name, name)}:"
                f"autoScalingGroupName/{group_name}:scheduledActionName/{name}"
            )
            return action

        return put_scheduled_update_group_action

    wrap(AutoScalingBackend, "put_scheduled_update_group_action", make_put_scheduled)

    def make_put_scheduled_response(original: Callable[..., Any]) -> Callable[..., Any]:
        def put_scheduled_update_group_action(self: AutoScalingResponse) -> Any:
            group_or_error(backend_of(self), self._get_param("AutoScalingGroupName"))
            return original(self)

        return put_scheduled_update_group_action

    wrap(AutoScalingResponse, "put_scheduled_update_group_action", make_put_scheduled_response)

    def delete_scheduled_action(self: AutoScalingBackend, auto_scaling_group_name: str, scheduled_action_name: str) -> None:
        if self.scheduled_actions.pop((auto_scaling_group_name, scheduled_action_name), None) is None:
            raise ValidationError("Scheduled action name not found")

    AutoScalingBackend.delete_scheduled_action = delete_scheduled_action

    # -- Lifecycle hooks: moto invents RoleARN/NotificationTargetARN and a 48 h GlobalTimeout ---
    def put_lifecycle_hook(self: AutoScalingResponse) -> Any:
        spec = {
            key: self._get_param(key)
            for key in (
                "LifecycleHookName", "LifecycleTransition", "HeartbeatTimeout", "DefaultResult",
                "RoleARN", "NotificationTargetARN", "NotificationMetadata",
            )
        }  # fmt: skip
        put_hook(backend_of(self), self._get_param("AutoScalingGroupName"), spec)
        from moto.core.responses import EmptyResult

        return EmptyResult()

    AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook

    # -- Processes and metrics -------------------------------------------------------------------
    # SuspendProcesses: AWS records why/when ("User suspended at <time>"); moto returns "" and
    # an order that changes between calls.
    def make_suspend(original: Callable[..., Any]) -> Callable[..., Any]:
        def suspend_processes(self: AutoScalingBackend, group_name: str, scaling_processes: list[str]) -> None:
            group = group_or_error(self, group_name)
            before = set(group._suspended_processes)
            original(self, group_name, scaling_processes)
            stamps = group.__dict__.setdefault("_suspended_at", {})
            stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
            for process in set(group._suspended_processes) - before:
                stamps[process] = stamp
            group._suspended_processes = sorted(group._suspended_processes)

        return suspend_processes

    wrap(AutoScalingBackend, "suspend_processes", make_suspend)

    def suspended_processes(self: FakeAutoScalingGroup) -> list[dict[str, str]]:
        stamps = self.__dict__.get("_suspended_at", {})
        return [
            {"ProcessName": p, "SuspensionReason": f"User suspended at {stamps[p]}" if p in stamps else ""}
            for p in self._suspended_processes
        ]

    FakeAutoScalingGroup.suspended_processes = property(
        suspended_processes, FakeAutoScalingGroup.suspended_processes.fset
    )

    # EnableMetricsCollection adds to what is enabled (moto replaces), and an empty list means
    # every metric. DisableMetricsCollection is missing from moto altogether.
    def enable_metrics_collection(self: AutoScalingBackend, group_name: str, metrics: list[str]) -> None:
        group = group_or_error(self, group_name)
        group.metrics = group.metrics + [m for m in (metrics or ALL_GROUP_METRICS) if m not in group.metrics]

    AutoScalingBackend.enable_metrics_collection = enable_metrics_collection

    def disable_metrics_collection(self: AutoScalingResponse) -> Any:
        group = group_or_error(backend_of(self), self._get_param("AutoScalingGroupName"))
        metrics = self._get_param("Metrics") or []
        group.metrics = [m for m in group.metrics if metrics and m not in metrics]
        from moto.core.responses import EmptyResult

        return EmptyResult()

    AutoScalingResponse.disable_metrics_collection = disable_metrics_collection

    # CreateOrUpdateTags on a group that does not exist: moto answers HTTP 500 (KeyError).
    def make_tags(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_or_update_tags(self: AutoScalingBackend, tags: list[dict[str, str]]) -> None:
            for tag in tags:
                group_or_error(self, tag["ResourceId"])
            original(self, [dict(t, PropagateAtLaunch=t.get("PropagateAtLaunch", False)) for t in tags])

        return create_or_update_tags

    wrap(AutoScalingBackend, "create_or_update_tags", make_tags)

    # DescribeAutoScalingGroups: AWS lists the attached target groups as traffic sources too.
    FakeAutoScalingGroup.traffic_sources = property(
        lambda self: [{"Identifier": arn, "Type": "elbv2"} for arn in self.target_group_arns]
    )


def put_hook(backend: AutoScalingBackend, group_name: str, spec: dict[str, Any]) -> LifecycleHook:
    group_or_error(backend, group_name)
    timeout = spec.get("HeartbeatTimeout")
    hook = backend.create_lifecycle_hook(
        name=spec.get("LifecycleHookName"),
        as_name=group_name,
        transition=spec.get("LifecycleTransition"),
        timeout=int(timeout) if timeout is not None else None,
        result=spec.get("DefaultResult"),
    )
    hook.role_arn = spec.get("RoleARN")
    hook.notification_target_arn = spec.get("NotificationTargetARN")
    hook.notification_metadata = spec.get("NotificationMetadata")
    hook.global_timeout = min(HOOK_GLOBAL_TIMEOUT_FACTOR * hook.heartbeat_timeout, HOOK_GLOBAL_TIMEOUT_MAX)
    return hook


def stable_uuid(*parts: str) -> str:
    """A UUID-shaped id derived from names, so ARNs are stable across identical runs."""
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.md5("/".join(parts).encode()).hexdigest()))


# --------------------------------------------------------------------------------------------

_installed = False


def install(report_not_in_use: bool = False) -> None:
    """Apply every patch (once). Must run before the emulator serves its first request."""
    global _installed
    STATE.not_in_use = report_not_in_use
    if _installed:
        return
    patch_target_groups()
    patch_describe_target_health()
    patch_forward_actions()
    patch_asg_registration()
    patch_asg_launches()
    patch_launch_templates()
    patch_autoscaling_api()
    _installed = True
