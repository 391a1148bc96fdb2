//! The matrix as a terminal table, JSON, JUnit XML and Markdown.

use std::fmt::Write as _;
use std::time::Duration;

use addrsel_model::protocol::Facts;
use serde::{Deserialize, Serialize};

use addrsel_model::results::Outcome;

use crate::matrix::cells::{Cell, CellStatus};
use crate::matrix::snapshot::{self, SnapshotState};

/// What one target did in this run, for the summary lines.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetSummary {
    pub name: String,
    pub not_run: Option<String>,
    pub error: Option<String>,
    pub facts: Option<Facts>,
    pub boot_ms: Option<u64>,
    pub total_ms: u64,
    pub scenario_ms: Vec<u64>,
    /// `--kernel`: where the kernel came from (each file and its sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_origin: Option<String>,
    /// What the engine's profile for this target's OS predicts without confirmation yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<Unverified>,
}

/// One unverified point of the engine: on how many probes it decides, and on how many of
/// them this run observed what the engine predicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unverified {
    pub point: String,
    pub probes: usize,
    pub confirmed: usize,
}

/// A whole matrix run: what `--json` writes and `report merge` reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MatrixResult {
    pub scenarios: Vec<String>,
    pub targets: Vec<TargetSummary>,
    pub cells: Vec<Cell>,
}

impl MatrixResult {
    pub fn cell(&self, scenario: &str, target: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.scenario == scenario && c.target == target)
    }

    /// Failing cells, plus targets that broke off or whose kernel module was asked for
    /// but could not answer.
    pub fn failures(&self) -> usize {
        self.cells.iter().filter(|c| c.status.is_failure()).count() + self.target_problems().len()
    }

    /// (target, problem) for every target that broke off or whose module is not ready.
    pub fn target_problems(&self) -> Vec<(&str, String)> {
        let mut out = Vec::new();
        for t in &self.targets {
            if let Some(e) = &t.error {
                out.push((t.name.as_str(), format!("stopped early: {e}")));
            }
            if let Some(k) = t.facts.as_ref().and_then(|f| f.kmod.as_ref()).filter(|k| !k.ready) {
                out.push((t.name.as_str(), format!("kernel module: {}", k.detail)));
            }
        }
        out
    }

    /// For a target whose snapshots were recorded on another system (the host target on
    /// another machine): what was recorded, what this is, and that only the engine counts.
    pub fn other_system(&self, target: &str) -> Option<String> {
        self.cells.iter().filter(|c| c.target == target).find_map(|c| match &c.snapshot {
            Some(SnapshotState::OtherSystem { recorded, here }) => {
                Some(format!("snapshots recorded on {recorded}; this host is {here}: engine comparison only"))
            }
            _ => None,
        })
    }

    /// Connect probes the kernel module was asked about: (asked, those where its answer
    /// differs from the socket's as (scenario, target, probe, module, socket)).
    pub fn kmod_answers(&self) -> (usize, Vec<KmodDifference>) {
        let mut asked = 0;
        let mut differ = Vec::new();
        for c in &self.cells {
            for r in &c.results {
                if let (Outcome::Connect { source, error, .. }, Some(k)) =
                    (&r.observed.outcome, r.observed.outcome.kernel_answer())
                {
                    asked += 1;
                    if (&k.source, &k.error) != (source, error) {
                        let word = |s: &Option<std::net::IpAddr>, e: &Option<String>| {
                            s.map_or_else(|| e.clone().unwrap_or_default(), |a| a.to_string())
                        };
                        let nexthop = k.nexthop.map_or_else(String::new, |f| format!(" (nexthop address {f})"));
                        differ.push(KmodDifference {
                            scenario: c.scenario.clone(),
                            target: c.target.clone(),
                            probe: r.observed.probe.clone(),
                            module: format!("{}{nexthop}", word(&k.source, &k.error)),
                            socket: word(source, error),
                        });
                    }
                }
            }
        }
        (asked, differ)
    }
}

/// A connect probe where the kernel module's answer is not the socket's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmodDifference {
    pub scenario: String,
    pub target: String,
    pub probe: String,
    pub module: String,
    pub socket: String,
}

/// The kernel-module section shared by the terminal and Markdown reports.
fn kmod_section(m: &MatrixResult, bullet: &str) -> String {
    let (asked, differ) = m.kmod_answers();
    let mut out = String::new();
    if asked == 0 {
        return out;
    }
    let _ = writeln!(
        out,
        "Kernel module: asked for {asked} connect probes; {} where its answer differs from the socket's",
        differ.len()
    );
    for d in &differ {
        let _ = writeln!(
            out,
            "{bullet}{} on {}, probe {}: module {}, socket {}",
            d.scenario, d.target, d.probe, d.module, d.socket
        );
    }
    out
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() { 0 } else { v[v.len() / 2] }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The terminal report: the table, per-target timing, then the detail of every failure.
pub fn terminal(m: &MatrixResult) -> String {
    let mut out = String::new();
    let name_w = m.scenarios.iter().map(|s| s.len()).max().unwrap_or(8).max(8);
    let col_w: Vec<usize> = m.targets.iter().map(|t| t.name.len().max(16)).collect();
    let _ = write!(out, "{:<name_w$}", "scenario");
    for (t, w) in m.targets.iter().zip(&col_w) {
        let _ = write!(out, "  {:<w$}", t.name);
    }
    out.push('\n');
    for s in &m.scenarios {
        let _ = write!(out, "{s:<name_w$}");
        for (t, w) in m.targets.iter().zip(&col_w) {
            let word = m.cell(s, &t.name).map_or("-", |c| c.status.word());
            let _ = write!(out, "  {word:<w$}");
        }
        out.push('\n');
    }
    out.push('\n');
    for t in &m.targets {
        match (&t.not_run, &t.error) {
            (Some(why), _) => {
                let _ = writeln!(out, "{}: not run: {why}", t.name);
                for u in &t.unverified {
                    let _ = writeln!(out, "  still UNVERIFIED ({} probes): {}", u.probes, u.point);
                }
            }
            (None, err) => {
                let facts = t.facts.as_ref().map_or(String::new(), |f| {
                    format!(
                        " [{} {} {}{}]",
                        f.os,
                        f.kernel,
                        f.arch,
                        f.glibc.as_ref().map_or(String::new(), |g| format!(", glibc {g}"))
                    )
                });
                let boot = t.boot_ms.map_or(String::new(), |b| format!(", boot {}", secs(b)));
                let _ = writeln!(
                    out,
                    "{}{facts}: {} scenarios in {}{boot}, median {} ms per scenario",
                    t.name,
                    t.scenario_ms.len(),
                    secs(t.total_ms),
                    median(&t.scenario_ms)
                );
                if let Some(origin) = &t.kernel_origin {
                    let _ = writeln!(out, "  kernel from {origin}");
                }
                if let Some(e) = err {
                    let _ = writeln!(out, "  stopped early: {e}");
                }
                if let Some(note) = m.other_system(&t.name) {
                    let _ = writeln!(out, "  {note}");
                }
                for u in &t.unverified {
                    let verdict = if u.confirmed == u.probes {
                        "confirmed by this run".to_string()
                    } else {
                        format!("UNVERIFIED, {} of {} probes confirmed", u.confirmed, u.probes)
                    };
                    let _ = writeln!(out, "  engine point {verdict}: {}", u.point);
                }
                if let Some(k) = t.facts.as_ref().and_then(|f| f.kmod.as_ref()) {
                    let _ = writeln!(out, "  kernel module{}: {}", if k.ready { "" } else { " NOT READY" }, k.detail);
                }
            }
        }
    }
    let kmod = kmod_section(m, "  ");
    if !kmod.is_empty() {
        out.push('\n');
        out.push_str(&kmod);
    }
    let failures: Vec<&Cell> = m.cells.iter().filter(|c| c.status.is_failure()).collect();
    if !failures.is_empty() {
        out.push_str("\nDetails\n");
    }
    for c in failures {
        let _ = writeln!(out, "\n--- {} on {}: {}", c.scenario, c.target, c.status.word());
        if let Some(e) = &c.setup_error {
            let _ = writeln!(out, "setup: {e}");
        }
        match &c.snapshot {
            Some(SnapshotState::Changed { old, new }) => {
                let _ = writeln!(out, "snapshot changed ({}):", snapshot::path(&c.target, &c.scenario).display());
                out.push_str(&snapshot::diff(old, new));
            }
            Some(SnapshotState::New { text }) => {
                let _ = writeln!(
                    out,
                    "no snapshot yet ({}; `cargo xtask matrix --accept` stores it); observed:\n{text}",
                    snapshot::path(&c.target, &c.scenario).display()
                );
            }
            _ => {}
        }
        for r in c.results.iter().filter(|r| r.status.is_failure() || !r.notes.is_empty()) {
            let _ = writeln!(
                out,
                "probe {}: observed {} | engine {} | RFC 6724 {}",
                r.observed.probe,
                r.observed.outcome.summary(),
                r.predicted.summary(),
                r.rfc6724.summary()
            );
            for n in &r.notes {
                let _ = writeln!(out, "  {n}");
            }
        }
        for e in &c.explain {
            let _ = writeln!(out, "explain {} ({} | rfc6724):", e.probe, e.profile);
            out.push_str(&side_by_side(&e.engine, &e.rfc6724, 78));
        }
    }
    out
}

/// Two texts in columns, wrapping long lines.
pub fn side_by_side(left: &str, right: &str, width: usize) -> String {
    let wrap = |text: &str| -> Vec<String> {
        let mut lines = Vec::new();
        for line in text.lines() {
            let chars: Vec<char> = line.chars().collect();
            if chars.is_empty() {
                lines.push(String::new());
            }
            for chunk in chars.chunks(width) {
                lines.push(chunk.iter().collect());
            }
        }
        lines
    };
    let (l, r) = (wrap(left), wrap(right));
    let mut out = String::new();
    for i in 0..l.len().max(r.len()) {
        let a = l.get(i).map_or("", String::as_str);
        let b = r.get(i).map_or("", String::as_str);
        let _ = writeln!(out, "{a:<width$} | {b}");
    }
    out
}

impl MatrixResult {
    /// One report from the results of sharded runs. Every target must have a cell for every
    /// scenario of the merged set (a shard that ran other scenarios, or lost some, is an
    /// error), no cell may come twice, and what each target summary says (a target that
    /// broke off, a module that was not ready) is kept.
    pub fn merge(parts: Vec<MatrixResult>) -> Result<MatrixResult, Vec<String>> {
        let mut out = MatrixResult { scenarios: vec![], targets: vec![], cells: vec![] };
        let mut problems = Vec::new();
        for part in parts {
            for s in part.scenarios {
                if !out.scenarios.contains(&s) {
                    out.scenarios.push(s);
                }
            }
            for t in part.targets {
                match out.targets.iter_mut().find(|x| x.name == t.name) {
                    Some(x) => {
                        x.total_ms += t.total_ms;
                        x.scenario_ms.extend(t.scenario_ms);
                        x.not_run = x.not_run.take().or(t.not_run);
                        x.error = x.error.take().or(t.error);
                        x.facts = x.facts.take().or(t.facts);
                        x.boot_ms = x.boot_ms.or(t.boot_ms);
                    }
                    None => out.targets.push(t),
                }
            }
            for c in part.cells {
                if out.cells.iter().any(|x| x.scenario == c.scenario && x.target == c.target) {
                    problems.push(format!("{} on {} is in two of the files", c.scenario, c.target));
                } else {
                    out.cells.push(c);
                }
            }
        }
        for t in &out.targets {
            for s in &out.scenarios {
                if out.cell(s, &t.name).is_none() {
                    problems.push(format!("no result for scenario {s} on target {}", t.name));
                }
            }
        }
        if problems.is_empty() { Ok(out) } else { Err(problems) }
    }
}

/// JSON: the scenarios, every target's summary (facts, timing, problems) and one cell per
/// scenario and target.
pub fn json(m: &MatrixResult) -> String {
    serde_json::to_string_pretty(m).expect("serialisable")
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one testsuite per target, one testcase per scenario.
pub fn junit(m: &MatrixResult) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // A target named with --targets that could not run fails (exit status 3), so its cells
    // are failures here, not skipped tests.
    let required_not_run = |c: &&Cell| c.requested && c.status == CellStatus::NotRun;
    let failures = m.failures() + m.cells.iter().filter(required_not_run).count();
    let skipped = m
        .cells
        .iter()
        .filter(|c| matches!(c.status, CellStatus::NotRun | CellStatus::Unsupported) && !required_not_run(c))
        .count();
    let total_secs: f64 = m.targets.iter().map(|t| t.total_ms as f64 / 1000.0).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"addrsel matrix\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total_secs:.3}\">",
        m.cells.len() + m.target_problems().len()
    );
    for t in &m.targets {
        let cells: Vec<&Cell> = m.cells.iter().filter(|c| c.target == t.name).collect();
        let problems: Vec<String> =
            m.target_problems().into_iter().filter(|(n, _)| *n == t.name).map(|(_, p)| p).collect();
        let f = cells.iter().filter(|c| c.status.is_failure() || required_not_run(c)).count() + problems.len();
        let s = cells
            .iter()
            .filter(|c| matches!(c.status, CellStatus::NotRun | CellStatus::Unsupported) && !required_not_run(c))
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" errors=\"0\" skipped=\"{s}\" time=\"{:.3}\">",
            xml_escape(&t.name),
            cells.len() + problems.len(),
            t.total_ms as f64 / 1000.0
        );
        for p in &problems {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{0}\" name=\"target\" time=\"0.000\">\n      <failure message=\"{1}\" type=\"TargetProblem\">{1}</failure>\n    </testcase>",
                xml_escape(&t.name),
                xml_escape(p)
            );
        }
        for c in cells {
            let time = c.millis.unwrap_or(0) as f64 / 1000.0;
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\"",
                xml_escape(&t.name),
                xml_escape(&c.scenario)
            );
            let body = cell_text(c);
            match c.status {
                st if st.is_failure() => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        st.word(),
                        xml_escape(&format!("{st:?}")),
                        xml_escape(&body)
                    );
                }
                CellStatus::NotRun if c.requested => {
                    let why = c.not_run.clone().unwrap_or_default();
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"asked for with --targets and not run\" type=\"NotRun\">{}</failure>\n    </testcase>",
                        xml_escape(&why)
                    );
                }
                CellStatus::NotRun | CellStatus::Unsupported => {
                    let why = c.not_run.clone().unwrap_or_else(|| body.clone());
                    let _ = writeln!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml_escape(&why));
                }
                _ => {
                    let _ = writeln!(out, ">\n      <system-out>{}</system-out>\n    </testcase>", xml_escape(&body));
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn cell_text(c: &Cell) -> String {
    let mut out = String::new();
    if let Some(e) = &c.setup_error {
        let _ = writeln!(out, "setup: {e}");
    }
    if let Some(r) = &c.not_run {
        let _ = writeln!(out, "not run: {r}");
    }
    for r in &c.results {
        let _ = writeln!(
            out,
            "{}: {} ({}; engine {}; RFC 6724 {})",
            r.observed.probe,
            r.observed.outcome.summary(),
            r.status.word(),
            r.predicted.summary(),
            r.rfc6724.summary()
        );
        for n in &r.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    if let Some(SnapshotState::Changed { old, new }) = &c.snapshot {
        out.push_str("snapshot diff:\n");
        out.push_str(&snapshot::diff(old, new));
    }
    out
}

/// Markdown: the table and a failure list, for PR comments and job summaries.
pub fn markdown(m: &MatrixResult) -> String {
    let mut out = String::from("## addrsel matrix\n\n| scenario |");
    for t in &m.targets {
        let _ = write!(out, " {} |", t.name);
    }
    out.push_str("\n|---|");
    for _ in &m.targets {
        out.push_str("---|");
    }
    out.push('\n');
    for s in &m.scenarios {
        let _ = write!(out, "| {s} |");
        for t in &m.targets {
            let word = m.cell(s, &t.name).map_or("-", |c| c.status.word());
            let word = if m.cell(s, &t.name).is_some_and(|c| c.status.is_failure()) {
                format!("**{word}**")
            } else {
                word.to_string()
            };
            let _ = write!(out, " {word} |");
        }
        out.push('\n');
    }
    out.push('\n');
    for t in &m.targets {
        if let Some(why) = &t.not_run {
            let _ = writeln!(out, "- `{}` not run: {}", t.name, why.replace('\n', " "));
            for u in &t.unverified {
                let _ = writeln!(out, "  - still unverified ({} probes): {}", u.probes, u.point);
            }
        } else {
            let _ = writeln!(out, "- `{}`: {} scenarios in {}", t.name, t.scenario_ms.len(), secs(t.total_ms));
            if let Some(note) = m.other_system(&t.name) {
                let _ = writeln!(out, "  - {note}");
            }
        }
    }
    for (t, problem) in m.target_problems() {
        let _ = writeln!(out, "- **`{t}` {}**", problem.replace('\n', " "));
    }
    let kmod = kmod_section(m, "- ");
    if !kmod.is_empty() {
        let _ = write!(out, "\n{kmod}");
    }
    let failing: Vec<&Cell> = m.cells.iter().filter(|c| c.status.is_failure()).collect();
    if !failing.is_empty() {
        out.push_str("\n### Failures\n");
        for c in failing {
            let _ = writeln!(
                out,
                "\n**{}** on `{}`: {}\n\n```\n{}```",
                c.scenario,
                c.target,
                c.status.word(),
                cell_text(c)
            );
        }
    }
    out
}

pub fn duration_ms(d: Duration) -> u64 {
    d.as_millis() as u64
}
