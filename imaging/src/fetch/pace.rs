//! The pace one download attempt must keep: a deadline for the whole attempt, and after a short
//! grace period a minimum average transfer rate. A server that trickles bytes, or accepts the
//! connection and never answers, is given up after the grace period instead of holding a worker
//! until the attempt's timeout.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ImagingError;

/// The minimum transfer rate, and the time before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MinRate {
    /// Bytes per second the body must average, counted from the start of the attempt; 0 = none.
    pub(super) bytes_per_second: u64,
    /// Time before the rate counts; the response headers must arrive within it.
    pub(super) grace: Duration,
}

/// What ends an attempt that runs out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// The per-attempt timeout (`total_timeout`).
    Timeout(Duration),
    /// What is left of the image's fetch budget, when that is shorter.
    Budget(Duration),
}

impl Limit {
    /// The shorter of the attempt's timeout and the time left of the budget.
    pub(super) fn shorter(timeout: Duration, time_left: Duration) -> Limit {
        if time_left < timeout {
            Limit::Budget(time_left)
        } else {
            Limit::Timeout(timeout)
        }
    }

    fn after(self) -> Duration {
        match self {
            Limit::Timeout(after) | Limit::Budget(after) => after,
        }
    }

    fn error(self) -> ImagingError {
        match self {
            Limit::Timeout(after) => ImagingError::Timeout {
                phase: "total",
                after,
            },
            Limit::Budget(after) => ImagingError::Timeout {
                phase: "fetch budget",
                after,
            },
        }
    }
}

/// The clock of one attempt: counts the bytes received and stops the attempt when it falls
/// behind. Time spent [`while_paused`](TransferClock::while_paused) (waiting for memory) is not
/// counted.
#[derive(Debug)]
pub(super) struct TransferClock {
    started: Instant,
    paused: Duration,
    answered: bool,
    received: u64,
    limit: Limit,
    min_rate: MinRate,
}

impl TransferClock {
    /// Starts the clock now.
    pub(super) fn start(limit: Limit, min_rate: MinRate) -> TransferClock {
        TransferClock {
            started: Instant::now(),
            paused: Duration::ZERO,
            answered: false,
            received: 0,
            limit,
            min_rate,
        }
    }

    /// Notes that the response headers arrived.
    pub(super) fn answered(&mut self) {
        self.answered = true;
    }

    /// Counts `bytes` more received.
    pub(super) fn received(&mut self, bytes: usize) {
        self.received += bytes as u64;
    }

    /// The attempt's running time, pauses excluded.
    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.paused)
    }

    /// Awaits `step` (the headers, or the next chunk of the body) until the attempt falls
    /// behind: then the error says which limit it broke.
    pub(super) async fn keep_pace<F: Future>(&self, step: F) -> Result<F::Output, ImagingError> {
        let deadline = self.started + self.paused + self.allowed();
        tokio::time::timeout_at(deadline, step)
            .await
            .map_err(|_| self.fell_behind())
    }

    /// Awaits `wait` with the clock stopped.
    pub(super) async fn while_paused<F: Future>(&mut self, wait: F) -> F::Output {
        let since = Instant::now();
        let output = wait.await;
        self.paused += since.elapsed();
        output
    }

    /// How long the attempt may run with what it has received so far: until its average rate
    /// would drop below the minimum (never before the grace period ends), at most its limit.
    fn allowed(&self) -> Duration {
        self.by_rate().map_or(self.limit.after(), |by_rate| {
            by_rate.min(self.limit.after())
        })
    }

    fn by_rate(&self) -> Option<Duration> {
        let MinRate {
            bytes_per_second,
            grace,
        } = self.min_rate;
        (bytes_per_second > 0).then(|| {
            grace.max(Duration::from_secs_f64(
                self.received as f64 / bytes_per_second as f64,
            ))
        })
    }

    fn fell_behind(&self) -> ImagingError {
        match self.by_rate() {
            Some(by_rate) if by_rate < self.limit.after() && !self.answered => {
                ImagingError::NoAnswer {
                    after: self.min_rate.grace,
                }
            }
            Some(by_rate) if by_rate < self.limit.after() => ImagingError::TooSlow {
                received: self.received,
                elapsed: self.elapsed(),
                min_rate: self.min_rate.bytes_per_second,
            },
            _ => self.limit.error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: MinRate = MinRate {
        bytes_per_second: 1_000,
        grace: Duration::from_secs(2),
    };

    fn clock(limit: Limit, received: u64) -> TransferClock {
        let mut clock = TransferClock::start(limit, RATE);
        clock.received = received;
        clock
    }

    #[test]
    fn until_the_grace_period_ends_no_rate_is_required() {
        let clock = clock(Limit::Timeout(Duration::from_secs(20)), 0);
        assert_eq!(clock.allowed(), Duration::from_secs(2));
        let clock = self::clock(Limit::Timeout(Duration::from_secs(20)), 1_500);
        assert_eq!(clock.allowed(), Duration::from_secs(2));
    }

    #[test]
    fn headers_must_arrive_within_the_grace_period() {
        let clock = clock(Limit::Timeout(Duration::from_secs(20)), 0);
        assert!(matches!(
            clock.fell_behind(),
            ImagingError::NoAnswer { after } if after == RATE.grace
        ));
    }

    #[test]
    fn each_byte_buys_time_at_the_minimum_rate() {
        let mut clock = clock(Limit::Timeout(Duration::from_secs(20)), 7_500);
        clock.answered();
        assert_eq!(clock.allowed(), Duration::from_millis(7_500));
        assert!(matches!(
            clock.fell_behind(),
            ImagingError::TooSlow {
                received: 7_500,
                min_rate: 1_000,
                ..
            }
        ));
    }

    #[test]
    fn the_limit_caps_a_fast_transfer() {
        let clock = clock(Limit::Timeout(Duration::from_secs(20)), 1_000_000);
        assert_eq!(clock.allowed(), Duration::from_secs(20));
        assert!(matches!(
            clock.fell_behind(),
            ImagingError::Timeout { phase: "total", .. }
        ));
        let clock = self::clock(Limit::Budget(Duration::from_secs(3)), 1_000_000);
        assert!(matches!(
            clock.fell_behind(),
            ImagingError::Timeout {
                phase: "fetch budget",
                ..
            }
        ));
    }

    #[test]
    fn no_minimum_rate_leaves_only_the_limit() {
        let mut clock = TransferClock::start(
            Limit::Timeout(Duration::from_secs(20)),
            MinRate {
                bytes_per_second: 0,
                grace: Duration::from_secs(2),
            },
        );
        clock.received = 1;
        assert_eq!(clock.allowed(), Duration::from_secs(20));
    }

    #[test]
    fn the_budget_is_the_limit_when_it_is_shorter() {
        let timeout = Duration::from_secs(20);
        assert_eq!(
            Limit::shorter(timeout, Duration::from_secs(5)),
            Limit::Budget(Duration::from_secs(5))
        );
        assert_eq!(
            Limit::shorter(timeout, Duration::from_secs(60)),
            Limit::Timeout(timeout)
        );
    }

    #[tokio::test]
    async fn pauses_are_not_counted() {
        let mut clock = TransferClock::start(Limit::Timeout(Duration::from_secs(20)), RATE);
        clock
            .while_paused(tokio::time::sleep(Duration::from_millis(50)))
            .await;
        assert!(
            clock.elapsed() < Duration::from_millis(40),
            "{:?}",
            clock.elapsed()
        );
    }
}
