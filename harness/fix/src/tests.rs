use super::*;
use addrsel_model::parse_scenario;

fn scenario(text: &str) -> Scenario {
    parse_scenario("s.toml", text).unwrap_or_else(|e| panic!("{e}")).scenario
}

fn order(text: &str) -> Answer {
    Answer::Order(text.split(", ").map(|a| a.parse().unwrap()).collect())
}

/// The wifibox host: a ULA /64 handed out with NAT66, private IPv4, a global server.
const WIFIBOX: &str = r#"
name = "wifibox"
[[interfaces]]
name = "wifibox0"
addresses = ["10.0.0.2/24", "fd00::2/64"]
[[routes]]
to = "0.0.0.0/0"
via = "10.0.0.1"
[[routes]]
to = "::/0"
via = "fd00::1"
[hosts]
"server.example" = ["116.203.176.52", "2a01:4f8:c2c:8101::1"]
[[probes]]
id = "resolve-server"
resolve = "server.example"
"#;

/// The cross-site host: its own site's ULA, and a partner site reached over IPv6 at its GUA.
const CROSS_SITE: &str = r#"
name = "cross-site"
[[interfaces]]
name = "em0"
addresses = ["192.168.1.10/24", "fd00:11:22::10/64"]
[[routes]]
to = "0.0.0.0/0"
via = "192.168.1.1"
[[routes]]
to = "::/0"
via = "fd00:11:22::1"
[hosts]
"server.example" = ["2a01:4f8:c2c:8101::1", "116.203.176.52"]
"files.partner.example" = ["2001:db8:33::53", "198.51.100.53"]
[[probes]]
id = "resolve-server"
resolve = "server.example"
[[probes]]
id = "resolve-partner"
resolve = "files.partner.example"
"#;

fn wants_wifibox() -> Vec<Want> {
    vec![Want { probe: "resolve-server".into(), answer: order("2a01:4f8:c2c:8101::1, 116.203.176.52") }]
}

fn wants_cross_site() -> Vec<Want> {
    vec![
        Want { probe: "resolve-partner".into(), answer: order("2001:db8:33::53, 198.51.100.53") },
        // The global server stays on IPv4: the ULA source cannot reach it over IPv6.
        Want { probe: "resolve-server".into(), answer: order("116.203.176.52, 2a01:4f8:c2c:8101::1") },
    ]
}

#[test]
fn the_wifibox_host_on_freebsd() {
    let s = scenario(WIFIBOX);
    let fix = search(&s, Os::Freebsd, &wants_wifibox(), &[]).unwrap();
    assert_eq!(fix.edits.len(), 1, "{:?}", fix.edits);
    assert_eq!(fix.edits[0].line(), "fd00::/64 3 1", "the site's /64 gets the global label");
    assert!(meets(&fix.scenario, Os::Freebsd, &wants_wifibox()));
    let (name, text) = &fix.files[0];
    assert_eq!(name, "/etc/ip6addrctl.conf");
    // The whole table: FreeBSD installs it into an empty per-VNET table.
    assert!(text.contains("::ffff:0.0.0.0/96") && text.contains("fd00::/64"), "{text}");
    // Both sides now match their labels, so precedence decides (40 over 35).
    assert!(fix.why[0].1.contains("Rule 6"), "{:?}", fix.why);
}

#[test]
fn the_wifibox_host_on_linux() {
    let s = scenario(WIFIBOX);
    let fix = search(&s, Os::Linux, &wants_wifibox(), &addrsel_model::sweep::scenarios()).unwrap();
    assert_eq!(fix.edits.len(), 1, "{:?}", fix.edits);
    assert_eq!(fix.edits[0].line(), "label fd00::/64 1");
    let (name, text) = &fix.files[0];
    assert_eq!(name, "/etc/gai.conf");
    // One label line replaces glibc's whole label table: the defaults are written out.
    for kept in
        ["label ::1/128 0", "label ::ffff:0.0.0.0/96 4", "label fc00::/7 6", "label ::/0 1", "label fd00::/64 1"]
    {
        assert!(text.contains(kept), "{kept} missing from\n{text}");
    }
    assert!(!text.contains("precedence"), "no precedence line, so glibc keeps its own table:\n{text}");
    assert!(fix.side_effects.is_empty(), "{:?}", fix.side_effects);
    assert!(fix.decisions_checked > 50);
}

#[test]
fn the_cross_site_host_shares_a_label_with_the_partner_site() {
    let s = scenario(CROSS_SITE);
    for os in [Os::Freebsd, Os::Linux] {
        let fix = search(&s, os, &wants_cross_site(), &[]).unwrap_or_else(|e| panic!("{os:?}: {e:?}"));
        assert!(meets(&fix.scenario, os, &wants_cross_site()), "{os:?}");
        // The global server must keep going over IPv4: the ULA cannot get the global label.
        let lines: Vec<String> = fix.edits.iter().map(Edit::line).collect();
        assert!(lines.iter().all(|l| !l.contains("fd00:11:22") || !l.ends_with(" 1")), "{os:?}: {lines:?}");
        assert!(
            lines.iter().any(|l| l.contains("2001:db8:33::/48") || l.contains("fd00:11:22::/")),
            "{os:?}: {lines:?}"
        );
    }
}

#[test]
fn a_source_no_policy_can_give_says_what_decides() {
    let s = scenario(&format!("{WIFIBOX}[[probes]]\nid = \"c4\"\nconnect = \"116.203.176.52\"\n"));
    let e =
        search(&s, Os::Linux, &[Want { probe: "c4".into(), answer: Answer::Source("10.0.0.9".parse().unwrap()) }], &[])
            .unwrap_err();
    assert!(e.reasons[0].1.contains("IPv4 sources are chosen by the route"), "{e:?}");
    let e = search(
        &s,
        Os::Linux,
        &[Want { probe: "resolve-server".into(), answer: order("116.203.176.52, 2a01:4f8:c2c:8101::1") }],
        &[],
    );
    assert!(e.as_ref().is_ok_and(|f| f.edits.is_empty()), "already so: no edit needed: {e:?}");
}
