//! What one agent identity may do, so a broken or hostile agent (or a stolen key) cannot crowd
//! out the rest of the fleet:
//! - streams opened per minute (`grpc.max_streams_per_minute`): a token bucket per identity,
//!   refilled evenly; a reconnect loop gets "retry in N s" instead of a stream and a store
//!   round trip every time;
//! - checks per host (`grpc.max_checks_per_host`): results of a check the host does not have
//!   yet are refused once it has that many, each with the reason, counted in
//!   `backwatch_agent_refusals_total`, and the pseudo-check [`CHECKS_CHECK`] turns warning
//!   once (one alert) until the host is back under the limit at a later hello;
//! - agent-supplied text is clipped with [`clip`] before it reaches a log line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pseudo-check of a host over its check limit.
pub const CHECKS_CHECK: &str = "agent.checks";

/// Longest agent-supplied text written to a log line (characters).
const LOG_TEXT_MAX: usize = 200;

/// At most this many identities tracked before full buckets are forgotten.
const MAX_TRACKED: usize = 100_000;

/// `s` cut to [`LOG_TEXT_MAX`] characters (on a character boundary), marked when cut.
pub fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(LOG_TEXT_MAX) {
        None => s.into(),
        Some((end, _)) => format!("{}…", &s[..end]).into(),
    }
}

/// Checks per host on this collector, shared by all of the host's streams: counted per stream,
/// several concurrent streams of one identity could each admit new checks up to the limit
/// (one stream's count does not see what another stored meanwhile).
#[derive(Default)]
pub struct HostChecks(Mutex<HashMap<String, u32>>);

impl HostChecks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host's count, once known.
    pub fn get(&self, host: &str) -> Option<u32> {
        self.lock().get(host).copied()
    }

    /// The count as the store has it (at a hello, after retiring checks).
    pub fn set(&self, host: &str, n: u32) {
        self.lock().insert(host.to_string(), n);
    }

    /// Count one more check if it fits under `max`; `stored` is the store's count, used when
    /// this collector has none yet.
    pub fn admit(&self, host: &str, stored: u32, max: u32) -> bool {
        let mut map = self.lock();
        let n = map.entry(host.to_string()).or_insert(stored);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }
}

/// Token buckets of new streams, per identity.
#[derive(Default)]
pub struct StreamRate(Mutex<HashMap<String, Bucket>>);

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl StreamRate {
    /// Take one stream for `host` at `now`, or say how long until one is allowed.
    pub fn take(&self, host: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let cap = f64::from(per_minute.max(1));
        let per_sec = cap / 60.0;
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(host) {
            // Buckets that refilled completely hold no information: forget them.
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < cap
            });
        }
        let b = map.entry(host.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        b.tokens =
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn streams_of_one_host_share_its_check_count() {
        let h = HostChecks::default();
        assert_eq!(h.get("db1"), None);
        // Two streams, each having read 1 from the store: together they reach 3, not 3 each.
        assert!(h.admit("db1", 1, 3));
        assert!(h.admit("db1", 1, 3));
        assert!(!h.admit("db1", 1, 3));
        assert_eq!(h.get("db1"), Some(3));
        h.set("db1", 1);
        assert!(
            h.admit("db1", 9, 3),
            "the collector's count wins over a stale read"
        );
        assert!(h.admit("db2", 0, 1) && !h.admit("db2", 0, 1));
    }

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let r = StreamRate::default();
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(r.take("db1", 6, t0), Ok(()));
        }
        let wait = r
            .take("db1", 6, t0)
            .expect_err("seventh in the same instant");
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        // Other identities are not affected.
        assert_eq!(r.take("db2", 6, t0), Ok(()));
        // One per 10 s comes back.
        assert_eq!(r.take("db1", 6, t0 + Duration::from_secs(10)), Ok(()));
        assert!(r.take("db1", 6, t0 + Duration::from_secs(11)).is_err());
    }

    #[test]
    fn agent_text_is_clipped_for_logs() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(500);
        let c = clip(&long);
        assert_eq!(c.chars().count(), LOG_TEXT_MAX + 1);
        assert!(c.ends_with('…'));
    }
}
