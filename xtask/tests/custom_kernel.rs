//! `matrix --kernel`: experimental's kernel (its split 7.x packages and headers, as a user
//! would download them) boots on bookworm's userland with the test module; a kernel whose
//! config lacks a driver the guest needs is refused before any boot, naming the options.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use addrsel_runner::linux::image::{load_image, load_lock};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn matrix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).current_dir(root()).arg("matrix").args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-custom-kernel").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// experimental's kernel packages, verified against its lock, under their Debian file names.
fn experimental_debs(dir: &Path) -> (PathBuf, Vec<String>) {
    let def = load_image(&root().join("images/linux/experimental-amd64.toml")).unwrap();
    let lock = load_lock(&def).unwrap();
    let parts =
        ["linux-image-7", "linux-binary-", "linux-modules-7", "linux-base-7", "linux-headers-7", "linux-kbuild-"];
    let wanted: Vec<_> = lock
        .package
        .iter()
        .chain(&lock.build_root)
        .filter(|p| parts.iter().any(|x| p.name.starts_with(x)))
        .cloned()
        .collect();
    let fetched = addrsel_runner::linux::packages::fetch_packages(&wanted, &|_| {}).unwrap();
    let mut image = None;
    let mut shas = Vec::new();
    for (p, deb) in fetched {
        let arch = if p.name.ends_with("-common") { "all" } else { "amd64" };
        let dst = dir.join(format!("{}_{}_{arch}.deb", p.name, p.version));
        std::fs::copy(&deb, &dst).unwrap();
        if p.name.starts_with("linux-image-") {
            image = Some(dst);
        }
        shas.push(p.sha256);
    }
    (image.expect("a linux-image package"), shas)
}

#[test]
fn an_experimental_kernel_boots_on_bookworms_userland_with_the_test_module() {
    let dir = scratch("experimental");
    let (image, shas) = experimental_debs(&dir);
    assert_eq!(shas.len(), 7, "image, binary, modules, base, two headers and kbuild");
    let json = dir.join("run.json");
    let mut args = vec!["--targets", "linux-bookworm-amd64", "--kernel", image.to_str().unwrap(), "--no-snapshots"];
    args.extend(["--json", json.to_str().unwrap(), "--scenarios"]);
    let scenarios: Vec<String> = ["v4-via-v6-route", "ula-only-host-prefers-ipv4"]
        .iter()
        .map(|s| root().join(format!("harness/scenarios/{s}.toml")).display().to_string())
        .collect();
    args.extend(scenarios.iter().map(String::as_str));
    let out = matrix(&args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // Named after what it runs, on bookworm's glibc, with the module loaded.
    assert!(t.contains("linux-bookworm-amd64+7.3-cloud-amd64 [Linux 7.3-cloud-amd64 x86_64, glibc 2.36]"), "{t}");
    assert!(t.contains("kernel module: loaded"), "{t}");
    assert!(t.contains("from the build root linux-experimental-amd64 pins"), "{t}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let origin = report["targets"][0]["kernel_origin"].as_str().expect("the kernel's origin is reported");
    for sha in &shas {
        assert!(origin.contains(sha.as_str()), "{sha} missing from {origin}");
    }
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert!(cells.iter().all(|c| c["target"] == "linux-bookworm-amd64+7.3-cloud-amd64"), "{cells:?}");
}

#[test]
fn a_kernel_without_the_guests_drivers_is_refused_before_boot() {
    let def = load_image(&root().join("images/linux/bookworm-amd64.toml")).unwrap();
    let lock = load_lock(&def).unwrap();
    let kroot = addrsel_runner::linux::initramfs::kernel_root(&def, &lock, &|_| {}).unwrap();
    let files = addrsel_runner::linux::kernel::KernelFiles::find(&kroot).unwrap();
    let config = std::fs::read_to_string(&files.config).unwrap();
    assert!(config.contains("CONFIG_VETH=m") && config.contains("CONFIG_SERIAL_8250_CONSOLE=y"));
    // A build tree of the same kernel whose config drops veth and the serial console.
    let build = scratch("no-veth");
    std::fs::create_dir_all(build.join("include/config")).unwrap();
    std::fs::write(build.join("include/config/kernel.release"), format!("{}\n", files.release)).unwrap();
    let edited = config
        .replace("CONFIG_VETH=m", "# CONFIG_VETH is not set")
        .replace("CONFIG_SERIAL_8250_CONSOLE=y", "# CONFIG_SERIAL_8250_CONSOLE is not set");
    std::fs::write(build.join(".config"), edited).unwrap();
    std::fs::write(build.join("modules.order"), "").unwrap();
    let image = build.join("bzImage");
    std::fs::copy(&files.vmlinuz, &image).unwrap();
    let out = matrix(&[
        "--targets",
        "linux-bookworm-amd64",
        "--kernel",
        image.to_str().unwrap(),
        "--kernel-build",
        build.to_str().unwrap(),
        "--no-snapshots",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("its config lacks what the guest needs"), "{t}");
    assert!(t.contains("CONFIG_VETH (veth pairs, the scenario's links)"), "{t}");
    assert!(t.contains("CONFIG_SERIAL_8250_CONSOLE (the console on ttyS0)"), "{t}");
    assert!(!t.contains("booting"), "refused before any boot: {t}");
}

#[test]
fn an_image_needs_its_build_tree_and_only_linux_vms_take_a_kernel() {
    let dir = scratch("bare-image");
    let image = dir.join("bzImage");
    std::fs::write(&image, b"not read").unwrap();
    let out = matrix(&["--targets", "linux-trixie-amd64", "--kernel", image.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("is a kernel image: give its build tree with --kernel-build DIR"), "{t}");
    let out = matrix(&["--targets", "host", "--kernel", image.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("`host` is not a Linux VM target"), "{t}");
}
