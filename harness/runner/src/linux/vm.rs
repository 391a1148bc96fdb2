//! Linux VM targets: a Debian kernel and userland booted once per matrix run, every
//! scenario in its own namespaces inside the guest, results over a virtio-serial port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use addrsel_model::plan;
use addrsel_model::protocol::{AgentInput, AgentMessage};
use anyhow::Context as _;

use crate::corpus::Loaded;
use crate::linux::image::ImageDef;
use crate::linux::initramfs::{self, Guest};
use crate::targets::run::{RunContext, TargetRun};
use crate::vm::console::Waited;
use crate::vm::qemu::{self, Accel, Ended, Spec, Vm};

/// How long a guest may take to start the agent (`addrsel-init:` on its console).
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// The same under KVM, where a guest that has not started in this time is taken for broken
/// KVM (and booted again under TCG).
const KVM_BOOT_DEADLINE: Duration = Duration::from_secs(30);

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
            (Some(_), qemu::Channel::Serial) => cmdline(def, &format!("{extra} addrsel.results=ttyS1")),
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
pub fn prepare(def: &ImageDef, log: &dyn Fn(&str)) -> anyhow::Result<(PathBuf, Guest)> {
    let binary = crate::tools::qemu(def.arch)?;
    let lock = crate::linux::image::load_lock(def)?;
    log("building the agent");
    let agent = crate::agent_build::for_linux(def.arch, log)?;
    let guest = initramfs::prepare(def, &lock, &agent, log)?;
    log(&format!("kernel {}, initramfs {}", guest.kernel.boot_image.display(), guest.base.display()));
    Ok((binary, guest))
}

/// The initrd for one boot: the cached base archive followed by this boot's own.
pub fn write_initrd(guest: &Guest, path: &Path, extra: &[u8]) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(&guest.base).with_context(|| format!("cannot read {}", guest.base.display()))?;
    bytes.extend_from_slice(extra);
    std::fs::write(path, bytes).with_context(|| format!("cannot write the initrd {}", path.display()))
}

/// The test module for this guest, built and verified: `Err` says why there is none.
/// `ADDRSEL_KMOD_FAULT=skip-init` builds a broken one (the harness's own tests).
pub fn test_module(def: &ImageDef, guest: &Guest, log: &dyn Fn(&str)) -> anyhow::Result<Vec<u8>> {
    let lock = crate::linux::image::load_lock(def)?;
    let fault = std::env::var("ADDRSEL_KMOD_FAULT").ok();
    let ko = crate::linux::module_build::build(def, &lock, &guest.kernel, fault.as_deref(), log)?;
    log(&format!("test module {}", ko.display()));
    std::fs::read(&ko).with_context(|| format!("cannot read the module {}", ko.display()))
}

/// What a boot that ended early says about why: how QEMU ended, QEMU's own message, the
/// agent's last word and the console's last lines.
fn why_it_ended(
    ended: Ended,
    no_start: bool,
    boot_within: Duration,
    booted: &crate::vm::console::Console,
    console_log: &Path,
) -> String {
    match ended {
        Ended::Exited { status, how, stderr } => {
            let console = booted.text();
            let lines: Vec<&str> = console.lines().collect();
            let agent =
                console.lines().rfind(|l| l.starts_with("addrsel-init:")).unwrap_or("no message from the agent");
            let powered_off = status == Some(0);
            format!(
                "{} before the agent finished ({agent}; {how}){}; last console lines:\n{}\nfull log: {}",
                if powered_off { "the guest powered off" } else { "QEMU stopped" },
                if stderr.is_empty() { String::new() } else { format!("; QEMU said: {stderr}") },
                lines[lines.len().saturating_sub(10)..].join("\n"),
                console_log.display()
            )
        }
        Ended::Panic { marker, last_lines } => format!(
            "guest kernel panic (`{marker}`); last console lines:\n{last_lines}\nfull log: {}",
            console_log.display()
        ),
        Ended::Deadline { last_lines, .. } if no_start => format!(
            "the guest did not start the agent within {} s and was killed; last console lines:\n{last_lines}\nfull log: {}",
            boot_within.as_secs(),
            console_log.display()
        ),
        Ended::Interrupted(sig) => format!("interrupted by {}", crate::interrupt::name(sig)),
        Ended::Deadline { seconds, last_lines } => format!(
            "the guest did not finish within {seconds} s and was killed; last console lines:\n{last_lines}\nfull log: {}",
            console_log.display()
        ),
    }
}

/// Boots the guest once and runs every scenario; with `ctx.kmod`, the test module is built,
/// loaded at boot and asked for every connect probe.
pub fn run(def: &ImageDef, ctx: &RunContext) -> TargetRun {
    let name = def.name.as_str();
    let log = |m: &str| ctx.log(name, m);
    let (binary, guest) = match prepare(def, &log) {
        Ok(x) => x,
        Err(e) => return TargetRun::new(name).not_run(format!("{e:#}")),
    };
    let (module, kmod_error) = match ctx.kmod.then(|| test_module(def, &guest, &log)) {
        None => (None, None),
        Some(Ok(m)) => (Some(m), None),
        Some(Err(e)) => {
            log(&format!("test module: {e:#}"));
            (None, Some(format!("{e:#}")))
        }
    };
    let input = AgentInput {
        target: name.into(),
        plans: ctx.scenarios.iter().map(|l| plan::linux(&l.scenario)).collect(),
        kmod: module.is_some(),
        resolver_dir: Some(crate::linux::initramfs::RESOLVER_DIR.to_string()),
    };
    let archive = initramfs::run_archive(&serde_json::to_vec(&input).expect("serialisable"), module.as_deref());
    with_kvm_fallback(def, ctx.accel, ctx.dir, &log, |accel, why| {
        let mut run = boot(def, ctx, &binary, &guest, &archive, accel);
        run.log.push(format!("acceleration {} ({why})", accel.word()));
        run.module_not_built(kmod_error.as_deref());
        run
    })
}

/// Runs `attempt` with the acceleration `accel_for` chooses; when an automatically chosen
/// KVM fails the guest the way broken KVM does, notes it and runs it once more under TCG.
fn with_kvm_fallback(
    def: &ImageDef,
    forced: Option<Accel>,
    dir: &Path,
    log: &dyn Fn(&str),
    mut attempt: impl FnMut(Accel, &str) -> TargetRun,
) -> TargetRun {
    let (accel, why) = match qemu::accel_for(def.arch, forced, dir) {
        Ok(a) => a,
        Err(e) => return TargetRun::new(&def.name).not_run(format!("{e:#}")),
    };
    let run = attempt(accel, &why);
    match run.kvm_failure.clone() {
        Some(failure) if accel == Accel::Kvm && forced.is_none() => {
            log(&format!("KVM failed this guest ({failure}); booting it again under TCG"));
            qemu::note_kvm_failure(&failure);
            attempt(Accel::Tcg, &format!("KVM failed a real guest: {failure}"))
        }
        _ => run,
    }
}

/// One boot: the base initramfs plus this run's `archive`, every scenario, the results.
fn boot(def: &ImageDef, ctx: &RunContext, binary: &Path, guest: &Guest, archive: &[u8], accel: Accel) -> TargetRun {
    let name = def.name.as_str();
    let mut run = TargetRun::new(name);
    let initrd = ctx.dir.join(format!("{name}.initrd"));
    let results = ctx.dir.join(format!("{name}.results"));
    let console_log = ctx.dir.join(format!("{name}.console.log"));
    if let Err(e) = write_initrd(guest, &initrd, archive) {
        return run.not_run(format!("{e:#}"));
    }
    let _ = std::fs::write(&results, b"");
    let s = spec(def, guest, &initrd, Some(&results), accel, "");
    ctx.log(name, &format!("booting ({}, kernel {}: {})", accel.word(), guest.kernel.release, guest.kernel.boot_note));
    let mut vm = match Vm::start(binary, &s, &console_log, false) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&initrd);
            return run.not_run(format!("{e:#}"));
        }
    };
    let booted = vm.console.clone();
    // A guest that never reaches the agent (stuck early in boot) is stopped long before the
    // run's deadline; guests here reach it in 2-8 s under TCG, well under one under KVM.
    let boot_within = ctx.deadline.min(if accel == Accel::Kvm { KVM_BOOT_DEADLINE } else { BOOT_DEADLINE });
    let (reached, _) = vm.wait_console(vm.started + boot_within, |t| t.contains("addrsel-init:").then_some(()));
    let no_start = matches!(reached, Waited::TimedOut) && crate::vm::console::panic_marker(&booted.text()).is_none();
    let ended = if no_start { vm.wait(Duration::ZERO) } else { vm.wait(ctx.deadline) };
    let _ = std::fs::remove_file(&initrd);
    run.total = vm.started.elapsed();
    run.boot = booted.seen_after("addrsel-init: running scenarios", vm.started);
    let text = std::fs::read_to_string(&results).unwrap_or_default();
    for line in text.lines() {
        if let Ok(m) = serde_json::from_str::<AgentMessage>(line) {
            run.take(m, ctx, run.total);
        }
    }
    if let Some(f) = run.facts.as_mut() {
        f.mip6 = f.mip6.or(Some(guest.kernel.mip6));
    }
    if let Ended::Interrupted(sig) = ended {
        run.interrupted = Some(sig);
    }
    let finished = run.done && matches!(ended, Ended::Exited { .. });
    if !finished {
        if accel == Accel::Kvm && run.scenarios.is_empty() {
            run.kvm_failure = qemu::kvm_failure(&ended, &booted.text());
        }
        run.error = Some(why_it_ended(ended, no_start, boot_within, &booted, &console_log));
    }
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
) -> anyhow::Result<Vec<AgentMessage>> {
    let log = |m: &str| eprintln!("  [{} console] {m}", def.name);
    let (binary, guest) = prepare(def, &log)?;
    let (accel, _) = qemu::accel_for(def.arch, None, dir)?;
    match console_boot(def, &binary, &guest, scenarios, dir, command, deadline, payload, accel) {
        Err(ConsoleFailure::Kvm(why)) => {
            log(&format!("KVM failed this guest ({why}); booting it again under TCG"));
            qemu::note_kvm_failure(&why);
            console_boot(def, &binary, &guest, scenarios, dir, command, deadline, payload, Accel::Tcg)
                .map_err(ConsoleFailure::into_error)
        }
        other => other.map_err(ConsoleFailure::into_error),
    }
}

/// Why a console session failed: KVM (worth a TCG retry), or anything else.
enum ConsoleFailure {
    Kvm(String),
    Other(anyhow::Error),
}

impl ConsoleFailure {
    fn into_error(self) -> anyhow::Error {
        match self {
            ConsoleFailure::Kvm(why) => anyhow::anyhow!("KVM failed the guest: {why}"),
            ConsoleFailure::Other(e) => e,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn console_boot(
    def: &ImageDef,
    binary: &Path,
    guest: &Guest,
    scenarios: &[Loaded],
    dir: &Path,
    command: &str,
    deadline: Duration,
    payload: Option<&Path>,
    accel: Accel,
) -> Result<Vec<AgentMessage>, ConsoleFailure> {
    let other = ConsoleFailure::Other;
    let input = AgentInput {
        target: def.name.clone(),
        plans: scenarios.iter().map(|l| plan::linux(&l.scenario)).collect(),
        kmod: false,
        resolver_dir: Some(crate::linux::initramfs::RESOLVER_DIR.to_string()),
    };
    let initrd = dir.join(format!("{}-console.initrd", def.name));
    let archive = initramfs::run_archive(&serde_json::to_vec(&input).expect("serialisable"), None);
    write_initrd(guest, &initrd, &archive).map_err(other)?;
    let mut s = spec(def, guest, &initrd, None, accel, "addrsel.mode=console-login");
    if let Some(p) = payload {
        s.disks.push((p.to_path_buf(), "raw".into(), false));
    }
    let mut vm = Vm::start(binary, &s, &dir.join(format!("{}-console.log", def.name)), true).map_err(other)?;
    let end = std::time::Instant::now() + deadline;
    let result = crate::vm::console_driver::run_command(&mut vm, &crate::vm::console_driver::BUSYBOX, command, end)
        .and_then(|messages| crate::vm::console_driver::wait_poweroff(&mut vm, end).map(|()| messages));
    let _ = std::fs::remove_file(&initrd);
    match result {
        Ok(m) => Ok(m),
        Err(e) => {
            let stderr = std::fs::read_to_string(&vm.stderr).unwrap_or_default();
            if accel == Accel::Kvm && stderr.contains("KVM") {
                return Err(ConsoleFailure::Kvm(stderr.lines().take(2).collect::<Vec<_>>().join(" ")));
            }
            // Broken nested KVM can run the probe guest and then hang a real kernel silently
            // (the matrix's kvm_failure rule): nothing on the console at all.
            let console = std::fs::read_to_string(dir.join(format!("{}-console.log", def.name))).unwrap_or_default();
            if accel == Accel::Kvm && console.trim().is_empty() {
                return Err(ConsoleFailure::Kvm("the guest printed nothing under KVM".into()));
            }
            Err(other(e.into()))
        }
    }
}
