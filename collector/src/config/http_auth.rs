//! Who may use the dashboard and the HTTP API: `[[http.tokens]]`, `http.trusted_user_header`,
//! `http.trusted_proxies` and `http.ack_users`, validated into [`HttpAuth`].
//!
//! Invariants:
//! - a listener beyond loopback never runs open: without tokens or a trusted proxy header the
//!   configuration is refused;
//! - token values are read from their files here and kept only as SHA-256 digests, so no
//!   token can reach a log, an error or `check-config` output;
//! - a token file readable by every user is refused, as is a token too short to be random;
//! - the user header is believed only from `trusted_proxies`; a proxy user may acknowledge
//!   only when listed in `ack_users`.

use super::glob_match;
use backwatch_common::config::Problems;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Shortest token accepted: 32 characters (`openssl rand -hex 32` gives 64).
pub const MIN_TOKEN_CHARS: usize = 32;

// === raw ===

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds the token; shown by the dashboard and in the log, never the token itself.
    pub name: Option<String>,
    /// File holding the token (one line); relative paths are relative to the config file.
    pub token_file: Option<PathBuf>,
    /// `read` (default), `ack` (may also acknowledge, mark false positives, silence) or
    /// `admin` (may also issue enrollment tokens for new hosts).
    pub role: Option<String>,
}

/// The access keys of `[http]`, handed over by `Config::validate`.
pub struct RawHttpAuth<'a> {
    pub tokens: Vec<RawToken>,
    pub trusted_user_header: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub ack_users: Vec<String>,
    pub listen: SocketAddr,
    pub base: &'a Path,
}

// === validated ===

/// What a caller may do. `Read < Ack < Admin`: each includes the ones before. `Admin` adds
/// enrollment of new hosts, which hands out fleet identities; only tokens can have it (never
/// proxy users or open mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Ack,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Ack => "ack",
            Role::Admin => "admin",
        }
    }
}

/// A configured token: its holder, role and the SHA-256 of its value.
#[derive(Clone, PartialEq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Token {{ name: {:?}, role: {:?} }}",
            self.name, self.role
        )
    }
}

/// An address or a network (`10.0.0.5`, `10.0.0.0/24`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Option<Net> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.trim().parse::<IpAddr>().ok()?,
                Some(p.trim().parse().ok()?),
            ),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(net.to_bits()), 32, self.prefix)
                    == masked(u128::from(ip.to_bits()), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.to_bits(), 128, self.prefix) == masked(ip.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(width - prefix.min(width));
    bits.checked_shr(host_bits).unwrap_or(0)
}

/// The trusted reverse proxy: the header naming the user and who may send it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedProxy {
    /// Lowercase header name.
    pub header: String,
    pub proxies: Vec<Net>,
    /// Proxy users (names or `*` patterns) with role `ack`; everyone else reads.
    pub ack_users: Vec<String>,
}

impl TrustedProxy {
    pub fn role_of(&self, user: &str) -> Role {
        if self.ack_users.iter().any(|p| glob_match(p, user)) {
            Role::Ack
        } else {
            Role::Read
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpAuth {
    pub tokens: Vec<Token>,
    pub proxy: Option<TrustedProxy>,
    /// Nothing configured on a loopback listener: everyone on this machine may do everything.
    pub open: bool,
    /// Plain HTTP on a non-loopback address without a trusted proxy: a request carrying a
    /// bearer token is refused (the token crossed the network in clear).
    pub plain_bearer_refused: bool,
}

impl Default for HttpAuth {
    fn default() -> Self {
        HttpAuth {
            tokens: Vec::new(),
            proxy: None,
            open: true,
            plain_bearer_refused: false,
        }
    }
}

impl HttpAuth {
    /// One line for `check-config`: names and roles, never token values.
    pub fn describe(&self) -> String {
        if self.open {
            return "open (loopback listener, no tokens configured)".into();
        }
        let mut parts: Vec<String> = self
            .tokens
            .iter()
            .map(|t| format!("token {} ({})", t.name, t.role.as_str()))
            .collect();
        if let Some(p) = &self.proxy {
            parts.push(format!(
                "header {} from {} proxies",
                p.header,
                p.proxies.len()
            ));
        }
        format!("required: {}", parts.join(", "))
    }
}

pub fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

fn read_token(p: &mut Problems, key: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            p.push(key, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    if meta.permissions().mode() & 0o004 != 0 {
        p.push(
            key,
            format!(
                "{} is readable by every user (mode {:o}); `chmod 600` it",
                path.display(),
                meta.permissions().mode() & 0o777
            ),
        );
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            p.push(key, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let token = text.trim();
    // The message names the length, never the content.
    if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
        p.push(
            key,
            format!(
                "{} must hold one token of at least {MIN_TOKEN_CHARS} characters without \
                 spaces (example: `openssl rand -hex 32 > {}`)",
                path.display(),
                path.display()
            ),
        );
        return None;
    }
    Some(token.to_string())
}

fn valid_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

pub fn validate(p: &mut Problems, raw: RawHttpAuth<'_>) -> HttpAuth {
    let mut tokens: Vec<Token> = Vec::new();
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let key = format!("http.tokens[{i}]");
        let name = t.name.unwrap_or_default();
        if !valid_name(&name) {
            p.push(
                format!("{key}.name"),
                format!("{name:?} is not a name (1-64 of letters, digits, - _ . @)"),
            );
        } else if tokens.iter().any(|o| o.name == name) {
            p.push(format!("{key}.name"), format!("{name:?} is used twice"));
        }
        let role = match t.role.as_deref().unwrap_or("read") {
            "read" => Role::Read,
            "ack" => Role::Ack,
            "admin" => Role::Admin,
            other => {
                p.push(
                    format!("{key}.role"),
                    format!("{other:?} is not one of \"read\", \"ack\", \"admin\""),
                );
                Role::Read
            }
        };
        let value = match t.token_file {
            None => {
                p.push(
                    format!("{key}.token_file"),
                    "is required (a file holding the token, mode 600)",
                );
                None
            }
            Some(f) => {
                let f = if f.is_relative() { raw.base.join(f) } else { f };
                read_token(p, &format!("{key}.token_file"), &f)
            }
        };
        if let Some(value) = value {
            let digest = digest(&value);
            if tokens.iter().any(|o| o.digest == digest) {
                p.push(
                    format!("{key}.token_file"),
                    "holds the same token as another entry",
                );
            }
            tokens.push(Token { name, role, digest });
        }
    }

    let proxy = match raw.trusted_user_header {
        None => {
            if !raw.trusted_proxies.is_empty() {
                p.push(
                    "http.trusted_proxies",
                    "is set without http.trusted_user_header",
                );
            }
            if !raw.ack_users.is_empty() {
                p.push("http.ack_users", "is set without http.trusted_user_header");
            }
            None
        }
        Some(header) => {
            if !valid_header_name(&header) {
                p.push(
                    "http.trusted_user_header",
                    format!("{header:?} is not a header name (example: \"X-Forwarded-User\")"),
                );
            }
            if raw.trusted_proxies.is_empty() {
                p.push(
                    "http.trusted_proxies",
                    "is required with http.trusted_user_header: the addresses of the proxies \
                     allowed to send it (example: [\"127.0.0.1\", \"10.0.0.0/24\"])",
                );
            }
            let mut proxies = Vec::new();
            for (i, s) in raw.trusted_proxies.iter().enumerate() {
                match Net::parse(s) {
                    Some(n) => proxies.push(n),
                    None => p.push(
                        format!("http.trusted_proxies[{i}]"),
                        format!("{s:?} is not an address or network (examples: \"10.0.0.5\", \"10.0.0.0/24\")"),
                    ),
                }
            }
            Some(TrustedProxy {
                header: header.to_ascii_lowercase(),
                proxies,
                ack_users: raw.ack_users,
            })
        }
    };
    let configured = !tokens.is_empty() || proxy.is_some();
    if !configured && !raw.listen.ip().is_loopback() {
        p.push(
            "http.listen",
            format!(
                "{} is not loopback: the dashboard and API then require authentication; add \
                 [[http.tokens]] or http.trusted_user_header with http.trusted_proxies",
                raw.listen
            ),
        );
    }
    HttpAuth {
        tokens,
        proxy,
        open: !configured,
        plain_bearer_refused: false,
    }
}

#[cfg(test)]
#[path = "http_auth_tests.rs"]
mod tests;
