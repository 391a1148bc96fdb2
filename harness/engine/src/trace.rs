//! Explanations: what each decision looked at and which rule settled it.

use addrsel_model::show_addr;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

/// Which of two compared items a rule preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

/// One rule deciding between two items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub winner: Side,
    /// e.g. "Rule 6 (prefer matching label)".
    pub rule: String,
    /// The values compared, e.g. "label(fd00::1)=5 != label(dst)=1, label(2001:db8::1)=1 == 1".
    pub detail: String,
}

impl Decision {
    pub fn new(winner: Side, rule: &str, detail: impl Into<String>) -> Self {
        Decision { winner, rule: rule.to_string(), detail: detail.into() }
    }

    /// Left wins when `left_better`, right when `right_better`, no decision otherwise.
    pub fn prefer(left_better: bool, right_better: bool, rule: &str, detail: impl Into<String>) -> Option<Self> {
        match (left_better, right_better) {
            (true, false) => Some(Decision::new(Side::Left, rule, detail)),
            (false, true) => Some(Decision::new(Side::Right, rule, detail)),
            _ => None,
        }
    }

    /// Higher value wins.
    pub fn higher<T: PartialOrd + std::fmt::Display>(left: T, right: T, rule: &str, what: &str) -> Option<Self> {
        let detail = format!("{what} {left} vs {right}");
        Self::prefer(left > right, right > left, rule, detail)
    }

    /// Lower value wins.
    pub fn lower<T: PartialOrd + std::fmt::Display>(left: T, right: T, rule: &str, what: &str) -> Option<Self> {
        let detail = format!("{what} {left} vs {right}");
        Self::prefer(left < right, right < left, rule, detail)
    }
}

/// A candidate source address as the selection saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub addr: IpAddr,
    pub dev: String,
    /// Attributes the rules use, e.g. "scope 14, label 5, deprecated".
    pub attrs: String,
    /// Why it was not considered at all, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// One comparison in the source-selection loop: the current best against a challenger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duel {
    pub best: IpAddr,
    pub challenger: IpAddr,
    /// `None`: every rule tied and the earlier one stayed.
    pub decision: Option<Decision>,
}

/// A source selection: the address (or the errno) and how it came about.
pub struct Selected {
    pub result: Result<IpAddr, &'static str>,
    pub trace: SourceTrace,
}

/// The ICMP error a router sends back for an expired packet, and how its source was chosen.
pub struct IcmpReply {
    /// `Ok(Some((message, source)))`; `Ok(None)`: no error is sent; `Err`: this profile has
    /// no model for it (why).
    pub result: Result<Option<(String, IpAddr)>, String>,
    pub trace: SourceTrace,
}

/// How a source address was chosen (or why none was).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceTrace {
    /// Route lookup and other steps before the rules, in words.
    pub steps: Vec<String>,
    pub candidates: Vec<Candidate>,
    pub duels: Vec<Duel>,
    /// Statements that rest on source reading only, not yet confirmed on a real kernel.
    pub unverified: Vec<String>,
    /// A multipath route whose path a per-boot hash picks: every source its paths give
    /// (more than one), or empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub possible: Vec<IpAddr>,
    /// The number of paths of the multipath route the lookup found (0: none).
    #[serde(skip)]
    pub paths: usize,
}

/// One destination as the sort saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DestInfo {
    pub dst: IpAddr,
    pub source: Option<IpAddr>,
    /// Why there is no source (errno), when there is none.
    pub source_error: Option<String>,
    /// Attributes the rules use, e.g. "scope 14, label 1, precedence 40; source scope 14, label 6".
    pub attrs: String,
    pub source_trace: SourceTrace,
}

/// How a getaddrinfo result list was ordered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SortTrace {
    /// The list before sorting (the resolver's order).
    pub input: Vec<IpAddr>,
    pub entries: Vec<DestInfo>,
    /// Set when the list was not sorted at all, and why.
    pub unsorted_because: Option<String>,
    /// For each pair of neighbours in the result: the rule that put the first one first.
    pub neighbours: Vec<(IpAddr, IpAddr, Option<Decision>)>,
    /// Facts about the policy tables used.
    pub notes: Vec<String>,
    pub unverified: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trace {
    Connect(SourceTrace),
    Resolve(SortTrace),
    Unsupported,
}

fn decision_text(d: &Option<Decision>) -> String {
    match d {
        Some(d) => format!("{}: {}", d.rule, d.detail),
        None => "all rules tie; the earlier one stays".into(),
    }
}

/// Human-readable source trace, indented by `indent` spaces.
pub fn render_source(t: &SourceTrace, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for s in &t.steps {
        let _ = writeln!(out, "{pad}{s}");
    }
    if !t.candidates.is_empty() {
        let _ = writeln!(out, "{pad}candidates:");
        for c in &t.candidates {
            match &c.skipped {
                Some(why) => {
                    let _ = writeln!(out, "{pad}  - {} on {}: skipped ({why})", show_addr(&c.addr), c.dev);
                }
                None => {
                    let _ = writeln!(out, "{pad}  - {} on {}: {}", show_addr(&c.addr), c.dev, c.attrs);
                }
            }
        }
    }
    for d in &t.duels {
        let won = match &d.decision {
            Some(x) if x.winner == Side::Right => d.challenger,
            _ => d.best,
        };
        let _ = writeln!(
            out,
            "{pad}{} vs {}: {} wins by {}",
            show_addr(&d.best),
            show_addr(&d.challenger),
            show_addr(&won),
            decision_text(&d.decision)
        );
    }
    for u in &t.unverified {
        let _ = writeln!(out, "{pad}UNVERIFIED: {u}");
    }
    out
}

/// Human-readable sort trace.
pub fn render_sort(t: &SortTrace, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let input: Vec<String> = t.input.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(out, "{pad}resolver order: {}", input.join(", "));
    for n in &t.notes {
        let _ = writeln!(out, "{pad}{n}");
    }
    for e in &t.entries {
        let src = match (&e.source, &e.source_error) {
            (Some(s), _) => format!("source {s}"),
            (None, Some(err)) => format!("no source ({err})"),
            (None, None) => "no source".into(),
        };
        let _ = writeln!(out, "{pad}- {}: {src}; {}", e.dst, e.attrs);
        out.push_str(&render_source(&e.source_trace, indent + 4));
    }
    if let Some(why) = &t.unsorted_because {
        let _ = writeln!(out, "{pad}not sorted: {why}");
    }
    for (a, b, d) in &t.neighbours {
        let _ = writeln!(out, "{pad}{a} before {b}: {}", decision_text(d));
    }
    for u in &t.unverified {
        let _ = writeln!(out, "{pad}UNVERIFIED: {u}");
    }
    out
}
