//! `cargo xtask kmod` and `cargo xtask codegen` from the command line: the Linux module built
//! for a real image with that kernel's own compiler, verified against it and refused for
//! another kernel; the agent's ABI bindings checked against the C header.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn linux_module_is_built_with_the_kernels_compiler_and_only_fits_its_kernel() {
    let out = xtask(&["kmod", "build", "--target", "linux-bookworm-amd64"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let ko = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(ko.ends_with(".ko") && Path::new(&ko).exists(), "{ko}");

    let ok = xtask(&["kmod", "verify", &ko, "--target", "linux-bookworm-amd64"]);
    let t = text(&ok);
    assert_eq!(ok.status.code(), Some(0), "{t}");
    assert!(t.contains("[ok] built by the kernel's compiler `gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0`"), "{t}");

    let wrong = xtask(&["kmod", "verify", &ko, "--target", "linux-trixie-amd64"]);
    let t = text(&wrong);
    assert_eq!(wrong.status.code(), Some(1), "{t}");
    assert!(t.contains("[FAIL] vermagic equals the target kernel's `6.12"), "{t}");
    assert!(t.contains("[FAIL] built by the kernel's compiler `x86_64-linux-gnu-gcc-14"), "{t}");
    assert!(t.contains("verdict: must NOT be loaded"), "{t}");

    let json = xtask(&["kmod", "verify", &ko, "--target", "linux-bookworm-amd64", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((v["kind"].as_str(), v["arch"].as_str()), (Some("Linux"), Some("amd64")));
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let out = xtask(&["kmod", "build", "--target", "nonesuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("unknown target `nonesuch` (known: host, linux-bookworm-amd64"), "{}", text(&out));
    let out = xtask(&["kmod", "build", "--target", "host"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("does not load modules into it"), "{}", text(&out));
    let out = xtask(&["kmod", "verify", "/nonexistent/addrsel.ko"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent/addrsel.ko: No such file"), "{}", text(&out));
    let out = xtask(&["kmod", "build", "--target", "linux-bookworm-amd64", "--fault", "sabotage"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("unknown module fault `sabotage` (known: skip-init)"), "{}", text(&out));
}

#[test]
fn checked_in_bindings_match_the_header_and_stale_ones_are_caught() {
    let out = xtask(&["codegen", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("up to date"));

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let current = std::fs::read_to_string(root.join("harness/agent/src/kmod_abi.rs")).unwrap();
    let stale = std::env::temp_dir().join(format!("addrsel-stale-abi-{}.rs", std::process::id()));
    // What the file looked like before the header gained a field.
    std::fs::write(&stale, current.replace("    pub prefs: u32,\n", "")).unwrap();
    let out = xtask(&["codegen", "--check", "--output", stale.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("is stale") && t.contains("first difference at line"), "{t}");
    let _ = std::fs::remove_file(&stale);
}

#[test]
fn two_builds_at_once_from_an_empty_cache_both_succeed() {
    // Both download, unpack and assemble the same build root at the same time: every shared
    // directory appears in one rename, and the later one keeps the earlier one's copy.
    let cache = std::env::temp_dir().join(format!("addrsel-test-kmod-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .env("ADDRSEL_CACHE", &cache)
            .args(["kmod", "build", "--target", "linux-bookworm-amd64"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(Path::new(String::from_utf8_lossy(&out.stdout).trim()).exists());
    }
    let leftovers: Vec<String> = ["build-root", "unpacked", "debian", "kmod"]
        .iter()
        .flat_map(|d| std::fs::read_dir(cache.join(d)).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&cache);
}
