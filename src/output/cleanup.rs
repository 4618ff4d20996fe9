//! What `cleanup` prints: one line per decision and per action for people, one JSON object per
//! event for machines, and a summary at the end.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::core::cleanup::{CleanupAction, Decision, Item};
use crate::engine::cleanup::{CleanupEvent, CleanupReport, CleanupSink, Outcome};

use super::Format;
use super::json::print_event;
use super::style::{self, paint};

/// The colour of an event's line: done green, waiting or skipped yellow, failed red.
fn tone(event: &CleanupEvent) -> anstyle::Style {
    match event {
        CleanupEvent::CleanupService { outcome, .. } => match outcome {
            Outcome::Done => style::OK,
            Outcome::Failed { .. } => style::FAIL,
            Outcome::Pending | Outcome::Locked { .. } | Outcome::NoRouter => style::WAIT,
            Outcome::NothingDue => anstyle::Style::new(),
        },
        CleanupEvent::StaleLock { stale, dry_run } if !dry_run && !stale.removed => style::FAIL,
        _ => anstyle::Style::new(),
    }
}

pub struct CleanupPrinter {
    format: Format,
    started: Instant,
    /// When the last line was printed: a log gets a heartbeat rather than 30 s of silence.
    last_line: std::sync::Mutex<Instant>,
}

impl CleanupPrinter {
    pub fn new(format: Format) -> CleanupPrinter {
        CleanupPrinter {
            format,
            started: Instant::now(),
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn prefix(&self) -> String {
        let elapsed = self.started.elapsed().as_secs();
        paint(
            style::DIM,
            &format!("[{:>2}:{:02}]", elapsed / 60, elapsed % 60),
        )
    }
}

/// A heartbeat is due when the next look would come more than this after the last line.
const HEARTBEAT: Duration = Duration::from_secs(25);

/// Whether to print a line now, `since_last` after the last one, when the next chance comes
/// `next` from now: with sleeps of at most 25 s, lines are never more than 30 s apart (plus
/// one look's latency).
fn heartbeat_due(since_last: Duration, next: Duration) -> bool {
    since_last + next >= HEARTBEAT
}

impl CleanupSink for CleanupPrinter {
    fn event(&self, event: &CleanupEvent) {
        match self.format {
            Format::Json => print_event(event),
            Format::Human => {
                let prefix = self.prefix();
                let tone = tone(event);
                let mut out = super::stdout().lock();
                for line in describe(event) {
                    let _ = writeln!(out, "{prefix} {}", paint(tone, &line));
                }
                let _ = out.flush();
                *self.last_line.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            }
        }
    }

    fn waiting(&self, service: &str, fleets: usize, next: Duration) {
        if self.format != Format::Human {
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if !heartbeat_due(last.elapsed(), next) {
            return;
        }
        let line = format!(
            "… still waiting: cleanup of {service}: {fleets} fleet{} draining, {} elapsed",
            if fleets == 1 { "" } else { "s" },
            humantime::format_duration(Duration::from_secs(self.started.elapsed().as_secs()))
        );
        let mut out = super::stdout().lock();
        let _ = writeln!(out, "{} {}", self.prefix(), paint(style::WAIT, &line));
        let _ = out.flush();
        *last = Instant::now();
    }
}

fn action_line(action: &CleanupAction) -> String {
    match action {
        CleanupAction::ScaleDown {
            fleet, capacity, ..
        } => format!(
            "scale fleet {fleet} to zero (from {}/{}/{} min/desired/max), then delete it",
            capacity.min, capacity.desired, capacity.max
        ),
        CleanupAction::DeleteFleet { fleet, .. } => format!("delete fleet {fleet}"),
        CleanupAction::DeleteRule { rule, release } => {
            format!("delete test rule {rule} of release {release}")
        }
        CleanupAction::DeleteVersions {
            template_id,
            versions,
        } => format!(
            "delete launch template {template_id} versions {}",
            versions
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn item_line(item: &Item, dry_run: bool) -> String {
    let subject = item.subject.describe();
    match &item.decision {
        Decision::Act { action, why } => {
            let verb = if dry_run { "would" } else { "will" };
            format!("{subject}: {why}; {verb} {}", action_line(action))
        }
        Decision::Wait { until, why } => match until {
            Some(until) => format!(
                "{subject}: {why}; not before {}",
                crate::core::tags::timestamp(*until)
            ),
            None => format!("{subject}: {why}; waiting"),
        },
        Decision::Keep { keep } => format!("{subject}: kept, {}", keep.describe()),
    }
}

/// The lines an event prints as, without the time prefix.
pub fn describe(event: &CleanupEvent) -> Vec<String> {
    match event {
        CleanupEvent::CleanupItem {
            service,
            dry_run,
            item,
        } => vec![format!("{service}: {}", item_line(item, *dry_run))],
        CleanupEvent::CleanupApplied { service, action } => {
            let done = match action {
                CleanupAction::ScaleDown { fleet, .. } => {
                    format!("scaled fleet {fleet} to zero; deleting it once its instances are gone")
                }
                CleanupAction::DeleteFleet { fleet, .. } => format!("deleted fleet {fleet}"),
                CleanupAction::DeleteRule { rule, .. } => format!("deleted test rule {rule}"),
                CleanupAction::DeleteVersions {
                    template_id,
                    versions,
                } => format!(
                    "deleted {} versions of launch template {template_id}",
                    versions.len()
                ),
            };
            vec![format!("{service}: {done}")]
        }
        CleanupEvent::StaleLock { stale, dry_run } => {
            let verb = match (dry_run, stale.removed) {
                (true, _) => "would remove",
                (false, true) => "removed",
                (false, false) => "could not remove",
            };
            vec![format!(
                "{}: {verb} a lock left by a run that is gone: {}",
                stale.service,
                stale.lock.describe()
            )]
        }
        CleanupEvent::CleanupService { service, outcome } => {
            let line = match outcome {
                Outcome::Done => "done".to_owned(),
                Outcome::NothingDue => "nothing due".to_owned(),
                Outcome::Pending => {
                    "still draining at the deadline; the next run finishes it".to_owned()
                }
                Outcome::Locked { holder } => format!("skipped: locked by {holder}"),
                Outcome::NoRouter => "skipped: its fleets do not name their router (made by an \
                                      older greenlight); run cleanup with --config"
                    .to_owned(),
                Outcome::Failed { message, .. } => format!("failed: {message}"),
            };
            vec![format!("{service}: {line}")]
        }
    }
}

/// The summary line (human) or the final `cleanup_done` event (JSON).
pub fn print_summary(report: &CleanupReport, format: Format) {
    match format {
        Format::Json => {
            let mut value = serde_json::to_value(report).expect("report serializes");
            if let Some(map) = value.as_object_mut() {
                map.insert("event".into(), "cleanup_done".into());
            }
            print_event(&value);
        }
        Format::Human => {
            let count = |f: &dyn Fn(&Outcome) -> bool| {
                report.services.iter().filter(|s| f(&s.outcome)).count()
            };
            let applied: usize = report.services.iter().map(|s| s.applied.len()).sum();
            let planned: usize = report
                .services
                .iter()
                .flat_map(|s| &s.items)
                .filter(|i| matches!(i.decision, Decision::Act { .. }))
                .count();
            let locked = count(&|o| matches!(o, Outcome::Locked { .. }));
            let failed = count(&|o| matches!(o, Outcome::Failed { .. }));
            let pending = count(&|o| matches!(o, Outcome::Pending));
            let mut line = format!("cleanup: {} services", report.services.len());
            if report.dry_run {
                line.push_str(&format!(
                    ", {planned} actions planned (dry run: nothing changed)"
                ));
            } else {
                line.push_str(&format!(", {applied} actions applied"));
            }
            for (n, what) in [
                (pending, "pending"),
                (locked, "skipped (locked)"),
                (failed, "failed"),
            ] {
                if n > 0 {
                    line.push_str(&format!(", {n} {what}"));
                }
            }
            anstream::println!("{line}");
        }
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;

    #[test]
    fn a_heartbeat_comes_before_the_silence_would_pass_25_seconds() {
        let s = Duration::from_secs;
        for (since_last, next, due) in [
            (s(0), s(5), false),
            (s(19), s(5), false),
            (s(20), s(5), true),
            (s(1), s(25), true),
            (s(0), s(24), false),
            (s(40), s(0), true),
        ] {
            assert_eq!(
                heartbeat_due(since_last, next),
                due,
                "{since_last:?} {next:?}"
            );
        }
    }
}
