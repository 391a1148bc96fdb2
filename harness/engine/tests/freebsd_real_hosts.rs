//! FreeBSD's side of the real-host corpus scenarios (VRFs as FIBs, multipath, DAD states, down
//! interfaces, a second copy of an address, kernel-made temporary addresses): what the model
//! predicts from FreeBSD's sources. No FreeBSD kernel has run these (none can boot where
//! addrsel is developed); each answer is the one the model's explain lines argue for.

use addrsel_engine::{Profile, predict};
use addrsel_model::results::Outcome;
use addrsel_model::{Scenario, parse_scenario, show_addr};

fn corpus(name: &str) -> Scenario {
    let path = format!("{}/../scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    parse_scenario(&path, &text).unwrap_or_else(|e| panic!("{e}")).scenario
}

fn answer(o: &Outcome) -> String {
    match o {
        Outcome::Connect { source: Some(a), .. } => show_addr(a),
        Outcome::Connect { error: Some(e), .. } => e.clone(),
        Outcome::Resolve { order, .. } => order.iter().map(show_addr).collect::<Vec<_>>().join(", "),
        other => panic!("{other:?}"),
    }
}

/// (scenario, probe, FreeBSD's answer, why)
const CASES: &[(&str, &str, &str, &str)] = &[
    // A FIB chooses routes, not sources: the leaked route's interface address, for IPv4 by
    // the nexthop's ifa and for IPv6 by rule 5 over every address.
    ("vrf-route-leak-source", "v4-through-the-leak", "10.2.0.1", "nh_ifa of the leaked route"),
    ("vrf-route-leak-source", "v6-through-the-leak", "2001:db8:2::1", "rule 5: eth2 is the outgoing interface"),
    ("vrf-route-leak-source", "v4-inside-blue", "10.1.0.1", "FIB 1's connected route"),
    ("vrf-route-leak-source", "v6-blue-unreachable-default", "ENETUNREACH", "FIB 1's -reject default"),
    ("vrf-route-leak-source", "v4-default-vrf-to-blues-subnet", "ENETUNREACH", "eth1 is in FIB 1"),
    ("vrf-route-leak-source", "v6-default-vrf-to-blues-subnet", "2001:db8:2::1", "FIB 0's default via eth2"),
    // flowid 0: always the group's first slot.
    ("multipath-sources", "v4-ecmp-default", "10.1.0.10", "nhops[0]"),
    ("multipath-sources", "v6-ecmp-default", "2001:db8:1::10", "nhops[0]"),
    ("multipath-sources", "v4-nexthop-group", "10.1.0.10", "nhops[0]"),
    // Tentative and duplicated addresses are no candidates, and FreeBSD has no ::1 fallback
    // for a global destination.
    ("dad-tentative-and-failed", "v6-remote-tentative-only", "EADDRNOTAVAIL", "no candidate"),
    ("dad-tentative-and-failed", "v6-through-dadfailed", "EADDRNOTAVAIL", "no candidate"),
    ("dad-tentative-and-failed", "bind-tentative", "EADDRNOTAVAIL", "in6_pcbbind refuses NOTREADY"),
    ("dad-tentative-and-failed", "bind-dadfailed", "EADDRNOTAVAIL", "in6_pcbbind refuses NOTREADY"),
    ("dad-tentative-and-failed", "resolve-server", "116.203.176.52, 2a01:4f8:c2c:8101::1", "no IPv6 source"),
    // Down: the IPv4 route through eth0 cannot be added, eth1's subnet is still found by
    // ifa_ifwithnet, and eth1's IPv6 address turned tentative.
    ("down-link-lends-its-address", "v4-through-eth0", "ENETUNREACH", "the route was refused"),
    ("down-link-lends-its-address", "v4-down-subnet", "10.1.0.10", "ifa_ifwithnet ignores IFF_UP"),
    ("down-link-lends-its-address", "v6-down-subnet", "2001:db8:1::10", "eth1's address is tentative"),
    // The IPv4 copy on lo0 has the loopback route; eth1's prefix route takes eth1's copy.
    ("same-address-two-interfaces", "v4-on-subnet", "192.0.2.53", "eth1's prefix route"),
    ("same-address-two-interfaces", "v4-self", "192.0.2.53", "the first copy's loopback route"),
    // use_tempaddr = 1, prefer_tempaddr = 0: rule 7 prefers the public address unless the
    // socket asks for a temporary one.
    ("privacy-addresses-mngtmpaddr", "web-privacy", "2001:db8:1::10", "prefer_tempaddr = 0"),
    ("privacy-addresses-mngtmpaddr", "lab-default-public", "2001:db8:2::10", "prefer_tempaddr = 0"),
    ("privacy-addresses-mngtmpaddr", "lab-asks-temporary", "temporary(2001:db8:2::/64)", "IPV6_PREFER_TEMPADDR"),
];

#[test]
fn freebsd_answers_for_real_host_scenarios() {
    let mut wrong = Vec::new();
    for (scenario, probe, want, why) in CASES {
        let s = corpus(scenario);
        let p = predict(&s, &Profile::Freebsd);
        let got = p.probes.iter().find(|r| r.result.probe == *probe).map(|r| answer(&r.result.outcome));
        if got.as_deref() != Some(*want) {
            wrong.push(format!("{scenario}/{probe}: {got:?}, want {want} ({why})"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The points resting on source reading alone say so, per feature.
#[test]
fn each_feature_is_marked_unverified() {
    for (scenario, probe, needle) in [
        ("vrf-route-leak-source", "v4-through-the-leak", "FIBs"),
        ("multipath-sources", "v6-ecmp-default", "ROUTE_MPATH"),
        ("down-link-lends-its-address", "v4-down-subnet", "down interfaces"),
    ] {
        let p = predict(&corpus(scenario), &Profile::Freebsd);
        let probe = p.probes.iter().find(|r| r.result.probe == probe).unwrap();
        assert!(probe.unverified().iter().any(|u| u.contains(needle)), "{scenario}/{probe:?}");
    }
}

/// The plan expects `route add` to fail exactly where the model says the route does not exist
/// (the two read the same functions, `finalize_nhop` and `rt_getifa_family`, separately).
#[test]
fn plan_and_model_agree_on_refused_routes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let s = parse_scenario(path.to_str().unwrap(), &text).unwrap_or_else(|e| panic!("{e}")).scenario;
        let notes = predict(&s, &Profile::Freebsd).notes;
        for r in &s.routes {
            let planned = addrsel_model::plan::freebsd_route_refused(&s, r).is_some();
            let modelled = notes.iter().any(|n| n.starts_with(&format!("route {}:", r.to)) && n.contains("fail"));
            assert_eq!(planned, modelled, "{}: route {}: plan {planned}, model {modelled}: {notes:?}", s.name, r.to);
            checked += usize::from(planned);
        }
    }
    assert!(checked >= 1, "no corpus route is refused on FreeBSD: the check compares nothing");
}
