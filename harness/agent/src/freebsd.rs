//! FreeBSD: every scenario runs in its own VNET jail, built and torn down by the plan's
//! commands (`ifconfig`, `jail`, `route`, `ip6addrctl`); probes run inside the jail by
//! re-running this binary there with `jexec`.
//!
//! NOTE: FreeBSD cannot be booted where addrsel is developed; this file is compiled only on
//! FreeBSD (or in CI for users whose runners reach FreeBSD's download site).

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use addrsel_model::plan::{Place, Plan, Step};
use addrsel_model::results::{Outcome, ProbeResult, Report};

static mut COUNTER: u32 = 0;

fn next_instance() -> u32 {
    // SAFETY: the agent is single-threaded.
    unsafe {
        COUNTER += 1;
        COUNTER
    }
}

struct Instance {
    vars: HashMap<String, String>,
}

impl Instance {
    /// What a command at `place` is prefixed with: `jexec` into the scenario's or the peer's
    /// jail, nothing on the machine itself.
    fn jexec(&self, place: Place) -> Vec<String> {
        match place {
            Place::Scenario => vec!["jexec".into(), self.vars["jail"].clone()],
            Place::Peer => vec!["jexec".into(), self.vars["peer"].clone()],
            Place::Host => Vec::new(),
        }
    }

    fn fill(&self, arg: &str) -> String {
        let mut out = arg.to_string();
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }
}

fn run_cmd(argv: &[String], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| format!("`{}`: cannot run {}: {e}", argv.join(" "), argv[0]))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        let _ = input.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`{}` exited with {}: {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apply(inst: &mut Instance, step: &Step) -> Result<(), String> {
    match step {
        Step::Run { place, argv, stdin, fails } => {
            // `ifconfig {epairN} create`: let the kernel pick a free unit, remember it.
            if argv.len() == 3 && argv[0] == "ifconfig" && argv[2] == "create" && argv[1].starts_with("{epair") {
                let key = argv[1].trim_matches(['{', '}']).to_string();
                let name = run_cmd(&["ifconfig".into(), "epair".into(), "create".into()], None)?;
                let unit = name.trim().trim_end_matches('a').to_string();
                inst.vars.insert(key, unit);
                return Ok(());
            }
            let mut full: Vec<String> = argv.iter().map(|a| inst.fill(a)).collect();
            full.splice(0..0, inst.jexec(*place));
            match (run_cmd(&full, stdin.as_deref()), fails) {
                (Ok(_), Some(why)) => Err(format!("`{}` was expected to fail ({why}) but succeeded", full.join(" "))),
                (Err(_), Some(_)) => Ok(()),
                (result, None) => result.map(|_| ()),
            }
        }
        Step::Sysctl { place, key, value } => {
            let mut argv = vec!["sysctl".to_string(), format!("{key}={value}")];
            argv.splice(0..0, inst.jexec(*place));
            run_cmd(&argv, None).map(|_| ())
        }
        Step::WriteFile { path, content } => {
            let path = inst.fill(path);
            std::fs::write(&path, content).map_err(|e| format!("{path}: {e}"))
        }
        Step::PrivateFile { target, .. } => Err(format!("PrivateFile ({target}) is a Linux step")),
        Step::WaitAddress { dev, addr, flag, timeout_ms } => {
            // `ifconfig DEV inet6` prints one line per address: `inet6 ADDR prefixlen N FLAGS`.
            let argv = [inst.jexec(Place::Scenario), vec!["ifconfig".into(), dev.clone(), "inet6".into()]].concat();
            let head = format!("inet6 {addr} ");
            let deadline = std::time::Instant::now() + Duration::from_millis(*timeout_ms);
            loop {
                let text = run_cmd(&argv, None)?;
                let shown = text.lines().map(str::trim).find(|l| l.starts_with(&head));
                if shown.is_some_and(|l| l.split_whitespace().any(|w| w == flag)) {
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("{addr} on {dev} never became {flag}: {}", shown.unwrap_or("not shown")));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Step::WaitTemporary { dev, .. } => Err(format!("WaitTemporary ({dev}) is a Linux step")),
    }
}

pub fn run_plan(plan: &Plan, target: &str, kmod: bool) -> (Report, Option<String>) {
    let mut report = Report { scenario: plan.scenario.clone(), target: target.to_string(), results: vec![] };
    if !plan.unsupported.is_empty() {
        let reason = plan.unsupported.join("; ");
        report.results = plan
            .probes
            .iter()
            .map(|p| ProbeResult { probe: p.id.clone(), outcome: Outcome::Unsupported { reason: reason.clone() } })
            .collect();
        return (report, None);
    }
    static READY: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    if let Err(why) = READY.get_or_init(check) {
        return (report, Some(format!("scenarios cannot run here: {why}")));
    }
    let n = next_instance();
    let pid = std::process::id();
    let mut inst = Instance { vars: HashMap::new() };
    inst.vars.insert("jail".into(), format!("addrsel_{pid}_{n}"));
    inst.vars.insert("peer".into(), format!("addrsel_{pid}_{n}_peer"));
    inst.vars.insert("dir".into(), format!("/tmp/addrsel-{pid}-{n}"));
    // The jail sees the root file system, where check() made sure the agent lives.
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
    inst.vars.insert("agent".into(), exe);
    let mut error = None;
    for (i, step) in plan.setup.iter().enumerate() {
        if let Err(e) = apply(&mut inst, step) {
            error = Some(format!("setup step {} failed: {e}", i + 1));
            break;
        }
    }
    if error.is_none() {
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
        let probes = serde_json::to_string(&plan.probes).expect("serialisable");
        let mut argv = vec!["jexec".into(), inst.vars["jail"].clone(), exe, "probe".into()];
        if kmod {
            argv.push("--kmod".into());
        }
        if let Some(dir) = crate::probe::resolver_dir() {
            argv.extend(["--resolvers".into(), dir.display().to_string()]);
        }
        match run_cmd(&argv, Some(&probes)) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(results) => report.results = results,
                Err(e) => error = Some(format!("probes answered badly: {e}")),
            },
            Err(e) => error = Some(format!("running the probes in the jail: {e}")),
        }
    }
    // Cleanup always runs, whatever failed; later steps still run when one fails.
    let mut cleanup_errors = Vec::new();
    for step in &plan.cleanup {
        if let Err(e) = apply(&mut inst, step) {
            cleanup_errors.push(e);
        }
    }
    if !cleanup_errors.is_empty() && error.is_none() {
        error = Some(format!("cleanup failed: {}", cleanup_errors.join("; ")));
    }
    std::thread::sleep(Duration::from_millis(10));
    (report, error)
}

pub fn check() -> Result<String, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("FreeBSD scenarios need root (jails, epair interfaces)".into());
    }
    let vimage = run_cmd(&["sysctl".into(), "-n".into(), "kern.features.vimage".into()], None).unwrap_or_default();
    if vimage.trim() != "1" {
        return Err("this kernel has no VIMAGE (VNET jails)".into());
    }
    // Jails see a read-only nullfs view of `/`, which does not show other file systems
    // mounted below it: the agent must live on the root file system to run inside them.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
    if dev(&exe).map_err(|e| e.to_string())? != dev(std::path::Path::new("/")).map_err(|e| e.to_string())? {
        return Err(format!(
            "{} is not on the root file system, so jails cannot run it; copy it to /var",
            exe.display()
        ));
    }
    Ok("root with VIMAGE".into())
}
