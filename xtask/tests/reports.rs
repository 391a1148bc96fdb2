//! Every output format against real matrix runs on the host target, the policy diff on the
//! seed changes, and merging sharded results.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.current_dir(repo()).args(args);
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("addrsel-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Checks a JUnit file the way CI consumers read it: one testsuite per target, one testcase
/// per scenario, counts that add up, a failure element for every failing case.
fn check_junit(path: &Path, cases: usize, failures: usize) -> String {
    let xml = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests").unwrap().parse::<usize>().unwrap(), cases);
    assert_eq!(root.attribute("failures").unwrap().parse::<usize>().unwrap(), failures);
    let mut seen_cases = 0;
    let mut seen_failures = 0;
    for suite in root.children().filter(|n| n.has_tag_name("testsuite")) {
        let declared: usize = suite.attribute("tests").unwrap().parse().unwrap();
        let declared_failures: usize = suite.attribute("failures").unwrap().parse().unwrap();
        let tcs: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(tcs.len(), declared);
        let f = tcs.iter().filter(|t| t.children().any(|c| c.has_tag_name("failure"))).count();
        assert_eq!(f, declared_failures);
        for tc in &tcs {
            assert!(tc.attribute("name").is_some() && tc.attribute("classname").is_some());
            tc.attribute("time").unwrap().parse::<f64>().expect("numeric time");
        }
        seen_cases += tcs.len();
        seen_failures += f;
    }
    assert_eq!((seen_cases, seen_failures), (cases, failures));
    xml
}

#[test]
fn every_format_from_a_passing_host_run() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("formats");
    let summary = dir.join("step-summary.md");
    let out = xtask(&["matrix", "--targets", "host"])
        .arg("--json")
        .arg(dir.join("m.json"))
        .arg("--junit")
        .arg(dir.join("m.xml"))
        .arg("--markdown")
        .arg(dir.join("m.md"))
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let scenarios = std::fs::read_dir(repo().join("harness/scenarios")).unwrap().count();

    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    let cells = json["cells"].as_array().unwrap();
    assert_eq!(cells.len(), scenarios);
    for c in cells {
        assert_eq!(c["target"], "host");
        if c["scenario"] == "vrf-route-leak-source" {
            // This machine's kernel has no VRF driver: said per probe, never a pass.
            assert_eq!(c["status"], "unsupported", "{c}");
            for r in c["results"].as_array().unwrap() {
                assert!(r["reason"].as_str().unwrap().contains("CONFIG_NET_VRF"), "{r}");
            }
            continue;
        }
        assert!(["agree", "deviation"].contains(&c["status"].as_str().unwrap()), "{c}");
        for r in c["results"].as_array().unwrap() {
            // The explain --json shape, plus the three-way comparison.
            assert!(r["probe"].is_string() && r["status"].is_string());
            match r["kind"].as_str().unwrap() {
                "connect" => assert!(r["dst"].is_string() && r.get("source").is_some() && r.get("error").is_some()),
                "resolve" => assert!(r["name"].is_string() && r["order"].is_array()),
                "icmp" => assert!(r["to"].is_string() && r.get("source").is_some() && r.get("message").is_some()),
                other => panic!("kind {other}"),
            }
            assert!(r["predicted"].is_object() && r["rfc6724"].is_object());
        }
    }
    check_junit(&dir.join("m.xml"), scenarios, 0);
    let md = std::fs::read_to_string(dir.join("m.md")).unwrap();
    assert!(md.starts_with("## addrsel matrix\n\n| scenario | host |"));
    assert_eq!(md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| scenario")).count(), scenarios);
    assert!(std::fs::read_to_string(&summary).unwrap().contains(&md));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failing_cells_in_every_format() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("failing");
    let snaps = dir.join("snapshots");
    let scen = dir.join("scenarios");
    std::fs::create_dir_all(snaps.join("host")).unwrap();
    std::fs::create_dir_all(&scen).unwrap();
    let base = std::fs::read_to_string(repo().join("harness/scenarios/v4-via-v6-route.toml")).unwrap();
    // A wrong expectation: the real kernel and the engine both say 10.0.0.50.
    let wrong = base
        .replace("name = \"v4-via-v6-route\"", "name = \"wrong-expectation\"")
        .replace("source = \"10.0.0.50\"", "source = \"10.0.0.99\"");
    std::fs::write(scen.join("a.toml"), wrong).unwrap();
    // A stale snapshot: stored observations that differ from today's.
    std::fs::write(scen.join("b.toml"), base.replace("name = \"v4-via-v6-route\"", "name = \"stale-snapshot\""))
        .unwrap();
    std::fs::write(
        snaps.join("host/stale-snapshot.snap"),
        "---\nsource: harness/runner/src/snapshot.rs\n---\nto-peer-v4: connect 203.0.113.2 -> 10.0.0.51\n",
    )
    .unwrap();
    let out = xtask(&["matrix", "--targets", "host", "--scenarios"])
        .arg(&scen)
        .arg("--json")
        .arg(dir.join("m.json"))
        .arg("--junit")
        .arg(dir.join("m.xml"))
        .arg("--markdown")
        .arg(dir.join("m.md"))
        .env("ADDRSEL_SNAPSHOTS", &snaps)
        .env("CI", "true")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the expectation on scenario line"), "{t}");
    assert!(t.contains("- to-peer-v4: connect 203.0.113.2 -> 10.0.0.51"), "{t}");
    assert!(t.contains("+ to-peer-v4: connect 203.0.113.2 -> 10.0.0.50"), "{t}");
    // The path shown is the one ADDRSEL_SNAPSHOTS chose.
    let shown = format!("snapshot changed ({})", snaps.join("host/stale-snapshot.snap").display());
    assert!(t.contains(&shown), "{t}");
    // Both explanations, side by side, for the disagreement and for the changed snapshot line.
    assert_eq!(t.matches("explain to-peer-v4 (linux | rfc6724):").count(), 2, "{t}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    let status = |name: &str| {
        json["cells"].as_array().unwrap().iter().find(|c| c["scenario"] == name).unwrap()["status"].clone()
    };
    assert_eq!(status("wrong-expectation"), "disagree");
    assert_eq!(status("stale-snapshot"), "snapshot_changed");
    let xml = check_junit(&dir.join("m.xml"), 2, 2);
    assert!(xml.contains("message=\"DISAGREE\"") && xml.contains("message=\"SNAPSHOT CHANGED\""));
    let md = std::fs::read_to_string(dir.join("m.md")).unwrap();
    assert!(md.contains("**DISAGREE**") && md.contains("### Failures"));
    // In CI nothing is written for review.
    assert!(!snaps.join("host/stale-snapshot.snap.new").exists());
    // The explanations travel in the JSON: a merged report shows them too.
    let merged = xtask(&["report", "merge"]).arg(dir.join("m.json")).output().unwrap();
    let m = text(&merged);
    assert_eq!(merged.status.code(), Some(1), "{m}");
    assert_eq!(m.matches("explain to-peer-v4 (linux | rfc6724):").count(), 2, "{m}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn merging_shard_results() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("merge");
    let corpus = repo().join("harness/scenarios");
    let run = |files: &[&str], json: &Path| {
        let mut c = xtask(&["matrix", "--targets", "host", "--scenarios"]);
        for f in files {
            c.arg(corpus.join(f));
        }
        let out = c.arg("--json").arg(json).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    };
    run(&["loopback-preference.toml", "v4-via-v6-route.toml"], &dir.join("a.json"));
    run(&["ula-only-host-prefers-ipv4.toml"], &dir.join("b.json"));
    let out = xtask(&["report", "merge"])
        .arg(dir.join("a.json"))
        .arg(dir.join("b.json"))
        .arg("--junit")
        .arg(dir.join("all.xml"))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for s in ["loopback-preference", "v4-via-v6-route", "ula-only-host-prefers-ipv4"] {
        assert!(t.contains(s), "{t}");
    }
    check_junit(&dir.join("all.xml"), 3, 0);
    // The same cell twice is refused; a failing cell makes the merged exit status 1.
    let dup = xtask(&["report", "merge"]).arg(dir.join("a.json")).arg(dir.join("a.json")).output().unwrap();
    assert_eq!(dup.status.code(), Some(2));
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("b.json")).unwrap()).unwrap();
    report["cells"][0]["status"] = "disagree".into();
    std::fs::write(dir.join("c.json"), report.to_string()).unwrap();
    let bad = xtask(&["report", "merge"]).arg(dir.join("a.json")).arg(dir.join("c.json")).output().unwrap();
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    // A target that broke off in its shard still fails the merged report.
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("b.json")).unwrap()).unwrap();
    report["targets"][0]["error"] = "the agent stopped early".into();
    std::fs::write(dir.join("d.json"), report.to_string()).unwrap();
    let broke = xtask(&["report", "merge"]).arg(dir.join("a.json")).arg(dir.join("d.json")).output().unwrap();
    assert_eq!(broke.status.code(), Some(1), "{}", text(&broke));
    assert!(text(&broke).contains("stopped early: the agent stopped early"), "{}", text(&broke));
    // A shard that lost a scenario's result: the merge says which one is missing.
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("a.json")).unwrap()).unwrap();
    report["cells"].as_array_mut().unwrap().remove(0);
    std::fs::write(dir.join("e.json"), report.to_string()).unwrap();
    let lost = xtask(&["report", "merge"]).arg(dir.join("e.json")).arg(dir.join("b.json")).output().unwrap();
    assert_eq!(lost.status.code(), Some(2), "{}", text(&lost));
    assert!(text(&lost).contains("no result for scenario loopback-preference on target host"), "{}", text(&lost));
    std::fs::remove_dir_all(dir).unwrap();
}

fn target_names(args: &[&str]) -> Vec<String> {
    let out = xtask(&["matrix", "--list-targets"]).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

#[test]
fn shards_of_the_default_target_list() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("shards");
    let all = target_names(&[]);
    assert!(all.len() >= 9 && all[0] == "host", "{all:?}");
    // Four shards cover every target exactly once.
    let mut union: Vec<String> = (1..=4).flat_map(|i| target_names(&["--shard", &format!("{i}/4")])).collect();
    union.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(union, sorted);
    // Without --targets a shard runs its slice of the default list: the first is the host.
    let n = all.len().to_string();
    let out = xtask(&["matrix", "--shard", &format!("1/{n}"), "--no-snapshots", "--scenarios"])
        .arg(repo().join("harness/scenarios/loopback-preference.toml"))
        .arg("--json")
        .arg(dir.join("host.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("host.json")).unwrap()).unwrap();
    let cells = &report["cells"];
    assert_eq!(cells.as_array().unwrap().len(), 1);
    assert_eq!((cells[0]["target"].as_str(), cells[0]["status"].as_str()), (Some("host"), Some("agree")));
    // A FreeBSD target that cannot run here: not an error in a shard of the default list,
    // exit status 3 once merged when it was asked for by name.
    let freebsd = all.iter().position(|t| t.starts_with("freebsd-")).unwrap() + 1;
    let run = |args: &[&str], json: &str| {
        let out = xtask(&["matrix", "--no-snapshots", "--scenarios"])
            .arg(repo().join("harness/scenarios/loopback-preference.toml"))
            .args(args)
            .arg("--json")
            .arg(dir.join(json))
            .output()
            .unwrap();
        out.status.code()
    };
    assert_eq!(run(&["--shard", &format!("{freebsd}/{n}")], "shard.json"), Some(0));
    assert_eq!(run(&["--targets", &all[freebsd - 1]], "named.json"), Some(3));
    let merge = |files: &[&str]| {
        let mut c = xtask(&["report", "merge"]);
        for f in files {
            c.arg(dir.join(f));
        }
        c.output().unwrap().status.code()
    };
    assert_eq!(merge(&["host.json", "shard.json"]), Some(0));
    assert_eq!(merge(&["host.json", "named.json"]), Some(3));
    std::fs::remove_dir_all(dir).unwrap();
}

fn changes(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .map(|l| l.trim().split(": ").next().unwrap().to_string())
        .collect()
}

#[test]
fn diff_of_the_seed_gai_conf_change_matches_the_host() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("diff-gai");
    std::fs::write(dir.join("old.conf"), "").unwrap();
    std::fs::write(dir.join("new.conf"), "label fd00:11:22::/48 1\n").unwrap();
    let out = xtask(&["diff"])
        .arg(dir.join("old.conf"))
        .arg(dir.join("new.conf"))
        .args(["--scenarios", "harness/scenarios", "--targets", "host"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("MISMATCH"), "{t}");
    let got = changes(&out);
    let mut expected = Vec::new();
    for (s, p) in [
        ("cross-site-ula-partner", "resolve-partner"),
        ("cross-site-ula-partner", "resolve-server"),
        ("cross-site-ula-partner-fixed", "resolve-partner"),
        ("cross-site-ula-partner-fixed", "resolve-server"),
        ("freebsd-ula-fix-fc00-37-1", "resolve-server"),
        ("freebsd-ula-label-mismatch", "resolve-server"),
        ("freebsd-ula-site-label-14", "resolve-server"),
        ("gai-conf-unrelated-label-drops-defaults", "resolve-server"),
        // glibc and Go through glibc follow gai.conf; musl, Go and c-ares do not.
        ("resolvers-ula-gai-conf", "resolve-server"),
        ("resolvers-ula-gai-conf", "resolve-server@go-cgo"),
        ("teredo-and-6to4", "resolve-tunnels"),
        ("ula-gai-conf-full-labels-fix", "resolve-server"),
        ("ula-gai-conf-label-fix", "resolve-server"),
        ("ula-only-host-prefers-ipv4", "resolve-server"),
        ("ula-only-host-prefers-ipv4-fixed", "resolve-server"),
        ("wifibox-fd00-64-37-1", "resolve-server"),
        ("wifibox-fd00-64-37-1-fixed", "resolve-server"),
    ] {
        expected.push(format!("{s} / {p} [engine:linux]"));
        expected.push(format!("{s} / {p} [host]"));
    }
    assert_eq!(got, expected, "{t}");
    assert!(
        t.contains("before: Rule 5 (prefer matching label)") && t.contains("after:  Rule 6 (prefer higher precedence)")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn diff_of_the_seed_ip6addrctl_change() {
    let dir = scratch("diff-bsd");
    let rc = "::1/128 50 0\n::/0 40 1\n::ffff:0:0/96 35 4\n2002::/16 30 2\n2001::/32 5 5\nfc00::/7 3 13\n::/96 1 3\nfec0::/10 1 11\n3ffe::/16 1 12\n";
    std::fs::write(dir.join("old.conf"), rc).unwrap();
    std::fs::write(dir.join("new.conf"), rc.replace("fc00::/7 3 13", "fc00::/7 37 1")).unwrap();
    let out = xtask(&["diff"])
        .arg(dir.join("old.conf"))
        .arg(dir.join("new.conf"))
        .args([
            "--scenarios",
            "harness/scenarios/freebsd-ula-label-mismatch.toml",
            "harness/scenarios/ula-and-gua-glibc-prefers-ula.toml",
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(
        changes(&out),
        [
            "freebsd-ula-label-mismatch / resolve-nas [engine:freebsd]",
            "freebsd-ula-label-mismatch / resolve-server [engine:freebsd]",
            "ula-and-gua-glibc-prefers-ula / resolve-intranet [engine:freebsd]",
        ],
        "{t}"
    );
    // The default run sweeps address classes when no scenarios are given.
    let sweep = xtask(&["diff"]).arg(dir.join("old.conf")).arg(dir.join("new.conf")).output().unwrap();
    assert!(String::from_utf8_lossy(&sweep.stdout).contains("built-in address-class sweep"));
    assert!(changes(&sweep).iter().all(|c| c.starts_with("sweep-")));
    assert!(!changes(&sweep).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Faults an operator makes, each reported with the path and the right exit status.
#[test]
fn operator_faults_name_the_path() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("faults");
    let scenario = repo().join("harness/scenarios/loopback-preference.toml");
    // An output that cannot be written is found before anything runs.
    let out = xtask(&["matrix", "--targets", "host", "--json", "/nonexistent-dir/m.json", "--scenarios"])
        .arg(&scenario)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("--json /nonexistent-dir/m.json: cannot write in /nonexistent-dir"), "{t}");
    assert!(!t.contains("[host]"), "nothing ran: {t}");
    // --accept into a snapshot directory that cannot be made fails, naming it.
    let not_a_dir = dir.join("plain-file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let out = xtask(&["matrix", "--targets", "host", "--accept", "--scenarios"])
        .arg(&scenario)
        .env("ADDRSEL_SNAPSHOTS", &not_a_dir)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("cannot create the snapshot directory {}/host", not_a_dir.display())), "{t}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The deadline is kept by a timer: a scenario that takes far longer is stopped on time and
/// the one that finished before it is kept.
#[test]
fn the_host_deadline_keeps_what_finished() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch("deadline");
    std::fs::copy(repo().join("harness/scenarios/loopback-preference.toml"), dir.join("a-quick.toml")).unwrap();
    let mut slow = String::from("name = \"z-slow\"\n");
    for i in 0..4000 {
        slow.push_str(&format!("[[interfaces]]\nname = \"e{i}\"\naddresses = [\"10.{}.{}.1/24\"]\n", i / 250, i % 250));
    }
    std::fs::write(dir.join("z-slow.toml"), slow).unwrap();
    let start = std::time::Instant::now();
    let out = xtask(&["matrix", "--targets", "host", "--no-snapshots", "--deadline", "3", "--json"])
        .arg(dir.join("m.json"))
        .arg("--scenarios")
        .arg(&dir)
        .output()
        .unwrap();
    let took = start.elapsed();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the agent did not finish within 3 s and was stopped; 1 of 2 scenarios finished"), "{t}");
    assert!(took < std::time::Duration::from_secs(20), "stopped on time, not when the agent next spoke: {took:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    let status = |name: &str| {
        report["cells"].as_array().unwrap().iter().find(|c| c["scenario"] == name).unwrap()["status"].clone()
    };
    assert_eq!(status("loopback-preference"), "agree");
    assert_eq!(status("z-slow"), "setup_failed");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two profiles on the corpus: what changes for a Linux host when its OS adopts the
/// rfc6724-update draft, named as a draft.
#[test]
fn diff_of_two_profiles() {
    let out = xtask(&["diff", "--profile", "linux", "--profile", "rfc6724-update", "--scenarios", "harness/scenarios"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("profiles linux -> rfc6724-update on "), "{t}");
    assert!(t.contains("note: DRAFT draft-ietf-6man-rfc6724-update"), "{t}");
    // glibc's gai.conf precedence 100 for IPv4 is not the draft's 20.
    assert!(t.contains("gai-conf-prefer-ipv4 / resolve-server: 116.203.176.52, 2a01:4f8:c2c:8101::1  ->  2a01:4f8:c2c:8101::1, 116.203.176.52"), "{t}");
    let bad = xtask(&["diff", "--profile", "linux"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

/// `--compare-releases` on a merged report: the probe whose answer differs between targets,
/// with each target's kernel and glibc, in the terminal and in the JSON.
#[test]
fn compare_releases_lists_what_differs_between_targets() {
    let dir = scratch("across");
    let json = dir.join("out.json");
    let out = xtask(&["report", "merge", "harness/runner/tests/data/across.json", "--compare-releases"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("1 probe(s) answered differently:\n  s / resolve\n    2001:db8::1, 192.0.2.1\n        old (Linux 6.1, glibc 2.36)\n    192.0.2.1, 2001:db8::1\n        new (Linux 6.12, glibc 2.41)\n        newer (Linux 6.12, glibc 2.41)\n"), "{t}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["across_targets"].as_array().unwrap().len(), 1);
    assert_eq!(v["across_targets"][0]["answers"][1]["targets"], serde_json::json!(["new", "newer"]));
    std::fs::remove_dir_all(dir).unwrap();
}
