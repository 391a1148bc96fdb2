//! Linux: iproute2's JSON (`ip -j addr show`, `ip -j -4/-6 route show table main`,
//! `ip -j addrlabel list`), read with serde rather than scraped.

use std::net::IpAddr;

use addrsel_policy::addrlabel::KernelLabels;
use ipnet::IpNet;
use serde::Deserialize;

use crate::{Addr, Host, Interface, Nexthop, Route, usable_name};

#[derive(Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    /// The VRF (or bridge) the interface is enslaved to.
    master: Option<String>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Deserialize)]
struct AddrInfo {
    family: String,
    local: IpAddr,
    prefixlen: u8,
    #[serde(default)]
    deprecated: bool,
    #[serde(default)]
    temporary: bool,
    #[serde(default)]
    home: bool,
    #[serde(default)]
    mngtmpaddr: bool,
    #[serde(default)]
    tentative: bool,
    #[serde(default)]
    dadfailed: bool,
    #[serde(default)]
    optimistic: bool,
    preferred_life_time: Option<u64>,
}

#[derive(Deserialize)]
struct RouteJson {
    #[serde(rename = "type")]
    kind: Option<String>,
    dst: String,
    gateway: Option<IpAddr>,
    via: Option<Via>,
    dev: Option<String>,
    prefsrc: Option<IpAddr>,
    metric: Option<u32>,
    protocol: Option<String>,
    nhid: Option<u32>,
    #[serde(default)]
    nexthops: Vec<NexthopJson>,
}

#[derive(Deserialize)]
struct NexthopJson {
    gateway: Option<IpAddr>,
    via: Option<Via>,
    dev: Option<String>,
    weight: Option<u16>,
}

#[derive(Deserialize)]
struct Via {
    host: IpAddr,
}

#[derive(Deserialize)]
struct LabelJson {
    address: std::net::Ipv6Addr,
    prefixlen: u8,
    label: u32,
    dev: Option<String>,
}

fn is_implicit_loopback(a: &AddrInfo) -> bool {
    (a.local == IpAddr::from([127, 0, 0, 1]) && a.prefixlen == 8)
        || (a.local == IpAddr::from(std::net::Ipv6Addr::LOCALHOST) && a.prefixlen == 128)
}

/// The host from iproute2's JSON outputs.
pub fn read(addr_json: &str, route4_json: &str, route6_json: &str, addrlabel_json: &str) -> Result<Host, String> {
    let links: Vec<Link> = serde_json::from_str(addr_json).map_err(|e| format!("ip -j addr show: {e}"))?;
    let mut host = Host { os: Some(addrsel_model::Os::Linux), ..Host::default() };
    let mut all: Vec<Interface> = Vec::new();
    for l in links {
        if !usable_name(&l.ifname) {
            host.skipped.push(format!("interface `{}`: its name is not usable in a scenario", l.ifname));
            continue;
        }
        if let Some(m) = &l.master {
            host.masters.push((l.ifname.clone(), m.clone()));
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for a in l.addr_info.iter().filter(|a| !(l.ifname == "lo" && is_implicit_loopback(a))) {
            let mut x = Addr::plain(a.local, a.prefixlen);
            x.deprecated = a.deprecated || (a.preferred_life_time == Some(0) && a.family == "inet6");
            x.temporary = a.temporary;
            x.home = a.home;
            if a.mngtmpaddr && a.prefixlen == 64 {
                x.mngtmpaddr = true;
            } else if a.mngtmpaddr {
                x.unsupported.push(format!("mngtmpaddr on a /{} (the scenario format takes /64 only)", a.prefixlen));
            }
            x.dad = match (a.dadfailed, a.optimistic, a.tentative) {
                (true, _, _) => Some("failed"),
                (_, true, _) => Some("optimistic"),
                (_, _, true) => Some("tentative"),
                _ => None,
            };
            if a.family == "inet6" { v6.push(x) } else { v4.push(x) }
        }
        // The kernel's temporary addresses come from a mngtmpaddr template in their /64: the
        // scenario's template (with use_tempaddr) makes them again, with new random bits.
        let templates: Vec<ipnet::Ipv6Net> = v6
            .iter()
            .filter(|x: &&Addr| x.mngtmpaddr)
            .filter_map(|x| match x.addr {
                IpAddr::V6(a) => ipnet::Ipv6Net::new(a, 64).ok().map(|n| n.trunc()),
                IpAddr::V4(_) => None,
            })
            .collect();
        v6.retain(|x| {
            let made = x.temporary
                && matches!(x.addr, IpAddr::V6(a) if templates.iter().any(|t| t.contains(&a)));
            if made {
                let prefix = ipnet::IpNet::new(x.addr, 64).map(|n| n.trunc().to_string()).unwrap_or_default();
                host.remade.push(format!(
                    "temporary({prefix}) on {}, which the kernel made from its mngtmpaddr template (with use_tempaddr >= 1)",
                    l.ifname
                ));
            }
            !made
        });
        // The kernel lists IPv6 addresses newest first within a scope: added in the
        // reverse order, they come back in this one.
        v6.reverse();
        v4.extend(v6);
        all.push(Interface { name: l.ifname.clone(), addresses: v4, down: !l.flags.iter().any(|f| f == "UP") });
    }
    let names: Vec<String> = all.iter().map(|i| i.name.clone()).collect();
    let subnets: Vec<(String, IpNet)> = all
        .iter()
        .flat_map(|i| {
            i.addresses.iter().map(move |a| (i.name.clone(), IpNet::new(a.addr, a.prefix_len).map(|n| n.trunc())))
        })
        .filter_map(|(n, r)| r.ok().map(|net| (n, net)))
        .collect();
    let mut routes = Vec::new();
    for (family, text) in [("-4", route4_json), ("-6", route6_json)] {
        let list: Vec<RouteJson> =
            serde_json::from_str(text).map_err(|e| format!("ip -j {family} route show table main: {e}"))?;
        for r in list {
            if let Some(route) = route(&r, family, &names, &subnets, &mut host.skipped) {
                if routes.iter().any(|x: &Route| x.to == route.to && x.metric == route.metric) {
                    host.skipped.push(format!("route {}: a second route with the same prefix and metric", route.to));
                    continue;
                }
                routes.push(route);
            }
        }
    }
    let used: Vec<&str> = routes.iter().flat_map(|r| r.devs()).collect();
    host.interfaces = all.into_iter().filter(|i| !i.addresses.is_empty() || used.contains(&i.name.as_str())).collect();
    host.routes = routes;
    labels(addrlabel_json, &mut host)?;
    Ok(host)
}

/// iproute2 6.1 prints `[{}]` when there is no VRF (measured on Linux 6.18 without the VRF
/// driver), so every field may be missing.
#[derive(Deserialize)]
struct VrfLink {
    ifname: Option<String>,
    linkinfo: Option<LinkInfo>,
}

#[derive(Deserialize)]
struct LinkInfo {
    info_kind: Option<String>,
    info_data: Option<VrfData>,
}

#[derive(Deserialize)]
struct VrfData {
    table: Option<u32>,
}

/// The VRFs in `ip -j -d link show type vrf` (an empty output: none), with their tables.
pub fn vrf_tables(vrf_links_json: &str) -> Result<Vec<(String, u32)>, String> {
    if vrf_links_json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let links: Vec<VrfLink> =
        serde_json::from_str(vrf_links_json).map_err(|e| format!("ip -j -d link show type vrf: {e}"))?;
    Ok(links
        .into_iter()
        .filter_map(|l| {
            let info = l.linkinfo?;
            (info.info_kind.as_deref() == Some("vrf")).then_some(())?;
            Some((l.ifname?, info.info_data?.table?))
        })
        .collect())
}

/// The VRFs (from `ip -j -d link show type vrf`) and the routes of their tables (`ip -j -4/-6
/// route show table N`, as (N, IPv4 JSON, IPv6 JSON)), after [`read`]: the VRF devices leave
/// the interfaces, their enslaved interfaces become their members.
pub fn read_vrfs(host: &mut Host, vrf_links_json: &str, tables: &[(u32, String, String)]) -> Result<(), String> {
    for (name, table) in vrf_tables(vrf_links_json)? {
        if let Some(i) = host.interfaces.iter().position(|i| i.name == name) {
            let dev = host.interfaces.remove(i);
            if !dev.addresses.is_empty() {
                host.skipped.push(format!(
                    "VRF device `{name}` has addresses of its own: the format puts addresses on enslaved interfaces only"
                ));
            }
        }
        let members: Vec<String> = host
            .masters
            .iter()
            .filter(|(i, m)| *m == name && host.interfaces.iter().any(|x| &x.name == i))
            .map(|(i, _)| i.clone())
            .collect();
        host.vrfs.push(crate::Vrf { name, table, interfaces: members });
    }
    let names: Vec<String> = host.interfaces.iter().map(|i| i.name.clone()).collect();
    let subnets: Vec<(String, IpNet)> = host
        .interfaces
        .iter()
        .flat_map(|i| {
            i.addresses.iter().map(move |a| (i.name.clone(), IpNet::new(a.addr, a.prefix_len).map(|n| n.trunc())))
        })
        .filter_map(|(n, r)| r.ok().map(|net| (n, net)))
        .collect();
    for (table, route4, route6) in tables {
        if !host.vrfs.iter().any(|v| v.table == *table) {
            continue;
        }
        for (family, text) in [("-4", route4), ("-6", route6)] {
            let list: Vec<RouteJson> =
                serde_json::from_str(text).map_err(|e| format!("ip -j {family} route show table {table}: {e}"))?;
            for r in list {
                let Some(mut route) = route(&r, family, &names, &subnets, &mut host.skipped) else { continue };
                route.table = Some(*table);
                if host.routes.iter().any(|x| x.to == route.to && x.metric == route.metric && x.table == route.table) {
                    host.skipped.push(format!(
                        "route {} table {table}: a second route with the same prefix and metric",
                        route.to
                    ));
                    continue;
                }
                host.routes.push(route);
            }
        }
    }
    Ok(())
}

fn route(
    r: &RouteJson,
    family: &str,
    names: &[String],
    subnets: &[(String, IpNet)],
    skipped: &mut Vec<String>,
) -> Option<Route> {
    if r.protocol.as_deref() == Some("kernel") {
        return None; // made by the kernel for an address: the scenario's addresses make it too
    }
    let kind = r.kind.as_deref().unwrap_or("unicast");
    let to: IpNet = match r.dst.as_str() {
        "default" if family == "-4" => "0.0.0.0/0".parse().expect("prefix"),
        "default" => "::/0".parse().expect("prefix"),
        d if d.contains('/') => d.parse().ok()?,
        d => IpNet::from(d.parse::<IpAddr>().ok()?),
    };
    let default_metric = if family == "-4" { 0 } else { 1024 };
    let metric = r.metric.filter(|m| *m != default_metric);
    let discard = addrsel_model::RouteType::ALL.iter().find(|(w, t)| *w == kind && !t.is_unicast()).map(|(w, _)| *w);
    if let Some(rtype) = discard {
        return Some(Route { metric, rtype: Some(rtype), ..Route::single(to, None, None) });
    }
    if kind != "unicast" {
        skipped.push(format!("route {to}: type {kind}"));
        return None;
    }
    // One path, or each path of a multipath route (the kernel shows a route through a
    // nexthop group with its members expanded, and `nhid`).
    let paths: Vec<(Option<IpAddr>, Option<String>, u16)> = if r.nexthops.is_empty() {
        vec![(r.gateway.or(r.via.as_ref().map(|v| v.host)), r.dev.clone(), 1)]
    } else {
        r.nexthops
            .iter()
            .map(|n| (n.gateway.or(n.via.as_ref().map(|v| v.host)), n.dev.clone(), n.weight.unwrap_or(1)))
            .collect()
    };
    for (via, dev, _) in &paths {
        if let Some(d) = dev
            && !names.contains(d)
        {
            skipped.push(format!("route {to} dev {d}: that interface is not captured"));
            return None;
        }
        if let Some(g) = via {
            let link_local = matches!(g, IpAddr::V6(v6) if v6.is_unicast_link_local());
            let on_link = subnets.iter().any(|(d, net)| {
                dev.as_ref().is_none_or(|x| x == d) && net.contains(g) && net.prefix_len() < net.max_prefix_len()
            });
            if !link_local && !on_link {
                skipped
                    .push(format!("route {to} via {g}: the gateway is on no subnet of its device (an onlink route)"));
                return None;
            }
        }
    }
    if r.nexthops.is_empty() {
        let (via, dev, _) = paths.into_iter().next().expect("one path");
        return Some(Route { src: r.prefsrc, metric, ..Route::single(to, via, dev) });
    }
    let nexthops = paths.into_iter().map(|(via, dev, weight)| Nexthop { via, dev, weight }).collect();
    Some(Route { src: r.prefsrc, metric, nexthops, nexthop_objects: r.nhid.is_some(), ..Route::single(to, None, None) })
}

fn labels(json: &str, host: &mut Host) -> Result<(), String> {
    let rows: Vec<LabelJson> = serde_json::from_str(json).map_err(|e| format!("ip -j addrlabel list: {e}"))?;
    let defaults = KernelLabels::default().list();
    for d in &defaults {
        if !rows
            .iter()
            .any(|r| r.address == d.prefix.addr() && r.prefixlen == d.prefix.prefix_len() && r.label == d.label)
        {
            host.skipped.push(format!(
                "the kernel's default label row {} {} was removed or changed",
                addrsel_policy::c_style(&d.prefix),
                d.label
            ));
        }
    }
    for r in rows {
        let is_default = r.dev.is_none()
            && defaults
                .iter()
                .any(|d| d.prefix.addr() == r.address && d.prefix.prefix_len() == r.prefixlen && d.label == r.label);
        if is_default {
            continue;
        }
        if r.dev.is_some() {
            host.skipped.push(format!("label row {}/{} {} for one device", r.address, r.prefixlen, r.label));
            continue;
        }
        host.addrlabels.push((format!("{}/{}", r.address, r.prefixlen), r.label));
    }
    Ok(())
}

/// The per-interface sysctls source selection reads, where they differ from the default.
pub fn sysctls(values: &[(String, &str, i64)]) -> Vec<(String, String)> {
    values
        .iter()
        .filter(|(_, _, v)| *v != 0)
        .map(|(dev, key, v)| (format!("net.ipv6.conf.{dev}.{key}"), v.to_string()))
        .collect()
}
