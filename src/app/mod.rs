//! Wiring: builds the database, broker and image pipeline from a [`Config`] and runs the API, the
//! outbox relay and the image worker, each optional, until a shutdown signal.

use std::sync::Arc;

use mq_core::{Publisher, Subscriber};
use product_pipeline_imaging::media::MediaStore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod parts;
mod running;
mod starting;

pub use crate::backends::connect_broker;
use crate::config::{BrokerKind, Config};
use crate::startup::Dependency;
pub use crate::startup::StartupError;
#[cfg(test)]
pub(crate) use parts::imaging_error;
pub use parts::{imaging_config, open_media, open_store};
pub use running::{Roles, Running};
use starting::Starting;

/// Starts the parts `roles` selects on the configured broker; they stop when `shutdown` is
/// cancelled.
///
/// The HTTP address is bound first, so `GET /healthz` answers while start-up waits (up to
/// `STARTUP_TIMEOUT`) for the broker, the media store and the database; `GET /readyz` answers
/// 503 until they are up. See [`crate::startup`].
pub async fn start(
    config: &Config,
    roles: Roles,
    shutdown: CancellationToken,
) -> Result<Running, StartupError> {
    if config.broker == BrokerKind::Memory && roles != Roles::ALL {
        warn!("BROKER=memory only reaches consumers in this process: run `pipeline`, or choose rabbit or kafka");
    }
    let starting = Starting::begin(config, roles, &shutdown).await?;
    let (publisher, subscriber) = starting
        .wait
        .until_up(Dependency::Broker, || connect_broker(config))
        .await?;
    // Some clients (Kafka) connect lazily: wait until the broker answers.
    starting
        .wait
        .until_up(Dependency::Broker, || async {
            Ok(publisher.health().await?)
        })
        .await?;
    let media = starting.open_media(config).await?;
    starting
        .finish(config, roles, publisher, subscriber, media, shutdown)
        .await
}

/// Like [`start`], on broker clients the caller connected (e.g. one [`MemoryBroker`](mq_core::MemoryBroker) shared by
/// an API and several workers in one process, or a wrapped publisher).
pub async fn start_with_broker(
    config: &Config,
    roles: Roles,
    publisher: Arc<dyn Publisher>,
    subscriber: Arc<dyn Subscriber>,
    shutdown: CancellationToken,
) -> Result<Running, StartupError> {
    let starting = Starting::begin(config, roles, &shutdown).await?;
    let media = starting.open_media(config).await?;
    starting
        .finish(config, roles, publisher, subscriber, media, shutdown)
        .await
}

/// Like [`start_with_broker`], on a media store the caller opened too (say, with its own
/// credentials provider, see [`MediaStore::from_object_store`]); `MEDIA_URL` is not read.
pub async fn start_with_parts(
    config: &Config,
    roles: Roles,
    publisher: Arc<dyn Publisher>,
    subscriber: Arc<dyn Subscriber>,
    media: MediaStore,
    shutdown: CancellationToken,
) -> Result<Running, StartupError> {
    Starting::begin(config, roles, &shutdown)
        .await?
        .finish(config, roles, publisher, subscriber, media, shutdown)
        .await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    info!("shutdown requested; finishing in-flight work");
}

/// What the example binaries do: starts `roles`, calls `on_started`, runs until SIGINT or
/// SIGTERM, then stops gracefully. A start-up error is printed (naming the setting at fault) and
/// turned into a failing exit code.
pub async fn run_until_signal(
    config: &Config,
    roles: Roles,
    on_started: impl FnOnce(&Running),
) -> std::process::ExitCode {
    let shutdown = CancellationToken::new();
    let running = match start(config, roles, shutdown.clone()).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    on_started(&running);
    shutdown_signal().await;
    shutdown.cancel();
    running.wait().await;
    std::process::ExitCode::SUCCESS
}
