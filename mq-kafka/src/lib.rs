//! Kafka backend for the `mq-core` messaging traits, built on rdkafka (bundled librdkafka).
//!
//! - [`KafkaPublisher`]: idempotent producer (`acks=all`); a publish resolves on the delivery
//!   report; the key picks the partition; the message id and headers travel as Kafka headers.
//! - [`KafkaSubscriber`]: consumer-group member with at-least-once commits of the contiguous
//!   acked prefix per partition, local redelivery of nacked and dropped deliveries, order per
//!   key, dead letters to `<topic>.dlq`.
//! - [`KafkaConfig`]: brokers, partition count of auto-created topics, timeouts.
//!
//! ```no_run
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use mq_core::{Message, Publisher, Subscriber};
//! use mq_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};
//!
//! # async fn run() -> mq_core::Result<()> {
//! let config = KafkaConfig::new("127.0.0.1:9092").with_partitions(4);
//! let publisher: Arc<dyn Publisher> = Arc::new(KafkaPublisher::new(config.clone())?);
//! let subscriber: Arc<dyn Subscriber> = Arc::new(KafkaSubscriber::new(config)?);
//!
//! let mut deliveries = subscriber.subscribe("products.created", "image-workers").await?;
//! publisher.publish("products.created", Message::new("42").with_key("42")).await?;
//! let delivery = deliveries.next().await.expect("open")?;
//! delivery.ack().await?;
//! subscriber.close().await?;
//! publisher.close().await
//! # }
//! ```
#![warn(missing_docs)]

mod admin;
mod codec;
mod config;
mod consumer;
pub mod error;
mod fast_hash;
pub mod offsets;
mod partition_queue;
mod producer;

pub use config::KafkaConfig;
pub use consumer::{ack_log_topic, KafkaSubscriber};
pub use producer::KafkaPublisher;
