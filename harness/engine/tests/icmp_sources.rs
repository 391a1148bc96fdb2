//! The source of the ICMP errors a Linux router sends, against what Linux 6.18 did in the
//! research lab (`__icmp_send`, `icmp6_send`; the t7 topology: the sender behind eth1, the
//! destination behind eth2, IPv4 routed over IPv6 next hops). Each row is a measurement, not
//! the engine's output.

use addrsel_engine::{LinuxProfile, Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

/// The router with `extra` interface lines and sysctls; probes to 203.0.113.5 from 10.0.0.1
/// and to 2001:db8:c::5 from 2001:db8:a::1.
fn router(eth1: &str, eth2: &str, lo: &str, extra: &str, return_via: &str) -> String {
    format!(
        r#"name = "r"
[[interfaces]]
name = "lo"
addresses = [{lo}]
[[interfaces]]
name = "eth1"
addresses = [{eth1}]
[[interfaces]]
name = "eth2"
addresses = [{eth2}]
[[routes]]
to = "10.0.0.0/24"
via = "{return_via}"
dev = "eth1"
[[routes]]
to = "203.0.113.0/24"
via = "2001:db8:b::2"
dev = "eth2"
[[routes]]
to = "2001:db8:c::/64"
via = "2001:db8:b::2"
[[routes]]
to = "2001:db8:a::/64"
via = "{return_via}"
dev = "eth1"
[sysctl.linux]
"net.ipv4.ip_forward" = 1
"net.ipv6.conf.all.forwarding" = 1
{extra}
[[probes]]
id = "v4"
icmp_time_exceeded = {{ from = "eth1", to = "203.0.113.5", sender = "10.0.0.1" }}
[[probes]]
id = "v6"
icmp_time_exceeded = {{ from = "eth1", to = "2001:db8:c::5", sender = "2001:db8:a::1" }}
"#
    )
}

fn answers(text: &str) -> (String, String) {
    let s = parse_scenario("r.toml", text).unwrap_or_else(|e| panic!("{e}\n{text}")).scenario;
    let p = predict(&s, &Profile::Linux(LinuxProfile::default()));
    let word = |i: usize| match &p.probes[i].result.outcome {
        Outcome::Icmp { source: Some(a), .. } => a.to_string(),
        Outcome::Icmp { .. } => "none".into(),
        other => panic!("{other:?}"),
    };
    (word(0), word(1))
}

#[test]
fn the_research_table() {
    let ll = "\"fe80::2/64\"";
    let rows = [
        // (case, eth1, eth2, lo, extra sysctls, return via, IPv4 source, IPv6 source)
        (
            "no IPv4 at all",
            "\"2001:db8:a::2/64\", \"fe80::2/64\"",
            "\"2001:db8:b::1/64\"",
            "",
            "",
            "2001:db8:a::1",
            "192.0.0.8",
            "2001:db8:a::2",
        ),
        (
            "192.0.2.1/32 on lo",
            "\"2001:db8:a::2/64\", \"fe80::2/64\"",
            "\"2001:db8:b::1/64\"",
            "\"192.0.2.1/32\"",
            "",
            "2001:db8:a::1",
            "192.0.2.1",
            "2001:db8:a::2",
        ),
        (
            "IPv4 on eth2 only",
            "\"2001:db8:a::2/64\", \"fe80::2/64\"",
            "\"2001:db8:b::1/64\", \"198.51.100.1/24\"",
            "",
            "",
            "2001:db8:a::1",
            "198.51.100.1",
            "2001:db8:a::2",
        ),
        (
            "the same, inbound ifaddr",
            "\"2001:db8:a::2/64\", \"fe80::2/64\"",
            "\"2001:db8:b::1/64\", \"198.51.100.1/24\"",
            "",
            "\"net.ipv4.icmp_errors_use_inbound_ifaddr\" = 1",
            "2001:db8:a::1",
            "198.51.100.1",
            "2001:db8:a::2",
        ),
        ("link-local only on eth1", ll, "\"2001:db8:b::1/64\"", "", "", "fe80::1", "192.0.0.8", "2001:db8:b::1"),
    ];
    let mut wrong = Vec::new();
    for (case, eth1, eth2, lo, extra, via, want4, want6) in rows {
        let got = answers(&router(eth1, eth2, lo, extra, via));
        if got != (want4.to_string(), want6.to_string()) {
            wrong.push(format!("{case}: Linux 6.18 sent ({want4}, {want6}), the engine says {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_forwarding_and_no_route_back_send_nothing() {
    let eth1 = "\"2001:db8:a::2/64\", \"fe80::2/64\"";
    let off = router(eth1, "\"2001:db8:b::1/64\"", "", "", "2001:db8:a::1")
        .replace("\"net.ipv4.ip_forward\" = 1\n\"net.ipv6.conf.all.forwarding\" = 1\n", "");
    assert_eq!(answers(&off), ("none".into(), "none".into()));
    let no_way_back = router(eth1, "\"2001:db8:b::1/64\"", "", "", "2001:db8:a::1")
        .replace("to = \"10.0.0.0/24\"", "to = \"10.7.0.0/24\"")
        .replace(
            "to = \"2001:db8:a::/64\"\nvia = \"2001:db8:a::1\"\ndev = \"eth1\"\n",
            "to = \"2001:db8:e::/64\"\nvia = \"2001:db8:a::1\"\ndev = \"eth1\"\n",
        )
        .replace("sender = \"2001:db8:a::1\"", "sender = \"2001:db8:f::1\"");
    assert_eq!(answers(&no_way_back).0, "none");
    assert_eq!(answers(&no_way_back).1, "none");
}
