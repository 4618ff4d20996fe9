//! What every command runs with: the cloud, the clock, the config, the stop signal, and who this
//! runner is (for the lock).

use crate::core::cloud::Cloud;
use crate::core::lock::Holder;
use crate::core::spec::Spec;

use super::clock::Clock;
use super::driver::Driver;
use super::events::{Event, Reporter};
use super::failure::Failure;
use super::lease::Lease;
use super::stop::Stop;

pub struct Context<'a, C, K> {
    pub cloud: &'a C,
    pub clock: &'a K,
    pub spec: &'a Spec,
    pub stop: &'a Stop,
    pub holder: &'a Holder,
    /// Whether a process of this host is alive: a dead holder's lock is taken over at once.
    pub alive: fn(u32) -> bool,
}

impl<'a, C: Cloud, K: Clock> Context<'a, C, K> {
    /// Takes the service's lock for `command`.
    pub async fn lock(&self, command: &str) -> Result<Lease, Failure> {
        Lease::acquire(
            self.cloud,
            self.spec,
            command,
            self.holder,
            self.clock.now(),
            self.alive,
        )
        .await
    }

    /// The lock, when another runner holds it (and may not be taken over).
    pub async fn held_by_another(&self) -> Result<Option<crate::core::lock::LockRecord>, Failure> {
        super::lease::held_by_another(
            self.cloud,
            self.spec,
            self.holder,
            self.clock.now(),
            self.alive,
        )
        .await
    }

    /// What a command that decided to change nothing reports: its own answer, unless another
    /// runner holds the lock and may be changing things right now (then: busy, naming it).
    pub async fn unless_locked<T>(&self, answer: Result<T, Failure>) -> Result<T, Failure> {
        match self.held_by_another().await? {
            Some(lock) => Err(Failure::Locked(Box::new(lock))),
            None => answer,
        }
    }

    /// Hands the lock back; a failure to do so is a warning (the lock expires on its own).
    pub async fn unlock(&self, lease: Lease, reporter: &mut dyn Reporter) {
        let expires = lease.record().expires_at;
        if let Err(failure) = lease.release(self.cloud).await {
            reporter.report(&Event::Warning {
                message: format!(
                    "could not release the lock ({failure}); it expires at {}",
                    crate::core::tags::timestamp(expires)
                ),
            });
        }
    }

    pub fn driver<'b>(
        &'b self,
        reporter: &'b mut dyn Reporter,
        lease: &'b mut Lease,
    ) -> Driver<'b, C, K> {
        Driver {
            cloud: self.cloud,
            clock: self.clock,
            reporter,
            spec: self.spec,
            stop: self.stop,
            lease,
            changed: false,
            moved_traffic: false,
            failed_release: None,
        }
    }
}
