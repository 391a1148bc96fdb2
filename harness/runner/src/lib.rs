//! Runs scenarios on targets and compares what they did with the engine.
//!
//! - `matrix/`: the run over targets, the three-way comparison, snapshots and reports;
//! - `targets/`: every target, whether it can run here, the host target and what a run yields;
//! - `vm/`: what every guest shares: QEMU, its console, the console driver, cpio archives;
//! - `linux/`, `freebsd/`: guest images, kernels, test-module builds and boots per OS;
//! - `cache/`: verified downloads and the cache they land in;
//! - `corpus.rs` scenario files, `tools.rs` programs on this machine, `agent_build.rs` the
//!   agent for each target, `module_elf.rs` what a kernel's module loader accepts.

pub mod agent_build;
pub mod arch;
pub mod cache;
pub mod corpus;
pub mod freebsd;
pub mod interrupt;
pub mod linux;
pub mod matrix;
pub mod module_elf;
pub mod process;
pub mod resolvers;
pub mod targets;
pub mod tools;
pub mod vm;

use std::path::PathBuf;

/// The repository's top directory (the workspace root).
pub fn repo_root() -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}
