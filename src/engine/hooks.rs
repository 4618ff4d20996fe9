//! Running hooks: each command of a stage through `sh -c`, in order, with a timeout, its output
//! streamed to stderr with a prefix (bounded), and its last lines kept for the report.
//!
//! A hook's result is its shell's: it has passed or failed as soon as `sh` exits. Its output
//! pipes are read until then and for a short grace after, not until they close, since a
//! background process the hook started holds them open. Each hook leads its own process group,
//! so a hook stopped before its shell exited (its timeout, or greenlight dropping it: a second
//! signal, a panic) is stopped with everything it started.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::core::hooks::HookStage;

/// Lines of a hook's output streamed to stderr; the rest is counted, not shown.
pub const MAX_STREAMED_LINES: usize = 1000;
/// Characters of one line, streamed or kept; the rest of a longer line is dropped as it is read.
pub const MAX_LINE: usize = 500;
/// Lines kept for the report when a hook fails.
pub const LAST_LINES: usize = 10;
/// How long output is still read once a hook's shell has exited (or was killed): what it
/// already wrote is shown, without waiting on a background process that holds its pipes.
pub const OUTPUT_GRACE: Duration = Duration::from_millis(150);

/// How one hook command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HookOutcome {
    Passed,
    /// It exited with this status (or was killed by a signal: `None`, and `signal` says which).
    Failed {
        exit_code: Option<i32>,
        #[serde(skip)]
        signal: Option<i32>,
    },
    TimedOut {
        after_seconds: u64,
        #[serde(skip)]
        after: Duration,
    },
    /// `sh` could not be started (or waited on).
    NotStarted {
        error: String,
    },
}

/// One hook command's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookRun {
    /// `stage` (`pre_traffic`, `after_step`, `post_traffic`) and, after a step, `step`.
    #[serde(flatten)]
    pub stage: HookStage,
    pub command: String,
    #[serde(flatten)]
    pub outcome: HookOutcome,
    pub seconds: f64,
    /// The last lines it printed (stdout and stderr, in the order they came).
    pub last_lines: Vec<String>,
}

impl HookRun {
    pub fn passed(&self) -> bool {
        self.outcome == HookOutcome::Passed
    }

    /// Which hook failed and how it ended, in one line, for the release's failure reason. Its
    /// last lines are not repeated here: the run's failure adds them once (they are in
    /// `last_lines`, and the hook event carries them).
    pub fn failure(&self) -> String {
        let how = match &self.outcome {
            HookOutcome::Passed => "passed".to_owned(),
            HookOutcome::Failed {
                exit_code: Some(code),
                ..
            } => format!("exited {code}"),
            HookOutcome::Failed {
                exit_code: None,
                signal: Some(signal),
            } => format!("was killed by signal {signal}"),
            HookOutcome::Failed {
                exit_code: None,
                signal: None,
            } => "was killed by a signal".to_owned(),
            HookOutcome::TimedOut { after, .. } => {
                format!("timed out after {}", humantime::format_duration(*after))
            }
            HookOutcome::NotStarted { error } => format!("could not start: {error}"),
        };
        format!("hook `{}` ({}) {how}", self.command, self.stage)
    }
}

/// Runs `stage`'s commands in order until one fails; returns every run.
pub async fn run_stage(
    stage: HookStage,
    commands: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Vec<HookRun> {
    let mut runs = Vec::new();
    for command in commands {
        let run = run_one(stage, command, env, timeout).await;
        let passed = run.passed();
        runs.push(run);
        if !passed {
            break;
        }
    }
    runs
}

/// How the wait for a hook's shell ended.
enum Ended {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
}

async fn run_one(
    stage: HookStage,
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> HookRun {
    let started = Instant::now();
    let done = |outcome, last_lines| HookRun {
        stage,
        command: command.to_owned(),
        outcome,
        seconds: started.elapsed().as_secs_f64(),
        last_lines,
    };
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Should the group be gone already, the shell at least is not left behind.
        .kill_on_drop(true);
    // Its own process group, led by the shell: what the hook starts can be stopped with it.
    #[cfg(unix)]
    sh.process_group(0);
    let mut child = match sh.spawn() {
        Ok(child) => child,
        Err(e) => {
            return done(
                HookOutcome::NotStarted {
                    error: e.to_string(),
                },
                Vec::new(),
            );
        }
    };
    // Declared after `child`, so dropped before it: the group is killed while its leader is
    // not yet reaped, and its id cannot name anything else.
    let mut group = Group::led_by(child.id());
    let mut stdout = Pipe::new(child.stdout.take().expect("piped"));
    let mut stderr = Pipe::new(child.stderr.take().expect("piped"));
    let mut output = Output::new(format!("[{} {}]", stage.key(), command), |line: &str| {
        eprintln!("{line}")
    });

    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let ended = loop {
        tokio::select! {
            line = stdout.next_line(), if stdout.open => output.keep(line),
            line = stderr.next_line(), if stderr.open => output.keep(line),
            status = child.wait() => break Ended::Exited(status),
            () = &mut deadline => break Ended::TimedOut,
        }
    };
    let outcome = match ended {
        Ended::Exited(Ok(status)) => {
            // The shell exited and was reaped. A process it left running in the background is
            // not stopped, whether the hook passed or failed: it may be meant to outlive it
            // (a helper, a tunnel). Only a hook stopped before its shell exited loses its group.
            group.release();
            outcome_of(status)
        }
        Ended::Exited(Err(e)) => {
            // Not knowing whether the shell was reaped, its group id is not used.
            group.release();
            HookOutcome::NotStarted {
                error: e.to_string(),
            }
        }
        Ended::TimedOut => {
            group.kill();
            let _ = child.start_kill();
            let _ = child.wait().await;
            HookOutcome::TimedOut {
                after_seconds: timeout.as_secs(),
                after: timeout,
            }
        }
    };

    // What it wrote before its shell ended, still in the pipes.
    let grace = tokio::time::sleep(OUTPUT_GRACE);
    tokio::pin!(grace);
    while stdout.open || stderr.open {
        tokio::select! {
            line = stdout.next_line(), if stdout.open => output.keep(line),
            line = stderr.next_line(), if stderr.open => output.keep(line),
            () = &mut grace => break,
        }
    }
    if stdout.open || stderr.open {
        // A background process holds them: read on and discard, so its writes do not fail
        // while greenlight runs.
        tokio::spawn(async move {
            tokio::join!(stdout.drain(), stderr.drain());
        });
    }
    done(outcome, output.finish())
}

fn outcome_of(status: ExitStatus) -> HookOutcome {
    if status.success() {
        return HookOutcome::Passed;
    }
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal = None;
    HookOutcome::Failed {
        exit_code: status.code(),
        signal,
    }
}

/// One of a hook's output pipes, read line by line; a line holds at most [`MAX_LINE`]
/// characters in memory, however long the hook makes it.
struct Pipe<R> {
    reader: BufReader<R>,
    /// The line read so far (cut at its bound).
    line: Vec<u8>,
    open: bool,
}

/// Bytes of one line kept while reading: [`MAX_LINE`] characters of UTF-8 at most.
const MAX_LINE_BYTES: usize = MAX_LINE * 4;

impl<R: AsyncRead + Unpin> Pipe<R> {
    fn new(reader: R) -> Pipe<R> {
        Pipe {
            reader: BufReader::new(reader),
            line: Vec::new(),
            open: true,
        }
    }

    /// The next line, without its line ending, or `None` once the pipe closed. Cancel-safe: a
    /// line read in part stays in `self.line`.
    async fn next_line(&mut self) -> Option<String> {
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => &[],
            };
            if available.is_empty() {
                self.open = false;
                return (!self.line.is_empty()).then(|| self.take());
            }
            let (chunk, used, ended) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..end], end + 1, true),
                None => (available, available.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.reader.consume(used);
            if ended {
                return Some(self.take());
            }
        }
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.line);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8_lossy(&bytes)
            .chars()
            .take(MAX_LINE)
            .collect()
    }

    /// Reads to the end, discarding.
    async fn drain(&mut self) {
        while self.open {
            self.next_line().await;
        }
    }
}

/// A hook's output: streamed to `sink` with a prefix (the first [`MAX_STREAMED_LINES`] lines),
/// its last [`LAST_LINES`] kept.
struct Output<F: FnMut(&str)> {
    prefix: String,
    sink: F,
    tail: VecDeque<String>,
    streamed: usize,
    hidden: usize,
}

impl<F: FnMut(&str)> Output<F> {
    fn new(prefix: String, sink: F) -> Output<F> {
        Output {
            prefix,
            sink,
            tail: VecDeque::new(),
            streamed: 0,
            hidden: 0,
        }
    }

    fn keep(&mut self, line: Option<String>) {
        let Some(line) = line else {
            return;
        };
        if self.streamed < MAX_STREAMED_LINES {
            (self.sink)(&format!("{} {line}", self.prefix));
            self.streamed += 1;
        } else {
            self.hidden += 1;
        }
        if self.tail.len() == LAST_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// Says how many lines were not shown; returns the last lines.
    fn finish(mut self) -> Vec<String> {
        if self.hidden > 0 {
            (self.sink)(&format!(
                "{} … {} more lines not shown",
                self.prefix, self.hidden
            ));
        }
        self.tail.into_iter().collect()
    }
}

/// The process group a hook's shell leads, while the shell is not reaped: killed whole if the
/// hook is stopped before its shell exited (at its timeout; when its future is dropped, as on a
/// panic; when greenlight exits meanwhile, as on a second signal: see [`running`]).
struct Group {
    pgid: Option<i32>,
}

impl Group {
    /// `pid` is the shell's, taken right after it was spawned (`None` if it is gone already).
    fn led_by(pid: Option<u32>) -> Group {
        // Never 0 or 1, whose negatives would name greenlight's own group or every process.
        let pgid = pid
            .and_then(|pid| i32::try_from(pid).ok())
            .filter(|&pid| pid > 1);
        if let Some(pgid) = pgid {
            running::add(pgid);
        }
        Group { pgid }
    }

    /// The shell was reaped (or may have been): the group's id is not used again.
    fn release(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            running::remove(pgid);
        }
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            running::remove(pgid);
            kill_group(pgid);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to every process of the hook group `pgid`.
fn kill_group(pgid: i32) {
    assert!(pgid > 1, "not a hook's process group: {pgid}");
    #[cfg(unix)]
    // SAFETY: `kill` takes plain integers; `-pgid` names only the hook's group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The groups of hooks running now, killed if the process exits while they run:
/// `std::process::exit` (greenlight's answer to a second signal) runs no destructors, but it
/// runs `atexit` handlers.
mod running {
    use std::sync::{Mutex, Once, PoisonError};

    static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
    static AT_EXIT: Once = Once::new();

    pub(super) fn add(pgid: i32) {
        AT_EXIT.call_once(|| {
            #[cfg(unix)]
            // SAFETY: registers a plain function that only reads a static.
            unsafe {
                libc::atexit(kill_all);
            }
        });
        GROUPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pgid);
    }

    pub(super) fn remove(pgid: i32) {
        GROUPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&g| g != pgid);
    }

    #[cfg(unix)]
    extern "C" fn kill_all() {
        let groups = match GROUPS.try_lock() {
            Ok(groups) => groups,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Held mid-update by another thread: better to exit than to wait on it.
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        for &pgid in groups.iter() {
            super::kill_group(pgid);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::core::plan::StepNumber;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn hook(command: &str, timeout: Duration) -> impl std::future::Future<Output = HookRun> {
        let command = command.to_owned();
        async move {
            run_one(
                HookStage::PreTraffic,
                &command,
                &[("GREENLIGHT_RELEASE".into(), "v3".into())],
                timeout,
            )
            .await
        }
    }

    fn run(command: &str, timeout: Duration) -> HookRun {
        block_on(hook(command, timeout))
    }

    /// The pid a hook wrote to `path`.
    fn pid_in(path: &std::path::Path) -> i32 {
        let pid: i32 = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap();
        assert!(pid > 1, "{pid}");
        pid
    }

    /// Whether process `pid` is gone: no such process (ESRCH), or a zombie (killed, waiting for
    /// its parent, init for an orphan, to reap it).
    fn gone(pid: i32) -> bool {
        assert!(pid > 1, "{pid}");
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } == -1 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    /// Whether `pid` is gone within `within`.
    fn gone_within(pid: i32, within: Duration) -> bool {
        let end = Instant::now() + within;
        while !gone(pid) {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Ends a process a test left running (one pid, never a group).
    fn kill_pid(pid: i32) {
        assert!(pid > 1, "{pid}");
        // SAFETY: plain integers.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }

    #[test]
    fn a_passing_hook_sees_its_environment() {
        let r = run("echo release $GREENLIGHT_RELEASE", Duration::from_secs(10));
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.last_lines, ["release v3"]);
    }

    #[test]
    fn a_failing_hook_says_once_how_it_ended() {
        // stdout and stderr are two pipes: lines of one keep their order, not across both.
        let r = run(
            "for i in $(seq 1 30); do echo line $i; done; sleep 0.2; echo oops >&2; exit 3",
            Duration::from_secs(10),
        );
        assert_eq!(
            r.outcome,
            HookOutcome::Failed {
                exit_code: Some(3),
                signal: None
            }
        );
        assert_eq!(r.last_lines.len(), LAST_LINES);
        assert_eq!(r.last_lines[LAST_LINES - 2], "line 30");
        assert_eq!(r.last_lines.last().map(String::as_str), Some("oops"));
        // The last lines are the run's failure to add, once (the driver does).
        assert_eq!(
            r.failure(),
            "hook `for i in $(seq 1 30); do echo line $i; done; sleep 0.2; echo oops >&2; exit 3` \
             (pre_traffic) exited 3"
        );
        let r = run("kill -9 $$", Duration::from_secs(10));
        assert_eq!(
            r.failure(),
            "hook `kill -9 $$` (pre_traffic) was killed by signal 9"
        );
    }

    #[test]
    fn a_run_has_its_stage_and_step_at_the_top_level() {
        let r = run("exit 1", Duration::from_secs(10));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["stage"], "pre_traffic", "{json}");
        assert!(json.get("step").is_none(), "{json}");
        assert_eq!(json["outcome"], "failed", "{json}");
        assert_eq!(json["exit_code"], 1, "{json}");
        assert!(json.get("signal").is_none(), "{json}");
        let r = HookRun {
            stage: HookStage::AfterStep(StepNumber(2)),
            ..r
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["stage"], "after_step", "{json}");
        assert_eq!(json["step"], 2, "{json}");
    }

    #[test]
    fn a_hook_that_hangs_is_stopped_at_its_timeout() {
        let r = run("echo started; sleep 30", Duration::from_millis(300));
        assert_eq!(
            r.outcome,
            HookOutcome::TimedOut {
                after_seconds: 0,
                after: Duration::from_millis(300)
            }
        );
        assert!(r.seconds < 5.0, "{}", r.seconds);
        assert_eq!(r.last_lines, ["started"]);
        assert_eq!(
            r.failure(),
            "hook `echo started; sleep 30` (pre_traffic) timed out after 300ms"
        );
    }

    #[test]
    fn a_hook_ends_when_its_shell_exits_and_leaves_its_background_process_running() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("helper.pid");
        // The helper holds the hook's stdout and stderr for 20 s.
        let r = run(
            &format!("sleep 20 & echo $! > {}; echo spawned", pid_file.display()),
            Duration::from_secs(10),
        );
        let helper = pid_in(&pid_file);
        let still_running = !gone(helper);
        kill_pid(helper);
        assert!(r.passed(), "{r:?}");
        assert!(r.seconds < 2.0, "waited on the helper: {}", r.seconds);
        assert_eq!(r.last_lines, ["spawned"]);
        assert!(
            still_running,
            "a passing hook's background process is left alone"
        );
    }

    #[test]
    fn a_timed_out_hook_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let foreground = dir.path().join("foreground.pid");
        let background = dir.path().join("background.pid");
        let r = run(
            &format!(
                "sleep 30 & echo $! > {}; sh -c 'echo $$ > {}; exec sleep 30'",
                background.display(),
                foreground.display()
            ),
            Duration::from_millis(500),
        );
        assert!(matches!(r.outcome, HookOutcome::TimedOut { .. }), "{r:?}");
        assert!(r.seconds < 3.0, "{}", r.seconds);
        let survivors: Vec<i32> = [pid_in(&foreground), pid_in(&background)]
            .into_iter()
            .filter(|&pid| !gone_within(pid, Duration::from_secs(2)))
            .collect();
        survivors.iter().copied().for_each(kill_pid);
        assert_eq!(
            survivors,
            Vec::<i32>::new(),
            "processes of the timed-out hook kept running"
        );
    }

    #[test]
    fn a_hook_dropped_while_it_runs_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleep.pid");
        let command = format!("sh -c 'echo $$ > {}; exec sleep 30'", pid_file.display());
        // As greenlight dropping the hook's future (a panic unwinding through it).
        let cut = block_on(async {
            tokio::time::timeout(
                Duration::from_millis(500),
                hook(&command, Duration::from_secs(60)),
            )
            .await
        });
        assert!(cut.is_err(), "{cut:?}");
        let pid = pid_in(&pid_file);
        let dead = gone_within(pid, Duration::from_secs(2));
        if !dead {
            kill_pid(pid);
        }
        assert!(dead, "pid {pid} of the dropped hook kept running");
    }

    #[test]
    fn long_lines_are_cut_as_they_are_read() {
        // 3 MB on one line, 600 two-byte characters, a CRLF line, a last line with no newline.
        let r = run(
            "head -c 3000000 /dev/zero | tr '\\0' x; echo; \
             for i in $(seq 1 600); do printf 'é'; done; echo; printf 'crlf\\r\\n'; printf end",
            Duration::from_secs(20),
        );
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.last_lines.len(), 4, "{:?}", r.outcome);
        assert_eq!(r.last_lines[0], "x".repeat(MAX_LINE));
        assert_eq!(r.last_lines[1], "é".repeat(MAX_LINE));
        assert_eq!(r.last_lines[2..], ["crlf", "end"]);
    }

    #[test]
    fn output_past_its_limit_is_counted_not_streamed() {
        let mut streamed = Vec::new();
        let mut output = Output::new("[pre_traffic x]".into(), |line: &str| {
            streamed.push(line.to_owned())
        });
        for i in 1..=MAX_STREAMED_LINES + 5 {
            output.keep(Some(format!("line {i}")));
        }
        output.keep(None);
        let last = output.finish();
        assert_eq!(streamed.len(), MAX_STREAMED_LINES + 1);
        assert_eq!(streamed[0], "[pre_traffic x] line 1");
        assert_eq!(
            streamed[MAX_STREAMED_LINES - 1],
            format!("[pre_traffic x] line {MAX_STREAMED_LINES}")
        );
        assert_eq!(
            streamed[MAX_STREAMED_LINES],
            "[pre_traffic x] … 5 more lines not shown"
        );
        assert_eq!(last.len(), LAST_LINES);
        assert_eq!(
            last.last().map(String::as_str),
            Some(format!("line {}", MAX_STREAMED_LINES + 5).as_str())
        );
    }
}
