//! What changes between two predictions of the same scenario (a policy change), and which
//! rule made the difference.

use addrsel_model::results::Outcome;
use serde::Serialize;

use crate::Prediction;
use crate::trace::{Decision, Side, Trace};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub scenario: String,
    pub probe: String,
    /// `engine:linux`, `host`, ...
    pub target: String,
    pub before: String,
    pub after: String,
    /// The deciding rule before and after, where the trace has one.
    pub rule_before: Option<String>,
    pub rule_after: Option<String>,
}

fn decision_text(d: &Option<Decision>) -> Option<String> {
    d.as_ref().map(|d| format!("{}: {}", d.rule, d.detail))
}

/// For a resolve: the rule that ordered the first position where the orders differ.
fn resolve_rule(trace: &Trace, at: usize) -> Option<String> {
    match trace {
        Trace::Resolve(t) => match &t.unsorted_because {
            Some(why) => Some(format!("not sorted: {why}")),
            None => t.neighbours.get(at).and_then(|(_, _, d)| decision_text(d)),
        },
        _ => None,
    }
}

/// For a connect: the duel that settled the final source, or the first step (errors).
fn connect_rule(trace: &Trace, chosen: Option<std::net::IpAddr>) -> Option<String> {
    let Trace::Connect(t) = trace else {
        return None;
    };
    let Some(chosen) = chosen else {
        return t.steps.last().cloned();
    };
    t.duels
        .iter()
        .rev()
        .find(|d| {
            let won = match &d.decision {
                Some(x) if x.winner == Side::Right => d.challenger,
                _ => d.best,
            };
            won == chosen
        })
        .and_then(|d| decision_text(&d.decision))
        .or_else(|| Some("the only candidate".into()))
}

/// Every probe whose decision differs between `before` and `after`.
pub fn changes(before: &Prediction, after: &Prediction) -> Vec<Change> {
    let mut out = Vec::new();
    for (b, a) in before.probes.iter().zip(&after.probes) {
        if b.result.outcome.decision() == a.result.outcome.decision() {
            continue;
        }
        let (rule_before, rule_after) = match (&b.result.outcome, &a.result.outcome) {
            (Outcome::Resolve { order: ob, .. }, Outcome::Resolve { order: oa, .. }) => {
                let at = ob.iter().zip(oa).position(|(x, y)| x != y).unwrap_or(0);
                (resolve_rule(&b.trace, at), resolve_rule(&a.trace, at))
            }
            (Outcome::Connect { source: sb, .. }, Outcome::Connect { source: sa, .. }) => {
                (connect_rule(&b.trace, *sb), connect_rule(&a.trace, *sa))
            }
            _ => (None, None),
        };
        out.push(Change {
            scenario: before.report.scenario.clone(),
            probe: b.result.probe.clone(),
            target: before.report.target.clone(),
            before: b.result.outcome.summary(),
            after: a.result.outcome.summary(),
            rule_before,
            rule_after,
        });
    }
    out
}
