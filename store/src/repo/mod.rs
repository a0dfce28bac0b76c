//! The repository trait implementations for [`crate::Store`], one module per concern.

mod idempotency;
mod outbox;
mod products;
mod users;
