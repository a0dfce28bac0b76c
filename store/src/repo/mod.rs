//! The repository trait implementations for [`crate::Store`], one module per concern.

mod outbox;
mod products;
mod users;
