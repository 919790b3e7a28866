//! The enrollment listener: gRPC `backwatch.v1.Enrollment` over TLS 1.3 with the collector's
//! certificate, a client certificate asked for but optional (see the module above for why).

use super::standing::{self, Presented};
use super::{Refusal, Signer, token_digest};
use crate::config::TlsFiles;
use crate::config::enroll::Enroll;
use crate::listen::{Gate, Guarded};
use crate::server::Live;
use crate::store::Store;
use crate::store::enroll::IssuedCertificate;
use crate::tls::{fingerprint, host_of, provider, read_certs, read_key, validity_of};
use anyhow::Context;
use backwatch_proto::convert::to_ts;
use backwatch_proto::wire::{
    EnrollReply, EnrollRequest, Enrollment, EnrollmentServer, RENEW_OPENS_AT, RenewRequest,
};
use chrono::Utc;
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

/// HTTP/2 pings of the enrollment listener: a peer gone without closing is dropped. A peer
/// that never completes the HTTP/2 preface is never pinged and goes at `enroll.idle_timeout`;
/// one that answers pings and asks nothing goes at `enroll.max_connection_age`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// A certificate request is a few hundred bytes; anything near this is not one.
const MAX_MESSAGE_BYTES: usize = 64 << 10;

struct EnrollService {
    store: Arc<dyn Store>,
    signer: Signer,
    live: Arc<Live>,
    renew_window: Option<Duration>,
    supersede_grace: Duration,
}

fn unavailable(e: crate::store::StoreError) -> Status {
    tracing::error!(error = %e, "enrollment store query failed");
    Status::unavailable("store unavailable")
}

fn refused(r: Refusal) -> Status {
    match r {
        Refusal::Sign(_) => Status::internal(r.to_string()),
        Refusal::BadRequest(_) => Status::invalid_argument(r.to_string()),
        Refusal::OtherHost { .. } | Refusal::NoName => Status::permission_denied(r.to_string()),
    }
}

/// What the store keeps of a certificate just signed.
fn record(
    host: &str,
    issued: &super::Issued,
    now: chrono::DateTime<Utc>,
    renewed_from: Option<&str>,
) -> IssuedCertificate {
    IssuedCertificate {
        fingerprint: issued.fingerprint.clone(),
        host: host.to_string(),
        serial: issued.serial.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        issued_at: now,
        renewed_from: renewed_from.map(str::to_string),
        first_used_at: None,
    }
}

fn reply(host: String, issued: super::Issued) -> Response<EnrollReply> {
    Response::new(EnrollReply {
        cert_pem: issued.cert_pem,
        ca_pem: issued.ca_pem,
        not_after: Some(to_ts(issued.not_after)),
        host,
    })
}

#[tonic::async_trait]
impl Enrollment for EnrollService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollReply>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let r = request.into_inner();
        let digest = token_digest(&r.token);
        let now = Utc::now();
        let Some(e) = self.store.enrollment(&digest).await.map_err(unavailable)? else {
            warn!(peer = %peer, "enrollment with an unknown token refused");
            return Err(Status::unauthenticated("unknown enrollment token"));
        };
        let again = format!(
            "ask for a new one with `backwatch-collector enroll --host {}`",
            e.host
        );
        if let Some(at) = e.used_at {
            warn!(host = %e.host, peer = %peer, "enrollment with a used token refused");
            return Err(Status::permission_denied(format!(
                "this enrollment token was already used (at {}); {again}",
                at.to_rfc3339()
            )));
        }
        if e.expires_at <= now {
            warn!(host = %e.host, peer = %peer, "enrollment with an expired token refused");
            return Err(Status::permission_denied(format!(
                "this enrollment token expired at {}; {again}",
                e.expires_at.to_rfc3339()
            )));
        }
        if self.live.access().deny_hosts.contains(&e.host) {
            return Err(Status::permission_denied(format!(
                "host {} is denied by the collector's configuration",
                e.host
            )));
        }
        // Signed before the token is used, so a refused request does not burn it; the
        // certificate is handed out only if this call is the one that used the token.
        let issued = self.signer.sign(&r.csr_pem, &e.host, now).map_err(|refusal| {
            warn!(host = %e.host, peer = %peer, refusal = %refusal, "enrollment request refused");
            refused(refusal)
        })?;
        if !self
            .store
            .use_enrollment(&digest, now, &record(&e.host, &issued, now, None))
            .await
            .map_err(unavailable)?
        {
            return Err(Status::permission_denied(format!(
                "this enrollment token was already used; {again}"
            )));
        }
        info!(host = %e.host, peer = %peer, fingerprint = %issued.fingerprint,
            serial = %issued.serial, not_after = %issued.not_after, "host enrolled");
        Ok(reply(e.host, issued))
    }

    async fn renew(&self, request: Request<RenewRequest>) -> Result<Response<EnrollReply>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        // rustls verified the chain to the fleet CA during the handshake; here only whether
        // there was a certificate at all, and whose.
        let cert = request
            .peer_certs()
            .and_then(|c| c.first().cloned())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "renewal needs the current client certificate (a new host enrolls with a token)",
                )
            })?;
        let host = host_of(&cert).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let (not_before, not_after) =
            validity_of(&cert).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let old = fingerprint(&cert);
        let access = self.live.access();
        if access.denies(&host, &old) {
            warn!(agent = %host, peer = %peer, fingerprint = %old, "renewal by a denied agent refused");
            return Err(Status::permission_denied(format!(
                "agent {host} is denied by the collector's configuration"
            )));
        }
        let now = Utc::now();
        let presented = Presented {
            host: &host,
            fingerprint: &old,
            not_before,
        };
        let ancestors = standing::renewed_from(&*self.store, &old)
            .await
            .map_err(unavailable)?;
        if let Some(denied) = access.denied_ancestor(&ancestors) {
            warn!(agent = %host, peer = %peer, fingerprint = %old, denied_ancestor = %denied,
                "renewal by a certificate renewed from a denied one refused");
            return Err(Status::permission_denied(standing::lineage_message(&host)));
        }
        if let Some(by) = standing::superseded(&*self.store, &presented, now, self.supersede_grace)
            .await
            .map_err(unavailable)?
        {
            warn!(agent = %host, peer = %peer, fingerprint = %old, newer = %by.fingerprint,
                "renewal by a superseded certificate refused");
            return Err(Status::permission_denied(standing::superseded_message(
                &host, &by,
            )));
        }
        // Within the grace the presented certificate still stands, but once its renewal is
        // in use a second renewal could only fork the identity (a stolen key renewing beside
        // the agent); a renewal never used (reply lost) does not count.
        if let Some(child) = standing::used_renewal(&*self.store, &old)
            .await
            .map_err(unavailable)?
        {
            warn!(agent = %host, peer = %peer, fingerprint = %old, renewal = %child.fingerprint,
                "renewal by a certificate already renewed, with the renewal in use, refused");
            return Err(Status::permission_denied(standing::renewed_message(
                &host, &child,
            )));
        }
        let opens = standing::renewal_opens(not_before, not_after, self.renew_window);
        if now < opens {
            warn!(agent = %host, peer = %peer, fingerprint = %old, opens_at = %opens,
                "renewal before its window refused");
            let mut status = Status::failed_precondition(format!(
                "renewal of this certificate opens at {} ({}); it is valid until {}",
                opens.to_rfc3339(),
                match self.renew_window {
                    Some(w) => format!(
                        "enroll.renew_window = {:?} before expiry",
                        backwatch_common::config::fmt_duration(w)
                    ),
                    None => "the last third of its validity".to_string(),
                },
                not_after.to_rfc3339()
            ));
            if let Ok(v) = opens.to_rfc3339().parse() {
                status.metadata_mut().insert(RENEW_OPENS_AT, v);
            }
            return Err(status);
        }
        let r = request.into_inner();
        let issued = self
            .signer
            .sign(&r.csr_pem, &host, now)
            .map_err(|refusal| {
                warn!(agent = %host, peer = %peer, refusal = %refusal, "renewal request refused");
                refused(refusal)
            })?;
        // Recorded before it is handed out: a certificate the store does not know could
        // neither supersede the old one nor be denied through it. It supersedes only once
        // it opens a stream, so a reply that never arrives locks the agent out of nothing.
        self.store
            .record_certificate(&record(&host, &issued, now, Some(&old)))
            .await
            .map_err(unavailable)?;
        info!(agent = %host, peer = %peer, old = %old, fingerprint = %issued.fingerprint,
            serial = %issued.serial, not_after = %issued.not_after, "agent certificate renewed");
        Ok(reply(host, issued))
    }
}

/// TLS 1.3, the collector's certificate, client certificates of the fleet CA verified when
/// presented but not required.
fn server_config(tls: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs(&tls.ca)? {
        roots.add(ca).context("fleet CA")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&tls.cert)?, read_key(&tls.key)?)
        .context("collector certificate/key")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Bind the enrollment listener and serve it in the background. TLS files and the CA are read
/// once here: changing them needs a restart (the deny lists follow SIGHUP through `live`).
pub async fn spawn(
    cfg: &Enroll,
    tls: &TlsFiles,
    store: Arc<dyn Store>,
    live: Arc<Live>,
) -> anyhow::Result<()> {
    let signer = Signer::load(cfg)?;
    let acceptor = TlsAcceptor::from(server_config(tls)?);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding enrollment listener {}", cfg.listen))?;
    info!(enroll = %listener.local_addr()?, "enrollment listener ready");
    let (tx, rx) = mpsc::channel(16);
    let gate = Gate::new("enroll", cfg.limits);
    let idle = cfg.idle_timeout;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Over either cap the connection is dropped (closed) before any TLS work.
            let Some(slot) = gate.admit() else {
                continue;
            };
            let Some(handshake) = gate.handshake() else {
                continue;
            };
            let (acceptor, tx, gate) = (acceptor.clone(), tx.clone(), gate.clone());
            tokio::spawn(async move {
                if let Some(stream) = gate.tls(handshake, &acceptor, tcp, peer).await {
                    let _ = tx.send(Guarded::new(stream, slot, Some(idle))).await;
                }
            });
        }
    });
    let service = EnrollService {
        store,
        signer,
        live,
        renew_window: cfg.renew_window,
        supersede_grace: cfg.supersede_grace,
    };
    let server = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        // A peer gone without closing is found within 30 s; a peer that keeps answering
        // pings but sends nothing else still goes at `max_connection_age`.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_connection_age(cfg.max_connection_age)
        .max_connection_age_grace(Duration::from_secs(10))
        .add_service(
            EnrollmentServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming(ReceiverStream::new(rx).map(Ok::<_, std::io::Error>));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "enrollment listener stopped");
        }
    });
    Ok(())
}
