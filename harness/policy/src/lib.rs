//! Address-selection policy tables and the file formats real systems keep them in.
//!
//! Each format module parses exactly what the real tool accepts (and reports what it
//! rejects or silently ignores, with the line), and prints a table back in that format:
//! - [`gai_conf`]: glibc's `/etc/gai.conf` (label, precedence, scopev4, reload),
//! - [`ip6addrctl`]: FreeBSD's `/etc/ip6addrctl.conf` and the output of `ip6addrctl show`,
//! - [`addrlabel`]: Linux's kernel label table and the output of `ip addrlabel list`.
//!
//! Pure: no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ipnet::Ipv6Net;

pub mod addrlabel;
pub mod gai_conf;
pub mod ip6addrctl;

/// One row of an RFC 6724 policy table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyRow {
    pub prefix: Ipv6Net,
    pub precedence: i32,
    pub label: i32,
}

impl PolicyRow {
    pub const fn new(prefix: Ipv6Net, precedence: i32, label: i32) -> Self {
        Self { prefix, precedence, label }
    }
}

/// A policy table in the order it was written or installed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyTable {
    pub rows: Vec<PolicyRow>,
}

impl PolicyTable {
    pub fn new(rows: Vec<PolicyRow>) -> Self {
        Self { rows }
    }

    /// RFC 6724 section 2.1, in the RFC's row order (also FreeBSD's rc.d `ipv6_prefer` order).
    pub fn rfc6724() -> Self {
        Self::from_static(&[
            ("::1", 128, 50, 0),
            ("::", 0, 40, 1),
            ("::ffff:0:0", 96, 35, 4),
            ("2002::", 16, 30, 2),
            ("2001::", 32, 5, 5),
            ("fc00::", 7, 3, 13),
            ("::", 96, 1, 3),
            ("fec0::", 10, 1, 11),
            ("3ffe::", 16, 1, 12),
        ])
    }

    /// draft-ietf-6man-rfc6724-update's default table (the authors' text of July 2025, after
    /// revision -20): ULA 30 above IPv4 20, 6to4 down to 5. The known-local ULA rows it
    /// inserts (precedence 45, label 14) depend on the host: see [`Self::with_known_local`].
    pub fn rfc6724_update_draft() -> Self {
        Self::from_static(&[
            ("::1", 128, 50, 0),
            ("::", 0, 40, 1),
            ("fc00::", 7, 30, 13),
            ("::ffff:0:0", 96, 20, 4),
            ("2002::", 16, 5, 2),
            ("2001::", 32, 5, 5),
            ("::", 96, 1, 3),
            ("fec0::", 10, 1, 11),
            ("3ffe::", 16, 1, 12),
        ])
    }

    /// The table with the draft's known-local rows: the /48 of every fd00::/8 address the
    /// host has, at precedence 45 and label 14 (rule 5 of its list; RAs are not modelled).
    pub fn with_known_local(mut self, addrs: impl IntoIterator<Item = Ipv6Addr>) -> Self {
        for a in addrs {
            if a.octets()[0] != 0xfd {
                continue;
            }
            let prefix = Ipv6Net::new(a, 48).expect("/48").trunc();
            if !self.rows.iter().any(|r| r.prefix == prefix) {
                self.rows.push(PolicyRow { prefix, precedence: 45, label: 14 });
            }
        }
        self
    }

    /// FreeBSD's rc.d `ipv4_prefer` table: RFC 6724 with IPv4-mapped raised to 100.
    pub fn freebsd_ipv4_prefer() -> Self {
        let mut table = Self::rfc6724();
        for row in &mut table.rows {
            if row.prefix.prefix_len() == 96 && row.label == 4 {
                row.precedence = 100;
            }
        }
        table
    }

    fn from_static(rows: &[(&str, u8, i32, i32)]) -> Self {
        Self {
            rows: rows
                .iter()
                .map(|&(addr, len, precedence, label)| PolicyRow::new(net(addr, len), precedence, label))
                .collect(),
        }
    }

    /// Longest-prefix match; on equal length the earlier row wins (FreeBSD kernel and libc).
    pub fn longest_match(&self, addr: &Ipv6Addr) -> Option<&PolicyRow> {
        let mut best: Option<&PolicyRow> = None;
        for row in &self.rows {
            if prefix_matches(&row.prefix, addr) && best.is_none_or(|b| row.prefix.prefix_len() > b.prefix.prefix_len())
            {
                best = Some(row);
            }
        }
        best
    }
}

/// Builds a prefix from a literal known to be valid.
pub(crate) fn net(addr: &str, len: u8) -> Ipv6Net {
    Ipv6Net::new(addr.parse().expect("static address"), len).expect("static prefix length")
}

/// Whether the first `prefix_len` bits of `addr` equal those of the prefix address.
/// Host bits of the prefix are ignored, as every implementation does when comparing.
pub fn prefix_matches(prefix: &Ipv6Net, addr: &Ipv6Addr) -> bool {
    common_prefix_len(&prefix.addr(), addr) >= u32::from(prefix.prefix_len())
}

/// Number of leading bits two IPv6 addresses share (0..=128).
pub fn common_prefix_len(a: &Ipv6Addr, b: &Ipv6Addr) -> u32 {
    let x = a.to_bits() ^ b.to_bits();
    x.leading_zeros()
}

/// IPv4 addresses are looked up in policy tables as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
pub fn mapped(addr: &IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => *v6,
    }
}

/// Whether an IPv6 address is IPv4-mapped (`::ffff:0:0/96`).
pub fn is_v4_mapped(addr: &Ipv6Addr) -> bool {
    addr.to_ipv4_mapped().is_some()
}

/// The IPv4 address inside an IPv4-mapped one.
pub fn unmapped(addr: &Ipv6Addr) -> Option<Ipv4Addr> {
    addr.to_ipv4_mapped()
}

/// A problem found in one line of a policy file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineIssue {
    /// 1-based line number within the policy text.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The formats a policy table can be read from and printed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// glibc `/etc/gai.conf` (`label` and `precedence` lines).
    GaiConf,
    /// FreeBSD `/etc/ip6addrctl.conf`.
    Ip6addrctlConf,
    /// FreeBSD `ip6addrctl show` output.
    Ip6addrctlShow,
    /// Linux `ip addrlabel list` output (labels only).
    IpAddrlabel,
}

/// Prints a table in the given format.
pub fn print(table: &PolicyTable, format: Format) -> String {
    match format {
        Format::GaiConf => gai_conf::print_table(table),
        Format::Ip6addrctlConf => ip6addrctl::print_conf(table),
        Format::Ip6addrctlShow => ip6addrctl::print_show(table),
        Format::IpAddrlabel => addrlabel::print_list(
            &table
                .rows
                .iter()
                .map(|r| addrlabel::LabelRow { prefix: r.prefix, label: r.label as u32, dev: None })
                .collect::<Vec<_>>(),
        ),
    }
}

/// Formats an IPv6 prefix the way C tools using `inet_ntop`/`getnameinfo` print it:
/// IPv4-mapped addresses in dotted form (`::ffff:0.0.0.0/96`).
pub fn c_style(prefix: &Ipv6Net) -> String {
    format!("{}/{}", c_style_addr(&prefix.addr()), prefix.prefix_len())
}

/// `inet_ntop(AF_INET6)` text of an address (Rust's Display differs only for IPv4-mapped
/// and IPv4-compatible forms, which C prints with a dotted tail).
pub fn c_style_addr(addr: &Ipv6Addr) -> String {
    let seg = addr.segments();
    if seg[..5] == [0; 5] && seg[5] == 0xffff {
        let v4 = Ipv4Addr::from_bits((u32::from(seg[6]) << 16) | u32::from(seg[7]));
        return format!("::ffff:{v4}");
    }
    // inet_ntop prints IPv4-compatible addresses (six zero words, then non-zero) dotted.
    if seg[..6] == [0; 6] && seg[6] != 0 {
        let v4 = Ipv4Addr::from_bits((u32::from(seg[6]) << 16) | u32::from(seg[7]));
        return format!("::{v4}");
    }
    addr.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_len_counts_leading_equal_bits() {
        let a: Ipv6Addr = "fe80::1".parse().unwrap();
        let b: Ipv6Addr = "fe80::2".parse().unwrap();
        assert_eq!(common_prefix_len(&a, &b), 126);
        assert_eq!(common_prefix_len(&a, &a), 128);
        let c: Ipv6Addr = "fe81::1".parse().unwrap();
        assert_eq!(common_prefix_len(&c, &b), 15);
    }

    #[test]
    fn rfc_table_longest_match() {
        let t = PolicyTable::rfc6724();
        let look = |s: &str| {
            let a: IpAddr = s.parse().unwrap();
            let r = t.longest_match(&mapped(&a)).unwrap();
            (r.precedence, r.label)
        };
        assert_eq!(look("::1"), (50, 0));
        assert_eq!(look("127.0.0.1"), (35, 4));
        assert_eq!(look("2002::ab12"), (30, 2));
        assert_eq!(look("2001::1"), (5, 5));
        assert_eq!(look("2001:db8::1"), (40, 1));
        assert_eq!(look("fd00::1"), (3, 13));
        assert_eq!(look("fec0::1"), (1, 11));
        assert_eq!(look("::1.2.3.4"), (1, 3));
        assert_eq!(look("2601:645:8002:a500:986f:1db8:c836:bd65"), (40, 1));
    }

    #[test]
    fn c_style_prints_mapped_dotted() {
        assert_eq!(c_style(&net("::ffff:0:0", 96)), "::ffff:0.0.0.0/96");
        assert_eq!(c_style(&net("::", 96)), "::/96");
        assert_eq!(c_style(&net("::1", 128)), "::1/128");
        assert_eq!(c_style(&net("2002::", 16)), "2002::/16");
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary text, and text built from the formats' own tokens, never panics a parser.
        #[test]
        fn parsers_never_panic(text in "\\PC{0,300}") {
            for parser in [crate::gai_conf::GlibcParser::Before2_41, crate::gai_conf::GlibcParser::From2_41] {
                let conf = crate::gai_conf::GaiConf::parse(&text, parser);
                let _ = (conf.label_table(), conf.precedence_table(), conf.scope_table());
            }
            let _ = crate::ip6addrctl::parse_conf(&text);
            let _ = crate::ip6addrctl::parse_show(&text);
            let _ = crate::addrlabel::parse_list(&text);
        }

        #[test]
        fn parsers_never_panic_on_format_like_text(
            lines in proptest::collection::vec(
                "(label|precedence|scopev4|reload|prefix|dev|Prefix)?[ \t]*[0-9a-fA-F:./%+-]{0,20}[ \t]*[0-9a-z+-]{0,6}[ \t#]*[0-9a-z]{0,4}",
                0..12,
            )
        ) {
            let text = lines.join("\n");
            for parser in [crate::gai_conf::GlibcParser::Before2_41, crate::gai_conf::GlibcParser::From2_41] {
                let conf = crate::gai_conf::GaiConf::parse(&text, parser);
                let _ = (conf.label_table(), conf.precedence_table(), conf.scope_table());
            }
            if let Ok(t) = crate::ip6addrctl::parse_conf(&text) {
                let mut k = crate::PolicyTable::default();
                let _ = crate::ip6addrctl::install(&mut k, &t);
                let _ = crate::ip6addrctl::print_show(&k);
            }
            let _ = crate::ip6addrctl::parse_show(&text);
            if let Ok(rows) = crate::addrlabel::parse_list(&text) {
                let mut k = crate::addrlabel::KernelLabels::default();
                for r in &rows {
                    let _ = k.add(r);
                }
            }
        }
    }
}
