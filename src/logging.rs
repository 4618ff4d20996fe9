//! Logs on stderr, through `tracing`: what greenlight observes, decides and applies (`-v`),
//! every AWS call attempt (`-vv`), everything down to the AWS SDK's and HTTP stack's own
//! internals (`--debug`). `RUST_LOG`, when set, decides instead (an `EnvFilter`). Without any of
//! them nothing is installed and nothing is logged: stderr carries only the one-line error.
//!
//! Logs never go to stdout, where `--output json` writes the event stream. `--log-format json`
//! makes each log line one JSON object (`timestamp`, `level`, `target`, `fields`, the current
//! `span` and the list of `spans` with their fields).
//!
//! Spans: `observe`, `decide`, `apply{action}` (and `fleet` when the action has one), and
//! `aws{service, operation, attempt, latency_ms, status, request_id, error}` per AWS call
//! attempt (src/aws/trace.rs). The Lambda (`bootstrap`) logs JSON lines with greenlight's info
//! and everyone's warnings unless `GREENLIGHT_LOG` or `RUST_LOG` says otherwise ([`init_lambda`]).

use std::sync::Mutex;
use std::time::Instant;

use tracing_subscriber::EnvFilter;

use crate::core::decide::{Action, Decision, Done, WaitReason};
use crate::core::observed::{Observed, Occupancy};
use crate::core::router::{Routing, Slot};
use crate::core::spec::Spec;

/// The filter of the Lambda function when neither `GREENLIGHT_LOG` nor `RUST_LOG` is set:
/// greenlight's decisions and actions, and anyone's warnings.
pub const LAMBDA_DEFAULT: &str = "warn,greenlight=info";

/// The Lambda's own variable for its log filter (`EnvFilter` syntax, e.g. `greenlight=debug`),
/// over `RUST_LOG`.
pub const ENV_LAMBDA_LOG: &str = "GREENLIGHT_LOG";

/// How the command line asks for logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `-v` (1), `-vv` (2), `-vvv` (3).
    pub verbose: u8,
    /// `--debug`.
    pub debug: bool,
    /// `--log-format json`.
    pub json: bool,
    /// `--color always` (`Some(true)`) or `never` (`Some(false)`); `None` for auto: colour only
    /// on a terminal, and not when `NO_COLOR` is set.
    pub color: Option<bool>,
}

/// The filter the flags ask for, when `RUST_LOG` is not set; `None`: no logs at all.
///
/// | flags       | filter             |
/// |-------------|--------------------|
/// | (none)      | off                |
/// | `-v`        | `greenlight=info`  |
/// | `-vv`       | `greenlight=debug` |
/// | `-vvv`      | `greenlight=trace` |
/// | `--debug`   | `trace` (the AWS SDK, hyper, rustls… too) |
pub fn flag_filter(verbose: u8, debug: bool) -> Option<&'static str> {
    if debug {
        return Some("trace");
    }
    match verbose {
        0 => None,
        1 => Some("greenlight=info"),
        2 => Some("greenlight=debug"),
        _ => Some("greenlight=trace"),
    }
}

/// The filter to log with: `RUST_LOG` when it is set and not blank, else the flags'. An invalid
/// `RUST_LOG` is an error (the caller warns and falls back to the flags).
pub fn choose_filter(
    rust_log: Option<&str>,
    verbose: u8,
    debug: bool,
) -> Result<Option<String>, String> {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(directives) => parse(directives).map(|_| Some(directives.to_owned())),
        None => Ok(flag_filter(verbose, debug).map(str::to_owned)),
    }
}

fn parse(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| e.to_string())
}

/// Whether log lines carry ANSI colour: as `--color always|never` says, else as `auto` decides
/// for stderr (`auto_for_stderr`): the same rules as human output (anstream's: a terminal, and
/// not `NO_COLOR`, `CLICOLOR=0` or `TERM=dumb`; `CLICOLOR_FORCE` forces it).
pub fn ansi(color: Option<bool>, auto_for_stderr: impl FnOnce() -> bool) -> bool {
    color.unwrap_or_else(auto_for_stderr)
}

/// Installs the CLI's logger, as `options` and `RUST_LOG` ask; installs nothing when they ask
/// for no logs (the default), so that logging then costs nothing.
pub fn init(options: &Options) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = match choose_filter(rust_log.as_deref(), options.verbose, options.debug) {
        Ok(directives) => directives,
        Err(e) => {
            eprintln!("warning: RUST_LOG is not a valid log filter ({e}); ignored");
            flag_filter(options.verbose, options.debug).map(str::to_owned)
        }
    };
    let Some(directives) = directives else {
        return;
    };
    let ansi = ansi(options.color, || {
        anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
    });
    install(&directives, options.json, ansi);
}

/// Installs the Lambda function's logger: JSON lines on stderr (CloudWatch Logs keeps them next
/// to the report lines on stdout), filtered by `GREENLIGHT_LOG`, else `RUST_LOG`, else
/// [`LAMBDA_DEFAULT`].
pub fn init_lambda() {
    let var = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    let (source, directives) = match (var(ENV_LAMBDA_LOG), var("RUST_LOG")) {
        (Some(d), _) => (ENV_LAMBDA_LOG, d),
        (None, Some(d)) => ("RUST_LOG", d),
        (None, None) => ("", LAMBDA_DEFAULT.to_owned()),
    };
    let directives = match parse(&directives) {
        Ok(_) => directives,
        Err(e) => {
            eprintln!(
                "{}",
                serde_json::json!({
                    "level": "WARN",
                    "target": "greenlight::logging",
                    "fields": {"message": format!(
                        "{source} is not a valid log filter ({e}); logging with {LAMBDA_DEFAULT}"
                    )},
                })
            );
            LAMBDA_DEFAULT.to_owned()
        }
    };
    install(&directives, true, false);
}

fn install(directives: &str, json: bool, ansi: bool) {
    let Ok(filter) = parse(directives) else {
        return;
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(Redacting::stderr)
        .with_env_filter(filter);
    // A second install (a test calling twice) keeps the first one.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_ansi(false)
            .try_init()
    } else {
        builder.with_ansi(ansi).try_init()
    };
}

// ---------------------------------------------------------------------------------------------
// Credentials never reach a log line

/// Stderr, with credentials taken out of every line: the AWS SDK's own trace logs (`--debug`,
/// `RUST_LOG=trace`) print the resolved identity's access key id, and a secret or a session
/// token could reach a line through any `Debug` impl that does not redact it. Each log event is
/// formatted into one buffer and written with one `write_all`, so a line is scrubbed whole.
struct Redacting {
    secrets: Vec<String>,
}

impl Redacting {
    fn stderr() -> RedactingWriter {
        static SECRETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let secrets = SECRETS.get_or_init(|| {
            [
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_SECURITY_TOKEN",
            ]
            .iter()
            .filter_map(|key| std::env::var(key).ok())
            .filter(|value| value.len() >= 8)
            .collect()
        });
        RedactingWriter {
            redacting: Redacting {
                secrets: secrets.clone(),
            },
        }
    }

    fn scrub(&self, line: &str) -> String {
        let mut out = redact_access_key_ids(line);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "** redacted **");
            }
        }
        out
    }
}

struct RedactingWriter {
    redacting: Redacting,
}

impl std::io::Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(self.redacting.scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Access key ids (`AKIA…`, `ASIA…`: four letters then 16 upper-case letters or digits, as a
/// word) replaced by their first four letters and a mark.
fn redact_access_key_ids(line: &str) -> String {
    const LEN: usize = 20;
    let bytes = line.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut copied = 0;
    while i + LEN <= bytes.len() {
        let candidate = &bytes[i..i + LEN];
        let starts = matches!(&candidate[..4], b"AKIA" | b"ASIA");
        let body = candidate[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let bounded =
            (i == 0 || !word(bytes[i - 1])) && bytes.get(i + LEN).is_none_or(|b| !word(*b));
        if starts && body && bounded {
            out.push_str(&line[copied..i + 4]);
            out.push_str("…(redacted)");
            i += LEN;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&line[copied..]);
    out
}

// ---------------------------------------------------------------------------------------------
// What the engine logs at -v

/// Logs what one observation saw, in one line: info when it differs from the last observation
/// of this process, debug when it is the same again (a wait polls over and over).
pub fn observed(spec: &Spec, observed: &Observed) {
    static LAST: Mutex<Option<String>> = Mutex::new(None);
    if !tracing::enabled!(target: "greenlight::engine", tracing::Level::INFO) {
        return;
    }
    let line = observed_summary(spec, observed);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if last.as_ref() == Some(&line) {
        tracing::debug!(target: "greenlight::engine", "observed {line} (unchanged)");
    } else {
        tracing::info!(target: "greenlight::engine", "observed {line}");
        *last = Some(line);
    }
}

/// The decisions of one drive, each logged at info when it differs from the last one, at debug
/// when it repeats.
#[derive(Debug, Default)]
pub struct Trail {
    decision: Option<String>,
}

impl Trail {
    /// Logs a decision, in one line.
    pub fn decided(&mut self, decision: &Decision) {
        if !tracing::enabled!(target: "greenlight::engine", tracing::Level::INFO) {
            return;
        }
        let line = decision_summary(decision);
        if self.decision.as_ref() == Some(&line) {
            tracing::debug!(target: "greenlight::engine", "decided {line} (unchanged)");
        } else {
            tracing::info!(target: "greenlight::engine", "decided {line}");
            self.decision = Some(line);
        }
    }
}

/// How one action went, in the `apply` span: info when it was applied, warn when it failed.
pub fn applied<T, E: std::fmt::Display>(action: &str, result: &Result<T, E>, started: Instant) {
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(_) => tracing::info!(target: "greenlight::engine", elapsed_ms, "applied {action}"),
        Err(e) => {
            tracing::warn!(target: "greenlight::engine", elapsed_ms, error = %e, "{action} failed")
        }
    }
}

/// A cleanup decision on one thing (logged when it changes), e.g. `decided fleet shop-r1
/// (release r1, warm): scale_down (warm until … passed)`.
pub fn cleanup_decided(service: &str, item: &crate::core::cleanup::Item) {
    use crate::core::cleanup::Decision;
    if !tracing::enabled!(target: "greenlight::engine", tracing::Level::INFO) {
        return;
    }
    let what = match &item.decision {
        Decision::Act { action, why } => format!("{} ({why})", action.name()),
        Decision::Wait { why, .. } => format!("wait ({why})"),
        Decision::Keep { keep } => format!("keep ({})", keep.describe()),
    };
    tracing::info!(
        target: "greenlight::engine",
        service,
        "decided {}: {what}",
        item.subject.describe()
    );
}

/// Where traffic goes and who is in each slot, e.g.
/// `traffic all to a; a: shop-blue (blue, live, 2/2 healthy); b: empty`.
pub fn observed_summary(spec: &Spec, observed: &Observed) -> String {
    let traffic = match observed.routing(&spec.slots) {
        Routing::Live(slot) => format!("all to {slot}"),
        Routing::Split { a, b } => format!("a {} / b {}", a.get(), b.get()),
        Routing::Foreign(tg) => format!("to target group {} (not a slot)", tg.short_name()),
        Routing::NotForwarding(kind) => format!("not forwarded ({kind})"),
    };
    let mut line = format!("traffic {traffic}");
    for slot in [Slot::A, Slot::B] {
        let who = match observed.slot(slot).occupancy() {
            Occupancy::Empty => "empty".to_owned(),
            Occupancy::One(o) => format!(
                "{} ({}, {}, {})",
                o.fleet.name,
                o.release(),
                o.phase().map_or("untagged".to_owned(), |p| p.to_string()),
                o.health.progress()
            ),
            Occupancy::Crowded(fleets) => {
                let names: Vec<&str> = fleets.iter().map(|f| f.name.as_str()).collect();
                format!("{} fleets ({})", names.len(), names.join(", "))
            }
        };
        line.push_str(&format!("; {slot}: {who}"));
    }
    line
}

/// A decision in a few words, e.g. `act flip on fleet shop-r2`, `wait for health of shop-r2:
/// 1/2 healthy`.
pub fn decision_summary(decision: &Decision) -> String {
    match decision {
        Decision::Act(action) => action_summary(action),
        Decision::Wait(wait) => {
            let why = match &wait.why {
                WaitReason::Health { fleet, health } => {
                    format!("health of {fleet}: {}", health.progress())
                }
                WaitReason::Pause {
                    release,
                    step,
                    of,
                    weight,
                } => format!("pause of {release} at step {step}/{of} ({weight})"),
                WaitReason::Gate {
                    release,
                    step,
                    of,
                    weight,
                } => format!("promote of {release} at step {step}/{of} ({weight})"),
                WaitReason::Analysis {
                    release,
                    step,
                    of,
                    verdict,
                    ..
                } => format!("analysis of {release} at step {step}/{of}: {verdict}"),
                WaitReason::Handover { release, driver } => {
                    format!("{driver} to stop {release}")
                }
            };
            format!("wait for {why}")
        }
        Decision::Done(done) => match done {
            Done::Live { release, slot } => format!("done: {release} is live on slot {slot}"),
            Done::AlreadyRolledBack { release, slot, .. } => {
                format!("done: {release} on slot {slot} was rolled back to already")
            }
            Done::NothingInProgress { release, slot } => {
                format!("done: nothing in progress, {release} live on slot {slot}")
            }
        },
        Decision::Refuse(refusal) => format!("refuse ({:?}): {}", refusal.kind, refusal.message),
    }
}

fn action_summary(action: &Action) -> String {
    match action.fleet() {
        Some(fleet) => format!("act {} on fleet {fleet}", action.name()),
        None => format!("act {}", action.name()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn access_key_ids_and_secrets_are_taken_out_of_log_lines() {
        let redacting = Redacting {
            secrets: vec!["markersecret/abc+def".into()],
        };
        let line = "identity=Credentials { access_key_id: \"AKIAMARKERKEY0000001\", \
                    session: ASIAXXXXXXXXXXXXXXXX, secret: markersecret/abc+def }";
        assert_eq!(
            redacting.scrub(line),
            "identity=Credentials { access_key_id: \"AKIA…(redacted)\", \
             session: ASIA…(redacted), secret: ** redacted ** }"
        );
        // Not an id: too short, too long, lower case, part of a longer word.
        for kept in [
            "AKIA123",
            "AKIAMARKERKEY00000012",
            "akiamarkerkey0000001",
            "XAKIAMARKERKEY0000001",
            "release v2 on checkout-v2",
        ] {
            assert_eq!(redacting.scrub(kept), kept);
        }
    }

    use super::*;

    /// What a filter lets through: greenlight's info and debug lines, the AWS SDK's debug and
    /// error lines.
    fn lets_through(directives: &str) -> [bool; 4] {
        use tracing::Level;
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(parse(directives).expect("valid"));
        tracing::subscriber::with_default(subscriber, || {
            [
                tracing::enabled!(target: "greenlight::engine", Level::INFO),
                tracing::enabled!(target: "greenlight::aws", Level::DEBUG),
                tracing::enabled!(target: "aws_smithy_runtime::client::orchestrator", Level::DEBUG),
                tracing::enabled!(target: "aws_config::profile", Level::ERROR),
            ]
        })
    }

    #[test]
    fn verbosity_maps_to_a_filter() {
        let table = [
            (0, false, None, [false; 4]),
            (
                1,
                false,
                Some("greenlight=info"),
                [true, false, false, false],
            ),
            (
                2,
                false,
                Some("greenlight=debug"),
                [true, true, false, false],
            ),
            (
                3,
                false,
                Some("greenlight=trace"),
                [true, true, false, false],
            ),
            (
                9,
                false,
                Some("greenlight=trace"),
                [true, true, false, false],
            ),
            (0, true, Some("trace"), [true; 4]),
            (2, true, Some("trace"), [true; 4]),
        ];
        for (verbose, debug, want, through) in table {
            let got = flag_filter(verbose, debug);
            assert_eq!(got, want, "-v x{verbose} --debug {debug}");
            let got_through = got.map_or([false; 4], lets_through);
            assert_eq!(got_through, through, "-v x{verbose} --debug {debug}");
        }
    }

    #[test]
    fn rust_log_decides_over_the_flags_unless_blank_or_invalid() {
        assert_eq!(
            choose_filter(Some("greenlight=info"), 0, false),
            Ok(Some("greenlight=info".into()))
        );
        assert_eq!(
            choose_filter(Some("aws_smithy_runtime=debug"), 2, true),
            Ok(Some("aws_smithy_runtime=debug".into()))
        );
        assert_eq!(choose_filter(Some("  "), 0, false), Ok(None));
        assert_eq!(
            choose_filter(None, 2, false),
            Ok(Some("greenlight=debug".into()))
        );
        assert!(choose_filter(Some("greenlight=loud"), 0, false).is_err());
    }

    #[test]
    fn colour_as_color_says_else_as_auto_decides_for_stderr() {
        assert!(ansi(None, || true));
        assert!(!ansi(None, || false));
        assert!(ansi(Some(true), || false));
        assert!(!ansi(Some(false), || true));
    }

    #[test]
    fn the_lambda_logs_greenlights_info_and_everyones_warnings() {
        assert_eq!(lets_through(LAMBDA_DEFAULT), [true, false, false, true]);
    }
}
