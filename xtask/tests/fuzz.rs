//! `cargo xtask fuzz` runs its corpus pass and random cases, and says what it ran.

use std::path::Path;
use std::process::Command;

#[test]
fn a_short_fuzz_run_reports_its_cases() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["fuzz", "--seconds", "4", "--seed", "16"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let corpus: usize = stdout
        .split("==> corpus: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the corpus count");
    assert!(corpus >= 30, "{stdout}");
    let summary = stdout.lines().find(|l| l.starts_with("no finding in")).expect("a summary");
    for target in ["scenario-edits", "scenario-hostile-values", "gai-conf", "policy-tables"] {
        let cases: u64 = summary
            .split(&format!("{target} "))
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(cases > 0, "{target} ran no case: {summary}");
    }
}
