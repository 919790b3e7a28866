//! Email over TLS with authentication, against aiosmtpd holding a certificate from a private
//! CA (`smtp.ca_file`): STARTTLS and implicit TLS deliver; a wrong password is the server's
//! refusal, visible in the API and retried until the password is fixed, and the password
//! itself is never logged.

use anyhow::{Result, ensure};
use backwatch_tests::harness::alerting::{
    DB1_DISK_WARNS, DBA, FAST, PROCEDURE_ROUTES, notifications,
};
use backwatch_tests::harness::{Agent, Certs, Collector, Smtp, SmtpTls, eventually};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);
const PASSWORD: &str = "pa55-w0rd-never-logged";

/// A collector whose `[smtp]` speaks `mode` to `smtp` as user `backwatch` with `password`,
/// and an agent whose disk is a warning. Returns both (they stop when dropped).
async fn scene(
    certs: &Certs,
    smtp: &Smtp,
    mode: &str,
    password: &str,
) -> Result<(Collector, Agent, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let password_file = dir.path().join("smtp-password");
    std::fs::write(&password_file, format!("{password}\n"))?;
    let smtp_toml = format!(
        "[smtp]\nhost = \"localhost\"\nport = {}\ntls = \"{mode}\"\n\
         from = \"Backwatch <backwatch@collector.test>\"\ntimeout = \"10s\"\n\
         username = \"backwatch\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        smtp.port(),
        password_file.display(),
        certs.ca().display()
    );
    let toml = format!("{smtp_toml}{FAST}{PROCEDURE_ROUTES}{DB1_DISK_WARNS}");
    let collector = Collector::sqlite(certs).toml(&toml).start().await?;
    let agent = Agent::for_host("db1", certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    Ok((collector, agent, dir))
}

/// The fleet CA's collector certificate names `localhost`: good enough for a mail server.
fn server_tls(certs: &Certs, tls: SmtpTls, login: (&str, &str)) -> Result<Smtp> {
    let (cert, key) = (
        certs.dir().join("collector.pem"),
        certs.dir().join("collector-key.pem"),
    );
    Smtp::capture_tls(tls, &cert, &key, Some(login))
}

async fn delivers_over(tls: SmtpTls, mode: &str) -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let smtp = server_tls(&certs, tls, ("backwatch", PASSWORD))?;
    let (collector, _agent, _dir) = scene(&certs, &smtp, mode, PASSWORD).await?;
    smtp.wait_for(WAIT, "the warning over TLS", |m| {
        m.iter().filter(|m| m.is_for(DBA)).count() == 1
    })
    .await;
    assert!(
        !collector.log().contains(PASSWORD),
        "the password reached the log"
    );
    Ok(())
}

#[tokio::test]
async fn starttls_with_authentication_delivers() -> Result<()> {
    delivers_over(SmtpTls::Starttls, "starttls").await
}

#[tokio::test]
async fn implicit_tls_with_authentication_delivers() -> Result<()> {
    delivers_over(SmtpTls::Implicit, "tls").await
}

/// A wrong password (a rotated one, say) refuses every message alike: the refusal is shown
/// with the server's answer and retried, not given up on, and once the password is fixed
/// (SIGHUP) the waiting alert goes out. The password itself is never logged.
#[tokio::test]
async fn a_wrong_password_is_retried_with_the_servers_answer_until_fixed() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let smtp = server_tls(&certs, SmtpTls::Starttls, ("backwatch", PASSWORD))?;
    let (collector, _agent, dir) = scene(&certs, &smtp, "starttls", "not-the-password").await?;
    let row = eventually(WAIT, "the refusal retried", async || {
        let rows = notifications(&collector, "state=pending").await?;
        ensure!(
            rows.len() == 1 && rows[0]["attempts"].as_u64().is_some_and(|n| n >= 2),
            "{rows:#?}"
        );
        Ok(rows[0].clone())
    })
    .await;
    let answer = row["last_error"].as_str().unwrap_or_default();
    assert!(answer.contains("535"), "{row}");
    assert!(smtp.messages()?.is_empty());
    assert!(notifications(&collector, "state=failed").await?.is_empty());

    std::fs::write(dir.path().join("smtp-password"), format!("{PASSWORD}\n"))?;
    collector.sighup();
    smtp.wait_for(
        WAIT,
        "the waiting warning, once the password is right",
        |m| m.iter().filter(|m| m.is_for(DBA)).count() == 1,
    )
    .await;
    let log = collector.log();
    assert!(
        !log.contains("not-the-password") && !log.contains(PASSWORD),
        "a password reached the log"
    );
    Ok(())
}
