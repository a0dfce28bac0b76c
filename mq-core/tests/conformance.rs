//! The in-memory broker passes every conformance scenario that applies to it.

use std::sync::Arc;
use std::time::Duration;

use mq_core::testkit::{BackendFactory, Capabilities};
use mq_core::{MemoryBroker, Publisher, Subscriber};

struct Memory(MemoryBroker);

#[async_trait::async_trait]
impl BackendFactory for Memory {
    async fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(self.0.publisher())
    }

    async fn subscriber(&self) -> Arc<dyn Subscriber> {
        Arc::new(self.0.subscriber())
    }
}

fn capabilities() -> Capabilities {
    Capabilities {
        // Un-acked messages outlive their subscriber (not the process).
        persistent: true,
        ordered_per_key: true,
        consumer_groups: true,
        // The broker lives in this process: there is nothing to restart.
        restartable: false,
        receive_timeout: Duration::from_secs(10),
        quiet_period: Duration::from_millis(200),
    }
}

mq_core::conformance_tests!(async { Some(Memory(MemoryBroker::new())) }, capabilities());
