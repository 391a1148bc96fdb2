//! The built-in sweep of address classes `cargo xtask diff` uses when no scenarios are given:
//! hosts with different mixes of source addresses, each asked for the source of one
//! destination of every class and the order of every pair of destination classes.

use std::fmt::Write as _;

use crate::parse::parse_scenario;
use crate::scenario::Scenario;

/// (name, addresses, IPv4 gateway, has IPv6 default route)
const HOSTS: &[(&str, &[&str], Option<&str>, bool)] = &[
    ("ula-and-private-v4", &["192.168.1.10/24", "fd00:11:22::10/64"], Some("192.168.1.1"), true),
    ("gua-and-private-v4", &["192.168.1.10/24", "2001:db8:1::10/64"], Some("192.168.1.1"), true),
    (
        "ula-gua-and-private-v4",
        &["192.168.1.10/24", "fd00:11:22::10/64", "2001:db8:1::10/64"],
        Some("192.168.1.1"),
        true,
    ),
    ("6to4-and-public-v4", &["198.51.100.10/24", "2002:c633:640a::10/64"], Some("198.51.100.1"), true),
    ("teredo-and-private-v4", &["192.168.1.10/24", "2001:0:5ef5:79fd::10/64"], Some("192.168.1.1"), true),
    ("private-v4-only", &["192.168.1.10/24"], Some("192.168.1.1"), false),
    ("link-local-only", &["169.254.1.10/16", "fe80::10/64"], None, false),
];

/// (class, destination address)
pub const DESTINATIONS: &[(&str, &str)] = &[
    ("loopback6", "::1"),
    ("loopback4", "127.0.0.1"),
    ("link-local6", "fe80::53"),
    ("ula-site", "fd00:11:22::53"),
    ("ula-other", "fd99:1:2::53"),
    ("gua", "2a01:4f8:c2c:8101::1"),
    ("6to4", "2002:cb00:7101::1"),
    ("teredo", "2001:0:4137:9e76::1"),
    ("private-v4", "192.168.1.53"),
    ("public-v4", "116.203.176.52"),
    ("link-local-v4", "169.254.1.53"),
];

/// The sweep's scenarios, named `sweep-<host>`.
pub fn scenarios() -> Vec<Scenario> {
    HOSTS.iter().map(|h| scenario(h)).collect()
}

fn scenario(&(name, addrs, gw4, v6_default): &(&str, &[&str], Option<&str>, bool)) -> Scenario {
    let mut t = format!("name = \"sweep-{name}\"\ndescription = \"addrsel's address-class sweep: {name}\"\n");
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let _ = writeln!(t, "[[interfaces]]\nname = \"eth0\"\naddresses = [{}]", list.join(", "));
    match gw4 {
        Some(g) => {
            let _ = writeln!(t, "[[routes]]\nto = \"0.0.0.0/0\"\nvia = \"{g}\"\ndev = \"eth0\"");
        }
        None => {
            let _ = writeln!(t, "[[routes]]\nto = \"0.0.0.0/0\"\ndev = \"eth0\"");
        }
    }
    if v6_default {
        let gw6 = addrs
            .iter()
            .find(|a| a.contains(':'))
            .map(|a| a.split("::").next().unwrap_or("").to_string() + "::1")
            .unwrap_or_default();
        let _ = writeln!(t, "[[routes]]\nto = \"::/0\"\nvia = \"{gw6}\"\ndev = \"eth0\"");
    }
    t.push_str("[hosts]\n");
    let mut probes = String::new();
    for (i, (a, da)) in DESTINATIONS.iter().enumerate() {
        for (b, db) in &DESTINATIONS[i + 1..] {
            let _ = writeln!(t, "\"{a}.{b}.sweep\" = [\"{da}\", \"{db}\"]");
            let _ = writeln!(probes, "[[probes]]\nid = \"order-{a}-{b}\"\nresolve = \"{a}.{b}.sweep\"");
        }
    }
    for (class, d) in DESTINATIONS {
        // A link-local destination means nothing without its interface (getaddrinfo's
        // answers for it carry none, which the order probes show).
        let zone = if d.starts_with("fe80:") { "%eth0" } else { "" };
        let _ = writeln!(probes, "[[probes]]\nid = \"source-{class}\"\nconnect = \"{d}{zone}\"");
    }
    t.push_str(&probes);
    parse_scenario(&format!("sweep-{name}"), &t).unwrap_or_else(|e| panic!("built-in sweep is valid: {e}")).scenario
}

#[cfg(test)]
mod tests {
    #[test]
    fn sweep_scenarios_are_valid_and_cover_every_pair() {
        let s = super::scenarios();
        assert_eq!(s.len(), super::HOSTS.len());
        let n = super::DESTINATIONS.len();
        assert_eq!(s[0].probes.len(), n * (n - 1) / 2 + n);
    }
}
