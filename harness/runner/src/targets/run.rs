//! What every target run is given and what it produces, and the one place an agent's
//! messages become a run's results.

use std::path::Path;
use std::time::Duration;

use addrsel_model::protocol::{AgentMessage, Facts, KmodStatus};
use addrsel_model::results::Report;

use crate::corpus::Loaded;
use crate::vm::qemu::Accel;

/// Called after every scenario: target, scenario, done, total, elapsed.
pub type Progress = dyn Fn(&str, &str, usize, usize, Duration) + Sync;

/// Everything a target needs to run the matrix's scenarios.
pub struct RunContext<'a> {
    pub scenarios: &'a [Loaded],
    /// This run's directory for logs and boot files.
    pub dir: &'a Path,
    /// Per-target deadline.
    pub deadline: Duration,
    /// Build and load the test kernel module where the target takes one.
    pub kmod: bool,
    /// The acceleration the user forced (`--accel`); `None`: decided per guest.
    pub accel: Option<Accel>,
    pub progress: &'a Progress,
}

impl RunContext<'_> {
    /// A target's log line, as the matrix prints them.
    pub fn log(&self, target: &str, message: &str) {
        eprintln!("  [{target}] {message}");
    }
}

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
    /// The agent said it finished.
    pub done: bool,
    /// A boot under KVM failed the way broken KVM fails (what was seen): worth a TCG retry.
    pub kvm_failure: Option<String>,
    /// The run was stopped by this signal (SIGINT, SIGTERM).
    pub interrupted: Option<i32>,
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
            done: false,
            kvm_failure: None,
            interrupted: None,
        }
    }

    pub fn not_run(mut self, reason: impl Into<String>) -> Self {
        self.not_run = Some(reason.into());
        self
    }

    /// Takes one agent message into the run (the same for the host's pipe, a Linux guest's
    /// results port and a FreeBSD guest's framed console). `elapsed`: time since the start.
    pub fn take(&mut self, message: AgentMessage, ctx: &RunContext, elapsed: Duration) {
        match message {
            AgentMessage::Facts(f) => self.facts = Some(f),
            AgentMessage::Scenario { report, setup_error, millis } => {
                (ctx.progress)(&self.name, &report.scenario, self.scenarios.len() + 1, ctx.scenarios.len(), elapsed);
                self.scenarios.push(ScenarioRun { report, setup_error, millis });
            }
            AgentMessage::Done => self.done = true,
        }
    }

    /// A test module that could not be built: the facts say so (the run then fails as a
    /// target problem).
    pub fn module_not_built(&mut self, why: Option<&str>) {
        if let (Some(why), Some(f)) = (why, self.facts.as_mut()) {
            f.kmod = Some(KmodStatus { ready: false, detail: format!("test module not built: {why}") });
        }
    }
}
