//! `addrsel-agent netlink-addr-add DEV ADDR/LEN optimistic`: an IPv6 address added with
//! `IFA_F_OPTIMISTIC`, which iproute2 6.1 has no keyword for. One RTM_NEWADDR message over a
//! NETLINK_ROUTE socket and its acknowledgement, written by hand: 40 bytes of fixed layout
//! (linux/netlink.h, linux/if_addr.h, linux/rtnetlink.h) do not need a netlink crate.

use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, socket};

const RTM_NEWADDR: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const NLMSG_ERROR: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const IFA_F_OPTIMISTIC: u32 = 0x04;
const RT_SCOPE_UNIVERSE: u8 = 0;

fn attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The RTM_NEWADDR request (a unit-tested layout).
pub fn request(ifindex: u32, addr: Ipv6Addr, prefix_len: u8, flags: u32, seq: u32) -> Vec<u8> {
    // struct ifaddrmsg: family, prefixlen, flags (the low 8 bits), scope, index.
    let mut body = vec![libc::AF_INET6 as u8, prefix_len, (flags & 0xff) as u8, RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&ifindex.to_ne_bytes());
    attr(&mut body, IFA_LOCAL, &addr.octets());
    attr(&mut body, IFA_ADDRESS, &addr.octets());
    attr(&mut body, IFA_FLAGS, &flags.to_ne_bytes());
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// Adds `addr/prefix_len` to `dev` with `flags` (`optimistic`, `nodad`).
pub fn add(dev: &str, addr: Ipv6Addr, prefix_len: u8, flag_words: &[String]) -> Result<(), String> {
    let mut flags = 0;
    for w in flag_words {
        flags |= match w.as_str() {
            "optimistic" => IFA_F_OPTIMISTIC,
            "nodad" => IFA_F_NODAD,
            other => return Err(format!("unknown address flag `{other}` (optimistic, nodad)")),
        };
    }
    let ifindex = nix::net::if_::if_nametoindex(dev).map_err(|e| format!("interface {dev}: {e}"))?;
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        .map_err(|e| format!("netlink socket: {e}"))?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|e| format!("netlink bind: {e}"))?;
    let msg = request(ifindex, addr, prefix_len, flags, 1);
    send(fd.as_raw_fd(), &msg, nix::sys::socket::MsgFlags::empty()).map_err(|e| format!("RTM_NEWADDR: {e}"))?;
    let mut buf = [0u8; 4096];
    let n = recv(fd.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty())
        .map_err(|e| format!("RTM_NEWADDR acknowledgement: {e}"))?;
    // struct nlmsghdr, then for NLMSG_ERROR an int error (0: acknowledged).
    if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
        return Err(format!("RTM_NEWADDR: unexpected answer ({n} bytes)"));
    }
    match i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
        0 => Ok(()),
        e => Err(format!("RTM_NEWADDR {addr}/{prefix_len} on {dev}: {}", nix::errno::Errno::from_raw(-e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let m = request(3, "2001:db8::1".parse().unwrap(), 64, IFA_F_OPTIMISTIC, 7);
        // 16 header + 8 ifaddrmsg + 2 * (4 + 16) addresses + (4 + 4) flags.
        assert_eq!(m.len(), 72);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x605);
        assert_eq!(&m[16..24], &[libc::AF_INET6 as u8, 64, 4, 0, 3, 0, 0, 0]);
        assert_eq!(u16::from_ne_bytes(m[26..28].try_into().unwrap()), IFA_LOCAL);
        assert_eq!(&m[28..44], &"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(u16::from_ne_bytes(m[66..68].try_into().unwrap()), IFA_FLAGS);
        assert_eq!(u32::from_ne_bytes(m[68..72].try_into().unwrap()), IFA_F_OPTIMISTIC);
    }
}
