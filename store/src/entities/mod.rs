//! sea-orm entities for the four tables.
//!
//! The column types are the portable ones; where PostgreSQL and SQLite store a value differently
//! (the price), the entity uses [`StoredPrice`], which carries either form. Read and write rows
//! through [`crate::Store`] rather than these entities directly: the store picks the right form
//! for the connected backend and converts rows into the `mq_core::domain` types.

pub mod idempotency_key;
pub mod outbox;
pub mod product;
mod types;
pub mod user;

pub use types::{HeaderMap, ImageErrorList, RenditionList, StoredPrice, TextList};
