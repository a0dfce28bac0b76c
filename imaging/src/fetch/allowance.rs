//! Each image's fetch budget across its attempts (`fetch_budget`, `IMAGE_FETCH_BUDGET`): the
//! time all downloads of one image may take together. Each attempt that fails transiently is
//! charged the time it took; the attempt that uses up the rest fails for good, and so does every
//! later one, without a request (a message is retried while any of its images fails, so a spent
//! image is asked for again). Retrying a slow server therefore cannot multiply the time it holds
//! a worker.
//!
//! The ledger lives in the process: a message's retries run in the worker that took it, so they
//! share it. An image is remembered for an hour after its last attempt, a redrive of its message
//! in that time included; a redelivery to another process (after a crash) starts a new budget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::ImagingError;

/// How long an image that stopped being retried (its message was dead-lettered or handed back)
/// is remembered; a retry comes within seconds of the failure it follows.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// How often the ledger drops images that stopped being retried.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One image of one product, as the worker asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ImageRef {
    pub(crate) product_id: i64,
    pub(crate) index: u32,
    pub(crate) url: String,
}

/// An image's failed attempts so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Charged {
    /// What is left of its budget; zero once spent.
    pub(crate) left: Duration,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Why they failed: the last attempt's error, or when that attempt spent the rest of the
    /// budget (it was cut short), the one before it, which says more about the server.
    pub(crate) reason: String,
}

#[derive(Debug)]
struct Remaining {
    charged: Charged,
    touched: Instant,
}

#[derive(Debug)]
struct Ledger {
    images: HashMap<ImageRef, Remaining>,
    swept: Instant,
}

/// What is left of each image's fetch budget, for images whose attempts failed transiently.
#[derive(Debug)]
pub(crate) struct Allowances {
    budget: Duration,
    ledger: Mutex<Ledger>,
}

impl Allowances {
    /// A ledger giving each image `budget`.
    pub(crate) fn new(budget: Duration) -> Allowances {
        Allowances {
            budget,
            ledger: Mutex::new(Ledger {
                images: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// The whole budget of one image.
    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }

    /// The time `image`'s next attempt may take, or, when its budget is spent, its attempts.
    pub(crate) fn left(&self, image: &ImageRef) -> Result<Duration, Charged> {
        match self.ledger.lock().images.get(image) {
            None => Ok(self.budget),
            Some(remaining) if remaining.charged.left.is_zero() => Err(remaining.charged.clone()),
            Some(remaining) => Ok(remaining.charged.left),
        }
    }

    /// Charges an attempt of `image` that failed transiently with `error` after `took`; returns
    /// its attempts so far, with what is left.
    pub(crate) fn charge(&self, image: ImageRef, took: Duration, error: &ImagingError) -> Charged {
        self.charge_at(image, took, error, Instant::now())
    }

    fn charge_at(
        &self,
        image: ImageRef,
        took: Duration,
        error: &ImagingError,
        now: Instant,
    ) -> Charged {
        let mut ledger = self.ledger.lock();
        if now.duration_since(ledger.swept) > SWEEP_EVERY {
            ledger
                .images
                .retain(|_, remaining| now.duration_since(remaining.touched) < FORGET_AFTER);
            ledger.swept = now;
        }
        let earlier = ledger
            .images
            .get(&image)
            .map(|remaining| &remaining.charged);
        let left = earlier
            .map_or(self.budget, |charged| charged.left)
            .saturating_sub(took);
        let charged = Charged {
            left,
            attempts: earlier.map_or(0, |charged| charged.attempts) + 1,
            // The attempt that spent the rest was cut short by the budget; the one before it
            // failed for a reason of the server's.
            reason: match earlier {
                Some(charged) if left.is_zero() => charged.reason.clone(),
                _ => error.without_advice(),
            },
        };
        ledger.images.insert(
            image,
            Remaining {
                charged: charged.clone(),
                touched: now,
            },
        );
        charged
    }

    /// Forgets `image`: it was downloaded, or failed for another reason than time.
    pub(crate) fn settle(&self, image: &ImageRef) {
        self.ledger.lock().images.remove(image);
    }

    /// Images remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ledger.lock().images.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(index: u32) -> ImageRef {
        ImageRef {
            product_id: 7,
            index,
            url: format!("http://example.com/{index}.jpg"),
        }
    }

    fn slow() -> ImagingError {
        ImagingError::TooSlow {
            received: 3,
            elapsed: Duration::from_secs(5),
            min_rate: 10_240,
        }
    }

    fn cut_short() -> ImagingError {
        ImagingError::Timeout {
            phase: "fetch budget",
            after: Duration::from_secs(2),
        }
    }

    #[test]
    fn failed_attempts_draw_the_budget_down() {
        let allowances = Allowances::new(Duration::from_secs(60));
        assert_eq!(allowances.left(&image(0)), Ok(Duration::from_secs(60)));
        let charged = allowances.charge(image(0), Duration::from_secs(20), &slow());
        assert_eq!(
            (charged.attempts, charged.left),
            (1, Duration::from_secs(40))
        );
        let charged = allowances.charge(image(0), Duration::from_secs(25), &slow());
        assert_eq!(
            (charged.attempts, charged.left),
            (2, Duration::from_secs(15))
        );
        assert_eq!(allowances.left(&image(0)), Ok(Duration::from_secs(15)));
        // Other images keep their own budget.
        assert_eq!(allowances.left(&image(1)), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn a_spent_budget_stays_spent_until_settled() {
        let allowances = Allowances::new(Duration::from_secs(60));
        allowances.charge(image(0), Duration::from_secs(58), &slow());
        let charged = allowances.charge(image(0), Duration::from_secs(2), &cut_short());
        let expected = Charged {
            left: Duration::ZERO,
            attempts: 2,
            reason: slow().without_advice(),
        };
        assert_eq!(
            charged, expected,
            "the attempt the budget cut short reports why the ones before failed"
        );
        assert_eq!(allowances.left(&image(0)), Err(expected));
        allowances.settle(&image(0));
        assert_eq!(allowances.left(&image(0)), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn concurrent_attempts_are_both_charged() {
        let allowances = Allowances::new(Duration::from_secs(60));
        // Two attempts that both started with the whole budget.
        allowances.charge(image(0), Duration::from_secs(20), &slow());
        let charged = allowances.charge(image(0), Duration::from_secs(20), &slow());
        assert_eq!(charged.left, Duration::from_secs(20));
    }

    #[test]
    fn a_first_attempt_cut_short_reports_its_own_error() {
        let allowances = Allowances::new(Duration::from_secs(1));
        let charged = allowances.charge(image(0), Duration::from_secs(1), &cut_short());
        assert_eq!(charged.reason, cut_short().without_advice());
        assert!(!charged.reason.contains("try again"), "{}", charged.reason);
    }

    #[test]
    fn images_no_longer_retried_are_dropped() {
        let allowances = Allowances::new(Duration::from_secs(60));
        allowances.charge(image(0), Duration::from_secs(30), &slow());
        let later = Instant::now() + FORGET_AFTER + SWEEP_EVERY;
        allowances.charge_at(image(1), Duration::from_secs(30), &slow(), later);
        assert_eq!(allowances.len(), 1);
        assert_eq!(allowances.left(&image(0)), Ok(Duration::from_secs(60)));
    }
}
