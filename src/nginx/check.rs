//! Health checks of nginx backends, made by greenlight itself over HTTP: nginx (open source)
//! has no active health checks, and greenlight must not route to a slot that cannot serve.
//!
//! A backend's verdict follows the ALB rules ([`CheckRecord`]): passes or failures in a row.
//! greenlight runs only while a command runs, so a command's first read checks every backend
//! back to back (at most `healthy_threshold` times, [`CATCH_UP_GAP`] apart) until each has a
//! verdict; from then on a background task checks every `interval`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::core::health::{TargetHealth, TargetState};
use crate::core::nginx::{Backend, CheckRecord, CheckSpec};

/// The pause between the checks a command's first read makes to reach a verdict.
pub const CATCH_UP_GAP: Duration = Duration::from_millis(100);

/// Checks every backend it was given, from the first read on, for as long as it lives.
pub struct Checker {
    spec: CheckSpec,
    backends: Vec<Backend>,
    records: Arc<Mutex<BTreeMap<Backend, CheckRecord>>>,
    started: tokio::sync::OnceCell<()>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().expect("checker lock").take() {
            task.abort();
        }
    }
}

impl Checker {
    pub fn new(spec: CheckSpec, backends: Vec<Backend>) -> Checker {
        Checker {
            spec,
            backends,
            records: Arc::default(),
            started: tokio::sync::OnceCell::new(),
            task: Mutex::new(None),
        }
    }

    /// Each of `backends`' health now: the first call waits for a verdict on every backend.
    pub async fn health(&self, backends: &[Backend]) -> Vec<TargetHealth> {
        self.started
            .get_or_init(|| async {
                self.catch_up().await;
                let (spec, list, records) = (
                    self.spec.clone(),
                    self.backends.clone(),
                    self.records.clone(),
                );
                let task = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(spec.interval).await;
                        round(&spec, &list, &records).await;
                    }
                });
                *self.task.lock().expect("checker lock") = Some(task);
            })
            .await;
        let records = self.records.lock().expect("checker lock");
        backends
            .iter()
            .map(|backend| {
                let record = records.get(backend).cloned().unwrap_or_default();
                let (reason, description) = match record.state {
                    TargetState::Healthy => (None, None),
                    TargetState::Initial => (
                        Some("Elb.InitialHealthChecking".to_owned()),
                        Some(format!(
                            "{} of {} checks passed",
                            record.streak(),
                            self.spec.healthy_threshold
                        )),
                    ),
                    _ => (
                        Some("Target.FailedHealthChecks".to_owned()),
                        record.last_failure.clone(),
                    ),
                };
                TargetHealth {
                    target_id: backend.as_str().to_owned(),
                    state: record.state,
                    reason,
                    description,
                }
            })
            .collect()
    }

    async fn catch_up(&self) {
        let rounds = self
            .spec
            .healthy_threshold
            .max(self.spec.unhealthy_threshold);
        for n in 0..rounds {
            if n > 0 {
                tokio::time::sleep(CATCH_UP_GAP).await;
            }
            round(&self.spec, &self.backends, &self.records).await;
            let records = self.records.lock().expect("checker lock");
            if self.backends.iter().all(|b| {
                records
                    .get(b)
                    .is_some_and(|r| r.state != TargetState::Initial)
            }) {
                return;
            }
        }
    }
}

/// One check of every backend, all at once.
async fn round(
    spec: &CheckSpec,
    backends: &[Backend],
    records: &Mutex<BTreeMap<Backend, CheckRecord>>,
) {
    let mut checks = tokio::task::JoinSet::new();
    for backend in backends {
        let (spec, backend) = (spec.clone(), backend.clone());
        checks.spawn(async move {
            let result = check(&spec, &backend).await;
            (backend, result)
        });
    }
    while let Some(Ok((backend, result))) = checks.join_next().await {
        records
            .lock()
            .expect("checker lock")
            .entry(backend)
            .or_default()
            .record(spec, result);
    }
}

/// One HTTP check: `GET <path>` within `timeout`, passing on a status in the matcher's range.
pub async fn check(spec: &CheckSpec, backend: &Backend) -> Result<(), String> {
    match tokio::time::timeout(spec.timeout, request(spec, backend)).await {
        Ok(Ok(status)) if (spec.matcher.0..=spec.matcher.1).contains(&status) => Ok(()),
        Ok(Ok(status)) => Err(format!(
            "GET {} answered {status}, expected {}-{}",
            spec.path, spec.matcher.0, spec.matcher.1
        )),
        Ok(Err(error)) => Err(format!("GET {}: {error}", spec.path)),
        Err(_) => Err(format!(
            "GET {} timed out after {}",
            spec.path,
            humantime::format_duration(spec.timeout)
        )),
    }
}

async fn request(spec: &CheckSpec, backend: &Backend) -> Result<u16, String> {
    let mut stream = TcpStream::connect(backend.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let host = backend.as_str();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: greenlight-health-check\r\n\
         Connection: close\r\n\r\n",
        spec.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The status line is all a check needs: `HTTP/1.1 200 OK`.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    match (
        words.next(),
        words.next().and_then(|s| s.parse::<u16>().ok()),
    ) {
        (Some(version), Some(status)) if version.starts_with("HTTP/") => Ok(status),
        _ => Err(if line.is_empty() {
            "the connection closed without an answer".to_owned()
        } else {
            format!("not an HTTP answer: {line:?}")
        }),
    }
}
