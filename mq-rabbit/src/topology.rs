//! Idempotent topology: one durable direct exchange, one durable quorum queue per (topic, group)
//! bound with the topic as routing key.
//!
//! Declaring what already exists with the same arguments is a no-op on the broker, so every
//! (re)connection and every subscription simply declares again.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use mq_core::Result;

use crate::codec::lapin_error;
use crate::RabbitConfig;

/// The queue that holds the messages of `topic` for consumer group `group`: `<topic>::<group>`.
///
/// `::` (rather than `.`) keeps names unambiguous for dotted topics and groups: topic `a.b` with
/// group `c` and topic `a` with group `b.c` get different queues.
///
/// ```
/// assert_eq!(mq_rabbit::queue_name("products.created", "workers"), "products.created::workers");
/// ```
pub fn queue_name(topic: &str, group: &str) -> String {
    format!("{topic}::{group}")
}

/// The queue arguments: quorum queue, plus `x-expires` when configured.
pub(crate) fn queue_arguments(config: &RabbitConfig) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    if let Some(expires) = config.queue_expires {
        let millis = i64::try_from(expires.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        arguments.insert(
            ShortString::from("x-expires"),
            AMQPValue::LongLongInt(millis),
        );
    }
    arguments
}

/// Declares the exchange every topic is published to.
pub(crate) async fn declare_exchange(channel: &Channel, config: &RabbitConfig) -> Result<()> {
    channel
        .exchange_declare(
            &config.exchange,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| lapin_error(&format!("declaring exchange `{}`", config.exchange), e))
}

/// Declares the queue of (`topic`, `group`) and binds it; returns the queue name.
pub(crate) async fn declare_group_queue(
    channel: &Channel,
    config: &RabbitConfig,
    topic: &str,
    group: &str,
) -> Result<String> {
    let queue = queue_name(topic, group);
    channel
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_arguments(config),
        )
        .await
        .map_err(|e| lapin_error(&format!("declaring queue `{queue}`"), e))?;
    channel
        .queue_bind(
            &queue,
            &config.exchange,
            topic,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| lapin_error(&format!("binding queue `{queue}` to topic `{topic}`"), e))?;
    Ok(queue)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dotted_names_do_not_collide() {
        assert_ne!(queue_name("a.b", "c"), queue_name("a", "b.c"));
    }

    #[test]
    fn quorum_queues_with_optional_expiry() {
        let config = RabbitConfig::new("amqp://x");
        let arguments = queue_arguments(&config);
        assert_eq!(
            arguments.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert!(!arguments.contains_key("x-expires"));
        let arguments = queue_arguments(&config.with_queue_expires(Duration::from_secs(60)));
        assert_eq!(
            arguments.inner().get("x-expires"),
            Some(&AMQPValue::LongLongInt(60_000))
        );
    }
}
