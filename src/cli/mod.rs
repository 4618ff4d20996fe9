//! The command line: parse, run one command, map the outcome to an exit code.

mod args;
mod run;

pub use args::{Cli, Command};
pub use run::main;
