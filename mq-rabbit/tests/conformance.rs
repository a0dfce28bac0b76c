//! Every conformance scenario of `mq_core::testkit` against a real RabbitMQ (`AMQP_URL`).
//!
//! `restart_broker` force-closes only the connections of the scenario's own factory (each factory
//! names its connections uniquely), so the reconnect scenario runs in this binary alongside the
//! others without disturbing them.

mod common;

use std::time::Duration;

use mq_core::testkit::Capabilities;

fn capabilities() -> Capabilities {
    Capabilities {
        // Quorum queues are durable and keep unacked messages for the next consumer.
        persistent: true,
        // One consumer per queue receives in queue order.
        ordered_per_key: true,
        consumer_groups: true,
        restartable: true,
        receive_timeout: Duration::from_secs(30),
        quiet_period: Duration::from_millis(500),
    }
}

mq_core::conformance_tests!(async { common::factory_or_none().await }, capabilities());
