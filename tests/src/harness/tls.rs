//! A raw TLS client for poking the collector's gRPC port the way a hostile or misconfigured
//! peer would: without a certificate, with TLS 1.2 only, or just to see which certificate the
//! server presents.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Dial<'a> {
    pub port: u16,
    pub ca: &'a Path,
    /// Client certificate and key, or none.
    pub identity: Option<(&'a Path, &'a Path)>,
    pub tls12_only: bool,
}

/// What happened: the handshake error, or the server certificate and what the server said
/// (or the read error) after an HTTP/2 preface.
pub struct Outcome {
    pub handshake: Result<(), String>,
    pub server_cert: Option<Vec<u8>>,
    pub after_preface: Result<Vec<u8>, String>,
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = format!("{e:?}");
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c:?}"));
        cur = c.source();
    }
    s
}

pub async fn dial(d: Dial<'_>) -> anyhow::Result<Outcome> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(d.ca)? {
        roots.add(c?)?;
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = if d.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots);
    let mut config = match d.identity {
        Some((cert, key)) => builder.with_client_auth_cert(
            CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?,
            PrivateKeyDer::from_pem_file(key)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", d.port))
        .await
        .context("tcp connect")?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = match connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return Ok(Outcome {
                handshake: Err(chain(&e)),
                server_cert: None,
                after_preface: Err("no handshake".into()),
            });
        }
    };
    let server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    let after_preface = async {
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .map_err(|e| chain(&e))?;
        let mut buf = vec![0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
            Ok(Ok(n)) => Ok(buf[..n].to_vec()),
            Ok(Err(e)) => Err(chain(&e)),
            Err(_) => Err("no answer within 5 s".into()),
        }
    }
    .await;
    Ok(Outcome {
        handshake: Ok(()),
        server_cert,
        after_preface,
    })
}
