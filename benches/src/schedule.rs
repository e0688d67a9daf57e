//! Open-loop send schedules: when the i-th request is meant to leave, for a steady rate with an optional burst.

use std::time::Duration;

/// A stretch of time at one request rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// How long the phase lasts.
    pub duration: Duration,
    /// Requests per second during it.
    pub rate: f64,
}

/// Consecutive phases. Request `i` is meant to leave at [`Schedule::offset`]`(i)` after the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The phases in order.
    pub phases: Vec<Phase>,
}

impl Schedule {
    /// `rate` per second for `duration`.
    pub fn steady(rate: f64, duration: Duration) -> Schedule {
        Schedule { phases: vec![Phase { duration, rate }] }
    }

    /// `rate` per second for `duration`, except `burst_rate` from `burst_at` for `burst_for`.
    pub fn with_burst(
        rate: f64,
        duration: Duration,
        burst_rate: f64,
        burst_at: Duration,
        burst_for: Duration,
    ) -> Schedule {
        let after = duration.saturating_sub(burst_at + burst_for);
        let phases = [
            Phase { duration: burst_at, rate },
            Phase { duration: burst_for, rate: burst_rate },
            Phase { duration: after, rate },
        ];
        Schedule { phases: phases.into_iter().filter(|phase| !phase.duration.is_zero()).collect() }
    }

    /// The whole schedule's length.
    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|phase| phase.duration).sum()
    }

    /// Requests the schedule sends in all.
    pub fn total_requests(&self) -> u64 {
        self.phases.iter().map(|phase| (phase.duration.as_secs_f64() * phase.rate).floor() as u64).sum()
    }

    /// When request `index` is meant to leave, after the start; `None` past the end.
    pub fn offset(&self, index: u64) -> Option<Duration> {
        let mut first_index = 0u64;
        let mut start = Duration::ZERO;
        for phase in &self.phases {
            let count = (phase.duration.as_secs_f64() * phase.rate).floor() as u64;
            if index < first_index + count {
                return Some(start + Duration::from_secs_f64((index - first_index) as f64 / phase.rate));
            }
            first_index += count;
            start += phase.duration;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spread_evenly_within_each_phase() {
        let schedule =
            Schedule::with_burst(100.0, Duration::from_secs(3), 1000.0, Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(schedule.total_requests(), 100 + 1000 + 100);
        assert_eq!(schedule.offset(0), Some(Duration::ZERO));
        assert_eq!(schedule.offset(50), Some(Duration::from_millis(500)));
        assert_eq!(schedule.offset(100), Some(Duration::from_secs(1)));
        assert_eq!(schedule.offset(600), Some(Duration::from_millis(1500)));
        assert_eq!(schedule.offset(1100), Some(Duration::from_secs(2)));
        assert_eq!(schedule.offset(1200), None);
        assert_eq!(schedule.duration(), Duration::from_secs(3));
    }
}
