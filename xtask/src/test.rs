//! `cargo xtask test`: everything CI checks, in order, stopping at the first failure.

use std::process::Command;

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Skip the real-target part (the matrix on the host and the Linux VMs).
    #[arg(long)]
    no_targets: bool,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn step(name: &str, cmd: &mut Command) -> anyhow::Result<bool> {
    eprintln!("==> {name}");
    let start = std::time::Instant::now();
    let status = cmd.status()?;
    eprintln!(
        "    {name}: {} in {:.1} s",
        if status.success() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    Ok(status.success())
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let c = cargo();
    eprintln!("==> tools the tests need");
    match addrsel_runner::toolchain::test_prerequisites() {
        Ok(installed) if installed.is_empty() => eprintln!("    all present"),
        Ok(installed) => eprintln!("    installed {}", installed.join(", ")),
        Err(e) => {
            eprintln!("    missing: {e}");
            return Ok(exit::NOT_RUN);
        }
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
    // The FreeBSD agent cannot be linked here (no FreeBSD libc), but it can be type-checked:
    // Debian's rustc with its standard library sources builds std for the FreeBSD targets.
    for triple in ["x86_64-unknown-freebsd", "aarch64-unknown-freebsd"] {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["check", "--quiet", "-Zbuild-std=std,panic_abort", "--package", "addrsel-agent", "--target", triple])
            .args(["--target-dir", "target/freebsd-check"])
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&root);
        if !step(&format!("FreeBSD agent type-check ({triple}, build-std)"), &mut cmd)? {
            return Ok(exit::DISAGREE);
        }
    }
    if !args.no_targets {
        // Through cargo: `cargo test` may have rebuilt this very binary in the meantime.
        let targets = "host,linux-bookworm-amd64,linux-bookworm-arm64,linux-trixie-amd64,linux-trixie-arm64";
        if !step(
            "matrix on the host and the Linux VMs",
            Command::new(&c)
                .args(["run", "--quiet", "--package", "xtask", "--", "matrix", "--targets", targets])
                .current_dir(&root),
        )? {
            return Ok(exit::DISAGREE);
        }
    }
    Ok(exit::OK)
}
