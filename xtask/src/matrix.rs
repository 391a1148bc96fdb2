//! `cargo xtask matrix`.

use std::path::PathBuf;
use std::time::Duration;

use addrsel_runner::matrix::{Options, report, run_matrix};
use addrsel_runner::targets;

use crate::{exit, load_scenarios};

#[derive(clap::Args)]
pub struct Args {
    /// Comma-separated targets to run (default: every known target; see --list-targets).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Scenario files or directories, replacing the built-in corpus (harness/scenarios).
    #[arg(long, num_args = 1..)]
    scenarios: Vec<PathBuf>,
    #[command(flatten)]
    outputs: Outputs,
    /// Store the observations as the new snapshots instead of reporting changes.
    #[arg(long, conflicts_with = "no_snapshots")]
    accept: bool,
    /// Compare with the engine only; leave snapshots alone (for ad-hoc scenarios).
    #[arg(long)]
    no_snapshots: bool,
    /// List the targets (every known one, or those --targets/--shard choose), whether each
    /// can run here and why not, then exit.
    #[arg(long)]
    list_targets: bool,
    /// VM acceleration: kvm or tcg (default: KVM when a probe guest proves it works, else TCG).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    accel: Option<String>,
    /// Do not build and load the test kernel module in the VM targets (by default it is
    /// built with each kernel's own compiler, loaded at boot and asked for every connect
    /// probe, its answer reported next to the socket's).
    #[arg(long)]
    no_kmod: bool,
    /// Deadline per target, in seconds. A VM guest must also start its agent within 120 s
    /// (or this deadline, if shorter); one stuck in boot is stopped then.
    #[arg(long, default_value_t = 600)]
    deadline: u64,
    /// Run only shard I of N (1-based) of the target list, for CI job matrices; merge the
    /// shards' --json files with `cargo xtask report merge`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Also run every resolve probe whose scenario names no `resolvers` through these
    /// (glibc, musl, go, go-cgo, c-ares); glibc's own result stays. The snapshots record the
    /// scenarios as written, so this needs --no-snapshots.
    #[arg(long, value_delimiter = ',', value_parser = parse_resolver, requires = "no_snapshots")]
    resolvers: Vec<addrsel_model::Resolver>,
    /// Boot this kernel in the named Linux VM targets instead of their image's own, on the
    /// release's userland: a linux-image-*.deb (its split parts and headers are taken from the
    /// same directory) or a kernel image (bzImage, vmlinuz, Image, vmlinux) with
    /// --kernel-build. The target is named after it (`linux-trixie-amd64+RELEASE`).
    #[arg(long, value_name = "PATH", requires = "targets")]
    kernel: Option<PathBuf>,
    /// The kernel's build tree: its .config, modules (modules.order) and what the test module
    /// is built against, with the compiler the kernel was built with.
    #[arg(long, value_name = "DIR", requires = "kernel")]
    kernel_build: Option<PathBuf>,
}

fn parse_resolver(s: &str) -> Result<addrsel_model::Resolver, String> {
    addrsel_model::Resolver::from_word(s).ok_or_else(|| {
        let words: Vec<_> = addrsel_model::Resolver::ALL.iter().map(|(w, _)| *w).collect();
        format!("unknown resolver `{s}` (one of: {})", words.join(", "))
    })
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, for example 2/4")?;
    let (i, n): (usize, usize) =
        (i.parse().map_err(|_| "I is not a number")?, n.parse().map_err(|_| "N is not a number")?);
    if n == 0 || i == 0 || i > n {
        return Err(format!("shard {i}/{n}: need 1 <= I <= N"));
    }
    Ok((i, n))
}

/// The deterministic slice of `targets` that shard `i` of `n` runs: every n-th target.
pub fn shard<T: Clone>(targets: &[T], (i, n): (usize, usize)) -> Vec<T> {
    targets.iter().enumerate().filter(|(k, _)| k % n == i - 1).map(|(_, t)| t.clone()).collect()
}

/// Where to write the results besides the terminal.
#[derive(clap::Args)]
pub struct Outputs {
    /// Write the results as JSON: one object per scenario and target.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the results as JUnit XML (one testcase per scenario and target).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write the results as a Markdown table (also appended to $GITHUB_STEP_SUMMARY when set).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also list every probe whose answer is not the same on every target, with the targets
    /// (and their kernel and C library) behind each answer: the releases' differences, in the
    /// terminal, the Markdown and the JSON (`across_targets`).
    #[arg(long)]
    compare_releases: bool,
}

impl Outputs {
    /// Every output file can be written: checked before a run, so a long run is not lost to
    /// a typo in a path. A probe file is made and removed next to each.
    pub fn check(&self) -> Result<(), String> {
        for (option, path) in [("--json", &self.json), ("--junit", &self.junit), ("--markdown", &self.markdown)] {
            let Some(path) = path else { continue };
            if path.is_dir() {
                return Err(format!("{option} {}: is a directory", path.display()));
            }
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let probe = dir.join(format!(".addrsel-write-check-{}", std::process::id()));
            std::fs::write(&probe, b"")
                .map_err(|e| format!("{option} {}: cannot write in {}: {e}", path.display(), dir.display()))?;
            let _ = std::fs::remove_file(&probe);
        }
        Ok(())
    }
}

/// Prints the report, writes every requested format, and returns the exit status.
pub fn finish(result: &report::MatrixResult, out: &Outputs, requested_not_run: bool) -> anyhow::Result<u8> {
    use addrsel_runner::matrix::across;
    use anyhow::Context as _;
    print!("{}", report::terminal(result));
    if out.compare_releases {
        print!("{}", across::terminal(result));
    }
    if let Some(p) = &out.json {
        let text = if out.compare_releases {
            let mut v: serde_json::Value = serde_json::from_str(&report::json(result)).context("the report's JSON")?;
            v["across_targets"] = serde_json::to_value(across::differences(result)).context("the differences")?;
            serde_json::to_string_pretty(&v).context("the report's JSON")? + "\n"
        } else {
            report::json(result)
        };
        std::fs::write(p, text).with_context(|| format!("cannot write --json {}", p.display()))?;
    }
    if let Some(p) = &out.junit {
        std::fs::write(p, report::junit(result)).with_context(|| format!("cannot write --junit {}", p.display()))?;
    }
    let mut md = report::markdown(result);
    if out.compare_releases {
        md.push_str(&across::markdown(result));
    }
    if let Some(p) = &out.markdown {
        std::fs::write(p, &md).with_context(|| format!("cannot write --markdown {}", p.display()))?;
    }
    if let Ok(summary) = std::env::var("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(summary) {
            let _ = f.write_all(md.as_bytes());
        }
    }
    Ok(if result.failures() > 0 {
        exit::DISAGREE
    } else if requested_not_run {
        exit::NOT_RUN
    } else {
        exit::OK
    })
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let known = targets::all()?;
    // A shard of the default list is still the default list: its not-run targets (FreeBSD
    // here) do not make the exit status 3.
    if let Err(e) = args.outputs.check() {
        eprintln!("error: {e}");
        return Ok(exit::BAD_INPUT);
    }
    let explicit = !args.targets.is_empty();
    let chosen: Vec<targets::TargetDef> = if explicit {
        let mut v = Vec::new();
        for name in &args.targets {
            match known.iter().find(|t| &t.name == name) {
                Some(t) => v.push(t.clone()),
                None => {
                    eprintln!(
                        "error: unknown target `{name}` (known: {})",
                        known.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                    return Ok(exit::BAD_INPUT);
                }
            }
        }
        v
    } else {
        known
    };
    let chosen = match args.shard {
        Some(sh) => shard(&chosen, sh),
        None => chosen,
    };
    let chosen = match &args.kernel {
        Some(kernel) => {
            let mut v = Vec::new();
            for t in &chosen {
                let progress = |m: &str| eprintln!("  [{}] {m}", t.name);
                match targets::with_kernel(t, kernel, args.kernel_build.as_deref(), &progress) {
                    Ok(custom) => v.push(custom),
                    Err(e) => {
                        eprintln!("error: --kernel {}: {e:#}", kernel.display());
                        return Ok(exit::BAD_INPUT);
                    }
                }
            }
            v
        }
        None => chosen,
    };
    if args.list_targets {
        for t in &chosen {
            match targets::availability(t) {
                Ok(how) => println!("{:<24} can run ({how}): {}", t.name, t.description),
                Err(why) => println!("{:<24} cannot run here: {why}", t.name),
            }
        }
        return Ok(exit::OK);
    }
    if chosen.is_empty() {
        eprintln!("this shard has no targets");
        let empty = report::MatrixResult { scenarios: vec![], targets: vec![], cells: vec![] };
        return finish(&empty, &args.outputs, false);
    }
    let paths =
        if args.scenarios.is_empty() { vec![addrsel_runner::corpus::builtin_dir()] } else { args.scenarios.clone() };
    let Some(mut scenarios) = load_scenarios(&paths) else {
        return Ok(exit::BAD_INPUT);
    };
    for l in &mut scenarios {
        for skipped in l.scenario.add_default_resolvers(&args.resolvers) {
            eprintln!("--resolvers: {skipped}; left out");
        }
    }
    eprintln!(
        "addrsel matrix: {} scenarios on {} target(s): {}",
        scenarios.len(),
        chosen.len(),
        chosen.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let opts = Options {
        targets: chosen,
        scenarios,
        snapshots: if args.no_snapshots {
            addrsel_runner::matrix::Snapshots::Skip
        } else if args.accept {
            addrsel_runner::matrix::Snapshots::Accept
        } else {
            addrsel_runner::matrix::Snapshots::Compare
        },
        deadline: Duration::from_secs(args.deadline),
        kmod: !args.no_kmod,
        accel: args.accel.as_deref().and_then(addrsel_runner::vm::qemu::Accel::parse),
    };
    let progress = |target: &str, scenario: &str, done: usize, total: usize, elapsed: Duration| {
        eprintln!("  [{target}] {done}/{total} {scenario} ({:.1} s)", elapsed.as_secs_f64());
    };
    // Ctrl-C or a TERM: the run stops its guests and agents, then reports what finished.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler only stores the signal's number in an atomic.
        unsafe { signal_hook::low_level::register(sig, move || addrsel_runner::interrupt::set(sig)) }?;
    }
    let mut result = run_matrix(&opts, &progress);
    for c in &mut result.cells {
        c.requested = explicit;
    }
    let requested_not_run = explicit && result.targets.iter().any(|t| t.not_run.is_some());
    let status = finish(&result, &args.outputs, requested_not_run)?;
    Ok(match addrsel_runner::interrupt::requested() {
        // As a shell reports a process killed by the signal: 128 + its number.
        Some(sig) => {
            eprintln!("interrupted by {}: the results above are what finished", addrsel_runner::interrupt::name(sig));
            (128 + sig) as u8
        }
        None => status,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn shards_are_deterministic_disjoint_and_complete() {
        let targets: Vec<u32> = (0..7).collect();
        let parts: Vec<Vec<u32>> = (1..=3).map(|i| super::shard(&targets, (i, 3))).collect();
        assert_eq!(parts, [vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        assert_eq!(super::parse_shard("2/3"), Ok((2, 3)));
        assert!(
            super::parse_shard("0/3").is_err()
                && super::parse_shard("4/3").is_err()
                && super::parse_shard("x").is_err()
        );
    }
}
