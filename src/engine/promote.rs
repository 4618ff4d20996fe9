//! `greenlight promote [--full]`: end the current pause of the release in progress. The request
//! is a tag on the release's fleet; a deploy running elsewhere acts on it at its next pass, and
//! when none is running, `promote` takes the lock and drives the release itself, to the end or to
//! the next manual gate.

use crate::core::cloud::Cloud;
use crate::core::decide::{Clock as CoreClock, Done, WaitReason, decide_promote, decide_resume};
use crate::core::plan::{Percent, StepNumber};
use crate::core::tags;

use super::clock::Clock;
use super::context::Context;
use super::driver::{Ending, Options};
use super::events::{Event, Reporter};
use super::failure::Failure;
use super::observe::observe;
use super::preflight::check_resources;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promotion {
    /// This process drove the release to all traffic.
    Live { release: String },
    /// This process drove the release to its next manual gate.
    Paused {
        release: String,
        step: StepNumber,
        weight: Percent,
    },
    /// Another runner (`holder`) is driving the release and will act on the request.
    HandedOver { release: String, holder: String },
}

pub async fn promote<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    full: bool,
) -> Result<Promotion, Failure> {
    let spec = ctx.spec;
    check_resources(ctx.cloud, spec).await?;
    let observed = observe(ctx.cloud, spec)
        .await
        .map_err(Failure::cloud(false))?;
    let request = decide_promote(spec, &observed, full)?;
    ctx.cloud
        .tag_fleet(
            &request.fleet,
            &[(tags::PROMOTED.to_owned(), request.promoted.encode())],
        )
        .await
        .map_err(Failure::cloud(true))?;
    let mut lease = match ctx.lock("promote").await {
        Ok(lease) => lease,
        Err(Failure::Busy(holder)) => {
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
        Err(other) => return Err(other),
    };
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
            },
        )
        .await;
    let flipped = driver.moved_traffic;
    ctx.unlock(lease, reporter).await;
    match ending? {
        Ending::Done(Done::Live { release, slot }) => {
            reporter.report(&Event::Released {
                release: release.clone(),
                slot,
                flipped,
            });
            Ok(Promotion::Live { release })
        }
        Ending::Paused(WaitReason::Gate {
            release,
            step,
            of,
            weight,
        }) => {
            reporter.report(&Event::Paused {
                release: release.clone(),
                step,
                of,
                weight,
            });
            Ok(Promotion::Paused {
                release,
                step,
                weight,
            })
        }
        Ending::Failed { release, reasons } => Err(Failure::ReleaseFailed { release, reasons }),
        other => Err(Failure::NeedsAttention(format!(
            "the promotion ended unexpectedly: {other:?}"
        ))),
    }
}
