//! Error text for logs and results, shared by both binaries.

/// An error and every cause behind it on one line, joined by ": " ("connecting to …: transport
/// error: … UnknownCA"). A cause whose text the line already holds is left out (many errors
/// repeat their source in their own message), and line breaks become "; " so a multi-line
/// server message stays one log field.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out.replace('\n', "; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connecting to https://c:7443")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("transport error\nreceived fatal alert: UnknownCA")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("db error: ERROR: permission denied")]
    struct Repeats(#[source] Same);

    #[derive(Debug, thiserror::Error)]
    #[error("ERROR: permission denied")]
    struct Same;

    #[test]
    fn causes_are_joined_on_one_line() {
        assert_eq!(
            chain(&Outer(Inner)),
            "connecting to https://c:7443: transport error; received fatal alert: UnknownCA"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        assert_eq!(chain(&Repeats(Same)), "db error: ERROR: permission denied");
    }
}
