//! Broker-agnostic messaging for the product pipeline.
//!
//! - [`Message`], [`Publisher`], [`Subscriber`] and [`Delivery`]: the contracts every broker
//!   backend implements (in-memory here, RabbitMQ in `mq-rabbit`, Kafka in `mq-kafka`).
//! - [`MemoryBroker`]: the embedded default backend.
//! - [`worker`]: runs a handler over a subscription with concurrency, retries, dead letters and
//!   graceful stop; [`dead_letters`]: list dead letters and redrive them to their topic.
//! - [`domain`]: users, products and the repository traits the store implements.
//! - [`trace_context`]: a consumer's span continues the publisher's trace (feature
//!   `opentelemetry`).
//! - `testkit` (feature `testkit`): the conformance scenarios every backend must pass.
//! - mockall mocks of every trait (feature `mock`).
//!
//! Delivery is at least once: a message is gone from a group only after a delivery of it was
//! acked, and a delivery that is nacked with requeue or dropped comes back.
#![warn(missing_docs)]

pub mod dead_letters;
mod delivery;
pub mod domain;
mod error;
pub mod memory;
mod message;
mod publisher;
mod subscriber;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trace_context;
pub mod worker;

pub use delivery::{Acknowledger, Delivery, Nack, Origin, Settlement};
pub use error::{BoxError, Error, Result, Retry};
pub use memory::{MemoryBroker, MemoryPublisher, MemorySubscriber};
pub use message::{dead_letter_topic, headers, Message};
pub use publisher::Publisher;
pub use subscriber::{DeliveryStream, Subscriber};

#[cfg(feature = "mock")]
pub use publisher::MockPublisher;
#[cfg(feature = "mock")]
pub use subscriber::MockSubscriber;
