//! The live part of human output while a command waits.
//!
//! On a terminal, a progress line (an indicatif spinner) says what the wait is about: green's
//! healthy/total, or the canary step and its weight, how long the wait has lasted and how long
//! is left before its deadline. Permanent lines (steps, events) print above it, and it is gone
//! when the wait ends. Elsewhere (a CI log, a pipe) there is no line to redraw: a heartbeat line
//! says the same at least every 30 s, so a CI service's no-output limit does not end the run.
//!
//! Where it writes is injected ([`Progress::terminal`] with any [`TermLike`],
//! [`Progress::plain`] with any writer), so tests drive it on a fake clock; the real binary uses
//! [`Progress::stdout`].
//!
//! `greenlight status --watch` is drawn here too ([`StatusView`]).

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

use super::Format;
use super::style::{self, paint};
use crate::core::decide::{Wait, WaitReason};
use crate::core::tags::timestamp;
use crate::engine::events::Event;
use crate::engine::status::{StatusReport, WatchRead};

/// While waiting, a heartbeat line is due when nothing was printed for this long. The driver
/// ticks at least every [`crate::engine::events::TICK_EVERY`] (5 s) while it sleeps, so on
/// its clock a heartbeat follows the previous line within 30 s.
pub const HEARTBEAT_DUE: Duration = Duration::from_secs(25);

/// The backstop for a real run: a poll can take longer than a tick (an AWS call has up to
/// 40 s), so a thread watching the wall clock prints the heartbeat when no tick did by then.
pub const HEARTBEAT_LATEST: Duration = Duration::from_secs(29);

/// How often a terminal's progress line redraws in a real run (the spinner, the times).
const REDRAW_EVERY: Duration = Duration::from_millis(125);

/// The wait being shown, and when it was seen.
#[derive(Debug, Clone)]
struct Waiting {
    /// What the wait is about, without its numbers: a change of subject restarts `since`.
    key: String,
    wait: Wait,
    /// When this wait began (the command's clock).
    since: SystemTime,
    /// The last tick, on the command's clock and on the wall clock: in a real run the time
    /// between two ticks is extrapolated for the redraws in between.
    seen: SystemTime,
    seen_at: Instant,
}

impl Waiting {
    fn now(&self, live: bool) -> SystemTime {
        if live {
            self.seen + self.seen_at.elapsed()
        } else {
            self.seen
        }
    }
}

fn subject_key(wait: &Wait) -> String {
    match &wait.why {
        WaitReason::Health { fleet, .. } => format!("health {fleet}"),
        WaitReason::Pause { release, step, .. } => format!("pause {release} {step}"),
        WaitReason::Gate { release, step, .. } => format!("gate {release} {step}"),
        WaitReason::Analysis { release, step, .. } => format!("analysis {release} {step}"),
        WaitReason::Handover { release, .. } => format!("handover {release}"),
    }
}

/// A duration as people read it in a progress line: `45s`, `1m30s`, `2h05m`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// What a wait is about (`green checkout-v2: 1/2 healthy`, `step 2/4 at 25%: …`) and its
/// times (`1m30s elapsed, 8m30s left`), at `now`, for a wait that began at `since`.
pub fn wait_summary(wait: &Wait, since: SystemTime, now: SystemTime) -> (String, String) {
    let elapsed = format!(
        "{} elapsed",
        short(now.duration_since(since).unwrap_or_default())
    );
    let left = wait
        .until
        .map(|until| short(until.duration_since(now).unwrap_or_default()));
    match &wait.why {
        WaitReason::Health { fleet, health } => (
            format!("green {fleet}: {}", health.progress()),
            match left {
                Some(left) => format!("{elapsed}, {left} left"),
                None => elapsed,
            },
        ),
        WaitReason::Pause {
            step, of, weight, ..
        } => (
            format!("step {step}/{of} at {weight}: paused"),
            match left {
                Some(left) => format!("{elapsed}, next step in {left}"),
                None => elapsed,
            },
        ),
        WaitReason::Gate {
            step, of, weight, ..
        } => (
            format!("step {step}/{of} at {weight}: waiting for `greenlight promote`"),
            elapsed,
        ),
        WaitReason::Analysis {
            step,
            of,
            weight,
            verdict,
            ..
        } => (
            format!("step {step}/{of} at {weight}: analysis {verdict}; waiting for more requests"),
            match left {
                Some(left) => format!("{elapsed}, {left} left"),
                None => elapsed,
            },
        ),
        WaitReason::Handover { release, .. } => (
            format!("the running deploy to stop {release}"),
            match left {
                Some(left) => format!("{elapsed}, gives up in {left}"),
                None => elapsed,
            },
        ),
    }
}

/// The heartbeat line (without the time prefix).
fn heartbeat(waiting: &Waiting, now: SystemTime) -> String {
    let (subject, times) = wait_summary(&waiting.wait, waiting.since, now);
    format!(
        "{} {subject}, {}",
        paint(style::WAIT, "… still waiting:"),
        paint(style::DIM, &times)
    )
}

/// The progress line's text (after the spinner).
fn bar_text(waiting: &Waiting, now: SystemTime) -> String {
    let (subject, times) = wait_summary(&waiting.wait, waiting.since, now);
    format!("{subject} {}", paint(style::DIM, &format!("· {times}")))
}

/// `text` as it should be written: with its styles when colour is on, without otherwise.
fn visible(color: bool, text: &str) -> String {
    if color {
        text.to_owned()
    } else {
        anstream::adapter::strip_str(text).to_string()
    }
}

/// `[m:ss]` since `started`, dimmed: the prefix of every line of a command's output.
pub fn prefix(started: SystemTime, now: SystemTime) -> String {
    let elapsed = now.duration_since(started).unwrap_or_default().as_secs();
    paint(
        style::DIM,
        &format!("[{:>2}:{:02}]", elapsed / 60, elapsed % 60),
    )
}

/// Whether logs (`-v`, `RUST_LOG`: a tracing subscriber is installed) go to a terminal on
/// stderr, where they would land in the middle of a line being redrawn on stdout.
fn logs_on_terminal() -> bool {
    tracing::dispatcher::has_been_set() && std::io::stderr().is_terminal()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not silence the output.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a terminal's drawing goes.
#[derive(Clone)]
pub enum Screen {
    /// The process's stdout, a terminal.
    Stdout,
    /// A terminal stand-in (tests: [`CaptureTerm`]).
    Term(Arc<dyn TermLike>),
}

impl fmt::Debug for Screen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Screen::Stdout => f.write_str("Screen::Stdout"),
            Screen::Term(_) => f.write_str("Screen::Term"),
        }
    }
}

impl Screen {
    fn draw_target(&self) -> ProgressDrawTarget {
        match self {
            Screen::Stdout => ProgressDrawTarget::stdout(),
            Screen::Term(term) => ProgressDrawTarget::term_like(Box::new(SharedTerm(term.clone()))),
        }
    }

    /// Writes whole lines where no progress line is drawn.
    fn write_lines(&self, lines: &[String]) {
        match self {
            Screen::Stdout => {
                let mut out = super::stdout().lock();
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            Screen::Term(term) => {
                for line in lines {
                    let _ = term.write_line(line);
                }
                let _ = term.flush();
            }
        }
    }
}

/// An `Arc`'d terminal handed to indicatif, which wants a box of its own.
#[derive(Debug)]
struct SharedTerm(Arc<dyn TermLike>);

impl TermLike for SharedTerm {
    fn width(&self) -> u16 {
        self.0.width()
    }
    fn height(&self) -> u16 {
        self.0.height()
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

/// What the heartbeat thread and the command share.
struct Shared {
    waiting: Option<Waiting>,
    /// When the last line was printed (the command's clock).
    last_line: SystemTime,
    /// The plain writer (not on a terminal).
    out: Option<anstream::AutoStream<Box<dyn Write + Send>>>,
    started: SystemTime,
}

impl Shared {
    fn write(&mut self, lines: &[String], now: SystemTime) {
        if let Some(out) = &mut self.out {
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
        self.last_line = now;
    }

    /// The heartbeat, if one is due at `now` (`after` since the last line).
    fn heartbeat(&mut self, now: SystemTime, after: Duration) {
        let Some(waiting) = &self.waiting else {
            return;
        };
        if now.duration_since(self.last_line).unwrap_or_default() < after {
            return;
        }
        let line = format!("{} {}", prefix(self.started, now), heartbeat(waiting, now));
        self.write(&[line], now);
    }
}

enum Kind {
    /// A terminal: the progress line, while there is a wait.
    Terminal {
        screen: Screen,
        bar: Option<ProgressBar>,
    },
    /// A log or a pipe: heartbeat lines.
    Plain,
}

/// The live display of a command's waits, and the writer its lines go through.
pub struct Progress {
    started: SystemTime,
    color: bool,
    /// A real run: redraws and heartbeats also happen between ticks, on the wall clock.
    live: bool,
    shared: Arc<Mutex<Shared>>,
    kind: Kind,
    /// Dropping it stops the heartbeat thread (a real run, not on a terminal).
    watchdog: Option<mpsc::Sender<()>>,
}

impl Progress {
    /// The process's stdout: a progress line on a terminal, heartbeat lines otherwise; coloured
    /// as `--color` and the environment say. Logs on the same terminal (`-v`, `RUST_LOG`) would
    /// land in the middle of a progress line: with them, lines and heartbeats only.
    pub fn stdout(started: SystemTime) -> Progress {
        let color = super::stdout_color();
        let mut progress = if std::io::stdout().is_terminal() && !logs_on_terminal() {
            Progress::terminal_on(Screen::Stdout, color, started)
        } else {
            Progress::plain(Box::new(std::io::stdout()), color, started)
        };
        progress.live = true;
        progress
    }

    /// A terminal stand-in (tests): the progress line is drawn at each tick, not between.
    pub fn terminal(term: Arc<dyn TermLike>, color: bool, started: SystemTime) -> Progress {
        Progress::terminal_on(Screen::Term(term), color, started)
    }

    fn terminal_on(screen: Screen, color: bool, started: SystemTime) -> Progress {
        Progress {
            started,
            color,
            live: false,
            shared: Arc::new(Mutex::new(Shared {
                waiting: None,
                last_line: started,
                out: None,
                started,
            })),
            kind: Kind::Terminal { screen, bar: None },
            watchdog: None,
        }
    }

    /// Plain lines into `out` (a log, a pipe, a test's buffer); heartbeats at ticks.
    pub fn plain(out: Box<dyn Write + Send>, color: bool, started: SystemTime) -> Progress {
        let choice = forced(color);
        Progress {
            started,
            color,
            live: false,
            shared: Arc::new(Mutex::new(Shared {
                waiting: None,
                last_line: started,
                out: Some(anstream::AutoStream::new(out, choice)),
                started,
            })),
            kind: Kind::Plain,
            watchdog: None,
        }
    }

    /// Whether this draws a progress line (a terminal) rather than heartbeat lines.
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind, Kind::Terminal { .. })
    }

    /// Prints `lines` (permanent: a step, an event), each after the `[m:ss]` prefix. A line
    /// `during_wait` (green's health changed, a warning) goes above the progress line; any
    /// other ends the wait and its progress line.
    pub fn lines(&mut self, lines: &[String], now: SystemTime, during_wait: bool) {
        let prefix = prefix(self.started, now);
        let lines: Vec<String> = lines.iter().map(|l| format!("{prefix} {l}")).collect();
        if !during_wait {
            lock(&self.shared).waiting = None;
        }
        match &mut self.kind {
            Kind::Plain => lock(&self.shared).write(&lines, now),
            Kind::Terminal { screen, bar } => {
                let lines: Vec<String> = lines.iter().map(|l| visible(self.color, l)).collect();
                match bar {
                    Some(shown) if during_wait => shown.println(lines.join("\n")),
                    _ => {
                        if let Some(shown) = bar.take() {
                            shown.finish_and_clear();
                        }
                        screen.write_lines(&lines);
                    }
                }
            }
        }
    }

    /// The command is still waiting (`wait`, at `now`): redraws the progress line, or prints
    /// a heartbeat when one is due.
    pub fn tick(&mut self, wait: &Wait, now: SystemTime) {
        {
            let mut shared = lock(&self.shared);
            let key = subject_key(wait);
            let since = match &shared.waiting {
                Some(w) if w.key == key => w.since,
                _ => now,
            };
            shared.waiting = Some(Waiting {
                key,
                wait: wait.clone(),
                since,
                seen: now,
                seen_at: Instant::now(),
            });
            if let Kind::Plain = self.kind {
                shared.heartbeat(now, HEARTBEAT_DUE);
            }
        }
        if self.live && self.watchdog.is_none() && matches!(self.kind, Kind::Plain) {
            self.watchdog = Some(self.start_watchdog());
        }
        if let Kind::Terminal { screen, bar } = &mut self.kind {
            // Never call into the bar holding `shared`: its drawing locks it.
            let shown =
                bar.get_or_insert_with(|| new_bar(screen, &self.shared, self.color, self.live));
            shown.tick();
        }
    }

    /// Clears the progress line, if one is shown.
    pub fn finish(&mut self) {
        lock(&self.shared).waiting = None;
        if let Kind::Terminal { bar, .. } = &mut self.kind
            && let Some(shown) = bar.take()
        {
            shown.finish_and_clear();
        }
        self.watchdog = None;
    }

    fn start_watchdog(&self) -> mpsc::Sender<()> {
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            loop {
                match stopped.recv_timeout(Duration::from_secs(1)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let mut shared = lock(&shared);
                let Some(now) = shared.waiting.as_ref().map(|w| w.now(true)) else {
                    continue;
                };
                shared.heartbeat(now, HEARTBEAT_LATEST);
            }
        });
        stop
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn new_bar(screen: &Screen, shared: &Arc<Mutex<Shared>>, color: bool, live: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, screen.draw_target());
    let shared = shared.clone();
    let text = move |_: &ProgressState, w: &mut dyn fmt::Write| {
        let shared = lock(&shared);
        if let Some(waiting) = &shared.waiting {
            let _ = w.write_str(&visible(color, &bar_text(waiting, waiting.now(live))));
        }
    };
    let style = ProgressStyle::with_template("{spinner} {wait}")
        .expect("a valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
        .with_key("wait", text);
    bar.set_style(style);
    if live {
        bar.enable_steady_tick(REDRAW_EVERY);
    }
    bar
}

/// A terminal stand-in for tests: keeps what a terminal would show (a screen of lines and a
/// cursor) and every write, so a test sees both the frames drawn and what is left at the end.
#[derive(Debug)]
pub struct CaptureTerm {
    width: u16,
    state: Mutex<CaptureState>,
}

#[derive(Debug, Default)]
struct CaptureState {
    screen: Vec<String>,
    row: usize,
    writes: Vec<String>,
}

impl CaptureState {
    fn line(&mut self) -> &mut String {
        while self.screen.len() <= self.row {
            self.screen.push(String::new());
        }
        &mut self.screen[self.row]
    }
}

impl CaptureTerm {
    pub fn new(width: u16) -> Arc<CaptureTerm> {
        Arc::new(CaptureTerm {
            width,
            state: Mutex::new(CaptureState::default()),
        })
    }

    /// The lines on the screen now, without trailing blanks (trailing empty lines left out).
    pub fn screen(&self) -> Vec<String> {
        let state = lock(&self.state);
        let mut lines: Vec<String> = state
            .screen
            .iter()
            .map(|l| l.trim_end().to_owned())
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Every string written, in order (each a frame of the progress line, or a line).
    pub fn writes(&self) -> Vec<String> {
        lock(&self.state).writes.clone()
    }
}

impl TermLike for CaptureTerm {
    fn width(&self) -> u16 {
        self.width
    }
    fn height(&self) -> u16 {
        50
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.row = state.row.saturating_sub(n);
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        lock(&self.state).row += n;
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.writes.push(s.to_owned());
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                state.row += 1;
            }
            state.line().push_str(part);
        }
        state.row += 1;
        state.line();
        Ok(())
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        let mut state = lock(&self.state);
        if s == "\r" {
            // Back to the start of the line: what follows overwrites it.
            state.line().clear();
            return Ok(());
        }
        state.writes.push(s.to_owned());
        state.line().push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> io::Result<()> {
        lock(&self.state).line().clear();
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer whose bytes a test reads back while the writer is in use elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn new() -> Capture {
        Capture::default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `greenlight status --watch`: on a terminal the status redrawn in place every interval;
/// elsewhere a new block (human, under a timestamp) or object (JSON) only when it changed.
pub struct StatusView {
    format: Format,
    color: bool,
    interval: Duration,
    target: ViewTarget,
    /// The last report shown, without what changes on its own (the lock's renewals).
    last: Option<StatusReport>,
    /// The last report, for redrawing it with a read failure under it.
    shown: Option<StatusReport>,
}

enum ViewTarget {
    Terminal {
        screen: Screen,
        bar: Option<ProgressBar>,
    },
    Plain(anstream::AutoStream<Box<dyn Write + Send>>),
    /// JSON on stdout, each object with `time` and `elapsed_ms` like every event.
    Json,
}

impl StatusView {
    /// The process's stdout.
    pub fn stdout(format: Format, interval: Duration) -> StatusView {
        let color = super::stdout_color();
        let target = match format {
            Format::Json => ViewTarget::Json,
            // Logs on the same terminal would land in the middle of the redrawn block.
            Format::Human if std::io::stdout().is_terminal() && !logs_on_terminal() => {
                ViewTarget::Terminal {
                    screen: Screen::Stdout,
                    bar: None,
                }
            }
            Format::Human => ViewTarget::Plain(anstream::AutoStream::new(
                Box::new(std::io::stdout()),
                forced(color),
            )),
        };
        StatusView {
            format,
            color,
            interval,
            target,
            last: None,
            shown: None,
        }
    }

    /// A terminal stand-in (tests).
    pub fn terminal(term: Arc<dyn TermLike>, color: bool, interval: Duration) -> StatusView {
        StatusView {
            format: Format::Human,
            color,
            interval,
            target: ViewTarget::Terminal {
                screen: Screen::Term(term),
                bar: None,
            },
            last: None,
            shown: None,
        }
    }

    /// Plain human text into `out` (tests, logs).
    pub fn plain(out: Box<dyn Write + Send>, color: bool, interval: Duration) -> StatusView {
        let choice = forced(color);
        StatusView {
            format: Format::Human,
            color,
            interval,
            target: ViewTarget::Plain(anstream::AutoStream::new(out, choice)),
            last: None,
            shown: None,
        }
    }

    /// Shows one read of the watch, made at `now`.
    pub fn show(&mut self, read: WatchRead<'_>, now: SystemTime) {
        match read {
            WatchRead::Report(report) => {
                let changed = self.last.as_ref() != Some(&steady(report));
                if changed {
                    self.last = Some(steady(report));
                }
                self.shown = Some(report.clone());
                match &mut self.target {
                    ViewTarget::Terminal { .. } => {
                        let footer = paint(
                            style::DIM,
                            &format!(
                                "every {} · read at {} · Ctrl-C to stop",
                                short(self.interval),
                                timestamp(now)
                            ),
                        );
                        self.draw(report, now, &footer);
                    }
                    ViewTarget::Plain(out) if changed => {
                        let text = super::human::status_text(report, now);
                        let _ = writeln!(
                            out,
                            "{}",
                            paint(style::DIM, &format!("[{}]", timestamp(now)))
                        );
                        let _ = writeln!(out, "{text}");
                        let _ = out.flush();
                    }
                    ViewTarget::Json if changed => super::json::print_event(report),
                    ViewTarget::Plain(_) | ViewTarget::Json => {}
                }
            }
            WatchRead::Failed(failure) => {
                let message = format!("status read failed ({failure}); trying again");
                match &mut self.target {
                    ViewTarget::Terminal { .. } => {
                        let footer = paint(
                            style::WAIT,
                            &format!("{message} · {} · Ctrl-C to stop", timestamp(now)),
                        );
                        if let Some(report) = self.shown.clone() {
                            self.draw(&report, now, &footer);
                        }
                    }
                    ViewTarget::Plain(out) => {
                        let _ = writeln!(
                            out,
                            "{} {} {message}",
                            paint(style::DIM, &format!("[{}]", timestamp(now))),
                            paint(style::WAIT, "warning:")
                        );
                        let _ = out.flush();
                    }
                    ViewTarget::Json => super::json::print_event(&Event::Warning { message }),
                }
            }
        }
    }

    fn draw(&mut self, report: &StatusReport, now: SystemTime, footer: &str) {
        let ViewTarget::Terminal { screen, bar } = &mut self.target else {
            return;
        };
        let text = format!("{}\n{footer}", super::human::status_text(report, now));
        let shown = bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, screen.draw_target());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            bar
        });
        shown.set_message(visible(self.color, &text));
    }

    /// Leaves the last status on the screen.
    pub fn finish(&mut self) {
        if let ViewTarget::Terminal { bar, .. } = &mut self.target
            && let Some(shown) = bar.take()
        {
            shown.abandon();
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }
}

impl Drop for StatusView {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `report` without what changes while nothing happens: the lock's expiry, renewed by its
/// holder every so often.
fn steady(report: &StatusReport) -> StatusReport {
    let mut report = report.clone();
    if let Some(lock) = &mut report.lock {
        lock.expires_at = SystemTime::UNIX_EPOCH;
    }
    report
}

/// The stream setting for output whose colour was already decided (`--color`, the terminal).
fn forced(color: bool) -> anstream::ColorChoice {
    if color {
        anstream::ColorChoice::Always
    } else {
        anstream::ColorChoice::Never
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short() {
        assert_eq!(short(Duration::from_secs(0)), "0s");
        assert_eq!(short(Duration::from_secs(59)), "59s");
        assert_eq!(short(Duration::from_secs(90)), "1m30s");
        assert_eq!(short(Duration::from_secs(3599)), "59m59s");
        assert_eq!(short(Duration::from_secs(7500)), "2h05m");
    }
}
