//! Running hooks: each command of a stage through `sh -c`, in order, with a timeout, its output
//! streamed to stderr with a prefix (bounded), and its last lines kept for the report.

use std::collections::VecDeque;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::core::hooks::HookStage;

/// Lines of a hook's output streamed to stderr; the rest is counted, not shown.
pub const MAX_STREAMED_LINES: usize = 1000;
/// Characters of one streamed line.
pub const MAX_LINE: usize = 500;
/// Lines kept for the report when a hook fails.
pub const LAST_LINES: usize = 10;

/// How one hook command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HookOutcome {
    Passed,
    /// It exited with this status (or was killed by a signal: `None`).
    Failed {
        exit_code: Option<i32>,
    },
    TimedOut {
        after_seconds: u64,
    },
    /// `sh` could not be started.
    NotStarted {
        error: String,
    },
}

/// One hook command's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookRun {
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

    /// Why it failed, in one line, for the release's failure reason.
    pub fn failure(&self) -> String {
        let how = match &self.outcome {
            HookOutcome::Passed => "passed".to_owned(),
            HookOutcome::Failed {
                exit_code: Some(code),
            } => format!("exited {code}"),
            HookOutcome::Failed { exit_code: None } => "was killed by a signal".to_owned(),
            HookOutcome::TimedOut { after_seconds } => {
                format!("timed out after {after_seconds}s")
            }
            HookOutcome::NotStarted { error } => format!("could not start: {error}"),
        };
        let tail = self
            .last_lines
            .iter()
            .rev()
            .take(3)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ");
        let output = if tail.is_empty() {
            String::new()
        } else {
            format!("; last output: {tail}")
        };
        format!("hook `{}` ({}) {how}{output}", self.command, self.stage)
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
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A hook that outlives its timeout is killed as it is dropped.
        .kill_on_drop(true)
        .spawn()
    {
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
    let prefix = format!("[{} {}]", stage.key(), command);
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut streamed = 0usize;
    let mut hidden = 0usize;
    let mut keep = |line: String| {
        let line: String = line.chars().take(MAX_LINE).collect();
        if streamed < MAX_STREAMED_LINES {
            eprintln!("{prefix} {line}");
            streamed += 1;
        } else {
            hidden += 1;
        }
        if tail.len() == LAST_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let read_all = async {
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                line = stdout.next_line(), if out_open => match line {
                    Ok(Some(line)) => keep(line),
                    _ => out_open = false,
                },
                line = stderr.next_line(), if err_open => match line {
                    Ok(Some(line)) => keep(line),
                    _ => err_open = false,
                },
            }
        }
        child.wait().await
    };
    let outcome = match tokio::time::timeout(timeout, read_all).await {
        Ok(Ok(status)) if status.success() => HookOutcome::Passed,
        Ok(Ok(status)) => HookOutcome::Failed {
            exit_code: status.code(),
        },
        Ok(Err(e)) => HookOutcome::NotStarted {
            error: e.to_string(),
        },
        Err(_) => HookOutcome::TimedOut {
            after_seconds: timeout.as_secs(),
        },
    };

    if hidden > 0 {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "[{}] … {hidden} more lines not shown", stage.key());
    }
    done(outcome, tail.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: &str, timeout: Duration) -> HookRun {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_one(
                HookStage::PreTraffic,
                command,
                &[("GREENLIGHT_RELEASE".into(), "v3".into())],
                timeout,
            ))
    }

    #[test]
    fn a_passing_hook_sees_its_environment() {
        let r = run("echo release $GREENLIGHT_RELEASE", Duration::from_secs(10));
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.last_lines, ["release v3"]);
    }

    #[test]
    fn a_failing_hook_says_how_and_what_it_printed_last() {
        // stdout and stderr are two pipes: lines of one keep their order, not across both.
        let r = run(
            "for i in $(seq 1 30); do echo line $i; done; sleep 0.2; echo oops >&2; exit 3",
            Duration::from_secs(10),
        );
        assert_eq!(r.outcome, HookOutcome::Failed { exit_code: Some(3) });
        assert_eq!(r.last_lines.len(), LAST_LINES);
        assert_eq!(r.last_lines.last().map(String::as_str), Some("oops"));
        assert_eq!(
            r.failure(),
            "hook `for i in $(seq 1 30); do echo line $i; done; sleep 0.2; echo oops >&2; exit 3` \
             (pre_traffic) exited 3; last output: line 29 | line 30 | oops"
        );
    }

    #[test]
    fn a_hook_that_hangs_is_stopped_at_its_timeout() {
        let r = run("echo started; sleep 30", Duration::from_millis(300));
        assert_eq!(r.outcome, HookOutcome::TimedOut { after_seconds: 0 });
        assert!(r.seconds < 5.0, "{}", r.seconds);
        assert_eq!(r.last_lines, ["started"]);
    }
}
