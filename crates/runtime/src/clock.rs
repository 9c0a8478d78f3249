//! The runtime's one clock: wall time in milliseconds, advanced by tokio's timer.
//!
//! Alarms, hibernation, effect retries and timestamps all read this clock, so a test that
//! pauses tokio's time (`tokio::time::pause`, `advance`) moves all of them together, with no
//! real sleep. It reads the system clock once, at start, and counts from there with tokio's
//! monotonic instant: a step of the system clock (NTP, a manual change) does not fire or delay
//! alarms; a restart picks the system clock up again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start_ms: i64,
    start: Instant,
}

impl Clock {
    /// A clock reading the system time now. Must be called inside a tokio runtime when time is
    /// paused, so that it counts paused time.
    pub fn new() -> Self {
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Clock {
            start_ms,
            start: Instant::now(),
        }
    }

    /// A clock that reads `ms` now, whatever the system time: a machine whose clock was stepped
    /// between two runs, in tests.
    pub fn starting_at(ms: i64) -> Self {
        Clock {
            start_ms: ms,
            start: Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.start_ms + self.start.elapsed().as_millis() as i64
    }

    /// The tokio instant at which this clock reads `ms` (now, if that has passed).
    pub fn instant_at(&self, ms: i64) -> Instant {
        let now = Instant::now();
        let ahead = ms - self.now_ms();
        if ahead <= 0 {
            now
        } else {
            now + Duration::from_millis(ahead as u64)
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused time moves the clock exactly, with no real wait.
    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let clock = Clock::new();
        let t0 = clock.now_ms();
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms() - t0, 90_000);
        let at = clock.instant_at(t0 + 100_000);
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
    }
}
