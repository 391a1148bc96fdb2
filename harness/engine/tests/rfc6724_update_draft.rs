//! The draft-ietf-6man-rfc6724-update profile against the draft's own worked example
//! (section "Examples" of the authors' text, July 2025) and its table: known-local ULA
//! pairs first, other ULAs below GUA, IPv4 below ULA, IPv4 pairs still over ULA->GUA.

use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

fn order(addresses: &str, dests: &[&str]) -> Vec<String> {
    let list: Vec<String> = dests.iter().map(|d| format!("\"{d}\"")).collect();
    let text = format!(
        "name = \"d\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [{addresses}]\n[[routes]]\nto = \"::/0\"\nvia = \"fe80::1\"\ndev = \"eth0\"\n[[routes]]\nto = \"0.0.0.0/0\"\ndev = \"eth0\"\n[hosts]\n\"x.example\" = [{}]\n[[probes]]\nid = \"r\"\nresolve = \"x.example\"\n",
        list.join(", ")
    );
    let s = parse_scenario("d.toml", &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    match &predict(&s, &Profile::Rfc6724Update).probes[0].result.outcome {
        Outcome::Resolve { order, .. } => order.iter().map(|a| a.to_string()).collect(),
        other => panic!("{other:?}"),
    }
}

const HOST_A: &str = "\"fd00:1:1:1::1/64\", \"2001:db8:1:1::1/64\", \"192.0.2.1/24\"";

#[test]
fn known_local_ula_pairs_go_first() {
    // B's ULA is in A's /48 (known-local): 45 > 40, labels 14 = 14.
    assert_eq!(order(HOST_A, &["2001:db8:1:2::1", "fd00:1:1:2::1"]), ["fd00:1:1:2::1", "2001:db8:1:2::1"]);
}

#[test]
fn other_ulas_lose_to_gua() {
    // C's ULA is not known-local: label 13 does not match A's 14, the GUA pair matches 1 = 1.
    assert_eq!(order(HOST_A, &["fd00:3:3::1", "2001:db8:2:1::1"]), ["2001:db8:2:1::1", "fd00:3:3::1"]);
}

#[test]
fn ula_above_ipv4_and_ipv4_pairs_over_ula_to_gua() {
    // A ULA-only host: to a global name, IPv4 -> IPv4 (matching labels) still wins over
    // ULA -> GUA; to a known-local peer, its ULA (45) wins over IPv4 (20).
    let ula_only = "\"fd00:1:1:1::1/64\", \"192.0.2.1/24\"";
    assert_eq!(order(ula_only, &["2001:db8:9::1", "198.51.100.1"]), ["198.51.100.1", "2001:db8:9::1"]);
    assert_eq!(order(ula_only, &["198.51.100.1", "fd00:1:1:9::1"]), ["fd00:1:1:9::1", "198.51.100.1"]);
}

#[test]
fn the_profile_says_it_is_a_draft() {
    assert!(Profile::Rfc6724Update.describe().starts_with("DRAFT draft-ietf-6man-rfc6724-update"));
    assert_eq!(Profile::Rfc6724Update.target(), "engine:rfc6724-update");
}
