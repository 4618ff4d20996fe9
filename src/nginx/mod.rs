//! The `Cloud` port for an nginx router (`[router] kind = "nginx"`).
//!
//! The core decides for nginx exactly as for an ALB; this adapter answers in the same model:
//! - the router is the include file greenlight owns ([`include`]): a routing change writes it
//!   atomically, runs the configured test (`nginx -t`) and, only if that passes, the reload
//!   (`nginx -s reload`: graceful, old workers finish their requests);
//! - the two slots are two target groups whose targets are the slot's backends, checked over
//!   HTTP by greenlight itself ([`check`]);
//! - a release's fleet, its tags, and the lock are records in one state file ([`store`]); the
//!   backends themselves are started and stopped by the user's own tooling;
//! - metric analysis reads the access log.

pub mod check;
pub mod include;
pub mod store;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::core::analysis::{AlarmState, MetricWindow};
use crate::core::cloud::{
    Cloud, CloudError, CloudErrorKind, CloudResult, LaunchTemplateVersion, ListenerForward,
    LockObject, ROUTER_CHANGED, TargetGroupInfo,
};
use crate::core::fleet::{
    Capacity, FleetConfig, FleetInstance, FleetLaunch, FleetSummary, FleetTag, LaunchTemplateRef,
};
use crate::core::health::TargetHealth;
use crate::core::names::{FleetName, ImageId, ListenerArn, RuleArn, ServiceName, TargetGroupArn};
use crate::core::nginx::{self, NginxSpec};
use crate::core::router::{
    Forward, RouterAction, RouterId, RouterState, RouterWrite, Slot, Stickiness, Weight,
    same_forwards,
};
use crate::core::spec::Spec;
use crate::core::tags;
use crate::core::test_traffic::{ListenerRule, RuleCondition};

use self::check::Checker;
use self::store::{FleetRecord, LockRecord, Records, Store, VersionRecord};

/// The version of the service's launch template that stands for "the backends as they are":
/// nginx slots run what the user's tooling started, so there is nothing else to launch.
pub const BACKENDS_VERSION: u64 = 1;

pub struct NginxCloud {
    service: ServiceName,
    spec: NginxSpec,
    router: RouterId,
    slots: [TargetGroupArn; 2],
    store: Store,
    checker: Checker,
}

fn error(kind: CloudErrorKind, operation: &str, message: impl Into<String>) -> CloudError {
    CloudError::new(kind, operation, message)
}

fn not_found(operation: &str, what: impl std::fmt::Display) -> CloudError {
    error(
        CloudErrorKind::NotFound,
        operation,
        format!("{what} does not exist"),
    )
    .with_code("NotFound")
}

impl NginxCloud {
    /// `None` unless the spec's router is nginx.
    pub fn new(spec: &Spec) -> Option<NginxCloud> {
        let nginx = spec.nginx.clone()?;
        let backends = Slot::BOTH
            .into_iter()
            .flat_map(|slot| nginx.backends(slot).to_vec())
            .collect();
        Some(NginxCloud {
            service: spec.service.clone(),
            router: spec.router.clone(),
            slots: [
                spec.slots.get(Slot::A).clone(),
                spec.slots.get(Slot::B).clone(),
            ],
            store: Store::new(nginx.state.clone()),
            checker: Checker::new(nginx.check.clone(), backends),
            spec: nginx,
        })
    }

    /// The include for the routing nginx runs with now; all traffic to slot a when there is
    /// neither a record nor an include yet.
    pub fn current_include(&self) -> CloudResult<String> {
        let operation = "DescribeListeners";
        let records = self.store.read(operation)?;
        let weights = match self.forwards(&records, operation) {
            Ok(forwards) => Slot::BOTH.map(|slot| {
                forwards
                    .iter()
                    .filter(|f| f.target_group == self.slots[slot.index()])
                    .map(|f| f.weight.get())
                    .max()
                    .unwrap_or(0)
            }),
            Err(e) if e.code.as_deref() == Some(include::NO_INCLUDE) => [1, 0],
            Err(e) => return Err(e),
        };
        Ok(nginx::render(
            &self.service,
            &self.spec,
            weights,
            records.sticky,
        ))
    }

    fn template_id(&self) -> String {
        format!("lt-nginx-{}", self.service)
    }

    fn slot_of(&self, target_group: &TargetGroupArn) -> Option<Slot> {
        Slot::BOTH
            .into_iter()
            .find(|slot| &self.slots[slot.index()] == target_group)
    }

    fn load_balancer_arn(&self) -> String {
        self.router
            .load_balancer_arn()
            .expect("nginx's router ARN names a load balancer")
    }

    /// The forwards nginx runs with: as greenlight last loaded them, else as the include says
    /// (the user's first include, before greenlight's first change).
    fn forwards(&self, records: &Records, operation: &str) -> CloudResult<Vec<Forward>> {
        if let Some(router) = &records.router {
            return router
                .iter()
                .map(|(arn, weight)| {
                    Ok(Forward {
                        target_group: TargetGroupArn::parse(arn).map_err(|e| {
                            error(CloudErrorKind::Other, operation, e.0).with_code("NginxStateFile")
                        })?,
                        weight: Weight::new(*weight).unwrap_or(Weight::ZERO),
                    })
                })
                .collect();
        }
        let weights = include::read(&self.service, &self.spec, operation)?;
        Ok(Slot::BOTH
            .into_iter()
            .map(|slot| Forward {
                target_group: self.slots[slot.index()].clone(),
                weight: Weight::new(weights[slot.index()]).unwrap_or(Weight::ZERO),
            })
            .collect())
    }

    /// The fleets as recorded; before the first change, the service's first fleet: untagged,
    /// in every slot nginx routes to, at the slot's size.
    fn fleets_of(
        &self,
        records: &Records,
        operation: &str,
    ) -> CloudResult<Vec<(String, FleetRecord)>> {
        if records.seeded {
            return Ok(records
                .fleets
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect());
        }
        let forwards = self.forwards(records, operation)?;
        Ok(self.first_fleets(&forwards))
    }

    fn first_fleets(&self, forwards: &[Forward]) -> Vec<(String, FleetRecord)> {
        let mut out = Vec::new();
        for slot in Slot::BOTH {
            let arn = &self.slots[slot.index()];
            let routed = forwards
                .iter()
                .any(|f| &f.target_group == arn && f.weight.get() > 0);
            if !routed {
                continue;
            }
            let size = self.spec.backends(slot).len() as u32;
            out.push((
                format!("{}-initial-{slot}", self.service),
                FleetRecord {
                    min: size,
                    max: size,
                    desired: size,
                    tags: BTreeMap::new(),
                    target_groups: vec![arn.to_string()],
                    suspended: Vec::new(),
                    template_version: BACKENDS_VERSION.to_string(),
                    serial: 0,
                },
            ));
        }
        out
    }

    /// Every change starts here: the first makes the first fleets real records.
    fn change<T>(
        &self,
        operation: &str,
        change: impl FnOnce(&mut Records) -> CloudResult<T>,
    ) -> CloudResult<T> {
        self.store.update(operation, |records| {
            if !records.seeded {
                let forwards = self.forwards(records, operation)?;
                let now = tags::timestamp(SystemTime::now());
                for (name, mut fleet) in self.first_fleets(&forwards) {
                    // greenlight made this record, so cleanup may let it go like any release
                    // it made (on AWS a first fleet is someone else's, and kept).
                    fleet
                        .tags
                        .insert(tags::SERVICE.into(), self.service.to_string());
                    fleet.tags.insert(tags::CREATED_AT.into(), now.clone());
                    records.fleets.entry(name).or_insert(fleet);
                }
                records.seeded = true;
            }
            change(records)
        })
    }

    /// The fleet that serves `slot`: the newest with capacity attached to it. Its instances are
    /// the slot's backends; every other fleet of the slot has none.
    fn serving(fleets: &[(String, FleetRecord)], target_group: &str) -> Option<String> {
        fleets
            .iter()
            .filter(|(_, f)| f.desired > 0 && f.target_groups.iter().any(|t| t == target_group))
            .max_by_key(|(_, f)| f.serial)
            .map(|(name, _)| name.clone())
    }

    fn summary(
        &self,
        fleets: &[(String, FleetRecord)],
        name: &str,
        fleet: &FleetRecord,
    ) -> FleetSummary {
        let mut instances = Vec::new();
        for tg in &fleet.target_groups {
            let slot = TargetGroupArn::parse(tg)
                .ok()
                .and_then(|arn| self.slot_of(&arn));
            if let Some(slot) = slot
                && Self::serving(fleets, tg).as_deref() == Some(name)
            {
                instances.extend(self.spec.backends(slot).iter().map(|b| FleetInstance {
                    id: b.as_str().to_owned(),
                    lifecycle_state: FleetInstance::IN_SERVICE.into(),
                    health_status: "Healthy".into(),
                }));
            }
        }
        FleetSummary {
            name: FleetName::new(name),
            capacity: Capacity {
                min: fleet.min,
                max: fleet.max,
                desired: fleet.desired,
            },
            instances,
            tags: fleet.tags.clone(),
            target_groups: fleet
                .target_groups
                .iter()
                .filter_map(|t| TargetGroupArn::parse(t).ok())
                .collect(),
            suspended_processes: fleet.suspended.clone(),
            deleting: false,
            launch_template: Some(LaunchTemplateRef {
                id: self.template_id(),
                version: fleet.template_version.clone(),
            }),
        }
    }

    fn summaries(&self, operation: &str) -> CloudResult<Vec<FleetSummary>> {
        let records = self.store.read(operation)?;
        let fleets = self.fleets_of(&records, operation)?;
        Ok(fleets
            .iter()
            .map(|(name, f)| self.summary(&fleets, name, f))
            .collect())
    }

    fn info(&self, arn: &TargetGroupArn) -> CloudResult<TargetGroupInfo> {
        self.slot_of(arn)
            .map(|_| TargetGroupInfo {
                arn: arn.clone(),
                name: arn.short_name().to_owned(),
                target_type: "instance".into(),
                vpc_id: None,
                load_balancer_arns: vec![self.load_balancer_arn()],
            })
            .ok_or_else(|| not_found("DescribeTargetGroups", format!("target group {arn}")))
    }

    fn version_record(&self, records: &Records, number: u64) -> Option<LaunchTemplateVersion> {
        if number == BACKENDS_VERSION {
            return Some(LaunchTemplateVersion {
                template_id: self.template_id(),
                number,
                image_id: None,
                description: Some("the backends of [router] backends, as they run".into()),
            });
        }
        records
            .versions
            .get(&number)
            .map(|v| LaunchTemplateVersion {
                template_id: self.template_id(),
                number,
                image_id: v.image.clone(),
                description: v.description.clone(),
            })
    }

    fn check_template(&self, operation: &str, template_id: &str) -> CloudResult<()> {
        if template_id == self.template_id() {
            Ok(())
        } else {
            Err(not_found(
                operation,
                format!("launch template {template_id}"),
            ))
        }
    }

    fn fleet_mut<'r>(
        records: &'r mut Records,
        operation: &str,
        name: &FleetName,
    ) -> CloudResult<&'r mut FleetRecord> {
        records
            .fleets
            .get_mut(name.as_str())
            .ok_or_else(|| not_found(operation, format!("fleet {name}")))
    }
}

impl Cloud for NginxCloud {
    async fn router(&self, id: &RouterId) -> CloudResult<RouterState> {
        if id != &self.router {
            return Err(not_found("DescribeListeners", id));
        }
        let records = self.store.read("DescribeListeners")?;
        Ok(RouterState {
            id: id.clone(),
            action: RouterAction::Forward {
                forwards: self.forwards(&records, "DescribeListeners")?,
            },
        })
    }

    async fn target_group(&self, arn: &TargetGroupArn) -> CloudResult<TargetGroupInfo> {
        self.info(arn)
    }

    async fn target_groups(&self, arns: &[TargetGroupArn]) -> CloudResult<Vec<TargetGroupInfo>> {
        arns.iter().map(|arn| self.info(arn)).collect()
    }

    async fn fleets(&self, target_groups: &[TargetGroupArn]) -> CloudResult<Vec<FleetSummary>> {
        Ok(self
            .summaries("DescribeAutoScalingGroups")?
            .into_iter()
            .filter(|f| f.target_groups.iter().any(|tg| target_groups.contains(tg)))
            .collect())
    }

    async fn fleet_config(&self, name: &FleetName) -> CloudResult<FleetConfig> {
        let summary = self
            .fleet_summary(name)
            .await?
            .ok_or_else(|| not_found("DescribeAutoScalingGroups", format!("fleet {name}")))?;
        let launch = summary
            .launch_template
            .clone()
            .expect("nginx fleets name their template");
        Ok(FleetConfig {
            launch: FleetLaunch::Template(launch),
            capacity: summary.capacity,
            subnets: Vec::new(),
            availability_zones: Vec::new(),
            health_check_type: Some("ELB".into()),
            health_check_grace_period: None,
            default_cooldown: None,
            termination_policies: Vec::new(),
            default_instance_warmup: None,
            capacity_rebalance: None,
            max_instance_lifetime: None,
            instance_maintenance_policy: None,
            new_instances_protected_from_scale_in: None,
            placement_group: None,
            service_linked_role_arn: None,
            desired_capacity_type: None,
            lifecycle_hooks: Vec::new(),
            scaling_policies: Vec::new(),
            scheduled_actions: Vec::new(),
            metrics: None,
            suspended_processes: summary.suspended_processes.clone(),
            tags: summary
                .tags
                .iter()
                .map(|(key, value)| FleetTag {
                    key: key.clone(),
                    value: value.clone(),
                    propagate_at_launch: false,
                })
                .collect(),
            target_groups: summary.target_groups.clone(),
            has_warm_pool: false,
        })
    }

    async fn target_health(&self, target_group: &TargetGroupArn) -> CloudResult<Vec<TargetHealth>> {
        let Some(slot) = self.slot_of(target_group) else {
            return Err(not_found(
                "DescribeTargetHealth",
                format!("target group {target_group}"),
            ));
        };
        // A slot's backends are its targets only while a fleet with capacity serves it, as an
        // Auto Scaling group registers its instances.
        let records = self.store.read("DescribeTargetHealth")?;
        let fleets = self.fleets_of(&records, "DescribeTargetHealth")?;
        if Self::serving(&fleets, target_group.as_str()).is_none() {
            return Ok(Vec::new());
        }
        Ok(self.checker.health(self.spec.backends(slot)).await)
    }

    async fn image_exists(&self, _image: &ImageId) -> CloudResult<bool> {
        // Never asked: the CLI refuses --image-id for an nginx router.
        Ok(false)
    }

    async fn launch_template_version(
        &self,
        template: &LaunchTemplateRef,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        let operation = "DescribeLaunchTemplateVersions";
        if template.id != self.template_id() {
            return Ok(None);
        }
        let records = self.store.read(operation)?;
        let number = match template.version.as_str() {
            "$Default" => BACKENDS_VERSION,
            "$Latest" => records
                .versions
                .keys()
                .next_back()
                .copied()
                .unwrap_or(BACKENDS_VERSION),
            n => match n.parse::<u64>() {
                Ok(n) => n,
                Err(_) => return Ok(None),
            },
        };
        Ok(self.version_record(&records, number))
    }

    async fn find_launch_template_version(
        &self,
        template_id: &str,
        description: &str,
    ) -> CloudResult<Option<LaunchTemplateVersion>> {
        let operation = "DescribeLaunchTemplateVersions";
        self.check_template(operation, template_id)?;
        let records = self.store.read(operation)?;
        Ok(records
            .versions
            .iter()
            .find(|(_, v)| v.description.as_deref() == Some(description))
            .and_then(|(n, _)| self.version_record(&records, *n)))
    }

    async fn create_launch_template_version(
        &self,
        template_id: &str,
        source_version: u64,
        image: &ImageId,
        description: &str,
        client_token: &str,
    ) -> CloudResult<LaunchTemplateVersion> {
        let operation = "CreateLaunchTemplateVersion";
        self.check_template(operation, template_id)?;
        let number = self.change(operation, |records| {
            if source_version != BACKENDS_VERSION && !records.versions.contains_key(&source_version)
            {
                return Err(not_found(operation, format!("version {source_version}")));
            }
            if let Some((n, _)) = records
                .versions
                .iter()
                .find(|(_, v)| v.client_token == client_token)
            {
                return Ok(*n);
            }
            let n = records
                .versions
                .keys()
                .next_back()
                .copied()
                .unwrap_or(BACKENDS_VERSION)
                + 1;
            records.versions.insert(
                n,
                VersionRecord {
                    image: Some(image.to_string()),
                    description: Some(description.to_owned()),
                    client_token: client_token.to_owned(),
                },
            );
            Ok(n)
        })?;
        let records = self.store.read(operation)?;
        self.version_record(&records, number)
            .ok_or_else(|| not_found(operation, format!("version {number}")))
    }

    async fn fleet_summary(&self, name: &FleetName) -> CloudResult<Option<FleetSummary>> {
        Ok(self
            .summaries("DescribeAutoScalingGroups")?
            .into_iter()
            .find(|f| &f.name == name))
    }

    async fn create_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        let operation = "CreateAutoScalingGroup";
        for tg in &config.target_groups {
            self.info(tg)?;
        }
        let version = config
            .launch
            .template()
            .map(|t| t.version.clone())
            .unwrap_or_else(|| BACKENDS_VERSION.to_string());
        self.change(operation, |records| {
            if records.fleets.contains_key(name.as_str()) {
                return Err(error(
                    CloudErrorKind::Conflict,
                    operation,
                    format!("fleet {name} already exists"),
                )
                .with_code("AlreadyExists"));
            }
            let serial = records.fleets.values().map(|f| f.serial).max().unwrap_or(0) + 1;
            records.fleets.insert(
                name.to_string(),
                FleetRecord {
                    min: config.capacity.min,
                    max: config.capacity.max,
                    desired: config.capacity.desired,
                    tags: config
                        .tags
                        .iter()
                        .map(|t| (t.key.clone(), t.value.clone()))
                        .collect(),
                    target_groups: config.target_groups.iter().map(|t| t.to_string()).collect(),
                    suspended: Vec::new(),
                    template_version: version,
                    serial,
                },
            );
            Ok(())
        })
    }

    async fn configure_fleet(&self, name: &FleetName, config: &FleetConfig) -> CloudResult<()> {
        self.change("PutScalingPolicy", |records| {
            let fleet = Self::fleet_mut(records, "PutScalingPolicy", name)?;
            for process in &config.suspended_processes {
                if !fleet.suspended.contains(process) {
                    fleet.suspended.push(process.clone());
                }
            }
            Ok(())
        })
    }

    async fn set_capacity(&self, name: &FleetName, capacity: Capacity) -> CloudResult<()> {
        self.change("UpdateAutoScalingGroup", |records| {
            let fleet = Self::fleet_mut(records, "UpdateAutoScalingGroup", name)?;
            (fleet.min, fleet.max, fleet.desired) = (capacity.min, capacity.max, capacity.desired);
            Ok(())
        })
    }

    async fn tag_fleet(&self, name: &FleetName, tags: &[(String, String)]) -> CloudResult<()> {
        self.change("CreateOrUpdateTags", |records| {
            let fleet = Self::fleet_mut(records, "CreateOrUpdateTags", name)?;
            for (key, value) in tags {
                fleet.tags.insert(key.clone(), value.clone());
            }
            Ok(())
        })
    }

    async fn untag_fleet(&self, name: &FleetName, keys: &[String]) -> CloudResult<()> {
        self.change("DeleteTags", |records| {
            let fleet = Self::fleet_mut(records, "DeleteTags", name)?;
            for key in keys {
                fleet.tags.remove(key);
            }
            Ok(())
        })
    }

    async fn suspend_processes(&self, name: &FleetName, processes: &[String]) -> CloudResult<()> {
        self.change("SuspendProcesses", |records| {
            let fleet = Self::fleet_mut(records, "SuspendProcesses", name)?;
            for process in processes {
                if !fleet.suspended.contains(process) {
                    fleet.suspended.push(process.clone());
                }
            }
            Ok(())
        })
    }

    async fn resume_processes(&self, name: &FleetName, processes: &[String]) -> CloudResult<()> {
        self.change("ResumeProcesses", |records| {
            let fleet = Self::fleet_mut(records, "ResumeProcesses", name)?;
            fleet.suspended.retain(|p| !processes.contains(p));
            Ok(())
        })
    }

    async fn delete_fleet(&self, name: &FleetName) -> CloudResult<()> {
        self.change("DeleteAutoScalingGroup", |records| {
            records
                .fleets
                .remove(name.as_str())
                .map(drop)
                .ok_or_else(|| not_found("DeleteAutoScalingGroup", format!("fleet {name}")))
        })
    }

    async fn route(&self, id: &RouterId, write: &RouterWrite) -> CloudResult<Vec<Forward>> {
        let operation = "ModifyListener";
        if id != &self.router {
            return Err(not_found(operation, id));
        }
        let mut weights = [0u16; 2];
        for forward in &write.forwards {
            let slot = self.slot_of(&forward.target_group).ok_or_else(|| {
                error(
                    CloudErrorKind::InvalidRequest,
                    operation,
                    format!(
                        "target group {} is not one of nginx's two slots",
                        forward.target_group
                    ),
                )
            })?;
            weights[slot.index()] = weights[slot.index()].max(forward.weight.get());
        }
        if weights == [0, 0] {
            return Err(error(
                CloudErrorKind::InvalidRequest,
                operation,
                "a routing with no weight anywhere would send requests nowhere",
            ));
        }
        // The whole write runs under the records' lock: no other runner's routing change or
        // record can come between the check of `expected` and the reload.
        self.change(operation, |records| {
            let current = self.forwards(records, operation)?;
            if !same_forwards(&current, &write.expected) {
                return Err(error(
                    CloudErrorKind::Conflict,
                    operation,
                    "nginx's routing changed since it was read; reading it again",
                )
                .with_code(ROUTER_CHANGED));
            }
            let sticky = match write.stickiness {
                Stickiness::Keep => records.sticky,
                Stickiness::On(_) => true,
                Stickiness::Off => false,
            };
            let text = nginx::render(&self.service, &self.spec, weights, sticky);
            include::apply(&self.spec, &text, operation)?;
            records.router = Some(
                write
                    .forwards
                    .iter()
                    .map(|f| (f.target_group.to_string(), f.weight.get()))
                    .collect(),
            );
            records.sticky = sticky;
            Ok(())
        })?;
        Ok(write.forwards.clone())
    }

    async fn create_lock(
        &self,
        name: &str,
        tags: &[(String, String)],
        client_token: &str,
    ) -> CloudResult<String> {
        let operation = "CreateLaunchTemplate";
        self.change(operation, |records| {
            if let Some(lock) = records.locks.get(name) {
                if lock.client_token == client_token {
                    return Ok(lock.id.clone());
                }
                return Err(error(
                    CloudErrorKind::Conflict,
                    operation,
                    format!("lock {name} is held"),
                )
                .with_code("InvalidLaunchTemplateName.AlreadyExistsException"));
            }
            records.lock_serial += 1;
            let id = format!("lock-{:08}", records.lock_serial);
            records.locks.insert(
                name.to_owned(),
                LockRecord {
                    id: id.clone(),
                    tags: tags.iter().cloned().collect(),
                    client_token: client_token.to_owned(),
                },
            );
            Ok(id)
        })
    }

    async fn read_lock(
        &self,
        name: &str,
    ) -> CloudResult<Option<(String, BTreeMap<String, String>)>> {
        let records = self.store.read("DescribeLaunchTemplates")?;
        Ok(records
            .locks
            .get(name)
            .map(|lock| (lock.id.clone(), lock.tags.clone())))
    }

    async fn tag_lock(&self, id: &str, tags: &[(String, String)]) -> CloudResult<()> {
        let operation = "CreateTags";
        self.change(operation, |records| {
            let lock = records
                .locks
                .values_mut()
                .find(|lock| lock.id == id)
                .ok_or_else(|| not_found(operation, format!("lock {id}")))?;
            for (key, value) in tags {
                lock.tags.insert(key.clone(), value.clone());
            }
            Ok(())
        })
    }

    async fn delete_lock(&self, id: &str) -> CloudResult<()> {
        self.change("DeleteLaunchTemplate", |records| {
            records.locks.retain(|_, lock| lock.id != id);
            Ok(())
        })
    }

    async fn listener_rules(&self, listener: &ListenerArn) -> CloudResult<Vec<ListenerRule>> {
        if RouterId::Listener(listener.clone()) != self.router {
            return Err(not_found("DescribeRules", format!("listener {listener}")));
        }
        // nginx's router has only its default action.
        Ok(Vec::new())
    }

    async fn create_rule(
        &self,
        _listener: &ListenerArn,
        _priority: u32,
        _conditions: &[RuleCondition],
        _target_group: &TargetGroupArn,
        _tags: &[(String, String)],
    ) -> CloudResult<RuleArn> {
        Err(error(
            CloudErrorKind::InvalidRequest,
            "CreateRule",
            "an nginx router has no listener rules ([test_traffic] is for an ALB)",
        ))
    }

    async fn delete_rule(&self, _rule: &RuleArn) -> CloudResult<()> {
        // There are none to delete.
        Ok(())
    }

    async fn load_balancer_dns(&self, _load_balancer_arn: &str) -> CloudResult<String> {
        // nginx listens where its own configuration says; greenlight does not know the address.
        Ok(String::new())
    }

    async fn alarms(&self, _names: &[String]) -> CloudResult<Vec<AlarmState>> {
        // None can be configured for nginx (the config refuses [analysis] alarms).
        Ok(Vec::new())
    }

    async fn target_group_metrics(
        &self,
        _load_balancer_arn: &str,
        target_groups: &[TargetGroupArn],
        start: SystemTime,
        end: SystemTime,
    ) -> CloudResult<Vec<MetricWindow>> {
        let records = match &self.spec.access_log {
            Some(path) => include::access_records(path, start, "GetMetricData")?,
            None => Vec::new(),
        };
        Ok(nginx::windows(
            &self.service,
            &records,
            target_groups,
            start,
            end,
        ))
    }

    async fn tagged_fleets(&self, service: Option<&ServiceName>) -> CloudResult<Vec<FleetSummary>> {
        Ok(self
            .summaries("DescribeAutoScalingGroups")?
            .into_iter()
            .filter(|f| match (f.tags.get(tags::SERVICE), service) {
                (Some(tagged), Some(service)) => tagged == service.as_str(),
                (Some(_), None) => true,
                (None, _) => false,
            })
            .collect())
    }

    async fn listeners(&self, load_balancer_arn: &str) -> CloudResult<Vec<ListenerArn>> {
        if load_balancer_arn != self.load_balancer_arn() {
            return Err(not_found(
                "DescribeListeners",
                format!("load balancer {load_balancer_arn}"),
            ));
        }
        match &self.router {
            RouterId::Listener(arn) => Ok(vec![arn.clone()]),
            RouterId::Rule(_) => Ok(Vec::new()),
        }
    }

    async fn listener_forwards(&self, listener: &ListenerArn) -> CloudResult<Vec<ListenerForward>> {
        let state = self.router(&RouterId::Listener(listener.clone())).await?;
        Ok(vec![ListenerForward {
            owner: listener.to_string(),
            forwards: state.forwards().to_vec(),
        }])
    }

    async fn deregistration_delay(&self, target_group: &TargetGroupArn) -> CloudResult<Duration> {
        self.info(target_group)?;
        Ok(self.spec.drain)
    }

    async fn launch_template_versions(
        &self,
        template_id: &str,
    ) -> CloudResult<Vec<LaunchTemplateVersion>> {
        let operation = "DescribeLaunchTemplateVersions";
        self.check_template(operation, template_id)?;
        let records = self.store.read(operation)?;
        Ok(std::iter::once(BACKENDS_VERSION)
            .chain(records.versions.keys().copied())
            .filter_map(|n| self.version_record(&records, n))
            .collect())
    }

    async fn delete_launch_template_versions(
        &self,
        template_id: &str,
        versions: &[u64],
    ) -> CloudResult<()> {
        let operation = "DeleteLaunchTemplateVersions";
        self.check_template(operation, template_id)?;
        if versions.contains(&BACKENDS_VERSION) {
            return Err(error(
                CloudErrorKind::InvalidRequest,
                operation,
                "version 1 is the default version",
            ));
        }
        self.change(operation, |records| {
            for n in versions {
                records.versions.remove(n);
            }
            Ok(())
        })
    }

    async fn locks(&self) -> CloudResult<Vec<LockObject>> {
        let records = self.store.read("DescribeLaunchTemplates")?;
        Ok(records
            .locks
            .iter()
            .map(|(name, lock)| LockObject {
                name: name.clone(),
                id: lock.id.clone(),
                tags: lock.tags.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cloud::CloudErrorKind;

    fn cloud(dir: &std::path::Path) -> (NginxCloud, Spec) {
        let d = dir.display();
        let text = format!(
            "service = \"web\"\n[router]\nkind = \"nginx\"\ninclude = \"{d}/web.conf\"\n\
             test = [\"true\"]\nreload = [\"sh\", \"-c\", \"cp {d}/web.conf {d}/loaded.conf\"]\n\
             backends = [[\"127.0.0.1:1\"], [\"127.0.0.1:2\"]]\n"
        );
        let spec = Spec::parse(&text).unwrap();
        let cloud = NginxCloud::new(&spec).unwrap();
        std::fs::write(dir.join("web.conf"), cloud.current_include().unwrap()).unwrap();
        (cloud, spec)
    }

    fn forwards(spec: &Spec, a: u16, b: u16) -> Vec<Forward> {
        vec![
            Forward {
                target_group: spec.slots.get(Slot::A).clone(),
                weight: Weight::new(a).unwrap(),
            },
            Forward {
                target_group: spec.slots.get(Slot::B).clone(),
                weight: Weight::new(b).unwrap(),
            },
        ]
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_route_checks_what_it_expects_and_loads_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (cloud, spec) = cloud(dir.path());
        block_on(async {
            let before = cloud.router(&spec.router).await.unwrap();
            assert_eq!(before.forwards(), forwards(&spec, 1, 0).as_slice());
            // Expecting a routing nginx does not have: refused, nothing written or loaded.
            let stale = RouterWrite {
                expected: forwards(&spec, 0, 1),
                forwards: forwards(&spec, 0, 100),
                stickiness: Stickiness::Keep,
            };
            let error = cloud.route(&spec.router, &stale).await.unwrap_err();
            assert_eq!(error.kind, CloudErrorKind::Conflict);
            assert_eq!(error.code.as_deref(), Some(ROUTER_CHANGED));
            assert!(!dir.path().join("loaded.conf").exists());
            let write = RouterWrite {
                expected: forwards(&spec, 1, 0),
                forwards: forwards(&spec, 90, 10),
                stickiness: Stickiness::Keep,
            };
            let answered = cloud.route(&spec.router, &write).await.unwrap();
            assert_eq!(answered, forwards(&spec, 90, 10));
            let loaded = std::fs::read_to_string(dir.path().join("loaded.conf")).unwrap();
            assert!(loaded.contains("10.00% greenlight_web_b;"), "{loaded}");
            let after = cloud.router(&spec.router).await.unwrap();
            assert_eq!(after.forwards(), forwards(&spec, 90, 10).as_slice());
        });
    }

    #[test]
    fn the_first_change_records_the_fleet_that_holds_the_live_slot() {
        let dir = tempfile::tempdir().unwrap();
        let (cloud, spec) = cloud(dir.path());
        block_on(async {
            let tgs = [
                spec.slots.get(Slot::A).clone(),
                spec.slots.get(Slot::B).clone(),
            ];
            let fleets = cloud.fleets(&tgs).await.unwrap();
            assert_eq!(fleets.len(), 1);
            assert_eq!(fleets[0].name.as_str(), "web-initial-a");
            assert_eq!(fleets[0].instances[0].id, "127.0.0.1:1");
            // Slot b has no fleet, so no targets: nothing is health-checked there.
            assert!(cloud.target_health(&tgs[1]).await.unwrap().is_empty());
            let id = cloud
                .create_lock("greenlight-lock.web", &[], "t1")
                .await
                .unwrap();
            assert_eq!(
                cloud
                    .create_lock("greenlight-lock.web", &[], "t1")
                    .await
                    .unwrap(),
                id
            );
            let taken = cloud.create_lock("greenlight-lock.web", &[], "t2").await;
            assert_eq!(taken.unwrap_err().kind, CloudErrorKind::Conflict);
            let recorded = cloud.fleet_summary(&FleetName::new("web-initial-a")).await;
            let recorded = recorded.unwrap().unwrap();
            assert_eq!(
                recorded.tags.get(tags::SERVICE).map(String::as_str),
                Some("web")
            );
            assert!(recorded.tags.contains_key(tags::CREATED_AT));
            cloud.delete_lock(&id).await.unwrap();
            assert!(
                cloud
                    .read_lock("greenlight-lock.web")
                    .await
                    .unwrap()
                    .is_none()
            );
        });
    }
}
