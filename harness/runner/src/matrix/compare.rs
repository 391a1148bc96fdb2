//! The three-way comparison: what a real system did, what the engine predicts for that OS,
//! and what plain RFC 6724 says.

use addrsel_engine::{LinuxProfile, Prediction, Profile, predict};
use addrsel_model::protocol::Facts;
use addrsel_model::results::{Outcome, ProbeResult};
use std::net::IpAddr;

use addrsel_model::{Os, Probe, ProbeKind, Scenario};
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
    /// The target could not run a probe that carries an expectation for it.
    Unchecked,
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
            Status::Unchecked => "EXPECTATION NOT CHECKED",
            Status::SetupFailed => "SETUP FAILED",
            Status::NotRun => "not run",
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Status::Disagree | Status::SetupFailed | Status::Unchecked)
    }

    /// The more serious of two verdicts.
    fn worst(self, other: Status) -> Status {
        if other.is_failure() && !self.is_failure() { other } else { self }
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

impl Compared {
    pub fn is_failure(&self) -> bool {
        self.status.is_failure()
    }
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
                p.vrf_source_fix = addrsel_engine::linux::vrf_source_fix(&f.kernel, f.kernel_version.as_deref());
            }
            Profile::Linux(p)
        }
        Os::Freebsd => Profile::Freebsd,
        Os::Rfc6724 => Profile::Rfc6724,
    }
}

/// Why a module answer may differ from the socket's for this probe, when that is a known,
/// explained difference between the kernel's selection and `connect()`; `None` otherwise.
pub fn explained_module_difference(probe: &Probe, os: Os, observed: &Outcome) -> Option<&'static str> {
    let (ProbeKind::Connect { dst: IpAddr::V6(dst), zone }, Outcome::Connect { error, .. }) = (&probe.kind, observed)
    else {
        return None;
    };
    let link_scoped = dst.is_unicast_link_local() || (dst.is_multicast() && matches!(dst.octets()[1] & 0x0f, 1 | 2));
    match (os, link_scoped, zone) {
        (Os::Linux, true, None) if error.as_deref() == Some("EINVAL") => Some(
            "connect() refuses a link-scoped destination without a zone (EINVAL); the module's route lookup answers without an interface",
        ),
        (Os::Linux, false, Some(_)) => Some(
            "connect() ignores the zone of a destination that is not link-scoped; the module takes it as the interface",
        ),
        _ => None,
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
    let out = s
        .probes
        .iter()
        .map(|p| {
            let answer = |pred: &Prediction| {
                pred.report
                    .results
                    .iter()
                    .find(|r| r.probe == p.id)
                    .expect("engine answers every probe")
                    .outcome
                    .clone()
            };
            let observed = observed.iter().find(|r| r.probe == p.id);
            compare_probe(s, p, os, target, facts, observed, answer(&engine), answer(&rfc))
        })
        .collect();
    (out, engine, rfc)
}

/// The verdict for one probe: observation against the engine's prediction, the RFC's answer,
/// the scenario's expectations for this OS and target, and the kernel module's answer.
#[allow(clippy::too_many_arguments)]
pub fn compare_probe(
    s: &Scenario,
    p: &Probe,
    os: Os,
    target: &str,
    facts: Option<&Facts>,
    observed: Option<&ProbeResult>,
    predicted: Outcome,
    rfc6724: Outcome,
) -> Compared {
    let Some(obs) = observed else {
        return Compared {
            observed: ProbeResult {
                probe: p.id.clone(),
                outcome: Outcome::Unsupported { reason: "no observation".into() },
            },
            status: Status::SetupFailed,
            predicted,
            rfc6724,
            notes: vec!["the target returned no result for this probe".into()],
        };
    };
    let mut notes = Vec::new();
    let unsupported = matches!(obs.outcome, Outcome::Unsupported { .. });
    let mut status = if unsupported {
        Status::Unsupported
    } else if obs.outcome.fits(&predicted) {
        if let Outcome::Connect { sources, .. } = &predicted
            && !sources.is_empty()
        {
            notes.push(format!(
                "multipath: {} is {}; the flow hash picks one path per boot",
                obs.outcome.summary(),
                predicted.summary()
            ));
        }
        // RFC 6724 has no answer for ICMP error sources: nothing to deviate from.
        let rfc_silent = matches!(rfc6724, Outcome::Unsupported { .. });
        // A set of possible sources agrees with the RFC when the RFC's one answer is among
        // them: the verdict must not change with the path a boot's hash picks.
        let rfc_agrees = match (&predicted, &rfc6724) {
            (Outcome::Connect { sources, .. }, Outcome::Connect { source: Some(r), .. }) if !sources.is_empty() => {
                sources.contains(r)
            }
            _ => predicted.decision() == rfc6724.decision(),
        };
        if rfc_agrees || rfc_silent { Status::Agree } else { Status::Deviation }
    } else {
        notes.push(format!("observed {}, the engine predicts {}", obs.outcome.summary(), predicted.summary()));
        Status::Disagree
    };
    let glibc = facts.and_then(|f| f.glibc.as_deref());
    for e in s.expect.iter().filter(|e| e.probe == p.id && e.applies_to(os, Some(target), glibc)) {
        if unsupported {
            notes.push(format!(
                "the expectation on scenario line {} was not checked: this target cannot run the probe",
                e.line
            ));
            status = status.worst(Status::Unchecked);
            continue;
        }
        if !e.outcome.holds_for(&obs.outcome) {
            notes.push(format!("the expectation on scenario line {} does not hold ({})", e.line, e.evidence));
            status = Status::Disagree;
        }
    }
    // A module that is not ready fails the target on its own (a target problem); its "answers"
    // are then only why it was not asked.
    let module_ready = facts.and_then(|f| f.kmod.as_ref()).is_none_or(|k| k.ready);
    if let (Outcome::Connect { source, error, .. }, Some(k), true) =
        (&obs.outcome, obs.outcome.kernel_answer(), module_ready)
        && (&k.source, &k.error) != (source, error)
    {
        let module = k.source.map_or_else(|| k.error.clone().unwrap_or_default(), |a| a.to_string());
        let socket = source.map_or_else(|| error.clone().unwrap_or_default(), |a| a.to_string());
        let difference = format!("the kernel module answers {module} where the socket gives {socket}");
        match (&p.kernel_module_varies, explained_module_difference(p, os, &obs.outcome)) {
            (Some(why), _) => notes.push(format!("{difference} (its answer varies between boots: {why})")),
            (None, Some(why)) => notes.push(format!("{difference}, as explained: {why}")),
            (None, None) => {
                notes.push(format!("{difference}; no known reason explains it"));
                status = Status::Disagree;
            }
        }
    }
    Compared { observed: obs.clone(), status, predicted, rfc6724, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
name = "t"
[[interfaces]]
name = "eth0"
addresses = ["10.0.0.2/24", "2001:db8:1::2/64", "fe80::2/64"]
[hosts]
"h.example" = ["2001:db8:2::1", "192.0.2.1"]
[[probes]]
id = "c"
connect = "2001:db8:2::1"
[[probes]]
id = "ll"
connect = "fe80::1"
[[probes]]
id = "zoned-global"
connect = "2001:db8:3::1%eth0"
[[probes]]
id = "varies"
connect = "ff02::1"
kernel_module_varies = "6.1 picks another interface from boot to boot"
[[probes]]
id = "r"
resolve = "h.example"
[[expect]]
probe = "c"
os = "linux"
source = "2001:db8:1::2"
evidence = "made up for this test"
"#;

    fn scenario() -> Scenario {
        addrsel_model::parse_scenario("t.toml", SCENARIO).unwrap_or_else(|e| panic!("{e}")).scenario
    }

    fn connect(dst: &str, source: Option<&str>, error: Option<&str>) -> Outcome {
        Outcome::Connect {
            dst: dst.into(),
            source: source.map(|s| s.parse().unwrap()),
            error: error.map(String::from),
            kernel_source: None,
            kernel_error: None,
            kernel_nexthop: None,
            sources: vec![],
        }
    }

    fn with_module(o: Outcome, module: &str) -> Outcome {
        match o {
            Outcome::Connect { dst, source, error, .. } => {
                let (ks, ke) = match module.parse::<IpAddr>() {
                    Ok(a) => (Some(a), None),
                    Err(_) => (None, Some(module.to_string())),
                };
                Outcome::Connect {
                    dst,
                    source,
                    error,
                    kernel_source: ks,
                    kernel_error: ke,
                    kernel_nexthop: None,
                    sources: vec![],
                }
            }
            other => other,
        }
    }

    fn verdict(probe: &str, observed: Option<Outcome>, predicted: Outcome, rfc: Outcome) -> Compared {
        let s = scenario();
        let p = s.probe(probe).unwrap().clone();
        let obs = observed.map(|outcome| ProbeResult { probe: probe.into(), outcome });
        compare_probe(&s, &p, Os::Linux, "host", None, obs.as_ref(), predicted, rfc)
    }

    #[test]
    fn the_verdicts() {
        let good = connect("2001:db8:2::1", Some("2001:db8:1::2"), None);
        let other = connect("2001:db8:2::1", Some("fe80::2"), None);
        let c = verdict("c", Some(good.clone()), good.clone(), good.clone());
        assert_eq!(c.status, Status::Agree, "{c:?}");
        let c = verdict("c", Some(good.clone()), good.clone(), other.clone());
        assert_eq!(c.status, Status::Deviation, "{c:?}");
        // The observation differs from the engine: whatever the RFC says.
        for rfc in [good.clone(), other.clone()] {
            let c = verdict("c", Some(other.clone()), good.clone(), rfc);
            assert_eq!(c.status, Status::Disagree, "{c:?}");
            assert!(c.is_failure());
        }
        // Observed == engine, but a recorded expectation does not hold: both are wrong.
        let c = verdict("c", Some(other.clone()), other.clone(), other.clone());
        assert_eq!(c.status, Status::Disagree, "{c:?}");
        assert!(c.notes.iter().any(|n| n.contains("expectation on scenario line") && n.contains("made up")), "{c:?}");
        // No observation at all.
        let c = verdict("c", None, good.clone(), good.clone());
        assert_eq!(c.status, Status::SetupFailed);
    }

    /// A module that was not ready is a target problem already; its placeholder answers are
    /// not compared with the socket's.
    #[test]
    fn a_module_that_is_not_ready_is_not_compared() {
        let s = scenario();
        let p = s.probe("c").unwrap().clone();
        let good = connect("2001:db8:2::1", Some("2001:db8:1::2"), None);
        let obs = ProbeResult { probe: "c".into(), outcome: with_module(good.clone(), "module not asked: no /proc") };
        let facts = Facts {
            kmod: Some(addrsel_model::protocol::KmodStatus { ready: false, detail: "init did not run".into() }),
            ..Facts::default()
        };
        let c = compare_probe(&s, &p, Os::Linux, "t", Some(&facts), Some(&obs), good.clone(), good.clone());
        assert_eq!(c.status, Status::Agree, "{c:?}");
        let ready =
            Facts { kmod: Some(addrsel_model::protocol::KmodStatus { ready: true, detail: String::new() }), ..facts };
        let c = compare_probe(&s, &p, Os::Linux, "t", Some(&ready), Some(&obs), good.clone(), good);
        assert_eq!(c.status, Status::Disagree, "{c:?}");
    }

    #[test]
    fn an_unsupported_probe_with_an_expectation_is_not_checked_and_fails() {
        let good = connect("2001:db8:2::1", Some("2001:db8:1::2"), None);
        let unsupported = Outcome::Unsupported { reason: "cannot".into() };
        let c = verdict("c", Some(unsupported.clone()), good.clone(), good.clone());
        assert_eq!(c.status, Status::Unchecked, "{c:?}");
        assert!(c.is_failure());
        // Without an expectation it is only unsupported.
        let r = Outcome::Resolve { name: "h.example".into(), order: vec![], error: None };
        let c = verdict("r", Some(unsupported), r.clone(), r);
        assert_eq!(c.status, Status::Unsupported);
        assert!(!c.is_failure());
    }

    #[test]
    fn module_answers_that_differ_fail_unless_explained() {
        // A global destination, no zone: the module must agree with the socket.
        let good = connect("2001:db8:2::1", Some("2001:db8:1::2"), None);
        let c = verdict("c", Some(with_module(good.clone(), "2001:db8:1::2")), good.clone(), good.clone());
        assert_eq!(c.status, Status::Agree, "{c:?}");
        let c = verdict("c", Some(with_module(good.clone(), "fe80::2")), good.clone(), good.clone());
        assert_eq!(c.status, Status::Disagree, "{c:?}");
        assert!(c.notes.iter().any(|n| n.contains("no known reason")), "{c:?}");
        // Link-local without a zone: connect() refuses, the module answers. Explained.
        let ll = connect("fe80::1", None, Some("EINVAL"));
        let c = verdict("ll", Some(with_module(ll.clone(), "fe80::2")), ll.clone(), ll.clone());
        assert_eq!(c.status, Status::Agree, "{c:?}");
        assert!(c.notes.iter().any(|n| n.contains("as explained")), "{c:?}");
        // ... but a module error where the socket also fails differently is not explained.
        let ll_ok = connect("fe80::1", Some("fe80::2"), None);
        let c = verdict("ll", Some(with_module(ll_ok.clone(), "EHOSTUNREACH")), ll_ok.clone(), ll_ok.clone());
        assert_eq!(c.status, Status::Disagree, "{c:?}");
        // A global destination with a zone: connect() ignores the zone, the module uses it.
        let z = connect("2001:db8:3::1%eth0", Some("2001:db8:1::2"), None);
        let c = verdict("zoned-global", Some(with_module(z.clone(), "ENETUNREACH")), z.clone(), z.clone());
        assert_eq!(c.status, Status::Agree, "{c:?}");
        // A probe the scenario marks as varying between boots.
        let v = connect("ff02::1", None, Some("EINVAL"));
        let c = verdict("varies", Some(with_module(v.clone(), "fe80::2")), v.clone(), v.clone());
        assert_eq!(c.status, Status::Agree, "{c:?}");
        assert!(c.notes.iter().any(|n| n.contains("varies between boots")), "{c:?}");
    }

    #[test]
    fn a_source_inside_a_predicted_set_agrees_and_says_so() {
        let s = scenario();
        // No expectation on this probe: only the engine decides.
        let p = s.probe("zoned-global").unwrap().clone();
        let set = |o: Outcome| match o {
            Outcome::Connect { dst, source, error, .. } => Outcome::Connect {
                dst,
                source,
                error,
                kernel_source: None,
                kernel_error: None,
                kernel_nexthop: None,
                sources: vec!["2001:db8:1::2".parse().unwrap(), "2001:db8:1::3".parse().unwrap()],
            },
            other => other,
        };
        let predicted = set(connect("2001:db8:3::1%eth0", Some("2001:db8:1::2"), None));
        let check = |observed: &str, rfc: &str| {
            let obs = ProbeResult {
                probe: "zoned-global".into(),
                outcome: connect("2001:db8:3::1%eth0", Some(observed), None),
            };
            let rfc = connect("2001:db8:3::1%eth0", Some(rfc), None);
            compare_probe(&s, &p, Os::Linux, "t", None, Some(&obs), predicted.clone(), rfc)
        };
        // The second path's source, with the RFC's answer among the set: agree, with a note.
        let c = check("2001:db8:1::3", "2001:db8:1::2");
        assert_eq!(c.status, Status::Agree, "{c:?}");
        assert!(c.notes.iter().any(|n| n.starts_with("multipath: 2001:db8:1::3 is one of")), "{c:?}");
        // The RFC's answer outside the set: a deviation, whichever path this boot took.
        assert_eq!(check("2001:db8:1::2", "2001:db8:9::9").status, Status::Deviation);
        assert_eq!(check("2001:db8:1::3", "2001:db8:9::9").status, Status::Deviation);
        // A source outside the set is a disagreement.
        assert_eq!(check("2001:db8:1::9", "2001:db8:1::2").status, Status::Disagree);
    }
}
