//! The product pipeline's database layer: sea-orm entities, migrations, the repositories and
//! the transactional outbox, on PostgreSQL (feature `postgres`) and SQLite (feature `sqlite`).
//!
//! [`Store`] implements [`UserRepo`], [`ProductRepo`] and [`OutboxRepo`] from
//! `mq_core::domain` over one sea-orm [`DatabaseConnection`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), mq_core::domain::RepoError> {
//! use mq_core::domain::ProductRepo;
//! use product_pipeline_store::{Store, StoreOptions};
//!
//! // Connects and applies pending migrations.
//! let store = Store::connect("sqlite://data/pipeline.db", StoreOptions::default()).await?;
//! store.ping().await?;
//! # Ok(()) }
//! ```
//!
//! - Creating a product inserts the product and its `products.created` outbox row in one
//!   transaction.
//! - Idempotent creates store the client's key, with a snapshot of the created row, in the
//!   transaction that creates the row; a retry with the same key and request gets that snapshot
//!   back ([`mq_core::domain::Created::Replayed`]) and creates nothing.
//! - Relays claim outbox rows with a lease. On PostgreSQL any number of relays may run at once
//!   (`FOR UPDATE SKIP LOCKED`); on SQLite run one relay per database file (claims are atomic,
//!   but the lease uses each process's clock).
//! - Prices are [`rust_decimal::Decimal`] end to end: `numeric(12,2)` on PostgreSQL, integer
//!   cents on SQLite; never a float. Timestamps are UTC.
//! - Errors: [`RepoError::UnknownUser`] (foreign key), [`RepoError::DuplicateMobile`] (unique),
//!   [`RepoError::IdempotencyKeyReused`], [`RepoError::NotFound`], [`RepoError::Unavailable`]
//!   (connection, pool, server shutdown, SQLite busy) and [`RepoError::Other`].
#![warn(missing_docs)]

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
compile_error!("enable at least one of the features `postgres` and `sqlite`");

mod dialect;
pub mod entities;
mod error;
pub mod migration;
mod repo;
mod store;

pub use mq_core::domain::{OutboxRepo, ProductRepo, RepoError, UserRepo};
pub use sea_orm::DatabaseConnection;
pub use store::{migrate, Store, StoreOptions};
