//! A Debian guest's kernel, unpacked from its package: what QEMU boots, its configuration,
//! and what its modules must match.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::linux::image::ImageDef;

/// The guest's kernel, unpacked from its package.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// What QEMU boots: for an x86 bzImage its payload decompressed on the host (see
    /// [`crate::linux::bzimage`]), otherwise `vmlinuz` itself.
    pub boot_image: PathBuf,
    /// How `boot_image` came to be, for the run's log.
    pub boot_note: String,
    pub release: String,
    /// Its build configuration (`/boot/config-*`).
    pub config: String,
    /// `CONFIG_IPV6_MIP6=y`.
    pub mip6: bool,
    /// The vermagic its modules carry (what it accepts).
    pub vermagic: String,
    pub modules_dir: PathBuf,
}

/// The `vermagic=` of a module shipped with the kernel (what the kernel accepts).
pub fn kernel_vermagic(module: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(module);
    text.split('\0').find_map(|s| s.strip_prefix("vermagic=")).map(String::from)
}

/// Packages that carry the kernel's own files (not the meta-package that names it).
pub fn is_kernel_file_package(def: &ImageDef, name: &str) -> bool {
    name != def.kernel
        && ["linux-image-", "linux-binary-", "linux-modules-", "linux-base-"].iter().any(|p| name.starts_with(p))
}

/// Where a kernel tree keeps its image, config and modules: `/boot/vmlinuz-R` and
/// `/boot/config-R` up to Debian's 6.x, `/usr/lib/modules/R/{vmlinuz,config}` from 7.x.
pub struct KernelFiles {
    pub vmlinuz: PathBuf,
    pub config: PathBuf,
    pub release: String,
    pub modules_dir: PathBuf,
}

impl KernelFiles {
    pub fn find(kroot: &Path) -> anyhow::Result<KernelFiles> {
        let boot = kroot.join("boot");
        let in_boot = std::fs::read_dir(&boot).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        });
        let modules_of = |release: &str| {
            ["lib/modules", "usr/lib/modules"].iter().map(|d| kroot.join(d).join(release)).find(|d| d.exists())
        };
        if let Some(vmlinuz) = in_boot {
            let release =
                vmlinuz.file_name().expect("file").to_string_lossy().trim_start_matches("vmlinuz-").to_string();
            let modules_dir = modules_of(&release).context("no modules directory in the kernel package")?;
            return Ok(KernelFiles { config: boot.join(format!("config-{release}")), vmlinuz, release, modules_dir });
        }
        for d in ["usr/lib/modules", "lib/modules"] {
            for e in std::fs::read_dir(kroot.join(d)).into_iter().flatten().flatten() {
                let dir = e.path();
                if dir.join("vmlinuz").exists() {
                    let release = e.file_name().to_string_lossy().into_owned();
                    return Ok(KernelFiles {
                        vmlinuz: dir.join("vmlinuz"),
                        config: dir.join("config"),
                        release,
                        modules_dir: dir,
                    });
                }
            }
        }
        anyhow::bail!("no vmlinuz in {} (neither boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz)", kroot.display())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vermagic_is_read() {
        let module =
            b"\x7fELF...\0license=GPL\0vermagic=6.1.0-44-cloud-amd64 SMP preempt mod_unload modversions \0name=veth\0";
        assert_eq!(
            super::kernel_vermagic(module).as_deref(),
            Some("6.1.0-44-cloud-amd64 SMP preempt mod_unload modversions ")
        );
    }
}
