//! Small statistics for the reports: median, nearest-rank quantiles, robust growth.
//!
//! Invariants: pure; `None` rather than a number whenever the input cannot support one.
//! Quantiles use the nearest-rank method (the value at rank ⌈q·n⌉ of the sorted sample), so a
//! reported p95 is always a value that was really measured; the median interpolates between
//! the middle two, as `api::fit` does.

use crate::api::fit::{Projection, project_full, theil_sen};
use chrono::{DateTime, TimeDelta, Utc};

/// Days per month for "storage needed in N months".
pub const DAYS_PER_MONTH: f64 = 30.436_875;

/// Median of the finite values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    crate::api::fit::median(&mut v)
}

/// Nearest-rank quantile, `q` in (0, 1].
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Theil–Sen slope of `(day, value)` points (per day), with at least three points.
pub fn slope_per_day(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < crate::api::fit::MIN_SAMPLES {
        return None;
    }
    theil_sen(points).map(|f| f.slope)
}

/// When a filesystem used `used_now` of `capacity` (at `last`) crosses `pct` percent,
/// from daily samples `(day, used)`: the date, and a word on why there is none.
pub fn crossing(
    points: &[(f64, f64)],
    capacity: f64,
    pct: f64,
    last: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, String) {
    let (_, p) = project_full(points, capacity * pct / 100.0);
    match p {
        Projection::FullIn(days) => {
            let at = TimeDelta::try_milliseconds((days * 86_400_000.0).round() as i64)
                .and_then(|d| last.checked_add_signed(d));
            (at, format!("in {days:.1} days"))
        }
        Projection::Full => (None, format!("already above {pct} %")),
        Projection::NotGrowing => (None, "not growing".into()),
        Projection::BeyondHorizon => (None, "beyond 10 years".into()),
        Projection::TooFewSamples => (None, "too few samples".into()),
    }
}

/// Used bytes in `months` months at `slope` bytes per day, never below zero.
pub fn needed(used_now: f64, slope: Option<f64>, months: f64) -> Option<f64> {
    slope.map(|s| (used_now + s * months * DAYS_PER_MONTH).max(0.0))
}

/// Round to whole units: JSON, HTML and CSV show the same number.
pub fn round(v: f64) -> f64 {
    v.round()
}

/// Round to `digits` decimals.
/// Percentage used as `df` and the disk check show it: ⌈100 · used / (used + available)⌉,
/// with `capacity` = used + available. One number for the same filesystem everywhere.
pub fn df_pct(used: i64, capacity: i64) -> Option<f64> {
    let used = u64::try_from(used).ok()?;
    let avail = u64::try_from(capacity).ok()?.checked_sub(used)?;
    backwatch_proto::model::df_used_pct(used, 0, avail).map(f64::from)
}

pub fn round_to(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// The order of recovery lines in both reports: the largest data at risk first, then the
/// narrowest recoverable window, then by host and check. Each side is (data at risk, window,
/// host, check).
pub fn recovery_order(
    a: (Option<i64>, Option<i64>, &str, &str),
    b: (Option<i64>, Option<i64>, &str, &str),
) -> std::cmp::Ordering {
    b.0.cmp(&a.0)
        .then(a.1.is_none().cmp(&b.1.is_none()))
        .then(a.1.cmp(&b.1))
        .then(a.2.cmp(b.2))
        .then(a.3.cmp(b.3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_use_is_shown_as_df_rounds_it() {
        assert_eq!(df_pct(532, 1000), Some(54.0));
        assert_eq!(df_pct(750, 1000), Some(75.0));
        assert_eq!(df_pct(0, 1000), Some(0.0));
        assert_eq!(df_pct(10, 0), None);
        assert_eq!(df_pct(-1, 1000), None);
    }

    #[test]
    fn quantiles_are_measured_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 0.9), Some(90.0));
        assert_eq!(quantile(&[7.0], 0.95), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }

    #[test]
    fn crossing_counts_from_the_last_sample() {
        // 10 units a day, 600 of 1000 used: 75 % (750) in 15 days, 85 % in 25.
        let pts: Vec<_> = (0..30)
            .map(|d| (f64::from(d), 310.0 + 10.0 * f64::from(d)))
            .collect();
        let last = DateTime::<Utc>::from_timestamp(1_772_323_200, 0).unwrap();
        let (at75, why) = crossing(&pts, 1000.0, 75.0, last);
        assert_eq!(at75, Some(last + TimeDelta::days(15)), "{why}");
        let (at85, _) = crossing(&pts, 1000.0, 85.0, last);
        assert_eq!(at85, Some(last + TimeDelta::days(25)));
        let (none, why) = crossing(&pts, 500.0, 75.0, last);
        assert_eq!((none, why.as_str()), (None, "already above 75 %"));
        assert_eq!(needed(600.0, Some(10.0), 3.0).map(round), Some(1513.0));
        assert_eq!(slope_per_day(&pts[..2]), None);
    }
}
