//! `capture --anonymize`: every address and name replaced, consistently, keeping what
//! selection depends on: each address's class (loopback, link-local, ULA, 6to4, Teredo,
//! global; private, shared, public IPv4), which address is on which interface, and the
//! common prefix length between any two addresses (prefix-preserving, as Crypto-PAn: bit i
//! is flipped by a keyed function of the bits before it, so a prefix maps the same way as
//! every address inside it).
//!
//! Global IPv6 addresses move into 3fff::/20 (RFC 9637) when they share their first 20 bits,
//! the most common case, and public IPv4 into 198.18.0.0/15 (RFC 2544) when they share 15;
//! otherwise they are permuted where they are (their class is kept, their prefixes are not
//! exactly the real ones). Not cryptography: a consistent relabelling with a random key. The
//! command line checks that the engine decides the same on both, and refuses if not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Host, Live, ProbeKind, slug};

/// SplitMix64: a fixed, well-mixed function, so a key gives the same mapping everywhere.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether bit `i` (from the top) of a `width`-bit value is flipped, given the bits before it.
fn flip(key: u64, width: u32, value: u128, i: u32) -> bool {
    let before = if i == 0 { 0 } else { value >> (width - i) };
    let h = mix(key ^ mix(u64::from(i) ^ (u64::from(width) << 8)) ^ mix(before as u64) ^ mix((before >> 64) as u64));
    h & 1 == 1
}

/// Prefix-preserving permutation of the bits from `fixed` on, of a `width`-bit value whose
/// first `len` bits are meaningful (a prefix of length `len`, or a whole address).
fn permute(key: u64, width: u32, value: u128, fixed: u32, len: u32) -> u128 {
    let mut out = value;
    for i in fixed..len.min(width) {
        if flip(key, width, value, i) {
            out ^= 1u128 << (width - 1 - i);
        }
    }
    out
}

/// The relabelling of one capture.
pub struct Mapping {
    key: u64,
    /// Global IPv6: (real common prefix, its length) when it moves into 3fff::/20.
    gua: Option<(u128, u32)>,
    /// Public IPv4: (real common prefix, its length) when it moves into 198.18.0.0/15.
    public4: Option<(u128, u32)>,
    names: Vec<(String, String)>,
}

fn common_prefix(values: &[u128], width: u32) -> u32 {
    let Some(first) = values.first() else { return width };
    values.iter().map(|v| ((v ^ first) << (128 - width)).leading_zeros().min(width)).min().unwrap_or(width)
}

/// How many leading bits of an IPv6 address's class are kept as they are.
fn class_bits6(a: u128) -> u32 {
    let top16 = (a >> 112) as u16;
    if a >> 32 == 0xffff {
        96 // IPv4-mapped: the IPv4 part is mapped as IPv4
    } else if a >> 64 == 0 {
        128 // ::, ::1, the deprecated IPv4-compatible range
    } else if top16 & 0xffc0 == 0xfe80 || top16 & 0xffc0 == 0xfec0 {
        64 // link-local and site-local: the interface ID only
    } else if top16 & 0xfe00 == 0xfc00 {
        8
    } else if top16 == 0x2002 {
        16
    } else if a >> 96 == 0x2001_0000 {
        32
    } else if top16 & 0xff00 == 0xff00 {
        128 // multicast: kept
    } else {
        3
    }
}

fn is_gua(a: u128) -> bool {
    class_bits6(a) == 3 && (a >> 125) == 1
}

/// The ranges that keep their place: private, shared, loopback, link-local, multicast.
fn class_bits4(a: u32) -> u32 {
    let o = a.to_be_bytes();
    match o {
        [10, ..] | [127, ..] => 8,
        [172, b, ..] if b & 0xf0 == 16 => 12,
        [192, 168, ..] | [169, 254, ..] => 16,
        [100, b, ..] if b & 0xc0 == 64 => 10,
        [a, ..] if a >= 224 => 32,
        [0, ..] => 32,
        _ => 0,
    }
}

const DOC6: u128 = 0x3fff_0000_0000_0000_0000_0000_0000_0000; // 3fff::/20
const DOC4: u128 = 0xc612_0000; // 198.18.0.0/15

impl Mapping {
    pub fn new(host: &Host, key: u64) -> Self {
        let (mut g6, mut p4) = (Vec::new(), Vec::new());
        for a in addresses(host) {
            match a {
                IpAddr::V6(v) if is_gua(v.to_bits()) => g6.push(v.to_bits()),
                IpAddr::V4(v) if class_bits4(v.to_bits()) == 0 => p4.push(u128::from(v.to_bits())),
                _ => {}
            }
        }
        // Bits all of them share can be kept or permuted alike; keeping at most a /64 (a /24)
        // leaves a single address something to hide.
        let k6 = common_prefix(&g6, 128).min(64);
        let k4 = common_prefix(&p4, 32).min(24);
        let mut names = Vec::new();
        for (i, (n, _)) in host.hosts.iter().enumerate() {
            names.push((n.clone(), format!("host-{}.example", i + 1)));
        }
        Mapping {
            key,
            gua: (!g6.is_empty() && k6 >= 20).then(|| (g6[0] >> (128 - k6) << (128 - k6), k6)),
            public4: (!p4.is_empty() && k4 >= 15).then(|| (p4[0] >> (32 - k4) << (32 - k4), k4)),
            names,
        }
    }

    /// Whether global IPv6 (true) and public IPv4 (false) addresses went to documentation
    /// ranges, for the report.
    pub fn documentation_ranges(&self) -> (bool, bool) {
        (self.gua.is_some(), self.public4.is_some())
    }

    fn v6_prefix(&self, a: u128, len: u32) -> u128 {
        let fixed = class_bits6(a);
        if fixed == 96 {
            let v4 = self.v4_prefix(a as u32, len.saturating_sub(96));
            return (a >> 32 << 32) | u128::from(v4);
        }
        if fixed == 16 && len > 16 {
            // 6to4 embeds an IPv4 address in bits 16..48: it maps with that IPv4 address.
            let v4 = self.v4_prefix((a >> 80) as u32, (len - 16).min(32));
            let rest = permute(self.key ^ 0x6f4, 128, a, 48, len) & ((1u128 << 80) - 1);
            return truncate((a >> 112 << 112) | (u128::from(v4) << 80) | rest, len);
        }
        if let (Some((common, k)), true) = (self.gua, is_gua(a)) {
            let n = len.min(k);
            if n == 0 || (a ^ common) >> (128 - n) == 0 {
                // Inside the common prefix: it becomes 3fff::/20 (zeros up to k), the bits
                // after k permuted.
                let low = if k >= 128 { 0 } else { permute(self.key, 128, a, k, len) & ((1u128 << (128 - k)) - 1) };
                return truncate(DOC6 | low, len);
            }
            return a; // a class-level row (3ffe::/16) outside every address here
        }
        truncate(permute(self.key, 128, a, fixed, len), len)
    }

    fn v4_prefix(&self, a: u32, len: u32) -> u32 {
        let fixed = class_bits4(a);
        if let (Some((common, k)), 0) = (self.public4, fixed) {
            let n = len.min(k);
            if n == 0 || (u128::from(a) ^ common) >> (32 - n) == 0 {
                let low = if k >= 32 {
                    0
                } else {
                    permute(self.key ^ 4, 32, u128::from(a), k, len) as u32 & ((1u32 << (32 - k)) - 1)
                };
                return truncate4((DOC4 as u32) | low, len);
            }
            return a;
        }
        // Public addresses that do not share a /15 keep their /16 (their class stays public).
        let keep = if fixed == 0 { 16 } else { fixed };
        truncate4(permute(self.key ^ 4, 32, u128::from(a), keep, len) as u32, len)
    }

    pub fn addr(&self, a: IpAddr) -> IpAddr {
        match a {
            IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from_bits(self.v4_prefix(v.to_bits(), 32))),
            IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from_bits(self.v6_prefix(v.to_bits(), 128))),
        }
    }

    /// A prefix maps as the addresses inside it do (bits beyond its length stay zero).
    pub fn prefix(&self, net: ipnet::IpNet) -> ipnet::IpNet {
        let net = net.trunc();
        let len = u32::from(net.prefix_len());
        let mapped = match net.addr() {
            IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from_bits(self.v4_prefix(v.to_bits(), len))),
            IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from_bits(self.v6_prefix(v.to_bits(), len))),
        };
        ipnet::IpNet::new(mapped, net.prefix_len()).expect("same length").trunc()
    }

    fn name(&self, n: &str) -> String {
        self.names.iter().find(|(a, _)| a == n).map_or_else(|| n.to_string(), |(_, b)| b.clone())
    }

    /// A policy text (gai.conf, ip6addrctl.conf) with every `ADDRESS/LEN` word mapped.
    pub fn text(&self, t: &str) -> String {
        t.split_inclusive('\n')
            .map(|line| {
                line.split_inclusive([' ', '\t', '\n'])
                    .map(|w| {
                        let core = w.trim_end_matches([' ', '\t', '\n']);
                        let tail = &w[core.len()..];
                        match core.parse::<ipnet::IpNet>() {
                            Ok(n) if core.contains(':') || core.contains('.') => {
                                let m = self.prefix(n);
                                let shown = match m {
                                    ipnet::IpNet::V6(v) => addrsel_policy::c_style(&v),
                                    ipnet::IpNet::V4(_) => m.to_string(),
                                };
                                format!("{shown}{tail}")
                            }
                            _ => w.to_string(),
                        }
                    })
                    .collect::<String>()
            })
            .collect()
    }

    /// The host with every address, prefix and name replaced.
    pub fn apply(&self, h: &Host) -> Host {
        let mut out = h.clone();
        for i in &mut out.interfaces {
            for a in &mut i.addresses {
                a.addr = self.addr(a.addr);
            }
        }
        for r in &mut out.routes {
            r.to = self.prefix(r.to);
            r.via = r.via.map(|v| self.addr(v));
            r.src = r.src.map(|v| self.addr(v));
            for n in &mut r.nexthops {
                n.via = n.via.map(|v| self.addr(v));
            }
        }
        out.gai_conf = h.gai_conf.as_ref().map(|t| self.text(t));
        out.ip6addrctl_conf = h.ip6addrctl_conf.as_ref().map(|t| self.text(t));
        out.addrlabels = h
            .addrlabels
            .iter()
            .map(|(p, l)| (p.parse::<ipnet::IpNet>().map_or_else(|_| p.clone(), |n| self.prefix(n).to_string()), *l))
            .collect();
        out.hosts = h.hosts.iter().map(|(n, a)| (self.name(n), a.iter().map(|x| self.addr(*x)).collect())).collect();
        out.skipped = if h.skipped.is_empty() {
            vec![]
        } else {
            vec![format!(
                "{} line(s) about things the format cannot say were left out when anonymizing",
                h.skipped.len()
            )]
        };
        // These name prefixes and interfaces: summarised, never copied.
        out.remade = if h.remade.is_empty() {
            vec![]
        } else {
            vec![format!("{} kernel-made temporary address(es), left out when anonymizing", h.remade.len())]
        };
        for p in &mut out.probes {
            match &mut p.kind {
                ProbeKind::Connect(dst) => {
                    let (a, zone) = match dst.split_once('%') {
                        Some((a, z)) => (a.to_string(), Some(z.to_string())),
                        None => (dst.clone(), None),
                    };
                    if let Ok(ip) = a.parse::<IpAddr>() {
                        let m = self.addr(ip);
                        *dst = match zone {
                            Some(z) => format!("{m}%{z}"),
                            None => m.to_string(),
                        };
                        p.id = slug("to-", &m.to_string());
                    }
                }
                ProbeKind::Resolve(n) => {
                    *n = self.name(n);
                    p.id = slug("resolve-", n);
                }
            }
            p.live = match &p.live {
                Live::Source(a) => Live::Source(self.addr(*a)),
                Live::Order(o) => Live::Order(o.iter().map(|a| self.addr(*a)).collect()),
                Live::Error(e) => Live::Error(e.clone()),
            };
        }
        out
    }
}

fn truncate(v: u128, len: u32) -> u128 {
    if len >= 128 {
        v
    } else if len == 0 {
        0
    } else {
        v >> (128 - len) << (128 - len)
    }
}

fn truncate4(v: u32, len: u32) -> u32 {
    if len >= 32 {
        v
    } else if len == 0 {
        0
    } else {
        v >> (32 - len) << (32 - len)
    }
}

/// Every address the capture names (for the common prefixes).
fn addresses(h: &Host) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = h.interfaces.iter().flat_map(|i| i.addresses.iter().map(|a| a.addr)).collect();
    out.extend(h.routes.iter().flat_map(|r| [Some(r.to.addr()), r.via, r.src]).flatten());
    out.extend(h.routes.iter().flat_map(|r| r.nexthops.iter().filter_map(|n| n.via)));
    out.extend(h.hosts.iter().flat_map(|(_, a)| a.iter().copied()));
    for p in &h.probes {
        if let ProbeKind::Connect(d) = &p.kind
            && let Ok(a) = d.split('%').next().unwrap_or(d).parse()
        {
            out.push(a);
        }
    }
    out
}
