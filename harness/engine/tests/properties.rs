//! Properties every profile must keep: the same input gives the same answer; a sort returns
//! exactly its input; and, where the real implementation's comparator is a strict total order
//! (IPv6-only destinations decided before the tie-break), the result does not depend on the
//! resolver's order. Ties, and glibc's and FreeBSD's family-conditional rule 9, are documented
//! exceptions and are not claimed here.

use addrsel_engine::trace::Trace;
use addrsel_engine::{Profile, predict};
use addrsel_model::parse_scenario;
use addrsel_model::results::Outcome;
use proptest::prelude::*;

const SOURCES: &[&str] = &[
    "fd00:11:22::10/64",
    "2001:db8:1::10/64",
    "2002:c633:640a::10/64",
    "2001:0:5ef5:79fd::10/64",
    "fe80::10/64",
    "2001:db8:1:0:8000::10/65",
];

const V6_DESTS: &[&str] = &[
    "::1",
    "fd00:11:22::53",
    "fd00:11:23::53",
    "fd99::53",
    "2a01:4f8:c2c:8101::1",
    "2001:db8:1::99",
    "2001:db8:1:0:8000::99",
    "2001:db8:2::1",
    "2002:cb00:7101::1",
    "2002:c633:640a::99",
    "2001:0:4137:9e76::1",
    "fec0::1",
    "2001:10::1",
];

const V4_DESTS: &[&str] = &["127.0.0.1", "10.0.0.77", "10.0.0.49", "116.203.176.52", "169.254.1.53", "192.168.7.7"];

fn scenario(sources: &[&str], dsts: &[&str]) -> addrsel_model::Scenario {
    let mut addrs: Vec<String> = sources.iter().map(|s| format!("\"{s}\"")).collect();
    addrs.push("\"10.0.0.50/24\"".into());
    let list: Vec<String> = dsts.iter().map(|d| format!("\"{d}\"")).collect();
    let text = format!(
        "name = \"p\"\n[[interfaces]]\nname = \"eth0\"\naddresses = [{}]\n\
         [[routes]]\nto = \"0.0.0.0/0\"\nvia = \"10.0.0.1\"\ndev = \"eth0\"\n[[routes]]\nto = \"::/0\"\nvia = \"fe80::1\"\ndev = \"eth0\"\n\
         [hosts]\n\"h.example\" = [{}]\n[[probes]]\nid = \"r\"\nresolve = \"h.example\"\n",
        addrs.join(", "),
        list.join(", ")
    );
    parse_scenario("p.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}")).scenario
}

fn profiles() -> Vec<Profile> {
    Profile::NAMES.iter().filter_map(|n| Profile::from_name(n)).collect()
}

fn sorted(p: &addrsel_engine::Prediction) -> (Vec<String>, bool) {
    let order = match &p.probes[0].result.outcome {
        Outcome::Resolve { order, .. } => order.iter().map(|a| a.to_string()).collect(),
        other => panic!("{other:?}"),
    };
    // Strictly decided: sorted at all, and no neighbours left to the tie-break.
    let strict = match &p.probes[0].trace {
        Trace::Resolve(t) => {
            t.unsorted_because.is_none()
                && t.neighbours.iter().all(|(_, _, d)| d.as_ref().is_some_and(|d| !d.rule.starts_with("Rule 10")))
        }
        _ => false,
    };
    (order, strict)
}

fn distinct(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(pool, 2..=max).prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn deterministic_and_a_permutation(
        sources in proptest::sample::subsequence(SOURCES, 0..=SOURCES.len()),
        v6 in distinct(V6_DESTS, 5),
        v4 in distinct(V4_DESTS, 3),
    ) {
        let mut dsts: Vec<&str> = v6.clone();
        dsts.extend(v4);
        let s = scenario(&sources, &dsts);
        for profile in profiles() {
            let a = predict(&s, &profile);
            let b = predict(&s, &profile);
            prop_assert_eq!(&a, &b);
            let (order, _) = sorted(&a);
            let mut got = order.clone();
            let mut want: Vec<String> = s.hosts[0].addresses.iter().map(|x| x.to_string()).collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want, "{} dropped or duplicated addresses", profile.name());
        }
    }

    #[test]
    fn strict_orders_do_not_depend_on_input_order(
        sources in proptest::sample::subsequence(SOURCES, 1..=SOURCES.len()),
        dsts in distinct(V6_DESTS, 6),
        seed in any::<u64>(),
    ) {
        let s = scenario(&sources, &dsts);
        let mut shuffled = dsts.clone();
        // A deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let t = scenario(&sources, &shuffled);
        for profile in profiles() {
            let (a, strict) = sorted(&predict(&s, &profile));
            if strict {
                let (b, _) = sorted(&predict(&t, &profile));
                prop_assert_eq!(a, b, "{}: the order depends on the input order", profile.name());
            }
        }
    }
}

/// The property above must not be vacuous: typical inputs are strictly decided.
#[test]
fn strict_case_is_common() {
    let s = scenario(
        &["fd00:11:22::10/64", "2001:db8:1::10/64"],
        &["2a01:4f8:c2c:8101::1", "fd00:11:22::53", "::1", "2002:cb00:7101::1"],
    );
    for profile in profiles() {
        let (_, strict) = sorted(&predict(&s, &profile));
        assert!(strict, "{}", profile.name());
    }
}
