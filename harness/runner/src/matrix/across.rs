//! The matrix across targets: for every probe whose answer is not the same on every target
//! that ran it, which targets gave which answer, with each target's kernel and C library.
//! "What changed between 6.1 and 6.12" is then one view (`matrix --compare-releases`).

use std::fmt::Write as _;

use addrsel_model::results::Outcome;
use serde::Serialize;

use crate::matrix::report::MatrixResult;

/// One probe answered differently by the targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub scenario: String,
    pub probe: String,
    /// Each distinct answer with the targets that gave it, in the run's target order.
    pub answers: Vec<Answer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub answer: String,
    pub targets: Vec<String>,
}

/// The differences, scenario and probe in the run's order. Only observed answers count: a
/// probe a target could not run (unsupported, not run) is left out for that target.
pub fn differences(m: &MatrixResult) -> Vec<Difference> {
    let mut out = Vec::new();
    for scenario in &m.scenarios {
        let mut probes: Vec<String> = Vec::new();
        let mut answers: Vec<(String, String, String)> = Vec::new(); // (probe, answer, target)
        for t in &m.targets {
            let Some(cell) = m.cell(scenario, &t.name) else { continue };
            if cell.not_run.is_some() || cell.setup_error.is_some() {
                continue;
            }
            for r in &cell.results {
                if matches!(r.observed.outcome, Outcome::Unsupported { .. }) {
                    continue;
                }
                if !probes.contains(&r.observed.probe) {
                    probes.push(r.observed.probe.clone());
                }
                answers.push((r.observed.probe.clone(), r.observed.outcome.summary(), t.name.clone()));
            }
        }
        for probe in probes {
            let mut grouped: Vec<Answer> = Vec::new();
            for (_, answer, target) in answers.iter().filter(|(p, _, _)| *p == probe) {
                match grouped.iter_mut().find(|a| &a.answer == answer) {
                    Some(a) => a.targets.push(target.clone()),
                    None => grouped.push(Answer { answer: answer.clone(), targets: vec![target.clone()] }),
                }
            }
            if grouped.len() > 1 {
                out.push(Difference { scenario: scenario.clone(), probe, answers: grouped });
            }
        }
    }
    out
}

/// A target's release in a few words: `Linux 6.12.117+deb13-cloud-amd64, glibc 2.41`.
fn release(m: &MatrixResult, target: &str) -> String {
    m.targets
        .iter()
        .find(|t| t.name == target)
        .and_then(|t| t.facts.as_ref())
        .map(|f| {
            format!("{} {}{}", f.os, f.kernel, f.glibc.as_ref().map(|g| format!(", glibc {g}")).unwrap_or_default())
        })
        .unwrap_or_else(|| "facts unknown".into())
}

pub fn terminal(m: &MatrixResult) -> String {
    let diffs = differences(m);
    let mut out = String::from("\nAcross targets\n");
    if diffs.is_empty() {
        out.push_str("every probe has the same answer on every target that ran it\n");
        return out;
    }
    let _ = writeln!(out, "{} probe(s) answered differently:", diffs.len());
    for d in &diffs {
        let _ = writeln!(out, "  {} / {}", d.scenario, d.probe);
        for a in &d.answers {
            let _ = writeln!(out, "    {}", a.answer);
            for t in &a.targets {
                let _ = writeln!(out, "        {t} ({})", release(m, t));
            }
        }
    }
    out
}

pub fn markdown(m: &MatrixResult) -> String {
    let diffs = differences(m);
    let mut out = String::from("\n### Across targets\n\n");
    if diffs.is_empty() {
        out.push_str("Every probe has the same answer on every target that ran it.\n");
        return out;
    }
    out.push_str("| scenario / probe | answer | targets |\n|---|---|---|\n");
    for d in &diffs {
        for (i, a) in d.answers.iter().enumerate() {
            let head = if i == 0 { format!("{} / {}", d.scenario, d.probe) } else { String::new() };
            let targets: Vec<String> = a.targets.iter().map(|t| format!("{t} ({})", release(m, t))).collect();
            let _ = writeln!(out, "| {head} | {} | {} |", a.answer.replace('|', "\\|"), targets.join("<br>"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_probes_that_differ_are_listed_with_their_targets() {
        let json = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/across.json")).unwrap();
        let m: MatrixResult = serde_json::from_str(&json).unwrap();
        let d = differences(&m);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].scenario.as_str(), d[0].probe.as_str()), ("s", "resolve"));
        assert_eq!(d[0].answers[0], Answer { answer: "2001:db8::1, 192.0.2.1".into(), targets: vec!["old".into()] });
        assert_eq!(
            d[0].answers[1],
            Answer { answer: "192.0.2.1, 2001:db8::1".into(), targets: vec!["new".into(), "newer".into()] }
        );
        let text = terminal(&m);
        assert!(text.contains("        new (Linux 6.12, glibc 2.41)"), "{text}");
        assert!(markdown(&m).contains("| s / resolve | 2001:db8::1, 192.0.2.1 | old (Linux 6.1, glibc 2.36) |"));
    }
}
