//! Holding the per-service lock ([`crate::core::lock`]) for the length of one command: take it,
//! renew it while working, hand it back at the end.

use std::time::{Duration, SystemTime};

use crate::core::cloud::{Cloud, CloudError, CloudErrorKind};
use crate::core::lock::{self, Contention, Holder, LockRecord, contention, lock_name, renew_due};
use crate::core::names::ServiceName;
use crate::core::spec::Spec;
use crate::core::tags::timestamp;

use super::clock::Clock;
use super::failure::Failure;

/// How often acquiring may find the lock changing hands before giving up.
const ACQUIRE_ATTEMPTS: u32 = 3;

/// How long a holder trusts its lock without looking: no one can take it over before it expires,
/// but `unlock --force` can remove it at any time, so before a change the holder looks again
/// once this long has passed since it last did.
/// How often releasing the lock is tried, and the first wait between tries.
const RELEASE_TRIES: u32 = 4;
const RELEASE_RETRY: Duration = Duration::from_millis(500);

pub const VERIFY_EVERY: Duration = Duration::from_secs(2);

/// The lock, held.
#[derive(Debug, Clone)]
pub struct Lease {
    name: String,
    record: LockRecord,
    renewed_at: SystemTime,
    verified_at: SystemTime,
    ttl: Duration,
}

/// Who this process is, for the lock's holder tags: user, host, pid, and the pipeline run when
/// the environment names one.
pub fn holder_from_env() -> Holder {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let user = env("USER")
        .or_else(|| env("LOGNAME"))
        .or_else(|| env("USERNAME"))
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "unknown-host".into());
    let run = if let (Some(repo), Some(id)) = (env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
        let attempt = env("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
        Some(format!("GitHub Actions run {repo}#{id} attempt {attempt}"))
    } else if let Some(build) = env("CODEBUILD_BUILD_ID") {
        Some(format!("CodeBuild build {build}"))
    } else if let (Some(_), Some(tag)) = (env("JENKINS_URL"), env("BUILD_TAG")) {
        Some(format!("Jenkins {tag}"))
    } else {
        env("CI_PIPELINE_ID").map(|pipeline| format!("GitLab pipeline {pipeline}"))
    };
    let pid = std::process::id();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Holder {
        who: format!("{user}@{host}"),
        host,
        pid,
        run,
        token: format!("{pid:x}-{nanos:x}"),
    }
}

/// Whether a process of this host is still running (where the OS lets us tell).
pub fn pid_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        // No procfs: assume alive, the safe answer.
        return true;
    }
    proc.join(pid.to_string()).exists()
}

impl Lease {
    /// Takes the service's lock for `command`, or says who holds it ([`Failure::Busy`]).
    pub async fn acquire<C: Cloud>(
        cloud: &C,
        spec: &Spec,
        command: &str,
        holder: &Holder,
        now: SystemTime,
        alive: impl Fn(u32) -> bool,
    ) -> Result<Lease, Failure> {
        Lease::acquire_for(
            cloud,
            &spec.service,
            spec.lock.ttl,
            command,
            holder,
            now,
            alive,
        )
        .await
    }

    /// [`Lease::acquire`] for a service known by name only (`cleanup --all` has no config).
    pub async fn acquire_for<C: Cloud>(
        cloud: &C,
        service: &ServiceName,
        ttl: Duration,
        command: &str,
        holder: &Holder,
        now: SystemTime,
        alive: impl Fn(u32) -> bool,
    ) -> Result<Lease, Failure> {
        let name = lock_name(service);
        for attempt in 0..ACQUIRE_ATTEMPTS {
            let mut record = LockRecord {
                id: String::new(),
                service: service.to_string(),
                holder: holder.clone(),
                command: command.to_owned(),
                acquired_at: now,
                expires_at: now + ttl,
            };
            // One runner may take several services' locks (`cleanup --all`): EC2 refuses a
            // client token reused for a different name, so the name is part of it.
            let token = format!("{}-{attempt}-{:08x}", holder.token, fnv1a(name.as_bytes()));
            let mut created = cloud.create_lock(&name, &record.tags(), &token).await;
            if created.as_ref().is_err_and(CloudError::transient) {
                // The create may have landed with its answer lost: the same token asks again
                // and gets the same lock back.
                created = cloud.create_lock(&name, &record.tags(), &token).await;
            }
            match created {
                Ok(id) => {
                    record.id = id;
                    return Ok(Lease {
                        name,
                        record,
                        renewed_at: now,
                        verified_at: now,
                        ttl,
                    });
                }
                Err(e) if e.kind == CloudErrorKind::Conflict => {}
                Err(e) => return Err(Failure::cloud(false)(e)),
            }
            let Some((id, tags)) = cloud
                .read_lock(&name)
                .await
                .map_err(Failure::cloud(false))?
            else {
                // Released between our create and our read: try again.
                continue;
            };
            let Some(existing) = LockRecord::read(&id, &tags) else {
                return Err(Failure::Busy(format!(
                    "service {} is locked by {name} ({id}), whose tags greenlight cannot read; \
                     if no greenlight is running, remove it with `greenlight unlock --force`",
                    service
                )));
            };
            if existing.holder.token == holder.token {
                // Our own create landed and its answer was lost.
                return Ok(Lease {
                    name,
                    record: existing,
                    renewed_at: now,
                    verified_at: now,
                    ttl,
                });
            }
            match contention(&existing, holder, now, &alive) {
                Contention::TakeOver => {
                    cloud
                        .delete_lock(&existing.id)
                        .await
                        .map_err(Failure::cloud(false))?;
                }
                Contention::Busy => return Err(Failure::Locked(Box::new(existing))),
            }
        }
        Err(Failure::Busy(format!(
            "service {}'s lock changed hands {ACQUIRE_ATTEMPTS} times while greenlight tried to \
             take it; retry",
            service
        )))
    }

    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// Before a change: checks the lock is still ours when
    /// [`VERIFY_EVERY`] has passed since the last look, and renews it when a third of its
    /// lifetime has passed. Fails with [`Failure::Busy`] if someone took it (it expired, or was
    /// unlocked by force), so the change is not made.
    pub async fn ensure<C: Cloud>(&mut self, cloud: &C, now: SystemTime) -> Result<(), Failure> {
        let renew = renew_due(self.renewed_at, self.ttl, now);
        if !renew && now < self.verified_at + VERIFY_EVERY {
            return Ok(());
        }
        let lost = |by: String| {
            Failure::Busy(format!(
                "lost the lock on service {} ({by}); stopped before changing anything else. \
                 Re-run to resume once the other runner is done",
                self.record.service
            ))
        };
        let current = cloud
            .read_lock(&self.name)
            .await
            .map_err(Failure::cloud(true))?;
        match current {
            Some((id, _)) if id == self.record.id => {}
            Some((id, tags)) => {
                return Err(lost(match LockRecord::read(&id, &tags) {
                    Some(other) => format!("now held by {}", other.describe()),
                    None => format!("replaced by {id}"),
                }));
            }
            None => return Err(lost("it was removed".into())),
        }
        self.verified_at = now;
        if !renew {
            return Ok(());
        }
        let expires = now + self.ttl;
        match cloud
            .tag_lock(
                &self.record.id,
                &[(lock::EXPIRES_AT.to_owned(), timestamp(expires))],
            )
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind == CloudErrorKind::NotFound => {
                return Err(lost("it was removed".into()));
            }
            Err(e) => return Err(Failure::cloud(true)(e)),
        }
        self.record.expires_at = expires;
        self.renewed_at = now;
        Ok(())
    }

    /// While waiting: renews the lock once a third of its lifetime has passed (which also
    /// checks it is still ours), and makes no call otherwise. Every change is preceded by
    /// [`Lease::ensure`], which checks it; a wait that looked every few seconds too would cost
    /// a call per heartbeat tick and protect nothing more.
    pub async fn keep<C: Cloud>(&mut self, cloud: &C, now: SystemTime) -> Result<(), Failure> {
        if renew_due(self.renewed_at, self.ttl, now) {
            self.ensure(cloud, now).await
        } else {
            Ok(())
        }
    }

    /// The longest a holder may wait without renewing.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Hands the lock back. Deletes exactly this lock object, never a successor.
    pub async fn release<C: Cloud>(&self, cloud: &C) -> Result<(), CloudError> {
        cloud.delete_lock(&self.record.id).await
    }

    /// [`Lease::release`], tried again a few times (with doubling waits) on throttling, 5xx
    /// and lost connections: a lock left behind keeps other runners out until it expires.
    pub async fn release_patiently<C: Cloud, K: Clock>(
        &self,
        cloud: &C,
        clock: &K,
    ) -> Result<(), CloudError> {
        let mut wait = RELEASE_RETRY;
        let mut tries = 1;
        loop {
            match self.release(cloud).await {
                Err(e) if e.transient() && tries < RELEASE_TRIES => {
                    clock.sleep(wait).await;
                    wait *= 2;
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}

/// `greenlight unlock --force`: removes the service's lock whoever holds it; returns what was
/// removed.
pub async fn force_unlock<C: Cloud>(cloud: &C, spec: &Spec) -> Result<Option<LockRecord>, Failure> {
    let name = lock_name(&spec.service);
    let Some((id, tags)) = cloud
        .read_lock(&name)
        .await
        .map_err(Failure::cloud(false))?
    else {
        return Ok(None);
    };
    cloud
        .delete_lock(&id)
        .await
        .map_err(Failure::cloud(false))?;
    Ok(Some(LockRecord::read(&id, &tags).unwrap_or(LockRecord {
        id: id.clone(),
        service: spec.service.to_string(),
        holder: Holder {
            who: "unknown".into(),
            host: String::new(),
            pid: 0,
            run: None,
            token: String::new(),
        },
        command: "unknown".into(),
        acquired_at: SystemTime::UNIX_EPOCH,
        expires_at: SystemTime::UNIX_EPOCH,
    })))
}

/// The lock, when another runner holds it and may not be taken over: what a command that would
/// change nothing reports instead, since that runner may be changing things right now.
pub async fn held_by_another<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    me: &Holder,
    now: SystemTime,
    alive: impl Fn(u32) -> bool,
) -> Result<Option<LockRecord>, Failure> {
    Ok(current(cloud, spec).await?.filter(|lock| {
        lock.holder.token != me.token && contention(lock, me, now, &alive) == Contention::Busy
    }))
}

/// The service's lock as AWS has it now, for `status`.
pub async fn current<C: Cloud>(cloud: &C, spec: &Spec) -> Result<Option<LockRecord>, Failure> {
    let name = lock_name(&spec.service);
    Ok(cloud
        .read_lock(&name)
        .await
        .map_err(Failure::cloud(false))?
        .and_then(|(id, tags)| LockRecord::read(&id, &tags)))
}

/// FNV-1a, 32 bits: a short, stable digest for client tokens (which are at most 64 characters).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}
