//! `cargo xtask capture`: this host as a scenario. Reads only (iproute2's JSON, /etc/gai.conf
//! and /proc on Linux; ifconfig, netstat's libxo JSON, ip6addrctl and rc.conf on FreeBSD),
//! asks the live resolver and kernel for the probes' answers and records them as
//! expectations, so a run of the scenario shows at once whether it reproduces the host.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;

use addrsel_capture::{Host, Live, Probe, ProbeKind, anonymize, slug};
use addrsel_engine::{Profile, predict};
use anyhow::{Context as _, bail};

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Add a connect probe for ADDR (or IPv6ADDR%INTERFACE), with the live source as its expectation.
    #[arg(long = "connect", value_name = "ADDR")]
    connects: Vec<String>,
    /// Add a resolve probe for NAME: its addresses go into [hosts] as the resolver gives them
    /// (IPv6 then IPv4, each family as getaddrinfo returns it), the live order is the expectation.
    #[arg(long = "resolve", value_name = "NAME")]
    resolves: Vec<String>,
    /// Write the scenario here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// The scenario's name (default: captured-HOSTNAME).
    #[arg(long)]
    name: Option<String>,
    /// Replace every address and name, keeping what selection depends on (refused when the
    /// engine would decide differently on the result).
    #[arg(long)]
    anonymize: bool,
    /// The anonymizing key (default: random), to get the same mapping again.
    #[arg(long, requires = "anonymize")]
    seed: Option<u64>,
}

fn run_tool(argv: &[&str]) -> anyhow::Result<String> {
    let out =
        Command::new(argv[0]).args(&argv[1..]).output().with_context(|| format!("cannot run `{}`", argv.join(" ")))?;
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", argv.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed invalid UTF-8", argv.join(" ")))
}

#[cfg(not(target_os = "freebsd"))]
fn read_host() -> anyhow::Result<Host> {
    let mut host = addrsel_capture::linux::read(
        &run_tool(&["ip", "-j", "addr", "show"])?,
        &run_tool(&["ip", "-j", "-4", "route", "show", "table", "main"])?,
        &run_tool(&["ip", "-j", "-6", "route", "show", "table", "main"])?,
        &run_tool(&["ip", "-j", "addrlabel", "list"])?,
    )
    .map_err(anyhow::Error::msg)?;
    // VRFs and their tables (a kernel without the VRF driver has none to show).
    let vrf_links = run_tool(&["ip", "-j", "-d", "link", "show", "type", "vrf"]).unwrap_or_default();
    let mut tables = Vec::new();
    for (_, table) in addrsel_capture::linux::vrf_tables(&vrf_links).map_err(anyhow::Error::msg)? {
        let t = table.to_string();
        tables.push((
            table,
            run_tool(&["ip", "-j", "-4", "route", "show", "table", &t])?,
            run_tool(&["ip", "-j", "-6", "route", "show", "table", &t])?,
        ));
    }
    addrsel_capture::linux::read_vrfs(&mut host, &vrf_links, &tables).map_err(anyhow::Error::msg)?;
    match std::fs::read_to_string("/etc/gai.conf") {
        Ok(text) => host.gai_conf = Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("reading /etc/gai.conf"),
    }
    let mut values = Vec::new();
    for i in &host.interfaces {
        for key in ["use_tempaddr", "use_oif_addrs_only"] {
            let path = format!("/proc/sys/net/ipv6/conf/{}/{key}", i.name);
            if let Ok(v) = std::fs::read_to_string(&path) {
                values.push((i.name.clone(), key, v.trim().parse::<i64>().unwrap_or(0)));
            }
        }
    }
    host.sysctls = addrsel_capture::linux::sysctls(&values);
    Ok(host)
}

#[cfg(target_os = "freebsd")]
fn read_host() -> anyhow::Result<Host> {
    use addrsel_capture::freebsd;
    let mut host = Host { os: Some(addrsel_model::Os::Freebsd), ..Host::default() };
    freebsd::read_ifconfig(&run_tool(&["ifconfig"])?, &mut host).map_err(anyhow::Error::msg)?;
    freebsd::read_netstat(&run_tool(&["netstat", "--libxo", "json", "-rn"])?, &mut host).map_err(anyhow::Error::msg)?;
    // Every other FIB's routes, as VRFs' tables.
    let fibs: u32 = run_tool(&["sysctl", "-n", "net.fibs"])?.trim().parse().context("sysctl -n net.fibs")?;
    for fib in 1..fibs {
        let f = fib.to_string();
        let json = run_tool(&["netstat", "--libxo", "json", "-rn", "-F", &f])?;
        freebsd::read_netstat_fib(&json, fib, &mut host).map_err(anyhow::Error::msg)?;
    }
    freebsd::fibs_as_vrfs(&mut host);
    freebsd::read_ip6addrctl_show(&run_tool(&["ip6addrctl", "show"])?, &mut host).map_err(anyhow::Error::msg)?;
    for rc in ["/etc/rc.conf", "/etc/rc.conf.local"] {
        if let Ok(text) = std::fs::read_to_string(rc) {
            freebsd::read_rc_conf(&text, &mut host);
        }
    }
    for key in [
        "net.inet6.ip6.use_tempaddr",
        "net.inet6.ip6.prefer_tempaddr",
        "net.inet6.ip6.use_deprecated",
        "net.inet6.ip6.v6only",
    ] {
        let v = run_tool(&["sysctl", "-n", key])?.trim().to_string();
        let default = if key.ends_with("_tempaddr") { "0" } else { "1" };
        if v != default {
            host.sysctls.push((key.into(), v));
        }
    }
    Ok(host)
}

/// getaddrinfo for one family, without sorting across families and without mapped
/// addresses: what the resolver has for the name. (Written against libc because the
/// standard library's lookup asks for both families at once, sorted.)
fn lookup(name: &str, family: libc::c_int) -> Vec<IpAddr> {
    let Ok(c_name) = std::ffi::CString::new(name) else { return vec![] };
    // SAFETY: zeroed addrinfo is a valid "no hints" value; fields set below.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = libc::SOCK_DGRAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string and hints; `res` is freed below.
    if unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut res) } != 0 {
        return vec![];
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p walks the list getaddrinfo returned.
        let ai = unsafe { &*p };
        // SAFETY: ai_addr points to a sockaddr of ai_family's type.
        let addr = unsafe {
            match ai.ai_family {
                libc::AF_INET => {
                    let sa = &*(ai.ai_addr as *const libc::sockaddr_in);
                    Some(IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes()))
                }
                libc::AF_INET6 => Some(IpAddr::from((*(ai.ai_addr as *const libc::sockaddr_in6)).sin6_addr.s6_addr)),
                _ => None,
            }
        };
        if let Some(a) = addr.filter(|a| !out.contains(a)) {
            out.push(a);
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from getaddrinfo.
    unsafe { libc::freeaddrinfo(res) };
    out
}

fn errno_name(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), |n| format!("{:?}", nix::errno::Errno::from_raw(n)))
}

/// The source the live kernel gives a UDP connect, as the agent asks it.
fn live_source(dst: &str) -> anyhow::Result<Live> {
    let (addr, zone) = match dst.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (dst, None),
    };
    let ip: IpAddr = addr.parse().with_context(|| format!("--connect {dst}: not an address"))?;
    let target = match (ip, zone) {
        (IpAddr::V6(v6), Some(z)) => {
            let index = nix::net::if_::if_nametoindex(z).with_context(|| format!("--connect {dst}: interface {z}"))?;
            SocketAddr::V6(std::net::SocketAddrV6::new(v6, 9, 0, index))
        }
        _ => SocketAddr::new(ip, 9),
    };
    let socket = UdpSocket::bind(if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).context("a UDP socket")?;
    Ok(match socket.connect(target).and_then(|()| socket.local_addr()) {
        Ok(local) => Live::Source(local.ip()),
        Err(e) => Live::Error(errno_name(&e)),
    })
}

/// Days since 1970-01-01 as (year, month, day), for the evidence's UTC date.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut host = read_host()?;
    for name in &args.resolves {
        let mut addrs = lookup(name, libc::AF_INET6);
        addrs.extend(lookup(name, libc::AF_INET));
        if addrs.is_empty() {
            eprintln!("error: --resolve {name}: the resolver has no address for it");
            return Ok(exit::BAD_INPUT);
        }
        let live = lookup(name, libc::AF_UNSPEC);
        host.hosts.push((name.clone(), addrs));
        host.probes.push(Probe {
            id: slug("resolve-", name),
            kind: ProbeKind::Resolve(name.clone()),
            live: Live::Order(live),
        });
    }
    for dst in &args.connects {
        let live = live_source(dst)?;
        host.probes.push(Probe { id: slug("to-", dst), kind: ProbeKind::Connect(dst.clone()), live });
    }
    let hostname =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "this host".into());
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let when = format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", t / 3600, t % 3600 / 60);
    let mut name = args.name.clone().unwrap_or_else(|| slug("captured-", &hostname));
    let mut evidence = format!("the live answer of {hostname} at {when}, by cargo xtask capture");
    let mut description = format!("Captured from {hostname} at {when} by `cargo xtask capture`.");
    if args.anonymize {
        let key = args.seed.unwrap_or_else(|| rand_key(secs));
        let m = anonymize::Mapping::new(&host, key);
        let anon = m.apply(&host);
        check_same_decisions(&host, &anon, &m)?;
        let (gua, public) = m.documentation_ranges();
        description = format!(
            "Captured by `cargo xtask capture --anonymize` at {when}: every address and name replaced, classes and common prefixes kept{}{}.",
            if gua { "; global IPv6 in 3fff::/20" } else { "; global IPv6 permuted in place (they share no /20)" },
            if public { "; public IPv4 in 198.18.0.0/15" } else { "" }
        );
        evidence = format!("the live answer of the captured host at {when}, anonymized");
        if args.name.is_none() {
            name = "captured-anonymized".into();
        }
        host = anon;
    }
    let text = host.scenario(&name, &description, &evidence);
    // What is written must be a scenario addrsel reads.
    addrsel_model::parse_scenario("captured.toml", &text)
        .map_err(|e| anyhow::anyhow!("the captured scenario does not read back:\n{e}"))?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write -o {}", path.display()))?;
            eprintln!(
                "captured {} interfaces, {} routes and {} probes into {}; {} things the format cannot say are comments there",
                host.interfaces.len(),
                host.routes.len(),
                host.probes.len(),
                path.display(),
                host.skipped.len()
            );
        }
        None => print!("{text}"),
    }
    Ok(exit::OK)
}

fn rand_key(secs: i64) -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).is_ok() {
        u64::from_ne_bytes(bytes)
    } else {
        secs as u64 ^ u64::from(std::process::id())
    }
}

/// Anonymizing must not change a decision: the engine on both scenarios, the answers of the
/// original mapped, must agree.
fn check_same_decisions(host: &Host, anon: &Host, m: &anonymize::Mapping) -> anyhow::Result<()> {
    let profile =
        if host.os == Some(addrsel_model::Os::Freebsd) { Profile::Freebsd } else { Profile::Linux(Default::default()) };
    let read = |h: &Host| {
        let text = h.scenario("check", "check", "check");
        addrsel_model::parse_scenario("check.toml", &text).map(|p| p.scenario).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let (before, after) = (predict(&read(host)?, &profile), predict(&read(anon)?, &profile));
    let mut differ = Vec::new();
    for (b, a) in before.probes.iter().zip(&after.probes) {
        use addrsel_model::results::Outcome;
        let mapped = match &b.result.outcome {
            Outcome::Connect { source, error, .. } => (source.map(|s| m.addr(s)).map(|s| vec![s]), error.clone()),
            Outcome::Resolve { order, error, .. } => (Some(order.iter().map(|x| m.addr(*x)).collect()), error.clone()),
            other => (None, Some(other.summary())),
        };
        let got = match &a.result.outcome {
            Outcome::Connect { source, error, .. } => (source.map(|s| vec![s]), error.clone()),
            Outcome::Resolve { order, error, .. } => (Some(order.clone()), error.clone()),
            other => (None, Some(other.summary())),
        };
        if mapped != got {
            differ.push(format!(
                "{}: {} becomes {}",
                b.result.probe,
                b.result.outcome.summary(),
                a.result.outcome.summary()
            ));
        }
    }
    if !differ.is_empty() {
        bail!(
            "anonymizing would change what the engine decides, so nothing was written:\n  {}\ncapture without --anonymize, or edit the addresses by hand",
            differ.join("\n  ")
        );
    }
    Ok(())
}
