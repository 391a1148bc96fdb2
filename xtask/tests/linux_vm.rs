//! Faults in Linux guests: a kernel panic, a crashing agent, a hanging guest, a corrupted
//! cached package. Each ends the boot with a specific error quoting the console, and no QEMU
//! process survives.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn matrix(env: &[(&str, &str)], extra: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(&root).args(["matrix", "--targets", "linux-bookworm-amd64", "--no-snapshots", "--scenarios"]);
    for s in ["v4-via-v6-route", "loopback-preference", "ula-only-host-prefers-ipv4"] {
        c.arg(root.join(format!("harness/scenarios/{s}.toml")));
    }
    c.args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn no_qemu_left() {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(exe) = std::fs::read_link(e.path().join("exe")) {
            assert!(!exe.to_string_lossy().contains("qemu-system"), "QEMU survived: {}", e.path().display());
        }
    }
}

#[test]
fn guest_kernel_panic() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = matrix(&[("ADDRSEL_GUEST_FAULT", "panic")], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("guest kernel panic (`Kernel panic - not syncing`)"), "{t}");
    assert!(t.contains("sysrq"), "the last console lines are quoted: {t}");
    let log = t.lines().find_map(|l| l.strip_prefix("full log: ")).expect("log path");
    assert!(std::fs::read_to_string(log).unwrap().contains("Kernel panic"));
    no_qemu_left();
}

#[test]
fn crashing_agent() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = matrix(&[("ADDRSEL_GUEST_FAULT", "crash")], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("addrsel-init: agent crashed: SIGABRT"), "{t}");
    // The first scenario finished before the crash and is still compared.
    assert!(t.lines().any(|l| l.starts_with("v4-via-v6-route") && l.contains("agree")), "{t}");
    no_qemu_left();
}

#[test]
fn hanging_guest_hits_the_deadline() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = matrix(&[("ADDRSEL_GUEST_FAULT", "hang")], &["--deadline", "25"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the guest did not finish within 25 s and was killed"), "{t}");
    no_qemu_left();
}

#[test]
fn guest_stuck_before_the_agent_is_stopped_at_the_boot_deadline() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = matrix(&[("ADDRSEL_GUEST_FAULT", "hang-before-agent")], &["--deadline", "20", "--no-kmod"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the guest did not start the agent within 20 s and was killed"), "{t}");
    no_qemu_left();
}

#[test]
fn corrupted_cached_package_is_fetched_again() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/linux/bookworm-amd64.lock"))
            .unwrap();
    // The smallest package: libmnl0.
    let sha = lock
        .split("name = \"libmnl0\"")
        .nth(1)
        .and_then(|r| r.split("sha256 = \"").nth(1))
        .map(|r| r[..64].to_string())
        .unwrap();
    let cache = std::env::var_os("ADDRSEL_CACHE")
        .map_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache/addrsel"), std::path::PathBuf::from);
    let deb = cache.join("debian").join(format!("{sha}.deb"));
    // Make sure it is cached, then damage it.
    let out = matrix(&[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(&deb, b"bit rot").unwrap();
    let out = matrix(&[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("libmnl0") && t.contains("does not match its sha256; downloading it again"), "{t}");
    let data = std::fs::read(&deb).unwrap();
    assert!(data.len() > 1000 && data.starts_with(b"!<arch>"));
    no_qemu_left();
}

#[test]
fn kernel_module_answers_next_to_the_socket_and_differences_are_reported() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let json = std::env::temp_dir().join(format!("addrsel-kmod-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(&root)
        .args(["matrix", "--targets", "linux-bookworm-amd64", "--no-snapshots", "--json"])
        .arg(&json)
        .arg("--scenarios")
        .arg(root.join("harness/scenarios/link-local-needs-zone.toml"))
        .arg(root.join("harness/scenarios/v4-via-v6-route.toml"))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("kernel module: loaded; /proc/net/addrsel answers"), "{t}");
    assert!(t.contains("vmlinux decompressed on the host, PVH entry"), "{t}");
    // A link-local destination without a zone: the kernel's route lookup and source
    // selection find an answer, the socket layer refuses the connect (no scope id).
    assert!(
        t.contains("link-local-needs-zone on linux-bookworm-amd64, probe without-zone: module fe80::10, socket EINVAL"),
        "{t}"
    );
    let cells: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let v4 = cells["cells"].as_array().unwrap().iter().find(|c| c["scenario"] == "v4-via-v6-route").unwrap();
    for r in v4["results"].as_array().unwrap().iter().filter(|r| r["kind"] == "connect") {
        assert_eq!(r["kernel_source"], r["source"], "module and socket agree over a v4-via-v6 route: {r}");
    }
    let _ = std::fs::remove_file(&json);
    no_qemu_left();
}

#[test]
fn module_whose_init_does_not_run_fails_the_target() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = matrix(&[("ADDRSEL_KMOD_FAULT", "skip-init")], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("kernel module NOT READY: module loaded but its init did not run"), "{t}");
    // The socket answers are still compared.
    assert!(t.lines().any(|l| l.starts_with("v4-via-v6-route") && l.contains("agree")), "{t}");
    no_qemu_left();
}

fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("ADDRSEL_CACHE")
        .map_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache/addrsel"), std::path::PathBuf::from)
}

/// The cached file a run's progress line names after `label` (`kernel /path, ...`).
fn used_file(output: &str, label: &str) -> std::path::PathBuf {
    output
        .lines()
        .find_map(|l| l.split(&format!("] {label} ")).nth(1).or_else(|| l.split(&format!(", {label} ")).nth(1)))
        .map(|rest| std::path::PathBuf::from(rest.split(',').next().unwrap().trim()))
        .unwrap_or_else(|| panic!("no `{label}` file in the run's output:\n{output}"))
}

/// What the harness built into the cache is checked against the sha256 recorded when it was
/// built: a damaged kernel, initramfs or test module is found, built again, and said so.
#[test]
fn damaged_built_files_are_built_again() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = matrix(&[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    let damaged = [used_file(&t, "kernel"), used_file(&t, "initramfs"), used_file(&t, "test module")];
    for f in &damaged {
        assert!(f.starts_with(cache_dir()), "{} is not in the cache", f.display());
    }
    for f in &damaged {
        let mut data = std::fs::read(f).unwrap();
        let at = data.len() / 2;
        data[at] ^= 0xff;
        std::fs::write(f, data).unwrap();
    }
    let out = matrix(&[], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for f in &damaged {
        assert!(
            t.contains(&format!(
                "{} does not match the sha256 recorded when it was built; building it again",
                f.display()
            )),
            "{}: {t}",
            f.display()
        );
    }
    no_qemu_left();
}

/// A QEMU that dies from a signal is reported as such, not as a guest that powered off.
#[test]
fn a_killed_qemu_is_reported_with_its_signal() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let killer = std::thread::spawn(|| {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(120) {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let is_qemu = std::fs::read_link(e.path().join("exe"))
                    .is_ok_and(|x| x.to_string_lossy().contains("qemu-system-x86_64"));
                // The scenario boot, not the KVM probe's QEMU: only the former passes `addrsel.results`.
                let booted =
                    std::fs::read_to_string(e.path().join("cmdline")).is_ok_and(|c| c.contains("addrsel.results"));
                if is_qemu && booted {
                    let pid: i32 = e.file_name().to_string_lossy().parse().unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    // SAFETY: plain kill(2) of the QEMU process found above.
                    unsafe { libc_kill(pid, 9) };
                    return true;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    });
    let out = matrix(&[("ADDRSEL_GUEST_FAULT", "hang")], &["--deadline", "60", "--no-kmod"]);
    assert!(killer.join().unwrap(), "QEMU was found and killed");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("QEMU stopped before the agent finished") && t.contains("QEMU was killed by signal 9"), "{t}");
    no_qemu_left();
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
