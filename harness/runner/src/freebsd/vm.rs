//! FreeBSD VM targets: the official BASIC-CI image booted under QEMU on a copy-on-write
//! overlay, driven through its serial console (root login, empty password). The agent, the
//! test module and the scenarios arrive on a second disk that is a plain tar archive; one
//! command typed at the console unpacks it and runs everything, the results come back
//! framed on the console, and the guest powers itself off.

use std::path::{Path, PathBuf};
use std::time::Instant;

use addrsel_model::plan;
use addrsel_model::protocol::AgentInput;
use anyhow::Context as _;

use crate::freebsd::image::{ImageDef, Lock};
use crate::targets::run::{RunContext, TargetRun};
use crate::vm::console_driver::{self, FREEBSD};
use crate::vm::qemu::{self, Accel, Spec, Vm};

/// Where the payload is unpacked in the guest: on the root file system, so the VNET jails
/// (read-only nullfs views of `/`) see the agent too.
pub const GUEST_DIR: &str = "/var/addrsel";

/// The module's file name (KMOD=addrsel in kmod/freebsd/Makefile).
pub const MODULE_FILE: &str = "addrsel.ko";

/// The one line typed at the root prompt, for the payload disk `device` (vtbd1).
pub fn guest_command(device: &str) -> String {
    format!("mkdir -p {GUEST_DIR} && tar -xf /dev/{device} -C {GUEST_DIR} && sh {GUEST_DIR}/run.sh")
}

/// The payload's script: load the module (keeping kldload's complaint for the agent's
/// facts), then run every scenario with framed output.
pub fn run_script(with_module: bool) -> String {
    let mut s = format!("#!/bin/sh\n# addrsel payload\ncd {GUEST_DIR} || exit 1\n");
    if with_module {
        s.push_str(&format!("kldload ./{MODULE_FILE} 2>kmod-error || true\n"));
    }
    // Link-state changes are logged to the console asynchronously; they would cut into frames.
    s.push_str("sysctl net.link.log_link_state_change=0 >/dev/null 2>&1 || true\n");
    s.push_str("./addrsel-agent run --framed < input.json\n");
    s
}

/// Where the resolver probe programs are in the guest (the agent's `resolver_dir`).
pub const RESOLVER_DIR: &str = "/var/addrsel/resolvers";

/// The payload disk: a tar archive padded to whole MiB (a disk's size). `resolvers` are
/// (file name, bytes, mode) under `resolvers/`.
pub fn payload(
    agent: &[u8],
    module: Option<&[u8]>,
    input_json: &[u8],
    resolvers: &[(String, Vec<u8>, u32)],
) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let script = run_script(module.is_some());
    let mut files: Vec<(String, &[u8], u32)> = vec![
        ("addrsel-agent".into(), agent, 0o755),
        ("input.json".into(), input_json, 0o644),
        ("run.sh".into(), script.as_bytes(), 0o755),
    ];
    if let Some(m) = module {
        files.push((MODULE_FILE.into(), m, 0o644));
    }
    for (name, data, mode) in resolvers {
        files.push((format!("resolvers/{name}"), data, *mode));
    }
    for (name, data, mode) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, &name, data).with_context(|| format!("cannot add {name} to the payload"))?;
    }
    let mut bytes = b.into_inner().context("cannot finish the payload archive")?;
    let mib = 1 << 20;
    bytes.resize(bytes.len().div_ceil(mib).max(1) * mib, 0);
    Ok(bytes)
}

/// The QEMU command line: the overlay as the boot disk, the payload as the second disk,
/// the serial console on stdio.
pub fn spec(def: &ImageDef, overlay: &Path, payload: &Path, accel: Accel) -> Spec {
    Spec {
        binary: def.qemu.binary.clone(),
        machine: def.qemu.machine.clone(),
        cpu: def.qemu.cpu.clone(),
        memory_mb: def.qemu.memory_mb,
        accel,
        kernel: None,
        initrd: None,
        append: None,
        firmware: def.qemu.firmware.as_ref().map(PathBuf::from),
        disks: vec![(overlay.to_path_buf(), "qcow2".into(), false), (payload.to_path_buf(), "raw".into(), false)],
        results: None,
        extra: vec![],
    }
}

/// How big the overlay is: the root file system grows into it on first boot.
const OVERLAY_BYTES: u64 = 8 << 30;

/// Everything a boot needs, in the order that fails fastest where FreeBSD is unreachable.
struct Prepared {
    qemu: PathBuf,
    base: PathBuf,
    agent: Vec<u8>,
    module: Option<anyhow::Result<Vec<u8>>>,
    resolvers: Vec<(String, Vec<u8>, u32)>,
}

fn prepare(def: &ImageDef, kmod: bool, log: &dyn Fn(&str)) -> anyhow::Result<Prepared> {
    let lock: Lock = crate::freebsd::image::lock_or_resolve(def, log)?;
    let base = crate::freebsd::image::disk(&lock, log)?;
    let sysroot = crate::freebsd::module_build::sysroot(&lock, log)?;
    let agent_path = crate::agent_build::for_freebsd(def.arch, &def.release, &def.name, &sysroot)?;
    let agent = std::fs::read(&agent_path).with_context(|| format!("cannot read {}", agent_path.display()))?;
    let module = kmod.then(|| {
        crate::freebsd::module_build::build(def, crate::freebsd::module_build::KernelSource::Release(&lock), log)
            .and_then(|ko| std::fs::read(&ko).with_context(|| format!("cannot read {}", ko.display())))
    });
    let resolvers = crate::resolvers::freebsd_payload_files(&crate::resolvers::for_freebsd(def.arch, log)?)?;
    let qemu = crate::tools::qemu(def.arch)?;
    if let Some(fw) = def.qemu.firmware.as_ref().filter(|fw| !Path::new(fw).exists()) {
        let pkg = def.qemu.firmware_package.as_deref().unwrap_or("the firmware package");
        crate::tools::install(&[pkg], &format!("{fw} is missing"))?;
    }
    Ok(Prepared { qemu, base, agent, module, resolvers })
}

pub fn run(def: &ImageDef, ctx: &RunContext) -> TargetRun {
    let name = def.name.as_str();
    let mut run = TargetRun::new(name);
    let log = |m: &str| ctx.log(name, m);
    let p = match prepare(def, ctx.kmod, &log) {
        Ok(p) => p,
        Err(e) => return run.not_run(format!("{e:#}")),
    };
    let (module, kmod_error) = match p.module {
        None => (None, None),
        Some(Ok(m)) => (Some(m), None),
        Some(Err(e)) => (None, Some(format!("{e:#}"))),
    };
    let input = AgentInput {
        target: name.into(),
        plans: ctx.scenarios.iter().map(|l| plan::freebsd(&l.scenario)).collect(),
        kmod: module.is_some(),
        resolver_dir: Some(RESOLVER_DIR.into()),
    };
    let json = serde_json::to_vec(&input).expect("serialisable");
    let payload_path = ctx.dir.join(format!("{name}.payload.tar"));
    let overlay = ctx.dir.join(format!("{name}.overlay.qcow2"));
    let console_log = ctx.dir.join(format!("{name}.console.log"));
    let cleanup = || {
        let _ = std::fs::remove_file(&payload_path);
        let _ = std::fs::remove_file(&overlay);
    };
    let written = payload(&p.agent, module.as_deref(), &json, &p.resolvers)
        .and_then(|bytes| {
            std::fs::write(&payload_path, bytes).with_context(|| format!("cannot write {}", payload_path.display()))
        })
        .and_then(|()| crate::freebsd::image::overlay(&p.base, &overlay, OVERLAY_BYTES));
    if let Err(e) = written {
        cleanup();
        return run.not_run(format!("{e:#}"));
    }
    let (accel, why) = match qemu::accel_for(def.arch, ctx.accel, ctx.dir) {
        Ok(a) => a,
        Err(e) => {
            cleanup();
            return run.not_run(format!("{e:#}"));
        }
    };
    run.log.push(format!("acceleration {} ({why})", accel.word()));
    log(&format!("booting {} ({})", def.release, accel.word()));
    let s = spec(def, &overlay, &payload_path, accel);
    let started = Instant::now();
    let end = started + ctx.deadline;
    let result = Vm::start(&p.qemu, &s, &console_log, true).and_then(|mut vm| {
        let messages = console_driver::run_command(&mut vm, &FREEBSD, &guest_command(&def.qemu.payload_device), end)
            .with_context(|| format!("full log: {}", console_log.display()))?;
        run.boot = vm.console.seen_after("login: ", started);
        console_driver::wait_poweroff(&mut vm, end)?;
        Ok(messages)
    });
    cleanup();
    run.total = started.elapsed();
    if let Some(sig) = crate::interrupt::requested() {
        run.interrupted = Some(sig);
    }
    match result {
        Err(e) => run.error = Some(format!("{e:#}")),
        Ok(messages) => {
            for m in messages {
                run.take(m, ctx, run.total);
            }
            run.module_not_built(kmod_error.as_deref());
            if !run.done {
                run.error = Some(format!("the agent did not finish; console log {}", console_log.display()));
            }
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(arch: &str) -> ImageDef {
        let arch = crate::arch::Arch::parse(arch).unwrap();
        crate::freebsd::image::all()
            .unwrap()
            .into_iter()
            .find(|d| d.arch == arch && d.release.starts_with("15."))
            .unwrap()
    }

    #[test]
    fn qemu_command_lines() {
        let lines: Vec<String> = ["amd64", "aarch64"]
            .iter()
            .flat_map(|arch| {
                let d = def(arch);
                [Accel::Tcg, Accel::Kvm].map(|accel| {
                    let s = spec(&d, Path::new("/RUN/overlay.qcow2"), Path::new("/RUN/payload.tar"), accel);
                    format!("{} ({}): {} {}", d.name, accel.word(), s.binary, crate::vm::qemu::args(&s).join(" "))
                })
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn guest_command_and_script() {
        let d = def("amd64");
        insta::assert_snapshot!(format!(
            "{}\n---\n{}---\n{}",
            guest_command(&d.qemu.payload_device),
            run_script(true),
            run_script(false)
        ));
    }

    #[test]
    fn payload_is_a_tar_a_disk_can_hold() {
        let resolvers = [("addrsel-resolve-go".to_string(), b"\x7fELF go".to_vec(), 0o755)];
        let bytes = payload(b"\x7fELF agent", Some(b"module"), b"{}", &resolvers).unwrap();
        assert_eq!(bytes.len() % (1 << 20), 0);
        let mut names = Vec::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let e = e.unwrap();
            names.push((e.path().unwrap().display().to_string(), e.header().mode().unwrap()));
        }
        assert_eq!(
            names,
            [
                ("addrsel-agent".to_string(), 0o755),
                ("input.json".to_string(), 0o644),
                ("run.sh".to_string(), 0o755),
                (MODULE_FILE.to_string(), 0o644),
                ("resolvers/addrsel-resolve-go".to_string(), 0o755)
            ]
        );
    }
}
