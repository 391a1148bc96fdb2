//! The uncompressed kernel inside an x86 bzImage. Under TCG the kernel's own decompressor is
//! slow (a zstd-compressed 6.12 kernel spends ~1.3 s in it, an lz4 one ~0.3 s), so the host
//! decompresses the payload once and QEMU boots the ELF `vmlinux` through its PVH entry point:
//! the same kernel code, without the stub that would unpack it in the guest.

use std::io::Read;
use std::path::{Path, PathBuf};

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};

use anyhow::{Context as _, bail};

use crate::cache;

/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note QEMU needs to boot an ELF kernel (PVH).
const PVH_ENTRY_NOTE: object::elf::NoteType = object::elf::NoteType(18);

/// The cached `vmlinux` for `bzimage`, decompressed on first use; `Err` says why the
/// compressed image must be booted instead (an unknown format, no PVH entry point).
/// `bzimage` must be immutable (an unpacked package in the cache, named by its checksum), so
/// its path names the result.
pub fn vmlinux(bzimage: &Path, notify: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir = cache::cache_dir().join("kernels");
    let out = dir.join(format!("{}.vmlinux", cache::sha256_hex(bzimage.as_os_str().as_encoded_bytes())));
    if cache::intact(&out, notify) {
        return Ok(out);
    }
    let bytes = std::fs::read(bzimage).with_context(|| format!("cannot read {}", bzimage.display()))?;
    let elf = decompress(payload(&bytes)?)?;
    check_pvh(&elf)?;
    cache::publish(&out, |partial| {
        std::fs::write(partial, &elf).with_context(|| format!("cannot write {}", partial.display()))
    })?;
    Ok(out)
}

/// The compressed payload, located by the boot protocol's setup header (Documentation/arch/x86/boot.rst).
fn payload(image: &[u8]) -> anyhow::Result<&[u8]> {
    let u32_at = |o: usize| image.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    if image.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not an x86 bzImage (no HdrS setup header)");
    }
    let version = image.get(0x206..0x208).map(|b| u16::from_le_bytes([b[0], b[1]])).unwrap_or(0);
    if version < 0x208 {
        bail!("boot protocol {version:#x} has no payload fields (2.08+ needed)");
    }
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let (offset, length) = (u32_at(0x248).unwrap_or(0) as usize, u32_at(0x24c).unwrap_or(0) as usize);
    let start = (setup_sects + 1) * 512 + offset;
    image.get(start..start + length).context("the payload lies outside the image")
}

/// Decompresses a payload by its magic; the kernel appends the uncompressed size (le32).
fn decompress(payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let size = payload
        .len()
        .checked_sub(4)
        .map(|n| u32::from_le_bytes(payload[n..].try_into().expect("4 bytes")) as usize)
        .context("payload too short")?;
    let mut out = Vec::with_capacity(size);
    let read_all = |r: &mut dyn Read, out: &mut Vec<u8>| r.read_to_end(out).map(|_| ());
    let result = match payload {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => ruzstd::decoding::StreamingDecoder::new(payload)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|mut d| Ok(read_all(&mut d, &mut out)?)),
        [0x1f, 0x8b, ..] => Ok(read_all(&mut flate2::read::GzDecoder::new(payload), &mut out)?),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Ok(read_all(&mut xz2::read::XzDecoder::new(payload), &mut out)?),
        [0x02, 0x21, 0x4c, 0x18, ..] => lz4_legacy(&payload[4..], size, &mut out),
        _ => Err(anyhow::anyhow!(
            "compression with magic {:02x?} is not decompressed here",
            &payload[..payload.len().min(4)]
        )),
    };
    result.map_err(|e| anyhow::anyhow!("decompressing the kernel: {e:#}"))?;
    if out.len() != size {
        bail!("decompressed {} bytes, the image says {size}", out.len());
    }
    Ok(out)
}

/// The lz4 "legacy" frame the kernel uses: blocks of up to 8 MiB, each preceded by its
/// compressed length.
fn lz4_legacy(mut input: &[u8], size: usize, out: &mut Vec<u8>) -> anyhow::Result<()> {
    const CHUNK: usize = 8 << 20;
    let mut buf = vec![0u8; CHUNK];
    while out.len() < size {
        let (len, rest) = input.split_at_checked(4).context("truncated lz4 block header")?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let block = rest.get(..len).context("truncated lz4 block")?;
        let n = lz4_flex::block::decompress_into(block, &mut buf).map_err(|e| anyhow::anyhow!("lz4: {e}"))?;
        out.extend_from_slice(&buf[..n]);
        input = &rest[len..];
    }
    Ok(())
}

/// QEMU boots an ELF kernel only through the PVH entry point (`CONFIG_PVH=y`).
fn check_pvh(elf: &[u8]) -> anyhow::Result<()> {
    let file = ElfFile64::<object::Endianness>::parse(elf).context("the payload is not ELF")?;
    let endian = file.endian();
    let header = file.elf_header();
    if header.e_machine(endian) != object::elf::EM_X86_64 {
        bail!("the payload is not an x86-64 ELF");
    }
    for ph in header.program_headers(endian, elf).context("unreadable program headers")? {
        if let Ok(Some(mut notes)) = ph.notes(endian, elf) {
            while let Ok(Some(note)) = notes.next() {
                if note.name() == b"Xen" && note.n_type(endian) == PVH_ENTRY_NOTE {
                    return Ok(());
                }
            }
        }
    }
    bail!("the kernel has no PVH entry point (CONFIG_PVH is off)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal bzImage around `payload` (setup header fields only).
    fn image(payload: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 5 * 512];
        img[0x1f1] = 4;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(&[0xaa; 16]);
        img.extend_from_slice(payload);
        img.extend_from_slice(&[0xbb; 32]);
        img
    }

    fn with_size(mut compressed: Vec<u8>, size: usize) -> Vec<u8> {
        compressed.extend_from_slice(&(size as u32).to_le_bytes());
        compressed
    }

    fn sample() -> Vec<u8> {
        (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
    }

    #[test]
    fn payload_is_found_by_the_setup_header() {
        let img = image(b"PAYLOAD!");
        assert_eq!(payload(&img).unwrap(), b"PAYLOAD!");
        let mut not_bz = img.clone();
        not_bz[0x202] = b'X';
        assert!(payload(&not_bz).unwrap_err().to_string().contains("HdrS"));
        let mut short = img;
        short.truncate(5 * 512 + 10);
        assert!(payload(&short).unwrap_err().to_string().contains("outside"));
    }

    #[test]
    fn lz4_legacy_blocks_and_gzip_decompress_to_the_recorded_size() {
        let data = sample();
        let mut lz4 = vec![0x02, 0x21, 0x4c, 0x18];
        for chunk in data.chunks(1 << 20) {
            let block = lz4_flex::block::compress(chunk);
            lz4.extend_from_slice(&(block.len() as u32).to_le_bytes());
            lz4.extend_from_slice(&block);
        }
        assert_eq!(decompress(&with_size(lz4, data.len())).unwrap(), data);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        let gz = with_size(gz.finish().unwrap(), data.len());
        assert_eq!(decompress(&gz).unwrap(), data);
        // A recorded size that does not match is an error, not a silently short kernel.
        let wrong = with_size(gz[..gz.len() - 4].to_vec(), data.len() + 1);
        assert!(decompress(&wrong).unwrap_err().to_string().contains("the image says"));
        let zst = ruzstd::encoding::compress_to_vec(&data[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(decompress(&with_size(zst, data.len())).unwrap(), data);
        assert!(
            decompress(&with_size(b"BZh91AY".to_vec(), 3)).unwrap_err().to_string().contains("not decompressed here")
        );
    }

    #[test]
    fn an_elf_without_the_pvh_note_is_refused() {
        assert!(check_pvh(b"\x7fELF garbage").is_err());
        // The agent's own test binary: x86-64 ELF on this machine, but no Xen note.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert!(check_pvh(&me).unwrap_err().to_string().contains("PVH"));
        }
    }
}
