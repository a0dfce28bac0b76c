//! [`Message`]: what publishers send and subscribers receive.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::Result;

/// Header names with a meaning shared by every backend.
pub mod headers {
    /// Why a message was dead-lettered (set on messages in `<topic>.dlq`).
    pub const DEAD_LETTER_REASON: &str = "x-dead-letter-reason";
    /// How many times the message was attempted before it was dead-lettered.
    pub const ATTEMPTS: &str = "x-attempts";
    /// The topic a dead-lettered message came from.
    pub const ORIGINAL_TOPIC: &str = "x-original-topic";
    /// W3C trace context of the request that caused the message.
    pub const TRACEPARENT: &str = "traceparent";
    /// The message's id ([`Message::id`](crate::Message::id)), in backends whose own id field
    /// cannot carry every id: Kafka records have none, AMQP's `message_id` holds 255 bytes.
    pub const MESSAGE_ID: &str = "x-message-id";
    /// `true` on an event that nobody need hear: when no consumer group is subscribed to its
    /// topic it is dropped instead of kept for a group that may come (memory) or refused as
    /// unroutable (RabbitMQ). Kafka keeps it in the topic as it keeps everything. Set it with
    /// [`Message::drop_if_unrouted`](crate::Message::drop_if_unrouted).
    pub const DROP_IF_UNROUTED: &str = "x-drop-if-unrouted";
}

/// The topic that dead letters of `topic` go to.
///
/// ```
/// assert_eq!(mq_core::dead_letter_topic("products.created"), "products.created.dlq");
/// ```
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// One message: a unique id, an optional ordering key, string headers and opaque payload bytes.
///
/// ```
/// use mq_core::Message;
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Created { product_id: i64 }
///
/// let message = Message::json(&Created { product_id: 7 })?
///     .with_key("7")
///     .with_header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
/// assert_eq!(message.decode::<Created>()?, Created { product_id: 7 });
/// assert_eq!(message.key(), Some("7"));
/// # Ok::<(), mq_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    id: String,
    key: Option<String>,
    headers: BTreeMap<String, String>,
    payload: Bytes,
}

impl Message {
    /// A message with a fresh UUID v7 id (time-ordered, unique across processes).
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            key: None,
            headers: BTreeMap::new(),
            payload: payload.into(),
        }
    }

    /// A message whose payload is `value` as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let payload = serde_json::to_vec(value)?;
        Ok(Self::new(payload).with_header("content-type", "application/json"))
    }

    /// Rebuilds a message received from a broker, keeping its original id.
    pub fn from_parts(
        id: impl Into<String>,
        key: Option<String>,
        headers: BTreeMap<String, String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            id: id.into(),
            key,
            headers,
            payload: payload.into(),
        }
    }

    /// Sets the ordering key: messages with the same key are delivered in publish order where the
    /// backend can keep order (Kafka partition, in-memory broker, a single RabbitMQ consumer).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds or replaces a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Replaces the id (for callers that derive ids from their own data, e.g. an outbox row).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The unique message id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The ordering key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// All headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// Mutable access to the headers.
    pub fn headers_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.headers
    }

    /// One header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The message marked as an event that may be dropped when no consumer group is subscribed
    /// to its topic ([`headers::DROP_IF_UNROUTED`]), e.g. a notification for downstream systems
    /// that may not exist:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> mq_core::Result<()> {
    /// use mq_core::{MemoryBroker, Message, Publisher};
    ///
    /// let broker = MemoryBroker::new();
    /// let event = Message::new("product 7 is ready").drop_if_unrouted();
    /// assert!(event.drops_if_unrouted());
    /// // Nobody subscribed: published, and not kept.
    /// broker.publisher().publish("products.processed", event).await?;
    /// # Ok(()) }
    /// ```
    pub fn drop_if_unrouted(self) -> Self {
        self.with_header(headers::DROP_IF_UNROUTED, "true")
    }

    /// `true` when the message may be dropped for want of a subscribed group
    /// ([`Message::drop_if_unrouted`]).
    pub fn drops_if_unrouted(&self) -> bool {
        self.header(headers::DROP_IF_UNROUTED) == Some("true")
    }

    /// Decodes the payload as JSON; a failure is a permanent [`crate::Error::Payload`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// A copy of this message for the dead-letter topic, with the reason, attempt count and
    /// original topic added to the headers. The id, key and payload are kept.
    pub fn dead_letter(&self, topic: &str, reason: &str, attempts: u32) -> Self {
        self.clone()
            .with_header(headers::DEAD_LETTER_REASON, reason)
            .with_header(headers::ATTEMPTS, attempts.to_string())
            .with_header(headers::ORIGINAL_TOPIC, topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let a = Message::new("a");
        let b = Message::new("b");
        assert_ne!(a.id(), b.id());
        assert!(a.id() < b.id(), "UUID v7 ids sort by creation time");
    }

    #[test]
    fn decode_error_is_permanent() {
        let error = Message::new("not json").decode::<u32>().unwrap_err();
        assert!(!error.is_transient());
    }

    #[test]
    fn dead_letter_keeps_the_message_and_adds_the_reason() {
        let original = Message::new("p").with_key("k").with_header("h", "v");
        let dead = original.dead_letter("t", "boom", 3);
        assert_eq!(dead.id(), original.id());
        assert_eq!(dead.key(), Some("k"));
        assert_eq!(dead.header("h"), Some("v"));
        assert_eq!(dead.header(headers::DEAD_LETTER_REASON), Some("boom"));
        assert_eq!(dead.header(headers::ATTEMPTS), Some("3"));
        assert_eq!(dead.header(headers::ORIGINAL_TOPIC), Some("t"));
    }
}
