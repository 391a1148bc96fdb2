//! The result shapes shared by the engine (predictions), the agent (observations) and the
//! runner (reports): the `cargo xtask explain --json` shape.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Everything one scenario produced on one target (an engine profile or a real kernel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// `engine:linux`, `engine:freebsd`, `engine:rfc6724`, `host`, `linux-trixie-amd64`, ...
    pub target: String,
    pub results: Vec<ProbeResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub probe: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Outcome {
    Connect {
        /// As written in the scenario, with `%zone` when given.
        dst: String,
        #[serde(with = "shown_addr")]
        source: Option<IpAddr>,
        /// errno name when no source could be chosen (`ENETUNREACH`, `EHOSTUNREACH`, ...).
        error: Option<String>,
        /// The test kernel module's answer to the same question, when it was asked: the
        /// source it would pick, or the errno name.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "shown_addr")]
        kernel_source: Option<IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernel_error: Option<String>,
        /// FreeBSD's module, IPv4: the family of the route's nexthop address (`IPv4`,
        /// `IPv6`), the cause behind an EHOSTUNREACH over an RFC 5549 route.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernel_nexthop: Option<String>,
        /// A prediction that cannot name one source: every source the kernel may take (a
        /// multipath route whose path a per-boot hash picks). Empty for one answer.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<IpAddr>,
    },
    Resolve {
        name: String,
        order: Vec<IpAddr>,
        /// `EAI_*` name, or a signal name when the library crashed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The ICMP error that came back for an `icmp_time_exceeded` probe: its kind and source,
    /// both `None` when none came.
    Icmp {
        /// The probe packet's destination.
        to: String,
        /// `time exceeded`, or `destination unreachable (code N)`.
        message: Option<String>,
        source: Option<IpAddr>,
    },
    /// This target cannot express part of the scenario, so the probe was not run.
    Unsupported { reason: String },
}

/// What the kernel module said: the source, or the errno name (or why it was not asked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelAnswer {
    pub source: Option<IpAddr>,
    pub error: Option<String>,
    /// The family of the route's nexthop address, when the module says (FreeBSD, IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexthop: Option<String>,
}

impl Outcome {
    /// The decision in one short phrase, for tables and diffs.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Connect { sources, .. } if !sources.is_empty() => {
                format!("one of {}", sources.iter().map(crate::addr_names::show_addr).collect::<Vec<_>>().join(", "))
            }
            Outcome::Connect { source: Some(s), .. } => crate::addr_names::show_addr(s),
            Outcome::Connect { error: Some(e), .. } => e.clone(),
            Outcome::Connect { .. } => "no answer".into(),
            Outcome::Resolve { error: Some(e), .. } => e.clone(),
            Outcome::Resolve { order, .. } => order.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
            Outcome::Icmp { message: Some(m), source: Some(s), .. } => {
                format!("{m} from {}", crate::addr_names::show_addr(s))
            }
            Outcome::Icmp { .. } => "no ICMP error".into(),
            Outcome::Unsupported { reason } => format!("unsupported: {reason}"),
        }
    }

    /// The kernel module's answer, when it was asked.
    pub fn kernel_answer(&self) -> Option<KernelAnswer> {
        match self {
            Outcome::Connect { kernel_source, kernel_error, kernel_nexthop, .. }
                if kernel_source.is_some() || kernel_error.is_some() =>
            {
                Some(KernelAnswer {
                    source: *kernel_source,
                    error: kernel_error.clone(),
                    nexthop: kernel_nexthop.clone(),
                })
            }
            _ => None,
        }
    }

    /// The decision itself, without the module's answer: what predictions are compared on.
    pub fn decision(&self) -> Outcome {
        match self {
            Outcome::Connect { dst, source, error, sources, .. } => Outcome::Connect {
                dst: dst.clone(),
                source: *source,
                error: error.clone(),
                kernel_source: None,
                kernel_error: None,
                kernel_nexthop: None,
                sources: sources.clone(),
            },
            other => other.clone(),
        }
    }

    /// Whether this observation is what `predicted` says: the same decision, or for a
    /// prediction of several possible sources, a source among them.
    pub fn fits(&self, predicted: &Outcome) -> bool {
        match (self, predicted) {
            (
                Outcome::Connect { dst, source: Some(s), error: None, .. },
                Outcome::Connect { dst: pdst, sources, .. },
            ) if !sources.is_empty() => dst == pdst && sources.contains(s),
            _ => self.decision() == predicted.decision(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An expectation (a live observation) is possible in a multipath prediction when it is one
    /// of its sources, but holds exactly only for the single source.
    #[test]
    fn an_observed_source_is_possible_in_a_predicted_set() {
        use crate::scenario::Expected;
        let a: IpAddr = "10.1.0.10".parse().unwrap();
        let b: IpAddr = "10.2.0.10".parse().unwrap();
        let predicted = Outcome::Connect {
            dst: "203.0.113.9".into(),
            source: Some(a),
            error: None,
            kernel_source: None,
            kernel_error: None,
            kernel_nexthop: None,
            sources: vec![a, b],
        };
        assert!(Expected::Source(b).possible_in(&predicted));
        assert!(!Expected::Source(b).holds_for(&predicted));
        assert!(!Expected::Source("10.3.0.10".parse().unwrap()).possible_in(&predicted));
        let single = Outcome::Connect {
            dst: "203.0.113.9".into(),
            source: Some(a),
            error: None,
            kernel_source: None,
            kernel_error: None,
            kernel_nexthop: None,
            sources: vec![],
        };
        assert!(Expected::Source(a).possible_in(&single) && !Expected::Source(b).possible_in(&single));
    }

    #[test]
    fn module_answers_sit_next_to_the_socket_answer() {
        let o = Outcome::Connect {
            dst: "fe80::1".into(),
            source: None,
            error: Some("EINVAL".into()),
            kernel_source: Some("fe80::10".parse().unwrap()),
            kernel_error: None,
            kernel_nexthop: None,
            sources: vec![],
        };
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"connect","dst":"fe80::1","source":null,"error":"EINVAL","kernel_source":"fe80::10"}"#
        );
        let back: Outcome = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.kernel_answer(),
            Some(KernelAnswer { source: Some("fe80::10".parse().unwrap()), error: None, nexthop: None })
        );
        assert_eq!(back.decision().kernel_answer(), None);
        let not_asked: Outcome =
            serde_json::from_str(r#"{"kind":"connect","dst":"::1","source":"::1","error":null}"#).unwrap();
        assert_eq!(not_asked.kernel_answer(), None);
    }

    #[test]
    fn json_shape_matches_explain() {
        let report = Report {
            scenario: "NAME".into(),
            target: "engine:linux".into(),
            results: vec![
                ProbeResult {
                    probe: "to-server-v6".into(),
                    outcome: Outcome::Connect {
                        dst: "2a01:4f8:c2c:8101::1".into(),
                        source: Some("fd00:11:22::aa".parse().unwrap()),
                        error: None,
                        kernel_source: None,
                        kernel_error: None,
                        kernel_nexthop: None,
                        sources: vec![],
                    },
                },
                ProbeResult {
                    probe: "resolve-server".into(),
                    outcome: Outcome::Resolve {
                        name: "server.example".into(),
                        order: vec!["116.203.176.52".parse().unwrap(), "2a01:4f8:c2c:8101::1".parse().unwrap()],
                        error: None,
                    },
                },
            ],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(
            json,
            r#"{"scenario":"NAME","target":"engine:linux","results":[{"probe":"to-server-v6","kind":"connect","dst":"2a01:4f8:c2c:8101::1","source":"fd00:11:22::aa","error":null},{"probe":"resolve-server","kind":"resolve","name":"server.example","order":["116.203.176.52","2a01:4f8:c2c:8101::1"]}]}"#
        );
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}

/// A source in JSON as results show it: the kernel's temporary address as
/// `temporary(PREFIX)`, never its stand-in interface ID.
mod shown_addr {
    use std::net::IpAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_str(&crate::addr_names::show_addr(a)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            crate::addr_names::parse_shown_addr(&t)
                .ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not an address or temporary(PREFIX/64)")))
        })
        .transpose()
    }
}
