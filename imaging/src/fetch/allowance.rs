//! Each image's fetch budget across its attempts (`fetch_budget`, `IMAGE_FETCH_BUDGET`): the
//! time all downloads of one image may take together. Each attempt that fails transiently is
//! charged the time it took; the attempt that uses up the rest fails for good. Retrying a slow
//! server therefore cannot multiply the time it holds a worker.
//!
//! The ledger lives in the process: a message's retries run in the worker that took it, so they
//! share it. A redelivery to another process (after a crash) starts a new budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[derive(Debug)]
struct Spent {
    left: Duration,
    attempts: u32,
    /// Why the last attempt failed.
    reason: String,
    touched: Instant,
}

/// An image's failed attempts so far, as [`Allowances::charge`] counted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Charged {
    /// Attempts made, the one just charged included.
    pub(crate) attempts: u32,
    /// Why they failed: the last attempt's error, or when the budget cut that attempt short,
    /// the one before it, which says more about the server.
    pub(crate) reason: String,
}

#[derive(Debug)]
struct Ledger {
    images: HashMap<ImageRef, Spent>,
    swept: Instant,
}

/// What is left of each image's fetch budget, for images whose last attempt failed transiently.
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

    /// The time `image`'s next attempt may take: the budget, less what its failed attempts took.
    pub(crate) fn left(&self, image: &ImageRef) -> Duration {
        self.lock()
            .images
            .get(image)
            .map_or(self.budget, |spent| spent.left)
    }

    /// Records an attempt of `image` that failed transiently with `error`, leaving `left`. An
    /// image with nothing left is forgotten: it has failed for good.
    pub(crate) fn charge(&self, image: ImageRef, left: Duration, error: &ImagingError) -> Charged {
        self.charge_at(image, left, error, Instant::now())
    }

    fn charge_at(
        &self,
        image: ImageRef,
        left: Duration,
        error: &ImagingError,
        now: Instant,
    ) -> Charged {
        let mut ledger = self.lock();
        if now.duration_since(ledger.swept) > SWEEP_EVERY {
            ledger
                .images
                .retain(|_, spent| now.duration_since(spent.touched) < FORGET_AFTER);
            ledger.swept = now;
        }
        let earlier = ledger.images.remove(&image);
        let cut_short = matches!(
            error,
            ImagingError::Timeout {
                phase: "fetch budget",
                ..
            }
        );
        let charged = Charged {
            attempts: earlier.as_ref().map_or(0, |spent| spent.attempts) + 1,
            reason: match earlier {
                Some(spent) if cut_short => spent.reason,
                _ => error.to_string(),
            },
        };
        if !left.is_zero() {
            ledger.images.insert(
                image,
                Spent {
                    left,
                    attempts: charged.attempts,
                    reason: charged.reason.clone(),
                    touched: now,
                },
            );
        }
        charged
    }

    /// Forgets `image`: its download succeeded or failed for good.
    pub(crate) fn settle(&self, image: &ImageRef) {
        self.lock().images.remove(image);
    }

    /// Images being retried.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().images.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // The ledger is consistent after every statement: a panic elsewhere cannot corrupt it.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        assert_eq!(allowances.left(&image(0)), Duration::from_secs(60));
        let charged = allowances.charge(image(0), Duration::from_secs(40), &slow());
        assert_eq!(charged.attempts, 1);
        let charged = allowances.charge(image(0), Duration::from_secs(15), &slow());
        assert_eq!(charged.attempts, 2);
        assert_eq!(allowances.left(&image(0)), Duration::from_secs(15));
        // Other images keep their own budget.
        assert_eq!(allowances.left(&image(1)), Duration::from_secs(60));
    }

    #[test]
    fn a_first_attempt_cut_short_reports_its_own_error() {
        let allowances = Allowances::new(Duration::from_secs(1));
        let charged = allowances.charge(image(0), Duration::ZERO, &cut_short());
        assert_eq!(charged.reason, cut_short().to_string());
    }

    #[test]
    fn an_image_with_nothing_left_or_settled_is_forgotten() {
        let allowances = Allowances::new(Duration::from_secs(60));
        allowances.charge(image(0), Duration::from_secs(30), &slow());
        assert_eq!(
            allowances.charge(image(0), Duration::ZERO, &cut_short()),
            Charged {
                attempts: 2,
                reason: slow().to_string()
            },
            "the attempt the budget cut short reports why the ones before failed"
        );
        allowances.charge(image(1), Duration::from_secs(30), &slow());
        allowances.settle(&image(1));
        assert_eq!(allowances.len(), 0);
        assert_eq!(allowances.left(&image(0)), Duration::from_secs(60));
    }

    #[test]
    fn images_no_longer_retried_are_dropped() {
        let allowances = Allowances::new(Duration::from_secs(60));
        allowances.charge(image(0), Duration::from_secs(30), &slow());
        let later = Instant::now() + FORGET_AFTER + SWEEP_EVERY;
        allowances.charge_at(image(1), Duration::from_secs(30), &slow(), later);
        assert_eq!(allowances.len(), 1);
        assert_eq!(allowances.left(&image(0)), Duration::from_secs(60));
    }
}
