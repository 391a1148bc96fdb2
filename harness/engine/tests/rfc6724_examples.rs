//! RFC 6724 section 10.1 (source) and 10.2 (destination) examples, each as a one-interface
//! scenario run through the `rfc6724` profile. The destination examples run in both input
//! orders, as Go's `TestSortByRFC6724` does.

use std::net::IpAddr;

use addrsel_engine::trace::Trace;
use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

fn source(addresses: &str, dst: &str) -> String {
    let text = format!(
        r#"
name = "t"
[[interfaces]]
name = "eth0"
addresses = [{addresses}]
[[routes]]
to = "::/0"
dev = "eth0"
[[probes]]
id = "p"
connect = "{dst}"
"#
    );
    let s = parse_scenario("t.toml", &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let p = predict(&s, &Profile::Rfc6724);
    match &p.probes[0].result.outcome {
        Outcome::Connect { source: Some(a), .. } => a.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn section_10_1_source_selection() {
    let cases = [
        // (candidates, destination, expected)
        (r#""2001:db8:3::1/64", "fe80::1/64""#, "2001:db8:1::1", "2001:db8:3::1"),
        (r#""2001:db8:3::1/64", "fe80::1/64""#, "ff05::1%eth0", "2001:db8:3::1"),
        (
            r#"{ address = "2001:db8:1::1/64", deprecated = true }, "2001:db8:2::1/64""#,
            "2001:db8:1::1",
            "2001:db8:1::1",
        ),
        (r#"{ address = "fe80::2/64", deprecated = true }, "2001:db8:1::1/64""#, "fe80::1%eth0", "fe80::2"),
        (r#""2001:db8:1::2/64", "2001:db8:3::2/64""#, "2001:db8:1::1", "2001:db8:1::2"),
        (r#""2001:db8:1::2/64", { address = "2001:db8:3::2/64", home = true }"#, "2001:db8:1::1", "2001:db8:3::2"),
        (
            r#"{ address = "2002:c633:6401::d5e3:7953:13eb:22e8/64", temporary = true }, "2001:db8:1::2/64""#,
            "2002:c633:6401::1",
            "2002:c633:6401:0:d5e3:7953:13eb:22e8",
        ),
        (
            r#""2001:db8:1::2/64", { address = "2001:db8:1::d5e3:7953:13eb:22e8/64", temporary = true }"#,
            "2001:db8:1::d5e3:0:0:1",
            "2001:db8:1:0:d5e3:7953:13eb:22e8",
        ),
    ];
    for (i, (cands, dst, want)) in cases.iter().enumerate() {
        assert_eq!(source(cands, dst), *want, "example {}", i + 1);
    }
}

fn order(profile: &Profile, addresses: &str, dsts: &[&str], extra: &str) -> Vec<String> {
    sorted(profile, addresses, dsts, extra).into_iter().map(|(d, _)| d).collect()
}

/// The sorted destinations, each with the source the sort used for it.
fn sorted(profile: &Profile, addresses: &str, dsts: &[&str], extra: &str) -> Vec<(String, String)> {
    let list: Vec<String> = dsts.iter().map(|d| format!("\"{d}\"")).collect();
    let text = format!(
        r#"
name = "t"
[[interfaces]]
name = "eth0"
addresses = [{addresses}]
[[routes]]
to = "::/0"
dev = "eth0"
[[routes]]
to = "0.0.0.0/0"
dev = "eth0"
[hosts]
"h.example" = [{}]
[[probes]]
id = "r"
resolve = "h.example"
{extra}
"#,
        list.join(", ")
    );
    let s = parse_scenario("t.toml", &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let p = predict(&s, profile);
    let Trace::Resolve(trace) = &p.probes[0].trace else { panic!("{:?}", p.probes[0].trace) };
    let source = |d: &IpAddr| {
        let e = trace.entries.iter().find(|e| e.dst == *d).expect("every destination has an entry");
        e.source.map_or("none".into(), |a| a.to_string())
    };
    match &p.probes[0].result.outcome {
        Outcome::Resolve { order, .. } => order.iter().map(|d| (d.to_string(), source(d))).collect(),
        other => panic!("{other:?}"),
    }
}

/// (sources, destinations in RFC order = expected result)
pub const SECTION_10_2: [(&str, [&str; 2]); 9] = [
    (r#""2001:db8:1::2/64", "fe80::1/64", "169.254.13.78/16""#, ["2001:db8:1::1", "198.51.100.121"]),
    (r#""fe80::1/64", "198.51.100.117/24""#, ["198.51.100.121", "2001:db8:1::1"]),
    (r#""2001:db8:1::2/64", "fe80::1/64", "10.1.2.4/8""#, ["2001:db8:1::1", "10.1.2.3"]),
    (r#""2001:db8:1::2/64", "fe80::2/64""#, ["fe80::1", "2001:db8:1::1"]),
    (
        r#""2001:db8:1::2/64", { address = "2001:db8:3::1/64", home = true }, "fe80::2/64""#,
        ["2001:db8:1::1", "fe80::1"],
    ),
    (r#""2001:db8:1::2/64", { address = "fe80::2/64", deprecated = true }"#, ["2001:db8:1::1", "fe80::1"]),
    (r#""2001:db8:1::2/64", "2001:db8:3f44::2/64", "fe80::2/64""#, ["2001:db8:1::1", "2001:db8:3ffe::1"]),
    (r#""2002:c633:6401::2/64", "fe80::2/64""#, ["2002:c633:6401::1", "2001:db8:1::1"]),
    (r#""2002:c633:6401::2/64", "2001:db8:1::2/64", "fe80::2/64""#, ["2001:db8:1::1", "2002:c633:6401::1"]),
];

/// The sources section 10.2 gives in each example's result, in result order.
const SECTION_10_2_SOURCES: [[&str; 2]; 9] = [
    ["2001:db8:1::2", "169.254.13.78"],
    ["198.51.100.117", "fe80::1"],
    ["2001:db8:1::2", "10.1.2.4"],
    ["fe80::2", "2001:db8:1::2"],
    ["2001:db8:3::1", "fe80::2"],
    ["2001:db8:1::2", "fe80::2"],
    ["2001:db8:1::2", "2001:db8:3f44::2"],
    ["2002:c633:6401::2", "2002:c633:6401::2"],
    ["2001:db8:1::2", "2002:c633:6401::2"],
];

#[test]
fn section_10_2_chosen_sources() {
    for (i, ((srcs, want), sources)) in SECTION_10_2.iter().zip(SECTION_10_2_SOURCES).enumerate() {
        let got = sorted(&Profile::Rfc6724, srcs, want, "");
        let expected: Vec<(String, String)> =
            want.iter().zip(sources).map(|(d, s)| (d.to_string(), s.to_string())).collect();
        assert_eq!(got, expected, "example {}", i + 1);
    }
}

/// Rule 6 (precedence) comes before rule 8 (smaller scope): a site-local destination
/// (precedence 1, scope 5) goes after a global one (precedence 40, scope 14) although its
/// scope is smaller. In the RFC profile and FreeBSD's, whose tables both give fec0::/10
/// precedence 1 (glibc's table has no fec0::/10 row: there both are 40 and rule 8 decides).
#[test]
fn precedence_before_scope() {
    let srcs = r#""2001:db8:1::2/64", "fec0::2/64""#;
    for profile in [Profile::Rfc6724, Profile::Freebsd] {
        for dsts in [["fec0::1", "2001:db8:1::1"], ["2001:db8:1::1", "fec0::1"]] {
            let got = sorted(&profile, srcs, &dsts, "");
            assert_eq!(
                got,
                [("2001:db8:1::1".to_string(), "2001:db8:1::2".to_string()), ("fec0::1".into(), "fec0::2".into())],
                "{} from {dsts:?}",
                profile.name()
            );
        }
    }
}

#[test]
fn section_10_2_destination_sorting_both_input_orders() {
    for (i, (srcs, want)) in SECTION_10_2.iter().enumerate() {
        let forward = order(&Profile::Rfc6724, srcs, want, "");
        assert_eq!(forward, *want, "example {}", i + 1);
        let reversed = order(&Profile::Rfc6724, srcs, &[want[1], want[0]], "");
        assert_eq!(reversed, *want, "example {} reversed", i + 1);
    }
}

#[test]
fn go_issue_13283_ipv4_rule_9_keeps_resolver_order() {
    // Six IPv4 destinations all reached from 10.2.3.4: glibc limits rule 9 to the source's
    // subnet, so none is promoted and the resolver's order stays (Go and FreeBSD skip rule 9
    // for IPv4 entirely).
    let dsts = ["54.83.193.112", "184.72.238.214", "23.23.172.185", "75.101.148.21", "23.23.134.56", "23.21.50.150"];
    let srcs = r#""10.2.3.4/24", "fd00::2/64""#;
    let linux = Profile::from_name("linux").unwrap();
    assert_eq!(order(&linux, srcs, &dsts, ""), dsts);
    assert_eq!(order(&Profile::Freebsd, srcs, &dsts, ""), dsts);
}
