//! Asks the test kernel module which source address the kernel would choose, in the network
//! stack the agent stands in: Linux through `/proc/net/addrsel` (per network namespace),
//! FreeBSD through `sysctl net.addrsel.query` (per VNET). The request and answer are the
//! C header's structs, as bindgen translated them (`kmod_abi.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use addrsel_model::SourcePreference;
use addrsel_model::protocol::KmodStatus;
use addrsel_model::results::KernelAnswer;

use crate::kmod_abi::{
    ADDRSEL_FAMILY_INET, ADDRSEL_FAMILY_INET6, ADDRSEL_KMOD_VERSION, ADDRSEL_PREFER_CAREOF, ADDRSEL_PREFER_HOME,
    ADDRSEL_PREFER_PUBLIC, ADDRSEL_PREFER_TEMPORARY, addrsel_answer, addrsel_query,
};

#[cfg(target_os = "linux")]
const PROC_FILE: &str = "/proc/net/addrsel";
#[cfg(target_os = "linux")]
const MODULE_DIR: &str = "/sys/module/addrsel_kmod";
/// Where the guest's init leaves the reason loading failed.
#[cfg(target_os = "linux")]
pub const LOAD_ERROR_FILE: &str = "/run/addrsel-kmod-error";

pub fn query(dst: IpAddr, ifindex: u32, prefer: &[SourcePreference]) -> addrsel_query {
    let mut q = addrsel_query { version: ADDRSEL_KMOD_VERSION, ifindex, ..Default::default() };
    match dst {
        IpAddr::V4(a) => {
            q.family = ADDRSEL_FAMILY_INET;
            q.dst[..4].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            q.family = ADDRSEL_FAMILY_INET6;
            q.dst = a.octets();
        }
    }
    for p in prefer {
        q.prefs |= match p {
            SourcePreference::Temporary => ADDRSEL_PREFER_TEMPORARY,
            SourcePreference::Public => ADDRSEL_PREFER_PUBLIC,
            SourcePreference::CareOf => ADDRSEL_PREFER_CAREOF,
            SourcePreference::Home => ADDRSEL_PREFER_HOME,
        };
    }
    q
}

fn errno_name(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

/// The answer as the report shows it.
pub fn decode(a: &addrsel_answer) -> KernelAnswer {
    if a.version != ADDRSEL_KMOD_VERSION {
        return KernelAnswer { source: None, error: Some(format!("module ABI version {}", a.version)), nexthop: None };
    }
    let nexthop = match a.nexthop_family {
        ADDRSEL_FAMILY_INET => Some("IPv4".to_string()),
        ADDRSEL_FAMILY_INET6 => Some("IPv6".to_string()),
        _ => None,
    };
    if a.error != 0 {
        return KernelAnswer { source: None, error: Some(errno_name(a.error)), nexthop };
    }
    let source = match a.family {
        ADDRSEL_FAMILY_INET => Some(IpAddr::V4(Ipv4Addr::new(a.src[0], a.src[1], a.src[2], a.src[3]))),
        ADDRSEL_FAMILY_INET6 => Some(IpAddr::V6(Ipv6Addr::from(a.src))),
        other => {
            return KernelAnswer {
                source: None,
                error: Some(format!("unknown family {other} in the answer")),
                nexthop,
            };
        }
    };
    KernelAnswer { source, error: None, nexthop }
}

fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is one of the ABI's plain-old-data structs (no padding, no pointers).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

fn from_bytes(bytes: &[u8]) -> Option<addrsel_answer> {
    (bytes.len() == std::mem::size_of::<addrsel_answer>()).then(|| {
        // SAFETY: the size matches and every bit pattern is a valid addrsel_answer.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<addrsel_answer>()) }
    })
}

/// One question to the module; `Err` when the module could not be asked at all.
#[cfg(target_os = "linux")]
pub fn ask(q: &addrsel_query) -> Result<addrsel_answer, String> {
    use std::io::{Read, Write};
    let mut f =
        std::fs::OpenOptions::new().read(true).write(true).open(PROC_FILE).map_err(|e| format!("{PROC_FILE}: {e}"))?;
    f.write_all(as_bytes(q)).map_err(|e| format!("writing the query to {PROC_FILE}: {e}"))?;
    let mut buf = vec![0u8; std::mem::size_of::<addrsel_answer>()];
    f.read_exact(&mut buf).map_err(|e| format!("reading the answer from {PROC_FILE}: {e}"))?;
    from_bytes(&buf).ok_or_else(|| "short answer".into())
}

#[cfg(target_os = "freebsd")]
pub fn ask(q: &addrsel_query) -> Result<addrsel_answer, String> {
    let name = c"net.addrsel.query";
    let mut buf = vec![0u8; std::mem::size_of::<addrsel_answer>()];
    let mut len = buf.len();
    let new = as_bytes(q);
    // SAFETY: sysctlbyname with valid old/new buffers and their lengths.
    let rc =
        unsafe { libc::sysctlbyname(name.as_ptr(), buf.as_mut_ptr().cast(), &mut len, new.as_ptr().cast(), new.len()) };
    if rc != 0 {
        return Err(format!("sysctl net.addrsel.query: {}", std::io::Error::last_os_error()));
    }
    from_bytes(&buf[..len]).ok_or_else(|| "short answer".into())
}

/// The module's answer for a connect probe, as reported next to the socket's.
pub fn kernel_answer(dst: IpAddr, ifindex: u32, prefer: &[SourcePreference]) -> KernelAnswer {
    match ask(&query(dst, ifindex, prefer)) {
        Ok(a) => decode(&a),
        Err(e) => KernelAnswer { source: None, error: Some(format!("module not asked: {e}")), nexthop: None },
    }
}

/// Whether the module is loaded and its init ran (its interface exists).
#[cfg(target_os = "linux")]
pub fn status() -> KmodStatus {
    let loaded = std::path::Path::new(MODULE_DIR).exists();
    let interface = std::path::Path::new(PROC_FILE).exists();
    match (loaded, interface) {
        (true, true) => KmodStatus { ready: true, detail: format!("loaded; {PROC_FILE} answers") },
        (true, false) => KmodStatus {
            ready: false,
            detail: format!("module loaded but its init did not run ({MODULE_DIR} exists, {PROC_FILE} does not)"),
        },
        (false, _) => {
            let why = std::fs::read_to_string(LOAD_ERROR_FILE).unwrap_or_else(|_| "no module was loaded".into());
            KmodStatus { ready: false, detail: format!("module not loaded: {}", why.trim()) }
        }
    }
}

/// Where the FreeBSD payload script leaves kldload's complaint.
#[cfg(target_os = "freebsd")]
pub const LOAD_ERROR_FILE: &str = "/var/addrsel/kmod-error";

#[cfg(target_os = "freebsd")]
pub fn status() -> KmodStatus {
    let mut mib = [0 as libc::c_int; 8];
    let mut len = mib.len();
    // SAFETY: name lookup only (the handler does not run), into a buffer of `len` ints.
    let found = unsafe { libc::sysctlnametomib(c"net.addrsel.query".as_ptr(), mib.as_mut_ptr(), &mut len) } == 0;
    // SAFETY: a NUL-terminated file name.
    let loaded = unsafe { libc::kld_isloaded(c"addrsel.ko".as_ptr()) } != 0;
    match (found, loaded) {
        (true, _) => KmodStatus { ready: true, detail: "loaded; sysctl net.addrsel.query answers".into() },
        (false, true) => KmodStatus {
            ready: false,
            detail: "module loaded but its init did not run (addrsel.ko is loaded, net.addrsel.query does not exist)"
                .into(),
        },
        (false, false) => {
            let why = std::fs::read_to_string(LOAD_ERROR_FILE).unwrap_or_else(|_| "no module was loaded".into());
            KmodStatus { ready: false, detail: format!("module not loaded: {}", why.trim()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers_round_trip_through_the_c_layout() {
        let q = query("2001:db8::1".parse().unwrap(), 3, &[SourcePreference::Temporary, SourcePreference::Home]);
        let bytes = as_bytes(&q);
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[0..4], &1u32.to_ne_bytes());
        assert_eq!(&bytes[4..8], &6u32.to_ne_bytes());
        assert_eq!(&bytes[8..12], &3u32.to_ne_bytes());
        assert_eq!(&bytes[12..16], &9u32.to_ne_bytes());
        assert_eq!(bytes[16..18], [0x20, 0x01]);
        let q4 = query("192.0.2.7".parse().unwrap(), 0, &[]);
        assert_eq!(q4.dst[..5], [192, 0, 2, 7, 0]);

        let mut raw = [0u8; 32];
        raw[0..4].copy_from_slice(&1u32.to_ne_bytes());
        raw[8..12].copy_from_slice(&4u32.to_ne_bytes());
        raw[16..20].copy_from_slice(&[10, 0, 0, 50]);
        let a = from_bytes(&raw).unwrap();
        assert_eq!(decode(&a), KernelAnswer { source: Some("10.0.0.50".parse().unwrap()), error: None, nexthop: None });
        raw[4..8].copy_from_slice(&libc::EHOSTUNREACH.to_ne_bytes());
        assert_eq!(decode(&from_bytes(&raw).unwrap()).error.as_deref(), Some("EHOSTUNREACH"));
        // FreeBSD's module says why: the nexthop's address is IPv6 (bytes 12..16).
        raw[12..16].copy_from_slice(&6u32.to_ne_bytes());
        let k = decode(&from_bytes(&raw).unwrap());
        assert_eq!((k.error.as_deref(), k.nexthop.as_deref()), (Some("EHOSTUNREACH"), Some("IPv6")));
        assert!(from_bytes(&raw[..31]).is_none());
    }
}
