//! Outbox retention: deletes the rows the broker confirmed longer ago than the retention, so that
//! the outbox holds what is still to publish and a window of what was, not every message ever.
//!
//! A sweep runs every [`RetentionConfig::interval`]. It deletes batches of at most
//! [`RetentionConfig::batch_size`] rows, the earliest published first, pausing between batches,
//! until a batch comes back short: each delete is one short statement, so the relay's claims and
//! marks (and, on SQLite, every other write) wait at most one batch. Rows that are not yet
//! published are never deleted, however old. Several processes may sweep the same database; a
//! failed sweep is logged and tried again at the next interval. Deleted rows are counted in
//! `outbox_rows_deleted_total`.

use std::sync::Arc;
use std::time::Duration;

use mq_core::domain::{OutboxRepo, RepoError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How outbox retention works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// How long a published row is kept (`OUTBOX_RETENTION`).
    pub retention: Duration,
    /// Most rows one statement deletes.
    pub batch_size: u32,
    /// Time between sweeps.
    pub interval: Duration,
    /// Pause between the batches of one sweep, for the relay's writes.
    pub pause: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            batch_size: 1000,
            interval: Duration::from_secs(60),
            pause: Duration::from_millis(20),
        }
    }
}

/// Deletes published outbox rows after their retention; see the [module docs](self).
pub struct OutboxRetention {
    outbox: Arc<dyn OutboxRepo>,
    config: RetentionConfig,
}

impl OutboxRetention {
    /// Retention over `outbox`.
    pub fn new(outbox: Arc<dyn OutboxRepo>, config: RetentionConfig) -> Self {
        Self { outbox, config }
    }

    /// Sweeps at once and then every interval, until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.sweep(&shutdown).await {
                Ok(0) => {}
                Ok(deleted) => debug!(deleted, "outbox retention deleted published rows"),
                Err(error) => warn!(%error, "outbox retention failed; it tries again later"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Deletes, batch by batch, the rows published longer ago than the retention; returns how
    /// many. Stops after a short batch, or at `shutdown`.
    pub async fn sweep(&self, shutdown: &CancellationToken) -> Result<u64, RepoError> {
        let retention =
            chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        let Some(cutoff) = chrono::Utc::now().checked_sub_signed(retention) else {
            return Ok(0); // a retention longer than recorded time: nothing is old enough
        };
        let mut total = 0;
        loop {
            let deleted = self
                .outbox
                .delete_published(cutoff, self.config.batch_size)
                .await?;
            metrics::counter!("outbox_rows_deleted_total").increment(deleted);
            total += deleted;
            if deleted < u64::from(self.config.batch_size) {
                return Ok(total);
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(total),
                () = tokio::time::sleep(self.config.pause) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use mq_core::domain::MockOutboxRepo;

    use super::*;

    fn config(batch_size: u32) -> RetentionConfig {
        RetentionConfig {
            retention: Duration::from_secs(3600),
            batch_size,
            interval: Duration::from_secs(60),
            pause: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_sweep_deletes_batches_until_one_is_short() {
        let batches = Arc::new(Mutex::new(vec![3, 3, 1]));
        let cutoffs = Arc::new(Mutex::new(Vec::new()));
        let mut outbox = MockOutboxRepo::new();
        let (left, seen) = (batches.clone(), cutoffs.clone());
        outbox
            .expect_delete_published()
            .times(3)
            .returning(move |cutoff, limit| {
                assert_eq!(limit, 3);
                seen.lock().unwrap().push(cutoff);
                Ok(left.lock().unwrap().remove(0))
            });
        let started = chrono::Utc::now();
        let retention = OutboxRetention::new(Arc::new(outbox), config(3));

        let deleted = retention.sweep(&CancellationToken::new()).await.unwrap();

        assert_eq!(deleted, 7);
        let cutoffs = cutoffs.lock().unwrap();
        let hour = chrono::Duration::hours(1);
        assert!(
            cutoffs.iter().all(|c| *c == cutoffs[0]),
            "one cutoff per sweep"
        );
        assert!(cutoffs[0] >= started - hour && cutoffs[0] <= chrono::Utc::now() - hour);
    }

    #[tokio::test]
    async fn a_failed_batch_ends_the_sweep_with_the_error() {
        let mut outbox = MockOutboxRepo::new();
        outbox
            .expect_delete_published()
            .times(1)
            .returning(|_, _| Err(RepoError::Unavailable("connection refused".into())));
        let retention = OutboxRetention::new(Arc::new(outbox), config(10));
        let error = retention
            .sweep(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(error.is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn run_sweeps_every_interval_and_survives_failures() {
        let calls = Arc::new(Mutex::new(0));
        let mut outbox = MockOutboxRepo::new();
        let counted = calls.clone();
        outbox.expect_delete_published().returning(move |_, _| {
            let mut calls = counted.lock().unwrap();
            *calls += 1;
            match *calls {
                1 => Err(RepoError::Unavailable("down".into())),
                _ => Ok(0),
            }
        });
        let shutdown = CancellationToken::new();
        let running =
            tokio::spawn(OutboxRetention::new(Arc::new(outbox), config(10)).run(shutdown.clone()));
        // At once, then after each of two intervals.
        tokio::time::sleep(Duration::from_secs(121)).await;
        assert_eq!(*calls.lock().unwrap(), 3);
        shutdown.cancel();
        running.await.unwrap();
    }

    #[test]
    fn a_retention_beyond_recorded_time_deletes_nothing() {
        let outbox = MockOutboxRepo::new(); // any call would panic
        let retention = OutboxRetention::new(
            Arc::new(outbox),
            RetentionConfig {
                retention: Duration::MAX,
                ..config(10)
            },
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let deleted = runtime.block_on(retention.sweep(&CancellationToken::new()));
        assert_eq!(deleted, Ok(0));
    }
}
