//! Every scenario on every target, compared with the engine and snapshotted.

use addrsel_engine::Prediction;
use addrsel_model::Os;
use serde::{Deserialize, Serialize};

use crate::corpus::Loaded;
use crate::matrix::compare::{Compared, Status, compare};
use crate::matrix::snapshot::{self, SnapshotState, Snapshots};
use crate::targets::run::TargetRun;

/// The outcome of one scenario on one target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    pub scenario: String,
    pub target: String,
    pub status: CellStatus,
    pub results: Vec<Compared>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
    /// The target was named with `--targets`: not running it is an error (exit status 3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requested: bool,
    /// The engine's explanations of the probes that failed (DISAGREE) or whose snapshot
    /// line changed, kept in the JSON so a merged report shows them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explain: Vec<Explained>,
}

/// One probe explained rule by rule, by the OS's profile and by RFC 6724.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Explained {
    pub probe: String,
    pub profile: String,
    pub engine: String,
    pub rfc6724: String,
}

fn probe_trace(p: &Prediction, probe: &str) -> String {
    use addrsel_engine::trace::{Trace, render_sort, render_source};
    match p.probes.iter().find(|x| x.result.probe == probe).map(|x| &x.trace) {
        Some(Trace::Connect(t)) => render_source(t, 0),
        Some(Trace::Resolve(t)) => render_sort(t, 0),
        _ => String::new(),
    }
}

/// Probe ids whose lines differ between two snapshot texts (lines are `probe-id: ...`).
fn changed_probes(old: &str, new: &str) -> Vec<String> {
    let lines = |t: &str| -> Vec<String> { t.lines().map(String::from).collect() };
    let (old, new) = (lines(old), lines(new));
    let mut ids: Vec<String> = Vec::new();
    for l in old.iter().filter(|l| !new.contains(l)).chain(new.iter().filter(|l| !old.contains(l))) {
        if let Some((id, _)) = l.split_once(": ")
            && !id.contains(' ')
            && !ids.iter().any(|x| x == id)
        {
            ids.push(id.to_string());
        }
    }
    ids
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Agree,
    Deviation,
    Unsupported,
    NotRun,
    SnapshotNew,
    SnapshotChanged,
    /// The run was stopped (SIGINT, SIGTERM) before this scenario finished.
    Interrupted,
    Unchecked,
    Disagree,
    SetupFailed,
}

impl CellStatus {
    pub fn word(self) -> &'static str {
        match self {
            CellStatus::Agree => "agree",
            CellStatus::Deviation => "deviation",
            CellStatus::Unsupported => "unsupported",
            CellStatus::NotRun => "not run",
            CellStatus::SnapshotNew => "SNAPSHOT NEW",
            CellStatus::SnapshotChanged => "SNAPSHOT CHANGED",
            CellStatus::Interrupted => "interrupted",
            CellStatus::Unchecked => "EXPECTATION NOT CHECKED",
            CellStatus::Disagree => "DISAGREE",
            CellStatus::SetupFailed => "SETUP FAILED",
        }
    }

    pub fn is_failure(self) -> bool {
        self >= CellStatus::SnapshotNew
    }
}

/// Compares one target's run for every scenario; scenarios it did not reach become cells
/// that say why.
pub fn cells_for(
    target: &TargetRun,
    os: Os,
    rule: snapshot::FactsRule,
    scenarios: &[Loaded],
    snapshots: Snapshots,
) -> Vec<Cell> {
    let mut cells = Vec::new();
    for l in scenarios {
        let s = &l.scenario;
        let base = Cell {
            scenario: s.name.clone(),
            target: target.name.clone(),
            status: CellStatus::NotRun,
            results: vec![],
            snapshot: None,
            setup_error: None,
            not_run: None,
            millis: None,
            requested: false,
            explain: vec![],
        };
        if let Some(reason) = &target.not_run {
            cells.push(Cell { not_run: Some(reason.clone()), ..base });
            continue;
        }
        let Some(run) = target.scenarios.iter().find(|r| r.report.scenario == s.name) else {
            let why = target.error.clone().unwrap_or_else(|| "the target returned nothing for it".into());
            let status = if target.interrupted.is_some() { CellStatus::Interrupted } else { CellStatus::SetupFailed };
            cells.push(Cell { status, setup_error: Some(why), ..base });
            continue;
        };
        let (results, engine, rfc) = compare(s, os, &target.name, target.facts.as_ref(), &run.report.results);
        let mut status = results
            .iter()
            .map(|r| match r.status {
                Status::Agree => CellStatus::Agree,
                Status::Deviation => CellStatus::Deviation,
                Status::Disagree => CellStatus::Disagree,
                Status::Unsupported => CellStatus::Unsupported,
                Status::Unchecked => CellStatus::Unchecked,
                Status::SetupFailed => CellStatus::SetupFailed,
                Status::NotRun => CellStatus::NotRun,
            })
            .max()
            .unwrap_or(CellStatus::Agree);
        let mut snap = None;
        if run.setup_error.is_some() {
            status = CellStatus::SetupFailed;
        } else if snapshots != Snapshots::Skip {
            let multipath: Vec<(String, Vec<std::net::IpAddr>)> = results
                .iter()
                .filter_map(|c| match &c.predicted {
                    addrsel_model::results::Outcome::Connect { sources, .. } if !sources.is_empty() => {
                        Some((c.observed.probe.clone(), sources.clone()))
                    }
                    _ => None,
                })
                .collect();
            let state = snapshot::check(
                &target.name,
                s,
                &run.report.results,
                &multipath,
                target.facts.as_ref(),
                rule,
                snapshots == Snapshots::Accept,
            )
            .unwrap_or_else(|e| SnapshotState::Changed {
                old: String::new(),
                new: format!("the snapshot could not be read or written: {e:#}"),
            });
            let snap_status = match &state {
                SnapshotState::New { .. } => Some(CellStatus::SnapshotNew),
                SnapshotState::Changed { .. } => Some(CellStatus::SnapshotChanged),
                _ => None,
            };
            if let Some(ss) = snap_status {
                status = status.max(ss);
            }
            snap = Some(state);
        }
        let mut explained: Vec<String> = match &snap {
            Some(SnapshotState::Changed { old, new }) => changed_probes(old, new),
            _ => vec![],
        };
        for r in results.iter().filter(|r| r.status == Status::Disagree) {
            if !explained.contains(&r.observed.probe) {
                explained.push(r.observed.probe.clone());
            }
        }
        let explain = explained
            .into_iter()
            .filter(|p| results.iter().any(|r| &r.observed.probe == p))
            .map(|p| Explained {
                engine: probe_trace(&engine, &p),
                rfc6724: probe_trace(&rfc, &p),
                profile: engine.profile.name().to_string(),
                probe: p,
            })
            .collect();
        cells.push(Cell {
            status,
            results,
            snapshot: snap,
            setup_error: run.setup_error.clone(),
            millis: Some(run.millis),
            explain,
            ..base
        });
    }
    cells
}
