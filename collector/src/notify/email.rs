//! Email over SMTP with lettre's connection API, so the worker can act between the SMTP
//! transaction's steps: `begin` sends MAIL, RCPT and DATA; the worker records the hand-over;
//! `finish` sends the body and reads the server's verdict.
//!
//! Why not `AsyncSmtpTransport::send`: it runs all steps at once, so a crash after it
//! returned and before the outbox row is marked could not be told apart from a crash before
//! the server saw anything. Split, a crash before the hand-over mark is provably harmless
//! (the server never received a complete message) and only a crash in the short window after
//! it can yield a second copy, which then carries the same Message-ID.
//!
//! Invariants: STARTTLS is required when configured (never silently skipped); the password
//! goes only to lettre's AUTH; server answers are kept verbatim for the outbox.

use super::Failure;
use crate::config::alerting::{Smtp, SmtpTls};
use crate::store::outbox::Notification;
use crate::store::reports::Attachment;
use base64::Engine;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Attachment as LettreAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::time::{Duration, SystemTime};

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders stay quiet.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

pub struct Mailer {
    cfg: Smtp,
    from: Mailbox,
    tls: Option<TlsParameters>,
    hello: ClientId,
    credentials: Option<Credentials>,
}

/// A lettre error as a [`Failure`]: 5xx is permanent, the rest is worth a retry; after the
/// hand-over only a definite answer (a reply code) clears the doubt.
fn failure(e: &lettre::transport::smtp::Error, handed_over: bool) -> Failure {
    Failure {
        text: e.to_string(),
        permanent: e.is_permanent(),
        in_doubt: handed_over && !(e.is_permanent() || e.is_transient()),
        unreachable: false,
    }
}

/// A refusal of the session (connect, STARTTLS, AUTH) as a [`Failure`]: never permanent. A
/// 5xx there ("535 authentication failed" after a password rotation, "530 must issue
/// STARTTLS", "554 no service") refuses every message alike, and is fixed on the relay or in
/// `[smtp]`: the message waits for that, until `give_up_after`, instead of being dropped with
/// every other alert of the moment.
fn session_failure(e: &lettre::transport::smtp::Error) -> Failure {
    Failure {
        permanent: false,
        unreachable: true,
        ..failure(e, false)
    }
}

/// Text and HTML as alternatives; with inline parts (a report's charts) the HTML sits in a
/// `multipart/related` with them, each part named by the Content-ID its `cid:` URL uses.
/// Mail clients that block remote images still show these: they travel in the message.
fn body(n: &Notification) -> Result<MultiPart, Failure> {
    let parts: Vec<Attachment> = match n.attachments.as_deref() {
        None | Some("") => Vec::new(),
        Some(json) => serde_json::from_str(json).map_err(|e| Failure {
            text: format!("stored inline parts do not parse: {e}"),
            permanent: true,
            in_doubt: false,
            unreachable: false,
        })?,
    };
    if parts.is_empty() {
        return Ok(MultiPart::alternative_plain_html(
            n.body_text.clone(),
            n.body_html.clone(),
        ));
    }
    let mut related = MultiPart::related().singlepart(SinglePart::html(n.body_html.clone()));
    for p in parts {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p.data.as_bytes())
            .map_err(|e| Failure {
                text: format!("inline part {}: {e}", p.cid),
                permanent: true,
                in_doubt: false,
                unreachable: false,
            })?;
        let kind = ContentType::parse(&p.content_type).map_err(|e| Failure {
            text: format!(
                "inline part {}: content type {:?}: {e}",
                p.cid, p.content_type
            ),
            permanent: true,
            in_doubt: false,
            unreachable: false,
        })?;
        related = related.singlepart(LettreAttachment::new_inline(p.cid).body(bytes, kind));
    }
    Ok(MultiPart::alternative()
        .singlepart(SinglePart::plain(n.body_text.clone()))
        .multipart(related))
}

impl Mailer {
    pub fn new(cfg: &Smtp) -> Result<Mailer, String> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| format!("smtp.from {:?}: {e}", cfg.from))?;
        let tls = match cfg.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let mut b = TlsParameters::builder(cfg.host.clone());
                if let Some(path) = &cfg.ca_file {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("reading smtp.ca_file {}: {e}", path.display()))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| format!("smtp.ca_file {}: {e}", path.display()))?;
                    b = b.add_root_certificate(cert);
                }
                Some(
                    b.build_rustls()
                        .map_err(|e| format!("smtp TLS settings: {e}"))?,
                )
            }
        };
        let hello = cfg
            .hello_name
            .clone()
            .map_or_else(ClientId::default, ClientId::Domain);
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose().to_string())),
            _ => None,
        };
        Ok(Mailer {
            cfg: cfg.clone(),
            from,
            tls,
            hello,
            credentials,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.cfg.timeout
    }

    /// The whole message as it goes on the wire. Date and Message-ID come from the outbox
    /// row, so every attempt sends the same message.
    pub fn message(&self, n: &Notification) -> Result<(Mailbox, Vec<u8>), Failure> {
        let to: Mailbox = n.recipient.parse().map_err(|e| Failure {
            text: format!("recipient {:?}: {e}", n.recipient),
            permanent: true,
            in_doubt: false,
            unreachable: false,
        })?;
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(n.subject.clone())
            .message_id(Some(n.message_id.clone()))
            .date(SystemTime::from(n.created_at))
            .header(AutoSubmitted);
        if let Some(thread) = &n.thread_id {
            b = b.references(thread.clone());
        }
        let msg = b.multipart(body(n)?).map_err(|e| Failure {
            text: format!("building the message: {e}"),
            permanent: true,
            in_doubt: false,
            unreachable: false,
        })?;
        Ok((to, msg.formatted()))
    }

    pub async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let server = (self.cfg.host.as_str(), self.cfg.port);
        let wrapper = match self.cfg.tls {
            SmtpTls::Tls => self.tls.clone(),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            server,
            Some(self.cfg.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| session_failure(&e))?;
        if let (SmtpTls::Starttls, Some(tls)) = (self.cfg.tls, &self.tls) {
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(|e| session_failure(&e))?;
        }
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c)
                .await
                .map_err(|e| session_failure(&e))?;
        }
        Ok(conn)
    }

    /// MAIL FROM, RCPT TO, DATA: after this the server waits for the body.
    pub async fn begin(
        &self,
        conn: &mut AsyncSmtpConnection,
        to: &Mailbox,
        body: &[u8],
    ) -> Result<(), Failure> {
        let mut params = Vec::new();
        if !body.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let from = Some(self.from.email.clone());
        conn.command(Mail::new(from, params))
            .await
            .map_err(|e| failure(&e, false))?;
        conn.command(Rcpt::new(to.email.clone(), Vec::new()))
            .await
            .map_err(|e| failure(&e, false))?;
        conn.command(Data).await.map_err(|e| failure(&e, false))?;
        Ok(())
    }

    /// The body and the final dot; returns the server's answer.
    pub async fn finish(
        &self,
        conn: &mut AsyncSmtpConnection,
        body: &[u8],
    ) -> Result<String, Failure> {
        let answer = conn.message(body).await.map_err(|e| failure(&e, true))?;
        let text: Vec<&str> = answer.message().collect();
        Ok(format!("{} {}", answer.code(), text.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::{Channel, OutboxState};
    use chrono::{DateTime, Utc};

    fn mailer() -> Mailer {
        Mailer::new(&Smtp {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Backwatch <bw@example.com>".into(),
            timeout: Duration::from_secs(5),
            ca_file: None,
            hello_name: Some("collector.test".into()),
        })
        .expect("mailer")
    }

    fn row(recipient: &str) -> Notification {
        let at = DateTime::<Utc>::from_timestamp(1_735_689_600, 0).expect("time");
        Notification {
            id: 1,
            alert_id: Some(7),
            event_id: Some(9),
            kind: "opened".into(),
            route: "dba".into(),
            channel: Channel::Email,
            recipient: recipient.into(),
            subject: "[CRITICAL] db1 wal.main: archiving is failing".into(),
            body_text: "plain words".into(),
            body_html: "<p>html words</p>".into(),
            payload: String::new(),
            message_id: "<m-1@example.com>".into(),
            thread_id: Some("<alert-7@example.com>".into()),
            state: OutboxState::Sending,
            attempts: 1,
            created_at: at,
            next_attempt_at: at,
            claimed_by: None,
            lease_until: None,
            handed_over_at: None,
            sent_at: None,
            last_error: None,
            attachments: None,
        }
    }

    #[test]
    fn message_carries_the_rows_identity_and_both_parts() {
        let (to, bytes) = mailer()
            .message(&row("DBA <dba@example.com>"))
            .expect("message");
        assert_eq!(to.email.to_string(), "dba@example.com");
        let text = String::from_utf8_lossy(&bytes);
        for want in [
            "Message-ID: <m-1@example.com>",
            "References: <alert-7@example.com>",
            "Date: Wed, 01 Jan 2025 00:00:00 +0000",
            "Auto-Submitted: auto-generated",
            "Subject: [CRITICAL] db1 wal.main: archiving is failing",
            "multipart/alternative",
            "text/plain",
            "text/html",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn inline_parts_travel_as_related_images() {
        let mut n = row("m@example.com");
        n.body_html = "<img src=\"cid:chart@backwatch\">".into();
        n.attachments = Some(
            r#"[{"cid":"chart@backwatch","content_type":"image/png","data":"iVBORw0KGgo="}]"#
                .into(),
        );
        let (_, bytes) = mailer().message(&n).expect("message");
        let text = String::from_utf8_lossy(&bytes);
        for want in [
            "multipart/alternative",
            "multipart/related",
            "Content-Type: image/png",
            "Content-ID: <chart@backwatch>",
            "Content-Disposition: inline",
            "iVBORw0KGgo=",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        n.attachments = Some("not json".into());
        assert!(mailer().message(&n).is_err_and(|e| e.permanent));
    }

    #[test]
    fn bad_recipient_is_a_permanent_failure() {
        let err = mailer()
            .message(&row("not an address"))
            .expect_err("refused");
        assert!(err.permanent && !err.in_doubt, "{}", err.text);
    }
}
