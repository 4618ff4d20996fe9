//! Why a release stopped or a command failed: a code for machines, a description for people,
//! and what it is about (a fleet, an instance, an alarm, a hook, a service) when there is one.
//!
//! A stop's reason outlives the process that decided it: it is recorded on the release's fleet
//! (tag `greenlight:abort`) before test traffic is closed, and the next pass, perhaps another
//! process, fails the release with it. [`Reason::to_tag`] and [`Reason::from_tag`] keep the code
//! and target through that tag.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One per cause; serialized in snake_case (the JSON events' `reasons[].code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    // Why a release stopped.
    /// Green was not healthy by its health deadline (target: the fleet).
    HealthTimeout,
    /// One of green's targets was not healthy at the deadline, with AWS's reason (target: the
    /// instance).
    TargetUnhealthy,
    /// Green took traffic and lost its healthy targets, or did not get them back in time
    /// (target: the fleet).
    HealthLost,
    /// An alarm of `[analysis] alarms` was in ALARM (target: the alarm).
    Alarm,
    /// Metric analysis failed at a gate (target: the release).
    AnalysisFailed,
    /// Metric analysis was inconclusive and `[analysis] inconclusive = "fail"`.
    AnalysisInconclusive,
    /// A hook failed, timed out or could not start (target: its command).
    HookFailed,
    /// `greenlight abort` (target: who ran it).
    Aborted,
    /// `greenlight rollback` while the release was in progress (target: who ran it).
    RolledBack,
    /// Recorded without a code (by an older greenlight, or by hand).
    Recorded,
    // Why a command failed (the `error` event), one per exit code family.
    /// The config file is missing or wrong.
    Config,
    /// A flag, a name or an AWS resource the request names is wrong; nothing changed.
    BadInput,
    /// The live fleet cannot be twinned faithfully (target: the fleet).
    Twin,
    /// The release failed without a recorded reason.
    ReleaseFailed,
    /// Another runner holds the service's lock (target: the service).
    Locked,
    /// Another release or runner is in the way.
    Busy,
    /// AWS is in a state greenlight will not act on by itself.
    NeedsAttention,
    /// An AWS call failed (target: the operation).
    Aws,
    /// `cleanup` failed for a service (target: the service).
    CleanupFailed,
    /// A signal stopped the run at a safe point (target: the signal).
    Interrupted,
    /// Bad command-line syntax.
    Usage,
    /// A bug in greenlight.
    Internal,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::HealthTimeout => "health_timeout",
            ReasonCode::TargetUnhealthy => "target_unhealthy",
            ReasonCode::HealthLost => "health_lost",
            ReasonCode::Alarm => "alarm",
            ReasonCode::AnalysisFailed => "analysis_failed",
            ReasonCode::AnalysisInconclusive => "analysis_inconclusive",
            ReasonCode::HookFailed => "hook_failed",
            ReasonCode::Aborted => "aborted",
            ReasonCode::RolledBack => "rolled_back",
            ReasonCode::Recorded => "recorded",
            ReasonCode::Config => "config",
            ReasonCode::BadInput => "bad_input",
            ReasonCode::Twin => "twin",
            ReasonCode::ReleaseFailed => "release_failed",
            ReasonCode::Locked => "locked",
            ReasonCode::Busy => "busy",
            ReasonCode::NeedsAttention => "needs_attention",
            ReasonCode::Aws => "aws",
            ReasonCode::CleanupFailed => "cleanup_failed",
            ReasonCode::Interrupted => "interrupted",
            ReasonCode::Usage => "usage",
            ReasonCode::Internal => "internal",
        }
    }

    /// The codes a stop can be recorded with (what [`Reason::from_tag`] reads back).
    const STOPS: [ReasonCode; 9] = [
        ReasonCode::HealthTimeout,
        ReasonCode::TargetUnhealthy,
        ReasonCode::HealthLost,
        ReasonCode::Alarm,
        ReasonCode::AnalysisFailed,
        ReasonCode::AnalysisInconclusive,
        ReasonCode::HookFailed,
        ReasonCode::Aborted,
        ReasonCode::RolledBack,
    ];
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reason {
    pub fn new(code: ReasonCode, description: impl Into<String>) -> Reason {
        Reason {
            code,
            description: description.into(),
            target: None,
        }
    }

    pub fn on(mut self, target: impl Into<String>) -> Reason {
        self.target = Some(target.into());
        self
    }

    /// The reason as the value of tag `greenlight:abort`: `[code target] description`, or
    /// `[code] description`.
    pub fn to_tag(&self) -> String {
        if self.code == ReasonCode::Recorded {
            // Read back as it was: text without a code.
            return self.description.clone();
        }
        match &self.target {
            Some(target) => format!("[{} {target}] {}", self.code, self.description),
            None => format!("[{}] {}", self.code, self.description),
        }
    }

    /// A `greenlight:abort` value: a recorded stop ([`Reason::to_tag`]), an abort request
    /// (`by <who> at <time>`, written by `greenlight abort` for a deploy running elsewhere), or
    /// text without a code.
    pub fn from_tag(value: &str) -> Reason {
        if let Some(request) = value.strip_prefix("by ") {
            let who = request.split(" at ").next().unwrap_or(request);
            return Reason::new(ReasonCode::Aborted, format!("aborted {value}")).on(who);
        }
        let coded = value.strip_prefix('[').and_then(|rest| {
            let (head, description) = rest.split_once("] ")?;
            let (code, target) = match head.split_once(' ') {
                Some((code, target)) => (code, Some(target)),
                None => (head, None),
            };
            let code = ReasonCode::STOPS.into_iter().find(|c| c.as_str() == code)?;
            let reason = Reason::new(code, description);
            Some(match target {
                Some(target) => reason.on(target),
                None => reason,
            })
        });
        coded.unwrap_or_else(|| Reason::new(ReasonCode::Recorded, value))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// The descriptions, joined for one line (and the `greenlight:failure` tag).
pub fn describe(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(|r| r.description.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_stop_keeps_its_code_and_target_through_the_tag() {
        let cases = [
            Reason::new(ReasonCode::Alarm, "alarm checkout-5xx is in ALARM (x)").on("checkout-5xx"),
            Reason::new(
                ReasonCode::HookFailed,
                "hook `./smoke.sh` (pre_traffic) exited 1",
            )
            .on("./smoke.sh --fast"),
            Reason::new(ReasonCode::AnalysisFailed, "analysis failed at step 1/3: …"),
            Reason::new(
                ReasonCode::RolledBack,
                "rolled back by ci@host while in progress",
            ),
            Reason::new(ReasonCode::Recorded, "after_step hook ./check.sh exited 1"),
        ];
        for reason in cases {
            assert_eq!(
                Reason::from_tag(&reason.to_tag()),
                reason,
                "{}",
                reason.to_tag()
            );
        }
    }

    #[test]
    fn an_abort_request_and_uncoded_text_are_read_too() {
        let abort = Reason::from_tag("by ci@build-7 (pid 42) at 2026-11-26T01:00:00Z");
        assert_eq!(abort.code, ReasonCode::Aborted);
        assert_eq!(abort.target.as_deref(), Some("ci@build-7 (pid 42)"));
        assert_eq!(
            abort.description,
            "aborted by ci@build-7 (pid 42) at 2026-11-26T01:00:00Z"
        );
        for text in [
            "hook `x` (pre_traffic) exited 1",
            "[nonsense] made by hand",
            "[alarm",
            "",
        ] {
            let reason = Reason::from_tag(text);
            assert_eq!(reason.code, ReasonCode::Recorded, "{text}");
            assert_eq!(reason.description, text);
        }
    }

    #[test]
    fn codes_serialize_as_documented() {
        for code in ReasonCode::STOPS {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(code.as_str().to_owned())
            );
        }
        let json =
            serde_json::to_value(Reason::new(ReasonCode::Locked, "locked").on("checkout")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "locked", "description": "locked", "target": "checkout"})
        );
    }
}
