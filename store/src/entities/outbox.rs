//! The `outbox` table: messages written in the same transaction as the rows they announce.

use mq_core::domain::OutboxMessage;
use sea_orm::entity::prelude::*;

use super::HeaderMap;

/// A row of `outbox`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Primary key; rows are published in id order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Destination topic.
    pub topic: String,
    /// Message key (ordering / partitioning), if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub message_key: Option<String>,
    /// Message headers (JSON object).
    #[sea_orm(column_type = "JsonBinary")]
    pub headers: HeaderMap,
    /// Message payload (JSON).
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    /// Insert time (UTC).
    pub created_at: DateTimeUtc,
    /// Set once the broker confirmed the message; `NULL` while unpublished.
    pub published_at: Option<DateTimeUtc>,
    /// A relay holds the row until then; `NULL` or past when free.
    pub locked_until: Option<DateTimeUtc>,
    /// Failed publish attempts.
    pub attempts: i32,
    /// The last publish error, if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
}

/// The outbox has no relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<Model> for OutboxMessage {
    fn from(m: Model) -> Self {
        OutboxMessage {
            id: m.id,
            topic: m.topic,
            key: m.message_key,
            headers: m.headers.0,
            payload: m.payload,
            attempts: m.attempts,
            created_at: m.created_at,
        }
    }
}
