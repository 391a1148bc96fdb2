//! FreeBSD: the kernel's source selection (`in6_selectsrc` in sys/netinet6/in6_src.c,
//! `in_pcbladdr` in sys/netinet/in_pcb.c with the route's ifa chosen by netlink's
//! `finalize_nhop`) and libc's destination sort (`reorder`/`comp_dst` in
//! lib/libc/net/getaddrinfo.c, sorted with libc's qsort).
//!
//! Modelled from FreeBSD 14.x and main (15.x) sources. No FreeBSD kernel has confirmed these
//! yet; the points that rest on source reading alone are reported as unverified.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use addrsel_model::{Resolver, RouteInstall, RouteType, Scenario, SourcePreference};
use addrsel_policy::{PolicyRow, PolicyTable, ip6addrctl, mapped};

use crate::net::{self, Held, RouteEntry, RouteKind, errno, scope6};
use crate::rules;
use crate::sort::freebsd_qsort;
use crate::trace::*;

pub const UNVERIFIED_MULTICAST: &str = "FreeBSD's source for a multicast destination beyond link scope, with no multicast interface set on the socket, is modelled as a unicast route lookup; not yet confirmed on a FreeBSD kernel";
pub const UNVERIFIED_SOURCE: &str = "FreeBSD's source selection (in6_selectsrc, in_pcbladdr) is modelled from FreeBSD 14/15 sources; no FreeBSD kernel has confirmed it yet";
pub const UNVERIFIED_ROUTE_TYPES: &str =
    "FreeBSD's -blackhole/-reject routes are modelled from in6_selectif and in_pcbladdr (14/15 sources), not observed";
pub const UNVERIFIED_MPATH: &str = "FreeBSD's path for a multipath route (ROUTE_MPATH) is modelled from nhgrp_ctl.c: source selection looks up with flowid 0 and gets nhops[0], the path whose nexthop has the lowest index (the one created first, unless indexes were reused or its weight leaves it no slot); not yet confirmed on a FreeBSD kernel";
pub const UNVERIFIED_FIB: &str = "FreeBSD's FIBs are modelled from route_tables.c, in6_src.c and in_pcb.c (a socket's FIB decides the route; IPv6 candidates are every address, whatever its interface's FIB); not yet confirmed on a FreeBSD kernel";
pub const UNVERIFIED_DOWN: &str = "FreeBSD's down interfaces are modelled from if.c, in.c and nd6.c (IPv4 prefix routes leave, IPv6 addresses turn tentative within a second, ifa_ifwithnet ignores IFF_UP); not yet confirmed on a FreeBSD kernel";
pub const UNVERIFIED_V4_VIA_V6: &str = "FreeBSD's EHOSTUNREACH for an IPv4 route with an IPv6 next hop and no IPv4 address on the egress interface is modelled from in_pcbladdr and netlink's finalize_nhop; not yet confirmed on a FreeBSD kernel";

/// Said of every FreeBSD ICMP prediction.
const UNVERIFIED_ICMP: &str =
    "FreeBSD's ICMP error source (icmp_reflect) is modelled from its source; no FreeBSD kernel has confirmed it yet";

pub struct Freebsd<'s> {
    s: &'s Scenario,
    /// The per-VNET policy table after `ip6addrctl install`.
    policy: PolicyTable,
    /// Which rc.d branch (or scenario key) gave the table.
    policy_origin: String,
    /// `V_in6_ifaddrhead`: IPv6 addresses in the order they were added.
    v6: Vec<Held>,
    /// Every address, with the temporary ones the kernel made after their public ones.
    all: Vec<Held>,
    routes4: Vec<Route4>,
    routes6: Vec<RouteEntry>,
    prefer_tempaddr: bool,
    use_deprecated: bool,
    notes: Vec<String>,
}

/// An IPv4 route and the address its nexthop carries (`nh_ifa`).
struct Route4 {
    entry: RouteEntry,
    /// The nexthop's ifa: an IPv4 address, or an IPv6 one (v4-via-v6 without IPv4 on the
    /// egress interface), which `in_pcbladdr` reads as 0.0.0.0.
    ifa: IpAddr,
    loopback: bool,
    /// Which kernel function chose `ifa`, for explanations.
    chosen_by: String,
}

impl<'s> Freebsd<'s> {
    pub fn new(s: &'s Scenario) -> Self {
        let mut notes = Vec::new();
        let effect = s.policy.freebsd();
        let mut policy = PolicyTable::default();
        match ip6addrctl::parse_conf(&effect.ip6addrctl_conf) {
            Ok(rows) => {
                for r in ip6addrctl::install(&mut policy, &rows) {
                    notes.push(format!("ip6addrctl: the kernel refused {} ({})", r.row.prefix, r.errno));
                }
            }
            Err(e) => notes.push(format!("ip6addrctl install failed ({e}): the policy table stays empty")),
        }
        let sysctl = |key: &str| sysctl_value(s, key);
        // An `autoconf` (mngtmpaddr) address gets its temporary address right after it.
        let made = s.freebsd_kernel_temporaries();
        let mut all: Vec<Held> = Vec::new();
        for h in net::declared_held(s) {
            all.push(h);
            if h.addr.mngtmpaddr {
                let prefix = h.addr.net().trunc();
                all.extend(
                    made.iter()
                        .filter(|(d, t)| *d == h.dev && t.net().trunc() == prefix)
                        .map(|&(dev, addr)| Held { addr, dev }),
                );
            }
        }
        let fib = |dev: usize| fib_of(s, dev);
        let v6: Vec<Held> = all.iter().copied().filter(|h| h.addr.addr.is_ipv6()).collect();
        let mut routes6 = Vec::new();
        for h in &v6 {
            // Local routes go to the interface's FIB only.
            routes6.push(RouteEntry {
                to: ipnet::IpNet::new(h.ip(), 128).expect("/128"),
                via: None,
                dev: h.dev,
                prefsrc: None,
                metric: 0,
                kind: RouteKind::Local,
                rtype: RouteType::Unicast,
                table: fib(h.dev),
                paths: Vec::new(),
                objects: false,
            });
        }
        for h in &v6 {
            let to = h.addr.net().trunc();
            if h.addr.prefix_len < 128 && !routes6.iter().any(|r| r.to == to && r.dev == h.dev) {
                routes6.push(RouteEntry {
                    to,
                    via: None,
                    dev: h.dev,
                    prefsrc: None,
                    metric: 0,
                    kind: RouteKind::Connected,
                    rtype: RouteType::Unicast,
                    table: fib(h.dev),
                    paths: Vec::new(),
                    objects: false,
                });
            }
        }
        let mut routes4: Vec<Route4> = Vec::new();
        for h in all.iter().filter(|h| h.addr.addr.is_ipv4()) {
            // A second copy of an address gets no loopback route (in_localip_more finds the
            // first).
            let to = ipnet::IpNet::new(h.ip(), 32).expect("/32");
            if routes4.iter().any(|r| r.entry.to == to) {
                continue;
            }
            routes4.push(Route4 {
                entry: RouteEntry {
                    to,
                    via: None,
                    dev: h.dev,
                    prefsrc: None,
                    metric: 0,
                    kind: RouteKind::Local,
                    rtype: RouteType::Unicast,
                    table: fib(h.dev),
                    paths: Vec::new(),
                    objects: false,
                },
                ifa: h.ip(),
                loopback: true,
                chosen_by: "the local address itself".into(),
            });
        }
        // One prefix route per prefix and FIB (in_addprefix leaves a prefix another interface
        // already routes to it); a down interface has none (in_ifnet_event removes it, or
        // hands it to an up interface with the same prefix).
        for h in all.iter().filter(|h| {
            h.addr.addr.is_ipv4()
                && h.addr.prefix_len < 32
                && !s.interfaces[h.dev].is_loopback()
                && s.interfaces[h.dev].up
        }) {
            let to = h.addr.net().trunc();
            if !routes4.iter().any(|r| r.entry.to == to && r.entry.table == fib(h.dev)) {
                routes4.push(Route4 {
                    entry: RouteEntry {
                        to,
                        via: None,
                        dev: h.dev,
                        prefsrc: None,
                        metric: 0,
                        kind: RouteKind::Connected,
                        rtype: RouteType::Unicast,
                        table: fib(h.dev),
                        paths: Vec::new(),
                        objects: false,
                    },
                    ifa: h.ip(),
                    loopback: false,
                    chosen_by: "the interface's own prefix route".into(),
                });
            }
        }
        // A VRF's table is a FIB of its own (the plan's `route add -fib N`).
        for r in &s.routes {
            if r.src.is_some() {
                continue;
            }
            let Some(mut entry) = RouteEntry::declared(r, s, 0) else {
                continue;
            };
            entry.table = r.table.and_then(|t| s.freebsd_fib(t));
            if r.to.addr().is_ipv6() {
                routes6.push(entry);
                continue;
            }
            if !r.rtype.is_unicast() {
                // `route add -net X 127.0.0.1 -blackhole|-reject`: the nexthop is lo0.
                let chosen_by = "its gateway 127.0.0.1, on lo0".to_string();
                routes4.push(Route4 { entry, ifa: IpAddr::V4(Ipv4Addr::LOCALHOST), loopback: true, chosen_by });
                continue;
            }
            // finalize_nhop: an address of the egress interface, looked up with the
            // gateway (same family) or the destination (other family), else any address of
            // the gateway's family there.
            let on_dev = |family_v4: bool, key: IpAddr| -> Option<IpAddr> {
                let mine: Vec<&Held> =
                    all.iter().filter(|h| h.dev == entry.dev && h.addr.addr.is_ipv4() == family_v4).collect();
                mine.iter().find(|h| h.addr.net().trunc().contains(&key)).or(mine.first()).map(|h| h.ip())
            };
            let key = match entry.via {
                Some(gw) if gw.is_ipv4() == r.to.addr().is_ipv4() => gw,
                _ => r.to.addr(),
            };
            let dev_name = &s.interfaces[entry.dev].name;
            if let Some(ifa) = on_dev(true, key) {
                let chosen_by = format!("ifaof_ifpforaddr: {ifa}, an IPv4 address of {dev_name}");
                routes4.push(Route4 { entry, ifa, loopback: false, chosen_by });
                continue;
            }
            let gw6 = entry.via.filter(|gw| gw.is_ipv6());
            match (r.install, gw6) {
                (RouteInstall::Rtsock, Some(_)) => {
                    // rt_getifa_family -> in_findlocal: the first IPv4 address of the FIB that
                    // is not 127/8 (a 127/8 one only for a loopback egress: the last one).
                    let loopback_ok = s.interfaces[entry.dev].is_loopback();
                    let v4: Vec<Ipv4Addr> = all
                        .iter()
                        .filter_map(|h| match h.addr.addr {
                            IpAddr::V4(a) => Some(a),
                            IpAddr::V6(_) => None,
                        })
                        .collect();
                    let found = v4
                        .iter()
                        .find(|a| !a.is_loopback())
                        .or_else(|| v4.iter().rev().find(|a| loopback_ok && a.is_loopback()));
                    match found {
                        Some(&a) => routes4.push(Route4 {
                            entry,
                            ifa: IpAddr::V4(a),
                            loopback: false,
                            chosen_by: format!(
                                "routing socket: {dev_name} has no IPv4 address, so rt_getifa_family asks in_findlocal for the FIB's first IPv4 address, {a}"
                            ),
                        }),
                        None => notes.push(format!(
                            "route {}: RTM_ADD fails with ENETUNREACH ({dev_name} has no IPv4 address and in_findlocal finds none in the FIB), so the route does not exist",
                            r.to
                        )),
                    }
                }
                (RouteInstall::Netlink, Some(gw)) => match on_dev(false, gw) {
                    Some(ifa) => routes4.push(Route4 {
                        entry,
                        ifa,
                        loopback: false,
                        chosen_by: format!(
                            "netlink (route(8) since 14.0): {dev_name} has no IPv4 address, so finalize_nhop takes its IPv6 address {ifa} (ifaof_ifpforaddr with the gateway)"
                        ),
                    }),
                    None => notes.push(format!(
                        "route {}: `route add` fails with EINVAL (no address of a usable family on {dev_name}), so the route does not exist",
                        r.to
                    )),
                },
                (_, None) => notes.push(format!(
                    "route {}: `route add` fails with EINVAL (no IPv4 address on {dev_name}), so the route does not exist",
                    r.to
                )),
            }
        }
        Freebsd {
            s,
            policy,
            policy_origin: effect.origin,
            v6,
            all,
            routes4,
            routes6,
            prefer_tempaddr: sysctl("net.inet6.ip6.prefer_tempaddr").unwrap_or(0) != 0,
            use_deprecated: sysctl("net.inet6.ip6.use_deprecated").unwrap_or(1) != 0,
            notes,
        }
    }

    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    fn dev_index(&self, name: &str) -> usize {
        self.s.interfaces.iter().position(|i| i.name == name).expect("a declared interface")
    }

    fn dev_name(&self, i: usize) -> String {
        let name = &self.s.interfaces[i].name;
        if self.s.interfaces[i].is_loopback() { "lo0".into() } else { name.clone() }
    }

    pub fn connect(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference]) -> Selected {
        self.connect_in(dst, zone, prefer, None)
    }

    /// A connect from a socket in FIB `fib` (`SO_SETFIB`; `None` is FIB 0).
    pub fn connect_in(
        &self,
        dst: IpAddr,
        zone: Option<&str>,
        prefer: &[SourcePreference],
        fib: Option<u32>,
    ) -> Selected {
        let mut selected = match dst {
            IpAddr::V4(d) => self.in_pcbladdr(d, fib),
            IpAddr::V6(d) => match d.to_ipv4_mapped() {
                Some(v4) => self.connect_mapped(v4, self.v6only(), fib),
                None => self.in6_selectsrc(d, zone, prefer, fib),
            },
        };
        if fib.is_some() || !self.s.vrfs.is_empty() {
            selected
                .trace
                .steps
                .insert(0, format!("the socket's FIB: {} (SO_SETFIB; a VRF's FIB in the plan)", fib_text(fib)));
            selected.trace.unverified.push(UNVERIFIED_FIB.into());
        }
        if self.s.interfaces.iter().any(|i| !i.up) {
            selected.trace.unverified.push(UNVERIFIED_DOWN.into());
        }
        let wide_multicast = match dst {
            IpAddr::V4(d) => d.is_multicast(),
            IpAddr::V6(d) => d.is_multicast() && scope6(&d) > 2,
        };
        if wide_multicast {
            selected.trace.unverified.push(UNVERIFIED_MULTICAST.into());
        }
        selected.trace.unverified.push(UNVERIFIED_SOURCE.into());
        selected
    }

    /// `net.inet6.ip6.v6only`, which new AF_INET6 sockets take as `IPV6_V6ONLY` (default 1).
    fn v6only(&self) -> bool {
        self.sysctl("net.inet6.ip6.v6only") != Some(0)
    }

    fn sysctl(&self, key: &str) -> Option<i64> {
        sysctl_value(self.s, key)
    }

    /// A UDP connect to `::ffff:a.b.c.d` on an AF_INET6 socket (`udp6_connect`): refused
    /// with EINVAL while `IPV6_V6ONLY` is set; otherwise IPv4 selection (`in_pcbladdr`), and
    /// `getsockname` gives the source back as `::ffff:<IPv4 source>` (`in6_mapped_sockaddr`).
    fn connect_mapped(&self, dst: Ipv4Addr, v6only: bool, fib: Option<u32>) -> Selected {
        if v6only {
            let mut trace = SourceTrace::default();
            trace.steps.push(format!(
                "udp6_connect: ::ffff:{dst} is IPv4-mapped and the socket is IPV6_V6ONLY (net.inet6.ip6.v6only=1, the default): EINVAL"
            ));
            return Selected { result: Err(errno::EINVAL), trace };
        }
        let mut selected = self.in_pcbladdr(dst, fib);
        selected.trace.steps.insert(
            0,
            format!("udp6_connect: ::ffff:{dst} is IPv4-mapped and IPV6_V6ONLY is off: IPv4 source selection"),
        );
        if let Ok(IpAddr::V4(src)) = selected.result {
            selected.result = Ok(IpAddr::V6(src.to_ipv6_mapped()));
            selected.trace.steps.push(format!("getsockname gives it back IPv4-mapped: ::ffff:{src}"));
        }
        selected
    }

    /// The IPv4 routes of one FIB.
    fn routes4_in(&self, fib: Option<u32>) -> Vec<RouteEntry> {
        self.routes4.iter().filter(|r| r.entry.table == fib).map(|r| r.entry.clone()).collect()
    }

    fn in_pcbladdr(&self, dst: Ipv4Addr, fib: Option<u32>) -> Selected {
        let mut trace = SourceTrace::default();
        let entries = self.routes4_in(fib);
        let Some(hit) = net::lookup(&entries, IpAddr::V4(dst), None) else {
            // ifa_ifwithdstaddr, then ifa_ifwithnet: an address of an interface in this FIB
            // whose subnet holds the destination, the longest mask first; neither looks at
            // IFF_UP.
            let mut onlink: Vec<&Held> = self
                .all
                .iter()
                .filter(|h| {
                    h.addr.addr.is_ipv4()
                        && fib_of(self.s, h.dev) == fib
                        && h.addr.net().trunc().contains(&IpAddr::V4(dst))
                })
                .collect();
            onlink.sort_by_key(|h| std::cmp::Reverse(h.addr.prefix_len));
            if let Some(h) = onlink.first() {
                let down = if self.s.interfaces[h.dev].up { "" } else { ", which is down" };
                trace.steps.push(format!(
                    "fib4_lookup({dst}) finds no route in {}; ifa_ifwithnet finds {dst} in {} on {}{down}: the source is {}",
                    fib_text(fib),
                    h.addr.net().trunc(),
                    self.dev_name(h.dev),
                    h.ip()
                ));
                return Selected { result: Ok(h.ip()), trace };
            }
            trace.steps.push(format!(
                "fib4_lookup({dst}) finds no route in {} and no interface subnet holds it",
                fib_text(fib)
            ));
            return Selected { result: Err(errno::ENETUNREACH), trace };
        };
        let route = self.routes4.iter().find(|r| &r.entry == hit).expect("same entry");
        trace.steps.push(format!("fib4_lookup: {}", route.entry.describe(self.s)));
        if !hit.rtype.is_unicast() {
            // fib4_lookup does not look at NHF_BLACKHOLE/NHF_REJECT; in_pcbladdr sees an lo0
            // nexthop and wants the destination's own interface (ifa_ifwithdstaddr,
            // ifa_ifwithnet, ifa_ifwithaddr).
            trace.unverified.push(UNVERIFIED_ROUTE_TYPES.into());
            let own = self.s.addresses().find(|(i, a)| {
                !i.is_loopback()
                    && fib_of(self.s, self.dev_index(&i.name)) == fib
                    && a.addr.is_ipv4()
                    && (a.addr == IpAddr::V4(dst) || a.net().trunc().contains(&IpAddr::V4(dst)))
            });
            return match own {
                Some((i, a)) => {
                    trace.steps.push(format!(
                        "the nexthop is lo0: in_pcbladdr takes the destination's interface {} and its address {}",
                        i.name, a.addr
                    ));
                    Selected { result: Ok(a.addr), trace }
                }
                None => {
                    trace.steps.push("the nexthop is lo0 (a -blackhole/-reject route): in_pcbladdr finds no interface of the destination's and fails with ENETUNREACH".into());
                    Selected { result: Err(errno::ENETUNREACH), trace }
                }
            };
        }
        if route.loopback {
            trace.steps.push(format!(
                "the route goes to lo0 (own address): the source is the matching local address {}",
                route.ifa
            ));
            return Selected { result: Ok(route.ifa), trace };
        }
        if hit.paths.len() > 1 {
            trace.steps.push(format!(
                "multipath: the lookup has no flowid yet (0), so it takes nhops[0] of the group, the first path ({})",
                self.dev_name(hit.dev)
            ));
            trace.unverified.push(UNVERIFIED_MPATH.into());
        }
        trace.steps.push(format!("the route's nexthop address was chosen by {}", route.chosen_by));
        match route.ifa {
            IpAddr::V4(a) => {
                trace.steps.push(format!("in_pcbladdr: the source is the route's ifa, {a}"));
                Selected { result: Ok(IpAddr::V4(a)), trace }
            }
            IpAddr::V6(a) => {
                trace.steps.push(format!(
                    "the route's ifa is the IPv6 address {a} (the egress interface has no IPv4 address); in_pcbladdr reads it as 0.0.0.0 and fails"
                ));
                trace.unverified.push(UNVERIFIED_V4_VIA_V6.into());
                Selected { result: Err(errno::EHOSTUNREACH), trace }
            }
        }
    }

    /// `ip_forward` meeting TTL 1, then `icmp_reflect` choosing the source: the address the
    /// packet was sent to if it is ours, the receiving interface's first IPv4 address with
    /// `net.inet.icmp.reply_from_interface`, else the route back's nexthop address, read as
    /// IPv4 whatever its family (as in_pcbladdr does).
    pub fn icmp_time_exceeded(&self, from: &str, to: IpAddr, sender: IpAddr) -> IcmpReply {
        let mut trace = SourceTrace::default();
        let (IpAddr::V4(_), IpAddr::V4(sender)) = (to, sender) else {
            return IcmpReply {
                result: Err("FreeBSD's ICMPv6 error source (icmp6_reflect) is not modelled".into()),
                trace,
            };
        };
        trace.unverified.push(UNVERIFIED_ICMP.into());
        if self.sysctl("net.inet.ip.forwarding") != Some(1) {
            trace.steps.push("net.inet.ip.forwarding is 0: ip_input drops the packet, no ICMP error is sent".into());
            return IcmpReply { result: Ok(None), trace };
        }
        if self.sysctl("net.inet.icmp.reply_src").is_some() {
            return IcmpReply { result: Err("net.inet.icmp.reply_src is not modelled".into()), trace };
        }
        trace.steps.push("ip_forward: TTL 1 runs out: icmp_error(ICMP_TIMXCEED), icmp_reflect picks the source".into());
        let message = "time exceeded".to_string();
        if self.sysctl("net.inet.icmp.reply_from_interface") == Some(1) {
            let first = self.s.interface(from).and_then(|i| {
                i.addresses.iter().find_map(|a| match a.addr {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
            });
            match first {
                Some(a) => {
                    trace.steps.push(format!("reply_from_interface: {from}'s first IPv4 address, {a}"));
                    return IcmpReply { result: Ok(Some((message, IpAddr::V4(a)))), trace };
                }
                None => {
                    trace.steps.push(format!("reply_from_interface: {from} has no IPv4 address, so on to the route"))
                }
            }
        }
        let entries = self.routes4_in(None);
        let Some(hit) = net::lookup(&entries, IpAddr::V4(sender), None) else {
            trace
                .steps
                .push(format!("fib4_lookup({sender}) finds no route back: no ICMP error is sent (icps_noroute)"));
            return IcmpReply { result: Ok(None), trace };
        };
        let route = self.routes4.iter().find(|r| &r.entry == hit).expect("same entry");
        trace.steps.push(format!("fib4_lookup back to {sender}: {}", route.entry.describe(self.s)));
        trace.steps.push(format!("the route's nexthop address was chosen by {}", route.chosen_by));
        let source = match route.ifa {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => {
                trace.steps.push(format!("the nexthop's address is the IPv6 {a}, read as IPv4: 0.0.0.0"));
                Ipv4Addr::UNSPECIFIED
            }
        };
        IcmpReply { result: Ok(Some((message, IpAddr::V4(source)))), trace }
    }

    /// Outgoing interface for an IPv6 destination (`in6_selectif`): `Err` is the errno.
    fn selectif(
        &self,
        dst: Ipv6Addr,
        zone: Option<usize>,
        fib: Option<u32>,
        trace: &mut SourceTrace,
    ) -> Result<usize, &'static str> {
        if dst.is_unicast_link_local() || (dst.is_multicast() && scope6(&dst) <= 2) {
            // fib6_lookup answers link-local destinations from the zone alone.
            return match zone {
                Some(z) => {
                    trace
                        .steps
                        .push(format!("link-local destination: outgoing interface {} (its zone)", self.dev_name(z)));
                    Ok(z)
                }
                None => {
                    trace.steps.push("link-local destination without a zone: no route".into());
                    trace.unverified.push("FreeBSD's error for a link-local destination without a scope id is derived from the source, not observed".into());
                    Err(errno::EHOSTUNREACH)
                }
            };
        }
        let routes: Vec<RouteEntry> = self.routes6.iter().filter(|r| r.table == fib).cloned().collect();
        match net::lookup(&routes, IpAddr::V6(dst), None) {
            Some(r) if !r.rtype.is_unicast() => {
                trace.steps.push(format!("fib6_lookup: {}", r.describe(self.s)));
                trace.unverified.push(UNVERIFIED_ROUTE_TYPES.into());
                let host = r.to.prefix_len() == 128;
                trace.steps.push(format!(
                    "in6_selectif: a -blackhole/-reject route is not used: {} for a {} route",
                    if host { "EHOSTUNREACH" } else { "ENETUNREACH" },
                    if host { "host" } else { "network" }
                ));
                Err(if host { errno::EHOSTUNREACH } else { errno::ENETUNREACH })
            }
            Some(r) => {
                trace.steps.push(format!("fib6_lookup: {}", r.describe(self.s)));
                if r.paths.len() > 1 {
                    trace.steps.push(format!(
                        "multipath: the lookup has no flowid yet (0), so it takes nhops[0] of the group, the first path ({})",
                        self.dev_name(r.dev)
                    ));
                    trace.unverified.push(UNVERIFIED_MPATH.into());
                }
                Ok(r.dev)
            }
            None => {
                trace.steps.push(format!("fib6_lookup({dst}): no route in {}", fib_text(fib)));
                Err(errno::EHOSTUNREACH)
            }
        }
    }

    fn in6_selectsrc(
        &self,
        dst: Ipv6Addr,
        zone: Option<&str>,
        prefer: &[SourcePreference],
        fib: Option<u32>,
    ) -> Selected {
        let mut trace = SourceTrace::default();
        let zone = zone.and_then(|z| self.s.interfaces.iter().position(|i| i.name == z));
        let dst = if dst.is_unspecified() { Ipv6Addr::LOCALHOST } else { dst };
        let ifp = match self.selectif(dst, zone, fib, &mut trace) {
            Ok(i) => i,
            Err(e) => {
                return Selected { result: Err(e), trace };
            }
        };
        let dst_scope = scope6(&dst);
        let dst_policy = ip6addrctl::lookup(&self.policy, &dst);
        let dst_label = dst_policy.map(|p| p.label);
        let prefer_tmp =
            match (prefer.contains(&SourcePreference::Temporary), prefer.contains(&SourcePreference::Public)) {
                (true, _) => true,
                (_, true) => false,
                _ => self.prefer_tempaddr,
            };
        trace.steps.push(format!(
            "destination scope {dst_scope}, policy label {}; candidates: every IPv6 address in the order added, in the destination's zone",
            label_text(dst_label)
        ));
        let mut best: Option<&Held> = None;
        for h in &self.v6 {
            let a = h.v6().expect("v6");
            let label = ip6addrctl::lookup(&self.policy, &a).map(|p| p.label);
            let mut cand = Candidate {
                addr: h.ip(),
                dev: self.dev_name(h.dev),
                attrs: format!(
                    "/{} scope {}, policy label {}{}",
                    h.addr.prefix_len,
                    scope6(&a),
                    label_text(label),
                    h.flags()
                ),
                skipped: None,
            };
            let lo = self.s.interfaces[ifp].is_loopback();
            if (dst.is_loopback() || scope6(&dst) <= 2) && h.dev != ifp {
                cand.skipped = Some("outside the destination's zone".into());
            } else if (a.is_loopback() && !lo) || (a.is_unicast_link_local() && h.dev != ifp) {
                cand.skipped = Some("its zone differs from the outgoing interface's".into());
            } else if h.addr.unusable() || h.addr.dad == addrsel_model::Dad::Optimistic {
                // IN6_IFF_NOTREADY (tentative or duplicated); FreeBSD has no optimistic DAD.
                cand.skipped = Some("IN6_IFF_NOTREADY: DAD has not succeeded".into());
            } else if !self.s.interfaces[h.dev].up {
                // nd6_timer marks every address of a down interface tentative (for a DAD
                // when it comes back up), so rule 8 (alive interfaces) never gets to decide.
                cand.skipped = Some("IN6_IFF_NOTREADY: its interface is down, so nd6_timer made it tentative".into());
            } else if h.addr.deprecated && !self.use_deprecated {
                cand.skipped = Some("deprecated and net.inet6.ip6.use_deprecated=0".into());
            }
            let skipped = cand.skipped.is_some();
            trace.candidates.push(cand);
            if skipped {
                continue;
            }
            if a == dst {
                trace.duels.push(Duel {
                    best: best.map_or(h.ip(), |b| b.ip()),
                    challenger: h.ip(),
                    decision: Some(Decision::new(Side::Right, rules::source(1), "the destination itself")),
                });
                best = Some(h);
                break;
            }
            let Some(b) = best else {
                best = Some(h);
                continue;
            };
            let decision = self.compare(b, h, dst, dst_scope, dst_label, ifp, prefer_tmp);
            trace.duels.push(Duel { best: b.ip(), challenger: h.ip(), decision: decision.clone() });
            if decision.is_some_and(|d| d.winner == Side::Right) {
                best = Some(h);
            }
        }
        match best {
            Some(h) => Selected { result: Ok(h.ip()), trace },
            None => {
                trace.steps.push("no candidate: EADDRNOTAVAIL".into());
                Selected { result: Err(errno::EADDRNOTAVAIL), trace }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compare(
        &self,
        best: &Held,
        new: &Held,
        dst: Ipv6Addr,
        dst_scope: u8,
        dst_label: Option<i32>,
        ifp: usize,
        prefer_tmp: bool,
    ) -> Option<Decision> {
        let (b, n) = (best.v6().expect("v6"), new.v6().expect("v6"));
        let (bs, ns) = (scope6(&b), scope6(&n));
        let rule2 = rules::source(2);
        let detail = format!("scope {bs} vs {ns}, destination {dst_scope}");
        if bs < ns {
            return Some(Decision::new(if bs < dst_scope { Side::Right } else { Side::Left }, rule2, detail));
        }
        if ns < bs {
            return Some(Decision::new(if ns < dst_scope { Side::Left } else { Side::Right }, rule2, detail));
        }
        if let Some(d) = Decision::prefer(
            !best.addr.deprecated && new.addr.deprecated,
            best.addr.deprecated && !new.addr.deprecated,
            rules::source(3),
            format!("deprecated {} vs {}", best.addr.deprecated, new.addr.deprecated),
        ) {
            return Some(d);
        }
        if let Some(d) = Decision::prefer(
            best.dev == ifp && new.dev != ifp,
            best.dev != ifp && new.dev == ifp,
            rules::source(5),
            format!("on {} vs {}, outgoing {}", self.dev_name(best.dev), self.dev_name(new.dev), self.dev_name(ifp)),
        ) {
            return Some(d);
        }
        if let Some(dl) = dst_label {
            let bl = ip6addrctl::lookup(&self.policy, &b).map(|p| p.label);
            let nl = ip6addrctl::lookup(&self.policy, &n).map(|p| p.label);
            if let Some(d) = Decision::prefer(
                bl == Some(dl) && nl != Some(dl),
                bl != Some(dl) && nl == Some(dl),
                rules::source(6),
                format!("label {} vs {}, destination {dl}", label_text(bl), label_text(nl)),
            ) {
                return Some(d);
            }
        }
        let (bt, nt) = (best.addr.temporary, new.addr.temporary);
        if bt != nt {
            let new_wins = nt == prefer_tmp;
            return Some(Decision::new(
                if new_wins { Side::Right } else { Side::Left },
                rules::source(7),
                format!("temporary {bt} vs {nt}, prefer temporary {prefer_tmp}"),
            ));
        }
        if let Some(d) = Decision::prefer(
            best.addr.prefer_source && !new.addr.prefer_source,
            !best.addr.prefer_source && new.addr.prefer_source,
            rules::FREEBSD_PREFER_SOURCE,
            format!("prefer_source {} vs {}", best.addr.prefer_source, new.addr.prefer_source),
        ) {
            return Some(d);
        }
        let (bm, nm) = (addrsel_policy::common_prefix_len(&b, &dst), addrsel_policy::common_prefix_len(&n, &dst));
        Decision::higher(bm, nm, rules::source(8), "common prefix (FreeBSD's rule 14: all 128 bits)")
    }

    // -----------------------------------------------------------------------------------
    // libc getaddrinfo

    pub fn getaddrinfo(&self, name: &str) -> (Vec<IpAddr>, SortTrace) {
        let hosts: Vec<IpAddr> = addrsel_model::plan::hosts_lookup(self.s, name);
        // explore[] lists IPv6 before IPv4, so every IPv6 result comes first.
        let input: Vec<IpAddr> =
            hosts.iter().filter(|a| a.is_ipv6()).chain(hosts.iter().filter(|a| a.is_ipv4())).copied().collect();
        let mut trace = SortTrace { input: input.clone(), ..Default::default() };
        trace.notes.push(format!(
            "kernel policy table ({}): {}",
            self.policy_origin,
            if self.policy.rows.is_empty() {
                "empty".to_string()
            } else {
                self.policy
                    .rows
                    .iter()
                    .map(|r| format!("{} {} {}", addrsel_policy::c_style(&r.prefix), r.precedence, r.label))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        trace.unverified.push(
            "FreeBSD's getaddrinfo ordering is modelled from lib/libc/net/getaddrinfo.c; not yet confirmed on FreeBSD"
                .into(),
        );
        if input.len() < 2 {
            trace.unsorted_because = Some("fewer than two addresses".into());
            return (input, trace);
        }
        if self.policy.rows.is_empty() {
            trace.unsorted_because =
                Some("the kernel policy table is empty, so libc does not sort (IPv6 results first, then IPv4)".into());
            return (input, trace);
        }
        let entries: Vec<Aio> = input
            .iter()
            .enumerate()
            .map(|(seq, &dst)| {
                // set_source() clears IPV6_V6ONLY for a v4-mapped destination.
                let sel = match dst {
                    IpAddr::V6(d) if d.to_ipv4_mapped().is_some() => {
                        let mut sel = self.connect_mapped(d.to_ipv4_mapped().expect("mapped"), false, None);
                        sel.trace.unverified.push(UNVERIFIED_SOURCE.into());
                        sel
                    }
                    _ => self.connect(dst, None, &[]),
                };
                let (src, err) = match sel.result {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some(e)),
                };
                Aio {
                    dst,
                    src,
                    err,
                    dstscope: libc_scope(&dst),
                    srcscope: src.map_or(-1, |s| libc_scope(&s)),
                    dstpolicy: ip6addrctl::lookup(&self.policy, &mapped(&dst)).copied(),
                    srcpolicy: src.and_then(|s| ip6addrctl::lookup(&self.policy, &mapped(&s)).copied()),
                    matchlen: src.map_or(0, |s| net::common_bits(&s, &dst)),
                    seq,
                    trace: sel.trace,
                }
            })
            .collect();
        for e in &entries {
            let pol = |p: &Option<PolicyRow>| {
                p.map_or("no policy".to_string(), |p| format!("precedence {}, label {}", p.precedence, p.label))
            };
            trace.entries.push(DestInfo {
                dst: e.dst,
                source: e.src,
                source_error: e.err.map(String::from),
                attrs: format!(
                    "scope {}, {}{}",
                    e.dstscope,
                    pol(&e.dstpolicy),
                    match e.src {
                        Some(_) => format!(
                            "; source scope {}, {}, match length {}",
                            e.srcscope,
                            pol(&e.srcpolicy),
                            e.matchlen
                        ),
                        None => String::new(),
                    }
                ),
                source_trace: e.trace.clone(),
            });
        }
        let mut order: Vec<usize> = (0..entries.len()).collect();
        freebsd_qsort(&mut order, &mut |a, b| comp_dst(&entries[*a], &entries[*b]).0);
        for w in order.windows(2) {
            trace.neighbours.push((entries[w[0]].dst, entries[w[1]].dst, comp_dst(&entries[w[0]], &entries[w[1]]).1));
        }
        (order.iter().map(|&i| entries[i].dst).collect(), trace)
    }
}

/// The FIB of an interface (`ifconfig IF fib N` for a VRF's interfaces); `None` is FIB 0.
fn fib_of(s: &Scenario, dev: usize) -> Option<u32> {
    s.vrf_of(&s.interfaces[dev].name).and_then(|v| s.freebsd_fib(v.table))
}

fn fib_text(fib: Option<u32>) -> String {
    format!("FIB {}", fib.unwrap_or(0))
}

/// The last value a scenario sets for a FreeBSD sysctl.
fn sysctl_value(s: &Scenario, key: &str) -> Option<i64> {
    s.sysctl.freebsd.iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| v.parse::<i64>().ok())
}

struct Aio {
    dst: IpAddr,
    src: Option<IpAddr>,
    err: Option<&'static str>,
    dstscope: i32,
    srcscope: i32,
    dstpolicy: Option<PolicyRow>,
    srcpolicy: Option<PolicyRow>,
    matchlen: u32,
    seq: usize,
    trace: SourceTrace,
}

/// libc's `gai_addr2scopetype`, which differs from the kernel's: ::1 is node-local (1), the
/// multicast scope is read from the wrong byte, RFC 1918 is global.
fn libc_scope(a: &IpAddr) -> i32 {
    match a {
        IpAddr::V6(v6) => {
            let o = v6.octets();
            if v6.is_multicast() {
                i32::from(o[2] & 0x0f)
            } else if v6.is_unicast_link_local() {
                2
            } else if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
                5
            } else if v6.is_loopback() {
                1
            } else {
                14
            }
        }
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if (o[0], o[1]) == (169, 254) || o[0] == 127 { 2 } else { 14 }
        }
    }
}

fn comp_dst(d1: &Aio, d2: &Aio) -> (Ordering, Option<Decision>) {
    use Ordering::*;
    let done = |d: Decision| (if d.winner == Side::Left { Less } else { Greater }, Some(d));
    let (u1, u2) = (d1.src.is_some(), d2.src.is_some());
    if let Some(d) = Decision::prefer(u1 && !u2, !u1 && u2, rules::destination(1), format!("usable {u1} vs {u2}")) {
        return done(d);
    }
    let m1 = d1.dstscope == d1.srcscope;
    let m2 = d2.dstscope == d2.srcscope;
    if let Some(d) = Decision::prefer(
        m1 && !m2,
        !m1 && m2,
        rules::destination(2),
        format!("destination/source scope {}/{} vs {}/{}", d1.dstscope, d1.srcscope, d2.dstscope, d2.srcscope),
    ) {
        return done(d);
    }
    // Rule 3 never fires: set_source() asks for the flags with SIOCGIFAFLAG_IN6 on an
    // `in6_ifreq` whose interface name it never fills in, so the ioctl fails with ENXIO and
    // the flags stay 0 (and it would ask about the destination's address, not the source's).
    let label_match = |a: &Aio| matches!((a.dstpolicy, a.srcpolicy), (Some(d), Some(s)) if d.label == s.label);
    let (l1, l2) = (label_match(d1), label_match(d2));
    if let Some(d) = Decision::prefer(l1 && !l2, !l1 && l2, rules::destination(5), format!("labels match {l1} vs {l2}"))
    {
        return done(d);
    }
    let p1 = d1.dstpolicy.map(|p| p.precedence);
    let p2 = d2.dstpolicy.map(|p| p.precedence);
    let detail = format!(
        "precedence {} vs {}",
        p1.map_or("none".into(), |p| p.to_string()),
        p2.map_or("none".into(), |p| p.to_string())
    );
    if let Some(d) = Decision::prefer(
        p1.is_some() && (p2.is_none() || p1 > p2),
        p2.is_some() && (p1.is_none() || p2 > p1),
        rules::destination(6),
        detail,
    ) {
        return done(d);
    }
    if let Some(d) = Decision::prefer(
        d1.dstscope >= 0 && d1.dstscope < d2.dstscope,
        d2.dstscope >= 0 && d2.dstscope < d1.dstscope,
        rules::destination(8),
        format!("destination scope {} vs {}", d1.dstscope, d2.dstscope),
    ) {
        return done(d);
    }
    if d1.dst.is_ipv4() == d2.dst.is_ipv4()
        && d1.dst.is_ipv6()
        && let Some(d) = Decision::higher(
            d1.matchlen,
            d2.matchlen,
            rules::destination(9),
            "match length (IPv6 pairs only, all 128 bits)",
        )
    {
        return done(d);
    }
    done(Decision::new(
        if d2.seq < d1.seq { Side::Right } else { Side::Left },
        rules::destination(10),
        format!("positions {} and {}", d1.seq + 1, d2.seq + 1),
    ))
}

fn label_text(l: Option<i32>) -> String {
    l.map_or("none (-1)".into(), |l| l.to_string())
}

impl crate::Model for Freebsd<'_> {
    fn connect(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference]) -> Selected {
        Freebsd::connect(self, dst, zone, prefer)
    }

    fn connect_on(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference], device: &str) -> Selected {
        if let Some(vrf) = self.s.vrf(device) {
            // The plan puts a VRF's socket in the VRF's FIB (SO_SETFIB).
            let fib = self.s.freebsd_fib(vrf.table);
            return self.connect_in(dst, zone, prefer, fib);
        }
        let mut sel = Freebsd::connect(self, dst, zone, prefer);
        sel.trace.steps.insert(
            0,
            format!("FreeBSD has no SO_BINDTODEVICE ({device}): selection as without it; the plan reports the probe unsupported"),
        );
        sel
    }

    /// in_pcbbind/in6_pcbbind: an address of this host, not IN6_IFF_NOTREADY (tentative,
    /// duplicated, or IPv6 on a down interface).
    fn bindable(&self, a: IpAddr) -> bool {
        self.all.iter().any(|h| h.ip() == a && h.addr.dad.is_done() && (a.is_ipv4() || self.s.interfaces[h.dev].up))
    }

    fn icmp_time_exceeded(&self, from: &str, to: IpAddr, sender: IpAddr) -> IcmpReply {
        Freebsd::icmp_time_exceeded(self, from, to, sender)
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
            Resolver::Glibc | Resolver::GoCgo => self.getaddrinfo(name),
            Resolver::Musl => return (Err("musl does not run on FreeBSD".into()), SortTrace::default()),
            Resolver::Go => resolvers::go(input.clone(), dests()),
            Resolver::CAres => resolvers::c_ares(input.clone(), dests(), Libc::Freebsd),
        };
        (Ok(order), trace)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}
