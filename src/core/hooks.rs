//! Hooks: the user's own checks (shell commands) at the release's gates. Which stage runs when
//! is the stage machine's to decide; which stages are done is recorded on the release's fleet
//! (`greenlight:hooks-done`), so a resumed release does not run a finished stage again.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::plan::StepNumber;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", content = "step", rename_all = "snake_case")]
pub enum HookStage {
    /// Green is healthy and reachable through test traffic; no production request yet.
    PreTraffic,
    /// After a canary step took effect.
    AfterStep(StepNumber),
    /// After all traffic moved to the new release, before it is declared live.
    PostTraffic,
}

impl HookStage {
    /// The word recorded in `greenlight:hooks-done`, e.g. `after_step:2`.
    pub fn encode(self) -> String {
        match self {
            HookStage::PreTraffic => "pre_traffic".to_owned(),
            HookStage::AfterStep(n) => format!("after_step:{n}"),
            HookStage::PostTraffic => "post_traffic".to_owned(),
        }
    }

    pub fn decode(value: &str) -> Option<HookStage> {
        match value.trim() {
            "pre_traffic" => Some(HookStage::PreTraffic),
            "post_traffic" => Some(HookStage::PostTraffic),
            other => other
                .strip_prefix("after_step:")
                .and_then(|n| n.parse().ok())
                .map(|n| HookStage::AfterStep(StepNumber(n))),
        }
    }

    /// The config key listing this stage's commands.
    pub fn key(self) -> &'static str {
        match self {
            HookStage::PreTraffic => "pre_traffic",
            HookStage::AfterStep(_) => "after_step",
            HookStage::PostTraffic => "post_traffic",
        }
    }
}

impl fmt::Display for HookStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookStage::AfterStep(n) => write!(f, "after_step (step {n})"),
            other => f.write_str(other.key()),
        }
    }
}

/// `[hooks]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HooksSpec {
    pub pre_traffic: Vec<String>,
    pub after_step: Vec<String>,
    pub post_traffic: Vec<String>,
    /// How long each command may run.
    pub timeout: Duration,
}

pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl HooksSpec {
    pub fn commands(&self, stage: HookStage) -> &[String] {
        match stage {
            HookStage::PreTraffic => &self.pre_traffic,
            HookStage::AfterStep(_) => &self.after_step,
            HookStage::PostTraffic => &self.post_traffic,
        }
    }
}

/// The stages recorded as done, from the tag's value.
pub fn done(value: Option<&str>) -> Vec<HookStage> {
    value
        .unwrap_or_default()
        .split(',')
        .filter_map(HookStage::decode)
        .collect()
}

/// The tag's value with `stage` added.
pub fn with_done(value: Option<&str>, stage: HookStage) -> String {
    let mut stages = done(value);
    if !stages.contains(&stage) {
        stages.push(stage);
    }
    stages
        .iter()
        .map(|s| s.encode())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_through_the_tag() {
        let value = with_done(None, HookStage::PreTraffic);
        let value = with_done(Some(&value), HookStage::AfterStep(StepNumber(2)));
        let value = with_done(Some(&value), HookStage::AfterStep(StepNumber(2)));
        assert_eq!(value, "pre_traffic,after_step:2");
        assert_eq!(
            done(Some(&value)),
            [HookStage::PreTraffic, HookStage::AfterStep(StepNumber(2))]
        );
        assert_eq!(
            done(Some("nonsense,post_traffic")),
            [HookStage::PostTraffic]
        );
    }
}
