"""ELBv2 patches: target health (scripted, draining, not-in-use), load balancer ARNs by type,
and listener/rule fidelity."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import moto.elbv2.models as elbv2_models
from moto.elbv2.exceptions import ELBClientError, TargetGroupNotFoundError
from moto.elbv2.models import (
    ELBv2Backend,
    FakeAction,
    FakeHealthStatus,
    FakeTargetGroup,
    elbv2_backends,
)

from .patching import wrap
from .state import DRAINING, NOT_IN_USE, STATE

# ForwardConfig weights AWS accepts.
MAX_FORWARD_WEIGHT = 999

# The kind segment of a load balancer's ARN (`loadbalancer/<kind>/<name>/<id>`) for each Type.
# Its listeners (`listener/<kind>/...`) and rules (`listener-rule/<kind>/...`) carry it too.
ARN_KINDS = {"application": "app", "network": "net", "gateway": "gwy"}


def patch_load_balancer_arns() -> None:
    # Stock moto names every load balancer `loadbalancer/app/<name>/<id>`, whatever its Type,
    # and derives listener and rule ARNs from it (`listener/app/...`). AWS names a Network Load
    # Balancer `loadbalancer/net/...` (listeners `listener/net/<name>/<lb-id>/<id>`) and a
    # Gateway Load Balancer `loadbalancer/gwy/...`; clients such as greenlight tell the kinds
    # apart by the ARN. We give the load balancer its real ARN when it is created: moto keys
    # load balancers, listeners, rules and tags by ARN and derives the rest with
    # `str.replace(":loadbalancer/", ":listener/")` and the like, so every response carries the
    # `net/` ARN and every request naming it finds it (an `app/` spelling of it does not, as on
    # AWS). Only the ARN generator is told the Type, for the duration of the call.
    creating: list[str] = []  # the Type of the load balancer being created (requests are serial)
    stock_make_arn = elbv2_models.make_arn_for_load_balancer

    def make_arn_for_load_balancer(account_id: str, lb_id: str, name: str, region_name: str) -> str:
        arn = stock_make_arn(
            account_id=account_id, lb_id=lb_id, name=name, region_name=region_name
        )
        kind = ARN_KINDS.get(creating[-1]) if creating else None
        if kind is not None:
            arn = arn.replace(":loadbalancer/app/", f":loadbalancer/{kind}/", 1)
        return arn

    make_arn_for_load_balancer.__wrapped__ = stock_make_arn  # type: ignore[attr-defined]
    elbv2_models.make_arn_for_load_balancer = make_arn_for_load_balancer

    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        def create_load_balancer(self: ELBv2Backend, *args: Any, **kwargs: Any) -> Any:
            lb_type = signature.bind(self, *args, **kwargs).arguments.get("loadbalancer_type")
            creating.append(lb_type or "application")  # moto's default, as AWS's
            try:
                return original(self, *args, **kwargs)
            finally:
                creating.pop()

        return create_load_balancer

    wrap(ELBv2Backend, "create_load_balancer", make_create)

    # CreateRule: stock moto adds rules to any listener. AWS: "The listener must be associated
    # with an Application Load Balancer" (API reference); NLB and GWLB listeners only have their
    # default action. The error code and wording are our guess (not observed on AWS).
    def make_create_rule(original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        def create_rule(self: ELBv2Backend, *args: Any, **kwargs: Any) -> Any:
            listener_arn = signature.bind(self, *args, **kwargs).arguments.get("listener_arn")
            for lb in self.load_balancers.values():
                if listener_arn in lb.listeners and lb.type != "application":
                    raise ELBClientError(
                        "ValidationError",
                        f"Listener rules are not supported for load balancers of type "
                        f"'{lb.type}'",
                    )
            return original(self, *args, **kwargs)

        return create_rule

    wrap(ELBv2Backend, "create_rule", make_create_rule)


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
                out.append(
                    FakeHealthStatus(
                        target_id, t["Port"], tg.health_check_port, "draining", *DRAINING
                    )
                )
                continue
            stock = tg.health_for(target, self.ec2_backend)
            if target_id not in tg.targets or stock.status != "healthy":
                out.append(stock)  # not registered, stopped instance, ...: moto's answer stands
            elif not in_use:
                out.append(
                    FakeHealthStatus(
                        target_id, stock.port, tg.health_check_port, "unused", *NOT_IN_USE
                    )
                )
            elif (step := STATE.scripted_step(tg.arn, target_id)) is not None:
                out.append(
                    FakeHealthStatus(
                        target_id,
                        stock.port,
                        tg.health_check_port,
                        step.state,
                        step.reason,
                        step.description,
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
            if (
                data.get("Type") == "forward"
                and data.get("TargetGroupArn")
                and not data.get("ForwardConfig")
            ):
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
            if (
                action.get("TargetGroupArn")
                and tuples
                and [t["TargetGroupArn"] for t in tuples] != [action["TargetGroupArn"]]
            ):
                raise ELBClientError(
                    "ValidationError",
                    "You cannot specify both a target group ARN and a forward config with "
                    "different target groups",
                )
            for arn in forward_target_groups(action):
                if arn not in backend.target_groups:
                    raise ELBClientError("TargetGroupNotFound", f"Target groups '{arn}' not found")

    def make_modify_listener(original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        def modify_listener(self: ELBv2Backend, *args: Any, **kwargs: Any) -> Any:
            actions = signature.bind(self, *args, **kwargs).arguments.get("actions")
            validate_forward(self, actions or [], "defaultActions")
            return original(self, *args, **kwargs)

        return modify_listener

    wrap(ELBv2Backend, "modify_listener", make_modify_listener)

    def make_modify_rule(original: Callable[..., Any]) -> Callable[..., Any]:
        def modify_rule(self: ELBv2Backend, rule_arn: str, conditions: Any, actions: Any) -> Any:
            validate_forward(self, actions or [], "actions")
            return original(self, rule_arn, conditions, actions)

        return modify_rule

    wrap(ELBv2Backend, "modify_rule", make_modify_rule)
