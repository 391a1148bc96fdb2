//! The `host` target: the running kernel and C library, each scenario in fresh namespaces.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use addrsel_model::protocol::{AgentInput, AgentMessage};
use addrsel_model::{Os, plan};
use anyhow::Context as _;

use crate::process::KillOnDrop;
use crate::targets::run::{RunContext, TargetRun};

/// The OS the host target is: the one this program runs on (FreeBSD runs each scenario in a
/// VNET jail with the same agent, Linux in namespaces).
pub fn os() -> Os {
    if cfg!(target_os = "freebsd") { Os::Freebsd } else { Os::Linux }
}

/// The plans the host's agent runs: its OS's.
pub fn plans(os: Os, scenarios: &[crate::corpus::Loaded]) -> Vec<plan::Plan> {
    scenarios
        .iter()
        .map(|l| if os == Os::Freebsd { plan::freebsd(&l.scenario) } else { plan::linux(&l.scenario) })
        .collect()
}

/// Whether the agent can make namespaces here (root, or unprivileged user namespaces).
pub fn check(agent: &Path) -> anyhow::Result<String> {
    let out = Command::new(agent).arg("check").output().with_context(|| format!("cannot run {}", agent.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(text)
    } else {
        anyhow::bail!("{}", text.trim_start_matches("cannot run scenarios here: "))
    }
}

/// Runs every scenario on the host kernel. Each scenario gets its own namespaces inside the
/// agent; the agent itself dies if this process dies. The deadline is kept by a timer, not
/// by the agent's output: a scenario that never ends is stopped on time, and what finished
/// before it is kept.
pub fn run(ctx: &RunContext) -> TargetRun {
    let name = "host";
    let mut run = TargetRun::new(name);
    let agent = match crate::agent_build::for_host() {
        Ok(a) => a,
        Err(e) => return run.not_run(format!("{e:#}")),
    };
    if let Err(why) = check(&agent) {
        return run.not_run(format!("cannot create namespaces here: {why:#}"));
    }
    // The resolver probes only when a scenario asks for one: building them takes a minute.
    let wants_resolvers = ctx.scenarios.iter().any(|l| {
        l.scenario
            .probes
            .iter()
            .any(|p| matches!(&p.kind, addrsel_model::ProbeKind::Resolve { resolver, .. } if !resolver.is_glibc()))
    });
    let resolver_dir = if wants_resolvers {
        match crate::resolvers::for_host(&|m: &str| ctx.log(name, m)) {
            Ok(d) => Some(d.display().to_string()),
            Err(e) => {
                ctx.log(name, &format!("no resolver probes: {e:#}"));
                None
            }
        }
    } else {
        None
    };
    let input = AgentInput { target: name.into(), plans: plans(os(), ctx.scenarios), kmod: false, resolver_dir };
    let log_path = ctx.dir.join("host-agent.stderr");
    let stderr = match std::fs::File::create(&log_path) {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    };
    let start = Instant::now();
    let mut child =
        match Command::new(&agent).arg("run").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr).spawn() {
            Ok(c) => c,
            Err(e) => return run.not_run(format!("cannot start the agent {}: {e}", agent.display())),
        };
    let json = serde_json::to_string(&input).expect("serialisable");
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut guard = KillOnDrop(child);
    // The input can be larger than a pipe holds: write it from a thread too.
    std::thread::spawn(move || {
        let _ = stdin.write_all(json.as_bytes());
    });
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = start + ctx.deadline;
    let mut timed_out = false;
    while !run.done {
        if let Some(sig) = crate::interrupt::requested() {
            run.interrupted = Some(sig);
            break;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        // In slices, so an interrupt is noticed promptly.
        match rx.recv_timeout(left.min(std::time::Duration::from_millis(100))) {
            Ok(line) => match serde_json::from_str::<AgentMessage>(&line) {
                Ok(m) => run.take(m, ctx, start.elapsed()),
                Err(e) => run.log.push(format!("unreadable agent line ({e}): {line}")),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // The agent shares the terminal's process group: a Ctrl-C may end it before the loop
    // saw the flag, even before this process's handler ran. An agent ended by SIGINT or
    // SIGTERM while the run was not done means the run was interrupted.
    let ended_by = if run.done || timed_out || run.interrupted.is_some() {
        None
    } else {
        guard.0.wait().ok().and_then(|st| std::os::unix::process::ExitStatusExt::signal(&st))
    };
    drop(guard);
    run.total = start.elapsed();
    if !run.done {
        run.interrupted = run
            .interrupted
            .or(crate::interrupt::requested())
            .or(ended_by.filter(|s| [libc::SIGINT, libc::SIGTERM].contains(s)));
    }
    if let Some(sig) = run.interrupted {
        run.error = Some(format!("interrupted by {}", crate::interrupt::name(sig)));
    } else if !run.done {
        run.error = Some(if timed_out {
            format!(
                "the agent did not finish within {} s and was stopped; {} of {} scenarios finished",
                ctx.deadline.as_secs(),
                run.scenarios.len(),
                ctx.scenarios.len()
            )
        } else {
            format!("the agent stopped early; see {}", log_path.display())
        });
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On FreeBSD the host target's agent gets FreeBSD plans (VNET jails), on Linux Linux's;
    /// this machine is Linux, so the FreeBSD side is checked as data.
    #[test]
    fn the_host_runs_its_own_os_plans() {
        let scenarios = crate::corpus::load(&[crate::corpus::builtin_dir()]).unwrap();
        assert_eq!(os(), Os::Linux);
        let freebsd = plans(Os::Freebsd, &scenarios);
        let linux = plans(Os::Linux, &scenarios);
        assert_eq!(freebsd.len(), scenarios.len());
        assert!(freebsd.iter().all(|p| p.os == plan::PlanOs::Freebsd));
        assert!(linux.iter().all(|p| p.os == plan::PlanOs::Linux));
        let all = crate::targets::all().unwrap();
        assert_eq!((all[0].name.as_str(), all[0].os), ("host", Os::Linux));
    }
}
