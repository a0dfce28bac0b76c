//! Shared set-up of the integration tests: the broker comes from `KAFKA_BROKERS`; the broker the
//! restart scenario may crash comes from `KAFKA_RESTART_BROKERS` (see `scripts/kafka.sh start-s3`).
#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mq_core::testkit::{BackendFactory, Capabilities};
use mq_core::{Publisher, Subscriber};
use mq_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};

/// Config for the test broker, tuned for quick group joins; `None` (after printing why) when
/// `KAFKA_BROKERS` is unset, a panic instead when `REQUIRE_SERVICES=1`.
pub fn config() -> Option<KafkaConfig> {
    init_logs();
    match KafkaConfig::from_env() {
        Some(config) => Some(tuned(config)),
        None => testsupport::missing_service(
            "KAFKA_BROKERS",
            "scripts/kafka.sh start, then KAFKA_BROKERS=127.0.0.1:9092",
        ),
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// Short sessions and commit intervals, so group joins, rebalances and commits take moments.
fn tuned(mut config: KafkaConfig) -> KafkaConfig {
    config.partitions = 2;
    config.session_timeout = Duration::from_secs(6);
    config.heartbeat_interval = Duration::from_millis(200);
    config.rebalance_timeout = Duration::from_secs(6);
    config.commit_interval = Duration::from_millis(50);
    if let Ok(debug) = std::env::var("MQ_KAFKA_DEBUG") {
        config = config.with_property("debug", debug);
    }
    config
}

/// Creates Kafka publishers and subscribers for the conformance kit.
pub struct Kafka {
    pub config: KafkaConfig,
    /// A shell command that kills the broker (`kill -9`) and starts it again on the same data;
    /// `None` for a broker the tests must not restart.
    pub restart: Option<String>,
}

#[async_trait::async_trait]
impl BackendFactory for Kafka {
    async fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(KafkaPublisher::new(self.config.clone()).expect("kafka publisher"))
    }

    async fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::new(KafkaSubscriber::new(self.config.clone()).expect("kafka subscriber"))
    }

    async fn restart_broker(&self) {
        let command = self
            .restart
            .clone()
            .expect("this broker is not restartable: use restartable_factory_or_none");
        let output = tokio::task::spawn_blocking(move || {
            Command::new("sh").arg("-c").arg(&command).output()
        })
        .await
        .expect("restart task")
        .expect("run the restart command");
        assert!(
            output.status.success(),
            "restarting the broker failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The factory of the shared test broker (never restarted).
pub async fn factory_or_none() -> Option<Kafka> {
    config().map(|config| Kafka {
        config,
        restart: None,
    })
}

/// The factory of the broker that keeps its data across a crash (Tansu on S3 storage), with
/// `KAFKA_RESTART_COMMAND` to crash and restart it. One test only uses it, so no other test
/// sees the restart.
pub async fn restartable_factory_or_none() -> Option<Kafka> {
    init_logs();
    let how = "scripts/services.sh start sets it (scripts/kafka.sh start-s3)";
    let brokers = testsupport::service_var("KAFKA_RESTART_BROKERS", how)?;
    let restart = testsupport::service_var("KAFKA_RESTART_COMMAND", how)?;
    Some(Kafka {
        config: tuned(KafkaConfig::new(&brokers)),
        restart: Some(restart),
    })
}

/// What the Kafka backend can do, and how long its group joins take.
pub fn capabilities() -> Capabilities {
    Capabilities {
        // Committed offsets (and un-acked records) outlive a subscriber.
        persistent: true,
        // One key, one partition; the subscriber never hands out a key's next record while an
        // earlier one is in flight.
        ordered_per_key: true,
        consumer_groups: true,
        // The shared test broker (Tansu, memory storage) loses every topic when restarted: the
        // restart scenario runs on a broker of its own below.
        restartable: false,
        // Group joins and rebalances take a few heartbeats.
        receive_timeout: Duration::from_secs(60),
        quiet_period: Duration::from_millis(1500),
    }
}
