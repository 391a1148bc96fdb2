//! The serial-console driver FreeBSD guests need, against a real Linux guest booted to a
//! root login prompt (the console-login variant of linux-bookworm-amd64): it logs in, runs
//! the agent with framed output, and reads back the same results the virtio port carries;
//! it notices a kernel panic and a hang.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use addrsel_model::protocol::AgentMessage;
use addrsel_runner::corpus::{self, Loaded};
use addrsel_runner::linux::{image as debian, vm as linux_vm};
use addrsel_runner::targets::run::RunContext;

static SERIAL: Mutex<()> = Mutex::new(());

fn image() -> debian::ImageDef {
    debian::load_image(&debian::images_dir().join("bookworm-amd64.toml")).unwrap()
}

fn scenarios(names: &[&str]) -> Vec<Loaded> {
    let paths: Vec<PathBuf> = names.iter().map(|n| corpus::builtin_dir().join(format!("{n}.toml"))).collect();
    corpus::load(&paths).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("addrsel-test-console-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn qemu_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|x| x.to_string_lossy().contains("qemu-system")))
        .count()
}

#[test]
fn console_login_results_match_the_virtio_port() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let def = image();
    let set = scenarios(&["v4-via-v6-route", "ula-only-host-prefers-ipv4"]);
    let dir = scratch("match");
    let messages = linux_vm::console_session(
        &def,
        &set,
        &dir,
        "/init run --framed < /etc/addrsel/input.json",
        Duration::from_secs(120),
        None,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let console: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::Scenario { report, setup_error: None, .. } => Some(report.clone()),
            _ => None,
        })
        .collect();
    assert!(matches!(messages.last(), Some(AgentMessage::Done)), "{messages:?}");
    assert_eq!(console.len(), 2);
    let progress = |_: &str, _: &str, _: usize, _: usize, _: Duration| {};
    let ctx = RunContext {
        scenarios: &set,
        dir: &dir,
        deadline: Duration::from_secs(120),
        kmod: false,
        accel: None,
        progress: &progress,
    };
    let run = linux_vm::run(&def, &ctx);
    assert!(run.error.is_none() && run.not_run.is_none(), "{run:?}");
    let virtio: Vec<_> = run.scenarios.iter().map(|s| s.report.clone()).collect();
    assert_eq!(console, virtio);
    assert_eq!(qemu_processes(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn console_driver_reports_a_kernel_panic() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("panic");
    let err = linux_vm::console_session(
        &image(),
        &scenarios(&["v4-via-v6-route"]),
        &dir,
        "echo c > /proc/sysrq-trigger",
        Duration::from_secs(120),
        None,
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.starts_with("guest kernel panic"), "{err}");
    assert!(err.contains("sysrq"), "the last console lines are quoted: {err}");
    assert_eq!(qemu_processes(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn console_driver_gives_up_on_a_hang() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("hang");
    let err = linux_vm::console_session(
        &image(),
        &scenarios(&["v4-via-v6-route"]),
        &dir,
        "sleep 600",
        Duration::from_secs(20),
        None,
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.starts_with("timed out waiting for the agent's results"), "{err}");
    assert_eq!(qemu_processes(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

/// FreeBSD's whole flow on a real guest: the payload disk (a tar archive with the agent,
/// the input and run.sh) attached as a second disk, unpacked by the one command typed at
/// the root prompt, results framed on the console. Only the device name differs (vda here,
/// vtbd1 on FreeBSD).
#[test]
fn payload_disk_flow_of_freebsd_guests() {
    use addrsel_model::protocol::AgentInput;
    use addrsel_runner::freebsd::vm as freebsd_vm;
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut def = image();
    def.modules.extend(["virtio_pci".to_string(), "virtio_blk".to_string()]);
    let set = scenarios(&["v4-via-v6-route", "loopback-preference"]);
    let dir = scratch("payload");
    let agent =
        std::fs::read(addrsel_runner::agent_build::for_linux(addrsel_runner::arch::Arch::Amd64, &|_| {}).unwrap())
            .unwrap();
    let input = AgentInput {
        target: def.name.clone(),
        plans: set.iter().map(|l| addrsel_model::plan::linux(&l.scenario)).collect(),
        kmod: false,
        resolver_dir: None,
    };
    let payload = dir.join("payload.tar");
    std::fs::write(&payload, freebsd_vm::payload(&agent, None, &serde_json::to_vec(&input).unwrap(), &[]).unwrap())
        .unwrap();
    let messages = linux_vm::console_session(
        &def,
        &set,
        &dir,
        &freebsd_vm::guest_command("vda"),
        Duration::from_secs(120),
        Some(&payload),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let reports: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            AgentMessage::Scenario { report, setup_error: None, .. } => Some(report.scenario.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reports, ["v4-via-v6-route", "loopback-preference"], "{messages:?}");
    assert!(matches!(messages.last(), Some(AgentMessage::Done)));
    assert_eq!(qemu_processes(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}
