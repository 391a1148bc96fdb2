use super::*;

/// `ip -j` output of a namespace set up by hand (iproute2 6.1, Linux 6.18): a deprecated and
/// a home address, a v4-via-v6 route, a route with src and metric, a blackhole route and one
/// changed label row.
const ADDR: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet","local":"192.0.2.1","prefixlen":32,"scope":"global","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"::1","prefixlen":128,"scope":"host","valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":3,"link":"p1","ifname":"eth1","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":1500,"qdisc":"noqueue","operstate":"LOWERLAYERDOWN","group":"default","txqlen":1000,"link_type":"ether","address":"2a:8a:9a:05:16:01","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"10.0.0.2","prefixlen":24,"scope":"global","label":"eth1","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"2001:db8:1::2","prefixlen":64,"scope":"global","nodad":true,"home":true,"valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"2001:db8::2","prefixlen":64,"scope":"global","nodad":true,"deprecated":true,"valid_life_time":4294967295,"preferred_life_time":0}]},{"ifindex":4,"ifname":"eth9","flags":["BROADCAST"],"addr_info":[]}]"#;
const ROUTE4: &str = r#"[{"dst":"10.0.0.0/24","dev":"eth1","protocol":"kernel","scope":"link","prefsrc":"10.0.0.2","flags":["linkdown"]},{"type":"blackhole","dst":"192.0.2.128/25","flags":[]},{"dst":"198.51.100.0/24","gateway":"10.0.0.1","dev":"eth1","prefsrc":"10.0.0.2","metric":5,"flags":["linkdown"]},{"dst":"203.0.113.0/24","via":{"family":"inet6","host":"fe80::1"},"dev":"eth1","flags":[]}]"#;
const ROUTE6: &str = r#"[{"dst":"2001:db8::/64","dev":"eth1","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},{"dst":"default","gateway":"2001:db8::1","dev":"eth1","metric":1024,"flags":[],"pref":"medium"}]"#;
const LABELS: &str = r#"[{"address":"::1","prefixlen":128,"label":0},{"address":"::","prefixlen":96,"label":3},{"address":"::ffff:0.0.0.0","prefixlen":96,"label":4},{"address":"2001::","prefixlen":32,"label":6},{"address":"2001:10::","prefixlen":28,"label":7},{"address":"3ffe::","prefixlen":16,"label":12},{"address":"2002::","prefixlen":16,"label":2},{"address":"fec0::","prefixlen":10,"label":11},{"address":"fd00::","prefixlen":8,"label":99},{"address":"fc00::","prefixlen":7,"label":5},{"address":"::","prefixlen":0,"label":1}]"#;

fn parsed(text: &str) -> addrsel_model::Scenario {
    addrsel_model::parse_scenario("captured.toml", text).unwrap_or_else(|e| panic!("{e}\n{text}")).scenario
}

#[test]
fn iproute2_json_becomes_a_scenario() {
    let host = linux::read(ADDR, ROUTE4, ROUTE6, LABELS).unwrap();
    let text = host.scenario("captured", "a test host", "by hand");
    let s = parsed(&text);
    let eth1 = s.interface("eth1").unwrap();
    let v6: Vec<String> = eth1.addresses.iter().filter(|a| a.addr.is_ipv6()).map(|a| a.to_string()).collect();
    // Added oldest first, so the kernel lists them newest first again.
    assert_eq!(v6, ["2001:db8::2/64", "2001:db8:1::2/64"]);
    assert!(eth1.addresses.iter().any(|a| a.deprecated) && eth1.addresses.iter().any(|a| a.home));
    assert!(s.interface("lo").unwrap().addresses.iter().any(|a| a.to_string() == "192.0.2.1/32"));
    assert!(s.interface("eth9").is_none(), "an interface with nothing on it and no route is left out");
    let routes: Vec<String> =
        s.routes.iter().map(|r| format!("{} {:?} {:?} {:?} {:?}", r.to, r.via, r.dev, r.src, r.metric)).collect();
    assert_eq!(
        routes,
        [
            "192.0.2.128/25 None None None None",
            "198.51.100.0/24 Some(10.0.0.1) Some(\"eth1\") Some(10.0.0.2) Some(5)",
            "203.0.113.0/24 Some(fe80::1) Some(\"eth1\") None None",
            "::/0 Some(2001:db8::1) Some(\"eth1\") None None",
        ]
    );
    assert_eq!(s.routes[0].rtype, addrsel_model::RouteType::Blackhole);
    assert!(text.contains("to = \"192.0.2.128/25\"\ntype = \"blackhole\""), "{text}");
    assert!(!text.contains("default label row"), "every default row is there: {text}");
    assert_eq!(s.policy.linux.unwrap().addrlabels.len(), 1);
}

/// FreeBSD output as it appears in real reports: `ifconfig` of a CheriBSD boot (lo0 and
/// vtnet0) with an em0 in af_inet6.c's format, netstat's libxo JSON quoted from iocage's
/// fixture, and `ip6addrctl show` from freebsd-src PR #1375.
#[test]
fn freebsd_output_becomes_a_scenario() {
    let ifconfig = "lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384
\toptions=680003<RXCSUM,TXCSUM,LINKSTATE,RXCSUM_IPV6,TXCSUM_IPV6>
\tinet6 ::1 prefixlen 128
\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x2
\tinet 127.0.0.1 netmask 0xff000000
\tgroups: lo
\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>
vtnet0: flags=8963<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST> metric 0 mtu 1500
\toptions=28<VLAN_MTU,JUMBO_MTU>
\tether 02:00:00:00:00:00
\tmedia: Ethernet 10Gbase-T <full-duplex>
\tstatus: active
\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>
em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 192.168.1.10 netmask 0xffffff00 broadcast 192.168.1.255
\tinet6 fe80::a%em0 prefixlen 64 scopeid 0x1
\tinet6 fd00:11:22::10 prefixlen 64 deprecated
\tinet6 2001:db8:1::10 prefixlen 64 autoconf temporary pltime 3600 vltime 7200
";
    let netstat = r#"{"statistics": {"route-information": {"route-table": {"rt-family": [{"address-family":"Internet", "rt-entry": [{"destination":"default","gateway":"192.168.1.1","flags":"UGS", "flags_pretty": ["up","gateway","static"],"interface-name":"em0"}, {"destination":"192.168.1.0/24","gateway":"link#1","flags":"U", "flags_pretty": ["up"],"interface-name":"em0"}]}, {"address-family":"Internet6", "rt-entry": [{"destination":"::/96","gateway":"::1","flags":"UGRS", "flags_pretty": ["up","gateway","reject","static"],"interface-name":"lo0"}, {"destination":"default","gateway":"fe80::8%em0","flags":"UGS","interface-name":"em0"}, {"destination":"::ffff:0.0.0.0/96","gateway":"::1","flags":"UGRS","interface-name":"lo0"}, {"destination":"fe80::%lo0/64","gateway":"link#3","flags":"U","interface-name":"lo0"}, {"destination":"fe80::1%lo0","gateway":"link#3","flags":"UHS", "flags_pretty": ["up","host","static"],"interface-name":"lo0"}]}]}}}}"#;
    let show = "Prefix                          Prec Label      Use
::1/128                           50     0        0
::/0                              40     1        0
::ffff:0.0.0.0/96                 35     4        0
2002::/16                         30     2        0
2001::/32                          5     5        0
fc00::/7                           3    13        0
::/96                              1     3        0
fec0::/10                          1    11        0
3ffe::/16                          1    12        0
";
    let mut host = Host { os: Some(addrsel_model::Os::Freebsd), ..Host::default() };
    freebsd::read_ifconfig(ifconfig, &mut host).unwrap();
    freebsd::read_netstat(netstat, &mut host).unwrap();
    freebsd::read_ip6addrctl_show(show, &mut host).unwrap();
    freebsd::read_rc_conf("ifconfig_em0=\"DHCP\"\nip6addrctl_policy=\"ipv6_prefer\" # stock\n", &mut host);
    let text = host.scenario("captured-freebsd", "a FreeBSD host", "by hand");
    let s = parsed(&text);
    let em0 = s.interface("em0").unwrap();
    assert_eq!(em0.addresses.len(), 4);
    assert!(em0.addresses.iter().any(|a| a.deprecated && a.addr.to_string() == "fd00:11:22::10"));
    assert!(em0.addresses.iter().any(|a| a.temporary && a.addr.to_string() == "2001:db8:1::10"));
    // lo0's own addresses are the scenario's implicit loopback; fe80::1%lo0's host route too.
    assert!(s.interface("vtnet0").is_none());
    let routes: Vec<String> = s.routes.iter().map(|r| format!("{} {:?}", r.to, r.via)).collect();
    assert_eq!(routes, ["0.0.0.0/0 Some(192.168.1.1)", "::/0 Some(fe80::8)"]);
    assert_eq!(
        s.policy.freebsd().ip6addrctl_conf,
        addrsel_policy::ip6addrctl::print_conf(&addrsel_policy::PolicyTable::rfc6724())
    );
    assert!(text.contains("# rc.conf: ip6addrctl_policy = \"ipv6_prefer\""), "{text}");
}

fn cpl(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V6(x), IpAddr::V6(y)) => (x.to_bits() ^ y.to_bits()).leading_zeros(),
        (IpAddr::V4(x), IpAddr::V4(y)) => (x.to_bits() ^ y.to_bits()).leading_zeros(),
        _ => 0,
    }
}

#[test]
fn anonymizing_keeps_classes_and_common_prefixes() {
    let mut host = linux::read(ADDR, ROUTE4, ROUTE6, LABELS).unwrap();
    host.hosts
        .push(("server.example".into(), vec!["2001:db8:1:5::1".parse().unwrap(), "198.51.100.7".parse().unwrap()]));
    host.hosts.push(("nas.home.arpa".into(), vec!["fd00:11:22::53".parse().unwrap(), "10.0.0.53".parse().unwrap()]));
    let m = anonymize::Mapping::new(&host, 7);
    let addrs: Vec<IpAddr> = [
        "2001:db8::2",
        "2001:db8:1::2",
        "2001:db8:1:5::1",
        "fd00:11:22::53",
        "fe80::1",
        "10.0.0.2",
        "10.0.0.53",
        "198.51.100.7",
        "192.0.2.1",
        "::1",
        "127.0.0.1",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    for a in &addrs {
        for b in &addrs {
            assert_eq!(cpl(*a, *b), cpl(m.addr(*a), m.addr(*b)), "{a} {b} -> {} {}", m.addr(*a), m.addr(*b));
        }
    }
    let shown = |a: &str| m.addr(a.parse().unwrap()).to_string();
    assert!(shown("2001:db8:1::2").starts_with("3fff:"), "{}", shown("2001:db8:1::2"));
    assert!(shown("fd00:11:22::53").starts_with("fd"), "ULA stays ULA");
    assert!(shown("10.0.0.2").starts_with("10."), "private stays private");
    assert!(shown("fe80::1").starts_with("fe80::"), "link-local keeps its /64");
    assert_eq!(shown("::1"), "::1");
    // A prefix maps as the addresses inside it.
    let p = m.prefix("2001:db8:1::/48".parse().unwrap());
    assert!(p.contains(&m.addr("2001:db8:1::2".parse().unwrap())), "{p}");
    assert_eq!(
        m.text("label fd00:11:22::/48 1\n"),
        format!("label {} 1\n", m.prefix("fd00:11:22::/48".parse().unwrap()))
    );
    // The same key, the same mapping; another key, another.
    assert_eq!(anonymize::Mapping::new(&host, 7).addr(addrs[0]), m.addr(addrs[0]));
    assert_ne!(anonymize::Mapping::new(&host, 8).addr(addrs[0]), m.addr(addrs[0]));
    let anon = m.apply(&host);
    assert_eq!(anon.hosts[0].0, "host-1.example");
    parsed(&anon.scenario("anon", "anonymized", "by hand"));
}

/// A laptop's privacy addresses and an address in DAD, as `ip -j addr` showed them in a
/// namespace set up by hand (use_tempaddr 2, Linux 6.18): the template is kept with
/// `mngtmpaddr = true`, the kernel's temporary address (still tentative, random bits) is left
/// to the scenario's template to make again, the tentative one keeps its state.
#[test]
fn privacy_and_dad_states_are_captured() {
    let addr = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"addr_info":[]},{"ifindex":3,"link":"p0","ifname":"wlan0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether","address":"02:6b:9d:6e:c9:2b","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet6","local":"2001:db8:9::10","prefixlen":64,"scope":"global","tentative":true,"valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"2001:db8:1:0:cb27:f707:35e1:8473","prefixlen":64,"scope":"global","temporary":true,"tentative":true,"dynamic":true,"valid_life_time":604800,"preferred_life_time":86332},{"family":"inet6","local":"2001:db8:1::10","prefixlen":64,"scope":"global","nodad":true,"mngtmpaddr":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
    let host = linux::read(addr, "[]", "[]", LABELS).unwrap();
    let text = host.scenario("laptop", "a laptop", "by hand");
    assert!(text.contains(r#"{ address = "2001:db8:1::10/64", mngtmpaddr = true }"#), "{text}");
    assert!(text.contains(r#"{ address = "2001:db8:9::10/64", dad = "tentative" }"#), "{text}");
    assert!(!text.contains("cb27"), "the kernel's random address is not in the scenario: {text}");
    assert!(text.contains("# made again by the scenario: temporary(2001:db8:1::/64) on wlan0"), "{text}");
    let s = parsed(&text);
    let wlan0 = s.interface("wlan0").unwrap();
    assert!(wlan0.addresses.iter().any(|a| a.mngtmpaddr));
    assert!(wlan0.addresses.iter().any(|a| a.dad == addrsel_model::Dad::Tentative));
}

/// `ip -j` route output of a namespace on Linux 6.18 (iproute2 6.1) with ECMP defaults and two
/// routes through `ip nexthop` groups (the kernel shows their members, and `nhid`).
const MP_ADDR: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"::1","prefixlen":128,"scope":"host","valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":3,"ifname":"eth1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"10.1.0.10","prefixlen":24,"scope":"global","label":"eth1","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"2001:db8:1::10","prefixlen":64,"scope":"global","nodad":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":5,"ifname":"eth2","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"10.2.0.10","prefixlen":24,"scope":"global","label":"eth2","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"2001:db8:2::10","prefixlen":64,"scope":"global","nodad":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
const MP_ROUTE4: &str = r#"[{"dst":"default","flags":[],"nexthops":[{"gateway":"10.1.0.1","dev":"eth1","weight":1,"flags":[]},{"gateway":"10.2.0.1","dev":"eth2","weight":3,"flags":[]}]},{"dst":"10.1.0.0/24","dev":"eth1","protocol":"kernel","scope":"link","prefsrc":"10.1.0.10","flags":[]},{"dst":"10.2.0.0/24","dev":"eth2","protocol":"kernel","scope":"link","prefsrc":"10.2.0.10","flags":[]},{"dst":"198.51.100.0/24","nhid":10,"flags":[],"nexthops":[{"gateway":"10.1.0.1","dev":"eth1","weight":1,"flags":[]},{"gateway":"10.2.0.1","dev":"eth2","weight":1,"flags":[]}]}]"#;
const MP_ROUTE6: &str = r#"[{"dst":"2001:db8:1::/64","dev":"eth1","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},{"dst":"2001:db8:2::/64","dev":"eth2","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},{"dst":"2001:db8:77::/48","nhid":11,"metric":1024,"flags":[],"pref":"medium","nexthops":[{"gateway":"2001:db8:1::1","dev":"eth1","weight":1,"flags":[]},{"gateway":"2001:db8:2::1","dev":"eth2","weight":1,"flags":[]}]},{"dst":"default","metric":1024,"flags":[],"pref":"medium","nexthops":[{"gateway":"2001:db8:1::1","dev":"eth1","weight":1,"flags":[]},{"gateway":"2001:db8:2::1","dev":"eth2","weight":1,"flags":[]}]}]"#;

#[test]
fn multipath_routes_and_nexthop_groups_are_captured() {
    let host = linux::read(MP_ADDR, MP_ROUTE4, MP_ROUTE6, "[]").unwrap();
    let text = host.scenario("captured", "a test host", "by hand");
    assert!(!text.contains("multipath"), "nothing is left out: {text}");
    let s = parsed(&text);
    let routes: Vec<String> = s
        .routes
        .iter()
        .map(|r| {
            let paths: Vec<String> = r
                .nexthops
                .iter()
                .map(|n| format!("{}@{}x{}", n.via.unwrap(), n.dev.as_deref().unwrap(), n.weight))
                .collect();
            format!("{} {} {}", r.to, r.nexthop_objects, paths.join(" "))
        })
        .collect();
    assert_eq!(
        routes,
        [
            "0.0.0.0/0 false 10.1.0.1@eth1x1 10.2.0.1@eth2x3",
            "198.51.100.0/24 true 10.1.0.1@eth1x1 10.2.0.1@eth2x1",
            "2001:db8:77::/48 true 2001:db8:1::1@eth1x1 2001:db8:2::1@eth2x1",
            "::/0 false 2001:db8:1::1@eth1x1 2001:db8:2::1@eth2x1",
        ]
    );
    // Anonymized, every path's gateway is renamed with the rest and the routes still parse.
    let anon = anonymize::Mapping::new(&host, 7).apply(&host);
    let text = anon.scenario("anonymized", "a test host", "by hand");
    assert!(!text.contains("10.1.0.1\"") && !text.contains("2001:db8:2::1\""), "{text}");
    assert_eq!(parsed(&text).routes.iter().filter(|r| r.nexthops.len() == 2).count(), 4);
}

/// A path through an interface that is not captured leaves the whole route out, saying so.
#[test]
fn a_multipath_route_through_an_uncaptured_interface_is_left_out() {
    let route4 = MP_ROUTE4.replace(r#""dev":"eth2","weight":3"#, r#""dev":"wg0","weight":3"#);
    let host = linux::read(MP_ADDR, &route4, "[]", "[]").unwrap();
    assert!(
        host.skipped.iter().any(|s| s == "route 0.0.0.0/0 dev wg0: that interface is not captured"),
        "{:?}",
        host.skipped
    );
    assert!(!host.routes.iter().any(|r| r.to.to_string() == "0.0.0.0/0"));
}

/// An interface enslaved to a VRF or a bridge is said to be so: `ip -j addr show` of a bridge
/// port in a namespace (Linux 6.18, iproute2 6.1; this kernel has no VRF driver, and a VRF's
/// slaves carry the same `master` key).
#[test]
fn an_enslaved_interface_is_named_in_the_comments() {
    let addr = r#"[{"ifindex":3,"link":"p0","ifname":"eth0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":1500,"qdisc":"noqueue","master":"br0","operstate":"LOWERLAYERDOWN","group":"default","txqlen":1000,"link_type":"ether","address":"1a:bd:48:d5:78:e6","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"10.5.0.1","prefixlen":24,"scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
    let host = linux::read(addr, "[]", "[]", "[]").unwrap();
    let text = host.scenario("captured", "a test host", "by hand");
    assert!(text.contains("# not expressible yet: interface `eth0` is enslaved to `br0`"), "{text}");
    assert!(parsed(&text).interface("eth0").is_some());
}

/// A FreeBSD multipath route as netstat prints it (netstat/route_netlink.c `p_rtentry_netlink`:
/// one row per path in nexthop-index order, the destination repeated, the weight only as the
/// libxo field `weight`). Built in the iocage fixture's format above: no real multipath output
/// was found to quote.
#[test]
fn freebsd_multipath_rows_become_one_route() {
    let ifconfig = "em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 192.168.1.10 netmask 0xffffff00 broadcast 192.168.1.255
em1: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 192.168.2.10 netmask 0xffffff00 broadcast 192.168.2.255
";
    let netstat = r#"{"statistics": {"route-information": {"route-table": {"rt-family": [{"address-family":"Internet", "rt-entry": [{"destination":"default","gateway":"192.168.1.1","flags":"UGS","interface-name":"em0","weight":1}, {"destination":"default","gateway":"192.168.2.1","flags":"UGS","interface-name":"em1","weight":3}, {"destination":"192.168.1.0/24","gateway":"link#1","flags":"U","interface-name":"em0"}]}]}}}}"#;
    let mut host = Host { os: Some(addrsel_model::Os::Freebsd), ..Host::default() };
    freebsd::read_ifconfig(ifconfig, &mut host).unwrap();
    freebsd::read_netstat(netstat, &mut host).unwrap();
    let s = parsed(&host.scenario("captured-freebsd", "a FreeBSD host", "by hand"));
    assert_eq!(s.routes.len(), 1);
    let paths: Vec<String> =
        s.routes[0].nexthops.iter().map(|n| format!("{:?} {:?} {}", n.via, n.dev, n.weight)).collect();
    assert_eq!(paths, ["Some(192.168.1.1) Some(\"em0\") 1", "Some(192.168.2.1) Some(\"em1\") 3"]);
}

/// `ip -j` output of a VRF in Debian 12's guest (Linux 6.1.192, iproute2 6.1, read over its
/// serial console): `blue` (table 10) holding eth1, a route leaked to eth2, one through a
/// gateway, and the `unreachable default` the kernel's VRF documentation advises.
const VRF_ADDR: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK"],"mtu":65536,"qdisc":"noop","operstate":"DOWN","group":"default","txqlen":1000,"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00","addr_info":[]},{"ifindex":2,"ifname":"blue","flags":["NOARP","MASTER","UP","LOWER_UP"],"mtu":65575,"qdisc":"noqueue","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether","address":"22:71:da:cc:5f:f0","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[]},{"ifindex":3,"link":"eth1","ifname":"p1","flags":["BROADCAST","MULTICAST"],"mtu":1500,"qdisc":"noop","operstate":"DOWN","group":"default","txqlen":1000,"link_type":"ether","address":"72:18:52:7c:d3:00","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[]},{"ifindex":4,"link":"p1","ifname":"eth1","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":1500,"qdisc":"noqueue","master":"blue","operstate":"LOWERLAYERDOWN","group":"default","txqlen":1000,"link_type":"ether","address":"ba:d4:58:6a:44:71","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"10.1.0.1","prefixlen":24,"scope":"global","label":"eth1","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"2001:db8:1::1","prefixlen":64,"scope":"global","nodad":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":5,"link":"eth2","ifname":"p2","flags":["BROADCAST","MULTICAST"],"mtu":1500,"qdisc":"noop","operstate":"DOWN","group":"default","txqlen":1000,"link_type":"ether","address":"1e:af:83:14:b1:c7","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[]},{"ifindex":6,"link":"p2","ifname":"eth2","flags":["BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":1500,"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"link_type":"ether","address":"46:5d:ec:02:d8:22","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"10.2.0.1","prefixlen":24,"scope":"global","label":"eth2","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
const VRF_LINKS: &str = r#"[{"ifindex":2,"ifname":"blue","flags":["NOARP","MASTER","UP","LOWER_UP"],"mtu":65575,"qdisc":"noqueue","operstate":"UP","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"22:71:da:cc:5f:f0","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"allmulti":0,"min_mtu":1280,"max_mtu":65575,"linkinfo":{"info_kind":"vrf","info_data":{"table":10}},"inet6_addr_gen_mode":"eui64","num_tx_queues":1,"num_rx_queues":1,"gso_max_size":65536,"gso_max_segs":65535,"tso_max_size":65536,"tso_max_segs":65535,"gro_max_size":65536}]"#;
const VRF_TABLE4: &str = r#"[{"type":"unreachable","dst":"default","metric":4278198272,"flags":[]},{"dst":"10.1.0.0/24","dev":"eth1","protocol":"kernel","scope":"link","prefsrc":"10.1.0.1","flags":["linkdown"]},{"type":"local","dst":"10.1.0.1","dev":"eth1","protocol":"kernel","scope":"host","prefsrc":"10.1.0.1","flags":[]},{"type":"broadcast","dst":"10.1.0.255","dev":"eth1","protocol":"kernel","scope":"link","prefsrc":"10.1.0.1","flags":["linkdown"]},{"dst":"10.2.0.0/24","dev":"eth2","scope":"link","flags":["linkdown"]},{"dst":"10.3.0.0/24","gateway":"10.1.0.9","dev":"eth1","flags":["linkdown"]}]"#;
const VRF_TABLE6: &str = r#"[{"type":"local","dst":"2001:db8:1::1","dev":"eth1","protocol":"kernel","metric":0,"flags":[],"pref":"medium"},{"dst":"2001:db8:1::/64","dev":"eth1","protocol":"kernel","metric":256,"flags":["linkdown"],"pref":"medium"},{"type":"multicast","dst":"ff00::/8","dev":"eth1","protocol":"kernel","metric":256,"flags":["linkdown"],"pref":"medium"},{"type":"unreachable","dst":"default","dev":"lo","metric":4278198272,"flags":[],"pref":"medium"}]"#;

#[test]
fn vrfs_and_their_tables_are_captured() {
    assert_eq!(linux::vrf_tables(VRF_LINKS).unwrap(), [("blue".to_string(), 10)]);
    let mut host = linux::read(VRF_ADDR, "[]", "[]", "[]").unwrap();
    linux::read_vrfs(&mut host, VRF_LINKS, &[(10, VRF_TABLE4.into(), VRF_TABLE6.into())]).unwrap();
    let text = host.scenario("captured", "a VRF host", "by hand");
    let s = parsed(&text);
    assert_eq!(s.vrfs.len(), 1);
    assert_eq!(
        (s.vrfs[0].name.as_str(), s.vrfs[0].table, s.vrfs[0].interfaces.clone()),
        ("blue", 10, vec!["eth1".to_string()])
    );
    assert!(s.interface("blue").is_none(), "the VRF device is no interface of the scenario");
    assert!(!text.contains("enslaved"), "{text}");
    let routes: Vec<String> =
        s.routes.iter().map(|r| format!("{} {} {:?} {:?} {:?}", r.rtype.word(), r.to, r.via, r.dev, r.table)).collect();
    assert_eq!(
        routes,
        [
            "unreachable 0.0.0.0/0 None None Some(10)",
            "unicast 10.2.0.0/24 None Some(\"eth2\") Some(10)",
            "unicast 10.3.0.0/24 Some(10.1.0.9) Some(\"eth1\") Some(10)",
            "unreachable ::/0 None None Some(10)",
        ]
    );
}

/// A kernel without the VRF driver: iproute2 6.1's `ip -j -d link show type vrf` prints
/// `[{}]` (measured on Linux 6.18 here).
#[test]
fn no_vrf_driver_means_no_vrfs() {
    assert!(linux::vrf_tables("[{}]").unwrap().is_empty());
    assert!(linux::vrf_tables("").unwrap().is_empty());
}

/// FreeBSD FIBs and privacy addresses, in the formats of 14's `ifconfig` (iffib.c `fib_status`
/// prints `fib: N` for a FIB other than 0; af_inet6.c the `autoconf` and `temporary` flags) and
/// `netstat --libxo json -rn -F 1` (the iocage fixture's shape). Built from those sources: no
/// real output of a host with FIBs was found to quote.
#[test]
fn freebsd_fibs_become_vrfs_and_temporaries_their_template() {
    let ifconfig = "em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 192.168.1.10 netmask 0xffffff00 broadcast 192.168.1.255
\tinet6 2001:db8:1::10 prefixlen 64 autoconf pltime 86400 vltime 604800
\tinet6 2001:db8:1::5c1e:77ff:fe00:1 prefixlen 64 autoconf temporary pltime 3600 vltime 7200
em1: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 10.1.0.10 netmask 0xffffff00 broadcast 10.1.0.255
\tfib: 1
";
    let fib0 = r#"{"statistics": {"route-information": {"route-table": {"rt-family": [{"address-family":"Internet", "rt-entry": [{"destination":"default","gateway":"192.168.1.1","flags":"UGS","interface-name":"em0"}]}]}}}}"#;
    let fib1 = r#"{"statistics": {"route-information": {"route-table": {"rt-family": [{"address-family":"Internet", "rt-entry": [{"destination":"default","gateway":"10.1.0.1","flags":"UGS","interface-name":"em1"}, {"destination":"10.1.0.0/24","gateway":"link#2","flags":"U","interface-name":"em1"}]}]}}}}"#;
    let mut host = Host { os: Some(addrsel_model::Os::Freebsd), ..Host::default() };
    freebsd::read_ifconfig(ifconfig, &mut host).unwrap();
    freebsd::read_netstat(fib0, &mut host).unwrap();
    freebsd::read_netstat_fib(fib1, 1, &mut host).unwrap();
    freebsd::fibs_as_vrfs(&mut host);
    host.sysctls.push(("net.inet6.ip6.use_tempaddr".into(), "1".into()));
    let text = host.scenario("captured-freebsd", "a FreeBSD host", "by hand");
    let s = parsed(&text);
    assert_eq!(s.vrfs.len(), 1);
    assert_eq!(
        (s.vrfs[0].name.as_str(), s.vrfs[0].table, s.vrfs[0].interfaces.clone()),
        ("fib1", 1, vec!["em1".to_string()])
    );
    let routes: Vec<String> = s.routes.iter().map(|r| format!("{} {:?} {:?}", r.to, r.via, r.table)).collect();
    assert_eq!(routes, ["0.0.0.0/0 Some(192.168.1.1) None", "0.0.0.0/0 Some(10.1.0.1) Some(1)"]);
    // The public autoconf address is the template; the kernel's temporary one is made again.
    let em0 = s.interface("em0").unwrap();
    assert_eq!(em0.addresses.iter().filter(|a| a.addr.is_ipv6()).count(), 1);
    assert!(em0.addresses.iter().any(|a| a.mngtmpaddr && a.addr.to_string() == "2001:db8:1::10"));
    assert!(text.contains("# made again by the scenario: temporary(2001:db8:1::/64) on em0"), "{text}");
    // FreeBSD's plan puts em1 in FIB 1 again, and the kernel makes the temporary address.
    let plan = addrsel_model::plan::freebsd(&s);
    assert!(plan.unsupported.is_empty(), "{:?}", plan.unsupported);
    assert_eq!(s.freebsd_kernel_temporaries().len(), 1);
}
