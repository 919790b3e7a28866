//! Enrollment of a new host and renewal of its certificate, end to end: the collector's
//! `enroll` command and API issue one-time tokens, `backwatch-agent enroll` gets a certificate
//! for exactly the token's host over the enrollment listener, the collector then accepts that
//! agent over mTLS, and the agent renews before expiry and keeps reporting. Renewal opens
//! only near expiry, a renewed-away certificate stops working, a deny follows renewals, and
//! the token can come from a file or standard input.

use anyhow::{Context, Result, bail};
use backwatch_tests::harness::fleet::http_client;
use backwatch_tests::harness::{Agent, Certs, Collector, eventually, free_port};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

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

impl Fleet {
    /// `Renew` as whoever holds `cert` and `key`: the agent, or someone with a copy of its
    /// files. On success the new certificate and its key are written to `<out>.pem` and
    /// `<out>-key.pem` in the fleet's home; the collector's refusal otherwise.
    async fn renew_as(
        &self,
        host: &str,
        cert: &Path,
        key: &Path,
        out: &str,
    ) -> Result<std::result::Result<(PathBuf, PathBuf), tonic::Status>> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(self.certs.ca())?))
            .identity(Identity::from_pem(
                std::fs::read(cert)?,
                std::fs::read(key)?,
            ))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(self.enroll_url())?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await?;
        let new_key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![host.to_string()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host);
        let csr_pem = params.serialize_request(&new_key)?.pem()?;
        let reply = backwatch_proto::wire::EnrollmentClient::new(channel)
            .renew(backwatch_proto::wire::RenewRequest { csr_pem })
            .await;
        Ok(match reply {
            Ok(r) => {
                let (c, k) = (
                    self.home.path().join(format!("{out}.pem")),
                    self.home.path().join(format!("{out}-key.pem")),
                );
                std::fs::write(&c, &r.into_inner().cert_pem)?;
                std::fs::write(&k, new_key.serialize_pem())?;
                std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))?;
                Ok((c, k))
            }
            Err(status) => Err(status),
        })
    }

    /// A running agent for `host` with the given identity (no renewal due within a test).
    fn agent_with(&self, host: &str, cert: &Path, key: &Path) -> Result<Agent> {
        let dir = self.home.path().join("data");
        std::fs::create_dir_all(&dir)?;
        Agent::for_host(host, &self.certs, &self.collector)
            .identity(cert.to_path_buf(), key.to_path_buf())
            .disk("data", &dir, "1s")
            .start()
    }

    /// `backwatch-agent enroll --token-file <file>` with `stdin` on standard input.
    fn enroll_with_file(
        &self,
        agent: &Agent,
        host: &str,
        url: &str,
        file: &str,
        stdin: &str,
    ) -> Result<Output> {
        use std::io::Write;
        let mut child = Command::new(backwatch_tests::harness::bin("backwatch-agent"))
            .args(["enroll", "--collector", url, "--token-file", file, "--ca"])
            .arg(self.certs.ca())
            .args(["--host", host, "--config"])
            .arg(agent.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut input = child.stdin.take().context("stdin")?;
        // The agent may exit before reading (bad URL): a broken pipe is its answer, not ours.
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        Ok(child.wait_with_output()?)
    }
}

impl Fleet {
    /// Wait until the collector says the certificate in `cert` opened its first stream.
    async fn first_use_of(&self, cert: &Path) -> Result<()> {
        let line = format!("fingerprint={}", fingerprint(cert)?);
        eventually(WAIT, "the certificate's first stream", async || {
            let log = self.collector.log();
            if log
                .lines()
                .any(|l| l.contains("certificate used for the first time") && l.contains(&line))
            {
                Ok(())
            } else {
                bail!("log so far:\n{log}")
            }
        })
        .await;
        Ok(())
    }
}

/// SHA-256 of a PEM certificate file's DER, hex: what `deny_fingerprints` lists.
fn fingerprint(path: &Path) -> Result<String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(path)?;
    Ok(backwatch_collector::tls::fingerprint(&der))
}

async fn log_says(what: &str, log: impl Fn() -> String, text: &str) {
    eventually(WAIT, what, async || {
        let l = log();
        if l.contains(text) {
            Ok(())
        } else {
            bail!("log so far:\n{l}")
        }
    })
    .await;
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
        let (path, value) = backwatch_tests::harness::fleet::token_file(keys.path(), name)?;
        entries.push_str(&format!(
            "[[http.tokens]]\nname = \"{name}\"\ntoken_file = \"{path}\"\nrole = \"{role}\"\n"
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

#[tokio::test]
async fn renewal_before_the_last_third_of_validity_is_refused() -> Result<()> {
    // 30-day certificates (the default): renewal opens 20 days after issue.
    let f = fleet("").await?;
    let token = f.token("db42", None)?;
    let agent = f.agent("db42")?;
    let out = f.enroll(&agent, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    let (_, expiry, _) = cert_facts(&f.cert("db42"))?;

    // Holding the agent's key is not enough to get a fresh certificate at any time.
    let refused = f
        .renew_as("db42", &f.cert("db42"), &f.key("db42"), "db42-early")
        .await?
        .expect_err("renewal right after enrollment must be refused");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    let opens = chrono::DateTime::from_timestamp(expiry - 10 * 86_400, 0).context("opens")?;
    assert!(
        refused
            .message()
            .starts_with("renewal of this certificate opens at "),
        "{refused:?}"
    );
    let said = refused
        .metadata()
        .get(backwatch_proto::wire::RENEW_OPENS_AT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
        .context("renewal opening time in the refusal")?;
    // The last third of 30 days and a minute's backdating.
    assert!(
        (said.timestamp() - opens.timestamp()).abs() <= 30,
        "{said} vs {opens}"
    );
    let log = f.collector.log();
    assert!(log.contains("renewal before its window refused"), "{log}");
    assert!(log.contains("agent=db42"), "{log}");
    Ok(())
}

#[tokio::test]
async fn a_renewed_away_certificate_is_refused_and_a_deny_follows_renewals() -> Result<()> {
    // Renewal always open, and no grace: what a stolen copy of the old key meets.
    let f =
        fleet("cert_validity = \"1h\"\nrenew_window = \"1h\"\nsupersede_grace = \"0s\"\n").await?;
    let token = f.token("db42", None)?;
    let out = f.enroll(&f.agent("db42")?, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    let (c1, k1) = (f.cert("db42"), f.key("db42"));
    let (c2, k2) = f
        .renew_as("db42", &c1, &k1, "db42-2")
        .await?
        .map_err(|s| anyhow::anyhow!("renewal refused: {s:?}"))?;

    // The renewal takes over once it opened a stream (what the agent does right after
    // renewing); from then on, with no grace, the first certificate gets no stream and no
    // renewal either.
    let renewed = f.agent_with("db42", &c2, &k2)?;
    f.first_use_of(&c2).await?;
    drop(renewed);
    let old = f.agent_with("db42", &c1, &k1)?;
    log_says(
        "the old certificate refused",
        || old.log(),
        "was replaced by a newer one",
    )
    .await;
    drop(old);
    let again = f.renew_as("db42", &c1, &k1, "db42-x").await?;
    let again = again.expect_err("a superseded certificate cannot renew");
    assert_eq!(again.code(), tonic::Code::PermissionDenied, "{again:?}");
    assert!(
        again.message().contains("replaced by a newer one"),
        "{again:?}"
    );
    assert!(
        f.collector
            .log()
            .contains("refusing a superseded certificate"),
        "{}",
        f.collector.log()
    );

    // The newest one, renewed twice from the enrolled one, reports.
    let (c3, k3) = f
        .renew_as("db42", &c2, &k2, "db42-3")
        .await?
        .map_err(|s| anyhow::anyhow!("renewal refused: {s:?}"))?;
    let current = f.agent_with("db42", &c3, &k3)?;
    f.first_use_of(&c3).await?;
    f.collector
        .wait_status("db42", "disk.data", "ok", WAIT)
        .await;

    // Deny the enrolled certificate: its renewals go with it, open stream included.
    let path = f.collector.config_path();
    let cfg = std::fs::read_to_string(path)?.replacen(
        "[grpc]\n",
        &format!("[grpc]\ndeny_fingerprints = [\"{}\"]\n", fingerprint(&c1)?),
        1,
    );
    std::fs::write(path, cfg)?;
    f.collector.sighup();
    log_says(
        "the renewed certificate denied",
        || current.log(),
        "renewed from a denied certificate",
    )
    .await;
    let denied = f.renew_as("db42", &c3, &k3, "db42-4").await?;
    let denied = denied.expect_err("a renewal of a denied certificate cannot renew");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains("renewed from a denied certificate"),
        "{denied:?}"
    );
    let log = f.collector.log();
    assert!(
        log.contains(&format!("denied_ancestor={}", fingerprint(&c1)?)),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn the_token_comes_from_a_file_or_stdin_and_only_goes_to_https() -> Result<()> {
    let f = fleet("").await?;
    let url = f.enroll_url();

    // From a file, whitespace around it trimmed.
    let file = f.home.path().join("db42.token");
    std::fs::write(&file, format!("{}\n", f.token("db42", None)?))?;
    let db42 = f.agent("db42")?;
    let out = f.enroll_with_file(&db42, "db42", &url, &file.display().to_string(), "")?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(f.cert("db42").exists());

    // Not https: refused before anything is read or sent, so the token still works.
    let token = f.token("db43", None)?;
    let db43 = f.agent("db43")?;
    let plain = url.replacen("https://", "http://", 1);
    let out = f.enroll_with_file(&db43, "db43", &plain, "-", &token)?;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--collector \"{plain}\" must be an https:// URL")),
        "{}",
        text(&out)
    );
    assert!(!err.contains(&token), "{}", text(&out));

    // From standard input.
    let out = f.enroll_with_file(&db43, "db43", &url, "-", &format!(" {token}\n"))?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(f.cert("db43").exists());

    // A missing or empty file: exit 64 naming it.
    let missing = f.home.path().join("no-such.token");
    let out = f.enroll_with_file(&db43, "db43", &url, &missing.display().to_string(), "")?;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "reading the enrollment token from {}",
            missing.display()
        )),
        "{}",
        text(&out)
    );
    std::fs::write(&file, "\n")?;
    let out = f.enroll_with_file(&db43, "db43", &url, &file.display().to_string(), "")?;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no enrollment token there (empty)"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[tokio::test]
async fn within_the_grace_the_renewed_away_certificate_still_works() -> Result<()> {
    // The default grace (10 min): the agent that renewed may still be reconnecting.
    let f = fleet("cert_validity = \"1h\"\nrenew_window = \"1h\"\n").await?;
    let token = f.token("db42", None)?;
    let out = f.enroll(&f.agent("db42")?, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    let (c1, k1) = (f.cert("db42"), f.key("db42"));
    f.renew_as("db42", &c1, &k1, "db42-2")
        .await?
        .map_err(|s| anyhow::anyhow!("renewal refused: {s:?}"))?;
    let _old = f.agent_with("db42", &c1, &k1)?;
    f.collector
        .wait_status("db42", "disk.data", "ok", WAIT)
        .await;
    assert!(
        !f.collector.log().contains("superseded"),
        "{}",
        f.collector.log()
    );
    Ok(())
}

#[tokio::test]
async fn an_agent_waits_for_a_later_renewal_window_then_renews() -> Result<()> {
    // 60 s certificates backdated a minute: the agent asks with 40 s left (20 s after issue);
    // this collector opens renewal with 35 s left, says so, and the agent waits for it.
    let f = fleet("cert_validity = \"60s\"\nrenew_window = \"35s\"\n").await?;
    let token = f.token("db42", None)?;
    let mut agent = f.agent("db42")?;
    let out = f.enroll(&agent, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    let (first_serial, _, _) = cert_facts(&f.cert("db42"))?;
    agent.launch()?;
    eventually(Duration::from_secs(60), "the agent to renew", async || {
        let (serial, _, _) = cert_facts(&f.cert("db42"))?;
        if serial != first_serial {
            Ok(())
        } else {
            bail!("certificate still {serial}")
        }
    })
    .await;
    let log = agent.log();
    assert!(
        log.contains("the collector opens renewal later; waiting until then"),
        "{log}"
    );
    assert!(!log.contains("certificate renewal failed"), "{log}");
    assert!(
        f.collector
            .log()
            .contains("renewal before its window refused"),
        "{}",
        f.collector.log()
    );
    Ok(())
}

#[tokio::test]
async fn a_renewal_never_used_locks_nobody_out_and_may_be_renewed_past() -> Result<()> {
    // No grace at all: before, a renewal superseded the old certificate the moment it was
    // issued, so an agent that never got the reply (dropped connection, full disk) was locked
    // out. Now only a renewal that opened a stream supersedes.
    let f =
        fleet("cert_validity = \"1h\"\nrenew_window = \"1h\"\nsupersede_grace = \"0s\"\n").await?;
    let token = f.token("db42", None)?;
    let out = f.enroll(&f.agent("db42")?, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    let (c1, k1) = (f.cert("db42"), f.key("db42"));
    // The reply "lost": its certificate is never used.
    f.renew_as("db42", &c1, &k1, "db42-lost")
        .await?
        .map_err(|s| anyhow::anyhow!("renewal refused: {s:?}"))?;

    // The old certificate still reports, and renews again.
    let old = f.agent_with("db42", &c1, &k1)?;
    f.first_use_of(&c1).await?;
    f.collector
        .wait_status("db42", "disk.data", "ok", WAIT)
        .await;
    let (c2, k2) = f
        .renew_as("db42", &c1, &k1, "db42-2")
        .await?
        .map_err(|s| anyhow::anyhow!("second renewal refused: {s:?}"))?;
    assert!(
        !f.collector.log().contains("superseded"),
        "{}",
        f.collector.log()
    );
    assert!(
        !old.log().contains("replaced by a newer one"),
        "{}",
        old.log()
    );

    // Once the second renewal opened a stream, the old certificate's stream is refused (no
    // grace), and so is another renewal from it.
    drop(old);
    let current = f.agent_with("db42", &c2, &k2)?;
    f.first_use_of(&c2).await?;
    let old = f.agent_with("db42", &c1, &k1)?;
    log_says(
        "the old certificate refused",
        || old.log(),
        "was replaced by a newer one",
    )
    .await;
    let again = f
        .renew_as("db42", &c1, &k1, "db42-x")
        .await?
        .expect_err("a superseded certificate cannot renew");
    assert_eq!(again.code(), tonic::Code::PermissionDenied, "{again:?}");
    assert!(
        again.message().contains("replaced by a newer one"),
        "{again:?}"
    );
    // The lost renewal, older than the one in use, is superseded too.
    let lost = f
        .renew_as(
            "db42",
            &f.home.path().join("db42-lost.pem"),
            &f.home.path().join("db42-lost-key.pem"),
            "db42-y",
        )
        .await?
        .expect_err("the lost renewal is superseded by the used one");
    assert_eq!(lost.code(), tonic::Code::PermissionDenied, "{lost:?}");
    assert!(
        !current.log().contains("replaced by a newer one"),
        "{}",
        current.log()
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_whose_renewal_is_in_use_cannot_renew_again() -> Result<()> {
    // The default grace (10 min): the old certificate still opens streams, but a second
    // renewal from it (a stolen copy forking the identity) is refused once the agent's
    // renewal opened a stream.
    let f = fleet("cert_validity = \"1h\"\nrenew_window = \"1h\"\n").await?;
    let token = f.token("db42", None)?;
    let out = f.enroll(&f.agent("db42")?, "db42", &token)?;
    assert!(out.status.success(), "{}", text(&out));
    let (c1, k1) = (f.cert("db42"), f.key("db42"));
    let (c2, k2) = f
        .renew_as("db42", &c1, &k1, "db42-2")
        .await?
        .map_err(|s| anyhow::anyhow!("renewal refused: {s:?}"))?;
    let agent = f.agent_with("db42", &c2, &k2)?;
    f.first_use_of(&c2).await?;

    let thief = f
        .renew_as("db42", &c1, &k1, "db42-thief")
        .await?
        .expect_err("a second renewal beside the one in use must be refused");
    assert_eq!(thief.code(), tonic::Code::PermissionDenied, "{thief:?}");
    assert!(
        thief
            .message()
            .starts_with("this certificate of db42 was already renewed (serial "),
        "{thief:?}"
    );
    assert!(
        thief.message().contains("the renewal is in use")
            && thief
                .message()
                .contains("enroll db42 again with a new token"),
        "{thief:?}"
    );
    assert!(!f.home.path().join("db42-thief.pem").exists());
    let log = f.collector.log();
    assert!(
        log.contains("renewal by a certificate already renewed, with the renewal in use, refused"),
        "{log}"
    );
    // The agent's certificate is untouched by the attempt, and renews itself as usual.
    f.renew_as("db42", &c2, &k2, "db42-3")
        .await?
        .map_err(|s| anyhow::anyhow!("renewal of the one in use refused: {s:?}"))?;
    assert!(
        !agent.log().contains("replaced by a newer one"),
        "{}",
        agent.log()
    );
    Ok(())
}
