//! The scratch server's settings: appended to `postgresql.auto.conf` (the last word on each),
//! with `recovery.signal`, an `hba_file` of its own and the files restore_command logs to.

use super::server::Scratch;
use super::{DrillProbe, Target};
use crate::probe::archive_dir::names::COMPRESSION_SUFFIXES;
use crate::probe::backup_dir::os_text;
use backwatch_proto::model::DrillObs;
use chrono::Utc;
use nix::unistd::{Gid, Uid};
use std::io::Write as _;
use std::path::Path;

/// Any port: the server listens on no TCP address, only on its socket in our directory.
pub const PORT: u16 = 5432;

/// Shell that copies segment `%f` of archive directory `a` to `%p`: as it is, or decompressed
/// when the archive holds it under a compression suffix (what compressing archive commands
/// write; the archive check reads the same names). Fails when none is there.
fn fetch_from(a: &str) -> String {
    let mut s = format!("{{ if [ -f '{a}/%f' ]; then cp '{a}/%f' '%p'; ");
    // An encrypted segment cannot be restored without its key: it counts as missing.
    for (suffix, command) in COMPRESSION_SUFFIXES
        .iter()
        .filter_map(|(suffix, c)| Some((suffix, c.decompress_command()?)))
    {
        s.push_str(&format!(
            "elif [ -f '{a}/%f{suffix}' ]; then {command} '{a}/%f{suffix}' > '%p'; "
        ));
    }
    s.push_str("else false; fi; }");
    s
}

/// The block appended to postgresql.auto.conf (the last word on every setting).
///
/// Besides making the server private (no TCP, a socket and hba of its own), it undoes what
/// the backup's configuration would make a promoted copy do to production: background
/// workers are off (a subscriber's apply workers would connect to the production publisher
/// and confirm its slot's changes; pg_cron would run due jobs against `localhost:5432`;
/// `hot_standby = off` lets recovery run with fewer than the primary had), the recovery hooks
/// of a standby-taken backup (`archive_cleanup_command` would clean the real archive), an
/// apply delay that would outlast the drill, a synchronous standby that would hold every
/// commit, and the production server's external pid file.
pub fn block(p: &DrillProbe, scratch: &Scratch, obs: &mut DrillObs) -> String {
    let q = |s: &str| s.replace('\'', "''");
    let log = scratch.fetched().display().to_string().replace('%', "%%");
    // Each fetch and miss is logged, which counts the segments and names a missing one.
    let logged = |fetch: String| {
        format!(
            "if {fetch}; then echo 'restored %f' >> '{log}'; else echo 'missing %f' >> '{log}'; exit 1; fi"
        )
    };
    let restore_command = match (&p.pgbackrest, p.wal_archive(&scratch.data())) {
        (Some(src), _) => logged(src.archive_get(&scratch.data())),
        // `%` is restore_command's escape; paths were checked free of quotes.
        (None, Some(a)) => logged(fetch_from(&a.display().to_string().replace('%', "%%"))),
        (None, None) => "false".into(),
    };
    let mut s = format!(
        "\n# backwatch drill {}: a private, throw-away server\n\
         restore_command = '{}'\n\
         archive_mode = off\n\
         archive_command = ''\n\
         listen_addresses = ''\n\
         port = {PORT}\n\
         unix_socket_directories = '{}'\n\
         hba_file = '{}'\n\
         ssl = off\n\
         hot_standby = off\n\
         primary_conninfo = ''\n\
         max_worker_processes = 0\n\
         max_logical_replication_workers = 0\n\
         synchronous_standby_names = ''\n\
         archive_cleanup_command = ''\n\
         recovery_end_command = ''\n\
         recovery_min_apply_delay = 0\n\
         external_pid_file = ''\n\
         shared_buffers = '16MB'\n\
         jit = off\n\
         work_mem = '4MB'\n\
         maintenance_work_mem = '16MB'\n\
         logging_collector = off\n\
         log_destination = 'stderr'\n\
         lc_messages = 'C'\n\
         cluster_name = 'backwatch-drill'\n\
         recovery_target = ''\n\
         recovery_target_lsn = ''\n\
         recovery_target_name = ''\n\
         recovery_target_xid = ''\n",
        p.name,
        q(&restore_command),
        q(&scratch.sock().display().to_string()),
        q(&scratch
            .data()
            .join("pg_hba.drill.conf")
            .display()
            .to_string()),
    );
    match p.target {
        Target::Latest => s.push_str("recovery_target_time = ''\n"),
        Target::Before(d) => {
            let t = *obs.target_time.get_or_insert_with(|| {
                Utc::now() - chrono::Duration::from_std(d).unwrap_or_default()
            });
            s.push_str(&format!(
                "recovery_target_time = '{}'\nrecovery_target_action = 'promote'\n",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00")
            ));
        }
    }
    s
}

pub fn write(data: &Path, sock: &Path, fetched: &Path, settings: &str) -> Result<(), String> {
    let io =
        |what: &Path, e: std::io::Error| format!("writing {}: {}", what.display(), os_text(&e));
    // A Debian cluster keeps postgresql.conf in /etc: the backup has none, and the server
    // needs one. Files of the backup that would start it as something else are removed.
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        std::fs::write(&conf, "").map_err(|e| io(&conf, e))?;
    }
    for f in [
        "standby.signal",
        "postmaster.pid",
        "postmaster.opts",
        "backup_manifest",
    ] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let hba = data.join("pg_hba.drill.conf");
    std::fs::write(
        &hba,
        "# the scratch server's socket is in a 0700 directory\nlocal all all trust\n",
    )
    .map_err(|e| io(&hba, e))?;
    let signal = data.join("recovery.signal");
    std::fs::write(&signal, "").map_err(|e| io(&signal, e))?;
    let auto = data.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .map_err(|e| io(&auto, e))?;
    f.write_all(settings.as_bytes()).map_err(|e| io(&auto, e))?;
    std::fs::create_dir_all(sock).map_err(|e| io(sock, e))?;
    std::fs::write(fetched, "").map_err(|e| io(fetched, e))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(data, e))?;
    Ok(())
}

pub fn chown_tree(dir: &Path, uid: Uid, gid: Gid) -> Result<(), String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &d,
            Some(uid),
            Some(gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| format!("chown {}: {e}", d.display()))?;
        let Ok(meta) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if meta.is_dir() {
            let entries = std::fs::read_dir(&d)
                .map_err(|e| format!("listing {}: {}", d.display(), os_text(&e)))?;
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}
