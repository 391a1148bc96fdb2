//! Linux VM targets: a Debian kernel and userland booted once per matrix run, every
//! scenario in its own namespaces inside the guest, results over a virtio-serial port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use addrsel_model::plan;
use addrsel_model::protocol::{AgentInput, AgentMessage, KmodStatus};

use crate::corpus::Loaded;
use crate::debian::ImageDef;
use crate::initramfs::{self, Guest};
use crate::qemu::{self, Accel, Ended, Spec, Vm};
use crate::target::{Progress, ScenarioRun, TargetRun};

/// How long a guest may take to start the agent (`addrsel-init:` on its console).
const BOOT_DEADLINE: Duration = Duration::from_secs(120);

/// Which acceleration to use (see [`qemu::accel_for`]).
pub fn accel_for(def: &ImageDef, dir: &Path) -> Result<(Accel, String), String> {
    qemu::accel_for(&def.arch, dir)
}

/// The kernel command line for a boot.
pub fn cmdline(def: &ImageDef, extra: &str) -> String {
    let mut c = def.cmdline.clone();
    if !extra.is_empty() {
        c.push(' ');
        c.push_str(extra);
    }
    if let Ok(fault) = std::env::var("ADDRSEL_GUEST_FAULT") {
        // Fault injection for the harness's tests: panic, crash or hang the guest.
        c.push_str(&format!(" addrsel.fault={fault}"));
    }
    c
}

pub fn spec(def: &ImageDef, guest: &Guest, initrd: &Path, results: Option<&Path>, accel: Accel, extra: &str) -> Spec {
    Spec {
        binary: def.qemu.binary.clone(),
        machine: def.qemu.machine.clone(),
        cpu: def.qemu.cpu.clone(),
        memory_mb: def.qemu.memory_mb,
        accel,
        kernel: Some(guest.kernel.boot_image.clone()),
        initrd: Some(initrd.to_path_buf()),
        append: Some(match (results, def.qemu.results) {
            (Some(_), crate::qemu::Channel::Serial) => cmdline(def, &format!("{extra} addrsel.results=ttyS1")),
            _ => cmdline(def, extra),
        }),
        firmware: None,
        disks: vec![],
        results: results.map(|r| (r.to_path_buf(), def.qemu.results)),
        extra: vec![],
    }
}

/// Everything up to a bootable guest: QEMU, the agent for the guest's architecture, the
/// verified packages and the base initramfs.
pub fn prepare(def: &ImageDef, log: &dyn Fn(&str)) -> Result<(PathBuf, Guest), String> {
    let binary = crate::toolchain::qemu(&def.qemu.binary)?;
    let lock = crate::debian::load_lock(def)?;
    log("building the agent");
    let agent = crate::toolchain::agent_for(&def.arch)?;
    let guest = initramfs::prepare(def, &lock, &agent, log)?;
    Ok((binary, guest))
}

/// The initrd for one boot: the cached base archive followed by this boot's own.
pub fn write_initrd(guest: &Guest, path: &Path, extra: &[u8]) -> Result<(), String> {
    let mut bytes = std::fs::read(&guest.base).map_err(|e| format!("{}: {e}", guest.base.display()))?;
    bytes.extend_from_slice(extra);
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The test module for this guest, built and verified: `Err` says why there is none.
/// `ADDRSEL_KMOD_FAULT=skip-init` builds a broken one (the harness's own tests).
pub fn test_module(def: &ImageDef, guest: &Guest, log: &dyn Fn(&str)) -> Result<Vec<u8>, String> {
    let lock = crate::debian::load_lock(def)?;
    let fault = std::env::var("ADDRSEL_KMOD_FAULT").ok();
    let ko = crate::linux_kmod::build(def, &lock, &guest.kernel, fault.as_deref(), log)?;
    std::fs::read(&ko).map_err(|e| format!("{}: {e}", ko.display()))
}

/// Boots the guest once and runs every scenario; with `kmod`, the test module is built,
/// loaded at boot and asked for every connect probe.
pub fn run(
    def: &ImageDef,
    scenarios: &[Loaded],
    dir: &Path,
    deadline: Duration,
    kmod: bool,
    progress: &Progress,
) -> TargetRun {
    let name = def.name.as_str();
    let mut run = TargetRun::new(name);
    let log = |m: &str| eprintln!("  [{name}] {m}");
    let (binary, guest) = match prepare(def, &log) {
        Ok(x) => x,
        Err(e) => return run.not_run(e),
    };
    let (module, kmod_error) = match kmod.then(|| test_module(def, &guest, &log)) {
        None => (None, None),
        Some(Ok(m)) => (Some(m), None),
        Some(Err(e)) => {
            log(&format!("test module: {e}"));
            (None, Some(format!("test module not built: {e}")))
        }
    };
    let (accel, why) = match accel_for(def, dir) {
        Ok(a) => a,
        Err(e) => return run.not_run(e),
    };
    run.log.push(format!("acceleration {} ({why})", accel.word()));
    let input = AgentInput {
        target: name.into(),
        plans: scenarios.iter().map(|l| plan::linux(&l.scenario)).collect(),
        kmod: module.is_some(),
    };
    let initrd = dir.join(format!("{name}.initrd"));
    let results = dir.join(format!("{name}.results"));
    let console_log = dir.join(format!("{name}.console.log"));
    let json = serde_json::to_vec(&input).expect("serialisable");
    if let Err(e) = write_initrd(&guest, &initrd, &initramfs::run_archive(&json, module.as_deref())) {
        return run.not_run(e);
    }
    let _ = std::fs::write(&results, b"");
    let s = spec(def, &guest, &initrd, Some(&results), accel, "");
    log(&format!("booting ({}, kernel {}: {})", accel.word(), guest.kernel.release, guest.kernel.boot_note));
    let mut vm = match Vm::start(&binary, &s, &console_log, false) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&initrd);
            return run.not_run(e);
        }
    };
    let booted = vm.console.clone();
    // A guest that never reaches the agent (stuck early in boot) is stopped long before the
    // run's deadline; guests here reach it in 2-8 s.
    let boot_within = deadline.min(BOOT_DEADLINE);
    let reached = booted.wait_until(vm.started + boot_within, |t| t.contains("addrsel-init:").then_some(()));
    let no_start = matches!(reached, qemu::Waited::TimedOut) && qemu::panic_marker(&booted.text()).is_none();
    let ended = if no_start { vm.wait(Duration::ZERO) } else { vm.wait(deadline) };
    let _ = std::fs::remove_file(&initrd);
    run.total = vm.started.elapsed();
    run.boot = booted.seen_after("addrsel-init: running scenarios", vm.started);
    let text = std::fs::read_to_string(&results).unwrap_or_default();
    let mut done = false;
    for line in text.lines() {
        match serde_json::from_str::<AgentMessage>(line) {
            Ok(AgentMessage::Facts(mut f)) => {
                f.mip6 = f.mip6.or(Some(guest.kernel.mip6));
                if let Some(e) = &kmod_error {
                    f.kmod = Some(KmodStatus { ready: false, detail: e.clone() });
                }
                run.facts = Some(f);
            }
            Ok(AgentMessage::Scenario { report, setup_error, millis }) => {
                progress(name, &report.scenario, run.scenarios.len() + 1, scenarios.len(), run.total);
                run.scenarios.push(ScenarioRun { report, setup_error, millis });
            }
            Ok(AgentMessage::Done) => done = true,
            Err(_) => {}
        }
    }
    let agent_lines: Vec<String> =
        booted.text().lines().filter(|l| l.starts_with("addrsel-init:")).map(String::from).collect();
    let reason = match ended {
        Ended::Exited { .. } if done => None,
        Ended::Exited { status } => {
            let console = booted.text();
            let lines: Vec<&str> = console.lines().collect();
            Some(format!(
                "the guest powered off before the agent finished ({}; QEMU status {status:?}); last console lines:\n{}\nfull log: {}",
                agent_lines.last().cloned().unwrap_or_else(|| "no message from the agent".into()),
                lines[lines.len().saturating_sub(10)..].join("\n"),
                console_log.display()
            ))
        }
        Ended::Panic { marker, last_lines } => Some(format!(
            "guest kernel panic (`{marker}`); last console lines:\n{last_lines}\nfull log: {}",
            console_log.display()
        )),
        Ended::Deadline { last_lines, .. } if no_start => Some(format!(
            "the guest did not start the agent within {} s and was killed; last console lines:\n{last_lines}\nfull log: {}",
            boot_within.as_secs(),
            console_log.display()
        )),
        Ended::Deadline { seconds, last_lines } => Some(format!(
            "the guest did not finish within {seconds} s and was killed; last console lines:\n{last_lines}\nfull log: {}",
            console_log.display()
        )),
    };
    run.error = reason;
    run
}

/// The console-login variant: boots the guest to a root login prompt on its serial console,
/// logs in, runs `command` (which prints framed agent output), and powers off. `payload`: a
/// disk attached as the first virtio disk (/dev/vda; the image must load virtio_pci and
/// virtio_blk). This is how FreeBSD guests are driven; here it runs against a real Linux guest.
pub fn console_session(
    def: &ImageDef,
    scenarios: &[Loaded],
    dir: &Path,
    command: &str,
    deadline: Duration,
    payload: Option<&Path>,
) -> Result<Vec<addrsel_model::protocol::AgentMessage>, String> {
    let log = |m: &str| eprintln!("  [{} console] {m}", def.name);
    let (binary, guest) = prepare(def, &log)?;
    let (accel, _) = accel_for(def, dir)?;
    let input = AgentInput {
        target: def.name.clone(),
        plans: scenarios.iter().map(|l| plan::linux(&l.scenario)).collect(),
        kmod: false,
    };
    let initrd = dir.join(format!("{}-console.initrd", def.name));
    write_initrd(&guest, &initrd, &initramfs::run_archive(&serde_json::to_vec(&input).expect("serialisable"), None))?;
    let mut s = spec(def, &guest, &initrd, None, accel, "addrsel.mode=console-login");
    if let Some(p) = payload {
        s.disks.push((p.to_path_buf(), "raw".into(), false));
    }
    let result = Vm::start(&binary, &s, &dir.join(format!("{}-console.log", def.name)), true).and_then(|mut vm| {
        let end = std::time::Instant::now() + deadline;
        let messages = crate::console_driver::run_command(&mut vm, &crate::console_driver::BUSYBOX, command, end)
            .map_err(|e| e.to_string())?;
        crate::console_driver::wait_poweroff(&mut vm, end).map_err(|e| e.to_string())?;
        Ok(messages)
    });
    let _ = std::fs::remove_file(&initrd);
    result
}
