//! FreeBSD: `ifconfig` (its text, the only form it has), `netstat --libxo json -rn`,
//! `ip6addrctl show` and rc.conf's `ip6addrctl_policy`.
//!
//! Written by hand because no crate reads them; the formats are those of FreeBSD 14/15's
//! `sbin/ifconfig` (af_inet.c, af_inet6.c) and `usr.bin/netstat` (route_netlink.c), and the
//! tests read real output quoted in FreeBSD reports and man pages. Never run on FreeBSD here.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::{Addr, Host, Interface, Nexthop, Route, usable_name};

/// FreeBSD's name for the loopback; scenarios call it `lo`.
const LO0: &str = "lo0";

fn scenario_name(ifname: &str) -> String {
    if ifname == LO0 { "lo".into() } else { ifname.into() }
}

/// `ifconfig` with no arguments: every interface with its addresses, in the kernel's order.
pub fn read_ifconfig(text: &str, host: &mut Host) -> Result<(), String> {
    let mut current: Option<Interface> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |what: String| format!("ifconfig line {}: {what}", n + 1);
        if !line.starts_with(['\t', ' ']) && !line.is_empty() {
            if let Some(i) = current.take() {
                host.interfaces.push(i);
            }
            let (name, rest) = line.split_once(": ").ok_or_else(|| at("expected `NAME: flags=...`".into()))?;
            let up = rest
                .split_once('<')
                .and_then(|(_, f)| f.split_once('>'))
                .is_some_and(|(f, _)| f.split(',').any(|x| x == "UP"));
            current = Some(Interface { name: name.to_string(), addresses: Vec::new(), down: !up });
            continue;
        }
        let Some(iface) = current.as_mut() else { continue };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("inet") => {
                let addr: IpAddr = words
                    .get(1)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| at("an inet line without an address".into()))?;
                let mask = words.iter().position(|w| *w == "netmask").and_then(|i| words.get(i + 1));
                let len = match mask {
                    Some(m) => u32::from_str_radix(m.trim_start_matches("0x"), 16)
                        .map_err(|_| at(format!("netmask `{m}`")))?
                        .count_ones() as u8,
                    None => words
                        .get(1)
                        .and_then(|a| a.split_once('/'))
                        .and_then(|(_, l)| l.parse().ok())
                        .ok_or_else(|| at("an inet line without a netmask".into()))?,
                };
                iface.addresses.push(Addr::plain(addr, len));
            }
            Some("inet6") => {
                let raw = words.get(1).ok_or_else(|| at("an inet6 line without an address".into()))?;
                let (addr_text, inline_len) = match raw.split_once('/') {
                    Some((a, l)) => (a, l.parse::<u8>().ok()),
                    None => (*raw, None),
                };
                let addr: IpAddr = addr_text
                    .split('%')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| at(format!("`{raw}` is not an address")))?;
                let len = inline_len
                    .or_else(|| {
                        words
                            .iter()
                            .position(|w| *w == "prefixlen")
                            .and_then(|i| words.get(i + 1))
                            .and_then(|l| l.parse().ok())
                    })
                    .ok_or_else(|| at("an inet6 line without a prefix length".into()))?;
                let has = |flag: &str| words.iter().skip(2).any(|w| *w == flag);
                let mut a = Addr::plain(addr, len);
                a.deprecated = has("deprecated");
                a.temporary = has("temporary");
                // An autoconfigured public address is what makes the kernel's temporary ones
                // (in6_tmpifadd): the scenario's mngtmpaddr, which FreeBSD's plan adds as
                // `autoconf`. The format takes /64 templates only.
                a.mngtmpaddr = has("autoconf") && !a.temporary && len == 64;
                a.prefer_source = has("prefer_source");
                a.dad = if has("duplicated") {
                    Some("failed")
                } else if has("tentative") {
                    Some("tentative")
                } else {
                    None
                };
                for flag in ["detached", "anycast"] {
                    if has(flag) {
                        a.unsupported.push(flag.into());
                    }
                }
                iface.addresses.push(a);
            }
            // iffib.c's fib_status: printed only for a FIB other than 0.
            Some("fib:") => {
                let fib = words
                    .get(1)
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(|| at("a fib line without a number".into()))?;
                host.fibs.push((scenario_name(&iface.name), fib));
            }
            _ => {}
        }
    }
    if let Some(i) = current.take() {
        host.interfaces.push(i);
    }
    // The kernel's temporary addresses in an autoconf address's /64 are made again by the
    // scenario (with use_tempaddr = 1), with new random bits.
    for i in &mut host.interfaces {
        let templates: Vec<IpNet> = i
            .addresses
            .iter()
            .filter(|a| a.mngtmpaddr)
            .filter_map(|a| IpNet::new(a.addr, 64).ok())
            .map(|n| n.trunc())
            .collect();
        let name = i.name.clone();
        i.addresses.retain(|a| {
            let made = a.temporary && templates.iter().any(|t| t.contains(&a.addr));
            if made {
                let prefix = IpNet::new(a.addr, 64).map(|n| n.trunc().to_string()).unwrap_or_default();
                host.remade.push(format!(
                    "temporary({prefix}) on {name}, which the kernel made from its autoconf address (with net.inet6.ip6.use_tempaddr = 1)"
                ));
            }
            !made
        });
    }
    // lo0's own 127.0.0.1/8, ::1/128 and fe80::1%lo0 are the scenario's implicit loopback.
    for i in &mut host.interfaces {
        if i.name == LO0 {
            i.addresses.retain(|a| {
                !((a.addr == IpAddr::from([127, 0, 0, 1]) && a.prefix_len == 8)
                    || (a.addr == IpAddr::from(std::net::Ipv6Addr::LOCALHOST) && a.prefix_len == 128)
                    || (a.addr == "fe80::1".parse::<IpAddr>().expect("address") && a.prefix_len == 64))
            });
        }
        i.name = scenario_name(&i.name);
    }
    let (keep, drop): (Vec<Interface>, Vec<Interface>) =
        std::mem::take(&mut host.interfaces).into_iter().partition(|i| usable_name(&i.name));
    for i in drop {
        host.skipped.push(format!("interface `{}`: its name is not usable in a scenario", i.name));
    }
    host.interfaces = keep;
    Ok(())
}

/// `netstat --libxo json -rn`: the static and gateway routes (connected and host routes
/// come from the addresses).
pub fn read_netstat(json: &str, host: &mut Host) -> Result<(), String> {
    read_netstat_fib(json, 0, host)
}

/// `netstat --libxo json -rn -F FIB`: a FIB's routes, which a scenario has in a VRF's table
/// (see [`fibs_as_vrfs`]).
pub fn read_netstat_fib(json: &str, fib: u32, host: &mut Host) -> Result<(), String> {
    let table = (fib != 0).then_some(fib);
    let v: Value = serde_json::from_str(json).map_err(|e| format!("netstat --libxo json -rn -F {fib}: {e}"))?;
    let families = v["statistics"]["route-information"]["route-table"]["rt-family"]
        .as_array()
        .ok_or("netstat --libxo json -rn: no statistics.route-information.route-table.rt-family")?;
    let mut first_weight: std::collections::HashMap<IpNet, u16> = std::collections::HashMap::new();
    for fam in families {
        let v6 = fam["address-family"].as_str() == Some("Internet6");
        for e in fam["rt-entry"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let dst = e["destination"].as_str().unwrap_or("");
            let gw = e["gateway"].as_str().unwrap_or("");
            let flags = e["flags"].as_str().unwrap_or("");
            let ifname = e["interface-name"].as_str().unwrap_or("");
            let discard = if flags.contains('B') {
                Some("blackhole")
            } else if flags.contains('R') {
                Some("unreachable")
            } else {
                None
            };
            if discard.is_some() && (!flags.contains('S') || is_stock_reject(dst)) {
                continue;
            }
            // Routes the kernel makes for addresses and links: no G, no S; and the host route
            // each own address gets through the loopback (H to a link).
            if (!flags.contains('G') && !flags.contains('S')) || (flags.contains('H') && gw.starts_with("link#")) {
                continue;
            }
            let to: IpNet = match dst {
                "default" if v6 => "::/0".parse().expect("prefix"),
                "default" => "0.0.0.0/0".parse().expect("prefix"),
                d => {
                    let d = d.split('%').next().unwrap_or(d);
                    match d.parse::<IpNet>().or_else(|_| d.parse::<IpAddr>().map(IpNet::from)) {
                        Ok(n) => n,
                        Err(_) => {
                            host.skipped.push(format!("route `{dst}`: not a prefix"));
                            continue;
                        }
                    }
                }
            };
            let via = if gw.starts_with("link#") {
                None
            } else {
                gw.split('%').next().and_then(|g| g.parse::<IpAddr>().ok())
            };
            if discard.is_some() {
                host.routes.push(Route { rtype: discard, table, ..Route::single(to, None, None) });
                continue;
            }
            let dev = Some(scenario_name(ifname));
            // netstat prints a multipath route (ROUTE_MPATH) as one line per path, the
            // destination repeated, the weight only in libxo's `weight` field.
            let weight = e["weight"].as_u64().map_or(1, |w| w.clamp(1, 256) as u16);
            if let Some(r) = host.routes.iter_mut().find(|r| r.to == to && r.rtype.is_none() && r.table == table) {
                if r.nexthops.is_empty() {
                    let weight = first_weight.get(&to).copied().unwrap_or(1);
                    r.nexthops.push(Nexthop { via: r.via.take(), dev: r.dev.take(), weight });
                }
                r.nexthops.push(Nexthop { via, dev, weight });
                continue;
            }
            first_weight.insert(to, weight);
            host.routes.push(Route { table, ..Route::single(to, via, dev) });
        }
    }
    Ok(())
}

/// FIBs other than 0 as the scenario's VRFs (`fibN`, table N, the interfaces ifconfig shows in
/// it), after [`read_ifconfig`] and [`read_netstat_fib`] for each FIB: FreeBSD's plan gives the
/// VRFs FIBs 1, 2, ... in table order again.
pub fn fibs_as_vrfs(host: &mut Host) {
    let mut fibs: Vec<u32> =
        host.fibs.iter().map(|(_, f)| *f).chain(host.routes.iter().filter_map(|r| r.table)).collect();
    fibs.sort_unstable();
    fibs.dedup();
    for fib in fibs {
        if matches!(fib, 253..=255) {
            // Linux's own tables: no VRF can have them.
            host.skipped.push(format!(
                "FIB {fib}: its number is one of Linux's own tables, so no VRF of a scenario can hold it"
            ));
            host.routes.retain(|r| r.table != Some(fib));
            continue;
        }
        let members: Vec<String> = host
            .fibs
            .iter()
            .filter(|(i, f)| *f == fib && host.interfaces.iter().any(|x| &x.name == i))
            .map(|(i, _)| i.clone())
            .collect();
        host.vrfs.push(crate::Vrf { name: format!("fib{fib}"), table: fib, interfaces: members });
    }
}

/// The reject routes every FreeBSD has (`::/96`, `::ffff:0.0.0.0/96`, fe80::/10 and ff02::/16
/// on lo0, added by rc.d's `network_ipv6`).
fn is_stock_reject(dst: &str) -> bool {
    ["::/96", "::ffff:0.0.0.0/96", "fe80::/10", "ff02::/16"].contains(&dst.split('%').next().unwrap_or(dst))
}

/// `ip6addrctl show`: the kernel's policy table, as the ip6addrctl.conf that installs it.
pub fn read_ip6addrctl_show(text: &str, host: &mut Host) -> Result<(), String> {
    let table = addrsel_policy::ip6addrctl::parse_show(text).map_err(|e| format!("ip6addrctl show: {e}"))?;
    host.ip6addrctl_conf = Some(addrsel_policy::ip6addrctl::print_conf(&table));
    Ok(())
}

/// rc.conf (and rc.conf.local): the last `ip6addrctl_policy=` wins, as sh sources them.
pub fn read_rc_conf(text: &str, host: &mut Host) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(v) = line.strip_prefix("ip6addrctl_policy=") {
            host.ip6addrctl_policy = Some(v.trim_matches(['"', '\'']).to_string());
        }
    }
}
