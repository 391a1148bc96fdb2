//! `cargo xtask fix SCENARIO --want PROBE=ANSWER`: the smallest policy change that gives the
//! wanted answers (harness/fix), printed as the lines a person writes, with why it works and
//! every other decision it changes; `-o` writes the fixed scenario, `--targets` runs it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use addrsel_fix::{Answer, Fix, Want, search};
use addrsel_model::results::Outcome;
use addrsel_model::{Os, ProbeKind};
use addrsel_runner::corpus::Loaded;
use addrsel_runner::targets;
use anyhow::Context as _;

use crate::{exit, load_scenarios};

#[derive(clap::Args)]
pub struct Args {
    /// The scenario (a captured host, or a corpus file).
    scenario: PathBuf,
    /// PROBE=ANSWER: a source address for a connect probe, or a comma-separated order for a
    /// resolve probe. Repeat for several.
    #[arg(long = "want", required = true, value_name = "PROBE=ANSWER")]
    wants: Vec<String>,
    /// Whose policy to change.
    #[arg(long, default_value = "linux", value_parser = ["linux", "freebsd"])]
    os: String,
    /// Write the scenario with the fix applied (named NAME-fixed).
    #[arg(short = 'o', long = "output", value_name = "FIXED.toml")]
    output: Option<PathBuf>,
    /// Run the fixed scenario on these targets and say whether the real kernels agree.
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
}

fn parse_want(s: &addrsel_model::Scenario, text: &str) -> Result<Want, String> {
    let (probe, answer) = text.split_once('=').ok_or_else(|| format!("--want {text}: expected PROBE=ANSWER"))?;
    let kind = &s.probe(probe).ok_or_else(|| format!("--want {text}: no probe `{probe}` in {}", s.name))?.kind;
    let addrs: Vec<IpAddr> = answer
        .split(',')
        .map(|a| a.trim().parse().map_err(|_| format!("--want {text}: `{a}` is not an address")))
        .collect::<Result<_, _>>()?;
    match (kind, addrs.as_slice()) {
        (ProbeKind::Connect { .. }, [one]) => Ok(Want { probe: probe.into(), answer: Answer::Source(*one) }),
        (ProbeKind::Connect { .. }, _) => Err(format!("--want {text}: a connect probe wants one source address")),
        (ProbeKind::Resolve { .. }, _) => Ok(Want { probe: probe.into(), answer: Answer::Order(addrs) }),
        (ProbeKind::IcmpTimeExceeded { .. }, _) => {
            Err(format!("--want {text}: no policy table decides an ICMP error's source"))
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let Some(mut loaded) = load_scenarios(std::slice::from_ref(&args.scenario)) else {
        return Ok(exit::BAD_INPUT);
    };
    let Some(l) = loaded.pop() else {
        eprintln!("error: {} holds no scenario", args.scenario.display());
        return Ok(exit::BAD_INPUT);
    };
    let wants: Vec<Want> = match args.wants.iter().map(|w| parse_want(&l.scenario, w)).collect() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::BAD_INPUT);
        }
    };
    let os = if args.os == "freebsd" { Os::Freebsd } else { Os::Linux };
    let sweep = addrsel_model::sweep::scenarios();
    let fix = match search(&l.scenario, os, &wants, &sweep) {
        Ok(f) => f,
        Err(no) => {
            println!("No policy change gives that on {}:", args.os);
            for (probe, why) in &no.reasons {
                println!("  {probe}: {why}");
            }
            if no.candidates_tried > 0 {
                println!("({} candidate changes of one and two rows tried)", no.candidates_tried);
            }
            return Ok(exit::DISAGREE);
        }
    };
    print!("{}", report(&fix, &args.os));
    if let Some(out) = &args.output {
        let text = std::fs::read_to_string(&l.path).with_context(|| format!("reading {}", l.path.display()))?;
        let fixed = fixed_file(&text, &fix).with_context(|| format!("editing {}", l.path.display()))?;
        std::fs::write(out, fixed).with_context(|| format!("cannot write -o {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    if !args.targets.is_empty() {
        return check_on_targets(&args.targets, &fix, &wants);
    }
    Ok(exit::OK)
}

fn report(fix: &Fix, os: &str) -> String {
    let mut out = String::new();
    if fix.edits.is_empty() {
        out.push_str(&format!("Already so on {os}: no change needed.\n"));
        return out;
    }
    out.push_str(&format!(
        "Fix for {os}: {} row{} changed:\n",
        fix.edits.len(),
        if fix.edits.len() == 1 { "" } else { "s" }
    ));
    for e in &fix.edits {
        out.push_str(&format!("  {}\n", e.line()));
    }
    for (file, text) in &fix.files {
        let note = match file.as_str() {
            "/etc/gai.conf" => {
                " (the whole file: one label line replaces glibc's default label table, one precedence line its precedence table, so every default it keeps is written out)"
            }
            "/etc/ip6addrctl.conf" => {
                " (the whole table: FreeBSD installs it into an empty per-VNET table; rc.d's AUTO reads this file)"
            }
            _ => "",
        };
        out.push_str(&format!("\n{file}{note}:\n"));
        for line in text.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push_str("\nWhy it works:\n");
    for (probe, why) in &fix.why {
        out.push_str(&format!("  {probe}: {why}\n"));
    }
    if fix.side_effects.is_empty() {
        out.push_str(&format!(
            "\nNo other decision changes (checked {} over the scenario's other probes and the address-class sweep).\n",
            fix.decisions_checked
        ));
    } else {
        out.push_str(&format!(
            "\nOther decisions that change ({} of {} checked):\n",
            fix.side_effects.len(),
            fix.decisions_checked
        ));
        for c in &fix.side_effects {
            out.push_str(&format!("  {} {}: {} -> {}\n", c.scenario, c.probe, c.before, c.after));
        }
    }
    out
}

/// The scenario file with the fixed policy written in (comments and layout kept), renamed.
fn fixed_file(text: &str, fix: &Fix) -> anyhow::Result<String> {
    use toml_edit::{Array, DocumentMut, Item, Table, value};
    let mut doc: DocumentMut = text.parse()?;
    let name = doc.get("name").and_then(|n| n.as_str()).unwrap_or("scenario").to_string();
    doc["name"] = value(format!("{name}-fixed"));
    let lines: Vec<String> = fix.edits.iter().map(|e| e.line()).collect();
    let description = doc.get("description").and_then(|d| d.as_str()).unwrap_or("").trim_end().to_string();
    doc["description"] = value(
        format!("{description}\nFixed by `cargo xtask fix` with: {}.\n", lines.join("; ")).trim_start().to_string(),
    );
    if !doc.contains_key("policy") {
        doc["policy"] = Item::Table(Table::new());
    }
    // Expectations of the wanted probes described the old answers.
    let wanted: Vec<String> = fix.why.iter().map(|(p, _)| p.clone()).collect();
    if let Some(expects) = doc.get_mut("expect").and_then(|e| e.as_array_of_tables_mut()) {
        expects.retain(|t| t.get("probe").and_then(|p| p.as_str()).is_none_or(|p| !wanted.iter().any(|w| w == p)));
        if expects.is_empty() {
            doc.remove("expect");
        }
    }
    let policy = doc["policy"].as_table_mut().context("`policy` is not a table")?;
    policy.set_implicit(true);
    policy.remove("table");
    match fix.os {
        Os::Freebsd => {
            let text = fix.scenario.policy.freebsd().ip6addrctl_conf;
            let mut t = Table::new();
            t.insert("ip6addrctl_conf", value(text));
            policy.insert("freebsd", Item::Table(t));
        }
        _ => {
            let effect = fix.scenario.policy.linux();
            let mut t = Table::new();
            t.insert("gai_conf", value(effect.gai_conf));
            if !effect.addrlabels.is_empty() {
                let mut rows = Array::new();
                for r in &effect.addrlabels {
                    let mut row = Array::new();
                    row.push(addrsel_policy::c_style(&r.prefix));
                    row.push(i64::from(r.label));
                    rows.push(row);
                }
                t.insert("addrlabels", value(rows));
            }
            policy.insert("linux", Item::Table(t));
        }
    }
    let out = doc.to_string();
    // What is written must read back as the fix.
    let parsed = addrsel_model::parse_scenario("fixed.toml", &out).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(parsed.scenario.policy == fix.scenario.policy, "the written policy does not read back as the fix");
    Ok(out)
}

fn check_on_targets(names: &[String], fix: &Fix, wants: &[Want]) -> anyhow::Result<u8> {
    let known = targets::all()?;
    let set = vec![Loaded { path: PathBuf::from("<fixed>"), scenario: fix.scenario.clone(), warnings: vec![] }];
    let dir = addrsel_runner::matrix::run_dir();
    let progress = |target: &str, scenario: &str, done: usize, total: usize, _: Duration| {
        eprintln!("  [{target}] {done}/{total} {scenario}");
    };
    let ctx = targets::run::RunContext {
        scenarios: &set,
        dir: &dir,
        deadline: Duration::from_secs(600),
        kmod: false,
        accel: None,
        progress: &progress,
    };
    let mut status = exit::OK;
    println!();
    for name in names {
        let Some(t) = known.iter().find(|t| &t.name == name) else {
            eprintln!("error: unknown target {name}");
            return Ok(exit::BAD_INPUT);
        };
        if t.os != fix.os {
            println!("{name}: skipped (a {:?} target; the fix is for {:?})", t.os, fix.os);
            continue;
        }
        let run = targets::run(t, &ctx);
        if let Some(why) = run.not_run.as_ref().or(run.error.as_ref()) {
            println!("{name}: could not run: {why}");
            status = exit::NOT_RUN;
            continue;
        }
        let results: Vec<_> = run.scenarios.iter().flat_map(|s| s.report.results.iter()).collect();
        for w in wants {
            let observed = results.iter().find(|r| r.probe == w.probe).map(|r| &r.outcome);
            let holds = observed.is_some_and(|o| match (&w.answer, o) {
                (Answer::Source(a), Outcome::Connect { source, .. }) => source.as_ref() == Some(a),
                (Answer::Order(want), Outcome::Resolve { order, .. }) => order == want,
                _ => false,
            });
            let seen = observed.map_or("no result".into(), |o| o.summary());
            println!("{name}: {} {} ({seen})", w.probe, if holds { "holds" } else { "DOES NOT HOLD" });
            if !holds {
                status = exit::DISAGREE;
            }
        }
    }
    Ok(status)
}
