//! The host target on the real kernel: nothing is left behind after success, failure, a
//! panic in the agent, an aborted agent, SIGINT or SIGKILL; two runs at once both succeed;
//! bad scenarios fail before anything is configured; the unprivileged path reports honestly.
//!
//! These run real `cargo xtask matrix` processes and need root or unprivileged user
//! namespaces (CI runs as root). They are serialised: each compares the machine's state
//! before and after.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("addrsel-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a run could leave behind on the host: links in the host's network namespace,
/// mounts in the host's mount namespace, files in the temp directory, agent processes.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    links: BTreeSet<String>,
    mounts: BTreeSet<String>,
    temp: BTreeSet<String>,
    /// The host's own addresses, routes, address labels and resolver files: never changed.
    network: Vec<String>,
}

/// A command's output without the lifetimes that count down by themselves.
fn command_output(argv: &[&str]) -> String {
    let out = std::process::Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut kept = Vec::new();
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if matches!(w, "valid_lft" | "preferred_lft" | "expires") {
                words.next();
            } else {
                kept.push(w);
            }
        }
        lines.push(kept.join(" "));
    }
    lines.join("\n")
}

fn host_state() -> HostState {
    let links = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').skip(3).take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let temp = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        // Test scratch directories and a `cargo xtask fuzz` running beside are not the runs' own.
        .filter(|n| n.starts_with("addrsel") && !n.starts_with("addrsel-test-") && !n.starts_with("addrsel-fuzz-"))
        .collect();
    let mut network: Vec<String> = [
        &["ip", "-o", "addr", "show"][..],
        &["ip", "-4", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
        &["ip", "addrlabel", "list"],
    ]
    .iter()
    .map(|argv| command_output(argv))
    .collect();
    for f in ["/etc/gai.conf", "/etc/hosts"] {
        network.push(std::fs::read_to_string(f).unwrap_or_else(|e| format!("{f}: {e}")));
    }
    HostState { links, mounts, temp, network }
}

fn agent_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
            && exe.to_string_lossy().contains("addrsel-agent")
        {
            pids.push(pid);
        }
    }
    pids
}

fn wait_for_no_agents() {
    let start = Instant::now();
    while !agent_pids().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "agent processes survived: {:?}", agent_pids());
        std::thread::sleep(Duration::from_millis(50));
    }
}

const TEMPLATE: &str = include_str!("../../harness/scenarios/v4-via-v6-route.toml");

/// `n` copies of a real scenario under different names (slow enough to interrupt).
fn many_scenarios(dir: &Path, n: usize) {
    for i in 0..n {
        let text = TEMPLATE.replace("name = \"v4-via-v6-route\"", &format!("name = \"copy-{i:03}\""));
        std::fs::write(dir.join(format!("copy-{i:03}.toml")), text).unwrap();
    }
}

/// Starts a matrix run and returns once it reports `after` scenarios done.
fn start_and_wait(dir: &Path, after: usize, env: &[(&str, &str)]) -> Child {
    start_with(dir, after, env, &[])
}

fn start_with(dir: &Path, after: usize, env: &[(&str, &str)], extra: &[&str]) -> Child {
    let mut cmd = xtask();
    cmd.args(["matrix", "--targets", "host", "--no-snapshots", "--scenarios"]).arg(dir).args(extra);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Own process group, so SIGINT reaches the whole run as Ctrl-C would.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let marker = format!("] {after}/");
    let mut lines = BufReader::new(stderr).lines();
    let start = Instant::now();
    loop {
        let line = lines.next().expect("the run ended before reaching the marker").unwrap();
        if line.contains(&marker) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
    }
    // Keep draining stderr so the run never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2).
    assert_eq!(unsafe { libc_kill(pid, sig) }, 0);
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

#[test]
fn sigkill_midway_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let dir = scratch("sigkill");
    many_scenarios(&dir, 300);
    let mut child = start_and_wait(&dir, 20, &[]);
    signal(child.id() as i32, SIGKILL);
    let _ = child.wait();
    wait_for_no_agents();
    assert_eq!(host_state(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigint_midway_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let dir = scratch("sigint");
    many_scenarios(&dir, 300);
    let mut child = start_and_wait(&dir, 20, &[]);
    signal(-(child.id() as i32), SIGINT);
    let status = child.wait().unwrap();
    assert!(!status.success());
    wait_for_no_agents();
    assert_eq!(host_state(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

/// SIGINT and SIGTERM stop the run, clean up as always, and still print and write what
/// finished; the rest is marked interrupted; the exit status is 128 + the signal.
#[test]
fn interrupted_runs_keep_what_finished() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        let before = host_state();
        let dir = scratch("interrupted");
        many_scenarios(&dir, 300);
        let json = dir.join("out.json");
        // 50 ms per scenario: 15 s in all, so the signal always lands mid-run.
        let slow = [("ADDRSEL_AGENT_FAULT", "slow-scenarios:50")];
        let mut child = start_with(&dir, 20, &slow, &["--json", json.to_str().unwrap()]);
        signal(-(child.id() as i32), sig);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "signal {sig}");
        wait_for_no_agents();
        assert_eq!(host_state(), before);
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let cells = report["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 300);
        let count = |st: &str| cells.iter().filter(|c| c["status"] == st).count();
        assert!(count("agree") >= 20, "finished scenarios are kept: {} agree", count("agree"));
        let statuses: std::collections::BTreeMap<String, usize> = cells.iter().fold(Default::default(), |mut m, c| {
            *m.entry(c["status"].as_str().unwrap_or("?").to_string()).or_default() += 1;
            m
        });
        assert!(count("interrupted") > 0, "the rest is marked interrupted: {statuses:?}");
        assert_eq!(count("agree") + count("interrupted"), 300);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn panic_in_a_scenario_is_reported_and_cleaned_up() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let dir = scratch("panic");
    many_scenarios(&dir, 3);
    let out = xtask()
        .args(["matrix", "--targets", "host", "--no-snapshots", "--scenarios"])
        .arg(&dir)
        .env("ADDRSEL_AGENT_FAULT", "panic-in-scenario:copy-001")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("copy-001") && stdout.contains("SETUP FAILED"), "{stdout}");
    assert!(stdout.contains("the scenario's process exited with status"), "{stdout}");
    // The scenarios around it still ran and agreed.
    let agreeing_rows = stdout.lines().filter(|l| l.starts_with("copy-") && l.contains("agree")).count();
    assert_eq!(agreeing_rows, 2, "{stdout}");
    wait_for_no_agents();
    assert_eq!(host_state(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn aborted_agent_is_reported_and_cleaned_up() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let dir = scratch("abort");
    many_scenarios(&dir, 3);
    let out = xtask()
        .args(["matrix", "--targets", "host", "--no-snapshots", "--scenarios"])
        .arg(&dir)
        .env("ADDRSEL_AGENT_FAULT", "abort-agent:copy-001")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("stopped early"), "{stdout}");
    let failed_rows = stdout.lines().filter(|l| l.starts_with("copy-") && l.contains("SETUP FAILED")).count();
    assert_eq!(failed_rows, 2, "{stdout}");
    wait_for_no_agents();
    assert_eq!(host_state(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failed_setup_is_reported_with_the_command_and_cleaned_up() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let dir = scratch("setup");
    // The kernel already has this connected route: `ip route add` fails with EEXIST.
    let text = format!("{TEMPLATE}\n[[routes]]\nto = \"10.0.0.0/24\"\ndev = \"wlan0\"\n")
        .replace("v4-via-v6-route", "dup-route");
    std::fs::write(dir.join("dup.toml"), text).unwrap();
    let out =
        xtask().args(["matrix", "--targets", "host", "--no-snapshots", "--scenarios"]).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("SETUP FAILED"), "{stdout}");
    assert!(stdout.contains("ip route add 10.0.0.0/24 dev wlan0") && stdout.contains("File exists"), "{stdout}");
    wait_for_no_agents();
    assert_eq!(host_state(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn two_runs_at_once_both_succeed() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = host_state();
    let run =
        || xtask().args(["matrix", "--targets", "host"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (run(), run());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for_no_agents();
    assert_eq!(host_state(), before);
}

#[test]
fn bad_scenarios_fail_before_anything_runs() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("bad");
    many_scenarios(&dir, 1);
    std::fs::write(
        dir.join("zz-bad.toml"),
        "name = \"bad\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [\"10.0.0.1\"]\n",
    )
    .unwrap();
    let out = xtask().args(["matrix", "--targets", "host", "--scenarios"]).arg(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("zz-bad.toml:4:14: error: `10.0.0.1` is not ADDRESS/PREFIXLEN"), "{stderr}");
    assert!(!stderr.contains("[host]"), "nothing may run: {stderr}");
    assert!(agent_pids().is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Whether this kernel lets an unprivileged process make a user namespace, read from the
/// kernel's own switches (not from the agent under test).
fn unprivileged_userns_allowed() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|v| v.trim().to_string());
    read("/proc/sys/user/max_user_namespaces").is_some_and(|v| v != "0")
        && read("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v != "0")
        && read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_none_or(|v| v != "1")
}

/// Without root the agent uses an unprivileged user namespace; where the kernel disables
/// those it must say so instead of pretending. Which of the two must happen is decided from
/// the kernel's switches first.
#[test]
fn unprivileged_agent_runs_in_a_user_namespace_or_says_why_not() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let agent = addrsel_runner::agent_build::for_host().unwrap_or_else(|e| panic!("{e}"));
    let whoami = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&whoami.stdout).trim(), "0", "this test drops privileges, so it runs as root");
    let check = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&agent)
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    if !unprivileged_userns_allowed() {
        assert!(!check.status.success(), "{text}");
        assert!(
            text.starts_with("cannot run scenarios here: not root, and unprivileged user namespaces are unavailable"),
            "{text}"
        );
        return;
    }
    assert!(check.status.success(), "this kernel allows unprivileged user namespaces: {text}");
    assert_eq!(text.trim(), "ok: user namespace");
    // A whole scenario as nobody: same observations as the root run's snapshot.
    let plan = xtask().args(["repro", "--json", "harness/scenarios/v4-via-v6-route.toml"]).output().unwrap();
    let input = format!("{{\"target\":\"host\",\"plans\":[{}]}}", String::from_utf8_lossy(&plan.stdout));
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&agent)
        .arg("run")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"setup_error\":null"), "{text}");
    assert!(text.contains("\"source\":\"10.0.0.50\""), "{text}");
}

/// The verdict on a real run: an agent that reports a source the kernel did not pick makes
/// `matrix --targets host` fail with DISAGREE (and exit 1), snapshots aside.
#[test]
fn a_wrong_observation_is_a_disagreement() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = "harness/scenarios/v4-via-v6-route.toml";
    let out = xtask()
        .args(["matrix", "--targets", "host", "--no-snapshots", "--scenarios", scenario])
        .env("ADDRSEL_AGENT_FAULT", "wrong-source:v4-via-v6-route")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("v4-via-v6-route") && stdout.contains("DISAGREE"), "{stdout}");
    assert!(stdout.contains("observed 198.51.100.254"), "{stdout}");
    // The same run without the fault agrees.
    let out =
        xtask().args(["matrix", "--targets", "host", "--no-snapshots", "--scenarios", scenario]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}
