//! The `host` target: the running kernel and C library, each scenario in fresh namespaces.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use addrsel_model::plan;
use addrsel_model::protocol::{AgentInput, AgentMessage};

use crate::corpus::Loaded;
use crate::target::{Progress, TargetRun};

/// Builds the agent for the machine this runs on and returns its path.
pub fn build_agent() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(&cargo)
        .args(["build", "--quiet", "--package", "addrsel-agent", "--message-format=short"])
        .current_dir(&root)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the agent failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let target_dir = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let agent = target_dir.join("debug/addrsel-agent");
    if agent.exists() { Ok(agent) } else { Err(format!("the agent was built but {} is missing", agent.display())) }
}

/// Whether the agent can make namespaces here (root, or unprivileged user namespaces).
pub fn check(agent: &Path) -> Result<String, String> {
    let out = Command::new(agent).arg("check").output().map_err(|e| format!("cannot run the agent: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(text.trim_start_matches("cannot run scenarios here: ").to_string())
    }
}

/// Runs every scenario on the host kernel. Each scenario gets its own namespaces inside the
/// agent; the agent itself dies if this process dies.
pub fn run(scenarios: &[Loaded], log_dir: &Path, deadline: Duration, progress: &Progress) -> TargetRun {
    let name = "host";
    let mut run = TargetRun::new(name);
    let agent = match build_agent() {
        Ok(a) => a,
        Err(e) => return run.not_run(e),
    };
    if let Err(why) = check(&agent) {
        return run.not_run(format!("cannot create namespaces here: {why}"));
    }
    let input = AgentInput {
        target: name.into(),
        plans: scenarios.iter().map(|l| plan::linux(&l.scenario)).collect(),
        kmod: false,
    };
    let log_path = log_dir.join("host-agent.stderr");
    let stderr = match std::fs::File::create(&log_path) {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    };
    let start = Instant::now();
    let mut child =
        match Command::new(&agent).arg("run").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr).spawn() {
            Ok(c) => c,
            Err(e) => return run.not_run(format!("cannot start the agent: {e}")),
        };
    let json = serde_json::to_string(&input).expect("serialisable");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(json.as_bytes());
    }
    let stdout = child.stdout.take().expect("piped");
    let guard = crate::target::KillOnDrop(child);
    let mut done = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if start.elapsed() > deadline {
            break;
        }
        match serde_json::from_str::<AgentMessage>(&line) {
            Ok(AgentMessage::Facts(f)) => run.facts = Some(f),
            Ok(AgentMessage::Scenario { report, setup_error, millis }) => {
                progress(name, &report.scenario, run.scenarios.len() + 1, scenarios.len(), start.elapsed());
                run.scenarios.push(crate::target::ScenarioRun { report, setup_error, millis });
            }
            Ok(AgentMessage::Done) => {
                done = true;
                break;
            }
            Err(e) => run.log.push(format!("unreadable agent line ({e}): {line}")),
        }
    }
    drop(guard);
    run.total = start.elapsed();
    if !done {
        let why = if start.elapsed() > deadline {
            format!("the agent did not finish within {} s", deadline.as_secs())
        } else {
            format!("the agent stopped early; see {}", log_path.display())
        };
        run.error = Some(why);
    }
    run
}
