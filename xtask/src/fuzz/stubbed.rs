//! Runs a repro script in a real `/bin/sh` whose PATH holds only recording stubs, then checks
//! that the commands it ran are exactly its plan's, argument for argument, and that every
//! file it wrote holds exactly the plan's text. Scenario text that escaped its quoting would
//! run a command that is not in the plan (or one not found: the script stops), or change a
//! file; either is a finding.
//!
//! Stubs because the script's commands (`ip`, `mount`, `jail`, `ifconfig`...) would change
//! this machine and FreeBSD's do not exist here; what is checked is the shell's reading of
//! the script, which the stubs do not touch.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use addrsel_model::ProbeKind;
use addrsel_model::plan::{Place, Plan, PlanOs, Step};
use anyhow::{Context as _, bail, ensure};

/// Every command a Linux or FreeBSD repro script may run.
const COMMANDS: &[&str] = &[
    "addrsel-agent",
    "addrsel-resolve-musl",
    "addrsel-resolve-go",
    "addrsel-resolve-go-cgo",
    "addrsel-resolve-c-ares",
    "env",
    "ip",
    "mount",
    "umount",
    "unshare",
    "nsenter",
    "sleep",
    "kill",
    "rm",
    "rmdir",
    "mkdir",
    "mktemp",
    "readlink",
    "sysctl",
    "python3",
    "getent",
    "awk",
    "setfib",
    "jexec",
    "jail",
    "ifconfig",
    "route",
    "ip6addrctl",
];

/// One stub for every name: records its pid, name, arguments and stdin under
/// `$ADDRSEL_STUB_LOG/N.*`, N claimed with noclobber (builtins only, so it is cheap and safe
/// against the one background command; `true`, not `:`, whose failed redirection would end
/// the shell). `mktemp` and `mkdir` do their job in the scratch
/// directory, `readlink` echoes its argument (so the script's wait loop ends), `unshare` waits
/// to be killed by the script's exit trap (`kill` is a shell builtin), `mount` keeps a copy of
/// the file it would mount.
const STUB: &str = r#"#!/bin/sh
L="$ADDRSEL_STUB_LOG"
n=0
set -C
while ! true 2>/dev/null > "$L/$n.claim"; do n=$((n + 1)); done
printf '%s\0' "$$" "${0##*/}" "$@" > "$L/$n.argv"
/bin/cat > "$L/$n.stdin"
case "${0##*/}" in
  mktemp) /bin/mkdir -p "$ADDRSEL_STUB_SCRATCH/files" && echo "$ADDRSEL_STUB_SCRATCH/files" ;;
  mkdir) exec /bin/mkdir "$@" ;;
  readlink) printf '%s\n' "$1" ;;
  unshare) exec /bin/sleep 600 >/dev/null 2>&1 ;;
  mount) eval "src=\${$(($# - 1))}"; if [ -f "$src" ]; then /bin/cp "$src" "$L/$n.file"; fi ;;
  ip) case "$*" in "-6 addr show dev "*) printf '%s\n' "$ADDRSEL_STUB_IP_ADDRS" ;; esac ;;
  jexec) case "$*" in *" ifconfig "*" inet6") printf '%s\n' "$ADDRSEL_STUB_IFCONFIG" ;; esac ;;
esac
exit 0
"#;

static STUBS: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// The stub directory, made once per process (tests make it from several threads).
fn stub_dir() -> anyhow::Result<PathBuf> {
    let mut made = STUBS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = made.as_ref() {
        return Ok(d.clone());
    }
    let dir = std::env::temp_dir().join(format!("addrsel-fuzz-stubs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stub = dir.join("stub");
    std::fs::write(&stub, STUB).with_context(|| format!("writing {}", stub.display()))?;
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    for name in COMMANDS {
        let link = dir.join(name);
        std::os::unix::fs::symlink("stub", &link).with_context(|| format!("linking {}", link.display()))?;
    }
    *made = Some(dir.clone());
    Ok(dir)
}

/// Removes the stub directory (the end of a fuzz run).
pub fn remove_stubs() {
    let made = STUBS.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(dir) = made {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// One recorded call.
#[derive(Debug)]
struct Call {
    pid: String,
    argv: Vec<String>,
    stdin: Vec<u8>,
    /// What `mount` would have mounted, when it was a file.
    file: Option<Vec<u8>>,
}

fn calls(log: &Path) -> anyhow::Result<Vec<Call>> {
    let mut out = Vec::new();
    for n in 0.. {
        let argv = log.join(format!("{n}.argv"));
        if !log.join(format!("{n}.claim")).exists() {
            break;
        }
        let raw = std::fs::read(&argv).with_context(|| format!("reading {}", argv.display()))?;
        let mut fields: Vec<String> = raw.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        fields.pop(); // after the last NUL
        ensure!(fields.len() >= 2, "a stub record without a name: {fields:?}");
        let pid = fields.remove(0);
        out.push(Call {
            pid,
            argv: fields,
            stdin: std::fs::read(log.join(format!("{n}.stdin"))).unwrap_or_default(),
            file: std::fs::read(log.join(format!("{n}.file"))).ok(),
        });
    }
    Ok(out)
}

/// What the stubs should record for one plan, given the values only the run knows.
struct Expected {
    argv: Vec<String>,
    stdin: String,
    /// The content `mount` must see (Linux private files).
    file: Option<String>,
    /// Where a probe's python code is in `argv` (checked only for being python's).
    probe: Option<usize>,
}

fn fill(arg: &str, peer: &str, dir: &str) -> String {
    let mut out = arg
        .replace("{peer}", peer)
        .replace("{jail}", "addrsel_repro")
        .replace("{dir}", dir)
        .replace("{agent}", "addrsel-agent");
    while let Some(start) = out.find("{epair") {
        let end = start + out[start..].find('}').expect("a closed placeholder");
        let index: usize = out[start + 6..end].parse().expect("a numbered epair");
        out.replace_range(start..=end, &format!("epair{}", 200 + index));
    }
    out
}

/// What the stub `ip -6 addr show` prints: every address a WaitAddress step waits for, in the
/// state it waits for.
fn awaited(plan: &Plan) -> String {
    plan.setup
        .iter()
        .filter_map(|s| match s {
            Step::WaitAddress { addr, flag, .. } => Some(format!("    inet6 {addr}/64 scope global {flag} tentative")),
            Step::WaitTemporary { prefix, .. } => {
                Some(format!("    inet6 {}/64 scope global temporary dynamic", prefix.addr()))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the stub `jexec JAIL ifconfig DEV inet6` prints: FreeBSD's lines for the same.
fn awaited_freebsd(plan: &Plan) -> String {
    plan.setup
        .iter()
        .filter_map(|s| match s {
            Step::WaitAddress { addr, flag, .. } => Some(format!("\tinet6 {addr} prefixlen 64 {flag}")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn expected(plan: &Plan, peer: &str, dir: &str, files: &str) -> Vec<Expected> {
    let prefix = |place: Place| -> Vec<String> {
        match (plan.os, place) {
            (PlanOs::Linux, Place::Peer) => vec!["nsenter".into(), "--target".into(), peer.into(), "--net".into()],
            (PlanOs::Freebsd, Place::Scenario) => vec!["jexec".into(), "addrsel_repro".into()],
            (PlanOs::Freebsd, Place::Peer) => vec!["jexec".into(), "addrsel_repro_peer".into()],
            _ => vec![],
        }
    };
    let mut out = Vec::new();
    let mut private = 0;
    let mut step = |s: &Step, out: &mut Vec<Expected>| match s {
        Step::Run { place, argv, stdin, .. } => {
            let mut a = prefix(*place);
            a.extend(argv.iter().map(|x| fill(x, peer, dir)));
            out.push(Expected { argv: a, stdin: stdin.clone().unwrap_or_default(), file: None, probe: None });
        }
        Step::Sysctl { place, key, value } => {
            let mut a = prefix(*place);
            a.push("sysctl".into());
            if plan.os == PlanOs::Linux {
                a.push("-qw".into());
            }
            a.push(format!("{key}={value}"));
            out.push(Expected { argv: a, stdin: String::new(), file: None, probe: None });
        }
        Step::PrivateFile { target, content } => {
            let argv = vec!["mount".into(), "--bind".into(), format!("{files}/{private}"), target.clone()];
            private += 1;
            out.push(Expected { argv, stdin: String::new(), file: Some(content.clone()), probe: None });
        }
        Step::WriteFile { .. } => {}
        // The stub `ip` (`jexec ... ifconfig`) shows the awaited state at once: one call.
        Step::WaitAddress { dev, .. } if plan.os == PlanOs::Freebsd => {
            let argv = ["jexec", "addrsel_repro", "ifconfig", dev, "inet6"].map(String::from).into();
            out.push(Expected { argv, stdin: String::new(), file: None, probe: None });
        }
        Step::WaitAddress { dev, .. } | Step::WaitTemporary { dev, .. } => {
            let argv = ["ip", "-6", "addr", "show", "dev", dev].map(String::from).into();
            out.push(Expected { argv, stdin: String::new(), file: None, probe: None });
        }
    };
    for s in &plan.setup {
        step(s, &mut out);
    }
    for p in &plan.probes {
        let (place, args) = match &p.kind {
            ProbeKind::Connect { dst, zone: Some(z) } => (Place::Scenario, vec![format!("{dst}%{z}")]),
            ProbeKind::Connect { dst, zone: None } => (Place::Scenario, vec![dst.to_string()]),
            ProbeKind::Resolve { name, resolver } if !resolver.is_glibc() => {
                // The resolver's own probe program, no python.
                let (program, env) = addrsel_model::plan::resolver_command(*resolver).expect("not glibc");
                let mut argv = prefix(Place::Scenario);
                if let Some((k, v)) = env {
                    argv.extend(["env".to_string(), format!("{k}={v}")]);
                }
                argv.extend([program.to_string(), name.clone()]);
                out.push(Expected { argv, stdin: String::new(), file: None, probe: None });
                continue;
            }
            ProbeKind::Resolve { name, .. } => (Place::Scenario, vec![name.clone()]),
            // FreeBSD's script only says it has no sender; Linux's sends from the peer.
            ProbeKind::IcmpTimeExceeded { .. } if plan.os == PlanOs::Freebsd => continue,
            ProbeKind::IcmpTimeExceeded { to, sender, .. } => (Place::Peer, vec![sender.to_string(), to.to_string()]),
        };
        let mut argv = prefix(place);
        if let Some(fib) = p.fib {
            argv.extend(["setfib".to_string(), fib.to_string()]);
        }
        argv.extend(["python3".to_string(), "-c".to_string(), String::new()]);
        let code = argv.len() - 1;
        argv.extend(args);
        out.push(Expected { argv, stdin: String::new(), file: None, probe: Some(code) });
    }
    for s in &plan.cleanup {
        step(s, &mut out);
    }
    out
}

fn scratch() -> anyhow::Result<PathBuf> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d =
        std::env::temp_dir().join(format!("addrsel-fuzz-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(d.join("log")).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Runs `script` (generated from `plan`) under the stubs and checks what it did.
pub fn check(plan: &Plan, script: &str) -> anyhow::Result<()> {
    let stubs = stub_dir()?;
    let scratch = scratch()?;
    let result = run_and_compare(plan, script, &stubs, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run_and_compare(plan: &Plan, script: &str, stubs: &Path, scratch: &Path) -> anyhow::Result<()> {
    let dir = scratch.join("dir").to_str().context("a UTF-8 temp dir")?.to_string();
    // FreeBSD's script works under a fixed directory; point it at the scratch directory.
    let script = match plan.os {
        PlanOs::Freebsd => {
            let fixed = "\ndir=/tmp/addrsel-repro\n";
            ensure!(script.matches(fixed).count() == 1, "the FreeBSD script does not set dir once");
            script.replacen(fixed, &format!("\ndir={dir}\n"), 1)
        }
        PlanOs::Linux => script.to_string(),
    };
    let log = scratch.join("log");
    let mut shell = Command::new("/bin/sh");
    // Its own process group, so the stub peer can be ended with it.
    std::os::unix::process::CommandExt::process_group(&mut shell, 0);
    let out = shell
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", stubs)
        .env("ADDRSEL_STUB_LOG", &log)
        .env("ADDRSEL_STUB_SCRATCH", scratch)
        .env("ADDRSEL_STUB_IP_ADDRS", awaited(plan))
        .env("ADDRSEL_STUB_IFCONFIG", awaited_freebsd(plan))
        .current_dir(scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running /bin/sh")?;
    let group = out.id() as libc::pid_t;
    let out = out.wait_with_output().context("running /bin/sh");
    // The stub peer outlives a script that failed before its exit trap.
    // SAFETY: killpg has no memory effects; the group is the shell's own.
    unsafe { libc::killpg(group, libc::SIGKILL) };
    let out = out?;
    ensure!(
        out.status.success(),
        "the script failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut calls = calls(&log)?;
    let files = scratch.join("files").to_str().context("a UTF-8 temp dir")?.to_string();

    // Linux's preamble: one background peer, the wait loop, and the exit trap.
    // FreeBSD's peer is a jail of a fixed name.
    let mut peer = String::from("addrsel_repro_peer");
    if plan.os == PlanOs::Linux {
        let Some(unshare) = calls.iter().find(|c| c.argv == ["unshare", "--net", "sleep", "infinity"]) else {
            bail!("no peer namespace was started");
        };
        peer = unshare.pid.clone();
        let preamble: Vec<Vec<String>> = [
            vec!["mktemp", "-d"],
            vec!["unshare", "--net", "sleep", "infinity"],
            vec!["readlink", &format!("/proc/{peer}/ns/net")],
            vec!["readlink", "/proc/self/ns/net"],
            vec!["rm", "-rf", &files],
        ]
        .iter()
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .collect();
        for p in &preamble {
            let n = calls.iter().filter(|c| &c.argv == p).count();
            ensure!(n == 1, "{p:?} ran {n} times, not once");
        }
        calls.retain(|c| !preamble.contains(&c.argv));
    }

    let want = expected(plan, &peer, &dir, &files);
    for (i, (w, c)) in want.iter().zip(&calls).enumerate() {
        let mut got = c.argv.clone();
        if let Some(code) = w.probe {
            ensure!(got.get(code).is_some_and(|c| c.starts_with("import ")), "call {i}: not a python probe: {got:?}");
            got[code].clear();
        }
        ensure!(got == w.argv, "call {i}: ran {:?}, the plan says {:?}", c.argv, w.argv);
        ensure!(
            c.stdin == w.stdin.as_bytes(),
            "call {i} {:?}: stdin {:?}, the plan says {:?}",
            w.argv,
            String::from_utf8_lossy(&c.stdin),
            w.stdin
        );
        if let Some(content) = &w.file {
            ensure!(
                c.file.as_deref() == Some(content.as_bytes()),
                "call {i} {:?}: mounted {:?}, the plan says {content:?}",
                w.argv,
                c.file.as_deref().map(String::from_utf8_lossy)
            );
        }
    }
    ensure!(
        calls.len() == want.len(),
        "{} calls ran, the plan has {}: extra {:?}",
        calls.len(),
        want.len(),
        calls.iter().skip(want.len()).map(|c| &c.argv).collect::<Vec<_>>()
    );

    // FreeBSD's files are written by the script itself (their removal is stubbed).
    let mut written = std::collections::BTreeMap::new();
    for s in plan.setup.iter().chain(&plan.cleanup) {
        if let Step::WriteFile { path, content } = s {
            written.insert(fill(path, &peer, &dir), content);
        }
    }
    for (path, content) in written {
        let got = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
        ensure!(
            got == content.as_bytes(),
            "{path} holds {:?}, the plan says {content:?}",
            String::from_utf8_lossy(&got)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use addrsel_model::parse_scenario;
    use addrsel_model::plan::{self, printf_exact};

    const SCENARIO: &str = r#"
name = "stubbed"
[[interfaces]]
name = "eth0"
addresses = ["10.0.0.2/24", "2001:db8:1::2/64"]
[[routes]]
to = "::/0"
via = "2001:db8:1::1"
[hosts]
"dual.example" = ["2001:db8:2::1", "198.51.100.1"]
[policy.linux]
gai_conf = "label ::/0 1\nADDRSEL_EOF\n'quoted' \"$(x)\" `y`\n"
[policy.freebsd]
ip6addrctl_conf = "::/0 40 1\n"
[[probes]]
id = "c"
connect = "2001:db8:2::1"
[[probes]]
id = "r"
resolve = "dual.example"
"#;

    fn scenario() -> addrsel_model::Scenario {
        parse_scenario("stubbed.toml", SCENARIO).unwrap().scenario
    }

    #[test]
    fn generated_scripts_do_what_their_plans_say() {
        let s = scenario();
        for p in [plan::linux(&s), plan::freebsd(&s)] {
            super::check(&p, &plan::repro_script(&p, &s)).unwrap();
        }
    }

    /// Every corpus scenario's repro scripts, both OSes, run under the stubs exactly as planned
    /// (route types, agent subcommands, waits for address states, resolver programs).
    #[test]
    fn every_corpus_script_does_what_its_plan_says() {
        let dir = addrsel_runner::corpus::builtin_dir();
        let mut checked = 0;
        for f in addrsel_runner::corpus::expand(&[dir]).unwrap() {
            let text = std::fs::read_to_string(&f).unwrap();
            let s = parse_scenario(&f.display().to_string(), &text).unwrap().scenario;
            for p in [plan::linux(&s), plan::freebsd(&s)] {
                super::check(&p, &plan::repro_script(&p, &s))
                    .unwrap_or_else(|e| panic!("{} ({:?}): {e:#}", f.display(), p.os));
                checked += 1;
            }
        }
        assert!(checked >= 100, "only {checked} scripts");
    }

    /// The fault issue 16 found: a heredoc that the file's own text ends.
    #[test]
    fn a_heredoc_that_the_text_ends_is_caught() {
        let s = scenario();
        let p = plan::linux(&s);
        let gai = s.policy.linux.as_ref().unwrap().gai_conf.clone().unwrap();
        let script = plan::repro_script(&p, &s);
        let heredoc = format!("sh -c 'cat' <<'ADDRSEL_EOF'\n{gai}ADDRSEL_EOF\n");
        let bad = script.replacen(&printf_exact(&gai), &heredoc, 1);
        assert_ne!(bad, script);
        let err = super::check(&p, &bad).unwrap_err().to_string();
        assert!(err.contains("the script failed"), "{err}");
    }

    /// A script that runs one command more, or writes other text, than its plan.
    #[test]
    fn an_extra_command_or_other_text_is_caught() {
        let s = scenario();
        let p = plan::linux(&s);
        let script = plan::repro_script(&p, &s);
        let extra = script.replacen("ip link set dev lo up\n", "ip link set dev lo up\nip link del eth0\n", 1);
        let err = super::check(&p, &extra).unwrap_err().to_string();
        assert!(err.contains("ip\", \"link\", \"del\""), "{err}");
        let gai = s.policy.linux.as_ref().unwrap().gai_conf.clone().unwrap();
        let other = script.replacen(&printf_exact(&gai), &printf_exact("label ::/0 1\n"), 1);
        let err = super::check(&p, &other).unwrap_err().to_string();
        assert!(err.contains("mounted"), "{err}");

        let p = plan::freebsd(&s);
        let script = plan::repro_script(&p, &s);
        let other = script.replacen("::/0 40 1", "::/0 40 2", 1);
        assert_ne!(other, script);
        let err = super::check(&p, &other).unwrap_err().to_string();
        assert!(err.contains("stdin"), "{err}");
    }
}
