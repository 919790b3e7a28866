//! Transport security end to end: identity from the certificate, strangers and plaintext
//! refused.

use anyhow::{Result, bail};
use backwatch_tests::harness::{Agent, Certs, Collector, eventually};
use std::io::{Read, Write};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn host_identity_comes_from_the_client_certificate() -> Result<()> {
    let certs = Certs::fleet(&["db-east-1", "db-west-2"])?;
    let collector = Collector::sqlite(&certs).start().await?;
    let dir = tempfile::tempdir()?;
    let _a = Agent::for_host("db-east-1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    let _b = Agent::for_host("db-west-2", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    collector
        .wait_status("db-east-1", "disk.backup", "ok", WAIT)
        .await;
    collector
        .wait_status("db-west-2", "disk.backup", "ok", WAIT)
        .await;
    // Both agents run on this machine with the same OS host name; the fleet sees the names
    // their certificates carry, and nothing else.
    let hosts = collector.api("/api/v1/hosts").await?;
    let names: Vec<&str> = hosts
        .as_array()
        .expect("host list")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(names, ["db-east-1", "db-west-2"], "{hosts}");
    Ok(())
}

#[tokio::test]
async fn agent_with_a_certificate_from_another_ca_is_rejected() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let stranger = Certs::fleet(&["db1"])?; // same host name, different CA
    let collector = Collector::sqlite(&certs).start().await?;
    let dir = tempfile::tempdir()?;
    let agent = Agent::for_host("db1", &certs, &collector)
        .identity(stranger.agent_cert("db1"), stranger.agent_key("db1"))
        .disk("backup", dir.path(), "1s")
        .start()?;
    // The agent says why it is refused, with the reason from deep in the error chain.
    eventually(WAIT, "the agent to log its rejection", async || {
        let log = agent.log();
        if log.contains("collector unreachable") {
            Ok(())
        } else {
            bail!("agent log so far:\n{log}")
        }
    })
    .await;
    let log = agent.log();
    assert!(
        log.contains("received fatal alert: UnknownCA"),
        "rejection reason missing from the agent log:\n{log}"
    );
    assert!(
        log.contains("the collector refused this agent's certificate"),
        "{log}"
    );
    // Its results were spooled, never stored.
    let hosts = collector.api("/api/v1/hosts").await?;
    assert_eq!(hosts, serde_json::json!([]), "{hosts}");
    assert!(
        std::fs::read_dir(agent.spool_dir())?.count() > 0,
        "results should wait in the spool"
    );
    Ok(())
}

#[tokio::test]
async fn plaintext_grpc_is_refused() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs).start().await?;
    let port = collector.grpc_port;
    let answer = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        // An HTTP/2 client preface and an empty SETTINGS frame, in the clear.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(buf)
    })
    .await??;
    // Either nothing, or a TLS alert record (content type 21): never an HTTP/2 frame.
    assert!(
        answer.is_empty() || answer[0] == 21,
        "plaintext got an answer: {answer:?}"
    );
    // And the agent configuration refuses an http:// collector before doing anything.
    let agent = Agent::for_host("db1", &certs, &collector).write()?;
    let text = std::fs::read_to_string(agent.config_path())?
        .replace("url = \"https://", "url = \"http://");
    std::fs::write(agent.config_path(), text)?;
    let out = agent.run_cli(&["run"])?;
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("collector.url: \"http://localhost:"), "{err}");
    assert!(err.contains("plaintext is refused"), "{err}");
    Ok(())
}
