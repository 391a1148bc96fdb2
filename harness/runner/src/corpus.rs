//! Reading scenario files: the built-in corpus or files and directories given by the user.

use std::path::{Path, PathBuf};

use addrsel_model::{Diagnostic, Parsed, Scenario, Severity, parse_scenario};

/// A scenario and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub scenario: Scenario,
    pub warnings: Vec<Diagnostic>,
}

/// The built-in corpus directory (`harness/scenarios`).
pub fn builtin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// Expands directories to their `*.toml` files (sorted), keeps files as given.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(format!("{}: no *.toml scenario files here", p.display()));
            }
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

/// Reads and validates every file; all errors of all files are returned together.
/// Scenario names must be unique across the set.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Loaded>, Vec<Diagnostic>> {
    let files = expand(paths).map_err(|e| vec![diag_for(&e)])?;
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let shown = display_path(&f);
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(diag_for(&format!("{shown}: {e}")));
                continue;
            }
        };
        match parse_scenario(&shown, &text) {
            Ok(Parsed { scenario, warnings }) => {
                if let Some(other) = loaded.iter().find(|l| l.scenario.name == scenario.name) {
                    errors.push(Diagnostic {
                        path: shown.clone(),
                        line: 1,
                        column: 1,
                        severity: Severity::Error,
                        message: format!(
                            "scenario name `{}` is also used by {}",
                            scenario.name,
                            display_path(&other.path)
                        ),
                    });
                    continue;
                }
                loaded.push(Loaded { path: f, scenario, warnings });
            }
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() { Ok(loaded) } else { Err(errors) }
}

fn diag_for(message: &str) -> Diagnostic {
    Diagnostic { path: String::new(), line: 0, column: 0, severity: Severity::Error, message: message.to_string() }
}

/// A path relative to the current directory when possible, for messages.
pub fn display_path(p: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let canon = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    match cwd.and_then(|c| canon.strip_prefix(&c).ok().map(Path::to_path_buf)) {
        Some(rel) => rel.display().to_string(),
        None => p.display().to_string(),
    }
}

/// What a measurement file (`cargo xtask measure`) says a probe gave: the lines printed
/// after `== PROBE:`, with zones (`%eth0`) removed. `None` when the probe is not in it.
pub fn measured_probe_output(measurement: &str, probe: &str) -> Option<Vec<String>> {
    let output = measurement.split("\n## output\n").nth(1)?;
    let output = output.split("\n## stderr\n").next()?;
    let header = format!("== {probe}:");
    let mut lines = output.lines().skip_while(|l| !l.starts_with(&header));
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.starts_with("== "))
            .map(|l| l.split('%').next().unwrap_or(l).trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod measured {
    #[test]
    fn probe_output_reads_one_probes_lines() {
        let m = "x\n## script\n== a: no\n## output\n== a: source for x\nfe80::2%eth0\n== b: getaddrinfo order for h\n::1\n127.0.0.1\n";
        assert_eq!(super::measured_probe_output(m, "a"), Some(vec!["fe80::2".to_string()]));
        assert_eq!(super::measured_probe_output(m, "b"), Some(vec!["::1".to_string(), "127.0.0.1".to_string()]));
        assert_eq!(super::measured_probe_output(m, "c"), None);
    }
}
