//! `cargo xtask mutants`: deliberate bugs in the engine, the policy parsers, the verdict and
//! the test command, each run against the tests that need no VM. A mutation the tests do not
//! catch is a test to write.
//!
//! A short list of named mutations rather than cargo-mutants: cargo-mutants would generate
//! hundreds of mutants, each rebuilding the workspace (minutes apiece on two cores), and
//! most of them in code whose failure the VM targets catch anyway. These are the bugs that
//! would silently change what users are told.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Only these mutations (by name); default: all.
    names: Vec<String>,
    /// List the mutations and exit.
    #[arg(long)]
    list: bool,
}

/// One deliberate bug: `find` (which must occur exactly once in `file`) becomes `replace`.
struct Mutation {
    name: &'static str,
    file: &'static str,
    find: &'static str,
    replace: &'static str,
    /// What a user would be told if this bug shipped.
    means: &'static str,
}

const MUTATIONS: &[Mutation] = &[
    Mutation {
        name: "compare-always-agrees",
        file: "harness/runner/src/matrix/compare.rs",
        find: "} else if obs.outcome.fits(&predicted) {",
        replace: "} else if true {",
        means: "every observation agrees with the engine: the central verdict is gone",
    },
    Mutation {
        name: "compare-unsupported-satisfies-expectations",
        file: "harness/runner/src/matrix/compare.rs",
        find: "status = status.worst(Status::Unchecked);",
        replace: "status = status.worst(Status::Unsupported);",
        means: "a target that cannot run a probe passes its recorded expectation",
    },
    Mutation {
        name: "compare-module-differences-ignored",
        file: "harness/runner/src/matrix/compare.rs",
        find: "notes.push(format!(\"{difference}; no known reason explains it\"));\n                status = Status::Disagree;",
        replace: "notes.push(format!(\"{difference}; no known reason explains it\"));",
        means: "the kernel module contradicting the socket is only a note",
    },
    Mutation {
        name: "expectation-order-always-holds",
        file: "harness/model/src/scenario.rs",
        find: "(Expected::Order(want), Outcome::Resolve { order, error: None, .. }) => order == want,",
        replace: "(Expected::Order(_), Outcome::Resolve { error: None, .. }) => true,",
        means: "a recorded getaddrinfo order is never checked",
    },
    Mutation {
        name: "freebsd-source-rule-5-off",
        file: "harness/engine/src/freebsd.rs",
        find: "best.dev == ifp && new.dev != ifp,\n            best.dev != ifp && new.dev == ifp,",
        replace: "false,\n            false,",
        means: "FreeBSD's preference for the outgoing interface's address is lost",
    },
    Mutation {
        name: "freebsd-dest-rule-9-reversed",
        file: "harness/engine/src/freebsd.rs",
        find: "Decision::higher(\n            d1.matchlen,",
        replace: "Decision::lower(\n            d1.matchlen,",
        means: "FreeBSD's longest-prefix rule sorts the wrong way",
    },
    Mutation {
        name: "freebsd-v4-via-v6-succeeds",
        file: "harness/engine/src/freebsd.rs",
        find: "Selected { result: Err(errno::EHOSTUNREACH), trace }\n            }\n        }\n    }",
        replace: "Selected { result: Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), trace }\n            }\n        }\n    }",
        means: "the seed's FreeBSD EHOSTUNREACH becomes a connect from 0.0.0.0",
    },
    Mutation {
        name: "glibc-2-41-gets-the-old-parser",
        file: "harness/policy/src/gai_conf.rs",
        find: "if (major, minor) >= (2, 41) {",
        replace: "if (major, minor) >= (2, 42) {",
        means: "Debian 13's gai.conf is read as Debian 12's",
    },
    Mutation {
        name: "glibc-dest-rule-5-off",
        file: "harness/engine/src/linux.rs",
        find: "Decision::prefer(l1d == l1s && l2d != l2s, l1d != l1s && l2d == l2s, rules::destination(5), detail)",
        replace: "Decision::prefer(false, false, rules::destination(5), detail)",
        means: "the ULA-only host's IPv4 preference (label mismatch) disappears",
    },
    Mutation {
        name: "glibc-dest-rule-9-reversed",
        file: "harness/engine/src/linux.rs",
        find: "Decision::higher(bit1, bit2, rules::destination(9)",
        replace: "Decision::lower(bit1, bit2, rules::destination(9)",
        means: "glibc's longest-prefix rule sorts the wrong way",
    },
    Mutation {
        name: "glibc-merge-sort-unstable",
        file: "harness/engine/src/sort.rs",
        find: "if cmp(&v[i], &v[j]) != Ordering::Greater {",
        replace: "if cmp(&v[i], &v[j]) == Ordering::Less {",
        means: "ties are broken differently from glibc's merge sort",
    },
    Mutation {
        name: "linux-source-rule-7-inverted",
        file: "harness/engine/src/linux.rs",
        find: "let privacy = (!h.addr.temporary) ^ preftmp;",
        replace: "let privacy = h.addr.temporary ^ preftmp;",
        means: "Linux prefers temporary addresses when it should not, and the reverse",
    },
    Mutation {
        name: "rfc-rule-8-before-rule-6",
        file: "harness/engine/src/rfc.rs",
        find: "        if let Some(x) = Decision::higher(pa, pb, rules::destination(6), \"precedence\") {\n            return Some(x);\n        }\n        if let Some(x) = Decision::lower(scope_rfc(&da), scope_rfc(&db), rules::destination(8), \"scope\") {\n            return Some(x);\n        }",
        replace: "        if let Some(x) = Decision::lower(scope_rfc(&da), scope_rfc(&db), rules::destination(8), \"scope\") {\n            return Some(x);\n        }\n        if let Some(x) = Decision::higher(pa, pb, rules::destination(6), \"precedence\") {\n            return Some(x);\n        }",
        means: "the RFC profile (the baseline of every deviation) orders its rules wrongly",
    },
    Mutation {
        name: "test-matrix-without-targets",
        file: "xtask/src/test.rs",
        find: "\"matrix\", \"--targets\"].map(String::from)",
        replace: "\"matrix\", \"--no-kmod\"].map(String::from)",
        means: "CI's matrix no longer names its targets, so one can drop out unnoticed",
    },
    Mutation {
        name: "host-snapshots-compared-on-any-kernel",
        file: "harness/runner/src/matrix/snapshot.rs",
        find: "FactsRule::SameSeries => kernel_series(&f.kernel),",
        replace: "FactsRule::SameSeries => String::new(),",
        means: "a newcomer's different kernel fails the host target's snapshots",
    },
];

/// The tests that need no VM: the pure crates, the runner's unit tests and corpus checks,
/// and xtask's unit tests.
const TEST_COMMANDS: &[&[&str]] = &[
    &["test", "--quiet", "-p", "addrsel-policy", "-p", "addrsel-model", "-p", "addrsel-engine"],
    &["test", "--quiet", "-p", "addrsel-runner", "--lib", "--test", "corpus_expectations"],
    &["test", "--quiet", "-p", "xtask", "--bin", "xtask"],
];

fn copy_tracked(root: &Path, to: &Path) -> anyhow::Result<()> {
    let out = Command::new("git").arg("-C").arg(root).args(["ls-files", "-z"]).output().context("git ls-files")?;
    anyhow::ensure!(out.status.success(), "git ls-files failed in {}", root.display());
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::str::from_utf8(name)?);
        let (src, dst) = (root.join(rel), to.join(rel));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // Files deleted in the work tree but not yet in git are skipped.
        if src.is_file() {
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// Runs the tests in the copy; `Ok(true)` when they all pass.
fn tests_pass(copy: &Path, target_dir: &Path) -> anyhow::Result<bool> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for argv in TEST_COMMANDS {
        let status = Command::new(&cargo)
            .args(*argv)
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(copy)
            .env("INSTA_UPDATE", "no")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {cargo}"))?;
        if !status.success() {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if args.list {
        for m in MUTATIONS {
            println!("{:<44} {}: {}", m.name, m.file, m.means);
        }
        return Ok(exit::OK);
    }
    let chosen: Vec<&Mutation> =
        MUTATIONS.iter().filter(|m| args.names.is_empty() || args.names.iter().any(|n| n == m.name)).collect();
    if let Some(unknown) = args.names.iter().find(|n| !MUTATIONS.iter().any(|m| &m.name == n)) {
        eprintln!("error: no mutation named `{unknown}` (see --list)");
        return Ok(exit::BAD_INPUT);
    }
    let root = addrsel_runner::repo_root();
    let work = root.join("target/mutants");
    let copy = work.join("src");
    let target_dir: PathBuf = work.join("target");
    let _ = std::fs::remove_dir_all(&copy);
    copy_tracked(&root, &copy)?;
    eprintln!("mutants: the unmutated tests first (in {})", copy.display());
    if !tests_pass(&copy, &target_dir)? {
        eprintln!("error: the tests fail without any mutation; fix them first");
        return Ok(exit::DISAGREE);
    }
    let mut survived = Vec::new();
    let mut stale = Vec::new();
    for m in &chosen {
        let path = copy.join(m.file);
        // The copy is the code under test: the work tree may change while this runs.
        let pristine = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if pristine.matches(m.find).count() != 1 {
            println!("{:<44} STALE: its code is not in {} exactly once; update the mutation", m.name, m.file);
            stale.push(m.name);
            continue;
        }
        std::fs::write(&path, pristine.replacen(m.find, m.replace, 1))?;
        let start = Instant::now();
        let caught = !tests_pass(&copy, &target_dir)?;
        std::fs::write(&path, &pristine)?;
        println!(
            "{:<44} {} ({:.0} s): {}",
            m.name,
            if caught { "caught" } else { "SURVIVED" },
            start.elapsed().as_secs_f64(),
            m.means
        );
        if !caught {
            survived.push(m.name);
        }
    }
    println!(
        "\n{} mutations: {} caught, {} survived, {} stale",
        chosen.len(),
        chosen.len() - survived.len() - stale.len(),
        survived.len(),
        stale.len()
    );
    Ok(if survived.is_empty() && stale.is_empty() { exit::OK } else { exit::DISAGREE })
}

#[cfg(test)]
mod tests {
    /// Every mutation applies to today's code exactly once (or `cargo xtask mutants` would
    /// report it stale instead of testing anything).
    #[test]
    fn every_mutation_applies() {
        let root = addrsel_runner::repo_root();
        for m in super::MUTATIONS {
            let text = std::fs::read_to_string(root.join(m.file)).unwrap();
            assert_eq!(text.matches(m.find).count(), 1, "{}: {}", m.name, m.file);
            assert_ne!(m.find, m.replace, "{}", m.name);
        }
    }
}
