//! The addrsel reference engine: RFC 6724 source and destination selection as the RFC
//! writes it and as Linux (kernel + glibc) and FreeBSD (kernel + libc) really do it, with a
//! rule-by-rule explanation of every decision. Pure: no I/O, no unsafe.

use std::fmt::Write as _;

use std::net::IpAddr;

use addrsel_model::results::{Outcome, ProbeResult, Report};
use addrsel_model::{ProbeKind, Resolver, Scenario, SourcePreference};
use serde::Serialize;

pub mod diff;
pub mod freebsd;
pub mod linux;
pub mod net;
pub mod resolvers;
pub mod rfc;
pub mod rules;
pub mod sort;
pub mod trace;

pub use linux::LinuxProfile;
use trace::Trace;

/// Whose behaviour to predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Profile {
    Linux(LinuxProfile),
    Freebsd,
    Rfc6724,
    /// draft-ietf-6man-rfc6724-update: engine only, named as a draft wherever it is shown.
    Rfc6724Update,
}

impl Profile {
    pub const NAMES: [&'static str; 4] = ["linux", "freebsd", "rfc6724", "rfc6724-update"];

    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "linux" => Some(Profile::Linux(LinuxProfile::default())),
            "freebsd" => Some(Profile::Freebsd),
            "rfc6724" => Some(Profile::Rfc6724),
            "rfc6724-update" => Some(Profile::Rfc6724Update),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Profile::Linux(_) => "linux",
            Profile::Freebsd => "freebsd",
            Profile::Rfc6724 => "rfc6724",
            Profile::Rfc6724Update => "rfc6724-update",
        }
    }

    /// The `target` field of the engine's reports.
    pub fn target(&self) -> String {
        format!("engine:{}", self.name())
    }

    pub fn os(&self) -> addrsel_model::Os {
        match self {
            Profile::Linux(_) => addrsel_model::Os::Linux,
            Profile::Freebsd => addrsel_model::Os::Freebsd,
            Profile::Rfc6724 | Profile::Rfc6724Update => addrsel_model::Os::Rfc6724,
        }
    }

    /// The assumptions this profile runs with, in words.
    pub fn describe(&self) -> String {
        match self {
            Profile::Linux(p) => format!(
                "Linux kernel (ipv6_dev_get_saddr, inet_select_addr; rule 4 {}) + glibc getaddrinfo ({} gai.conf parser)",
                if p.mip6 { "on: CONFIG_IPV6_MIP6" } else { "off: no CONFIG_IPV6_MIP6" },
                match p.glibc {
                    addrsel_policy::gai_conf::GlibcParser::Before2_41 => "pre-2.41",
                    addrsel_policy::gai_conf::GlibcParser::From2_41 => "2.41+",
                }
            ),
            Profile::Freebsd => {
                "FreeBSD kernel (in6_selectsrc, in_pcbladdr) + libc getaddrinfo, per-VNET policy table".into()
            }
            Profile::Rfc6724 => "RFC 6724 as written".into(),
            Profile::Rfc6724Update => "DRAFT draft-ietf-6man-rfc6724-update (authors' text of July 2025, after -20; not an RFC): RFC 6724's rules with ULA at precedence 30 over IPv4 20, 6to4 at 5, and the host's fd00::/8 /48s inserted as known-local (45, label 14); rule 5.5 needs router advertisements and is not modelled".into(),
        }
    }
}

/// One probe's prediction and how it came about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbePrediction {
    pub result: ProbeResult,
    pub trace: Trace,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Prediction {
    pub profile: Profile,
    pub report: Report,
    pub probes: Vec<ProbePrediction>,
    /// Facts about the whole host (policy installation problems and the like).
    pub notes: Vec<String>,
}

impl ProbePrediction {
    /// The points this decision rests on that no run on a real kernel has confirmed yet.
    pub fn unverified(&self) -> &[String] {
        match &self.trace {
            Trace::Connect(t) => &t.unverified,
            Trace::Resolve(t) => &t.unverified,
            Trace::Unsupported => &[],
        }
    }
}

/// What a profile answers about one host. The probe loop, the outcomes and the report are
/// the same for every profile (`predict`); a profile is only this.
pub trait Model {
    /// The source a UDP `connect()` gets, or its errno, and how it was chosen.
    fn connect(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference]) -> trace::Selected;
    /// `connect()` on a socket bound to `device` first (`SO_BINDTODEVICE`).
    fn connect_on(&self, dst: IpAddr, zone: Option<&str>, prefer: &[SourcePreference], device: &str)
    -> trace::Selected;
    /// Whether `bind()` takes `a` (an address this host holds).
    fn bindable(&self, a: IpAddr) -> bool;
    /// The order `getaddrinfo(AF_UNSPEC)` returns (or its error), and how it was sorted.
    fn resolve(&self, name: &str, resolver: Resolver) -> (Result<Vec<IpAddr>, String>, trace::SortTrace);
    /// The ICMP error this host, as a router, sends for a packet from `sender` that enters on
    /// `from` towards `to` with TTL 1.
    fn icmp_time_exceeded(&self, from: &str, to: IpAddr, sender: IpAddr) -> trace::IcmpReply {
        let _ = (from, to, sender);
        trace::IcmpReply { result: Err("this profile has no model of ICMP errors".into()), trace: Default::default() }
    }
    /// Facts about the whole host (a policy table that could not be installed, ...).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The model of a scenario's host under `profile`.
fn model<'s>(s: &'s Scenario, profile: &Profile) -> Box<dyn Model + 's> {
    match profile {
        Profile::Linux(p) => Box::new(linux::Linux::new(s, *p)),
        Profile::Freebsd => Box::new(freebsd::Freebsd::new(s)),
        Profile::Rfc6724 => Box::new(rfc::Rfc::new(s)),
        Profile::Rfc6724Update => Box::new(rfc::Rfc::update_draft(s)),
    }
}

/// A connect probe with its socket's setup: `SO_BINDTODEVICE`, then `bind()` (which takes
/// only this host's addresses: EADDRNOTAVAIL, ip_nonlocal_bind and freebind being off), then
/// `connect()`, whose route must still exist; a bound socket keeps its address.
fn connect_probe(m: &dyn Model, dst: IpAddr, zone: Option<&str>, p: &addrsel_model::Probe) -> trace::Selected {
    if let Some(b) = p.bind
        && !m.bindable(b)
    {
        let mut trace = trace::SourceTrace::default();
        trace.steps.push(format!("bind({b}): not an address of this host: EADDRNOTAVAIL"));
        return trace::Selected { result: Err(net::errno::EADDRNOTAVAIL), trace };
    }
    // A VRF probe's socket is bound to the VRF's device.
    let mut sel = match p.bind_device.as_ref().or(p.vrf.as_ref()) {
        Some(dev) => m.connect_on(dst, zone, &p.prefer, dev),
        None => m.connect(dst, zone, &p.prefer),
    };
    if let Some(b) = p.bind {
        sel.trace.steps.insert(0, format!("bind({b}): the socket's source is fixed before connect()"));
        if let Ok(chosen) = sel.result {
            if chosen != b {
                sel.trace
                    .steps
                    .push(format!("the bound address {b} is the source, not the {chosen} selection would give"));
            }
            sel.result = Ok(b);
        }
    }
    sel
}

/// One probe through a model: its outcome and the explanation.
fn probe(m: &dyn Model, p: &addrsel_model::Probe) -> (Outcome, Trace) {
    match &p.kind {
        ProbeKind::Connect { dst, zone } => {
            let sel = connect_probe(m, *dst, zone.as_deref(), p);
            let (source, error) = match sel.result {
                Ok(a) => (Some(a), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let dst = p.kind.dst_text().unwrap_or_default();
            let sources = sel.trace.possible.clone();
            (
                Outcome::Connect {
                    dst,
                    source,
                    error,
                    kernel_source: None,
                    kernel_error: None,
                    kernel_nexthop: None,
                    sources,
                },
                Trace::Connect(sel.trace),
            )
        }
        ProbeKind::IcmpTimeExceeded { from, to, sender } => {
            let reply = m.icmp_time_exceeded(from, *to, *sender);
            let to = to.to_string();
            match reply.result {
                Ok(Some((message, source))) => {
                    (Outcome::Icmp { to, message: Some(message), source: Some(source) }, Trace::Connect(reply.trace))
                }
                Ok(None) => (Outcome::Icmp { to, message: None, source: None }, Trace::Connect(reply.trace)),
                Err(reason) => (Outcome::Unsupported { reason }, Trace::Unsupported),
            }
        }
        ProbeKind::Resolve { name, resolver } => {
            let (result, trace) = m.resolve(name, *resolver);
            let outcome = match result {
                Ok(order) => Outcome::Resolve { name: name.clone(), order, error: None },
                Err(e) => Outcome::Resolve { name: name.clone(), order: vec![], error: Some(e) },
            };
            (outcome, Trace::Resolve(trace))
        }
    }
}

/// Predicts every probe of a scenario for one profile.
pub fn predict(s: &Scenario, profile: &Profile) -> Prediction {
    let m = model(s, profile);
    let probes: Vec<ProbePrediction> = s
        .probes
        .iter()
        .map(|p| {
            let (outcome, trace) = probe(m.as_ref(), p);
            ProbePrediction { result: ProbeResult { probe: p.id.clone(), outcome }, trace }
        })
        .collect();
    Prediction {
        profile: *profile,
        report: Report {
            scenario: s.name.clone(),
            target: profile.target(),
            results: probes.iter().map(|p| p.result.clone()).collect(),
        },
        probes,
        notes: m.notes(),
    }
}

/// The whole explanation of one prediction, as text that reads like the RFC worked by hand.
pub fn explain(s: &Scenario, p: &Prediction) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== {} [{}]: {}", s.name, p.profile.name(), p.profile.describe());
    for n in &p.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for pp in &p.probes {
        let _ = writeln!(out, "\nprobe {}: {}", pp.result.probe, pp.result.outcome.summary());
        match &pp.trace {
            Trace::Connect(t) => out.push_str(&trace::render_source(t, 2)),
            Trace::Resolve(t) => out.push_str(&trace::render_sort(t, 2)),
            Trace::Unsupported => {}
        }
    }
    out
}

/// Checks every `[[expect]]` of the scenario that applies to this prediction (its OS and,
/// for Linux, its glibc parser's versions; with `target`, also that target's) against it;
/// returns the misses.
pub fn check_expectations(s: &Scenario, p: &Prediction, target: Option<&str>) -> Vec<String> {
    let mut misses = Vec::new();
    // Expectations are about systems and the RFC, never about a draft.
    if p.profile == Profile::Rfc6724Update {
        return misses;
    }
    for e in &s.expect {
        if e.os != p.profile.os() || e.target.as_deref().is_some_and(|t| target != Some(t)) {
            continue;
        }
        // A glibc-specific expectation applies to a prediction made with that version's parser.
        if let Some(v) = e.glibc.as_deref() {
            let mut parts = v.split('.').filter_map(|x| x.parse::<u32>().ok());
            let parser = addrsel_policy::gai_conf::GlibcParser::for_version(
                parts.next().unwrap_or(0),
                parts.next().unwrap_or(0),
            );
            if !matches!(&p.profile, Profile::Linux(lp) if lp.glibc == parser) {
                continue;
            }
        }
        let Some(got) = p.probes.iter().find(|x| x.result.probe == e.probe) else {
            continue;
        };
        if !e.outcome.possible_in(&got.result.outcome) {
            misses.push(format!(
                "line {}: expected {} for probe {} on {}{}, the engine says {} (evidence: {})",
                e.line,
                e.outcome.summary(),
                e.probe,
                e.os,
                e.target.as_ref().map_or(String::new(), |t| format!(" target {t}")),
                got.result.outcome.summary(),
                e.evidence
            ));
        }
    }
    misses
}
