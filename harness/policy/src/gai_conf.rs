//! glibc `/etc/gai.conf`, read the way `gaiconf_init` in `nss/getaddrinfo.c`
//! (formerly `sysdeps/posix/getaddrinfo.c`) reads it.
//!
//! What matters to users and is easy to get wrong:
//! - one valid `label` line discards the whole built-in label table (likewise `precedence`
//!   and `scopev4`, each independently); an implicit catch-all row is added unless the file
//!   has a /0 row of its own;
//! - invalid lines are silently ignored by glibc; here they are reported as [`LineIssue`]s;
//! - custom rows are sorted by prefix length, longest first (stable), then looked up
//!   first-match;
//! - number parsing changed in glibc 2.41 (BZ #32465): before, an empty value or length read
//!   as 0 and a prefix without `/LEN` was rejected (`scopev4` without `/LEN` crashed every
//!   sorting getaddrinfo call); from 2.41 empty numbers are rejected and `/LEN` defaults.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{Ipv6Net, LineIssue, PolicyTable, c_style, net, prefix_matches};

/// A valid `label` or `precedence` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PrefixEntry {
    pub prefix: Ipv6Net,
    pub value: u32,
}

/// A valid `scopev4` line, normalised to an IPv4 network and mask length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScopeEntry {
    /// Network address (already masked, as glibc stores it).
    pub addr: Ipv4Addr,
    pub bits: u8,
    pub scope: u32,
}

impl ScopeEntry {
    fn netmask(&self) -> u32 {
        if self.bits == 0 { 0 } else { u32::MAX << (32 - u32::from(self.bits)) }
    }

    pub fn matches(&self, addr: &Ipv4Addr) -> bool {
        addr.to_bits() & self.netmask() == self.addr.to_bits()
    }
}

/// Which gai.conf number parser a glibc release has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum GlibcParser {
    /// glibc up to 2.40 (Debian bookworm has 2.36): inline `strtoul` checks.
    Before2_41,
    /// glibc 2.41 and later (Debian trixie): `valid_decimal_value`.
    #[default]
    From2_41,
}

impl GlibcParser {
    /// The parser of a glibc `major.minor` version.
    pub fn for_version(major: u32, minor: u32) -> Self {
        if (major, minor) >= (2, 41) { GlibcParser::From2_41 } else { GlibcParser::Before2_41 }
    }
}

/// Everything glibc takes from a gai.conf text.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GaiConf {
    /// Valid `label` lines, in file order.
    pub labels: Vec<PrefixEntry>,
    /// Valid `precedence` lines, in file order.
    pub precedence: Vec<PrefixEntry>,
    /// Valid `scopev4` lines, in file order.
    pub scopev4: Vec<ScopeEntry>,
    /// `reload yes` was given (the last `reload` line wins).
    pub reload: bool,
    /// Lines with a NUL byte: glibc reads them only up to it.
    pub nul_lines: Vec<usize>,
    /// Lines glibc ignores without a word: unknown commands and invalid values (the message
    /// says why, not which versions: see [`GlibcParser`]).
    pub ignored: Vec<LineIssue>,
    /// A line that makes this glibc crash (SIGSEGV) in every getaddrinfo call that sorts.
    pub crash: Option<LineIssue>,
}

/// A label or precedence table in glibc's lookup order (first match wins).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GlibcTable {
    pub rows: Vec<PrefixEntry>,
    /// True when the rows come from gai.conf rather than glibc's built-in defaults.
    pub custom: bool,
}

impl GlibcTable {
    /// `match_prefix`: the first row whose prefix matches. Every table ends with a /0 row.
    pub fn lookup(&self, addr: &Ipv6Addr) -> u32 {
        self.rows.iter().find(|r| prefix_matches(&r.prefix, addr)).map_or(i32::MAX as u32, |r| r.value)
    }

    /// The row `lookup` would use (for explanations).
    pub fn matching_row(&self, addr: &Ipv6Addr) -> Option<&PrefixEntry> {
        self.rows.iter().find(|r| prefix_matches(&r.prefix, addr))
    }
}

/// glibc's built-in `default_labels` ("See RFC 3484"; differs from both RFCs for
/// site-local, ULA and Teredo).
pub fn default_labels() -> GlibcTable {
    table(&[
        ("::1", 128, 0),
        ("2002::", 16, 2),
        ("::", 96, 3),
        ("::ffff:0:0", 96, 4),
        ("fec0::", 10, 5),
        ("fc00::", 7, 6),
        ("2001::", 32, 7),
        ("::", 0, 1),
    ])
}

/// glibc's built-in `default_precedence` (RFC 3484: IPv4 10, no ULA or Teredo rows).
pub fn default_precedence() -> GlibcTable {
    table(&[("::1", 128, 50), ("2002::", 16, 30), ("::", 96, 20), ("::ffff:0:0", 96, 10), ("::", 0, 40)])
}

/// glibc's built-in `default_scopes` for IPv4 (RFC 1918 is global since BZ #11438).
pub fn default_scopes() -> Vec<ScopeEntry> {
    vec![
        ScopeEntry { addr: Ipv4Addr::new(169, 254, 0, 0), bits: 16, scope: 2 },
        ScopeEntry { addr: Ipv4Addr::new(127, 0, 0, 0), bits: 8, scope: 2 },
        ScopeEntry { addr: Ipv4Addr::UNSPECIFIED, bits: 0, scope: 14 },
    ]
}

fn table(rows: &[(&str, u8, u32)]) -> GlibcTable {
    GlibcTable {
        rows: rows.iter().map(|&(a, l, v)| PrefixEntry { prefix: net(a, l), value: v }).collect(),
        custom: false,
    }
}

impl GaiConf {
    /// Parses gai.conf text exactly as the given glibc does. Never fails: glibc never
    /// rejects a file.
    pub fn parse(text: &str, parser: GlibcParser) -> Self {
        let mut conf = GaiConf::default();
        for (index, raw) in text.split_inclusive('\n').enumerate() {
            conf.parse_line(index + 1, raw.as_bytes(), parser);
        }
        conf
    }

    fn parse_line(&mut self, line: usize, raw: &[u8], parser: GlibcParser) {
        // getline reads past a NUL byte, but strchr and the tokenizer stop at it: the text
        // before it is the whole line (glibc 2.31 to 2.42 alike).
        let raw = match raw.iter().position(|&b| b == 0) {
            Some(i) => {
                self.nul_lines.push(line);
                &raw[..i]
            }
            None => raw,
        };
        // Everything from the first '#' is a comment; there is no escaping.
        let raw = match raw.iter().position(|&b| b == b'#') {
            Some(i) => &raw[..i],
            None => raw,
        };
        let mut tokens = raw.split(|b| is_c_space(*b)).filter(|t| !t.is_empty());
        let Some(cmd) = tokens.next() else { return };
        let val1 = tokens.next().unwrap_or(b"");
        let val2 = tokens.next().unwrap_or(b"");
        let ignore = |conf: &mut Self, why: String| conf.ignored.push(LineIssue { line, message: why });
        let cmd_text = String::from_utf8_lossy(cmd);
        match cmd {
            b"label" | b"precedence" => match parse_prefix_value(val1, val2, parser) {
                Ok(entry) => {
                    if cmd == b"label" {
                        self.labels.push(entry)
                    } else {
                        self.precedence.push(entry)
                    }
                }
                Err(why) => ignore(self, format!("`{cmd_text}`: {why}")),
            },
            b"scopev4" => match parse_scope(val1, val2, parser) {
                Ok(entry) => self.scopev4.push(entry),
                Err(ScopeError::Crash(why)) => {
                    if self.crash.is_none() {
                        self.crash = Some(LineIssue { line, message: why });
                    }
                }
                Err(ScopeError::Invalid(why)) => ignore(self, format!("`scopev4`: {why}")),
            },
            b"reload" => self.reload = val1 == b"yes",
            _ => ignore(self, format!("unknown command `{cmd_text}` (expected label, precedence, scopev4 or reload)")),
        }
    }

    /// The label table getaddrinfo uses: the file's rows if it has any valid `label` line.
    pub fn label_table(&self) -> GlibcTable {
        custom_or(&self.labels, 1, default_labels)
    }

    /// The precedence table getaddrinfo uses.
    pub fn precedence_table(&self) -> GlibcTable {
        custom_or(&self.precedence, 40, default_precedence)
    }

    /// The IPv4 scope table getaddrinfo uses, in lookup order (longest mask first).
    pub fn scope_table(&self) -> Vec<ScopeEntry> {
        if self.scopev4.is_empty() {
            return default_scopes();
        }
        let mut rows = self.scopev4.clone();
        if !rows.iter().any(|r| r.bits == 0) {
            rows.push(ScopeEntry { addr: Ipv4Addr::UNSPECIFIED, bits: 0, scope: 14 });
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.bits));
        rows
    }
}

fn custom_or(entries: &[PrefixEntry], catch_all: u32, default: fn() -> GlibcTable) -> GlibcTable {
    if entries.is_empty() {
        return default();
    }
    let mut rows = entries.to_vec();
    if !rows.iter().any(|r| r.prefix.prefix_len() == 0) {
        rows.push(PrefixEntry { prefix: net("::", 0), value: catch_all });
    }
    // glibc's qsort is a merge sort here, so equal lengths keep file order.
    rows.sort_by_key(|r| std::cmp::Reverse(r.prefix.prefix_len()));
    GlibcTable { rows, custom: true }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `strtoul(s, &end, 10)` followed by glibc's `*end == '\0'` and `!= ULONG_MAX || errno !=
/// ERANGE` checks: optional sign, decimal digits, nothing after. Before 2.41 an empty string
/// passes as 0; from 2.41 (`valid_decimal_value`) a string without digits fails.
fn strtoul_whole(s: &[u8], parser: GlibcParser) -> Option<u64> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        // No conversion: end points at the start, so only the empty string can pass.
        return (s.is_empty() && parser == GlibcParser::Before2_41).then_some(0);
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u64 = 0;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { value.wrapping_neg() } else { value })
}

fn parse_prefix_value(val1: &[u8], val2: &[u8], parser: GlibcParser) -> Result<PrefixEntry, String> {
    let text = String::from_utf8_lossy(val1);
    let (addr_text, bits_text) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (&*text, None),
    };
    let addr: Ipv6Addr = addr_text
        .parse()
        .map_err(|_| format!("`{addr_text}` is not an IPv6 address (IPv4 must be written ::ffff:a.b.c.d)"))?;
    let bits = match bits_text {
        // 2.36 reads an uninitialised pointer here; in practice the line is rejected.
        None if parser == GlibcParser::Before2_41 => {
            return Err("no /LEN: glibc before 2.41 rejects this (BZ #32465); write /128".into());
        }
        None => 128,
        Some(b) => strtoul_whole(b.as_bytes(), parser)
            .filter(|&n| n <= 128)
            .ok_or_else(|| format!("prefix length `{b}` is not a number from 0 to 128"))?,
    };
    let value = strtoul_whole(val2, parser)
        .filter(|&v| v <= i32::MAX as u64)
        .ok_or_else(|| format!("value `{}` is not a number from 0 to 2147483647", String::from_utf8_lossy(val2)))?;
    Ok(PrefixEntry { prefix: Ipv6Net::new(addr, bits as u8).expect("length checked"), value: value as u32 })
}

enum ScopeError {
    Invalid(String),
    Crash(String),
}

impl From<String> for ScopeError {
    fn from(why: String) -> Self {
        ScopeError::Invalid(why)
    }
}

fn parse_scope(val1: &[u8], val2: &[u8], parser: GlibcParser) -> Result<ScopeEntry, ScopeError> {
    let text = String::from_utf8_lossy(val1);
    let (addr_text, bits_text) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (&*text, None),
    };
    let valid_addr = addr_text.parse::<Ipv4Addr>().is_ok()
        || addr_text.parse::<Ipv6Addr>().is_ok_and(|a| a.to_ipv4_mapped().is_some());
    if bits_text.is_none() && valid_addr && parser == GlibcParser::Before2_41 {
        return Err(ScopeError::Crash(format!(
            "`scopev4 {text}` without /LEN makes glibc before 2.41 crash (SIGSEGV) in every getaddrinfo call that sorts (BZ #32465); write /32"
        )));
    }
    let parse_bits = |default: u64, lo: u64, hi: u64| match bits_text {
        None => Ok(default),
        Some(b) => strtoul_whole(b.as_bytes(), parser)
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("prefix length `{b}` is not a number from {lo} to {hi}")),
    };
    let (v4, bits) = if let Ok(v6) = addr_text.parse::<Ipv6Addr>() {
        let v4 = v6.to_ipv4_mapped().ok_or_else(|| format!("`{addr_text}` is not IPv4-mapped (::ffff:a.b.c.d)"))?;
        (v4, parse_bits(128, 96, 128)? - 96)
    } else if let Ok(v4) = addr_text.parse::<Ipv4Addr>() {
        (v4, parse_bits(32, 0, 32)?)
    } else {
        return Err(format!("`{addr_text}` is not an IPv4 or IPv4-mapped address").into());
    };
    let scope = strtoul_whole(val2, parser)
        .filter(|&v| v <= i32::MAX as u64)
        .ok_or_else(|| format!("scope `{}` is not a number from 0 to 2147483647", String::from_utf8_lossy(val2)))?;
    let bits = bits as u8;
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
    Ok(ScopeEntry { addr: Ipv4Addr::from_bits(v4.to_bits() & mask), bits, scope: scope as u32 })
}

/// Prints a policy table as gai.conf `label` and `precedence` lines. Since any label line
/// replaces glibc's whole label table (and likewise precedence), the result makes glibc
/// use exactly this table.
pub fn print_table(table: &PolicyTable) -> String {
    let mut out = String::new();
    for row in &table.rows {
        out.push_str(&format!("label {} {}\n", c_style(&row.prefix), row.label));
    }
    for row in &table.rows {
        out.push_str(&format!("precedence {} {}\n", c_style(&row.prefix), row.precedence));
    }
    out
}

/// Prints a full gai.conf with all three of glibc's effective tables spelled out.
pub fn print_effective(conf: &GaiConf) -> String {
    let mut out = String::new();
    for row in conf.label_table().rows {
        out.push_str(&format!("label {} {}\n", c_style(&row.prefix), row.value));
    }
    for row in conf.precedence_table().rows {
        out.push_str(&format!("precedence {} {}\n", c_style(&row.prefix), row.value));
    }
    for row in conf.scope_table() {
        out.push_str(&format!("scopev4 ::ffff:{}/{} {}\n", row.addr, u32::from(row.bits) + 96, row.scope));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: GlibcParser = GlibcParser::From2_41;
    const OLD: GlibcParser = GlibcParser::Before2_41;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_file_keeps_all_defaults() {
        let conf = GaiConf::parse("# nothing here\n\n   \n", NEW);
        assert_eq!(conf.label_table(), default_labels());
        assert_eq!(conf.precedence_table(), default_precedence());
        assert_eq!(conf.scope_table(), default_scopes());
        assert!(conf.ignored.is_empty());
    }

    #[test]
    fn one_label_line_replaces_every_default_label() {
        let conf = GaiConf::parse("label fd00:11:22::/48 1\n", NEW);
        let labels = conf.label_table();
        assert!(labels.custom);
        assert_eq!(labels.rows.len(), 2, "the line plus the implicit ::/0 1");
        assert_eq!(labels.lookup(&v6("fd00:11:22::aa")), 1);
        // ::1 lost its label 0, IPv4-mapped lost 4: everything else is 1 now.
        assert_eq!(labels.lookup(&v6("::1")), 1);
        assert_eq!(labels.lookup(&v6("::ffff:10.0.0.1")), 1);
        // precedence untouched
        assert_eq!(conf.precedence_table(), default_precedence());
    }

    #[test]
    fn precedence_line_alone_demotes_loopback_and_6to4() {
        let conf = GaiConf::parse("precedence ::ffff:0:0/96 100\n", NEW);
        let prec = conf.precedence_table();
        assert_eq!(prec.lookup(&v6("::ffff:1.2.3.4")), 100);
        assert_eq!(prec.lookup(&v6("::1")), 40);
        assert_eq!(prec.lookup(&v6("2002::1")), 40);
        assert_eq!(conf.label_table(), default_labels());
    }

    #[test]
    fn explicit_zero_length_row_suppresses_implicit_catch_all() {
        let conf = GaiConf::parse("label ::/0 7\nlabel ::1/128 3\n", NEW);
        let t = conf.label_table();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.lookup(&v6("2001:db8::1")), 7);
        assert_eq!(t.lookup(&v6("::1")), 3);
    }

    #[test]
    fn rows_sorted_longest_first_stable_for_equal_lengths() {
        let conf = GaiConf::parse("label fd00::/8 5\nlabel fd00::/16 6\nlabel fd01::/16 7\nlabel fd00::/16 8\n", NEW);
        let t = conf.label_table();
        let lens: Vec<u8> = t.rows.iter().map(|r| r.prefix.prefix_len()).collect();
        assert_eq!(lens, vec![16, 16, 16, 8, 0]);
        // duplicate /16: the earlier line wins.
        assert_eq!(t.lookup(&v6("fd00::1")), 6);
        assert_eq!(t.lookup(&v6("fd01::1")), 7);
        assert_eq!(t.lookup(&v6("fdff::1")), 5);
    }

    #[test]
    fn invalid_lines_are_ignored_and_reported() {
        let text = "label 10.0.0.0/8 3\nlabel fd00::/129 3\nprecedence fd00::/8 -1\nlable fd00::/8 1\nlabel fd00::/8 0x10\nlabel fd00::/8 2 trailing words\n";
        let conf = GaiConf::parse(text, NEW);
        let lines: Vec<usize> = conf.ignored.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5]);
        assert!(conf.ignored[3].message.contains("unknown command `lable`"));
        assert_eq!(conf.labels.len(), 1, "extra tokens after the value are ignored, the line is valid");
    }

    #[test]
    fn number_parsing_before_2_41() {
        // A missing value reads as 0, a missing length after '/' as /0, '+' is accepted, and
        // a prefix without /LEN is rejected.
        let text = "label fd00::/8\nlabel fe80::/ 4\nprecedence ::1/+128 +60\nprecedence ::1 60\n";
        let conf = GaiConf::parse(text, OLD);
        assert_eq!(conf.labels[0].value, 0);
        assert_eq!(conf.labels[1].prefix.prefix_len(), 0);
        assert_eq!(conf.precedence.len(), 1);
        assert_eq!(conf.precedence[0].prefix.prefix_len(), 128);
        assert_eq!(conf.precedence[0].value, 60);
        assert_eq!(conf.ignored.iter().map(|i| i.line).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn number_parsing_from_2_41() {
        let text = "label fd00::/8\nlabel fe80::/ 4\nprecedence ::1/+128 +60\nprecedence ::1 60\nprecedence ::2/-0 1\n";
        let conf = GaiConf::parse(text, NEW);
        assert_eq!(conf.labels, vec![]);
        assert_eq!(conf.ignored.iter().map(|i| i.line).collect::<Vec<_>>(), [1, 2]);
        let lens: Vec<u8> = conf.precedence.iter().map(|p| p.prefix.prefix_len()).collect();
        assert_eq!(lens, [128, 128, 0]);
    }

    #[test]
    fn scopev4_without_length_crashes_old_glibc() {
        let conf = GaiConf::parse("scopev4 10.0.0.0 5\n", OLD);
        assert_eq!(conf.crash.as_ref().map(|c| c.line), Some(1));
        let conf = GaiConf::parse("scopev4 10.0.0.0 5\n", NEW);
        assert!(conf.crash.is_none());
        assert_eq!(conf.scope_table()[0].bits, 32);
    }

    /// glibc reads a line only up to a NUL byte; the lines after it are read normally.
    #[test]
    fn a_nul_byte_ends_its_line() {
        for parser in [GlibcParser::Before2_41, GlibcParser::From2_41] {
            let c = GaiConf::parse("precedence ::ffff:0:0/96 100\0 junk\nlabel fd00::/8 1\n", parser);
            assert_eq!(c.precedence.len(), 1);
            assert_eq!(c.precedence[0].value, 100);
            assert_eq!(c.labels.len(), 1, "the next line still applies");
            assert_eq!(c.nul_lines, [1]);
            assert!(c.ignored.is_empty(), "{:?}", c.ignored);
            let c = GaiConf::parse("\0precedence ::ffff:0:0/96 100\n", parser);
            assert!(c.precedence.is_empty() && c.ignored.is_empty());
        }
        // `val2` is cut off: 2.36 reads it as 0, 2.41 ignores the line.
        let text = "precedence 2001:db8:2::/48\0 50\n";
        assert_eq!(GaiConf::parse(text, GlibcParser::Before2_41).precedence[0].value, 0);
        assert!(GaiConf::parse(text, GlibcParser::From2_41).precedence.is_empty());
    }

    #[test]
    fn comments_cut_lines_anywhere() {
        let conf = GaiConf::parse("label fd00::/8 3# trailing\n#label ::/0 9\n", NEW);
        assert_eq!(conf.labels.len(), 1);
        assert_eq!(conf.labels[0].value, 3);
    }

    #[test]
    fn scopev4_both_syntaxes() {
        let conf =
            GaiConf::parse("scopev4 ::ffff:10.0.0.0/104 5\nscopev4 192.168.0.0/16 5\nscopev4 ::ffff:1.2.3.4 9\n", NEW);
        let t = conf.scope_table();
        assert_eq!(t[0], ScopeEntry { addr: Ipv4Addr::new(1, 2, 3, 4), bits: 32, scope: 9 });
        assert_eq!(t[1], ScopeEntry { addr: Ipv4Addr::new(192, 168, 0, 0), bits: 16, scope: 5 });
        assert_eq!(t[2], ScopeEntry { addr: Ipv4Addr::new(10, 0, 0, 0), bits: 8, scope: 5 });
        assert_eq!(t[3].bits, 0);
        assert_eq!(t[3].scope, 14);
        // the built-in link-local rows are gone
        assert!(!t.iter().any(|r| r.addr == Ipv4Addr::new(169, 254, 0, 0)));
    }

    #[test]
    fn reload_flag() {
        assert!(GaiConf::parse("reload yes\n", NEW).reload);
        assert!(!GaiConf::parse("reload yes\nreload no\n", NEW).reload);
        assert!(!GaiConf::parse("reload true\n", NEW).reload);
    }

    #[test]
    fn printed_table_round_trips() {
        let table = PolicyTable::rfc6724();
        let conf = GaiConf::parse(&print_table(&table), NEW);
        assert!(conf.ignored.is_empty());
        assert_eq!(conf.labels.len(), table.rows.len());
        for row in &table.rows {
            let addr = row.prefix.addr();
            assert_eq!(conf.label_table().lookup(&addr) as i32, table.longest_match(&addr).unwrap().label);
            assert_eq!(conf.precedence_table().lookup(&addr) as i32, table.longest_match(&addr).unwrap().precedence);
        }
    }
}
