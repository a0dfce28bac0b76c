//! The Kafka backend passes every conformance scenario that applies to it.
//!
//! Needs `KAFKA_BROKERS` (e.g. `scripts/kafka.sh start` and `KAFKA_BROKERS=127.0.0.1:9092`);
//! skipped with a printed reason when unset, unless `REQUIRE_SERVICES=1`. The broker-restart
//! scenario needs `KAFKA_RESTART_BROKERS` and `KAFKA_RESTART_COMMAND` (`scripts/services.sh start`).

mod common;

use std::time::Duration;

use mq_core::testkit::Capabilities;

fn capabilities() -> Capabilities {
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

mq_core::conformance_tests!(async { common::factory_or_none().await }, capabilities());

/// `reconnect_after_restart` on a broker of its own that keeps its data in S3 (Tansu with S3
/// storage), killed with SIGKILL mid-scenario and started again: the other scenarios share the
/// in-memory broker, which a restart would empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnect_after_broker_crash() {
    if let Some(factory) = common::restartable_factory_or_none().await {
        let caps = Capabilities {
            restartable: true,
            ..capabilities()
        };
        mq_core::testkit::reconnect_after_restart(&factory, &caps).await;
    }
}
