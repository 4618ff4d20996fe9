"""CloudWatch: DescribeAlarms filters, and GetMetricData statistics moto cannot compute.

* DescribeAlarms: stock moto uses only the first filter it finds, in the order ActionPrefix,
  AlarmNamePrefix, AlarmNames, StateValue, and ignores the rest:
  `DescribeAlarms(AlarmNames=[a], StateValue=ALARM)` lists alarm `a` whatever its state. AWS
  lists the alarms that match all of them, which is how a release check asks "is any of these
  alarms firing?".
* GetMetricData: moto computes SampleCount, Sum, Average, Minimum and Maximum only. For any
  other statistic (percentiles such as p99, trimmed means...) over a period that has data it
  puts a null among the Values, and its own serializer then fails with HTTP 500 (JSON and CBOR
  alike). Here such periods are left out, so the query answers no datapoints (`Values: []`,
  StatusCode Complete) instead of failing. Nothing is invented: AWS would return the
  percentile, and a test that needs one has to use greenlight's in-memory fake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.cloudwatch.models import CloudWatchBackend
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult

from .patching import wrap


def _keep(alarm: Any, params: dict[str, Any]) -> bool:
    names = params.get("AlarmNames") or []
    prefix = params.get("AlarmNamePrefix")
    state = params.get("StateValue")
    action_prefix = params.get("ActionPrefix")
    return (
        (not names or alarm.name in names)
        and (not prefix or alarm.name.startswith(prefix))
        and (not state or alarm.state_value == state)
        and (
            not action_prefix
            or any(a.startswith(action_prefix) for a in (alarm.alarm_actions or []))
        )
    )


def patch_describe_alarms() -> None:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def describe_alarms(self: CloudWatchResponse) -> Any:
            answer = original(self)
            if not isinstance(answer, ActionResult) or not isinstance(answer.result, dict):
                return answer
            params = {
                key: self._get_param(key)
                for key in ("AlarmNames", "AlarmNamePrefix", "StateValue", "ActionPrefix")
            }
            return ActionResult(
                {
                    key: [a for a in alarms if _keep(a, params)]
                    if isinstance(alarms, list)
                    else alarms
                    for key, alarms in answer.result.items()
                }
            )

        return describe_alarms

    wrap(CloudWatchResponse, "describe_alarms", make)


def patch_get_metric_data() -> None:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def get_metric_data(self: CloudWatchBackend, *args: Any, **kwargs: Any) -> Any:
            results = original(self, *args, **kwargs)
            for result in results:
                values, timestamps = result.get("values"), result.get("timestamps")
                if isinstance(values, list) and isinstance(timestamps, list):
                    if any(v is None for v in values) and len(values) == len(timestamps):
                        kept = [(t, v) for t, v in zip(timestamps, values) if v is not None]
                        result["timestamps"] = [t for t, _ in kept]
                        result["values"] = [v for _, v in kept]
            return results

        return get_metric_data

    wrap(CloudWatchBackend, "get_metric_data", make)
