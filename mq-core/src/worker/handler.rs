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
    /// Handles `message`; `attempt` starts at 1 and counts deliveries and in-process retries.
    async fn handle(&self, message: &Message, attempt: u32) -> Result<()>;
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F>(F);

/// Turns `|message: Message, attempt: u32| async { ... }` into a [`Handler`].
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
    F: Fn(Message, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    HandlerFn(f)
}

#[async_trait]
impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Message, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    async fn handle(&self, message: &Message, attempt: u32) -> Result<()> {
        (self.0)(message.clone(), attempt).await
    }
}
