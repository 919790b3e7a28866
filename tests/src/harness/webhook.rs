//! A webhook receiver for end-to-end tests: plain HTTP/1.1 on a free loopback port, one
//! request per connection, every POST body kept as JSON with its headers.
//!
//! Invariants: a request is recorded before it is answered; the answer's status is whatever
//! the test set last (200 by default), so a test can make the receiver refuse for a while,
//! or none at all while it hangs (the request is taken and the connection held open until
//! the sender gives up, as an endpoint behind a stuck proxy does).

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Received {
    /// The request target: path and query ("/hook?token=…").
    pub target: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Webhook {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    hanging: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Webhook {
    pub async fn start() -> anyhow::Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let hanging = Arc::new(AtomicBool::new(false));
        let (r, s, h) = (received.clone(), status.clone(), hanging.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (r, s, h) = (r.clone(), s.clone(), h.clone());
                tokio::spawn(async move {
                    if let Some(req) = read_request(&mut conn).await {
                        r.lock().map(|mut v| v.push(req)).ok();
                    }
                    if h.load(Ordering::SeqCst) {
                        // Until the sender closes the connection.
                        let mut rest = [0u8; 512];
                        while conn.read(&mut rest).await.is_ok_and(|n| n > 0) {}
                        return;
                    }
                    let code = s.load(Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 {code} Test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Webhook {
            port,
            received,
            status,
            hanging,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answer later requests with `code`.
    pub fn respond_with(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Take later requests and never answer them.
    pub fn hang(&self, hang: bool) {
        self.hanging.store(hang, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers up to the blank line, then `content-length` bytes of body.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    // "POST /hook?x=1 HTTP/1.1"
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).ok()?;
    Some(Received {
        target,
        headers,
        body,
    })
}
