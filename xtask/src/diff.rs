//! `cargo xtask diff OLD NEW`: which decisions a policy change changes, in the engine and,
//! with `--targets`, on real kernels.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use addrsel_engine::diff::{Change, changes};
use addrsel_engine::{Profile, predict};
use addrsel_model::policy_file::{self, PolicyFile, PolicyFormat};
use addrsel_model::results::ProbeResult;
use addrsel_runner::corpus::Loaded;
use addrsel_runner::matrix::compare;
use addrsel_runner::targets;

use crate::{exit, load_scenarios};

#[derive(clap::Args)]
pub struct Args {
    /// The policy in force now: a gai.conf, an ip6addrctl.conf, or a TOML file with `table = [...]`.
    #[arg(required_unless_present = "profiles")]
    old: Option<PathBuf>,
    /// The policy to deploy, in the same format.
    #[arg(required_unless_present = "profiles")]
    new: Option<PathBuf>,
    /// Instead of two policies, two engine profiles on the same scenarios (e.g. `--profile
    /// linux --profile rfc6724-update`: what changes for a host when its OS adopts the draft).
    #[arg(long = "profile", num_args = 1, conflicts_with_all = ["old", "new", "format", "targets"])]
    profiles: Vec<String>,
    /// The files' format when it cannot be guessed: gai.conf, ip6addrctl or table.
    #[arg(long, value_parser = ["gai.conf", "ip6addrctl", "table"])]
    format: Option<String>,
    /// Scenario files or directories (default: the built-in sweep of address classes).
    #[arg(long, num_args = 1..)]
    scenarios: Vec<PathBuf>,
    /// Also run both policies on these targets (e.g. host) and show what really changes.
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Write every change as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn read_text(path: &PathBuf) -> Option<(String, String)> {
    let shown = addrsel_runner::corpus::display_path(path);
    match std::fs::read_to_string(path) {
        Ok(t) => Some((shown, t)),
        Err(e) => {
            eprintln!("error: {shown}: {e}");
            None
        }
    }
}

fn read_policy((shown, text): &(String, String), format: Option<PolicyFormat>) -> Option<PolicyFile> {
    match policy_file::load(shown, text, format) {
        Ok(p) => Some(p),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

fn observe(
    t: &targets::TargetDef,
    set: &[Loaded],
    label: &str,
) -> Result<BTreeMap<(String, String), ProbeResult>, String> {
    let dir = addrsel_runner::matrix::run_dir();
    let label = label.to_string();
    let progress = move |target: &str, scenario: &str, done: usize, total: usize, _: Duration| {
        eprintln!("  [{target} {label}] {done}/{total} {scenario}");
    };
    let ctx = targets::run::RunContext {
        scenarios: set,
        dir: &dir,
        deadline: Duration::from_secs(600),
        kmod: false,
        accel: None,
        progress: &progress,
    };
    let run = targets::run(t, &ctx);
    if let Some(why) = run.not_run.or(run.error) {
        return Err(why);
    }
    let mut out = BTreeMap::new();
    for s in run.scenarios {
        if let Some(e) = s.setup_error {
            return Err(format!("{}: {e}", s.report.scenario));
        }
        for r in s.report.results {
            out.insert((s.report.scenario.clone(), r.probe.clone()), r);
        }
    }
    Ok(out)
}

/// `--profile A --profile B`: every decision that differs between two profiles.
fn profiles(args: &Args) -> anyhow::Result<u8> {
    let names: Vec<Profile> = match args.profiles.iter().map(|n| Profile::from_name(n).ok_or(n)).collect() {
        Ok(p) => p,
        Err(n) => {
            eprintln!("error: unknown profile `{n}` (expected one of {})", Profile::NAMES.join(", "));
            return Ok(exit::BAD_INPUT);
        }
    };
    let [a, b] = names.as_slice() else {
        eprintln!("error: --profile takes exactly two profiles");
        return Ok(exit::BAD_INPUT);
    };
    let base: Vec<addrsel_model::Scenario> = if args.scenarios.is_empty() {
        addrsel_model::sweep::scenarios()
    } else {
        let Some(l) = load_scenarios(&args.scenarios) else {
            return Ok(exit::BAD_INPUT);
        };
        l.into_iter().map(|l| l.scenario).collect()
    };
    println!("profiles {} -> {} on {} scenario(s)", a.name(), b.name(), base.len());
    for p in [a, b] {
        if matches!(p, Profile::Rfc6724Update) {
            println!("note: {}", p.describe());
        }
    }
    let mut all: Vec<Change> = Vec::new();
    for s in &base {
        all.extend(changes(&predict(s, a), &predict(s, b)));
    }
    println!("{} decision(s) change:", all.len());
    for c in &all {
        println!("  {} / {}: {}  ->  {}", c.scenario, c.probe, c.before, c.after);
        if let Some(r) = &c.rule_before {
            println!("      {}: {r}", a.name());
        }
        if let Some(r) = &c.rule_after {
            println!("      {}: {r}", b.name());
        }
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(exit::OK)
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if !args.profiles.is_empty() {
        return profiles(&args);
    }
    let (Some(old_path), Some(new_path)) = (&args.old, &args.new) else {
        eprintln!("error: give OLD and NEW policy files, or --profile A --profile B");
        return Ok(exit::BAD_INPUT);
    };
    let (Some(old_text), Some(new_text)) = (read_text(old_path), read_text(new_path)) else {
        return Ok(exit::BAD_INPUT);
    };
    // A file that does not tell its format (empty, comments only) takes the other's.
    let given = args.format.as_deref().and_then(PolicyFormat::from_word);
    let (old_guess, new_guess) =
        (policy_file::guess(&old_text.0, &old_text.1), policy_file::guess(&new_text.0, &new_text.1));
    let (Some(old), Some(new)) = (
        read_policy(&old_text, given.or(old_guess).or(new_guess)),
        read_policy(&new_text, given.or(new_guess).or(old_guess)),
    ) else {
        return Ok(exit::BAD_INPUT);
    };
    if old.format() != new.format() {
        eprintln!("error: OLD and NEW must have the same format ({:?} vs {:?})", old.format(), new.format());
        return Ok(exit::BAD_INPUT);
    }
    let base: Vec<Loaded> = if args.scenarios.is_empty() {
        addrsel_model::sweep::scenarios()
            .into_iter()
            .map(|s| Loaded { path: PathBuf::from("<sweep>"), scenario: s, warnings: vec![] })
            .collect()
    } else {
        let Some(l) = load_scenarios(&args.scenarios) else {
            return Ok(exit::BAD_INPUT);
        };
        l
    };
    let with = |p: &PolicyFile| -> Vec<Loaded> {
        base.iter().map(|l| Loaded { scenario: p.apply(&l.scenario), ..l.clone() }).collect()
    };
    let (before, after) = (with(&old), with(&new));
    println!(
        "policy change ({:?}) on {} scenario(s){}; affects: {}",
        old.format(),
        base.len(),
        if args.scenarios.is_empty() { " of the built-in address-class sweep" } else { "" },
        old.profiles().join(", ")
    );
    let mut all: Vec<Change> = Vec::new();
    for profile in old.profiles().iter().filter_map(|n| Profile::from_name(n)) {
        for (b, a) in before.iter().zip(&after) {
            all.extend(changes(&predict(&b.scenario, &profile), &predict(&a.scenario, &profile)));
        }
    }
    let mut mismatch = false;
    let known = targets::all()?;
    for name in &args.targets {
        let Some(t) = known.iter().find(|t| &t.name == name) else {
            eprintln!("error: unknown target `{name}`");
            return Ok(exit::BAD_INPUT);
        };
        let engine = compare::profile_for(t.os, None).name();
        if !old.profiles().contains(&engine) {
            println!(
                "note: {name} runs {}, which does not read this kind of policy file; nothing to observe there",
                t.os
            );
            continue;
        }
        let (obs_b, obs_a) = match (observe(t, &before, "old"), observe(t, &after, "new")) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{name}: not run: {e}");
                return Ok(exit::NOT_RUN);
            }
        };
        for (key, b) in &obs_b {
            let a = &obs_a[key];
            let observed =
                (b.outcome.decision() != a.outcome.decision()).then(|| (b.outcome.summary(), a.outcome.summary()));
            let predicted = all
                .iter()
                .find(|c| c.scenario == key.0 && c.probe == key.1 && c.target == format!("engine:{engine}"))
                .map(|c| (c.before.clone(), c.after.clone()));
            if observed != predicted {
                mismatch = true;
                let say = |c: &Option<(String, String)>| match c {
                    Some((before, after)) => format!("{before}  ->  {after}"),
                    None => "no change".to_string(),
                };
                println!(
                    "MISMATCH {}/{}: the engine predicts {}; {name} shows {}",
                    key.0,
                    key.1,
                    say(&predicted),
                    say(&observed)
                );
            }
            if let Some((before, after)) = observed {
                all.push(Change {
                    scenario: key.0.clone(),
                    probe: key.1.clone(),
                    target: name.clone(),
                    before,
                    after,
                    rule_before: None,
                    rule_after: None,
                });
            }
        }
    }
    all.sort_by(|x, y| (&x.scenario, &x.probe, &x.target).cmp(&(&y.scenario, &y.probe, &y.target)));
    println!("{} decision(s) change:", all.len());
    for c in &all {
        println!("  {} / {} [{}]: {}  ->  {}", c.scenario, c.probe, c.target, c.before, c.after);
        if let Some(r) = &c.rule_before {
            println!("      before: {r}");
        }
        if let Some(r) = &c.rule_after {
            println!("      after:  {r}");
        }
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(if mismatch { exit::DISAGREE } else { exit::OK })
}
