//! greenlight: zero-downtime blue/green releases of EC2 Auto Scaling groups behind an AWS load
//! balancer.
//!
//! The crate is split by what may do I/O:
//! - [`core`] decides. It sees the spec, an observed snapshot and the clock as arguments and
//!   returns the next action; it owns the [`core::cloud::Cloud`] port but never calls it.
//! - [`engine`] runs the loop: observe through the port, ask the core, apply one action, repeat.
//! - [`aws`] implements the port with the AWS SDK; [`fake`] implements it in memory for tests.
//! - [`cli`] and [`output`] are the shell a user or a pipeline talks to.

pub mod aws;
pub mod cli;
pub mod core;
pub mod engine;
pub mod exit;
pub mod fake;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod logging;
pub mod nginx;
pub mod output;
