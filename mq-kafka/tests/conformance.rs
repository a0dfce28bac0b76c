//! The Kafka backend passes every conformance scenario that applies to it.
//!
//! Needs `KAFKA_BROKERS` (e.g. `scripts/kafka.sh start` and `KAFKA_BROKERS=127.0.0.1:9092`);
//! skipped with a printed reason when unset, unless `REQUIRE_SERVICES=1`.

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
        // The test broker (Tansu, memory storage) loses every topic when restarted, so the test
        // cannot restart it without losing data the scenario expects to survive.
        restartable: false,
        // Group joins and rebalances take a few heartbeats.
        receive_timeout: Duration::from_secs(60),
        quiet_period: Duration::from_millis(1500),
    }
}

mq_core::conformance_tests!(async { common::factory_or_none().await }, capabilities());
