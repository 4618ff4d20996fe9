//! What a command reports while it works. The human renderer prints them as progress lines;
//! the JSON renderer prints one object per line for pipelines.

use serde::Serialize;

use crate::core::decide::Action;
use crate::core::health::FleetHealth;
use crate::core::names::{FleetName, TargetGroupArn};
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
        reasons: Vec<String>,
    },
    /// Traffic is back on the previous release.
    RolledBack {
        release: String,
        slot: Slot,
    },
    /// The command stopped with an error; `exit_code` is the process's.
    Error {
        exit_code: u8,
        message: String,
    },
}

impl Event {
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

/// Where events go.
pub trait Reporter: Send {
    fn report(&mut self, event: &Event);
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
