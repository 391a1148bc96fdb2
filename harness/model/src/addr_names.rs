//! How results name addresses: the temporary address the Linux kernel makes from a
//! `mngtmpaddr` address has a random interface ID, so scenarios, results and snapshots call
//! it `temporary(PREFIX)` and the engine and agent use one stand-in address for it.

use std::net::{IpAddr, Ipv6Addr};

/// The interface ID the engine gives the temporary address the Linux kernel makes from a
/// `mngtmpaddr` address. The kernel's is random, so results name it by its prefix,
/// `temporary(2001:db8:1::/64)`, and the agent maps the one it sees onto this.
pub const KERNEL_TEMPORARY_IID: u64 = 0x7e7e_7e7e_7e7e_7e7e;

/// The stand-in for the kernel's temporary address in `prefix` (a /64).
pub fn kernel_temporary(prefix: ipnet::Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(prefix.trunc().network()) & !u128::from(u64::MAX)) | u128::from(KERNEL_TEMPORARY_IID))
}

/// An address as results show it: the kernel's temporary address as `temporary(PREFIX)`.
pub fn show_addr(a: &IpAddr) -> String {
    match a {
        IpAddr::V6(v6) if u128::from(*v6) as u64 == KERNEL_TEMPORARY_IID => {
            let net = ipnet::Ipv6Net::new(*v6, 64).expect("64").trunc();
            format!("temporary({net})")
        }
        other => other.to_string(),
    }
}

/// `temporary(2001:db8:1::/64)` as written in scenarios and results, or a plain address.
pub fn parse_shown_addr(text: &str) -> Option<IpAddr> {
    match text.strip_prefix("temporary(").and_then(|t| t.strip_suffix(')')) {
        Some(prefix) => {
            let net: ipnet::Ipv6Net = prefix.parse().ok()?;
            (net.prefix_len() == 64 && net.trunc() == net).then(|| IpAddr::V6(kernel_temporary(net)))
        }
        None => text.parse().ok(),
    }
}
