//! The Kafka backend passes every conformance scenario that applies to it.
//!
//! Needs `KAFKA_BROKERS` (e.g. `scripts/kafka.sh start` and `KAFKA_BROKERS=127.0.0.1:9092`);
//! skipped with a printed reason when unset, unless `REQUIRE_SERVICES=1`. The broker-restart
//! scenario needs `KAFKA_RESTART_BROKERS` and `KAFKA_RESTART_COMMAND` (`scripts/services.sh start`).

mod common;

use mq_core::testkit::Capabilities;

mq_core::conformance_tests!(
    async { common::factory_or_none().await },
    common::capabilities()
);

/// `reconnect_after_restart` on a broker of its own that keeps its data in S3 (Tansu with S3
/// storage), killed with SIGKILL mid-scenario and started again: the other scenarios share the
/// in-memory broker, which a restart would empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnect_after_broker_crash() {
    if let Some(factory) = common::restartable_factory_or_none().await {
        let caps = Capabilities {
            restartable: true,
            ..common::capabilities()
        };
        mq_core::testkit::reconnect_after_restart(&factory, &caps).await;
    }
}
