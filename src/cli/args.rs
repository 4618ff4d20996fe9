//! Flags and subcommands (clap derive).

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "greenlight",
    version,
    about = "Zero-downtime blue/green releases of EC2 Auto Scaling groups behind an AWS load balancer",
    long_about = "Zero-downtime blue/green releases of EC2 Auto Scaling groups behind an AWS load balancer.\n\n\
        deploy twins the live Auto Scaling group for a new release, waits until the twin is healthy \
        in the idle target group, then flips the listener (or one rule) in one call. The previous \
        release stays warm, so rollback is one call too. State lives in AWS tags only.\n\n\
        AWS credentials, region and endpoint come from the standard chain (AWS_PROFILE, AWS_REGION, \
        AWS_ENDPOINT_URL, SSO, instance roles).",
    after_help = crate::exit::HELP,
)]
pub struct Cli {
    /// Path to the service's configuration.
    #[arg(
        long,
        global = true,
        default_value = "greenlight.toml",
        env = "GREENLIGHT_CONFIG"
    )]
    pub config: PathBuf,

    /// Output for people (human) or for machines (json: one object per line).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Release a new version: twin the live fleet, wait until healthy, flip traffic.
    #[command(
        group(ArgGroup::new("launch").required(true).args(["image_id", "launch_template_version"])),
        after_help = crate::exit::HELP,
    )]
    Deploy {
        /// Name of the release (letters, digits, '-', '.', '_'); the new fleet is <service>-<release>.
        #[arg(long)]
        release: String,
        /// AMI for the new release: greenlight adds a launch template version with it.
        #[arg(long)]
        image_id: Option<String>,
        /// An existing version of the live fleet's launch template to release instead.
        #[arg(long)]
        launch_template_version: Option<u64>,
    },
    /// Route all traffic back to the previous release, if it is still warm and healthy.
    #[command(after_help = crate::exit::HELP)]
    Rollback,
    /// Show where traffic goes and the fleets behind each slot.
    #[command(after_help = crate::exit::HELP)]
    Status,
    /// Check the config and the AWS resources it names, changing nothing.
    #[command(after_help = crate::exit::HELP)]
    Validate,
}
