//! The `idempotency_keys` table: a client's key, what the request asked for and what it created.

use sea_orm::entity::prelude::*;

/// A row of `idempotency_keys`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// What the key creates: `users` or `products`. Each scope has keys of its own.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub scope: String,
    /// The key as the client sent it.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub key: String,
    /// A digest of the request; the same key with another fingerprint is refused.
    #[sea_orm(column_type = "Text")]
    pub fingerprint: String,
    /// The created row as the first call returned it (JSON text).
    #[sea_orm(column_type = "Text")]
    pub response: String,
    /// Insert time (UTC).
    pub created_at: DateTimeUtc,
    /// From then on the key is forgotten and may be used afresh.
    pub expires_at: DateTimeUtc,
}

/// `idempotency_keys` has no relations: the snapshot outlives changes to the row it describes.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
