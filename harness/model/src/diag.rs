//! Diagnostics that point at a file, line and column.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub path: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub severity: Severity,
    pub message: String,
}

/// Text from a scenario made safe to print: control characters (terminal escapes among
/// them) shown as `\u{..}`, and at most `limit` characters, saying how many were left out.
pub fn printable(text: &str, limit: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == limit {
            out.push_str(&format!("… ({} more characters)", text.chars().count() - limit));
            break;
        }
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// How long a message may be when printed: messages quote scenario text.
const MESSAGE_LIMIT: usize = 400;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let message = printable(&self.message, MESSAGE_LIMIT);
        let path = printable(&self.path, MESSAGE_LIMIT);
        match (self.path.is_empty(), self.line) {
            (true, _) => write!(f, "{kind}: {message}"),
            (false, 0) => write!(f, "{path}: {kind}: {message}"),
            (false, line) => write!(f, "{path}:{line}:{}: {kind}: {message}", self.column),
        }
    }
}

/// Every error found in one file (all of them, not just the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors(pub Vec<Diagnostic>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// Maps byte offsets of a source text to 1-based line and column numbers.
pub struct SourceMap<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

impl SourceMap<'_> {
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    pub fn at(&self, offset: usize, severity: Severity, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.line_col(offset);
        Diagnostic { path: self.path.to_string(), line, column, severity, message: message.into() }
    }

    /// The file line holding line `k` (1-based) of a string value whose literal spans
    /// `span`. Multi-line strings that open with a newline map exactly; otherwise every line
    /// of the value maps to the line the literal starts on.
    pub fn value_line(&self, span: std::ops::Range<usize>, k: usize) -> (usize, bool) {
        let (start_line, _) = self.line_col(span.start);
        let raw = &self.text[span.start..span.end.min(self.text.len())];
        let opens_with_newline = ["\"\"\"\n", "'''\n", "\"\"\"\r\n", "'''\r\n"].iter().any(|d| raw.starts_with(d));
        if opens_with_newline { (start_line + k, true) } else { (start_line, k == 1) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printed_text_is_safe_and_short() {
        assert_eq!(super::printable("a\u{1b}[31mb\n", 100), "a\\u{1b}[31mb\\u{a}");
        let long = "x".repeat(1 << 20);
        let shown = super::printable(&long, 10);
        assert_eq!(shown, format!("xxxxxxxxxx… ({} more characters)", (1 << 20) - 10));
    }
}
