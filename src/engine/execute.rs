//! Applies one [`Action`] through the `Cloud` port. Each action may take a few calls; every one
//! of them is safe to repeat, so an action interrupted half-way is simply decided and applied
//! again on the next pass.

use std::time::SystemTime;

use crate::core::cloud::{Cloud, CloudError, CloudErrorKind};
use crate::core::decide::{Action, Green, Launch};
use crate::core::fleet::{Capacity, FleetConfig};
use crate::core::names::{FleetName, ReleaseName};
use crate::core::router::all_to;
use crate::core::spec::Spec;
use crate::core::tags::{self, Phase};
use crate::core::twin::{Twin, TwinPlan, twin};

use super::failure::Failure;

/// What applying an action produced besides its effect.
#[derive(Debug, Default)]
pub struct Applied {
    /// Live-fleet settings the twin could not copy, for a warning.
    pub omitted: Vec<String>,
}

pub async fn apply<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    action: &Action,
    now: SystemTime,
) -> Result<Applied, Failure> {
    let cloud_err = Failure::cloud(true);
    match action {
        Action::JoinRouter { target_group, live } => {
            cloud
                .route(&spec.router, &all_to(live, target_group))
                .await
                .map_err(cloud_err)?;
        }
        Action::RetireFleet { fleet, .. } => {
            cloud.delete_fleet(fleet).await.map_err(cloud_err)?;
        }
        Action::CreateFleet(green) => {
            let live = cloud.fleet_config(&green.source).await.map_err(cloud_err)?;
            let version = launch_version(cloud, spec, green, &live).await?;
            let twin = build_twin(spec, green, &live, &version, now)?;
            create_empty(cloud, spec, green, &twin.config).await?;
            return Ok(Applied {
                omitted: twin.omitted,
            });
        }
        Action::ConfigureFleet(green) => {
            let fleet = &green.fleet;
            let live = cloud.fleet_config(&green.source).await.map_err(cloud_err)?;
            let created = cloud.fleet_config(fleet).await.map_err(cloud_err)?;
            let version = created
                .launch
                .template()
                .map(|t| t.version.clone())
                .unwrap_or_default();
            let twin = build_twin(spec, green, &live, &version, now)?;
            cloud
                .configure_fleet(fleet, &twin.config)
                .await
                .map_err(cloud_err)?;
            cloud
                .set_capacity(fleet, live.capacity)
                .await
                .map_err(cloud_err)?;
            set_phase(cloud, fleet, Phase::Provisioning, &[]).await?;
        }
        Action::ReviveFleet { fleet, capacity } => {
            cloud
                .set_capacity(fleet, *capacity)
                .await
                .map_err(cloud_err)?;
            cloud
                .untag_fleet(fleet, &[tags::FAILURE.to_owned()])
                .await
                .map_err(cloud_err)?;
            set_phase(cloud, fleet, Phase::Provisioning, &[]).await?;
        }
        Action::Flip { to, from, .. } => {
            cloud
                .route(&spec.router, &all_to(to, from))
                .await
                .map_err(cloud_err)?;
        }
        Action::MarkLive {
            fleet,
            release,
            resume,
        } => {
            // Phase last: until it says live, a re-run repeats this step, and each part of it is
            // safe to repeat (with the record gone, nothing more is resumed).
            cloud
                .resume_processes(fleet, resume)
                .await
                .map_err(cloud_err)?;
            cloud
                .untag_fleet(
                    fleet,
                    &[
                        tags::WARM_UNTIL.to_owned(),
                        tags::FAILURE.to_owned(),
                        tags::SUSPENDED.to_owned(),
                    ],
                )
                .await
                .map_err(cloud_err)?;
            let extra = [
                (tags::SCHEMA.to_owned(), tags::SCHEMA_VERSION.to_string()),
                (tags::SERVICE.to_owned(), spec.service.to_string()),
                (tags::RELEASE.to_owned(), release.clone()),
                (tags::LIVE_AT.to_owned(), tags::timestamp(now)),
            ];
            set_phase(cloud, fleet, Phase::Live, &extra).await?;
        }
        Action::MarkWarm {
            fleet,
            release,
            until,
            suspend,
        } => {
            // Which processes are greenlight's to resume is recorded before any is suspended.
            cloud
                .tag_fleet(fleet, &[(tags::SUSPENDED.to_owned(), suspend.join(","))])
                .await
                .map_err(cloud_err)?;
            cloud
                .suspend_processes(fleet, suspend)
                .await
                .map_err(cloud_err)?;
            let extra = [
                (tags::SCHEMA.to_owned(), tags::SCHEMA_VERSION.to_string()),
                (tags::SERVICE.to_owned(), spec.service.to_string()),
                (tags::RELEASE.to_owned(), release.clone()),
                (tags::WARM_UNTIL.to_owned(), tags::timestamp(*until)),
            ];
            set_phase(cloud, fleet, Phase::Warm, &extra).await?;
        }
        Action::FailRelease { fleet, reasons, .. } => {
            // Scale first: a failed release must stop costing money even if tagging fails.
            cloud
                .set_capacity(fleet, Capacity::ZERO)
                .await
                .map_err(cloud_err)?;
            let failure = [(tags::FAILURE.to_owned(), tags::clip(&reasons.join("; ")))];
            set_phase(cloud, fleet, Phase::Failed, &failure).await?;
        }
    }
    Ok(Applied::default())
}

/// Creates green with no instances: none may launch before its scaling policies, scheduled
/// actions and suspended processes are in place.
async fn create_empty<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    green: &Green,
    config: &FleetConfig,
) -> Result<(), Failure> {
    let empty = FleetConfig {
        capacity: Capacity {
            min: 0,
            desired: 0,
            max: config.capacity.max,
        },
        ..config.clone()
    };
    let error = match cloud.create_fleet(&green.fleet, &empty).await {
        Ok(()) => return Ok(()),
        Err(e) if e.kind == CloudErrorKind::Conflict => e,
        Err(e) => return Err(Failure::cloud(true)(e)),
    };
    // AWS can show a new group late: one this release created on an earlier pass counts.
    let existing = cloud
        .fleet_config(&green.fleet)
        .await
        .map_err(Failure::cloud(true))?;
    let has = |key: &str, value: &str| {
        existing
            .tags
            .iter()
            .any(|t| t.key == key && t.value == value)
    };
    if has(tags::SERVICE, spec.service.as_str())
        && has(tags::RELEASE, green.release.as_str())
        && existing.target_groups.contains(&green.target_group)
    {
        return Ok(());
    }
    Err(Failure::NeedsAttention(format!(
        "an Auto Scaling group named {} already exists and is not this release's ({}); \
         delete it or deploy under another --release name",
        green.fleet,
        error.code.as_deref().unwrap_or("AlreadyExists")
    )))
}

async fn set_phase<C: Cloud>(
    cloud: &C,
    fleet: &FleetName,
    phase: Phase,
    extra: &[(String, String)],
) -> Result<(), Failure> {
    let mut tags = vec![(tags::PHASE.to_owned(), phase.to_string())];
    tags.extend_from_slice(extra);
    cloud
        .tag_fleet(fleet, &tags)
        .await
        .map_err(Failure::cloud(true))
}

/// The description that marks the launch template version greenlight made for a release, so a
/// re-run finds it instead of making another.
pub fn version_description(spec: &Spec, release: &ReleaseName) -> String {
    format!("greenlight {} {}", spec.service, release)
}

/// The launch template version green launches, as a number; made on first use for `--image-id`.
async fn launch_version<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    green: &Green,
    live: &FleetConfig,
) -> Result<String, Failure> {
    let template = live.launch.template().ok_or_else(|| {
        Failure::NeedsAttention("the live fleet has no launch template to copy".into())
    })?;
    let image = match &green.launch {
        Launch::Version(version) => return Ok(version.to_string()),
        Launch::Image(image) => image,
    };
    let description = version_description(spec, &green.release);
    if let Some(found) = cloud
        .find_launch_template_version(&template.id, &description)
        .await
        .map_err(Failure::cloud(true))?
    {
        return Ok(found.number.to_string());
    }
    let source = cloud
        .launch_template_version(template)
        .await
        .map_err(Failure::cloud(true))?
        .ok_or_else(|| Failure::Cloud {
            error: CloudError::new(
                CloudErrorKind::NotFound,
                "DescribeLaunchTemplateVersions",
                format!(
                    "launch template {} version {} of the live fleet is gone",
                    template.id, template.version
                ),
            ),
            changed: true,
        })?;
    let created = cloud
        .create_launch_template_version(&template.id, source.number, image, &description)
        .await
        .map_err(Failure::cloud(true))?;
    Ok(created.number.to_string())
}

fn build_twin(
    spec: &Spec,
    green: &Green,
    live: &FleetConfig,
    version: &str,
    now: SystemTime,
) -> Result<Twin, Failure> {
    let live_target_group = spec
        .slots
        .slot_of(&green.target_group)
        .map(|slot| spec.slots.get(slot.other()))
        .expect("decide targets a configured slot");
    let image = match &green.launch {
        Launch::Image(image) => Some(image.as_str()),
        Launch::Version(_) => None,
    };
    Ok(twin(
        live,
        &TwinPlan {
            service: &spec.service,
            release: &green.release,
            live_fleet: &green.source,
            green_fleet: &green.fleet,
            live_target_group,
            idle_target_group: &green.target_group,
            launch_template_version: version,
            image,
            now,
        },
    )?)
}
