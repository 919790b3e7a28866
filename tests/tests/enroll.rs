//! Enrollment of a new host and renewal of its certificate, end to end: the collector's
//! `enroll` command and API issue one-time tokens, `backwatch-agent enroll` gets a certificate
//! for exactly the token's host over the enrollment listener, the collector then accepts that
//! agent over mTLS, and the agent renews before expiry and keeps reporting.

use anyhow::{Context, Result, bail};
use backwatch_tests::harness::fleet::http_client;
use backwatch_tests::harness::{Agent, Certs, Collector, eventually, free_port};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

struct Fleet {
    certs: Certs,
    collector: Collector,
    enroll_port: u16,
    /// Where agents keep their identity (nothing there before enrollment).
    home: tempfile::TempDir,
}

async fn fleet(extra: &str) -> Result<Fleet> {
    let certs = Certs::fleet(&[])?;
    let enroll_port = free_port();
    let collector = Collector::sqlite(&certs)
        .toml(&format!(
            "[enroll]\nlisten = \"127.0.0.1:{enroll_port}\"\nca_key = \"{}\"\n{extra}",
            certs.dir().join("ca-key.pem").display()
        ))
        .start()
        .await?;
    Ok(Fleet {
        certs,
        collector,
        enroll_port,
        home: tempfile::tempdir()?,
    })
}

impl Fleet {
    fn enroll_url(&self) -> String {
        format!("https://localhost:{}", self.enroll_port)
    }

    /// `backwatch-collector enroll --host H [--ttl T]`: the token (stdout).
    fn token(&self, host: &str, ttl: Option<&str>) -> Result<String> {
        let mut cmd = Command::new(backwatch_tests::harness::bin("backwatch-collector"));
        cmd.args(["enroll", "--host", host, "--config"])
            .arg(self.collector.config_path());
        if let Some(t) = ttl {
            cmd.args(["--ttl", t]);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("enroll failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        assert!(token.starts_with("bwe_"), "{token}");
        Ok(token)
    }

    fn cert(&self, host: &str) -> PathBuf {
        self.home.path().join(format!("{host}.pem"))
    }
    fn key(&self, host: &str) -> PathBuf {
        self.home.path().join(format!("{host}-key.pem"))
    }

    /// An agent configured for `host` whose certificate and key do not exist yet; its
    /// renewal goes to this collector's enrollment listener.
    fn agent(&self, host: &str) -> Result<Agent> {
        let dir = self.home.path().join("data");
        std::fs::create_dir_all(&dir)?;
        let agent = Agent::for_host(host, &self.certs, &self.collector)
            .identity(self.cert(host), self.key(host))
            .disk("data", &dir, "1s")
            .write()?;
        let text = std::fs::read_to_string(agent.config_path())?;
        std::fs::write(
            agent.config_path(),
            text.replacen(
                "[collector]\n",
                &format!("[collector]\nenroll_url = \"{}\"\n", self.enroll_url()),
                1,
            ),
        )?;
        Ok(agent)
    }

    /// `backwatch-agent enroll` for `agent` as `host` with `token`.
    fn enroll(&self, agent: &Agent, host: &str, token: &str) -> Result<Output> {
        let ca = self.certs.ca().display().to_string();
        let url = self.enroll_url();
        agent.run_cli(&[
            "enroll",
            "--collector",
            &url,
            "--token",
            token,
            "--ca",
            &ca,
            "--host",
            host,
        ])
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (serial, not_after as Unix seconds, DNS names) of a PEM certificate file.
fn cert_facts(path: &Path) -> Result<(String, i64, Vec<String>)> {
    let bytes = std::fs::read(path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)?;
    let x509 = pem.parse_x509()?;
    let names = x509
        .subject_alternative_name()?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok((
        x509.raw_serial_as_string(),
        x509.validity().not_after.timestamp(),
        names,
    ))
}

#[tokio::test]
async fn enrolled_host_reports_over_mtls_and_its_token_works_once() -> Result<()> {
    let f = fleet("").await?;
    let token = f.token("db42", None)?;
    let agent = f.agent("db42")?;
    let out = f.enroll(&agent, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("enrolled db42: certificate "),
        "{}",
        text(&out)
    );
    // The key was made here, is private, and the certificate names db42 only.
    let mode = std::fs::metadata(f.key("db42"))?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (_, _, names) = cert_facts(&f.cert("db42"))?;
    assert_eq!(names, ["DNSName(db42)"]);
    // The token is not in the store, only its digest; nor in the collector's log.
    assert!(!f.collector.log().contains(&token));

    let mut agent = agent;
    agent.launch()?;
    let check = f
        .collector
        .wait_status("db42", "disk.data", "ok", WAIT)
        .await;
    assert!(check["received_at"].is_string(), "{check}");

    // The same token again: refused, saying why, and nothing is overwritten.
    let before = std::fs::read(f.cert("db42"))?;
    let again = f.enroll(&agent, "db42", &token)?;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(
            "enrollment failed: the collector refused: this enrollment token was already used"
        ),
        "{}",
        text(&again)
    );
    assert_eq!(std::fs::read(f.cert("db42"))?, before);
    Ok(())
}

#[tokio::test]
async fn expired_unknown_and_other_host_tokens_are_refused() -> Result<()> {
    let f = fleet("").await?;
    let agent = f.agent("db43")?;

    // db42's token cannot enroll db43, and the refusal does not burn it.
    let token = f.token("db42", None)?;
    let out = f.enroll(&agent, "db43", &token)?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the certificate request names db43, but this enrollment is for db42"),
        "{}",
        text(&out)
    );
    assert!(!f.cert("db43").exists() && !f.key("db43").exists());
    let ok = f.enroll(&f.agent("db42")?, "db42", &token)?;
    assert!(ok.status.success(), "{}", text(&ok));

    // Expired.
    let short = f.token("db43", Some("1s"))?;
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the token's second pass
    let out = f.enroll(&agent, "db43", &short)?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("this enrollment token expired at"),
        "{}",
        text(&out)
    );

    // Unknown.
    let out = f.enroll(&agent, "db43", "bwe_0000")?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown enrollment token"),
        "{}",
        text(&out)
    );
    assert!(!f.cert("db43").exists());
    Ok(())
}

#[tokio::test]
async fn api_issues_tokens_to_admin_tokens_only() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let mut entries = String::new();
    let mut values = Vec::new();
    for (name, role) in [("dba", "ack"), ("ops", "admin")] {
        let value: String = (0..64)
            .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
            .collect();
        let path = keys.path().join(name);
        std::fs::write(&path, &value)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        entries.push_str(&format!(
            "[[http.tokens]]\nname = \"{name}\"\ntoken_file = \"{}\"\nrole = \"{role}\"\n",
            path.display()
        ));
        values.push(value);
    }
    let f = fleet(&entries).await?;
    let http = http_client();
    let url = f.collector.url("/api/v1/enrollments");
    let body = serde_json::json!({"host": "db44", "ttl_secs": 600});
    let denied = http
        .post(&url)
        .bearer_auth(&values[0])
        .json(&body)
        .send()
        .await?;
    assert_eq!(denied.status().as_u16(), 403);
    let r = http
        .post(&url)
        .bearer_auth(&values[1])
        .json(&body)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    let issued: serde_json::Value = r.json().await?;
    assert_eq!(issued["host"], "db44");
    let token = issued["token"].as_str().context("token")?.to_string();
    let bad = http
        .post(&url)
        .bearer_auth(&values[1])
        .json(&serde_json::json!({"host": "no such host!"}))
        .send()
        .await?;
    assert_eq!(bad.status().as_u16(), 400);

    let out = f.enroll(&f.agent("db44")?, "db44", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

#[tokio::test]
async fn agent_renews_before_expiry_and_keeps_reporting() -> Result<()> {
    // 60 s certificates (backdated a minute): renewal is due 20 s after each issue.
    let f = fleet("cert_validity = \"60s\"\n").await?;
    let token = f.token("db42", None)?;
    let mut agent = f.agent("db42")?;
    let out = f.enroll(&agent, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    let (first_serial, first_expiry, _) = cert_facts(&f.cert("db42"))?;
    agent.launch()?;
    f.collector
        .wait_status("db42", "disk.data", "ok", WAIT)
        .await;

    let renewed = eventually(Duration::from_secs(60), "the agent to renew", async || {
        let (serial, expiry, _) = cert_facts(&f.cert("db42"))?;
        if serial != first_serial && expiry > first_expiry {
            Ok(serial)
        } else {
            bail!("certificate still {serial}")
        }
    })
    .await;
    assert_ne!(renewed, first_serial);
    assert!(
        f.collector.log().contains("agent certificate renewed"),
        "{}",
        f.collector.log()
    );
    assert!(
        agent.log().contains("reconnecting with the new identity"),
        "{}",
        agent.log()
    );

    // Past the first certificate's expiry results still arrive: the collector accepts the
    // agent only with a renewed certificate by then.
    let expired_at = chrono::DateTime::from_timestamp(first_expiry, 0).context("expiry")?;
    f.collector
        .wait_check(
            "db42",
            "disk.data",
            "to have a result received after the first certificate expired",
            Duration::from_secs(90),
            |c| {
                c["received_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > expired_at + chrono::Duration::seconds(2))
            },
        )
        .await;
    Ok(())
}
