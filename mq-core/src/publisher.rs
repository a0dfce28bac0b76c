//! The [`Publisher`] trait.

use async_trait::async_trait;

use crate::{Message, Result};

/// Sends messages to topics.
///
/// Object safe: hold it as `Arc<dyn Publisher>`.
///
/// ```
/// use std::sync::Arc;
/// use mq_core::{MemoryBroker, Message, Publisher};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
/// let publisher: Arc<dyn Publisher> = Arc::new(MemoryBroker::new().publisher());
/// publisher.publish("products.created", Message::json(&serde_json::json!({"product_id": 1}))?).await?;
/// publisher.close().await
/// # }
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes one message and returns once the broker has durably accepted it (RabbitMQ:
    /// publisher confirm; Kafka: delivery report with `acks=all`). An `Err` means the message may
    /// not have been stored: publish it again (consumers are idempotent).
    async fn publish(&self, topic: &str, message: Message) -> Result<()>;

    /// Publishes several messages with as many in flight at once as the backend allows and returns
    /// once all were accepted. On `Err`, any subset may have been stored.
    async fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<()> {
        let publishes = messages
            .into_iter()
            .map(|message| self.publish(topic, message));
        futures::future::try_join_all(publishes).await.map(drop)
    }

    /// Checks that the broker can be reached (used by readiness probes).
    async fn health(&self) -> Result<()>;

    /// Waits for every outstanding publish to be accepted, then refuses further publishes.
    async fn close(&self) -> Result<()>;
}
