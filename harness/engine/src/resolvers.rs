//! The destination sorts of resolvers that are not the OS's C library: musl's
//! `__lookup_name`, Go's `sortByRFC6724` and c-ares' `ares__sortaddrinfo`. Each gets the
//! destinations in its hosts-file order with the source the OS's kernel gives a UDP
//! connect (the kernel is the same; only the sort differs), and sorts them its own way.
//!
//! Read from the sources Debian ships (research notes, resolvers.md): musl 1.2.3 (Debian 12)
//! and 1.2.5 (13), Go 1.19.8 and 1.24.4, c-ares 1.18.1 and 1.34.9 sort alike across each
//! pair; the line numbers cited are of the newer one.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv6Addr};

use addrsel_policy::mapped;

use crate::rules;
use crate::sort::{freebsd_qsort, glibc_msort, go_stable};
use crate::trace::*;

/// One destination before sorting, with the kernel's answer for it.
pub struct Dest {
    pub dst: IpAddr,
    pub src: Option<IpAddr>,
    pub err: Option<&'static str>,
    pub trace: SourceTrace,
}

/// Which C library's qsort c-ares' sort runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Libc {
    Glibc,
    Freebsd,
}

fn entry_info(d: &Dest, attrs: String) -> DestInfo {
    DestInfo { dst: d.dst, source: d.src, source_error: d.err.map(String::from), attrs, source_trace: d.trace.clone() }
}

fn done(
    input: &[IpAddr],
    dests: &[Dest],
    order: &[usize],
    attrs: Vec<String>,
    decide: impl Fn(usize, usize) -> Option<Decision>,
    note: &str,
) -> (Vec<IpAddr>, SortTrace) {
    let mut trace = SortTrace { input: input.to_vec(), ..Default::default() };
    trace.notes.push(note.to_string());
    for (d, a) in dests.iter().zip(attrs) {
        trace.entries.push(entry_info(d, a));
    }
    for w in order.windows(2) {
        trace.neighbours.push((dests[w[0]].dst, dests[w[1]].dst, decide(w[0], w[1])));
    }
    (order.iter().map(|&i| dests[i].dst).collect(), trace)
}

fn unsorted(input: Vec<IpAddr>, note: &str, why: &str) -> (Vec<IpAddr>, SortTrace) {
    let trace = SortTrace {
        input: input.clone(),
        unsorted_because: Some(why.to_string()),
        notes: vec![note.to_string()],
        ..Default::default()
    };
    (input, trace)
}

fn cpl(a: &Ipv6Addr, b: &Ipv6Addr) -> u32 {
    (a.to_bits() ^ b.to_bits()).leading_zeros()
}

// ---------------------------------------------------------------------------------------
// musl: src/network/lookup_name.c

/// `defpolicy[]` (:238-267), first match in array order; ::/96, fec0::/10 and 3ffe::/16 are
/// under `#if 0`, so they fall to ::/0.
fn musl_policy(a: &Ipv6Addr) -> (u32, u32) {
    let o = a.octets();
    if *a == Ipv6Addr::LOCALHOST {
        (50, 0)
    } else if o[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        (35, 4)
    } else if o[..2] == [0x20, 0x02] {
        (30, 2)
    } else if o[..4] == [0x20, 0x01, 0, 0] {
        (5, 5)
    } else if o[0] & 0xfe == 0xfc {
        (3, 13)
    } else {
        (40, 1)
    }
}

/// `scopeof` (:274-281): IPv4 arrives v4-mapped, so every IPv4 address is global (14).
fn musl_scope(a: &Ipv6Addr) -> u32 {
    let o = a.octets();
    if o[0] == 0xff {
        u32::from(o[1] & 15)
    } else if o[0] == 0xfe && o[1] & 0xc0 == 0x80 || *a == Ipv6Addr::LOCALHOST {
        2
    } else if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
        5
    } else {
        14
    }
}

const MUSL_NOTE: &str = "musl 1.2.3 and 1.2.5 (Debian 12 and 13) sort alike: one key per address (usable, matching scope, matching label, precedence, 15-scope, common prefix over all 128 bits, position); rules 3, 4 and 7 are left out; no gai.conf";

/// musl's sort: none for fewer than two results or an all-IPv4 answer (:360-364); else a
/// 31-bit key per address, highest first (:294-306, :374-432).
pub fn musl(input: Vec<IpAddr>, dests: Vec<Dest>) -> (Vec<IpAddr>, SortTrace) {
    if dests.len() < 2 {
        return unsorted(input, MUSL_NOTE, "fewer than two addresses");
    }
    if dests.iter().all(|d| d.dst.is_ipv4()) {
        return unsorted(input, MUSL_NOTE, "every address is IPv4: musl does not sort them (lookup_name.c:360-364)");
    }
    struct Key {
        usable: bool,
        scope_match: bool,
        label_match: bool,
        prec: u32,
        scope: u32,
        prefix: u32,
        pos: usize,
    }
    let keys: Vec<Key> = dests
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let da = mapped(&d.dst);
            let (prec, label) = musl_policy(&da);
            let scope = musl_scope(&da);
            match d.src {
                Some(s) => {
                    let sa = mapped(&s);
                    Key {
                        usable: true,
                        scope_match: musl_scope(&sa) == scope,
                        label_match: musl_policy(&sa).1 == label,
                        prec,
                        scope,
                        prefix: cpl(&sa, &da),
                        pos: i,
                    }
                }
                None => Key { usable: false, scope_match: false, label_match: false, prec, scope, prefix: 0, pos: i },
            }
        })
        .collect();
    let key = |k: &Key| -> u32 {
        (u32::from(k.usable) << 30)
            | (u32::from(k.scope_match) << 29)
            | (u32::from(k.label_match) << 28)
            | (k.prec << 20)
            | ((15 - k.scope) << 16)
            | (k.prefix << 8)
            | (48 - k.pos as u32)
    };
    let mut order: Vec<usize> = (0..dests.len()).collect();
    order.sort_by(|&a, &b| key(&keys[b]).cmp(&key(&keys[a])));
    let attrs = keys
        .iter()
        .map(|k| {
            format!(
                "usable {}, scope {} (matching {}), label matching {}, precedence {}, common prefix {}",
                k.usable, k.scope, k.scope_match, k.label_match, k.prec, k.prefix
            )
        })
        .collect();
    let decide = |a: usize, b: usize| {
        let (x, y) = (&keys[a], &keys[b]);
        Decision::prefer(
            x.usable && !y.usable,
            y.usable && !x.usable,
            rules::destination(1),
            format!("usable {} vs {}", x.usable, y.usable),
        )
        .or_else(|| {
            Decision::prefer(
                x.scope_match && !y.scope_match,
                y.scope_match && !x.scope_match,
                rules::destination(2),
                format!("scope matches {} vs {}", x.scope_match, y.scope_match),
            )
        })
        .or_else(|| {
            Decision::prefer(
                x.label_match && !y.label_match,
                y.label_match && !x.label_match,
                rules::destination(5),
                format!("labels match {} vs {}", x.label_match, y.label_match),
            )
        })
        .or_else(|| Decision::higher(x.prec, y.prec, rules::destination(6), "precedence (musl's table)"))
        .or_else(|| Decision::lower(x.scope, y.scope, rules::destination(8), "destination scope"))
        .or_else(|| {
            Decision::higher(
                x.prefix,
                y.prefix,
                rules::destination(9),
                "common prefix with the source, all 128 bits, any family (musl)",
            )
        })
        .or_else(|| Decision::lower(x.pos, y.pos, rules::destination(10), "position"))
    };
    done(&input, &dests, &order, attrs, decide, MUSL_NOTE)
}

// ---------------------------------------------------------------------------------------
// Go: src/net/addrselect.go

/// `rfc6724policyTable`, longest match.
fn go_policy(a: &Ipv6Addr) -> (u32, u32) {
    let rows: [(&str, u8, u32, u32); 9] = [
        ("::1", 128, 50, 0),
        ("::ffff:0:0", 96, 35, 4),
        ("::", 96, 1, 3),
        ("2001::", 32, 5, 5),
        ("2002::", 16, 30, 2),
        ("3ffe::", 16, 1, 12),
        ("fec0::", 10, 1, 11),
        ("fc00::", 7, 3, 13),
        ("::", 0, 40, 1),
    ];
    rows.iter()
        .find(|(p, len, _, _)| {
            let p: Ipv6Addr = p.parse().expect("prefix");
            *len == 0 || cpl(&p, a) >= u32::from(*len)
        })
        .map(|(_, _, prec, label)| (*prec, *label))
        .expect("::/0 matches")
}

/// `classifyScope`: IPv4 loopback and link-local are link scope, other IPv4 global.
fn go_scope(a: &IpAddr) -> u32 {
    match a {
        IpAddr::V4(v) => {
            if v.is_loopback() || v.is_link_local() {
                2
            } else {
                14
            }
        }
        IpAddr::V6(v) => {
            let o = v.octets();
            if let Some(v4) = v.to_ipv4_mapped() {
                return go_scope(&IpAddr::V4(v4));
            }
            if v.is_loopback() || v.is_unicast_link_local() {
                2
            } else if o[0] == 0xff {
                u32::from(o[1] & 0xf)
            } else if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
                5
            } else {
                14
            }
        }
    }
}

/// `commonPrefixLen`: IPv4 over 4 bytes, IPv6 over the first 8 only.
fn go_cpl(a: &IpAddr, b: &IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => (x.to_bits() ^ y.to_bits()).leading_zeros(),
        (IpAddr::V6(x), IpAddr::V6(y)) => cpl(x, y).min(64),
        _ => 0,
    }
}

const GO_NOTE: &str = "Go 1.19.8 and 1.24.4 (Debian 12 and 13) sort alike: a stable sort with rules 1, 2, 5, 6, 8 and 9, rule 9 only between two IPv6 destinations and over their first 64 bits (Go issues 13283 and 18518); its own table, no gai.conf";

/// Go's sort (`sortByRFC6724`): stable, with the comparator of addrselect.go:90-208.
pub fn go(input: Vec<IpAddr>, dests: Vec<Dest>) -> (Vec<IpAddr>, SortTrace) {
    if dests.len() < 2 {
        return unsorted(input, GO_NOTE, "fewer than two addresses");
    }
    struct Attr {
        usable: bool,
        scope_match: bool,
        label_match: bool,
        prec: u32,
        scope: u32,
        v6: bool,
        cpl: u32,
    }
    let attrs: Vec<Attr> = dests
        .iter()
        .map(|d| {
            let (prec, label) = go_policy(&mapped(&d.dst));
            let scope = go_scope(&d.dst);
            // To4() is non-nil for IPv4 and v4-mapped addresses alike.
            let v6 = matches!(d.dst, IpAddr::V6(v) if v.to_ipv4_mapped().is_none());
            match d.src {
                Some(s) => Attr {
                    usable: true,
                    scope_match: go_scope(&s) == scope,
                    label_match: go_policy(&mapped(&s)).1 == label,
                    prec,
                    scope,
                    v6,
                    cpl: go_cpl(&s, &d.dst),
                },
                None => Attr { usable: false, scope_match: false, label_match: false, prec, scope, v6, cpl: 0 },
            }
        })
        .collect();
    let decide = |a: usize, b: usize| -> Option<Decision> {
        let (x, y) = (&attrs[a], &attrs[b]);
        if !x.usable && !y.usable {
            return None;
        }
        Decision::prefer(
            x.usable && !y.usable,
            y.usable && !x.usable,
            rules::destination(1),
            format!("usable {} vs {}", x.usable, y.usable),
        )
        .or_else(|| {
            Decision::prefer(
                x.scope_match && !y.scope_match,
                y.scope_match && !x.scope_match,
                rules::destination(2),
                format!("scope matches {} vs {}", x.scope_match, y.scope_match),
            )
        })
        .or_else(|| {
            Decision::prefer(
                x.label_match && !y.label_match,
                y.label_match && !x.label_match,
                rules::destination(5),
                format!("labels match {} vs {}", x.label_match, y.label_match),
            )
        })
        .or_else(|| Decision::higher(x.prec, y.prec, rules::destination(6), "precedence (Go's table)"))
        .or_else(|| Decision::lower(x.scope, y.scope, rules::destination(8), "destination scope"))
        .or_else(|| {
            if x.v6 && y.v6 {
                Decision::higher(
                    x.cpl,
                    y.cpl,
                    rules::destination(9),
                    "common prefix with the source, first 64 bits (Go: IPv6 pairs only)",
                )
            } else {
                None
            }
        })
    };
    let mut order: Vec<usize> = (0..dests.len()).collect();
    go_stable(&mut order, &mut |a: &usize, b: &usize| decide(*a, *b).is_some_and(|d| d.winner == Side::Left));
    let shown = attrs
        .iter()
        .map(|a| {
            format!(
                "usable {}, scope {} (matching {}), label matching {}, precedence {}, common prefix {}",
                a.usable, a.scope, a.scope_match, a.label_match, a.prec, a.cpl
            )
        })
        .collect();
    done(
        &input,
        &dests,
        &order,
        shown,
        |a, b| {
            decide(a, b).or_else(|| {
                Some(Decision::new(Side::Left, rules::destination(10), "equal: the stable sort keeps the hosts order"))
            })
        },
        GO_NOTE,
    )
}

// ---------------------------------------------------------------------------------------
// c-ares: src/lib/ares_sortaddrinfo.c

/// `get_label`, `get_precedence` and `get_scope`: hard-coded, in this order.
fn cares_class(a: &IpAddr) -> (u32, u32, u32) {
    match a {
        IpAddr::V4(v) => (4, 35, if v.is_loopback() || v.is_link_local() { 2 } else { 14 }),
        IpAddr::V6(v) => {
            let o = v.octets();
            let scope = if o[0] == 0xff {
                u32::from(o[1] & 0x0f)
            } else if v.is_loopback() || v.is_unicast_link_local() {
                2
            } else if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
                5
            } else {
                14
            };
            let (label, prec) = if v.is_loopback() {
                (0, 50)
            } else if v.to_ipv4_mapped().is_some() {
                (4, 35)
            } else if o[..2] == [0x20, 0x02] {
                (2, 30)
            } else if o[..4] == [0x20, 0x01, 0, 0] {
                (5, 5)
            } else if o[0] & 0xfe == 0xfc {
                (13, 3)
            } else if o[..12] == [0; 12] {
                (3, 1) // IN6_IS_ADDR_V4COMPAT
            } else if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
                (11, 1)
            } else if o[..2] == [0x3f, 0xfe] {
                (12, 1)
            } else {
                (1, 40)
            };
            (label, prec, scope)
        }
    }
}

const CARES_NOTE: &str = "c-ares 1.18.1 and 1.34.9 (Debian 12 and 13) sort alike: the C library's qsort over rules 1, 2, 5, 6, 8, 9 and the original position; a destination without a source counts as scope 1 and label 1; rule 9 only between two AF_INET6 destinations with sources, over all 128 bits";

/// c-ares' sort (`ares__sortaddrinfo`, :232-335), run by the C library's qsort.
pub fn c_ares(input: Vec<IpAddr>, dests: Vec<Dest>, libc: Libc) -> (Vec<IpAddr>, SortTrace) {
    struct Attr {
        has_src: bool,
        scope_match: bool,
        label_match: bool,
        prec: u32,
        scope: u32,
        v6: bool,
        cpl: u32,
    }
    let attrs: Vec<Attr> = dests
        .iter()
        .map(|d| {
            let (label, prec, scope) = cares_class(&d.dst);
            let (src_label, src_scope) = d.src.map_or((1, 1), |s| {
                let (l, _, sc) = cares_class(&s);
                (l, sc)
            });
            let cpl = match (d.src, d.dst) {
                (Some(IpAddr::V6(s)), IpAddr::V6(t)) => cpl(&s, &t),
                _ => 0,
            };
            Attr {
                has_src: d.src.is_some(),
                scope_match: src_scope == scope,
                label_match: src_label == label,
                prec,
                scope,
                v6: d.dst.is_ipv6(),
                cpl,
            }
        })
        .collect();
    let decide = |a: usize, b: usize| -> Decision {
        let (x, y) = (&attrs[a], &attrs[b]);
        Decision::prefer(
            x.has_src && !y.has_src,
            y.has_src && !x.has_src,
            rules::destination(1),
            format!("has a source {} vs {}", x.has_src, y.has_src),
        )
        .or_else(|| {
            Decision::prefer(
                x.scope_match && !y.scope_match,
                y.scope_match && !x.scope_match,
                rules::destination(2),
                format!("scope matches {} vs {}", x.scope_match, y.scope_match),
            )
        })
        .or_else(|| {
            Decision::prefer(
                x.label_match && !y.label_match,
                y.label_match && !x.label_match,
                rules::destination(5),
                format!("labels match {} vs {}", x.label_match, y.label_match),
            )
        })
        .or_else(|| Decision::higher(x.prec, y.prec, rules::destination(6), "precedence (c-ares' built-in values)"))
        .or_else(|| Decision::lower(x.scope, y.scope, rules::destination(8), "destination scope"))
        .or_else(|| {
            if x.has_src && y.has_src && x.v6 && y.v6 {
                Decision::higher(
                    x.cpl,
                    y.cpl,
                    rules::destination(9),
                    "common prefix with the source, all 128 bits (AF_INET6 pairs)",
                )
            } else {
                None
            }
        })
        .unwrap_or_else(|| {
            Decision::new(
                if b < a { Side::Right } else { Side::Left },
                rules::destination(10),
                format!("positions {} and {}", a + 1, b + 1),
            )
        })
    };
    let mut order: Vec<usize> = (0..dests.len()).collect();
    let mut cmp = |a: &usize, b: &usize| match (a == b, decide(*a, *b).winner) {
        (true, _) => Ordering::Equal,
        (false, Side::Left) => Ordering::Less,
        (false, Side::Right) => Ordering::Greater,
    };
    match libc {
        Libc::Glibc => glibc_msort(&mut order, &mut cmp),
        Libc::Freebsd => freebsd_qsort(&mut order, &mut cmp),
    }
    let shown = attrs
        .iter()
        .map(|a| {
            format!(
                "has a source {}, scope {} (matching {}), label matching {}, precedence {}, common prefix {}",
                a.has_src, a.scope, a.scope_match, a.label_match, a.prec, a.cpl
            )
        })
        .collect();
    done(&input, &dests, &order, shown, |a, b| Some(decide(a, b)), CARES_NOTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dests(pairs: &[(&str, Option<&str>)]) -> (Vec<IpAddr>, Vec<Dest>) {
        let d: Vec<Dest> = pairs
            .iter()
            .map(|(dst, src)| Dest {
                dst: dst.parse().unwrap(),
                src: src.map(|s| s.parse().unwrap()),
                err: src.is_none().then_some("ENETUNREACH"),
                trace: SourceTrace::default(),
            })
            .collect();
        (d.iter().map(|x| x.dst).collect(), d)
    }

    /// (case, destinations with the kernel's sources, musl, Go, c-ares): each line is a
    /// rule where the three differ, read from their sources and measured on this machine
    /// (harness/scenarios/resolvers-*.toml).
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, &[(&str, Option<&str>)], &[&str], &[&str], &[&str])] = &[
        (
            "all IPv4, rule 9 would reorder: only glibc does",
            &[("198.51.100.20", Some("192.0.2.10")), ("192.0.2.20", Some("192.0.2.10"))],
            &["198.51.100.20", "192.0.2.20"],
            &["198.51.100.20", "192.0.2.20"],
            &["198.51.100.20", "192.0.2.20"],
        ),
        (
            "3ffe::/16 is a row of RFC 6724 (precedence 1), compiled out of musl",
            &[("198.51.100.6", Some("192.0.2.10")), ("3ffe:1::6", Some("2001:db8:1::10"))],
            &["3ffe:1::6", "198.51.100.6"],
            &["198.51.100.6", "3ffe:1::6"],
            &["198.51.100.6", "3ffe:1::6"],
        ),
        (
            "ULA source, global destination: label mismatch puts IPv4 first in all three",
            &[("2a01:4f8::1", Some("fd00:11:22::aa")), ("116.203.176.52", Some("10.0.0.50"))],
            &["116.203.176.52", "2a01:4f8::1"],
            &["116.203.176.52", "2a01:4f8::1"],
            &["116.203.176.52", "2a01:4f8::1"],
        ),
        (
            "an unreachable destination goes last (rule 1)",
            &[("2001:db8:9::1", None), ("192.0.2.77", Some("192.0.2.10"))],
            &["192.0.2.77", "2001:db8:9::1"],
            &["192.0.2.77", "2001:db8:9::1"],
            &["192.0.2.77", "2001:db8:9::1"],
        ),
    ];

    #[test]
    fn each_resolver_sorts_its_own_way() {
        for (case, input, want_musl, want_go, want_cares) in CASES {
            let want = |w: &[&str]| w.iter().map(|a| a.parse().unwrap()).collect::<Vec<IpAddr>>();
            let (i, d) = dests(input);
            assert_eq!(musl(i, d).0, want(want_musl), "musl: {case}");
            let (i, d) = dests(input);
            assert_eq!(go(i, d).0, want(want_go), "go: {case}");
            for libc in [Libc::Glibc, Libc::Freebsd] {
                let (i, d) = dests(input);
                assert_eq!(c_ares(i, d, libc).0, want(want_cares), "c-ares: {case}");
            }
        }
    }

    #[test]
    fn musl_leaves_an_all_ipv4_answer_alone_and_says_why() {
        let (i, d) = dests(&[("198.51.100.20", Some("192.0.2.10")), ("192.0.2.20", Some("192.0.2.10"))]);
        let (_, trace) = musl(i, d);
        assert!(trace.unsorted_because.as_deref().is_some_and(|w| w.contains("every address is IPv4")));
    }
}
