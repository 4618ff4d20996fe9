//! One fresh observation of the service: the router, the fleets on both slots, their targets,
//! and what verification reads when the config asks for it. Independent reads go out together.

use std::time::SystemTime;

use crate::core::analysis::Comparison;
use crate::core::cloud::{Cloud, CloudResult};
use crate::core::decide::{in_progress, live};
use crate::core::observed::{Observed, SlotObserved, VerifyObserved};
use crate::core::plan::Percent;
use crate::core::router::{RouterId, Slot};
use crate::core::spec::Spec;
use crate::core::tags::Phase;
use crate::core::test_traffic::listener_of;

pub async fn observe<C: Cloud>(cloud: &C, spec: &Spec) -> CloudResult<Observed> {
    let target_groups = [
        spec.slots.get(Slot::A).clone(),
        spec.slots.get(Slot::B).clone(),
    ];
    let (router, fleets, targets_a, targets_b, verify) = tokio::join!(
        cloud.router(&spec.router),
        cloud.fleets(&target_groups),
        cloud.target_health(&target_groups[0]),
        cloud.target_health(&target_groups[1]),
        observe_verification(cloud, spec),
    );
    let (router, fleets) = (router?, fleets?);
    let slot = |target_group: &crate::core::names::TargetGroupArn, targets| SlotObserved {
        fleets: fleets
            .iter()
            .filter(|f| f.target_groups.contains(target_group) && !f.deleting)
            .cloned()
            .collect(),
        target_group: target_group.clone(),
        targets,
    };
    let a = slot(&target_groups[0], targets_a?);
    let b = slot(&target_groups[1], targets_b?);
    Ok(Observed {
        router,
        slots: [a, b],
        verify: verify?,
    })
}

/// Test traffic and alarms, as far as the config names them.
async fn observe_verification<C: Cloud>(cloud: &C, spec: &Spec) -> CloudResult<VerifyObserved> {
    let rules = async {
        if spec.test_traffic.header.is_none() {
            return Ok(None);
        }
        let listener = match &spec.router {
            RouterId::Listener(arn) => Some(arn.clone()),
            RouterId::Rule(arn) => listener_of(arn),
        };
        match listener {
            Some(listener) => cloud.listener_rules(&listener).await.map(Some),
            None => Ok(None),
        }
    };
    let test_listener = async {
        match &spec.test_traffic.listener {
            Some(arn) => cloud
                .router(&RouterId::Listener(arn.clone()))
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let alarms = async {
        if spec.analysis.alarms.is_empty() {
            return Ok(Vec::new());
        }
        cloud.alarms(&spec.analysis.alarms).await
    };
    let (rules, test_listener, alarms) = tokio::join!(rules, test_listener, alarms);
    Ok(VerifyObserved {
        rules: rules?,
        test_listener: test_listener?,
        alarms: alarms?,
        metrics: None,
    })
}

/// Adds green's and blue's metrics over green's current step to `observed`, when metrics are
/// compared and green takes traffic: the one read a decision at a gate needs besides the rest.
pub async fn with_metrics<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    mut observed: Observed,
    now: SystemTime,
) -> CloudResult<Observed> {
    if !spec.analysis.compares_metrics() {
        return Ok(observed);
    }
    let Ok(live) = live(spec, &observed) else {
        return Ok(observed);
    };
    let Some(green) = in_progress(spec, &observed, &live) else {
        return Ok(observed);
    };
    let (Some(Phase::Releasing), Some(since)) =
        (green.occupant.phase(), green.occupant.tags.step_at)
    else {
        return Ok(observed);
    };
    if green.weight == Percent::ZERO || now <= since {
        return Ok(observed);
    }
    let Some(load_balancer) = spec.router.load_balancer_arn() else {
        return Ok(observed);
    };
    let green_tg = spec.slots.get(green.slot).clone();
    let blue_tg = spec.slots.get(live.slot).clone();
    let mut windows = cloud
        .target_group_metrics(&load_balancer, &[green_tg, blue_tg], since, now)
        .await?
        .into_iter();
    if let (Some(green), Some(blue)) = (windows.next(), windows.next()) {
        observed.verify.metrics = Some(Comparison { green, blue, since });
    }
    Ok(observed)
}
