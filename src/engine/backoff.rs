//! Health polling waits: start at the configured interval, grow by half each time up to a cap,
//! and never sleep past the deadline.

use std::time::{Duration, SystemTime};

/// The longest wait between two polls, unless the configured interval is longer still.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(interval: Duration) -> Backoff {
        Backoff {
            next: interval,
            cap: interval.max(MAX_POLL_INTERVAL),
        }
    }

    /// The next wait, cut short so the poll after it happens at `deadline` at the latest.
    pub fn next_wait(&mut self, now: SystemTime, deadline: SystemTime) -> Duration {
        let wait = self.next;
        self.next = (self.next * 3 / 2).min(self.cap);
        let left = deadline.duration_since(now).unwrap_or_default();
        wait.min(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_cap_and_respects_deadline() {
        let now = SystemTime::UNIX_EPOCH;
        let far = now + Duration::from_secs(3600);
        let mut b = Backoff::new(Duration::from_secs(2));
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait(now, far).as_secs()).collect();
        assert_eq!(waits, [2, 3, 4, 6, 10, 15, 22, 30]);
        assert_eq!(
            b.next_wait(now, now + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(b.next_wait(far, now), Duration::ZERO);
    }
}
