//! `cargo xtask bench`: measured, never asserted. Medians of several rounds in one run.

use addrsel_runner::targets::run::RunContext;
use std::process::Command;
use std::time::{Duration, Instant};

use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Rounds per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Run the engine benchmark in this process as built (used by `bench` itself, in release).
    #[arg(long, hide = true)]
    engine_here: bool,
    /// Also boot the Linux VM targets: boot-to-results, time per scenario, the whole matrix.
    #[arg(long)]
    vms: bool,
    /// The default Linux matrix (host and every Linux VM) twice: first with an empty cache
    /// and target directory (every package downloaded and verified, every build root, test
    /// module, initramfs and the agent built: a newcomer's first run), then cached.
    #[arg(long)]
    first_run: bool,
    /// Time this machine's getaddrinfo for NAME here (inside the namespace `bench` sets up).
    #[arg(long, hide = true, value_name = "NAME")]
    getaddrinfo_here: Option<String>,
}

/// Calls per second of the real getaddrinfo for `name`, in this process's namespaces.
fn getaddrinfo_here(name: &str, rounds: usize) -> f64 {
    use std::net::ToSocketAddrs;
    let per_round: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let mut count = 0u64;
            while start.elapsed() < Duration::from_millis(300) {
                std::hint::black_box((name, 0).to_socket_addrs().map(|a| a.count()).unwrap_or(0));
                count += 1;
            }
            count as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    median(per_round)
}

/// The same scenario configured for real in a throwaway namespace (its repro script without
/// the probes), and this binary timing glibc's getaddrinfo there.
fn real_glibc(n: usize, rounds: usize) -> Result<f64, String> {
    let s = scenario(n, None);
    let mut plan = addrsel_model::plan::linux(&s);
    plan.probes.clear();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let script = format!(
        "{}\n\"$1\" bench --getaddrinfo-here h.example --rounds {rounds}\n",
        addrsel_model::plan::repro_script(&plan, &s)
    );
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(&exe)
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if !out.status.success() {
        return Err(format!("needs root for a namespace: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| "no timing".into())
}

/// One VM target, alone (no other guest competing for the cores).
fn vm_rounds(
    def: &addrsel_runner::linux::image::ImageDef,
    scenarios: &[addrsel_runner::corpus::Loaded],
    rounds: usize,
) -> Result<(f64, f64, f64), String> {
    let dir = addrsel_runner::matrix::run_dir();
    let quiet = |_: &str, _: &str, _: usize, _: usize, _: Duration| {};
    let ctx = |scenarios| RunContext {
        scenarios,
        dir: &dir,
        deadline: Duration::from_secs(300),
        kmod: false,
        accel: None,
        progress: &quiet,
    };
    let mut boots = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..rounds {
        let run = addrsel_runner::linux::vm::run(def, &ctx(&scenarios[..1]));
        if let Some(e) = run.not_run.or(run.error) {
            return Err(e);
        }
        boots.push(run.boot.unwrap_or_default().as_secs_f64());
        totals.push(run.total.as_secs_f64());
    }
    let full = addrsel_runner::linux::vm::run(def, &ctx(scenarios));
    let per: Vec<f64> = full.scenarios.iter().map(|s| s.millis as f64).collect();
    Ok((median(boots), median(totals), median(per)))
}

fn vms(rounds: usize) -> anyhow::Result<()> {
    let scenarios =
        addrsel_runner::corpus::load(&[addrsel_runner::corpus::builtin_dir()]).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("\nLinux VMs, one at a time, median of {rounds} boots (TCG unless KVM was proven to work):");
    println!("{:<24} {:>10} {:>16} {:>16}", "target", "boot (s)", "to results (s)", "per scenario (ms)");
    let mut defs = Vec::new();
    for t in addrsel_runner::targets::all()? {
        if let addrsel_runner::targets::Kind::LinuxVm(def) = t.kind {
            defs.push(*def);
        }
    }
    for def in &defs {
        match vm_rounds(def, &scenarios, rounds) {
            Ok((boot, total, per)) => println!("{:<24} {:>10.2} {:>16.2} {:>16.0}", def.name, boot, total, per),
            Err(e) => println!("{:<24} not run: {e}", def.name),
        }
    }
    let mut walls = Vec::new();
    for _ in 0..rounds.min(3) {
        match whole_linux_matrix(&[]) {
            Ok(wall) => walls.push(wall),
            Err(e) => {
                println!("{e}; wall times are not reported");
                return Ok(());
            }
        }
    }
    let linux = linux_targets()?;
    println!(
        "whole Linux matrix (host + {} VMs, {} scenarios, two guests at a time): median {:.1} s wall of {} runs, {:.1} s per pair of guests",
        linux.len() - 1,
        scenarios.len(),
        median(walls.clone()),
        walls.len(),
        median(walls) / ((linux.len() - 1) as f64 / 2.0)
    );
    Ok(())
}

/// The host and every Linux VM target: what `cargo xtask matrix` runs by default here.
fn linux_targets() -> anyhow::Result<Vec<String>> {
    Ok(addrsel_runner::targets::all()?
        .into_iter()
        .filter(|t| !matches!(t.kind, addrsel_runner::targets::Kind::FreebsdVm(_)))
        .map(|t| t.name)
        .collect())
}

/// Seconds of wall time for one run of the Linux matrix (no snapshots), with `env` set; its
/// output goes to `target/bench-matrix.log`.
fn whole_linux_matrix(env: &[(&str, &std::path::Path)]) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let log_path = addrsel_runner::repo_root().join("target/bench-matrix.log");
    let log = std::fs::File::create(&log_path)?;
    let start = Instant::now();
    let mut cmd = Command::new(&exe);
    cmd.args(["matrix", "--no-snapshots", "--targets", &linux_targets()?.join(",")])
        .stdout(log.try_clone()?)
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status()?;
    if !status.success() {
        anyhow::bail!("the Linux matrix run failed ({status}): {}", log_path.display());
    }
    Ok(start.elapsed().as_secs_f64())
}

/// A newcomer's first run of the default Linux matrix (empty cache and agent target
/// directory) against a second, cached run, in one go.
fn first_run() -> anyhow::Result<()> {
    let dir = addrsel_runner::repo_root().join("target/bench-first-run");
    let _ = std::fs::remove_dir_all(&dir);
    let (cache, target) = (dir.join("cache"), dir.join("target"));
    std::fs::create_dir_all(&cache)?;
    let env = [("ADDRSEL_CACHE", cache.as_path()), ("CARGO_TARGET_DIR", target.as_path())];
    let linux = linux_targets()?;
    println!(
        "
the default Linux matrix (host + {} VMs), no snapshots:",
        linux.len() - 1
    );
    let first = whole_linux_matrix(&env)?;
    let downloaded: u64 = std::fs::read_dir(cache.join("debian"))
        .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    println!(
        "first run (empty cache: {} MB of packages downloaded and verified; build roots, modules, initramfs, resolver probes and the agent built): {first:.0} s",
        downloaded >> 20
    );
    let cached = whole_linux_matrix(&env)?;
    println!("cached run: {cached:.0} s ({:.1}x faster)", first / cached);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A host with ULA, global and IPv4 sources and `n` destinations of mixed classes, resolved
/// through `resolver` (glibc's when `None`).
fn scenario(n: usize, resolver: Option<&str>) -> addrsel_model::Scenario {
    let mut dsts = Vec::new();
    for i in 0..n {
        dsts.push(match i % 4 {
            0 => format!("\"2a01:4f8:c2c:{:x}::1\"", 0x8100 + i),
            1 => format!("\"fd00:11:22:{:x}::53\"", i),
            2 => format!("\"116.203.{}.{}\"", i / 200, 1 + i % 200),
            _ => format!("\"2001:db8:{:x}::9\"", i),
        });
    }
    let text = format!(
        "name = \"bench\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [\"10.0.0.50/24\", \"fd00:11:22::aa/64\", \"2001:db8:1::aa/64\"]\n\
         [[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\ndev = \"eth0\"\n[[routes]]\nto = \"::/0\"\nvia = \"fe80::1\"\ndev = \"eth0\"\n\
         [hosts]\n\"h.example\" = [{}]\n[[probes]]\nid = \"r\"\nresolve = \"h.example\"\n{}",
        dsts.join(", "),
        resolver.map(|r| format!("resolvers = [\"{r}\"]\n")).unwrap_or_default()
    );
    parse_scenario("bench", &text).expect("valid").scenario
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn engine(rounds: usize) {
    println!(
        "engine: getaddrinfo sorts per second (each sort includes the kernel source selection for every destination), median of {rounds} rounds"
    );
    println!("{:<14} {:>12} {:>12} {:>12}", "profile", "2 dests", "8 dests", "32 dests");
    // Every OS profile with its C library, then the resolvers' profiles on the Linux kernel's.
    let rows = Profile::NAMES
        .iter()
        .map(|name| (name.to_string(), *name, None))
        .chain(["musl", "go", "c-ares"].map(|r| (format!("linux+{r}"), "linux", Some(r))));
    for (label, name, resolver) in rows {
        let profile = Profile::from_name(name).expect("known");
        let mut row = Vec::new();
        for n in [2, 8, 32] {
            let s = scenario(n, resolver);
            let per_round: Vec<f64> = (0..rounds)
                .map(|_| {
                    let start = Instant::now();
                    let mut count = 0u64;
                    while start.elapsed() < Duration::from_millis(300) {
                        std::hint::black_box(predict(&s, &profile));
                        count += 1;
                    }
                    count as f64 / start.elapsed().as_secs_f64()
                })
                .collect();
            row.push(median(per_round));
        }
        println!("{:<14} {:>12.0} {:>12.0} {:>12.0}", label, row[0], row[1], row[2]);
    }
    // The system the Linux profile models, in the same run: glibc getaddrinfo, whose sort
    // makes one connect() per address.
    let real: Vec<Result<f64, String>> = [2, 8, 32].iter().map(|&n| real_glibc(n, rounds)).collect();
    match real.iter().find_map(|r| r.as_ref().err()) {
        None => {
            let v: Vec<f64> = real.into_iter().map(|r| r.unwrap_or(0.0)).collect();
            println!(
                "{:<14} {:>12.0} {:>12.0} {:>12.0}   (this machine's glibc getaddrinfo, calls/s)",
                "real glibc", v[0], v[1], v[2]
            );
        }
        Some(e) => println!("real glibc     not measured: {e}"),
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if let Some(name) = &args.getaddrinfo_here {
        println!("{}", getaddrinfo_here(name, args.rounds));
        return Ok(exit::OK);
    }
    if args.engine_here {
        engine(args.rounds);
        if args.vms {
            vms(args.rounds)?;
        }
        return Ok(exit::OK);
    }
    if args.first_run {
        first_run()?;
        return Ok(exit::OK);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!("machine: {} cores, {machine}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let status = Command::new(cargo)
        .args(["run", "--release", "--quiet", "--package", "xtask", "--", "bench", "--engine-here", "--rounds"])
        .arg(args.rounds.to_string())
        .args(if args.vms { &["--vms"][..] } else { &[][..] })
        .status()?;
    Ok(if status.success() { exit::OK } else { exit::DISAGREE })
}
