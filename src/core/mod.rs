//! The pure core: domain types, the `Cloud` port, and the decision functions.
//! Nothing here imports tokio, the AWS SDK, or touches the network, disk or clock.

pub mod analysis;
pub mod cleanup;
#[cfg(test)]
mod cleanup_tests;
pub mod cloud;
pub mod decide;
pub mod fleet;
pub mod health;
pub mod hooks;
pub mod lock;
pub mod names;
pub mod nginx;
pub mod observed;
pub mod plan;
pub mod reason;
pub mod router;
pub mod spec;
pub mod tags;
pub mod test_traffic;
pub mod twin;
