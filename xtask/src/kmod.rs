//! `cargo xtask kmod`: build the test kernel module for a target, and verify any module file
//! before it may be loaded.

use std::path::PathBuf;

use addrsel_runner::freebsd::{image as freebsd_image, module_build as freebsd_kmod};
use addrsel_runner::linux::compiler::cc_version_text;
use addrsel_runner::linux::kernel::Kernel;
use addrsel_runner::linux::{image as debian, initramfs, module_build as linux_kmod};
use addrsel_runner::module_elf::{LinuxTarget, verify};
use addrsel_runner::targets::{self, Kind};
use anyhow::Context as _;

use crate::exit;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build the module for a target's kernel with that kernel's own compiler, then verify it.
    ///
    /// Linux: against the image's pinned linux-headers, in a build root of the release's own
    /// packages (the compiler named by the kernel's CONFIG_CC_VERSION_TEXT, make, the kernel's
    /// build scripts), entered with chroot. FreeBSD: cross-built with clang and ld.lld against
    /// the release's src.txz (checksum-pinned), with kmod.mk's flags. Prints the path of the
    /// verified .ko.
    Build {
        /// A target name (see `cargo xtask matrix --list-targets`).
        #[arg(long)]
        target: String,
        /// Break the build on purpose, to test the harness: `skip-init` makes a module whose
        /// init succeeds without creating its interface (Linux).
        #[arg(long)]
        fault: Option<String>,
        /// FreeBSD: an existing kernel source tree (e.g. /usr/src/sys of that release)
        /// instead of downloading the release's src.txz.
        #[arg(long, value_name = "DIR")]
        sysdir: Option<PathBuf>,
    },
    /// Check a built module before it may be loaded, and explain any failure.
    ///
    /// The OS and architecture come from the ELF file. FreeBSD: OS/ABI, clang-only .comment,
    /// linker sets; arm64 shared objects also need LLD and global __start_set_*/__stop_set_*
    /// in .dynsym. Linux: vermagic and compiler must match the target kernel (--target).
    /// Exits 0 when the module may be loaded, 1 when it must not.
    Verify {
        file: PathBuf,
        /// The target whose kernel a Linux module must match.
        #[arg(long)]
        target: Option<String>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn find_target(name: &str) -> Result<targets::TargetDef, String> {
    let all = targets::all().map_err(|e| format!("{e:#}"))?;
    all.iter().find(|t| t.name == name).cloned().ok_or_else(|| {
        format!(
            "unknown target `{name}` (known: {})",
            all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The FreeBSD module: against `sysdir`, or the release's pinned src.txz.
fn freebsd_module(def: &freebsd_image::ImageDef, sysdir: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    let progress = |m: &str| eprintln!("  {m}");
    match sysdir {
        Some(tree) => freebsd_kmod::build(def, freebsd_kmod::KernelSource::Tree(tree), &progress),
        None => {
            let lock = freebsd_image::lock_or_resolve(def, &progress)
                .with_context(|| format!("cannot download src.txz for {}", def.release))?;
            freebsd_kmod::build(def, freebsd_kmod::KernelSource::Release(&lock), &progress)
        }
    }
}

/// The kernel a Linux image boots (downloads and verifies its package once).
fn linux_kernel(def: &debian::ImageDef) -> anyhow::Result<Kernel> {
    let lock = debian::load_lock(def)?;
    initramfs::kernel(def, &lock, &|m| eprintln!("  {m}"))
}

pub fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Build { target, fault, sysdir } => {
            let t = match find_target(&target) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::BAD_INPUT);
                }
            };
            let built = match &t.kind {
                Kind::Host => Err(anyhow::anyhow!(
                    "the host target runs this machine's kernel; addrsel does not load modules into it"
                )),
                Kind::LinuxVm(def) => debian::load_lock(def).and_then(|lock| {
                    let kernel = initramfs::kernel(def, &lock, &|m| eprintln!("  {m}"))?;
                    linux_kmod::build(def, &lock, &kernel, fault.as_deref(), &|m| eprintln!("  {m}"))
                }),
                Kind::FreebsdVm(_) if fault.is_some() => Err(anyhow::anyhow!("--fault is for Linux modules")),
                Kind::FreebsdVm(def) => freebsd_module(def, sysdir.as_deref()),
            };
            match built {
                Ok(ko) => {
                    println!("{}", ko.display());
                    Ok(exit::OK)
                }
                Err(e) => {
                    eprintln!("error: {target}: {e:#}");
                    Ok(exit::NOT_RUN)
                }
            }
        }
        Command::Verify { file, target, json } => {
            let data = match std::fs::read(&file) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return Ok(exit::BAD_INPUT);
                }
            };
            let mut freebsd_arch = None;
            let linux = match target.as_deref().map(find_target) {
                None => None,
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return Ok(exit::BAD_INPUT);
                }
                Some(Ok(t)) => match &t.kind {
                    Kind::LinuxVm(def) => match linux_kernel(def) {
                        Ok(k) => Some(LinuxTarget {
                            cc_version_text: cc_version_text(&k.config).unwrap_or_default(),
                            vermagic: k.vermagic,
                        }),
                        Err(e) => {
                            eprintln!("error: {}: {e:#}", t.name);
                            return Ok(exit::NOT_RUN);
                        }
                    },
                    Kind::Host => {
                        eprintln!("error: the host target takes no modules");
                        return Ok(exit::BAD_INPUT);
                    }
                    Kind::FreebsdVm(def) => {
                        freebsd_arch = Some(def.arch.as_str().to_string());
                        None
                    }
                },
            };
            match verify(&data, linux.as_ref()) {
                Ok(mut v) => {
                    if let Some(arch) = &freebsd_arch {
                        let fits = v.kind == addrsel_runner::module_elf::ModuleKind::Freebsd && v.arch == *arch;
                        v.checks.push(addrsel_runner::module_elf::Check {
                            ok: fits,
                            what: format!(
                                "a FreeBSD {arch} module, as the target is (this is {:?} {})",
                                v.kind, v.arch
                            ),
                        });
                    }
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        print!("{}: {}", file.display(), v.render());
                    }
                    Ok(if v.ok() { exit::OK } else { exit::DISAGREE })
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    Ok(exit::BAD_INPUT)
                }
            }
        }
    }
}
