//! The agent, built for the target it runs on: this machine (debug, for the host target),
//! a Linux guest's architecture (release: small and fast to boot; arm64 cross-built with
//! rustup's standard library or Debian's), or a FreeBSD release (clang and ld.lld against
//! its base.txz). Each is built once per run and architecture.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context as _, bail};

use crate::arch::Arch;
use crate::tools;

fn cargo() -> PathBuf {
    PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Cargo's target directory for this workspace.
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| crate::repo_root().join("target"))
}

/// Builds the agent for the machine this runs on and returns its path.
pub fn for_host() -> anyhow::Result<PathBuf> {
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let build = CargoBuild {
        program: cargo().display().to_string(),
        args: ["build", "--quiet", "--package", "addrsel-agent"].map(String::from).into(),
        env: vec![],
        output: target_dir().join("debug/addrsel-agent"),
    };
    build.run()
}

/// One build at a time: concurrent cargo runs on the same target directory only wait for
/// each other's lock.
static BUILD: Mutex<()> = Mutex::new(());

/// A cargo invocation, as data (so it can be shown and tested without running it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CargoBuild {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The binary it produces.
    pub output: PathBuf,
}

impl CargoBuild {
    fn run(&self) -> anyhow::Result<PathBuf> {
        let out = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(crate::repo_root())
            .stdout(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.program))?;
        if !out.status.success() {
            bail!(
                "building the agent failed (`{} {}`):\n{}",
                self.program,
                self.args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !self.output.exists() {
            bail!("the agent was built but {} is missing", self.output.display());
        }
        Ok(self.output.clone())
    }
}

fn release_build(
    target: Option<&str>,
    target_dir: &Path,
    rustc: Option<&Path>,
    linker: Option<(&str, &str)>,
    link_args: &[String],
) -> CargoBuild {
    let mut args: Vec<String> =
        ["build", "--release", "--quiet", "--package", "addrsel-agent", "--target-dir"].map(String::from).into();
    args.push(target_dir.display().to_string());
    if let Some(t) = target {
        args.extend(["--target".into(), t.into()]);
    }
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(r) = rustc {
        env.push(("RUSTC".into(), r.display().to_string()));
    }
    if let Some((k, v)) = linker {
        env.push((k.into(), v.into()));
    }
    if !link_args.is_empty() {
        // With --target these reach only the agent, not build scripts (which run here).
        let flags: Vec<String> = link_args.iter().map(|a| format!("-Clink-arg={a}")).collect();
        env.push(("CARGO_ENCODED_RUSTFLAGS".into(), flags.join("\x1f")));
    }
    let output = match target {
        Some(t) => target_dir.join(t).join("release/addrsel-agent"),
        None => target_dir.join("release/addrsel-agent"),
    };
    let program = if rustc.is_some() && Path::new("/usr/bin/cargo").exists() {
        "/usr/bin/cargo".to_string()
    } else {
        cargo().display().to_string()
    };
    CargoBuild { program, args, env, output }
}

/// The agent for a Linux guest of `arch` (release profile: small and fast to boot).
pub fn for_linux(arch: Arch, log: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let host = Arch::host().context("the agent can be built on amd64 and arm64 machines only")?;
    // One agent per architecture, linked against the oldest glibc of that architecture's
    // images (bullseye's 2.31): it then runs on every guest's glibc, old and new.
    let link_args = match crate::linux::sysroot::oldest_glibc(arch)? {
        Some((def, lock, _)) => match crate::linux::sysroot::for_image(&def, &lock, log)? {
            Some(sysroot) => crate::linux::sysroot::gcc_flags(&sysroot, arch),
            None => vec![],
        },
        None => vec![],
    };
    if arch == host {
        let triple = arch.rust_linux();
        return release_build(Some(triple), &target_dir().join("agent-linux"), None, None, &link_args).run();
    }
    if (host, arch) != (Arch::Amd64, Arch::Arm64) {
        bail!("building the agent for {arch} on {host} is not supported");
    }
    let triple = arch.rust_linux();
    let linker = ("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc");
    // 1. A rustup toolchain that has the target.
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let rustup_has = sysroot.is_some_and(|s| s.join("lib/rustlib").join(triple).join("lib").exists());
    if rustup_has && tools::find_program("aarch64-linux-gnu-gcc").is_ok() {
        return release_build(Some(triple), &target_dir().join("agent-linux"), None, Some(linker), &link_args).run();
    }
    // 2. Debian's rustc-web with the arm64 standard library.
    let debian_ready = || {
        Path::new("/usr/bin/rustc").exists()
            && Path::new("/usr/lib/rustlib").join(triple).exists()
            && tools::find_program("aarch64-linux-gnu-gcc").is_ok()
    };
    if !debian_ready() {
        let packages =
            ["rustc-web", "cargo-web", "libstd-rust-web-dev:arm64", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];
        tools::install_foreign(
            arch,
            &packages,
            &format!(
                "no Rust standard library for {triple} (or `rustup target add {triple}` with gcc-aarch64-linux-gnu)"
            ),
        )?;
        if !debian_ready() {
            bail!("no Rust standard library for {triple} after installing {}", packages.join(" "));
        }
    }
    release_build(
        Some(triple),
        &target_dir().join("debian-cross"),
        Some(Path::new("/usr/bin/rustc")),
        Some(linker),
        &link_args,
    )
    .run()
}

/// How the agent is built for a FreeBSD release: linked by clang with ld.lld against the
/// release's own libraries (`sysroot`, from base.txz). x86_64-unknown-freebsd has a rustup
/// standard library; aarch64-unknown-freebsd is tier 3 and needs nightly with build-std.
pub fn freebsd_build(arch: Arch, release: &str, sysroot: &Path, target_dir: &Path) -> CargoBuild {
    let amd64 = arch == Arch::Amd64;
    let triple = arch.rust_freebsd();
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
        arch.clang_freebsd(release),
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

/// What is missing to build the FreeBSD agent for `arch`, and how to get it.
pub fn freebsd_missing(arch: Arch) -> Option<String> {
    let sysroot_of = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    let triple = arch.rust_freebsd();
    match arch {
        Arch::Amd64 => {
            let has = sysroot_of(Command::new("rustc").args(["--print", "sysroot"]))
                .is_some_and(|s| s.join("lib/rustlib").join(triple).join("lib").exists());
            (!has).then(|| format!("no Rust standard library for {triple}: run `rustup target add {triple}`"))
        }
        Arch::Arm64 => {
            let has = sysroot_of(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
                .is_some_and(|s| s.join("lib/rustlib/src/rust/library").exists());
            (!has).then(|| {
                format!("{triple} is a tier-3 Rust target with no prebuilt standard library: run `rustup toolchain install nightly --component rust-src` (addrsel then builds it with -Zbuild-std)")
            })
        }
    }
}

/// The agent built for a FreeBSD release (see [`freebsd_build`]).
pub fn for_freebsd(arch: Arch, release: &str, name: &str, sysroot: &Path) -> anyhow::Result<PathBuf> {
    if let Some(why) = freebsd_missing(arch) {
        bail!(why);
    }
    tools::program("clang", "clang", "clang links the FreeBSD agent")?;
    tools::program("ld.lld", "lld", "ld.lld links the FreeBSD agent")?;
    let _g = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    freebsd_build(arch, release, sysroot, &target_dir().join("freebsd").join(name)).run()
}
