//! A real SMTP server for end-to-end tests: Debian's aiosmtpd (`python3-aiosmtpd`, installed
//! by `scripts/test`) with a small handler that writes every accepted message, parsed by
//! Python's `email` package, as one JSON file.
//!
//! Invariants:
//! - a message file exists exactly when the server accepted the message's DATA (it is written
//!   before the answer goes out, as a real MTA queues before it says 250), atomically
//!   (temp file + rename), so a reader never sees half a message;
//! - the server can be stopped and started again on the same port (an outage), told to refuse
//!   recipients with a given answer, or to stall in RCPT or after DATA (files in its dir, read
//!   per command, so a running server changes behaviour at once); a stall leaves a marker file
//!   (`rcpt_waiting`, `data_waiting`) so a test knows the client is inside that step;
//! - always `/usr/bin/python3`: Debian's, the one the package installs into (a `python3` on
//!   PATH may be another interpreter without it).

use super::wait::{eventually, free_port};
use anyhow::{Context, bail};
use serde::Deserialize;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const PYTHON: &str = "/usr/bin/python3";

const HANDLER: &str = r#"
import asyncio, email, email.policy, json, os, ssl, sys, time
from aiosmtpd.smtp import SMTP, AuthResult

DIR, PORT = sys.argv[1], int(sys.argv[2])
MSGS = os.path.join(DIR, "msgs")

def control(name):
    try:
        with open(os.path.join(DIR, name)) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None

def mark(name):
    with open(os.path.join(DIR, name), "a"):
        pass

def lines(part):
    # Line ends as a reader's program shows them, not as SMTP carries them.
    return None if part is None else part.get_content().replace("\r\n", "\n")

def header(msg, name):
    value = msg[name]
    return None if value is None else str(value)

class Capture:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = control("reject_rcpt")
        if refusal:
            return refusal
        delay = control("delay_rcpt")
        if delay:
            mark("rcpt_waiting")
            await asyncio.sleep(float(delay))
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text, html = msg.get_body(("plain",)), msg.get_body(("html",))
        doc = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": header(msg, "subject") or "",
            "message_id": header(msg, "message-id") or "",
            "references": header(msg, "references"),
            "auto_submitted": header(msg, "auto-submitted"),
            "from": header(msg, "from") or "",
            "to": header(msg, "to") or "",
            "content_type": msg.get_content_type(),
            "text": lines(text),
            "html": lines(html),
            "parts": [{"content_type": p.get_content_type(),
                       "content_id": header(p, "content-id"),
                       "disposition": p.get_content_disposition(),
                       "bytes": len(p.get_payload(decode=True) or b"")}
                      for p in msg.walk() if not p.is_multipart()],
        }
        name = "%020d-%d.json" % (time.time_ns(), os.getpid())
        tmp = os.path.join(MSGS, "." + name)
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, os.path.join(MSGS, name))
        delay = control("delay_data")
        if delay:
            mark("data_waiting")
            await asyncio.sleep(float(delay))
        return "250 2.0.0 Message accepted for delivery"

def authenticate(server, session, envelope, mechanism, auth_data):
    user, password = os.environ["CAPTURE_AUTH"].split(":", 1)
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    # handled=False: aiosmtpd answers the refusal (535) itself.
    return AuthResult(success=ok, handled=False)

async def main():
    loop = asyncio.get_running_loop()
    mode = os.environ.get("CAPTURE_TLS", "none")
    ctx = None
    if mode != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.environ["CAPTURE_CERT"], os.environ["CAPTURE_KEY"])
    options = dict(hostname="capture.test", ident="capture")
    if mode == "starttls":
        options.update(tls_context=ctx, require_starttls=True)
    if "CAPTURE_AUTH" in os.environ:
        # With implicit TLS aiosmtpd does not see the session as encrypted.
        options.update(authenticator=authenticate, auth_required=True,
                       auth_require_tls=(mode == "starttls"))
    server = await loop.create_server(
        lambda: SMTP(Capture(), **options),
        "127.0.0.1", PORT, reuse_address=True, ssl=ctx if mode == "tls" else None)
    print("listening on", PORT, flush=True)
    await server.serve_forever()

asyncio.run(main())
"#;

/// One accepted message, as the server parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub references: Option<String>,
    pub auto_submitted: Option<String>,
    pub from: String,
    pub to: String,
    pub content_type: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Every leaf part of the message (text, html, inline images), in order.
    #[serde(default)]
    pub parts: Vec<MailPart>,
}

/// A leaf MIME part as the server saw it.
#[derive(Debug, Clone, Deserialize)]
pub struct MailPart {
    pub content_type: String,
    /// `<id>`, with the angle brackets, when the part has one.
    pub content_id: Option<String>,
    /// `inline`, `attachment` or none.
    pub disposition: Option<String>,
    /// Decoded size.
    pub bytes: u64,
}

impl Mail {
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or_default()
    }
    pub fn html(&self) -> &str {
        self.html.as_deref().unwrap_or_default()
    }
    pub fn is_for(&self, address: &str) -> bool {
        self.rcpt_tos.iter().any(|r| r == address)
    }
}

/// How many of `mails` went to `to` with a subject starting with `subject_prefix`.
pub fn count(mails: &[Mail], to: &str, subject_prefix: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.is_for(to) && m.subject.starts_with(subject_prefix))
        .count()
}

pub struct Smtp {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    /// `CAPTURE_*` settings of the server process (TLS mode, certificate, credentials).
    env: Vec<(String, String)>,
}

/// How the capture server protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS offered and required before MAIL.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

impl Smtp {
    /// Start a capturing server on a free port (plain SMTP, no authentication).
    pub fn capture() -> anyhow::Result<Smtp> {
        Smtp::capture_with(Vec::new())
    }

    /// A capturing server that speaks TLS with `cert`/`key` and, with `login`, requires
    /// AUTH with that user and password.
    pub fn capture_tls(
        tls: SmtpTls,
        cert: &Path,
        key: &Path,
        login: Option<(&str, &str)>,
    ) -> anyhow::Result<Smtp> {
        let mode = match tls {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Implicit => "tls",
        };
        let mut env = vec![
            ("CAPTURE_TLS".to_string(), mode.to_string()),
            ("CAPTURE_CERT".to_string(), cert.display().to_string()),
            ("CAPTURE_KEY".to_string(), key.display().to_string()),
        ];
        if let Some((user, password)) = login {
            env.push(("CAPTURE_AUTH".to_string(), format!("{user}:{password}")));
        }
        Smtp::capture_with(env)
    }

    fn capture_with(env: Vec<(String, String)>) -> anyhow::Result<Smtp> {
        let has_module = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !has_module {
            bail!("{PYTHON} cannot import aiosmtpd: install python3-aiosmtpd (scripts/test does)");
        }
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("msgs"))?;
        std::fs::write(dir.path().join("capture.py"), HANDLER)?;
        let mut s = Smtp {
            dir,
            port: free_port(),
            child: None,
            env,
        };
        s.start()?;
        Ok(s)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `[smtp]` for the collector: plain SMTP to this server (a local relay needs no TLS).
    pub fn collector_toml(&self) -> String {
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"Backwatch <backwatch@collector.test>\"\ntimeout = \"10s\"\n",
            self.port
        )
    }

    /// (Re)start the server on its port and wait until it accepts connections.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("smtp.log"))?;
        let child = Command::new(PYTHON)
            .arg(self.dir.path().join("capture.py"))
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the aiosmtpd capture server")?;
        self.child = Some(child);
        let addr = ("127.0.0.1", self.port);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!("capture server exited ({status}):\n{}", self.log());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "capture server did not listen on {}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kill the server: connections are refused until [`Smtp::start`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn control(&self, name: &str, value: Option<&str>) -> anyhow::Result<()> {
        let path = self.dir.path().join(name);
        match value {
            Some(v) => std::fs::write(path, v)?,
            None => match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    }

    /// Answer every RCPT with `answer` ("451 4.3.2 try later"), or accept again with `None`.
    pub fn reject_recipients(&self, answer: Option<&str>) -> anyhow::Result<()> {
        self.control("reject_rcpt", answer)
    }

    /// Stall each RCPT for `secs` (leaving `rcpt_waiting`), or not with `None`.
    pub fn stall_recipients(&self, secs: Option<f64>) -> anyhow::Result<()> {
        self.control("delay_rcpt", secs.map(|s| s.to_string()).as_deref())
    }

    /// Store each message, then stall `secs` before answering (leaving `data_waiting`).
    pub fn stall_after_data(&self, secs: Option<f64>) -> anyhow::Result<()> {
        self.control("delay_data", secs.map(|s| s.to_string()).as_deref())
    }

    /// The server is (or was) inside a stall: `rcpt_waiting` or `data_waiting`.
    pub fn stalled(&self, marker: &str) -> bool {
        self.dir.path().join(marker).exists()
    }

    /// Every accepted message, oldest first.
    pub fn messages(&self) -> anyhow::Result<Vec<Mail>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("msgs"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && !hidden(p))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)?;
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
            })
            .collect()
    }

    /// Messages for `address`, oldest first.
    pub fn to(&self, address: &str) -> anyhow::Result<Vec<Mail>> {
        Ok(self
            .messages()?
            .into_iter()
            .filter(|m| m.is_for(address))
            .collect())
    }

    /// Wait until the messages satisfy `accept`; returns them all.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        accept: impl Fn(&[Mail]) -> bool,
    ) -> Vec<Mail> {
        eventually(within, what, async || {
            let all = self.messages()?;
            if accept(&all) {
                Ok(all)
            } else {
                let seen: Vec<String> = all
                    .iter()
                    .map(|m| format!("{:?} {}", m.rcpt_tos, m.subject))
                    .collect();
                bail!("{} messages so far: {seen:#?}", all.len())
            }
        })
        .await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtp.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}
