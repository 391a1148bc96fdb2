//! VRFs on Linux: the corpus scenario `vrf-route-leak-source` under the kernel before and
//! after Linux 6.11's source fix for leaked routes, as Debian 11's 5.10.223 and Debian 12's
//! 6.1.192 answered it (their snapshots), and which kernels carry the fix.

use addrsel_engine::linux::vrf_source_fix;
use addrsel_engine::{LinuxProfile, Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;

fn answers(fixed: bool) -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/vrf-route-leak-source.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let s = parse_scenario(path, &text).unwrap_or_else(|e| panic!("{e}")).scenario;
    let p = predict(&s, &Profile::Linux(LinuxProfile { vrf_source_fix: fixed, ..LinuxProfile::default() }));
    p.probes
        .iter()
        .map(|r| {
            let answer = match &r.result.outcome {
                Outcome::Connect { source: Some(a), .. } => a.to_string(),
                Outcome::Connect { error: Some(e), .. } => e.clone(),
                other => panic!("{other:?}"),
            };
            (r.result.probe.clone(), answer)
        })
        .collect()
}

fn answer(list: &[(String, String)], probe: &str) -> String {
    list.iter().find(|(p, _)| p == probe).map(|(_, a)| a.clone()).unwrap_or_else(|| panic!("no probe {probe}"))
}

#[test]
fn a_leaked_route_takes_the_egress_address_before_the_fix_and_the_vrfs_after() {
    let (before, after) = (answers(false), answers(true));
    assert_eq!(answer(&before, "v6-through-the-leak"), "2001:db8:2::1");
    assert_eq!(answer(&before, "v4-through-the-leak"), "10.2.0.1");
    assert_eq!(answer(&after, "v6-through-the-leak"), "2001:db8:1::1");
    assert_eq!(answer(&after, "v4-through-the-leak"), "10.1.0.1");
    // Everything else is the same on both kernels.
    for probe in [
        "v6-inside-blue",
        "v4-inside-blue",
        "v6-blue-unreachable-default",
        "v4-blue-unreachable-default",
        "v6-default-vrf-to-blues-subnet",
        "v4-default-vrf-to-blues-subnet",
    ] {
        assert_eq!(answer(&before, probe), answer(&after, probe), "{probe}");
    }
    assert_eq!(answer(&after, "v4-inside-blue"), "10.1.0.1");
    // blue's table ends in `unreachable default`: no fall-through to main's ::/0.
    assert_eq!(answer(&after, "v6-blue-unreachable-default"), "EHOSTUNREACH");
    // Outside the VRF, blue's connected routes do not exist.
    assert_eq!(answer(&after, "v4-default-vrf-to-blues-subnet"), "ENETUNREACH");
    assert_eq!(answer(&after, "v6-default-vrf-to-blues-subnet"), "2001:db8:2::1");
}

#[test]
fn which_kernels_carry_the_fix() {
    for (release, version, fixed) in [
        // Seen on this project's targets (`uname -r`, `uname -v`).
        ("5.10.0-32-cloud-amd64", "#1 SMP Debian 5.10.223-1 (2024-08-10)", false),
        ("6.1.0-56-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)", true),
        ("6.18.44-fc-v1300", "#1 SMP PREEMPT_DYNAMIC @0", true),
        ("7.3-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 7.3~rc7-1~exp1", true),
        // Debian's changelog: 6.1.99 (bookworm-security) had none of it, 6.1.106 all.
        ("6.1.0-23-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.99-1 (2024-07-15)", false),
        ("6.1.0-25-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.106-3 (2024-08-26)", true),
        ("6.6.45", "", false),
        ("6.6.46", "", true),
        ("6.10.14", "", false),
        ("6.11.0", "", true),
        ("5.15.170", "", false),
    ] {
        assert_eq!(vrf_source_fix(release, Some(version)), fixed, "{release} / {version}");
    }
}
