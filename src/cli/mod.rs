//! The command line: parse, run one command, map the outcome to an exit code.

mod args;
mod run;

pub use args::{Cli, Command};
pub use run::main;

/// `--version`: the crate version and the commit it was built from (`git describe`, when the
/// build had git; see build.rs), so a pipeline's log says exactly which build ran.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GREENLIGHT_GIT_COMMIT"),
    ")"
);
