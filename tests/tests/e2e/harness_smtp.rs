//! The SMTP capture harness itself: it stores what a client sent, parsed; it refuses when
//! told; and a wrong expectation fails instead of passing silently.

use anyhow::{Result, ensure};
use backwatch_tests::harness::Smtp;
use std::process::Command;
use std::time::Duration;

/// Send one multipart message with Python's smtplib (another client than the collector's).
fn send(smtp: &Smtp, to: &str) -> Result<std::process::Output> {
    let script = format!(
        r#"
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "probe@example.com"
m["To"] = "{to}"
m["Subject"] = "[WARNING] db1 disk.backup: 76% full"
m["Message-ID"] = "<probe-1@example.com>"
m.set_content("plain\r\nbody")
m.add_alternative("<p>&lt;b&gt;</p>", subtype="html")
with smtplib.SMTP("127.0.0.1", {port}) as s:
    s.send_message(m)
"#,
        port = smtp.port()
    );
    Ok(Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()?)
}

#[tokio::test]
async fn capture_stores_messages_parsed_and_refuses_when_told() -> Result<()> {
    let smtp = Smtp::capture()?;
    let out = send(&smtp, "dba@example.com")?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = smtp.messages()?;
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(m.is_for("dba@example.com"));
    assert_eq!(m.subject, "[WARNING] db1 disk.backup: 76% full");
    assert_eq!(m.message_id, "<probe-1@example.com>");
    assert_eq!(m.text(), "plain\nbody\n");
    assert_eq!(m.html(), "<p>&lt;b&gt;</p>\n");

    smtp.reject_recipients(Some("451 4.3.2 try later"))?;
    let out = send(&smtp, "dba@example.com")?;
    assert!(!out.status.success(), "refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("4.3.2 try later"));
    assert_eq!(smtp.messages()?.len(), 1, "nothing stored when refused");
    Ok(())
}

#[tokio::test]
async fn stopped_server_refuses_connections_until_started() -> Result<()> {
    let mut smtp = Smtp::capture()?;
    smtp.stop();
    assert!(!send(&smtp, "dba@example.com")?.status.success());
    smtp.start()?;
    assert!(send(&smtp, "dba@example.com")?.status.success());
    assert_eq!(smtp.to("dba@example.com")?.len(), 1);
    Ok(())
}

#[tokio::test]
#[should_panic(expected = "waiting for a message that never comes")]
async fn a_wrong_expectation_fails() {
    let smtp = Smtp::capture().expect("capture server");
    smtp.wait_for(
        Duration::from_millis(500),
        "a message that never comes",
        |m| !m.is_empty(),
    )
    .await;
}
