//! The router (a listener's default action or one listener rule) and how it splits traffic.
//!
//! Traffic is always modelled as weights per target group: blue/green is the 0/100 case, a
//! canary step is any other split, so both strategies read and write the same state.

use std::fmt;

use serde::Serialize;

use super::names::{ListenerArn, RuleArn, TargetGroupArn};
use super::plan::Percent;

/// The kind of load balancer a router belongs to, from its ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancerKind {
    Application,
    Network,
    Gateway,
}

/// Which ALB object carries the forward action greenlight flips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "arn", rename_all = "snake_case")]
pub enum RouterId {
    /// The listener's default action.
    Listener(ListenerArn),
    /// One listener rule (host/path-based routing).
    Rule(RuleArn),
}

impl RouterId {
    fn arn(&self) -> &str {
        match self {
            RouterId::Listener(arn) => arn.as_str(),
            RouterId::Rule(arn) => arn.as_str(),
        }
    }

    /// `app`, `net` or `gwy`, the part after `listener/` (or `listener-rule/`) in the ARN.
    pub fn load_balancer_kind(&self) -> Option<LoadBalancerKind> {
        let (_, rest) = self.arn().split_once(":listener")?;
        let rest = rest
            .strip_prefix("-rule")
            .unwrap_or(rest)
            .strip_prefix('/')?;
        match rest.split('/').next()? {
            "app" => Some(LoadBalancerKind::Application),
            "net" => Some(LoadBalancerKind::Network),
            "gwy" => Some(LoadBalancerKind::Gateway),
            _ => None,
        }
    }

    /// The load balancer the listener or rule belongs to, derived from the ARN:
    /// `…:listener/app/<lb>/<lb-id>/<listener-id>` → `…:loadbalancer/app/<lb>/<lb-id>`.
    pub fn load_balancer_arn(&self) -> Option<String> {
        let (prefix, rest) = self.arn().split_once(":listener")?;
        let rest = rest
            .strip_prefix("-rule")
            .unwrap_or(rest)
            .strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [kind, name, id, ..] = parts.as_slice() else {
            return None;
        };
        Some(format!("{prefix}:loadbalancer/{kind}/{name}/{id}"))
    }
}

impl fmt::Display for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // nginx's router goes by an ARN only so that the core can treat it like an ALB's;
            // people read what it is.
            RouterId::Listener(arn) if arn.as_str().starts_with(super::nginx::ARN_PREFIX) => {
                let service = arn.as_str().rsplit('/').nth(1).unwrap_or_default();
                write!(f, "nginx (greenlight's include for service {service})")
            }
            RouterId::Listener(arn) => write!(f, "listener {arn}"),
            RouterId::Rule(arn) => write!(f, "rule {arn}"),
        }
    }
}

/// A forward weight, as ELBv2 accepts it: 0 to 999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Weight(u16);

impl Weight {
    pub const MAX: u16 = 999;
    pub const ZERO: Weight = Weight(0);
    /// The weight greenlight gives the one live slot; any positive value means "all traffic"
    /// when the other slot has zero.
    pub const ALL: Weight = Weight(1);

    pub fn new(value: u16) -> Option<Self> {
        (value <= Self::MAX).then_some(Self(value))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// One target group and its share of the router's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forward {
    pub target_group: TargetGroupArn,
    pub weight: Weight,
}

/// What a router write does to the forward action's target-group stickiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "seconds", rename_all = "snake_case")]
pub enum Stickiness {
    /// Leave it as the router has it.
    Keep,
    /// Turn it on for this many seconds: while both slots take traffic, a client stays on one.
    On(u32),
    /// Turn it off, so that moving all traffic really moves every client.
    Off,
}

/// One router write: which target groups get which share. `expected` is the forward action the
/// deciding observation saw; the write is refused if the router no longer has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterWrite {
    #[serde(skip)]
    pub expected: Vec<Forward>,
    #[serde(skip)]
    pub forwards: Vec<Forward>,
    #[serde(skip)]
    pub stickiness: Stickiness,
}

/// What the router does with a request, as far as greenlight cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RouterAction {
    /// Forwards to these target groups by weight (a plain `TargetGroupArn` forward is one
    /// entry with weight 1).
    Forward { forwards: Vec<Forward> },
    /// Redirect, fixed response, or anything else greenlight does not manage.
    Other { action_type: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterState {
    pub id: RouterId,
    pub action: RouterAction,
}

impl RouterState {
    /// The weight the router gives `target_group` (zero when absent).
    pub fn weight_of(&self, target_group: &TargetGroupArn) -> Weight {
        match &self.action {
            RouterAction::Forward { forwards } => forwards
                .iter()
                .filter(|f| &f.target_group == target_group)
                .map(|f| f.weight)
                .max()
                .unwrap_or(Weight::ZERO),
            RouterAction::Other { .. } => Weight::ZERO,
        }
    }

    /// Whether the forward action lists `target_group`, at any weight.
    pub fn names(&self, target_group: &TargetGroupArn) -> bool {
        match &self.action {
            RouterAction::Forward { forwards } => {
                forwards.iter().any(|f| &f.target_group == target_group)
            }
            RouterAction::Other { .. } => false,
        }
    }

    /// The forwards, empty when the router does not forward.
    pub fn forwards(&self) -> &[Forward] {
        match &self.action {
            RouterAction::Forward { forwards } => forwards,
            RouterAction::Other { .. } => &[],
        }
    }

    /// `target_group`'s share as an exact percent, when it is one (greenlight's own writes
    /// always sum to 100; a split someone else made may not be a whole percent).
    pub fn exact_percent(&self, target_group: &TargetGroupArn) -> Option<Percent> {
        let total: u32 = self
            .forwards()
            .iter()
            .map(|f| u32::from(f.weight.get()))
            .sum();
        if total == 0 {
            return None;
        }
        let weight = u32::from(self.weight_of(target_group).get());
        (weight * 100 % total == 0)
            .then(|| Percent::new((weight * 100 / total) as u8))
            .flatten()
    }

    /// Percent of traffic to `target_group`, rounded down; for people and JSON.
    pub fn percent_of(&self, target_group: &TargetGroupArn) -> u32 {
        let RouterAction::Forward { forwards } = &self.action else {
            return 0;
        };
        let total: u32 = forwards.iter().map(|f| u32::from(f.weight.get())).sum();
        if total == 0 {
            return 0;
        }
        u32::from(self.weight_of(target_group).get()) * 100 / total
    }
}

/// Index of a slot in the configured pair of target groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const BOTH: [Slot; 2] = [Slot::A, Slot::B];

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "a",
            Slot::B => "b",
        })
    }
}

/// The two target groups a service alternates between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slots([TargetGroupArn; 2]);

impl Slots {
    /// `None` when both are the same target group.
    pub fn new(a: TargetGroupArn, b: TargetGroupArn) -> Option<Self> {
        (a != b).then_some(Self([a, b]))
    }

    pub fn get(&self, slot: Slot) -> &TargetGroupArn {
        &self.0[slot.index()]
    }

    pub fn slot_of(&self, target_group: &TargetGroupArn) -> Option<Slot> {
        Slot::BOTH
            .into_iter()
            .find(|slot| self.get(*slot) == target_group)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Slot, &TargetGroupArn)> {
        Slot::BOTH.into_iter().map(|slot| (slot, self.get(slot)))
    }
}

/// Where traffic goes, classified against the configured slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// All traffic goes to one slot: the steady state between releases.
    Live(Slot),
    /// Both slots take traffic (a canary, or a hand edit).
    Split { a: Weight, b: Weight },
    /// The router forwards to a target group that is not one of the slots.
    Foreign(TargetGroupArn),
    /// The router does not forward at all (redirect, fixed response) or forwards nowhere.
    NotForwarding(String),
}

impl Routing {
    pub fn of(router: &RouterState, slots: &Slots) -> Routing {
        let forwards = match &router.action {
            RouterAction::Forward { forwards } => forwards,
            RouterAction::Other { action_type } => {
                return Routing::NotForwarding(action_type.clone());
            }
        };
        let taking: Vec<&Forward> = forwards.iter().filter(|f| f.weight.get() > 0).collect();
        if let Some(foreign) = taking
            .iter()
            .find(|f| slots.slot_of(&f.target_group).is_none())
        {
            return Routing::Foreign(foreign.target_group.clone());
        }
        let a = router.weight_of(slots.get(Slot::A));
        let b = router.weight_of(slots.get(Slot::B));
        match (a.get() > 0, b.get() > 0) {
            (true, false) => Routing::Live(Slot::A),
            (false, true) => Routing::Live(Slot::B),
            (true, true) => Routing::Split { a, b },
            (false, false) => Routing::NotForwarding("forward with every weight 0".into()),
        }
    }

    /// Why this routing is not one greenlight can release from, for people.
    pub fn describe_problem(&self, router: &RouterId, slots: &Slots) -> Option<String> {
        match self {
            Routing::Live(_) => None,
            Routing::Split { a, b } => Some(format!(
                "{router} splits traffic between both slots ({} weight {}, {} weight {}); \
                 a canary may be in progress. Route all traffic to one slot, then retry",
                slots.get(Slot::A).short_name(),
                a.get(),
                slots.get(Slot::B).short_name(),
                b.get()
            )),
            Routing::Foreign(tg) => Some(format!(
                "{router} forwards to target group {tg}, which is not one of the two \
                 [router] target_groups; fix target_groups in the config"
            )),
            Routing::NotForwarding(kind) => Some(format!(
                "{router} does not forward to a target group ({kind}); point it at one of the \
                 [router] target_groups"
            )),
        }
    }
}

/// The forward configuration that gives `green` its `share` and `stable` the rest, as weights
/// that sum to 100. Both are always named, so every later step is a weight change.
pub fn split(green: &TargetGroupArn, share: Percent, stable: &TargetGroupArn) -> Vec<Forward> {
    let weight = |p: Percent| Weight(u16::from(p.get()));
    vec![
        Forward {
            target_group: stable.clone(),
            weight: weight(share.rest()),
        },
        Forward {
            target_group: green.clone(),
            weight: weight(share),
        },
    ]
}

/// Every request to `to`, while still naming `from` at weight 0.
pub fn all_to(to: &TargetGroupArn, from: &TargetGroupArn) -> Vec<Forward> {
    split(to, Percent::ALL, from)
}

/// Whether two forward lists send the same shares to the same target groups: what a router
/// write compares against what it expected to find, and what it reads back.
pub fn same_forwards(a: &[Forward], b: &[Forward]) -> bool {
    let key = |forwards: &[Forward]| {
        let mut v: Vec<(TargetGroupArn, u16)> = forwards
            .iter()
            .map(|f| (f.target_group.clone(), f.weight.get()))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg(name: &str) -> TargetGroupArn {
        TargetGroupArn::parse(&format!(
            "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{name}/0123"
        ))
        .unwrap()
    }

    fn router(forwards: &[(&str, u16)]) -> RouterState {
        RouterState {
            id: RouterId::Listener(
                ListenerArn::parse("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/1/2")
                    .unwrap(),
            ),
            action: RouterAction::Forward {
                forwards: forwards
                    .iter()
                    .map(|(name, w)| Forward {
                        target_group: tg(name),
                        weight: Weight::new(*w).unwrap(),
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn nginx_routers_are_shown_as_nginx() {
        let service = crate::core::names::ServiceName::parse("web-api").unwrap();
        let router = RouterId::Listener(crate::core::nginx::router_arn(&service));
        assert_eq!(
            router.to_string(),
            "nginx (greenlight's include for service web-api)"
        );
    }

    #[test]
    fn routing_table() {
        let slots = Slots::new(tg("a"), tg("b")).unwrap();
        let cases: &[(&[(&str, u16)], Routing)] = &[
            (&[("a", 1)], Routing::Live(Slot::A)),
            (&[("a", 0), ("b", 100)], Routing::Live(Slot::B)),
            (&[("b", 1), ("a", 0)], Routing::Live(Slot::B)),
            (
                &[("a", 90), ("b", 10)],
                Routing::Split {
                    a: Weight::new(90).unwrap(),
                    b: Weight::new(10).unwrap(),
                },
            ),
            (&[("c", 1)], Routing::Foreign(tg("c"))),
            (&[("a", 1), ("c", 1)], Routing::Foreign(tg("c"))),
            (&[("a", 1), ("c", 0)], Routing::Live(Slot::A)),
            (
                &[("a", 0), ("b", 0)],
                Routing::NotForwarding("forward with every weight 0".into()),
            ),
        ];
        for (forwards, expected) in cases {
            assert_eq!(
                &Routing::of(&router(forwards), &slots),
                expected,
                "{forwards:?}"
            );
        }
    }

    #[test]
    fn load_balancer_of_a_router() {
        let listener = RouterId::Listener(
            ListenerArn::parse(
                "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/checkout/50dc/f2f7",
            )
            .unwrap(),
        );
        let rule = RouterId::Rule(
            RuleArn::parse(
                "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/checkout/50dc/f2f7/9a3b",
            )
            .unwrap(),
        );
        let lb = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/checkout/50dc";
        assert_eq!(listener.load_balancer_arn().as_deref(), Some(lb));
        assert_eq!(rule.load_balancer_arn().as_deref(), Some(lb));
    }

    #[test]
    fn load_balancer_kinds() {
        let kind =
            |arn: &str| RouterId::Listener(ListenerArn::parse(arn).unwrap()).load_balancer_kind();
        assert_eq!(
            kind("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/1/2"),
            Some(LoadBalancerKind::Application)
        );
        assert_eq!(
            kind("arn:aws:elasticloadbalancing:us-east-1:1:listener/net/x/1/2"),
            Some(LoadBalancerKind::Network)
        );
    }

    #[test]
    fn splits_sum_to_100_and_compare_by_share() {
        let s = split(&tg("b"), Percent::new(25).unwrap(), &tg("a"));
        assert_eq!(s.iter().map(|f| f.weight.get()).sum::<u16>(), 100);
        let r = RouterState {
            action: RouterAction::Forward {
                forwards: s.clone(),
            },
            ..router(&[])
        };
        assert_eq!(r.exact_percent(&tg("b")), Percent::new(25));
        assert_eq!(router(&[("a", 2), ("b", 1)]).exact_percent(&tg("b")), None);
        assert_eq!(
            router(&[("a", 1)]).exact_percent(&tg("a")),
            Some(Percent::ALL)
        );
        let mut reversed = s.clone();
        reversed.reverse();
        assert!(same_forwards(&s, &reversed));
        assert!(!same_forwards(&s, &all_to(&tg("b"), &tg("a"))));
    }

    #[test]
    fn percent() {
        let r = router(&[("a", 90), ("b", 10)]);
        assert_eq!(r.percent_of(&tg("a")), 90);
        assert_eq!(r.percent_of(&tg("b")), 10);
        assert_eq!(r.percent_of(&tg("c")), 0);
    }

    #[test]
    fn same_target_group_twice_is_not_a_pair_of_slots() {
        assert!(Slots::new(tg("a"), tg("a")).is_none());
    }
}
