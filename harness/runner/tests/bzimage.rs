//! The real amd64 guest kernels (bookworm: lz4, trixie: zstd) are decompressed on the host
//! into ELF kernels with a PVH entry, whose size is the one the bzImage records.

use addrsel_runner::linux::{image as debian, initramfs};

#[test]
fn amd64_guest_kernels_boot_uncompressed() {
    for name in ["bookworm-amd64", "trixie-amd64"] {
        let def = debian::load_image(&debian::images_dir().join(format!("{name}.toml"))).unwrap();
        let lock = debian::load_lock(&def).unwrap();
        let kernel = initramfs::kernel(&def, &lock, &|_| {}).unwrap();
        assert_ne!(kernel.boot_image, kernel.vmlinuz, "{name}: {}", kernel.boot_note);
        let elf = std::fs::read(&kernel.boot_image).unwrap();
        assert_eq!(&elf[..4], b"\x7fELF", "{name}");
        let bz = std::fs::read(&kernel.vmlinuz).unwrap();
        let setup = (bz[0x1f1].max(4) as usize + 1) * 512;
        let offset = u32::from_le_bytes(bz[0x248..0x24c].try_into().unwrap()) as usize;
        let length = u32::from_le_bytes(bz[0x24c..0x250].try_into().unwrap()) as usize;
        let end = setup + offset + length;
        let recorded = u32::from_le_bytes(bz[end - 4..end].try_into().unwrap()) as usize;
        assert_eq!(elf.len(), recorded, "{name}");
    }
}
