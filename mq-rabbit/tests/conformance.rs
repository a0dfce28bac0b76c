//! Every conformance scenario of `mq_core::testkit` against a real RabbitMQ (`AMQP_URL`).
//!
//! `restart_broker` force-closes only the connections of the scenario's own factory (each factory
//! names its connections uniquely), so the reconnect scenario runs in this binary alongside the
//! others without disturbing them.

mod common;

mq_core::conformance_tests!(
    async { common::factory_or_none().await },
    common::capabilities()
);
