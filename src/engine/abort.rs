//! `greenlight abort`: stop the release in progress, in any strategy and at any stage. When
//! another runner is driving that release (it holds the lock), abort leaves a request on the
//! release's fleet and waits for that runner to carry it out, or for the lock to come free and
//! then does it itself.

use std::time::Duration;

use crate::core::cloud::{Cloud, CloudErrorKind};
use crate::core::decide::{Decision, Done, Wait, WaitReason, decide_abort, in_progress, live};
use crate::core::lock::LockRecord;
use crate::core::observed::Observed;
use crate::core::router::Slot;
use crate::core::tags::{self, timestamp};

use super::clock::Clock;
use super::context::Context;
use super::driver::{Ending, Options};
use super::events::{Event, Reporter, TICK_EVERY};
use super::failure::Failure;
use super::lease::Lease;
use super::observe::observe;

/// How long `abort` waits for the runner holding the lock to carry out its request.
pub const HANDOVER_PATIENCE: Duration = Duration::from_secs(120);

/// The commands whose runners act on an abort request left on a release's fleet: the ones that
/// drive a release.
pub const DRIVERS: [&str; 2] = ["deploy", "promote"];

/// How an abort ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aborted {
    /// `release` was stopped; `live` keeps all traffic.
    Stopped {
        release: String,
        live: String,
        slot: Slot,
    },
    /// No release was in progress.
    NothingInProgress { live: String, slot: Slot },
}

/// Stops the release in progress: traffic back to the live release in one call if any had
/// moved, green scaled to zero and tagged failed.
pub async fn abort<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
) -> Result<Aborted, Failure> {
    // Nothing in progress (or a state abort will not act on) changes nothing, not even the lock.
    let observed = ctx.first_look().await?;
    let by = ctx.holder.to_string();
    match decide_abort(ctx.spec, &observed, ctx.clock.now(), &by) {
        Decision::Refuse(refusal) => ctx.unless_locked(Err(refusal.into())).await,
        Decision::Done(Done::NothingInProgress { release, slot }) => {
            ctx.unless_locked(Ok(())).await?;
            Ok(finish(
                reporter,
                Aborted::NothingInProgress {
                    live: release,
                    slot,
                },
            ))
        }
        _ => stop_release(ctx, reporter, "abort").await,
    }
}

/// Abort's work, shared with `rollback` while a release is in progress: with the lock if it can
/// take it, else through the runner that holds it.
pub(super) async fn stop_release<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    command: &str,
) -> Result<Aborted, Failure> {
    match ctx.lock(command).await {
        Ok(lease) => {
            let aborted = stop_holding(ctx, reporter, lease, command).await?;
            Ok(finish(reporter, aborted))
        }
        Err(Failure::Locked(lock)) => hand_over(ctx, reporter, command, *lock).await,
        Err(other) => Err(other),
    }
}

/// Stops the release in progress, holding the lock; the caller reports how it ended.
async fn stop_holding<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    mut lease: Lease,
    command: &str,
) -> Result<Aborted, Failure> {
    let by = ctx.holder.to_string();
    let hint = if command == "rollback" {
        "re-run `greenlight rollback` to finish stopping the release"
    } else {
        "re-run `greenlight abort` to finish stopping the release"
    };
    let mut driver = ctx.driver(reporter, &mut lease);
    let ending = driver
        .drive(
            |observed, now| decide_abort(ctx.spec, observed, now, &by),
            Options {
                resume_hint: hint,
                ..Options::default()
            },
        )
        .await;
    let failed = driver.failed_release.take();
    ctx.unlock(lease, reporter).await;
    match ending? {
        Ending::Done(Done::NothingInProgress { release, slot }) => Ok(match failed {
            Some(stopped) => Aborted::Stopped {
                release: stopped,
                live: release,
                slot,
            },
            None => Aborted::NothingInProgress {
                live: release,
                slot,
            },
        }),
        other => Err(Failure::NeedsAttention(format!(
            "the abort ended unexpectedly: {other:?}"
        ))),
    }
}

fn finish(reporter: &mut dyn Reporter, aborted: Aborted) -> Aborted {
    match &aborted {
        Aborted::Stopped {
            release,
            live,
            slot,
        } => reporter.report(&Event::Aborted {
            release: release.clone(),
            live_release: live.clone(),
            slot: *slot,
        }),
        Aborted::NothingInProgress { live, slot } => reporter.report(&Event::NothingToAbort {
            live_release: live.clone(),
            slot: *slot,
        }),
    }
    aborted
}

/// Another runner holds the lock. If it drives the release in progress, ask it to stop that
/// release (a tag on the release's fleet it reads every pass) and wait until it has, or until
/// the lock comes free (it finished, or stopped at a gate) and stop the release here.
async fn hand_over<C: Cloud, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    command: &str,
    lock: LockRecord,
) -> Result<Aborted, Failure> {
    let spec = ctx.spec;
    if !DRIVERS.contains(&lock.command.as_str()) {
        // A rollback or an abort of its own holds it: nobody would read the request.
        return Err(Failure::Locked(Box::new(lock)));
    }
    let observed = observe(ctx.cloud, spec)
        .await
        .map_err(Failure::cloud(false))?;
    let live = live(spec, &observed)?;
    let Some(green) = in_progress(spec, &observed, &live) else {
        return Err(Failure::Locked(Box::new(lock)));
    };
    let release = green.release();
    let fleet = green.occupant.fleet.name.clone();
    let request = format!("by {} at {}", ctx.holder, timestamp(ctx.clock.now()));
    ctx.cloud
        .tag_fleet(&fleet, &[(tags::ABORT.to_owned(), tags::clip(&request))])
        .await
        .map_err(|e| match e.kind {
            // The fleet went away meanwhile: whoever holds the lock finished with it.
            CloudErrorKind::NotFound => Failure::Locked(Box::new(lock.clone())),
            _ => Failure::cloud(true)(e),
        })?;
    let deadline = ctx.clock.now() + HANDOVER_PATIENCE;
    let waiting = Wait {
        until: Some(deadline),
        why: WaitReason::Handover {
            release: release.clone(),
            driver: lock.holder_and_command(),
        },
    };
    reporter.report(&Event::waiting(&waiting));
    let mut wait = spec.health.interval;
    loop {
        if let Some(signal) = ctx.stop.requested() {
            return Err(Failure::Interrupted {
                signal,
                state: format!("the abort request on release {release} stays"),
                resume: "a running deploy will still stop it; else re-run `greenlight abort`"
                    .into(),
            });
        }
        reporter.tick(&waiting, ctx.clock.now());
        sleep_ticking(ctx, reporter, wait, &waiting).await;
        wait = (wait * 3 / 2).min(super::backoff::MAX_POLL_INTERVAL);
        let observed = match observe(ctx.cloud, spec).await {
            Ok(observed) => observed,
            Err(_) if ctx.clock.now() < deadline => continue,
            Err(e) => return Err(Failure::cloud(true)(e)),
        };
        match handed_over(ctx, &observed, &release) {
            Handover::Pending => {}
            Handover::Stopped(done) => return Ok(finish(reporter, done)),
            Handover::WentLive => {
                return Err(Failure::NeedsAttention(format!(
                    "release {release} went live before the running deploy saw the abort \
                     request; `greenlight rollback` returns to the previous release"
                )));
            }
        }
        // The runner may have let go without acting (it stopped at a gate, or died): then the
        // request is this command's to carry out.
        if ctx.held_by_another().await?.is_none() {
            match ctx.lock(command).await {
                Ok(lease) => {
                    let aborted = match stop_holding(ctx, reporter, lease, command).await? {
                        // The runner stopped it after this command's last look and let go:
                        // the abort it was asked for happened.
                        Aborted::NothingInProgress { live, slot } if live != release => {
                            Aborted::Stopped {
                                release: release.clone(),
                                live,
                                slot,
                            }
                        }
                        other => other,
                    };
                    return Ok(finish(reporter, aborted));
                }
                Err(Failure::Locked(_)) => {}
                Err(other) => return Err(other),
            }
        }
        if ctx.clock.now() >= deadline {
            return Err(Failure::Busy(format!(
                "asked {} to abort release {release} (a greenlight:abort tag on fleet {fleet}), \
                 and it has not yet; it still holds the lock",
                lock.holder
            )));
        }
    }
}

/// Sleeps `duration` in slices of at most [`TICK_EVERY`], telling the reporter after each that
/// the wait goes on (a progress line redraws, a log gets its heartbeat); wakes early on a signal.
async fn sleep_ticking<C, K: Clock>(
    ctx: &Context<'_, C, K>,
    reporter: &mut dyn Reporter,
    duration: Duration,
    waiting: &Wait,
) {
    let end = ctx.clock.now() + duration;
    loop {
        let now = ctx.clock.now();
        if now >= end || ctx.stop.requested().is_some() {
            return;
        }
        ctx.clock
            .sleep(end.duration_since(now).unwrap_or_default().min(TICK_EVERY))
            .await;
        let now = ctx.clock.now();
        if now < end {
            reporter.tick(waiting, now);
        }
    }
}

enum Handover {
    Pending,
    Stopped(Aborted),
    WentLive,
}

/// Whether the runner holding the lock has stopped `release` yet.
fn handed_over<C, K>(ctx: &Context<'_, C, K>, observed: &Observed, release: &str) -> Handover {
    let Ok(live) = live(ctx.spec, observed) else {
        return Handover::Pending;
    };
    match in_progress(ctx.spec, observed, &live) {
        Some(green) if green.release() == release => Handover::Pending,
        _ if live.occupant.release() == release => Handover::WentLive,
        _ => Handover::Stopped(Aborted::Stopped {
            release: release.to_owned(),
            live: live.occupant.release(),
            slot: live.slot,
        }),
    }
}
