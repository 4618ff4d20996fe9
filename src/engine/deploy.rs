//! `greenlight deploy`: drives one release to live (or to a manual gate, or to failed).

use crate::core::cloud::Cloud;
use crate::core::decide::{
    Clock as CoreClock, DeployRequest, Done, WaitReason, decide_deploy, live,
};
use crate::core::plan::{Percent, StepNumber};

use super::clock::Clock;
use super::context::Context;
use super::driver::{Ending, Options};
use super::events::{Event, Reporter};
use super::failure::Failure;
use super::preflight::check_deploy;

/// How a deploy ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub release: String,
    /// False when the release was already live before this run.
    pub flipped: bool,
    /// Set when the deploy stopped at a manual gate (`--no-wait`): the release waits there for
    /// `greenlight promote`.
    pub paused_at: Option<(StepNumber, Percent)>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DeployOptions {
    /// Return at a manual gate instead of waiting there for `promote`.
    pub no_wait: bool,
}

/// Deploys `request` and returns once it takes all traffic (or waits at a gate, with
/// `no_wait`).
///
/// # Guarantees
/// - Bad input is found before the first change ([`check_deploy`]).
/// - One runner at a time: the service's lock is held from the first change to the end.
/// - Traffic moves only to a fleet observed ready in the same pass.
/// - Re-running after an interruption resumes where the last run stopped, with the health
///   deadline and pause clocks the release recorded.
pub async fn deploy<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    request: &DeployRequest,
    options: DeployOptions,
) -> Result<Released, Failure> {
    let spec = ctx.spec;
    ctx.patiently(|| check_deploy(ctx.cloud, spec, request))
        .await?;
    let mut lease = ctx.lock("deploy").await?;
    // Where the deploy starts from, as the first observation under the lock shows it.
    let started = |observed: &crate::core::observed::Observed| {
        let live = live(spec, observed).ok()?;
        Some(Event::DeployStarted {
            service: spec.service.to_string(),
            release: request.release.to_string(),
            live_release: live.occupant.release(),
            live_slot: live.slot,
            live_target_group: spec.slots.get(live.slot).clone(),
            idle_target_group: spec.slots.get(live.slot.other()).clone(),
            strategy: request.plan.strategy,
            plan: request.plan.encode(),
        })
    };
    let health_deadline = ctx.clock.now() + spec.health.timeout;
    let mut driver = ctx.driver(reporter, &mut lease);
    let ending = driver
        .drive(
            |observed, now| {
                decide_deploy(
                    spec,
                    request,
                    observed,
                    CoreClock {
                        now,
                        health_deadline,
                    },
                )
            },
            Options {
                stop_at_gate: options.no_wait,
                end_on_failure: true,
                resume_hint: "re-run the same deploy to resume, or `greenlight abort` to stop the release",
                announce: Some(&started),
            },
        )
        .await;
    let flipped = driver.moved_traffic;
    ctx.unlock(lease, reporter).await;
    released(reporter, ending?, flipped, "deploy")
}

/// How a drive of a release ended, reported, for `deploy` and for `promote` when it drives.
pub(super) fn released(
    reporter: &mut dyn Reporter,
    ending: Ending,
    flipped: bool,
    command: &str,
) -> Result<Released, Failure> {
    match ending {
        Ending::Done(Done::Live { release, slot }) => {
            reporter.report(&Event::Released {
                release: release.clone(),
                slot,
                flipped,
            });
            Ok(Released {
                release,
                flipped,
                paused_at: None,
            })
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
            Ok(Released {
                release,
                flipped,
                paused_at: Some((step, weight)),
            })
        }
        Ending::Failed { release, reasons } => Err(Failure::ReleaseFailed { release, reasons }),
        other => Err(Failure::NeedsAttention(format!(
            "the {command} ended unexpectedly: {other:?}"
        ))),
    }
}
