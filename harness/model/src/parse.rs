//! Scenario TOML -> [`Scenario`], with every problem reported at its file, line and column.
//!
//! Two passes: serde (with spans) for the shape, then validation of every value. All
//! errors of a file are collected, not just the first.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::Range;

use addrsel_policy::addrlabel::{KernelLabels, LabelRow};
use addrsel_policy::gai_conf::{GaiConf, GlibcParser};
use addrsel_policy::{PolicyRow, PolicyTable, ip6addrctl};
use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::diag::{Diagnostic, Errors, Severity, SourceMap};
use crate::scenario::*;

/// A scenario and the warnings found while reading it.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub scenario: Scenario,
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates one scenario file. `path` is used only in messages.
pub fn parse_scenario(path: &str, text: &str) -> Result<Parsed, Errors> {
    let map = SourceMap { path, text };
    let raw: RawScenario = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            return Err(Errors(vec![map.at(offset, Severity::Error, e.message().trim().to_string())]));
        }
    };
    let mut v = Validator { map, errors: Vec::new(), warnings: Vec::new() };
    let scenario = v.scenario(raw);
    if v.errors.is_empty() {
        Ok(Parsed { scenario, warnings: v.warnings })
    } else {
        v.errors.sort_by_key(|d| (d.line, d.column));
        Err(Errors(v.errors))
    }
}

// ---------------------------------------------------------------------------------------
// Raw shape (serde)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    interfaces: Vec<Spanned<RawInterface>>,
    #[serde(default)]
    vrfs: Vec<Spanned<RawVrf>>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    hosts: Ordered<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    policy: Option<RawPolicy>,
    #[serde(default)]
    sysctl: Option<RawSysctl>,
    #[serde(default)]
    probes: Vec<Spanned<RawProbe>>,
    #[serde(default)]
    expect: Vec<Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<RawAddress>>,
    up: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVrf {
    name: Spanned<String>,
    table: Spanned<u32>,
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
}

/// `"10.0.0.50/24"` or `{ address = "...", deprecated = true, ... }`.
struct RawAddress {
    address: Spanned<String>,
    deprecated: bool,
    temporary: bool,
    home: bool,
    prefer_source: bool,
    mngtmpaddr: bool,
    dad: Option<String>,
}

impl<'de> Deserialize<'de> for RawAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAddress;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an address string like \"10.0.0.50/24\" or a table { address = \"...\", deprecated = true }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawAddress, E> {
                Ok(RawAddress {
                    address: Spanned::new(0..0, s.to_string()),
                    deprecated: false,
                    temporary: false,
                    home: false,
                    prefer_source: false,
                    mngtmpaddr: false,
                    dad: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawAddress, A::Error> {
                let mut out = RawAddress {
                    address: Spanned::new(0..0, String::new()),
                    deprecated: false,
                    temporary: false,
                    home: false,
                    prefer_source: false,
                    mngtmpaddr: false,
                    dad: None,
                };
                let mut seen_address = false;
                while let Some(key) = m.next_key::<String>()? {
                    match key.as_str() {
                        "address" => {
                            out.address = m.next_value()?;
                            seen_address = true;
                        }
                        "deprecated" => out.deprecated = m.next_value()?,
                        "temporary" => out.temporary = m.next_value()?,
                        "home" => out.home = m.next_value()?,
                        "prefer_source" => out.prefer_source = m.next_value()?,
                        "mngtmpaddr" => out.mngtmpaddr = m.next_value()?,
                        "dad" => out.dad = Some(m.next_value()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["address", "deprecated", "temporary", "home", "prefer_source", "mngtmpaddr", "dad"],
                            ));
                        }
                    }
                }
                if !seen_address {
                    return Err(de::Error::missing_field("address"));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: Spanned<String>,
    via: Option<Spanned<String>>,
    dev: Option<Spanned<String>>,
    src: Option<Spanned<String>>,
    metric: Option<Spanned<u32>>,
    install: Option<Spanned<String>>,
    #[serde(rename = "type")]
    rtype: Option<Spanned<String>>,
    table: Option<Spanned<u32>>,
    vrf: Option<Spanned<String>>,
    nexthops: Option<Spanned<Vec<Spanned<RawNexthop>>>>,
    nexthop_objects: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNexthop {
    via: Option<Spanned<String>>,
    dev: Option<Spanned<String>>,
    weight: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    table: Option<Spanned<Vec<Spanned<RawPolicyRow>>>>,
    linux: Option<Spanned<RawLinuxPolicy>>,
    freebsd: Option<Spanned<RawFreebsdPolicy>>,
}

/// `["PREFIX/LEN", PRECEDENCE, LABEL]`.
type RawPolicyRow = (Spanned<String>, Spanned<i64>, Spanned<i64>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLinuxPolicy {
    gai_conf: Option<Spanned<String>>,
    #[serde(default)]
    addrlabels: Vec<Spanned<RawLabelRow>>,
}

/// `["fd00::/8", 1]` or `["fd00::/8", 1, "wlan0"]`.
struct RawLabelRow {
    prefix: Spanned<String>,
    label: Spanned<i64>,
    dev: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawLabelRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLabelRow;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row [\"PREFIX/LEN\", LABEL] or [\"PREFIX/LEN\", LABEL, \"DEV\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<RawLabelRow, A::Error> {
                let prefix = s.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let label = s.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let dev = s.next_element()?;
                if s.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(RawLabelRow { prefix, label, dev })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreebsdPolicy {
    ip6addrctl_conf: Option<Spanned<String>>,
    ip6addrctl_policy: Option<Spanned<String>>,
    rc_conf_ipv6: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSysctl {
    #[serde(default)]
    linux: Ordered<Spanned<String>, Spanned<SysctlValue>>,
    #[serde(default)]
    freebsd: Ordered<Spanned<String>, Spanned<SysctlValue>>,
}

/// Sysctl values may be written as strings or integers.
struct SysctlValue(String);

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SysctlValue, E> {
                Ok(SysctlValue(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    id: Spanned<String>,
    connect: Option<Spanned<String>>,
    resolve: Option<Spanned<String>>,
    icmp_time_exceeded: Option<Spanned<RawIcmp>>,
    #[serde(default)]
    prefer: Vec<Spanned<String>>,
    kernel_module_varies: Option<Spanned<String>>,
    resolvers: Option<Spanned<Vec<Spanned<String>>>>,
    bind: Option<Spanned<String>>,
    bind_device: Option<Spanned<String>>,
    vrf: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIcmp {
    from: Spanned<String>,
    to: Spanned<String>,
    sender: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    probe: Spanned<String>,
    resolver: Option<Spanned<String>>,
    os: Spanned<String>,
    target: Option<Spanned<String>>,
    glibc: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    error: Option<Spanned<String>>,
    order: Option<Spanned<Vec<Spanned<String>>>>,
    evidence: Option<Spanned<String>>,
}

/// A TOML table read as a list of entries in document order.
struct Ordered<K, V>(Vec<(K, V)>);

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Vis<K, V> {
            type Value = Ordered<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

// ---------------------------------------------------------------------------------------
// Validation

struct Validator<'a> {
    map: SourceMap<'a>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// Interface names that would collide with OS-level names or the harness's own.
const RESERVED_IFNAMES: &[&str] = &["all", "default", "lo0"];
const PEER_PREFIX: &str = "addrsel";

impl Validator<'_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.errors.push(self.map.at(span.start, Severity::Error, message));
    }

    fn error_at_line(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            path: self.map.path.to_string(),
            line,
            column: 1,
            severity: Severity::Error,
            message: message.into(),
        });
    }

    fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.warnings.push(self.map.at(span.start, Severity::Warning, message));
    }

    fn warn_at_line(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            path: self.map.path.to_string(),
            line,
            column: 1,
            severity: Severity::Warning,
            message: message.into(),
        });
    }

    fn scenario(&mut self, raw: RawScenario) -> Scenario {
        let name = raw.name.get_ref().clone();
        if !is_slug(&name) {
            self.error(&raw.name.span(), format!("name `{name}` must be lowercase letters, digits and '-'"));
        }
        let interfaces = self.interfaces(&raw.interfaces);
        let mut s = Scenario {
            name,
            description: raw.description.trim().to_string(),
            interfaces,
            vrfs: Vec::new(),
            routes: Vec::new(),
            hosts: Vec::new(),
            policy: Policy::default(),
            sysctl: Sysctls::default(),
            probes: Vec::new(),
            expect: Vec::new(),
        };
        s.vrfs = self.vrfs(&s, &raw.vrfs);
        for r in &raw.routes {
            if let Some(route) = self.route(&s, r) {
                // The kernel refuses a second route to the same prefix with the same metric
                // in one table (EEXIST), whatever its next hop.
                let metric = |x: &Route| x.metric.unwrap_or(if x.to.addr().is_ipv4() { 0 } else { 1024 });
                if let Some(first) =
                    s.routes.iter().find(|x| x.to == route.to && metric(x) == metric(&route) && x.table == route.table)
                {
                    self.error(
                        &r.span(),
                        format!(
                            "a route to {} with metric {} is already declared (via {}): the kernel refuses the second with EEXIST; give one a different metric",
                            route.to,
                            metric(&route),
                            first.via.map_or("its device".to_string(), |v| v.to_string())
                        ),
                    );
                    continue;
                }
                s.routes.push(route);
            }
        }
        s.hosts = self.hosts(&raw.hosts);
        if let Some(policy) = &raw.policy {
            s.policy = self.policy(&s, policy);
        }
        if let Some(sysctl) = &raw.sysctl {
            s.sysctl = Sysctls {
                linux: self.sysctls(&s, &sysctl.linux, SysctlOs::Linux),
                freebsd: self.sysctls(&s, &sysctl.freebsd, SysctlOs::Freebsd),
            };
        }
        s.probes = self.probes(&s, &raw.probes);
        s.expect = raw.expect.iter().filter_map(|e| self.expect(&s, e)).collect();
        s
    }

    fn interfaces(&mut self, raw: &[Spanned<RawInterface>]) -> Vec<Interface> {
        let mut lo = Interface {
            name: LOOPBACK.into(),
            addresses: vec![
                Address::plain(IpAddr::from([127, 0, 0, 1]), 8),
                Address::plain(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ],
            up: true,
        };
        let mut others = Vec::new();
        let mut names = HashSet::new();
        // Which interface holds each address: Linux lets two interfaces hold the same one (a
        // kselftest relies on it), but not one interface twice.
        let mut seen_addrs: std::collections::HashMap<IpAddr, String> =
            lo.addresses.iter().map(|a| (a.addr, LOOPBACK.to_string())).collect();
        for ri in raw {
            let ri = ri.get_ref();
            let name = ri.name.get_ref();
            let span = ri.name.span();
            if let Err(why) = check_ifname(name).or_else(|e| if name == LOOPBACK { Ok(()) } else { Err(e) }) {
                self.error(&span, why);
                continue;
            }
            if !names.insert(name.clone()) {
                self.error(&span, format!("interface `{name}` is declared twice"));
                continue;
            }
            let mut addresses = Vec::new();
            for ra in &ri.addresses {
                // A bare string has no inner span; use the entry's.
                let entry_span = ra.span();
                let ra = ra.get_ref();
                let span = if ra.address.span().is_empty() { entry_span } else { ra.address.span() };
                let Some(addr) = self.address(&span, ra, name) else {
                    continue;
                };
                let implicit =
                    addr.addr == IpAddr::from([127, 0, 0, 1]) || addr.addr == IpAddr::V6(Ipv6Addr::LOCALHOST);
                match seen_addrs.get(&addr.addr) {
                    Some(_) if implicit => {
                        self.error(&span, format!("address {} is assigned twice (lo always has 127.0.0.1/8 and ::1/128; do not declare them)", addr.addr));
                        continue;
                    }
                    Some(holder) if holder == name => {
                        self.error(&span, format!("address {} is assigned twice to `{name}`", addr.addr));
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        seen_addrs.insert(addr.addr, name.clone());
                    }
                }
                addresses.push(addr);
            }
            let up = ri.up.as_ref().is_none_or(|u| *u.get_ref());
            if name == LOOPBACK {
                if let Some(u) = ri.up.as_ref().filter(|u| !*u.get_ref()) {
                    self.error(&u.span(), "lo is always up here (every scenario uses it)");
                }
                lo.addresses.extend(addresses);
            } else {
                others.push(Interface { name: name.clone(), addresses, up });
            }
        }
        let mut all = vec![lo];
        all.extend(others);
        all
    }

    /// `[[vrfs]]`: names like interfaces', tables of their own, each interface in one VRF.
    fn vrfs(&mut self, s: &Scenario, raw: &[Spanned<RawVrf>]) -> Vec<Vrf> {
        let mut out: Vec<Vrf> = Vec::new();
        for rv in raw {
            let rv = rv.get_ref();
            let (name, span) = (rv.name.get_ref(), rv.name.span());
            if let Err(why) = check_ifname(name) {
                self.error(&span, why);
                continue;
            }
            if s.interface(name).is_some() || out.iter().any(|v| &v.name == name) {
                self.error(&span, format!("`{name}` is already an interface or a VRF: a VRF is a device of its own"));
                continue;
            }
            let table = *rv.table.get_ref();
            match table {
                0 | 253..=255 => {
                    self.error(
                        &rv.table.span(),
                        format!("table {table} is the kernel's own (0 unspec, 253 default, 254 main, 255 local): a VRF needs a table of its own"),
                    );
                    continue;
                }
                _ if out.iter().any(|v| v.table == table) => {
                    self.error(&rv.table.span(), format!("table {table} already belongs to another VRF"));
                    continue;
                }
                _ => {}
            }
            let mut interfaces: Vec<String> = Vec::new();
            for i in &rv.interfaces {
                let iname = i.get_ref();
                if iname == LOOPBACK || s.interface(iname).is_none() {
                    self.error(&i.span(), format!("`{iname}` is not a declared interface (lo cannot join a VRF)"));
                } else if let Some(other) = out
                    .iter()
                    .find(|v| v.interfaces.contains(iname))
                    .map(|v| v.name.clone())
                    .or_else(|| interfaces.contains(iname).then(|| name.clone()))
                {
                    self.error(
                        &i.span(),
                        format!("`{iname}` is already in VRF `{other}`: an interface has one master"),
                    );
                } else {
                    interfaces.push(iname.clone());
                }
            }
            out.push(Vrf { name: name.clone(), table, interfaces });
        }
        out
    }

    fn address(&mut self, span: &Range<usize>, ra: &RawAddress, ifname: &str) -> Option<Address> {
        let text = ra.address.get_ref();
        let net: IpNet = match text.parse() {
            Ok(n) => n,
            Err(_) => {
                let hint = if text.parse::<IpAddr>().is_ok() { " (the prefix length is required)" } else { "" };
                self.error(
                    span,
                    format!("`{text}` is not ADDRESS/PREFIXLEN, for example 10.0.0.50/24 or fd00::1/64{hint}"),
                );
                return None;
            }
        };
        let addr = net.addr();
        let bad = match addr {
            IpAddr::V4(a) if a.is_unspecified() || a.is_multicast() || a.is_broadcast() => {
                Some("unspecified, multicast and broadcast addresses cannot be assigned")
            }
            IpAddr::V6(a) if a.is_unspecified() || a.is_multicast() => {
                Some("unspecified and multicast addresses cannot be assigned")
            }
            IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
                Some("IPv4-mapped addresses cannot be assigned; give the IPv4 address instead")
            }
            _ => None,
        };
        if let Some(why) = bad {
            self.error(span, format!("`{text}`: {why}"));
            return None;
        }
        let v6_only = [
            ("temporary", ra.temporary),
            ("home", ra.home),
            ("prefer_source", ra.prefer_source),
            ("mngtmpaddr", ra.mngtmpaddr),
        ];
        if addr.is_ipv4() {
            for (flag, set) in v6_only {
                if set {
                    self.error(span, format!("`{flag}` applies to IPv6 addresses only ({text})"));
                    return None;
                }
            }
        }
        if ifname == LOOPBACK && (ra.temporary || ra.home || ra.mngtmpaddr) {
            self.error(span, format!("`{text}`: temporary, mngtmpaddr and home addresses cannot live on lo"));
            return None;
        }
        let dad = match ra.dad.as_deref() {
            None => Dad::Done,
            Some(w) => match Dad::ALL.iter().find(|(word, _)| *word == w) {
                Some((_, d)) if addr.is_ipv6() && ifname != LOOPBACK && !ra.mngtmpaddr => *d,
                Some(_) => {
                    self.error(
                        span,
                        format!("`{text}`: dad applies to IPv6 addresses off lo, and not to a mngtmpaddr template"),
                    );
                    return None;
                }
                None => {
                    self.error(span, format!("`{text}`: dad = `{w}`: one of tentative, optimistic, failed (leave it out for a usable address, added with nodad)"));
                    return None;
                }
            },
        };
        if ra.mngtmpaddr && net.prefix_len() != 64 {
            // iproute2 6.1 on Linux 6.1-6.18: "address with "mngtmpaddr" flag must have a
            // prefix length of 64".
            self.error(span, format!("`{text}`: the kernel refuses mngtmpaddr on a prefix length other than 64"));
            return None;
        }
        if ra.mngtmpaddr && ra.temporary {
            self.error(span, format!("`{text}`: an address is either the template (mngtmpaddr) or temporary"));
            return None;
        }
        if let IpAddr::V6(v6) = addr
            && u128::from(v6) as u64 == crate::addr_names::KERNEL_TEMPORARY_IID
        {
            self.error(
                span,
                format!("`{text}`: this interface ID names the kernel's temporary address in results (temporary(PREFIX)); choose another"),
            );
            return None;
        }
        Some(Address {
            addr,
            prefix_len: net.prefix_len(),
            deprecated: ra.deprecated,
            temporary: ra.temporary,
            home: ra.home,
            prefer_source: ra.prefer_source,
            mngtmpaddr: ra.mngtmpaddr,
            dad,
        })
    }

    fn route(&mut self, s: &Scenario, raw: &Spanned<RawRoute>) -> Option<Route> {
        let r = raw.get_ref();
        let mut ok = true;
        let to_text = r.to.get_ref();
        let to: Option<IpNet> = match to_text.parse::<IpNet>() {
            Ok(n) if n.trunc() != n => {
                self.error(&r.to.span(), format!("`{to_text}` has host bits set; write {}", n.trunc()));
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    &r.to.span(),
                    format!("`{to_text}` is not a prefix; write for example 0.0.0.0/0, 203.0.113.2/32 or ::/0"),
                );
                None
            }
        };
        let dev = match &r.dev {
            Some(d) if s.interface(d.get_ref()).is_none() => {
                self.error(
                    &d.span(),
                    format!(
                        "route device `{}` is not a declared interface (known: {})",
                        d.get_ref(),
                        s.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                );
                ok = false;
                None
            }
            Some(d) => Some(d.get_ref().clone()),
            None => None,
        };
        let via = match &r.via {
            None => None,
            Some(v) => match v.get_ref().parse::<IpAddr>() {
                Ok(a) => Some((a, v.span())),
                Err(_) => {
                    self.error(
                        &v.span(),
                        format!(
                            "`{}` is not an address (`via` takes a next-hop address, no prefix length)",
                            v.get_ref()
                        ),
                    );
                    ok = false;
                    None
                }
            },
        };
        let table = match (&r.table, &r.vrf) {
            (Some(t), Some(v)) => {
                self.error(&v.span(), format!("give `table = {}` or `vrf`, not both", t.get_ref()));
                ok = false;
                None
            }
            (Some(t), None) => match s.vrfs.iter().find(|v| v.table == *t.get_ref()) {
                Some(v) => Some(v.table),
                None => {
                    self.error(
                        &t.span(),
                        format!(
                            "table {} is no VRF's: declare a [[vrfs]] with table = {} (routes in other tables are not modelled)",
                            t.get_ref(),
                            t.get_ref()
                        ),
                    );
                    ok = false;
                    None
                }
            },
            (None, Some(v)) => match s.vrf(v.get_ref()) {
                Some(vrf) => Some(vrf.table),
                None => {
                    self.error(&v.span(), format!("vrf `{}` is not declared in [[vrfs]]", v.get_ref()));
                    ok = false;
                    None
                }
            },
            (None, None) => None,
        };
        let to = to?;
        let rtype = match r.rtype.as_ref() {
            None => RouteType::Unicast,
            Some(t) => match RouteType::ALL.iter().find(|(w, _)| *w == t.get_ref().as_str()) {
                Some((_, rt)) => *rt,
                None => {
                    self.error(
                        &t.span(),
                        format!(
                            "route type `{}`: one of unicast, blackhole, unreachable, prohibit, throw",
                            t.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        if !rtype.is_unicast() {
            // `ip route add blackhole PREFIX`: the kernel refuses no next hop for these types,
            // but none is used; a scenario that names one would suggest otherwise.
            for (field, span) in [
                ("via", r.via.as_ref().map(|v| v.span())),
                ("dev", r.dev.as_ref().map(|d| d.span())),
                ("src", r.src.as_ref().map(|v| v.span())),
                ("install", r.install.as_ref().map(|v| v.span())),
                ("nexthops", r.nexthops.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    self.error(
                        &span,
                        format!("a {} route takes no `{field}`: it sends nothing anywhere", rtype.word()),
                    );
                    ok = false;
                }
            }
            return ok.then(|| Route {
                to,
                via: None,
                dev: None,
                src: None,
                metric: r.metric.as_ref().map(|m| *m.get_ref()),
                install: RouteInstall::Netlink,
                rtype,
                table,
                nexthops: vec![],
                nexthop_objects: false,
            });
        }
        if let Some(objects) = r.nexthop_objects.as_ref().filter(|_| r.nexthops.is_none()) {
            self.error(&objects.span(), "`nexthop_objects` applies to a route with `nexthops`");
            ok = false;
        }
        if let Some(list) = &r.nexthops {
            return self.multipath(s, raw, list, to, table).filter(|_| ok);
        }
        if r.via.is_none() && dev.is_none() {
            self.error(&raw.span(), "a route needs `via`, `dev` or both (or a `type` such as \"blackhole\")");
            return None;
        }
        if let Some(d) = dev.as_deref().and_then(|d| s.interface(d)).filter(|i| !i.up) {
            // iproute2 on Linux 6.18: "Error: Device for nexthop is not up."
            let span = r.dev.as_ref().map(|d| d.span()).unwrap_or_else(|| raw.span());
            self.error(
                &span,
                format!("`{}` is down (up = false): the kernel refuses a route through a down link", d.name),
            );
            return None;
        }
        if let Some((via, span)) = &via {
            match (to, via) {
                (IpNet::V6(_), IpAddr::V4(_)) => {
                    self.error(span, "an IPv6 route cannot have an IPv4 next hop");
                    ok = false;
                }
                (_, IpAddr::V6(v6)) if v6.is_unicast_link_local() && dev.is_none() => {
                    self.error(span, format!("link-local next hop {via} needs `dev` (which link is it on?)"));
                    ok = false;
                }
                _ => {}
            }
            if s.addresses().any(|(_, a)| a.addr == *via) {
                self.error(span, format!("next hop {via} is one of this host's own addresses"));
                ok = false;
            }
            let link_local = matches!(via, IpAddr::V6(v6) if v6.is_unicast_link_local());
            if !link_local {
                let family = if via.is_ipv4() { "IPv4" } else { "IPv6" };
                let on_link = s
                    .addresses()
                    .filter(|(i, _)| i.up && dev.as_deref().is_none_or(|d| d == i.name))
                    .any(|(_, a)| a.net().trunc().contains(via) && a.prefix_len < if via.is_ipv4() { 32 } else { 128 });
                if !on_link {
                    self.error(span, format!("next hop {via} is not inside any {family} subnet of {} that is up (the kernel refuses an unreachable gateway)", dev.as_deref().map_or("this host".to_string(), |d| format!("`{d}`"))));
                    ok = false;
                }
            }
        }
        let src = match &r.src {
            None => None,
            Some(sp) => match sp.get_ref().parse::<IpAddr>() {
                Ok(a) if !s.addresses().any(|(_, x)| x.addr == a) => {
                    self.error(&sp.span(), format!("preferred source {a} is not an address of this host"));
                    ok = false;
                    None
                }
                Ok(a) if a.is_ipv4() != to.addr().is_ipv4() => {
                    self.error(&sp.span(), format!("preferred source {a} is not of the route's family"));
                    ok = false;
                    None
                }
                Ok(a) => Some(a),
                Err(_) => {
                    self.error(&sp.span(), format!("`{}` is not an address", sp.get_ref()));
                    ok = false;
                    None
                }
            },
        };
        let install = match r.install.as_ref().map(|i| (i.get_ref().as_str(), i.span())) {
            None | Some(("netlink", _)) => RouteInstall::Netlink,
            Some(("rtsock", span)) if r.via.is_none() => {
                self.error(&span, "install = \"rtsock\" needs `via`: the agent's RTM_ADD names a gateway");
                ok = false;
                RouteInstall::Rtsock
            }
            Some(("rtsock", _)) => RouteInstall::Rtsock,
            Some((other, span)) => {
                self.error(
                    &span,
                    format!("install = `{other}`: a FreeBSD route is added through \"netlink\" or \"rtsock\""),
                );
                ok = false;
                RouteInstall::Netlink
            }
        };
        ok.then(|| Route {
            to,
            via: via.map(|(a, _)| a),
            dev,
            src,
            metric: r.metric.as_ref().map(|m| *m.get_ref()),
            install,
            rtype,
            table,
            nexthops: vec![],
            nexthop_objects: false,
        })
    }

    /// `nexthops = [{ via, dev, weight }, ...]`: two or more paths, each a gateway the kernel
    /// accepts (on an up subnet of its device) or a device.
    fn multipath(
        &mut self,
        s: &Scenario,
        raw: &Spanned<RawRoute>,
        list: &Spanned<Vec<Spanned<RawNexthop>>>,
        to: IpNet,
        table: Option<u32>,
    ) -> Option<Route> {
        let r = raw.get_ref();
        let mut ok = true;
        for (field, span) in [
            ("via", r.via.as_ref().map(|v| v.span())),
            ("dev", r.dev.as_ref().map(|d| d.span())),
            ("install", r.install.as_ref().map(|v| v.span())),
        ] {
            if let Some(span) = span {
                self.error(&span, format!("a multipath route names its paths in `nexthops`; `{field}` goes there"));
                ok = false;
            }
        }
        if list.get_ref().len() < 2 {
            self.error(&list.span(), "`nexthops` needs two paths or more (one path: write `via` and `dev`)");
            return None;
        }
        let mut nexthops = Vec::new();
        for nh in list.get_ref() {
            let (span, nh) = (nh.span(), nh.get_ref());
            let dev = match &nh.dev {
                Some(d) => match s.interface(d.get_ref()) {
                    None => {
                        self.error(&d.span(), format!("next hop device `{}` is not a declared interface", d.get_ref()));
                        ok = false;
                        continue;
                    }
                    Some(i) if !i.up => {
                        self.error(
                            &d.span(),
                            format!("`{}` is down (up = false): the kernel refuses a path through it", i.name),
                        );
                        ok = false;
                        continue;
                    }
                    Some(i) => Some(i.name.clone()),
                },
                None => None,
            };
            let via = match &nh.via {
                None => None,
                Some(v) => match v.get_ref().parse::<IpAddr>() {
                    Ok(a) => Some((a, v.span())),
                    Err(_) => {
                        self.error(&v.span(), format!("`{}` is not an address", v.get_ref()));
                        ok = false;
                        continue;
                    }
                },
            };
            if via.is_none() && dev.is_none() {
                self.error(&span, "a next hop needs `via`, `dev` or both");
                ok = false;
                continue;
            }
            if let Some((via, vspan)) = &via {
                let link_local = matches!(via, IpAddr::V6(v6) if v6.is_unicast_link_local());
                if to.addr().is_ipv6() && via.is_ipv4() {
                    self.error(vspan, "an IPv6 route cannot have an IPv4 next hop");
                    ok = false;
                } else if link_local && dev.is_none() {
                    self.error(vspan, format!("link-local next hop {via} needs `dev`"));
                    ok = false;
                } else if !link_local
                    && !s.addresses().filter(|(i, _)| i.up && dev.as_deref().is_none_or(|d| d == i.name)).any(
                        |(_, a)| a.net().trunc().contains(via) && a.prefix_len < if via.is_ipv4() { 32 } else { 128 },
                    )
                {
                    self.error(vspan, format!("next hop {via} is not inside any subnet of {} that is up (the kernel refuses an unreachable gateway)", dev.as_deref().map_or("this host".to_string(), |d| format!("`{d}`"))));
                    ok = false;
                }
            }
            let weight = match &nh.weight {
                None => 1,
                Some(w) if (1..=256).contains(w.get_ref()) => *w.get_ref(),
                Some(w) => {
                    self.error(&w.span(), format!("weight {} is outside 1..=256", w.get_ref()));
                    ok = false;
                    1
                }
            };
            nexthops.push(Nexthop { via: via.map(|(a, _)| a), dev, weight });
        }
        let src = match &r.src {
            None => None,
            Some(sp) => match sp.get_ref().parse::<IpAddr>() {
                Ok(a) if s.addresses().any(|(_, x)| x.addr == a) && a.is_ipv4() == to.addr().is_ipv4() => Some(a),
                _ => {
                    self.error(
                        &sp.span(),
                        format!(
                            "preferred source `{}` is not an address of this host of the route's family",
                            sp.get_ref()
                        ),
                    );
                    ok = false;
                    None
                }
            },
        };
        ok.then(|| Route {
            to,
            via: None,
            dev: None,
            src,
            metric: r.metric.as_ref().map(|m| *m.get_ref()),
            install: RouteInstall::Netlink,
            rtype: RouteType::Unicast,
            table,
            nexthops,
            nexthop_objects: r.nexthop_objects.as_ref().is_some_and(|o| *o.get_ref()),
        })
    }

    fn hosts(&mut self, raw: &Ordered<Spanned<String>, Spanned<Vec<Spanned<String>>>>) -> Vec<HostEntry> {
        let mut out = Vec::new();
        for (name, addrs) in &raw.0 {
            let n = name.get_ref();
            if !is_hostname(n) {
                self.error(&name.span(), format!("`{n}` is not a host name (letters, digits, '-' and '.')"));
                continue;
            }
            if addrs.get_ref().is_empty() {
                self.error(&addrs.span(), format!("`{n}` needs at least one address"));
                continue;
            }
            let mut addresses = Vec::new();
            for a in addrs.get_ref() {
                match a.get_ref().parse::<IpAddr>() {
                    Ok(ip) => addresses.push(ip),
                    Err(_) => self.error(
                        &a.span(),
                        format!(
                            "`{}` is not an IP address (zones and prefixes are not allowed in /etc/hosts)",
                            a.get_ref()
                        ),
                    ),
                }
            }
            out.push(HostEntry { name: n.clone(), addresses });
        }
        out
    }

    fn policy(&mut self, s: &Scenario, raw: &RawPolicy) -> Policy {
        let mut policy = Policy::default();
        if let Some(table) = &raw.table {
            let mut rows = Vec::new();
            let mut seen = HashSet::new();
            for row in table.get_ref() {
                let (p, prec, label) = row.get_ref();
                let Some(prefix) = self.v6_prefix(p) else {
                    continue;
                };
                let mut number = |n: &Spanned<i64>, what: &str| match i32::try_from(*n.get_ref()) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        self.error(&n.span(), format!("{what} {} does not fit a C int", n.get_ref()));
                        None
                    }
                };
                let (Some(precedence), Some(label)) = (number(prec, "precedence"), number(label, "label")) else {
                    continue;
                };
                if !seen.insert(prefix.trunc()) {
                    self.error(&p.span(), format!("prefix {prefix} appears twice in the table"));
                    continue;
                }
                rows.push(PolicyRow { prefix, precedence, label });
            }
            let table_span = table.span();
            let t = PolicyTable::new(rows);
            if raw.linux.is_none() {
                self.table_fits_linux(&t, &table_span);
            }
            let freebsd_uses_table = raw.freebsd.as_ref().is_none_or(|f| f.get_ref().ip6addrctl_conf.is_none());
            if let Some(r) = t.rows.iter().find(|r| r.label == -1).filter(|_| freebsd_uses_table) {
                self.error(
                    &table_span,
                    format!("label -1 for {} is refused by FreeBSD's kernel (it means \"not applicable\")", r.prefix),
                );
            }
            policy.table = Some(t);
        }
        if let Some(linux) = &raw.linux {
            let l = linux.get_ref();
            let mut lp = LinuxPolicy::default();
            if let Some(text) = &l.gai_conf {
                self.check_gai_conf(text);
                lp.gai_conf = Some(text.get_ref().clone());
            }
            let mut kernel = KernelLabels::default();
            for row in &l.addrlabels {
                let r = row.get_ref();
                let Some(prefix) = self.v6_prefix(&r.prefix) else {
                    continue;
                };
                let label = match u32::try_from(*r.label.get_ref()) {
                    Ok(v) => v,
                    Err(_) => {
                        self.error(&r.label.span(), format!("label {} is not from 0 to 4294967294", r.label.get_ref()));
                        continue;
                    }
                };
                let dev = r.dev.as_ref().map(|d| d.get_ref().clone());
                if let Some((d, span)) =
                    dev.as_ref().zip(r.dev.as_ref().map(|d| d.span())).filter(|(d, _)| s.interface(d).is_none())
                {
                    self.error(&span, format!("`{d}` is not a declared interface"));
                    continue;
                }
                let row_value = LabelRow { prefix, label, dev };
                if let Err(refused) = kernel.add(&row_value) {
                    self.error(
                        &row.span(),
                        format!("`ip addrlabel add` would fail with {}: {}", refused.errno, refused.reason),
                    );
                    continue;
                }
                lp.addrlabels.push(row_value);
            }
            policy.linux = Some(lp);
        }
        if let Some(freebsd) = &raw.freebsd {
            let f = freebsd.get_ref();
            let mut fp = FreebsdPolicy::default();
            if let Some(text) = &f.ip6addrctl_conf {
                self.check_ip6addrctl_conf(text);
                fp.ip6addrctl_conf = Some(text.get_ref().clone());
            }
            if let Some(value) = &f.ip6addrctl_policy {
                let state = Ip6addrctlPolicy::from_rc_conf(value.get_ref());
                match &state {
                    Ip6addrctlPolicy::Invalid(v) => self.warn(
                        &value.span(),
                        format!("rc.d warns that `{v}` is invalid and installs the ipv4_prefer table; the values are AUTO, ipv6_prefer, ipv4_prefer, NONE or a yes/no"),
                    ),
                    Ip6addrctlPolicy::Auto => {}
                    other if f.ip6addrctl_conf.is_some() => self.warn(
                        &value.span(),
                        format!("rc.d reads ip6addrctl_conf only under AUTO; with {other:?} it is not installed"),
                    ),
                    _ => {}
                }
                fp.ip6addrctl_policy = Some(state);
            }
            if let Some(flag) = &f.rc_conf_ipv6 {
                if !matches!(fp.ip6addrctl_policy, Some(Ip6addrctlPolicy::Auto)) {
                    self.warn(&flag.span(), "rc_conf_ipv6 matters only with ip6addrctl_policy = \"AUTO\"".to_string());
                }
                fp.rc_conf_ipv6 = *flag.get_ref();
            }
            policy.freebsd = Some(fp);
        }
        policy
    }

    fn v6_prefix(&mut self, p: &Spanned<String>) -> Option<addrsel_policy::Ipv6Net> {
        match p.get_ref().parse::<IpNet>() {
            Ok(IpNet::V6(n)) => Some(n),
            Ok(IpNet::V4(n)) => {
                self.error(
                    &p.span(),
                    format!(
                        "policy prefixes are IPv6: write `{n}` as ::ffff:{}/{}",
                        n.network(),
                        u32::from(n.prefix_len()) + 96
                    ),
                );
                None
            }
            Err(_) => {
                self.error(&p.span(), format!("`{}` is not an IPv6 prefix (ADDRESS/LEN)", p.get_ref()));
                None
            }
        }
    }

    /// The OS-neutral table is written to gai.conf and the kernel label table on Linux.
    fn table_fits_linux(&mut self, t: &PolicyTable, span: &Range<usize>) {
        let mut kernel = KernelLabels::empty();
        for r in &t.rows {
            if r.precedence < 0 || r.label < 0 {
                self.error(span, format!("row {}: gai.conf and `ip addrlabel` cannot hold negative values; give [policy.linux] to say what Linux should use", r.prefix));
                return;
            }
            if let Err(refused) = kernel.add(&LabelRow { prefix: r.prefix, label: r.label as u32, dev: None }) {
                self.error(
                    span,
                    format!(
                        "row {}: `ip addrlabel add` would fail with {}: {}; give [policy.linux]",
                        r.prefix, refused.errno, refused.reason
                    ),
                );
                return;
            }
        }
    }

    /// Warnings for gai.conf lines, saying which glibc versions they hold for: 2.41 changed
    /// how numbers are read, so a line can be ignored by one and applied by the other.
    fn check_gai_conf(&mut self, text: &Spanned<String>) {
        let new = GaiConf::parse(text.get_ref(), GlibcParser::From2_41);
        let old = GaiConf::parse(text.get_ref(), GlibcParser::Before2_41);
        let mut issues: Vec<(usize, String)> = Vec::new();
        for n in &new.nul_lines {
            issues.push((
                *n,
                "a NUL byte ends this line for glibc: the text before it applies, the rest is ignored".into(),
            ));
        }
        for issue in &new.ignored {
            let also_old = old.ignored.iter().any(|o| o.line == issue.line);
            let versions = if also_old {
                "glibc ignores this line".to_string()
            } else {
                "glibc 2.41 and later ignore this line; earlier versions read it (an empty number as 0)".to_string()
            };
            issues.push((issue.line, format!("{}; {versions}", issue.message)));
        }
        for issue in old.ignored.iter().filter(|o| !new.ignored.iter().any(|n| n.line == o.line)) {
            issues.push((
                issue.line,
                format!("{}; glibc before 2.41 ignores this line, 2.41 and later read it", issue.message),
            ));
        }
        if let Some(crash) = &old.crash {
            issues.push((crash.line, format!("{} (glibc before 2.41; 2.41 and later read it)", crash.message)));
        }
        issues.sort();
        for (n, message) in issues {
            let (line, _) = self.map.value_line(text.span(), n);
            self.warn_at_line(line, format!("gai_conf line {n}: {message}"));
        }
    }

    fn check_ip6addrctl_conf(&mut self, text: &Spanned<String>) {
        match ip6addrctl::parse_conf(text.get_ref()) {
            // What the tool then does is unknowable: refuse.
            Err(e) if e.undefined => {
                let (line, _) = self.map.value_line(text.span(), e.issue.line);
                self.error_at_line(line, format!("ip6addrctl_conf line {}: {}", e.issue.line, e.issue.message));
            }
            // A file FreeBSD refuses is a real state (the jail's table stays empty): model it.
            Err(e) => {
                let (line, _) = self.map.value_line(text.span(), e.issue.line);
                self.warn_at_line(
                    line,
                    format!(
                        "ip6addrctl_conf line {}: {}; the jail's policy table stays empty",
                        e.issue.line, e.issue.message
                    ),
                );
            }
            Ok(rows) => {
                let mut kernel = PolicyTable::default();
                for r in ip6addrctl::install(&mut kernel, &rows) {
                    let line = text
                        .get_ref()
                        .lines()
                        .position(|l| {
                            l.split_whitespace()
                                .next()
                                .is_some_and(|p| p.parse::<IpNet>().is_ok_and(|n| n.trunc() == IpNet::V6(r.row.prefix)))
                        })
                        .map_or(1, |i| i + 1);
                    let (file_line, _) = self.map.value_line(text.span(), line);
                    self.warn_at_line(file_line, format!("ip6addrctl_conf line {line}: the kernel refuses this row with {} ({}); `ip6addrctl install` warns and installs the rest", r.errno, r.reason));
                }
            }
        }
    }

    fn sysctls(
        &mut self,
        s: &Scenario,
        raw: &Ordered<Spanned<String>, Spanned<SysctlValue>>,
        os: SysctlOs,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, value) in &raw.0 {
            let k = key.get_ref();
            if let Err(why) = check_sysctl_key(s, k, os) {
                self.error(&key.span(), why);
                continue;
            }
            let v = &value.get_ref().0;
            if v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || " _.:/-".contains(c)) {
                self.error(
                    &value.span(),
                    format!("sysctl value `{v}` must be 1 to 64 characters of letters, digits, space and _.:/-"),
                );
                continue;
            }
            // disable_ipv6 removes the interface's IPv6 addresses (and refuses new ones).
            if let (SysctlOs::Linux, Some(dev)) =
                (os, k.strip_prefix("net.ipv6.conf.").and_then(|r| r.strip_suffix(".disable_ipv6")))
                && v != "0"
                && let Some(i) = s.interfaces.iter().find(|i| {
                    (dev == i.name || ((dev == "all" || dev == "default") && !i.is_loopback()))
                        && i.addresses.iter().any(|a| a.addr.is_ipv6())
                })
            {
                self.error(
                    &value.span(),
                    format!("`{k}` = {v} disables IPv6 on `{}`, which has IPv6 addresses in this scenario: the kernel would drop them", i.name),
                );
                continue;
            }
            out.push((k.clone(), v.clone()));
        }
        out
    }

    fn probes(&mut self, s: &Scenario, raw: &[Spanned<RawProbe>]) -> Vec<Probe> {
        let mut ids = HashSet::new();
        let mut out = Vec::new();
        for rp in raw {
            let span = rp.span();
            let p = rp.get_ref();
            let id = p.id.get_ref();
            if !is_slug(id) {
                self.error(&p.id.span(), format!("probe id `{id}` must be lowercase letters, digits and '-'"));
                continue;
            }
            if !ids.insert(id.clone()) {
                self.error(&p.id.span(), format!("probe id `{id}` is used twice"));
                continue;
            }
            let kind = match (&p.connect, &p.resolve, &p.icmp_time_exceeded) {
                (None, None, Some(icmp)) => match self.icmp_probe(s, icmp) {
                    Some(kind) => kind,
                    None => continue,
                },
                (Some(c), None, None) => {
                    let text = c.get_ref();
                    let (addr_text, zone) = match text.split_once('%') {
                        Some((a, z)) => (a, Some(z.to_string())),
                        None => (text.as_str(), None),
                    };
                    let Ok(dst) = addr_text.parse::<IpAddr>() else {
                        self.error(&c.span(), format!("`{text}` is not an address (ADDRESS or IPv6ADDRESS%INTERFACE)"));
                        continue;
                    };
                    if let Some(z) = &zone {
                        if dst.is_ipv4() {
                            self.error(&c.span(), "a %zone applies to IPv6 destinations only");
                            continue;
                        }
                        if s.interface(z).is_none() {
                            self.error(&c.span(), format!("zone `{z}` is not a declared interface"));
                            continue;
                        }
                    }
                    ProbeKind::Connect { dst, zone }
                }
                (None, Some(r), None) => {
                    if s.host(r.get_ref()).is_none() {
                        self.error(
                            &r.span(),
                            format!("`{}` is not in [hosts]; add it there with its addresses", r.get_ref()),
                        );
                        continue;
                    }
                    ProbeKind::Resolve { name: r.get_ref().clone(), resolver: Resolver::Glibc }
                }
                _ => {
                    self.error(
                        &span,
                        "a probe needs exactly one of `connect` (an address), `resolve` (a host name) or `icmp_time_exceeded`",
                    );
                    continue;
                }
            };
            if !p.prefer.is_empty() && !matches!(kind, ProbeKind::Connect { .. }) {
                self.error(&span, "`prefer` applies to connect probes (it is a socket option)");
                continue;
            }
            let mut prefer = Vec::new();
            for w in &p.prefer {
                match SourcePreference::ALL.iter().find(|(word, _)| word == w.get_ref()) {
                    Some((_, pref)) => prefer.push(*pref),
                    None => self.error(
                        &w.span(),
                        format!("unknown preference `{}` (expected temporary, public, home or care-of)", w.get_ref()),
                    ),
                }
            }
            use SourcePreference::*;
            if (prefer.contains(&Temporary) && prefer.contains(&Public))
                || (prefer.contains(&Home) && prefer.contains(&CareOf))
            {
                self.error(&span, "`prefer` cannot ask for both temporary and public, or both home and care-of");
                continue;
            }
            let kernel_module_varies = match &p.kernel_module_varies {
                Some(why) if why.get_ref().trim().is_empty() => {
                    self.error(&why.span(), "`kernel_module_varies` needs the reason (what varies, on which kernels)");
                    continue;
                }
                Some(_) if !matches!(kind, ProbeKind::Connect { .. }) => {
                    self.error(&span, "`kernel_module_varies` applies to connect probes (the module answers those)");
                    continue;
                }
                Some(why) => Some(why.get_ref().trim().to_string()),
                None => None,
            };
            let connect_dst = match &kind {
                ProbeKind::Connect { dst, .. } => Some(*dst),
                _ => None,
            };
            let bind = match (&p.bind, connect_dst) {
                (None, _) => None,
                (Some(b), None) => {
                    self.error(&b.span(), "`bind` applies to connect probes");
                    continue;
                }
                (Some(b), Some(dst)) => match b.get_ref().parse::<IpAddr>() {
                    Ok(a) if a.is_ipv4() != dst.is_ipv4() => {
                        self.error(&b.span(), format!("bind address {a} is not of the destination's family ({dst})"));
                        continue;
                    }
                    // Not necessarily this host's: bind() then fails with EADDRNOTAVAIL, which
                    // is worth a probe.
                    Ok(a) => Some(a),
                    Err(_) => {
                        self.error(
                            &b.span(),
                            format!("`{}` is not an address (bind takes one, no port or zone)", b.get_ref()),
                        );
                        continue;
                    }
                },
            };
            let bind_device = match (&p.bind_device, connect_dst) {
                (None, _) => None,
                (Some(d), None) => {
                    self.error(&d.span(), "`bind_device` applies to connect probes");
                    continue;
                }
                (Some(d), Some(_)) if s.interface(d.get_ref()).is_none() => {
                    self.error(&d.span(), format!("bind_device `{}` is not a declared interface (or lo)", d.get_ref()));
                    continue;
                }
                (Some(d), Some(_)) => Some(d.get_ref().clone()),
            };
            let vrf = match (&p.vrf, connect_dst) {
                (None, _) => None,
                (Some(v), None) => {
                    self.error(&v.span(), "`vrf` applies to connect probes");
                    continue;
                }
                (Some(v), Some(_)) if s.vrf(v.get_ref()).is_none() => {
                    self.error(&v.span(), format!("vrf `{}` is not declared in [[vrfs]]", v.get_ref()));
                    continue;
                }
                (Some(v), Some(_)) if bind_device.is_some() => {
                    self.error(
                        &v.span(),
                        "`vrf` binds the socket to the VRF's device: give `vrf` or `bind_device`, not both",
                    );
                    continue;
                }
                (Some(v), Some(_)) => Some(v.get_ref().clone()),
            };
            // One probe per resolver: `ID` through glibc, `ID@musl` and so on.
            let mut resolvers = vec![Resolver::Glibc];
            let mut default_resolvers = matches!(kind, ProbeKind::Resolve { .. });
            if let Some(list) = &p.resolvers {
                if !matches!(kind, ProbeKind::Resolve { .. }) {
                    self.error(&list.span(), "`resolvers` applies to resolve probes");
                    continue;
                }
                resolvers.clear();
                default_resolvers = false;
                for w in list.get_ref() {
                    match Resolver::from_word(w.get_ref()) {
                        Some(r) if !resolvers.contains(&r) => resolvers.push(r),
                        Some(r) => self.error(&w.span(), format!("resolver {} is listed twice", r.word())),
                        None => self.error(
                            &w.span(),
                            format!("unknown resolver `{}` (expected glibc, musl, go, go-cgo or c-ares)", w.get_ref()),
                        ),
                    }
                }
                if resolvers.is_empty() {
                    self.error(&list.span(), "`resolvers` needs at least one");
                    continue;
                }
            }
            if let (ProbeKind::Resolve { name, .. }, true) = (&kind, resolvers.contains(&Resolver::CAres)) {
                if let Some(why) = s.c_ares_unfit(name) {
                    self.error(&span, why);
                    continue;
                }
            }
            for r in resolvers {
                let kind = match &kind {
                    ProbeKind::Resolve { name, .. } => ProbeKind::Resolve { name: name.clone(), resolver: r },
                    other => other.clone(),
                };
                out.push(Probe {
                    id: r.probe_id(id),
                    kind,
                    prefer: prefer.clone(),
                    kernel_module_varies: kernel_module_varies.clone(),
                    default_resolvers,
                    bind,
                    bind_device: bind_device.clone(),
                    vrf: vrf.clone(),
                    fib: None,
                });
            }
        }
        out
    }

    /// `icmp_time_exceeded = { from, to, sender }`: the packet must be able to reach this host
    /// on `from` (an address of `from` to send it to) and come from elsewhere.
    fn icmp_probe(&mut self, s: &Scenario, raw: &Spanned<RawIcmp>) -> Option<ProbeKind> {
        let r = raw.get_ref();
        let from = r.from.get_ref();
        match s.interface(from) {
            None => {
                self.error(&r.from.span(), format!("`{from}` is not a declared interface"));
                return None;
            }
            Some(i) if i.is_loopback() => {
                self.error(&r.from.span(), "the probe's packet enters on a link: not the loopback");
                return None;
            }
            Some(_) => {}
        }
        let address = |v: &mut Self, text: &Spanned<String>, what: &str| -> Option<IpAddr> {
            let Ok(a) = text.get_ref().parse::<IpAddr>() else {
                v.error(&text.span(), format!("`{}` is not an address", text.get_ref()));
                return None;
            };
            if s.addresses().any(|(_, x)| x.addr == a) {
                v.error(&text.span(), format!("{a} is one of this host's addresses: the {what} must be elsewhere"));
                return None;
            }
            if a.is_multicast() || a.is_unspecified() || a.is_loopback() {
                v.error(&text.span(), format!("{a} cannot be the {what} of a forwarded packet"));
                return None;
            }
            Some(a)
        };
        let to = address(self, &r.to, "destination")?;
        let sender = match &r.sender {
            Some(text) => {
                let a = address(self, text, "sender")?;
                if a.is_ipv4() != to.is_ipv4() {
                    self.error(&text.span(), "`sender` and `to` must be of one family");
                    return None;
                }
                a
            }
            None => match crate::plan::default_icmp_sender(s, from, to.is_ipv4()) {
                Some(a) => a,
                None => {
                    self.error(
                        &raw.span(),
                        format!("`{from}` has no {} subnet to take a sender from: give `sender`", family(to)),
                    );
                    return None;
                }
            },
        };
        if crate::plan::icmp_entry_address(s, from, to.is_ipv4()).is_none() {
            self.error(
                &r.from.span(),
                format!("`{from}` has no address for the packet towards {to} to be sent to (an IPv4 packet can use an IPv6 one)"),
            );
            return None;
        }
        Some(ProbeKind::IcmpTimeExceeded { from: from.clone(), to, sender })
    }

    fn expect(&mut self, s: &Scenario, raw: &Spanned<RawExpect>) -> Option<Expect> {
        let span = raw.span();
        let e = raw.get_ref();
        let resolver = match &e.resolver {
            None => Resolver::Glibc,
            Some(w) => match Resolver::from_word(w.get_ref()) {
                Some(r) => r,
                None => {
                    self.error(
                        &w.span(),
                        format!("unknown resolver `{}` (expected glibc, musl, go, go-cgo or c-ares)", w.get_ref()),
                    );
                    return None;
                }
            },
        };
        let probe_id = resolver.probe_id(e.probe.get_ref());
        let Some(probe) = s.probe(&probe_id) else {
            let why = if resolver.is_glibc() {
                format!("no probe has id `{}`", e.probe.get_ref())
            } else {
                format!(
                    "probe `{}` does not run through {} (add it to its `resolvers`)",
                    e.probe.get_ref(),
                    resolver.word()
                )
            };
            self.error(&e.probe.span(), why);
            return None;
        };
        let Some(os) = Os::from_word(e.os.get_ref()) else {
            self.error(&e.os.span(), format!("os `{}` is not linux, freebsd or rfc6724", e.os.get_ref()));
            return None;
        };
        if let Some(t) =
            e.target.as_ref().filter(|t| !t.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)))
        {
            self.error(&t.span(), format!("`{}` is not a target name", t.get_ref()));
            return None;
        }
        let glibc = match &e.glibc {
            Some(g) if os != Os::Linux => {
                self.error(&g.span(), "`glibc` applies to Linux expectations only");
                return None;
            }
            Some(g) => {
                let v = g.get_ref();
                let ok = v.split_once('.').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && a.len() <= 3
                        && b.len() <= 3
                        && (a.to_owned() + b).chars().all(|c| c.is_ascii_digit())
                });
                if !ok {
                    self.error(&g.span(), format!("`{v}` is not a glibc version like 2.36"));
                    return None;
                }
                Some(v.clone())
            }
            None => None,
        };
        let outcome = match (&e.source, &e.error, &e.order, &probe.kind) {
            (Some(src), None, None, ProbeKind::Connect { .. } | ProbeKind::IcmpTimeExceeded { .. }) => {
                match crate::addr_names::parse_shown_addr(src.get_ref()) {
                    Some(a @ IpAddr::V6(v6)) if src.get_ref().starts_with("temporary(") => {
                        let made = s.kernel_temporaries().iter().any(|(_, t)| t.addr == a);
                        if !made {
                            let net = ipnet::Ipv6Net::new(v6, 64).expect("64").trunc();
                            self.error(&src.span(), format!("no kernel-made temporary address in {net}: it needs a mngtmpaddr address there and use_tempaddr >= 1 on its interface"));
                            return None;
                        }
                        Expected::Source(a)
                    }
                    Some(a) => Expected::Source(a),
                    None => {
                        self.error(
                            &src.span(),
                            format!("`{}` is not an address (or temporary(PREFIX/64))", src.get_ref()),
                        );
                        return None;
                    }
                }
            }
            (None, Some(_), None, ProbeKind::IcmpTimeExceeded { .. }) => {
                self.error(&span, "an icmp_time_exceeded probe expects `source` (the ICMP error's source)");
                return None;
            }
            (None, Some(err), None, _) => {
                let name = err.get_ref();
                if !(name.starts_with('E')
                    && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    || name.starts_with("SIG"))
                {
                    self.error(&err.span(), format!("`{name}` is not an errno name like EHOSTUNREACH"));
                    return None;
                }
                Expected::Error(name.clone())
            }
            (None, None, Some(order), ProbeKind::Resolve { name, resolver }) => {
                let mut addrs = Vec::new();
                for a in order.get_ref() {
                    match a.get_ref().parse::<IpAddr>() {
                        Ok(ip) => addrs.push(ip),
                        Err(_) => {
                            self.error(&a.span(), format!("`{}` is not an address", a.get_ref()));
                            return None;
                        }
                    }
                }
                let mut want = crate::plan::hosts_lookup_for(s, name, *resolver);
                let mut got = addrs.clone();
                want.sort();
                got.sort();
                if want != got {
                    self.error(
                        &order.span(),
                        format!("order must list exactly the addresses /etc/hosts gives for `{name}` (its [hosts] lines, other spellings of it and, for localhost, the file's own lines)"),
                    );
                    return None;
                }
                Expected::Order(addrs)
            }
            (Some(_), None, None, ProbeKind::Resolve { .. }) => {
                self.error(&span, "`source` applies to connect probes; a resolve probe expects `order`");
                return None;
            }
            (None, None, Some(_), ProbeKind::Connect { .. }) => {
                self.error(&span, "`order` applies to resolve probes; a connect probe expects `source` or `error`");
                return None;
            }
            _ => {
                self.error(&span, "an expectation needs exactly one of `source`, `error` or `order`");
                return None;
            }
        };
        let evidence = match &e.evidence {
            Some(ev) if !ev.get_ref().trim().is_empty() => ev.get_ref().trim().to_string(),
            Some(ev) => {
                self.error(&ev.span(), "`evidence` is empty: say where this outcome was measured or reported");
                return None;
            }
            None => {
                self.error(
                    &span,
                    "an expectation needs `evidence`: where this outcome was measured or reported (a file in the repository, a public report, or \"source reading\")",
                );
                return None;
            }
        };
        let (line, _) = self.map.line_col(span.start);
        Some(Expect {
            probe: probe.id.clone(),
            os,
            target: e.target.as_ref().map(|t| t.get_ref().clone()),
            glibc,
            outcome,
            evidence,
            line,
        })
    }
}

#[derive(Clone, Copy)]
enum SysctlOs {
    Linux,
    Freebsd,
}

fn is_slug(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Interface names valid on both Linux and FreeBSD and safe in sysctl keys and argv.
fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

pub fn check_ifname(name: &str) -> Result<(), String> {
    let valid = (1..=15).contains(&name.len())
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "interface name `{name}` must be 1 to 15 characters: a letter, then letters, digits, '_' or '-'"
        ));
    }
    if RESERVED_IFNAMES.contains(&name) || name.starts_with(PEER_PREFIX) {
        return Err(format!("interface name `{name}` is reserved"));
    }
    Ok(())
}

/// Every per-namespace sysctl of a fresh Linux 6.18 network namespace (`conf.*`, `neigh.*`
/// for any interface).
const LINUX_SYSCTLS: &str = include_str!("linux_sysctls.txt");

/// Only per-namespace (Linux) or per-VNET (FreeBSD) networking sysctls may be set: anything
/// else would change the machine the harness runs on.
fn check_sysctl_key(s: &Scenario, key: &str, os: SysctlOs) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let charset_ok =
        parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if !charset_ok {
        return Err(format!("`{key}` is not a sysctl name"));
    }
    match os {
        SysctlOs::Linux => {
            if !(key.starts_with("net.ipv4.") || key.starts_with("net.ipv6.")) {
                return Err(format!(
                    "`{key}`: only net.ipv4.* and net.ipv6.* sysctls (per network namespace) may be set"
                ));
            }
            if parts.len() >= 4 && (parts[2] == "conf" || parts[2] == "neigh") {
                let dev = parts[3];
                if !["all", "default"].contains(&dev) && s.interface(dev).is_none() {
                    return Err(format!("`{key}` names interface `{dev}`, which is not declared"));
                }
            }
            let known = if parts.len() >= 4 && (parts[2] == "conf" || parts[2] == "neigh") {
                let mut general = parts.clone();
                general[3] = "*";
                general.join(".")
            } else {
                key.to_string()
            };
            if !LINUX_SYSCTLS.lines().any(|l| l == known) {
                return Err(format!(
                    "`{key}` is not a per-namespace sysctl Linux has (harness/model/src/linux_sysctls.txt lists them)"
                ));
            }
        }
        SysctlOs::Freebsd => {
            if !(key.starts_with("net.inet.") || key.starts_with("net.inet6.")) {
                return Err(format!("`{key}`: only net.inet.* and net.inet6.* sysctls (per VNET) may be set"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
