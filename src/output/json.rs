//! JSON for pipelines: one event object per line while a command runs.

use std::io::Write;

use serde::Serialize;

use crate::engine::events::{Event, Reporter};

pub struct JsonReporter;

impl Reporter for JsonReporter {
    fn report(&mut self, event: &Event) {
        print_line(event);
    }
}

/// Prints `value` as one line of JSON on stdout, flushed so a pipeline sees it at once.
pub fn print_line<T: Serialize>(value: &T) {
    let line = serde_json::to_string(value).expect("output types serialize");
    let mut out = std::io::stdout().lock();
    // A closed pipe is the reader's choice; nothing useful to do about it here.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
