//! `cargo xtask bench`: measured, never asserted. Medians of several rounds in one run.

use std::process::Command;
use std::time::{Duration, Instant};

use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// Rounds per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Run the engine benchmark in this process as built (used by `bench` itself, in release).
    #[arg(long, hide = true)]
    engine_here: bool,
}

/// A host with ULA, global and IPv4 sources and `n` destinations of mixed classes.
fn scenario(n: usize) -> addrsel_model::Scenario {
    let mut dsts = Vec::new();
    for i in 0..n {
        dsts.push(match i % 4 {
            0 => format!("\"2a01:4f8:c2c:{:x}::1\"", 0x8100 + i),
            1 => format!("\"fd00:11:22:{:x}::53\"", i),
            2 => format!("\"116.203.{}.{}\"", i / 200, 1 + i % 200),
            _ => format!("\"2001:db8:{:x}::9\"", i),
        });
    }
    let text = format!(
        "name = \"bench\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [\"10.0.0.50/24\", \"fd00:11:22::aa/64\", \"2001:db8:1::aa/64\"]\n\
         [[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\ndev = \"eth0\"\n[[routes]]\nto = \"::/0\"\nvia = \"fe80::1\"\ndev = \"eth0\"\n\
         [hosts]\n\"h.example\" = [{}]\n[[probes]]\nid = \"r\"\nresolve = \"h.example\"\n",
        dsts.join(", ")
    );
    parse_scenario("bench", &text).expect("valid").scenario
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn engine(rounds: usize) {
    println!(
        "engine: getaddrinfo sorts per second (each sort includes the kernel source selection for every destination), median of {rounds} rounds"
    );
    println!("{:<10} {:>12} {:>12} {:>12}", "profile", "2 dests", "8 dests", "32 dests");
    for name in Profile::NAMES {
        let profile = Profile::from_name(name).expect("known");
        let mut row = Vec::new();
        for n in [2, 8, 32] {
            let s = scenario(n);
            let per_round: Vec<f64> = (0..rounds)
                .map(|_| {
                    let start = Instant::now();
                    let mut count = 0u64;
                    while start.elapsed() < Duration::from_millis(300) {
                        std::hint::black_box(predict(&s, &profile));
                        count += 1;
                    }
                    count as f64 / start.elapsed().as_secs_f64()
                })
                .collect();
            row.push(median(per_round));
        }
        println!("{:<10} {:>12.0} {:>12.0} {:>12.0}", name, row[0], row[1], row[2]);
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if args.engine_here {
        engine(args.rounds);
        return Ok(exit::OK);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!("machine: {} cores, {machine}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let status = Command::new(cargo)
        .args(["run", "--release", "--quiet", "--package", "xtask", "--", "bench", "--engine-here", "--rounds"])
        .arg(args.rounds.to_string())
        .status()?;
    Ok(if status.success() { exit::OK } else { exit::DISAGREE })
}
