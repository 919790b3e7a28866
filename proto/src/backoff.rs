//! Reconnect backoff shared by the agent and the fleet simulator: exponential with full
//! jitter (a uniformly random wait between 0 and the current ceiling, the ceiling doubling to
//! a maximum). After a collector restart the fleet's reconnects spread over the whole window
//! instead of arriving in the same second.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    ceiling: Duration,
    /// Never wait less than this, so a tight failure loop cannot spin.
    floor: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            ceiling: initial,
            floor: Duration::from_millis(200),
        }
    }

    /// The agent's policy: 1 s doubling to 60 s.
    pub fn agent() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// The next wait, given a random number in [0, 1).
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let wait = self.ceiling.mul_f64(unit.clamp(0.0, 1.0)).max(self.floor);
        self.ceiling = (self.ceiling * 2).min(self.max);
        wait
    }

    /// After a connection that worked: start again from the initial ceiling.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_maximum_and_resets() {
        let mut b = Backoff::agent();
        let waits: Vec<u64> = (0..8).map(|_| b.next_with(0.999_999).as_secs()).collect();
        assert_eq!(waits, [0, 1, 3, 7, 15, 31, 59, 59]);
        b.reset();
        assert_eq!(b.next_with(0.999_999).as_secs(), 0);
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
