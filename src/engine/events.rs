//! What a command reports while it works. The human renderer prints them as progress lines;
//! the JSON renderer prints one object per line for pipelines.

use serde::Serialize;

use std::time::{Duration, SystemTime};

use crate::core::decide::{Action, Wait, WaitReason};
use crate::core::health::FleetHealth;
use crate::core::names::{FleetName, TargetGroupArn};
use crate::core::plan::{Percent, StepNumber, Strategy};
use crate::core::reason::Reason;
use crate::core::router::Slot;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A deploy read the service and knows where it stands.
    DeployStarted {
        service: String,
        release: String,
        live_release: String,
        live_slot: Slot,
        live_target_group: TargetGroupArn,
        idle_target_group: TargetGroupArn,
        strategy: Strategy,
        /// The plan, e.g. `canary 5@5m,25@10m,50@manual,100`.
        plan: String,
    },
    /// A step is about to be applied.
    Step {
        #[serde(flatten)]
        action: Action,
    },
    /// Green's health, reported when it changes.
    Health {
        fleet: FleetName,
        desired: u32,
        in_service: u32,
        healthy: u32,
        summary: String,
    },
    /// A timed pause (bake) at a step; the next step follows at `until` unless promoted.
    Pause {
        release: String,
        step: StepNumber,
        of: u32,
        weight: Percent,
        #[serde(with = "rfc3339")]
        until: SystemTime,
    },
    /// A manual gate: the release holds its weight until `greenlight promote`.
    Gate {
        release: String,
        step: StepNumber,
        of: u32,
        weight: Percent,
    },
    /// `deploy --no-wait` (or `promote`) stopped at a manual gate; the release waits there.
    Paused {
        release: String,
        step: StepNumber,
        of: u32,
        weight: Percent,
    },
    /// `promote` recorded its request; `driver` says who carries it out.
    Promoted {
        release: String,
        /// The step whose pause ended; absent with `--full`.
        step: Option<StepNumber>,
        full: bool,
        /// `this process`, or the runner holding the lock, e.g.
        /// ``ci@build-7 (pid 4242) running `greenlight deploy` ``.
        driver: String,
    },
    /// `abort` (or `rollback` during a release) asked the running deploy to stop it.
    AbortRequested {
        release: String,
        driver: String,
    },
    /// The release in progress was stopped: traffic is all on the live release again.
    Aborted {
        release: String,
        live_release: String,
        slot: Slot,
    },
    /// The pause is over but the analysis is inconclusive: waiting for more requests.
    Analysis {
        release: String,
        step: StepNumber,
        of: u32,
        weight: Percent,
        verdict: String,
    },
    /// A hook ran: which, how it ended, and (when it failed) its last lines.
    Hook {
        #[serde(flatten)]
        run: crate::engine::hooks::HookRun,
    },
    /// `abort` found no release in progress.
    NothingToAbort {
        live_release: String,
        slot: Slot,
    },
    Warning {
        message: String,
    },
    /// The release takes all traffic.
    Released {
        release: String,
        slot: Slot,
        /// False when the release was already live before this run.
        flipped: bool,
    },
    /// Green never became healthy; traffic stayed on the previous release.
    ReleaseFailed {
        release: String,
        reasons: Vec<Reason>,
    },
    /// Traffic is back on the previous release.
    RolledBack {
        release: String,
        slot: Slot,
        /// False when it was already there (an earlier rollback, or one this run finished).
        flipped: bool,
    },
    /// Nothing to do: the release live now is the one an earlier rollback went back to.
    AlreadyRolledBack {
        release: String,
        slot: Slot,
        /// The release it was rolled back from, and when.
        from: String,
    },
    /// The command stopped with an error; `exit_code` is the process's.
    Error {
        exit_code: u8,
        message: String,
        /// The same, structured: one per cause (a release's reasons, or the failure's kind).
        reasons: Vec<Reason>,
    },
}

impl Event {
    /// The event for a wait the core decided.
    pub fn waiting(wait: &Wait) -> Event {
        match &wait.why {
            WaitReason::Health { fleet, health } => Event::health(fleet, health),
            WaitReason::Pause {
                release,
                step,
                of,
                weight,
            } => Event::Pause {
                release: release.clone(),
                step: *step,
                of: *of,
                weight: *weight,
                until: wait.until.unwrap_or(SystemTime::UNIX_EPOCH),
            },
            WaitReason::Gate {
                release,
                step,
                of,
                weight,
            } => Event::Gate {
                release: release.clone(),
                step: *step,
                of: *of,
                weight: *weight,
            },
            WaitReason::Analysis {
                release,
                step,
                of,
                weight,
                verdict,
            } => Event::Analysis {
                release: release.clone(),
                step: *step,
                of: *of,
                weight: *weight,
                verdict: verdict.clone(),
            },
            WaitReason::Handover { release, driver } => Event::AbortRequested {
                release: release.clone(),
                driver: driver.clone(),
            },
        }
    }

    pub fn health(fleet: &FleetName, health: &FleetHealth) -> Event {
        Event::Health {
            fleet: fleet.clone(),
            desired: health.desired,
            in_service: health.in_service,
            healthy: health.healthy,
            summary: health.progress(),
        }
    }
}

/// How often, at most, a command that waits lets its reporter know (see [`Reporter::tick`]).
pub const TICK_EVERY: Duration = Duration::from_secs(5);

/// Where events go.
pub trait Reporter: Send {
    fn report(&mut self, event: &Event);

    /// The command is still waiting on `wait` at `now`: called on every poll, and at least
    /// every [`TICK_EVERY`] while it sleeps between polls. Events say when a wait changes;
    /// this is for live displays and heartbeats. No event: the JSON stream ignores it.
    fn tick(&mut self, wait: &Wait, now: SystemTime) {
        let _ = (wait, now);
    }
}

/// Keeps every event; for tests.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Event>,
}

impl Reporter for Recorder {
    fn report(&mut self, event: &Event) {
        self.events.push(event.clone());
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::core::tags::timestamp(*t))
    }
}
