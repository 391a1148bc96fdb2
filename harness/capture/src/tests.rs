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
