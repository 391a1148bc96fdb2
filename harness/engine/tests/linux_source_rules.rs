//! Linux source rules that no corpus scenario decides on a kernel yet, pinned to
//! `ipv6_get_saddr_eval` (net/ipv6/addrconf.c, 6.1 to 6.18): rule 7 with `use_tempaddr` and
//! the socket's IPV6_PREFER_SRC_TMP/PUBLIC, marked UNVERIFIED until a target runs it.

use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

/// The source for 2001:db8:5::5 from a public and a temporary address on eth0, and the
/// prediction's unverified points.
fn source(use_tempaddr: Option<u8>, prefer: &str) -> (String, Vec<String>) {
    let sysctl =
        use_tempaddr.map_or(String::new(), |v| format!("[sysctl.linux]\n\"net.ipv6.conf.eth0.use_tempaddr\" = {v}\n"));
    let text = format!(
        r#"
name = "t"
[[interfaces]]
name = "eth0"
addresses = ["2001:db8:1::a/64", {{ address = "2001:db8:1::b/64", temporary = true }}]
[[routes]]
to = "::/0"
dev = "eth0"
{sysctl}
[[probes]]
id = "p"
connect = "2001:db8:5::5"
{prefer}
"#
    );
    let s = parse_scenario("t.toml", &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let p = predict(&s, &Profile::from_name("linux").unwrap());
    let got = match &p.probes[0].result.outcome {
        Outcome::Connect { source: Some(a), .. } => a.to_string(),
        other => panic!("{other:?}"),
    };
    (got, p.probes[0].unverified().to_vec())
}

#[test]
fn rule_7_follows_use_tempaddr_and_the_socket() {
    let public = "2001:db8:1::a";
    let temporary = "2001:db8:1::b";
    for (use_tempaddr, prefer, want) in [
        (None, "", public),
        (Some(0), "", public),
        (Some(1), "", public),
        (Some(2), "", temporary),
        (Some(0), r#"prefer = ["temporary"]"#, temporary),
        (Some(2), r#"prefer = ["public"]"#, public),
    ] {
        let (got, unverified) = source(use_tempaddr, prefer);
        assert_eq!(got, want, "use_tempaddr {use_tempaddr:?} {prefer}");
        assert!(unverified.iter().any(|u| u.contains("rule 7")), "rule 7 is not confirmed on a kernel: {unverified:?}");
    }
}
