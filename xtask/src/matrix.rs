//! `cargo xtask matrix`.

use std::path::PathBuf;
use std::time::Duration;

use addrsel_runner::{Options, report, run_matrix, targets};

use crate::{exit, load_scenarios};

#[derive(clap::Args)]
pub struct Args {
    /// Comma-separated targets to run (default: every known target; see --list-targets).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Scenario files or directories, replacing the built-in corpus (harness/scenarios).
    #[arg(long, num_args = 1..)]
    scenarios: Vec<PathBuf>,
    /// Write the results as JSON: one object per scenario and target.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the results as JUnit XML (one testcase per scenario and target).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write the results as a Markdown table (also appended to $GITHUB_STEP_SUMMARY when set).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Store the observations as the new snapshots instead of reporting changes.
    #[arg(long, conflicts_with = "no_snapshots")]
    accept: bool,
    /// Compare with the engine only; leave snapshots alone (for ad-hoc scenarios).
    #[arg(long)]
    no_snapshots: bool,
    /// List every known target, whether it can run here and why not, then exit.
    #[arg(long)]
    list_targets: bool,
    /// Deadline per target, in seconds.
    #[arg(long, default_value_t = 600)]
    deadline: u64,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let known = targets::all();
    if args.list_targets {
        for t in &known {
            match targets::availability(t) {
                Ok(how) => println!("{:<24} can run ({how}): {}", t.name, t.description),
                Err(why) => println!("{:<24} cannot run here: {why}", t.name),
            }
        }
        return Ok(exit::OK);
    }
    let explicit = !args.targets.is_empty();
    let chosen: Vec<targets::TargetDef> = if explicit {
        let mut v = Vec::new();
        for name in &args.targets {
            match known.iter().find(|t| &t.name == name) {
                Some(t) => v.push(t.clone()),
                None => {
                    eprintln!(
                        "error: unknown target `{name}` (known: {})",
                        known
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    return Ok(exit::BAD_INPUT);
                }
            }
        }
        v
    } else {
        known
    };
    let paths = if args.scenarios.is_empty() {
        vec![addrsel_runner::corpus::builtin_dir()]
    } else {
        args.scenarios.clone()
    };
    let Some(scenarios) = load_scenarios(&paths) else {
        return Ok(exit::BAD_INPUT);
    };
    eprintln!(
        "addrsel matrix: {} scenarios on {} target(s): {}",
        scenarios.len(),
        chosen.len(),
        chosen
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let opts = Options {
        targets: chosen,
        scenarios,
        snapshots: if args.no_snapshots {
            addrsel_runner::Snapshots::Skip
        } else if args.accept {
            addrsel_runner::Snapshots::Accept
        } else {
            addrsel_runner::Snapshots::Compare
        },
        deadline: Duration::from_secs(args.deadline),
    };
    let progress = |target: &str, scenario: &str, done: usize, total: usize, elapsed: Duration| {
        eprintln!(
            "  [{target}] {done}/{total} {scenario} ({:.1} s)",
            elapsed.as_secs_f64()
        );
    };
    let result = run_matrix(&opts, &progress);
    print!("{}", report::terminal(&result));
    if let Some(p) = &args.json {
        std::fs::write(p, report::json(&result))?;
    }
    if let Some(p) = &args.junit {
        std::fs::write(p, report::junit(&result))?;
    }
    let md = report::markdown(&result);
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md)?;
    }
    if let Ok(summary) = std::env::var("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(summary)
        {
            let _ = f.write_all(md.as_bytes());
        }
    }
    let requested_not_run = explicit && result.targets.iter().any(|t| t.not_run.is_some());
    Ok(if result.failures() > 0 {
        exit::DISAGREE
    } else if requested_not_run {
        exit::NOT_RUN
    } else {
        exit::OK
    })
}
