//! The validated scenario: one host's interfaces, addresses, routes, names, policy and the
//! questions (probes) to ask about it. Built only by [`crate::parse`], so every value here
//! has already been checked.

use std::fmt;
use std::net::IpAddr;

use crate::addr_names::kernel_temporary;
pub use crate::addr_names::{KERNEL_TEMPORARY_IID, parse_shown_addr, show_addr};

use addrsel_policy::PolicyTable;
use addrsel_policy::addrlabel::LabelRow;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Name of the loopback interface every scenario host has.
pub const LOOPBACK: &str = "lo";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// `lo` first (implicit or declared), then the declared interfaces in file order.
    pub interfaces: Vec<Interface>,
    /// Linux VRFs (`[[vrfs]]`): each an L3 master device with its own routing table and the
    /// interfaces enslaved to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vrfs: Vec<Vrf>,
    pub routes: Vec<Route>,
    /// What getaddrinfo resolves, in file order.
    pub hosts: Vec<HostEntry>,
    pub policy: Policy,
    pub sysctl: Sysctls,
    pub probes: Vec<Probe>,
    pub expect: Vec<Expect>,
}

/// A Linux VRF: `ip link add NAME type vrf table TABLE`, its interfaces enslaved with
/// `ip link set IF master NAME` before they get addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vrf {
    pub name: String,
    pub table: u32,
    pub interfaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    /// Declared addresses in file order. For `lo` the implicit 127.0.0.1/8 and ::1/128
    /// come first.
    pub addresses: Vec<Address>,
    /// `up = false`: the link was never brought up. Its addresses are there (IPv6 ones
    /// stay, never having gone down), its prefix routes are not, and no route can use it.
    pub up: bool,
}

impl Interface {
    pub fn is_loopback(&self) -> bool {
        self.name == LOOPBACK
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Address {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// Preferred lifetime 0 (RFC 6724 source rule 3).
    pub deprecated: bool,
    /// An RFC 4941 temporary address (source rule 7).
    pub temporary: bool,
    /// A Mobile IPv6 home address (source rule 4).
    pub home: bool,
    /// FreeBSD's `prefer_source` address flag.
    pub prefer_source: bool,
    /// Duplicate address detection's state, held for the whole scenario (IPv6).
    #[serde(default, skip_serializing_if = "Dad::is_done")]
    pub dad: Dad,
    /// Linux `mngtmpaddr`: with `use_tempaddr` >= 1 on its interface, the kernel makes a
    /// temporary address in this /64 (named `temporary(PREFIX)`, see [`kernel_temporary`]).
    pub mngtmpaddr: bool,
}

/// Where duplicate address detection stands for an address. Plain addresses are added with
/// `nodad` (Linux) or with DAD off (FreeBSD): `Done` from the first probe on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dad {
    #[default]
    Done,
    /// DAD is running (held for the scenario): not a source, bind() refuses it.
    Tentative,
    /// RFC 4429: usable during DAD, avoided like a deprecated address unless `use_optimistic`.
    Optimistic,
    /// DAD found the address on the link (`dadfailed`): never the host's.
    Failed,
}

impl Dad {
    pub const ALL: [(&'static str, Dad); 3] =
        [("tentative", Dad::Tentative), ("optimistic", Dad::Optimistic), ("failed", Dad::Failed)];

    pub fn is_done(&self) -> bool {
        *self == Dad::Done
    }
}

impl Address {
    pub fn plain(addr: IpAddr, prefix_len: u8) -> Self {
        Self {
            addr,
            prefix_len,
            deprecated: false,
            temporary: false,
            home: false,
            prefer_source: false,
            mngtmpaddr: false,
            dad: Dad::Done,
        }
    }

    /// Not yet (or never) the host's: DAD is running or found a duplicate. An optimistic
    /// address (RFC 4429) is usable.
    pub fn unusable(&self) -> bool {
        matches!(self.dad, Dad::Tentative | Dad::Failed)
    }

    pub fn net(&self) -> IpNet {
        IpNet::new(self.addr, self.prefix_len).expect("validated prefix length")
    }

    /// Flags as words, for plans and explanations.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.deprecated {
            flags.push("deprecated");
        }
        if self.temporary {
            flags.push("temporary");
        }
        if self.home {
            flags.push("home");
        }
        if self.prefer_source {
            flags.push("prefer_source");
        }
        if self.mngtmpaddr {
            flags.push("mngtmpaddr");
        }
        match self.dad {
            Dad::Done => {}
            Dad::Tentative => flags.push("tentative"),
            Dad::Optimistic => flags.push("optimistic"),
            Dad::Failed => flags.push("dadfailed"),
        }
        flags
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub to: IpNet,
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// Preferred source (Linux `src`).
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    /// FreeBSD: the API that adds the route, which decides the nexthop's address for an
    /// IPv4 route through an IPv6 gateway.
    #[serde(skip_serializing_if = "RouteInstall::is_netlink")]
    pub install: RouteInstall,
    /// What the route does with a packet: forward it, or one of the kernel's ways to refuse.
    #[serde(rename = "type", skip_serializing_if = "RouteType::is_unicast")]
    pub rtype: RouteType,
    /// The routing table: a VRF's (`table = 10` or `vrf = "blue"`); `None` is main.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// A multipath route's next hops (`via`/`dev` are then unset): Linux `ip route ...
    /// nexthop ... nexthop ...`, or a nexthop group with `nexthop_objects`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nexthops: Vec<Nexthop>,
    /// Linux: install the next hops as `ip nexthop` objects and a group (`nhid`) instead of
    /// the route's own list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nexthop_objects: bool,
}

/// One path of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nexthop {
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// 1 to 256 (Linux's range; the kernel's own default is 1).
    pub weight: u16,
}

/// Linux route types (`ip route add TYPE PREFIX`); FreeBSD has `-blackhole` and `-reject`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    #[default]
    Unicast,
    /// Discards silently: `connect()` gets EINVAL on Linux.
    Blackhole,
    /// EHOSTUNREACH on Linux; FreeBSD's `-reject`.
    Unreachable,
    /// EACCES on Linux (administratively prohibited); FreeBSD has none.
    Prohibit,
    /// Linux: ends the lookup in this table, the next rule's table decides; FreeBSD has none.
    Throw,
}

impl RouteType {
    pub const ALL: [(&'static str, RouteType); 5] = [
        ("unicast", RouteType::Unicast),
        ("blackhole", RouteType::Blackhole),
        ("unreachable", RouteType::Unreachable),
        ("prohibit", RouteType::Prohibit),
        ("throw", RouteType::Throw),
    ];

    pub fn is_unicast(&self) -> bool {
        *self == RouteType::Unicast
    }

    pub fn word(self) -> &'static str {
        Self::ALL.iter().find(|(_, t)| *t == self).map(|(w, _)| *w).expect("listed")
    }
}

/// How a FreeBSD route is added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteInstall {
    /// Netlink, what `route(8)` uses since FreeBSD 14.0: `finalize_nhop` takes an address of
    /// the egress interface, of the gateway's family when the interface has no IPv4.
    #[default]
    Netlink,
    /// A routing socket (`RTM_ADD`), as route(8) before 14.0 and routing daemons do:
    /// `rt_getifa_family` falls back to `in_findlocal`, the first IPv4 address of the FIB.
    Rtsock,
}

impl RouteInstall {
    pub fn is_netlink(&self) -> bool {
        *self == RouteInstall::Netlink
    }
}

impl Route {
    /// An IPv4 destination reached through an IPv6 next hop (RFC 5549).
    pub fn is_v4_via_v6(&self) -> bool {
        matches!((self.to, self.via), (IpNet::V4(_), Some(IpAddr::V6(_))))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostEntry {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `[policy] table`: applied on every OS that has no OS-specific section.
    pub table: Option<PolicyTable>,
    /// `[policy.linux]`: when present, replaces `table` on Linux.
    pub linux: Option<LinuxPolicy>,
    /// `[policy.freebsd]`: when present, replaces `table` on FreeBSD.
    pub freebsd: Option<FreebsdPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinuxPolicy {
    /// Exact `/etc/gai.conf` content; `None` means an empty file (glibc defaults).
    pub gai_conf: Option<String>,
    /// `ip addrlabel add` rows on top of the kernel's default labels.
    pub addrlabels: Vec<LabelRow>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FreebsdPolicy {
    /// Text installed with `ip6addrctl install` (`/etc/ip6addrctl.conf`); `None` means
    /// rc.d's ipv6_prefer table and `Some("")` an empty kernel table.
    pub ip6addrctl_conf: Option<String>,
    /// `ip6addrctl_policy` in rc.conf: which table rc.d installs at boot.
    pub ip6addrctl_policy: Option<Ip6addrctlPolicy>,
    /// rc.conf configures IPv6 (`ipv6_activate_all_interfaces` or an `ifconfig_*_ipv6`),
    /// which rc.d's AUTO reads when there is no ip6addrctl.conf.
    pub rc_conf_ipv6: bool,
}

/// `ip6addrctl_policy` as `libexec/rc/rc.d/ip6addrctl` reads it (`ip6addrctl_start`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Ip6addrctlPolicy {
    /// `AUTO` (any case, rc.conf's default): `/etc/ip6addrctl.conf` when it is readable and
    /// not empty; otherwise ipv6_prefer when rc.conf configures IPv6, else ipv4_prefer.
    Auto,
    /// `ipv6_prefer`, or a yes/true/on/1 value.
    Ipv6Prefer,
    /// `ipv4_prefer`, or a no/false/off/0 value.
    Ipv4Prefer,
    /// `NONE` (any case): flush only, an empty table.
    None,
    /// Anything else: rc.d warns that it is invalid and uses ipv4_prefer.
    Invalid(String),
}

impl Ip6addrctlPolicy {
    /// The rc.d `case` on the value, branch for branch.
    pub fn from_rc_conf(value: &str) -> Self {
        let lower = value.to_ascii_lowercase();
        match value {
            _ if lower == "auto" => Ip6addrctlPolicy::Auto,
            "ipv4_prefer" => Ip6addrctlPolicy::Ipv4Prefer,
            "ipv6_prefer" => Ip6addrctlPolicy::Ipv6Prefer,
            _ if ["yes", "true", "on", "1"].contains(&lower.as_str()) => Ip6addrctlPolicy::Ipv6Prefer,
            _ if ["no", "false", "off", "0"].contains(&lower.as_str()) => Ip6addrctlPolicy::Ipv4Prefer,
            _ if lower == "none" => Ip6addrctlPolicy::None,
            other => Ip6addrctlPolicy::Invalid(other.to_string()),
        }
    }
}

/// What the Linux host ends up with, derived from [`Policy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxPolicyEffect {
    /// `/etc/gai.conf` text.
    pub gai_conf: String,
    /// Flush the kernel label table before adding `addrlabels`.
    pub flush_labels: bool,
    pub addrlabels: Vec<LabelRow>,
}

/// What the FreeBSD host ends up with, derived from [`Policy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreebsdPolicyEffect {
    /// The ip6addrctl.conf text installed into the (initially empty) per-VNET table.
    pub ip6addrctl_conf: String,
    /// Where the text came from (which rc.d branch), for plans and explanations.
    pub origin: String,
}

impl Policy {
    pub fn linux(&self) -> LinuxPolicyEffect {
        match (&self.linux, &self.table) {
            (Some(linux), _) => LinuxPolicyEffect {
                gai_conf: linux.gai_conf.clone().unwrap_or_default(),
                flush_labels: false,
                addrlabels: linux.addrlabels.clone(),
            },
            (None, Some(table)) => LinuxPolicyEffect {
                gai_conf: addrsel_policy::gai_conf::print_table(table),
                flush_labels: true,
                addrlabels: table
                    .rows
                    .iter()
                    .map(|r| LabelRow { prefix: r.prefix, label: r.label as u32, dev: None })
                    .collect(),
            },
            (None, None) => LinuxPolicyEffect { gai_conf: String::new(), flush_labels: false, addrlabels: vec![] },
        }
    }

    pub fn freebsd(&self) -> FreebsdPolicyEffect {
        use addrsel_policy::ip6addrctl::print_conf;
        let effect = |text: String, origin: &str| FreebsdPolicyEffect { ip6addrctl_conf: text, origin: origin.into() };
        let ipv6_prefer = || print_conf(&PolicyTable::rfc6724());
        let ipv4_prefer = || print_conf(&PolicyTable::freebsd_ipv4_prefer());
        if let Some(FreebsdPolicy { ip6addrctl_policy: Some(state), ip6addrctl_conf, rc_conf_ipv6 }) = &self.freebsd {
            return match state {
                Ip6addrctlPolicy::Auto => match ip6addrctl_conf.as_ref().filter(|t| !t.is_empty()) {
                    Some(text) => effect(text.clone(), "rc.d AUTO: flush, then install /etc/ip6addrctl.conf"),
                    None if *rc_conf_ipv6 => effect(
                        ipv6_prefer(),
                        "rc.d AUTO: no ip6addrctl.conf, rc.conf configures IPv6: the ipv6_prefer table",
                    ),
                    None => effect(
                        ipv4_prefer(),
                        "rc.d AUTO: no ip6addrctl.conf and no IPv6 in rc.conf: the ipv4_prefer table",
                    ),
                },
                Ip6addrctlPolicy::Ipv6Prefer => effect(ipv6_prefer(), "rc.d ipv6_prefer: the RFC 6724 table"),
                Ip6addrctlPolicy::Ipv4Prefer => {
                    effect(ipv4_prefer(), "rc.d ipv4_prefer: RFC 6724 with ::ffff:0:0/96 at 100")
                }
                Ip6addrctlPolicy::None => effect(String::new(), "rc.d NONE: flushed, an empty table"),
                Ip6addrctlPolicy::Invalid(v) => effect(
                    ipv4_prefer(),
                    &format!("rc.d: `{v}` is invalid, so it warns and installs the ipv4_prefer table"),
                ),
            };
        }
        match (&self.freebsd, &self.table) {
            (Some(FreebsdPolicy { ip6addrctl_conf: Some(text), .. }), _) => {
                effect(text.clone(), "[policy.freebsd] ip6addrctl_conf")
            }
            (_, Some(table)) => effect(print_conf(table), "[policy] table"),
            _ => effect(
                ipv6_prefer(),
                "rc.d AUTO on a host whose rc.conf configures IPv6: the ipv6_prefer table (the default here)",
            ),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sysctls {
    /// `[sysctl.linux]` in file order.
    pub linux: Vec<(String, String)>,
    /// `[sysctl.freebsd]` in file order.
    pub freebsd: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub id: String,
    pub kind: ProbeKind,
    /// IPv6 source preferences set on the probe socket (`IPV6_ADDR_PREFERENCES` on Linux,
    /// `IPV6_PREFER_TEMPADDR` on FreeBSD).
    pub prefer: Vec<SourcePreference>,
    /// The test kernel module's answer to this connect probe is known to vary between boots
    /// (the reason): it is kept in the JSON but left out of snapshots and of the
    /// module-versus-socket check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_module_varies: Option<String>,
    /// A resolve probe whose `resolvers` the scenario left to the run's default (so
    /// `matrix --resolvers` may add more).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_resolvers: bool,
    /// A connect probe's socket is bound to this address first (`bind()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    /// A connect probe's socket is bound to this interface first (Linux `SO_BINDTODEVICE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_device: Option<String>,
    /// A connect probe's socket is in this VRF: bound to its device (`SO_BINDTODEVICE`, as
    /// `ip vrf exec` arranges), so the VRF's table decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<String>,
    /// FreeBSD: the FIB a VRF probe's socket uses (`SO_SETFIB`), set by the FreeBSD plan in
    /// place of `vrf`; never in scenario text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fib: Option<u32>,
}

/// The library (or language runtime) whose getaddrinfo a resolve probe goes through. The
/// kernel picks the sources for all of them; only the sort differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolver {
    /// The OS's own C library: glibc on Linux, FreeBSD's libc on FreeBSD.
    #[default]
    Glibc,
    Musl,
    /// Go's own resolver (`GODEBUG=netdns=go`, every CGO_ENABLED=0 build).
    Go,
    /// Go through the C library (`GODEBUG=netdns=cgo`): the C library's order.
    GoCgo,
    /// c-ares `ares_getaddrinfo`.
    CAres,
}

impl Resolver {
    pub const ALL: [(&'static str, Resolver); 5] = [
        ("glibc", Resolver::Glibc),
        ("musl", Resolver::Musl),
        ("go", Resolver::Go),
        ("go-cgo", Resolver::GoCgo),
        ("c-ares", Resolver::CAres),
    ];

    pub fn word(self) -> &'static str {
        Self::ALL.iter().find(|(_, r)| *r == self).map(|(w, _)| *w).expect("listed")
    }

    pub fn from_word(w: &str) -> Option<Self> {
        Self::ALL.iter().find(|(word, _)| *word == w).map(|(_, r)| *r)
    }

    pub fn is_glibc(&self) -> bool {
        *self == Resolver::Glibc
    }

    /// The probe id of `base` through this resolver: glibc keeps the plain id.
    pub fn probe_id(self, base: &str) -> String {
        if self.is_glibc() { base.to_string() } else { format!("{base}@{}", self.word()) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProbeKind {
    /// UDP `connect()` + `getsockname()`: the kernel's source for this destination.
    Connect { dst: IpAddr, zone: Option<String> },
    /// `getaddrinfo(name, AF_UNSPEC, SOCK_DGRAM)`: the library's destination order.
    Resolve {
        name: String,
        #[serde(default, skip_serializing_if = "Resolver::is_glibc")]
        resolver: Resolver,
    },
    /// This host as a router: a UDP packet with TTL (hop limit) 1 from `sender`, on the far
    /// side of interface `from`, towards `to`. What comes back: the ICMP error's source (Time
    /// Exceeded, or the error that replaced it), or that none came.
    #[serde(rename = "icmp_time_exceeded")]
    IcmpTimeExceeded { from: String, to: IpAddr, sender: IpAddr },
}

impl ProbeKind {
    /// `dst` as written, with `%zone` when given.
    pub fn dst_text(&self) -> Option<String> {
        match self {
            ProbeKind::Connect { dst, zone: Some(z) } => Some(format!("{dst}%{z}")),
            ProbeKind::Connect { dst, zone: None } => Some(dst.to_string()),
            ProbeKind::Resolve { .. } | ProbeKind::IcmpTimeExceeded { .. } => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourcePreference {
    Temporary,
    Public,
    Home,
    CareOf,
}

impl SourcePreference {
    pub const ALL: [(&'static str, SourcePreference); 4] = [
        ("temporary", SourcePreference::Temporary),
        ("public", SourcePreference::Public),
        ("home", SourcePreference::Home),
        ("care-of", SourcePreference::CareOf),
    ];

    pub fn word(self) -> &'static str {
        Self::ALL.iter().find(|(_, p)| *p == self).map(|(w, _)| *w).expect("listed")
    }
}

/// Which engine profile or OS family an expectation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Freebsd,
    Rfc6724,
}

impl Os {
    pub const ALL: [Os; 3] = [Os::Linux, Os::Freebsd, Os::Rfc6724];

    pub fn word(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Freebsd => "freebsd",
            Os::Rfc6724 => "rfc6724",
        }
    }

    pub fn from_word(word: &str) -> Option<Os> {
        Os::ALL.into_iter().find(|o| o.word() == word)
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A known outcome, from a real system, that the engine and targets must reproduce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expect {
    pub probe: String,
    /// The OS family (and engine profile) this holds for.
    pub os: Os,
    /// Only on this target (e.g. a release with different behaviour); `None` = every target
    /// of `os` and its engine profile.
    pub target: Option<String>,
    /// Only on Linux targets with this glibc version (`2.36`); the engine predicts it with
    /// that version's gai.conf parser.
    pub glibc: Option<String>,
    pub outcome: Expected,
    /// Where the expectation comes from: a measurement in the repository, a public report,
    /// or "source reading" (required).
    pub evidence: String,
    /// 1-based line of the `[[expect]]` entry, for messages.
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    Source(IpAddr),
    Error(String),
    Order(Vec<IpAddr>),
}

impl Expect {
    /// Whether this expectation applies to a run of `os` on `target` whose C library is
    /// `glibc` (`None`: unknown, or an engine prediction for the OS as a whole).
    pub fn applies_to(&self, os: Os, target: Option<&str>, glibc: Option<&str>) -> bool {
        self.os == os
            && self.target.as_deref().is_none_or(|t| target == Some(t))
            && self.glibc.as_deref().is_none_or(|g| glibc == Some(g))
    }
}

impl Expected {
    /// Whether an observed or predicted outcome meets this expectation.
    pub fn holds_for(&self, outcome: &crate::results::Outcome) -> bool {
        use crate::results::Outcome;
        match (self, outcome) {
            (Expected::Source(want), Outcome::Connect { source, .. } | Outcome::Icmp { source, .. }) => {
                source.as_ref() == Some(want)
            }
            (Expected::Error(want), Outcome::Connect { error, .. } | Outcome::Resolve { error, .. }) => {
                error.as_ref() == Some(want)
            }
            (Expected::Order(want), Outcome::Resolve { order, error: None, .. }) => order == want,
            _ => false,
        }
    }

    /// Whether a prediction allows this expectation, an observation: as [`Expected::holds_for`],
    /// and a source among a multipath route's possible ones counts.
    pub fn possible_in(&self, predicted: &crate::results::Outcome) -> bool {
        match (self, predicted) {
            (Expected::Source(want), crate::results::Outcome::Connect { sources, .. }) if !sources.is_empty() => {
                sources.contains(want)
            }
            _ => self.holds_for(predicted),
        }
    }

    /// The expected outcome in words.
    pub fn summary(&self) -> String {
        match self {
            Expected::Source(a) => a.to_string(),
            Expected::Error(x) => x.clone(),
            Expected::Order(o) => o.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        }
    }
}

impl Scenario {
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    pub fn vrf(&self, name: &str) -> Option<&Vrf> {
        self.vrfs.iter().find(|v| v.name == name)
    }

    /// The VRF an interface is enslaved to.
    pub fn vrf_of(&self, interface: &str) -> Option<&Vrf> {
        self.vrfs.iter().find(|v| v.interfaces.iter().any(|i| i == interface))
    }

    pub fn probe(&self, id: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.id == id)
    }

    /// A Linux per-interface IPv6 sysctl as the plan leaves it for `dev`: its own key, else
    /// the `default` one (written before the veths exist; lo already exists). Writes to
    /// `all` do not reach existing devices for these keys.
    pub fn linux_ipv6_conf(&self, dev: &str, key: &str) -> Option<i64> {
        let find = |k: &str| self.sysctl.linux.iter().rev().find(|(kk, _)| kk == k).and_then(|(_, v)| v.parse().ok());
        find(&format!("net.ipv6.conf.{dev}.{key}"))
            .or_else(|| if dev == "lo" { None } else { find(&format!("net.ipv6.conf.default.{key}")) })
    }

    /// The temporary addresses the Linux kernel makes for this scenario: one per `mngtmpaddr`
    /// address on an interface whose `use_tempaddr` is at least 1, with the interface index.
    pub fn kernel_temporaries(&self) -> Vec<(usize, Address)> {
        let mut out = Vec::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            if self.linux_ipv6_conf(&iface.name, "use_tempaddr").unwrap_or(0) < 1 {
                continue;
            }
            for a in iface.addresses.iter().filter(|a| a.mngtmpaddr) {
                if let IpNet::V6(net) = a.net() {
                    let mut t = Address::plain(IpAddr::V6(kernel_temporary(net)), 64);
                    t.temporary = true;
                    out.push((i, t));
                }
            }
        }
        out
    }

    /// The temporary addresses the FreeBSD kernel makes for this scenario. `ifconfig IF inet6
    /// ADDR autoconf` marks a `mngtmpaddr` address autoconfigured, and in6_control makes a
    /// temporary address for it at once (`in6_tmpifadd`, no router needed) when
    /// `net.inet6.ip6.use_tempaddr` is 1 and it is the first address of its prefix on that
    /// interface (`ndpr_addrcnt == 1`).
    pub fn freebsd_kernel_temporaries(&self) -> Vec<(usize, Address)> {
        let on = self.sysctl.freebsd.iter().rev().find(|(k, _)| k == "net.inet6.ip6.use_tempaddr");
        if on.is_none_or(|(_, v)| v.trim() == "0") {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, iface) in self.interfaces.iter().enumerate() {
            for (n, a) in iface.addresses.iter().enumerate() {
                let IpNet::V6(net) = a.net() else { continue };
                let first = !iface.addresses[..n].iter().any(|b| b.net().trunc() == a.net().trunc());
                if a.mngtmpaddr && first {
                    let mut t = Address::plain(IpAddr::V6(kernel_temporary(net)), 64);
                    t.temporary = true;
                    out.push((i, t));
                }
            }
        }
        out
    }

    /// FreeBSD's FIB for a VRF's table: the VRFs in order take FIBs 1, 2, ... (0 is the
    /// default FIB, Linux's main table).
    pub fn freebsd_fib(&self, table: u32) -> Option<u32> {
        self.vrfs.iter().position(|v| v.table == table).map(|i| i as u32 + 1)
    }

    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Why c-ares cannot answer `name` the way every version we model does, if it cannot:
    /// c-ares 1.34 merges /etc/hosts lines that share an address into one entry, and answers
    /// localhost itself; 1.18 does neither.
    pub fn c_ares_unfit(&self, name: &str) -> Option<String> {
        let own = self.host(name).map(|h| h.addresses.clone()).unwrap_or_default();
        let shared = self.hosts.iter().filter(|h| h.name != name).any(|h| h.addresses.iter().any(|a| own.contains(a)));
        let repeated = own.iter().enumerate().any(|(i, a)| own[..i].contains(a));
        let local = name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost");
        (shared || repeated || local).then(|| {
            format!("resolver c-ares needs `{name}` to have addresses of its own (no localhost, no address shared with another name or listed twice): c-ares 1.34 merges such /etc/hosts lines and 1.18 does not")
        })
    }

    /// A run's default resolvers (`matrix --resolvers`) for the resolve probes whose
    /// scenario named none: each such probe also runs through every resolver in `extra`
    /// (glibc's plain-id probe stays, so the scenario's expectations still apply). A
    /// resolver that cannot answer a probe's name faithfully is left out, with the reason.
    pub fn add_default_resolvers(&mut self, extra: &[Resolver]) -> Vec<String> {
        let mut skipped = Vec::new();
        let mut out = Vec::new();
        for p in &self.probes {
            out.push(p.clone());
            let ProbeKind::Resolve { name, resolver: Resolver::Glibc } = &p.kind else { continue };
            if !p.default_resolvers {
                continue;
            }
            for &r in extra.iter().filter(|r| !r.is_glibc()) {
                if r == Resolver::CAres {
                    if let Some(why) = self.c_ares_unfit(name) {
                        skipped.push(format!("{}: probe `{}`: {why}", self.name, p.id));
                        continue;
                    }
                }
                let mut q = p.clone();
                q.id = r.probe_id(&p.id);
                q.kind = ProbeKind::Resolve { name: name.clone(), resolver: r };
                out.push(q);
            }
        }
        self.probes = out;
        skipped
    }

    /// Every address with the interface that holds it, interfaces in order.
    pub fn addresses(&self) -> impl Iterator<Item = (&Interface, &Address)> {
        self.interfaces.iter().flat_map(|i| i.addresses.iter().map(move |a| (i, a)))
    }
}
