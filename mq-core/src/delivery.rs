//! [`Delivery`]: one received message that must be settled exactly once.

use async_trait::async_trait;

use crate::{Message, Result};

/// How a delivery is settled when it was not processed successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nack {
    /// Give the message back to the broker; it is delivered again (to this or another consumer
    /// of the group) with an incremented attempt count.
    Requeue,
    /// Send the message to `<topic>.dlq` with `reason` and `attempts` in its headers and never
    /// deliver it to this group again.
    DeadLetter {
        /// Why the message is given up on.
        reason: String,
        /// How many times it was attempted, including in-process retries.
        attempts: u32,
    },
}

/// How a delivery was settled, as passed to an [`Acknowledger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Processed: the broker may forget the message (for this group).
    Ack,
    /// Not processed: see [`Nack`].
    Nack(Nack),
}

/// The backend side of a [`Delivery`]: tells the broker how the message was settled.
///
/// Backends implement this; users call [`Delivery::ack`] and [`Delivery::nack`] instead.
#[async_trait]
pub trait Acknowledger: Send + Sync + 'static {
    /// Settles the delivery. Called at most once, and never together with [`abandon`](Self::abandon).
    async fn settle(self: Box<Self>, settlement: Settlement) -> Result<()>;

    /// Called when the [`Delivery`] is dropped without being settled (a panicking or cancelled
    /// handler, a stopped worker). The message must be delivered again: a dropped delivery never
    /// loses its message. Must not block; spawn if the backend needs to do I/O.
    fn abandon(self: Box<Self>);
}

/// A message received from a subscription.
///
/// Settle it with [`ack`](Self::ack) once the work is durably done, or with
/// [`nack`](Self::nack). Settling consumes the delivery, so it cannot be settled twice; dropping it
/// unsettled hands the message back to the broker for redelivery.
///
/// ```
/// use futures::StreamExt;
/// use mq_core::{MemoryBroker, Message, Nack, Publisher, Subscriber};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
/// let broker = MemoryBroker::new();
/// let mut deliveries = broker.subscriber().subscribe("jobs", "workers").await?;
/// broker.publisher().publish("jobs", Message::new("work")).await?;
///
/// let delivery = deliveries.next().await.expect("a delivery")?;
/// match std::str::from_utf8(delivery.message().payload()) {
///     Ok(_) => delivery.ack().await?,
///     Err(error) => {
///         let reason = error.to_string();
///         delivery.nack(Nack::DeadLetter { reason, attempts: 1 }).await?
///     }
/// }
/// # Ok(()) }
/// ```
#[must_use = "a delivery must be acked or nacked; dropping it makes the broker deliver it again"]
pub struct Delivery {
    topic: String,
    message: Message,
    attempt: u32,
    origin: Origin,
    acknowledger: Option<Box<dyn Acknowledger>>,
}

/// Where in the broker a [`Delivery`] came from, for traces and logs (the OpenTelemetry messaging
/// attributes `messaging.system`, `messaging.destination.partition.id` and
/// `messaging.kafka.offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The broker, as OpenTelemetry names it: `rabbitmq`, `kafka`, or `memory` for
    /// [`MemoryBroker`](crate::MemoryBroker).
    pub system: &'static str,
    /// The partition, for brokers that have them.
    pub partition: Option<i32>,
    /// The offset in the partition, for brokers that have them.
    pub offset: Option<i64>,
}

impl Origin {
    /// A broker without partitions.
    pub const fn system(system: &'static str) -> Self {
        Self {
            system,
            partition: None,
            offset: None,
        }
    }
}

impl Delivery {
    /// Builds a delivery (backends call this). `attempt` is 1 for the first delivery.
    pub fn new(
        topic: impl Into<String>,
        message: Message,
        attempt: u32,
        acknowledger: Box<dyn Acknowledger>,
    ) -> Self {
        Self {
            topic: topic.into(),
            message,
            attempt: attempt.max(1),
            origin: Origin::system("unknown"),
            acknowledger: Some(acknowledger),
        }
    }

    /// Sets where the delivery came from (backends call this; `unknown` until they do).
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Where the delivery came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The topic the message was published to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// How many times the broker has delivered this message to the group, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Marks the message processed.
    pub async fn ack(mut self) -> Result<()> {
        self.take().settle(Settlement::Ack).await
    }

    /// Marks the message not processed; see [`Nack`].
    pub async fn nack(mut self, nack: Nack) -> Result<()> {
        self.take().settle(Settlement::Nack(nack)).await
    }

    /// Shorthand for `nack(Nack::Requeue)`.
    pub async fn requeue(self) -> Result<()> {
        self.nack(Nack::Requeue).await
    }

    /// Shorthand for `nack(Nack::DeadLetter { .. })` with this delivery's attempt count.
    pub async fn dead_letter(self, reason: impl Into<String>) -> Result<()> {
        let attempts = self.attempt;
        self.nack(Nack::DeadLetter {
            reason: reason.into(),
            attempts,
        })
        .await
    }

    fn take(&mut self) -> Box<dyn Acknowledger> {
        self.acknowledger
            .take()
            .expect("a delivery holds its acknowledger until it is settled or dropped")
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(acknowledger) = self.acknowledger.take() {
            acknowledger.abandon();
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("message", &self.message)
            .field("attempt", &self.attempt)
            .field("origin", &self.origin)
            .field("settled", &self.acknowledger.is_none())
            .finish()
    }
}
