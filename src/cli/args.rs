//! Flags and subcommands (clap derive).

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};

use crate::core::plan::Strategy;
use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "greenlight",
    version = crate::cli::VERSION,
    about = "Zero-downtime blue/green and canary releases of EC2 Auto Scaling groups behind an AWS load balancer",
    long_about = "Zero-downtime blue/green and canary releases of EC2 Auto Scaling groups behind an AWS load balancer.\n\n\
        deploy twins the live Auto Scaling group for a new release, waits until the twin is healthy \
        in the idle target group, then flips the listener (or one rule) in one call, or shifts \
        traffic to it by weighted steps with pauses and manual gates (canary). The previous \
        release stays warm, so rollback is one call too. State lives in AWS tags only; one runner \
        changes a service at a time (a lock in AWS).\n\n\
        AWS credentials, region and endpoint come from the standard chain (AWS_PROFILE, AWS_REGION, \
        AWS_ENDPOINT_URL, SSO, instance roles), or --profile and --region.",
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

    /// AWS region, over the config's region and AWS_REGION.
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// AWS profile (from ~/.aws/config), over AWS_PROFILE.
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// Log what greenlight does on stderr: -v decisions and actions, -vv every AWS call
    /// (RUST_LOG, when set, decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log everything, the AWS SDK's own internals included (as RUST_LOG=trace).
    #[arg(long, global = true)]
    pub debug: bool,

    /// Log lines on stderr as text or as JSON objects (one per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GREENLIGHT_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Colour in human output: auto (a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line (fields flattened, span fields included).
    Json,
}

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    Auto,
    Always,
    Never,
}

/// `--strategy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// All traffic moves in one call once the new release is healthy.
    Bluegreen,
    /// Weighted steps from [canary] steps in the config.
    Canary,
}

impl From<StrategyArg> for Strategy {
    fn from(value: StrategyArg) -> Strategy {
        match value {
            StrategyArg::Bluegreen => Strategy::BlueGreen,
            StrategyArg::Canary => Strategy::Canary,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Release a new version: twin the live fleet, wait until healthy, move traffic to it.
    #[command(
        group(ArgGroup::new("launch").args(["image_id", "launch_template_version"])),
        after_help = crate::exit::HELP,
    )]
    Deploy {
        /// Name of the release (letters, digits, '-', '.', '_'); the new fleet is <service>-<release>.
        #[arg(long)]
        release: String,
        /// AMI for the new release: greenlight adds a launch template version with it. One of
        /// this and --launch-template-version is required, except with an nginx router (its
        /// slots run what your tooling started on their backends).
        #[arg(long)]
        image_id: Option<String>,
        /// An existing version of the live fleet's launch template to release instead.
        #[arg(long)]
        launch_template_version: Option<u64>,
        /// How traffic moves (default: `strategy` in the config, else bluegreen).
        #[arg(long, value_enum)]
        strategy: Option<StrategyArg>,
        /// Return (exit 0) when the release reaches a manual gate, instead of waiting there for
        /// `greenlight promote`.
        #[arg(long)]
        no_wait: bool,
    },
    /// End the current pause of the release in progress (or every remaining one with --full).
    #[command(after_help = crate::exit::HELP)]
    Promote {
        /// Skip the remaining steps and pauses: all traffic to the new release.
        #[arg(long)]
        full: bool,
    },
    /// Stop the release in progress: traffic back to the live release, the new one failed.
    #[command(after_help = crate::exit::HELP)]
    Abort,
    /// Route all traffic back to the previous release, if it is still warm and healthy.
    #[command(after_help = crate::exit::HELP)]
    Rollback {
        /// Roll back to this release only (it must be the warm one); a no-op if it is live.
        #[arg(long)]
        to: Option<String>,
    },
    /// Show where traffic goes, the fleets behind each slot, the release in progress, the lock.
    #[command(after_help = crate::exit::HELP)]
    Status {
        /// Redraw every --interval until interrupted.
        #[arg(long)]
        watch: bool,
        /// With --watch: exit once no release is in progress (0), or when one failed (3).
        #[arg(long, requires = "watch")]
        until_settled: bool,
        /// Time between two reads with --watch.
        #[arg(long, default_value = "2s", requires = "watch")]
        interval: String,
    },
    /// Check the config and the AWS resources it names, changing nothing.
    #[command(after_help = crate::exit::HELP)]
    Validate,
    /// Retire what is no longer needed: warm fleets past warm-until, failed ones past
    /// keep_failed, leftover test rules and locks, old launch template versions. Never a
    /// fleet that takes traffic, one greenlight did not create, or another service's.
    #[command(
        group(ArgGroup::new("scope").args(["all", "service"])),
        after_help = crate::exit::HELP,
    )]
    Cleanup {
        /// Print what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Every greenlight service in the region, found from fleet tags (no config needed).
        #[arg(long)]
        all: bool,
        /// One service by name, found from fleet tags (no config needed).
        #[arg(long)]
        service: Option<String>,
        /// How long to wait for retiring fleets to drain; what is left is finished by the next run.
        #[arg(long, default_value = "10m")]
        timeout: String,
        /// Launch template versions greenlight made to keep, newest first (default: the
        /// config's [retention] keep_releases, else 5).
        #[arg(long)]
        keep_releases: Option<i64>,
        /// How long a failed release's fleet is kept (default: the config's [retention]
        /// keep_failed, else 1h).
        #[arg(long)]
        keep_failed: Option<String>,
        /// Services cleaned at once with --all.
        #[arg(long, default_value_t = crate::engine::cleanup::DEFAULT_CONCURRENCY)]
        concurrency: usize,
    },
    /// Print a shell completion script: `greenlight completions bash > /etc/bash_completion.d/greenlight`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `greenlight man > /usr/local/share/man/man1/greenlight.1`.
    Man,
    /// With an nginx router: print the include for the current routing (all traffic to slot a
    /// before the first release), to write to [router] include before nginx first starts.
    #[command(after_help = crate::exit::HELP)]
    NginxInclude,
    /// Remove the service's lock, whoever holds it (for a runner that is gone).
    #[command(after_help = crate::exit::HELP)]
    Unlock {
        /// Required: say you mean it. Only use it when no greenlight is running for the service.
        #[arg(long, required = true)]
        force: bool,
    },
}

impl Command {
    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Deploy { .. } => "deploy",
            Command::Promote { .. } => "promote",
            Command::Abort => "abort",
            Command::Rollback { .. } => "rollback",
            Command::Status { .. } => "status",
            Command::Validate => "validate",
            Command::Cleanup { .. } => "cleanup",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
            Command::NginxInclude => "nginx-include",
            Command::Unlock { .. } => "unlock",
        }
    }
}
