//! Limits shared by the three listeners (gRPC ingest, enrollment, HTTP): a cap on open
//! connections and on TLS handshakes in progress, an idle timeout on the bytes a peer sends,
//! and refusals logged at a bounded rate.
//!
//! Invariants:
//! - a connection holds one slot of its listener's [`Gate`] from accept until it closes; over
//!   the cap a new connection is closed at once, before any TLS work, so a flood costs a
//!   socket for microseconds, not a handshake and buffers for minutes;
//! - a TLS handshake additionally holds a handshake slot, so a flood of slow or abandoned
//!   handshakes cannot take every connection slot of the listener by itself... and cannot
//!   keep CPU busy beyond that many handshakes at once;
//! - refusals (over a cap, failed handshakes) are logged at most once per [`LOG_EVERY`] per
//!   listener and kind, with how many were left unlogged: a flood cannot fill the disk.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::warn;

/// At most one log line per this interval for each kind of refusal on a listener.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections (TLS or not) at once.
    pub max_connections: usize,
    /// TLS handshakes in progress at once.
    pub max_handshakes: usize,
}

/// Bounded-rate logging: the first event logs at once, later ones within [`LOG_EVERY`] are
/// only counted and reported with the next line.
#[derive(Debug, Default)]
pub struct RateLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLog {
    /// `Some(n)`: log now, `n` events were suppressed since the last line. `None`: counted.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.0 {
            Some(last) if now.saturating_duration_since(last) < LOG_EVERY => {
                s.1 += 1;
                None
            }
            _ => {
                let suppressed = s.1;
                *s = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

/// A TLS handshake must finish within this, on every listener: a peer that stalls it loses
/// its connection and its handshake slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection and handshake caps of one listener.
pub struct Gate {
    name: &'static str,
    limits: Limits,
    connections: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    over_connections: RateLog,
    over_handshakes: RateLog,
    refused_handshakes: RateLog,
}

impl Gate {
    pub fn new(name: &'static str, limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
            over_connections: RateLog::default(),
            over_handshakes: RateLog::default(),
            refused_handshakes: RateLog::default(),
        })
    }

    /// A slot for a just accepted connection, or `None` (logged): close it at once.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.connections.clone().try_acquire_owned().ok();
        if permit.is_none()
            && let Some(more) = self.over_connections.hit(Instant::now())
        {
            warn!(
                listener = self.name,
                max_connections = self.limits.max_connections,
                refused_since_last_line = more,
                "connection refused: the listener is at its connection cap"
            );
        }
        permit
    }

    /// A slot for a TLS handshake, or `None` (logged): close the connection.
    pub fn handshake(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.handshakes.clone().try_acquire_owned().ok();
        if permit.is_none()
            && let Some(more) = self.over_handshakes.hit(Instant::now())
        {
            warn!(
                listener = self.name,
                max_handshakes = self.limits.max_handshakes,
                refused_since_last_line = more,
                "connection refused: too many TLS handshakes in progress"
            );
        }
        permit
    }

    /// The TLS handshake on `tcp`, holding `handshake` (from [`Gate::handshake`]) until it
    /// ends, within [`HANDSHAKE_TIMEOUT`]; `None` (logged) when it failed or timed out.
    pub async fn tls<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        handshake: OwnedSemaphorePermit,
        acceptor: &tokio_rustls::TlsAcceptor,
        tcp: IO,
        peer: std::net::SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<IO>> {
        let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
        drop(handshake);
        match accepted {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                self.handshake_failed(peer, &e);
                None
            }
            Err(_) => {
                self.handshake_failed(peer, &"handshake timed out");
                None
            }
        }
    }

    /// A failed or timed out handshake, logged at a bounded rate.
    pub fn handshake_failed(&self, peer: std::net::SocketAddr, problem: &dyn std::fmt::Display) {
        if let Some(more) = self.refused_handshakes.hit(Instant::now()) {
            tracing::info!(listener = self.name, peer = %peer, error = %problem,
                refused_since_last_line = more, "TLS handshake refused");
        }
    }
}

/// A connection holding its listener slot, closed with an error when its peer sends nothing
/// for `idle` (when set). Activity is what the peer sends: the collector's own writes (an
/// HTTP/2 ping, a slow response) do not keep a silent peer's connection open.
pub struct Guarded<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl<IO> Guarded<IO> {
    pub fn new(io: IO, slot: OwnedSemaphorePermit, idle: Option<Duration>) -> Self {
        Guarded {
            io,
            _slot: slot,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if let Some((d, sleep)) = &mut this.idle
                    && buf.filled().len() > before
                {
                    sleep.as_mut().reset(Instant::now() + *d);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if let Some((_, sleep)) = &mut this.idle
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection closed",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// tonic reads the peer address and certificates through this.
impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Raise the open-files limit to its hard limit: each connection is a descriptor, and the
/// connection caps are meant to be reached before the process runs out of them.
pub fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => warn!(error = %e, soft, hard, "cannot raise the open-files limit"),
        },
        Ok((soft, _)) => tracing::debug!(open_files = soft, "open-files limit"),
        Err(e) => warn!(error = %e, "cannot read the open-files limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_log_logs_once_per_interval_with_the_count() {
        let log = RateLog::default();
        let t0 = Instant::now();
        assert_eq!(log.hit(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(log.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.hit(t0 + LOG_EVERY), Some(5));
        assert_eq!(log.hit(t0 + LOG_EVERY + Duration::from_secs(1)), None);
    }

    #[tokio::test]
    async fn gate_refuses_over_its_caps_and_frees_slots_on_drop() {
        let gate = Gate::new(
            "test",
            Limits {
                max_connections: 2,
                max_handshakes: 1,
            },
        );
        let a = gate.admit().unwrap();
        let _b = gate.admit().unwrap();
        assert!(gate.admit().is_none());
        drop(a);
        assert!(gate.admit().is_some());
        let h = gate.handshake().unwrap();
        assert!(gate.handshake().is_none());
        drop(h);
        assert!(gate.handshake().is_some());
    }

    #[tokio::test]
    async fn a_silent_peer_is_cut_after_the_idle_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sem = Arc::new(Semaphore::new(1));
        let (mut client, server) = tokio::io::duplex(64);
        let mut g = Guarded::new(
            server,
            sem.clone().try_acquire_owned().unwrap(),
            Some(Duration::from_millis(300)),
        );
        client.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(g.read(&mut buf).await.unwrap(), 2);
        let t = Instant::now();
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(250));
        drop(g);
        assert_eq!(sem.available_permits(), 1, "the slot is returned on close");
    }
}
