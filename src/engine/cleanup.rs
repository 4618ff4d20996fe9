//! `greenlight cleanup`: for each service, under its lock, observe what cleanup needs, ask the
//! core ([`plan_cleanup`]) what may be retired, apply it, and wait (bounded by a deadline) for
//! what is draining. With `--all`, services are found from fleet tags alone: one paged listing
//! of tagged fleets and one of locks, then a closer look only at services with something due.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::core::cleanup::{
    CleanupAction, CleanupPolicy, Decision, Item, ServiceRouting, ServiceView, TemplateVersions,
    candidate, plan_cleanup, requests_due, routed,
};
use crate::core::cloud::{Cloud, CloudError, CloudErrorKind, ListenerForward, LockObject};
use crate::core::fleet::{Capacity, FleetSummary, LaunchTemplateRef};
use crate::core::lock::{Holder, LockRecord, SERVICE as LOCK_SERVICE};
use crate::core::names::{FleetName, ListenerArn, ServiceName, TargetGroupArn};
use crate::core::router::{LoadBalancerKind, RouterId, Slot};
use crate::core::spec::Spec;
use crate::core::tags::{self, ReleaseTags};
use crate::core::test_traffic::listener_of;
use crate::exit;

use super::clock::Clock;
use super::failure::Failure;
use super::lease::Lease;
use super::stop::Stop;

/// How often cleanup looks again while something drains.
pub const POLL: Duration = Duration::from_secs(5);
/// The lock lifetime cleanup takes when the service's config is not at hand.
pub const LOCK_TTL: Duration = Duration::from_secs(2 * 60);
/// Services looked at together with `--all`.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Which services to clean.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One service, from its config.
    Config(Box<Spec>),
    /// One service, found by name from its fleets' tags.
    Named(ServiceName),
    /// Every greenlight service in the region.
    All,
}

#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// Decide and report, change nothing (no lock is taken either).
    pub dry_run: bool,
    pub policy: CleanupPolicy,
    /// Waiting for fleets to drain stops here; what is left is finished by the next run.
    pub deadline: SystemTime,
    pub concurrency: usize,
}

/// How one service's cleanup ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Everything due was retired (or would be, with `--dry-run`).
    Done,
    /// Nothing was due.
    NothingDue,
    /// Some of it is still draining at the deadline; the next run finishes it.
    Pending,
    /// Another runner holds the service's lock: skipped.
    Locked {
        holder: String,
    },
    /// The service's fleets do not name their router (made by an older greenlight): skipped.
    NoRouter,
    Failed {
        exit_code: u8,
        message: String,
    },
}

/// What cleanup did, or would do, for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceReport {
    pub service: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Every decision of the last pass: actions, waits and what was kept, with reasons.
    pub items: Vec<Item>,
    /// Actions applied by this run (none with `--dry-run`).
    pub applied: Vec<CleanupAction>,
}

/// A lock left by a run that is gone (expired), found by `--all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleLock {
    pub service: String,
    pub lock: LockRecord,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    pub dry_run: bool,
    pub services: Vec<ServiceReport>,
    pub stale_locks: Vec<StaleLock>,
}

impl CleanupReport {
    /// 0 unless a service failed (then the worst failure's code) or, cleaning one service, it
    /// was locked (4). A locked service among many is a skip, reported, not a failure.
    pub fn exit_code(&self, single: bool) -> u8 {
        let worst = self
            .services
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Failed { exit_code, .. } => Some(*exit_code),
                Outcome::Locked { .. } if single => Some(exit::BUSY),
                _ => None,
            })
            .max_by_key(|code| match *code {
                exit::INTERNAL => 0,
                other => other,
            });
        worst.unwrap_or(exit::SUCCESS)
    }
}

/// What cleanup reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CleanupEvent {
    /// A decision about one thing, the first time it is made (and again when it changes).
    CleanupItem {
        service: String,
        dry_run: bool,
        #[serde(flatten)]
        item: Item,
    },
    /// An action was applied.
    CleanupApplied {
        service: String,
        #[serde(flatten)]
        action: CleanupAction,
    },
    /// A lock whose holder is gone.
    StaleLock {
        #[serde(flatten)]
        stale: StaleLock,
        dry_run: bool,
    },
    /// One service is done.
    CleanupService {
        service: String,
        #[serde(flatten)]
        outcome: Outcome,
    },
}

/// Where cleanup events go; shared by services cleaned concurrently.
pub trait CleanupSink: Send + Sync {
    fn event(&self, event: &CleanupEvent);

    /// `service` waits for `fleets` fleets to drain and looks again in `next` (at most
    /// [`MAX_DRAIN_SLEEP`]): a log may want a line now rather than stay silent that long.
    fn waiting(&self, _service: &str, _fleets: usize, _next: Duration) {}
}

/// The longest sleep between two looks while fleets drain, so that a log's heartbeat (a line
/// at least every 30 s) never waits on a sleep longer than this.
pub const MAX_DRAIN_SLEEP: Duration = Duration::from_secs(25);

/// Keeps events; for tests.
#[derive(Debug, Default)]
pub struct CleanupRecorder(pub Mutex<Vec<CleanupEvent>>);

impl CleanupSink for CleanupRecorder {
    fn event(&self, event: &CleanupEvent) {
        self.0.lock().expect("recorder").push(event.clone());
    }
}

/// The runner's identity and environment, as for every command.
pub struct Runner<'a, C, K> {
    pub cloud: &'a C,
    pub clock: &'a K,
    pub holder: &'a Holder,
    pub alive: fn(u32) -> bool,
    pub stop: &'a Stop,
}

pub async fn cleanup<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    scope: &Scope,
    options: &CleanupOptions,
    sink: &dyn CleanupSink,
) -> Result<CleanupReport, Failure> {
    let mut report = CleanupReport {
        dry_run: options.dry_run,
        services: Vec::new(),
        stale_locks: Vec::new(),
    };
    match scope {
        Scope::Config(spec) => {
            let routing = ServiceRouting {
                service: spec.service.clone(),
                router: spec.router.clone(),
                slots: spec.slots.clone(),
            };
            let service = clean_service(runner, &routing, spec.lock.ttl, true, options, sink).await;
            report.services.push(service);
        }
        Scope::Named(name) => {
            let fleets = patiently(runner, || runner.cloud.tagged_fleets(Some(name)))
                .await
                .map_err(Failure::cloud(false))?;
            if fleets.is_empty() {
                return Err(Failure::BadInput(format!(
                    "no fleet is tagged greenlight:service = {name} in this region; check the \
                     service name and the region"
                )));
            }
            report
                .services
                .push(named_service(runner, name, &fleets, true, options, sink).await);
        }
        Scope::All => clean_all(runner, options, sink, &mut report).await?,
    }
    Ok(report)
}

/// Rides out throttling and 5xx on a read for a minute, like every command does.
async fn patiently<C, K, T, F, Fut>(runner: &Runner<'_, C, K>, mut op: F) -> Result<T, CloudError>
where
    K: Clock,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    let give_up = runner.clock.now() + super::driver::TRANSIENT_PATIENCE;
    let mut backoff = super::backoff::Backoff::new(Duration::from_millis(500));
    loop {
        match op().await {
            Err(e) if e.kind == CloudErrorKind::Unavailable && runner.clock.now() < give_up => {
                let now = runner.clock.now();
                runner.clock.sleep(backoff.next_wait(now, give_up)).await;
            }
            other => return other,
        }
    }
}

async fn clean_all<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    options: &CleanupOptions,
    sink: &dyn CleanupSink,
    report: &mut CleanupReport,
) -> Result<(), Failure> {
    let (fleets, locks) = tokio::join!(
        patiently(runner, || runner.cloud.tagged_fleets(None)),
        patiently(runner, || runner.cloud.locks()),
    );
    let (fleets, locks) = (
        fleets.map_err(Failure::cloud(false))?,
        locks.map_err(Failure::cloud(false))?,
    );
    let mut by_service: BTreeMap<String, Vec<FleetSummary>> = BTreeMap::new();
    for fleet in fleets {
        if let Some(service) = fleet.tags.get(tags::SERVICE) {
            by_service.entry(service.clone()).or_default().push(fleet);
        }
    }
    let now = runner.clock.now();
    let mut due: Vec<(ServiceName, Vec<FleetSummary>)> = Vec::new();
    for (service, fleets) in by_service {
        let Ok(name) = ServiceName::parse(&service) else {
            continue;
        };
        if fleets.iter().any(|f| candidate(f, &options.policy, now)) {
            due.push((name, fleets));
        } else {
            // Nothing due by the tags: report what is kept without reading anything more.
            let routing = tags_routing(&name, &fleets);
            let items = match &routing {
                Some(routing) => plan_cleanup(
                    routing,
                    &ServiceView {
                        fleets: fleets.clone(),
                        ..ServiceView::default()
                    },
                    &options.policy,
                    now,
                ),
                None => Vec::new(),
            };
            report.services.push(ServiceReport {
                service,
                outcome: Outcome::NothingDue,
                items,
                applied: Vec::new(),
            });
        }
    }
    let due_names: BTreeSet<String> = due.iter().map(|(n, _)| n.to_string()).collect();
    report.stale_locks = stale_locks(runner, &locks, &due_names, options, sink).await;

    // Bounded concurrency: at most `concurrency` services in flight, in name order.
    let limit = options.concurrency.max(1);
    let mut queue = due.into_iter();
    let mut running = Vec::new();
    loop {
        while running.len() < limit {
            let Some((name, fleets)) = queue.next() else {
                break;
            };
            running.push(Box::pin(async move {
                named_service(runner, &name, &fleets, false, options, sink).await
            }));
        }
        if running.is_empty() {
            break;
        }
        let (done, _, rest) = futures_select_all(running).await;
        report.services.push(done);
        running = rest;
    }
    report.services.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(())
}

/// `futures::future::select_all` without the crate: polls every future, returns the first done.
async fn futures_select_all<F: std::future::Future + Unpin>(
    mut futures: Vec<F>,
) -> (F::Output, usize, Vec<F>) {
    use std::pin::Pin;
    use std::task::Poll;
    std::future::poll_fn(move |cx| {
        for i in 0..futures.len() {
            if let Poll::Ready(out) = Pin::new(&mut futures[i]).poll(cx) {
                drop(futures.swap_remove(i));
                let rest = std::mem::take(&mut futures);
                return Poll::Ready((out, i, rest));
            }
        }
        Poll::Pending
    })
    .await
}

/// Locks whose holder stopped renewing long ago, for services with nothing else due (those
/// with something due have their lock taken over when cleanup takes it).
async fn stale_locks<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    locks: &[LockObject],
    due: &BTreeSet<String>,
    options: &CleanupOptions,
    sink: &dyn CleanupSink,
) -> Vec<StaleLock> {
    let now = runner.clock.now();
    let mut stale = Vec::new();
    for object in locks {
        let Some(record) = LockRecord::read(&object.id, &object.tags) else {
            continue;
        };
        let service = object
            .tags
            .get(LOCK_SERVICE)
            .cloned()
            .unwrap_or_else(|| record.service.clone());
        if due.contains(&service) || now < record.expires_at {
            continue;
        }
        let removed = !options.dry_run && runner.cloud.delete_lock(&object.id).await.is_ok();
        let entry = StaleLock {
            service,
            lock: record,
            removed,
        };
        sink.event(&CleanupEvent::StaleLock {
            stale: entry.clone(),
            dry_run: options.dry_run,
        });
        stale.push(entry);
    }
    stale
}

/// The router and slots the service's fleets name in their tags (the newest fleet's first).
fn tags_routing(service: &ServiceName, fleets: &[FleetSummary]) -> Option<ServiceRouting> {
    let mut fleets: Vec<&FleetSummary> = fleets.iter().collect();
    fleets.sort_by_key(|f| std::cmp::Reverse(ReleaseTags::read(&f.tags).created_at));
    fleets.iter().find_map(|f| {
        tags::read_routing(&f.tags).map(|(router, slots)| ServiceRouting {
            service: service.clone(),
            router,
            slots,
        })
    })
}

async fn named_service<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    name: &ServiceName,
    fleets: &[FleetSummary],
    single: bool,
    options: &CleanupOptions,
    sink: &dyn CleanupSink,
) -> ServiceReport {
    match tags_routing(name, fleets) {
        Some(routing) => clean_service(runner, &routing, LOCK_TTL, single, options, sink).await,
        None => {
            let outcome = Outcome::NoRouter;
            sink.event(&CleanupEvent::CleanupService {
                service: name.to_string(),
                outcome: outcome.clone(),
            });
            ServiceReport {
                service: name.to_string(),
                outcome,
                items: Vec::new(),
                applied: Vec::new(),
            }
        }
    }
}

async fn clean_service<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    routing: &ServiceRouting,
    ttl: Duration,
    single: bool,
    options: &CleanupOptions,
    sink: &dyn CleanupSink,
) -> ServiceReport {
    let service = routing.service.to_string();
    let mut report = ServiceReport {
        service: service.clone(),
        outcome: Outcome::NothingDue,
        items: Vec::new(),
        applied: Vec::new(),
    };
    let result = if options.dry_run {
        pass(runner, routing, options, sink, &mut report, None, single).await
    } else {
        match Lease::acquire_for(
            runner.cloud,
            &routing.service,
            ttl,
            "cleanup",
            runner.holder,
            runner.clock.now(),
            runner.alive,
        )
        .await
        {
            Ok(mut lease) => {
                let result = pass(
                    runner,
                    routing,
                    options,
                    sink,
                    &mut report,
                    Some(&mut lease),
                    single,
                )
                .await;
                // A lock left behind expires on its own and the next run takes it over.
                let _ = lease.release_patiently(runner.cloud, runner.clock).await;
                result
            }
            Err(Failure::Locked(lock)) => Ok(Outcome::Locked {
                holder: lock.describe(),
            }),
            Err(failure) => Err(failure),
        }
    };
    report.outcome = match result {
        Ok(outcome) => outcome,
        Err(failure) => Outcome::Failed {
            exit_code: exit::code(&failure),
            message: failure.message(None),
        },
    };
    sink.event(&CleanupEvent::CleanupService {
        service,
        outcome: report.outcome.clone(),
    });
    report
}

/// Observe, decide, apply, until nothing is due, or only waits past the deadline are left.
async fn pass<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    routing: &ServiceRouting,
    options: &CleanupOptions,
    sink: &dyn CleanupSink,
    report: &mut ServiceReport,
    mut lease: Option<&mut Lease>,
    single: bool,
) -> Result<Outcome, Failure> {
    let service = routing.service.to_string();
    let mut said: BTreeMap<String, Decision> = BTreeMap::new();
    let mut acted = false;
    loop {
        let now = runner.clock.now();
        let view = patiently(runner, || {
            observe(runner.cloud, routing, single, options, now)
        })
        .await
        .map_err(Failure::cloud(acted))?;
        let items = tracing::info_span!("decide", service = %routing.service)
            .in_scope(|| plan_cleanup(routing, &view, &options.policy, now));
        for item in &items {
            let key = serde_json::to_string(&item.subject).unwrap_or_default();
            if said.get(&key) != Some(&item.decision) {
                said.insert(key, item.decision.clone());
                crate::logging::cleanup_decided(&service, item);
                sink.event(&CleanupEvent::CleanupItem {
                    service: service.clone(),
                    dry_run: options.dry_run,
                    item: item.clone(),
                });
            }
        }
        report.items = items.clone();
        let actions: Vec<&CleanupAction> = items
            .iter()
            .filter_map(|i| match &i.decision {
                Decision::Act { action, .. } => Some(action),
                _ => None,
            })
            .collect();
        let waits: Vec<Option<SystemTime>> = items
            .iter()
            .filter_map(|i| match &i.decision {
                Decision::Wait { until, .. } => Some(*until),
                _ => None,
            })
            .collect();
        if options.dry_run {
            return Ok(if actions.is_empty() && waits.is_empty() {
                Outcome::NothingDue
            } else {
                Outcome::Done
            });
        }
        if let Some(signal) = runner.stop.requested() {
            return Err(Failure::Interrupted {
                signal,
                state: format!("cleanup of {service} stopped between two steps"),
                resume: "re-run `greenlight cleanup` to finish".into(),
            });
        }
        if !actions.is_empty() {
            for action in actions {
                if let Some(lease) = lease.as_deref_mut() {
                    lease.ensure(runner.cloud, runner.clock.now()).await?;
                }
                apply_patiently(runner, routing, action, acted).await?;
                acted = true;
                report.applied.push(action.clone());
                sink.event(&CleanupEvent::CleanupApplied {
                    service: service.clone(),
                    action: action.clone(),
                });
            }
            continue;
        }
        if waits.is_empty() {
            return Ok(if acted {
                Outcome::Done
            } else {
                Outcome::NothingDue
            });
        }
        let now = runner.clock.now();
        let next = waits
            .iter()
            .map(|until| {
                until
                    .unwrap_or(now + POLL)
                    .max(now + Duration::from_millis(200))
            })
            .min()
            .unwrap_or(now + POLL)
            .min(now + MAX_DRAIN_SLEEP);
        if next > options.deadline {
            return Ok(Outcome::Pending);
        }
        sink.waiting(
            &service,
            waits.len(),
            next.duration_since(now).unwrap_or_default(),
        );
        if let Some(lease) = lease.as_deref_mut() {
            lease.ensure(runner.cloud, now).await?;
            let renew_by = now + lease.renew_every();
            runner
                .clock
                .sleep(next.min(renew_by).duration_since(now).unwrap_or_default())
                .await;
        } else {
            runner
                .clock
                .sleep(next.duration_since(now).unwrap_or_default())
                .await;
        }
    }
}

/// One observation of everything cleanup decides on. Target groups, listeners and templates
/// are read once each however many fleets share them; independent reads go out together.
#[tracing::instrument(name = "observe", level = "info", skip_all, fields(service = %routing.service))]
async fn observe<C: Cloud>(
    cloud: &C,
    routing: &ServiceRouting,
    single: bool,
    options: &CleanupOptions,
    now: SystemTime,
) -> Result<ServiceView, CloudError> {
    let slots = [
        routing.slots.get(Slot::A).clone(),
        routing.slots.get(Slot::B).clone(),
    ];
    // Auto Scaling cannot filter by target group: finding the slots' fleets reads every group
    // in the region. Cleaning one service that is fine, and catches a fleet in a slot that lost
    // its tags; `--all` keeps to the tag filter (one page per service), so its cost grows with
    // pages and due services, not with services times pages.
    let (tagged, attached) = tokio::join!(cloud.tagged_fleets(Some(&routing.service)), async {
        if single {
            cloud.fleets(&slots).await
        } else {
            Ok(Vec::new())
        }
    });
    let mut fleets: BTreeMap<FleetName, FleetSummary> = BTreeMap::new();
    for fleet in tagged?.into_iter().chain(attached?) {
        fleets.insert(fleet.name.clone(), fleet);
    }
    let fleets: Vec<FleetSummary> = fleets.into_values().collect();

    // Every target group any fleet serves, and the slots: the router's live state is read
    // on every listener of every load balancer they belong to.
    let target_groups: BTreeSet<TargetGroupArn> = fleets
        .iter()
        .flat_map(|f| f.target_groups.iter().cloned())
        .chain(slots.iter().cloned())
        .collect();
    let own: Vec<ListenerArn> = listener(&routing.router).into_iter().collect();
    let forwards = all_forwards(cloud, &target_groups, &own).await?;

    let mut targets = BTreeMap::new();
    let mut deregistration_delay = BTreeMap::new();
    for tg in &target_groups {
        let (health, delay) = tokio::join!(cloud.target_health(tg), cloud.deregistration_delay(tg));
        targets.insert(tg.clone(), health?);
        deregistration_delay.insert(tg.clone(), delay?);
    }

    let rules = match listener(&routing.router) {
        Some(listener) if single || fleets.iter().any(|f| candidate(f, &options.policy, now)) => {
            match routing.router.load_balancer_kind() {
                Some(LoadBalancerKind::Network) => None,
                _ => Some(cloud.listener_rules(&listener).await?),
            }
        }
        _ => None,
    };
    let templates = templates(cloud, &routing.service, &fleets).await?;

    let mut view = ServiceView {
        fleets,
        forwards,
        targets,
        deregistration_delay,
        requests: BTreeMap::new(),
        rules,
        templates,
    };
    // CloudWatch only for fleets about to go, and only where the load balancer counts requests.
    if let (Some(load_balancer), Some(LoadBalancerKind::Application)) = (
        routing.router.load_balancer_arn(),
        routing.router.load_balancer_kind(),
    ) {
        for (fleet, target_groups, since) in requests_due(routing, &view, &options.policy, now) {
            let windows = cloud
                .target_group_metrics(&load_balancer, &target_groups, since, now)
                .await?;
            let requests: f64 = windows.iter().map(|w| w.requests).sum();
            view.requests.insert(fleet, requests);
        }
    }
    Ok(view)
}

fn listener(router: &RouterId) -> Option<ListenerArn> {
    match router {
        RouterId::Listener(arn) => Some(arn.clone()),
        RouterId::Rule(arn) => listener_of(arn),
    }
}

async fn all_forwards<C: Cloud>(
    cloud: &C,
    target_groups: &BTreeSet<TargetGroupArn>,
    also: &[ListenerArn],
) -> Result<Vec<ListenerForward>, CloudError> {
    let mut load_balancers = BTreeSet::new();
    for tg in target_groups {
        match cloud.target_group(tg).await {
            Ok(info) => load_balancers.extend(info.load_balancer_arns),
            // A target group that is gone routes nothing.
            Err(e) if e.kind == CloudErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let mut listeners: BTreeSet<ListenerArn> = also.iter().cloned().collect();
    for lb in &load_balancers {
        listeners.extend(cloud.listeners(lb).await?);
    }
    let mut forwards = Vec::new();
    for listener in &listeners {
        forwards.extend(cloud.listener_forwards(listener).await?);
    }
    Ok(forwards)
}

/// The launch templates the service's fleets launch from, with their versions and which are
/// in use, for templates where greenlight made versions for this service.
async fn templates<C: Cloud>(
    cloud: &C,
    service: &ServiceName,
    fleets: &[FleetSummary],
) -> Result<Vec<TemplateVersions>, CloudError> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for fleet in fleets.iter().filter(|f| !f.deleting) {
        if let Some(t) = &fleet.launch_template {
            used.entry(t.id.clone())
                .or_default()
                .insert(t.version.clone());
            continue;
        }
        // Named by template name (a first fleet made by hand, say): which version it uses is
        // not known without the full read, which cleanup's role is not granted. Keep every
        // version rather than guess; the next deploy replaces that fleet.
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (template_id, versions_used) in used {
        let versions = cloud.launch_template_versions(&template_id).await?;
        if !versions
            .iter()
            .any(|v| crate::core::cleanup::made_by_greenlight(service, v))
        {
            continue;
        }
        let default_version = cloud
            .launch_template_version(&LaunchTemplateRef {
                id: template_id.clone(),
                version: "$Default".into(),
            })
            .await?
            .map(|v| v.number);
        let latest = versions.iter().map(|v| v.number).max();
        let in_use = versions_used
            .iter()
            .filter_map(|v| match v.as_str() {
                "$Latest" => latest,
                "$Default" => default_version,
                n => n.parse().ok(),
            })
            .collect();
        out.push(TemplateVersions {
            template_id,
            versions,
            default_version,
            in_use,
        });
    }
    Ok(out)
}

/// [`apply`], riding out throttling, 5xx and lost connections for a minute like every command:
/// each action is safe to repeat.
#[tracing::instrument(
    name = "apply",
    level = "info",
    skip_all,
    fields(service = %routing.service, action = action.name())
)]
async fn apply_patiently<C: Cloud, K: Clock>(
    runner: &Runner<'_, C, K>,
    routing: &ServiceRouting,
    action: &CleanupAction,
    acted: bool,
) -> Result<(), Failure> {
    let give_up = runner.clock.now() + super::driver::TRANSIENT_PATIENCE;
    let mut backoff = super::backoff::Backoff::new(Duration::from_millis(500));
    let started = std::time::Instant::now();
    loop {
        let now = runner.clock.now();
        match apply(runner.cloud, routing, action, now, acted).await {
            Err(Failure::Cloud { error, .. })
                if error.transient() && now < give_up && runner.stop.requested().is_none() =>
            {
                runner.clock.sleep(backoff.next_wait(now, give_up)).await;
            }
            other => {
                crate::logging::applied(action.name(), &other, started);
                return other;
            }
        }
    }
}

/// Applies one action. Before shrinking or deleting a fleet, the router is read again on every
/// listener its target groups are on: if any now sends it traffic, nothing is done.
async fn apply<C: Cloud>(
    cloud: &C,
    routing: &ServiceRouting,
    action: &CleanupAction,
    now: SystemTime,
    acted: bool,
) -> Result<(), Failure> {
    let changed = Failure::cloud(true);
    if let Some(fleet) = action.fleet() {
        let read = Failure::cloud(acted);
        let Some(summary) = cloud.fleet_summary(fleet).await.map_err(read)? else {
            return Ok(());
        };
        let target_groups: BTreeSet<TargetGroupArn> =
            summary.target_groups.iter().cloned().collect();
        // The service's own listener too, not only those the target groups' load balancers
        // lead to: the router that moves traffic is the one most likely to have changed.
        let own: Vec<ListenerArn> = listener(&routing.router).into_iter().collect();
        let forwards = all_forwards(cloud, &target_groups, &own)
            .await
            .map_err(read)?;
        if let Some((tg, owner, weight)) = routed(&forwards, &summary.target_groups) {
            return Err(Failure::NeedsAttention(format!(
                "fleet {fleet} of service {} was about to be retired, but target group {} now \
                 takes traffic (weight {weight} in {owner}); left it alone",
                routing.service,
                tg.short_name()
            )));
        }
    }
    match action {
        CleanupAction::ScaleDown { fleet, .. } => {
            cloud
                .tag_fleet(
                    fleet,
                    &[(tags::RETIRING_AT.to_owned(), tags::timestamp(now))],
                )
                .await
                .map_err(changed)?;
            cloud
                .set_capacity(fleet, Capacity::ZERO)
                .await
                .map_err(changed)?;
        }
        CleanupAction::DeleteFleet { fleet, .. } => match cloud.delete_fleet(fleet).await {
            Ok(()) => {}
            Err(e) if e.kind == CloudErrorKind::NotFound => {}
            Err(e) => return Err(changed(e)),
        },
        CleanupAction::DeleteRule { rule, .. } => {
            cloud.delete_rule(rule).await.map_err(changed)?;
        }
        CleanupAction::DeleteVersions {
            template_id,
            versions,
        } => {
            cloud
                .delete_launch_template_versions(template_id, versions)
                .await
                .map_err(changed)?;
        }
    }
    Ok(())
}
