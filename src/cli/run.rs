//! Runs the parsed command against AWS and turns every outcome into output and an exit code.

use std::process::ExitCode;

use clap::Parser;

use super::args::{Cli, Command};
use crate::aws::AwsCloud;
use crate::core::decide::{DeployRequest, Launch};
use crate::core::names::{ImageId, ReleaseName};
use crate::core::spec::{ConfigError, Spec};
use crate::engine::clock::SystemClock;
use crate::engine::events::Event;
use crate::engine::failure::Failure;
use crate::engine::{deploy, rollback, status, validate};
use crate::exit;
use crate::output::{Format, human, json, reporter};

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let format = cli.output;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(failure) => {
            let code = exit::code(&failure);
            let message = failure.to_string();
            if format == Format::Json {
                json::print_line(&Event::Error {
                    exit_code: code,
                    message: message.clone(),
                });
            }
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// clap's errors span several lines; users get one, plus where to look.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return ExitCode::from(
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                exit::BAD_INPUT
            } else {
                exit::SUCCESS
            },
        );
    }
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("error: {message} (see greenlight --help)");
    ExitCode::from(exit::BAD_INPUT)
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
    release: &str,
    image_id: Option<&str>,
    version: Option<u64>,
) -> Result<DeployRequest, Failure> {
    let release = ReleaseName::parse(release).map_err(|e| Failure::BadInput(e.0))?;
    let launch = match (image_id, version) {
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
                "give exactly one of --image-id or --launch-template-version".into(),
            ));
        }
    };
    Ok(DeployRequest { release, launch })
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Everything that can be checked offline is checked before the first AWS call.
    let request = match &cli.command {
        Command::Deploy {
            release,
            image_id,
            launch_template_version,
        } => Some(deploy_request(
            release,
            image_id.as_deref(),
            *launch_template_version,
        )?),
        _ => None,
    };
    let spec = load_spec(&cli)?;
    let mut cloud = AwsCloud::connect(spec.region.as_deref()).await;
    if cloud.region().is_none() {
        // No region anywhere in the environment: the ARNs say where the service lives.
        cloud = AwsCloud::connect(spec.arn_region()).await;
    }
    check_region(&spec, cloud.region())?;
    let clock = SystemClock;
    let mut reporter = reporter(cli.output);

    match &cli.command {
        Command::Deploy { .. } => {
            let request = request.expect("parsed above");
            deploy::deploy(&cloud, &clock, reporter.as_mut(), &spec, &request).await?;
        }
        Command::Rollback => {
            rollback::rollback(&cloud, &clock, reporter.as_mut(), &spec).await?;
        }
        Command::Status => {
            let report = status::status(&cloud, &spec).await?;
            match cli.output {
                Format::Human => human::print_status(&report),
                Format::Json => json::print_line(&report),
            }
        }
        Command::Validate => {
            let validation = validate::validate(&cloud, &spec).await?;
            match cli.output {
                Format::Human => human::print_validation(&validation),
                Format::Json => json::print_line(&validation),
            }
        }
    }
    Ok(())
}

/// Calls in one region for resources of another fail with "not found"; say what is wrong instead.
fn check_region(spec: &Spec, effective: Option<&str>) -> Result<(), Failure> {
    match (effective, spec.arn_region()) {
        (None, _) => Err(Failure::BadInput(
            "no AWS region: set region in greenlight.toml, or AWS_REGION, or a profile region"
                .into(),
        )),
        (Some(effective), Some(arns)) if effective != arns => Err(Failure::BadInput(format!(
            "the AWS region is {effective} but the config's ARNs are in {arns}; set region = \"{arns}\" in greenlight.toml or AWS_REGION={arns}"
        ))),
        _ => Ok(()),
    }
}
