//! Multipath routes on Linux: the corpus scenario `multipath-sources`. A per-boot hash picks
//! the path, so the engine predicts every path's source; an IPv6 route through a nexthop group
//! takes its source from the group's first member only.

use addrsel_engine::{LinuxProfile, Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

fn predicted() -> Vec<(String, Outcome)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/multipath-sources.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let s = parse_scenario(path, &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let p = predict(&s, &Profile::Linux(LinuxProfile::default()));
    p.probes.iter().map(|r| (r.result.probe.clone(), r.result.outcome.clone())).collect()
}

fn sources(o: &Outcome) -> (Option<String>, Vec<String>) {
    match o {
        Outcome::Connect { source, sources, .. } => {
            (source.map(|a| a.to_string()), sources.iter().map(|a| a.to_string()).collect())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_paths_source_is_possible_except_through_an_ipv6_nexthop_group() {
    let all = predicted();
    let get = |id: &str| sources(&all.iter().find(|(p, _)| p == id).expect(id).1);
    for (probe, set) in [
        ("v4-ecmp-default", ["10.1.0.10", "10.2.0.10"]),
        ("v6-ecmp-default", ["2001:db8:1::10", "2001:db8:2::10"]),
        ("v4-nexthop-group", ["10.1.0.10", "10.2.0.10"]),
    ] {
        let (first, possible) = get(probe);
        assert_eq!(possible, set, "{probe}");
        assert_eq!(first.as_deref(), Some(set[0]), "{probe}: the first path's source stands for the set");
    }
    let (one, possible) = get("v6-nexthop-group");
    assert_eq!(one.as_deref(), Some("2001:db8:1::10"));
    assert!(possible.is_empty(), "{possible:?}");
}
