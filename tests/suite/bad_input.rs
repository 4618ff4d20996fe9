//! Bad input through the real binary against the emulator, one table of cases. Every case must
//! end with its documented exit code (2 for bad input or config unless the case says otherwise),
//! exactly one line on stderr naming the problem (and the fix), a JSON `error` event as the last
//! stdout line with `--output json`, and no mutating AWS call at all: the emulator's request log
//! shows none, and a fingerprint of everything greenlight could change is the same before and
//! after. Bad input must be found before the lock (a `CreateLaunchTemplate`) is taken.
//!
//! Every failing case is collected and reported at once, so one run shows every problem.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_ec2::Client as Ec2Client;
use aws_sdk_ec2::types::{
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, Tag,
    TagSpecification,
};
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetGroupTuple, TargetTypeEnum,
};
use serde_json::Value;

use super::harness::{Seeded, Session, session};

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Direct AWS access with the SDK: to break a service by hand, and to see that greenlight
/// changed nothing.
struct Aws {
    elb: ElbClient,
    asg: AsgClient,
    ec2: Ec2Client,
}

impl Aws {
    fn new(session: &Session) -> Aws {
        let conf = block_on(session.sdk());
        Aws {
            elb: ElbClient::new(&conf),
            asg: AsgClient::new(&conf),
            ec2: Ec2Client::new(&conf),
        }
    }

    /// Everything a greenlight command could change: the listener's default action and rules,
    /// every Auto Scaling group (capacity, target groups, tags, suspended processes), and every
    /// launch template (the lock is one; new versions are releases).
    fn fingerprint(&self, seeded: &Seeded) -> String {
        let listener = seeded.str("listener_arn");
        let listeners = block_on(
            self.elb
                .describe_listeners()
                .listener_arns(&listener)
                .send(),
        )
        .expect("describe the listener");
        let default_actions = format!("{:?}", listeners.listeners()[0].default_actions());
        let rules = block_on(self.elb.describe_rules().listener_arn(&listener).send())
            .expect("describe the rules");
        let rules: Vec<String> = rules
            .rules()
            .iter()
            .map(|r| format!("{:?} {:?}", r.rule_arn(), r.actions()))
            .collect();
        let groups =
            block_on(self.asg.describe_auto_scaling_groups().send()).expect("describe the groups");
        let mut groups: Vec<String> = groups
            .auto_scaling_groups()
            .iter()
            .map(|g| {
                let mut tags: Vec<String> = g
                    .tags()
                    .iter()
                    .map(|t| format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or("")))
                    .collect();
                tags.sort();
                let mut suspended: Vec<&str> = g
                    .suspended_processes()
                    .iter()
                    .filter_map(|p| p.process_name())
                    .collect();
                suspended.sort();
                format!(
                    "{} {}/{}/{} {:?} {:?} {tags:?} {suspended:?}",
                    g.auto_scaling_group_name().unwrap_or(""),
                    g.min_size().unwrap_or(0),
                    g.max_size().unwrap_or(0),
                    g.desired_capacity().unwrap_or(0),
                    g.target_group_arns(),
                    g.launch_template()
                        .map(|t| (t.launch_template_id(), t.version())),
                )
            })
            .collect();
        groups.sort();
        let templates = block_on(self.ec2.describe_launch_templates().send())
            .expect("describe the launch templates");
        let mut templates: Vec<String> = templates
            .launch_templates()
            .iter()
            .map(|t| {
                let mut tags: Vec<String> = t
                    .tags()
                    .iter()
                    .map(|t| format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or("")))
                    .collect();
                tags.sort();
                format!(
                    "{} {} v{} {tags:?}",
                    t.launch_template_name().unwrap_or(""),
                    t.launch_template_id().unwrap_or(""),
                    t.latest_version_number().unwrap_or(0)
                )
            })
            .collect();
        templates.sort();
        format!("{default_actions}\n{rules:#?}\n{groups:#?}\n{templates:#?}")
    }

    /// Points the listener's default action at `forwards` (target group, weight), as a person
    /// with the console would.
    fn forward(&self, listener: &str, forwards: &[(String, i32)]) {
        let tuples: Vec<TargetGroupTuple> = forwards
            .iter()
            .map(|(tg, weight)| {
                TargetGroupTuple::builder()
                    .target_group_arn(tg)
                    .weight(*weight)
                    .build()
            })
            .collect();
        let action = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .set_target_groups(Some(tuples))
                    .build(),
            )
            .build();
        block_on(
            self.elb
                .modify_listener()
                .listener_arn(listener)
                .default_actions(action)
                .send(),
        )
        .expect("modify the listener by hand");
    }

    fn create_target_group(&self, name: &str, vpc: &str) -> String {
        let out = block_on(
            self.elb
                .create_target_group()
                .name(name)
                .protocol(ProtocolEnum::Http)
                .port(80)
                .vpc_id(vpc)
                .target_type(TargetTypeEnum::Instance)
                .send(),
        )
        .expect("create a target group by hand");
        out.target_groups()[0]
            .target_group_arn()
            .expect("target group ARN")
            .to_owned()
    }

    /// An Auto Scaling group greenlight did not make, attached to nothing.
    fn create_foreign_group(&self, seeded: &Seeded, name: &str) {
        let subnets: Vec<&str> = seeded.info["subnet_ids"]
            .as_array()
            .expect("subnet_ids")
            .iter()
            .map(|v| v.as_str().expect("subnet id"))
            .collect();
        block_on(
            self.asg
                .create_auto_scaling_group()
                .auto_scaling_group_name(name)
                .launch_template(
                    aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                        .launch_template_id(seeded.str("launch_template_id"))
                        .version("1")
                        .build(),
                )
                .min_size(0)
                .max_size(0)
                .desired_capacity(0)
                .vpc_zone_identifier(subnets.join(","))
                .send(),
        )
        .expect("create a group by hand");
    }

    /// The service's lock, as another runner on another host holds it for the next hour.
    fn create_foreign_lock(&self, service: &str) {
        let now = SystemTime::now();
        let tags = [
            ("greenlight:lock", service.to_owned()),
            ("greenlight:lock-holder", "someone@elsewhere".into()),
            ("greenlight:lock-host", "elsewhere".into()),
            ("greenlight:lock-pid", "1".into()),
            ("greenlight:lock-token", "x".into()),
            ("greenlight:lock-command", "deploy".into()),
            (
                "greenlight:lock-acquired-at",
                humantime::format_rfc3339_seconds(now).to_string(),
            ),
            (
                "greenlight:lock-expires-at",
                humantime::format_rfc3339_seconds(now + Duration::from_secs(3600)).to_string(),
            ),
        ];
        let name = format!("greenlight-lock.{service}");
        block_on(
            self.ec2
                .create_launch_template()
                .launch_template_name(&name)
                .launch_template_data(
                    RequestLaunchTemplateData::builder()
                        .tag_specifications(
                            LaunchTemplateTagSpecificationRequest::builder()
                                .resource_type(ResourceType::Instance)
                                .tags(
                                    Tag::builder()
                                        .key("greenlight:launched-from-lock")
                                        .value(&name)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::LaunchTemplate)
                        .set_tags(Some(
                            tags.iter()
                                .map(|(k, v)| Tag::builder().key(*k).value(v).build())
                                .collect(),
                        ))
                        .build(),
                )
                .send(),
        )
        .expect("create the lock by hand");
    }
}

/// A config edit: the seeded service and its config text in, the broken config out.
type Edit = Box<dyn Fn(&Seeded, &str) -> String>;
/// Breaks AWS by hand before the case runs (on a service seeded for this case alone).
type Setup = Box<dyn Fn(&Session, &Aws, &Seeded)>;

enum Config {
    Seeded,
    Edited(Edit),
    Missing,
}

struct Case {
    name: &'static str,
    /// `{service}`, `{image0}`, `{image1}` are filled in from the seeded service.
    args: Vec<String>,
    config: Config,
    /// Set (Some) or remove (None) environment variables; values are filled in like `args`.
    env: Vec<(&'static str, Option<String>)>,
    /// Runs on a service seeded for this case alone.
    setup: Option<Setup>,
    code: i32,
    /// Substrings of the one stderr line (filled in like `args`): the problem and the fix.
    expect: Vec<String>,
    forbid: Vec<&'static str>,
    max_len: Option<usize>,
    /// Mutating calls the case may make although it changes nothing, each with its reason.
    allowed_mutations: Vec<&'static str>,
    /// Whether to run it again with `--output json` (not when the case is a bad --output).
    json: bool,
    /// A bug in greenlight this case shows: it runs (and is reported) in the main test without
    /// failing it, and fails [`known_bugs`] until the bug is fixed.
    bug: Option<&'static str>,
}

const DEPLOY: [&str; 5] = ["deploy", "--release", "v2", "--image-id", "{image1}"];

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        config: Config::Seeded,
        env: Vec::new(),
        setup: None,
        code: 2,
        expect: Vec::new(),
        forbid: Vec::new(),
        max_len: None,
        allowed_mutations: Vec::new(),
        json: true,
        bug: None,
    }
}

/// A deploy with a broken config.
fn config(name: &'static str, edit: impl Fn(&Seeded, &str) -> String + 'static) -> Case {
    case(name, &DEPLOY).edit(edit)
}

impl Case {
    fn edit(mut self, edit: impl Fn(&Seeded, &str) -> String + 'static) -> Case {
        self.config = Config::Edited(Box::new(edit));
        self
    }
    fn env(mut self, key: &'static str, value: Option<&str>) -> Case {
        self.env.push((key, value.map(str::to_owned)));
        self
    }
    fn setup(mut self, setup: impl Fn(&Session, &Aws, &Seeded) + 'static) -> Case {
        self.setup = Some(Box::new(setup));
        self
    }
    fn code(mut self, code: i32) -> Case {
        self.code = code;
        self
    }
    fn expect(mut self, expect: &[&'static str]) -> Case {
        self.expect = expect.iter().map(|e| (*e).to_owned()).collect();
        self
    }
    fn forbid(mut self, forbid: &[&'static str]) -> Case {
        self.forbid = forbid.to_vec();
        self
    }
}

/// Replaces `from` (which must occur) with `to`.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the config has no {from:?}:\n{text}");
    text.replace(from, to)
}

/// Puts a top-level key first, before any table.
fn top(line: &'static str) -> impl Fn(&Seeded, &str) -> String {
    move |_, text| format!("{line}\n{text}")
}

fn append(block: &'static str) -> impl Fn(&Seeded, &str) -> String {
    move |_, text| format!("{text}\n{block}\n")
}

fn replace(from: &'static str, to: &'static str) -> impl Fn(&Seeded, &str) -> String {
    move |_, text| replaced(text, from, to)
}

fn without_line(text: &str, prefix: &str) -> String {
    assert!(
        text.lines().any(|l| l.starts_with(prefix)),
        "the config has no line {prefix:?}"
    );
    text.lines()
        .filter(|l| !l.starts_with(prefix))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Another id of the same form: the last hex digit changed.
fn other_id(arn: &str) -> String {
    let (head, last) = arn.split_at(arn.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

fn fill(text: &str, seeded: &Seeded) -> String {
    text.replace("{service}", &seeded.service)
        .replace("{image0}", &seeded.image(0))
        .replace("{image1}", &seeded.image(1))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn cases(closed_port: u16, empty_aws_config: &Path) -> Vec<Case> {
    let empty_aws_config = empty_aws_config.display().to_string();
    let canary_steps = "[canary]\nsteps = [{ weight = 10, pause = \"5m\" }, { weight = 100 }]";
    let endpoint = format!("http://127.0.0.1:{closed_port}");
    vec![
        // --- the config file -------------------------------------------------------------------
        case("config file missing", &DEPLOY)
            .expect(&["not found", "--config"])
            .config_missing(),
        config("malformed TOML", append("[router")).expect(&["config ", "line "]),
        config("unknown top-level key", top("colour = \"blue\""))
            .expect(&["unknown field `colour`", "expected one of"]),
        config(
            "unknown key in [health]",
            replace("[health]\n", "[health]\ntimout = \"1m\"\n"),
        )
        .expect(&["unknown field `timout`", "expected `timeout` or `interval`"]),
        config(
            "unknown key in [canary]",
            append("[canary]\nsteps = [{ weight = 100 }]\nstep = 10"),
        )
        .expect(&["unknown field `step`", "expected"]),
        config(
            "unknown key in a [canary] step",
            append("[canary]\nsteps = [{ weight = 100, wait = \"5m\" }]"),
        )
        .expect(&["unknown field `wait`", "expected"]),
        config("missing service", |_, text| without_line(text, "service ="))
            .expect(&["missing field `service`"]),
        config("bad service name", |s, text| {
            replaced(
                text,
                &format!("service = \"{}\"", s.service),
                "service = \"check out\"",
            )
        })
        .expect(&["service \"check out\"", "contains ' '", "use letters"]),
        // --- durations -------------------------------------------------------------------------
        config(
            "duration \"soon\"",
            replace("timeout = \"2m\"", "timeout = \"soon\""),
        )
        .expect(&["[health] timeout", "is not a duration", "write e.g."]),
        config(
            "duration \"0s\"",
            replace("interval = \"200ms\"", "interval = \"0s\""),
        )
        .expect(&["[health] interval", "longer than zero"]),
        config("duration \"400d\"", append("[lock]\nttl = \"400d\""))
            .expect(&["[lock] ttl", "longer than a year", "at most"]),
        config(
            "duration \"580000000000y\"",
            replace("timeout = \"2m\"", "timeout = \"580000000000y\""),
        )
        .expect(&["[health] timeout", "580000000000y"]),
        config(
            "keep_warm absurd (1000000y)",
            replace("keep_warm = \"1h\"", "keep_warm = \"1000000y\""),
        )
        .expect(&["[retention] keep_warm", "longer than a year", "at most"]),
        config(
            "keep_warm overflowing u64 seconds",
            replace(
                "keep_warm = \"1h\"",
                "keep_warm = \"18446744073709551616s\"",
            ),
        )
        .expect(&["[retention] keep_warm", "is not a duration"]),
        config(
            "canary pause \"580000000000y\"",
            append(
                "[canary]\nsteps = [{ weight = 10, pause = \"580000000000y\" }, { weight = 100 }]",
            ),
        )
        .expect(&["steps[1] pause", "580000000000y"]),
        config(
            "canary stickiness longer than ELB allows",
            append("[canary]\nsteps = [{ weight = 100 }]\nstickiness = \"30d\""),
        )
        .expect(&["stickiness", "7d"]),
        // --- the canary plan -------------------------------------------------------------------
        config(
            "weight 101",
            append("[canary]\nsteps = [{ weight = 10 }, { weight = 101 }]"),
        )
        .expect(&["weight = 101", "outside 0 to 100"]),
        config(
            "weight -1",
            append("[canary]\nsteps = [{ weight = -1 }, { weight = 100 }]"),
        )
        .expect(&["weight = -1", "outside 0 to 100"]),
        config(
            "weights not increasing",
            append("[canary]\nsteps = [{ weight = 50 }, { weight = 10 }, { weight = 100 }]"),
        )
        .expect(&["does not increase", "strictly increase"]),
        config(
            "weights not ending at 100",
            append("[canary]\nsteps = [{ weight = 10 }, { weight = 50 }]"),
        )
        .expect(&["ends at weight 50", "must be weight 100"]),
        config(
            "a pause on the last step",
            append(
                "[canary]\nsteps = [{ weight = 10, pause = \"5m\" }, { weight = 100, pause = \"5m\" }]",
            ),
        )
        .expect(&["last step", "remove that pause"]),
        config(
            "a 0 weight after the first step",
            append("[canary]\nsteps = [{ weight = 10 }, { weight = 0 }, { weight = 100 }]"),
        )
        .expect(&["weight 0"]),
        config("strategy = \"rolling\"", top("strategy = \"rolling\""))
            .expect(&["\"rolling\"", "\"bluegreen\" or \"canary\""]),
        config(
            "strategy = \"canary\" without [canary]",
            top("strategy = \"canary\""),
        )
        .expect(&["needs [canary] steps", "e.g. steps"]),
        case(
            "--strategy canary without [canary]",
            &[&DEPLOY[..], &["--strategy", "canary"]].concat(),
        )
        .expect(&["--strategy canary", "[canary] steps"]),
        case(
            "--strategy rolling",
            &[&DEPLOY[..], &["--strategy", "rolling"]].concat(),
        )
        .expect(&["rolling", "bluegreen", "canary"]),
        config("canary on an NLB listener", move |s, text| {
            let text = replaced(text, "listener/app/", "listener/net/");
            format!(
                "strategy = \"canary\"\n{text}\n{canary_steps}\n{}",
                nlb_test_listener(s)
            )
        })
        .expect(&["Network Load Balancer", "bluegreen"]),
        case(
            "--strategy canary on an NLB listener",
            &[&DEPLOY[..], &["--strategy", "canary"]].concat(),
        )
        .edit(move |s, text| {
            let text = replaced(text, "listener/app/", "listener/net/");
            format!("{text}\n{canary_steps}\n{}", nlb_test_listener(s))
        })
        .expect(&["Network Load Balancer", "bluegreen"]),
        config("an NLB listener without a test listener", move |_, text| {
            replaced(text, "listener/app/", "listener/net/")
        })
        .expect(&["Network Load Balancer", "[test_traffic] listener_arn"]),
        // --- the router and its target groups --------------------------------------------------
        config("a target group ARN as listener_arn", |s, text| {
            replaced(text, &s.str("listener_arn"), &s.target_group(0))
        })
        .expect(&["is not a listener ARN", "expected arn:aws:elasticloadbalancing"]),
        config("both listener_arn and rule_arn", |s, text| {
            let listener = s.str("listener_arn");
            let rule = format!(
                "{}/0123456789abcdef",
                listener.replace(":listener/", ":listener-rule/")
            );
            replaced(
                text,
                "[router]\n",
                &format!("[router]\nrule_arn = \"{rule}\"\n"),
            )
        })
        .expect(&["both listener_arn and rule_arn", "keep the one"]),
        config(
            "ARNs in eu-west-1, AWS_REGION=us-east-1, no region in config",
            |_, text| without_line(text, "region =").replace("us-east-1", "eu-west-1"),
        )
        .env("AWS_REGION", Some("us-east-1"))
        .expect(&["us-east-1", "eu-west-1", "region = \"eu-west-1\""]),
        config(
            "region = \"eu-west-1\" in config, ARNs in us-east-1",
            replace("region = \"us-east-1\"", "region = \"eu-west-1\""),
        )
        .expect(&["is in us-east-1 but region = \"eu-west-1\"", "make them agree"]),
        case(
            "--region eu-west-1, ARNs in us-east-1",
            &[&DEPLOY[..], &["--region", "eu-west-1"]].concat(),
        )
        .expect(&["eu-west-1", "us-east-1", "--region us-east-1"]),
        config(
            "no region anywhere, ARNs in eu-west-1 (resources are in us-east-1)",
            |_, text| without_line(text, "region =").replace("us-east-1", "eu-west-1"),
        )
        .env("AWS_REGION", None)
        .env("AWS_DEFAULT_REGION", None)
        .expect(&["not found", "region"]),
        config("ARNs of another account", |_, text| {
            replaced(text, ":123456789012:", ":210987654321:")
        })
        .expect(&["210987654321", "not found", "check the ARN"]),
        config("missing listener", |s, text| {
            let listener = s.str("listener_arn");
            replaced(text, &listener, &other_id(&listener))
        })
        .expect(&["listener_arn", "was not found", "check the ARN"]),
        config("missing rule", |s, text| {
            let listener = s.str("listener_arn");
            let rule = format!(
                "{}/0123456789abcdef",
                listener.replace(":listener/", ":listener-rule/")
            );
            replaced(
                text,
                &format!("listener_arn = \"{listener}\""),
                &format!("rule_arn = \"{rule}\""),
            )
        })
        .expect(&["rule_arn", "was not found", "check the ARN"]),
        config("missing target group", |s, text| {
            let tg = s.target_group(1);
            replaced(text, &tg, &other_id(&tg))
        })
        .expect(&["target group b", "was not found", "check the ARN"]),
        config("the same target group twice", |s, text| {
            replaced(text, &s.target_group(1), &s.target_group(0))
        })
        .expect(&["same target group twice"]),
        config("only one target group", |s, text| {
            replaced(text, &format!(", \"{}\"", s.target_group(1)), "")
        })
        .expect(&["lists 1 target groups", "list exactly two"]),
        // --- the release -----------------------------------------------------------------------
        case(
            "nonexistent AMI",
            &["deploy", "--release", "v2", "--image-id", "ami-0000000000000dead"],
        )
        .expect(&["ami-0000000000000dead", "not found", "--image-id"]),
        case(
            "malformed AMI id",
            &["deploy", "--release", "v2", "--image-id", "ami-xyz"],
        )
        .expect(&["\"ami-xyz\"", "is not an AMI id", "ami- followed by"]),
        case(
            "nonexistent launch template version",
            &["deploy", "--release", "v2", "--launch-template-version", "99"],
        )
        .expect(&["no version 99", "--launch-template-version"]),
        case(
            "--launch-template-version 0",
            &["deploy", "--release", "v2", "--launch-template-version", "0"],
        )
        .expect(&["--launch-template-version", "1 or more"]),
        case(
            "both --image-id and --launch-template-version",
            &[&DEPLOY[..], &["--launch-template-version", "1"]].concat(),
        )
        .expect(&["--image-id", "--launch-template-version", "cannot be used with"]),
        case(
            "neither --image-id nor --launch-template-version",
            &["deploy", "--release", "v2"],
        )
        .expect(&["--image-id", "--launch-template-version", "required"]),
        case(
            "release with a space",
            &["deploy", "--release", "v 2", "--image-id", "{image1}"],
        )
        .expect(&["release \"v 2\"", "contains ' '", "use letters"]),
        case(
            "release with a slash",
            &["deploy", "--release", "v2/beta", "--image-id", "{image1}"],
        )
        .expect(&["release \"v2/beta\"", "contains '/'", "use letters"]),
        case(
            "release too long for a fleet name",
            &[
                "deploy",
                "--release",
                &"r".repeat(65),
                "--image-id",
                "{image1}",
            ],
        )
        .expect(&["release", "1 to 64 characters"]),
        case(
            "release starting with '-'",
            &["deploy", "--release=-v2", "--image-id", "{image1}"],
        )
        .expect(&["release \"-v2\"", "must not start with '-'"]),
        case(
            "release whose fleet name is taken by a group that is not greenlight's",
            &["deploy", "--release", "v9", "--image-id", "{image1}"],
        )
        .setup(|_, aws, seeded| aws.create_foreign_group(seeded, &seeded.fleet("v9")))
        .expect(&[
            "{service}-v9",
            "already exists",
            "not a greenlight release",
            "another --release",
        ]),
        // --- AWS state greenlight will not act on (exit 5) -------------------------------------
        case("router forwarding to neither slot (exit 5)", &DEPLOY)
            .setup(|_, aws, seeded| {
                let vpc = seeded.str("vpc_id");
                let third = aws.create_target_group(&format!("{}-c", seeded.service), &vpc);
                aws.forward(&seeded.str("listener_arn"), &[(third, 1)]);
            })
            .code(5)
            .expect(&["{service}-c", "not one of the two", "target_groups"]),
        case("both slots live, a 50/50 split made by hand (exit 5)", &DEPLOY)
            .setup(|_, aws, seeded| {
                aws.forward(
                    &seeded.str("listener_arn"),
                    &[(seeded.target_group(0), 50), (seeded.target_group(1), 50)],
                );
            })
            .code(5)
            .expect(&["splits traffic between both slots", "Route all traffic to one slot"]),
        case("rollback --to an unknown release (exit 5)", &["rollback", "--to", "v7"])
            .setup(|session, _, seeded| {
                let out = session
                    .greenlight(&seeded.config)
                    .args(["deploy", "--release", "v2", "--image-id", &seeded.image(1)])
                    .output()
                    .expect("run deploy");
                assert!(
                    out.status.success(),
                    "setup deploy failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            })
            .code(5)
            .expect(&["release v7 is not warm", "release {service}-blue (warm)"]),
        case("rollback with nothing to roll back to (exit 5)", &["rollback"])
            .code(5)
            .expect(&["nothing to roll back to", "deploy the previous build"]),
        case("rollback --to an invalid release name", &["rollback", "--to", "v 7"])
            .expect(&["release \"v 7\"", "contains ' '"]),
        case("promote with nothing in progress (exit 5)", &["promote"])
            .code(5)
            .expect(&["nothing to promote", "no release is in progress"]),
        // --- the lock (exit 4) -----------------------------------------------------------------
        case("a service locked by another runner (exit 4)", &DEPLOY)
            .setup(|_, aws, seeded| aws.create_foreign_lock(&seeded.service))
            .code(4)
            .expect(&["someone@elsewhere", "pid 1", "unlock --force"])
            .allow_mutation(
                // The lock is a conditional create: trying to take it is how a runner finds it
                // taken. The attempt fails and changes nothing (checked by the fingerprint).
                "ec2:CreateLaunchTemplate",
            ),
        // --- the command line ------------------------------------------------------------------
        case("unlock without --force", &["unlock"]).expect(&["--force"]),
        case("unknown subcommand", &["deploi"]).expect(&["deploi", "greenlight --help"]),
        case("--output xml", &["status", "--output", "xml"])
            .expect(&["xml", "human", "json"])
            .no_json(),
        // --- credentials and endpoint ----------------------------------------------------------
        case("missing credentials", &DEPLOY)
            .env("AWS_ACCESS_KEY_ID", None)
            .env("AWS_SECRET_ACCESS_KEY", None)
            .env("AWS_SESSION_TOKEN", None)
            .env("AWS_CONFIG_FILE", Some(&empty_aws_config))
            .expect(&["credentials", "AWS_ACCESS_KEY_ID"])
            .max_len(300),
        case("missing credentials with AWS_PROFILE=nope", &DEPLOY)
            .env("AWS_ACCESS_KEY_ID", None)
            .env("AWS_SECRET_ACCESS_KEY", None)
            .env("AWS_SESSION_TOKEN", None)
            .env("AWS_CONFIG_FILE", Some(&empty_aws_config))
            .env("AWS_PROFILE", Some("nope"))
            .expect(&["nope"])
            .forbid(&["set AWS_PROFILE"])
            .max_len(300),
        case(
            "missing credentials with --profile nope",
            &[&DEPLOY[..], &["--profile", "nope"]].concat(),
        )
        .env("AWS_ACCESS_KEY_ID", None)
        .env("AWS_SECRET_ACCESS_KEY", None)
        .env("AWS_SESSION_TOKEN", None)
        .env("AWS_CONFIG_FILE", Some(&empty_aws_config))
        .expect(&["nope"])
        .forbid(&["set AWS_PROFILE"])
        .max_len(300),
        case("unreachable endpoint (exit 1)", &DEPLOY)
            .env("AWS_ENDPOINT_URL", Some(&endpoint))
            .code(1)
            .expect_owned(format!("127.0.0.1:{closed_port}")),
    ]
}

impl Case {
    fn config_missing(mut self) -> Case {
        self.config = Config::Missing;
        self
    }
    fn max_len(mut self, len: usize) -> Case {
        self.max_len = Some(len);
        self
    }
    fn allow_mutation(mut self, call: &'static str) -> Case {
        self.allowed_mutations.push(call);
        self
    }
    fn no_json(mut self) -> Case {
        self.json = false;
        self
    }
    /// An expected substring known only at run time.
    fn expect_owned(mut self, text: String) -> Case {
        self.expect.push(text);
        self
    }
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs one case (human, then JSON output) and returns what is wrong with the outcome.
fn run_case(s: &Session, aws: &Aws, seeded: &Seeded, case: &Case, dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let config: PathBuf = match &case.config {
        Config::Seeded => seeded.config.clone(),
        Config::Missing => dir.join("no-such-dir/greenlight.toml"),
        Config::Edited(edit) => {
            let original = std::fs::read_to_string(&seeded.config).expect("seeded config");
            let edited = edit(seeded, &original);
            assert_ne!(edited, original, "{}: the edit changed nothing", case.name);
            let path = dir.join(format!(
                "{}.toml",
                case.name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect::<String>()
            ));
            std::fs::write(&path, edited).expect("write the edited config");
            path
        }
    };
    let args: Vec<String> = case.args.iter().map(|a| fill(a, seeded)).collect();
    let expect: Vec<String> = case.expect.iter().map(|e| fill(e, seeded)).collect();
    let formats: &[bool] = if case.json { &[false, true] } else { &[false] };
    for &json in formats {
        let label = if json { "--output json" } else { "human" };
        let before = aws.fingerprint(seeded);
        let mark = s.request_mark();
        let mut cmd = s.greenlight(&config);
        for (key, value) in &case.env {
            match value {
                Some(value) => cmd.env(key, fill(value, seeded)),
                None => cmd.env_remove(key),
            };
        }
        cmd.args(&args);
        if json {
            cmd.args(["--output", "json"]);
        }
        let out = cmd.output().expect("run greenlight");
        let mut mutations = s.mutations_since(mark);
        for allowed in &case.allowed_mutations {
            if let Some(at) = mutations.iter().position(|m| m == allowed) {
                mutations.remove(at);
            }
        }
        let after = aws.fingerprint(seeded);
        let err = stderr(&out);
        let mut problem = |what: String| problems.push(format!("[{label}] {what}"));

        if out.status.code() != Some(case.code) {
            problem(format!(
                "exit code {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        if err.lines().count() != 1 {
            problem(format!(
                "stderr has {} lines, expected one: {err:?}",
                err.lines().count()
            ));
        }
        let line = err.lines().next().unwrap_or_default();
        for e in &expect {
            if !line.contains(e.as_str()) {
                problem(format!("stderr does not name {e:?}: {line}"));
            }
        }
        for f in &case.forbid {
            if line.contains(f) {
                problem(format!("stderr says {f:?}: {line}"));
            }
        }
        for bad in ["panicked", "Usage:", "RUST_BACKTRACE"] {
            if err.contains(bad) {
                problem(format!("stderr contains {bad:?}: {err}"));
            }
        }
        if let Some(max) = case.max_len
            && line.len() >= max
        {
            problem(format!(
                "stderr line is {} characters, expected fewer than {max}: {line}",
                line.len()
            ));
        }
        if json {
            let text = stdout(&out);
            let events: Vec<Result<Value, _>> =
                text.lines().map(serde_json::from_str::<Value>).collect();
            if events.iter().any(Result::is_err) {
                problem(format!("stdout has a line that is not JSON: {text}"));
            }
            match events.last() {
                Some(Ok(last)) => {
                    if last["event"] != "error" || last["exit_code"] != case.code {
                        problem(format!(
                            "last stdout line is not {{\"event\":\"error\",\"exit_code\":{}}}: {last}",
                            case.code
                        ));
                    }
                    match last["message"].as_str() {
                        Some(message) if !message.is_empty() && line.contains(message) => {}
                        _ => problem(format!(
                            "the error event's message is not the stderr line: {last} vs {line}"
                        )),
                    }
                    // Structured too: each reason's code is one its exit code can have.
                    let allowed: &[&str] = match case.code {
                        2 => &["bad_input", "config", "usage", "twin", "aws"],
                        4 => &["locked", "busy"],
                        5 => &["needs_attention", "aws"],
                        _ => &["aws", "internal"],
                    };
                    let reasons = last["reasons"].as_array().cloned().unwrap_or_default();
                    if reasons.is_empty()
                        || !reasons.iter().all(|r| {
                            r["code"].as_str().is_some_and(|c| allowed.contains(&c))
                                && r["description"].as_str().is_some_and(|d| !d.is_empty())
                        })
                    {
                        problem(format!(
                            "the error event's reasons are not {{code in {allowed:?}, \
                             description}}: {last}"
                        ));
                    }
                }
                _ => problem(format!("no JSON error event on stdout: {text:?}")),
            }
        }
        if !mutations.is_empty() {
            problem(format!("mutating AWS calls: {mutations:?}"));
        }
        if after != before {
            problem(format!(
                "AWS changed:\n--- before\n{before}\n--- after\n{after}"
            ));
        }
        eprintln!(
            "  {} [{label}] exit {:?}: {}",
            case.name,
            out.status.code(),
            line
        );
    }
    problems
}

/// One case's outcome: its name, its bug marker, what is wrong, and how long it took.
struct Outcome {
    name: &'static str,
    bug: Option<&'static str>,
    problems: Vec<String>,
    took: Duration,
}

/// Runs the cases `which` selects. Cases that leave the seeded service alone share one; a case
/// with a setup gets a service of its own.
fn run_table(s: &Session, which: impl Fn(&Case) -> bool) -> Vec<Outcome> {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty_aws_config = dir.path().join("empty-aws-config");
    std::fs::write(&empty_aws_config, "").expect("write an empty AWS config");
    let cases = cases(closed_port(), &empty_aws_config);
    let total = cases.len();
    let bugs = cases.iter().filter(|c| c.bug.is_some()).count();
    eprintln!("bad input: {total} cases ({bugs} showing known bugs)");
    assert!(
        total - bugs >= 30,
        "only {} bad-input cases without a known bug; the table needs at least 30",
        total - bugs
    );
    let aws = Aws::new(s);
    let mut shared: Option<Seeded> = None;
    let mut outcomes = Vec::new();
    for (n, case) in cases.iter().enumerate().filter(|(_, c)| which(c)) {
        let started = std::time::Instant::now();
        let problems = match &case.setup {
            None => {
                let seeded = shared.get_or_insert_with(|| s.seed("badin", &[]));
                run_case(s, &aws, seeded, case, dir.path())
            }
            Some(setup) => {
                let own = s.seed(&format!("badin-{n}"), &[]);
                setup(s, &aws, &own);
                run_case(s, &aws, &own, case, dir.path())
            }
        };
        outcomes.push(Outcome {
            name: case.name,
            bug: case.bug,
            problems,
            took: started.elapsed(),
        });
    }
    eprintln!();
    for o in &outcomes {
        let verdict = match (o.problems.is_empty(), o.bug) {
            (true, None) => "pass",
            (false, None) => "FAIL",
            (false, Some(_)) => "FAIL (known bug)",
            (true, Some(_)) => "pass (marked as a bug: remove the marker)",
        };
        eprintln!("{verdict:>10} {:>6.1?}  {}", o.took, o.name);
    }
    outcomes
}

fn report(outcomes: &[&Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            format!(
                "{}{}:\n    {}",
                o.name,
                o.bug.map(|b| format!(" ({b})")).unwrap_or_default(),
                o.problems.join("\n    ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    let s = session();
    if !s.emulator.hooks {
        // The request log that proves no mutating call was made is an emulator hook.
        eprintln!("skipped: needs greenlight's emulator (request log)");
        return;
    }
    let started = std::time::Instant::now();
    // The cases showing known bugs run too, so one run shows every problem; they fail
    // `known_bugs` instead of this test.
    let outcomes = run_table(&s, |_| true);
    eprintln!(
        "bad input: {} cases in {:.1?}",
        outcomes.len(),
        started.elapsed()
    );
    let known: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.bug.is_some() && !o.problems.is_empty())
        .collect();
    if !known.is_empty() {
        eprintln!("known bugs, still there:\n{}", report(&known));
    }
    let failures: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.bug.is_none() && !o.problems.is_empty())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        outcomes.len(),
        report(&failures)
    );
}

#[test]
#[ignore = "the emulator accepts any credentials"]
fn expired_credentials_are_bad_input_in_one_line() {
    let s = session();
    let seeded = s.seed("expired", &[]);
    let mark = s.emulator.hooks.then(|| s.request_mark());
    let out = s
        .greenlight(&seeded.config)
        .env("AWS_ACCESS_KEY_ID", "ASIAEXPIREDEXAMPLE00")
        .env("AWS_SECRET_ACCESS_KEY", "expired")
        .env("AWS_SESSION_TOKEN", "expired-session-token")
        .args(["deploy", "--release", "v2", "--image-id", &seeded.image(1)])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("expired") || err.contains("Expired"), "{err}");
    if let Some(mark) = mark {
        assert_eq!(s.mutations_since(mark), Vec::<String>::new());
    }
}

/// A `[test_traffic]` table naming another listener of the seeded load balancer, spelled as a
/// Network Load Balancer's.
fn nlb_test_listener(s: &Seeded) -> String {
    let listener = s
        .str("listener_arn")
        .replace("listener/app/", "listener/net/");
    let (load_balancer, _) = listener.rsplit_once('/').expect("a listener ARN");
    format!("[test_traffic]\nlistener_arn = \"{load_balancer}/0123456789abcdef\"\n")
}
