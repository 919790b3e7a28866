//! `[[drill]]`: a scheduled restore drill's configuration (docs/checks.md R-drill, README).
//!
//! No default instance: which backup to restore and where to put the scratch copy differ
//! per host. Weekly by default; each drill bounded by `timeout` (default 2 h). The scheduler's
//! own limit is twice that plus a minute: a drill may first wait for another one to end (one
//! at a time per host), and it reports its own timeout, with the server log, before that.

use super::effective::{Settings, duration, path};
use super::{At, Cx, Section, Valid};
use crate::probe::drill::{BarmanSource, DrillProbe, PgBackRestSource, SmokeSql, Target};
use backwatch_common::config::{Problems, de_opt_duration, fmt_duration};
use backwatch_proto::model::ProbeKind;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::{Table, Value};

pub const DRILL_INTERVAL: Duration = Duration::from_secs(7 * 86_400);
pub const DRILL_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
pub const DRILL_MAX_SHORTFALL: Duration = Duration::from_secs(5 * 60);
pub const DRILL_SPACE_FACTOR: f64 = 1.2;
/// Role the smoke checks connect as (the scratch server trusts its private socket only).
pub const DRILL_USER: &str = "postgres";
pub const DRILL_DATABASE: &str = "postgres";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    pub name: String,
    /// Directory holding pg_basebackup backups (plain `-Fp` or tar `-Ft`), or one itself.
    pub backup_dir: Option<PathBuf>,
    /// WAL archive read by restore_command (never written).
    pub archive_dir: Option<PathBuf>,
    /// Where the drill restores (a fresh subdirectory each time, removed afterwards).
    pub scratch_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// "latest" (default) or an offset before now such as "1h".
    pub target: Option<String>,
    /// Warning when the measured recovery time exceeds this (default: none).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_rto: Option<Duration>,
    /// Critical when the recovered point falls short of the target by more (default 5 min).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_shortfall: Option<Duration>,
    /// Free space the scratch file system needs, as a multiple of the backup (default 1.2).
    pub space_factor: Option<f64>,
    /// PostgreSQL binaries (default: the backup's major under `pg_roots`).
    pub pg_bindir: Option<PathBuf>,
    /// Where majors are installed side by side, as `<major>/bin` or `pgsql-<major>/bin`
    /// (default: /usr/lib/postgresql and /usr), as for `[[restore]]`.
    pub pg_roots: Option<Vec<PathBuf>>,
    /// OS user the scratch server runs as (default: `postgres` when the agent is root, else
    /// the agent's own user; PostgreSQL refuses to run as root).
    pub run_as: Option<String>,
    /// Role and database the smoke checks use (default postgres, postgres).
    pub user: Option<String>,
    pub database: Option<String>,
    /// Run under `nice -n 19 ionice -c 2 -n 7` (default true).
    pub io_limit: Option<bool>,
    #[serde(default)]
    pub check: Vec<RawSmoke>,
    /// Relations (pg_amcheck `--relation` patterns, e.g. "public.orders") whose heap and
    /// B-tree indexes `pg_amcheck` verifies after the smoke SQL (PostgreSQL 14 or later).
    #[serde(default)]
    pub amcheck: Vec<String>,
    /// Restore from a pgBackRest stanza instead of `backup_dir` (WAL then via archive-get).
    pub pgbackrest: Option<RawDrillPgBackRest>,
    /// Restore from a Barman server instead (`barman recover`, which brings the WAL).
    pub barman: Option<RawDrillBarman>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrillBarman {
    pub server: String,
    /// -c (default: Barman's own).
    pub config: Option<PathBuf>,
    /// Program and leading arguments, no shell (default ["barman"]).
    pub command: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrillPgBackRest {
    pub stanza: String,
    /// --config (default: pgBackRest's own).
    pub config: Option<PathBuf>,
    /// Program and leading arguments, no shell (default ["pgbackrest"]).
    pub command: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmoke {
    pub sql: String,
    /// First column of the first row, as text ("t", "42"); absent: any answer passes.
    pub expect: Option<String>,
}

impl Section for RawDrill {
    const KEY: &'static str = "drill";
    const KIND: ProbeKind = ProbeKind::Drill;
    const INTERVAL: Duration = DRILL_INTERVAL;
    // A drill restores a whole backup: its schedule resumes across restarts instead of
    // running again at every start.
    const RESUMES: bool = true;

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn validate(self, cx: &mut Cx, at: &At) -> Option<Valid> {
        let (probe, timeout) = validate(&mut cx.problems, at, self)?;
        cx.scratch_dir(probe.scratch_dir.clone());
        let settings = settings(&probe, timeout);
        Some(Valid {
            probe: Box::new(probe),
            timeout,
            settings,
        })
    }
}

/// The probe and its scheduler timeout, or `None` after recording its problems.
fn validate(p: &mut Problems, at: &At, r: RawDrill) -> Option<(DrillProbe, Duration)> {
    let k = |f: &str| at.key(f);
    let before = p.len();
    let timeout = r.timeout.unwrap_or(DRILL_TIMEOUT);
    if timeout < Duration::from_secs(1) {
        p.push(k("timeout"), "must be at least 1s");
    }
    let required = |p: &mut Problems, key: &str, v: Option<PathBuf>| match v {
        Some(v) if v.is_absolute() => v,
        Some(v) => {
            p.push(k(key), format!("{} must be an absolute path", v.display()));
            v
        }
        None => {
            p.push(k(key), "is required (a directory)");
            PathBuf::new()
        }
    };
    let tools = usize::from(r.pgbackrest.is_some()) + usize::from(r.barman.is_some());
    let backup_dir = match (tools, r.backup_dir) {
        (0, b) => required(p, "backup_dir", b),
        (1, None) => PathBuf::new(),
        _ => {
            p.push(
                k("backup_dir"),
                "set one source: backup_dir, [drill.pgbackrest] or [drill.barman]",
            );
            PathBuf::new()
        }
    };
    if tools > 0 && r.archive_dir.is_some() {
        p.push(
            k("archive_dir"),
            "only with backup_dir: pgBackRest and Barman bring the WAL themselves",
        );
    }
    let barman = r.barman.map(|b| {
        let command = b.command.unwrap_or_else(|| vec!["barman".into()]);
        if command.is_empty() {
            p.push(k("barman.command"), "is empty (default [\"barman\"])");
        }
        BarmanSource {
            server: b.server,
            config: b.config,
            command,
        }
    });
    let scratch_dir = required(p, "scratch_dir", r.scratch_dir);
    // restore_command and the server settings quote paths in single quotes.
    for (key, path) in [
        ("scratch_dir", Some(&scratch_dir)),
        ("archive_dir", r.archive_dir.as_ref()),
    ] {
        if let Some(path) = path
            && path.to_string_lossy().contains(['\'', '\n', '\\'])
        {
            p.push(
                k(key),
                format!(
                    "{} holds a quote, backslash or newline, which restore_command cannot carry",
                    path.display()
                ),
            );
        }
    }
    // A socket path over the kernel's limit: every drill would fail at start with "could
    // not create any Unix-domain sockets".
    let socket = crate::probe::drill::server::socket_path_len(&scratch_dir, &r.name);
    if socket > crate::probe::drill::server::MAX_SOCKET_PATH {
        p.push(
            k("scratch_dir"),
            format!(
                "{} is too long for the scratch server's socket ({socket} bytes with the \
                 drill's name, at most {}): use a shorter directory or drill name",
                scratch_dir.display(),
                crate::probe::drill::server::MAX_SOCKET_PATH
            ),
        );
    }
    let pgbackrest = r.pgbackrest.map(|b| {
        let command = b.command.unwrap_or_else(|| vec!["pgbackrest".into()]);
        if command.is_empty() {
            p.push(
                k("pgbackrest.command"),
                "is empty (default [\"pgbackrest\"])",
            );
        }
        // restore_command carries these in single quotes.
        let quoted = command
            .iter()
            .map(String::as_str)
            .chain([b.stanza.as_str()])
            .chain(b.config.as_ref().and_then(|c| c.to_str()));
        for word in quoted {
            if word.contains(['\'', '\n']) {
                p.push(
                    k("pgbackrest"),
                    format!(
                        "{word:?} holds a quote or newline, which restore_command cannot carry"
                    ),
                );
            }
        }
        PgBackRestSource {
            stanza: b.stanza,
            config: b.config,
            command,
        }
    });
    if let Some(a) = &r.archive_dir
        && !a.is_absolute()
    {
        p.push(
            k("archive_dir"),
            format!("{} must be an absolute path", a.display()),
        );
    }
    if !backup_dir.as_os_str().is_empty() && scratch_dir.starts_with(&backup_dir) {
        p.push(
            k("scratch_dir"),
            "is inside backup_dir: the drill never writes where the backups are",
        );
    }
    let target = match r.target.as_deref() {
        None | Some("latest") => Target::Latest,
        Some(t) => match humantime::parse_duration(t) {
            Ok(d) if !d.is_zero() => Target::Before(d),
            _ => {
                p.push(
                    k("target"),
                    format!("{t:?} is neither \"latest\" nor an offset before now (examples: \"1h\", \"30m\")"),
                );
                Target::Latest
            }
        },
    };
    let space_factor = r.space_factor.unwrap_or(DRILL_SPACE_FACTOR);
    if !(space_factor.is_finite() && space_factor >= 1.0) {
        p.push(
            k("space_factor"),
            format!("{space_factor} must be a number of at least 1.0 (example: 1.2)"),
        );
    }
    if let Some(b) = &r.pg_bindir
        && !b.join("pg_ctl").is_file()
    {
        p.push(k("pg_bindir"), format!("{} holds no pg_ctl", b.display()));
    }
    let mut smoke = Vec::new();
    for (j, c) in r.check.into_iter().enumerate() {
        if c.sql.trim().is_empty() {
            p.push(k(&format!("check[{j}].sql")), "is empty");
        }
        smoke.push(SmokeSql {
            sql: c.sql,
            expect: c.expect,
        });
    }
    for (j, r) in r.amcheck.iter().enumerate() {
        if r.trim().is_empty() || r.starts_with('-') {
            p.push(
                k(&format!("amcheck[{j}]")),
                format!(
                    "{r:?} is not a relation pattern (examples: \"public.orders\", \"public.*\")"
                ),
            );
        }
    }
    (p.len() == before).then(|| {
        (
            DrillProbe {
                name: r.name,
                backup_dir,
                pgbackrest,
                barman,
                archive_dir: r.archive_dir,
                scratch_dir,
                target,
                timeout,
                max_rto: r.max_rto,
                max_shortfall: r.max_shortfall.unwrap_or(DRILL_MAX_SHORTFALL),
                space_factor,
                pg_bindir: r.pg_bindir,
                pg_roots: r.pg_roots.unwrap_or_else(|| {
                    crate::probe::restore::DEFAULT_PG_ROOTS
                        .iter()
                        .map(PathBuf::from)
                        .collect()
                }),
                run_as: r.run_as,
                user: r.user.unwrap_or_else(|| DRILL_USER.into()),
                database: r.database.unwrap_or_else(|| DRILL_DATABASE.into()),
                io_limit: r.io_limit.unwrap_or(true),
                smoke,
                amcheck: r.amcheck,
            },
            timeout * 2 + Duration::from_secs(60),
        )
    })
}

/// The section as it loads back, defaults written out.
fn settings(p: &DrillProbe, scheduler_timeout: Duration) -> Settings {
    let mut s = Settings::default();
    let command = |c: &[String]| Value::from(c.to_vec());
    match (&p.pgbackrest, &p.barman) {
        (None, Some(b)) => {
            let mut t = Table::new();
            t.insert("server".into(), b.server.clone().into());
            if let Some(c) = &b.config {
                t.insert("config".into(), path(c.clone()));
            }
            t.insert("command".into(), command(&b.command));
            s = s.set("barman", t).note("WAL: copied by barman recover");
        }
        (Some(b), _) => {
            let mut t = Table::new();
            t.insert("stanza".into(), b.stanza.clone().into());
            if let Some(c) = &b.config {
                t.insert("config".into(), path(c.clone()));
            }
            t.insert("command".into(), command(&b.command));
            s = s.set("pgbackrest", t).note("WAL: pgbackrest archive-get");
        }
        (None, None) => {
            s = s.path("backup_dir", &p.backup_dir).or_note(
                "archive_dir",
                p.archive_dir.clone(),
                path,
                "recovery uses the backup's own pg_wal only",
            )
        }
    }
    let target = match p.target {
        Target::Latest => "latest".to_string(),
        Target::Before(d) => fmt_duration(d),
    };
    let smoke: Vec<Value> = p
        .smoke
        .iter()
        .map(|c| {
            let mut t = Table::new();
            t.insert("sql".into(), c.sql.clone().into());
            if let Some(e) = &c.expect {
                t.insert("expect".into(), e.clone().into());
            }
            Value::Table(t)
        })
        .collect();
    s.path("scratch_dir", &p.scratch_dir)
        .set("target", target)
        .duration("timeout", p.timeout)
        .note(format!(
            "the scheduler allows {} (a drill may wait for another)",
            fmt_duration(scheduler_timeout)
        ))
        .or_note(
            "max_rto",
            p.max_rto,
            duration,
            "no warning on the recovery time",
        )
        .duration("max_shortfall", p.max_shortfall)
        .set("space_factor", p.space_factor)
        .or_note(
            "pg_bindir",
            p.pg_bindir.clone(),
            path,
            "the backup's major (PG_VERSION) under pg_roots",
        )
        .paths("pg_roots", &p.pg_roots)
        .or_note(
            "run_as",
            p.run_as.clone(),
            Value::from,
            "postgres when the agent runs as root, else the agent's user",
        )
        .set("user", p.user.as_str())
        .set("database", p.database.as_str())
        .set("io_limit", p.io_limit)
        .strings("amcheck", &p.amcheck)
        .set("check", smoke)
}

#[cfg(test)]
mod tests {
    use crate::config::load_str as load;
    use crate::probe::drill::{DrillProbe, Target};
    use std::time::Duration;

    #[test]
    fn drill_defaults_to_weekly_latest_with_two_hours() {
        let c = load(
            "[[drill]]\nname = \"main\"\nbackup_dir = \"/backup/base\"\nscratch_dir = \"/scratch\"\n",
        )
        .unwrap();
        let s = c
            .probes
            .iter()
            .find(|s| s.probe.check_id() == "drill.main")
            .expect("drill.main");
        assert_eq!(s.interval, super::DRILL_INTERVAL);
        {
            let d = s.probe.downcast_ref::<DrillProbe>().expect("a drill");
            assert_eq!(d.target, Target::Latest);
            assert_eq!(d.timeout, super::DRILL_TIMEOUT);
            assert_eq!(d.max_shortfall, Duration::from_secs(300));
            assert_eq!(d.space_factor, 1.2);
            assert!(d.io_limit && d.smoke.is_empty() && d.max_rto.is_none());
        }
    }

    #[test]
    fn every_problem_of_a_drill_is_named_with_its_key() {
        let err = load(
            "[[drill]]\nname = \"main\"\nscratch_dir = \"scratch\"\ntarget = \"yesterday\"\nspace_factor = 0.5\npg_bindir = \"/nonexistent\"\namcheck = [\"public.orders\", \"--all\"]\n[[drill.check]]\nsql = \" \"\n",
        )
        .err()
        .unwrap();
        for want in [
            "drill[0].backup_dir: is required",
            "drill[0].scratch_dir: scratch must be an absolute path",
            "drill[0].target: \"yesterday\" is neither \"latest\" nor an offset",
            "drill[0].space_factor: 0.5 must be a number of at least 1.0",
            "drill[0].pg_bindir: /nonexistent holds no pg_ctl",
            "drill[0].check[0].sql: is empty",
            "drill[0].amcheck[1]: \"--all\" is not a relation pattern",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
    }

    #[test]
    fn a_scratch_dir_too_long_for_the_socket_is_named() {
        let long = format!("/var/tmp/{}", "d".repeat(60));
        let err = load(&format!(
            "[[drill]]\nname = \"main\"\nbackup_dir = \"/b\"\nscratch_dir = \"{long}\"\n"
        ))
        .err()
        .unwrap();
        assert!(
            err.contains(&format!(
                "drill[0].scratch_dir: {long} is too long for the scratch server's socket"
            )),
            "{err}"
        );
        // The length counted is the one a drill creates.
        assert_eq!(
            crate::probe::drill::server::socket_path_len(std::path::Path::new("/s"), "main"),
            "/s/backwatch-drill-main-20261205T225604.651/sock/.s.PGSQL.5432".len()
        );
    }

    #[test]
    fn offset_target_and_scratch_inside_the_backups_are_checked() {
        let c = load(
            "[[drill]]\nname = \"m\"\nbackup_dir = \"/b\"\nscratch_dir = \"/s\"\ntarget = \"1h\"\nmax_rto = \"30m\"\n[[drill.check]]\nsql = \"select count(*) > 0 from orders\"\nexpect = \"t\"\n",
        )
        .unwrap();
        {
            let d = c
                .probes
                .last()
                .unwrap()
                .probe
                .downcast_ref::<DrillProbe>()
                .expect("a drill");
            assert_eq!(d.target, Target::Before(Duration::from_secs(3600)));
            assert_eq!(d.max_rto, Some(Duration::from_secs(1800)));
            assert_eq!(d.smoke[0].expect.as_deref(), Some("t"));
        }
        let err = load("[[drill]]\nname = \"m\"\nbackup_dir = \"/b\"\nscratch_dir = \"/b/tmp\"\n")
            .err()
            .unwrap();
        assert!(
            err.contains("drill[0].scratch_dir: is inside backup_dir"),
            "{err}"
        );
    }

    #[test]
    fn pgbackrest_source_replaces_backup_dir_and_archive_dir() {
        let c = load(
            "[[drill]]\nname = \"r\"\nscratch_dir = \"/s\"\n[drill.pgbackrest]\nstanza = \"main\"\n",
        )
        .unwrap();
        {
            let d = c
                .probes
                .last()
                .unwrap()
                .probe
                .downcast_ref::<DrillProbe>()
                .expect("a drill");
            let b = d.pgbackrest.as_ref().expect("pgbackrest source");
            assert_eq!(
                (b.stanza.as_str(), b.command.clone()),
                ("main", vec!["pgbackrest".to_string()])
            );
            assert!(d.backup_dir.as_os_str().is_empty() && d.archive_dir.is_none());
        }
        let err = load(
            "[[drill]]\nname = \"r\"\nbackup_dir = \"/b\"\narchive_dir = \"/a\"\nscratch_dir = \"/s\"\n[drill.pgbackrest]\nstanza = \"it's\"\n",
        )
        .err()
        .unwrap();
        for want in [
            "drill[0].backup_dir: set one source: backup_dir, [drill.pgbackrest] or [drill.barman]",
            "drill[0].archive_dir: only with backup_dir",
            "drill[0].pgbackrest: \"it's\" holds a quote",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
    }

    #[test]
    fn barman_source_is_one_of_the_three() {
        let c = load(
            "[[drill]]\nname = \"b\"\nscratch_dir = \"/s\"\n[drill.barman]\nserver = \"pg\"\ncommand = [\"sudo\", \"-n\", \"-u\", \"barman\", \"barman\"]\n",
        )
        .unwrap();
        {
            let d = c
                .probes
                .last()
                .unwrap()
                .probe
                .downcast_ref::<DrillProbe>()
                .expect("a drill");
            assert_eq!(d.source_kind(), "barman");
            assert_eq!(d.source_shown(), "Barman server pg");
        }
        let err = load(
            "[[drill]]\nname = \"b\"\nscratch_dir = \"/s\"\n[drill.barman]\nserver = \"pg\"\n[drill.pgbackrest]\nstanza = \"main\"\n",
        )
        .err()
        .unwrap();
        assert!(err.contains("drill[0].backup_dir: set one source"), "{err}");
    }
}
