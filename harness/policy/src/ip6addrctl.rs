//! FreeBSD's `ip6addrctl(8)`: the `/etc/ip6addrctl.conf` format read by
//! `ip6addrctl install` (`make_policy_fromfile` in `usr.sbin/ip6addrctl/ip6addrctl.c`), the
//! kernel's checks when the rows are installed (`in6_src_ioctl`), and the `show` output.
//!
//! Unlike glibc, `install` is all-or-nothing at parse time: one bad line and the tool exits
//! with `parse failed at line N` before installing anything. Since rc.d flushes first, a
//! bad file leaves the kernel table empty, which turns off libc's destination sorting and
//! kernel source rule 6.

use crate::{Ipv6Net, LineIssue, PolicyRow, PolicyTable, c_style, prefix_matches};

/// Why `ip6addrctl install` installed nothing: it parses the whole file before its first
/// ioctl and stops at the first bad line with `parse failed at line N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFailed {
    pub issue: LineIssue,
    /// The tool's behaviour on this line is undefined: its `SKIP_WORD` reads past the end
    /// of the line into stale buffer bytes, so what it installs cannot be known.
    pub undefined: bool,
}

impl std::fmt::Display for ParseFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.issue.fmt(f)
    }
}

/// `fgets(line, _POSIX2_LINE_MAX)`: at most 2047 bytes per read, so a longer line is read
/// (and counted) as several.
const FGETS_MAX: usize = 2047;

/// The lines `fgets` returns: through each `\n`, or 2047 bytes, or the end of the file.
fn fgets_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let limit = rest.len().min(FGETS_MAX);
        let end = rest[..limit].iter().position(|&b| b == b'\n').map_or(limit, |i| i + 1);
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// Parses an ip6addrctl.conf text as `make_policy_fromfile` in
/// `usr.sbin/ip6addrctl/ip6addrctl.c` does, macro for macro: `SKIP_WHITE` skips only blanks
/// and tabs, `SKIP_WORD` stops only at a blank or tab (it walks over `\n` and NUL),
/// `parse_prefix` takes the whole rest of the line (address before the first `/`, `atoi` of
/// everything after it), and the numbers are C `atoi`.
pub fn parse_conf(text: &str) -> Result<PolicyTable, ParseFailed> {
    let mut rows = Vec::new();
    for (index, line_bytes) in fgets_lines(text.as_bytes()).into_iter().enumerate() {
        let line = index + 1;
        let fail = |detail: String, undefined: bool| ParseFailed {
            issue: LineIssue {
                line,
                message: format!(
                    "{detail}; `ip6addrctl install` stops with \"parse failed at line {line}\" and installs nothing"
                ),
            },
            undefined,
        };
        // The buffer as C sees it: the bytes read, then fgets' NUL. Past that lies whatever
        // an earlier line left there.
        let len = line_bytes.len();
        let at = |i: usize| line_bytes.get(i).copied().unwrap_or(0);
        let is_blank = |b: u8| b == b' ' || b == b'\t';
        let skip_white = |i: &mut usize| {
            while is_blank(at(*i)) {
                *i += 1;
            }
        };
        // SKIP_WHITE(cp, 0): the field may not be missing.
        let skip_white_needed = |i: &mut usize, what: &str| {
            skip_white(i);
            if matches!(at(*i), 0 | b'\n') {
                Err(fail(format!("the line ends before its {what}"), false))
            } else {
                Ok(())
            }
        };
        let skip_word = |i: &mut usize, what: &str| {
            while !is_blank(at(*i)) {
                *i += 1;
                if *i > len {
                    return Err(fail(
                        format!(
                            "no blank after the {what} before the line ends, so the tool reads past the line (undefined)"
                        ),
                        true,
                    ));
                }
            }
            Ok(())
        };
        // C string functions stop at the first NUL.
        let c_str = |i: usize| {
            let rest = line_bytes.get(i..).unwrap_or(&[]);
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        };

        let mut cp = 0;
        skip_white(&mut cp); // SKIP_WHITE(cp, 1)
        if matches!(at(cp), b'\n' | b'#') {
            continue;
        }
        let prefix = parse_prefix(&c_str(cp)).map_err(|detail| fail(detail, false))?;
        skip_word(&mut cp, "prefix")?;
        skip_white_needed(&mut cp, "precedence")?;
        let precedence = atoi(&c_str(cp));
        skip_word(&mut cp, "precedence")?;
        skip_white_needed(&mut cp, "label")?;
        let label = atoi(&c_str(cp));
        rows.push(PolicyRow { prefix, precedence, label });
    }
    Ok(PolicyTable { rows })
}

/// `parse_prefix`: the address is what comes before the first `/` of the rest of the line
/// (`getaddrinfo` with `AF_INET6` and `AI_NUMERICHOST`, which takes a `%zone` the policy
/// then ignores), the length `atoi` of everything after it.
fn parse_prefix(rest: &str) -> Result<Ipv6Net, String> {
    let Some((addr_text, len_text)) = rest.split_once('/') else {
        return Err(format!("`{}` has no /LEN", rest.trim_end()));
    };
    let addr_only = addr_text.split_once('%').map_or(addr_text, |(a, _)| a);
    let addr: std::net::Ipv6Addr =
        addr_only.parse().map_err(|_| format!("getaddrinfo failed for `{addr_text}` (not a numeric IPv6 address)"))?;
    let len = atoi(len_text);
    if !(0..=128).contains(&len) {
        return Err(format!("invalid prefix length: {len}"));
    }
    Ok(Ipv6Net::new(addr, len as u8).expect("length checked"))
}

/// C `atoi` as FreeBSD's libc has it, `(int)strtol(s, NULL, 10)`: leading white space, a
/// sign, digits up to the first non-digit (none is 0); `strtol` saturates at the `long`
/// range, and the cast keeps the low 32 bits.
fn atoi(s: &str) -> i32 {
    let s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut value: i128 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        value = (value * 10 + i128::from(b - b'0')).min(i128::from(i64::MAX) + 1);
    }
    let long = if negative { (-value).max(i128::from(i64::MIN)) } else { value.min(i128::from(i64::MAX)) };
    long as i64 as i32
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

    /// The cases of FreeBSD's `make_policy_fromfile`, each worked through its macros
    /// (research notes, section B): the row read, or the line `parse failed` names.
    #[test]
    fn lines_as_freebsd_reads_them() {
        let row =
            |p: &str, prec: i32, label: i32| Some(PolicyRow { prefix: p.parse().unwrap(), precedence: prec, label });
        let cases: &[(&str, Option<Option<PolicyRow>>)] = &[
            // Some(None): skipped; Some(Some(row)); None: parse failed at line 1.
            ("# x\n", Some(None)),
            ("   # x\n", Some(None)),
            ("\n", Some(None)),
            ("\t\n", Some(None)),
            ("2a01::/16 83 \n", None),
            ("fd00::/8 \n", None),
            ("fd00::/ 8 50 7\n", Some(row("fd00::/8", 8, 50))),
            ("fd00:: 50 7\n", None),
            // Read as /0; the kernel masks it to ::/0 when it is installed.
            ("fd00::/abc 1 1\n", Some(row("fd00::/0", 1, 1))),
            ("fd00::/129 1 1\n", None),
            ("fd00::/-1 1 1\n", None),
            ("10.0.0.0/8 1 2\n", None),
            ("fe80::1%em0/64 1 2\n", Some(row("fe80::1/64", 1, 2))),
            ("fd00::/8 50 7 extra fields # c\n", Some(row("fd00::/8", 50, 7))),
            ("fd00::/8\t50\t7\r\n", Some(row("fd00::/8", 50, 7))),
            ("::/0 abc 7x\n", Some(row("::/0", 0, 7))),
            ("fd00::/8 -5 4294967295\n", Some(row("fd00::/8", -5, -1))),
            ("fd00::/8 1 9223372036854775808\n", Some(row("fd00::/8", 1, -1))),
            ("fd00::/8 1 99999999999\n", Some(row("fd00::/8", 1, 1215752191))),
            ("fd00::/8 50\0 7\n", Some(row("fd00::/8", 50, 7))),
            ("\0fd00::/8 50 7\n", None),
            ("   ", None),
            ("::1/128 50 0", Some(row("::1/128", 50, 0))),
        ];
        for (text, want) in cases {
            let got = parse_conf(text);
            match want {
                None => {
                    let e = got.expect_err(text);
                    assert_eq!(e.issue.line, 1, "{text:?}");
                    assert!(e.issue.message.contains("parse failed at line 1"), "{text:?}: {e}");
                    assert!(!e.undefined, "{text:?}");
                }
                Some(row) => {
                    let rows = got.unwrap_or_else(|e| panic!("{text:?}: {e}")).rows;
                    assert_eq!(rows.first().copied(), *row, "{text:?}");
                }
            }
        }
    }

    /// A last field that ends the line without a blank after it makes `SKIP_WORD` read past
    /// the line: undefined, said so, never modelled.
    #[test]
    fn reading_past_the_line_is_undefined() {
        for text in ["2a01::/16 83\n", "fd00::/8 37", "::1/128 50 0\nfd00::/8 37\n"] {
            let e = parse_conf(text).unwrap_err();
            assert!(e.undefined, "{text:?}: {e}");
            assert!(e.issue.message.contains("undefined"), "{e}");
        }
        // The label may end the line: nothing is read after it.
        assert!(parse_conf("fd00::/8 37 1").is_ok());
    }

    /// `fgets` reads 2047 bytes at a time: a longer line is two lines, the second a line
    /// of its own (here a comment-less run of blanks and a row).
    #[test]
    fn long_lines_are_read_in_pieces() {
        let text = format!("{}\n::/0 40 1\n", " ".repeat(2047));
        // The first read is 2047 blanks and no newline: SKIP_WHITE stops at its NUL.
        let e = parse_conf(&text).unwrap_err();
        assert_eq!(e.issue.line, 1);
        let text = format!("# {}\n::/0 40 1\n", "x".repeat(3000));
        let e = parse_conf(&text).unwrap_err();
        assert_eq!(e.issue.line, 2, "the rest of the comment is a line of its own: {e}");
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
