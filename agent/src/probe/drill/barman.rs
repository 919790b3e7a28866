//! Barman as a drill's source: the newest usable backup of a server, restored with
//! `barman recover <server> <id> <scratch>` (local recovery, which brings the WAL it needs).
//!
//! Barman copies the WAL into the restored directory itself: into `barman_wal/` for a
//! point-in-time target (then the drill's restore_command reads from there, logged like an
//! archive), else straight into `pg_wal/`. The segments it copied count as restored. Barman's
//! catalogue is only read (its lock files live in `barman_lock_directory`). The commands run as
//! the agent or through `command` (`["sudo", "-n", "-u", "barman", "barman"]`: Barman runs
//! only as its `barman_user`, who must then be able to write in `scratch_dir`).

use super::super::tool_command;
use super::backup::Space;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BarmanSource {
    pub server: String,
    /// `-c`.
    pub config: Option<PathBuf>,
    /// Program and leading arguments (default `["barman"]`).
    pub command: Vec<String>,
}

/// Barman lists a server's backups in a few KiB; recover prints a page.
const OUTPUT: tool_command::Limits = tool_command::JSON_TOOL;

impl BarmanSource {
    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = self.command.clone();
        if let Some(c) = &self.config {
            v.push("-c".into());
            v.push(c.display().to_string());
        }
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    pub fn shown(&self) -> String {
        format!("Barman server {}", self.server)
    }

    /// The newest usable backup (`DONE`), how `recover` must stage it,
    /// and the space check.
    pub async fn choose(&self, scratch: &Path, factor: f64) -> Result<(Chosen, Space), String> {
        let argv = self.argv(&["-f", "json", "list-backups", &self.server]);
        let out = tool_command::run_ok(&argv, 0, OUTPUT).await?;
        let json: serde_json::Value = serde_json::from_str(&out.stdout)
            .map_err(|e| format!("barman list-backups printed no JSON: {e}"))?;
        let id = |e: &serde_json::Value| e["backup_id"].as_str().unwrap_or_default().to_string();
        let entries = json[self.server.as_str()]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let usable = crate::probe::barman::usable_newest_first(entries);
        let newest = usable
            .first()
            .ok_or_else(|| format!("Barman server {} has no backup to restore", self.server))?;
        // What `show-backup` adds (the cluster's size, compression, encryption); without it
        // the listing's size is all there is.
        let argv = self.argv(&["-f", "json", "show-backup", &self.server, &id(newest)]);
        let shown: serde_json::Value = match tool_command::run_ok(&argv, 0, OUTPUT).await {
            Ok(out) => serde_json::from_str(&out.stdout).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let bytes = space_needed(newest, &shown[self.server.as_str()], &usable);
        let staging = staging_options(self.version().await);
        let space = super::backup::space(scratch, bytes, factor)?;
        Ok((
            Chosen {
                id: id(newest),
                staging,
            },
            space,
        ))
    }

    /// `barman --version`'s release (`3.4.0 Barman by EnterpriseDB …`), `None` when it cannot
    /// be read.
    async fn version(&self) -> Option<(u32, u32)> {
        let out = tool_command::run(&self.argv(&["--version"]), OUTPUT)
            .await
            .ok()?;
        let word = out.stdout.split_whitespace().next()?;
        let mut parts = word.split('.').map(|p| p.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    }

    /// `barman recover` of `chosen` into `data` (Barman creates it), to `target` when set.
    pub async fn restore(
        &self,
        chosen: &Chosen,
        data: &Path,
        target: Option<DateTime<Utc>>,
        limit: &[String],
    ) -> Result<(), String> {
        let mut args = vec!["recover".to_string()];
        if let Some(t) = target {
            args.push("--target-time".into());
            args.push(t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string());
        }
        let dir = staging_dir(data).display().to_string();
        args.extend(chosen.staging.iter().map(|o| o.replace(STAGING_DIR, &dir)));
        args.extend([
            self.server.clone(),
            chosen.id.clone(),
            data.display().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut argv: Vec<String> = limit.to_vec();
        argv.extend(self.argv(&args));
        tool_command::run_ok(&argv, limit.len(), OUTPUT).await?;
        Ok(())
    }
}

/// The backup a drill restores.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub id: String,
    /// `recover`'s staging options, with [`STAGING_DIR`] standing for the directory.
    staging: Vec<String>,
}

/// Stands for the staging directory in [`Chosen::staging`] until the scratch exists.
const STAGING_DIR: &str = "{staging}";

/// Where `recover` decompresses or combines a backup: beside the restored data, inside the
/// drill's scratch directory (space checked, removed with it). Barman's own default is `/tmp`
/// (3.15 and later) or nothing at all, when it refuses (3.14 and earlier: "backup is
/// compressed with gzip compression but no recovery staging path is provided").
fn staging_dir(data: &Path) -> PathBuf {
    data.with_file_name("staging")
}

/// The options that put `recover`'s staging in [`STAGING_DIR`]: `--staging-path` from Barman
/// 3.15; before it one option per reason, `--recovery-staging-path` to decompress (3.0 and
/// later) and `--local-staging-path` to combine an incremental (3.11 and later). Each is used
/// only by a backup that needs it, so they are always given; a release that cannot be read gets
/// none (Barman's own configuration then applies).
fn staging_options(version: Option<(u32, u32)>) -> Vec<String> {
    let dir = STAGING_DIR;
    match version {
        Some(v) if v >= (3, 15) => vec![
            format!("--staging-path={dir}"),
            "--staging-location=local".to_string(),
        ],
        Some(v) if v >= (3, 11) => vec![
            format!("--recovery-staging-path={dir}"),
            format!("--local-staging-path={dir}"),
        ],
        Some(v) if v >= (3, 0) => vec![format!("--recovery-staging-path={dir}")],
        _ => Vec::new(),
    }
}

/// What `recover` of `newest` writes into the scratch: the whole cluster (its size when the
/// backup was taken, `cluster_size_bytes` of `show-backup`, Barman 3.11 and later; the backup's
/// own size for a plain full backup), twice when Barman first decompresses, decrypts or
/// combines it in its staging directory, which the drill keeps in its scratch
/// ([`staging_dir`]). Barman says a backup is compressed or encrypted in `show-backup` from
/// 3.16 on: before, a compressed backup's staging copy is not counted.
fn space_needed(
    newest: &serde_json::Value,
    shown: &serde_json::Value,
    usable: &[&serde_json::Value],
) -> u64 {
    let info = &shown["base_backup_information"];
    let set = |key: &str| {
        info[key]
            .as_str()
            .is_some_and(|c| !c.is_empty() && c != "none")
    };
    let incremental = crate::probe::barman::is_incremental(newest);
    let size = newest["size_bytes"].as_u64().unwrap_or(0);
    let restored = if incremental {
        restored_bytes(shown, usable)
    } else {
        size.max(shown["cluster_size_bytes"].as_u64().unwrap_or(0))
    };
    if incremental || set("compression") || set("encryption") {
        restored.saturating_mul(2)
    } else {
        restored
    }
}

/// What restoring a compressed or incremental backup writes: the cluster's size when it was
/// taken (`cluster_size_bytes` of its `show-backup`, Barman 3.11 and later), else the sizes of
/// every usable backup from the newest full one up to it (`usable`, newest first): an upper
/// bound for an incremental chain, the compressed size (less than it unpacks to) for a
/// compressed backup of an older Barman.
fn restored_bytes(shown: &serde_json::Value, usable: &[&serde_json::Value]) -> u64 {
    if let Some(bytes) = shown["cluster_size_bytes"].as_u64() {
        return bytes;
    }
    let size = |e: &serde_json::Value| e["size_bytes"].as_u64().unwrap_or(0);
    let mut bytes = 0u64;
    for e in usable {
        bytes = bytes.saturating_add(size(e));
        if !crate::probe::barman::is_incremental(e) {
            break;
        }
    }
    bytes
}

/// Where Barman put the WAL of a point-in-time recovery, as an archive for restore_command.
pub fn wal_dir(data: &Path) -> PathBuf {
    data.join("barman_wal")
}

/// WAL segments Barman copied straight into `pg_wal/` (those in `barman_wal/` are counted as
/// restore_command fetches them).
pub fn copied_segments(data: &Path) -> u64 {
    std::fs::read_dir(data.join("pg_wal"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incremental_needs_the_whole_cluster_restored() {
        let list: serde_json::Value = serde_json::from_str(
            r#"[
                {"backup_id": "3", "backup_type": "incremental", "size_bytes": 10, "status": "DONE"},
                {"backup_id": "2", "backup_type": "incremental", "size_bytes": 20, "status": "DONE"},
                {"backup_id": "1", "backup_type": "full", "size_bytes": 1000, "status": "DONE"},
                {"backup_id": "0", "backup_type": "full", "size_bytes": 900, "status": "DONE"}
            ]"#,
        )
        .unwrap();
        let usable: Vec<&serde_json::Value> = list.as_array().unwrap().iter().collect();
        let shown: serde_json::Value =
            serde_json::from_str(r#"{"backup_id": "3", "cluster_size_bytes": 1200}"#).unwrap();
        assert_eq!(restored_bytes(&shown, &usable), 1200);
        // Without the cluster's size: the chain back to the newest full, at most.
        assert_eq!(restored_bytes(&serde_json::Value::Null, &usable), 1030);
    }

    #[test]
    fn staged_backups_need_the_cluster_twice() {
        let v = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
        let full = v(r#"{"backup_id": "1", "backup_type": "full", "size_bytes": 300}"#);
        let incr = v(r#"{"backup_id": "2", "backup_type": "incremental", "size_bytes": 10}"#);
        let usable = [&incr, &full];
        // A plain full backup: its size, or the cluster's when larger.
        assert_eq!(space_needed(&full, &serde_json::Value::Null, &usable), 300);
        assert_eq!(
            space_needed(&full, &v(r#"{"cluster_size_bytes": 1000}"#), &usable),
            1000
        );
        // Decompressed, decrypted or combined in the staging directory first: twice.
        let compressed = v(r#"{"cluster_size_bytes": 1000,
            "base_backup_information": {"compression": "gzip", "encryption": null}}"#);
        assert_eq!(space_needed(&full, &compressed, &usable), 2000);
        let encrypted = v(r#"{"cluster_size_bytes": 1000,
            "base_backup_information": {"compression": null, "encryption": "gpg"}}"#);
        assert_eq!(space_needed(&full, &encrypted, &usable), 2000);
        assert_eq!(
            space_needed(&incr, &v(r#"{"cluster_size_bytes": 1200}"#), &usable),
            2400
        );
    }

    #[test]
    fn staging_goes_into_the_scratch_with_the_options_of_the_release() {
        assert_eq!(
            staging_options(Some((3, 19))),
            ["--staging-path={staging}", "--staging-location=local"]
        );
        assert_eq!(
            staging_options(Some((3, 14))),
            [
                "--recovery-staging-path={staging}",
                "--local-staging-path={staging}"
            ]
        );
        assert_eq!(
            staging_options(Some((3, 4))),
            ["--recovery-staging-path={staging}"]
        );
        assert!(staging_options(Some((2, 19))).is_empty());
        assert!(staging_options(None).is_empty());
        assert_eq!(
            staging_dir(Path::new("/s/backwatch-drill-pg-1/data")),
            Path::new("/s/backwatch-drill-pg-1/staging")
        );
    }
}
