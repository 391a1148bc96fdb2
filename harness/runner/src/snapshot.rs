//! Snapshots of observations, one insta `.snap` file per scenario and target under
//! `harness/snapshots/<target>/`, so a kernel or libc change shows up as a reviewable diff
//! (`cargo insta review`, or `cargo xtask matrix --accept`).

use std::path::{Path, PathBuf};

use addrsel_model::protocol::Facts;
use addrsel_model::results::{Outcome, ProbeResult};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SnapshotState {
    Same,
    /// No snapshot yet for this scenario and target.
    New {
        text: String,
    },
    Changed {
        old: String,
        new: String,
    },
    /// Accepted (written) in this run.
    Accepted,
}

impl SnapshotState {
    pub fn is_failure(&self) -> bool {
        matches!(self, SnapshotState::New { .. } | SnapshotState::Changed { .. })
    }
}

/// `harness/snapshots`, or `$ADDRSEL_SNAPSHOTS` when set (tests use a scratch directory).
pub fn root() -> PathBuf {
    match std::env::var_os("ADDRSEL_SNAPSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots"),
    }
}

/// The snapshot text of a scenario's observations.
pub fn render(results: &[ProbeResult]) -> String {
    let mut out = String::new();
    for r in results {
        let line = match &r.outcome {
            Outcome::Connect { dst, source, error, .. } => {
                let got = source.map_or_else(|| error.clone().unwrap_or_else(|| "no answer".into()), |a| a.to_string());
                let module = r.outcome.kernel_answer().map_or(String::new(), |k| {
                    format!(
                        " (kernel module: {})",
                        k.source.map_or_else(|| k.error.clone().unwrap_or_default(), |a| a.to_string())
                    )
                });
                format!("{}: connect {dst} -> {got}{module}", r.probe)
            }
            Outcome::Resolve { name, order, error } => match error {
                Some(e) => format!("{}: resolve {name} -> {e}", r.probe),
                None => format!(
                    "{}: resolve {name} -> {}",
                    r.probe,
                    order.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                ),
            },
            Outcome::Unsupported { reason } => format!("{}: unsupported: {reason}", r.probe),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn normalize(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end().to_string()
}

/// Compares the observations with the stored snapshot; with `accept`, stores them.
/// Otherwise a changed or new snapshot is left as a `.snap.new` file for review (not in CI).
pub fn check(
    target: &str,
    scenario: &str,
    results: &[ProbeResult],
    facts: Option<&Facts>,
    accept: bool,
) -> SnapshotState {
    let dir = root().join(target);
    let file = dir.join(format!("{scenario}.snap"));
    let text = render(results);
    let old = insta::Snapshot::from_file(&file).ok().and_then(|s| s.as_text().map(|t| t.to_string()));
    let pending = dir.join(format!("{scenario}.snap.new"));
    let state = match &old {
        Some(o) if normalize(o) == normalize(&text) => {
            let _ = std::fs::remove_file(&pending);
            return SnapshotState::Same;
        }
        Some(o) => SnapshotState::Changed { old: normalize(o), new: normalize(&text) },
        None => SnapshotState::New { text: normalize(&text) },
    };
    store(&dir, target, scenario, &text, facts, accept);
    if accept {
        let _ = std::fs::remove_file(&pending);
        SnapshotState::Accepted
    } else {
        state
    }
}

/// Hands the snapshot to insta, which writes `.snap` (accepting) or `.snap.new` (pending,
/// except in CI) in its own format.
fn store(dir: &Path, target: &str, scenario: &str, text: &str, facts: Option<&Facts>, accept: bool) {
    let _ = std::fs::create_dir_all(dir);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!("addrsel observations of scenario `{scenario}` on target `{target}`"));
    if let Some(f) = facts {
        settings.set_info(f);
    }
    // SAFETY: set before any thread reads the environment (snapshots are stored on the
    // main thread after every target finished).
    unsafe {
        std::env::set_var("INSTA_WORKSPACE_ROOT", Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
        if accept {
            std::env::set_var("INSTA_UPDATE", "always");
        }
        std::env::set_var("INSTA_OUTPUT", "none");
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(scenario, text));
    }));
    std::panic::set_hook(hook);
}

/// A unified diff of two snapshot texts, for reports.
pub fn diff(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let mut out = String::new();
    for l in &old {
        if !new.contains(l) {
            out.push_str(&format!("- {l}\n"));
        }
    }
    for l in &new {
        if !old.contains(l) {
            out.push_str(&format!("+ {l}\n"));
        }
    }
    out
}
