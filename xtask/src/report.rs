//! `cargo xtask report merge`: one report from the JSON files of sharded matrix runs.

use std::path::PathBuf;

use addrsel_runner::matrix::report::MatrixResult;

use crate::exit;
use crate::matrix::{Outputs, finish};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Merge `matrix --json` files into one report and one exit status.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// JSON files written by `cargo xtask matrix --json` (one per shard).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    outputs: Outputs,
}

pub fn run(cmd: Command) -> anyhow::Result<u8> {
    let Command::Merge(args) = cmd;
    let mut parts = Vec::new();
    for f in &args.files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", f.display());
                return Ok(exit::BAD_INPUT);
            }
        };
        match serde_json::from_str::<MatrixResult>(&text) {
            Ok(part) => parts.push(part),
            Err(e) => {
                eprintln!("error: {}:{}:{}: not a matrix --json file: {e}", f.display(), e.line(), e.column());
                return Ok(exit::BAD_INPUT);
            }
        }
    }
    let result = match MatrixResult::merge(parts) {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            return Ok(exit::BAD_INPUT);
        }
    };
    // As in the runs themselves: only a target named with --targets must have run.
    let requested_not_run = result.cells.iter().any(|c| c.requested && c.not_run.is_some());
    finish(&result, &args.outputs, requested_not_run)
}
