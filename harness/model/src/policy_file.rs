//! A stand-alone policy file as an operator has it (`/etc/gai.conf`, `/etc/ip6addrctl.conf`,
//! or addrsel's OS-neutral table), and applying it to a scenario.

use addrsel_policy::{PolicyRow, PolicyTable, ip6addrctl};
use ipnet::IpNet;

use crate::diag::{Diagnostic, Errors, Severity, SourceMap};
use crate::scenario::{FreebsdPolicy, LinuxPolicy, Scenario};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyFile {
    /// glibc `/etc/gai.conf` text (Linux).
    GaiConf(String),
    /// FreeBSD `/etc/ip6addrctl.conf` text.
    Ip6addrctl(String),
    /// `table = [["PREFIX/LEN", PRECEDENCE, LABEL], ...]` (every OS).
    Table(PolicyTable),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyFormat {
    GaiConf,
    Ip6addrctl,
    Table,
}

impl PolicyFormat {
    pub fn from_word(w: &str) -> Option<Self> {
        match w {
            "gai.conf" | "gai" => Some(PolicyFormat::GaiConf),
            "ip6addrctl" | "ip6addrctl.conf" => Some(PolicyFormat::Ip6addrctl),
            "table" => Some(PolicyFormat::Table),
            _ => None,
        }
    }
}

impl PolicyFile {
    pub fn format(&self) -> PolicyFormat {
        match self {
            PolicyFile::GaiConf(_) => PolicyFormat::GaiConf,
            PolicyFile::Ip6addrctl(_) => PolicyFormat::Ip6addrctl,
            PolicyFile::Table(_) => PolicyFormat::Table,
        }
    }

    /// Which engine profiles the file affects.
    pub fn profiles(&self) -> &'static [&'static str] {
        match self {
            PolicyFile::GaiConf(_) => &["linux"],
            PolicyFile::Ip6addrctl(_) => &["freebsd"],
            PolicyFile::Table(_) => &["linux", "freebsd", "rfc6724"],
        }
    }

    /// The scenario with this policy in place of its own for the affected OS.
    pub fn apply(&self, s: &Scenario) -> Scenario {
        let mut s = s.clone();
        match self {
            PolicyFile::GaiConf(text) => {
                let addrlabels = s.policy.linux.as_ref().map(|l| l.addrlabels.clone()).unwrap_or_default();
                s.policy.linux = Some(LinuxPolicy { gai_conf: Some(text.clone()), addrlabels });
            }
            PolicyFile::Ip6addrctl(text) => {
                s.policy.freebsd =
                    Some(FreebsdPolicy { ip6addrctl_conf: Some(text.clone()), ..FreebsdPolicy::default() });
            }
            PolicyFile::Table(t) => {
                s.policy.table = Some(t.clone());
                s.policy.linux = None;
                s.policy.freebsd = None;
            }
        }
        s
    }
}

fn looks_like_gai_conf(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        matches!(l.split_whitespace().next(), Some("label" | "precedence" | "scopev4" | "reload"))
    })
}

/// A policy file's format from its content, or else from its name (a stock `/etc/gai.conf`
/// is all comments); `None` when neither tells.
pub fn guess(path: &str, text: &str) -> Option<PolicyFormat> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path.ends_with(".toml") || text.trim_start().starts_with("table") {
        Some(PolicyFormat::Table)
    } else if looks_like_gai_conf(text) {
        Some(PolicyFormat::GaiConf)
    } else if ip6addrctl::parse_conf(text).is_ok_and(|t| !t.rows.is_empty()) {
        Some(PolicyFormat::Ip6addrctl)
    } else if name.contains("gai") {
        Some(PolicyFormat::GaiConf)
    } else if name.contains("ip6addrctl") {
        Some(PolicyFormat::Ip6addrctl)
    } else {
        None
    }
}

/// Reads a policy file. The format is `format` when given, otherwise guessed ([`guess`]).
pub fn load(path: &str, text: &str, format: Option<PolicyFormat>) -> Result<PolicyFile, Errors> {
    let map = SourceMap { path, text };
    let format = match format.or_else(|| guess(path, text)) {
        Some(f) => f,
        None => {
            return Err(Errors(vec![map.at(
                0,
                Severity::Error,
                "cannot tell whether this is a gai.conf, an ip6addrctl.conf or a table; give --format",
            )]));
        }
    };
    match format {
        PolicyFormat::GaiConf => Ok(PolicyFile::GaiConf(text.to_string())),
        PolicyFormat::Ip6addrctl => match ip6addrctl::parse_conf(text) {
            Ok(_) => Ok(PolicyFile::Ip6addrctl(text.to_string())),
            Err(e) => Err(Errors(vec![Diagnostic {
                path: path.to_string(),
                line: e.issue.line,
                column: 1,
                severity: Severity::Error,
                message: e.issue.message,
            }])),
        },
        PolicyFormat::Table => load_table(&map),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    table: Vec<toml::Spanned<(toml::Spanned<String>, i32, i32)>>,
}

fn load_table(map: &SourceMap) -> Result<PolicyFile, Errors> {
    let raw: RawTable = toml::from_str(map.text).map_err(|e| {
        Errors(vec![map.at(e.span().map_or(0, |s| s.start), Severity::Error, e.message().trim().to_string())])
    })?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for row in raw.table {
        let (prefix, precedence, label) = row.into_inner();
        match prefix.get_ref().parse::<IpNet>() {
            Ok(IpNet::V6(p)) => rows.push(PolicyRow { prefix: p, precedence, label }),
            _ => errors.push(map.at(
                prefix.span().start,
                Severity::Error,
                format!("`{}` is not an IPv6 prefix (IPv4 is written ::ffff:a.b.c.d/96+LEN)", prefix.get_ref()),
            )),
        }
    }
    if errors.is_empty() { Ok(PolicyFile::Table(PolicyTable::new(rows))) } else { Err(Errors(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised() {
        assert_eq!(load("a", "# x\nlabel fd00::/8 1\n", None).unwrap().format(), PolicyFormat::GaiConf);
        assert_eq!(load("a", "fc00::/7 37 1\n::/0 40 1\n", None).unwrap().format(), PolicyFormat::Ip6addrctl);
        let t = load("p.toml", "table = [[\"::1/128\", 50, 0], [\"::/0\", 40, 1]]\n", None).unwrap();
        assert_eq!(t.format(), PolicyFormat::Table);
        assert!(load("a", "hello\n", None).is_err());
        // Comments only (a stock /etc/gai.conf) or empty: the name tells, or nothing does.
        let stock = "# Configuration for getaddrinfo(3).\n#label ::1/128       0\n";
        assert_eq!(guess("/etc/gai.conf", stock), Some(PolicyFormat::GaiConf));
        assert_eq!(guess("old-ip6addrctl.conf", ""), Some(PolicyFormat::Ip6addrctl));
        assert_eq!(guess("old.conf", stock), None);
    }

    #[test]
    fn bad_ip6addrctl_line_is_located() {
        let e = load("p.conf", "fc00::/7 37 1\nnonsense\n", Some(PolicyFormat::Ip6addrctl)).unwrap_err();
        assert_eq!(e.0[0].line, 2);
        let e = load("p.toml", "table = [[\"10.0.0.0/8\", 1, 1]]\n", None).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].column), (1, 11));
    }
}
