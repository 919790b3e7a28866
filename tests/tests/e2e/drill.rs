//! Restore drills end to end: private PostgreSQL clusters with real archiving, real
//! `pg_basebackup` backups (plain and tar), the real agent restoring, recovering, promoting and
//! querying a scratch server, the collector judging, the API showing it.

use anyhow::{Context, Result, ensure};
use backwatch_tests::harness::backup_tools::{Barman, PgBackRest};
use backwatch_tests::harness::mounts::Tmpfs;
use backwatch_tests::harness::pg::bindir;
use backwatch_tests::harness::{PgCluster, Scene, eventually, scene};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(120);
const ARCHIVED: Duration = Duration::from_secs(30);

/// A scratch directory the `postgres` user can reach (the scratch server runs as postgres).
fn scratch() -> Result<TempDir> {
    let dir = tempfile::Builder::new().prefix("bw-drill-").tempdir()?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

fn drill_section(
    name: &str,
    backups: &Path,
    archive: &Path,
    scratch: &Path,
    extra: &str,
) -> String {
    format!(
        "[[drill]]\nname = \"{name}\"\nbackup_dir = \"{}\"\narchive_dir = \"{}\"\nscratch_dir = \"{}\"\ninterval = \"1h\"\ntimeout = \"90s\"\n{extra}\n",
        backups.display(),
        archive.display(),
        scratch.display()
    )
}

/// A scene whose agent has the one drill `main` (`backups`, `archive`, `scratch`, `extra`
/// keys), and that drill's first verdict once it is `status`.
async fn one_drill(
    backups: &Path,
    archive: &Path,
    scratch: &Path,
    extra: &str,
    status: &str,
) -> Result<(Scene, Value)> {
    let scene = scene("db1", |a| {
        a.toml(&drill_section("main", backups, archive, scratch, extra))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary("db1", "drill.main", status, "restore drill of ", WAIT)
        .await;
    Ok((scene, c))
}

/// No scratch directory and no server left in `dir` once a drill ended (within 10 s).
async fn scratch_left_clean(dir: &Path) {
    eventually(
        Duration::from_secs(10),
        "the scratch to be empty",
        async || {
            ensure!(left_in(dir).is_empty(), "{:?}", left_in(dir));
            ensure!(processes_in(dir).is_empty(), "{:?}", processes_in(dir));
            Ok(())
        },
    )
    .await;
}

/// Entries left in a scratch directory.
fn left_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Processes whose working directory is under `dir` (a postmaster lives in its data dir).
fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cwd = fs::read_link(e.path().join("cwd")).ok()?;
            cwd.starts_with(dir).then_some(pid)
        })
        .collect()
}

/// A table with rows, then a segment switch archived: the archive holds WAL past the backup.
async fn orders(pg: &PgCluster, rows: u32) -> Result<()> {
    pg.psql(&format!(
        "CREATE TABLE IF NOT EXISTS orders (id int); INSERT INTO orders SELECT generate_series(1, {rows});"
    ))?;
    pg.switch_wal_archived(ARCHIVED).await?;
    Ok(())
}

#[tokio::test]
async fn healthy_drills_from_plain_and_tar_backups_are_ok_with_their_rto() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 10).await?;
    let (plain, tar, scratch_p, scratch_t) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        scratch()?,
        scratch()?,
    );
    // -X none: the plain backup's WAL comes from the archive only.
    pg.base_backup(&plain.path().join("b1"), &["-Fp", "-X", "none"])?;
    pg.base_backup(&tar.path().join("b1"), &["-Ft", "-X", "stream"])?;
    // Committed after both backups: only replaying the archive brings these rows back.
    pg.psql("INSERT INTO orders SELECT generate_series(11, 42)")?;
    pg.switch_wal_archived(ARCHIVED).await?;
    let check = "[[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"42\"\n";
    let scene = scene("db1", |a| {
        a.toml(&drill_section(
            "plain",
            plain.path(),
            pg.archive_dir(),
            scratch_p.path(),
            check,
        ))
        .toml(&drill_section(
            "tar",
            tar.path(),
            pg.archive_dir(),
            scratch_t.path(),
            &format!("amcheck = [\"public.orders\"]\n{check}"),
        ))
    })
    .await?;
    for (name, dir, format) in [("plain", &scratch_p, "plain"), ("tar", &scratch_t, "tar")] {
        let c = scene
            .collector
            .wait_summary(
                "db1",
                &format!("drill.{name}"),
                "ok",
                "restore drill of ",
                WAIT,
            )
            .await;
        let summary = c["summary"].as_str().unwrap_or_default();
        assert!(summary.contains(": RTO "), "{c}");
        assert!(summary.ends_with("smoke checks passed"), "{c}");
        let d = &c["details"];
        assert_eq!(d["backup_format"], format, "{c}");
        assert!(d["rto_ms"].as_u64().is_some_and(|ms| ms > 0), "{c}");
        assert!(d["recovered_at"].is_string(), "{c}");
        assert_eq!(d["archive_end_reached"], true, "{c}");
        assert!(
            d["wal_segments_restored"].as_u64().is_some_and(|n| n >= 1),
            "{c}"
        );
        assert!(
            d["bytes_restored"].as_u64().is_some_and(|n| n > 1 << 20),
            "{c}"
        );
        assert_eq!(d["smoke"][1]["got"], "42", "{c}");
        if name == "tar" {
            // pg_amcheck of the table and its indexes, after the SQL checks.
            let amcheck = &d["smoke"][2];
            assert_eq!(amcheck["sql"], "pg_amcheck --relation public.orders", "{c}");
            assert_eq!(amcheck["got"], "no corruption found", "{c}");
            assert_eq!(amcheck["passed"], true, "{c}");
        }
        assert_eq!(
            d["pg_version"].as_str(),
            bindir()?
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str()),
            "{c}"
        );
        // Nothing left behind: no scratch directory, no server.
        scratch_left_clean(dir.path()).await;
    }
    // The RTO is charted from the stored results.
    let series = scene
        .collector
        .api("/api/v1/hosts/db1/series?since=1d")
        .await?;
    let rto = series["series"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["check"] == "drill.plain"))
        .context("drill.plain series")?;
    assert_eq!(rto["measure"], "rto_secs", "{rto}");
    assert!(
        rto["points"][0][1].as_f64().is_some_and(|v| v > 0.0),
        "{rto}"
    );
    // The host page charts it and shows it against its limits.
    let browser = backwatch_tests::harness::Browser::start().await?;
    browser.goto(&scene.collector.url("/hosts/db1")).await?;
    let got = browser
        .wait_js(
            WAIT,
            "the drill's RTO chart and row",
            "const c = document.querySelector('svg.chart[data-check=\"drill.plain\"]');\
             const r = document.querySelector('tr[data-check=\"drill.plain\"] td:nth-of-type(2)');\
             return c && Number(c.dataset.count) > 0 && r ? r.textContent : null;",
        )
        .await;
    assert!(got.as_str().is_some_and(|t| t.starts_with("RTO ")), "{got}");
    let errors = browser.script_errors().await?;
    ensure!(errors.is_empty(), "the page logged errors: {errors:#?}");
    // And exported for Prometheus.
    let page = scene
        .collector
        .http_client()
        .get(scene.collector.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("backwatch_drill_rto_seconds{host=\"db1\",check=\"drill.tar\"} "),
        "{page}"
    );
    // The source was only read.
    ensure!(
        !left_in(&plain.path().join("b1"))
            .iter()
            .any(|p| p.ends_with("recovery.signal"))
    );
    Ok(())
}

/// Archives written by compressing archive commands (`gzip < %p > …/%f.gz`, zstd, lz4, xz,
/// bzip2) restore through the matching decompressor, and the archive's end is still known;
/// a compressed tar backup (`-Ft -Z zstd`) unpacks with the WAL it streamed.
#[tokio::test]
async fn a_compressed_archive_is_restored_through_its_decompressors() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 10).await?;
    let (backups, zipped, scratch) = (tempfile::tempdir()?, tempfile::tempdir()?, scratch()?);
    // A compressed tar backup too: pg_basebackup -Ft -Z zstd writes base.tar.zst and, since
    // it compresses streamed WAL only with gzip, a plain pg_wal.tar.
    pg.base_backup(
        &backups.path().join("b1"),
        &["-Ft", "-Z", "zstd", "-X", "stream"],
    )?;
    ensure!(backups.path().join("b1/base.tar.zst").is_file());
    ensure!(backups.path().join("b1/pg_wal.tar").is_file());
    for rows in [20, 30] {
        pg.psql(&format!(
            "INSERT INTO orders SELECT generate_series(1, {rows} - (SELECT count(*) FROM orders)::int)"
        ))?;
        pg.switch_wal_archived(ARCHIVED).await?;
    }
    let tools = [
        ("gz", "gzip -c"),
        ("zst", "zstd -qc"),
        ("lz4", "lz4 -qc"),
        ("xz", "xz -c"),
        ("bz2", "bzip2 -c"),
    ];
    let mut names: Vec<String> = fs::read_dir(pg.archive_dir())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut compressed = 0;
    for (i, name) in names.iter().enumerate() {
        let from = pg.archive_dir().join(name);
        if name.len() != 24 {
            fs::copy(&from, zipped.path().join(name))?;
            continue;
        }
        let (suffix, tool) = tools[i % tools.len()];
        let to = zipped.path().join(format!("{name}.{suffix}"));
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("{tool} '{}' > '{}'", from.display(), to.display()))
            .status()?
            .success();
        ensure!(ok, "{tool} {name}");
        compressed += 1;
    }
    ensure!(compressed >= 3, "{names:?}");
    let check = "[[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"30\"\n";
    let (_scene, c) = one_drill(backups.path(), zipped.path(), scratch.path(), check, "ok").await?;
    let d = &c["details"];
    assert_eq!(d["backup_format"], "tar.zst", "{c}");
    assert_eq!(d["smoke"][1]["got"], "30", "{c}");
    assert_eq!(d["archive_end_reached"], true, "{c}");
    assert!(
        d["wal_segments_restored"].as_u64().is_some_and(|n| n >= 3),
        "{c}"
    );
    assert_eq!(
        d["archive_newest_segment"].as_str().map(str::len),
        Some(24),
        "the segment's own name: {c}"
    );
    Ok(())
}

#[tokio::test]
async fn a_segment_missing_from_the_archive_is_critical_by_name() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 10).await?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "none"])?;
    // Three segments of commits after the backup, seconds apart; the middle one goes missing.
    let mut segments = Vec::new();
    for i in 0..3 {
        pg.psql(&format!("INSERT INTO orders VALUES ({i})"))?;
        segments.push(pg.switch_wal_archived(ARCHIVED).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let gap = segments[1].clone();
    fs::remove_file(pg.archive_dir().join(&gap))?;
    let (_scene, c) = one_drill(
        backups.path(),
        pg.archive_dir(),
        scratch.path(),
        "max_shortfall = \"1s\"",
        "critical",
    )
    .await?;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.ends_with(&format!("recovery stopped at missing WAL segment {gap}")),
        "{c}"
    );
    assert!(summary.contains("short of the latest target"), "{c}");
    let d = &c["details"];
    assert_eq!(d["missing_segment"], gap.as_str(), "{c}");
    assert_eq!(d["archive_end_reached"], false, "{c}");
    assert!(d["recovered_at"].is_string(), "{c}");
    assert!(!pg.archive_dir().join(&gap).exists());
    scratch_left_clean(scratch.path()).await;
    Ok(())
}

/// A backup carries its server's `postgresql.auto.conf`: recovery hooks set there (a standby's
/// `archive_cleanup_command`, a `recovery_end_command`) would run in the drill against the
/// real paths they name. The drill overrides them; the hooks leave no mark.
#[tokio::test]
async fn the_backups_recovery_hooks_do_not_run_in_the_drill() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let marks = tempfile::tempdir()?;
    // The drill's server runs as the backup's owner: it must be able to leave its mark.
    fs::set_permissions(
        marks.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;
    let end_mark = marks.path().join("recovery-end-ran");
    let cleanup_mark = marks.path().join("archive-cleanup-ran");
    // Written to postgresql.auto.conf without a reload: the source itself never uses them.
    pg.psql(&format!(
        "ALTER SYSTEM SET recovery_end_command = 'touch {}'; \
         ALTER SYSTEM SET archive_cleanup_command = 'touch {}';",
        end_mark.display(),
        cleanup_mark.display()
    ))?;
    orders(&pg, 5).await?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "none"])?;
    orders(&pg, 5).await?;
    let (_scene, c) = one_drill(backups.path(), pg.archive_dir(), scratch.path(), "", "ok").await?;
    assert!(
        !end_mark.exists() && !cleanup_mark.exists(),
        "a recovery hook of the backup ran in the drill: {c}"
    );
    scratch_left_clean(scratch.path()).await;
    Ok(())
}

#[tokio::test]
async fn a_failing_smoke_check_is_critical() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 5).await?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "stream"])?;
    let checks = "[[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"5\"\n\
                  [[drill.check]]\nsql = \"select count(*) from invoices\"\nexpect = \"1\"\n";
    let (scene, c) = one_drill(
        backups.path(),
        pg.archive_dir(),
        scratch.path(),
        checks,
        "critical",
    )
    .await?;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.ends_with("smoke check `select count(*) from invoices` failed: ERROR: relation \"invoices\" does not exist"),
        "{c}"
    );
    assert_eq!(c["details"]["smoke"][1]["passed"], true, "{c}");

    // Run on demand (the schedule says hourly): the collector asks the agent over its stream,
    // and a new drill result arrives.
    let collector = &scene.collector;
    let first = c["observed_at"].clone();
    let http = collector.http_client();
    let url = |host: &str, check: &str| {
        collector.url(&format!("/api/v1/hosts/{host}/checks/{check}/run"))
    };
    // The host page's "Run now" button, in Chromium.
    let browser = backwatch_tests::harness::Browser::start().await?;
    browser.goto(&collector.url("/hosts/db1")).await?;
    let button = "button[data-run=\"drill.main\"]";
    browser
        .wait_js(
            WAIT,
            "the run-now button",
            &format!("return document.querySelector('{button}') ? true : null;"),
        )
        .await;
    browser.click(button).await?;
    collector
        .wait_check("db1", "drill.main", "a drill run on demand", WAIT, |c| {
            c["observed_at"] != first && c["status"] == "critical"
        })
        .await;
    // Nothing to ask: a check the host does not have, a host that is not connected.
    assert_eq!(
        http.post(url("db1", "drill.other")).send().await?.status(),
        404
    );
    assert_eq!(
        http.post(url("db9", "drill.main")).send().await?.status(),
        404
    );
    Ok(())
}

/// A drill proves the cluster it restored: matched to the cluster's WAL check by the system
/// identifier, its recovered point is on that cluster's timeline. And a drill that is not due
/// (it ran, as far as its schedule knows, a moment ago) runs on demand before it ever reported.
#[tokio::test]
async fn a_drill_not_yet_due_runs_on_demand_and_marks_its_clusters_timeline() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 7).await?;
    let (backups, scratch, spool) = (tempfile::tempdir()?, scratch()?, tempfile::tempdir()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "none"])?;
    pg.psql("INSERT INTO orders VALUES (8)")?;
    pg.switch_wal_archived(ARCHIVED).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    fs::write(spool.path().join("last-run.drill.main"), format!("{now}\n"))?;
    let scene = scene("db1", |a| {
        a.spool_dir(spool.path())
            .wal("main", &pg.dsn(), "1s")
            .toml(&drill_section(
                "main",
                backups.path(),
                pg.archive_dir(),
                scratch.path(),
                "",
            ))
    })
    .await?;
    let collector = &scene.collector;
    let wal = collector
        .wait_check("db1", "wal.main", "the cluster's identity", WAIT, |c| {
            c["details"]["system_identifier"].is_string()
        })
        .await;
    let id = wal["details"]["system_identifier"].clone();
    let recovery = collector.api("/api/v1/recovery?host=db1").await?;
    assert_eq!(recovery[0]["system_identifier"], id, "{recovery}");
    assert_eq!(
        recovery[0]["drill"],
        Value::Null,
        "not drilled yet: {recovery}"
    );
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let monthly = format!("/api/v1/reports/monthly?month={month}");
    let review = collector.api(&monthly).await?;
    assert_eq!(
        review["not_drilled"],
        serde_json::json!([{"host": "db1", "check": "wal.main",
                            "drills": "no drill restores this cluster"}]),
        "{review}"
    );
    assert!(
        collector.api("/api/v1/hosts/db1").await?["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["check"] != "drill.main")),
        "the drill has not reported"
    );

    let asked = collector
        .http_client()
        .post(collector.url("/api/v1/hosts/db1/checks/drill.main/run"))
        .send()
        .await?;
    assert_eq!(asked.status(), 202, "announced at hello, so it can run now");
    let c = collector
        .wait_summary("db1", "drill.main", "ok", "restore drill of ", WAIT)
        .await;
    assert_eq!(c["details"]["system_identifier"], id, "{c}");
    let recovered = c["details"]["recovered_at"].clone();
    ensure!(recovered.is_string(), "{c}");

    let recovery = collector.api("/api/v1/recovery?host=db1").await?;
    let drill = &recovery[0]["drill"];
    assert_eq!(drill["check"], "drill.main", "{recovery}");
    assert_eq!(drill["host"], "db1", "{recovery}");
    assert_eq!(drill["status"], "ok", "{recovery}");
    assert_eq!(drill["recovered_at"], recovered, "{recovery}");
    let review = collector.api(&monthly).await?;
    assert_eq!(review["not_drilled"], serde_json::json!([]), "{review}");

    // On the host page: the diamond on the cluster's timeline, and the drill in words.
    let browser = backwatch_tests::harness::Browser::start().await?;
    browser.goto(&collector.url("/hosts/db1")).await?;
    let got = browser
        .wait_js(
            WAIT,
            "the drill's point on the timeline",
            "const f = document.querySelector('figure.recovery[data-cluster=\"main\"]');\
             const svg = f && f.querySelector('svg.timeline');\
             if (!svg || !svg.dataset.drillRecovered || !svg.querySelector('.drill-mark.s-ok')) return null;\
             return [Number(svg.dataset.drillRecovered), f.querySelector('.drill-text').textContent];",
        )
        .await;
    let at = chrono::DateTime::parse_from_rfc3339(recovered.as_str().unwrap_or_default())?;
    assert_eq!(got[0].as_i64(), Some(at.timestamp_millis()), "{got}");
    let text = got[1].as_str().unwrap_or_default();
    assert!(
        text.starts_with("latest drill drill.main on db1 (") && text.contains("): recovered to "),
        "{text}"
    );
    let errors = browser.script_errors().await?;
    ensure!(errors.is_empty(), "the page logged errors: {errors:#?}");
    Ok(())
}

/// The collector's `[thresholds.drill]` wins over the agent's `[[drill]]` limits, per group: the
/// same drill is ok for one host and a warning for the group that promises a 1 ms recovery
/// (limits travel in whole seconds: any recovery time is above it).
#[tokio::test]
async fn the_collectors_drill_limits_win_per_group() -> Result<()> {
    use backwatch_tests::harness::{Agent, Certs, Collector};
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 3).await?;
    let (backups, scratch1, scratch2) = (tempfile::tempdir()?, scratch()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "none"])?;
    pg.switch_wal_archived(ARCHIVED).await?;
    let certs = Certs::fleet(&["backup1", "backup2"])?;
    let collector = Collector::sqlite(&certs)
        .toml(
            "[groups]\nstrict = [\"backup2\"]\n\
             [[overrides]]\ngroups = [\"strict\"]\n[overrides.thresholds.drill]\nmax_rto = \"1ms\"\n",
        )
        .start()
        .await?;
    // The agents allow an hour; the collector's group limit is what counts for backup2.
    let section = |s: &Path| {
        drill_section(
            "main",
            backups.path(),
            pg.archive_dir(),
            s,
            "max_rto = \"1h\"",
        )
    };
    let _a1 = Agent::for_host("backup1", &certs, &collector)
        .toml(&section(scratch1.path()))
        .start()?;
    let _a2 = Agent::for_host("backup2", &certs, &collector)
        .toml(&section(scratch2.path()))
        .start()?;
    let c = collector
        .wait_summary("backup1", "drill.main", "ok", "restore drill of ", WAIT)
        .await;
    assert_eq!(c["details"]["max_rto_secs"], 3600, "{c}");
    let c = collector
        .wait_summary(
            "backup2",
            "drill.main",
            "warning",
            "restore drill of ",
            WAIT,
        )
        .await;
    assert!(
        c["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("; RTO above the "),
        "{c}"
    );
    Ok(())
}

/// A role the restored cluster does not have: said within seconds, not at the drill's timeout.
#[tokio::test]
async fn a_smoke_role_the_backup_lacks_is_named() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "stream"])?;
    let scene = scene("db1", |a| {
        a.toml(&drill_section(
            "main",
            backups.path(),
            pg.archive_dir(),
            scratch.path(),
            "user = \"auditor\"",
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "drill.main",
            "critical",
            "restore drill of ",
            Duration::from_secs(60),
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("failed: the promoted server refuses the drill: "),
        "{c}"
    );
    assert!(summary.contains("role \"auditor\" does not exist"), "{c}");
    // A failed drill still names the cluster it was proving (read from the restored
    // pg_control), so the cluster's recovery view shows the failure.
    let id = pg.psql("SELECT system_identifier FROM pg_control_system()")?;
    assert_eq!(c["details"]["system_identifier"], id.trim(), "{c}");
    Ok(())
}

#[tokio::test]
async fn a_data_file_damaged_in_the_backup_is_caught_by_the_smoke_sql_and_pg_amcheck() -> Result<()>
{
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 5).await?;
    let file = pg.psql("SELECT pg_relation_filepath('orders')")?;
    // The second drill restores the same backup and never queries the table: pg_amcheck reads it.
    let (backups, scratch_a, scratch) = (tempfile::tempdir()?, scratch()?, scratch()?);
    let backup = backups.path().join("b1");
    pg.base_backup(&backup, &["-Fp", "-X", "stream"])?;
    // Same size, page header overwritten: nothing but reading the table can tell.
    let path = backup.join(&file);
    let len = fs::metadata(&path)?.len();
    let mut f = fs::OpenOptions::new().write(true).open(&path)?;
    std::io::Write::write_all(&mut f, &[0xA5; 24])?;
    drop(f);
    assert_eq!(fs::metadata(&path)?.len(), len);
    let check = "[[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"5\"\n";
    let scene = scene("db1", |a| {
        a.toml(&drill_section(
            "main",
            backups.path(),
            pg.archive_dir(),
            scratch.path(),
            check,
        ))
        .toml(&drill_section(
            "amcheck",
            backups.path(),
            pg.archive_dir(),
            scratch_a.path(),
            "amcheck = [\"public.orders\"]",
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary("db1", "drill.main", "critical", "restore drill of ", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(
            "smoke check `select count(*) from orders` failed: ERROR: invalid page in block 0"
        ),
        "{c}"
    );
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "drill.amcheck",
            "critical",
            "restore drill of ",
            WAIT,
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("smoke check `pg_amcheck --relation public.orders` failed: ")
            && summary.contains("invalid page in block 0"),
        "{c}"
    );
    assert_eq!(
        c["details"]["smoke"][0]["passed"], true,
        "select 1 passed: {c}"
    );
    Ok(())
}

/// A tablespace is a link out of the data directory: a scratch server started on such a copy
/// would write where it points (here the backup's own tablespace copy). Refused, untouched.
#[tokio::test]
async fn a_backup_with_a_tablespace_is_not_started() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let dirs = tempfile::tempdir()?;
    let postgres = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
    let (live, copy) = (dirs.path().join("ts"), dirs.path().join("ts-backup"));
    for d in [&live, &copy] {
        fs::create_dir(d)?;
        nix::unistd::chown(d, Some(postgres.uid), Some(postgres.gid))?;
    }
    pg.psql(&format!(
        "CREATE TABLESPACE ts LOCATION '{}'; CREATE TABLE t_ts (id int) TABLESPACE ts; INSERT INTO t_ts VALUES (1);",
        live.display()
    ))?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    let backup = backups.path().join("b1");
    let out = Command::new(bindir()?.join("pg_basebackup"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("-h")
        .arg(pg.socket_dir())
        .args([
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-w",
            "-c",
            "fast",
            "--no-sync",
        ])
        .arg(format!(
            "--tablespace-mapping={}={}",
            live.display(),
            copy.display()
        ))
        .arg("-D")
        .arg(&backup)
        .output()?;
    ensure!(
        out.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = snapshot(&copy);
    let scene = scene("db1", |a| {
        a.toml(&drill_section(
            "main",
            backups.path(),
            pg.archive_dir(),
            scratch.path(),
            "",
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "drill.main",
            "critical",
            &format!(
                "restore drill of {} failed: the backup has tablespaces (pg_tblspc/",
                backup.display()
            ),
            WAIT,
        )
        .await;
    assert_eq!(c["details"]["rto_ms"], Value::Null, "{c}");
    scratch_left_clean(scratch.path()).await;
    assert_eq!(
        snapshot(&copy),
        before,
        "the backup's tablespace was written"
    );
    Ok(())
}

#[tokio::test]
async fn a_scratch_file_system_too_small_refuses_the_drill_and_writes_nothing() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    let backups = tempfile::tempdir()?;
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "stream"])?;
    let tmpfs = Tmpfs::mount("2m")?;
    let scene = scene("db1", |a| {
        a.toml(&drill_section(
            "main",
            backups.path(),
            pg.archive_dir(),
            tmpfs.path(),
            "",
        ))
    })
    .await?;
    let c = scene
        .collector
        .wait_summary(
            "db1",
            "drill.main",
            "critical",
            &format!(
                "restore drill refused: not enough space in {}: ",
                tmpfs.path().display()
            ),
            WAIT,
        )
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.ends_with("drill not started, nothing written"),
        "{c}"
    );
    assert!(
        c["details"]["backup_bytes"]
            .as_u64()
            .is_some_and(|b| b > 2 << 20),
        "{c}"
    );
    assert!(
        left_in(tmpfs.path()).is_empty(),
        "{:?}",
        left_in(tmpfs.path())
    );
    Ok(())
}

#[tokio::test]
async fn an_agent_killed_mid_drill_leaves_no_server_once_restarted() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 5).await?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "stream"])?;
    // The smoke check holds the scratch server up long enough to kill the agent meanwhile.
    let slow = "[[drill.check]]\nsql = \"select pg_sleep(4)\"\n";
    let mut scene = scene("db1", |a| {
        a.toml(&drill_section(
            "main",
            backups.path(),
            pg.archive_dir(),
            scratch.path(),
            slow,
        ))
    })
    .await?;
    eventually(WAIT, "the scratch server to run", async || {
        ensure!(!processes_in(scratch.path()).is_empty(), "no server yet");
        Ok(())
    })
    .await;
    scene.agent.kill();
    // Orphaned: the server outlives the agent until someone removes it.
    ensure!(
        !processes_in(scratch.path()).is_empty(),
        "the server went with the agent"
    );
    scene.agent.launch()?;
    eventually(
        Duration::from_secs(30),
        "the leftover server to be stopped",
        async || {
            let log = scene.agent.log();
            ensure!(
                log.contains("removed a drill's scratch directory left by an earlier agent"),
                "{log}"
            );
            Ok(())
        },
    )
    .await;
    // The next drill runs to the end, and cleans up after itself too.
    let c = scene
        .collector
        .wait_summary("db1", "drill.main", "ok", "restore drill of ", WAIT)
        .await;
    assert!(c["details"]["rto_ms"].is_u64(), "{c}");
    scratch_left_clean(scratch.path()).await;
    Ok(())
}

#[tokio::test]
async fn a_drill_past_its_timeout_or_an_agent_stopped_mid_drill_leaves_nothing() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 5).await?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "stream"])?;
    // Past the drill's timeout while the smoke check sleeps: critical, said so, cleaned up.
    let slow = "[[drill.check]]\nsql = \"select pg_sleep(30)\"\n";
    let section = drill_section(
        "main",
        backups.path(),
        pg.archive_dir(),
        scratch.path(),
        slow,
    )
    .replace("timeout = \"90s\"", "timeout = \"4s\"");
    let mut scene = scene("db1", |a| a.toml(&section)).await?;
    scene
        .collector
        .wait_summary(
            "db1",
            "drill.main",
            "critical",
            &format!(
                "restore drill of {} failed: drill timed out after 4s",
                backups.path().join("b1").display()
            ),
            WAIT,
        )
        .await;
    scratch_left_clean(scratch.path()).await;
    // Stopped (SIGTERM) in the middle of the next drill: the agent removes it before it exits.
    scene.agent.kill();
    fs::write(
        scene.agent.config_path(),
        fs::read_to_string(scene.agent.config_path())?
            .replace("timeout = \"4s\"", "timeout = \"90s\""),
    )?;
    // Drills resume their weekly schedule across restarts: forget the last run to drill now.
    fs::remove_file(scene.agent.spool_dir().join("last-run.drill.main"))?;
    scene.agent.launch()?;
    eventually(WAIT, "the scratch server to run", async || {
        ensure!(!processes_in(scratch.path()).is_empty(), "no server yet");
        Ok(())
    })
    .await;
    scene.agent.terminate(Duration::from_secs(30))?;
    assert!(
        processes_in(scratch.path()).is_empty(),
        "{:?}",
        processes_in(scratch.path())
    );
    assert!(
        left_in(scratch.path()).is_empty(),
        "{:?}",
        left_in(scratch.path())
    );
    Ok(())
}

#[tokio::test]
async fn an_offset_target_recovers_to_that_time_and_no_further() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 5).await?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "none"])?;
    pg.psql("INSERT INTO orders VALUES (6)")?;
    // The drill starts within 5 s of the second commit (the scene takes a second or two),
    // and more than 5 s after the first: the target falls between them.
    tokio::time::sleep(Duration::from_secs(10)).await;
    pg.psql("INSERT INTO orders VALUES (7)")?;
    pg.switch_wal_archived(ARCHIVED).await?;
    let extra =
        "target = \"5s\"\n[[drill.check]]\nsql = \"select max(id) from orders\"\nexpect = \"6\"\n";
    let (_scene, c) = one_drill(
        backups.path(),
        pg.archive_dir(),
        scratch.path(),
        extra,
        "ok",
    )
    .await?;
    let d = &c["details"];
    assert_eq!(d["target"], "5s before now", "{c}");
    assert!(
        d["target_time"].is_string() && d["recovered_at"].is_string(),
        "{c}"
    );
    assert!(
        d["target_distance_secs"].as_i64().is_some_and(|s| s >= 0),
        "{c}"
    );
    Ok(())
}

/// An offset target after the last commit (a server idle since): PostgreSQL 13 and later stop
/// with "recovery ended before configured recovery target was reached". Nothing is missing,
/// so the drill recovers to the end of the archive instead of failing.
#[tokio::test]
async fn an_offset_target_after_the_last_commit_recovers_to_the_end() -> Result<()> {
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    orders(&pg, 5).await?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Fp", "-X", "none"])?;
    pg.psql("INSERT INTO orders VALUES (6)")?;
    pg.switch_wal_archived(ARCHIVED).await?;
    // Idle from here: the target (2 s before the drill starts) is after the last commit.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let extra =
        "target = \"2s\"\n[[drill.check]]\nsql = \"select max(id) from orders\"\nexpect = \"6\"\n";
    let (_scene, c) = one_drill(
        backups.path(),
        pg.archive_dir(),
        scratch.path(),
        extra,
        "ok",
    )
    .await?;
    assert_eq!(c["details"]["missing_segment"], Value::Null, "{c}");
    scratch_left_clean(scratch.path()).await;
    Ok(())
}

/// `backwatch-agent check` runs a drill once and judges it with the default limits.
#[test]
fn check_runs_a_drill_and_prints_its_verdict() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let pg = PgCluster::init().wal_segment_size_mb(1).start()?;
    rt.block_on(orders(&pg, 3))?;
    let (backups, scratch) = (tempfile::tempdir()?, scratch()?);
    pg.base_backup(&backups.path().join("b1"), &["-Ft", "-X", "stream"])?;
    let cfg = backups.path().join("agent.toml");
    fs::write(
        &cfg,
        format!(
            "backup_dir = []\ndisk = []\n{}",
            drill_section(
                "main",
                &backups.path().join("b1"),
                pg.archive_dir(),
                scratch.path(),
                ""
            )
        ),
    )?;
    let out = Command::new(backwatch_tests::harness::bin("backwatch-agent"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .context("running backwatch-agent check")?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("OK       drill.main"), "{text}");
    assert!(left_in(scratch.path()).is_empty());
    Ok(())
}

/// Every file of a tree with its size and modification time, to show it was not written.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if let Ok(t) = m.modified() {
                out.push((e.path(), m.len(), t));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_pgbackrest_stanza_is_drilled_without_writing_its_repository() -> Result<()> {
    let tool = PgBackRest::start("")?;
    let (pg, conf) = (&tool.pg, &tool.conf);
    pg.psql("CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 7)")?;
    tool.backup("full")?;
    // After the backup: only archive-get during recovery brings these rows back.
    pg.psql("INSERT INTO orders SELECT generate_series(8, 9)")?;
    pg.switch_wal_archived(ARCHIVED).await?;
    let repo = snapshot(&tool.repo());
    let scratch = scratch()?;
    let section = format!(
        "[[drill]]\nname = \"repo\"\nscratch_dir = \"{}\"\ninterval = \"1h\"\ntimeout = \"90s\"\n\
         [drill.pgbackrest]\nstanza = \"main\"\nconfig = \"{}\"\n\
         [[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"9\"\n",
        scratch.path().display(),
        conf.display()
    );
    let scene = scene("db1", |a| a.toml(&section)).await?;
    let c = scene
        .collector
        .wait_summary("db1", "drill.repo", "ok", "restore drill of ", WAIT)
        .await;
    let d = &c["details"];
    assert_eq!(d["source_kind"], "pgbackrest", "{c}");
    assert_eq!(d["backup_format"], "pgbackrest", "{c}");
    assert!(
        d["backup_path"].as_str().is_some_and(|l| l.ends_with('F')),
        "{c}"
    );
    assert!(
        d["wal_segments_restored"].as_u64().is_some_and(|n| n >= 1),
        "{c}"
    );
    assert!(d["rto_ms"].is_u64(), "{c}");
    scratch_left_clean(scratch.path()).await;
    assert_eq!(snapshot(&tool.repo()), repo, "the repository was written");
    Ok(())
}

/// A segment missing from a pgBackRest repository while it holds later ones: recovery stops
/// there, and the drill names it (the end is `info`'s `archive.max`, stored when `repo-ls`
/// says), instead of promoting at the gap and calling it a good restore.
#[tokio::test]
async fn a_segment_missing_from_a_pgbackrest_repository_is_critical_by_name() -> Result<()> {
    let tool = PgBackRest::start("")?;
    let pg = &tool.pg;
    pg.psql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)")?;
    tool.backup("full")?;
    let mut segments = Vec::new();
    for i in 0..3 {
        pg.psql(&format!("INSERT INTO orders VALUES ({i})"))?;
        segments.push(pg.switch_wal_archived(ARCHIVED).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let gap = segments[1].clone();
    // The repository keeps `<segment>-<sha1>.gz` under archive/main/<id>/<first 16 digits>/.
    let mut removed = 0;
    let mut dirs = vec![tool.repo().join("archive/main")];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d)?.flatten() {
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            } else if e
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{gap}-"))
            {
                fs::remove_file(e.path())?;
                removed += 1;
            }
        }
    }
    ensure!(removed == 1, "{gap} not found in the repository");
    let scratch = scratch()?;
    let section = format!(
        "[[drill]]\nname = \"repo\"\nscratch_dir = \"{}\"\ninterval = \"1h\"\ntimeout = \"90s\"\n\
         max_shortfall = \"1s\"\n[drill.pgbackrest]\nstanza = \"main\"\nconfig = \"{}\"\n",
        scratch.path().display(),
        tool.conf.display()
    );
    let scene = scene("db1", |a| a.toml(&section)).await?;
    let c = scene
        .collector
        .wait_summary("db1", "drill.repo", "critical", "restore drill of ", WAIT)
        .await;
    let summary = c["summary"].as_str().unwrap_or_default();
    assert!(
        summary.ends_with(&format!("recovery stopped at missing WAL segment {gap}")),
        "{c}"
    );
    let d = &c["details"];
    assert_eq!(d["missing_segment"], gap.as_str(), "{c}");
    assert_eq!(d["archive_newest_segment"], segments[2].as_str(), "{c}");
    assert_eq!(d["archive_end_reached"], false, "{c}");
    scratch_left_clean(scratch.path()).await;
    Ok(())
}

/// The newest backup of a current Barman may be a block-level incremental one (Barman 3.11
/// and later, PostgreSQL 17 and later): `barman recover` combines its chain with
/// `pg_combinebackup`, and the drill restores what the incremental holds.
#[tokio::test]
async fn a_barman_incremental_backup_is_drilled_with_its_chain() -> Result<()> {
    let bin18 = backwatch_tests::harness::pg::major_bindir(18)?;
    let root = bin18
        .parent()
        .and_then(Path::parent)
        .context("the PostgreSQL 18 binaries have no root")?;
    let exe = Barman::newer()?;
    let pg = PgCluster::init().major(18).setting("summarize_wal", "on");
    let tool = Barman::using(pg, &exe, bin18).await?;
    tool.pg
        .psql("CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 3)")?;
    tool.run(&["backup", "--wait", "pg"])?;
    tool.pg
        .psql("INSERT INTO orders SELECT generate_series(4, 7)")?;
    tool.run(&["backup", "--wait", "--incremental", "latest", "pg"])?;
    let scratch = scratch()?;
    let section = format!(
        "[[drill]]\nname = \"pg\"\nscratch_dir = \"{}\"\npg_roots = [\"{}\"]\ninterval = \"1h\"\n\
         timeout = \"90s\"\n\
         [drill.barman]\nserver = \"pg\"\nconfig = \"{}\"\ncommand = [\"{}\"]\n\
         [[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"7\"\n",
        scratch.path().display(),
        root.display(),
        tool.conf.display(),
        exe.display()
    );
    let scene = scene("db1", |a| a.toml(&section)).await?;
    let c = scene
        .collector
        .wait_summary("db1", "drill.pg", "ok", "restore drill of ", WAIT)
        .await;
    assert_eq!(c["details"]["source_kind"], "barman", "{c}");
    assert_eq!(c["details"]["pg_version"], "18", "{c}");
    scratch_left_clean(scratch.path()).await;
    Ok(())
}

/// A drill of Barman server `pg` (`conf`) into `scratch`, its smoke check expecting the 3
/// orders the scenes write; waits for it to be ok and returns the check.
async fn barman_drill_ok(conf: &Path, scratch: &Path) -> Result<Value> {
    let section = format!(
        "[[drill]]\nname = \"pg\"\nscratch_dir = \"{}\"\ninterval = \"1h\"\ntimeout = \"90s\"\n\
         [drill.barman]\nserver = \"pg\"\nconfig = \"{}\"\n\
         [[drill.check]]\nsql = \"select count(*) from orders\"\nexpect = \"3\"\n",
        scratch.display(),
        conf.display()
    );
    let scene = scene("db1", |a| a.toml(&section)).await?;
    Ok(scene
        .collector
        .wait_summary("db1", "drill.pg", "ok", "restore drill of ", WAIT)
        .await)
}

/// A compressed Barman backup (`backup_compression`) is decompressed in a staging directory
/// before it is copied into place. Barman 3.14 and older refuse without one configured
/// (`recovery_staging_path`), later ones take `/tmp`: the drill stages inside its own scratch
/// directory, whose space it checks, and leaves nothing behind.
#[tokio::test]
async fn a_compressed_barman_backup_is_drilled_staged_in_the_scratch_directory() -> Result<()> {
    let tool = Barman::start().await?;
    let (pg, conf) = (&tool.pg, &tool.conf);
    fs::OpenOptions::new()
        .append(true)
        .open(conf)?
        .write_all(b"backup_compression = gzip\n")?;
    pg.psql("CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 3)")?;
    tool.run(&["backup", "--wait", "pg"])?;
    let scratch = scratch()?;
    let c = barman_drill_ok(conf, scratch.path()).await?;
    assert_eq!(c["details"]["source_kind"], "barman", "{c}");
    scratch_left_clean(scratch.path()).await;
    Ok(())
}

#[tokio::test]
async fn a_barman_server_is_drilled_from_its_newest_backup() -> Result<()> {
    let tool = Barman::start().await?;
    let (pg, conf) = (&tool.pg, &tool.conf);
    pg.psql("CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 3)")?;
    tool.run(&["backup", "--wait", "pg"])?;
    let scratch = scratch()?;
    let c = barman_drill_ok(conf, scratch.path()).await?;
    let d = &c["details"];
    assert_eq!(d["source_kind"], "barman", "{c}");
    assert_eq!(d["backup_root"], "Barman server pg", "{c}");
    assert!(d["rto_ms"].is_u64(), "{c}");
    scratch_left_clean(scratch.path()).await;
    Ok(())
}
