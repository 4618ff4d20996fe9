//! What every command runs with: the cloud, the clock, the config, the stop signal, and who this
//! runner is (for the lock).

use crate::core::cloud::{Cloud, CloudErrorKind};
use crate::core::lock::Holder;
use crate::core::spec::Spec;

use super::clock::Clock;
use super::driver::{Driver, TRANSIENT_PATIENCE};
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
        self.patiently(|| {
            Lease::acquire(
                self.cloud,
                self.spec,
                command,
                self.holder,
                self.clock.now(),
                self.alive,
            )
        })
        .await
    }

    /// The service's resources checked and one observation, before any change: ridden out
    /// through throttling and 5xx like every read ([`super::preflight::look`]: one round of
    /// reads).
    pub async fn first_look(&self) -> Result<crate::core::observed::Observed, Failure> {
        self.patiently(|| super::preflight::look(self.cloud, self.spec))
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
    ///
    /// Throttling and 5xx are tried again a few times first: a lock left behind keeps other
    /// runners out until it expires.
    pub async fn unlock(&self, lease: Lease, reporter: &mut dyn Reporter) {
        let Err(error) = lease.release_patiently(self.cloud, self.clock).await else {
            return;
        };
        reporter.report(&Event::Warning {
            message: format!(
                "the command's work is done, but its lock on service {} could not be released \
                 ({error}); other runners wait until it expires at {}, or `greenlight unlock \
                 --force` removes it",
                self.spec.service,
                crate::core::tags::timestamp(lease.record().expires_at)
            ),
        });
    }

    /// Runs `op` (reads before any change), trying again while AWS answers with throttling,
    /// 5xx or timeouts for up to [`TRANSIENT_PATIENCE`]: nothing has changed yet, so a failure
    /// is safe to repeat. An endpoint that cannot be reached at all (after the SDK's own
    /// retries) ends the command at once: before any change that is a wrong endpoint or region,
    /// or no network, and a minute of retries would only hide it.
    pub async fn patiently<T, F, Fut>(&self, mut op: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let give_up = self.clock.now() + TRANSIENT_PATIENCE;
        let mut backoff = super::backoff::Backoff::new(self.spec.health.interval);
        loop {
            match op().await {
                Err(Failure::Cloud {
                    error,
                    changed: false,
                }) if error.kind == CloudErrorKind::Unavailable
                    && self.clock.now() < give_up
                    && self.stop.requested().is_none() =>
                {
                    let now = self.clock.now();
                    self.clock.sleep(backoff.next_wait(now, give_up)).await;
                }
                other => return other,
            }
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
            hook_failure: None,
        }
    }
}
