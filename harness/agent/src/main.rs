//! addrsel-agent: runs on a target (the host, or inside a VM guest), applies every
//! scenario plan in isolation, runs its probes and prints one JSON message per line.
//!
//! Usage:
//!   addrsel-agent run  < input.json     run an AgentInput, print AgentMessages
//!   addrsel-agent run --framed < ...    the same, framed for a shared serial console
//!   addrsel-agent probe [--kmod] < ...  run probes in the current namespace (FreeBSD jails)
//!   addrsel-agent check                 can scenarios run here? (exit 0 = yes)
//!   addrsel-agent facts                 print the Facts message
//!   addrsel-agent route-socket-add DST/LEN GATEWAY [DEV]
//!                                       FreeBSD: add a route through a routing socket

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use addrsel_model::protocol::{AgentInput, AgentMessage, Facts};

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "linux")]
mod init;
mod module_query;
#[allow(non_camel_case_types)]
#[rustfmt::skip]
mod kmod_abi;
#[cfg(target_os = "linux")]
mod icmp_probe;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod netlink_addr;
mod probe;
mod route_socket;

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    if std::process::id() == 1 {
        init::run();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(args.get(1).is_some_and(|a| a == "--framed")),
        Some("probe") => {
            let dir = args.iter().position(|a| a == "--resolvers").and_then(|i| args.get(i + 1)).cloned();
            probe::set_resolver_dir(dir);
            probe_here(args.iter().any(|a| a == "--kmod"))
        }
        Some("check") => check(),
        Some("route-socket-add") => route_socket_add(&args[1..]),
        Some("netlink-addr-add") => netlink_addr_add(&args[1..]),
        Some("facts") => {
            emit(&mut std::io::stdout(), &AgentMessage::Facts(facts()));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: addrsel-agent run|probe|check|facts   (input JSON on stdin)");
            ExitCode::from(2)
        }
    }
}

/// `route-socket-add DST/LEN GATEWAY [DEV]`, run by a FreeBSD plan inside the scenario's
/// jail for a route with `install = "rtsock"`.
fn netlink_addr_add(args: &[String]) -> ExitCode {
    let parsed = match args {
        [dev, net, flags @ ..] => net.parse::<ipnet::Ipv6Net>().ok().map(|n| (dev, n, flags)),
        _ => None,
    };
    let Some((dev, net, flags)) = parsed else {
        eprintln!("usage: addrsel-agent netlink-addr-add DEV IPV6ADDR/LEN [optimistic] [nodad]");
        return ExitCode::from(2);
    };
    #[cfg(target_os = "linux")]
    {
        match netlink_addr::add(dev, net.addr(), net.prefix_len(), flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dev, net, flags);
        eprintln!("netlink-addr-add is Linux's (an RTM_NEWADDR message)");
        ExitCode::from(2)
    }
}

fn route_socket_add(args: &[String]) -> ExitCode {
    let parsed = match args {
        [dst, gw, rest @ ..] if rest.len() <= 1 => {
            dst.parse::<ipnet::IpNet>().ok().zip(gw.parse::<std::net::IpAddr>().ok())
        }
        _ => None,
    };
    let Some((dst, gateway)) = parsed else {
        eprintln!("usage: addrsel-agent route-socket-add DST/LEN GATEWAY [DEV]");
        return ExitCode::from(2);
    };
    #[cfg(target_os = "freebsd")]
    {
        match route_socket::add(dst, gateway, args.get(2).map(String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        let _ = (dst, gateway);
        eprintln!("route-socket-add is FreeBSD's (a routing-socket RTM_ADD)");
        ExitCode::from(2)
    }
}

fn emit(out: &mut impl Write, m: &AgentMessage) {
    let _ = writeln!(out, "{}", serde_json::to_string(m).expect("serialisable"));
    let _ = out.flush();
}

/// `run --framed`: every message framed for a noisy console, then the end marker.
fn emit_framed(out: &mut impl Write, m: &AgentMessage) {
    let _ = writeln!(out, "{}", addrsel_model::protocol::frame(m));
    if *m == AgentMessage::Done {
        let _ = writeln!(out, "{}", addrsel_model::protocol::FRAME_END);
    }
    let _ = out.flush();
    // The kernel writes its console messages (an epair being created for the next scenario)
    // straight to the serial port, past the tty's output queue: let the frame leave first.
    let _ = nix::sys::termios::tcdrain(std::io::stdout());
}

/// Fault injection for the harness's own tests: `ADDRSEL_AGENT_FAULT=KIND:SCENARIO` with KIND
/// `abort-agent` (the agent aborts before the scenario), `panic-in-scenario` (the scenario's
/// process panics after its setup, with namespaces and interfaces in place) or `wrong-source`
/// (the scenario's first connect probe reports a source the kernel did not pick).
pub fn fault(kind: &str) -> Option<&'static str> {
    static FAULT: std::sync::OnceLock<Option<(String, String)>> = std::sync::OnceLock::new();
    let f = FAULT.get_or_init(|| {
        std::env::var("ADDRSEL_AGENT_FAULT")
            .ok()
            .and_then(|v| v.split_once(':').map(|(k, s)| (k.to_string(), s.to_string())))
    });
    match f {
        Some((k, s)) if k == kind => Some(s.as_str()),
        _ => None,
    }
}

/// The `wrong-source` fault: the first connect answer becomes a documentation address no
/// scenario holds.
fn report_wrong_source(report: &mut addrsel_model::results::Report) {
    use addrsel_model::results::Outcome;
    if let Some(Outcome::Connect { source, error, .. }) =
        report.results.iter_mut().map(|r| &mut r.outcome).find(|o| matches!(o, Outcome::Connect { .. }))
    {
        *source = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 254)));
        *error = None;
    }
}

fn read_stdin<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| format!("reading stdin: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("bad input on stdin: {e}"))
}

fn run(framed: bool) -> ExitCode {
    let emit = if framed { emit_framed } else { emit };
    #[cfg(target_os = "linux")]
    linux::die_with_parent();
    let input: AgentInput = match read_stdin() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("addrsel-agent: {e}");
            return ExitCode::from(2);
        }
    };
    probe::set_resolver_dir(input.resolver_dir.clone());
    let mut out = std::io::stdout();
    emit(&mut out, &AgentMessage::Facts(facts_for(&input)));
    for plan in &input.plans {
        if fault("abort-agent") == Some(plan.scenario.as_str()) {
            std::process::abort();
        }
        // A run long enough for an interruption test to land in the middle of it.
        if let Some(ms) = fault("slow-scenarios").and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let start = Instant::now();
        let (mut report, setup_error) = run_plan(plan, &input.target, input.kmod);
        if fault("wrong-source") == Some(plan.scenario.as_str()) {
            report_wrong_source(&mut report);
        }
        let millis = start.elapsed().as_millis() as u64;
        emit(&mut out, &AgentMessage::Scenario { report, setup_error, millis });
    }
    emit(&mut out, &AgentMessage::Done);
    ExitCode::SUCCESS
}

#[cfg(target_os = "linux")]
fn run_plan(
    plan: &addrsel_model::plan::Plan,
    target: &str,
    kmod: bool,
) -> (addrsel_model::results::Report, Option<String>) {
    linux::run_plan(plan, target, kmod)
}

#[cfg(target_os = "freebsd")]
fn run_plan(
    plan: &addrsel_model::plan::Plan,
    target: &str,
    kmod: bool,
) -> (addrsel_model::results::Report, Option<String>) {
    freebsd::run_plan(plan, target, kmod)
}

/// Runs probes where the agent stands (used inside a FreeBSD jail); `probe --kmod` also asks
/// the test kernel module.
fn probe_here(kmod: bool) -> ExitCode {
    let probes: Vec<addrsel_model::Probe> = match read_stdin() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("addrsel-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let results: Vec<addrsel_model::results::ProbeResult> = probes
        .iter()
        .map(|p| addrsel_model::results::ProbeResult { probe: p.id.clone(), outcome: probe::run(p, kmod) })
        .collect();
    println!("{}", serde_json::to_string(&results).expect("serialisable"));
    ExitCode::SUCCESS
}

fn check() -> ExitCode {
    #[cfg(target_os = "linux")]
    let result = linux::check();
    #[cfg(target_os = "freebsd")]
    let result = freebsd::check();
    match result {
        Ok(how) => {
            println!("ok: {how}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("cannot run scenarios here: {why}");
            ExitCode::from(1)
        }
    }
}

/// The facts, with the kernel module's state when the input asks for the module.
pub(crate) fn facts_for(input: &AgentInput) -> Facts {
    Facts { kmod: input.kmod.then(module_query::status), ..facts() }
}

pub(crate) fn facts() -> Facts {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default()
    };
    let kernel = field(|u| u.release());
    let (mip6, kernel_config) = kernel_config(&kernel);
    Facts {
        os: field(|u| u.sysname()),
        kernel_version: Some(field(|u| u.version())).filter(|v| !v.is_empty()),
        kernel,
        arch: field(|u| u.machine()),
        glibc: probe::glibc_version(),
        mip6,
        kernel_config,
        kmod: None,
    }
}

/// `CONFIG_IPV6_MIP6` from /proc/config.gz or /boot/config-RELEASE.
fn kernel_config(release: &str) -> (Option<bool>, String) {
    let text = if let Ok(bytes) = std::fs::read("/proc/config.gz") {
        let mut s = String::new();
        match flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut s) {
            Ok(_) => Some((s, "/proc/config.gz".to_string())),
            Err(_) => None,
        }
    } else {
        let path = format!("/boot/config-{release}");
        std::fs::read_to_string(&path).ok().map(|s| (s, path))
    };
    match text {
        Some((config, from)) => {
            let on = config.lines().any(|l| l == "CONFIG_IPV6_MIP6=y");
            (Some(on), from)
        }
        None => (None, "no /proc/config.gz or /boot/config-RELEASE".to_string()),
    }
}
