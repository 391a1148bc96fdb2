//! Linux: the kernel's source selection (`ipv6_dev_get_saddr` in net/ipv6/addrconf.c,
//! `fib_result_prefsrc`/`inet_select_addr` for IPv4) and glibc's destination sort
//! (`rfc3484_sort` in getaddrinfo.c, with gai.conf).
//!
//! Verified against Linux 6.1, 6.12 and 6.18 sources (identical selection code) and on a
//! 6.18 kernel; glibc 2.36 and 2.41 (identical sort code; gai.conf number parsing differs).

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use addrsel_model::{Dad, Resolver, RouteType, Scenario, SourcePreference};
use addrsel_policy::addrlabel::{KernelLabels, LABEL_DEFAULT};
use addrsel_policy::gai_conf::{GaiConf, GlibcParser, GlibcTable, ScopeEntry};
use addrsel_policy::{Ipv6Net, mapped};
use serde::Serialize;

use crate::net::{self, Held, RouteEntry, RouteKind, errno, scope6};
use crate::rules;
use crate::sort::glibc_msort;
use crate::trace::*;

/// What differs between Linux systems in ways the engine must know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LinuxProfile {
    /// Which gai.conf number parser the glibc has (changed in 2.41).
    pub glibc: GlibcParser,
    /// Kernel built with `CONFIG_IPV6_MIP6` (Debian: yes), which enables source rule 4.
    pub mip6: bool,
    /// The kernel has Linux 6.11's VRF source fix ([`VRF_SOURCE_FIX`]): a socket in a VRF
    /// whose route leaks to a device outside it gets a source from the VRF, not from that
    /// device.
    pub vrf_source_fix: bool,
}

impl Default for LinuxProfile {
    fn default() -> Self {
        LinuxProfile { glibc: GlibcParser::From2_41, mip6: true, vrf_source_fix: true }
    }
}

pub const VRF_SOURCE_FIX: &str = "Linux 6.11's fix of source selection with route leak between VRFs (680735235356 IPv4, 252442f2ae31 IPv6; stable 6.1.105 and 6.6.46)";

/// Whether a kernel carries [`VRF_SOURCE_FIX`]: from the upstream version in `uname -v`
/// (Debian's `... Debian 6.1.192-2 ...`; its release `6.1.0-56-cloud-amd64` hides it), else
/// from the release. 5.10 and 5.15 never got it.
pub fn vrf_source_fix(release: &str, version: Option<&str>) -> bool {
    let numbers = |t: &str| -> Vec<u32> {
        t.split(|c: char| !c.is_ascii_digit()).take(3).map_while(|x| x.parse().ok()).collect::<Vec<u32>>()
    };
    let debian = version.and_then(|v| v.split_once("Debian ")).map(|(_, r)| numbers(r)).filter(|n| n.len() >= 2);
    let n = debian.unwrap_or_else(|| numbers(release));
    let (major, minor, patch) =
        (n.first().copied().unwrap_or(0), n.get(1).copied().unwrap_or(0), n.get(2).copied().unwrap_or(0));
    match (major, minor) {
        (6, 1) => patch >= 105,
        (6, 6) => patch >= 46,
        (m, n) => (m, n) >= (6, 11),
    }
}

pub const UNVERIFIED_RULE_7: &str = "Linux source rule 7 (temporary addresses, use_tempaddr, IPV6_PREFER_SRC_TMP/PUBLIC) is modelled from ipv6_get_saddr_eval and run on real kernels only with temporary addresses the kernel made from a mngtmpaddr address (a temporary address named by value cannot be assigned)";

// IPv4 address scopes (`RT_SCOPE_*`).
const SCOPE_UNIVERSE: u8 = 0;
const SCOPE_LINK: u8 = 253;
const SCOPE_HOST: u8 = 254;

// IPV6_ADDR_PREFERENCES bits.
const PREFER_SRC_TMP: u32 = 0x1;
const PREFER_SRC_PUBLIC: u32 = 0x2;
const PREFER_SRC_COA: u32 = 0x4;

struct V4Addr {
    held: Held,
    primary: bool,
    scope: u8,
}

struct Dev {
    name: String,
    /// `idev->addr_list`: scope descending, newest first within a scope.
    v6: Vec<Held>,
    /// `in_dev->ifa_list`: primaries by scope descending (insertion order within), then
    /// secondaries.
    v4: Vec<V4Addr>,
    use_tempaddr: i64,
    use_oif_addrs_only: bool,
    /// `ipv6_use_optimistic_addr`: this device's or `all`'s use_optimistic.
    use_optimistic: bool,
}

pub struct Linux<'s> {
    s: &'s Scenario,
    profile: LinuxProfile,
    devs: Vec<Dev>,
    /// Each device's VRF (its L3 master), an index into `s.vrfs`.
    master: Vec<Option<usize>>,
    /// The path a multipath route takes in this evaluation (the engine tries each in turn;
    /// `None`: the first).
    path: std::cell::Cell<Option<usize>>,
    routes4: Vec<RouteEntry>,
    routes6: Vec<RouteEntry>,
    labels: KernelLabels,
    gai: GaiConf,
}

fn v4_scope(a: &Ipv4Addr) -> u8 {
    // iproute2 gives 127/8 host scope and everything else universe.
    if a.octets()[0] == 127 { SCOPE_HOST } else { SCOPE_UNIVERSE }
}

fn mask4(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

fn v4(h: &Held) -> Ipv4Addr {
    match h.addr.addr {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("IPv4 list"),
    }
}

impl<'s> Linux<'s> {
    pub fn new(s: &'s Scenario, profile: LinuxProfile) -> Self {
        let devs = devices(s);
        let (routes4, routes6) = routes(s, &devs);
        let policy = s.policy.linux();
        let mut labels = if policy.flush_labels { KernelLabels::empty() } else { KernelLabels::default() };
        for row in &policy.addrlabels {
            // Validation already rejected rows the kernel refuses.
            let _ = labels.add(row);
        }
        let gai = GaiConf::parse(&policy.gai_conf, profile.glibc);
        let master = devs.iter().map(|d| s.vrfs.iter().position(|v| v.interfaces.contains(&d.name))).collect();
        Linux { s, profile, devs, master, path: std::cell::Cell::new(None), routes4, routes6, labels, gai }
    }

    /// The routes of the local and main tables (what a flow outside every VRF sees).
    fn main_routes(&self, v4: bool) -> Vec<RouteEntry> {
        let routes = if v4 { &self.routes4 } else { &self.routes6 };
        routes.iter().filter(|r| r.table.is_none()).cloned().collect()
    }

    /// The route a flow takes, in `ip rule` order: local (0), the flow's VRF table (the
    /// l3mdev rule, 1000), main (32766). A miss in the VRF's table falls through to main
    /// (a VRF table without an `unreachable default` leaks).
    fn route_for(
        &self,
        dst: IpAddr,
        oif: Option<usize>,
        vrf: Option<usize>,
        trace: &mut SourceTrace,
    ) -> Option<RouteEntry> {
        self.lookup_route(dst, oif, vrf, trace).map(|r| self.take_path(r, dst, trace))
    }

    /// A multipath route as one path of it: the one under evaluation (`self.path`), else the
    /// first.
    fn take_path(&self, mut r: RouteEntry, dst: IpAddr, trace: &mut SourceTrace) -> RouteEntry {
        if r.paths.len() < 2 {
            return r;
        }
        if r.objects && dst.is_ipv6() {
            // ip6_route_get_saddr -> fib6_info_nh_dev -> nexthop_fib6_nh: a group's first
            // member, whatever path the hash picks for the packets.
            trace.steps.push(format!(
                "a nexthop group: the source comes from its first member's device {} (nexthop_fib6_nh), whatever path the flow hash picks",
                self.dev_name(r.paths[0].1)
            ));
            trace.paths = 1;
            return r;
        }
        trace.paths = r.paths.len();
        let i = self.path.get().unwrap_or(0).min(r.paths.len() - 1);
        let (via, dev) = r.paths[i];
        trace.steps.push(format!(
            "multipath route: path {} of {} ({}dev {})",
            i + 1,
            r.paths.len(),
            via.map_or(String::new(), |v| format!("via {v} ")),
            self.dev_name(dev)
        ));
        r.via = via;
        r.dev = dev;
        r
    }

    fn lookup_route(
        &self,
        dst: IpAddr,
        oif: Option<usize>,
        vrf: Option<usize>,
        trace: &mut SourceTrace,
    ) -> Option<RouteEntry> {
        let all = if dst.is_ipv4() { &self.routes4 } else { &self.routes6 };
        let local: Vec<RouteEntry> =
            all.iter().filter(|r| r.kind == RouteKind::Local && r.table.is_none()).cloned().collect();
        if let Some(r) = net::lookup(&local, dst, if vrf.is_some() { None } else { oif }) {
            return Some(r.clone());
        }
        if let Some(v) = vrf {
            let table = self.s.vrfs[v].table;
            let in_vrf: Vec<RouteEntry> = all.iter().filter(|r| r.table == Some(table)).cloned().collect();
            if let Some(r) = net::lookup(&in_vrf, dst, oif) {
                return Some(r.clone());
            }
            trace.steps.push(format!(
                "no route to {dst} in VRF {}'s table {table}: the l3mdev rule falls through to main",
                self.s.vrfs[v].name
            ));
        }
        let main: Vec<RouteEntry> = all
            .iter()
            .filter(|r| r.table.is_none() && (dst.is_ipv6() || r.kind != RouteKind::Local))
            .cloned()
            .collect();
        net::lookup(&main, dst, if vrf.is_some() { None } else { oif }).cloned()
    }

    fn dev_name(&self, i: usize) -> &str {
        &self.devs[i].name
    }

    /// The source a UDP `connect()` gets, or the errno.
    pub fn connect(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference]) -> Selected {
        self.connect_on(dst, zone, prefer, None)
    }

    /// `connect()` on a socket bound to `device` with `SO_BINDTODEVICE` (the flow's oif).
    /// A VRF's device sets the flow's L3 domain and no oif; a VRF's port sets both
    /// (`l3mdev_update_flow`).
    pub fn connect_on(
        &self,
        dst: IpAddr,
        zone: Option<&str>,
        prefer: &[SourcePreference],
        device: Option<&str>,
    ) -> Selected {
        let vrf_device = device.and_then(|d| self.s.vrfs.iter().position(|v| v.name == d));
        let oif = device.and_then(|d| self.devs.iter().position(|x| x.name == d));
        let vrf = vrf_device.or_else(|| oif.and_then(|o| self.master[o]));
        let run = |path: Option<usize>| {
            self.path.set(path);
            let sel = match dst {
                IpAddr::V4(d) => self.connect4(d, oif, vrf),
                IpAddr::V6(d) => self.connect6(d, zone, prefer, oif, vrf),
            };
            self.path.set(None);
            sel
        };
        let mut sel = run(None);
        let paths = sel.trace.paths;
        if paths > 1 {
            // fib_select_multipath / fib6_select_path: a hash of the flow with a per-boot
            // seed picks the path, so each path's source is possible.
            let mut possible: Vec<IpAddr> = Vec::new();
            for i in 0..paths {
                if let Ok(a) = run(Some(i)).result
                    && !possible.contains(&a)
                {
                    possible.push(a);
                }
            }
            if possible.len() > 1 {
                sel.trace.steps.push(format!(
                    "the flow hash (seeded per boot) picks one of the {paths} paths: the source is one of {}",
                    possible.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                ));
                sel.trace.possible = possible;
            } else {
                sel.trace.steps.push(format!("every one of the {paths} paths gives the same source"));
            }
        }
        sel
    }

    /// Whether the kernel's VRF source fix applies to a flow in `vrf` through `dev`, with
    /// the explanation line: the egress device is outside the socket's VRF (a leaked route).
    fn leaks(&self, vrf: Option<usize>, dev: Option<usize>, trace: &mut SourceTrace) -> bool {
        let Some(v) = vrf else { return false };
        let outside = dev.is_none_or(|d| self.master[d] != Some(v));
        if !outside {
            return false;
        }
        let name = &self.s.vrfs[v].name;
        let egress = dev.map_or("no device".to_string(), |d| self.dev_name(d).to_string());
        if self.profile.vrf_source_fix {
            trace.steps.push(format!(
                "the route leaves VRF {name} through {egress}: the source comes from {name} ({VRF_SOURCE_FIX})"
            ));
            true
        } else {
            trace.steps.push(format!(
                "the route leaves VRF {name} through {egress}: this kernel predates {VRF_SOURCE_FIX}, so the source comes from {egress}'s L3 domain"
            ));
            false
        }
    }

    fn connect4(&self, dst: Ipv4Addr, oif: Option<usize>, vrf: Option<usize>) -> Selected {
        let mut trace = SourceTrace::default();
        if let Some(v) = vrf {
            trace.steps.push(format!(
                "the socket is in VRF {} (table {}): its table is looked up after local, before main",
                self.s.vrfs[v].name, self.s.vrfs[v].table
            ));
        }
        let route = self.route_for(IpAddr::V4(dst), oif, vrf, &mut trace);
        let route = route.as_ref();
        if let (None, Some(o)) = (route, oif) {
            // ip_route_output_key_hash_rcu: no route through the bound device, "routing tables
            // are wrong. Assume, that the destination is on link."
            trace.steps.push(format!(
                "no IPv4 route to {dst} through {} (SO_BINDTODEVICE): the kernel assumes it is on that link",
                self.dev_name(o)
            ));
            let chosen = self.inet_select_addr(o, None, SCOPE_LINK, &mut trace);
            return Selected { result: Ok(IpAddr::V4(chosen)), trace };
        }
        if let Some(o) = oif {
            trace.steps.push(format!("SO_BINDTODEVICE {}: only routes through it are looked at", self.dev_name(o)));
        }
        let Some(route) = route else {
            trace.steps.push(format!("no IPv4 route to {dst}: connect() fails"));
            return Selected { result: Err(errno::ENETUNREACH), trace };
        };
        trace.steps.push(format!("route lookup: {}", route.describe(self.s)));
        if !route.rtype.is_unicast() {
            let e = route_type_errno(route.rtype);
            trace
                .steps
                .push(format!("fib_lookup: a {} route answers {e} (fib_props): connect() fails", route.rtype.word()));
            return Selected { result: Err(e), trace };
        }
        if self.leaks(vrf, Some(route.dev), &mut trace) {
            // fib_select_path: inet_select_addr(VRF device, 0, RT_SCOPE_LINK).
            let v = vrf.expect("leaks only in a VRF");
            let chosen = self.inet_select_addr_l3mdev(v, SCOPE_LINK, &mut trace);
            return Selected { result: Ok(IpAddr::V4(chosen)), trace };
        }
        if let Some(src) = route.prefsrc {
            let why = match route.kind {
                RouteKind::Local => "a local route's preferred source",
                RouteKind::Connected => "the connected route's preferred source (its primary address)",
                RouteKind::Declared => "the route's `src`",
            };
            trace.steps.push(format!("source {src}: {why}"));
            return Selected { result: Ok(src), trace };
        }
        // fib_info_update_nhc_saddr -> inet_select_addr(dev, gateway or 0, route scope)
        let (gw, scope) = match route.via {
            Some(IpAddr::V4(g)) => (Some(g), SCOPE_UNIVERSE),
            Some(IpAddr::V6(_)) => (None, SCOPE_UNIVERSE),
            None => (None, SCOPE_LINK),
        };
        let chosen = self.inet_select_addr(route.dev, gw, scope, &mut trace);
        Selected { result: Ok(IpAddr::V4(chosen)), trace }
    }

    /// Forwarding on `dev` after the plan's writes: the ICMP pins (all off), `default` keys
    /// before the links exist, then the scenario's own in file order (`ip_forward` and `all`
    /// reach every device).
    fn forwarding(&self, v4: bool, dev: &str) -> bool {
        let fam = if v4 { "ipv4" } else { "ipv6" };
        let all =
            [format!("net.{fam}.conf.all.forwarding"), if v4 { "net.ipv4.ip_forward".into() } else { String::new() }];
        let (defaults, others): (Vec<_>, Vec<_>) =
            self.s.sysctl.linux.iter().partition(|(k, _)| k.split('.').nth(3) == Some("default"));
        let mut on = false;
        for (k, v) in defaults.into_iter().chain(others) {
            let value = v.parse::<i64>().is_ok_and(|n| n != 0);
            if all.contains(k)
                || *k == format!("net.{fam}.conf.default.forwarding")
                || *k == format!("net.{fam}.conf.{dev}.forwarding")
            {
                on = value;
            }
        }
        on
    }

    /// `ip_forward`/`ip6_forward` meeting TTL 1 (`icmp_send`/`icmp6_send` with Time
    /// Exceeded), or the input route finding nothing towards `to`.
    pub fn icmp_time_exceeded(&self, from: &str, to: IpAddr, sender: IpAddr) -> IcmpReply {
        let mut trace = SourceTrace::default();
        let Some(ingress) = self.devs.iter().position(|d| d.name == from) else {
            return IcmpReply { result: Err(format!("no interface {from}")), trace };
        };
        let v4 = to.is_ipv4();
        let family = if v4 { "IPv4" } else { "IPv6" };
        if !self.forwarding(v4, from) {
            trace.steps.push(format!(
                "{family} forwarding is off on {from}: the packet is dropped on input, no ICMP error is sent"
            ));
            return IcmpReply { result: Ok(None), trace };
        }
        let routes = self.main_routes(v4);
        let message = match net::lookup(&routes, to, None) {
            Some(r) if r.rtype == RouteType::Blackhole => {
                trace.steps.push(format!(
                    "input route to {to}: {}: the packet is discarded, no ICMP error is sent",
                    r.describe(self.s)
                ));
                return IcmpReply { result: Ok(None), trace };
            }
            Some(r) if !r.rtype.is_unicast() => {
                // ip_error / ip6_pkt_discard: the route's error as a Destination Unreachable,
                // before forwarding (and its TTL check) is reached.
                let code = match (v4, r.rtype) {
                    (true, RouteType::Unreachable) => 1,
                    (true, RouteType::Prohibit) => 13,
                    (true, _) => 0,
                    (false, RouteType::Prohibit) => 1,
                    (false, _) => 0,
                };
                trace.steps.push(format!(
                    "input route to {to}: {}: {} sends Destination Unreachable (code {code}) instead of forwarding",
                    r.describe(self.s),
                    if v4 { "ip_error" } else { "ip6_pkt_discard" }
                ));
                format!("destination unreachable (code {code})")
            }
            Some(r) => {
                trace.steps.push(format!(
                    "input route to {to}: {}; TTL 1 runs out in forwarding: Time Exceeded",
                    r.describe(self.s)
                ));
                "time exceeded".to_string()
            }
            None => {
                trace.steps.push(format!("no route to {to}: the input route sends Destination Unreachable (no route)"));
                trace.unverified.push("the ICMP error for a forwarded packet with no route onwards is modelled from the source, not measured".into());
                "destination unreachable (code 0)".to_string()
            }
        };
        let source = match (sender, v4) {
            (IpAddr::V4(sender), true) => self.icmp4_source(ingress, sender, &mut trace),
            (IpAddr::V6(sender), false) => self.icmp6_source(ingress, sender, &mut trace),
            _ => return IcmpReply { result: Err("`sender` and `to` of one family".into()), trace },
        };
        IcmpReply { result: Ok(source.map(|s| (message, s))), trace }
    }

    /// `__icmp_send`: the inbound interface's address with `icmp_errors_use_inbound_ifaddr`,
    /// else the route back's; 192.0.0.8 (RFC 7600) when that is still 0.0.0.0.
    fn icmp4_source(&self, ingress: usize, sender: Ipv4Addr, trace: &mut SourceTrace) -> Option<IpAddr> {
        let inbound = self
            .s
            .sysctl
            .linux
            .iter()
            .rev()
            .find(|(k, _)| k == "net.ipv4.icmp_errors_use_inbound_ifaddr")
            .is_some_and(|(_, v)| v.parse::<i64>().is_ok_and(|n| n != 0));
        let chosen = if inbound {
            trace.steps.push(format!(
                "icmp_errors_use_inbound_ifaddr = 1: inet_select_addr on {}, the interface the packet came in on",
                self.dev_name(ingress)
            ));
            Some(self.inet_select_addr(ingress, Some(sender), SCOPE_LINK, trace)).filter(|a| !a.is_unspecified())
        } else {
            None
        };
        trace.steps.push(format!("icmp_route_lookup: the route back to the sender {sender}"));
        let back = self.connect4(sender, None, None);
        trace.steps.extend(back.trace.steps);
        trace.candidates.extend(back.trace.candidates);
        let from_route = match back.result {
            Ok(IpAddr::V4(a)) => a,
            _ => {
                trace.steps.push("no route back to the sender: no ICMP error is sent".into());
                return None;
            }
        };
        // ndisc_solicit takes the Neighbor Solicitation's source from the packet waiting for
        // it when that is IPv6 and ours; an IPv4 packet gives none, so it needs a link-local
        // address on the device, or no solicitation is sent and the error waits forever.
        if let Some(route) = net::lookup(&self.main_routes(true), IpAddr::V4(sender), None)
            && let Some(IpAddr::V6(gw)) = route.via
            && !self.devs[route.dev].v6.iter().any(|h| h.v6().is_some_and(|a| a.is_unicast_link_local()))
        {
            trace.steps.push(format!(
                "the next hop {gw} is IPv6 and {} has no link-local address: ndisc_solicit has no source for the Neighbor Solicitation, so {gw} is never resolved and the error is never sent (unless other traffic resolved it first)",
                self.dev_name(route.dev)
            ));
            return None;
        }
        let source = chosen.unwrap_or(from_route);
        if source.is_unspecified() {
            trace.steps.push("the source is still 0.0.0.0: 192.0.0.8 (INADDR_DUMMY, RFC 7600)".into());
            return Some(IpAddr::V4(Ipv4Addr::new(192, 0, 0, 8)));
        }
        trace.steps.push(format!("the ICMP error leaves from {source}"));
        Some(IpAddr::V4(source))
    }

    /// `icmp6_send`: with no preferred source on the route back, ordinary source selection
    /// towards the sender with the interface the packet came in on as the outgoing one.
    fn icmp6_source(&self, ingress: usize, sender: Ipv6Addr, trace: &mut SourceTrace) -> Option<IpAddr> {
        let main = self.main_routes(false);
        let Some(back) = net::lookup(&main, IpAddr::V6(sender), None) else {
            trace.steps.push(format!("no route back to the sender {sender}: no ICMPv6 error is sent"));
            return None;
        };
        trace.steps.push(format!("route back to the sender: {}", back.describe(self.s)));
        if let Some(src) = back.prefsrc {
            trace.steps.push(format!("the route back has `src` {src}: the error leaves from it"));
            return Some(src);
        }
        trace.steps.push(format!(
            "ipv6_dev_get_saddr towards {sender} with {} (where the packet came in) as the outgoing device",
            self.dev_name(ingress)
        ));
        let chosen = self.ipv6_dev_get_saddr(sender, Some(ingress), self.master[ingress], 0, trace);
        if chosen.is_none() {
            trace.steps.push("no candidate source: no ICMPv6 error is sent".into());
        }
        chosen.map(IpAddr::V6)
    }

    fn inet_select_addr(&self, dev: usize, dst: Option<Ipv4Addr>, scope: u8, trace: &mut SourceTrace) -> Ipv4Addr {
        let d = &self.devs[dev];
        let gw_text = match dst {
            Some(g) => format!("gateway {g}"),
            None => "no IPv4 gateway (dst 0)".to_string(),
        };
        trace.steps.push(format!(
            "inet_select_addr({}, {gw_text}, scope {}): primary addresses of {} with scope <= {scope}, preferring one whose subnet holds the gateway",
            d.name, scope, d.name
        ));
        let mut first = None;
        for x in &d.v4 {
            let a = v4(&x.held);
            let mut cand = Candidate {
                addr: x.held.ip(),
                dev: d.name.clone(),
                attrs: format!("/{} scope {}", x.held.addr.prefix_len, x.scope),
                skipped: None,
            };
            if !x.primary {
                cand.skipped = Some("secondary address".into());
            } else if x.scope.min(SCOPE_HOST) > scope {
                cand.skipped = Some(format!("scope {} > {scope}", x.scope));
            }
            let ok = cand.skipped.is_none();
            trace.candidates.push(cand);
            if !ok {
                continue;
            }
            let mask = mask4(x.held.addr.prefix_len);
            if dst.is_none_or(|g| (g.to_bits() ^ a.to_bits()) & mask == 0) {
                trace.steps.push(format!(
                    "{a} on {} {}",
                    d.name,
                    if dst.is_some() { "holds the gateway's subnet" } else { "is the first eligible" }
                ));
                return a;
            }
            first.get_or_insert(a);
        }
        if let Some(a) = first {
            trace.steps.push(format!("{a}: first eligible address of {} (none holds the gateway)", d.name));
            return a;
        }
        if let Some(v) = self.master[dev] {
            trace.steps.push(format!("{} has no eligible IPv4 address: VRF {}'s", d.name, self.s.vrfs[v].name));
            return self.inet_select_addr_l3mdev(v, scope, trace);
        }
        trace.steps.push(format!(
            "{} has no eligible IPv4 address: first primary with scope <= {scope} (not link) on any interface outside the VRFs, lo first",
            d.name
        ));
        for (oi, od) in self.devs.iter().enumerate() {
            if self.master[oi].is_some() {
                continue;
            }
            for x in &od.v4 {
                if x.primary && x.scope != SCOPE_LINK && x.scope <= scope {
                    let a = v4(&x.held);
                    trace.steps.push(format!("{a} on {}", od.name));
                    return a;
                }
            }
        }
        trace.steps.push("no IPv4 address qualifies: connect() succeeds with source 0.0.0.0".into());
        Ipv4Addr::UNSPECIFIED
    }

    /// `inet_select_addr` on a VRF's device, which has no addresses here: the first
    /// primary address with scope <= `scope` (not link) of the devices in its L3 domain, in
    /// device order (`in_dev_select_addr`).
    fn inet_select_addr_l3mdev(&self, v: usize, scope: u8, trace: &mut SourceTrace) -> Ipv4Addr {
        let name = &self.s.vrfs[v].name;
        trace.steps.push(format!(
            "inet_select_addr({name}, 0, scope {scope}): {name} has no address; the first primary with scope <= {scope} (not link) of its ports"
        ));
        for (di, d) in self.devs.iter().enumerate().filter(|(di, _)| self.master[*di] == Some(v)) {
            for x in &d.v4 {
                if x.primary && x.scope != SCOPE_LINK && x.scope <= scope {
                    let a = v4(&x.held);
                    trace.steps.push(format!("{a} on {}", self.dev_name(di)));
                    return a;
                }
            }
        }
        trace.steps.push(format!("no IPv4 address in VRF {name}: connect() succeeds with source 0.0.0.0"));
        Ipv4Addr::UNSPECIFIED
    }

    fn connect6(
        &self,
        dst: Ipv6Addr,
        zone: Option<&str>,
        prefer: &[SourcePreference],
        bound: Option<usize>,
        vrf: Option<usize>,
    ) -> Selected {
        let mut trace = SourceTrace::default();
        let dst = if dst.is_unspecified() { Ipv6Addr::LOCALHOST } else { dst };
        // __ipv6_addr_needs_scope_id: connect() reads sin6_scope_id for these only.
        let needs_zone = dst.is_unicast_link_local() || (dst.is_multicast() && matches!(scope6(&dst), 1 | 2));
        if zone.is_some() && !needs_zone {
            trace.steps.push(format!("{dst} is not link-scoped: connect() ignores the %zone"));
        }
        let zoned = zone.filter(|_| needs_zone).and_then(|z| self.devs.iter().position(|d| d.name == z));
        if needs_zone && zoned.is_none() && bound.is_none() {
            trace.steps.push(format!("{dst} is link-scoped and has no %zone: connect() refuses it"));
            return Selected { result: Err(errno::EINVAL), trace };
        }
        // A zone and SO_BINDTODEVICE both set the flow's oif (the zone when both, as
        // ip6_datagram_connect checks they agree).
        let oif = zoned.or(bound);
        if let (Some(b), None) = (bound, zoned) {
            trace
                .steps
                .push(format!("SO_BINDTODEVICE {}: the lookup is strict to it (RT6_LOOKUP_F_IFACE)", self.dev_name(b)));
        }
        if let Some(v) = vrf {
            trace.steps.push(format!(
                "the socket is in VRF {} (table {}): its table is looked up after local, before main",
                self.s.vrfs[v].name, self.s.vrfs[v].table
            ));
        }
        // The local table is consulted before main (rule 0).
        let route = self.route_for(IpAddr::V6(dst), oif, vrf, &mut trace);
        if dst.is_multicast() && !needs_zone && route.as_ref().is_some_and(|r| r.kind == RouteKind::Local) {
            trace.unverified.push(
                "Linux: the interface whose ff00::/8 route carries a multicast group beyond link scope is the first one up on 6.12 and 6.18; 6.1 was seen to pick another, not the same from boot to boot (not modelled)".into(),
            );
        }
        let dst_dev = match &route {
            Some(r) if !r.rtype.is_unicast() => {
                trace.steps.push(format!(
                    "route lookup: {}; ip6_route_output gives its error route ({}): selecting with no outgoing device, then failing with it",
                    r.describe(self.s),
                    route_type_errno(r.rtype)
                ));
                None
            }
            Some(r) => {
                trace.steps.push(format!("route lookup: {}", r.describe(self.s)));
                if self.leaks(vrf, Some(r.dev), &mut trace) {
                    // ip6_route_get_saddr: the route's src is ignored; ipv6_dev_get_saddr on
                    // the VRF's device (no addresses here), so its ports compete.
                    None
                } else {
                    if let Some(src) = r.prefsrc {
                        trace.steps.push(format!("source {src}: the route's `src`, used as is"));
                        return Selected { result: Ok(src), trace };
                    }
                    Some(r.dev)
                }
            }
            None => {
                trace.steps.push(format!(
                    "no IPv6 route to {dst}: selecting with no outgoing device, then failing with the route error"
                ));
                None
            }
        };
        let prefs = prefs_bits(prefer);
        // The L3 domain whose addresses compete: the egress device's; the VRF's own when
        // the fix sends selection to the VRF device (a leak, or no route).
        let domain = match (dst_dev, route.as_ref()) {
            (Some(d), _) => self.master[d],
            (None, Some(r)) if r.rtype.is_unicast() => vrf.filter(|_| self.profile.vrf_source_fix),
            (None, _) => vrf.filter(|_| self.profile.vrf_source_fix),
        };
        let chosen = self.ipv6_dev_get_saddr(dst, dst_dev, domain, prefs, &mut trace);
        let result = match (chosen, &route) {
            (None, _) => {
                trace.steps.push("no candidate source address: EADDRNOTAVAIL".into());
                Err(errno::EADDRNOTAVAIL)
            }
            (Some(_), None) => Err(errno::ENETUNREACH),
            (Some(_), Some(r)) if !r.rtype.is_unicast() => Err(route_type_errno(r.rtype)),
            (Some(a), Some(_)) => Ok(IpAddr::V6(a)),
        };
        Selected { result, trace }
    }

    fn ipv6_dev_get_saddr(
        &self,
        dst: Ipv6Addr,
        dst_dev: Option<usize>,
        domain: Option<usize>,
        prefs: u32,
        trace: &mut SourceTrace,
    ) -> Option<Ipv6Addr> {
        let dst_scope = scope6(&dst);
        let dst_label = self.labels.lookup(&dst, dst_dev.map(|d| self.dev_name(d)));
        let only_oif = dst_dev.filter(|&d| dst.is_multicast() || dst_scope <= 2 || self.devs[d].use_oif_addrs_only);
        trace.steps.push(format!(
            "destination scope {dst_scope}, label {}; candidates: {}",
            label_text(dst_label),
            match (only_oif, dst_dev) {
                (Some(d), _) => format!("addresses of the outgoing device {} only", self.dev_name(d)),
                (None, Some(d)) => format!("every device's addresses, lo first (outgoing device {})", self.dev_name(d)),
                (None, None) => "every device's addresses, lo first (no outgoing device)".into(),
            }
        ));
        // Only devices in the egress device's L3 domain compete (afbac6010aec): the default
        // domain is every device outside the VRFs; a VRF's is its ports, the egress first.
        let order: Vec<usize> = match only_oif {
            Some(d) => vec![d],
            None => dst_dev
                .into_iter()
                .chain((0..self.devs.len()).filter(|&d| Some(d) != dst_dev))
                .filter(|&d| self.master[d] == domain)
                .collect(),
        };
        if let Some(v) = domain {
            trace.steps.push(format!(
                "L3 domain: VRF {}'s ports{}",
                self.s.vrfs[v].name,
                if dst_dev.is_none() { " (the VRF's device, which has no address, stands for the egress)" } else { "" }
            ));
        } else if !self.s.vrfs.is_empty() {
            trace.steps.push("L3 domain: the devices outside every VRF".into());
        }
        let mut best: Option<(&Held, Vec<Score>)> = None;
        for di in order {
            for h in &self.devs[di].v6 {
                let a = h.v6().expect("v6");
                if h.addr.unusable() {
                    // __ipv6_dev_get_saddr: a tentative address that is not optimistic is not
                    // "assigned to an interface" (RFC 4862 5.4); a dadfailed one stays tentative.
                    trace.candidates.push(Candidate {
                        addr: h.ip(),
                        dev: self.dev_name(di).to_string(),
                        attrs: format!("/{}{}", h.addr.prefix_len, h.flags()),
                        skipped: Some("tentative (DAD has not succeeded): not a source".into()),
                    });
                    continue;
                }
                let cand_label = self.labels.lookup(&a, Some(self.dev_name(di)));
                let scores = self.scores(h, dst, dst_scope, dst_label, cand_label, dst_dev, prefs);
                trace.candidates.push(Candidate {
                    addr: h.ip(),
                    dev: self.dev_name(di).to_string(),
                    attrs: format!(
                        "/{} scope {}, label {}{}",
                        h.addr.prefix_len,
                        scope6(&a),
                        label_text(cand_label),
                        h.flags()
                    ),
                    skipped: None,
                });
                match &best {
                    None => best = Some((h, scores)),
                    Some((b, bs)) => {
                        let decision = bs.iter().zip(&scores).find_map(|(x, y)| {
                            let detail = format!("{} {} vs {}", x.what, x.text, y.text);
                            Decision::prefer(x.value > y.value, y.value > x.value, x.rule, detail)
                        });
                        trace.duels.push(Duel { best: b.ip(), challenger: h.ip(), decision: decision.clone() });
                        if decision.is_some_and(|d| d.winner == Side::Right) {
                            best = Some((h, scores));
                        }
                    }
                }
            }
        }
        let temporary_in_play = trace.candidates.iter().any(|c| c.attrs.contains("temporary"));
        if temporary_in_play || prefs & (PREFER_SRC_TMP | PREFER_SRC_PUBLIC) != 0 {
            trace.unverified.push(UNVERIFIED_RULE_7.into());
        }
        best.map(|(h, _)| h.v6().expect("v6"))
    }

    #[allow(clippy::too_many_arguments)]
    fn scores(
        &self,
        h: &Held,
        dst: Ipv6Addr,
        dst_scope: u8,
        dst_label: u32,
        cand_label: u32,
        dst_dev: Option<usize>,
        prefs: u32,
    ) -> Vec<Score> {
        let a = h.v6().expect("v6");
        let s = scope6(&a);
        let mut v = Vec::new();
        v.push(Score::new(rules::source(1), "same as destination:", i64::from(a == dst), (a == dst).to_string()));
        let scope_value = if s >= dst_scope { -i64::from(s) } else { i64::from(s) - 128 };
        v.push(Score::new(rules::source(2), "scope (destination scope)", scope_value, format!("{s} ({dst_scope})")));
        // Rule 3 avoids optimistic addresses like deprecated ones unless use_optimistic.
        let avoided = h.addr.deprecated || (h.addr.dad == Dad::Optimistic && !self.devs[h.dev].use_optimistic);
        let preferred = a.is_loopback() || !avoided;
        v.push(Score::new(rules::source(3), "preferred:", i64::from(preferred), preferred.to_string()));
        if self.profile.mip6 {
            let prefhome = prefs & PREFER_SRC_COA == 0;
            let value = (!h.addr.home) ^ prefhome;
            v.push(Score::new(rules::source(4), "home:", i64::from(value), h.addr.home.to_string()));
        }
        let oif = dst_dev.is_none_or(|d| d == h.dev);
        v.push(Score::new(rules::source(5), "on the outgoing device:", i64::from(oif), oif.to_string()));
        let label_match = cand_label == dst_label;
        v.push(Score::new(
            rules::source(6),
            "label matches the destination's",
            i64::from(label_match),
            format!("{} ({})", label_text(cand_label), label_match),
        ));
        let preftmp = if prefs & (PREFER_SRC_PUBLIC | PREFER_SRC_TMP) != 0 {
            prefs & PREFER_SRC_TMP != 0
        } else {
            self.devs[h.dev].use_tempaddr >= 2
        };
        let privacy = (!h.addr.temporary) ^ preftmp;
        v.push(Score::new(
            rules::source(7),
            "temporary (wanted with use_tempaddr >= 2 or IPV6_PREFER_SRC_TMP, else public):",
            i64::from(privacy),
            h.addr.temporary.to_string(),
        ));
        let orchid = |x: &Ipv6Addr| (x.segments()[0] == 0x2001) && (x.segments()[1] & 0xfff0 == 0x0010);
        let orchid_ok = orchid(&a) == orchid(&dst);
        v.push(Score::new(rules::LINUX_ORCHID, "ORCHID agrees:", i64::from(orchid_ok), orchid_ok.to_string()));
        let common = addrsel_policy::common_prefix_len(&a, &dst).min(u32::from(h.addr.prefix_len));
        v.push(Score::new(
            rules::source(8),
            "common prefix (capped at the address's prefix length)",
            i64::from(common),
            common.to_string(),
        ));
        v
    }

    // -----------------------------------------------------------------------------------
    // glibc getaddrinfo

    /// getaddrinfo(name, AF_UNSPEC, SOCK_DGRAM): the order glibc returns.
    pub fn getaddrinfo(&self, name: &str) -> (Result<Vec<IpAddr>, String>, SortTrace) {
        let input: Vec<IpAddr> = addrsel_model::plan::hosts_lookup(self.s, name);
        let mut trace = SortTrace { input: input.clone(), ..Default::default() };
        let labels = self.gai.label_table();
        let precedence = self.gai.precedence_table();
        let scopes = self.gai.scope_table();
        trace.notes.push(table_note("labels", &labels));
        trace.notes.push(table_note("precedence", &precedence));
        if input.len() < 2 {
            trace.unsorted_because = Some("fewer than two addresses".into());
            return (Ok(input), trace);
        }
        if let Some(crash) = &self.gai.crash {
            trace.unsorted_because = Some(format!("gai.conf line {}: {}", crash.line, crash.message));
            return (Err("SIGSEGV".into()), trace);
        }
        let entries = self.gai_sources(&input, &mut trace);
        let get_scope = |a: &IpAddr| -> u32 {
            match a {
                IpAddr::V6(v6) => u32::from(glibc_scope6(v6)),
                IpAddr::V4(v4) => scopes.iter().find(|e| e.matches(v4)).map_or(14, |e: &ScopeEntry| e.scope),
            }
        };
        let label = |a: &IpAddr| labels.lookup(&mapped(a));
        let prec = |a: &IpAddr| precedence.lookup(&mapped(a));
        for e in &entries {
            let attrs = format!(
                "scope {}, label {}, precedence {}{}",
                get_scope(&e.dst),
                label(&e.dst),
                prec(&e.dst),
                match e.source {
                    Some(src) => format!(
                        "; source scope {}, label {}, prefixlen {}{}{}{}",
                        get_scope(&src),
                        label(&src),
                        e.prefixlen,
                        if e.deprecated { ", deprecated" } else { "" },
                        if e.home { ", home" } else { "" },
                        if e.index.is_none() { ", not in the netlink address list" } else { "" }
                    ),
                    None => String::new(),
                }
            );
            trace.entries.push(DestInfo {
                dst: e.dst,
                source: e.source,
                source_error: e.error.map(String::from),
                attrs,
                source_trace: e.trace.clone(),
            });
        }
        let cmp = |i: &usize, j: &usize| -> (Ordering, Option<Decision>) {
            rfc3484_sort(&entries[*i], &entries[*j], *i, *j, &get_scope, &label, &prec)
        };
        let mut order: Vec<usize> = (0..entries.len()).collect();
        glibc_msort(&mut order, &mut |a, b| cmp(a, b).0);
        for w in order.windows(2) {
            let (_, d) = cmp(&w[0], &w[1]);
            trace.neighbours.push((entries[w[0]].dst, entries[w[1]].dst, d));
        }
        (Ok(order.iter().map(|&i| entries[i].dst).collect()), trace)
    }

    /// The probe-socket loop of getaddrinfo: the kernel's source for every destination,
    /// plus what glibc learns about it from the netlink address dump (`__check_pf`).
    fn gai_sources(&self, input: &[IpAddr], trace: &mut SortTrace) -> Vec<GaiEntry> {
        // __check_pf returns addresses only if some IPv6 address other than ::1 exists.
        let seen_ipv6 = net::held(self.s).iter().any(|h| matches!(h.ip(), IpAddr::V6(a) if a != Ipv6Addr::LOCALHOST));
        if !seen_ipv6 {
            trace
                .notes
                .push("no IPv6 address besides ::1: glibc gets no address list (prefix lengths 0, rule 7 off)".into());
        }
        let all = net::held(self.s);
        let mut socket_v6 = input[0].is_ipv6();
        let mut out = Vec::new();
        for dst in input {
            if dst.is_ipv6() {
                socket_v6 = true;
            }
            let sel = self.connect(*dst, None, &[]);
            let (source, error) = match sel.result {
                Ok(a) => (Some(a), None),
                Err(e) => (None, Some(e)),
            };
            let mut entry = GaiEntry {
                dst: *dst,
                source,
                error,
                prefixlen: 0,
                deprecated: false,
                home: false,
                index: None,
                trace: sel.trace,
            };
            if let (Some(src), true) = (source, seen_ipv6) {
                // The lookup key: an IPv4 source on an AF_INET socket is looked up with
                // 127/8 folded to 127.0.0.1.
                let key = match src {
                    IpAddr::V4(a) if !socket_v6 && a.octets()[0] == 127 => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    other => other,
                };
                if let Some(h) = all.iter().find(|h| h.ip() == key) {
                    entry.prefixlen = h.addr.prefix_len;
                    // check_pf: IFA_F_DEPRECATED and IFA_F_OPTIMISTIC both set in6ai_deprecated.
                    entry.deprecated = h.addr.deprecated || h.addr.dad == Dad::Optimistic;
                    entry.home = h.addr.home;
                    entry.index = Some(h.dev);
                }
            }
            out.push(entry);
        }
        out
    }
}

/// Every interface with its addresses in the order the kernel keeps them, and the sysctls
/// selection reads.
fn devices(s: &Scenario) -> Vec<Dev> {
    let sysctl = |dev: &str, key: &str| -> Option<i64> {
        let own = format!("net.ipv6.conf.{dev}.{key}");
        let default = format!("net.ipv6.conf.default.{key}");
        let find = |k: &str| s.sysctl.linux.iter().rev().find(|(kk, _)| kk == k).and_then(|(_, v)| v.parse().ok());
        // `default` is applied before the veths are created (lo already exists);
        // writes to `all` do not reach existing devices for these keys.
        find(&own).or_else(|| if dev == "lo" { None } else { find(&default) })
    };
    let mut devs: Vec<Dev> = s
        .interfaces
        .iter()
        .map(|i| Dev {
            name: i.name.clone(),
            v6: Vec::new(),
            v4: Vec::new(),
            use_tempaddr: sysctl(&i.name, "use_tempaddr").unwrap_or(0),
            use_oif_addrs_only: sysctl(&i.name, "use_oif_addrs_only").unwrap_or(0) != 0,
            use_optimistic: sysctl(&i.name, "use_optimistic").unwrap_or(0) != 0
                || s.sysctl
                    .linux
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "net.ipv6.conf.all.use_optimistic")
                    .is_some_and(|(_, v)| v != "0"),
        })
        .collect();
    for h in net::held(s) {
        let dev = &mut devs[h.dev];
        match h.addr.addr {
            IpAddr::V6(a) => {
                let scope = scope6(&a);
                let at = dev.v6.iter().position(|x| scope6(&x.v6().expect("v6")) <= scope).unwrap_or(dev.v6.len());
                dev.v6.insert(at, h);
            }
            IpAddr::V4(a) => {
                let mask = mask4(h.addr.prefix_len);
                let secondary = dev.v4.iter().any(|x| {
                    x.held.addr.prefix_len == h.addr.prefix_len
                        && (v4(&x.held).to_bits() & mask) == (a.to_bits() & mask)
                });
                let scope = v4_scope(&a);
                let entry = V4Addr { held: h, primary: !secondary, scope };
                if secondary {
                    dev.v4.push(entry);
                } else {
                    let at = dev.v4.iter().rposition(|x| x.primary && scope <= x.scope).map_or(0, |i| i + 1);
                    dev.v4.insert(at, entry);
                }
            }
        }
    }
    devs
}

/// The IPv4 and IPv6 route tables: local routes (own addresses, prefixes on lo, multicast),
/// connected routes, then the scenario's, in the order the kernel looks at them.
fn routes(s: &Scenario, devs: &[Dev]) -> (Vec<RouteEntry>, Vec<RouteEntry>) {
    let mut routes4 = Vec::new();
    let mut routes6 = Vec::new();
    // An enslaved device's local and prefix routes go to its VRF's table.
    let tables: Vec<Option<u32>> = devs.iter().map(|d| s.vrf_of(&d.name).map(|v| v.table)).collect();
    // Local routes: every own address (IPv4 ones point at their subnet's primary), and
    // prefixes on lo, which the kernel makes local too.
    for (di, d) in devs.iter().enumerate() {
        for x in &d.v4 {
            let a = v4(&x.held);
            let mask = mask4(x.held.addr.prefix_len);
            let primary =
                d.v4.iter()
                    .find(|p| {
                        p.primary
                            && p.held.addr.prefix_len == x.held.addr.prefix_len
                            && v4(&p.held).to_bits() & mask == a.to_bits() & mask
                    })
                    .map_or(a, |p| v4(&p.held));
            routes4.push(RouteEntry {
                to: ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, 32).expect("/32")),
                via: None,
                dev: di,
                prefsrc: Some(IpAddr::V4(primary)),
                metric: 0,
                kind: RouteKind::Local,
                rtype: RouteType::Unicast,
                table: tables[di],
                paths: Vec::new(),
                objects: false,
            });
            if x.primary && x.held.addr.prefix_len < 32 && s.interfaces[di].is_loopback() {
                routes4.push(RouteEntry {
                    to: x.held.addr.net().trunc(),
                    via: None,
                    dev: di,
                    prefsrc: Some(IpAddr::V4(a)),
                    metric: 0,
                    kind: RouteKind::Local,
                    rtype: RouteType::Unicast,
                    table: tables[di],
                    paths: Vec::new(),
                    objects: false,
                });
            }
        }
        for h in &d.v6 {
            routes6.push(RouteEntry {
                to: ipnet::IpNet::new(h.ip(), 128).expect("/128"),
                via: None,
                dev: di,
                prefsrc: None,
                metric: 0,
                kind: RouteKind::Local,
                rtype: RouteType::Unicast,
                table: tables[di],
                paths: Vec::new(),
                objects: false,
            });
        }
    }
    // `multicast ff00::/8 dev X table local`: every interface but lo gets one when it
    // comes up (addrconf_add_mroute), so the first one up carries multicast that names no
    // interface.
    for (di, _) in devs.iter().enumerate().filter(|(di, _)| !s.interfaces[*di].is_loopback() && s.interfaces[*di].up) {
        routes6.push(RouteEntry {
            to: "ff00::/8".parse().expect("prefix"),
            via: None,
            dev: di,
            prefsrc: None,
            metric: 256,
            kind: RouteKind::Local,
            rtype: RouteType::Unicast,
            table: tables[di],
            paths: Vec::new(),
            objects: false,
        });
    }
    let locals6 = routes6.len();
    // A down link has its addresses and their local routes, but no prefix routes
    // (fib_add_ifaddr stops at !IFF_UP; addrconf adds prefix routes when the link comes up).
    for (di, d) in devs.iter().enumerate().filter(|(di, _)| s.interfaces[*di].up) {
        if !s.interfaces[di].is_loopback() {
            for x in d.v4.iter().filter(|x| x.primary && x.held.addr.prefix_len < 32) {
                routes4.push(RouteEntry {
                    to: x.held.addr.net().trunc(),
                    via: None,
                    dev: di,
                    prefsrc: Some(x.held.ip()),
                    metric: 0,
                    kind: RouteKind::Connected,
                    rtype: RouteType::Unicast,
                    table: tables[di],
                    paths: Vec::new(),
                    objects: false,
                });
            }
        }
        // Prefix routes in the order the addresses were added (oldest first).
        for h in net::held(s).iter().filter(|h| h.dev == di && h.addr.addr.is_ipv6() && h.addr.prefix_len < 128) {
            let to = h.addr.net().trunc();
            if !routes6[locals6..].iter().any(|r| r.to == to && r.dev == di) {
                routes6.push(RouteEntry {
                    to,
                    via: None,
                    dev: di,
                    prefsrc: None,
                    metric: 256,
                    kind: RouteKind::Connected,
                    rtype: RouteType::Unicast,
                    table: tables[di],
                    paths: Vec::new(),
                    objects: false,
                });
            }
        }
    }
    for r in &s.routes {
        if let Some(e) = RouteEntry::declared(r, s, if r.to.addr().is_ipv4() { 0 } else { 1024 }) {
            if r.to.addr().is_ipv4() { routes4.push(e) } else { routes6.push(e) }
        }
    }
    (routes4, routes6)
}

/// What `connect()` gets from a route of this type: `fib_props[type].error` (IPv4) and
/// the error routes of ip6_route_info_create (IPv6); throw ends the lookup in the main table
/// and the default table behind it is empty.
fn route_type_errno(t: RouteType) -> &'static str {
    match t {
        RouteType::Unicast => unreachable!("not an error route"),
        RouteType::Blackhole => errno::EINVAL,
        RouteType::Unreachable => errno::EHOSTUNREACH,
        RouteType::Prohibit => errno::EACCES,
        RouteType::Throw => errno::ENETUNREACH,
    }
}

struct GaiEntry {
    dst: IpAddr,
    source: Option<IpAddr>,
    error: Option<&'static str>,
    prefixlen: u8,
    deprecated: bool,
    home: bool,
    /// Interface of the source per the netlink dump; `None` = not found (0xffffffff).
    index: Option<usize>,
    trace: SourceTrace,
}

/// glibc `get_scope` for IPv6 (v4-mapped addresses are global: the IPv4 table is not used).
fn glibc_scope6(a: &Ipv6Addr) -> u8 {
    if a.is_multicast() {
        a.octets()[1] & 0x0f
    } else if a.is_unicast_link_local() || a.is_loopback() {
        2
    } else if a.octets()[0] == 0xfe && a.octets()[1] & 0xc0 == 0xc0 {
        5
    } else {
        14
    }
}

/// glibc's `fls`, which returns the number of leading zeros (32 for 0).
fn glibc_fls(x: u32) -> u32 {
    x.leading_zeros()
}

/// glibc's `rfc3484_sort` comparator, condition for condition.
fn rfc3484_sort(
    a1: &GaiEntry,
    a2: &GaiEntry,
    idx1: usize,
    idx2: usize,
    get_scope: &dyn Fn(&IpAddr) -> u32,
    get_label: &dyn Fn(&IpAddr) -> u32,
    get_precedence: &dyn Fn(&IpAddr) -> u32,
) -> (Ordering, Option<Decision>) {
    use Ordering::*;
    let done = |d: Decision| -> (Ordering, Option<Decision>) {
        (if d.winner == Side::Left { Less } else { Greater }, Some(d))
    };
    let got1 = a1.source.is_some();
    let got2 = a2.source.is_some();
    if let Some(d) = Decision::prefer(
        got1 && !got2,
        !got1 && got2,
        rules::destination(1),
        format!("source {} vs {}", src_text(a1), src_text(a2)),
    ) {
        return done(d);
    }
    let d1_scope = get_scope(&a1.dst);
    let d2_scope = get_scope(&a2.dst);
    if let (Some(s1), Some(s2)) = (a1.source, a2.source) {
        let s1_scope = get_scope(&s1);
        let s2_scope = get_scope(&s2);
        let detail = format!("destination/source scope {d1_scope}/{s1_scope} vs {d2_scope}/{s2_scope}");
        if let Some(d) = Decision::prefer(
            d1_scope == s1_scope && d2_scope != s2_scope,
            d1_scope != s1_scope && d2_scope == s2_scope,
            rules::destination(2),
            detail,
        ) {
            return done(d);
        }
        let detail = format!("source deprecated {} vs {}", a1.deprecated, a2.deprecated);
        if let Some(d) = Decision::prefer(
            !a1.deprecated && a2.deprecated,
            a1.deprecated && !a2.deprecated,
            rules::destination(3),
            detail,
        ) {
            return done(d);
        }
        let detail = format!("source home address {} vs {}", a1.home, a2.home);
        if let Some(d) = Decision::prefer(a1.home && !a2.home, !a1.home && a2.home, rules::destination(4), detail) {
            return done(d);
        }
        let (l1d, l1s, l2d, l2s) = (get_label(&a1.dst), get_label(&s1), get_label(&a2.dst), get_label(&s2));
        let detail = format!("destination/source label {l1d}/{l1s} vs {l2d}/{l2s}");
        if let Some(d) =
            Decision::prefer(l1d == l1s && l2d != l2s, l1d != l1s && l2d == l2s, rules::destination(5), detail)
        {
            return done(d);
        }
    }
    if let Some(d) =
        Decision::higher(get_precedence(&a1.dst), get_precedence(&a2.dst), rules::destination(6), "precedence")
    {
        return done(d);
    }
    if got1 && a1.index != a2.index {
        // An interface glibc cannot find counts as not native; veth and lo are native.
        let n1 = a1.index.is_some();
        let n2 = a2.index.is_some();
        if let Some(d) = Decision::prefer(n1 && !n2, !n1 && n2, rules::destination(7), format!("native {n1} vs {n2}")) {
            return done(d);
        }
    }
    if let Some(d) = Decision::lower(d1_scope, d2_scope, rules::destination(8), "destination scope") {
        return done(d);
    }
    if let (Some(s1), Some(s2), true) = (a1.source, a2.source, a1.dst.is_ipv4() == a2.dst.is_ipv4()) {
        let (bit1, bit2) = match (a1.dst, s1, a2.dst, s2) {
            (IpAddr::V4(d1), IpAddr::V4(s1), IpAddr::V4(d2), IpAddr::V4(s2)) => {
                let bit = |d: Ipv4Addr, s: Ipv4Addr, len: u8| {
                    // `0xffffffff << 32` for an unknown prefix length keeps all bits on
                    // x86-64 and arm64 (the shift count is taken modulo 32).
                    let mask = if len == 0 { u32::MAX } else { mask4(len) };
                    if s.to_bits() & mask == d.to_bits() & mask { glibc_fls(d.to_bits() ^ s.to_bits()) } else { 0 }
                };
                (bit(d1, s1, a1.prefixlen), bit(d2, s2, a2.prefixlen))
            }
            (IpAddr::V6(d1), IpAddr::V6(s1), IpAddr::V6(d2), IpAddr::V6(s2)) => {
                let words = |a: Ipv6Addr| {
                    let b = a.to_bits();
                    [(b >> 96) as u32, (b >> 64) as u32, (b >> 32) as u32, b as u32]
                };
                let (d1, s1, d2, s2) = (words(d1), words(s1), words(d2), words(s2));
                match (0..4).find(|&i| d1[i] != s1[i] || d2[i] != s2[i]) {
                    Some(i) => (glibc_fls(d1[i] ^ s1[i]), glibc_fls(d2[i] ^ s2[i])),
                    None => (0, 0),
                }
            }
            _ => (0, 0),
        };
        if let Some(d) =
            Decision::higher(bit1, bit2, rules::destination(9), "matching bits in the first differing word")
        {
            return done(d);
        }
    }
    done(Decision::new(
        if idx1 < idx2 { Side::Left } else { Side::Right },
        rules::destination(10),
        format!("resolver positions {} and {}", idx1 + 1, idx2 + 1),
    ))
}

fn src_text(e: &GaiEntry) -> String {
    match (e.source, e.error) {
        (Some(s), _) => s.to_string(),
        (None, Some(err)) => format!("none ({err})"),
        (None, None) => "none".into(),
    }
}

fn label_text(label: u32) -> String {
    if label == LABEL_DEFAULT { "none (0xffffffff)".into() } else { label.to_string() }
}

fn table_note(what: &str, t: &GlibcTable) -> String {
    let rows: Vec<String> = t.rows.iter().map(|r| format!("{} {}", prefix_text(&r.prefix), r.value)).collect();
    format!("glibc {what} ({}): {}", if t.custom { "from gai.conf" } else { "built-in" }, rows.join(", "))
}

fn prefix_text(p: &Ipv6Net) -> String {
    addrsel_policy::c_style(p)
}

fn prefs_bits(prefer: &[SourcePreference]) -> u32 {
    prefer.iter().fold(0, |acc, p| {
        acc | match p {
            SourcePreference::Temporary => PREFER_SRC_TMP,
            SourcePreference::Public => PREFER_SRC_PUBLIC,
            SourcePreference::CareOf => PREFER_SRC_COA,
            SourcePreference::Home => 0,
        }
    })
}

/// One rule's value for one candidate (higher wins), as `ipv6_get_saddr_eval` computes it.
struct Score {
    rule: &'static str,
    what: &'static str,
    value: i64,
    text: String,
}

impl Score {
    fn new(rule: &'static str, what: &'static str, value: i64, text: String) -> Self {
        Score { rule, what, value, text }
    }
}

impl crate::Model for Linux<'_> {
    fn connect(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference]) -> Selected {
        Linux::connect(self, dst, zone, prefer)
    }

    fn connect_on(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference], device: &str) -> Selected {
        Linux::connect_on(self, dst, zone, prefer, Some(device))
    }

    fn bindable(&self, a: IpAddr) -> bool {
        // inet6_bind: ipv6_chk_addr_and_flags bans IFA_F_TENTATIVE (optimistic ones pass).
        net::held(self.s).iter().any(|h| h.ip() == a && !h.addr.unusable())
    }

    fn icmp_time_exceeded(&self, from: &str, to: IpAddr, sender: IpAddr) -> IcmpReply {
        Linux::icmp_time_exceeded(self, from, to, sender)
    }

    fn resolve(&self, name: &str, resolver: Resolver) -> (Result<Vec<IpAddr>, String>, SortTrace) {
        use crate::resolvers::{self, Dest, Libc};
        let input = addrsel_model::plan::hosts_lookup_for(self.s, name, resolver);
        let dests = || -> Vec<Dest> {
            input
                .iter()
                .map(|&dst| {
                    let sel = self.connect(dst, None, &[]);
                    let (src, err) = match sel.result {
                        Ok(s) => (Some(s), None),
                        Err(e) => (None, Some(e)),
                    };
                    Dest { dst, src, err, trace: sel.trace }
                })
                .collect()
        };
        let (order, trace) = match resolver {
            // Go's cgo resolver calls glibc's getaddrinfo.
            Resolver::Glibc | Resolver::GoCgo => return self.getaddrinfo(name),
            Resolver::Musl => resolvers::musl(input.clone(), dests()),
            Resolver::Go => resolvers::go(input.clone(), dests()),
            Resolver::CAres => resolvers::c_ares(input.clone(), dests(), Libc::Glibc),
        };
        (Ok(order), trace)
    }
}
