//! `cargo xtask explain` and `cargo xtask repro`.

use std::path::PathBuf;

use addrsel_engine::{Profile, explain, predict};
use addrsel_model::plan;

use crate::{exit, load_scenarios};

#[derive(clap::Args)]
pub struct Args {
    /// Scenario file(s) or directories of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Which behaviour to explain: linux, freebsd, rfc6724 or all.
    #[arg(long, default_value = "all", value_parser = ["linux", "freebsd", "rfc6724", "rfc6724-update", "all"])]
    profile: String,
    /// Print one JSON object per scenario and profile (the shape `matrix --json` uses).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let Some(loaded) = load_scenarios(&args.files) else {
        return Ok(exit::BAD_INPUT);
    };
    let profiles: Vec<Profile> = if args.profile == "all" {
        Profile::NAMES.iter().filter_map(|n| Profile::from_name(n)).collect()
    } else {
        vec![Profile::from_name(&args.profile).expect("clap checked the name")]
    };
    let mut misses = 0;
    for l in &loaded {
        for p in &profiles {
            let prediction = predict(&l.scenario, p);
            if args.json {
                println!("{}", serde_json::to_string(&prediction.report)?);
            } else {
                println!("{}", explain(&l.scenario, &prediction));
            }
            for m in addrsel_engine::check_expectations(&l.scenario, &prediction, None) {
                eprintln!("{}: {m}", addrsel_runner::corpus::display_path(&l.path));
                misses += 1;
            }
        }
    }
    Ok(if misses > 0 { exit::DISAGREE } else { exit::OK })
}

#[derive(clap::Args)]
pub struct ReproArgs {
    /// The scenario file.
    file: PathBuf,
    /// Which OS to print the commands for.
    #[arg(long, default_value = "linux", value_parser = ["linux", "freebsd"])]
    os: String,
    /// Print the plan as JSON (what the agent executes) instead of a shell script.
    #[arg(long)]
    json: bool,
}

pub fn repro(args: ReproArgs) -> anyhow::Result<u8> {
    let Some(loaded) = load_scenarios(std::slice::from_ref(&args.file)) else {
        return Ok(exit::BAD_INPUT);
    };
    for l in &loaded {
        let p = match args.os.as_str() {
            "linux" => plan::linux(&l.scenario),
            _ => plan::freebsd(&l.scenario),
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&p)?);
        } else {
            print!("{}", plan::repro_script(&p, &l.scenario));
        }
    }
    Ok(exit::OK)
}
