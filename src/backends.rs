//! Connecting the networked broker backends selected by cargo feature and `BROKER`.

use std::sync::Arc;

use mq_core::{Publisher, Subscriber};

use crate::app::StartupError;
use crate::Config;

/// Publisher and subscriber on RabbitMQ at `AMQP_URL`.
#[cfg(feature = "rabbit")]
pub async fn rabbit(
    config: &Config,
) -> Result<(Arc<dyn Publisher>, Arc<dyn Subscriber>), StartupError> {
    use mq_rabbit::{RabbitConfig, RabbitPublisher, RabbitSubscriber};
    let rabbit = RabbitConfig {
        prefetch: u16::try_from(config.worker_concurrency * 2).unwrap_or(u16::MAX),
        ..RabbitConfig::new(&config.amqp_url)
    };
    let publisher = RabbitPublisher::connect(rabbit.clone()).await?;
    // RabbitMQ routes only to queues that exist: declare the workers' queue now, so products
    // announced before the first worker starts wait in it instead of bouncing back to the outbox.
    publisher
        .declare_group(&config.products_topic(), &config.consumer_group)
        .await?;
    let subscriber = RabbitSubscriber::connect(rabbit).await?;
    Ok((Arc::new(publisher), Arc::new(subscriber)))
}

/// Publisher and subscriber on Kafka at `KAFKA_BROKERS`.
#[cfg(feature = "kafka")]
pub async fn kafka(
    config: &Config,
) -> Result<(Arc<dyn Publisher>, Arc<dyn Subscriber>), StartupError> {
    use mq_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};
    let kafka = KafkaConfig {
        partitions: config.kafka_partitions,
        ..KafkaConfig::new(&config.kafka_brokers)
    };
    let publisher = KafkaPublisher::new(kafka.clone())?;
    let subscriber = KafkaSubscriber::new(kafka)?;
    Ok((Arc::new(publisher), Arc::new(subscriber)))
}
