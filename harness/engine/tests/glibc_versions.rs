//! The glibc version switch: gai.conf lines that glibc 2.36 (Debian 12) and 2.41 (Debian 13)
//! read differently, with the orders measured by running both Debian libraries
//! (harness/measurements/glibc-2.41/, and the bookworm and trixie targets' snapshots).

use addrsel_engine::{LinuxProfile, Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;
use addrsel_policy::gai_conf::GlibcParser;

fn order(gai_conf: &str, hosts: &str, glibc: GlibcParser) -> String {
    let text = format!(
        r#"
name = "t"
[[interfaces]]
name = "eth0"
addresses = ["2001:db8:1::10/64", "192.0.2.10/24"]
[[routes]]
to = "::/0"
via = "2001:db8:1::1"
[[routes]]
to = "0.0.0.0/0"
via = "192.0.2.1"
[hosts]
"dual.example" = [{hosts}]
[policy.linux]
gai_conf = """
{gai_conf}
"""
[[probes]]
id = "r"
resolve = "dual.example"
"#
    );
    let s = parse_scenario("t.toml", &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let p = predict(&s, &Profile::Linux(LinuxProfile { glibc, ..LinuxProfile::default() }));
    match &p.probes[0].result.outcome {
        Outcome::Resolve { order, error: None, .. } => {
            order.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")
        }
        other => panic!("{other:?}"),
    }
}

const V6_FIRST: &str = r#""2001:db8:2::1", "198.51.100.1""#;
const V4_FIRST: &str = r#""198.51.100.1", "2001:db8:2::1""#;

#[test]
fn versions_map_to_parsers() {
    assert_eq!(GlibcParser::for_version(2, 31), GlibcParser::Before2_41);
    assert_eq!(GlibcParser::for_version(2, 36), GlibcParser::Before2_41);
    assert_eq!(GlibcParser::for_version(2, 40), GlibcParser::Before2_41);
    assert_eq!(GlibcParser::for_version(2, 41), GlibcParser::From2_41);
    assert_eq!(GlibcParser::for_version(2, 42), GlibcParser::From2_41);
    assert_eq!(GlibcParser::for_version(3, 0), GlibcParser::From2_41);
}

#[test]
fn a_label_line_without_a_value() {
    // 2.36 reads label 0 for 2001:db8:2::/48 and drops every default label; 2.41 ignores
    // the line and keeps the built-in table.
    let conf = "label 2001:db8:2::/48";
    assert_eq!(order(conf, V6_FIRST, GlibcParser::Before2_41), "198.51.100.1 2001:db8:2::1");
    assert_eq!(order(conf, V6_FIRST, GlibcParser::From2_41), "2001:db8:2::1 198.51.100.1");
}

#[test]
fn a_slash_without_a_length() {
    // 2.36: `::/0 -> 10` for everything, every rule ties, the resolver's order stays.
    let conf = "precedence ::/ 10";
    assert_eq!(order(conf, V4_FIRST, GlibcParser::Before2_41), "198.51.100.1 2001:db8:2::1");
    assert_eq!(order(conf, V6_FIRST, GlibcParser::Before2_41), "2001:db8:2::1 198.51.100.1");
    // 2.41 ignores the line: the built-in precedences put IPv6 first either way.
    assert_eq!(order(conf, V4_FIRST, GlibcParser::From2_41), "2001:db8:2::1 198.51.100.1");
}

#[test]
fn a_prefix_without_a_length() {
    // Before 2.41 the line is refused; 2.41 reads it as a /128.
    let conf = "precedence ::ffff:198.51.100.1 100";
    assert_eq!(order(conf, V6_FIRST, GlibcParser::Before2_41), "2001:db8:2::1 198.51.100.1");
    assert_eq!(order(conf, V6_FIRST, GlibcParser::From2_41), "198.51.100.1 2001:db8:2::1");
}
