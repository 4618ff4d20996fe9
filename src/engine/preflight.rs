//! Checks a deploy makes before its first change, so that bad input changes nothing in AWS.

use crate::core::cloud::{Cloud, CloudError, CloudErrorKind, TargetGroupInfo};
use crate::core::decide::{DeployRequest, Launch, in_progress, live, ready_to_start};
use crate::core::fleet::LaunchTemplateRef;
use crate::core::names::{FleetName, TargetGroupArn};
use crate::core::observed::Observed;
use crate::core::router::RouterId;
use crate::core::spec::Spec;
use crate::core::tags::ReleaseTags;
use crate::core::twin::check_launch;

use super::failure::Failure;
use super::observe::observe;

/// A read that failed because the resource is missing is bad input; other failures are kept.
fn missing(what: String) -> impl FnOnce(CloudError) -> Failure {
    move |error| match error.kind {
        CloudErrorKind::NotFound
            if error.code.as_deref() == Some(crate::nginx::include::NO_INCLUDE) =>
        {
            Failure::BadInput(format!(
                "{what}: {}; write the first one with `greenlight nginx-include > <that path>` \
                 (all traffic to slot a), then start or reload nginx",
                error.message
            ))
        }
        CloudErrorKind::NotFound => Failure::BadInput(format!(
            "{what} was not found ({}); check the ARN and the region",
            error.code.as_deref().unwrap_or("not found")
        )),
        _ => Failure::Cloud {
            error,
            changed: false,
        },
    }
}

/// The router and both target groups exist, and the target groups can hold fleets; the test
/// listener and the alarms the config names exist.
///
/// The reads go out together; their verdicts are given in the order above.
pub async fn check_resources<C: Cloud>(cloud: &C, spec: &Spec) -> Result<(), Failure> {
    let router = async {
        cloud
            .router(&spec.router)
            .await
            .map_err(missing(router_name(spec)))
            .map(drop)
    };
    check_with(cloud, spec, router).await
}

/// [`check_resources`] and one observation of the service, in one round of reads: the
/// observation's read of the router is the check that it exists. Every other resource the
/// observation reads is checked on its own, so when they all exist and the observation still
/// finds something missing, it is the router.
pub async fn look<C: Cloud>(cloud: &C, spec: &Spec) -> Result<Observed, Failure> {
    let (checked, observed) = tokio::join!(
        check_with(cloud, spec, async { Ok(()) }),
        observe(cloud, spec)
    );
    checked?;
    observed.map_err(|error| match error.kind {
        CloudErrorKind::NotFound => missing(router_name(spec))(error),
        _ => Failure::cloud(false)(error),
    })
}

async fn check_with<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    router: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    let test_listener = async {
        if let Some(listener) = &spec.test_traffic.listener {
            cloud
                .router(&RouterId::Listener(listener.clone()))
                .await
                .map_err(missing(format!("[test_traffic] listener_arn {listener}")))?;
        }
        Ok::<(), Failure>(())
    };
    let alarms = async {
        if spec.analysis.alarms.is_empty() {
            return Ok(());
        }
        let found = cloud
            .alarms(&spec.analysis.alarms)
            .await
            .map_err(Failure::cloud(false))?;
        if let Some(name) = spec
            .analysis
            .alarms
            .iter()
            .find(|name| !found.iter().any(|a| &a.name == *name))
        {
            return Err(Failure::BadInput(format!(
                "[analysis] alarms names {name:?}, which CloudWatch does not have in this \
                 region; check the alarm's name and the region"
            )));
        }
        Ok(())
    };
    let arns: Vec<TargetGroupArn> = spec.slots.iter().map(|(_, arn)| arn.clone()).collect();
    let (router, test_listener, alarms, groups) =
        tokio::join!(router, test_listener, alarms, cloud.target_groups(&arns));
    router?;
    test_listener?;
    alarms?;
    let groups = match groups {
        Ok(groups) => groups,
        // AWS does not say which one is missing: ask for each to name it.
        Err(error) if error.kind == CloudErrorKind::NotFound => {
            let mut groups = Vec::new();
            for (slot, arn) in spec.slots.iter() {
                groups.push(check_target_group(cloud, arn, &format!("target group {slot}")).await?);
            }
            groups
        }
        Err(error) => return Err(Failure::cloud(false)(error)),
    };
    let load_balancer = spec.router.load_balancer_arn();
    for ((slot, _), info) in spec.slots.iter().zip(groups) {
        let what = format!("target group {slot}");
        let info = instance_type(info, &what)?;
        // An ALB target group serves one load balancer; joining ours would be refused.
        if let (Some(ours), Some(other)) = (
            &load_balancer,
            info.load_balancer_arns
                .iter()
                .find(|lb| Some(*lb) != load_balancer.as_ref()),
        ) {
            return Err(Failure::BadInput(format!(
                "{what} {} is used by load balancer {other}, not the router's {ours}; \
                 give greenlight two target groups of the router's load balancer",
                info.name
            )));
        }
    }
    Ok(())
}

fn router_name(spec: &Spec) -> String {
    if let Some(nginx) = &spec.nginx {
        return format!("[router] include {}", nginx.include.display());
    }
    match &spec.router {
        RouterId::Listener(arn) => format!("[router] listener_arn {arn}"),
        RouterId::Rule(arn) => format!("[router] rule_arn {arn}"),
    }
}

async fn check_target_group<C: Cloud>(
    cloud: &C,
    arn: &TargetGroupArn,
    what: &str,
) -> Result<TargetGroupInfo, Failure> {
    let info = cloud
        .target_group(arn)
        .await
        .map_err(missing(format!("{what} {arn}")))?;
    instance_type(info, what)
}

/// Auto Scaling fleets register instances: a target group of another type cannot hold them.
fn instance_type(info: TargetGroupInfo, what: &str) -> Result<TargetGroupInfo, Failure> {
    if info.target_type != "instance" {
        return Err(Failure::BadInput(format!(
            "{what} {} has target type {}; Auto Scaling fleets need target type instance",
            info.name, info.target_type
        )));
    }
    Ok(info)
}

/// Everything `deploy` can check without changing anything; returns the observation it made.
/// (What the deploy then does is decided again from what it sees once it holds the lock.)
pub async fn check_deploy<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    request: &DeployRequest,
) -> Result<Observed, Failure> {
    // The independent reads go out together; their verdicts are given in order.
    let image = async {
        match &request.launch {
            Launch::Image(image) => cloud.image_exists(image).await.map(Some),
            _ => Ok(None),
        }
    };
    let (observed, image_found, name) = tokio::join!(
        look(cloud, spec),
        image,
        check_fleet_name(cloud, spec, request)
    );
    let observed = observed?;
    if let (Launch::Image(image), false) = (
        &request.launch,
        image_found.map_err(Failure::cloud(false))?.unwrap_or(true),
    ) {
        return Err(Failure::BadInput(format!(
            "image {image} was not found; check --image-id and the region"
        )));
    }
    let live = live(spec, &observed)?;
    if live.occupant.tags.managed_for(&spec.service)
        && live.occupant.release() == request.release.as_str()
    {
        return Ok(observed);
    }
    if in_progress(spec, &observed, &live).is_none() {
        // A new release: one that could not be verified is refused before the lock is taken.
        ready_to_start(spec, &observed)?;
    }
    name?;
    let config = cloud
        .fleet_config(&live.occupant.fleet.name)
        .await
        .map_err(Failure::cloud(false))?;
    check_launch(&live.occupant.fleet.name, &config.launch)?;
    if let (Launch::Version(version), Some(template)) = (&request.launch, config.launch.template())
    {
        let wanted = LaunchTemplateRef {
            id: template.id.clone(),
            version: version.to_string(),
        };
        let found = cloud
            .launch_template_version(&wanted)
            .await
            .map_err(Failure::cloud(false))?;
        if found.is_none() {
            return Err(Failure::BadInput(format!(
                "launch template {} has no version {version}; check --launch-template-version",
                template.id
            )));
        }
    }
    Ok(observed)
}

/// The release's fleet name must be free, or already this release's fleet in one of the slots:
/// AWS would refuse to create a second group of that name only after greenlight had changed the
/// router.
async fn check_fleet_name<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    request: &DeployRequest,
) -> Result<(), Failure> {
    let name = FleetName::for_release(&spec.service, &request.release);
    let Some(existing) = cloud
        .fleet_summary(&name)
        .await
        .map_err(Failure::cloud(false))?
    else {
        return Ok(());
    };
    if existing.deleting {
        return Err(Failure::BadInput(format!(
            "an Auto Scaling group named {name} is being deleted; wait until it is gone, or \
             deploy under another --release name"
        )));
    }
    let tags = ReleaseTags::read(&existing.tags);
    let ours = tags.managed_for(&spec.service)
        && tags.release.as_deref() == Some(request.release.as_str());
    let in_a_slot = existing
        .target_groups
        .iter()
        .any(|tg| spec.slots.slot_of(tg).is_some());
    if !ours || !in_a_slot {
        let whose = match (&tags.service, &tags.release) {
            (Some(service), Some(release)) => format!("release {release} of service {service}"),
            _ => "not a greenlight release".to_owned(),
        };
        let detached = if ours {
            ", and is attached to neither target group"
        } else {
            ""
        };
        return Err(Failure::BadInput(format!(
            "an Auto Scaling group named {name} already exists ({whose}{detached}); deploy under \
             another --release name, or delete that group"
        )));
    }
    Ok(())
}
