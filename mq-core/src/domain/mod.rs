//! Domain types shared by the API, the store, the outbox relay and the image consumer.
//!
//! They carry no database or broker types, so every crate can use them.

mod idempotency;
mod outbox;
mod product;
mod repo;
mod user;

pub use idempotency::{Created, IdempotencyKey};
pub use outbox::{
    NewOutboxMessage, OutboxBacklog, OutboxMessage, PRODUCTS_CREATED_TOPIC, PRODUCTS_DELETED_TOPIC,
    PRODUCTS_PROCESSED_TOPIC, PRODUCTS_UPDATED_TOPIC, PRODUCT_EVENT_TOPICS,
};
pub use product::{
    ImageError, ImageRendition, NewProduct, Page, ProcessingResult, Product, ProductChange,
    ProductCreated, ProductEvent, ProductFilter, ProductPatch, ProductProcessed, ProductStatus,
    Recorded,
};
pub use repo::{OutboxRepo, ProductRepo, RepoError, UserRepo};
pub use user::{NewUser, User, UserFilter, UserPatch};

/// The types of the domain's public fields, re-exported so that code building or reading them
/// needs no `rust_decimal` or `chrono` dependency of its own, nor one whose version must match.
pub use chrono::{DateTime, Utc};
pub use rust_decimal::Decimal;

#[cfg(feature = "mock")]
pub use repo::{MockOutboxRepo, MockProductRepo, MockUserRepo};
