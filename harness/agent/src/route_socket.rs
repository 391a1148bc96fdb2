//! FreeBSD routes added through a routing socket (`RTM_ADD`), as route(8) did before 14.0
//! and routing daemons still do. route(8) has talked netlink since 14.0, and for an IPv4
//! route through an IPv6 gateway the two APIs give the nexthop different addresses
//! (netlink's `finalize_nhop` versus the routing socket's `rt_getifa_family`), so a scenario
//! can ask for either and the agent writes this message itself (no shell, no route(8)).
//!
//! Written by hand: no crate builds FreeBSD routing-socket messages. The layout is
//! `sys/net/route.h` on LP64 (amd64, arm64): `struct rt_msghdr` (152 bytes), then each
//! sockaddr rounded up to `sizeof(long)` (`SA_SIZE`), in RTA_* bit order.
// Elsewhere than FreeBSD only the tests build a message.
#![cfg_attr(not(target_os = "freebsd"), allow(dead_code))]

use std::net::IpAddr;

use ipnet::IpNet;

/// `sizeof(struct rt_msghdr)`: 40 bytes of header, then `struct rt_metrics` (14 `u_long`).
pub const RT_MSGHDR_LEN: usize = 152;
const RTM_VERSION: u8 = 5;
const RTM_ADD: u8 = 0x1;
const RTF_UP: i32 = 0x1;
const RTF_GATEWAY: i32 = 0x2;
const RTF_HOST: i32 = 0x4;
const RTF_STATIC: i32 = 0x800;
const RTA_DST: i32 = 0x1;
const RTA_GATEWAY: i32 = 0x2;
const RTA_NETMASK: i32 = 0x4;
/// FreeBSD's address family numbers (AF_INET6 is 28 there).
const AF_INET: u8 = 2;
const AF_INET6: u8 = 28;

/// A `sockaddr_in` or `sockaddr_in6`, padded to a multiple of 8 bytes.
fn sockaddr(addr: IpAddr, scope_id: u32) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => {
            let mut b = vec![0u8; 16];
            b[0] = 16;
            b[1] = AF_INET;
            b[4..8].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => {
            let mut b = vec![0u8; 32];
            b[0] = 28;
            b[1] = AF_INET6;
            b[8..24].copy_from_slice(&a.octets());
            b[24..28].copy_from_slice(&scope_id.to_ne_bytes());
            b
        }
    }
}

/// The `RTM_ADD` message for `dst` through `gateway` (`scope_id`: the interface index of a
/// link-local gateway, else 0). A host route carries `RTF_HOST` and no netmask.
pub fn rtm_add(dst: IpNet, gateway: IpAddr, scope_id: u32, pid: i32, seq: i32) -> Vec<u8> {
    let host = dst.prefix_len() == dst.max_prefix_len();
    let mut flags = RTF_UP | RTF_GATEWAY | RTF_STATIC;
    let mut addrs = RTA_DST | RTA_GATEWAY;
    let mut tail = sockaddr(dst.network(), 0);
    tail.extend(sockaddr(gateway, scope_id));
    if host {
        flags |= RTF_HOST;
    } else {
        addrs |= RTA_NETMASK;
        tail.extend(sockaddr(dst.netmask(), 0));
    }
    let len = RT_MSGHDR_LEN + tail.len();
    let mut m = vec![0u8; RT_MSGHDR_LEN];
    m[0..2].copy_from_slice(&(len as u16).to_ne_bytes());
    m[2] = RTM_VERSION;
    m[3] = RTM_ADD;
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&addrs.to_ne_bytes());
    m[16..20].copy_from_slice(&pid.to_ne_bytes());
    m[20..24].copy_from_slice(&seq.to_ne_bytes());
    m.extend(tail);
    m
}

/// Adds the route in the current VNET (the agent runs this inside the scenario's jail).
#[cfg(target_os = "freebsd")]
pub fn add(dst: IpNet, gateway: IpAddr, dev: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let scope_id = match (gateway, dev) {
        (IpAddr::V6(g), Some(d)) if g.is_unicast_link_local() => {
            nix::net::if_::if_nametoindex(d).map_err(|e| format!("interface {d}: {e}"))?
        }
        _ => 0,
    };
    let message = rtm_add(dst, gateway, scope_id, std::process::id() as i32, 1);
    // SAFETY: a plain socket(2); the descriptor is owned by the File below.
    let fd = unsafe { libc::socket(libc::PF_ROUTE, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(format!("socket(PF_ROUTE): {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let mut socket = unsafe { std::fs::File::from_raw_fd(fd) };
    // route_output answers a refused route with the write's errno.
    socket.write_all(&message).map_err(|e| {
        let name = e.raw_os_error().map(|n| format!("{:?}", nix::errno::Errno::from_raw(n)));
        format!("RTM_ADD {dst} via {gateway}: {}", name.unwrap_or_else(|| e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message for the seed's route, `203.0.113.0/24` via `fe80::2%em0` (index 2), byte
    /// by byte against sys/net/route.h's layout.
    #[test]
    fn rtm_add_layout() {
        let m = rtm_add("203.0.113.0/24".parse().unwrap(), "fe80::2".parse().unwrap(), 2, 77, 1);
        assert_eq!(m.len(), 152 + 16 + 32 + 16);
        assert_eq!(u16::from_ne_bytes([m[0], m[1]]) as usize, m.len());
        assert_eq!((m[2], m[3]), (5, 1), "RTM_VERSION, RTM_ADD");
        let int = |o: usize| i32::from_ne_bytes(m[o..o + 4].try_into().unwrap());
        assert_eq!(int(8), 0x1 | 0x2 | 0x800, "RTF_UP | RTF_GATEWAY | RTF_STATIC");
        assert_eq!(int(12), 0x7, "RTA_DST | RTA_GATEWAY | RTA_NETMASK");
        assert_eq!((int(16), int(20), int(24)), (77, 1, 0), "pid, seq, errno");
        assert!(m[28..152].iter().all(|&b| b == 0), "fmask, inits and metrics are zero");
        let dst = &m[152..168];
        assert_eq!((dst[0], dst[1], &dst[4..8]), (16, 2, &[203, 0, 113, 0][..]));
        let gw = &m[168..200];
        assert_eq!((gw[0], gw[1]), (28, 28), "sa_len 28, AF_INET6 28");
        assert_eq!(&gw[8..24], &"fe80::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(u32::from_ne_bytes(gw[24..28].try_into().unwrap()), 2, "sin6_scope_id");
        assert_eq!(&gw[28..32], &[0; 4], "padded to 32 (SA_SIZE)");
        let mask = &m[200..216];
        assert_eq!((mask[0], mask[1], &mask[4..8]), (16, 2, &[255, 255, 255, 0][..]));
    }

    #[test]
    fn host_routes_have_no_netmask() {
        let m = rtm_add("203.0.113.7/32".parse().unwrap(), "2001:db8::1".parse().unwrap(), 0, 1, 1);
        assert_eq!(m.len(), 152 + 16 + 32);
        let flags = i32::from_ne_bytes(m[8..12].try_into().unwrap());
        assert_eq!(flags & 0x4, 0x4, "RTF_HOST");
        assert_eq!(i32::from_ne_bytes(m[12..16].try_into().unwrap()), 0x3, "RTA_DST | RTA_GATEWAY");
    }
}
