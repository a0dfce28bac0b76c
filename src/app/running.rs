//! What a process runs ([`Roles`]) and the handle of a started one ([`Running`]).

use std::net::SocketAddr;
use std::sync::Arc;

use mq_core::{Publisher, Subscriber};
use tokio::task::JoinSet;
use tracing::warn;

/// Which parts a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP API and the outbox relay.
    pub api: bool,
    /// The image worker.
    pub worker: bool,
}

impl Roles {
    /// API + relay + worker in one process (the `pipeline` example).
    pub const ALL: Roles = Roles {
        api: true,
        worker: true,
    };
    /// API + relay (the `api` example).
    pub const API: Roles = Roles {
        api: true,
        worker: false,
    };
    /// The image worker (the `worker` example).
    pub const WORKER: Roles = Roles {
        api: false,
        worker: true,
    };
}

/// A started service; [`Running::wait`] returns once it has stopped.
pub struct Running {
    /// Where the API listens, when it runs; in a worker-only process, where its health and
    /// metrics endpoints listen (`METRICS_ADDR`), if anywhere.
    pub http_addr: Option<SocketAddr>,
    pub(super) tasks: JoinSet<()>,
    pub(super) publisher: Arc<dyn Publisher>,
    pub(super) subscriber: Arc<dyn Subscriber>,
}

impl Running {
    /// Waits for every part to stop (after `shutdown` was cancelled), then closes the broker
    /// clients, which flushes outstanding publishes.
    pub async fn wait(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                warn!(%error, "a service task failed");
            }
        }
        if let Err(error) = self.publisher.close().await {
            warn!(%error, "closing the publisher");
        }
        if let Err(error) = self.subscriber.close().await {
            warn!(%error, "closing the subscriber");
        }
    }
}
