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

    /// Id and size of the newest usable backup (`DONE`, `WAITING_FOR_WALS`), and the space check.
    pub async fn choose(&self, scratch: &Path, factor: f64) -> Result<(String, Space), String> {
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
        let mut bytes = newest["size_bytes"].as_u64().unwrap_or(0);
        if crate::probe::barman::is_incremental(newest) {
            // An incremental holds only the changed blocks; `recover` combines its chain into
            // a whole cluster, whose size at backup time `show-backup` gives (Barman 3.11 and
            // later, which are the ones that take incrementals).
            let argv = self.argv(&["-f", "json", "show-backup", &self.server, &id(newest)]);
            let out = tool_command::run_ok(&argv, 0, OUTPUT).await?;
            let shown: serde_json::Value = serde_json::from_str(&out.stdout)
                .map_err(|e| format!("barman show-backup printed no JSON: {e}"))?;
            bytes = restored_bytes(&shown[self.server.as_str()], &usable);
        }
        let space = super::backup::space(scratch, bytes, factor)?;
        Ok((id(newest), space))
    }

    /// `barman recover` of `id` into `data` (Barman creates it), to `target` when set.
    pub async fn restore(
        &self,
        id: &str,
        data: &Path,
        target: Option<DateTime<Utc>>,
        limit: &[String],
    ) -> Result<(), String> {
        let mut args = vec!["recover".to_string()];
        if let Some(t) = target {
            args.push("--target-time".into());
            args.push(t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string());
        }
        args.extend([
            self.server.clone(),
            id.to_string(),
            data.display().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut argv: Vec<String> = limit.to_vec();
        argv.extend(self.argv(&args));
        tool_command::run_ok(&argv, limit.len(), OUTPUT).await?;
        Ok(())
    }
}

/// What restoring an incremental backup writes: the cluster's size when it was taken
/// (`cluster_size_bytes` of its `show-backup`), else, as an upper bound, the sizes of every
/// usable backup from the newest full one up to it (`usable`, newest first).
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
}
