//! Connection URLs: what SQLite needs added, and what must never be shown.

/// The URL to connect with (`mode=rwc` added unless a mode is given, so a missing file is
/// created) and whether it names an in-memory database.
pub(super) fn sqlite_url(url: &str) -> (String, bool) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let mode = params
        .split('&')
        .find_map(|kv| kv.strip_prefix("mode="))
        .map(str::to_owned);
    let in_memory = path == ":memory:" || mode.as_deref() == Some("memory");
    if mode.is_some() || in_memory {
        (url.to_owned(), in_memory)
    } else if params.is_empty() {
        (format!("{url}?mode=rwc"), false)
    } else {
        (format!("{url}&mode=rwc"), false)
    }
}

/// `url` with its password replaced by `***`, fit for errors and logs: the password of the
/// user-info part and the value of any `password=` parameter. When unsure where user-info
/// ends it redacts too much rather than too little.
pub fn redact_url(url: &str) -> String {
    let redacted = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.eq_ignore_ascii_case("sqlite") => {
            // The last '@' ends user-info (a literal '@' in a password must be %40).
            match rest.rfind('@') {
                Some(at) => match rest[..at].split_once(':') {
                    Some((user, _password)) => {
                        format!("{scheme}://{user}:***{}", &rest[at..])
                    }
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    redact_password_params(&redacted)
}

/// A webhook URL fit for errors, logs, the API and `config check`: scheme, host and port
/// only. Chat and paging services put the credential in the path or the query
/// (`https://hooks.slack.com/services/T0/B0/XXXX`, `?token=`), and user-info may hold a
/// password, so all of those become `…`.
pub fn redact_webhook(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // The last '@' ends user-info (a literal '@' elsewhere must be %40).
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let more = if rest[end..].trim_start_matches('/').is_empty() && !authority.contains('@') {
        ""
    } else {
        "/…"
    };
    format!("{scheme}://{host}{more}")
}

fn redact_password_params(s: &str) -> String {
    const KEY: &str = "password=";
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower` index `s`.
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(KEY) {
        let value_start = pos + found + KEY.len();
        let value_end = s[value_start..]
            .find(['&', ' ', '#', ';'])
            .map_or(s.len(), |i| value_start + i);
        out.push_str(&s[pos..value_start]);
        out.push_str("***");
        pos = value_end;
    }
    out.push_str(&s[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_webhook;

    #[test]
    fn a_webhook_url_keeps_only_scheme_host_and_port() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
                "https://hooks.slack.com/…",
            ),
            (
                "http://127.0.0.1:9000/hook?token=s3cret",
                "http://127.0.0.1:9000/…",
            ),
            ("https://user:pass@example.com", "https://example.com/…"),
            ("https://example.com/", "https://example.com"),
            ("https://example.com", "https://example.com"),
            ("https://example.com?key=1", "https://example.com/…"),
            ("not a url with a secret", "…"),
        ] {
            assert_eq!(redact_webhook(url), shown, "{url}");
        }
    }
}
