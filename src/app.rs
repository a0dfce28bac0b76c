//! Wiring: builds the database, broker and image pipeline from a [`Config`] and runs the API, the
//! outbox relay and the image worker, each optional, until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mq_core::worker::{Worker, WorkerConfig};
use mq_core::{Publisher, Subscriber};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use product_pipeline_imaging::media::MediaStore;

use crate::api::{self, AppState, Front, HttpLimits, MediaLinks};
pub use crate::backends::connect_broker;
use crate::config::{BrokerKind, Config};
use crate::consumer::ImageConsumer;
use crate::outbox_retention::{OutboxRetention, RetentionConfig};
use crate::prometheus::{self, MetricsEndpoint};
use crate::relay::{OutboxRelay, RelayConfig};
pub use crate::startup::StartupError;
use crate::startup::{Dependency, StartupWait};

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
    tasks: JoinSet<()>,
    publisher: Arc<dyn Publisher>,
    subscriber: Arc<dyn Subscriber>,
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

/// Opens the database (running migrations).
pub async fn open_store(config: &Config) -> Result<product_pipeline_store::Store, StartupError> {
    let url = config.database_url.as_str();
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if postgres && !cfg!(feature = "postgres") {
        return Err(StartupError::Config {
            setting: "DATABASE_URL",
            reason:
                "PostgreSQL needs the `postgres` cargo feature (cargo run --features postgres ...)"
                    .into(),
        });
    }
    if !postgres && !url.starts_with("sqlite:") {
        return Err(StartupError::Config {
            setting: "DATABASE_URL",
            reason: format!("`{url}` is neither a sqlite:// nor a postgres:// URL"),
        });
    }
    let options = product_pipeline_store::StoreOptions {
        max_connections: config.database_max_connections,
        schema: config.database_schema.clone(),
        ..product_pipeline_store::StoreOptions::default()
    };
    Ok(product_pipeline_store::Store::connect(url, options).await?)
}

/// Opens the media store `MEDIA_URL` (or `MEDIA_DIR`) names and checks that it answers, so a
/// bad URL, a missing feature, a missing bucket or refused credentials fail at start.
pub async fn open_media(config: &Config) -> Result<MediaStore, StartupError> {
    let setting = config.media_setting();
    let failed = |source| StartupError::Media { setting, source };
    let location = config
        .media_location()
        .map_err(|(setting, reason)| StartupError::Config { setting, reason })?;
    let media = MediaStore::at(&location).map_err(failed)?;
    media.check().await.map_err(failed)?;
    info!(%media, "media store");
    Ok(media)
}

/// The image pipeline settings from the configuration.
pub fn imaging_config(config: &Config) -> product_pipeline_imaging::ImagingConfig {
    product_pipeline_imaging::ImagingConfig {
        max_bytes: config.max_image_bytes,
        fetch_budget: Duration::from_secs(config.image_fetch_budget),
        min_transfer_rate: config.image_fetch_min_rate,
        transfer_grace: Duration::from_secs(config.image_fetch_grace),
        allow_private_hosts: config.allow_private_image_hosts,
        target_size: config.image_size,
        jpeg_quality: config.jpeg_quality,
        memory_budget: (config.worker_memory_budget > 0).then_some(config.worker_memory_budget),
        ..product_pipeline_imaging::ImagingConfig::default()
    }
}

/// An image-pipeline error at start; a setting at fault is named as [`Config`] names it.
fn imaging_error(error: product_pipeline_imaging::ImagingError) -> StartupError {
    match error {
        product_pipeline_imaging::ImagingError::Config { setting, reason } => {
            StartupError::Config {
                setting: match setting {
                    "memory_budget" => "WORKER_MEMORY_BUDGET",
                    "max_bytes" => "MAX_IMAGE_BYTES",
                    "fetch_budget" => "IMAGE_FETCH_BUDGET",
                    "transfer_grace" => "IMAGE_FETCH_GRACE",
                    "target_size" => "IMAGE_SIZE",
                    "jpeg_quality" => "JPEG_QUALITY",
                    other => other,
                },
                reason,
            }
        }
        other => other.into(),
    }
}

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

/// A start in progress: the HTTP address is bound and served by a [`Front`] that answers
/// `/healthz` while the dependencies are awaited. Dropping it (start-up failed) closes the
/// listener.
struct Starting {
    tasks: JoinSet<()>,
    front: Option<(Front, SocketAddr)>,
    wait: StartupWait,
}

impl Starting {
    /// Binds the address this process serves, if any: `HTTP_ADDR` for the API, `METRICS_ADDR`
    /// for a worker-only process that has one.
    async fn begin(
        config: &Config,
        roles: Roles,
        shutdown: &CancellationToken,
    ) -> Result<Starting, StartupError> {
        let mut tasks = JoinSet::new();
        let mut wait = StartupWait::new(config.startup_wait(), shutdown.clone());
        let addr = match (roles.api, roles.worker, config.metrics_addr) {
            (true, _, _) => Some((config.http_addr, "HTTP_ADDR")),
            (false, true, Some(addr)) => Some((addr, "METRICS_ADDR")),
            _ => None,
        };
        let mut front = None;
        if let Some((addr, setting)) = addr {
            let served = Front::new();
            let limits = config
                .connection_limits(crate::server::descriptor_limit())
                .map_err(|(setting, reason)| StartupError::Config { setting, reason })?;
            let grace = config.shutdown_grace();
            let addr = serve(
                served.router(),
                addr,
                setting,
                limits,
                grace,
                &mut tasks,
                shutdown,
            )
            .await?;
            wait = wait.reporting_to(served.clone());
            front = Some((served, addr));
        }
        Ok(Starting { tasks, front, wait })
    }

    /// [`open_media`], waiting for a store that is not reachable yet.
    async fn open_media(&self, config: &Config) -> Result<MediaStore, StartupError> {
        self.wait
            .until_up(Dependency::Media, || open_media(config))
            .await
    }

    /// Opens the database (waiting for it), then starts the parts `roles` selects and hands the
    /// front its real router.
    async fn finish(
        mut self,
        config: &Config,
        roles: Roles,
        publisher: Arc<dyn Publisher>,
        subscriber: Arc<dyn Subscriber>,
        media: MediaStore,
        shutdown: CancellationToken,
    ) -> Result<Running, StartupError> {
        let store = self
            .wait
            .until_up(Dependency::Database, || open_store(config))
            .await?;
        let tasks = &mut self.tasks;
        if let Some((front, _)) = &self.front {
            if roles.api {
                let relay_config = RelayConfig {
                    topic_prefix: config.topic_prefix.clone(),
                    messaging_system: config.broker.messaging_system(),
                    ..RelayConfig::default()
                };
                let relay =
                    OutboxRelay::new(Arc::new(store.clone()), publisher.clone(), relay_config);
                let state = AppState {
                    outbox_wakeup: relay.wakeup(),
                    ..app_state(config, &store, &publisher, &media)?
                };
                tasks.spawn(relay.run(shutdown.clone()));
                let retention = RetentionConfig {
                    retention: config.outbox_retention(),
                    ..RetentionConfig::default()
                };
                let retention = OutboxRetention::new(Arc::new(store.clone()), retention);
                tasks.spawn(retention.run(shutdown.clone()));
                front.open(api::router(state));
            } else {
                let state = app_state(config, &store, &publisher, &media)?;
                front.open(api::operations_router(state));
            }
        }

        if roles.worker {
            spawn_worker(config, store, subscriber.clone(), media, tasks, &shutdown)?;
        }

        Ok(Running {
            http_addr: self.front.map(|(_, addr)| addr),
            tasks: self.tasks,
            publisher,
            subscriber,
        })
    }
}

/// Starts the image worker on `subscriber`; it cancels `shutdown` if it stops with an error.
fn spawn_worker(
    config: &Config,
    store: product_pipeline_store::Store,
    subscriber: Arc<dyn Subscriber>,
    media: MediaStore,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<(), StartupError> {
    let images = product_pipeline_imaging::Imaging::new(imaging_config(config), media)
        .map_err(imaging_error)?;
    let consumer = ImageConsumer::new(Arc::new(store), Arc::new(images));
    let worker = Worker::new(
        subscriber,
        config.products_topic(),
        &config.consumer_group,
        consumer,
    )
    .with_config(WorkerConfig {
        concurrency: config.worker_concurrency as usize,
        max_attempts: config.worker_max_attempts,
        shutdown_timeout: config.shutdown_grace(),
        ..WorkerConfig::default()
    });
    let stop = shutdown.clone();
    tasks.spawn(async move {
        info!("image worker running");
        if let Err(error) = worker.run(stop.clone()).await {
            warn!(%error, "the image worker stopped with an error");
            stop.cancel();
        }
    });
    Ok(())
}

/// What the HTTP endpoints share. Installs the Prometheus recorder, so a process that serves no
/// endpoint keeps no metrics.
fn app_state(
    config: &Config,
    store: &product_pipeline_store::Store,
    publisher: &Arc<dyn Publisher>,
    media: &MediaStore,
) -> Result<AppState, StartupError> {
    Ok(AppState {
        publisher: Some(publisher.clone()),
        media_links: config
            .media_public_url
            .as_ref()
            .map_or_else(MediaLinks::default, MediaLinks::public),
        limits: HttpLimits {
            body_bytes: config.http_body_limit as usize,
            request_timeout: config.request_timeout(),
            max_in_flight: config.http_max_in_flight as usize,
            write_rate: config.rate_limit_writes,
            trusted_proxies: config.trusted_proxies.clone(),
        },
        api_token: config.api_token.clone(),
        idempotency_ttl: config.idempotency_ttl(),
        metrics: Some(MetricsEndpoint::new(
            prometheus::install()?,
            Arc::new(store.clone()),
        )),
        ..AppState::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            media.clone(),
        )
    })
}

/// Binds `addr` (the `setting` that names it, for the error) and serves `app` there until
/// `shutdown`, then for up to `grace` more; returns the bound address.
async fn serve(
    app: axum::Router,
    addr: SocketAddr,
    setting: &'static str,
    limits: crate::server::ConnectionLimits,
    grace: std::time::Duration,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<SocketAddr, StartupError> {
    let listener =
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| StartupError::Config {
                setting,
                reason: format!("cannot listen on {addr}: {error}"),
            })?;
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    tasks.spawn(async move {
        info!(%addr, "HTTP listening");
        crate::server::serve(listener, app, limits, stop, grace).await;
    });
    Ok(addr)
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[tokio::test]
    async fn a_media_store_that_cannot_be_used_fails_at_start_naming_the_setting() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let not_a_dir = file.path().join("media");
        for (args, setting, expected) in [
            (
                vec!["--media-url", "ftp://host/x"],
                "MEDIA_URL",
                "unknown scheme",
            ),
            (
                vec!["--media-url", "s3:///x"],
                "MEDIA_URL",
                "names no bucket",
            ),
            (
                vec!["--media-dir", not_a_dir.to_str().unwrap()],
                "MEDIA_DIR",
                "cannot create",
            ),
        ] {
            let error = open_media(&config(&args)).await.unwrap_err().to_string();
            assert!(
                error.starts_with(setting) && error.contains(expected),
                "{args:?}: {error}"
            );
        }
        open_media(&config(&["--media-url", "memory://"]))
            .await
            .expect("memory:// always opens");
    }

    /// A bucket that does not exist fails at start, not at the first image.
    #[cfg(feature = "s3")]
    #[tokio::test]
    async fn a_missing_bucket_fails_at_start() {
        if std::env::var("MEDIA_TEST_S3_URL").is_err() {
            assert!(
                std::env::var("REQUIRE_SERVICES").as_deref() != Ok("1"),
                "REQUIRE_SERVICES=1 but MEDIA_TEST_S3_URL is not set"
            );
            return;
        }
        let error = open_media(&config(&["--media-url", "s3://no-such-bucket-here/x"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("MEDIA_URL"), "{error}");
    }
}
