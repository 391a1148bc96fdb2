//! glibc's own sort tests (posix/tst-rfc3484*.c, nss/ since 2.39) as scenarios for the
//! `linux` profile. glibc injects the sources; here the kernel model picks them from a
//! one-interface host, which yields the same sources.

use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

fn order(addresses: &str, dsts: &[&str], gai_conf: &str) -> Vec<String> {
    let list: Vec<String> = dsts.iter().map(|d| format!("\"{d}\"")).collect();
    let text = format!(
        "name = \"t\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [{addresses}]\n\
         [[routes]]\nto = \"0.0.0.0/0\"\ndev = \"eth0\"\n[[routes]]\nto = \"::/0\"\ndev = \"eth0\"\n\
         [hosts]\n\"h.example\" = [{}]\n[policy.linux]\ngai_conf = \"\"\"\n{gai_conf}\"\"\"\n\
         [[probes]]\nid = \"r\"\nresolve = \"h.example\"\n",
        list.join(", ")
    );
    let s = parse_scenario("t.toml", &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    match &predict(&s, &Profile::from_name("linux").unwrap()).probes[0].result.outcome {
        Outcome::Resolve { order, .. } => order.iter().map(|a| a.to_string()).collect(),
        other => panic!("{other:?}"),
    }
}

/// tst-rfc3484.c: one source, 192.168.95.25 with an 8-bit netmask; rule 9 within the subnet.
#[test]
fn tst_rfc3484() {
    let dsts = [
        "10.168.95.25",
        "172.16.95.25",
        "192.0.2.25",
        "192.168.109.29",
        "192.168.93.3",
        "192.168.44.61",
        "192.168.96.2",
        "192.168.2.243",
        "192.168.8.16",
        "192.168.94.2",
    ];
    let expected: Vec<String> = [9, 4, 3, 6, 5, 7, 8, 2, 0, 1].iter().map(|&i| dsts[i].to_string()).collect();
    // An IPv6 address so that glibc learns the source's prefix length from the kernel.
    assert_eq!(order("\"192.168.95.25/8\", \"fd00::1/64\"", &dsts, ""), expected);
}

/// tst-rfc3484-2.c: an IPv4 multicast destination beats an IPv6 one whose source is
/// site-local (rule 2), in both input orders.
#[test]
fn tst_rfc3484_2() {
    let srcs = "\"192.168.95.25/24\", \"fec0:1234:100:0:100:0:100:0/64\"";
    let v4 = "224.168.95.25";
    let v6 = "7d1:1:100:0:100:0:100:0";
    assert_eq!(order(srcs, &[v4, v6], ""), [v4, v6]);
    assert_eq!(order(srcs, &[v6, v4], ""), [v4, v6]);
}

/// tst-rfc3484-3.c: custom IPv4 scopes making 10/8 site-local: the only destination whose
/// scope matches the source's goes first, the rest keep their order.
#[test]
fn tst_rfc3484_3() {
    let dsts = [
        "160.168.109.29",
        "160.168.93.3",
        "160.168.44.61",
        "160.168.96.2",
        "160.168.2.243",
        "160.168.8.16",
        "160.168.94.2",
        "172.22.35.17",
        "10.50.69.114",
    ];
    let scopes = "scopev4 ::ffff:169.254.0.0/112 2\nscopev4 ::ffff:127.0.0.0/104 2\nscopev4 ::ffff:10.0.0.0/104 5\nscopev4 ::ffff:192.168.0.0/112 5\nscopev4 ::ffff:0.0.0.0/96 14\n";
    let expected: Vec<String> = [8, 0, 1, 2, 3, 4, 5, 6, 7].iter().map(|&i| dsts[i].to_string()).collect();
    assert_eq!(order("\"10.168.95.25/8\", \"fd00::1/64\"", &dsts, scopes), expected);
}

/// The gai.conf replacement rule end to end: one unrelated label line makes the ULA source
/// and the global destination both label 1, and IPv6 wins on precedence.
#[test]
fn one_label_line_replaces_the_default_table() {
    let srcs = "\"10.0.0.50/24\", \"fd00:11:22::aa/64\"";
    let dsts = ["2a01:4f8:c2c:8101::1", "116.203.176.52"];
    assert_eq!(order(srcs, &dsts, ""), ["116.203.176.52", "2a01:4f8:c2c:8101::1"]);
    assert_eq!(order(srcs, &dsts, "label 2001:db8:99::/48 99\n"), dsts);
}
