//! The supervisor's timing rules as pure functions, so they are tested without a sandbox:
//! crash-loop back-off and the idle rule. See SPEC.md, "Supervisor lifecycle".

use std::time::{Duration, Instant};

/// Crash-loop back-off: after the k-th consecutive crash the next start waits 0 for k = 1 and
/// `base × 2^(k−2)` for k ≥ 2, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// An app run at least this long resets the crash count.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { base: Duration::from_secs(1), max: Duration::from_secs(300), reset_after: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// How long to wait before the next start after `crashes` consecutive crashes.
    pub fn delay(&self, crashes: u32) -> Duration {
        match crashes {
            0 | 1 => Duration::ZERO,
            k => self.base.saturating_mul(1u32.checked_shl(k - 2).unwrap_or(u32::MAX)).min(self.max),
        }
    }

    /// The crash count after an unrequested exit of a run that lasted `ran`.
    pub fn after_crash(&self, crashes: u32, ran: Duration) -> u32 {
        if ran >= self.reset_after {
            1
        } else {
            crashes.saturating_add(1)
        }
    }
}

/// What the idle rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    pub last: Instant,
    /// Inbound calls still running.
    pub in_flight: usize,
    pub wake_locks: usize,
}

/// True when the grain has been idle for `idle`: no call in flight, no wake lock held, and no
/// activity since `now - idle`.
pub fn idle_expired(a: &Activity, idle: Duration, now: Instant) -> bool {
    a.in_flight == 0 && a.wake_locks == 0 && now.saturating_duration_since(a.last) >= idle
}

/// How often the idle rule is checked: a quarter of the idle time, within 50 ms..=15 s.
pub fn idle_tick(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule_doubles_from_the_second_crash_and_is_capped() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..14).map(|k| b.delay(k).as_secs()).collect();
        assert_eq!(secs, [0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.delay(u32::MAX), b.max, "no overflow on a very long loop");
    }

    #[test]
    fn a_long_run_resets_the_crash_count() {
        let b = Backoff::default();
        assert_eq!(b.after_crash(0, Duration::from_secs(1)), 1);
        assert_eq!(b.after_crash(5, Duration::from_secs(59)), 6);
        assert_eq!(b.after_crash(5, Duration::from_secs(60)), 1);
    }

    #[test]
    fn idle_needs_quiet_time_no_calls_and_no_wake_lock() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(120);
        let quiet = Activity { last: t0, in_flight: 0, wake_locks: 0 };
        assert!(!idle_expired(&quiet, idle, t0 + Duration::from_secs(119)));
        assert!(idle_expired(&quiet, idle, t0 + idle));
        assert!(!idle_expired(&Activity { in_flight: 1, ..quiet }, idle, t0 + idle * 10));
        assert!(!idle_expired(&Activity { wake_locks: 1, ..quiet }, idle, t0 + idle * 10));
        assert_eq!(idle_tick(idle), Duration::from_secs(15));
        assert_eq!(idle_tick(Duration::from_millis(100)), Duration::from_millis(50));
        assert_eq!(idle_tick(Duration::from_secs(8)), Duration::from_secs(2));
    }
}
