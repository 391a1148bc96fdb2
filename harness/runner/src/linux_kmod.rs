//! Building the Linux test module for a guest kernel: against that kernel's own headers and
//! build scripts (the image's pinned linux-headers and linux-kbuild packages) with the
//! compiler that built it (`CONFIG_CC_VERSION_TEXT`), in a build root assembled from the
//! release's own verified packages and entered with chroot. The build machine's compiler is
//! never used: a bookworm machine has no gcc-14 for trixie kernels, and a newer gcc
//! point release would still be the wrong compiler.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::debian::{BUILD_ARCH, ImageDef, Lock, LockedPackage};
use crate::fetch;
use crate::initramfs::Kernel;
use crate::kmod::{LinuxTarget, compiler_identity, verify};

/// `CONFIG_CC_VERSION_TEXT` of a kernel config.
pub fn cc_version_text(config: &str) -> Option<String> {
    config.lines().find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT=")).map(|v| v.trim_matches('"').to_string())
}

/// The `vermagic=` of a module shipped with the kernel (what the kernel accepts).
pub fn kernel_vermagic(module: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(module);
    text.split('\0').find_map(|s| s.strip_prefix("vermagic=")).map(String::from)
}

/// The packages and make variables that reproduce a kernel's compiler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// Build-root packages (besides the kernel's build scripts).
    pub packages: Vec<String>,
    /// The package of the compiler itself.
    pub compiler_package: String,
    /// The compiler command whose `--version` must name the kernel's compiler.
    pub compiler: String,
    /// `VAR=value` arguments for make.
    pub make_vars: Vec<String>,
}

/// What every module build needs besides the compiler: make and what Kbuild's recipes run.
const BUILD_TOOLS: &[&str] = &["make", "dash", "bash", "coreutils", "sed", "grep", "mawk", "findutils", "diffutils"];

fn gnu_triplet(arch: &str) -> &'static str {
    if arch == "arm64" { "aarch64-linux-gnu" } else { "x86_64-linux-gnu" }
}

fn kernel_arch(arch: &str) -> &'static str {
    if arch == "arm64" { "arm64" } else { "x86" }
}

/// Whether a Debian cross compiler package version (`12.2.0-14cross1`) is the same gcc
/// build as the kernel's compiler (`gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0`).
pub fn same_debian_gcc(cc_text: &str, cross_version: &str) -> bool {
    let kernel = cc_text.split_once("(Debian ").and_then(|(_, r)| r.split_once(')')).map(|(v, _)| v);
    let cross = cross_version
        .rsplit_once("cross")
        .map_or(cross_version, |(v, n)| if n.chars().all(|c| c.is_ascii_digit()) { v } else { cross_version });
    kernel == Some(cross)
}

impl Toolchain {
    /// From `CONFIG_CC_VERSION_TEXT`, the image's architecture and the build root's:
    /// `gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0` is Debian's gcc-12 in a native root, and
    /// gcc-12-aarch64-linux-gnu in an amd64 root building for arm64; `Debian clang version
    /// 19.1.7` is clang-19 with lld-19 and llvm-19, built with `LLVM=-19` as such kernels are.
    pub fn for_kernel(cc_text: &str, arch: &str, root_arch: &str) -> Result<Toolchain, String> {
        let cross = arch != root_arch;
        let triplet = gnu_triplet(arch);
        let mut make_vars = vec![format!("ARCH={}", kernel_arch(arch))];
        let tools = BUILD_TOOLS.iter().map(|s| s.to_string());
        if let Some(rest) = cc_text.split_once("clang version ").map(|(_, r)| r) {
            let major = rest.split('.').next().filter(|m| m.chars().all(|c| c.is_ascii_digit()) && !m.is_empty());
            let major = major.ok_or_else(|| format!("cannot read the clang version in `{cc_text}`"))?;
            make_vars.push(format!("LLVM=-{major}"));
            let compiler = format!("clang-{major}");
            let packages = tools.chain([compiler.clone(), format!("lld-{major}"), format!("llvm-{major}")]).collect();
            return Ok(Toolchain { packages, compiler_package: compiler.clone(), compiler, make_vars });
        }
        let program = cc_text.split_whitespace().next().unwrap_or("");
        // gcc-12, or x86_64-linux-gnu-gcc-14: the version from the name without a prefix.
        let base = program.rsplit_once("-linux-gnu-").map_or(program, |(_, b)| b);
        let major = base
            .strip_prefix("gcc-")
            .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| {
                format!("`{cc_text}` is neither a versioned Debian gcc nor clang: cannot tell which compiler to use")
            })?;
        let native = format!("gcc-{major}");
        let mut packages: Vec<String> = tools.chain([native.clone()]).collect();
        let (compiler_package, compiler) = if cross {
            let package = format!("gcc-{major}-{triplet}");
            packages.push(package.clone());
            make_vars.push(format!("CROSS_COMPILE={triplet}-"));
            (package, format!("{triplet}-gcc-{major}"))
        } else {
            (native.clone(), native.clone())
        };
        make_vars.push(format!("CC={compiler}"));
        make_vars.push(format!("HOSTCC={native}"));
        Ok(Toolchain { packages, compiler_package, compiler, make_vars })
    }
}

/// Copies a tree as hard links where possible (same file system), plain copies otherwise.
/// `to` may already hold other packages' files, or be reached through a symlink (merged /usr).
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = std::fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            link_tree(&src, &dst)?;
        } else if meta.file_type().is_symlink() {
            // A directory symlink of merged /usr (bin -> usr/bin) is already in place.
            if std::fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if std::fs::symlink_metadata(&dst).is_err() && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// The image's headers and the build root's packages, unpacked into one directory tree
/// (cached, keyed by their checksums).
fn assemble_root(def: &ImageDef, packages: &[LockedPackage], progress: &dyn Fn(&str)) -> Result<PathBuf, String> {
    let key = fetch::sha256_hex(packages.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>().join(",").as_bytes());
    let dir = fetch::cache_dir().join("build-root");
    let root = dir.join(format!("{}-{}", def.name, &key[..16]));
    fetch::clean_stale_partials(&dir);
    if root.join(".complete").exists() {
        return Ok(root);
    }
    let debs = crate::debian::fetch_packages(packages, progress).map_err(|e| e.to_string())?;
    progress(&format!("assembling the module build root ({} packages)", debs.len()));
    let partial = dir.join(format!("{}-{}.partial.{}", def.name, &key[..16], std::process::id()));
    let io = |e: std::io::Error| format!("{}: {e}", partial.display());
    let assembled = (|| -> Result<(), String> {
        for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "dev", "tmp", "build"] {
            std::fs::create_dir_all(partial.join(d)).map_err(io)?;
        }
        for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
            std::os::unix::fs::symlink(target, partial.join(link)).map_err(io)?;
        }
        let unpack = fetch::cache_dir().join("unpacked");
        for (p, deb) in &debs {
            let tree = crate::deb::unpack(deb, &p.sha256, &unpack)?;
            link_tree(&tree, &partial).map_err(|e| format!("{} into the build root: {e}", p.name))?;
        }
        // What maintainer scripts would have set up: /bin/sh and the awk alternative.
        for (link, target) in [("usr/bin/sh", "dash"), ("usr/bin/awk", "mawk")] {
            if std::fs::symlink_metadata(partial.join(link)).is_err() {
                std::os::unix::fs::symlink(target, partial.join(link)).map_err(io)?;
            }
        }
        std::fs::write(partial.join(".complete"), b"").map_err(io)?;
        fetch::publish_dir(&partial, &root)
    })();
    if assembled.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    assembled.map(|()| root)
}

/// binfmt_misc registration for arm64 ELF executables (the magic and mask QEMU documents),
/// run by `interpreter`; `F`: the interpreter is opened now, so it works inside the chroot.
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
fn private_binfmt_misc() -> Result<(), String> {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) if (major, minor) >= (6, 7) => Ok(()),
        _ => Err(format!(
            "this image's build root runs under user-mode emulation, which needs a binfmt_misc private to a user namespace (Linux 6.7 or later); this kernel is {release}"
        )),
    }
}

/// A command run inside `root`: a private mount namespace with the host's /dev bound in,
/// then chroot. As root directly; otherwise in a user namespace that maps the caller to root.
/// With `emulator`, the root's arm64 programs run under it: registered in a binfmt_misc
/// instance private to a new user namespace (Linux 6.7+), so the host's is never touched.
fn in_root(root: &Path, program: &str, args: &[String], cwd: &str, emulator: Option<&Path>) -> Result<Command, String> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string());
    let (root_c, dev_c, cwd_c) = (c(root)?, c(&root.join("dev"))?, c(Path::new(cwd))?);
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
) -> Result<PathBuf, String> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!(
            "the module build root is locked for {BUILD_ARCH} build machines; this one is {}",
            std::env::consts::ARCH
        ));
    }
    if let Some(f) = fault.filter(|f| !FAULTS.contains(f)) {
        return Err(format!("unknown module fault `{f}` (known: {})", FAULTS.join(", ")));
    }
    let cc_text = cc_version_text(&kernel.config).ok_or("the kernel config has no CONFIG_CC_VERSION_TEXT")?;
    let Some(root_arch) = lock.build_root_arch.as_deref().filter(|_| !lock.build_root.is_empty()) else {
        return Err(format!(
            "{} has no build root for the test module: run `cargo xtask image --update`",
            crate::debian::lock_path(def).display()
        ));
    };
    let toolchain = Toolchain::for_kernel(&cc_text, &def.arch, root_arch)?;
    let headers: Vec<LockedPackage> =
        lock.package.iter().filter(|p| p.name.starts_with("linux-headers-")).cloned().collect();
    let flavour = format!("linux-headers-{}", kernel.release);
    if !headers.iter().any(|p| p.name == flavour) {
        return Err(format!(
            "the lock has no {flavour} for kernel {}: run `cargo xtask image --update`",
            kernel.release
        ));
    }
    let packages: Vec<LockedPackage> = headers.iter().chain(&lock.build_root).cloned().collect();
    let root = assemble_root(def, &packages, progress)?;
    let emulator = match (root_arch == BUILD_ARCH, &lock.emulator) {
        (true, _) => None,
        (false, Some(p)) => {
            let (p, deb) = crate::debian::fetch_packages(std::slice::from_ref(p), progress)
                .map_err(|e| e.to_string())?
                .pop()
                .expect("one package");
            let dir = crate::deb::unpack(&deb, &p.sha256, &fetch::cache_dir().join("unpacked"))?;
            if root_arch != "arm64" {
                return Err(format!("cannot emulate a {root_arch} build root (only arm64)"));
            }
            private_binfmt_misc()?;
            Some(dir.join("usr/bin/qemu-aarch64-static"))
        }
        (false, None) => return Err(format!("the build root is {root_arch}, but the lock has no emulator for it")),
    };

    // The compiler in the root must be the kernel's, to the Debian revision.
    let version =
        in_root(&root, &format!("/usr/bin/{}", toolchain.compiler), &["--version".into()], "/", emulator.as_deref())?
            .output()
            .map_err(|e| format!("cannot run {} in the build root: {e}", toolchain.compiler))?;
    let found = first_line(&version);
    if !version.status.success() || compiler_identity(&found) != compiler_identity(&cc_text) {
        return Err(format!(
            "the kernel was built with `{cc_text}`, but the build root's {} is `{found}`: refusing to build a module with another compiler{}",
            toolchain.compiler,
            String::from_utf8_lossy(&version.stderr)
                .trim()
                .lines()
                .next()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        ));
    }

    let sources = [
        ("linux/addrsel_kmod.c", include_str!("../../../kmod/linux/addrsel_kmod.c")),
        ("linux/Kbuild", include_str!("../../../kmod/linux/Kbuild")),
        ("include/addrsel_kmod.h", include_str!("../../../kmod/include/addrsel_kmod.h")),
    ];
    let key = fetch::sha256_hex(
        format!(
            "{sources:?} {:?} {} {fault:?}",
            toolchain,
            fetch::sha256_hex(packages.iter().map(|p| p.sha256.as_str()).collect::<String>().as_bytes())
        )
        .as_bytes(),
    );
    let name = format!("{}-{}{}.ko", def.name, &key[..16], fault.map(|f| format!("-{f}")).unwrap_or_default());
    let ko = fetch::cache_dir().join("kmod").join(&name);
    if !ko.exists() {
        progress(&format!("building the test module with {found}"));
        let work = root.join("build").join(format!("{}.{}", &key[..16], std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        for (path, text) in sources {
            let dst = work.join(path);
            std::fs::create_dir_all(dst.parent().expect("parent")).map_err(|e| e.to_string())?;
            std::fs::write(&dst, text).map_err(|e| format!("{}: {e}", dst.display()))?;
        }
        let inside = format!("/build/{}", work.file_name().expect("name").to_string_lossy());
        let mut args = vec![
            "-C".to_string(),
            format!("/usr/src/{flavour}"),
            format!("M={inside}/linux"),
            "KBUILD_BUILD_TIMESTAMP=".into(),
        ];
        args.extend(toolchain.make_vars.iter().cloned());
        if fault == Some("skip-init") {
            args.push("KCFLAGS=-DADDRSEL_FAULT_SKIP_INIT".into());
        }
        args.push("modules".into());
        let out = in_root(&root, "/usr/bin/make", &args, "/", emulator.as_deref())?
            .output()
            .map_err(|e| format!("cannot run make: {e}"))?;
        let built = work.join("linux/addrsel_kmod.ko");
        let result = if out.status.success() && built.exists() {
            std::fs::create_dir_all(ko.parent().expect("dir")).map_err(|e| e.to_string()).and_then(|()| {
                let partial = ko.with_extension(format!("partial.{}", std::process::id()));
                std::fs::copy(&built, &partial).map_err(|e| e.to_string())?;
                std::fs::rename(&partial, &ko).map_err(|e| e.to_string())
            })
        } else {
            let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            Err(format!(
                "building the module failed (make {}):\n{}",
                args.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        };
        let _ = std::fs::remove_dir_all(&work);
        result?;
    }
    let target = LinuxTarget { vermagic: kernel.vermagic.clone(), cc_version_text: cc_text };
    let verdict = verify(&std::fs::read(&ko).map_err(|e| e.to_string())?, Some(&target))?;
    if !verdict.ok() {
        return Err(format!("{} failed verification:\n{}", ko.display(), verdict.render()));
    }
    Ok(ko)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchains_follow_the_kernels_compiler() {
        let t = Toolchain::for_kernel("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", "amd64", "amd64").unwrap();
        assert_eq!(t.compiler, "gcc-12");
        assert!(t.packages.contains(&"gcc-12".to_string()) && t.packages.contains(&"make".to_string()));
        assert_eq!(t.make_vars, ["ARCH=x86", "CC=gcc-12", "HOSTCC=gcc-12"]);

        let t = Toolchain::for_kernel("aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0", "arm64", "amd64").unwrap();
        assert_eq!(t.compiler, "aarch64-linux-gnu-gcc-14");
        assert!(t.packages.contains(&"gcc-14-aarch64-linux-gnu".to_string()));
        assert!(t.packages.contains(&"gcc-14".to_string()), "a native compiler for host programs");
        assert_eq!(
            t.make_vars,
            ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "CC=aarch64-linux-gnu-gcc-14", "HOSTCC=gcc-14"]
        );

        let t = Toolchain::for_kernel("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", "arm64", "arm64").unwrap();
        assert_eq!(t.compiler, "gcc-12", "a native arm64 root");
        assert_eq!(t.make_vars, ["ARCH=arm64", "CC=gcc-12", "HOSTCC=gcc-12"]);

        let t = Toolchain::for_kernel("Debian clang version 19.1.7 (3+b1)", "amd64", "amd64").unwrap();
        assert_eq!(t.compiler, "clang-19");
        assert!(t.packages.contains(&"lld-19".to_string()));
        assert!(t.make_vars.contains(&"LLVM=-19".to_string()));

        let e = Toolchain::for_kernel("cc (GCC) 13.1.0", "amd64", "amd64").unwrap_err();
        assert!(e.contains("cannot tell which compiler"), "{e}");
    }

    #[test]
    fn cross_compilers_match_only_the_same_debian_build() {
        assert!(same_debian_gcc("aarch64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0", "14.2.0-19cross1"));
        assert!(!same_debian_gcc("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", "12.2.0-14cross1"));
        assert!(!same_debian_gcc("Debian clang version 19.1.7", "19.1.7"));
    }

    #[test]
    fn config_and_vermagic_are_read() {
        let config = "# c\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\nCONFIG_X=y\n";
        assert_eq!(cc_version_text(config).as_deref(), Some("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"));
        assert_eq!(cc_version_text("CONFIG_X=y\n"), None);
        let module =
            b"\x7fELF...\0license=GPL\0vermagic=6.1.0-44-cloud-amd64 SMP preempt mod_unload modversions \0name=veth\0";
        assert_eq!(
            kernel_vermagic(module).as_deref(),
            Some("6.1.0-44-cloud-amd64 SMP preempt mod_unload modversions ")
        );
    }
}
