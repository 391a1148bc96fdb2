//! A Debian guest's kernel, unpacked from its package: what QEMU boots, its configuration,
//! and what its modules must match.

use std::path::PathBuf;

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
