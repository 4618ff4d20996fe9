//! The per-service lock: one runner changes a service at a time, across machines and pipelines.
//!
//! The lock is an object whose *name* is unique per service in AWS, so creating it is a real
//! conditional write: exactly one of several runners creating it at once succeeds. Who holds it,
//! since when and until when is in its tags. A holder renews the expiry while it works and
//! deletes the object when done. A runner that finds the lock expired (its holder stopped
//! renewing) deletes it **by its id**, then creates it again by name: two takers may both
//! delete the same expired object, but only one can create the new one, and nobody can delete
//! an object that replaced the one they saw, so two takers never both win.
//!
//! Everything here is pure: the names, the tag encoding, and when to take over or renew.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::names::ServiceName;
use super::tags::timestamp;

/// Lock object names are `greenlight-lock.<service>`.
pub const NAME_PREFIX: &str = "greenlight-lock.";

pub const SERVICE: &str = "greenlight:lock";
pub const HOLDER: &str = "greenlight:lock-holder";
pub const HOST: &str = "greenlight:lock-host";
pub const PID: &str = "greenlight:lock-pid";
pub const RUN: &str = "greenlight:lock-run";
pub const TOKEN: &str = "greenlight:lock-token";
pub const COMMAND: &str = "greenlight:lock-command";
pub const ACQUIRED_AT: &str = "greenlight:lock-acquired-at";
pub const EXPIRES_AT: &str = "greenlight:lock-expires-at";

pub fn lock_name(service: &ServiceName) -> String {
    format!("{NAME_PREFIX}{service}")
}

/// Who holds (or wants) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// `user@host`, for people.
    pub who: String,
    pub host: String,
    pub pid: u32,
    /// The pipeline run, when the environment names one (GitHub Actions, CodeBuild, Jenkins…).
    pub run: Option<String>,
    /// Unique per acquisition: tells a runner its own lock from another's.
    pub token: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {}", self.who, self.pid)?;
        if let Some(run) = &self.run {
            write!(f, ", {run}")?;
        }
        f.write_str(")")
    }
}

/// A lock as AWS holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRecord {
    /// The object's id (unique per creation, unlike its name).
    pub id: String,
    pub service: String,
    pub holder: Holder,
    /// The command that holds it: `deploy`, `rollback`, …
    pub command: String,
    #[serde(serialize_with = "rfc3339")]
    pub acquired_at: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: SystemTime,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(*t))
}

impl LockRecord {
    /// The tags the lock object is created with (everything but its id).
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            (SERVICE.to_owned(), self.service.clone()),
            (HOLDER.to_owned(), self.holder.who.clone()),
            (HOST.to_owned(), self.holder.host.clone()),
            (PID.to_owned(), self.holder.pid.to_string()),
            (TOKEN.to_owned(), self.holder.token.clone()),
            (COMMAND.to_owned(), self.command.clone()),
            (ACQUIRED_AT.to_owned(), timestamp(self.acquired_at)),
            (EXPIRES_AT.to_owned(), timestamp(self.expires_at)),
        ];
        if let Some(run) = &self.holder.run {
            tags.push((RUN.to_owned(), run.clone()));
        }
        tags.into_iter()
            .map(|(k, v)| (k, super::tags::clip(&v)))
            .collect()
    }

    /// The record a lock object's tags describe; `None` when they are not greenlight's.
    pub fn read(id: &str, tags: &BTreeMap<String, String>) -> Option<LockRecord> {
        let time = |key: &str| {
            tags.get(key)
                .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
        };
        Some(LockRecord {
            id: id.to_owned(),
            service: tags.get(SERVICE)?.clone(),
            holder: Holder {
                who: tags.get(HOLDER)?.clone(),
                host: tags.get(HOST).cloned().unwrap_or_default(),
                pid: tags.get(PID).and_then(|p| p.parse().ok()).unwrap_or(0),
                run: tags.get(RUN).cloned(),
                token: tags.get(TOKEN).cloned().unwrap_or_default(),
            },
            command: tags.get(COMMAND).cloned().unwrap_or_default(),
            acquired_at: time(ACQUIRED_AT)?,
            expires_at: time(EXPIRES_AT)?,
        })
    }

    /// Who holds it and for what, e.g. `ci@build-7 (pid 4242) running `greenlight deploy``.
    pub fn holder_and_command(&self) -> String {
        format!("{} running `greenlight {}`", self.holder, self.command)
    }

    /// One line for people: who, what, since when, until when.
    pub fn describe(&self) -> String {
        format!(
            "{} running `greenlight {}` since {} (lock expires {} unless renewed)",
            self.holder,
            self.command,
            timestamp(self.acquired_at),
            timestamp(self.expires_at)
        )
    }
}

/// What to do about a lock someone else holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contention {
    /// The holder is gone: it stopped renewing before the expiry, or it ran on this host and its
    /// process no longer exists. Delete the object by id and create it again.
    TakeOver,
    /// The holder is alive as far as anyone can tell.
    Busy,
}

/// Whether `existing` may be taken over by `me` at `now`; `alive` says whether a process id on
/// this host still exists.
pub fn contention(
    existing: &LockRecord,
    me: &Holder,
    now: SystemTime,
    alive: impl Fn(u32) -> bool,
) -> Contention {
    if now >= existing.expires_at {
        return Contention::TakeOver;
    }
    // A process on this very host that is gone (killed, crashed) cannot be mutating anything.
    if !existing.holder.host.is_empty()
        && existing.holder.host == me.host
        && existing.holder.pid != 0
        && existing.holder.pid != me.pid
        && !alive(existing.holder.pid)
    {
        return Contention::TakeOver;
    }
    Contention::Busy
}

/// A holder renews after a third of the lifetime has passed since its last renewal, so every
/// change it makes happens at least two thirds of a lifetime before anyone may take over.
pub fn renew_due(renewed_at: SystemTime, ttl: Duration, now: SystemTime) -> bool {
    now >= renewed_at + ttl / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s)
    }

    fn holder(host: &str, pid: u32, token: &str) -> Holder {
        Holder {
            who: format!("ci@{host}"),
            host: host.into(),
            pid,
            run: Some("GitHub Actions run acme/shop#42".into()),
            token: token.into(),
        }
    }

    fn record(holder: Holder, expires: u64) -> LockRecord {
        LockRecord {
            id: "lt-0abc".into(),
            service: "checkout".into(),
            holder,
            command: "deploy".into(),
            acquired_at: t(0),
            expires_at: t(expires),
        }
    }

    #[test]
    fn tags_round_trip() {
        let r = record(holder("build-7", 4242, "tok"), 120);
        let tags: BTreeMap<String, String> = r.tags().into_iter().collect();
        assert_eq!(LockRecord::read("lt-0abc", &tags), Some(r));
        assert_eq!(LockRecord::read("lt-0abc", &BTreeMap::new()), None);
    }

    #[test]
    fn takeover_table() {
        let me = holder("build-7", 100, "mine");
        let alive = |pid: u32| pid == 4242;
        let cases = [
            // (holder, expires, now, expected)
            (holder("build-9", 4242, "x"), 120, 60, Contention::Busy),
            (holder("build-9", 4242, "x"), 120, 120, Contention::TakeOver),
            (holder("build-9", 4242, "x"), 120, 500, Contention::TakeOver),
            // Same host: a dead process is gone at once; a live one holds it.
            (holder("build-7", 4243, "x"), 120, 10, Contention::TakeOver),
            (holder("build-7", 4242, "x"), 120, 10, Contention::Busy),
            // Another host's pid means nothing here.
            (holder("build-9", 4243, "x"), 120, 10, Contention::Busy),
        ];
        for (h, expires, now, expected) in cases {
            let r = record(h.clone(), expires);
            assert_eq!(contention(&r, &me, t(now), alive), expected, "{h:?} {now}");
        }
    }

    #[test]
    fn renewals_come_every_third_of_the_lifetime() {
        let ttl = Duration::from_secs(120);
        assert!(!renew_due(t(0), ttl, t(39)));
        assert!(renew_due(t(0), ttl, t(40)));
    }

    #[test]
    fn describes_the_holder() {
        let r = record(holder("build-7", 4242, "tok"), 120);
        assert_eq!(
            r.describe(),
            "ci@build-7 (pid 4242, GitHub Actions run acme/shop#42) running `greenlight deploy` \
             since 2026-11-18T11:06:40Z (lock expires 2026-11-18T11:08:40Z unless renewed)"
        );
    }
}
