//! Connecting the broker `BROKER` selects: the in-memory one, or a networked backend compiled in
//! by its cargo feature.

use std::sync::Arc;

use mq_core::{MemoryBroker, Publisher, Subscriber};

use crate::config::{BrokerKind, Config};
use crate::startup::StartupError;

/// A connected publisher and subscriber.
pub type Broker = (Arc<dyn Publisher>, Arc<dyn Subscriber>);

/// Connects the configured broker and declares the workers' consumer group on the product event
/// topics ([`Subscriber::declare`]), so events announced before the first worker starts wait for
/// it.
/// The in-memory broker is shared by the publisher and the subscriber of this process.
pub async fn connect_broker(config: &Config) -> Result<Broker, StartupError> {
    let (publisher, subscriber): Broker = match config.broker {
        BrokerKind::Memory => {
            let broker = MemoryBroker::new();
            (Arc::new(broker.publisher()), Arc::new(broker.subscriber()))
        }
        #[cfg(feature = "rabbit")]
        BrokerKind::Rabbit => rabbit(config).await?,
        #[cfg(feature = "kafka")]
        BrokerKind::Kafka => kafka(config)?,
        #[allow(unreachable_patterns)] // when every backend is compiled in
        missing => {
            return Err(StartupError::Config {
                setting: "BROKER",
                reason: format!(
                    "`{name}` needs the `{name}` cargo feature (cargo run --features {name} ...)",
                    name = missing.name()
                ),
            })
        }
    };
    for topic in config.product_event_topics() {
        subscriber.declare(&topic, &config.consumer_group).await?;
    }
    Ok((publisher, subscriber))
}

/// Publisher and subscriber on RabbitMQ at `AMQP_URL`.
#[cfg(feature = "rabbit")]
async fn rabbit(config: &Config) -> Result<Broker, StartupError> {
    use mq_rabbit::{RabbitPublisher, RabbitSubscriber};
    let rabbit = rabbit_config(config);
    let publisher = RabbitPublisher::connect(rabbit.clone()).await?;
    let subscriber = RabbitSubscriber::connect(rabbit).await?;
    Ok((Arc::new(publisher), Arc::new(subscriber)))
}

/// The RabbitMQ settings `config` selects: `AMQP_URL`, a prefetch of two deliveries per worker
/// slot, and `AMQP_QUEUE_EXPIRES` (0: queues never expire).
#[cfg(feature = "rabbit")]
fn rabbit_config(config: &Config) -> mq_rabbit::RabbitConfig {
    mq_rabbit::RabbitConfig {
        prefetch: u16::try_from(config.worker_concurrency * 2).unwrap_or(u16::MAX),
        queue_expires: (config.amqp_queue_expires > 0)
            .then(|| std::time::Duration::from_secs(config.amqp_queue_expires)),
        ..mq_rabbit::RabbitConfig::new(&config.amqp_url)
    }
}

/// Publisher and subscriber on Kafka at `KAFKA_BROKERS`.
#[cfg(feature = "kafka")]
fn kafka(config: &Config) -> Result<Broker, StartupError> {
    use mq_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};
    let kafka = KafkaConfig {
        partitions: config.kafka_partitions,
        ..KafkaConfig::new(&config.kafka_brokers)
    };
    let publisher = KafkaPublisher::new(kafka.clone())?;
    let subscriber = KafkaSubscriber::new(kafka)?;
    Ok((Arc::new(publisher), Arc::new(subscriber)))
}

#[cfg(all(test, feature = "rabbit"))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn amqp_queue_expires_reaches_the_queues_and_zero_keeps_them() {
        let mut config = Config::from_env().unwrap();
        config.amqp_queue_expires = 0;
        assert_eq!(rabbit_config(&config).queue_expires, None);
        config.amqp_queue_expires = 300;
        assert_eq!(
            rabbit_config(&config).queue_expires,
            Some(Duration::from_secs(300))
        );
    }
}
