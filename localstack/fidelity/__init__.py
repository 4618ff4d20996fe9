"""The fidelity layer: monkeypatches that make moto 5.2.5 behave like AWS where greenlight cares.

Each patch is small and says why it exists. They fall into groups:

Modules: state.py (what we remember, the health-rule language), elbv2.py, autoscaling.py,
launch_templates.py, cloudwatch.py, cleanup.py (the patches), idempotency.py (ClientToken), patching.py
(how a patch is applied), cloudwatch_cbor.py (not a patch: a translator emulator.py puts in
front of moto for Smithy RPC v2 CBOR requests, the protocol of the Rust SDK's CloudWatch).

* Target health (DescribeTargetHealth): scripted per-target health sequences set through the
  test-only endpoint, `draining` for the deregistration delay after a target leaves, and
  (optionally) `unused` for target groups no listener forwards to.
* Load balancer ARNs by Type: `loadbalancer/net/...` for Network Load Balancers (and their
  `listener/net/...`), `gwy/` for Gateway Load Balancers; no listener rules on them.
* Auto Scaling <-> target group registration: only InService instances are registered; scale-in,
  termination, detach and delete drain targets instead of leaving them registered `healthy`.
* Launch templates: SourceVersion, UserData in later versions, launching from the version
  the group names, live tags, and ClientToken idempotency on CreateLaunchTemplate(Version).
* Launch template versions for cleanup: DeleteLaunchTemplateVersions (moto has none), versions
  found by number and numbers never reused, DescribeLaunchTemplates(/Versions) paged (cleanup.py).
* Smaller API gaps on the calls greenlight makes (see README.md, "Other fixes").
* CloudWatch: DescribeAlarms applies all its filters, GetMetricData answers no datapoints for
  statistics moto cannot compute instead of failing (cloudwatch.py); Smithy RPC v2 CBOR <->
  JSON 1.0 guided by botocore's service model (cloudwatch_cbor.py).

Everything here runs inside the emulator's request lock (emulator.py), so no extra locking.
Call `install()` once, before the first request. `STATE.reset()` forgets everything we hold.
"""

from __future__ import annotations

from . import autoscaling, cleanup, cloudwatch, cloudwatch_cbor, elbv2, launch_templates
from .state import STATE

__all__ = ["STATE", "cloudwatch_cbor", "install"]

_installed = False


def install(report_not_in_use: bool = False) -> None:
    """Apply every patch (once). Must run before the emulator serves its first request."""
    global _installed
    STATE.not_in_use = report_not_in_use
    if _installed:
        return
    elbv2.patch_load_balancer_arns()
    elbv2.patch_target_groups()
    elbv2.patch_describe_target_health()
    elbv2.patch_forward_actions()
    autoscaling.patch_asg_registration()
    autoscaling.patch_asg_launches()
    autoscaling.patch_autoscaling_api()
    launch_templates.patch_launch_templates()
    launch_templates.patch_launch_template_tags()
    cleanup.patch_cleanup()  # versions by number, DeleteLaunchTemplateVersions, NextToken
    launch_templates.patch_client_tokens()  # last: it must wrap the other launch-template patches
    cloudwatch.patch_describe_alarms()
    cloudwatch.patch_get_metric_data()
    _installed = True
