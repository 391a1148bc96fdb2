//! `cargo xtask measure`: a measurement by hand, without the agent. The scenario's repro
//! script (what `cargo xtask repro` prints) runs in a throwaway network and mount namespace
//! on this machine's kernel, with `ip` and python3's socket calls, and the file written
//! holds the system's facts, the exact script and everything it printed: evidence for an
//! `[[expect]]` that anyone can rerun.

use std::path::PathBuf;
use std::process::Command;

use addrsel_model::plan;
use anyhow::Context as _;

use crate::{exit, load_scenarios};

#[derive(clap::Args)]
pub struct Args {
    /// Scenario files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where to write `<scenario>.txt` (default: harness/measurements/host).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run the probes with another glibc: the root of an unpacked `libc6` package (for
    /// example Debian 13's, to measure glibc 2.41 on this kernel). python3 runs through that
    /// library's own loader; /etc files stay the scenario's.
    #[arg(long, value_name = "DIR")]
    libc_root: Option<PathBuf>,
}

/// A directory holding a `python3` that runs the system's python3 through the loader and
/// libraries of the glibc under `root`, and that glibc's version line.
fn python_with_libc(root: &std::path::Path, scratch: &std::path::Path) -> anyhow::Result<String> {
    let libdir =
        ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib/aarch64-linux-gnu"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.join("libc.so.6").exists())
            .with_context(|| format!("{}: no libc.so.6 under usr/lib/<triplet>", root.display()))?;
    let loader = std::fs::read_dir(&libdir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ld-linux")))
        .with_context(|| format!("{}: no ld-linux loader", libdir.display()))?;
    let python = std::path::Path::new("/usr/bin/python3");
    anyhow::ensure!(python.exists(), "--libc-root needs the system's /usr/bin/python3 (apt-get install python3)");
    let version = command_line(&[loader.to_str().context("a UTF-8 path")?, "--version"]);
    std::fs::create_dir_all(scratch)?;
    let wrapper = scratch.join("python3");
    // Paths only (no scenario text): the loader runs python3 against this glibc.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --library-path {} {} \"$@\"\n",
            plan::shell_quote(&loader.display().to_string()),
            plan::shell_quote(&libdir.display().to_string()),
            python.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok(version)
}

fn command_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|| format!("({} not available)", argv[0]))
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let Some(loaded) = load_scenarios(&args.files) else {
        return Ok(exit::BAD_INPUT);
    };
    let out_dir = args.out.unwrap_or_else(|| addrsel_runner::repo_root().join("harness/measurements/host"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let scratch = std::env::temp_dir().join(format!("addrsel-measure-{}", std::process::id()));
    let libc = match &args.libc_root {
        Some(root) => Some(python_with_libc(root, &scratch)?),
        None => None,
    };
    let mut path = match &libc {
        Some(_) => format!("{}:{}", scratch.display(), std::env::var("PATH").unwrap_or_default()),
        None => std::env::var("PATH").unwrap_or_default(),
    };
    // Resolve probes through musl, Go or c-ares run the same programs the agent runs.
    let other_resolvers = loaded
        .iter()
        .flat_map(|l| &l.scenario.probes)
        .any(|p| matches!(&p.kind, addrsel_model::ProbeKind::Resolve { resolver, .. } if !resolver.is_glibc()));
    if other_resolvers {
        let dir = addrsel_runner::resolvers::for_host(&|m| eprintln!("  {m}"))?;
        path = format!("{}:{path}", dir.display());
    }
    // A step iproute2 cannot do (an optimistic address) is the agent's own subcommand.
    let uses_agent = loaded.iter().any(|l| {
        plan::linux(&l.scenario)
            .setup
            .iter()
            .any(|s| matches!(s, plan::Step::Run { argv, .. } if argv.iter().any(|a| a == "{agent}")))
    });
    let agent = if uses_agent { Some(addrsel_runner::agent_build::for_host()?) } else { None };
    for l in &loaded {
        let script = plan::repro_script(&plan::linux(&l.scenario), &l.scenario);
        let mut cmd = Command::new("unshare");
        if let Some(a) = &agent {
            cmd.env("ADDRSEL_AGENT", a);
        }
        let output = cmd
            .args(["--net", "--mount", "--propagation", "private", "sh", "-c", &script])
            .env("PATH", &path)
            .output()
            .context("cannot run `unshare --net --mount --propagation private sh` (util-linux, as root)")?;
        let mut text = format!(
            "# addrsel measurement of scenario `{}`, by hand: its repro script (cargo xtask repro {} --os linux)\n\
             # run as `unshare --net --mount --propagation private sh -c SCRIPT`; no addrsel agent involved.\n\
             # date: {}\n# kernel: {}\n# C library: {}\n# python3: {}\n# exit status: {}\n",
            l.scenario.name,
            addrsel_runner::corpus::display_path(&l.path),
            command_line(&["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            command_line(&["uname", "-srm"]),
            libc.clone().unwrap_or_else(|| command_line(&["ldd", "--version"])),
            command_line(&["python3", "--version"]),
            output.status.code().map_or("killed".into(), |c| c.to_string()),
        );
        text.push_str("\n## script\n");
        text.push_str(&script);
        text.push_str("\n## output\n");
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            text.push_str("\n## stderr\n");
            text.push_str(&stderr);
        }
        let file = out_dir.join(format!("{}.txt", l.scenario.name));
        std::fs::write(&file, &text).with_context(|| format!("cannot write {}", file.display()))?;
        println!("{}: {}", file.display(), if output.status.success() { "measured" } else { "the script failed" });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(exit::OK)
}
