//! Applies one [`Action`] through the `Cloud` port. Each action may take a few calls; every one
//! of them is safe to repeat, so an action interrupted half-way is simply decided and applied
//! again on the next pass.

use std::time::SystemTime;

use crate::core::cloud::{Cloud, CloudError, CloudErrorKind};
use crate::core::decide::{Action, Green, HookContext, Launch};
use crate::core::fleet::{Capacity, FleetConfig, FleetTag, FleetWrite};
use crate::core::hooks::HookStage;
use crate::core::names::{FleetName, ReleaseName};
use crate::core::plan::{Plan, StepNumber};
use crate::core::reason::{self, Reason, ReasonCode};
use crate::core::router::{Forward, RouterId, RouterWrite, same_forwards};
use crate::core::spec::Spec;
use crate::core::tags::{self, Phase};
use crate::core::test_traffic;
use crate::core::twin::{Twin, TwinPlan, twin};

use super::failure::Failure;
use super::hooks::{self, HookRun};

/// What applying an action produced besides its effect.
#[derive(Debug, Default)]
pub struct Applied {
    /// Live-fleet settings the twin could not copy, for a warning.
    pub omitted: Vec<String>,
    /// The hooks that ran, in order (the last one failed, if one did).
    pub hooks: Vec<HookRun>,
    /// The writes to fleets' tags and scaling processes the action made, in order, each once
    /// AWS took it (for the steps that only make such writes and route: see the driver).
    pub fleet_writes: Vec<(FleetName, FleetWrite)>,
}

/// Applies `action`, in a span `apply{action, fleet}`; logs how it went (`-v`).
pub async fn apply<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    action: &Action,
    now: SystemTime,
) -> Result<Applied, Failure> {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "apply",
        action = action.name(),
        fleet = action.fleet().map(|f| f.as_str())
    );
    async {
        let started = std::time::Instant::now();
        let result = apply_action(cloud, spec, action, now).await;
        crate::logging::applied(action.name(), &result, started);
        result
    }
    .instrument(span)
    .await
}

async fn apply_action<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    action: &Action,
    now: SystemTime,
) -> Result<Applied, Failure> {
    let cloud_err = Failure::cloud(true);
    let mut applied = Applied::default();
    match action {
        Action::JoinRouter { write, .. } => {
            route(cloud, &spec.router, write).await?;
        }
        Action::Flip {
            fleet,
            write,
            verdict,
            ..
        } => {
            route(cloud, &spec.router, write).await?;
            if let Some(verdict) = verdict {
                let verdict = vec![(tags::VERDICT.to_owned(), tags::clip(verdict))];
                write_fleet(cloud, fleet, vec![FleetWrite::Tag(verdict)], &mut applied).await?;
            }
        }
        Action::OpenTestRule {
            release,
            listener,
            priority,
            conditions,
            target_group,
            ..
        } => {
            // Taken meanwhile (Conflict): the next pass reads the rules again and picks another.
            cloud
                .create_rule(
                    listener,
                    *priority,
                    conditions,
                    target_group,
                    &test_traffic::rule_tags(&spec.service, release),
                )
                .await
                .map_err(cloud_err)?;
        }
        Action::RecordStop { fleet, reason, .. } => {
            let why = vec![(tags::ABORT.to_owned(), tags::clip(&reason.to_tag()))];
            write_fleet(cloud, fleet, vec![FleetWrite::Tag(why)], &mut applied).await?;
        }
        Action::CloseTestRule { rule, .. } => {
            cloud.delete_rule(rule).await.map_err(cloud_err)?;
        }
        Action::PointTestListener {
            listener, write, ..
        } => {
            route(cloud, &RouterId::Listener(listener.clone()), write).await?;
        }
        Action::RunHooks {
            fleet,
            release,
            stage,
            context,
            done,
        } => {
            let env = hook_env(cloud, spec, release, *stage, context).await?;
            let runs = hooks::run_stage(
                *stage,
                spec.hooks.commands(*stage),
                &env,
                spec.hooks.timeout,
            )
            .await;
            let tag = match runs.iter().find(|r| !r.passed()) {
                // Why, on green: the next pass stops the release for it.
                Some(failed) => {
                    let reason = Reason::new(ReasonCode::HookFailed, failed.failure())
                        .on(failed.command.clone());
                    (tags::ABORT.to_owned(), tags::clip(&reason.to_tag()))
                }
                None => (tags::HOOKS_DONE.to_owned(), done.clone()),
            };
            cloud.tag_fleet(fleet, &[tag]).await.map_err(cloud_err)?;
            return Ok(Applied {
                hooks: runs,
                ..Applied::default()
            });
        }
        Action::RouteBack {
            fleet,
            reason,
            write,
            ..
        } => {
            // Why, first: after traffic is back, the next pass fails the release for this
            // reason instead of taking a green at 0% for a router someone changed.
            let why = vec![(tags::ABORT.to_owned(), tags::clip(&reason.to_tag()))];
            write_fleet(cloud, fleet, vec![FleetWrite::Tag(why)], &mut applied).await?;
            route(cloud, &spec.router, write).await?;
        }
        Action::Shift {
            fleet,
            step,
            write,
            verdict,
            ..
        } => {
            route(cloud, &spec.router, write).await?;
            let step = step_tags(*step, now, verdict.as_deref());
            write_fleet(cloud, fleet, vec![FleetWrite::Tag(step)], &mut applied).await?;
        }
        Action::Begin { fleet, step, .. } => {
            let step = step_tags(*step, now, None);
            write_fleet(cloud, fleet, vec![FleetWrite::Tag(step)], &mut applied).await?;
        }
        Action::RetireFleet { fleet, .. } => {
            takes_no_traffic(cloud, spec, fleet).await?;
            cloud.delete_fleet(fleet).await.map_err(cloud_err)?;
        }
        Action::CreateFleet(green) => {
            let live = cloud.fleet_config(&green.source).await.map_err(cloud_err)?;
            let version = launch_version(cloud, spec, green, &live).await?;
            let twin = build_twin(spec, green, &live, &version, now)?;
            create_empty(cloud, spec, green, &twin.config).await?;
            return Ok(Applied {
                omitted: twin.omitted,
                ..Applied::default()
            });
        }
        Action::ConfigureFleet(green) => {
            let fleet = &green.fleet;
            // Green's launch template version, as CreateFleet made it: from the group itself
            // (one read) when it names its template by id, else from its whole configuration.
            let (live, created) = tokio::join!(
                cloud.fleet_config(&green.source),
                cloud.fleet_summary(fleet)
            );
            let live = live.map_err(cloud_err)?;
            let version = match created.map_err(cloud_err)?.and_then(|s| s.launch_template) {
                Some(template) => template.version,
                None => cloud
                    .fleet_config(fleet)
                    .await
                    .map_err(cloud_err)?
                    .launch
                    .template()
                    .map(|t| t.version.clone())
                    .unwrap_or_default(),
            };
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
        Action::ReviveFleet {
            fleet,
            capacity,
            plan,
            health_deadline,
            ..
        } => {
            cloud
                .set_capacity(fleet, *capacity)
                .await
                .map_err(cloud_err)?;
            restage(cloud, fleet, plan, *health_deadline).await?;
        }
        Action::Restage {
            fleet,
            plan,
            health_deadline,
            ..
        } => {
            restage(cloud, fleet, plan, *health_deadline).await?;
        }
        Action::MatchCapacity { fleet, capacity } => {
            cloud
                .set_capacity(fleet, *capacity)
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
            let gone: Vec<String> = [
                tags::WARM_UNTIL,
                tags::FAILURE,
                tags::SUSPENDED,
                tags::ROLLED_BACK_AT,
            ]
            .iter()
            .chain(tags::IN_PROGRESS.iter())
            .map(|k| (*k).to_owned())
            .collect();
            let gone: Vec<String> = gone
                .into_iter()
                .chain([tags::UNROUTED_AT.to_owned(), tags::RETIRING_AT.to_owned()])
                .collect();
            let extra = [
                (tags::SCHEMA.to_owned(), tags::SCHEMA_VERSION.to_string()),
                (tags::SERVICE.to_owned(), spec.service.to_string()),
                (tags::RELEASE.to_owned(), release.clone()),
                (tags::LIVE_AT.to_owned(), tags::timestamp(now)),
            ];
            let extra: Vec<_> = extra
                .into_iter()
                .chain(tags::routing(&spec.router, &spec.slots))
                .collect();
            // One after the other, not side by side: resumed before the record of what to
            // resume is removed (a crash between the two leaves the record and the re-run
            // resumes again), and the phase last.
            let writes = vec![
                FleetWrite::Resume(resume.clone()),
                FleetWrite::Untag(gone),
                FleetWrite::Tag(phase_tags(Phase::Live, &extra)),
            ];
            write_fleet(cloud, fleet, writes, &mut applied).await?;
        }
        Action::MarkWarm {
            fleet,
            release,
            until,
            suspend,
            rolled_back,
        } => {
            let mut extra = vec![
                (tags::SCHEMA.to_owned(), tags::SCHEMA_VERSION.to_string()),
                (tags::SERVICE.to_owned(), spec.service.to_string()),
                (tags::RELEASE.to_owned(), release.clone()),
                (tags::WARM_UNTIL.to_owned(), tags::timestamp(*until)),
                (tags::UNROUTED_AT.to_owned(), tags::timestamp(now)),
            ];
            extra.extend(tags::routing(&spec.router, &spec.slots));
            if *rolled_back {
                extra.push((tags::ROLLED_BACK_AT.to_owned(), tags::timestamp(now)));
            }
            // Which processes are greenlight's to resume is recorded before any is suspended;
            // the phase last.
            let writes = vec![
                FleetWrite::Tag(vec![(tags::SUSPENDED.to_owned(), suspend.join(","))]),
                FleetWrite::Suspend(suspend.clone()),
                FleetWrite::Tag(phase_tags(Phase::Warm, &extra)),
            ];
            write_fleet(cloud, fleet, writes, &mut applied).await?;
        }
        Action::FailRelease { fleet, reasons, .. } => {
            takes_no_traffic(cloud, spec, fleet).await?;
            // Scale first: a failed release must stop costing money even if tagging fails.
            cloud
                .set_capacity(fleet, Capacity::ZERO)
                .await
                .map_err(cloud_err)?;
            cloud
                .untag_fleet(
                    fleet,
                    &[tags::STEP, tags::STEP_AT, tags::PROMOTED].map(str::to_owned),
                )
                .await
                .map_err(cloud_err)?;
            let mut failure = vec![
                (
                    tags::FAILURE.to_owned(),
                    tags::clip(&reason::describe(reasons)),
                ),
                (tags::UNROUTED_AT.to_owned(), tags::timestamp(now)),
            ];
            failure.extend(tags::routing(&spec.router, &spec.slots));
            set_phase(cloud, fleet, Phase::Failed, &failure).await?;
        }
    }
    Ok(applied)
}

/// Makes `writes` to `fleet` in order, noting each in `applied` once AWS took it.
async fn write_fleet<C: Cloud>(
    cloud: &C,
    fleet: &FleetName,
    writes: Vec<FleetWrite>,
    applied: &mut Applied,
) -> Result<(), Failure> {
    for write in writes {
        match &write {
            FleetWrite::Tag(tags) => cloud.tag_fleet(fleet, tags).await,
            FleetWrite::Untag(keys) => cloud.untag_fleet(fleet, keys).await,
            FleetWrite::Suspend(processes) => cloud.suspend_processes(fleet, processes).await,
            FleetWrite::Resume(processes) => cloud.resume_processes(fleet, processes).await,
        }
        .map_err(Failure::cloud(true))?;
        applied.fleet_writes.push((fleet.clone(), write));
    }
    Ok(())
}

/// One conditional router write, checked against what AWS answers it now holds.
async fn route<C: Cloud>(cloud: &C, router: &RouterId, write: &RouterWrite) -> Result<(), Failure> {
    let kept = cloud
        .route(router, write)
        .await
        .map_err(Failure::cloud(true))?;
    if !same_forwards(&kept, &write.forwards) {
        return Err(Failure::NeedsAttention(format!(
            "AWS did not keep the weights greenlight wrote to {}: asked for {}, it reports {}",
            router,
            describe_forwards(&write.forwards),
            describe_forwards(&kept)
        )));
    }
    Ok(())
}

fn describe_forwards(forwards: &[Forward]) -> String {
    let parts: Vec<String> = forwards
        .iter()
        .map(|f| format!("{} {}", f.target_group.short_name(), f.weight.get()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Re-reads the router right before a fleet is shrunk or deleted: in the pass that decided it
/// the fleet took no traffic, and it must not have started since.
async fn takes_no_traffic<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    fleet: &FleetName,
) -> Result<(), Failure> {
    let router = cloud
        .router(&spec.router)
        .await
        .map_err(Failure::cloud(true))?;
    let Some(summary) = cloud
        .fleet_summary(fleet)
        .await
        .map_err(Failure::cloud(true))?
    else {
        return Ok(());
    };
    if let Some(tg) = summary
        .target_groups
        .iter()
        .find(|tg| router.weight_of(tg).get() > 0)
    {
        return Err(Failure::NeedsAttention(format!(
            "fleet {fleet} takes traffic through target group {} now (the router changed since \
             greenlight looked); it was not shrunk or deleted",
            tg.short_name()
        )));
    }
    Ok(())
}

/// The tags that record that step `step`'s weight is in effect from `now` (and the verdict
/// that let it).
fn step_tags(step: StepNumber, now: SystemTime, verdict: Option<&str>) -> Vec<(String, String)> {
    let mut extra = vec![
        (tags::STEP.to_owned(), step.to_string()),
        (
            tags::STEP_AT.to_owned(),
            tags::timestamp(tags::ceil_to_second(now)),
        ),
    ];
    if let Some(verdict) = verdict {
        extra.push((tags::VERDICT.to_owned(), tags::clip(verdict)));
    }
    phase_tags(Phase::Releasing, &extra)
}

/// What hooks are told, in their environment.
async fn hook_env<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    release: &str,
    stage: HookStage,
    context: &HookContext,
) -> Result<Vec<(String, String)>, Failure> {
    let dns = match spec.router.load_balancer_arn() {
        Some(arn) => cloud
            .load_balancer_dns(&arn)
            .await
            .map_err(Failure::cloud(true))?,
        None => String::new(),
    };
    let mut env = vec![
        ("GREENLIGHT_SERVICE", spec.service.to_string()),
        ("GREENLIGHT_RELEASE", release.to_owned()),
        ("GREENLIGHT_STAGE", stage.key().to_owned()),
        ("GREENLIGHT_LIVE_RELEASE", context.live_release.clone()),
        ("GREENLIGHT_WEIGHT", context.weight.get().to_string()),
        ("GREENLIGHT_STEPS", context.steps.to_string()),
        ("GREENLIGHT_LOAD_BALANCER_DNS", dns),
    ];
    if let Some(step) = context.step {
        env.push(("GREENLIGHT_STEP", step.to_string()));
    }
    if let Some(slot) = context.slot {
        env.push(("GREENLIGHT_SLOT", slot.to_string()));
    }
    if let Some(tg) = &context.green_target_group {
        env.push(("GREENLIGHT_GREEN_TARGET_GROUP", tg.to_string()));
    }
    if let Some(tg) = &context.live_target_group {
        env.push(("GREENLIGHT_LIVE_TARGET_GROUP", tg.to_string()));
    }
    if let Some(header) = &spec.test_traffic.header {
        env.push(("GREENLIGHT_TEST_HEADER", header.clone()));
        env.push(("GREENLIGHT_TEST_HEADER_VALUE", release.to_owned()));
    }
    if let Some(listener) = &spec.test_traffic.listener {
        env.push(("GREENLIGHT_TEST_LISTENER_ARN", listener.to_string()));
    }
    Ok(env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Back to `provisioning` with a fresh plan and deadline: a failed release retried, or a
/// previous release deployed again.
async fn restage<C: Cloud>(
    cloud: &C,
    fleet: &FleetName,
    plan: &Plan,
    health_deadline: SystemTime,
) -> Result<(), Failure> {
    let gone: Vec<String> = [
        tags::FAILURE,
        tags::WARM_UNTIL,
        tags::ROLLED_BACK_AT,
        tags::VERDICT,
    ]
    .iter()
    .chain(tags::IN_PROGRESS.iter())
    .map(|k| (*k).to_owned())
    .collect();
    cloud
        .untag_fleet(fleet, &gone)
        .await
        .map_err(Failure::cloud(true))?;
    set_phase(
        cloud,
        fleet,
        Phase::Provisioning,
        &[
            (tags::PLAN.to_owned(), plan.encode()),
            (
                tags::HEALTH_DEADLINE.to_owned(),
                tags::timestamp(health_deadline),
            ),
        ],
    )
    .await
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
    cloud
        .tag_fleet(fleet, &phase_tags(phase, extra))
        .await
        .map_err(Failure::cloud(true))
}

fn phase_tags(phase: Phase, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut tags = vec![(tags::PHASE.to_owned(), phase.to_string())];
    tags.extend_from_slice(extra);
    tags
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
    let token = client_token(&[
        &template.id,
        &source.number.to_string(),
        &description,
        image.as_str(),
    ]);
    let created = cloud
        .create_launch_template_version(&template.id, source.number, image, &description, &token)
        .await
        .map_err(Failure::cloud(true))?;
    Ok(created.number.to_string())
}

/// A client token derived from what a request creates, so any repeat of it (an SDK retry after a
/// lost answer, or a re-run after a crash) names the same request; at most 64 characters.
pub fn client_token(parts: &[&str]) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut second: u64 = 0x8422_2325_cbf2_9ce4;
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            second = (second ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3 + 2);
        }
    }
    format!("greenlight-{hash:016x}{second:016x}")
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
    let mut twin = twin(
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
            release_plan: &green.plan,
            health_deadline: green.health_deadline,
            now,
        },
    )?;
    twin.config
        .tags
        .extend(
            tags::routing(&spec.router, &spec.slots)
                .into_iter()
                .map(|(key, value)| FleetTag {
                    key,
                    value,
                    propagate_at_launch: false,
                }),
        );
    Ok(twin)
}
