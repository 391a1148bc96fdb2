//! Link sysroots: a release's own glibc development files (its locked libc6-dev and
//! linux-libc-dev with their libraries), for guests whose glibc is older than the build
//! machine's. A program linked against a newer glibc asks for symbol versions the guest lacks
//! (`__libc_start_main@GLIBC_2.34` from any glibc >= 2.34), so on bullseye (2.31) the agent
//! and the probe programs are linked against 2.31 itself. Debian's gcc searches its own
//! prefix-relative library directories before the sysroot's, hence the `-B`/`-L` flags.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::arch::Arch;
use crate::cache;
use crate::linux::image::{ImageDef, Lock};
use crate::linux::packages::version_cmp;

/// Whether an image's lock carries what a link sysroot needs.
pub fn has_sysroot(lock: &Lock) -> bool {
    ["libc6-dev", "linux-libc-dev"].iter().all(|n| lock.package.iter().any(|p| &p.name == n))
}

/// The image's userland packages unpacked into one tree (cached, keyed by their checksums),
/// absolute symlinks rewritten to stay inside it; `None` when the lock has no libc6-dev.
pub fn for_image(def: &ImageDef, lock: &Lock, progress: &dyn Fn(&str)) -> anyhow::Result<Option<PathBuf>> {
    if !has_sysroot(lock) {
        return Ok(None);
    }
    let packages: Vec<_> =
        lock.package.iter().filter(|p| p.name.starts_with("lib") || p.name == "linux-libc-dev").cloned().collect();
    let key = cache::sha256_hex(packages.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>().join(",").as_bytes());
    let root = cache::cache_dir().join("sysroot").join(format!("{}-{}", def.name, &key[..16]));
    if root.join(".complete").exists() {
        return Ok(Some(root));
    }
    let debs = crate::linux::packages::fetch_packages(&packages, progress)?;
    progress(&format!("assembling the link sysroot ({} packages)", debs.len()));
    cache::publish(&root, |partial| {
        for (p, deb) in &debs {
            let tree = crate::linux::deb::unpack(deb, &p.sha256, &cache::cache_dir().join("unpacked"))?;
            crate::linux::deb::link_tree(&tree, partial)
                .with_context(|| format!("cannot link {} into {}", p.name, partial.display()))?;
        }
        relativize_symlinks(partial, partial)?;
        std::fs::write(partial.join(".complete"), b"").with_context(|| format!("cannot write {}", partial.display()))
    })?;
    Ok(Some(root))
}

/// `lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-2.31.so` would name the build
/// machine's loader: every absolute symlink becomes relative to the tree.
fn relativize_symlinks(root: &Path, dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = e?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            relativize_symlinks(root, &path)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            if let Ok(inside) = target.strip_prefix("/") {
                let depth = path.strip_prefix(root).expect("under root").components().count() - 1;
                let relative: PathBuf = std::iter::repeat_n(Path::new(".."), depth).collect::<PathBuf>().join(inside);
                std::fs::remove_file(&path)?;
                std::os::unix::fs::symlink(&relative, &path)
                    .with_context(|| format!("cannot relink {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Flags for gcc (or the cross gcc) to link against the sysroot's glibc only.
pub fn gcc_flags(sysroot: &Path, arch: Arch) -> Vec<String> {
    let triplet = arch.gnu_triplet();
    let (usr_lib, lib) = (sysroot.join("usr/lib").join(triplet), sysroot.join("lib").join(triplet));
    vec![
        format!("--sysroot={}", sysroot.display()),
        format!("-B{}/", usr_lib.display()),
        format!("-L{}", usr_lib.display()),
        format!("-L{}", lib.display()),
    ]
}

/// Of the Linux images of `arch` whose locks carry a sysroot, the one with the oldest glibc:
/// a program linked against it runs on every newer glibc (symbol versions only accumulate).
pub fn oldest_glibc(arch: Arch) -> anyhow::Result<Option<(ImageDef, Lock, String)>> {
    let mut best: Option<(ImageDef, Lock, String)> = None;
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
        if def.arch != arch {
            continue;
        }
        let Ok(lock) = crate::linux::image::load_lock(&def) else { continue };
        let Some(glibc) = lock.package.iter().find(|p| p.name == "libc6").map(|p| p.version.clone()) else { continue };
        if has_sysroot(&lock) && best.as_ref().is_none_or(|(_, _, v)| version_cmp(&glibc, v).is_lt()) {
            best = Some((def, lock, glibc));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    #[test]
    fn absolute_links_stay_inside() {
        let root = std::env::temp_dir().join(format!("addrsel-sysroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(root.join("lib64")).unwrap();
        std::fs::write(root.join("lib/x86_64-linux-gnu/ld-2.31.so"), b"loader").unwrap();
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/ld-2.31.so", root.join("lib64/ld-linux-x86-64.so.2"))
            .unwrap();
        super::relativize_symlinks(&root, &root).unwrap();
        let link = root.join("lib64/ld-linux-x86-64.so.2");
        assert_eq!(std::fs::read_link(&link).unwrap(), std::path::Path::new("../lib/x86_64-linux-gnu/ld-2.31.so"));
        assert_eq!(std::fs::read(&link).unwrap(), b"loader");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_oldest_glibc_of_each_architecture_is_bullseyes() {
        for arch in [crate::arch::Arch::Amd64, crate::arch::Arch::Arm64] {
            let (def, _, glibc) = super::oldest_glibc(arch).unwrap().expect("an image with a sysroot");
            assert_eq!(def.name, format!("linux-bullseye-{arch}"));
            assert!(glibc.starts_with("2.31-"), "{glibc}");
        }
    }
}
