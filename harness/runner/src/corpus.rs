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
    crate::repo_root().join("harness/scenarios")
}

/// The largest scenario file read: real scenarios are a few kilobytes.
pub const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// Expands directories to their `*.toml` entries (sorted), keeps files as given. Only regular
/// files (or links to one) are scenarios: a FIFO, device or socket is refused by name.
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
        } else if std::fs::metadata(p).is_ok() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

/// A scenario file's text: a regular file of at most [`MAX_SCENARIO_BYTES`], in UTF-8 (an
/// invalid byte is reported at its line and column).
fn read_scenario(path: &Path, shown: &str) -> Result<String, Diagnostic> {
    let at = |line, column, message: String| Diagnostic {
        path: shown.to_string(),
        line,
        column,
        severity: Severity::Error,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| at(0, 0, format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(at(0, 0, "not a regular file (a FIFO, device or socket is not a scenario)".into()));
    }
    if meta.len() > MAX_SCENARIO_BYTES {
        return Err(at(
            0,
            0,
            format!("{} bytes: larger than a scenario may be ({MAX_SCENARIO_BYTES} bytes)", meta.len()),
        ));
    }
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SCENARIO_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| at(0, 0, format!("cannot read it: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = String::from_utf8_lossy(good.rsplit(|&b| b == b'\n').next().unwrap_or(&[])).chars().count() + 1;
        at(line, column, "not UTF-8 text (an invalid byte here)".into())
    })
}

/// Where a file's top-level `name = ...` is, for messages about the scenario's name.
fn name_position(text: &str) -> (usize, usize) {
    text.lines()
        .position(|l| l.trim_start().starts_with("name") && l.trim_start()[4..].trim_start().starts_with('='))
        .map_or((1, 1), |i| (i + 1, 1))
}

/// Reads and validates every file; all errors of all files are returned together.
/// Scenario names must be unique across the set.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Loaded>, Vec<Diagnostic>> {
    let files = expand(paths).map_err(|e| vec![diag_for(&e)])?;
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let shown = display_path(&f);
        let text = match read_scenario(&f, &shown) {
            Ok(t) => t,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        match parse_scenario(&shown, &text) {
            Ok(Parsed { scenario, warnings }) => {
                if let Some(other) = loaded.iter().find(|l| l.scenario.name == scenario.name) {
                    let (line, column) = name_position(&text);
                    errors.push(Diagnostic {
                        path: shown.clone(),
                        line,
                        column,
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
mod reading {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("addrsel-test-corpus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn errors(dir: &Path) -> Vec<String> {
        load(&[dir.to_path_buf()]).unwrap_err().iter().map(|d| d.to_string()).collect()
    }

    const GOOD: &str = "name = \"a\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [\"10.0.0.2/24\"]\n";

    #[test]
    fn only_regular_files_of_a_sane_size_are_read() {
        let d = scratch("kinds");
        std::fs::write(d.join("a.toml"), GOOD).unwrap();
        nix::unistd::mkfifo(&d.join("fifo.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.toml")).unwrap();
        std::fs::write(d.join("huge.toml"), vec![b'#'; (MAX_SCENARIO_BYTES + 1) as usize]).unwrap();
        let e = errors(&d);
        assert!(e.iter().any(|x| x.contains("fifo.toml: error: not a regular file")), "{e:?}");
        assert!(e.iter().any(|x| x.contains("zero.toml: error: not a regular file")), "{e:?}");
        assert!(
            e.iter().any(|x| x.contains("huge.toml: error: 1048577 bytes: larger than a scenario may be")),
            "{e:?}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_bytes_and_duplicate_names_are_located() {
        let d = scratch("located");
        std::fs::write(d.join("a.toml"), GOOD).unwrap();
        std::fs::write(d.join("b.toml"), format!("# the same name\n\n{GOOD}")).unwrap();
        std::fs::write(d.join("c.toml"), b"name = \"c\"\ndescription = \"ok \xff\"\n").unwrap();
        let e = errors(&d);
        let also = format!("b.toml:3:1: error: scenario name `a` is also used by {}", display_path(&d.join("a.toml")));
        assert!(e.iter().any(|x| x.ends_with(&also)), "{e:?}");
        assert!(e.iter().any(|x| x.contains("c.toml:2:19: error: not UTF-8 text")), "{e:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
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
