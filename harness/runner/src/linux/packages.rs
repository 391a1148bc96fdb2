//! Debian packages: dpkg's version order, the release's package indexes read only after
//! gpgv verified the InRelease that lists them, resolving an image's packages (and the
//! module build root: the kernel's own compiler) into a lock, and verified downloads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::arch::Arch;
use crate::cache;
use crate::linux::compiler::{Toolchain, cc_version_text, same_debian_gcc};
use crate::linux::image::{ImageDef, Lock, LockedIndex, LockedPackage};

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
    /// From one of the image's `kernel_suites`: a candidate only for the kernel's packages.
    kernel_only: bool,
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
            out.push(Stanza { fields, mirror: mirror.to_string(), kernel_only: false });
        }
    }
    out
}

/// The signed part of a clearsigned InRelease, after `gpgv` verified it.
fn verified_inrelease(url: &str, keyring: &Path) -> anyhow::Result<(String, String)> {
    let bytes = cache::get(url)?;
    let sha = cache::sha256_hex(&bytes);
    let tmp = std::env::temp_dir().join(format!("addrsel-inrelease-{}-{sha}", std::process::id()));
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    let out = Command::new("gpgv").arg("--keyring").arg(keyring).arg(&tmp).output();
    let _ = std::fs::remove_file(&tmp);
    let out = out.context("cannot run gpgv (install the gpgv package)")?;
    if !out.status.success() {
        bail!(
            "{url}: the signature does not verify against {}:\n{}",
            keyring.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = text
        .split_once("\n\n")
        .and_then(|(_, rest)| rest.split_once("-----BEGIN PGP SIGNATURE-----"))
        .map(|(b, _)| b.lines().map(|l| l.strip_prefix("- ").unwrap_or(l)).collect::<Vec<_>>().join("\n"))
        .with_context(|| format!("{url}: not a clearsigned InRelease file"))?;
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

fn decompress_xz(data: &[u8]) -> anyhow::Result<String> {
    let mut out = String::new();
    std::io::Read::read_to_string(&mut xz2::read::XzDecoder::new(data), &mut out)?;
    Ok(out)
}

/// The Debian archive keyring that signs the releases.
pub fn keyring() -> anyhow::Result<PathBuf> {
    let p = PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg");
    if p.exists() {
        Ok(p)
    } else {
        Err(anyhow::anyhow!("the Debian archive keyring is missing (install debian-archive-keyring)"))
    }
}

/// The packages of some suites for one architecture, from indexes whose signatures were
/// verified: every version of every package, and who provides which virtual package.
struct Index {
    packages: HashMap<String, Vec<Stanza>>,
    provides: HashMap<String, Vec<String>>,
}

impl Index {
    fn load(
        suites: &[(String, String)],
        kernel_suites: &[(String, String)],
        arch: Arch,
        keyring: &Path,
        indexes: &mut Vec<LockedIndex>,
        progress: &dyn Fn(&str),
    ) -> anyhow::Result<Index> {
        let mut packages: HashMap<String, Vec<Stanza>> = HashMap::new();
        let tagged = suites.iter().map(|s| (s, false)).chain(kernel_suites.iter().map(|s| (s, true)));
        for ((mirror, suite), kernel_only) in tagged {
            let url = format!("{mirror}/dists/{suite}/InRelease");
            progress(&format!("verifying {url}"));
            let (inrelease, sha) = verified_inrelease(&url, keyring)?;
            if !indexes.iter().any(|i| i.url == url) {
                indexes.push(LockedIndex { url: url.clone(), sha256: sha });
            }
            let rel = format!("main/binary-{arch}/Packages.xz");
            let want = listed_sha256(&inrelease, &rel).with_context(|| format!("{url} does not list {rel}"))?;
            let purl = format!("{mirror}/dists/{suite}/{rel}");
            progress(&format!("reading {purl}"));
            let packed = cache::get(&purl)?;
            let got = cache::sha256_hex(&packed);
            if got != want {
                anyhow::bail!("{purl}: sha256 {got} is not the {want} the signed InRelease lists");
            }
            for mut st in parse_stanzas(&decompress_xz(&packed)?, mirror) {
                st.kernel_only = kernel_only;
                packages.entry(st.get("Package").to_string()).or_default().push(st);
            }
        }
        let mut provides: HashMap<String, Vec<String>> = HashMap::new();
        for (name, versions) in &packages {
            for st in versions {
                for p in st.get("Provides").split(',').filter_map(|p| p.split_whitespace().next()) {
                    provides.entry(p.to_string()).or_default().push(name.clone());
                }
            }
        }
        for v in provides.values_mut() {
            v.sort();
            v.dedup();
        }
        Ok(Index { packages, provides })
    }

    fn newest(&self, name: &str) -> Option<&Stanza> {
        let candidate = |st: &&Stanza| !st.kernel_only || is_kernel_package(name);
        self.packages.get(name)?.iter().filter(candidate).max_by(|a, b| version_cmp(a.get("Version"), b.get("Version")))
    }

    /// The real package that satisfies `name`: itself, or its only provider.
    fn real(&self, name: &str) -> Option<&str> {
        if let Some((k, _)) = self.packages.get_key_value(name) {
            return Some(k);
        }
        match self.provides.get(name).map(Vec::as_slice) {
            Some([only]) => Some(only),
            _ => None,
        }
    }

    /// `roots` and the dependencies `follow` accepts, transitively, newest versions.
    fn closure(&self, roots: &[String], follow: &dyn Fn(&str) -> bool, what: &str) -> anyhow::Result<Vec<&Stanza>> {
        let mut chosen: BTreeMap<String, &Stanza> = BTreeMap::new();
        let mut queue: Vec<String> = roots.to_vec();
        while let Some(name) = queue.pop() {
            if chosen.contains_key(&name) {
                continue;
            }
            let st = self.newest(&name).with_context(|| format!("package {name} is not in the {what} index"))?;
            chosen.insert(name.clone(), st);
            let deps = format!("{}, {}", st.get("Pre-Depends"), st.get("Depends"));
            for group in deps.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                let alternatives: Vec<&str> = group
                    .split('|')
                    .map(|alt| alt.split_whitespace().next().unwrap_or("").split(':').next().unwrap_or(""))
                    .collect();
                // Already satisfied by a chosen package, else the first alternative that exists.
                if alternatives.iter().any(|a| self.real(a).is_some_and(|r| chosen.contains_key(r))) {
                    continue;
                }
                if let Some(n) = alternatives.iter().find_map(|a| self.real(a)).filter(|n| follow(n)) {
                    queue.push(n.to_string());
                }
            }
        }
        Ok(chosen.into_values().collect())
    }
}

/// The packages a `kernel_suites` suite may supply: the kernel, its headers and build scripts.
fn is_kernel_package(name: &str) -> bool {
    [
        "linux-image-",
        "linux-binary-",
        "linux-modules-",
        "linux-base-",
        "linux-headers-",
        "linux-kbuild-",
        "linux-compiler-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn locked(st: &Stanza) -> LockedPackage {
    LockedPackage {
        name: st.get("Package").to_string(),
        version: st.get("Version").to_string(),
        url: format!("{}/{}", st.mirror, st.get("Filename")),
        sha256: st.get("SHA256").to_string(),
        size: st.get("Size").parse().unwrap_or(0),
    }
}

/// Dependencies worth following into the guest: shared libraries (lib*, zlib1g, gcc-N-base),
/// the kernel image and its headers. Scripts and tools are not needed; the ELF dependencies
/// of what goes into the initramfs are checked when it is built.
fn followed_into_guest(name: &str) -> bool {
    name.starts_with("lib")
        || (name.starts_with("gcc-") && name.ends_with("-base"))
        || name == "zlib1g"
        || ["linux-image-", "linux-binary-", "linux-modules-", "linux-base-"].iter().any(|p| name.starts_with(p))
        || name.starts_with("linux-headers-")
}

/// The architecture of the machines that build test modules (the build root's packages).
pub const BUILD_ARCH: Arch = Arch::Amd64;

/// Resolves the image's packages and their dependencies to the newest versions in its
/// suites, from indexes whose signatures were verified. With `kmod_build`, also the build
/// root for the test module: the compiler the kernel was built with (read from the kernel's
/// own config), make, a shell and the kernel's build scripts, for the build machine.
pub fn resolve_lock(def: &ImageDef, progress: &dyn Fn(&str)) -> anyhow::Result<Lock> {
    let keyring = keyring()?;
    let mut indexes = Vec::new();
    let image_index = Index::load(&def.suites, &def.kernel_suites, def.arch, &keyring, &mut indexes, progress)?;
    let roots: Vec<String> = std::iter::once(def.kernel.clone())
        .chain(def.packages.iter().cloned())
        .chain(def.kmod_build.iter().cloned())
        .collect();
    let image = image_index.closure(&roots, &followed_into_guest, def.arch.as_str())?;
    let package: Vec<LockedPackage> = image.iter().map(|st| locked(st)).collect();
    let mut lock = Lock {
        image: def.name.clone(),
        build_root_arch: None,
        generated_from: vec![],
        package,
        build_root: vec![],
        emulator: None,
    };
    if !def.kmod_build.is_empty() {
        let kbuild = image
            .iter()
            .flat_map(|st| st.get("Depends").split(','))
            .filter_map(|d| d.split_whitespace().next())
            .find(|d| d.starts_with("linux-kbuild-"))
            .context("the kernel headers do not depend on a linux-kbuild package")?
            .to_string();
        let config = kernel_config(def, &lock.package, progress)?;
        let cc = cc_version_text(&config).context("the kernel config has no CONFIG_CC_VERSION_TEXT")?;
        // The kernel's exact compiler: natively or cross on the build machine from the image's
        // suites, then from each of `compiler_suites` (a moving suite may have passed it), and
        // last natively for the image's architecture under user-mode emulation.
        let candidates: Vec<Vec<(String, String)>> =
            std::iter::once(def.suites.clone()).chain(def.compiler_suites.iter().map(|s| vec![s.clone()])).collect();
        let mut root_arches = vec![BUILD_ARCH];
        if def.arch != BUILD_ARCH {
            root_arches.push(def.arch);
        }
        let mut tried = Vec::new();
        let mut found = None;
        'search: for &root_arch in &root_arches {
            for suites in &candidates {
                let index = Index::load(suites, &def.kernel_suites, root_arch, &keyring, &mut indexes, progress)?;
                let toolchain = Toolchain::for_kernel(&cc, def.arch, root_arch)?;
                let version = index.newest(&toolchain.compiler_package).map(|st| st.get("Version").to_string());
                let clang = cc.contains("clang version");
                if version.is_some() && (clang || version.as_deref().is_some_and(|v| same_debian_gcc(&cc, v))) {
                    found = Some((root_arch, toolchain, index));
                    break 'search;
                }
                let names: Vec<&str> = suites.iter().map(|(_, s)| s.as_str()).collect();
                tried.push(format!(
                    "{} {} in {} ({root_arch})",
                    toolchain.compiler_package,
                    version.as_deref().unwrap_or("missing"),
                    names.join("+")
                ));
            }
        }
        let (root_arch, toolchain, index) = found.with_context(|| {
            format!("no suite has the kernel's compiler `{cc}`: {} (add a suite to compiler_suites)", tried.join("; "))
        })?;
        if !tried.is_empty() {
            progress(&format!("not the kernel's `{cc}`: {}", tried.join("; ")));
        }
        if root_arch != BUILD_ARCH {
            progress(&format!("the build root is {root_arch} packages under user-mode emulation"));
            let build_index = Index::load(&def.suites, &[], BUILD_ARCH, &keyring, &mut indexes, progress)?;
            // qemu-user has carried the static binaries since 9.1 (qemu-user-static before).
            let emulator = ["qemu-user-static", "qemu-user"]
                .iter()
                .find_map(|n| build_index.newest(n))
                .context("neither qemu-user-static nor qemu-user is in the index")?;
            lock.emulator = Some(locked(emulator));
        }
        progress(&format!("the kernel was built with `{cc}`: locking {} ({root_arch})", toolchain.packages.join(", ")));
        let roots: Vec<String> = toolchain.packages.iter().cloned().chain([kbuild]).collect();
        lock.build_root = index.closure(&roots, &|_| true, root_arch.as_str())?.iter().map(|st| locked(st)).collect();
        lock.build_root_arch = Some(root_arch);
    }
    lock.generated_from = indexes;
    Ok(lock)
}

/// The kernel's build configuration, from its packages (downloaded and verified).
fn kernel_config(def: &ImageDef, package: &[LockedPackage], progress: &dyn Fn(&str)) -> anyhow::Result<String> {
    let kernel: Vec<LockedPackage> =
        package.iter().filter(|p| crate::linux::kernel::is_kernel_file_package(def, &p.name)).cloned().collect();
    let root = kernel_tree(&def.name, &kernel, progress)?;
    let files = crate::linux::kernel::KernelFiles::find(&root)?;
    std::fs::read_to_string(&files.config).with_context(|| format!("cannot read {}", files.config.display()))
}

/// A kernel's packages unpacked into one tree (cached as `kernel-root/LABEL-KEY`, keyed by
/// their checksums).
pub fn kernel_tree(label: &str, packages: &[LockedPackage], progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let key = cache::sha256_hex(packages.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>().join(",").as_bytes());
    let root = cache::cache_dir().join("kernel-root").join(format!("{label}-{}", &key[..16]));
    if root.exists() {
        return Ok(root);
    }
    let debs = fetch_packages(packages, progress)?;
    cache::publish(&root, |partial| {
        for (p, deb) in &debs {
            let tree = crate::linux::deb::unpack(deb, &p.sha256, &cache::cache_dir().join("unpacked"))?;
            crate::linux::deb::link_tree(&tree, partial)
                .with_context(|| format!("cannot link {} into {}", p.name, partial.display()))?;
        }
        Ok(())
    })?;
    Ok(root)
}

/// These packages as verified files in the cache.
pub fn fetch_packages(
    packages: &[LockedPackage],
    progress: &dyn Fn(&str),
) -> Result<Vec<(LockedPackage, PathBuf)>, cache::FetchError> {
    let dir = cache::cache_dir().join("debian");
    let mut out = Vec::new();
    for p in packages {
        let name = format!("{}.deb", p.sha256);
        let notify = |why: &str| progress(&format!("{} {} ({} kB): {why}", p.name, p.version, p.size / 1024));
        out.push((p.clone(), cache::fetch_verified(&p.url, &p.sha256, &dir, &name, &notify)?));
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
