//! `cargo xtask`: everything addrsel does, one subcommand each.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod capture;
mod codegen;
mod diff;
mod explain;
mod fix;
mod fuzz;
mod image;
mod kmod;
mod matrix;
mod measure;
mod mutants;
mod report;
mod test;

/// addrsel: which source and destination addresses will the operating system really pick,
/// and why? Runs RFC 6724 address selection in a reference engine and on real kernels, and
/// compares the two.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every scenario on every target and compare with the engine.
    Matrix(matrix::Args),
    /// Explain, rule by rule, what each profile decides for every probe of a scenario.
    Explain(explain::Args),
    /// Measure the engine (and the targets): medians of several rounds, never pass/fail.
    Bench(bench::Args),
    /// Guest images: pin package versions from signed indexes, fetch and verify downloads.
    Image(image::Args),
    /// The test kernel modules: build one for a target, verify a module file.
    #[command(subcommand)]
    Kmod(kmod::Command),
    /// Work with matrix results.
    #[command(subcommand)]
    Report(report::Command),
    /// Show which decisions a policy change (gai.conf, ip6addrctl.conf or a table) changes.
    Diff(diff::Args),
    /// This host as a scenario: its addresses, routes and policy, with probes whose live
    /// answers become expectations.
    Capture(capture::Args),
    /// The smallest policy change (gai.conf, ip addrlabel, ip6addrctl.conf) that gives the
    /// answers you want, why it works, and what else it changes.
    Fix(fix::Args),
    /// Print the commands that configure a scenario on an OS, as a shell script.
    Repro(explain::ReproArgs),
    /// Measure by hand: run a scenario's repro script in a throwaway namespace on this kernel
    /// and record the system, the script and its output (evidence for `[[expect]]`).
    Measure(measure::Args),
    /// Generate the agent's Rust types for the kernel module ABI from its C header (bindgen).
    Codegen(codegen::Args),
    /// Deliberate bugs in the engine, parsers and verdict, run against the tests that need
    /// no VM: which ones the tests catch.
    Mutants(mutants::Args),
    /// Random and hostile inputs for the scenario and policy parsers and the repro scripts
    /// (run in a shell with recording stubs), for a time; a finding is kept with its input.
    Fuzz(fuzz::Args),
    /// Run every check CI runs: formatting, lints, unit and integration tests, real targets.
    Test(test::Args),
}

/// Exit codes shared by every subcommand.
pub mod exit {
    /// Everything agreed / succeeded.
    pub const OK: u8 = 0;
    /// A disagreement or snapshot change.
    pub const DISAGREE: u8 = 1;
    /// Bad input or configuration.
    pub const BAD_INPUT: u8 = 2;
    /// A target that was asked for explicitly could not run.
    pub const NOT_RUN: u8 = 3;
}

/// `cargo xtask explain FILE | head`: a closed stdout ends the command quietly, as it would
/// a C tool killed by SIGPIPE. (SIGPIPE itself stays ignored: a write to an agent that died
/// must be an error the run handles, not the end of the process before it cleans up.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Matrix(a) => matrix::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Repro(a) => explain::repro(a),
        Command::Measure(a) => measure::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Fix(a) => fix::run(a),
        Command::Capture(a) => capture::run(a),
        Command::Report(c) => report::run(c),
        Command::Bench(a) => bench::run(a),
        Command::Image(a) => image::run(a),
        Command::Kmod(c) => kmod::run(c),
        Command::Test(a) => test::run(a),
        Command::Mutants(a) => mutants::run(a),
        Command::Fuzz(a) => fuzz::run(a),
        Command::Codegen(a) => codegen::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::BAD_INPUT)
        }
    }
}

/// Loads scenario files, printing every problem with its file and line.
pub fn load_scenarios(paths: &[PathBuf]) -> Option<Vec<addrsel_runner::corpus::Loaded>> {
    match addrsel_runner::corpus::load(paths) {
        Ok(loaded) => {
            for l in &loaded {
                for w in &l.warnings {
                    eprintln!("{w}");
                }
            }
            Some(loaded)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            None
        }
    }
}
