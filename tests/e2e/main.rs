//! End-to-end tests: the API, the outbox relay and the image worker over real databases and
//! brokers, with images served by a local HTTP server. Every combination runs every scenario.

mod dead_letters;
mod graceful_stop;
mod hostile_strings;
#[cfg(all(feature = "rabbit", feature = "postgres"))]
mod late_services;
mod lifecycle;
#[cfg(all(feature = "s3", feature = "rabbit", feature = "postgres"))]
mod media_on_s3;
mod memory_budget;
mod out_of_order;
#[cfg(all(feature = "rabbit", feature = "postgres"))]
mod proxy;
mod scenarios;
mod slow_servers;
mod support;
mod telemetry;

/// Every scenario, whichever module defines it.
mod all {
    pub use crate::dead_letters::products_dead_lettered_by_a_media_outage_are_redriven;
    pub use crate::graceful_stop::a_graceful_stop_logs_no_errors;
    pub use crate::hostile_strings::hostile_strings;
    pub use crate::lifecycle::*;
    pub use crate::out_of_order::events_in_any_order_converge;
    pub use crate::scenarios::*;
    pub use crate::slow_servers::slow_image_servers_do_not_hold_up_good_products;
    pub use crate::telemetry::one_trace_per_product;
}

/// One `#[tokio::test]` per scenario for a backend combination.
macro_rules! e2e_tests {
    ($stack:expr) => {
        e2e_tests!(@each $stack; images_end_done, missing_image_ends_partial, validation_rules,
            unknown_user_and_duplicate_mobile, list_filters_and_pagination, worker_stopped_mid_batch,
            broker_outage, poison_message, idempotent_creates, metrics_move, hostile_strings,
            slow_image_servers_do_not_hold_up_good_products,
            products_dead_lettered_by_a_media_outage_are_redriven, one_trace_per_product,
            a_graceful_stop_logs_no_errors, products_change_and_are_deleted,
            processed_events_reach_a_second_group, users_are_listed_changed_and_deleted,
            events_in_any_order_converge);
    };
    (@each $stack:expr; $($scenario:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                if let Some(stack) = $stack.await {
                    crate::all::$scenario(&stack).await;
                }
            }
        )*
    };
}

mod memory_sqlite {
    use crate::support::Stack;
    e2e_tests!(Stack::memory_sqlite());
}

#[cfg(all(feature = "rabbit", feature = "postgres"))]
mod rabbit_postgres {
    use crate::support::Stack;
    use product_pipeline::BrokerKind;
    e2e_tests!(Stack::networked_postgres(BrokerKind::Rabbit, "AMQP_URL"));
}

#[cfg(all(feature = "kafka", feature = "postgres"))]
mod kafka_postgres {
    use crate::support::Stack;
    use product_pipeline::BrokerKind;
    e2e_tests!(Stack::networked_postgres(
        BrokerKind::Kafka,
        "KAFKA_BROKERS"
    ));
}

/// Trace export over gRPC and to a collector that is down or hangs, and JSON logs, on the
/// embedded defaults.
mod telemetry_faults {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_dead_or_stalled_collector_holds_nothing_up() {
        crate::telemetry::a_dead_or_stalled_collector_holds_nothing_up().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_trace_per_product_over_grpc() {
        crate::telemetry::one_trace_per_product_over_grpc().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn json_logs_carry_the_trace_id() {
        crate::telemetry::json_logs_carry_the_trace_id().await;
    }
}

/// The worker's memory budget, on the embedded defaults.
mod memory {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_image_over_the_budget_fails_and_the_others_are_processed() {
        crate::memory_budget::an_image_over_the_budget_fails_and_the_others_are_processed().await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_large_images_stay_within_the_budget() {
        crate::memory_budget::many_large_images_stay_within_the_budget().await;
    }
}

/// Workers started before PostgreSQL or RabbitMQ accept connections.
#[cfg(all(feature = "rabbit", feature = "postgres"))]
mod late_start {
    use crate::late_services::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_worker_started_before_postgres_waits_and_then_processes() {
        a_worker_started_first_waits_and_then_processes(Late::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_worker_started_before_rabbitmq_waits_and_then_processes() {
        a_worker_started_first_waits_and_then_processes(Late::Rabbit).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn with_startup_timeout_0_a_worker_fails_at_once_without_postgres() {
        without_a_startup_timeout_a_worker_fails_at_once(Late::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_refusing_database_fails_at_once_while_waiting_is_allowed() {
        a_refusing_service_fails_at_once_while_waiting_is_allowed(Late::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn refused_rabbitmq_credentials_fail_at_once_while_waiting_is_allowed() {
        a_refusing_service_fails_at_once_while_waiting_is_allowed(Late::Rabbit).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn with_startup_timeout_0_a_worker_fails_at_once_without_rabbitmq() {
        without_a_startup_timeout_a_worker_fails_at_once(Late::Rabbit).await;
    }
}

#[cfg(all(feature = "s3", feature = "rabbit", feature = "postgres"))]
mod s3_rabbit_postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn separate_processes_share_the_bucket() {
        crate::media_on_s3::separate_processes_share_the_bucket().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_s3_outage_loses_nothing() {
        crate::media_on_s3::an_s3_outage_loses_nothing().await;
    }
}
