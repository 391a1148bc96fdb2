//! The three-way comparison: what a real system did, what the engine predicts for that OS,
//! and what plain RFC 6724 says.

use addrsel_engine::{LinuxProfile, Prediction, Profile, predict};
use addrsel_model::protocol::Facts;
use addrsel_model::results::{Outcome, ProbeResult};
use addrsel_model::{Expected, Os, Scenario};
use addrsel_policy::gai_conf::GlibcParser;
use serde::{Deserialize, Serialize};

/// One probe on one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Observed == engine == RFC.
    Agree,
    /// Observed == engine, and the engine differs from RFC 6724 (a known OS deviation).
    Deviation,
    /// Observed != engine, or a recorded expectation did not hold.
    Disagree,
    /// The target cannot express part of the scenario.
    Unsupported,
    /// Configuring the scenario failed.
    SetupFailed,
    /// The target did not run.
    NotRun,
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Agree => "agree",
            Status::Deviation => "deviation",
            Status::Disagree => "DISAGREE",
            Status::Unsupported => "unsupported",
            Status::SetupFailed => "SETUP FAILED",
            Status::NotRun => "not run",
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Status::Disagree | Status::SetupFailed)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compared {
    #[serde(flatten)]
    pub observed: ProbeResult,
    pub status: Status,
    /// The engine's answer for this target's OS.
    pub predicted: Outcome,
    /// Plain RFC 6724's answer.
    pub rfc6724: Outcome,
    /// Why the status is what it is, when that needs words (expectations, module answers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The engine profile that models a target with these facts.
pub fn profile_for(os: Os, facts: Option<&Facts>) -> Profile {
    match os {
        Os::Linux => {
            let mut p = LinuxProfile::default();
            if let Some(f) = facts {
                if let Some(v) = &f.glibc {
                    let mut parts = v.split('.').filter_map(|x| x.parse::<u32>().ok());
                    if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
                        p.glibc = GlibcParser::for_version(major, minor);
                    }
                }
                if let Some(m) = f.mip6 {
                    p.mip6 = m;
                }
            }
            Profile::Linux(p)
        }
        Os::Freebsd => Profile::Freebsd,
        Os::Rfc6724 => Profile::Rfc6724,
    }
}

/// Compares a target's observations with the engine and the RFC.
pub fn compare(
    s: &Scenario,
    os: Os,
    target: &str,
    facts: Option<&Facts>,
    observed: &[ProbeResult],
) -> (Vec<Compared>, Prediction, Prediction) {
    let engine = predict(s, &profile_for(os, facts));
    let rfc = predict(s, &Profile::Rfc6724);
    let mut out = Vec::new();
    for p in &s.probes {
        let predicted =
            engine.report.results.iter().find(|r| r.probe == p.id).expect("engine answers every probe").outcome.clone();
        let rfc_outcome =
            rfc.report.results.iter().find(|r| r.probe == p.id).expect("engine answers every probe").outcome.clone();
        let Some(obs) = observed.iter().find(|r| r.probe == p.id) else {
            out.push(Compared {
                observed: ProbeResult {
                    probe: p.id.clone(),
                    outcome: Outcome::Unsupported { reason: "no observation".into() },
                },
                status: Status::SetupFailed,
                predicted,
                rfc6724: rfc_outcome,
                notes: vec!["the target returned no result for this probe".into()],
            });
            continue;
        };
        let mut notes = Vec::new();
        let status = if let Outcome::Unsupported { .. } = obs.outcome {
            Status::Unsupported
        } else if obs.outcome.decision() == predicted.decision() {
            if predicted == rfc_outcome { Status::Agree } else { Status::Deviation }
        } else {
            notes.push(format!("observed {}, the engine predicts {}", obs.outcome.summary(), predicted.summary()));
            Status::Disagree
        };
        let mut status = status;
        for e in
            s.expect.iter().filter(|e| e.probe == p.id && e.os == os && e.target.as_deref().is_none_or(|t| t == target))
        {
            let holds = match (&e.outcome, &obs.outcome) {
                (Expected::Source(a), Outcome::Connect { source, .. }) => source.as_ref() == Some(a),
                (Expected::Error(x), Outcome::Connect { error, .. } | Outcome::Resolve { error, .. }) => {
                    error.as_ref() == Some(x)
                }
                (Expected::Order(o), Outcome::Resolve { order, error: None, .. }) => order == o,
                (_, Outcome::Unsupported { .. }) => true,
                _ => false,
            };
            if !holds {
                notes.push(format!("the expectation on scenario line {} does not hold", e.line));
                status = Status::Disagree;
            }
        }
        if let (Outcome::Connect { source, error, .. }, Some(k)) = (&obs.outcome, obs.outcome.kernel_answer())
            && (&k.source, &k.error) != (source, error)
        {
            notes.push(format!(
                "the kernel module answers {} where the socket gives {}",
                k.source.map_or_else(|| k.error.clone().unwrap_or_default(), |a| a.to_string()),
                source.map_or_else(|| error.clone().unwrap_or_default(), |a| a.to_string())
            ));
        }
        out.push(Compared { observed: obs.clone(), status, predicted, rfc6724: rfc_outcome, notes });
    }
    (out, engine, rfc)
}
