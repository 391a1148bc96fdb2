use super::*;
use crate::parse_scenario;

fn example() -> Scenario {
    parse_scenario("issue-example.toml", include_str!("../../tests/data/issue-example.toml")).unwrap().scenario
}

fn v4_via_v6() -> Scenario {
    let text = r#"
name = "v4-via-v6"
[[interfaces]]
name = "wlan0"
addresses = ["10.0.0.50/24", "fd00:11:22::aa/64", { address = "2001:db8:1::2/64", deprecated = true, prefer_source = true }]
[[interfaces]]
name = "bge2"
[[interfaces]]
name = "lo"
addresses = ["192.0.2.1/32"]
[[routes]]
to = "0.0.0.0/0"
via = "10.0.0.1"
dev = "wlan0"
metric = 100
[[routes]]
to = "::/0"
via = "fd00:11:22::1"
dev = "wlan0"
[[routes]]
to = "203.0.113.2/32"
via = "fe80::2"
dev = "bge2"
[[routes]]
to = "198.51.100.0/24"
dev = "wlan0"
src = "10.0.0.50"
[hosts]
"server.example" = ["2a01:4f8:c2c:8101::1", "116.203.176.52"]
[sysctl.linux]
"net.ipv6.conf.default.use_tempaddr" = 2
"net.ipv6.conf.wlan0.use_optimistic" = 1
[sysctl.freebsd]
"net.inet6.ip6.prefer_tempaddr" = 1
[[probes]]
id = "v4"
connect = "203.0.113.2"
[[probes]]
id = "ll"
connect = "fe80::1%wlan0"
prefer = ["public"]
[[probes]]
id = "r"
resolve = "server.example"
"#;
    parse_scenario("v4.toml", text).unwrap().scenario
}

#[test]
fn linux_plan_snapshot() {
    insta::assert_yaml_snapshot!("linux-issue-example", linux(&example()));
    insta::assert_yaml_snapshot!("linux-v4-via-v6", linux(&v4_via_v6()));
}

#[test]
fn freebsd_plan_snapshot() {
    insta::assert_yaml_snapshot!("freebsd-issue-example", freebsd(&example()));
    insta::assert_yaml_snapshot!("freebsd-v4-via-v6", freebsd(&v4_via_v6()));
}

#[test]
fn repro_scripts_snapshot() {
    let s = v4_via_v6();
    insta::assert_snapshot!("repro-linux", repro_script(&linux(&s), &s));
    insta::assert_snapshot!("repro-freebsd", repro_script(&freebsd(&s), &s));
}

#[test]
fn temporary_addresses_are_unsupported_not_faked() {
    let s = example();
    assert!(linux(&s).unsupported.iter().any(|u| u.contains("temporary address 2001:db8:1:0:d5e3:7953:13eb:22e8/64")));
    assert!(freebsd(&s).unsupported.iter().any(|u| u.contains("temporary")));
    let all_argv: Vec<String> = linux(&s)
        .setup
        .iter()
        .filter_map(|st| if let Step::Run { argv, .. } = st { Some(argv.join(" ")) } else { None })
        .collect();
    assert!(!all_argv.iter().any(|a| a.contains("d5e3")));
}

#[test]
fn freebsd_route_forms() {
    let s = v4_via_v6();
    let routes: Vec<String> = s.routes.iter().map(|r| freebsd_route(r).join(" ")).collect();
    // -ifp is not sent over route(8)'s netlink path, so `dev` is a note, not an argument.
    assert_eq!(routes[0], "route add -4 -net 0.0.0.0/0 10.0.0.1");
    assert_eq!(routes[1], "route add -6 -net ::/0 fd00:11:22::1");
    assert_eq!(routes[2], "route add -4 -host 203.0.113.2 -inet6 fe80::2%bge2");
    let plan = freebsd(&s);
    assert!(plan.unsupported.iter().any(|u| u.contains("198.51.100.0/24 with src")));
    assert!(plan.notes.iter().any(|n| n.contains("route 0.0.0.0/0 dev wlan0") && n.contains("not enforced")));
}

#[test]
fn freebsd_names_the_loopback_lo0_everywhere() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "lo-route"
[[interfaces]]
name = "lo"
addresses = ["fe80::1/64"]
[[routes]]
to = "192.0.2.0/24"
dev = "lo"
[[probes]]
id = "p"
connect = "fe80::1%lo"
"#,
    )
    .unwrap()
    .scenario;
    let plan = freebsd(&s);
    let argv: Vec<String> = plan
        .setup
        .iter()
        .filter_map(|st| if let Step::Run { argv, .. } = st { Some(argv.join(" ")) } else { None })
        .collect();
    assert!(argv.iter().any(|a| a == "route add -4 -net 192.0.2.0/24 -interface lo0"), "{argv:?}");
    assert!(!argv.iter().any(|a| a.split(' ').any(|w| w == "lo")), "{argv:?}");
    assert!(matches!(&plan.probes[0].kind, ProbeKind::Connect { zone: Some(z), .. } if z == "lo0"));
}

#[test]
fn freebsd_cleanup_removes_everything_setup_made_even_after_a_failure() {
    let s = v4_via_v6();
    let plan = freebsd(&s);
    let cleanup: Vec<String> = plan
        .cleanup
        .iter()
        .filter_map(|st| if let Step::Run { argv, .. } = st { Some(argv.join(" ")) } else { None })
        .collect();
    // Host ends destroy the pairs; devfs is unmounted before the jail goes; no rm -rf.
    assert!(cleanup[0].starts_with("ifconfig {epair") && cleanup[0].ends_with("}b destroy"), "{cleanup:?}");
    let dev = cleanup.iter().position(|c| c == "umount {dir}/root/dev").unwrap();
    let jail = cleanup.iter().position(|c| c == "jail -r {jail}").unwrap();
    assert!(dev < jail);
    assert_eq!(cleanup.last().unwrap(), "rmdir {dir}/root {dir}");
    assert!(!cleanup.iter().any(|c| c.contains("rm -rf")));
}

#[test]
fn shell_quoting() {
    assert_eq!(shell_quote("fe80::2%bge2"), "fe80::2%bge2");
    assert_eq!(shell_quote("a b"), "'a b'");
    assert_eq!(shell_quote("it's"), "'it'\\''s'");
    assert_eq!(shell_arg("{epair3}a"), "\"epair$((base + 3))a\"");
    assert_eq!(shell_arg("{dir}/root"), "\"$dir/root\"");
}

#[test]
fn plans_round_trip_through_json() {
    let plan = linux(&example());
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
}

/// Runs `printf_exact(text) > file` in a real shell and returns what the file holds.
fn written_by_shell(shell: &str, text: &str, dir: &std::path::Path) -> Vec<u8> {
    let file = dir.join("out");
    let script = format!("{} > \"$1\"\n", printf_exact(text));
    let status = std::process::Command::new(shell)
        .args(["-c", &script, "sh"])
        .arg(&file)
        .current_dir(dir)
        .status()
        .expect("a shell");
    assert!(status.success(), "{shell} failed on {script:?}");
    std::fs::read(&file).unwrap()
}

fn scratch() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "addrsel-test-printf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every terminator a file's text could use to escape its quoting, run through real shells:
/// the file holds exactly the text and nothing else ran.
#[test]
fn file_text_cannot_end_its_quoting() {
    let nasty = [
        "label fd00::/8 1\nADDRSEL_EOF\ntouch CANARY\n",
        "EOF\ntouch CANARY\nEOF\n",
        "'; touch CANARY; echo '",
        "\"$(touch CANARY)\"",
        "`touch CANARY`",
        "$(touch CANARY)\\",
        "%s%d%n\\n\\0\\101",
        "a\0b\0\ntouch CANARY",
        "cr\r\ntouch CANARY\r\n",
        "\u{1b}[31mred\u{1b}[0m",
        "",
        "no newline at the end",
        "-",
        "-n option-like\n",
        "ünïcödé ✓",
    ];
    for shell in ["/bin/sh", "/bin/bash"] {
        for text in nasty {
            let dir = scratch();
            assert_eq!(written_by_shell(shell, text, &dir), text.as_bytes(), "{shell}: {text:?}");
            assert!(!dir.join("CANARY").exists(), "{shell} ran a command from {text:?}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
    /// Arbitrary text, every byte value included.
    #[test]
    fn any_text_is_written_exactly(text in "(?s).{0,200}", bytes in proptest::collection::vec(0u8..128, 0..64)) {
        let text = format!("{text}{}", String::from_utf8(bytes).unwrap());
        let dir = scratch();
        let got = written_by_shell("/bin/sh", &text, &dir);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        proptest::prop_assert_eq!(got, text.as_bytes().to_vec());
        proptest::prop_assert_eq!(leftovers.len(), 1, "only the output file: {:?}", leftovers);
    }
}

/// The files backends of glibc and FreeBSD: names match without regard to case, every
/// matching line counts in file order, and localhost keeps the file's own lines.
#[test]
fn hosts_lookup_merges_like_the_files_backends() {
    let text = r#"
name = "h"
[[interfaces]]
name = "eth0"
addresses = ["10.0.0.2/24"]
[hosts]
"Server.example" = ["2001:db8::1"]
"server.example" = ["192.0.2.1", "2001:db8::2"]
"localhost" = ["10.0.0.9"]
"#;
    let s = parse_scenario("h.toml", text).unwrap().scenario;
    let got = |n: &str| hosts_lookup(&s, n).iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(got("server.example"), ["2001:db8::1", "192.0.2.1", "2001:db8::2"]);
    assert_eq!(got("SERVER.EXAMPLE"), got("server.example"));
    assert_eq!(got("localhost"), ["127.0.0.1", "::1", "10.0.0.9"]);
}

/// A route with `install = "rtsock"`: FreeBSD's plan has the agent write the RTM_ADD inside
/// the jail (route(8) would use netlink), the script names the agent once, Linux notes it.
#[test]
fn routing_socket_routes() {
    let text = r#"
name = "r"
[[interfaces]]
name = "bge2"
addresses = ["fe80::1/64"]
[[routes]]
to = "203.0.113.2/32"
via = "fe80::2"
dev = "bge2"
install = "rtsock"
"#;
    let s = parse_scenario("r.toml", text).unwrap().scenario;
    let p = freebsd(&s);
    let agent_steps: Vec<&Vec<String>> = p
        .setup
        .iter()
        .filter_map(|st| match st {
            Step::Run { place: Place::Scenario, argv, .. } if argv[0] == "{agent}" => Some(argv),
            _ => None,
        })
        .collect();
    assert_eq!(agent_steps, [&vec!["{agent}", "route-socket-add", "203.0.113.2/32", "fe80::2", "bge2"]]);
    assert!(!p.setup.iter().any(|st| matches!(st, Step::Run { argv, .. } if argv[0] == "route")));
    let script = repro_script(&p, &s);
    assert!(script.contains("\nagent=${ADDRSEL_AGENT:-addrsel-agent}\n"), "{script}");
    // bge2 has no IPv4 address and the FIB none at all: the engine's model says RTM_ADD fails,
    // so the plan expects it to.
    assert!(
        script.contains("jexec $jail \"$agent\" route-socket-add 203.0.113.2/32 fe80::2 bge2 || true\n"),
        "{script}"
    );
    assert!(linux(&s).notes.iter().any(|n| n.contains("rtsock\" is FreeBSD's")));
    let err = parse_scenario("r.toml", &text.replace("via = \"fe80::2\"\n", "")).unwrap_err().to_string();
    assert!(err.contains("r.toml:9:11: error: install = \"rtsock\" needs `via`"), "{err}");
}

#[test]
fn route_types_on_each_os() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "types"
[[interfaces]]
name = "eth0"
addresses = ["192.0.2.10/24", "2001:db8:1::10/64"]
[[routes]]
to = "::/0"
type = "unreachable"
[[routes]]
to = "198.51.1.0/24"
type = "blackhole"
metric = 5
[[routes]]
to = "2001:db8:93::/48"
type = "prohibit"
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    let argv: Vec<String> = linux(&s)
        .setup
        .iter()
        .filter_map(|st| if let Step::Run { argv, .. } = st { Some(argv.join(" ")) } else { None })
        .filter(|a| a.starts_with("ip route"))
        .collect();
    assert_eq!(
        argv,
        [
            "ip route add unreachable ::/0",
            "ip route add blackhole 198.51.1.0/24 metric 5",
            "ip route add prohibit 2001:db8:93::/48"
        ]
    );
    assert_eq!(freebsd_route(&s.routes[0]).join(" "), "route add -6 -net ::/0 ::1 -reject");
    assert_eq!(freebsd_route(&s.routes[1]).join(" "), "route add -4 -net 198.51.1.0/24 127.0.0.1 -blackhole");
    let plan = freebsd(&s);
    assert_eq!(plan.unsupported.len(), 1, "{:?}", plan.unsupported);
    assert!(plan.unsupported[0].contains("2001:db8:93::/48 type prohibit"));
}

#[test]
fn mngtmpaddr_on_each_os() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "privacy"
[[interfaces]]
name = "wlan0"
addresses = [{ address = "2001:db8:1::10/64", mngtmpaddr = true }, "2001:db8:1::20/64"]
[sysctl.linux]
"net.ipv6.conf.wlan0.use_tempaddr" = 1
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    let plan = linux(&s);
    let steps: Vec<String> = plan
        .setup
        .iter()
        .filter_map(|st| match st {
            Step::Run { argv, .. } if argv[1] == "addr" => Some(argv.join(" ")),
            Step::Sysctl { key, value, .. } => Some(format!("{key}={value}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "net.ipv6.conf.wlan0.use_tempaddr=1",
            "net.ipv6.conf.wlan0.accept_dad=0",
            "ip addr add 2001:db8:1::10/64 dev wlan0 nodad mngtmpaddr",
            "ip addr add 2001:db8:1::20/64 dev wlan0 nodad"
        ]
    );
    // A source the kernel made in the prefix is named; declared ones and others stay.
    let seen: IpAddr = "2001:db8:1:0:a44a:6f8f:9223:cd07".parse().unwrap();
    assert_eq!(crate::show_addr(&plan.name_observed(seen)), "temporary(2001:db8:1::/64)");
    for kept in ["2001:db8:1::20", "2001:db8:2::1", "10.0.0.1"] {
        let a: IpAddr = kept.parse().unwrap();
        assert_eq!(plan.name_observed(a), a);
    }
    // FreeBSD: `autoconf` marks the template; without use_tempaddr no temporary is made.
    let fb = freebsd(&s);
    assert!(fb.unsupported.is_empty(), "{:?}", fb.unsupported);
    let autoconf = ["ifconfig", "wlan0", "inet6", "2001:db8:1::10/64", "alias", "autoconf"].map(String::from).to_vec();
    assert!(fb.setup.iter().any(|st| matches!(st, Step::Run { argv, .. } if *argv == autoconf)));
    assert!(fb.kernel_temporaries.is_empty() && fb.notes.iter().any(|n| n.contains("net.inet6.ip6.use_tempaddr")));
}

#[test]
fn freebsd_makes_temporaries_from_autoconf_addresses() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "tmp"
[[interfaces]]
name = "wlan0"
addresses = ["2001:db8:1::20/64", { address = "2001:db8:1::10/64", mngtmpaddr = true }]
[[interfaces]]
name = "eth1"
addresses = [{ address = "2001:db8:2::10/64", mngtmpaddr = true }]
[sysctl.freebsd]
"net.inet6.ip6.use_tempaddr" = 1
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    // Only the first address of its prefix on an interface gets one (ndpr_addrcnt == 1).
    let made: Vec<String> = s.freebsd_kernel_temporaries().iter().map(|(_, a)| crate::show_addr(&a.addr)).collect();
    assert_eq!(made, ["temporary(2001:db8:2::/64)"]);
    let plan = freebsd(&s);
    assert_eq!(plan.kernel_temporaries.len(), 1);
    let seen: IpAddr = "2001:db8:2:0:5c1e:77ff:fe00:1".parse().unwrap();
    assert_eq!(crate::show_addr(&plan.name_observed(seen)), "temporary(2001:db8:2::/64)");
    let sysctl =
        plan.setup.iter().position(|st| matches!(st, Step::Sysctl { key, .. } if key == "net.inet6.ip6.use_tempaddr"));
    let autoconf =
        plan.setup.iter().position(|st| matches!(st, Step::Run { argv, .. } if argv.contains(&"autoconf".to_string())));
    assert!(sysctl.unwrap() < autoconf.unwrap(), "the sysctl must be set before the address is added");
}

#[test]
fn socket_binding_in_repro_and_freebsd() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "bound"
[[interfaces]]
name = "eth1"
addresses = ["198.51.100.10/24"]
[[probes]]
id = "p"
connect = "8.8.8.8"
bind = "198.51.100.10"
bind_device = "eth1"
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    let script = repro_script(&linux(&s), &s);
    assert!(script.contains(r#"s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b"eth1")"#), "{script}");
    assert!(script.contains(r#"s.bind(("198.51.100.10",0)); s.connect("#), "{script}");
    assert!(script.contains("ip route get 8.8.8.8 oif eth1 from 198.51.100.10"), "{script}");
    assert!(freebsd(&s).unsupported.iter().any(|u| u.contains("no SO_BINDTODEVICE")));
}

#[test]
fn dad_states_are_held_by_the_plan() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "dad"
[[interfaces]]
name = "eth0"
addresses = [{ address = "2001:db8:1::10/64", dad = "tentative" }, { address = "2001:db8:2::10/64", dad = "failed" }, { address = "2001:db8:3::10/64", dad = "optimistic" }]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    let plan = linux(&s);
    let steps: Vec<String> = plan
        .setup
        .iter()
        .filter_map(|st| match st {
            Step::Run { argv, place, .. } if argv[1] == "addr" => Some(format!("{place:?} {}", argv.join(" "))),
            Step::Sysctl { key, value, .. } if key.contains("neigh") => Some(format!("{key}={value}")),
            Step::WaitAddress { dev, addr, flag, .. } => Some(format!("wait {dev} {addr} {flag}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "net.ipv6.neigh.eth0.retrans_time_ms=3600000",
            "Scenario ip addr add 2001:db8:1::10/64 dev eth0",
            "Peer ip addr add 2001:db8:2::10/64 dev addrselp1 nodad",
            "Scenario ip addr add 2001:db8:2::10/64 dev eth0",
            "wait eth0 2001:db8:2::10 dadfailed",
            "wait eth0 2001:db8:3::10 optimistic"
        ]
    );
    assert!(plan.unsupported.is_empty(), "{:?}", plan.unsupported);
    let agent = ["{agent}", "netlink-addr-add", "eth0", "2001:db8:3::10/64", "optimistic"].map(String::from).to_vec();
    assert!(plan.setup.iter().any(|st| matches!(st, Step::Run { argv, .. } if *argv == agent)));
    assert!(plan.setup.iter().any(
        |st| matches!(st, Step::Sysctl { key, value, .. } if key == "net.ipv6.conf.eth0.optimistic_dad" && value == "1")
    ));
    assert!(plan.setup.iter().any(|st| matches!(st, Step::WaitAddress { flag, .. } if flag == "optimistic")));
    let script = repro_script(&plan, &s);
    assert!(script.contains("*'inet6 2001:db8:2::10/'*' dadfailed'*) true ;;"), "{script}");
    let fb = freebsd(&s);
    assert_eq!(fb.unsupported.len(), 1, "{:?}", fb.unsupported);
    assert!(fb.unsupported[0].contains("2001:db8:3::10/64") && fb.unsupported[0].contains("no optimistic DAD"));
}

#[test]
fn freebsd_holds_tentative_and_failed_addresses() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "dad"
[[interfaces]]
name = "eth0"
addresses = ["192.0.2.10/24", { address = "2001:db8:1::10/64", dad = "tentative" }]
[[interfaces]]
name = "eth1"
addresses = [{ address = "2001:db8:2::10/64", dad = "failed" }, "2001:db8:3::10/64"]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    let plan = freebsd(&s);
    assert!(plan.unsupported.is_empty(), "{:?}", plan.unsupported);
    let steps: Vec<String> = plan
        .setup
        .iter()
        .filter_map(|st| match st {
            Step::Run { argv, place, .. }
                if argv[0] == "ifconfig" && argv.iter().any(|a| a.contains("2001:") || a.contains("no_dad")) =>
            {
                Some(format!("{place:?} {}", argv.join(" ")))
            }
            Step::Run { argv, place: Place::Host, .. } if argv[0] == "jail" && argv[2] == "name={peer}" => {
                Some(argv.join(" "))
            }
            Step::Sysctl { key, value, .. } if key.contains("dad_count") => Some(format!("{key}={value}")),
            Step::WaitAddress { dev, addr, flag, .. } => Some(format!("wait {dev} {addr} {flag}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "jail -c name={peer} path={dir}/root persist vnet vnet.interface={epair2}b",
            "Peer ifconfig {epair2}b inet6 no_dad -ifdisabled up",
            "Peer ifconfig {epair2}b inet6 2001:db8:2::10/64 alias",
            "net.inet6.ip6.dad_count=0",
            "Scenario ifconfig eth0 inet6 -auto_linklocal no_dad -ifdisabled up",
            "Scenario ifconfig eth1 inet6 -auto_linklocal no_dad -ifdisabled up",
            // Addresses without a DAD state first, while DAD is off everywhere.
            "Scenario ifconfig eth1 inet6 2001:db8:3::10/64 alias",
            "Scenario ifconfig eth1 inet6 -no_dad",
            "net.inet6.ip6.dad_count=1",
            "Scenario ifconfig eth1 inet6 2001:db8:2::10/64 alias",
            "wait eth1 2001:db8:2::10 duplicated",
            "Scenario ifconfig eth0 inet6 -no_dad",
            "net.inet6.ip6.dad_count=1000",
            "Scenario ifconfig eth0 inet6 2001:db8:1::10/64 alias",
        ]
    );
    // The far ends come back from the peer jail first, so they are on the machine to be destroyed.
    let cleanup: Vec<String> = plan
        .cleanup
        .iter()
        .filter_map(|st| match st {
            Step::Run { argv, .. } => Some(argv.join(" ")),
            _ => None,
        })
        .take(4)
        .collect();
    assert_eq!(
        cleanup,
        [
            "ifconfig {epair2}b -vnet {peer}",
            "jail -r {peer}",
            "ifconfig {epair1}b destroy",
            "ifconfig {epair2}b destroy"
        ]
    );
    let script = repro_script(&plan, &s);
    assert!(script.contains("until jexec $jail ifconfig eth1 inet6 | { while read -r l; do case \"$l\" in 'inet6 2001:db8:2::10 '*' duplicated'*) exit 0 ;; esac; done; exit 1; }; do\n"), "{script}");
    assert!(
        script.contains("\njexec $peer ifconfig \"epair$((base + 2))b\" inet6 2001:db8:2::10/64 alias\n"),
        "{script}"
    );
}

#[test]
fn freebsd_vrfs_are_fibs() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "vrf"
[[interfaces]]
name = "eth1"
addresses = ["10.1.0.1/24"]
[[interfaces]]
name = "eth2"
addresses = ["10.2.0.1/24"]
[[vrfs]]
name = "blue"
table = 10
interfaces = ["eth1"]
[[vrfs]]
name = "red"
table = 20
interfaces = ["eth2"]
[[routes]]
to = "10.9.0.0/24"
via = "10.2.0.99"
vrf = "red"
[[probes]]
id = "p"
connect = "10.9.0.1"
vrf = "red"
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    let plan = freebsd(&s);
    assert!(plan.unsupported.is_empty(), "{:?}", plan.unsupported);
    let runs: Vec<String> = plan
        .setup
        .iter()
        .filter_map(|st| match st {
            Step::Run { argv, .. } => Some(argv.join(" ")),
            Step::Sysctl { key, value, .. } => Some(format!("sysctl {key}={value}")),
            _ => None,
        })
        .collect();
    let at = |line: &str| runs.iter().position(|r| r == line).unwrap_or_else(|| panic!("no `{line}` in {runs:?}"));
    assert!(at("sysctl net.fibs=3") < at("ifconfig eth1 fib 1"));
    assert!(at("ifconfig eth2 fib 2") < at("ifconfig eth2 inet 10.2.0.1/24 alias"));
    at("route add -4 -net 10.9.0.0/24 10.2.0.99 -fib 2");
    // The probe's socket is in red's FIB, no longer bound to a VRF device.
    assert_eq!((plan.probes[0].vrf.as_deref(), plan.probes[0].fib), (None, Some(2)));
    let script = repro_script(&plan, &s);
    assert!(script.contains("jexec $jail setfib 2 python3 -c"), "{script}");
    assert!(script.contains("jexec $jail setfib 2 route -n get 10.9.0.1 || true"), "{script}");
}

#[test]
fn freebsd_multipath_is_one_route_add_per_path() {
    let s = crate::parse_scenario(
        "t.toml",
        r#"
name = "mp"
[[interfaces]]
name = "eth1"
addresses = ["10.1.0.10/24"]
[[interfaces]]
name = "eth2"
addresses = ["10.2.0.10/24"]
[[routes]]
to = "0.0.0.0/0"
nexthop_objects = true
nexthops = [{ via = "10.1.0.1", dev = "eth1" }, { via = "10.2.0.1", dev = "eth2", weight = 3 }]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .scenario;
    let plan = freebsd(&s);
    assert!(plan.unsupported.is_empty(), "{:?}", plan.unsupported);
    let routes: Vec<String> = plan
        .setup
        .iter()
        .filter_map(|st| match st {
            Step::Run { argv, .. } if argv[0] == "route" => Some(argv.join(" ")),
            _ => None,
        })
        .collect();
    assert_eq!(routes, ["route add -4 -net 0.0.0.0/0 10.1.0.1", "route add -4 -net 0.0.0.0/0 10.2.0.1 -weight 3"]);
    assert!(plan.notes.iter().any(|n| n.contains("no nexthop objects")));
}
