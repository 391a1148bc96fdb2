//! A live host as a scenario: what `cargo xtask capture` read from the machine (iproute2's
//! JSON on Linux; `ifconfig`, netstat's libxo JSON and `ip6addrctl show` on FreeBSD), turned
//! into the scenario format, and optionally anonymized.
//!
//! Pure: the command line runs the tools and hands their output here. Everything the format
//! cannot say is kept as a comment in the scenario, never silently dropped.

pub mod anonymize;
pub mod freebsd;
pub mod linux;

use std::fmt::Write as _;
use std::net::IpAddr;

use addrsel_model::scenario::LOOPBACK;

/// One address as captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub deprecated: bool,
    pub temporary: bool,
    pub home: bool,
    pub prefer_source: bool,
    /// Linux `mngtmpaddr`: the template of the kernel's temporary addresses.
    pub mngtmpaddr: bool,
    /// Duplicate address detection's state as the scenario spells it (`tentative`,
    /// `optimistic`, `failed`); `None` when DAD is done.
    pub dad: Option<&'static str>,
    /// Flags the format has no key for: kept as a comment.
    pub unsupported: Vec<String>,
}

impl Addr {
    pub fn plain(addr: IpAddr, prefix_len: u8) -> Self {
        Addr {
            addr,
            prefix_len,
            deprecated: false,
            temporary: false,
            home: false,
            prefer_source: false,
            mngtmpaddr: false,
            dad: None,
            unsupported: vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// In the order to add them so the kernel keeps them in the order it had them.
    pub addresses: Vec<Addr>,
    pub down: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub to: ipnet::IpNet,
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    pub src: Option<IpAddr>,
    pub metric: Option<u32>,
    /// A discard route's type as the scenario format spells it (`blackhole`, `unreachable`,
    /// `prohibit`, `throw`); `None` for a route that forwards.
    pub rtype: Option<&'static str>,
    /// A multipath route's paths (then `via` and `dev` are `None`).
    pub nexthops: Vec<Nexthop>,
    /// Linux: the paths are an `ip nexthop` group (`nhid`).
    pub nexthop_objects: bool,
    /// Linux: the VRF table the route is in (`None`: main).
    pub table: Option<u32>,
}

/// A Linux VRF: its device's name, its table, the interfaces enslaved to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vrf {
    pub name: String,
    pub table: u32,
    pub interfaces: Vec<String>,
}

/// One path of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nexthop {
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    pub weight: u16,
}

impl Route {
    /// A route with one path (or none: a discard route).
    pub fn single(to: ipnet::IpNet, via: Option<IpAddr>, dev: Option<String>) -> Route {
        Route {
            to,
            via,
            dev,
            src: None,
            metric: None,
            rtype: None,
            nexthops: Vec::new(),
            nexthop_objects: false,
            table: None,
        }
    }

    /// Every device the route goes through.
    pub fn devs(&self) -> impl Iterator<Item = &str> {
        self.dev.as_deref().into_iter().chain(self.nexthops.iter().filter_map(|n| n.dev.as_deref()))
    }
}

/// Everything read from a host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub os: Option<addrsel_model::Os>,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub vrfs: Vec<Vrf>,
    /// Linux: interfaces enslaved to another device (`master`), with its name.
    pub masters: Vec<(String, String)>,
    /// FreeBSD: interfaces in a FIB other than 0 (ifconfig's `fib: N`), with it.
    pub fibs: Vec<(String, u32)>,
    /// What was seen and cannot be expressed, as comment lines.
    pub skipped: Vec<String>,
    /// What was read but is made again by the scenario itself (kept as a comment).
    pub remade: Vec<String>,
    /// `/etc/gai.conf`, exactly.
    pub gai_conf: Option<String>,
    /// `ip addrlabel` rows that are not the kernel's defaults: (prefix, label).
    pub addrlabels: Vec<(String, u32)>,
    /// The FreeBSD kernel policy table as `ip6addrctl show` printed it, as a conf text.
    pub ip6addrctl_conf: Option<String>,
    /// rc.conf's `ip6addrctl_policy`.
    pub ip6addrctl_policy: Option<String>,
    /// OS sysctls that matter to selection and differ from the default, in order.
    pub sysctls: Vec<(String, String)>,
    /// `[hosts]`: names and addresses in the resolver's order before sorting.
    pub hosts: Vec<(String, Vec<IpAddr>)>,
    pub probes: Vec<Probe>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub id: String,
    pub kind: ProbeKind,
    /// The live host's own answer.
    pub live: Live,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Connect(String),
    Resolve(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    Source(IpAddr),
    Error(String),
    Order(Vec<IpAddr>),
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    toml_string(s)
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML multi-line literal when the text allows it, else a basic string.
fn toml_text(s: &str) -> String {
    if !s.contains("'''") && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        format!("'''\n{s}'''")
    } else {
        toml_string(s)
    }
}

/// A probe id from an address or name: lowercase letters, digits and '-'.
pub fn slug(prefix: &str, text: &str) -> String {
    let mut out = String::from(prefix);
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

impl Host {
    /// The scenario text. `evidence` says where and when the live answers were taken.
    pub fn scenario(&self, name: &str, description: &str, evidence: &str) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "name = {}", toml_string(name));
        let _ = writeln!(t, "description = {}", toml_text(&format!("{}\n", description.trim_end())));
        for line in &self.skipped {
            let _ = writeln!(t, "# not expressible yet: {}", line.replace('\n', " "));
        }
        for line in &self.remade {
            let _ = writeln!(t, "# made again by the scenario: {}", line.replace('\n', " "));
        }
        for (i, m) in self.masters.iter().filter(|(_, m)| !self.vrfs.iter().any(|v| &v.name == m)) {
            let _ = writeln!(
                t,
                "# not expressible yet: interface `{i}` is enslaved to `{m}` (a bridge or bond, not a VRF): captured as a plain interface"
            );
        }
        // An interface with nothing on it and no route through it says nothing.
        let used: Vec<&str> = self.routes.iter().flat_map(|r| r.devs()).collect();
        for i in self.interfaces.iter().filter(|i| !i.addresses.is_empty() || used.contains(&i.name.as_str())) {
            let _ = writeln!(t, "\n[[interfaces]]\nname = {}", toml_string(&i.name));
            if i.down && i.name != "lo" {
                let _ = writeln!(t, "up = false");
            }
            let mut items = Vec::new();
            for a in &i.addresses {
                for u in &a.unsupported {
                    let _ = writeln!(t, "# {}/{}: {u}", a.addr, a.prefix_len);
                }
                let text = format!("{}/{}", a.addr, a.prefix_len);
                let mut f: Vec<String> = [
                    (a.deprecated, "deprecated"),
                    (a.temporary, "temporary"),
                    (a.home, "home"),
                    (a.prefer_source, "prefer_source"),
                    (a.mngtmpaddr, "mngtmpaddr"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, w)| format!("{w} = true"))
                .collect();
                if let Some(d) = a.dad {
                    f.push(format!("dad = {}", toml_string(d)));
                }
                if f.is_empty() {
                    items.push(toml_string(&text));
                } else {
                    items.push(format!("{{ address = {}, {} }}", toml_string(&text), f.join(", ")));
                }
            }
            let _ = writeln!(t, "addresses = [{}]", items.join(", "));
        }
        for v in &self.vrfs {
            let members: Vec<String> = v.interfaces.iter().map(|i| toml_string(i)).collect();
            let _ = writeln!(
                t,
                "\n[[vrfs]]\nname = {}\ntable = {}\ninterfaces = [{}]",
                toml_string(&v.name),
                v.table,
                members.join(", ")
            );
        }
        for r in &self.routes {
            let down = r.devs().find(|d| self.interfaces.iter().any(|i| i.name == *d && i.down && i.name != "lo"));
            if let Some(d) = down {
                // The scenario refuses a route through a down link (Linux refuses to add one).
                let _ = writeln!(t, "\n# left out: route {} dev {d}, through a down link", r.to);
                continue;
            }
            let _ = writeln!(t, "\n[[routes]]\nto = {}", toml_string(&r.to.to_string()));
            if let Some(k) = r.rtype {
                let _ = writeln!(t, "type = {}", toml_string(k));
            }
            if let Some(v) = r.via {
                let _ = writeln!(t, "via = {}", toml_string(&v.to_string()));
            }
            if let Some(d) = &r.dev {
                let _ = writeln!(t, "dev = {}", toml_string(d));
            }
            if let Some(s) = r.src {
                let _ = writeln!(t, "src = {}", toml_string(&s.to_string()));
            }
            if let Some(m) = r.metric {
                let _ = writeln!(t, "metric = {m}");
            }
            if let Some(v) = r.table.and_then(|table| self.vrfs.iter().find(|v| v.table == table)) {
                let _ = writeln!(t, "vrf = {}", toml_string(&v.name));
            }
            if r.nexthop_objects {
                let _ = writeln!(t, "nexthop_objects = true");
            }
            if !r.nexthops.is_empty() {
                let paths: Vec<String> = r
                    .nexthops
                    .iter()
                    .map(|n| {
                        let mut f = Vec::new();
                        if let Some(v) = n.via {
                            f.push(format!("via = {}", toml_string(&v.to_string())));
                        }
                        if let Some(d) = &n.dev {
                            f.push(format!("dev = {}", toml_string(d)));
                        }
                        if n.weight != 1 {
                            f.push(format!("weight = {}", n.weight));
                        }
                        format!("{{ {} }}", f.join(", "))
                    })
                    .collect();
                let _ = writeln!(t, "nexthops = [{}]", paths.join(", "));
            }
        }
        if !self.hosts.is_empty() {
            let _ = writeln!(t, "\n[hosts]");
            for (name, addrs) in &self.hosts {
                let list: Vec<String> = addrs.iter().map(|a| toml_string(&a.to_string())).collect();
                let _ = writeln!(t, "{} = [{}]", toml_string(name), list.join(", "));
            }
        }
        if self.gai_conf.is_some() || !self.addrlabels.is_empty() {
            let _ = writeln!(t, "\n[policy.linux]");
            if let Some(g) = &self.gai_conf {
                let _ = writeln!(t, "gai_conf = {}", toml_text(g));
            }
            if !self.addrlabels.is_empty() {
                let rows: Vec<String> =
                    self.addrlabels.iter().map(|(p, l)| format!("[{}, {l}]", toml_string(p))).collect();
                let _ = writeln!(t, "addrlabels = [{}]", rows.join(", "));
            }
        }
        if self.ip6addrctl_conf.is_some() || self.ip6addrctl_policy.is_some() {
            let _ = writeln!(t, "\n[policy.freebsd]");
            match (&self.ip6addrctl_conf, &self.ip6addrctl_policy) {
                // The kernel's table is the truth; rc.conf only says how it got there.
                (Some(c), p) => {
                    if let Some(p) = p {
                        let _ = writeln!(
                            t,
                            "# rc.conf: ip6addrctl_policy = {} (the table below is what the kernel had)",
                            toml_string(p)
                        );
                    }
                    let _ = writeln!(t, "ip6addrctl_conf = {}", toml_text(c));
                }
                (None, Some(p)) => {
                    let _ = writeln!(t, "ip6addrctl_policy = {}", toml_string(p));
                }
                (None, None) => {}
            }
        }
        if !self.sysctls.is_empty() {
            let os = if self.os == Some(addrsel_model::Os::Freebsd) { "freebsd" } else { "linux" };
            let _ = writeln!(t, "\n[sysctl.{os}]");
            for (k, v) in &self.sysctls {
                let _ = writeln!(t, "{} = {v}", toml_string(k));
            }
        }
        for p in &self.probes {
            let (key, value) = match &p.kind {
                ProbeKind::Connect(a) => ("connect", a),
                ProbeKind::Resolve(n) => ("resolve", n),
            };
            let _ = writeln!(t, "\n[[probes]]\nid = {}\n{key} = {}", toml_string(&p.id), toml_string(value));
        }
        let os = if self.os == Some(addrsel_model::Os::Freebsd) { "freebsd" } else { "linux" };
        for p in &self.probes {
            let answer = match &p.live {
                Live::Source(a) => format!("source = {}", toml_string(&a.to_string())),
                Live::Error(e) => format!("error = {}", toml_string(e)),
                Live::Order(o) => {
                    let list: Vec<String> = o.iter().map(|a| toml_string(&a.to_string())).collect();
                    format!("order = [{}]", list.join(", "))
                }
            };
            let _ = writeln!(
                t,
                "\n[[expect]]\nprobe = {}\nos = \"{os}\"\ntarget = \"host\"\n{answer}\nevidence = {}",
                toml_string(&p.id),
                toml_string(evidence)
            );
        }
        t
    }
}

/// Whether `name` can be a scenario interface name (the loopback is `lo` in scenarios).
pub fn usable_name(name: &str) -> bool {
    name == LOOPBACK || addrsel_model::parse::check_ifname(name).is_ok()
}

#[cfg(test)]
mod tests;
