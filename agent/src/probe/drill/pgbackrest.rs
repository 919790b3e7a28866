//! pgBackRest as a drill's source: the newest good backup of a stanza, restored with
//! `pgbackrest restore --pg1-path=<scratch>`; recovery fetches WAL with `archive-get`.
//!
//! The repository is only read: `info`, `restore` and `archive-get` read it (their locks live
//! in pgBackRest's lock path, not in the repository). The commands run as the agent, or through
//! the configured `command` prefix (e.g. `sudo -n -u postgres pgbackrest`).

use super::super::tool_command;
use super::backup::Space;
use nix::unistd::{Gid, Uid};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct PgBackRestSource {
    pub stanza: String,
    pub config: Option<PathBuf>,
    /// Program and leading arguments (default `["pgbackrest"]`).
    pub command: Vec<String>,
}

/// The newest segment of an archive and, when known, when it was stored.
pub type ArchiveEnd = (String, Option<chrono::DateTime<chrono::Utc>>);

/// `pgbackrest info` answers a few hundred KiB at most.
const INFO_OUTPUT: tool_command::Limits = tool_command::PGBACKREST_INFO;

impl PgBackRestSource {
    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = self.command.clone();
        if let Some(c) = &self.config {
            v.push(format!("--config={}", c.display()));
        }
        v.push(format!("--stanza={}", self.stanza));
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// Label and restored size of the newest backup that did not fail, the space check, and
    /// the end of the stanza's archive.
    pub async fn choose(
        &self,
        as_user: &[String],
        scratch: &Path,
        factor: f64,
    ) -> Result<(String, Space, Option<ArchiveEnd>), String> {
        let mut argv = as_user.to_vec();
        argv.extend(self.argv(&["--output=json", "info"]));
        let out = tool_command::run_ok(&argv, as_user.len(), INFO_OUTPUT).await?;
        let json: serde_json::Value = serde_json::from_str(&out.stdout)
            .map_err(|e| format!("pgbackrest info printed no JSON: {e}"))?;
        let stanza = json
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == self.stanza.as_str());
        let newest = stanza
            .into_iter()
            .flat_map(|s| {
                s["backup"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    // After a `stanza-upgrade`, the old major's backups restore the old cluster.
                    .filter(move |b| crate::probe::pgbackrest::of_current_db(s, b))
            })
            // `error: true` (pages with bad checksums found while copying) is still a whole
            // backup, and the one a restore would use.
            .max_by_key(|b| b["timestamp"]["stop"].as_i64().unwrap_or(0))
            .ok_or_else(|| format!("pgBackRest stanza {} has no backup to restore", self.stanza))?;
        let label = newest["label"].as_str().unwrap_or_default().to_string();
        let bytes = newest["info"]["size"].as_u64().unwrap_or(0);
        let space = super::backup::space(scratch, bytes, factor)?;
        let end = match stanza {
            Some(s) => self.archive_end(as_user, s).await,
            None => None,
        };
        Ok((label, space, end))
    }

    /// The stanza's newest archived segment (`info`'s `archive.max`, the newest of its
    /// repositories: recovery's `archive-get` tries each) and when it was stored (`repo-ls` of
    /// its directory; unknown when that fails): what replay must reach.
    async fn archive_end(
        &self,
        as_user: &[String],
        stanza: &serde_json::Value,
    ) -> Option<ArchiveEnd> {
        use crate::probe::pgbackrest::{newest_archive_tip, stored_at};
        let tip = newest_archive_tip(stanza)?;
        let mut argv = as_user.to_vec();
        argv.extend(self.command.iter().cloned());
        if let Some(c) = &self.config {
            argv.push(format!("--config={}", c.display()));
        }
        argv.extend(tip.repo_ls_args());
        let at = match tool_command::run(&argv, INFO_OUTPUT).await {
            Ok(out) => stored_at(&out, &tip.max),
            Err(_) => None,
        };
        Some((tip.max, at))
    }

    /// `pgbackrest restore` of `label` into `data` (created empty here).
    pub async fn restore(
        &self,
        label: &str,
        data: &Path,
        owner: Option<(Uid, Gid)>,
        limit: &[String],
    ) -> Result<(), String> {
        std::fs::create_dir(data).map_err(|e| {
            format!(
                "creating {}: {}",
                data.display(),
                super::super::backup_dir::os_text(&e)
            )
        })?;
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(data, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", data.display()))?;
        }
        let mut argv: Vec<String> = limit.to_vec();
        argv.extend(self.argv(&[
            &format!("--pg1-path={}", data.display()),
            &format!("--set={label}"),
            // Tablespaces into the scratch too, never to their original paths (the drill
            // then refuses to start a backup with tablespaces, see `Scratch::prepare`).
            &format!(
                "--tablespace-map-all={}",
                data.with_file_name("tablespaces").display()
            ),
            "--type=default",
            // pgBackRest 2.56 and later lock a restore (to report its progress) in lock-path,
            // by default /tmp/pgbackrest, made by and for the user that runs backups: a drill
            // run as another user could not lock there, and an operator's restore of the same
            // stanza would refuse it. The lock guards nothing else, so the drill keeps its own.
            &format!(
                "--lock-path={}",
                data.with_file_name("pgbackrest-lock").display()
            ),
            "restore",
        ]));
        // The recovery target and restore_command are set by the drill afterwards: its
        // settings come after pgBackRest's in postgresql.auto.conf.
        tool_command::run_ok(&argv, limit.len(), INFO_OUTPUT).await?;
        Ok(())
    }

    /// The shell command recovery runs for one WAL file (`%f` into `%p`).
    /// `data` is the restored cluster: archive-get checks the repository against its pg_control.
    /// Never asynchronous, with a lock path of its own: with `archive-async=y` (the user
    /// guide's setup) archive-get would take the stanza's archive lock, which production's
    /// asynchronous archive-push takes too, and share (and clean) its spool queue.
    pub fn archive_get(&self, data: &Path) -> String {
        let lock = data.with_file_name("pgbackrest-lock");
        // `%` is restore_command's escape; the arguments were checked free of quotes.
        let mut words: Vec<String> = self
            .argv(&[
                &format!("--pg1-path={}", data.display()),
                "--no-archive-async",
                &format!("--lock-path={}", lock.display()),
                "archive-get",
            ])
            .iter()
            .map(|a| format!("'{}'", a.replace('%', "%%")))
            .collect();
        words.push("%f '%p'".into());
        words.join(" ")
    }

    pub fn shown(&self) -> String {
        format!("pgBackRest stanza {}", self.stanza)
    }
}
