//! CloudWatch: the alarms a release must keep quiet, and the ALB metrics of its target groups.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, Metric, MetricDataQuery, MetricStat, StateValue, StatusCode,
};

use super::error::{Endpoint, missing};
use crate::core::analysis::{AlarmState, AlarmValue, MetricWindow};
use crate::core::cloud::{CloudError, CloudErrorKind, CloudResult};
use crate::core::names::TargetGroupArn;

const DESCRIBE_ALARMS: &str = "DescribeAlarms";
const GET_METRIC_DATA: &str = "GetMetricData";

/// The most alarm names one DescribeAlarms call takes, and the most alarms a page holds.
const ALARMS_PER_CALL: usize = 100;
/// The most queries one GetMetricData call takes.
const QUERIES_PER_CALL: usize = 500;
/// Queries per target group: requests, 5xx, p99.
const QUERIES_PER_GROUP: usize = 3;

const NAMESPACE: &str = "AWS/ApplicationELB";
const REQUESTS: &str = "RequestCount";
const ERRORS_5XX: &str = "HTTPCode_Target_5XX_Count";
const RESPONSE_TIME: &str = "TargetResponseTime";

/// The longest period asked for. CloudWatch documents no maximum, but one period of a day is
/// already far longer than a release's window; a longer window is read as several datapoints
/// and summed.
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(86_400);

pub(crate) struct CloudWatch {
    client: Client,
    endpoint: Endpoint,
}

impl CloudWatch {
    pub(crate) fn new(conf: &SdkConfig) -> CloudWatch {
        CloudWatch {
            // Every call logged at -vv (src/aws/trace.rs).
            client: Client::from_conf(
                aws_sdk_cloudwatch::config::Builder::from(conf)
                    .interceptor(super::trace::CallLog)
                    .build(),
            ),
            endpoint: Endpoint::new(
                "CloudWatch",
                conf.endpoint_url(),
                conf.region().map(|r| r.as_ref()),
            ),
        }
    }

    /// The states of the named alarms, metric and composite, in the order named; an alarm
    /// that does not exist is left out. No names, no call: DescribeAlarms without names would
    /// list every alarm in the account.
    pub(crate) async fn alarms(&self, names: &[String]) -> CloudResult<Vec<AlarmState>> {
        let op = DESCRIBE_ALARMS;
        let mut wanted: Vec<&String> = Vec::new();
        for name in names {
            if !wanted.contains(&name) {
                wanted.push(name);
            }
        }
        let mut found: BTreeMap<String, AlarmState> = BTreeMap::new();
        for batch in wanted.chunks(ALARMS_PER_CALL) {
            let mut pages = self
                .client
                .describe_alarms()
                .set_alarm_names(Some(batch.iter().map(|n| (*n).clone()).collect()))
                // Without AlarmTypes, CloudWatch answers metric alarms only.
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .max_records(ALARMS_PER_CALL as i32)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.endpoint.on(op))?;
                let metric = page
                    .metric_alarms()
                    .iter()
                    .map(|a| (a.alarm_name(), a.state_value(), a.state_reason()));
                let composite = page
                    .composite_alarms()
                    .iter()
                    .map(|a| (a.alarm_name(), a.state_value(), a.state_reason()));
                for (name, state, reason) in metric.chain(composite) {
                    let alarm = alarm_state(op, name, state, reason)?;
                    found.insert(alarm.name.clone(), alarm);
                }
            }
        }
        Ok(wanted
            .into_iter()
            .filter_map(|name| found.remove(name.as_str()))
            .collect())
    }

    /// What each target group served from `start` to `end`: RequestCount and
    /// HTTPCode_Target_5XX_Count summed, and TargetResponseTime's p99 in milliseconds (the
    /// highest p99 of the datapoints when the window takes more than one). One GetMetricData
    /// call (all its pages) for up to 166 target groups.
    pub(crate) async fn target_group_metrics(
        &self,
        load_balancer_arn: &str,
        target_groups: &[TargetGroupArn],
        start: SystemTime,
        end: SystemTime,
    ) -> CloudResult<Vec<MetricWindow>> {
        let op = GET_METRIC_DATA;
        let mut windows: Vec<MetricWindow> = target_groups
            .iter()
            .map(|tg| MetricWindow {
                target_group: tg.clone(),
                requests: 0.0,
                errors_5xx: 0.0,
                p99_ms: None,
            })
            .collect();
        let Ok(window) = end.duration_since(start) else {
            return Ok(windows); // an empty window served nothing
        };
        if window.is_zero() || target_groups.is_empty() {
            return Ok(windows);
        }
        let balancer = load_balancer_dimension(op, load_balancer_arn)?;
        let age = SystemTime::now()
            .duration_since(start)
            .unwrap_or(Duration::ZERO);
        let period = period(window, age);
        let groups_per_call = QUERIES_PER_CALL / QUERIES_PER_GROUP;
        for (batch, chunk) in target_groups.chunks(groups_per_call).enumerate() {
            let mut queries = Vec::new();
            for (i, tg) in chunk.iter().enumerate() {
                let label = tg.label_suffix().ok_or_else(|| {
                    CloudError::new(
                        CloudErrorKind::InvalidRequest,
                        op,
                        format!("{tg} is not a target group ARN CloudWatch can name"),
                    )
                })?;
                let dimensions = [("TargetGroup", label.as_str()), ("LoadBalancer", &balancer)];
                let n = batch * groups_per_call + i;
                queries.push(query(
                    &format!("requests{n}"),
                    REQUESTS,
                    "Sum",
                    &dimensions,
                    period,
                ));
                queries.push(query(
                    &format!("errors{n}"),
                    ERRORS_5XX,
                    "Sum",
                    &dimensions,
                    period,
                ));
                queries.push(query(
                    &format!("p99_{n}"),
                    RESPONSE_TIME,
                    "p99",
                    &dimensions,
                    period,
                ));
            }
            let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            let mut pages = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries))
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(self.endpoint.on(op))?;
                for result in page.metric_data_results() {
                    check_status(op, result.status_code(), result.messages())?;
                    let id = result
                        .id()
                        .ok_or_else(|| missing(op, "a metric data result", "Id"))?;
                    values
                        .entry(id.to_owned())
                        .or_default()
                        .extend_from_slice(result.values());
                }
            }
            for (i, window) in windows
                .iter_mut()
                .skip(batch * groups_per_call)
                .take(chunk.len())
                .enumerate()
            {
                let n = batch * groups_per_call + i;
                let get = |id: String| values.get(&id).map(Vec::as_slice).unwrap_or_default();
                window.requests = get(format!("requests{n}")).iter().sum();
                window.errors_5xx = get(format!("errors{n}")).iter().sum();
                // The p99 of the whole window is at most the highest p99 of its parts.
                window.p99_ms = get(format!("p99_{n}"))
                    .iter()
                    .copied()
                    .reduce(f64::max)
                    .map(|seconds| seconds * 1000.0);
            }
        }
        Ok(windows)
    }
}

fn alarm_state(
    operation: &str,
    name: Option<&str>,
    state: Option<&StateValue>,
    reason: Option<&str>,
) -> CloudResult<AlarmState> {
    let name = name.ok_or_else(|| missing(operation, "an alarm", "AlarmName"))?;
    let state = state.ok_or_else(|| missing(operation, "an alarm", "StateValue"))?;
    let value = AlarmValue::parse(state.as_str()).ok_or_else(|| {
        CloudError::new(
            CloudErrorKind::Other,
            operation,
            format!("alarm {name} is in state {state}, which greenlight does not know"),
        )
    })?;
    Ok(AlarmState {
        name: name.to_owned(),
        state: value,
        reason: reason.unwrap_or("").to_owned(),
    })
}

/// A result CloudWatch could not complete fails the read: a partial sum would understate
/// errors. (`PartialData` only means more pages follow.)
fn check_status(
    operation: &str,
    status: Option<&StatusCode>,
    messages: &[aws_sdk_cloudwatch::types::MessageData],
) -> CloudResult<()> {
    let kind = match status {
        Some(StatusCode::Forbidden) => CloudErrorKind::AccessDenied,
        Some(StatusCode::InternalError) => CloudErrorKind::Unavailable,
        _ => return Ok(()),
    };
    let detail: Vec<&str> = messages.iter().filter_map(|m| m.value()).collect();
    let status = status.map_or("", StatusCode::as_str);
    let message = if detail.is_empty() {
        format!("a metric query ended {status}")
    } else {
        format!("a metric query ended {status}: {}", detail.join("; "))
    };
    Err(CloudError::new(kind, operation, message).with_code(status))
}

fn query(
    id: &str,
    metric: &str,
    stat: &str,
    dimensions: &[(&str, &str)],
    period: i32,
) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(NAMESPACE)
                        .metric_name(metric)
                        .set_dimensions(Some(
                            dimensions
                                .iter()
                                .map(|(name, value)| {
                                    Dimension::builder().name(*name).value(*value).build()
                                })
                                .collect(),
                        ))
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// `app/<name>/<id>`, how CloudWatch names an Application Load Balancer, from its ARN
/// `arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>`.
pub(crate) fn load_balancer_dimension(operation: &str, arn: &str) -> CloudResult<String> {
    let refuse = |why: &str| {
        CloudError::new(
            CloudErrorKind::InvalidRequest,
            operation,
            format!("{arn} {why}"),
        )
    };
    let Some((_, resource)) = arn.split_once(":loadbalancer/") else {
        return Err(refuse("is not a load balancer ARN"));
    };
    let parts: Vec<&str> = resource.split('/').collect();
    match parts.as_slice() {
        ["app", name, id] if !name.is_empty() && !id.is_empty() => Ok(resource.to_owned()),
        [kind, _, _] if *kind != "app" => Err(refuse(
            "is not an Application Load Balancer: its metrics are not in AWS/ApplicationELB",
        )),
        _ => Err(refuse("is not a load balancer ARN")),
    }
}

/// The period that makes one datapoint cover a `window`: the window rounded up to whole
/// minutes, at least one, and at most [`MAX_PERIOD`]. For a window that starts long ago, a
/// multiple of what CloudWatch keeps for that age (5 minutes after 15 days, an hour after 63),
/// or it returns nothing.
pub(crate) fn period(window: Duration, start_age: Duration) -> i32 {
    const DAY: u64 = 86_400;
    let step = if start_age > Duration::from_secs(63 * DAY) {
        3_600
    } else if start_age > Duration::from_secs(15 * DAY) {
        300
    } else {
        60
    };
    let seconds = window.as_secs() + u64::from(window.subsec_nanos() > 0);
    let rounded = seconds.div_ceil(step).max(1) * step;
    let period = rounded.min(MAX_PERIOD.as_secs());
    i32::try_from(period).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60;

    #[test]
    fn a_period_covers_the_window_in_whole_minutes() {
        let recent = Duration::from_secs(10 * MINUTE);
        let cases = [
            (Duration::from_millis(1), 60),
            (Duration::from_secs(59), 60),
            (Duration::from_secs(60), 60),
            (Duration::from_millis(60_001), 120),
            (Duration::from_secs(61), 120),
            (Duration::from_secs(10 * MINUTE), 600),
            (Duration::from_secs(10 * MINUTE + 1), 660),
            (Duration::from_secs(86_400), 86_400),
            // Longer than one period may be: several datapoints, summed by the caller.
            (Duration::from_secs(3 * 86_400), 86_400),
        ];
        for (window, expected) in cases {
            assert_eq!(period(window, recent), expected, "{window:?}");
        }
    }

    #[test]
    fn old_windows_use_the_resolution_cloudwatch_keeps() {
        let day = 86_400;
        let window = Duration::from_secs(7 * MINUTE);
        assert_eq!(period(window, Duration::from_secs(14 * day)), 420);
        assert_eq!(period(window, Duration::from_secs(16 * day)), 600);
        assert_eq!(period(window, Duration::from_secs(64 * day)), 3_600);
    }

    #[test]
    fn load_balancer_dimension_from_its_arn() {
        let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shop/50dc6c495c0c9188";
        assert_eq!(
            load_balancer_dimension("GetMetricData", arn).unwrap(),
            "app/shop/50dc6c495c0c9188"
        );
        let nlb = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/shop/50dc";
        let err = load_balancer_dimension("GetMetricData", nlb).unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::InvalidRequest);
        assert!(
            err.message.contains("not an Application Load Balancer"),
            "{err}"
        );
        for bad in [
            "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1",
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/shop",
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app//1",
            "",
        ] {
            let err = load_balancer_dimension("GetMetricData", bad).unwrap_err();
            assert_eq!(err.kind, CloudErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn unknown_alarm_states_are_errors() {
        let ok = alarm_state("Op", Some("a"), Some(&StateValue::Alarm), Some("crossed")).unwrap();
        assert_eq!(ok.state, AlarmValue::Alarm);
        assert_eq!(ok.reason, "crossed");
        let new = StateValue::from("MUTED");
        let err = alarm_state("Op", Some("a"), Some(&new), None).unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::Other);
        assert!(alarm_state("Op", None, Some(&StateValue::Ok), None).is_err());
    }

    #[test]
    fn unfinished_metric_queries_fail() {
        assert!(check_status("Op", Some(&StatusCode::Complete), &[]).is_ok());
        assert!(check_status("Op", Some(&StatusCode::PartialData), &[]).is_ok());
        assert!(check_status("Op", None, &[]).is_ok());
        let err = check_status("Op", Some(&StatusCode::InternalError), &[]).unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::Unavailable);
        let err = check_status("Op", Some(&StatusCode::Forbidden), &[]).unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::AccessDenied);
    }
}
