//! Building the Linux test module for a guest kernel: against that kernel's own headers and
//! build scripts (the image's pinned linux-headers and linux-kbuild packages) with the
//! compiler that built it (`CONFIG_CC_VERSION_TEXT`), in a build root assembled from the
//! release's own verified packages and entered with chroot. The build machine's compiler is
//! never used: a bookworm machine has no gcc-14 for trixie kernels, and a newer gcc
//! point release would still be the wrong compiler.

#[cfg(target_os = "linux")]
use std::ffi::CString;
#[cfg(target_os = "linux")]
use std::os::unix::ffi::OsStrExt;
#[cfg(target_os = "linux")]
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::arch::Arch;
use crate::cache;
use crate::linux::compiler::{Toolchain, cc_version_text};
use crate::linux::image::{ImageDef, Lock, LockedPackage};
use crate::linux::kernel::Kernel;
use crate::linux::packages::{BUILD_ARCH, fetch_packages};
use crate::module_elf::{LinuxTarget, compiler_identity, verify};

/// The image's headers and the build root's packages, unpacked into one directory tree
/// (cached, keyed by their checksums).
fn assemble_root(def: &ImageDef, packages: &[LockedPackage], progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let key = cache::sha256_hex(packages.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>().join(",").as_bytes());
    let root = cache::cache_dir().join("build-root").join(format!("{}-{}", def.name, &key[..16]));
    if root.join(".complete").exists() {
        return Ok(root);
    }
    let debs = fetch_packages(packages, progress)?;
    progress(&format!("assembling the module build root ({} packages)", debs.len()));
    cache::publish(&root, |partial| {
        let at = |p: &str| partial.join(p);
        let made = |p: PathBuf| move |e: std::io::Error| anyhow::anyhow!("cannot create {}: {e}", p.display());
        for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "dev", "tmp", "build"] {
            std::fs::create_dir_all(at(d)).map_err(made(at(d)))?;
        }
        for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
            std::os::unix::fs::symlink(target, at(link)).map_err(made(at(link)))?;
        }
        let unpack = cache::cache_dir().join("unpacked");
        for (p, deb) in &debs {
            let tree = crate::linux::deb::unpack(deb, &p.sha256, &unpack)?;
            crate::linux::deb::link_tree(&tree, partial)
                .with_context(|| format!("cannot link {} into the build root", p.name))?;
        }
        // What maintainer scripts would have set up: /bin/sh and the awk alternative.
        for (link, target) in [("usr/bin/sh", "dash"), ("usr/bin/awk", "mawk")] {
            if std::fs::symlink_metadata(at(link)).is_err() {
                std::os::unix::fs::symlink(target, at(link)).map_err(made(at(link)))?;
            }
        }
        std::fs::write(at(".complete"), b"").map_err(made(at(".complete")))
    })?;
    Ok(root)
}

/// binfmt_misc registration for arm64 ELF executables (the magic and mask QEMU documents),
/// run by `interpreter`; `F`: the interpreter is opened now, so it works inside the chroot.
#[cfg(target_os = "linux")]
fn binfmt_aarch64(interpreter: &Path) -> Vec<u8> {
    let mut r = b":addrsel-aarch64:M::".to_vec();
    // Written as `\xNN` text, which the kernel decodes.
    r.extend_from_slice(br"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:");
    r.extend_from_slice(br"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:");
    r.extend_from_slice(interpreter.as_os_str().as_bytes());
    r.extend_from_slice(b":F");
    r
}

/// write(2) of a whole buffer, with no allocation (it runs between fork and exec in a
/// process that may have other threads).
#[cfg(target_os = "linux")]
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path; the buffer is valid for its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let result = if n == data.len() as isize { Ok(()) } else { Err(std::io::Error::last_os_error()) };
        libc::close(fd);
        result
    }
}

/// Whether this kernel gives each user namespace its own binfmt_misc (Linux 6.7 and later).
fn private_binfmt_misc() -> anyhow::Result<()> {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) if (major, minor) >= (6, 7) => Ok(()),
        _ => Err(anyhow::anyhow!(
            "this image's build root runs under user-mode emulation, which needs a binfmt_misc private to a user namespace (Linux 6.7 or later); this kernel is {release}"
        )),
    }
}

/// A command run inside `root`: a private mount namespace with the host's /dev and /proc bound in,
/// then chroot. As root directly; otherwise in a user namespace that maps the caller to root.
/// With `emulator`, the root's arm64 programs run under it: registered in a binfmt_misc
/// instance private to a new user namespace (Linux 6.7+), so the host's is never touched.
#[cfg(not(target_os = "linux"))]
fn in_root(_: &Path, _: &str, _: &[String], _: &str, _: Option<&Path>) -> anyhow::Result<Command> {
    anyhow::bail!("building a Linux test module needs Linux (mount and user namespaces); build it on a Linux machine")
}

#[cfg(target_os = "linux")]
fn in_root(root: &Path, program: &str, args: &[String], cwd: &str, emulator: Option<&Path>) -> anyhow::Result<Command> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes());
    let (root_c, dev_c, cwd_c) = (c(root)?, c(&root.join("dev"))?, c(Path::new(cwd))?);
    // Kbuild's tools read /proc (objtool of Linux 7.x reads the stack limit there).
    let proc_c = c(&root.join("proc"))?;
    std::fs::create_dir_all(root.join("proc")).with_context(|| format!("cannot create {}/proc", root.display()))?;
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    let userns = emulator.is_some() || !uid.is_root();
    let maps = (format!("0 {uid} 1"), format!("0 {gid} 1"));
    let binfmt = emulator.map(binfmt_aarch64);
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("LC_ALL", "C").env("HOME", "/build");
    // SAFETY: only system calls and small writes between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use nix::mount::{MsFlags, mount};
            use nix::sched::{CloneFlags, unshare};
            let err = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
            if userns {
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUSER).map_err(err)?;
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", maps.0.as_bytes())?;
                write_file(c"/proc/self/gid_map", maps.1.as_bytes())?;
            } else {
                unshare(CloneFlags::CLONE_NEWNS).map_err(err)?;
            }
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(err)?;
            if let Some(registration) = &binfmt {
                let misc = c"/proc/sys/fs/binfmt_misc";
                mount(Some(c"binfmt_misc"), misc, Some(c"binfmt_misc"), MsFlags::empty(), None::<&str>).map_err(err)?;
                write_file(c"/proc/sys/fs/binfmt_misc/register", registration)?;
            }
            mount(Some("/dev"), dev_c.as_c_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(err)?;
            mount(Some("/proc"), proc_c.as_c_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(err)?;
            nix::unistd::chroot(root_c.as_c_str()).map_err(err)?;
            nix::unistd::chdir(cwd_c.as_c_str()).map_err(err)?;
            Ok(())
        });
    }
    Ok(cmd)
}

fn first_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string()
}

/// The test module's sources, as laid out for Kbuild.
const SOURCES: [(&str, &str); 3] = [
    ("linux/addrsel_kmod.c", include_str!("../../../../kmod/linux/addrsel_kmod.c")),
    ("linux/Kbuild", include_str!("../../../../kmod/linux/Kbuild")),
    ("include/addrsel_kmod.h", include_str!("../../../../kmod/include/addrsel_kmod.h")),
];

/// The test module built against a kernel build tree on this machine, with the compiler
/// `CONFIG_CC_VERSION_TEXT` names (its `--version` must say the same), and verified.
pub fn build_module_in_tree(
    dir: &Path,
    arch: Arch,
    kernel: &crate::linux::kernel::Kernel,
    sources: &[(&str, &str)],
    progress: &dyn Fn(&str),
) -> anyhow::Result<PathBuf> {
    let cc_text = cc_version_text(&kernel.config).context("the kernel config has no CONFIG_CC_VERSION_TEXT")?;
    let clang = cc_text.contains("clang version");
    let program =
        if clang { "clang".to_string() } else { cc_text.split_whitespace().next().unwrap_or("gcc").to_string() };
    let out = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .with_context(|| format!("the kernel was built with `{cc_text}`, but this machine has no `{program}`"))?;
    let found = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
    if compiler_identity(&found) != compiler_identity(&cc_text) {
        bail!(
            "the kernel was built with `{cc_text}`, but this machine's {program} is `{found}`: refusing to build a module with another compiler"
        );
    }
    let key = cache::sha256_hex(format!("{sources:?} {cc_text} {} {}", kernel.vermagic, dir.display()).as_bytes());
    let work = cache::cache_dir().join("kmod-tree").join(&key[..16]);
    let _ = std::fs::remove_dir_all(&work);
    for (path, text) in sources {
        let dst = work.join(path);
        std::fs::create_dir_all(dst.parent().expect("parent"))?;
        std::fs::write(&dst, text).with_context(|| format!("cannot write {}", dst.display()))?;
    }
    let mut args = vec![
        "-C".to_string(),
        dir.display().to_string(),
        format!("M={}", work.join("linux").display()),
        format!("ARCH={}", arch.kbuild()),
    ];
    if clang {
        args.push("LLVM=1".into());
    } else {
        args.push(format!("CC={program}"));
        if let Some((triplet, _)) = program.rsplit_once("-gcc").filter(|(t, _)| t.contains("-linux-")) {
            args.push(format!("CROSS_COMPILE={triplet}-"));
        }
    }
    args.push("modules".into());
    progress(&format!("building the test module against {} with {found}", dir.display()));
    let out = std::process::Command::new("make").args(&args).output().context("cannot run make")?;
    let ko = work.join("linux/addrsel_kmod.ko");
    if !out.status.success() || !ko.exists() {
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        bail!(
            "building the module failed (make {}):\n{}",
            args.join(" "),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let target = LinuxTarget { vermagic: kernel.vermagic.clone(), cc_version_text: cc_text };
    let verdict = verify(&std::fs::read(&ko).with_context(|| format!("cannot read {}", ko.display()))?, Some(&target))?;
    if !verdict.ok() {
        bail!("{} failed verification:\n{}", ko.display(), verdict.render());
    }
    Ok(ko)
}

/// How a test build may be broken on purpose (the harness's own tests): `skip-init` builds a
/// module whose init returns success without creating its interface.
pub const FAULTS: &[&str] = &["skip-init"];

/// Builds (or takes from the cache) the module for this kernel and verifies it.
/// Returns the `.ko`.
pub fn build(
    def: &ImageDef,
    lock: &Lock,
    kernel: &Kernel,
    fault: Option<&str>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<PathBuf> {
    if Arch::host() != Some(BUILD_ARCH) {
        bail!(
            "the module build root is locked for {BUILD_ARCH} build machines; this one is {}",
            std::env::consts::ARCH
        );
    }
    if let Some(f) = fault.filter(|f| !FAULTS.contains(f)) {
        anyhow::bail!("unknown module fault `{f}` (known: {})", FAULTS.join(", "));
    }
    if let Some(custom) = &def.custom {
        if let Some(why) = &custom.no_module {
            bail!("{why}");
        }
        if let Some(dir) = &custom.build_dir {
            return build_module_in_tree(dir, def.arch, kernel, &SOURCES, progress);
        }
    }
    let cc_text = cc_version_text(&kernel.config).context("the kernel config has no CONFIG_CC_VERSION_TEXT")?;
    let Some(root_arch) = lock.build_root_arch.filter(|_| !lock.build_root.is_empty()) else {
        bail!(
            "{} has no build root for the test module: run `cargo xtask image --update`",
            crate::linux::image::lock_path(def).display()
        );
    };
    let toolchain = Toolchain::for_kernel(&cc_text, def.arch, root_arch)?;
    let headers: Vec<LockedPackage> =
        lock.package.iter().filter(|p| p.name.starts_with("linux-headers-")).cloned().collect();
    let flavour = format!("linux-headers-{}", kernel.release);
    if !headers.iter().any(|p| p.name == flavour) {
        bail!("the lock has no {flavour} for kernel {}: run `cargo xtask image --update`", kernel.release);
    }
    let packages: Vec<LockedPackage> = headers.iter().chain(&lock.build_root).cloned().collect();
    let root = assemble_root(def, &packages, progress)?;
    let emulator = match (root_arch == BUILD_ARCH, &lock.emulator) {
        (true, _) => None,
        (false, Some(p)) => {
            let (p, deb) = fetch_packages(std::slice::from_ref(p), progress)?.pop().expect("one package");
            let dir = crate::linux::deb::unpack(&deb, &p.sha256, &cache::cache_dir().join("unpacked"))?;
            if root_arch != Arch::Arm64 {
                bail!("cannot emulate a {root_arch} build root (only arm64)");
            }
            private_binfmt_misc()?;
            // qemu-user-static's name, or qemu-user's (static itself since 9.1).
            let static_name = dir.join("usr/bin/qemu-aarch64-static");
            Some(if static_name.exists() { static_name } else { dir.join("usr/bin/qemu-aarch64") })
        }
        (false, None) => bail!("the build root is {root_arch}, but the lock has no emulator for it"),
    };

    // The compiler in the root must be the kernel's, to the Debian revision.
    let version =
        in_root(&root, &format!("/usr/bin/{}", toolchain.compiler), &["--version".into()], "/", emulator.as_deref())?
            .output()
            .with_context(|| format!("cannot run {} in the build root", toolchain.compiler))?;
    let found = first_line(&version);
    if !version.status.success() || compiler_identity(&found) != compiler_identity(&cc_text) {
        bail!(
            "the kernel was built with `{cc_text}`, but the build root's {} is `{found}`: refusing to build a module with another compiler{}",
            toolchain.compiler,
            String::from_utf8_lossy(&version.stderr)
                .trim()
                .lines()
                .next()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        );
    }

    let sources = SOURCES;
    let key = cache::sha256_hex(
        format!(
            "{sources:?} {:?} {} {fault:?}",
            toolchain,
            cache::sha256_hex(packages.iter().map(|p| p.sha256.as_str()).collect::<String>().as_bytes())
        )
        .as_bytes(),
    );
    let name = format!("{}-{}{}.ko", def.name, &key[..16], fault.map(|f| format!("-{f}")).unwrap_or_default());
    let ko = cache::cache_dir().join("kmod").join(&name);
    if !cache::intact(&ko, progress) {
        progress(&format!("building the test module with {found}"));
        let work = root.join("build").join(format!("{}.{}", &key[..16], std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        for (path, text) in sources {
            let dst = work.join(path);
            let dir = dst.parent().expect("parent");
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(&dst, text).with_context(|| format!("cannot write {}", dst.display()))?;
        }
        let inside = format!("/build/{}", work.file_name().expect("name").to_string_lossy());
        let mut args = vec![
            "-C".to_string(),
            format!("/usr/src/{flavour}"),
            format!("M={inside}/linux"),
            "KBUILD_BUILD_TIMESTAMP=".into(),
        ];
        args.extend(toolchain.make_vars.iter().cloned());
        // A root borrowed for --kernel may lack pahole (bookworm's, for a backported 6.12):
        // the test module needs no BTF, so Kbuild is told not to make it.
        if !root.join("usr/bin/pahole").exists() {
            args.push("CONFIG_DEBUG_INFO_BTF_MODULES=".into());
        }
        if fault == Some("skip-init") {
            args.push("KCFLAGS=-DADDRSEL_FAULT_SKIP_INIT".into());
        }
        args.push("modules".into());
        let out = in_root(&root, "/usr/bin/make", &args, "/", emulator.as_deref())?
            .output()
            .context("cannot run make in the build root")?;
        let built = work.join("linux/addrsel_kmod.ko");
        let result = if out.status.success() && built.exists() {
            cache::publish(&ko, |partial| {
                std::fs::copy(&built, partial).map(|_| ()).with_context(|| format!("cannot copy {}", built.display()))
            })
        } else {
            let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            Err(anyhow::anyhow!(
                "building the module failed (make {}):\n{}",
                args.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        };
        let _ = std::fs::remove_dir_all(&work);
        result?;
    }
    let target = LinuxTarget { vermagic: kernel.vermagic.clone(), cc_version_text: cc_text };
    let verdict = verify(&std::fs::read(&ko).with_context(|| format!("cannot read {}", ko.display()))?, Some(&target))?;
    if !verdict.ok() {
        anyhow::bail!("{} failed verification:\n{}", ko.display(), verdict.render());
    }
    Ok(ko)
}
