//! Every known target, whether it can run here, and how to run it.

use std::path::Path;
use std::time::Duration;

use addrsel_model::Os;

use crate::corpus::Loaded;
use crate::target::{Progress, TargetRun};

#[derive(Clone, Debug)]
pub enum Kind {
    /// The running kernel, in namespaces.
    Host,
}

#[derive(Clone, Debug)]
pub struct TargetDef {
    pub name: String,
    pub os: Os,
    pub description: String,
    pub kind: Kind,
}

/// Every target addrsel knows, in report order.
pub fn all() -> Vec<TargetDef> {
    vec![TargetDef {
        name: "host".into(),
        os: Os::Linux,
        description: "this machine's Linux kernel and glibc, each scenario in fresh namespaces"
            .into(),
        kind: Kind::Host,
    }]
}

/// Whether a target can run on this machine, and why not.
pub fn availability(t: &TargetDef) -> Result<String, String> {
    match t.kind {
        Kind::Host => {
            if std::env::consts::OS != "linux" {
                return Err(format!(
                    "the host target needs Linux (this is {})",
                    std::env::consts::OS
                ));
            }
            let agent = crate::host::build_agent()?;
            crate::host::check(&agent)
        }
    }
}

pub fn run(
    t: &TargetDef,
    scenarios: &[Loaded],
    dir: &Path,
    deadline: Duration,
    progress: &Progress,
) -> TargetRun {
    match t.kind {
        Kind::Host => crate::host::run(scenarios, dir, deadline, progress),
    }
}
