//! FreeBSD's `ip6addrctl(8)`: the `/etc/ip6addrctl.conf` format read by
//! `ip6addrctl install` (`make_policy_fromfile` in `usr.sbin/ip6addrctl/ip6addrctl.c`), the
//! kernel's checks when the rows are installed (`in6_src_ioctl`), and the `show` output.
//!
//! Unlike glibc, `install` is all-or-nothing at parse time: one bad line and the tool exits
//! with `parse failed at line N` before installing anything. Since rc.d flushes first, a
//! bad file leaves the kernel table empty, which turns off libc's destination sorting and
//! kernel source rule 6.

use crate::{Ipv6Net, LineIssue, PolicyRow, PolicyTable, c_style, prefix_matches};

/// Parses an ip6addrctl.conf text. On error, the line number and what `ip6addrctl` prints.
pub fn parse_conf(text: &str) -> Result<PolicyTable, LineIssue> {
    let mut rows = Vec::new();
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line = index + 1;
        let fail = |detail: String| LineIssue {
            line,
            message: format!(
                "{detail}; `ip6addrctl install` stops with \"parse failed at line {line}\" and installs nothing"
            ),
        };
        let bytes = raw.as_bytes();
        let is_blank = |b: u8| b == b' ' || b == b'\t';
        let mut i = bytes.iter().position(|&b| !is_blank(b)).unwrap_or(bytes.len());
        // Blank and comment lines: only when the first non-blank character is '\n' or '#'.
        if matches!(bytes.get(i), Some(b'\n' | b'#')) {
            continue;
        }
        // The tool's SKIP_WORD stops only at a blank: a prefix or precedence field that
        // ends the line makes it read past the line (undefined behaviour), so we refuse it.
        let word = |i: &mut usize, what: &str| -> Result<(usize, usize), LineIssue> {
            let start = *i;
            while *i < bytes.len() && !is_blank(bytes[*i]) {
                if bytes[*i] == b'\n' {
                    break;
                }
                *i += 1;
            }
            if *i >= bytes.len() || bytes[*i] == b'\n' {
                return Err(fail(format!(
                    "expected `PREFIX/LEN PRECEDENCE LABEL`, but the line ends after the {what} (the tool reads past the end of such a line)"
                )));
            }
            let end = *i;
            while *i < bytes.len() && is_blank(bytes[*i]) {
                *i += 1;
            }
            Ok((start, end))
        };
        let what = if i >= bytes.len() { "start" } else { "prefix" };
        let (a, b) = word(&mut i, what)?;
        let prefix_text = &raw[a..b];
        let (p, _) = word(&mut i, "precedence")?;
        let precedence = atoi(&raw[p..]);
        let label = atoi(&raw[i..]);
        let Some((addr_text, len_text)) = prefix_text.split_once('/') else {
            return Err(fail(format!("`{prefix_text}` has no /LEN")));
        };
        // getaddrinfo(AF_INET6, AI_NUMERICHOST) accepts a %zone suffix; the policy ignores it.
        let addr_only = addr_text.split_once('%').map_or(addr_text, |(a, _)| a);
        let addr: std::net::Ipv6Addr = addr_only
            .parse()
            .map_err(|_| fail(format!("`{addr_text}` is not a numeric IPv6 address (getaddrinfo failed)")))?;
        let len = atoi(len_text);
        if !(0..=128).contains(&len) {
            return Err(fail(format!("invalid prefix length: {len}")));
        }
        rows.push(PolicyRow { prefix: Ipv6Net::new(addr, len as u8).expect("length checked"), precedence, label });
    }
    Ok(PolicyTable { rows })
}

/// C `atoi`: leading blanks, optional sign, digits up to the first non-digit; none is 0.
fn atoi(s: &str) -> i32 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut value: i32 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        value = value.wrapping_mul(10).wrapping_add(i32::from(b - b'0'));
    }
    if negative { value.wrapping_neg() } else { value }
}

/// A row the kernel refused during `install` (the tool warns and goes on).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub row: PolicyRow,
    pub errno: &'static str,
    pub reason: String,
}

/// Installs rows one `SIOCAADDRCTL_POLICY` ioctl at a time into `table`, as `ip6addrctl
/// install` does: the kernel masks the address, refuses label -1 (`EINVAL`) and duplicates
/// (`EEXIST`); the tool only warns about those and continues.
pub fn install(table: &mut PolicyTable, rows: &PolicyTable) -> Vec<Rejected> {
    let mut rejected = Vec::new();
    for row in &rows.rows {
        let masked = PolicyRow { prefix: row.prefix.trunc(), ..*row };
        if row.label == -1 {
            rejected.push(Rejected {
                row: masked,
                errno: "EINVAL",
                reason: "label -1 means \"not applicable\" and is refused by the kernel".into(),
            });
        } else if table.rows.iter().any(|r| r.prefix == masked.prefix) {
            rejected.push(Rejected {
                row: masked,
                errno: "EEXIST",
                reason: format!("{} is already in the table; the kernel does not override", c_style(&masked.prefix)),
            });
        } else {
            table.rows.push(masked);
        }
    }
    rejected
}

/// Prints a table as an ip6addrctl.conf file.
pub fn print_conf(table: &PolicyTable) -> String {
    let mut out = String::new();
    for row in &table.rows {
        out.push_str(&format!("{:<30} {:>5} {:>5}\n", c_style(&row.prefix), row.precedence, row.label));
    }
    out
}

/// What `ip6addrctl show` prints for an empty table.
pub const SHOW_EMPTY: &str = "no source-address-selection policy is installed\n";

/// Prints a table as `ip6addrctl show` does (the `Use` counters are zero).
pub fn print_show(table: &PolicyTable) -> String {
    if table.rows.is_empty() {
        return SHOW_EMPTY.to_string();
    }
    let mut out = format!("{:<30} {:>5} {:>5} {:>8}\n", "Prefix", "Prec", "Label", "Use");
    for row in &table.rows {
        out.push_str(&format!("{:<30} {:>5} {:>5} {:>8}\n", c_style(&row.prefix), row.precedence, row.label, 0));
    }
    out
}

/// Parses `ip6addrctl show` output (the header line and the Use column are skipped).
pub fn parse_show(text: &str) -> Result<PolicyTable, LineIssue> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let issue = |message: String| LineIssue { line: i + 1, message };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || words[0] == "Prefix" || line.trim_end() == SHOW_EMPTY.trim_end() {
            continue;
        }
        if words.len() != 4 {
            return Err(issue(format!("expected `PREFIX PREC LABEL USE`, found {} fields", words.len())));
        }
        let prefix: Ipv6Net = words[0].parse().map_err(|_| issue(format!("`{}` is not an IPv6 prefix", words[0])))?;
        let number = |w: &str| w.parse::<i32>().map_err(|_| issue(format!("`{w}` is not a number")));
        rows.push(PolicyRow { prefix, precedence: number(words[1])?, label: number(words[2])? });
    }
    Ok(PolicyTable { rows })
}

/// The kernel's `match_addrsel_policy`: the longest matching row, earlier rows winning
/// ties; `None` when nothing matches (the kernel then uses label -1, precedence 0).
pub fn lookup<'a>(table: &'a PolicyTable, addr: &std::net::Ipv6Addr) -> Option<&'a PolicyRow> {
    let mut best: Option<&PolicyRow> = None;
    for row in &table.rows {
        if prefix_matches(&row.prefix, addr) && best.is_none_or(|b| row.prefix.prefix_len() > b.prefix.prefix_len()) {
            best = Some(row);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real `ip6addrctl show` output quoted in FreeBSD PR #1375 (Use counts changed to 0).
    const SHOW_RFC: &str = "Prefix                          Prec Label      Use
::1/128                           50     0        0
::/0                              40     1        0
::ffff:0.0.0.0/96                 35     4        0
2002::/16                         30     2        0
2001::/32                          5     5        0
fc00::/7                           3    13        0
::/96                              1     3        0
fec0::/10                          1    11        0
3ffe::/16                          1    12        0
";

    #[test]
    fn show_output_matches_freebsd_byte_for_byte() {
        assert_eq!(print_show(&PolicyTable::rfc6724()), SHOW_RFC);
        assert_eq!(parse_show(SHOW_RFC).unwrap(), PolicyTable::rfc6724());
        assert_eq!(print_show(&PolicyTable::default()), SHOW_EMPTY);
    }

    #[test]
    fn conf_round_trip() {
        let t = PolicyTable::rfc6724();
        assert_eq!(parse_conf(&print_conf(&t)).unwrap(), t);
    }

    #[test]
    fn wifibox_policy_parses() {
        let t = parse_conf("fd00::/64 37 1\n::1/128 50 0\n::/0 40 1\n").unwrap();
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].precedence, 37);
    }

    #[test]
    fn comments_blank_lines_and_atoi() {
        let t = parse_conf("# comment\n\n   \n\t# indented comment\n::/0 abc 7x # trailing\n").unwrap();
        assert_eq!(t.rows, vec![PolicyRow { prefix: "::/0".parse().unwrap(), precedence: 0, label: 7 }]);
    }

    #[test]
    fn bad_lines_reject_the_whole_file() {
        for (text, line) in [
            ("::1/128 50 0\nfd00::/8 37\n", 2),
            ("fd00::/8 37 1\n10.0.0.0/8 1 2\n", 2),
            ("fd00:: 37 1\n", 1),
            ("fd00::/129 3 1\n", 1),
            ("fd00::/-1 3 1\n", 1),
            ("fd00::/8 37", 1),
            ("   ", 1),
        ] {
            let err = parse_conf(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(&format!("parse failed at line {line}")));
        }
    }

    #[test]
    fn missing_label_after_a_blank_reads_as_zero() {
        let t = parse_conf("fd00::/8 37 \nfc00::/7 3 13").unwrap();
        assert_eq!(t.rows[0].label, 0);
        assert_eq!(t.rows[1].label, 13);
    }

    #[test]
    fn install_rejects_label_minus_one_and_duplicates() {
        let mut kernel = PolicyTable::default();
        let rows = parse_conf("fd00::1/8 37 1\nfd00::/8 3 13\n::/0 40 -1\n").unwrap();
        let rejected = install(&mut kernel, &rows);
        assert_eq!(kernel.rows.len(), 1);
        assert_eq!(kernel.rows[0].prefix.to_string(), "fd00::/8");
        let errnos: Vec<_> = rejected.iter().map(|r| r.errno).collect();
        assert_eq!(errnos, ["EEXIST", "EINVAL"]);
    }

    #[test]
    fn longest_match_ties_to_earlier_row() {
        let t = parse_conf("fd00::/8 1 1\nfd00::/16 2 2\n::/0 40 1\n").unwrap();
        assert_eq!(lookup(&t, &"fd00::1".parse().unwrap()).unwrap().label, 2);
        assert_eq!(lookup(&t, &"fd01::1".parse().unwrap()).unwrap().label, 1);
        assert!(lookup(&PolicyTable::default(), &"::1".parse().unwrap()).is_none());
    }
}
