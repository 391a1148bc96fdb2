//! The sender of an `icmp_time_exceeded` probe, run in the peer namespace (the far side of
//! the scenario host's link): a UDP packet with TTL (hop limit) 1 from the sender's address,
//! then the socket's error queue (`IP_RECVERR`/`IPV6_RECVERR`) tells which ICMP error came
//! back and from where (`SO_EE_OFFENDER`), as `traceroute` reads it.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use addrsel_model::results::Outcome;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrStorage, bind, connect, recvmsg, send,
    setsockopt, socket, sockopt,
};

/// The port traceroute starts from: nothing listens there, so only errors come back.
const PORT: u16 = 33434;
/// Five sends a second apart: one full-corpus run on a busy host saw none of three come
/// back from a router whose reply first resolves an IPv6 neighbour (v4-via-v6).
const ATTEMPTS: usize = 5;
const WAIT: Duration = Duration::from_secs(1);

/// `time exceeded`, or the error that came instead, in the words the engine uses.
fn message(v6: bool, kind: u8, code: u8) -> String {
    match (v6, kind) {
        (false, 11) | (true, 3) => "time exceeded".into(),
        (false, 3) | (true, 1) => format!("destination unreachable (code {code})"),
        _ => format!("ICMP type {kind} code {code}"),
    }
}

/// Sends the probe packet and waits for the error; `Err` when the probe could not be sent.
pub fn time_exceeded(sender: IpAddr, to: IpAddr) -> Result<Outcome, String> {
    let v6 = to.is_ipv6();
    let family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
        .map_err(|e| format!("socket: {e}"))?;
    let raw = fd.as_raw_fd();
    let set = |r: nix::Result<()>, what: &str| r.map_err(|e| format!("{what}: {e}"));
    if v6 {
        set(setsockopt(&fd, sockopt::Ipv6RecvErr, &true), "IPV6_RECVERR")?;
        set(setsockopt(&fd, sockopt::Ipv6Ttl, &1), "IPV6_UNICAST_HOPS")?;
    } else {
        set(setsockopt(&fd, sockopt::Ipv4RecvErr, &true), "IP_RECVERR")?;
        set(setsockopt(&fd, sockopt::Ipv4Ttl, &1), "IP_TTL")?;
    }
    bind(raw, &SockaddrStorage::from(SocketAddr::new(sender, 0))).map_err(|e| format!("bind {sender}: {e}"))?;
    connect(raw, &SockaddrStorage::from(SocketAddr::new(to, PORT))).map_err(|e| format!("connect {to}: {e}"))?;
    for _ in 0..ATTEMPTS {
        // An earlier error may be reported by this send; the queue below says what it was.
        let _ = send(raw, b"addrsel", MsgFlags::empty());
        let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        let _ =
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(WAIT).unwrap_or(nix::poll::PollTimeout::MAX));
        let mut buf = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let Ok(msg) = recvmsg::<SockaddrStorage>(raw, &mut iov, Some(&mut space), MsgFlags::MSG_ERRQUEUE) else {
            continue;
        };
        for cmsg in msg.cmsgs().map_err(|e| format!("control messages: {e}"))? {
            let (err, offender) = match cmsg {
                ControlMessageOwned::Ipv4RecvErr(err, Some(a)) => {
                    (err, IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
                }
                ControlMessageOwned::Ipv6RecvErr(err, Some(a)) => {
                    (err, IpAddr::V6(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr)))
                }
                _ => continue,
            };
            return Ok(Outcome::Icmp {
                to: to.to_string(),
                message: Some(message(v6, err.ee_type, err.ee_code)),
                source: Some(offender),
            });
        }
    }
    Ok(Outcome::Icmp { to: to.to_string(), message: None, source: None })
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_in_the_engines_words() {
        assert_eq!(super::message(false, 11, 0), "time exceeded");
        assert_eq!(super::message(true, 3, 0), "time exceeded");
        assert_eq!(super::message(false, 3, 1), "destination unreachable (code 1)");
        assert_eq!(super::message(true, 1, 0), "destination unreachable (code 0)");
    }
}
