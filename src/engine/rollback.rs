//! `greenlight rollback`: the previous release takes all traffic again, in one router call, once.

use crate::core::cloud::Cloud;
use crate::core::decide::{Decision, Done, decide_rollback, in_progress, live};
use crate::core::router::Slot;

use super::abort::{Aborted, stop_release};
use super::clock::Clock;
use super::context::Context;
use super::driver::{Ending, Options};
use super::events::{Event, Reporter};
use super::failure::Failure;
use super::observe::observe;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolledBack {
    /// `release` takes all traffic again; `flipped` is false when this run only finished an
    /// interrupted rollback.
    To {
        release: String,
        slot: Slot,
        flipped: bool,
    },
    /// An earlier rollback already made `release` live (from `from`; empty when `--to` named the
    /// live release): nothing was done.
    Already {
        release: String,
        slot: Slot,
        from: String,
    },
    /// A release was in progress: it was stopped instead (`rollback` during a release is
    /// `abort`).
    Aborted(Aborted),
}

/// Routes all traffic to the previous release if it is still warm and healthy; with `to`, to
/// that release only.
///
/// # Guarantees
/// - Nothing is awaited between the observation that found the previous release healthy and
///   the flip but the lock check, which makes no call unless the lock is due for renewal.
/// - Run twice, the second run changes nothing: the release a rollback left is marked, and a
///   plain rollback does not return to it.
pub async fn rollback<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    to: Option<&str>,
) -> Result<RolledBack, Failure> {
    let spec = ctx.spec;
    let by = ctx.holder.to_string();
    // Decide once before taking the lock: a rollback that would refuse, or has nothing to do,
    // changes nothing in AWS, not even the lock.
    let observed = ctx.first_look().await?;
    let releasing = live(spec, &observed)
        .ok()
        .is_some_and(|l| in_progress(spec, &observed, &l).is_some());
    let decision = decide_rollback(spec, &observed, ctx.clock.now(), to, &by);
    if !matches!(decision, Decision::Act(_) | Decision::Wait(_)) {
        // Nothing to do, or a refusal: unless a runner holding the lock is changing things
        // right now, which makes this observation stale.
        ctx.unless_locked(Ok(())).await?;
    }
    match decision {
        Decision::Refuse(refusal) => return Err(refusal.into()),
        Decision::Done(Done::AlreadyRolledBack {
            release,
            slot,
            from,
        }) => {
            reporter.report(&Event::AlreadyRolledBack {
                release: release.clone(),
                slot,
                from: from.clone(),
            });
            return Ok(RolledBack::Already {
                release,
                slot,
                from,
            });
        }
        Decision::Done(
            Done::Live { release, slot } | Done::NothingInProgress { release, slot },
        ) => {
            reporter.report(&Event::AlreadyRolledBack {
                release: release.clone(),
                slot,
                from: String::new(),
            });
            return Ok(RolledBack::Already {
                release,
                slot,
                from: String::new(),
            });
        }
        Decision::Act(_) | Decision::Wait(_) => {}
    }
    let mut lease = match ctx.lock("rollback").await {
        Ok(lease) => lease,
        // A release in progress elsewhere: rollback means stopping it, through its runner.
        Err(Failure::Locked(_)) if releasing => {
            return stop_release(ctx, reporter, "rollback")
                .await
                .map(RolledBack::Aborted);
        }
        Err(other) => return Err(other),
    };
    let mut driver = ctx.driver(reporter, &mut lease);
    let ending = driver
        .drive(
            |observed, now| decide_rollback(spec, observed, now, to, &by),
            Options {
                // A release in progress was stopped: that is this rollback's end.
                end_on_failure: true,
                resume_hint: "re-run `greenlight rollback` to finish it (it will not flip back)",
                ..Options::default()
            },
        )
        .await;
    let (flipped, changed, stopped) = (
        driver.moved_traffic,
        driver.changed,
        driver.failed_release.take(),
    );
    ctx.unlock(lease, reporter).await;
    let done = match ending? {
        Ending::Done(done) => done,
        Ending::Failed { release, .. } => {
            let observed = observe(ctx.cloud, spec)
                .await
                .map_err(Failure::cloud(true))?;
            let live = live(spec, &observed)?;
            let aborted = Aborted::Stopped {
                release,
                live: live.occupant.release(),
                slot: live.slot,
            };
            if let Aborted::Stopped {
                release,
                live,
                slot,
            } = &aborted
            {
                reporter.report(&Event::Aborted {
                    release: release.clone(),
                    live_release: live.clone(),
                    slot: *slot,
                });
            }
            return Ok(RolledBack::Aborted(aborted));
        }
        other => {
            return Err(Failure::NeedsAttention(format!(
                "the rollback ended unexpectedly: {other:?}"
            )));
        }
    };
    let (live_release, slot) = match &done {
        Done::Live { release, slot }
        | Done::NothingInProgress { release, slot }
        | Done::AlreadyRolledBack { release, slot, .. } => (release.clone(), *slot),
    };
    let result = match (stopped, done) {
        (Some(release), _) => RolledBack::Aborted(Aborted::Stopped {
            release,
            live: live_release,
            slot,
        }),
        // This run's flip, or the finishing of an interrupted rollback's: a rollback happened.
        (
            None,
            Done::AlreadyRolledBack { .. } | Done::Live { .. } | Done::NothingInProgress { .. },
        ) if flipped || changed => RolledBack::To {
            release: live_release,
            slot,
            flipped,
        },
        (None, Done::AlreadyRolledBack { from, .. }) => RolledBack::Already {
            release: live_release,
            slot,
            from,
        },
        (None, Done::Live { .. } | Done::NothingInProgress { .. }) => RolledBack::To {
            release: live_release,
            slot,
            flipped,
        },
    };
    match &result {
        RolledBack::To {
            release,
            slot,
            flipped,
        } => reporter.report(&Event::RolledBack {
            release: release.clone(),
            slot: *slot,
            flipped: *flipped,
        }),
        RolledBack::Already {
            release,
            slot,
            from,
        } => reporter.report(&Event::AlreadyRolledBack {
            release: release.clone(),
            slot: *slot,
            from: from.clone(),
        }),
        RolledBack::Aborted(Aborted::Stopped {
            release,
            live,
            slot,
        }) => reporter.report(&Event::Aborted {
            release: release.clone(),
            live_release: live.clone(),
            slot: *slot,
        }),
        RolledBack::Aborted(Aborted::NothingInProgress { .. }) => {}
    }
    Ok(result)
}
