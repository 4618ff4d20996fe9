//! `greenlight promote [--full]`: end the current pause of the release in progress. The request
//! is a tag on the release's fleet; a deploy running elsewhere acts on it at its next pass, and
//! when none is running, `promote` takes the lock and drives the release itself, to the end or to
//! the next manual gate.

use crate::core::cloud::Cloud;
use crate::core::decide::{Clock as CoreClock, Done, decide_promote, decide_resume};
use crate::core::reason::{Reason, ReasonCode};
use crate::core::tags;

use super::abort::DRIVERS;
use super::clock::Clock;
use super::context::Context;
use super::deploy::{Released, released};
use super::driver::{Ending, Options};
use super::events::{Event, Reporter};
use super::failure::Failure;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promotion {
    /// This process drove the release: to all traffic, or to its next manual gate.
    Driven(Released),
    /// Another runner (`holder`) is driving the release and will act on the request.
    HandedOver { release: String, holder: String },
}

pub async fn promote<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    full: bool,
) -> Result<Promotion, Failure> {
    let spec = ctx.spec;
    let observed = ctx.first_look().await?;
    let request = match decide_promote(spec, &observed, full) {
        Ok(request) => request,
        // Nothing to promote now; but a runner holding the lock may be starting a release.
        Err(refusal) => return ctx.unless_locked(Err(refusal.into())).await,
    };
    let write_request = || async {
        ctx.cloud
            .tag_fleet(
                &request.fleet,
                &[(tags::PROMOTED.to_owned(), request.promoted.encode())],
            )
            .await
            .map_err(Failure::cloud(true))
    };
    let mut lease = match ctx.lock("promote").await {
        Ok(lease) => lease,
        // A deploy (or promote) drives the release: it acts on the request at its next pass.
        Err(Failure::Locked(lock)) if DRIVERS.contains(&lock.command.as_str()) => {
            write_request().await?;
            let holder = lock.holder_and_command();
            reporter.report(&Event::Promoted {
                release: request.release.clone(),
                step: request.step,
                full,
                driver: holder.clone(),
            });
            return Ok(Promotion::HandedOver {
                release: request.release,
                holder,
            });
        }
        // Anything else (an abort, a rollback) would never read the request.
        Err(other) => return Err(other),
    };
    if let Err(failure) = write_request().await {
        ctx.unlock(lease, reporter).await;
        return Err(failure);
    }
    reporter.report(&Event::Promoted {
        release: request.release.clone(),
        step: request.step,
        full,
        driver: "this process".into(),
    });
    let health_deadline = ctx.clock.now() + spec.health.timeout;
    let mut driver = ctx.driver(reporter, &mut lease);
    let ending = driver
        .drive(
            |observed, now| {
                decide_resume(
                    spec,
                    observed,
                    CoreClock {
                        now,
                        health_deadline,
                    },
                )
            },
            Options {
                stop_at_gate: true,
                end_on_failure: true,
                resume_hint: "re-run `greenlight promote` to carry on, or `greenlight abort`",
                announce: None,
            },
        )
        .await;
    let flipped = driver.moved_traffic;
    ctx.unlock(lease, reporter).await;
    let ending = match ending? {
        // The release went away (aborted) between the request and the lock: not promoted.
        Ending::Done(Done::Live { release, .. }) if release != request.release => {
            return Err(Failure::ReleaseFailed {
                release: request.release,
                reasons: vec![Reason::new(
                    ReasonCode::ReleaseFailed,
                    format!(
                        "it is no longer in progress (stopped before this promote took over); \
                         release {release} is live"
                    ),
                )],
            });
        }
        other => other,
    };
    released(reporter, ending, flipped, "promotion").map(Promotion::Driven)
}
