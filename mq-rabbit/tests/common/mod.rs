//! The test factory: RabbitMQ from `AMQP_URL`, one connection name per factory so that
//! `restart_broker` forcibly closes this scenario's connections only.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mq_core::testkit::{BackendFactory, Capabilities};
use mq_core::{Publisher, Subscriber};
use mq_rabbit::{RabbitConfig, RabbitPublisher, RabbitSubscriber};

/// Queues of test runs delete themselves once unused for this long (`x-expires`).
pub const QUEUE_EXPIRES: Duration = Duration::from_secs(60);

/// What the RabbitMQ backend can do.
pub fn capabilities() -> Capabilities {
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

/// Creates RabbitMQ publishers and subscribers for the conformance kit.
pub struct Rabbit {
    pub config: RabbitConfig,
    pub connection_name: String,
}

/// `None` (after printing why) when `AMQP_URL` is unset, unless `REQUIRE_SERVICES=1`.
pub async fn factory_or_none() -> Option<Rabbit> {
    let url = testsupport::service_var("AMQP_URL", "e.g. amqp://guest:guest@127.0.0.1:5672/%2f")?;
    let connection_name = testsupport::unique_name("mq-rabbit-test");
    let config = RabbitConfig::new(url)
        .with_queue_expires(QUEUE_EXPIRES)
        .with_connection_name(connection_name.clone())
        .with_exchange("kit.mq-rabbit");
    Some(Rabbit {
        config,
        connection_name,
    })
}

#[async_trait::async_trait]
impl BackendFactory for Rabbit {
    async fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(
            RabbitPublisher::connect(self.config.clone())
                .await
                .expect("connect publisher"),
        )
    }

    async fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::new(
            RabbitSubscriber::connect(self.config.clone())
                .await
                .expect("connect subscriber"),
        )
    }

    /// Forcibly closes every connection of this factory (as `rabbitmqctl close_all_connections`
    /// would, but without disturbing other tests or other users of the broker).
    async fn restart_broker(&self) {
        let name = self.connection_name.clone();
        let closed = tokio::task::spawn_blocking(move || close_connections_named(&name))
            .await
            .expect("rabbitmqctl task");
        assert!(closed > 0, "no connection of this test was found to close");
    }
}

/// Closes the connections whose client-provided name is `name`; returns how many.
pub fn close_connections_named(name: &str) -> usize {
    let output = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--silent"])
        .output()
        .expect("run rabbitmqctl (needs root or the rabbitmq user)");
    assert!(
        output.status.success(),
        "rabbitmqctl list_connections failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(name)) {
        // `<rabbit@host.1234.0>\t[{"product",...},{"connection_name",...}]`
        let pid = line.split_whitespace().next().expect("pid column");
        let status = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test: forced close"])
            .output()
            .expect("run rabbitmqctl close_connection");
        assert!(
            status.status.success(),
            "close_connection {pid} failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        closed += 1;
    }
    closed
}
