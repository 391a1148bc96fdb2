//! RFC 6724's rules by number, in the RFC's words: every profile names a decision with
//! these, so explanations of different systems read alike. How an implementation's rule
//! differs (a cap, a family limit, its own numbering) is said in the decision's detail.

/// Section 5, source address selection.
const SOURCE: [&str; 8] = [
    "Rule 1 (prefer same address)",
    "Rule 2 (prefer appropriate scope)",
    "Rule 3 (avoid deprecated addresses)",
    "Rule 4 (prefer home addresses)",
    "Rule 5 (prefer outgoing interface)",
    "Rule 6 (prefer matching label)",
    "Rule 7 (prefer temporary addresses)",
    "Rule 8 (use longest matching prefix)",
];

/// Section 6, destination address selection.
const DESTINATION: [&str; 10] = [
    "Rule 1 (avoid unusable destinations)",
    "Rule 2 (prefer matching scope)",
    "Rule 3 (avoid deprecated addresses)",
    "Rule 4 (prefer home addresses)",
    "Rule 5 (prefer matching label)",
    "Rule 6 (prefer higher precedence)",
    "Rule 7 (prefer native transport)",
    "Rule 8 (prefer smaller scope)",
    "Rule 9 (use longest matching prefix)",
    "Rule 10 (otherwise, leave the order unchanged)",
];

/// Source rule `n` (1 to 8).
pub fn source(n: usize) -> &'static str {
    SOURCE[n - 1]
}

/// Destination rule `n` (1 to 10).
pub fn destination(n: usize) -> &'static str {
    DESTINATION[n - 1]
}

/// Rules no RFC numbers: FreeBSD's in6_selectsrc rule 10, and Linux's ORCHID check between
/// its rules 7 and 8.
pub const FREEBSD_PREFER_SOURCE: &str = "FreeBSD rule 10 (prefer addresses marked prefer_source)";
pub const LINUX_ORCHID: &str = "Linux rule 8- (ORCHID addresses only for ORCHID destinations)";

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_match_names() {
        for n in 1..=8 {
            assert!(super::source(n).starts_with(&format!("Rule {n} (")));
        }
        for n in 1..=10 {
            assert!(super::destination(n).starts_with(&format!("Rule {n} (")));
        }
    }
}
