//! The FreeBSD test module, cross-built on this machine with clang and ld.lld (never GNU ld)
//! against the kernel sources of the exact release (`src.txz`, checksum-pinned), the way
//! FreeBSD's `sys/conf/kmod.mk` builds it: a relocatable object on amd64, a shared object on
//! arm64. The result goes through `kmod verify` before it may be loaded. Also the sysroot
//! (`base.txz`) the FreeBSD agent links against.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fetch;
use crate::freebsd_image::{self, ImageDef, Lock, Pinned};

/// clang's target triple for a release (`x86_64-unknown-freebsd14.5`).
pub fn clang_target(def: &ImageDef) -> String {
    let cpu = if def.arch == "amd64" { "x86_64" } else { "aarch64" };
    let version = def.release.split('-').next().unwrap_or("");
    format!("{cpu}-unknown-freebsd{version}")
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
    if def.arch == "amd64" {
        cc.extend(strings(&["-mno-aes", "-mno-avx", "-mcmodel=kernel", "-mno-red-zone", "-mno-mmx", "-mno-sse"]));
        cc.extend(strings(&["-msoft-float", "-fno-asynchronous-unwind-tables"]));
    } else {
        cc.extend(strings(&["-fPIC", "-mgeneral-regs-only", "-ffixed-x18", "-mno-outline-atomics"]));
    }
    cc.extend(strings(&["-ffreestanding", "-fwrapv", "-fstack-protector", "-std=gnu99"]));
    cc.extend([s(&kmod_dir.join("freebsd/addrsel_kmod.c")), "-o".into(), object.clone()]);
    let ko = s(&work.join("addrsel.ko"));
    if def.arch == "amd64" {
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
    if def.arch == "amd64" {
        vec![("machine", sys.join("amd64/include")), ("x86", sys.join("x86/include"))]
    } else {
        vec![("machine", sys.join("arm64/include"))]
    }
}

/// Unpacks the members of a pinned `.txz` under `prefixes` into the cache, once.
fn unpack_txz(p: &Pinned, prefixes: &[&str], skip: &[&str], progress: &dyn Fn(&str)) -> Result<PathBuf, String> {
    let dir =
        fetch::cache_dir().join("freebsd").join(format!("{}-{}", &p.sha256[..16], p.name.trim_end_matches(".txz")));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let txz = freebsd_image::fetch_pinned(p, progress).map_err(|e| e.to_string())?;
    progress(&format!("unpacking {}", p.name));
    fetch::clean_stale_partials(dir.parent().expect("in the cache"));
    let partial = dir.with_extension(format!("partial.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let unpacked = (|| {
        std::fs::create_dir_all(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        let file = std::fs::File::open(&txz).map_err(|e| e.to_string())?;
        let mut archive = tar::Archive::new(xz2::read::XzDecoder::new(std::io::BufReader::new(file)));
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| format!("{}: {e}", p.name))?;
            let path = entry.path().map_err(|e| e.to_string())?.into_owned();
            let rel = path.strip_prefix("./").unwrap_or(&path).to_string_lossy().into_owned();
            if !prefixes.iter().any(|x| rel.starts_with(x)) || skip.iter().any(|x| rel.starts_with(x)) {
                continue;
            }
            // unpack_in refuses paths that would leave the directory.
            entry.unpack_in(&partial).map_err(|e| format!("{}: {rel}: {e}", p.name))?;
        }
        std::fs::write(partial.join(".complete"), b"").map_err(|e| e.to_string())?;
        fetch::publish_dir(&partial, &dir)
    })();
    if unpacked.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    unpacked.map(|()| dir)
}

fn pinned<'a>(lock: &'a Lock, name: &str) -> Result<&'a Pinned, String> {
    lock.dist.iter().find(|p| p.name == name).ok_or_else(|| format!("the lock pins no {name}"))
}

/// The release's libraries and headers from base.txz: what the agent links against.
pub fn sysroot(lock: &Lock, progress: &dyn Fn(&str)) -> Result<PathBuf, String> {
    unpack_txz(
        pinned(lock, "base.txz")?,
        &["lib/", "usr/lib/", "usr/include/"],
        &["usr/lib/debug/", "usr/lib32/"],
        progress,
    )
    .map_err(|e| format!("cannot download base.txz: {e}"))
}

/// The kernel sources (`usr/src/sys`) of the release, from src.txz.
pub fn kernel_sources(lock: &Lock, progress: &dyn Fn(&str)) -> Result<PathBuf, String> {
    let dir = unpack_txz(pinned(lock, "src.txz")?, &["usr/src/sys/"], &[], progress)
        .map_err(|e| format!("cannot download src.txz: {e}"))?;
    Ok(dir.join("usr/src/sys"))
}

fn kmod_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kmod")
}

/// Which kernel sources a module is built against.
pub enum KernelSource<'a> {
    /// The release's pinned src.txz.
    Release(&'a Lock),
    /// An existing tree (`/usr/src/sys` of that release).
    Tree(&'a Path),
}

/// Builds the module for a release with clang and ld.lld and verifies it.
pub fn build(def: &ImageDef, source: KernelSource, progress: &dyn Fn(&str)) -> Result<PathBuf, String> {
    let sys = match source {
        KernelSource::Tree(s) => s.to_path_buf(),
        KernelSource::Release(lock) => kernel_sources(lock, progress)?,
    };
    if !sys.join("sys/param.h").exists() {
        return Err(format!("{} is not a FreeBSD kernel source tree (no sys/param.h)", sys.display()));
    }
    for tool in ["clang", "ld.lld"] {
        if crate::qemu::find_binary(tool).is_err() {
            crate::toolchain::install(&[if tool == "clang" { "clang" } else { "lld" }], &format!("{tool} is missing"))?;
        }
    }
    let work = fetch::cache_dir().join("kmod").join(format!("{}.{}", def.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = (|| {
        for (link, target) in machine_links(def, &sys) {
            std::os::unix::fs::symlink(&target, work.join(link)).map_err(|e| e.to_string())?;
        }
        // kmod.mk's stand-in for a kernel build's option header.
        std::fs::write(work.join("opt_global.h"), b"").map_err(|e| e.to_string())?;
        for argv in commands(def, &sys, &kmod_dir(), &work) {
            progress(&argv.join(" "));
            let out = Command::new(&argv[0]).args(&argv[1..]).output().map_err(|e| format!("{}: {e}", argv[0]))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = err.lines().take(30).collect();
                return Err(format!("`{}` failed:\n{}", argv.join(" "), tail.join("\n")));
            }
        }
        let ko = work.join("addrsel.ko");
        let verdict = crate::kmod::verify(&std::fs::read(&ko).map_err(|e| e.to_string())?, None)?;
        if !verdict.ok() {
            return Err(format!("the built module failed verification:\n{}", verdict.render()));
        }
        let out = fetch::cache_dir().join("kmod").join(format!("{}.ko", def.name));
        std::fs::copy(&ko, &out).map_err(|e| e.to_string())?;
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
        for d in freebsd_image::all().unwrap().iter().filter(|d| d.release.starts_with("15.")) {
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
