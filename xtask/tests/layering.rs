//! The walls ARCHITECTURE.md describes, checked on the source: no import cycle between the
//! files of any crate, and the engine, fix, capture, model and policy crates do no I/O (their library code
//! names no file, process, network or environment API; tests may).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The code of a file without its `#[cfg(test)]` module and comments.
fn library_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The module path of a file under `src` (`matrix::cells`, `crate` for lib.rs).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| *p != "mod").collect();
    if parts == ["lib"] || parts == ["main"] || parts.is_empty() { "crate".into() } else { parts.join("::") }
}

/// Module-to-module edges of one crate: `crate::a::b` paths, and a parent's `child::` paths.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(src);
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_of(src, f), f.clone())).collect();
    let mut graph = BTreeMap::new();
    for (m, f) in &modules {
        let code = library_code(f);
        let mut deps = BTreeSet::new();
        let children: Vec<&String> =
            modules.keys().filter(|k| k.rsplit_once("::").map_or(m == "crate", |(p, _)| p == m)).collect();
        for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
            let path = if let Some(rest) = word.strip_prefix("crate::") {
                rest.to_string()
            } else if let Some(child) = children.iter().find(|c| {
                let last = c.rsplit("::").next().unwrap();
                word.starts_with(&format!("{last}::"))
            }) {
                format!("{child}::{}", word.split_once("::").unwrap().1)
            } else {
                continue;
            };
            let parts: Vec<&str> = path.split("::").collect();
            if let Some(target) =
                (1..=parts.len()).rev().map(|k| parts[..k].join("::")).find(|cand| modules.contains_key(cand))
                && &target != m
            {
                deps.insert(target);
            }
        }
        graph.insert(m.clone(), deps);
    }
    graph
}

fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            match state.get(d) {
                Some(1) => {
                    let at = stack.iter().position(|x| x == d).unwrap();
                    let mut c = stack[at..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(d, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if !state.contains_key(m)
            && let Some(c) = visit(m, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_cycle() {
    for krate in [
        "harness/runner",
        "harness/engine",
        "harness/fix",
        "harness/capture",
        "harness/model",
        "harness/policy",
        "harness/agent",
        "xtask",
    ] {
        let graph = edges(&repo().join(krate).join("src"));
        assert!(graph.contains_key("crate"), "{krate}: {graph:?}");
        if let Some(c) = cycle(&graph) {
            panic!("{krate}: import cycle {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_check_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&g), Some(vec!["a".to_string(), "b".into(), "a".into()]));
}

#[test]
fn engine_model_and_policy_do_no_io() {
    let forbidden =
        ["std::fs", "std::process", "std::net::Tcp", "std::net::Udp", "std::env", "std::io::stdin", "fs::File"];
    for krate in ["harness/engine", "harness/fix", "harness/capture", "harness/model", "harness/policy"] {
        for f in rust_files(&repo().join(krate).join("src")) {
            if f.components().any(|c| c.as_os_str() == "tests") || f.ends_with("tests.rs") {
                continue;
            }
            let code = library_code(&f);
            for word in forbidden {
                assert!(!code.contains(word), "{} names `{word}`: the {krate} crate does no I/O", f.display());
            }
        }
    }
}
