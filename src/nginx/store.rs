//! greenlight's records for an nginx router, in one JSON file: what AWS keeps for it on the
//! other backend (the releases' fleets and their tags, the lock, the routing nginx last loaded).
//!
//! Every change is a read-modify-write under an exclusive `flock` on a lock file beside it, and
//! lands by rename: a crash leaves the old records or the new, never half of either, and two
//! runners never lose each other's writes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::cloud::{CloudError, CloudErrorKind, CloudResult};

/// The records, as stored. Unknown fields are refused: a file from a newer greenlight is not
/// silently half-understood.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Records {
    /// Set by the first change: from then on the fleets below are the whole truth (before it,
    /// the slot nginx routes to holds the service's first, untagged fleet).
    #[serde(default)]
    pub seeded: bool,
    /// The forwards nginx was last reloaded with, as written; `None` before greenlight's first
    /// routing change (the include then says).
    #[serde(default)]
    pub router: Option<Vec<(String, u16)>>,
    #[serde(default)]
    pub sticky: bool,
    #[serde(default)]
    pub fleets: BTreeMap<String, FleetRecord>,
    /// Versions of the service's one launch template beyond version 1 (the backends as they
    /// are), created only by `--launch-template-version` bookkeeping.
    #[serde(default)]
    pub versions: BTreeMap<u64, VersionRecord>,
    #[serde(default)]
    pub locks: BTreeMap<String, LockRecord>,
    /// Makes lock ids unique over the file's life, so that a lock taken over is never
    /// mistaken for its successor of the same name.
    #[serde(default)]
    pub lock_serial: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetRecord {
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub tags: BTreeMap<String, String>,
    pub target_groups: Vec<String>,
    #[serde(default)]
    pub suspended: Vec<String>,
    pub template_version: String,
    /// Orders fleets of one slot: the newest with capacity serves it.
    pub serial: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRecord {
    pub image: Option<String>,
    pub description: Option<String>,
    pub client_token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRecord {
    pub id: String,
    pub tags: BTreeMap<String, String>,
    pub client_token: String,
}

/// The records file and its lock file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    lock: PathBuf,
}

fn io_error(operation: &str, path: &Path, error: &io::Error) -> CloudError {
    let kind = match error.kind() {
        io::ErrorKind::PermissionDenied => CloudErrorKind::AccessDenied,
        io::ErrorKind::NotFound => CloudErrorKind::InvalidRequest,
        _ => CloudErrorKind::Other,
    };
    CloudError::new(kind, operation, format!("{}: {error}", path.display()))
        .with_code("NginxStateFile")
}

impl Store {
    pub fn new(path: PathBuf) -> Store {
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        Store {
            path,
            lock: PathBuf::from(lock),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records as they are now (empty before the first change).
    pub fn read(&self, operation: &str) -> CloudResult<Records> {
        match fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                CloudError::new(
                    CloudErrorKind::Other,
                    operation,
                    format!(
                        "{} is not greenlight's records ({e}); restore it from a backup, or \
                         remove it to start over from what nginx routes",
                        self.path.display()
                    ),
                )
                .with_code("NginxStateFile")
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(io_error(operation, &self.path, &e)),
        }
    }

    /// Applies `change` to the records under the file lock and stores the result, unless
    /// `change` fails (then nothing is written).
    pub fn update<T>(
        &self,
        operation: &str,
        change: impl FnOnce(&mut Records) -> CloudResult<T>,
    ) -> CloudResult<T> {
        let guard = self.exclusive(operation)?;
        let mut records = self.read(operation)?;
        let before = records.clone();
        let out = change(&mut records)?;
        if records != before {
            self.write(operation, &records)?;
        }
        drop(guard);
        Ok(out)
    }

    fn write(&self, operation: &str, records: &Records) -> CloudResult<()> {
        let text = serde_json::to_string_pretty(records).expect("records serialize");
        write_atomically(&self.path, text.as_bytes())
            .map_err(|e| io_error(operation, &self.path, &e))
    }

    fn exclusive(&self, operation: &str) -> CloudResult<FileLock> {
        if let Some(dir) = self.lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| io_error(operation, dir, &e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| io_error(operation, &self.lock, &e))?;
        FileLock::take(file).map_err(|e| io_error(operation, &self.lock, &e))
    }
}

/// An exclusive `flock`, held until dropped (closing the file releases it).
struct FileLock {
    _file: File,
}

impl FileLock {
    #[cfg(unix)]
    fn take(file: File) -> io::Result<FileLock> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is shared.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    #[cfg(not(unix))]
    fn take(file: File) -> io::Result<FileLock> {
        Ok(FileLock { _file: file })
    }
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, and renames it over
/// `path`: readers (nginx, other runners) see the old content or the new, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = dir {
            // The rename itself survives a power cut only once the directory is on disk.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_land_whole_and_a_failed_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state/web.json"));
        assert_eq!(store.read("t").unwrap(), Records::default());
        store
            .update("t", |r| {
                r.seeded = true;
                r.lock_serial = 7;
                Ok(())
            })
            .unwrap();
        let refused: CloudResult<()> = store.update("t", |r| {
            r.lock_serial = 8;
            Err(CloudError::new(CloudErrorKind::Conflict, "t", "no"))
        });
        assert!(refused.is_err());
        let records = store.read("t").unwrap();
        assert!(records.seeded);
        assert_eq!(records.lock_serial, 7);
        // Only the records and the lock file: no temporary file left behind.
        let mut names: Vec<String> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["web.json", "web.json.lock"]);
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.json");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = Store::new(path.clone());
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        store
                            .update("t", |r| {
                                r.lock_serial += 1;
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Store::new(path).read("t").unwrap().lock_serial, 200);
    }

    #[test]
    fn a_file_that_is_not_records_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.json");
        fs::write(&path, "{\"fleets\": 3}").unwrap();
        let error = Store::new(path)
            .read("DescribeAutoScalingGroups")
            .unwrap_err();
        assert!(error.message.contains("remove it to start over"), "{error}");
    }
}
