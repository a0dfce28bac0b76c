use std::future::Future;

use async_trait::async_trait;

use crate::{Message, Result};

/// Processes one message for the [`Worker`](super::Worker).
///
/// Return `Ok` when the work is durably done (the delivery is then acked), an error for which
/// [`Error::is_transient`](crate::Error::is_transient) holds to have it retried with backoff, or a
/// permanent error to have it dead-lettered at once.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles `message`; `attempt` says which attempt this is and whether it is the last.
    async fn handle(&self, message: &Message, attempt: Attempt) -> Result<()>;
}

/// Which attempt at a message a [`Handler`] is given: the number counts deliveries and in-process
/// retries, starting at 1; after the last one, a transient failure dead-letters the message.
///
/// ```
/// use mq_core::worker::Attempt;
/// let attempt = Attempt::new(3, 3);
/// assert!(attempt.is_last());
/// assert_eq!(attempt.to_string(), "attempt 3 of 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    number: u32,
    max: u32,
}

impl Attempt {
    /// Attempt `number` (from 1) of at most `max` (the worker's
    /// [`WorkerConfig::max_attempts`](super::WorkerConfig::max_attempts)).
    pub fn new(number: u32, max: u32) -> Self {
        Self { number, max }
    }

    /// The attempt's number, from 1. Above [`max`](Self::max) when earlier deliveries never
    /// settled (the workers handling them died).
    pub fn number(self) -> u32 {
        self.number
    }

    /// The most attempts the worker makes.
    pub fn max(self) -> u32 {
        self.max
    }

    /// Whether a transient failure now dead-letters the message instead of retrying it.
    pub fn is_last(self) -> bool {
        self.number >= self.max
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {} of {}", self.number, self.max)
    }
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F>(F);

/// Turns `|message: Message, attempt: Attempt| async { ... }` into a [`Handler`].
///
/// ```
/// use mq_core::{worker::handler_fn, Message};
/// let handler = handler_fn(|message: Message, _attempt| async move {
///     println!("got {}", message.id());
///     Ok(())
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Message, Attempt) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    HandlerFn(f)
}

#[async_trait]
impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Message, Attempt) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    async fn handle(&self, message: &Message, attempt: Attempt) -> Result<()> {
        (self.0)(message.clone(), attempt).await
    }
}
