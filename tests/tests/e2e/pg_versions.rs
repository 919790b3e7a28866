//! The WAL-archiving and archive-directory scenarios on every PostgreSQL major from 10 to 18,
//! each a real server of that major (`target/pg/<major>`, installed by
//! `scripts/install-pg-majors`), probed by the real agent and judged by the real collector.
//!
//! Per major, one agent watches its clusters at once: healthy (and its archive directory),
//! failing then fixed, silently failing (`archive_command = /bin/true`), stuck (a segment
//! waiting 20 minutes behind a hanging command), archiving off, idle for hours (archived on a
//! clock four hours behind), stopped (unreachable: unknown, saying so), and a streaming
//! standby (by `pg_basebackup` where the major's build has it, else a copy of the stopped
//! primary); the WAL settings of two of them are judged
//! against the procedure (`settings.<name>`). On 10 and 11, which have no
//! `pg_ls_archive_statusdir()`, the WAL check estimates the pending work from WAL positions and
//! says so, instead of being unknown.

use anyhow::{Result, ensure};
use backwatch_tests::harness::pg::major_bindir;
use backwatch_tests::harness::{PgCluster, scene};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const ARCHIVED: Duration = Duration::from_secs(30);

fn summary(c: &Value) -> &str {
    c["summary"].as_str().unwrap_or_default()
}

fn touch_ago(path: &std::path::Path, ago: &str) -> Result<()> {
    let ok = Command::new("touch")
        .args(["-d", ago])
        .arg(path)
        .status()?
        .success();
    ensure!(ok, "touch -d {ago:?} {}", path.display());
    Ok(())
}

/// `[[archive_dir]] <name>` linked to `[[wal]] <name>`, with the owner the harness gave it.
fn archive_section(name: &str, pg: &PgCluster) -> Result<String> {
    use nix::unistd::{Gid, Group, Uid, User};
    use std::os::unix::fs::MetadataExt;
    fs::set_permissions(pg.archive_dir(), fs::Permissions::from_mode(0o700))?;
    let meta = fs::metadata(pg.archive_dir())?;
    let user = User::from_uid(Uid::from_raw(meta.uid()))?.map(|u| u.name);
    let group = Group::from_gid(Gid::from_raw(meta.gid()))?.map(|g| g.name);
    Ok(format!(
        "[[archive_dir]]\nname = \"{name}\"\npath = \"{}\"\nwal = \"{name}\"\ninterval = \"1s\"\n\
         expected_owner = \"{}\"\nexpected_group = \"{}\"\n",
        pg.archive_dir().display(),
        user.unwrap_or_default(),
        group.unwrap_or_default()
    ))
}

async fn scenarios(major: u32) -> Result<()> {
    let cluster = || PgCluster::init().major(major);
    // archive_timeout set as the procedure asks, so its settings check is ok.
    let healthy = cluster().setting("archive_timeout", "300").start()?;
    ensure!(
        healthy.major()? == major,
        "PG_VERSION of the healthy cluster"
    );
    let failing = cluster().archive_command("false").start()?;
    let silent = cluster().archive_command("/bin/true").start()?;
    let stuck = cluster().start()?;
    let off = cluster().archive_mode("off").start()?;
    // Unreachable: a server of this major that has stopped (its socket is gone).
    let gone = cluster().start()?;
    gone.stop()?;
    // Idle for hours: archived on a clock four hours behind, then back on the true one.
    let idle = cluster().start()?;
    idle.stop()?;
    idle.start_with_clock_offset(-4 * 3600)?;
    let idle_segment = idle.switch_wal_archived(ARCHIVED).await?;
    idle.stop()?;
    idle.start()?;
    // A streaming standby: by pg_basebackup where this major's build has it (18's complete
    // build), else by copying the stopped primary's data directory.
    let standby = if major_bindir(major)?.join("pg_basebackup").is_file() {
        healthy.standby().archive_mode("on").start()?
    } else {
        healthy.stop()?;
        let s = healthy.cold_standby().archive_mode("on").start();
        healthy.start()?;
        s?
    };

    healthy.switch_wal_archived(ARCHIVED).await?;
    healthy.switch_wal_archived(ARCHIVED).await?;
    let failed = failing.switch_wal()?;
    let lost = silent.switch_wal_archived(ARCHIVED).await?;
    // Archived once (so even the estimate from positions has a start), then hanging: the next
    // segment has waited 20 minutes, by its .ready file and by its file in pg_wal.
    stuck.switch_wal_archived(ARCHIVED).await?;
    stuck.set_archive_command("sleep 600")?;
    let waiting = stuck.switch_wal()?;
    touch_ago(
        &stuck.ready_dir().join(format!("{waiting}.ready")),
        "20 minutes ago",
    )?;
    touch_ago(
        &stuck.data_dir().join("pg_wal").join(&waiting),
        "20 minutes ago",
    )?;

    let mut toml = archive_section("healthy", &healthy)?;
    toml.push_str("[[settings]]\nname = \"healthy\"\nwal = \"healthy\"\ninterval = \"1s\"\n");
    toml.push_str("[[settings]]\nname = \"off\"\nwal = \"off\"\ninterval = \"1s\"\n");
    toml.push_str(&archive_section("silent", &silent)?);
    let scene = scene("db1", |a| {
        a.wal("standby", &standby.dsn(), "1s")
            .wal("healthy", &healthy.dsn(), "1s")
            .wal("failing", &failing.dsn(), "1s")
            .wal("silent", &silent.dsn(), "1s")
            .wal("stuck", &stuck.dsn(), "1s")
            .wal("off", &off.dsn(), "1s")
            .wal("idle", &idle.dsn(), "1s")
            .wal("gone", &gone.dsn(), "1s")
            .toml(&toml)
    })
    .await?;
    let collector = &scene.collector;
    let estimated = major < 12;

    let c = collector
        .wait_summary("db1", "wal.healthy", "ok", "archiving ok", WAIT)
        .await;
    assert_eq!(
        summary(&c).contains(
            "(estimated from WAL positions: pg_ls_archive_statusdir() missing or not permitted)"
        ),
        estimated,
        "PostgreSQL {major}: {c}"
    );
    assert_eq!(c["details"]["data_at_risk_secs"], 0, "idle: {c}");
    assert!(c["details"]["system_identifier"].is_string(), "{c}");

    let c = collector
        .wait_status("db1", "archive.healthy", "ok", WAIT)
        .await;
    assert!(
        summary(&c).starts_with("archive ok"),
        "PostgreSQL {major}: {c}"
    );
    // Retention judges a young cluster by its age, known from its system identifier
    // (pg_control_system) on every major.
    assert!(
        c["details"]["cluster_age_secs"]
            .as_i64()
            .is_some_and(|a| (0..3600).contains(&a)),
        "PostgreSQL {major}: {c}"
    );

    let c = collector
        .wait_summary(
            "db1",
            "wal.failing",
            "critical",
            "archiving is failing: ",
            WAIT,
        )
        .await;
    assert!(summary(&c).contains(&failed), "PostgreSQL {major}: {c}");

    collector
        .wait_summary(
            "db1",
            "archive.silent",
            "critical",
            &format!("{lost} is not in the archive although PostgreSQL reports it archived"),
            WAIT,
        )
        .await;

    let c = collector
        .wait_summary(
            "db1",
            "wal.stuck",
            "critical",
            "archive delay 20 min (limit 15 min)",
            WAIT,
        )
        .await;
    assert!(summary(&c).contains(&waiting), "PostgreSQL {major}: {c}");

    collector
        .wait_summary(
            "db1",
            "wal.off",
            "critical",
            "archiving disabled: archive_mode = off",
            WAIT,
        )
        .await;

    let c = collector
        .wait_summary("db1", "wal.idle", "ok", "archiving ok", WAIT)
        .await;
    assert!(
        summary(&c).contains(&format!("; last archived {idle_segment} at ")),
        "PostgreSQL {major}: {c}"
    );
    assert_eq!(c["details"]["data_at_risk_secs"], 0, "idle for hours: {c}");

    // WAL configuration compliance reads the same settings on every major.
    collector
        .wait_status("db1", "settings.healthy", "ok", WAIT)
        .await;
    let c = collector
        .wait_status("db1", "settings.off", "warning", WAIT)
        .await;
    assert!(
        summary(&c).contains("archive_mode = off (expected on)"),
        "PostgreSQL {major}: {c}"
    );

    let c = collector
        .wait_status("db1", "wal.gone", "unknown", WAIT)
        .await;
    assert!(
        summary(&c).contains("cannot connect"),
        "PostgreSQL {major}: {c}"
    );

    collector
        .wait_summary(
            "db1",
            "wal.standby",
            "ok",
            "not applicable: standby (archiving is done by the primary)",
            WAIT,
        )
        .await;
    // It streams from the primary (not merely recovering from a copy).
    backwatch_tests::harness::eventually(WAIT, "the standby streaming", async || {
        ensure!(
            healthy.psql("SELECT count(*) FROM pg_stat_replication")? == "1",
            "PostgreSQL {major}: the standby is not streaming\n{}",
            standby.log()
        );
        Ok(())
    })
    .await;

    // Fixed: the failing server archives again and the check recovers.
    failing.set_archive_command(&failing.copy_archive_command())?;
    // Before 12 the archiver sleeps up to a minute after three failures; a new segment wakes it.
    failing.switch_wal()?;
    collector
        .wait_summary("db1", "wal.failing", "ok", "archiving ok", WAIT)
        .await;
    Ok(())
}

/// Restore readiness takes the pg_verifybackup of the backup's own major (its `PG_VERSION`),
/// not the newest installed, and says which; tar-format backups (`-Ft`) are verified by 18's,
/// which reads tar, and where only older tools exist the check says so instead of calling a
/// healthy backup damaged.
#[tokio::test]
async fn restore_readiness_verifies_with_the_backups_own_major_and_tar_with_18() -> Result<()> {
    use backwatch_tests::harness::pg::{bindir, major_bindir};
    let roots = tempfile::tempdir()?;
    let (both, only15, only18) = (
        roots.path().join("both"),
        roots.path().join("only15"),
        roots.path().join("only18"),
    );
    let debian = bindir()?
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let debian_major: u32 = debian
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(15);
    let pg18 = major_bindir(18)?
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    for (dir, links) in [
        (&both, vec![(debian_major, &debian), (18, &pg18)]),
        (&only15, vec![(debian_major, &debian)]),
        (&only18, vec![(18, &pg18)]),
    ] {
        fs::create_dir(dir)?;
        for (m, to) in links {
            std::os::unix::fs::symlink(to, dir.join(m.to_string()))?;
        }
    }
    let old = PgCluster::init().start()?;
    let new = PgCluster::init().major(18).start()?;
    let backups = tempfile::tempdir()?;
    let b = |n: &str| backups.path().join(n);
    old.base_backup(&b("old-plain"), &["-Fp", "-X", "stream"])?;
    old.base_backup(&b("old-tar"), &["-Ft", "-X", "stream"])?;
    new.base_backup(&b("new-plain"), &["-Fp", "-X", "stream"])?;
    new.base_backup(&b("new-tar"), &["-Ft", "-X", "stream"])?;
    // Compressed by the server: base.tar.gz, and the streamed WAL in a plain pg_wal.tar.
    new.base_backup(
        &b("new-tar-gz"),
        &["-Ft", "-X", "stream", "--compress=server-gzip"],
    )?;
    ensure!(b("new-tar-gz").join("pg_wal.tar").is_file());
    // Without a manifest (as every PostgreSQL 12 backup): nothing pg_verifybackup can check.
    new.base_backup(&b("no-manifest"), &["-Fp", "-X", "stream", "--no-manifest"])?;
    let section = |name: &str, dir: &str, root: &std::path::Path| {
        format!(
            "[[restore]]\nname = \"{name}\"\nbackup_dir = \"{}\"\npg_roots = [\"{}\"]\ninterval = \"1h\"\n",
            b(dir).display(),
            root.display()
        )
    };
    let toml = [
        section("old_plain", "old-plain", &both),
        section("old_tar", "old-tar", &both),
        section("new_plain", "new-plain", &both),
        section("new_tar", "new-tar", &both),
        section("new_tar_gz", "new-tar-gz", &both),
        section("no_manifest", "no-manifest", &both),
        section("tar_without_18", "old-tar", &only15),
        // The backup's own major not installed: 18's pg_waldump would refuse its WAL.
        section("old_plain_by_18", "old-plain", &only18),
    ]
    .concat();
    let scene = scene("db1", |a| a.toml(&toml)).await?;
    let c = &scene.collector;
    let d = debian_major;
    for (check, status, words) in [
        (
            "restore.old_plain",
            "ok",
            format!("verified by pg_verifybackup {d} in "),
        ),
        (
            "restore.new_plain",
            "ok",
            "verified by pg_verifybackup 18 in ".to_string(),
        ),
        (
            "restore.new_tar",
            "ok",
            "(tar format) verified by pg_verifybackup 18 in ".to_string(),
        ),
        (
            "restore.new_tar",
            "ok",
            "; its WAL in the backup's tar files (listed;".to_string(),
        ),
        (
            "restore.new_tar_gz",
            "ok",
            "; its WAL in the backup's tar files (listed;".to_string(),
        ),
        (
            "restore.no_manifest",
            "unknown",
            "/no-manifest: it has no backup_manifest (PostgreSQL 12, pg_basebackup --no-manifest"
                .to_string(),
        ),
        (
            "restore.old_tar",
            "ok",
            format!("(tar format) verified by pg_verifybackup 18 (backup of PostgreSQL {d}) in "),
        ),
        (
            "restore.old_plain_by_18",
            "ok",
            format!("verified by pg_verifybackup 18 (backup of PostgreSQL {d}) in "),
        ),
        (
            "restore.tar_without_18",
            "unknown",
            format!(
                "a tar-format backup is verified by pg_verifybackup 18 or later for a PostgreSQL {d} backup, and installed: {d}"
            ),
        ),
    ] {
        let got = c.wait_status("db1", check, status, WAIT).await;
        assert!(summary(&got).contains(&words), "{check}: {got}");
    }
    Ok(())
}

macro_rules! majors {
    ($($test:ident => $major:expr),* $(,)?) => {$(
        #[tokio::test]
        async fn $test() -> Result<()> {
            scenarios($major).await
        }
    )*};
}

majors!(
    postgresql_10 => 10,
    postgresql_11 => 11,
    postgresql_12 => 12,
    postgresql_13 => 13,
    postgresql_14 => 14,
    postgresql_15 => 15,
    postgresql_16 => 16,
    postgresql_17 => 17,
    postgresql_18 => 18,
);

/// A restore drill of a PostgreSQL 18 backup starts 18's server, found under `pg_roots` (here
/// the test cache `target/pg`, laid out `<major>/bin` as Debian's `/usr/lib/postgresql` is), and
/// says which binaries it used.
#[tokio::test]
async fn a_drill_of_an_18_backup_runs_18s_server_found_under_pg_roots() -> Result<()> {
    let bin18 = major_bindir(18)?;
    let root = bin18
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or_else(|| anyhow::anyhow!("{} has no root", bin18.display()))?;
    let pg = PgCluster::init().major(18).wal_segment_size_mb(1).start()?;
    pg.psql("CREATE TABLE orders AS SELECT generate_series(1, 42) AS id")?;
    let backups = tempfile::tempdir()?;
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "none"])?;
    pg.switch_wal_archived(ARCHIVED).await?;
    // The scratch server runs as postgres, which must reach its directory.
    let scratch = tempfile::Builder::new().prefix("bw-drill-").tempdir()?;
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755))?;
    let section = format!(
        "[[drill]]\nname = \"pg18\"\nbackup_dir = \"{}\"\narchive_dir = \"{}\"\nscratch_dir = \"{}\"\n\
         pg_roots = [\"{}\"]\ninterval = \"1h\"\ntimeout = \"90s\"\n\
         [[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"42\"\n",
        backups.path().display(),
        pg.archive_dir().display(),
        scratch.path().display(),
        root.display()
    );
    let scene = scene("db1", |a| a.toml(&section)).await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "drill.pg18",
            "ok",
            "restore drill of ",
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(c["details"]["pg_version"], "18", "{c}");
    assert_eq!(
        c["details"]["bindir"].as_str(),
        bin18.to_str(),
        "the binaries used are named: {c}"
    );
    assert_eq!(c["details"]["smoke"][1]["got"], "42", "{c}");
    Ok(())
}

/// PostgreSQL 17 and later take incremental base backups (`pg_basebackup --incremental`): one
/// restores only combined with its chain (pg_combinebackup), and pg_verifybackup passes it
/// alone whatever became of the full backup it builds on. Restore readiness verifies the newest
/// full backup and names the newer incrementals, a drill restores that full one, and
/// incrementals without their full backup are critical.
#[tokio::test]
async fn incremental_base_backups_are_not_taken_for_full_ones() -> Result<()> {
    let bin18 = major_bindir(18)?;
    let root = bin18
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or_else(|| anyhow::anyhow!("{} has no root", bin18.display()))?;
    let pg = PgCluster::init()
        .major(18)
        .wal_segment_size_mb(1)
        .setting("summarize_wal", "on")
        .start()?;
    pg.psql("CREATE TABLE orders AS SELECT generate_series(1, 42) AS id")?;
    let backups = tempfile::tempdir()?;
    let (full, incr) = (backups.path().join("full"), backups.path().join("incr"));
    pg.base_backup(&full, &["-Fp", "-X", "stream"])?;
    pg.psql("INSERT INTO orders SELECT generate_series(43, 50)")?;
    let since = format!("--incremental={}", full.join("backup_manifest").display());
    pg.base_backup(&incr, &["-Fp", "-X", "stream", &since])?;
    ensure!(fs::read_to_string(incr.join("backup_label"))?.contains("INCREMENTAL FROM LSN"));
    let scratch = tempfile::Builder::new().prefix("bw-drill-").tempdir()?;
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755))?;
    let toml = format!(
        "[[restore]]\nname = \"base\"\nbackup_dir = \"{0}\"\npg_roots = [\"{1}\"]\ninterval = \"1s\"\n\
         [[drill]]\nname = \"base\"\nbackup_dir = \"{0}\"\nscratch_dir = \"{2}\"\n\
         pg_roots = [\"{1}\"]\ninterval = \"1h\"\ntimeout = \"90s\"\n\
         [[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"42\"\n",
        backups.path().display(),
        root.display(),
        scratch.path().display()
    );
    let scene = scene("db1", |a| {
        a.toml(&toml).backup_dir("base", backups.path(), "1d", "1s")
    })
    .await?;
    let c = &scene.collector;
    let got = c
        .wait_summary(
            "db1",
            "restore.base",
            "ok",
            &format!(
                "base backup {} verified by pg_verifybackup 18",
                full.display()
            ),
            WAIT,
        )
        .await;
    assert!(
        summary(&got).ends_with(
            "; 1 newer incremental backup not verified: it restores only combined with its \
             chain (pg_combinebackup)"
        ),
        "{got}"
    );
    let drill = c
        .wait_summary(
            "db1",
            "drill.base",
            "ok",
            "restore drill of ",
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(
        drill["details"]["backup_path"],
        full.display().to_string(),
        "{drill}"
    );
    let dir = c
        .wait_check(
            "db1",
            "backup.base",
            "the incremental backup reported",
            WAIT,
            |c| c["details"]["newest_base_backup"]["incremental"] == true,
        )
        .await;
    assert!(
        summary(&dir).contains("; newest base backup (incremental) took "),
        "{dir}"
    );

    // The full backup gone: the incremental alone restores nothing.
    fs::remove_dir_all(&full)?;
    let got = c
        .wait_summary(
            "db1",
            "restore.base",
            "critical",
            &format!(
                "no full base backup under {}: 1 incremental backup, which restore only combined",
                backups.path().display()
            ),
            WAIT,
        )
        .await;
    assert!(got["details"]["newer_incrementals"] == 1, "{got}");
    Ok(())
}
