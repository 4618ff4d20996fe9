"""Auto Scaling patches: target-group registration, launches, and API gaps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    LifecycleHook,
)
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult
from moto.core.utils import utcnow
from moto.ec2.models.instances import InstanceBackend

from .patching import wrap
from .state import STATE

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
        def attach_instances(
            self: AutoScalingBackend, group_name: str, instance_ids: list[str]
        ) -> None:
            for instance_id in instance_ids:
                STATE.instance_asg[instance_id] = group_name
            original(self, group_name, instance_ids)

        return attach_instances

    wrap(AutoScalingBackend, "attach_instances", make_attach_instances)

    # EC2 TerminateInstances on a group's instance: moto launches a replacement but only
    # refreshes classic ELBs, so the replacement never reaches the group's target groups.
    def make_notify(original: Callable[..., Any]) -> Callable[..., Any]:
        def notify_terminate_instances(self: AutoScalingBackend, instance_ids: list[str]) -> None:
            original(self, instance_ids)
            for group_name in list(self.autoscaling_groups):
                self.update_attached_target_groups(group_name)

        return notify_terminate_instances

    wrap(AutoScalingBackend, "notify_terminate_instances", make_notify)


def patch_asg_launches() -> None:
    # Launching instances. Stock moto
    #   * takes ImageId/InstanceType/UserData from the version the group names, but passes the
    #     template to RunInstances without a version, so tags (aws:ec2launchtemplate:version
    #     too), security groups, key and block devices come from $Default;
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
                            self.vpc_zone_identifier = ",".join(
                                [subnet] + [s for s in subnets if s != subnet]
                            )
                            original(self, 1, dict(propagated_tags))
            finally:
                self.vpc_zone_identifier = vpc_zone_identifier
            lt = self.ec2_launch_template
            spec = None
            if lt is not None:
                spec = {
                    "LaunchTemplateId": lt.id,
                    "LaunchTemplateName": lt.name,
                    "Version": self.launch_template_version,
                }
            for state in self.instance_states:
                if state.instance.id not in before:
                    STATE.instance_asg[state.instance.id] = self.name
                    if spec is not None:
                        STATE.instance_launch_template[state.instance.id] = spec

        return replace_autoscaling_group_instances

    wrap(FakeAutoScalingGroup, "replace_autoscaling_group_instances", make_replace)

    def make_get_template(original: Callable[..., Any]) -> Callable[..., Any]:
        def _get_template_from_args(
            self: InstanceBackend, launch_template_arg: dict[str, Any]
        ) -> Any:
            pin = STATE.launch_pin
            if pin is not None and "Version" not in launch_template_arg:
                names = self.launch_template_name_to_ids  # type: ignore[attr-defined]
                template_id = launch_template_arg.get("LaunchTemplateId") or names.get(
                    launch_template_arg.get("LaunchTemplateName")
                )
                if template_id == pin[0]:
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


def group_or_error(backend: AutoScalingBackend, name: str) -> FakeAutoScalingGroup:
    group = backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(
            f"AutoScalingGroup name not found - AutoScalingGroup {name} not found"
        )
    return group


def check_bounds(min_size: int | None, max_size: int | None, desired: int | None) -> None:
    """AWS's CreateAutoScalingGroup/UpdateAutoScalingGroup validation (moto has none)."""
    if min_size is not None and max_size is not None and min_size > max_size:
        raise ValidationError(
            f"Max bound, {max_size}, must be greater than or equal to min bound, {min_size}"
        )
    if desired is not None and (
        (min_size is not None and desired < min_size)
        or (max_size is not None and desired > max_size)
    ):
        raise ValidationError(
            f"Desired capacity:{desired} must be between the specified min size:{min_size} "
            f"and max size:{max_size}"
        )


def apply_group_settings(
    group: FakeAutoScalingGroup, response: AutoScalingResponse, update: bool
) -> None:
    """Settings moto's Create/UpdateAutoScalingGroup drop (or, on update, ignore)."""
    for param, attr in (
        ("DefaultInstanceWarmup", "default_instance_warmup"),
        ("MaxInstanceLifetime", "max_instance_lifetime"),
    ):
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
    # -- Create/Update/SetDesiredCapacity: bounds, dropped settings, lifecycle hook specs --------
    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_auto_scaling_group(self: AutoScalingResponse) -> Any:
            check_bounds(
                self._get_int_param("MinSize"),
                self._get_int_param("MaxSize"),
                self._get_int_param("DesiredCapacity"),
            )
            name = self._get_param("AutoScalingGroupName")
            if name in self.autoscaling_backend.autoscaling_groups:
                raise AutoscalingClientError(
                    "AlreadyExists",
                    "AutoScalingGroup by this name already exists - "
                    f"A group with the name {name} already exists",
                )
            result = original(self)
            group = self.autoscaling_backend.autoscaling_groups[name]
            apply_group_settings(group, self, update=False)
            for spec in self._get_param("LifecycleHookSpecificationList", []) or []:
                put_hook(self.autoscaling_backend, name, spec)
            return result

        return create_auto_scaling_group

    wrap(AutoScalingResponse, "create_auto_scaling_group", make_create)

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_auto_scaling_group(self: AutoScalingResponse) -> Any:
            group = group_or_error(
                self.autoscaling_backend, self._get_param("AutoScalingGroupName")
            )
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
            group = group_or_error(
                self.autoscaling_backend, self._get_param("AutoScalingGroupName")
            )
            desired = self._get_int_param("DesiredCapacity")
            if desired is not None and group.max_size is not None and desired > group.max_size:
                raise ValidationError(
                    f"New SetDesiredCapacity value {desired} is above max value "
                    f"{group.max_size} for the AutoScalingGroup."
                )
            if desired is not None and group.min_size is not None and desired < group.min_size:
                raise ValidationError(
                    f"New SetDesiredCapacity value {desired} is below min value "
                    f"{group.min_size} for the AutoScalingGroup."
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
            backend = self.autoscaling_backend
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
            group_or_error(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
            result = original(self)
            key = (self._get_param("AutoScalingGroupName"), self._get_param("PolicyName"))
            enabled = self._get_bool_param("Enabled")
            self.autoscaling_backend.policies[key].enabled = True if enabled is None else enabled
            return result

        return put_scaling_policy

    wrap(AutoScalingResponse, "put_scaling_policy", make_put_policy_response)

    def find_policy(backend: AutoScalingBackend, group: str | None, name: str) -> Any:
        """PolicyName may be a name (with AutoScalingGroupName) or a policy ARN."""
        if name.startswith("arn:") and ":policyName/" in name:
            group = name.split(":autoScalingGroupName/", 1)[1].split(":policyName/", 1)[0]
            name = name.split(":policyName/", 1)[1]
        candidates = [
            k for k in backend.policies if k[1] == name and (group is None or k[0] == group)
        ]
        return candidates[0] if len(candidates) == 1 else None

    def delete_policy(self: AutoScalingResponse) -> Any:
        backend = self.autoscaling_backend
        key = find_policy(
            backend, self._get_param("AutoScalingGroupName"), self._get_param("PolicyName")
        )
        if key is not None:  # unknown policies are ignored, as stock moto does
            del backend.policies[key]
        return EmptyResult()

    AutoScalingResponse.delete_policy = delete_policy

    def execute_policy(self: AutoScalingResponse) -> Any:
        backend = self.autoscaling_backend
        key = find_policy(
            backend, self._get_param("AutoScalingGroupName"), self._get_param("PolicyName")
        )
        if key is None:  # stock moto: HTTP 500 (KeyError)
            raise ValidationError(f"Policy {self._get_param('PolicyName')} not found")
        backend.policies[key].execute()
        return EmptyResult()

    AutoScalingResponse.execute_policy = execute_policy

    # -- Scheduled actions: same name-collision bug as policies; also no ARN ---------------------
    def make_put_scheduled(original: Callable[..., Any]) -> Callable[..., Any]:
        def put_scheduled_update_group_action(
            self: AutoScalingBackend, *args: Any, **kwargs: Any
        ) -> Any:
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
            group_or_error(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
            return original(self)

        return put_scheduled_update_group_action

    wrap(AutoScalingResponse, "put_scheduled_update_group_action", make_put_scheduled_response)

    def delete_scheduled_action(
        self: AutoScalingBackend, auto_scaling_group_name: str, scheduled_action_name: str
    ) -> None:
        if (
            self.scheduled_actions.pop((auto_scaling_group_name, scheduled_action_name), None)
            is None
        ):
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
        put_hook(self.autoscaling_backend, self._get_param("AutoScalingGroupName"), spec)
        return EmptyResult()

    AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook

    # -- Processes and metrics -------------------------------------------------------------------
    # SuspendProcesses: AWS records why/when ("User suspended at <time>"); moto returns "" and
    # an order that changes between calls.
    def make_suspend(original: Callable[..., Any]) -> Callable[..., Any]:
        def suspend_processes(
            self: AutoScalingBackend, group_name: str, scaling_processes: list[str]
        ) -> None:
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
            {
                "ProcessName": p,
                "SuspensionReason": f"User suspended at {stamps[p]}" if p in stamps else "",
            }
            for p in self._suspended_processes
        ]

    FakeAutoScalingGroup.suspended_processes = property(
        suspended_processes, FakeAutoScalingGroup.suspended_processes.fset
    )

    # EnableMetricsCollection adds to what is enabled (moto replaces), and an empty list means
    # every metric. DisableMetricsCollection is missing from moto altogether.
    def enable_metrics_collection(
        self: AutoScalingBackend, group_name: str, metrics: list[str]
    ) -> None:
        group = group_or_error(self, group_name)
        group.metrics = group.metrics + [
            m for m in (metrics or ALL_GROUP_METRICS) if m not in group.metrics
        ]

    AutoScalingBackend.enable_metrics_collection = enable_metrics_collection

    def disable_metrics_collection(self: AutoScalingResponse) -> Any:
        group = group_or_error(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))
        metrics = self._get_param("Metrics") or []
        group.metrics = [m for m in group.metrics if metrics and m not in metrics]
        return EmptyResult()

    AutoScalingResponse.disable_metrics_collection = disable_metrics_collection

    # CreateOrUpdateTags on a group that does not exist: moto answers HTTP 500 (KeyError).
    def make_tags(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_or_update_tags(self: AutoScalingBackend, tags: list[dict[str, str]]) -> None:
            for tag in tags:
                group_or_error(self, tag["ResourceId"])
            original(
                self, [dict(t, PropagateAtLaunch=t.get("PropagateAtLaunch", False)) for t in tags]
            )

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
    hook.global_timeout = min(
        HOOK_GLOBAL_TIMEOUT_FACTOR * hook.heartbeat_timeout, HOOK_GLOBAL_TIMEOUT_MAX
    )
    return hook


def stable_uuid(*parts: str) -> str:
    """A UUID-shaped id derived from names, so ARNs are stable across identical runs."""
