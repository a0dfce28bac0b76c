//! The [`Subscriber`] trait.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

use crate::{Delivery, Result};

/// The stream of deliveries of one subscription. It ends when the subscriber is closed.
///
/// An `Err` item reports a failure the backend is recovering from (e.g. a lost connection); the
/// stream goes on after it.
pub type DeliveryStream = Pin<Box<dyn Stream<Item = Result<Delivery>> + Send>>;

/// Receives messages from topics, as a member of a consumer group.
///
/// Subscriptions with the same `group` compete for the topic's messages (each message goes to one
/// of them); subscriptions with different groups each receive every message.
///
/// ```
/// use futures::StreamExt;
/// use mq_core::{MemoryBroker, Message, Publisher, Subscriber};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
/// let broker = MemoryBroker::new();
/// let mut deliveries = broker.subscriber().subscribe("greetings", "printer").await?;
/// broker.publisher().publish("greetings", Message::new("hello")).await?;
///
/// let delivery = deliveries.next().await.expect("stream is open")?;
/// assert_eq!(&delivery.message().payload()[..], b"hello");
/// delivery.ack().await
/// # }
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Joins `group` on `topic` and returns its deliveries. Creates the topic and the group's
    /// queue or offsets when needed.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<DeliveryStream>;

    /// Sets up what `group` on `topic` needs before anything is published to it, so that
    /// messages published before the group's first subscription starts are kept for it.
    /// Idempotent; call it at deploy or start-up time.
    ///
    /// Brokers that keep every message of a topic (Kafka, the in-memory broker) need nothing,
    /// which the default does; RabbitMQ routes only to queues that exist, so its subscriber
    /// declares the group's queue.
    async fn declare(&self, topic: &str, group: &str) -> Result<()> {
        let _ = (topic, group);
        Ok(())
    }

    /// Checks that the broker can be reached (used by readiness probes).
    async fn health(&self) -> Result<()>;

    /// Ends every subscription of this subscriber. Unsettled deliveries stay valid: settle them,
    /// or drop them to have them redelivered.
    async fn close(&self) -> Result<()>;
}
