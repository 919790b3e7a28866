//! Quoting for the four languages a cluster's settings pass through: postgresql.conf, SQL,
//! `/bin/sh` (archive commands, `pg_ctl -o`) and libpq conninfo/URLs. Each function returns a
//! value that the respective parser reads back as exactly the input, whatever it contains.

use std::fmt::Write as _;

/// A postgresql.conf string value: quotes doubled, and backslashes escaped because the config
/// file parser treats them as escapes. Every parameter type accepts the quoted form.
pub(super) fn conf(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', "''"))
}

/// An SQL string literal (standard_conforming_strings is on by default since 9.1, so backslashes
/// are literal).
pub(super) fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub(super) fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn shell(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A conninfo value, bare when it can be (easier to read in assertion messages).
pub(super) fn conninfo(value: &str) -> String {
    let plain = |c: char| !c.is_whitespace() && c != '\'' && c != '\\';
    if !value.is_empty() && value.chars().all(plain) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a URL path segment.
pub(super) fn url_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_doubles_quotes_and_escapes_backslashes() {
        assert_eq!(conf(r"cp %p 'a\b'"), r"'cp %p ''a\\b'''");
    }

    #[test]
    fn sql_keeps_backslashes_and_doubles_quotes() {
        assert_eq!(sql_literal(r"it's a\b"), r"'it''s a\b'");
        assert_eq!(sql_ident(r#"my "db""#), r#""my ""db""""#);
    }

    #[test]
    fn shell_closes_and_reopens_around_quotes() {
        assert_eq!(shell("/tmp/it's"), r"'/tmp/it'\''s'");
    }

    #[test]
    fn conninfo_quotes_only_when_needed() {
        assert_eq!(conninfo("/tmp/bw-pg-x/sock"), "/tmp/bw-pg-x/sock");
        assert_eq!(conninfo("store test"), "'store test'");
        assert_eq!(conninfo(""), "''");
        assert_eq!(conninfo(r"a'b\c"), r"'a\'b\\c'");
    }

    #[test]
    fn url_segment_encodes_all_but_unreserved() {
        assert_eq!(url_segment("store test/é"), "store%20test%2F%C3%A9");
        assert_eq!(url_segment("a-b.c_d~e"), "a-b.c_d~e");
    }
}
