//! Why a command stopped, one variant per exit code family; mapped to codes in `crate::exit`.

use crate::core::cloud::{CloudError, CloudErrorKind};
use crate::core::decide::{Refusal, RefusalKind};
use crate::core::lock::LockRecord;
use crate::core::reason::{self, Reason, ReasonCode};
use crate::core::spec::ConfigError;
use crate::core::twin::TwinError;

use super::stop::Signal;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The request or the AWS resources it names are wrong; nothing was changed.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Twin(#[from] TwinError),
    /// Green never became healthy; traffic stayed on (or went back to) the previous release.
    #[error("{}", release_failed(release, reasons))]
    ReleaseFailed {
        release: String,
        reasons: Vec<Reason>,
    },
    #[error("{0}")]
    Busy(String),
    /// Another runner holds the service's lock.
    #[error(
        "service {} is locked by {}; wait for it to finish, or if that run is gone, \
         `greenlight unlock --force`",
        .0.service,
        .0.describe()
    )]
    Locked(Box<LockRecord>),
    #[error("{0}")]
    NeedsAttention(String),
    /// An AWS call failed. `changed` tells whether this run had already changed something, which
    /// decides between "fix the input" and "fix it, then re-run to resume".
    #[error("{}", cloud_message(error, *changed))]
    Cloud { error: CloudError, changed: bool },
    /// `cleanup` failed for some services (each with the exit code it would have had alone);
    /// the others' results stand.
    #[error("{}", cleanup_failed(.0))]
    CleanupFailed(Vec<ServiceFailure>),
    /// A signal asked the run to stop; it stopped at a safe point between two steps.
    #[error("stopped by {signal} at a safe point; {state}; {resume}")]
    Interrupted {
        signal: Signal,
        /// Where traffic and the release stand, for people.
        state: String,
        /// The command that carries on from here.
        resume: String,
    },
}

/// One service's failure within a `cleanup` of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure {
    pub service: String,
    pub exit_code: u8,
    pub message: String,
}

fn cleanup_failed(failures: &[ServiceFailure]) -> String {
    let each: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.service, f.message))
        .collect();
    format!("cleanup failed for {}", each.join("; "))
}

fn release_failed(release: &str, reasons: &[Reason]) -> String {
    match release {
        "" => reason::describe(reasons),
        release => format!("release {release} failed: {}", reason::describe(reasons)),
    }
}

fn credentials_message(error: &CloudError, profile: Option<&str>, changed: bool) -> String {
    let what = match &error.code {
        // AWS answered, and refused them.
        Some(code) => format!(
            "AWS rejected the credentials ({code}, on {})",
            error.operation
        ),
        None => {
            let base = match profile {
                Some(profile) => format!("no usable AWS credentials for profile {profile}"),
                None => "no AWS credentials found".to_owned(),
            };
            // A provider's own reason (an expired SSO session, a failing credential_process) is
            // worth a few words; the SDK's list of every provider it tried is not.
            let detail = error
                .message
                .trim_start_matches("no usable AWS credentials (")
                .trim_end_matches(')');
            let noise = [
                "not enabled",
                "no credentials found",
                "no identity resolver",
                "not loaded",
            ];
            if detail.is_empty() || noise.iter().any(|n| detail.contains(n)) {
                base
            } else {
                let short: String = detail.chars().take(120).collect();
                format!("{base} ({short})")
            }
        }
    };
    let fix = match profile {
        Some(profile) => format!(
            "check that profile {profile} exists in ~/.aws/config (or fix --profile / \
             AWS_PROFILE), or run `aws sso login --profile {profile}`"
        ),
        None => "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, set AWS_PROFILE, or run \
                 `aws sso login`"
            .to_owned(),
    };
    let resume = if changed {
        "; then re-run the same command to resume"
    } else {
        ""
    };
    format!("{what}; {fix}{resume}")
}

fn cloud_message(error: &CloudError, changed: bool) -> String {
    use crate::core::cloud::CloudErrorKind as K;
    let hint = match error.kind {
        K::Credentials => {
            "; set AWS_PROFILE, run `aws sso login`, or export AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY"
        }
        K::AccessDenied => "; grant the IAM actions listed in the README",
        K::NotFound if !changed => "; check the ARNs and the region",
        K::Unavailable
            if error
                .code
                .as_deref()
                .is_some_and(|c| c.contains("Throttl") || c.contains("LimitExceeded")) =>
        {
            "; AWS throttled the calls (API rate limits are shared by the account), retry in a \
             minute"
        }
        K::Unavailable | K::Unreachable => "; check the network and AWS_ENDPOINT_URL, then retry",
        _ => "",
    };
    let resume = if changed {
        "; it stopped part-way, re-run the same command to resume"
    } else {
        ""
    };
    format!("{error}{hint}{resume}")
}

impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Failure {
        match refusal.kind {
            RefusalKind::BadInput => Failure::BadInput(refusal.message),
            RefusalKind::Busy => Failure::Busy(refusal.message),
            RefusalKind::NeedsAttention => Failure::NeedsAttention(refusal.message),
            RefusalKind::ReleaseFailed => Failure::ReleaseFailed {
                release: String::new(),
                reasons: vec![Reason::new(ReasonCode::ReleaseFailed, refusal.message)],
            },
        }
    }
}

impl Failure {
    /// The one-line message for people, knowing which AWS profile the run used: credential
    /// problems get advice about that profile instead of the SDK's list of providers it tried.
    pub fn message(&self, profile: Option<&str>) -> String {
        match self {
            Failure::Cloud { error, changed } if error.kind == CloudErrorKind::Credentials => {
                credentials_message(error, profile, *changed)
            }
            other => other.to_string(),
        }
    }

    /// Why, structured, for the `error` event: a failed release's own reasons, else one reason
    /// per cause (each service of a cleanup), its description the message people read.
    pub fn reasons(&self, profile: Option<&str>) -> Vec<Reason> {
        let one = |code| vec![Reason::new(code, self.message(profile))];
        match self {
            Failure::Config(_) => one(ReasonCode::Config),
            Failure::BadInput(_) => one(ReasonCode::BadInput),
            Failure::Twin(error) => {
                vec![Reason::new(ReasonCode::Twin, self.message(profile)).on(error.fleet.clone())]
            }
            Failure::ReleaseFailed { reasons, .. } if !reasons.is_empty() => reasons.clone(),
            Failure::ReleaseFailed { release, .. } => {
                let reason = Reason::new(ReasonCode::ReleaseFailed, self.message(profile));
                vec![if release.is_empty() {
                    reason
                } else {
                    reason.on(release.clone())
                }]
            }
            Failure::Busy(_) => one(ReasonCode::Busy),
            Failure::Locked(lock) => vec![
                Reason::new(ReasonCode::Locked, self.message(profile)).on(lock.service.clone()),
            ],
            Failure::NeedsAttention(_) => one(ReasonCode::NeedsAttention),
            Failure::Cloud { error, .. } => vec![
                Reason::new(ReasonCode::Aws, self.message(profile)).on(error.operation.clone()),
            ],
            Failure::CleanupFailed(failures) => failures
                .iter()
                .map(|f| {
                    Reason::new(ReasonCode::CleanupFailed, f.message.clone()).on(f.service.clone())
                })
                .collect(),
            Failure::Interrupted { signal, .. } => vec![
                Reason::new(ReasonCode::Interrupted, self.message(profile)).on(signal.to_string()),
            ],
        }
    }

    pub fn cloud(changed: bool) -> impl Fn(CloudError) -> Failure + Copy {
        move |error| Failure::Cloud { error, changed }
    }
}
