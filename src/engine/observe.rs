//! One fresh observation of the service: the router, the fleets on both slots, their targets,
//! and what verification reads when the config asks for it. Independent reads go out together.

use std::time::SystemTime;

use crate::core::analysis::Comparison;
use crate::core::cloud::{Cloud, CloudResult};
use crate::core::decide::{live, metrics_due};
use crate::core::observed::{Observed, SlotObserved, VerifyObserved};
use crate::core::router::{RouterId, Slot};
use crate::core::spec::Spec;
use crate::core::test_traffic::listener_of;

#[tracing::instrument(name = "observe", level = "info", skip_all)]
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
    let observed = Observed {
        router,
        slots: [a, b],
        verify: verify?,
    };
    crate::logging::observed(spec, &observed);
    Ok(observed)
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

/// Adds green's and blue's metrics over green's current step to `observed`, when the next
/// decision is at a gate that compares them ([`metrics_due`]): not at every poll of a pause.
#[tracing::instrument(name = "metrics", level = "debug", skip_all)]
pub async fn with_metrics<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    mut observed: Observed,
    now: SystemTime,
) -> CloudResult<Observed> {
    let Some(since) = metrics_due(spec, &observed, now) else {
        return Ok(observed);
    };
    let (Ok(live), Some(load_balancer)) = (live(spec, &observed), spec.router.load_balancer_arn())
    else {
        return Ok(observed);
    };
    let green_tg = spec.slots.get(live.slot.other()).clone();
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
