//! FreeBSD targets where FreeBSD cannot be reached: not run, with the URL and the reason,
//! and a distinct exit status when asked for explicitly; the module build says it cannot
//! download src.txz. The site is pointed at a closed port on loopback so this holds on any
//! machine (here download.freebsd.org does not even resolve).

use std::path::Path;
use std::process::{Command, Output};

const CLOSED: &str = "http://127.0.0.1:9";

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("ADDRSEL_FREEBSD_MIRROR", CLOSED)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn explicit_freebsd_target_is_not_run_with_the_reason() {
    let junit = std::env::temp_dir().join(format!("addrsel-freebsd-junit-{}.xml", std::process::id()));
    let out =
        xtask(&["matrix", "--targets", "freebsd-14.5-amd64", "--no-snapshots", "--junit", junit.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    // Asked for by name and not run: failures in JUnit too, not skipped tests.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let _ = std::fs::remove_file(&junit);
    let scenarios =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../harness/scenarios")).unwrap().count();
    assert!(xml.contains(&format!("failures=\"{scenarios}\" errors=\"0\" skipped=\"0\"")), "{xml}");
    let want = format!(
        "freebsd-14.5-amd64: not run: cannot download {CLOSED}/releases/CI-IMAGES/14.5-RELEASE/amd64/Latest/CHECKSUM.SHA256: "
    );
    assert!(t.contains(&want), "{t}");
    assert!(
        t.lines().filter(|l| l.trim_end().ends_with("not run")).count() >= 25,
        "every scenario is listed as not run: {t}"
    );
    // The engine's unverified points for FreeBSD stay marked as such.
    assert!(t.contains("still UNVERIFIED (") && t.contains("no FreeBSD kernel has confirmed it yet"), "{t}");
    // Nothing was pinned from a failed download.
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/freebsd/14.5-amd64.lock").exists());
}

/// The seed's FreeBSD case: the prediction itself is EHOSTUNREACH (not only a word in an
/// UNVERIFIED note), and the explanation marks it unconfirmed.
#[test]
fn v4_via_v6_is_predicted_as_ehostunreach_and_marked_unverified() {
    let scenario = "harness/scenarios/v4-via-v6-route.toml";
    let out = xtask(&["explain", scenario, "--profile", "freebsd", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probe = report["results"].as_array().unwrap().iter().find(|r| r["probe"] == "to-peer-v4").unwrap();
    assert_eq!(probe["error"], "EHOSTUNREACH", "{probe}");
    assert_eq!(probe["source"], serde_json::Value::Null, "{probe}");
    let out = xtask(&["explain", scenario, "--profile", "freebsd"]);
    let t = text(&out);
    let section = t.split("probe to-peer-v4:").nth(1).unwrap().split("\nprobe ").next().unwrap();
    assert!(section.trim_start().starts_with("EHOSTUNREACH"), "{section}");
    assert!(
        section.contains("UNVERIFIED: FreeBSD's EHOSTUNREACH for an IPv4 route with an IPv6 next hop"),
        "{section}"
    );
}

#[test]
fn target_list_says_why_freebsd_cannot_run() {
    let out = xtask(&["matrix", "--list-targets"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for name in ["freebsd-14.5-amd64", "freebsd-14.5-arm64", "freebsd-15.1-amd64", "freebsd-15.1-arm64"] {
        let line = t.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing: {t}"));
        assert!(line.contains("cannot run here: cannot download http://127.0.0.1:9/"), "{line}");
    }
}

#[test]
fn freebsd_module_build_cannot_download_src_txz() {
    let out = xtask(&["kmod", "build", "--target", "freebsd-15.1-arm64"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("error: freebsd-15.1-arm64: cannot download src.txz for 15.1-RELEASE: cannot download"), "{t}");
    // A source tree that is not one is refused before anything is compiled.
    let out = xtask(&["kmod", "build", "--target", "freebsd-15.1-arm64", "--sysdir", "/tmp"]);
    assert!(text(&out).contains("/tmp is not a FreeBSD kernel source tree"), "{}", text(&out));
}
