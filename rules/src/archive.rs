//! WAL archive directory (`archive.<name>`): access, silent archive failures, continuity and
//! retention of what `archive_command` left in the directory.
//!
//! Every finding is judged on its own and the worst decides (critical, then unknown, then
//! warning); the summary lists them worst first, so one alert names everything wrong.
//!
//! - **Missing directory**: critical. **Cannot list it**: unknown, with what to grant (the agent
//!   is unprivileged; nothing else can be judged).
//! - **Access**: others may write to the directory, or may enter it and read a file ⇒ critical
//!   (WAL holds every row ever written). Owner, group or mode other than expected (procedure:
//!   `postgres`, 0700) ⇒ warning.
//! - **Silent failure**: the `last_archived_wal` PostgreSQL reports was read *before* the scan,
//!   so it must be in the directory; missing ⇒ critical, whatever `pg_stat_archiver` says. A
//!   plain segment whose uncompressed size is not `wal_segment_size` ⇒ critical (truncated copy).
//! - **Continuity** from the newest base backup's start segment to the newest segment on the
//!   current timeline path (the agent computed the gaps): the oldest gap decides. A gap (or
//!   short copy) at or before the `last_archived_wal` the linked server reported before the
//!   scan is lost, critical, however close to the newest segment: PostgreSQL's archiver hands
//!   segments to `archive_command` one at a time, in order, and moves on only after success,
//!   so everything up to that segment was reported archived. Elsewhere (after it, without a
//!   linked server, on a standby that does not archive, or an archive declared
//!   `asynchronous`) a gap closer than `in_flight_segments` to the newest segment ⇒ "probably
//!   in flight", warning; farther ⇒ lost, critical, naming the first missing segment (WAL-G
//!   `wal-verify`'s MISSING_UPLOADING vs MISSING_LOST). Holes before the newest backup ⇒
//!   warning.
//! - **Retention** = age of the oldest segment kept. Below the minimum (collector threshold,
//!   else the agent's `min_retention`, else 7 days) ⇒ warning, **unless the cluster is younger
//!   than the minimum**: either the linked server's system identifier dates `initdb` less than
//!   the minimum ago (its upper 32 bits are initdb's clock), or the archive still holds the
//!   cluster's very first segment (`000000010000000000000001`: nothing was ever cleaned up, so
//!   nothing older can exist; with the default 16 MiB segments it is the first segment a new
//!   cluster archives, with smaller ones initdb's WAL fills segments that are never archived).
//!   Without either fact a short archive is reported: link the `[[wal]]` probe to avoid that on
//!   a new cluster whose archive did not start at its first segment.
//! - A truncated scan (entry bound) judges neither continuity nor retention: warning.

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::{ArchiveDirObs, ArchiverView, EncryptionAudit, FIRST_SEGMENT};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// The procedure's retention: "keep at least 7 days of WAL".
pub const DEFAULT_MIN_RETENTION: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchiveDirLimits {
    /// Collector-side minimum retention; `None`: the agent's `min_retention`, else 7 days.
    #[serde(serialize_with = "opt_secs")]
    pub min_retention: Option<Duration>,
    /// WAL kept longer than this means archive cleanup is not running (the procedure's
    /// "implement archive cleanup"); `None` (default): not judged.
    #[serde(serialize_with = "opt_secs")]
    pub max_retention: Option<Duration>,
    /// Gaps and short segments this close to the newest segment may still be on their way.
    /// PostgreSQL's archiver hands one segment at a time to `archive_command`, in order, so a
    /// real gap is rarely in flight; 4 covers a directory listed while files appear and modest
    /// parallel archivers. WAL-G uses its upload concurrency (16) here.
    pub in_flight_segments: u64,
}

impl Default for ArchiveDirLimits {
    fn default() -> Self {
        ArchiveDirLimits {
            min_retention: None,
            max_retention: None,
            in_flight_segments: 4,
        }
    }
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

/// A 24-hex-digit segment name (no `.partial`, `.history`, `.backup`, compression suffix).
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// `0o755` as "0755".
pub fn mode_text(mode: u32) -> String {
    format!("{mode:04o}")
}

struct Findings(Vec<(Status, String)>);

impl Findings {
    fn add(&mut self, status: Status, text: String) {
        self.0.push((status, text));
    }

    fn worst(&self) -> Status {
        self.0
            .iter()
            .map(|(s, _)| *s)
            .max_by_key(|s| s.rank())
            .unwrap_or(Status::Ok)
    }

    /// Worst first; within a status, in the order found.
    fn summary(mut self) -> String {
        self.0.sort_by_key(|(s, _)| std::cmp::Reverse(s.rank()));
        let texts: Vec<String> = self.0.into_iter().map(|(_, t)| t).collect();
        texts.join("; ")
    }
}

pub fn judge(obs: &ArchiveDirObs, l: &ArchiveDirLimits) -> Verdict {
    let min_retention = l
        .min_retention
        .or(obs.expected_min_retention_secs.map(Duration::from_secs))
        .unwrap_or(DEFAULT_MIN_RETENTION);
    let min_secs = i64::try_from(min_retention.as_secs()).unwrap_or(i64::MAX);
    let details = details(obs, l, min_secs);
    let verdict = |status: Status, summary: String| {
        Verdict::new(status, summary)
            .with_details(details.clone())
            .with_procedure(procedure::ARCHIVE)
    };
    if !obs.exists {
        return verdict(
            Status::Critical,
            format!("archive directory {} does not exist", obs.path),
        );
    }
    let mut f = Findings(Vec::new());
    access(obs, &mut f);
    if let Some(err) = &obs.read_error {
        f.add(
            Status::Unknown,
            format!("cannot list archive directory {}: {err}", obs.path),
        );
        return verdict(f.worst(), f.summary());
    }
    if let Some(pg) = &obs.postgres {
        silent_failure(obs, pg, &mut f);
    }
    if obs.truncated {
        f.add(
            Status::Warning,
            format!(
                "scan stopped after {} entries: continuity and retention not judged (raise max_entries)",
                obs.entries_scanned
            ),
        );
    } else {
        continuity(obs, l, &mut f);
        retention(obs, min_secs, &mut f);
        cleanup(obs, l.max_retention, &mut f);
    }
    if let Some(history) = &obs.missing_history {
        f.add(
            Status::Warning,
            format!(
                "timeline history file {history} is missing from the archive: recovery cannot follow the switch to timeline {}",
                obs.timeline
            ),
        );
    }
    if let Some(e) = &obs.encryption {
        encryption(e, &mut f);
    }
    if f.0.is_empty() {
        return verdict(Status::Ok, ok_summary(obs, min_secs));
    }
    verdict(f.worst(), f.summary())
}

/// Declared encrypted, yet a segment reads without a key: the policy is broken, critical (WAL
/// holds every row written). Segments that cannot be opened only leave the policy unverified.
fn encryption(e: &EncryptionAudit, f: &mut Findings) {
    if e.readable > 0 {
        f.add(
            Status::Critical,
            format!(
                "archive declared encrypted, but {} of the {} newest segments read without a key: {} is a {}",
                e.readable,
                e.sampled,
                e.first_readable.as_deref().unwrap_or("?"),
                e.first_readable_kind.as_deref().unwrap_or("readable file")
            ),
        );
    } else if e.sampled == 0 && e.unreadable > 0 {
        f.add(
            Status::Warning,
            format!(
                "encryption not verified: {}",
                e.first_error
                    .as_deref()
                    .unwrap_or("no segment could be read")
            ),
        );
    }
}

fn access(obs: &ArchiveDirObs, f: &mut Findings) {
    let Some(a) = &obs.access else { return };
    let mode = mode_text(a.mode);
    if a.mode & 0o002 != 0 {
        f.add(
            Status::Critical,
            format!("others can write to the archive directory (mode {mode}): anyone can delete or replace WAL"),
        );
    } else if a.mode & 0o001 != 0 && obs.files_open_to_others > 0 {
        let first = obs.first_open_to_others.as_deref().unwrap_or("?");
        f.add(
            Status::Critical,
            format!(
                "{} archived files are readable by others (first {first}) and the directory (mode {mode}) lets them in",
                obs.files_open_to_others
            ),
        );
    }
    if let Some(expected) = obs.expected_mode
        && expected != a.mode
    {
        let why = if a.mode & 0o004 != 0 {
            ": others can list it"
        } else if a.mode & 0o070 != expected & 0o070 {
            ": group access differs"
        } else {
            ""
        };
        f.add(
            Status::Warning,
            format!(
                "archive directory mode {mode}, expected {}{why}",
                mode_text(expected)
            ),
        );
    }
    let who = |id: u32, name: &Option<String>| match name {
        Some(n) => n.clone(),
        None => format!("uid {id} (no name)"),
    };
    if let Some(expected) = &obs.expected_owner
        && !same_id(expected, a.uid, a.owner.as_deref())
    {
        f.add(
            Status::Warning,
            format!(
                "archive directory owned by {}, expected {expected}",
                who(a.uid, &a.owner)
            ),
        );
    }
    if let Some(expected) = &obs.expected_group
        && !same_id(expected, a.gid, a.group.as_deref())
    {
        let group = match &a.group {
            Some(n) => n.clone(),
            None => format!("gid {} (no name)", a.gid),
        };
        f.add(
            Status::Warning,
            format!("archive directory group {group}, expected {expected}"),
        );
    }
}

/// `expected` is a name or a numeric id.
fn same_id(expected: &str, id: u32, name: Option<&str>) -> bool {
    match expected.parse::<u32>() {
        Ok(n) => n == id,
        Err(_) => name == Some(expected),
    }
}

fn silent_failure(obs: &ArchiveDirObs, pg: &ArchiverView, f: &mut Findings) {
    if let Some(e) = &pg.error {
        f.add(
            Status::Unknown,
            format!(
                "cannot ask PostgreSQL (wal.{}) what it archived: {e}",
                pg.wal_probe
            ),
        );
        return;
    }
    // A standby with archive_mode = on does not archive; its pg_stat_archiver is stale (A6).
    if pg.in_recovery && pg.archive_mode != "always" {
        return;
    }
    let Some(wal) = &pg.last_archived_wal else {
        return; // nothing archived since the statistics began
    };
    let Some(file) = &pg.last_archived_file else {
        let when = pg
            .last_archived_time
            .map_or_else(String::new, |t| format!(" at {}", at(t)));
        let archiver = if pg.archive_command.trim().is_empty() && !pg.archive_library.is_empty() {
            format!("archive_library '{}'", pg.archive_library)
        } else {
            format!("{COMMAND_QUOTED}{}", pg.archive_command)
        };
        f.add(
            Status::Critical,
            format!(
                "{wal} is not in the archive although PostgreSQL reports it archived{when} \
                 ({} segments archived): {archiver}{COMMAND_QUOTE_END}",
                pg.archived_count
            ),
        );
        return;
    };
    let seg = obs.wal_segment_size_bytes;
    if is_segment_name(wal)
        && seg > 0
        && let Some(size) = pg.last_archived_uncompressed_bytes
        && size != seg
    {
        f.add(
            Status::Critical,
            format!(
                "{} is truncated in the archive: {} of {} bytes",
                file.name, size, seg
            ),
        );
    }
}

fn continuity(obs: &ArchiveDirObs, l: &ArchiveDirLimits, f: &mut Findings) {
    let Some(c) = &obs.continuity else {
        // Segments there but not checkable (names that do not fit the segment size, none on
        // the timeline path): say so rather than look continuous.
        if obs.segments > 0
            && let Some(note) = &obs.continuity_note
        {
            f.add(Status::Warning, format!("continuity {note}"));
        }
        return;
    };
    let from = match &c.newest_backup {
        Some(b) => format!("the newest base backup ({b})"),
        None => "the oldest segment kept".to_string(),
    };
    if let Some(g) = c.gaps.first() {
        let more = if c.missing_segments > g.missing {
            format!(
                "; {} gaps, {} segments missing in all",
                c.gap_count, c.missing_segments
            )
        } else {
            String::new()
        };
        let reported =
            archived_through(obs).filter(|through| at_or_before(&g.first_missing, *through));
        if g.segments_after >= l.in_flight_segments || reported.is_some() {
            let run = if g.missing > 1 {
                format!(" and the {} segments after it are", g.missing - 1)
            } else {
                " is".to_string()
            };
            let why = reported.map_or_else(String::new, |_| {
                format!(
                    " although PostgreSQL reports everything up to {} archived",
                    last_archived(obs).unwrap_or("?")
                )
            });
            let window = obs
                .window
                .as_ref()
                .filter(|w| w.cut_at.as_deref() == Some(g.first_missing.as_str()))
                .map_or_else(String::new, |w| {
                    format!(
                        "; the recoverable window ends at {} ({})",
                        at(w.end),
                        w.end_segment
                    )
                });
            f.add(
                Status::Critical,
                format!(
                    "gap in the archive: {}{run} missing{why}, {} segments before the newest; \
                     recovery from {from} stops there{window}{more}",
                    g.first_missing, g.segments_after
                ),
            );
        } else {
            f.add(
                Status::Warning,
                format!(
                    "{} is not in the archive yet, {} segments before the newest: probably in flight{more}",
                    g.first_missing, g.segments_after
                ),
            );
        }
    }
    if let Some(s) = c.short.first() {
        let reported = archived_through(obs).is_some_and(|through| at_or_before(&s.name, through));
        let status = if s.segments_after >= l.in_flight_segments || reported {
            Status::Critical
        } else {
            Status::Warning
        };
        let others = if c.short_segments > 1 {
            format!(" ({} such segments)", c.short_segments)
        } else {
            String::new()
        };
        f.add(
            status,
            format!(
                "segment {} is {} bytes, not {}: a truncated copy{others}",
                s.name, s.size_bytes, obs.wal_segment_size_bytes
            ),
        );
    }
    if c.missing_before_range > 0 {
        f.add(
            Status::Warning,
            format!(
                "{} segments missing before {from} (first {}): older backups cannot be rolled forward past them",
                c.missing_before_range,
                c.first_missing_before_range.as_deref().unwrap_or("?")
            ),
        );
    }
}

/// How far every segment must be in the directory: the WAL position (log and segment digits
/// of the name) of the `last_archived_wal` the linked server reported before the scan, when its
/// archiver is the one filling this directory in order; before or at it (see [`Through`]).
/// `None` where that does not hold: no linked server or no answer, a standby that does not
/// archive, an archive declared asynchronous, or a timeline history file as the last archived
/// one (archived ahead of every other file, it says nothing about the segments).
fn archived_through(obs: &ArchiveDirObs) -> Option<Through<'_>> {
    if obs.asynchronous {
        return None;
    }
    let wal = last_archived(obs)?;
    // A `.partial` file is the old timeline's last segment, archived after everything before it.
    let seg = wal.strip_suffix(".partial").unwrap_or(wal);
    if is_segment_name(seg) {
        return Some(Through::AtOrBefore(&seg[8..]));
    }
    // A backup history file, `<segment>.<offset>.backup`, goes after the segments before its
    // own (the archiver takes ready files in name order); its own may still be being written
    // when the backup started and stopped in it.
    let start = wal.strip_suffix(".backup")?.get(..24)?;
    is_segment_name(start).then(|| Through::Before(&start[8..]))
}

/// A position through which every segment is archived, itself included or not.
#[derive(Clone, Copy)]
enum Through<'a> {
    AtOrBefore(&'a str),
    Before(&'a str),
}

fn last_archived(obs: &ArchiveDirObs) -> Option<&str> {
    let pg = obs.postgres.as_ref()?;
    if pg.error.is_some() || (pg.in_recovery && pg.archive_mode != "always") {
        return None;
    }
    pg.last_archived_wal.as_deref()
}

/// Segment `name` is within `through` (positions as 16 hex digits of log and segment, which
/// order like the positions they name; the timeline does not matter along one path).
fn at_or_before(name: &str, through: Through) -> bool {
    name.get(8..24).is_some_and(|pos| match through {
        Through::AtOrBefore(t) => pos <= t,
        Through::Before(t) => pos < t,
    })
}

fn retention(obs: &ArchiveDirObs, min_secs: i64, f: &mut Findings) {
    let Some(oldest) = &obs.oldest_segment else {
        // Nothing kept at all, for a cluster known to be older than the minimum (a linked
        // server says its age): cleanup emptied the archive, or nothing ever arrived. Without
        // a server the cluster may be new: "no WAL segment yet".
        if obs.segments == 0
            && let Some(age) = obs.postgres.as_ref().and_then(|p| p.cluster_age_secs)
            && age >= min_secs
        {
            // Files named otherwise (`<segment>.gpg`: a container Backwatch does not know) are
            // said, so that the reason is plain.
            let others = match obs.other_files {
                0 => String::new(),
                n => format!(" ({n} other files, none named as a segment or a known compression)"),
            };
            f.add(
                Status::Warning,
                format!(
                    "WAL retention 0 is below the minimum {}: {} holds no WAL segment{others}, \
                     and the cluster was created {} ago",
                    human::duration(min_secs),
                    obs.path,
                    human::duration(age)
                ),
            );
        }
        return;
    };
    if oldest.age_secs >= min_secs || young_cluster(obs, min_secs).is_some() {
        return;
    }
    f.add(
        Status::Warning,
        format!(
            "WAL retention {} is below the minimum {}: the oldest segment kept is {} from {}",
            human::duration(oldest.age_secs),
            human::duration(min_secs),
            oldest.name,
            at(oldest.mtime)
        ),
    );
}

/// WAL kept far longer than intended: archive cleanup (`pg_archivecleanup` at the oldest kept
/// backup, the backup tool's retention) is not running.
fn cleanup(obs: &ArchiveDirObs, max: Option<Duration>, f: &mut Findings) {
    let (Some(oldest), Some(max)) = (&obs.oldest_segment, max) else {
        return;
    };
    let max_secs = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
    if oldest.age_secs <= max_secs {
        return;
    }
    f.add(
        Status::Warning,
        format!(
            "WAL retention {} is above the maximum {}: archive cleanup is not removing old \
             segments (the oldest kept is {} from {})",
            human::duration(oldest.age_secs),
            human::duration(max_secs),
            oldest.name,
            at(oldest.mtime)
        ),
    );
}

/// Why a short archive is not short of anything, if it is not: the cluster is younger than the
/// minimum retention.
fn young_cluster(obs: &ArchiveDirObs, min_secs: i64) -> Option<String> {
    if obs
        .oldest_segment
        .as_ref()
        .is_some_and(|o| o.name == FIRST_SEGMENT)
    {
        return Some("keeps every segment since the cluster's first".into());
    }
    let age = obs.postgres.as_ref()?.cluster_age_secs?;
    (age < min_secs).then(|| {
        format!(
            "the cluster was created {} ago, less than the {} minimum",
            human::duration(age),
            human::duration(min_secs)
        )
    })
}

fn ok_summary(obs: &ArchiveDirObs, min_secs: i64) -> String {
    let Some(oldest) = &obs.oldest_segment else {
        return format!("archive ok: no WAL segment in {} yet", obs.path);
    };
    let mut s = format!(
        "archive ok: {} segments ({}), {} of WAL since {}",
        obs.segments,
        human::bytes(obs.segment_bytes),
        human::duration(oldest.age_secs),
        oldest.name
    );
    if oldest.age_secs < min_secs
        && let Some(why) = young_cluster(obs, min_secs)
    {
        s.push_str(&format!(" ({why})"));
    }
    if let Some(c) = &obs.continuity {
        let from = if c.newest_backup.is_some() {
            "from the newest base backup"
        } else {
            "from"
        };
        s.push_str(&format!(
            "; continuous {from} {} to {}",
            c.range_start, c.range_end
        ));
    }
    if let Some(d) = obs.newest_backup.as_ref().and_then(|b| b.duration_secs) {
        s.push_str(&format!("; newest base backup took {}", human::duration(d)));
    }
    if let Some(w) = &obs.window {
        s.push_str(&format!(
            "; restorable from {} to {}",
            at(w.start),
            at(w.end)
        ));
    }
    if let Some(pg) = &obs.postgres
        && pg.error.is_none()
        && let Some(wal) = &pg.last_archived_wal
    {
        if pg.in_recovery && pg.archive_mode != "always" {
            s.push_str("; standby: archiving is checked on the primary");
        } else {
            s.push_str(&format!("; last archived {wal} is present"));
        }
    }
    s
}

fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How a summary quotes the server's `archive_command` (agent-redacted, but still more than
/// every reader of the API should see): [`hide_command`] finds it by these.
const COMMAND_QUOTED: &str = "archive_command '";
const COMMAND_QUOTE_END: &str = "' reports success without copying here";

/// `text` with every `archive_command` a summary of this module quoted replaced by `hidden`
/// (for API callers who may not see the command); `None` when there is none.
pub fn hide_command(text: &str, hidden: &str) -> Option<String> {
    let start = text.find(COMMAND_QUOTED)?;
    let end = text
        .rfind(COMMAND_QUOTE_END)
        .filter(|e| *e >= start + COMMAND_QUOTED.len())?;
    Some(format!(
        "{}archive_command {hidden} reports success without copying here{}",
        &text[..start],
        &text[end + COMMAND_QUOTE_END.len()..]
    ))
}

fn details(obs: &ArchiveDirObs, l: &ArchiveDirLimits, min_secs: i64) -> serde_json::Value {
    let pg = obs.postgres.as_ref();
    json!({
        "path": obs.path,
        "exists": obs.exists,
        "read_error": obs.read_error,
        "owner": obs.access.as_ref().map(|a| a.owner.clone().unwrap_or_else(|| a.uid.to_string())),
        "group": obs.access.as_ref().map(|a| a.group.clone().unwrap_or_else(|| a.gid.to_string())),
        "mode": obs.access.as_ref().map(|a| mode_text(a.mode)),
        "expected_owner": obs.expected_owner,
        "expected_group": obs.expected_group,
        "expected_mode": obs.expected_mode.map(mode_text),
        "files_open_to_others": obs.files_open_to_others,
        "segments": obs.segments,
        "segment_bytes": obs.segment_bytes,
        "oldest_segment": obs.oldest_segment,
        "newest_segment": obs.newest_segment,
        "retention_secs": obs.oldest_segment.as_ref().map(|o| o.age_secs),
        "min_retention_secs": min_secs,
        "max_retention_secs": l.max_retention.map(|d| d.as_secs()),
        "cluster_age_secs": pg.and_then(|p| p.cluster_age_secs),
        "wal_segment_size_bytes": obs.wal_segment_size_bytes,
        "timeline": obs.timeline,
        "continuity": obs.continuity,
        "newest_backup": obs.newest_backup,
        "encryption": obs.encryption,
        "continuity_note": obs.continuity_note,
        "timeline_note": obs.timeline_note,
        "in_flight_segments": l.in_flight_segments,
        "archived_count": pg.map(|p| p.archived_count),
        "last_archived_wal": pg.and_then(|p| p.last_archived_wal.clone()),
        "last_archived_present": pg.map(|p| p.last_archived_file.is_some()),
        "truncated": obs.truncated,
        "wal_probe": pg.map(|p| p.wal_probe.clone()),
        "window": obs.window,
        "window_note": obs.window_note,
        "window_secs": obs.window.as_ref().map(|w| (w.end - w.start).num_seconds()),
    })
}
