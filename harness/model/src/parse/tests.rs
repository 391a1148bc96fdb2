use super::*;

const ISSUE_EXAMPLE: &str = include_str!("../../tests/data/issue-example.toml");

fn parse(text: &str) -> Result<Parsed, Errors> {
    parse_scenario("s.toml", text)
}

/// The first error as `line:column: message`.
fn first_error(text: &str) -> String {
    let errs = parse(text).expect_err("expected an error").0;
    let d = &errs[0];
    format!("{}:{}: {}", d.line, d.column, d.message)
}

const BASE: &str = r#"
name = "t"
[[interfaces]]
name = "wlan0"
addresses = ["10.0.0.50/24", "fd00:11:22::aa/64"]
"#;

#[test]
fn issue_example_is_accepted_as_written() {
    let parsed = parse(ISSUE_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let s = parsed.scenario;
    assert_eq!(s.name, "ula-only-host-prefers-ipv4");
    assert_eq!(s.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["lo", "wlan0", "bge2"]);
    let wlan0 = s.interface("wlan0").unwrap();
    assert_eq!(wlan0.addresses.len(), 5);
    assert!(wlan0.addresses[2].deprecated);
    assert!(wlan0.addresses[3].temporary);
    assert!(wlan0.addresses[4].home);
    assert!(s.interface("bge2").unwrap().addresses.is_empty());
    assert!(s.routes[1].is_v4_via_v6());
    assert_eq!(s.hosts[0].addresses.len(), 2);
    assert_eq!(s.policy.table.as_ref().unwrap().rows.len(), 4);
    assert_eq!(s.policy.linux().gai_conf, "label fd00:11:22::/48 1\n");
    assert_eq!(s.policy.linux().addrlabels.len(), 1);
    assert!(s.policy.freebsd().ip6addrctl_conf.starts_with("fd00::/64 37 1"));
    assert_eq!(s.sysctl.linux, vec![("net.ipv6.conf.all.use_tempaddr".to_string(), "2".to_string())]);
    assert_eq!(s.probes.len(), 2);
    assert_eq!(s.expect[0].os, Os::Linux);
    assert_eq!(s.expect[0].line, 58);
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
}

#[test]
fn loopback_is_implicit_and_declaring_it_adds_addresses() {
    let s = parse(&format!("{BASE}[[interfaces]]\nname = \"lo\"\naddresses = [\"192.0.2.1/32\"]\n")).unwrap().scenario;
    let lo = &s.interfaces[0];
    assert_eq!(lo.name, "lo");
    let addrs: Vec<String> = lo.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1/8", "::1/128", "192.0.2.1/32"]);
    assert_eq!(s.interfaces.len(), 2);
}

#[test]
fn unknown_keys_name_the_line() {
    let text = format!("{BASE}[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\ngateway = \"x\"\n");
    let e = first_error(&text);
    assert!(e.starts_with("9:"), "{e}");
    assert!(e.contains("unknown field `gateway`"), "{e}");
}

#[test]
fn malformed_addresses_are_located() {
    let text = "name = \"t\"\n[[interfaces]]\nname = \"wlan0\"\naddresses = [\"10.0.0.50\", \"fd00::zz/64\"]\n";
    let errs = parse(text).unwrap_err().0;
    assert_eq!(errs.len(), 2);
    assert_eq!((errs[0].line, errs[0].column), (4, 14));
    assert!(errs[0].message.contains("prefix length is required"));
    assert_eq!((errs[1].line, errs[1].column), (4, 27));
    let text = "name = \"t\"\n[[interfaces]]\nname = \"wlan0\"\naddresses = [{ address = \"10.0.0.1/33\" }]\n";
    assert!(first_error(text).starts_with("4:26: `10.0.0.1/33`"));
}

#[test]
fn link_local_via_needs_dev() {
    let text = format!("{BASE}[[routes]]\nto = \"203.0.113.2/32\"\nvia = \"fe80::2\"\n");
    let e = first_error(&text);
    assert!(e.starts_with("8:7:"), "{e}");
    assert!(e.contains("needs `dev`"));
}

#[test]
fn route_device_must_exist() {
    let text = format!("{BASE}[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\ndev = \"eth9\"\n");
    let e = first_error(&text);
    assert!(e.starts_with("9:7:") && e.contains("`eth9` is not a declared interface"), "{e}");
}

#[test]
fn gateway_must_be_on_link() {
    let text = format!("{BASE}[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"192.168.1.1\"\n");
    assert!(first_error(&text).contains("not inside any IPv4 subnet"));
}

#[test]
fn host_bits_in_route_prefix() {
    let text = format!("{BASE}[[routes]]\nto = \"10.0.0.1/24\"\ndev = \"wlan0\"\n");
    assert!(first_error(&text).contains("write 10.0.0.0/24"));
}

#[test]
fn probe_naming_unknown_host() {
    let text = format!("{BASE}[[probes]]\nid = \"r\"\nresolve = \"nowhere.example\"\n");
    let e = first_error(&text);
    assert!(e.starts_with("8:11:") && e.contains("not in [hosts]"), "{e}");
}

#[test]
fn duplicate_ids_and_interfaces() {
    let text = format!(
        "{BASE}[[probes]]\nid = \"a\"\nconnect = \"10.0.0.1\"\n[[probes]]\nid = \"a\"\nconnect = \"10.0.0.2\"\n"
    );
    assert!(first_error(&text).contains("probe id `a` is used twice"));
    let text = format!("{BASE}[[interfaces]]\nname = \"wlan0\"\n");
    assert!(first_error(&text).contains("declared twice"));
}

#[test]
fn duplicate_address_and_implicit_loopback() {
    // Two interfaces may hold the same address (Linux allows it); one may not hold it twice.
    let text = format!("{BASE}[[interfaces]]\nname = \"eth1\"\naddresses = [\"10.0.0.50/24\"]\n");
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}")).scenario;
    assert_eq!(s.addresses().filter(|(_, a)| a.addr.to_string() == "10.0.0.50").count(), 2);
    // FreeBSD takes a second copy of an IPv4 address, not of an IPv6 one.
    assert!(crate::plan::freebsd(&s).unsupported.is_empty(), "{:?}", crate::plan::freebsd(&s).unsupported);
    let text = format!("{BASE}[[interfaces]]\nname = \"eth1\"\naddresses = [\"fd00:11:22::aa/64\"]\n");
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let unsupported = crate::plan::freebsd(&s).unsupported;
    assert!(
        unsupported.iter().any(|u| u.contains("fd00:11:22::aa on eth1 too") && u.contains("EEXIST")),
        "{unsupported:?}"
    );
    let text = format!("{BASE}[[interfaces]]\nname = \"eth1\"\naddresses = [\"10.0.0.60/24\", \"10.0.0.60/16\"]\n");
    assert!(first_error(&text).contains("assigned twice to `eth1`"), "{}", first_error(&text));
    let text = format!("{BASE}[[interfaces]]\nname = \"lo\"\naddresses = [\"127.0.0.1/8\"]\n");
    assert!(first_error(&text).contains("lo always has"));
}

#[test]
fn ip6addrctl_bad_line_points_into_the_string() {
    let text =
        format!("{BASE}[policy.freebsd]\nip6addrctl_conf = \"\"\"\n::1/128 50 0\nfd00::/8 37\n::/0 40 1\n\"\"\"\n");
    let errs = parse(&text).unwrap_err().0;
    assert_eq!(errs[0].line, 9, "{}", errs[0]);
    assert!(errs[0].message.contains("parse failed at line 2") && errs[0].message.contains("undefined"));
}

/// A file FreeBSD refuses (`parse failed`) is modelled, not refused: a warning at its line,
/// the jail's table empty, the plan's install step expected to fail.
#[test]
fn ip6addrctl_file_that_freebsd_refuses_is_a_warning() {
    let text = format!("{BASE}[policy.freebsd]\nip6addrctl_conf = \"\"\"\n::1/128 50 0\n2a01::/16 83 \n\"\"\"\n");
    let parsed = parse(&text).unwrap();
    let w = &parsed.warnings[0];
    assert_eq!(w.line, 9, "{w}");
    assert!(w.message.contains("parse failed at line 2") && w.message.contains("stays empty"), "{w}");
    let plan = crate::plan::freebsd(&parsed.scenario);
    let fails: Vec<&String> = plan
        .setup
        .iter()
        .filter_map(|s| match s {
            crate::plan::Step::Run { fails: Some(why), .. } => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(fails.len(), 1);
    assert!(fails[0].contains("parse failed at line 2"), "{}", fails[0]);
    let script = crate::plan::repro_script(&plan, &parsed.scenario);
    assert!(script.contains("ip6addrctl install /dev/stdin || true"), "{script}");
}

#[test]
fn gai_conf_ignored_lines_are_warnings_at_their_line() {
    let text = format!(
        "{BASE}[policy.linux]\ngai_conf = \"\"\"\nlabel fd00::/8 1\nlable ::/0 1\nprecedence ::ffff:0:0/96\n\"\"\"\n"
    );
    let parsed = parse(&text).unwrap();
    let w: Vec<(usize, bool)> = parsed.warnings.iter().map(|w| (w.line, w.message.contains("before 2.41"))).collect();
    // line 9 is ignored everywhere; line 10 only by glibc >= 2.41 (2.36 reads the value as 0).
    assert_eq!(w, [(9, false), (10, false)]);
    assert!(parsed.warnings[0].message.contains("unknown command `lable`"));
}

#[test]
fn addrlabel_rows_the_kernel_refuses() {
    let text = format!("{BASE}[policy.linux]\naddrlabels = [[\"::ffff:10.0.0.0/104\", 3]]\n");
    assert!(first_error(&text).contains("EINVAL"));
    let text = format!("{BASE}[policy.linux]\naddrlabels = [[\"fc00::/7\", 3], [\"fc00::/7\", 4]]\n");
    assert!(first_error(&text).contains("EEXIST"));
}

#[test]
fn neutral_table_must_fit_every_os_it_applies_to() {
    let text = format!("{BASE}[policy]\ntable = [[\"::/0\", 40, -1]]\n");
    let errs = parse(&text).unwrap_err().0;
    assert!(errs.iter().any(|e| e.message.contains("negative")));
    assert!(errs.iter().any(|e| e.message.contains("FreeBSD")));
    let text = format!("{BASE}[policy]\ntable = [[\"10.0.0.0/8\", 40, 1]]\n");
    assert!(first_error(&text).contains("::ffff:10.0.0.0/104"));
}

#[test]
fn sysctls_are_limited_to_namespace_networking() {
    let text = format!("{BASE}[sysctl.linux]\n\"kernel.panic\" = \"1\"\n");
    assert!(first_error(&text).contains("only net.ipv4"));
    let text = format!("{BASE}[sysctl.linux]\n\"net.ipv6.conf.eth7.use_tempaddr\" = 2\n");
    assert!(first_error(&text).contains("not declared"));
    let text = format!("{BASE}[sysctl.linux]\n\"net.ipv6.conf.wlan0.use_tempaddr\" = \"2; reboot\"\n");
    assert!(first_error(&text).contains("sysctl value"));
}

#[test]
fn interface_names_are_checked() {
    for bad in ["eth0.100", "a/b", "0eth", "averyveryverylongname", "all", "addrselp0", "$(reboot)"] {
        let text = format!("name = \"t\"\n[[interfaces]]\nname = \"{bad}\"\n");
        assert!(first_error(&text).contains("interface name"), "{bad}");
    }
}

#[test]
fn expectations_are_checked_against_probes() {
    let text = format!(
        "{BASE}[[probes]]\nid = \"c\"\nconnect = \"10.0.0.1\"\n[[expect]]\nprobe = \"c\"\nos = \"linux\"\norder = [\"10.0.0.1\"]\n"
    );
    assert!(first_error(&text).contains("`order` applies to resolve probes"));
    let text = format!(
        "{BASE}[[probes]]\nid = \"c\"\nconnect = \"10.0.0.1\"\n[[expect]]\nprobe = \"c\"\nos = \"solaris\"\nsource = \"10.0.0.50\"\n"
    );
    assert!(first_error(&text).contains("not linux, freebsd or rfc6724"));
    let text = format!(
        "{BASE}[hosts]\n\"h\" = [\"10.0.0.1\", \"fd00::1\"]\n[[probes]]\nid = \"r\"\nresolve = \"h\"\n[[expect]]\nprobe = \"r\"\nos = \"linux\"\norder = [\"10.0.0.1\"]\n"
    );
    assert!(first_error(&text).contains("exactly the addresses"));
}

#[test]
fn zones_must_name_interfaces() {
    let text = format!("{BASE}[[probes]]\nid = \"c\"\nconnect = \"fe80::1%eth9\"\n");
    assert!(first_error(&text).contains("zone `eth9`"));
    let ok = parse(&format!("{BASE}[[probes]]\nid = \"c\"\nconnect = \"fe80::1%wlan0\"\n")).unwrap();
    assert_eq!(ok.scenario.probes[0].kind.dst_text().unwrap(), "fe80::1%wlan0");
}

#[test]
fn all_errors_are_reported_together() {
    let text = "name = \"Bad Name\"\n[[interfaces]]\nname = \"wlan0\"\naddresses = [\"x\"]\n[[probes]]\nid = \"p\"\nresolve = \"nope\"\n";
    let errs = parse(text).unwrap_err();
    assert_eq!(errs.0.len(), 3, "{errs}");
    assert!(errs.to_string().starts_with("s.toml:1:8: error: name `Bad Name`"));
}

proptest::proptest! {
    #[test]
    fn parser_never_panics(text in "\\PC{0,400}") {
        let _ = parse(&text);
    }

    #[test]
    fn parser_never_panics_on_mutated_example(cut in 0usize..ISSUE_EXAMPLE.len(), insert in "[\\[\\]\"=a-z0-9:./ \n{},%#-]{0,12}") {
        let mut text = ISSUE_EXAMPLE.to_string();
        let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.insert_str(cut, &insert);
        let _ = parse(&text);
    }
}

/// Inputs the kernel would refuse at setup are refused at parse time, with their place.
#[test]
fn setup_failures_are_parse_errors() {
    let v6 = "[[interfaces]]\nname = \"eth0\"\naddresses = [\"2001:db8:1::2/64\", \"10.0.0.2/24\"]\n";
    let cases = [
        (
            format!("name = \"t\"\n{v6}[[routes]]\nto = \"::/0\"\nvia = \"2001:db8:9::1\"\n"),
            "7:7: next hop 2001:db8:9::1 is not inside any IPv6 subnet of this host",
        ),
        (
            format!(
                "name = \"t\"\n{v6}[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.254\"\n"
            ),
            "8:1: a route to 0.0.0.0/0 with metric 0 is already declared (via 10.0.0.1)",
        ),
        (
            format!("name = \"t\"\n{v6}[sysctl.linux]\n\"net.ipv6.conf.eth0.no_such_key\" = 1\n"),
            "6:1: `net.ipv6.conf.eth0.no_such_key` is not a per-namespace sysctl Linux has",
        ),
        (
            format!("name = \"t\"\n{v6}[sysctl.linux]\n\"net.ipv6.conf.eth0.disable_ipv6\" = 1\n"),
            "6:37: `net.ipv6.conf.eth0.disable_ipv6` = 1 disables IPv6 on `eth0`, which has IPv6 addresses",
        ),
    ];
    for (text, want) in cases {
        let got = first_error(&text);
        assert!(got.starts_with(want), "{got}\nwanted: {want}\n{text}");
    }
    // The same routes with different metrics, and known sysctls, are fine.
    let ok = format!(
        "name = \"t\"\n{v6}[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\n[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.254\"\nmetric = 10\n[sysctl.linux]\n\"net.ipv6.conf.eth0.use_tempaddr\" = 2\n\"net.ipv4.ip_forward\" = 1\n"
    );
    parse(&ok).unwrap_or_else(|e| panic!("{e}"));
}

/// `ip6addrctl_policy` takes rc.conf's values; what rc.d would warn about is a warning here,
/// at the value.
#[test]
fn ip6addrctl_policy_values_as_rc_d_reads_them() {
    use crate::scenario::Ip6addrctlPolicy as P;
    for (value, want) in [
        ("AUTO", P::Auto),
        ("auto", P::Auto),
        ("ipv6_prefer", P::Ipv6Prefer),
        ("ipv4_prefer", P::Ipv4Prefer),
        ("YES", P::Ipv6Prefer),
        ("0", P::Ipv4Prefer),
        ("None", P::None),
        ("IPV4_PREFER", P::Invalid("IPV4_PREFER".into())),
    ] {
        assert_eq!(P::from_rc_conf(value), want, "{value}");
    }
    let text = format!("{BASE}[policy.freebsd]\nip6addrctl_policy = \"prefer_v6\"\n");
    let w = &parse(&text).unwrap().warnings[0];
    assert_eq!((w.line, w.column), (7, 21), "{w}");
    assert!(w.message.contains("`prefer_v6` is invalid"), "{w}");
    let text =
        format!("{BASE}[policy.freebsd]\nip6addrctl_policy = \"ipv4_prefer\"\nip6addrctl_conf = \"::/0 40 1\\n\"\n");
    let parsed = parse(&text).unwrap();
    assert!(parsed.warnings[0].message.contains("only under AUTO"), "{}", parsed.warnings[0]);
    let effect = parsed.scenario.policy.freebsd();
    assert!(effect.origin.starts_with("rc.d ipv4_prefer"), "{}", effect.origin);
    assert!(effect.ip6addrctl_conf.contains("::ffff:0.0.0.0/96") && effect.ip6addrctl_conf.contains(" 100 "));
}

/// An ICMP probe's packet must come from elsewhere and reach this host on a link it has an
/// address on; a missing sender is taken from that link's subnet.
#[test]
fn icmp_probes_are_checked_where_they_are_written() {
    let base = "name = \"r\"\n[[interfaces]]\nname = \"eth1\"\naddresses = [\"10.0.0.2/24\", \"2001:db8:a::2/64\"]\n[[interfaces]]\nname = \"eth2\"\naddresses = [\"fe80::2/64\"]\n[[probes]]\nid = \"t\"\n";
    let probe = |line: &str| format!("{base}icmp_time_exceeded = {line}\n");
    let s = parse(&probe("{ from = \"eth1\", to = \"203.0.113.5\" }")).unwrap().scenario;
    assert_eq!(
        s.probes[0].kind,
        ProbeKind::IcmpTimeExceeded {
            from: "eth1".into(),
            to: "203.0.113.5".parse().unwrap(),
            sender: "10.0.0.1".parse().unwrap()
        }
    );
    for (line, want) in [
        ("{ from = \"eth9\", to = \"203.0.113.5\" }", "10:31: `eth9` is not a declared interface"),
        ("{ from = \"lo\", to = \"203.0.113.5\" }", "10:31: the probe's packet enters on a link"),
        ("{ from = \"eth1\", to = \"10.0.0.2\" }", "10:44: 10.0.0.2 is one of this host's addresses"),
        (
            "{ from = \"eth1\", to = \"203.0.113.5\", sender = \"2001:db8::1\" }",
            "10:68: `sender` and `to` must be of one family",
        ),
        ("{ from = \"eth2\", to = \"203.0.113.5\" }", "10:22: `eth2` has no IPv4 subnet to take a sender from"),
    ] {
        let e = first_error(&probe(line));
        assert!(e.starts_with(want), "{line}: {e}");
    }
    // An IPv4 packet can reach a link that has only IPv6 (RFC 5549); the sender must be given.
    let s = parse(&probe("{ from = \"eth2\", to = \"203.0.113.5\", sender = \"10.9.0.1\" }")).unwrap().scenario;
    let far: Vec<String> = crate::plan::linux(&s)
        .setup
        .iter()
        .filter_map(|st| match st {
            crate::plan::Step::Run { place: crate::plan::Place::Peer, argv, .. } if argv[1] != "link" => {
                Some(argv.join(" "))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        far,
        ["ip addr add 10.9.0.1/32 dev addrselp2", "ip route add 203.0.113.5/32 via inet6 fe80::2 dev addrselp2 onlink"]
    );
}

const RESOLVERS: &str = r#"
name = "t"
[[interfaces]]
name = "eth0"
addresses = ["192.0.2.10/24", "2001:db8:1::10/64"]
[hosts]
"a.example" = ["198.51.100.6", "2001:db8:5::6"]
"b.example" = ["198.51.100.7"]
"c.example" = ["198.51.100.7"]
[[probes]]
id = "plain"
resolve = "a.example"
"#;

#[test]
fn resolvers_expand_into_one_probe_each() {
    let text = format!(
        "{RESOLVERS}[[probes]]\nid = \"r\"\nresolve = \"a.example\"\nresolvers = [\"glibc\", \"musl\", \"go-cgo\"]\n[[expect]]\nprobe = \"r\"\nresolver = \"musl\"\nos = \"linux\"\nevidence = \"source reading\"\norder = [\"2001:db8:5::6\", \"198.51.100.6\"]\n"
    );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let ids: Vec<_> = s.probes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["plain", "r", "r@musl", "r@go-cgo"]);
    assert!(s.probes[0].default_resolvers && !s.probes[1].default_resolvers);
    assert_eq!(s.probes[2].kind, ProbeKind::Resolve { name: "a.example".into(), resolver: Resolver::Musl });
    assert_eq!(s.expect[0].probe, "r@musl");
}

#[test]
fn resolver_mistakes_are_located() {
    let bad =
        format!("{RESOLVERS}[[probes]]\nid = \"r\"\nresolve = \"a.example\"\nresolvers = [\"glibc\", \"bionic\"]\n");
    assert!(first_error(&bad).starts_with("16:"), "{}", first_error(&bad));
    assert!(first_error(&bad).contains("bionic"), "{}", first_error(&bad));
    let shared = format!("{RESOLVERS}[[probes]]\nid = \"r\"\nresolve = \"b.example\"\nresolvers = [\"c-ares\"]\n");
    assert!(first_error(&shared).contains("addresses of its own"), "{}", first_error(&shared));
    let not_run = format!(
        "{RESOLVERS}[[expect]]\nprobe = \"plain\"\nresolver = \"go\"\nos = \"linux\"\nevidence = \"source reading\"\norder = [\"198.51.100.6\"]\n"
    );
    assert!(first_error(&not_run).contains("does not run through go"), "{}", first_error(&not_run));
}

#[test]
fn a_runs_default_resolvers_extend_only_unnamed_probes() {
    let text = format!(
        "{RESOLVERS}[[probes]]\nid = \"r\"\nresolve = \"b.example\"\nresolvers = [\"musl\"]\n[[probes]]\nid = \"shared\"\nresolve = \"b.example\"\n"
    );
    let mut s = parse(&text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let skipped = s.add_default_resolvers(&[Resolver::Glibc, Resolver::Go, Resolver::CAres]);
    let ids: Vec<_> = s.probes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["plain", "plain@go", "plain@c-ares", "r@musl", "shared", "shared@go"]);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("probe `shared`"), "{skipped:?}");
}

#[test]
fn route_types_take_no_next_hop() {
    let typed = |extra: &str| format!("{BASE}[[routes]]\nto = \"198.51.1.0/24\"\ntype = \"blackhole\"\n{extra}");
    let s = parse(&typed("")).unwrap_or_else(|e| panic!("{e}")).scenario;
    assert_eq!(s.routes[0].rtype, RouteType::Blackhole);
    assert_eq!(
        first_error(&typed("via = \"10.0.0.1\"\n")),
        "9:7: a blackhole route takes no `via`: it sends nothing anywhere"
    );
    assert_eq!(
        first_error(&typed("dev = \"wlan0\"\n")),
        "9:7: a blackhole route takes no `dev`: it sends nothing anywhere"
    );
    let unknown = format!("{BASE}[[routes]]\nto = \"198.51.1.0/24\"\ntype = \"reject\"\n");
    assert!(first_error(&unknown).starts_with("8:8: route type `reject`"), "{}", first_error(&unknown));
}

const PRIVACY: &str = r#"
name = "t"
[[interfaces]]
name = "wlan0"
addresses = [{ address = "2001:db8:1::10/64", mngtmpaddr = true }]
[sysctl.linux]
"net.ipv6.conf.wlan0.use_tempaddr" = 2
[[probes]]
id = "p"
connect = "2001:db8:5::1"
"#;

#[test]
fn kernel_temporaries_are_named_by_their_prefix() {
    let text = format!(
        "{PRIVACY}[[expect]]\nprobe = \"p\"\nos = \"linux\"\nsource = \"temporary(2001:db8:1::/64)\"\nevidence = \"source reading\"\n"
    );
    let s = parse(&text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let made = s.kernel_temporaries();
    assert_eq!(made.len(), 1);
    let t = made[0].1.addr;
    assert_eq!(t, "2001:db8:1:0:7e7e:7e7e:7e7e:7e7e".parse::<IpAddr>().unwrap());
    assert_eq!(crate::show_addr(&t), "temporary(2001:db8:1::/64)");
    assert_eq!(crate::parse_shown_addr("temporary(2001:db8:1::/64)"), Some(t));
    assert_eq!(crate::parse_shown_addr("temporary(2001:db8:1::/48)"), None);
    assert_eq!(s.expect[0].outcome, Expected::Source(t));
    // use_tempaddr 0: the template makes nothing, so there is nothing to name.
    let off = text.replace("use_tempaddr\" = 2", "use_tempaddr\" = 0");
    assert!(first_error(&off).contains("no kernel-made temporary address in 2001:db8:1::/64"), "{}", first_error(&off));
}

#[test]
fn mngtmpaddr_mistakes_are_located() {
    let with = |addr: &str| PRIVACY.replace(r#"{ address = "2001:db8:1::10/64", mngtmpaddr = true }"#, addr);
    let e = first_error(&with(r#"{ address = "2001:db8:1::10/48", mngtmpaddr = true }"#));
    assert!(e.starts_with("5:26:") && e.contains("prefix length other than 64"), "{e}");
    let e = first_error(&with(r#"{ address = "10.0.0.1/24", mngtmpaddr = true }"#));
    assert!(e.contains("`mngtmpaddr` applies to IPv6 addresses only"), "{e}");
    let e = first_error(&with(r#"{ address = "2001:db8:1::10/64", mngtmpaddr = true, temporary = true }"#));
    assert!(e.contains("either the template (mngtmpaddr) or temporary"), "{e}");
    let e = first_error(&with(r#""2001:db8:1:0:7e7e:7e7e:7e7e:7e7e/64""#));
    assert!(e.contains("names the kernel's temporary address"), "{e}");
}

#[test]
fn socket_binding_is_checked() {
    let probe = |extra: &str| format!("{BASE}[[probes]]\nid = \"p\"\nconnect = \"2001:db8:5::1\"\n{extra}");
    let s =
        parse(&probe("bind = \"2001:db8:9::9\"\nbind_device = \"wlan0\"\n")).unwrap_or_else(|e| panic!("{e}")).scenario;
    assert_eq!(s.probes[0].bind, Some("2001:db8:9::9".parse().unwrap()));
    assert_eq!(s.probes[0].bind_device.as_deref(), Some("wlan0"));
    assert_eq!(
        first_error(&probe("bind = \"10.0.0.50\"\n")),
        "9:8: bind address 10.0.0.50 is not of the destination's family (2001:db8:5::1)"
    );
    assert_eq!(
        first_error(&probe("bind_device = \"eth7\"\n")),
        "9:15: bind_device `eth7` is not a declared interface (or lo)"
    );
    let resolve = format!(
        "{BASE}[hosts]\n\"a.example\" = [\"10.0.0.1\"]\n[[probes]]\nid = \"r\"\nresolve = \"a.example\"\nbind = \"10.0.0.50\"\n"
    );
    assert!(first_error(&resolve).contains("`bind` applies to connect probes"), "{}", first_error(&resolve));
}

#[test]
fn down_links_carry_addresses_but_no_routes() {
    let down = |extra: &str| {
        format!("{BASE}[[interfaces]]\nname = \"eth1\"\nup = false\naddresses = [\"10.1.0.10/24\"]\n{extra}")
    };
    let s = parse(&down("")).unwrap_or_else(|e| panic!("{e}")).scenario;
    assert!(!s.interface("eth1").unwrap().up && s.interface("wlan0").unwrap().up);
    let e = first_error(&down("[[routes]]\nto = \"198.51.100.0/24\"\ndev = \"eth1\"\n"));
    assert!(e.starts_with("12:7:") && e.contains("refuses a route through a down link"), "{e}");
    let e = first_error(&down("[[routes]]\nto = \"198.51.100.0/24\"\nvia = \"10.1.0.1\"\n"));
    assert!(e.contains("not inside any IPv4 subnet of this host that is up"), "{e}");
    let lo = format!("{BASE}[[interfaces]]\nname = \"lo\"\nup = false\n");
    assert!(first_error(&lo).contains("lo is always up"), "{}", first_error(&lo));
    let plan = crate::plan::linux(&s);
    assert!(plan.notes.iter().any(|n| n.contains("eth1 stays down")));
    // FreeBSD: the interface goes down after its addresses are added (adding one brings it up).
    let fb = crate::plan::freebsd(&s);
    assert!(fb.unsupported.is_empty(), "{:?}", fb.unsupported);
    let at = |argv: &[&str]| {
        fb.setup.iter().position(|st| matches!(st, crate::plan::Step::Run { argv: a, .. } if a == argv)).unwrap()
    };
    assert!(at(&["ifconfig", "eth1", "inet", "10.1.0.10/24", "alias"]) < at(&["ifconfig", "eth1", "down"]));
}

#[test]
fn dad_states_are_checked() {
    let with = |addr: &str| BASE.replace(r#""fd00:11:22::aa/64""#, addr);
    let s =
        parse(&with(r#"{ address = "fd00:11:22::aa/64", dad = "failed" }"#)).unwrap_or_else(|e| panic!("{e}")).scenario;
    let a = s.interface("wlan0").unwrap().addresses[1];
    assert_eq!(a.dad, Dad::Failed);
    assert!(a.unusable() && a.flags().contains(&"dadfailed"));
    let e = first_error(&with(r#"{ address = "fd00:11:22::aa/64", dad = "running" }"#));
    assert!(e.starts_with("5:42:") && e.contains("one of tentative, optimistic, failed"), "{e}");
    let e = first_error(&BASE.replace(r#""10.0.0.50/24""#, r#"{ address = "10.0.0.50/24", dad = "tentative" }"#));
    assert!(e.contains("dad applies to IPv6 addresses"), "{e}");
}

#[test]
fn vrfs_are_checked_where_they_are_written() {
    let with = |tail: &str| format!("{BASE}[[interfaces]]\nname = \"eth1\"\n{tail}");
    // A table of the kernel's own.
    let e = first_error(&with("[[vrfs]]\nname = \"blue\"\ntable = 254\ninterfaces = [\"eth1\"]\n"));
    assert!(e.starts_with("10:9: table 254 is the kernel's own"), "{e}");
    // An interface that does not exist, and one in two VRFs.
    let e = first_error(&with("[[vrfs]]\nname = \"blue\"\ntable = 10\ninterfaces = [\"eth9\"]\n"));
    assert!(e.starts_with("11:15: `eth9` is not a declared interface"), "{e}");
    let two = "[[vrfs]]\nname = \"blue\"\ntable = 10\ninterfaces = [\"eth1\"]\n[[vrfs]]\nname = \"red\"\ntable = 11\ninterfaces = [\"eth1\"]\n";
    let e = first_error(&with(two));
    assert!(e.starts_with("15:15: `eth1` is already in VRF `blue`"), "{e}");
    // A VRF named like an interface.
    let e = first_error(&with("[[vrfs]]\nname = \"eth1\"\ntable = 10\n"));
    assert!(e.starts_with("9:8: `eth1` is already an interface or a VRF"), "{e}");
    let vrf = "[[vrfs]]\nname = \"blue\"\ntable = 10\ninterfaces = [\"eth1\"]\n";
    // A route in a table no VRF owns, or with both keys.
    let e = first_error(&with(&format!("{vrf}[[routes]]\nto = \"10.9.0.0/24\"\ndev = \"wlan0\"\ntable = 11\n")));
    assert!(e.starts_with("15:9: table 11 is no VRF's"), "{e}");
    let e = first_error(&with(&format!(
        "{vrf}[[routes]]\nto = \"10.9.0.0/24\"\ndev = \"wlan0\"\ntable = 10\nvrf = \"blue\"\n"
    )));
    assert!(e.starts_with("16:7: give `table = 10` or `vrf`, not both"), "{e}");
    // A probe in an unknown VRF, in a VRF and bound to a device, or a resolve in a VRF.
    let e = first_error(&with(&format!("{vrf}[[probes]]\nid = \"p\"\nconnect = \"10.9.0.1\"\nvrf = \"red\"\n")));
    assert!(e.starts_with("15:7: vrf `red` is not declared"), "{e}");
    let e = first_error(&with(&format!(
        "{vrf}[[probes]]\nid = \"p\"\nconnect = \"10.9.0.1\"\nvrf = \"blue\"\nbind_device = \"eth1\"\n"
    )));
    assert!(e.starts_with("15:7: `vrf` binds the socket to the VRF's device"), "{e}");
    // A same prefix and metric is fine in two tables.
    let ok = with(&format!(
        "{vrf}[[routes]]\nto = \"0.0.0.0/0\"\ntype = \"unreachable\"\nvrf = \"blue\"\n[[routes]]\nto = \"0.0.0.0/0\"\ntype = \"unreachable\"\n"
    ));
    let s = parse(&ok).unwrap_or_else(|e| panic!("{e}")).scenario;
    assert_eq!(s.routes.iter().map(|r| r.table).collect::<Vec<_>>(), [Some(10), None]);
    assert_eq!(s.vrf_of("eth1").map(|v| v.name.as_str()), Some("blue"));
}

#[test]
fn multipath_routes_are_checked_where_they_are_written() {
    let with = |tail: &str| format!("{BASE}[[interfaces]]\nname = \"eth1\"\naddresses = [\"10.1.0.10/24\"]\n{tail}");
    let e = first_error(&with("[[routes]]\nto = \"0.0.0.0/0\"\nnexthops = [{ via = \"10.0.0.1\" }]\n"));
    assert!(e.starts_with("11:12: `nexthops` needs two paths or more"), "{e}");
    let e = first_error(&with(
        "[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\nnexthops = [{ via = \"10.0.0.1\" }, { dev = \"eth1\" }]\n",
    ));
    assert!(e.starts_with("11:7: a multipath route names its paths in `nexthops`; `via` goes there"), "{e}");
    let e = first_error(&with(
        "[[routes]]\nto = \"0.0.0.0/0\"\nnexthops = [{ via = \"10.0.0.1\" }, { via = \"10.9.0.1\", dev = \"eth1\" }]\n",
    ));
    assert!(e.starts_with("11:43: next hop 10.9.0.1 is not inside any subnet of `eth1`"), "{e}");
    let e = first_error(&with(
        "[[routes]]\nto = \"0.0.0.0/0\"\nnexthops = [{ via = \"10.0.0.1\", weight = 0 }, { dev = \"eth1\" }]\n",
    ));
    assert!(e.starts_with("11:42: weight 0 is outside 1..=256"), "{e}");
    let e = first_error(&with("[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\nnexthop_objects = true\n"));
    assert!(e.starts_with("12:19: `nexthop_objects` applies to a route with `nexthops`"), "{e}");
    let ok = with(
        "[[routes]]\nto = \"0.0.0.0/0\"\nnexthop_objects = true\nnexthops = [{ via = \"10.0.0.1\" }, { via = \"10.1.0.1\", dev = \"eth1\", weight = 2 }]\n",
    );
    let s = parse(&ok).unwrap_or_else(|e| panic!("{e}")).scenario;
    let r = &s.routes[0];
    assert!(r.nexthop_objects && r.via.is_none() && r.dev.is_none());
    assert_eq!(r.nexthops.iter().map(|n| n.weight).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(r.nexthops[1].dev.as_deref(), Some("eth1"));
}
