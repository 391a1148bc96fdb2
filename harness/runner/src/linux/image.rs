//! Linux guest images: their definitions (`images/linux/*.toml`) and lock files, every
//! package pinned by version and sha256 from the release's signed index (made by
//! `linux::packages`, `cargo xtask image --update`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::arch::Arch;

/// `images/linux/<name>.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDef {
    pub name: String,
    pub description: String,
    /// The guest's architecture.
    pub arch: crate::arch::Arch,
    /// `(mirror URL, suite)` pairs, searched for the newest version of every package.
    pub suites: Vec<(String, String)>,
    /// Suites searched only for the kernel's packages (`linux-image-*` and, from 7.x, the
    /// `linux-binary-*`, `linux-modules-*`, `linux-base-*` it is split into; `linux-headers-*`,
    /// `linux-kbuild-*`, `linux-compiler-*`): experimental's kernel on sid's userland.
    #[serde(default)]
    pub kernel_suites: Vec<(String, String)>,
    /// Suites tried one at a time for the exact compiler the kernel was built with, when the
    /// image's own suites have moved past it (experimental's kernel built with testing's gcc).
    #[serde(default)]
    pub compiler_suites: Vec<(String, String)>,
    /// The kernel (meta)package.
    pub kernel: String,
    /// Userland packages; their shared-library dependencies are locked too.
    pub packages: Vec<String>,
    /// Kernel modules to load at boot (dependencies come from each module's .modinfo).
    pub modules: Vec<String>,
    /// Packages to build the test module against this kernel (headers, build scripts).
    #[serde(default)]
    pub kmod_build: Vec<String>,
    /// Kernel command line.
    pub cmdline: String,
    pub qemu: QemuDef,
    /// `--kernel`: a kernel of the user's choosing in place of the image's own.
    #[serde(skip)]
    pub custom: Option<std::sync::Arc<CustomKernel>>,
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
    pub results: crate::vm::qemu::Channel,
}

/// `images/linux/<name>.lock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub image: String,
    /// The architecture of the module build root: the build machine's ([`BUILD_ARCH`]) for
    /// native and cross builds, the image's when its compiler only exists natively and runs
    /// under user-mode emulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_root_arch: Option<Arch>,
    pub generated_from: Vec<LockedIndex>,
    pub package: Vec<LockedPackage>,
    /// The build machine's packages that build the test module for this kernel: the
    /// kernel's own compiler, make and a shell, and the kernel's build scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_root: Vec<LockedPackage>,
    /// qemu-user-static for the build machine, when the build root is emulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<LockedPackage>,
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
    crate::repo_root().join("images/linux")
}

/// An image definition; an error names the file (and, for TOML errors, the line).
pub fn load_image(path: &Path) -> anyhow::Result<ImageDef> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn lock_path(def: &ImageDef) -> PathBuf {
    images_dir().join(format!("{}.lock", def.name.trim_start_matches("linux-")))
}

pub fn load_lock(def: &ImageDef) -> anyhow::Result<Lock> {
    if let Some(custom) = &def.custom {
        return Ok(custom.lock.clone());
    }
    let path = lock_path(def);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (run `cargo xtask image --update` to create it)", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes the lock file of an image (`cargo xtask image --update`).
pub fn write_lock(def: &ImageDef, lock: &Lock) -> anyhow::Result<PathBuf> {
    let path = lock_path(def);
    let body = toml::to_string_pretty(lock)?;
    let text = format!(
        "# Generated by `cargo xtask image --update` from the signed Debian indexes listed below.\n# Do not edit: every download is checked against these sha256 sums.\n{body}"
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A kernel given on the command line, ready to stand in for an image's own.
#[derive(Debug)]
pub struct CustomKernel {
    /// What was given, for the report: each file with its sha256.
    pub origin: String,
    /// `uname -r` of the kernel.
    pub release: String,
    /// The kernel's files as one tree (`boot/` and `lib/modules/R`, or `usr/lib/modules/R`).
    pub root: PathBuf,
    /// The image's userland with this kernel's packages in place of its own (and the build
    /// root of whichever lock pins this kernel's compiler).
    pub lock: Lock,
    /// `--kernel-build DIR`: the test module is built against it with this machine's compiler.
    pub build_dir: Option<PathBuf>,
    /// Why no test module can be built for this kernel (it is then left out).
    pub no_module: Option<String>,
}
