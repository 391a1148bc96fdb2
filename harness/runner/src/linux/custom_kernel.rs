//! `--kernel PATH [--kernel-build DIR]`: the corpus on a kernel of your choosing, on a
//! release's userland (as virtme-ng boots a developer's kernel).
//!
//! PATH is a `linux-image-*.deb` (its split 7.x parts, `linux-binary-*`, `linux-modules-*` and
//! `linux-base-*`, and its headers are taken from the same directory when they have the same
//! version) or a kernel image (bzImage, vmlinuz, arm64 Image, vmlinux) with its build tree as
//! `--kernel-build DIR` (the config, the release, the modules of `modules.order`). Before any
//! boot, the kernel's config must have what the guest needs (`CONFIG_*` names otherwise). The
//! test module is built against DIR with this machine's compiler when it is the one the
//! kernel was built with, or against the .deb's headers in a build root borrowed from any
//! image lock that pins that exact compiler; otherwise the run says why it is left out.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::arch::Arch;
use crate::cache;
use crate::linux::compiler::{Toolchain, cc_version_text, same_debian_gcc};
use crate::linux::image::{CustomKernel, ImageDef, Lock, LockedPackage};

/// What a guest needs of its kernel: the option, whether a module (`=m`) will do, and why.
fn needed(arch: Arch) -> Vec<(&'static str, bool, &'static str)> {
    let mut v = vec![
        ("CONFIG_BLK_DEV_INITRD", false, "the initramfs that carries the agent"),
        ("CONFIG_DEVTMPFS", false, "/dev in the guest"),
        ("CONFIG_PROC_FS", false, "/proc in the guest"),
        ("CONFIG_NET_NS", false, "a network namespace per scenario"),
        ("CONFIG_INET", false, "IPv4"),
        ("CONFIG_IPV6", false, "IPv6"),
        ("CONFIG_UNIX", false, "the agent's worker sockets"),
        ("CONFIG_VETH", true, "veth pairs, the scenario's links"),
    ];
    match arch {
        Arch::Amd64 => v.extend([
            ("CONFIG_SERIAL_8250", false, "the console (ttyS0) and the results channel (ttyS1)"),
            ("CONFIG_SERIAL_8250_CONSOLE", false, "the console on ttyS0"),
        ]),
        Arch::Arm64 => v.extend([
            ("CONFIG_SERIAL_AMBA_PL011", false, "the console (ttyAMA0)"),
            ("CONFIG_SERIAL_AMBA_PL011_CONSOLE", false, "the console on ttyAMA0"),
            ("CONFIG_PCI_HOST_GENERIC", false, "the virt machine's PCIe host bridge"),
            ("CONFIG_VIRTIO_PCI", true, "virtio devices on PCI"),
            ("CONFIG_VIRTIO_CONSOLE", true, "the results channel (virtio console)"),
        ]),
    }
    v
}

/// The options a kernel config lacks for the guest (`CONFIG_X (why)`), as virtme-ng's
/// `--kconfig` would set them; an option that is `=m` needs its module among `modules`.
pub fn missing_options(config: &str, arch: Arch, has_module: &dyn Fn(&str) -> bool) -> Vec<String> {
    let value = |name: &str| {
        config.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('='))).map(str::to_string)
    };
    let module_of = |option: &str| match option {
        "CONFIG_VETH" => "veth",
        "CONFIG_VIRTIO_PCI" => "virtio_pci",
        "CONFIG_VIRTIO_CONSOLE" => "virtio_console",
        _ => "",
    };
    let mut out = Vec::new();
    let arch_option = match arch {
        Arch::Amd64 => "CONFIG_X86_64",
        Arch::Arm64 => "CONFIG_ARM64",
    };
    if value(arch_option).as_deref() != Some("y") {
        out.push(format!("{arch_option} (the target is {arch}: this kernel is for another architecture)"));
        return out;
    }
    for (option, module_ok, why) in needed(arch) {
        match value(option).as_deref() {
            Some("y") => {}
            Some("m") if module_ok && has_module(module_of(option)) => {}
            Some("m") if module_ok => {
                out.push(format!("{option}=m, but no {}.ko among the modules ({why})", module_of(option)))
            }
            Some("m") => out.push(format!("{option}=y, not m ({why}; loaded too late)")),
            _ => out.push(format!("{option} ({why})")),
        }
    }
    out
}

/// A .deb's Package, Version and Architecture.
fn identity(deb: &Path) -> anyhow::Result<(String, String, String)> {
    let c = crate::linux::deb::control(deb)?;
    let get = |k: &str| c.get(k).cloned().with_context(|| format!("{}: no {k} in its control file", deb.display()));
    Ok((get("Package")?, get("Version")?, get("Architecture")?))
}

/// Copies a user's file into the download cache under its sha256 (where a locked package
/// would be), so the image's code takes it like any verified package.
fn as_locked(path: &Path) -> anyhow::Result<(LockedPackage, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let sha256 = cache::sha256_hex(&bytes);
    let dir = cache::cache_dir().join("debian");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cached = dir.join(format!("{sha256}.deb"));
    if !cached.exists() {
        cache::publish(&cached, |partial| {
            std::fs::write(partial, &bytes).with_context(|| format!("cannot write {}", partial.display()))
        })?;
    }
    let (name, version, _) = identity(path)?;
    let origin = format!("{} (sha256 {sha256})", path.display());
    let url = format!("file://{}", std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display());
    Ok((LockedPackage { name, version, url, sha256, size: bytes.len() as u64 }, origin))
}

/// The packages of a kernel .deb and the ones beside it with the same version: the split
/// 7.x parts and the headers (`linux-headers-*`, including the `all` common part, and
/// `linux-kbuild-*`).
fn kernel_debs(deb: &Path, arch: Arch) -> anyhow::Result<Vec<PathBuf>> {
    let (name, version, deb_arch) = identity(deb)?;
    if !name.starts_with("linux-image-") {
        bail!("{}: {name} is not a linux-image-* package", deb.display());
    }
    if deb_arch != arch.as_str() {
        bail!("{}: the package is for {deb_arch}, the target is {arch}", deb.display());
    }
    let dir = deb.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut out = vec![deb.to_path_buf()];
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb") && p.as_path() != deb)
        .collect();
    entries.sort();
    let parts = ["linux-image-", "linux-binary-", "linux-modules-", "linux-base-", "linux-headers-", "linux-kbuild-"];
    for p in entries {
        let Ok((n, v, a)) = identity(&p) else { continue };
        if v == version
            && (a == arch.as_str() || a == "all")
            && parts.iter().any(|prefix| n.starts_with(prefix))
            && !n.ends_with("-dbg")
        {
            out.push(p);
        }
    }
    Ok(out)
}

/// The build root of an image lock that pins `cc_text`'s exact compiler (for `arch`), with
/// its kernel build scripts left out (the custom kernel brings its own).
fn borrowed_build_root(cc_text: &str, arch: Arch) -> anyhow::Result<Option<Lock>> {
    let dir = crate::linux::image::images_dir();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        let def = crate::linux::image::load_image(&p)?;
        let Ok(lock) = crate::linux::image::load_lock(&def) else { continue };
        let Some(root_arch) = lock.build_root_arch else { continue };
        if def.arch != arch {
            continue;
        }
        let Ok(toolchain) = Toolchain::for_kernel(cc_text, arch, root_arch) else { continue };
        let pinned = lock.build_root.iter().find(|p| p.name == toolchain.compiler_package);
        let clang = cc_text.contains("clang version");
        if pinned.is_some_and(|p| clang || same_debian_gcc(cc_text, &p.version)) {
            let mut borrowed = lock.clone();
            borrowed.build_root.retain(|p| !p.name.starts_with("linux-kbuild-"));
            return Ok(Some(borrowed));
        }
    }
    Ok(None)
}

/// Reads a kernel given on the command line for `def`'s architecture and checks its config.
pub fn prepare(
    def: &ImageDef,
    kernel: &Path,
    build_dir: Option<&Path>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<CustomKernel> {
    let base = crate::linux::image::load_lock(def)?;
    let userland: Vec<LockedPackage> = base
        .package
        .iter()
        .filter(|p| {
            !crate::linux::kernel::is_kernel_file_package(def, &p.name)
                && !p.name.starts_with("linux-headers-")
                && p.name != def.kernel
        })
        .cloned()
        .collect();
    let is_deb = kernel.extension().is_some_and(|e| e == "deb");
    let (root, origin, lock, headers_present) = if is_deb {
        let debs = kernel_debs(kernel, def.arch)?;
        let mut packages = Vec::new();
        let mut origins = Vec::new();
        for d in &debs {
            let (p, o) = as_locked(d)?;
            packages.push(p);
            origins.push(o);
        }
        let kernel_files: Vec<LockedPackage> = packages
            .iter()
            .filter(|p| !p.name.starts_with("linux-headers-") && !p.name.starts_with("linux-kbuild-"))
            .cloned()
            .collect();
        let root = crate::linux::packages::kernel_tree("custom", &kernel_files, progress)?;
        let headers: Vec<LockedPackage> = packages
            .iter()
            .filter(|p| p.name.starts_with("linux-headers-") || p.name.starts_with("linux-kbuild-"))
            .cloned()
            .collect();
        let mut lock = Lock {
            image: format!("{} with {}", def.name, kernel.display()),
            build_root_arch: None,
            generated_from: vec![],
            package: userland.iter().chain(&packages).cloned().collect(),
            build_root: vec![],
            emulator: None,
        };
        lock.package.retain(|p| !p.name.starts_with("linux-kbuild-"));
        let kbuild: Vec<LockedPackage> =
            headers.iter().filter(|p| p.name.starts_with("linux-kbuild-")).cloned().collect();
        (root, origins.join(", "), (lock, kbuild), !headers.is_empty())
    } else {
        let dir = build_dir.with_context(|| {
            format!(
                "{} is a kernel image: give its build tree with --kernel-build DIR (its .config and modules), or give a linux-image-*.deb",
                kernel.display()
            )
        })?;
        let (root, origin) = tree_from_build_dir(kernel, dir, progress)?;
        let lock = Lock {
            image: format!("{} with {}", def.name, kernel.display()),
            build_root_arch: None,
            generated_from: vec![],
            package: userland.clone(),
            build_root: vec![],
            emulator: None,
        };
        (root, origin, (lock, vec![]), false)
    };
    let (mut lock, kbuild) = lock;
    let files = crate::linux::kernel::KernelFiles::find(&root)?;
    let config = std::fs::read_to_string(&files.config)
        .with_context(|| format!("cannot read the kernel config {}", files.config.display()))?;
    let has_module = |name: &str| crate::linux::initramfs::has_module(&files.modules_dir, name);
    let missing = missing_options(&config, def.arch, &has_module);
    if !missing.is_empty() {
        bail!(
            "{} cannot boot as {}: its config lacks what the guest needs (set these and rebuild, as virtme-ng's --kconfig does):\n  {}",
            kernel.display(),
            def.name,
            missing.join("\n  ")
        );
    }
    let cc = cc_version_text(&config);
    let no_module = match (build_dir, &cc) {
        (_, None) => Some("the kernel config has no CONFIG_CC_VERSION_TEXT: cannot tell its compiler".to_string()),
        (Some(_), Some(_)) => None,
        (None, Some(cc)) if !headers_present => Some(format!(
            "no linux-headers-{} .deb beside {} and no --kernel-build DIR: nothing to build the test module against (the kernel was built with `{cc}`)",
            files.release,
            kernel.display()
        )),
        (None, Some(cc)) => match borrowed_build_root(cc, def.arch)? {
            Some(borrowed) => {
                progress(&format!("the test module is built with `{cc}` from the build root {} pins", borrowed.image));
                lock.build_root = borrowed.build_root.into_iter().chain(kbuild).collect();
                lock.build_root_arch = borrowed.build_root_arch;
                lock.emulator = borrowed.emulator;
                None
            }
            None => Some(format!(
                "no image lock pins the kernel's compiler `{cc}` (for {}): give --kernel-build DIR to build with this machine's compiler",
                def.arch
            )),
        },
    };
    Ok(CustomKernel {
        origin,
        release: files.release,
        root,
        lock,
        build_dir: build_dir.map(Path::to_path_buf),
        no_module,
    })
}

/// A kernel tree from an image and its build directory: the image as `vmlinuz`, `.config`,
/// `modules.builtin*` and every module `modules.order` lists (cached by their contents).
fn tree_from_build_dir(image: &Path, dir: &Path, progress: &dyn Fn(&str)) -> anyhow::Result<(PathBuf, String)> {
    let read = |rel: &str| {
        let p = dir.join(rel);
        std::fs::read(&p)
            .with_context(|| format!("cannot read {} (is {} a kernel build tree?)", p.display(), dir.display()))
    };
    let release = String::from_utf8_lossy(&read("include/config/kernel.release")?).trim().to_string();
    if release.is_empty() || release.contains('/') || release.starts_with('.') {
        bail!("{}: `{release}` is not a kernel release", dir.join("include/config/kernel.release").display());
    }
    let image_bytes = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let config = read(".config")?;
    let order = String::from_utf8_lossy(&read("modules.order").unwrap_or_default()).into_owned();
    let mut modules = Vec::new();
    for line in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let rel = line.strip_suffix(".o").map_or(line.to_string(), |s| format!("{s}.ko"));
        if Path::new(&rel).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            bail!("{}: `{line}` is not a path inside the tree", dir.join("modules.order").display());
        }
        let bytes = std::fs::read(dir.join(&rel)).with_context(|| {
            format!("{} lists {line}, but {} is missing (run `make modules`)", dir.join("modules.order").display(), rel)
        })?;
        modules.push((rel, bytes));
    }
    let mut hasher = cache::sha256_hex(&image_bytes);
    hasher.push_str(&cache::sha256_hex(&config));
    for (rel, bytes) in &modules {
        hasher.push_str(rel);
        hasher.push_str(&cache::sha256_hex(bytes));
    }
    let key = cache::sha256_hex(hasher.as_bytes());
    let root = cache::cache_dir().join("kernel-root").join(format!("build-{}", &key[..16]));
    if !root.exists() {
        progress(&format!("taking {release} from {} ({} modules)", dir.display(), modules.len()));
        cache::publish(&root, |partial| {
            let mdir = partial.join("usr/lib/modules").join(&release);
            std::fs::create_dir_all(&mdir).with_context(|| format!("cannot create {}", mdir.display()))?;
            std::fs::write(mdir.join("vmlinuz"), &image_bytes)?;
            std::fs::write(mdir.join("config"), &config)?;
            for f in ["modules.builtin", "modules.builtin.modinfo", "modules.order"] {
                if let Ok(b) = read(f) {
                    std::fs::write(mdir.join(f), b)?;
                }
            }
            for (rel, bytes) in &modules {
                let dst = mdir.join("kernel").join(rel);
                std::fs::create_dir_all(dst.parent().expect("parent"))?;
                std::fs::write(&dst, bytes)?;
            }
            std::fs::create_dir_all(mdir.join("kernel"))?;
            Ok(())
        })?;
    }
    let origin = format!("{} (sha256 {}) built in {}", image.display(), cache::sha256_hex(&image_bytes), dir.display());
    Ok((root, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: &str = "CONFIG_X86_64=y\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_DEVTMPFS=y\nCONFIG_PROC_FS=y\nCONFIG_NET_NS=y\nCONFIG_INET=y\nCONFIG_IPV6=y\nCONFIG_UNIX=y\nCONFIG_VETH=m\nCONFIG_SERIAL_8250=y\nCONFIG_SERIAL_8250_CONSOLE=y\n";

    #[test]
    fn a_complete_config_passes() {
        assert_eq!(missing_options(AMD64, Arch::Amd64, &|m| m == "veth"), Vec::<String>::new());
    }

    #[test]
    fn missing_drivers_are_named_by_option() {
        let config =
            AMD64.replace("CONFIG_VETH=m", "# CONFIG_VETH is not set").replace("CONFIG_SERIAL_8250_CONSOLE=y\n", "");
        let missing = missing_options(&config, Arch::Amd64, &|_| true);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].starts_with("CONFIG_VETH ("), "{missing:?}");
        assert!(missing[1].starts_with("CONFIG_SERIAL_8250_CONSOLE ("), "{missing:?}");
        // A module the tree does not carry is as missing as an option that is off.
        let missing = missing_options(AMD64, Arch::Amd64, &|_| false);
        assert_eq!(missing, ["CONFIG_VETH=m, but no veth.ko among the modules (veth pairs, the scenario's links)"]);
        // Built-in only: IPv6 as a module would load after the agent needs it.
        let missing = missing_options(&AMD64.replace("CONFIG_IPV6=y", "CONFIG_IPV6=m"), Arch::Amd64, &|_| true);
        assert_eq!(missing, ["CONFIG_IPV6=y, not m (IPv6; loaded too late)"]);
    }

    #[test]
    fn another_architecture_is_refused_first() {
        let missing = missing_options(AMD64, Arch::Arm64, &|_| true);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].starts_with("CONFIG_ARM64 (the target is arm64"), "{missing:?}");
    }
}
