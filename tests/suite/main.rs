//! The one integration-test binary: scenarios against the in-memory cloud, the real binary
//! against the AWS emulator, and the binary's handling of bad input.

mod adapter;
mod cli;
mod e2e;
mod harness;
mod proxy;
mod scenarios;
