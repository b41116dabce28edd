//! Rate and remaining-time estimates for progress events.

use std::time::{Duration, Instant};

/// Items per second and seconds left, from `done` of `total` after `elapsed`. None until there is
/// something to extrapolate from (nothing done, or under 50 ms of history).
pub fn estimate(done: u64, total: Option<u64>, elapsed: Duration) -> (Option<f64>, Option<f64>) {
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs < 0.05 {
        return (None, None);
    }
    let rate = done as f64 / secs;
    let eta = total.map(|t| t.saturating_sub(done) as f64 / rate);
    (Some(rate), eta)
}

/// Lets through at most one report per interval, plus the last one.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle passing one report per `interval`.
    pub fn new(interval: Duration) -> Self {
        Throttle { interval, last: None }
    }

    /// Whether to send the report made at `now`; `last` forces it.
    pub fn ready(&mut self, now: Instant, last: bool) -> bool {
        let due = self.last.is_none_or(|t| now.duration_since(t) >= self.interval);
        if due || last {
            self.last = Some(now);
        }
        due || last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_rate_and_remaining_time() {
        assert_eq!(estimate(0, Some(10), Duration::from_secs(3)), (None, None));
        assert_eq!(estimate(5, Some(10), Duration::from_millis(10)), (None, None));
        let (rate, eta) = estimate(50, Some(200), Duration::from_secs(2));
        assert_eq!(rate, Some(25.0));
        assert_eq!(eta, Some(6.0));
        let (rate, eta) = estimate(50, None, Duration::from_secs(2));
        assert_eq!((rate, eta), (Some(25.0), None));
        assert_eq!(estimate(12, Some(10), Duration::from_secs(1)).1, Some(0.0));
    }

    #[test]
    fn throttle_passes_first_spaced_and_last() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_millis(100));
        assert!(t.ready(t0, false));
        assert!(!t.ready(t0 + Duration::from_millis(50), false));
        assert!(t.ready(t0 + Duration::from_millis(60), true));
        assert!(!t.ready(t0 + Duration::from_millis(100), false));
        assert!(t.ready(t0 + Duration::from_millis(160), false));
    }
}
