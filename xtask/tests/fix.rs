//! `cargo xtask fix` on the seeds' cases: the fix it prints is the one in the corpus's
//! `*-fixed` scenarios (whose real-kernel answers the matrix checks on every target), it
//! says when no policy can help, and `--targets host` checks a fix on this kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).current_dir(repo()).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn policy(path: &Path) -> addrsel_model::Policy {
    let text = std::fs::read_to_string(path).unwrap();
    addrsel_model::parse_scenario("x.toml", &text).unwrap().scenario.policy
}

#[test]
fn the_seed_cases_get_the_corpus_fixes() {
    let out_dir = std::env::temp_dir().join(format!("addrsel-test-fix-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "ula-only-host-prefers-ipv4",
            &["resolve-server=2a01:4f8:c2c:8101::1,116.203.176.52"],
            "label fd00:11:22::/64 1",
        ),
        ("wifibox-fd00-64-37-1", &["resolve-server=2a01:4f8:c2c:8101::1,116.203.176.52"], "label fd00::/64 1"),
        (
            "cross-site-ula-partner",
            &["resolve-partner=2001:db8:33::53,198.51.100.53", "resolve-server=116.203.176.52,2a01:4f8:c2c:8101::1"],
            "label 2001:db8:33::/48 6",
        ),
    ];
    for (name, wants, line) in cases {
        let input = format!("harness/scenarios/{name}.toml");
        let written = out_dir.join(format!("{name}.toml"));
        let mut args = vec!["fix", input.as_str(), "-o", written.to_str().unwrap()];
        for w in *wants {
            args.extend(["--want", w]);
        }
        let out = xtask(&args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        assert!(t.contains(&format!("  {line}\n")), "{name}: {t}");
        assert_eq!(policy(&written), policy(&repo().join(format!("harness/scenarios/{name}-fixed.toml"))), "{name}");
    }
    std::fs::remove_dir_all(out_dir).unwrap();
}

#[test]
fn a_source_the_route_decides_is_said_so() {
    let out = xtask(&["fix", "harness/scenarios/v4-via-v6-route.toml", "--want", "to-peer-v4=10.0.0.50"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("IPv4 sources are chosen by the route"), "{t}");
}

#[test]
fn a_fix_is_checked_on_this_kernel() {
    let out = xtask(&[
        "fix",
        "harness/scenarios/ula-only-host-prefers-ipv4.toml",
        "--want",
        "resolve-server=2a01:4f8:c2c:8101::1,116.203.176.52",
        "--targets",
        "host",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("host: resolve-server holds (2a01:4f8:c2c:8101::1, 116.203.176.52)"), "{t}");
}
