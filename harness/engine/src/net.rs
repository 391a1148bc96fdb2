//! Building blocks every profile shares: addresses with their interface, route tables and
//! longest-prefix lookup, scopes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use addrsel_model::{Address, Route, RouteType, Scenario};
use ipnet::IpNet;

/// An address and the interface (index into `Scenario::interfaces`) that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub addr: Address,
    pub dev: usize,
}

impl Held {
    pub fn ip(&self) -> IpAddr {
        self.addr.addr
    }

    pub fn v6(&self) -> Option<Ipv6Addr> {
        match self.addr.addr {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }

    pub fn flags(&self) -> String {
        let f = self.addr.flags();
        if f.is_empty() { String::new() } else { format!(", {}", f.join(", ")) }
    }
}

/// Every declared address in declaration order (lo's implicit ones first).
pub fn declared_held(s: &Scenario) -> Vec<Held> {
    s.interfaces
        .iter()
        .enumerate()
        .flat_map(|(dev, i)| i.addresses.iter().map(move |a| Held { addr: *a, dev }))
        .collect()
}

/// Every address a Linux host has: the declared ones, then the temporary addresses the
/// kernel made from `mngtmpaddr` ones (added after them, so newer).
pub fn held(s: &Scenario) -> Vec<Held> {
    let mut out = declared_held(s);
    out.extend(s.kernel_temporaries().into_iter().map(|(dev, addr)| Held { addr, dev }));
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// The destination is one of this host's addresses.
    Local,
    /// The prefix route the kernel adds for an address.
    Connected,
    /// A route from the scenario.
    Declared,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub to: IpNet,
    pub via: Option<IpAddr>,
    pub dev: usize,
    /// Route `src` (Linux) or the address a connected route belongs to.
    pub prefsrc: Option<IpAddr>,
    pub metric: u32,
    pub kind: RouteKind,
    /// A declared route's type; the kernel's own routes are unicast.
    pub rtype: RouteType,
    /// Linux: the VRF table the route is in (a declared `table`, or the kernel's local and
    /// prefix routes of an enslaved interface); `None` is local + main.
    pub table: Option<u32>,
    /// A multipath route's paths (next hop, device), when it has more than one; `via` and
    /// `dev` are then the first path's.
    pub paths: Vec<(Option<IpAddr>, usize)>,
    /// Linux: the paths are `ip nexthop` objects in a group (`nhid`).
    pub objects: bool,
}

impl RouteEntry {
    pub fn declared(r: &Route, s: &Scenario, default_metric: u32) -> Option<RouteEntry> {
        let path_dev = |via: Option<IpAddr>, dev: &Option<String>| match (dev, via) {
            (Some(d), _) => s.interfaces.iter().position(|i| &i.name == d),
            (None, Some(via)) => connected_dev(s, via),
            (None, None) => None,
        };
        let paths: Vec<(Option<IpAddr>, usize)> =
            r.nexthops.iter().filter_map(|nh| Some((nh.via, path_dev(nh.via, &nh.dev)?))).collect();
        if let Some(&(via, dev)) = paths.first() {
            return Some(RouteEntry {
                to: r.to,
                via,
                dev,
                prefsrc: r.src,
                metric: r.metric.unwrap_or(default_metric),
                kind: RouteKind::Declared,
                rtype: r.rtype,
                table: r.table,
                paths,
                objects: r.nexthop_objects,
            });
        }
        let dev = match (&r.dev, r.via) {
            (Some(d), _) => s.interfaces.iter().position(|i| &i.name == d)?,
            (None, Some(via)) => connected_dev(s, via)?,
            // blackhole, unreachable, prohibit and throw routes sit on lo (`dev lo` in `ip -6 route`).
            (None, None) if !r.rtype.is_unicast() => s.interfaces.iter().position(|i| i.is_loopback())?,
            (None, None) => return None,
        };
        Some(RouteEntry {
            to: r.to,
            via: r.via,
            dev,
            prefsrc: r.src,
            metric: r.metric.unwrap_or(default_metric),
            kind: RouteKind::Declared,
            rtype: r.rtype,
            table: r.table,
            paths: Vec::new(),
            objects: false,
        })
    }

    pub fn describe(&self, s: &Scenario) -> String {
        let dev = &s.interfaces[self.dev].name;
        let kind = match self.kind {
            RouteKind::Local => "local route",
            RouteKind::Connected => "connected route",
            RouteKind::Declared => "route",
        };
        let mut out = format!("{kind} {}", self.to);
        let table = self.table.map_or(String::new(), |t| format!(" table {t}"));
        if !self.rtype.is_unicast() {
            return format!("{} route {}{table}", self.rtype.word(), self.to);
        }
        if self.paths.len() > 1 {
            for (via, d) in &self.paths {
                out.push_str(" nexthop");
                if let Some(v) = via {
                    out.push_str(&format!(" via {v}"));
                }
                out.push_str(&format!(" dev {}", s.interfaces[*d].name));
            }
            if self.objects {
                out.push_str(" (nexthop group)");
            }
        } else {
            if let Some(v) = self.via {
                out.push_str(&format!(" via {v}"));
            }
            out.push_str(&format!(" dev {dev}"));
        }
        if let Some(p) = self.prefsrc {
            out.push_str(&format!(" src {p}"));
        }
        out.push_str(&table);
        out
    }
}

/// The interface whose subnet holds `addr` (for a gateway given without `dev`).
fn connected_dev(s: &Scenario, addr: IpAddr) -> Option<usize> {
    s.interfaces
        .iter()
        .position(|i| i.addresses.iter().any(|a| a.net().trunc().contains(&addr) && a.prefix_len < max_len(addr)))
}

pub fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// Longest prefix first, then the lowest metric, then the earliest entry. `oif` restricts
/// the lookup to routes through that interface.
pub fn lookup(routes: &[RouteEntry], dst: IpAddr, oif: Option<usize>) -> Option<&RouteEntry> {
    let mut best: Option<&RouteEntry> = None;
    for r in routes {
        if !r.to.contains(&dst) || oif.is_some_and(|o| o != r.dev) {
            continue;
        }
        let better = match best {
            None => true,
            Some(b) => {
                (r.to.prefix_len(), std::cmp::Reverse(r.metric)) > (b.to.prefix_len(), std::cmp::Reverse(b.metric))
            }
        };
        if better {
            best = Some(r);
        }
    }
    best
}

/// RFC 4007 scope of an IPv6 address as kernels and RFC 6724 section 3.1 define it:
/// multicast scope nibble; link-local and loopback 2; site-local 5; everything else 14.
pub fn scope6(a: &Ipv6Addr) -> u8 {
    let o = a.octets();
    if o[0] == 0xff {
        o[1] & 0x0f
    } else if a.is_unicast_link_local() || a.is_loopback() {
        2
    } else if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
        5
    } else {
        14
    }
}

/// RFC 6724 section 3.2: 127/8 and 169.254/16 are link-local, all other IPv4 global.
pub fn scope4_rfc(a: &Ipv4Addr) -> u8 {
    if a.is_loopback() || a.is_link_local() { 2 } else { 14 }
}

/// RFC 6724 scope of any address (IPv4 per section 3.2).
pub fn scope_rfc(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(v4) => scope4_rfc(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => scope4_rfc(&v4),
            None => scope6(v6),
        },
    }
}

/// Common leading bits of two addresses of the same family (IPv4 as 32 bits).
pub fn common_bits(a: &IpAddr, b: &IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => (x.to_bits() ^ y.to_bits()).leading_zeros(),
        (IpAddr::V6(x), IpAddr::V6(y)) => (x.to_bits() ^ y.to_bits()).leading_zeros(),
        _ => 0,
    }
}

/// errno names the profiles report.
pub mod errno {
    pub const ENETUNREACH: &str = "ENETUNREACH";
    pub const EHOSTUNREACH: &str = "EHOSTUNREACH";
    pub const EADDRNOTAVAIL: &str = "EADDRNOTAVAIL";
    pub const EINVAL: &str = "EINVAL";
    pub const EACCES: &str = "EACCES";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Go's TestRFC6724ClassifyScope (src/net/addrselect_test.go), plus IPv4 per RFC 6724
    /// section 3.2.
    #[test]
    fn scopes() {
        for (addr, want) in [
            ("::1", 2),
            ("fe80::1", 2),
            ("fec0::1", 5),
            ("2001:db8::1", 14),
            ("fd00::1", 14),
            ("ff01::1", 1),
            ("ff02::1", 2),
            ("ff05::1:3", 5),
            ("ff08::1", 8),
            ("ff0e::1", 14),
            ("127.0.0.1", 2),
            ("169.254.1.1", 2),
            ("10.0.0.1", 14),
            ("192.0.2.1", 14),
            ("::ffff:169.254.1.1", 2),
            ("::ffff:192.0.2.1", 14),
        ] {
            let a: IpAddr = addr.parse().unwrap();
            assert_eq!(scope_rfc(&a), want, "{addr}");
            if let IpAddr::V6(v6) = a
                && v6.to_ipv4_mapped().is_none()
            {
                assert_eq!(scope6(&v6), want, "{addr}");
            }
        }
    }

    /// As Go's TestRFC6724CommonPrefixLength, without the cap (callers apply theirs).
    #[test]
    fn common_prefix_lengths() {
        for (a, b, want) in [
            ("fe80::1", "fe80::1", 128),
            ("fe81::1", "fe80::1", 15),
            ("127.0.0.1", "fe80::1", 0),
            ("1.2.3.4", "1.2.3.4", 32),
            ("1.2.3.4", "1.2.3.5", 31),
            ("1.2.3.4", "1.2.4.4", 21),
            ("2001:db8::1", "2001:db8::2", 126),
            ("2001:db8::", "3fff::", 3),
        ] {
            let (a, b): (IpAddr, IpAddr) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(common_bits(&a, &b), want, "{a} {b}");
        }
    }

    fn entry(to: &str, dev: usize, metric: u32) -> RouteEntry {
        RouteEntry {
            to: to.parse().unwrap(),
            via: None,
            dev,
            prefsrc: None,
            metric,
            kind: RouteKind::Declared,
            rtype: RouteType::Unicast,
            table: None,
            paths: Vec::new(),
            objects: false,
        }
    }

    #[test]
    fn lookups_take_the_longest_prefix_then_the_lowest_metric_then_the_first() {
        let table = [
            entry("0.0.0.0/0", 0, 0),
            entry("10.0.0.0/8", 1, 100),
            entry("10.0.0.0/8", 2, 50),
            entry("10.1.0.0/16", 3, 500),
            entry("10.2.0.0/16", 4, 7),
            entry("10.2.0.0/16", 5, 7),
        ];
        for (dst, oif, want) in [
            ("192.0.2.1", None, Some(0)),
            ("10.9.9.9", None, Some(2)),
            ("10.1.2.3", None, Some(3)),
            ("10.2.3.4", None, Some(4)),
            ("10.1.2.3", Some(1), Some(1)),
            ("10.1.2.3", Some(9), None),
        ] {
            let got = lookup(&table, dst.parse().unwrap(), oif).map(|r| r.dev);
            assert_eq!(got, want, "{dst} oif {oif:?}");
        }
        assert!(lookup(&[entry("2001:db8::/32", 0, 0)], "10.0.0.1".parse().unwrap(), None).is_none());
    }
}
