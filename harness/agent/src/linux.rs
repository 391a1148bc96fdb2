//! Linux: every scenario runs in a forked process with its own network and mount
//! namespace, and a second forked process holds the peer namespace where the far ends of the
//! veth pairs live. Both die with their parent (PR_SET_PDEATHSIG), so nothing they created
//! can outlive the run: the namespaces, veths and mounts go away with the processes.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use addrsel_model::ProbeKind;
use addrsel_model::plan::{Place, Plan, Step};
use addrsel_model::results::{Outcome, ProbeResult, Report};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe};

use crate::probe;

/// How long one scenario may take before it is killed.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(60);

/// Where the scenario's private files live (a tmpfs mounted in its own mount namespace,
/// which also hides the host's nscd socket).
const PRIVATE_DIR: &str = "/run";

pub fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// Runs one plan in fresh namespaces; returns the report and the setup error, if any.
pub fn run_plan(plan: &Plan, target: &str, kmod: bool) -> (Report, Option<String>) {
    let empty = |error: String| {
        (Report { scenario: plan.scenario.clone(), target: target.to_string(), results: vec![] }, Some(error))
    };
    let (reader, writer) = match pipe() {
        Ok(p) => p,
        Err(e) => return empty(format!("pipe: {e}")),
    };
    // SAFETY: the agent is single-threaded, so the child may do anything after fork.
    match unsafe { fork() } {
        Err(e) => empty(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(reader);
            let answer = scenario_child(plan, target, kmod);
            let mut w = std::fs::File::from(writer);
            let _ = w.write_all(serde_json::to_string(&answer).unwrap_or_default().as_bytes());
            drop(w);
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(writer);
            let text = read_with_deadline(reader, child, SCENARIO_DEADLINE);
            let died = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => None,
                Ok(WaitStatus::Exited(_, code)) => Some(format!("the scenario's process exited with status {code}")),
                Ok(WaitStatus::Signaled(_, sig, _)) => Some(format!("the scenario's process was killed by {sig:?}")),
                _ => None,
            };
            match text.and_then(|t| match died {
                Some(why) if t.is_empty() => Err(why),
                _ => serde_json::from_str::<(Report, Option<String>)>(&t)
                    .map_err(|e| format!("the scenario's process answered badly: {e}")),
            }) {
                Ok((mut report, error)) => {
                    for r in &mut report.results {
                        r.outcome = plan.name_outcome(r.outcome.clone());
                    }
                    (report, error)
                }
                Err(e) => empty(e),
            }
        }
    }
}

fn read_with_deadline(reader: OwnedFd, child: Pid, deadline: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut file = std::fs::File::from(reader);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        let mut fds = [nix::poll::PollFd::new(file.as_fd(), nix::poll::PollFlags::POLLIN)];
        let timeout = nix::poll::PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(nix::poll::PollTimeout::MAX);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => {
                let _ = kill(child, Signal::SIGKILL);
                return Err(format!("scenario did not finish within {} s and was killed", deadline.as_secs()));
            }
            Ok(_) => match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("reading the scenario's answer: {e}")),
            },
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// Everything inside the forked scenario process.
fn scenario_child(plan: &Plan, target: &str, kmod: bool) -> (Report, Option<String>) {
    die_with_parent();
    let mut report = Report { scenario: plan.scenario.clone(), target: target.to_string(), results: vec![] };
    let mut unsupported = plan.unsupported.clone();
    if plan.needs_vrf && !std::path::Path::new("/sys/module/vrf").exists() {
        // Loaded at boot in the guests (or built in, which also makes /sys/module/vrf).
        unsupported.push("this kernel has no VRF driver (CONFIG_NET_VRF: /sys/module/vrf is missing)".into());
    }
    if !unsupported.is_empty() {
        let reason = unsupported.join("; ");
        report.results = plan
            .probes
            .iter()
            .map(|p| ProbeResult { probe: p.id.clone(), outcome: Outcome::Unsupported { reason: reason.clone() } })
            .collect();
        return (report, None);
    }
    let env = match Namespaces::enter() {
        Ok(env) => env,
        Err(e) => return (report, Some(e)),
    };
    let mut files = 0;
    let mut i = 0;
    while i < plan.setup.len() {
        // Runs of `ip` commands in one place go to one `ip -batch` process: under
        // emulation each exec costs milliseconds.
        let batch = ip_batch(&plan.setup[i..]);
        let result = if batch > 1 {
            env.ip_batch(&plan.setup[i..i + batch]).map_err(|(k, e)| (i + k, e))
        } else {
            env.apply(&plan.setup[i], &mut files).map_err(|e| (i, e))
        };
        if let Err((k, e)) = result {
            return (report, Some(format!("setup step {} failed: {e}", k + 1)));
        }
        i += batch.max(1);
    }
    if crate::fault("panic-in-scenario") == Some(plan.scenario.as_str()) {
        panic!("fault injected after setting up {}", plan.scenario);
    }
    report.results = plan
        .probes
        .iter()
        .map(|p| {
            let outcome = match &p.kind {
                // The sender sits on the far side of the link, in the peer namespace.
                ProbeKind::IcmpTimeExceeded { to, sender, .. } => {
                    match env.in_peer(|| crate::icmp_probe::time_exceeded(*sender, *to)) {
                        Ok(Ok(outcome)) => outcome,
                        Ok(Err(e)) | Err(e) => {
                            Outcome::Unsupported { reason: format!("the probe packet could not be sent: {e}") }
                        }
                    }
                }
                _ => probe::run(p, kmod),
            };
            ProbeResult { probe: p.id.clone(), outcome }
        })
        .collect();
    (report, None)
}

/// How many steps from the start of `steps` form one `ip -batch` run: `ip` commands without
/// stdin, all in the same place.
fn ip_batch(steps: &[Step]) -> usize {
    let key = |s: &Step| match s {
        Step::Run { place, argv, stdin: None, fails: None }
            if argv.first().is_some_and(|a| a == "ip") && argv.len() > 1 && !argv[1].starts_with('-') =>
        {
            Some(*place)
        }
        _ => None,
    };
    match steps.first().and_then(key) {
        Some(place) => steps.iter().take_while(|s| key(s) == Some(place)).count(),
        None => 0,
    }
}

/// The scenario's namespaces, entered by the current process, and the peer's.
struct Namespaces {
    peer: Pid,
    peer_ns: OwnedFd,
    overlay: std::cell::Cell<bool>,
}

impl Namespaces {
    /// Runs `f` on a thread that has joined the peer namespace (setns changes the calling
    /// thread only), so the scenario process stays where it is.
    fn in_peer<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let peer = self.peer_ns.as_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    setns(peer, CloneFlags::CLONE_NEWNET).map_err(|e| format!("entering the peer namespace: {e}"))?;
                    Ok(f())
                })
                .join()
                .map_err(|_| "the peer-namespace thread panicked".to_string())?
        })
    }

    fn enter() -> Result<Namespaces, String> {
        if !nix::unistd::geteuid().is_root() {
            enter_user_namespace()?;
        }
        let (ready_r, ready_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: single-threaded; the peer child only unshares, signals and sleeps.
        let peer = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => {
                die_with_parent();
                drop(ready_r);
                let ok = unshare(CloneFlags::CLONE_NEWNET).is_ok();
                let _ = std::fs::File::from(ready_w).write_all(if ok { b"1" } else { b"0" });
                loop {
                    // SAFETY: pause until killed with the scenario process.
                    unsafe { libc::pause() };
                }
            }
            ForkResult::Parent { child } => child,
        };
        drop(ready_w);
        let mut flag = [0u8; 1];
        let _ = std::fs::File::from(ready_r).read_exact(&mut flag);
        if flag[0] != b'1' {
            return Err("cannot create the peer network namespace (unshare CLONE_NEWNET failed)".into());
        }
        let peer_ns: OwnedFd = std::fs::File::open(format!("/proc/{peer}/ns/net"))
            .map_err(|e| format!("opening the peer namespace: {e}"))?
            .into();
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(|e| {
            format!(
                "cannot create network and mount namespaces: {e} (run as root, or allow unprivileged user namespaces)"
            )
        })?;
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(|e| format!("making mounts private: {e}"))?;
        mount(Some("addrsel"), PRIVATE_DIR, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))
            .map_err(|e| format!("mounting a private tmpfs on {PRIVATE_DIR}: {e}"))?;
        Ok(Namespaces { peer, peer_ns, overlay: std::cell::Cell::new(false) })
    }

    /// Runs several `ip` steps as one `ip -batch -`; on failure, the index of the failing step.
    fn ip_batch(&self, steps: &[Step]) -> Result<(), (usize, String)> {
        let mut lines = String::new();
        let mut shown = Vec::new();
        let place = match &steps[0] {
            Step::Run { place, .. } => *place,
            _ => unreachable!("ip_batch only groups Run steps"),
        };
        for s in steps {
            if let Step::Run { argv, .. } = s {
                let args: Vec<String> = argv[1..].iter().map(|a| self.fill(a)).collect();
                lines.push_str(&args.join(" "));
                lines.push('\n');
                shown.push(format!("ip {}", args.join(" ")));
            }
        }
        let step =
            Step::Run { place, argv: vec!["ip".into(), "-batch".into(), "-".into()], stdin: Some(lines), fails: None };
        self.apply(&step, &mut 0).map_err(|e| {
            // ip reports "Command failed -:N" for the N-th line.
            let n = e
                .rsplit("Command failed -:")
                .next()
                .and_then(|t| t.trim().split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
                .unwrap_or(1);
            let k = n.saturating_sub(1).min(steps.len() - 1);
            let why = e.split(": ").skip(1).collect::<Vec<_>>().join(": ");
            (
                k,
                format!(
                    "`{}` failed: {}",
                    shown[k],
                    why.lines().filter(|l| !l.starts_with("Command failed")).collect::<Vec<_>>().join(" ")
                ),
            )
        })
    }

    fn fill(&self, arg: &str) -> String {
        let agent = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "addrsel-agent".into());
        arg.replace("{peer}", &format!("/proc/{}/ns/net", self.peer)).replace("{agent}", &agent)
    }

    fn apply(&self, step: &Step, files: &mut usize) -> Result<(), String> {
        match step {
            Step::Run { place, argv, stdin, fails } => {
                let argv: Vec<String> = argv.iter().map(|a| self.fill(a)).collect();
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                if *place == Place::Peer {
                    let fd = self.peer_ns.as_raw_fd();
                    // SAFETY: setns only touches the child's own namespace membership.
                    unsafe {
                        cmd.pre_exec(move || {
                            setns(std::os::fd::BorrowedFd::borrow_raw(fd), CloneFlags::CLONE_NEWNET)
                                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
                        });
                    }
                }
                let mut child =
                    cmd.spawn().map_err(|e| format!("`{}`: cannot run {}: {e}", argv.join(" "), argv[0]))?;
                if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
                    let _ = input.write_all(text.as_bytes());
                }
                let out = child.wait_with_output().map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
                match (out.status.success(), fails) {
                    (true, Some(why)) => {
                        return Err(format!("`{}` was expected to fail ({why}) but succeeded", argv.join(" ")));
                    }
                    (false, Some(_)) => return Ok(()),
                    _ => {}
                }
                if !out.status.success() {
                    return Err(format!(
                        "`{}` exited with {}: {}",
                        argv.join(" "),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Ok(())
            }
            Step::Sysctl { place, key, value } => {
                let write = || {
                    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
                    if !path.exists() {
                        return Err(format!("sysctl {key} does not exist in this network namespace"));
                    }
                    std::fs::write(&path, format!("{value}\n")).map_err(|e| format!("sysctl {key}={value}: {e}"))
                };
                match place {
                    Place::Peer => self.in_peer(write)?,
                    _ => write(),
                }
            }
            Step::PrivateFile { target, content } => {
                let target = Path::new(target);
                if target.exists() && !self.overlay.get() {
                    let private = Path::new(PRIVATE_DIR).join(format!("addrsel-file-{files}"));
                    *files += 1;
                    std::fs::write(&private, content).map_err(|e| format!("{}: {e}", private.display()))?;
                    mount(Some(&private), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                        .map_err(|e| format!("bind-mounting a private {}: {e}", target.display()))
                } else {
                    // The file does not exist here: lay a private writable layer over its
                    // directory instead, so the host's copy is never touched.
                    self.overlay_dir(target.parent().unwrap_or(Path::new("/etc")))?;
                    std::fs::write(target, content).map_err(|e| format!("{}: {e}", target.display()))
                }
            }
            Step::WriteFile { path, .. } => Err(format!("WriteFile ({path}) is a FreeBSD step")),
            Step::WaitAddress { dev, addr, flag, timeout_ms } => wait_address(dev, *addr, flag, *timeout_ms),
            Step::WaitTemporary { dev, prefix, timeout_ms } => wait_temporary(dev, *prefix, *timeout_ms),
        }
    }

    fn overlay_dir(&self, dir: &Path) -> Result<(), String> {
        if self.overlay.get() {
            return Ok(());
        }
        let upper = Path::new(PRIVATE_DIR).join("addrsel-upper");
        let work = Path::new(PRIVATE_DIR).join("addrsel-work");
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", dir.display(), upper.display(), work.display());
        mount(Some("overlay"), dir, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
            .map_err(|e| format!("overlaying {} to add a private file: {e}", dir.display()))?;
        self.overlay.set(true);
        Ok(())
    }
}

/// Unprivileged: become root of a new user namespace that maps to the caller.
fn enter_user_namespace() -> Result<(), String> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("not root, and unprivileged user namespaces are unavailable: {e}"))?;
    let write = |path: &str, text: String| std::fs::write(path, text).map_err(|e| format!("{path}: {e}"));
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(())
}

/// Whether scenarios can run here at all: a throwaway namespace round trip.
pub fn check() -> Result<String, String> {
    let (reader, writer) = pipe().map_err(|e| e.to_string())?;
    // SAFETY: single-threaded fork; the child only probes namespaces and exits.
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Child => {
            drop(reader);
            let result = Namespaces::enter().map(|_| ());
            let text = match result {
                Ok(()) => "ok".to_string(),
                Err(e) => e,
            };
            let _ = std::fs::File::from(writer).write_all(text.as_bytes());
            // SAFETY: leave the forked child directly.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut text = String::new();
            let _ = std::fs::File::from(reader).read_to_string(&mut text);
            let _ = waitpid(child, None);
            if text == "ok" {
                Ok(if nix::unistd::geteuid().is_root() { "root".into() } else { "user namespace".into() })
            } else {
                Err(text)
            }
        }
    }
}

/// Polls `ip -j addr show dev DEV` until `addr` carries `flag` (its JSON key), or gives up.
/// Until a temporary address inside `prefix` is on `dev` and no longer tentative.
fn wait_temporary(dev: &str, prefix: ipnet::Ipv6Net, timeout_ms: u64) -> Result<(), String> {
    let end = Instant::now() + Duration::from_millis(timeout_ms);
    let argv = ["ip", "-j", "-6", "addr", "show", "dev", dev];
    loop {
        let out = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let ready =
            links.as_array().into_iter().flatten().flat_map(|l| l["addr_info"].as_array().into_iter().flatten()).any(
                |a| {
                    a["local"]
                        .as_str()
                        .and_then(|l| l.parse::<std::net::Ipv6Addr>().ok())
                        .is_some_and(|l| prefix.contains(&l))
                        && a["temporary"].as_bool() == Some(true)
                        && a["tentative"].as_bool() != Some(true)
                },
            );
        if ready {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "no usable temporary address in {prefix} on {dev} after {timeout_ms} ms (`{}`)",
                argv.join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_address(dev: &str, addr: std::net::IpAddr, flag: &str, timeout_ms: u64) -> Result<(), String> {
    let end = Instant::now() + Duration::from_millis(timeout_ms);
    let argv = ["ip", "-j", "addr", "show", "dev", dev];
    loop {
        let out = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let found =
            links.as_array().into_iter().flatten().flat_map(|l| l["addr_info"].as_array().into_iter().flatten()).any(
                |a| {
                    a["local"].as_str().and_then(|l| l.parse::<std::net::IpAddr>().ok()) == Some(addr)
                        && a[flag].as_bool() == Some(true)
                },
            );
        if found {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("{addr} on {dev} was not {flag} after {timeout_ms} ms (`{}`)", argv.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
