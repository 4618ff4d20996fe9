//! The stage machine of a release whose fleet exists and is configured: wait until green is
//! healthy, then move through its plan one step per pass (argo-rollouts' canary reconciler in
//! miniature). Shared by `deploy` and by `promote` when no deploy is running.

use std::time::SystemTime;

use super::abort::stop;
use super::situation::{InProgress, Live};
use super::verify::{self, HookAt};
use super::{Action, Clock, Decision, Refusal, RefusalKind, Wait, WaitReason};
use crate::core::analysis::{Inconclusive, Verdict};
use crate::core::fleet::Capacity;
use crate::core::health::unhealthy_descriptions;
use crate::core::hooks::HookStage;
use crate::core::observed::Observed;
use crate::core::plan::{PauseState, Percent, Plan, StepNumber, pause_state};
use crate::core::reason::{Reason, ReasonCode};
use crate::core::router::{RouterWrite, Stickiness, all_to, split};
use crate::core::spec::Spec;
use crate::core::tags::{Phase, Promoted};

/// What a router write during a release does to stickiness: on while both slots take traffic
/// when the config asks for it, and off again when one takes it all, so every client moves.
fn stickiness(spec: &Spec, share: Percent) -> Stickiness {
    match spec.canary_stickiness() {
        None => Stickiness::Keep,
        Some(_) if share == Percent::ALL || share == Percent::ZERO => Stickiness::Off,
        Some(d) => Stickiness::On(u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
    }
}

/// The router write that gives green `share`.
pub(super) fn write_share(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    share: Percent,
) -> RouterWrite {
    let green = spec.slots.get(live.slot.other());
    let stable = spec.slots.get(live.slot);
    // A Network Load Balancer's forward takes weighted target groups too (since November 2025):
    // after the flip the previous release stays named at weight 0, as on an ALB, so AWS keeps
    // health-checking it and a rollback is one call. (Canary there is refused at parse time.)
    let forwards = if share == Percent::ALL {
        all_to(green, stable)
    } else {
        split(green, share, stable)
    };
    RouterWrite {
        expected: observed.router.forwards().to_vec(),
        forwards,
        stickiness: stickiness(spec, share),
    }
}

/// The step that moves green to step `n` of `plan`: a shift, or the flip for the last step.
fn move_to(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    green: &InProgress<'_>,
    plan: &Plan,
    n: StepNumber,
    verdict: Option<String>,
) -> Decision {
    let step = plan.step(n).expect("callers pass a step of the plan");
    let fleet = green.occupant.fleet.name.clone();
    let release = green.release();
    let to = spec.slots.get(green.slot).clone();
    let from = spec.slots.get(live.slot).clone();
    let write = write_share(spec, observed, live, step.weight);
    if n == plan.last() {
        return Decision::Act(Action::Flip {
            to,
            from,
            fleet,
            release,
            verdict,
            write,
        });
    }
    Decision::Act(Action::Shift {
        fleet,
        release,
        to,
        from,
        weight: step.weight,
        step: n,
        of: plan.len(),
        verdict,
        write,
    })
}

/// The live fleet grew (its own scaling) past green: green follows before taking any more
/// traffic, so it is never smaller than the share it takes or is about to take.
fn follow_capacity(live: &Live<'_>, green: &InProgress<'_>) -> Option<Decision> {
    let stable = live.occupant.fleet.capacity;
    let own = green.occupant.fleet.capacity;
    (stable.desired > own.desired).then(|| {
        Decision::Act(Action::MatchCapacity {
            fleet: green.occupant.fleet.name.clone(),
            capacity: Capacity {
                min: own.min,
                max: own.max.max(stable.desired),
                desired: stable.desired,
            },
        })
    })
}

/// The next step for a release in its `provisioning` or `releasing` phase.
pub(super) fn advance(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    green: &InProgress<'_>,
    clock: Clock,
    fallback_plan: Option<&Plan>,
) -> Result<Decision, Refusal> {
    if let Some(request) = &green.occupant.tags.abort {
        return stop(spec, observed, live, green, Reason::from_tag(request));
    }
    let release = green.release();
    if (green.occupant.health.ready() || green.weight > Percent::ZERO)
        && let Some(reason) = verify::alarm_reason(observed)
    {
        return stop(spec, observed, live, green, reason);
    }
    if green.occupant.tags.plan_unreadable {
        // Recorded by a newer greenlight (or by hand): following another plan could skip a gate.
        return Err(Refusal::attention(format!(
            "release {release} records a plan this greenlight cannot read (tag greenlight:plan); \
             upgrade greenlight, or stop the release with `greenlight abort`"
        )));
    }
    let plan = green
        .plan
        .clone()
        .or_else(|| fallback_plan.cloned())
        .ok_or_else(|| {
            Refusal::attention(format!(
                "release {release} (fleet {}) records no plan (tag greenlight:plan); abort it with \
             `greenlight abort`",
                green.occupant.fleet.name
            ))
        })?;
    let health = &green.occupant.health;
    match green.occupant.phase() {
        Some(Phase::Provisioning) => {
            let deadline = green
                .occupant
                .tags
                .health_deadline
                .unwrap_or(clock.health_deadline);
            let first = plan.step(StepNumber(1)).expect("a plan has a first step");
            if green.weight > Percent::ZERO && green.weight != first.weight {
                // Only the first shift can land before anything is recorded.
                return Err(Refusal::attention(format!(
                    "the router gives release {release} {} of the traffic, but it has not \
                     started its plan; someone changed the router. Abort it with `greenlight \
                     abort`",
                    green.weight
                )));
            }
            if !health.ready() {
                if green.weight > Percent::ZERO {
                    return not_ready(spec, observed, live, green, deadline, clock.now);
                }
                if clock.now >= deadline {
                    let fleet = &green.occupant.fleet;
                    let mut reasons = vec![
                        Reason::new(
                            ReasonCode::HealthTimeout,
                            format!("not healthy in time: {}", health.progress()),
                        )
                        .on(fleet.name.to_string()),
                    ];
                    reasons.extend(
                        unhealthy_descriptions(fleet, &observed.slot(green.slot).targets)
                            .into_iter()
                            .map(|(target, text)| {
                                Reason::new(ReasonCode::TargetUnhealthy, text).on(target)
                            }),
                    );
                    return Ok(Decision::Act(Action::FailRelease {
                        fleet: green.occupant.fleet.name.clone(),
                        release,
                        reasons,
                    }));
                }
                return Ok(Decision::Wait(Wait {
                    until: Some(deadline),
                    why: WaitReason::Health {
                        fleet: green.occupant.fleet.name.clone(),
                        health: health.clone(),
                    },
                }));
            }
            if let Some(grow) = follow_capacity(live, green) {
                return Ok(grow);
            }
            if green.weight > Percent::ZERO {
                // The first shift landed and its record did not (a crash between the two).
                return Ok(move_to(
                    spec,
                    observed,
                    live,
                    green,
                    &plan,
                    StepNumber(1),
                    None,
                ));
            }
            // Reachable by test traffic, then checked by the user's own hooks, before any step.
            if let Some(open) = verify::open(spec, observed, green)? {
                return Ok(Decision::Act(open));
            }
            if let Some(hooks) = verify::hooks_due(
                spec,
                green.slot,
                &green.occupant,
                HookAt {
                    stage: HookStage::PreTraffic,
                    live_release: live.occupant.release(),
                    weight: Percent::ZERO,
                    step: None,
                    steps: plan.len(),
                },
            ) {
                return Ok(Decision::Act(hooks));
            }
            if first.weight == Percent::ZERO {
                return Ok(Decision::Act(Action::Begin {
                    fleet: green.occupant.fleet.name.clone(),
                    release,
                    step: StepNumber(1),
                    of: plan.len(),
                }));
            }
            let full = green.occupant.tags.promoted == Some(Promoted::Full);
            let n = if full { plan.last() } else { StepNumber(1) };
            Ok(move_to(spec, observed, live, green, &plan, n, None))
        }
        Some(Phase::Releasing) => releasing(spec, observed, live, green, &plan, clock),
        other => Err(Refusal::attention(format!(
            "release {release} is {}, not provisioning or releasing",
            other.map_or("untagged".to_owned(), |p| p.to_string())
        ))),
    }
}

/// The shortest window green's metrics are compared over.
pub const MIN_METRICS_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the window of green's metrics starts, when the next decision is at a gate that
/// compares them ([`releasing`]'s `PauseState::Over` with traffic on green): the one time
/// GetMetricData is worth a call.
pub fn metrics_due(spec: &Spec, observed: &Observed, now: SystemTime) -> Option<SystemTime> {
    if !spec.analysis.compares_metrics() {
        return None;
    }
    let live = super::situation::live(spec, observed).ok()?;
    let green = super::situation::in_progress(spec, observed, &live)?;
    let tags = &green.occupant.tags;
    if green.occupant.phase() != Some(Phase::Releasing)
        || green.weight == Percent::ZERO
        || !green.occupant.health.ready()
    {
        return None;
    }
    let (n, step_at) = (tags.step?, tags.step_at?);
    let step = green.plan.as_ref()?.step(n)?;
    let promoted = tags.promoted.is_some_and(|p| p.ends(n));
    let over = pause_state(step.pause, step_at, promoted, now) == PauseState::Over;
    (over && now >= step_at + MIN_METRICS_WINDOW).then_some(step_at)
}

/// A release at step n of its plan: hold the weight through the pause, then the next step.
fn releasing(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    green: &InProgress<'_>,
    plan: &Plan,
    clock: Clock,
) -> Result<Decision, Refusal> {
    let tags = &green.occupant.tags;
    let release = green.release();
    let (Some(n), Some(step_at)) = (tags.step.filter(|n| plan.step(*n).is_some()), tags.step_at)
    else {
        return Err(Refusal::attention(format!(
            "release {release} is releasing but records no step of its plan and when it began \
             (tags greenlight:step, greenlight:step-at); abort it with `greenlight abort`"
        )));
    };
    let step = plan.step(n).expect("checked above");
    let next = StepNumber(n.0 + 1);
    // The shift to the next step may have landed without its record (a crash between the two).
    let landed_next =
        green.weight != step.weight && plan.step(next).is_some_and(|s| s.weight == green.weight);
    if green.weight != step.weight && !landed_next {
        return Err(Refusal::attention(format!(
            "the router gives release {release} {} of the traffic, but it is at step {n}/{} \
             ({}); someone changed the router. Abort with `greenlight abort`, or route it back \
             to {} and re-run",
            green.weight,
            plan.len(),
            step.weight,
            step.weight
        )));
    }
    let health = &green.occupant.health;
    if !health.ready() {
        // Hold the weight; a fleet replacing an instance is back within the health timeout.
        let deadline = step_at.checked_add(spec.health.timeout).unwrap_or(step_at);
        return not_ready(spec, observed, live, green, deadline, clock.now);
    }
    if landed_next {
        return Ok(move_to(spec, observed, live, green, plan, next, None));
    }
    if let Some(grow) = follow_capacity(live, green) {
        return Ok(grow);
    }
    if green.weight > Percent::ZERO
        && n != plan.last()
        && let Some(hooks) = verify::hooks_due(
            spec,
            green.slot,
            &green.occupant,
            HookAt {
                stage: HookStage::AfterStep(n),
                live_release: live.occupant.release(),
                weight: green.weight,
                step: Some(n),
                steps: plan.len(),
            },
        )
    {
        return Ok(Decision::Act(hooks));
    }
    let full = tags.promoted == Some(Promoted::Full);
    let promoted = tags.promoted.is_some_and(|p| p.ends(n));
    match pause_state(step.pause, step_at, promoted, clock.now) {
        PauseState::Over => {
            let next = if full { plan.last() } else { next };
            let compared = green.weight > Percent::ZERO && spec.analysis.compares_metrics();
            if compared && clock.now < step_at + MIN_METRICS_WINDOW {
                // A step without a pause: CloudWatch takes no empty window.
                return Ok(Decision::Wait(Wait {
                    until: Some(step_at + MIN_METRICS_WINDOW),
                    why: WaitReason::Pause {
                        release,
                        step: n,
                        of: plan.len(),
                        weight: step.weight,
                    },
                }));
            }
            // The gate: green's metrics over this step, when it took traffic.
            let verdict = compared.then(|| verify::metrics_verdict(spec, observed));
            let text = match verdict {
                None => None,
                Some(Verdict::Pass { .. }) => verdict.as_ref().map(|v| v.to_string()),
                Some(Verdict::Fail { ref reasons, .. }) => {
                    return stop(
                        spec,
                        observed,
                        live,
                        green,
                        Reason::new(
                            ReasonCode::AnalysisFailed,
                            format!(
                                "analysis failed at step {n}/{}: {} ({})",
                                plan.len(),
                                reasons.join("; "),
                                verdict.as_ref().map(|v| v.summary()).unwrap_or_default()
                            ),
                        )
                        .on(release.clone()),
                    );
                }
                Some(ref v @ Verdict::Inconclusive { ref reasons, .. }) => {
                    match (spec.analysis.on_inconclusive(), promoted) {
                        (Inconclusive::Fail, false) => {
                            return stop(
                                spec,
                                observed,
                                live,
                                green,
                                Reason::new(
                                    ReasonCode::AnalysisInconclusive,
                                    format!(
                                        "analysis inconclusive at step {n}/{} and [analysis] \
                                         inconclusive = \"fail\": {}",
                                        plan.len(),
                                        reasons.join("; ")
                                    ),
                                )
                                .on(release.clone()),
                            );
                        }
                        (Inconclusive::Wait, false) => {
                            return Ok(Decision::Wait(Wait {
                                until: None,
                                why: WaitReason::Analysis {
                                    release,
                                    step: n,
                                    of: plan.len(),
                                    weight: step.weight,
                                    verdict: v.to_string(),
                                },
                            }));
                        }
                        // Passed on by the config, or by a person who promoted.
                        _ => Some(v.to_string()),
                    }
                }
            };
            Ok(move_to(spec, observed, live, green, plan, next, text))
        }
        PauseState::Until(end) => Ok(Decision::Wait(Wait {
            until: Some(end),
            why: WaitReason::Pause {
                release,
                step: n,
                of: plan.len(),
                weight: step.weight,
            },
        })),
        PauseState::Manual => Ok(Decision::Wait(Wait {
            until: None,
            why: WaitReason::Gate {
                release,
                step: n,
                of: plan.len(),
                weight: step.weight,
            },
        })),
    }
}

/// Green takes (or was about to take) traffic and is not fully healthy: with no healthy target
/// at all it is stopped at once; otherwise it holds its weight until `deadline`, then stops.
fn not_ready(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    green: &InProgress<'_>,
    deadline: SystemTime,
    now: SystemTime,
) -> Result<Decision, Refusal> {
    let health = &green.occupant.health;
    let release = green.release();
    if green.weight > Percent::ZERO && health.healthy == 0 {
        let why = Reason::new(
            ReasonCode::HealthLost,
            format!(
                "release {release} took {} of the traffic with no healthy target: {}",
                green.weight,
                health.progress()
            ),
        )
        .on(green.occupant.fleet.name.to_string());
        return stop(spec, observed, live, green, why);
    }
    if now >= deadline {
        let why = Reason::new(
            ReasonCode::HealthLost,
            format!(
                "release {release} was not fully healthy again in time: {}",
                health.progress()
            ),
        )
        .on(green.occupant.fleet.name.to_string());
        return stop(spec, observed, live, green, why);
    }
    Ok(Decision::Wait(Wait {
        until: Some(deadline),
        why: WaitReason::Health {
            fleet: green.occupant.fleet.name.clone(),
            health: health.clone(),
        },
    }))
}

/// The refusal for a release that is not this command's to drive.
pub(super) fn busy(green: &InProgress<'_>, target_group: &str) -> Refusal {
    let release = green.release();
    let at = match (
        green.occupant.phase(),
        green.occupant.tags.step,
        &green.plan,
    ) {
        (Some(Phase::Releasing), Some(n), Some(plan)) => {
            format!(
                ", at step {n}/{} with {} of the traffic",
                plan.len(),
                green.weight
            )
        }
        (phase, _, _) => format!(
            ", {}",
            phase.map_or("untagged".to_owned(), |p| p.to_string())
        ),
    };
    Refusal::new(
        RefusalKind::Busy,
        format!(
            "release {release} is in progress in target group {target_group} (fleet {}{at}); \
             resume it by re-running its deploy (--release {release}), or stop it with \
             `greenlight abort`",
            green.occupant.fleet.name
        ),
    )
}
