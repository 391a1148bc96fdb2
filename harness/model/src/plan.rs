//! Plans: the commands and files that configure a scenario on one OS, as data.
//!
//! The agent executes a plan (argv only, never through a shell); `cargo xtask repro` prints
//! it as a shell script a person can paste. Arguments may hold placeholders the executor
//! fills in: `{peer}` (Linux: the peer network namespace), `{jail}`, `{dir}`, `{epairN}` and
//! `{agent}` (FreeBSD: jail name, private directory, epair unit of interface N, the agent's
//! own path). Scenario values can
//! never contain `{`, so placeholders cannot be forged.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addr_names::kernel_temporary;
use crate::scenario::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanOs {
    Linux,
    Freebsd,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub os: PlanOs,
    pub scenario: String,
    pub setup: Vec<Step>,
    pub probes: Vec<Probe>,
    /// Undo steps, in order (FreeBSD; on Linux the namespaces take everything with them).
    pub cleanup: Vec<Step>,
    /// Parts of the scenario this OS cannot express: when non-empty, probes are not run.
    pub unsupported: Vec<String>,
    /// Scenario features this OS has no notion of, so they change nothing here.
    pub notes: Vec<String>,
    /// Prefixes where the kernel makes a temporary address with a random interface ID, with
    /// the addresses declared there: a source inside one of them that is not declared is
    /// reported as that prefix's `temporary(PREFIX)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_temporaries: Vec<KernelTemporary>,
    /// The scenario has VRFs: a kernel without the VRF driver (`CONFIG_NET_VRF`) cannot run
    /// it, and the agent reports its probes unsupported with that reason.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_vrf: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTemporary {
    pub prefix: ipnet::Ipv6Net,
    pub declared: Vec<std::net::Ipv6Addr>,
}

impl Plan {
    /// What results call an observed address: a kernel-made temporary one by its prefix's
    /// stand-in ([`kernel_temporary`]), any other as it is.
    pub fn name_observed(&self, a: IpAddr) -> IpAddr {
        match a {
            IpAddr::V6(v6) => self
                .kernel_temporaries
                .iter()
                .find(|t| t.prefix.contains(&v6) && !t.declared.contains(&v6))
                .map_or(a, |t| IpAddr::V6(kernel_temporary(t.prefix))),
            v4 => v4,
        }
    }

    /// An observed outcome with its sources named by [`Plan::name_observed`].
    pub fn name_outcome(&self, o: crate::results::Outcome) -> crate::results::Outcome {
        use crate::results::Outcome;
        let name = |a: Option<IpAddr>| a.map(|a| self.name_observed(a));
        match o {
            Outcome::Connect { dst, source, error, kernel_source, kernel_error, kernel_nexthop, sources } => {
                Outcome::Connect {
                    dst,
                    source: name(source),
                    error,
                    kernel_source: name(kernel_source),
                    kernel_error,
                    kernel_nexthop,
                    sources: sources.into_iter().map(|a| name(Some(a)).expect("some")).collect(),
                }
            }
            Outcome::Icmp { to, message, source } => Outcome::Icmp { to, message, source: name(source) },
            other => other,
        }
    }
}

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// Linux: the scenario's network + mount namespace. FreeBSD: inside the VNET jail.
    Scenario,
    /// Linux: the peer namespace holding the far ends of the veth pairs.
    Peer,
    /// FreeBSD: the machine outside the jail.
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Run {
        place: Place,
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdin: Option<String>,
        /// The command is expected to fail, for this reason (FreeBSD's `ip6addrctl install`
        /// of a file it cannot parse): the run goes on, and a success is a setup error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fails: Option<String>,
    },
    Sysctl {
        place: Place,
        key: String,
        value: String,
    },
    /// Linux: bind a private copy of `content` over `target` in the scenario's mount
    /// namespace.
    PrivateFile {
        target: String,
        content: String,
    },
    /// FreeBSD: write a file on the machine (under `{dir}`).
    WriteFile {
        path: String,
        content: String,
    },
    /// Wait until `addr` on `dev` carries `flag` (Linux: `ip -j addr`'s name for it, such as
    /// `dadfailed`; FreeBSD: ifconfig's, such as `duplicated`): a state the kernel reaches on
    /// its own, held before the probes run.
    WaitAddress {
        dev: String,
        addr: IpAddr,
        flag: String,
        timeout_ms: u64,
    },
    /// Wait until the kernel's temporary address in `prefix` on `dev` has left DAD (the
    /// kernel makes it when the mngtmpaddr address is added, but clears its tentative flag
    /// from a work queue, which lags under load).
    WaitTemporary {
        dev: String,
        prefix: ipnet::Ipv6Net,
        timeout_ms: u64,
    },
}

fn run(place: Place, argv: &[&str]) -> Step {
    Step::Run { place, argv: argv.iter().map(|s| s.to_string()).collect(), stdin: None, fails: None }
}

fn run_owned(place: Place, argv: Vec<String>) -> Step {
    Step::Run { place, argv, stdin: None, fails: None }
}

/// `via [inet6] GW dev DEV` of one path of a multipath route.
fn nexthop_words(nh: &crate::scenario::Nexthop, r: &Route) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(via) = nh.via {
        words.push("via".into());
        if r.to.addr().is_ipv4() && via.is_ipv6() {
            words.push("inet6".into());
        }
        words.push(via.to_string());
    }
    if let Some(dev) = &nh.dev {
        words.extend(["dev".into(), dev.clone()]);
    }
    words
}

/// Name of the far end of the veth pair for declared interface `index` (1-based).
pub fn linux_peer_name(index: usize) -> String {
    format!("addrselp{index}")
}

/// The lines of a scenario's `/etc/hosts`: localhost, then one line per address in [hosts]
/// order.
pub fn hosts_lines(s: &Scenario) -> Vec<(IpAddr, &str)> {
    let mut lines: Vec<(IpAddr, &str)> = vec![
        (IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), "localhost"),
        (IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), "localhost"),
    ];
    for h in &s.hosts {
        lines.extend(h.addresses.iter().map(|a| (*a, h.name.as_str())));
    }
    lines
}

/// `/etc/hosts` for a scenario (see [`hosts_lines`]).
pub fn hosts_file(s: &Scenario) -> String {
    let mut out = String::new();
    for (a, name) in hosts_lines(s) {
        let _ = writeln!(out, "{a} {name}");
    }
    out
}

/// What the files backend of glibc (with `multi on`, as the plans write host.conf) and of
/// FreeBSD's libc return for `name` from that file: every line whose name matches without
/// regard to case, in file order, duplicates kept (glibc nss_files `gethostbyname4`,
/// FreeBSD `_gethtent`). A redefined `localhost` merges with the file's own lines.
pub fn hosts_lookup(s: &Scenario, name: &str) -> Vec<IpAddr> {
    hosts_lines(s).into_iter().filter(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(a, _)| a).collect()
}

/// What `resolver` finds for `name` in the same file: musl matches names byte for byte
/// (`strstr` between blanks), Go without regard to case or a trailing dot, c-ares (1.18:
/// `strcasecmp` line by line) like glibc for the names scenarios allow it (distinct
/// addresses per name, checked at parse time, so 1.34's merged entries give the same).
pub fn hosts_lookup_for(s: &Scenario, name: &str, resolver: Resolver) -> Vec<IpAddr> {
    match resolver {
        Resolver::Musl => hosts_lines(s).into_iter().filter(|(_, n)| *n == name).map(|(a, _)| a).collect(),
        Resolver::Go => {
            let key = name.trim_end_matches('.');
            hosts_lines(s).into_iter().filter(|(_, n)| n.eq_ignore_ascii_case(key)).map(|(a, _)| a).collect()
        }
        _ => hosts_lookup(s, name),
    }
}

/// The program a resolver's probe runs (built from the target's own Debian packages and
/// installed beside the agent) and the environment it needs: it prints one address per
/// line in the library's order.
pub fn resolver_command(resolver: Resolver) -> Option<(&'static str, Option<(&'static str, &'static str)>)> {
    match resolver {
        Resolver::Glibc => None,
        Resolver::Musl => Some(("addrsel-resolve-musl", None)),
        Resolver::Go => Some(("addrsel-resolve-go", Some(("GODEBUG", "netdns=go")))),
        Resolver::GoCgo => Some(("addrsel-resolve-go-cgo", Some(("GODEBUG", "netdns=cgo")))),
        Resolver::CAres => Some(("addrsel-resolve-c-ares", None)),
    }
}

// ---------------------------------------------------------------------------------------
// Linux

/// The Linux plan: veth pairs whose far ends live in a peer namespace, `ip` for
/// addresses, routes and labels, sysctls, and private /etc files.
pub fn linux(s: &Scenario) -> Plan {
    use Place::*;
    let mut setup = Vec::new();
    let mut unsupported = Vec::new();
    let mut notes = Vec::new();
    for r in s.routes.iter().filter(|r| r.install == RouteInstall::Rtsock) {
        notes.push(format!("route {}: install = \"rtsock\" is FreeBSD's; Linux adds every route the same way", r.to));
    }
    // `default` sysctls only affect interfaces created later.
    let (defaults, others): (Vec<_>, Vec<_>) =
        s.sysctl.linux.iter().partition(|(k, _)| k.split('.').nth(3) == Some("default"));
    if s.probes.iter().any(|p| matches!(p.kind, ProbeKind::IcmpTimeExceeded { .. })) {
        setup.extend(icmp_pins());
    }
    for (key, value) in defaults {
        setup.push(Step::Sysctl { place: Scenario, key: key.clone(), value: value.clone() });
    }
    setup.push(run(Scenario, &["ip", "link", "set", "dev", "lo", "up"]));
    // Consecutive `ip` commands in one place run as one `ip -batch`, so links are created
    // first, then the peers brought up.
    let declared: Vec<(usize, &Interface)> =
        s.interfaces.iter().enumerate().filter(|(_, i)| !i.is_loopback()).collect();
    for (index, iface) in &declared {
        let peer = linux_peer_name(*index);
        setup.push(run(
            Scenario,
            &["ip", "link", "add", &iface.name, "type", "veth", "peer", "name", &peer, "netns", "{peer}"],
        ));
        // No automatic link-local address: the host has exactly the declared addresses.
        setup.push(run(Scenario, &["ip", "link", "set", "dev", &iface.name, "addrgenmode", "none"]));
    }
    // VRFs, and their interfaces enslaved before they get addresses: enslaving later deletes
    // an interface's IPv6 addresses (seen on 6.12). No link-local on the VRF device either.
    for vrf in &s.vrfs {
        let table = vrf.table.to_string();
        setup.push(run(Scenario, &["ip", "link", "add", &vrf.name, "type", "vrf", "table", &table]));
        setup.push(run(Scenario, &["ip", "link", "set", "dev", &vrf.name, "addrgenmode", "none"]));
        setup.push(run(Scenario, &["ip", "link", "set", "dev", &vrf.name, "up"]));
        for iface in &vrf.interfaces {
            setup.push(run(Scenario, &["ip", "link", "set", "dev", iface, "master", &vrf.name]));
        }
    }
    for (index, _) in &declared {
        setup.push(run(Peer, &["ip", "link", "set", "dev", &linux_peer_name(*index), "up"]));
    }
    for (key, value) in others {
        setup.push(Step::Sysctl { place: Scenario, key: key.clone(), value: value.clone() });
    }
    // A tentative address stays tentative for the scenario: its one DAD probe waits an hour
    // for an answer (the neighbour retransmit time), not a second.
    let mut slow_dad: Vec<&str> = Vec::new();
    for (i, a) in s.addresses().filter(|(_, a)| matches!(a.dad, Dad::Tentative | Dad::Optimistic)) {
        if !slow_dad.contains(&i.name.as_str()) {
            slow_dad.push(&i.name);
            setup.push(Step::Sysctl {
                place: Scenario,
                key: format!("net.ipv6.neigh.{}.retrans_time_ms", i.name),
                value: "3600000".into(),
            });
        }
        // The kernel drops IFA_F_OPTIMISTIC from a new address unless optimistic_dad is on.
        if a.dad == Dad::Optimistic {
            setup.push(Step::Sysctl {
                place: Scenario,
                key: format!("net.ipv6.conf.{}.optimistic_dad", i.name),
                value: "1".into(),
            });
        }
    }
    // The kernel's temporary addresses go through DAD (nodad covers only the address added):
    // without it they are usable from the first probe, not 1-2 s later.
    let mut no_dad: Vec<&str> = Vec::new();
    for (i, _) in s.kernel_temporaries() {
        let name = s.interfaces[i].name.as_str();
        if s.interfaces[i].addresses.iter().any(|a| !a.dad.is_done()) {
            unsupported.push(format!(
                "{name}: a DAD state and kernel-made temporary addresses on one interface (DAD is turned off there for the temporaries)"
            ));
        }
        if !no_dad.contains(&name) {
            no_dad.push(name);
            setup.push(Step::Sysctl {
                place: Scenario,
                key: format!("net.ipv6.conf.{name}.accept_dad"),
                value: "0".into(),
            });
        }
    }
    for iface in s.interfaces.iter().filter(|i| !i.is_loopback()) {
        if iface.up {
            setup.push(run(Scenario, &["ip", "link", "set", "dev", &iface.name, "up"]));
        } else {
            notes.push(format!("{} stays down (up = false): its addresses are added to a down link", iface.name));
        }
    }
    let mut waits = Vec::new();
    for iface in &s.interfaces {
        let implicit = if iface.is_loopback() { 2 } else { 0 };
        for a in &iface.addresses[implicit..] {
            if a.temporary {
                unsupported.push(format!(
                    "temporary address {a}: Linux cannot assign one with `ip addr add` (the temporary flag is not settable from user space; the kernel makes its own with a random interface ID)"
                ));
                continue;
            }
            if a.prefer_source {
                notes.push(format!("{a}: prefer_source is a FreeBSD flag; Linux has no equivalent"));
            }
            if a.dad == Dad::Optimistic {
                // iproute2 6.1 has no keyword for IFA_F_OPTIMISTIC: the agent sends the
                // RTM_NEWADDR itself. DAD then runs (slowed to an hour) and the address stays
                // optimistic meanwhile.
                setup.push(run_owned(
                    Scenario,
                    vec![
                        "{agent}".into(),
                        "netlink-addr-add".into(),
                        iface.name.clone(),
                        a.to_string(),
                        "optimistic".into(),
                    ],
                ));
                waits.push(Step::WaitAddress {
                    dev: iface.name.clone(),
                    addr: a.addr,
                    flag: "optimistic".into(),
                    timeout_ms: 5_000,
                });
                continue;
            }
            if a.dad == Dad::Failed {
                // The far end holds the address first, so our DAD finds it.
                let index = s.interfaces.iter().position(|i| i.name == iface.name).expect("declared");
                setup.push(run_owned(
                    Peer,
                    ["ip", "addr", "add", &a.to_string(), "dev", &linux_peer_name(index), "nodad"]
                        .map(String::from)
                        .into(),
                ));
                waits.push(Step::WaitAddress {
                    dev: iface.name.clone(),
                    addr: a.addr,
                    flag: "dadfailed".into(),
                    timeout_ms: 10_000,
                });
            }
            let mut argv: Vec<String> =
                ["ip", "addr", "add", &a.to_string(), "dev", &iface.name].map(String::from).into();
            if a.addr.is_ipv6() && a.dad.is_done() {
                argv.push("nodad".into());
            }
            if a.mngtmpaddr {
                argv.push("mngtmpaddr".into());
            }
            if a.home {
                argv.push("home".into());
            }
            if a.deprecated {
                argv.extend(["valid_lft", "forever", "preferred_lft", "0"].map(String::from));
            }
            setup.push(run_owned(Scenario, argv));
        }
    }
    for (i, t) in s.kernel_temporaries() {
        if let IpNet::V6(net) = t.net() {
            waits.push(Step::WaitTemporary {
                dev: s.interfaces[i].name.clone(),
                prefix: net.trunc(),
                timeout_ms: 10_000,
            });
        }
    }
    setup.extend(waits);
    let mut nexthop_id = 0u32;
    for r in &s.routes {
        // The family follows from the prefix, so the line also works in `ip -batch`.
        let mut argv: Vec<String> = vec!["ip".into(), "route".into(), "add".into()];
        if !r.nexthops.is_empty() {
            argv.push(r.to.to_string());
            if r.nexthop_objects {
                // `ip nexthop` objects, then a group of them, which the route names.
                let mut members = Vec::new();
                for nh in &r.nexthops {
                    nexthop_id += 1;
                    let mut add: Vec<String> = ["ip", "nexthop", "add", "id"].map(String::from).into();
                    add.push(nexthop_id.to_string());
                    add.extend(nexthop_words(nh, r));
                    setup.push(run_owned(Scenario, add));
                    members.push(format!("{nexthop_id},{}", nh.weight));
                }
                nexthop_id += 1;
                let group: Vec<String> = vec![
                    "ip".into(),
                    "nexthop".into(),
                    "add".into(),
                    "id".into(),
                    nexthop_id.to_string(),
                    "group".into(),
                    members.join("/"),
                ];
                setup.push(run_owned(Scenario, group));
                argv.extend(["nhid".into(), nexthop_id.to_string()]);
            } else {
                for nh in &r.nexthops {
                    argv.push("nexthop".into());
                    argv.extend(nexthop_words(nh, r));
                    argv.extend(["weight".into(), nh.weight.to_string()]);
                }
            }
            if let Some(src) = r.src {
                argv.extend(["src".into(), src.to_string()]);
            }
            if let Some(m) = r.metric {
                argv.extend(["metric".into(), m.to_string()]);
            }
            if let Some(t) = r.table {
                argv.extend(["table".into(), t.to_string()]);
            }
            setup.push(run_owned(Scenario, argv));
            continue;
        }
        if !r.rtype.is_unicast() {
            argv.push(r.rtype.word().into());
        }
        argv.push(r.to.to_string());
        if let Some(via) = r.via {
            argv.push("via".into());
            if r.is_v4_via_v6() {
                argv.push("inet6".into());
            }
            argv.push(via.to_string());
        }
        if let Some(dev) = &r.dev {
            argv.extend(["dev".into(), dev.clone()]);
        }
        if let Some(src) = r.src {
            argv.extend(["src".into(), src.to_string()]);
        }
        if let Some(m) = r.metric {
            argv.extend(["metric".into(), m.to_string()]);
        }
        if let Some(t) = r.table {
            argv.extend(["table".into(), t.to_string()]);
        }
        setup.push(run_owned(Scenario, argv));
    }
    let policy = s.policy.linux();
    if policy.flush_labels {
        setup.push(run(Scenario, &["ip", "addrlabel", "flush"]));
    }
    for row in &policy.addrlabels {
        let mut argv: Vec<String> = ["ip", "addrlabel", "add", "prefix"].map(String::from).into();
        argv.push(addrsel_policy::c_style(&row.prefix));
        argv.extend(["label".into(), row.label.to_string()]);
        if let Some(dev) = &row.dev {
            argv.extend(["dev".into(), dev.clone()]);
        }
        setup.push(run_owned(Scenario, argv));
    }
    setup.extend(icmp_far_side(s));
    for (target, content) in [
        ("/etc/gai.conf", policy.gai_conf.clone()),
        ("/etc/hosts", hosts_file(s)),
        // Only /etc/hosts answers, and every line of a name counts (glibc needs `multi on`).
        ("/etc/nsswitch.conf", "hosts: files\n".to_string()),
        ("/etc/host.conf", "multi on\n".to_string()),
        // Resolvers that read no nsswitch.conf (musl, c-ares without its lookups option)
        // would ask a DNS server for a name missing from /etc/hosts: there is none, and a
        // zero timeout sends nothing (musl's res_msend loop never runs).
        ("/etc/resolv.conf", "nameserver 127.0.0.1\noptions timeout:0\n".to_string()),
    ] {
        setup.push(Step::PrivateFile { target: target.into(), content });
    }
    let kernel_temporaries = kernel_temporary_names(s, &s.kernel_temporaries());
    Plan {
        os: PlanOs::Linux,
        scenario: s.name.clone(),
        setup,
        probes: s.probes.clone(),
        cleanup: Vec::new(),
        unsupported,
        notes,
        kernel_temporaries,
        needs_vrf: !s.vrfs.is_empty(),
    }
}

// ---------------------------------------------------------------------------------------
// ICMP probes: this host as a router, and the far side of its links

/// A new network namespace copies IPv4 forwarding and reverse-path filtering from the
/// machine's own (`devconf_inherit_init_net`), so a scenario with an ICMP probe starts from
/// the kernel's defaults, before its own sysctls: forwarding off, and no reverse-path filter
/// here or on the far side (the errors come back from sources the far side has no route to).
/// The prefixes where a kernel makes temporary addresses, with the addresses declared there.
fn kernel_temporary_names(s: &Scenario, made: &[(usize, Address)]) -> Vec<KernelTemporary> {
    let mut prefixes: Vec<ipnet::Ipv6Net> = Vec::new();
    for (_, t) in made {
        if let IpNet::V6(n) = t.net()
            && !prefixes.contains(&n.trunc())
        {
            prefixes.push(n.trunc());
        }
    }
    prefixes
        .into_iter()
        .map(|prefix| KernelTemporary {
            prefix,
            declared: s
                .addresses()
                .filter_map(|(_, a)| match a.addr {
                    IpAddr::V6(v6) if prefix.contains(&v6) => Some(v6),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}

fn icmp_pins() -> Vec<Step> {
    let mut out = Vec::new();
    for place in [Place::Scenario, Place::Peer] {
        for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"] {
            out.push(Step::Sysctl { place, key: key.into(), value: "0".into() });
        }
    }
    for key in ["net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding"] {
        out.push(Step::Sysctl { place: Place::Scenario, key: key.into(), value: "0".into() });
    }
    out
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

fn from_bits(v4: bool, b: u128) -> IpAddr {
    if v4 { IpAddr::V4(std::net::Ipv4Addr::from_bits(b as u32)) } else { IpAddr::V6(std::net::Ipv6Addr::from_bits(b)) }
}

fn is_link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local())
}

/// The sender an ICMP probe uses when the scenario names none: the first free address of
/// `from`'s first subnet of that family (not link-local).
pub fn default_icmp_sender(s: &Scenario, from: &str, v4: bool) -> Option<IpAddr> {
    let iface = s.interface(from)?;
    let max = if v4 { 32 } else { 128 };
    let taken = |a: IpAddr| s.addresses().any(|(_, x)| x.addr == a);
    iface
        .addresses
        .iter()
        .filter(|a| a.addr.is_ipv4() == v4 && !is_link_local(a.addr) && a.prefix_len < max - 1)
        .find_map(|a| {
            let net = a.net().trunc();
            (1..=4u128).map(|k| from_bits(v4, bits(net.network()) + k)).find(|c| net.contains(c) && !taken(*c))
        })
}

/// The address of `from` the far side sends the probe packet to: one of the packet's family
/// (not link-local for IPv6 when there is another), else for IPv4 an IPv6 one (RFC 5549).
pub fn icmp_entry_address(s: &Scenario, from: &str, v4: bool) -> Option<IpAddr> {
    let iface = s.interface(from)?;
    let pick = |want_v4: bool| {
        let of: Vec<IpAddr> = iface.addresses.iter().map(|a| a.addr).filter(|a| a.is_ipv4() == want_v4).collect();
        of.iter().find(|a| !is_link_local(**a)).or(of.first()).copied()
    };
    pick(v4).or_else(|| if v4 { pick(false) } else { None })
}

/// Where this host sends a reply to `to`: the interface and next hop of the longest declared
/// or connected route (the kernel decides for real; this only tells the far side which
/// addresses to answer for).
fn return_hop(s: &Scenario, to: IpAddr) -> Option<(usize, Option<IpAddr>)> {
    let mut best: Option<(u8, usize, Option<IpAddr>)> = None;
    let mut consider = |len: u8, dev: usize, via: Option<IpAddr>| {
        if best.is_none_or(|(l, _, _)| len > l) {
            best = Some((len, dev, via));
        }
    };
    for (i, iface) in s.interfaces.iter().enumerate().filter(|(_, i)| !i.is_loopback()) {
        for a in iface.addresses.iter().filter(|a| a.addr.is_ipv4() == to.is_ipv4()) {
            if a.net().trunc().contains(&to) {
                consider(a.prefix_len, i, None);
            }
        }
    }
    for r in s.routes.iter().filter(|r| r.to.addr().is_ipv4() == to.is_ipv4() && r.to.contains(&to)) {
        let dev = match (&r.dev, r.via) {
            (Some(d), _) => s.interfaces.iter().position(|i| &i.name == d),
            (None, Some(via)) => {
                s.interfaces.iter().position(|i| i.addresses.iter().any(|a| a.net().trunc().contains(&via)))
            }
            (None, None) => None,
        };
        if let Some(dev) = dev {
            consider(r.to.prefix_len(), dev, r.via);
        }
    }
    best.map(|(_, dev, via)| (dev, via))
}

/// The far side of each ICMP probe's link, in the peer namespace: the sender's address, a
/// route for the packet to this host's address on `from`, and the address this host's reply
/// goes to (its next hop, or the sender on the reply's link) so that it answers ARP and ND.
fn icmp_far_side(s: &Scenario) -> Vec<Step> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let host_len = |a: IpAddr| if a.is_ipv4() { "32" } else { "128" };
    let mut add = |argv: Vec<String>| {
        if !out.contains(&argv) {
            out.push(argv);
        }
    };
    let addr_add = |a: IpAddr, dev: &str| {
        let mut argv: Vec<String> =
            ["ip", "addr", "add", &format!("{a}/{}", host_len(a)), "dev", dev].map(String::from).into();
        if a.is_ipv6() {
            argv.push("nodad".into());
        }
        argv
    };
    for p in &s.probes {
        let ProbeKind::IcmpTimeExceeded { from, to, sender } = &p.kind else {
            continue;
        };
        let Some(index) = s.interfaces.iter().position(|i| &i.name == from) else {
            continue;
        };
        let near = linux_peer_name(index);
        add(addr_add(*sender, &near));
        if let Some(entry) = icmp_entry_address(s, from, to.is_ipv4()) {
            let mut argv: Vec<String> =
                ["ip", "route", "add", &format!("{to}/{}", host_len(*to)), "via"].map(String::from).into();
            if to.is_ipv4() && entry.is_ipv6() {
                argv.push("inet6".into());
            }
            argv.extend([entry.to_string(), "dev".into(), near.clone(), "onlink".into()]);
            add(argv);
        }
        if let Some((dev, via)) = return_hop(s, *sender) {
            let answer_for = via.unwrap_or(*sender);
            add(addr_add(answer_for, &linux_peer_name(dev)));
        }
    }
    out.into_iter().map(|argv| run_owned(Place::Peer, argv)).collect()
}

// ---------------------------------------------------------------------------------------
// FreeBSD

/// Name of the epair end inside the jail for declared interface `index`, before renaming.
fn epair(index: usize, side: char) -> String {
    format!("{{epair{index}}}{side}")
}

/// The FreeBSD plan: one VNET jail whose root is a read-only nullfs view of `/` with a
/// private /etc/hosts, epairs renamed to the declared names, `ifconfig`, `route`, and the
/// policy table installed with `ip6addrctl` (per VNET, empty at creation).
pub fn freebsd(s: &Scenario) -> Plan {
    use Place::*;
    let mut setup = Vec::new();
    let mut unsupported = Vec::new();
    let mut notes = Vec::new();
    let mut held: Vec<IpAddr> = Vec::new();
    for (i, a) in s.addresses() {
        // IPv4 takes a second copy (in_addprefix keeps the first interface's prefix route,
        // the loopback route stays the first copy's); IPv6 does not.
        if a.addr.is_ipv6() && held.contains(&a.addr) {
            unsupported.push(format!(
                "{} on {} too: FreeBSD refuses a second copy of an IPv6 address (in6_update_ifa: the /128 loopback route of the first copy exists, EEXIST)",
                a.addr, i.name
            ));
        }
        held.push(a.addr);
    }
    for (i, a) in s.addresses().filter(|(_, a)| a.dad == Dad::Optimistic) {
        unsupported.push(format!(
            "{a} on {} with dad = \"optimistic\": FreeBSD 14 and 15 have no optimistic DAD (no IN6_IFF_OPTIMISTIC; RFC 4429 support is an unmerged review, D55229)",
            i.name
        ));
    }
    for r in s.routes.iter().filter(|r| r.install == RouteInstall::Rtsock && r.table.is_some()) {
        unsupported
            .push(format!("route {}: install = \"rtsock\" in a VRF: the agent's RTM_ADD writes to FIB 0 only", r.to));
    }
    for p in s.probes.iter().filter(|p| p.bind_device.is_some()) {
        unsupported.push(format!(
            "probe {}: bind_device: FreeBSD has no SO_BINDTODEVICE (a socket picks its interface only through the route, or a FIB with SO_SETFIB)",
            p.id
        ));
    }
    for p in s.probes.iter().filter(|p| matches!(p.kind, ProbeKind::IcmpTimeExceeded { .. })) {
        unsupported.push(format!(
            "probe {}: the FreeBSD plan has no sender on the far side of an epair yet (icmp_time_exceeded runs on Linux)",
            p.id
        ));
    }
    let declared: Vec<(usize, &Interface)> =
        s.interfaces.iter().enumerate().filter(|(_, i)| !i.is_loopback()).collect();
    let index_of = |name: &str| declared.iter().find(|(_, i)| i.name == name).map(|(index, _)| *index);
    for (index, _) in &declared {
        setup.push(run_owned(Host, vec!["ifconfig".into(), format!("{{epair{index}}}"), "create".into()]));
        setup.push(run_owned(Host, vec!["ifconfig".into(), epair(*index, 'b'), "up".into()]));
    }
    setup.push(run(Host, &["mkdir", "-p", "{dir}/root"]));
    setup.push(run(Host, &["mount", "-t", "nullfs", "-o", "ro", "/", "{dir}/root"]));
    setup.push(Step::WriteFile { path: "{dir}/hosts".into(), content: hosts_file(s) });
    setup.push(run(Host, &["mount", "-t", "nullfs", "{dir}/hosts", "{dir}/root/etc/hosts"]));
    let mut jail: Vec<String> =
        ["jail", "-c", "name={jail}", "path={dir}/root", "persist", "vnet", "mount.devfs"].map(String::from).into();
    for (index, _) in &declared {
        jail.push(format!("vnet.interface={}", epair(*index, 'a')));
    }
    setup.push(run_owned(Host, jail));
    // A `dad = "failed"` address needs a neighbour that holds it: the far end of its epair,
    // in a second VNET jail (the far ends otherwise stay on the machine, unconfigured).
    let defended: Vec<(usize, &Address)> = s
        .interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().filter(|a| a.dad == Dad::Failed).map(move |a| (i, a)))
        .filter_map(|(i, a)| Some((index_of(&i.name)?, a)))
        .collect();
    let mut peer_ends: Vec<usize> = defended.iter().map(|(index, _)| *index).collect();
    peer_ends.dedup();
    if !peer_ends.is_empty() {
        let mut jail: Vec<String> =
            ["jail", "-c", "name={peer}", "path={dir}/root", "persist", "vnet"].map(String::from).into();
        for index in &peer_ends {
            jail.push(format!("vnet.interface={}", epair(*index, 'b')));
        }
        setup.push(run_owned(Host, jail));
        for index in &peer_ends {
            setup.push(run_owned(
                Peer,
                // A fresh VNET's interfaces start IFDISABLED for IPv6.
                ["ifconfig", &epair(*index, 'b'), "inet6", "no_dad", "-ifdisabled", "up"].map(String::from).into(),
            ));
        }
        for (index, a) in &defended {
            let argv = vec!["ifconfig".into(), epair(*index, 'b'), "inet6".into(), a.to_string(), "alias".into()];
            setup.push(run_owned(Peer, argv));
        }
    }
    // No DAD anywhere in this VNET, and no automatic link-local addresses on lo0.
    setup.push(Step::Sysctl { place: Scenario, key: "net.inet6.ip6.dad_count".into(), value: "0".into() });
    if !s.vrfs.is_empty() {
        // A new VNET has one FIB; net.fibs is per VNET and only grows.
        setup.push(Step::Sysctl { place: Scenario, key: "net.fibs".into(), value: (s.vrfs.len() + 1).to_string() });
    }
    setup.push(run(Scenario, &["ifconfig", "lo0", "inet6", "-auto_linklocal"]));
    setup.push(run(Scenario, &["ifconfig", "lo0", "inet", "127.0.0.1/8", "up"]));
    setup.push(run(Scenario, &["ifconfig", "lo0", "inet6", "::1/128", "alias"]));
    for (index, iface) in &declared {
        setup.push(run_owned(Scenario, vec!["ifconfig".into(), epair(*index, 'a'), "name".into(), iface.name.clone()]));
        // An address's prefix and local routes go to its interface's FIB as it is when the
        // address is added (net.add_addr_allfibs = 0), so the FIB comes first.
        if let Some(fib) = s.vrf_of(&iface.name).and_then(|v| s.freebsd_fib(v.table)) {
            setup.push(run_owned(Scenario, vec!["ifconfig".into(), iface.name.clone(), "fib".into(), fib.to_string()]));
        }
        setup
            .push(run(Scenario, &["ifconfig", &iface.name, "inet6", "-auto_linklocal", "no_dad", "-ifdisabled", "up"]));
    }
    for (key, value) in &s.sysctl.freebsd {
        setup.push(Step::Sysctl { place: Scenario, key: key.clone(), value: value.clone() });
    }
    let temporaries = s.freebsd_kernel_temporaries();
    for iface in &s.interfaces {
        let name = if iface.is_loopback() { "lo0" } else { iface.name.as_str() };
        let implicit = if iface.is_loopback() { 2 } else { 0 };
        for a in iface.addresses[implicit..].iter().filter(|a| a.dad.is_done()) {
            if a.temporary {
                unsupported.push(format!("temporary address {a}: FreeBSD's ifconfig cannot mark an address temporary"));
                continue;
            }
            if a.home {
                notes.push(format!("{a}: FreeBSD has no Mobile IPv6 home addresses; the flag changes nothing there"));
            }
            let family = if a.addr.is_ipv4() { "inet" } else { "inet6" };
            let mut argv: Vec<String> = ["ifconfig", name, family, &a.to_string(), "alias"].map(String::from).into();
            if a.mngtmpaddr {
                // in6_control makes the temporary address at once for an autoconf address
                // (in6_tmpifadd); no router advertisement is needed.
                argv.push("autoconf".into());
                if temporaries.is_empty() {
                    notes.push(format!(
                        "mngtmpaddr address {a}: FreeBSD makes its temporary address only with [sysctl.freebsd] \"net.inet6.ip6.use_tempaddr\" = 1"
                    ));
                }
            }
            if a.deprecated {
                if a.addr.is_ipv4() {
                    unsupported.push(format!("deprecated IPv4 address {a}: FreeBSD has no IPv4 address lifetimes"));
                    continue;
                }
                argv.push("deprecated".into());
            }
            if a.prefer_source {
                argv.push("prefer_source".into());
            }
            setup.push(run_owned(Scenario, argv));
        }
    }
    // DAD states, after every other address: DAD is turned on for their interfaces only now.
    // A failed one runs DAD once (dad_count 1, about a second) against the peer jail's copy
    // and is waited for; a tentative one gets a DAD of 1000 probes a second apart, held for
    // the whole scenario (dad_count is read when DAD starts).
    let in_state = |state: Dad| -> Vec<(&Interface, &Address)> {
        s.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().filter(move |a| a.dad == state).map(move |a| (i, a)))
            .collect()
    };
    let mut dad_on: Vec<&str> = Vec::new();
    let mut states = Vec::new();
    for (state, count, flag) in [(Dad::Failed, "1", Some("duplicated")), (Dad::Tentative, "1000", None)] {
        let addrs = in_state(state);
        if addrs.is_empty() {
            continue;
        }
        for (i, _) in &addrs {
            if !dad_on.contains(&i.name.as_str()) {
                dad_on.push(&i.name);
                states.push(run(Scenario, &["ifconfig", &i.name, "inet6", "-no_dad"]));
            }
        }
        states.push(Step::Sysctl { place: Scenario, key: "net.inet6.ip6.dad_count".into(), value: count.into() });
        for (i, a) in &addrs {
            states.push(run_owned(
                Scenario,
                vec!["ifconfig".into(), i.name.clone(), "inet6".into(), a.to_string(), "alias".into()],
            ));
        }
        for (i, a) in addrs.iter().filter(|_| flag.is_some()) {
            let flag = flag.expect("filtered").to_string();
            states.push(Step::WaitAddress { dev: i.name.clone(), addr: a.addr, flag, timeout_ms: 10_000 });
        }
    }
    setup.extend(states);
    // A down interface keeps its addresses; within a second nd6_timer marks its IPv6 ones
    // tentative (for a DAD when it comes back up), which is waited for. Newer sources skip
    // that for a no_dad interface, which a real host's is not: DAD goes back on first.
    for iface in s.interfaces.iter().filter(|i| !i.up) {
        if !dad_on.contains(&iface.name.as_str()) {
            setup.push(run(Scenario, &["ifconfig", &iface.name, "inet6", "-no_dad"]));
        }
        setup.push(run(Scenario, &["ifconfig", &iface.name, "down"]));
        for a in iface.addresses.iter().filter(|a| a.addr.is_ipv6() && a.dad != Dad::Failed) {
            setup.push(Step::WaitAddress {
                dev: iface.name.clone(),
                addr: a.addr,
                flag: "tentative".into(),
                timeout_ms: 5_000,
            });
        }
    }
    for r in &s.routes {
        if matches!(r.rtype, RouteType::Prohibit | RouteType::Throw) {
            unsupported.push(format!(
                "route {} type {}: FreeBSD has no such route (only -blackhole and -reject)",
                r.to,
                r.rtype.word()
            ));
            continue;
        }
        if r.src.is_some() {
            unsupported.push(format!(
                "route {} with src: route(8) on FreeBSD 14/15 cannot set a preferred source (-ifa is ignored over netlink)",
                r.to
            ));
            continue;
        }
        if r.metric.is_some() {
            notes.push(format!("route {}: FreeBSD routes have no metric; it is ignored", r.to));
        }
        let fib: Vec<String> = match r.table.and_then(|t| s.freebsd_fib(t)) {
            Some(fib) => vec!["-fib".into(), fib.to_string()],
            None => Vec::new(),
        };
        if !r.nexthops.is_empty() {
            // ROUTE_MPATH: each `route add` of another gateway appends a path.
            if r.nexthop_objects {
                notes.push(format!(
                    "route {}: route(8) has no nexthop objects; the paths are added as a plain multipath route",
                    r.to
                ));
            }
            for nh in &r.nexthops {
                let path = Route { via: nh.via, dev: nh.dev.clone(), nexthops: Vec::new(), ..r.clone() };
                let mut argv = freebsd_route(&path);
                if nh.weight != 1 {
                    argv.extend(["-weight".into(), nh.weight.to_string()]);
                }
                argv.extend(fib.iter().cloned());
                setup.push(run_owned(Scenario, argv));
            }
            continue;
        }
        if let (Some(via), Some(dev)) =
            (r.via.filter(|v| !matches!(v, IpAddr::V6(v6) if v6.is_unicast_link_local())), &r.dev)
        {
            notes.push(format!(
                "route {} dev {dev}: FreeBSD picks the interface from the gateway {via}; dev is not enforced",
                r.to
            ));
        }
        let mut argv = freebsd_route(r);
        argv.extend(fib);
        setup.push(Step::Run { place: Scenario, argv, stdin: None, fails: freebsd_route_refused(s, r) });
    }
    let policy = s.policy.freebsd();
    setup.push(Step::Run {
        place: Scenario,
        argv: ["ip6addrctl", "install", "/dev/stdin"].map(String::from).into(),
        stdin: Some(policy.ip6addrctl_conf.clone()),
        fails: addrsel_policy::ip6addrctl::parse_conf(&policy.ip6addrctl_conf)
            .err()
            .map(|e| format!("ip6addrctl_conf {}: the jail's policy table stays empty", e.issue)),
    });
    if !s.policy.linux.as_ref().is_none_or(|l| l.gai_conf.is_none() && l.addrlabels.is_empty()) {
        notes.push("[policy.linux] applies to Linux only".into());
    }
    // A deprecated address only counts as deprecated once a second of uptime has passed
    // since it was configured (IFA6_IS_DEPRECATED compares whole seconds).
    if s.interfaces.iter().flat_map(|i| &i.addresses).any(|a| a.deprecated && a.addr.is_ipv6()) {
        setup.push(run(Host, &["sleep", "2"]));
    }
    let mut cleanup = Vec::new();
    if !peer_ends.is_empty() {
        // The far ends come back to the machine first (`jail -r` may return before its VNET
        // is gone, and the interfaces with it).
        for index in &peer_ends {
            cleanup.push(run_owned(Host, vec!["ifconfig".into(), epair(*index, 'b'), "-vnet".into(), "{peer}".into()]));
        }
        cleanup.push(run(Host, &["jail", "-r", "{peer}"]));
    }
    for (index, _) in &declared {
        // Destroying the host's end destroys the pair, wherever the other end is (and even
        // when setup failed before the jail took it).
        cleanup.push(run_owned(Host, vec!["ifconfig".into(), epair(*index, 'b'), "destroy".into()]));
    }
    // `jail -r` of a jail made on the command line does not unmount its devfs.
    cleanup.push(run(Host, &["umount", "{dir}/root/dev"]));
    cleanup.push(run(Host, &["jail", "-r", "{jail}"]));
    cleanup.push(run(Host, &["umount", "{dir}/root/etc/hosts"]));
    cleanup.push(run(Host, &["umount", "{dir}/root"]));
    cleanup.push(run(Host, &["rm", "-f", "{dir}/hosts"]));
    cleanup.push(run(Host, &["rmdir", "{dir}/root", "{dir}"]));
    let probes = s
        .probes
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if let ProbeKind::Connect { dst, zone: Some(z) } = &p.kind
                && z == "lo"
            {
                p.kind = ProbeKind::Connect { dst: *dst, zone: Some("lo0".into()) };
            }
            // A VRF's socket is a socket in its FIB.
            if let Some(v) = p.vrf.take() {
                p.fib = s.vrf(&v).and_then(|v| s.freebsd_fib(v.table));
            }
            p
        })
        .collect();
    Plan {
        os: PlanOs::Freebsd,
        scenario: s.name.clone(),
        setup,
        probes,
        cleanup,
        unsupported,
        notes,
        kernel_temporaries: kernel_temporary_names(s, &temporaries),
        needs_vrf: false,
    }
}

/// Why FreeBSD refuses to add an IPv4 route (so its `route add` is expected to fail), as
/// the engine's FreeBSD model reads `finalize_nhop` and `rt_getifa_family`: an egress
/// interface without IPv4 needs an IPv6 gateway and an IPv6 address there (netlink), or
/// any IPv4 address in the FIB (a routing socket).
pub fn freebsd_route_refused(s: &Scenario, r: &Route) -> Option<String> {
    if !r.to.addr().is_ipv4() || !r.rtype.is_unicast() || !r.nexthops.is_empty() {
        return None;
    }
    let dev = match (&r.dev, r.via) {
        (Some(d), _) => s.interface(d)?,
        (None, Some(via)) => s.interfaces.iter().find(|i| {
            i.addresses
                .iter()
                .any(|a| a.net().trunc().contains(&via) && a.prefix_len < if via.is_ipv4() { 32 } else { 128 })
        })?,
        (None, None) => return None,
    };
    if dev.addresses.iter().any(|a| a.addr.is_ipv4()) {
        return None;
    }
    let name = &dev.name;
    match (r.install, r.via.filter(|v| v.is_ipv6())) {
        (RouteInstall::Rtsock, Some(_)) => {
            let loopback_ok = dev.is_loopback();
            let any = s.addresses().any(|(_, a)| matches!(a.addr, IpAddr::V4(v4) if !v4.is_loopback() || loopback_ok));
            (!any).then(|| {
                format!(
                    "{name} has no IPv4 address and in_findlocal finds none in the FIB: RTM_ADD fails with ENETUNREACH"
                )
            })
        }
        (RouteInstall::Netlink, Some(_)) => (!dev.addresses.iter().any(|a| a.addr.is_ipv6()))
            .then(|| format!("no address of a usable family on {name}: route(8) fails with EINVAL")),
        (_, None) => Some(format!("no IPv4 address on {name}: route(8) fails with EINVAL")),
    }
}

/// FreeBSD's name for a scenario's device (the loopback is lo0 there).
fn freebsd_dev(dev: &str) -> String {
    if dev == "lo" { "lo0".into() } else { dev.into() }
}

fn freebsd_route(r: &Route) -> Vec<String> {
    if let (RouteInstall::Rtsock, Some(via)) = (r.install, r.via) {
        // route(8) talks netlink since 14.0: the agent writes the RTM_ADD itself.
        let mut argv = vec!["{agent}".to_string(), "route-socket-add".into(), r.to.to_string(), via.to_string()];
        argv.extend(r.dev.as_deref().map(freebsd_dev));
        return argv;
    }
    let mut argv: Vec<String> = vec!["route".into(), "add".into()];
    let family = if r.to.addr().is_ipv4() { "-4" } else { "-6" };
    argv.push(family.into());
    let host =
        matches!(r.to, IpNet::V4(n) if n.prefix_len() == 32) || matches!(r.to, IpNet::V6(n) if n.prefix_len() == 128);
    argv.push(if host { "-host" } else { "-net" }.into());
    argv.push(if host { r.to.addr().to_string() } else { r.to.to_string() });
    // route(8) wants a gateway for these too; the loopback address puts them on lo0.
    let discard = match r.rtype {
        RouteType::Blackhole => Some("-blackhole"),
        RouteType::Unreachable => Some("-reject"),
        _ => None,
    };
    if let Some(flag) = discard {
        argv.push(if r.to.addr().is_ipv4() { "127.0.0.1" } else { "::1" }.into());
        argv.push(flag.into());
        return argv;
    }
    match (r.via, &r.dev) {
        (Some(via), dev) => {
            if r.is_v4_via_v6() {
                argv.push("-inet6".into());
            }
            let zoned = matches!(via, IpAddr::V6(v6) if v6.is_unicast_link_local());
            match (zoned, dev) {
                (true, Some(d)) => argv.push(format!("{via}%{}", freebsd_dev(d))),
                _ => argv.push(via.to_string()),
            }
        }
        (None, Some(dev)) => argv.extend(["-interface".into(), freebsd_dev(dev)]),
        (None, None) => unreachable!("validated: a route has via or dev"),
    }
    argv
}

// ---------------------------------------------------------------------------------------
// Repro scripts

/// Quotes an argument for a POSIX shell when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "%+,-./:=@_$".contains(c));
    if plain { arg.to_string() } else { format!("'{}'", arg.replace('\'', "'\\''")) }
}

/// Placeholders become shell variables the script defines at the top.
fn shell_arg(arg: &str) -> String {
    let mut out = arg.to_string();
    for (from, to) in [("{peer}", "$peer"), ("{jail}", "$jail"), ("{dir}", "$dir"), ("{agent}", "$agent")] {
        out = out.replace(from, to);
    }
    while let Some(start) = out.find("{epair") {
        let end = start + out[start..].find('}').expect("closed placeholder");
        let index = &out[start + 6..end];
        out.replace_range(start..=end, &format!("epair$((base + {index}))"));
    }
    if out.contains('$') {
        // Double quotes keep variables expanding; scenario values never contain `"` or `\`.
        format!("\"{out}\"")
    } else {
        shell_quote(&out)
    }
}

/// A `printf` command that writes exactly `content`, byte for byte. The text is one
/// single-quoted format string (newlines stay, for reading) in which `'`, `\`, `%` and every
/// other byte outside printable ASCII is escaped, so no content can end the quoting or run as
/// a command; a NUL byte, which no shell word can hold, is written too.
pub fn printf_exact(content: &str) -> String {
    let mut fmt = String::with_capacity(content.len() + 16);
    for (i, &b) in content.as_bytes().iter().enumerate() {
        match b {
            // A format starting with `-` would be read as an option.
            b'-' if i == 0 => fmt.push_str("\\055"),
            b'%' => fmt.push_str("%%"),
            b'\\' | b'\'' => fmt.push_str(&format!("\\{b:03o}")),
            0x20..=0x7e | b'\n' | b'\t' => fmt.push(b as char),
            _ => fmt.push_str(&format!("\\{b:03o}")),
        }
    }
    format!("printf '{fmt}'")
}

/// A shell comment line: control characters (a CR or newline in scenario text) become
/// spaces, so the comment cannot end early.
fn comment(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("# {clean}\n")
}

/// The python line that sets a probe's source preferences on its socket, as the agent does:
/// Linux `IPV6_ADDR_PREFERENCES` (72), FreeBSD `IPV6_PREFER_TEMPADDR` (63).
fn prefer_setsockopt(os: PlanOs, prefer: &[SourcePreference]) -> String {
    if prefer.is_empty() {
        return String::new();
    }
    match os {
        PlanOs::Linux => {
            let bits = prefer.iter().fold(0u32, |acc, p| {
                acc | match p {
                    SourcePreference::Temporary => 0x1,
                    SourcePreference::Public => 0x2,
                    SourcePreference::CareOf => 0x4,
                    SourcePreference::Home => 0x400,
                }
            });
            format!("\ns.setsockopt(socket.IPPROTO_IPV6,72,{bits:#x})")
        }
        PlanOs::Freebsd => {
            match (prefer.contains(&SourcePreference::Temporary), prefer.contains(&SourcePreference::Public)) {
                (true, _) => "\ns.setsockopt(socket.IPPROTO_IPV6,63,1)".into(),
                (_, true) => "\ns.setsockopt(socket.IPPROTO_IPV6,63,0)".into(),
                _ => String::new(),
            }
        }
    }
}

/// The ICMP probe in python: a UDP packet with TTL 1 from the sender, then the error queue
/// (`IP_RECVERR`/`IPV6_RECVERR`) says what came back and from where (`SO_EE_OFFENDER`).
const ICMP_PROBE_PY: &str = "import select,socket,struct,sys
src,dst=sys.argv[1],sys.argv[2]
v6=':' in dst
f=socket.AF_INET6 if v6 else socket.AF_INET
s=socket.socket(f,socket.SOCK_DGRAM)
if v6: s.setsockopt(41,25,1); s.setsockopt(41,16,1)
else: s.setsockopt(0,11,1); s.setsockopt(0,2,1)
s.bind((src,0)); s.connect((dst,33434))
for i in range(3):
 try: s.send(b'addrsel')
 except OSError: pass
 select.select([s],[],[],1.0)
 try: d,anc,fl,a=s.recvmsg(64,512,socket.MSG_ERRQUEUE)
 except BlockingIOError: continue
 for l,t,c in anc:
  e,o,ty,co=struct.unpack_from('IBBB',c,0)
  m='time exceeded' if ty==(3 if v6 else 11) else 'destination unreachable (code %d)'%co if ty==(1 if v6 else 3) else 'type %d code %d'%(ty,co)
  print(m,'from',socket.inet_ntop(f,c[24:40] if v6 else c[20:24])); sys.exit(0)
print('no ICMP error')";

/// What a repro script says and does differently per OS.
struct Dialect {
    name: &'static str,
    /// After the header comments: how to run it, and the variables it sets up.
    preamble: &'static str,
    /// What a command run in the scenario's namespace or jail is prefixed with.
    in_scenario: &'static str,
    /// ... and one run in Linux's peer namespace.
    in_peer: &'static str,
    /// `sysctl` with the setting after it.
    sysctl: &'static str,
    /// What a connect probe runs without python3 (the destination is appended).
    route_get: &'static str,
    /// What a resolve probe runs without python3 (the name is appended).
    resolve_fallback: &'static str,
}

const LINUX: Dialect = Dialect {
    name: "Linux",
    preamble: "#\n# Run as root inside a throwaway network and mount namespace, for example:\n#   unshare --net --mount --propagation private sh repro.sh\n# Everything it creates disappears when that shell exits; nothing outside it changes.\nset -eu\n# The far ends of the veth pairs live in a second namespace, held by a sleeping process.\nfiles=$(mktemp -d)\nunshare --net sleep infinity &\npeer=$!\ntrap 'kill $peer; rm -rf \"$files\"' EXIT\nuntil [ \"$(readlink /proc/$peer/ns/net)\" != \"$(readlink /proc/self/ns/net)\" ]; do sleep 0.05; done\n",
    in_scenario: "",
    in_peer: "nsenter --target $peer --net ",
    sysctl: "sysctl -qw ",
    route_get: "ip route get",
    resolve_fallback: "getent ahosts",
};

const FREEBSD: Dialect = Dialect {
    name: "FreeBSD",
    preamble: "#\n# Run as root on a FreeBSD 14 or 15 machine with VIMAGE (the default GENERIC kernel).\n# It creates one VNET jail and epair interfaces, and removes them at the end.\nset -eu\njail=addrsel_repro\npeer=addrsel_repro_peer   # a second jail, for far ends that need addresses\ndir=/tmp/addrsel-repro\nbase=200   # epair unit numbers used: base, base+1, ...\n",
    in_scenario: "jexec $jail ",
    in_peer: "jexec $peer ",
    sysctl: "sysctl ",
    route_get: "jexec $jail route -n get",
    resolve_fallback: "",
};

fn dialect(os: PlanOs) -> &'static Dialect {
    match os {
        PlanOs::Linux => &LINUX,
        PlanOs::Freebsd => &FREEBSD,
    }
}

impl Dialect {
    fn place(&self, place: Place) -> &'static str {
        match place {
            Place::Scenario => self.in_scenario,
            Place::Peer => self.in_peer,
            Place::Host => "",
        }
    }
}

/// One plan step as script lines; `files` numbers Linux's private files.
fn step_lines(d: &Dialect, step: &Step, files: &mut usize) -> String {
    match step {
        Step::Run { place, argv, stdin, fails } => {
            let cmd: Vec<String> = argv.iter().map(|a| shell_arg(a)).collect();
            let mut line = format!("{}{}", d.place(*place), cmd.join(" "));
            if let Some(why) = fails {
                line = format!("{}{line} || true", comment(&format!("expected to fail: {why}")));
            }
            match stdin {
                Some(text) => format!("{} | {line}\n", printf_exact(text)),
                None => format!("{line}\n"),
            }
        }
        Step::Sysctl { place, key, value } => {
            format!("{}{}{}\n", d.place(*place), d.sysctl, shell_quote(&format!("{key}={value}")))
        }
        Step::PrivateFile { target, content } => {
            let name = format!("\"$files/{files}\"");
            *files += 1;
            format!("{} > {name}\nmount --bind {name} {}\n", printf_exact(content), shell_quote(target))
        }
        Step::WriteFile { path, content } => format!("{} > {}\n", printf_exact(content), shell_arg(path)),
        Step::WaitTemporary { dev, prefix, timeout_ms } => {
            let tries = timeout_ms.div_ceil(100);
            format!(
                "{}i=0\nuntil {}ip -6 addr show dev {} | {{ while read -r l; do case \"$l\" in *tentative*) ;; *' temporary '*) exit 0 ;; esac; done; exit 1; }}; do\n  i=$((i+1)); [ $i -lt {tries} ] || {{ echo 'no usable temporary address in {prefix}'; exit 1; }}; sleep 0.1\ndone\n",
                comment(&format!("wait until the kernel's temporary address in {prefix} has left DAD")),
                d.in_scenario,
                shell_arg(dev),
            )
        }
        Step::WaitAddress { dev, addr, flag, timeout_ms } if d.name == "FreeBSD" => {
            let tries = timeout_ms.div_ceil(100);
            format!(
                "{}i=0\nuntil {}ifconfig {} inet6 | {{ while read -r l; do case \"$l\" in {}) exit 0 ;; esac; done; exit 1; }}; do\n  i=$((i+1)); [ $i -lt {tries} ] || {{ echo '{addr} never became {flag}'; exit 1; }}; sleep 0.1\ndone\n",
                comment(&format!("wait until the kernel shows {addr} {flag}")),
                d.in_scenario,
                shell_arg(dev),
                shell_quote(&format!("inet6 {addr} ")) + "*" + &shell_quote(&format!(" {flag}")) + "*",
            )
        }
        Step::WaitAddress { dev, addr, flag, timeout_ms } => {
            let tries = timeout_ms.div_ceil(100);
            format!(
                "{}i=0\nuntil case \"$({}ip -6 addr show dev {})\" in *{}*) true ;; *) false ;; esac; do\n  i=$((i+1)); [ $i -lt {tries} ] || {{ echo '{addr} never became {flag}'; exit 1; }}; sleep 0.1\ndone\n",
                comment(&format!("wait until the kernel shows {addr} {flag}")),
                d.in_scenario,
                shell_arg(dev),
                shell_quote(&format!("inet6 {addr}/")) + "*" + &shell_quote(&format!(" {flag}")),
            )
        }
    }
}

/// A probe as script lines: python3 makes the agent's calls; without it, the closest
/// standard tool.
fn probe_lines(d: &Dialect, os: PlanOs, p: &Probe) -> String {
    let mut out = String::new();
    // FreeBSD: a VRF probe runs in its FIB, as the agent's SO_SETFIB does.
    let setfib = p.fib.map(|f| format!("setfib {f} ")).unwrap_or_default();
    let python = format!("{}{setfib}python3 -c", d.in_scenario);
    match &p.kind {
        ProbeKind::IcmpTimeExceeded { from, to, sender } => {
            let _ = writeln!(out, "echo '== {}: ICMP error for {sender} -> {to}, TTL 1, entering {from}'", p.id);
            if os == PlanOs::Freebsd {
                let _ = writeln!(out, "echo 'not in the FreeBSD plan yet'");
                return out;
            }
            // The sender sits in the peer namespace, as the agent's probe does.
            let _ = writeln!(
                out,
                "if command -v python3 >/dev/null; then {}python3 -c {} {sender} {to}; else\n  echo 'python3 is needed to send the probe packet'; fi",
                d.in_peer,
                shell_quote(ICMP_PROBE_PY)
            );
        }
        ProbeKind::Connect { dst, zone } => {
            let target = match zone {
                Some(z) => format!("{dst}%{z}"),
                None => dst.to_string(),
            };
            let family = if dst.is_ipv4() { "AF_INET" } else { "AF_INET6" };
            let mut prefer = prefer_setsockopt(os, &p.prefer);
            // Interface names and addresses are validated at parse time: no quote can occur.
            if let Some(dev) = &p.bind_device {
                prefer.push_str(&format!("\ns.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b\"{dev}\")"));
            }
            let bind = p.bind.map(|b| format!("s.bind((\"{b}\",0)); ")).unwrap_or_default();
            let _ = writeln!(out, "echo '== {}: source for {target}'", p.id);
            // The errno's name, as the agent reports it.
            let _ = writeln!(
                out,
                "if command -v python3 >/dev/null; then {python} 'import errno,socket,sys\ns=socket.socket(socket.{family},socket.SOCK_DGRAM){prefer}\na,_,z=sys.argv[1].partition(\"%\")\ntry:\n {bind}s.connect((a,9,0,socket.if_nametoindex(z)) if z else (a,9)); print(s.getsockname()[0])\nexcept OSError as e: print(errno.errorcode.get(e.errno, e))' {}; else",
                shell_quote(&target)
            );
            let oif = zone.as_ref().or(p.bind_device.as_ref());
            let fallback = match os {
                PlanOs::Linux => format!(
                    "{dst}{}{}",
                    oif.map(|z| format!(" oif {z}")).unwrap_or_default(),
                    p.bind.map(|b| format!(" from {b}")).unwrap_or_default()
                ),
                PlanOs::Freebsd => shell_quote(&target),
            };
            let route_get = match p.fib {
                Some(f) => d.route_get.replacen("route", &format!("setfib {f} route"), 1),
                None => d.route_get.to_string(),
            };
            let _ = writeln!(out, "  {route_get} {fallback} || true; fi");
        }
        ProbeKind::Resolve { name, resolver } if !resolver.is_glibc() => {
            let (program, env) = resolver_command(*resolver).expect("not glibc");
            let _ = writeln!(out, "echo '== {}: {} order for {name}'", p.id, resolver.word());
            let env = env.map(|(k, v)| format!("env {k}={v} ")).unwrap_or_default();
            let _ = writeln!(
                out,
                "if command -v {program} >/dev/null; then {}{env}{program} {}; else\n  echo '{program} (built by addrsel from Debian packages) is needed'; fi",
                d.in_scenario,
                shell_quote(name)
            );
        }
        ProbeKind::Resolve { name, .. } => {
            let _ = writeln!(out, "echo '== {}: getaddrinfo order for {name}'", p.id);
            let _ = writeln!(
                out,
                "if command -v python3 >/dev/null; then {python} 'import socket,sys\nfor a in socket.getaddrinfo(sys.argv[1],None,0,socket.SOCK_DGRAM): print(a[4][0])' {}; else",
                shell_quote(name)
            );
            if d.resolve_fallback.is_empty() {
                let _ = writeln!(out, "  echo 'python3 is needed to print the getaddrinfo order'; fi");
            } else {
                let _ = writeln!(
                    out,
                    "  {} {} | awk '$2 == \"DGRAM\" {{ print $1 }}' || true; fi",
                    d.resolve_fallback,
                    shell_quote(name)
                );
            }
        }
    }
    out
}

/// The plan as a shell script a person can run to reproduce the scenario by hand.
pub fn repro_script(plan: &Plan, s: &Scenario) -> String {
    let d = dialect(plan.os);
    let mut out = String::from("#!/bin/sh\n");
    out.push_str(&comment(&format!("addrsel repro: scenario `{}` on {}", s.name, d.name)));
    for line in s.description.lines() {
        out.push_str(&comment(line));
    }
    for u in &plan.unsupported {
        out.push_str(&comment(&format!("NOT EXPRESSIBLE HERE: {u}")));
    }
    for n in &plan.notes {
        out.push_str(&comment(&format!("note: {n}")));
    }
    out.push_str(d.preamble);
    let uses_agent =
        plan.setup.iter().any(|s| matches!(s, Step::Run { argv, .. } if argv.iter().any(|a| a == "{agent}")));
    if uses_agent {
        out.push_str(match plan.os {
            PlanOs::Freebsd => {
                "# Routes added through a routing socket (route(8) uses netlink since 14.0): addrsel's agent
# writes the RTM_ADD message (addrsel-agent route-socket-add DST GATEWAY [DEV]).
"
            }
            PlanOs::Linux => {
                "# Optimistic addresses: iproute2 6.1 has no keyword for IFA_F_OPTIMISTIC, so addrsel's agent
# sends the RTM_NEWADDR message (addrsel-agent netlink-addr-add DEV ADDR/LEN optimistic).
"
            }
        });
        out.push_str("agent=${ADDRSEL_AGENT:-addrsel-agent}\n");
    }
    let mut files = 0;
    for step in &plan.setup {
        out.push_str(&step_lines(d, step, &mut files));
    }
    out.push_str("\n# Probes: python3 makes the same calls as the addrsel agent (UDP connect + getsockname,\n# getaddrinfo); without it, the closest standard tools.\n");
    for p in &plan.probes {
        out.push_str(&probe_lines(d, plan.os, p));
    }
    if !plan.cleanup.is_empty() {
        out.push_str("\n# Cleanup\n");
        for step in &plan.cleanup {
            out.push_str(&step_lines(d, step, &mut files));
        }
    }
    out
}

#[cfg(test)]
mod tests;
