//! Verification inside the stage machine: test traffic opened for a release and closed after it,
//! hooks at their stages, alarms that stop a release, and the metrics verdict at each gate.

use super::situation::{InProgress, Live};
use super::{Action, HookContext, Refusal, RefusalKind};
use crate::core::analysis::{Verdict, firing, verdict};
use crate::core::hooks::{self, HookStage};
use crate::core::names::{ListenerArn, TargetGroupArn};
use crate::core::observed::Observed;
use crate::core::plan::{Percent, StepNumber};
use crate::core::reason::{Reason, ReasonCode};
use crate::core::router::{Forward, RouterId, RouterWrite, Stickiness, Weight};
use crate::core::spec::Spec;
use crate::core::test_traffic::{self, ListenerRule};

/// Whether the test listener forwards to `target_group` alone.
fn test_listener_on(observed: &Observed, target_group: &TargetGroupArn) -> bool {
    observed.verify.test_listener.as_ref().is_some_and(|l| {
        let taking: Vec<&Forward> = l.forwards().iter().filter(|f| f.weight.get() > 0).collect();
        taking.len() == 1 && &taking[0].target_group == target_group
    })
}

/// The test listener pointed at `to`, if it has one and is not there yet.
pub(super) fn point_test_listener(
    spec: &Spec,
    observed: &Observed,
    to: &TargetGroupArn,
) -> Option<Action> {
    let listener = spec.test_traffic.listener.as_ref()?;
    let state = observed.verify.test_listener.as_ref()?;
    if test_listener_on(observed, to) {
        return None;
    }
    Some(Action::PointTestListener {
        listener: listener.clone(),
        to: to.clone(),
        write: RouterWrite {
            expected: state.forwards().to_vec(),
            forwards: vec![Forward {
                target_group: to.clone(),
                weight: Weight::new(100).expect("100 is a weight"),
            }],
            stickiness: Stickiness::Keep,
        },
    })
}

/// Whether the release's "join" is the test listener: with one, green is health-checked
/// because the test listener uses its target group, and the production router is left alone
/// until the first step (how green is joined on a Network Load Balancer).
pub(super) fn joins_through_test_listener(spec: &Spec) -> bool {
    spec.test_traffic.listener.is_some()
}

/// Whether the idle target group is health-checked: named by the router, or the test listener
/// forwards to it.
pub(super) fn joined(spec: &Spec, observed: &Observed, idle: &TargetGroupArn) -> bool {
    if joins_through_test_listener(spec) {
        test_listener_on(observed, idle)
    } else {
        observed.router.names(idle)
    }
}

/// greenlight's test rule for `release`, if there is one.
fn test_rule<'a>(spec: &Spec, observed: &'a Observed, release: &str) -> Option<&'a ListenerRule> {
    observed
        .verify
        .rules
        .as_ref()?
        .iter()
        .find(|r| r.test_release(&spec.service) == Some(release))
}

/// Where a test-traffic rule goes on `rules` (the router's listener's): the listener, the
/// router's own rule (for a rule router) and a free priority evaluated before it.
fn test_rule_place<'a>(
    spec: &Spec,
    rules: &'a [ListenerRule],
) -> Result<(ListenerArn, Option<&'a ListenerRule>, u32), Refusal> {
    let (listener, router_rule) = match &spec.router {
        RouterId::Listener(arn) => (arn.clone(), None),
        RouterId::Rule(arn) => (
            test_traffic::listener_of(arn).ok_or_else(|| {
                Refusal::attention(format!("cannot tell the listener of rule {arn}"))
            })?,
            rules.iter().find(|r| &r.arn == arn),
        ),
    };
    let before = router_rule.and_then(|r| r.priority);
    let priority = test_traffic::free_priority(rules, before).ok_or_else(|| {
        Refusal::attention(match before {
            Some(p) => format!(
                "listener {listener} has no free rule priority before the router's rule ({p}), \
                 where the test-traffic rule must go to be matched first; free one up, or \
                 remove [test_traffic] header"
            ),
            None => format!(
                "listener {listener} has no free rule priority for the test-traffic rule; \
                 remove a rule or [test_traffic] header"
            ),
        })
    })?;
    Ok((listener, router_rule, priority))
}

/// What must hold before a new release begins (before any change): room for its test-traffic
/// rule, and no alarm it is watched by already in `ALARM` (the release would only be stopped
/// for it once green is healthy, after a fleet was built for nothing).
pub fn ready_to_start(spec: &Spec, observed: &Observed) -> Result<(), Refusal> {
    if let (Some(_), Some(rules)) = (&spec.test_traffic.header, &observed.verify.rules) {
        // Before any change, the config does not fit the listener: bad input, like a missing
        // alarm. (Found later, with green built, it needs attention.)
        test_rule_place(spec, rules)
            .map_err(|refusal| Refusal::new(RefusalKind::BadInput, refusal.message))?;
    }
    if let Some(alarm) = firing(&observed.verify.alarms) {
        return Err(Refusal::attention(format!(
            "alarm {} is in ALARM ({}); a release would be stopped for it as soon as it is \
             healthy. Wait until the alarm is OK, or take it out of [analysis] alarms, then retry",
            alarm.name, alarm.reason
        )));
    }
    Ok(())
}

/// Test traffic for a green that is ready: the header rule (once), and the test listener on
/// green. `None` when both are in place (or not configured).
pub(super) fn open(
    spec: &Spec,
    observed: &Observed,
    green: &InProgress<'_>,
) -> Result<Option<Action>, Refusal> {
    let release = green.release();
    let green_tg = spec.slots.get(green.slot);
    if let (Some(header), Some(rules)) = (&spec.test_traffic.header, &observed.verify.rules)
        && test_rule(spec, observed, &release).is_none()
    {
        let (listener, router_rule, priority) = test_rule_place(spec, rules)?;
        return Ok(Some(Action::OpenTestRule {
            fleet: green.occupant.fleet.name.clone(),
            release: release.clone(),
            listener,
            priority,
            conditions: test_traffic::conditions(router_rule, header, &release),
            target_group: green_tg.clone(),
        }));
    }
    Ok(point_test_listener(spec, observed, green_tg))
}

/// Test traffic left over from releases that are not `keep` (the release in progress, still
/// under test): their rules removed, and (with `listener`) the test listener back on the live
/// release when nothing is in progress. A deploy leaves the test listener alone: it is about to
/// point it at its own new release.
pub(super) fn close_stale(
    spec: &Spec,
    observed: &Observed,
    live: &Live<'_>,
    keep: Option<&str>,
    listener: bool,
) -> Option<Action> {
    if let Some(rule) = observed.verify.rules.iter().flatten().find(|r| {
        r.test_release(&spec.service)
            .is_some_and(|release| Some(release) != keep)
    }) {
        return Some(Action::CloseTestRule {
            rule: rule.arn.clone(),
            release: rule
                .test_release(&spec.service)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    if keep.is_none() && listener {
        return point_test_listener(spec, observed, spec.slots.get(live.slot));
    }
    None
}

/// Closing `release`'s own test traffic (it was stopped, or promoted): its rule, then (when it
/// was stopped) the test listener back on the live release.
pub(super) fn close_own(
    spec: &Spec,
    observed: &Observed,
    release: &str,
    listener_back_to: Option<&TargetGroupArn>,
) -> Option<Action> {
    if let Some(rule) = test_rule(spec, observed, release) {
        return Some(Action::CloseTestRule {
            rule: rule.arn.clone(),
            release: release.to_owned(),
        });
    }
    listener_back_to.and_then(|to| point_test_listener(spec, observed, to))
}

/// Why the release must stop for an alarm, if one of `[analysis] alarms` is in ALARM.
pub(super) fn alarm_reason(observed: &Observed) -> Option<Reason> {
    firing(&observed.verify.alarms).map(|a| {
        Reason::new(
            ReasonCode::Alarm,
            format!(
                "alarm {} is in ALARM ({})",
                a.name,
                a.reason.trim().replace('\n', " ")
            ),
        )
        .on(a.name.clone())
    })
}

/// Where a hook stage stands: what its hooks are told besides the release itself.
pub(super) struct HookAt {
    pub stage: HookStage,
    pub live_release: String,
    pub weight: Percent,
    pub step: Option<StepNumber>,
    pub steps: u32,
}

/// The hooks of `at.stage` for the release in `green_slot`, if there are any and they have not
/// run yet.
pub(super) fn hooks_due(
    spec: &Spec,
    green_slot: crate::core::router::Slot,
    green: &crate::core::observed::Occupant<'_>,
    at: HookAt,
) -> Option<Action> {
    if spec.hooks.commands(at.stage).is_empty()
        || hooks::done(green.tags.hooks_done.as_deref()).contains(&at.stage)
    {
        return None;
    }
    Some(Action::RunHooks {
        fleet: green.fleet.name.clone(),
        release: green.release(),
        stage: at.stage,
        done: hooks::with_done(green.tags.hooks_done.as_deref(), at.stage),
        context: HookContext {
            live_release: at.live_release,
            green_target_group: Some(spec.slots.get(green_slot).clone()),
            live_target_group: Some(spec.slots.get(green_slot.other()).clone()),
            slot: Some(green_slot),
            weight: at.weight,
            step: at.step,
            steps: at.steps,
        },
    })
}

/// The metrics verdict for the step green is at; metrics that were not read make it
/// inconclusive rather than let the gate pass unchecked.
pub(super) fn metrics_verdict(spec: &Spec, observed: &Observed) -> Verdict {
    match &observed.verify.metrics {
        Some(c) => verdict(&spec.analysis, c),
        None => Verdict::Inconclusive {
            summary: "no metrics read".to_owned(),
            reasons: vec!["green's and blue's metrics were not read".to_owned()],
        },
    }
}
