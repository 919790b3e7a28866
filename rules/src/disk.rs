//! Disk space of backup and archive storage (docs/checks.md R9–R11).
//!
//! used% is computed exactly as GNU `df` prints it ([`DiskObs::used_pct`]): used = total - free,
//! and ⌈100 · used / (used + avail)⌉. Root-reserved blocks are left out of the denominator and the
//! result is rounded up, so the operator's `df -h /backup` and Backwatch show the same number.
//! Levels have hysteresis: once raised, a level clears only when the value falls below
//! `threshold - hysteresis_pts`, so a filesystem hovering at the limit does not flap. The
//! check's previous status is credited to the measure whose previous value explains it, so
//! inodes that were critical do not hold space at 84 % critical when space never passed 85 %,
//! nor the other way round. A hold that neither previous value explains goes to both: the rule
//! sees the previous status and observation, not a level per measure (see `previous_levels`).
//!
//! Whatever its space, a filesystem that cannot take a backup is critical: mounted read-only
//! (the kernel does that after I/O errors), or not the filesystem the agent's configuration
//! expects (`mount_point`): an unmounted volume leaves the path on its parent's filesystem,
//! which the space figures would then describe as if all were well.

use super::procedure;
use crate::human;
use crate::status::{Status, Verdict};
use backwatch_proto::model::DiskObs;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskLimits {
    /// Used percent strictly above this is a warning (procedure: 75).
    pub warning_pct: u8,
    /// Used percent strictly above this is critical (procedure: 85).
    pub critical_pct: u8,
    /// A raised level clears only below threshold - this many points.
    pub hysteresis_pts: u8,
    /// Same thresholds for inode use.
    pub inode_warning_pct: u8,
    pub inode_critical_pct: u8,
}

impl Default for DiskLimits {
    fn default() -> Self {
        DiskLimits {
            warning_pct: 75,
            critical_pct: 85,
            hysteresis_pts: 2,
            inode_warning_pct: 75,
            inode_critical_pct: 85,
        }
    }
}

fn level(pct: u8, warn: u8, crit: u8, hyst: u8, prev: Option<Status>) -> Status {
    let held = |threshold: u8| pct >= threshold.saturating_sub(hyst);
    if pct > crit || (prev == Some(Status::Critical) && held(crit)) {
        Status::Critical
    } else if pct > warn || (matches!(prev, Some(Status::Critical | Status::Warning)) && held(warn))
    {
        Status::Warning
    } else {
        Status::Ok
    }
}

/// The level each measure had at the previous result, as far as it can be told: the previous
/// status goes to the measure whose own value explains it, or to both when neither does (then
/// it was held by hysteresis, and the band test in [`level`] decides). Without a previous
/// observation both get the previous status.
fn previous_levels(
    prev_status: Option<Status>,
    prev: Option<&DiskObs>,
    l: &DiskLimits,
) -> (Option<Status>, Option<Status>) {
    let Some(prev) = prev.filter(|p| p.error.is_none()) else {
        return (prev_status, prev_status);
    };
    // A previous status a mount problem may explain says nothing of the space: like an
    // unknown, the previous measurement's own levels stand for it.
    let explained = prev_status == Some(Status::Unknown) || !mount_problems(prev).is_empty();
    let Some(pct) = prev.used_pct() else {
        return (prev_status, prev_status);
    };
    let space = level(pct, l.warning_pct, l.critical_pct, 0, None);
    let inodes = inode_pct(prev).map_or(Status::Ok, |p| {
        level(p, l.inode_warning_pct, l.inode_critical_pct, 0, None)
    });
    // The previous result measured nothing (a statvfs timeout on a hung mount): the last
    // measurement's own levels hold, not "unknown", which would hold nothing and make one
    // hiccup at 86 % then 84 % a warning and a fresh critical.
    if explained {
        return (Some(space), Some(inodes));
    }
    let credit = |own: Status, other: Status| match prev_status {
        Some(s) if own != s && other == s => Some(own),
        s => s,
    };
    (credit(space, inodes), credit(inodes, space))
}

/// Inode use, when the filesystem reports inodes (btrfs and some network filesystems do not).
fn inode_pct(obs: &DiskObs) -> Option<u8> {
    if obs.inodes_total > 0 {
        obs.inodes_used_pct()
    } else {
        None
    }
}

/// What makes the filesystem unfit for backups whatever its space, worst first.
fn mount_problems(obs: &DiskObs) -> Vec<(Status, String)> {
    let mut problems = Vec::new();
    if let Some(expected) = &obs.expected_mount_point {
        match &obs.mount_point {
            Some(actual) if actual != expected => problems.push((
                Status::Critical,
                format!(
                    "{expected} is not mounted: {} lies on {actual}, whose space is measured \
                     below and which backups written there would fill",
                    obs.path
                ),
            )),
            Some(_) => {}
            None => problems.push((
                Status::Warning,
                format!(
                    "cannot tell whether {expected} is mounted: the agent could not read \
                     its mount table"
                ),
            )),
        }
    }
    if obs.read_only && !obs.read_only_allowed {
        let mount = obs.mount_point.as_deref().unwrap_or(obs.path.as_str());
        problems.push((
            Status::Critical,
            format!(
                "{mount} is mounted read-only: nothing can be written there (the kernel \
                 remounts a filesystem read-only after I/O errors: see its log)"
            ),
        ));
    }
    problems.sort_by_key(|(s, _)| std::cmp::Reverse(s.rank()));
    problems
}

fn worst(a: Status, b: Status) -> Status {
    if a.rank() >= b.rank() { a } else { b }
}

/// `prev` is the check's previous status, `prev_obs` its previous observation (for the
/// hysteresis of each measure).
pub fn usage(
    obs: &DiskObs,
    prev: Option<Status>,
    prev_obs: Option<&DiskObs>,
    l: &DiskLimits,
) -> Verdict {
    if let Some(err) = &obs.error {
        // A path under a volume that is not mounted does not exist: that, not "unknown".
        let (status, mut summary) = match (&obs.expected_mount_point, &obs.mount_point) {
            (Some(expected), Some(actual)) if expected != actual => (
                Status::Critical,
                format!("{expected} is not mounted (its mount point lies on {actual}); "),
            ),
            _ => (Status::Unknown, String::new()),
        };
        summary.push_str(&format!("cannot measure {}: {err}", obs.path));
        return Verdict::new(status, summary).with_details(json!({
            "path": obs.path,
            "error": err,
            "mount_point": obs.mount_point,
            "expected_mount_point": obs.expected_mount_point,
        }));
    }
    let Some(pct) = obs.used_pct() else {
        return Verdict::new(
            Status::Unknown,
            format!("{} reports a filesystem of size 0", obs.path),
        );
    };
    let inode_pct = inode_pct(obs);
    let (prev_space, prev_inodes) = previous_levels(prev, prev_obs, l);
    let space = level(
        pct,
        l.warning_pct,
        l.critical_pct,
        l.hysteresis_pts,
        prev_space,
    );
    let inodes = inode_pct.map_or(Status::Ok, |p| {
        level(
            p,
            l.inode_warning_pct,
            l.inode_critical_pct,
            l.hysteresis_pts,
            prev_inodes,
        )
    });
    let use_status = worst(space, inodes);
    let problems = mount_problems(obs);
    let status = problems
        .iter()
        .fold(use_status, |status, (s, _)| worst(status, *s));
    let used = obs.used_bytes();
    let mount = obs.mount_point.as_deref().unwrap_or(obs.path.as_str());
    let mut summary: String = problems.iter().map(|(_, p)| format!("{p}; ")).collect();
    summary.push_str(&format!(
        "{mount} is {pct}% full ({} used, {} available of {})",
        human::bytes(used),
        human::bytes(obs.avail_bytes),
        human::bytes(obs.total_bytes)
    ));
    if use_status != Status::Ok {
        summary.push_str(&format!(
            "; warning above {}%, critical above {}%",
            l.warning_pct, l.critical_pct
        ));
    }
    if let Some(ip) = inode_pct
        && inodes.rank() >= space.rank()
        && inodes != Status::Ok
    {
        summary.push_str(&format!("; inodes {ip}% used"));
    }
    Verdict::new(status, summary)
        .with_details(json!({
            "path": obs.path,
            "mount_point": obs.mount_point,
            "expected_mount_point": obs.expected_mount_point,
            "fs_type": obs.fs_type,
            "read_only": obs.read_only,
            "read_only_allowed": obs.read_only_allowed,
            "used_pct": pct,
            "inode_used_pct": inode_pct,
            "used_bytes": used,
            "avail_bytes": obs.avail_bytes,
            "total_bytes": obs.total_bytes,
            "warning_pct": l.warning_pct,
            "critical_pct": l.critical_pct,
        }))
        .with_procedure(procedure::DISK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filesystem of 1000 blocks with 50 reserved for root, `used` blocks in use.
    fn fs(used: u64) -> DiskObs {
        DiskObs {
            path: "/backup".into(),
            total_bytes: 1000,
            free_bytes: 1000 - used,
            avail_bytes: 950u64.saturating_sub(used),
            mount_point: Some("/backup".into()),
            ..Default::default()
        }
    }

    fn pct_fs(pct_used: u64) -> DiskObs {
        // No reserved blocks: used% is exact.
        DiskObs {
            path: "/backup".into(),
            total_bytes: 100_000,
            free_bytes: 100_000 - pct_used * 1000,
            avail_bytes: 100_000 - pct_used * 1000,
            ..Default::default()
        }
    }

    use backwatch_proto::model::df_used_pct;

    #[test]
    fn used_pct_matches_df_rounding_up_and_excluding_reserved_blocks() {
        // df: used 700, avail 250 -> 700/950 = 73.68 -> 74
        assert_eq!(df_used_pct(1000, 300, 250), Some(74));
        // exact 75.0 stays 75, a hair above rounds up to 76
        assert_eq!(df_used_pct(100, 25, 25), Some(75));
        assert_eq!(df_used_pct(100_000, 24_999, 24_999), Some(76));
        assert_eq!(df_used_pct(0, 0, 0), None);
    }

    #[test]
    fn disk_at_75_0_percent_is_not_a_warning() {
        assert_eq!(
            usage(&pct_fs(75), None, None, &DiskLimits::default()).status,
            Status::Ok
        );
    }

    #[test]
    fn disk_at_76_percent_is_a_warning_with_procedure() {
        let v = usage(&pct_fs(76), None, None, &DiskLimits::default());
        assert_eq!(v.status, Status::Warning);
        assert!(v.summary.contains("76% full"), "{}", v.summary);
        assert_eq!(v.procedure, Some(procedure::DISK));
    }

    #[test]
    fn disk_at_86_percent_is_critical() {
        assert_eq!(
            usage(&pct_fs(86), None, None, &DiskLimits::default()).status,
            Status::Critical
        );
        assert_eq!(
            usage(&pct_fs(85), None, None, &DiskLimits::default()).status,
            Status::Warning
        );
    }

    #[test]
    fn reserved_blocks_count_like_df() {
        // 720 of 1000 used, 230 available to users: df says 76%, a naive used/total 72%.
        assert_eq!(
            usage(&fs(720), None, None, &DiskLimits::default()).status,
            Status::Warning
        );
    }

    #[test]
    fn a_result_that_measured_nothing_in_between_keeps_the_hold() {
        // Critical at 86 %, then a statvfs timeout (unknown), then 84 %: still critical.
        let l = DiskLimits::default();
        let before = pct_fs(86);
        let v = usage(&pct_fs(84), Some(Status::Unknown), Some(&before), &l);
        assert_eq!(v.status, Status::Critical, "{}", v.summary);
        assert_eq!(
            usage(&pct_fs(82), Some(Status::Unknown), Some(&before), &l).status,
            Status::Warning
        );
    }

    #[test]
    fn critical_holds_until_two_points_below_threshold() {
        let l = DiskLimits::default();
        assert_eq!(
            usage(&pct_fs(84), Some(Status::Critical), None, &l).status,
            Status::Critical
        );
        assert_eq!(
            usage(&pct_fs(83), Some(Status::Critical), None, &l).status,
            Status::Critical
        );
        assert_eq!(
            usage(&pct_fs(82), Some(Status::Critical), None, &l).status,
            Status::Warning
        );
    }

    #[test]
    fn warning_clears_only_below_73() {
        let l = DiskLimits::default();
        assert_eq!(
            usage(&pct_fs(74), Some(Status::Warning), None, &l).status,
            Status::Warning
        );
        assert_eq!(
            usage(&pct_fs(72), Some(Status::Warning), None, &l).status,
            Status::Ok
        );
    }

    #[test]
    fn inode_exhaustion_is_judged_too() {
        let mut obs = pct_fs(10);
        obs.inodes_total = 1000;
        obs.inodes_free = 100;
        obs.inodes_avail = 100;
        let v = usage(&obs, None, None, &DiskLimits::default());
        assert_eq!(v.status, Status::Critical);
        assert!(v.summary.contains("inodes 90% used"), "{}", v.summary);
    }

    #[test]
    fn a_read_only_filesystem_is_critical_whatever_its_space() {
        let mut obs = fs(100);
        obs.read_only = true;
        let v = usage(&obs, None, None, &DiskLimits::default());
        assert_eq!(v.status, Status::Critical, "{}", v.summary);
        assert!(
            v.summary
                .starts_with("/backup is mounted read-only: nothing can be written there"),
            "{}",
            v.summary
        );
        assert!(v.summary.contains("is 11% full"), "{}", v.summary);
        // The thresholds are not blamed: the space is fine.
        assert!(!v.summary.contains("critical above"), "{}", v.summary);
        assert_eq!(v.details["read_only"], true);
        // Mounted read-only on purpose (`allow_read_only`): just the space.
        obs.read_only_allowed = true;
        let v = usage(&obs, None, None, &DiskLimits::default());
        assert_eq!(v.status, Status::Ok, "{}", v.summary);
    }

    #[test]
    fn a_path_missing_under_a_volume_not_mounted_is_critical_not_unknown() {
        let obs = DiskObs {
            path: "/backup/pg".into(),
            error: Some("statvfs /backup/pg: No such file or directory".into()),
            mount_point: Some("/".into()),
            expected_mount_point: Some("/backup".into()),
            ..Default::default()
        };
        let v = usage(&obs, None, None, &DiskLimits::default());
        assert_eq!(v.status, Status::Critical, "{}", v.summary);
        assert!(
            v.summary
                .starts_with("/backup is not mounted (its mount point lies on /); ")
                && v.summary.ends_with(
                    "cannot measure /backup/pg: statvfs /backup/pg: No such file or directory"
                ),
            "{}",
            v.summary
        );
        // Mounted, but the path is missing: unknown, as before.
        let mounted = DiskObs {
            mount_point: None,
            ..obs
        };
        assert_eq!(
            usage(&mounted, None, None, &DiskLimits::default()).status,
            Status::Unknown
        );
    }

    #[test]
    fn a_volume_not_mounted_is_critical_and_named() {
        let mut obs = fs(100);
        obs.expected_mount_point = Some("/backup".into());
        assert_eq!(
            usage(&obs, None, None, &DiskLimits::default()).status,
            Status::Ok
        );
        obs.mount_point = Some("/".into());
        let v = usage(&obs, None, None, &DiskLimits::default());
        assert_eq!(v.status, Status::Critical, "{}", v.summary);
        assert!(
            v.summary
                .starts_with("/backup is not mounted: /backup lies on /, whose space"),
            "{}",
            v.summary
        );
        // Unknown mount table: cannot tell, a warning, not a guess either way.
        obs.mount_point = None;
        let v = usage(&obs, None, None, &DiskLimits::default());
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
        assert!(
            v.summary
                .starts_with("cannot tell whether /backup is mounted")
        );
    }

    #[test]
    fn a_critical_explained_by_the_mount_holds_no_space_level() {
        // Read-only at 84 % (critical for the mount), writable again at 84 %: a warning
        // for the space, not a critical held by hysteresis the space never earned.
        let l = DiskLimits::default();
        let mut prev = pct_fs(84);
        prev.read_only = true;
        let v = usage(&pct_fs(84), Some(Status::Critical), Some(&prev), &l);
        assert_eq!(v.status, Status::Warning, "{}", v.summary);
    }

    /// Space `pct`% used, inodes `inode_pct`% used.
    fn both(pct: u64, inode_pct: u64) -> DiskObs {
        let mut obs = pct_fs(pct);
        obs.inodes_total = 1000;
        obs.inodes_free = 1000 - inode_pct * 10;
        obs.inodes_avail = obs.inodes_free;
        obs
    }

    #[test]
    fn inodes_that_were_critical_do_not_hold_space_that_never_was() {
        let l = DiskLimits::default();
        // Inodes went critical while space sat at 84 %; inodes were cleaned up.
        let prev = both(84, 90);
        let now = both(84, 10);
        assert_eq!(
            usage(&now, Some(Status::Critical), Some(&prev), &l).status,
            Status::Warning
        );
        // And the other way round: space was critical, inodes at 84 % never were.
        let prev = both(90, 84);
        let now = both(10, 84);
        assert_eq!(
            usage(&now, Some(Status::Critical), Some(&prev), &l).status,
            Status::Warning
        );
    }

    #[test]
    fn a_measure_held_in_its_band_stays_raised() {
        let l = DiskLimits::default();
        // After a critical result: space now at `pct`, before at `prev_pct`, inodes at 10 %.
        let after_critical = |pct, prev_pct| {
            usage(
                &both(pct, 10),
                Some(Status::Critical),
                Some(&both(prev_pct, 10)),
                &l,
            )
            .status
        };
        // Space was critical at 86 %, then held at 84 %: the previous 84 % is explained by
        // no raw level, so the hold goes on at 84 % and ends at 82 %.
        assert_eq!(after_critical(84, 86), Status::Critical);
        assert_eq!(after_critical(84, 84), Status::Critical);
        assert_eq!(after_critical(82, 84), Status::Warning);
    }

    #[test]
    fn statvfs_error_is_unknown() {
        let obs = DiskObs {
            path: "/backup".into(),
            error: Some("statvfs /backup: No such file or directory".into()),
            ..Default::default()
        };
        assert_eq!(
            usage(&obs, None, None, &DiskLimits::default()).status,
            Status::Unknown
        );
    }
}
