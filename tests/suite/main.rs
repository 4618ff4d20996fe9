//! The one integration-test binary: scenarios against the in-memory cloud, the real binary
//! against the AWS emulator, and the binary's handling of bad input.

mod adapter;
mod bad_input;
mod canary_e2e;
mod cleanup_adapter;
mod cleanup_e2e;
mod cleanup_scenarios;
mod cli;
mod concurrency;
mod e2e;
mod faults;
mod harness;
mod iam;
mod infra;
mod lambda;
mod logging;
mod nginx;
mod pipelines;
mod prober;
mod proxy;
mod releases;
mod scenarios;
mod terminal;
mod verify;
mod verify_e2e;
