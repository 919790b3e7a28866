//! Growth and projection for the trends page: a Theil–Sen line fit.
//!
//! Why Theil–Sen rather than least squares: the slope is the median of the slopes between
//! every pair of samples, so a cleanup (a sudden drop) or a one-day spike among the samples
//! moves it little; up to ~29 % of the points can be outliers before the slope breaks down.
//! Its cost is O(n²) pairs, which is nothing for one sample per day over a year.
//!
//! Invariants: pure functions, no clock; non-finite inputs are ignored; `None` rather than a
//! guess whenever the samples cannot support a line.

/// A line `y = slope · x + intercept`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub slope: f64,
    pub intercept: f64,
}

/// Median of `v` (sorted in place); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Theil–Sen fit of `(x, y)` points: the slope is the median of the pairwise slopes between
/// points with different `x`, the intercept the median of `y − slope · x`. `None` with fewer
/// than two distinct `x`.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<Fit> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let mut slopes = Vec::with_capacity(pts.len() * pts.len().saturating_sub(1) / 2);
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            let dx = b.0 - a.0;
            if dx != 0.0 {
                slopes.push((b.1 - a.1) / dx);
            }
        }
    }
    let slope = median(&mut slopes)?;
    let mut residuals: Vec<f64> = pts.iter().map(|(x, y)| y - slope * x).collect();
    let intercept = median(&mut residuals)?;
    Some(Fit { slope, intercept })
}

/// Why there is or is not a projected full date.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Projection {
    /// Full in this many days from the latest sample.
    FullIn(f64),
    /// Used space is already at (or above) capacity.
    Full,
    /// Flat or shrinking over the window.
    NotGrowing,
    /// Growing, but slower than would fill it within [`HORIZON_DAYS`].
    BeyondHorizon,
    /// Fewer than [`MIN_SAMPLES`] samples, or all at one time.
    TooFewSamples,
}

/// Fewer samples than this make no projection: two points are a line through noise.
pub const MIN_SAMPLES: usize = 3;
/// Projections further out than ten years are noise, not plans.
pub const HORIZON_DAYS: f64 = 3650.0;

/// When `used` reaches `capacity`, from samples `(day, used)` (`day` in days, any origin):
/// the Theil–Sen slope, anchored at the latest sample's measured use. Anchoring at the
/// measurement rather than at the fitted line is deliberate: the latest use is known exactly
/// (a cleanup yesterday really freed the space), only the growth rate needs the fit.
pub fn project_full(samples: &[(f64, f64)], capacity: f64) -> (Option<Fit>, Projection) {
    let fit = if samples.len() >= MIN_SAMPLES {
        theil_sen(samples)
    } else {
        None
    };
    let Some(fit) = fit else {
        return (None, Projection::TooFewSamples);
    };
    let Some(&(_, used_now)) = samples.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
        return (None, Projection::TooFewSamples);
    };
    let projection = if used_now >= capacity {
        Projection::Full
    } else if fit.slope <= 0.0 {
        Projection::NotGrowing
    } else {
        let days = (capacity - used_now) / fit.slope;
        if days > HORIZON_DAYS {
            Projection::BeyondHorizon
        } else {
            Projection::FullIn(days)
        }
    };
    (Some(fit), projection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn an_exact_line_is_recovered() {
        let pts: Vec<_> = (0..10)
            .map(|d| (f64::from(d), 5.0 + 2.0 * f64::from(d)))
            .collect();
        let fit = theil_sen(&pts).unwrap();
        assert!(
            close(fit.slope, 2.0) && close(fit.intercept, 5.0),
            "{fit:?}"
        );
    }

    #[test]
    fn outliers_do_not_move_the_slope() {
        // Ten days growing by 1 per day, with one cleanup and one spike.
        let mut pts: Vec<_> = (0..10).map(|d| (f64::from(d), f64::from(d))).collect();
        pts[4].1 = -50.0;
        pts[7].1 = 400.0;
        let fit = theil_sen(&pts).unwrap();
        assert!(close(fit.slope, 1.0), "{fit:?}");
    }

    #[test]
    fn no_line_without_two_distinct_times() {
        assert_eq!(theil_sen(&[]), None);
        assert_eq!(theil_sen(&[(1.0, 5.0)]), None);
        assert_eq!(theil_sen(&[(1.0, 5.0), (1.0, 7.0)]), None);
        assert_eq!(theil_sen(&[(f64::NAN, 1.0), (2.0, 2.0)]), None);
    }

    #[test]
    fn even_numbers_of_slopes_take_the_middle_two() {
        // Pairs: (0,1) slope 1, (0,2) slope 1.5, (1,2) slope 2 -> median 1.5.
        let fit = theil_sen(&[(0.0, 0.0), (1.0, 1.0), (2.0, 3.0)]).unwrap();
        assert!(close(fit.slope, 1.5), "{fit:?}");
        let mut v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut v), Some(2.5));
    }

    #[test]
    fn full_date_counts_from_the_latest_measurement() {
        // 10 GB per day; latest use 600 of 1000 -> 40 days.
        let pts: Vec<_> = (0..7)
            .map(|d| (f64::from(d), 540.0 + 10.0 * f64::from(d)))
            .collect();
        let (fit, p) = project_full(&pts, 1000.0);
        assert!(close(fit.unwrap().slope, 10.0));
        let Projection::FullIn(days) = p else {
            panic!("{p:?}")
        };
        assert!(close(days, 40.0), "{days}");
    }

    #[test]
    fn projection_says_why_there_is_no_date() {
        let flat = [(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)];
        assert_eq!(project_full(&flat, 10.0).1, Projection::NotGrowing);
        assert_eq!(
            project_full(&[(0.0, 1.0), (1.0, 2.0)], 10.0).1,
            Projection::TooFewSamples
        );
        let slow = [(0.0, 1.0), (1.0, 1.001), (2.0, 1.002)];
        assert_eq!(project_full(&slow, 100.0).1, Projection::BeyondHorizon);
        let over = [(0.0, 9.0), (1.0, 10.0), (2.0, 11.0)];
        assert_eq!(project_full(&over, 10.0).1, Projection::Full);
    }
}
