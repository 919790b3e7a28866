//! Reconnect backoff shared by the agent and the fleet simulator: exponential with full
//! jitter (a uniformly random wait between 0 and the current ceiling, the ceiling doubling to
//! a maximum). After a collector restart the fleet's reconnects spread over the whole window
//! instead of arriving in the same second.
//!
//! Two maximums: an agent that never reached the collector (a fleet booting, a wrong URL)
//! backs off to 60 s; one whose session had worked caps at 10 s, so it is back within seconds
//! of its collector's return (a 60 s ceiling meant up to a minute of silence after every
//! outage). Full jitter still spreads such a fleet over those 10 s.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    /// The ceiling's limit now: `first_max`, or `reconnect_max` once a session worked.
    max: Duration,
    reconnect_max: Duration,
    ceiling: Duration,
    /// Never wait less than this, so a tight failure loop cannot spin.
    floor: Duration,
}

impl Backoff {
    /// `initial` doubling to `first_max` until a session worked, to `reconnect_max` after.
    pub fn new(initial: Duration, first_max: Duration, reconnect_max: Duration) -> Self {
        Backoff {
            initial,
            max: first_max,
            reconnect_max,
            ceiling: initial,
            floor: Duration::from_millis(200),
        }
    }

    /// The agent's policy: 1 s doubling to 60 s, or to 10 s once connected.
    pub fn agent() -> Self {
        Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_secs(10),
        )
    }

    /// The next wait, given a random number in [0, 1).
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let wait = self.ceiling.mul_f64(unit.clamp(0.0, 1.0)).max(self.floor);
        self.ceiling = (self.ceiling * 2).min(self.max);
        wait
    }

    /// After a session that worked: start again from the initial ceiling, and from now on
    /// never wait longer than the reconnect maximum.
    pub fn session_worked(&mut self) {
        self.ceiling = self.initial;
        self.max = self.reconnect_max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_first_connect_maximum() {
        let mut b = Backoff::agent();
        let waits: Vec<u64> = (0..8).map(|_| b.next_with(0.999_999).as_secs()).collect();
        assert_eq!(waits, [0, 1, 3, 7, 15, 31, 59, 59]);
    }

    #[test]
    fn after_a_session_worked_waits_restart_small_and_stay_within_ten_seconds() {
        let mut b = Backoff::agent();
        for _ in 0..8 {
            b.next_with(0.5);
        }
        b.session_worked();
        let waits: Vec<u64> = (0..8).map(|_| b.next_with(0.999_999).as_secs()).collect();
        assert_eq!(waits, [0, 1, 3, 7, 9, 9, 9, 9]);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling_with_a_floor() {
        let mut b = Backoff::agent();
        assert_eq!(b.next_with(0.0), Duration::from_millis(200));
        let mut b = Backoff::agent();
        b.next_with(0.5);
        assert_eq!(b.next_with(0.5), Duration::from_secs(1));
    }
}
