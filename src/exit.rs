//! Exit codes: the contract with pipelines. Documented in the README and in `--help`.

use crate::core::cloud::CloudErrorKind;
use crate::engine::failure::Failure;

pub const SUCCESS: u8 = 0;
/// Unexpected error: AWS unreachable or failing in a way greenlight cannot classify, or a bug.
pub const INTERNAL: u8 = 1;
/// Bad input or config: nothing was changed.
pub const BAD_INPUT: u8 = 2;
/// The release failed; traffic stayed on (or returned to) the previous release.
pub const RELEASE_FAILED: u8 = 3;
/// Another runner holds the service's lock, or another release is in progress.
pub const BUSY: u8 = 4;
/// Needs attention: AWS is in a state greenlight will not act on, or rollback is impossible.
pub const NEEDS_ATTENTION: u8 = 5;
/// Stopped by SIGINT (Ctrl-C) at a safe point: 128 + 2.
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (a cancelled pipeline) at a safe point: 128 + 15.
pub const TERMINATED: u8 = 143;

/// The table `--help` prints.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  unexpected error (AWS unreachable, or a bug); nothing was changed
  2  bad input or config (nothing was changed)
  3  release failed; traffic stayed on (or returned to) the previous release
  4  busy: another runner holds the service's lock, or another release is in progress
  5  needs attention: state inconsistent, rollback impossible, or a step failed part-way
130  stopped by SIGINT (Ctrl-C) at a safe point; re-run to resume
143  stopped by SIGTERM (e.g. a cancelled pipeline) at a safe point; re-run to resume";

pub fn code(failure: &Failure) -> u8 {
    match failure {
        Failure::Config(_) | Failure::BadInput(_) | Failure::Twin(_) => BAD_INPUT,
        Failure::ReleaseFailed { .. } => RELEASE_FAILED,
        Failure::Busy(_) | Failure::Locked(_) => BUSY,
        Failure::NeedsAttention(_) => NEEDS_ATTENTION,
        Failure::Interrupted { signal, .. } => signal.exit_code(),
        // The most telling code among them: 1 (unexpected) only when nothing says more.
        Failure::CleanupFailed(failures) => failures
            .iter()
            .map(|f| f.exit_code)
            .max_by_key(|code| if *code == INTERNAL { 0 } else { *code })
            .unwrap_or(INTERNAL),
        Failure::Cloud { changed: true, .. } => NEEDS_ATTENTION,
        Failure::Cloud {
            error,
            changed: false,
        } => match error.kind {
            CloudErrorKind::NotFound
            | CloudErrorKind::InvalidRequest
            | CloudErrorKind::AccessDenied
            | CloudErrorKind::Credentials => BAD_INPUT,
            CloudErrorKind::Conflict
            | CloudErrorKind::Unavailable
            | CloudErrorKind::Unreachable
            | CloudErrorKind::Other => INTERNAL,
        },
    }
}
