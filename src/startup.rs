//! Start-up: what can stop a process from starting ([`StartupError`]), and how it waits for a
//! database, broker or media store that is not reachable yet ([`StartupWait`], `STARTUP_TIMEOUT`).
//!
//! When a whole stack starts at once (`docker compose up`, a Kubernetes rollout), the API and the
//! workers are often up before PostgreSQL or the broker accept connections. Failing at once would
//! leave the stack down unless something restarts it; so start-up retries failures that may pass
//! (connection refused, server starting up, timeouts) with backoff, for up to `STARTUP_TIMEOUT`,
//! and fails at once on everything else (a bad URL, a missing feature, refused credentials).

use std::future::Future;
use std::time::Duration;

use mq_core::worker::Backoff;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::Front;

/// Why the service could not start. The message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is invalid or needs a cargo feature that is not compiled in.
    #[error("{setting}: {reason}")]
    Config {
        /// The environment variable (and flag) at fault.
        setting: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The database could not be opened or migrated.
    #[error("DATABASE_URL: {0}")]
    Database(#[from] mq_core::domain::RepoError),
    /// The broker could not be reached.
    #[error("broker: {0}")]
    Broker(#[from] mq_core::Error),
    /// The media store could not be opened or did not answer.
    #[error("{setting}: {source}")]
    Media {
        /// `MEDIA_URL` or `MEDIA_DIR`, whichever named the store.
        setting: &'static str,
        /// What went wrong.
        source: product_pipeline_imaging::media::MediaError,
    },
    /// The image pipeline could not be set up.
    #[error("images: {0}")]
    Imaging(#[from] product_pipeline_imaging::ImagingError),
    /// The Prometheus recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(#[from] crate::prometheus::InstallError),
    /// The HTTP address could not be bound, or a directory could not be created.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A dependency was still unreachable when `STARTUP_TIMEOUT` ran out (or, with
    /// `STARTUP_TIMEOUT=0`, on the first try).
    #[error("{last}; {}", gave_up(*.waited))]
    Unreachable {
        /// How long start-up waited.
        waited: Duration,
        /// The last failure.
        last: Box<StartupError>,
    },
    /// Shutdown was requested while start-up waited for the `dependency`.
    #[error("shutdown requested while waiting for the {dependency}")]
    Cancelled {
        /// What start-up was waiting for.
        dependency: &'static str,
    },
}

fn gave_up(waited: Duration) -> String {
    if waited.is_zero() {
        "not waiting for it because STARTUP_TIMEOUT=0".into()
    } else {
        let seconds = waited.as_secs();
        format!("still unreachable after {seconds} s (STARTUP_TIMEOUT={seconds})")
    }
}

impl StartupError {
    /// `true` when the failure may pass by itself (the service is not up yet, or overloaded), so
    /// that waiting is worth it; `false` for settings an operator must fix.
    pub fn is_transient(&self) -> bool {
        match self {
            StartupError::Database(error) => error.is_transient(),
            StartupError::Broker(error) => error.is_transient(),
            StartupError::Media { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// A dependency start-up may wait for, named as `GET /readyz` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// `DATABASE_URL`.
    Database,
    /// `AMQP_URL` or `KAFKA_BROKERS`.
    Broker,
    /// `MEDIA_URL` or `MEDIA_DIR`.
    Media,
}

impl Dependency {
    /// `"database"`, `"broker"` or `"media"`.
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Database => "database",
            Dependency::Broker => "broker",
            Dependency::Media => "media",
        }
    }
}

/// Retries the steps of start-up that reach a dependency until it answers or the start-up
/// deadline (`STARTUP_TIMEOUT` after [`StartupWait::new`]) has passed: the timeout bounds the
/// whole start, not each dependency, plus at most one attempt in flight when it runs out.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use product_pipeline::startup::{Dependency, StartupError, StartupWait};
///
/// let wait = StartupWait::new(Duration::ZERO, Default::default());
/// let refused = || async {
///     Err::<(), _>(StartupError::Database(mq_core::domain::RepoError::Unavailable(
///         "connection refused".into(),
///     )))
/// };
/// let error = wait.until_up(Dependency::Database, refused).await.unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "DATABASE_URL: database unavailable: connection refused; \
///      not waiting for it because STARTUP_TIMEOUT=0"
/// );
/// # }
/// ```
#[derive(Clone)]
pub struct StartupWait {
    timeout: Duration,
    deadline: Instant,
    backoff: Backoff,
    shutdown: CancellationToken,
    front: Option<Front>,
}

impl StartupWait {
    /// Waits for dependencies until `timeout` from now (zero: not at all), and stops waiting when
    /// `shutdown` is cancelled.
    pub fn new(timeout: Duration, shutdown: CancellationToken) -> Self {
        Self {
            timeout,
            deadline: Instant::now() + timeout,
            // Soon at first (a dependency that starts alongside is up in a second or two), then
            // every 2 s at most; jitter keeps a fleet from reconnecting in lockstep.
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
                multiplier: 2.0,
                jitter: 0.3,
            },
            shutdown,
            front: None,
        }
    }

    /// Reports what start-up waits for on `front`'s `GET /readyz`.
    pub fn reporting_to(mut self, front: Front) -> Self {
        self.front = Some(front);
        self
    }

    /// Runs `attempt` until it succeeds, fails for good (not [`StartupError::is_transient`]), or
    /// the deadline has passed. Logs once when it starts waiting
    /// and once when the dependency answers.
    pub async fn until_up<T, F, Fut>(
        &self,
        dependency: Dependency,
        mut attempt: F,
    ) -> Result<T, StartupError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StartupError>>,
    {
        let started = Instant::now();
        let mut retries = 0;
        loop {
            let error = match attempt().await {
                Ok(value) => {
                    if retries > 0 {
                        info!(
                            waited_ms = started.elapsed().as_millis() as u64,
                            "the {} is up",
                            dependency.name()
                        );
                        if let Some(front) = &self.front {
                            front.done_waiting();
                        }
                    }
                    return Ok(value);
                }
                Err(error) if !error.is_transient() => return Err(error),
                Err(error) => error,
            };
            let now = Instant::now();
            if now >= self.deadline {
                return Err(StartupError::Unreachable {
                    waited: self.timeout,
                    last: Box::new(error),
                });
            }
            if retries == 0 {
                warn!(
                    %error,
                    "waiting up to {} s (STARTUP_TIMEOUT) for the {}",
                    self.timeout.as_secs(),
                    dependency.name()
                );
            }
            if let Some(front) = &self.front {
                front.waiting_for(dependency.name(), error.to_string());
            }
            retries += 1;
            let pause = self.backoff.delay(retries).min(self.deadline - now);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.shutdown.cancelled() => {
                    return Err(StartupError::Cancelled { dependency: dependency.name() });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use mq_core::domain::RepoError;

    use super::*;

    fn unavailable() -> StartupError {
        StartupError::Database(RepoError::Unavailable("connection refused".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_dependency_that_comes_up_in_time_is_waited_for() {
        let wait = StartupWait::new(Duration::from_secs(60), CancellationToken::new());
        let tries = AtomicU32::new(0);
        let value = wait
            .until_up(Dependency::Database, || async {
                match tries.fetch_add(1, Ordering::SeqCst) {
                    0..=4 => Err(unavailable()),
                    _ => Ok(42),
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_eq!(tries.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_gives_up_after_the_timeout_naming_both_settings() {
        let wait = StartupWait::new(Duration::from_secs(10), CancellationToken::new());
        let started = tokio::time::Instant::now();
        let error = wait
            .until_up(Dependency::Database, || async {
                Err::<(), _>(unavailable())
            })
            .await
            .unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let message = error.to_string();
        assert!(message.starts_with("DATABASE_URL: "), "{message}");
        assert!(message.ends_with("(STARTUP_TIMEOUT=10)"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let wait = StartupWait::new(Duration::from_secs(60), CancellationToken::new());
        let tries = AtomicU32::new(0);
        let error = wait
            .until_up(Dependency::Database, || async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(StartupError::Database(RepoError::Other(
                    "password authentication failed".into(),
                )))
            })
            .await
            .unwrap_err();
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        assert!(matches!(error, StartupError::Database(_)), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait() {
        let shutdown = CancellationToken::new();
        let wait = StartupWait::new(Duration::from_secs(60), shutdown.clone());
        let waiting = tokio::spawn(async move {
            wait.until_up(Dependency::Broker, || async { Err::<(), _>(unavailable()) })
                .await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
        let error = waiting.await.unwrap().unwrap_err();
        assert!(matches!(error, StartupError::Cancelled { .. }), "{error}");
    }
}
