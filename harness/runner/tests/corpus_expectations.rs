//! Every `[[expect]]` of the corpus, checked against the engine (real targets check them in
//! the matrix), and every one citing evidence that can be followed: a file in this
//! repository, a public report (a URL), or — for FreeBSD and the RFC, whose points rest on
//! reading — "source reading", in which case the prediction must be marked UNVERIFIED.

use std::path::{Path, PathBuf};

use addrsel_engine::predict;
use addrsel_model::Os;
use addrsel_runner::corpus;
use addrsel_runner::matrix::compare::profile_for;
use addrsel_runner::matrix::snapshot;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn corpus() -> Vec<corpus::Loaded> {
    corpus::load(&[corpus::builtin_dir()]).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The repository paths an evidence text names that exist.
fn cited_files(evidence: &str) -> Vec<String> {
    evidence
        .split(|c: char| c.is_whitespace() || "(),;'\"`".contains(c))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| w.contains('/') && !w.contains("://") && repo().join(w).is_file())
        .map(String::from)
        .collect()
}

#[test]
fn every_expectation_holds_in_the_engine() {
    let mut misses = Vec::new();
    let mut checked = 0;
    for l in corpus() {
        let s = &l.scenario;
        for e in &s.expect {
            // A target-specific expectation is predicted with that target's recorded facts
            // (its glibc version and kernel options), read from its snapshot.
            let facts = match &e.target {
                Some(t) => {
                    let stored = snapshot::read(&snapshot::path(t, &s.name)).unwrap();
                    let Some(stored) = stored else {
                        misses
                            .push(format!("{}: line {}: no snapshot of target {t} to take facts from", s.name, e.line));
                        continue;
                    };
                    stored.facts
                }
                None => None,
            };
            // A glibc-specific expectation is predicted with that version's parser.
            let facts = match &e.glibc {
                Some(v) => Some(addrsel_model::protocol::Facts { glibc: Some(v.clone()), ..facts.unwrap_or_default() }),
                None => facts,
            };
            let prediction = predict(s, &profile_for(e.os, facts.as_ref()));
            let got = prediction.probes.iter().find(|p| p.result.probe == e.probe).expect("probe exists");
            checked += 1;
            if !e.outcome.possible_in(&got.result.outcome) {
                misses.push(format!(
                    "{}: line {}: expected {} for {} on {}{}, the engine says {}",
                    corpus::display_path(&l.path),
                    e.line,
                    e.outcome.summary(),
                    e.probe,
                    e.os,
                    e.target.as_ref().map_or(String::new(), |t| format!(" ({t})")),
                    got.result.outcome.summary()
                ));
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
    assert!(checked >= 20, "only {checked} expectations in the corpus");
}

#[test]
fn every_expectation_cites_evidence_that_can_be_followed() {
    let mut problems = Vec::new();
    for l in corpus() {
        let s = &l.scenario;
        for e in &s.expect {
            let ev = e.evidence.as_str();
            let where_ = format!("{}: line {}", corpus::display_path(&l.path), e.line);
            let files = cited_files(ev);
            let url = ev.contains("https://");
            let reading = ev.to_lowercase().starts_with("source reading");
            match e.os {
                Os::Linux if files.is_empty() && !url => {
                    problems.push(format!("{where_}: Linux evidence must cite a measurement in the repository or a public report: {ev:?}"))
                }
                Os::Freebsd if files.is_empty() && !url && !reading => problems.push(format!(
                    "{where_}: FreeBSD evidence must cite a report (URL), a file here, or say \"source reading\": {ev:?}"
                )),
                Os::Freebsd if files.is_empty() => {
                    // A report or source reading, not a measurement here: the prediction must
                    // say it is unconfirmed.
                    let prediction = predict(s, &profile_for(Os::Freebsd, None));
                    let p = prediction.probes.iter().find(|p| p.result.probe == e.probe).expect("probe exists");
                    if p.unverified().is_empty() {
                        problems.push(format!("{where_}: a FreeBSD expectation resting on {ev:?} must be marked UNVERIFIED"));
                    }
                }
                Os::Rfc6724 if !(ev.contains("RFC 6724") || url || !files.is_empty()) => {
                    problems.push(format!("{where_}: RFC 6724 evidence must cite the RFC's section: {ev:?}"))
                }
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// An expectation that cites a measurement file is met by what that file recorded.
#[test]
fn cited_measurements_show_what_the_expectations_say() {
    use addrsel_model::Expected;
    let mut problems = Vec::new();
    let mut checked = 0;
    for l in corpus() {
        for e in &l.scenario.expect {
            for file in cited_files(&e.evidence).iter().filter(|f| f.starts_with("harness/measurements/")) {
                let text = std::fs::read_to_string(repo().join(file)).unwrap();
                let Some(mut lines) = addrsel_runner::corpus::measured_probe_output(&text, &e.probe) else {
                    problems.push(format!("{file}: no output for probe {}", e.probe));
                    continue;
                };
                // An ICMP probe prints `time exceeded from ADDRESS`; the expectation is the source.
                if l.scenario
                    .probe(&e.probe)
                    .is_some_and(|p| matches!(p.kind, addrsel_model::ProbeKind::IcmpTimeExceeded { .. }))
                {
                    lines = lines.iter().map(|x| x.rsplit(" from ").next().unwrap_or(x).to_string()).collect();
                }
                let want: Vec<String> = match &e.outcome {
                    Expected::Source(a) => vec![a.to_string()],
                    Expected::Error(x) => vec![x.clone()],
                    Expected::Order(o) => o.iter().map(|a| a.to_string()).collect(),
                };
                // The kernel's temporary addresses have random interface IDs: name them as
                // results do, temporary(PREFIX).
                let plan = addrsel_model::plan::linux(&l.scenario);
                let named = |x: &String| match x.parse() {
                    Ok(a) => addrsel_model::show_addr(&plan.name_observed(a)),
                    Err(_) => x.clone(),
                };
                let lines: Vec<String> = lines.iter().map(named).collect();
                let want: Vec<String> = want.iter().map(named).collect();
                checked += 1;
                if lines != want {
                    problems.push(format!(
                        "{}: line {}: expects {want:?} for {}, {file} recorded {lines:?}",
                        corpus::display_path(&l.path),
                        e.line,
                        e.probe
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 20, "only {checked} measured expectations");
}

/// The check itself: a made-up expectation that the engine does not meet is a miss.
#[test]
fn a_wrong_expectation_is_caught() {
    let text = r#"
name = "t"
[[interfaces]]
name = "eth0"
addresses = ["2001:db8:1::2/64"]
[[probes]]
id = "p"
connect = "2001:db8:1::1"
[[expect]]
probe = "p"
os = "linux"
source = "2001:db8:1::99"
evidence = "made up"
"#;
    let s = addrsel_model::parse_scenario("t.toml", text).unwrap().scenario;
    let prediction = predict(&s, &profile_for(Os::Linux, None));
    let misses = addrsel_engine::check_expectations(&s, &prediction, None);
    assert_eq!(misses.len(), 1, "{misses:?}");
    assert!(misses[0].contains("expected 2001:db8:1::99") && misses[0].contains("2001:db8:1::2"), "{misses:?}");
}
