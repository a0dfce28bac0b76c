//! Dead letters: look at what a topic's consumers gave up on, and send it back once the cause is
//! fixed. Works on every backend, over [`Subscriber`] and [`Publisher`] only.
//!
//! A message that failed permanently, or on every attempt, is dead-lettered to `<topic>.dlq`
//! with the reason, the attempt count and its topic in its headers ([`headers`]). [`list`] reads
//! them and hands them back to the broker unsettled, so they stay. [`redrive`] republishes each to
//! its topic, without the dead-letter headers, and acks the dead letter only after the broker
//! confirmed the publish: a redrive that dies midway leaves every message in the dead-letter
//! topic, in the topic, or (for the one in flight) in both, to be processed twice, which
//! idempotent consumers absorb. It is never lost. A redriven message that fails again is
//! dead-lettered again, with fresh attempts.
//!
//! Both read as a consumer group of `<topic>.dlq` ([`ReadOptions::group`]); on RabbitMQ, use the
//! group that receives dead letters nobody subscribed to (`RabbitConfig::dead_letter_group`,
//! `"default"`), or one that existed before the messages were dead-lettered.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
//! use std::time::Duration;
//! use futures::StreamExt;
//! use mq_core::dead_letters::{self, ReadOptions};
//! use mq_core::{MemoryBroker, Message, Nack, Publisher, Subscriber};
//!
//! let broker = MemoryBroker::new();
//! let (publisher, subscriber) = (broker.publisher(), broker.subscriber());
//! let mut deliveries = subscriber.subscribe("orders", "workers").await?;
//! publisher.publish("orders", Message::new("not an order")).await?;
//! let delivery = deliveries.next().await.expect("a delivery")?;
//! delivery.nack(Nack::DeadLetter { reason: "bad payload".into(), attempts: 1 }).await?;
//!
//! let options = ReadOptions { first_wait: Duration::from_secs(1), ..ReadOptions::default() };
//! let letters = dead_letters::list(&subscriber, "orders", &options).await?;
//! assert_eq!(letters[0].reason.as_deref(), Some("bad payload"));
//!
//! // The cause is fixed: back to `orders`, where the workers get it again.
//! let redriven = dead_letters::redrive(&subscriber, &publisher, "orders", &options).await?;
//! assert_eq!(redriven, 1);
//! let again = deliveries.next().await.expect("the redriven message")?;
//! assert_eq!(again.message().payload(), "not an order".as_bytes());
//! again.ack().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use futures::StreamExt;

use crate::{
    dead_letter_topic, headers, Delivery, DeliveryStream, Error, Message, Publisher, Result,
    Subscriber,
};

/// How [`list`] and [`redrive`] read a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// The consumer group of `<topic>.dlq` to read as.
    pub group: String,
    /// Most dead letters to read.
    pub limit: usize,
    /// How long to wait for the first dead letter: joining a group can take seconds (Kafka).
    pub first_wait: Duration,
    /// How long to wait for each further one before taking the topic as read.
    pub idle: Duration,
}

impl Default for ReadOptions {
    /// Group `default` (RabbitMQ's dead-letter group), at most 100, waiting 10 s for the first
    /// and 1 s for each next.
    fn default() -> Self {
        Self {
            group: "default".to_owned(),
            limit: 100,
            first_wait: Duration::from_secs(10),
            idle: Duration::from_secs(1),
        }
    }
}

/// One dead letter, as [`list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message as it was published, without the dead-letter headers.
    pub message: Message,
    /// Why it was given up on ([`headers::DEAD_LETTER_REASON`]).
    pub reason: Option<String>,
    /// How many times it was attempted ([`headers::ATTEMPTS`]).
    pub attempts: Option<u32>,
}

impl DeadLetter {
    /// Splits a message read from a dead-letter topic into the original and the dead-letter
    /// headers.
    pub fn from_dead(dead: &Message) -> Self {
        let mut message = dead.clone();
        let fields = message.headers_mut();
        let reason = fields.remove(headers::DEAD_LETTER_REASON);
        let attempts = fields
            .remove(headers::ATTEMPTS)
            .and_then(|n| n.parse().ok());
        fields.remove(headers::ORIGINAL_TOPIC);
        Self {
            message,
            reason,
            attempts,
        }
    }
}

/// Reads up to [`ReadOptions::limit`] dead letters of `topic` and leaves them where they are: each
/// is handed back to the broker unsettled once all are read, so it is delivered again to the
/// group's next reader.
///
/// On RabbitMQ a listing shows at most the subscriber's prefetch, and counts as a delivery of
/// each letter it shows: a quorum queue with a delivery limit (RabbitMQ 4 sets 20 by default)
/// drops a letter listed that often, so list sparingly there or raise the limit.
pub async fn list(
    subscriber: &dyn Subscriber,
    topic: &str,
    options: &ReadOptions,
) -> Result<Vec<DeadLetter>> {
    let mut letters = DeadLetterStream::open(subscriber, topic, options).await?;
    let mut held = Vec::new();
    while held.len() < options.limit {
        match letters.next().await? {
            Some(delivery) => held.push(delivery),
            None => break,
        }
    }
    let listed = held
        .iter()
        .map(|delivery| DeadLetter::from_dead(delivery.message()))
        .collect();
    // The subscription ends first, so that the letters are not delivered to it again; dropped
    // unsettled, each goes back to the group by the backend's own means.
    drop(letters);
    drop(held);
    Ok(listed)
}

/// Republishes up to [`ReadOptions::limit`] dead letters of `topic` to `topic` and returns how
/// many; see the [module docs](self) for why nothing is lost if it stops midway. A publish that
/// fails hands its dead letter back and ends the redrive with the error.
pub async fn redrive(
    subscriber: &dyn Subscriber,
    publisher: &dyn Publisher,
    topic: &str,
    options: &ReadOptions,
) -> Result<usize> {
    let mut letters = DeadLetterStream::open(subscriber, topic, options).await?;
    let mut redriven = 0;
    while redriven < options.limit {
        let Some(delivery) = letters.next().await? else {
            break;
        };
        let original = DeadLetter::from_dead(delivery.message()).message;
        // Republished to the topic the letter was read for, never to one a header names.
        if let Err(error) = publisher.publish(topic, original).await {
            delivery.requeue().await?;
            return Err(error);
        }
        delivery.ack().await?;
        redriven += 1;
    }
    Ok(redriven)
}

/// A subscription to `<topic>.dlq` that ends when no dead letter comes within the wait.
struct DeadLetterStream<'a> {
    deliveries: DeliveryStream,
    options: &'a ReadOptions,
    received: bool,
}

impl<'a> DeadLetterStream<'a> {
    async fn open(
        subscriber: &dyn Subscriber,
        topic: &str,
        options: &'a ReadOptions,
    ) -> Result<Self> {
        if options.group.is_empty() {
            return Err(Error::permanent(
                "reading dead letters needs a consumer group",
            ));
        }
        let deliveries = subscriber
            .subscribe(&dead_letter_topic(topic), &options.group)
            .await?;
        Ok(Self {
            deliveries,
            options,
            received: false,
        })
    }

    /// The next dead letter, or `None` when the wait passed without one. Transient subscription
    /// errors (a reconnect) are waited through; others end the read.
    async fn next(&mut self) -> Result<Option<Delivery>> {
        let wait = if self.received {
            self.options.idle
        } else {
            self.options.first_wait
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.deliveries.next()).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(Ok(delivery))) => {
                    self.received = true;
                    return Ok(Some(delivery));
                }
                Ok(Some(Err(error))) if error.is_transient() => {
                    tracing::debug!(%error, "dead-letter subscription error; still waiting");
                }
                Ok(Some(Err(error))) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_splits_into_the_original_and_why() {
        let original = Message::new("p").with_key("k").with_header("h", "v");
        let letter = DeadLetter::from_dead(&original.dead_letter("t", "boom", 3));
        assert_eq!(letter.message, original);
        assert_eq!(letter.reason.as_deref(), Some("boom"));
        assert_eq!(letter.attempts, Some(3));
    }

    #[test]
    fn a_message_without_dead_letter_headers_is_kept_whole() {
        let message = Message::new("p").with_header(headers::ATTEMPTS, "many");
        let letter = DeadLetter::from_dead(&message);
        assert_eq!(letter.reason, None);
        assert_eq!(letter.attempts, None, "an unreadable count is left out");
        assert!(letter.message.headers().is_empty());
    }
}
