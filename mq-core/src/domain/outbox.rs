use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Message;

/// The topic new products are announced on.
pub const PRODUCTS_CREATED_TOPIC: &str = "products.created";

/// The topic changed (and reprocessed) products are announced on.
pub const PRODUCTS_UPDATED_TOPIC: &str = "products.updated";

/// The topic deleted products are announced on.
pub const PRODUCTS_DELETED_TOPIC: &str = "products.deleted";

/// The topics the image consumer takes [`ProductEvent`](super::ProductEvent)s from.
pub const PRODUCT_EVENT_TOPICS: [&str; 3] = [
    PRODUCTS_CREATED_TOPIC,
    PRODUCTS_UPDATED_TOPIC,
    PRODUCTS_DELETED_TOPIC,
];

/// The topic on which the image consumer announces a product's final status
/// ([`ProductProcessed`](super::ProductProcessed)), for downstream subscribers.
pub const PRODUCTS_PROCESSED_TOPIC: &str = "products.processed";

/// A message to write to the outbox in the same transaction as the row it announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewOutboxMessage {
    /// Destination topic.
    pub topic: String,
    /// Ordering key, if any.
    pub key: Option<String>,
    /// Headers (message id, trace context, ...).
    pub headers: BTreeMap<String, String>,
    /// JSON payload.
    pub payload: serde_json::Value,
}

/// How far the relay is behind: what `GET /metrics` reports as the outbox backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxBacklog {
    /// Rows not yet published.
    pub unpublished: u64,
    /// When the oldest unpublished row was written; `None` when there is none.
    pub oldest_created_at: Option<DateTime<Utc>>,
}

/// An outbox row claimed by a relay for publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Row id; also the idempotency handle for [`crate::domain::OutboxRepo::mark_published`].
    pub id: i64,
    /// Destination topic.
    pub topic: String,
    /// Ordering key, if any.
    pub key: Option<String>,
    /// Headers, including the message id fixed when the row was written.
    pub headers: BTreeMap<String, String>,
    /// JSON payload.
    pub payload: serde_json::Value,
    /// Failed publish attempts so far.
    pub attempts: i32,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// Header that carries the message id through the outbox, so a row published twice keeps its id.
const MESSAGE_ID_HEADER: &str = "message-id";

impl NewOutboxMessage {
    /// An outbox message with a fresh message id in its headers.
    pub fn new(topic: impl Into<String>, key: Option<String>, payload: serde_json::Value) -> Self {
        let mut headers = BTreeMap::new();
        headers.insert(
            MESSAGE_ID_HEADER.to_owned(),
            uuid::Uuid::now_v7().to_string(),
        );
        Self {
            topic: topic.into(),
            key,
            headers,
            payload,
        }
    }
}

impl OutboxMessage {
    /// The broker message for this row. Its id is the one fixed when the row was written, so
    /// consumers can recognise a row that was published twice (after a relay crash).
    pub fn to_message(&self) -> Message {
        let id = self
            .headers
            .get(MESSAGE_ID_HEADER)
            .cloned()
            .unwrap_or_else(|| format!("outbox-{}", self.id));
        let payload = serde_json::to_vec(&self.payload).expect("a JSON value always serializes");
        let mut headers = self.headers.clone();
        headers.insert("content-type".to_owned(), "application/json".to_owned());
        Message::from_parts(id, self.key.clone(), headers, payload)
    }
}
