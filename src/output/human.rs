//! Text for a person at a terminal: one progress line per step, tables for status.

use std::io::Write;
use std::time::Instant;

use crate::core::decide::{Action, Green};
use crate::engine::events::{Event, Reporter};
use crate::engine::status::StatusReport;
use crate::engine::validate::Validation;

pub struct HumanReporter {
    started: Instant,
}

impl HumanReporter {
    pub fn new() -> HumanReporter {
        HumanReporter {
            started: Instant::now(),
        }
    }
}

impl Default for HumanReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for HumanReporter {
    fn report(&mut self, event: &Event) {
        let elapsed = self.started.elapsed().as_secs();
        let mut out = std::io::stdout().lock();
        for line in describe(event) {
            let _ = writeln!(out, "[{:>2}:{:02}] {line}", elapsed / 60, elapsed % 60);
        }
        let _ = out.flush();
    }
}

/// The lines an event prints as, without the time prefix.
pub fn describe(event: &Event) -> Vec<String> {
    match event {
        Event::DeployStarted {
            service,
            release,
            live_release,
            live_slot,
            live_target_group,
            idle_target_group,
        } => vec![format!(
            "deploying {service} {release}: live is {live_release} in {} (slot {live_slot}); the new release goes to {}",
            live_target_group.short_name(),
            idle_target_group.short_name()
        )],
        Event::Step { action } => vec![describe_action(action)],
        Event::Health { fleet, summary, .. } => vec![format!("green {fleet}: {summary}")],
        Event::Warning { message } => vec![format!("warning: {message}")],
        Event::Released {
            release,
            slot,
            flipped: true,
        } => vec![format!("✓ release {release} is live (slot {slot})")],
        Event::Released {
            release,
            slot,
            flipped: false,
        } => vec![format!(
            "✓ release {release} was already live (slot {slot}); nothing to do"
        )],
        Event::ReleaseFailed { release, reasons } => {
            let mut lines = vec![format!(
                "✗ release {release} failed; traffic stayed on the previous release"
            )];
            lines.extend(reasons.iter().map(|r| format!("  {r}")));
            lines
        }
        Event::RolledBack { release, slot } => {
            vec![format!(
                "✓ rolled back: release {release} takes all traffic (slot {slot})"
            )]
        }
        Event::Error { message, .. } => vec![format!("error: {message}")],
    }
}

fn describe_action(action: &Action) -> String {
    match action {
        Action::JoinRouter { target_group, .. } => format!(
            "adding {} to the router at weight 0, so the load balancer health-checks it",
            target_group.short_name()
        ),
        Action::RetireFleet {
            fleet,
            release,
            phase,
        } => format!(
            "retiring fleet {fleet} (release {release}, {}) from the idle slot",
            phase.map_or("untagged".into(), |p| p.to_string())
        ),
        Action::CreateFleet(Green {
            fleet,
            source,
            target_group,
            ..
        }) => format!(
            "creating fleet {fleet} as a twin of {source}, attached to {}",
            target_group.short_name()
        ),
        Action::ConfigureFleet(Green { fleet, source, .. }) => format!(
            "configuring {fleet} (policies, schedules, metrics) and scaling it to {source}'s capacity"
        ),
        Action::ReviveFleet { fleet, capacity } => format!(
            "retrying failed fleet {fleet}: scaling to desired {}",
            capacity.desired
        ),
        Action::Flip { to, release, .. } => format!(
            "flipping all traffic to {} (release {release})",
            to.short_name()
        ),
        Action::MarkLive {
            fleet,
            release,
            resume,
        } => {
            let scaling = if resume.is_empty() {
                String::new()
            } else {
                format!("; resuming {}", resume.join(", "))
            };
            format!("marking {fleet} (release {release}) live{scaling}")
        }
        Action::MarkWarm {
            fleet,
            release,
            until,
            suspend,
        } => {
            let scaling = if suspend.is_empty() {
                String::new()
            } else {
                format!(" at its capacity (suspending {})", suspend.join(", "))
            };
            format!(
                "keeping {fleet} (release {release}) warm{scaling} until {}",
                crate::core::tags::timestamp(*until)
            )
        }
        Action::FailRelease { fleet, .. } => {
            format!("health timeout: scaling {fleet} to 0 and marking it failed")
        }
    }
}

pub fn print_status(report: &StatusReport) {
    let mut out = std::io::stdout().lock();
    let live = match (&report.live_release, report.live_slot) {
        (Some(release), Some(slot)) => format!("live release {release} (slot {slot})"),
        _ => "no single live release".to_owned(),
    };
    let _ = writeln!(out, "service {}: {live}", report.service);
    let _ = writeln!(out, "router: {}", report.router);
    if let Some(problem) = &report.problem {
        let _ = writeln!(out, "attention: {problem}");
    }
    let header = [
        "SLOT",
        "TARGET GROUP",
        "WEIGHT",
        "FLEET",
        "RELEASE",
        "PHASE",
        "DESIRED",
        "IN SERVICE",
        "HEALTHY",
        "WARM UNTIL",
    ];
    let dash = || "-".to_owned();
    let rows: Vec<[String; 10]> = report
        .traffic
        .iter()
        .map(|s| {
            let count = |n: u32| {
                if s.asg.is_some() {
                    n.to_string()
                } else {
                    dash()
                }
            };
            [
                s.slot.to_string(),
                s.target_group.clone(),
                format!("{} ({}%)", s.weight, s.percent),
                s.asg.clone().unwrap_or_else(dash),
                s.release.clone().unwrap_or_else(dash),
                s.phase.clone().unwrap_or_else(dash),
                count(s.desired),
                count(s.in_service),
                count(s.healthy),
                s.warm_until.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    for s in &report.traffic {
        if let Some(failure) = &s.failure {
            let _ = writeln!(out, "slot {} failed: {failure}", s.slot);
        }
        if !s.other_fleets.is_empty() {
            let _ = writeln!(
                out,
                "slot {} has several fleets attached: {}",
                s.slot,
                s.other_fleets.join(", ")
            );
        }
    }
}

pub fn print_validation(validation: &Validation) {
    let mut out = std::io::stdout().lock();
    for check in &validation.checks {
        let _ = writeln!(out, "✓ {}: {}", check.name, check.detail);
    }
    for warning in &validation.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    let _ = writeln!(out, "{} is ready to deploy", validation.service);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::core::decide::Launch;
    use crate::core::names::{FleetName, ImageId, ReleaseName, TargetGroupArn};
    use crate::core::router::Slot;
    use crate::core::tags::Phase;

    fn tg(name: &str) -> TargetGroupArn {
        TargetGroupArn::parse(&format!(
            "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{name}/0123"
        ))
        .unwrap()
    }

    #[test]
    fn every_event_reads_as_a_sentence() {
        let fleet = |n: &str| FleetName::new(n);
        let green = Green {
            fleet: fleet("checkout-v2"),
            release: ReleaseName::parse("v2").unwrap(),
            source: fleet("checkout-blue"),
            target_group: tg("checkout-b"),
            launch: Launch::Image(ImageId::parse("ami-12345678").unwrap()),
        };
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let cases: Vec<(Event, &[&str])> = vec![
            (
                Event::DeployStarted {
                    service: "checkout".into(),
                    release: "v2".into(),
                    live_release: "v1".into(),
                    live_slot: Slot::A,
                    live_target_group: tg("checkout-a"),
                    idle_target_group: tg("checkout-b"),
                },
                &[
                    "deploying checkout v2: live is v1 in checkout-a (slot a); the new release goes to checkout-b",
                ],
            ),
            (
                Event::Step {
                    action: Action::JoinRouter {
                        target_group: tg("checkout-b"),
                        live: tg("checkout-a"),
                    },
                },
                &[
                    "adding checkout-b to the router at weight 0, so the load balancer health-checks it",
                ],
            ),
            (
                Event::Step {
                    action: Action::CreateFleet(green.clone()),
                },
                &["creating fleet checkout-v2 as a twin of checkout-blue, attached to checkout-b"],
            ),
            (
                Event::Step {
                    action: Action::RetireFleet {
                        fleet: fleet("checkout-v0"),
                        release: "v0".into(),
                        phase: Some(Phase::Warm),
                    },
                },
                &["retiring fleet checkout-v0 (release v0, warm) from the idle slot"],
            ),
            (
                Event::Step {
                    action: Action::MarkWarm {
                        fleet: fleet("checkout-blue"),
                        release: "v1".into(),
                        until,
                        suspend: vec!["AlarmNotification".into()],
                    },
                },
                &[
                    "keeping checkout-blue (release v1) warm at its capacity (suspending AlarmNotification) until 2026-11-18T11:06:40Z",
                ],
            ),
            (
                Event::Health {
                    fleet: fleet("checkout-v2"),
                    desired: 4,
                    in_service: 4,
                    healthy: 3,
                    summary: "3/4 healthy, 1 initial (Elb.RegistrationInProgress)".into(),
                },
                &["green checkout-v2: 3/4 healthy, 1 initial (Elb.RegistrationInProgress)"],
            ),
            (
                Event::ReleaseFailed {
                    release: "v2".into(),
                    reasons: vec!["not healthy in time: 0/2 healthy".into()],
                },
                &[
                    "✗ release v2 failed; traffic stayed on the previous release",
                    "  not healthy in time: 0/2 healthy",
                ],
            ),
            (
                Event::Released {
                    release: "v2".into(),
                    slot: Slot::B,
                    flipped: false,
                },
                &["✓ release v2 was already live (slot b); nothing to do"],
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(describe(&event), expected, "{event:?}");
        }
    }

    #[test]
    fn json_events_are_tagged_objects() {
        let event = Event::Step {
            action: Action::Flip {
                to: tg("checkout-b"),
                from: tg("checkout-a"),
                fleet: FleetName::new("checkout-v2"),
                release: "v2".into(),
            },
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["event"], "step");
        assert_eq!(value["action"], "flip");
        assert_eq!(value["fleet"], "checkout-v2");
        assert_eq!(value["to"], tg("checkout-b").as_str());
    }
}
