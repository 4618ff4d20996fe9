//! How results reach people (aligned text, progress lines) and machines (JSON).

pub mod cleanup;
pub mod human;
pub mod json;
pub mod progress;

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
        Format::Human => Box::new(human::HumanReporter::stdout()),
        Format::Json => Box::new(json::JsonReporter),
    }
}

/// Applies `--color` to everything written through anstream (stdout and stderr): `auto` colours
/// a terminal unless `NO_COLOR` is set (or `TERM=dumb`, or `CLICOLOR=0`; `CLICOLOR_FORCE`
/// forces it), `always` and `never` say it all.
/// `None` is `auto`.
pub fn set_color(forced: Option<bool>) {
    let choice = match forced {
        None => anstream::ColorChoice::Auto,
        Some(true) => anstream::ColorChoice::Always,
        Some(false) => anstream::ColorChoice::Never,
    };
    choice.write_global();
}

/// Whether human output on stdout is coloured, as `--color` and the environment decide.
pub fn stdout_color() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// Human output on stdout, with styles kept or stripped as `--color` decides.
pub fn stdout() -> anstream::AutoStream<std::io::Stdout> {
    anstream::stdout()
}

/// The few styles human output uses: green for done, yellow for waits and warnings, red for
/// failures, dim for what is secondary (times, hints).
pub mod style {
    use anstyle::{AnsiColor, Style};

    pub const OK: Style = AnsiColor::Green.on_default();
    pub const WAIT: Style = AnsiColor::Yellow.on_default();
    pub const FAIL: Style = AnsiColor::Red.on_default();
    pub const DIM: Style = Style::new().dimmed();
    pub const BOLD: Style = Style::new().bold();

    /// `text` in `style`; the stream it is written through strips it when colour is off.
    pub fn paint(style: Style, text: &str) -> String {
        if text.is_empty() || style == Style::new() {
            return text.to_owned();
        }
        format!("{style}{text}{style:#}")
    }
}
