//! The `Cloud` methods `cleanup` uses, through `AwsCloud` against the emulator (moto with
//! greenlight's fidelity layer): tagged fleets, listeners and their forwards, deregistration
//! delay, launch template versions (listing and deleting) and lock objects.
//!
//! Each test seeds a service with `localstack/seed.py` and adds what it needs with the SDK
//! directly. On greenlight's emulator moto's request recorder is on, so the tests also assert
//! what the adapter sent (filters, page sizes, one call per page); on an external endpoint
//! (LocalStack), which has no recorder, only the answers are checked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;
use aws_sdk_elasticloadbalancingv2::types as elb;
use greenlight::aws::AwsCloud;
use greenlight::core::cloud::{Cloud, CloudErrorKind, ListenerForward};
use greenlight::core::names::{ListenerArn, ServiceName, TargetGroupArn};
use greenlight::core::router::{Forward, Weight};

use super::harness::{Seeded, Session, session};

// ---------------------------------------------------------------------------------------------
// What the adapter sent (moto's recorder; copied from adapter.rs)

/// One AWS request moto received (query protocol): its action and form parameters.
#[derive(Debug)]
struct Recorded {
    action: String,
    params: BTreeMap<String, String>,
}

impl Recorded {
    fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
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

/// Runs `f`; on greenlight's emulator also returns the requests moto received meanwhile.
async fn record<F: Future>(s: &Session, f: F) -> (F::Output, Option<Vec<Recorded>>) {
    if !s.emulator.hooks {
        return (f.await, None);
    }
    let addr: SocketAddr = s
        .emulator
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
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
            let params: BTreeMap<String, String> = body
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (form_decode(k), form_decode(v)))
                .collect();
            Recorded {
                action: params.get("Action").cloned().unwrap_or_default(),
                params,
            }
        })
        .collect();
    (out, Some(requests))
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

/// A seeded service, the adapter, and SDK clients to arrange more.
struct World {
    seeded: Seeded,
    cloud: AwsCloud,
    asg: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    ec2: aws_sdk_ec2::Client,
}

impl World {
    async fn new(s: &Session, service: &str, extra: &[&str]) -> World {
        let seeded = s.seed(service, extra);
        let conf = s.sdk().await;
        World {
            seeded,
            cloud: AwsCloud::from_conf(&conf),
            asg: aws_sdk_autoscaling::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            ec2: aws_sdk_ec2::Client::new(&conf),
        }
    }

    fn tg(&self, slot: usize) -> TargetGroupArn {
        TargetGroupArn::parse(&self.seeded.target_group(slot)).unwrap()
    }

    fn listener(&self) -> ListenerArn {
        ListenerArn::parse(&self.seeded.str("listener_arn")).unwrap()
    }

    fn subnets(&self) -> String {
        self.seeded.info["subnet_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// An empty group launching from the seeded template, with `tags` (key, value).
    async fn group(&self, name: &str, tags: &[(&str, &str)]) {
        self.asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_id(self.seeded.str("launch_template_id"))
                    .version("1")
                    .build(),
            )
            .min_size(0)
            .max_size(1)
            .desired_capacity(0)
            .vpc_zone_identifier(self.subnets())
            .set_tags(Some(
                tags.iter().map(|(k, v)| group_tag(name, k, v)).collect(),
            ))
            .send()
            .await
            .unwrap();
    }

    async fn tag_group(&self, name: &str, key: &str, value: &str) {
        self.asg
            .create_or_update_tags()
            .tags(group_tag(name, key, value))
            .send()
            .await
            .unwrap();
    }

    async fn rule(&self, priority: i32, host: &str, action: elb::Action) -> String {
        self.elb
            .create_rule()
            .listener_arn(self.listener().as_str())
            .priority(priority)
            .conditions(
                elb::RuleCondition::builder()
                    .field("host-header")
                    .host_header_config(
                        elb::HostHeaderConditionConfig::builder()
                            .values(host)
                            .build(),
                    )
                    .build(),
            )
            .actions(action)
            .send()
            .await
            .unwrap()
            .rules()[0]
            .rule_arn()
            .unwrap()
            .to_owned()
    }

    async fn template_version(&self, description: &str) -> i64 {
        self.ec2
            .create_launch_template_version()
            .launch_template_id(self.seeded.str("launch_template_id"))
            .source_version("1")
            .version_description(description)
            .launch_template_data(
                ec2::RequestLaunchTemplateData::builder()
                    .image_id(self.seeded.image(1))
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .launch_template_version()
            .unwrap()
            .version_number()
            .unwrap()
    }

    /// A launch template named `name` (not a lock made by greenlight), tagged `tags`.
    async fn template(&self, name: &str, tags: &[(&str, &str)]) -> String {
        self.ec2
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(
                ec2::RequestLaunchTemplateData::builder()
                    .image_id(self.seeded.image(0))
                    .build(),
            )
            .set_tag_specifications((!tags.is_empty()).then(|| {
                vec![
                    ec2::TagSpecification::builder()
                        .resource_type(ec2::ResourceType::LaunchTemplate)
                        .set_tags(Some(
                            tags.iter()
                                .map(|(k, v)| ec2::Tag::builder().key(*k).value(*v).build())
                                .collect(),
                        ))
                        .build(),
                ]
            }))
            .send()
            .await
            .unwrap()
            .launch_template()
            .unwrap()
            .launch_template_id()
            .unwrap()
            .to_owned()
    }
}

fn group_tag(group: &str, key: &str, value: &str) -> asg::Tag {
    asg::Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(key)
        .value(value)
        .propagate_at_launch(false)
        .build()
}

fn forward(tg: &TargetGroupArn) -> elb::Action {
    elb::Action::builder()
        .r#type(elb::ActionTypeEnum::Forward)
        .target_group_arn(tg.as_str())
        .build()
}

fn weighted(pairs: &[(&TargetGroupArn, i32)]) -> elb::Action {
    elb::Action::builder()
        .r#type(elb::ActionTypeEnum::Forward)
        .forward_config(
            elb::ForwardActionConfig::builder()
                .set_target_groups(Some(
                    pairs
                        .iter()
                        .map(|(tg, w)| {
                            elb::TargetGroupTuple::builder()
                                .target_group_arn(tg.as_str())
                                .weight(*w)
                                .build()
                        })
                        .collect(),
                ))
                .build(),
        )
        .build()
}

fn forwards(pairs: &[(&TargetGroupArn, u16)]) -> Vec<Forward> {
    pairs
        .iter()
        .map(|(tg, w)| Forward {
            target_group: (*tg).clone(),
            weight: Weight::new(*w).unwrap(),
        })
        .collect()
}

fn by_owner(found: Vec<ListenerForward>) -> BTreeMap<String, Vec<Forward>> {
    let count = found.len();
    let map: BTreeMap<String, Vec<Forward>> =
        found.into_iter().map(|f| (f.owner, f.forwards)).collect();
    assert_eq!(map.len(), count, "one forward per owner");
    map
}

const SERVICE_TAG: &str = "greenlight:service";

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn tagged_fleets_filter_by_the_service_tag_and_read_every_page() {
    let s = session();
    let w = World::new(&s, "checkout", &[]).await;
    let svc = |name: &str| ServiceName::parse(name).unwrap();
    let blue = w.seeded.fleet("blue");
    let old = w.seeded.fleet("old");
    let other = format!("{}-other", w.seeded.service);
    w.tag_group(&blue, SERVICE_TAG, &w.seeded.service).await;
    w.group(&old, &[(SERVICE_TAG, &w.seeded.service)]).await;
    w.group(&other, &[(SERVICE_TAG, "payments")]).await;
    // Neither carries greenlight:service: one has the service as another tag's value, one has
    // no tags at all.
    let svc_name = w.seeded.service.clone();
    w.group(&format!("{svc_name}-decoy-owner"), &[("owner", &svc_name)])
        .await;
    w.group(&format!("{svc_name}-decoy-untagged"), &[]).await;

    let service = svc(&w.seeded.service);
    let (found, sent) = record(&s, w.cloud.tagged_fleets(Some(&service))).await;
    let found = found.unwrap();
    let names: BTreeSet<&str> = found.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from([blue.as_str(), old.as_str()]));
    let summary = found.iter().find(|f| f.name.as_str() == blue).unwrap();
    assert_eq!(summary.capacity.desired, 2);
    assert_eq!(summary.instances.len(), 2);
    assert_eq!(summary.target_groups, [w.tg(0)]);
    assert_eq!(
        summary.tags.get(SERVICE_TAG).map(String::as_str),
        Some(w.seeded.service.as_str())
    );
    assert_eq!(
        summary.tags.get("team").map(String::as_str),
        Some("payments")
    );
    assert!(!summary.deleting);
    if let Some(sent) = sent {
        assert_eq!(actions(&sent), ["DescribeAutoScalingGroups"]);
        assert_eq!(sent[0].param("MaxRecords"), Some("100"));
        assert_eq!(
            sent[0].param("Filters.member.1.Name"),
            Some("tag:greenlight:service")
        );
        assert_eq!(
            sent[0].param("Filters.member.1.Values.member.1"),
            Some(w.seeded.service.as_str())
        );
    }

    let (all, sent) = record(&s, w.cloud.tagged_fleets(None)).await;
    // On an endpoint that keeps state between runs, other runs' fleets are listed too.
    let names: BTreeSet<String> = all
        .unwrap()
        .into_iter()
        .map(|f| f.name.to_string())
        .filter(|n| n.starts_with(&svc_name))
        .collect();
    assert_eq!(names, BTreeSet::from([blue.clone(), old.clone(), other]));
    if let Some(sent) = sent {
        assert_eq!(actions(&sent), ["DescribeAutoScalingGroups"]);
        assert_eq!(sent[0].param("Filters.member.1.Name"), Some("tag-key"));
        assert_eq!(
            sent[0].param("Filters.member.1.Values.member.1"),
            Some(SERVICE_TAG)
        );
    }

    let nobody = svc("nobody");
    assert_eq!(w.cloud.tagged_fleets(Some(&nobody)).await.unwrap(), []);

    // A deleted fleet is gone from the answer (moto deletes at once; AWS lists a group being
    // deleted for a while, with Status "Delete in progress", read as `deleting`).
    w.asg
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&old)
        .force_delete(true)
        .send()
        .await
        .unwrap();
    let left = w.cloud.tagged_fleets(Some(&service)).await.unwrap();
    assert!(left.iter().all(|f| f.name.as_str() != old), "{left:?}");

    // More groups of the service than one page holds: every page is read, each with the
    // filter and 100 records a page.
    let mut expected = BTreeSet::from([blue.clone()]);
    for n in 0..110 {
        let name = format!("{}-r{n}", w.seeded.service);
        w.group(&name, &[(SERVICE_TAG, &w.seeded.service)]).await;
        expected.insert(name);
    }
    let (found, sent) = record(&s, w.cloud.tagged_fleets(Some(&service))).await;
    let names: BTreeSet<String> = found
        .unwrap()
        .into_iter()
        .map(|f| f.name.to_string())
        .collect();
    assert_eq!(names, expected);
    if let Some(sent) = sent {
        assert_eq!(
            actions(&sent),
            ["DescribeAutoScalingGroups", "DescribeAutoScalingGroups"]
        );
        assert!(sent[1].params.contains_key("NextToken"), "{:?}", sent[1]);
        for request in &sent {
            assert_eq!(request.param("MaxRecords"), Some("100"));
            assert_eq!(
                request.param("Filters.member.1.Name"),
                Some("tag:greenlight:service")
            );
        }
    }
}

#[tokio::test]
async fn listeners_are_those_of_the_load_balancer() {
    let s = session();
    let w = World::new(&s, "checkout", &["--test-listener"]).await;
    let lb = w.seeded.str("load_balancer_arn");
    // Another load balancer in the same subnets, with its own listener: not ours.
    let other_lb = w
        .elb
        .create_load_balancer()
        .name(format!("{}-else", w.seeded.service))
        .set_subnets(Some(w.subnets().split(',').map(str::to_owned).collect()))
        .r#type(elb::LoadBalancerTypeEnum::Application)
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let other_listener = w
        .elb
        .create_listener()
        .load_balancer_arn(&other_lb)
        .protocol(elb::ProtocolEnum::Http)
        .port(80)
        .default_actions(forward(&w.tg(1)))
        .send()
        .await
        .unwrap()
        .listeners()[0]
        .listener_arn()
        .unwrap()
        .to_owned();

    let (found, sent) = record(&s, w.cloud.listeners(&lb)).await;
    let found: BTreeSet<String> = found.unwrap().into_iter().map(|l| l.to_string()).collect();
    assert_eq!(
        found,
        BTreeSet::from([
            w.seeded.str("listener_arn"),
            w.seeded.str("test_listener_arn")
        ])
    );
    if let Some(sent) = sent {
        assert_eq!(actions(&sent), ["DescribeListeners"]);
        assert_eq!(sent[0].param("LoadBalancerArn"), Some(lb.as_str()));
    }
    let theirs = w.cloud.listeners(&other_lb).await.unwrap();
    assert_eq!(
        theirs.iter().map(ListenerArn::as_str).collect::<Vec<_>>(),
        [other_listener.as_str()]
    );

    let gone = lb.replace(&lb[lb.rfind('/').unwrap() + 1..], "0123456789abcdef");
    let err = w.cloud.listeners(&gone).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
    assert_eq!(err.operation, "DescribeListeners");
}

#[tokio::test]
async fn listener_forwards_are_the_default_action_and_every_rule() {
    let s = session();
    let w = World::new(&s, "checkout", &["--rule"]).await;
    let (a, b) = (w.tg(0), w.tg(1));
    let listener = w.listener();
    let seeded_rule = w.seeded.str("rule_arn");
    let split = w
        .rule(20, "split.example.com", weighted(&[(&a, 90), (&b, 10)]))
        .await;
    let drained = w
        .rule(25, "drained.example.com", weighted(&[(&a, 0), (&b, 1)]))
        .await;
    // A rule that forwards nowhere has no forward to report.
    w.rule(
        30,
        "fixed.example.com",
        elb::Action::builder()
            .r#type(elb::ActionTypeEnum::FixedResponse)
            .fixed_response_config(
                elb::FixedResponseActionConfig::builder()
                    .status_code("503")
                    .build(),
            )
            .build(),
    )
    .await;

    let (found, sent) = record(&s, w.cloud.listener_forwards(&listener)).await;
    let found = by_owner(found.unwrap());
    let expected = BTreeMap::from([
        // The default action (a plain forward: weight 1), owned by the listener.
        (listener.to_string(), forwards(&[(&a, 1)])),
        (seeded_rule.clone(), forwards(&[(&a, 1)])),
        (split.clone(), forwards(&[(&a, 90), (&b, 10)])),
        (drained, forwards(&[(&a, 0), (&b, 1)])),
    ]);
    assert_eq!(found, expected);
    if let Some(sent) = sent {
        assert_eq!(actions(&sent), ["DescribeRules"]);
        assert_eq!(sent[0].param("ListenerArn"), Some(listener.as_str()));
    }

    // The default action after a weighted ModifyListener.
    w.elb
        .modify_listener()
        .listener_arn(listener.as_str())
        .default_actions(weighted(&[(&a, 3), (&b, 7)]))
        .send()
        .await
        .unwrap();
    let found = by_owner(w.cloud.listener_forwards(&listener).await.unwrap());
    assert_eq!(found[listener.as_str()], forwards(&[(&a, 3), (&b, 7)]));

    // More rules than one page of DescribeRules: every page is read.
    for priority in 100..160 {
        w.rule(priority, &format!("h{priority}.example.com"), forward(&b))
            .await;
    }
    let (found, sent) = record(&s, w.cloud.listener_forwards(&listener)).await;
    let found = by_owner(found.unwrap());
    assert_eq!(found.len(), 4 + 60);
    assert_eq!(found[&split], forwards(&[(&a, 90), (&b, 10)]));
    assert_eq!(
        found
            .values()
            .filter(|f| **f == forwards(&[(&b, 1)]))
            .count(),
        60
    );
    if let Some(sent) = sent {
        assert_eq!(actions(&sent), ["DescribeRules", "DescribeRules"]);
        assert!(sent[1].params.contains_key("Marker"), "{:?}", sent[1]);
    }

    let gone = ListenerArn::parse(&listener.as_str().replace(
        &listener.as_str()[listener.as_str().rfind('/').unwrap() + 1..],
        "0123456789abcdef",
    ))
    .unwrap();
    let err = w.cloud.listener_forwards(&gone).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
    assert_eq!(err.operation, "DescribeRules");
}

#[tokio::test]
async fn deregistration_delay_is_the_target_group_attribute() {
    let s = session();
    let w = World::new(&s, "checkout", &["--deregistration-delay", "7"]).await;
    let (a, b) = (w.tg(0), w.tg(1));
    let (delay, sent) = record(&s, w.cloud.deregistration_delay(&a)).await;
    assert_eq!(delay.unwrap(), Duration::from_secs(7));
    if let Some(sent) = sent {
        assert_eq!(actions(&sent), ["DescribeTargetGroupAttributes"]);
        assert_eq!(sent[0].param("TargetGroupArn"), Some(a.as_str()));
    }
    w.elb
        .modify_target_group_attributes()
        .target_group_arn(b.as_str())
        .attributes(
            elb::TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value("0")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        w.cloud.deregistration_delay(&b).await.unwrap(),
        Duration::ZERO
    );

    // A target group that never set it has AWS's default.
    let vpc = w.seeded.str("vpc_id");
    let fresh = w
        .elb
        .create_target_group()
        .name(format!("{}-fresh", w.seeded.service))
        .protocol(elb::ProtocolEnum::Http)
        .port(80)
        .vpc_id(vpc)
        .target_type(elb::TargetTypeEnum::Instance)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    let fresh = TargetGroupArn::parse(&fresh).unwrap();
    assert_eq!(
        w.cloud.deregistration_delay(&fresh).await.unwrap(),
        Duration::from_secs(300)
    );

    w.elb
        .delete_target_group()
        .target_group_arn(fresh.as_str())
        .send()
        .await
        .unwrap();
    let err = w.cloud.deregistration_delay(&fresh).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
    assert_eq!(err.operation, "DescribeTargetGroupAttributes");
}

#[tokio::test]
async fn launch_template_versions_are_listed_and_deleted_in_pages() {
    let s = session();
    let w = World::new(&s, "checkout", &[]).await;
    let template = w.seeded.str("launch_template_id");
    // 1 (seeded, the default) + 201: more than a page of 200, and more than one delete takes.
    for n in 2..=202 {
        assert_eq!(w.template_version(&format!("release r{n}")).await, n);
    }

    let (versions, sent) = record(&s, w.cloud.launch_template_versions(&template)).await;
    let versions = versions.unwrap();
    let numbers: Vec<u64> = versions.iter().map(|v| v.number).collect();
    assert_eq!(numbers, (1..=202).collect::<Vec<_>>());
    assert!(versions.iter().all(|v| v.template_id == template));
    assert_eq!(versions[0].image_id, Some(w.seeded.image(0)));
    assert_eq!(
        versions[0].description.as_deref(),
        Some("seed: first release")
    );
    assert_eq!(versions[41].image_id, Some(w.seeded.image(1)));
    assert_eq!(versions[41].description.as_deref(), Some("release r42"));
    if let Some(sent) = sent {
        assert_eq!(
            actions(&sent),
            [
                "DescribeLaunchTemplateVersions",
                "DescribeLaunchTemplateVersions"
            ]
        );
        for request in &sent {
            assert_eq!(request.param("LaunchTemplateId"), Some(template.as_str()));
            assert_eq!(request.param("MaxResults"), Some("200"));
        }
        assert!(sent[1].params.contains_key("NextToken"), "{:?}", sent[1]);
    }

    // 201 versions: two calls, of 200 and 1.
    let doomed: Vec<u64> = (2..=202).collect();
    let (deleted, sent) = record(
        &s,
        w.cloud.delete_launch_template_versions(&template, &doomed),
    )
    .await;
    deleted.unwrap();
    if let Some(sent) = sent {
        assert_eq!(
            actions(&sent),
            [
                "DeleteLaunchTemplateVersions",
                "DeleteLaunchTemplateVersions"
            ]
        );
        let sizes: Vec<usize> = sent
            .iter()
            .map(|r| {
                assert_eq!(r.param("LaunchTemplateId"), Some(template.as_str()));
                r.params
                    .keys()
                    .filter(|k| k.starts_with("LaunchTemplateVersion."))
                    .count()
            })
            .collect();
        assert_eq!(sizes, [200, 1]);
        assert_eq!(sent[1].param("LaunchTemplateVersion.1"), Some("202"));
    }
    let left = w.cloud.launch_template_versions(&template).await.unwrap();
    assert_eq!(left.iter().map(|v| v.number).collect::<Vec<_>>(), [1]);

    // Versions already gone count as deleted; nothing to delete sends nothing.
    w.cloud
        .delete_launch_template_versions(&template, &[5, 202])
        .await
        .unwrap();
    let (nothing, sent) = record(&s, w.cloud.delete_launch_template_versions(&template, &[])).await;
    nothing.unwrap();
    if let Some(sent) = sent {
        assert!(sent.is_empty(), "{:?}", actions(&sent));
    }

    // The default version is refused: an error naming the version and EC2's code, after the
    // versions that could go went.
    let kept = w.template_version("kept").await;
    let doomed = w.template_version("doomed").await;
    let u = |n: i64| u64::try_from(n).unwrap();
    let err = w
        .cloud
        .delete_launch_template_versions(&template, &[1, u(doomed)])
        .await
        .unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::InvalidRequest, "{err}");
    assert_eq!(err.operation, "DeleteLaunchTemplateVersions");
    assert_eq!(err.code.as_deref(), Some("unexpectedError"), "{err}");
    assert!(err.message.contains("version 1 "), "{err}");
    assert!(err.message.contains(&template), "{err}");
    let left = w.cloud.launch_template_versions(&template).await.unwrap();
    assert_eq!(
        left.iter().map(|v| v.number).collect::<Vec<_>>(),
        [1, u(kept)]
    );

    // A template that is gone has no versions left to delete; listing it is NotFound.
    let missing = "lt-0123456789abcdef0";
    w.cloud
        .delete_launch_template_versions(missing, &[2, 3])
        .await
        .unwrap();
    let err = w.cloud.launch_template_versions(missing).await.unwrap_err();
    assert_eq!(err.kind, CloudErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn locks_are_every_greenlight_lock_template_with_tags() {
    let s = session();
    let w = World::new(&s, "checkout", &[]).await;
    let svc = w.seeded.service.clone();
    // Ours: on an endpoint that keeps state between runs, other runs' locks are listed too.
    let ours = |found: Vec<greenlight::core::cloud::LockObject>| {
        found
            .into_iter()
            .filter(|l| l.name.starts_with(&format!("greenlight-lock.{svc}")))
            .map(|l| (l.name, (l.id, l.tags)))
            .collect::<BTreeMap<_, _>>()
    };
    let tags = |service: &str| {
        vec![
            ("greenlight:lock".to_owned(), service.to_owned()),
            ("greenlight:lock-holder".to_owned(), "ci@runner".to_owned()),
            (
                "greenlight:lock-token".to_owned(),
                format!("token-{service}"),
            ),
        ]
    };
    let (first, second) = (svc.clone(), format!("{svc}-payments"));
    let first_id = w
        .cloud
        .create_lock(&format!("greenlight-lock.{first}"), &tags(&first), "tok-1")
        .await
        .unwrap();
    let second_id = w
        .cloud
        .create_lock(
            &format!("greenlight-lock.{second}"),
            &tags(&second),
            "tok-2",
        )
        .await
        .unwrap();
    // Launch templates that are not locks: the seeded one, and names that only look alike.
    w.template(
        &format!("greenlight-locksmith-{svc}"),
        &[("greenlight:lock-holder", "x")],
    )
    .await;
    w.template(&format!("my-greenlight-lock.{svc}"), &[]).await;

    let (found, sent) = record(&s, w.cloud.locks()).await;
    let found = found.unwrap();
    if s.emulator.hooks {
        assert_eq!(found.len(), 2, "{found:?}");
    }
    let expected = BTreeMap::from([
        (
            format!("greenlight-lock.{first}"),
            (first_id.clone(), tags(&first).into_iter().collect()),
        ),
        (
            format!("greenlight-lock.{second}"),
            (second_id, tags(&second).into_iter().collect()),
        ),
    ]);
    assert_eq!(ours(found), expected);
    if let Some(sent) = sent {
        assert_eq!(actions(&sent), ["DescribeLaunchTemplates"]);
        assert_eq!(sent[0].param("Filter.1.Name"), Some("launch-template-name"));
        assert_eq!(sent[0].param("Filter.1.Value.1"), Some("greenlight-lock.*"));
        assert_eq!(sent[0].param("MaxResults"), Some("200"));
    }

    // Tags as they are now, and a deleted lock is gone.
    w.cloud
        .tag_lock(
            &first_id,
            &[("greenlight:lock-expires-at".to_owned(), "later".to_owned())],
        )
        .await
        .unwrap();
    let found = ours(w.cloud.locks().await.unwrap());
    let (_, first_tags) = &found[&format!("greenlight-lock.{first}")];
    assert_eq!(
        first_tags
            .get("greenlight:lock-expires-at")
            .map(String::as_str),
        Some("later")
    );
    w.cloud.delete_lock(&first_id).await.unwrap();
    let names: Vec<String> = ours(w.cloud.locks().await.unwrap()).into_keys().collect();
    assert_eq!(names, [format!("greenlight-lock.{second}")]);

    // More locks than a page of 200: every page is read.
    for n in 0..200 {
        w.template(
            &format!("greenlight-lock.{svc}-n{n}"),
            &[("greenlight:lock", "svc")],
        )
        .await;
    }
    let (found, sent) = record(&s, w.cloud.locks()).await;
    assert_eq!(ours(found.unwrap()).len(), 201);
    if let Some(sent) = sent {
        assert_eq!(
            actions(&sent),
            ["DescribeLaunchTemplates", "DescribeLaunchTemplates"]
        );
        assert!(sent[1].params.contains_key("NextToken"), "{:?}", sent[1]);
        assert_eq!(sent[1].param("Filter.1.Value.1"), Some("greenlight-lock.*"));
    }
}
