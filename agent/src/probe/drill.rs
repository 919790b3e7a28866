//! Restore drill (`drill.<name>`): restore the newest base backup into a scratch directory,
//! recover it with the WAL archive, start PostgreSQL on it, prove it answers, time it all.
//!
//! Invariants:
//! - **Nothing written before the space check**: the scratch file system must have the
//!   backup's size × `space_factor` free (for unprivileged users), else the drill is refused
//!   with that said, and no directory is created.
//! - **The source is only read**: the backup is copied (`cp -a`) or unpacked (`tar -x`) from,
//!   the archive only read by `restore_command` (`cp` from it); `archive_mode = off` so the
//!   promoted scratch server archives nothing anywhere.
//! - **Private server**: `listen_addresses = ''`, its Unix socket inside the scratch
//!   directory, an `hba_file` of its own trusting that socket only, small memory, no SSL; run
//!   as `run_as` (PostgreSQL refuses root) under nice/ionice, in its own process group.
//! - **Always removed**: the server is stopped (`pg_ctl stop -m immediate`, then SIGKILL of
//!   the postmaster — checked to be the one living in our directory — and of its group) and
//!   the scratch subdirectory removed at the end of every drill, after a failure, at the
//!   drill's timeout and when the agent drops the run (stop, shutdown): see [`server::Scratch`].
//!   Scratch subdirectories are named `backwatch-drill-*`; those a killed agent left are
//!   removed, their server stopped, when the agent starts ([`remove_leftovers`]).
//! - **One drill at a time per host** (a semaphore), whatever the number of `[[drill]]`s.
//! - **Measured, not judged**: restore time, recovery time (start to promoted and answering),
//!   their sum as the RTO, bytes and WAL segments restored, the recovered point
//!   ([`backwatch_proto::model::RECOVERED_POINT_SOURCE`]) and how far it is from the target.
//!   For "latest", the target is the end of the archive: replay that reached the newest
//!   archived segment recovered everything, whatever the age of its last commit (an idle
//!   server is not short of anything); replay that stopped before is short by the time
//!   between its last commit and the newest segment, and a segment recovery asked for while
//!   the archive holds later ones is named as the gap.

mod backup;
mod barman;
mod cleanup;
mod pgbackrest;
pub(crate) mod server;
mod settings;

pub use barman::BarmanSource;
pub use cleanup::remove_leftovers;
pub use pgbackrest::PgBackRestSource;

use super::{Outcome, Probe, tool_command};
use backwatch_proto::model::{DrillObs, Observation, ProbeKind, SmokeCheck};
use chrono::Utc;
use server::{Scratch, ServerFacts};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// One drill at a time on this host: two restores at once would double the IO and space a
/// drill is allowed and make both timings meaningless.
static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);

/// Prefix of every scratch subdirectory a drill creates (and the only ones it removes).
pub const SCRATCH_PREFIX: &str = "backwatch-drill-";

/// The backup a drill restores, with its source.
enum Chosen<'a> {
    Plain(backup::Found),
    /// A pgBackRest backup label, and the end of the stanza's archive.
    PgBackRest(&'a PgBackRestSource, String, Option<pgbackrest::ArchiveEnd>),
    /// A Barman backup.
    Barman(&'a BarmanSource, barman::Chosen),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Everything the archive holds.
    Latest,
    /// `recovery_target_time` this long before the drill starts.
    Before(Duration),
}

#[derive(Debug, Clone)]
pub struct SmokeSql {
    pub sql: String,
    pub expect: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DrillProbe {
    pub name: String,
    /// Plain source: pg_basebackup backups here, WAL from `archive_dir`.
    pub backup_dir: PathBuf,
    /// pgBackRest source instead (then `backup_dir` is empty and `archive_dir` unset).
    pub pgbackrest: Option<PgBackRestSource>,
    /// Barman source instead (then `backup_dir` is empty and `archive_dir` unset).
    pub barman: Option<BarmanSource>,
    pub archive_dir: Option<PathBuf>,
    pub scratch_dir: PathBuf,
    pub target: Target,
    pub timeout: Duration,
    pub max_rto: Option<Duration>,
    pub max_shortfall: Duration,
    pub space_factor: f64,
    pub pg_bindir: Option<PathBuf>,
    /// Where the majors' binaries are looked for (`<root>/<major>/bin`, `<root>/pgsql-<major>/bin`).
    pub pg_roots: Vec<PathBuf>,
    pub run_as: Option<String>,
    pub user: String,
    pub database: String,
    pub io_limit: bool,
    pub smoke: Vec<SmokeSql>,
    /// Relation patterns for `pg_amcheck` after the smoke SQL (empty: not run).
    pub amcheck: Vec<String>,
}

#[async_trait::async_trait]
impl Probe for DrillProbe {
    fn kind(&self) -> ProbeKind {
        ProbeKind::Drill
    }

    fn target(&self) -> String {
        self.source_shown()
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self) -> Outcome {
        let _turn = ONE_AT_A_TIME
            .acquire()
            .await
            .map_err(|_| "the drill semaphore is closed".to_string())?;
        let mut obs = self.blank();
        let mut scratch: Option<Scratch> = None;
        let run = tokio::time::timeout(self.timeout, self.drill(&mut obs, &mut scratch)).await;
        if run.is_err() {
            obs.timed_out = true;
            obs.error = Some(format!(
                "drill timed out after {}",
                humantime::format_duration(self.timeout)
            ));
        }
        if let Some(s) = scratch {
            let archive = self.wal_archive(&s.data());
            s.analyse(&mut obs, archive.as_deref());
            if obs.error.is_some() {
                obs.server_log = s.log_errors();
            }
            let what = format!("removing {}", s.dir().display());
            obs.cleanup_error = match crate::blocking::run(&what, move || s.cleanup()).await {
                Ok(r) => r.err(),
                Err(e) => Some(e),
            };
        }
        Ok(Observation::Drill(Box::new(obs)))
    }
}

impl DrillProbe {
    pub fn source_kind(&self) -> &'static str {
        match (&self.pgbackrest, &self.barman) {
            (Some(_), _) => "pgbackrest",
            (None, Some(_)) => "barman",
            (None, None) => "plain",
        }
    }

    /// The source as people read it: a directory, a stanza, a server.
    pub fn source_shown(&self) -> String {
        match (&self.pgbackrest, &self.barman) {
            (Some(b), _) => b.shown(),
            (None, Some(b)) => b.shown(),
            (None, None) => self.backup_dir.display().to_string(),
        }
    }

    /// Where restore_command takes WAL from, in the restored `data` directory's terms.
    pub(crate) fn wal_archive(&self, data: &Path) -> Option<PathBuf> {
        match &self.barman {
            Some(_) => Some(barman::wal_dir(data)),
            None => self.archive_dir.clone(),
        }
    }

    fn blank(&self) -> DrillObs {
        DrillObs {
            source_kind: self.source_kind().into(),
            backup_root: self.source_shown(),
            archive_path: self.archive_dir.as_ref().map(|a| a.display().to_string()),
            scratch_dir: self.scratch_dir.display().to_string(),
            space_factor: self.space_factor,
            target: match self.target {
                Target::Latest => "latest".into(),
                Target::Before(d) => format!("{} before now", humantime::format_duration(d)),
            },
            max_rto_secs: self.max_rto.map(|d| d.as_secs()),
            max_shortfall_secs: self.max_shortfall.as_secs(),
            ..DrillObs::default()
        }
    }

    /// The drill's steps; each failure is recorded in `obs` and ends it. `scratch` is set as
    /// soon as something was written, so the caller removes it whatever happens here.
    async fn drill(&self, obs: &mut DrillObs, scratch: &mut Option<Scratch>) {
        let started = Instant::now();
        obs.started_at = Some(Utc::now());
        if let Target::Before(d) = self.target {
            // Once, here: Barman copies the WAL up to it and the server recovers to it.
            obs.target_time = Some(Utc::now() - chrono::Duration::from_std(d).unwrap_or_default());
        }
        let chosen = match (&self.pgbackrest, &self.barman) {
            (None, Some(src)) => src
                .choose(&self.scratch_dir, self.space_factor)
                .await
                .map(|(chosen, space)| (Chosen::Barman(src, chosen), space)),
            (Some(src), _) => src
                .choose(
                    &server::tool_prefix(self.run_as.as_deref()),
                    &self.scratch_dir,
                    self.space_factor,
                )
                .await
                .map(|(label, space, end)| (Chosen::PgBackRest(src, label, end), space)),
            (None, None) => {
                let (root, scratch_dir, factor) = (
                    self.backup_dir.clone(),
                    self.scratch_dir.clone(),
                    self.space_factor,
                );
                crate::blocking::run("choosing the backup", move || {
                    backup::choose(&root, &scratch_dir, factor)
                })
                .await
                .and_then(|r| r)
                .map(|(found, space)| (Chosen::Plain(found), space))
            }
        };
        let (chosen, space) = match chosen {
            Ok(c) => c,
            Err(e) => {
                obs.error = Some(e);
                return;
            }
        };
        match &chosen {
            Chosen::Plain(found) => {
                obs.backup_path = Some(found.path.display().to_string());
                obs.backup_format = Some(found.format.as_str().into());
            }
            Chosen::PgBackRest(_, label, _) => {
                obs.backup_path = Some(label.clone());
                obs.backup_format = Some("pgbackrest".into());
            }
            Chosen::Barman(_, chosen) => {
                obs.backup_path = Some(chosen.id.clone());
                obs.backup_format = Some("barman".into());
            }
        }
        obs.backup_bytes = space.backup_bytes;
        obs.scratch_free_bytes = space.free_bytes;
        if let Some(refused) = space.refused {
            obs.refused = Some(refused);
            return;
        }
        let s = match Scratch::create(&self.scratch_dir, &self.name, self.run_as.as_deref()) {
            Ok(s) => scratch.insert(s),
            Err(e) => {
                obs.error = Some(e);
                return;
            }
        };
        if let Chosen::PgBackRest(_, _, Some(end)) = &chosen {
            s.set_archive_end(end.clone());
        }
        let limit = if self.io_limit {
            super::restore::io_limit_prefix()
        } else {
            Vec::new()
        };
        if !limit.is_empty() {
            obs.io_limit = Some(super::restore::shown_prefix(&limit));
        }
        let restored = match &chosen {
            Chosen::Plain(found) => backup::restore(found, &s.data(), &limit).await,
            Chosen::PgBackRest(src, label, _) => {
                let mut limit = limit.clone();
                limit.extend(server::tool_prefix(self.run_as.as_deref()));
                src.restore(label, &s.data(), s.owner(), &limit).await
            }
            Chosen::Barman(src, chosen) => {
                src.restore(chosen, &s.data(), obs.target_time, &limit)
                    .await
            }
        };
        if let Err(e) = restored {
            obs.error = Some(e);
            return;
        }
        // Which cluster this drill proves, whatever becomes of it (the server confirms it).
        obs.system_identifier = server::control_system_identifier(&s.data());
        if let Chosen::Barman(..) = chosen {
            obs.wal_segments_restored = barman::copied_segments(&s.data());
        }
        let bindir = match s.prepare(self, obs).await {
            Ok(b) => b,
            Err(e) => {
                obs.error = Some(e);
                return;
            }
        };
        obs.restore_ms = started.elapsed().as_millis() as u64;
        let recovering = Instant::now();
        let archive = self.wal_archive(&s.data());
        let mut started = s.start_and_wait(&bindir, &limit, self).await;
        // Recovery has ended (promoted, or stopped): where the archive ended then.
        s.mark_archive_end(archive.as_deref());
        if started.is_err()
            && matches!(self.target, Target::Before(_))
            && s.past_the_last_commit(obs, archive.as_deref())
        {
            started = match s.clear_target() {
                Ok(()) => s.start_and_wait(&bindir, &limit, self).await,
                Err(e) => Err(e),
            };
        }
        let facts: ServerFacts = match started {
            Ok(f) => f,
            Err(e) => {
                obs.error = Some(e);
                return;
            }
        };
        obs.recovery_ms = recovering.elapsed().as_millis() as u64;
        obs.rto_ms = Some(obs.restore_ms + obs.recovery_ms);
        obs.recovered_at = facts.recovered_at;
        obs.replay_lsn = facts.replay_lsn.clone();
        if facts.system_identifier.is_some() {
            obs.system_identifier = facts.system_identifier.clone();
        }
        s.set_replay(facts.replay_segment());
        let smoking = Instant::now();
        obs.smoke = self.smoke_checks(s).await;
        obs.smoke_ms = smoking.elapsed().as_millis() as u64;
    }

    async fn smoke_checks(&self, s: &Scratch) -> Vec<SmokeCheck> {
        let mut all = vec![SmokeSql {
            sql: "select 1".into(),
            expect: Some("1".into()),
        }];
        all.extend(self.smoke.iter().cloned());
        let client = match s.connect(self).await {
            Ok(c) => c,
            Err(e) => {
                return all
                    .into_iter()
                    .map(|c| SmokeCheck {
                        sql: c.sql,
                        expect: c.expect,
                        got: None,
                        error: Some(e.clone()),
                        passed: false,
                    })
                    .collect();
            }
        };
        let mut out = Vec::new();
        for c in all {
            let (got, error) = match server::first_value(&client, &c.sql).await {
                Ok(v) => (v, None),
                Err(e) => (None, Some(e)),
            };
            let passed = error.is_none()
                && c.expect
                    .as_ref()
                    .is_none_or(|want| got.as_deref() == Some(want.as_str()));
            out.push(SmokeCheck {
                sql: c.sql,
                expect: c.expect,
                got,
                error,
                passed,
            });
        }
        if !self.amcheck.is_empty() {
            out.push(self.amcheck(s).await);
        }
        out
    }

    /// `pg_amcheck` of the configured relations (heap and their B-tree indexes) on the scratch
    /// server, from the backup's own binaries, reported as one more smoke check: a page
    /// damaged in the backup that no query of the smoke SQL happened to read is found here.
    /// `--install-missing` creates the amcheck extension in the scratch copy only.
    async fn amcheck(&self, s: &Scratch) -> SmokeCheck {
        let mut argv = vec![
            s.bindir()
                .map(|b| b.join("pg_amcheck"))
                .unwrap_or_default()
                .display()
                .to_string(),
        ];
        argv.extend(["--install-missing".into(), "--host".into()]);
        argv.push(s.sock().display().to_string());
        argv.extend(["--port".into(), settings::PORT.to_string()]);
        argv.extend(["--username".into(), self.user.clone()]);
        argv.extend(["--database".into(), self.database.clone()]);
        for r in &self.amcheck {
            argv.extend(["--relation".into(), r.clone()]);
        }
        let shown = format!(
            "pg_amcheck --relation {}",
            self.amcheck.join(" --relation ")
        );
        let failed = |error: String| SmokeCheck {
            sql: shown.clone(),
            expect: None,
            got: None,
            error: Some(error),
            passed: false,
        };
        if !Path::new(&argv[0]).is_file() {
            return failed(format!(
                "{} not found: pg_amcheck comes with PostgreSQL 14 or later",
                argv[0]
            ));
        }
        let limits = tool_command::Limits {
            stdout: 64 * 1024,
            stderr: 64 * 1024,
            drop_array: None,
        };
        match tool_command::run(&argv, limits).await {
            Err(e) => failed(e),
            Ok(out) if out.code == Some(0) => SmokeCheck {
                sql: shown,
                expect: None,
                got: Some("no corruption found".into()),
                error: None,
                passed: true,
            },
            Ok(out) => {
                // Its first findings name the relation, block and what is wrong.
                let findings: Vec<&str> = out
                    .stdout
                    .lines()
                    .chain(out.stderr.lines())
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .take(3)
                    .collect();
                failed(if findings.is_empty() {
                    format!("exit status {:?}", out.code)
                } else {
                    findings.join("; ")
                })
            }
        }
    }
}
