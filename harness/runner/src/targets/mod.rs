//! Every known target, whether it can run here, and how to run it.

pub mod host;
pub mod run;

use addrsel_model::Os;
use run::{RunContext, TargetRun};

#[derive(Clone, Debug)]
pub enum Kind {
    /// The running kernel, in namespaces.
    Host,
    /// A Debian guest under QEMU.
    LinuxVm(Box<crate::linux::image::ImageDef>),
    /// A FreeBSD BASIC-CI guest under QEMU.
    FreebsdVm(Box<crate::freebsd::image::ImageDef>),
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
        os: host::os(),
        description: if host::os() == Os::Freebsd {
            "this machine's FreeBSD kernel and libc, each scenario in a fresh VNET jail".into()
        } else {
            "this machine's Linux kernel and glibc, each scenario in fresh namespaces".into()
        },
        kind: Kind::Host,
    }];
    let dir = crate::linux::image::images_dir();
    let mut images: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    images.sort();
    for p in images {
        let def = crate::linux::image::load_image(&p).map_err(anyhow::Error::msg)?;
        out.push(TargetDef {
            name: def.name.clone(),
            os: Os::Linux,
            description: def.description.clone(),
            kind: Kind::LinuxVm(Box::new(def)),
        });
    }
    for def in crate::freebsd::image::all().map_err(anyhow::Error::msg)? {
        out.push(TargetDef {
            name: def.name.clone(),
            os: Os::Freebsd,
            description: def.description.clone(),
            kind: Kind::FreebsdVm(Box::new(def)),
        });
    }
    Ok(out)
}

/// A Linux VM target with `--kernel PATH [--kernel-build DIR]` in place of its image's own
/// kernel: named after what it runs (`linux-trixie-amd64+7.3-cloud-amd64`), so its snapshots
/// are its own; refused before any boot when the kernel lacks what the guest needs.
pub fn with_kernel(
    t: &TargetDef,
    kernel: &std::path::Path,
    build_dir: Option<&std::path::Path>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<TargetDef> {
    let Kind::LinuxVm(def) = &t.kind else {
        anyhow::bail!("--kernel replaces a Linux VM's kernel; `{}` is not a Linux VM target", t.name);
    };
    let custom = crate::linux::custom_kernel::prepare(def, kernel, build_dir, progress)?;
    let mut def = (**def).clone();
    def.name = format!("{}+{}", def.name, custom.release);
    def.description = format!("{} with the kernel {} from {}", def.description, custom.release, custom.origin);
    // A kernel without the VRF driver still runs everything else (VRF probes are then
    // reported unsupported by the agent).
    let files = crate::linux::kernel::KernelFiles::find(&custom.root)?;
    def.modules.retain(|m| m != "vrf" || crate::linux::initramfs::has_module(&files.modules_dir, m));
    def.custom = Some(std::sync::Arc::new(custom));
    // Under TCG an image's kernel runs on the CPU model it was measured on (qemu64); a kernel
    // of unknown origin gets every feature TCG has: bookworm-backports' 6.12.95 double-faults
    // in SLUB's cmpxchg16b path on qemu64, which lacks CX16 (seen here).
    def.qemu.cpu = "max".into();
    Ok(TargetDef {
        name: def.name.clone(),
        os: Os::Linux,
        description: def.description.clone(),
        kind: Kind::LinuxVm(Box::new(def)),
    })
}

/// Whether a target can run on this machine: how it will run, or why it cannot.
pub fn availability(t: &TargetDef) -> anyhow::Result<String> {
    match &t.kind {
        Kind::Host => {
            if !["linux", "freebsd"].contains(&std::env::consts::OS) {
                anyhow::bail!("the host target needs Linux or FreeBSD (this is {})", std::env::consts::OS);
            }
            let agent = crate::agent_build::for_host()?;
            host::check(&agent)
        }
        Kind::LinuxVm(def) => {
            let (qemu, package) = def.arch.qemu();
            if crate::tools::find_program(qemu).is_err() && !crate::tools::is_root() {
                anyhow::bail!("{qemu} is not installed (apt-get install {package})");
            }
            let lock = crate::linux::image::load_lock(def.as_ref())?;
            let cache = crate::cache::cache_dir().join("debian");
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
            let lock = match crate::freebsd::image::load_lock(def)? {
                Some(l) => l,
                None => {
                    let url = crate::freebsd::image::effective_url(&format!("{}/CHECKSUM.SHA256", def.image_dir));
                    crate::cache::get(&url)?;
                    return Ok(format!("{} reachable; the first run pins its checksums", def.image_dir));
                }
            };
            let cached = crate::cache::cache_dir().join("freebsd").join(format!("{}.raw", &lock.disk.sha256[..16]));
            if cached.exists() {
                Ok(format!("{} cached", lock.disk.name))
            } else {
                crate::cache::head(&crate::freebsd::image::effective_url(&lock.disk.url))?;
                Ok(format!("will download and verify {}", lock.disk.name))
            }
        }
    }
}

/// Runs a target.
pub fn run(t: &TargetDef, ctx: &RunContext) -> TargetRun {
    match &t.kind {
        Kind::Host => host::run(ctx),
        Kind::LinuxVm(def) => crate::linux::vm::run(def.as_ref(), ctx),
        Kind::FreebsdVm(def) => crate::freebsd::vm::run(def.as_ref(), ctx),
    }
}
