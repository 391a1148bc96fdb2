//! The probes: what the kernel's socket layer and the C library really choose. Portable to
//! every Unix the agent runs on.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::ffi::CStr;
use std::ffi::CString;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

use addrsel_model::results::{KernelAnswer, Outcome};
use addrsel_model::{Probe, ProbeKind, SourcePreference};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe};

/// Port used for connect probes; a UDP connect sends nothing.
const PROBE_PORT: u16 = 9;

/// Where the resolver probe programs are (from the run's input), once per process.
static RESOLVER_DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

pub fn set_resolver_dir(dir: Option<String>) {
    let _ = RESOLVER_DIR.set(dir.map(std::path::PathBuf::from));
}

pub fn resolver_dir() -> Option<&'static std::path::Path> {
    RESOLVER_DIR.get().and_then(|d| d.as_deref())
}

/// A resolve probe through another resolver: its probe program, one address per line on
/// stdout in the library's order; a failure's first stderr line is the error.
fn resolve_with(name: &str, resolver: addrsel_model::Resolver) -> Outcome {
    let (program, env) = addrsel_model::plan::resolver_command(resolver).expect("not glibc");
    let Some(path) = resolver_dir().map(|d| d.join(program)).filter(|p| p.is_file()) else {
        // The runner leaves the reason beside a program it could not build for this target.
        let why = resolver_dir().and_then(|d| std::fs::read_to_string(d.join(format!("{program}.why"))).ok());
        return Outcome::Unsupported {
            reason: match why {
                Some(why) => format!("no {program} on this target: {}", why.trim()),
                None => {
                    format!("no {program} on this target (the {} probe program is not built for it)", resolver.word())
                }
            },
        };
    };
    let mut cmd = std::process::Command::new(&path);
    cmd.arg(name).stdin(std::process::Stdio::null());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Err(e) => Outcome::Unsupported { reason: format!("cannot run {}: {e}", path.display()) },
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let order: Result<Vec<IpAddr>, _> =
                text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.trim().parse::<IpAddr>()).collect();
            let error = (!out.status.success())
                .then(|| String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("failed").trim().to_string());
            match order {
                Ok(order) => Outcome::Resolve { name: name.to_string(), order, error },
                Err(e) => Outcome::Unsupported { reason: format!("{program} printed something not an address: {e}") },
            }
        }
    }
}

/// Runs a probe; `ask_kmod`: also ask the test kernel module for connect probes.
pub fn run(p: &Probe, ask_kmod: bool) -> Outcome {
    match &p.kind {
        ProbeKind::Connect { dst, zone } => {
            let text = p.kind.dst_text().unwrap_or_default();
            // A VRF probe's socket is bound to the VRF's device, as `ip vrf exec` arranges.
            let device = p.bind_device.as_deref().or(p.vrf.as_deref());
            let (source, error) = match connect(*dst, zone.as_deref(), &p.prefer, p.bind, device, p.fib) {
                Ok(Ok(source)) => (Some(source), None),
                Ok(Err(errno)) => (None, Some(errno)),
                Err(unsupported) => return Outcome::Unsupported { reason: unsupported },
            };
            // The module answers the kernel's selection for a destination; a bound socket
            // skips it, so there is nothing to compare.
            let unbound = p.bind.is_none() && device.is_none() && p.fib.is_none();
            let kernel =
                (ask_kmod && unbound).then(|| match zone.as_deref().map_or(Ok(0), nix::net::if_::if_nametoindex) {
                    Ok(ifindex) => crate::module_query::kernel_answer(*dst, ifindex, &p.prefer),
                    Err(e) => KernelAnswer { source: None, error: Some(errno_name(e)), nexthop: None },
                });
            Outcome::Connect {
                dst: text,
                source,
                error,
                kernel_source: kernel.as_ref().and_then(|k| k.source),
                kernel_error: kernel.as_ref().and_then(|k| k.error.clone()),
                kernel_nexthop: kernel.and_then(|k| k.nexthop),
                sources: vec![],
            }
        }
        ProbeKind::Resolve { name, resolver } if !resolver.is_glibc() => resolve_with(name, *resolver),
        ProbeKind::Resolve { name, .. } => {
            let (order, error) = resolve(name);
            Outcome::Resolve { name: name.clone(), order, error }
        }
        // Its sender is on the far side of a link: the scenario process sends it (Linux).
        ProbeKind::IcmpTimeExceeded { .. } => {
            Outcome::Unsupported { reason: "an ICMP probe needs a sender on the far side of the link".into() }
        }
    }
}

fn errno_name(e: nix::errno::Errno) -> String {
    format!("{e:?}")
}

/// UDP `connect()` then `getsockname()`. Outer `Err`: the probe cannot be expressed here.
pub fn connect(
    dst: IpAddr,
    zone: Option<&str>,
    prefer: &[SourcePreference],
    bind: Option<IpAddr>,
    bind_device: Option<&str>,
    fib: Option<u32>,
) -> Result<Result<IpAddr, String>, String> {
    let family = if dst.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = match socket::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None) {
        Ok(fd) => fd,
        Err(e) => return Ok(Err(errno_name(e))),
    };
    if dst.is_ipv6() && !prefer.is_empty() {
        set_preferences(&fd, prefer)?;
    }
    if let Some(dev) = bind_device {
        bind_to_device(&fd, dev)?;
    }
    if let Some(fib) = fib {
        set_fib(&fd, fib)?;
    }
    if let Some(b) = bind {
        let local = SockaddrStorage::from(SocketAddr::new(b, 0));
        if let Err(e) = socket::bind(fd.as_raw_fd(), &local) {
            return Ok(Err(errno_name(e)));
        }
    }
    let scope_id = match zone {
        Some(z) => match nix::net::if_::if_nametoindex(z) {
            Ok(i) => i,
            Err(e) => return Ok(Err(errno_name(e))),
        },
        None => 0,
    };
    let addr: SocketAddr = match dst {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, PROBE_PORT)),
        IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, PROBE_PORT, 0, scope_id)),
    };
    let storage = SockaddrStorage::from(addr);
    if let Err(e) = socket::connect(fd.as_raw_fd(), &storage) {
        return Ok(Err(errno_name(e)));
    }
    let local: SockaddrStorage = match socket::getsockname(fd.as_raw_fd()) {
        Ok(l) => l,
        Err(e) => return Ok(Err(errno_name(e))),
    };
    let source = if let Some(v4) = local.as_sockaddr_in() {
        IpAddr::V4(v4.ip())
    } else if let Some(v6) = local.as_sockaddr_in6() {
        IpAddr::V6(v6.ip())
    } else {
        return Ok(Err("EAFNOSUPPORT".into()));
    };
    Ok(Ok(source))
}

#[cfg(target_os = "linux")]
fn bind_to_device(fd: &OwnedFd, dev: &str) -> Result<(), String> {
    socket::setsockopt(fd, socket::sockopt::BindToDevice, &std::ffi::OsString::from(dev))
        .map_err(|e| format!("SO_BINDTODEVICE {dev}: {e}"))
}

/// FreeBSD plans refuse `bind_device` before a probe runs.
#[cfg(not(target_os = "linux"))]
fn bind_to_device(_fd: &OwnedFd, dev: &str) -> Result<(), String> {
    Err(format!("SO_BINDTODEVICE {dev}: not on this OS"))
}

/// FreeBSD: the socket routes through FIB `fib` (`SO_SETFIB`), as `setfib(1)` arranges for
/// a process.
#[cfg(target_os = "freebsd")]
fn set_fib(fd: &OwnedFd, fib: u32) -> Result<(), String> {
    let value = libc::c_int::try_from(fib).map_err(|_| format!("SO_SETFIB {fib}: out of range"))?;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SETFIB,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(format!("SO_SETFIB {fib}: {}", std::io::Error::last_os_error())) }
}

/// Linux plans keep a VRF probe's `vrf` (a device); only FreeBSD plans set a FIB.
#[cfg(not(target_os = "freebsd"))]
fn set_fib(_fd: &OwnedFd, fib: u32) -> Result<(), String> {
    Err(format!("SO_SETFIB {fib}: not on this OS"))
}

#[cfg(target_os = "linux")]
fn set_preferences(fd: &OwnedFd, prefer: &[SourcePreference]) -> Result<(), String> {
    // include/uapi/linux/in6.h
    const IPV6_ADDR_PREFERENCES: libc::c_int = 72;
    let mut bits: libc::c_int = 0;
    for p in prefer {
        bits |= match p {
            SourcePreference::Temporary => 0x1,
            SourcePreference::Public => 0x2,
            SourcePreference::CareOf => 0x4,
            SourcePreference::Home => 0x400,
        };
    }
    setsockopt_int(fd, IPV6_ADDR_PREFERENCES, bits)
}

#[cfg(target_os = "freebsd")]
fn set_preferences(fd: &OwnedFd, prefer: &[SourcePreference]) -> Result<(), String> {
    // netinet6/in6.h: IPV6_PREFER_TEMPADDR, IP6PO_TEMPADDR_NOTPREFER / _PREFER.
    const IPV6_PREFER_TEMPADDR: libc::c_int = 63;
    for p in prefer {
        match p {
            SourcePreference::Temporary => setsockopt_int(fd, IPV6_PREFER_TEMPADDR, 1)?,
            SourcePreference::Public => setsockopt_int(fd, IPV6_PREFER_TEMPADDR, 0)?,
            SourcePreference::Home | SourcePreference::CareOf => {
                return Err("FreeBSD has no Mobile IPv6 home/care-of source preference".into());
            }
        }
    }
    Ok(())
}

fn setsockopt_int(fd: &OwnedFd, opt: libc::c_int, value: libc::c_int) -> Result<(), String> {
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("setting source preferences failed: {}", std::io::Error::last_os_error()))
    }
}

/// getaddrinfo(name, NULL, {AF_UNSPEC, SOCK_DGRAM}) in a child process, so a C library that
/// crashes on its configuration (glibc < 2.41 with a bad gai.conf) is reported, not fatal.
pub fn resolve(name: &str) -> (Vec<IpAddr>, Option<String>) {
    let (reader, writer) = match pipe() {
        Ok(p) => p,
        Err(e) => return (vec![], Some(errno_name(e))),
    };
    // SAFETY: the agent is single-threaded; the child only calls getaddrinfo, writes and exits.
    match unsafe { fork() } {
        Err(e) => (vec![], Some(errno_name(e))),
        Ok(ForkResult::Child) => {
            drop(reader);
            let text = match getaddrinfo(name) {
                Ok(addrs) => addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                Err(e) => format!("!{e}"),
            };
            let mut w = std::fs::File::from(writer);
            let _ = std::io::Write::write_all(&mut w, text.as_bytes());
            drop(w);
            // SAFETY: leave without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(writer);
            let mut text = String::new();
            let _ = std::fs::File::from(reader).read_to_string(&mut text);
            match waitpid(child, None) {
                Ok(WaitStatus::Signaled(_, sig, _)) => (vec![], Some(format!("{sig:?}"))),
                _ => match text.strip_prefix('!') {
                    Some(err) => (vec![], Some(err.to_string())),
                    None => (text.split_whitespace().filter_map(|a| a.parse().ok()).collect(), None),
                },
            }
        }
    }
}

fn eai_name(rc: libc::c_int) -> String {
    let known = [
        (libc::EAI_AGAIN, "EAI_AGAIN"),
        (libc::EAI_BADFLAGS, "EAI_BADFLAGS"),
        (libc::EAI_FAIL, "EAI_FAIL"),
        (libc::EAI_FAMILY, "EAI_FAMILY"),
        (libc::EAI_MEMORY, "EAI_MEMORY"),
        (libc::EAI_NONAME, "EAI_NONAME"),
        (libc::EAI_SERVICE, "EAI_SERVICE"),
        (libc::EAI_SOCKTYPE, "EAI_SOCKTYPE"),
        (libc::EAI_SYSTEM, "EAI_SYSTEM"),
    ];
    known.iter().find(|(c, _)| *c == rc).map_or(format!("EAI_{rc}"), |(_, n)| n.to_string())
}

fn getaddrinfo(name: &str) -> Result<Vec<IpAddr>, String> {
    let cname = CString::new(name).map_err(|_| "EAI_NONAME".to_string())?;
    // SAFETY: zeroed addrinfo is a valid "no hints" value; fields are set below.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_DGRAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, hints and out pointer.
    let rc = unsafe { libc::getaddrinfo(cname.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        return Err(eai_name(rc));
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p walks the list getaddrinfo returned until ai_next is NULL.
        let ai = unsafe { &*p };
        match ai.ai_family {
            libc::AF_INET => {
                // SAFETY: AF_INET entries carry a sockaddr_in.
                let sin = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 entries carry a sockaddr_in6.
                let sin6 = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from getaddrinfo.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// glibc's version string, when the agent runs on glibc.
pub fn glibc_version() -> Option<String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: returns a pointer to a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) };
        Some(v.to_string_lossy().into_owned())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}
