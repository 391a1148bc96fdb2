//! Linux's kernel address-label table (`net/ipv6/addrlabel.c`), used only by IPv6 source
//! selection rule 6, and the `ip addrlabel list` text format.
//!
//! The kernel table differs from RFC 6724 (ULA label 5, Teredo 6, an ORCHID row), keeps
//! rows sorted by prefix length with interface-specific rows before wildcard ones, and
//! matches first-in-list with an address-type check for the IPv4-mapped, IPv4-compatible and
//! loopback rows.

use std::net::Ipv6Addr;

use crate::{Ipv6Net, LineIssue, c_style, net, prefix_matches};

/// Returned by the kernel when no row matches (`IPV6_ADDR_LABEL_DEFAULT`).
pub const LABEL_DEFAULT: u32 = 0xffff_ffff;

/// One `ip addrlabel` row as a user writes or lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LabelRow {
    pub prefix: Ipv6Net,
    pub label: u32,
    /// Interface the row is restricted to (`dev NAME`), if any.
    pub dev: Option<String>,
}

/// The address types the kernel distinguishes in label rows
/// (`IPV6_ADDR_MAPPED | IPV6_ADDR_COMPATv4 | IPV6_ADDR_LOOPBACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AddrType {
    Any,
    Mapped,
    CompatV4,
    Loopback,
}

/// `ipv6_addr_type(addr)` reduced to the three bits `ipv6_addr_label` keeps.
pub fn addr_type(addr: &Ipv6Addr) -> AddrType {
    let bits = addr.to_bits();
    if bits >> 32 == 0xffff {
        AddrType::Mapped
    } else if bits >> 32 == 0 {
        match bits as u32 {
            0 => AddrType::Any,
            1 => AddrType::Loopback,
            _ => AddrType::CompatV4,
        }
    } else {
        AddrType::Any
    }
}

/// A row as the kernel stores it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelRow {
    pub prefix: Ipv6Net,
    pub dev: Option<String>,
    /// `Any` means the row matches addresses of every type.
    pub addrtype: AddrType,
    pub label: u32,
}

/// Why the kernel refused a row (errno name and reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub errno: &'static str,
    pub reason: String,
}

/// The kernel's label list for one network namespace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelLabels {
    pub rows: Vec<KernelRow>,
}

impl Default for KernelLabels {
    /// The table every new network namespace starts with (`ip6addrlbl_init_table`, added
    /// in this order, which the insertion rule turns into the listed order).
    fn default() -> Self {
        let mut table = KernelLabels { rows: Vec::new() };
        for (addr, len, label) in [
            ("::", 0, 1),
            ("fc00::", 7, 5),
            ("fec0::", 10, 11),
            ("2002::", 16, 2),
            ("3ffe::", 16, 12),
            ("2001::", 32, 6),
            ("2001:10::", 28, 7),
            ("::ffff:0:0", 96, 4),
            ("::", 96, 3),
            ("::1", 128, 0),
        ] {
            table.add(&LabelRow { prefix: net(addr, len), label, dev: None }).expect("built-in rows are valid");
        }
        table
    }
}

impl KernelLabels {
    pub fn empty() -> Self {
        KernelLabels { rows: Vec::new() }
    }

    /// `ip addrlabel add` (`ip6addrlbl_alloc` + `__ip6addrlbl_add` without replace).
    pub fn add(&mut self, row: &LabelRow) -> Result<(), Refused> {
        if row.label == LABEL_DEFAULT {
            return Err(Refused { errno: "EINVAL", reason: "label 4294967295 is reserved".into() });
        }
        let len = row.prefix.prefix_len();
        let mut addrtype = addr_type(&row.prefix.addr());
        match addrtype {
            AddrType::Mapped if len > 96 => {
                return Err(Refused {
                    errno: "EINVAL",
                    reason: format!(
                        "the kernel refuses IPv4-mapped label prefixes longer than /96 ({})",
                        c_style(&row.prefix)
                    ),
                });
            }
            AddrType::Mapped if len < 96 => addrtype = AddrType::Any,
            AddrType::CompatV4 if len != 96 => addrtype = AddrType::Any,
            AddrType::Loopback if len != 128 => addrtype = AddrType::Any,
            _ => {}
        }
        let new = KernelRow { prefix: row.prefix.trunc(), dev: row.dev.clone(), addrtype, label: row.label };
        for (i, p) in self.rows.iter().enumerate() {
            let plen = p.prefix.prefix_len();
            if plen == len && p.dev == new.dev && p.prefix.addr() == new.prefix.addr() {
                return Err(Refused {
                    errno: "EEXIST",
                    reason: format!("a label row for {} already exists", c_style(&new.prefix)),
                });
            }
            if (plen == len && p.dev.is_none()) || plen < len {
                self.rows.insert(i, new);
                return Ok(());
            }
        }
        self.rows.push(new);
        Ok(())
    }

    /// `ip addrlabel del prefix P [dev D]`.
    pub fn delete(&mut self, row: &LabelRow) -> Result<(), Refused> {
        let prefix = row.prefix.trunc();
        let pos = self.rows.iter().position(|p| p.prefix == prefix && p.dev == row.dev);
        match pos {
            Some(i) => {
                self.rows.remove(i);
                Ok(())
            }
            None => Err(Refused { errno: "ESRCH", reason: format!("no label row for {}", c_style(&prefix)) }),
        }
    }

    /// `ipv6_addr_label(net, addr, type, ifindex)`: first matching row, or
    /// [`LABEL_DEFAULT`].
    pub fn lookup(&self, addr: &Ipv6Addr, dev: Option<&str>) -> u32 {
        self.matching_row(addr, dev).map_or(LABEL_DEFAULT, |r| r.label)
    }

    pub fn matching_row(&self, addr: &Ipv6Addr, dev: Option<&str>) -> Option<&KernelRow> {
        let ty = addr_type(addr);
        self.rows.iter().find(|p| {
            p.dev.as_deref().is_none_or(|d| Some(d) == dev)
                && (p.addrtype == AddrType::Any || p.addrtype == ty)
                && prefix_matches(&p.prefix, addr)
        })
    }

    /// The rows as `ip addrlabel list` reports them.
    pub fn list(&self) -> Vec<LabelRow> {
        self.rows.iter().map(|r| LabelRow { prefix: r.prefix, label: r.label, dev: r.dev.clone() }).collect()
    }
}

/// Prints rows exactly as iproute2's `ip addrlabel list` does (trailing space included).
pub fn print_list(rows: &[LabelRow]) -> String {
    let mut out = String::new();
    for row in rows {
        out.push_str(&format!("prefix {} ", c_style(&row.prefix)));
        if let Some(dev) = &row.dev {
            out.push_str(&format!("dev {dev} "));
        }
        out.push_str(&format!("label {} \n", row.label));
    }
    out
}

/// Parses `ip addrlabel list` output.
pub fn parse_list(text: &str) -> Result<Vec<LabelRow>, LineIssue> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let issue = |message: String| LineIssue { line: i + 1, message };
        let mut words = line.split_whitespace();
        let mut prefix = None;
        let mut label = None;
        let mut dev = None;
        let Some(first) = words.next() else { continue };
        let mut word = Some(first);
        while let Some(key) = word {
            let value = words.next().ok_or_else(|| issue(format!("`{key}` needs a value")))?;
            match key {
                "prefix" => {
                    prefix = Some(
                        value
                            .parse::<Ipv6Net>()
                            .map_err(|_| issue(format!("`{value}` is not an IPv6 prefix (expected ADDR/LEN)")))?,
                    )
                }
                "label" => {
                    label = Some(
                        value
                            .parse::<u32>()
                            .map_err(|_| issue(format!("`{value}` is not a label (expected 0 to 4294967294)")))?,
                    )
                }
                "dev" => dev = Some(value.to_string()),
                other => {
                    return Err(issue(format!("unexpected `{other}` (expected prefix, dev or label)")));
                }
            }
            word = words.next();
        }
        match (prefix, label) {
            (Some(prefix), Some(label)) => rows.push(LabelRow { prefix, label, dev }),
            _ => return Err(issue("a row needs both `prefix` and `label`".into())),
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// `ip addrlabel list` on a fresh namespace of Linux 6.18 (captured on the build machine).
    const FRESH_LIST: &str = "prefix ::1/128 label 0 \nprefix ::/96 label 3 \nprefix ::ffff:0.0.0.0/96 label 4 \nprefix 2001::/32 label 6 \nprefix 2001:10::/28 label 7 \nprefix 3ffe::/16 label 12 \nprefix 2002::/16 label 2 \nprefix fec0::/10 label 11 \nprefix fc00::/7 label 5 \nprefix ::/0 label 1 \n";

    #[test]
    fn default_table_lists_like_the_kernel() {
        assert_eq!(print_list(&KernelLabels::default().list()), FRESH_LIST);
        assert_eq!(parse_list(FRESH_LIST).unwrap(), KernelLabels::default().list());
    }

    #[test]
    fn default_labels() {
        let t = KernelLabels::default();
        assert_eq!(t.lookup(&v6("::1"), None), 0);
        assert_eq!(t.lookup(&v6("fd00:11:22::aa"), None), 5);
        assert_eq!(t.lookup(&v6("2a01:4f8:c2c:8101::1"), None), 1);
        assert_eq!(t.lookup(&v6("2001::1"), None), 6);
        assert_eq!(t.lookup(&v6("2001:10::1"), None), 7);
        assert_eq!(t.lookup(&v6("::ffff:10.0.0.1"), None), 4);
        assert_eq!(t.lookup(&v6("::10.0.0.1"), None), 3);
        assert_eq!(t.lookup(&v6("fe80::1"), None), 1);
    }

    #[test]
    fn user_row_goes_before_shorter_and_equal_wildcard_rows() {
        let mut t = KernelLabels::default();
        t.add(&LabelRow { prefix: "fd00:11:22::/48".parse().unwrap(), label: 1, dev: None }).unwrap();
        assert_eq!(t.lookup(&v6("fd00:11:22::aa"), None), 1);
        assert_eq!(t.lookup(&v6("fd00:11:23::aa"), None), 5);
        let err = t.add(&LabelRow { prefix: "fd00:11:22::/48".parse().unwrap(), label: 9, dev: None });
        assert_eq!(err.unwrap_err().errno, "EEXIST");
    }

    #[test]
    fn interface_rows_apply_only_on_that_interface_and_precede_wildcards() {
        let mut t = KernelLabels::default();
        t.add(&LabelRow { prefix: "fc00::/7".parse().unwrap(), label: 99, dev: Some("wlan0".into()) }).unwrap();
        assert_eq!(t.lookup(&v6("fd00::1"), Some("wlan0")), 99);
        assert_eq!(t.lookup(&v6("fd00::1"), Some("eth0")), 5);
        assert_eq!(t.lookup(&v6("fd00::1"), None), 5);
    }

    #[test]
    fn mapped_rows_longer_than_96_are_refused() {
        let mut t = KernelLabels::default();
        let r = t.add(&LabelRow { prefix: "::ffff:10.0.0.0/104".parse().unwrap(), label: 3, dev: None });
        assert_eq!(r.unwrap_err().errno, "EINVAL");
    }

    #[test]
    fn empty_table_gives_the_default_label_to_everything() {
        let t = KernelLabels::empty();
        assert_eq!(t.lookup(&v6("fd00::1"), None), LABEL_DEFAULT);
    }

    #[test]
    fn parse_list_reports_bad_lines() {
        let err = parse_list("prefix ::1/128 label 0\nprefix fd00::/300 label 1\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse_list("prefix fd00::/8 dev wlan0 label 7 \n").unwrap()[0].dev.is_some());
    }
}
