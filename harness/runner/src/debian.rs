//! Debian packages for the Linux guests: image definitions (`images/linux/*.toml`), lock
//! files pinned from the release's signed index (`cargo xtask image --update`), and
//! verified, cached downloads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::fetch::{self, FetchError};

/// `images/linux/<name>.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDef {
    pub name: String,
    pub description: String,
    /// Debian architecture (amd64, arm64).
    pub arch: String,
    /// `(mirror URL, suite)` pairs, searched for the newest version of every package.
    pub suites: Vec<(String, String)>,
    /// The kernel (meta)package.
    pub kernel: String,
    /// Userland packages; their shared-library dependencies are locked too.
    pub packages: Vec<String>,
    /// Kernel modules to load at boot (dependencies are resolved from modules.dep).
    pub modules: Vec<String>,
    /// Kernel command line.
    pub cmdline: String,
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
    /// The serial console device name in the guest (ttyS0, ttyAMA0).
    pub console: String,
    /// How results come back: `serial` (ttyS1) or `virtio`.
    pub results: crate::qemu::Channel,
}

/// `images/linux/<name>.lock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub image: String,
    pub generated_from: Vec<LockedIndex>,
    pub package: Vec<LockedPackage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedIndex {
    pub url: String,
    /// sha256 of the InRelease file whose signature was verified.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
}

pub fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/linux")
}

pub fn load_image(path: &Path) -> Result<ImageDef, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn lock_path(def: &ImageDef) -> PathBuf {
    images_dir().join(format!("{}.lock", def.name.trim_start_matches("linux-")))
}

pub fn load_lock(def: &ImageDef) -> Result<Lock, String> {
    let path = lock_path(def);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run `cargo xtask image --update` to create it)", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Debian version comparison (dpkg's verrevcmp)

fn order(c: u8) -> i32 {
    if c.is_ascii_digit() {
        0
    } else if c.is_ascii_alphabetic() {
        i32::from(c)
    } else if c == b'~' {
        -1
    } else {
        i32::from(c) + 256
    }
}

fn verrevcmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = a.get(i).map_or(0, |&c| order(c));
            let bc = b.get(j).map_or(0, |&c| order(c));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = i32::from(a[i]) - i32::from(b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return std::cmp::Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return std::cmp::Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    std::cmp::Ordering::Equal
}

/// Compares Debian versions `[epoch:]upstream[-revision]` as dpkg does.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |v: &str| -> (u64, String, String) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u.to_string(), r.to_string()),
            None => (epoch, rest.to_string(), String::new()),
        }
    };
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb).then_with(|| verrevcmp(&ua, &ub)).then_with(|| verrevcmp(&ra, &rb))
}

// ---------------------------------------------------------------------------------------
// Signed index -> lock

#[derive(Clone, Debug)]
struct Stanza {
    fields: HashMap<String, String>,
    mirror: String,
}

impl Stanza {
    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
}

fn parse_stanzas(text: &str, mirror: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut fields = HashMap::new();
        let mut last: Option<String> = None;
        for line in block.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(k) = &last {
                    let v: &mut String = fields.entry(k.clone()).or_default();
                    v.push('\n');
                    v.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.to_string(), v.trim().to_string());
                last = Some(k.to_string());
            }
        }
        if fields.contains_key("Package") {
            out.push(Stanza { fields, mirror: mirror.to_string() });
        }
    }
    out
}

/// The signed part of a clearsigned InRelease, after `gpgv` verified it.
fn verified_inrelease(url: &str, keyring: &Path) -> Result<(String, String), String> {
    let bytes = fetch::get(url).map_err(|e| e.to_string())?;
    let sha = fetch::sha256_hex(&bytes);
    let tmp = std::env::temp_dir().join(format!("addrsel-inrelease-{}-{sha}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| e.to_string())?;
    let out = Command::new("gpgv").arg("--keyring").arg(keyring).arg(&tmp).output();
    let _ = std::fs::remove_file(&tmp);
    let out = out.map_err(|e| format!("cannot run gpgv (install the gpgv package): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{url}: the signature does not verify against {}:\n{}",
            keyring.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = text
        .split_once("\n\n")
        .and_then(|(_, rest)| rest.split_once("-----BEGIN PGP SIGNATURE-----"))
        .map(|(b, _)| b.lines().map(|l| l.strip_prefix("- ").unwrap_or(l)).collect::<Vec<_>>().join("\n"))
        .ok_or_else(|| format!("{url}: not a clearsigned InRelease file"))?;
    Ok((body, sha))
}

/// sha256 of `path` as listed in an InRelease's SHA256 section.
fn listed_sha256(inrelease: &str, path: &str) -> Option<String> {
    let section = inrelease.split("SHA256:").nth(1)?;
    section.lines().skip(1).take_while(|l| l.starts_with(' ')).find_map(|l| {
        let mut w = l.split_whitespace();
        let (sha, _size, p) = (w.next()?, w.next()?, w.next()?);
        (p == path).then(|| sha.to_string())
    })
}

fn decompress_xz(data: &[u8]) -> Result<String, String> {
    let mut out = String::new();
    std::io::Read::read_to_string(&mut xz2::read::XzDecoder::new(data), &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The Debian archive keyring that signs the releases.
pub fn keyring() -> Result<PathBuf, String> {
    let p = PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg");
    if p.exists() {
        Ok(p)
    } else {
        Err("the Debian archive keyring is missing (install debian-archive-keyring)".into())
    }
}

/// Resolves the image's packages and their shared-library dependencies to the newest
/// versions in its suites, from indexes whose signatures were verified.
pub fn resolve_lock(def: &ImageDef, progress: &dyn Fn(&str)) -> Result<Lock, String> {
    let keyring = keyring()?;
    let mut indexes = Vec::new();
    let mut all: HashMap<String, Vec<Stanza>> = HashMap::new();
    for (mirror, suite) in &def.suites {
        let url = format!("{mirror}/dists/{suite}/InRelease");
        progress(&format!("verifying {url}"));
        let (inrelease, sha) = verified_inrelease(&url, &keyring)?;
        indexes.push(LockedIndex { url: url.clone(), sha256: sha });
        let rel = format!("main/binary-{}/Packages.xz", def.arch);
        let want = listed_sha256(&inrelease, &rel).ok_or_else(|| format!("{url} does not list {rel}"))?;
        let purl = format!("{mirror}/dists/{suite}/{rel}");
        progress(&format!("reading {purl}"));
        let packed = fetch::get(&purl).map_err(|e| e.to_string())?;
        let got = fetch::sha256_hex(&packed);
        if got != want {
            return Err(format!("{purl}: sha256 {got} is not the {want} the signed InRelease lists"));
        }
        for st in parse_stanzas(&decompress_xz(&packed)?, mirror) {
            all.entry(st.get("Package").to_string()).or_default().push(st);
        }
    }
    let newest = |name: &str| -> Option<&Stanza> {
        all.get(name)?.iter().max_by(|a, b| version_cmp(a.get("Version"), b.get("Version")))
    };
    let mut chosen: BTreeMap<String, &Stanza> = BTreeMap::new();
    let mut queue: Vec<String> = std::iter::once(def.kernel.clone()).chain(def.packages.iter().cloned()).collect();
    while let Some(name) = queue.pop() {
        if chosen.contains_key(&name) {
            continue;
        }
        let st = newest(&name).ok_or_else(|| format!("package {name} is not in {:?}", def.suites))?;
        chosen.insert(name.clone(), st);
        let deps = format!("{}, {}", st.get("Pre-Depends"), st.get("Depends"));
        for group in deps.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            // The first alternative that is a real package; shared libraries (lib*, zlib1g,
            // gcc-*-base) and the kernel image only: scripts and tools are not needed in the
            // initramfs, and the ELF dependencies are checked when it is built.
            let pick = group
                .split('|')
                .map(|alt| alt.split_whitespace().next().unwrap_or("").split(':').next().unwrap_or("").to_string())
                .find(|n| newest(n).is_some());
            if let Some(n) = pick {
                let wanted =
                    n.starts_with("lib") || n.starts_with("gcc-") || n == "zlib1g" || n.starts_with("linux-image-");
                if wanted && !chosen.contains_key(&n) {
                    queue.push(n);
                }
            }
        }
    }
    let package = chosen
        .values()
        .map(|st| LockedPackage {
            name: st.get("Package").to_string(),
            version: st.get("Version").to_string(),
            url: format!("{}/{}", st.mirror, st.get("Filename")),
            sha256: st.get("SHA256").to_string(),
            size: st.get("Size").parse().unwrap_or(0),
        })
        .collect();
    Ok(Lock { image: def.name.clone(), generated_from: indexes, package })
}

pub fn write_lock(def: &ImageDef, lock: &Lock) -> Result<PathBuf, String> {
    let path = lock_path(def);
    let body = toml::to_string_pretty(lock).map_err(|e| e.to_string())?;
    let text = format!(
        "# Generated by `cargo xtask image --update` from the signed Debian indexes listed below.\n# Do not edit: every download is checked against these sha256 sums.\n{body}"
    );
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Every package of the lock as a verified file in the cache.
pub fn fetch_packages(lock: &Lock, progress: &dyn Fn(&str)) -> Result<Vec<(LockedPackage, PathBuf)>, FetchError> {
    let dir = fetch::cache_dir().join("debian");
    let mut out = Vec::new();
    for p in &lock.package {
        let name = format!("{}.deb", p.sha256);
        let notify = |why: &str| progress(&format!("{} {} ({} kB): {why}", p.name, p.version, p.size / 1024));
        out.push((p.clone(), fetch::fetch_verified(&p.url, &p.sha256, &dir, &name, &notify)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering::*;

    use super::*;

    #[test]
    fn dpkg_version_order() {
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("2.36-9+deb12u13", "2.36-9+deb12u9", Greater),
            ("1:1.0", "2.0", Greater),
            ("6.12.95-1~bpo12+1", "6.1.192-2", Greater),
            ("6.1.192-2", "6.1.176-1", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0-1", "1.0", Greater),
        ] {
            assert_eq!(version_cmp(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn stanzas_and_inrelease_listing() {
        let st = parse_stanzas("Package: a\nVersion: 1\nDepends: b (>= 1), c | d\n\nPackage: b\nVersion: 2\n", "m");
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].get("Depends"), "b (>= 1), c | d");
        let rel =
            "Origin: Debian\nSHA256:\n 00aa 123 main/binary-amd64/Packages\n 11bb 45 main/binary-amd64/Packages.xz\n";
        assert_eq!(listed_sha256(rel, "main/binary-amd64/Packages.xz").as_deref(), Some("11bb"));
        assert_eq!(listed_sha256(rel, "main/binary-arm64/Packages.xz"), None);
    }
}
