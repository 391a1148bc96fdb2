//! Snapshots of observations, one `.snap` file per scenario and target under
//! `harness/snapshots/<target>/`, so a kernel or libc change shows up as a reviewable diff
//! (`cargo xtask matrix --accept`, or `cargo insta review` for the `.snap.new` files a local
//! run leaves).
//!
//! The files are in insta's format: a YAML header (`source`, `description`, and the facts
//! of the system that produced them under `info`) between `---` lines, then the text.
//! insta has no public API to write a snapshot with metadata outside its assertion macros,
//! so the header is written here, with the quoting rules of insta's own YAML emitter; a test
//! re-renders every stored snapshot byte for byte and reads the output back with insta.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use addrsel_model::Scenario;
use addrsel_model::protocol::{Facts, KmodStatus};
use addrsel_model::results::{Outcome, ProbeResult};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SnapshotState {
    Same,
    /// No snapshot yet for this scenario and target.
    New {
        text: String,
    },
    /// The observations, or the facts of the system that made them, changed.
    Changed {
        old: String,
        new: String,
    },
    /// Accepted (written) in this run.
    Accepted,
    /// The stored snapshot was recorded on another kernel or C library than this host's, so
    /// only the engine comparison counts (the `host` target on a machine other than the one
    /// that recorded it).
    OtherSystem {
        recorded: String,
        here: String,
    },
}

impl SnapshotState {
    pub fn is_failure(&self) -> bool {
        matches!(self, SnapshotState::New { .. } | SnapshotState::Changed { .. })
    }
}

/// What to do with snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshots {
    /// Compare with the stored ones; changes fail the run.
    Compare,
    /// Store the observations as the new snapshots.
    Accept,
    /// Leave snapshots alone.
    Skip,
}

/// How the facts recorded with a snapshot must match the system a run observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactsRule {
    /// VM targets: the same kernel release, architecture, C library and kernel options; any
    /// change is a snapshot change to review.
    Exact,
    /// The host: snapshots are compared only on the same kernel series (major.minor),
    /// architecture and C library; elsewhere they say so and are not compared.
    SameSeries,
}

/// `harness/snapshots`, or `$ADDRSEL_SNAPSHOTS` when set (tests use a scratch directory).
pub fn root() -> PathBuf {
    match std::env::var_os("ADDRSEL_SNAPSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => crate::repo_root().join("harness/snapshots"),
    }
}

/// The file holding a scenario's snapshot on a target.
pub fn path(target: &str, scenario: &str) -> PathBuf {
    root().join(target).join(format!("{scenario}.snap"))
}

/// The snapshot text of a scenario's observations. A module answer the scenario marks as
/// varying between boots is not recorded (it stays in the JSON).
///
/// `multipath`: probes whose prediction is a set of possible sources (a multipath route's
/// paths, picked by a per-boot hash). An observation inside its set is recorded as the set,
/// so the snapshot does not change from boot to boot.
pub fn render(s: &Scenario, results: &[ProbeResult], multipath: &[(String, Vec<IpAddr>)]) -> String {
    let mut out = String::new();
    for r in results {
        let set = multipath.iter().find(|(p, _)| *p == r.probe).map(|(_, set)| set);
        let varies = s.probe(&r.probe).and_then(|p| p.kernel_module_varies.as_ref()).is_some();
        let line = match &r.outcome {
            Outcome::Connect { dst, source: Some(a), error: None, .. } if set.is_some_and(|set| set.contains(a)) => {
                let set = set.expect("checked");
                format!(
                    "{}: connect {dst} -> one of {} (multipath: a per-boot hash picks the path; this boot's pick is in the JSON)",
                    r.probe,
                    set.iter().map(addrsel_model::show_addr).collect::<Vec<_>>().join(", ")
                )
            }
            Outcome::Connect { dst, source, error, .. } => {
                let got = source
                    .as_ref()
                    .map_or_else(|| error.clone().unwrap_or_else(|| "no answer".into()), addrsel_model::show_addr);
                let module = match r.outcome.kernel_answer() {
                    Some(_) if varies => " (kernel module: varies between boots, not recorded)".to_string(),
                    Some(k) => format!(
                        " (kernel module: {}{})",
                        k.source.as_ref().map_or_else(|| k.error.clone().unwrap_or_default(), addrsel_model::show_addr),
                        k.nexthop.map_or_else(String::new, |f| format!(", nexthop address {f}"))
                    ),
                    None => String::new(),
                };
                format!("{}: connect {dst} -> {got}{module}", r.probe)
            }
            Outcome::Resolve { name, order, error } => match error {
                Some(e) => format!("{}: resolve {name} -> {e}", r.probe),
                None => format!(
                    "{}: resolve {name} -> {}",
                    r.probe,
                    order.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                ),
            },
            Outcome::Icmp { to, .. } => format!("{}: icmp {to} -> {}", r.probe, r.outcome.summary()),
            Outcome::Unsupported { reason } => format!("{}: unsupported: {reason}", r.probe),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn normalize(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end().to_string()
}

/// A snapshot file: the facts it was recorded with and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub facts: Option<Facts>,
    pub text: String,
}

/// Reads a snapshot file; `Ok(None)` when there is none.
pub fn read(path: &Path) -> anyhow::Result<Option<Stored>> {
    let content = match std::fs::read_to_string(path) {
        Ok(c) => c,
        // A path whose directory is a file has no snapshot either (writing it will say why).
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse(&content).map(Some).with_context(|| format!("{} is not a snapshot file", path.display()))
}

/// Compares the observations with the stored snapshot; with `accept`, stores them (an error
/// names the file that could not be written). Otherwise a changed or new snapshot is left as
/// a `.snap.new` file for review (not in CI).
pub fn check(
    target: &str,
    s: &Scenario,
    results: &[ProbeResult],
    multipath: &[(String, Vec<IpAddr>)],
    facts: Option<&Facts>,
    rule: FactsRule,
    accept: bool,
) -> anyhow::Result<SnapshotState> {
    let file = path(target, &s.name);
    let pending = file.with_extension("snap.new");
    let text = render(s, results, multipath);
    let stored = read(&file)?;
    let state = match &stored {
        Some(old) => {
            let facts_differ = facts_summary_if_different(old.facts.as_ref(), facts, rule);
            match (facts_differ, rule) {
                (Some((recorded, here)), FactsRule::SameSeries) if !accept => {
                    return Ok(SnapshotState::OtherSystem { recorded, here });
                }
                (None, _) if normalize(&old.text) == normalize(&text) => {
                    let _ = std::fs::remove_file(&pending);
                    return Ok(SnapshotState::Same);
                }
                (differ, _) => {
                    let with_facts = |facts: Option<&Facts>, text: &str| match &differ {
                        Some(_) => format!("{}\n{}", facts_line(facts), normalize(text)),
                        None => normalize(text),
                    };
                    SnapshotState::Changed {
                        old: with_facts(old.facts.as_ref(), &old.text),
                        new: with_facts(facts, &text),
                    }
                }
            }
        }
        None => SnapshotState::New { text: normalize(&text) },
    };
    let file_text = serialize(target, &s.name, facts, &text);
    if accept {
        write_file(&file, &file_text)?;
        let _ = std::fs::remove_file(&pending);
        return Ok(SnapshotState::Accepted);
    }
    if std::env::var_os("CI").is_none() {
        // Best effort: a review aid, not a result.
        let _ = write_file(&pending, &file_text);
    }
    Ok(state)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().expect("a snapshot file has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the snapshot directory {}", dir.display()))?;
    std::fs::write(path, text).with_context(|| format!("cannot write the snapshot {}", path.display()))
}

/// The facts that decide whether a snapshot applies, in one line.
fn facts_line(f: Option<&Facts>) -> String {
    match f {
        Some(f) => format!(
            "facts: {} {} {}, glibc {}, CONFIG_IPV6_MIP6 {}",
            f.os,
            f.kernel,
            f.arch,
            f.glibc.as_deref().unwrap_or("none"),
            f.mip6.map_or("unknown", |m| if m { "y" } else { "n" })
        ),
        None => "facts: none recorded".into(),
    }
}

/// `6.18` of `6.18.44-fc-v669`.
fn kernel_series(release: &str) -> String {
    release.split(['.', '-']).take(2).collect::<Vec<_>>().join(".")
}

/// The recorded and current facts in words when they differ under `rule`.
fn facts_summary_if_different(
    recorded: Option<&Facts>,
    here: Option<&Facts>,
    rule: FactsRule,
) -> Option<(String, String)> {
    let key = |f: Option<&Facts>| -> Option<(String, String, String, Option<bool>)> {
        let f = f?;
        let kernel = match rule {
            FactsRule::Exact => f.kernel.clone(),
            FactsRule::SameSeries => kernel_series(&f.kernel),
        };
        let mip6 = match rule {
            FactsRule::Exact => f.mip6,
            FactsRule::SameSeries => None,
        };
        Some((kernel, f.arch.clone(), f.glibc.clone().unwrap_or_default(), mip6))
    };
    let words = |f: Option<&Facts>| match key(f) {
        Some((kernel, arch, glibc, _)) => {
            format!("{kernel} {arch}, glibc {}", if glibc.is_empty() { "none" } else { glibc.as_str() })
        }
        None => "unknown facts".into(),
    };
    // A snapshot without facts (or a run that reported none) cannot be told apart: compare.
    if recorded.is_none() || here.is_none() || key(recorded) == key(here) {
        None
    } else {
        Some((words(recorded), words(here)))
    }
}

// ---------------------------------------------------------------------------------------
// The file format

const SOURCE: &str = "harness/runner/src/snapshot.rs";

/// A whole `.snap` file.
pub fn serialize(target: &str, scenario: &str, facts: Option<&Facts>, text: &str) -> String {
    let mut out = String::from("---\n");
    out.push_str(&format!("source: {}\n", yaml_scalar(SOURCE)));
    out.push_str(&format!(
        "description: {}\n",
        yaml_scalar(&format!("addrsel observations of scenario `{scenario}` on target `{target}`"))
    ));
    if let Some(f) = facts {
        out.push_str("info:\n");
        let fields: [(&str, Option<String>); 6] = [
            ("os", Some(yaml_scalar(&f.os))),
            ("kernel", Some(yaml_scalar(&f.kernel))),
            ("arch", Some(yaml_scalar(&f.arch))),
            ("glibc", Some(f.glibc.as_deref().map_or("~".into(), yaml_scalar))),
            ("mip6", Some(f.mip6.map_or("~".into(), |m| m.to_string()))),
            ("kernel_config", Some(yaml_scalar(&f.kernel_config))),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                out.push_str(&format!("  {k}: {v}\n"));
            }
        }
        if let Some(k) = &f.kmod {
            out.push_str(&format!("  kmod:\n    ready: {}\n    detail: {}\n", k.ready, yaml_scalar(&k.detail)));
        }
    }
    out.push_str("---\n");
    out.push_str(&normalize(text));
    out.push('\n');
    out
}

/// A string as insta's YAML emitter writes it: plain when that reads back as the same
/// string, else double-quoted with escapes.
fn yaml_scalar(s: &str) -> String {
    let special_start = s.starts_with(['&', '*', '?', '|', '-', '<', '>', '=', '!', '%', '@', '.']);
    let special_char = s.contains(|c: char| {
        matches!(c, ':' | '{' | '}' | '[' | ']' | ',' | '#' | '`' | '"' | '\'' | '\\' | '\0'..='\x06' | '\t' | '\n' | '\r' | '\x0e'..='\x1a' | '\x1c'..='\x1f')
    });
    const WORDS: [&str; 22] = [
        "yes", "Yes", "YES", "no", "No", "NO", "True", "TRUE", "true", "False", "FALSE", "false", "on", "On", "ON",
        "off", "Off", "OFF", "null", "Null", "NULL", "~",
    ];
    let quote = s.is_empty()
        || s.starts_with(' ')
        || s.ends_with(' ')
        || special_start
        || special_char
        || WORDS.contains(&s)
        || s.starts_with("0x")
        || s.parse::<i64>().is_ok()
        || s.parse::<f64>().is_ok();
    if !quote {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads back what [`yaml_scalar`] wrote (`None` for `~`).
fn yaml_unscalar(v: &str) -> Option<String> {
    if v == "~" {
        return None;
    }
    let Some(inner) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return Some(v.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\x08'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('f') => out.push('\x0c'),
            Some('r') => out.push('\r'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}

/// Parses a `.snap` file written by [`serialize`] (or by insta for these snapshots).
fn parse(content: &str) -> anyhow::Result<Stored> {
    let rest = content.strip_prefix("---\n").context("no `---` header")?;
    let (header, text) = rest.split_once("\n---\n").context("the header does not end")?;
    let mut info: Vec<(String, String)> = Vec::new();
    let mut kmod: Vec<(String, String)> = Vec::new();
    let mut section = "";
    for line in header.lines() {
        let indent = line.len() - line.trim_start().len();
        let Some((k, v)) = line.trim_start().split_once(':') else {
            anyhow::bail!("unreadable header line `{line}`");
        };
        let v = v.trim_start().to_string();
        match indent {
            0 => section = if k == "info" { "info" } else { "" },
            2 if section == "info" || section == "kmod" => {
                if k == "kmod" {
                    section = "kmod";
                } else {
                    section = "info";
                    info.push((k.to_string(), v));
                }
            }
            4 if section == "kmod" => kmod.push((k.to_string(), v)),
            _ => {}
        }
    }
    let get = |k: &str| info.iter().find(|(key, _)| key == k).and_then(|(_, v)| yaml_unscalar(v));
    let facts = (!info.is_empty()).then(|| Facts {
        os: get("os").unwrap_or_default(),
        kernel: get("kernel").unwrap_or_default(),
        kernel_version: None,
        arch: get("arch").unwrap_or_default(),
        glibc: get("glibc"),
        mip6: get("mip6").map(|m| m == "true"),
        kernel_config: get("kernel_config").unwrap_or_default(),
        kmod: (!kmod.is_empty()).then(|| {
            let kget = |k: &str| kmod.iter().find(|(key, _)| key == k).and_then(|(_, v)| yaml_unscalar(v));
            KmodStatus { ready: kget("ready").as_deref() == Some("true"), detail: kget("detail").unwrap_or_default() }
        }),
    });
    Ok(Stored { facts, text: text.to_string() })
}

/// A line diff of two snapshot texts, for reports: `-` old, `+` new, unchanged lines
/// indented, so a reordering shows as one.
pub fn diff(old: &str, new: &str) -> String {
    let mut out = String::new();
    for change in similar::TextDiff::from_lines(old, new).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "- ",
            similar::ChangeTag::Insert => "+ ",
            similar::ChangeTag::Equal => "  ",
        };
        out.push_str(sign);
        out.push_str(change.value().trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multipath probe's snapshot holds the set, so the path a boot's hash took does not
    /// change it; an observation outside the set is written as it is (a change to review).
    #[test]
    fn a_multipath_observation_is_recorded_as_its_set() {
        let s = addrsel_model::parse_scenario(
            "t.toml",
            "name = \"t\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [\"10.0.0.2/24\"]\n[[probes]]\nid = \"m\"\nconnect = \"192.0.2.1\"\n",
        )
        .unwrap()
        .scenario;
        let observed = |a: &str| {
            vec![ProbeResult {
                probe: "m".into(),
                outcome: Outcome::Connect {
                    dst: "192.0.2.1".into(),
                    source: Some(a.parse().unwrap()),
                    error: None,
                    kernel_source: Some(a.parse().unwrap()),
                    kernel_error: None,
                    kernel_nexthop: None,
                    sources: vec![],
                },
            }]
        };
        let set = vec![("m".to_string(), vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()])];
        let first = render(&s, &observed("10.0.0.2"), &set);
        assert_eq!(render(&s, &observed("10.0.0.3"), &set), first);
        assert!(first.starts_with("m: connect 192.0.2.1 -> one of 10.0.0.2, 10.0.0.3 (multipath"), "{first}");
        assert_eq!(
            render(&s, &observed("10.0.0.9"), &set),
            "m: connect 192.0.2.1 -> 10.0.0.9 (kernel module: 10.0.0.9)\n"
        );
    }

    /// Every stored snapshot, parsed and written again, is the same file byte for byte, and
    /// insta reads what is written as the same text.
    #[test]
    fn stored_snapshots_round_trip_byte_for_byte() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots");
        let mut seen = 0;
        for target in std::fs::read_dir(&root).unwrap().flatten() {
            for f in std::fs::read_dir(target.path()).unwrap().flatten() {
                let p = f.path();
                if p.extension().is_none_or(|x| x != "snap") {
                    continue;
                }
                let content = std::fs::read_to_string(&p).unwrap();
                let stored = parse(&content).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let target_name = target.file_name().to_string_lossy().into_owned();
                let scenario = p.file_stem().unwrap().to_string_lossy().into_owned();
                let again = serialize(&target_name, &scenario, stored.facts.as_ref(), &stored.text);
                assert_eq!(again, content, "{}", p.display());
                let by_insta = insta::Snapshot::from_file(&p).unwrap();
                assert_eq!(by_insta.contents().as_text().unwrap().to_string(), normalize(&stored.text));
                seen += 1;
            }
        }
        assert!(seen >= 100, "only {seen} snapshots found");
    }

    #[test]
    fn yaml_scalars_quote_what_would_read_back_differently() {
        for (s, want) in [
            ("2.36", "\"2.36\""),
            ("6.1.0-56-cloud-arm64", "6.1.0-56-cloud-arm64"),
            ("a `b`", "\"a `b`\""),
            ("", "\"\""),
            ("true", "\"true\""),
            ("-x", "\"-x\""),
            ("/proc/config.gz", "/proc/config.gz"),
            ("tab\there \"q\"", "\"tab\\there \\\"q\\\"\""),
        ] {
            assert_eq!(yaml_scalar(s), want);
            assert_eq!(yaml_unscalar(want).as_deref(), Some(s));
        }
    }

    fn facts(kernel: &str, glibc: &str) -> Facts {
        Facts {
            os: "Linux".into(),
            kernel: kernel.into(),
            kernel_version: None,
            arch: "x86_64".into(),
            glibc: Some(glibc.into()),
            mip6: Some(false),
            kernel_config: "/proc/config.gz".into(),
            kmod: None,
        }
    }

    #[test]
    fn host_snapshots_apply_to_the_same_kernel_series_and_glibc_only() {
        let rec = facts("6.18.44-fc-v669", "2.36");
        let same_series = facts("6.18.44-fc-v1300", "2.36");
        let other = facts("6.8.0-31-generic", "2.39");
        assert_eq!(facts_summary_if_different(Some(&rec), Some(&same_series), FactsRule::SameSeries), None);
        assert_eq!(
            facts_summary_if_different(Some(&rec), Some(&other), FactsRule::SameSeries),
            Some(("6.18 x86_64, glibc 2.36".into(), "6.8 x86_64, glibc 2.39".into()))
        );
        // VM targets: any kernel change counts.
        assert!(facts_summary_if_different(Some(&rec), Some(&same_series), FactsRule::Exact).is_some());
    }

    #[test]
    fn diff_shows_a_reordering() {
        let d = diff("a: 1\nb: 2\n", "b: 2\na: 1\n");
        assert_eq!(d, "+ b: 2\n  a: 1\n- b: 2\n");
    }
}
