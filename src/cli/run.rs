//! Runs the parsed command against AWS and turns every outcome into output and an exit code.

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use clap::Parser;

use super::args::{Cli, Command};
use crate::aws::AwsCloud;
use crate::core::cleanup::CleanupPolicy;
use crate::core::cloud::Cloud;
use crate::core::decide::{DeployRequest, Launch};
use crate::core::lock::Holder;
use crate::core::names::ServiceName;
use crate::core::names::{ImageId, ReleaseName};
use crate::core::reason::{Reason, ReasonCode};
use crate::core::spec::{self, ConfigError, Spec, parse_duration};
use crate::engine::cleanup::{self, CleanupOptions, Outcome, Runner, Scope};
use crate::engine::clock::{Clock as _, SystemClock};
use crate::engine::context::Context;
use crate::engine::deploy::DeployOptions;
use crate::engine::events::Event;
use crate::engine::failure::Failure;
use crate::engine::failure::ServiceFailure;
use crate::engine::lease::{force_unlock, holder_from_env, pid_alive};
use crate::engine::stop::{Signal, Stop};
use crate::engine::{abort, deploy, promote, rollback, status, validate};
use crate::exit;
use crate::nginx::NginxCloud;
use crate::output::cleanup::{CleanupPrinter, print_summary};
use crate::output::{Format, human, json, reporter};

pub fn main() -> ExitCode {
    json::mark_start();
    let format = requested_format(std::env::args());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, format),
    };
    // Logs on stderr, as -v/-vv/--debug/RUST_LOG ask (none by default).
    crate::logging::init(&crate::logging::Options {
        verbose: cli.verbose,
        debug: cli.debug,
        json: cli.log_format == super::args::LogFormat::Json,
        color: match cli.color {
            super::args::ColorChoice::Always => Some(true),
            super::args::ColorChoice::Never => Some(false),
            super::args::ColorChoice::Auto => None,
        },
    });
    let profile = cli
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .filter(|p| !p.trim().is_empty());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(
                format,
                exit::INTERNAL,
                &format!("cannot start the async runtime: {e}"),
                ReasonCode::Internal,
            );
        }
    };
    // A bug must still end in one line and a JSON error event, not a backtrace only.
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(run(cli))));
    match outcome {
        Ok(Ok(())) => ExitCode::from(exit::SUCCESS),
        Ok(Err(failure)) => fail_with(
            format,
            exit::code(&failure),
            &failure.message(profile.as_deref()),
            failure.reasons(profile.as_deref()),
        ),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".into());
            fail(
                format,
                exit::INTERNAL,
                &format!(
                    "greenlight hit a bug ({}); please report it. Traffic moves only in whole \
                     steps: run `greenlight status` to see where things stand",
                    what.replace('\n', " ")
                ),
                ReasonCode::Internal,
            )
        }
    }
}

/// An error that is not a [`Failure`]: a bug, the runtime, the command line.
fn fail(format: Format, code: u8, message: &str, why: ReasonCode) -> ExitCode {
    fail_with(format, code, message, vec![Reason::new(why, message)])
}

/// The error, on stderr as one line, and as the last JSON event for machines.
fn fail_with(format: Format, code: u8, message: &str, reasons: Vec<Reason>) -> ExitCode {
    if format == Format::Json {
        json::print_event(&Event::Error {
            exit_code: code,
            message: message.to_owned(),
            reasons,
        });
    }
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// `--output json` as given on the command line, even when the rest does not parse.
fn requested_format(args: impl Iterator<Item = String>) -> Format {
    let args: Vec<String> = args.collect();
    let json = args
        .windows(2)
        .any(|w| w[0] == "--output" && w[1] == "json")
        || args.iter().any(|a| a == "--output=json");
    if json { Format::Json } else { Format::Human }
}

/// clap's errors span several lines; users get one, plus where to look.
fn usage_error(error: clap::Error, format: Format) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::from(exit::SUCCESS);
    }
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        && format == Format::Human
    {
        let _ = error.print();
        return ExitCode::from(exit::BAD_INPUT);
    }
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let message = if message.is_empty() {
        "a subcommand is required".to_owned()
    } else {
        message.to_owned()
    };
    fail(
        format,
        exit::BAD_INPUT,
        &format!("{message} (see greenlight --help)"),
        ReasonCode::Usage,
    )
}

fn load_spec(cli: &Cli) -> Result<Spec, Failure> {
    let path = &cli.config;
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "config {} not found; pass --config PATH or create greenlight.toml (see README)",
                path.display()
            )
        } else {
            format!("cannot read config {}: {e}", path.display())
        })
    })?;
    Spec::parse(&text).map_err(|e| ConfigError(format!("config {}: {e}", path.display())).into())
}

fn deploy_request(
    spec: &Spec,
    command: &Command,
) -> Result<Option<(DeployRequest, DeployOptions)>, Failure> {
    let Command::Deploy {
        release,
        image_id,
        launch_template_version,
        strategy,
        no_wait,
    } = command
    else {
        return Ok(None);
    };
    let release = ReleaseName::parse(release).map_err(|e| Failure::BadInput(e.0))?;
    let launch = match (image_id.as_deref(), *launch_template_version) {
        (None, None) if spec.nginx.is_some() => Launch::Version(crate::nginx::BACKENDS_VERSION),
        (Some(_), _) | (_, Some(_)) if spec.nginx.is_some() => {
            return Err(Failure::BadInput(
                "--image-id and --launch-template-version are for Auto Scaling fleets; an nginx \
                 router's slots run what your tooling started on [router] backends. Start the \
                 release there, then deploy without them"
                    .into(),
            ));
        }
        (Some(image), None) => {
            Launch::Image(ImageId::parse(image).map_err(|e| Failure::BadInput(e.0))?)
        }
        (None, Some(version)) if version > 0 => Launch::Version(version),
        (None, Some(_)) => {
            return Err(Failure::BadInput(
                "--launch-template-version must be 1 or more".into(),
            ));
        }
        _ => {
            return Err(Failure::BadInput(
                "one of --image-id or --launch-template-version is required: the AMI to release, \
                 or an existing version of the live fleet's launch template"
                    .into(),
            ));
        }
    };
    let strategy = strategy.map(Into::into).unwrap_or(spec.strategy);
    let plan = spec.plan(strategy).map_err(|e| Failure::BadInput(e.0))?;
    Ok(Some((
        DeployRequest {
            release,
            launch,
            plan,
        },
        DeployOptions { no_wait: *no_wait },
    )))
}

/// First SIGINT/SIGTERM: stop at the next safe point. A second one: exit at once.
fn watch_signals(stop: Stop, format: Format) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            let got = tokio::select! {
                _ = int.recv() => Signal::Interrupt,
                _ = term.recv() => Signal::Terminate,
            };
            if stop.requested().is_some() {
                let message = format!(
                    "{got} again: exiting now, not at a safe point; `greenlight status` shows \
                     where things stand, and re-running the command resumes"
                );
                let reasons =
                    vec![Reason::new(ReasonCode::Interrupted, &message).on(got.to_string())];
                let _ = fail_with(format, got.exit_code(), &message, reasons);
                std::process::exit(i32::from(got.exit_code()));
            }
            eprintln!(
                "greenlight: {got}: stopping at the next safe point (send it again to exit now)"
            );
            stop.request(got);
        }
    });
    #[cfg(not(unix))]
    {
        let _ = (stop, format);
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    crate::output::set_color(match cli.color {
        super::args::ColorChoice::Auto => None,
        super::args::ColorChoice::Always => Some(true),
        super::args::ColorChoice::Never => Some(false),
    });
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "greenlight", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut out = std::io::stdout().lock();
            return page.render(&mut out).map_err(|e| {
                Failure::BadInput(format!("cannot write the man page to stdout: {e}"))
            });
        }
        _ => {}
    }
    if let Command::Cleanup {
        all, service: name, ..
    } = &cli.command
        && (*all || name.is_some())
    {
        return run_cleanup(&cli, None).await;
    }
    let spec = load_spec(&cli)?;
    if let Command::Cleanup { .. } = &cli.command {
        return run_cleanup(&cli, Some(spec)).await;
    }
    if let Command::NginxInclude = &cli.command {
        let cloud = NginxCloud::new(&spec).ok_or_else(|| {
            Failure::BadInput(
                "nginx-include is for [router] kind = \"nginx\"; this config's router is an ALB"
                    .into(),
            )
        })?;
        print!(
            "{}",
            cloud.current_include().map_err(Failure::cloud(false))?
        );
        return Ok(());
    }
    // Everything that can be checked offline is checked before the first AWS call.
    let request = deploy_request(&spec, &cli.command)?;
    if let Some(cloud) = NginxCloud::new(&spec) {
        if cli.region.is_some() {
            return Err(Failure::BadInput(
                "--region is for an ALB; an nginx router runs where greenlight runs. Drop --region"
                    .into(),
            ));
        }
        return run_with(&cli, &spec, request, &cloud).await;
    }
    let region = cli.region.as_deref().or(spec.region.as_deref());
    let mut cloud = AwsCloud::connect(region, cli.profile.as_deref()).await;
    if cloud.region().is_none() {
        // No region anywhere in the environment: the ARNs say where the service lives.
        cloud = AwsCloud::connect(spec.arn_region(), cli.profile.as_deref()).await;
    }
    check_region(&spec, cloud.region())?;
    run_with(&cli, &spec, request, &cloud).await
}

/// Runs a command that reads the config against `cloud` (AWS, or an nginx router).
async fn run_with<C: Cloud>(
    cli: &Cli,
    spec: &Spec,
    request: Option<(DeployRequest, DeployOptions)>,
    cloud: &C,
) -> Result<(), Failure> {
    let stop = Stop::new();
    watch_signals(stop.clone(), cli.output);
    let holder: Holder = holder_from_env();
    let ctx = Context {
        cloud,
        clock: &SystemClock,
        spec,
        stop: &stop,
        holder: &holder,
        alive: pid_alive,
    };
    let mut reporter = reporter(cli.output);

    match &cli.command {
        Command::Deploy { .. } => {
            let (request, options) = request.expect("parsed above");
            deploy::deploy(&ctx, reporter.as_mut(), &request, options).await?;
        }
        Command::Promote { full } => {
            promote::promote(&ctx, reporter.as_mut(), *full).await?;
        }
        Command::Abort => {
            abort::abort(&ctx, reporter.as_mut()).await?;
        }
        Command::Rollback { to } => {
            if let Some(to) = to {
                ReleaseName::parse(to).map_err(|e| Failure::BadInput(e.0))?;
            }
            rollback::rollback(&ctx, reporter.as_mut(), to.as_deref()).await?;
        }
        Command::Status {
            watch: true,
            until_settled,
            interval,
        } => {
            let interval = parse_duration("--interval", interval).map_err(Failure::Config)?;
            if interval < std::time::Duration::from_secs(1) {
                return Err(Failure::BadInput(format!(
                    "--interval {} is too short; use 1s or more",
                    humantime::format_duration(interval)
                )));
            }
            let options = status::WatchOptions {
                interval,
                until_settled: *until_settled,
            };
            let mut view = crate::output::progress::StatusView::stdout(cli.output, interval);
            status::watch(
                cloud,
                &SystemClock,
                spec,
                &stop,
                options,
                &mut |read, now| view.show(read, now),
            )
            .await?;
        }
        Command::Status { .. } => {
            let now = SystemClock.now();
            let report = status::status(cloud, spec, now).await?;
            match cli.output {
                Format::Human => human::print_status(&report, now),
                Format::Json => json::print_line(&report),
            }
        }
        Command::Validate => {
            let validation = validate::validate(cloud, spec).await?;
            match cli.output {
                Format::Human => human::print_validation(&validation),
                Format::Json => json::print_line(&validation),
            }
        }
        Command::Cleanup { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::NginxInclude => {
            unreachable!("handled above")
        }
        Command::Unlock { .. } => {
            let removed = force_unlock(cloud, spec).await?;
            match cli.output {
                Format::Human => human::print_unlock(spec, removed.as_ref()),
                Format::Json => json::print_line(&serde_json::json!({
                    "service": spec.service.as_str(),
                    "removed": removed,
                })),
            }
        }
    }
    Ok(())
}

/// `greenlight cleanup`: one service from its config (`spec`), or by name or all of them from
/// tags alone.
async fn run_cleanup(cli: &Cli, spec: Option<Spec>) -> Result<(), Failure> {
    let Command::Cleanup {
        all,
        service,
        timeout,
        keep_releases,
        keep_failed,
        concurrency,
        ..
    } = &cli.command
    else {
        unreachable!("called for cleanup only");
    };
    // Everything that can be checked offline is checked before the first AWS call.
    let timeout = parse_duration("--timeout", timeout).map_err(Failure::Config)?;
    let retention = spec
        .as_ref()
        .map(|s| s.retention.clone())
        .unwrap_or_default();
    let policy = CleanupPolicy {
        keep_failed: match keep_failed {
            Some(value) => parse_duration("--keep-failed", value).map_err(Failure::Config)?,
            None => retention.keep_failed,
        },
        keep_releases: match keep_releases {
            Some(n) => spec::keep_releases(Some(*n)).map_err(|e| {
                Failure::BadInput(e.0.replace("[retention] keep_releases", "--keep-releases"))
            })?,
            None => retention.keep_releases,
        },
    };
    if *concurrency == 0 || *concurrency > 64 {
        return Err(Failure::BadInput(format!(
            "--concurrency {concurrency} is out of range; use 1 to 64"
        )));
    }
    let scope = match (&spec, service) {
        (Some(spec), _) => Scope::Config(Box::new(spec.clone())),
        (None, Some(name)) => {
            Scope::Named(ServiceName::parse(name).map_err(|e| Failure::BadInput(e.0))?)
        }
        (None, None) => {
            debug_assert!(*all);
            Scope::All
        }
    };
    if let Some(cloud) = spec.as_ref().and_then(NginxCloud::new) {
        return cleanup_with(cli, &scope, policy, timeout, &cloud).await;
    }
    let region = cli
        .region
        .as_deref()
        .or(spec.as_ref().and_then(|s| s.region.as_deref()));
    let mut cloud = AwsCloud::connect(region, cli.profile.as_deref()).await;
    if let Some(spec) = &spec {
        if cloud.region().is_none() {
            cloud = AwsCloud::connect(spec.arn_region(), cli.profile.as_deref()).await;
        }
        check_region(spec, cloud.region())?;
    } else if cloud.region().is_none() {
        return Err(Failure::BadInput(
            "no AWS region: pass --region, or set AWS_REGION or a profile region".into(),
        ));
    }
    cleanup_with(cli, &scope, policy, timeout, &cloud).await
}

async fn cleanup_with<C: Cloud>(
    cli: &Cli,
    scope: &Scope,
    policy: CleanupPolicy,
    timeout: std::time::Duration,
    cloud: &C,
) -> Result<(), Failure> {
    let Command::Cleanup {
        dry_run,
        concurrency,
        ..
    } = &cli.command
    else {
        unreachable!("called for cleanup only");
    };
    let stop = Stop::new();
    watch_signals(stop.clone(), cli.output);
    let holder = holder_from_env();
    let runner = Runner {
        cloud,
        clock: &SystemClock,
        holder: &holder,
        alive: pid_alive,
        stop: &stop,
    };
    let options = CleanupOptions {
        dry_run: *dry_run,
        policy,
        deadline: SystemClock.now() + timeout,
        concurrency: *concurrency,
    };
    let printer = CleanupPrinter::new(cli.output);
    let report = cleanup::cleanup(&runner, scope, &options, &printer).await?;
    print_summary(&report, cli.output);
    let single = !matches!(scope, Scope::All);
    let failures: Vec<ServiceFailure> = report
        .services
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Failed { exit_code, message } => Some(ServiceFailure {
                service: s.service.clone(),
                exit_code: *exit_code,
                message: message.clone(),
            }),
            Outcome::Locked { holder } if single => Some(ServiceFailure {
                service: s.service.clone(),
                exit_code: exit::BUSY,
                message: format!(
                    "locked by {holder}; cleanup runs when it is done, or if that run is gone,                      `greenlight unlock --force`"
                ),
            }),
            _ => None,
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::CleanupFailed(failures))
    }
}

/// Calls in one region for resources of another fail with "not found"; say what is wrong instead.
fn check_region(spec: &Spec, effective: Option<&str>) -> Result<(), Failure> {
    match (effective, spec.arn_region()) {
        (None, _) => Err(Failure::BadInput(
            "no AWS region: set region in greenlight.toml, --region, AWS_REGION, or a profile region"
                .into(),
        )),
        (Some(effective), Some(arns)) if effective != arns => Err(Failure::BadInput(format!(
            "the AWS region is {effective} but the config's ARNs are in {arns}; set region = \"{arns}\" in greenlight.toml, --region {arns} or AWS_REGION={arns}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_seen_before_parsing() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            requested_format(args(&["greenlight", "--output", "json", "bogus"]).into_iter()),
            Format::Json
        );
        assert_eq!(
            requested_format(args(&["greenlight", "deploy", "--output=json"]).into_iter()),
            Format::Json
        );
        assert_eq!(
            requested_format(args(&["greenlight", "status"]).into_iter()),
            Format::Human
        );
    }
}
