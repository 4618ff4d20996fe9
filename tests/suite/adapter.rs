//! `AwsCloud` against the test binary's emulator (moto with greenlight's fidelity layer), with
//! moto's request recorder on, so the tests can assert exactly which requests the adapter sent.
//!
//! Each scenario is an `async fn(endpoint: &str)` that creates its own resources under a unique
//! prefix and runs in order while holding the emulator. On an external endpoint (LocalStack),
//! which has no recorder, they run against a stock moto_server of their own instead. moto gaps
//! are worked around here, never in the adapter, and noted where they are.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::slice;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_autoscaling::types as asg;
use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::types as cw;
use aws_sdk_ec2::types as ec2;
use aws_sdk_elasticloadbalancingv2::types as elb;
use greenlight::aws::AwsCloud;
use greenlight::core::analysis::{AlarmState, AlarmValue, MetricWindow, firing};
use greenlight::core::cloud::{Cloud, CloudErrorKind, ROUTER_CHANGED};
use greenlight::core::fleet::{
    Capacity, FleetConfig, FleetLaunch, FleetTag, InstanceOverride, InstancesDistribution,
    LaunchTemplateRef, LifecycleHook, MaintenancePolicy, MetricsCollection, MixedInstances,
};
use greenlight::core::health::TargetState;
use greenlight::core::names::{
    FleetName, ImageId, ListenerArn, RuleArn, ServiceName, TargetGroupArn,
};
use greenlight::core::router::{Forward, RouterAction, RouterId, RouterWrite, Stickiness, Weight};
use greenlight::core::test_traffic::{self, ListenerRule, RuleCondition, rule_tags};

const REGION: &str = "us-east-1";

// ---------------------------------------------------------------------------------------------
// The emulator and its recorder

/// A moto_server on a free loopback port, killed when dropped (also when a scenario panics).
struct Moto {
    child: Child,
    addr: SocketAddr,
    _recording: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        let program = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| super::harness::venv().join("bin/moto_server"));
        let addr = free_port();
        let recording = tempfile::tempdir().expect("temp dir");
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            // The recorder writes here; the default is the working directory.
            .env(
                "MOTO_RECORDER_FILEPATH",
                recording.path().join("recording.jsonl"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut moto = Moto {
            child,
            addr,
            _recording: recording,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(addr, "GET", "/moto-api/data.json").is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited at start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (a moment ago).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address")
}

/// One HTTP/1.0 request to moto's own API; the body of a 2xx answer.
fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head.starts_with("HTTP/1.0 2") && !head.starts_with("HTTP/1.1 2") {
        return Err(std::io::Error::other(format!("{method} {path}: {head}")));
    }
    Ok(body.to_owned())
}

/// One AWS request moto received: its action, and its form parameters (query protocol) or its
/// JSON document (JSON 1.0, i.e. X-Amz-Target).
///
/// CloudWatch requests reach moto as JSON 1.0: the emulator's CBOR layer decodes the Rust
/// SDK's Smithy RPC v2 CBOR, converts it member by member and re-dispatches it, so `json` is
/// what the adapter sent, in JSON's spelling.
#[derive(Debug)]
struct Recorded {
    action: String,
    params: BTreeMap<String, String>,
    json: serde_json::Value,
}

/// Records the requests moto receives while `f` runs.
async fn record<F: Future>(endpoint: &str, f: F) -> (F::Output, Vec<Recorded>) {
    let addr: SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("endpoint is http://ip:port");
    http(addr, "POST", "/moto-api/recorder/reset-recording").expect("reset recording");
    http(addr, "POST", "/moto-api/recorder/start-recording").expect("start recording");
    let out = f.await;
    http(addr, "POST", "/moto-api/recorder/stop-recording").expect("stop recording");
    let log = http(addr, "GET", "/moto-api/recorder/download-recording").expect("download");
    let requests = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("recording line");
            let body = entry["body"].as_str().unwrap_or_default();
            let body = if entry["body_encoded"].as_bool() == Some(true) {
                String::from_utf8(base64_decode(body)).expect("utf-8 body")
            } else {
                body.to_owned()
            };
            if let Some(target) = entry["headers"]["X-Amz-Target"].as_str() {
                return Recorded {
                    action: target.rsplit('.').next().unwrap_or_default().to_owned(),
                    params: BTreeMap::new(),
                    json: serde_json::from_str(&body).expect("a JSON 1.0 body"),
                };
            }
            let params: BTreeMap<String, String> = body
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (form_decode(k), form_decode(v)))
                .collect();
            Recorded {
                action: params.get("Action").cloned().unwrap_or_default(),
                params,
                json: serde_json::Value::Null,
            }
        })
        .collect();
    (out, requests)
}

fn actions(requests: &[Recorded]) -> Vec<&str> {
    requests.iter().map(|r| r.action.as_str()).collect()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    bytes
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, v)| n | u32::from(*v) << (18 - 6 * i));
            let [_, a, b, c] = n.to_be_bytes();
            [a, b, c].into_iter().take(chunk.len() - 1)
        })
        .collect()
}

fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("percent escape"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 form value")
}

// ---------------------------------------------------------------------------------------------
// Fixtures

async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

fn unique(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("t{}-{kind}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A VPC with two subnets, an ALB with an HTTP listener forwarding to target group `a`, a
/// second group `b`, a launch template, and clients to build more.
struct World {
    cloud: AwsCloud,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    asg: aws_sdk_autoscaling::Client,
    vpc: String,
    subnets: Vec<String>,
    lb: String,
    a: TargetGroupArn,
    b: TargetGroupArn,
    listener: ListenerArn,
    image: String,
    template_id: String,
}

impl World {
    async fn new(endpoint: &str) -> World {
        let conf = sdk_config(endpoint).await;
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&conf);
        let asg = aws_sdk_autoscaling::Client::new(&conf);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let mut subnets = Vec::new();
        for (n, zone) in ["us-east-1a", "us-east-1b"].into_iter().enumerate() {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.0.{n}.0/24"))
                .availability_zone(zone)
                .send()
                .await
                .unwrap();
            subnets.push(subnet.subnet.unwrap().subnet_id.unwrap());
        }
        let lb = elb
            .create_load_balancer()
            .name(unique("lb"))
            .set_subnets(Some(subnets.clone()))
            .r#type(elb::LoadBalancerTypeEnum::Application)
            .send()
            .await
            .unwrap()
            .load_balancers()[0]
            .load_balancer_arn
            .clone()
            .unwrap();
        let world_tg = |name: String| {
            let elb = elb.clone();
            let vpc = vpc.clone();
            async move { target_group(&elb, &vpc, &name).await }
        };
        let a = world_tg(unique("a")).await;
        let b = world_tg(unique("b")).await;
        let listener = elb
            .create_listener()
            .load_balancer_arn(&lb)
            .protocol(elb::ProtocolEnum::Http)
            .port(80)
            .default_actions(
                elb::Action::builder()
                    .r#type(elb::ActionTypeEnum::Forward)
                    .target_group_arn(a.as_str())
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .listeners()[0]
            .listener_arn
            .clone()
            .unwrap();
        // moto ships a catalogue of public AMIs; any available one will do.
        let image = ec2
            .describe_images()
            .send()
            .await
            .unwrap()
            .images()
            .iter()
            .find(|i| i.state() == Some(&ec2::ImageState::Available))
            .and_then(|i| i.image_id.clone())
            .expect("moto has a public AMI");
        let template_id = ec2
            .create_launch_template()
            .launch_template_name(unique("lt"))
            .launch_template_data(
                ec2::RequestLaunchTemplateData::builder()
                    .image_id(&image)
                    .instance_type(ec2::InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .launch_template
            .unwrap()
            .launch_template_id
            .unwrap();
        World {
            cloud: AwsCloud::from_conf(&conf),
            elb,
            asg,
            vpc,
            subnets,
            lb,
            a,
            b,
            listener: ListenerArn::parse(&listener).unwrap(),
            image,
            template_id,
        }
    }

    /// A group launching from the world's template, attached to `target_groups`.
    async fn group(&self, name: &str, target_groups: &[&TargetGroupArn], desired: i32) {
        self.asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_id(&self.template_id)
                    .version("$Latest")
                    .build(),
            )
            .min_size(0)
            .max_size(4)
            .desired_capacity(desired)
            .vpc_zone_identifier(self.subnets.join(","))
            .set_target_group_arns(Some(
                target_groups
                    .iter()
                    .map(|t| t.as_str().to_owned())
                    .collect(),
            ))
            .health_check_type("ELB")
            .health_check_grace_period(120)
            .default_cooldown(60)
            .termination_policies("OldestLaunchTemplate")
            .termination_policies("Default")
            .new_instances_protected_from_scale_in(false)
            .capacity_rebalance(true)
            .tags(group_tag(name, "team", "payments", true))
            .tags(group_tag(name, "greenlight:service", "checkout", false))
            .send()
            .await
            .unwrap();
    }
}

async fn target_group(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    vpc: &str,
    name: &str,
) -> TargetGroupArn {
    let arn = elb
        .create_target_group()
        .name(name)
        .protocol(elb::ProtocolEnum::Http)
        .port(80)
        .vpc_id(vpc)
        .target_type(elb::TargetTypeEnum::Instance)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn
        .clone()
        .unwrap();
    TargetGroupArn::parse(&arn).unwrap()
}

fn group_tag(group: &str, key: &str, value: &str, propagate: bool) -> asg::Tag {
    asg::Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(key)
        .value(value)
        .propagate_at_launch(propagate)
        .build()
}

fn weights(pairs: &[(&TargetGroupArn, u16)]) -> Vec<Forward> {
    pairs
        .iter()
        .map(|(tg, w)| Forward {
            target_group: (*tg).clone(),
            weight: Weight::new(*w).unwrap(),
        })
        .collect()
}

/// A write of `pairs` to a router that forwards as `current` now.
async fn write(
    cloud: &AwsCloud,
    router: &RouterId,
    pairs: &[(&TargetGroupArn, u16)],
) -> RouterWrite {
    RouterWrite {
        expected: cloud.router(router).await.unwrap().forwards().to_vec(),
        forwards: weights(pairs),
        stickiness: Stickiness::Keep,
    }
}

fn forwarding(pairs: &[(&TargetGroupArn, u16)]) -> RouterAction {
    RouterAction::Forward {
        forwards: weights(pairs),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn router_reads_and_routes(endpoint: &str) {
    let w = World::new(endpoint).await;
    let listener = RouterId::Listener(w.listener.clone());

    // A plain TargetGroupArn forward reads as one target group with weight 1.
    let state = w.cloud.router(&listener).await.unwrap();
    assert_eq!(state.id, listener);
    assert_eq!(state.action, forwarding(&[(&w.a, 1)]));

    // A write that expects another forward than the router has is refused before any change:
    // checked against the adapter's own read of a moment ago (no call), or, by an adapter
    // that has not read it lately (`cold`: another process), against a new read.
    let stale = RouterWrite {
        expected: weights(&[(&w.b, 1)]),
        forwards: weights(&[(&w.a, 0), (&w.b, 100)]),
        stickiness: Stickiness::Keep,
    };
    let (refused, requests) = record(endpoint, async {
        w.cloud.router(&listener).await.unwrap();
        w.cloud.route(&listener, &stale).await
    })
    .await;
    let refused = refused.unwrap_err();
    assert_eq!(refused.kind, CloudErrorKind::Conflict, "{refused}");
    assert_eq!(refused.code.as_deref(), Some(ROUTER_CHANGED));
    assert_eq!(actions(&requests), ["DescribeListeners"]);
    let cold = AwsCloud::from_conf(&sdk_config(endpoint).await);
    let (refused, requests) = record(endpoint, cold.route(&listener, &stale)).await;
    assert_eq!(refused.unwrap_err().code.as_deref(), Some(ROUTER_CHANGED));
    assert_eq!(actions(&requests), ["DescribeListeners"]);

    // Right after its own read the write is the one call; a refused write forgot that read.
    let (routed, requests) = record(endpoint, async {
        let to_b = write(&w.cloud, &listener, &[(&w.a, 0), (&w.b, 100)]).await;
        assert!(w.cloud.route(&listener, &stale).await.is_err());
        w.cloud.route(&listener, &to_b).await
    })
    .await;
    assert_eq!(routed.unwrap(), weights(&[(&w.a, 0), (&w.b, 100)]));
    assert_eq!(
        actions(&requests),
        ["DescribeListeners", "DescribeListeners", "ModifyListener"]
    );
    let (routed, requests) = record(endpoint, async {
        let to_a = write(&w.cloud, &listener, &[(&w.a, 100), (&w.b, 0)]).await;
        w.cloud.route(&listener, &to_a).await
    })
    .await;
    assert_eq!(routed.unwrap(), weights(&[(&w.a, 100), (&w.b, 0)]));
    assert_eq!(actions(&requests), ["DescribeListeners", "ModifyListener"]);

    let to_b = write(&w.cloud, &listener, &[(&w.a, 0), (&w.b, 100)]).await;
    let (routed, requests) = record(endpoint, cold.route(&listener, &to_b)).await;
    // What AWS answered it now holds is returned, for the caller to compare.
    assert_eq!(routed.unwrap(), weights(&[(&w.a, 0), (&w.b, 100)]));
    assert_eq!(actions(&requests), ["DescribeListeners", "ModifyListener"]);
    let modify = &requests[1];
    assert!(
        !modify
            .params
            .contains_key("DefaultActions.member.1.TargetGroupArn"),
        "a weighted forward must not also name a single target group: {:?}",
        modify.params
    );
    assert_eq!(
        w.cloud.router(&listener).await.unwrap().action,
        forwarding(&[(&w.a, 0), (&w.b, 100)])
    );

    let back = write(&w.cloud, &listener, &[(&w.a, 1), (&w.b, 0)]).await;
    w.cloud.route(&listener, &back).await.unwrap();
    assert_eq!(
        w.cloud.router(&listener).await.unwrap().action,
        forwarding(&[(&w.a, 1), (&w.b, 0)])
    );

    // A rule with authentication in front of a sticky 90/10 forward: routing changes only the
    // weights.
    let rule = w
        .elb
        .create_rule()
        .listener_arn(w.listener.as_str())
        .priority(10)
        .conditions(
            elb::RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(
            elb::Action::builder()
                .r#type(elb::ActionTypeEnum::AuthenticateOidc)
                .order(1)
                .authenticate_oidc_config(
                    elb::AuthenticateOidcActionConfig::builder()
                        .issuer("https://idp.example.com")
                        .authorization_endpoint("https://idp.example.com/authorize")
                        .token_endpoint("https://idp.example.com/token")
                        .user_info_endpoint("https://idp.example.com/userinfo")
                        .client_id("checkout")
                        .client_secret("secret")
                        .build(),
                )
                .build(),
        )
        .actions(
            elb::Action::builder()
                .r#type(elb::ActionTypeEnum::Forward)
                .order(2)
                .forward_config(
                    elb::ForwardActionConfig::builder()
                        .target_groups(
                            elb::TargetGroupTuple::builder()
                                .target_group_arn(w.a.as_str())
                                .weight(90)
                                .build(),
                        )
                        .target_groups(
                            elb::TargetGroupTuple::builder()
                                .target_group_arn(w.b.as_str())
                                .weight(10)
                                .build(),
                        )
                        .target_group_stickiness_config(
                            elb::TargetGroupStickinessConfig::builder()
                                .enabled(true)
                                .duration_seconds(600)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn
        .clone()
        .unwrap();
    let rule = RouterId::Rule(RuleArn::parse(&rule).unwrap());
    assert_eq!(
        w.cloud.router(&rule).await.unwrap().action,
        forwarding(&[(&w.a, 90), (&w.b, 10)])
    );
    let to_b = write(&w.cloud, &rule, &[(&w.a, 0), (&w.b, 1)]).await;
    let cold = AwsCloud::from_conf(&sdk_config(endpoint).await);
    let (routed, requests) = record(endpoint, cold.route(&rule, &to_b)).await;
    routed.unwrap();
    assert_eq!(actions(&requests), ["DescribeRules", "ModifyRule"]);
    let sent = &requests[1].params;
    assert_eq!(
        sent.get("Actions.member.1.Type").map(String::as_str),
        Some("authenticate-oidc")
    );
    // AWS never returns the OIDC client secret, so the adapter asks to keep the existing one;
    // moto does return it, and then it is simply sent back.
    let oidc = "Actions.member.1.AuthenticateOidcConfig.";
    assert!(
        sent.get(&format!("{oidc}UseExistingClientSecret"))
            .map(String::as_str)
            == Some("true")
            || sent.get(&format!("{oidc}ClientSecret")).map(String::as_str) == Some("secret"),
        "{sent:#?}"
    );
    assert_eq!(
        sent.get(&format!("{oidc}ClientId")).map(String::as_str),
        Some("checkout")
    );
    assert!(!sent.contains_key("Actions.member.2.TargetGroupArn"));
    assert!(
        !sent.keys().any(|k| k.starts_with("Conditions")),
        "{sent:?}"
    );
    assert_eq!(
        w.cloud.router(&rule).await.unwrap().action,
        forwarding(&[(&w.a, 0), (&w.b, 1)])
    );
    let described = w
        .elb
        .describe_rules()
        .rule_arns(match &rule {
            RouterId::Rule(arn) => arn.as_str(),
            RouterId::Listener(_) => unreachable!(),
        })
        .send()
        .await
        .unwrap();
    let after = &described.rules()[0];
    assert_eq!(after.conditions().len(), 1);
    let mut kinds: Vec<_> = after
        .actions()
        .iter()
        .map(|a| (a.order(), a.r#type().unwrap().as_str().to_owned()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            (Some(1), "authenticate-oidc".to_owned()),
            (Some(2), "forward".to_owned())
        ]
    );
    let forward = after
        .actions()
        .iter()
        .find(|a| a.r#type() == Some(&elb::ActionTypeEnum::Forward))
        .unwrap();
    let sticky = forward
        .forward_config()
        .unwrap()
        .target_group_stickiness_config()
        .unwrap();
    assert_eq!(sticky.enabled(), Some(true));
    assert_eq!(sticky.duration_seconds(), Some(600));

    // A non-forward terminal action reads as Other.
    w.elb
        .modify_listener()
        .listener_arn(w.listener.as_str())
        .default_actions(
            elb::Action::builder()
                .r#type(elb::ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    elb::FixedResponseActionConfig::builder()
                        .status_code("503")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        w.cloud.router(&listener).await.unwrap().action,
        RouterAction::Other {
            action_type: "fixed-response".into()
        }
    );
}

async fn target_groups_and_health(endpoint: &str) {
    let w = World::new(endpoint).await;
    let info = w.cloud.target_group(&w.a).await.unwrap();
    assert_eq!(info.arn, w.a);
    assert_eq!(info.name, w.a.short_name());
    assert_eq!(info.target_type, "instance");
    assert_eq!(info.vpc_id.as_deref(), Some(w.vpc.as_str()));
    assert_eq!(info.load_balancer_arns, slice::from_ref(&w.lb));

    let name = unique("health");
    w.group(&name, &[&w.a], 2).await;
    let fleet = w.cloud.fleets(slice::from_ref(&w.a)).await.unwrap();
    let fleet = fleet.iter().find(|f| f.name.as_str() == name).unwrap();
    let health = w.cloud.target_health(&w.a).await.unwrap();
    // moto: every registered target is always `healthy`, without a reason.
    for instance in &fleet.instances {
        let target = health.iter().find(|t| t.target_id == instance.id).unwrap();
        assert_eq!(target.state, TargetState::Healthy);
    }
}

async fn fleets_finds_groups_by_target_group(endpoint: &str) {
    let w = World::new(endpoint).await;
    let other = target_group(&w.elb, &w.vpc, &unique("other")).await;
    let live = unique("live");
    let unrelated = unique("unrelated");
    w.group(&live, &[&w.a], 2).await;
    w.group(&unrelated, &[&other], 1).await;

    let fleets = w.cloud.fleets(&[w.a.clone(), w.b.clone()]).await.unwrap();
    assert_eq!(fleets.len(), 1, "{fleets:#?}");
    let fleet = &fleets[0];
    assert_eq!(fleet.name.as_str(), live);
    assert_eq!(
        fleet.capacity,
        Capacity {
            min: 0,
            max: 4,
            desired: 2
        }
    );
    assert_eq!(fleet.instances.len(), 2);
    assert!(
        fleet
            .instances
            .iter()
            .all(|i| i.in_service() && i.health_status == "Healthy")
    );
    assert_eq!(fleet.tags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        fleet.tags.get("greenlight:service").map(String::as_str),
        Some("checkout")
    );
    assert_eq!(fleet.target_groups, slice::from_ref(&w.a));
    assert!(!fleet.deleting);

    let by_other = w.cloud.fleets(&[other]).await.unwrap();
    assert_eq!(by_other.len(), 1);
    assert_eq!(by_other[0].name.as_str(), unrelated);
    assert!(w.cloud.fleets(&[]).await.unwrap().is_empty());
}

/// A group on the second page of DescribeAutoScalingGroups is found too.
async fn fleets_reads_every_page(endpoint: &str) {
    let w = World::new(endpoint).await;
    for _ in 0..101 {
        w.group(&unique("filler"), &[], 0).await;
    }
    let late = unique("late");
    w.group(&late, &[&w.b], 0).await;
    let (fleets, requests) = record(endpoint, w.cloud.fleets(slice::from_ref(&w.b))).await;
    let fleets = fleets.unwrap();
    assert_eq!(fleets.len(), 1);
    assert_eq!(fleets[0].name.as_str(), late);
    assert!(requests.len() >= 2, "{:?}", actions(&requests));
    for request in &requests {
        assert_eq!(request.action, "DescribeAutoScalingGroups");
        assert_eq!(
            request.params.get("MaxRecords").map(String::as_str),
            Some("100")
        );
    }
}

async fn fleet_config_round_trips(endpoint: &str) {
    let w = World::new(endpoint).await;
    let original = unique("orig");
    w.group(&original, &[&w.a], 1).await;
    let label = format!(
        "{}/{}",
        w.lb.split_once(":loadbalancer/").unwrap().1,
        w.a.label_suffix().unwrap()
    );
    // moto's PutLifecycleHook keeps only name, transition, timeout and default result, and
    // DescribeLifecycleHooks answers with placeholder notification-target and role ARNs.
    w.asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(&original)
        .lifecycle_hook_name("drain")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(300)
        .default_result("CONTINUE")
        .send()
        .await
        .unwrap();
    w.asg
        .put_scaling_policy()
        .auto_scaling_group_name(&original)
        .policy_name("requests")
        .policy_type("TargetTrackingScaling")
        .estimated_instance_warmup(90)
        .target_tracking_configuration(
            asg::TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    asg::PredefinedMetricSpecification::builder()
                        .predefined_metric_type(asg::MetricType::AlbRequestCountPerTarget)
                        .resource_label(&label)
                        .build(),
                )
                .target_value(1000.0)
                .disable_scale_in(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    w.asg
        .put_scaling_policy()
        .auto_scaling_group_name(&original)
        .policy_name("steps")
        .policy_type("StepScaling")
        .adjustment_type("ChangeInCapacity")
        .metric_aggregation_type("Average")
        .step_adjustments(
            asg::StepAdjustment::builder()
                .metric_interval_lower_bound(0.0)
                .metric_interval_upper_bound(10.0)
                .scaling_adjustment(1)
                .build(),
        )
        .step_adjustments(
            asg::StepAdjustment::builder()
                .metric_interval_lower_bound(10.0)
                .scaling_adjustment(2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    w.asg
        .put_scaling_policy()
        .auto_scaling_group_name(&original)
        .policy_name("simple")
        .policy_type("SimpleScaling")
        .adjustment_type("ChangeInCapacity")
        .scaling_adjustment(1)
        .cooldown(120)
        .send()
        .await
        .unwrap();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_924_992_000); // 2031-01-01
    w.asg
        .put_scheduled_update_group_action()
        .auto_scaling_group_name(&original)
        .scheduled_action_name("nightly")
        .recurrence("0 22 * * *")
        .start_time(start.into())
        .min_size(0)
        .max_size(4)
        .desired_capacity(1)
        .time_zone("Europe/Paris")
        .send()
        .await
        .unwrap();
    w.asg
        .enable_metrics_collection()
        .auto_scaling_group_name(&original)
        .granularity("1Minute")
        .metrics("GroupInServiceInstances")
        .metrics("GroupDesiredCapacity")
        .send()
        .await
        .unwrap();
    w.asg
        .suspend_processes()
        .auto_scaling_group_name(&original)
        .scaling_processes("AZRebalance")
        .send()
        .await
        .unwrap();

    let config = w
        .cloud
        .fleet_config(&FleetName::new(original.as_str()))
        .await
        .unwrap();
    assert_eq!(
        config.launch,
        FleetLaunch::Template(LaunchTemplateRef {
            id: w.template_id.clone(),
            version: "$Latest".into()
        })
    );
    assert_eq!(config.subnets, w.subnets);
    assert_eq!(config.lifecycle_hooks.len(), 1);
    assert_eq!(config.scaling_policies.len(), 3);
    let tracking = config
        .scaling_policies
        .iter()
        .find(|p| p.name == "requests")
        .and_then(|p| p.target_tracking.as_ref())
        .unwrap();
    assert_eq!(
        tracking.predefined_metric_type.as_deref(),
        Some("ALBRequestCountPerTarget")
    );
    assert_eq!(tracking.resource_label.as_deref(), Some(label.as_str()));
    assert_eq!(config.scheduled_actions.len(), 1);
    assert_eq!(config.scheduled_actions[0].start_time, Some(start));
    assert_eq!(
        config.metrics.as_ref().map(|m| m.metrics.len()),
        Some(2),
        "{:?}",
        config.metrics
    );
    assert_eq!(config.suspended_processes, ["AZRebalance"]);
    assert!(config.tags.contains(&FleetTag {
        key: "team".into(),
        value: "payments".into(),
        propagate_at_launch: true
    }));
    assert_eq!(config.target_groups, slice::from_ref(&w.a));
    assert!(!config.has_warm_pool);

    let copy = FleetName::new(unique("copy"));
    let (created, requests) = record(endpoint, w.cloud.create_fleet(&copy, &config)).await;
    created.unwrap();
    assert_eq!(actions(&requests), ["CreateAutoScalingGroup"]);
    let sent = &requests[0].params;
    assert_eq!(
        sent.get("LifecycleHookSpecificationList.member.1.LifecycleHookName")
            .map(String::as_str),
        Some("drain")
    );
    // moto ignores LifecycleHookSpecificationList (checked above that it was sent), so the
    // hooks AWS would have created are put here.
    for hook in &config.lifecycle_hooks {
        w.asg
            .put_lifecycle_hook()
            .auto_scaling_group_name(copy.as_str())
            .lifecycle_hook_name(&hook.name)
            .lifecycle_transition(&hook.transition)
            .set_heartbeat_timeout(hook.heartbeat_timeout)
            .set_default_result(hook.default_result.clone())
            .send()
            .await
            .unwrap();
    }
    let (configured, requests) = record(endpoint, w.cloud.configure_fleet(&copy, &config)).await;
    configured.unwrap();
    let mut called = actions(&requests);
    called.sort();
    assert_eq!(
        called,
        [
            "EnableMetricsCollection",
            "PutScalingPolicy",
            "PutScalingPolicy",
            "PutScalingPolicy",
            "PutScheduledUpdateGroupAction",
            "SuspendProcesses"
        ]
    );
    // Every write is a put: a second pass converges to the same state.
    w.cloud.configure_fleet(&copy, &config).await.unwrap();

    let copied = w.cloud.fleet_config(&copy).await.unwrap();
    assert_eq!(copied, config);
}

/// Every field CreateAutoScalingGroup takes reaches the request, including those moto drops.
async fn create_fleet_sends_everything(endpoint: &str) {
    let w = World::new(endpoint).await;
    let template = LaunchTemplateRef {
        id: w.template_id.clone(),
        version: "1".into(),
    };
    let mut config = FleetConfig {
        launch: FleetLaunch::Template(template.clone()),
        capacity: Capacity {
            min: 1,
            max: 5,
            desired: 2,
        },
        subnets: w.subnets.clone(),
        availability_zones: vec!["us-east-1a".into(), "us-east-1b".into()],
        health_check_type: Some("ELB".into()),
        health_check_grace_period: Some(90),
        default_cooldown: Some(45),
        termination_policies: vec!["OldestInstance".into()],
        default_instance_warmup: Some(60),
        capacity_rebalance: Some(true),
        max_instance_lifetime: Some(604_800),
        instance_maintenance_policy: Some(MaintenancePolicy {
            min_healthy_percentage: Some(90),
            max_healthy_percentage: Some(120),
        }),
        new_instances_protected_from_scale_in: Some(true),
        placement_group: None,
        service_linked_role_arn: Some(
            "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling".into(),
        ),
        desired_capacity_type: Some("units".into()),
        lifecycle_hooks: vec![LifecycleHook {
            name: "boot".into(),
            transition: "autoscaling:EC2_INSTANCE_LAUNCHING".into(),
            heartbeat_timeout: Some(600),
            default_result: Some("ABANDON".into()),
            notification_target_arn: Some("arn:aws:sqs:us-east-1:123456789012:hooks".into()),
            role_arn: Some("arn:aws:iam::123456789012:role/hooks".into()),
            notification_metadata: Some("{\"service\":\"checkout\"}".into()),
        }],
        scaling_policies: vec![],
        scheduled_actions: vec![],
        metrics: Some(MetricsCollection {
            granularity: "1Minute".into(),
            metrics: vec![],
        }),
        suspended_processes: vec![],
        tags: vec![
            FleetTag {
                key: "team".into(),
                value: "payments".into(),
                propagate_at_launch: true,
            },
            FleetTag {
                key: "aws:cloudformation:stack-name".into(),
                value: "old".into(),
                propagate_at_launch: true,
            },
        ],
        target_groups: vec![w.a.clone(), w.b.clone()],
        has_warm_pool: false,
    };
    let name = FleetName::new(unique("full"));
    let (created, requests) = record(endpoint, w.cloud.create_fleet(&name, &config)).await;
    created.unwrap();
    assert_eq!(actions(&requests), ["CreateAutoScalingGroup"]);
    let sent = &requests[0].params;
    let expected: &[(&str, &str)] = &[
        ("AutoScalingGroupName", name.as_str()),
        ("LaunchTemplate.LaunchTemplateId", &w.template_id),
        ("LaunchTemplate.Version", "1"),
        ("MinSize", "1"),
        ("MaxSize", "5"),
        ("DesiredCapacity", "2"),
        ("VPCZoneIdentifier", &w.subnets.join(",")),
        ("HealthCheckType", "ELB"),
        ("HealthCheckGracePeriod", "90"),
        ("DefaultCooldown", "45"),
        ("TerminationPolicies.member.1", "OldestInstance"),
        ("DefaultInstanceWarmup", "60"),
        ("CapacityRebalance", "true"),
        ("MaxInstanceLifetime", "604800"),
        ("InstanceMaintenancePolicy.MinHealthyPercentage", "90"),
        ("InstanceMaintenancePolicy.MaxHealthyPercentage", "120"),
        ("NewInstancesProtectedFromScaleIn", "true"),
        ("DesiredCapacityType", "units"),
        (
            "LifecycleHookSpecificationList.member.1.LifecycleHookName",
            "boot",
        ),
        (
            "LifecycleHookSpecificationList.member.1.LifecycleTransition",
            "autoscaling:EC2_INSTANCE_LAUNCHING",
        ),
        (
            "LifecycleHookSpecificationList.member.1.HeartbeatTimeout",
            "600",
        ),
        (
            "LifecycleHookSpecificationList.member.1.DefaultResult",
            "ABANDON",
        ),
        (
            "LifecycleHookSpecificationList.member.1.NotificationTargetARN",
            "arn:aws:sqs:us-east-1:123456789012:hooks",
        ),
        (
            "LifecycleHookSpecificationList.member.1.RoleARN",
            "arn:aws:iam::123456789012:role/hooks",
        ),
        (
            "LifecycleHookSpecificationList.member.1.NotificationMetadata",
            "{\"service\":\"checkout\"}",
        ),
        ("Tags.member.1.Key", "team"),
        ("Tags.member.1.Value", "payments"),
        ("Tags.member.1.PropagateAtLaunch", "true"),
        ("Tags.member.1.ResourceType", "auto-scaling-group"),
        ("TargetGroupARNs.member.1", w.a.as_str()),
        ("TargetGroupARNs.member.2", w.b.as_str()),
    ];
    for (key, value) in expected {
        assert_eq!(
            sent.get(*key).map(String::as_str),
            Some(*value),
            "{key} in {sent:#?}"
        );
    }
    assert!(sent.contains_key("ServiceLinkedRoleARN"));
    assert!(
        !sent.contains_key("Tags.member.2.Key"),
        "aws: tags are not sent"
    );
    assert!(!sent.keys().any(|k| k.starts_with("AvailabilityZones")));

    // Metrics with no names: every metric, as AWS does when Metrics is left out.
    let (configured, requests) = record(endpoint, w.cloud.configure_fleet(&name, &config)).await;
    configured.unwrap();
    assert_eq!(actions(&requests), ["EnableMetricsCollection"]);
    assert!(!requests[0].params.keys().any(|k| k.starts_with("Metrics")));

    // Mixed instances, and availability zones when there are no subnets.
    config.subnets.clear();
    config.launch = FleetLaunch::Mixed(MixedInstances {
        template: template.clone(),
        overrides: vec![
            InstanceOverride {
                instance_type: Some("m6i.large".into()),
                weighted_capacity: Some("2".into()),
                launch_template: None,
                has_instance_requirements: false,
            },
            InstanceOverride {
                instance_type: Some("m6g.large".into()),
                weighted_capacity: None,
                launch_template: Some(template.clone()),
                has_instance_requirements: false,
            },
        ],
        distribution: Some(InstancesDistribution {
            on_demand_allocation_strategy: Some("prioritized".into()),
            on_demand_base_capacity: Some(1),
            on_demand_percentage_above_base_capacity: Some(50),
            spot_allocation_strategy: Some("price-capacity-optimized".into()),
            spot_instance_pools: None,
            spot_max_price: Some("0.10".into()),
        }),
    });
    let mixed = FleetName::new(unique("mixed"));
    let (created, requests) = record(endpoint, w.cloud.create_fleet(&mixed, &config)).await;
    created.unwrap();
    assert_eq!(actions(&requests), ["CreateAutoScalingGroup"]);
    let sent = &requests[0].params;
    let p = "MixedInstancesPolicy.";
    let expected: &[(String, &str)] = &[
        (
            format!("{p}LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId"),
            &w.template_id,
        ),
        (
            format!("{p}LaunchTemplate.LaunchTemplateSpecification.Version"),
            "1",
        ),
        (
            format!("{p}LaunchTemplate.Overrides.member.1.InstanceType"),
            "m6i.large",
        ),
        (
            format!("{p}LaunchTemplate.Overrides.member.1.WeightedCapacity"),
            "2",
        ),
        (
            format!("{p}LaunchTemplate.Overrides.member.2.InstanceType"),
            "m6g.large",
        ),
        (
            format!(
                "{p}LaunchTemplate.Overrides.member.2.LaunchTemplateSpecification.LaunchTemplateId"
            ),
            &w.template_id,
        ),
        (
            format!("{p}InstancesDistribution.OnDemandAllocationStrategy"),
            "prioritized",
        ),
        (
            format!("{p}InstancesDistribution.OnDemandBaseCapacity"),
            "1",
        ),
        (
            format!("{p}InstancesDistribution.OnDemandPercentageAboveBaseCapacity"),
            "50",
        ),
        (
            format!("{p}InstancesDistribution.SpotAllocationStrategy"),
            "price-capacity-optimized",
        ),
        (format!("{p}InstancesDistribution.SpotMaxPrice"), "0.10"),
        ("AvailabilityZones.member.1".into(), "us-east-1a"),
        ("AvailabilityZones.member.2".into(), "us-east-1b"),
    ];
    for (key, value) in expected {
        assert_eq!(
            sent.get(key).map(String::as_str),
            Some(*value),
            "{key} in {sent:#?}"
        );
    }
    assert!(!sent.contains_key("LaunchTemplate.LaunchTemplateId"));
    assert!(!sent.contains_key("VPCZoneIdentifier"));
    let read = w.cloud.fleet_config(&mixed).await.unwrap();
    let FleetLaunch::Mixed(read) = read.launch else {
        panic!("expected a mixed instances policy, got {:?}", read.launch);
    };
    assert_eq!(read.template, template);
    assert_eq!(read.overrides.len(), 2);

    // Attribute-based overrides cannot be copied: refused before anything is sent.
    let FleetLaunch::Mixed(m) = &mut config.launch else {
        unreachable!()
    };
    m.overrides[0].has_instance_requirements = true;
    let (refused, requests) = record(
        endpoint,
        w.cloud.create_fleet(&FleetName::new(unique("x")), &config),
    )
    .await;
    assert_eq!(refused.unwrap_err().kind, CloudErrorKind::InvalidRequest);
    assert!(requests.is_empty());
}

async fn fleet_writes(endpoint: &str) {
    let w = World::new(endpoint).await;
    let name = unique("writes");
    w.group(&name, &[&w.a], 1).await;
    let fleet = FleetName::new(name.as_str());
    let read = || async {
        w.cloud
            .fleets(slice::from_ref(&w.a))
            .await
            .unwrap()
            .into_iter()
            .find(|f| f.name == fleet)
    };

    let capacity = Capacity {
        min: 1,
        max: 3,
        desired: 3,
    };
    w.cloud.set_capacity(&fleet, capacity).await.unwrap();
    let summary = read().await.unwrap();
    assert_eq!(summary.capacity, capacity);
    assert_eq!(summary.instances.len(), 3);

    let tags = [
        ("greenlight:phase".to_owned(), "live".to_owned()),
        ("greenlight:release".to_owned(), "v2".to_owned()),
    ];
    w.cloud.tag_fleet(&fleet, &tags).await.unwrap();
    w.cloud.tag_fleet(&fleet, &tags[..1]).await.unwrap();
    let summary = read().await.unwrap();
    assert_eq!(
        summary.tags.get("greenlight:phase").map(String::as_str),
        Some("live")
    );
    assert_eq!(
        summary.tags.get("greenlight:release").map(String::as_str),
        Some("v2")
    );
    let config = w.cloud.fleet_config(&fleet).await.unwrap();
    assert!(config.tags.contains(&FleetTag {
        key: "greenlight:phase".into(),
        value: "live".into(),
        propagate_at_launch: false
    }));

    w.cloud
        .untag_fleet(&fleet, &["greenlight:release".to_owned()])
        .await
        .unwrap();
    let summary = read().await.unwrap();
    assert!(!summary.tags.contains_key("greenlight:release"));
    assert!(summary.tags.contains_key("greenlight:phase"));

    // Suspend and resume name their processes; an empty list touches nothing (AWS reads an
    // empty list as "all processes").
    let warm = [
        "AlarmNotification".to_owned(),
        "ScheduledActions".to_owned(),
    ];
    w.cloud.suspend_processes(&fleet, &warm).await.unwrap();
    w.cloud.suspend_processes(&fleet, &warm).await.unwrap();
    let mut suspended = read().await.unwrap().suspended_processes;
    suspended.sort();
    assert_eq!(suspended, warm);
    let (_, requests) = record(endpoint, w.cloud.resume_processes(&fleet, &[])).await;
    assert_eq!(actions(&requests), Vec::<&str>::new());
    w.cloud.resume_processes(&fleet, &warm[..1]).await.unwrap();
    assert_eq!(
        read().await.unwrap().suspended_processes,
        ["ScheduledActions"]
    );

    // A warm pool is only flagged: greenlight does not copy it.
    w.asg
        .put_warm_pool()
        .auto_scaling_group_name(name.as_str())
        .min_size(1)
        .send()
        .await
        .unwrap();
    assert!(w.cloud.fleet_config(&fleet).await.unwrap().has_warm_pool);

    w.cloud.delete_fleet(&fleet).await.unwrap();
    assert!(read().await.is_none());
    // Deleting a group that is already gone succeeds.
    w.cloud.delete_fleet(&fleet).await.unwrap();
    let missing = w.cloud.fleet_config(&fleet).await.unwrap_err();
    assert_eq!(missing.kind, CloudErrorKind::NotFound);
    assert_eq!(missing.operation, "DescribeAutoScalingGroups");
}

async fn launch_template_versions(endpoint: &str) {
    let w = World::new(endpoint).await;
    let id = w.template_id.as_str();
    let version = |v: &str| LaunchTemplateRef {
        id: id.to_owned(),
        version: v.to_owned(),
    };

    let first = w
        .cloud
        .launch_template_version(&version("1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.template_id, id);
    assert_eq!(first.number, 1);
    assert_eq!(first.image_id.as_deref(), Some(w.image.as_str()));

    let image = ImageId::parse(&w.image).unwrap();
    let description = "greenlight checkout v2";
    assert_eq!(
        w.cloud
            .find_launch_template_version(id, description)
            .await
            .unwrap(),
        None
    );
    let (created, requests) = record(
        endpoint,
        w.cloud
            .create_launch_template_version(id, 1, &image, description, "greenlight-token-1"),
    )
    .await;
    let created = created.unwrap();
    assert_eq!(actions(&requests), ["CreateLaunchTemplateVersion"]);
    let sent = &requests[0].params;
    assert_eq!(
        sent.get("ClientToken").map(String::as_str),
        Some("greenlight-token-1")
    );
    assert_eq!(sent.get("SourceVersion").map(String::as_str), Some("1"));
    assert_eq!(
        sent.get("LaunchTemplateData.ImageId").map(String::as_str),
        Some(w.image.as_str())
    );
    assert!(
        !sent
            .keys()
            .any(|k| k.starts_with("LaunchTemplateData.") && k != "LaunchTemplateData.ImageId"),
        "only the image changes: {sent:?}"
    );
    assert_eq!(created.number, 2);
    assert_eq!(created.description.as_deref(), Some(description));
    assert_eq!(created.image_id.as_deref(), Some(w.image.as_str()));

    let found = w
        .cloud
        .find_launch_template_version(id, description)
        .await
        .unwrap();
    assert_eq!(found, Some(created.clone()));
    assert_eq!(
        w.cloud
            .find_launch_template_version(id, "greenlight checkout v")
            .await
            .unwrap(),
        None
    );

    let latest = w
        .cloud
        .launch_template_version(&version("$Latest"))
        .await
        .unwrap();
    assert_eq!(latest.map(|v| v.number), Some(2));
    let default = w
        .cloud
        .launch_template_version(&version("$Default"))
        .await
        .unwrap();
    assert_eq!(default.map(|v| v.number), Some(1));
    assert_eq!(
        w.cloud
            .launch_template_version(&version("9"))
            .await
            .unwrap(),
        None
    );
    let missing = LaunchTemplateRef {
        id: "lt-0123456789abcdef0".into(),
        version: "1".into(),
    };
    assert_eq!(
        w.cloud.launch_template_version(&missing).await.unwrap(),
        None
    );
}

async fn images(endpoint: &str) {
    let w = World::new(endpoint).await;
    let known = ImageId::parse(&w.image).unwrap();
    assert!(w.cloud.image_exists(&known).await.unwrap());
    let unknown = ImageId::parse("ami-0123456789abcdef0").unwrap();
    assert!(!w.cloud.image_exists(&unknown).await.unwrap());
}

async fn missing_things_are_not_found(endpoint: &str) {
    let w = World::new(endpoint).await;
    let account_and_region = w
        .listener
        .as_str()
        .split(":listener/")
        .next()
        .unwrap()
        .to_owned();
    let listener = ListenerArn::parse(&format!(
        "{account_and_region}:listener/app/nope/0123456789abcdef/0123456789abcdef"
    ))
    .unwrap();
    let err = w
        .cloud
        .router(&RouterId::Listener(listener.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
    assert_eq!(err.operation, "DescribeListeners");
    assert_eq!(err.code.as_deref(), Some("ListenerNotFound"));
    assert!(!err.message.contains('\n'));
    let missing_write = RouterWrite {
        expected: weights(&[(&w.a, 1)]),
        forwards: weights(&[(&w.a, 1)]),
        stickiness: Stickiness::Keep,
    };
    let err = w
        .cloud
        .route(&RouterId::Listener(listener), &missing_write)
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");

    let tg = TargetGroupArn::parse(&format!(
        "{account_and_region}:targetgroup/nope/0123456789abcdef"
    ))
    .unwrap();
    let err = w.cloud.target_group(&tg).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
}

/// The lock is a launch template created by name: a real conditional create.
async fn locks(endpoint: &str) {
    let w = World::new(endpoint).await;
    let name = unique("greenlight-lock.checkout");
    let tags = vec![
        ("greenlight:lock".to_owned(), "checkout".to_owned()),
        ("greenlight:lock-token".to_owned(), "first".to_owned()),
    ];
    assert_eq!(w.cloud.read_lock(&name).await.unwrap(), None);
    let (created, requests) = record(endpoint, w.cloud.create_lock(&name, &tags, "tok-a")).await;
    let id = created.unwrap();
    assert_eq!(actions(&requests), ["CreateLaunchTemplate"]);
    assert_eq!(
        requests[0].params.get("ClientToken").map(String::as_str),
        Some("tok-a")
    );
    assert_eq!(
        requests[0]
            .params
            .get("TagSpecification.1.ResourceType")
            .map(String::as_str),
        Some("launch-template")
    );
    // A second runner's create fails: the name is taken.
    let err = w
        .cloud
        .create_lock(&name, &tags, "tok-b")
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Conflict, "{err}");
    let (read_id, read_tags) = w.cloud.read_lock(&name).await.unwrap().unwrap();
    assert_eq!(read_id, id);
    assert_eq!(
        read_tags.get("greenlight:lock-token").map(String::as_str),
        Some("first")
    );
    w.cloud
        .tag_lock(
            &id,
            &[("greenlight:lock-expires-at".to_owned(), "later".to_owned())],
        )
        .await
        .unwrap();
    let (_, read_tags) = w.cloud.read_lock(&name).await.unwrap().unwrap();
    assert_eq!(
        read_tags
            .get("greenlight:lock-expires-at")
            .map(String::as_str),
        Some("later")
    );
    w.cloud.delete_lock(&id).await.unwrap();
    // Deleting again is fine (a takeover and the holder may both delete); renewing is not.
    w.cloud.delete_lock(&id).await.unwrap();
    let err = w
        .cloud
        .tag_lock(&id, &[("k".to_owned(), "v".to_owned())])
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
    assert_eq!(w.cloud.read_lock(&name).await.unwrap(), None);
    // Free again: the next create wins, with a new id.
    let again = w.cloud.create_lock(&name, &tags, "tok-c").await.unwrap();
    assert_ne!(again, id);
    w.cloud.delete_lock(&again).await.unwrap();
}

/// A router rule: host and path conditions (the path in the legacy `Values` form, as older
/// rules and consoles write it), forwarding to `a`.
async fn host_and_path_rule(w: &World, priority: i32) -> RuleArn {
    let arn = w
        .elb
        .create_rule()
        .listener_arn(w.listener.as_str())
        .priority(priority)
        .conditions(
            elb::RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    elb::HostHeaderConditionConfig::builder()
                        .values("shop.example.com")
                        .values("www.shop.example.com")
                        .build(),
                )
                .build(),
        )
        .conditions(
            elb::RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(
            elb::Action::builder()
                .r#type(elb::ActionTypeEnum::Forward)
                .target_group_arn(w.a.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn
        .clone()
        .unwrap();
    RuleArn::parse(&arn).unwrap()
}

fn rule<'a>(rules: &'a [ListenerRule], arn: &RuleArn) -> &'a ListenerRule {
    rules
        .iter()
        .find(|r| &r.arn == arn)
        .unwrap_or_else(|| panic!("{arn} not among {rules:#?}"))
}

fn assert_sent(sent: &BTreeMap<String, String>, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            sent.get(*key).map(String::as_str),
            Some(*value),
            "{key} in {sent:#?}"
        );
    }
}

/// Test-traffic rules: created with typed conditions and their tags in one call, read back
/// whole, refused at a taken priority, deleted (twice).
async fn test_traffic_rules(endpoint: &str) {
    let w = World::new(endpoint).await;
    let service = ServiceName::parse("checkout").unwrap();
    let router = host_and_path_rule(&w, 10).await;

    let rules = w.cloud.listener_rules(&w.listener).await.unwrap();
    assert_eq!(rules.len(), 2, "{rules:#?}");
    let default = rules.iter().find(|r| r.arn != router).unwrap();
    assert_eq!(default.priority, None);
    assert!(default.conditions.is_empty());
    assert_eq!(default.target_groups, slice::from_ref(&w.a));
    let router_rule = rule(&rules, &router).clone();
    assert_eq!(router_rule.priority, Some(10));
    assert_eq!(router_rule.target_groups, slice::from_ref(&w.a));
    assert!(router_rule.tags.is_empty());
    assert_eq!(
        router_rule.conditions,
        [
            RuleCondition {
                field: "host-header".into(),
                values: vec!["shop.example.com".into(), "www.shop.example.com".into()],
                header_name: None,
                query: vec![],
            },
            RuleCondition {
                field: "path-pattern".into(),
                values: vec!["/api/*".into()],
                header_name: None,
                query: vec![],
            },
        ]
    );

    // A header rule, as in front of a listener's default action.
    let header = test_traffic::conditions(None, "X-Greenlight-Release", "v2");
    let tags = rule_tags(&service, "v2");
    let (created, requests) = record(
        endpoint,
        w.cloud.create_rule(&w.listener, 5, &header, &w.b, &tags),
    )
    .await;
    let header_rule = created.unwrap();
    assert_eq!(actions(&requests), ["CreateRule"]);
    let sent = &requests[0].params;
    assert_sent(
        sent,
        &[
            ("ListenerArn", w.listener.as_str()),
            ("Priority", "5"),
            ("Conditions.member.1.Field", "http-header"),
            (
                "Conditions.member.1.HttpHeaderConfig.HttpHeaderName",
                "X-Greenlight-Release",
            ),
            ("Conditions.member.1.HttpHeaderConfig.Values.member.1", "v2"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", w.b.as_str()),
            ("Tags.member.1.Key", "greenlight:test-traffic"),
            ("Tags.member.1.Value", "true"),
            ("Tags.member.2.Key", "greenlight:service"),
            ("Tags.member.2.Value", "checkout"),
            ("Tags.member.3.Key", "greenlight:release"),
            ("Tags.member.3.Value", "v2"),
        ],
    );
    let legacy = |sent: &BTreeMap<String, String>| {
        sent.keys()
            .filter(|k| k.starts_with("Conditions.member.") && k.contains(".Values.member."))
            .filter(|k| !k.contains("Config."))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(legacy(sent), Vec::<String>::new(), "typed configs only");

    // A copy of the router rule's conditions plus the header, just before it.
    let copied = test_traffic::conditions(Some(&router_rule), "X-Greenlight-Release", "v2");
    let (created, requests) = record(
        endpoint,
        w.cloud.create_rule(&w.listener, 9, &copied, &w.b, &tags),
    )
    .await;
    let copy_rule = created.unwrap();
    assert_eq!(actions(&requests), ["CreateRule"]);
    let sent = &requests[0].params;
    assert_sent(
        sent,
        &[
            ("Priority", "9"),
            ("Conditions.member.1.Field", "host-header"),
            (
                "Conditions.member.1.HostHeaderConfig.Values.member.1",
                "shop.example.com",
            ),
            (
                "Conditions.member.1.HostHeaderConfig.Values.member.2",
                "www.shop.example.com",
            ),
            ("Conditions.member.2.Field", "path-pattern"),
            (
                "Conditions.member.2.PathPatternConfig.Values.member.1",
                "/api/*",
            ),
            ("Conditions.member.3.Field", "http-header"),
            (
                "Conditions.member.3.HttpHeaderConfig.HttpHeaderName",
                "X-Greenlight-Release",
            ),
            ("Conditions.member.3.HttpHeaderConfig.Values.member.1", "v2"),
            ("Tags.member.3.Value", "v2"),
        ],
    );
    assert_eq!(legacy(sent), Vec::<String>::new(), "typed configs only");

    // Read back whole, with their tags.
    let rules = w.cloud.listener_rules(&w.listener).await.unwrap();
    assert_eq!(rules.len(), 4, "{rules:#?}");
    for (arn, priority, conditions) in [(&header_rule, 5, &header), (&copy_rule, 9, &copied)] {
        let read = rule(&rules, arn);
        assert_eq!(read.priority, Some(priority));
        assert_eq!(&read.conditions, conditions);
        assert_eq!(read.target_groups, slice::from_ref(&w.b));
        assert_eq!(read.tags, tags.iter().cloned().collect::<BTreeMap<_, _>>());
        assert_eq!(read.test_release(&service), Some("v2"));
    }
    assert_eq!(rule(&rules, &router).test_release(&service), None);
    assert_eq!(test_traffic::free_priority(&rules, Some(9)), Some(8));

    // Another runner took the priority meanwhile.
    let err = w
        .cloud
        .create_rule(&w.listener, 5, &header, &w.b, &tags)
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Conflict, "{err}");
    assert_eq!(err.code.as_deref(), Some("PriorityInUse"));
    assert_eq!(err.operation, "CreateRule");

    // A condition CreateRule cannot take is refused before anything is sent.
    let nameless = [RuleCondition {
        field: "http-header".into(),
        values: vec!["v2".into()],
        header_name: None,
        query: vec![],
    }];
    let (refused, requests) = record(
        endpoint,
        w.cloud.create_rule(&w.listener, 7, &nameless, &w.b, &tags),
    )
    .await;
    assert_eq!(refused.unwrap_err().kind, CloudErrorKind::InvalidRequest);
    assert!(requests.is_empty());

    // Deleting twice succeeds. (moto's DeleteRule never answers RuleNotFound, so the second
    // call does not reach the adapter's already-gone branch here; AWS does answer it.)
    let (deleted, requests) = record(endpoint, w.cloud.delete_rule(&header_rule)).await;
    deleted.unwrap();
    assert_eq!(actions(&requests), ["DeleteRule"]);
    assert_sent(&requests[0].params, &[("RuleArn", header_rule.as_str())]);
    w.cloud.delete_rule(&header_rule).await.unwrap();
    w.cloud.delete_rule(&copy_rule).await.unwrap();
    let rules = w.cloud.listener_rules(&w.listener).await.unwrap();
    assert_eq!(rules.len(), 2, "{rules:#?}");
    assert!(rules.iter().all(|r| r.test_release(&service).is_none()));
}

/// Every DescribeRules page is read (moto: 50 rules a page), and DescribeTags is asked about at
/// most 20 rules at a time.
async fn listener_rules_reads_every_page(endpoint: &str) {
    let w = World::new(endpoint).await;
    let service = ServiceName::parse("checkout").unwrap();
    for priority in 1..=55 {
        let release = format!("r{priority}");
        let header = test_traffic::conditions(None, "X-Release", &release);
        w.cloud
            .create_rule(
                &w.listener,
                priority,
                &header,
                &w.b,
                &rule_tags(&service, &release),
            )
            .await
            .unwrap();
    }
    let (rules, requests) = record(endpoint, w.cloud.listener_rules(&w.listener)).await;
    let rules = rules.unwrap();
    assert_eq!(rules.len(), 56);
    assert_eq!(rules.iter().filter(|r| r.priority.is_none()).count(), 1);
    for priority in 1..=55 {
        let found = rules.iter().find(|r| r.priority == Some(priority)).unwrap();
        assert_eq!(
            found.test_release(&service),
            Some(format!("r{priority}").as_str())
        );
    }
    assert_eq!(
        actions(&requests),
        [
            "DescribeRules",
            "DescribeRules",
            "DescribeTags",
            "DescribeTags",
            "DescribeTags"
        ]
    );
    assert!(requests[1].params.contains_key("Marker"));
    let mut asked = 0;
    for request in &requests[2..] {
        let arns = request
            .params
            .keys()
            .filter(|k| k.starts_with("ResourceArns.member."))
            .count();
        assert!((1..=20).contains(&arns), "{arns} ARNs in one DescribeTags");
        asked += arns;
    }
    assert_eq!(asked, 56);
}

async fn load_balancer_dns(endpoint: &str) {
    let w = World::new(endpoint).await;
    let described = w
        .elb
        .describe_load_balancers()
        .load_balancer_arns(&w.lb)
        .send()
        .await
        .unwrap();
    let dns = described.load_balancers()[0].dns_name().unwrap().to_owned();
    let (read, requests) = record(endpoint, w.cloud.load_balancer_dns(&w.lb)).await;
    assert_eq!(read.unwrap(), dns);
    assert_eq!(actions(&requests), ["DescribeLoadBalancers"]);
    assert_sent(
        &requests[0].params,
        &[("LoadBalancerArns.member.1", w.lb.as_str())],
    );
    let id = w.lb.rsplit('/').next().unwrap();
    let missing = w.lb.replace(id, "0123456789abcdef");
    assert_ne!(missing, w.lb);
    let err = w.cloud.load_balancer_dns(&missing).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
    assert_eq!(err.operation, "DescribeLoadBalancers");
}

/// Alarms made with the Rust CloudWatch client (Smithy RPC v2 CBOR, which the emulator
/// translates for moto). moto never evaluates alarms: they start `OK` (AWS:
/// `INSUFFICIENT_DATA`) and change only by SetAlarmState.
async fn alarms(endpoint: &str) {
    let conf = sdk_config(endpoint).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&conf);
    let cloud = AwsCloud::from_conf(&conf);
    let quiet = unique("alarm-5xx");
    let loud = unique("alarm-latency");
    for name in [&quiet, &loud] {
        cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .namespace("AWS/ApplicationELB")
            .metric_name("HTTPCode_Target_5XX_Count")
            .dimensions(
                cw::Dimension::builder()
                    .name("LoadBalancer")
                    .value("app/shop/0123456789abcdef")
                    .build(),
            )
            .statistic(cw::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(5.0)
            .comparison_operator(cw::ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .send()
            .await
            .unwrap();
    }
    let crossed = "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0)";
    cloudwatch
        .set_alarm_state()
        .alarm_name(&loud)
        .state_value(cw::StateValue::Alarm)
        .state_reason(crossed)
        .send()
        .await
        .unwrap();

    // A metric-math alarm (a 5xx rate): its answer carries nested queries, which must decode
    // too. (Composite alarms cannot be made here: moto has no PutCompositeAlarm.)
    let rate = unique("alarm-5xx-rate");
    let sum = |id: &str, metric: &str| {
        cw::MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                cw::MetricStat::builder()
                    .metric(
                        cw::Metric::builder()
                            .namespace("AWS/ApplicationELB")
                            .metric_name(metric)
                            .build(),
                    )
                    .period(60)
                    .stat("Sum")
                    .build(),
            )
            .return_data(false)
            .build()
    };
    cloudwatch
        .put_metric_alarm()
        .alarm_name(&rate)
        .alarm_actions("arn:aws:sns:us-east-1:123456789012:pager")
        .metrics(sum("e", "HTTPCode_Target_5XX_Count"))
        .metrics(sum("r", "RequestCount"))
        .metrics(
            cw::MetricDataQuery::builder()
                .id("rate")
                .expression("e / r")
                .label("5xx rate")
                .return_data(true)
                .build(),
        )
        .evaluation_periods(3)
        .datapoints_to_alarm(2)
        .threshold(0.01)
        .comparison_operator(cw::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    cloudwatch
        .set_alarm_state()
        .alarm_name(&rate)
        .state_value(cw::StateValue::InsufficientData)
        .state_reason("Insufficient Data: 2 datapoints were unknown.")
        .state_reason_data("{\"version\":\"1.0\"}")
        .send()
        .await
        .unwrap();

    let missing = unique("alarm-that-is-not");
    let names = [
        loud.clone(),
        missing.clone(),
        quiet.clone(),
        rate.clone(),
        loud.clone(),
    ];
    let (read, requests) = record(endpoint, cloud.alarms(&names)).await;
    let read = read.unwrap();
    // In the order named, once each; the missing one is simply absent.
    let states: Vec<_> = read.iter().map(|a| (a.name.as_str(), a.state)).collect();
    assert_eq!(
        states,
        [
            (loud.as_str(), AlarmValue::Alarm),
            (quiet.as_str(), AlarmValue::Ok),
            (rate.as_str(), AlarmValue::InsufficientData),
        ]
    );
    assert_eq!(read[0].reason, crossed);
    assert_eq!(
        read[2].reason,
        "Insufficient Data: 2 datapoints were unknown."
    );
    assert_eq!(firing(&read).map(|a| a.name.as_str()), Some(loud.as_str()));
    assert_eq!(actions(&requests), ["DescribeAlarms"]);
    let sent = &requests[0].json;
    assert_eq!(
        sent["AlarmNames"],
        serde_json::json!([loud, missing, quiet, rate])
    );
    assert_eq!(
        sent["AlarmTypes"],
        serde_json::json!(["MetricAlarm", "CompositeAlarm"])
    );

    // No names, no call: DescribeAlarms without names would list every alarm in the account.
    let (none, requests) = record(endpoint, cloud.alarms(&[])).await;
    assert_eq!(none.unwrap(), Vec::<AlarmState>::new());
    assert!(requests.is_empty());

    // DescribeAlarms takes 100 names a call.
    let many: Vec<String> = (0..150)
        .map(|n| format!("{missing}-{n}"))
        .chain([quiet.clone()])
        .collect();
    let (read, requests) = record(endpoint, cloud.alarms(&many)).await;
    let read = read.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].name, quiet);
    assert_eq!(actions(&requests), ["DescribeAlarms", "DescribeAlarms"]);
    let counts: Vec<usize> = requests
        .iter()
        .map(|r| r.json["AlarmNames"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [100, 51]);

    // Errors come back as AWS gives them: the layer's validation (a name longer than 255)…
    let err = cloud.alarms(&["x".repeat(256)]).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::InvalidRequest, "{err}");
    assert_eq!(err.operation, "DescribeAlarms");
    assert_eq!(err.code.as_deref(), Some("ValidationError"));
    // … and moto's, which the SDK matches on their awsQuery codes.
    let err = cloudwatch
        .set_alarm_state()
        .alarm_name(&missing)
        .state_value(cw::StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found(), "{err:?}");
    assert_eq!(err.code(), Some("ResourceNotFound"));
}

/// ALB metrics per target group over a window, through GetMetricData (CBOR). moto computes no
/// percentiles, so TargetResponseTime's p99 comes back empty (`None`) even where there is
/// data; AWS would answer it. The p99 logic is tested against the in-memory fake.
async fn target_group_metrics(endpoint: &str) {
    let w = World::new(endpoint).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk_config(endpoint).await);
    let balancer = w.lb.split_once(":loadbalancer/").unwrap().1.to_owned();
    let end = SystemTime::now();
    let start = end - Duration::from_secs(10 * 60);
    let datum = |tg: &TargetGroupArn, metric: &str, value: f64, seconds_ago: u64| {
        cw::MetricDatum::builder()
            .metric_name(metric)
            .dimensions(
                cw::Dimension::builder()
                    .name("TargetGroup")
                    .value(tg.label_suffix().unwrap())
                    .build(),
            )
            .dimensions(
                cw::Dimension::builder()
                    .name("LoadBalancer")
                    .value(&balancer)
                    .build(),
            )
            .value(value)
            .timestamp((end - Duration::from_secs(seconds_ago)).into())
            .build()
    };
    cloudwatch
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(datum(&w.a, "RequestCount", 100.0, 500))
        .metric_data(datum(&w.a, "RequestCount", 50.0, 60))
        .metric_data(datum(&w.a, "HTTPCode_Target_5XX_Count", 3.0, 60))
        .metric_data(datum(&w.a, "TargetResponseTime", 0.25, 60))
        .metric_data(datum(&w.b, "RequestCount", 20.0, 300))
        .metric_data(datum(&w.b, "TargetResponseTime", 0.05, 300))
        // Before the window: not counted.
        .metric_data(datum(&w.a, "RequestCount", 1000.0, 11 * 60))
        .metric_data(datum(&w.b, "HTTPCode_Target_5XX_Count", 7.0, 20 * 60))
        .send()
        .await
        .unwrap();

    let both = [w.a.clone(), w.b.clone()];
    let (read, requests) = record(
        endpoint,
        w.cloud.target_group_metrics(&w.lb, &both, start, end),
    )
    .await;
    assert_eq!(
        read.unwrap(),
        [
            MetricWindow {
                target_group: w.a.clone(),
                requests: 150.0,
                errors_5xx: 3.0,
                p99_ms: None,
            },
            MetricWindow {
                target_group: w.b.clone(),
                requests: 20.0,
                errors_5xx: 0.0,
                p99_ms: None,
            },
        ]
    );
    // One call: three queries per target group, each over one 10-minute period.
    assert_eq!(actions(&requests), ["GetMetricData"]);
    let sent = &requests[0].json;
    let queries = sent["MetricDataQueries"].as_array().unwrap();
    let mut seen = Vec::new();
    for query in queries {
        let stat = &query["MetricStat"];
        assert_eq!(stat["Period"], 600, "{query}");
        assert_eq!(stat["Metric"]["Namespace"], "AWS/ApplicationELB");
        let dimensions: BTreeMap<&str, &str> = stat["Metric"]["Dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["Name"].as_str().unwrap(), d["Value"].as_str().unwrap()))
            .collect();
        assert_eq!(dimensions.len(), 2, "{query}");
        assert_eq!(dimensions["LoadBalancer"], balancer);
        seen.push((
            dimensions["TargetGroup"].to_owned(),
            stat["Metric"]["MetricName"].as_str().unwrap().to_owned(),
            stat["Stat"].as_str().unwrap().to_owned(),
        ));
    }
    seen.sort();
    let mut expected = Vec::new();
    for tg in &both {
        for (metric, stat) in [
            ("RequestCount", "Sum"),
            ("HTTPCode_Target_5XX_Count", "Sum"),
            ("TargetResponseTime", "p99"),
        ] {
            expected.push((tg.label_suffix().unwrap(), metric.into(), stat.into()));
        }
    }
    expected.sort();
    assert_eq!(seen, expected);
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    assert!((sent["StartTime"].as_f64().unwrap() - epoch(start)).abs() < 0.001);
    assert!((sent["EndTime"].as_f64().unwrap() - epoch(end)).abs() < 0.001);

    // In the order asked; a group without data served nothing.
    let quiet = target_group(&w.elb, &w.vpc, &unique("quiet")).await;
    let read = w
        .cloud
        .target_group_metrics(
            &w.lb,
            &[w.b.clone(), quiet.clone(), w.a.clone()],
            start,
            end,
        )
        .await
        .unwrap();
    let summary: Vec<_> = read
        .iter()
        .map(|m| (&m.target_group, m.requests, m.errors_5xx, m.p99_ms))
        .collect();
    assert_eq!(
        summary,
        [
            (&w.b, 20.0, 0.0, None),
            (&quiet, 0.0, 0.0, None),
            (&w.a, 150.0, 3.0, None)
        ]
    );

    // A window of 10 minutes and 30 seconds is read over one period of 11 minutes.
    let longer = start - Duration::from_secs(30);
    let (read, requests) = record(
        endpoint,
        w.cloud
            .target_group_metrics(&w.lb, slice::from_ref(&w.a), longer, end),
    )
    .await;
    assert_eq!(read.unwrap()[0].requests, 150.0);
    let periods: Vec<&serde_json::Value> = requests[0].json["MetricDataQueries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| &q["MetricStat"]["Period"])
        .collect();
    assert!(periods.iter().all(|p| **p == 660), "{periods:?}");

    // 150 datapoints in one PutMetricData: a body over 10 KiB, which the SDK gzips.
    let busy = target_group(&w.elb, &w.vpc, &unique("busy")).await;
    let mut put = cloudwatch.put_metric_data().namespace("AWS/ApplicationELB");
    for n in 0..150 {
        put = put.metric_data(datum(&busy, "RequestCount", 1.0, 30 + n));
    }
    put.send().await.unwrap();
    let read = w
        .cloud
        .target_group_metrics(&w.lb, slice::from_ref(&busy), start, end)
        .await
        .unwrap();
    assert_eq!(read[0].requests, 150.0);

    // Not an Application Load Balancer: refused before anything is sent.
    let nlb = w.lb.replace(":loadbalancer/app/", ":loadbalancer/net/");
    let (refused, requests) = record(
        endpoint,
        w.cloud
            .target_group_metrics(&nlb, slice::from_ref(&w.a), start, end),
    )
    .await;
    assert_eq!(refused.unwrap_err().kind, CloudErrorKind::InvalidRequest);
    assert!(requests.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Runners

#[tokio::test]
async fn adapter_against_moto() {
    let session = super::harness::session();
    let moto = (!session.emulator.hooks).then(Moto::start);
    let endpoint = match &moto {
        Some(moto) => moto.url(),
        None => session.emulator.endpoint.clone(),
    };
    router_reads_and_routes(&endpoint).await;
    target_groups_and_health(&endpoint).await;
    fleets_finds_groups_by_target_group(&endpoint).await;
    fleets_reads_every_page(&endpoint).await;
    fleet_config_round_trips(&endpoint).await;
    create_fleet_sends_everything(&endpoint).await;
    fleet_writes(&endpoint).await;
    launch_template_versions(&endpoint).await;
    images(&endpoint).await;
    missing_things_are_not_found(&endpoint).await;
    locks(&endpoint).await;
    test_traffic_rules(&endpoint).await;
    listener_rules_reads_every_page(&endpoint).await;
    load_balancer_dns(&endpoint).await;
    alarms(&endpoint).await;
    target_group_metrics(&endpoint).await;
}

#[tokio::test]
async fn unreachable_endpoint_is_unreachable() {
    let endpoint = format!("http://{}", free_port());
    let cloud = AwsCloud::from_conf(&sdk_config(&endpoint).await);
    let listener = ListenerArn::parse(
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x/0123/4567",
    )
    .unwrap();
    let err = cloud
        .router(&RouterId::Listener(listener))
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Unreachable, "{err}");
    assert_eq!(err.operation, "DescribeListeners");
    assert!(err.message.contains(&endpoint), "{err}");
    assert!(err.message.contains("refused"), "{err}");
    assert_eq!(cloud.region(), Some(REGION));
}

/// A credentials provider that has none, like the default chain on a machine without any.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no providers in chain provided credentials",
        )))
    }
}

#[tokio::test]
async fn missing_credentials_are_credentials() {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(format!("http://{}", free_port()))
        .credentials_provider(NoCredentials)
        .load()
        .await;
    let cloud = AwsCloud::from_conf(&conf);
    let err = cloud
        .fleet_config(&FleetName::new("anything"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Credentials, "{err}");
    assert_eq!(err.operation, "DescribeAutoScalingGroups");
}

#[tokio::test]
async fn missing_region_says_so() {
    let conf = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "tests",
            )),
        )
        .build();
    let cloud = AwsCloud::from_conf(&conf);
    assert_eq!(cloud.region(), None);
    let image = ImageId::parse("ami-0123456789abcdef0").unwrap();
    let err = cloud.image_exists(&image).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::Other, "{err}");
    assert!(err.message.contains("no AWS region"), "{err}");
}
