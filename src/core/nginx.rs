//! The nginx router backend, the pure part: its configuration, the include file greenlight
//! owns (rendered and read back), the access-log format metric analysis reads, and the
//! health-check thresholds. The I/O around them is in [`crate::nginx`].
//!
//! nginx is modelled on the AWS one so that the core decides the same way for both: the two
//! slots are two target groups (`<service>-a`, `<service>-b`, named by ARNs under the
//! `greenlight` partition), the router is one listener, and a slot's backends are its targets.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::analysis::MetricWindow;
use super::health::TargetState;
use super::names::{ListenerArn, ServiceName, TargetGroupArn};
use super::router::Slot;

/// The partition, region and account of the ARNs that name nginx's router and slots: never
/// AWS's, so that no ARN of one can be mistaken for the other.
pub const ARN_PREFIX: &str = "arn:greenlight:elasticloadbalancing:local:nginx";

pub const DEFAULT_CHECK_PATH: &str = "/";
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
/// How long a slot keeps getting requests nginx had already sent it when its weight went to
/// zero (old workers finish theirs): cleanup waits this long before it removes the slot's
/// release, as it waits for a target group's deregistration delay on AWS.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// `[router] kind = "nginx"`.
#[derive(Debug, Clone, PartialEq)]
pub struct NginxSpec {
    /// The file greenlight owns and nginx includes at `http {}` level.
    pub include: PathBuf,
    /// Where greenlight keeps its records (releases, lock, the routing nginx last loaded).
    pub state: PathBuf,
    /// Checks the configuration with the new include in place; non-zero exit: no reload.
    pub test: Vec<String>,
    /// Makes nginx load the new include, gracefully (old workers finish their requests).
    pub reload: Vec<String>,
    /// The access log in the `greenlight_<service>` format, for `[analysis]`.
    pub access_log: Option<PathBuf>,
    /// The backends of slot a and slot b, as `host:port`.
    pub backends: [Vec<Backend>; 2],
    pub check: CheckSpec,
    pub drain: Duration,
}

impl NginxSpec {
    pub fn backends(&self, slot: Slot) -> &[Backend] {
        &self.backends[slot.index()]
    }
}

/// How greenlight checks a backend's health itself, as an ALB target group would.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Status codes that count as passing, inclusive.
    pub matcher: (u16, u16),
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec {
            path: DEFAULT_CHECK_PATH.into(),
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            matcher: (200, 399),
        }
    }
}

/// One backend, `host:port`: what nginx's `server` directive and the health check both take.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend(String);

impl Backend {
    pub fn parse(value: &str) -> Result<Backend, String> {
        let bad = || {
            format!(
                "backend {value:?} is not host:port; write e.g. \"127.0.0.1:8081\" or \"app-1.internal:8080\""
            )
        };
        let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        // Characters nginx would read as syntax (`;`, braces, spaces, quotes) are refused:
        // the value is written into nginx's configuration.
        let host_ok = !host.is_empty()
            && host.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':')
            });
        if port_ok && host_ok {
            Ok(Backend(value.to_owned()))
        } else {
            Err(bad())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The ARNs nginx's router and slots go by in the core, events and output.
pub fn router_arn(service: &ServiceName) -> ListenerArn {
    ListenerArn::parse(&format!("{ARN_PREFIX}:listener/app/nginx/{service}/0"))
        .expect("a service name makes a valid ARN")
}

pub fn slot_arn(service: &ServiceName, slot: Slot) -> TargetGroupArn {
    TargetGroupArn::parse(&format!("{ARN_PREFIX}:targetgroup/{service}-{slot}/0"))
        .expect("a service name makes a valid ARN")
}

/// nginx names: `-` is not allowed in a variable name.
fn ident(service: &ServiceName) -> String {
    service.as_str().replace(['-', '.'], "_")
}

/// The variable the user's `proxy_pass http://$greenlight_<service>;` names.
pub fn variable(service: &ServiceName) -> String {
    format!("greenlight_{}", ident(service))
}

/// The `upstream` block of one slot.
pub fn upstream(service: &ServiceName, slot: Slot) -> String {
    format!("greenlight_{}_{slot}", ident(service))
}

/// The `log_format` the include defines, for the user's `access_log <path> <name>;`.
pub fn log_format(service: &ServiceName) -> String {
    format!("greenlight_{}", ident(service))
}

/// Traffic shares in hundredths of a percent: what `split_clients` takes (two decimals).
fn basis_points(weights: [u16; 2]) -> Option<[u32; 2]> {
    let total = u32::from(weights[0]) + u32::from(weights[1]);
    if total == 0 {
        return None;
    }
    let a = (u32::from(weights[0]) * 10_000 + total / 2) / total;
    Some([a, 10_000 - a])
}

/// The include for `weights` (slot a, slot b). `sticky` splits by client address instead of by
/// request, so that a client stays on one release while both take traffic.
pub fn render(service: &ServiceName, spec: &NginxSpec, weights: [u16; 2], sticky: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Written by greenlight for service {service}: do not edit, greenlight rewrites it.\n\
         # greenlight-weights: a={} b={}\n",
        weights[0], weights[1]
    ));
    for slot in Slot::BOTH {
        out.push_str(&format!("upstream {} {{\n", upstream(service, slot)));
        for backend in spec.backends(slot) {
            out.push_str(&format!("    server {};\n", backend.as_str()));
        }
        out.push_str("    keepalive 32;\n}\n");
    }
    let key = if sticky {
        "${remote_addr}"
    } else {
        "${request_id}"
    };
    out.push_str(&format!(
        "split_clients \"{key}\" ${} {{\n",
        variable(service)
    ));
    match basis_points(weights) {
        // No weight anywhere is refused before a write (see `route`); keep slot a so the
        // file stays valid nginx.
        None => out.push_str(&format!("    * {};\n", upstream(service, Slot::A))),
        Some([a, b]) => {
            // The smaller share is listed, `*` takes the rest: shares always add up to 100%.
            let (listed, share, rest) = if a <= b {
                (Slot::A, a, Slot::B)
            } else {
                (Slot::B, b, Slot::A)
            };
            if share > 0 {
                out.push_str(&format!(
                    "    {}.{:02}% {};\n",
                    share / 100,
                    share % 100,
                    upstream(service, listed)
                ));
            }
            out.push_str(&format!("    * {};\n", upstream(service, rest)));
        }
    }
    out.push_str("}\n");
    out.push_str(&format!(
        "log_format {} escape=json '{{\"time\":$msec,\"status\":$status,\
         \"request_time\":$request_time,\"upstream\":\"${}\",\
         \"upstream_status\":\"$upstream_status\"}}';\n",
        log_format(service),
        variable(service)
    ));
    out
}

/// The weights an include states, when it is one greenlight wrote (or one written in its
/// shape): the `greenlight-weights` line, else the `split_clients` shares.
pub fn read_weights(service: &ServiceName, text: &str) -> Option<[u16; 2]> {
    for line in text.lines() {
        if let Some(rest) = line.trim().strip_prefix("# greenlight-weights:") {
            let mut weights = [None, None];
            for part in rest.split_whitespace() {
                match part.split_once('=') {
                    Some(("a", w)) => weights[0] = w.parse().ok(),
                    Some(("b", w)) => weights[1] = w.parse().ok(),
                    _ => {}
                }
            }
            if let [Some(a), Some(b)] = weights {
                return Some([a, b]);
            }
        }
    }
    let block = text.split_once(&format!("${} {{", variable(service)))?.1;
    let block = block.split_once('}')?.0;
    let mut listed = [0u32; 2];
    let mut rest = None;
    for entry in block.split(';') {
        let mut words = entry.split_whitespace();
        let (Some(share), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let slot = Slot::BOTH
            .into_iter()
            .find(|slot| upstream(service, *slot) == name)?;
        if share == "*" {
            rest = Some(slot);
        } else {
            let percent: f64 = share.strip_suffix('%')?.parse().ok()?;
            listed[slot.index()] += (percent * 100.0).round() as u32;
        }
    }
    let listed_total = listed[0] + listed[1];
    if listed_total > 10_000 {
        return None;
    }
    if let Some(rest) = rest {
        listed[rest.index()] += 10_000 - listed_total;
    }
    // Basis points, in lowest terms, then within the 0–999 that weights take (ELB's range):
    // ten thousandths / 11 stay under 910, close enough to the split nginx makes.
    let divisor = gcd(listed[0], listed[1]).max(1);
    let [a, b] = listed.map(|v| v / divisor);
    if a > 999 || b > 999 {
        return Some([a.div_ceil(11) as u16, b.div_ceil(11) as u16]);
    }
    Some([a as u16, b as u16])
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One request from the access log, in the `log_format` [`render`] defines.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRecord {
    pub time: SystemTime,
    /// The upstream (slot) nginx picked for it.
    pub upstream: String,
    pub status: u16,
    /// Every attempt nginx made at a backend (`$upstream_status`: `502, 200` when the first
    /// backend failed and the next served it).
    pub attempts: Vec<Option<u16>>,
    pub request_time: Duration,
}

impl AccessRecord {
    /// A backend failed this request: any attempt answered 5xx or could not connect (nginx
    /// records a failed connection as 502 too). On AWS this is the target's 5xx count; here
    /// a retried attempt counts, because it is the new release failing.
    pub fn backend_failed(&self) -> bool {
        self.attempts
            .iter()
            .any(|status| status.is_none_or(|s| s >= 500))
            || (self.attempts.is_empty() && self.status >= 500)
    }
}

#[derive(serde::Deserialize)]
struct RawRecord {
    time: f64,
    status: u16,
    request_time: f64,
    upstream: String,
    upstream_status: String,
}

/// One access log line; `None` for a line in another format.
pub fn parse_access_line(line: &str) -> Option<AccessRecord> {
    let raw: RawRecord = serde_json::from_str(line.trim()).ok()?;
    if !raw.time.is_finite() || raw.time < 0.0 || !raw.request_time.is_finite() {
        return None;
    }
    let attempts = raw
        .upstream_status
        .split([',', ':'])
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "-")
        .map(|s| s.parse::<u16>().ok())
        .collect();
    Some(AccessRecord {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(raw.time),
        upstream: raw.upstream,
        status: raw.status,
        attempts,
        request_time: Duration::from_secs_f64(raw.request_time.max(0.0)),
    })
}

/// What each slot served from `start` to `end`, as CloudWatch's target-group metrics would say.
pub fn windows<'a>(
    service: &ServiceName,
    records: impl IntoIterator<Item = &'a AccessRecord>,
    target_groups: &[TargetGroupArn],
    start: SystemTime,
    end: SystemTime,
) -> Vec<MetricWindow> {
    let slot_of = |tg: &TargetGroupArn| {
        Slot::BOTH
            .into_iter()
            .find(|slot| &slot_arn(service, *slot) == tg)
    };
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); target_groups.len()];
    let mut out: Vec<MetricWindow> = target_groups
        .iter()
        .map(|tg| MetricWindow {
            target_group: tg.clone(),
            requests: 0.0,
            errors_5xx: 0.0,
            p99_ms: None,
        })
        .collect();
    let names: Vec<Option<String>> = target_groups
        .iter()
        .map(|tg| slot_of(tg).map(|slot| upstream(service, slot)))
        .collect();
    for record in records {
        if record.time < start || record.time >= end {
            continue;
        }
        for (i, name) in names.iter().enumerate() {
            if name.as_deref() == Some(record.upstream.as_str()) {
                out[i].requests += 1.0;
                if record.backend_failed() {
                    out[i].errors_5xx += 1.0;
                }
                latencies[i].push(record.request_time.as_secs_f64() * 1000.0);
            }
        }
    }
    for (window, mut values) in out.iter_mut().zip(latencies) {
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        // Nearest rank, as CloudWatch's percentile statistics.
        let rank = ((values.len() as f64) * 0.99).ceil() as usize;
        window.p99_ms = Some(values[rank.clamp(1, values.len()) - 1]);
    }
    out
}

/// A backend's health as consecutive check results make it, like an ALB target's: `initial`
/// until the first verdict, healthy after `healthy_threshold` passes in a row, unhealthy after
/// `unhealthy_threshold` failures in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub state: TargetState,
    passes: u32,
    failures: u32,
    /// Why the last check failed, for people.
    pub last_failure: Option<String>,
}

impl Default for CheckRecord {
    fn default() -> Self {
        CheckRecord {
            state: TargetState::Initial,
            passes: 0,
            failures: 0,
            last_failure: None,
        }
    }
}

impl CheckRecord {
    pub fn record(&mut self, spec: &CheckSpec, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.passes += 1;
                self.failures = 0;
                if self.passes >= spec.healthy_threshold {
                    self.state = TargetState::Healthy;
                    self.last_failure = None;
                }
            }
            Err(why) => {
                self.failures += 1;
                self.passes = 0;
                self.last_failure = Some(why);
                if self.failures >= spec.unhealthy_threshold {
                    self.state = TargetState::Unhealthy;
                }
            }
        }
    }

    /// How many checks have been made since the last change of verdict.
    pub fn streak(&self) -> u32 {
        self.passes.max(self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> ServiceName {
        ServiceName::parse("web").unwrap()
    }

    fn spec() -> NginxSpec {
        NginxSpec {
            include: "/etc/nginx/greenlight/web.conf".into(),
            state: "/var/lib/greenlight/web.json".into(),
            test: vec!["nginx".into(), "-t".into()],
            reload: vec!["nginx".into(), "-s".into(), "reload".into()],
            access_log: None,
            backends: [
                vec![Backend::parse("127.0.0.1:8081").unwrap()],
                vec![
                    Backend::parse("127.0.0.1:9081").unwrap(),
                    Backend::parse("127.0.0.1:9082").unwrap(),
                ],
            ],
            check: CheckSpec::default(),
            drain: DEFAULT_DRAIN,
        }
    }

    #[test]
    fn backends_must_be_host_and_port_without_nginx_syntax() {
        for good in [
            "127.0.0.1:8081",
            "app-1.internal:80",
            "[::1]:8080",
            "localhost:1",
        ] {
            assert!(Backend::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            ":80",
            "a b:80",
            "x;y:80",
            "h{:80",
            "\"h\":80",
        ] {
            assert!(Backend::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_include_splits_as_the_weights_say_and_reads_back() {
        let cases: &[([u16; 2], Option<&str>, &str)] = &[
            ([1, 0], None, "* greenlight_web_a;"),
            ([0, 1], None, "* greenlight_web_b;"),
            (
                [90, 10],
                Some("10.00% greenlight_web_b;"),
                "* greenlight_web_a;",
            ),
            (
                [50, 50],
                Some("50.00% greenlight_web_a;"),
                "* greenlight_web_b;",
            ),
            (
                [2, 1],
                Some("33.33% greenlight_web_b;"),
                "* greenlight_web_a;",
            ),
            (
                [1, 999],
                Some("0.10% greenlight_web_a;"),
                "* greenlight_web_b;",
            ),
        ];
        for (weights, listed, rest) in cases {
            let text = render(&service(), &spec(), *weights, false);
            let split = text.split_once("split_clients").unwrap().1;
            if let Some(listed) = listed {
                assert!(split.contains(listed), "{weights:?}: {text}");
            } else {
                assert!(!split.contains('%'), "{weights:?}: {text}");
            }
            assert!(split.contains(rest), "{weights:?}: {text}");
            assert_eq!(read_weights(&service(), &text), Some(*weights));
            // Without the header line, the shares themselves give the same split.
            let bare: String = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            let [a, b] = read_weights(&service(), &bare).unwrap();
            let share = |x: u16, y: u16| f64::from(x) / f64::from(x + y);
            assert!(
                (share(a, b) - share(weights[0], weights[1])).abs() < 0.001,
                "{weights:?} read back as {a}/{b}"
            );
        }
    }

    #[test]
    fn the_include_lists_every_backend_and_the_log_format() {
        let text = render(&service(), &spec(), [1, 0], false);
        assert!(text.contains("upstream greenlight_web_a {\n    server 127.0.0.1:8081;\n"));
        assert!(text.contains("    server 127.0.0.1:9081;\n    server 127.0.0.1:9082;\n"));
        assert!(text.contains("split_clients \"${request_id}\" $greenlight_web {"));
        assert!(text.contains("log_format greenlight_web escape=json"));
        let sticky = render(&service(), &spec(), [1, 1], true);
        assert!(sticky.contains("split_clients \"${remote_addr}\""));
    }

    #[test]
    fn a_hand_written_include_in_the_documented_shape_reads() {
        let text = "upstream greenlight_web_a { server 127.0.0.1:1; }\n\
                    split_clients \"${request_id}\" $greenlight_web {\n  * greenlight_web_a;\n}\n";
        assert_eq!(read_weights(&service(), text), Some([1, 0]));
        assert_eq!(read_weights(&service(), "nothing here"), None);
        let foreign = "split_clients \"${request_id}\" $greenlight_web { * elsewhere; }";
        assert_eq!(read_weights(&service(), foreign), None);
    }

    #[test]
    fn access_lines_parse_and_count_per_slot() {
        let line = |t: f64, upstream: &str, status: u16, ups: &str, rt: f64| {
            format!(
                r#"{{"time":{t},"status":{status},"request_time":{rt},"upstream":"{upstream}","upstream_status":"{ups}"}}"#
            )
        };
        let lines = [
            line(100.0, "greenlight_web_a", 200, "200", 0.010),
            line(100.5, "greenlight_web_b", 200, "502, 200", 0.020),
            line(101.0, "greenlight_web_b", 502, "502", 0.001),
            line(101.5, "greenlight_web_b", 200, "200", 0.004),
            line(99.0, "greenlight_web_b", 500, "500", 0.004),
            line(105.0, "greenlight_web_b", 500, "500", 0.004),
            "not json".to_owned(),
            line(102.0, "greenlight_web_b", 504, "-", 0.004),
        ];
        let records: Vec<AccessRecord> =
            lines.iter().filter_map(|l| parse_access_line(l)).collect();
        assert_eq!(records.len(), 7);
        assert_eq!(records[1].attempts, vec![Some(502), Some(200)]);
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let tgs = [slot_arn(&service(), Slot::A), slot_arn(&service(), Slot::B)];
        let w = windows(&service(), &records, &tgs, at(100), at(105));
        assert_eq!((w[0].requests, w[0].errors_5xx), (1.0, 0.0));
        assert_eq!((w[1].requests, w[1].errors_5xx), (4.0, 3.0));
        assert_eq!(w[1].p99_ms, Some(20.0));
        assert_eq!(w[0].p99_ms, Some(10.0));
    }

    #[test]
    fn thresholds_decide_a_backends_state() {
        let spec = CheckSpec {
            healthy_threshold: 3,
            unhealthy_threshold: 2,
            ..CheckSpec::default()
        };
        let mut record = CheckRecord::default();
        let mut states = Vec::new();
        for result in [
            true, true, false, true, true, true, false, true, false, false, true,
        ] {
            record.record(
                &spec,
                if result {
                    Ok(())
                } else {
                    Err("refused".into())
                },
            );
            states.push(record.state);
        }
        use TargetState::*;
        assert_eq!(
            states,
            [
                Initial, Initial, Initial, Initial, Initial, Healthy, Healthy, Healthy, Healthy,
                Unhealthy, Unhealthy
            ]
        );
    }
}
