//! FreeBSD profile vectors from outside the engine: cases transcribed by hand (inputs and
//! expected outputs, as facts, never code) from FreeBSD's own tests and from the source lines
//! that decide them. Citations are to freebsd-src:
//!   S1 lib/libc/net/getaddrinfo.c (reorder, comp_dst, set_source; 14.x text with
//!      aio_initial_sequence), S2 sys/netinet6/in6_src.c (in6_selectsrc),
//!   S7 tests/sys/netinet6/test_ip6_output.py, S9 sys/netinet/in_pcb.c (in_pcbladdr, 14.x),
//!   S10 sys/netlink/route/rt.c (finalize_nhop), S11 sys/net/route/route_ctl.c
//!   (rt_getifa_family), S12 sys/netinet/in.c (in_findlocal), S13 sys/netinet/ip_icmp.c
//!   (icmp_reflect), S4 libexec/rc/rc.d/ip6addrctl,
//!   S15 sys/netinet6/udp6_usrreq.c (udp6_connect), S16 sys/netinet6/in6_pcb.c
//!   (in6_mapped_sockaddr), S17 sys/netinet6/ip6_output.c (IPV6_V6ONLY sets INP_IPV4).
//! None of these has been run on a FreeBSD kernel here; they pin the engine to FreeBSD's
//! code as read.

use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

/// rc.d `ip6addrctl_prefer_ipv4` (S4:53-61): the RFC 6724 table with IPv4 at 100.
const PREFER_IPV4: &str = r#"
[policy.freebsd]
ip6addrctl_conf = """
::1/128 50 0
::/0 40 1
::ffff:0:0/96 100 4
2002::/16 30 2
2001::/32 5 5
fc00::/7 3 13
::/96 1 3
fec0::/10 1 11
3ffe::/16 1 12
"""
"#;

/// An empty kernel table (a fresh VNET, or rc.d AUTO after a failed install).
const EMPTY_TABLE: &str = "[policy.freebsd]\nip6addrctl_conf = \"\"\n";

/// What the FreeBSD profile answers for the scenario's only probe.
fn answer(body: &str, probe: &str) -> String {
    let text = format!("name = \"v\"\n{body}\n[[probes]]\nid = \"p\"\n{probe}\n");
    let s = parse_scenario("v.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}")).scenario;
    let p = predict(&s, &Profile::Freebsd);
    match &p.probes[0].result.outcome {
        Outcome::Connect { source: Some(a), .. } => a.to_string(),
        Outcome::Connect { error: Some(e), .. } => e.clone(),
        Outcome::Icmp { source: Some(a), .. } => a.to_string(),
        Outcome::Icmp { .. } => "none".into(),
        Outcome::Resolve { order, error: None, .. } => {
            order.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")
        }
        other => panic!("{other:?}"),
    }
}

/// (case, citation, scenario body, probe line, expected)
type Vector = (&'static str, &'static str, String, String, &'static str);

fn em0(addresses: &str) -> String {
    format!(
        "[[interfaces]]\nname = \"em0\"\naddresses = [{addresses}]\n[[routes]]\nto = \"::/0\"\nvia = \"fe80::1\"\ndev = \"em0\"\n"
    )
}

fn connect(dst: &str) -> String {
    format!("connect = \"{dst}\"")
}

#[test]
fn in6_selectsrc() {
    let v: Vec<Vector> = vec![
        ("K1", "S2:358-369 rule 2", em0(r#""fe80::a/64", "2001:db8::a/64""#), connect("fe80::2%em0"), "fe80::a"),
        ("K1r", "S2:358-369 rule 2, either order", em0(r#""2001:db8::a/64", "fe80::a/64""#), connect("fe80::2%em0"), "fe80::a"),
        ("K2", "S2:358-369 rule 2", em0(r#""fe80::a/64", "2001:db8::a/64""#), connect("2001:db8:9::9"), "2001:db8::a"),
        (
            "K3",
            "S2:372-379 rule 3 before rule 14",
            em0(r#"{ address = "2001:db8:1::1/64", deprecated = true }, "2001:db8:2::1/64""#),
            connect("2001:db8:1::99"),
            "2001:db8:2::1",
        ),
        (
            "K4",
            "S2:341 use_deprecated=1 by default: a deprecated address is still a candidate",
            em0(r#"{ address = "2001:db8:1::1/64", deprecated = true }"#),
            connect("2001:db8:1::99"),
            "2001:db8:1::1",
        ),
        (
            "K5",
            "S2:387-393 rule 5 (outgoing interface) before rule 14",
            format!(
                "{}[[interfaces]]\nname = \"em1\"\naddresses = [\"2001:db8:b::1/64\"]\n",
                em0(r#""2001:db8:a::1/64""#)
            ),
            connect("2001:db8:b:1::5"),
            "2001:db8:a::1",
        ),
        (
            "K7",
            "S2:395-409 rule 6 with the ipv6_prefer table (Teredo 2001::/32 label 5)",
            em0(r#""2001:0:ffff::1/64", "3fff::1/64""#),
            connect("2001:1::1"),
            "3fff::1",
        ),
        (
            "K8",
            "S2:401 rule 6 is skipped when the destination has no policy (empty table); rule 14 decides",
            format!("{}{EMPTY_TABLE}", em0(r#""2001:0:ffff::1/64", "3fff::1/64""#)),
            connect("2001:1::1"),
            "2001:0:ffff::1",
        ),
        (
            "K9",
            "S2:133,418-438 rule 7: public unless prefer_tempaddr",
            em0(r#""2001:db8::a/64", { address = "2001:db8::b/64", temporary = true }"#),
            connect("2001:db8:5::5"),
            "2001:db8::a",
        ),
        (
            "K10",
            "S2:418-438 rule 7 with net.inet6.ip6.prefer_tempaddr=1",
            format!(
                "{}[sysctl.freebsd]\n\"net.inet6.ip6.prefer_tempaddr\" = 1\n",
                em0(r#""2001:db8::a/64", { address = "2001:db8::b/64", temporary = true }"#)
            ),
            connect("2001:db8:5::5"),
            "2001:db8::b",
        ),
        (
            "K11",
            "S2:459-467 rule 10 prefer_source",
            em0(r#""2001:db8::1/64", { address = "2001:db8::2/64", prefer_source = true }"#),
            connect("2001:db8:5::5"),
            "2001:db8::2",
        ),
        (
            "K12",
            "S2:469-481 rule 14 over all 128 bits (no cap at the prefix length)",
            em0(r#""2001:db8::1/64", "2001:db8::f000:0:0:1/64""#),
            connect("2001:db8::f000:0:0:9"),
            "2001:db8::f000:0:0:1",
        ),
        (
            "K13",
            "S2:489 every rule ties: the address added first stays",
            em0(r#""2001:db8::1/64", "2001:db8::2/64""#),
            connect("2001:db8::8"),
            "2001:db8::1",
        ),
        (
            "T1",
            "S7 test_output6_pktinfo[empty]: the source on the link towards the destination",
            "[[interfaces]]\nname = \"if1\"\naddresses = [\"2001:db8:a::1/64\"]\n[[interfaces]]\nname = \"if2\"\naddresses = [\"2001:db8:b::1/64\"]\n[[interfaces]]\nname = \"if3\"\naddresses = [\"2001:db8:c::1/64\"]\n".into(),
            connect("2001:db8:b::2"),
            "2001:db8:b::1",
        ),
    ];
    check(&v);
}

fn dual(extra: &str) -> String {
    format!(
        "[[interfaces]]\nname = \"em0\"\naddresses = [\"2001:db8::10/64\", \"192.0.2.10/24\"]\n[[routes]]\nto = \"::/0\"\nvia = \"2001:db8::1\"\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n{extra}"
    )
}

fn hosts(addrs: &[&str]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[hosts]\n\"x.example\" = [{}]\n", list.join(", "))
}

const RESOLVE: &str = "resolve = \"x.example\"";

#[test]
fn comp_dst() {
    let v: Vec<Vector> = vec![
        (
            "D1",
            "S1:700-704 an empty table: no sort; explore[] lists IPv6 before IPv4",
            dual(&format!("{EMPTY_TABLE}{}", hosts(&["192.0.2.55", "2001:db8:5::5"]))),
            RESOLVE.into(),
            "2001:db8:5::5 192.0.2.55",
        ),
        (
            "D2",
            "S1:1026-1040 rule 6, ipv6_prefer: 40 > 35",
            dual(&hosts(&["192.0.2.55", "2001:db8:5::5"])),
            RESOLVE.into(),
            "2001:db8:5::5 192.0.2.55",
        ),
        (
            "D3",
            "S1:1026-1040 rule 6, ipv4_prefer: 100 > 40",
            dual(&format!("{PREFER_IPV4}{}", hosts(&["2001:db8:5::5", "192.0.2.55"]))),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "D4",
            "S1:971-978,893 rule 1: no IPv6 route, no source",
            format!(
                "[[interfaces]]\nname = \"em0\"\naddresses = [\"2001:db8::10/64\", \"192.0.2.10/24\"]\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n{}",
                hosts(&["2001:db8:5::5", "192.0.2.55"])
            ),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "D5",
            "S1:1006-1024 rule 5: a ULA source (label 13) for a global destination (label 1)",
            format!(
                "[[interfaces]]\nname = \"em0\"\naddresses = [\"fd00::10/64\", \"192.0.2.10/24\"]\n[[routes]]\nto = \"::/0\"\nvia = \"fd00::1\"\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n{}",
                hosts(&["2001:db8:5::5", "192.0.2.55"])
            ),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "D6",
            "S1:1006-1024 rule 5: no ::/0 row, so the IPv6 destination has no policy and no label match",
            dual(&format!(
                "[policy.freebsd]\nip6addrctl_conf = \"::1/128 50 0\\n::ffff:0:0/96 35 4\\n\"\n{}",
                hosts(&["2001:db8:5::5", "192.0.2.55"])
            )),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "D7",
            "S1:980-988,1141 rule 2: 169.254/16 is link scope for libc, the source is global",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\"]\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n[hosts]\n\"x.example\" = [\"169.254.1.1\", \"198.51.100.1\"]\n".into(),
            RESOLVE.into(),
            "198.51.100.1 169.254.1.1",
        ),
        (
            "D8",
            "S1:1045-1053 rule 8: with a 169.254/16 source, the smaller scope first",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\"]\n[[interfaces]]\nname = \"em1\"\naddresses = [\"169.254.7.7/16\"]\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n[hosts]\n\"x.example\" = [\"198.51.100.1\", \"169.254.1.1\"]\n".into(),
            RESOLVE.into(),
            "169.254.1.1 198.51.100.1",
        ),
        (
            "D11",
            "S1:1055-1068 rule 9 (IPv6): 120 common bits beat 32",
            dual(&hosts(&["2001:db8:ffff::1", "2001:db8::99"])),
            RESOLVE.into(),
            "2001:db8::99 2001:db8:ffff::1",
        ),
        (
            "D12",
            "S1:1061 rule 9 is skipped for IPv4 pairs; rule 10 keeps the order",
            dual(&hosts(&["192.0.2.200", "192.0.2.11"])),
            RESOLVE.into(),
            "192.0.2.200 192.0.2.11",
        ),
        (
            "D13",
            "S1:908-913 rule 3 never fires (the flags are asked for the destination on an empty interface name: ENXIO)",
            format!(
                "[[interfaces]]\nname = \"em0\"\naddresses = [{{ address = \"2001:db8::10/64\", deprecated = true }}, \"192.0.2.10/24\"]\n[[routes]]\nto = \"::/0\"\nvia = \"2001:db8::1\"\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n{}",
                hosts(&["192.0.2.55", "2001:db8:5::5"])
            ),
            RESOLVE.into(),
            "2001:db8:5::5 192.0.2.55",
        ),
    ];
    check(&v);
}

#[test]
fn in_pcbladdr() {
    let v: Vec<Vector> = vec![
        (
            "P1",
            "S9 in_pcbladdr: the source is the nexthop's ifa",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\"]\n[[interfaces]]\nname = \"em1\"\naddresses = [\"198.51.100.10/24\"]\n[[routes]]\nto = \"203.0.113.0/24\"\nvia = \"192.0.2.1\"\n".into(),
            connect("203.0.113.5"),
            "192.0.2.10",
        ),
        (
            "P4",
            "S10 finalize_nhop gives an IPv6 ifa; S9 reads it as 0.0.0.0 and fails at done: (@35420)",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"fe80::a/64\"]\n[[interfaces]]\nname = \"lo\"\naddresses = [\"198.51.100.1/32\"]\n[[routes]]\nto = \"203.0.113.0/24\"\nvia = \"fe80::2\"\ndev = \"em0\"\n".into(),
            connect("203.0.113.5"),
            "EHOSTUNREACH",
        ),
        (
            "P5",
            "S10 finalize_nhop: an IPv4 address on the egress interface is the ifa (post cc3793b1c548)",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\", \"fe80::a/64\"]\n[[routes]]\nto = \"203.0.113.0/24\"\nvia = \"fe80::2\"\ndev = \"em0\"\n".into(),
            connect("203.0.113.5"),
            "192.0.2.10",
        ),
        (
            "P4r",
            "S11 rt_getifa_family: the P4 route through a routing socket; em0 has no IPv4, in_findlocal gives the FIB's first one",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"fe80::a/64\"]\n[[interfaces]]\nname = \"em1\"\naddresses = [\"198.51.100.1/24\", \"198.51.100.2/24\"]\n[[routes]]\nto = \"203.0.113.0/24\"\nvia = \"fe80::2\"\ndev = \"em0\"\ninstall = \"rtsock\"\n".into(),
            connect("203.0.113.5"),
            "198.51.100.1",
        ),
        (
            "P4r-none",
            "S11/S12: no IPv4 address but 127.0.0.1 in the FIB: RTM_ADD fails with ENETUNREACH, so there is no route",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"fe80::a/64\"]\n[[routes]]\nto = \"203.0.113.0/24\"\nvia = \"fe80::2\"\ndev = \"em0\"\ninstall = \"rtsock\"\n".into(),
            connect("203.0.113.5"),
            "ENETUNREACH",
        ),
        (
            "P5r",
            "S11: with an IPv4 address on the egress interface both APIs take it (ifaof_ifpforaddr)",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\", \"fe80::a/64\"]\n[[interfaces]]\nname = \"em1\"\naddresses = [\"198.51.100.1/24\"]\n[[routes]]\nto = \"203.0.113.0/24\"\nvia = \"fe80::2\"\ndev = \"em0\"\ninstall = \"rtsock\"\n".into(),
            connect("203.0.113.5"),
            "192.0.2.10",
        ),
        (
            "P6",
            "S9: no nexthop and no interface subnet holds it",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\"]\n".into(),
            connect("203.0.113.5"),
            "ENETUNREACH",
        ),
        (
            "P7",
            "S9: the host's own address goes through the loopback route",
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\"]\n[[interfaces]]\nname = \"em1\"\naddresses = [\"198.51.100.10/24\"]\n".into(),
            connect("198.51.100.10"),
            "198.51.100.10",
        ),
    ];
    check(&v);
}

/// IPv4-mapped destinations: `set_source()` clears `IPV6_V6ONLY` (S1:885-891), so the
/// source comes from IPv4 selection and reads back as `::ffff:<IPv4 source>` (S16), label 4;
/// a plain AF_INET6 socket keeps `net.inet6.ip6.v6only=1` and `udp6_connect` refuses (S15).
/// `route add ... ::1 -reject|-blackhole`: in6_selectif refuses the route (ENETUNREACH for a
/// network, EHOSTUNREACH for a host route); over IPv4 fib4_lookup returns the lo0 nexthop and
/// in_pcbladdr finds no interface of the destination's.
#[test]
fn discard_routes() {
    let typed = |to: &str, t: &str| {
        format!(
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\", \"2001:db8::10/64\"]\n[[routes]]\nto = \"{to}\"\ntype = \"{t}\"\n"
        )
    };
    let v: Vec<Vector> = vec![
        (
            "K15",
            "S2:886-887 in6_selectif, a network route",
            typed("2001:db8:dead::/48", "unreachable"),
            connect("2001:db8:dead::1"),
            "ENETUNREACH",
        ),
        (
            "K15b",
            "S2:886-887 in6_selectif, -blackhole",
            typed("2001:db8:dead::/48", "blackhole"),
            connect("2001:db8:dead::1"),
            "ENETUNREACH",
        ),
        (
            "K15h",
            "S2:886-887 in6_selectif, a host route",
            typed("2001:db8:dead::1/128", "unreachable"),
            connect("2001:db8:dead::1"),
            "EHOSTUNREACH",
        ),
        (
            "P9",
            "S9 in_pcbladdr: an lo0 nexthop and no interface holding the destination",
            typed("203.0.113.0/24", "blackhole"),
            connect("203.0.113.5"),
            "ENETUNREACH",
        ),
        (
            "P9b",
            "S9 in_pcbladdr: an lo0 nexthop, the destination on em0's subnet",
            typed("192.0.2.0/25", "unreachable"),
            connect("192.0.2.20"),
            "192.0.2.10",
        ),
    ];
    check(&v);
}

#[test]
fn v4_mapped_destinations() {
    let v4_only = "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\", \"fe80::a/64\"]\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n";
    let v: Vec<Vector> = vec![
        (
            "M1",
            "S15 udp6_connect: a v4-mapped destination on an IPV6_V6ONLY socket is EINVAL",
            v4_only.into(),
            connect("::ffff:198.51.100.7"),
            "EINVAL",
        ),
        (
            "M2",
            "S15 with net.inet6.ip6.v6only=0: in_pcbladdr picks 192.0.2.10, S16 maps it",
            format!("{v4_only}[sysctl.freebsd]\n\"net.inet6.ip6.v6only\" = 0\n"),
            connect("::ffff:198.51.100.7"),
            "::ffff:192.0.2.10",
        ),
        (
            "M3",
            "S1 set_source for ::ffff:a.b.c.d: usable with ::ffff:192.0.2.10 (label 4, scope 14); \
             2001:db8:5::1 has no IPv6 route (R1 last); the mapped one is IPv6, so first by R10",
            format!("{v4_only}{}", hosts(&["2001:db8:5::1", "::ffff:198.51.100.7", "198.51.100.7"])),
            RESOLVE.into(),
            "::ffff:198.51.100.7 198.51.100.7 2001:db8:5::1",
        ),
    ];
    check(&v);
}

/// `ip6addrctl_policy` as rc.d reads it (S4 ip6addrctl_start, 65-113): which table a boot
/// installs decides the order of a dual-stack answer.
#[test]
fn rc_d_policy_states() {
    let state = |value: &str, extra: &str| {
        format!(
            "{}{}",
            dual(&format!("[policy.freebsd]\nip6addrctl_policy = \"{value}\"\n{extra}")),
            hosts(&["2001:db8:5::5", "192.0.2.55"])
        )
    };
    // No IPv6 route: a sorted table puts the unusable IPv6 answer last, no table leaves it first.
    let v4_only = |value: &str| {
        format!(
            "[[interfaces]]\nname = \"em0\"\naddresses = [\"192.0.2.10/24\"]\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n[policy.freebsd]\nip6addrctl_policy = \"{value}\"\n{}",
            hosts(&["2001:db8:5::5", "192.0.2.55"])
        )
    };
    let v: Vec<Vector> = vec![
        (
            "T6",
            "S4:88-90 ipv6_prefer: R6 40 over 35",
            state("ipv6_prefer", ""),
            RESOLVE.into(),
            "2001:db8:5::5 192.0.2.55",
        ),
        (
            "T4",
            "S4:85-87 ipv4_prefer: R6 100 over 40",
            state("ipv4_prefer", ""),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        ("YES", "S4:91-94 checkyesno true: ipv6_prefer", state("YES", ""), RESOLVE.into(), "2001:db8:5::5 192.0.2.55"),
        ("off", "S4:95-98 checkyesno false: ipv4_prefer", state("off", ""), RESOLVE.into(), "192.0.2.55 2001:db8:5::5"),
        (
            "upper",
            "S4:102-106 IPV6_PREFER is not a value: warned, ipv4_prefer",
            state("IPV6_PREFER", ""),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "AUTO-v4",
            "S4:80-81 AUTO, no conf, no IPv6 in rc.conf: ipv4_prefer",
            state("auto", ""),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "AUTO-v6",
            "S4:76-79 AUTO, rc.conf configures IPv6: ipv6_prefer",
            state("AUTO", "rc_conf_ipv6 = true\n"),
            RESOLVE.into(),
            "2001:db8:5::5 192.0.2.55",
        ),
        (
            "AUTO-conf",
            "S4:72-74 AUTO with a non-empty ip6addrctl.conf: flush, install it",
            state("AUTO", "ip6addrctl_conf = \"::/0 40 1\\n::ffff:0:0/96 50 4\\n\"\n"),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "AUTO-empty-conf",
            "S4:72 an empty ip6addrctl.conf fails `-s`: AUTO goes on to ipv4_prefer",
            state("AUTO", "ip6addrctl_conf = \"\"\n"),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
        (
            "NONE",
            "S4:99-101 NONE: flushed, libc does not sort",
            v4_only("none"),
            RESOLVE.into(),
            "2001:db8:5::5 192.0.2.55",
        ),
        (
            "T6-R1",
            "the same host with ipv6_prefer: R1 puts the unusable answer last",
            v4_only("ipv6_prefer"),
            RESOLVE.into(),
            "192.0.2.55 2001:db8:5::5",
        ),
    ];
    check(&v);
}

/// `icmp_reflect` (S13 sys/netinet/ip_icmp.c): the route back's nexthop address read as
/// IPv4, or the receiving interface's with `net.inet.icmp.reply_from_interface`.
#[test]
fn icmp_reflect() {
    let router = |eth1: &str, extra: &str| {
        format!(
            "[[interfaces]]\nname = \"eth1\"\naddresses = [{eth1}]\n[[interfaces]]\nname = \"eth2\"\naddresses = [\"2001:db8:b::1/64\", \"198.51.100.1/24\"]\n[[routes]]\nto = \"10.0.0.0/24\"\nvia = \"2001:db8:a::1\"\ndev = \"eth1\"\n[[routes]]\nto = \"203.0.113.0/24\"\nvia = \"198.51.100.2\"\n[sysctl.freebsd]\n\"net.inet.ip.forwarding\" = 1\n{extra}"
        )
    };
    let probe = "icmp_time_exceeded = { from = \"eth1\", to = \"203.0.113.5\", sender = \"10.0.0.1\" }".to_string();
    let v: Vec<Vector> = vec![
        (
            "I1",
            "S13 step 5 with S10's IPv6 nexthop address: 0.0.0.0",
            router("\"2001:db8:a::2/64\"", ""),
            probe.clone(),
            "0.0.0.0",
        ),
        (
            "I2",
            "S13 step 3: reply_from_interface, eth1's first IPv4 address",
            router("\"2001:db8:a::2/64\", \"192.0.2.2/24\"", "\"net.inet.icmp.reply_from_interface\" = 1\n"),
            probe.clone(),
            "192.0.2.2",
        ),
        (
            "I3",
            "S13 step 3 falls through: eth1 has no IPv4 address",
            router("\"2001:db8:a::2/64\"", "\"net.inet.icmp.reply_from_interface\" = 1\n"),
            probe.clone(),
            "0.0.0.0",
        ),
        (
            "I4",
            "ip_input without forwarding: dropped, nothing sent",
            router("\"2001:db8:a::2/64\"", "").replace("\"net.inet.ip.forwarding\" = 1\n", ""),
            probe,
            "none",
        ),
    ];
    check(&v);
}

fn check(v: &[Vector]) {
    let mut wrong = Vec::new();
    for (case, cite, body, probe, want) in v {
        let got = answer(body, probe);
        if got != *want {
            wrong.push(format!("{case} ({cite}): FreeBSD gives {want}, the engine {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
