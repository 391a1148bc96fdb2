//! The matrix: every scenario on every target, compared with the engine, snapshotted and
//! reported.

pub mod across;
pub mod cells;
pub mod compare;
pub mod report;
pub mod snapshot;

pub use snapshot::Snapshots;

use std::path::PathBuf;
use std::time::Duration;

use crate::corpus::Loaded;
use crate::targets;
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
    /// VM acceleration the user forced (`--accel`).
    pub accel: Option<crate::vm::qemu::Accel>,
}

/// A fresh directory for this run's logs: `target/addrsel/runs/<seconds>-<pid>`.
pub fn run_dir() -> PathBuf {
    let base = crate::repo_root().join("target/addrsel/runs");
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
fn unverified_points(os: addrsel_model::Os, scenarios: &[Loaded], cells: &[cells::Cell]) -> Vec<report::Unverified> {
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
pub fn run_matrix(opts: &Options, progress: &targets::run::Progress) -> MatrixResult {
    let dir = run_dir();
    let ctx = targets::run::RunContext {
        scenarios: &opts.scenarios,
        dir: &dir,
        deadline: opts.deadline,
        kmod: opts.kmod,
        accel: opts.accel,
        progress,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs: Vec<(usize, targets::run::TargetRun)> = Vec::new();
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
                        // After an interrupt, targets not started are not started.
                        let run = match crate::interrupt::requested() {
                            Some(sig) => {
                                let mut r = targets::run::TargetRun::new(&t.name);
                                r.interrupted = Some(sig);
                                r.error =
                                    Some(format!("interrupted by {} before it started", crate::interrupt::name(sig)));
                                r
                            }
                            None => targets::run(t, &ctx),
                        };
                        mine.push((i, run));
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
        cells.extend(cells::cells_for(run, def.os, rule, &opts.scenarios, opts.snapshots));
        summaries.push(TargetSummary {
            name: run.name.clone(),
            not_run: run.not_run.clone(),
            error: run.error.clone(),
            facts: run.facts.clone(),
            boot_ms: run.boot.map(report::duration_ms),
            total_ms: report::duration_ms(run.total),
            scenario_ms: run.scenarios.iter().map(|s| s.millis).collect(),
            kernel_origin: match &def.kind {
                crate::targets::Kind::LinuxVm(image) => image.custom.as_ref().map(|c| c.origin.clone()),
                _ => None,
            },
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
