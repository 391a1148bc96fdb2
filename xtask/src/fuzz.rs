//! `cargo xtask fuzz`: a long property-based run over everything that reads user text —
//! the scenario parser, the gai.conf, ip6addrctl.conf and addrlabel parsers — and over the
//! repro script generator, whose scripts are run in a real shell with every command replaced
//! by a recording stub (see [`stubbed`]).
//!
//! proptest rather than cargo-fuzz: cargo-fuzz needs a nightly toolchain and libFuzzer,
//! neither of which this project's machines can install; proptest runs on stable, shrinks a
//! finding to a small input, and its strategies can build structured, mostly-valid inputs
//! (corpus files with hostile values spliced in) that reach validation deep inside.

mod stubbed;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use addrsel_engine::Profile;
use addrsel_model::diag::Errors;
use addrsel_model::parse::parse_scenario;
use addrsel_model::plan;
use addrsel_policy::gai_conf::{GaiConf, GlibcParser};
use addrsel_policy::{addrlabel, ip6addrctl};
use anyhow::Context as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRng, TestRunner};

use crate::exit;

#[derive(clap::Args)]
pub struct Args {
    /// How long to run, in seconds (the corpus pass always runs in full first).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the random inputs; default: from the clock (printed, to repeat a run).
    #[arg(long)]
    seed: Option<u64>,
}

/// Tokens that matter to TOML, to the scenario's values and to a shell.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "\"\"\"",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "\r\n",
    "#",
    ".",
    "::",
    "/",
    "%",
    "0",
    "-1",
    "4294967296",
    "99999999999999999999",
    "\\u0000",
    "\\u001b[31m",
    "\\n",
    "ADDRSEL_EOF",
    "EOF",
    "$(touch X)",
    "`touch X`",
    "'; touch X; '",
    "true",
    "fe80::1%eth0",
    "::ffff:1.2.3.4",
    "10.0.0.1/33",
    "2001:db8::/129",
    "via",
    "to",
    "metric",
    "name",
    "addresses",
    "interfaces",
    "routes",
    "probes",
    "connect",
    "resolve",
    "expect",
    "[policy.linux]",
    "[policy.freebsd]",
    "gai_conf",
    "ip6addrctl_conf",
    "labels",
    "sysctls",
    "[hosts]",
    "disable_ipv6",
    "prefer",
    "zone",
    "order",
    "source",
    "error",
    "evidence",
    "ü",
    "\t",
    " ",
    "{peer}",
    "-",
    "localhost",
    "LOCALHOST",
    "type",
    "blackhole",
    "throw",
    "resolvers",
    "resolver",
    "musl",
    "go-cgo",
    "c-ares",
];

/// Text a scenario value could carry to attack a script or a terminal, or to be long.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(TOKENS).prop_map(str::to_string),
        "(?s).{0,60}",
        proptest::collection::vec(proptest::sample::select(TOKENS), 0..12).prop_map(|t| t.concat()),
        (1usize..3000).prop_map(|n| "a".repeat(n)),
    ]
}

/// A TOML basic string holding `text` exactly.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Byte ranges of the one-line `"..."` literals of a TOML text (keys and values).
fn string_literals(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' && !text[i..].starts_with("\"\"\"") {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' && bytes[j] != b'\n' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            if j < bytes.len() && bytes[j] == b'"' {
                out.push(i..j + 1);
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Edit {
    Delete { at: u16, len: u8 },
    Insert { at: u16, token: &'static str },
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<u16>(), 1u8..24).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<u16>(), proptest::sample::select(TOKENS)).prop_map(|(at, token)| Edit::Insert { at, token }),
    ];
    proptest::collection::vec(edit, 1..8)
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let at = |raw: u16, len: usize| raw as usize * (len + 1) / (u16::MAX as usize + 1);
        match *e {
            Edit::Delete { at: raw, len } => {
                let start = at(raw, bytes.len());
                let end = (start + len as usize).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert { at: raw, token } => {
                let start = at(raw, bytes.len());
                bytes.splice(start..start, token.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Everything that must hold for any scenario text: no panic anywhere; every error has a
/// location inside the file and prints without control characters; a scenario that parses
/// can be predicted by every profile and planned for both OSes, and both repro scripts run
/// in a real shell doing exactly what their plans say.
fn check_scenario_text(path: &str, text: &str) -> Result<(), TestCaseError> {
    let parsed = match parse_scenario(path, text) {
        Ok(p) => p,
        Err(Errors(errors)) => {
            prop_assert!(!errors.is_empty(), "an error without a diagnostic");
            let lines = text.split('\n').count();
            for d in &errors {
                prop_assert!(d.line >= 1 && d.line <= lines && d.column >= 1, "no location inside the file: {d:?}");
                let shown = d.to_string();
                prop_assert!(!shown.chars().any(char::is_control), "control characters printed: {shown:?}");
                prop_assert!(shown.chars().count() < 1000, "a message of {} characters", shown.chars().count());
            }
            return Ok(());
        }
    };
    let s = &parsed.scenario;
    for name in Profile::NAMES {
        let profile = Profile::from_name(name).expect("a profile name");
        let prediction = addrsel_engine::predict(s, &profile);
        let _ = addrsel_engine::explain(s, &prediction);
    }
    for p in [plan::linux(s), plan::freebsd(s)] {
        let script = plan::repro_script(&p, s);
        stubbed::check(&p, &script).map_err(|e| TestCaseError::fail(format!("{:?} repro script: {e:#}", p.os)))?;
    }
    Ok(())
}

fn check_gai_conf(text: &str) -> Result<(), TestCaseError> {
    for parser in [GlibcParser::Before2_41, GlibcParser::From2_41] {
        let conf = GaiConf::parse(text, parser);
        let _ = addrsel_policy::gai_conf::print_effective(&conf);
        for addr in ["::1", "::ffff:10.0.0.1", "2001:db8::1", "fd00::1", "fe80::1"] {
            let a = addr.parse().expect("an address");
            let _ = (conf.label_table().lookup(&a), conf.precedence_table().lookup(&a));
        }
    }
    Ok(())
}

/// The FreeBSD and Linux table formats: what parses, printed and parsed again, is the same.
fn check_policy_tables(text: &str) -> Result<(), TestCaseError> {
    if let Ok(table) = ip6addrctl::parse_conf(text) {
        let again = ip6addrctl::parse_conf(&ip6addrctl::print_conf(&table));
        prop_assert_eq!(again.ok(), Some(table), "ip6addrctl.conf does not survive print_conf");
    }
    if let Ok(table) = ip6addrctl::parse_show(text) {
        let again = ip6addrctl::parse_show(&ip6addrctl::print_show(&table));
        prop_assert_eq!(again.ok(), Some(table), "ip6addrctl output does not survive print_show");
    }
    if let Ok(rows) = addrlabel::parse_list(text) {
        let again = addrlabel::parse_list(&addrlabel::print_list(&rows));
        prop_assert_eq!(again.ok(), Some(rows), "ip addrlabel list does not survive print_list");
    }
    Ok(())
}

/// Lines in the policy files' shapes, with numbers and prefixes at their edges.
fn policy_text() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just("::/0".to_string()),
        Just("::1/128".to_string()),
        Just("::ffff:0.0.0.0/96".to_string()),
        Just("::ffff:0:0/96".to_string()),
        Just("fe80::/10".to_string()),
        Just("2001:db8::".to_string()),
        (any::<u128>(), 0u16..140).prop_map(|(a, l)| format!("{}/{l}", std::net::Ipv6Addr::from(a))),
        "[0-9a-f:./]{0,20}",
    ];
    let number = prop_oneof![
        (0u64..200).prop_map(|n| n.to_string()),
        Just("4294967295".to_string()),
        Just("4294967296".to_string()),
        Just("-1".to_string()),
        Just("0x10".to_string()),
        Just(String::new()),
    ];
    let keyword = proptest::sample::select(&["label", "precedence", "scopev4", "reload", "prefix", "#", ""][..]);
    let line = prop_oneof![
        (keyword.clone(), prefix.clone(), number.clone()).prop_map(|(k, p, n)| format!("{k} {p} {n}")),
        (prefix.clone(), number.clone(), number.clone()).prop_map(|(p, a, b)| format!("{p}\t{a} {b}")),
        (prefix.clone(), number.clone(), number.clone(), number)
            .prop_map(|(p, a, b, c)| format!("prefix {p} dev eth0 label {a} {b} {c}")),
        "(?s).{0,40}",
    ];
    (proptest::collection::vec(line, 0..10), proptest::sample::select(&["\n", "\r\n", "\0\n"][..]))
        .prop_map(|(lines, sep)| lines.join(sep))
}

struct Target {
    name: &'static str,
    cases: u64,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let corpus = load_corpus()?;
    // Panics are findings here; proptest reports them with the shrunk input, so the default
    // hook's print of every panic while shrinking is only noise.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();

    println!("==> corpus: {} scenario files, each parsed, predicted and its scripts run", corpus.len());
    for (path, text) in &corpus {
        if let Err(e) = check_scenario_text(path, text) {
            return finding("corpus", &format!("{path}: {e}"));
        }
    }

    let deadline = started + Duration::from_secs(args.seconds);
    let mut targets = [
        Target { name: "scenario-edits", cases: 0 },
        Target { name: "scenario-hostile-values", cases: 0 },
        Target { name: "gai-conf", cases: 0 },
        Target { name: "policy-tables", cases: 0 },
    ];
    println!("==> random inputs for {} s, seed {seed}", args.seconds);
    let mut round = 0u64;
    // Every target runs at least one round, however short the time.
    while round < 4 || Instant::now() < deadline {
        let t = &mut targets[(round % 4) as usize];
        let cases = 32;
        let mut runner = TestRunner::new_with_rng(
            Config { cases, failure_persistence: None, ..Config::default() },
            TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed_bytes(seed, round)),
        );
        let outcome = match t.name {
            "scenario-edits" => described(runner.run(&(0..corpus.len(), edits()), |(i, e)| {
                check_scenario_text(&corpus[i].0, &apply(&corpus[i].1, &e))
            })),
            "scenario-hostile-values" => {
                described(runner.run(&(0..corpus.len(), any::<u16>(), hostile_text()), |(i, k, v)| {
                    let (path, text) = &corpus[i];
                    let literals = string_literals(text);
                    let mut text = text.clone();
                    if !literals.is_empty() {
                        let r = literals[k as usize % literals.len()].clone();
                        text.replace_range(r, &toml_string(&v));
                    }
                    check_scenario_text(path, &text)
                }))
            }
            "gai-conf" => described(runner.run(&policy_text(), |t| check_gai_conf(&t))),
            _ => described(runner.run(&policy_text(), |t| check_policy_tables(&t))),
        };
        t.cases += cases as u64;
        if let Err(message) = outcome {
            return finding(t.name, &message);
        }
        round += 1;
    }
    let _ = std::panic::take_hook();
    stubbed::remove_stubs();
    let total: u64 = targets.iter().map(|t| t.cases).sum();
    println!(
        "no finding in {:.0} s: {total} random cases ({}), seed {seed}",
        started.elapsed().as_secs_f64(),
        targets.iter().map(|t| format!("{} {}", t.name, t.cases)).collect::<Vec<_>>().join(", ")
    );
    Ok(exit::OK)
}

/// A failed run as text: the reason and the shrunk input.
fn described<T: std::fmt::Debug>(outcome: Result<(), TestError<T>>) -> Result<(), String> {
    outcome.map_err(|e| match e {
        TestError::Fail(reason, input) => format!("{reason}\nminimal input: {input:?}"),
        TestError::Abort(reason) => format!("aborted: {reason}"),
    })
}

fn seed_bytes(seed: u64, round: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&seed.to_le_bytes());
    out[8..16].copy_from_slice(&round.to_le_bytes());
    out
}

fn load_corpus() -> anyhow::Result<Vec<(String, String)>> {
    let dir = addrsel_runner::corpus::builtin_dir();
    let files = addrsel_runner::corpus::expand(&[dir]).map_err(|e| anyhow::anyhow!(e))?;
    files
        .into_iter()
        .map(|f: PathBuf| {
            let text = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            Ok((addrsel_runner::corpus::display_path(&f), text))
        })
        .collect()
}

fn finding(target: &str, message: &str) -> anyhow::Result<u8> {
    let _ = std::panic::take_hook();
    stubbed::remove_stubs();
    let dir = addrsel_runner::repo_root().join("target/addrsel/fuzz");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("finding-{target}.txt"));
    std::fs::write(&file, message).with_context(|| format!("writing {}", file.display()))?;
    eprintln!("FINDING in {target}:\n{message}\n(kept in {})", file.display());
    Ok(exit::DISAGREE)
}
