//! Runs scenarios on targets and compares what they did with the engine.

pub mod bzimage;
pub mod compare;
pub mod console_driver;
pub mod corpus;
pub mod cpio;
pub mod deb;
pub mod debian;
pub mod fetch;
pub mod freebsd_image;
pub mod freebsd_kmod;
pub mod freebsd_vm;
pub mod host;
pub mod initramfs;
pub mod kmod;
pub mod linux_kmod;
pub mod linux_vm;
pub mod matrix;
pub mod qemu;
pub mod report;
pub mod snapshot;
pub mod target;
pub mod targets;
pub mod toolchain;

/// The repository's top directory (the workspace root).
pub fn repo_root() -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// What a measurement file (`cargo xtask measure`) says a probe gave: the lines printed
/// after `== PROBE:`, with zones (`%eth0`) removed. `None` when the probe is not in it.
pub fn measured_probe_output(measurement: &str, probe: &str) -> Option<Vec<String>> {
    let output = measurement.split("\n## output\n").nth(1)?;
    let output = output.split("\n## stderr\n").next()?;
    let header = format!("== {probe}:");
    let mut lines = output.lines().skip_while(|l| !l.starts_with(&header));
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.starts_with("== "))
            .map(|l| l.split('%').next().unwrap_or(l).trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

use std::path::PathBuf;
use std::time::Duration;

use corpus::Loaded;
use report::{MatrixResult, TargetSummary};

/// What a matrix run should do.
pub struct Options {
    pub targets: Vec<targets::TargetDef>,
    pub scenarios: Vec<Loaded>,
    pub snapshots: Snapshots,
    /// Per-target deadline.
    pub deadline: Duration,
    /// Load the test kernel module in the VM targets and ask it for every connect probe.
    pub kmod: bool,
}

/// What to do with snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshots {
    /// Compare with the stored ones; changes fail the run.
    Compare,
    /// Store the observations as the new snapshots.
    Accept,
    /// Leave snapshots alone.
    Skip,
}

/// A fresh directory for this run's logs: `target/addrsel/runs/<seconds>-<pid>`.
pub fn run_dir() -> PathBuf {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/addrsel/runs");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dir = base.join(format!("{stamp}-{}", std::process::id()));
    remove_stale_boot_files(&base);
    let _ = std::fs::create_dir_all(&dir);
    dir.canonicalize().unwrap_or(dir)
}

/// Files of boots that were killed (SIGKILL) before they could remove them: initrds, disk
/// overlays and payloads in the run directories of processes that no longer exist. Console
/// logs and results stay, for reading.
fn remove_stale_boot_files(base: &std::path::Path) {
    let Ok(runs) = std::fs::read_dir(base) else {
        return;
    };
    for run in runs.flatten() {
        let name = run.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.rsplit_once('-').and_then(|(_, p)| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for f in std::fs::read_dir(run.path()).into_iter().flatten().flatten() {
            let n = f.file_name().to_string_lossy().into_owned();
            if n.ends_with(".initrd") || n.ends_with(".overlay.qcow2") || n.ends_with(".payload.tar") {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
}

/// The engine's unverified points for `os` over the corpus, and how many of the probes they
/// decide were observed as predicted in `cells` (this run's cells).
fn unverified_points(os: addrsel_model::Os, scenarios: &[Loaded], cells: &[matrix::Cell]) -> Vec<report::Unverified> {
    let profile = compare::profile_for(os, None);
    let mut points: Vec<report::Unverified> = Vec::new();
    for l in scenarios {
        let prediction = addrsel_engine::predict(&l.scenario, &profile);
        for p in &prediction.probes {
            let confirmed = cells.iter().filter(|c| c.scenario == l.scenario.name).any(|c| {
                c.results.iter().any(|r| {
                    r.observed.probe == p.result.probe
                        && matches!(r.status, compare::Status::Agree | compare::Status::Deviation)
                })
            });
            for point in p.unverified() {
                let entry = match points.iter_mut().position(|u| &u.point == point) {
                    Some(i) => &mut points[i],
                    None => {
                        points.push(report::Unverified { point: point.clone(), probes: 0, confirmed: 0 });
                        points.last_mut().expect("pushed")
                    }
                };
                entry.probes += 1;
                entry.confirmed += usize::from(confirmed);
            }
        }
    }
    points
}

/// Runs every target (in parallel, up to the number of cores) and compares.
pub fn run_matrix(opts: &Options, progress: &target::Progress) -> MatrixResult {
    let dir = run_dir();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs: Vec<(usize, target::TargetRun)> = Vec::new();
    let queue = std::sync::Mutex::new((0..opts.targets.len()).collect::<Vec<_>>());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores.min(opts.targets.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let next = queue.lock().expect("queue").pop();
                        let Some(i) = next else { break };
                        let t = &opts.targets[i];
                        mine.push((i, targets::run(t, &opts.scenarios, &dir, opts.deadline, opts.kmod, progress)));
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            runs.extend(h.join().expect("target thread"));
        }
    });
    runs.sort_by_key(|(i, _)| *i);
    let mut cells = Vec::new();
    let mut summaries = Vec::new();
    for (i, run) in &runs {
        let def = &opts.targets[*i];
        let rule = match def.kind {
            targets::Kind::Host => snapshot::FactsRule::SameSeries,
            _ => snapshot::FactsRule::Exact,
        };
        cells.extend(matrix::cells_for(run, def.os, rule, &opts.scenarios, opts.snapshots));
        summaries.push(TargetSummary {
            name: run.name.clone(),
            not_run: run.not_run.clone(),
            error: run.error.clone(),
            facts: run.facts.clone(),
            boot_ms: run.boot.map(report::duration_ms),
            total_ms: report::duration_ms(run.total),
            scenario_ms: run.scenarios.iter().map(|s| s.millis).collect(),
            unverified: unverified_points(
                def.os,
                &opts.scenarios,
                &cells.iter().filter(|c| c.target == run.name).cloned().collect::<Vec<_>>(),
            ),
        });
    }
    MatrixResult {
        scenarios: opts.scenarios.iter().map(|l| l.scenario.name.clone()).collect(),
        targets: summaries,
        cells,
    }
}

#[cfg(test)]
mod stale_boot_files {
    #[test]
    fn killed_runs_lose_their_boot_files_and_keep_their_logs() {
        let base = std::env::temp_dir().join(format!("addrsel-runs-{}", std::process::id()));
        let dead = base.join("1700000000-4294967295");
        let alive = base.join(format!("1700000000-{}", std::process::id()));
        for d in [&dead, &alive] {
            std::fs::create_dir_all(d).unwrap();
            for f in ["t.initrd", "t.overlay.qcow2", "t.payload.tar", "t.console.log", "t.results"] {
                std::fs::write(d.join(f), b"x").unwrap();
            }
        }
        super::remove_stale_boot_files(&base);
        let left = |d: &std::path::Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(left(&dead), ["t.console.log", "t.results"]);
        assert_eq!(left(&alive).len(), 5, "a live run keeps its files");
        std::fs::remove_dir_all(&base).unwrap();
    }
}

#[cfg(test)]
mod measured {
    #[test]
    fn probe_output_reads_one_probes_lines() {
        let m = "x\n## script\n== a: no\n## output\n== a: source for x\nfe80::2%eth0\n== b: getaddrinfo order for h\n::1\n127.0.0.1\n";
        assert_eq!(super::measured_probe_output(m, "a"), Some(vec!["fe80::2".to_string()]));
        assert_eq!(super::measured_probe_output(m, "b"), Some(vec!["::1".to_string(), "127.0.0.1".to_string()]));
        assert_eq!(super::measured_probe_output(m, "c"), None);
    }
}
