//! Transport security end to end: identity from the certificate, strangers and plaintext
//! refused.

use anyhow::{Result, bail};
use backwatch_tests::harness::tls::{Dial, dial};
use backwatch_tests::harness::{Agent, Certs, Collector, consistently, eventually};
use rustls::pki_types::pem::PemObject;
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

#[tokio::test]
async fn client_without_a_certificate_is_refused() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs).start().await?;
    let ca = certs.ca();
    let o = dial(Dial {
        port: collector.grpc_port,
        ca: &ca,
        identity: None,
        tls12_only: false,
    })
    .await?;
    // TLS 1.3: the client thinks the handshake is done; the refusal arrives as an alert.
    let seen = match (&o.handshake, &o.after_preface) {
        (Err(e), _) | (Ok(()), Err(e)) => e.clone(),
        (Ok(()), Ok(bytes)) => panic!("no certificate, yet the server answered {bytes:?}"),
    };
    assert!(seen.contains("CertificateRequired"), "{seen}");
    Ok(())
}

#[tokio::test]
async fn tls_below_1_3_is_refused() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs).start().await?;
    let (ca, cert, key) = (certs.ca(), certs.agent_cert("db1"), certs.agent_key("db1"));
    let o = dial(Dial {
        port: collector.grpc_port,
        ca: &ca,
        identity: Some((&cert, &key)),
        tls12_only: true,
    })
    .await?;
    let err = o.handshake.expect_err("a TLS 1.2 handshake must fail");
    assert!(err.contains("ProtocolVersion"), "{err}");
    Ok(())
}

#[tokio::test]
async fn expired_agent_certificate_is_refused() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let (cert, key) = certs.expired_agent("db1")?;
    let collector = Collector::sqlite(&certs).start().await?;
    let dir = tempfile::tempdir()?;
    let agent = Agent::for_host("db1", &certs, &collector)
        .identity(cert, key)
        .disk("backup", dir.path(), "1s")
        .start()?;
    eventually(
        WAIT,
        "the agent to log that its certificate expired",
        async || {
            let log = agent.log();
            if log.contains("CertificateExpired") {
                Ok(())
            } else {
                bail!("agent log so far:\n{log}")
            }
        },
    )
    .await;
    assert_eq!(collector.api("/api/v1/hosts").await?, serde_json::json!([]));
    Ok(())
}

#[tokio::test]
async fn sighup_denies_a_lost_agent_and_picks_up_a_rotated_certificate() -> Result<()> {
    let certs = Certs::fleet(&["db1", "db2"])?;
    let collector = Collector::sqlite(&certs)
        .toml("[silence]\nhost_after = \"3s\"\nsweep_every = \"500ms\"")
        .start()
        .await?;
    let dir = tempfile::tempdir()?;
    let db1 = Agent::for_host("db1", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    let _db2 = Agent::for_host("db2", &certs, &collector)
        .disk("backup", dir.path(), "1s")
        .start()?;
    collector
        .wait_status("db1", "disk.backup", "ok", WAIT)
        .await;
    collector
        .wait_status("db2", "disk.backup", "ok", WAIT)
        .await;

    // Deny db1 (a lost laptop's certificate, say) and rotate the collector's certificate.
    let text = std::fs::read_to_string(collector.config_path())?;
    let text = text.replacen("[grpc]\n", "[grpc]\ndeny_hosts = [\"db1\"]\n", 1);
    std::fs::write(collector.config_path(), text)?;
    let old_cert = std::fs::read(certs.dir().join("collector.pem"))?;
    let out = std::process::Command::new(backwatch_tests::harness::bin("backwatch-collector"))
        .args(["certs", "--dir"])
        .arg(certs.dir())
        .args([
            "--collector-name",
            "localhost",
            "--collector-name",
            "127.0.0.1",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(old_cert, std::fs::read(certs.dir().join("collector.pem"))?);
    collector.sighup();

    // db1 is cut off and goes silent; db2 carries on.
    eventually(WAIT, "db1 denied", async || {
        let log = db1.log();
        if log.contains("denied by the collector's configuration") {
            Ok(())
        } else {
            bail!("db1 log:\n{log}")
        }
    })
    .await;
    eventually(WAIT, "db1 silent", async || {
        let h = collector.api("/api/v1/hosts/db1").await?;
        anyhow::ensure!(h["silent"] == true, "{h}");
        Ok(())
    })
    .await;
    let h = collector.api("/api/v1/hosts/db2").await?;
    assert_eq!(h["silent"], false, "{h}");

    // New connections get the new certificate.
    let (ca, cert, key) = (certs.ca(), certs.agent_cert("db2"), certs.agent_key("db2"));
    let o = dial(Dial {
        port: collector.grpc_port,
        ca: &ca,
        identity: Some((&cert, &key)),
        tls12_only: false,
    })
    .await?;
    let served = o.server_cert.expect("server certificate");
    let new_pem = std::fs::read_to_string(certs.dir().join("collector.pem"))?;
    let new_der = rustls::pki_types::CertificateDer::from_pem_slice(new_pem.as_bytes())?;
    assert_eq!(
        served,
        new_der.as_ref().to_vec(),
        "collector still serves the old certificate"
    );
    Ok(())
}

#[tokio::test]
async fn one_identity_cannot_hold_unbounded_streams() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs).toml("").start().await?;
    let text = std::fs::read_to_string(collector.config_path())?.replacen(
        "[grpc]\n",
        "[grpc]\nmax_streams_per_agent = 2\n",
        1,
    );
    std::fs::write(collector.config_path(), text)?;
    collector.sighup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir()?;
    let agents: Vec<Agent> = (0..3)
        .map(|_| {
            Agent::for_host("db1", &certs, &collector)
                .disk("backup", dir.path(), "1s")
                .start()
        })
        .collect::<Result<_>>()?;
    eventually(WAIT, "the third stream refused", async || {
        let refused = agents
            .iter()
            .filter(|a| {
                a.log()
                    .contains("too many open streams for agent db1 (limit 2)")
            })
            .count();
        anyhow::ensure!(refused >= 1, "no agent refused yet");
        Ok(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn one_identity_cannot_open_streams_faster_than_its_rate() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .grpc("max_streams_per_agent = 10\nmax_streams_per_minute = 2\n")
        .start()
        .await?;
    let dir = tempfile::tempdir()?;
    let agents: Vec<Agent> = (0..4)
        .map(|_| {
            Agent::for_host("db1", &certs, &collector)
                .disk("backup", dir.path(), "1s")
                .start()
        })
        .collect::<Result<_>>()?;
    eventually(WAIT, "streams past the rate refused", async || {
        let refused = agents
            .iter()
            .filter(|a| {
                a.log().contains(
                    "agent db1 opened more than 2 streams in a minute (grpc.max_streams_per_minute)",
                )
            })
            .count();
        anyhow::ensure!(refused >= 2, "{refused} agents refused so far");
        Ok(())
    })
    .await;
    let metrics = reqwest::get(collector.url("/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("backwatch_agent_refusals_total{limit=\"max_streams_per_minute\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    Ok(())
}

/// Two streams of one identity (a host running two agents, or a stolen key) share the host's
/// check limit: a check that first reports late on one stream is refused once the other filled
/// the quota, instead of being counted against what that stream saw when it began.
#[tokio::test]
async fn concurrent_streams_of_one_host_share_its_check_limit() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .grpc("max_checks_per_host = 3\n")
        .start()
        .await?;
    let (dir, spool, empty, scratch) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    // Agent A: disk.a, its spool check, and drill.x, which is not due (it "ran" just now).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    std::fs::write(spool.path().join("last-run.drill.x"), format!("{now}\n"))?;
    let _a = Agent::for_host("db1", &certs, &collector)
        .spool_dir(spool.path())
        .disk("a", dir.path(), "1s")
        .toml(&format!(
            "[[drill]]\nname = \"x\"\nbackup_dir = \"{}\"\nscratch_dir = \"{}\"\ninterval = \"1h\"\n",
            empty.path().display(),
            scratch.path().display()
        ))
        .start()?;
    collector.wait_status("db1", "disk.a", "ok", WAIT).await;
    // Agent B, same identity: disk.b fills the host's three checks.
    let _b = Agent::for_host("db1", &certs, &collector)
        .disk("a", dir.path(), "1s")
        .disk("b", dir.path(), "1s")
        .start()?;
    collector.wait_status("db1", "disk.b", "ok", WAIT).await;
    let count = async || -> Result<usize> {
        let host = collector.api("/api/v1/hosts/db1").await?;
        Ok(host["checks"].as_array().map_or(0, |c| {
            c.iter()
                .filter(|c| c["name"] != "agent.checks" && c["status"] != "unknown")
                .count()
        }))
    };
    anyhow::ensure!(count().await? == 3, "three checks before the drill");
    // drill.x reports for the first time, on A's stream.
    let asked = collector
        .http_client()
        .post(collector.url("/api/v1/hosts/db1/checks/drill.x/run"))
        .send()
        .await?;
    anyhow::ensure!(asked.status() == 202, "run now: {}", asked.status());
    eventually(WAIT, "drill.x refused by the host's limit", async || {
        let open = collector.api("/api/v1/alerts?state=open").await?;
        let raised = open
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["check"] == "agent.checks"));
        anyhow::ensure!(raised, "no agent.checks alert yet: {open}");
        Ok(())
    })
    .await;
    consistently(Duration::from_secs(3), "still three checks", async || {
        let host = collector.api("/api/v1/hosts/db1").await?;
        let names: Vec<&str> = host["checks"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        anyhow::ensure!(!names.contains(&"drill.x"), "drill.x stored: {names:?}");
        Ok(())
    })
    .await;
    Ok(())
}

/// A host whose agent reports more checks than `grpc.max_checks_per_host`: the results of the
/// checks beyond it are refused with the reason, and one warning alert says so.
#[tokio::test]
async fn a_host_over_its_check_limit_gets_its_results_refused_and_one_alert() -> Result<()> {
    let certs = Certs::fleet(&["db1"])?;
    let collector = Collector::sqlite(&certs)
        .grpc("max_checks_per_host = 2\n")
        .toml("[alerts]\nevaluate_every = \"200ms\"\n")
        .start()
        .await?;
    let dir = tempfile::tempdir()?;
    let agent = Agent::for_host("db1", &certs, &collector)
        .disk("a", dir.path(), "1s")
        .disk("b", dir.path(), "1s")
        .disk("c", dir.path(), "1s")
        .disk("d", dir.path(), "1s")
        .start()?;
    let alert = eventually(WAIT, "the agent.checks alert", async || {
        let open = collector.api("/api/v1/alerts?state=open").await?;
        open.as_array()
            .and_then(|a| a.iter().find(|a| a["check"] == "agent.checks").cloned())
            .ok_or_else(|| anyhow::anyhow!("no agent.checks alert yet: {open}"))
    })
    .await;
    assert_eq!(alert["severity"], "warning", "{alert}");
    assert!(
        alert["summary"]
            .as_str()
            .is_some_and(|s| s.contains("the host already has 2 checks")),
        "{alert}"
    );
    // Two checks kept, the others never stored; the agent was told why.
    let host = collector.api("/api/v1/hosts/db1").await?;
    let checks: Vec<&str> = host["checks"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(checks.len(), 2, "{host}");
    eventually(WAIT, "the refusal in the agent's log", async || {
        anyhow::ensure!(agent.log().contains("grpc.max_checks_per_host"), "not yet");
        Ok(())
    })
    .await;
    // More refused batches every second: still one alert.
    consistently(
        Duration::from_secs(3),
        "one agent.checks alert",
        async || {
            let all = collector.api("/api/v1/alerts?state=all").await?;
            let n = all.as_array().map_or(0, |a| {
                a.iter().filter(|a| a["check"] == "agent.checks").count()
            });
            anyhow::ensure!(n == 1, "{n} alerts: {all}");
            Ok(())
        },
    )
    .await;
    Ok(())
}

/// An agent that sends but never reads what the collector answers: its answers back up until
/// its session waits to queue the next one. It must wait holding nothing the fleet shares: it
/// used to hold its message's share of the collector's decoding budget (all of it, for a
/// message of 2 MiB), and every other agent's results then waited behind it.
#[tokio::test]
async fn an_agent_that_never_reads_its_answers_does_not_hold_up_the_fleet() -> Result<()> {
    use backwatch_proto::wire::{
        AgentMessage, AgentPayload, Hello, IngestClient, ProbeResult, ResultBatch,
    };
    use backwatch_tests::sim;
    use std::sync::atomic::Ordering;

    let certs = Certs::fleet(&["honest", "mute"])?;
    let collector = Collector::sqlite(&certs).start().await?;
    let url = collector.grpc_url();
    let honest = sim::start(
        &certs,
        &["honest".to_string()],
        &url,
        Duration::from_millis(300),
    )?;
    let acked = || honest.total(|s| s.acked.load(Ordering::Relaxed));
    eventually(
        WAIT,
        "the honest agent's results acknowledged",
        async || {
            anyhow::ensure!(acked() > 0, "none yet");
            Ok(())
        },
    )
    .await;

    // The mute agent's receive window is 1 KiB, and it never reads: the collector's answers
    // fill that, then h2's send buffer, tonic's and the session's queue.
    let ca = std::fs::read(certs.ca())?;
    let endpoint = sim::endpoint(&certs, &ca, "mute", &url)?
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024);
    let channel = endpoint.connect().await?;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(AgentMessage {
        seq: 1,
        payload: Some(AgentPayload::Hello(Hello {
            agent_version: "mute".into(),
            hostname: "mute".into(),
            ..Default::default()
        })),
    })
    .await?;
    let mut client = IngestClient::new(channel);
    let response = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?;
    let _unread = response.into_inner();
    // Batches of 2.1 MiB (over the 2 MiB budget) that the collector refuses result by result
    // (ids over 64 bytes), each answered by an ack of about 13 KiB.
    let sender = tokio::spawn(async move {
        for seq in 2..200u64 {
            let results = (0..100)
                .map(|i| ProbeResult {
                    result_id: format!("{seq}-{i}-{}", "x".repeat(70)),
                    error: "y".repeat(21 << 10),
                    ..Default::default()
                })
                .collect();
            let msg = AgentMessage {
                seq,
                payload: Some(AgentPayload::Results(ResultBatch { results })),
            };
            if tx.send(msg).await.is_err() {
                return seq;
            }
        }
        200
    });
    // Until the mute agent's session is stuck: its messages stop going out.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        !sender.is_finished(),
        "the mute agent's messages all went out"
    );
    let before = acked();
    eventually(WAIT, "the honest agent still acknowledged", async || {
        let now = acked();
        anyhow::ensure!(now > before + 10, "{} more acknowledged", now - before);
        Ok(())
    })
    .await;
    sender.abort();
    Ok(())
}
