//! The loop around the core: observe through the `Cloud` port, ask the core for the next step,
//! apply it, and wait with backoff when there is nothing to do but wait.

pub mod abort;
pub mod backoff;
pub mod cleanup;
pub mod clock;
pub mod context;
pub mod deploy;
pub mod driver;
pub mod events;
pub mod execute;
pub mod failure;
pub mod hooks;
pub mod lease;
pub mod observe;
pub mod preflight;
pub mod promote;
pub mod rollback;
pub mod status;
pub mod stop;
pub mod validate;
