//! RabbitMQ backend for the [`mq_core`] messaging traits, built on [lapin](https://docs.rs/lapin).
//!
//! - [`RabbitPublisher`] implements [`mq_core::Publisher`]: persistent, mandatory publishes with
//!   publisher confirms, pipelined over a small pool of confirm channels.
//! - [`RabbitSubscriber`] implements [`mq_core::Subscriber`]: one durable quorum queue per
//!   (topic, group), manual acks, prefetch, attempt counts from `x-delivery-count`, dead letters
//!   to `<topic>.dlq`.
//! - Both reconnect on their own with backoff after a broker restart or a dropped connection,
//!   re-declare their topology and carry on; while disconnected, publishes fail fast with the
//!   transient [`mq_core::Error::Unavailable`].
//!
//! Topology: one durable **direct** exchange ([`RabbitConfig::exchange`], default `mq.topics`);
//! the routing key is the topic; the queue of a group is [`queue_name`]`(topic, group)` =
//! `<topic>::<group>`, a durable quorum queue bound with the topic.
//!
//! ```no_run
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use mq_core::{Message, Publisher, Subscriber};
//! use mq_rabbit::{RabbitConfig, RabbitPublisher, RabbitSubscriber};
//!
//! # async fn run() -> mq_core::Result<()> {
//! let config = RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f");
//! let subscriber: Arc<dyn Subscriber> = Arc::new(RabbitSubscriber::connect(config.clone()).await?);
//! let publisher: Arc<dyn Publisher> = Arc::new(RabbitPublisher::connect(config).await?);
//!
//! let mut deliveries = subscriber.subscribe("products.created", "image-workers").await?;
//! publisher.publish("products.created", Message::new("hello").with_key("7")).await?;
//! let delivery = deliveries.next().await.expect("stream is open")?;
//! assert_eq!(delivery.attempt(), 1);
//! delivery.ack().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod ack;
mod codec;
mod config;
mod connection;
mod in_flight;
mod publisher;
mod session;
mod subscriber;
mod topology;

pub use codec::{DELIVERY_COUNT_HEADER, KEY_HEADER};
pub use config::RabbitConfig;
pub use publisher::RabbitPublisher;
pub use subscriber::RabbitSubscriber;
pub use topology::queue_name;
