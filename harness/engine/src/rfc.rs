//! RFC 6724 as written: the default policy table (or the scenario's `[policy] table`),
//! scopes per sections 3.1 and 3.2, source rules 1-8 (section 5) and destination rules 1-10
//! (section 6), CommonPrefixLen capped at the source's prefix length (section 2.2), rule 7
//! preferring temporary addresses.
//!
//! The RFC leaves the candidate set and routing to the implementation; here a source must be
//! of the destination's family and, when link- or loopback-scoped, on the outgoing interface
//! (RFC 4007 zones). Rule 5.5 needs next-hop information no scenario carries and is skipped.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv6Addr};

use addrsel_model::{Resolver, RouteType, Scenario, SourcePreference};
use addrsel_policy::{PolicyRow, PolicyTable, mapped};

use crate::net::{self, Held, RouteEntry, RouteKind, errno, scope_rfc};
use crate::rules;
use crate::sort::glibc_msort;
use crate::trace::*;

pub struct Rfc<'s> {
    s: &'s Scenario,
    table: PolicyTable,
    held: Vec<Held>,
    routes: Vec<RouteEntry>,
}

/// A source selection with the address's flags (the destination sort needs them).
pub struct Chosen {
    pub result: Result<Held, &'static str>,
    pub trace: SourceTrace,
}

impl<'s> Rfc<'s> {
    pub fn new(s: &'s Scenario) -> Self {
        let held = net::held(s);
        let mut routes = Vec::new();
        for h in &held {
            let len = net::max_len(h.ip());
            routes.push(RouteEntry {
                to: ipnet::IpNet::new(h.ip(), len).expect("host"),
                via: None,
                dev: h.dev,
                prefsrc: None,
                metric: 0,
                kind: RouteKind::Local,
                rtype: RouteType::Unicast,
                table: None,
                paths: Vec::new(),
                objects: false,
            });
        }
        for h in &held {
            let to = h.addr.net().trunc();
            // A down link is no outgoing interface: its prefix is not on-link.
            if h.addr.prefix_len < net::max_len(h.ip())
                && s.interfaces[h.dev].up
                && !routes.iter().any(|r| r.to == to && r.dev == h.dev)
            {
                routes.push(RouteEntry {
                    to,
                    via: None,
                    dev: h.dev,
                    prefsrc: None,
                    metric: 0,
                    kind: RouteKind::Connected,
                    rtype: RouteType::Unicast,
                    table: None,
                    paths: Vec::new(),
                    objects: false,
                });
            }
        }
        // A VRF's table is Linux's; the RFC's host has one routing table.
        for r in s.routes.iter().filter(|r| r.table.is_none()) {
            if let Some(e) = RouteEntry::declared(r, s, 0) {
                routes.push(e);
            }
        }
        Rfc { s, table: s.policy.table.clone().unwrap_or_else(PolicyTable::rfc6724), held, routes }
    }

    /// The draft-ietf-6man-rfc6724-update model: the same rules, the draft's default table
    /// (or the scenario's own) with the host's known-local ULA /48s inserted.
    pub fn update_draft(s: &'s Scenario) -> Self {
        let mut r = Rfc::new(s);
        let base = s.policy.table.clone().unwrap_or_else(PolicyTable::rfc6724_update_draft);
        r.table = base.with_known_local(r.held.iter().filter_map(|h| h.v6()));
        r
    }

    fn policy(&self, a: &IpAddr) -> Option<&PolicyRow> {
        self.table.longest_match(&mapped(a))
    }

    fn label(&self, a: &IpAddr) -> Option<i32> {
        self.policy(a).map(|p| p.label)
    }

    fn dev_name(&self, i: usize) -> &str {
        &self.s.interfaces[i].name
    }

    /// Source selection (section 5) for a destination.
    pub fn select(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference]) -> Chosen {
        let mut trace = SourceTrace::default();
        let zone = zone.and_then(|z| self.s.interfaces.iter().position(|i| i.name == z));
        let link_scoped = scope_rfc(&dst) <= 2;
        let route = if link_scoped && !is_loopback(&dst) {
            match zone {
                Some(z) => net::lookup(&self.routes, dst, Some(z)).cloned().or_else(|| {
                    Some(RouteEntry {
                        to: ipnet::IpNet::new(dst, net::max_len(dst)).expect("host"),
                        via: None,
                        dev: z,
                        prefsrc: None,
                        metric: 0,
                        kind: RouteKind::Declared,
                        rtype: RouteType::Unicast,
                        table: None,
                        paths: Vec::new(),
                        objects: false,
                    })
                }),
                None => {
                    // RFC 4007 section 6: a node may use a default zone. Take it when exactly
                    // one interface has an on-link prefix for the destination.
                    let links: Vec<&RouteEntry> =
                        self.routes.iter().filter(|r| r.kind == RouteKind::Connected && r.to.contains(&dst)).collect();
                    match links.as_slice() {
                        [only] => {
                            trace.steps.push(format!(
                                "{dst} has no zone; the default zone is {}, the only link with its prefix",
                                self.dev_name(only.dev)
                            ));
                            Some((*only).clone())
                        }
                        _ => {
                            trace.steps.push(format!(
                                "{dst} is link-scoped and has no zone: the outgoing interface is unknown"
                            ));
                            return Chosen { result: Err(errno::EINVAL), trace };
                        }
                    }
                }
            }
        } else {
            net::lookup(&self.routes, dst, None).cloned()
        };
        let Some(route) = route else {
            trace.steps.push(format!("no route to {dst}: Source(D) is undefined"));
            return Chosen { result: Err(errno::ENETUNREACH), trace };
        };
        if !route.rtype.is_unicast() {
            // RFC 6724 leaves the forwarding table to the host; a route that sends nothing
            // leaves no outgoing interface, hence no source (section 4: Source(D) undefined).
            trace.steps.push(format!(
                "{}: no outgoing interface, so no source; the destination is unusable (rule 1)",
                route.describe(self.s)
            ));
            return Chosen { result: Err(errno::ENETUNREACH), trace };
        }
        trace.steps.push(format!("outgoing interface from {}", route.describe(self.s)));
        if let Some(src) = route.prefsrc
            && let Some(h) = self.held.iter().find(|h| h.ip() == src)
        {
            trace.steps.push(format!("source {src}: configured on the route"));
            return Chosen { result: Ok(*h), trace };
        }
        let out = route.dev;
        let dst_scope = scope_rfc(&dst);
        trace.steps.push(format!("destination scope {dst_scope}, label {}", label_text(self.label(&dst))));
        let prefer_tmp = !prefer.contains(&SourcePreference::Public);
        let prefer_home = !prefer.contains(&SourcePreference::CareOf);
        let mut best: Option<&Held> = None;
        for h in &self.held {
            let a = h.ip();
            if a.is_ipv4() != dst.is_ipv4() {
                continue;
            }
            let mut cand = Candidate {
                addr: a,
                dev: self.dev_name(h.dev).to_string(),
                attrs: format!(
                    "/{} scope {}, label {}{}",
                    h.addr.prefix_len,
                    scope_rfc(&a),
                    label_text(self.label(&a)),
                    h.flags()
                ),
                skipped: None,
            };
            if scope_rfc(&a) <= 2 && h.dev != out {
                cand.skipped = Some("link- or loopback-scoped on another interface (another zone)".into());
            } else if h.addr.unusable() {
                cand.skipped = Some("tentative: not an assigned address (RFC 4862 5.4)".into());
            }
            let skipped = cand.skipped.is_some();
            trace.candidates.push(cand);
            if skipped {
                continue;
            }
            let Some(b) = best else {
                best = Some(h);
                continue;
            };
            let d = self.compare_sources(b, h, dst, out, prefer_tmp, prefer_home);
            trace.duels.push(Duel { best: b.ip(), challenger: a, decision: d.clone() });
            if d.is_some_and(|d| d.winner == Side::Right) {
                best = Some(h);
            }
        }
        match best {
            Some(h) => Chosen { result: Ok(*h), trace },
            None => {
                trace.steps.push("no candidate source address".into());
                Chosen { result: Err(errno::EADDRNOTAVAIL), trace }
            }
        }
    }

    fn compare_sources(
        &self,
        sa: &Held,
        sb: &Held,
        d: IpAddr,
        out: usize,
        prefer_tmp: bool,
        prefer_home: bool,
    ) -> Option<Decision> {
        let (a, b) = (sa.ip(), sb.ip());
        if let Some(x) = Decision::prefer(a == d, b == d, rules::source(1), "one is the destination") {
            return Some(x);
        }
        let (sca, scb, scd) = (scope_rfc(&a), scope_rfc(&b), scope_rfc(&d));
        let rule2 = rules::source(2);
        let detail = format!("scope {sca} vs {scb}, destination {scd}");
        if sca < scb {
            return Some(Decision::new(if sca < scd { Side::Right } else { Side::Left }, rule2, detail));
        }
        if scb < sca {
            return Some(Decision::new(if scb < scd { Side::Left } else { Side::Right }, rule2, detail));
        }
        // RFC 4429 3.3: an optimistic address is treated as deprecated.
        let (da, db) = (
            sa.addr.deprecated || sa.addr.dad == addrsel_model::Dad::Optimistic,
            sb.addr.deprecated || sb.addr.dad == addrsel_model::Dad::Optimistic,
        );
        if let Some(x) = Decision::prefer(!da && db, da && !db, rules::source(3), format!("deprecated {da} vs {db}")) {
            return Some(x);
        }
        let (ha, hb) = (sa.addr.home, sb.addr.home);
        if ha != hb {
            let a_wins = ha == prefer_home;
            return Some(Decision::new(
                if a_wins { Side::Left } else { Side::Right },
                rules::source(4),
                format!("home {ha} vs {hb}"),
            ));
        }
        if let Some(x) = Decision::prefer(
            sa.dev == out && sb.dev != out,
            sa.dev != out && sb.dev == out,
            rules::source(5),
            format!("on {} vs {}, outgoing {}", self.dev_name(sa.dev), self.dev_name(sb.dev), self.dev_name(out)),
        ) {
            return Some(x);
        }
        let (la, lb, ld) = (self.label(&a), self.label(&b), self.label(&d));
        if let Some(x) = Decision::prefer(
            la == ld && lb != ld,
            la != ld && lb == ld,
            rules::source(6),
            format!("label {} vs {}, destination {}", label_text(la), label_text(lb), label_text(ld)),
        ) {
            return Some(x);
        }
        let (ta, tb) = (sa.addr.temporary, sb.addr.temporary);
        if ta != tb {
            let a_wins = ta == prefer_tmp;
            return Some(Decision::new(
                if a_wins { Side::Left } else { Side::Right },
                rules::source(7),
                format!("temporary {ta} vs {tb}"),
            ));
        }
        Decision::higher(common_prefix_len(sa, &d), common_prefix_len(sb, &d), rules::source(8), "CommonPrefixLen")
    }

    /// Destination sort (section 6) of a resolved name, in [hosts] order, stable.
    pub fn sort(&self, name: &str) -> (Vec<IpAddr>, SortTrace) {
        let input: Vec<IpAddr> = self.s.host(name).map(|h| h.addresses.clone()).unwrap_or_default();
        let mut trace = SortTrace { input: input.clone(), ..Default::default() };
        trace.notes.push(format!(
            "policy table ({}): {}",
            if self.s.policy.table.is_some() { "[policy] table" } else { "RFC 6724 default" },
            self.table
                .rows
                .iter()
                .map(|r| format!("{} {} {}", addrsel_policy::c_style(&r.prefix), r.precedence, r.label))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let entries: Vec<(IpAddr, Option<Held>, Option<&'static str>, SourceTrace)> = input
            .iter()
            .map(|&d| {
                let sel = self.select(d, None, &[]);
                match sel.result {
                    Ok(h) => (d, Some(h), None, sel.trace),
                    Err(e) => (d, None, Some(e), sel.trace),
                }
            })
            .collect();
        for (d, h, e, t) in &entries {
            let prec = self.policy(d).map_or("none".into(), |p| p.precedence.to_string());
            trace.entries.push(DestInfo {
                dst: *d,
                source: h.map(|h| h.ip()),
                source_error: e.map(String::from),
                attrs: format!(
                    "scope {}, label {}, precedence {prec}{}",
                    scope_rfc(d),
                    label_text(self.label(d)),
                    match h {
                        Some(h) => format!(
                            "; source scope {}, label {}, CommonPrefixLen {}",
                            scope_rfc(&h.ip()),
                            label_text(self.label(&h.ip())),
                            common_prefix_len(h, d)
                        ),
                        None => String::new(),
                    }
                ),
                source_trace: t.clone(),
            });
        }
        let cmp = |i: &usize, j: &usize| -> (Ordering, Option<Decision>) {
            let (da, ha) = (&entries[*i].0, &entries[*i].1);
            let (db, hb) = (&entries[*j].0, &entries[*j].1);
            match self.compare_dests(*da, ha.as_ref(), *db, hb.as_ref()) {
                Some(d) => (if d.winner == Side::Left { Ordering::Less } else { Ordering::Greater }, Some(d)),
                None => (i.cmp(j), None),
            }
        };
        let mut order: Vec<usize> = (0..entries.len()).collect();
        glibc_msort(&mut order, &mut |a, b| cmp(a, b).0);
        for w in order.windows(2) {
            trace.neighbours.push((entries[w[0]].0, entries[w[1]].0, cmp(&w[0], &w[1]).1));
        }
        (order.iter().map(|&i| entries[i].0).collect(), trace)
    }

    fn compare_dests(&self, da: IpAddr, sa: Option<&Held>, db: IpAddr, sb: Option<&Held>) -> Option<Decision> {
        if let Some(x) = Decision::prefer(
            sa.is_some() && sb.is_none(),
            sa.is_none() && sb.is_some(),
            rules::destination(1),
            "Source(D) defined or not",
        ) {
            return Some(x);
        }
        if let (Some(sa), Some(sb)) = (sa, sb) {
            let ma = scope_rfc(&da) == scope_rfc(&sa.ip());
            let mb = scope_rfc(&db) == scope_rfc(&sb.ip());
            if let Some(x) = Decision::prefer(
                ma && !mb,
                !ma && mb,
                rules::destination(2),
                format!("Scope(D) == Scope(Source(D)): {ma} vs {mb}"),
            ) {
                return Some(x);
            }
            if let Some(x) = Decision::prefer(
                !sa.addr.deprecated && sb.addr.deprecated,
                sa.addr.deprecated && !sb.addr.deprecated,
                rules::destination(3),
                format!("source deprecated {} vs {}", sa.addr.deprecated, sb.addr.deprecated),
            ) {
                return Some(x);
            }
            if let Some(x) = Decision::prefer(
                sa.addr.home && !sb.addr.home,
                !sa.addr.home && sb.addr.home,
                rules::destination(4),
                format!("source home {} vs {}", sa.addr.home, sb.addr.home),
            ) {
                return Some(x);
            }
            let la = self.label(&sa.ip()) == self.label(&da);
            let lb = self.label(&sb.ip()) == self.label(&db);
            if let Some(x) = Decision::prefer(
                la && !lb,
                !la && lb,
                rules::destination(5),
                format!("Label(Source(D)) == Label(D): {la} vs {lb}"),
            ) {
                return Some(x);
            }
        }
        let pa = self.policy(&da).map_or(0, |p| p.precedence);
        let pb = self.policy(&db).map_or(0, |p| p.precedence);
        if let Some(x) = Decision::higher(pa, pb, rules::destination(6), "precedence") {
            return Some(x);
        }
        if let Some(x) = Decision::lower(scope_rfc(&da), scope_rfc(&db), rules::destination(8), "scope") {
            return Some(x);
        }
        if let (Some(sa), Some(sb), true) = (sa, sb, da.is_ipv4() == db.is_ipv4())
            && let Some(x) = Decision::higher(
                common_prefix_len(sa, &da),
                common_prefix_len(sb, &db),
                rules::destination(9),
                "CommonPrefixLen",
            )
        {
            return Some(x);
        }
        None
    }
}

fn is_loopback(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_loopback(),
        IpAddr::V6(v) => *v == Ipv6Addr::LOCALHOST,
    }
}

/// CommonPrefixLen(S, D) of section 2.2: common leading bits, up to S's prefix length.
fn common_prefix_len(s: &Held, d: &IpAddr) -> u32 {
    net::common_bits(&s.ip(), d).min(u32::from(s.addr.prefix_len))
}

fn label_text(l: Option<i32>) -> String {
    l.map_or("none".into(), |l| l.to_string())
}

impl crate::Model for Rfc<'_> {
    fn icmp_time_exceeded(&self, _from: &str, _to: IpAddr, _sender: IpAddr) -> IcmpReply {
        IcmpReply {
            result: Err("RFC 6724 does not choose ICMP error sources (RFC 1812 4.3.2.4 and RFC 4443 2.2 do)".into()),
            trace: SourceTrace::default(),
        }
    }

    fn connect(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference]) -> Selected {
        let c = self.select(dst, zone, prefer);
        Selected { result: c.result.map(|h| h.ip()), trace: c.trace }
    }

    fn connect_on(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference], device: &str) -> Selected {
        let mut sel = self.connect(dst, zone, prefer);
        sel.trace
            .steps
            .insert(0, format!("RFC 6724 knows no socket bound to an interface ({device}): selection as without it"));
        sel
    }

    fn bindable(&self, a: IpAddr) -> bool {
        self.held.iter().any(|h| h.ip() == a && !h.addr.unusable())
    }

    fn resolve(&self, name: &str, _resolver: Resolver) -> (Result<Vec<IpAddr>, String>, SortTrace) {
        let (order, trace) = self.sort(name);
        (Ok(order), trace)
    }
}
