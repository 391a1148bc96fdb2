//! PID 1 of a Linux guest: mounts the kernel file systems, loads the modules the host put in
//! the initramfs, and either runs every scenario in a worker process and writes the results
//! to the `addrsel.results` virtio port, or (console-login variant) offers a root login on
//! the serial console. Then it powers the machine off.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use addrsel_model::protocol::{AgentInput, AgentMessage};
use nix::mount::{MsFlags, mount};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

fn log(msg: &str) {
    println!("addrsel-init: {msg}");
    let _ = std::io::stdout().flush();
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn cmdline_value(key: &str) -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")).map(String::from))
}

/// Loads a module file; a module already there is fine.
fn load_module(path: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open module {path}: {e}"))?;
    // SAFETY: finit_module(2) with an open module file and empty parameters.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
    let err = std::io::Error::last_os_error();
    if rc != 0 && err.raw_os_error() != Some(libc::EEXIST) {
        return Err(format!("loading {path} failed: {err}"));
    }
    Ok(())
}

/// The image's modules (/etc/addrsel/modules), then the test module when this boot carries
/// one (/etc/addrsel/kmod); why that failed is left for the agent's facts.
fn load_modules() {
    let list = std::fs::read_to_string("/etc/addrsel/modules").unwrap_or_default();
    for path in list.lines().filter(|l| !l.is_empty()) {
        if let Err(e) = load_module(path) {
            log(&e);
        }
    }
    let Ok(kmod) = std::fs::read_to_string("/etc/addrsel/kmod") else { return };
    if let Err(e) = load_module(kmod.trim()) {
        log(&e);
        let _ = std::fs::write(crate::module_query::LOAD_ERROR_FILE, &e);
    }
}

/// The character device of the virtio port named `addrsel.results`.
fn results_port(deadline: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Ok(entries) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in entries.flatten() {
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == "addrsel.results" {
                    return Some(Path::new("/dev").join(e.file_name()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Puts a serial line into raw mode, so JSON goes out byte for byte.
fn raw_tty(dev: &Path) -> Result<(), String> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(dev).map_err(|e| e.to_string())?;
    let mut t = nix::sys::termios::tcgetattr(&f).map_err(|e| e.to_string())?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&f, nix::sys::termios::SetArg::TCSANOW, &t).map_err(|e| e.to_string())
}

/// Reaps children that were reparented to init (peer namespaces' holders and the like).
fn reap_strays() {
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {}
}

fn worker(out: &Path) -> ! {
    let input: AgentInput = match std::fs::read_to_string("/etc/addrsel/input.json")
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(i) => i,
        Err(e) => {
            log(&format!("bad input: {e}"));
            std::process::exit(3);
        }
    };
    crate::probe::set_resolver_dir(input.resolver_dir.clone());
    let mut port = match std::fs::OpenOptions::new().write(true).open(out) {
        Ok(f) => f,
        Err(e) => {
            log(&format!("cannot open {}: {e}", out.display()));
            std::process::exit(3);
        }
    };
    let fault = cmdline_value("addrsel.fault");
    let emit = |port: &mut std::fs::File, m: &AgentMessage| {
        let _ = writeln!(port, "{}", serde_json::to_string(m).expect("serialisable"));
        let _ = port.flush();
    };
    emit(&mut port, &AgentMessage::Facts(crate::facts_for(&input)));
    for (i, plan) in input.plans.iter().enumerate() {
        if i == 1 {
            match fault.as_deref() {
                Some("crash") => std::process::abort(),
                Some("hang") => loop {
                    std::thread::sleep(Duration::from_secs(60));
                },
                Some("panic") => {
                    let _ = std::fs::write("/proc/sysrq-trigger", "c");
                }
                _ => {}
            }
        }
        let start = Instant::now();
        let (report, setup_error) = crate::linux::run_plan(plan, &input.target, input.kmod);
        let millis = start.elapsed().as_millis() as u64;
        emit(&mut port, &AgentMessage::Scenario { report, setup_error, millis });
        reap_strays();
    }
    emit(&mut port, &AgentMessage::Done);
    let _ = port.sync_all();
    std::process::exit(0);
}

pub fn run() -> ! {
    for (src, dst, fs) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
    ] {
        if let Err(e) = mount(Some(src), dst, Some(fs), MsFlags::empty(), None::<&str>) {
            log(&format!("mount {dst}: {e}"));
        }
    }
    // SAFETY: PID 1 before any other thread exists.
    unsafe {
        std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        std::env::set_var("HOME", "/root");
    }
    if cmdline_value("addrsel.fault").as_deref() == Some("hang-before-agent") {
        // Fault injection: a guest stuck before its agent says anything.
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    load_modules();
    if cmdline_value("addrsel.mode").as_deref() == Some("console-login") {
        console_login();
    }
    log("running scenarios");
    // `addrsel.results=ttyS1`: a second serial port (no virtio driver to load); otherwise the
    // virtio port named addrsel.results.
    let port = match cmdline_value("addrsel.results") {
        Some(tty) => {
            let dev = Path::new("/dev").join(&tty);
            if let Err(e) = raw_tty(&dev) {
                log(&format!("{}: {e}", dev.display()));
                power_off();
            }
            dev
        }
        None => match results_port(Duration::from_secs(10)) {
            Some(p) => p,
            None => {
                log("no addrsel.results virtio port; nothing to report to");
                power_off();
            }
        },
    };
    // SAFETY: init is single-threaded; the worker runs the scenarios.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => worker(&port),
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    log(&format!("agent finished with status {code}"));
                    power_off();
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    log(&format!("agent crashed: {sig:?}"));
                    power_off();
                }
                Ok(_) => {}
                Err(_) => power_off(),
            }
        },
        Err(e) => {
            log(&format!("fork: {e}"));
            power_off();
        }
    }
}

/// A root login on the serial console (busybox getty and login), respawned when the shell
/// exits; `poweroff -f` ends it.
fn console_login() -> ! {
    let tty = cmdline_value("console").unwrap_or_else(|| "ttyS0".into());
    let tty = tty.split(',').next().unwrap_or("ttyS0").to_string();
    log(&format!("login on {tty}"));
    loop {
        let status = std::process::Command::new("/usr/bin/busybox").args(["getty", "115200", &tty, "vt100"]).status();
        if status.is_err() {
            log("cannot start getty");
            power_off();
        }
        reap_strays();
    }
}
