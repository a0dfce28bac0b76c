//! Shared set-up of the integration tests: the broker comes from `KAFKA_BROKERS`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mq_core::testkit::BackendFactory;
use mq_core::{Publisher, Subscriber};
use mq_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};

/// Config for the test broker, tuned for quick group joins; `None` (after printing why) when
/// `KAFKA_BROKERS` is unset, a panic instead when `REQUIRE_SERVICES=1`.
pub fn config() -> Option<KafkaConfig> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    match KafkaConfig::from_env() {
        Some(mut config) => {
            config.partitions = 2;
            config.session_timeout = Duration::from_secs(6);
            config.heartbeat_interval = Duration::from_millis(200);
            config.rebalance_timeout = Duration::from_secs(6);
            config.commit_interval = Duration::from_millis(50);
            if let Ok(debug) = std::env::var("MQ_KAFKA_DEBUG") {
                config = config.with_property("debug", debug);
            }
            Some(config)
        }
        None if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("REQUIRE_SERVICES=1 but KAFKA_BROKERS is not set (run scripts/kafka.sh start)")
        }
        None => {
            eprintln!("skipped: KAFKA_BROKERS is not set (scripts/kafka.sh start, then KAFKA_BROKERS=127.0.0.1:9092)");
            None
        }
    }
}

/// Creates Kafka publishers and subscribers for the conformance kit.
pub struct Kafka(pub KafkaConfig);

#[async_trait::async_trait]
impl BackendFactory for Kafka {
    async fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(KafkaPublisher::new(self.0.clone()).expect("kafka publisher"))
    }

    async fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::new(KafkaSubscriber::new(self.0.clone()).expect("kafka subscriber"))
    }
}

pub async fn factory_or_none() -> Option<Kafka> {
    config().map(Kafka)
}
