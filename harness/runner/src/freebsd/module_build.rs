//! The FreeBSD test module, cross-built on this machine with clang and ld.lld (never GNU ld)
//! against the kernel sources of the exact release (`src.txz`, checksum-pinned), the way
//! FreeBSD's `sys/conf/kmod.mk` builds it: a relocatable object on amd64, a shared object on
//! arm64. The result goes through `kmod verify` before it may be loaded. Also the sysroot
//! (`base.txz`) the FreeBSD agent links against.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::arch::Arch;
use crate::cache;
use crate::freebsd::image::{ImageDef, Lock, Pinned};

/// clang's target triple for a release (`x86_64-unknown-freebsd14.5`).
pub fn clang_target(def: &ImageDef) -> String {
    def.arch.clang_freebsd(&def.release)
}

/// The compile and link command lines for `addrsel_kmod.c`, with the flags FreeBSD 14/15's
/// sys.mk, kmod.mk and kern.mk give a module: kernel code generation for the architecture,
/// the kernel's warning set with -Werror, `-fPIC` and a shared-object link on arm64, a
/// relocatable link with the kmod linker script on amd64.
pub fn commands(def: &ImageDef, sys: &Path, kmod_dir: &Path, work: &Path) -> Vec<Vec<String>> {
    let s = |p: &Path| p.display().to_string();
    let strings = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let object = s(&work.join("addrsel_kmod.o"));
    let mut cc: Vec<String> = vec!["clang".into(), format!("--target={}", clang_target(def))];
    // sys.mk and kmod.mk
    cc.extend(strings(&["-c", "-O2", "-pipe", "-fno-strict-aliasing", "-Werror", "-D_KERNEL", "-DKLD_MODULE"]));
    cc.extend(strings(&["-nostdinc", "-include"]));
    cc.push(s(&work.join("opt_global.h")));
    // kern.mk's warnings
    cc.extend(strings(&[
        "-Wall",
        "-Wstrict-prototypes",
        "-Wmissing-prototypes",
        "-Wpointer-arith",
        "-Wcast-qual",
        "-Wundef",
        "-Wno-pointer-sign",
        "-D__printf__=__freebsd_kprintf__",
        "-Wmissing-include-dirs",
        "-fdiagnostics-show-option",
        "-Wno-unknown-pragmas",
        "-Wno-error=tautological-compare",
        "-Wno-error=empty-body",
        "-Wno-error=parentheses-equality",
        "-Wno-error=unused-function",
        "-Wno-error=pointer-sign",
        "-Wno-error=shift-negative-value",
        "-Wno-address-of-packed-member",
        "-Wno-format-zero-length",
    ]));
    cc.extend([
        format!("-I{}", s(&kmod_dir.join("include"))),
        format!("-I{}", s(work)),
        format!("-I{}", s(sys)),
        format!("-I{}", s(&sys.join("contrib/ck/include"))),
    ]);
    cc.extend(strings(&["-fno-common", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer"]));
    if def.arch == Arch::Amd64 {
        cc.extend(strings(&["-mno-aes", "-mno-avx", "-mcmodel=kernel", "-mno-red-zone", "-mno-mmx", "-mno-sse"]));
        cc.extend(strings(&["-msoft-float", "-fno-asynchronous-unwind-tables"]));
    } else {
        cc.extend(strings(&["-fPIC", "-mgeneral-regs-only", "-ffixed-x18", "-mno-outline-atomics"]));
    }
    cc.extend(strings(&["-ffreestanding", "-fwrapv", "-fstack-protector", "-std=gnu99"]));
    cc.extend([s(&kmod_dir.join("freebsd/addrsel_kmod.c")), "-o".into(), object.clone()]);
    let ko = s(&work.join("addrsel.ko"));
    if def.arch == Arch::Amd64 {
        let mut link = strings(&["ld.lld", "-m", "elf_x86_64_fbsd", "-warn-common", "--build-id=sha1", "-T"]);
        link.extend([s(&sys.join("conf/ldscript.kmod.amd64")), "-r".into(), "-o".into(), ko, object]);
        vec![cc, link]
    } else {
        let kld = s(&work.join("addrsel.kld"));
        let mut relocatable = strings(&["ld.lld", "-m", "aarch64elf", "-warn-common", "--build-id=sha1", "--no-relax"]);
        relocatable.extend(["-r".into(), "-o".into(), kld.clone(), object]);
        let mut shared = strings(&["ld.lld", "-m", "aarch64elf", "-Bshareable", "-znotext", "-znorelro"]);
        shared.extend(strings(&["-warn-common", "--build-id=sha1", "--no-relax", "-o"]));
        shared.extend([ko, kld]);
        vec![cc, relocatable, shared]
    }
}

/// The machine-dependent include links kmod.mk makes in the build directory.
pub fn machine_links(def: &ImageDef, sys: &Path) -> Vec<(&'static str, PathBuf)> {
    if def.arch == Arch::Amd64 {
        vec![("machine", sys.join("amd64/include")), ("x86", sys.join("x86/include"))]
    } else {
        vec![("machine", sys.join("arm64/include"))]
    }
}

/// Unpacks the members of a pinned `.txz` under `prefixes` into the cache, once.
fn unpack_txz(p: &Pinned, prefixes: &[&str], skip: &[&str], progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir =
        cache::cache_dir().join("freebsd").join(format!("{}-{}", &p.sha256[..16], p.name.trim_end_matches(".txz")));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let txz = crate::freebsd::image::fetch_pinned(p, progress)?;
    progress(&format!("unpacking {}", p.name));
    cache::publish(&dir, |partial| {
        std::fs::create_dir_all(partial).with_context(|| format!("cannot create {}", partial.display()))?;
        let file = std::fs::File::open(&txz).with_context(|| format!("cannot read {}", txz.display()))?;
        let mut archive = tar::Archive::new(xz2::read::XzDecoder::new(std::io::BufReader::new(file)));
        for entry in archive.entries().with_context(|| format!("{}: not a tar archive", p.name))? {
            let mut entry = entry.with_context(|| format!("{}: a damaged entry", p.name))?;
            let path = entry.path()?.into_owned();
            let rel = path.strip_prefix("./").unwrap_or(&path).to_string_lossy().into_owned();
            if !prefixes.iter().any(|x| rel.starts_with(x)) || skip.iter().any(|x| rel.starts_with(x)) {
                continue;
            }
            // unpack_in refuses paths that would leave the directory.
            entry.unpack_in(partial).with_context(|| format!("{}: cannot unpack {rel}", p.name))?;
        }
        std::fs::write(partial.join(".complete"), b"").with_context(|| format!("cannot write in {}", partial.display()))
    })?;
    Ok(dir)
}

fn pinned<'a>(lock: &'a Lock, name: &str) -> anyhow::Result<&'a Pinned> {
    lock.dist.iter().find(|p| p.name == name).with_context(|| format!("the lock pins no {name}"))
}

/// The release's libraries and headers from base.txz: what the agent links against.
pub fn sysroot(lock: &Lock, progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    unpack_txz(
        pinned(lock, "base.txz")?,
        &["lib/", "usr/lib/", "usr/include/"],
        &["usr/lib/debug/", "usr/lib32/"],
        progress,
    )
    .context("cannot download base.txz")
}

/// The kernel sources (`usr/src/sys`) of the release, from src.txz.
pub fn kernel_sources(lock: &Lock, progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir =
        unpack_txz(pinned(lock, "src.txz")?, &["usr/src/sys/"], &[], progress).context("cannot download src.txz")?;
    Ok(dir.join("usr/src/sys"))
}

fn kmod_dir() -> PathBuf {
    crate::repo_root().join("kmod")
}

/// Which kernel sources a module is built against.
pub enum KernelSource<'a> {
    /// The release's pinned src.txz.
    Release(&'a Lock),
    /// An existing tree (`/usr/src/sys` of that release).
    Tree(&'a Path),
}

/// Builds the module for a release with clang and ld.lld and verifies it.
pub fn build(def: &ImageDef, source: KernelSource, progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let sys = match source {
        KernelSource::Tree(s) => s.to_path_buf(),
        KernelSource::Release(lock) => kernel_sources(lock, progress)?,
    };
    if !sys.join("sys/param.h").exists() {
        anyhow::bail!("{} is not a FreeBSD kernel source tree (no sys/param.h)", sys.display());
    }
    crate::tools::program("clang", "clang", "clang builds the FreeBSD module")?;
    crate::tools::program("ld.lld", "lld", "ld.lld links the FreeBSD module")?;
    let work = cache::cache_dir().join("kmod").join(format!("{}.{}", def.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = (|| {
        for (link, target) in machine_links(def, &sys) {
            std::os::unix::fs::symlink(&target, work.join(link))?;
        }
        // kmod.mk's stand-in for a kernel build's option header.
        std::fs::write(work.join("opt_global.h"), b"")?;
        for argv in commands(def, &sys, &kmod_dir(), &work) {
            progress(&argv.join(" "));
            let out =
                Command::new(&argv[0]).args(&argv[1..]).output().with_context(|| format!("cannot run {}", argv[0]))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = err.lines().take(30).collect();
                anyhow::bail!("`{}` failed:\n{}", argv.join(" "), tail.join("\n"));
            }
        }
        let ko = work.join("addrsel.ko");
        let verdict = crate::module_elf::verify(&std::fs::read(&ko)?, None)?;
        if !verdict.ok() {
            anyhow::bail!("the built module failed verification:\n{}", verdict.render());
        }
        let out = cache::cache_dir().join("kmod").join(format!("{}.ko", def.name));
        std::fs::copy(&ko, &out)?;
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_build_command_lines() {
        let mut out = String::new();
        for d in crate::freebsd::image::all().unwrap().iter().filter(|d| d.release.starts_with("15.")) {
            out.push_str(&format!("{} ({}):\n", d.name, clang_target(d)));
            for (link, target) in machine_links(d, Path::new("/SYS")) {
                out.push_str(&format!("  ln -s {} {link}\n", target.display()));
            }
            for argv in commands(d, Path::new("/SYS"), Path::new("/KMOD"), Path::new("/WORK")) {
                out.push_str(&format!("  {}\n", argv.join(" ")));
            }
        }
        insta::assert_snapshot!(out);
    }
}
