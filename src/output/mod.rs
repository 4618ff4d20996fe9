//! How results reach people (aligned text, progress lines) and machines (JSON).

pub mod cleanup;
pub mod human;
pub mod json;

use clap::ValueEnum;

use crate::engine::events::Reporter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Progress lines and tables for a terminal.
    Human,
    /// One JSON object per line (events), or one object (status, validate).
    Json,
}

pub fn reporter(format: Format) -> Box<dyn Reporter> {
    match format {
        Format::Human => Box::new(human::HumanReporter::new()),
        Format::Json => Box::new(json::JsonReporter),
    }
}
