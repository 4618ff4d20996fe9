//! A release plan: the steps traffic moves through from the live release to the new one.
//!
//! Blue/green is the one-step plan `[100%]` (or `[0% until promoted, 100%]` with a gate before
//! the flip); a canary is any strictly increasing list of weights ending at 100. The plan a
//! release started with is written into its fleet's tags, so a re-run, `promote` or `abort` from
//! another process sees the same plan whatever the config says by then.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Percent of traffic to the new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct Percent(u8);

impl Percent {
    pub const ZERO: Percent = Percent(0);
    pub const ALL: Percent = Percent(100);

    pub fn new(value: u8) -> Option<Percent> {
        (value <= 100).then_some(Percent(value))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// What the live release keeps: the two always sum to 100.
    pub fn rest(self) -> Percent {
        Percent(100 - self.0)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// How long a step holds its weight before the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "seconds", rename_all = "snake_case")]
pub enum Pause {
    /// Go on as soon as the weight is in place.
    None,
    /// Hold for this long (the bake time), counted from when the weight took effect.
    For(#[serde(serialize_with = "seconds")] Duration),
    /// Hold until someone runs `greenlight promote`.
    Manual,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    pub weight: Percent,
    pub pause: Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// All traffic moves in one call once the new release is healthy.
    BlueGreen,
    /// Traffic moves by weighted steps, with pauses and gates between them.
    Canary,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::BlueGreen => "bluegreen",
            Strategy::Canary => "canary",
        }
    }

    pub fn parse(value: &str) -> Option<Strategy> {
        match value {
            "bluegreen" => Some(Strategy::BlueGreen),
            "canary" => Some(Strategy::Canary),
            _ => None,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The steps of one release. Invariants (checked by [`Plan::new`]): at least one step, weights
/// strictly increasing, the last step is 100% with no pause, only the first step may be 0%.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub strategy: Strategy,
    pub steps: Vec<Step>,
}

/// The most steps a plan may have: the encoded plan must fit in one tag value.
pub const MAX_STEPS: usize = 20;

/// Where a release is in its plan: the 1-based number of the step whose weight is in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StepNumber(pub u32);

impl fmt::Display for StepNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Plan {
    pub fn new(strategy: Strategy, steps: Vec<Step>) -> Result<Plan, String> {
        let Some(last) = steps.last() else {
            return Err("needs at least one step".into());
        };
        if steps.len() > MAX_STEPS {
            return Err(format!(
                "has {} steps; at most {MAX_STEPS} fit in the release's tags",
                steps.len()
            ));
        }
        if last.weight != Percent::ALL {
            return Err(format!(
                "ends at weight {}; the last step must be weight 100",
                last.weight.get()
            ));
        }
        if last.pause != Pause::None {
            return Err(
                "gives the last step (weight 100) a pause; the release is promoted when it is \
                 reached, so remove that pause"
                    .into(),
            );
        }
        let plan = Plan { strategy, steps };
        let encoded = plan.encode();
        if encoded.len() > super::tags::MAX_VALUE_LEN {
            return Err(format!(
                "is {} characters long written down, over the {} a tag holds; use fewer steps \
                 or shorter pauses",
                encoded.len(),
                super::tags::MAX_VALUE_LEN
            ));
        }
        let Plan { strategy, steps } = plan;
        for (n, pair) in steps.windows(2).enumerate() {
            if pair[1].weight <= pair[0].weight {
                return Err(format!(
                    "step {} (weight {}) does not increase on step {} (weight {}); weights must \
                     strictly increase",
                    n + 2,
                    pair[1].weight.get(),
                    n + 1,
                    pair[0].weight.get()
                ));
            }
        }
        Ok(Plan { strategy, steps })
    }

    /// Blue/green: one flip, optionally preceded by a gate at weight 0.
    pub fn blue_green(pause_before_flip: Option<Pause>) -> Plan {
        let flip = Step {
            weight: Percent::ALL,
            pause: Pause::None,
        };
        let steps = match pause_before_flip {
            None | Some(Pause::None) => vec![flip],
            Some(pause) => vec![
                Step {
                    weight: Percent::ZERO,
                    pause,
                },
                flip,
            ],
        };
        Plan {
            strategy: Strategy::BlueGreen,
            steps,
        }
    }

    pub fn len(&self) -> u32 {
        self.steps.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Step `n` (1-based).
    pub fn step(&self, n: StepNumber) -> Option<&Step> {
        (n.0 >= 1)
            .then(|| self.steps.get(n.0 as usize - 1))
            .flatten()
    }

    pub fn last(&self) -> StepNumber {
        StepNumber(self.len())
    }

    /// The step whose weight is `weight`, if any.
    pub fn step_with_weight(&self, weight: Percent) -> Option<StepNumber> {
        self.steps
            .iter()
            .position(|s| s.weight == weight)
            .map(|i| StepNumber(i as u32 + 1))
    }

    /// The tag encoding: `canary 5@5m,25@10m,50@manual,100` (durations in humantime).
    pub fn encode(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|s| match s.pause {
                Pause::None => s.weight.get().to_string(),
                Pause::For(d) => format!(
                    "{}@{}",
                    s.weight.get(),
                    humantime::format_duration(d).to_string().replace(' ', "")
                ),
                Pause::Manual => format!("{}@manual", s.weight.get()),
            })
            .collect();
        format!("{} {}", self.strategy, steps.join(","))
    }

    /// Reads [`Plan::encode`]'s form back; `None` for anything else.
    pub fn decode(value: &str) -> Option<Plan> {
        let (strategy, steps) = value.trim().split_once(' ')?;
        let strategy = Strategy::parse(strategy)?;
        let steps = steps
            .split(',')
            .map(|step| {
                let (weight, pause) = match step.split_once('@') {
                    Some((w, p)) => (w, Some(p)),
                    None => (step, None),
                };
                let weight = Percent::new(weight.trim().parse().ok()?)?;
                let pause = match pause.map(str::trim) {
                    None => Pause::None,
                    Some("manual") => Pause::Manual,
                    Some(d) => Pause::For(humantime::parse_duration(d).ok()?),
                };
                Some(Step { weight, pause })
            })
            .collect::<Option<Vec<Step>>>()?;
        Plan::new(strategy, steps).ok()
    }
}

/// What the pause of the current step says, given when its weight took effect and whether it
/// was promoted: the one pure rule the deploy loop, `promote` and `status` share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseState {
    /// The pause is over (or there was none): the next step may go.
    Over,
    /// A timed pause that ends at this time.
    Until(SystemTime),
    /// Waiting for `greenlight promote`.
    Manual,
}

pub fn pause_state(pause: Pause, since: SystemTime, promoted: bool, now: SystemTime) -> PauseState {
    if promoted {
        return PauseState::Over;
    }
    match pause {
        Pause::None => PauseState::Over,
        Pause::For(d) => match since.checked_add(d) {
            Some(end) if now < end => PauseState::Until(end),
            Some(_) => PauseState::Over,
            // Unreachable with durations bounded at parse time; never end a pause early.
            None => PauseState::Manual,
        },
        Pause::Manual => PauseState::Manual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(weight: u8, pause: Pause) -> Step {
        Step {
            weight: Percent::new(weight).unwrap(),
            pause,
        }
    }

    fn canary() -> Plan {
        Plan::new(
            Strategy::Canary,
            vec![
                step(0, Pause::Manual),
                step(5, Pause::For(Duration::from_secs(300))),
                step(25, Pause::For(Duration::from_secs(5400))),
                step(50, Pause::Manual),
                step(100, Pause::None),
            ],
        )
        .unwrap()
    }

    #[test]
    fn encodes_and_decodes() {
        let plan = canary();
        let text = plan.encode();
        assert_eq!(text, "canary 0@manual,5@5m,25@1h30m,50@manual,100");
        assert_eq!(Plan::decode(&text), Some(plan));
        assert_eq!(Plan::decode("bluegreen 100"), Some(Plan::blue_green(None)));
        assert_eq!(
            Plan::decode(&Plan::blue_green(Some(Pause::Manual)).encode()),
            Some(Plan::blue_green(Some(Pause::Manual)))
        );
    }

    #[test]
    fn a_plan_is_refused_unless_it_fits_in_a_tag() {
        let long = |pause: Duration| {
            let mut steps: Vec<Step> = (0..MAX_STEPS as u8 - 1)
                .map(|n| step(n * 5, Pause::For(pause)))
                .collect();
            steps.push(step(100, Pause::None));
            Plan::new(Strategy::Canary, steps)
        };
        let err = long(Duration::from_secs(364 * 86_400 + 86_399)).unwrap_err();
        assert!(err.contains("a tag holds"), "{err}");
        let plan = long(Duration::from_secs(600)).unwrap();
        assert!(plan.encode().len() <= crate::core::tags::MAX_VALUE_LEN);
        assert_eq!(Plan::decode(&plan.encode()), Some(plan));
    }

    #[test]
    fn rejects_what_is_not_a_plan() {
        let cases: Vec<(Vec<Step>, &str)> = vec![
            (vec![], "at least one step"),
            (vec![step(50, Pause::None)], "must be weight 100"),
            (
                vec![step(100, Pause::Manual)],
                "last step (weight 100) a pause",
            ),
            (
                vec![
                    step(25, Pause::None),
                    step(25, Pause::None),
                    step(100, Pause::None),
                ],
                "strictly increase",
            ),
            (
                vec![
                    step(50, Pause::None),
                    step(5, Pause::None),
                    step(100, Pause::None),
                ],
                "step 2 (weight 5) does not increase",
            ),
        ];
        for (steps, expected) in cases {
            let err = Plan::new(Strategy::Canary, steps.clone()).unwrap_err();
            assert!(err.contains(expected), "{steps:?}: {err}");
        }
        for bad in [
            "",
            "canary",
            "canary 5,50",
            "rolling 100",
            "canary 5@soon,100",
        ] {
            assert_eq!(Plan::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn strategies_are_named_as_the_config_names_them() {
        for strategy in [Strategy::BlueGreen, Strategy::Canary] {
            assert_eq!(
                serde_json::to_value(strategy).unwrap(),
                serde_json::Value::String(strategy.as_str().to_owned())
            );
        }
    }

    #[test]
    fn pause_states() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let min = Duration::from_secs(60);
        let cases = [
            (Pause::None, false, t0, PauseState::Over),
            (Pause::For(min), false, t0, PauseState::Until(t0 + min)),
            (Pause::For(min), false, t0 + min, PauseState::Over),
            (Pause::For(min), true, t0, PauseState::Over),
            (Pause::Manual, false, t0 + min * 1000, PauseState::Manual),
            (Pause::Manual, true, t0, PauseState::Over),
        ];
        for (pause, promoted, now, expected) in cases {
            assert_eq!(
                pause_state(pause, t0, promoted, now),
                expected,
                "{pause:?} {promoted}"
            );
        }
    }
}
