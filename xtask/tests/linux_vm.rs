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
    let start = std::time::Instant::now();
    let out = matrix(&[("ADDRSEL_GUEST_FAULT", "hang")], &["--deadline", "25"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the guest did not finish within 25 s and was killed"), "{t}");
    assert!(start.elapsed().as_secs() < 120);
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
