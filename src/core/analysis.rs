//! Release analysis: CloudWatch alarms that must stay quiet, and the new release's metrics
//! compared with its own limits and with the live release's, over the time it has taken
//! traffic. Pure calculators, table-tested; the engine reads the data and the stage machine
//! decides what a verdict does.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::names::TargetGroupArn;

/// An alarm's state, as DescribeAlarms reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmValue {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmValue {
    pub fn parse(value: &str) -> Option<AlarmValue> {
        match value {
            "OK" => Some(AlarmValue::Ok),
            "ALARM" => Some(AlarmValue::Alarm),
            "INSUFFICIENT_DATA" => Some(AlarmValue::InsufficientData),
            _ => None,
        }
    }
}

/// One CloudWatch alarm named in `[analysis] alarms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmState {
    pub name: String,
    pub state: AlarmValue,
    /// CloudWatch's StateReason, e.g. "Threshold Crossed: 1 datapoint [12.0 …]".
    pub reason: String,
}

/// The first alarm in `ALARM`, if any: a release is stopped for it.
pub fn firing(alarms: &[AlarmState]) -> Option<&AlarmState> {
    alarms.iter().find(|a| a.state == AlarmValue::Alarm)
}

/// What one target group served over a window (ALB metrics, `AWS/ApplicationELB`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricWindow {
    pub target_group: TargetGroupArn,
    /// Sum of `RequestCount`.
    pub requests: f64,
    /// Sum of `HTTPCode_Target_5XX_Count`.
    pub errors_5xx: f64,
    /// p99 of `TargetResponseTime`, in milliseconds; `None` when CloudWatch had no data.
    pub p99_ms: Option<f64>,
}

impl MetricWindow {
    /// The 5xx share of requests; `None` with no requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.errors_5xx / self.requests)
    }
}

/// The new (green) and live (blue) release's metrics over the same window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub green: MetricWindow,
    pub blue: MetricWindow,
    /// Where the window starts: when green's current share took effect.
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::tags::timestamp(*t))
}

/// What an inconclusive verdict (too few requests, no data) does at a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Inconclusive {
    /// Keep waiting (the window grows) until the verdict is in, or someone promotes or aborts.
    Wait,
    /// Go on as if it passed.
    Pass,
    /// Stop the release.
    Fail,
}

impl Inconclusive {
    pub fn parse(value: &str) -> Option<Inconclusive> {
        match value {
            "wait" => Some(Inconclusive::Wait),
            "pass" => Some(Inconclusive::Pass),
            "fail" => Some(Inconclusive::Fail),
            _ => None,
        }
    }
}

/// `[analysis]`: what a release must satisfy at every gate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnalysisSpec {
    /// CloudWatch alarms that stop the release when in `ALARM`.
    pub alarms: Vec<String>,
    /// Green's 5xx share of requests may not exceed this (0.01 = 1%).
    pub max_5xx_rate: Option<f64>,
    /// Green's 5xx share may not exceed this many times blue's.
    pub max_5xx_ratio_vs_blue: Option<f64>,
    /// Green's p99 response time may not exceed this.
    pub max_p99_latency: Option<Duration>,
    /// Fewer requests than this to green make a verdict inconclusive.
    pub min_requests: u64,
    pub inconclusive: Option<Inconclusive>,
}

/// The fewest requests a verdict is drawn from, unless `min_requests` says otherwise.
pub const DEFAULT_MIN_REQUESTS: u64 = 100;

/// A blue 5xx share below this counts as this in the ratio check: with a perfect blue, one green
/// error would otherwise be an infinite ratio.
pub const RATIO_FLOOR: f64 = 0.001;

impl AnalysisSpec {
    /// Whether any metric check is configured (alarms alone need no metrics).
    pub fn compares_metrics(&self) -> bool {
        self.max_5xx_rate.is_some()
            || self.max_5xx_ratio_vs_blue.is_some()
            || self.max_p99_latency.is_some()
    }

    pub fn on_inconclusive(&self) -> Inconclusive {
        self.inconclusive.unwrap_or(Inconclusive::Wait)
    }
}

/// The outcome of comparing green's metrics with the limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass {
        summary: String,
    },
    Fail {
        summary: String,
        reasons: Vec<String>,
    },
    Inconclusive {
        summary: String,
        reasons: Vec<String>,
    },
}

impl Verdict {
    /// One line with the numbers, for people, events and the release's tags.
    pub fn summary(&self) -> &str {
        match self {
            Verdict::Pass { summary }
            | Verdict::Fail { summary, .. }
            | Verdict::Inconclusive { summary, .. } => summary,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            Verdict::Pass { .. } => "pass",
            Verdict::Fail { .. } => "fail",
            Verdict::Inconclusive { .. } => "inconclusive",
        };
        write!(f, "{word}: {}", self.summary())
    }
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// Compares green with the limits and with blue.
pub fn verdict(spec: &AnalysisSpec, c: &Comparison) -> Verdict {
    let green = &c.green;
    let blue = &c.blue;
    let mut fails = Vec::new();
    let mut unknown = Vec::new();
    let green_rate = green.error_rate();
    let blue_rate = blue.error_rate();
    let rate_text = |w: &MetricWindow| match w.error_rate() {
        Some(rate) => format!(
            "{} 5xx ({}/{})",
            percent(rate),
            w.errors_5xx as u64,
            w.requests as u64
        ),
        None => "no requests".to_owned(),
    };
    let mut summary = format!("green {}, blue {}", rate_text(green), rate_text(blue));
    if let Some(p99) = green.p99_ms {
        summary.push_str(&format!(", green p99 {p99:.0}ms"));
    }
    if green.requests < spec.min_requests as f64 {
        unknown.push(format!(
            "green served {} requests, fewer than min_requests = {}",
            green.requests as u64, spec.min_requests
        ));
    }
    if let (Some(max), Some(rate)) = (spec.max_5xx_rate, green_rate)
        && rate > max
    {
        fails.push(format!(
            "green's 5xx rate {} is over max_5xx_rate {}",
            percent(rate),
            percent(max)
        ));
    }
    if let Some(max) = spec.max_5xx_ratio_vs_blue {
        match (green_rate, blue_rate) {
            (Some(rate), Some(blue_rate)) if blue.requests >= spec.min_requests as f64 => {
                let base = blue_rate.max(RATIO_FLOOR);
                if rate > max * base {
                    fails.push(format!(
                        "green's 5xx rate {} is {:.1}x blue's {} (max_5xx_ratio_vs_blue {max})",
                        percent(rate),
                        rate / base,
                        percent(blue_rate)
                    ));
                }
            }
            (Some(_), _) => unknown.push(format!(
                "blue served {} requests, too few to compare with",
                blue.requests as u64
            )),
            (None, _) => {}
        }
    }
    if let Some(max) = spec.max_p99_latency {
        let max_ms = max.as_secs_f64() * 1000.0;
        match green.p99_ms {
            Some(p99) if p99 > max_ms => fails.push(format!(
                "green's p99 response time {p99:.0}ms is over max_p99_latency {max_ms:.0}ms"
            )),
            Some(_) => {}
            None => unknown.push("no p99 response time data for green".to_owned()),
        }
    }
    if !fails.is_empty() {
        // Failing checks count even on few requests: 50 errors in 60 requests is an answer.
        return Verdict::Fail {
            summary,
            reasons: fails,
        };
    }
    if !unknown.is_empty() {
        return Verdict::Inconclusive {
            summary,
            reasons: unknown,
        };
    }
    Verdict::Pass { summary }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg(name: &str) -> TargetGroupArn {
        TargetGroupArn::parse(&format!(
            "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{name}/0123"
        ))
        .unwrap()
    }

    fn window(name: &str, requests: f64, errors: f64, p99: Option<f64>) -> MetricWindow {
        MetricWindow {
            target_group: tg(name),
            requests,
            errors_5xx: errors,
            p99_ms: p99,
        }
    }

    fn spec() -> AnalysisSpec {
        AnalysisSpec {
            alarms: vec![],
            max_5xx_rate: Some(0.01),
            max_5xx_ratio_vs_blue: Some(2.0),
            max_p99_latency: Some(Duration::from_millis(500)),
            min_requests: 100,
            inconclusive: None,
        }
    }

    #[derive(Debug, PartialEq)]
    enum V {
        Pass,
        Fail(&'static str),
        Inconclusive(&'static str),
    }

    /// Green's requests, 5xx and p99; blue's requests and 5xx.
    type Green = (f64, f64, Option<f64>);
    type Blue = (f64, f64);

    #[test]
    fn verdict_table() {
        let cases: Vec<(&str, AnalysisSpec, Green, Blue, V)> = vec![
            (
                "clean",
                spec(),
                (1000.0, 1.0, Some(120.0)),
                (9000.0, 9.0),
                V::Pass,
            ),
            (
                "rate over the limit",
                spec(),
                (1000.0, 20.0, Some(120.0)),
                (9000.0, 90.0),
                V::Fail("over max_5xx_rate 1.00%"),
            ),
            (
                "ratio to blue",
                AnalysisSpec {
                    max_5xx_rate: None,
                    ..spec()
                },
                (1000.0, 9.0, Some(120.0)),
                (9000.0, 9.0),
                V::Fail("9.0x blue's"),
            ),
            (
                "a perfect blue counts as 0.1%",
                AnalysisSpec {
                    max_5xx_rate: None,
                    ..spec()
                },
                (1000.0, 1.0, Some(120.0)),
                (9000.0, 0.0),
                V::Pass,
            ),
            (
                "slow",
                spec(),
                (1000.0, 0.0, Some(900.0)),
                (9000.0, 0.0),
                V::Fail("p99 response time 900ms is over max_p99_latency 500ms"),
            ),
            (
                "an idle canary",
                spec(),
                (20.0, 0.0, Some(100.0)),
                (9000.0, 0.0),
                V::Inconclusive("fewer than min_requests = 100"),
            ),
            (
                "few requests but failing anyway",
                spec(),
                (60.0, 50.0, Some(100.0)),
                (9000.0, 0.0),
                V::Fail("over max_5xx_rate"),
            ),
            (
                "no p99 data",
                spec(),
                (1000.0, 0.0, None),
                (9000.0, 0.0),
                V::Inconclusive("no p99 response time data"),
            ),
            (
                "blue too quiet to compare",
                AnalysisSpec {
                    max_5xx_rate: None,
                    max_p99_latency: None,
                    ..spec()
                },
                (1000.0, 0.0, None),
                (10.0, 0.0),
                V::Inconclusive("blue served 10 requests"),
            ),
            (
                "no green requests at all",
                AnalysisSpec {
                    max_p99_latency: None,
                    ..spec()
                },
                (0.0, 0.0, None),
                (9000.0, 0.0),
                V::Inconclusive("green served 0 requests"),
            ),
        ];
        for (name, spec, (gr, ge, gp), (br, be), expected) in cases {
            let c = Comparison {
                green: window("green", gr, ge, gp),
                blue: window("blue", br, be, None),
                since: SystemTime::UNIX_EPOCH,
            };
            let v = verdict(&spec, &c);
            let got = match &v {
                Verdict::Pass { .. } => V::Pass,
                Verdict::Fail { reasons, .. } => {
                    let V::Fail(part) = expected else {
                        panic!("{name}: {v}")
                    };
                    assert!(reasons.join("; ").contains(part), "{name}: {v:?}");
                    V::Fail(part)
                }
                Verdict::Inconclusive { reasons, .. } => {
                    let V::Inconclusive(part) = expected else {
                        panic!("{name}: {v}")
                    };
                    assert!(reasons.join("; ").contains(part), "{name}: {v:?}");
                    V::Inconclusive(part)
                }
            };
            assert_eq!(got, expected, "{name}: {v}");
        }
    }

    #[test]
    fn the_summary_has_the_numbers() {
        let c = Comparison {
            green: window("green", 1000.0, 1.0, Some(140.0)),
            blue: window("blue", 9000.0, 9.0, None),
            since: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(
            verdict(&spec(), &c).to_string(),
            "pass: green 0.10% 5xx (1/1000), blue 0.10% 5xx (9/9000), green p99 140ms"
        );
    }

    #[test]
    fn an_alarm_in_alarm_fires() {
        let alarms = [
            AlarmState {
                name: "a".into(),
                state: AlarmValue::Ok,
                reason: String::new(),
            },
            AlarmState {
                name: "b".into(),
                state: AlarmValue::Alarm,
                reason: "Threshold Crossed".into(),
            },
        ];
        assert_eq!(firing(&alarms).map(|a| a.name.as_str()), Some("b"));
        assert_eq!(firing(&alarms[..1]), None);
    }
}
