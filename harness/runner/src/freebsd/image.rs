//! FreeBSD guests from the release's official BASIC-CI images: image definitions
//! (`images/freebsd/*.toml`), lock files pinned from the release's own `CHECKSUM.SHA256` and
//! `MANIFEST` (fetched over HTTPS, `cargo xtask image --update`), verified and cached
//! downloads, the disk decompressed once, and a copy-on-write overlay for every boot so the
//! cached disk never changes.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::cache::{self, FetchError};
use anyhow::Context as _;

/// `images/freebsd/<name>.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDef {
    pub name: String,
    pub description: String,
    /// `14.5-RELEASE`.
    pub release: String,
    /// The guest's architecture (`amd64` or `aarch64` in the file, as FreeBSD names it).
    pub arch: crate::arch::Arch,
    /// The directory with the BASIC-CI image and its CHECKSUM.SHA256.
    pub image_dir: String,
    /// The image's file name before `.raw.xz` (some releases append `-ufs`).
    pub image_prefix: String,
    /// The directory with the release's distribution sets (base.txz, src.txz) and MANIFEST.
    pub dist_dir: String,
    pub qemu: QemuDef,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuDef {
    pub binary: String,
    pub machine: String,
    /// CPU model without KVM.
    pub cpu: String,
    pub memory_mb: u32,
    /// Firmware for `-bios` (UEFI for arm64); none means QEMU's default BIOS.
    #[serde(default)]
    pub firmware: Option<String>,
    /// The Debian package that provides it.
    #[serde(default)]
    pub firmware_package: Option<String>,
    /// The payload disk as the guest names it (the second virtio disk).
    pub payload_device: String,
}

/// `images/freebsd/<name>.lock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub image: String,
    /// Where the pins came from.
    pub checksum_url: String,
    pub manifest_url: String,
    pub disk: Pinned,
    /// base.txz (the agent's sysroot) and src.txz (the module's kernel sources).
    pub dist: Vec<Pinned>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub name: String,
    pub url: String,
    pub sha256: String,
}

pub fn images_dir() -> PathBuf {
    crate::repo_root().join("images/freebsd")
}

pub fn load_image(path: &Path) -> anyhow::Result<ImageDef> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let def: ImageDef = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    Ok(def)
}

/// Every image definition, sorted by name; one that does not load is an error naming the
/// file and line, never a target that silently disappears.
pub fn all() -> anyhow::Result<Vec<ImageDef>> {
    let dir = images_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load_image(p)).collect()
}

pub fn lock_path(def: &ImageDef) -> PathBuf {
    images_dir().join(format!("{}.lock", def.name.trim_start_matches("freebsd-")))
}

/// The lock, if one was made.
pub fn load_lock(def: &ImageDef) -> anyhow::Result<Option<Lock>> {
    let path = lock_path(def);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map(Some).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// `SHA256 (name) = hex` (what download.freebsd.org publishes) and `hex  name` lines.
pub fn parse_checksums(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("SHA256 (")
            && let Some((name, hash)) = rest.split_once(") = ")
        {
            out.push((name.to_string(), hash.trim().to_lowercase()));
        } else if let [hash, name] = line.split_whitespace().collect::<Vec<_>>()[..]
            && hash.len() == 64
            && hash.chars().all(|c| c.is_ascii_hexdigit())
        {
            out.push((name.trim_start_matches('*').to_string(), hash.to_lowercase()));
        }
    }
    out
}

/// A release MANIFEST: `name<TAB>sha256<TAB>count<TAB>set<TAB>"description"<TAB>default`.
pub fn parse_manifest(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, hash) = (f.next()?, f.next()?);
            (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (name.to_string(), hash.to_lowercase()))
        })
        .collect()
}

/// FreeBSD's download site; `ADDRSEL_FREEBSD_MIRROR` replaces it (a local mirror).
pub const SITE: &str = "https://download.freebsd.org";

/// Where a FreeBSD URL is fetched from (locks keep the canonical URL).
pub fn effective_url(url: &str) -> String {
    match (std::env::var("ADDRSEL_FREEBSD_MIRROR"), url.strip_prefix(SITE)) {
        (Ok(mirror), Some(rest)) if !mirror.is_empty() => format!("{}{rest}", mirror.trim_end_matches('/')),
        _ => url.to_string(),
    }
}

fn text_of(url: &str) -> anyhow::Result<String> {
    let url = effective_url(url);
    let bytes = cache::get(&url)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{url} is not text"))
}

/// Pins the image and the distribution sets from the release's published checksums.
pub fn resolve_lock(def: &ImageDef, progress: &dyn Fn(&str)) -> anyhow::Result<Lock> {
    let checksum_url = format!("{}/CHECKSUM.SHA256", def.image_dir);
    progress(&format!("reading {checksum_url}"));
    let sums = parse_checksums(&text_of(&checksum_url)?);
    let candidates: Vec<&(String, String)> = sums
        .iter()
        .filter(|(n, _)| n.starts_with(&def.image_prefix) && n.ends_with(".raw.xz") && !n.contains("-zfs"))
        .collect();
    let (disk_name, disk_sha) = match candidates[..] {
        [one] => one.clone(),
        [] => {
            return Err(anyhow::anyhow!(
                "{checksum_url} lists no {}*.raw.xz (it lists: {})",
                def.image_prefix,
                sums.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        _ => {
            return Err(anyhow::anyhow!(
                "{checksum_url} lists several images for {}: {}",
                def.image_prefix,
                candidates.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    };
    let manifest_url = format!("{}/MANIFEST", def.dist_dir);
    progress(&format!("reading {manifest_url}"));
    let manifest = parse_manifest(&text_of(&manifest_url)?);
    let mut dist = Vec::new();
    for set in ["base.txz", "src.txz"] {
        let (_, sha) =
            manifest.iter().find(|(n, _)| n == set).with_context(|| format!("{manifest_url} does not list {set}"))?;
        dist.push(Pinned { name: set.into(), url: format!("{}/{set}", def.dist_dir), sha256: sha.clone() });
    }
    Ok(Lock {
        image: def.name.clone(),
        disk: Pinned { url: format!("{}/{disk_name}", def.image_dir), name: disk_name, sha256: disk_sha },
        checksum_url,
        manifest_url,
        dist,
    })
}

pub fn write_lock(def: &ImageDef, lock: &Lock) -> anyhow::Result<PathBuf> {
    let path = lock_path(def);
    let body = toml::to_string_pretty(lock)?;
    let text = format!(
        "# Generated by `cargo xtask image --update` from the release's CHECKSUM.SHA256 and MANIFEST (HTTPS).\n# Do not edit: every download is checked against these sha256 sums.\n{body}"
    );
    std::fs::write(&path, text).with_context(|| format!("{}", path.display()))?;
    Ok(path)
}

/// The lock, made now (and written) when the image has none yet.
pub fn lock_or_resolve(def: &ImageDef, progress: &dyn Fn(&str)) -> anyhow::Result<Lock> {
    if let Some(lock) = load_lock(def)? {
        return Ok(lock);
    }
    progress("no lock yet: pinning the release's published checksums");
    let lock = resolve_lock(def, progress)?;
    let path = write_lock(def, &lock)?;
    progress(&format!("pinned in {} (commit it)", path.display()));
    Ok(lock)
}

/// A pinned file, verified, in the cache.
pub fn fetch_pinned(p: &Pinned, progress: &dyn Fn(&str)) -> Result<PathBuf, FetchError> {
    let dir = cache::cache_dir().join("freebsd");
    let notify = |why: &str| progress(&format!("{}: {why}", p.name));
    cache::fetch_verified(&effective_url(&p.url), &p.sha256, &dir, &format!("{}-{}", &p.sha256[..16], p.name), &notify)
}

/// Decompresses an xz file, leaving runs of zero blocks as holes (the images are mostly empty).
pub fn decompress_sparse(xz: &Path, out: &Path) -> anyhow::Result<u64> {
    let input = std::fs::File::open(xz).with_context(|| format!("{}", xz.display()))?;
    let mut reader = xz2::read::XzDecoder::new(std::io::BufReader::new(input));
    let mut file = std::fs::File::create(out).with_context(|| format!("{}", out.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut size: u64 = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(anyhow::anyhow!("{}: {e}", xz.display())),
            }
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(filled as i64))?;
        } else {
            file.write_all(&buf[..filled])?;
        }
        size += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    file.set_len(size)?;
    file.sync_all()?;
    Ok(size)
}

/// The raw disk of the pinned image: downloaded and verified once, decompressed once.
pub fn disk(lock: &Lock, progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let raw = cache::cache_dir().join("freebsd").join(format!("{}.raw", &lock.disk.sha256[..16]));
    if raw.exists() {
        return Ok(raw);
    }
    let xz = fetch_pinned(&lock.disk, progress)?;
    progress(&format!("decompressing {}", lock.disk.name));
    // A multi-GB sparse image is not hashed (the compressed download was verified): it is
    // published whole or not at all.
    cache::publish(&raw, |partial| {
        decompress_sparse(&xz, partial).map(|_| ()).with_context(|| format!("cannot write {}", partial.display()))
    })?;
    let _ = std::fs::remove_file(
        raw.with_file_name(format!("{}.sha256", raw.file_name().expect("name").to_string_lossy())),
    );
    Ok(raw)
}

/// A qcow2 overlay over the cached raw disk for one boot, `grow_to` bytes large (growfs
/// grows the root file system into it on first boot). The base is never written.
pub fn overlay(base: &Path, path: &Path, grow_to: u64) -> anyhow::Result<()> {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(path)
        .arg(grow_to.to_string())
        .output()
        .context("cannot run qemu-img (apt-get install qemu-utils)")?;
    if !out.status.success() {
        anyhow::bail!(
            "`qemu-img create` of {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_in_both_forms() {
        let text = "SHA256 (FreeBSD-14.5-RELEASE-amd64-BASIC-CI.raw.xz) = ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n\
                    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  other.raw.xz\n\
                    garbage line\n";
        let sums = parse_checksums(text);
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[0].0, "FreeBSD-14.5-RELEASE-amd64-BASIC-CI.raw.xz");
        assert!(sums[0].1.starts_with("abcdef01"));
        assert_eq!(sums[1].0, "other.raw.xz");
    }

    #[test]
    fn manifest_lines() {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let text = format!(
            "base.txz\t{sha}\t12345\tbase\t\"Base system (MANDATORY)\"\ton\nsrc.txz\tnothex\t1\tsrc\t\"x\"\toff\n"
        );
        assert_eq!(parse_manifest(&text), vec![("base.txz".to_string(), sha.to_string())]);
    }

    #[test]
    fn image_definitions_in_the_repository_load() {
        let defs = all().unwrap();
        assert!(defs.len() >= 4, "{defs:?}");
        for d in &defs {
            assert!(d.image_dir.starts_with("https://download.freebsd.org/"), "{}", d.name);
            assert!(d.dist_dir.starts_with("https://download.freebsd.org/"), "{}", d.name);
            assert!(d.image_dir.contains(&d.release) && d.image_prefix.contains(&d.release), "{}", d.name);
        }
        for arch in crate::arch::Arch::ALL {
            assert!(defs.iter().any(|d| d.arch == arch && d.release.starts_with("14.")), "14.x {arch}");
            assert!(defs.iter().any(|d| d.arch == arch && d.release.starts_with("15.")), "15.x {arch}");
        }
    }
}
