//! `greenlight deploy`: the loop that drives one release to live, or to failed.

use crate::core::cloud::Cloud;
use crate::core::decide::{
    Action, Clock as CoreClock, Decision, DeployRequest, decide_deploy, live,
};
use crate::core::spec::Spec;

use super::backoff::Backoff;
use super::clock::Clock;
use super::events::{Event, Reporter};
use super::execute::apply;
use super::failure::Failure;
use super::observe::observe;
use super::preflight::check_deploy;

/// How often the same step may be decided again before the deploy gives up on it.
const MAX_REPEATS: u32 = 5;

/// How a deploy ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub release: String,
    /// False when the release was already live before this run.
    pub flipped: bool,
}

/// Deploys `request` and returns once it takes all traffic.
///
/// # Guarantees
/// - Bad input is found before the first change ([`check_deploy`]).
/// - Traffic moves only to a fleet observed ready in the same pass.
/// - Re-running after an interruption resumes where the last run stopped.
pub async fn deploy<C: Cloud, K: Clock>(
    cloud: &C,
    clock: &K,
    reporter: &mut dyn Reporter,
    spec: &Spec,
    request: &DeployRequest,
) -> Result<Released, Failure> {
    check_deploy(cloud, spec, request).await?;
    let started = clock.now();
    let core_clock = |now| CoreClock {
        now,
        health_deadline: started + spec.health.timeout,
    };
    let mut backoff = Backoff::new(spec.health.interval);
    let mut last_health: Option<String> = None;
    let mut changed = false;
    let mut flipped = false;
    let mut announced = false;
    let mut last_action: Option<Action> = None;
    let mut repeats = 0;

    loop {
        let observed = observe(cloud, spec)
            .await
            .map_err(Failure::cloud(changed))?;
        if !announced {
            announced = true;
            if let Ok(live) = live(spec, &observed) {
                reporter.report(&Event::DeployStarted {
                    service: spec.service.to_string(),
                    release: request.release.to_string(),
                    live_release: live.occupant.release(),
                    live_slot: live.slot,
                    live_target_group: spec.slots.get(live.slot).clone(),
                    idle_target_group: spec.slots.get(live.slot.other()).clone(),
                });
            }
        }
        let now = clock.now();
        match decide_deploy(spec, request, &observed, core_clock(now)) {
            Decision::Act(action) => {
                if last_action.as_ref() == Some(&action) {
                    // AWS reads can lag writes; give the last step time to show before
                    // repeating it, and give up if it never does.
                    repeats += 1;
                    if repeats > MAX_REPEATS {
                        let on = action
                            .fleet()
                            .map(|fleet| format!(" on fleet {fleet}"))
                            .unwrap_or_default();
                        return Err(Failure::NeedsAttention(format!(
                            "step {}{on} did not take effect after {MAX_REPEATS} tries",
                            action.name(),
                        )));
                    }
                    let deadline = now + spec.health.timeout;
                    clock.sleep(backoff.next_wait(now, deadline)).await;
                } else {
                    repeats = 0;
                    backoff = Backoff::new(spec.health.interval);
                }
                last_action = Some(action.clone());
                reporter.report(&Event::Step {
                    action: action.clone(),
                });
                let applied = apply(cloud, spec, &action, now).await;
                changed = true;
                let applied = applied?;
                for omitted in applied.omitted {
                    reporter.report(&Event::Warning {
                        message: format!("not copied from the live fleet: {omitted}"),
                    });
                }
                match action {
                    Action::Flip { .. } => flipped = true,
                    Action::FailRelease {
                        release, reasons, ..
                    } => {
                        reporter.report(&Event::ReleaseFailed {
                            release: release.clone(),
                            reasons: reasons.clone(),
                        });
                        return Err(Failure::ReleaseFailed { release, reasons });
                    }
                    _ => {}
                }
            }
            Decision::Wait { fleet, health } => {
                last_action = None;
                let line = health.progress();
                if last_health.as_deref() != Some(line.as_str()) {
                    reporter.report(&Event::health(&fleet, &health));
                    last_health = Some(line);
                }
                let deadline = core_clock(now).health_deadline;
                clock.sleep(backoff.next_wait(now, deadline)).await;
            }
            Decision::Done { release, slot } => {
                reporter.report(&Event::Released {
                    release: release.clone(),
                    slot,
                    flipped,
                });
                return Ok(Released { release, flipped });
            }
            Decision::Refuse(refusal) => {
                let failure = Failure::from(refusal);
                return Err(match failure {
                    // A refusal after this run changed something is no longer "nothing changed".
                    Failure::BadInput(message) if changed => Failure::NeedsAttention(message),
                    other => other,
                });
            }
        }
    }
}
