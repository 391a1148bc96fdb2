//! Every known target, whether it can run here, and how to run it.

use std::path::Path;
use std::time::Duration;

use addrsel_model::Os;

use crate::corpus::Loaded;
use crate::target::{Progress, TargetRun};

#[derive(Clone, Debug)]
pub enum Kind {
    /// The running kernel, in namespaces.
    Host,
    /// A Debian guest under QEMU.
    LinuxVm(Box<crate::debian::ImageDef>),
    /// A FreeBSD BASIC-CI guest under QEMU.
    FreebsdVm(Box<crate::freebsd_image::ImageDef>),
}

#[derive(Clone, Debug)]
pub struct TargetDef {
    pub name: String,
    pub os: Os,
    pub description: String,
    pub kind: Kind,
}

/// Every target addrsel knows, in report order. An image definition that does not load is
/// an error naming its file and line.
pub fn all() -> anyhow::Result<Vec<TargetDef>> {
    let mut out = vec![TargetDef {
        name: "host".into(),
        os: Os::Linux,
        description: "this machine's Linux kernel and glibc, each scenario in fresh namespaces".into(),
        kind: Kind::Host,
    }];
    let dir = crate::debian::images_dir();
    let mut images: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    images.sort();
    for p in images {
        let def = crate::debian::load_image(&p).map_err(anyhow::Error::msg)?;
        out.push(TargetDef {
            name: def.name.clone(),
            os: Os::Linux,
            description: def.description.clone(),
            kind: Kind::LinuxVm(Box::new(def)),
        });
    }
    for def in crate::freebsd_image::all().map_err(anyhow::Error::msg)? {
        out.push(TargetDef {
            name: def.name.clone(),
            os: Os::Freebsd,
            description: def.description.clone(),
            kind: Kind::FreebsdVm(Box::new(def)),
        });
    }
    Ok(out)
}

/// Whether a target can run on this machine, and why not.
pub fn availability(t: &TargetDef) -> Result<String, String> {
    match &t.kind {
        Kind::Host => {
            if std::env::consts::OS != "linux" {
                return Err(format!("the host target needs Linux (this is {})", std::env::consts::OS));
            }
            let agent = crate::host::build_agent()?;
            crate::host::check(&agent)
        }
        Kind::LinuxVm(def) => {
            crate::qemu::find_binary(&def.qemu.binary)
                .or_else(|e| if unsafe_is_root() { Ok(std::path::PathBuf::new()) } else { Err(e) })?;
            let lock = crate::debian::load_lock(def.as_ref())?;
            let cache = crate::fetch::cache_dir().join("debian");
            let missing: u64 =
                lock.package.iter().filter(|p| !cache.join(format!("{}.deb", p.sha256)).exists()).map(|p| p.size).sum();
            let kernel = lock
                .package
                .iter()
                .find(|p| p.name.starts_with("linux-image-") && p.name != def.kernel)
                .map_or("?".into(), |p| p.version.clone());
            Ok(if missing == 0 {
                format!("kernel {kernel}, packages cached")
            } else {
                format!("kernel {kernel}, will download and verify {} MB", missing.div_ceil(1 << 20))
            })
        }
        Kind::FreebsdVm(def) => {
            // What a run needs first: the pinned image, and the site to fetch it from.
            let lock = match crate::freebsd_image::load_lock(def)? {
                Some(l) => l,
                None => {
                    let url = crate::freebsd_image::effective_url(&format!("{}/CHECKSUM.SHA256", def.image_dir));
                    crate::fetch::get(&url).map_err(|e| e.to_string())?;
                    return Ok(format!("{} reachable; the first run pins its checksums", def.image_dir));
                }
            };
            let cached = crate::fetch::cache_dir().join("freebsd").join(format!("{}.raw", &lock.disk.sha256[..16]));
            if cached.exists() {
                Ok(format!("{} cached", lock.disk.name))
            } else {
                crate::fetch::head(&crate::freebsd_image::effective_url(&lock.disk.url)).map_err(|e| e.to_string())?;
                Ok(format!("will download and verify {}", lock.disk.name))
            }
        }
    }
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a target; `kmod`: also load the test kernel module where the target takes one.
pub fn run(
    t: &TargetDef,
    scenarios: &[Loaded],
    dir: &Path,
    deadline: Duration,
    kmod: bool,
    progress: &Progress,
) -> TargetRun {
    match &t.kind {
        Kind::Host => crate::host::run(scenarios, dir, deadline, progress),
        Kind::LinuxVm(def) => crate::linux_vm::run(def.as_ref(), scenarios, dir, deadline, kmod, progress),
        Kind::FreebsdVm(def) => crate::freebsd_vm::run(def.as_ref(), scenarios, dir, deadline, kmod, progress),
    }
}
