//! Tools the targets need: QEMU and the agent built for each guest architecture. On Debian
//! and Ubuntu, as root, missing packages are installed; otherwise the error names the
//! command to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

fn repo() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn on_debian() -> bool {
    Path::new("/usr/bin/apt-get").exists() && Path::new("/etc/debian_version").exists()
}

static APT: Mutex<()> = Mutex::new(());

fn apt(args: &[&str]) -> Result<(), String> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("apt-get: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apt-get {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ))
    }
}

/// Installs Debian packages when allowed (root on Debian/Ubuntu), else explains how.
pub fn install(packages: &[&str], why: &str) -> Result<(), String> {
    let cmd = format!("apt-get install {}", packages.join(" "));
    if !is_root() || !on_debian() {
        return Err(format!("{why}: run `{cmd}`"));
    }
    let _g = APT.lock().unwrap_or_else(|p| p.into_inner());
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if apt(&args).is_ok() {
        return Ok(());
    }
    apt(&["update", "-q"])?;
    match apt(&args) {
        Ok(()) => Ok(()),
        Err(e) => {
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
            std::fs::write("/etc/apt/sources.list.d/addrsel-backports.list", list).map_err(|e| e.to_string())?;
            apt(&["update", "-q"])?;
            let target = format!("{codename}-backports");
            let mut bargs = vec!["install", "-y", "-q", "--no-install-recommends", "-t", target.as_str()];
            bargs.extend_from_slice(packages);
            apt(&bargs)
        }
    }
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
pub fn test_prerequisites() -> Result<Vec<String>, String> {
    let missing: Vec<(&str, &str)> = TEST_PREREQUISITES
        .iter()
        .copied()
        .filter(
            |(what, _)| if *what == "libclang" { !libclang_present() } else { crate::qemu::find_binary(what).is_err() },
        )
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

/// The QEMU binary, installing it when allowed.
pub fn qemu(binary: &str) -> Result<PathBuf, String> {
    if let Ok(p) = crate::qemu::find_binary(binary) {
        return Ok(p);
    }
    let pkgs: &[&str] = if binary.ends_with("x86_64") { &["qemu-system-x86"] } else { &["qemu-system-arm"] };
    install(pkgs, &format!("{binary} is not installed"))?;
    crate::qemu::find_binary(binary)
}

static BUILD: Mutex<()> = Mutex::new(());

fn cargo_build(
    cargo: &Path,
    rustc: Option<&Path>,
    target: Option<&str>,
    target_dir: &Path,
    envs: &[(&str, &str)],
) -> Result<(), String> {
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet", "--package", "addrsel-agent", "--target-dir"])
        .arg(target_dir)
        .current_dir(repo());
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    if let Some(r) = rustc {
        cmd.env("RUSTC", r);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.stdout(Stdio::null()).output().map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("building the agent failed:\n{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// The agent built for a Debian architecture (release profile: small and fast to boot).
pub fn agent_for(arch: &str) -> Result<PathBuf, String> {
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if arch == host {
        let dir = repo().join("target");
        cargo_build(&cargo, None, None, &dir, &[])?;
        return Ok(dir.join("release/addrsel-agent"));
    }
    if (host, arch) != ("amd64", "arm64") {
        return Err(format!("building the agent for {arch} on {host} is not supported"));
    }
    let triple = "aarch64-unknown-linux-gnu";
    let linker = ("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc");
    // 1. A rustup toolchain that has the target.
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let rustup_has =
        sysroot.as_ref().is_some_and(|s| Path::new(s).join("lib/rustlib").join(triple).join("lib").exists());
    if rustup_has && crate::qemu::find_binary("aarch64-linux-gnu-gcc").is_ok() {
        let dir = repo().join("target");
        cargo_build(&cargo, None, Some(triple), &dir, &[linker])?;
        return Ok(dir.join(triple).join("release/addrsel-agent"));
    }
    // 2. Debian's rustc-web with the arm64 standard library.
    let debian_ready = || {
        Path::new("/usr/bin/rustc").exists()
            && Path::new("/usr/lib/rustlib").join(triple).exists()
            && crate::qemu::find_binary("aarch64-linux-gnu-gcc").is_ok()
    };
    if !debian_ready() {
        if is_root() && on_debian() {
            let _g = APT.lock().unwrap_or_else(|p| p.into_inner());
            let out = Command::new("dpkg").args(["--add-architecture", "arm64"]).output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err("dpkg --add-architecture arm64 failed".into());
            }
            apt(&["update", "-q"])?;
            apt(&[
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "rustc-web",
                "cargo-web",
                "libstd-rust-web-dev:arm64",
                "gcc-aarch64-linux-gnu",
                "libc6-dev-arm64-cross",
            ])?;
        }
        if !debian_ready() {
            return Err(format!(
                "no Rust standard library for {triple}: `rustup target add {triple}` and `apt-get install gcc-aarch64-linux-gnu`, or on Debian: `dpkg --add-architecture arm64 && apt-get update && apt-get install rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu`"
            ));
        }
    }
    let dir = repo().join("target/debian-cross");
    let debian_cargo = if Path::new("/usr/bin/cargo").exists() { PathBuf::from("/usr/bin/cargo") } else { cargo };
    cargo_build(&debian_cargo, Some(Path::new("/usr/bin/rustc")), Some(triple), &dir, &[linker])?;
    Ok(dir.join(triple).join("release/addrsel-agent"))
}

/// A cargo invocation, as data (so it can be shown and tested without running it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CargoBuild {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The binary it produces.
    pub output: PathBuf,
}

/// How the agent is built for a FreeBSD release: linked by clang with ld.lld against the
/// release's own libraries (`sysroot`, from base.txz). x86_64-unknown-freebsd has a rustup
/// standard library; aarch64-unknown-freebsd is tier 3 and needs nightly with build-std.
pub fn freebsd_agent_build(def: &crate::freebsd_image::ImageDef, sysroot: &Path, target_dir: &Path) -> CargoBuild {
    let amd64 = def.arch == "amd64";
    let triple = if amd64 { "x86_64-unknown-freebsd" } else { "aarch64-unknown-freebsd" };
    let mut args: Vec<String> = if amd64 { vec![] } else { ["run", "nightly", "cargo"].map(String::from).into() };
    args.extend(
        ["build", "--release", "--quiet", "--package", "addrsel-agent", "--target", triple, "--target-dir"]
            .map(String::from),
    );
    args.push(target_dir.display().to_string());
    if !amd64 {
        args.push("-Zbuild-std=std,panic_abort".into());
    }
    let var = triple.to_uppercase().replace('-', "_");
    let rustflags = format!(
        "-C link-arg=--target={} -C link-arg=--sysroot={} -C link-arg=-fuse-ld=lld",
        crate::freebsd_kmod::clang_target(def),
        sysroot.display()
    );
    CargoBuild {
        program: if amd64 { "cargo".into() } else { "rustup".into() },
        args,
        env: vec![
            (format!("CARGO_TARGET_{var}_LINKER"), "clang".into()),
            (format!("CARGO_TARGET_{var}_RUSTFLAGS"), rustflags),
        ],
        output: target_dir.join(triple).join("release/addrsel-agent"),
    }
}

/// What is missing to build the FreeBSD agent, and how to get it.
pub fn freebsd_agent_missing(def: &crate::freebsd_image::ImageDef) -> Option<String> {
    let sysroot_of = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    if def.arch == "amd64" {
        let triple = "x86_64-unknown-freebsd";
        let has = sysroot_of(Command::new("rustc").args(["--print", "sysroot"]))
            .is_some_and(|s| s.join("lib/rustlib").join(triple).join("lib").exists());
        (!has).then(|| format!("no Rust standard library for {triple}: run `rustup target add {triple}`"))
    } else {
        let has = sysroot_of(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
            .is_some_and(|s| s.join("lib/rustlib/src/rust/library").exists());
        (!has).then(|| {
            "aarch64-unknown-freebsd is a tier-3 Rust target with no prebuilt standard library: run `rustup toolchain install nightly --component rust-src` (addrsel then builds it with -Zbuild-std)".into()
        })
    }
}

/// The agent built for a FreeBSD release (see [`freebsd_agent_build`]).
pub fn freebsd_agent(def: &crate::freebsd_image::ImageDef, sysroot: &Path) -> Result<PathBuf, String> {
    if let Some(why) = freebsd_agent_missing(def) {
        return Err(why);
    }
    for (tool, pkg) in [("clang", "clang"), ("ld.lld", "lld")] {
        if crate::qemu::find_binary(tool).is_err() {
            install(&[pkg], &format!("{tool} links the FreeBSD agent"))?;
        }
    }
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let b = freebsd_agent_build(def, sysroot, &repo().join("target/freebsd").join(&def.name));
    let out = Command::new(&b.program)
        .args(&b.args)
        .envs(b.env.iter().map(|(k, v)| (k, v)))
        .current_dir(repo())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", b.program))?;
    if !out.status.success() {
        return Err(format!("building the FreeBSD agent failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(b.output)
}
