//! The scenario model shared by every part of addrsel: scenario types, the TOML format with
//! line-accurate errors, per-OS plans, and the result shapes. Pure: no I/O.

pub mod addr_names;
pub mod diag;
pub mod parse;
pub mod plan;
pub mod policy_file;
pub mod protocol;
pub mod results;
pub mod scenario;
pub mod sweep;

pub use diag::{Diagnostic, Errors, Severity, printable};
pub use parse::{Parsed, parse_scenario};
pub use scenario::*;
