//! JSON for pipelines: one event object per line while a command runs.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::engine::events::{Event, Reporter};

pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn report(&mut self, event: &Event) {
        print_event(event);
    }
}

/// When the process started, for `elapsed_ms`; set by [`mark_start`] first thing in `main`.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Starts the clock events' `elapsed_ms` counts from.
pub fn mark_start() {
    STARTED.get_or_init(Instant::now);
}

/// Prints an event (an object) as one line, with `time` (RFC 3339, milliseconds, UTC) and
/// `elapsed_ms` (since the process started) added: when it happened, and how long in.
pub fn print_event<T: Serialize>(event: &T) {
    let mut value = serde_json::to_value(event).expect("output types serialize");
    if let Some(map) = value.as_object_mut() {
        let started = *STARTED.get_or_init(Instant::now);
        map.insert(
            "time".into(),
            humantime::format_rfc3339_millis(SystemTime::now())
                .to_string()
                .into(),
        );
        map.insert(
            "elapsed_ms".into(),
            u64::try_from(started.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .into(),
        );
    }
    print_line(&value);
}

/// Prints `value` as one line of JSON on stdout, flushed so a pipeline sees it at once.
pub fn print_line<T: Serialize>(value: &T) {
    let line = serde_json::to_string(value).expect("output types serialize");
    let mut out = std::io::stdout().lock();
    // A closed pipe is the reader's choice; nothing useful to do about it here.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
