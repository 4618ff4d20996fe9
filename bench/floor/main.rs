//! The floor for bench/run.sh: the least a process can do for a rollback or a blue/green deploy
//! with the AWS SDK for Rust, so greenlight's times can be stated as ratios to it.
//!
//! ```text
//! floor rollback LISTENER_ARN LIVE_TG IDLE_TG
//!     one ModifyListener: forward to LIVE_TG (weight 100) and IDLE_TG (weight 0)
//! floor deploy LISTENER_ARN BLUE_ASG GREEN_ASG IMAGE_ID
//!     the seven calls at the heart of a deploy, one after another:
//!     1 DescribeListeners            which target group is live (the other is idle)
//!     2 DescribeAutoScalingGroups    the blue group: launch template, version, sizes, subnets
//!     3 CreateLaunchTemplateVersion  blue's version with the new image
//!     4 CreateAutoScalingGroup       green, sized as blue, in the idle target group
//!     5 DescribeTargetHealth         green's health (again every second until all healthy)
//!     6 ModifyListener               forward to the idle group (weight 100), live at 0
//!     7 DescribeListeners            read it back
//! ```
//!
//! Built as a cargo example of the greenlight package (`cargo build --release --example floor`),
//! so it shares greenlight's compiled SDK crates and release profile, and loads the SDK
//! config the way greenlight does (environment, retry mode standard, `app/floor` in the user
//! agent) on the same current-thread Tokio runtime. No checks beyond what the calls need: it is
//! a lower bound, not a tool. Exit 0 on success, 1 on any error (one line on stderr).

use std::process::ExitCode;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_autoscaling::types::LaunchTemplateSpecification as AsgTemplate;
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple,
};

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["rollback", listener, live, idle] => rollback(listener, live, idle).await,
            ["deploy", listener, blue, green, image] => deploy(listener, blue, green, image).await,
            _ => Err(
                "usage: floor rollback LISTENER LIVE_TG IDLE_TG | floor deploy LISTENER \
                      BLUE_ASG GREEN_ASG IMAGE_ID"
                    .into(),
            ),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn config() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5));
    if let Ok(app) = aws_config::AppName::new("floor") {
        loader = loader.app_name(app);
    }
    loader.load().await
}

/// A forward action: all traffic to `live`, `idle` attached at weight 0.
fn forward(live: &str, idle: &str) -> Action {
    let group = |arn: &str, weight: i32| {
        TargetGroupTuple::builder()
            .target_group_arn(arn)
            .weight(weight)
            .build()
    };
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(group(live, 100))
                .target_groups(group(idle, 0))
                .build(),
        )
        .build()
}

async fn rollback(listener: &str, live: &str, idle: &str) -> Result<()> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config().await);
    elb.modify_listener()
        .listener_arn(listener)
        .default_actions(forward(live, idle))
        .send()
        .await
        .map_err(|e| format!("ModifyListener: {e:?}"))?;
    Ok(())
}

async fn deploy(listener: &str, blue: &str, green: &str, image: &str) -> Result<()> {
    let conf = config().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let err = |op: &str, e: &dyn std::fmt::Debug| format!("{op}: {e:?}");

    // 1. Which target group is live: the one with the highest weight (or the only one).
    let listeners = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .map_err(|e| err("DescribeListeners", &e))?;
    let action = listeners
        .listeners()
        .first()
        .and_then(|l| l.default_actions().first())
        .ok_or("the listener has no default action")?;
    let mut groups: Vec<(String, i32)> = action
        .forward_config()
        .map(|f| {
            f.target_groups()
                .iter()
                .filter_map(|t| Some((t.target_group_arn()?.to_owned(), t.weight().unwrap_or(1))))
                .collect()
        })
        .unwrap_or_default();
    groups.sort_by_key(|(_, weight)| -weight);
    if groups.len() != 2 {
        return Err("the listener must forward to two target groups (live and idle)".into());
    }
    let (live, idle) = (groups[0].0.clone(), groups[1].0.clone());

    // 2. The blue group.
    let described = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(blue)
        .send()
        .await
        .map_err(|e| err("DescribeAutoScalingGroups", &e))?;
    let group = described
        .auto_scaling_groups()
        .first()
        .ok_or_else(|| format!("no Auto Scaling group {blue}"))?;
    let template = group
        .launch_template()
        .ok_or("the blue group has no launch template")?;
    let template_id = template.launch_template_id().ok_or("no template id")?;
    let source = template.version().unwrap_or("$Default");

    // 3. A new launch template version: blue's with the new image.
    let version = ec2
        .create_launch_template_version()
        .launch_template_id(template_id)
        .source_version(source)
        .launch_template_data(RequestLaunchTemplateData::builder().image_id(image).build())
        .send()
        .await
        .map_err(|e| err("CreateLaunchTemplateVersion", &e))?
        .launch_template_version()
        .and_then(|v| v.version_number())
        .ok_or("no version number")?;

    // 4. Green, sized as blue, in the idle target group.
    let desired = group.desired_capacity().unwrap_or(1);
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(green)
        .launch_template(
            AsgTemplate::builder()
                .launch_template_id(template_id)
                .version(version.to_string())
                .build(),
        )
        .min_size(group.min_size().unwrap_or(desired))
        .max_size(group.max_size().unwrap_or(desired))
        .desired_capacity(desired)
        .vpc_zone_identifier(group.vpc_zone_identifier().unwrap_or_default())
        .target_group_arns(&idle)
        .health_check_type("ELB")
        .health_check_grace_period(group.health_check_grace_period().unwrap_or(0))
        .send()
        .await
        .map_err(|e| err("CreateAutoScalingGroup", &e))?;

    // 5. Green's health, every second until `desired` targets are healthy.
    loop {
        let health = elb
            .describe_target_health()
            .target_group_arn(&idle)
            .send()
            .await
            .map_err(|e| err("DescribeTargetHealth", &e))?;
        let healthy = health
            .target_health_descriptions()
            .iter()
            .filter(|d| {
                d.target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str())
                    == Some("healthy")
            })
            .count();
        if healthy as i32 >= desired {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // 6. The flip.
    elb.modify_listener()
        .listener_arn(listener)
        .default_actions(forward(&idle, &live))
        .send()
        .await
        .map_err(|e| err("ModifyListener", &e))?;

    // 7. Read it back.
    let back = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .map_err(|e| err("DescribeListeners", &e))?;
    let now_live = back
        .listeners()
        .first()
        .and_then(|l| l.default_actions().first())
        .and_then(|a| a.forward_config())
        .and_then(|f| {
            f.target_groups()
                .iter()
                .max_by_key(|t| t.weight().unwrap_or(1))
        })
        .and_then(|t| t.target_group_arn());
    if now_live != Some(idle.as_str()) {
        return Err(format!("the listener reads back {now_live:?}, not {idle}"));
    }
    Ok(())
}
