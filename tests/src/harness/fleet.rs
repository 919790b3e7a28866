//! Builders for Backwatch's own processes: certificates, a collector, agents.
//!
//! The binaries are the ones `cargo build --workspace` put next to the test executable
//! (`target/debug/`); tests run them as a user would, with config files in temp dirs and ports
//! picked free. Every process is killed when its handle drops, and its log (stderr) is kept in
//! its temp dir so a failing assertion can show it.

use super::wait::{eventually, free_port};
use anyhow::{Context, bail};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// Path of a workspace binary built next to this test executable.
/// `BACKWATCH_BIN_DIR` overrides the directory (benchmarks run the release binaries).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = match std::env::var_os("BACKWATCH_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory")
            .to_path_buf(),
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the end-to-end tests",
        path.display()
    );
    path
}

// === certificates ===

/// A fleet CA with a collector certificate and agent certificates, made by
/// `backwatch-collector certs` (so that command is exercised too).
pub struct Certs {
    dir: TempDir,
}

impl Certs {
    pub fn fleet(agents: &[&str]) -> anyhow::Result<Certs> {
        let dir = tempfile::tempdir()?;
        let c = Certs { dir };
        c.issue(agents)?;
        Ok(c)
    }

    /// Issue more agent certificates from the same CA.
    pub fn issue(&self, agents: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new(bin("backwatch-collector"));
        cmd.arg("certs").arg("--dir").arg(self.dir.path());
        for a in agents {
            cmd.arg("--agent").arg(a);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("certs failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn ca(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }
    pub fn agent_cert(&self, host: &str) -> PathBuf {
        self.dir().join("agents").join(format!("{host}.pem"))
    }
    pub fn agent_key(&self, host: &str) -> PathBuf {
        self.dir().join("agents").join(format!("{host}-key.pem"))
    }

    /// An agent certificate for `host` from this fleet's CA whose validity ended yesterday.
    /// Returns (cert, key) paths.
    pub fn expired_agent(&self, host: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair};
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(self.dir().join("ca-key.pem"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(self.ca())?, ca_key)?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let (c, k) = (
            self.dir().join(format!("expired-{host}.pem")),
            self.dir().join(format!("expired-{host}-key.pem")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    }
}

/// An HTTP client for the API. reqwest's rustls (enabled in the workspace for the collector's
/// webhooks) needs a process-wide crypto provider: ring, as in every main (docs/building.md).
/// A random API token written to `dir/name` with mode 0600 (the collector refuses a token
/// file others can read): (the file's path, the token).
pub fn token_file(dir: &Path, name: &str) -> anyhow::Result<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let token: String = (0..64)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &token)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((path.display().to_string(), token))
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// What the tests log: Backwatch's own debug lines, which tests read (spooled ids, ...).
const TEST_LOG: &str = "info,backwatch_agent=debug,backwatch_collector=debug";

fn spawn_logged(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    spawn_logged_at(cmd, log, TEST_LOG)
}

fn spawn_logged_at(cmd: &mut Command, log: &Path, filter: &str) -> anyhow::Result<Child> {
    let err = File::create(log)?;
    let out = err.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .env("RUST_LOG", filter);
    cmd.spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
}

// === collector ===

pub struct CollectorBuilder<'a> {
    certs: &'a Certs,
    store_url: Option<String>,
    extra: String,
    /// Keys of the generated `[grpc]` section (limits), which `extra` cannot add to.
    grpc: String,
    log_filter: String,
    /// Keys written inside `[http]` (the table cannot be opened twice).
    http_keys: String,
    https: bool,
    http_host: &'static str,
}

pub struct Collector {
    dir: TempDir,
    config: PathBuf,
    child: Option<Child>,
    pub grpc_port: u16,
    pub http_port: u16,
    http: reqwest::Client,
    log_filter: String,
    /// `https` with the fleet CA's certificate for localhost, or `http`.
    scheme: &'static str,
}

impl Collector {
    /// A collector on the embedded SQLite store in its temp dir.
    pub fn sqlite(certs: &Certs) -> CollectorBuilder<'_> {
        CollectorBuilder {
            certs,
            store_url: None,
            extra: String::new(),
            grpc: String::new(),
            log_filter: TEST_LOG.into(),
            http_keys: String::new(),
            https: false,
            http_host: "127.0.0.1",
        }
    }

    /// A collector on the store at `url` (an SQLite file a test filled beforehand, ...).
    pub fn store<'a>(certs: &'a Certs, url: &str) -> CollectorBuilder<'a> {
        Collector::postgres(certs, url)
    }

    /// A collector on a PostgreSQL store.
    pub fn postgres<'a>(certs: &'a Certs, url: &str) -> CollectorBuilder<'a> {
        CollectorBuilder {
            certs,
            store_url: Some(url.to_string()),
            extra: String::new(),
            grpc: String::new(),
            log_filter: TEST_LOG.into(),
            http_keys: String::new(),
            https: false,
            http_host: "127.0.0.1",
        }
    }
}

impl CollectorBuilder<'_> {
    /// Extra TOML appended to the generated configuration (thresholds, silence, ...).
    pub fn toml(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self
    }

    /// Keys added to the generated `[grpc]` section (`"max_checks_per_host = 2\n"`).
    pub fn grpc(mut self, keys: &str) -> Self {
        self.grpc.push_str(keys);
        self
    }

    /// Keys of the `[http]` table (`max_connections = 10`, ...).
    pub fn http_keys(mut self, keys: &str) -> Self {
        self.http_keys.push_str(keys);
        self.http_keys.push('\n');
        self
    }

    /// HTTPS on the HTTP listener: `http.tls_cert` / `http.tls_key` are copies of the fleet's
    /// collector certificate (for localhost), `http.pem` and `http-key.pem` in the collector's
    /// directory ([`Collector::http_tls_files`]); the test client trusts the fleet CA.
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// The HTTP listener on every address (0.0.0.0) instead of loopback; tests still reach it
    /// at 127.0.0.1.
    pub fn http_on_all_addresses(mut self) -> Self {
        self.http_host = "0.0.0.0";
        self
    }

    /// The collector's `RUST_LOG` (tests: debug; benchmarks: what production runs with).
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = filter.into();
        self
    }

    pub async fn start(self) -> anyhow::Result<Collector> {
        let dir = tempfile::tempdir()?;
        let store_url = self
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("collector.db").display()));
        let d = self.certs.dir();
        let config = dir.path().join("collector.toml");
        let mut http_keys = self.http_keys.clone();
        if self.https {
            let (cert, key) = (dir.path().join("http.pem"), dir.path().join("http-key.pem"));
            std::fs::copy(d.join("collector.pem"), &cert)?;
            std::fs::copy(d.join("collector-key.pem"), &key)?;
            http_keys.push_str(&format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert.display(),
                key.display()
            ));
        }
        let http = if self.https {
            let ca = reqwest::Certificate::from_pem(&std::fs::read(d.join("ca.pem"))?)?;
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder().tls_certs_only([ca]).build()?
        } else {
            http_client()
        };
        let mut c = Collector {
            dir,
            config,
            child: None,
            grpc_port: 0,
            http_port: 0,
            http,
            log_filter: self.log_filter.clone(),
            scheme: if self.https { "https" } else { "http" },
        };
        // A port found free can be taken by another test before the collector binds it:
        // try fresh ports a few times, as the PostgreSQL harness does.
        for attempt in 1..=START_ATTEMPTS {
            c.grpc_port = free_port();
            c.http_port = free_port();
            let text = format!(
                "[grpc]\nlisten = \"127.0.0.1:{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n{}\
                 [http]\nlisten = \"{}:{}\"\n{http_keys}[store]\nurl = \"{store_url}\"\n{}",
                c.grpc_port,
                d.join("ca.pem").display(),
                d.join("collector.pem").display(),
                d.join("collector-key.pem").display(),
                self.grpc,
                self.http_host,
                c.http_port,
                self.extra
            );
            std::fs::write(&c.config, text)?;
            match c.launch().await {
                Ok(()) => return Ok(c),
                Err(e) if attempt < START_ATTEMPTS && c.log().contains(PORT_TAKEN) => {
                    c.kill();
                    eprintln!("collector: a port was taken meanwhile ({e:#}); trying others");
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// Start attempts of a collector on fresh ports.
const START_ATTEMPTS: usize = 3;
/// What the collector says when a listener's port is taken.
const PORT_TAKEN: &str = "Address already in use";

impl Collector {
    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("collector.log");
        // Append across restarts so the whole story is in one file.
        let prior = std::fs::read_to_string(&log).unwrap_or_default();
        let child = spawn_logged_at(
            Command::new(bin("backwatch-collector"))
                .arg("run")
                .arg("--config")
                .arg(&self.config),
            &log,
            &self.log_filter,
        )?;
        if !prior.is_empty() {
            std::fs::write(self.dir.path().join("collector.log.previous"), prior)?;
        }
        self.child = Some(child);
        let url = self.url("/healthz");
        let http = self.http.clone();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Ok(r) = http.get(&url).send().await
                    && r.status().is_success()
                {
                    return true;
                }
                // A collector that exited (a port taken, a bad configuration) will not answer.
                if self
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
                {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if ready != Ok(true) {
            bail!("collector did not become healthy:\n{}", self.log());
        }
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        match self.scheme {
            // The certificate names localhost.
            "https" => format!("https://localhost:{}{path}", self.http_port),
            _ => format!("http://127.0.0.1:{}{path}", self.http_port),
        }
    }

    /// The client the harness talks to the API with (trusts the fleet CA under `https`).
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// `http.tls_cert` and `http.tls_key` of a collector built with `https()`.
    pub fn http_tls_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("http.pem"),
            self.dir.path().join("http-key.pem"),
        )
    }

    /// What agents dial.
    pub fn grpc_url(&self) -> String {
        format!("https://localhost:{}", self.grpc_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("collector.log")).unwrap_or_default()
    }

    /// The running collector's process id (benchmarks read its memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// GET a JSON API path; errors on a non-2xx answer.
    pub async fn api(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(self.url(path)).send().await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    /// The API's view of one check on one host: `{name, status, summary, ...}`.
    pub async fn check(&self, host: &str, check: &str) -> anyhow::Result<Value> {
        let h = self.api(&format!("/api/v1/hosts/{host}")).await?;
        h["checks"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == check))
            .cloned()
            .with_context(|| format!("host {host} has no check {check} yet: {h}"))
    }

    /// Wait until `check` on `host` has `status`; returns the check's JSON.
    pub async fn wait_status(
        &self,
        host: &str,
        check: &str,
        status: &str,
        within: Duration,
    ) -> Value {
        self.wait_check(host, check, &format!("to be {status}"), within, |c| {
            c["status"] == status
        })
        .await
    }

    /// The value of one series on `/metrics` (`name{labels}` exactly as the page prints it),
    /// `None` when the page has no such series.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let page = self
            .http_client()
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(page.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        }))
    }

    /// Wait until `check` on `host` has `status` and a summary starting with `prefix`.
    pub async fn wait_summary(
        &self,
        host: &str,
        check: &str,
        status: &str,
        prefix: &str,
        within: Duration,
    ) -> Value {
        let what = format!("to be {status} with a summary starting {prefix:?}");
        self.wait_check(host, check, &what, within, |c| {
            c["status"] == status && c["summary"].as_str().is_some_and(|s| s.starts_with(prefix))
        })
        .await
    }

    /// Wait until the API's view of `check` on `host` satisfies `accept`.
    pub async fn wait_check(
        &self,
        host: &str,
        check: &str,
        what: &str,
        within: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let what = format!("{host} {check} {what}");
        eventually(within, &what, async || {
            let c = self.check(host, check).await?;
            if accept(&c) {
                Ok(c)
            } else {
                bail!("{check} is {} ({})", c["status"], c["summary"])
            }
        })
        .await
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Ask the running collector to reload its TLS files and access lists.
    pub fn sighup(&self) {
        if let Some(c) = &self.child {
            signal(c, nix::sys::signal::Signal::SIGHUP);
        }
    }

    /// Result ids stored for `check` on `host` in the last day.
    pub async fn stored_ids(&self, host: &str, check: &str) -> anyhow::Result<Vec<String>> {
        let h = self
            .api(&format!(
                "/api/v1/hosts/{host}/history?check={check}&since=24h&limit=10000"
            ))
            .await?;
        Ok(h["results"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r["result_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            signal(&c, nix::sys::signal::Signal::SIGTERM);
            c.wait()?;
        }
        Ok(())
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again with the same configuration, ports and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.launch().await
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

// === agent ===

pub struct AgentBuilder {
    host: String,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    url: String,
    probes: String,
    extra: String,
    env: Vec<(String, String)>,
    spool: Option<PathBuf>,
}

pub struct Agent {
    pub host: String,
    dir: TempDir,
    spool: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Agent {
    /// An agent for `host` with that host's certificate from `certs`, dialing `collector`.
    pub fn for_host(host: &str, certs: &Certs, collector: &Collector) -> AgentBuilder {
        AgentBuilder {
            host: host.into(),
            cert: certs.agent_cert(host),
            key: certs.agent_key(host),
            ca: certs.ca(),
            url: collector.grpc_url(),
            probes: String::new(),
            extra: String::new(),
            env: Vec::new(),
            spool: None,
        }
    }
}

impl AgentBuilder {
    /// Use another certificate and key (another CA, another host).
    pub fn identity(mut self, cert: PathBuf, key: PathBuf) -> Self {
        self.cert = cert;
        self.key = key;
        self
    }

    pub fn backup_dir(mut self, name: &str, path: &Path, max_age: &str, interval: &str) -> Self {
        self.probes.push_str(&format!(
            "[[backup_dir]]\nname = \"{name}\"\npath = \"{}\"\nmax_age = \"{max_age}\"\ninterval = \"{interval}\"\n",
            path.display()
        ));
        self
    }

    pub fn disk(mut self, name: &str, path: &Path, interval: &str) -> Self {
        self.probes.push_str(&format!(
            "[[disk]]\nname = \"{name}\"\npath = \"{}\"\ninterval = \"{interval}\"\n",
            path.display()
        ));
        self
    }

    /// A `[[disk]]` probe with further keys of its table, each value as TOML writes it
    /// (`("mount_point", "\"/backup\"")`, `("allow_read_only", "true")`).
    pub fn disk_with(
        mut self,
        name: &str,
        path: &Path,
        interval: &str,
        keys: &[(&str, &str)],
    ) -> Self {
        self = self.disk(name, path, interval);
        for (key, value) in keys {
            self.probes.push_str(&format!("{key} = {value}\n"));
        }
        self
    }

    pub fn wal(mut self, name: &str, dsn: &str, interval: &str) -> Self {
        self.probes.push_str(&format!(
            "[[wal]]\nname = \"{name}\"\ndsn = \"{dsn}\"\ninterval = \"{interval}\"\n"
        ));
        self
    }

    /// An `[[archive_dir]]` probe; `keys` are further string keys of its table, e.g.
    /// `[("interval", "1s"), ("wal", "main")]`.
    pub fn archive_dir(mut self, name: &str, path: &Path, keys: &[(&str, &str)]) -> Self {
        self.probes.push_str(&format!(
            "[[archive_dir]]\nname = \"{name}\"\npath = \"{}\"\n",
            path.display()
        ));
        for (key, value) in keys {
            // Booleans are TOML booleans; everything else a string.
            if matches!(*value, "true" | "false") {
                self.probes.push_str(&format!("{key} = {value}\n"));
            } else {
                self.probes.push_str(&format!("{key} = \"{value}\"\n"));
            }
        }
        self
    }

    pub fn toml(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self
    }

    /// Keep the spool in `dir` (default: the agent's temp dir), e.g. on a tiny tmpfs.
    pub fn spool_dir(mut self, dir: &Path) -> Self {
        self.spool = Some(dir.to_path_buf());
        self
    }

    /// An environment variable for the agent process (e.g. `LD_PRELOAD` for a shifted clock).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Write the configuration (probe lists not given are empty, not the defaults).
    pub fn write(self) -> anyhow::Result<Agent> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("agent.toml");
        let spool = self.spool.unwrap_or_else(|| dir.path().join("spool"));
        // Probe lists left out would mean the production defaults (/backup/...): a test gets
        // exactly the probes it asked for. Top-level keys must precede the tables in TOML.
        let mut text = String::new();
        if !self.probes.contains("[[backup_dir]]") {
            text.push_str("backup_dir = []\n");
        }
        if !self.probes.contains("[[disk]]") {
            text.push_str("disk = []\n");
        }
        text.push_str(&format!(
            "[collector]\nurl = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
             [spool]\ndir = \"{}\"\n[schedule]\nstart_jitter = \"0s\"\n{}{}",
            self.url,
            self.ca.display(),
            self.cert.display(),
            self.key.display(),
            spool.display(),
            self.extra,
            self.probes
        ));
        std::fs::write(&config, text)?;
        Ok(Agent {
            host: self.host,
            dir,
            spool,
            config,
            child: None,
            env: self.env,
        })
    }

    pub fn start(self) -> anyhow::Result<Agent> {
        let mut a = self.write()?;
        a.launch()?;
        Ok(a)
    }
}

impl Agent {
    pub fn launch(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("agent.log");
        // Keep what earlier runs logged: tests count measurements across restarts.
        if let Ok(prior) = std::fs::read_to_string(&log) {
            let previous = self.dir.path().join("agent.log.previous");
            let mut all = std::fs::read_to_string(&previous).unwrap_or_default();
            all.push_str(&prior);
            std::fs::write(previous, all)?;
        }
        self.child = Some(spawn_logged(
            Command::new(bin("backwatch-agent"))
                .arg("run")
                .arg("--config")
                .arg(&self.config)
                .envs(self.env.iter().map(|(k, v)| (k, v))),
            &log,
        )?);
        Ok(())
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.spool.clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Ids of the results waiting in the spool right now (decoded from the spool files).
    pub fn spooled_ids(&self) -> anyhow::Result<Vec<String>> {
        use backwatch_proto::wire::{Message, ProbeResult};
        let mut files: Vec<PathBuf> = match std::fs::read_dir(self.spool_dir()) {
            Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => return Ok(Vec::new()),
        };
        files.retain(|p| p.extension().is_some_and(|e| e == "pb"));
        files.sort();
        files
            .iter()
            .map(|p| Ok(ProbeResult::decode(std::fs::read(p)?.as_slice())?.result_id))
            .collect()
    }

    /// Ids of every result this agent measured and spooled, from its debug log (this run and
    /// earlier runs of the same handle).
    pub fn measured_ids(&self) -> Vec<String> {
        let mut logs = self.log();
        logs.push_str(
            &std::fs::read_to_string(self.dir.path().join("agent.log.previous"))
                .unwrap_or_default(),
        );
        logs.lines()
            .filter(|l| l.contains("result spooled"))
            .filter_map(|l| l.split("result_id=").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    }

    /// `backwatch-agent <args> --config <this agent's config>`, waited for.
    pub fn run_cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(bin("backwatch-agent"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()?)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Threads of the running agent process (from /proc).
    pub fn threads(&self) -> anyhow::Result<usize> {
        let pid = self.pid().context("the agent is not running")?;
        Ok(std::fs::read_dir(format!("/proc/{pid}/task"))?.count())
    }

    /// SIGTERM, then wait up to `within` for the process to exit; an error when it is still
    /// running then (it is killed, so the test leaves nothing behind).
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("the agent is not running");
        };
        signal(&c, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!(
                    "the agent was still running {within:?} after SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

// === the usual scene ===

/// A fleet CA, a collector on SQLite and one running agent: what most scenarios start from.
/// Fields drop in order, so the agent stops before the collector.
pub struct Scene {
    pub agent: Agent,
    pub collector: Collector,
    pub certs: Certs,
}

/// Start a [`Scene`] for `host`, its agent configured by `probes` (e.g. `|a| a.wal(..)`).
pub async fn scene(
    host: &str,
    probes: impl FnOnce(AgentBuilder) -> AgentBuilder,
) -> anyhow::Result<Scene> {
    let certs = Certs::fleet(&[host])?;
    let collector = Collector::sqlite(&certs).start().await?;
    let agent = probes(Agent::for_host(host, &certs, &collector)).start()?;
    Ok(Scene {
        agent,
        collector,
        certs,
    })
}
