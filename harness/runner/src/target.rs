//! What every target run produces, and the pieces targets share.

use std::time::Duration;

use addrsel_model::protocol::Facts;
use addrsel_model::results::Report;

/// Called after every scenario: target, scenario, done, total, elapsed.
pub type Progress = dyn Fn(&str, &str, usize, usize, Duration) + Sync;

#[derive(Clone, Debug)]
pub struct ScenarioRun {
    pub report: Report,
    pub setup_error: Option<String>,
    pub millis: u64,
}

/// One target's run (or the reason it did not run).
#[derive(Clone, Debug)]
pub struct TargetRun {
    pub name: String,
    pub not_run: Option<String>,
    /// The run started but broke off (crash, deadline); scenarios after it are missing.
    pub error: Option<String>,
    pub facts: Option<Facts>,
    pub scenarios: Vec<ScenarioRun>,
    /// Boot time for VMs.
    pub boot: Option<Duration>,
    pub total: Duration,
    pub log: Vec<String>,
}

impl TargetRun {
    pub fn new(name: &str) -> Self {
        TargetRun {
            name: name.into(),
            not_run: None,
            error: None,
            facts: None,
            scenarios: vec![],
            boot: None,
            total: Duration::ZERO,
            log: vec![],
        }
    }

    pub fn not_run(mut self, reason: String) -> Self {
        self.not_run = Some(reason);
        self
    }
}

/// Kills and reaps a child process when dropped, on every exit path including panics.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
