//! What the runner sends the agent and what the agent answers, one JSON value per line.

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::results::Report;

/// The agent's input: every scenario of one target, run one after another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInput {
    /// The target name to put into every report.
    pub target: String,
    pub plans: Vec<Plan>,
    /// Also ask the test kernel module (when it is loaded) for every connect probe.
    #[serde(default)]
    pub kmod: bool,
}

/// Facts about the system the agent runs on, which the engine's profile depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub os: String,
    pub kernel: String,
    pub arch: String,
    /// glibc version (`gnu_get_libc_version`), if the agent is linked against glibc.
    pub glibc: Option<String>,
    /// `CONFIG_IPV6_MIP6` from the kernel's config, when the config could be read.
    pub mip6: Option<bool>,
    /// Where the kernel config came from (or why it could not be read).
    pub kernel_config: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Facts(Facts),
    /// One scenario finished (or failed to set up).
    Scenario {
        report: Report,
        /// The plan step that failed and what it printed, if setup failed.
        setup_error: Option<String>,
        /// Wall time of setup + probes.
        millis: u64,
    },
    /// Everything ran; the agent exits next.
    Done,
}
